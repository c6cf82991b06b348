"""Every warehouse table that Python writes: one declaration each, with one owner.

dbt owns the models under ``dbt_project/models`` (staging, intermediate, marts).
Every other table is written by exactly one module of ``ml``, its owner, and is
declared here: its qualified name, the owner (a dotted module name), what one row
is, the key or partition column(s) the owner replaces by, and its DDL. The owners
and every reader import the names and the DDL from here, so a table is named and
shaped in one place. dbt knows the tables as sources
(``dbt_project/models/sources_python.yml``, ``schema: marts`` and ``ops``; the raw
landing tables are the ``landing`` source), so its docs and lineage show them.

Two tables have no fixed DDL (``ddl`` is None): their columns follow the policy's
actions and channels, and the owner creates them from its first row with
:func:`create_from_columns` or :func:`create_like`. The ``ops.publication*``
tables live in the analyst copy (``analytics.duckdb``), not in the warehouse.

This module is the bottom layer with :mod:`ml.contract.schema`: it imports nothing
else from ``ml``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ml.contract.schema import ACTIONS, TABLES, TableContract

WAREHOUSE = "warehouse"
ANALYTICS = "analytics"

_ARROW_TO_DUCKDB = {
    pa.string(): "varchar",
    pa.date32(): "date",
    pa.timestamp("us"): "timestamp",
    pa.float64(): "double",
    pa.bool_(): "boolean",
    pa.int64(): "bigint",
}


@dataclass(frozen=True)
class WarehouseTable:
    """One table written by Python."""

    name: str  # schema.table
    owner: str  # the dotted name of the one module that writes it
    description: str  # what one row is, in one line
    key: tuple[str, ...]  # the key or partition column(s) the owner replaces by
    # ``create table if not exists`` (plus upgrades of older files); None when the
    # columns are only known at run time (see the module docstring)
    ddl: str | None
    database: str = WAREHOUSE

    @property
    def schema(self) -> str:
        return self.name.split(".")[0]

    @property
    def table(self) -> str:
        return self.name.split(".")[1]


def duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB column type for a contract column."""
    return _ARROW_TO_DUCKDB[arrow_type]


def raw_table_ddl(contract: TableContract) -> str:
    """``create table if not exists raw.<table>`` for a landing table."""
    cols = [f"{f.name} {duckdb_type(f.type)}" for f in contract.schema]
    cols += ["partition_date date not null", "source_file varchar"]
    return f"create table if not exists raw.{contract.name} ({', '.join(cols)})"


def create_from_columns(table: WarehouseTable, columns: str) -> str:
    """``create table if not exists`` for a table without fixed DDL, with the
    column list (``"name" type, ...``) its owner derived from its first row."""
    return f"create table if not exists {table.name} ({columns})"


def create_like(table: WarehouseTable, relation: str) -> str:
    """``create table if not exists`` for a table without fixed DDL, with the
    columns (and no rows) of ``relation``, a frame its owner registered."""
    return (
        f"create table if not exists {table.name} as select * from {relation} limit 0"
    )


def ddl_script(*tables: WarehouseTable) -> str:
    """The schemas and the DDL of ``tables``, as one script (in this order)."""
    schemas = dict.fromkeys(t.schema for t in tables)
    parts = [f"create schema if not exists {s}" for s in schemas]
    parts += [t.ddl.strip().rstrip(";") for t in tables if t.ddl]
    return ";\n".join(parts) + ";\n"


_EVS = ", ".join(f"ev_{a} double" for a in ACTIONS)

# ---------------------------------------------------------------- raw (landing)
RAW_TABLES = {
    name: WarehouseTable(
        name=f"raw.{name}",
        owner="ml.storage.warehouse",
        description=(
            f"Landing rows of {name} that passed the validation gate: {contract.grain}"
            ", plus partition_date (the day of arrival) and source_file."
        ),
        key=("partition_date",),
        ddl=raw_table_ddl(contract),
    )
    for name, contract in TABLES.items()
}

# ---------------------------------------------------------------- ops: the gates
QUARANTINE_TABLE = "ops.quarantine"
VALIDATION_RESULTS_TABLE = "ops.validation_results"
AMOUNT_PROFILE_TABLE = "ops.amount_profile"
AMOUNT_CUSTOMER_MAX_TABLE = "ops.amount_customer_max"

QUARANTINE = WarehouseTable(
    name=QUARANTINE_TABLE,
    owner="ml.data.validation.gate_tables",
    description="One landing row the gate set aside, with the reason and the record.",
    key=("run_date", "table_name"),
    ddl=f"""
create table if not exists {QUARANTINE_TABLE} (
    run_date date not null,
    table_name varchar not null,
    partition_date date not null,
    source_file varchar,
    reason varchar not null,
    record_key varchar,
    record_json varchar
);
-- columns added after the first release; "add column if not exists" upgrades old files
alter table {QUARANTINE_TABLE} add column if not exists column_name varchar;
-- true once the run that set the row aside loaded its table's good rows; false
-- when that run stopped (its gate failed, or it died) and loaded nothing
alter table {QUARANTINE_TABLE} add column if not exists loaded boolean
""",
)

