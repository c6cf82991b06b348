"""End to end: the real ``loopline_nightly`` DAG, in-process, on a simulated world.

A small world is simulated, its history rebuilt in bulk, and then the nightly DAG
runs for three consecutive logical dates with ``dag.test()``: ``decide`` with the
action-queue exports, then ``publish`` of the analyst copy. A fourth date arrives
with a renamed column: the gate must stop the run before dbt, load nothing, export
no queue and publish nothing; the failed task leaves one alert in ``ops.alerts``
(posted to a Slack webhook served on 127.0.0.1 when one is configured), and
``loopline status`` shows both.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ml.action.exports import MANIFEST_FILE, export_dir
from ml.cli.app import app
from ml.config.settings import Settings
from ml.storage.landing_files import partition_files, write_raw_partition
from ml.storage.warehouse import connect
from tests.e2e.worlds import simulate_world

START = date(2025, 1, 1)
DAYS = 75
NIGHTS = 3
LAST = START + timedelta(days=DAYS - 1)
FIRST_NIGHT = LAST - timedelta(days=NIGHTS - 1)


@pytest.fixture(scope="module")
def world(airflow_settings: Settings) -> Settings:
    from loopline_airflow.runner import configure

    from ml.ops.tasks import rebuild

    settings = airflow_settings
    configure(settings)
    simulate_world(settings, customers=400, seed=11, start=START, days=DAYS)
    rebuild(START, FIRST_NIGHT - timedelta(days=1), settings=settings)
    return settings


def _snapshot(settings: Settings, day: date) -> list[tuple]:
    with connect(settings.warehouse_path, read_only=True) as con:
        return con.execute(
            "select * from marts.customer_features where as_of_date = ? "
            "order by customer_id",
            [day],
        ).fetchall()


def _decisions(settings: Settings, day: date) -> list[tuple]:
    with connect(settings.warehouse_path, read_only=True) as con:
        return con.execute(
            "select * from marts.decisions where run_date = ? order by customer_id",
            [day],
        ).fetchall()


def _docs_pages(settings: Settings, suite: str, day: date) -> list[str]:
    """The Data Docs result pages of ``suite`` (a folder path) for run date ``day``."""
    site = settings.gx_dir / "uncommitted" / "data_docs" / "local_site"
    folder = site / "validations" / suite
    return sorted(p.name for p in folder.rglob(f"{day.isoformat()}/*/*.html"))


def _exports(settings: Settings, day: date) -> dict[str, bytes]:
    folder = export_dir(settings.exports_dir, day)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def nights(world: Settings) -> list[date]:
    """The three consecutive nights, run once for the module (the schema-fault
    test comes after them, whichever test runs first)."""
    from loopline_airflow.runner import run_dag

    days = [FIRST_NIGHT + timedelta(days=i) for i in range(NIGHTS)]
    for day in days:
        outcome = run_dag(world, "loopline_nightly", day)
        assert outcome.ok, (day, outcome.task_states)
        assert set(outcome.task_states.values()) == {"success"}
    return days


def test_three_consecutive_nights(world: Settings, nights: list[date]) -> None:
    from loopline_airflow.runner import run_dag

    days = nights
    with connect(world.warehouse_path, read_only=True) as con:
        per_day = dict(
            con.execute(
                "select as_of_date, count(*) from marts.customer_features "
                "where as_of_date >= ? group by 1",
                [FIRST_NIGHT],
            ).fetchall()
        )
        steps = con.execute(
            "select count(*) from ops.runs where run_date >= ? and status = 'success'",
            [FIRST_NIGHT],
        ).fetchone()
        loaded = con.execute(
            "select count(distinct partition_date) from raw.transactions "
            "where partition_date >= ?",
            [FIRST_NIGHT],
        ).fetchone()
    assert sorted(per_day) == days
    assert all(n > 100 for n in per_day.values())
    # six steps and the publish of the analyst copy, every night
    assert steps == (NIGHTS * 7,)
    assert loaded == (NIGHTS,)
    with connect(world.warehouse_path, read_only=True) as con:
        decided = dict(
            con.execute(
                "select run_date, count(*) from marts.decisions "
                "where run_date >= ? group by 1",
                [FIRST_NIGHT],
            ).fetchall()
        )
    # one decision per active customer and night, and every queue exported
    assert decided == per_day
    for day in days:
        manifest = export_dir(world.exports_dir, day) / MANIFEST_FILE
        assert manifest.is_file()
        # the night's GX Data Docs: the landing and the mart gates' pages
        for suite in ("landing/transactions", "landing/customers", "marts"):
            assert _docs_pages(world, suite, day), (suite, day)

    # A rerun of a night (what a backfill or a cleared run does) changes nothing.
    before = _snapshot(world, days[1])
    decisions = _decisions(world, days[1])
    files = _exports(world, days[1])
    assert run_dag(world, "loopline_nightly", days[1]).ok
    assert _snapshot(world, days[1]) == before
    assert _decisions(world, days[1]) == decisions
    assert _exports(world, days[1]) == files


def test_schema_fault_stops_the_run_before_dbt(
    world: Settings,
    nights: list[date],
    webhook: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loopline_airflow.runner import run_dag

    from ml.sim import simulate_next_day

    # read by the failure callback, in this process (dag.test runs tasks in-process)
    monkeypatch.setenv("LOOPLINE_ALERT_SLACK_WEBHOOK", webhook.url)

    simulate_next_day(world)
    bad_day = LAST + timedelta(days=1)
    [path] = partition_files(world.landing_dir, "transactions", bad_day)
    good = pq.read_table(path)
    write_raw_partition(
        world.landing_dir,
        "transactions",
        bad_day,
        good.rename_columns(["amt" if c == "amount" else c for c in good.column_names]),
    )
    with connect(world.warehouse_path, read_only=True) as con:
        raw_before = con.execute("select count(*) from raw.transactions").fetchone()

    outcome = run_dag(world, "loopline_nightly", bad_day)

    assert not outcome.ok
    assert outcome.task_states["validate_landing"] == "failed"
    assert outcome.task_states["dbt_build"] == "upstream_failed"
    assert outcome.task_states["validate_marts"] == "upstream_failed"
    assert outcome.task_states["score"] == "upstream_failed"
    assert outcome.task_states["decide"] == "upstream_failed"
    assert outcome.task_states["publish"] == "upstream_failed"
    # the safe default: no queue at all for a day whose data failed its gate
    assert not export_dir(world.exports_dir, bad_day).exists()
    assert _decisions(world, bad_day) == []
    with connect(world.warehouse_path, read_only=True) as con:
        assert con.execute("select count(*) from raw.transactions").fetchone() == (
            raw_before
        )
        assert _snapshot(world, bad_day) == []
        error = con.execute(
            "select detail from ops.runs where run_date = ? and step = ?",
            [bad_day, "validate_landing"],
        ).fetchone()
    assert error is not None and "amount" in error[0]
    # the failed gate rendered its Data Docs pages before it stopped the run
    assert _docs_pages(world, "landing/transactions", bad_day)

    # one alert for the failed task: DAG, task, run date, cause and what to do
    with connect(world.warehouse_path, read_only=True) as con:
        alerts = con.execute(
            "select dag_id, task_id, error_type, cause, hint, line, notified "
            "from ops.alerts where run_date = ?",
            [bad_day],
        ).fetchall()
    [(dag_id, task_id, error_type, cause, hint, line, notified)] = alerts
    assert (dag_id, task_id) == ("loopline_nightly", "validate_landing")
    assert error_type == "ml.data.validation.errors.ValidationGateError"
    assert "transactions" in cause and "amount" in cause
    assert hint.startswith("a schema fault") and bad_day.isoformat() in hint
    assert line.startswith(
        f"FAILED loopline_nightly.validate_landing run_date={bad_day}: "
        "ValidationGateError: "
    )
    assert "\n" not in line and line.endswith(hint)
    assert json.loads(notified) == {"slack": "sent"}
    [posted] = webhook.received
    assert posted["json"]["text"] == line

    # loopline status shows the failed run, its failed task and the alert
    shown = CliRunner().invoke(app, ["status", "--json"])
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.output)
    assert status["day"] == bad_day.isoformat()
    nightly = status["airflow"]["runs"]["loopline_nightly"]
    assert nightly["state"] == "failed"
    assert nightly["logical_date"] == bad_day.isoformat()
    assert nightly["failed_tasks"] == ["validate_landing"]
    assert nightly["last_success"] == LAST.isoformat()
    assert status["alerts"][0]["line"] == line
    assert status["queues"]["exported"] is False
    failing = {s["suite_name"]: s["failed"] for s in status["validation"]}
    assert failing["landing.transactions"] > 0
    table = CliRunner().invoke(app, ["status"], env={"COLUMNS": "200"})
    assert "loopline_nightly.validate_landing run date" in table.output
    assert f"what to do: {hint}" in table.output

    # Once the corrected partition lands, the same logical date runs through.
    write_raw_partition(world.landing_dir, "transactions", bad_day, good)
    assert run_dag(world, "loopline_nightly", bad_day).ok
    assert len(_snapshot(world, bad_day)) > 100
