"""The world's side of the action interface: channel systems and human reviewers.

The pipeline exports, for day ``d``, one queue per channel
(``exports/dt=d/<channel>.csv`` with ``ml.contract.schema.EXPORT_COLUMNS``) and a review
queue (``review.csv``). When the world simulates ``d + 1`` it reads them: every
exported decision gets an ``action_results`` row and, if the contact reached a
customer, changes that customer's churn risk according to their response type;
every queued review gets a ``review_decisions`` row from a simulated reviewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ml.action.exports import REVIEW_FILE, export_dir
from ml.contract.schema import ACTIONS, CHANNELS
from ml.sim.behaviour import draw_lags, start_disengaging
from ml.sim.population import (
    NO_DAY,
    PERSUADABLE,
    RESPONSE_TYPES,
    SLEEPING_DOG,
    Population,
)
from ml.sim.sim_config import SimConfig
from ml.sim.sim_tables import (
    contract_table,
    dates,
    labels,
    parse_customer_ids,
    timestamps,
)

# Each channel carries one action, in the same order as ml.contract.schema.ACTIONS.
CHANNEL_ACTION = dict(zip(CHANNELS, ACTIONS, strict=True))
CALL, VOUCHER, EMAIL = (ACTIONS.index(a) for a in ("call", "voucher", "email"))
REQUIRED_EXPORT_COLUMNS = ("decision_id", "customer_id")
REQUIRED_REVIEW_COLUMNS = ("decision_id", "customer_id", "action")
# Contacts rarely reach someone who has already left.
CHURNED_ANSWER_FACTOR = 0.3
CHURNED_BOUNCE_RATE = 0.35
# Who redeems a voucher, relative to the base rate, by response type.
REDEEM_FACTOR = np.array([1.8, 1.4, 0.2, 0.6])
SLEEPING_DOG_HAZARD_FACTOR = 2.0
TREATMENT_MULT_RANGE = (0.05, 5.0)


class ExportFormatError(ValueError):
    """An export file lacks a column the world needs to act on it."""


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """A queue file as strings; an empty file is an empty queue."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in required})
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ExportFormatError(f"{path} lacks the column(s) {', '.join(missing)}")
    frame = frame[frame["decision_id"].str.len() > 0]
    return frame.drop_duplicates("decision_id", keep="first")


@dataclass(frozen=True)
class Decisions:
    """Exported decisions (from channel queues or the review queue)."""

    decision_id: np.ndarray  # str
    customer_id: np.ndarray  # str, as exported
    customer: np.ndarray  # int64 index, -1 when unknown
    action: np.ndarray  # int64 index into ACTIONS, -1 when unknown
    channel: np.ndarray  # int64 index into CHANNELS
    value_at_risk: np.ndarray  # float64, NaN when not given

    @property
    def size(self) -> int:
        return int(self.decision_id.shape[0])


def _action_codes(values: pd.Series, default: int) -> np.ndarray:
    codes = {a: i for i, a in enumerate(ACTIONS)}
    return values.map(codes).fillna(default).astype(np.int64).to_numpy()


def read_channel_exports(exports_dir: Path, day: date, size: int) -> Decisions:
    """All decisions exported for ``day``, over every channel (none if no folder)."""
    frames = []
    folder = export_dir(exports_dir, day)
    for k, channel in enumerate(CHANNELS):
        path = folder / f"{channel}.csv"
        if not path.is_file():
            continue
        frame = _read_csv(path, REQUIRED_EXPORT_COLUMNS)
        action = frame["action"] if "action" in frame else pd.Series("", frame.index)
        frames.append(
            pd.DataFrame(
                {
                    "decision_id": frame["decision_id"].to_numpy(),
                    "customer_id": frame["customer_id"].to_numpy(),
                    "action": _action_codes(
                        action, ACTIONS.index(CHANNEL_ACTION[channel])
                    ),
                    "channel": k,
                }
            )
        )
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not merged.empty:
        merged = merged.drop_duplicates("decision_id", keep="first")
    return _decisions(merged, size)


def read_review_queue(exports_dir: Path, day: date, size: int) -> Decisions:
    """The review queue exported for ``day`` (empty if there is none)."""
    path = export_dir(exports_dir, day) / REVIEW_FILE
    if not path.is_file():
        return _decisions(pd.DataFrame(), size)
    frame = _read_csv(path, REQUIRED_REVIEW_COLUMNS)
    value = (
        pd.to_numeric(frame["value_at_risk"], errors="coerce")
        if "value_at_risk" in frame
        else pd.Series(np.nan, index=frame.index)
    )
    action = _action_codes(frame["action"], -1)
    merged = pd.DataFrame(
        {
            "decision_id": frame["decision_id"].to_numpy(),
            "customer_id": frame["customer_id"].to_numpy(),
            "action": action,
            "channel": np.where(action >= 0, action, 0),
            "value_at_risk": value.to_numpy(dtype=np.float64),
        }
    )
    return _decisions(merged, size)


