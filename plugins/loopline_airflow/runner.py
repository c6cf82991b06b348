"""Run Loopline's real DAGs in-process with ``dag.test()``.

This is how ``loopline run``, ``loopline backfill`` and the demo drive Airflow on
embedded defaults: SQLite metadata under ``$LOOPLINE_HOME/airflow`` and no scheduler.
The DAG files are the same ones ``airflow standalone`` or the compose stack load.

Airflow reads its configuration when it is first imported, so :func:`configure`
must run before anything imports ``airflow`` in this process.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from types import FrameType
from typing import TYPE_CHECKING, Any

from loopline_airflow import WAREHOUSE_POOL
from ml.config.settings import REPO_ROOT, Settings

if TYPE_CHECKING:
    from airflow.sdk.definitions.dag import DAG

log = logging.getLogger(__name__)


def airflow_env(settings: Settings, log_level: str = "WARNING") -> dict[str, str]:
    """Environment for an embedded Airflow rooted in ``settings.airflow_home``."""
    home = settings.airflow_home
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags_dir),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": log_level,
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "LOOPLINE_HOME": str(settings.root),
    }


def configure(settings: Settings, log_level: str = "WARNING") -> None:
    """Point this process's Airflow at ``settings`` (before Airflow is imported)."""
    env = airflow_env(settings, log_level)
    if (
        "airflow" in sys.modules
        and os.environ.get("AIRFLOW_HOME") != env["AIRFLOW_HOME"]
    ):
        raise RuntimeError(
            "Airflow was imported before it was configured for "
            f"{settings.airflow_home}; run this in a fresh process."
        )
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    os.environ.update(env)
    # Raised by a FastAPI module Airflow imports; nothing Loopline can act on.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette")
    # Raised when the standard provider's sensors module (the DAGs' sensor) is
    # imported: the provider itself still uses the old name.
    warnings.filterwarnings(
        "ignore",
        message=r"The `airflow\.utils\.operator_helpers\.determine_kwargs` attribute",
    )


def send_logs_to(stream: Any) -> None:
    """Write this process's Airflow log lines (its own and those of the tasks
    ``dag.test`` runs in-process, Python warnings included) to ``stream`` instead
    of the console. Call after :func:`configure`."""
    import airflow  # noqa: F401  (importing it configures logging; replaced here)
    from airflow.sdk.log import configure_logging

    configure_logging(output=stream, colored_console_log=False)


def ensure_metadata(settings: Settings) -> None:
    """Create the SQLite metadata database (once) and the one-slot warehouse pool."""
    from airflow.models.pool import Pool
    from airflow.utils import db

    if not (settings.airflow_home / "airflow.db").exists():
        db.initdb()
    Pool.create_or_update_pool(
        WAREHOUSE_POOL,
        slots=1,
        description="Every DuckDB warehouse writer: DuckDB allows one writing process.",
        include_deferred=False,
    )


def _no_alarm_warning_here(record: logging.LogRecord) -> bool:
    """Drop initdb's "no SIGALRM outside the main thread" warning of the pre-warm
    thread (every other record passes)."""
    return not (
        record.threadName == PREWARM_THREAD
        and str(record.msg).startswith("timeout_with_traceback requires")
    )


PREWARM_THREAD = "airflow-prewarm"


