"""Feedback rows checked against the decisions they answer.

Two landing tables answer what Loopline exported: ``action_results`` (what a
channel system did with a row of its queue file) and ``review_decisions`` (what a
reviewer decided on a case of the review queue). Each row names a ``decision_id``
and its ``customer_id``. A row is quarantined

* as ``unknown_decision`` when the id names nothing we sent before the row's
  partition day: for an action result, a treated decision of ``marts.decisions``
  (the rows of the channel files); for a review, a case of ``marts.review_queue``;
* as ``customer_mismatch`` when the id is known but belongs to another customer.

Only decisions of earlier run dates count: the nightly gate of day d runs before that
night's ``decide``, so the same rule gives the same verdict when the date is rerun after
its decisions exist. The marts are only read here; :mod:`ml.decision.decide_step` owns
them.

Feedback answers recent decisions: the rows are looked up first among the decisions
of the :data:`RECENT_DAYS` before their earliest day, a scan that follows that
window instead of the whole history (the decisions are stored in run-date order,
so DuckDB skips the older row groups). Only the rows not found there with their own
customer (late feedback, unknown ids, mismatches) are looked up again among every
earlier decision, so the verdicts are those of one lookup over all of them.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ml.contract.tables import DECISIONS_TABLE, REVIEW_QUEUE_TABLE
from ml.storage.warehouse import table_exists

# Days of decisions before the feedback's earliest day that the first lookup reads.
RECENT_DAYS = 14

# landing table -> (the table its decision_id refers to, which of its rows count)
REFERENCES: dict[str, tuple[str, str]] = {
    "action_results": (DECISIONS_TABLE, "d.arm = 'treated'"),
    "review_decisions": (REVIEW_QUEUE_TABLE, "true"),
}


def check_references(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pd.DataFrame,
    days: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of a feedback ``table`` (``frame``, partition days ``days`` as
    ``datetime64``): whether its decision is unknown, and whether it is known but
    names another customer. Rows with a null id or customer are neither (other
    rules catch them)."""
    n = len(frame)
    unknown = np.zeros(n, dtype=bool)
    mismatch = np.zeros(n, dtype=bool)
    ids = frame["decision_id"]
    customers = frame["customer_id"]
    present = (ids.notna() & customers.notna()).to_numpy()
    if not present.any():
        return unknown, mismatch
    target, which = REFERENCES[table]
    schema, name = target.split(".")
    if not table_exists(con, schema, name):
        unknown[present] = True
        return unknown, mismatch
    rows = np.flatnonzero(present)
    row_days = days[rows].astype("datetime64[D]")
    staged = pa.table(
        {
            "_row": pa.array(rows, pa.int64()),
            "decision_id": pa.array(ids.to_numpy(dtype=object)[rows], pa.string()),
            "customer_id": pa.array(
                customers.to_numpy(dtype=object)[rows], pa.string()
            ),
            "day": pa.array(row_days, pa.date32()),
        }
    )
    earliest: date = row_days.min().astype(object)
    since = earliest - timedelta(days=RECENT_DAYS)
    recent_rows, recent_same = _matches(con, staged, target, which, since)
    settled = recent_rows[recent_same]  # found, with their own customer
    rest = staged.filter(pa.array(~np.isin(rows, settled)))
    later_rows, later_same = (
        _matches(con, rest, target, which, None)
        if rest.num_rows
        else (np.zeros(0, np.int64), np.zeros(0, bool))
    )
    matched = np.concatenate([settled, later_rows])
    same = np.concatenate([np.ones(len(settled), bool), later_same])
    unknown[rows] = True
    unknown[matched] = False
    mismatch[matched[~same]] = True
    return unknown, mismatch


def _matches(
    con: duckdb.DuckDBPyConnection,
    staged: pa.Table,
    target: str,
    which: str,
    since: date | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The staged rows with a decision of ``target`` before their day (from
    ``since`` on, when given), and whether one of those is their customer's."""
    # a literal, so DuckDB can skip the row groups before it
    window = "" if since is None else f"and d.run_date >= date '{since}'"
    con.register("_feedback_rows", staged)
    try:
        found = con.execute(
            f"""
            select c._row, bool_or(d.customer_id = c.customer_id) as same_customer
            from _feedback_rows c
            join {target} d
                on d.decision_id = c.decision_id and d.run_date < c.day and {which}
                {window}
            group by c._row
            """
        ).fetchnumpy()
    finally:
        con.unregister("_feedback_rows")
    return (
        np.asarray(found["_row"], dtype=np.int64),
        np.asarray(found["same_customer"], dtype=bool),
    )


def inconsistent_new_action(frame: pd.DataFrame) -> np.ndarray:
    """Review rows whose ``new_action`` does not fit the decision: a change must
    name the new action, and approve or reject must not name one (``decide`` would
    otherwise read a change without an action as "no contact", and ignore an
    action given with an approval)."""
    decision = frame["decision"]
    change = decision.eq("change").to_numpy()
    named = frame["new_action"].notna().to_numpy()
    other = decision.notna().to_numpy() & ~change
    return np.asarray((change & ~named) | (other & named), dtype=bool)
