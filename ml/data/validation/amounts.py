"""Which transaction amounts are implausible, learned from the loaded history.

A real export holds typos: a unit mix-up, a missing decimal point, a test order of
1,000,000,000,000.00. Such a row must not reach the marts, where one of them turns
a customer's value at risk into billions. The landing gate quarantines:

- ``non_finite_amount``: ``inf``, ``-inf`` or ``nan``;
- ``implausible_amount``: above ``validation.amounts.max_amount`` (the hard cap), or
  with a robust z-score of ``log10(amount)`` above ``max_robust_z`` against the
  history, unless the customer once spent at least a tenth of it in one purchase.

The z-score uses the median and the scaled median absolute deviation (MAD, times
1.4826, floored at ``min_log_spread``) of ``log10(amount)`` over the positive amounts
loaded into ``raw.transactions`` outside the partitions being replaced, plus the
batch's own positive amounts (robust statistics barely move with a few outliers, and
so a first rebuild is guarded too). The rule applies once that history holds
``min_history_rows`` amounts; below it, only the hard cap does.

Nothing rescans ``raw.transactions`` at night. The gate keeps two small summaries,
updated with each load: ``ops.amount_profile``, a histogram of ``log10(amount)`` per
partition day (bins of :data:`BIN_WIDTH`; a day adds a few dozen rows), and
``ops.amount_customer_max``, each customer's largest loaded amount (one row per
customer, looked up only for the few amounts the z-score flags). Both are filled
from ``raw`` once, when the gate first meets a warehouse loaded without them. The
customer maximum only grows: replacing a partition with other rows does not lower
it (it can only make the customer exemption more lenient).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ml.config.settings import AmountConfig
from ml.contract.tables import AMOUNT_CUSTOMER_MAX, AMOUNT_PROFILE, ddl_script

# Histogram bin width in log10 units: a factor of 1.12.
BIN_WIDTH = 0.05
# MAD to standard deviation for a normal distribution.
MAD_SCALE = 1.4826
# A customer's earlier purchase of at least this share of an amount makes it
# plausible for them (whatever the z-score says; never above the hard cap).
CUSTOMER_SHARE = 0.1

PROFILE_DDL = ddl_script(AMOUNT_PROFILE, AMOUNT_CUSTOMER_MAX)


@dataclass(frozen=True)
class AmountProfile:
    """Robust centre and spread of ``log10(amount)`` over ``rows`` amounts."""

    rows: int
    median: float
    spread: float

    def z(self, amounts: np.ndarray) -> np.ndarray:
        """Robust z-scores of positive ``amounts`` (0 for the others)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(amounts)
        z = (logs - self.median) / self.spread
        return np.where(np.isfinite(z) & (amounts > 0), z, 0.0)


