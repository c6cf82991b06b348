"""The real ``loopline_outcomes`` DAG, in-process: a failed task emits nothing.

The DAG's tasks write to a throw-away LOOPLINE_HOME whose warehouse says the
nightly run of the date decided but holds no marts, so ``join_outcomes`` fails.
Nothing downstream may run: no retrain verdict, and above all no
``retrain_requested`` asset event, so ``loopline_retrain`` is not scheduled. The
failed task leaves one alert in ``ops.alerts``.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from ml.config.settings import Settings
from ml.storage.warehouse import connect, ensure_schemas

DAY = date(2031, 5, 4)


def _retrain_events() -> int:
    from loopline_airflow.closed_loop import retrain_requests

    return len(retrain_requests(0))


def test_a_failed_outcomes_task_emits_nothing(
    airflow_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopline_airflow.runner import configure, ensure_metadata, run_dag

    configure(airflow_settings)
    ensure_metadata(airflow_settings)
    # the tasks read their settings from the environment: point them elsewhere
    monkeypatch.setenv("LOOPLINE_HOME", str(tmp_path))
    with connect(Settings(home=tmp_path).warehouse_path) as con:
        ensure_schemas(con)
        con.execute(
            "insert into ops.runs (run_date, step, status, config_hash, detail) "
            "values (?, 'decide', 'success', 'x', ?)",
            [DAY, json.dumps({})],
        )
    before = _retrain_events()

    outcome = run_dag(airflow_settings, "loopline_outcomes", DAY)

    assert not outcome.ok
    assert outcome.task_states["check_nightly"] == "success"
    assert outcome.task_states["join_outcomes"] == "failed"
    for task in (
        "drift",
        "learn_policy",
        "retrain_check",
        "request_retrain",
        "publish",
    ):
        assert outcome.task_states[task] == "upstream_failed", task
    assert _retrain_events() == before
    with connect(Settings(home=tmp_path).warehouse_path, read_only=True) as con:
        steps = [r[0] for r in con.execute("select step from ops.runs").fetchall()]
        alerts = con.execute("select dag_id, task_id, run_date from ops.alerts")
        alerted = alerts.fetchall()
    assert "retrain_check" not in steps
    # one alert, for the task that failed (the upstream_failed ones never ran)
    assert alerted == [("loopline_outcomes", "join_outcomes", DAY)]
    # and the analyst copy was not replaced by a failed run's state
    assert "publish_outcomes" not in steps
    assert not Settings(home=tmp_path).analytics_path.exists()
