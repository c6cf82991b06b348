"""Baseline policies the EV policy is compared against (tests, report, feedback).

Every baseline takes the same ``candidates`` frame as :func:`ml.decision.engine.decide`
and returns a *plan*: a frame row-aligned with ``candidates`` with the columns
``customer_id``, ``arm`` (``treated`` or ``none``), ``action`` (None when not treated)
and ``cost`` (expected cost of the action, 0 when not treated). The output of
``decide`` can be valued with the same helpers (only its treated rows count).

- :func:`probability_ranked`: the classic "call the likeliest churners": top by
  p_churn, each with their cheapest eligible action, under the same capacities and
  budget. It ignores value and uplift.
- :func:`treat_all_cheapest`: every eligible customer gets their cheapest eligible
  action, ignoring capacities and budget (the "spray" baseline).
- :func:`no_action`: nobody is treated.
- :func:`oracle`: the EV policy's allocation run on the *true* per-customer uplift
  (and optionally the true churn probability) from the simulator. Evaluation only,
  never in the pipeline.

All of them respect eligibility and the contact rules, like the policy does.
:func:`expected_value` values a plan with the policy's uplift assumptions,
:func:`true_value` with the true uplift.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ml.config.policy import PolicyConfig
from ml.contract.schema import ACTIONS, CHANNELS
from ml.decision.allocate import allocate, greedy_allocate

PLAN_COLUMNS = ("customer_id", "arm", "action", "cost")


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        raise KeyError(f"baselines need the column {column!r}")
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )


def _setup(
    candidates: pd.DataFrame, config: PolicyConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Eligible (customer, action) pairs after contact rules; costs; channels; slots."""
    n, k = len(candidates), len(ACTIONS)
    value = np.nan_to_num(_numbers(candidates, "value_at_risk"), nan=0.0)
    days_since = _numbers(candidates, "days_since_last_contact_decision")
    contacts = np.nan_to_num(_numbers(candidates, "contacts_90d_decisions"), nan=0.0)
    contactable = ~(
        (days_since < config.contact.cooldown_days)
        | (contacts >= config.contact.max_contacts_90d)
    )
    eligible = np.zeros((n, k), bool)
    cost = np.zeros(k)
    channel = np.arange(k, dtype=np.int64)
    for a, name in enumerate(ACTIONS):
        if name not in config.costs():
            continue
        action = config.action(name)
        rule = action.eligibility
        ok = contactable & (value >= rule.min_value_at_risk)
        if rule.plans:
            ok &= candidates["plan"].isin(rule.plans).to_numpy(dtype=bool)
        if rule.regions:
            ok &= candidates["region"].isin(rule.regions).to_numpy(dtype=bool)
        eligible[:, a] = ok
        cost[a] = action.cost
        channel[a] = CHANNELS.index(action.channel)
    capacity = np.array([config.capacity.get(c, 0) for c in CHANNELS], np.int64)
    return eligible, cost, channel, capacity


def _plan(
    candidates: pd.DataFrame, choice: np.ndarray, cost: np.ndarray
) -> pd.DataFrame:
    names = np.array([*ACTIONS, None], dtype=object)[choice]
    treated = choice >= 0
    index = candidates.index
    # object columns as they are: inferring pandas' string dtype from them cost
    # about half of building the plan, and a report builds six plans a night
    return pd.DataFrame(
        {
            "customer_id": pd.Series(
                candidates["customer_id"].astype(str).to_numpy(dtype=object),
                index=index,
                dtype=object,
            ),
            "arm": pd.Series(
                np.where(treated, "treated", "none"), index=index, dtype=object
            ),
            "action": pd.Series(names, index=index, dtype=object),
            "cost": np.where(treated, cost[np.maximum(choice, 0)], 0.0),
        },
        index=index,
    )


