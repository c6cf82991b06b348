"""Features at d use only what was known on d; labels only (d, d + H]."""

from __future__ import annotations

from datetime import timedelta

from tests.integration.dbt.conftest import (
    HORIZON_DAYS,
    LEAKAGE_DAY,
    BuiltWorld,
    read_rows,
)

ON_OR_BEFORE = f"as_of_date <= date '{LEAKAGE_DAY.isoformat()}'"


def test_later_rows_do_not_change_features_known_on_d(
    bulk: BuiltWorld, perturbed: BuiltWorld
) -> None:
    before = read_rows(bulk.settings, "customer_features", ON_OR_BEFORE)
    assert before
    assert read_rows(perturbed.settings, "customer_features", ON_OR_BEFORE) == before


def test_the_later_rows_do_change_later_features(
    bulk: BuiltWorld, perturbed: BuiltWorld
) -> None:
    # guards the test above: the perturbation is real and reaches d + 3
    later = f"as_of_date = date '{(LEAKAGE_DAY + timedelta(days=3)).isoformat()}'"
    assert read_rows(perturbed.settings, "customer_features", later) != read_rows(
        bulk.settings, "customer_features", later
    )


def test_labels_use_only_the_horizon(bulk: BuiltWorld, perturbed: BuiltWorld) -> None:
    # labels of as_of_date <= d - H see (as_of_date, d]: nothing after d counts
    settled = f"as_of_date <= date '{LEAKAGE_DAY.isoformat()}' - {HORIZON_DAYS}"
    before = read_rows(bulk.settings, "churn_labels", settled)
    assert before
    assert read_rows(perturbed.settings, "churn_labels", settled) == before
    # the next label date sees d + 1, where every perturbed customer bought
    next_day = f"as_of_date = date '{LEAKAGE_DAY.isoformat()}' - {HORIZON_DAYS} + 1"
    assert read_rows(perturbed.settings, "churn_labels", next_day) != read_rows(
        bulk.settings, "churn_labels", next_day
    )


def test_late_purchases_stay_out_of_earlier_partitions(
    bulk: BuiltWorld, perturbed: BuiltWorld
) -> None:
    arrived = f"partition_date <= date '{LEAKAGE_DAY.isoformat()}'"
    assert read_rows(perturbed.settings, "fct_transactions", arrived) == read_rows(
        bulk.settings, "fct_transactions", arrived
    )
