"""Session fixtures: a few small warehouses, each built with as few dbt runs as can be.

* ``bulk``: one full-refresh build of the whole range.
* ``nightly``: a bulk build up to the day before ``NIGHTLY_START``, then one build
  per night (every other one inside a hold of the warehouse), then the last night
  again (a rerun).
* ``perturbed``: the bulk world plus rows after ``LEAKAGE_DAY`` (late arrivals and
  later events), built in bulk.

The horizon and active window are short (7 and 21 days) so that a 60-day world has
labels, churners and customers who fall out of the active set.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

from ml.config.settings import Settings
from ml.data.dbt import DbtRunResult, dbt_build, rebuild
from ml.storage.warehouse import connect, held_connection, hold
from tests.integration.dbt.world import World, load_world, make_world

FIRST_DAY = date(2024, 1, 1)
BUILD_START = date(2024, 1, 15)
BUILD_END = date(2024, 2, 29)
NIGHTLY_START = date(2024, 2, 25)
LEAKAGE_DAY = date(2024, 2, 10)
HORIZON_DAYS = 7
ACTIVE_WINDOW_DAYS = 21
MARTS = ("customer_features", "churn_labels", "fct_transactions", "training_examples")

Rows = list[tuple[object, ...]]


def make_settings(home: Path) -> Settings:
    """Settings for a warehouse under ``home`` with the test's business config."""
    home.mkdir(parents=True, exist_ok=True)
    config_file = home / "loopline.yml"
    config_file.write_text(
        f"horizon_days: {HORIZON_DAYS}\nactive_window_days: {ACTIVE_WINDOW_DAYS}\n"
    )
    return Settings(home=home, config_file=config_file)


def read_rows(settings: Settings, table: str, where: str = "true") -> Rows:
    """All rows of ``marts.<table>`` matching ``where``, in a stable order."""
    with connect(settings.warehouse_path, read_only=True) as con:
        return con.execute(
            f"select * from marts.{table} where {where} order by all"
        ).fetchall()


def read_columns(settings: Settings, table: str) -> list[str]:
    """Column names of ``marts.<table>``."""
    with connect(settings.warehouse_path, read_only=True) as con:
        return [
            row[0]
            for row in con.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'marts' and table_name = ? "
                "order by ordinal_position",
                [table],
            ).fetchall()
        ]


def snapshot(settings: Settings) -> dict[str, Rows]:
    """Every row of the compared marts."""
    return {table: read_rows(settings, table) for table in (*MARTS, "dim_customers")}


@dataclass
class BuiltWorld:
    """A warehouse after its builds, with what the tests need to look at."""

    settings: Settings
    world: World
    results: list[DbtRunResult] = field(default_factory=list)
    # nightly only: run date -> latest labelled as_of_date after that night
    latest_label_after: dict[date, date | None] = field(default_factory=dict)
    before_rerun: dict[str, Rows] = field(default_factory=dict)
    # nightly only: the nights built inside a hold, and the night's feature rows
    # the held connection saw right after the build
    held_nights: list[date] = field(default_factory=list)
    rows_seen_held: dict[date, int] = field(default_factory=dict)


@pytest.fixture(scope="session")
def world() -> World:
    return make_world(seed=7, first_day=FIRST_DAY, n_days=60, n_customers=40)


@pytest.fixture(scope="session")
def bulk(tmp_path_factory: pytest.TempPathFactory, world: World) -> BuiltWorld:
    settings = make_settings(tmp_path_factory.mktemp("bulk"))
    load_world(settings.warehouse_path, world)
    result = rebuild(settings, BUILD_START, BUILD_END)
    return BuiltWorld(settings, world, [result])


@pytest.fixture(scope="session")
def chunked(tmp_path_factory: pytest.TempPathFactory, world: World) -> BuiltWorld:
    """The same range rebuilt 15 as_of dates per dbt invocation."""
    settings = make_settings(tmp_path_factory.mktemp("chunked"))
    load_world(settings.warehouse_path, world)
    result = rebuild(settings, BUILD_START, BUILD_END, chunk_dates=15)
    return BuiltWorld(settings, world, [result])


