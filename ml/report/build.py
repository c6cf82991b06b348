"""The Loopline report: one self-contained HTML file about the closed loop.

:func:`build_report` reads the warehouse read-only and writes
``reports/loopline_report.html``: matplotlib figures (Agg canvas, no pyplot state)
embedded as base64 PNGs, tables as plain HTML, the style inline, so the file can
be mailed or archived as is. Every table is optional: a section whose data are
missing says so in a short note instead of failing, and a section that cannot be
drawn shows the error in place, so one problem never costs the whole report.

Sections (each an ``<h2>`` with a stable ``id``):

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
import html
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ml.config.settings import REPORT_FILE, Settings
from ml.contract.schema import ACTIONS, CHANNELS
from ml.storage.warehouse import connect, table_exists

EVALUATION_FILE = "evaluation.parquet"
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
EVENT_COLOURS = {"drift": "#d62728", "retrain": "#9467bd", "promotion": "#2ca02c"}
POLICY_STYLE: dict[str, dict[str, Any]] = {
    "loopline": {"color": "#1f77b4", "linewidth": 2.0},
    "loopline_executed": {"color": "#1f77b4", "linestyle": ":", "linewidth": 1.2},
    "probability_ranked": {"color": "#ff7f0e"},
    "no_action": {"color": "#7f7f7f", "linestyle": "--"},
    "oracle": {"color": "#2ca02c", "linestyle": "-."},
    "oracle_average": {"color": "#2ca02c", "linestyle": "--"},
}
STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif;
       margin: 2rem auto; max-width: 1100px; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.4rem; }
h3 { margin-bottom: 0.3rem; }
nav a { margin-right: 1rem; }
table.t { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.9rem; }
table.t th, table.t td { border: 1px solid #ddd; padding: 0.25rem 0.55rem;
                         text-align: right; }
table.t th { background: #f3f3f3; }
table.t td:first-child, table.t th:first-child { text-align: left; }
p.nodata { color: #777; font-style: italic; }
p.note { color: #555; font-size: 0.9rem; }
p.error { color: #b00020; }
img { max-width: 100%; display: block; margin: 0.5rem 0; }
.met { color: #2ca02c; font-weight: bold; }
.missed { color: #d62728; font-weight: bold; }
"""


# ---------------------------------------------------------------- data


@dataclass
class ReportData:
    """What the report reads from the warehouse (None = table missing)."""

    policy_daily: pd.DataFrame | None = None
    decision_dates: pd.DataFrame | None = None
    model_performance: pd.DataFrame | None = None
    outcome_dates: pd.DataFrame | None = None
    arm_outcomes: pd.DataFrame | None = None
    policy_parameters: pd.DataFrame | None = None
    drift: pd.DataFrame | None = None
    override_performance: pd.DataFrame | None = None
    retrain_events: pd.DataFrame | None = None
    evaluation: pd.DataFrame | None = None
    true_uplift: pd.DataFrame | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_QUERIES: dict[str, tuple[str, str, str]] = {
    # attribute: (schema, table, query)
    "policy_daily": (
        "marts",
        "policy_daily",
        "select * from marts.policy_daily order by run_date",
    ),
    "decision_dates": (
        "marts",
        "decisions",
        "select run_date, count(*) as rows, "
        "count(*) filter (where arm = 'treated') as treated, "
        "min(policy_mode) as policy_mode, min(model_version) as model_version "
        "from marts.decisions group by run_date order by run_date",
    ),
    "model_performance": (
        "marts",
        "model_performance",
        "select run_date, model_version, n, positive_rate, roc_auc, pr_auc, brier, "
        "ece from marts.model_performance order by run_date",
    ),
    "outcome_dates": (
        "marts",
        "decision_outcomes",
        "select run_date, count(*) as rows from marts.decision_outcomes "
        "group by run_date order by run_date",
    ),
    "arm_outcomes": (
        "marts",
        "decision_outcomes",
        "select arm, action, retained, realized_spend, cost, expected_ev "
        "from marts.decision_outcomes where is_randomized",
    ),
    "policy_parameters": (
        "marts",
        "policy_parameters",
        "select * from marts.policy_parameters where segment is null "
        "and computed_on = (select max(computed_on) from marts.policy_parameters) "
        "order by action",
    ),
    "drift": (
        "marts",
        "drift",
        "select run_date, model_version, name, kind, psi from marts.drift "
        "order by run_date, kind, name",
    ),
    "override_performance": (
        "marts",
        "override_performance",
        "select * from marts.override_performance order by run_date, review_outcome",
    ),
    "retrain_events": (
        "ops",
        "retrain_events",
        "select * from ops.retrain_events order by day",
    ),
}


