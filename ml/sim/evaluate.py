"""Evaluation against the simulator's ground truth (demo and report only).

The pipeline never reads ``truth/``; this module does, to answer what the policy's
decisions were really worth. For a decision date it rebuilds the candidate frame the
policy saw (:func:`ml.decision.decide_step.load_candidates`, read-only) and values, with
the true per-customer uplift of the simulated world, four plans under the same
:class:`~ml.config.policy.PolicyConfig` (same capacities, budget, contact rules):

* ``loopline``: the policy's own allocation as planned, i.e. the rows of
  ``marts.decisions`` with arm ``treated`` *or* ``holdout``, each with its action.
  The holdout is valued as if it had been treated: it is part of the allocation
  (drawn inside the walk, consuming nothing) and left untreated only to measure
  uplift. Because holdout rows consume no budget or capacity, this plan may cost up
  to about ``budget / (1 - holdout.fraction)``;
* ``loopline_executed``: only the arm ``treated`` (what was actually sent; the
  price of measuring is the difference to ``loopline``);
* ``probability_ranked``: :func:`ml.sim.baselines.probability_ranked`;
* ``no_action``: :func:`ml.sim.baselines.no_action` (0 by definition);
* ``oracle``: :func:`ml.sim.baselines.oracle` with the true uplift of each
  customer: a clairvoyant ceiling. It knows who is persuadable and who is a sleeping
  dog, which the simulator draws from hidden traits no feature carries, so no
  policy acting on the warehouse can reach it;
* ``oracle_average``: the same allocation with each action's true *average*
  uplift over the day's candidates (reach-weighted): what the EV policy would do
  if it knew the world's effects exactly but, like any policy on this data, not
  who responds. The targets compare the policy with this oracle.

**Each counterfactual plan keeps its own contact history.** The contact rules
(``cooldown_days``, ``max_contacts_90d``) count a customer's contacts. The
candidate frame carries the *policy's* history, which is right for the policy's own
plans but not for a baseline: a customer the policy leaves alone would stay
contactable for a baseline every night, so the baseline could pick (and be credited
for) the same likeliest churner night after night. Over a range
(:func:`evaluate_range`), each of ``probability_ranked``, ``oracle`` and
``oracle_average`` therefore sees the contact columns recomputed from its own
treated rows of the earlier evaluated nights (seeded with the policy's treated and
held-out decisions of the 90 days before the range, when every plan shares one history).
:func:`evaluate_day` on its own has no earlier nights and uses the policy's history.

**True uplift.** The simulator's ``uplift_<action>`` is the relative reduction of a
customer's churn risk *when the contact reaches them* (negative for sleeping dogs,
see :func:`ml.sim.population.draw_response_types`). A contact reaches a customer with
the channel's reach (:func:`ml.sim.actions.deliver`): a call is answered with
``call_answer_rate``, an e-mail arrives unless it bounces (``1 -
email_bounce_rate``), a voucher always reaches an active customer. So the expected
relative risk reduction of *sending* action ``a`` to customer ``i`` is
``reach_a * uplift_{i,a}``, the quantity used here to value plans. It is a
first-order reading: a sleeping dog's harm is not proportional to their churn risk
(a reached sleeping dog who is not yet leaving starts to, with probability ``|u|``),
and a redeemed voucher is a purchase of its own. The uplift targets therefore do
not use it: :func:`true_uplift_by_action` measures each action's effect in the
label's units from paired copies of every contacted customer
(:mod:`ml.sim.counterfactual`). The value of a plan is, over its treated rows,
``p_churn * value_at_risk * reach * uplift - cost``
(:func:`ml.sim.baselines.true_value`), with ``p_churn`` the model's score the
policy saw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ml.config.policy import PolicyConfig, load_policy_config
from ml.config.settings import Settings
from ml.contract.schema import ACTIONS
from ml.contract.tables import DECISION_OUTCOMES_TABLE, DECISIONS_TABLE
from ml.decision.decide_step import CONTACT_WINDOW_DAYS, load_candidates
from ml.decision.engine import CONTACT_COLUMNS
from ml.sim import baselines, counterfactual
from ml.sim.sim_config import ActionConfig as SimActionConfig
from ml.storage.warehouse import connect, hold, table_exists

POLICIES = (
    "loopline",
    "loopline_executed",
    "probability_ranked",
    "no_action",
    "oracle",
    "oracle_average",
)
PLANNED_ARMS = ("treated", "holdout")
# The plans that are not the policy's own: each keeps its own contact history.
COUNTERFACTUALS = ("probability_ranked", "oracle", "oracle_average")
METRICS = ("value", "cost", "treated")


def truth_customers_file(settings: Settings) -> Path:
    """The simulator's per-customer truth (response types, uplifts)."""
    return settings.truth_dir / "customers.parquet"


