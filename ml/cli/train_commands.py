"""Command-line entry points for training and the registry.

``register_commands(app)`` adds ``train``, ``models``, ``promote`` and ``rollback`` to
the main ``loopline`` typer app; each calls one function of ``ml.prediction.train`` or
``ml.prediction.registry``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from ml.config.settings import get_settings

if TYPE_CHECKING:
    from ml.prediction.train import TrainResult

console = Console()


def print_train_result(result: TrainResult) -> None:
    """The run's test-window metrics beside the baseline's, and the gate verdict."""
    windows = result.windows
    table = Table(
        title=f"run {result.run_id} (version {result.model_version}), test window "
        f"{windows.test.start} → {windows.test.end}"
    )
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("baseline", justify="right")
    for key in ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_top10"):
        table.add_row(
            key, f"{result.metrics[key]:.4f}", f"{result.baseline_metrics[key]:.4f}"
        )
    console.print(table)
    if result.gate is not None:
        verdict = "promoted" if result.gate.promoted else "not promoted"
        console.print(f"gate: {verdict}")
        for reason in result.gate.reasons:
            console.print(f"  {reason}")


def _train(
    as_of: str = typer.Option(..., "--as-of", help="Training date (YYYY-MM-DD)."),
) -> None:
    """Train on labels matured by --as-of, register a challenger, run the gate."""
    from ml.cli.common import parse_date
    from ml.prediction.train import train

    print_train_result(train(get_settings(), parse_date(as_of)))


def _models() -> None:
    """List registered versions with their aliases and gate decisions."""
    from ml.prediction.registry import list_versions

    table = Table(title="loopline-churn")
    for column in ("version", "aliases", "created", "gate", "run"):
        table.add_column(column)
    for info in list_versions(get_settings()):
        table.add_row(
            info.version,
            ", ".join(info.aliases),
            info.created_at.strftime("%Y-%m-%d %H:%M"),
            info.tags.get("gate_decision", ""),
            info.run_id,
        )
    console.print(table)


def _promote(
    version: str = typer.Argument(..., help="Model version to make champion."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the registry)."),
) -> None:
    """Make VERSION the champion by hand."""
    from ml.prediction.registry import promote

    promote(get_settings(), version, reason)
    console.print(f"champion -> version {version}")


def _rollback(
    reason: str = typer.Option("rollback", "--reason", help="Why."),
) -> None:
    """Point champion back at the previous champion."""
    from ml.prediction.registry import rollback

    version = rollback(get_settings(), reason)
    console.print(f"champion -> version {version}")


def register_commands(app: typer.Typer) -> None:
    """Add the training and registry commands to ``app``."""
    app.command("train")(_train)
    app.command("models")(_models)
    app.command("promote")(_promote)
    app.command("rollback")(_rollback)
