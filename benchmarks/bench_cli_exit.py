"""What a ``loopline`` process spends after its command has finished.

The console script (``ml.cli.app:main``) runs the command, then the exit steps
the program needs (thread exit hooks and joins, ``atexit`` functions, flushing
standard output and error), and ends the process without the interpreter's
teardown. ``app()`` alone, as ``python -c "from ml.cli.app import app; app()"``
runs it, exits as any Python program does: the same steps, then the teardown.

Builds a small world through the CLI (``loopline simulate``, ``rebuild``,
``train``, ``promote``), unless ``--home`` already holds one, then runs the same
night (``loopline run --date``, a rerun: the night is replaced each time) both
ways, alternating, ``--repeats`` times each. Prints each process's wall time,
the time from its last line of output to its exit, the best of each way and the
difference, and checks both ways give the same exit code and summary line
(the line that starts with the night's date) and that every night ran ok.

Run: ``.venv/bin/python benchmarks/bench_cli_exit.py [--customers 2000]
[--home DIR] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = str(REPO / ".venv" / "bin" / "python")
LOOPLINE = str(REPO / ".venv" / "bin" / "loopline")
APP_ONLY = [PYTHON, "-c", "import sys; from ml.cli.app import app; app()"]
START = date(2025, 1, 1)
DAYS = 200


def build_world(home: Path, customers: int, env: dict[str, str]) -> date:
    """A world with a history, a first model and a champion; returns its night."""
    last = START + timedelta(days=DAYS - 1)
    marker = home / "bench_cli_exit.txt"
    if marker.exists():
        return date.fromisoformat(marker.read_text().strip())
    steps = [
        ["simulate", "--customers", str(customers), "--days", str(DAYS + 1)]
        + ["--start", START.isoformat(), "--reset"],
        ["rebuild", "--start", START.isoformat(), "--end", last.isoformat()]
        + ["--every", "7"],
        ["train", "--as-of", last.isoformat()],
        ["promote", "1", "--reason", "bench_cli_exit: first model"],
    ]
    for args in steps:
        print(f"$ loopline {' '.join(args)}", flush=True)
        subprocess.run(
            [LOOPLINE, *args], env=env, check=True, capture_output=True, text=True
        )
    night = last + timedelta(days=1)
    subprocess.run(
        [LOOPLINE, "run", "--date", night.isoformat()],
        env=env,
        check=True,
        capture_output=True,
    )
    marker.write_text(night.isoformat())
    return night


def timed(
    command: list[str], env: dict[str, str], night: str
) -> tuple[float, float, int, str]:
    """Wall seconds, seconds from the last output line to exit, exit code, and
    the night's summary line (the one that starts with its date)."""
    began = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    summary, last_at = "", began
    for line in process.stdout:
        if line.strip():
            last_at = time.perf_counter()
            if line.startswith(night):
                summary = line.strip()
    code = process.wait()
    ended = time.perf_counter()
    return ended - began, ended - last_at, code, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--home", type=Path, help="a world to reuse (or build)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="loopline-bench-exit-"))
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, LOOPLINE_HOME=str(home), PYTHONWARNINGS="ignore")
    night = build_world(home, args.customers, env)
    command = ["run", "--date", night.isoformat()]
    ways = {"console script": [LOOPLINE, *command], "app() alone": APP_ONLY + command}
    walls: dict[str, list[float]] = {way: [] for way in ways}
    tails: dict[str, list[float]] = {way: [] for way in ways}
    outcomes: dict[str, set[tuple[int, str]]] = {way: set() for way in ways}
    print(f"\nloopline run --date {night} in {home}, alternating\n")
    print(f"{'way':16} {'wall s':>8} {'after last line s':>18}  exit")
    for _ in range(args.repeats):
        for way, argv in ways.items():
            wall, tail, code, line = timed(argv, env, night.isoformat())
            walls[way].append(wall)
            tails[way].append(tail)
            # the summary line without its seconds, which differ run to run
            outcomes[way].add((code, " ".join(line.split()[:2])))
            print(f"{way:16} {wall:8.2f} {tail:18.2f}  {code}", flush=True)
    fast, plain = min(walls["console script"]), min(walls["app() alone"])
    print(f"\nbest wall: console script {fast:.2f} s, app() alone {plain:.2f} s")
    print(f"saved {plain - fast:.2f} s a process ({plain / fast:.3f}x)")
    tail_fast, tail_plain = min(tails["console script"]), min(tails["app() alone"])
    print(f"after the last line: {tail_fast:.2f} s against {tail_plain:.2f} s")
    same = outcomes["console script"] == outcomes["app() alone"]
    single = len(outcomes["console script"]) == 1
    # a night that failed or ran nothing times nothing worth comparing
    ran = all(
        code == 0 and line.endswith(" ok")
        for found in outcomes.values()
        for code, line in found
    )
    print(f"same exit code and summary both ways: {'yes' if same else 'NO'}")
    print(f"every night ran ok: {'yes' if ran else 'NO'}")
    if not (same and single and ran):
        print(f"outcomes: {outcomes}")
        sys.exit(1)


if __name__ == "__main__":
    main()
