"""Command-line entry points of the decision layer.

``register_commands(app)`` adds ``decisions`` (the daily policy summary) and the
``review`` group (``list``, ``approve``, ``reject``, ``change``) to the ``loopline``
app. Each calls one function of :mod:`ml.decision.daily_summary` or
:mod:`ml.action.review`.

They read the analyst copy (``analytics.duckdb``), never the live warehouse: a
person may run them while the pipeline writes, and a reader of the live file
would make a writer fail.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ml.cli.error_handling import fail
from ml.config.settings import get_settings

console = Console()
review_app = typer.Typer(help="Human review of the queued cases.")

Reviewer = Annotated[str, typer.Option(help="Who decides (kept with the record).")]
Reason = Annotated[str, typer.Option("--reason-code", help="Why, as a short code.")]
Note = Annotated[str | None, typer.Option(help="Free text for the record.")]
Arrives = Annotated[
    str | None,
    typer.Option(help="Day the decision lands (default: the day after the case)."),
]


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "" if value is None else str(value)


def print_decisions(run_date: date | None = None) -> None:
    """The policy summary of ``run_date`` (default: the latest decided date)."""
    from ml.cli.common import analyst_database
    from ml.decision.daily_summary import daily_summary

    settings = get_settings()
    found = daily_summary(settings, run_date, analyst_database(settings))
    if found is None:
        console.print("no decisions yet: run the nightly DAG (loopline run --date D)")
        raise typer.Exit(1)
    daily, arms = found
    title = (
        f"decisions of {daily['run_date']}: policy {daily['policy_version']} "
        f"({daily['policy_mode']}), model {daily['model_version'] or '-'}"
    )
    table = Table("arm", "action", "customers", "expected value", title=title)
    for row in arms:
        table.add_row(*(_number(v) for v in row))
    console.print(table)
    budget = Table("resource", "used", "limit", title="capacity and budget")
    for resource, used, limit in daily["resources"]:
        budget.add_row(resource, _number(used), _number(limit))
    console.print(budget)
    if daily.get("fallback_reasons"):
        console.print(f"fallback because: {daily['fallback_reasons']}")


def _decisions(
    date_: Annotated[
        str | None, typer.Option("--date", help="Run date (default: latest).")
    ] = None,
) -> None:
    """Counts per arm and action, budget and capacity used, expected value."""
    print_decisions(date.fromisoformat(date_) if date_ else None)


@review_app.command("list")
def review_list(
    date_: Annotated[
        str | None, typer.Option("--date", help="Queue date (default: latest).")
    ] = None,
) -> None:
    """Open review cases with their evidence."""
    from ml.action.review import pending_cases
    from ml.cli.common import analyst_database

    settings = get_settings()
    cases = pending_cases(
        settings,
        date.fromisoformat(date_) if date_ else None,
        analyst_database(settings),
    )
    if cases.empty:
        console.print("no open review cases")
        return
    queued = str(cases["run_date"].iloc[0])[:10]
    console.print(f"{len(cases)} open review cases of {queued}")
    for case in cases.itertuples(index=False):
        console.print(
            f"[bold]{case.decision_id}[/] {case.customer_id}  {case.action}  "
            f"p_churn {case.p_churn:.3f}  value at risk {case.value_at_risk:,.2f}  "
            f"EV {case.expected_value:,.2f}  ({case.reason_codes})"
        )
        console.print(f"    why: {case.top_reasons}")
        console.print(f"    history: {case.history}")


def _record(
    decision_id: str,
    decision: str,
    reviewer: str,
    reason_code: str,
    note: str | None,
    arrives: str | None,
    new_action: str | None = None,
) -> None:
    from ml.action.review import ReviewError, record_decision
    from ml.cli.common import analyst_database

    settings = get_settings()
    try:
        record = record_decision(
            settings,
            decision_id,
            decision,
            reviewer,
            reason_code,
            note=note,
            new_action=new_action,
            arrives_on=date.fromisoformat(arrives) if arrives else None,
            database=analyst_database(settings),
        )
    except ReviewError as error:
        fail(str(error), 2)
    console.print(
        f"{record.decision} on {record.decision_id} ({record.customer_id}) recorded; "
        f"applied by the run of {record.arrives_on} ({record.path})"
    )


@review_app.command("approve")
def review_approve(
    decision_id: str,
    reviewer: Reviewer,
    reason_code: Reason = "agree_with_model",
    note: Note = None,
    arrives: Arrives = None,
) -> None:
    """Approve a case: its proposed action goes out with the next run."""
    _record(decision_id, "approve", reviewer, reason_code, note, arrives)


@review_app.command("reject")
def review_reject(
    decision_id: str,
    reviewer: Reviewer,
    reason_code: Reason,
    note: Note = None,
    arrives: Arrives = None,
) -> None:
    """Reject a case: the customer is not contacted."""
    _record(decision_id, "reject", reviewer, reason_code, note, arrives)


@review_app.command("change")
def review_change(
    decision_id: str,
    action: Annotated[str, typer.Option(help="The action to send instead.")],
    reviewer: Reviewer,
    reason_code: Reason,
    note: Note = None,
    arrives: Arrives = None,
) -> None:
    """Change a case's action: the new action goes out with the next run."""
    _record(decision_id, "change", reviewer, reason_code, note, arrives, action)


def register_commands(app: typer.Typer) -> None:
    """Add ``decisions`` and ``review`` to ``app``."""
    app.command("decisions")(_decisions)
    app.add_typer(review_app, name="review")
