"""Gate failures: a gate never returns ``success=False`` quietly, it raises."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ml.data.validation.gate_reports import LandingReport, MartReport


@dataclass(frozen=True)
class GateFailure:
    """One reason a gate stopped: which table and partition, which check, why."""

    table: str
    partition_date: date
    kind: str  # schema | missing_partition | empty_partition | bad_rows | data
    expectation: str
    column: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.table} dt={self.partition_date.isoformat()}: {self.message}"


class GateError(RuntimeError):
    """A data gate stopped the run; nothing past the gate may run on this data."""

    def __init__(self, failures: list[GateFailure], headline: str) -> None:
        self.failures = failures
        lines = [headline, *(f"  {f}" for f in failures)]
        super().__init__("\n".join(lines) if len(failures) != 1 else str(failures[0]))


class ValidationGateError(GateError):
    """The landing gate failed: a schema fault, a missing or empty required
    partition, or too many bad rows. Nothing of the run date was loaded."""

    def __init__(
        self, failures: list[GateFailure], report: LandingReport | None = None
    ) -> None:
        self.report = report
        super().__init__(failures, f"landing gate failed ({len(failures)} faults):")


class MartValidationError(GateError):
    """The feature-mart gate failed for the run date's snapshot."""

    def __init__(
        self, failures: list[GateFailure], report: MartReport | None = None
    ) -> None:
        self.report = report
        super().__init__(
            failures, f"feature mart gate failed ({len(failures)} faults):"
        )
