"""The analyst copy (``ml.analytics.publish``) on a small real warehouse.

A warehouse is built in DuckDB with the real ``raw`` and ``ops`` schemas and a few
marts; publishing copies ``marts`` and ``ops`` (not ``raw``) with the reporting
views into ``analytics.duckdb`` through a temporary file and ``os.replace``. A
failed publish, whether another process holds the warehouse or a table copy fails
midway, leaves the previous copy byte for byte and no temporary file behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

import ml.analytics.publish as publish_module
from ml.analytics.publish import (
    PUBLICATION_TABLE,
    NotPublishedError,
    PublishError,
    data_directory,
    open_analytics,
    publish_analytics,
    remove_stale_temp_files,
    temp_path,
)
from ml.cli.app import app
from ml.config.settings import Settings
from ml.ops.tasks import publish
from ml.storage.warehouse import connect, ensure_schemas, held_connection, hold

DAY = date(2025, 3, 1)


def _build_warehouse(settings: Settings, decisions: int) -> None:
    """Raw and ops schemas, two marts and the decisions of ``DAY``."""
    settings.root.mkdir(parents=True, exist_ok=True)
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
        con.execute("create schema if not exists marts")
        con.execute(
            "create or replace table marts.decisions as select "
            "'d' || i as decision_id, date '2025-03-01' as run_date, "
            "'c' || i as customer_id, "
            "case when i % 10 = 0 then 'holdout' else 'treated' end as arm, "
            "case i % 3 when 0 then 'email' when 1 then 'voucher' else 'phone' end "
            "as action, i / 1000.0 as chosen_ev, 0.3 as p_churn, 12.0 "
            "as value_at_risk, 'ev' as reason_codes, '1' as model_version, "
            "'model' as policy_mode from range(?) t(i)",
            [decisions],
        )
        con.execute(
            "create or replace table marts.dim_customers as select 'c' || i "
            "as customer_id, date '2025-03-01' as as_of_date from range(50) t(i)"
        )
        con.execute(
            "insert into raw.transactions (transaction_id, customer_id, "
            "partition_date) values ('t1', 'c1', date '2025-03-01')"
        )
        con.execute(
            "insert into ops.runs (run_date, step, status, config_hash, detail) "
            "values (?, 'decide', 'success', 'h', ?)",
            [DAY, json.dumps({"elapsed_seconds": 1.5})],
        )


def _data_files(settings: Settings) -> list[Path]:
    return sorted(data_directory(settings).rglob("*.parquet"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _temp_files(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.root.iterdir() if p.name.endswith(".tmp"))


def _counts(path: Path) -> dict[str, int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            name: int(rows)
            for name, rows in con.execute(
                f"select table_name, row_count from {PUBLICATION_TABLE}"
            ).fetchall()
        }
    finally:
        con.close()


def _break_a_reporting_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reporting view that cannot bind: the publish fails after its copies."""
    broken = publish_module.ReportingView(
        "broken", ("marts.decisions",), "select no_such_column from marts.decisions"
    )
    monkeypatch.setattr(
        publish_module, "REPORTING_VIEWS", (*publish_module.REPORTING_VIEWS, broken)
    )


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    _build_warehouse(settings, decisions=40)
    return settings


def test_publish_copies_marts_ops_and_views_not_raw(settings: Settings) -> None:
    summary = publish(DAY, settings)

    assert summary.counts["tables"]["marts.decisions"] == 40
    assert summary.counts["tables"]["marts.dim_customers"] == 50
    assert _temp_files(settings) == []
    with open_analytics(settings) as con:
        schemas = {
            r[0]
            for r in con.execute(
                "select distinct schema_name from duckdb_tables()"
            ).fetchall()
        }
        assert schemas == {"marts", "ops"}
        published = dict(
            con.execute(
                f"select table_name, row_count from {PUBLICATION_TABLE}"
            ).fetchall()
        )
        # every published table is counted as it is in the copy
        for name, rows in published.items():
            assert con.execute(f"select count(*) from {name}").fetchone() == (rows,)
        fresh = con.execute(
            f"select latest_date, published_by, run_date from {PUBLICATION_TABLE} "
            "where table_name = 'marts.decisions'"
        ).fetchone()
        assert fresh == (DAY, "publish", DAY)
        queue = con.execute(
            "select count(*), min(run_date) from reporting.latest_queue"
        ).fetchone()
        assert queue == (36, DAY)
        # the copy is the warehouse as the publish saw it: itself running
        assert con.execute(
            "select step, status, elapsed_seconds from reporting.pipeline_runs "
            "order by step"
        ).fetchall() == [("decide", "success", 1.5), ("publish", "running", None)]
        # the views whose tables are not there yet are simply absent
        views = {
            r[0]
            for r in con.execute(
                "select view_name from duckdb_views() where not internal"
            ).fetchall()
        }
        assert "uplift_by_action" not in views
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("create table marts.nope (x int)")
    with connect(settings.warehouse_path, read_only=True) as con:
        recorded = con.execute(
            "select status, detail from ops.runs where step = 'publish'"
        ).fetchone()
    assert recorded is not None and recorded[0] == "success"
    assert json.loads(recorded[1])["tables"]["marts.decisions"] == 40


