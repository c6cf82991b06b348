"""Benchmark of ``publish``: writing the analyst copy from a demo-sized warehouse.

Point ``--home`` at a ``LOOPLINE_HOME`` whose warehouse the pipeline has built
(a finished ``loopline demo``, or ``loopline demo --quick``). With
``--scale-from SRC --scale K`` it first builds that warehouse from the one under
``SRC``: every table of every schema ``K`` times, the ``*_id`` text columns
suffixed with the copy number so the keys stay distinct. The quick demo's world
(2,000 customers, 344 days) times 15 has about as many rows as the full demo's
(20,000 customers, 485 days), through the same tables and types.

It then times ``ml.publish.publish_analytics`` ``--repeat`` times and prints the
warehouse and copy sizes, the rows published and the seconds per publish. With
``--compare`` it also times the alternative that was not kept: a new database
filled with one ``create table … as`` per published table (every row read,
decompressed, compressed and written again).

Run: ``.venv/bin/python benchmarks/bench_publish.py --home DIR [--scale-from SRC
--scale 15] [--repeat 3] [--compare]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path

import duckdb

from ml.config import Settings
from ml.publish import PUBLISHED_SCHEMAS, publish_analytics, published_tables

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


def main() -> None:
    """Parse arguments, build the scaled warehouse if asked, time the publishes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--scale-from", type=Path)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    settings = Settings(home=args.home)
    if args.scale_from is not None:
        source = Settings(home=args.scale_from).warehouse_path
        seconds = scale_warehouse(source, settings.warehouse_path, args.scale)
        print(f"built {settings.warehouse_path} ({args.scale}x) in {seconds:.1f} s")
    seconds = []
    summary = None
    for _ in range(args.repeat):
        summary = publish_analytics(settings, date.today(), "bench_publish")
        seconds.append(summary.elapsed_seconds)
    assert summary is not None
    warehouse = settings.warehouse_path.stat().st_size / MIB
    print(f"warehouse {settings.warehouse_path}: {warehouse:,.0f} MiB")
    print(f"analyst copy {summary.path}: {summary.size_bytes / MIB:,.0f} MiB")
    largest = sorted(summary.tables.items(), key=lambda kv: -kv[1])[:5]
    print(
        f"{len(summary.tables)} tables, {sum(summary.tables.values()):,} rows; "
        "largest: " + ", ".join(f"{name} {rows:,}" for name, rows in largest)
    )
    print(
        f"publish: {', '.join(f'{s:.2f}' for s in seconds)} s "
        f"(median {statistics.median(seconds):.2f} s)"
    )
    if args.compare:
        copy_by_rows(settings)


if __name__ == "__main__":
    main()
