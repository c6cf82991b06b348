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
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ml.contract.tables import DECISIONS_TABLE, REVIEW_QUEUE_TABLE
from ml.storage.warehouse import table_exists

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
    staged = pa.table(
        {
            "_row": pa.array(rows, pa.int64()),
            "decision_id": pa.array(ids.to_numpy(dtype=object)[rows], pa.string()),
            "customer_id": pa.array(
                customers.to_numpy(dtype=object)[rows], pa.string()
            ),
            "day": pa.array(days[rows].astype("datetime64[D]"), pa.date32()),
        }
    )
    con.register("_feedback_rows", staged)
    try:
        found = con.execute(
            f"""
            select c._row, bool_or(d.customer_id = c.customer_id) as same_customer
            from _feedback_rows c
            join {target} d
                on d.decision_id = c.decision_id and d.run_date < c.day and {which}
            group by c._row
            """
        ).fetchnumpy()
    finally:
        con.unregister("_feedback_rows")
    matched = np.asarray(found["_row"], dtype=np.int64)
    same = np.asarray(found["same_customer"], dtype=bool)
    unknown[rows] = True
    unknown[matched] = False
    mismatch[matched[~same]] = True
    return unknown, mismatch


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