def _decisions(frame: pd.DataFrame, size: int) -> Decisions:
    if frame.empty:
        empty = np.array([], dtype=object)
        none = np.array([], dtype=np.int64)
        return Decisions(empty, empty, none, none, none, np.array([]))
    customer_id = frame["customer_id"].to_numpy(dtype=object)
    value = (
        frame["value_at_risk"].to_numpy(dtype=np.float64)
        if "value_at_risk" in frame
        else np.full(len(frame), np.nan)
    )
    return Decisions(
        decision_id=frame["decision_id"].to_numpy(dtype=object),
        customer_id=customer_id,
        customer=parse_customer_ids(customer_id, size),
        action=frame["action"].to_numpy(dtype=np.int64),
        channel=frame["channel"].to_numpy(dtype=np.int64),
        value_at_risk=value,
    )


@dataclass(frozen=True)
class Delivery:
    """What the channel systems did with one day's queues, and its ground truth."""

    results: pa.Table  # contract table action_results
    treatments: pa.Table  # truth: effect of every exported decision
    redeemed_customers: np.ndarray  # vouchers redeemed: a purchase today
    redeemed_seconds: np.ndarray
    reached: int


def deliver(
    rng: np.random.Generator,
    pop: Population,
    decisions: Decisions,
    t: int,
    config: SimConfig,
) -> Delivery:
    """Contact the customers of yesterday's queues and let the treatments work."""
    acfg = config.actions
    n = decisions.size
    cust = decisions.customer
    known = cust >= 0
    safe = np.where(known, cust, 0)
    alive = known & pop.alive[safe]
    action = decisions.action
    response = np.where(known, pop.response[safe, np.clip(action, 0, None)], -1)
    uplift = np.where(known, pop.uplift[safe, np.clip(action, 0, None)], 0.0)

    u_status = rng.random(n)
    u_effect = rng.random(n)
    lags = draw_lags(rng, n, config)
    hour = rng.random(n)

    answer = np.where(
        alive, acfg.call_answer_rate, acfg.call_answer_rate * CHURNED_ANSWER_FACTOR
    )
    bounce = np.where(alive, acfg.email_bounce_rate, CHURNED_BOUNCE_RATE)
    redeem = np.clip(
        acfg.voucher_redeem_rate * REDEEM_FACTOR[np.clip(response, 0, None)], 0, 0.95
    )
    status = np.select(
        [
            (action == CALL) & known & (u_status < answer),
            action == CALL,
            ~known,
            (action == EMAIL) & (u_status < bounce),
            action == EMAIL,
            alive & (u_status < redeem),
        ],
        ["answered", "no_answer", "bounced", "bounced", "delivered", "redeemed"],
        default="delivered",
    )
    reached = alive & np.isin(status, ("answered", "delivered", "redeemed"))
    seconds = np.select(
        [action == CALL, action == EMAIL, status == "redeemed"],
        [
            9 * 3600 + hour * 9 * 3600,
            6 * 3600 + hour * 2 * 3600,
            11 * 3600 + hour * 10 * 3600,
        ],
        default=7 * 3600 + hour * 2 * 3600,
    )

    effect = np.full(n, "none", dtype=object)
    mult = np.ones(n)
    persuaded = reached & (response == PERSUADABLE)
    backfired = reached & (response == SLEEPING_DOG)
    mult = np.where(persuaded, 1.0 - uplift, mult)
    mult = np.where(backfired, 1.0 - SLEEPING_DOG_HAZARD_FACTOR * uplift, mult)
    effect[persuaded] = "hazard_reduced"
    effect[backfired] = "hazard_raised"
    # Contacts of one customer through several channels work one after the other,
    # in the fixed order of the actions.
    for k in range(len(ACTIONS)):
        rows = np.flatnonzero((action == k) & (persuaded | backfired))
        for row_set in _unique_customer_batches(cust[rows]):
            batch = rows[row_set]
            who = cust[batch]
            disengaging = pop.onset_day[who] != NO_DAY
            rescue = persuaded[batch] & disengaging & (u_effect[batch] < uplift[batch])
            pop.onset_day[who[rescue]] = NO_DAY
            pop.churn_due[who[rescue]] = NO_DAY
            effect[batch[rescue]] = "rescued"
            trigger = (
                backfired[batch] & ~disengaging & (u_effect[batch] < -uplift[batch])
            )
            start_disengaging(pop, who[trigger], t, lags[batch[trigger]])
            effect[batch[trigger]] = "triggered_churn"
            active = t < pop.treat_until[who]
            combined = np.where(active, pop.treat_mult[who] * mult[batch], mult[batch])
            pop.treat_mult[who] = np.clip(combined, *TREATMENT_MULT_RANGE)
            pop.treat_until[who] = t + acfg.effect_days

    redeemed = alive & (status == "redeemed")
    results = contract_table(
        "action_results",
        {
            "decision_id": pa.array(decisions.decision_id, pa.string()),
            "customer_id": pa.array(decisions.customer_id, pa.string()),
            "action": labels(np.clip(action, 0, None), ACTIONS),
            "channel": labels(decisions.channel, CHANNELS),
            "result_at": timestamps(t, seconds),
            "status": pa.array(status, pa.string()),
        },
    )
    treatments = pa.table(
        {
            "day": dates(np.full(n, t)),
            "decision_id": pa.array(decisions.decision_id, pa.string()),
            "customer_id": pa.array(decisions.customer_id, pa.string()),
            "action": labels(np.clip(action, 0, None), ACTIONS),
            "channel": labels(decisions.channel, CHANNELS),
            "status": pa.array(status, pa.string()),
            "is_known_customer": pa.array(known),
            "was_active": pa.array(alive),
            "reached": pa.array(reached),
            "response_type": pc.if_else(
                pa.array(known),
                labels(np.clip(response, 0, None), RESPONSE_TYPES),
                pa.scalar(None, pa.string()),
            ),
            "true_uplift": pa.array(uplift),
            "effect": pa.array(effect, pa.string()),
            "hazard_multiplier": pa.array(mult),
            "effect_until": dates(np.full(n, t + acfg.effect_days)),
        }
    )
    return Delivery(
        results=results,
        treatments=treatments,
        redeemed_customers=cust[redeemed],
        redeemed_seconds=seconds[redeemed],
        reached=int(reached.sum()),
    )


