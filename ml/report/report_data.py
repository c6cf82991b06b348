"""What the report reads: the warehouse tables (read-only) and the stored
evaluation, gathered into a :class:`ReportData`.

Every table is optional: a missing one stays ``None`` and its section says so. The
warehouse is opened read-only and never created; a warehouse that cannot be read
leaves a note instead of an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
import pandas as pd

from ml.config.settings import Settings
from ml.storage.warehouse import connect, table_exists

EVALUATION_FILE = "evaluation.parquet"


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


def read_evaluation(settings: Settings) -> pd.DataFrame | None:
    """The simulator's stored evaluation (``reports/evaluation.parquet``), if any."""
    path = settings.reports_dir / EVALUATION_FILE
    return pd.read_parquet(path) if path.is_file() else None


def true_uplift_over_matured_dates(
    data: ReportData, truth: Callable[[date, date], pd.DataFrame] | None
) -> pd.DataFrame | None:
    """True uplift per action over the matured decision dates, from ``truth``
    (given only where a simulator knows it)."""
    dates = data.outcome_dates
    if truth is None or dates is None or dates.empty:
        return None
    days = pd.to_datetime(dates["run_date"])
    return truth(days.min().date(), days.max().date())


def events_from_retrains(retrains: pd.DataFrame | None) -> list[dict[str, Any]]:
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