def _cheapest_first(eligible: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Per-pair rank so that a customer's cheapest eligible action comes first."""
    order = np.argsort(np.argsort(cost, kind="stable"), kind="stable")
    return np.where(eligible, -order[None, :].astype(np.float64), -np.inf)


def probability_ranked(candidates: pd.DataFrame, config: PolicyConfig) -> pd.DataFrame:
    """Top by p_churn, cheapest eligible action, same capacities and budget."""
    eligible, cost, channel, capacity = _setup(candidates, config)
    p = _numbers(candidates, "p_churn")
    allowed = eligible & np.isfinite(p)[:, None]
    # Customers by p_churn, and within a customer the cheaper action first: the
    # cost rank only separates a customer's own actions (its step is far below any
    # gap between two probabilities that matters).
    priority = np.nan_to_num(p, nan=-1.0)[:, None] + 1e-9 * _cheapest_first(
        allowed, cost
    )
    result = greedy_allocate(
        np.zeros(allowed.shape),
        allowed,
        cost,
        channel,
        capacity,
        config.daily_budget,
        priority=np.where(allowed, priority, -np.inf),
    )
    return _plan(candidates, result.choice, cost)


def treat_all_cheapest(candidates: pd.DataFrame, config: PolicyConfig) -> pd.DataFrame:
    """Every eligible, contactable customer gets their cheapest eligible action."""
    eligible, cost, _, _ = _setup(candidates, config)
    rank = _cheapest_first(eligible, cost)
    choice = np.where(eligible.any(axis=1), rank.argmax(axis=1), -1)
    return _plan(candidates, choice, cost)


def no_action(candidates: pd.DataFrame, config: PolicyConfig) -> pd.DataFrame:
    """Nobody is treated."""
    _, cost, _, _ = _setup(candidates, config)
    return _plan(candidates, np.full(len(candidates), -1, np.int64), cost)


def _uplift_matrix(
    n: int, uplift: Mapping[str, np.ndarray | float], what: str
) -> np.ndarray:
    matrix = np.zeros((n, len(ACTIONS)))
    for a, name in enumerate(ACTIONS):
        if name in uplift:
            matrix[:, a] = np.broadcast_to(np.asarray(uplift[name], np.float64), (n,))
        else:
            raise KeyError(f"{what} lacks the action {name!r}")
    return matrix


def oracle(
    candidates: pd.DataFrame,
    config: PolicyConfig,
    true_uplift: Mapping[str, np.ndarray],
    true_p: np.ndarray | None = None,
) -> pd.DataFrame:
    """The policy's allocation on the true uplift per customer and action.

    ``true_uplift`` maps each action to an array aligned with ``candidates``;
    ``true_p`` replaces p_churn when given. Evaluation only.
    """
    eligible, cost, channel, capacity = _setup(candidates, config)
    p = _numbers(candidates, "p_churn") if true_p is None else np.asarray(true_p)
    value = np.nan_to_num(_numbers(candidates, "value_at_risk"), nan=0.0)
    uplift = _uplift_matrix(len(candidates), true_uplift, "true_uplift")
    ev = p[:, None] * value[:, None] * uplift - cost[None, :]
    allowed = eligible & (ev > 0.0)
    result = allocate(
        np.nan_to_num(ev, nan=0.0),
        allowed,
        cost,
        channel,
        capacity,
        config.daily_budget,
        rankings=config.allocation.rankings,
    )
    return _plan(candidates, result.choice, cost)


def _value(
    plan: pd.DataFrame,
    p: np.ndarray,
    value: np.ndarray,
    uplift: np.ndarray,
    cost: Mapping[str, float],
) -> float:
    treated = (plan["arm"] == "treated").to_numpy(dtype=bool)
    actions = plan["action"].to_numpy(dtype=object)
    total = 0.0
    for a, name in enumerate(ACTIONS):
        rows = treated & (actions == name)
        if rows.any():
            gain = p[rows] * value[rows] * uplift[rows, a] - cost.get(name, 0.0)
            total += float(np.nansum(gain))
    return total


def expected_value(
    plan: pd.DataFrame,
    candidates: pd.DataFrame,
    config: PolicyConfig,
    uplifts: Mapping[str, float] | None = None,
) -> float:
    """Sum of EV over the treated rows, with the policy's (or given) mean uplifts."""
    means = {**config.uplift_means(), **(uplifts or {})}
    uplift = _uplift_matrix(
        len(candidates), {a: means.get(a, 0.0) for a in ACTIONS}, "uplifts"
    )
    p = _numbers(candidates, "p_churn")
    value = np.nan_to_num(_numbers(candidates, "value_at_risk"), nan=0.0)
    return _value(plan, p, value, uplift, config.costs())


def true_value(
    plan: pd.DataFrame,
    candidates: pd.DataFrame,
    config: PolicyConfig,
    true_uplift: Mapping[str, np.ndarray],
    true_p: np.ndarray | None = None,
) -> float:
    """Sum over treated rows of ``p * value * true_uplift - cost`` (evaluation)."""
    p = _numbers(candidates, "p_churn") if true_p is None else np.asarray(true_p)
    value = np.nan_to_num(_numbers(candidates, "value_at_risk"), nan=0.0)
    uplift = _uplift_matrix(len(candidates), true_uplift, "true_uplift")
    return _value(plan, p, value, uplift, config.costs())
