"""The message of a failed dbt build names each failed node and its cause."""

from __future__ import annotations

from datetime import date

import pytest

from ml.data.dbt import NodeResult, _failure_message

pytestmark = pytest.mark.unit


def _node(name: str, resource_type: str, status: str, message: str) -> NodeResult:
    return NodeResult(
        unique_id=f"{resource_type}.loopline.{name}",
        name=name,
        resource_type=resource_type,
        status=status,
        execution_time=1.0,
        message=message,
        failures=None,
    )


def test_a_runtime_error_names_its_cause_not_only_its_node() -> None:
    # the message dbt-duckdb gave a bulk build whose spill filled the disk
    node = _node(
        "customer_features",
        "model",
        "error",
        "Runtime Error in model customer_features "
        "(models/marts/customer_features.sql)\n"
        '  IO Error: Could not write file "/w.duckdb.tmp/duckdb_temp_1.tmp": '
        "No space left on device",
    )
    text = _failure_message(date(2025, 5, 29), date(2025, 8, 13), (node,), None)
    assert text.splitlines() == [
        "dbt build failed for 2025-05-29..2025-08-13",
        "  model customer_features: error: IO Error: Could not write file "
        '"/w.duckdb.tmp/duckdb_temp_1.tmp": No space left on device',
    ]


def test_a_failed_data_test_keeps_its_one_line() -> None:
    node = _node(
        "unique_fct_transactions_transaction_id",
        "test",
        "fail",
        "Got 1 result, configured to fail if != 0",
    )
    text = _failure_message(date(2025, 1, 1), date(2025, 1, 1), (node,), None)
    assert text.splitlines()[1] == (
        "  test unique_fct_transactions_transaction_id: fail: "
        "Got 1 result, configured to fail if != 0"
    )
