"""Building contract-shaped Arrow columns from the simulator's integer arrays."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ml.contract.schema import TABLES

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
US_PER_DAY = 86_400_000_000
CUSTOMER_ID_WIDTH = 8


def prefixed_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` followed by each number zero-padded to ``width`` digits."""
    digits = pc.cast(pa.array(np.asarray(numbers, dtype=np.int64)), pa.string())
    padded = pc.utf8_lpad(digits, width=width, padding="0")
    return pc.binary_join_element_wise(prefix, padded, "")


def customer_ids(index: np.ndarray) -> pa.Array:
    """Customer ids (``C00000001`` is index 0)."""
    return prefixed_ids("C", np.asarray(index) + 1, CUSTOMER_ID_WIDTH)


def parse_customer_ids(ids: Sequence[str] | np.ndarray, size: int) -> np.ndarray:
    """Indices of customer ids, -1 for anything that is not a known customer."""
    text = pd.Series(np.asarray(ids, dtype=object), dtype="string")
    pattern = rf"C\d{{{CUSTOMER_ID_WIDTH}}}"
    well_formed = text.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)
    result = np.full(len(text), -1, dtype=np.int64)
    if well_formed.any():
        numbers = text[well_formed].str.slice(1).astype("int64").to_numpy()
        result[well_formed] = numbers - 1
    result[(result < 0) | (result >= size)] = -1
    return result


def day_prefix(day: date) -> str:
    """``YYYYMMDD-`` used in event ids, so ids are unique across days."""
    return day.strftime("%Y%m%d-")


def timestamps(days: np.ndarray | int, seconds: np.ndarray) -> pa.Array:
    """UTC timestamps (microseconds, no zone) of ``seconds`` into the given days."""
    day_us = (np.asarray(days, dtype=np.int64) - EPOCH_ORDINAL) * US_PER_DAY
    us = day_us + np.round(np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64)
    return pa.array(np.broadcast_to(us, np.shape(seconds)).astype("datetime64[us]"))


def dates(days: np.ndarray) -> pa.Array:
    """Dates from day ordinals."""
    offset = np.asarray(days, dtype=np.int64) - EPOCH_ORDINAL
    return pa.array(offset.astype("datetime64[D]"))


def optional_dates(days: np.ndarray, missing: int) -> pa.Array:
    """Dates from day ordinals, null where the ordinal equals ``missing``."""
    values = dates(np.where(days == missing, EPOCH_ORDINAL, days))
    return pc.if_else(pa.array(days == missing), pa.scalar(None, pa.date32()), values)


def labels(codes: np.ndarray, names: Sequence[str]) -> pa.Array:
    """The names of integer codes as a string column."""
    return pc.take(pa.array(list(names), pa.string()), pa.array(codes, pa.int64()))


def contract_table(name: str, columns: dict[str, pa.Array]) -> pa.Table:
    """An Arrow table with exactly the contract's columns, types and order."""
    schema = TABLES[name].schema
    return pa.table({f.name: columns[f.name] for f in schema}).cast(schema)


def empty_table(name: str) -> pa.Table:
    """A table with the contract's schema and no rows."""
    return TABLES[name].schema.empty_table()
