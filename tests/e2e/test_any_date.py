"""End to end: the pipeline runs on any date the landing data covers.

A small world is simulated in 1997 (long before any date written into the DAGs),
its history rebuilt from a start inside the landed log, and the real nightly DAG
runs in-process for the next day, through the CLI as a user runs it. A run in
which Airflow runs no task (a logical date before the DAGs' start_date) is a
failure, whether the runner refuses it up front or finds it afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from ml.config.settings import Settings
from ml.storage.warehouse import connect
from tests.e2e.worlds import simulate_world

START = date(1997, 1, 1)
DAYS = 50
REBUILD_START = date(1997, 1, 25)
NIGHT = START + timedelta(days=DAYS - 1)


@pytest.fixture(scope="module")
def world(
    airflow_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """A 1997 world of its own, rebuilt from inside its history up to the day
    before ``NIGHT``; the DAG's tasks find it through LOOPLINE_HOME."""
    from loopline_airflow.runner import configure, ensure_metadata

    from ml.ops.tasks import rebuild

    configure(airflow_settings)
    ensure_metadata(airflow_settings)
    settings = Settings(home=tmp_path_factory.mktemp("any-date"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOOPLINE_HOME", str(settings.root))
        simulate_world(settings, customers=300, seed=3, start=START, days=DAYS)
        rebuild(REBUILD_START, NIGHT - timedelta(days=1), settings=settings)
        yield settings


def _count(settings: Settings, query: str) -> int:
    with connect(settings.warehouse_path, read_only=True) as con:
        row = con.execute(query).fetchone()
    return int(row[0]) if row else 0


def _loopline(settings: Settings, *args: str, **env: str) -> tuple[int, str]:
    """Run the ``loopline`` command in a process of its own (Airflow configures
    itself once per process), as a user runs it; its exit code and output."""
    done = subprocess.run(
        [sys.executable, "-m", "ml.cli.app", *args],
        env={**os.environ, "LOOPLINE_HOME": str(settings.root), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, done.stdout + done.stderr


def test_a_nightly_run_in_1997_runs_every_task_and_writes_decisions(
    world: Settings,
) -> None:
    code, output = _loopline(world, "run", "--date", NIGHT.isoformat())

    assert code == 0, output
    assert f"{NIGHT}  ok" in output
    # Airflow's task logs and library warnings went to the log file, not here
    assert [line for line in output.splitlines() if "arning" in line] == []
    assert "Traceback" not in output
    night = f"'{NIGHT.isoformat()}'"
    assert _count(
        world, f"select count(*) from marts.decisions where run_date = {night}"
    )
    assert _count(
        world,
        f"select count(*) from marts.customer_features where as_of_date = {night}",
    )
    with connect(world.warehouse_path, read_only=True) as con:
        found = con.execute(f"select step from ops.runs where run_date = {night}")
        steps = {row[0] for row in found.fetchall()}
    assert {"check_landing", "validate_landing", "dbt_build", "decide"} <= steps


def test_a_run_in_which_airflow_runs_no_task_is_a_failure(
    world: Settings, airflow_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopline_airflow.runner import run_dag

    monkeypatch.setenv("LOOPLINE_HOME", str(world.root))
    before_start = date(1969, 12, 31)  # the DAGs start on 1970-01-01 by default

    outcome = run_dag(
        airflow_settings, "loopline_nightly", before_start, check_start=False
    )

    assert outcome.state == "success"  # what Airflow itself says
    assert outcome.task_states == {}
    assert not outcome.ok
    assert outcome.problem is not None
    assert "ran no task" in outcome.problem
    assert "start_date 1970-01-01" in outcome.problem


def test_loopline_run_refuses_a_date_before_the_start_date_in_plain_words(
    world: Settings,
) -> None:
    code, output = _loopline(
        world, "run", "--date", "1997-02-01", LOOPLINE_DAGS_START_DATE="1997-02-10"
    )

    assert code == 1
    assert "LOOPLINE_DAGS_START_DATE" in output
    assert "1997-02-01" in output
    assert "Traceback" not in output
    assert "\nerror: loopline_nightly: the logical date 1997-02-01" in output
    assert not _count(
        world, "select count(*) from ops.runs where run_date = '1997-02-01'"
    )


def test_a_run_past_the_data_fails_with_its_cause_in_plain_words(
    world: Settings,
) -> None:
    after = NIGHT + timedelta(days=30)
    code, output = _loopline(world, "run", "--date", after.isoformat())

    assert code == 1
    assert f"{after}  FAILED" in output
    flat = " ".join(output.split())
    assert "check_landing: LandingNotReadyError: landing partition not ready" in flat
    assert "what to do:" in flat
    assert f"task logs: {world.root / 'logs' / 'loopline.log'}" in flat
    assert "Traceback" not in output
    assert [line for line in output.splitlines() if "arning" in line] == []
