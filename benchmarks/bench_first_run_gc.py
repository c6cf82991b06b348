"""A process's first DAG run, with and without the garbage collector's full
collections.

``loopline_airflow.runner.run_dag`` holds off CPython's full (old-generation)
collections during the first DAG run of a process, while it loads Airflow, dbt,
GX, MLflow and scikit-learn (``_full_collections_deferred``). This runs the same
night (``loopline run --date``, a rerun: the night is replaced each time) in
child processes, alternating: as the console script runs it, and with the
deferral switched off beforehand (the collector as CPython sets it). Each child
reports its full collections (count and seconds, from ``gc.callbacks``) and its
peak RSS; this prints them with the wall times, the best of each way and the
difference, and checks both ways end the same.

The world is built as ``benchmarks/bench_cli_exit.py`` builds it, unless
``--home`` already holds one (``--home`` of a ``bench_scale.py`` world works too,
with ``--date`` one of its nights).

Run: ``.venv/bin/python benchmarks/bench_first_run_gc.py [--customers 2000]
[--home DIR] [--date YYYY-MM-DD] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_cli_exit import PYTHON, build_world

CHILD = """
import atexit, gc, json, resource, sys, time
full = {"collections": 0, "seconds": 0.0}
began = [0.0]
def watch(phase, info):
    if info["generation"] != 2:
        return
    if phase == "start":
        began[0] = time.perf_counter()
    else:
        full["collections"] += 1
        full["seconds"] += time.perf_counter() - began[0]
gc.callbacks.append(watch)
if sys.argv[1] == "off":
    import loopline_airflow.runner as runner
    runner._FIRST_RUN_BEGUN.set()  # as if a run had begun: no deferral
def report():
    full["max_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print("GC " + json.dumps(full), flush=True)
atexit.register(report)
from ml.cli.app import main
sys.argv = ["loopline", *sys.argv[2:]]
main()
"""


def child(way: str, night: str, env: dict[str, str]) -> dict[str, float]:
    """One night in a child process: wall, exit code, full collections, RSS."""
    began = time.perf_counter()
    done = subprocess.run(
        [PYTHON, "-c", CHILD, way, "run", "--date", night],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - began
    lines = [line for line in done.stdout.splitlines() if line.startswith("GC ")]
    if not lines:
        sys.exit(f"the {way} child reported nothing:\n{done.stdout}\n{done.stderr}")
    figures = json.loads(lines[-1][3:])
    summary = [line for line in done.stdout.splitlines() if night in line]
    figures |= {"wall": wall, "code": float(done.returncode)}
    figures["ok"] = float(bool(summary) and " ok " in f" {summary[-1]} ")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--home", type=Path, help="a world to reuse (or build)")
    parser.add_argument("--date", help="the night to rerun (default: the world's)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="loopline-bench-gc-"))
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, LOOPLINE_HOME=str(home), PYTHONWARNINGS="ignore")
    night = args.date or build_world(home, args.customers, env).isoformat()
    print(f"\nloopline run --date {night} in {home}, alternating\n")
    print(f"{'way':22} {'wall s':>7} {'full GCs':>9} {'their s':>8} {'RSS GB':>7}")
    ways = {"deferred (as shipped)": "on", "CPython's defaults": "off"}
    results: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
    for _ in range(args.repeats):
        for way, switch in ways.items():
            got = child(switch, night, env)
            results[way].append(got)
            print(
                f"{way:22} {got['wall']:7.2f} {got['collections']:9.0f} "
                f"{got['seconds']:8.2f} {got['max_rss_gb']:7.2f}"
                + ("" if got["ok"] and got["code"] == 0 else "  (run not ok)"),
                flush=True,
            )
    best = {way: min(r["wall"] for r in runs) for way, runs in results.items()}
    rss = {way: max(r["max_rss_gb"] for r in runs) for way, runs in results.items()}
    on, off = best["deferred (as shipped)"], best["CPython's defaults"]
    rss_on, rss_off = rss["deferred (as shipped)"], rss["CPython's defaults"]
    print(f"\nbest wall: deferred {on:.2f} s, CPython's defaults {off:.2f} s")
    print(f"saved {off - on:.2f} s a night ({off / on:.3f}x)")
    print(f"peak RSS: deferred {rss_on:.2f} GB, defaults {rss_off:.2f} GB")
    every_ok = all(
        r["ok"] and r["code"] == 0 for runs in results.values() for r in runs
    )
    print(f"every night ran ok both ways: {'yes' if every_ok else 'NO'}")
    if not every_ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
