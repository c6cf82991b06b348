"""What a gate call returns: typed counts per table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

# TableReport.status
LOADED = "loaded"  # good rows replaced the raw partitions
ABSENT = "absent"  # no partition in landing: nothing read, raw untouched
FAILED = "failed"  # this table stopped the gate
NOT_LOADED = "not_loaded"  # passed, but another table stopped the gate


@dataclass(frozen=True)
class TableReport:
    """One landing table over the validated partitions."""

    table: str
    status: str
    partitions: int
    files: int
    rows_read: int
    rows_loaded: int
    quarantined: dict[str, int] = field(default_factory=dict)  # reason -> rows
    expectations_evaluated: int = 0
    expectations_failed: int = 0

    @property
    def rows_quarantined(self) -> int:
        """Rows set aside, whatever the reason."""
        return sum(self.quarantined.values())

    def as_counts(self) -> dict[str, Any]:
        """Small JSON-friendly facts (for ``ops.runs`` and XCom)."""
        return {
            "status": self.status,
            "partitions": self.partitions,
            "files": self.files,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "quarantined": dict(self.quarantined),
            "expectations_failed": self.expectations_failed,
        }


@dataclass(frozen=True)
class LandingReport:
    """The landing gate for the partitions ``start``..``end`` (one day: equal)."""

    start: date
    end: date
    tables: dict[str, TableReport]
    passed: bool
    seconds: float = 0.0

    @property
    def run_date(self) -> date:
        """The (last) run date validated."""
        return self.end

    @property
    def rows_read(self) -> int:
        return sum(t.rows_read for t in self.tables.values())

    @property
    def rows_loaded(self) -> int:
        return sum(t.rows_loaded for t in self.tables.values())

    @property
    def rows_quarantined(self) -> int:
        return sum(t.rows_quarantined for t in self.tables.values())

    def as_counts(self) -> dict[str, Any]:
        """Small JSON-friendly facts (for ``ops.runs`` and XCom)."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "passed": self.passed,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "seconds": round(self.seconds, 2),
            "tables": {name: t.as_counts() for name, t in self.tables.items()},
        }


@dataclass(frozen=True)
class MartReport:
    """The feature-mart gate for one as_of_date."""

    run_date: date
    rows: int
    previous_rows: int
    expectations_evaluated: int
    expectations_failed: int
    passed: bool
    seconds: float = 0.0

    def as_counts(self) -> dict[str, Any]:
        """Small JSON-friendly facts (for ``ops.runs`` and XCom)."""
        return {
            "run_date": self.run_date.isoformat(),
            "rows": self.rows,
            "previous_rows": self.previous_rows,
            "expectations_evaluated": self.expectations_evaluated,
            "expectations_failed": self.expectations_failed,
            "passed": self.passed,
            "seconds": round(self.seconds, 2),
        }
