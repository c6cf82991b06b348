"""What a ``loopline`` command prints: its own lines only.

Libraries print on their own: Python warnings (deprecations, mostly), MLflow's
messages ("Detected uv project", "Created version '3' of model"), and Airflow's
log lines of the tasks ``dag.test`` runs in-process. In a command these go to
``$LOOPLINE_HOME/logs/loopline.log`` instead of the console (with ``--debug`` they
stay on the console). :func:`route_library_output` starts this for the command;
:func:`quiet_mlflow` applies it to MLflow once MLflow is imported (the MLflow
wiring calls it), and ``loopline_airflow.runner.send_logs_to`` to Airflow.
Outside a command (an Airflow task, a test) nothing changes.
"""

from __future__ import annotations

import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ml.config.settings import Settings

LOG_FILE = Path("logs") / "loopline.log"


class _LazyLog:
    """The log file, opened (and its folder created) on the first write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def open(self) -> IO[str]:
        """The file itself (opened now if it is not yet)."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8", buffering=1)
        return self._file

    def write(self, text: str) -> int:
        return self.open().write(text)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def isatty(self) -> bool:
        return False


_log: _LazyLog | None = None


def log_file(settings: Settings) -> Path:
    """Where a command's library output goes."""
    return settings.root / LOG_FILE


def active_log() -> _LazyLog | None:
    """The command's log, or None outside a command (or with ``--debug``)."""
    return _log


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    if _log is None:
        return
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    text = warnings.formatwarning(message, category, filename, lineno, line)
    _log.write(f"{stamp} warning {text}")


def route_library_output(settings: Settings) -> Path:
    """Send this command's Python warnings (and, via :func:`quiet_mlflow`,
    MLflow's messages) to :func:`log_file`; returns its path."""
    global _log
    path = log_file(settings)
    _log = _LazyLog(path)
    warnings.showwarning = _show_warning
    if "mlflow" in sys.modules:
        quiet_mlflow()
    return path


def quiet_mlflow() -> None:
    """Route MLflow's messages and log lines (they share one stream) to the
    command's log file; nothing outside a command."""
    if _log is None:
        return
    from mlflow.utils import logging_utils

    stream = logging_utils.MLFLOW_LOGGING_STREAM
    log = _log
    # every MLflow handler and eprint() writes through this one object
    stream.write = log.write  # type: ignore[method-assign]
    stream.flush = log.flush  # type: ignore[method-assign]
