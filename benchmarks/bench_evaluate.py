"""The demo report's valuation of the loop (``ml.sim.evaluate.evaluate_range``):
every night's reads through one held read-only instance of the warehouse, against
a new instance for each read (what it did before).

Point ``--home`` at a finished ``loopline demo`` home (only read). Runs both ways
``--rounds`` times in one process, alternating which goes first, and prints each
way's seconds, their ratio, and whether both gave the same table.

Run: ``.venv/bin/python benchmarks/bench_evaluate.py --home DIR --start D --end D
[--rounds 2]``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd

import ml.sim.evaluate as evaluate
from ml.config.settings import Settings


@contextlib.contextmanager
def _no_hold(path: Path, read_only: bool = False) -> Iterator[None]:
    """A hold that holds nothing: every read opens its own instance."""
    yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    settings = Settings(home=args.home)
    ways = {"one held instance": evaluate.hold, "an instance per read": _no_hold}
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    tables: dict[str, pd.DataFrame] = {}
    for round_ in range(args.rounds):
        order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
        for way in order:
            evaluate.hold = ways[way]  # type: ignore[assignment]
            began = time.perf_counter()
            tables[way] = evaluate.evaluate_range(settings, args.start, args.end)
            seconds[way].append(time.perf_counter() - began)
            print(f"  round {round_ + 1} {way}: {seconds[way][-1]:.2f} s", flush=True)
    held, per_read = (statistics.median(seconds[way]) for way in ways)
    same = tables["one held instance"].equals(tables["an instance per read"])
    nights = len(tables["one held instance"])
    print(f"{nights} nights valued; same table both ways: {same}")
    print(
        f"median: one held instance {held:.2f} s, an instance per read {per_read:.2f} s"
    )
    print(f"ratio: {per_read / held:.2f}x")


if __name__ == "__main__":
    main()
