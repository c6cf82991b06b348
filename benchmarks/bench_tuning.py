"""Tuning the gradient-boosting candidate on every train row against ranking its
grid on a seeded sample (``tuning.sample_rows``) and fitting the winner alone on
every row.

Reads a training set that ``loopline train`` (or a retrain) wrote under
``--home`` (``reports/training/<as_of>``), and runs ``fit_tuned`` on it both ways
in one process, ``--rounds`` times, alternating which goes first. Prints each
way's median seconds, their ratio, the entry each chose, and the chosen model's
validation and test AUC, so the saving is shown beside what it costs in ranking.

Run: ``.venv/bin/python benchmarks/bench_tuning.py --home DIR --as-of D
[--sample-rows 100000] [--rounds 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from ml.config.model import load_model_config, resolve_threads
from ml.config.settings import Settings
from ml.prediction.metrics import score_metric
from ml.prediction.models import GRADIENT_BOOSTING, TunedCandidate, fit_tuned
from ml.prediction.training import (
    TrainingSet,
    model_features,
    split_frame,
    training_dir,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--as-of", type=date.fromisoformat, required=True)
    parser.add_argument("--sample-rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    settings = Settings(home=args.home)
    base = load_model_config()
    training = TrainingSet.load(training_dir(settings, args.as_of))
    frame = training.frame()
    numeric, categorical = model_features(frame, training.windows, base)
    parts = split_frame(frame, training.windows, numeric, categorical, base)
    bgnbd = training.bgnbd_of(0) if base.bgnbd.as_features else None
    print(
        f"training set {args.as_of}: {parts['train'].rows:,} train, "
        f"{parts['validation'].rows:,} validation, {parts['test'].rows:,} test rows; "
        f"{len(base.tuning.gradient_boosting)} grid entries"
    )
    ways = {"every row": 0, f"sample of {args.sample_rows:,}": args.sample_rows}
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    results: dict[str, TunedCandidate] = {}
    threads = resolve_threads(base, settings.threads)
    for round_ in range(args.rounds):
        order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
        for way in order:
            tuning = base.tuning.model_copy(update={"sample_rows": ways[way]})
            config = base.model_copy(update={"tuning": tuning})
            began = time.perf_counter()
            with threadpool_limits(limits=threads):
                results[way] = fit_tuned(
                    GRADIENT_BOOSTING,
                    numeric,
                    categorical,
                    config,
                    parts["train"].features,
                    parts["train"].label,
                    parts["validation"].features,
                    parts["validation"].label,
                    bgnbd,
                    training.horizon_days,
                )
            seconds[way].append(time.perf_counter() - began)
            print(f"  round {round_ + 1} {way}: {seconds[way][-1]:.1f} s", flush=True)

    def test_auc(result: TunedCandidate) -> float:
        scores: Any = result.model.predict_proba(parts["test"].features)[:, 1]
        return score_metric("roc_auc", parts["test"].label, scores)

    print(f"{'way':<20} {'median s':>9} {'chosen':>7} {'val AUC':>8} {'test AUC':>9}")
    grid = [dict(entry) for entry in base.tuning.gradient_boosting]
    for way, result in results.items():
        print(
            f"{way:<20} {statistics.median(seconds[way]):>9.1f} "
            f"{grid.index(result.overrides) + 1:>7} "
            f"{result.validation_score:>8.4f} {test_auc(result):>9.4f}"
        )
    full, sampled = (statistics.median(seconds[way]) for way in ways)
    print(f"ratio every row / sample: {full / sampled:.2f}x")


if __name__ == "__main__":
    main()