def _unique_customer_batches(customers: np.ndarray) -> list[np.ndarray]:
    """Split positions into batches in which every customer appears at most once.

    Fancy-index updates keep only the last write per index, so repeated contacts
    of one customer are applied batch after batch instead.
    """
    if customers.size == 0:
        return []
    order = np.argsort(customers, kind="stable")
    sorted_customers = customers[order]
    first = np.r_[True, sorted_customers[1:] != sorted_customers[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(order.size), 0))
    occurrence = np.empty(order.size, dtype=np.int64)
    occurrence[order] = np.arange(order.size) - group_start
    return [np.flatnonzero(occurrence == k) for k in range(int(occurrence.max()) + 1)]


def _blank_as_null(values: np.ndarray) -> pa.Array:
    strings = pa.array(values, pa.string())
    return pc.if_else(pa.array(values == ""), pa.scalar(None, pa.string()), strings)


def review(
    rng: np.random.Generator,
    pop: Population,
    queue: Decisions,
    t: int,
    config: SimConfig,
) -> pa.Table:
    """Simulated reviewers decide on yesterday's review queue.

    They approve most cases but know things the model does not: a complaint in the
    last days (no call now; an e-mail is too impersonal), a customer who asked not to
    be contacted (a sleeping dog for that action), an account being closed (already
    churned). Low value at risk sometimes moves a call to a cheaper e-mail.
    """
    rcfg = config.review
    n = queue.size
    cust = queue.customer
    known = cust >= 0
    safe = np.where(known, cust, 0)
    action = queue.action
    churned = known & ~pop.alive[safe]
    complaint = (
        known
        & (pop.last_complaint[safe] != NO_DAY)
        & (pop.last_complaint[safe] >= t - rcfg.complaint_lookback_days)
    )
    response = np.where(
        known & (action >= 0), pop.response[safe, np.clip(action, 0, None)], -1
    )
    value = queue.value_at_risk
    low_value = np.zeros(n, dtype=bool)
    if np.isfinite(value).any():
        low_value = value < np.nanpercentile(value, 25)
    u = rng.random(n)
    reviewer = rng.integers(0, len(rcfg.reviewers), n)
    seconds = rng.uniform(9 * 3600, 17.5 * 3600, n)

    conditions = [
        ~known,
        churned & (u < rcfg.reject_closed_account_rate),
        complaint & (action == CALL),
        complaint & (action == EMAIL),
        (response == SLEEPING_DOG) & (u < rcfg.reject_do_not_contact_rate),
        low_value & (action == CALL) & (u < rcfg.cheaper_channel_rate),
        u > 1 - rcfg.random_reject_rate,
    ]
    outcomes = [
        ("reject", None, "unknown_customer", "customer not found in the CRM"),
        ("reject", None, "account_closing", "customer is closing the account"),
        (
            "change",
            "voucher",
            "open_complaint",
            "open complaint: a voucher, not a call",
        ),
        ("change", "call", "open_complaint", "open complaint needs a personal call"),
        ("reject", None, "do_not_contact", "customer asked not to be contacted"),
        ("change", "email", "cheaper_channel", "value too low for a call"),
        ("reject", None, "not_convinced", "evidence too thin to act on"),
    ]
    decision = np.select(conditions, [o[0] for o in outcomes], default="approve")
    new_action = np.select(conditions, [o[1] or "" for o in outcomes], default="")
    reason = np.select(conditions, [o[2] for o in outcomes], default="agree_with_model")
    note = np.select(conditions, [o[3] for o in outcomes], default="")
    return contract_table(
        "review_decisions",
        {
            "decision_id": pa.array(queue.decision_id, pa.string()),
            "customer_id": pa.array(queue.customer_id, pa.string()),
            "reviewer": labels(reviewer, rcfg.reviewers),
            "decided_at": timestamps(t, seconds),
            "decision": pa.array(decision, pa.string()),
            "new_action": _blank_as_null(new_action),
            "reason_code": pa.array(reason, pa.string()),
            "note": _blank_as_null(note),
        },
    )
