"""A typo of 1,000,000,000,000.00 in an imported log never reaches a mart.

The log (``tests/fixtures/import/typo_amount.csv``: 280 purchases of 20 customers
over a week) is imported and rebuilt through the real CLI; the landing gate
quarantines the typo as ``implausible_amount``, so the marts, the value at risk and
the decisions never see it. A purchase of ``inf`` in a second file of one day is
quarantined as ``non_finite_amount`` instead of failing dbt on a cast.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ml.cli.app import app
from ml.config.settings import Settings
from ml.contract.schema import TRANSACTIONS
from ml.storage.landing_files import partition_dir

LOG = Path(__file__).resolve().parents[2] / "fixtures" / "import" / "typo_amount.csv"
TYPO = 1e12


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home = tmp_path_factory.mktemp("typo") / "home"
    env = {"LOOPLINE_HOME": str(home), "LOOPLINE_DBT_LOG_LEVEL": "warn"}
    runner = CliRunner()
    args = [
        "import",
        "transactions",
        str(LOG),
        "--customer-col",
        "customer",
        "--date-col",
        "date",
        "--amount-col",
        "amount",
        "--id-col",
        "order_id",
    ]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    # a second export file of 2024-05-05 holds one purchase of inf (the importer
    # rejects that text, but a file can land by other ways)
    settings = Settings(home=home)
    folder = partition_dir(settings.landing_dir, "transactions", date(2024, 5, 5))
    row = pa.table(
        {
            "transaction_id": ["O9999"],
            "customer_id": ["K01"],
            "transaction_at": [datetime(2024, 5, 5, 12, 0)],
            "amount": [float("inf")],
            "category": ["other"],
            "is_discounted": [False],
        },
        schema=TRANSACTIONS.schema,
    )
    pq.write_table(row, folder / "part-0001.parquet")
    result = runner.invoke(
        app, ["rebuild", "--start", "2024-05-01", "--end", "2024-05-07"], env=env
    )
    assert result.exit_code == 0, result.output
    return Settings(home=home)


def _one(settings: Settings, sql: str) -> object:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql).fetchall()[0][0]


def test_the_typo_is_quarantined_as_implausible(rebuilt: Settings) -> None:
    with duckdb.connect(str(rebuilt.warehouse_path), read_only=True) as con:
        rows = con.execute(
            "select reason, record_key, record_json from ops.quarantine "
            "where table_name = 'transactions'"
        ).fetchall()
    assert sorted((r[0], r[1]) for r in rows) == [
        ("implausible_amount", "O0138"),
        ("non_finite_amount", "O9999"),
    ]
    typo = next(r for r in rows if r[1] == "O0138")
    assert json.loads(typo[2])["amount"] == TYPO
    assert _one(rebuilt, "select count(*) from raw.transactions") == 279
    # dbt built every mart: the inf never reached its casts
    assert _one(rebuilt, "select count(*) from marts.fct_transactions") == 279


def test_the_typo_reaches_no_mart(rebuilt: Settings) -> None:
    assert _one(rebuilt, "select count(*) from marts.fct_transactions") == 279
    assert _one(rebuilt, "select max(amount) from marts.fct_transactions") < 1_000
    spend = _one(rebuilt, "select max(spend_180d) from marts.customer_features")
    assert spend is not None and 0 < spend < 10_000
    basket = _one(rebuilt, "select max(avg_basket_90d) from marts.customer_features")
    assert basket is not None and basket < 1_000


def test_the_typo_reaches_no_value_at_risk_or_decision(rebuilt: Settings) -> None:
    from ml.decision.decide_step import decide

    decide(rebuilt, date(2024, 5, 7))  # no champion yet: the rule fallback decides
    with duckdb.connect(str(rebuilt.warehouse_path), read_only=True) as con:
        rows = con.execute(
            "select customer_id, value_at_risk from marts.decisions "
            "where run_date = '2024-05-07'"
        ).fetchall()
    values = dict(rows)
    assert len(values) == 20 and "K07" in values
    assert all(v is not None and 0 <= v < 10_000 for v in values.values())