def test_a_marts_view_is_published_over_the_copys_tables(settings: Settings) -> None:
    """A dbt model materialised as a view (marts.training_examples) reaches the
    copy with its own definition, reading the copy's tables, also those
    published as Parquet partitions."""
    with connect(settings.warehouse_path) as con:
        con.execute(
            "create view marts.treated_decisions as select d.*, c.as_of_date "
            "from marts.decisions d join marts.dim_customers c using (customer_id) "
            "where d.arm = 'treated'"
        )
    summary = publish_analytics(settings, DAY, "publish", partition_min_rows=10)

    assert "marts.treated_decisions" in summary.views
    assert "marts.treated_decisions" not in summary.tables
    with open_analytics(settings) as con:
        assert con.execute(
            "select count(*) from marts.treated_decisions"
        ).fetchone() == (36,)
        # the decisions are Parquet partitions in the copy, and the view reads them
        plan = con.execute("explain select * from marts.treated_decisions").fetchall()
        assert "READ_PARQUET" in str(plan).upper()
    with connect(settings.warehouse_path) as con:
        con.execute("delete from marts.decisions")
    with open_analytics(settings) as con:
        assert con.execute(
            "select count(*) from marts.treated_decisions"
        ).fetchone() == (36,)


def test_a_new_copy_replaces_the_file_and_an_open_reader_keeps_its_snapshot(
    settings: Settings,
) -> None:
    publish_analytics(settings, DAY, "publish")
    old_inode = settings.analytics_path.stat().st_ino
    reader = duckdb.connect(str(settings.analytics_path), read_only=True)
    try:
        _build_warehouse(settings, decisions=70)
        publish_analytics(settings, DAY, "publish")
        # the open connection still reads the copy it opened, whole
        assert reader.execute("select count(*) from marts.decisions").fetchone() == (
            40,
        )
        assert reader.execute(
            f"select row_count from {PUBLICATION_TABLE} "
            "where table_name = 'marts.decisions'"
        ).fetchone() == (40,)
    finally:
        reader.close()
    assert settings.analytics_path.stat().st_ino != old_inode
    assert _counts(settings.analytics_path)["marts.decisions"] == 70
    assert _temp_files(settings) == []


def test_a_copy_failing_midway_leaves_the_previous_copy_and_no_temp_file(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish_module, "PARTITION_MIN_ROWS", 10)
    publish_analytics(settings, DAY, "publish")
    before = _sha256(settings.analytics_path)
    files_before = _data_files(settings)
    assert files_before  # marts.decisions is published as Parquet
    _build_warehouse(settings, decisions=70)
    written: list[Path] = []

    def half_then_disk_full(*args: object) -> None:
        # fault injection: the disk fills up halfway through a partition's file
        batch = Path(str(args[-1])) / "run_date=2025-03-01"
        batch.mkdir(parents=True)
        (batch / "part_0.parquet").write_bytes(b"PAR1 half a file")
        written.append(batch)
        raise OSError(errno.ENOSPC, "No space left on device", str(batch))

    monkeypatch.setattr(publish_module, "_copy_partitions", half_then_disk_full)
    with pytest.raises(OSError, match="No space left"):
        publish(DAY, settings)

    assert written and not written[0].exists()  # the half-written batch is gone
    assert _data_files(settings) == files_before
    assert _sha256(settings.analytics_path) == before
    assert _counts(settings.analytics_path)["marts.decisions"] == 40
    assert _temp_files(settings) == []
    with connect(settings.warehouse_path, read_only=True) as con:
        status = con.execute(
            "select status, detail from ops.runs where step = 'publish'"
        ).fetchone()
    assert status is not None and status[0] == "failed"
    assert "No space left" in status[1]


def test_a_failure_after_the_copy_leaves_no_temp_file(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_analytics(settings, DAY, "publish")
    before = _sha256(settings.analytics_path)
    _break_a_reporting_view(monkeypatch)
    with pytest.raises(duckdb.BinderException, match="no_such_column"):
        publish_analytics(settings, DAY, "publish")
    assert _sha256(settings.analytics_path) == before
    assert _temp_files(settings) == []
    assert not list(settings.root.glob("*.tmp.wal"))


def _attached(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        str(r[0])
        for r in con.execute(
            "select database_name from duckdb_databases() where not internal"
        ).fetchall()
    }


def _manifest(path: Path) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "select table_name, partition_value, row_count, fingerprint "
            "from ops.publication_files order by all"
        ).fetchall()
    finally:
        con.close()


