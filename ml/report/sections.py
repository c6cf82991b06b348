"""The report's sections: for each, the numbers it shows and the context it renders.

Each section function takes the loaded :class:`~ml.report.report_data.ReportData`
and returns the context its macro in ``templates/report.html.j2`` renders, or
``None`` where the section has no data at all (the template then says "No data
yet"). Contexts hold only values: tables as :class:`Table` (cells already
formatted as text), figures as :class:`Image` (base64 PNG, drawn by
:mod:`ml.report.figures`), numbers as formatted strings. No HTML is built here; the
template escapes every value.

Sections (each an ``<h2>`` with a stable ``id``, in :data:`SECTIONS` order):

* ``summary``: period covered, nights, champion versions seen, targets;
* ``value``: the true incremental value per day of the policy and the baselines
  (from :func:`ml.sim.evaluate.evaluate_range`; simulation only), cumulative value,
  totals and ratios;
* ``model``: realized ROC AUC and ECE per score date (``marts.model_performance``),
  with drift, retrain and promotion markers and the champion's test AUC;
* ``uplift``: the policy's current uplift posteriors (``marts.policy_parameters``),
  the pooled treated-vs-holdout comparison over every matured decision date
  (``marts.decision_outcomes``), and the true uplift when the simulator's truth
  exists (:func:`ml.sim.evaluate.true_uplift_by_action`);
* ``drift``: PSI of the score and the most drifted features (``marts.drift``);
* ``operations``: budget and capacity use, counts per arm, review volume
  (``marts.policy_daily``) and override outcomes (``marts.override_performance``);
* ``retrains``: the retrain checks (``ops.retrain_events``).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from ml.contract.schema import ACTIONS, CHANNELS
from ml.report import figures
from ml.report.report_data import ReportData

PSI_THRESHOLD = 0.2
TOP_DRIFT_FEATURES = 5
SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Summary"),
    ("value", "Incremental value (against the simulator's truth)"),
    ("model", "Model performance"),
    ("uplift", "Uplift per action"),
    ("drift", "Drift"),
    ("operations", "Operations"),
    ("retrains", "Retrain checks"),
)
Context = dict[str, Any]
"""What one section's macro renders (its keys are that section's)."""


@dataclass(frozen=True)
class Table:
    """A table ready to render: header labels and rows of formatted cells.
    ``classes`` gives a CSS class to every cell whose text is the key."""

    columns: list[str]
    rows: list[list[str]]
    classes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Image:
    """A figure as an embedded PNG (``base64``, ASCII) with its alt text."""

    alt: str
    base64: str


# ---------------------------------------------------------------- formatting


def number(value: Any) -> str:
    """Compact numbers for tables: thousands separators for money, 3 decimals for
    rates."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        x = float(value)
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        if abs(x) >= 10:
            return f"{x:,.1f}"
        return f"{x:.3f}"
    if isinstance(value, pd.Timestamp | datetime):
        return value.date().isoformat() if isinstance(value, datetime) else str(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or pd.isna(value):
        return "–"
    return number(value)


def table(
    frame: pd.DataFrame,
    columns: Sequence[str] | None = None,
    classes: Mapping[str, str] | None = None,
) -> Table:
    """``frame`` as a :class:`Table` (numbers formatted, no index), restricted to
    those of ``columns`` it has, in that order."""
    if columns is not None:
        frame = frame.loc[:, [c for c in columns if c in frame.columns]]
    return Table(
        columns=[str(c) for c in frame.columns],
        rows=[[_cell(v) for v in row] for row in frame.itertuples(index=False)],
        classes=dict(classes or {}),
    )


def image(png: bytes, alt: str) -> Image:
    return Image(alt=alt, base64=base64.b64encode(png).decode("ascii"))


def _dates(values: Iterable[Any]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(list(values)))


def _events_in(
    events: Sequence[Mapping[str, Any]], days: pd.DatetimeIndex
) -> list[Mapping[str, Any]]:
    """Events within the plotted period (so markers do not stretch the axis)."""
    if len(days) == 0:
        return []
    low, high = days.min(), days.max()
    return [e for e in events if low <= pd.Timestamp(e["date"]) <= high]


def _events_table(events: Sequence[Mapping[str, Any]]) -> Table | None:
    if not events:
        return None
    frame = pd.DataFrame(
        [
            {
                "date": pd.Timestamp(e["date"]).date(),
                "kind": str(e.get("kind", "")),
                "label": str(e.get("label", "")),
            }
            for e in events
        ]
    ).sort_values("date", kind="stable")
    return table(frame)


def _floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype=np.float64)


