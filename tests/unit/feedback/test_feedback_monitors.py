"""Monitors: realized metrics against scikit-learn, deciles, PSI drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from ml.feedback.realized import (
    calibration_by_decile,
    drift_report,
    realized_model_metrics,
)
from ml.prediction.metrics import expected_calibration_error
from ml.prediction.reference import build_reference


def _scored(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 5, n)
    y = (rng.random(n) < p).astype(int)
    return y, p


def test_realized_metrics_match_sklearn() -> None:
    y, p = _scored(3000)
    metrics = realized_model_metrics(y, p)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert metrics["brier"] == pytest.approx(brier_score_loss(y, p))
    assert metrics["ece"] == pytest.approx(expected_calibration_error(y, p, 10))
    assert metrics["n"] == 3000
    assert metrics["positive_rate"] == pytest.approx(y.mean())
    # the labels were drawn from p: calibrated and better than chance
    assert metrics["ece"] < 0.05 and metrics["roc_auc"] > 0.6


def test_realized_metrics_single_class_and_empty_do_not_raise() -> None:
    one_class = realized_model_metrics(np.zeros(50), np.linspace(0, 0.5, 50))
    assert np.isnan(one_class["roc_auc"]) and np.isnan(one_class["pr_auc"])
    assert one_class["brier"] == pytest.approx(np.mean(np.linspace(0, 0.5, 50) ** 2))
    assert one_class["positive_rate"] == 0.0 and one_class["n"] == 50
    empty = realized_model_metrics(np.array([]), np.array([]))
    assert empty["n"] == 0 and np.isnan(empty["roc_auc"]) and np.isnan(empty["ece"])
    # missing scores are left out
    partial = realized_model_metrics([0, 1, 1, 0], [0.1, np.nan, 0.8, 0.3])
    assert partial["n"] == 3 and partial["roc_auc"] == 1.0
    with pytest.raises(ValueError, match="0/1"):
        realized_model_metrics([0, 2], [0.1, 0.2])


def test_calibration_by_decile() -> None:
    y, p = _scored(1000, seed=1)
    table = calibration_by_decile(y, p)
    assert list(table.columns) == ["decile", "n", "mean_p", "observed_rate"]
    assert list(table["decile"]) == list(range(1, 11))
    assert (table["n"] == 100).all()
    assert table["mean_p"].is_monotonic_increasing
    assert table["observed_rate"].iloc[-1] > table["observed_rate"].iloc[0]
    weighted = (table["observed_rate"] * table["n"]).sum() / table["n"].sum()
    assert weighted == pytest.approx(y.mean())
    # equal scores still split into equal deciles
    ties = calibration_by_decile(np.tile([0, 1], 50), np.full(100, 0.5))
    assert (ties["n"] == 10).all()
    assert calibration_by_decile([], []).empty


@pytest.fixture
def reference() -> dict[str, object]:
    rng = np.random.default_rng(2)
    train = pd.DataFrame(
        {
            "spend_90d": rng.gamma(2.0, 50.0, 5000),
            "recency_days": rng.exponential(20.0, 5000),
            "plan": rng.choice(["basic", "pro"], 5000, p=[0.7, 0.3]),
        }
    )
    return build_reference(
        train, ["spend_90d", "recency_days"], ["plan"], rng.beta(2, 5, 5000)
    )


def _today(seed: int, n: int = 3000, shift: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "spend_90d": rng.gamma(2.0, 50.0, n) * shift,
            "recency_days": rng.exponential(20.0, n),
            "plan": rng.choice(["basic", "pro"], n, p=[0.7, 0.3]),
        }
    )


def test_psi_is_small_for_the_same_distribution(reference: dict) -> None:
    scores = np.random.default_rng(5).beta(2, 5, 3000)
    report = drift_report(reference, _today(3), scores)
    assert list(report.columns) == ["name", "kind", "psi"]
    assert list(report["name"]) == ["spend_90d", "recency_days", "plan", "p_churn"]
    assert list(report["kind"]) == ["feature"] * 3 + ["score"]
    assert (report["psi"] < 0.05).all()


def test_psi_flags_a_shifted_distribution(reference: dict) -> None:
    shifted = _today(4, shift=2.0)
    shifted["plan"] = "pro"
    scores = np.random.default_rng(6).beta(5, 2, 3000)  # churn risk jumped
    psi = drift_report(reference, shifted, scores).set_index("name")["psi"]
    assert psi["spend_90d"] > 0.2
    assert psi["plan"] > 0.2
    assert psi["p_churn"] > 0.2
    assert psi["recency_days"] < 0.05


def test_drift_report_edge_cases(reference: dict) -> None:
    frame = _today(3).drop(columns=["plan"])
    frame["recency_days"] = np.nan
    report = drift_report(reference, frame, None)
    assert list(report["name"]) == ["spend_90d", "recency_days"]
    assert np.isnan(report.set_index("name").loc["recency_days", "psi"])
    assert drift_report({}, frame, None).empty
