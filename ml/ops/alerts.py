"""Failure alerts: one clear line per failed task, kept in ``ops.alerts``.

A failed Airflow task calls :func:`record_alert` through the ``on_failure_callback``
of every Loopline DAG (``plugins/loopline_airflow/alerts.py`` adapts Airflow's
context). :func:`build_alert` turns the exception into an :class:`Alert`: which DAG,
task and run date, the cause in one line, and what to do about it, looked up in
:data:`HINTS` by the exception's class (and, for a failed landing gate, by the kind
of fault). :func:`record_alert` then

1. logs the line (it shows in the Airflow task log),
2. posts it to the notifiers that are configured (a Slack incoming webhook,
   e-mail through an SMTP relay; both off by default, see ``Settings.alert_*``),
3. writes a row to ``ops.alerts``. The callback runs in the failed task's
   process, after Airflow has reported the failure, so another writer may already
   hold the warehouse: the write is retried a few times, and if the file stays
   locked the alert waits in ``$LOOPLINE_HOME/alerts.pending.jsonl`` until the next
   alert is written (``loopline status`` shows both).

Nothing here raises into the caller for a notifier or a storage problem: an alert
must never mask the failure it reports.
"""

from __future__ import annotations

import json
import logging
import os
import re
import smtplib
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from ml.config.settings import Settings

logger = logging.getLogger(__name__)

# Seconds to wait between attempts to take the warehouse's write lock.
RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0)
# The line stays readable; the full cause is kept in ops.alerts.cause.
LINE_CAUSE_CHARS = 300
STORED_CAUSE_CHARS = 4000
NOTIFY_TIMEOUT_SECONDS = 10.0

DEFAULT_HINT = (
    "read the task log of {dag_id}.{task_id} for {run_date}, fix the cause, then "
    "clear the task in Airflow (or rerun the date)"
)


@dataclass(frozen=True)
class Hint:
    """What to do about one kind of failure.

    ``exception`` is the dotted name of an exception class; it matches the error's
    class or any of its bases. ``message``, when set, is a regular expression the
    error's message must also match. ``text`` may use ``{dag_id}``, ``{task_id}``
    and ``{run_date}``.
    """

    exception: str
    text: str
    message: str | None = None


# The first matching entry wins, so specific entries come before general ones.
HINTS: tuple[Hint, ...] = (
    Hint(
        "ml.ops.tasks.LandingNotReadyError",
        "the partition is late or missing: land it under "
        "landing/<table>/dt={run_date}/ (a day without data: an empty file plus a "
        "_NO_ROWS marker), then clear {task_id} of {run_date}",
    ),
    Hint(
        "ml.data.validation.errors.ValidationGateError",
        "nothing of {run_date} was loaded: see ops.validation_results and "
        "ops.quarantine for that day, fix the partition at its source and land it "
        "again, then clear validate_landing of {run_date}",
    ),
    Hint(
        "ml.data.validation.errors.MartValidationError",
        "the feature snapshot of {run_date} failed its gate (volume against the day "
        "before, nulls, ranges): see ops.validation_results for that day, fix the "
        "cause upstream, then clear dbt_build of {run_date} and what follows",
    ),
    Hint(
        "ml.data.dbt.DbtBuildError",
        "a dbt model or test failed: read $LOOPLINE_HOME/dbt/logs/dbt.log, fix the "
        "model or the data, then clear dbt_build of {run_date}",
    ),
    Hint(
        "ml.prediction.score.ScoreSchemaError",
        "the champion's inputs no longer match marts.customer_features: retrain "
        "(loopline train --as-of {run_date}) or roll back (loopline rollback), then "
        "clear score of {run_date}",
    ),
    Hint(
        "ml.prediction.registry.ModelLoadError",
        "the champion cannot be loaded from MLflow: check its artifacts "
        "(loopline models) or roll back (loopline rollback), then clear "
        "{task_id} of {run_date}",
    ),
    Hint(
        "ml.prediction.registry.RegistryError",
        "the model registry refused the operation: check the versions and aliases "
        "with loopline models, then clear {task_id}",
    ),
    Hint(
        "ml.decision.decide_step.DecideError",
        "{run_date} has no feature snapshot: run loopline_nightly for that date "
        "from validate_landing on",
    ),
    Hint(
        "airflow.sdk.exceptions.AirflowSensorTimeout",
        "the nightly run of {run_date} did not decide in time: make "
        "loopline_nightly succeed for that date, then clear check_nightly",
    ),
    Hint(
        "ml.prediction.training.HistoryTooShortError",
        "the log is younger than training needs (the error says how many days): "
        "land more history, or shorten split in config/model.yml, then clear "
        "{task_id}",
    ),
    Hint(
        "builtins.ValueError",
        "not enough labelled history for this training date: train as of a later "
        "day, or rebuild more history (loopline rebuild), then clear {task_id}",
        message=r"no matured training examples",
    ),
    Hint(
        "builtins.Exception",
        "no champion model: train and promote one (loopline train --as-of "
        "{run_date}, or loopline promote VERSION --reason ...), then clear {task_id}",
        message=r"\bno champion\b",
    ),
    Hint(
        "duckdb.IOException",
        "another process held the warehouse (DuckDB allows one writer): close other "
        "sessions (notebooks, a long loopline sql), keep every writer in the "
        "warehouse pool, then clear {task_id} of {run_date}",
        message=r"lock",
    ),
    Hint(
        "mlflow.exceptions.MlflowException",
        "an MLflow call failed: check that the tracking store "
        "(LOOPLINE_MLFLOW_TRACKING_URI) is reachable, then clear {task_id}",
    ),
    Hint(
        "builtins.ConnectionError",
        "a service did not answer (MLflow server, database): check it is up, then "
        "clear {task_id}",
    ),
)

