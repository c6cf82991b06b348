"""Feedback rows are checked against the decisions they answer.

Action results and review decisions name a decision; the landing gate quarantines
a row whose decision we never sent (or sent on the row's own day, or only held
out), whose customer is not that decision's, or whose review says "change" without
the new action. Real warehouse, real landing files, the real gate.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import duckdb
import pytest

from ml.config.settings import Settings
from ml.data.validation import validate_landing
from ml.decision.decide_step import DDL, DECISIONS_TABLE
from ml.storage.landing_files import write_partition
from ml.storage.warehouse import connect
from tests.integration.gates.gate_fixtures import (
    DAY,
    action_results,
    at,
    customers,
    decided_before,
    review_decisions,
    table,
    transactions,
)

YESTERDAY = DAY - timedelta(days=1)


def _rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def _land(settings: Settings, name: str, columns: dict[str, list]) -> None:
    write_partition(settings.landing_dir, name, DAY, table(name, columns))


@pytest.fixture
def known(settings: Settings) -> Settings:
    """Customers C001..C005 and purchases landed today."""
    _land(settings, "customers", customers(DAY))
    _land(settings, "transactions", transactions(DAY))
    return settings


def _add_results(
    rows: dict[str, list], answers: list[tuple[str, str]], hour: int
) -> None:
    """Append a delivered e-mail result of ``DAY`` for each (decision, customer)."""
    for i, (decision_id, customer_id) in enumerate(answers):
        rows["decision_id"].append(decision_id)
        rows["customer_id"].append(customer_id)
        rows["action"].append("email")
        rows["channel"].append("email")
        rows["result_at"].append(at(DAY, hour, i))
        rows["status"].append("delivered")


def _decision(settings: Settings, decision_id: str, **values: Any) -> None:
    row = {
        "decision_id": decision_id,
        "run_date": YESTERDAY,
        "customer_id": "C001",
        "arm": "treated",
        "action": "email",
        "policy_version": "p1",
        "policy_mode": "model",
        **values,
    }
    with connect(settings.warehouse_path) as con:
        con.execute(DDL)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        con.execute(
            f"insert into {DECISIONS_TABLE} ({names}) values ({marks})",
            list(row.values()),
        )


def test_action_results_must_answer_a_decision_we_exported(known: Settings) -> None:
    results = action_results(DAY, 3)
    decided_before(known.warehouse_path, DAY, results, {})
    _decision(known, "D-holdout", customer_id="C004", arm="holdout")
    _decision(known, "D-today", customer_id="C005", run_date=DAY)
    extra = {
        # known decision, someone else's customer
        "D0302-1": "C003",
        # no such decision; a held-out one was never exported; nor was one of today
        "D-nope": "C001",
        "D-holdout": "C004",
        "D-today": "C005",
    }
    rows = {k: list(v) for k, v in results.items()}
    rows["customer_id"][1] = extra["D0302-1"]
    _add_results(rows, list(extra.items())[1:], hour=13)
    _land(known, "action_results", rows)

    report = validate_landing(known, DAY, data_docs=False)

    assert report.passed
    got = report.tables["action_results"]
    assert got.quarantined == {"unknown_decision": 3, "customer_mismatch": 1}
    assert got.rows_loaded == 2
    assert _rows(
        known,
        "select record_key, reason, column_name, loaded from ops.quarantine "
        "where table_name = 'action_results' order by record_key",
    ) == [
        ("D-holdout", "unknown_decision", "decision_id", True),
        ("D-nope", "unknown_decision", "decision_id", True),
        ("D-today", "unknown_decision", "decision_id", True),
        ("D0302-1", "customer_mismatch", "customer_id", True),
    ]
    assert _rows(known, "select decision_id from raw.action_results order by 1") == [
        ("D0302-0",),
        ("D0302-2",),
    ]
    counted = _rows(
        known,
        "select reason, unexpected_count from ops.validation_results "
        "where table_name = 'action_results' and expectation_type = "
        "'quarantine_rule' and reason in ('unknown_decision', 'customer_mismatch') "
        "order by 1",
    )
    assert counted == [("customer_mismatch", 1), ("unknown_decision", 3)]


def test_reviews_must_decide_a_queued_case_of_its_customer(known: Settings) -> None:
    reviews = {k: v * 2 for k, v in review_decisions(DAY).items()}
    reviews["decision_id"] = [f"D0302-{i}" for i in range(6)]
    reviews["decided_at"] = [at(DAY, 7, i) for i in range(6)]
    decided_before(known.warehouse_path, DAY, {}, reviews)
    # 0 approve, 1 change to email, 2 reject: good. Then the faults:
    reviews["customer_id"][3] = "C005"  # case D0302-3 is C001's
    reviews["new_action"][4] = None  # a change without its new action
    reviews["decision_id"][5] = "D-not-queued"
    reviews["decision"][5] = "approve"
    reviews["decision_id"].append("D0302-0")  # an approval that names an action
    reviews["customer_id"].append(reviews["customer_id"][0])
    reviews["reviewer"].append("ana")
    reviews["decided_at"].append(at(DAY, 9))
    reviews["decision"].append("approve")
    reviews["new_action"].append("call")
    reviews["reason_code"].append("ok")
    reviews["note"].append(None)
    _land(known, "review_decisions", reviews)

    report = validate_landing(known, DAY, data_docs=False)

    assert report.passed
    got = report.tables["review_decisions"]
    assert got.quarantined == {
        "invalid_new_action": 2,
        "unknown_decision": 1,
        "customer_mismatch": 1,
    }
    assert _rows(
        known,
        "select reason, record_key from ops.quarantine "
        "where table_name = 'review_decisions' order by record_key",
    ) == [
        ("unknown_decision", "D-not-queued|2025-03-02 07:05:00"),
        ("invalid_new_action", "D0302-0|2025-03-02 09:00:00"),
        ("customer_mismatch", "D0302-3|2025-03-02 07:03:00"),
        ("invalid_new_action", "D0302-4|2025-03-02 07:04:00"),
    ]
    assert _rows(
        known, "select decision_id, decision from raw.review_decisions order by 1"
    ) == [("D0302-0", "approve"), ("D0302-1", "change"), ("D0302-2", "reject")]


def test_the_reference_rules_give_the_same_verdicts_when_rerun(
    known: Settings,
) -> None:
    """A rerun of the date, after that night's decide wrote decisions of the same
    day, judges the feedback rows exactly as the first run did."""
    results = action_results(DAY, 2)
    decided_before(known.warehouse_path, DAY, results, {})
    results["decision_id"][1] = "D-later"
    _land(known, "action_results", results)
    validate_landing(known, DAY, data_docs=False)
    first = _rows(known, "select * from ops.quarantine order by all")
    _decision(known, "D-later", customer_id=results["customer_id"][1], run_date=DAY)
    validate_landing(known, DAY, data_docs=False)
    assert _rows(known, "select * from ops.quarantine order by all") == first
    assert [r[4] for r in first] == ["unknown_decision"]


def test_late_feedback_is_judged_against_decisions_outside_the_recent_window(
    known: Settings,
) -> None:
    """The first lookup reads only the decisions of the RECENT_DAYS before the
    feedback; a row not settled there (a late result, an unknown id, another
    customer's decision) is judged against every earlier decision, so a late
    result of an old decision loads and an old decision's wrong customer is still
    a mismatch."""
    from ml.data.validation.references import RECENT_DAYS

    old = DAY - timedelta(days=RECENT_DAYS + 20)
    results = action_results(DAY, 3)
    decided_before(known.warehouse_path, DAY, results, {})
    _decision(known, "D-old", customer_id="C002", run_date=old)
    _decision(known, "D-old-other", customer_id="C003", run_date=old)
    _decision(known, "D-old-held", customer_id="C004", run_date=old, arm="holdout")
    rows = {k: list(v) for k, v in results.items()}
    _add_results(
        rows,
        [("D-old", "C002"), ("D-old-other", "C001"), ("D-old-held", "C004")],
        hour=14,
    )
    rows["customer_id"][0] = "C005"  # a recent decision, someone else's customer
    _land(known, "action_results", rows)

    report = validate_landing(known, DAY, data_docs=False)

    got = report.tables["action_results"]
    assert got.quarantined == {"customer_mismatch": 2, "unknown_decision": 1}
    assert got.rows_loaded == 3
    assert _rows(
        known,
        "select record_key, reason from ops.quarantine "
        "where table_name = 'action_results' order by record_key",
    ) == [
        ("D-old-held", "unknown_decision"),
        ("D-old-other", "customer_mismatch"),
        ("D0302-0", "customer_mismatch"),
    ]
    assert ("D-old",) in _rows(known, "select decision_id from raw.action_results")
