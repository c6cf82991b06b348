"""What an import reports: :class:`ImportSummary`, and :class:`ImportInputError`.

The summary counts what one import read, wrote and rejected, and prints itself as
the short report the ``loopline import transactions`` command shows. The error
says why an input file cannot be imported as asked; every part of the importer
raises it, so it lives here, below them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path


class ImportInputError(ValueError):
    """The input file cannot be imported as asked (a missing column, a bad format)."""


@dataclass(frozen=True)
class ImportSummary:
    """What one import read, wrote and rejected.

    ``rows_read`` = ``rows_written`` + ``rejected`` (transaction rows); ``customers``
    counts the distinct customers of the written rows and ``customer_rows_written``
    the rows written to ``landing/customers`` (new customers and customers-file
    rows).
    """

    source: Path
    rows_read: int
    rows_written: int
    rejected: int
    days: int
    customers: int
    customer_rows_written: int
    first_day: date | None
    last_day: date | None
    rejected_path: Path | None = None
    customers_rejected: int = 0
    customers_rejected_path: Path | None = None
    empty_days: int = 0
    read_as: str | None = None  # how a text file was read (delimiter, encoding)

    def describe(self) -> str:
        """A short human-readable report."""
        span = (
            f"{self.first_day} .. {self.last_day}"
            if self.first_day is not None
            else "no days"
        )
        lines = [
            f"imported {self.source.name}",
            f"  rows read          {self.rows_read:>12,}",
            f"  rows written       {self.rows_written:>12,}",
            f"  rows rejected      {self.rejected:>12,}",
            f"  days               {self.days:>12,}  ({span})",
            f"  customers          {self.customers:>12,}",
            f"  customer rows      {self.customer_rows_written:>12,}",
            f"  days without sales {self.empty_days:>12,}  (declared empty)",
        ]
        if self.read_as is not None:
            lines.insert(1, f"  read with {self.read_as}")
        if self.rejected_path is not None:
            lines.append(f"  rejected rows are in {self.rejected_path}")
        if self.customers_rejected:
            lines.append(
                f"  customers file rows rejected: {self.customers_rejected:,}"
                f" (see {self.customers_rejected_path})"
            )
        return "\n".join(lines)

    def __rich__(self) -> str:
        return self.describe()
