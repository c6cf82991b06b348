"""GX suite guarding landing ``action_results``, from
``ml.contract.schema.ACTION_RESULTS``.

What a channel system did with each exported decision. The key is decision_id;
action, channel and status hold contract codes; result_at is the event time.
The checks themselves are in :func:`expectations.suite_parts.landing_suite`.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from expectations.suite_parts import landing_suite
from ml.contract.schema import ACTION_RESULTS

if TYPE_CHECKING:
    import great_expectations as gx


def build_suite(
    run_date: date | None = None, *, required: bool = False
) -> gx.ExpectationSuite:
    """The ``landing.action_results`` suite for the partition of ``run_date``.

    Without ``run_date`` the event-time bound is the suite parameter
    ``max_event_time``; ``required`` adds "the partition has rows".
    """
    return landing_suite(ACTION_RESULTS, run_date, required=required)
