"""Row rules: which landing rows go to quarantine, and why.

The GX suites *measure* these faults (their ``row`` expectations); this module *splits*
the rows, because quarantine needs every bad row, its file and a reason, and two rules
need the warehouse (customers known so far, keys already loaded). A row gets the first
reason that fits, in the order of ``expectations.suite_parts.REASONS``: a null key, a
null required value, a value outside the allowed set, a review's ``new_action`` that
does not fit its decision, a negative amount, an event time after the end of the row's
partition day, a customer that is neither in ``raw.customers`` nor in the customers
landed up to the row's day, a feedback row whose decision is unknown or another
customer's (:mod:`ml.data.validation.references`), and a key seen before (earlier in the
run, or in a raw partition that is not replaced). Duplicates are looked for among rows
that are otherwise good, so the first good row of a key is the one kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from expectations.suite_parts import (
    CUSTOMER_MISMATCH,
    DUPLICATE_KEY,
    FUTURE_EVENT_TIME,
    IMPLAUSIBLE_AMOUNT,
    INVALID_NEW_ACTION,
    NEGATIVE_AMOUNT,
    NON_FINITE_AMOUNT,
    NULL_KEY,
    NULL_REQUIRED,
    UNKNOWN_CUSTOMER,
    UNKNOWN_DECISION,
    VALUE_NOT_ALLOWED,
    unique_key,
)
from ml.contract.schema import TableContract
from ml.data.validation.amounts import non_finite
from ml.data.validation.frames import LandingBatch
from ml.data.validation.references import (
    REFERENCES,
    check_references,
    inconsistent_new_action,
)

_ONE_DAY = np.timedelta64(1, "D")


@dataclass(frozen=True)
class RowVerdicts:
    """Per row: ``None`` (good) or the quarantine reason and the column at fault."""

    reason: np.ndarray
    column: np.ndarray

    @property
    def bad(self) -> np.ndarray:
        """Boolean mask of quarantined rows."""
        return pd.notna(self.reason)


@dataclass(frozen=True)
class CustomerRegistry:
    """The customer ids a row may refer to.

    ``in_raw``: ids in ``raw.customers`` outside the partitions being replaced
    (only those among the ids the run's rows refer to, when those are given).
    ``first_day``: for ids landed in this run, the first partition day with a good
    row (a row of day d may only refer to customers known by d).
    """

    in_raw: pd.Index
    first_day: pd.Series

    def known(self, ids: pd.Series, days: np.ndarray) -> np.ndarray:
        """Which ``ids`` are known on their row's partition day ``days``."""
        # Index lookups, not Series.isin: on string columns pandas' isin builds
        # its lookup table in Python, about 10 µs per known customer and call.
        in_raw = self.in_raw.get_indexer(pd.Index(ids)) >= 0
        if self.first_day.empty:
            return in_raw
        position = self.first_day.index.get_indexer(pd.Index(ids))
        first = self.first_day.to_numpy(dtype="datetime64[us]")[np.maximum(position, 0)]
        in_run = (position >= 0) & (first <= days)
        return in_raw | in_run


def row_days(batch: LandingBatch) -> np.ndarray:
    """The partition day of every row, as ``datetime64[us]`` midnight."""
    days = batch.partition_date.to_numpy(zero_copy_only=False)
    return days.astype("datetime64[us]")


def customer_registry(
    con: duckdb.DuckDBPyConnection,
    replaced_days: Sequence[date],
    customers: LandingBatch | None,
    verdicts: RowVerdicts | None,
    referred: pa.Array | pa.ChunkedArray | None = None,
) -> CustomerRegistry:
    """Known customers: raw outside ``replaced_days``, plus the run's good rows.

    ``referred``: every customer id the rows to be checked refer to. When given,
    only those are looked up in ``raw.customers`` (a join in DuckDB), so a night
    costs what its rows cost, not what the whole customer base does; when None,
    every customer in raw is loaded.
    """
    con.register("_replaced_days", _days_table(replaced_days))
    query = (
        "select distinct customer_id from raw.customers where customer_id is not null "
        "and partition_date not in (select partition_date from _replaced_days)"
    )
    if referred is not None:
        con.register("_referred_ids", pa.table({"customer_id": referred}))
        query += " and customer_id in (select customer_id from _referred_ids)"
    try:
        in_raw = con.execute(query).fetchnumpy()["customer_id"]
    finally:
        con.unregister("_replaced_days")
        if referred is not None:
            con.unregister("_referred_ids")
    in_raw_index = pd.Index(np.asarray(in_raw, dtype=object))
    first_day = pd.Series(dtype="datetime64[us]")
    if customers is not None and customers.data is not None:
        names = customers.data.column_names
        if "customer_id" in names:
            frame = pd.DataFrame(
                {
                    "customer_id": customers.data.column("customer_id").to_pandas(),
                    "day": row_days(customers),
                }
            )
            if verdicts is not None:
                frame = frame[~verdicts.bad]
            frame = frame.dropna(subset=["customer_id"])
            first_day = frame.groupby("customer_id", sort=False)["day"].min()
    return CustomerRegistry(in_raw=in_raw_index, first_day=first_day)


def _days_table(days: Sequence[date]) -> pa.Table:
    return pa.table({"partition_date": pa.array(list(days), pa.date32())})


def assign_reasons(
    batch: LandingBatch,
    frame: pd.DataFrame,
    con: duckdb.DuckDBPyConnection,
    replaced_days: Sequence[date],
    registry: CustomerRegistry | None,
    amount_rule: Callable[[np.ndarray], np.ndarray] | None = None,
) -> RowVerdicts:
    """Apply the row rules to a batch whose schema matched the contract.

    ``amount_rule`` maps the mask of rows still good after the negative-amount
    rule to the mask of implausible amounts among them.
    """
    contract = batch.contract
    n = len(frame)
    reason = np.full(n, None, dtype=object)
    column = np.full(n, None, dtype=object)

    def assign(mask: np.ndarray, why: str, col: str) -> None:
        hit = mask & pd.isna(reason)
        reason[hit] = why
        column[hit] = col

    for col in contract.key:
        assign(frame[col].isna().to_numpy(), NULL_KEY, col)
    if "amount" in contract.columns and batch.data is not None:
        assign(non_finite(batch.data.column("amount")), NON_FINITE_AMOUNT, "amount")
    for col in contract.columns:
        if col not in contract.key and col not in contract.nullable:
            assign(frame[col].isna().to_numpy(), NULL_REQUIRED, col)
    for col, allowed in contract.allowed_values.items():
        values = [v for v in allowed if v is not None]
        outside = ~frame[col].isin(values).to_numpy()
        if None in allowed or col not in contract.nullable:
            outside &= frame[col].notna().to_numpy()
        assign(outside, VALUE_NOT_ALLOWED, col)
    if "new_action" in contract.columns and "decision" in contract.columns:
        assign(inconsistent_new_action(frame), INVALID_NEW_ACTION, "new_action")
    if "amount" in contract.columns:
        assign((frame["amount"] < 0).to_numpy(), NEGATIVE_AMOUNT, "amount")
        if amount_rule is not None:
            good = np.asarray(pd.isna(reason), dtype=bool)
            assign(amount_rule(good), IMPLAUSIBLE_AMOUNT, "amount")
    days = row_days(batch)
    if contract.event_time is not None:
        event = frame[contract.event_time].to_numpy(dtype="datetime64[us]")
        late = ~np.isnat(event) & (event >= days + _ONE_DAY)
        assign(late, FUTURE_EVENT_TIME, contract.event_time)
    if registry is not None and "customer_id" in contract.columns:
        ids = frame["customer_id"]
        unknown = ids.notna().to_numpy() & ~registry.known(ids, days)
        assign(unknown, UNKNOWN_CUSTOMER, "customer_id")
    if contract.name in REFERENCES:
        unknown_decision, mismatch = check_references(con, contract.name, frame, days)
        assign(unknown_decision, UNKNOWN_DECISION, "decision_id")
        assign(mismatch, CUSTOMER_MISMATCH, "customer_id")
    _assign_duplicates(batch, frame, con, replaced_days, reason, column)
    return RowVerdicts(reason=reason, column=column)


def _assign_duplicates(
    batch: LandingBatch,
    frame: pd.DataFrame,
    con: duckdb.DuckDBPyConnection,
    replaced_days: Sequence[date],
    reason: np.ndarray,
    column: np.ndarray,
) -> None:
    contract: TableContract = batch.contract
    key = list(unique_key(contract))
    key_label = "|".join(key)
    candidates = np.flatnonzero(pd.isna(reason))
    if candidates.size == 0:
        return
    repeated = frame[key].iloc[candidates].duplicated(keep="first").to_numpy()
    reason[candidates[repeated]] = DUPLICATE_KEY
    column[candidates[repeated]] = key_label
    first = candidates[~repeated]
    if first.size == 0 or batch.data is None:
        return
    keys = batch.data.select(key).take(pa.array(first))
    keys = keys.append_column("_row", pa.array(first, pa.int64()))
    on = " and ".join(f"r.{c} = c.{c}" for c in key)
    con.register("_candidate_keys", keys)
    con.register("_replaced_days", _days_table(replaced_days))
    try:
        seen = con.execute(
            f"select c._row from _candidate_keys as c where exists ("
            f"select 1 from raw.{contract.name} as r where {on} and r.partition_date "
            "not in (select partition_date from _replaced_days))"
        ).fetchnumpy()["_row"]
    finally:
        con.unregister("_candidate_keys")
        con.unregister("_replaced_days")
    rows = np.asarray(seen, dtype=np.int64)
    reason[rows] = DUPLICATE_KEY
    column[rows] = key_label
