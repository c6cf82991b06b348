"""Writing ``ops.validation_results`` and ``ops.quarantine`` idempotently.

A gate call owns the ops rows of its tables and run dates: it deletes them and
inserts the new ones in one transaction, so rerunning a date replaces its rows.
Quarantine rows are inserted with ``loaded = false`` and set to true by
:func:`mark_loaded` once the gate has loaded the table's good rows, so a run that
stopped (a failed gate, a killed process) never leaves rows that look as if they
had been set aside from a load.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import duckdb
import pyarrow as pa

RESULTS_SCHEMA = pa.schema(
    [
        ("run_date", pa.date32()),
        ("suite_name", pa.string()),
        ("table_name", pa.string()),
        ("partition_date", pa.date32()),
        ("partition_end", pa.date32()),
        ("expectation_type", pa.string()),
        ("column_name", pa.string()),
        ("severity", pa.string()),
        ("reason", pa.string()),
        ("success", pa.bool_()),
        ("element_count", pa.int64()),
        ("unexpected_count", pa.int64()),
        ("unexpected_percent", pa.float64()),
        ("example_values", pa.string()),
        ("observed_value", pa.string()),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("run_date", pa.date32()),
        ("table_name", pa.string()),
        ("partition_date", pa.date32()),
        ("source_file", pa.string()),
        ("reason", pa.string()),
        ("column_name", pa.string()),
        ("record_key", pa.string()),
        ("record_json", pa.string()),
        ("loaded", pa.bool_()),
    ]
)


def results_table(rows: list[dict[str, Any]]) -> pa.Table:
    """``ops.validation_results`` rows as an Arrow table (missing fields: null)."""
    return pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA)


def replace_ops_rows(
    con: duckdb.DuckDBPyConnection,
    tables: Sequence[str],
    start: date,
    end: date,
    results: pa.Table,
    quarantine: pa.Table | None = None,
) -> None:
    """Replace the ops rows of ``tables`` for run dates ``start``..``end``."""
    quarantine = (
        quarantine if quarantine is not None else QUARANTINE_SCHEMA.empty_table()
    )
    names = pa.table({"table_name": pa.array(list(tables), pa.string())})
    con.execute("begin transaction")
    try:
        con.register("_ops_tables", names)
        for target in ("ops.validation_results", "ops.quarantine"):
            con.execute(
                f"delete from {target} where run_date between ? and ? "
                "and table_name in (select table_name from _ops_tables)",
                [start, end],
            )
        con.register("_ops_results", results.cast(RESULTS_SCHEMA))
        con.execute(
            "insert into ops.validation_results by name select * from _ops_results"
        )
        con.register("_ops_quarantine", quarantine.cast(QUARANTINE_SCHEMA))
        con.execute("insert into ops.quarantine by name select * from _ops_quarantine")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        for view in ("_ops_tables", "_ops_results", "_ops_quarantine"):
            con.unregister(view)


def mark_loaded(
    con: duckdb.DuckDBPyConnection, table: str, start: date, end: date
) -> None:
    """Mark the quarantine rows of ``table`` for run dates ``start``..``end`` as
    belonging to a run that loaded the table's good rows."""
    con.execute(
        "update ops.quarantine set loaded = true "
        "where table_name = ? and run_date between ? and ?",
        [table, start, end],
    )