def world_file(settings: Settings) -> Path:
    """The persisted world's bookkeeping, with the simulator config it ran with."""
    return settings.truth_dir / "state" / "world.json"


def truth_available(settings: Settings) -> bool:
    """Whether a simulated world's truth exists (so a report can compare with it)."""
    return truth_customers_file(settings).is_file() and world_file(settings).is_file()


def channel_reach(settings: Settings) -> dict[str, float]:
    """Probability that a contact of each action reaches an active customer, from
    the world's stored config (a value missing there takes the simulator default)."""
    path = world_file(settings)
    if not path.is_file():
        raise FileNotFoundError(f"no simulated world config at {path}")
    meta = json.loads(path.read_text())
    stored = (meta.get("config") or {}).get("actions") or {}
    defaults = SimActionConfig()
    answer = float(stored.get("call_answer_rate", defaults.call_answer_rate))
    bounce = float(stored.get("email_bounce_rate", defaults.email_bounce_rate))
    reach = {"call": answer, "voucher": 1.0, "email": 1.0 - bounce}
    return {a: reach.get(a, 1.0) for a in ACTIONS}


@dataclass(frozen=True)
class _Truth:
    """Reach-weighted true uplift per customer (rows) and action (columns)."""

    index: pd.Index
    effect: np.ndarray

    def arrays(self, customer_ids: Sequence[str] | np.ndarray) -> dict[str, np.ndarray]:
        ids = np.asarray(customer_ids, dtype=object)
        rows = (
            self.index.get_indexer(pd.Index(ids)) if len(ids) else np.zeros(0, np.int64)
        )
        known = rows >= 0
        out: dict[str, np.ndarray] = {}
        for a, name in enumerate(ACTIONS):
            values = np.zeros(len(ids), dtype=np.float64)
            values[known] = self.effect[rows[known], a]
            out[name] = values
        return out


def _load_truth(settings: Settings) -> _Truth:
    """Read the truth customers file once (only the id and uplift columns)."""
    path = truth_customers_file(settings)
    if not path.is_file():
        raise FileNotFoundError(f"no simulator truth at {path}")
    columns = ["customer_id", *(f"uplift_{a}" for a in ACTIONS)]
    table = pq.read_table(path, columns=columns)
    reach = channel_reach(settings)
    effect = np.column_stack(
        [
            np.nan_to_num(
                table.column(f"uplift_{a}")
                .to_numpy(zero_copy_only=False)
                .astype(np.float64),
                nan=0.0,
            )
            * reach[a]
            for a in ACTIONS
        ]
    )
    ids = pd.Index(table.column("customer_id").to_pylist(), dtype=object)
    return _Truth(ids, effect)


def true_uplift_arrays(
    settings: Settings, customer_ids: Sequence[str] | np.ndarray
) -> dict[str, np.ndarray]:
    """Per action, ``reach_a * uplift_{i,a}`` aligned with ``customer_ids``.

    The expected relative reduction of churn risk from sending the action (see the
    module docstring); a customer unknown to the simulator gets 0. This is the
    ``true_uplift`` argument of :func:`ml.sim.baselines.oracle` and
    :func:`ml.sim.baselines.true_value`.
    """
    return _load_truth(settings).arrays(customer_ids)