# A failed landing gate: the kind of its first fault (GateFailure.kind) decides.
GATE_HINTS: dict[str, str] = {
    "schema": (
        "a schema fault: make the partition's columns and types match "
        "docs/data_contract.md, land it again, then clear validate_landing of "
        "{run_date}; nothing of that day was loaded"
    ),
    "missing_partition": HINTS[0].text,
    "empty_partition": HINTS[0].text,
    "bad_rows": (
        'too many bad rows: see loopline sql "from ops.quarantine where run_date = '
        "'{run_date}'\", fix the source and land the partition again, then clear "
        "validate_landing of {run_date}"
    ),
}
GATE_KIND_ORDER = ("schema", "missing_partition", "empty_partition", "bad_rows")


@dataclass(frozen=True)
class Alert:
    """One failed task, ready to log, notify and store."""

    dag_id: str
    task_id: str
    run_date: date | None
    error_type: str
    cause: str
    hint: str
    failed_at: datetime
    run_id: str | None = None
    try_number: int | None = None

    @property
    def line(self) -> str:
        """The alert as one line (see :func:`format_alert`)."""
        return format_alert(self)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_date"] = self.run_date.isoformat() if self.run_date else None
        data["failed_at"] = self.failed_at.isoformat()
        data["line"] = self.line
        return data


