"""Reading and writing landing partitions (``landing/<table>/dt=YYYY-MM-DD/``)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ml.contract.schema import TABLES


def partition_dir(landing_dir: Path, table: str, day: date) -> Path:
    """The folder of one table's partition for one day."""
    return landing_dir / table / f"dt={day.isoformat()}"


def partition_files(landing_dir: Path, table: str, day: date) -> list[Path]:
    """Data files of a partition (parquet and csv), sorted for determinism."""
    folder = partition_dir(landing_dir, table, day)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.suffix in (".parquet", ".csv") and p.is_file()
    )


def list_partition_dates(landing_dir: Path, table: str) -> list[date]:
    """All days that have a partition folder for ``table``."""
    root = landing_dir / table
    if not root.is_dir():
        return []
    days = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith("dt="):
            days.append(date.fromisoformat(p.name[3:]))
    return sorted(days)


def write_partition(
    landing_dir: Path, table: str, day: date, data: pa.Table, part: int = 0
) -> Path:
    """Replace one table's partition for ``day`` with ``data`` (atomic per file).

    The data is cast to the contract schema when its columns match the contract, so
    writers cannot drift from it by accident; fault injection writes raw tables with
    ``write_raw_partition`` instead.
    """
    contract = TABLES[table]
    if data.schema.names == contract.schema.names:
        data = data.cast(contract.schema)
    return write_raw_partition(landing_dir, table, day, data, part=part)


def write_raw_partition(
    landing_dir: Path, table: str, day: date, data: pa.Table, part: int = 0
) -> Path:
    """Write ``data`` as-is (no schema cast) as the partition's only file."""
    folder = partition_dir(landing_dir, table, day)
    if folder.exists() and part == 0:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"part-{part:04d}.parquet"
    tmp = folder / f".part-{part:04d}.parquet.tmp"
    pq.write_table(data, tmp)
    tmp.replace(target)
    return target


def move_into_partition(
    landing_dir: Path, table: str, day: date, files: list[Path]
) -> list[Path]:
    """Replace the partition of ``day`` with ``files`` (Parquet files written on
    the same file system), renamed into it as ``part-0000.parquet``, ... (each
    rename atomic). Returns the partition's files."""
    folder = partition_dir(landing_dir, table, day)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    moved = []
    for n, path in enumerate(files):
        target = folder / f"part-{n:04d}.parquet"
        path.replace(target)
        moved.append(target)
    return moved


# A source that has nothing for a day says so with this marker beside an empty file,
# so that "no rows today" is told apart from "today's data has not landed".
NO_ROWS_MARKER = "_NO_ROWS"


def write_empty_partition(landing_dir: Path, table: str, day: date) -> Path:
    """Declare that ``table`` has no rows on ``day``: an empty file plus a marker."""
    path = write_partition(landing_dir, table, day, TABLES[table].schema.empty_table())
    (path.parent / NO_ROWS_MARKER).touch()
    return path


def is_declared_empty(landing_dir: Path, table: str, day: date) -> bool:
    """True when the source marked this partition as intentionally empty."""
    return (partition_dir(landing_dir, table, day) / NO_ROWS_MARKER).is_file()


def read_file(path: Path) -> pa.Table:
    """Read one landing file (parquet or csv) without coercing it to the contract.

    A Parquet file is read with ``ParquetFile`` rather than ``read_table``: the
    latter sets up a dataset (path discovery, partitioning) for every call and costs
    about four times as much per file, which is most of the bulk landing gate's read
    over a year of daily partitions (1,710 files: 2.7 s against 0.7 s).
    """
    if path.suffix == ".csv":
        return pacsv.read_csv(path)
    with pq.ParquetFile(path) as handle:
        return handle.read()