@dataclass
class ContactLog:
    """The treated contacts of one plan by decision date, for the contact rules.

    :meth:`columns` gives, for a night, the two columns the policy's candidate
    frame carries (:func:`ml.decision.decide_step.load_candidates`): days since the
    customer's
    last contact in the 90-day window before the night (NaN: none) and the number
    of contacts in it.
    """

    treated: dict[date, np.ndarray]

    @classmethod
    def empty(cls) -> ContactLog:
        return cls({})

    def record(self, run_date: date, customer_ids: np.ndarray) -> None:
        """The customers the plan treated on ``run_date`` (replaces that night)."""
        self.treated[run_date] = np.asarray(customer_ids, dtype=object)

    def columns(
        self, run_date: date, customer_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``days_since_last_contact_decision`` and ``contacts_90d_decisions`` of
        each of ``customer_ids`` on ``run_date``, from this log alone."""
        first = run_date - timedelta(days=CONTACT_WINDOW_DAYS)
        nights = [d for d in self.treated if first <= d < run_date]
        days_since = np.full(len(customer_ids), np.nan)
        contacts = np.zeros(len(customer_ids))
        if not nights:
            return days_since, contacts
        ids = np.concatenate([self.treated[d] for d in nights])
        ages = np.concatenate(
            [np.full(len(self.treated[d]), (run_date - d).days) for d in nights]
        )
        # one integer code per customer id over both arrays, then per-code minimum
        # age and count (a pandas groupby over the ids took a fifth of the report)
        codes, uniques = pd.factorize(
            np.concatenate([ids, np.asarray(customer_ids, dtype=object)])
        )
        contacted, asked = codes[: len(ids)], codes[len(ids) :]
        youngest = np.full(len(uniques), np.inf)
        np.minimum.at(youngest, contacted, ages.astype(np.float64))
        counts = np.bincount(contacted, minlength=len(uniques)).astype(np.float64)
        found = counts[asked] > 0
        days_since[found] = youngest[asked][found]
        contacts[:] = counts[asked]
        return days_since, contacts


def _with_history(
    candidates: pd.DataFrame, log: ContactLog | None, run_date: date
) -> pd.DataFrame:
    """``candidates`` with the contact columns of ``log`` (unchanged without one)."""
    if log is None:
        return candidates
    ids = candidates["customer_id"].astype(str).to_numpy(dtype=object)
    days_since, contacts = log.columns(run_date, ids)
    return candidates.assign(
        **dict(zip(CONTACT_COLUMNS, (days_since, contacts), strict=True))
    )


def _policy_history(settings: Settings, start: date) -> ContactLog:
    """The policy's contacts (treated and held-out decisions, as
    :func:`ml.decision.decide_step.load_candidates` counts them) of the window before
    ``start``."""
    log = ContactLog.empty()
    with connect(settings.warehouse_path, read_only=True) as con:
        if not table_exists(con, "marts", "decisions"):
            return log
        rows = con.execute(
            f"select run_date, customer_id from {DECISIONS_TABLE} "
            "where arm in ('treated', 'holdout') and run_date >= ? and run_date < ?",
            [start - timedelta(days=CONTACT_WINDOW_DAYS), start],
        ).df()
    days = pd.to_datetime(rows["run_date"]).dt.date
    for day in sorted(set(days)):
        log.record(day, rows.loc[days == day, "customer_id"].astype(str).to_numpy())
    return log


@dataclass(frozen=True)
class _Decisions:
    """The allocated rows of a decision date and what it was decided with."""

    rows: int
    policy_mode: str | None
    model_version: str | None
    allocated: pd.DataFrame  # customer_id, arm, action (arm treated or holdout)


def _decisions(settings: Settings, run_date: date) -> _Decisions:
    """Only the treated and held-out rows are fetched (a few percent of the day)."""
    with connect(settings.warehouse_path, read_only=True) as con:
        if not table_exists(con, "marts", "decisions"):
            return _Decisions(0, None, None, pd.DataFrame())
        head = con.execute(
            f"select count(*), min(policy_mode), min(model_version) "
            f"from {DECISIONS_TABLE} where run_date = ?",
            [run_date],
        ).fetchone()
        allocated = con.execute(
            f"select customer_id, arm, action from {DECISIONS_TABLE} "
            "where run_date = ? and arm in ('treated', 'holdout')",
            [run_date],
        ).df()
    rows, mode, version = head if head is not None else (0, None, None)
    return _Decisions(
        int(rows),
        None if mode is None else str(mode),
        None if version is None else str(version),
        allocated,
    )


def _decision_plan(
    ids: np.ndarray,
    arm: np.ndarray,
    action: np.ndarray,
    arms: Sequence[str],
    costs: dict[str, float],
) -> pd.DataFrame:
    """The decisions as a baseline-style plan: ``arm`` and ``action`` are the
    decision of each candidate (``ids``; None without a decision); a row with an arm
    in ``arms`` and a known action becomes arm ``treated`` with that action."""
    treated = np.isin(arm, list(arms)) & np.isin(action, list(ACTIONS))
    chosen = action.copy()
    chosen[~treated] = None
    cost = np.zeros(len(ids), dtype=np.float64)
    for name, price in costs.items():
        cost[treated & (action == name)] = price
    # object columns as they are (see ml.sim.baselines._plan)
    return pd.DataFrame(
        {
            "customer_id": pd.Series(ids, dtype=object),
            "arm": pd.Series(np.where(treated, "treated", "none"), dtype=object),
            "action": pd.Series(chosen, dtype=object),
            "cost": cost,
        }
    )


def _aligned(ids: np.ndarray, decisions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Arm and action of each id's decision (None where it has none)."""
    rows = decisions.drop_duplicates("customer_id")
    where = pd.Index(rows["customer_id"].astype(str).to_numpy(dtype=object))
    position = where.get_indexer(pd.Index(ids))
    found = position >= 0
    arm = np.full(len(ids), None, dtype=object)
    action = np.full(len(ids), None, dtype=object)
    arm[found] = rows["arm"].to_numpy(dtype=object)[position[found]]
    action[found] = rows["action"].to_numpy(dtype=object)[position[found]]
    return arm, action


