"""How customers behave on one day: seasonality, churn hazard, tickets, purchases.

Churn is a two-stage process. Each day an engaged customer starts to disengage with
a probability (the hazard) driven by what the pipeline can observe (recency, a
falling purchase frequency, support tickets, tenure, plan) and by a hidden factor it
cannot. A disengaging customer's purchase rate then decays over the following weeks
until they leave for good on ``churn_due``; a share leave within a few days instead,
which keeps churn only partly predictable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np

from ml.contract.schema import ACQUISITION_CHANNELS, PLANS, REGIONS, TICKET_TOPICS
from ml.sim.population import (
    CATEGORY_WEIGHTS,
    NO_DAY,
    PLAN_LOG_HAZARD,
    SIM_PLANS,
    SIM_REGIONS,
    Population,
)
from ml.sim.sim_config import SimConfig, day_offset

# Monday .. Sunday, as date.weekday() counts.
WEEKLY = np.array([0.92, 0.88, 0.92, 0.97, 1.08, 1.22, 1.01])
# Purchase rate at churn_due as a share of the customer's normal rate.
ENGAGEMENT_AT_CHURN = 0.1
DECAY_SHAPE = 0.6
BASKET_SHRINK = 0.25
QUIET_RATE_FACTOR = 0.05
SUDDEN_CHURN_DAYS = (1, 5)
EWM_SHORT_HALF_LIFE = 14.0
EWM_LONG_HALF_LIFE = 90.0
MAX_HAZARD = 0.5

# log-hazard coefficients
HIDDEN_COEF = 0.4
NEW_CUSTOMER_COEF = 1.0
NEW_CUSTOMER_DAYS = 120.0
TICKET_COEF = 1.1
RECENCY_COEF = 0.35
DECLINE_COEF = 0.3

COMPLAINT = TICKET_TOPICS.index("complaint")
# Which population attribute and label set a drift's ``column`` names.
DRIFT_ATTRIBUTE = {"region": "region", "plan": "plan", "acquisition_channel": "channel"}
DRIFT_VALUES = {
    "region": REGIONS,
    "plan": PLANS,
    "acquisition_channel": ACQUISITION_CHANNELS,
}
# Weights follow the order of ml.contract.schema.TICKET_TOPICS and TICKET_SEVERITIES.
TOPIC_WEIGHTS_ENGAGED = np.array([0.30, 0.30, 0.20, 0.15, 0.05])
TOPIC_WEIGHTS_DISENGAGING = np.array([0.20, 0.20, 0.15, 0.10, 0.35])
SEVERITY_WEIGHTS = np.array([0.50, 0.35, 0.15])
SEVERITY_WEIGHTS_COMPLAINT = np.array([0.20, 0.40, 0.40])
SEVERITY_SCORE = np.array([0.3, 0.6, 1.0])
COMPLAINT_SCORE_FACTOR = 1.5
DISENGAGED_TICKET_FACTOR = 4.0


def _in_sale(day: date) -> bool:
    """Black Friday week and the January sales."""
    return (
        (day.month == 11 and day.day >= 20)
        or (day.month == 12 and day.day <= 2)
        or (day.month == 1 and day.day <= 7)
    )


def yearly_factor(day: date) -> float:
    """Purchase volume over the year: a peak around Christmas, a trough in summer."""
    doy = day.timetuple().tm_yday
    factor = 1.0 + 0.12 * math.cos(2 * math.pi * (doy - 355) / 365.25)
    if day.month == 11 and day.day >= 20 or day.month == 12 and day.day <= 2:
        factor *= 1.35
    return factor


def purchase_seasonality(day: date) -> float:
    """Multiplier of every customer's purchase rate on ``day``."""
    return float(WEEKLY[day.weekday()]) * yearly_factor(day)


def amount_seasonality(day: date) -> float:
    """Baskets are larger in December (gifts)."""
    return 1.12 if day.month == 12 else 1.0


def discount_probability(day: date, config: SimConfig) -> float:
    """Share of purchases made at a discount on ``day``."""
    share = config.rates.discount_share
    return min(1.0, share * 2.5) if _in_sale(day) else share


