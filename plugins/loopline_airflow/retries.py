"""How Loopline's tasks retry, in one place.

A task that opens the DuckDB warehouse can find it busy: DuckDB allows one writing
process, and a writer fails at once while any other process holds the file (a
notebook, a query on the live file, ``loopline status`` for a moment). The DAGs
already keep their own writers apart (the one-slot ``warehouse`` pool), so a held
warehouse is brief and the likeliest transient failure. Every task in the pool
therefore retries: :func:`warehouse_task` gives it the pool and
:data:`WAREHOUSE_RETRIES` retries after :data:`RETRY_DELAY`, doubling (with
Airflow's jitter) up to :data:`MAX_RETRY_DELAY`. A retry is safe: every task
replaces what it wrote for its date (``ml.ops.tasks``), its ``ops.runs`` row
included; a retrain step run again registers a new model version, which goes
through the gate like any other.

Not every failure is worth a retry. :class:`FailDataFaults`, every task's retry
policy (Airflow's ``retry_policy``, evaluated in the task's process), fails at once
on a data fault (``ml.ops.tasks.is_data_fault``: a failed gate, a partition still
missing at the sensor's last look, ...): running again on the same data fails the
same way, and a retry must never turn bad data into a success. It also fails at
once on a stop (Ctrl-C, SIGTERM) of the process. The error itself is kept, so the
failure alert names it. Everything else gets the task's retries.

In-process runs (``dag.test``) cap these; see
:func:`loopline_airflow.runner.limit_in_process`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import RetryDecision, RetryPolicy

from loopline_airflow import WAREHOUSE_POOL

WAREHOUSE_RETRIES = 3
RETRY_DELAY = timedelta(seconds=30)
# each retry waits about twice as long as the one before, never more than this
RETRY_BACKOFF = 2.0
MAX_RETRY_DELAY = timedelta(minutes=5)


class FailDataFaults(RetryPolicy):
    """Fail at once on a data fault or a stop; otherwise the task's retries.

    Never serialized: Airflow keeps only a flag and takes the policy from the
    parsed DAG file in the task's process."""

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Any = None,
    ) -> RetryDecision:
        from ml.ops.tasks import is_data_fault

        if is_data_fault(exception):
            return RetryDecision.fail(
                f"data fault ({type(exception).__name__}): a retry would fail the "
                "same way"
            )
        if isinstance(exception, KeyboardInterrupt):
            return RetryDecision.fail("the process was stopped")
        return RetryDecision.default()


RETRY_POLICY = FailDataFaults()


def warehouse_task(**overrides: Any) -> dict[str, Any]:
    """The task arguments of a task that opens the warehouse: the one-slot pool,
    the retries above, and one XCom per task (``overrides`` replace any of them).

    Every such task returns a dict, and a ``-> dict`` annotation makes Airflow push
    each key as an XCom of its own besides ``return_value``: four writes through
    the execution API instead of one. Downstream tasks take the whole dict
    (``return_value``), so ``multiple_outputs`` is off."""
    return {
        "multiple_outputs": False,
        "pool": WAREHOUSE_POOL,
        "retries": WAREHOUSE_RETRIES,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": RETRY_BACKOFF,
        "max_retry_delay": MAX_RETRY_DELAY,
        "retry_policy": RETRY_POLICY,
    } | overrides


def sensor_task(poke_seconds: int, retries: int = WAREHOUSE_RETRIES) -> dict[str, Any]:
    """:func:`warehouse_task` for a rescheduling sensor: ``retries`` tries more,
    each one poke interval after the failed one (the timeout still counts from
    the first look of the first try). A sensor sets ``multiple_outputs`` itself."""
    arguments = warehouse_task(
        retries=retries,
        retry_delay=timedelta(seconds=poke_seconds),
        retry_exponential_backoff=0,
        max_retry_delay=None,
    )
    del arguments["multiple_outputs"]
    return arguments
