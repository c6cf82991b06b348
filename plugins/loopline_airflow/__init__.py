"""Airflow-side wiring for Loopline (in-process runs, services, pools, shared assets,
the UI plugin's pages).

This module itself imports nothing from Airflow: :mod:`loopline_airflow.runner` must
configure Airflow before Airflow is first imported.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pendulum import DateTime

# The one-slot pool of every task that opens the DuckDB warehouse: DuckDB allows one
# writing process, and a writer fails at once while any other process holds the
# file, readers included.
WAREHOUSE_POOL = "warehouse"


class SensorWait(NamedTuple):
    """How a rescheduling sensor waits: how often it looks, and for how long."""

    poke_seconds: int
    timeout_seconds: int


def nightly_wait() -> SensorWait:
    """How loopline_outcomes waits for the nightly decide of its date, from the
    settings (``LOOPLINE_NIGHTLY_WAIT_*``), read when the DAG file is parsed: a
    sensor's poke interval and timeout are task attributes."""
    from ml.config.settings import get_settings

    settings = get_settings()
    return SensorWait(
        settings.nightly_wait_poke_seconds, settings.nightly_wait_timeout_seconds
    )


def landing_wait() -> SensorWait:
    """How loopline_nightly waits for the landing partitions of its date, from the
    settings (``LOOPLINE_LANDING_WAIT_*``), read when the DAG file is parsed."""
    from ml.config.settings import get_settings

    settings = get_settings()
    return SensorWait(
        settings.landing_wait_poke_seconds, settings.landing_wait_timeout_seconds
    )


def dags_start_date() -> DateTime:
    """Every DAG's ``start_date``, from the settings (``LOOPLINE_DAGS_START_DATE``,
    default 1970-01-01), read when the DAG file is parsed.

    Airflow creates no task instance for a logical date before a DAG's start date
    and still ends such a run in "success", so it must lie on or before the first
    landed day of any log the pipeline runs on (a real export can reach decades
    back). The DAGs keep ``catchup=False``: an early date adds no scheduled runs.
    """
    import pendulum

    from ml.config.settings import get_settings

    start: date = get_settings().dags_start_date
    return pendulum.datetime(start.year, start.month, start.day, tz="UTC")
