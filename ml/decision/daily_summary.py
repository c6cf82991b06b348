"""Read-side summaries of the decision layer (for the CLI, the demo and reports)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from ml.config.settings import Settings
from ml.contract.schema import CHANNELS
from ml.storage.warehouse import connect, table_exists


def daily_summary(
    settings: Settings, run_date: date | None = None, database: Path | None = None
) -> tuple[dict[str, Any], list[tuple[Any, ...]]] | None:
    """The ``marts.policy_daily`` row of ``run_date`` (default: the latest) with a
    ``resources`` list of (resource, used, limit), and the decision counts and
    expected value per arm and action. None when nothing was decided. Reads
    ``database`` (default: the warehouse; the CLI passes the analyst copy)."""
    with connect(database or settings.warehouse_path, read_only=True) as con:
        if not table_exists(con, "marts", "policy_daily"):
            return None
        if run_date is None:
            found = con.execute(
                "select max(run_date) from marts.policy_daily"
            ).fetchone()
            if not found or found[0] is None:
                return None
            run_date = found[0]
        result = con.execute(
            "select * from marts.policy_daily where run_date = ?", [run_date]
        )
        columns = [d[0] for d in result.description or []]
        row = result.fetchone()
        if row is None:
            return None
        daily = dict(zip(columns, row, strict=True))
        arms = con.execute(
            """
            select arm, coalesce(action, '-') as action, count(*) as customers,
                round(sum(chosen_ev), 2) as expected_value
            from marts.decisions where run_date = ?
            group by arm, coalesce(action, '-')
            order by list_position(['treated', 'holdout', 'review', 'none'], arm),
                action
            """,
            [run_date],
        ).fetchall()
    resources: list[tuple[str, Any, Any]] = [
        (f"{c} contacts", daily.get(f"used_{c}"), daily.get(f"capacity_{c}"))
        for c in CHANNELS
    ]
    resources.append(("budget", daily.get("budget_used"), daily.get("budget")))
    daily["resources"] = resources
    return daily, arms
