"""The landing gate's customer registry looks up only the ids a night refers to.

Loading every known customer cost a night time in proportion to the customer
base; with the referred ids given, the registry answers the same for every one
of them while holding only those found in ``raw.customers``.
"""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ml.data.validation.rules import customer_registry


def _warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create schema raw")
    con.execute(
        "create table raw.customers as select 'C' || i as customer_id, "
        "date '2024-01-01' + cast(i % 10 as integer) as partition_date "
        "from range(1000) as t(i)"
    )
    return con


def test_the_referred_ids_get_the_same_answers_as_the_whole_base() -> None:
    con = _warehouse()
    replaced = [date(2024, 1, 3)]  # C2, C12, ... are being replaced
    ids = ["C1", "C2", "C12", "C999", "C5000", None, "C1"]
    referred = pa.chunked_array([pa.array(ids[:3]), pa.array(ids[3:])])

    whole = customer_registry(con, replaced, None, None)
    looked_up = customer_registry(con, replaced, None, None, referred)

    days = np.full(len(ids), np.datetime64("2024-01-10", "us"))
    series = pd.Series(ids, dtype=object)
    assert looked_up.known(series, days).tolist() == whole.known(series, days).tolist()
    assert looked_up.known(series, days).tolist() == [
        True,
        False,
        False,
        True,
        False,
        False,
        True,
    ]
    assert len(whole.in_raw) == 900
    assert sorted(looked_up.in_raw) == ["C1", "C999"]
    # nothing is left registered on the connection
    for name in ("_referred_ids", "_replaced_days"):
        with pytest.raises(duckdb.CatalogException):
            con.execute(f"select * from {name}")


def test_no_referred_ids_finds_nobody() -> None:
    con = _warehouse()
    registry = customer_registry(
        con, [], None, None, pa.chunked_array([], type=pa.string())
    )
    assert len(registry.in_raw) == 0