@pytest.fixture(scope="session")
def nightly(tmp_path_factory: pytest.TempPathFactory, world: World) -> BuiltWorld:
    settings = make_settings(tmp_path_factory.mktemp("nightly"))
    load_world(settings.warehouse_path, world)
    built = BuiltWorld(settings, world)
    built.results.append(
        rebuild(settings, BUILD_START, NIGHTLY_START - timedelta(days=1))
    )
    day = NIGHTLY_START
    while day <= BUILD_END:
        # every other night inside a hold of the warehouse, as the closed loop
        # runs its nights: dbt then shares the held database instance
        held = (day - NIGHTLY_START).days % 2 == 1
        with hold(settings.warehouse_path) if held else nullcontext():
            built.results.append(dbt_build(settings, day, day))
            if held:
                built.held_nights.append(day)
                held_con = held_connection(settings.warehouse_path)
                assert held_con is not None
                count = held_con.execute(
                    "select count(*) from marts.customer_features where as_of_date = ?",
                    [day],
                ).fetchone()
                built.rows_seen_held[day] = int(count[0]) if count else 0
        labels = read_rows(settings, "churn_labels")
        built.latest_label_after[day] = max((row[1] for row in labels), default=None)
        day += timedelta(days=1)
    built.before_rerun = snapshot(settings)
    built.results.append(dbt_build(settings, BUILD_END, BUILD_END))
    return built


def _at(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute))


def perturb_after(world: World, day: date, customer_ids: list[str]) -> World:
    """The world plus rows that must not change anything known on ``day``.

    Events after ``day`` (from its midnight on), and events of ``day`` or before
    that arrive after ``day``.
    """
    changed = world.copy()
    after = day + timedelta(days=1)
    for n, customer_id in enumerate(customer_ids):
        changed.add(
            "transactions",
            after,
            {
                "transaction_id": f"x{n:03d}a",
                "customer_id": customer_id,
                "transaction_at": _at(after),
                "amount": 50.0,
                "category": "electronics",
                "is_discounted": True,
            },
        )
        changed.add(
            "transactions",
            day + timedelta(days=2),
            {
                "transaction_id": f"x{n:03d}b",
                "customer_id": customer_id,
                "transaction_at": _at(day, 23, 59),
                "amount": 70.0,
                "category": "beauty",
                "is_discounted": False,
            },
        )
        changed.add(
            "support_tickets",
            after,
            {
                "ticket_id": f"x{n:03d}",
                "customer_id": customer_id,
                "opened_at": _at(after, 9),
                "topic": "complaint",
                "severity": "high",
            },
        )
        changed.add(
            "action_results",
            after,
            {
                "decision_id": f"x{n:03d}",
                "customer_id": customer_id,
                "action": "email",
                "channel": "email",
                "result_at": _at(after, 10),
                "status": "delivered",
            },
        )
        changed.add(
            "customers",
            day + timedelta(days=3),
            {
                "customer_id": customer_id,
                "signup_date": FIRST_DAY,
                "plan": "unknown",
                "region": "unknown",
                "acquisition_channel": "unknown",
                "updated_at": _at(day, 7),
            },
        )
    return changed


@pytest.fixture(scope="session")
def perturbed(
    tmp_path_factory: pytest.TempPathFactory, world: World, bulk: BuiltWorld
) -> BuiltWorld:
    active = read_rows(
        bulk.settings,
        "customer_features",
        f"as_of_date = date '{LEAKAGE_DAY.isoformat()}'",
    )
    customer_ids = sorted({str(row[0]) for row in active})[:8]
    changed = perturb_after(world, LEAKAGE_DAY, customer_ids)
    settings = make_settings(tmp_path_factory.mktemp("perturbed"))
    load_world(settings.warehouse_path, changed)
    result = rebuild(settings, BUILD_START, BUILD_END)
    return BuiltWorld(settings, changed, [result])


@pytest.fixture(scope="session")
def weekly(tmp_path_factory: pytest.TempPathFactory, world: World) -> BuiltWorld:
    """The range rebuilt with a snapshot every 7 days, 2 snapshot dates per dbt
    invocation: the chunks of a large customer base (ml.data.dbt.bulk_chunk_dates),
    whose partition-keyed models must still build the days between chunks."""
    settings = make_settings(tmp_path_factory.mktemp("weekly"))
    load_world(settings.warehouse_path, world)
    result = rebuild(settings, BUILD_START, BUILD_END, every=7, chunk_dates=2)
    return BuiltWorld(settings, world, [result])
