"""The training run's permutation importance: scikit-learn's loop against
``ml.prediction.metrics.permutation_importance`` (one ``predict_proba`` call).

Fits the shipped gradient-boosting candidate, calibrated, on a synthetic frame with
``--features`` numeric columns and one categorical column, then times both
implementations side by side on ``importance_rows`` test rows and
``importance_repeats`` repeats of ``config/model.yml``, checks they agree, and prints
the ratio.

Run: ``.venv/bin/python benchmarks/bench_importance.py [--features N]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn import inspection

from ml.config.model import load_model_config
from ml.prediction import metrics
from ml.prediction.models import GRADIENT_BOOSTING, fit_calibrated


def frame(
    rng: np.random.Generator, rows: int, features: int
) -> tuple[pd.DataFrame, pd.Series]:
    """Numeric features, a plan column, and a label driven by a few of them."""
    data = pd.DataFrame(rng.normal(size=(rows, features))).add_prefix("f")
    data["plan"] = pd.Categorical(rng.choice(["basic", "plus", "pro"], rows))
    logit = data["f0"] - 0.5 * data["f1"] + np.where(data["plan"] == "basic", 1, 0)
    label = pd.Series(rng.random(rows) < 1 / (1 + np.exp(-logit)), dtype=int)
    return data, label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=27)
    args = parser.parse_args()
    config = load_model_config()
    rng = np.random.default_rng(0)
    numeric = [f"f{i}" for i in range(args.features)]
    x_train, y_train = frame(rng, 20_000, args.features)
    x_valid, y_valid = frame(rng, 5_000, args.features)
    x_test, y_test = frame(rng, config.importance_rows, args.features)
    model = fit_calibrated(
        GRADIENT_BOOSTING,
        numeric,
        ["plan"],
        config,
        x_train,
        y_train,
        x_valid,
        y_valid,
    )
    repeats, seed = config.importance_repeats, config.random_state
    began = time.perf_counter()
    theirs = inspection.permutation_importance(
        model, x_test, y_test, scoring="roc_auc", n_repeats=repeats, random_state=seed
    )
    sklearn_seconds = time.perf_counter() - began
    began = time.perf_counter()
    ours = metrics.permutation_importance(model, x_test, y_test, repeats, seed)
    ours_seconds = time.perf_counter() - began
    agree = np.allclose(ours, theirs.importances, rtol=0, atol=1e-12)
    print(
        f"{args.features + 1} features x {repeats} repeats on "
        f"{config.importance_rows} rows (calibrated {GRADIENT_BOOSTING})"
    )
    print(f"  scikit-learn permutation_importance  {sklearn_seconds:7.2f} s")
    print(f"  one predict_proba call               {ours_seconds:7.2f} s")
    print(
        f"  ratio (scikit-learn / ours)          {sklearn_seconds / ours_seconds:7.1f}x"
    )
    print(f"  same importances                     {agree}")


if __name__ == "__main__":
    main()
