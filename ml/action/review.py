"""Human review from a terminal: list queued cases, record decisions on them.

Reviewers' decisions are landing data (table ``review_decisions``), like any other
source: a decision recorded here is written as one parquet file in the landing partition
of the day it *arrives* (by default the day after the case was queued), goes through the
same gate, and is applied by the ``decide`` step of that day (see
:mod:`ml.decision.decide_step`). Recording a new decision on the same case replaces the
file, and the latest ``decided_at`` wins. Each record carries the reviewer, the time,
the decision (approve, reject or change to another action), a reason code and a note.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ml.config.settings import Settings
from ml.contract.schema import ACTIONS, REVIEW_DECISIONS, REVIEW_DECISIONS_TABLE
from ml.storage.landing_files import partition_dir
from ml.storage.procs import remove_stale_temp_files
from ml.storage.warehouse import connect, table_exists

TABLE = REVIEW_DECISIONS_TABLE.name


class ReviewError(ValueError):
    """A review decision that cannot be recorded (unknown case, bad action...)."""


@dataclass(frozen=True)
class ReviewRecord:
    """One recorded review decision and where it was written."""

    decision_id: str
    customer_id: str
    decision: str
    new_action: str | None
    arrives_on: date
    path: Path


def pending_cases(
    settings: Settings, run_date: date | None = None, database: Path | None = None
) -> pd.DataFrame:
    """Review cases of ``run_date`` (default: the latest queued date) that no
    applied review decision has closed yet, read from ``database`` (default: the
    warehouse; the CLI passes the analyst copy)."""
    with connect(database or settings.warehouse_path, read_only=True) as con:
        if not table_exists(con, "marts", "review_queue"):
            return pd.DataFrame()
        if run_date is None:
            found = con.execute(
                "select max(run_date) from marts.review_queue"
            ).fetchone()
            if not found or found[0] is None:
                return pd.DataFrame()
            run_date = found[0]
        return con.execute(
            """
            select q.run_date, q.decision_id, q.customer_id, q.action,
                round(q.p_churn, 3) as p_churn,
                round(q.value_at_risk, 2) as value_at_risk,
                round(q.expected_value, 2) as expected_value,
                q.reason_codes, q.top_reasons, q.history
            from marts.review_queue q
            where q.run_date = ?
              and q.decision_id not in (
                  select review_decision_id from marts.review_applied
              )
            order by q.expected_value desc, q.decision_id
            """,
            [run_date],
        ).df()


def _case(
    settings: Settings, decision_id: str, database: Path | None = None
) -> tuple[str, str, date]:
    with connect(database or settings.warehouse_path, read_only=True) as con:
        row = con.execute(
            "select customer_id, action, run_date from marts.review_queue "
            "where decision_id = ?",
            [decision_id],
        ).fetchone()
    if row is None:
        raise ReviewError(f"no review case {decision_id!r} in marts.review_queue")
    return str(row[0]), str(row[1]), row[2]


def record_decision(
    settings: Settings,
    decision_id: str,
    decision: str,
    reviewer: str,
    reason_code: str,
    note: str | None = None,
    new_action: str | None = None,
    arrives_on: date | None = None,
    decided_at: datetime | None = None,
    database: Path | None = None,
) -> ReviewRecord:
    """Write one review decision on case ``decision_id`` as landing data.

    ``arrives_on`` defaults to the day after the case was queued; ``decided_at``
    defaults to the current time, moved back to noon of ``arrives_on`` when that day
    is already over (an event time after its partition day would be quarantined).
    The case is looked up in ``database`` (default: the warehouse; the CLI passes
    the analyst copy, so a reviewer never holds the live file).
    """
    if decision not in REVIEW_DECISIONS:
        raise ReviewError(f"decision must be one of {REVIEW_DECISIONS}")
    if decision == "change":
        if new_action not in ACTIONS:
            raise ReviewError(f"change needs --action, one of {ACTIONS}")
    elif new_action is not None:
        raise ReviewError("only a change carries a new action")
    if not reviewer.strip() or not reason_code.strip():
        raise ReviewError("a review decision needs a reviewer and a reason code")
    customer_id, _, queued_on = _case(settings, decision_id, database)
    arrives_on = arrives_on or queued_on + timedelta(days=1)
    if arrives_on <= queued_on:
        raise ReviewError(
            f"case {decision_id} was queued on {queued_on}; its decision can only "
            "arrive on a later day"
        )
    if decided_at is None:
        decided_at = datetime.now().replace(microsecond=0)
        end_of_day = datetime.combine(arrives_on + timedelta(days=1), time())
        if decided_at >= end_of_day:
            decided_at = datetime.combine(arrives_on, time(12))
    rows = pa.table(
        {
            "decision_id": [decision_id],
            "customer_id": [customer_id],
            "reviewer": [reviewer],
            "decided_at": [decided_at],
            "decision": [decision],
            "new_action": [new_action],
            "reason_code": [reason_code],
            "note": [note],
        }
    ).cast(REVIEW_DECISIONS_TABLE.schema)
    folder = partition_dir(settings.landing_dir, TABLE, arrives_on)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(folder)  # left by a command killed mid-write
    name = hashlib.sha256(decision_id.encode()).hexdigest()[:12]
    target = folder / f"part-review-cli-{name}.parquet"
    staged = folder / f".{target.name}.{os.getpid()}.tmp"
    pq.write_table(rows, staged)
    os.replace(staged, target)
    return ReviewRecord(
        decision_id, customer_id, decision, new_action, arrives_on, target
    )
