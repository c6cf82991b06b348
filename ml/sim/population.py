"""The customers of the simulated world as column arrays, one entry per customer.

Customer ``i`` has the id ``C{i + 1:08d}``. Days are ``date.toordinal()`` integers;
``NO_DAY`` marks "never" (not churned, not disengaging, no complaint yet).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ml.contract.schema import ACQUISITION_CHANNELS, ACTIONS, PLANS, REGIONS
from ml.sim.sim_config import SimConfig

NO_DAY = -1
RESPONSE_TYPES = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
PERSUADABLE, SURE_THING, LOST_CAUSE, SLEEPING_DOG = range(4)

# Real-world attributes only: "unknown"/"other" exist for imported data.
SIM_PLANS = PLANS[:3]
SIM_REGIONS = REGIONS[:5]
SIM_CHANNELS = ACQUISITION_CHANNELS[:5]
PLAN_WEIGHTS = np.array([0.55, 0.30, 0.15])
REGION_WEIGHTS = np.array([0.22, 0.20, 0.20, 0.18, 0.20])
CHANNEL_WEIGHTS = np.array([0.35, 0.25, 0.20, 0.12, 0.08])
# One weight per entry of ml.contract.schema.CATEGORIES.
CATEGORY_WEIGHTS = np.array([0.30, 0.15, 0.18, 0.10, 0.12, 0.10, 0.05])

# How plan and acquisition channel shape behaviour (index = code).
PLAN_RATE = np.array([0.85, 1.1, 1.35])
PLAN_SPEND = np.array([0.9, 1.15, 1.4])
PLAN_LOG_HAZARD = np.array([0.2, 0.0, -0.3])
CHANNEL_HIDDEN_SHIFT = np.array([-0.1, 0.15, 0.3, -0.35, 0.05])


@dataclass
class Population:
    """Per-customer attributes and state; every field has one row per customer."""

    signup_day: np.ndarray  # int32 ordinal
    plan: np.ndarray  # int8 index into PLANS
    region: np.ndarray  # int8 index into REGIONS
    channel: np.ndarray  # int8 index into ACQUISITION_CHANNELS
    hidden: np.ndarray  # float64 latent churn propensity, never observed
    spend: np.ndarray  # float64 typical basket value
    rate: np.ndarray  # float64 base purchases per day
    fav_category: np.ndarray  # int8 index into CATEGORIES
    response: np.ndarray  # int8 (n, len(ACTIONS)) index into RESPONSE_TYPES
    uplift: np.ndarray  # float64 (n, len(ACTIONS)) true relative risk reduction
    churned_on: np.ndarray  # int32 first day gone, NO_DAY while a customer
    onset_day: np.ndarray  # int32 day disengagement began, NO_DAY if engaged
    churn_due: np.ndarray  # int32 day a disengaging customer leaves
    last_purchase: np.ndarray  # int32
    ewm_short: np.ndarray  # float64 purchases per day, two-week half-life
    ewm_long: np.ndarray  # float64 purchases per day, three-month half-life
    ticket_score: np.ndarray  # float64 decaying weight of recent tickets
    last_complaint: np.ndarray  # int32 day of the last complaint ticket
    treat_mult: np.ndarray  # float64 hazard multiplier of the active treatment
    treat_until: np.ndarray  # int32 first day the treatment no longer works
    dormant_until: np.ndarray  # int32 first day after a quiet spell

    @property
    def size(self) -> int:
        return int(self.signup_day.shape[0])

    @property
    def alive(self) -> np.ndarray:
        return self.churned_on == NO_DAY

    @property
    def disengaging(self) -> np.ndarray:
        return self.onset_day != NO_DAY

    def extend(self, other: Population) -> None:
        """Append the customers of ``other`` (new signups) in place."""
        for f in fields(self):
            setattr(
                self,
                f.name,
                np.concatenate([getattr(self, f.name), getattr(other, f.name)]),
            )

    def take(self, idx: np.ndarray) -> Population:
        """A copy of the customers ``idx`` (rows in that order)."""
        return Population(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def save(self, path: Path) -> None:
        """Write all arrays losslessly (dtype and values) to an ``.npz`` file."""
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **{f.name: getattr(self, f.name) for f in fields(self)})
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Population:
        """Read arrays written by :meth:`save`."""
        with np.load(path) as data:
            return cls(**{f.name: data[f.name] for f in fields(cls)})


def _choice(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    return rng.choice(len(weights), size=n, p=weights / weights.sum()).astype(np.int8)


def draw_response_types(
    rng: np.random.Generator, hidden: np.ndarray, config: SimConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Response type and true uplift for each customer and action.

    Sleeping dogs share a contact aversion across actions; among customers who do not
    react to contact, risky ones (high hidden factor) are lost causes and safe ones
    sure things. ``uplift`` is the relative reduction of the customer's churn risk
    when a contact reaches them (negative for sleeping dogs).
    """
    n = hidden.shape[0]
    acfg = config.actions
    aversion = rng.normal(size=n)
    response = np.empty((n, len(ACTIONS)), dtype=np.int8)
    uplift = np.zeros((n, len(ACTIONS)), dtype=np.float64)
    p_lost = 1.0 / (1.0 + np.exp(-1.5 * hidden))
    for k, action in enumerate(ACTIONS):
        u = rng.random(n)
        tilt = rng.random(n)
        strength = rng.uniform(0.6, 1.4, size=n)
        p_dog = np.clip(
            acfg.sleeping_dog_share[action] * np.exp(aversion - 0.5), 0, 0.9
        )
        p_pers = acfg.persuadable_share[action] * (1 - p_dog)
        kind = np.where(tilt < p_lost, LOST_CAUSE, SURE_THING)
        kind = np.where(u < p_pers + p_dog, PERSUADABLE, kind)
        kind = np.where(u < p_dog, SLEEPING_DOG, kind)
        response[:, k] = kind
        uplift[:, k] = np.where(
            kind == PERSUADABLE,
            np.clip(acfg.uplift[action] * strength, 0, 0.95),
            np.where(
                kind == SLEEPING_DOG,
                -np.clip(acfg.backfire[action] * strength, 0, 0.95),
                0.0,
            ),
        )
    return response, uplift


