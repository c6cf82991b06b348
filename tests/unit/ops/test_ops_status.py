"""``loopline status``: what it reads from a real warehouse, an export manifest and
Airflow's metadata, the pending-retrain rule, and the settings it depends on."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ml.action.exports import REVIEW_COLUMNS, write_exports
from ml.cli.app import app
from ml.config.settings import Settings
from ml.contract.schema import EXPORT_COLUMNS
from ml.feedback.feedback_tables import DDL as MONITOR_DDL
from ml.ops.airflow_meta import AirflowRuns, AssetEventInfo, DagRunInfo, metadata_url
from ml.ops.alerts import build_alert, record_alert
from ml.ops.status import RetrainVerdict, collect_status, pending_retrain
from ml.ops.tasks import LandingNotReadyError, record_run
from ml.storage.warehouse import connect, ensure_schemas

DAY = date(2025, 3, 17)
REQUESTED = datetime(2025, 3, 18, 1, 0, tzinfo=UTC)


def _airflow(
    requests: list[AssetEventInfo], created: list[datetime], available: bool = True
) -> AirflowRuns:
    return AirflowRuns(
        source="sqlite:///airflow.db",
        available=available,
        retrain_requests=requests,
        retrain_runs_created=created,
    )


FIRED = RetrainVerdict(DAY, True, "calibration: ece 0.09 > 0.06")
REQUEST = AssetEventInfo(7, REQUESTED, {"day": DAY.isoformat(), "reasons": []})


@pytest.mark.parametrize(
    ("verdict", "airflow", "state"),
    [
        (None, _airflow([], []), None),
        (RetrainVerdict(DAY, False), _airflow([], []), None),
        # requested, and a retrain run was created after the request
        (FIRED, _airflow([REQUEST], [REQUESTED + timedelta(seconds=3)]), None),
        # requested; the only retrain run is older than the request
        (
            FIRED,
            _airflow([REQUEST], [REQUESTED - timedelta(days=9)]),
            "waiting for loopline_retrain",
        ),
        # the verdict fired but no request for its day was emitted
        (
            FIRED,
            _airflow([AssetEventInfo(6, REQUESTED, {"day": "2025-03-01"})], []),
            "not emitted (no retrain_requested)",
        ),
        (FIRED, _airflow([], [], available=False), "unknown"),
    ],
)
def test_pending_retrain(
    verdict: RetrainVerdict | None, airflow: AirflowRuns, state: str | None
) -> None:
    found = pending_retrain(verdict, airflow)
    assert (found.state if found else None) == state
    if found is not None:
        assert found.day == DAY and found.reasons == FIRED.reasons


def test_metadata_url_prefers_airflows_own_setting(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert metadata_url(settings, {}) == f"sqlite:///{tmp_path}/airflow/airflow.db"
    stack = "postgresql+psycopg2://u:p@postgres:5432/airflow"
    assert metadata_url(settings, {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": stack}) == (
        stack
    )


def test_mlflow_tracking_uri_is_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOOPLINE_MLFLOW_TRACKING_URI", raising=False)
    settings = Settings(home=tmp_path / "h")
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path}/h/mlflow.db"
    monkeypatch.setenv("LOOPLINE_MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert Settings(home=tmp_path / "h").mlflow_tracking_uri == "http://mlflow:5000"


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    """A warehouse with a day of gate results, quarantine, a fired retrain verdict
    and an alert, and that day's exported queues."""
    settings = Settings(home=tmp_path / "home")
    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
        con.execute(MONITOR_DDL)
        for day, suite, failed in [
            (DAY - timedelta(days=1), "transactions", 0),
            (DAY, "transactions", 1),
            (DAY, "customers", 0),
        ]:
            for i in range(3):
                con.execute(
                    "insert into ops.validation_results (run_date, suite_name, "
                    "table_name, partition_date, expectation_type, column_name, "
                    "severity, success) values (?, ?, ?, ?, ?, ?, 'row', ?)",
                    [
                        day,
                        suite,
                        suite,
                        day,
                        f"expect_{i}",
                        "amount" if i == 0 else None,
                        not (i < failed),
                    ],
                )
        for day, reason, n in [
            (DAY - timedelta(days=1), "negative amount", 4),
            (DAY, "negative amount", 2),
            (DAY, "unknown customer", 1),
        ]:
            for _ in range(n):
                con.execute(
                    "insert into ops.quarantine (run_date, table_name, "
                    "partition_date, reason) values (?, 'transactions', ?, ?)",
                    [day, day, reason],
                )
        con.execute(
            "insert into ops.retrain_events (day, fired, reasons, blocked) values "
            "(?, true, 'calibration: ece 0.09 > 0.06', ''), (?, false, '', '')",
            [DAY - timedelta(days=2), DAY - timedelta(days=1)],
        )
    record_run(settings, DAY, "decide", "success", {})
    phone = pd.DataFrame(
        [[f"d{i}", f"C{i}", "call", 1.5, "ev", "3", "p1"] for i in range(3)],
        columns=list(EXPORT_COLUMNS),
    )
    write_exports(
        settings.exports_dir,
        DAY,
        {"phone": phone},
        pd.DataFrame(columns=list(REVIEW_COLUMNS)),
        policy_version="p1",
        model_version="3",
        policy_mode="model",
    )
    record_alert(
        settings,
        build_alert(
            "loopline_nightly",
            "check_landing",
            DAY + timedelta(days=1),
            LandingNotReadyError("landing partition not ready for 2025-03-18"),
        ),
    )
    return settings


