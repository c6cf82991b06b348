"""Benchmark of the whole nightly ``decide`` step at 1M customers.

The step is :func:`ml.decision.decide_step.decide` and then
:func:`ml.action.exports.export_decided`, as the ``decide`` task runs them.

In a fresh temporary ``LOOPLINE_HOME``: trains and promotes a champion on a small
synthetic world, replaces ``marts.customer_features`` with one snapshot of
``--rows`` customers, scores it with the real score step, then times

* ``decide()``: read features, scores and 90 days of contact history from DuckDB,
  choose the mode, run the policy, explain the review cases, write
  ``marts.decisions`` / ``review_queue`` / ``policy_daily`` in one transaction and
  the queue exports with their manifest;
* the policy engine alone (``ml.decision.engine.decide``) on the same candidates,

side by side, with the step's ratio to its 10 s target. A second night (the next
date, with the first night's decisions as contact history) is timed as well.

Run: ``.venv/bin/python benchmarks/bench_decide_step.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from ml.action.exports import export_decided
from ml.config.model import load_model_config
from ml.config.policy import load_policy_config
from ml.config.settings import Settings
from ml.decision.decide_step import _candidates, decide
from ml.decision.engine import decide as run_policy
from ml.decision.value import value_at_risk
from ml.ops.tasks import score
from ml.prediction.registry import promote
from ml.prediction.train import train
from ml.sim.marts import write_synthetic_marts
from ml.storage.warehouse import connect

RUN_DATE = date(2024, 6, 1)
TARGET_SECONDS = 10.0


def main() -> None:
    """Parse arguments, build the world, time both, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    config = load_model_config()
    config.split.test_days = 14
    config.split.validation_days = 14
    config.split.gap_days = 7
    policy = load_policy_config()
    with tempfile.TemporaryDirectory(prefix="bench-decide-") as tmp:
        home = Path(tmp)
        (home / "loopline.yml").write_text("horizon_days: 7\n")
        settings = Settings(home=home, config_file=home / "loopline.yml")
        write_synthetic_marts(
            settings.warehouse_path, 1500, date(2024, 1, 1), 150, 1, 7
        )
        result = train(settings, RUN_DATE - timedelta(days=3), config, gate=False)
        promote(settings, result.model_version, "benchmark", config)
        nights = [RUN_DATE, RUN_DATE + timedelta(days=1)]
        write_synthetic_marts(settings.warehouse_path, args.rows, RUN_DATE, 2, seed=9)
        step: list[float] = []
        for night in nights:
            score(night, settings)
            began = time.perf_counter()
            summary = export_decided(settings, decide(settings, night, policy), policy)
            step.append(time.perf_counter() - began)
        with connect(settings.warehouse_path, read_only=True) as con:
            candidates = _candidates(con, nights[1], policy, None)
        candidates["value_at_risk"] = value_at_risk(candidates, policy, 7)
        began = time.perf_counter()
        run_policy(candidates, nights[1], policy, "model", summary.model_version)
        engine = time.perf_counter() - began
    arms = summary.as_dict()["arms"]
    print(f"customers per night: {len(candidates):,}")
    print(f"mode: {summary.policy_mode}, arms of night 2: {arms}")
    print(f"decide() step, night 1 (no contact history): {step[0]:.2f} s")
    print(f"decide() step, night 2 (night 1 as history):  {step[1]:.2f} s")
    print(f"policy engine alone on night 2's candidates:  {engine:.2f} s")
    print(f"step / engine: {step[1] / engine:.2f}")
    print(f"step / target ({TARGET_SECONDS:.0f} s): {max(step) / TARGET_SECONDS:.2f}")


if __name__ == "__main__":
    main()
