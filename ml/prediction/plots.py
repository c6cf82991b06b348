"""Evaluation plots, drawn on matplotlib ``Figure`` objects (Agg canvas, no pyplot
state, so it works in workers without a display)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=(5, 4), dpi=100)
    return figure, figure.add_subplot()


def roc_figure(y: npt.ArrayLike, curves: Mapping[str, npt.ArrayLike]) -> Figure:
    """ROC curves of several models on the same rows."""
    figure, ax = _figure()
    for name, p in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend()
    return figure


def pr_figure(y: npt.ArrayLike, curves: Mapping[str, npt.ArrayLike]) -> Figure:
    """Precision-recall curves."""
    figure, ax = _figure()
    for name, p in curves.items():
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=name)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend()
    return figure


def calibration_figure(
    y: npt.ArrayLike, curves: Mapping[str, npt.ArrayLike], bins: int = 10
) -> Figure:
    """Observed churn rate against mean prediction per bin."""
    figure, ax = _figure()
    for name, p in curves.items():
        observed, predicted = calibration_curve(y, p, n_bins=bins)
        ax.plot(predicted, observed, marker="o", label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="mean p_churn", ylabel="observed churn rate", title="Calibration")
    ax.legend()
    return figure


def gain_figure(y: npt.ArrayLike, curves: Mapping[str, npt.ArrayLike]) -> Figure:
    """Cumulative gain: share of churners found when targeting the top x%."""
    figure, ax = _figure()
    truth = np.asarray(y, dtype=float)
    share = np.arange(1, truth.size + 1) / truth.size
    for name, p in curves.items():
        order = np.argsort(-np.asarray(p, dtype=float), kind="stable")
        gain = np.cumsum(truth[order]) / max(truth.sum(), 1.0)
        ax.plot(share, gain, label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="share targeted", ylabel="share of churners", title="Cumulative gain")
    ax.legend()
    return figure


def importance_figure(importance: pd.Series) -> Figure:
    """Permutation importance (mean drop in ROC AUC), largest on top."""
    figure = Figure(figsize=(6, max(3, 0.25 * len(importance))), dpi=100)
    ax = figure.add_subplot()
    ordered = importance.sort_values()
    ax.barh(list(ordered.index), list(ordered.values))
    ax.set(xlabel="drop in ROC AUC", title="Permutation importance (test)")
    figure.tight_layout()
    return figure
