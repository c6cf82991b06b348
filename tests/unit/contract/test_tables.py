"""Every warehouse table has one owner: ``ml/contract/tables.py`` declares each table
Python writes once, with its DDL and the one module that writes it; dbt owns its
models; no other module of ``ml`` creates a table; dbt knows the Python tables as
sources."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import duckdb
import pytest
import yaml

from ml.contract import tables
from ml.contract.schema import TABLES
from ml.contract.tables import (
    ANALYTICS,
    BY_NAME,
    PYTHON_TABLES,
    WAREHOUSE,
    WarehouseTable,
)

ROOT = Path(__file__).resolve().parents[3]
ML = ROOT / "ml"
MODELS = ROOT / "dbt_project" / "models"
TABLES_FILE = ML / "contract" / "tables.py"

# A "create table" statement in Python source, up to the table name: a literal
# (marts.x), a formatted name ({TABLE}, {schema}."{table}"), whatever follows.
CREATE = re.compile(
    r"create\s+(?:or\s+replace\s+)?(temp\s+|temporary\s+)?table\s+"
    r"(?:if\s+not\s+exists\s+)?(\S+)",
    re.IGNORECASE,
)
# A literal qualified table name, not part of a module path (ml.ops.tasks) nor a
# method call (raw.get(...)).
QUALIFIED = re.compile(
    r"(?<![\w.])(raw|staging|intermediate|marts|ops)\.([a-z_]+)\b(?!\()"
)

# The only "create table" statements allowed outside ml/contract/tables.py, with
# the tables they create; each is checked below.
ALLOWED_CREATES = {
    # The simulator stands in for dbt in lab tests: it writes two dbt models.
    ("ml/sim/marts.py", "marts.customer_features"),
    ("ml/sim/marts.py", "marts.training_examples"),
    # The analyst copy copies each published warehouse table under its own name.
    ("ml/analytics/publish.py", '{schema}."{table}"'),
    # The import's own in-memory database, never the warehouse: a table, not a
    # temp table, so the cursors that write its day spans side by side see it.
    ("ml/data/ingest/transaction_rows.py", "tx_parsed"),
}


def ml_sources() -> dict[str, str]:
    return {
        path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(ML.rglob("*.py"))
    }


def dbt_models() -> dict[str, str]:
    """Every dbt model by name, with the schema it is built in (its folder)."""
    return {path.stem: path.parent.name for path in MODELS.rglob("*.sql")}


def declared_objects() -> list[WarehouseTable]:
    """Every declaration bound at module level in ``ml.contract.tables``."""
    found = [v for v in vars(tables).values() if isinstance(v, WarehouseTable)]
    found += list(tables.RAW_TABLES.values())
    return list({id(t): t for t in found}.values())


def test_every_table_is_declared_exactly_once() -> None:
    names = [t.name for t in PYTHON_TABLES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert set(BY_NAME) == set(names)
    # no declaration left out of PYTHON_TABLES
    assert {t.name for t in declared_objects()} == set(names)
    for table in PYTHON_TABLES:
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", table.name), table.name
        assert table.description.strip() and "\n" not in table.description
        assert table.database in (WAREHOUSE, ANALYTICS)
    # every landing table of the contract has its raw table
    assert {t.table for t in PYTHON_TABLES if t.schema == "raw"} == set(TABLES)


def test_every_name_constant_is_defined_once_in_ml() -> None:
    """A table's name is spelled in one place: a ``*_TABLE = "schema.table"``
    constant exists only in ``ml/contract/tables.py``."""
    constant = re.compile(r'^([A-Z_]+_TABLE)\s*=\s*"(\w+\.\w+)"', re.MULTILINE)
    elsewhere = {
        (path, m.group(1), m.group(2))
        for path, text in ml_sources().items()
        if path != "ml/contract/tables.py"
        for m in constant.finditer(text)
    }
    # the lifetime state is a dbt model, read by name by training
    assert elsewhere <= {
        (
            "ml/prediction/training.py",
            "LIFETIMES_TABLE",
            "intermediate.int_customer_lifetimes_accumulated",
        ),
        ("ml/prediction/examples.py", "TRAINING_TABLE", "marts.training_examples"),
        ("ml/prediction/examples.py", "FEATURES_TABLE", "marts.customer_features"),
    }
    for _, _, name in elsewhere:
        assert name.split(".")[1] in dbt_models(), name
    values = [v for k, v in vars(tables).items() if k.endswith("_TABLE")]
    assert len(values) == len(set(values))
    assert set(values) <= set(BY_NAME)


def test_every_declared_ddl_creates_its_table_in_a_fresh_database() -> None:
    con = duckdb.connect()
    for schema in sorted({t.schema for t in PYTHON_TABLES}):
        con.execute(f"create schema {schema}")
    for table in PYTHON_TABLES:
        if table.ddl is None:
            continue
        assert (
            table.ddl.lstrip()
            .lower()
            .startswith(f"create table if not exists {table.name}")
        ), table.name
        before = set(_tables(con))
        con.execute(table.ddl)
        con.execute(table.ddl)  # idempotent: the owners run it on every call
        assert set(_tables(con)) - before == {table.name}
        columns = {
            r[0]
            for r in con.execute(
                "select column_name from duckdb_columns() "
                "where schema_name = ? and table_name = ?",
                [table.schema, table.table],
            ).fetchall()
        }
        assert set(table.key) <= columns, (table.name, table.key)
    con.close()


def test_the_tables_without_fixed_ddl_are_created_by_their_owner() -> None:
    """Their owner builds the columns from its first row, through the helpers of
    ``ml.contract.tables``."""
    dynamic = [t for t in PYTHON_TABLES if t.ddl is None]
    assert {t.name for t in dynamic} == {
        "marts.policy_daily",
        "marts.policy_performance",
    }
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute(tables.create_from_columns(tables.POLICY_DAILY, "run_date date, n int"))
    con.execute("create view frame as select date '2025-03-01' as run_date, 1.0 as u")
    con.execute(tables.create_like(tables.POLICY_PERFORMANCE, "frame"))
    assert set(_tables(con)) == {t.name for t in dynamic}
    assert con.execute("select count(*) from marts.policy_performance").fetchone() == (
        0,
    )
    con.close()
    sources = ml_sources()
    for table, helper in (
        (tables.POLICY_DAILY, "create_from_columns(POLICY_DAILY"),
        (tables.POLICY_PERFORMANCE, "create_like(POLICY_PERFORMANCE"),
    ):
        assert helper in sources[_module_path(table.owner)], table.name


def test_the_owners_create_their_tables_in_a_real_warehouse(tmp_path: Path) -> None:
    """The owners' own set-up (what each step runs before it writes) creates every
    declared warehouse table with fixed DDL, and nothing else outside dbt."""
    from ml.data.validation.amounts import ensure_profile
    from ml.decision.decide_step import DDL as DECIDE_DDL
    from ml.feedback.feedback_tables import DDL as FEEDBACK_DDL
    from ml.feedback.outcomes import DDL as OUTCOMES_DDL
    from ml.prediction.score import SCORES_DDL
    from ml.storage.warehouse import connect, ensure_schemas

    with connect(tmp_path / "warehouse.duckdb") as con:
        ensure_schemas(con)
        ensure_profile(con)
        for ddl in (SCORES_DDL, DECIDE_DDL, OUTCOMES_DDL, FEEDBACK_DDL):
            con.execute(ddl)
        created = set(_tables(con))
    expected = {
        t.name for t in PYTHON_TABLES if t.database == WAREHOUSE and t.ddl is not None
    }
    assert created == expected


def test_no_other_module_creates_a_table() -> None:
    found = set()
    for path, text in ml_sources().items():
        if path == "ml/contract/tables.py":
            continue
        for match in CREATE.finditer(text):
            if match.group(1):  # a temp table lives and dies with its connection
                continue
            found.add((path, match.group(2).rstrip("(")))
    assert found <= ALLOWED_CREATES, sorted(found - ALLOWED_CREATES)
    models = dbt_models()
    for path, name in ALLOWED_CREATES:
        if path == "ml/sim/marts.py":
            schema, model = name.split(".")
            assert models.get(model) == schema, name
            assert name not in BY_NAME


def test_every_table_ml_names_is_declared_or_a_dbt_model() -> None:
    models = dbt_models()
    unknown = set()
    for path, text in ml_sources().items():
        for schema, table in QUALIFIED.findall(text):
            name = f"{schema}.{table}"
            if name in BY_NAME or models.get(table) == schema:
                continue
            unknown.add((path, name))
    assert not unknown, sorted(unknown)


def test_no_table_has_two_owners() -> None:
    """A dbt model is never also a Python table."""
    models = dbt_models()
    assert not {t.table for t in PYTHON_TABLES} & set(models)
    assert not [t for t in PYTHON_TABLES if t.schema in ("staging", "intermediate")]


@pytest.mark.parametrize("table", PYTHON_TABLES, ids=lambda t: t.name)
def test_the_owner_exists_and_writes_the_table(table: WarehouseTable) -> None:
    assert importlib.util.find_spec(table.owner) is not None, table.owner
    importlib.import_module(table.owner)
    text = Path(ROOT / _module_path(table.owner)).read_text(encoding="utf-8")
    # the literal name, or a name ml.contract.tables binds to it
    names = {table.name} | {
        key
        for key, value in vars(tables).items()
        if value is table or value == table.name
    }
    if table.schema == "raw":  # written by partition through the contract name
        names |= {"raw.{table}"}
    assert any(re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", text) for n in names), (
        table.owner,
        names,
    )


def test_dbt_declares_every_python_table_as_a_source() -> None:
    sources: dict[tuple[str, str], dict[str, object]] = {}
    for path in MODELS.rglob("*.yml"):
        for source in yaml.safe_load(path.read_text()).get("sources", []):
            for entry in source["tables"]:
                sources[(source["schema"], entry["name"])] = entry
    warehouse = [t for t in PYTHON_TABLES if t.database == WAREHOUSE]
    assert set(sources) == {(t.schema, t.table) for t in warehouse}
    for table in warehouse:
        entry = sources[(table.schema, table.table)]
        assert str(entry.get("description", "")).strip(), table.name
        if table.schema == "raw":
            continue
        description = " ".join(str(entry["description"]).split())
        assert description == f"{table.description} Written by {table.owner}.", (
            table.name
        )
        columns = entry.get("columns") or []
        assert isinstance(columns, list)
        assert [c["name"] for c in columns] == list(table.key), table.name


def _tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        f"{s}.{t}"
        for s, t in con.execute(
            "select schema_name, table_name from duckdb_tables()"
        ).fetchall()
    ]


def _module_path(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    return Path(spec.origin).relative_to(ROOT).as_posix()
