"""``python -m loopline_airflow.launch COMPONENT [ARGS]`` is ``airflow COMPONENT
[ARGS]``, with three additions for Loopline's local services.

**The log servers listen on loopback only.** The scheduler (for its task
processes) and the triggerer each start a small web server that serves the logs
of running tasks to the api-server; Airflow binds it to every interface (its host
is not configurable). Here it binds to ``127.0.0.1`` (:func:`serve_logs_on_loopback`),
and the task processes report ``127.0.0.1`` as their host name
(:func:`loopback_hostname`, ``[core] hostname_callable``), which is where the
api-server then asks for those logs.

**The api-server takes SQLite's write lock before a savepoint.** Airflow runs
its SQLite metadata in write-ahead-log mode, where a transaction that read before
another process committed can no longer write: SQLite fails the write at once,
whatever the busy timeout. Creating a backfill does exactly that: each run is
created (or cleared, when reprocessing) inside a savepoint that reads first, and
on a busy machine the scheduler's and the other services' heartbeats commit in
between. ``POST /api/v2/backfills`` then answered 503 "database is locked"
(Airflow: "not supported on SQLite under concurrent access") and left a
half-created backfill that blocked the next one (409). When a savepoint would
start a transaction, the api-server now begins it with ``BEGIN IMMEDIATE``: the
transaction waits for the write lock (up to the busy timeout) instead of failing
halfway. Only those transactions take the lock early: beginning every api-server
transaction that way (SQLAlchemy's pysqlite recipe) made plain reads wait behind
the other services' open write transactions until they timed out.

**The scheduler preloads the libraries of Loopline's tasks.** The LocalExecutor
forks its workers from the scheduler, and each worker forks the process of every
task it runs (Linux), so a task process starts with what the scheduler had
imported before its executor started. Measured on the 2-core development
machine, importing GX costs about 16 s of CPU, MLflow with scikit-learn 14 s and
dbt 7 s, in every task process that needs them. Imported once here (about 27 s
of CPU and 400 MB, shared copy-on-write with the forks), every task starts warm:
what ``gunicorn --preload`` does. It helps the LocalExecutor on Linux only; a
Celery or Kubernetes worker imports what it needs itself.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

# Third-party libraries first, then the ml modules the tasks call (their heavy
# imports are inside functions, so these are cheap once the libraries are loaded).
PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow",
    "duckdb",
    "sklearn.ensemble",
    "great_expectations",
    "dbt.cli.main",
    "mlflow",
    "ml.ops.tasks",
    "ml.data.validation.landing_gate",
    "ml.data.validation.marts_gate",
    "ml.data.dbt",
    "ml.prediction.score",
    "ml.decision.decide_step",
    "ml.feedback.outcomes",
    "ml.feedback.drift",
    "ml.feedback.learning",
    "ml.feedback.retrain_check",
    "ml.prediction.training",
)


def preload(modules: tuple[str, ...] = PRELOAD) -> None:
    for name in modules:
        importlib.import_module(name)


def begin_immediate_savepoints() -> None:
    """A savepoint that starts an SQLite transaction (this process's SQLAlchemy
    engines, later ones included) starts it with ``BEGIN IMMEDIATE``."""
    from sqlalchemy import event
    from sqlalchemy.engine import Connection, Engine

    def savepoint(connection: Connection, name: str) -> None:
        if connection.dialect.name != "sqlite":
            return
        dbapi_connection: Any = connection.connection.dbapi_connection
        # pysqlite opens no transaction for reads; a SAVEPOINT outside one would
        # begin a deferred transaction whose first read fixes its snapshot
        if not getattr(dbapi_connection, "in_transaction", True):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(Engine, "savepoint", savepoint)


LOG_SERVER_HOST = "127.0.0.1"


def loopback_hostname() -> str:
    """The host name of every Loopline service process (``[core]
    hostname_callable``): where its log server listens."""
    return LOG_SERVER_HOST


def serve_logs_on_loopback(port: int | None = None) -> None:
    """``airflow.utils.serve_logs.serve_logs`` bound to :data:`LOG_SERVER_HOST`
    instead of every interface (the same app and settings otherwise)."""
    import uvicorn
    from airflow.configuration import conf
    from setproctitle import setproctitle

    setproctitle("airflow serve-logs")
    port = port or conf.getint("logging", "WORKER_LOG_SERVER_PORT")
    uvicorn.run(
        "airflow.utils.serve_logs.log_server:get_app",
        host=LOG_SERVER_HOST,
        port=port,
        log_level=conf.get("logging", "uvicorn_logging_level", fallback="info").lower(),
        log_config=None,
        access_log=False,
    )


def serve_logs_on_loopback_only() -> None:
    """Make the scheduler and the triggerer start :func:`serve_logs_on_loopback`
    (both import ``serve_logs`` from ``airflow.utils.serve_logs`` when they
    start it)."""
    import airflow.utils.serve_logs as serve_logs

    serve_logs.serve_logs = serve_logs_on_loopback  # type: ignore[assignment]


def main(argv: list[str]) -> None:
    component, *rest = argv
    if component == "api-server":
        begin_immediate_savepoints()
    if component in ("scheduler", "triggerer"):
        serve_logs_on_loopback_only()
    if component == "scheduler":
        preload()
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", component, *rest]
    airflow_main()


if __name__ == "__main__":
    main(sys.argv[1:])
