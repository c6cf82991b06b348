"""The landing gate: quarantine rules, schema faults, thresholds, idempotent reruns."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from ml.config.settings import Settings
from ml.data.validation import (
    GateError,
    LandingReport,
    ValidationGateError,
    build_data_docs,
    validate_landing,
)
from ml.ops.status import collect_status
from ml.storage.landing_files import partition_dir, write_partition, write_raw_partition
from tests.integration.gates.gate_fixtures import (
    DAY,
    at,
    customers,
    decided_before,
    good_day,
    review_decisions,
    settings_with,
    support_tickets,
    table,
    transactions,
)

CORE = ("customers", "transactions")
YESTERDAY = DAY - timedelta(days=1)


def rows(settings: Settings, sql: str, params: list[Any] | None = None) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def raw_count(settings: Settings, name: str, day: date) -> int:
    sql = f"select count(*) from raw.{name} where partition_date = ?"
    return rows(settings, sql, [day])[0][0]


def write_transactions(settings: Settings, day: date, columns: dict) -> None:
    write_partition(
        settings.landing_dir, "transactions", day, table("transactions", columns)
    )


def gate(settings: Settings, day: date = DAY, tables: tuple = CORE) -> LandingReport:
    return validate_landing(settings, day, tables, data_docs=False)


def test_a_good_day_loads_every_table_and_records_results(settings: Settings) -> None:
    good_day(settings.landing_dir, DAY)
    decided_before(settings.warehouse_path, DAY)  # what the feedback answers
    report = validate_landing(settings, DAY)
    assert report.passed and report.run_date == DAY
    counts = json.loads(json.dumps(report.as_counts()))
    assert counts["rows_loaded"] == report.rows_loaded == report.rows_read
    assert {t.status for t in report.tables.values()} == {"loaded"}
    for name, t in report.tables.items():
        assert t.rows_read == t.rows_loaded > 0 and t.rows_quarantined == 0
        assert raw_count(settings, name, DAY) == t.rows_loaded
        assert t.expectations_evaluated > 0 and t.expectations_failed == 0
    results = rows(
        settings,
        "select table_name, count(*), bool_and(success) from ops.validation_results "
        "where run_date = ? group by 1",
        [DAY],
    )
    assert {r[0] for r in results} == set(report.tables)
    assert all(r[1] > 0 and r[2] for r in results)
    source = rows(settings, "select distinct source_file from raw.transactions")
    assert source == [("transactions/dt=2025-03-02/part-0000.parquet",)]
    assert (settings.gx_dir / "uncommitted" / "data_docs" / "local_site").is_dir()
    assert build_data_docs(settings).is_file()


def _null_key(c: dict) -> None:
    c["transaction_id"][0] = None


def _null_required(c: dict) -> None:
    c["amount"][1] = None


def _not_allowed(c: dict) -> None:
    c["category"][2] = "toys"


def _negative(c: dict) -> None:
    c["amount"][3] = -5.0


def _future(c: dict) -> None:
    c["transaction_at"][4] = at(DAY + timedelta(days=1), 0, 0)


def _unknown_customer(c: dict) -> None:
    c["customer_id"][5] = "C999"


def _duplicate(c: dict) -> None:
    c["transaction_id"][7] = c["transaction_id"][6]


def _duplicate_of_raw(c: dict) -> None:
    c["transaction_id"][8] = "OLD-0003"


RULES = {
    "null_key": (_null_key, "transaction_id", "None"),
    "null_required": (_null_required, "amount", "T0302-0001"),
    "value_not_allowed": (_not_allowed, "category", "toys"),
    "negative_amount": (_negative, "amount", "-5.0"),
    "future_event_time": (_future, "transaction_at", "2025-03-03T00:00:00"),
    "unknown_customer": (_unknown_customer, "customer_id", "C999"),
    "duplicate_key": (_duplicate, "transaction_id", "T0302-0006"),
    "duplicate_of_raw": (_duplicate_of_raw, "transaction_id", "OLD-0003"),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_each_row_rule_quarantines_with_its_reason(
    settings: Settings, rule: str
) -> None:
    inject, column, shown = RULES[rule]
    # yesterday: the customers and some transactions are already in raw
    write_partition(
        settings.landing_dir,
        "customers",
        YESTERDAY,
        table("customers", customers(YESTERDAY)),
    )
    write_transactions(settings, YESTERDAY, transactions(YESTERDAY, 5, prefix="OLD"))
    gate(settings, YESTERDAY)
    columns = transactions(DAY)
    inject(columns)
    write_transactions(settings, DAY, columns)  # no customers partition today

    report = gate(settings)

    reason = "duplicate_key" if rule == "duplicate_of_raw" else rule
    tx = report.tables["transactions"]
    assert tx.quarantined == {reason: 1}
    assert tx.rows_read == 40 == tx.rows_loaded + tx.rows_quarantined
    assert raw_count(settings, "transactions", DAY) == 39
    assert raw_count(settings, "transactions", YESTERDAY) == 5
    assert report.tables["customers"].status == "absent"
    (q,) = rows(
        settings,
        "select reason, column_name, source_file, run_date, record_key, record_json "
        "from ops.quarantine where table_name = 'transactions'",
    )
    assert q[:4] == (
        reason,
        column,
        "transactions/dt=2025-03-02/part-0000.parquet",
        DAY,
    )
    record = json.loads(q[5])
    assert set(record) == set(table("transactions", transactions(DAY)).column_names)
    assert shown in (q[4] + q[5])
    (rule_row,) = rows(
        settings,
        "select unexpected_count, success from ops.validation_results "
        "where expectation_type = 'quarantine_rule' and reason = ? and run_date = ?",
        [reason, DAY],
    )
    assert rule_row == (1, False)


def test_duplicates_keep_the_first_good_row(settings: Settings) -> None:
    good_day(settings.landing_dir, DAY, CORE)
    columns = transactions(DAY)
    columns["transaction_id"][1] = columns["transaction_id"][0]
    columns["amount"][0] = -1.0  # the first copy is bad: the second one is kept
    write_transactions(settings, DAY, columns)
    report = gate(settings)
    assert report.tables["transactions"].quarantined == {"negative_amount": 1}
    kept = rows(
        settings,
        "select amount from raw.transactions where transaction_id = ?",
        [columns["transaction_id"][0]],
    )
    assert kept == [(11.0,)]


def test_customers_known_by_today_partition_or_raw_and_other_tables(
    settings: Settings,
) -> None:
    good_day(settings.landing_dir, YESTERDAY, CORE)
    gate(settings, YESTERDAY)
    # today: a new customer signs up and buys; a ticket and a review name customers
    write_partition(
        settings.landing_dir,
        "customers",
        DAY,
        table("customers", customers(DAY, ["C100"])),
    )
    columns = transactions(DAY)
    columns["customer_id"][0] = "C100"  # known from today's partition
    columns["customer_id"][1] = "C001"  # known from raw only
    write_transactions(settings, DAY, columns)
    good_day(settings.landing_dir, DAY, ("support_tickets", "review_decisions"))
    decided_before(settings.warehouse_path, DAY)
    tickets = table("support_tickets", {**_tickets_with_unknown()})
    write_partition(settings.landing_dir, "support_tickets", DAY, tickets)
    report = validate_landing(settings, DAY, data_docs=False)
    assert report.tables["transactions"].rows_quarantined == 0
    assert report.tables["support_tickets"].quarantined == {"unknown_customer": 1}
    assert report.tables["review_decisions"].rows_quarantined == 0
    assert report.tables["action_results"].status == "absent"


def _tickets_with_unknown() -> dict:
    columns = support_tickets(DAY, 40)
    columns["topic"] = ["billing"] * 40
    columns["severity"] = ["low"] * 40
    columns["customer_id"][3] = "C404"
    return columns


def _missing_column(t: pa.Table) -> pa.Table:
    return t.drop_columns(["amount"])


def _renamed_column(t: pa.Table) -> pa.Table:
    return t.rename_columns(["amt" if c == "amount" else c for c in t.column_names])


def _mistyped_column(t: pa.Table) -> pa.Table:
    return t.set_column(
        2, "transaction_at", t.column("transaction_at").cast(pa.string())
    )


def _extra_column(t: pa.Table) -> pa.Table:
    return t.append_column("coupon", pa.array(["X"] * t.num_rows))


SCHEMA_FAULTS = {
    "missing": (_missing_column, ["missing column 'amount'"]),
    "renamed": (
        _renamed_column,
        ["missing column 'amount'", "unexpected 'amt'", "amt=["],
    ),
    "mistyped": (_mistyped_column, ["'transaction_at'", "type string", "2025-03-02"]),
    "extra": (_extra_column, ["unexpected column 'coupon'"]),
}


@pytest.mark.parametrize("fault", list(SCHEMA_FAULTS))
def test_schema_faults_stop_the_run_and_keep_loaded_rows(
    settings: Settings, fault: str
) -> None:
    change, expected = SCHEMA_FAULTS[fault]
    good_day(settings.landing_dir, DAY, CORE)
    gate(settings)  # loaded once with good data
    bad = change(table("transactions", transactions(DAY, 41)))
    write_raw_partition(settings.landing_dir, "transactions", DAY, bad)

    with pytest.raises(ValidationGateError) as caught:
        gate(settings)

    message = str(caught.value)
    assert isinstance(caught.value, GateError)
    assert message.startswith("transactions dt=2025-03-02: expect_")
    for part in expected:
        assert part in message
    assert raw_count(settings, "transactions", DAY) == 40  # not 41, not 0
    assert caught.value.report is not None
    assert caught.value.report.tables["transactions"].status == "failed"
    assert caught.value.report.tables["customers"].status == "not_loaded"
    failures = rows(
        settings,
        "select count(*) from ops.validation_results where table_name = "
        "'transactions' and run_date = ? and not success and severity = 'schema'",
        [DAY],
    )
    assert failures[0][0] >= 1


def test_empty_and_missing_required_partitions_stop_the_run(settings: Settings) -> None:
    good_day(settings.landing_dir, DAY, ("customers",))
    with pytest.raises(
        ValidationGateError, match=r"transactions dt=2025-03-02: .*missing"
    ):
        gate(settings)
    empty = table("transactions", transactions(DAY, 0))
    write_partition(settings.landing_dir, "transactions", DAY, empty)
    with pytest.raises(
        ValidationGateError, match=r"transactions dt=2025-03-02: .*empty"
    ):
        gate(settings)
    assert raw_count(settings, "customers", DAY) == 0
    # a table that is not required may be empty or absent
    write_transactions(settings, DAY, transactions(DAY))
    no_tickets = table("support_tickets", support_tickets(DAY, 0))
    write_partition(settings.landing_dir, "support_tickets", DAY, no_tickets)
    report = validate_landing(settings, DAY, data_docs=False)
    assert report.tables["support_tickets"].status == "loaded"
    assert report.tables["support_tickets"].rows_read == 0
    assert report.tables["action_results"].status == "absent"
    assert raw_count(settings, "customers", DAY) == 5


def test_too_many_bad_rows_stop_the_run_and_load_nothing(tmp_path: Path) -> None:
    settings = settings_with(
        tmp_path, max_bad_row_fraction=0.05, min_bad_rows={"transactions": 3}
    )
    good_day(settings.landing_dir, YESTERDAY, CORE)
    gate(settings, YESTERDAY)
    good_day(settings.landing_dir, DAY, CORE)
    gate(settings)  # the good version of today is loaded
    columns = transactions(DAY, 41)
    for i in (0, 1):
        columns["amount"][i] = -1.0 - i
    columns["customer_id"][2] = "C999"  # 3 of 41 = 7.3 % > 5 %
    write_transactions(settings, DAY, columns)

    with pytest.raises(ValidationGateError) as caught:
        gate(settings)

    message = str(caught.value)
    assert "transactions dt=2025-03-02: 3 of 41 rows (7.3%)" in message
    assert "negative_amount 2 (amount: -1.0, -2.0)" in message
    assert "unknown_customer 1 (customer_id: 'C999')" in message
    assert raw_count(settings, "transactions", DAY) == 40
    assert raw_count(settings, "transactions", YESTERDAY) == 40
    assert raw_count(settings, "customers", DAY) == 5
    quarantined = rows(
        settings, "select reason, count(*) from ops.quarantine group by 1 order by 1"
    )
    assert quarantined == [("negative_amount", 2), ("unknown_customer", 1)]
    # the stopped run loaded nothing, and its quarantine rows say so, as does
    # loopline status
    assert rows(settings, "select distinct loaded from ops.quarantine") == [(False,)]
    status = collect_status(
        settings, airflow_url="sqlite:///no/such/airflow.db", with_champion=False
    )
    assert [(q.reason, q.rows, q.loaded) for q in status.quarantine] == [
        ("negative_amount", 2, False),
        ("unknown_customer", 1, False),
    ]

    # the same rows pass under a looser threshold: 41 - 3 loaded
    looser = settings_with(
        tmp_path, max_bad_row_fraction=0.1, min_bad_rows={"transactions": 3}
    )
    assert gate(looser).tables["transactions"].rows_loaded == 38
    assert rows(settings, "select distinct loaded from ops.quarantine") == [(True,)]


def test_a_few_bad_rows_of_a_small_table_are_quarantined_not_fatal(
    tmp_path: Path,
) -> None:
    """1 bad row of 9 customers rows (11 %) and 2 of 6 review rows (33 %) are above
    the 5 % limit but below validation.min_bad_rows: the night goes on."""
    settings = settings_with(tmp_path, max_bad_row_fraction=0.05)
    signups = customers(DAY, [f"C{i:03d}" for i in range(1, 10)])
    signups["plan"][8] = "gold"  # not an allowed plan
    write_partition(settings.landing_dir, "customers", DAY, table("customers", signups))
    write_transactions(settings, DAY, transactions(DAY))
    reviews = {k: v * 2 for k, v in review_decisions(DAY).items()}
    reviews["decision_id"] = [f"D0302-{i}" for i in range(6)]
    reviews["decided_at"] = [at(DAY, 7, i) for i in range(6)]
    decided_before(settings.warehouse_path, DAY, {}, reviews)  # six queued cases
    assert reviews["decision"][4] == "change"
    reviews["new_action"][4] = None  # a change without its new action
    reviews["decision_id"][5] = "D-never-queued"
    write_partition(
        settings.landing_dir,
        "review_decisions",
        DAY,
        table("review_decisions", reviews),
    )

    report = validate_landing(
        settings,
        DAY,
        ("customers", "transactions", "review_decisions"),
        data_docs=False,
    )

    assert report.passed
    assert report.tables["customers"].quarantined == {"value_not_allowed": 1}
    assert report.tables["customers"].rows_loaded == 8
    assert report.tables["review_decisions"].quarantined == {
        "invalid_new_action": 1,
        "unknown_decision": 1,
    }
    assert report.tables["review_decisions"].rows_loaded == 4
    assert rows(
        settings,
        "select table_name, reason, record_key, loaded from ops.quarantine "
        "order by all",
    ) == [
        ("customers", "value_not_allowed", "C009|2025-03-02 08:08:00", True),
        ("review_decisions", "invalid_new_action", "D0302-4|2025-03-02 07:04:00", True),
        (
            "review_decisions",
            "unknown_decision",
            "D-never-queued|2025-03-02 07:05:00",
            True,
        ),
    ]
    # with a minimum of one bad row the same customers partition stops the run
    strict = settings_with(
        tmp_path, max_bad_row_fraction=0.05, min_bad_rows={"customers": 1}
    )
    with pytest.raises(ValidationGateError, match=r"customers dt=2025-03-02: 1 of 9"):
        validate_landing(strict, DAY, ("customers", "transactions"), data_docs=False)


def test_rerunning_a_date_is_idempotent(settings: Settings) -> None:
    good_day(settings.landing_dir, DAY, CORE)
    columns = transactions(DAY)
    columns["amount"][0] = -3.0
    write_transactions(settings, DAY, columns)
    snapshot_sql = {
        "raw": "select * from raw.transactions order by transaction_id",
        "customers": "select * from raw.customers order by customer_id",
        "quarantine": "select * from ops.quarantine order by all",
        "results": "select * from ops.validation_results order by all",
    }
    gate(settings)
    first = {k: rows(settings, sql) for k, sql in snapshot_sql.items()}
    gate(settings)
    second = {k: rows(settings, sql) for k, sql in snapshot_sql.items()}
    assert first == second
    assert len(first["raw"]) == 39 and len(first["quarantine"]) == 1


def test_csv_files_are_read_with_their_source_file(settings: Settings) -> None:
    good_day(settings.landing_dir, DAY, ("customers",))
    folder = partition_dir(settings.landing_dir, "transactions", DAY)
    folder.mkdir(parents=True)
    data = table("transactions", transactions(DAY))
    pacsv.write_csv(data.slice(0, 20), folder / "a.csv")
    write_partition(settings.landing_dir, "transactions", DAY, data.slice(20), part=1)
    report = gate(settings)
    assert report.tables["transactions"].files == 2
    assert report.tables["transactions"].rows_loaded == 40
    files = rows(
        settings,
        "select source_file, count(*) from raw.transactions group by 1 order by 1",
    )
    assert files == [
        ("transactions/dt=2025-03-02/a.csv", 20),
        ("transactions/dt=2025-03-02/part-0001.parquet", 20),
    ]