VALIDATION_RESULTS = WarehouseTable(
    name=VALIDATION_RESULTS_TABLE,
    owner="ml.data.validation.gate_tables",
    description="One expectation checked on one table partition by a gate, and how.",
    key=("run_date", "table_name"),
    ddl=f"""
create table if not exists {VALIDATION_RESULTS_TABLE} (
    run_date date not null,
    suite_name varchar not null,
    table_name varchar not null,
    partition_date date not null,
    expectation_type varchar not null,
    column_name varchar,
    severity varchar not null,
    success boolean not null,
    element_count bigint,
    unexpected_count bigint,
    unexpected_percent double,
    example_values varchar
);
alter table {VALIDATION_RESULTS_TABLE} add column if not exists partition_end date;
alter table {VALIDATION_RESULTS_TABLE} add column if not exists reason varchar;
alter table {VALIDATION_RESULTS_TABLE} add column if not exists observed_value varchar
""",
)

AMOUNT_PROFILE = WarehouseTable(
    name=AMOUNT_PROFILE_TABLE,
    owner="ml.data.validation.amounts",
    description="Histogram of log10(amount) of the loaded purchases, per partition.",
    key=("partition_date", "log_bin"),
    ddl=f"""
create table if not exists {AMOUNT_PROFILE_TABLE} (
    partition_date date not null,
    log_bin integer not null,
    n bigint not null
)
""",
)

AMOUNT_CUSTOMER_MAX = WarehouseTable(
    name=AMOUNT_CUSTOMER_MAX_TABLE,
    owner="ml.data.validation.amounts",
    description="Each customer's largest loaded purchase, for the amount gate.",
    key=("customer_id",),
    ddl=f"""
create table if not exists {AMOUNT_CUSTOMER_MAX_TABLE} (
    customer_id varchar primary key,
    max_amount double not null
)
""",
)

# ---------------------------------------------------------------- ops: the runs
RUNS_TABLE = "ops.runs"
ALERTS_TABLE = "ops.alerts"

RUNS = WarehouseTable(
    name=RUNS_TABLE,
    owner="ml.ops.tasks",
    description="One pipeline step of one run date: status, config hash, who ran it.",
    key=("run_date", "step"),
    ddl=f"""
create table if not exists {RUNS_TABLE} (
    run_date date not null,
    step varchar not null,
    status varchar not null,
    config_hash varchar,
    detail varchar
);
-- who ran the step (ml.ops.tasks): status 'running' until it records its outcome,
-- so a step killed with kill -9 is told apart by its pid being gone on its host
alter table {RUNS_TABLE} add column if not exists pid integer;
alter table {RUNS_TABLE} add column if not exists host varchar;
alter table {RUNS_TABLE} add column if not exists started_at timestamp;
alter table {RUNS_TABLE} add column if not exists finished_at timestamp
""",
)

ALERTS = WarehouseTable(
    name=ALERTS_TABLE,
    owner="ml.ops.alerts",
    description="One failed task: its alert line and parts (rows are only appended).",
    key=(),
    ddl=f"""
create table if not exists {ALERTS_TABLE} (
    failed_at timestamp not null,
    dag_id varchar not null,
    task_id varchar not null,
    run_id varchar,
    run_date date,
    try_number integer,
    error_type varchar,
    cause varchar,
    hint varchar,
    line varchar,
    notified varchar
)
""",
)

# ---------------------------------------------------------------- marts: scoring
SCORES_TABLE = "marts.scores"

SCORES = WarehouseTable(
    name=SCORES_TABLE,
    owner="ml.prediction.score",
    description="One customer's churn probability on a run date, by the model named.",
    key=("run_date",),
    ddl=f"""
create table if not exists {SCORES_TABLE} (
    run_date date not null,
    customer_id varchar not null,
    p_churn double not null,
    model_version varchar not null,
    model_alias varchar not null
)
""",
)

# ---------------------------------------------------------------- marts: decide
# The landing gate checks feedback rows against decisions and review_queue.
DECISIONS_TABLE = "marts.decisions"
REVIEW_QUEUE_TABLE = "marts.review_queue"
REVIEW_APPLIED_TABLE = "marts.review_applied"
POLICY_DAILY_TABLE = "marts.policy_daily"