def signup_seasonality(day: date) -> float:
    """New-year resolutions and the autumn season bring more signups."""
    return {1: 1.3, 9: 1.1, 10: 1.1, 11: 1.15}.get(day.month, 1.0)


def engagement(pop: Population, t: int) -> np.ndarray:
    """Share of the normal purchase rate left (1 while engaged)."""
    lag = np.maximum(pop.churn_due - pop.onset_day, 1)
    progress = (t - pop.onset_day) / lag
    # Concave in time: most of the decline shows early, as in real disengagement.
    shape = np.clip(progress, 0.0, 1.0) ** DECAY_SHAPE
    decayed = np.exp(math.log(ENGAGEMENT_AT_CHURN) * shape)
    return np.where(pop.onset_day != NO_DAY, decayed, 1.0)


def daily_hazard(
    pop: Population, t: int, config: SimConfig, drift_log_mult: np.ndarray | float
) -> np.ndarray:
    """Probability that an engaged customer starts to disengage on day ``t``."""
    tenure = (t - pop.signup_day).astype(np.float64)
    recency = (t - pop.last_purchase).astype(np.float64)
    trend = np.log((pop.ewm_short + 0.005) / (pop.ewm_long + 0.005))
    log_h = (
        math.log(config.rates.base_hazard)
        + HIDDEN_COEF * pop.hidden
        + PLAN_LOG_HAZARD[pop.plan]
        + NEW_CUSTOMER_COEF * np.exp(-tenure / NEW_CUSTOMER_DAYS)
        + TICKET_COEF * pop.ticket_score
        + RECENCY_COEF * np.log1p(recency * pop.rate)
        - DECLINE_COEF * np.clip(trend, -2.0, 0.0)
        + drift_log_mult
    )
    treated = np.where(t < pop.treat_until, pop.treat_mult, 1.0)
    return np.minimum(np.exp(log_h) * treated, MAX_HAZARD)


def drift_segment(
    pop: Population, day: date, start: date, config: SimConfig
) -> np.ndarray | None:
    """Who the configured drift event affects on ``day`` (None before it starts or
    without one); ``start`` is the world's first day."""
    drift = config.drift
    if drift is None or (day - start).days < day_offset(drift.start, start):
        return None
    codes = getattr(pop, DRIFT_ATTRIBUTE[drift.column])
    return np.asarray(codes == DRIFT_VALUES[drift.column].index(drift.value))


@dataclass(frozen=True)
class DriftEffects:
    """Per customer (or 1 / 0 everywhere): the drift's multipliers of one day."""

    log_hazard: np.ndarray | float
    rate: np.ndarray | float
    spend: np.ndarray | float


def drift_effects(segment: np.ndarray | None, config: SimConfig) -> DriftEffects:
    """The hazard, purchase-rate and basket multipliers of the drift segment."""
    drift = config.drift
    if segment is None or drift is None:
        return DriftEffects(0.0, 1.0, 1.0)
    return DriftEffects(
        np.where(segment, math.log(drift.hazard_multiplier), 0.0),
        np.where(segment, drift.rate_multiplier, 1.0),
        np.where(segment, drift.spend_multiplier, 1.0),
    )


@dataclass(frozen=True)
class ChurnStep:
    """Who started to disengage and who left for good on one day."""

    hazard: np.ndarray
    at_risk: np.ndarray  # bool per customer: engaged and alive before the draw
    onsets: np.ndarray
    leaving: np.ndarray  # bool per customer


def churn_step(
    rng: np.random.Generator,
    pop: Population,
    t: int,
    config: SimConfig,
    drift_log_mult: np.ndarray | float,
) -> ChurnStep:
    """Draw today's onsets among engaged customers and let the due ones leave."""
    hazard = daily_hazard(pop, t, config, drift_log_mult)
    at_risk = pop.alive & ~pop.disengaging
    idx = np.flatnonzero(at_risk & (rng.random(pop.size) < hazard))
    start_disengaging(pop, idx, t, draw_lags(rng, idx.size, config))
    leaving = pop.alive & (pop.churn_due != NO_DAY) & (pop.churn_due <= t)
    pop.churned_on[leaving] = t
    return ChurnStep(hazard, at_risk, idx, leaving)


