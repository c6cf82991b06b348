"""Turning GX validation results into ``ops`` rows and gate failures."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from expectations.suite_parts import ROW
from ml.data.validation.errors import GateFailure

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result, flattened for ``ops.validation_results``."""

    expectation_type: str
    column: str | None
    severity: str
    reason: str | None
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    examples: list[Any]
    observed: str | None


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _json_value(value.item())
    return str(value)


def to_json(values: list[Any]) -> str:
    """A JSON list of example values (dates as ISO strings, NaN as null)."""
    return json.dumps([_json_value(v) for v in values])


def outcome_rows(
    outcomes: list[ExpectationOutcome],
    *,
    suite_name: str,
    table: str,
    start: date,
    end: date,
) -> list[dict[str, Any]]:
    """``ops.validation_results`` rows of one suite run over partitions start..end."""
    return [
        {
            "run_date": end,
            "suite_name": suite_name,
            "table_name": table,
            "partition_date": start,
            "partition_end": end,
            "expectation_type": o.expectation_type,
            "column_name": o.column,
            "severity": o.severity,
            "reason": o.reason,
            "success": o.success,
            "element_count": o.element_count,
            "unexpected_count": o.unexpected_count,
            "unexpected_percent": o.unexpected_percent,
            "example_values": to_json(o.examples),
            "observed_value": o.observed,
        }
        for o in outcomes
    ]


def flatten(
    result: ExpectationSuiteValidationResult, example_count: int
) -> list[ExpectationOutcome]:
    """Every expectation result of a suite run, in suite order."""
    outcomes = []
    for r in result.results:
        config = r.expectation_config
        if config is None:
            continue
        kwargs = config.kwargs
        meta = config.meta or {}
        column = kwargs.get("column")
        if column is None and kwargs.get("column_list"):
            column = ",".join(kwargs["column_list"])
        details = r.result or {}
        observed: str | None = None
        if r.exception_info and r.exception_info.get("raised_exception"):
            observed = f"exception: {r.exception_info.get('exception_message')}"
        elif "observed_value" in details:
            observed = json.dumps(_json_value(details["observed_value"]))
            mismatched = (details.get("details") or {}).get("mismatched")
            if mismatched:
                observed += f"; mismatched: {json.dumps(mismatched)}"
        outcomes.append(
            ExpectationOutcome(
                expectation_type=config.type,
                column=column,
                severity=str(meta.get("severity", "schema")),
                reason=meta.get("reason"),
                success=bool(r.success),
                element_count=details.get("element_count"),
                unexpected_count=details.get("unexpected_count"),
                unexpected_percent=details.get("unexpected_percent"),
                examples=list(details.get("partial_unexpected_list") or [])[
                    :example_count
                ],
                observed=observed,
            )
        )
    return outcomes


def stop_failures(
    outcomes: list[ExpectationOutcome], table: str, partition_date: date
) -> list[GateFailure]:
    """Failed expectations whose severity stops the run, as gate failures."""
    failures = []
    for o in outcomes:
        if o.success or o.severity == ROW:
            continue
        detail = o.observed or ""
        if o.examples:
            detail += f"; examples: {', '.join(repr(v) for v in o.examples)}"
        if o.unexpected_count:
            detail = f"{o.unexpected_count} unexpected rows; {detail}"
        column = f" column {o.column!r}" if o.column else ""
        failures.append(
            GateFailure(
                table=table,
                partition_date=partition_date,
                kind="schema" if o.severity == "schema" else "data",
                expectation=o.expectation_type,
                column=o.column,
                message=f"{o.expectation_type} failed on{column}: {detail}".rstrip(
                    ": "
                ),
            )
        )
    return failures
