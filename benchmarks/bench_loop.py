"""How long does the closed-loop demo take, against its time target, and where
does a loop day go?

Runs ``loopline demo`` (``--quick`` by default, or the full defaults with
``--full``) in a fresh process and home, then prints side by side: the measured
wall time against the issue's target (5 min quick, 15 min full) as a ratio, and the
mean seconds per task of each DAG from the embedded Airflow's metadata, with each
task's share of a loop day.

Run: ``.venv/bin/python benchmarks/bench_loop.py [--full] [--keep]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"quick": 5 * 60.0, "full": 15 * 60.0}


def task_seconds(airflow_db: Path) -> list[tuple[str, str, float, int]]:
    """Mean duration and count of every task of every DAG run recorded."""
    con = sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "select dag_id, task_id, avg(duration), count(*) from task_instance "
            "where duration is not null group by dag_id, task_id "
            "order by dag_id, avg(duration) desc"
        ).fetchall()
    finally:
        con.close()
    return [(str(d), str(t), float(s), int(n)) for d, t, s, n in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full default demo")
    parser.add_argument("--keep", action="store_true", help="keep the home")
    args = parser.parse_args()
    mode = "full" if args.full else "quick"
    home = Path(tempfile.mkdtemp(prefix=f"loopline-bench-loop-{mode}-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["LOOPLINE_HOME"] = str(home)
    command = [str(Path(sys.executable).with_name("loopline")), "demo"]
    if not args.full:
        command.append("--quick")
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:])
        raise SystemExit(f"loopline demo failed with exit code {done.returncode}")
    target = TARGETS[mode]
    print(f"loopline demo{' --quick' if mode == 'quick' else ''} in {home}")
    print(
        f"  wall time {seconds:7.1f} s   target {target:5.0f} s   ratio "
        f"{seconds / target:.2f} (<= 1 meets the target)"
    )
    rows = task_seconds(home / "airflow" / "airflow.db")
    per_day = sum(s for d, _, s, _ in rows if d != "loopline_retrain")
    print(f"  one loop day: {per_day:.1f} s in tasks (nightly + outcomes)")
    print(f"  {'dag':<18} {'task':<20} {'mean s':>7} {'runs':>5} {'share':>6}")
    for dag, task, mean, runs in rows:
        share = f"{mean / per_day:6.1%}" if dag != "loopline_retrain" else "     -"
        print(f"  {dag:<18} {task:<20} {mean:7.2f} {runs:5d} {share}")
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