def test_a_publish_inside_a_hold_reads_the_warehouse_through_it(
    settings: Settings, tmp_path: Path
) -> None:
    """The closed loop holds the warehouse open for a whole night, so the file
    cannot be attached a second time: the copy is then attached beside it, and
    the result is the copy a publish outside the hold writes."""
    outside = Settings(home=tmp_path / "outside")
    _build_warehouse(outside, decisions=40)
    for home in (settings, outside):
        publish_analytics(home, DAY, "publish", partition_min_rows=10)
        _build_warehouse(home, decisions=70)
    publish_analytics(outside, DAY, "publish", partition_min_rows=10)

    with hold(settings.warehouse_path):
        held = held_connection(settings.warehouse_path)
        assert held is not None
        summary = publish_analytics(settings, DAY, "publish", partition_min_rows=10)
        # the copy and the previous copy are detached again; the warehouse is
        # still open, and writable
        assert _attached(held) == {"warehouse"}
        held.execute("insert into marts.dim_customers values ('late', ?)", [DAY])

    assert summary.tables["marts.decisions"] == 70
    assert summary.partitions_written == 1  # the changed day only
    assert _manifest(settings.analytics_path) == _manifest(outside.analytics_path)
    assert _counts(settings.analytics_path) == _counts(outside.analytics_path)
    assert _temp_files(settings) == []
    with open_analytics(settings) as con:
        assert con.execute("select count(*) from marts.decisions").fetchone() == (70,)
        assert con.execute(
            "select count(*) from reporting.latest_queue"
        ).fetchone() == (63,)
        # the published dimension is the one before the held write
        assert con.execute("select count(*) from marts.dim_customers").fetchone() == (
            50,
        )


def test_a_failed_publish_inside_a_hold_leaves_the_hold_as_it_was(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_analytics(settings, DAY, "publish")
    before = _sha256(settings.analytics_path)
    _break_a_reporting_view(monkeypatch)
    with hold(settings.warehouse_path):
        held = held_connection(settings.warehouse_path)
        assert held is not None
        with pytest.raises(duckdb.BinderException, match="no_such_column"):
            publish_analytics(settings, DAY, "publish")
        assert _attached(held) == {"warehouse"}
        held.execute("insert into marts.dim_customers values ('late', ?)", [DAY])
    assert _sha256(settings.analytics_path) == before
    assert _temp_files(settings) == []
    assert not list(settings.root.glob("*.tmp.wal"))


def test_a_warehouse_held_by_a_writer_fails_cleanly(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_analytics(settings, DAY, "publish")
    before = _sha256(settings.analytics_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys\n"
            f"con = duckdb.connect({str(settings.warehouse_path)!r})\n"
            "print('holding', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        with pytest.raises(PublishError, match="another process holds it"):
            publish(DAY, settings)
        # by hand: a clear message, not a traceback
        monkeypatch.setenv("LOOPLINE_HOME", str(settings.root))
        result = CliRunner().invoke(app, ["publish", "--date", DAY.isoformat()])
        assert result.exit_code == 1
        assert "another process holds it" in result.output.replace("\n", " ")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    assert _sha256(settings.analytics_path) == before
    assert _temp_files(settings) == []


def test_nothing_to_publish_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "empty")
    with pytest.raises(PublishError, match="no warehouse"):
        publish_analytics(settings, DAY, "publish")
    settings.root.mkdir(parents=True)
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
    with pytest.raises(PublishError, match="no marts"):
        publish_analytics(settings, DAY, "publish")
    assert not settings.analytics_path.exists()
    assert _temp_files(settings) == []
    with (
        pytest.raises(NotPublishedError, match="loopline publish"),
        open_analytics(settings),
    ):
        pass


def test_temp_files_of_dead_processes_are_removed(settings: Settings) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = settings.root / f".analytics.duckdb.{dead.pid}.0123abcd.tmp"
    stale.write_bytes(b"half a copy")
    alive = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        running = settings.root / f".analytics.duckdb.{alive.pid}.89abcdef.tmp"
        running.write_bytes(b"being written")
        other = settings.root / "notes.tmp"
        other.write_bytes(b"not ours")
        removed = remove_stale_temp_files(settings.analytics_path)
        assert removed == [stale]
        assert running.exists() and other.exists()
    finally:
        assert alive.stdin is not None
        alive.stdin.close()
        alive.wait()
    mine = temp_path(settings.analytics_path)
    assert mine.parent == settings.root and mine.name.endswith(".tmp")


def test_cli_reads_the_copy_and_says_what_to_run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_HOME", str(settings.root))
    runner = CliRunner()
    query = "select count(*) as decided from marts.decisions"
    missing = runner.invoke(app, ["sql", query])
    assert missing.exit_code == 1
    assert "loopline publish" in missing.output
    # the live warehouse on purpose, for raw tables the copy does not carry
    live = runner.invoke(
        app, ["sql", "--live", "select count(*) as n from raw.transactions"]
    )
    assert live.exit_code == 0, live.output
    published = runner.invoke(app, ["publish", "--date", DAY.isoformat()])
    assert published.exit_code == 0, published.output
    assert str(settings.analytics_path) in published.output.replace("\n", "")
    result = runner.invoke(app, ["sql", query])
    assert result.exit_code == 0, result.output
    assert "40" in result.output
    no_raw = runner.invoke(app, ["sql", "select count(*) from raw.transactions"])
    assert no_raw.exit_code != 0
    with connect(settings.warehouse_path, read_only=True) as con:
        steps = con.execute("select step from ops.runs order by step").fetchall()
    assert ("publish_manual",) in steps
