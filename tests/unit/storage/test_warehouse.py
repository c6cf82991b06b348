"""``ml.storage.warehouse.hold``: one connection for a step, every ``connect`` a
cursor."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from ml.storage.warehouse import connect, hold


def test_connect_inside_hold_shares_one_database_and_writes_persist(
    tmp_path: Path,
) -> None:
    path = tmp_path / "warehouse.duckdb"
    opened: list[object] = []
    with hold(path):
        with connect(path) as con:
            con.execute("create table t as select 1 as x")
            opened.append(con)
        # a read-only request inside the hold reads the held database
        with connect(path, read_only=True) as con:
            assert con.execute("select x from t").fetchall() == [(1,)]
            opened.append(con)
        with hold(path), connect(path) as con:  # nested: shares the outer one
            con.execute("insert into t values (2)")
        # the held file refuses a connection with another configuration, as a
        # second process's writer would be refused: the hold is really open
        with pytest.raises(duckdb.Error):
            duckdb.connect(str(path), read_only=True)
    assert opened[0] is not opened[1]  # each connect is its own cursor
    # after the block the file is closed and everything written is there
    with connect(path, read_only=True) as con:
        assert con.execute("select x from t order by x").fetchall() == [(1,), (2,)]
    other = duckdb.connect(str(path))  # nothing of this process holds it any more
    other.close()


def test_a_failure_inside_hold_releases_the_file(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with pytest.raises(RuntimeError), hold(path):
        with connect(path) as con:
            con.execute("create table t as select 1 as x")
        raise RuntimeError("the step failed")
    with connect(path, read_only=True) as con:
        assert con.execute("select count(*) from t").fetchone() == (1,)


def test_a_read_only_hold_reads_through_one_instance_and_refuses_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "warehouse.duckdb"
    with connect(path) as con:
        con.execute("create table t as select 1 as x")
    with hold(path, read_only=True):
        with connect(path, read_only=True) as first:
            assert first.execute("select x from t").fetchall() == [(1,)]
        with connect(path, read_only=True) as second:
            assert second.execute("select count(*) from t").fetchall() == [(1,)]
        # every cursor is of the read-only instance: even a read-write request
        # cannot write through it
        with connect(path) as con, pytest.raises(duckdb.Error, match="read-only"):
            con.execute("insert into t values (2)")
    with connect(path) as con:  # released: the file takes a writer again
        con.execute("insert into t values (2)")
        assert con.execute("select count(*) from t").fetchall() == [(2,)]


def test_ensure_schemas_creates_a_missing_table_even_when_the_rest_exist(
    tmp_path: Path,
) -> None:
    from ml.storage.warehouse import ensure_schemas

    path = tmp_path / "warehouse.duckdb"
    with connect(path) as con:
        ensure_schemas(con)
        con.execute(
            "insert into ops.runs (run_date, step, status) values "
            "('2026-01-01', 'dbt_build', 'success')"
        )
        ensure_schemas(con)  # everything there: nothing is recreated
        assert con.execute("select count(*) from ops.runs").fetchone() == (1,)
        con.execute("drop table raw.customers")
        con.execute("drop table ops.alerts")
        ensure_schemas(con)
        tables = {
            f"{s}.{t}"
            for s, t in con.execute(
                "select schema_name, table_name from duckdb_tables()"
            ).fetchall()
        }
        assert {"raw.customers", "ops.alerts", "ops.runs"} <= tables
        assert con.execute("select count(*) from ops.runs").fetchone() == (1,)