def _read(
    con: duckdb.DuckDBPyConnection, schema: str, table: str, query: str
) -> pd.DataFrame | None:
    if not table_exists(con, schema, table):
        return None
    return con.execute(query).df()


def load_report_data(settings: Settings) -> ReportData:
    """Read every table the report uses, read-only; a missing one stays None."""
    data = ReportData()
    path = settings.warehouse_path
    if not path.is_file():
        data.notes.append(f"no warehouse at {path} yet")
        return data
    try:
        with connect(path, read_only=True) as con:
            for attribute, (schema, table, query) in _QUERIES.items():
                setattr(data, attribute, _read(con, schema, table, query))
    except duckdb.Error as error:
        data.notes.append(f"the warehouse could not be read: {error}")
    return data


def _read_evaluation(settings: Settings) -> pd.DataFrame | None:
    path = settings.reports_dir / EVALUATION_FILE
    return pd.read_parquet(path) if path.is_file() else None


def _true_uplift(
    data: ReportData, truth: Callable[[date, date], pd.DataFrame] | None
) -> pd.DataFrame | None:
    """True uplift per action over the matured decision dates, from ``truth``
    (given only where a simulator knows it)."""
    dates = data.outcome_dates
    if truth is None or dates is None or dates.empty:
        return None
    days = pd.to_datetime(dates["run_date"])
    return truth(days.min().date(), days.max().date())


