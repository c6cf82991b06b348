"""The ``loopline`` command: wiring of import, rebuild and sql on a tiny real log."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ml.cli import app

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "transactions_custom.csv"


@pytest.fixture()
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LOOPLINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPLINE_DBT_LOG_LEVEL", "warn")
    return CliRunner()


def test_import_rebuild_and_query(runner: CliRunner) -> None:
    result = runner.invoke(
        app,
        [
            "import",
            "transactions",
            str(FIXTURE),
            "--customer-col",
            "client",
            "--date-col",
            "purchased",
            "--amount-col",
            "total",
            "--date-format",
            "%d/%m/%Y %H:%M",
            "--id-col",
            "order_ref",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "rows written" in result.output

    result = runner.invoke(
        app, ["rebuild", "--start", "2024-01-03", "--end", "2024-01-15"]
    )
    assert result.exit_code == 0, result.output

    result = runner.invoke(
        app, ["sql", "select count(*) as purchases from marts.fct_transactions"]
    )
    assert result.exit_code == 0, result.output
    assert "purchases" in result.output and "17" in result.output


def test_sql_is_read_only(runner: CliRunner) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    result = runner.invoke(app, ["sql", "create table ops.nope (x int)"])
    assert result.exit_code != 0
    assert "read-only" in str(result.exception).lower()


def test_bad_date_is_a_clear_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["rebuild", "--start", "2024-13-01", "--end", "x"])
    assert result.exit_code != 0
    assert "is not a date" in result.output
