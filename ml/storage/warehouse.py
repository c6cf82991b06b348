"""The DuckDB warehouse: connections, the ``raw`` and ``ops`` schemas, raw loading.

The tables' names and DDL are declared in :mod:`ml.contract.tables`.

Only one process may write the warehouse at a time (DuckDB's rule); the Airflow DAGs
put every writer in the one-slot ``warehouse`` pool. Landing rows that pass the gates
are loaded into ``raw.<table>`` one partition at a time, replacing that partition, so
a rerun loads the same rows and no other partition is touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from ml.config.settings import DUCKDB_MEMORY_LIMIT, DUCKDB_MEMORY_LIMIT_ENV
from ml.contract.schema import TABLES
from ml.contract.tables import ALERTS_DDL as ALERTS_DDL
from ml.contract.tables import OPS_DDL, OPS_TABLES, raw_table_ddl
from ml.contract.tables import duckdb_type as duckdb_type

if TYPE_CHECKING:
    import pandas as pd


def memory_limit() -> str:
    """DuckDB's memory limit for this process (``LOOPLINE_DUCKDB_MEMORY_LIMIT``,
    the environment form of ``Settings.duckdb_memory_limit``). Every connection
    of a process must use the same value: DuckDB refuses a second connection to
    an open file with another configuration."""
    return os.environ.get(DUCKDB_MEMORY_LIMIT_ENV) or DUCKDB_MEMORY_LIMIT


def duckdb_config() -> dict[str, str | bool | int | float | list[str]]:
    """The configuration every DuckDB file connection of Loopline opens with."""
    return {"memory_limit": memory_limit()}


# Files held open by :func:`hold` in this process, by resolved path.
_HELD: dict[Path, duckdb.DuckDBPyConnection] = {}


@contextmanager
def hold(path: Path, read_only: bool = False) -> Iterator[None]:
    """Keep one connection to ``path`` open for the block (read-write, or
    ``read_only`` for a block that only reads: then no cursor of it can write).

    Every :func:`connect` to the same file inside the block is then a cursor of
    that connection instead of a new database instance: opening one costs 20-40 ms
    here, and a pipeline step opens the warehouse up to eight times; closing one
    checkpoints what it wrote. Inside the block, a direct ``duckdb.connect`` of the
    file shares the held instance when it asks for the same mode and configuration
    (:func:`duckdb_config`; dbt's profile does) and fails with any other, and an
    ``attach`` of the file fails (the publish attaches its copy to a cursor of
    :func:`held_connection` instead). A read-write hold is for blocks that
    write the warehouse anyway; a ``read_only`` one (the demo report's valuation of
    every night) leaves the file to other readers' configuration only. Nested holds
    of the same file share the outer one, whatever it was opened as.
    """
    key = path.resolve()
    if key in _HELD:
        yield
        return
    con = duckdb.connect(str(path), read_only=read_only, config=duckdb_config())
    _HELD[key] = con
    try:
        yield
    finally:
        _HELD.pop(key, None)
        con.close()


def held_connection(path: Path) -> duckdb.DuckDBPyConnection | None:
    """The connection :func:`hold` keeps open for ``path`` in this process, if any:
    for code that must attach another file beside the held one (the publish),
    since the held file cannot be opened a second time meanwhile."""
    return _HELD.get(path.resolve()) if _HELD else None


@contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse and close it on exit, whatever happens (inside
    :func:`hold` of the same file: a cursor of the held connection, which can
    write even when ``read_only`` is asked for)."""
    held = held_connection(path)
    con = (
        held.cursor()
        if held is not None
        else duckdb.connect(str(path), read_only=read_only, config=duckdb_config())
    )
    try:
        yield con
    finally:
        con.close()


# Every table ensure_schemas creates: (schema, table) pairs.
_ENSURED_TABLES = frozenset(
    tuple(name.split(".", 1))
    for name in [
        *(f"raw.{c.name}" for c in TABLES.values()),
        *(t.name for t in OPS_TABLES),
    ]
)


def ensure_schemas(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``raw`` and ``ops`` schemas and tables if they are missing.

    Every step records itself in ``ops.runs`` through this, so the common case
    (every table exists) is one catalog query instead of one DDL per table."""
    present = con.execute(
        "select schema_name, table_name from duckdb_tables() "
        "where database_name = current_database()"
    ).fetchall()
    if set(present) >= _ENSURED_TABLES:
        return
    con.execute("create schema if not exists raw")
    for contract in TABLES.values():
        con.execute(raw_table_ddl(contract))
    con.execute(OPS_DDL)


def replace_raw_partition(
    con: duckdb.DuckDBPyConnection,
    table: str,
    day: date,
    rows: pa.Table,
    source_file: pa.Array | str | None = None,
) -> int:
    """Replace ``raw.<table>`` rows of partition ``day`` with ``rows``.

    ``rows`` must carry exactly the contract columns (already cast). Returns the
    number of rows loaded. Runs in one transaction: a failure leaves the previous
    partition in place.
    """
    contract = TABLES[table]
    rows = rows.select(contract.columns).cast(contract.schema)
    n = rows.num_rows
    if source_file is None or isinstance(source_file, str):
        files = pa.array([source_file] * n, pa.string())
    else:
        files = source_file
    staged = rows.append_column("partition_date", pa.array([day] * n, pa.date32()))
    staged = staged.append_column("source_file", files)
    con.execute("begin transaction")
    try:
        con.execute(f"delete from raw.{table} where partition_date = ?", [day])
        con.register("_staged_rows", staged)
        con.execute(f"insert into raw.{table} by name select * from _staged_rows")
        con.unregister("_staged_rows")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return n


def replace_raw_range(
    con: duckdb.DuckDBPyConnection,
    table: str,
    days: Sequence[date],
    rows: pa.Table,
    partition_date: pa.Array,
    source_file: pa.Array,
) -> int:
    """Replace the ``raw.<table>`` partitions ``days`` with ``rows`` in one go.

    The bulk form of :func:`replace_raw_partition`: ``partition_date`` and
    ``source_file`` give each row's partition and file, and every partition in
    ``days`` is deleted first (a day with no rows ends up empty). Partitions not in
    ``days`` are untouched. One transaction; returns the number of rows loaded.
    """
    contract = TABLES[table]
    staged = rows.select(contract.columns).cast(contract.schema)
    staged = staged.append_column("partition_date", partition_date.cast(pa.date32()))
    staged = staged.append_column("source_file", source_file.cast(pa.string()))
    replaced = pa.table({"partition_date": pa.array(list(days), pa.date32())})
    con.execute("begin transaction")
    try:
        con.register("_replaced_days", replaced)
        con.execute(
            f"delete from raw.{table} where partition_date in "
            "(select partition_date from _replaced_days)"
        )
        con.register("_staged_rows", staged)
        con.execute(f"insert into raw.{table} by name select * from _staged_rows")
        con.unregister("_staged_rows")
        con.unregister("_replaced_days")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return staged.num_rows


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists."""
    found = con.execute(
        "select count(*) from duckdb_tables() where schema_name = ? and table_name = ?",
        [schema, table],
    ).fetchall()
    return bool(found[0][0])


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The columns of ``schema.table``, in table order."""
    schema, name = table.split(".")
    return [
        str(r[0])
        for r in con.execute(
            "select column_name from duckdb_columns() "
            "where schema_name = ? and table_name = ? order by column_index",
            [schema, name],
        ).fetchall()
    ]


def _staged_frame(frame: pd.DataFrame) -> pa.Table | pd.DataFrame:
    """``frame`` as an Arrow table for DuckDB to read: DuckDB inserts an Arrow
    table faster than it reads a pandas frame's text columns (a night's
    decisions at a million customers, ``benchmarks/bench_replace_run_date.py``).
    A frame Arrow cannot type (a column of mixed objects) is handed over as it
    is."""
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return frame


def replace_run_date(
    con: duckdb.DuckDBPyConnection,
    table: str,
    run_date: date,
    frame: pd.DataFrame,
    key: str = "run_date",
) -> None:
    """Replace the rows whose date column ``key`` is ``run_date`` in ``table`` with
    ``frame`` (matched by column name; its ``key`` column, if any, is replaced by
    the constant, since object-dtype dates convert slowly). Runs inside the
    caller's transaction."""
    con.execute(f"delete from {table} where {key} = ?", [run_date])
    if frame.empty:
        return
    con.register(
        "_staged_run_date", _staged_frame(frame.drop(columns=[key], errors="ignore"))
    )
    try:
        con.execute(
            f"insert into {table} by name select *, $d as {key} from _staged_run_date",
            {"d": run_date},
        )
    finally:
        con.unregister("_staged_run_date")
