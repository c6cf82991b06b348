"""Every suite passes a good frame and fails a bad one, on in-memory frames."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from expectations import customer_features, landing_suite_builder
from expectations.suite_parts import (
    DUPLICATE_KEY,
    FUTURE_EVENT_TIME,
    NEGATIVE_AMOUNT,
    NULL_KEY,
    NULL_REQUIRED,
    ROW,
    SCHEMA,
    VALUE_NOT_ALLOWED,
    load_gx,
    suite_parameters,
    unique_key,
)
from ml.contract.schema import TABLES
from tests.integration.gates.gate_fixtures import BUILDERS, DAY, at, features, table

Validate = Callable[..., Any]


@pytest.fixture(scope="module")
def validate() -> Iterator[Validate]:
    """Validate a frame with a suite in an in-memory GX context."""
    gx = load_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("frames")
    names = itertools.count()

    def run(suite: Any, frame: pd.DataFrame, parameters: dict | None = None) -> Any:
        asset = source.add_dataframe_asset(f"frame_{next(names)}")
        batch = asset.add_batch_definition_whole_dataframe("whole").get_batch(
            batch_parameters={"dataframe": frame}
        )
        return batch.validate(
            suite, result_format="SUMMARY", expectation_parameters=parameters
        )

    yield run


def failed(result: Any) -> set[tuple[str, str | None, str, str | None]]:
    """(expectation, column, severity, reason) of every failed expectation."""
    out = set()
    for r in result.results:
        if not r.success:
            config = r.expectation_config
            out.add(
                (
                    config.type,
                    config.kwargs.get("column"),
                    config.meta.get("severity"),
                    config.meta.get("reason"),
                )
            )
    return out


def landing_frame(name: str) -> pd.DataFrame:
    return table(name, BUILDERS[name](DAY)).to_pandas()


@pytest.mark.parametrize("name", list(TABLES))
def test_landing_suite_passes_a_good_partition(validate: Validate, name: str) -> None:
    suite = landing_suite_builder(name)(DAY, required=True)
    assert all("severity" in e.meta for e in suite.expectations)
    result = validate(suite, landing_frame(name))
    assert result.success, failed(result)


@pytest.mark.parametrize("name", list(TABLES))
def test_landing_suite_flags_schema_and_row_faults(
    validate: Validate, name: str
) -> None:
    contract = TABLES[name]
    frame = landing_frame(name)
    key = contract.key[0]
    identity = list(unique_key(contract))
    frame.loc[0, key] = None  # null key
    frame.loc[1, identity] = frame.loc[2, identity].to_numpy()
    coded = next(iter(contract.allowed_values), None)
    if coded:
        frame.loc[2, coded] = "no-such-code"
    plain = [c for c in contract.columns if c not in identity and c != coded]
    renamed = frame.rename(columns={plain[-1]: "renamed"})

    result = validate(landing_suite_builder(name)(DAY), renamed)
    problems = failed(result)
    assert ("expect_table_columns_to_match_set", None, SCHEMA, None) in problems
    assert ("expect_column_values_to_not_be_null", key, ROW, NULL_KEY) in problems
    assert any(p[3] == DUPLICATE_KEY for p in problems)
    if coded:
        assert ("expect_column_values_to_be_in_set", coded, ROW, VALUE_NOT_ALLOWED) in (
            problems
        )


def test_landing_suite_flags_types_empty_partitions_and_nulls(
    validate: Validate,
) -> None:
    frame = landing_frame("transactions")
    frame["amount"] = frame["amount"].astype(str)
    frame.loc[0, "category"] = None
    problems = failed(validate(landing_suite_builder("transactions")(DAY), frame))
    assert ("expect_column_values_to_be_of_type", "amount", SCHEMA, None) in problems
    assert (
        "expect_column_values_to_not_be_null",
        "category",
        ROW,
        NULL_REQUIRED,
    ) in problems

    empty = landing_frame("transactions").iloc[0:0]
    problems = failed(
        validate(landing_suite_builder("transactions")(DAY, required=True), empty)
    )
    assert ("expect_table_row_count_to_be_between", None, SCHEMA, None) in problems


def test_transactions_suite_flags_negative_amounts_and_late_events(
    validate: Validate,
) -> None:
    frame = landing_frame("transactions")
    frame.loc[0, "amount"] = -1.0
    frame.loc[1, "transaction_at"] = at(DAY + timedelta(days=1), 0, 0)
    problems = failed(validate(landing_suite_builder("transactions")(DAY), frame))
    assert ("expect_column_values_to_be_between", "amount", ROW, NEGATIVE_AMOUNT) in (
        problems
    )
    late = ("expect_column_values_to_be_between", "transaction_at", ROW)
    assert (*late, FUTURE_EVENT_TIME) in problems

    # the stored form of the suite takes the bound as a parameter
    frame.loc[0, "amount"] = 1.0
    suite = landing_suite_builder("transactions")()
    assert not validate(suite, frame, suite_parameters(DAY)).success
    later = suite_parameters(DAY + timedelta(days=1))
    assert validate(suite, frame, later).success
    frame.loc[1, "transaction_at"] = datetime.combine(DAY, datetime.max.time())
    assert validate(suite, frame, suite_parameters(DAY)).success


def feature_frame(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame(features(DAY, n))


def test_feature_suite_passes_a_good_snapshot(validate: Validate) -> None:
    suite = customer_features.build_suite(previous_row_count=9)
    frame = feature_frame()
    frame["a_newer_feature"] = 1.0  # the mart may grow
    result = validate(suite, frame)
    assert result.success, failed(result)
    # no yesterday: no volume check
    no_volume = customer_features.build_suite(previous_row_count=None)
    assert validate(no_volume, feature_frame(2)).success


FEATURE_FAULTS = {
    "recency_days": -1,
    "tenure_days": -3,
    "tx_count_30d": -1,
    "spend_90d": -0.01,
    "discount_share_90d": 1.2,
    "customer_id": None,
    "gap_mean_days": None,
    "plan": "gold",
}


def test_feature_suite_flags_nulls_ranges_and_codes(validate: Validate) -> None:
    frame = feature_frame(len(FEATURE_FAULTS) + 2)
    for row, (column, value) in enumerate(FEATURE_FAULTS.items()):
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
    problems = failed(validate(customer_features.build_suite(), frame))
    assert {p[1] for p in problems} == set(FEATURE_FAULTS)
    assert {p[2] for p in problems} == {"data"}

    problems = failed(
        validate(customer_features.build_suite(), frame.drop(columns=["tickets_90d"]))
    )
    assert ("expect_table_columns_to_match_set", None, "schema", None) in problems


def test_feature_suite_flags_duplicate_keys_and_volume(validate: Validate) -> None:
    suite = customer_features.build_suite(previous_row_count=30, volume_tolerance=0.5)
    frame = feature_frame(10)
    frame.loc[1, "customer_id"] = frame.loc[0, "customer_id"]
    problems = failed(validate(suite, frame))
    assert {p[0] for p in problems} == {
        "expect_compound_columns_to_be_unique",
        "expect_table_row_count_to_be_between",
    }
    assert validate(suite, feature_frame(15)).success  # 30 * (1 - 0.5)
    assert customer_features.volume_bounds(30, 0.5) == (15, 45)


def test_the_volume_check_by_parameter_gives_the_same_verdicts(
    validate: Validate,
) -> None:
    suite = customer_features.build_suite(volume_by_parameter=True)
    # the same suite whatever yesterday's count: it is stored once
    again = customer_features.build_suite(volume_by_parameter=True)
    assert [e.configuration for e in suite.expectations] == [
        e.configuration for e in again.expectations
    ]
    bounds = customer_features.volume_parameters(30, 0.5)
    assert bounds == {
        customer_features.VOLUME_MIN: 15,
        customer_features.VOLUME_MAX: 45,
    }
    problems = failed(validate(suite, feature_frame(10), bounds))
    assert {p[0] for p in problems} == {"expect_table_row_count_to_be_between"}
    assert validate(suite, feature_frame(15), bounds).success
