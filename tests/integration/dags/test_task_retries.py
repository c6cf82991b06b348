"""Retries: the warehouse tasks retry a passing failure, never a data fault.

The policy is judged on the real exceptions; the DAGs are checked for who gets
which retries; and real in-process runs (``dag.test``) show that a warehouse held
by another process is retried into success, that a failing task fails the run
after the capped in-process retry, and that a missing partition is not retried.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from airflow.sdk import RetryAction

from ml.config.settings import Settings
from ml.data.validation.errors import GateFailure, ValidationGateError
from ml.ops.tasks import LandingNotReadyError, is_data_fault
from ml.storage.warehouse import connect, ensure_schemas

DAGS_DIR = Path(__file__).resolve().parents[3] / "dags"
DAY = date(2031, 6, 7)


def _gate_error() -> ValidationGateError:
    failure = GateFailure(
        "transactions", DAY, "schema", "expect_column_to_exist", "amount", "missing"
    )
    return ValidationGateError([failure])


def test_a_data_fault_fails_at_once_and_a_busy_warehouse_is_retried() -> None:
    from loopline_airflow.retries import RETRY_POLICY

    def action(error: BaseException) -> RetryAction:
        return RETRY_POLICY.evaluate(error, try_number=1, max_tries=4).action

    assert is_data_fault(_gate_error())
    assert action(_gate_error()) == RetryAction.FAIL
    assert action(LandingNotReadyError("late")) == RetryAction.FAIL
    # a log too young to train on stays too young on a retry
    from ml.prediction.training import HistoryTooShortError

    assert action(HistoryTooShortError("120 days")) == RetryAction.FAIL
    assert action(KeyboardInterrupt()) == RetryAction.FAIL
    busy = duckdb.IOException('Could not set lock on file "warehouse.duckdb"')
    assert not is_data_fault(busy)
    assert action(busy) == RetryAction.DEFAULT
    assert action(RuntimeError("anything else")) == RetryAction.DEFAULT


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_every_warehouse_task_retries_with_a_delay(dagbag) -> None:  # type: ignore[no-untyped-def]
    from airflow.sdk.bases.sensor import BaseSensorOperator
    from loopline_airflow.retries import RETRY_POLICY, WAREHOUSE_RETRIES

    tasks = [task for dag in dagbag.dags.values() for task in dag.tasks]
    assert tasks
    for task in tasks:
        name = f"{task.dag_id}.{task.task_id}"
        # every task, pooled or not, fails a data fault at once
        assert task.retry_policy is RETRY_POLICY, name
        if task.pool != "warehouse":
            assert task.retries == 0, name
            continue
        assert task.retries == WAREHOUSE_RETRIES, name
        assert task.retry_delay >= timedelta(seconds=30), name
        if isinstance(task, BaseSensorOperator):
            # a sensor retries one poke interval later, without backoff
            assert task.retry_delay == timedelta(seconds=task.poke_interval), name
        else:
            assert task.retry_exponential_backoff > 1, name
            assert task.max_retry_delay >= task.retry_delay, name


def test_in_process_runs_cap_retries_and_sensor_waits(dagbag) -> None:  # type: ignore[no-untyped-def]
    from loopline_airflow.runner import (
        IN_PROCESS_RETRIES,
        IN_PROCESS_RETRY_DELAY,
        limit_in_process,
    )

    dag = dagbag.dags["loopline_nightly"]
    limit_in_process(dag)
    for task in dag.tasks:
        assert task.retries == IN_PROCESS_RETRIES
        assert task.retry_delay == IN_PROCESS_RETRY_DELAY
        assert task.retry_exponential_backoff == 0
    assert dag.get_task("check_landing").timeout == 0


def _alerts(settings: Settings) -> list[tuple[str, str, int]]:
    with connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute(
            "select task_id, error_type, try_number from ops.alerts order by failed_at"
        ).fetchall()
    return [(str(t), str(e).rsplit(".", 1)[-1], int(n)) for t, e, n in rows]


def test_a_missing_partition_fails_the_nightly_run_at_once(
    airflow_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopline_airflow.runner import configure, ensure_metadata, run_dag

    configure(airflow_settings)
    ensure_metadata(airflow_settings)
    home = Settings(home=tmp_path)
    monkeypatch.setenv("LOOPLINE_HOME", str(home.root))

    outcome = run_dag(airflow_settings, "loopline_nightly", DAY)

    assert not outcome.ok
    assert outcome.task_states["check_landing"] == "failed"
    assert outcome.task_states["validate_landing"] == "upstream_failed"
    # its one look failed with the cause, and it was not retried (first try)
    assert _alerts(home) == [("check_landing", "LandingNotReadyError", 1)]


@pytest.fixture
def held_warehouse(tmp_path: Path) -> Iterator[tuple[Settings, Path]]:
    """A home whose warehouse another process holds (read-write, so that no one
    else may open it) until the returned file exists."""
    home = Settings(home=tmp_path / "home")
    home.ensure_dirs()
    with connect(home.warehouse_path) as con:
        ensure_schemas(con)
        con.execute(
            "insert into ops.runs (run_date, step, status, config_hash, detail) "
            "values (?, 'decide', 'success', 'x', ?)",
            [DAY, json.dumps({})],
        )
    release = tmp_path / "release"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, os, sys, time\n"
            "con = duckdb.connect(sys.argv[1])\n"
            "print('held', flush=True)\n"
            "while not os.path.exists(sys.argv[2]):\n"
            "    time.sleep(0.05)\n"
            "con.close()\n",
            str(home.warehouse_path),
            str(release),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield home, release
    finally:
        release.touch()
        holder.wait(timeout=30)


def _release_after_first_failure(
    metadata: Path, task_id: str, release: Path, limit: float = 120
) -> threading.Thread:
    """Release the warehouse once ``task_id``'s first try has failed and waits
    for its retry (Airflow's metadata says ``up_for_retry``)."""

    def watch() -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and not release.exists():
            with sqlite3.connect(metadata) as con:
                rows = con.execute(
                    "select state from task_instance where dag_id = ? "
                    "and task_id = ? and state = 'up_for_retry'",
                    ("loopline_outcomes", task_id),
                ).fetchall()
            if rows:
                release.touch()
                return
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_busy_warehouse_is_retried_and_a_failing_task_fails_after_its_retry(
    airflow_settings: Settings,
    held_warehouse: tuple[Settings, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """check_nightly meets a warehouse another process holds: its retry finds it
    free and succeeds. join_outcomes then fails for good (the home has no marts):
    it fails the run after its one in-process retry, with one alert, and its
    ops.runs row is replaced, not duplicated."""
    from loopline_airflow.runner import configure, ensure_metadata, run_dag

    configure(airflow_settings)
    ensure_metadata(airflow_settings)
    home, release = held_warehouse
    monkeypatch.setenv("LOOPLINE_HOME", str(home.root))
    watcher = _release_after_first_failure(
        airflow_settings.airflow_home / "airflow.db", "check_nightly", release
    )

    outcome = run_dag(airflow_settings, "loopline_outcomes", DAY)
    watcher.join(timeout=5)

    assert release.exists()  # the first look did meet the held warehouse
    assert outcome.task_states["check_nightly"] == "success"
    assert outcome.task_states["join_outcomes"] == "failed"
    assert outcome.task_states["drift"] == "upstream_failed"
    # one alert, written by the last try (the second)
    assert [(task, tries) for task, _, tries in _alerts(home)] == [("join_outcomes", 2)]
    with connect(home.warehouse_path, read_only=True) as con:
        rows = con.execute(
            "select step, status from ops.runs where run_date = ? order by step",
            [DAY],
        ).fetchall()
    assert rows == [("decide", "success"), ("join_outcomes", "failed")]
