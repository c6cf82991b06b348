"""Benchmark of the simulated world against its speed targets.

Measures, each in a fresh temporary ``LOOPLINE_HOME``:

* one day of a new world (the initial base plus its first day),
* a history of ``--days`` days in one call,
* one nightly day continuing that history, with a day of exported queues to act on.

Run: ``.venv/bin/python benchmarks/bench_sim.py [--customers N] [--days D]``.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from ml.config.settings import get_settings
from ml.contract.schema import ACTIONS, CHANNELS, EXPORT_COLUMNS
from ml.sim import SimSummary, load_sim_config, simulate, simulate_next_day

START = date(2024, 1, 1)
TARGET_ONE_DAY = 2.0
TARGET_YEAR = 90.0
# Share of customers in each exported queue of the nightly run.
QUEUE_SHARE = 0.01


def _timed(run: Callable[[], SimSummary]) -> tuple[float, SimSummary]:
    began = time.perf_counter()
    summary = run()
    return time.perf_counter() - began, summary


def _disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _write_queues(exports_dir: Path, day: date, customers: int) -> int:
    """Exported queues of ``day``: a slice of the base per channel, and a review."""
    folder = exports_dir / f"dt={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    size = max(1, int(customers * QUEUE_SHARE))
    for k, (channel, action) in enumerate(zip(CHANNELS, ACTIONS, strict=True)):
        with (folder / f"{channel}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(EXPORT_COLUMNS)
            for n in range(k * size + 1, (k + 1) * size + 1):
                writer.writerow([f"{day}-{n}", f"C{n:08d}", action, 10.0, "", "", ""])
    with (folder / "review.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["decision_id", "customer_id", "action", "p_churn"])
        for n in range(1, size + 1):
            writer.writerow([f"{day}-review-{n}", f"C{n:08d}", "call", 0.5])
    return 3 * size + size


def main() -> None:
    """Run the three measurements and print them against their targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    # The default config, without drift or faults, at the requested size.
    config = load_sim_config().model_copy(
        update={"n_customers": args.customers, "drift": None}
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="loopline-bench-") as tmp:
        os.environ["LOOPLINE_HOME"] = str(Path(tmp) / "one_day")
        settings = get_settings()
        seconds, _ = _timed(
            lambda: simulate(settings, config, START, 1, progress=False)
        )
        rows.append(("one day, new world", seconds, TARGET_ONE_DAY))

        os.environ["LOOPLINE_HOME"] = str(Path(tmp) / "history")
        settings = get_settings()
        seconds, history = _timed(
            lambda: simulate(settings, config, START, args.days, progress=False)
        )
        target = TARGET_YEAR * args.days / 365
        rows.append((f"{args.days} days, one call", seconds, target))

        last = START + timedelta(days=args.days - 1)
        queued = _write_queues(settings.exports_dir, last, args.customers)
        seconds, nightly = _timed(lambda: simulate_next_day(settings))
        rows.append(("one nightly day, continued", seconds, TARGET_ONE_DAY))
        disk = _disk_mb(settings.root)

    print(f"\nsimulated world: {args.customers:,} customers, seed {config.seed}")
    print(
        f"history: {history.rows['transactions']:,} transactions, "
        f"{history.churn_events:,} churn events, {history.customers_total:,} "
        f"customers in the end, {disk:,.0f} MB on disk"
    )
    print(
        f"nightly day: {queued:,} exported decisions -> "
        f"{nightly.rows['action_results']:,} action results, "
        f"{nightly.rows['review_decisions']:,} review decisions\n"
    )
    print(f"{'measurement':<30} {'measured s':>11} {'target s':>9} {'ratio':>6}")
    for name, seconds, target in rows:
        print(f"{name:<30} {seconds:>11.2f} {target:>9.1f} {seconds / target:>6.2f}")


if __name__ == "__main__":
    main()