def _events_from_retrains(retrains: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Retrain and promotion markers from ``ops.retrain_events`` (used when the
    caller passes no events): a fired check, and a change of champion version."""
    if retrains is None or retrains.empty:
        return []
    events: list[dict[str, Any]] = []
    previous: str | None = None
    for row in retrains.to_dict(orient="records"):
        if bool(row["fired"]):
            events.append(
                {"date": row["day"], "kind": "retrain", "label": row["reasons"] or ""}
            )
        raw = row["champion_version"]
        version = str(raw) if isinstance(raw, str) else None
        if version is not None and previous is not None and version != previous:
            events.append(
                {
                    "date": row["day"],
                    "kind": "promotion",
                    "label": f"champion {version}",
                }
            )
        if version is not None:
            previous = version
    return events


# ---------------------------------------------------------------- html helpers


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _nodata(what: str) -> str:
    return f'<p class="nodata">No data yet: {_esc(what)}.</p>'


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _number(value: Any) -> str:
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


def _table(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A plain HTML table (values escaped, numbers formatted, no index)."""
    if columns is not None:
        frame = frame.loc[:, [c for c in columns if c in frame.columns]]
    head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            if isinstance(value, str):
                cells.append(f"<td>{_esc(value)}</td>")
            elif value is None or (not isinstance(value, str) and pd.isna(value)):
                cells.append("<td>–</td>")
            else:
                cells.append(f"<td>{_esc(_number(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="t"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _image(figure: Figure, alt: str) -> str:
    """The figure as an embedded PNG."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{encoded}">'


def _figure(rows: int = 1, height: float = 3.0, width: float = 10.0) -> Figure:
    return Figure(figsize=(width, height * rows), dpi=100)


def _dates(values: Iterable[Any]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(list(values)))


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


def _events_in(
    events: Sequence[Mapping[str, Any]], days: pd.DatetimeIndex
) -> list[Mapping[str, Any]]:
    """Events within the plotted period (so markers do not stretch the axis)."""
    if len(days) == 0:
        return []
    low, high = days.min(), days.max()
    return [e for e in events if low <= pd.Timestamp(e["date"]) <= high]


def _events_table(events: Sequence[Mapping[str, Any]]) -> str:
    if not events:
        return ""
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
    return "<h3>Events</h3>" + _table(frame)


# ---------------------------------------------------------------- sections


def _summary(data: ReportData, targets: Sequence[Mapping[str, Any]] | None) -> str:
    parts: list[str] = []
    daily = data.policy_daily
    nights = daily if daily is not None and not daily.empty else data.decision_dates
    if nights is None or nights.empty:
        parts.append(_nodata("no decisions (marts.policy_daily, marts.decisions)"))
    else:
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
        parts.append(_table(pd.DataFrame(facts, columns=["", "value"])))
        versions = (
            nights.dropna(subset=["model_version"])
            if "model_version" in nights.columns
            else nights.iloc[0:0]
        )
        if versions.empty:
            parts.append(_note("No champion has decided yet (fallback only)."))
        else:
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
            parts.append("<h3>Champion versions seen</h3>" + _table(seen))
    if data.evaluation is not None and not data.evaluation.empty:
        evaluation = data.evaluation
        if {"value_loopline", "value_probability_ranked"} <= set(evaluation.columns):
            mine = float(evaluation["value_loopline"].sum())
            base = float(evaluation["value_probability_ranked"].sum())
            parts.append(
                _note(
                    f"True incremental value of the policy's plan: {mine:,.0f} over "
                    f"{len(evaluation)} evaluated nights, against {base:,.0f} for "
                    "the probability-ranked baseline at the same budget."
                )
            )
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
        table = _table(pd.DataFrame(rows))
        table = table.replace("<td>yes</td>", '<td class="met">yes</td>').replace(
            "<td>no</td>", '<td class="missed">no</td>'
        )
        parts.append("<h3>Targets</h3>" + table)
    for note in data.notes:
        parts.append(_note(note))
    return "".join(parts)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 and np.isfinite(a) else "n/a"


def _value(data: ReportData) -> str:
    evaluation = data.evaluation
    if evaluation is None or evaluation.empty:
        return _nodata(
            "no evaluation against the simulator's truth (reports/evaluation.parquet "
            "is written by the demo)"
        )
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
    figure = _figure(rows=2)
    daily, cumulative = figure.subplots(2, 1, sharex=True)
    for name in policies:
        style = POLICY_STYLE.get(name, {})
        values = frame[f"value_{name}"].to_numpy(dtype=np.float64)
        daily.plot(days, values, label=name, **style)
        cumulative.plot(days, np.nancumsum(values), label=name, **style)
    events = _events_in(data.events, days)
    for ax in (daily, cumulative):
        _mark_events(ax, events)
    daily.set(ylabel="true value per night", title="Incremental true value per night")
    cumulative.set(ylabel="cumulative", title="Cumulative incremental true value")
    _finish(figure, daily)
    _finish(figure, cumulative, legend=False)
    parts = [_image(figure, "incremental true value per night and cumulative")]
    totals: list[dict[str, Any]] = []
    reference = "oracle_average" if "oracle_average" in policies else "oracle"
    oracle = (
        float(frame[f"value_{reference}"].sum()) if reference in policies else np.nan
    )
    for name in policies:
        value = float(frame[f"value_{name}"].sum())
        cost = float(frame[f"cost_{name}"].sum()) if f"cost_{name}" in frame else np.nan
        treated = (
            int(frame[f"treated_{name}"].sum()) if f"treated_{name}" in frame else 0
        )
        totals.append(
            {
                "policy": name,
                "true value": value,
                "cost": cost,
                "treated": treated,
                "value per cost": value / cost if cost > 0 else np.nan,
                f"share of {reference}": value / oracle if oracle > 0 else np.nan,
            }
        )
    parts.append(_table(pd.DataFrame(totals)))
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
    if ratios:
        parts.append(
            "<h3>Ratios of total true value</h3>" + _table(pd.DataFrame(ratios))
        )
    parts.append(
        _note(
            f"{len(frame)} nights evaluated. Every plan is valued with the "
            "simulator's true uplift (reach × uplift) and the score the policy saw, "
            "under the same capacities and budget. 'loopline' is the allocation as "
            "planned: the randomised holdout is valued as if treated (it consumed no "
            "budget, so this plan may cost up to budget / (1 − holdout fraction)); "
            "'loopline_executed' counts only the contacts actually sent. 'oracle' "
            "knows each customer's true uplift (who is persuadable: a ceiling no "
            "policy on this data can reach); 'oracle_average' knows only each "
            "action's true average uplift, and is the oracle the targets use."
        )
    )
    return "".join(parts)


def _model(data: ReportData, champion_test_auc: float | None) -> str:
    perf = data.model_performance
    if perf is None or perf.empty:
        return _nodata("no matured score dates (marts.model_performance)")
    frame = perf.assign(run_date=_dates(perf["run_date"])).sort_values("run_date")
    days = pd.DatetimeIndex(frame["run_date"])
    figure = _figure(rows=2)
    auc_ax, ece_ax = figure.subplots(2, 1, sharex=True)
    auc_ax.plot(
        days,
        frame["roc_auc"].to_numpy(dtype=np.float64),
        marker=".",
        label="realized ROC AUC",
    )
    retrains = data.retrain_events
    if champion_test_auc is not None:
        auc_ax.axhline(
            champion_test_auc,
            color="black",
            linestyle="--",
            label=f"champion test AUC {champion_test_auc:.3f}",
        )
    elif retrains is not None and retrains["champion_test_auc"].notna().any():
        steps = retrains.dropna(subset=["champion_test_auc"])
        auc_ax.step(
            _dates(steps["day"]),
            steps["champion_test_auc"].to_numpy(dtype=np.float64),
            where="post",
            color="black",
            linestyle="--",
            label="champion test AUC",
        )
    ece_ax.plot(
        days,
        frame["ece"].to_numpy(dtype=np.float64),
        marker=".",
        color="#ff7f0e",
        label="realized ECE",
    )
    events = _events_in(data.events, days)
    for ax in (auc_ax, ece_ax):
        _mark_events(ax, events)
    auc_ax.set(ylabel="ROC AUC", title="Realized discrimination per score date")
    ece_ax.set(ylabel="ECE", title="Realized calibration error per score date")
    _finish(figure, auc_ax)
    _finish(figure, ece_ax)
    parts = [_image(figure, "realized ROC AUC and ECE per score date")]
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
    parts.append(_table(by_version))
    if champion_test_auc is not None:
        parts.append(_note(f"Champion test ROC AUC: {champion_test_auc:.3f}."))
    parts.append(_events_table(data.events))
    return "".join(parts)


def _uplift(data: ReportData) -> str:
    from ml.feedback.uplift import PARAMETER_COLUMNS, arm_comparison

    parts: list[str] = []
    params = data.policy_parameters
    if params is None or params.empty:
        parts.append(_nodata("no uplift posteriors (marts.policy_parameters)"))
        params = None
    else:
        computed = pd.Timestamp(params["computed_on"].iloc[0]).date()
        parts.append(f"<h3>Posterior per action (computed on {computed})</h3>")
        parts.append(
            _table(
                params,
                [
                    *(
                        c
                        for c in PARAMETER_COLUMNS
                        if c not in ("segment", "alpha", "beta")
                    ),
                    "previous_mean",
                    "changed",
                    "effective_from",
                ],
            )
        )
    outcomes = data.arm_outcomes
    pooled: pd.DataFrame | None = None
    if outcomes is None or outcomes.empty:
        parts.append(
            _nodata("no matured treated or holdout outcomes (marts.decision_outcomes)")
        )
    else:
        pooled = arm_comparison(outcomes, by=["action"])
        parts.append(
            "<h3>Treated against holdout, pooled over matured dates "
            "(the randomized experiment: reviewed decisions left out)</h3>"
        )
        parts.append(
            _table(
                pooled,
                [
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
                ],
            )
        )
    truth = data.true_uplift
    if truth is not None and not truth.empty:
        parts.append("<h3>True uplift of the allocation (simulator)</h3>")
        parts.append(_table(truth))
        parts.append(
            _note(
                "True uplift = 1 − churn_contacted / churn_untreated over the "
                "randomized treated decisions of the matured dates: the simulator "
                "copied each contacted customer on the day of delivery, contacted "
                "one copy and left the other alone, and followed both over the "
                "horizon (churned: no purchase). This is what the measured "
                "1 − churn_treated / churn_holdout estimates."
            )
        )
    if params is None and pooled is None:
        return "".join(parts)
    figure = _figure(height=3.6, width=8.0)
    ax = figure.add_subplot()
    x = np.arange(len(ACTIONS), dtype=np.float64)

    def bars(
        frame: pd.DataFrame, mean: str, low: str, high: str, shift: float, **style: Any
    ) -> None:
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

    if pooled is not None:
        bars(
            pooled,
            "uplift",
            "uplift_low",
            "uplift_high",
            -0.15,
            label="measured (95% Katz)",
            color="#1f77b4",
        )
    if params is not None:
        bars(
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
    parts.append(_image(figure, "uplift per action: measured, posterior, true"))
    parts.append(
        _note(
            "Intervals are not clipped: a lower bound below 0 means the "
            "data cannot rule out harm."
        )
    )
    return "".join(parts)


def _drift(data: ReportData) -> str:
    drift = data.drift
    if drift is None or drift.empty:
        return _nodata("no drift measurements (marts.drift)")
    frame = drift.assign(run_date=_dates(drift["run_date"]))
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
    figure = _figure(height=3.6)
    ax = figure.add_subplot()
    if not score.empty:
        ax.plot(
            _dates(score["run_date"]),
            score["psi"].to_numpy(dtype=np.float64),
            color="black",
            linewidth=2.0,
            label="score (p_churn)",
        )
    for name in top:
        rows = features[features["name"] == name].sort_values("run_date")
        ax.plot(
            _dates(rows["run_date"]),
            rows["psi"].to_numpy(dtype=np.float64),
            linewidth=1.0,
            label=str(name),
        )
    ax.axhline(
        PSI_THRESHOLD,
        color="#d62728",
        linestyle="--",
        label=f"threshold {PSI_THRESHOLD}",
    )
    _mark_events(ax, _events_in(data.events, days))
    ax.set(
        ylabel="PSI against the training reference",
        title="Population stability of the score and the most drifted features",
    )
    _finish(figure, ax)
    parts = [_image(figure, "PSI of the score and top features over time")]
    summary = (
        frame.groupby(["kind", "name"])
        .agg(
            max_psi=("psi", "max"),
            days_above_threshold=("psi", lambda s: int((s > PSI_THRESHOLD).sum())),
        )
        .reset_index()
    )
    latest_day = frame["run_date"].max()
    latest = frame[frame["run_date"] == latest_day].set_index(["kind", "name"])["psi"]
    summary["latest_psi"] = [
        latest.get((k, n), np.nan)
        for k, n in zip(summary["kind"], summary["name"], strict=True)
    ]
    summary = summary.sort_values(["kind", "max_psi"], ascending=[False, False])
    parts.append(f"<h3>PSI per measure (latest: {latest_day.date()})</h3>")
    parts.append(
        _table(
            summary.head(15),
            ["kind", "name", "latest_psi", "max_psi", "days_above_threshold"],
        )
    )
    return "".join(parts)


def _operations(data: ReportData) -> str:
    parts: list[str] = []
    daily = data.policy_daily
    if daily is None or daily.empty:
        parts.append(_nodata("no decision nights (marts.policy_daily)"))
    else:
        frame = daily.assign(run_date=_dates(daily["run_date"])).sort_values("run_date")
        days = pd.DatetimeIndex(frame["run_date"])
        figure = _figure(rows=3)
        budget_ax, channel_ax, arm_ax = figure.subplots(3, 1, sharex=True)
        if {"budget", "budget_used"} <= set(frame.columns):
            budget_ax.plot(
                days,
                frame["budget_used"].to_numpy(dtype=np.float64),
                label="budget used",
            )
            budget_ax.plot(
                days,
                frame["budget"].to_numpy(dtype=np.float64),
                color="black",
                linestyle="--",
                label="budget",
            )
        budget_ax.set(ylabel="expected cost", title="Daily budget")
        for channel in CHANNELS:
            used, cap = f"used_{channel}", f"capacity_{channel}"
            if used in frame.columns and cap in frame.columns:
                capacity = frame[cap].to_numpy(dtype=np.float64)
                with np.errstate(divide="ignore", invalid="ignore"):
                    share = np.where(
                        capacity > 0,
                        frame[used].to_numpy(dtype=np.float64) / capacity,
                        np.nan,
                    )
                channel_ax.plot(days, 100 * share, label=channel)
        channel_ax.set(ylabel="% of capacity", title="Channel capacity used")
        for column in ("arm_treated", "arm_holdout", "arm_review", "reviews_applied"):
            if column in frame.columns:
                arm_ax.plot(
                    days,
                    frame[column].to_numpy(dtype=np.float64),
                    label=column.removeprefix("arm_"),
                )
        arm_ax.set(ylabel="customers", title="Decisions per arm and review volume")
        for ax in (budget_ax, channel_ax, arm_ax):
            _finish(figure, ax)
        parts.append(_image(figure, "budget, capacity and arm counts per night"))
        rows: list[dict[str, Any]] = [{"measure": "nights", "value": len(frame)}]
        if "policy_mode" in frame.columns:
            for mode, n in frame["policy_mode"].value_counts().items():
                rows.append({"measure": f"{mode} nights", "value": int(n)})
        if {"budget", "budget_used"} <= set(frame.columns):
            budget = frame["budget"].to_numpy(dtype=np.float64)
            used_budget = frame["budget_used"].to_numpy(dtype=np.float64)
            rows.append(
                {
                    "measure": "budget used (total)",
                    "value": float(np.nansum(used_budget)),
                }
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                rows.append(
                    {
                        "measure": "budget used (mean share)",
                        "value": float(
                            np.nanmean(
                                np.where(budget > 0, used_budget / budget, np.nan)
                            )
                        ),
                    }
                )
        for channel in CHANNELS:
            used, cap = f"used_{channel}", f"capacity_{channel}"
            if used in frame.columns and cap in frame.columns:
                capacity = frame[cap].to_numpy(dtype=np.float64)
                with np.errstate(divide="ignore", invalid="ignore"):
                    share = np.where(
                        capacity > 0,
                        frame[used].to_numpy(dtype=np.float64) / capacity,
                        np.nan,
                    )
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
                rows.append(
                    {
                        "measure": f"{key} (total)",
                        "value": float(frame[key].fillna(0).sum()),
                    }
                )
        # formatted per row: a column of mixed counts and money stays readable
        parts.append(
            _table(
                pd.DataFrame(
                    [
                        {"measure": r["measure"], "value": _number(r["value"])}
                        for r in rows
                    ]
                )
            )
        )
    overrides = data.override_performance
    parts.append("<h3>Review outcomes</h3>")
    if overrides is None or overrides.empty:
        parts.append(_nodata("no matured review outcomes (marts.override_performance)"))
    else:
        parts.append(_table(_override_summary(overrides)))
        parts.append(
            _note(
                "Pooled over the matured decision dates, weighted by n; 'followed' "
                "are the policy's own automatic decisions, the others the reviewed "
                "cases by the reviewer's decision."
            )
        )
    return "".join(parts)


def _override_summary(overrides: pd.DataFrame) -> pd.DataFrame:
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


def _retrains(data: ReportData) -> str:
    events = data.retrain_events
    if events is None or events.empty:
        return _nodata("no retrain checks (ops.retrain_events)")
    frame = events.assign(day=[pd.Timestamp(d).date() for d in events["day"]])
    fired = frame["fired"].fillna(False).astype(bool)
    reasons = frame["reasons"].fillna("").astype(str)
    columns = [
        "day",
        "fired",
        "reasons",
        "blocked",
        "champion_version",
        "champion_test_auc",
    ]
    parts = [_note(f"{len(frame)} checks, {int(fired.sum())} fired.")]
    interesting = frame[fired | (reasons != "")]
    if interesting.empty:
        parts.append(_note("No check found a reason to retrain."))
    else:
        parts.append("<h3>Checks that fired or found a reason</h3>")
        parts.append(_table(interesting, columns))
    evidence = frame[fired]
    if not evidence.empty:
        items = []
        for row in evidence.itertuples(index=False):
            text = row.evidence if isinstance(row.evidence, str) else ""
            with contextlib.suppress(ValueError):
                text = json.dumps(json.loads(text), indent=1, default=str)
            items.append(f"<h4>{_esc(row.day)}</h4><pre>{_esc(text)}</pre>")
        parts.append(
            "<details><summary>Evidence of the fired checks</summary>"
            + "".join(items)
            + "</details>"
        )
    parts.append(
        f"<details><summary>All {len(frame)} checks</summary>"
        + _table(frame, columns)
        + "</details>"
    )
    return "".join(parts)


# ---------------------------------------------------------------- the report


def _safe(render: Callable[[], str], section: str) -> str:
    """Render a section; an unexpected error is shown in place, not raised."""
    try:
        return render()
    except Exception as error:  # noqa: BLE001 - one section must not cost the report
        return (
            f'<p class="error">The {_esc(section)} section could not be rendered: '
            f"{_esc(type(error).__name__)}: {_esc(error)}</p>"
        )


def render_report(
    data: ReportData,
    targets: Sequence[Mapping[str, Any]] | None = None,
    champion_test_auc: float | None = None,
    title: str = "Loopline report",
) -> str:
    """The report's HTML from already loaded data."""
    renderers: dict[str, Callable[[], str]] = {
        "summary": lambda: _summary(data, targets),
        "value": lambda: _value(data),
        "model": lambda: _model(data, champion_test_auc),
        "uplift": lambda: _uplift(data),
        "drift": lambda: _drift(data),
        "operations": lambda: _operations(data),
        "retrains": lambda: _retrains(data),
    }
    nav = "".join(f'<a href="#{key}">{_esc(name)}</a>' for key, name in SECTIONS)
    body = "".join(
        f'<section><h2 id="{key}">{_esc(name)}</h2>'
        f"{_safe(renderers[key], key)}</section>"
        for key, name in SECTIONS
    )
    generated = datetime.now().strftime("%Y-%m-%d %H:%M")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_esc(title)}</h1>"
        f'<p class="note">Generated {generated}. Closed-loop churn decisions: '
        "scores, decisions, outcomes and what the loop learned.</p>"
        f"<nav>{nav}</nav>{body}</body></html>\n"
    )