# ---------------------------------------------------------------- sections


def summary(data: ReportData, targets: Sequence[Mapping[str, Any]] | None) -> Context:
    """The period covered and the nights decided (``facts``, None without
    decisions), the champion versions seen (``champions``, None if only the
    fallback decided), the policy's true value (``policy_value``), the
    ``targets`` and the loading ``notes``."""
    context: Context = {
        "facts": None,
        "champions": None,
        "policy_value": None,
        "targets": None,
        "notes": list(data.notes),
    }
    daily = data.policy_daily
    nights = daily if daily is not None and not daily.empty else data.decision_dates
    if nights is not None and not nights.empty:
        days = _dates(nights["run_date"])
        modes = (
            nights["policy_mode"].fillna("?")
            if "policy_mode" in nights
            else pd.Series(["?"] * len(nights))
        )
        facts = [
            ("period covered", f"{days.min().date()} to {days.max().date()}"),
            ("nights decided", f"{days.nunique():,}"),
            ("model nights", f"{int((modes == 'model').sum()):,}"),
            ("fallback nights", f"{int((modes == 'fallback').sum()):,}"),
        ]
        dates = data.outcome_dates
        if dates is not None and not dates.empty:
            matured = _dates(dates["run_date"])
            facts.append(
                (
                    "matured decision dates",
                    f"{matured.nunique():,} ({matured.min().date()} to "
                    f"{matured.max().date()})",
                )
            )
        context["facts"] = table(pd.DataFrame(facts, columns=["", "value"]))
        versions = (
            nights.dropna(subset=["model_version"])
            if "model_version" in nights.columns
            else nights.iloc[0:0]
        )
        if not versions.empty:
            seen = (
                versions.assign(run_date=_dates(versions["run_date"]))
                .groupby("model_version", sort=False)["run_date"]
                .agg(["min", "max", "nunique"])
                .reset_index()
                .sort_values("min")
            )
            seen.columns = pd.Index(["champion version", "first", "last", "nights"])
            seen["first"] = [d.date() for d in seen["first"]]
            seen["last"] = [d.date() for d in seen["last"]]
            context["champions"] = table(seen)
    evaluation = data.evaluation
    if (
        evaluation is not None
        and not evaluation.empty
        and {"value_loopline", "value_probability_ranked"} <= set(evaluation.columns)
    ):
        context["policy_value"] = {
            "loopline": f"{float(evaluation['value_loopline'].sum()):,.0f}",
            "baseline": f"{float(evaluation['value_probability_ranked'].sum()):,.0f}",
            "nights": str(len(evaluation)),
        }
    if targets:
        rows = []
        for target in targets:
            met = target.get("met")
            rows.append(
                {
                    "target": target.get("name", ""),
                    "measured": target.get("measured"),
                    "target value": target.get("target"),
                    "met": "—" if met is None else ("yes" if met else "no"),
                }
            )
        context["targets"] = table(
            pd.DataFrame(rows), classes={"yes": "met", "no": "missed"}
        )
    return context


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 and np.isfinite(a) else "n/a"


