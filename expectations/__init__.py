"""Great Expectations suites as code, one module per table they guard.

Landing suites: ``customers``, ``transactions``, ``support_tickets``,
``action_results``, ``review_decisions``; the feature mart: ``customer_features``.
Each module exposes ``build_suite(...) -> gx.ExpectationSuite``. Importing a module
does not import Great Expectations; building a suite does.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import great_expectations as gx

LandingSuiteBuilder = Callable[..., "gx.ExpectationSuite"]


def landing_suite_builder(table: str) -> LandingSuiteBuilder:
    """The ``build_suite(run_date, *, required)`` of a landing table's module."""
    module = import_module(f"expectations.{table}")
    return cast(LandingSuiteBuilder, module.build_suite)
