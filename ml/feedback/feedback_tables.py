"""The tables of the nightly feedback steps, and how a step replaces its day.

Three steps run after the outcome join of ``loopline_outcomes`` for day ``d``:
:func:`ml.feedback.drift.compute_drift` (``marts.drift``),
:func:`ml.feedback.learning.update_policy_parameters` (``marts.policy_parameters``)
and :func:`ml.feedback.retrain_check.check_retrain` (``ops.retrain_events``). Each
replaces the rows of ``d`` only, so reruns and backfills are idempotent, and reads
a bounded window, so its cost does not grow with the length of history. The
tables are declared in :mod:`ml.contract.tables`.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd

from ml.config.settings import Settings
from ml.contract.tables import DRIFT, PARAMETERS, RETRAIN_EVENTS, ddl_script
from ml.storage.warehouse import connect, ensure_schemas, replace_run_date

# The feedback steps' tables (the retrain check also reads the drift).
DDL = ddl_script(DRIFT, PARAMETERS, RETRAIN_EVENTS)


def prepare_feedback_tables(settings: Settings) -> None:
    """Create the warehouse's schemas and the feedback steps' tables if needed."""
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
        con.execute(DDL)


def replace_day(
    con: duckdb.DuckDBPyConnection,
    table: str,
    key: str,
    day: date,
    frame: pd.DataFrame,
) -> None:
    """Replace the rows of ``day`` (date column ``key``) of ``table``, atomically."""
    con.execute("begin transaction")
    try:
        replace_run_date(con, table, day, frame, key=key)
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
