"""Failure alerts: the line and its hints, the notifiers (a real local HTTP server
as the Slack webhook, a real local SMTP server), and ``ops.alerts`` in a real
DuckDB warehouse, including while another process holds its write lock."""

from __future__ import annotations

import importlib
import json
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from email import message_from_bytes
from pathlib import Path

import pytest

from ml.config.settings import Settings
from ml.data.dbt import DbtBuildError
from ml.data.validation.errors import GateFailure, ValidationGateError
from ml.ops.alerts import (
    HINTS,
    Alert,
    build_alert,
    email_message,
    format_alert,
    notify,
    record_alert,
    slack_payload,
    spooled_alerts,
)
from ml.ops.tasks import LandingNotReadyError
from ml.storage.warehouse import connect

DAY = date(2025, 3, 17)
FAILED_AT = datetime(2025, 3, 18, 2, 14, 5, tzinfo=UTC)


def _schema_fault() -> ValidationGateError:
    return ValidationGateError(
        [
            GateFailure(
                "transactions",
                DAY,
                "schema",
                "expect_table_columns_to_match_set",
                None,
                "missing column amount; unexpected column amt",
            ),
            GateFailure(
                "customers",
                DAY,
                "bad_rows",
                "expect_column_values_to_not_be_null",
                "customer_id",
                "12% of rows have a null customer_id",
            ),
        ]
    )


def _alert(
    error: BaseException | str | None = None,
    task: str = "validate_landing",
    failed_at: datetime = FAILED_AT,
) -> Alert:
    return build_alert(
        "loopline_nightly",
        task,
        DAY,
        _schema_fault() if error is None else error,
        run_id="scheduled__2025-03-17T00:00:00+00:00",
        try_number=1,
        failed_at=failed_at,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def _alerts(settings: Settings) -> list[tuple]:
    with connect(settings.warehouse_path, read_only=True) as con:
        return con.execute(
            "select dag_id, task_id, run_date, error_type, cause, hint, line, "
            "notified, failed_at from ops.alerts order by failed_at"
        ).fetchall()


# --- the line and the hints ---------------------------------------------------------


def test_a_gate_failure_is_one_line_with_dag_task_date_cause_and_hint() -> None:
    alert = _alert()
    line = format_alert(alert)
    assert "\n" not in line
    assert line.startswith(
        "FAILED loopline_nightly.validate_landing run_date=2025-03-17: "
        "ValidationGateError: landing gate failed (2 faults): transactions "
        "dt=2025-03-17: missing column amount"
    )
    # the first fault's kind (schema) picks the hint
    assert "-> a schema fault: make the partition's columns and types match" in line
    assert "clear validate_landing of 2025-03-17" in line
    assert alert.error_type == "ml.data.validation.errors.ValidationGateError"
    assert alert.line == line


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            LandingNotReadyError("landing partition not ready for 2025-03-17"),
            "the partition is late or missing",
        ),
        (DbtBuildError("1 model failed"), "read $LOOPLINE_HOME/dbt/logs/dbt.log"),
        (
            ValueError("no matured training examples for as_of 2025-03-17"),
            "not enough labelled history",
        ),
        (RuntimeError("scoring needs a model: no champion"), "no champion model"),
        (ValueError("something else"), "read the task log of loopline_nightly."),
        ("a bare message, no exception", "read the task log of"),
    ],
)
def test_hints_by_exception_class_and_message(
    error: BaseException | str, expected: str
) -> None:
    alert = _alert(error, task="check_landing")
    assert expected in alert.hint
    assert "{" not in alert.hint  # every placeholder is filled


def test_every_hint_names_a_real_exception_class() -> None:
    for hint in HINTS:
        module, _, name = hint.exception.rpartition(".")
        found = getattr(importlib.import_module(module), name)
        assert issubclass(found, BaseException), hint.exception


def test_the_line_caps_a_long_cause_and_the_row_keeps_it() -> None:
    alert = _alert(RuntimeError("x" * 1000 + "\nsecond line"))
    assert len(alert.cause) > 1000 and "; second line" in alert.cause
    assert "x" * 400 not in alert.line
    assert "x…" in alert.line and "second line" not in alert.line


# --- notifiers ----------------------------------------------------------------------


def test_slack_payload() -> None:
    alert = _alert()
    payload = slack_payload(alert)
    assert json.loads(json.dumps(payload)) == payload
    assert payload["text"] == alert.line
    header, body = payload["blocks"]
    assert "`loopline_nightly.validate_landing` failed" in header["text"]["text"]
    assert "run date 2025-03-17" in header["text"]["text"]
    cause, hint = (f["text"] for f in body["fields"])
    assert cause.startswith("*Cause* (ml.data.validation.errors.ValidationGateError)\n")
    assert "missing column amount" in cause
    assert hint == f"*What to do*\n{alert.hint}"


