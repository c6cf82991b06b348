"""The landing gate's feedback lookup: the recent decisions first, or every decision.

The landing gate checks each action result against the decision it answers
(``ml.data.validation.references.check_references``). It now looks the rows up
among the decisions of the ``RECENT_DAYS`` before them first (a scan of that
window: the decisions are stored in run-date order) and only the rows not settled
there among every earlier decision. Before, every night joined the day's results
with every treated decision on record, a scan that grew with the history.

Point ``--home`` at a finished ``loopline demo`` home (only read). The benchmark
reads the last landed day's action results and, in one process, alternates the
two ways over the warehouse: the windowed lookup, and the one lookup over every
decision (the window set before the first decision). Prints each way's median
seconds, their ratio, and checks that both give the same verdicts.

Run: ``.venv/bin/python benchmarks/bench_feedback_references.py --home DIR
[--rounds 15]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

import ml.data.validation.references as references
from ml.config.settings import Settings
from ml.storage.landing_files import list_partition_dates
from ml.storage.warehouse import connect


def _last_results(settings: Settings) -> tuple[date, pd.DataFrame]:
    days = list_partition_dates(settings.landing_dir, "action_results")
    if not days:
        raise SystemExit("the home has no landed action results")
    day = days[-1]
    folder = settings.landing_dir / "action_results" / f"dt={day.isoformat()}"
    frame = pd.concat(
        [pd.read_parquet(path) for path in sorted(folder.glob("*.parquet"))],
        ignore_index=True,
    )
    if frame.empty:
        raise SystemExit(f"the action results of {day} have no rows: nothing to time")
    return day, frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    settings = Settings(home=args.home)
    day, frame = _last_results(settings)
    days = np.full(len(frame), np.datetime64(day, "us"))
    recent = references.RECENT_DAYS
    with connect(settings.warehouse_path, read_only=True) as con:
        first = con.execute("select min(run_date) from marts.decisions").fetchone()
        history = con.execute(
            "select count(*), count(distinct run_date) from marts.decisions "
            "where arm = 'treated'"
        ).fetchone()
        assert first is not None and history is not None
        every = (day - first[0]).days + 1  # a window before the first decision
        seconds: dict[str, list[float]] = {
            "recent window first": [],
            "every decision": [],
        }
        verdicts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for _ in range(args.rounds):
            for way, window in (
                ("recent window first", recent),
                ("every decision", every),
            ):
                references.RECENT_DAYS = window
                began = time.perf_counter()
                verdicts[way] = references.check_references(
                    con, "action_results", frame, days
                )
                seconds[way].append(time.perf_counter() - began)
    references.RECENT_DAYS = recent
    print(
        f"{len(frame):,} action results of {day}; {history[0]:,} treated decisions "
        f"over {history[1]} run dates; window {recent} days"
    )
    medians = {way: statistics.median(values) for way, values in seconds.items()}
    for way, value in medians.items():
        print(f"{way:<22}{value * 1000:9.1f} ms (median of {args.rounds})")
    print(
        f"every decision / recent window first: "
        f"{medians['every decision'] / medians['recent window first']:.2f}x"
    )
    a, b = verdicts["recent window first"], verdicts["every decision"]
    same = np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    print(
        f"same verdicts: {same} (unknown {int(a[0].sum())}, mismatch {int(a[1].sum())})"
    )
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
