"""GX suite guarding landing ``customers`` (contract ``ml.contract.schema.CUSTOMERS``).

One row per customer and attribute change. The key is (customer_id, updated_at);
plan, region and acquisition_channel hold contract codes; updated_at is the event time.
The checks themselves are in :func:`expectations.suite_parts.landing_suite`.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from expectations.suite_parts import landing_suite
from ml.contract.schema import CUSTOMERS

if TYPE_CHECKING:
    import great_expectations as gx


def build_suite(
    run_date: date | None = None, *, required: bool = False
) -> gx.ExpectationSuite:
    """The ``landing.customers`` suite for the partition of ``run_date``.

    Without ``run_date`` the event-time bound is the suite parameter
    ``max_event_time``; ``required`` adds "the partition has rows".
    """
    return landing_suite(CUSTOMERS, run_date, required=required)
