"""What a Loopline sensor needs to know about its own wait.

A rescheduling sensor looks every ``poke_interval`` seconds and fails once more
than ``timeout`` seconds have passed since its first look (of its first try).
:func:`last_look` tells the look after which no other will come, so that a sensor
can fail with the cause it knows (for ``check_landing``: which partitions are
missing, where) instead of Airflow's generic timeout.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def looked_for_seconds(context: Any) -> float:
    """Seconds since the sensor's first look (0 at the first look)."""
    first = context["ti"].get_first_reschedule_date(context)
    return 0.0 if first is None else (datetime.now(UTC) - first).total_seconds()


def is_last_look(elapsed: float, poke_interval: float, timeout: float) -> bool:
    """Whether a look ``elapsed`` seconds after the first is the last one: the
    next would come after the timeout."""
    return elapsed + poke_interval > timeout


def last_look(context: Any) -> bool:
    """Whether the running look of the sensor of ``context`` is its last."""
    task = context["task"]
    return is_last_look(
        looked_for_seconds(context), float(task.poke_interval), float(task.timeout)
    )
