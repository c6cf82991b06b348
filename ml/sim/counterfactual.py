"""Paired counterfactuals of every exported contact (truth, for the demo's targets).

The pipeline measures an action's uplift in the units of its label: a decision of
run date ``d`` churned when the customer made no purchase in ``(d, d + H]``, and
the uplift is ``1 - churn_treated / churn_holdout``. The simulator's per-customer
``uplift`` is something else: a change in the churn *hazard* (a persuadable who is
already leaving may be rescued; a sleeping dog who is not may be pushed into
leaving, whatever their risk), and a voucher brings a purchase of its own. How
these add up in the label's units depends on each customer's state, so the true
effect is found the way a scientist would find it, by running the world twice.

When the world delivers the queues exported for ``d`` (on ``d + 1``, before anything
else happens that day), :func:`twin_outcomes` copies every contacted customer
twice, in the state they are in that morning. One copy is contacted exactly as
the real world contacts them (same decisions, same random numbers of the delivery),
the other is left alone. Both copies then live ``H`` days on their own (attribute
changes, tickets, onsets and churn, quiet spells, purchases and the drift, with
the world's own functions) from the same random streams, and the day of each copy's
first purchase is recorded. Signups and later contacts are left out: the pair
isolates the effect of this one contact. The real customer's later contacts are
balanced between the treated and held-out arms, so they do not shift the measured
comparison, but they can change what one contact is worth; the pair measures the
contact on its own.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from ml.contract.schema import ACTIONS
from ml.sim import actions, behaviour
from ml.sim.population import Population
from ml.sim.sim_config import SimConfig
from ml.sim.sim_tables import dates, labels

# The folder under truth/ the world writes the pairs to, one partition per day.
TRUTH_NAME = "counterfactual"
# The copies draw from streams of their own, seeded by (seed, delivery day, TWIN,
# day of the copy's life, stream), so a pair shares its random numbers.
TWIN = 1_000
CHANGES, TICKETS, HAZARD, QUIET, PURCHASES = range(5)
NO_PURCHASE = -1


def _rng(config: SimConfig, day: date, k: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, day.toordinal(), TWIN, k, stream])


def _live_one_day(
    pop: Population,
    day: date,
    k: int,
    start: date,
    config: SimConfig,
    extra_purchases: np.ndarray,
) -> np.ndarray:
    """Advance the copies by one day in the order of ``world._simulate_day``
    (without signups and contacts); returns who bought."""
    t = day.toordinal()
    eligible = pop.alive & (pop.signup_day < t)
    behaviour.change_attributes(_rng(config, day, k, CHANGES), pop, eligible, config)
    tickets = behaviour.draw_tickets(_rng(config, day, k, TICKETS), pop, config)
    behaviour.record_tickets(pop, tickets, t, config)
    drift = behaviour.drift_effects(
        behaviour.drift_segment(pop, day, start, config), config
    )
    rng = _rng(config, day, k, HAZARD)
    behaviour.churn_step(rng, pop, t, config, drift.log_hazard)
    behaviour.start_quiet_spells(_rng(config, day, k, QUIET), pop, t, config)
    bought = behaviour.draw_purchases(
        _rng(config, day, k, PURCHASES), pop, t, day, config, drift.rate, drift.spend
    )
    # A customer who left today does not come back to redeem (as in the world).
    extra = extra_purchases[pop.alive[extra_purchases]]
    customers = np.concatenate([bought.customer, extra]).astype(np.int64)
    behaviour.record_purchases(pop, customers, t)
    return customers


def twin_outcomes(
    pop: Population,
    decisions: actions.Decisions,
    delivery_rng: np.random.Generator,
    day: date,
    start: date,
    config: SimConfig,
    horizon_days: int,
) -> pa.Table | None:
    """The paired counterfactual of the decisions delivered on ``day``.

    ``pop`` is the world's population *before* the delivery (it is not changed),
    ``delivery_rng`` a generator in the state the world's own delivery starts from,
    ``start`` the world's first day. One row per decision with a known customer:
    ``day`` (of delivery), ``run_date`` (``day - 1``), ``decision_id``,
    ``customer_id``, ``action``, ``horizon_days`` and, for the contacted and the
    untreated copy, the day of the first purchase counted from the run date
    (``1 .. horizon_days``; null: none, i.e. the label says churned). None when
    no decision has a known customer.
    """
    known = np.flatnonzero(decisions.customer >= 0)
    if known.size == 0:
        return None
    customers = np.unique(decisions.customer[known])
    position = np.searchsorted(customers, decisions.customer[known])
    contacted, untreated = pop.take(customers), pop.take(customers)
    local = np.full(decisions.size, -1, dtype=np.int64)
    local[known] = position
    delivery = actions.deliver(
        delivery_rng,
        contacted,
        replace(decisions, customer=local),
        day.toordinal(),
        config,
    )
    first = {
        "contacted": np.full(customers.size, NO_PURCHASE, dtype=np.int32),
        "untreated": np.full(customers.size, NO_PURCHASE, dtype=np.int32),
    }
    none = np.array([], dtype=np.int64)
    for k in range(horizon_days):
        today = day + timedelta(days=k)
        for name, copy, extra in (
            ("contacted", contacted, delivery.redeemed_customers if k == 0 else none),
            ("untreated", untreated, none),
        ):
            bought = _live_one_day(copy, today, k, start, config, extra)
            fresh = bought[first[name][bought] == NO_PURCHASE]
            first[name][fresh] = k + 1

    def offsets(name: str) -> pa.Array:
        values = first[name][position]
        return pa.array(values, pa.int32(), mask=values == NO_PURCHASE)

    n = known.size
    action = np.clip(decisions.action[known], 0, None)
    return pa.table(
        {
            "day": dates(np.full(n, day.toordinal())),
            "run_date": dates(np.full(n, day.toordinal() - 1)),
            "decision_id": pa.array(decisions.decision_id[known], pa.string()),
            "customer_id": pa.array(decisions.customer_id[known], pa.string()),
            "action": labels(action, ACTIONS),
            "horizon_days": pa.array(np.full(n, horizon_days, dtype=np.int32)),
            "first_purchase_contacted": offsets("contacted"),
            "first_purchase_untreated": offsets("untreated"),
        }
    )


__all__ = ["TRUTH_NAME", "twin_outcomes"]