def _evaluate(
    settings: Settings,
    run_date: date,
    policy: PolicyConfig,
    truth: _Truth,
    histories: dict[str, ContactLog] | None = None,
) -> dict[str, Any] | None:
    """One night's row (see :func:`evaluate_day`); with ``histories`` each
    counterfactual plan decides on its own contact history and its treated rows
    are added to it."""
    histories = histories or {}
    candidates = load_candidates(settings, run_date, policy)
    if candidates.empty:
        return None
    p_raw = pd.to_numeric(candidates["p_churn"], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    if not np.isfinite(p_raw).any():
        return None  # a fallback day without scores: nothing to value with
    decisions = _decisions(settings, run_date)
    if decisions.rows == 0:
        return None
    p = np.nan_to_num(p_raw, nan=0.0)
    candidates = candidates.reset_index(drop=True)
    ids = candidates["customer_id"].astype(str).to_numpy(dtype=object)
    uplift = truth.arrays(ids)
    costs = policy.costs()
    arm, action = _aligned(ids, decisions.allocated)

    def own(name: str) -> pd.DataFrame:
        return _with_history(candidates, histories.get(name), run_date)

    plans = {
        "loopline": _decision_plan(ids, arm, action, PLANNED_ARMS, costs),
        "loopline_executed": _decision_plan(ids, arm, action, ["treated"], costs),
        "probability_ranked": baselines.probability_ranked(
            own("probability_ranked"), policy
        ),
        "no_action": baselines.no_action(candidates, policy),
        "oracle": baselines.oracle(own("oracle"), policy, uplift, true_p=p),
        "oracle_average": baselines.oracle(
            own("oracle_average"),
            policy,
            {a: np.full(len(ids), float(u.mean())) for a, u in uplift.items()},
            true_p=p,
        ),
    }
    for name, log in histories.items():
        treated_rows = (plans[name]["arm"] == "treated").to_numpy(dtype=bool)
        log.record(run_date, ids[treated_rows])
    row: dict[str, Any] = {
        "run_date": run_date,
        "policy_mode": decisions.policy_mode,
        "model_version": decisions.model_version,
        "customers": len(candidates),
    }
    for name, plan in plans.items():
        treated = (plan["arm"] == "treated").to_numpy(dtype=bool)
        row[f"value_{name}"] = baselines.true_value(
            plan, candidates, policy, uplift, true_p=p
        )
        row[f"cost_{name}"] = float(
            plan["cost"].to_numpy(dtype=np.float64)[treated].sum()
        )
        row[f"treated_{name}"] = int(treated.sum())
    return row


def evaluate_day(
    settings: Settings, run_date: date, policy: PolicyConfig | None = None
) -> dict[str, Any] | None:
    """True incremental value of the policy's plan and the baselines on one day.

    Returns ``run_date``, ``policy_mode``, ``model_version``, ``customers`` and, for
    each plan in :data:`POLICIES`, ``value_<plan>`` (true incremental value net of
    cost), ``cost_<plan>`` (expected cost) and ``treated_<plan>`` (customers
    treated). ``loopline`` values the holdout as planned (see the module
    docstring). ``None`` when the day cannot be valued: no feature snapshot, no
    score at all (a fallback day without a model) or no decisions.
    Reads the warehouse and the truth read-only.
    """
    policy = policy or load_policy_config()
    return _evaluate(settings, run_date, policy, _load_truth(settings))


def evaluation_columns() -> list[str]:
    """Columns of :func:`evaluate_range`, in order."""
    metrics = [f"{m}_{p}" for p in POLICIES for m in METRICS]
    return ["run_date", "policy_mode", "model_version", "customers", *metrics]


def evaluate_range(
    settings: Settings,
    start: date,
    end: date,
    policy: PolicyConfig | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """:func:`evaluate_day` for every date in ``[start, end]``, one row per day
    that could be valued (columns :func:`evaluation_columns`). The truth is read
    once per call. Each counterfactual plan (:data:`COUNTERFACTUALS`) follows the
    contact rules on its own treated rows of the earlier nights, seeded with the
    policy's history before ``start`` (see the module docstring)."""
    policy = policy or load_policy_config()
    truth = _load_truth(settings)
    seed = _policy_history(settings, start)
    histories = {name: ContactLog(dict(seed.treated)) for name in COUNTERFACTUALS}
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    rows: list[dict[str, Any]] = []
    if progress:
        from rich.progress import track

        iterator: Any = track(days, description="evaluating")
    else:
        iterator = days
    # one read-only instance of the warehouse for every night's reads (opening one
    # costs 20-40 ms, and each night opened it twice)
    with hold(settings.warehouse_path, read_only=True):
        for day in iterator:
            row = _evaluate(settings, day, policy, truth, histories)
            if row is not None:
                rows.append(row)
    return pd.DataFrame(rows, columns=evaluation_columns())


def counterfactual_dir(settings: Settings) -> Path:
    """The paired counterfactuals of the exported contacts
    (:mod:`ml.sim.counterfactual`), one partition per delivery day."""
    return settings.truth_dir / counterfactual.TRUTH_NAME


def true_uplift_by_action(settings: Settings, start: date, end: date) -> pd.DataFrame:
    """The true uplift of each action in the label's units, decision dates in
    ``[start, end]``, from the paired counterfactuals (:mod:`ml.sim.counterfactual`).

    The rows are the matured treated decisions of the randomized experiment
    (``marts.decision_outcomes`` with ``is_randomized``): the holdout is a random
    draw among the same decisions, so the treated ones stand for the whole
    experiment. Each was copied when the world delivered it, once contacted and
    once left alone, and a copy churned when it made no purchase within the
    decision's horizon. ``true_uplift = 1 − churn_contacted / churn_untreated``, the
    quantity the measured ``1 − churn_treated / churn_holdout`` estimates.

    Columns: ``action``, ``n`` (decisions with a pair), ``churn_contacted``,
    ``churn_untreated`` and ``true_uplift``; actions without rows are left out, and
    the frame is empty when the world kept no pairs (a world simulated before
    they existed).
    """
    columns = ["action", "n", "churn_contacted", "churn_untreated", "true_uplift"]
    folder = counterfactual_dir(settings)
    if not any(folder.glob("dt=*/*.parquet")):
        return pd.DataFrame(columns=columns)
    pairs = str(folder / "dt=*" / "*.parquet").replace("'", "''")
    with connect(settings.warehouse_path, read_only=True) as con:
        if not table_exists(con, *DECISION_OUTCOMES_TABLE.split(".")):
            return pd.DataFrame(columns=columns)
        frame = con.execute(
            f"""
            select o.action, count(*) as n,
                avg(case when c.first_purchase_contacted is null then 1.0 else 0.0 end)
                    as churn_contacted,
                avg(case when c.first_purchase_untreated is null then 1.0 else 0.0 end)
                    as churn_untreated
            from {DECISION_OUTCOMES_TABLE} as o
            inner join read_parquet('{pairs}', hive_partitioning = false) as c
                on c.decision_id = o.decision_id
            where o.run_date between ? and ? and o.is_randomized
                and o.arm = 'treated' and o.action is not null
            group by o.action
            """,
            [start, end],
        ).df()
    order = {name: i for i, name in enumerate(ACTIONS)}
    frame = frame.sort_values("action", key=lambda a: a.map(order), ignore_index=True)
    untreated = frame["churn_untreated"].where(frame["churn_untreated"] > 0)
    frame["true_uplift"] = 1.0 - frame["churn_contacted"] / untreated
    frame["n"] = frame["n"].astype(np.int64)
    return frame[columns]


__all__ = [
    "COUNTERFACTUALS",
    "POLICIES",
    "ContactLog",
    "channel_reach",
    "counterfactual_dir",
    "evaluate_day",
    "evaluate_range",
    "evaluation_columns",
    "true_uplift_arrays",
    "true_uplift_by_action",
    "truth_available",
    "truth_customers_file",
    "world_file",
]
