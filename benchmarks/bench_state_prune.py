"""Pruning ``intermediate.int_customer_states`` every night against in batches.

A night's build appends one day of states (one row per known customer) and, with
nightly pruning, deletes the oldest day in the same transaction. A delete leaves
partly deleted row groups that DuckDB rewrites at the commit's checkpoint. The
model now prunes only once the oldest state is more than twice
``state_keep_days`` old, down to ``state_keep_days``.

Point ``--home`` at a home whose warehouse holds states (a finished ``loopline
demo``; only read). The table is copied into a scratch file, once per way and
round; each night then appends the last day's states again under the next date
and prunes as that way does, in one transaction, as the dbt build does. Prints
each way's seconds per night (statement and commit), their ratio, and the days
of states each way ends with.

``--copies K`` repeats every day's states K times under suffixed customer ids,
for the cost at K times the customer base.

Run: ``.venv/bin/python benchmarks/bench_state_prune.py --home DIR [--nights 21]
[--rounds 2] [--keep 7] [--copies 1]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import duckdb

from ml.config.settings import Settings
from ml.storage.warehouse import duckdb_config

TABLE = "intermediate.int_customer_states"


def _scratch(warehouse: Path, directory: Path, copies: int) -> Path:
    """A file holding only the state table, in the warehouse's order; with
    ``copies`` above 1, every day's states repeated that many times under
    suffixed customer ids (a customer base that many times as large)."""
    path = directory / "states.duckdb"
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path), config=duckdb_config())
    try:
        con.execute(f"attach '{warehouse}' as source (read_only)")
        con.execute("create schema intermediate")
        con.execute(
            f"create table {TABLE} as select * replace (customer_id || '-' || copy "
            f"as customer_id) from source.{TABLE}, range(?) as copies(copy) "
            "order by state_date, copy",
            [copies],
        )
        con.execute("detach source")
        con.execute("checkpoint")
    finally:
        con.close()
    return path


def _nights(path: Path, nights: int, keep: int, batched: bool) -> tuple[float, int]:
    """Seconds per night and the days of states left at the end."""
    con = duckdb.connect(str(path), config=duckdb_config())
    seconds = 0.0
    try:
        for _ in range(nights):
            last = con.execute(f"select max(state_date) from {TABLE}").fetchone()
            assert last is not None and last[0] is not None, "no states"
            day = last[0] + timedelta(days=1)
            con.execute(
                "create temp table day_states as select * replace "
                f"(state_date + 1 as state_date) from {TABLE} where state_date = ?",
                [last[0]],
            )
            began = time.perf_counter()
            con.execute("begin transaction")
            con.execute(f"insert into {TABLE} select * from day_states")
            if batched:
                con.execute(
                    f"delete from {TABLE} where state_date < ? and exists "
                    f"(select 1 from {TABLE} where state_date < ?)",
                    [day - timedelta(days=keep), day - timedelta(days=2 * keep)],
                )
            else:
                con.execute(
                    f"delete from {TABLE} where state_date < ?",
                    [day - timedelta(days=keep)],
                )
            con.execute("commit")
            seconds += time.perf_counter() - began
            con.execute("drop table day_states")
        days = con.execute(f"select count(distinct state_date) from {TABLE}").fetchone()
    finally:
        con.close()
    return seconds / nights, int(days[0]) if days else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--nights", type=int, default=21)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", type=int, default=7)
    parser.add_argument(
        "--copies",
        type=int,
        default=1,
        help="repeat each day's states this many times (a larger customer base)",
    )
    args = parser.parse_args()
    warehouse = Settings(home=args.home).warehouse_path
    ways = {"every night": False, "in batches": True}
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    left: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        source = _scratch(warehouse, Path(scratch), args.copies)
        con = duckdb.connect(str(source), read_only=True)
        rows = con.execute(
            f"select count(*), count(distinct state_date) from {TABLE}"
        ).fetchone()
        con.close()
        assert rows is not None
        print(f"{rows[0]:,} states over {rows[1]} days; {args.nights} nights a way")
        for round_ in range(args.rounds):
            order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
            for way in order:
                copy = Path(scratch) / "copy.duckdb"
                shutil.copyfile(source, copy)
                per_night, left[way] = _nights(copy, args.nights, args.keep, ways[way])
                seconds[way].append(per_night)
                copy.unlink()
                print(
                    f"  round {round_ + 1} {way}: {per_night:.3f} s a night",
                    flush=True,
                )
    nightly, batched = (statistics.median(seconds[way]) for way in ways)
    print(
        f"pruning every night {nightly:.3f} s a night (keeps {left['every night']} "
        f"days), in batches {batched:.3f} s ({left['in batches']} days): "
        f"{nightly / batched:.2f}x"
    )


if __name__ == "__main__":
    main()