class Prewarm:
    """Airflow's start-up in a background thread: import it, create the metadata
    database and build the in-process Execution API that ``dag.test()`` talks to.

    The first in-process DAG run of a process pays for all three (measured here:
    about 3 s of imports, 3 s of ``initdb``, and 5 s to build the API app plus
    10 s or more for its first request, when it generates its versioned routes).
    A caller with other work first (the demo simulates and rebuilds its history)
    starts this after :func:`configure` and calls :meth:`wait` before its first
    run. The work is mostly imports and SQLite, so it overlaps with DuckDB and
    NumPy work in the main thread. A failure here is only logged: the first
    :func:`run_dag` does the same work again and raises it there.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(
            target=self._run, name=PREWARM_THREAD, daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        began = time.perf_counter()
        # initdb guards its migration with a SIGALRM timeout, which only the main
        # thread can set; it then warns and goes on without one. Expected here.
        logging.getLogger("airflow.utils.db").addFilter(_no_alarm_warning_here)
        try:
            import httpx
            from airflow.sdk.execution_time.supervisor import in_process_api_server

            ensure_metadata(self._settings)
            api = in_process_api_server()
            # The API builds its versioned routes on its first request: ask it
            # for its health (the transport is the one every task's client uses).
            client = httpx.Client(transport=api.transport, base_url="http://in-process")
            client.get("/health/ping").raise_for_status()
        except BaseException as exc:  # logged by wait(); run_dag redoes the work
            self.error = exc
        finally:
            self.seconds = time.perf_counter() - began

    def wait(self) -> str:
        """Block until the start-up is done; say how it went (a failure is logged
        and described, never raised)."""
        self._thread.join()
        if self.error is not None:
            log.warning("Airflow start-up in the background failed: %r", self.error)
            return (
                f"Airflow start-up in the background failed ({self.error!r}); "
                "the first run starts it"
            )
        return f"Airflow started in the background ({self.seconds:.1f} s)"


@lru_cache(maxsize=1)
def _dagbag(dags_dir: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dags_dir)
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag


def get_dag(settings: Settings, dag_id: str) -> DAG:
    """Load one of Loopline's DAGs from the repo's ``dags/`` folder."""
    dag = _dagbag(str(settings.dags_dir)).dags.get(dag_id)
    if dag is None:
        raise KeyError(f"no DAG named {dag_id!r} in {settings.dags_dir}")
    return dag


# Task states that mean the task's code ran to its end (a skip is the task's own
# decision, e.g. a short-circuit); any other state at the end of a run means the
# task never ran or never finished.
RAN_STATES = frozenset({"success", "skipped"})


@dataclass
class DagRunOutcome:
    """The result of one in-process DAG run.

    ``ok`` needs more than Airflow's run state: Airflow ends a run "success" when
    it created no task instance at all (a logical date before the DAG's
    ``start_date``), so a run counts as done only when every task of the DAG ran
    and at least one of them succeeded. ``problem`` says why it did not.
    """

    dag_id: str
    logical_date: date
    state: str
    seconds: float
    task_states: dict[str, str] = field(default_factory=dict)
    expected_tasks: tuple[str, ...] = ()
    start_date: date | None = None

    @property
    def not_run_tasks(self) -> list[str]:
        """Tasks of the DAG that did not run to their end (no instance, or an
        instance left in a state such as ``None``, ``upstream_failed``, ``removed``)."""
        expected = self.expected_tasks or tuple(self.task_states)
        return [t for t in expected if self.task_states.get(t) not in RAN_STATES]

    @property
    def problem(self) -> str | None:
        """Why this run does not count as done, in one line; None when it does."""
        if self.state != "success":
            failed = self.failed_tasks
            return f"{self.dag_id} {self.logical_date}: run {self.state}" + (
                f" (failed: {', '.join(failed)})" if failed else ""
            )
        if not self.task_states:
            before = self.start_date is not None and self.logical_date < self.start_date
            return f"{self.dag_id} {self.logical_date}: Airflow ran no task" + (
                f" (the date lies before the DAG's start_date {self.start_date})"
                if before
                else ""
            )
        not_run = self.not_run_tasks
        if not_run:
            return (
                f"{self.dag_id} {self.logical_date}: the run ended without running "
                f"{', '.join(not_run)}"
            )
        if "success" not in self.task_states.values():
            return f"{self.dag_id} {self.logical_date}: every task was skipped"
        return None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def failed_tasks(self) -> list[str]:
        return [t for t, s in self.task_states.items() if s == "failed"]


# What signal.signal takes and returns as a handler (typeshed's private _HANDLER).
SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


@contextmanager
def _sigterm_handler_kept() -> Iterator[None]:
    """During ``dag.test()``, keep this process's own SIGTERM handler (a
    ``loopline`` command's, which stops the command).

    ``dag.test()`` runs each task in this process, and Airflow's task runner then
    installs a SIGTERM handler of its own that only calls the operator's
    ``on_kill`` and is never put back: from the first task on, the process
    ignored SIGTERM. Inside the block ``signal.signal`` leaves a Python-level
    SIGTERM handler in place (every other call goes through)."""
    original = signal.signal

    def keep_sigterm(
        signalnum: int | signal.Signals, handler: SignalHandler
    ) -> SignalHandler:
        current = signal.getsignal(signalnum)
        if signalnum == signal.SIGTERM and callable(current):
            return current
        return original(signalnum, handler)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal = keep_sigterm
    try:
        yield
    finally:
        signal.signal = original


# Whether this process has begun a DAG run yet (see _full_collections_deferred).
_FIRST_RUN_BEGUN = threading.Event()
# A generation-2 threshold no run reaches: the old generation is then never
# collected automatically (a night makes a few hundred middle-generation ones).
NO_FULL_COLLECTIONS = 2**31 - 1


@contextmanager
def _full_collections_deferred() -> Iterator[None]:
    """During this process's first DAG run, hold off the garbage collector's full
    collections; put its thresholds back when the run ends.

    The first run loads most of what the process will ever hold: Airflow's
    scheduling and API modules, dbt, GX, MLflow, scikit-learn, about 900,000
    objects that live as long as the process. CPython scans every tracked object
    each time the old generation has grown by a quarter, so a fresh ``loopline
    run`` made 9 full collections during its run, 1.5 s at 2,000 customers
    (``benchmarks/bench_first_run_gc.py``). The young generations are collected
    as usual meanwhile (what dies young is freed as before), and so is anything
    freed by reference counting. Cyclic garbage that reached the old generation
    waits for the first full collection after the run, which the restored
    thresholds bring. Every later run of the process (a backfill's, the demo's)
    collects as usual.
    """
    if _FIRST_RUN_BEGUN.is_set():
        yield
        return
    _FIRST_RUN_BEGUN.set()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, NO_FULL_COLLECTIONS)
    try:
        yield
    finally:
        gc.set_threshold(young, middle, old)


# In-process runs (``dag.test``) are interactive: a command, the demo, a test. A
# task there gets at most IN_PROCESS_RETRIES more tries, at most
# IN_PROCESS_RETRY_DELAY apart (a warehouse held for a moment by another process
# is usually free again), so that a task that really fails fails the run within
# seconds instead of after the minutes of backoff a scheduled run waits. A sensor
# looks once (its timeout becomes 0): nothing runs beside the command that could
# make it true, so waiting would only hang it; a partition missing for
# check_landing fails the run at once with its cause.
IN_PROCESS_RETRIES = 1
IN_PROCESS_RETRY_DELAY = timedelta(seconds=2)


def limit_in_process(dag: DAG) -> None:
    """Cap the retries and sensor waits of ``dag``'s tasks for an in-process run
    (see :data:`IN_PROCESS_RETRIES`); the DAG files keep their own values for the
    scheduler. Idempotent."""
    from airflow.sdk.bases.sensor import BaseSensorOperator

    for task in dag.tasks:
        task.retries = min(task.retries or 0, IN_PROCESS_RETRIES)
        task.retry_delay = min(task.retry_delay, IN_PROCESS_RETRY_DELAY)
        task.retry_exponential_backoff = 0
        task.max_retry_delay = None
        if isinstance(task, BaseSensorOperator):
            task.timeout = 0


class StartDateError(ValueError):
    """A logical date before the DAG's start_date: Airflow would run no task."""


