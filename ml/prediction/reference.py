"""The training reference stored with every model (``reference.json`` in its run).

It describes what the model saw when it was trained, so later layers can tell when
the data have moved away from it:

* per numeric feature: the range of the train window (the 0.1 % and 99.9 %
  quantiles, so one outlier does not widen it) and a 10-bin histogram (quantile
  edges and the train share of each bin);
* per categorical feature: the share of each value;
* the score: the calibrated ``p_churn`` histogram on the validation window.

The decision layer flags a customer whose features fall outside the ranges as out
of distribution (:func:`out_of_range`); the feedback layer computes the population
stability index against the histograms (:func:`psi`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

REFERENCE_FILE = "reference.json"
RANGE_QUANTILES = (0.001, 0.999)
BINS = 10
# Quantiles of 100k rows are within a fraction of a percentile of the full ones.
REFERENCE_ROWS = 100_000
# PSI treats an empty bin as this share, so one empty bin does not give infinity.
PSI_FLOOR = 1e-4


def _histogram(values: np.ndarray, bins: int = BINS) -> dict[str, list[float]]:
    """Quantile bin edges (inner edges only) and the share of values in each bin."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"edges": [], "shares": []}
    inner = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(inner, values, side="right"))
    shares = counts / counts.sum()
    return {"edges": inner.tolist(), "shares": shares.tolist()}


def build_reference(
    train: pd.DataFrame,
    numeric: Iterable[str],
    categorical: Iterable[str],
    validation_scores: np.ndarray,
) -> dict[str, Any]:
    """The reference of a model trained on ``train`` (model input columns),
    computed on a seeded sample of at most ``REFERENCE_ROWS`` rows."""
    if len(train) > REFERENCE_ROWS:
        train = train.sample(n=REFERENCE_ROWS, random_state=0)
    numeric_ref: dict[str, Any] = {}
    for column in numeric:
        values = train[column].to_numpy(dtype=np.float64)
        finite = values[np.isfinite(values)]
        low, high = (
            np.quantile(finite, RANGE_QUANTILES).tolist() if finite.size else [0, 0]
        )
        numeric_ref[column] = {
            "low": float(low),
            "high": float(high),
            "null_share": float(1 - finite.size / max(len(values), 1)),
            **_histogram(values),
        }
    categorical_ref = {
        column: {
            str(k): float(v)
            for k, v in train[column]
            .fillna("<null>")
            .value_counts(normalize=True)
            .items()
        }
        for column in categorical
    }
    return {
        "rows": len(train),
        "numeric": numeric_ref,
        "categorical": categorical_ref,
        "score": _histogram(np.asarray(validation_scores, dtype=np.float64)),
    }


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index between two share vectors of the same bins."""
    e = np.clip(np.asarray(expected, dtype=np.float64), PSI_FLOOR, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), PSI_FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def shares_in_bins(values: np.ndarray, edges: list[float]) -> list[float]:
    """The share of finite ``values`` in the bins of a reference histogram."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    counts = np.bincount(
        np.searchsorted(np.asarray(edges), values, side="right"),
        minlength=len(edges) + 1,
    )
    return (counts / max(counts.sum(), 1)).tolist()


def feature_psi(reference: dict[str, Any], frame: pd.DataFrame) -> dict[str, float]:
    """PSI of every numeric feature of the reference present in ``frame``."""
    out: dict[str, float] = {}
    for column, ref in reference.get("numeric", {}).items():
        if column in frame and ref["edges"]:
            values = frame[column].to_numpy(dtype=np.float64)
            out[column] = psi(ref["shares"], shares_in_bins(values, ref["edges"]))
    return out


def out_of_range(
    reference: dict[str, Any], frame: pd.DataFrame
) -> tuple[np.ndarray, list[list[str]]]:
    """Rows of ``frame`` with a numeric feature outside the training range, and for
    each row the names of those features (missing values are never out of range)."""
    flags = np.zeros(len(frame), dtype=bool)
    names: list[list[str]] = [[] for _ in range(len(frame))]
    for column, ref in reference.get("numeric", {}).items():
        if column not in frame:
            continue
        values = frame[column].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            outside = (values < ref["low"]) | (values > ref["high"])
        for row in np.flatnonzero(outside):
            names[row].append(column)
        flags |= outside
    return flags, names
