"""Benchmark of ``ml.prediction.train.train`` on a large synthetic training set.

Writes synthetic marts (``--rows`` feature rows in the train window, ~28 features)
into a fresh temporary ``LOOPLINE_HOME``, then times one full training run
(both candidates, calibration, metrics, plots, MLflow logging, registration and
the gate). Target: <= 60 s at 1M rows.

Run: ``.venv/bin/python benchmarks/bench_train.py [--rows N] [--reduced]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from ml.config.model import load_model_config, resolve_threads
from ml.config.settings import Settings
from ml.prediction.train import train
from ml.sim.marts import write_synthetic_marts

TARGET_SECONDS = 60.0
HORIZON = 7
TRAIN_DAYS = 56


def main() -> None:
    """Parse arguments, build the data, time the run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reduced", action="store_true", help="50k rows")
    args = parser.parse_args()
    rows = 50_000 if args.reduced else args.rows
    config = load_model_config()
    config.thinning.every_days = 1
    config.split.train_days = TRAIN_DAYS
    config.split.validation_days = 7
    config.split.test_days = 7
    config.split.gap_days = HORIZON
    n_days = TRAIN_DAYS + 7 + 7 + 2 * HORIZON + HORIZON
    n_customers = max(100, rows // TRAIN_DAYS)
    first = date(2024, 1, 1)
    as_of = first + timedelta(days=n_days - 1)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        home = Path(tmp)
        (home / "loopline.yml").write_text(f"horizon_days: {HORIZON}\n")
        settings = Settings(home=home, config_file=home / "loopline.yml")
        began = time.perf_counter()
        write_synthetic_marts(
            settings.warehouse_path, n_customers, first, n_days, horizon_days=HORIZON
        )
        prepared = time.perf_counter() - began
        began = time.perf_counter()
        result = train(settings, as_of, config)
        elapsed = time.perf_counter() - began
    verdict = "OK" if elapsed <= TARGET_SECONDS or args.reduced else "SLOW"
    print(
        f"synthetic marts: {prepared:.1f} s ({n_customers} customers x {n_days} days)"
    )
    print(f"rows: {result.rows}")
    print(f"threads: {resolve_threads(config, settings.threads)}")
    print(
        f"train(): {elapsed:.1f} s (target <= {TARGET_SECONDS:.0f} s at 1M) {verdict}"
    )
    print(
        f"test roc_auc {result.metrics['roc_auc']:.4f}, ece {result.metrics['ece']:.4f}"
    )


if __name__ == "__main__":
    main()
