"""The analyst copy's Parquet partitions: a publish writes only the partitions that
changed, keeps the others' files, and still mirrors the warehouse exactly.

A warehouse with a 40-day ``marts.decisions`` (30 rows a day) is published with a
small partition threshold, then changed the way the pipeline changes it: a new day,
the day whose horizon ends on it rewritten, a rebuild of an old one.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from ml.analytics.publish import (
    FILES_TABLE,
    RETIRED_TABLE,
    PublishSummary,
    data_directory,
    open_analytics,
    publish_analytics,
)
from ml.config.settings import Settings, load_business_config
from ml.storage.warehouse import connect, ensure_schemas

FIRST = date(2025, 3, 1)
DAYS = 40
LAST = FIRST + timedelta(days=DAYS - 1)
ROWS_PER_DAY = 30


def _add_day(
    settings: Settings, day: date, rows: int = ROWS_PER_DAY, ev: float = 1.0
) -> None:
    """(Re)write the decisions of ``day`` as the decide step does."""
    with connect(settings.warehouse_path) as con:
        con.execute("delete from marts.decisions where run_date = ?", [day])
        con.execute(
            "insert into marts.decisions select ? || '-' || i as decision_id, "
            "?::date as run_date, 'c' || i as customer_id, "
            "case when i % 10 = 0 then 'holdout' else 'treated' end as arm, "
            "'email' as action, ? * i as chosen_ev, 0.3 as p_churn, "
            "12.0 as value_at_risk, 'ev' as reason_codes, '1' as model_version, "
            "'model' as policy_mode from range(?) t(i)",
            [day.isoformat(), day, ev, rows],
        )


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.root.mkdir(parents=True)
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
        con.execute("create schema marts")
        con.execute(
            "create table marts.decisions (decision_id varchar, run_date date, "
            "customer_id varchar, arm varchar, action varchar, chosen_ev double, "
            "p_churn double, value_at_risk double, reason_codes varchar, "
            "model_version varchar, policy_mode varchar)"
        )
        con.execute(
            "create table marts.dim_customers as select 'c' || i as customer_id "
            "from range(30) t(i)"
        )
    for offset in range(DAYS):
        _add_day(settings, FIRST + timedelta(days=offset))
    return settings


def _publish(settings: Settings, day: date, **options: object) -> PublishSummary:
    return publish_analytics(
        settings,
        day,
        "publish",
        partition_min_rows=100,
        **options,  # type: ignore[arg-type]
    )


def _same_as_warehouse(settings: Settings) -> None:
    """The copy's decisions equal the warehouse's, row for row."""
    with connect(settings.warehouse_path, read_only=True) as live:
        rows = sorted(live.execute("select * from marts.decisions").fetchall())
    with open_analytics(settings) as con:
        assert sorted(con.execute("select * from marts.decisions").fetchall()) == rows


def test_a_large_dated_table_is_a_view_over_one_directory_per_partition(
    settings: Settings,
) -> None:
    summary = _publish(settings, LAST)
    assert summary.partitions_written == DAYS
    assert summary.republished == ["marts.decisions"]
    assert summary.tables["marts.decisions"] == DAYS * ROWS_PER_DAY
    with open_analytics(settings) as con:
        kinds = dict(
            con.execute(
                "select table_name, 'table' from duckdb_tables() "
                "where schema_name = 'marts' union all "
                "select view_name, 'view' from duckdb_views() "
                "where schema_name = 'marts'"
            ).fetchall()
        )
        assert kinds == {"decisions": "view", "dim_customers": "table"}
        manifest = con.execute(
            f"select count(*), sum(row_count), min(partition_value), "
            f"max(partition_value) from {FILES_TABLE}"
        ).fetchone()
        assert manifest == (DAYS, DAYS * ROWS_PER_DAY, FIRST, LAST)
        assert con.execute(
            "select latest_date from ops.publication "
            "where table_name = 'marts.decisions'"
        ).fetchone() == (LAST,)
        assert con.execute(
            "select count(*) from reporting.latest_queue"
        ).fetchone() == (27,)
    partitions = sorted(
        p.name for p in (data_directory(settings) / "marts.decisions").glob("*/*")
    )
    assert len(partitions) == DAYS and partitions[0] == f"run_date={FIRST}"
    _same_as_warehouse(settings)


def test_the_next_night_writes_its_own_partition_and_keeps_the_rest(
    settings: Settings,
) -> None:
    _publish(settings, LAST)
    before = set(data_directory(settings).rglob("*.parquet"))
    reader = duckdb.connect(str(settings.analytics_path), read_only=True)
    try:
        new_day = LAST + timedelta(days=1)
        _add_day(settings, new_day)
        # what matures on the new day is rewritten with the same row count
        horizon = load_business_config(settings.config_file).horizon_days
        matured = new_day - timedelta(days=horizon)
        assert FIRST < matured < LAST
        _add_day(settings, matured, ev=3.0)
        # a same-count change of a date that no run for new_day writes
        _add_day(settings, LAST - timedelta(days=2), ev=4.0)
        summary = _publish(settings, new_day)
        assert summary.republished == []
        # two partitions were fingerprinted: the new night's and the matured one
        assert summary.partitions_written == 2
        assert summary.partitions_kept == DAYS - 1
        after = set(data_directory(settings).rglob("*.parquet"))
        assert before < after and len(after - before) == 2
        # the old reader still reads its own snapshot, files and all
        assert reader.execute("select count(*) from marts.decisions").fetchone() == (
            DAYS * ROWS_PER_DAY,
        )
    finally:
        reader.close()
    with open_analytics(settings) as con:
        assert con.execute(
            "select max(chosen_ev) from marts.decisions where run_date = ?",
            [LAST - timedelta(days=2)],
        ).fetchone() == (29.0,)  # still the published rows: not a date of new_day
    # its own date's publish (a rerun or backfill of that date) picks it up
    rerun = _publish(settings, LAST - timedelta(days=2))
    assert (rerun.partitions_written, rerun.republished) == (1, [])
    _same_as_warehouse(settings)
    # nothing changed: nothing is written
    again = _publish(settings, new_day)
    assert (again.partitions_written, again.republished) == (0, [])


def test_a_changed_history_outside_the_window_republishes_the_table(
    settings: Settings,
) -> None:
    _publish(settings, LAST)
    old_day = FIRST + timedelta(days=3)
    _add_day(settings, old_day, rows=12)  # a rebuild of an old day: fewer rows
    summary = _publish(settings, LAST)
    assert summary.republished == ["marts.decisions"]
    # every other partition still matched its fingerprint and kept its file
    assert summary.partitions_written == 1
    _same_as_warehouse(settings)
    # a same-count change outside the window needs --full; it then shows
    _add_day(settings, old_day, rows=12, ev=5.0)
    full = _publish(settings, LAST, full=True)
    assert full.partitions_written == DAYS
    _same_as_warehouse(settings)


def test_new_columns_republish_the_table(settings: Settings) -> None:
    _publish(settings, LAST)
    with connect(settings.warehouse_path) as con:
        con.execute("alter table marts.decisions add column cost double default 0.5")
    summary = _publish(settings, LAST)
    assert summary.republished == ["marts.decisions"]
    assert summary.partitions_written == DAYS
    with open_analytics(settings) as con:
        assert con.execute("select sum(cost) from marts.decisions").fetchone() == (
            DAYS * ROWS_PER_DAY * 0.5,
        )


def test_a_copied_home_writes_its_own_files(settings: Settings, tmp_path: Path) -> None:
    _publish(settings, LAST)
    copy = Settings(home=tmp_path / "copy")
    shutil.copytree(settings.root, copy.root)
    # the copied catalog still names the original home's files
    summary = _publish(copy, LAST)
    assert summary.republished == ["marts.decisions"]
    shutil.rmtree(settings.root)
    _same_as_warehouse(copy)


def test_replaced_files_are_deleted_after_the_grace_period(settings: Settings) -> None:
    _publish(settings, LAST)
    _add_day(settings, LAST, ev=2.0)
    summary = _publish(settings, LAST)
    assert summary.partitions_written == 1 and summary.files_removed == 0

    def named_and_retired() -> tuple[set[str], set[str]]:
        with open_analytics(settings) as con:
            named = {
                f
                for (files,) in con.execute(
                    f"select files from {FILES_TABLE}"
                ).fetchall()
                for f in files
            }
            retired = {
                str(r[0])
                for r in con.execute(f"select file from {RETIRED_TABLE}").fetchall()
            }
        return named, retired

    def on_disk() -> set[str]:
        return {str(p) for p in data_directory(settings).rglob("*.parquet")}

    named, retired = named_and_retired()
    # the replaced partition's file stays for readers of the older copy
    assert len(retired) == 1 and on_disk() == named | retired
    again = _publish(settings, LAST, keep_hours=0.0)
    assert again.files_removed == 1
    named, retired = named_and_retired()
    assert retired == set() and on_disk() == named
    _same_as_warehouse(settings)
    # a file no catalog ever named (a publish killed before its swap) goes at the
    # next full publish once it is old enough
    stray = data_directory(settings) / "marts.decisions" / "x" / "run_date=2025-03-01"
    stray.mkdir(parents=True)
    (stray / "part_0.parquet").write_bytes(b"PAR1")
    old = time.time() - 2 * 3600
    os.utime(stray / "part_0.parquet", (old, old))
    assert _publish(settings, LAST, keep_hours=1.0).files_removed == 0
    assert _publish(settings, LAST, full=True, keep_hours=1.0).files_removed == 1
    assert not stray.parent.exists()
    assert on_disk() == named_and_retired()[0] | named_and_retired()[1]
