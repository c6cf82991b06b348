"""``loopline status``: the pipeline's state at a glance (see :mod:`ml.ops.status`)."""

from __future__ import annotations

import json
import os
from datetime import date
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ml.config.settings import get_settings
from ml.ops.status import OpsStatus, collect_status

STATE_STYLE = {
    "success": "green",
    "failed": "red",
    "running": "yellow",
    "process gone": "red",
    "running (process gone)": "red",
}


def _date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from exc


def _state(state: str) -> str:
    style = STATE_STYLE.get(state)
    return f"[{style}]{state}[/]" if style else state


def render(status: OpsStatus, console: Console) -> None:
    """Print ``status`` as rich tables."""
    day = status.day.isoformat() if status.day else "-"
    console.print(f"[bold]Loopline status[/] for {day}  ({status.home})")

    runs = Table("DAG", "state", "run date", "failed tasks", "last success")
    runs.title = f"last DAG runs ({status.airflow.source})"
    if not status.airflow.available:
        console.print(f"DAG runs: unavailable ({status.airflow.error})")
    else:
        for dag_id, run in status.airflow.runs.items():
            if run is None:
                runs.add_row(dag_id, "never run", "-", "-", "-")
                continue
            runs.add_row(
                dag_id,
                _state(status.dag_state(dag_id) or run.state),
                run.run_date.isoformat() if run.run_date else "-",
                ", ".join(run.failed_tasks) or "-",
                run.last_success.isoformat() if run.last_success else "-",
            )
        console.print(runs)

    champion = status.champion
    if champion.version is None:
        console.print(
            f"champion: none{f' ({champion.error})' if champion.error else ''}"
        )
    else:
        age = f"{champion.age_days} days" if champion.age_days is not None else "-"
        auc = f"{champion.test_roc_auc:.3f}" if champion.test_roc_auc else "-"
        trained = champion.trained_as_of.isoformat() if champion.trained_as_of else "-"
        console.print(
            f"champion: version [bold]{champion.version}[/], trained as of "
            f"{trained}, age {age}, test ROC AUC {auc}"
        )

    if status.warehouse_error:
        console.print(f"[yellow]warehouse: {status.warehouse_error}[/]")

    queues = status.queues
    if queues is not None:
        if not queues.exported:
            console.print(f"queues dt={queues.day}: [yellow]nothing exported[/]")
        else:
            table = Table(*queues.rows, "policy", "model")
            table.title = f"action queues dt={queues.day}"
            table.add_row(
                *(f"{n:,}" for n in queues.rows.values()),
                queues.policy_mode or "-",
                queues.model_version or "-",
            )
            console.print(table)

    if status.validation:
        table = Table("suite", "expectations", "failed", "failing checks")
        table.title = f"validation results, run date {status.validation_day}"
        for suite in status.validation:
            table.add_row(
                suite.suite_name,
                str(suite.expectations),
                f"[red]{suite.failed}[/]" if suite.failed else "0",
                "; ".join(suite.failures) or "-",
            )
        console.print(table)
    if status.quarantine_day is not None:
        table = Table("table", "reason", "rows", "run")
        table.title = (
            f"quarantined rows, run date {status.quarantine_day} "
            f"({status.quarantine_total:,} in all)"
        )
        for row in status.quarantine:
            origin = {
                True: "loaded",
                False: "[red]stopped: nothing loaded[/]",
                None: "-",
            }[row.loaded]
            table.add_row(row.table_name, row.reason, f"{row.rows:,}", origin)
        console.print(table)

    for step in status.running:
        started = (
            step.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
            if step.started_at
            else "-"
        )
        where = f"pid {step.pid} on {step.host}" if step.pid else "no pid recorded"
        hint = (
            ": it ended without recording an outcome (killed?); rerun that date"
            if step.state == "process gone"
            else ""
        )
        console.print(
            f"step {step.step} of {step.run_date} recorded as running since "
            f"{started} ({where}): {_state(step.state)}{hint}",
            highlight=False,
        )

    verdict = status.last_verdict
    if verdict is not None:
        said = (
            f"fired ({verdict.reasons})"
            if verdict.fired
            else f"no{f' (blocked: {verdict.blocked})' if verdict.blocked else ''}"
        )
        console.print(f"retrain check of {verdict.day}: {said}")
    pending = status.pending_retrain
    if pending is not None:
        console.print(
            f"[yellow]pending retrain[/] requested on {pending.day} "
            f"({pending.reasons}): {pending.state}"
        )
    elif verdict is not None:
        console.print("pending retrain: none")

    # alerts as lines, not a table: cause and hint stay readable at any width
    if status.alerts:
        console.print(
            f"[bold]alerts[/] (latest {len(status.alerts)} of {status.alerts_total})"
        )
        for alert in status.alerts:
            when = alert.failed_at.strftime("%Y-%m-%d %H:%M:%S UTC")
            spooled = (
                " [yellow](spooled: not yet in ops.alerts)[/]" if alert.pending else ""
            )
            day = alert.run_date.isoformat() if alert.run_date else "-"
            kind = alert.error_type.rsplit(".", 1)[-1]
            console.print(
                f"- {when} [red]{alert.dag_id}.{alert.task_id}[/] run date {day}"
                f"{spooled}",
                highlight=False,
            )
            console.print(f"    cause: {kind}: {alert.cause}", highlight=False)
            console.print(f"    what to do: {alert.hint}", highlight=False)
    else:
        console.print("alerts: none")


def register_commands(app: typer.Typer) -> None:
    """Add ``status`` to the ``loopline`` command."""

    @app.command()
    def status(
        date_: Annotated[
            str | None,
            typer.Option("--date", help="Status day; default the latest run date."),
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print JSON for machines.")
        ] = False,
    ) -> None:
        """Last DAG runs, champion, queues, validation, retrain and alerts."""
        # a status must come back quickly even when the MLflow server is down
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        found = collect_status(get_settings(), _date(date_))
        if as_json:
            typer.echo(json.dumps(found.as_dict(), indent=2, sort_keys=True))
        else:
            render(found, Console())
