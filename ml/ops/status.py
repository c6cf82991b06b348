"""The pipeline's state for an operator: ``loopline status``.

:func:`collect_status` gathers, for a status day (by default the latest run date the
pipeline knows):

* the last run of each DAG with its state, run date, failed tasks and last success,
  from Airflow's metadata database (:mod:`ml.ops.airflow_meta` explains why not
  ``ops.runs``);
* the champion version, its training date and age on the status day, and its
  test-window ROC AUC (MLflow registry);
* the day's action-queue sizes, from the export manifest (the file downstream
  systems read, so what it says was delivered);
* the latest validation results per suite and the quarantined rows, from
  ``ops.validation_results`` and ``ops.quarantine``;
* the last retrain verdict (``ops.retrain_events``) and a pending retrain: a verdict
  that fired with no ``loopline_retrain`` run created after its request;
* the most recent failure alerts (``ops.alerts``, and the spool of alerts waiting
  for the warehouse's lock);
* the steps ``ops.runs`` still records as ``running``, each with its process id
  and host: a step whose process no longer exists on this host was killed
  before it could record its outcome (``process gone``), and a DAG run Airflow
  still shows as running on that date is shown so too.

The warehouse is opened read-only, for a handful of small queries, and closed at
once: any open connection, a reader included, makes a DuckDB writer fail. A warehouse
locked by a running task, an unreachable MLflow or Airflow database each leave their
part empty with the reason, and the rest is still shown.

:func:`day_status` in :mod:`ml.ops.day_status` is the demo's one-line-per-day view; this
module is the operator's view of the current state.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

from ml.action.exports import read_manifest
from ml.config.settings import Settings
from ml.ops.airflow_meta import (
    AirflowRuns,
    AssetEventInfo,
    metadata_url,
    read_airflow_runs,
)
from ml.ops.tasks import RETRAIN_STEPS
from ml.storage.procs import hostname, process_alive
from ml.storage.warehouse import duckdb_config, table_columns, table_exists

ALERTS_SHOWN = 5
PROCESS_GONE = "process gone"
# Seconds between attempts to open the warehouse while a writer holds it.
OPEN_RETRY_DELAYS = (0.2, 0.5, 1.0)


@dataclass(frozen=True)
class ChampionInfo:
    """The model the nightly run scores with."""

    version: str | None
    trained_as_of: date | None = None
    age_days: int | None = None
    test_roc_auc: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class QueueInfo:
    """The action queues exported for one run date (``exports/dt=D/``)."""

    day: date
    exported: bool
    rows: dict[str, int] = field(default_factory=dict)
    policy_mode: str | None = None
    model_version: str | None = None


@dataclass(frozen=True)
class SuiteResult:
    """One GX suite's results of one run date."""

    suite_name: str
    expectations: int
    failed: int
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class QuarantineCount:
    """Quarantined rows of one table and reason; ``loaded`` False: set aside by a
    run that stopped and loaded nothing (None: written before the flag existed)."""

    table_name: str
    reason: str
    rows: int
    loaded: bool | None = True


@dataclass(frozen=True)
class RunningStep:
    """A step ``ops.runs`` records as running, and whether its process still
    runs: ``running``, ``process gone`` (killed before it recorded its outcome),
    or ``unknown`` (another host's process, or no pid recorded)."""

    run_date: date
    step: str
    pid: int | None
    host: str | None
    started_at: datetime | None
    state: str


@dataclass(frozen=True)
class RetrainVerdict:
    """One row of ``ops.retrain_events``."""

    day: date
    fired: bool
    reasons: str = ""
    blocked: str = ""


@dataclass(frozen=True)
class PendingRetrain:
    """A retrain the rules asked for that has not started."""

    day: date
    reasons: str
    state: str
    requested_at: datetime | None = None


@dataclass(frozen=True)
class AlertRow:
    """One failure alert (``pending``: still in the spool, not in ops.alerts)."""

    failed_at: datetime
    dag_id: str
    task_id: str
    run_date: date | None
    error_type: str
    cause: str
    hint: str
    line: str
    pending: bool = False


