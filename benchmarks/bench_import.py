"""Does ``loopline import`` cost what reading the file costs? Side by side, one run.

Writes a transaction log CSV of ``--rows`` rows (customer id, purchase time, amount,
category; a few rows that cannot be parsed), then times, on the same file:

* DuckDB alone: ``read_csv`` and ``COPY ... (FORMAT parquet, PARTITION_BY (dt))``,
  one folder per purchase day;
* ``import_transactions`` (what ``loopline import`` calls): the same, plus the
  landing contract, transaction ids, rejects with reasons and derived customers.

Each is timed warm (page cache as left by the previous step) and cold (page cache
dropped first, when this runs as root), and the ratio import / DuckDB alone is
printed against the target of at most 2x.

Run: ``.venv/bin/python benchmarks/bench_import.py --rows 5000000`` (``--stages``
also prints the wall of each step of the warm import).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import duckdb

TARGET = 2.0


def write_log(path: Path, rows: int, customers: int, days: int) -> None:
    """A CSV log written by DuckDB: seeded, with 1 row in 100,000 unparseable."""
    with duckdb.connect() as con:
        con.execute("select setseed(0.42)")
        con.execute(
            f"""
            copy (
                select
                    'C' || lpad(cast((hash(i) % {customers}) as varchar), 8, '0')
                        as customer_id,
                    case when i % 100000 = 7 then 'not a date'
                        else strftime(
                            timestamp '2023-01-01'
                            + to_seconds(cast(floor(random() * {days} * 86400)
                                as bigint)),
                            '%Y-%m-%d %H:%M:%S')
                    end as purchased_at,
                    case when i % 100000 = 11 then 'n/a'
                        else cast(round(5 + random() * 120, 2) as varchar)
                    end as amount,
                    (['grocery', 'home', 'fashion', 'electronics', 'beauty'])
                        [1 + cast(i % 5 as integer)] as category
                from range({rows}) as t(i)
            ) to '{path}' (header, delimiter ',')
            """
        )


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def duckdb_alone(path: Path, out: Path) -> float:
    """Read the CSV and write it partitioned by purchase day, DuckDB only."""
    shutil.rmtree(out, ignore_errors=True)
    began = time.perf_counter()
    with duckdb.connect() as con:
        con.execute(
            f"""
            copy (
                select *, cast(try_cast(purchased_at as timestamp) as date) as dt
                from read_csv('{path}', header = true, all_varchar = true)
            ) to '{out}' (format parquet, partition_by (dt))
            """
        )
    return time.perf_counter() - began


# The steps of import_transactions, as ml.data.ingest names them, timed by --stages.
STAGES = (
    "load_source",
    "parse_transactions",
    "check_dates_parse",
    "write_rejected",
    "drop_source",
    "load_customers",
    "rows_per_day",
    "register_known_customers",
    "collect_customer_rows",
    "write_transaction_days",
    "write_customer_partitions",
)


@contextmanager
def timed_stages(walls: dict[str, float]) -> Iterator[None]:
    """Time each step that ``import_transactions`` calls (by the names it calls
    them under in ``ml.data.ingest``) into ``walls``; restore them after."""
    import ml.data.ingest as ingest

    originals = {name: getattr(ingest, name) for name in STAGES}

    def timed(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(step)
        def run(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                walls[name] = walls.get(name, 0.0) + time.perf_counter() - began

        return run

    for name, step in originals.items():
        setattr(ingest, name, timed(name, step))
    try:
        yield
    finally:
        for name, step in originals.items():
            setattr(ingest, name, step)


def loopline_import(
    path: Path, home: Path, walls: dict[str, float] | None = None
) -> tuple[float, int, int]:
    """``import_transactions`` into a fresh home: seconds, rows written, rejected.
    With ``walls``, each step's wall is added to it."""
    shutil.rmtree(home, ignore_errors=True)
    os.environ["LOOPLINE_HOME"] = str(home)
    from ml.config.settings import get_settings
    from ml.data.ingest import import_transactions

    settings = get_settings()
    settings.ensure_dirs()
    with timed_stages(walls) if walls is not None else nullcontext():
        began = time.perf_counter()
        summary = import_transactions(
            settings,
            path,
            customer_col="customer_id",
            date_col="purchased_at",
            amount_col="amount",
            category_col="category",
            progress=False,
        )
        seconds = time.perf_counter() - began
    return seconds, summary.rows_written, summary.rejected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--customers", type=int, help="default rows / 25")
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--dir", type=Path, help="work folder (default: a temp one)")
    parser.add_argument(
        "--stages",
        action="store_true",
        help="also print the wall of each step of the warm import",
    )
    args = parser.parse_args()
    customers = args.customers or max(1, args.rows // 25)

    work = args.dir or Path(tempfile.mkdtemp(prefix="loopline-bench-import-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "transactions.csv"
    if not log.exists():
        print(f"writing {args.rows:,} rows ({customers:,} customers) to {log}")
        write_log(log, args.rows, customers, args.days)
    print(f"{log}: {log.stat().st_size / 2**20:,.0f} MiB")

    figures: dict[str, dict[str, float]] = {"warm": {}, "cold": {}}
    stage_walls: dict[str, float] = {}
    can_drop = drop_page_cache()
    for mode in ("cold", "warm"):
        if mode == "cold" and not can_drop:
            continue
        if mode == "cold":
            drop_page_cache()
        figures[mode]["duckdb"] = duckdb_alone(log, work / "duckdb_out")
        if mode == "cold":
            drop_page_cache()
        walls: dict[str, float] | None = (
            stage_walls if args.stages and mode == "warm" else None
        )
        seconds, written, rejected = loopline_import(log, work / "home", walls)
        figures[mode]["import"] = seconds
        print(
            f"{mode}: DuckDB alone {figures[mode]['duckdb']:.1f} s, import "
            f"{seconds:.1f} s ({written:,} rows written, {rejected:,} rejected)",
            flush=True,
        )

    print(f"\n{'':<8}{'DuckDB alone':>14}{'import':>10}{'ratio':>8}  target")
    for mode, got in figures.items():
        if not got:
            print(f"{mode:<8}  (not measured: dropping the page cache needs root)")
            continue
        ratio = got["import"] / got["duckdb"]
        met = "met" if ratio <= TARGET else "MISSED"
        print(
            f"{mode:<8}{got['duckdb']:>12.1f} s{got['import']:>8.1f} s{ratio:>7.2f}x"
            f"  <= {TARGET:.1f}x {met}"
        )
    if stage_walls:
        print("\nsteps of the warm import (seconds)")
        for name, wall in sorted(stage_walls.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<28}{wall:>8.2f}")
        rest = figures["warm"]["import"] - sum(stage_walls.values())
        print(f"  {'(the rest)':<28}{rest:>8.2f}")
    if args.dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
