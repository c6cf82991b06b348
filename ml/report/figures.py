"""The report's figures: one function per figure, each returning PNG bytes.

Matplotlib is used through its object API only: a :class:`~matplotlib.figure.Figure`
on an Agg canvas per call, no pyplot and so no global figure state (safe in a
worker, nothing to close). The functions draw what they are given; the numbers
and the choice of what to draw are the sections' (:mod:`ml.report.sections`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ml.contract.schema import ACTIONS

EVENT_COLOURS = {"drift": "#d62728", "retrain": "#9467bd", "promotion": "#2ca02c"}
POLICY_STYLE: dict[str, dict[str, Any]] = {
    "loopline": {"color": "#1f77b4", "linewidth": 2.0},
    "loopline_executed": {"color": "#1f77b4", "linestyle": ":", "linewidth": 1.2},
    "probability_ranked": {"color": "#ff7f0e"},
    "no_action": {"color": "#7f7f7f", "linestyle": "--"},
    "oracle": {"color": "#2ca02c", "linestyle": "-."},
    "oracle_average": {"color": "#2ca02c", "linestyle": "--"},
}
Series = tuple[pd.DatetimeIndex, np.ndarray]
"""A line: its dates and its values."""


def _new(rows: int = 1, height: float = 3.0, width: float = 10.0) -> Figure:
    figure = Figure(figsize=(width, height * rows), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _mark_events(ax: Axes, events: Sequence[Mapping[str, Any]]) -> None:
    """Vertical lines for drift, retrain and promotion events, labelled once per
    kind in the legend."""
    seen: set[str] = set()
    for event in events:
        kind = str(event.get("kind", ""))
        when: Any = pd.Timestamp(event["date"])
        label = f"{kind}" if kind not in seen else None
        seen.add(kind)
        ax.axvline(
            when,
            color=EVENT_COLOURS.get(kind, "#444444"),
            linestyle=":",
            linewidth=1.2,
            label=label,
        )


def _finish(figure: Figure, ax: Axes, legend: bool = True) -> None:
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    figure.autofmt_xdate()


def value_figure(
    days: pd.DatetimeIndex,
    values: Mapping[str, np.ndarray],
    events: Sequence[Mapping[str, Any]],
) -> bytes:
    """The true incremental value per night of every plan, and its cumulative sum,
    with the event markers."""
    figure = _new(rows=2)
    daily, cumulative = figure.subplots(2, 1, sharex=True)
    for name, series in values.items():
        style = POLICY_STYLE.get(name, {})
        daily.plot(days, series, label=name, **style)
        cumulative.plot(days, np.nancumsum(series), label=name, **style)
    for ax in (daily, cumulative):
        _mark_events(ax, events)
    daily.set(ylabel="true value per night", title="Incremental true value per night")
    cumulative.set(ylabel="cumulative", title="Cumulative incremental true value")
    _finish(figure, daily)
    _finish(figure, cumulative, legend=False)
    return _png(figure)


def model_figure(
    days: pd.DatetimeIndex,
    roc_auc: np.ndarray,
    ece: np.ndarray,
    events: Sequence[Mapping[str, Any]],
    champion_test_auc: float | None = None,
    champion_steps: Series | None = None,
) -> bytes:
    """Realized ROC AUC and ECE per score date; the champion's test AUC as a line
    (``champion_test_auc``) or as steps over the retrain checks
    (``champion_steps``)."""
    figure = _new(rows=2)
    auc_ax, ece_ax = figure.subplots(2, 1, sharex=True)
    auc_ax.plot(days, roc_auc, marker=".", label="realized ROC AUC")
    if champion_test_auc is not None:
        auc_ax.axhline(
            champion_test_auc,
            color="black",
            linestyle="--",
            label=f"champion test AUC {champion_test_auc:.3f}",
        )
    elif champion_steps is not None:
        auc_ax.step(
            champion_steps[0],
            champion_steps[1],
            where="post",
            color="black",
            linestyle="--",
            label="champion test AUC",
        )
    ece_ax.plot(days, ece, marker=".", color="#ff7f0e", label="realized ECE")
    for ax in (auc_ax, ece_ax):
        _mark_events(ax, events)
    auc_ax.set(ylabel="ROC AUC", title="Realized discrimination per score date")
    ece_ax.set(ylabel="ECE", title="Realized calibration error per score date")
    _finish(figure, auc_ax)
    _finish(figure, ece_ax)
    return _png(figure)


def _intervals(
    ax: Axes,
    frame: pd.DataFrame,
    mean: str,
    low: str,
    high: str,
    shift: float,
    **style: Any,
) -> None:
    """Point estimates with their intervals, one per action (missing ones left
    out)."""
    x = np.arange(len(ACTIONS), dtype=np.float64)
    rows = frame.set_index("action").reindex(list(ACTIONS))
    m = rows[mean].to_numpy(dtype=np.float64)
    lo = np.clip(m - rows[low].to_numpy(dtype=np.float64), 0, None)
    hi = np.clip(rows[high].to_numpy(dtype=np.float64) - m, 0, None)
    ok = np.isfinite(m)
    ax.errorbar(
        x[ok] + shift,
        m[ok],
        yerr=np.vstack([np.nan_to_num(lo[ok]), np.nan_to_num(hi[ok])]),
        fmt="o",
        capsize=4,
        **style,
    )


def uplift_figure(
    pooled: pd.DataFrame | None,
    params: pd.DataFrame | None,
    truth: pd.DataFrame | None,
) -> bytes:
    """Uplift per action: measured (treated against holdout, with the Katz
    interval), the posterior with its prior mean, and the truth where known."""
    figure = _new(height=3.6, width=8.0)
    ax = figure.add_subplot()
    x = np.arange(len(ACTIONS), dtype=np.float64)
    if pooled is not None:
        _intervals(
            ax,
            pooled,
            "uplift",
            "uplift_low",
            "uplift_high",
            -0.15,
            label="measured (95% Katz)",
            color="#1f77b4",
        )
    if params is not None:
        _intervals(
            ax,
            params,
            "posterior_mean",
            "low",
            "high",
            0.0,
            label="posterior (95%)",
            color="#9467bd",
        )
        prior = params.set_index("action").reindex(list(ACTIONS))["prior_mean"]
        ax.scatter(
            x,
            prior.to_numpy(dtype=np.float64),
            marker="_",
            s=200,
            color="#7f7f7f",
            label="prior mean",
        )
    if truth is not None and not truth.empty:
        true = truth.set_index("action").reindex(list(ACTIONS))["true_uplift"]
        ax.scatter(
            x + 0.15,
            true.to_numpy(dtype=np.float64),
            marker="*",
            s=140,
            color="#2ca02c",
            label="true",
            zorder=3,
        )
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, list(ACTIONS))
    ax.set(
        ylabel="uplift (share of would-be churners saved)", title="Uplift per action"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(figure)


def drift_figure(
    score: Series | None,
    features: Mapping[str, Series],
    threshold: float,
    events: Sequence[Mapping[str, Any]],
) -> bytes:
    """PSI over time of the score (bold) and of the given features, with the
    alert threshold and the event markers."""
    figure = _new(height=3.6)
    ax = figure.add_subplot()
    if score is not None:
        ax.plot(
            score[0], score[1], color="black", linewidth=2.0, label="score (p_churn)"
        )
    for name, (days, psi) in features.items():
        ax.plot(days, psi, linewidth=1.0, label=str(name))
    ax.axhline(
        threshold,
        color="#d62728",
        linestyle="--",
        label=f"threshold {threshold}",
    )
    _mark_events(ax, events)
    ax.set(
        ylabel="PSI against the training reference",
        title="Population stability of the score and the most drifted features",
    )
    _finish(figure, ax)
    return _png(figure)


def operations_figure(
    days: pd.DatetimeIndex,
    budget: tuple[np.ndarray, np.ndarray] | None,
    capacity_shares: Mapping[str, np.ndarray],
    counts: Mapping[str, np.ndarray],
) -> bytes:
    """Three panels per night: the budget used against the budget (``budget`` =
    (used, budget)), the share of each channel's capacity used, and the decisions
    per arm with the review volume (``counts``, by label)."""
    figure = _new(rows=3)
    budget_ax, channel_ax, arm_ax = figure.subplots(3, 1, sharex=True)
    if budget is not None:
        used, total = budget
        budget_ax.plot(days, used, label="budget used")
        budget_ax.plot(days, total, color="black", linestyle="--", label="budget")
    budget_ax.set(ylabel="expected cost", title="Daily budget")
    for channel, share in capacity_shares.items():
        channel_ax.plot(days, 100 * share, label=channel)
    channel_ax.set(ylabel="% of capacity", title="Channel capacity used")
    for label, values in counts.items():
        arm_ax.plot(days, values, label=label)
    arm_ax.set(ylabel="customers", title="Decisions per arm and review volume")
    for ax in (budget_ax, channel_ax, arm_ax):
        _finish(figure, ax)
    return _png(figure)
