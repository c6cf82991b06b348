"""Data faults injected into one day's landing tables (all off unless configured).

A fault changes only what lands: it draws from its own random stream, so enabling
one leaves every other row, table and the ground truth exactly as without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml.contract.schema import TABLES
from ml.sim.sim_config import FaultSpec, SimConfig, day_offset
from ml.sim.sim_tables import EPOCH_ORDINAL, US_PER_DAY

# Fixed order: row faults first, the schema fault last, so every fault touches the
# rows of the day as the contract shapes them.
FAULT_ORDER = (
    "nulls",
    "negative_amounts",
    "future_timestamps",
    "duplicates",
    "renamed_column",
    "late_partition",
)
FAULT_STREAM = 1000


@dataclass(frozen=True)
class FaultRecord:
    """One fault injected on one day (ground truth for the validation gates)."""

    day: date
    table: str
    fault: str
    rows: int
    detail: str


@dataclass(frozen=True)
class FaultedDay:
    """The day's tables after fault injection."""

    tables: dict[str, pa.Table]
    late: frozenset[str]
    records: list[FaultRecord]


def fires(
    spec: FaultSpec, day: date, world_start: date, rng: np.random.Generator
) -> bool:
    """Whether a fault fires on ``day`` (a listed day, or by daily chance)."""
    offset = (day - world_start).days
    listed = any(day_offset(ref, world_start) == offset for ref in spec.days)
    # Always draw, so whether a listed day fires does not shift later draws.
    chance = rng.random() < spec.daily_probability
    return listed or chance


def _pick_rows(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    k = min(n, max(1, round(fraction * n)))
    return np.sort(rng.choice(n, size=k, replace=False))


def _mask(n: int, rows: np.ndarray) -> pa.Array:
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return pa.array(mask)


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def _nulls(
    table: pa.Table, rows: np.ndarray, columns: list[str], rng: np.random.Generator
) -> pa.Table:
    which = rng.integers(0, len(columns), rows.size)
    for k, name in enumerate(columns):
        mask = _mask(table.num_rows, rows[which == k])
        column = table.column(name)
        table = _set(
            table, name, pc.if_else(mask, pa.scalar(None, column.type), column)
        )
    return table


def _negative(table: pa.Table, rows: np.ndarray) -> pa.Table:
    amount = table.column("amount")
    negative = pc.negate(pc.abs(amount))
    return _set(
        table, "amount", pc.if_else(_mask(table.num_rows, rows), negative, amount)
    )


def _future(
    table: pa.Table, rows: np.ndarray, column: str, day: date, rng: np.random.Generator
) -> pa.Table:
    day_end_us = (day.toordinal() + 1 - EPOCH_ORDINAL) * US_PER_DAY
    shift_us = rng.integers(60 * 10**6, 3 * US_PER_DAY, rows.size)
    values = table.column(column).to_numpy().astype("datetime64[us]").astype(np.int64)
    values = values.copy()
    values[rows] = day_end_us + shift_us
    return _set(table, column, pa.array(values.astype("datetime64[us]")))


def apply_faults(
    tables: dict[str, pa.Table], day: date, world_start: date, config: SimConfig
) -> FaultedDay:
    """Inject every fault configured to fire on ``day``."""
    out = dict(tables)
    late: set[str] = set()
    records: list[FaultRecord] = []
    faults = config.faults
    for k, name in enumerate(FAULT_ORDER):
        spec: FaultSpec = getattr(faults, name)
        if not spec.enabled:
            continue
        rng = np.random.default_rng([config.seed, day.toordinal(), FAULT_STREAM, k])
        if not fires(spec, day, world_start, rng):
            continue
        table = out[spec.table]
        n = table.num_rows
        if name == "late_partition":
            late.add(spec.table)
            records.append(FaultRecord(day, spec.table, name, n, "arrives a day late"))
            continue
        if name == "renamed_column":
            old, new = faults.renamed_column.column, faults.renamed_column.new_name
            names = [new if c == old else c for c in table.column_names]
            out[spec.table] = table.rename_columns(names)
            records.append(FaultRecord(day, spec.table, name, n, f"{old} -> {new}"))
            continue
        if n == 0:
            continue
        rows = _pick_rows(rng, n, spec.fraction)
        if name == "nulls":
            columns = faults.nulls.columns
            table = _nulls(table, rows, columns, rng)
            detail = f"nulls in {', '.join(columns)}"
        elif name == "negative_amounts":
            table = _negative(table, rows)
            detail = "amount < 0"
        elif name == "future_timestamps":
            column = TABLES[spec.table].event_time
            assert column is not None
            table = _future(table, rows, column, day, rng)
            detail = f"{column} after the partition day"
        else:
            table = pa.concat_tables([table, table.take(pa.array(rows))])
            detail = "exact duplicate rows"
        out[spec.table] = table
        records.append(FaultRecord(day, spec.table, name, int(rows.size), detail))
    return FaultedDay(out, frozenset(late), records)
