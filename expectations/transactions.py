"""GX suite guarding landing ``transactions`` (contract
``ml.contract.schema.TRANSACTIONS``).

One row per purchase. The key is transaction_id; category holds contract codes;
transaction_at is the event time. Beyond the shared landing checks
(:func:`expectations.suite_parts.landing_suite`) an amount is never negative and,
when ``max_amount`` is given, never above it (``inf`` included); the learned
plausible range is applied by the gate's row rules (``ml.data.validation.amounts``).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from expectations.suite_parts import (
    IMPLAUSIBLE_AMOUNT,
    NEGATIVE_AMOUNT,
    landing_suite,
    load_gx,
    row_meta,
)
from ml.contract.schema import TRANSACTIONS

if TYPE_CHECKING:
    import great_expectations as gx


def build_suite(
    run_date: date | None = None,
    *,
    required: bool = False,
    max_amount: float | None = None,
) -> gx.ExpectationSuite:
    """The ``landing.transactions`` suite for the partition of ``run_date``.

    Without ``run_date`` the event-time bound is the suite parameter
    ``max_event_time``; ``required`` adds "the partition has rows";
    ``max_amount`` adds "no amount above the hard cap".
    """
    gxe = load_gx().expectations
    extra = [
        gxe.ExpectColumnValuesToBeBetween(
            column="amount", min_value=0, meta=row_meta(NEGATIVE_AMOUNT)
        )
    ]
    if max_amount is not None:
        extra.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="amount",
                max_value=max_amount,
                meta=row_meta(IMPLAUSIBLE_AMOUNT),
            )
        )
    return landing_suite(TRANSACTIONS, run_date, required=required, extra=extra)