def value(data: ReportData) -> Context | None:
    """The true value per night and cumulative of every plan (``image``), the
    totals per plan (``totals``), the ratios of loopline's total to the baselines'
    (``ratios``, None if none applies) and the ``nights`` evaluated; None without
    an evaluation."""
    evaluation = data.evaluation
    if evaluation is None or evaluation.empty:
        return None
    # every plan valued, in the evaluation's column order
    policies = [
        c.removeprefix("value_")
        for c in evaluation.columns
        if c.startswith("value_") and not c.endswith("_cumulative")
    ]
    frame = evaluation.assign(run_date=_dates(evaluation["run_date"])).sort_values(
        "run_date"
    )
    days = pd.DatetimeIndex(frame["run_date"])
    png = figures.value_figure(
        days,
        {name: _floats(frame, f"value_{name}") for name in policies},
        _events_in(data.events, days),
    )
    totals: list[dict[str, Any]] = []
    reference = "oracle_average" if "oracle_average" in policies else "oracle"
    oracle = (
        float(frame[f"value_{reference}"].sum()) if reference in policies else np.nan
    )
    for name in policies:
        total_value = float(frame[f"value_{name}"].sum())
        cost = float(frame[f"cost_{name}"].sum()) if f"cost_{name}" in frame else np.nan
        treated = (
            int(frame[f"treated_{name}"].sum()) if f"treated_{name}" in frame else 0
        )
        totals.append(
            {
                "policy": name,
                "true value": total_value,
                "cost": cost,
                "treated": treated,
                "value per cost": total_value / cost if cost > 0 else np.nan,
                f"share of {reference}": (
                    total_value / oracle if oracle > 0 else np.nan
                ),
            }
        )
    total = {str(t["policy"]): float(t["true value"]) for t in totals}
    ratios = []
    for mine in ("loopline", "loopline_executed"):
        for other in ("probability_ranked", "oracle_average", "oracle"):
            if mine in total and other in total:
                ratios.append(
                    {
                        "ratio": f"{mine} / {other}",
                        "value": _ratio(total[mine], total[other]),
                    }
                )
    return {
        "image": image(png, "incremental true value per night and cumulative"),
        "totals": table(pd.DataFrame(totals)),
        "ratios": table(pd.DataFrame(ratios)) if ratios else None,
        "nights": str(len(frame)),
    }


def model(data: ReportData, champion_test_auc: float | None) -> Context | None:
    """Realized AUC and ECE per score date (``image``), the means per model
    version (``by_version``), the ``champion_test_auc`` (formatted, or None) and
    the ``events`` table (None without events); None without matured score
    dates."""
    perf = data.model_performance
    if perf is None or perf.empty:
        return None
    frame = perf.assign(run_date=_dates(perf["run_date"])).sort_values("run_date")
    days = pd.DatetimeIndex(frame["run_date"])
    retrains = data.retrain_events
    steps: figures.Series | None = None
    if (
        champion_test_auc is None
        and retrains is not None
        and retrains["champion_test_auc"].notna().any()
    ):
        known = retrains.dropna(subset=["champion_test_auc"])
        steps = (_dates(known["day"]), _floats(known, "champion_test_auc"))
    png = figures.model_figure(
        days,
        _floats(frame, "roc_auc"),
        _floats(frame, "ece"),
        _events_in(data.events, days),
        champion_test_auc=champion_test_auc,
        champion_steps=steps,
    )
    by_version = (
        frame.groupby("model_version", dropna=False, sort=False)
        .agg(
            first=("run_date", "min"),
            last=("run_date", "max"),
            score_dates=("run_date", "nunique"),
            labels=("n", "sum"),
            mean_roc_auc=("roc_auc", "mean"),
            mean_ece=("ece", "mean"),
        )
        .reset_index()
    )
    by_version["first"] = [d.date() for d in by_version["first"]]
    by_version["last"] = [d.date() for d in by_version["last"]]
    return {
        "image": image(png, "realized ROC AUC and ECE per score date"),
        "by_version": table(by_version),
        "champion_test_auc": (
            None if champion_test_auc is None else f"{champion_test_auc:.3f}"
        ),
        "events": _events_table(data.events),
    }


POSTERIOR_HIDDEN = ("segment", "alpha", "beta")
POOLED_COLUMNS = (
    "action",
    "n_treated",
    "n_holdout",
    "churn_rate_treated",
    "churn_rate_holdout",
    "uplift",
    "uplift_low",
    "uplift_high",
    "incremental_value",
    "cost",
    "roi",
)


def uplift(data: ReportData) -> Context:
    """The latest action-level posteriors (``posterior``, computed on
    ``computed``), the pooled treated-vs-holdout comparison (``pooled``), the
    simulator's true uplift (``truth``) and the figure of all three (``image``,
    None when there are neither posteriors nor outcomes); each table None
    without its data."""
    from ml.feedback.uplift import PARAMETER_COLUMNS, arm_comparison

    context: Context = {
        "computed": None,
        "posterior": None,
        "pooled": None,
        "truth": None,
        "image": None,
    }
    params = data.policy_parameters
    if params is not None and params.empty:
        params = None
    if params is not None:
        context["computed"] = str(pd.Timestamp(params["computed_on"].iloc[0]).date())
        context["posterior"] = table(
            params,
            [
                *(c for c in PARAMETER_COLUMNS if c not in POSTERIOR_HIDDEN),
                "previous_mean",
                "changed",
                "effective_from",
            ],
        )
    outcomes = data.arm_outcomes
    pooled: pd.DataFrame | None = None
    if outcomes is not None and not outcomes.empty:
        pooled = arm_comparison(outcomes, by=["action"])
        context["pooled"] = table(pooled, POOLED_COLUMNS)
    truth = data.true_uplift
    if truth is not None and not truth.empty:
        context["truth"] = table(truth)
    if params is not None or pooled is not None:
        png = figures.uplift_figure(pooled, params, truth)
        context["image"] = image(png, "uplift per action: measured, posterior, true")
    return context


