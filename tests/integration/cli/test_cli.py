"""The ``loopline`` command: wiring of import, rebuild and sql on a tiny real log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ml.cli.app import app

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "transactions_custom.csv"


@pytest.fixture()
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LOOPLINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPLINE_DBT_LOG_LEVEL", "warn")
    return CliRunner()


def test_import_rebuild_query_and_docs(runner: CliRunner, tmp_path: Path) -> None:
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

    # a rebuild by hand ends by publishing the analyst copy, which sql reads
    assert "published" in result.output
    result = runner.invoke(
        app, ["sql", "select count(*) as purchases from marts.fct_transactions"]
    )
    assert result.exit_code == 0, result.output
    assert "purchases" in result.output and "17" in result.output
    result = runner.invoke(app, ["sql", "create table ops.nope (x int)"])
    assert result.exit_code != 0
    assert "read-only" in result.stderr.lower()

    # dbt docs of the analyst copy: the site and a catalog with the marts' columns
    result = runner.invoke(app, ["docs"])
    assert result.exit_code == 0, result.output
    site = tmp_path / "home" / "reports" / "dbt_docs"
    assert str(site / "index.html") in result.output.replace("\n", "")
    for name in ("index.html", "catalog.json", "manifest.json", "static_index.html"):
        assert (site / name).is_file(), name
    catalog = json.loads((site / "catalog.json").read_text())
    features = catalog["nodes"]["model.loopline.customer_features"]
    assert features["metadata"]["schema"] == "marts"
    assert {"customer_id", "as_of_date", "recency_days"} <= set(features["columns"])


def test_sql_is_read_only(runner: CliRunner) -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    result = runner.invoke(app, ["sql", "--live", "create table ops.nope (x int)"])
    assert result.exit_code != 0
    assert "read-only" in result.stderr.lower()
    # nothing published yet: the analyst commands say what to run
    for command in (["sql", "select 1"], ["docs"], ["decisions"], ["review", "list"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, command
        assert "loopline publish" in result.output.replace("\n", " "), command


def test_bad_date_is_a_clear_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["rebuild", "--start", "2024-13-01", "--end", "x"])
    assert result.exit_code != 0
    assert "is not a date" in result.output