@dataclass
class OpsStatus:
    """Everything ``loopline status`` shows."""

    home: str
    day: date | None
    airflow: AirflowRuns
    champion: ChampionInfo
    queues: QueueInfo | None = None
    validation_day: date | None = None
    validation: list[SuiteResult] = field(default_factory=list)
    quarantine_day: date | None = None
    quarantine: list[QuarantineCount] = field(default_factory=list)
    quarantine_total: int = 0
    last_verdict: RetrainVerdict | None = None
    pending_retrain: PendingRetrain | None = None
    alerts: list[AlertRow] = field(default_factory=list)
    alerts_total: int = 0
    running: list[RunningStep] = field(default_factory=list)
    warehouse_error: str | None = None

    def dag_state(self, dag_id: str) -> str | None:
        """The state of the DAG's last run as shown: Airflow's, and for a run
        Airflow still calls running whose step's process is gone, that too."""
        run = self.airflow.runs.get(dag_id)
        if run is None:
            return None
        if run.state == "running" and any(
            r.state == PROCESS_GONE and r.run_date == run.run_date for r in self.running
        ):
            return f"running ({PROCESS_GONE})"
        return run.state

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly (dates and times as ISO strings)."""
        data = _jsonable(asdict(self))
        data["airflow"] = {
            "source": self.airflow.source,
            "available": self.airflow.available,
            "error": self.airflow.error,
            "runs": {
                dag_id: run.as_dict() | {"shown_state": self.dag_state(dag_id)}
                if run
                else None
                for dag_id, run in self.airflow.runs.items()
            },
        }
        return dict(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


# --- pure pieces ----------------------------------------------------------------


def pending_retrain(
    last_fired: RetrainVerdict | None, airflow: AirflowRuns
) -> PendingRetrain | None:
    """The retrain still owed for ``last_fired`` (the latest verdict that fired):

    * its ``retrain_requested`` event (the one whose ``day`` is the verdict's) was
      followed by a ``loopline_retrain`` run: nothing is pending;
    * the event exists and no retrain run was created after it: pending, waiting
      for ``loopline_retrain``;
    * no event for that day: pending, the request was never emitted (the outcomes
      run failed or is still running before ``request_retrain``);
    * without Airflow's metadata the state is ``unknown``.
    """
    if last_fired is None or not last_fired.fired:
        return None
    if not airflow.available:
        return PendingRetrain(last_fired.day, last_fired.reasons, "unknown")
    day = last_fired.day.isoformat()
    events: list[AssetEventInfo] = [
        e for e in airflow.retrain_requests if str(e.extra.get("day")) == day
    ]
    if not events:
        return PendingRetrain(
            last_fired.day, last_fired.reasons, "not emitted (no retrain_requested)"
        )
    requested = events[-1].timestamp
    if any(created >= requested for created in airflow.retrain_runs_created):
        return None
    return PendingRetrain(
        last_fired.day, last_fired.reasons, "waiting for loopline_retrain", requested
    )


def status_day(
    explicit: date | None, airflow: AirflowRuns, latest_run: date | None
) -> date | None:
    """The day the status is about: ``explicit``, else the latest of the last
    nightly run's date and the latest run date of the nightly and feedback steps
    in ``ops.runs``."""
    if explicit is not None:
        return explicit
    nightly = airflow.runs.get("loopline_nightly")
    candidates = [d for d in (nightly.run_date if nightly else None, latest_run) if d]
    return max(candidates) if candidates else None


# --- readers --------------------------------------------------------------------


def champion_info(settings: Settings, day: date | None) -> ChampionInfo:
    """The champion's version, training date, age on ``day`` and test ROC AUC."""
    from ml.prediction.registry import champion_metrics, trained_as_of
    from ml.prediction.tracking import is_tracking_server

    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        return ChampionInfo(None, error="no MLflow store yet: no model trained")
    try:
        found = champion_metrics(settings)
        if found is None:
            return ChampionInfo(None)
        version, metrics = found
        trained = trained_as_of(settings, version)
    except Exception as exc:
        where = "server" if is_tracking_server(uri) else "store"
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        return ChampionInfo(
            None, error=f"MLflow {where} {uri}: {type(exc).__name__}: {first}"
        )
    age = (day - trained).days if day and trained else None
    auc = metrics.get("roc_auc")
    return ChampionInfo(version, trained, age, float(auc) if auc is not None else None)


def queue_info(settings: Settings, day: date) -> QueueInfo:
    """The rows of each file exported for ``day`` (from its manifest)."""
    manifest = read_manifest(settings.exports_dir, day)
    if manifest is None:
        return QueueInfo(day, exported=False)
    files = manifest.get("files")
    rows = {
        name.removesuffix(".csv"): int(info.get("rows", 0))
        for name, info in (files.items() if isinstance(files, dict) else [])
        if isinstance(info, dict)
    }
    mode, model = manifest.get("policy_mode"), manifest.get("model_version")
    return QueueInfo(
        day,
        exported=True,
        rows=rows,
        policy_mode=str(mode) if mode is not None else None,
        model_version=str(model) if model is not None else None,
    )


def _open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection, retried briefly while a writer holds the file."""
    for delay in (*OPEN_RETRY_DELAYS, None):
        try:
            return duckdb.connect(str(path), read_only=True, config=duckdb_config())
        except duckdb.IOException as exc:
            if delay is None or "lock" not in str(exc).lower():
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")


def _latest(
    con: duckdb.DuckDBPyConnection, table: str, column: str, day: date | None
) -> date | None:
    schema, name = table.split(".")
    if not table_exists(con, schema, name):
        return None
    where = f"where {column} <= $d" if day else ""
    row = con.execute(
        f"select max({column}) from {table} {where}", {"d": day} if day else {}
    ).fetchone()
    return row[0] if row and row[0] is not None else None


def _latest_run_date(con: duckdb.DuckDBPyConnection) -> date | None:
    """The latest run date of the nightly and feedback steps in ``ops.runs``. The
    retrain steps are left out: their run date is the training date, which a run
    started by hand may set anywhere (by default the day it was started)."""
    if not table_exists(con, "ops", "runs"):
        return None
    marks = ", ".join("?" for _ in RETRAIN_STEPS)
    row = con.execute(
        f"select max(run_date) from ops.runs where step not in ({marks})",
        list(RETRAIN_STEPS),
    ).fetchone()
    return row[0] if row and row[0] is not None else None


def _read_warehouse(
    status: OpsStatus, con: duckdb.DuckDBPyConnection, explicit: date | None
) -> None:
    """Fill the warehouse parts of ``status`` (and its day) from ``con``."""
    latest_run = _latest_run_date(con)
    status.day = status_day(explicit, status.airflow, latest_run)
    day = status.day
    status.validation_day = _latest(con, "ops.validation_results", "run_date", day)
    if status.validation_day is not None:
        rows = con.execute(
            """
            select suite_name, count(*),
                count(*) filter (where not success),
                list(distinct table_name || coalesce('.' || column_name, '') || ': '
                    || expectation_type) filter (where not success)
            from ops.validation_results where run_date = ?
            group by suite_name order by suite_name
            """,
            [status.validation_day],
        ).fetchall()
        status.validation = [
            SuiteResult(str(s), int(n), int(f), sorted(str(x) for x in failures or []))
            for s, n, f, failures in rows
        ]
    status.quarantine_day = _latest(con, "ops.quarantine", "run_date", day)
    if status.quarantine_day is not None:
        loaded = (
            "loaded"
            if "loaded" in table_columns(con, "ops.quarantine")
            else "cast(null as boolean)"
        )
        rows = con.execute(
            f"select table_name, reason, count(*), {loaded} as loaded "
            "from ops.quarantine where run_date = ? group by all "
            "order by 3 desc, 1, 2, 4",
            [status.quarantine_day],
        ).fetchall()
        status.quarantine = [
            QuarantineCount(str(t), str(r), int(n), flag) for t, r, n, flag in rows
        ]
        total = con.execute("select count(*) from ops.quarantine").fetchone()
        status.quarantine_total = int(total[0]) if total else 0
    if table_exists(con, "ops", "runs"):
        status.running = _running_steps(con)
    if table_exists(con, "ops", "retrain_events"):
        where = "where day <= $d" if day else ""
        params = {"d": day} if day else {}
        last = con.execute(
            "select day, fired, reasons, blocked from ops.retrain_events "
            f"{where} order by day desc limit 1",
            params,
        ).fetchone()
        fired = con.execute(
            "select day, fired, reasons, blocked from ops.retrain_events "
            f"{where + ' and' if where else 'where'} fired order by day desc limit 1",
            params,
        ).fetchone()
        status.last_verdict = _verdict(last)
        status.pending_retrain = pending_retrain(_verdict(fired), status.airflow)
    if table_exists(con, "ops", "alerts"):
        rows = con.execute(
            "select failed_at, dag_id, task_id, run_date, error_type, cause, hint, "
            "line from ops.alerts order by failed_at desc limit ?",
            [ALERTS_SHOWN],
        ).fetchall()
        status.alerts = [AlertRow(*row) for row in rows]
        total = con.execute("select count(*) from ops.alerts").fetchone()
        status.alerts_total = int(total[0]) if total else 0


def step_state(pid: int | None, host: str | None, started_at: datetime | None) -> str:
    """``running`` when the process ``pid`` of ``host`` still runs (this host
    only), ``process gone`` when it does not, ``unknown`` when it cannot be
    told (another host, or no pid)."""
    if pid is None or host is None or host != hostname():
        return "unknown"
    return "running" if process_alive(pid, since=started_at) else PROCESS_GONE


def _running_steps(con: duckdb.DuckDBPyConnection) -> list[RunningStep]:
    """The steps ``ops.runs`` records as running, oldest run date first."""
    if "pid" not in table_columns(con, "ops.runs"):
        return []  # a warehouse no step has opened since the columns came
    rows = con.execute(
        "select run_date, step, pid, host, started_at from ops.runs "
        "where status = 'running' order by run_date, started_at, step"
    ).fetchall()
    return [
        RunningStep(day, str(step), pid, host, started, step_state(pid, host, started))
        for day, step, pid, host, started in rows
    ]


def _verdict(row: tuple[Any, ...] | None) -> RetrainVerdict | None:
    if row is None:
        return None
    day, fired, reasons, blocked = row
    return RetrainVerdict(day, bool(fired), str(reasons or ""), str(blocked or ""))


def _spooled(settings: Settings) -> list[AlertRow]:
    from ml.ops.alerts import spooled_alerts

    try:
        alerts = spooled_alerts(settings)
    except (OSError, ValueError, KeyError):
        return []
    return [
        AlertRow(
            a.failed_at.replace(tzinfo=None),
            a.dag_id,
            a.task_id,
            a.run_date,
            a.error_type,
            a.cause,
            a.hint,
            a.line,
            pending=True,
        )
        for a in alerts
    ]


def collect_status(
    settings: Settings,
    day: date | None = None,
    airflow_url: str | None = None,
    with_champion: bool = True,
) -> OpsStatus:
    """The :class:`OpsStatus` of ``day`` (default: the latest run date known).

    ``airflow_url`` is Airflow's metadata database (default
    :func:`ml.ops.airflow_meta.metadata_url`). ``with_champion=False`` skips MLflow.
    """
    airflow = read_airflow_runs(airflow_url or metadata_url(settings))
    status = OpsStatus(
        home=str(settings.root), day=day, airflow=airflow, champion=ChampionInfo(None)
    )
    path = settings.warehouse_path
    if not path.exists():
        status.warehouse_error = f"no warehouse at {path} (run loopline init)"
        status.day = status_day(day, airflow, None)
    else:
        try:
            con = _open_read_only(path)
        except duckdb.Error as exc:
            status.warehouse_error = (
                "warehouse busy (a task is writing it); try again: "
                f"{str(exc).splitlines()[0][:200]}"
            )
            status.day = status_day(day, airflow, None)
        else:
            try:
                _read_warehouse(status, con, day)
            finally:
                con.close()
    spooled = _spooled(settings)
    if spooled:
        merged = sorted([*spooled, *status.alerts], key=lambda a: a.failed_at)
        status.alerts = list(reversed(merged))[:ALERTS_SHOWN]
        status.alerts_total += len(spooled)
    if status.day is not None:
        status.queues = queue_info(settings, status.day)
    if with_champion:
        status.champion = champion_info(settings, status.day)
    return status