def new_customers(
    rng: np.random.Generator,
    n: int,
    signup_days: np.ndarray,
    config: SimConfig,
) -> Population:
    """Draw ``n`` customers who signed up on ``signup_days`` (engaged, no history)."""
    rates = config.rates
    plan = _choice(rng, PLAN_WEIGHTS, n)
    region = _choice(rng, REGION_WEIGHTS, n)
    channel = _choice(rng, CHANNEL_WEIGHTS, n)
    hidden = rng.normal(size=n) + CHANNEL_HIDDEN_SHIFT[channel]
    spend = (
        rates.spend_median
        * PLAN_SPEND[plan]
        * np.exp(rates.spend_sigma * rng.normal(size=n))
    )
    rate = (
        (1.0 / rates.purchase_interval_days)
        * PLAN_RATE[plan]
        * np.exp(rates.purchase_rate_sigma * rng.normal(size=n))
    )
    # Valuable customers tend to be loyal too: a mild link, so value and risk are
    # not independent.
    hidden = hidden - 0.15 * np.log(spend / rates.spend_median)
    fav_category = _choice(rng, CATEGORY_WEIGHTS, n)
    response, uplift = draw_response_types(rng, hidden, config)
    days = signup_days.astype(np.int32)
    never = np.full(n, NO_DAY, dtype=np.int32)
    return Population(
        signup_day=days,
        plan=plan,
        region=region,
        channel=channel,
        hidden=hidden,
        spend=spend,
        rate=rate,
        fav_category=fav_category,
        response=response,
        uplift=uplift,
        churned_on=never.copy(),
        onset_day=never.copy(),
        churn_due=never.copy(),
        last_purchase=days.copy(),
        ewm_short=rate.copy(),
        ewm_long=rate.copy(),
        ticket_score=np.zeros(n),
        last_complaint=never.copy(),
        treat_mult=np.ones(n),
        treat_until=never.copy(),
        dormant_until=never.copy(),
    )
