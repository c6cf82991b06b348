"""GX suite guarding landing ``support_tickets``, from
``ml.contract.schema.SUPPORT_TICKETS``.

One row per support ticket, when it is opened. The key is ticket_id; topic and
severity hold contract codes; opened_at is the event time.
The checks themselves are in :func:`expectations.suite_parts.landing_suite`.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from expectations.suite_parts import landing_suite
from ml.contract.schema import SUPPORT_TICKETS

if TYPE_CHECKING:
    import great_expectations as gx


def build_suite(
    run_date: date | None = None, *, required: bool = False
) -> gx.ExpectationSuite:
    """The ``landing.support_tickets`` suite for the partition of ``run_date``.

    Without ``run_date`` the event-time bound is the suite parameter
    ``max_event_time``; ``required`` adds "the partition has rows".
    """
    return landing_suite(SUPPORT_TICKETS, run_date, required=required)
