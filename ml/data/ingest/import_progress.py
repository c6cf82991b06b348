"""The importer's progress display: one rich bar per stage, silent when disabled."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)


@contextmanager
def progress_display(enabled: bool) -> Iterator[Progress]:
    """A rich progress display with one bar per stage (silent when disabled).

    The bars stay on screen after a finished import and vanish after a failed one,
    so that the error is all a failed import shows.
    """
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
    )
    with bar:
        try:
            yield bar
        except BaseException:
            bar.live.transient = True
            raise
