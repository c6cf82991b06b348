"""After a ``kill -9``: the next run cleans up what the killed one left, and
``loopline status`` says that a step's process is gone.

Each test kills a real child process with SIGKILL at the point named (before an
atomic rename, or inside a pipeline step), then runs the real step again.
"""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
from typer.testing import CliRunner

from ml.action.exports import REVIEW_COLUMNS, export_dir, write_exports
from ml.analytics.publish import (
    FILES_TABLE,
    RETIRED_TABLE,
    data_directory,
    open_analytics,
    publish_analytics,
)
from ml.cli.app import app
from ml.config.settings import Settings
from ml.contract.schema import EXPORT_COLUMNS, TABLES
from ml.decision.decide_step import DDL as DECIDE_DDL
from ml.ops.airflow_meta import AirflowRuns, DagRunInfo
from ml.ops.status import PROCESS_GONE, collect_status
from ml.ops.tasks import record_run, step_run, validate_landing
from ml.storage.landing_files import write_partition
from ml.storage.warehouse import connect, ensure_schemas
from tests.integration.ops.killed import run_killed

DAY = date(2025, 3, 2)
NO_AIRFLOW = "sqlite:///no/such/airflow.db"


def _queues() -> dict[str, pd.DataFrame]:
    phone = pd.DataFrame(
        [[f"d{i}", f"C{i}", "call", 1.5, "ev", "3", "p1"] for i in range(3)],
        columns=list(EXPORT_COLUMNS),
    )
    return {"phone": phone}


def test_an_export_killed_before_its_rename_leaves_no_temp_file_after_the_rerun(
    tmp_path: Path,
) -> None:
    exports = tmp_path / "exports"
    pid = run_killed(
        f"""
        import os
        from datetime import date
        from pathlib import Path
        import pandas as pd
        from ml.contract.schema import EXPORT_COLUMNS
        from ml.action.exports import REVIEW_COLUMNS, write_exports
        phone = pd.DataFrame([["d0", "C0", "call", 1.5, "ev", "3", "p1"]],
                             columns=list(EXPORT_COLUMNS))
        os.replace = die
        write_exports(Path({str(exports)!r}), date(2025, 3, 2), {{"phone": phone}},
                      pd.DataFrame(columns=list(REVIEW_COLUMNS)),
                      policy_version="p1", model_version="3", policy_mode="model")
        """
    )
    folder = export_dir(exports, DAY)
    left = sorted(p.name for p in folder.iterdir())
    assert left == [f".phone.csv.{pid}.tmp"]  # what the killed run left

    manifest = write_exports(
        exports,
        DAY,
        _queues(),
        pd.DataFrame(columns=list(REVIEW_COLUMNS)),
        policy_version="p1",
        model_version="3",
        policy_mode="model",
    )

    assert sorted(p.name for p in folder.iterdir()) == [
        "email.csv",
        "manifest.json",
        "phone.csv",
        "review.csv",
        "voucher.csv",
    ]
    assert manifest.rows["phone.csv"] == 3


def _decisions_warehouse(settings: Settings, days: int = 40) -> None:
    settings.root.mkdir(parents=True)
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
        con.execute(DECIDE_DDL)
        con.execute(
            "insert into marts.decisions by name select "
            "(date '2025-02-01' + interval (d) day)::date || '-' || i as decision_id, "
            "(date '2025-02-01' + interval (d) day)::date as run_date, "
            "'c' || i as customer_id, 'treated' as arm, 'email' as action, "
            "'p1' as policy_version, 'model' as policy_mode "
            f"from range({days}) a(d), range(30) b(i)"
        )


def _named_and_retired(settings: Settings) -> set[str]:
    with open_analytics(settings) as con:
        named = {
            f
            for (files,) in con.execute(f"select files from {FILES_TABLE}").fetchall()
            for f in files
        }
        retired = {
            str(r[0])
            for r in con.execute(f"select file from {RETIRED_TABLE}").fetchall()
        }
    return named | retired