def start_quiet_spells(
    rng: np.random.Generator, pop: Population, t: int, config: SimConfig
) -> None:
    """Engaged customers sometimes pause for weeks and then come back.

    Pauses look like disengagement in the data, so recency and frequency alone do
    not tell a churner from a customer on a break.
    """
    rates = config.rates
    can_pause = pop.alive & ~pop.disengaging & (pop.dormant_until <= t)
    idx = np.flatnonzero(can_pause & (rng.random(pop.size) < rates.quiet_spell_rate))
    length = rng.integers(
        rates.quiet_spell_days_min, rates.quiet_spell_days_max + 1, idx.size
    )
    pop.dormant_until[idx] = t + length


def draw_lags(rng: np.random.Generator, n: int, config: SimConfig) -> np.ndarray:
    """Days from the start of disengagement to churn."""
    rates = config.rates
    sudden = rng.random(n) < rates.sudden_churn_share
    slow = rng.integers(rates.disengage_days_min, rates.disengage_days_max + 1, n)
    fast = rng.integers(SUDDEN_CHURN_DAYS[0], SUDDEN_CHURN_DAYS[1] + 1, n)
    return np.where(sudden, fast, slow).astype(np.int32)


def start_disengaging(
    pop: Population, idx: np.ndarray, t: int, lags: np.ndarray
) -> None:
    """Customers ``idx`` begin to disengage on ``t`` and leave ``lags`` days later."""
    pop.onset_day[idx] = t
    pop.churn_due[idx] = t + lags


def _categorical(u: np.ndarray, weights: np.ndarray) -> np.ndarray:
    cum = np.cumsum(weights / weights.sum())
    return np.minimum(np.searchsorted(cum, u, side="right"), len(weights) - 1)


@dataclass(frozen=True)
class Tickets:
    """Support tickets opened on one day."""

    customer: np.ndarray
    topic: np.ndarray
    severity: np.ndarray
    seconds: np.ndarray


def draw_tickets(
    rng: np.random.Generator, pop: Population, config: SimConfig
) -> Tickets:
    """Tickets of the day; disengaging customers write more, and more complaints."""
    n = pop.size
    disengaging = pop.disengaging
    p = config.rates.ticket_rate * np.exp(0.4 * pop.hidden)
    p = np.where(disengaging, p * DISENGAGED_TICKET_FACTOR, p)
    opened = pop.alive & (rng.random(n) < p)
    idx = np.flatnonzero(opened)
    u_topic = rng.random(idx.size)
    u_severity = rng.random(idx.size)
    seconds = rng.uniform(7 * 3600, 21 * 3600, idx.size)
    topic = np.where(
        disengaging[idx],
        _categorical(u_topic, TOPIC_WEIGHTS_DISENGAGING),
        _categorical(u_topic, TOPIC_WEIGHTS_ENGAGED),
    )
    severity = np.where(
        topic == COMPLAINT,
        _categorical(u_severity, SEVERITY_WEIGHTS_COMPLAINT),
        _categorical(u_severity, SEVERITY_WEIGHTS),
    )
    order = np.argsort(seconds, kind="stable")
    return Tickets(idx[order], topic[order], severity[order], seconds[order])


def record_tickets(
    pop: Population, tickets: Tickets, t: int, config: SimConfig
) -> None:
    """Let earlier tickets fade and add today's to each customer's ticket score."""
    pop.ticket_score *= 0.5 ** (1.0 / config.rates.ticket_half_life_days)
    weight = SEVERITY_SCORE[tickets.severity] * np.where(
        tickets.topic == COMPLAINT, COMPLAINT_SCORE_FACTOR, 1.0
    )
    np.add.at(pop.ticket_score, tickets.customer, weight)
    pop.last_complaint[tickets.customer[tickets.topic == COMPLAINT]] = t


