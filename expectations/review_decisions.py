"""GX suite guarding landing ``review_decisions`` (``REVIEW_DECISIONS_TABLE``).

Who approved, rejected or changed a decision, and why. A decision may be reviewed
again, so a row is unique by (decision_id, decided_at); new_action and note may be
null; decided_at is the event time.
The checks themselves are in :func:`expectations.suite_parts.landing_suite`.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from expectations.suite_parts import landing_suite
from ml.contract.schema import REVIEW_DECISIONS_TABLE

if TYPE_CHECKING:
    import great_expectations as gx


def build_suite(
    run_date: date | None = None, *, required: bool = False
) -> gx.ExpectationSuite:
    """The ``landing.review_decisions`` suite for the partition of ``run_date``.

    Without ``run_date`` the event-time bound is the suite parameter
    ``max_event_time``; ``required`` adds "the partition has rows".
    """
    return landing_suite(REVIEW_DECISIONS_TABLE, run_date, required=required)
