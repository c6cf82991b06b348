"""validate_marts on a tiny ``marts.customer_features`` table."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pandas as pd
import pytest

from ml.config.settings import Settings
from ml.data.validation import MartValidationError, validate_marts
from ml.data.validation.marts_gate import gx_frame
from tests.integration.gates.gate_fixtures import DAY, features

YESTERDAY = DAY - timedelta(days=1)


def write_features(settings: Settings, *frames: pd.DataFrame) -> None:
    settings.root.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("create schema if not exists marts")
        con.execute("drop table if exists marts.customer_features")
        con.register("snapshots", pd.concat(frames, ignore_index=True))
        con.execute("create table marts.customer_features as select * from snapshots")


def test_a_good_snapshot_passes_and_is_recorded(settings: Settings) -> None:
    write_features(
        settings, pd.DataFrame(features(YESTERDAY, 10)), pd.DataFrame(features(DAY, 12))
    )
    report = validate_marts(settings, DAY)
    assert report.passed and report.rows == 12 and report.previous_rows == 10
    assert report.expectations_failed == 0
    assert report.as_counts()["rows"] == 12
    # the read-only connection is closed: a writer can open the file
    with duckdb.connect(str(settings.warehouse_path)) as con:
        recorded = con.execute(
            "select count(*), bool_and(success) from ops.validation_results "
            "where table_name = 'customer_features' and run_date = ?",
            [DAY],
        ).fetchall()[0]
    assert recorded is not None
    assert recorded[0] == report.expectations_evaluated and recorded[1]


def test_volume_nulls_and_ranges_fail_with_a_clear_message(settings: Settings) -> None:
    today = pd.DataFrame(features(DAY, 4))
    today.loc[1, "recency_days"] = -2
    today.loc[2, "discount_share_90d"] = 1.5
    write_features(settings, pd.DataFrame(features(YESTERDAY, 10)), today)

    with pytest.raises(MartValidationError) as caught:
        validate_marts(settings, DAY, data_docs=False)

    message = str(caught.value)
    assert "4 rows, but 10 on 2025-03-01 allows 5..15" in message
    assert "column 'recency_days'" in message and "-2" in message
    assert "column 'discount_share_90d'" in message and "1.5" in message
    assert caught.value.report is not None and not caught.value.report.passed
    # rerunning replaces the run date's ops rows
    with pytest.raises(MartValidationError):
        validate_marts(settings, DAY, data_docs=False)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        failed = con.execute(
            "select count(*) from ops.validation_results "
            "where table_name = 'customer_features' and not success"
        ).fetchall()[0]
    assert failed == (3,)


def test_no_yesterday_skips_the_volume_check(settings: Settings) -> None:
    write_features(settings, pd.DataFrame(features(DAY, 3)))
    assert validate_marts(settings, DAY, data_docs=False).previous_rows == 0


def test_a_missing_mart_or_snapshot_fails(settings: Settings) -> None:
    with pytest.raises(MartValidationError, match="customer_features does not exist"):
        validate_marts(settings, DAY, data_docs=False)
    write_features(settings, pd.DataFrame(features(YESTERDAY, 3)))
    with pytest.raises(MartValidationError, match="the snapshot has no rows"):
        validate_marts(settings, DAY, data_docs=False)


def test_integer_columns_as_dbt_writes_them_are_checked_the_same(
    settings: Settings,
) -> None:
    """dbt writes counts and ages as INTEGER (int32); the gate widens them to int64
    for GX's vectorised comparisons, and a bad value still fails with its example."""
    today = pd.DataFrame(features(DAY, 6))
    today.loc[3, "tx_count_30d"] = -7
    write_features(settings, pd.DataFrame(features(YESTERDAY, 6)), today)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        for column in ("tx_count_30d", "tenure_days", "recency_days"):
            con.execute(
                f"alter table marts.customer_features alter {column} type integer"
            )
        snapshot = con.sql(
            "select * from marts.customer_features where as_of_date = ?", params=[DAY]
        ).to_arrow_table()
    assert str(snapshot.schema.field("tx_count_30d").type) == "int32"
    frame = gx_frame(snapshot)
    assert frame["tx_count_30d"].dtype == "int64"
    assert frame["tx_count_30d"].tolist() == snapshot.column("tx_count_30d").to_pylist()
    assert frame.drop(columns=["tx_count_30d", "tenure_days", "recency_days"]).equals(
        snapshot.to_pandas().drop(
            columns=["tx_count_30d", "tenure_days", "recency_days"]
        )
    )

    with pytest.raises(MartValidationError) as caught:
        validate_marts(settings, DAY, data_docs=False)
    message = str(caught.value)
    assert "column 'tx_count_30d'" in message and "-7" in message