def test_email_message(settings: Settings) -> None:
    configured = settings.model_copy(
        update={"alert_email": "ops@example.org, oncall@example.org"}
    )
    message = email_message(_alert(), configured)
    assert message["Subject"] == (
        "[loopline] loopline_nightly.validate_landing failed (2025-03-17)"
    )
    assert message["To"] == "ops@example.org, oncall@example.org"
    assert message["From"] == "loopline@localhost"
    body = message.get_content()
    assert body.startswith("FAILED loopline_nightly.validate_landing")
    assert "what to do:\na schema fault" in body


def test_nothing_is_sent_by_default(settings: Settings) -> None:
    assert settings.alert_slack_webhook is None and settings.alert_email is None
    assert notify(settings, _alert()) == {}
    record = record_alert(settings, _alert())
    assert record.stored == "ops.alerts" and record.notified == {}
    [row] = _alerts(settings)
    assert json.loads(row[7]) == {}


def test_slack_webhook_receives_the_alert(settings: Settings, webhook) -> None:  # type: ignore[no-untyped-def]
    configured = Settings(home=settings.home, alert_slack_webhook=webhook.url)
    alert = _alert()
    record = record_alert(configured, alert)
    assert record.notified == {"slack": "sent"}
    [posted] = webhook.received
    assert posted["path"] == "/services/T0/B0/token"
    assert posted["content_type"] == "application/json"
    assert posted["json"] == slack_payload(alert)
    [row] = _alerts(settings)
    assert json.loads(row[7]) == {"slack": "sent"}


def test_a_failing_webhook_still_stores_the_alert(settings: Settings, webhook) -> None:  # type: ignore[no-untyped-def]
    webhook.status = 500
    configured = Settings(home=settings.home, alert_slack_webhook=webhook.url)
    record = record_alert(configured, _alert())
    assert record.stored == "ops.alerts"
    assert record.notified["slack"].startswith("failed: urllib.error.HTTPError")
    [row] = _alerts(settings)
    assert json.loads(row[7])["slack"].startswith("failed")


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib.send_message."""

    def handle(self) -> None:
        self.wfile.write(b"220 localhost test SMTP\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                self.wfile.write(b"354 end with <CRLF>.<CRLF>\r\n")
                data = b""
                while (chunk := self.rfile.readline()) != b".\r\n":
                    data += chunk
                self.server.messages.append(data)  # type: ignore[attr-defined]
                self.wfile.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp_server() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.messages = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_email_goes_through_the_smtp_relay(
    settings: Settings, smtp_server: socketserver.ThreadingTCPServer
) -> None:
    configured = Settings(
        home=settings.home,
        alert_email="ops@example.org",
        alert_smtp_host="127.0.0.1",
        alert_smtp_port=smtp_server.server_address[1],
    )
    record = record_alert(configured, _alert())
    assert record.notified == {"email": "sent"}
    [raw] = smtp_server.messages  # type: ignore[attr-defined]
    message = message_from_bytes(raw)
    assert message["Subject"].startswith("[loopline] loopline_nightly.validate_landing")
    assert message["To"] == "ops@example.org"


def test_empty_notifier_settings_mean_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # compose passes an unset ${VAR:-} as an empty string
    monkeypatch.setenv("LOOPLINE_ALERT_SLACK_WEBHOOK", "")
    monkeypatch.setenv("LOOPLINE_ALERT_EMAIL", " ")
    settings = Settings()
    assert settings.alert_slack_webhook is None and settings.alert_email is None
    monkeypatch.setenv("LOOPLINE_ALERT_SLACK_WEBHOOK", "https://hooks.example/x")
    configured = Settings()
    assert configured.alert_slack_webhook is not None
    # the webhook is a secret: it does not show in a printed settings object
    assert "hooks.example" not in repr(configured)


# --- storage ------------------------------------------------------------------------


def test_a_locked_warehouse_spools_the_alert_until_the_next_write(
    settings: Settings,
) -> None:
    from ml.ops.status import collect_status

    settings.root.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
            "print('locked', flush=True); sys.stdin.read()",
            str(settings.warehouse_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        first = _alert()
        record = record_alert(settings, first, retry_delays=(0.01, 0.01))
        assert record.stored == "spool"
        assert record.error and "lock" in record.error.lower()
        assert spooled_alerts(settings) == [first]
        # the status still shows the alert while the warehouse is busy
        status = collect_status(
            settings, airflow_url="sqlite:///nowhere.db", with_champion=False
        )
        assert status.warehouse_error and "busy" in status.warehouse_error
        assert [a.line for a in status.alerts] == [first.line]
        assert status.alerts[0].pending
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()

    second = _alert(
        LandingNotReadyError("late"),
        task="check_landing",
        failed_at=FAILED_AT.replace(minute=20),
    )
    assert record_alert(settings, second).stored == "ops.alerts"
    rows = _alerts(settings)
    assert [r[1] for r in rows] == ["validate_landing", "check_landing"]
    assert rows[0][6] == first.line
    assert not settings.alerts_spool.exists()
