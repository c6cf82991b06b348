"""The training run's metrics that are computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import inspection

from ml.config.model import load_model_config
from ml.prediction import metrics
from ml.prediction.models import GRADIENT_BOOSTING, fit_calibrated


def _frame(rng: np.random.Generator, rows: int) -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.DataFrame(
        {
            "recency_days": rng.exponential(20.0, rows),
            "spend_90d": rng.gamma(2.0, 50.0, rows),
            "noise": rng.normal(size=rows),
            "plan": pd.Categorical(rng.choice(["basic", "plus", "pro"], rows)),
        }
    )
    logit = 0.08 * frame["recency_days"] - 0.01 * frame["spend_90d"]
    logit += np.where(frame["plan"] == "basic", 1.0, 0.0) - 1.0
    label = pd.Series(rng.random(rows) < 1 / (1 + np.exp(-logit)), dtype=int)
    return frame, label


def test_permutation_importance_equals_scikit_learns() -> None:
    """The single-call version draws the same permutations as scikit-learn and
    gets the same drops in ROC AUC, for a calibrated gradient-boosting pipeline
    with a categorical column."""
    rng = np.random.default_rng(0)
    config = load_model_config()
    x_train, y_train = _frame(rng, 3000)
    x_valid, y_valid = _frame(rng, 1000)
    x_test, y_test = _frame(rng, 800)
    numeric, categorical = ["recency_days", "spend_90d", "noise"], ["plan"]
    model = fit_calibrated(
        GRADIENT_BOOSTING,
        numeric,
        categorical,
        config,
        x_train,
        y_train,
        x_valid,
        y_valid,
    )
    ours = metrics.permutation_importance(
        model, x_test, y_test, repeats=3, random_state=42
    )
    theirs = inspection.permutation_importance(
        model, x_test, y_test, scoring="roc_auc", n_repeats=3, random_state=42
    )
    assert ours.shape == (4, 3)
    np.testing.assert_allclose(ours, theirs.importances, rtol=0, atol=1e-12)
    # and it measures something: the signal features matter, the noise does not
    mean = dict(zip(x_test.columns, ours.mean(axis=1), strict=True))
    assert mean["recency_days"] > 0.05
    assert mean["plan"] > 0.01
    assert abs(mean["noise"]) < 0.02
    assert mean["recency_days"] > mean["noise"] + 0.05


def test_permutation_importance_leaves_the_frame_alone() -> None:
    rng = np.random.default_rng(1)
    x, y = _frame(rng, 500)
    before = x.copy()
    config = load_model_config()
    model = fit_calibrated(
        GRADIENT_BOOSTING,
        ["recency_days", "spend_90d", "noise"],
        ["plan"],
        config,
        x,
        y,
        x,
        y,
    )
    metrics.permutation_importance(model, x, y, repeats=2, random_state=0)
    pd.testing.assert_frame_equal(x, before)
    with pytest.raises(ValueError):
        metrics.permutation_importance(model, x, y.iloc[:10], repeats=1, random_state=0)