DECISIONS = WarehouseTable(
    name=DECISIONS_TABLE,
    owner="ml.decision.decide_step",
    description=(
        "One customer on a run date: arm (treated, holdout, review, none), action, "
        "expected values and the policy and model behind it."
    ),
    key=("run_date",),
    ddl=f"""
create table if not exists {DECISIONS_TABLE} (
    decision_id varchar not null,
    run_date date not null,
    customer_id varchar not null,
    arm varchar not null,
    action varchar,
    p_churn double,
    value_at_risk double,
    {_EVS},
    chosen_ev double,
    reason_codes varchar,
    policy_version varchar not null,
    model_version varchar,
    policy_mode varchar not null
)
""",
)

REVIEW_QUEUE = WarehouseTable(
    name=REVIEW_QUEUE_TABLE,
    owner="ml.decision.decide_step",
    description="One case routed to a person on a run date, with its evidence.",
    key=("run_date",),
    ddl=f"""
create table if not exists {REVIEW_QUEUE_TABLE} (
    decision_id varchar not null,
    run_date date not null,
    customer_id varchar not null,
    action varchar not null,
    p_churn double,
    value_at_risk double,
    {_EVS},
    expected_value double,
    reason_codes varchar,
    top_reasons varchar,
    history varchar,
    model_version varchar,
    policy_version varchar not null
)
""",
)

REVIEW_APPLIED = WarehouseTable(
    name=REVIEW_APPLIED_TABLE,
    owner="ml.decision.decide_step",
    description="One review decision applied on a run date to a case queued earlier.",
    key=("run_date",),
    ddl=f"""
create table if not exists {REVIEW_APPLIED_TABLE} (
    run_date date not null,
    review_decision_id varchar not null,
    queued_on date not null,
    customer_id varchar not null,
    proposed_action varchar,
    decision varchar not null,
    new_action varchar,
    applied_action varchar,
    applied_decision_id varchar,
    reviewer varchar,
    decided_at timestamp,
    reason_code varchar,
    note varchar
)
""",
)

POLICY_DAILY = WarehouseTable(
    name=POLICY_DAILY_TABLE,
    owner="ml.decision.decide_step",
    description=(
        "One run date's decision summary (counts, spend, capacity per action and "
        "channel); a column per action and channel of the policy."
    ),
    key=("run_date",),
    ddl=None,
)

# ---------------------------------------------------------------- marts: feedback
DECISION_OUTCOMES_TABLE = "marts.decision_outcomes"
POLICY_PERFORMANCE_TABLE = "marts.policy_performance"
MODEL_PERFORMANCE_TABLE = "marts.model_performance"
OVERRIDE_PERFORMANCE_TABLE = "marts.override_performance"
DRIFT_TABLE = "marts.drift"
# The learned policy parameters (read by ml.decision.parameters).
PARAMETERS_TABLE = "marts.policy_parameters"
RETRAIN_EVENTS_TABLE = "ops.retrain_events"

DECISION_OUTCOMES = WarehouseTable(
    name=DECISION_OUTCOMES_TABLE,
    owner="ml.feedback.outcomes",
    description=(
        "One matured decision with what happened: retained, realized spend, "
        "delivery status and review outcome."
    ),
    key=("run_date",),
    ddl=f"""
create table if not exists {DECISION_OUTCOMES_TABLE} (
    decision_id varchar not null,
    run_date date not null,
    matured_on date not null,
    customer_id varchar not null,
    arm varchar not null,
    action varchar,
    p_churn double,
    value_at_risk double,
    expected_ev double,
    cost double,
    policy_mode varchar,
    model_version varchar,
    segment varchar,
    retained boolean not null,
    realized_spend double,
    delivery_status varchar,
    delivered boolean,
    review_decision varchar,
    overridden boolean not null,
    is_randomized boolean
);
alter table {DECISION_OUTCOMES_TABLE} add column if not exists is_randomized boolean
""",
)

POLICY_PERFORMANCE = WarehouseTable(
    name=POLICY_PERFORMANCE_TABLE,
    owner="ml.feedback.outcomes",
    description=(
        "Treated against holdout for one decision date, per action and overall: "
        "retention, uplift with its interval, incremental value, cost, ROI."
    ),
    key=("run_date",),
    ddl=None,
)

MODEL_PERFORMANCE = WarehouseTable(
    name=MODEL_PERFORMANCE_TABLE,
    owner="ml.feedback.outcomes",
    description="Realized ROC AUC, PR AUC, Brier, ECE and calibration of one date.",
    key=("run_date",),
    ddl=f"""
create table if not exists {MODEL_PERFORMANCE_TABLE} (
    run_date date not null,
    model_version varchar,
    n bigint,
    positive_rate double,
    roc_auc double,
    pr_auc double,
    brier double,
    ece double,
    calibration varchar
)
""",
)

