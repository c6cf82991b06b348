"""Errors a user can cause come out of ``loopline`` as a few plain lines on stderr
and a non-zero exit code; the traceback only with ``--debug`` / LOOPLINE_DEBUG=1."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ml.cli.app import app
from ml.config.settings import Settings
from tests.e2e.worlds import simulate_world

START = date(2025, 1, 1)
DAYS = 20


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv("LOOPLINE_HOME", str(root))
    monkeypatch.delenv("LOOPLINE_DEBUG", raising=False)
    monkeypatch.setenv("LOOPLINE_DBT_LOG_LEVEL", "warn")
    return root


def test_a_sql_error_is_duckdbs_message_and_debug_shows_the_traceback(
    home: Path,
) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    result = runner.invoke(app, ["sql", "--live", "select * from no_such_table"])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: Catalog Error: Table with name no_such_table")
    assert len(lines) <= 3, lines
    assert "Traceback" not in result.stderr and "LINE 1" not in result.stderr

    debug = runner.invoke(
        app, ["--debug", "sql", "--live", "select * from no_such_table"]
    )
    assert debug.exit_code == 1
    assert "Traceback (most recent call last)" in debug.stderr
    by_env = runner.invoke(
        app,
        ["sql", "--live", "select * from no_such_table"],
        env={"LOOPLINE_DEBUG": "1"},
    )
    assert "Traceback (most recent call last)" in by_env.stderr

    # a write through the read-only connection: DuckDB's message, one line
    result = runner.invoke(app, ["sql", "--live", "create table ops.nope (x int)"])
    assert result.exit_code == 1
    assert "read-only" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_bad_input_is_one_line_with_where_to_look(home: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--as-of", "2025-02-30"])
    assert result.exit_code == 2
    first, second = result.stderr.splitlines()
    assert first == "error: Invalid value: '2025-02-30' is not a date (YYYY-MM-DD)"
    assert second.endswith(" train --help lists the options)")
    missing = runner.invoke(app, ["import", "transactions", str(home / "none.csv")])
    assert missing.exit_code == 2
    assert "Traceback" not in missing.stderr and "╭" not in missing.stderr


def test_a_locked_warehouse_says_who_holds_it(home: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    warehouse = Settings(home=home).warehouse_path
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb\n"
            f"con = duckdb.connect({str(warehouse)!r})\n"
            "print('holding', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        result = runner.invoke(app, ["sql", "--live", "select 1"])
        assert result.exit_code == 1
        assert result.stderr.splitlines() == [
            f"error: {warehouse} is in use by process {holder.pid}: DuckDB lets one "
            "process write to it at a time.",
            "  Wait until that process (a pipeline run?) has finished, then try again.",
        ]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()


def test_a_gate_failing_on_every_day_is_summarised(home: Path) -> None:
    """Negative amounts on every day of a rebuild: a few lines naming the first and
    last partition and example values; every fault in ops.validation_results."""
    settings = simulate_world(
        Settings(home=home), customers=300, seed=3, start=START, days=DAYS
    )
    for path in sorted((settings.landing_dir / "transactions").rglob("*.parquet")):
        table = pq.read_table(path)
        amounts = table.column("amount").to_pandas()
        index = table.schema.get_field_index("amount")
        negative = table.set_column(
            index, table.schema.field(index), [(-amounts.abs() - 1).to_numpy()]
        )
        pq.write_table(negative, path)
    end = START + timedelta(days=DAYS - 1)
    result = CliRunner().invoke(
        app, ["rebuild", "--start", START.isoformat(), "--end", end.isoformat()]
    )
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) <= 8, result.stderr
    assert lines[0].startswith(f"error: landing gate failed: {DAYS} faults in 1 table")
    assert f"dt={START} … dt={end}" in lines[0]
    assert f"transactions too many bad rows (max_bad_row_fraction): {DAYS} " in (
        result.stderr
    )
    assert "negative_amount" in result.stderr and "(amount: -" in result.stderr
    assert "ops.validation_results" in result.stderr
    assert "Traceback" not in result.stderr
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        stored = con.execute(
            "select count(distinct partition_date) from ops.validation_results "
            "where suite_name = 'landing.transactions.gate' and not success"
        ).fetchone()
    assert stored == (DAYS,)


def test_an_unexpected_error_says_how_to_see_where() -> None:
    from ml.cli.error_handling import Terminated, explain

    lines, code = explain(KeyError("customer_id"))
    assert code == 1
    assert lines == [
        "KeyError: 'customer_id'",
        "an unexpected error: rerun with --debug (or LOOPLINE_DEBUG=1) to see where",
    ]
    assert explain(Terminated()) == (["stopped (SIGTERM)"], 143)
    assert explain(KeyboardInterrupt()) == (["interrupted"], 130)


def test_a_report_on_an_empty_home_says_what_to_run(home: Path) -> None:
    result = CliRunner().invoke(app, ["report"])
    assert result.exit_code == 2
    assert "no warehouse at" in result.stderr
    assert "run the nightly DAG first" in result.stderr
    assert "Traceback" not in result.stderr and "IOException" not in result.stderr
    assert len(result.stderr.splitlines()) <= 2


def test_train_on_too_young_a_log_says_what_history_it_needs(home: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init"]).exit_code == 0
    settings = Settings(home=home)
    first, last = START, START + timedelta(days=119)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute(
            "insert into raw.transactions (transaction_id, customer_id, "
            "transaction_at, amount, category, is_discounted, partition_date, "
            "source_file) values "
            "('t1', 'c1', ?, 10.0, 'home', false, ?, 'f'), "
            "('t2', 'c1', ?, 12.0, 'home', false, ?, 'f')",
            [first, first, last, last],
        )
    result = runner.invoke(app, ["train", "--as-of", last.isoformat()])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    # refused up front: no marts exist, so nothing heavier was read
    assert lines[0].startswith(
        "error: the log is too young to train on 2025-04-30: it holds 120 days"
    )
    assert "training needs at least 167" in lines[0]
    assert len(lines) == 2 and "Traceback" not in result.stderr
    assert not (settings.reports_dir / "training" / last.isoformat()).exists()
