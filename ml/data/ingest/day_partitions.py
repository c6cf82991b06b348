"""Write the day partitions of one import.

Transactions go to one partition per purchase day, written by DuckDB ``COPY``
statements side by side (one per span of days) and then moved into place. A day
inside the log's span without purchases is declared empty. The customers
partition of every day the import owns is replaced, or removed when it has no
rows left.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ml.contract.schema import TABLES
from ml.contract.tables import duckdb_type
from ml.data.ingest.sql_text import ident, lit
from ml.data.ingest.transaction_rows import TRANSACTION_ID_MACRO
from ml.storage.landing_files import (
    move_into_partition,
    partition_dir,
    write_empty_partition,
    write_partition,
)
from ml.storage.procs import remove_stale_staging_dirs, staging_dir

# .import-<pid>@<host>-<hex> under landing/transactions (ml.storage.procs)
STAGING_PREFIX = "import"


def write_transaction_days(
    con: duckdb.DuckDBPyConnection,
    landing: Path,
    day_counts: list[tuple[date, int]],
    advance: Callable[[], None],
) -> None:
    """Replace the transactions partition of every day in ``day_counts``.

    DuckDB writes every day of ``tx_good`` with ``COPY ... PARTITION_BY``, the
    rows of a day by time, customer and id (so the same purchases in any order give
    the same files: each day is written by one thread, which is what keeps that
    order, and spans of days are written side by side), into a staging folder
    beside the partitions (the same file system, and not a ``dt=`` folder, so no
    reader lists it; one left by an import that was killed is removed by the next
    import). Each day's files are then moved into place
    (:func:`ml.storage.landing_files.move_into_partition`). ``advance`` is called
    once per day moved.
    """
    root = landing / "transactions"
    root.mkdir(parents=True, exist_ok=True)
    # an import killed mid-write (kill -9) left its staging folder behind
    remove_stale_staging_dirs(root, STAGING_PREFIX)
    staging = staging_dir(root, STAGING_PREFIX, uuid.uuid4().hex[:8])

    def typed(field: pa.Field) -> str:
        value = (
            f"{TRANSACTION_ID_MACRO}(id_key)"
            if field.name == "transaction_id"
            else ident(field.name)
        )
        return f"cast({value} as {duckdb_type(field.type)}) as {ident(field.name)}"

    columns = ", ".join(typed(field) for field in TABLES["transactions"].schema)
    others = ", ".join(
        ident(field.name)
        for field in TABLES["transactions"].schema
        if field.name != "transaction_id"
    )
    # DuckDB keeps the ORDER BY inside each partition of a PARTITION_BY copy only
    # when one thread writes it: with more, rows of a day interleave differently
    # from run to run (seen from a few hundred thousand rows on). So DuckDB runs
    # with one thread, and as many copies as it had threads run side by side, each
    # on its own span of days and its own cursor.
    (threads,) = con.execute("select current_setting('threads')").fetchone() or (1,)
    (zone,) = con.execute("select current_setting('TimeZone')").fetchone() or ("UTC",)
    spans = day_spans(day_counts, max(1, int(threads)))

    def copy_span(span: tuple[date, date]) -> None:
        with con.cursor() as cursor:
            cursor.execute(f"set TimeZone = {lit(str(zone))}")
            cursor.execute(
                f"""
                copy (
                    -- the sort carries the id's short key; it is spelled after
                    select {columns}, dt
                    from (
                        select id_key, {others}, cast(transaction_at as date) as dt
                        from tx_good
                        where cast(transaction_at as date) between ? and ?
                        order by transaction_at, customer_id, id_key
                    )
                ) to {lit(str(staging))} (
                    -- the spans share the staging folder, never a day folder
                    format parquet, partition_by (dt), filename_pattern 'part-{{i}}',
                    overwrite_or_ignore
                )
                """,
                [span[0], span[1]],
            )

    try:
        con.execute("set threads = 1")
        with ThreadPoolExecutor(max_workers=max(1, len(spans))) as pool:
            for done in [pool.submit(copy_span, span) for span in spans]:
                done.result()
        for day, _ in day_counts:
            written = sorted((staging / f"dt={day.isoformat()}").glob("*.parquet"))
            move_into_partition(landing, "transactions", day, written)
            advance()
    finally:
        con.execute(f"set threads = {int(threads)}")
        shutil.rmtree(staging, ignore_errors=True)


def day_spans(
    day_counts: list[tuple[date, int]], parts: int
) -> list[tuple[date, date]]:
    """Split the sorted ``day_counts`` into at most ``parts`` runs of consecutive
    days with about the same number of rows each: (first day, last day) of each."""
    if not day_counts:
        return []
    total = sum(n for _, n in day_counts)
    spans: list[tuple[date, date]] = []
    first = day_counts[0][0]
    seen = 0
    for index, (day, n) in enumerate(day_counts):
        seen += n
        last_one = index == len(day_counts) - 1
        if last_one or (
            len(spans) < parts - 1 and seen >= total * (len(spans) + 1) / parts
        ):
            spans.append((first, day))
            if not last_one:
                first = day_counts[index + 1][0]
    return spans


def declare_empty_days(landing: Path, days: list[date]) -> list[date]:
    """Declare empty every day between the first and last of ``days`` not in them.

    Inside the log's span, a day without purchases is a day the shop sold nothing,
    not a late partition: declaring it empty lets the gate accept it. ``days`` is
    sorted and not empty. Returns the days declared empty.
    """
    written_days = set(days)
    empty_days = [
        day
        for day in (
            days[0] + timedelta(days=i) for i in range((days[-1] - days[0]).days)
        )
        if day not in written_days
    ]
    for day in empty_days:
        write_empty_partition(landing, "transactions", day)
    return empty_days


def write_customer_partitions(
    landing: Path,
    rows: pa.Table,
    owned_days: set[date],
    advance: Callable[[], None],
) -> int:
    """Replace the customers partition of every owned day; return rows written.

    An owned day without customer rows loses its old partition, so a re-import after
    a customer's first purchase moved leaves no stale row behind.
    """
    # Rows are sorted by updated_at, so each day is one contiguous slice.
    runs = pc.value_counts(rows["updated_at"].cast(pa.date32()))
    bounds: dict[date, tuple[int, int]] = {}
    start = 0
    for day, n in zip(
        runs.field("values").to_pylist(), runs.field("counts").to_pylist(), strict=True
    ):
        bounds[day] = (start, n)
        start += n
    for day in sorted(owned_days):
        if day in bounds:
            offset, n = bounds[day]
            write_partition(landing, "customers", day, rows.slice(offset, n))
        else:
            folder = partition_dir(landing, "customers", day)
            if folder.exists():
                shutil.rmtree(folder)
        advance()
    return rows.num_rows
