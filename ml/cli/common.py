"""What the ``loopline`` commands share: the console, date parsing, progress bars,
the home's set-up and reset, the analyst copy and the champion's summary.

The command modules (:mod:`ml.cli.app` and the ``*_commands`` modules it
registers) import from here, never from each other.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ml.config.settings import Settings

console = Console()
# What `loopline init --reset` removes under LOOPLINE_HOME (nothing else).
STATE_ENTRIES = (
    "landing",
    "warehouse.duckdb",
    "warehouse.duckdb.wal",
    "analytics.duckdb",
    "exports",
    "mlflow.db",
    "mlartifacts",
    "airflow",
    "reports",
    "truth",
    "gx",
    "dbt",
    "config",
    "alerts.pending.jsonl",
    "logs",
)


def parse_date(value: str) -> date:
    """A YYYY-MM-DD option value as a date (a usage error otherwise)."""
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from exc


def progress_bar() -> Progress:
    """A progress bar on the console: description, bar, n of m, elapsed."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def init_home(settings: Settings) -> None:
    """Create the home's folders and the warehouse's schemas."""
    from ml.storage.warehouse import connect, ensure_schemas

    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)


def reset_home(settings: Settings) -> None:
    """Remove Loopline's own state entries under LOOPLINE_HOME (nothing else)."""
    for name in STATE_ENTRIES:
        path = settings.root / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def analyst_database(settings: Settings) -> Path:
    """The analyst copy, or exit with what to run when nothing is published."""
    from ml.analytics.publish import analytics_database

    return analytics_database(settings)  # NotPublishedError says what to run


def print_champion(settings: Settings) -> None:
    """The champion version and its test-window metrics, or that there is none."""
    from ml.prediction.registry import champion_metrics

    found = champion_metrics(settings)
    if found is None:
        console.print("champion: none (no model has passed the promotion gate)")
        return
    version, metrics = found
    table = Table("metric", "test window", title=f"champion: version {version}")
    for key in ("roc_auc", "pr_auc", "brier", "ece", "lift_top10", "capture_top10"):
        if key in metrics:
            table.add_row(key, f"{metrics[key]:.4f}")
    console.print(table)