def build_report(
    settings: Settings,
    path: Path | None = None,
    evaluation: pd.DataFrame | None = None,
    events: Sequence[Mapping[str, Any]] | None = None,
    targets: Sequence[Mapping[str, Any]] | None = None,
    champion_test_auc: float | None = None,
    true_uplift: Callable[[date, date], pd.DataFrame] | None = None,
) -> Path:
    """Write the self-contained HTML report and return its path.

    ``path`` defaults to ``reports/loopline_report.html`` under the settings' root.
    ``evaluation`` is the frame of the simulator's evaluation (default:
    ``reports/evaluation.parquet`` if it exists). ``events`` are dicts ``{date,
    kind ('drift' | 'retrain' | 'promotion'), label}`` drawn as vertical markers
    (default: the fired checks and champion changes of ``ops.retrain_events``).
    ``targets`` are dicts ``{name, measured, target, met}`` for the summary, and
    ``champion_test_auc`` is drawn as a reference line on the realized AUC.
    ``true_uplift(first, last)``, where a simulator knows the truth, gives the
    true uplift per action over the matured decision dates (the demo passes
    :func:`ml.sim.evaluate.true_uplift_by_action`). The warehouse is opened
    read-only.
    """
    path = path or settings.report_path
    data = load_report_data(settings)
    data.evaluation = (
        evaluation if evaluation is not None else _read_evaluation(settings)
    )
    data.events = (
        [dict(e) for e in events]
        if events is not None
        else _events_from_retrains(data.retrain_events)
    )
    try:
        data.true_uplift = _true_uplift(data, true_uplift)
    except Exception as error:  # noqa: BLE001 - truth is optional, say why it is absent
        data.notes.append(f"true uplift unavailable: {type(error).__name__}: {error}")
    page = render_report(data, targets, champion_test_auc)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


__all__ = [
    "REPORT_FILE",
    "SECTIONS",
    "ReportData",
    "build_report",
    "load_report_data",
    "render_report",
]