def non_finite(amounts: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Rows whose amount is a value but not a finite number (inf, -inf, nan)."""
    values = pa.chunked_array([amounts]) if isinstance(amounts, pa.Array) else amounts
    if values.num_chunks == 0:
        return np.zeros(len(values), dtype=bool)
    numbers = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    present = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False))
    return present & ~np.isfinite(numbers)


def ensure_profile(con: duckdb.DuckDBPyConnection) -> None:
    """Create the summaries; fill them from ``raw`` once if they are new."""
    con.execute(PROFILE_DDL)
    empty = not con.execute("select 1 from ops.amount_profile limit 1").fetchall()
    if not empty:
        return
    loaded = con.execute(
        "select 1 from raw.transactions where amount > 0 and isfinite(amount) limit 1"
    ).fetchall()
    if loaded:
        _insert_profile(con, "raw.transactions")


def _insert_profile(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Add the histogram rows and customer maxima of ``source``'s rows."""
    con.execute(
        f"""
        insert into ops.amount_profile
        select partition_date, cast(floor(log10(amount) / {BIN_WIDTH}) as integer),
            count(*)
        from {source}
        where amount > 0 and isfinite(amount)
        group by all
        """
    )
    con.execute(
        f"""
        insert into ops.amount_customer_max
        select customer_id, max(amount)
        from {source}
        where amount > 0 and isfinite(amount) and customer_id is not null
        group by customer_id
        on conflict (customer_id) do update
            set max_amount = greatest(max_amount, excluded.max_amount)
        """
    )


def load_profile(
    con: duckdb.DuckDBPyConnection,
    replaced_days: Sequence[date],
    batch_amounts: np.ndarray,
) -> AmountProfile:
    """The profile of the history outside ``replaced_days`` plus the batch."""
    con.register("_amount_days", _days(replaced_days))
    try:
        rows = con.execute(
            """
            select log_bin, sum(n)
            from ops.amount_profile
            where partition_date not in (select partition_date from _amount_days)
            group by log_bin
            """
        ).fetchall()
    finally:
        con.unregister("_amount_days")
    counts: dict[int, int] = {int(b): int(n) for b, n in rows}
    positive = batch_amounts[np.isfinite(batch_amounts) & (batch_amounts > 0)]
    if positive.size:
        bins, n = np.unique(
            np.floor(np.log10(positive) / BIN_WIDTH).astype(np.int64),
            return_counts=True,
        )
        for b, k in zip(bins.tolist(), n.tolist(), strict=True):
            counts[b] = counts.get(b, 0) + k
    return _profile(counts)


def _profile(counts: dict[int, int]) -> AmountProfile:
    """Median and scaled MAD of a log10 histogram (values at bin centres)."""
    total = sum(counts.values())
    if total == 0:
        return AmountProfile(rows=0, median=0.0, spread=1.0)
    bins = np.array(sorted(counts), dtype=np.float64)
    weights = np.array([counts[int(b)] for b in bins], dtype=np.float64)
    centres = (bins + 0.5) * BIN_WIDTH
    median = _weighted_median(centres, weights)
    deviations = np.abs(centres - median)
    order = np.argsort(deviations, kind="stable")
    mad = _weighted_median(deviations[order], weights[order])
    return AmountProfile(rows=total, median=median, spread=MAD_SCALE * mad)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The smallest value with at least half of the weight at or below it."""
    cumulative = np.cumsum(weights)
    return float(values[np.searchsorted(cumulative, cumulative[-1] / 2.0)])


def implausible(
    con: duckdb.DuckDBPyConnection,
    frame: pd.DataFrame,
    row_days: np.ndarray,
    replaced_days: Sequence[date],
    config: AmountConfig,
    candidates: np.ndarray,
) -> np.ndarray:
    """Rows of ``frame`` whose amount is implausible (among ``candidates``).

    ``row_days`` is each row's partition day; ``replaced_days`` the partitions
    this gate call replaces (their loaded rows are not history).
    """
    amounts = frame["amount"].to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(amounts) & candidates
    over_cap = finite & (amounts > config.max_amount)
    profile = load_profile(con, replaced_days, amounts[finite & ~over_cap])
    if profile.rows < config.min_history_rows:
        return over_cap
    spread = max(profile.spread, config.min_log_spread)
    scored = AmountProfile(rows=profile.rows, median=profile.median, spread=spread)
    flagged = finite & ~over_cap & (scored.z(amounts) > config.max_robust_z)
    if not flagged.any():
        return over_cap
    usual = finite & ~over_cap & ~flagged & (amounts > 0)
    exempt = _customer_exempt(con, frame, amounts, row_days, flagged, usual)
    return over_cap | (flagged & ~exempt)


def _customer_exempt(
    con: duckdb.DuckDBPyConnection,
    frame: pd.DataFrame,
    amounts: np.ndarray,
    row_days: np.ndarray,
    flagged: np.ndarray,
    usual: np.ndarray,
) -> np.ndarray:
    """Flagged rows whose customer once spent at least a tenth of the amount.

    "Once" is a purchase loaded before (``ops.amount_customer_max``) or a
    ``usual`` purchase of the batch on the same day or earlier, so a range gives
    the same answer as its days one by one.
    """
    ids = frame["customer_id"].astype(object).to_numpy()
    rows = np.flatnonzero(flagged)
    wanted = sorted({str(ids[r]) for r in rows if isinstance(ids[r], str)})
    earlier: dict[str, float] = {}
    if wanted:
        con.register("_amount_ids", pa.table({"customer_id": wanted}))
        try:
            earlier = dict(
                con.execute(
                    "select m.customer_id, m.max_amount from ops.amount_customer_max "
                    "as m inner join _amount_ids using (customer_id)"
                ).fetchall()
            )
        finally:
            con.unregister("_amount_ids")
    # the usual purchases of the flagged rows' customers, looked at row by row
    theirs = np.flatnonzero(usual & pd.Index(ids).isin(ids[rows]))
    their_ids, their_days = ids[theirs], row_days[theirs]
    exempt = np.zeros(len(amounts), dtype=bool)
    for r in rows:
        same = (their_ids == ids[r]) & (their_days <= row_days[r])
        best = max(
            earlier.get(str(ids[r]), 0.0),
            float(amounts[theirs[same]].max()) if same.any() else 0.0,
        )
        exempt[r] = best >= CUSTOMER_SHARE * amounts[r]
    return exempt


def update_profile(
    con: duckdb.DuckDBPyConnection, days: Sequence[date], loaded: pa.Table
) -> None:
    """Replace the histogram rows of ``days`` by those of the ``loaded`` rows.

    ``loaded`` has ``partition_date``, ``customer_id`` and ``amount``: the rows just
    loaded into ``raw.transactions`` for ``days``.
    """
    con.register("_amount_days", _days(days))
    con.register("_amount_loaded", loaded)
    try:
        con.execute("begin transaction")
        con.execute(
            "delete from ops.amount_profile where partition_date in "
            "(select partition_date from _amount_days)"
        )
        _insert_profile(con, "_amount_loaded")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.unregister("_amount_days")
        con.unregister("_amount_loaded")


def _days(days: Sequence[date]) -> pa.Table:
    return pa.table({"partition_date": pa.array(list(days), pa.date32())})
