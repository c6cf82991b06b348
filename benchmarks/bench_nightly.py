"""Does a night cost the same after a short and after a long history?

The nightly run must cost in proportion to the new day's data and the active
customers, not to the length of history. This script simulates one world, builds
its history up to two different lengths, and times the same nightly steps
(``validate_landing`` and the incremental ``dbt build``) after each, side by side.
The ratio long/short should stay near 1 while the history grows several-fold.

Run: ``.venv/bin/python benchmarks/bench_nightly.py [--customers N]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

START = date(2024, 1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--short", type=int, default=90, help="days of short history")
    parser.add_argument("--long", type=int, default=450, help="days of long history")
    parser.add_argument("--nights", type=int, default=2, help="nights timed each")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="loopline-bench-nightly-"))
    os.environ["LOOPLINE_HOME"] = str(home)
    os.environ["LOOPLINE_DBT_LOG_LEVEL"] = "warn"

    from ml.config.settings import get_settings
    from ml.ops.tasks import build_marts, rebuild, validate_landing
    from ml.sim import load_sim_config, simulate
    from ml.storage.warehouse import connect, ensure_schemas

    settings = get_settings()
    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
    total_days = args.long + args.nights
    config = load_sim_config().model_copy(
        update={"n_customers": args.customers, "drift": None}
    )
    print(f"simulating {args.customers:,} customers for {total_days} days in {home}")
    simulate(settings, config, start=START, days=total_days, progress=True)

    def night_seconds(history_days: int) -> tuple[float, int]:
        end = START + timedelta(days=history_days - 1)
        # weekly snapshots keep the bulk build cheap; nights only need raw history
        rebuild(START, end, every=7, settings=settings)
        times = []
        for i in range(1, args.nights + 1):
            day = end + timedelta(days=i)
            began = time.perf_counter()
            validate_landing(day, settings=settings)
            build_marts(day, settings=settings)
            times.append(time.perf_counter() - began)
        with connect(settings.warehouse_path, read_only=True) as con:
            row = con.execute("select count(*) from raw.transactions").fetchone()
        return min(times), int(row[0]) if row else 0

    short_s, short_rows = night_seconds(args.short)
    long_s, long_rows = night_seconds(args.long)

    print()
    print(f"{'history':<22}{'raw transactions':>18}{'night (s)':>12}")
    print(f"{f'{args.short} days':<22}{short_rows:>18,}{short_s:>12.2f}")
    print(f"{f'{args.long} days':<22}{long_rows:>18,}{long_s:>12.2f}")
    print(
        f"history grew {long_rows / max(short_rows, 1):.1f}x; "
        f"nightly cost ratio long/short = {long_s / short_s:.2f}"
    )


if __name__ == "__main__":
    main()
