"""GX suite guarding the feature mart ``marts.customer_features`` for one as_of_date.

One row per (customer_id, as_of_date). Every expectation stops the run when it fails:
the required feature columns are present (``schema``), the snapshot has rows and its
size is within a tolerance of yesterday's, the key is unique, required features are
not null, counts, amounts and ages are not negative, the discount share is a
fraction, and the coded attributes hold contract values (``data``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from expectations.suite_parts import DATA, load_gx, schema_meta
from ml.contract.schema import ACQUISITION_CHANNELS, PLANS, REGIONS

if TYPE_CHECKING:
    import great_expectations as gx
    from great_expectations.expectations import Expectation

SUITE_NAME = "marts.customer_features"
KEY = ("customer_id", "as_of_date")
FEATURE_COLUMNS = (
    "customer_id",
    "as_of_date",
    "plan",
    "region",
    "acquisition_channel",
    "tenure_days",
    "recency_days",
    "tx_count_7d",
    "tx_count_30d",
    "tx_count_90d",
    "tx_count_180d",
    "spend_7d",
    "spend_30d",
    "spend_90d",
    "spend_180d",
    "avg_basket_90d",
    "freq_trend_30d",
    "spend_trend_30d",
    "gap_mean_days",
    "gap_std_days",
    "category_count_90d",
    "discount_share_90d",
    "tickets_30d",
    "tickets_90d",
    "complaint_tickets_90d",
    "contacts_90d",
    "days_since_last_contact",
)
DEFAULT_NULLABLE = ("days_since_last_contact",)
# Ages, counts and money: none of them can be negative.
NON_NEGATIVE = (
    "tenure_days",
    "recency_days",
    "tx_count_7d",
    "tx_count_30d",
    "tx_count_90d",
    "tx_count_180d",
    "spend_7d",
    "spend_30d",
    "spend_90d",
    "spend_180d",
    "avg_basket_90d",
    "gap_mean_days",
    "gap_std_days",
    "category_count_90d",
    "tickets_30d",
    "tickets_90d",
    "complaint_tickets_90d",
    "contacts_90d",
    "days_since_last_contact",
)
FRACTIONS = ("discount_share_90d",)
CODED = {
    "plan": PLANS,
    "region": REGIONS,
    "acquisition_channel": ACQUISITION_CHANNELS,
}


# Suite parameters of the volume check (see build_suite's volume_by_parameter).
VOLUME_MIN = "volume_min_rows"
VOLUME_MAX = "volume_max_rows"


def _data_meta() -> dict[str, Any]:
    return {"severity": DATA}


def volume_bounds(previous_row_count: int, tolerance: float) -> tuple[int, int]:
    """The row-count range allowed today when yesterday had ``previous_row_count``."""
    low = max(0, math.floor(previous_row_count * (1 - tolerance)))
    high = math.ceil(previous_row_count * (1 + tolerance))
    return low, high


def volume_parameters(previous_row_count: int, tolerance: float) -> dict[str, int]:
    """The suite parameters of the volume check for yesterday's row count."""
    low, high = volume_bounds(previous_row_count, tolerance)
    return {VOLUME_MIN: low, VOLUME_MAX: high}


def build_suite(
    *,
    previous_row_count: int | None = None,
    volume_tolerance: float = 0.5,
    nullable: Sequence[str] = DEFAULT_NULLABLE,
    volume_by_parameter: bool = False,
) -> gx.ExpectationSuite:
    """The ``marts.customer_features`` suite for one snapshot.

    ``previous_row_count`` is yesterday's snapshot size; when it is ``None`` or 0
    (no yesterday) the volume check is left out. ``volume_tolerance`` is the allowed
    relative change (0.5: within ±50 %). ``nullable`` lists the features that may
    be null. With ``volume_by_parameter`` the volume check's bounds are the suite
    parameters :data:`VOLUME_MIN` and :data:`VOLUME_MAX`, given at run time
    (:func:`volume_parameters`): the suite is then the same every night, so it is
    stored once, not again each night for a new row count.
    """
    gx = load_gx()
    gxe = gx.expectations
    checks: list[Expectation] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=list(FEATURE_COLUMNS), exact_match=False, meta=schema_meta()
        ),
        gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=_data_meta()),
    ]
    if volume_by_parameter:
        checks.append(
            gxe.ExpectTableRowCountToBeBetween(
                min_value={"$PARAMETER": VOLUME_MIN},
                max_value={"$PARAMETER": VOLUME_MAX},
                meta={
                    **_data_meta(),
                    "bounds": "yesterday's row count within the volume tolerance",
                },
            )
        )
    elif previous_row_count:
        low, high = volume_bounds(previous_row_count, volume_tolerance)
        checks.append(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=low,
                max_value=high,
                meta={**_data_meta(), "previous_row_count": previous_row_count},
            )
        )
    checks.append(
        gxe.ExpectCompoundColumnsToBeUnique(column_list=list(KEY), meta=_data_meta())
    )
    checks += [
        gxe.ExpectColumnValuesToNotBeNull(column=column, meta=_data_meta())
        for column in FEATURE_COLUMNS
        if column not in nullable
    ]
    checks += [
        gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, meta=_data_meta())
        for column in NON_NEGATIVE
    ]
    checks += [
        gxe.ExpectColumnValuesToBeBetween(
            column=column, min_value=0, max_value=1, meta=_data_meta()
        )
        for column in FRACTIONS
    ]
    checks += [
        gxe.ExpectColumnValuesToBeInSet(
            column=column, value_set=list(allowed), meta=_data_meta()
        )
        for column, allowed in CODED.items()
    ]
    return gx.ExpectationSuite(
        name=SUITE_NAME,
        expectations=checks,
        meta={"table": "customer_features", "grain": "one row per customer and day"},
    )
