"""Monitors of the champion once labels mature: realized metrics, calibration, drift.

* :func:`realized_model_metrics`: ROC AUC, PR AUC, Brier and expected calibration
  error of one score date's matured labels, set beside the champion's offline test
  metrics (same definitions as :mod:`ml.prediction.metrics`).
* :func:`calibration_by_decile`: observed churn against mean prediction per score
  decile.
* :func:`drift_report`: PSI of each feature and of the score against the training
  reference stored with the model (:mod:`ml.prediction.reference`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from ml.prediction.metrics import expected_calibration_error
from ml.prediction.reference import psi, shares_in_bins

METRIC_KEYS = ("roc_auc", "pr_auc", "brier", "ece", "n", "positive_rate")
DECILE_COLUMNS = ("decile", "n", "mean_p", "observed_rate")
DRIFT_COLUMNS = ("name", "kind", "psi")
SCORE_NAME = "p_churn"


def _labelled(y: npt.ArrayLike, p: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels and scores as arrays, without rows whose label or score is
    missing."""
    labels = np.asarray(y, dtype=np.float64).reshape(-1)
    scores = np.asarray(p, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"y and p differ in length: {labels.size} != {scores.size}")
    keep = np.isfinite(labels) & np.isfinite(scores)
    labels, scores = labels[keep], scores[keep]
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("y must hold 0/1 labels")
    return labels.astype(np.int64), scores


def realized_model_metrics(
    y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 10
) -> dict[str, float]:
    """Realized metrics of scores ``p`` against matured churn labels ``y``.

    Keys: ``roc_auc``, ``pr_auc``, ``brier``, ``ece`` (``bins`` equal-width bins,
    as in training), ``n`` and ``positive_rate``. Rows with a missing label or score
    are left out. With one class only the AUCs are NaN (they are undefined, and a
    monitor must not crash on a quiet day); with no rows every metric is NaN and
    ``n`` is 0.
    """
    labels, scores = _labelled(y, p)
    n = int(labels.size)
    nan = float("nan")
    if n == 0:
        return {key: 0.0 if key == "n" else nan for key in METRIC_KEYS}
    both = 0 < labels.sum() < n
    return {
        "roc_auc": float(roc_auc_score(labels, scores)) if both else nan,
        "pr_auc": float(average_precision_score(labels, scores)) if both else nan,
        "brier": float(brier_score_loss(labels, scores, labels=[0, 1])),
        "ece": expected_calibration_error(labels, scores, bins),
        "n": float(n),
        "positive_rate": float(labels.mean()),
    }


def calibration_by_decile(
    y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 10
) -> pd.DataFrame:
    """Mean prediction and observed churn rate per score decile.

    Deciles hold equal counts (within one row) by rank of ``p``, ties broken by
    position, so they exist even when many scores are equal; decile 1 has the lowest
    scores, decile ``bins`` the highest. Rows with a missing label or score are left
    out; fewer rows than ``bins`` give fewer deciles.
    """
    labels, scores = _labelled(y, p)
    n = labels.size
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in DECILE_COLUMNS})
    decile = np.empty(n, dtype=np.int64)
    decile[np.argsort(scores, kind="stable")] = np.arange(n) * bins // n + 1
    frame = pd.DataFrame({"decile": decile, "p": scores, "y": labels})
    out = frame.groupby("decile", sort=True).agg(
        n=("y", "size"), mean_p=("p", "mean"), observed_rate=("y", "mean")
    )
    return out.reset_index()[list(DECILE_COLUMNS)]


def _numeric_psi(ref: dict[str, Any], values: np.ndarray) -> float:
    """PSI of ``values`` in a reference histogram; NaN without finite values."""
    finite = values[np.isfinite(values)]
    if not ref.get("edges") or finite.size == 0:
        return float("nan")
    return psi(ref["shares"], shares_in_bins(finite, ref["edges"]))


def _categorical_psi(ref: dict[str, float], values: pd.Series) -> float:
    """PSI over the reference's categories plus any new ones (nulls as
    ``<null>``, as in :func:`ml.prediction.reference.build_reference`)."""
    if values.empty:
        return float("nan")
    shares = values.astype(object).fillna("<null>").astype(str)
    actual = {str(k): float(v) for k, v in shares.value_counts(normalize=True).items()}
    categories = sorted(set(ref) | set(actual))
    expected = [ref.get(c, 0.0) for c in categories]
    return psi(expected, [actual.get(c, 0.0) for c in categories])


def drift_report(
    reference: dict[str, Any],
    features: pd.DataFrame,
    scores: npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """PSI of each reference feature present in ``features`` and of the scores.

    ``reference`` is the champion's training reference (``reference.json``). Numeric
    features use its 10-bin quantile histograms (:func:`ml.prediction.reference.psi`
    with :func:`~ml.prediction.reference.shares_in_bins`), categorical ones its value
    shares (a value unseen in training counts as a new category). Rows: ``name``,
    ``kind`` ('feature' or 'score', the score named ``p_churn``), ``psi``; features in
    reference order, then the score. A column with no finite value gets NaN rather than
    a spurious maximal PSI. PSI above 0.2 is the usual sign of a real shift.
    """
    rows: list[tuple[str, str, float]] = []
    for column, ref in reference.get("numeric", {}).items():
        if column in features.columns:
            values = pd.to_numeric(features[column], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            rows.append((column, "feature", _numeric_psi(ref, values)))
    for column, ref in reference.get("categorical", {}).items():
        if column in features.columns:
            rows.append((column, "feature", _categorical_psi(ref, features[column])))
    if scores is not None and reference.get("score"):
        values = np.asarray(scores, dtype=np.float64).reshape(-1)
        rows.append((SCORE_NAME, "score", _numeric_psi(reference["score"], values)))
    return pd.DataFrame(rows, columns=list(DRIFT_COLUMNS)).astype({"psi": "float64"})
