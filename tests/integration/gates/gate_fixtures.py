"""Small, contract-valid landing partitions and feature snapshots, in memory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from ml.config.settings import Settings
from ml.contract.schema import TABLES
from ml.storage.landing_files import write_partition

DAY = date(2025, 3, 2)
CUSTOMER_IDS = [f"C{i:03d}" for i in range(1, 6)]


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    """A naive UTC timestamp on ``day``."""
    return datetime(day.year, day.month, day.day, hour, minute)


def customers(day: date, ids: list[str] | None = None) -> dict[str, list]:
    """Signup rows for ``ids`` on ``day``."""
    ids = CUSTOMER_IDS if ids is None else ids
    n = len(ids)
    return {
        "customer_id": list(ids),
        "signup_date": [day] * n,
        "plan": ["basic", "plus", "premium", "basic", "plus"][:n] + ["basic"] * (n - 5),
        "region": ["north"] * n,
        "acquisition_channel": ["organic"] * n,
        "updated_at": [at(day, 8, i % 60) for i in range(n)],
    }


def transactions(day: date, n: int = 40, prefix: str | None = None) -> dict[str, list]:
    """``n`` purchases by the fixture customers on ``day``."""
    prefix = prefix or f"T{day:%m%d}"
    return {
        "transaction_id": [f"{prefix}-{i:04d}" for i in range(n)],
        "customer_id": [CUSTOMER_IDS[i % len(CUSTOMER_IDS)] for i in range(n)],
        "transaction_at": [at(day, 9 + i % 12, i % 60) for i in range(n)],
        "amount": [10.0 + i for i in range(n)],
        "category": [["grocery", "home", "fashion", "other"][i % 4] for i in range(n)],
        "is_discounted": [i % 3 == 0 for i in range(n)],
    }


def support_tickets(day: date, n: int = 4) -> dict[str, list]:
    return {
        "ticket_id": [f"K{day:%m%d}-{i}" for i in range(n)],
        "customer_id": [CUSTOMER_IDS[i % len(CUSTOMER_IDS)] for i in range(n)],
        "opened_at": [at(day, 10, i) for i in range(n)],
        "topic": ["billing", "delivery", "product", "complaint"][:n],
        "severity": ["low", "medium", "high", "low"][:n],
    }


def action_results(day: date, n: int = 3) -> dict[str, list]:
    return {
        "decision_id": [f"D{day:%m%d}-{i}" for i in range(n)],
        "customer_id": [CUSTOMER_IDS[i] for i in range(n)],
        "action": ["call", "voucher", "email"][:n],
        "channel": ["phone", "voucher", "email"][:n],
        "result_at": [at(day, 11, i) for i in range(n)],
        "status": ["answered", "redeemed", "delivered"][:n],
    }


def review_decisions(day: date, n: int = 3) -> dict[str, list]:
    return {
        "decision_id": [f"D{day:%m%d}-{i}" for i in range(n)],
        "customer_id": [CUSTOMER_IDS[i] for i in range(n)],
        "reviewer": ["ana", "ben", "ana"][:n],
        "decided_at": [at(day, 7, i) for i in range(n)],
        "decision": ["approve", "change", "reject"][:n],
        "new_action": [None, "email", None][:n],
        "reason_code": ["ok", "channel", "too_costly"][:n],
        "note": [None, "prefers email", None][:n],
    }


BUILDERS: dict[str, Callable[[date], dict[str, list]]] = {
    "customers": customers,
    "transactions": transactions,
    "support_tickets": support_tickets,
    "action_results": action_results,
    "review_decisions": review_decisions,
}


def table(name: str, columns: dict[str, list]) -> pa.Table:
    """Columns cast to the contract schema of ``name``."""
    return pa.table(columns, schema=TABLES[name].schema)


def good_day(
    landing: Path, day: date, tables: tuple[str, ...] = tuple(BUILDERS)
) -> None:
    """Write one contract-valid partition per table for ``day``."""
    for name in tables:
        write_partition(landing, name, day, table(name, BUILDERS[name](day)))


def decided_before(
    warehouse: Path,
    day: date,
    results: dict[str, list] | None = None,
    reviews: dict[str, list] | None = None,
) -> None:
    """The treated decisions and review cases of the day before ``day`` that the
    ``results`` and ``reviews`` rows (default: the fixture's ``action_results``
    and ``review_decisions`` of ``day``) answer, in ``marts.decisions`` and
    ``marts.review_queue`` (as the decide step writes them)."""
    from ml.decision.decide_step import DDL, DECISIONS_TABLE, REVIEW_QUEUE_TABLE
    from ml.storage.warehouse import connect, ensure_schemas

    before = day - timedelta(days=1)
    results = action_results(day) if results is None else results
    reviews = review_decisions(day) if reviews is None else reviews
    with connect(warehouse) as con:
        ensure_schemas(con)
        con.execute(DDL)
        for decision_id, customer_id, action in zip(
            results.get("decision_id", []),
            results.get("customer_id", []),
            results.get("action", []),
            strict=True,
        ):
            con.execute(
                f"insert into {DECISIONS_TABLE} (decision_id, run_date, customer_id, "
                "arm, action, policy_version, policy_mode) "
                "values (?, ?, ?, 'treated', ?, 'p1', 'model')",
                [decision_id, before, customer_id, action],
            )
        for decision_id, customer_id in zip(
            reviews.get("decision_id", []), reviews.get("customer_id", []), strict=True
        ):
            con.execute(
                f"insert into {REVIEW_QUEUE_TABLE} (decision_id, run_date, "
                "customer_id, action, policy_version) values (?, ?, ?, 'call', 'p1')",
                [decision_id, before, customer_id],
            )


def settings_with(tmp_path: Path, **validation: object) -> Settings:
    """Settings whose business config overrides some ``validation`` values."""
    import yaml

    config = tmp_path / "loopline.yml"
    config.write_text(yaml.safe_dump({"validation": validation}))
    return Settings(home=tmp_path / "home", config_file=config)


def next_day(day: date, n: int = 1) -> date:
    return day + timedelta(days=n)


FEATURE_COUNTS = (
    "tx_count_7d",
    "tx_count_30d",
    "tx_count_90d",
    "tx_count_180d",
    "category_count_90d",
    "tickets_30d",
    "tickets_90d",
    "complaint_tickets_90d",
    "contacts_90d",
)


def features(day: date, n: int = 10) -> dict[str, list]:
    """A valid ``marts.customer_features`` snapshot of ``n`` customers on ``day``."""
    columns: dict[str, list] = {
        "customer_id": [f"C{i:03d}" for i in range(n)],
        "as_of_date": [day] * n,
        "plan": ["basic", "plus", "premium"] * (n // 3) + ["basic"] * (n % 3),
        "region": ["north"] * n,
        "acquisition_channel": ["organic"] * n,
        "tenure_days": [100 + i for i in range(n)],
        "recency_days": [i for i in range(n)],
        "spend_7d": [5.0 * i for i in range(n)],
        "spend_30d": [20.0 * i for i in range(n)],
        "spend_90d": [60.0 * i for i in range(n)],
        "spend_180d": [120.0 * i for i in range(n)],
        "avg_basket_90d": [12.5] * n,
        "freq_trend_30d": [-0.5 + i / n for i in range(n)],
        "spend_trend_30d": [0.1] * n,
        "gap_mean_days": [7.0] * n,
        "gap_std_days": [1.5] * n,
        "discount_share_90d": [i / n for i in range(n)],
        "days_since_last_contact": [None if i % 2 else i for i in range(n)],
    }
    for column in FEATURE_COUNTS:
        columns[column] = [i % 4 for i in range(n)]
    return columns
