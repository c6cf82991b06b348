"""Synthetic marts for benchmarks and model tests.

Writes ``marts.customer_features`` and ``marts.training_examples`` with the columns
and types the dbt project builds, filled from a seeded generator in which churn
depends (non-linearly) on recency, trend, tickets and plan. It is fast enough to
make a million rows in seconds, which the simulator and dbt are not; it is not a
substitute for them when testing the data layer.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from ml.storage.warehouse import connect

PLANS = ["basic", "plus", "premium"]
REGIONS = ["north", "south", "east", "west", "central"]
CHANNELS = ["organic", "paid_search", "social", "referral", "partner"]
WINDOWS = (7, 30, 90, 180)


def synthetic_features(
    n_customers: int, days: list[date], seed: int = 0, horizon_days: int = 30
) -> pa.Table:
    """One row per (customer, day) with feature, label and horizon columns."""
    rng = np.random.default_rng(seed)
    n_days = len(days)
    n = n_customers * n_days
    customer = np.repeat(np.arange(n_customers), n_days)
    day_index = np.tile(np.arange(n_days), n_customers)
    rate = rng.gamma(2.0, 0.05, n_customers)[customer]
    plan = rng.integers(0, 3, n_customers)[customer]
    region = rng.integers(0, 5, n_customers)[customer]
    channel = rng.integers(0, 5, n_customers)[customer]
    signup = rng.integers(0, 700, n_customers)[customer]
    basket = rng.lognormal(3.0, 0.5, n_customers)[customer]
    recency = np.minimum(rng.geometric(np.clip(rate, 0.01, 1.0)) - 1, 179)
    counts = {w: rng.poisson(rate * w) for w in WINDOWS}
    counts[30] = np.maximum(counts[30], counts[7])
    counts[90] = np.maximum(counts[90], counts[30])
    counts[180] = np.maximum(np.maximum(counts[180], counts[90]), 1)
    prior_30 = rng.poisson(rate * 30)
    freq_trend = counts[30] - prior_30
    tickets_90 = rng.poisson(0.3, n)
    tickets_30 = rng.binomial(tickets_90, 0.4)
    complaints = rng.binomial(tickets_90, 0.3)
    severe = rng.binomial(tickets_90, 0.2)
    contacts = rng.poisson(0.5, n)
    since_contact = rng.integers(0, 180, n).astype(float)
    since_contact[contacts == 0] = np.nan
    discount = rng.beta(2, 5, n)

    logit = (
        -2.2
        + 1.8 * (recency > 25)
        + 0.01 * recency
        - 0.25 * np.clip(freq_trend, -4, 4)
        + 0.45 * complaints
        + 0.6 * (plan == 0)
        - 1.2 * (counts[90] > 6)
        + 1.0 * ((recency > 40) & (tickets_90 > 0))
        - 0.4 * (plan == 2) * (discount > 0.4)
    )
    churned = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    spend = {
        w: np.round(counts[w] * basket * rng.uniform(0.8, 1.2, n), 2) for w in WINDOWS
    }
    as_of = np.array(days, dtype="datetime64[D]")[day_index]
    horizon_purchases = np.where(churned, 0, rng.poisson(rate * horizon_days) + 1)
    columns = {
        "customer_id": pa.array([f"s{c:07d}" for c in customer], pa.string()),
        "as_of_date": pa.array(as_of, pa.date32()),
        "plan": pa.array(np.array(PLANS)[plan], pa.string()),
        "region": pa.array(np.array(REGIONS)[region], pa.string()),
        "acquisition_channel": pa.array(np.array(CHANNELS)[channel], pa.string()),
        "tenure_days": pa.array((signup + day_index).astype("int32")),
        "recency_days": pa.array(recency.astype("int32")),
    }
    for w in WINDOWS:
        columns[f"tx_count_{w}d"] = pa.array(counts[w].astype("int32"))
    for w in WINDOWS:
        columns[f"spend_{w}d"] = pa.array(spend[w].astype("float64"))
    avg_basket = np.where(counts[90] > 0, spend[90] / np.maximum(counts[90], 1), 0.0)
    columns |= {
        "avg_basket_90d": pa.array(avg_basket),
        "purchase_days_90d": pa.array(np.minimum(counts[90], 90).astype("int32")),
        "freq_trend_30d": pa.array(freq_trend.astype("int32")),
        "spend_trend_30d": pa.array(np.round(freq_trend * basket, 2)),
        "gap_mean_days": pa.array(np.round(1.0 / np.clip(rate, 0.01, 1.0), 2)),
        "gap_std_days": pa.array(np.round(rng.gamma(2.0, 2.0, n), 2)),
        "category_count_90d": pa.array(np.minimum(counts[90], 7).astype("int32")),
        "discount_share_90d": pa.array(discount),
        "tickets_30d": pa.array(tickets_30.astype("int32")),
        "tickets_90d": pa.array(tickets_90.astype("int32")),
        "complaint_tickets_90d": pa.array(complaints.astype("int32")),
        "high_severity_tickets_90d": pa.array(severe.astype("int32")),
        "contacts_90d": pa.array(contacts.astype("int32")),
        "days_since_last_contact": pa.array(
            since_contact, pa.float64(), from_pandas=True
        ).cast(pa.int32()),
        "churned": pa.array(churned),
        "horizon_days": pa.array(np.full(n, horizon_days, dtype="int32")),
        "horizon_end_date": pa.array(
            as_of + np.timedelta64(horizon_days, "D"), pa.date32()
        ),
        "horizon_purchases": pa.array(horizon_purchases.astype("int32")),
        "horizon_spend": pa.array(np.round(horizon_purchases * basket, 2)),
    }
    return pa.table(columns)


LABEL_COLUMNS = (
    "churned",
    "horizon_days",
    "horizon_end_date",
    "horizon_purchases",
    "horizon_spend",
)


def write_synthetic_marts(
    warehouse: Path,
    n_customers: int,
    first_day: date,
    n_days: int,
    seed: int = 0,
    horizon_days: int = 30,
    labels_until: date | None = None,
) -> int:
    """Replace ``marts.customer_features`` and ``marts.training_examples`` with a
    synthetic world; labelled rows are those with as_of_date + H <= labels_until
    (default: the last day). Returns the number of feature rows."""
    days = [first_day + timedelta(days=i) for i in range(n_days)]
    table = synthetic_features(n_customers, days, seed, horizon_days)
    last_label = (labels_until or days[-1]) - timedelta(days=horizon_days)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with connect(warehouse) as con:
        con.execute("create schema if not exists marts")
        con.register("_synthetic", table)
        features = ", ".join(c for c in table.column_names if c not in LABEL_COLUMNS)
        con.execute(
            f"create or replace table marts.customer_features as "
            f"select {features} from _synthetic"
        )
        # a home dbt has built holds training_examples as a view over the two
        con.execute("drop view if exists marts.training_examples")
        con.execute(
            "create or replace table marts.training_examples as "
            "select * from _synthetic where as_of_date <= ?",
            [last_label],
        )
        con.unregister("_synthetic")
    return table.num_rows
