"""One structured log line per pipeline step.

Every step (an Airflow task body in :mod:`ml.ops.tasks`, a training step in
:mod:`ml.prediction.training`) logs its outcome as one JSON object on one line, on
the ``loopline.steps`` logger, so it shows in the Airflow task log and in the
command's log file, and a log shipper can pick it out by ``event``.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from typing import Any

STEP_EVENT = "loopline_step"
LOGGER_NAME = "loopline.steps"
logger = logging.getLogger(LOGGER_NAME)


def step_log_line(
    step: str,
    run_date: date | None,
    status: str,
    counts: dict[str, Any],
    config_hash: str | None = None,
) -> str:
    """One step's outcome as one JSON object on one line: ``event``
    (``loopline_step``), ``step``, ``run_date``, ``status``, ``config_hash`` and
    ``counts`` (what the step returns and stores in ``ops.runs.detail``)."""
    return json.dumps(
        {
            "event": STEP_EVENT,
            "step": step,
            "run_date": run_date.isoformat() if run_date else None,
            "status": status,
            "config_hash": config_hash,
            "counts": counts,
        },
        default=str,
        separators=(",", ":"),
    )


def log_step(
    step: str,
    run_date: date | None,
    status: str,
    counts: dict[str, Any],
    config_hash: str | None = None,
) -> None:
    """Log :func:`step_log_line` (INFO, WARNING when the step failed)."""
    level = logging.INFO if status == "success" else logging.WARNING
    logger.log(level, step_log_line(step, run_date, status, counts, config_hash))