@contextmanager
def hold_warehouse(settings: Settings) -> Iterator[None]:
    """Keep the warehouse open for the DAG runs inside the block.

    In-process, every task of a run opens the warehouse; each open costs a new
    database instance, and each close a checkpoint of what the task wrote. Held,
    every task's connection (dbt's too) is a cursor of one instance, which is
    checkpointed once, when the block ends. This process is the only writer
    meanwhile, as it is during any of its tasks (``ml.storage.warehouse.hold``).
    A home without a warehouse yet is left as it is.
    """
    from ml.storage.warehouse import hold

    if not settings.warehouse_path.is_file():
        yield
        return
    with hold(settings.warehouse_path):
        yield


def run_dag(
    settings: Settings,
    dag_id: str,
    logical_date: date,
    conf: dict[str, Any] | None = None,
    *,
    check_start: bool = True,
) -> DagRunOutcome:
    """Run ``dag_id`` for ``logical_date`` in this process and report task states.

    Raises :class:`StartDateError` before starting a run that Airflow would end
    "success" without a task (``check_start=False`` starts it anyway). Any run
    that ran nothing comes back with ``ok`` False and its ``problem``. Retries and
    sensor waits are capped first (:func:`limit_in_process`).
    """
    ensure_metadata(settings)
    dag = get_dag(settings, dag_id)
    start = dag.start_date.date() if dag.start_date is not None else None
    if check_start and start is not None and logical_date < start:
        raise StartDateError(
            f"{dag_id}: the logical date {logical_date} lies before the DAGs' "
            f"start_date {start}, and Airflow runs no task before it. Set "
            "LOOPLINE_DAGS_START_DATE (YYYY-MM-DD) to the first day of your data "
            "or earlier."
        )
    limit_in_process(dag)
    when = datetime(logical_date.year, logical_date.month, logical_date.day, tzinfo=UTC)
    started = time.perf_counter()
    with _sigterm_handler_kept(), _full_collections_deferred():
        dag_run = dag.test(logical_date=when, run_conf=conf)
    seconds = time.perf_counter() - started
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    return DagRunOutcome(
        dag_id,
        logical_date,
        str(dag_run.state),
        seconds,
        states,
        expected_tasks=tuple(dag.task_ids),
        start_date=start,
    )
