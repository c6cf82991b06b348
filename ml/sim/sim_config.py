"""Typed parameters of the simulated world, read from ``config/sim.yml``.

Days in this file (the drift start, the days a fault fires on) are either a calendar
date or an offset in days from the world's first simulated day (0 = the first day),
so one YAML works for any start date.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ml.config.files import CONFIG_DIR, REPO_ROOT, config_path, read_yaml
from ml.contract.schema import ACTIONS, TABLES

SIM_CONFIG = "sim.yml"
# the repository's copy
SIM_CONFIG_FILE = REPO_ROOT / CONFIG_DIR / SIM_CONFIG

DayRef = date | int


def day_offset(ref: DayRef, world_start: date) -> int:
    """Days between the world's first day and ``ref`` (a date or an offset)."""
    if isinstance(ref, date):
        return (ref - world_start).days
    return int(ref)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DriftConfig(_Strict):
    """From ``start`` on, one segment's churn hazard, spend and purchase rate shift."""

    start: DayRef = 380
    column: Literal["region", "plan", "acquisition_channel"] = "region"
    value: str = "south"
    hazard_multiplier: float = Field(default=2.0, gt=0)
    spend_multiplier: float = Field(default=0.75, gt=0)
    rate_multiplier: float = Field(default=0.8, gt=0)

    @model_validator(mode="after")
    def _known_segment(self) -> DriftConfig:
        allowed = TABLES["customers"].allowed_values[self.column]
        if self.value not in allowed:
            raise ValueError(f"drift value {self.value!r} is not a known {self.column}")
        return self


class FaultSpec(_Strict):
    """When a data fault fires and how much of the day's rows it touches.

    A fault fires on every day listed in ``days`` and, independently, on any day with
    probability ``daily_probability``. With both empty (the default) it never fires.
    """

    days: list[DayRef] = Field(default_factory=list)
    daily_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    fraction: float = Field(default=0.02, gt=0.0, le=1.0)
    table: str = "transactions"

    @model_validator(mode="after")
    def _known_table(self) -> FaultSpec:
        if self.table not in TABLES:
            raise ValueError(f"unknown landing table {self.table!r}")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.days) or self.daily_probability > 0


class NullFaultSpec(FaultSpec):
    """Nulls in key columns: each affected row loses one of ``columns``."""

    columns: list[str] = Field(default_factory=lambda: ["customer_id"])

    @model_validator(mode="after")
    def _known_columns(self) -> NullFaultSpec:
        unknown = set(self.columns) - set(TABLES[self.table].columns)
        if unknown or not self.columns:
            raise ValueError(
                f"null fault columns {sorted(unknown)} not in {self.table}"
            )
        return self


class RenameFaultSpec(FaultSpec):
    """A column arrives under another name (the whole partition)."""

    column: str = "amount"
    new_name: str = "amt"

    @model_validator(mode="after")
    def _known_column(self) -> RenameFaultSpec:
        if self.column not in TABLES[self.table].columns:
            raise ValueError(f"column {self.column!r} not in {self.table}")
        return self


class FaultConfig(_Strict):
    """Data faults injected into landing partitions; every one is off by default.

    Faults change only what lands, never the world itself: the ground truth and the
    other rows are the same as in a run without them.
    """

    duplicates: FaultSpec = Field(default_factory=FaultSpec)
    nulls: NullFaultSpec = Field(default_factory=NullFaultSpec)
    late_partition: FaultSpec = Field(default_factory=FaultSpec)
    renamed_column: RenameFaultSpec = Field(default_factory=RenameFaultSpec)
    negative_amounts: FaultSpec = Field(default_factory=FaultSpec)
    future_timestamps: FaultSpec = Field(default_factory=FaultSpec)

    @model_validator(mode="after")
    def _tables_fit(self) -> FaultConfig:
        if self.negative_amounts.table != "transactions":
            raise ValueError("negative_amounts applies to transactions only")
        if TABLES[self.future_timestamps.table].event_time is None:
            raise ValueError("future_timestamps needs a table with an event time")
        return self