def test_a_publish_killed_before_its_swap_leaves_no_files_after_the_next_publish(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home")
    _decisions_warehouse(settings)
    options = {"partition_min_rows": 100}
    publish_analytics(settings, DAY, "publish", **options)  # type: ignore[arg-type]
    data = data_directory(settings)
    before = {str(p) for p in data.rglob("*.parquet")}

    # a full publish, killed with every partition written and the catalog not
    # yet swapped in
    pid = run_killed(
        f"""
        import os
        from datetime import date
        from ml.config.settings import Settings
        from ml.analytics.publish import publish_analytics
        os.replace = die
        publish_analytics(Settings(home={str(settings.root)!r}), date(2025, 3, 2),
                          "publish", full=True, partition_min_rows=100)
        """
    )
    orphans = {str(p) for p in data.rglob("*.parquet")} - before
    assert len(orphans) == 40
    assert all(f"-{pid}@" in p for p in orphans)
    temp = [p.name for p in settings.root.iterdir() if p.name.endswith(".tmp")]
    assert temp and all(f".{pid}." in name for name in temp)

    summary = publish_analytics(settings, DAY, "publish", **options)  # type: ignore[arg-type]

    assert summary.files_removed == 40
    assert {str(p) for p in data.rglob("*.parquet")} == _named_and_retired(settings)
    assert not [p for p in settings.root.iterdir() if p.name.endswith(".tmp")]
    assert not [p for p in data.glob("*/*") if f"-{pid}@" in p.name]


def _land_good_day(settings: Settings, day: date) -> None:
    """Three customers and ten purchases of theirs landed on ``day``."""
    at = pd.Timestamp(day) + pd.Timedelta(hours=9)
    ids = ["C1", "C2", "C3"]
    rows = {
        "customers": {
            "customer_id": ids,
            "signup_date": [day] * 3,
            "plan": ["basic"] * 3,
            "region": ["north"] * 3,
            "acquisition_channel": ["organic"] * 3,
            "updated_at": [at] * 3,
        },
        "transactions": {
            "transaction_id": [f"T{i}" for i in range(10)],
            "customer_id": [ids[i % 3] for i in range(10)],
            "transaction_at": [at + pd.Timedelta(minutes=i) for i in range(10)],
            "amount": [10.0 + i for i in range(10)],
            "category": ["grocery"] * 10,
            "is_discounted": [False] * 10,
        },
    }
    for name, columns in rows.items():
        data = pa.table(columns, schema=TABLES[name].schema)
        write_partition(settings.landing_dir, name, day, data)


def test_a_step_killed_mid_way_shows_as_process_gone_until_it_is_rerun(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home")
    day = DAY
    _land_good_day(settings, day)
    pid = run_killed(
        f"""
        from datetime import date
        import ml.data.validation
        from ml.config.settings import Settings
        from ml.ops.tasks import validate_landing
        ml.data.validation.validate_landing = die  # the gate itself is where it dies
        validate_landing(date(2025, 3, 2), Settings(home={str(settings.root)!r}))
        """
    )

    status = collect_status(settings, airflow_url=NO_AIRFLOW, with_champion=False)

    [step] = status.running
    assert (step.run_date, step.step, step.pid, step.host) == (
        day,
        "validate_landing",
        pid,
        socket.gethostname(),
    )
    assert step.state == PROCESS_GONE and step.started_at is not None
    # Airflow still calls the night running: the status says its process is gone
    airflow = AirflowRuns(
        source="sqlite:///airflow.db",
        available=True,
        runs={
            "loopline_nightly": DagRunInfo(
                "loopline_nightly", "manual__x", "running", day, None, None, None
            )
        },
    )
    assert replace(status, airflow=airflow).dag_state("loopline_nightly") == (
        "running (process gone)"
    )
    shown = CliRunner().invoke(
        app, ["status"], env={"LOOPLINE_HOME": str(settings.root)}
    )
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert (
        f"step validate_landing of {day} recorded as running since" in text
        and f"(pid {pid} on {socket.gethostname()}): {PROCESS_GONE}" in text
    ), text

    # a live step is "running"; the rerun replaces the killed step's row
    with step_run(settings, day + timedelta(days=1), "decide"):
        live = collect_status(settings, airflow_url=NO_AIRFLOW, with_champion=False)
        assert [(r.step, r.state) for r in live.running] == [
            ("validate_landing", PROCESS_GONE),
            ("decide", "running"),
        ]
        record_run(settings, day + timedelta(days=1), "decide", "success", {})
    validate_landing(day, settings)
    after = collect_status(settings, airflow_url=NO_AIRFLOW, with_champion=False)
    assert [(r.step, r.state) for r in after.running] == []
