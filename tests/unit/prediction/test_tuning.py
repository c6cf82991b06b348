"""Tuning a candidate: the grid's entries are ranked on a seeded sample of the
train rows when ``tuning.sample_rows`` is smaller than the train window, and the
winner is then fitted on every train row; without a sample every entry is fitted
on every row, as before."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from ml.config.model import ModelConfig, load_model_config
from ml.prediction.metrics import score_metric
from ml.prediction.models import (
    BASELINE,
    GRADIENT_BOOSTING,
    TunedCandidate,
    build_candidate,
    fit_tuned,
)

NUMERIC = ["recency_days", "spend_90d", "noise"]
CATEGORICAL = ["plan"]
Data = tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]
GRID: list[dict[str, Any]] = [
    {"max_iter": 20, "max_leaf_nodes": 7, "min_samples_leaf": 20},
    {"max_iter": 40, "max_leaf_nodes": 15, "min_samples_leaf": 20},
    {"max_iter": 10, "max_leaf_nodes": 3, "min_samples_leaf": 20},
]


def frame(rows: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Churn that rises with recency and falls with spend, on the basic plan more."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "recency_days": rng.integers(0, 180, rows).astype(float),
            "spend_90d": rng.gamma(2.0, 40.0, rows),
            "noise": rng.normal(size=rows),
            "plan": rng.choice(["basic", "plus"], rows),
        }
    )
    logit = 0.03 * x["recency_days"] - 0.01 * x["spend_90d"] - 1.5
    logit += np.where(x["plan"] == "basic", 0.8, 0.0)
    y = pd.Series((rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int))
    return x, y


@pytest.fixture(scope="module")
def data() -> Data:
    x_train, y_train = frame(3000, 1)
    x_validation, y_validation = frame(1500, 2)
    return x_train, y_train, x_validation, y_validation


def config(sample_rows: int, grid: list[dict[str, Any]] = GRID) -> ModelConfig:
    base = load_model_config()
    tuning = base.tuning.model_copy(
        update={"gradient_boosting": grid, "sample_rows": sample_rows}
    )
    return base.model_copy(update={"tuning": tuning, "n_threads": 1})


def validation_auc(model: Any, x: pd.DataFrame, y: pd.Series) -> float:
    return score_metric("roc_auc", y, model.predict_proba(x)[:, 1])


def tune(name: str, chosen: ModelConfig, data: Data) -> TunedCandidate:
    """``fit_tuned`` of candidate ``name`` on the module's frames."""
    x_train, y_train, x_validation, y_validation = data
    return fit_tuned(
        name,
        NUMERIC,
        CATEGORICAL,
        chosen,
        x_train,
        y_train,
        x_validation,
        y_validation,
    )


def test_ranked_on_a_sample_then_the_winner_fitted_on_every_row(data: Data) -> None:
    x_train, y_train, x_validation, y_validation = data
    chosen = config(sample_rows=500)
    result = tune(GRADIENT_BOOSTING, chosen, data)
    assert result.ranking_rows == 500
    assert [overrides for overrides, _ in result.tried] == GRID
    # the winner is the best entry of the ranking on the sample
    best = max(result.tried, key=lambda entry: entry[1])
    assert result.overrides == best[0]
    # and the kept model is that entry fitted on all 3,000 rows (deterministic)
    full = build_candidate(
        GRADIENT_BOOSTING, NUMERIC, CATEGORICAL, chosen, overrides=result.overrides
    )
    full.fit(x_train, y_train)
    kept = result.model.estimator.estimator  # CalibratedClassifierCV → FrozenEstimator
    np.testing.assert_allclose(
        kept.predict_proba(x_validation), full.predict_proba(x_validation)
    )
    assert result.validation_score == pytest.approx(
        validation_auc(full, x_validation, y_validation)
    )
    # a model fitted on the sample only would differ from it
    assert result.validation_score != pytest.approx(best[1], abs=1e-12)


def test_without_a_sample_every_entry_is_fitted_on_every_row(data: Data) -> None:
    y_train = data[1]
    for sample_rows in (0, 10_000):  # off, or larger than the train window
        result = tune(GRADIENT_BOOSTING, config(sample_rows), data)
        assert result.ranking_rows == len(y_train)
        assert result.validation_score == max(score for _, score in result.tried)


def test_a_single_entry_is_never_sampled(data: Data) -> None:
    y_train = data[1]
    result = tune(GRADIENT_BOOSTING, config(sample_rows=500, grid=[GRID[0]]), data)
    assert result.ranking_rows == len(y_train)
    assert result.tried == [(GRID[0], result.validation_score)]


def test_the_baseline_ranks_on_a_sample_of_its_capped_rows(data: Data) -> None:
    chosen = config(sample_rows=400)
    chosen = chosen.model_copy(
        update={
            "baseline": chosen.baseline.model_copy(update={"max_train_rows": 2000}),
            "tuning": chosen.tuning.model_copy(
                update={"baseline": [{"C": 1.0}, {"C": 0.01}]}
            ),
        }
    )
    result = tune(BASELINE, chosen, data)
    assert result.ranking_rows == 400
    assert len(result.tried) == 2