class RateConfig(_Strict):
    """Behavioural rates of the population (per customer and day unless noted).

    ``config/sim.yml`` documents each one.
    """

    history_days: int = Field(default=730, ge=1)
    signup_rate: float = Field(default=0.003, ge=0)
    purchase_interval_days: float = Field(default=14.0, gt=0)
    purchase_rate_sigma: float = Field(default=0.9, ge=0)
    spend_median: float = Field(default=35.0, gt=0)
    spend_sigma: float = Field(default=0.7, ge=0)
    amount_noise_sigma: float = Field(default=0.4, ge=0)
    discount_share: float = Field(default=0.12, ge=0, le=1)
    base_hazard: float = Field(default=0.0014, gt=0, le=1)
    sudden_churn_share: float = Field(default=0.1, ge=0, le=1)
    disengage_days_min: int = Field(default=21, ge=1)
    disengage_days_max: int = Field(default=60, ge=1)
    quiet_spell_rate: float = Field(default=0.003, ge=0, le=1)
    quiet_spell_days_min: int = Field(default=20, ge=1)
    quiet_spell_days_max: int = Field(default=75, ge=1)
    ticket_rate: float = Field(default=0.0015, ge=0, le=1)
    ticket_half_life_days: float = Field(default=14.0, gt=0)
    plan_change_rate: float = Field(default=0.0008, ge=0, le=1)
    region_move_rate: float = Field(default=0.0002, ge=0, le=1)

    @model_validator(mode="after")
    def _lag_range(self) -> RateConfig:
        if self.disengage_days_max < self.disengage_days_min:
            raise ValueError("disengage_days_max must be >= disengage_days_min")
        if self.quiet_spell_days_max < self.quiet_spell_days_min:
            raise ValueError("quiet_spell_days_max must be >= quiet_spell_days_min")
        return self


class ActionConfig(_Strict):
    """How channels deliver and how strongly treatments work."""

    call_answer_rate: float = Field(default=0.55, ge=0, le=1)
    email_bounce_rate: float = Field(default=0.08, ge=0, le=1)
    voucher_redeem_rate: float = Field(default=0.25, ge=0, le=1)
    effect_days: int = Field(default=30, ge=1)
    persuadable_share: dict[str, float] = Field(
        default_factory=lambda: {"call": 0.30, "voucher": 0.35, "email": 0.20}
    )
    sleeping_dog_share: dict[str, float] = Field(
        default_factory=lambda: {"call": 0.10, "voucher": 0.04, "email": 0.08}
    )
    uplift: dict[str, float] = Field(
        default_factory=lambda: {"call": 0.50, "voucher": 0.40, "email": 0.20}
    )
    backfire: dict[str, float] = Field(
        default_factory=lambda: {"call": 0.40, "voucher": 0.15, "email": 0.25}
    )

    @model_validator(mode="after")
    def _every_action(self) -> ActionConfig:
        for name in ("persuadable_share", "sleeping_dog_share", "uplift", "backfire"):
            values = getattr(self, name)
            if set(values) != set(ACTIONS):
                raise ValueError(f"{name} needs exactly the actions {ACTIONS}")
            if any(not 0 <= v <= 1 for v in values.values()):
                raise ValueError(f"{name} values must lie in [0, 1]")
        for action in ACTIONS:
            if self.persuadable_share[action] + self.sleeping_dog_share[action] > 1:
                raise ValueError(f"response shares of {action} exceed 1")
        return self


class ReviewConfig(_Strict):
    """The simulated human reviewers of the review queue."""

    reviewers: list[str] = Field(
        default_factory=lambda: ["a.moreau", "j.okafor", "l.svensson", "r.tanaka"],
        min_length=1,
    )
    complaint_lookback_days: int = Field(default=7, ge=0)
    reject_closed_account_rate: float = Field(default=0.7, ge=0, le=1)
    reject_do_not_contact_rate: float = Field(default=0.5, ge=0, le=1)
    cheaper_channel_rate: float = Field(default=0.5, ge=0, le=1)
    random_reject_rate: float = Field(default=0.04, ge=0, le=1)


class SimConfig(_Strict):
    """A world is a pure function of this, its start date and the exports it reads."""

    n_customers: int = Field(default=10_000, ge=1)
    seed: int = Field(default=42, ge=0)
    drift: DriftConfig | None = None
    faults: FaultConfig = Field(default_factory=FaultConfig)
    rates: RateConfig = Field(default_factory=RateConfig)
    actions: ActionConfig = Field(default_factory=ActionConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    # 0 turns the weekly truth snapshots off.
    hazard_snapshot_every_days: int = Field(default=7, ge=0)


def load_sim_config(path: Path | None = None) -> SimConfig:
    """Read the simulator's YAML (``sim.yml``: the home's own copy, else the
    repository's, unless ``path`` is given; see :mod:`ml.config.files`)."""
    data, _ = read_yaml(path or config_path(SIM_CONFIG))
    return SimConfig.model_validate(data)


ROW_FAULTS = ("duplicates", "nulls", "negative_amounts", "future_timestamps")


def with_row_faults(
    config: SimConfig, daily_probability: float, fraction: float
) -> SimConfig:
    """``config`` with the row-level faults switched on at a low rate.

    Row faults end in quarantine without stopping a run (as long as a day's bad rows
    stay under the gate's threshold); schema faults and late partitions stay as
    configured. The demo uses this to show the quarantine at work.
    """
    faults = config.faults.model_copy(
        update={
            name: getattr(config.faults, name).model_copy(
                update={"daily_probability": daily_probability, "fraction": fraction}
            )
            for name in ROW_FAULTS
        }
    )
    return config.model_copy(update={"faults": faults})
