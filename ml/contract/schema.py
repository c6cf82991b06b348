"""The landing data contract as code.

``docs/data_contract.md`` explains it for people; this module is what the simulator,
the importer, the validation gates and the loader share. Every timestamp is UTC and
stored without a time zone. A landing partition is
``landing/<table>/dt=YYYY-MM-DD/part-*.parquet`` (CSV accepted), where ``dt`` is the
day the rows arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

TIMESTAMP = pa.timestamp("us")


@dataclass(frozen=True)
class TableContract:
    """Columns, key and allowed values of one landing table."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    grain: str
    # column -> allowed values (None in the list allows nulls)
    allowed_values: dict[str, tuple[str | None, ...]] = field(default_factory=dict)
    # columns that may be null; every other column is required
    nullable: tuple[str, ...] = ()
    # the event-time column that must not lie after the run date
    event_time: str | None = None

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)


PLANS = ("basic", "plus", "premium", "unknown")
REGIONS = ("north", "south", "east", "west", "central", "unknown")
ACQUISITION_CHANNELS = (
    "organic",
    "paid_search",
    "social",
    "referral",
    "partner",
    "unknown",
)
CATEGORIES = ("grocery", "home", "fashion", "electronics", "beauty", "sports", "other")
TICKET_TOPICS = ("billing", "delivery", "product", "account", "complaint")
TICKET_SEVERITIES = ("low", "medium", "high")
ACTIONS = ("call", "voucher", "email")
CHANNELS = ("phone", "voucher", "email")
ACTION_STATUSES = ("delivered", "answered", "no_answer", "redeemed", "bounced")
REVIEW_DECISIONS = ("approve", "reject", "change")

CUSTOMERS = TableContract(
    name="customers",
    schema=pa.schema(
        [
            ("customer_id", pa.string()),
            ("signup_date", pa.date32()),
            ("plan", pa.string()),
            ("region", pa.string()),
            ("acquisition_channel", pa.string()),
            ("updated_at", TIMESTAMP),
        ]
    ),
    key=("customer_id", "updated_at"),
    grain="one row per customer and attribute change (a signup is the first change)",
    allowed_values={
        "plan": PLANS,
        "region": REGIONS,
        "acquisition_channel": ACQUISITION_CHANNELS,
    },
    event_time="updated_at",
)

TRANSACTIONS = TableContract(
    name="transactions",
    schema=pa.schema(
        [
            ("transaction_id", pa.string()),
            ("customer_id", pa.string()),
            ("transaction_at", TIMESTAMP),
            ("amount", pa.float64()),
            ("category", pa.string()),
            ("is_discounted", pa.bool_()),
        ]
    ),
    key=("transaction_id",),
    grain="one row per purchase",
    allowed_values={"category": CATEGORIES},
    event_time="transaction_at",
)

SUPPORT_TICKETS = TableContract(
    name="support_tickets",
    schema=pa.schema(
        [
            ("ticket_id", pa.string()),
            ("customer_id", pa.string()),
            ("opened_at", TIMESTAMP),
            ("topic", pa.string()),
            ("severity", pa.string()),
        ]
    ),
    key=("ticket_id",),
    grain="one row per support ticket, when it is opened",
    allowed_values={"topic": TICKET_TOPICS, "severity": TICKET_SEVERITIES},
    event_time="opened_at",
)

ACTION_RESULTS = TableContract(
    name="action_results",
    schema=pa.schema(
        [
            ("decision_id", pa.string()),
            ("customer_id", pa.string()),
            ("action", pa.string()),
            ("channel", pa.string()),
            ("result_at", TIMESTAMP),
            ("status", pa.string()),
        ]
    ),
    key=("decision_id",),
    grain="one row per exported decision: what the channel system did with it",
    allowed_values={"action": ACTIONS, "channel": CHANNELS, "status": ACTION_STATUSES},
    event_time="result_at",
)

REVIEW_DECISIONS_TABLE = TableContract(
    name="review_decisions",
    schema=pa.schema(
        [
            ("decision_id", pa.string()),
            ("customer_id", pa.string()),
            ("reviewer", pa.string()),
            ("decided_at", TIMESTAMP),
            ("decision", pa.string()),
            ("new_action", pa.string()),
            ("reason_code", pa.string()),
            ("note", pa.string()),
        ]
    ),
    key=("decision_id",),
    grain="one row per reviewed decision (the latest decided_at wins)",
    allowed_values={
        "decision": REVIEW_DECISIONS,
        "new_action": (*ACTIONS, None),
    },
    nullable=("new_action", "note"),
    event_time="decided_at",
)

TABLES: dict[str, TableContract] = {
    t.name: t
    for t in (
        CUSTOMERS,
        TRANSACTIONS,
        SUPPORT_TICKETS,
        ACTION_RESULTS,
        REVIEW_DECISIONS_TABLE,
    )
}

# "unknown"/"other" exist for imported data that lacks the attribute.
# The columns of every exported action-queue file
# (exports/dt=YYYY-MM-DD/<channel>.csv).
EXPORT_COLUMNS = (
    "decision_id",
    "customer_id",
    "action",
    "expected_value",
    "reason",
    "model_version",
    "policy_version",
)
