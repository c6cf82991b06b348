"""``ml.storage.warehouse.replace_run_date``: a night's rows replace that night's,
whether DuckDB reads them as an Arrow table or, when Arrow cannot type a column,
as the pandas frame itself."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd

from ml.storage.warehouse import replace_run_date

NIGHT = date(2026, 1, 4)


def _table() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        "create table t (customer_id varchar not null, action varchar, "
        "p double, n bigint, run_date date not null)"
    )
    con.execute("insert into t values ('old', 'email', 0.5, 1, ?)", [NIGHT])
    con.execute("insert into t values ('kept', null, 0.1, 2, ?)", [date(2026, 1, 3)])
    return con


def test_a_night_replaces_its_rows_by_column_name_and_keeps_other_nights() -> None:
    con = _table()
    frame = pd.DataFrame(
        {
            "n": [7, 8],  # another column order: matched by name
            "p": [0.25, np.nan],
            "customer_id": pd.Series(["C1", "C2"], dtype="str"),
            "action": [None, "voucher"],
            "run_date": [date(1999, 1, 1)] * 2,  # replaced by the night
        }
    )
    replace_run_date(con, "t", NIGHT, frame)
    rows = con.execute("select * from t order by run_date, customer_id").fetchall()
    assert rows == [
        ("kept", None, 0.1, 2, date(2026, 1, 3)),
        ("C1", None, 0.25, 7, NIGHT),
        ("C2", "voucher", None, 8, NIGHT),
    ]


def test_a_column_arrow_cannot_type_is_read_from_the_frame() -> None:
    con = _table()
    mixed = pd.DataFrame(
        {
            "customer_id": pd.Series([1, "C2"], dtype=object),  # int and text
            "action": ["email", "email"],
            "p": [0.1, 0.2],
            "n": [1, 2],
        }
    )
    replace_run_date(con, "t", NIGHT, mixed)
    rows = con.execute(
        "select customer_id, p from t where run_date = ? order by p", [NIGHT]
    ).fetchall()
    assert rows == [("1", 0.1), ("C2", 0.2)]


def test_an_empty_night_only_deletes() -> None:
    con = _table()
    replace_run_date(con, "t", NIGHT, pd.DataFrame())
    assert con.execute("select customer_id from t").fetchall() == [("kept",)]
