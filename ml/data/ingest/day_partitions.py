"""Write the day partitions of one import.

Transactions go to one partition per purchase day, written in parallel threads
(Parquet writing releases the GIL); each partition is replaced atomically by
:func:`ml.storage.landing_files.write_partition`. A day inside the log's span
without purchases is declared empty. The customers partition of every day the
import owns is replaced, or removed when it has no rows left.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ml.storage.landing_files import (
    partition_dir,
    write_empty_partition,
    write_partition,
)

WRITE_THREADS = 4


def write_transaction_days(
    landing: Path,
    rows: pa.Table,
    day_counts: list[tuple[date, int]],
    advance: Callable[[], None],
) -> None:
    """Replace the transactions partition of every day in ``day_counts``.

    ``rows`` are sorted by time, so day ``i`` is the ``i``-th contiguous slice of
    ``day_counts[i][1]`` rows. ``advance`` is called once per day written.
    """
    offsets = [0]
    for _, n in day_counts:
        offsets.append(offsets[-1] + n)
    # Parquet writing releases the GIL, so days are written in parallel.
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        futures = [
            pool.submit(
                write_partition,
                landing,
                "transactions",
                day,
                rows.slice(offsets[i], n),
            )
            for i, (day, n) in enumerate(day_counts)
        ]
        for future in as_completed(futures):
            future.result()
            advance()


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