@dataclass(frozen=True)
class AttributeChanges:
    """Customers whose plan or region changed on one day (new values already set)."""

    customer: np.ndarray
    seconds: np.ndarray


def change_attributes(
    rng: np.random.Generator, pop: Population, eligible: np.ndarray, config: SimConfig
) -> AttributeChanges:
    """Plan upgrades/downgrades and region moves; disengaging customers downgrade."""
    n = pop.size
    rates = config.rates
    disengaging = pop.disengaging
    p_plan = np.where(disengaging, 4 * rates.plan_change_rate, rates.plan_change_rate)
    plan_change = eligible & (rng.random(n) < p_plan)
    move = eligible & (rng.random(n) < rates.region_move_rate)
    plan_idx = np.flatnonzero(plan_change)
    move_idx = np.flatnonzero(move)
    p_down = np.where(disengaging[plan_idx], 0.8, 0.4)
    step = np.where(rng.random(plan_idx.size) < p_down, -1, 1)
    # Nobody leaves the range of plans: a change at the edge goes the other way.
    current = pop.plan[plan_idx].astype(np.int64)
    top = len(SIM_PLANS) - 1
    step = np.where(current + step > top, -1, np.where(current + step < 0, 1, step))
    pop.plan[plan_idx] = (current + step).astype(np.int8)
    shift = rng.integers(1, len(SIM_REGIONS), move_idx.size)
    pop.region[move_idx] = ((pop.region[move_idx] + shift) % len(SIM_REGIONS)).astype(
        np.int8
    )
    idx = np.flatnonzero(plan_change | move)
    return AttributeChanges(idx, rng.uniform(6 * 3600, 22 * 3600, idx.size))


@dataclass(frozen=True)
class Purchases:
    """Purchases of one day, in time order."""

    customer: np.ndarray
    seconds: np.ndarray
    amount: np.ndarray
    category: np.ndarray
    is_discounted: np.ndarray


def draw_purchases(
    rng: np.random.Generator,
    pop: Population,
    t: int,
    day: date,
    config: SimConfig,
    rate_mult: np.ndarray | float,
    spend_mult: np.ndarray | float,
) -> Purchases:
    """Each customer's purchases of the day (Poisson around their current rate)."""
    alive = pop.alive
    engaged = engagement(pop, t)
    quiet = np.where(pop.dormant_until > t, QUIET_RATE_FACTOR, 1.0)
    lam = pop.rate * engaged * quiet * purchase_seasonality(day) * rate_mult
    counts = rng.poisson(np.where(alive, lam, 0.0))
    idx = np.repeat(np.arange(pop.size), counts)
    m = idx.size
    # Leaving customers also buy smaller baskets, a second, weaker signal.
    spend = pop.spend * spend_mult * engaged**BASKET_SHRINK
    noise = np.exp(config.rates.amount_noise_sigma * rng.normal(size=m))
    amount = spend[idx] * noise * amount_seasonality(day)
    favourite = rng.random(m) < 0.5
    other = _categorical(rng.random(m), CATEGORY_WEIGHTS)
    category = np.where(favourite, pop.fav_category[idx], other)
    discounted = rng.random(m) < discount_probability(day, config)
    amount = np.where(discounted, amount * 0.85, amount)
    seconds = np.clip(rng.normal(14.5 * 3600, 3.5 * 3600, m), 0, 86_399)
    return Purchases(idx, seconds, np.round(amount, 2), category, discounted)


def record_purchases(pop: Population, customers: np.ndarray, t: int) -> None:
    """Update recency and the short/long purchase-frequency averages."""
    counts = np.bincount(customers, minlength=pop.size).astype(np.float64)
    pop.last_purchase[counts > 0] = t
    a_short = 0.5 ** (1.0 / EWM_SHORT_HALF_LIFE)
    a_long = 0.5 ** (1.0 / EWM_LONG_HALF_LIFE)
    pop.ewm_short *= a_short
    pop.ewm_short += (1 - a_short) * counts
    pop.ewm_long *= a_long
    pop.ewm_long += (1 - a_long) * counts
