"""A small seeded world of raw rows for the dbt tests (no simulator needed).

Rows carry the day they arrive (``partition_date``); some purchases and one customer
version arrive late, one purchase is delivered twice, so the point-in-time and
first-arrival rules are exercised.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pyarrow as pa

from ml.contract.schema import (
    ACQUISITION_CHANNELS,
    ACTION_STATUSES,
    ACTIONS,
    CATEGORIES,
    CHANNELS,
    PLANS,
    REGIONS,
    TABLES,
    TICKET_SEVERITIES,
    TICKET_TOPICS,
)
from ml.storage.warehouse import connect, ensure_schemas, replace_raw_partition

Row = dict[str, object]


@dataclass
class World:
    """Raw rows by table and arrival day."""

    first_day: date
    last_day: date
    rows: dict[str, dict[date, list[Row]]] = field(default_factory=dict)

    def add(self, table: str, day: date, row: Row) -> None:
        """Add one row arriving on ``day``."""
        self.rows.setdefault(table, {}).setdefault(day, []).append(row)

    def days(self) -> list[date]:
        n = (self.last_day - self.first_day).days + 1
        return [self.first_day + timedelta(days=i) for i in range(n)]

    def copy(self) -> World:
        """A deep enough copy to perturb without touching the original."""
        other = World(self.first_day, self.last_day)
        for table, by_day in self.rows.items():
            for day, rows in by_day.items():
                for row in rows:
                    other.add(table, day, dict(row))
        return other


def _at(day: date, rng: random.Random) -> datetime:
    return datetime.combine(day, time(0)) + timedelta(seconds=rng.randrange(86_400))


def make_world(
    seed: int = 7,
    first_day: date = date(2024, 1, 1),
    n_days: int = 60,
    n_customers: int = 40,
) -> World:
    """Customers who buy at their own rate, some of whom stop buying for good."""
    rng = random.Random(seed)
    last_day = first_day + timedelta(days=n_days - 1)
    world = World(first_day, last_day)
    tx_number = 0
    ticket_number = 0
    decision_number = 0
    for c in range(n_customers):
        customer_id = f"c{c:03d}"
        signup = first_day + timedelta(days=rng.randrange(0, n_days // 2))
        signup_at = datetime.combine(signup, time(8))
        attrs: Row = {
            "customer_id": customer_id,
            "signup_date": signup,
            "plan": rng.choice(PLANS[:3]),
            "region": rng.choice(REGIONS[:5]),
            "acquisition_channel": rng.choice(ACQUISITION_CHANNELS[:5]),
            "updated_at": signup_at,
        }
        world.add("customers", signup, attrs)
        if rng.random() < 0.2:
            change_day = signup + timedelta(days=rng.randrange(5, 25))
            if change_day <= last_day:
                changed = dict(attrs, plan=rng.choice(PLANS[:3]))
                changed["updated_at"] = datetime.combine(change_day, time(12))
                world.add("customers", change_day, changed)
        rate = rng.choice([0.08, 0.15, 0.3, 0.5])
        stop = signup + timedelta(days=rng.randrange(5, 2 * n_days))
        day = signup
        while day <= last_day:
            if day < stop and rng.random() < rate:
                tx_number += 1
                arrival = day
                if rng.random() < 0.12:
                    arrival = day + timedelta(days=rng.randrange(1, 4))
                if arrival <= last_day:
                    world.add(
                        "transactions",
                        arrival,
                        {
                            "transaction_id": f"t{tx_number:05d}",
                            "customer_id": customer_id,
                            "transaction_at": _at(day, rng),
                            "amount": round(rng.uniform(5, 120), 2),
                            "category": rng.choice(CATEGORIES),
                            "is_discounted": rng.random() < 0.25,
                        },
                    )
            if rng.random() < 0.03:
                ticket_number += 1
                world.add(
                    "support_tickets",
                    day,
                    {
                        "ticket_id": f"k{ticket_number:05d}",
                        "customer_id": customer_id,
                        "opened_at": _at(day, rng),
                        "topic": rng.choice(TICKET_TOPICS),
                        "severity": rng.choice(TICKET_SEVERITIES),
                    },
                )
            if rng.random() < 0.02:
                decision_number += 1
                action_index = rng.randrange(len(ACTIONS))
                world.add(
                    "action_results",
                    day,
                    {
                        "decision_id": f"d{decision_number:05d}",
                        "customer_id": customer_id,
                        "action": ACTIONS[action_index],
                        "channel": CHANNELS[action_index],
                        "result_at": _at(day, rng),
                        "status": rng.choice(ACTION_STATUSES),
                    },
                )
            day += timedelta(days=1)
    _redeliver_one_purchase(world)
    return world


def _redeliver_one_purchase(world: World) -> None:
    """Deliver one early purchase again two days later (first arrival must win)."""
    by_day = world.rows["transactions"]
    day = min(by_day)
    original = by_day[day][0]
    world.add("transactions", day + timedelta(days=2), dict(original, amount=999.0))


def load_world(warehouse: Path, world: World) -> None:
    """Create the raw schema and load every table's partition of every day."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with connect(warehouse) as con:
        ensure_schemas(con)
        for table, contract in TABLES.items():
            by_day = world.rows.get(table, {})
            for day in world.days():
                rows = by_day.get(day, [])
                data = pa.Table.from_pylist(rows, schema=contract.schema)
                replace_raw_partition(con, table, day, data, f"{table}/dt={day}")
