"""The ``on_failure_callback`` of every Loopline task.

It adapts Airflow's task context to :func:`ml.ops.alerts.record_alert`: which DAG,
task and run date failed, and with which exception. The message, the hints, the
notifiers and the ``ops.alerts`` row are all in ``ml/ops/alerts.py``. Importing this
module is cheap (DAG files import it while they are parsed); the work happens
inside the callback.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

log = logging.getLogger(__name__)


def run_date_of(context: Any) -> date | None:
    """The run's date: the logical date, else the ``as_of`` param (a retrain
    started by hand), else the day the run was scheduled after (an asset-triggered
    run has no logical date)."""
    ds = context.get("ds")
    if ds:
        return date.fromisoformat(str(ds))
    as_of = (context.get("params") or {}).get("as_of")
    if as_of:
        return date.fromisoformat(str(as_of))
    run_after = getattr(context.get("dag_run"), "run_after", None)
    return run_after.date() if isinstance(run_after, datetime) else None


def alert_on_failure(context: Any) -> None:
    """Record one alert for the failed task of ``context``. An error here is
    logged and swallowed: the task's own failure must stand as it is."""
    try:
        from ml.config.settings import get_settings
        from ml.ops.alerts import build_alert, record_alert

        ti = context.get("ti") or context.get("task_instance")
        dag_id = str(getattr(ti, "dag_id", None) or context["dag"].dag_id)
        task_id = str(getattr(ti, "task_id", None) or context["task"].task_id)
        end = getattr(ti, "end_date", None)
        alert = build_alert(
            dag_id,
            task_id,
            run_date_of(context),
            context.get("exception"),
            run_id=context.get("run_id"),
            try_number=getattr(ti, "try_number", None),
            failed_at=end if isinstance(end, datetime) and end.tzinfo else None,
        )
        record_alert(get_settings(), alert)
    except Exception:
        log.exception("could not record the failure alert; the task failure stands")