def test_collect_status_reads_the_warehouse_and_the_exports(home: Settings) -> None:
    status = collect_status(home, airflow_url="sqlite:///no/such/airflow.db")

    assert not status.airflow.available
    assert "no Airflow metadata database" in (status.airflow.error or "")
    assert status.day == DAY  # the latest run date in ops.runs
    assert status.warehouse_error is None
    assert status.queues is not None and status.queues.exported
    assert status.queues.rows == {"phone": 3, "voucher": 0, "email": 0, "review": 0}
    assert (status.queues.policy_mode, status.queues.model_version) == ("model", "3")
    assert status.validation_day == DAY
    by_suite = {s.suite_name: s for s in status.validation}
    assert (by_suite["transactions"].expectations, by_suite["transactions"].failed) == (
        3,
        1,
    )
    assert by_suite["transactions"].failures == ["transactions.amount: expect_0"]
    assert by_suite["customers"].failed == 0
    assert status.quarantine_day == DAY
    assert [(q.reason, q.rows) for q in status.quarantine] == [
        ("negative amount", 2),
        ("unknown customer", 1),
    ]
    assert status.quarantine_total == 7
    assert status.last_verdict == RetrainVerdict(DAY - timedelta(days=1), False)
    # fired two days before, and Airflow's metadata cannot say whether it ran
    assert status.pending_retrain is not None
    assert status.pending_retrain.state == "unknown"
    [alert] = status.alerts
    assert (alert.dag_id, alert.task_id, alert.run_date) == (
        "loopline_nightly",
        "check_landing",
        DAY + timedelta(days=1),
    )
    assert "the partition is late or missing" in alert.hint
    assert status.champion.version is None
    assert "no MLflow store" in (status.champion.error or "")


def test_an_earlier_day_shows_that_days_results(home: Settings) -> None:
    earlier = DAY - timedelta(days=1)
    status = collect_status(home, earlier, airflow_url="sqlite:///nowhere.db")
    assert status.day == earlier
    assert status.validation_day == earlier
    assert [(q.reason, q.rows) for q in status.quarantine] == [("negative amount", 4)]
    assert status.queues is not None and not status.queues.exported


def test_status_command_table_and_json(
    home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_HOME", str(home.home))
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)
    runner = CliRunner()

    shown = runner.invoke(app, ["status"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "Loopline status for 2025-03-17" in shown.output
    assert "DAG runs: unavailable" in shown.output
    assert "loopline_nightly.check_landing run date 2025-03-18" in shown.output
    assert "what to do: the partition is late or missing" in shown.output
    assert "pending retrain" in shown.output

    result = runner.invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["day"] == "2025-03-17"
    assert data["queues"]["rows"]["phone"] == 3
    assert data["alerts"][0]["task_id"] == "check_landing"
    assert data["airflow"]["available"] is False
    assert data["pending_retrain"]["day"] == "2025-03-15"


def test_status_of_an_empty_home(tmp_path: Path) -> None:
    status = collect_status(
        Settings(home=tmp_path / "none"), airflow_url="sqlite:///nowhere.db"
    )
    assert status.day is None and status.queues is None
    assert status.warehouse_error and "no warehouse" in status.warehouse_error
    assert status.alerts == [] and status.champion.version is None


def test_dag_run_date_falls_back_to_run_after() -> None:
    when = datetime(2025, 3, 18, 4, 0, tzinfo=UTC)
    run = DagRunInfo("loopline_retrain", "asset__1", "success", None, when, when, None)
    assert run.run_date == date(2025, 3, 18)
