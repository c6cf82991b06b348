"""Tests for the bulk rebuild's chunk size: bounded snapshot rows per dbt build."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ml.data.dbt import (
    BULK_CHUNK_DATES,
    BULK_CHUNK_ROWS,
    bulk_chunk_dates,
    raw_customer_count,
)


def test_small_bases_build_a_year_at_once() -> None:
    assert bulk_chunk_dates(20_000) == BULK_CHUNK_DATES
    assert bulk_chunk_dates(0) == BULK_CHUNK_DATES


def test_large_bases_build_bounded_chunks() -> None:
    dates = bulk_chunk_dates(1_400_000)
    assert dates == BULK_CHUNK_ROWS // 1_400_000
    assert dates * 1_400_000 <= BULK_CHUNK_ROWS
    # never below one date, however large the base
    assert bulk_chunk_dates(10**9) == 1


def test_raw_customer_count_counts_distinct_customers(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    assert raw_customer_count(path) == 0  # no raw.customers yet
    con = duckdb.connect(str(path))
    con.execute("create schema raw")
    con.execute("create table raw.customers (customer_id varchar, plan varchar)")
    # two attribute versions of c1 count once
    con.execute(
        "insert into raw.customers values "
        "('c1', 'basic'), ('c1', 'plus'), ('c2', 'basic')"
    )
    con.close()
    assert raw_customer_count(path) == 2
