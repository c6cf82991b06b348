"""Benchmark of ``publish``: a nightly publish of the analyst copy against copying
the warehouse file, on a demo-sized warehouse.

Point ``--home`` at a scratch copy of a ``LOOPLINE_HOME`` whose warehouse the
pipeline has built (a finished ``loopline demo``); the benchmark adds days to its
warehouse. With ``--scale-from SRC --scale K`` it first builds that warehouse from
the one under ``SRC``: every table of every schema ``K`` times, the ``*_id`` text
columns suffixed with the copy number so the keys stay distinct.

It times, side by side in one run:

* copying the warehouse file and flushing it to disk: what every publish cost
  before partitions, and what grows with the history;
* a full publish (``full=True``: every table, as the first publish and a rebuild);
* ``--nights`` nightly publishes, each after a new day was added to every
  partitioned table (its latest partition copied to the next date, as a night
  adds one), fingerprinting the dates a run writes (the night and the date H days
  before it, the default);
* with ``--window``, as many nightly publishes again, alternating with those,
  that fingerprint every partition of the last H + 7 days (the rule before the
  written dates), each after a new day of its own;

and prints the ratio of the file copy to the median nightly publish (and of the
window's median to it). With ``--compare`` it also times a new database filled
with one ``create table … as`` per published table.

Run: ``.venv/bin/python benchmarks/bench_publish.py --home DIR [--scale-from SRC
--scale 15] [--nights 3] [--window] [--compare]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

from ml.analytics.publish import (
    FILES_TABLE,
    PUBLISHED_SCHEMAS,
    open_analytics,
    publish_analytics,
    published_tables,
)
from ml.config.settings import Settings, load_business_config

MIB = 1024 * 1024


def scale_warehouse(source: Path, target: Path, copies: int) -> float:
    """Write ``target`` with every table of ``source`` repeated ``copies`` times
    (views are left out); returns the seconds it took."""
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    con = duckdb.connect(str(target))
    try:
        con.execute(f"attach '{source}' as src (read_only)")
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where database_name = 'src'"
        ).fetchall()
        for schema, table in tables:
            columns = con.execute(
                "select column_name, data_type from duckdb_columns() where "
                "database_name = 'src' and schema_name = ? and table_name = ? "
                "order by column_index",
                [schema, table],
            ).fetchall()
            select = ", ".join(
                f'"{name}" || \'_\' || k as "{name}"'
                if kind == "VARCHAR" and name.endswith("_id")
                else f'"{name}"'
                for name, kind in columns
            )
            con.execute(f"create schema if not exists {schema}")
            con.execute(
                f'create table {schema}."{table}" as select {select} '
                f'from src.{schema}."{table}", range({copies}) as r(k)'
            )
        con.execute("detach src")
        con.execute("checkpoint")
    finally:
        con.close()
    return time.perf_counter() - started


def copy_by_rows(settings: Settings) -> float:
    """The alternative: one ``create table … as`` per published table into a new
    database; returns its seconds (the file is deleted afterwards)."""
    target = settings.root / "bench_copy_by_rows.duckdb"
    target.unlink(missing_ok=True)
    started = time.perf_counter()
    con = duckdb.connect(str(target))
    try:
        con.execute(f"attach '{settings.warehouse_path}' as live (read_only)")
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"create schema {schema}")
        for schema, table in published_tables(con, "live"):
            con.execute(
                f'create table {schema}."{table}" as from live.{schema}."{table}"'
            )
        con.execute("detach live")
        con.execute("checkpoint")
    finally:
        con.close()
    seconds = time.perf_counter() - started
    print(f"copy by rows: {seconds:.2f} s, {target.stat().st_size / MIB:,.0f} MiB")
    target.unlink()
    return seconds


def copy_file(settings: Settings) -> float:
    """Copy the warehouse file beside it and fsync it; returns the seconds."""
    target = settings.root / "bench_file_copy.duckdb"
    started = time.perf_counter()
    shutil.copyfile(settings.warehouse_path, target)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    target.unlink()
    return seconds


def add_night(settings: Settings) -> date:
    """Copy the latest partition of every partitioned table (as the analyst copy's
    manifest names them) to the next date, as a night adds one; returns the latest
    new date."""
    with open_analytics(settings) as copy:
        partitioned = copy.execute(
            f"select distinct table_name, partition_column from {FILES_TABLE}"
        ).fetchall()
    latest = date.min
    with duckdb.connect(str(settings.warehouse_path)) as con:
        for name, column in partitioned:
            schema, table = str(name).split(".", 1)
            relation = f'{schema}."{table}"'
            top = con.execute(f'select max("{column}") from {relation}').fetchone()
            if not top or top[0] is None:
                continue
            con.execute(
                f'insert into {relation} select * replace (("{column}" + 1)::date '
                f'as "{column}") from {relation} where "{column}" = ?',
                [top[0]],
            )
            latest = max(latest, top[0] + timedelta(days=1))
    return latest


def main() -> None:
    """Parse arguments, build the scaled warehouse if asked, time the publishes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--scale-from", type=Path)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--nights", type=int, default=3)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument(
        "--window", action="store_true", help="also the H + 7-day window, alternating"
    )
    args = parser.parse_args()
    settings = Settings(home=args.home)
    if args.scale_from is not None:
        source = Settings(home=args.scale_from).warehouse_path
        seconds = scale_warehouse(source, settings.warehouse_path, args.scale)
        print(f"built {settings.warehouse_path} ({args.scale}x) in {seconds:.1f} s")
    warehouse = settings.warehouse_path.stat().st_size / MIB
    file_copy = copy_file(settings)
    started = time.perf_counter()
    summary = publish_analytics(settings, date.today(), "bench_publish", full=True)
    full = time.perf_counter() - started
    print(f"warehouse {settings.warehouse_path}: {warehouse:,.0f} MiB")
    largest = sorted(summary.tables.items(), key=lambda kv: -kv[1])[:5]
    print(
        f"{len(summary.tables)} tables, {sum(summary.tables.values()):,} rows; "
        "largest: " + ", ".join(f"{name} {rows:,}" for name, rows in largest)
    )
    print(
        f"analyst copy: {summary.size_bytes / MIB:,.0f} MiB, "
        f"{summary.partitions_written:,} partitions"
    )
    horizon = load_business_config(settings.config_file).horizon_days
    modes = ["written dates", "window"] if args.window else ["written dates"]
    timings: dict[str, list[float]] = {mode: [] for mode in modes}
    for index in range(args.nights):
        # alternate which rule goes first, so neither always meets a warmer cache
        for mode in modes if index % 2 == 0 else modes[::-1]:
            day = add_night(settings)
            window = tuple(day - timedelta(days=i) for i in range(horizon + 8))
            started = time.perf_counter()
            night = publish_analytics(
                settings,
                day,
                "bench_publish",
                checked_dates=window if mode == "window" else None,
            )
            timings[mode].append(time.perf_counter() - started)
            print(
                f"  night {day} ({mode}): {timings[mode][-1]:.2f} s, "
                f"{night.partitions_written} partitions written, "
                f"{night.partitions_kept:,} kept, republished "
                f"{night.republished or 'none'}"
            )
    nightly = timings["written dates"]
    median = statistics.median(nightly)
    print(f"copy the warehouse file + fsync   {file_copy:7.2f} s")
    print(f"full publish                      {full:7.2f} s")
    print(f"nightly publish (median of {len(nightly)})    {median:7.2f} s")
    print(f"ratio file copy / nightly publish {file_copy / median:7.1f}x")
    if args.window:
        wide = statistics.median(timings["window"])
        print(f"nightly publish, H + 7-day window {wide:7.2f} s")
        print(f"ratio window / written dates      {wide / median:7.1f}x")
    if args.compare:
        copy_by_rows(settings)


if __name__ == "__main__":
    main()
