"""The dbt project builds, tests itself, and computes what the docs say it does."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from expectations.customer_features import FEATURE_COLUMNS
from ml.config.settings import REPO_ROOT
from ml.contract.schema import TABLES
from ml.data.dbt import DbtBuildError, dbt_build, manifest_hash
from ml.storage.warehouse import connect
from tests.integration.dbt.conftest import (
    ACTIVE_WINDOW_DAYS,
    BUILD_END,
    BUILD_START,
    HORIZON_DAYS,
    BuiltWorld,
    make_settings,
    read_columns,
    read_rows,
)
from tests.integration.dbt.world import World, load_world, make_world

# the columns other code relies on: the feature-mart gate's list
REQUIRED_FEATURES = list(FEATURE_COLUMNS)
LOOKBACK_DAYS = 180


def test_bulk_build_runs_models_data_tests_and_unit_tests(bulk: BuiltWorld) -> None:
    result = bulk.results[0]
    kinds: dict[str, int] = {}
    for node in result.nodes:
        kinds[node.resource_type] = kinds.get(node.resource_type, 0) + 1
        assert node.status in ("success", "pass"), node
    assert kinds["model"] == 14
    assert kinds["unit_test"] >= 4
    assert kinds["test"] >= 40
    assert result.node("test_labels_count_purchases_in_the_horizon_only").status == (
        "pass"
    )
    assert result.node(
        "test_features_use_only_rows_known_on_the_as_of_date"
    ).status == ("pass")
    assert result.node(
        "test_lifetime_state_carries_days_gaps_and_late_rows"
    ).status == ("pass")
    assert set(result.row_counts) == {
        "churn_labels",
        "customer_features",
        "dim_customers",
        "fct_transactions",
    }
    assert all(count > 0 for count in result.row_counts.values())
    counts = result.as_counts()
    assert counts["rows"] == result.row_counts
    assert counts["nodes"]["model"] == 14
    assert counts["full_refresh"] is True


def test_models_land_in_their_schemas(bulk: BuiltWorld) -> None:
    with connect(bulk.settings.warehouse_path, read_only=True) as con:
        found = {
            (schema, name, kind)
            for schema, name, kind in con.execute(
                "select table_schema, table_name, table_type "
                "from information_schema.tables "
                "where table_schema in ('staging', 'intermediate', 'marts')"
            ).fetchall()
        }
    staging = {f"stg_landing__{table}" for table in TABLES}
    assert {name for schema, name, kind in found if schema == "staging"} == staging
    assert all(kind == "VIEW" for schema, _, kind in found if schema == "staging")
    assert {name for schema, name, _ in found if schema == "intermediate"} == {
        "int_transactions_deduplicated",
        "int_customer_days_aggregated",
        "int_customer_lifetimes_accumulated",
        "int_customer_states",
    }
    assert {name for schema, name, _ in found if schema == "marts"} == {
        "fct_transactions",
        "dim_customers",
        "customer_features",
        "churn_labels",
        "training_examples",
    }
    # the examples are the features joined with their labels, not a second copy
    assert ("marts", "training_examples", "VIEW") in found


def test_feature_columns_are_the_agreed_ones(bulk: BuiltWorld) -> None:
    columns = read_columns(bulk.settings, "customer_features")
    assert columns[:2] == ["customer_id", "as_of_date"]
    assert set(REQUIRED_FEATURES) <= set(columns)
    assert len(columns) - 2 >= 15
    labels = read_columns(bulk.settings, "churn_labels")
    assert labels[:4] == ["customer_id", "as_of_date", "churned", "horizon_days"]
    examples = read_columns(bulk.settings, "training_examples")
    assert set(REQUIRED_FEATURES) | {"churned"} <= set(examples)


def _first_arrivals(world: World) -> list[dict[str, object]]:
    """Purchases at their first arrival: (transaction_id, transaction_at) once."""
    first: dict[tuple[object, object], dict[str, object]] = {}
    for day in sorted(world.rows["transactions"]):
        for row in world.rows["transactions"][day]:
            key = (row["transaction_id"], row["transaction_at"])
            if key not in first:
                first[key] = dict(row, partition_date=day)
    return list(first.values())


def _reference_features(world: World, day: date) -> dict[str, dict[str, object]]:
    """A few features of ``day`` computed in plain Python from the raw rows."""
    earliest = day - timedelta(days=LOOKBACK_DAYS)
    purchases: dict[str, list[tuple[date, float]]] = {}
    for row in _first_arrivals(world):
        tx_day = row["transaction_at"].date()  # type: ignore[attr-defined]
        partition = row["partition_date"]
        if earliest < partition <= day and earliest < tx_day <= day:  # type: ignore[operator]
            purchases.setdefault(str(row["customer_id"]), []).append(
                (tx_day, float(row["amount"]))  # type: ignore[arg-type]
            )
    plans: dict[str, tuple[object, ...]] = {}
    for arrival in sorted(world.rows["customers"]):
        for row in world.rows["customers"][arrival]:
            at = row["updated_at"]
            if arrival <= day and at.date() <= day:  # type: ignore[attr-defined]
                current = plans.get(str(row["customer_id"]))
                if current is None or (at, arrival) >= current[:2]:
                    plans[str(row["customer_id"])] = (
                        at,
                        arrival,
                        row["plan"],
                        row["signup_date"],
                    )
    lifetime: dict[str, list[date]] = {}
    for row in _first_arrivals(world):
        tx_day = row["transaction_at"].date()  # type: ignore[attr-defined]
        if row["partition_date"] <= day and tx_day <= day:  # type: ignore[operator]
            lifetime.setdefault(str(row["customer_id"]), []).append(tx_day)
    expected = {}
    for customer_id, rows in purchases.items():
        last = max(tx_day for tx_day, _ in rows)
        known = plans.get(customer_id)
        if (day - last).days >= ACTIVE_WINDOW_DAYS or known is None:
            continue
        if known[3] > day:  # type: ignore[operator]
            continue
        in_30 = [amount for tx_day, amount in rows if (day - tx_day).days < 30]
        expected[customer_id] = {
            "plan": known[2],
            "recency_days": (day - last).days,
            "tx_count_30d": len(in_30),
            "spend_30d": round(sum(in_30), 2),
            # the whole history, not only the look-back
            "lifetime_tx_count": len(lifetime[customer_id]),
            "lifetime_purchase_days": len(set(lifetime[customer_id])),
            "lifetime_days": (day - min(lifetime[customer_id])).days,
        }
    return expected


def test_features_match_a_plain_python_reference(bulk: BuiltWorld) -> None:
    columns = read_columns(bulk.settings, "customer_features")
    for day in (BUILD_START, date(2024, 2, 1), BUILD_END):
        rows = read_rows(
            bulk.settings, "customer_features", f"as_of_date = '{day.isoformat()}'"
        )
        got = {
            str(row[0]): {
                name: row[columns.index(name)]
                for name in (
                    "plan",
                    "recency_days",
                    "tx_count_30d",
                    "spend_30d",
                    "lifetime_tx_count",
                    "lifetime_purchase_days",
                    "lifetime_days",
                )
            }
            for row in rows
        }
        for values in got.values():
            values["spend_30d"] = round(float(values["spend_30d"]), 2)  # type: ignore[arg-type]
        assert got == _reference_features(bulk.world, day), day


def test_labels_match_a_plain_python_reference(bulk: BuiltWorld) -> None:
    purchases = _first_arrivals(bulk.world)
    labels = read_rows(bulk.settings, "churn_labels")
    assert labels
    for customer_id, as_of_date, churned, horizon_days, *_ in labels:
        end = as_of_date + timedelta(days=horizon_days)
        bought = any(
            row["customer_id"] == customer_id
            and as_of_date < row["transaction_at"].date() <= end  # type: ignore[attr-defined]
            and as_of_date < row["partition_date"] <= end  # type: ignore[operator]
            for row in purchases
        )
        assert churned == (not bought), (customer_id, as_of_date)
    assert {row[3] for row in labels} == {HORIZON_DAYS}
    assert 0 < sum(row[2] for row in labels) < len(labels)


def test_a_redelivered_purchase_counts_once(bulk: BuiltWorld) -> None:
    facts = read_rows(bulk.settings, "fct_transactions")
    ids = [row[0] for row in facts]
    assert len(ids) == len(set(ids))
    assert max(float(row[3]) for row in facts) < 999  # the second copy's amount


def test_dim_customers_is_as_known_at_end_date(bulk: BuiltWorld) -> None:
    columns = read_columns(bulk.settings, "dim_customers")
    rows = read_rows(bulk.settings, "dim_customers")
    assert len(rows) == len({row[0] for row in rows}) == 40
    as_of = columns.index("as_of_date")
    last = columns.index("last_purchase_date")
    assert {row[as_of] for row in rows} == {BUILD_END}
    assert all(row[last] is None or row[last] <= BUILD_END for row in rows)


def test_manifest_hash_is_stable_across_runs(
    bulk: BuiltWorld, nightly: BuiltWorld
) -> None:
    first = manifest_hash(bulk.settings)
    assert len(first) == 64
    # a different warehouse, other vars, a nightly instead of a full refresh
    assert manifest_hash(nightly.settings) == first


def test_yml_accepted_values_match_the_contract() -> None:
    project = REPO_ROOT / "dbt_project" / "models"
    columns: dict[tuple[str, str], list[str]] = {}
    for path in project.rglob("*.yml"):
        for model in yaml.safe_load(path.read_text()).get("models", []):
            for column in model.get("columns", []):
                for test in column.get("data_tests", []):
                    if isinstance(test, dict) and "accepted_values" in test:
                        values = test["accepted_values"]["arguments"]["values"]
                        columns[(model["name"], column["name"])] = values
    renamed = {"review_decision": "decision"}
    for table, contract in TABLES.items():
        for column, allowed in contract.allowed_values.items():
            model = f"stg_landing__{table}"
            name = next((k for k, v in renamed.items() if v == column), column)
            assert sorted(columns[(model, name)]) == sorted(
                v for v in allowed if v is not None
            ), (model, column)


def test_build_refuses_a_missing_warehouse_or_a_bad_range(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(DbtBuildError, match="does not exist"):
        dbt_build(settings, BUILD_START, BUILD_END)
    with pytest.raises(ValueError):
        dbt_build(settings, BUILD_END, BUILD_START)
    with pytest.raises(ValueError):
        dbt_build(settings, BUILD_START, BUILD_END, every=0)


def test_a_failing_data_test_raises_naming_the_node(tmp_path: Path) -> None:
    world = make_world(seed=3, n_days=6, n_customers=5)
    # the same transaction_id at another time in a later partition: not a
    # redelivery, so both copies survive and the key is no longer unique
    first_day = min(world.rows["transactions"])
    original = world.rows["transactions"][first_day][0]
    clash = dict(
        original, transaction_at=original["transaction_at"] + timedelta(hours=1)
    )  # type: ignore[operator]
    world.add("transactions", first_day + timedelta(days=1), clash)
    settings = make_settings(tmp_path)
    load_world(settings.warehouse_path, world)
    with pytest.raises(DbtBuildError) as failure:
        dbt_build(
            settings,
            world.first_day,
            world.last_day,
            full_refresh=True,
            select="+fct_transactions",
        )
    assert "unique_fct_transactions_transaction_id" in str(failure.value)
    assert any(
        node.name == "unique_fct_transactions_transaction_id"
        for node in failure.value.failures
    )


def test_only_days_since_last_contact_may_be_null(bulk: BuiltWorld) -> None:
    columns = read_columns(bulk.settings, "customer_features")
    nulls = ", ".join(f'count(*) - count("{name}")' for name in columns)
    with connect(bulk.settings.warehouse_path, read_only=True) as con:
        row = con.execute(f"select {nulls} from marts.customer_features").fetchone()
    assert row is not None
    null_counts = dict(zip(columns, row, strict=True))
    assert null_counts.pop("days_since_last_contact") > 0
    assert all(count == 0 for count in null_counts.values()), null_counts


def test_nightly_build_leaves_the_staging_data_tests_to_the_landing_gate(
    nightly: BuiltWorld,
) -> None:
    result = nightly.results[-1]
    tests = [n for n in result.nodes if n.resource_type == "test"]
    models = {n.name for n in result.nodes if n.resource_type == "model"}
    assert not [n for n in tests if "stg_landing__" in n.unique_id]
    assert not [n for n in result.nodes if n.resource_type == "unit_test"]
    # the staging views are still built, and the marts keep their data tests
    assert {"stg_landing__transactions", "customer_features"} <= models
    assert any("customer_features" in n.unique_id for n in tests)
    assert all(n.status == "pass" for n in tests)
