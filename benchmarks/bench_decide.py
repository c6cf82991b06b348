"""Benchmark of ``ml.decision.engine.decide`` against its 10 s target for 1M customers.

Builds ``--rows`` synthetic scored customers (skewed p_churn, lognormal value at
risk, some contact history, a few out-of-distribution rows), then times ``decide``
with the shipped ``config/policy.yml`` (3 actions, capacities, budget, holdout,
review routing and the full allocation search), in model mode and in fallback mode.
Each mode runs ``--repeat`` times; the best time is reported, with rows/s and the
ratio to the target (below 1 is within target).

Run: ``.venv/bin/python benchmarks/bench_decide.py [--rows N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import numpy as np
import pandas as pd

from ml.config.policy import load_policy_config
from ml.decision.engine import Mode, decide, summarize

RUN_DATE = date(2024, 6, 1)
TARGET_SECONDS = 10.0
TARGET_ROWS = 1_000_000


def synthetic_candidates(rows: int, seed: int = 7) -> pd.DataFrame:
    """Scored customers shaped like a nightly ``decide`` input."""
    rng = np.random.default_rng(seed)
    contacted = rng.uniform(size=rows) < 0.08
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:08d}" for i in range(rows)],
            "p_churn": rng.beta(1.2, 6.0, rows),
            "value_at_risk": rng.lognormal(4.3, 1.1, rows),
            "plan": rng.choice(["basic", "plus", "premium"], rows, p=[0.6, 0.3, 0.1]),
            "region": rng.choice(["north", "south", "east", "west", "central"], rows),
            "recency_days": rng.integers(0, 180, rows),
            "tx_count_180d": rng.poisson(6.0, rows),
            "days_since_last_contact_decision": np.where(
                contacted, rng.integers(1, 90, rows), np.nan
            ),
            "contacts_90d_decisions": np.where(contacted, rng.integers(1, 4, rows), 0),
            "ood": rng.uniform(size=rows) < 0.002,
        }
    )


def _time(frame: pd.DataFrame, mode: Mode, repeat: int) -> tuple[float, pd.DataFrame]:
    config = load_policy_config()
    best, out = float("inf"), pd.DataFrame()
    for _ in range(repeat):
        began = time.perf_counter()
        out = decide(
            frame, RUN_DATE, config, mode, "bench" if mode == "model" else None
        )
        best = min(best, time.perf_counter() - began)
    return best, out


def main() -> None:
    """Parse arguments, build the candidates, time both modes, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=TARGET_ROWS)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    began = time.perf_counter()
    frame = synthetic_candidates(args.rows)
    print(f"built {args.rows} candidates in {time.perf_counter() - began:.2f} s")
    decide(frame.head(1000), RUN_DATE, load_policy_config(), "model", "warm-up")

    config = load_policy_config()
    # The target is for 1M rows; smaller or larger runs scale it linearly.
    target = TARGET_SECONDS * args.rows / TARGET_ROWS
    for mode in ("model", "fallback"):
        seconds, out = _time(frame, mode, args.repeat)
        summary = summarize(out, config)
        arms = ", ".join(
            f"{a} {summary[f'arm_{a}']}" for a in ("treated", "holdout", "review")
        )
        print(
            f"decide({mode}): {seconds:.2f} s for {args.rows} rows, "
            f"{args.rows / seconds:,.0f} rows/s, "
            f"ratio to target ({target:.1f} s): {seconds / target:.2f}"
        )
        print(
            f"  {arms}; budget used {summary['budget_used']:.1f} of "
            f"{summary['budget']:.0f}; expected value {summary['expected_value']:,.0f}"
        )


if __name__ == "__main__":
    main()