def drift(data: ReportData) -> Context | None:
    """PSI over time of the score and the most drifted features (``image``) and
    the PSI per measure (``measures``, as of ``latest_day``); None without drift
    measurements."""
    frame_in = data.drift
    if frame_in is None or frame_in.empty:
        return None
    frame = frame_in.assign(run_date=_dates(frame_in["run_date"]))
    features = frame[frame["kind"] == "feature"]
    top = (
        features.groupby("name")["psi"]
        .max()
        .sort_values(ascending=False)
        .head(TOP_DRIFT_FEATURES)
        .index.tolist()
    )
    score = frame[frame["kind"] == "score"].sort_values("run_date")
    days = pd.DatetimeIndex(frame["run_date"].sort_values().unique())
    lines: dict[str, figures.Series] = {}
    for name in top:
        rows = features[features["name"] == name].sort_values("run_date")
        lines[str(name)] = (_dates(rows["run_date"]), _floats(rows, "psi"))
    png = figures.drift_figure(
        None if score.empty else (_dates(score["run_date"]), _floats(score, "psi")),
        lines,
        PSI_THRESHOLD,
        _events_in(data.events, days),
    )
    measures = (
        frame.groupby(["kind", "name"])
        .agg(
            max_psi=("psi", "max"),
            days_above_threshold=("psi", lambda s: int((s > PSI_THRESHOLD).sum())),
        )
        .reset_index()
    )
    latest_day = frame["run_date"].max()
    latest = frame[frame["run_date"] == latest_day].set_index(["kind", "name"])["psi"]
    measures["latest_psi"] = [
        latest.get((k, n), np.nan)
        for k, n in zip(measures["kind"], measures["name"], strict=True)
    ]
    measures = measures.sort_values(["kind", "max_psi"], ascending=[False, False])
    return {
        "image": image(png, "PSI of the score and top features over time"),
        "latest_day": str(latest_day.date()),
        "measures": table(
            measures.head(15),
            ["kind", "name", "latest_psi", "max_psi", "days_above_threshold"],
        ),
    }


