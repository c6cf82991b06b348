"""A failed data gate in a few lines, however many partitions failed.

A history rebuild gates a whole date range at once, and one fault repeated on every
day used to print a paragraph per partition. :func:`summarize` groups the faults by
table and reason and says, for each group, how many partitions failed, the first
and last of them, and the first fault's message (with its example values). Every
fault, with its partition and message, is in ``ops.validation_results`` (the
landing gate writes them with suite ``landing.<table>.gate``, beside every
expectation result and row-rule count), which the summary points at.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ml.data.validation.errors import GateError, GateFailure

EXAMPLE_CHARS = 240
MAX_GROUPS = 6
FULL_LIST_QUERY = (
    "select partition_date, table_name, observed_value from ops.validation_results "
    "where suite_name like 'landing.%.gate' order by partition_date"
)


def _clipped(text: str, limit: int = EXAMPLE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _reason(failure: GateFailure) -> str:
    if failure.kind == "bad_rows":  # the row checks' reasons are counted below
        return f"too many bad rows ({failure.expectation})"
    column = f" on {failure.column}" if failure.column else ""
    return f"{failure.kind}: {failure.expectation}{column}"


def _span(failures: list[GateFailure]) -> str:
    days = sorted({f.partition_date for f in failures})
    if len(days) == 1:
        return f"1 partition (dt={days[0]})"
    return f"{len(days)} partitions, dt={days[0]} … dt={days[-1]}"


def summarize(error: GateError) -> list[str]:
    """A headline, then per table and reason: partitions, first and last, and the
    first fault's message; then where the full list is. Indented lines belong to
    the line above them."""
    failures = error.failures
    if not failures:
        return [str(error)]
    from ml.data.validation.errors import MartValidationError

    mart = isinstance(error, MartValidationError)
    gate = "feature mart gate" if mart else "landing gate"
    tables = sorted({f.table for f in failures})
    lines = [
        f"{gate} failed: {len(failures)} fault{'s' if len(failures) != 1 else ''} "
        f"in {len(tables)} table{'s' if len(tables) != 1 else ''} "
        f"({', '.join(tables)}), {_span(failures)}"
        + ("" if mart else "; nothing was loaded")
    ]
    groups: dict[tuple[str, str], list[GateFailure]] = defaultdict(list)
    for failure in failures:
        groups[(failure.table, _reason(failure))].append(failure)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    for (table, reason), members in ordered[:MAX_GROUPS]:
        first = min(members, key=lambda f: f.partition_date)
        lines.append(f"  {table} {reason}: {_span(members)}")
        lines.append(f"    e.g. dt={first.partition_date}: {_clipped(first.message)}")
    if len(ordered) > MAX_GROUPS:
        rest = ordered[MAX_GROUPS:]
        count = sum(len(m) for _, m in rest)
        lines.append(f"  and {count} faults of {len(rest)} other kinds")
    report = getattr(error, "report", None)
    quarantined = {
        name: t.quarantined
        for name, t in (getattr(report, "tables", None) or {}).items()
        if t.quarantined
    }
    for name, reasons in sorted(quarantined.items()):
        counts = ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items()))
        lines.append(f"  {name} rows failing row checks, by reason: {counts}")
    if mart:
        lines.append(
            "  every expectation result: ops.validation_results "
            "(suite_name like 'marts.%')"
        )
    else:
        lines.append(
            "  every fault: ops.validation_results, e.g. "
            f'loopline sql --live "{FULL_LIST_QUERY}"'
        )
    return lines
