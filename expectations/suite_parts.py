"""What the suites share: severities, quarantine reasons, and the landing builder.

Every expectation carries ``meta["severity"]``:

- ``"schema"``: the table's shape (column set, column types, a required partition
  with rows). Any failure stops the run.
- ``"row"``: a fault of single rows. Those rows go to quarantine with
  ``meta["reason"]``; the run stops only when too many rows are bad.
- ``"data"``: a check on a whole derived table (the feature mart). Any failure stops
  the run.

Great Expectations is imported inside the functions, so importing a suite module is
cheap; :func:`load_gx` quiets its loggers before the import.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import date, datetime, time
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ml.contract.schema import TableContract

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.expectations import Expectation

# Suite parameter of the landing suites: the last allowed event time.
MAX_EVENT_TIME = "max_event_time"

SCHEMA = "schema"
ROW = "row"
DATA = "data"

# Quarantine reasons, in the order they are assigned (a row gets the first that fits).
NULL_KEY = "null_key"
NULL_REQUIRED = "null_required"
VALUE_NOT_ALLOWED = "value_not_allowed"
# review_decisions: a change without new_action, or new_action on another decision
INVALID_NEW_ACTION = "invalid_new_action"
NEGATIVE_AMOUNT = "negative_amount"
NON_FINITE_AMOUNT = "non_finite_amount"
IMPLAUSIBLE_AMOUNT = "implausible_amount"
FUTURE_EVENT_TIME = "future_event_time"
UNKNOWN_CUSTOMER = "unknown_customer"
# feedback rows (action_results, review_decisions) whose decision_id names no
# decision we exported / queued before the row's day, or another customer's
UNKNOWN_DECISION = "unknown_decision"
CUSTOMER_MISMATCH = "customer_mismatch"
DUPLICATE_KEY = "duplicate_key"
REASONS = (
    NULL_KEY,
    NON_FINITE_AMOUNT,
    NULL_REQUIRED,
    VALUE_NOT_ALLOWED,
    INVALID_NEW_ACTION,
    NEGATIVE_AMOUNT,
    IMPLAUSIBLE_AMOUNT,
    FUTURE_EVENT_TIME,
    UNKNOWN_CUSTOMER,
    UNKNOWN_DECISION,
    CUSTOMER_MISMATCH,
    DUPLICATE_KEY,
)

# The pandas type GX sees for each contract type, after ``pa.Table.to_pandas()``.
_PANDAS_TYPES = {
    pa.string(): "str",
    pa.date32(): "date",
    pa.timestamp("us"): "datetime64",
    pa.float64(): "float64",
    pa.bool_(): "bool",
    pa.int64(): "int64",
}

# review_decisions: a decision may be reviewed again later ("the latest decided_at
# wins"), so a row is unique by decision and decision time, not by decision alone.
_UNIQUE_KEYS: dict[str, tuple[str, ...]] = {
    "review_decisions": ("decision_id", "decided_at"),
}


def load_gx() -> ModuleType:
    """Import ``great_expectations`` with its chatty loggers set to WARNING."""
    first_import = "great_expectations" not in sys.modules
    _quiet_gx_loggers(children=False)
    import great_expectations

    if first_import:
        _quiet_gx_loggers(children=True)
    return great_expectations


def _quiet_gx_loggers(*, children: bool) -> None:
    """Set the ``great_expectations`` loggers to WARNING (they log a lot at INFO).

    ``setLevel`` clears every logger's cache, so it is called only when needed.
    """
    names = ["great_expectations"]
    if children:
        names += [n for n in logging.root.manager.loggerDict if n.startswith(names[0])]
    for name in names:
        logger = logging.getLogger(name)
        # children left at NOTSET inherit WARNING from the package logger
        inherits = name != names[0] and logger.level == logging.NOTSET
        if not inherits and logger.level != logging.WARNING:
            logger.setLevel(logging.WARNING)


def pandas_type(arrow_type: pa.DataType) -> str:
    """The ``type_`` of ``expect_column_values_to_be_of_type`` for a contract type."""
    return _PANDAS_TYPES[arrow_type]


def unique_key(contract: TableContract) -> tuple[str, ...]:
    """The columns that identify one row of a landing table."""
    return _UNIQUE_KEYS.get(contract.name, contract.key)


def end_of_day(day: date) -> datetime:
    """The last representable instant (microseconds) of ``day``."""
    return datetime.combine(day, time.max)


def max_event_time(run_date: date | None) -> Any:
    """The event-time bound: the end of ``run_date``, or the suite parameter."""
    if run_date is None:
        return {"$PARAMETER": MAX_EVENT_TIME}
    return end_of_day(run_date)


def suite_parameters(run_date: date) -> dict[str, Any]:
    """Values of the landing suites' parameters for a run date."""
    return {MAX_EVENT_TIME: end_of_day(run_date)}


def schema_meta() -> dict[str, Any]:
    """Meta of an expectation whose failure stops the run."""
    return {"severity": SCHEMA}


def row_meta(reason: str) -> dict[str, Any]:
    """Meta of an expectation whose failing rows go to quarantine with ``reason``."""
    return {"severity": ROW, "reason": reason}


def landing_suite(
    contract: TableContract,
    run_date: date | None = None,
    *,
    required: bool = False,
    extra: Sequence[Expectation] = (),
) -> gx.ExpectationSuite:
    """The expectations every landing table shares, built from its contract.

    Schema: the column set matches the contract exactly, every column has its
    contract type, and (``required``) the partition has rows. Rows: keys and required
    columns are not null, the key is unique, coded columns hold allowed values, and
    the event time is not after the end of the run date. Without ``run_date`` that
    bound is the suite parameter ``max_event_time``, so one stored suite serves every
    day (see :func:`suite_parameters`). ``extra`` adds table-specific expectations.
    """
    gx = load_gx()
    gxe = gx.expectations
    checks: list[Expectation] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=contract.columns, exact_match=True, meta=schema_meta()
        )
    ]
    checks += [
        gxe.ExpectColumnValuesToBeOfType(
            column=field.name, type_=pandas_type(field.type), meta=schema_meta()
        )
        for field in contract.schema
    ]
    if required:
        checks.append(
            gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=schema_meta())
        )
    checks += [
        gxe.ExpectColumnValuesToNotBeNull(column=column, meta=row_meta(NULL_KEY))
        for column in contract.key
    ]
    checks += [
        gxe.ExpectColumnValuesToNotBeNull(column=column, meta=row_meta(NULL_REQUIRED))
        for column in contract.columns
        if column not in contract.key and column not in contract.nullable
    ]
    key = unique_key(contract)
    if len(key) == 1:
        checks.append(
            gxe.ExpectColumnValuesToBeUnique(
                column=key[0], meta=row_meta(DUPLICATE_KEY)
            )
        )
    else:
        checks.append(
            gxe.ExpectCompoundColumnsToBeUnique(
                column_list=list(key), meta=row_meta(DUPLICATE_KEY)
            )
        )
    checks += [
        gxe.ExpectColumnValuesToBeInSet(
            column=column,
            value_set=[v for v in allowed if v is not None],
            meta=row_meta(VALUE_NOT_ALLOWED),
        )
        for column, allowed in contract.allowed_values.items()
    ]
    if contract.event_time is not None:
        checks.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=contract.event_time,
                max_value=max_event_time(run_date),
                meta=row_meta(FUTURE_EVENT_TIME),
            )
        )
    checks += extra
    return gx.ExpectationSuite(
        name=f"landing.{contract.name}",
        expectations=checks,
        meta={"table": contract.name, "grain": contract.grain},
    )
