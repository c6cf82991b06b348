"""Training data: matured labels, snapshot thinning and the out-of-time split.

A label for as_of_date d covers purchases in (d, d + H], so it is known only on
d + H. Training for date ``as_of`` reads the rows with ``as_of_date + H <= as_of``
and nothing else, which makes a rerun for a past date see the same rows.

The split is by as_of_date: train < validation < test, each window separated from
the next by a gap of at least H days. The last training label window (d, d + H]
then ends before the first validation feature date, and the same holds between
validation and test, so no label of an earlier window describes days that a later
window's features already see.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from ml.config.model import ModelConfig
from ml.storage.warehouse import connect

log = logging.getLogger(__name__)

TRAINING_TABLE = "marts.training_examples"
FEATURES_TABLE = "marts.customer_features"


@dataclass(frozen=True)
class Window:
    """An inclusive range of as_of_dates."""

    start: date
    end: date

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


@dataclass(frozen=True)
class SplitWindows:
    """The train, validation and test windows of one training run."""

    train: Window
    validation: Window
    test: Window
    gap_days: int

    def as_params(self, prefix: str = "") -> dict[str, str]:
        """Window dates as flat, JSON-friendly parameters."""
        out: dict[str, str] = {}
        for name in ("train", "validation", "test"):
            window: Window = getattr(self, name)
            out[f"{prefix}{name}_start"] = window.start.isoformat()
            out[f"{prefix}{name}_end"] = window.end.isoformat()
        out[f"{prefix}gap_days"] = str(self.gap_days)
        return out


def latest_matured_date(as_of: date, horizon_days: int) -> date:
    """The last as_of_date whose label is known on ``as_of``."""
    return as_of - timedelta(days=horizon_days)


def split_windows(
    as_of: date, horizon_days: int, config: ModelConfig, shift_days: int = 0
) -> SplitWindows:
    """The train/validation/test windows for training on ``as_of``.

    ``shift_days`` moves the whole layout back (rolling-origin backtest folds).
    """
    split = config.split
    gap = max(split.gap_days, horizon_days)
    test_end = latest_matured_date(as_of, horizon_days) - timedelta(days=shift_days)
    test = Window(test_end - timedelta(days=split.test_days - 1), test_end)
    validation_end = test.start - timedelta(days=gap + 1)
    validation = Window(
        validation_end - timedelta(days=split.validation_days - 1), validation_end
    )
    train_end = validation.start - timedelta(days=gap + 1)
    train = Window(train_end - timedelta(days=split.train_days - 1), train_end)
    return SplitWindows(train=train, validation=validation, test=test, gap_days=gap)


def backtest_windows(
    as_of: date, horizon_days: int, config: ModelConfig
) -> list[SplitWindows]:
    """Rolling-origin folds: the layout of ``as_of`` moved back step_days per fold,
    most recent first (fold 0 is the run's own split)."""
    step = config.backtest.step_days
    return [
        split_windows(as_of, horizon_days, config, shift_days=fold * step)
        for fold in range(config.backtest.folds + 1)
    ]


def thinning_predicate(every_days: int, spacing_days: int | str = 1) -> str:
    """SQL keeping one snapshot per customer every ``every_days`` days, for
    snapshots ``spacing_days`` apart (1 for nightly snapshots, 7 for a weekly
    rebuild): a number, or a SQL expression giving each row's spacing (a column of
    the days between its snapshot date and the one before).

    A snapshot is kept when its step number (days since 1970-01-01 divided by the
    spacing) plus the customer's phase is a multiple of every_days / spacing. The
    phase comes from the md5 of the customer_id (stable across DuckDB versions), so
    every customer keeps the same dates whatever range is read. Snapshots already
    every_days or more apart are all kept: thinning weekly snapshots by the day
    would keep only the customers whose phase matches the snapshots' weekday.
    """
    every = int(every_days)
    if every <= 1:
        return "true"
    phase = "('0x' || left(md5(customer_id), 8))::bigint"
    day = "datediff('day', date '1970-01-01', as_of_date)"
    if isinstance(spacing_days, int):
        spacing = max(1, spacing_days)
        steps = every // spacing
        if steps <= 1:
            return "true"
        return f"((({day}) // {spacing}) + {phase}) % {steps} = 0"
    spacing_sql = f"greatest(1, {spacing_days})"
    steps_sql = f"({every} // {spacing_sql})"
    return (
        f"({steps_sql} <= 1 or "
        f"((({day}) // {spacing_sql}) + {phase}) % {steps_sql} = 0)"
    )


SPACING_SQL = f"""
    with snapshot_dates as (
        select distinct as_of_date from {TRAINING_TABLE}
        where as_of_date between $start and $end
    )
    -- each snapshot date's spacing: the days since the date before it (for the
    -- first, until the date after it), so a weekly rebuild followed by nightly
    -- runs is thinned by the week, then by the day
    select
        as_of_date,
        coalesce(
            datediff('day', lag(as_of_date) over (order by as_of_date), as_of_date),
            datediff('day', as_of_date, lead(as_of_date) over (order by as_of_date)),
            1
        ) as spacing_days
    from snapshot_dates
"""


def customer_sample_predicate(customers: int, max_customers: int) -> str:
    """SQL keeping a seeded sample of about ``max_customers`` of ``customers``
    customers, chosen by the md5 of the customer_id (another part of it than the
    thinning phase), so the same customers are kept whatever range is read;
    ``true`` when all fit or ``max_customers`` is 0."""
    if max_customers <= 0 or customers <= max_customers:
        return "true"
    buckets = 1_000_000
    kept = max(1, buckets * max_customers // customers)
    return f"(('0x' || substr(md5(customer_id), 9, 8))::bigint % {buckets}) < {kept}"


def load_examples(
    warehouse: Path,
    start: date,
    end: date,
    as_of: date,
    horizon_days: int,
    config: ModelConfig,
) -> pd.DataFrame:
    """Thinned rows of ``marts.training_examples`` with as_of_date in
    ``[start, end]`` whose label had matured by ``as_of``, in a stable order; of
    a sample of ``split.max_customers`` customers when there are more."""
    with connect(warehouse, read_only=True) as con:
        found = con.execute(
            f"select count(distinct customer_id) from {TRAINING_TABLE} "
            "where as_of_date between ? and ?",
            [start, end],
        ).fetchall()
        customers = int(found[0][0]) if found else 0
        sample = customer_sample_predicate(customers, config.split.max_customers)
        if sample != "true":
            log.info(
                "training reads a sample of about %d of %d customers "
                "(split.max_customers)",
                config.split.max_customers,
                customers,
            )
        thinned = thinning_predicate(config.thinning.every_days, "spacing_days")
        query = f"""
            with spacing as ({SPACING_SQL})
            select examples.* from {TRAINING_TABLE} as examples
            join spacing using (as_of_date)
            where as_of_date between $start and $end
                and as_of_date <= $matured
                and {thinned}
                and {sample}
            order by as_of_date, customer_id
        """
        frame = con.execute(
            query,
            {
                "start": start,
                "end": end,
                "matured": latest_matured_date(as_of, horizon_days),
            },
        ).df()
    if not frame.empty:
        frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.date
    return frame


def feature_columns(
    columns: list[str], config: ModelConfig
) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature names among ``columns``."""
    skip = set(config.key_columns) | set(config.label_columns)
    skip |= set(config.exclude_features)
    categorical = [c for c in config.categorical_features if c in columns]
    numeric = [c for c in columns if c not in skip and c not in categorical]
    categorical = [c for c in categorical if c not in skip]
    return numeric, categorical


def prepare_features(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> pd.DataFrame:
    """The model input: numerics as float64, categoricals as strings (None kept).

    Training and scoring both go through here, so the logged signature matches what
    scoring sends (an integer column with nulls would otherwise turn into floats).
    """
    out = pd.DataFrame(index=frame.index)
    for column in numeric:
        out[column] = pd.to_numeric(frame[column], errors="raise").astype("float64")
    for column in categorical:
        values = frame[column].astype("object")
        out[column] = values.where(values.notna(), None)
    return out


def frame_hash(frame: pd.DataFrame) -> str:
    """A sha256 (16 hex) of a frame's columns and values, in row order."""
    digest = hashlib.sha256()
    digest.update(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
