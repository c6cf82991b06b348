"""Loop days with the warehouse held open for the day against opened by each task.

In-process, every task of a DAG run opens the warehouse, and its close
checkpoints what it wrote. The closed loop (and ``loopline run``/``backfill``)
now hold the file for the day's runs (``loopline_airflow.runner.hold_warehouse``):
every task's connection, dbt's too, is a cursor of one DuckDB instance,
checkpointed once at the end.

Point ``--home`` at a finished ``loopline demo`` home (only read). For each
round and each way, the home is copied to a scratch directory and a fresh
process runs one warm-up day and then ``--nights`` loop days there through the
real DAGs (simulate, ``loopline_nightly``, ``loopline_outcomes``), with the hold
or without it. The two ways run the same days of the same world, one after the
other, alternating their order each round (a day on which a retrain ran is left
out, and named). Prints each way's mean and median
seconds per loop day (the whole day, the final checkpoint included), the
seconds in Airflow's tasks, and the ratio.

Run: ``.venv/bin/python benchmarks/bench_night_hold.py --home DIR [--nights 10]
[--rounds 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WAYS = ("held", "opened by each task")


def _worker(nights: int, held: bool) -> None:
    """Run a warm-up day and ``nights`` loop days in ``LOOPLINE_HOME``; print one
    JSON line per measured day."""
    from loopline_airflow import closed_loop
    from loopline_airflow.runner import configure, send_logs_to

    from ml.config.settings import get_settings
    from ml.ops.tasks import deferred_data_docs
    from ml.sim.world import next_sim_day

    settings = get_settings()
    configure(settings)
    send_logs_to(open(os.devnull, "w"))  # noqa: SIM115 - for the process's life
    if not held:
        closed_loop.hold_warehouse = lambda settings: nullcontext()  # type: ignore[assignment,misc]
    start = next_sim_day(settings)
    with deferred_data_docs(settings, start):
        closed_loop.run_loop(settings, [start])
        for offset in range(1, nights + 1):
            began = time.perf_counter()
            [day] = closed_loop.run_loop(settings, [start + timedelta(days=offset)])
            wall = time.perf_counter() - began
            if not day.ok:
                raise SystemExit(f"{day.day}: a DAG run failed")
            tasks = day.seconds.get("nightly", 0.0) + day.seconds.get("outcomes", 0.0)
            retrain = day.retrain is not None
            print(
                json.dumps(
                    {
                        "day": str(day.day),
                        "wall": wall,
                        "runs": tasks,
                        "retrain": retrain,
                    }
                )
            )


def _run_way(
    home: Path, scratch: Path, nights: int, held: bool
) -> list[dict[str, Any]]:
    target = scratch / "home"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(home, target, symlinks=True)
    env = os.environ | {"LOOPLINE_HOME": str(target)}
    command = [sys.executable, __file__, "--worker", "--nights", str(nights)]
    if held:
        command.append("--held")
    done = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"the loop failed:\n{done.stderr[-2000:]}")
    rows = [
        json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")
    ]
    # a day with a retrain is another workload: left out, and counted
    retrained = [r["day"] for r in rows if r["retrain"]]
    if retrained:
        print(f"  left out (a retrain ran): {', '.join(retrained)}")
    rows = [r for r in rows if not r["retrain"]]
    shutil.rmtree(target, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a finished demo home (only read)")
    parser.add_argument("--nights", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--held", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.nights, args.held)
        return
    if args.home is None or not (args.home / "warehouse.duckdb").is_file():
        raise SystemExit("--home must be a finished demo home (warehouse.duckdb)")
    measured: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory(prefix="bench_night_hold_") as scratch:
        for round_ in range(args.rounds):
            order = [True, False] if round_ % 2 == 0 else [False, True]
            for held in order:
                way = WAYS[0] if held else WAYS[1]
                rows = _run_way(args.home, Path(scratch), args.nights, held)
                measured[way] += rows
                print(
                    f"round {round_ + 1}, {way}: "
                    f"{statistics.mean(r['wall'] for r in rows):.2f} s a day",
                    flush=True,
                )
    print(f"\n{'way':<22}{'days':>6}{'mean s':>9}{'median s':>10}{'in runs s':>11}")
    means = {}
    for way, rows in measured.items():
        walls = [r["wall"] for r in rows]
        means[way] = statistics.mean(walls)
        print(
            f"{way:<22}{len(rows):>6}{means[way]:>9.2f}{statistics.median(walls):>10.2f}"
            f"{statistics.mean(r['runs'] for r in rows):>11.2f}"
        )
    print(f"\nopened by each task / held: {means[WAYS[1]] / means[WAYS[0]]:.2f}x")


if __name__ == "__main__":
    main()