def _capacity_shares(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The share of its capacity each channel used per night (NaN where the
    capacity is 0), for the channels the frame has."""
    shares: dict[str, np.ndarray] = {}
    for channel in CHANNELS:
        used, cap = f"used_{channel}", f"capacity_{channel}"
        if used in frame.columns and cap in frame.columns:
            capacity = _floats(frame, cap)
            with np.errstate(divide="ignore", invalid="ignore"):
                shares[channel] = np.where(
                    capacity > 0, _floats(frame, used) / capacity, np.nan
                )
    return shares


def _operation_measures(
    frame: pd.DataFrame, shares: Mapping[str, np.ndarray]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"measure": "nights", "value": len(frame)}]
    if "policy_mode" in frame.columns:
        for mode, n in frame["policy_mode"].value_counts().items():
            rows.append({"measure": f"{mode} nights", "value": int(n)})
    if {"budget", "budget_used"} <= set(frame.columns):
        budget = _floats(frame, "budget")
        used_budget = _floats(frame, "budget_used")
        rows.append(
            {"measure": "budget used (total)", "value": float(np.nansum(used_budget))}
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            rows.append(
                {
                    "measure": "budget used (mean share)",
                    "value": float(
                        np.nanmean(np.where(budget > 0, used_budget / budget, np.nan))
                    ),
                }
            )
    for channel, share in shares.items():
        rows.append(
            {
                "measure": f"{channel} capacity used (mean share)",
                "value": float(np.nanmean(share))
                if np.isfinite(share).any()
                else np.nan,
            }
        )
    for arm in ("treated", "holdout", "review"):
        for action in ACTIONS:
            column = f"{arm}_{action}"
            if column in frame.columns:
                rows.append(
                    {
                        "measure": f"{arm}: {action} (total)",
                        "value": int(frame[column].sum()),
                    }
                )
    if "reviews_applied" in frame.columns:
        rows.append(
            {
                "measure": "review decisions applied (total)",
                "value": int(frame["reviews_applied"].fillna(0).sum()),
            }
        )
    for key in ("expected_value", "holdout_expected_value"):
        if key in frame.columns:
            total = float(frame[key].fillna(0).sum())
            rows.append({"measure": f"{key} (total)", "value": total})
    return rows


def override_summary(overrides: pd.DataFrame) -> pd.DataFrame:
    """One row per review outcome, the rates weighted by n (missing rates skipped)."""
    rows = []
    for outcome, group in overrides.groupby("review_outcome", sort=True):
        n = group["n"].to_numpy(dtype=np.float64)
        row: dict[str, Any] = {
            "review_outcome": outcome,
            "decision_dates": group["run_date"].nunique(),
            "n": int(n.sum()),
        }
        for column in ("retention", "mean_spend", "delivered_rate"):
            values = group[column].to_numpy(dtype=np.float64)
            ok = np.isfinite(values) & (n > 0)
            row[column] = (
                float((values[ok] * n[ok]).sum() / n[ok].sum()) if ok.any() else np.nan
            )
        rows.append(row)
    return pd.DataFrame(rows)


COUNT_COLUMNS = ("arm_treated", "arm_holdout", "arm_review", "reviews_applied")


def operations(data: ReportData) -> Context:
    """Budget, capacity and arm counts per night (``image``) with their totals
    (``measures``; both None without decision nights), and the pooled review
    outcomes (``overrides``, None without matured ones)."""
    context: Context = {"image": None, "measures": None, "overrides": None}
    daily = data.policy_daily
    if daily is not None and not daily.empty:
        frame = daily.assign(run_date=_dates(daily["run_date"])).sort_values("run_date")
        shares = _capacity_shares(frame)
        budget = (
            (_floats(frame, "budget_used"), _floats(frame, "budget"))
            if {"budget", "budget_used"} <= set(frame.columns)
            else None
        )
        counts = {
            column.removeprefix("arm_"): _floats(frame, column)
            for column in COUNT_COLUMNS
            if column in frame.columns
        }
        png = figures.operations_figure(
            pd.DatetimeIndex(frame["run_date"]), budget, shares, counts
        )
        context["image"] = image(png, "budget, capacity and arm counts per night")
        # formatted per row: a column of mixed counts and money stays readable
        context["measures"] = table(
            pd.DataFrame(
                [
                    {"measure": r["measure"], "value": number(r["value"])}
                    for r in _operation_measures(frame, shares)
                ]
            )
        )
    overrides = data.override_performance
    if overrides is not None and not overrides.empty:
        context["overrides"] = table(override_summary(overrides))
    return context


RETRAIN_COLUMNS = (
    "day",
    "fired",
    "reasons",
    "blocked",
    "champion_version",
    "champion_test_auc",
)


def retrains(data: ReportData) -> Context | None:
    """The number of ``checks`` and of ``fired`` ones, the checks that fired or
    found a reason (``interesting``, None if none), the ``evidence`` of the fired
    ones (``{day, text}``, JSON pretty-printed) and ``all`` checks; None without
    retrain checks."""
    events = data.retrain_events
    if events is None or events.empty:
        return None
    frame = events.assign(day=[pd.Timestamp(d).date() for d in events["day"]])
    fired = frame["fired"].fillna(False).astype(bool)
    reasons = frame["reasons"].fillna("").astype(str)
    interesting = frame[fired | (reasons != "")]
    evidence = []
    for row in frame[fired].itertuples(index=False):
        text = row.evidence if isinstance(row.evidence, str) else ""
        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text), indent=1, default=str)
        evidence.append({"day": str(row.day), "text": text})
    return {
        "checks": str(len(frame)),
        "fired": str(int(fired.sum())),
        "interesting": (
            None if interesting.empty else table(interesting, RETRAIN_COLUMNS)
        ),
        "evidence": evidence,
        "all": table(frame, RETRAIN_COLUMNS),
    }
