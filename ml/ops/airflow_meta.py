"""Airflow's metadata database, read with plain SQL (``ml/`` never imports Airflow).

``loopline status`` needs the state of the last run of each Loopline DAG. Only
Airflow knows it: ``ops.runs`` holds the steps that recorded themselves, so a run
that failed before its step could record (a late partition, a dbt error, any
retrain task), or one still queued or running, is not there. The metadata is read
through SQLAlchemy (a dependency of Airflow's, so always installed) with a few
SELECTs on ``dag_run``, ``task_instance``, ``asset`` and ``asset_event``:

* embedded (``loopline run``/``demo``, tests): the SQLite file
  ``$LOOPLINE_HOME/airflow/airflow.db``, opened read-only (``mode=ro``);
* the compose stack: the Postgres database of ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``
  (set in every Airflow container), in read-only transactions.

These tables are Airflow's internals, not an API: the columns used here are those of
Airflow 3.3, and a schema change shows up as an "unavailable" source, not a crash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from ml.config.settings import Settings

LOOPLINE_DAGS = ("loopline_nightly", "loopline_outcomes", "loopline_retrain")
RETRAIN_DAG = "loopline_retrain"
RETRAIN_ASSET = "retrain_requested"
CONNECT_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class DagRunInfo:
    """The last run of one DAG (the most recently created one), and the latest
    run date that succeeded (``last_success``)."""

    dag_id: str
    run_id: str
    state: str
    logical_date: date | None
    run_after: datetime | None
    created_at: datetime | None
    end_date: datetime | None
    failed_tasks: list[str] = field(default_factory=list)
    last_success: date | None = None

    @property
    def run_date(self) -> date | None:
        """The logical date, or for a run without one (asset-triggered) the day
        it was scheduled after."""
        if self.logical_date is not None:
            return self.logical_date
        return self.run_after.date() if self.run_after else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "state": self.state,
            "logical_date": _iso(self.logical_date),
            "run_after": _iso(self.run_after),
            "created_at": _iso(self.created_at),
            "end_date": _iso(self.end_date),
            "failed_tasks": list(self.failed_tasks),
            "last_success": _iso(self.last_success),
        }


@dataclass(frozen=True)
class AssetEventInfo:
    """One emitted asset event (for ``retrain_requested``: day, reasons, tags)."""

    id: int
    timestamp: datetime
    extra: dict[str, Any]


@dataclass
class AirflowRuns:
    """What the metadata database says about Loopline's DAGs."""

    source: str
    available: bool
    runs: dict[str, DagRunInfo | None] = field(default_factory=dict)
    retrain_requests: list[AssetEventInfo] = field(default_factory=list)
    retrain_runs_created: list[datetime] = field(default_factory=list)
    error: str | None = None


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def metadata_url(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """Airflow's own setting when it is in the environment (the compose stack,
    an embedded run), else the embedded SQLite file under ``LOOPLINE_HOME``."""
    env = os.environ if environ is None else environ
    configured = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    return configured or f"sqlite:///{settings.airflow_home / 'airflow.db'}"


def _timestamp(value: Any) -> datetime | None:
    """A UTC datetime from what the driver returns (SQLite: text; Postgres:
    datetime)."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _day(value: Any) -> date | None:
    stamp = _timestamp(value)
    return stamp.date() if stamp else None


def _engine(url: str) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if not path or path == ":memory:" or not os.path.isfile(path):
            raise FileNotFoundError(f"no Airflow metadata database at {path!r}")
        # read-only: the status never takes a write lock on Airflow's database
        return create_engine(
            f"sqlite:///file:{path}?mode=ro&uri=true",
            poolclass=NullPool,
            connect_args={"timeout": CONNECT_TIMEOUT_SECONDS},
        )
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": "-c default_transaction_read_only=on",
        }
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def safe_url(url: str) -> str:
    """``url`` without its password (for display)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def read_airflow_runs(
    url: str, dag_ids: tuple[str, ...] = LOOPLINE_DAGS
) -> AirflowRuns:
    """The last run of each of ``dag_ids``, the ``retrain_requested`` events and
    the creation times of the retrain runs. Never raises: an unreachable or
    unknown database gives ``available=False`` with the error."""
    from sqlalchemy import text

    found = AirflowRuns(source=safe_url(url), available=False)
    try:
        engine = _engine(url)
        try:
            with engine.connect() as con:
                for dag_id in dag_ids:
                    found.runs[dag_id] = _last_run(con, text, dag_id)
                events = con.execute(
                    text(
                        "select e.id, e.timestamp, e.extra from asset_event e "
                        "join asset a on a.id = e.asset_id where a.name = :name "
                        "order by e.id"
                    ),
                    {"name": RETRAIN_ASSET},
                ).fetchall()
                created = con.execute(
                    text("select created_at from dag_run where dag_id = :d"),
                    {"d": RETRAIN_DAG},
                ).fetchall()
        finally:
            engine.dispose()
    except Exception as exc:
        found.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return found
    found.retrain_requests = [
        AssetEventInfo(int(i), stamp, _extra(extra))
        for i, ts, extra in events
        if (stamp := _timestamp(ts)) is not None
    ]
    found.retrain_runs_created = [t for (c,) in created if (t := _timestamp(c))]
    found.available = True
    return found


def _extra(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if not value:
        return {}
    loaded = json.loads(value)
    return loaded if isinstance(loaded, dict) else {}


def _last_run(con: Any, text: Any, dag_id: str) -> DagRunInfo | None:
    row = con.execute(
        text(
            "select run_id, state, logical_date, run_after, created_at, end_date "
            "from dag_run where dag_id = :d order by id desc limit 1"
        ),
        {"d": dag_id},
    ).fetchone()
    if row is None:
        return None
    run_id, state, logical, run_after, created, end = row
    failed = con.execute(
        text(
            "select task_id from task_instance where dag_id = :d and run_id = :r "
            "and state = 'failed' order by task_id"
        ),
        {"d": dag_id, "r": run_id},
    ).fetchall()
    success = con.execute(
        text(
            "select logical_date, run_after from dag_run where dag_id = :d "
            "and state = 'success' "
            "order by coalesce(logical_date, run_after) desc limit 1"
        ),
        {"d": dag_id},
    ).fetchone()
    last_success = None
    if success is not None:
        last_success = _day(success[0]) or _day(success[1])
    return DagRunInfo(
        dag_id=dag_id,
        run_id=str(run_id),
        state=str(state),
        logical_date=_day(logical),
        run_after=_timestamp(run_after),
        created_at=_timestamp(created),
        end_date=_timestamp(end),
        failed_tasks=[str(t) for (t,) in failed],
        last_success=last_success,
    )