@dataclass(frozen=True)
class AlertRecord:
    """Where an alert went: ``stored`` is ``ops.alerts`` or ``spool``."""

    alert: Alert
    stored: str
    notified: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def error_name(error: BaseException) -> str:
    """``module.QualName`` of an exception's class (builtins without module)."""
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else _dotted(cls)


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def one_line(text: str) -> str:
    """Collapse a (multi-line) message to one line."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    joined = "; ".join(parts)
    # "headline:; first fault" reads better as "headline: first fault"
    return re.sub(r":; ", ": ", joined)


def hint_for(
    error: BaseException | None, dag_id: str, task_id: str, run_date: date | None
) -> str:
    """What to do about ``error`` (the first matching :data:`HINTS` entry)."""
    text = DEFAULT_HINT
    if error is not None:
        names = {_dotted(cls) for cls in type(error).__mro__}
        message = str(error)
        for hint in HINTS:
            if hint.exception in names and (
                hint.message is None or re.search(hint.message, message, re.I)
            ):
                text = hint.text
                break
        kinds = {getattr(f, "kind", None) for f in getattr(error, "failures", ())}
        if "ml.data.validation.errors.ValidationGateError" in names:
            for kind in GATE_KIND_ORDER:
                if kind in kinds:
                    text = GATE_HINTS[kind]
                    break
    day = run_date.isoformat() if run_date else "this run"
    return text.format(dag_id=dag_id, task_id=task_id, run_date=day)


def build_alert(
    dag_id: str,
    task_id: str,
    run_date: date | None,
    error: BaseException | str | None,
    *,
    run_id: str | None = None,
    try_number: int | None = None,
    failed_at: datetime | None = None,
) -> Alert:
    """An :class:`Alert` for a failed task; ``error`` is the exception (or its
    message when only that is known)."""
    if isinstance(error, BaseException):
        error_type = error_name(error)
        cause = one_line(str(error)) or error_type
        exc: BaseException | None = error
    else:
        error_type = "unknown"
        cause = one_line(error or "") or "the task failed without an exception"
        exc = None
    return Alert(
        dag_id=dag_id,
        task_id=task_id,
        run_date=run_date,
        error_type=error_type,
        cause=cause[:STORED_CAUSE_CHARS],
        hint=hint_for(exc, dag_id, task_id, run_date),
        failed_at=failed_at or datetime.now(UTC),
        run_id=run_id,
        try_number=try_number,
    )


def format_alert(alert: Alert) -> str:
    """``FAILED dag.task run_date=D: Type: cause -> what to do`` on one line."""
    cause = alert.cause
    if len(cause) > LINE_CAUSE_CHARS:
        cause = cause[: LINE_CAUSE_CHARS - 1].rstrip() + "…"
    day = alert.run_date.isoformat() if alert.run_date else "-"
    kind = alert.error_type.rsplit(".", 1)[-1]
    return (
        f"FAILED {alert.dag_id}.{alert.task_id} run_date={day}: {kind}: {cause} "
        f"-> {alert.hint}"
    )


# --- notifiers ----------------------------------------------------------------------


def slack_payload(alert: Alert) -> dict[str, Any]:
    """The JSON body for a Slack incoming webhook: the line as ``text`` (what
    notifications show) and blocks with the cause and the hint."""
    day = alert.run_date.isoformat() if alert.run_date else "-"
    return {
        "text": alert.line,
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*Loopline: `{alert.dag_id}.{alert.task_id}` failed* "
                    f"(run date {day})",
                },
            },
            {
                "type": "section",
                "fields": [
                    {
                        "type": "mrkdwn",
                        # a block field holds at most 2000 characters
                        "text": f"*Cause* ({alert.error_type})\n{alert.cause[:1800]}",
                    },
                    {"type": "mrkdwn", "text": f"*What to do*\n{alert.hint[:1800]}"},
                ],
            },
        ],
    }


def email_message(alert: Alert, settings: Settings) -> EmailMessage:
    """The e-mail for ``alert`` (recipients from ``settings.alert_email``)."""
    day = alert.run_date.isoformat() if alert.run_date else "-"
    message = EmailMessage()
    message["Subject"] = f"[loopline] {alert.dag_id}.{alert.task_id} failed ({day})"
    message["From"] = settings.alert_email_from
    message["To"] = ", ".join(email_recipients(settings))
    message.set_content(
        f"{alert.line}\n\n"
        f"DAG:        {alert.dag_id}\n"
        f"task:       {alert.task_id}\n"
        f"run date:   {day}\n"
        f"run id:     {alert.run_id or '-'}\n"
        f"failed at:  {alert.failed_at.isoformat()}\n"
        f"error:      {alert.error_type}\n\n"
        f"cause:\n{alert.cause}\n\n"
        f"what to do:\n{alert.hint}\n"
    )
    return message


def email_recipients(settings: Settings) -> list[str]:
    """The addresses of ``settings.alert_email`` (comma-separated)."""
    return [a.strip() for a in (settings.alert_email or "").split(",") if a.strip()]


def post_slack(webhook_url: str, alert: Alert) -> None:
    """POST the alert to a Slack incoming webhook; raises on an HTTP error."""
    body = json.dumps(slack_payload(alert)).encode()
    request = urllib.request.Request(
        webhook_url,
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=NOTIFY_TIMEOUT_SECONDS) as reply:
        reply.read()


def send_email(settings: Settings, alert: Alert) -> None:
    """Send the alert through the SMTP relay of the settings (no login, no TLS)."""
    with smtplib.SMTP(
        settings.alert_smtp_host,
        settings.alert_smtp_port,
        timeout=NOTIFY_TIMEOUT_SECONDS,
    ) as smtp:
        smtp.send_message(email_message(alert, settings))


def notify(settings: Settings, alert: Alert) -> dict[str, str]:
    """Send ``alert`` to every configured notifier: ``{name: "sent" | "failed:
    ..."}``, empty when none is configured (the default)."""
    results: dict[str, str] = {}
    if settings.alert_slack_webhook is not None:
        try:
            post_slack(settings.alert_slack_webhook.get_secret_value(), alert)
            results["slack"] = "sent"
        except Exception as exc:  # a notifier must not mask the task's failure
            results["slack"] = f"failed: {error_name(exc)}: {one_line(str(exc))}"
    if email_recipients(settings):
        try:
            send_email(settings, alert)
            results["email"] = "sent"
        except Exception as exc:
            results["email"] = f"failed: {error_name(exc)}: {one_line(str(exc))}"
    for name, result in results.items():
        if result != "sent":
            logger.warning("alert notifier %s %s", name, result)
    return results


# --- storage ------------------------------------------------------------------------


def _row(alert: Alert, notified: dict[str, str]) -> list[Any]:
    return [
        alert.failed_at.astimezone(UTC).replace(tzinfo=None),
        alert.dag_id,
        alert.task_id,
        alert.run_id,
        alert.run_date,
        alert.try_number,
        alert.error_type,
        alert.cause,
        alert.hint,
        alert.line,
        json.dumps(notified, sort_keys=True),
    ]


def _spooled_rows(path: Path) -> list[list[Any]]:
    rows = []
    for text in path.read_text().splitlines():
        if not text.strip():
            continue
        data = json.loads(text)
        alert = alert_from_dict(data)
        rows.append(_row(alert, data.get("notified") or {}))
    return rows


def alert_from_dict(data: dict[str, Any]) -> Alert:
    """The :class:`Alert` of :meth:`Alert.as_dict` (as spooled)."""
    return Alert(
        dag_id=str(data["dag_id"]),
        task_id=str(data["task_id"]),
        run_date=date.fromisoformat(data["run_date"]) if data.get("run_date") else None,
        error_type=str(data["error_type"]),
        cause=str(data["cause"]),
        hint=str(data["hint"]),
        failed_at=datetime.fromisoformat(data["failed_at"]),
        run_id=data.get("run_id"),
        try_number=data.get("try_number"),
    )


def spooled_alerts(settings: Settings) -> list[Alert]:
    """Alerts waiting in the spool for the warehouse's write lock."""
    path = settings.alerts_spool
    if not path.is_file():
        return []
    return [alert_from_dict(json.loads(t)) for t in path.read_text().splitlines() if t]


def _spool(settings: Settings, alert: Alert, notified: dict[str, str]) -> None:
    settings.alerts_spool.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(alert.as_dict() | {"notified": notified}, sort_keys=True)
    # one write of one line in append mode: lines of concurrent writers never mix
    with open(settings.alerts_spool, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def _is_lock_error(exc: Exception) -> bool:
    import duckdb

    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def write_alert_rows(settings: Settings, rows: Sequence[list[Any]]) -> None:
    """Insert ``rows`` into ``ops.alerts`` together with any spooled alerts, in one
    transaction; the spool is emptied only once they are committed."""
    from ml.contract.tables import ALERTS_DDL, ALERTS_TABLE
    from ml.storage.warehouse import connect

    claimed: Path | None = None
    spool = settings.alerts_spool
    if spool.is_file():
        # rename first: an alert spooled meanwhile starts a new file
        claimed = spool.with_name(f"{spool.name}.{os.getpid()}.flushing")
        os.replace(spool, claimed)
    try:
        pending = _spooled_rows(claimed) if claimed else []
        settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
        with connect(settings.warehouse_path) as con:
            con.execute(ALERTS_DDL)
            con.execute("begin transaction")
            con.executemany(
                f"insert into {ALERTS_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [*pending, *rows],
            )
            con.execute("commit")
    except Exception:
        if claimed is not None:
            # give the claimed lines back to the spool
            with open(spool, "a", encoding="utf-8") as handle:
                handle.write(claimed.read_text())
            claimed.unlink()
        raise
    if claimed is not None:
        claimed.unlink()


def record_alert(
    settings: Settings,
    alert: Alert,
    *,
    retry_delays: Sequence[float] = RETRY_DELAYS,
) -> AlertRecord:
    """Log ``alert``, notify, and store it in ``ops.alerts`` (or the spool when the
    warehouse stays locked). Never raises for a notifier or storage problem."""
    logger.error(alert.line)
    notified = notify(settings, alert)
    row = _row(alert, notified)
    error: str | None = None
    for attempt, delay in enumerate([0.0, *retry_delays]):
        if delay:
            time.sleep(delay)
        try:
            write_alert_rows(settings, [row])
            return AlertRecord(alert, "ops.alerts", notified)
        except Exception as exc:
            error = f"{error_name(exc)}: {one_line(str(exc))}"
            if not _is_lock_error(exc):
                break
            logger.info("warehouse locked, alert write attempt %d: %s", attempt, error)
    try:
        _spool(settings, alert, notified)
    except Exception as exc:
        logger.exception("the alert could not be spooled either")
        return AlertRecord(alert, "log only", notified, f"{error}; spool: {exc}")
    logger.warning(
        "alert kept in %s until the warehouse can be written: %s",
        settings.alerts_spool,
        error,
    )
    return AlertRecord(alert, "spool", notified, error)
