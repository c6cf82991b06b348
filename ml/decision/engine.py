"""The decision engine: scores in, one recorded decision per customer out.

:func:`decide` is a pure, vectorised function of (candidates, run_date, policy,
mode, model_version): no warehouse, no clock, no randomness, so a rerun gives an
identical frame. For each customer, in this order:

1. **Contact rules.** Treated fewer than ``cooldown_days`` ago, or already
   ``max_contacts_90d`` times in 90 days: arm ``none`` (``cooldown``,
   ``max_contacts``). Our own treated and held-out decisions count as contacts
   (the holdout must stay out of the next nights' queues like the treated arm,
   or it is contacted the next night and the measured uplift falls).
2. **Target.** Model mode: ``EV(a) = p_churn * value_at_risk * uplift(a) - cost(a)``
   for every action the customer is eligible for; the customer is a target when some
   EV is positive, and their proposed action is the best one (``ev_best``). Fallback
   mode: the rule in ``fallback`` of the policy (``fallback_rule``); EVs are not
   computed, because the scores are not trusted.
3. **Review** (model mode only). A target whose p_churn lies in the uncertainty
   band, whose value at risk reaches the threshold, or whose features are out of the
   training range (``ood``) goes to arm ``review`` with the proposed action, instead
   of an automatic action. At most ``max_per_day`` cases, highest EV first; the rest
   get arm ``none`` with ``review_capacity``: a case that needs a person is not sent
   out automatically, and doing nothing is the safe default. Review cases consume
   no capacity or budget today; an approved case goes out with a later run.
4. **Holdout and allocation.** The remaining targets are walked best first under
   the channel capacities and the daily budget (:mod:`ml.decision.allocate`). A
   deterministic hash of (salt, run_date, customer_id) puts ``holdout.fraction`` of
   them in the holdout *inside* that walk: a holdout customer is recorded with the
   action they would have received at their turn, and consumes nothing. The holdout
   is thereby a random sample of exactly the customers the policy treats, with the
   same actions, which is what the feedback layer needs to measure uplift; and the
   treated customers still use the full capacity. Review cases are never held out:
   the holdout measures the automatic decisions, and reviewed cases are measured
   as override outcomes. Targets the walk cannot serve get
   ``none`` with what stopped them (``capacity_<channel>``, ``budget``); a target
   served by a lower action than its best gets ``ev_next``.

The output has one row per input row, in input order; decisions do not depend on the
input's row order (ties are broken by the customer hash). ``decision_id`` is the
first 16 hex characters of ``sha256(f"{run_date}|{customer_id}|{action or 'none'}")``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ml.config.policy import PolicyConfig
from ml.contract.schema import ACTIONS, CHANNELS
from ml.decision.allocate import Allocation, allocate, greedy_allocate

Mode = Literal["model", "fallback"]
ARMS = ("treated", "holdout", "review", "none")
DECISION_COLUMNS = (
    "decision_id",
    "run_date",
    "customer_id",
    "arm",
    "action",
    "p_churn",
    "value_at_risk",
    *(f"ev_{a}" for a in ACTIONS),
    "chosen_ev",
    "reason_codes",
    "policy_version",
    "model_version",
    "policy_mode",
)
# Reason codes, in the order they are joined (";") in reason_codes.
REASON_CODES = (
    "ev_best",
    "ev_next",
    "fallback_rule",
    "holdout",
    "review_p_band",
    "review_high_value",
    "review_ood",
    "review_capacity",
    *(f"capacity_{c}" for c in CHANNELS),
    "budget",
    "cooldown",
    "max_contacts",
    "no_score",
    "ineligible",
    "no_positive_ev",
    "no_rule",
)
_BIT = {code: 1 << i for i, code in enumerate(REASON_CODES)}
CONTACT_COLUMNS = ("days_since_last_contact_decision", "contacts_90d_decisions")
_UNIT = 2.0**-53


def _column(frame: pd.DataFrame, name: str, default: float | None = None) -> np.ndarray:
    if name not in frame.columns:
        if default is None:
            raise KeyError(f"decide needs the column {name!r}")
        return np.full(len(frame), default, dtype=np.float64)
    values = pd.to_numeric(frame[name], errors="coerce")
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _in_segment(frame: pd.DataFrame, column: str, allowed: Sequence[str]) -> np.ndarray:
    if not allowed:
        return np.ones(len(frame), bool)
    if column not in frame.columns:
        raise KeyError(f"the policy filters on {column!r}, which candidates lack")
    return frame[column].isin(list(allowed)).to_numpy(dtype=bool)


def _sha256_table(column: Sequence[str] | np.ndarray | pd.Series) -> pa.Table:
    return pa.table({"c": pa.array(np.asarray(column, dtype=object), pa.string())})


def customer_hash(
    customer_ids: Sequence[str] | np.ndarray, run_date: date, salt: str
) -> tuple[np.ndarray, np.ndarray]:
    """Two independent uniforms in [0, 1) per customer, from sha256.

    The first decides the holdout, the second breaks ties. Anyone can recompute
    them: the top 53 bits of the first and second 8 bytes of
    ``sha256(f"{salt}|{run_date}|{customer_id}")``. DuckDB computes the digests
    (vectorised, several times faster than hashlib in a Python loop).
    """
    ids = _sha256_table(customer_ids)
    if ids.num_rows == 0:
        return np.zeros(0), np.zeros(0)
    with duckdb.connect() as con:
        con.register("ids", ids)
        words = con.execute(
            "select ('0x' || substr(h, 1, 16))::ubigint as w1, "
            "('0x' || substr(h, 17, 16))::ubigint as w2 "
            "from (select sha256($prefix || c) as h from ids)",
            {"prefix": f"{salt}|{run_date.isoformat()}|"},
        ).fetchnumpy()
    first = (np.asarray(words["w1"], np.uint64) >> np.uint64(11)).astype(np.float64)
    second = (np.asarray(words["w2"], np.uint64) >> np.uint64(11)).astype(np.float64)
    return first * _UNIT, second * _UNIT


def decision_ids(
    customer_ids: Sequence[str] | np.ndarray,
    actions: Sequence[str | None] | np.ndarray,
    run_date: date,
) -> pd.Series:
    """``sha256(f"{run_date}|{customer_id}|{action or 'none'}")[:16]`` per row
    (hex), computed by DuckDB."""
    table = _sha256_table(customer_ids).append_column(
        "a", pa.array(np.asarray(actions, dtype=object), pa.string())
    )
    if table.num_rows == 0:
        return pd.Series([], dtype="string")
    with duckdb.connect() as con:
        con.register("rows", table)
        ids = con.execute(
            "select substr(sha256($prefix || c || '|' || coalesce(a, 'none')), 1, 16)"
            " as decision_id from rows",
            {"prefix": f"{run_date.isoformat()}|"},
        ).fetchnumpy()["decision_id"]
    return pd.Series(np.asarray(ids, dtype=object), dtype="string")


def _reason_labels(flags: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The distinct reason strings and each row's index into them."""
    unique, inverse = np.unique(flags, return_inverse=True)
    labels = [";".join(c for c in REASON_CODES if int(u) & _BIT[c]) for u in unique]
    return labels, inverse.reshape(-1).astype(np.int64)