OVERRIDE_PERFORMANCE = WarehouseTable(
    name=OVERRIDE_PERFORMANCE_TABLE,
    owner="ml.feedback.outcomes",
    description="Outcomes of one decision date by review outcome, beside followed.",
    key=("run_date", "review_outcome"),
    ddl=f"""
create table if not exists {OVERRIDE_PERFORMANCE_TABLE} (
    run_date date not null,
    review_outcome varchar not null,
    n bigint not null,
    retention double,
    mean_spend double,
    delivered_rate double
)
""",
)

DRIFT = WarehouseTable(
    name=DRIFT_TABLE,
    owner="ml.feedback.drift",
    description="The PSI of one feature (or the score) of a day's snapshot.",
    key=("run_date",),
    ddl=f"""
create table if not exists {DRIFT_TABLE} (
    run_date date not null,
    model_version varchar,
    name varchar not null,
    kind varchar not null,
    psi double
)
""",
)

PARAMETERS = WarehouseTable(
    name=PARAMETERS_TABLE,
    owner="ml.feedback.learning",
    description="One learned uplift (action, segment) and the day it takes effect.",
    key=("computed_on",),
    ddl=f"""
create table if not exists {PARAMETERS_TABLE} (
    computed_on date not null,
    effective_from date not null,
    action varchar not null,
    segment varchar,
    n_treated bigint,
    n_holdout bigint,
    raw_estimate double,
    prior_mean double,
    posterior_mean double,
    low double,
    high double,
    alpha double,
    beta double,
    effective_n double,
    previous_mean double,
    changed boolean
)
""",
)

RETRAIN_EVENTS = WarehouseTable(
    name=RETRAIN_EVENTS_TABLE,
    owner="ml.feedback.retrain_check",
    description="One day's retrain check: fired or not, why, and what blocked it.",
    key=("day",),
    ddl=f"""
create table if not exists {RETRAIN_EVENTS_TABLE} (
    day date not null,
    fired boolean not null,
    reasons varchar,
    blocked varchar,
    evidence varchar,
    champion_version varchar,
    champion_test_auc double
)
""",
)

# ---------------------------------------------------------------- the analyst copy
PUBLICATION_TABLE = "ops.publication"
# The manifest of the Parquet partitions the catalog's views read.
FILES_TABLE = "ops.publication_files"
# Files the copy no longer names, kept for readers of an older copy until deleted.
RETIRED_TABLE = "ops.publication_retired"

PUBLICATION = WarehouseTable(
    name=PUBLICATION_TABLE,
    owner="ml.analytics.publish",
    description="One table of the analyst copy: rows and latest date, per publish.",
    key=("run_date", "table_name"),
    ddl=f"""
create table if not exists {PUBLICATION_TABLE} (
    run_date date not null,
    published_by varchar not null,
    table_name varchar not null,
    row_count bigint not null,
    latest_date date
)
""",
    database=ANALYTICS,
)

PUBLICATION_FILES = WarehouseTable(
    name=FILES_TABLE,
    owner="ml.analytics.publish",
    description="One Parquet partition of a table the analyst copy's views read.",
    key=("table_name", "partition_value"),
    ddl=f"""
create table if not exists {FILES_TABLE} (
    table_name varchar,
    partition_column varchar,
    signature varchar,
    partition_value date,
    row_count bigint,
    fingerprint varchar,
    files varchar[]
)
""",
    database=ANALYTICS,
)

PUBLICATION_RETIRED = WarehouseTable(
    name=RETIRED_TABLE,
    owner="ml.analytics.publish",
    description="One file no catalog names any more, and when it was retired.",
    key=("file",),
    ddl=f"""
create table if not exists {RETIRED_TABLE} (
    file varchar,
    retired_at timestamp with time zone
)
""",
    database=ANALYTICS,
)

# ---------------------------------------------------------------- all of them
PYTHON_TABLES: tuple[WarehouseTable, ...] = (
    *RAW_TABLES.values(),
    QUARANTINE,
    VALIDATION_RESULTS,
    AMOUNT_PROFILE,
    AMOUNT_CUSTOMER_MAX,
    RUNS,
    ALERTS,
    SCORES,
    DECISIONS,
    REVIEW_QUEUE,
    REVIEW_APPLIED,
    POLICY_DAILY,
    DECISION_OUTCOMES,
    POLICY_PERFORMANCE,
    MODEL_PERFORMANCE,
    OVERRIDE_PERFORMANCE,
    DRIFT,
    PARAMETERS,
    RETRAIN_EVENTS,
    PUBLICATION,
    PUBLICATION_FILES,
    PUBLICATION_RETIRED,
)

BY_NAME: dict[str, WarehouseTable] = {t.name: t for t in PYTHON_TABLES}

# The gates' and the runs' tables, created with the raw tables by
# ml.storage.warehouse.ensure_schemas.
OPS_TABLES = (VALIDATION_RESULTS, QUARANTINE, RUNS, ALERTS)
OPS_DDL = ddl_script(*OPS_TABLES)
ALERTS_DDL = ddl_script(ALERTS)
