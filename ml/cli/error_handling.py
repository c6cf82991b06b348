"""How the ``loopline`` command reports errors.

An error a user can cause (bad input, a missing file, a failed gate, a SQL error,
a warehouse another process holds, a date outside the data) becomes one or a few
plain lines on stderr and a non-zero exit code; anything else becomes its type and
message plus a hint. The traceback is printed only with ``loopline --debug`` or
``LOOPLINE_DEBUG=1``.

:class:`LooplineGroup` is the ``loopline`` app's command group: it runs every
command (and sub-command) inside :func:`explain`'s handling. SIGTERM is turned into
:class:`Terminated` (a ``KeyboardInterrupt``), so a command stops the way Ctrl-C
stops it: ``finally`` blocks run, services are stopped, and the exit code is 143.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

DEBUG_ENV = "LOOPLINE_DEBUG"
MAX_LINES = 8
# Exit codes: 1 for an error, 130 and 143 for SIGINT and SIGTERM (128 + signal).
ERROR_EXIT = 1
INTERRUPT_EXIT = 128 + signal.SIGINT
TERMINATE_EXIT = 128 + signal.SIGTERM
# The modules whose exceptions are raised on purpose, with a message for the user.
OWN_MODULES = ("ml.", "loopline_airflow.", "expectations.")
LOCK_PID = re.compile(r"\(PID (\d+)\)")
LOCK_FILE = re.compile(r'lock on file "([^"]+)"')


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (raised by :func:`raise_terminated`)."""


# The stop signal received during this command, if any: code that runs other
# code which may swallow the exception (a task run in-process catches every
# exception of the task) calls raise_if_stopped afterwards.
_received: int | None = None


def raise_terminated(signum: int, frame: Any) -> None:
    """A SIGTERM handler: stop the main thread as Ctrl-C would."""
    global _received
    _received = signum
    raise Terminated


def raise_interrupt(signum: int, frame: Any) -> None:
    """A SIGINT handler that works where the shell started the process with SIGINT
    ignored (a background job), which Python keeps ignored."""
    global _received
    _received = signum
    raise KeyboardInterrupt


def raise_if_stopped() -> None:
    """Raise again the stop (SIGTERM or Ctrl-C) that arrived during this command,
    in case something caught it."""
    if _received == signal.SIGTERM:
        raise Terminated
    if _received is not None:
        raise KeyboardInterrupt


_debug = False


def set_debug(wanted: bool) -> None:
    """``loopline --debug``: tracebacks for this command."""
    global _debug
    _debug = wanted


def debug_enabled() -> bool:
    """Whether tracebacks are wanted (``--debug`` or ``LOOPLINE_DEBUG=1``)."""
    wanted = os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes"}
    return _debug or wanted


def _paragraph(text: str) -> list[str]:
    """The lines of ``text`` up to its first blank line (DuckDB puts the query and
    a caret under its one-line message)."""
    lines: list[str] = []
    for line in text.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.rstrip())
    return lines or [text.strip()]


def _clip(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_LINES:
        return lines
    rest = len(lines) - MAX_LINES
    return [*lines[:MAX_LINES], f"… ({rest} more lines; --debug shows the traceback)"]


def _is_duckdb(error: BaseException) -> bool:
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(error, duckdb.Error)


def lock_message(error: BaseException) -> list[str] | None:
    """Plain lines for DuckDB's "Could not set lock" (one writing process per
    file), or None when ``error`` is not that."""
    text = str(error)
    if "Could not set lock" not in text:
        return None
    where = LOCK_FILE.search(text)
    pid = LOCK_PID.search(text)
    path = where.group(1) if where else "the warehouse"
    holder = f"process {pid.group(1)}" if pid else "another process"
    return [
        f"{path} is in use by {holder}: DuckDB lets one process write to it at a time.",
        "Wait until that process (a pipeline run?) has finished, then try again.",
    ]


def explain(error: BaseException) -> tuple[list[str], int]:
    """The plain lines and the exit code for ``error``."""
    if isinstance(error, Terminated):
        return ["stopped (SIGTERM)"], TERMINATE_EXIT
    if isinstance(error, KeyboardInterrupt):
        return ["interrupted"], INTERRUPT_EXIT
    from ml.data.validation.errors import GateError

    if isinstance(error, GateError):
        from ml.data.validation.gate_summary import summarize

        return summarize(error), ERROR_EXIT
    if _is_duckdb(error):
        lines = lock_message(error) or _paragraph(str(error))
        return _clip(lines), ERROR_EXIT
    if isinstance(error, OSError) and error.filename is not None:
        return [f"{error.strerror or error}: {error.filename}"], ERROR_EXIT
    message = str(error).strip()
    module = type(error).__module__ or ""
    expected = (
        module.startswith(OWN_MODULES)
        or module.startswith("mlflow")
        or isinstance(error, ValueError | OSError)
    )
    if expected and message:
        return _clip(_paragraph(message)), ERROR_EXIT
    name = type(error).__name__
    lines = _paragraph(f"{name}: {message}" if message else name)
    hint = f"an unexpected error: rerun with --debug (or {DEBUG_ENV}=1) to see where"
    return [*_clip(lines), hint], ERROR_EXIT


def report(error: BaseException) -> int:
    """Print ``error`` as plain lines on stderr; return the exit code."""
    lines, code = explain(error)
    for number, line in enumerate(lines):
        if code != ERROR_EXIT or line.startswith(" "):
            shown = line
        else:
            shown = f"error: {line}" if number == 0 else f"  {line}"
        typer.echo(shown, err=True)
    return code


def _passes_through(error: BaseException) -> bool:
    """Typer's and Click's own exits and usage errors, which they print."""
    return isinstance(error, typer.Exit | typer.Abort | typer.BadParameter) or type(
        error
    ).__module__.startswith(("typer.", "click."))


@contextmanager
def plain_errors() -> Iterator[None]:
    """Turn any exception of the block into :func:`report`'s lines and an exit
    code (``typer.Exit``), unless :func:`debug_enabled`."""
    try:
        yield
    except UsageError as error:
        where = error.ctx.command_path if error.ctx is not None else "loopline"
        typer.echo(f"error: {error.format_message()}", err=True)
        typer.echo(f"  ({where} --help lists the options)", err=True)
        raise typer.Exit(error.exit_code) from None
    except BaseException as error:
        if isinstance(error, SystemExit) or _passes_through(error):
            raise
        if debug_enabled():
            traceback.print_exc()
            raise typer.Exit(explain(error)[1]) from None
        raise typer.Exit(report(error)) from None


class LooplineGroup(TyperGroup):
    """The ``loopline`` command group: every command runs with SIGTERM stopping it
    like Ctrl-C (:func:`stop_on_signals`), and with :func:`plain_errors`."""

    def invoke(self, ctx: Any) -> Any:
        if ctx.parent is None:
            set_debug(False)  # until the --debug option says otherwise
        with plain_errors(), stop_on_signals():
            return super().invoke(ctx)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` and SIGINT ``KeyboardInterrupt`` in the
    block (main thread only; the previous handlers come back after it)."""
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received = None
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, raise_terminated),
        signal.SIGINT: signal.signal(signal.SIGINT, raise_interrupt),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received = None


def fail(message: str, code: int = ERROR_EXIT) -> NoReturn:
    """Stop the command with ``message`` as one plain line on stderr."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