def _labels(codes: np.ndarray, labels: Sequence[str | None]) -> pd.Series:
    """A string column from codes into ``labels`` (-1 or a None label: missing)."""
    dictionary = pa.array([*labels, None], pa.large_string())
    indices = np.where(codes < 0, len(labels), codes)
    return pd.Series(dictionary.take(pa.array(indices, pa.int64())).to_pandas())


def _strings(values: Sequence[str] | np.ndarray) -> pd.Series:
    """A string column (pandas' default string dtype) from Python strings."""
    return pd.Series(pa.array(values, pa.large_string()).to_pandas())


def _blocked_flags(allocation: Allocation) -> np.ndarray:
    """Translate the allocation's channel/budget bit mask into reason bits."""
    out = np.zeros(allocation.blocked.shape[0], np.int64)
    for j, name in enumerate(CHANNELS):
        hit = (allocation.blocked >> j) & 1 == 1
        out[hit] |= _BIT[f"capacity_{name}"]
    hit = (allocation.blocked >> len(CHANNELS)) & 1 == 1
    out[hit] |= _BIT["budget"]
    return out


def decide(
    candidates: pd.DataFrame,
    run_date: date,
    config: PolicyConfig,
    mode: Mode = "model",
    model_version: str | None = None,
    *,
    uplifts: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One decision per candidate (see the module docstring).

    ``candidates`` needs customer_id, value_at_risk, days_since_last_contact_decision
    (NaN = never) and contacts_90d_decisions; model mode needs p_churn, fallback mode
    recency_days and tx_count_180d; plan/region when the policy filters on them; an
    optional boolean ``ood``. ``uplifts`` overrides the prior mean uplift per action
    (the feedback layer passes posteriors).
    """
    if mode not in ("model", "fallback"):
        raise ValueError(f"mode must be 'model' or 'fallback', got {mode!r}")
    n = len(candidates)
    k = len(ACTIONS)
    ids = candidates["customer_id"].astype(str).to_numpy(dtype=object)
    if pd.Index(ids).has_duplicates:
        raise ValueError("candidates must hold each customer_id once")
    p = _column(candidates, "p_churn", np.nan if mode == "fallback" else None)
    value = np.nan_to_num(_column(candidates, "value_at_risk"), nan=0.0)
    days_since = _column(candidates, CONTACT_COLUMNS[0])
    contacts = np.nan_to_num(_column(candidates, CONTACT_COLUMNS[1]), nan=0.0)
    ood = (
        candidates["ood"].fillna(False).to_numpy(dtype=bool)
        if "ood" in candidates.columns
        else np.zeros(n, bool)
    )

    configured = np.array([a in {x.name for x in config.actions} for a in ACTIONS])
    cost = np.zeros(k)
    uplift = np.zeros(k)
    channel = np.arange(k, dtype=np.int64)
    eligible = np.zeros((n, k), bool)
    means = {**config.uplift_means(), **(uplifts or {})}
    for a, name in enumerate(ACTIONS):
        if not configured[a]:
            continue
        action = config.action(name)
        cost[a] = action.cost
        uplift[a] = float(means[name])
        channel[a] = CHANNELS.index(action.channel)
        rule = action.eligibility
        eligible[:, a] = (
            (value >= rule.min_value_at_risk)
            & _in_segment(candidates, "plan", rule.plans)
            & _in_segment(candidates, "region", rule.regions)
        )
    capacity = np.array([config.capacity.get(c, 0) for c in CHANNELS], np.int64)

    flags = np.zeros(n, np.int64)
    cooldown = days_since < config.contact.cooldown_days  # NaN: never contacted
    maxed = contacts >= config.contact.max_contacts_90d
    flags[cooldown] |= _BIT["cooldown"]
    flags[maxed] |= _BIT["max_contacts"]
    contactable = ~(cooldown | maxed)

    if mode == "model":
        ev = p[:, None] * value[:, None] * uplift[None, :] - cost[None, :]
        ev[:, ~configured] = np.nan
        scored = np.isfinite(p)
        positive = eligible & (ev > 0.0)
        wants = contactable & scored & positive.any(axis=1)
        allowed = positive & wants[:, None]
        flags[contactable & ~scored] |= _BIT["no_score"]
        rest = contactable & scored & ~wants
        flags[rest & ~eligible.any(axis=1)] |= _BIT["ineligible"]
        flags[rest & eligible.any(axis=1)] |= _BIT["no_positive_ev"]
        proposed = np.where(wants, np.where(allowed, ev, -np.inf).argmax(axis=1), -1)
        priority = np.where(wants, ev[np.arange(n), np.maximum(proposed, 0)], -np.inf)
    else:
        ev = np.full((n, k), np.nan)
        fallback = ACTIONS.index(config.fallback.action)
        rule_hit = (
            _column(candidates, "recency_days") > config.fallback.min_recency_days
        ) & (_column(candidates, "tx_count_180d") >= config.fallback.min_tx_count_180d)
        wants = contactable & rule_hit & eligible[:, fallback]
        allowed = np.zeros((n, k), bool)
        allowed[:, fallback] = wants
        flags[contactable & ~rule_hit] |= _BIT["no_rule"]
        flags[contactable & rule_hit & ~eligible[:, fallback]] |= _BIT["ineligible"]
        proposed = np.where(wants, fallback, -1)
        priority = np.where(wants, value, -np.inf)

    target = np.flatnonzero(wants)
    holdout_u, tiebreak = customer_hash(ids[target], run_date, config.holdout.salt)

    # Review routing (model mode): flagged targets leave the automatic stream.
    review = np.zeros(target.size, bool)
    flagged = np.zeros(target.size, bool)
    if mode == "model" and target.size:
        low, high = config.review.p_band
        pt = p[target]
        reasons = {
            "review_p_band": (pt >= low) & (pt <= high),
            "review_high_value": value[target] >= config.review.value_at_risk_threshold,
            "review_ood": ood[target] & config.review.ood,
        }
        for code, hit in reasons.items():
            flags[target[hit]] |= _BIT[code]
            flagged |= hit
        queue = np.flatnonzero(flagged)
        queue = queue[np.lexsort((tiebreak[queue], -priority[target[queue]]))]
        review[queue[: config.review.max_per_day]] = True
        flags[target[flagged & ~review]] |= _BIT["review_capacity"]

    stream = ~flagged
    rows = target[stream]
    virtual = holdout_u[stream] < config.holdout.fraction
    if mode == "model":
        result = allocate(
            ev[rows],
            allowed[rows],
            cost,
            channel,
            capacity,
            config.daily_budget,
            rankings=config.allocation.rankings,
            tiebreak=tiebreak[stream],
            virtual=virtual,
        )
    else:
        result = greedy_allocate(
            np.zeros((rows.size, k)),
            allowed[rows],
            cost,
            channel,
            capacity,
            config.daily_budget,
            priority=np.repeat(value[rows, None], k, axis=1),
            tiebreak=tiebreak[stream],
            virtual=virtual,
        )

    action_code = np.full(n, -1, np.int64)
    arm_code = np.full(n, ARMS.index("none"), np.int64)
    served = result.choice >= 0
    action_code[rows[served]] = result.choice[served]
    arm_code[rows[served & ~virtual]] = ARMS.index("treated")
    arm_code[rows[served & virtual]] = ARMS.index("holdout")
    flags[rows[served & virtual]] |= _BIT["holdout"]
    blocked = _blocked_flags(result)
    if mode == "model":
        # A lower action with nothing closed above it was priced out by a scarce
        # resource: the budget if the best action costs more, else its channel.
        lower = served & (result.choice != proposed[rows]) & (blocked == 0)
        best = proposed[rows]
        by_budget = lower & (cost[best] > cost[np.maximum(result.choice, 0)])
        blocked[by_budget] |= _BIT["budget"]
        for j, name in enumerate(CHANNELS):
            blocked[lower & ~by_budget & (channel[best] == j)] |= _BIT[
                f"capacity_{name}"
            ]
    flags[rows] |= blocked
    reviewed = target[review]
    action_code[reviewed] = proposed[reviewed]
    arm_code[reviewed] = ARMS.index("review")

    acted = action_code >= 0
    if mode == "model":
        best_now = acted & (action_code == proposed)
        flags[best_now] |= _BIT["ev_best"]
        flags[acted & ~best_now] |= _BIT["ev_next"]
    else:
        flags[acted] |= _BIT["fallback_rule"]
    chosen_ev = np.where(
        acted, ev[np.arange(n), np.maximum(action_code, 0)], 0.0
    ).astype(np.float64)

    action_names = np.array([*ACTIONS, None], dtype=object)[action_code]
    reason_labels, reason_index = _reason_labels(flags)
    frame = pd.DataFrame(
        {
            "decision_id": decision_ids(ids, action_names, run_date).to_numpy(),
            "run_date": np.full(n, run_date, dtype=object),
            "customer_id": _strings(ids),
            "arm": _labels(arm_code, ARMS),
            "action": _labels(action_code, ACTIONS),
            "p_churn": p,
            "value_at_risk": value,
            **{f"ev_{a}": ev[:, i] for i, a in enumerate(ACTIONS)},
            "chosen_ev": chosen_ev,
            "reason_codes": _labels(reason_index, reason_labels),
            "policy_version": _labels(np.zeros(n, np.int64), [config.policy_version]),
            "model_version": _labels(np.zeros(n, np.int64), [model_version]),
            "policy_mode": _labels(np.zeros(n, np.int64), [mode]),
        }
    )
    frame.index = candidates.index
    return frame.loc[:, list(DECISION_COLUMNS)]


def score_sanity(p: np.ndarray, config: PolicyConfig) -> list[str]:
    """The sanity checks a score distribution fails (empty: the scores look fine)."""
    rules = config.fallback.sanity
    scores = np.asarray(p, dtype=np.float64)
    failed: list[str] = []
    if scores.size < rules.min_rows:
        failed.append(f"min_rows: {scores.size} scores < {rules.min_rows}")
    if not scores.size:
        return failed
    missing = float(np.isnan(scores).mean())
    if missing > rules.max_nan_share:
        failed.append(f"max_nan_share: {missing:.3f} missing > {rules.max_nan_share}")
    finite = scores[np.isfinite(scores)]
    outside = int(((finite < 0.0) | (finite > 1.0)).sum())
    if outside or np.isinf(scores).any():
        failed.append(f"p_churn_range: {outside} scores outside [0, 1]")
    if finite.size:
        mean, std = float(finite.mean()), float(finite.std())
        low, high = rules.mean_p_churn
        if not low <= mean <= high:
            failed.append(f"mean_p_churn: {mean:.4f} outside [{low}, {high}]")
        if std < rules.min_std_p_churn:
            failed.append(f"min_std_p_churn: {std:.5f} < {rules.min_std_p_churn}")
    return failed


def fallback_reasons(
    p: np.ndarray | None,
    config: PolicyConfig,
    *,
    champion_age_days: int | None,
    scoring_problem: str | None = None,
) -> list[str]:
    """Why the run must use the fallback policy (empty: use the model).

    ``p`` is None or ``champion_age_days`` is None when there is no champion;
    ``scoring_problem`` is what the scoring task reported, if anything.
    """
    if p is None or champion_age_days is None:
        return ["no_champion"]
    reasons: list[str] = []
    if champion_age_days > config.fallback.max_champion_age_days:
        reasons.append(
            f"champion_age: {champion_age_days} days > "
            f"{config.fallback.max_champion_age_days}"
        )
    if scoring_problem:
        reasons.append(f"scoring: {scoring_problem}")
    reasons.extend(f"sanity {r}" for r in score_sanity(p, config))
    return reasons


def summarize(decisions: pd.DataFrame, config: PolicyConfig) -> dict[str, object]:
    """One flat row for marts.policy_daily.

    Keys: run_date, policy_version, model_version, policy_mode, rows;
    ``arm_<arm>`` counts; ``<arm>_<action>`` counts for treated, holdout and review;
    budget and budget_used (expected cost of the treated); ``capacity_<channel>`` and
    ``used_<channel>``; expected_value (sum of chosen_ev over the treated) and the
    same for the holdout and review arms (``holdout_expected_value``,
    ``review_expected_value``). Fallback decisions have no EV (NaN), summed as 0.
    """

    def first(column: str) -> object:
        if decisions.empty or column not in decisions.columns:
            return None
        value = decisions[column].iloc[0]
        return None if pd.isna(value) else value

    arm = decisions["arm"].to_numpy(dtype=object)
    action = decisions["action"].to_numpy(dtype=object)
    chosen = decisions["chosen_ev"].to_numpy(dtype=np.float64)
    summary: dict[str, object] = {
        "run_date": first("run_date"),
        "policy_version": first("policy_version") or config.policy_version,
        "model_version": first("model_version"),
        "policy_mode": first("policy_mode"),
        "rows": len(decisions),
    }
    for name in ARMS:
        summary[f"arm_{name}"] = int((arm == name).sum())
    for name in ARMS[:3]:
        for act in ACTIONS:
            summary[f"{name}_{act}"] = int(((arm == name) & (action == act)).sum())
    treated = arm == "treated"
    costs = config.costs()
    used = {a: int((treated & (action == a)).sum()) for a in ACTIONS if a in costs}
    summary["budget"] = float(config.daily_budget)
    summary["budget_used"] = float(sum(costs[a] * used[a] for a in used))
    for channel in CHANNELS:
        carried = [a.name for a in config.actions if a.channel == channel]
        summary[f"capacity_{channel}"] = int(config.capacity.get(channel, 0))
        summary[f"used_{channel}"] = int(sum(used.get(a, 0) for a in carried))
    summary["expected_value"] = float(np.nansum(chosen[treated]))
    summary["holdout_expected_value"] = float(np.nansum(chosen[arm == "holdout"]))
    summary["review_expected_value"] = float(np.nansum(chosen[arm == "review"]))
    return summary
