"""A rebuild that starts inside the landed history gives the rows of one from
the first day: customers landed before the start are known to the gate, and the
first snapshot sees its whole look-back, as the nightly run of that day would."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import pytest

from ml.config.settings import Settings
from ml.ops.tasks import rebuild
from ml.storage.warehouse import connect
from tests.e2e.worlds import simulate_world

START = date(2024, 10, 1)
DAYS = 90
REBUILD_START = date(2024, 11, 5)  # 35 days in: customers signed up before it
END = START + timedelta(days=DAYS - 1)
DATED_MARTS = {
    "customer_features": "as_of_date",
    "churn_labels": "as_of_date",
    "training_examples": "as_of_date",
}


def _rows(settings: Settings, query: str) -> list[tuple]:
    with connect(settings.warehouse_path, read_only=True) as con:
        return con.execute(query).fetchall()


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Settings]:
    """The same landing data rebuilt from its first day and from REBUILD_START."""
    whole = simulate_world(
        Settings(home=tmp_path_factory.mktemp("rebuild-whole")),
        customers=250,
        seed=21,
        start=START,
        days=DAYS,
    )
    inside = Settings(home=tmp_path_factory.mktemp("rebuild-inside"))
    inside.ensure_dirs()
    shutil.rmtree(inside.landing_dir)
    shutil.copytree(whole.landing_dir, inside.landing_dir)
    rebuild(START, END, settings=whole)
    rebuild(REBUILD_START, END, settings=inside)
    return whole, inside


def test_customers_landed_before_the_start_are_known(
    homes: tuple[Settings, Settings],
) -> None:
    whole, inside = homes
    unknown = "select count(*) from ops.quarantine where reason = 'unknown_customer'"
    assert _rows(inside, unknown) == _rows(whole, unknown)
    raw = "select count(*) from raw.transactions"
    assert _rows(inside, raw) == _rows(whole, raw)
    assert _rows(inside, raw)[0][0] > 0


@pytest.mark.parametrize("mart", sorted(DATED_MARTS))
def test_snapshots_from_the_start_on_equal_those_of_a_rebuild_from_day_one(
    homes: tuple[Settings, Settings], mart: str
) -> None:
    whole, inside = homes
    column = DATED_MARTS[mart]
    query = (
        f"select * from marts.{mart} where {column} >= '{REBUILD_START}' order by all"
    )
    rows = _rows(inside, query)
    assert rows, f"no {mart} rows from {REBUILD_START} on"
    assert rows == _rows(whole, query)
    first = _rows(inside, f"select min({column}) from marts.{mart}")[0][0]
    assert first == REBUILD_START


def test_the_first_snapshot_sees_the_look_back_before_the_start(
    homes: tuple[Settings, Settings],
) -> None:
    _, inside = homes
    # a customer active only before the start still counts on the start day
    rows = _rows(
        inside,
        "select count(*) from marts.customer_features "
        f"where as_of_date = '{REBUILD_START}' and tx_count_30d > 0",
    )
    assert rows[0][0] > 0


@pytest.mark.parametrize("mart", ["fct_transactions", "dim_customers"])
def test_undated_marts_equal_those_of_a_rebuild_from_day_one(
    homes: tuple[Settings, Settings], mart: str
) -> None:
    whole, inside = homes
    query = f"select * from marts.{mart} order by all"
    assert _rows(inside, query) == _rows(whole, query)
