"""The ``decide`` step: scores and features of a run date in, decisions and queues out.

For run date ``d`` it:

1. reads the feature snapshot of ``d`` (``marts.customer_features``) with the scores
   of ``d`` (``marts.scores``), and each customer's contact history from our own
   treated decisions of the last 90 days (``marts.decisions``: the cost grows with
   90 days of decisions, not with the length of history);
2. chooses the mode: the model policy, or the rule fallback when there is no
   champion, the champion is too old, scoring reported a problem, or the scores fail
   their sanity checks (:func:`ml.decision.engine.fallback_reasons`);
3. applies the review decisions that arrived on ``d`` (``raw.review_decisions`` of
   partition ``d``) to the cases queued earlier: an approved or changed case goes
   out today as a treated decision (``review_approved`` / ``review_changed``) and
   uses capacity and budget first; a rejected one gets no action today
   (``review_rejected``). Every application is kept in ``marts.review_applied``
   with the reviewer, time, decision, reason code and note;
4. runs the policy (:func:`ml.decision.engine.decide`) on everyone else, flagging
   customers whose features lie outside the champion's training range (``ood``);
5. gives every review case its evidence: p_churn, value at risk, the EV of each
   action, the top reasons behind the score (how far p_churn falls when a feature
   is set to its training median) and a summary of the customer's recent history;
6. replaces partition ``d`` of ``marts.decisions``, ``marts.review_queue`` and
   ``marts.policy_daily`` in one transaction, then writes the exports
   (:mod:`ml.action.exports`).

Everything is a function of the warehouse, the registry and the config files, so a
rerun of ``d`` writes identical rows and byte-identical exports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd

from ml.config.policy import PolicyConfig, load_policy_config
from ml.config.settings import Settings, load_business_config
from ml.contract.schema import ACTIONS
from ml.contract.tables import (
    DECISIONS,
    DECISIONS_TABLE,
    POLICY_DAILY,
    POLICY_DAILY_TABLE,
    REVIEW_APPLIED,
    REVIEW_APPLIED_TABLE,
    REVIEW_QUEUE,
    REVIEW_QUEUE_TABLE,
    SCORES,
    create_from_columns,
    ddl_script,
)
from ml.decision.engine import (
    DECISION_COLUMNS,
    Mode,
    decision_ids,
    fallback_reasons,
    summarize,
)
from ml.decision.engine import (
    decide as run_policy,
)
from ml.decision.parameters import current_uplifts
from ml.decision.value import value_at_risk
from ml.prediction.explain import top_reasons
from ml.storage.warehouse import (
    connect,
    ensure_schemas,
    replace_run_date,
    table_columns,
    table_exists,
)

if TYPE_CHECKING:
    from ml.prediction.registry import LoadedModel

CONTACT_WINDOW_DAYS = 90

# The tables this step owns (declared in ml.contract.tables); marts.policy_daily
# is created from its first row.
DDL = ddl_script(DECISIONS, REVIEW_QUEUE, REVIEW_APPLIED)

HISTORY_COLUMNS = (
    "recency_days",
    "tx_count_90d",
    "spend_90d",
    "tickets_90d",
    "complaint_tickets_90d",
    "contacts_90d",
)


class DecideError(RuntimeError):
    """The run date cannot be decided (for example: no feature snapshot)."""


@dataclass(frozen=True)
class DecideSummary:
    """What one ``decide`` run did, and the rows the action layer exports.

    ``decisions`` and ``review`` are the run date's rows as written to the
    warehouse; :func:`ml.action.exports.export_decided` writes them out as the
    channel queues and ``review.csv`` and sets ``exports``.
    """

    run_date: date
    policy_mode: str
    model_version: str | None
    fallback_reasons: list[str]
    daily: dict[str, Any]
    decisions: pd.DataFrame = field(repr=False)
    review: pd.DataFrame = field(repr=False)
    policy_version: str = ""
    reviews_applied: int = 0
    notes: list[str] = field(default_factory=list)
    # the action layer's ExportManifest (rows per file), once exported
    exports: Any = None

    def as_dict(self) -> dict[str, Any]:
        """Small, JSON-friendly summary for XCom and ``ops.runs``."""
        arms = {k[4:]: v for k, v in self.daily.items() if k.startswith("arm_")}
        return {
            "run_date": self.run_date.isoformat(),
            "policy_mode": self.policy_mode,
            "model_version": self.model_version,
            "fallback_reasons": self.fallback_reasons,
            "arms": arms,
            "reviews_applied": self.reviews_applied,
            "budget_used": self.daily.get("budget_used"),
            "expected_value": self.daily.get("expected_value"),
            "exports": self.exports.rows if self.exports is not None else {},
        }


def scored_version(con: duckdb.DuckDBPyConnection, run_date: date) -> str | None:
    """The model version that scored ``run_date`` (None when nothing was scored)."""
    if not table_exists(con, SCORES.schema, SCORES.table):
        return None
    row = con.execute(
        "select min(model_version) from marts.scores where run_date = ?", [run_date]
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def ood_sql(
    reference: dict[str, Any] | None,
    columns: set[str],
    features: list[str] | None = None,
) -> str:
    """A SQL predicate on ``marts.customer_features f``: some numeric feature lies
    outside the model's training range. Only ``features`` are checked when given
    (``review.ood_features`` of ``policy.yml``), every numeric feature of the
    reference otherwise; a feature missing from ``columns`` is skipped."""
    wanted = set(features) if features else None
    tests = [
        f"(f.{name} < {float(ref['low'])!r} or f.{name} > {float(ref['high'])!r})"
        for name, ref in sorted((reference or {}).get("numeric", {}).items())
        if name in columns and (wanted is None or name in wanted)
    ]
    return f"coalesce({' or '.join(tests)}, false)" if tests else "false"


def _candidates(
    con: duckdb.DuckDBPyConnection,
    run_date: date,
    policy: PolicyConfig,
    reference: dict[str, Any] | None,
) -> pd.DataFrame:
    """What the policy needs of each customer of ``run_date``: segment, the
    fallback rule's and the value estimate's columns, the score, whether a feature
    lies outside the champion's training range (``ood``, computed in DuckDB), and
    the contact history from our own treated and held-out decisions (a holdout
    counts as a contact, so both arms of the experiment stay out of the next
    nights' queues alike)."""
    available = set(table_columns(con, "marts.customer_features"))
    wanted = ["plan", "region", "recency_days", "tx_count_180d"]
    var = policy.value_at_risk
    wanted += [c for c in (var.window_column, var.blend_column) if c]
    selected = ", ".join(f"f.{c}" for c in dict.fromkeys(wanted) if c in available)
    has_scores = table_exists(con, SCORES.schema, SCORES.table)
    scores = (
        "left join marts.scores s on s.customer_id = f.customer_id and s.run_date = $d"
        if has_scores
        else ""
    )
    score_columns = (
        "s.p_churn, s.model_version"
        if has_scores
        else "cast(null as double) as p_churn, cast(null as varchar) as model_version"
    )
    query = f"""
        with contacts as (
            select customer_id,
                min(datediff('day', run_date, $d)) as days_since_last_contact_decision,
                count(*) as contacts_90d_decisions
            from {DECISIONS_TABLE}
            where arm in ('treated', 'holdout')
              and run_date >= $d - interval {CONTACT_WINDOW_DAYS} day
              and run_date < $d
            group by customer_id
        )
        select f.customer_id, {selected}, {score_columns},
            {ood_sql(reference, available, policy.review.ood_features)} as ood,
            c.days_since_last_contact_decision,
            coalesce(c.contacts_90d_decisions, 0) as contacts_90d_decisions
        from marts.customer_features f
        {scores}
        left join contacts c on c.customer_id = f.customer_id
        where f.as_of_date = $d
        order by f.customer_id
    """
    return con.execute(query, {"d": run_date}).df()


def load_candidates(
    settings: Settings, run_date: date, policy: PolicyConfig | None = None
) -> pd.DataFrame:
    """The candidate frame the policy saw on ``run_date`` (features, score, contact
    history from earlier decisions, value at risk), read-only. Used to evaluate the
    comparison policies of :mod:`ml.sim.baselines` on the same customers."""
    policy = policy or load_policy_config()
    horizon = load_business_config(settings.config_file).horizon_days
    with connect(settings.warehouse_path, read_only=True) as con:
        candidates = _candidates(con, run_date, policy, None)
    candidates["value_at_risk"] = value_at_risk(candidates, policy, horizon)
    return candidates


def _features_of(
    settings: Settings, run_date: date, customers: list[str]
) -> pd.DataFrame:
    """Every feature of a few customers on ``run_date`` (for review evidence)."""
    if not customers:
        return pd.DataFrame()
    with connect(settings.warehouse_path, read_only=True) as con:
        return con.execute(
            "select * from marts.customer_features where as_of_date = ? "
            "and customer_id in (select unnest(?)) order by customer_id",
            [run_date, customers],
        ).df()


def _scoring_problem(con: duckdb.DuckDBPyConnection, run_date: date) -> str | None:
    """What the score step of ``run_date`` reported, if it reported a problem."""
    row = con.execute(
        "select status, detail from ops.runs where run_date = ? and step = 'score'",
        [run_date],
    ).fetchone()
    if row is None:
        return "the score step has not run for this date"
    status, detail = row
    if status != "success":
        return f"the score step ended with {status}"
    reason = json.loads(detail or "{}").get("reason")
    return str(reason) if reason else None


def _review_decisions(con: duckdb.DuckDBPyConnection, run_date: date) -> pd.DataFrame:
    """Review decisions that arrived on ``run_date`` for queued cases (latest per
    case, ties broken as ``staging.stg_landing__review_decisions`` does), with the
    case they decide. Reads ``raw``: the lab warehouses built without dbt have no
    staging views."""
    if not table_exists(con, "raw", "review_decisions"):
        return pd.DataFrame()
    return con.execute(
        f"""
        select r.decision_id as review_decision_id, q.run_date as queued_on,
            q.customer_id, q.action as proposed_action, r.decision, r.new_action,
            r.reviewer, r.decided_at, r.reason_code, r.note
        from raw.review_decisions r
        join {REVIEW_QUEUE_TABLE} q on q.decision_id = r.decision_id
        where r.partition_date = $d and q.run_date < $d
        qualify row_number() over (
            partition by r.decision_id
            order by r.decided_at desc, r.source_file, r.reviewer, r.decision
        ) = 1
        order by r.decision_id
        """,
        {"d": run_date},
    ).df()


def _apply_reviews(
    reviews: pd.DataFrame,
    candidates: pd.DataFrame,
    run_date: date,
    policy: PolicyConfig,
    mode: str,
    model_version: str | None,
    uplifts: dict[str, float],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decisions of the reviewed customers and the ``review_applied`` rows.

    One review per customer counts (the latest queued case). A reviewed customer
    without a feature row today (no longer active) is recorded but not contacted.
    """
    if reviews.empty:
        return pd.DataFrame(columns=list(DECISION_COLUMNS)), pd.DataFrame()
    reviews = reviews.sort_values(["customer_id", "queued_on", "decided_at"])
    reviews = reviews.drop_duplicates("customer_id", keep="last")
    today = candidates.set_index("customer_id")
    active = today.index.get_indexer(pd.Index(reviews["customer_id"])) >= 0
    approved = reviews["decision"].isin(["approve", "change"]).to_numpy()
    applied_action = np.where(
        reviews["decision"].to_numpy() == "change",
        reviews["new_action"].to_numpy(dtype=object),
        reviews["proposed_action"].to_numpy(dtype=object),
    )
    send = approved & active & pd.Series(applied_action).isin(ACTIONS).to_numpy()
    applied_action = np.array(
        [a if ok else None for a, ok in zip(applied_action, send, strict=True)],
        dtype=object,
    )
    ids = decision_ids(reviews["customer_id"].tolist(), list(applied_action), run_date)
    rows = today.reindex(reviews["customer_id"])
    p = rows["p_churn"].to_numpy(dtype=np.float64)
    value = rows["value_at_risk"].to_numpy(dtype=np.float64)
    costs = policy.costs()
    uplift = uplifts
    ev = {
        a: p * value * uplift.get(a, 0.0) - costs.get(a, 0.0)
        if mode == "model"
        else np.full(len(rows), np.nan)
        for a in ACTIONS
    }
    chosen = np.array(
        [ev[a][i] if a is not None else 0.0 for i, a in enumerate(applied_action)],
        dtype=np.float64,
    )
    decision = reviews["decision"].to_numpy()
    reason = np.where(
        ~active,
        "review_inactive",
        np.where(
            decision == "approve",
            "review_approved",
            np.where(decision == "change", "review_changed", "review_rejected"),
        ),
    )
    decisions = pd.DataFrame(
        {
            "decision_id": ids.to_numpy(),
            "run_date": run_date,
            "customer_id": reviews["customer_id"].to_numpy(),
            "arm": np.where(send, "treated", "none"),
            "action": applied_action,
            "p_churn": p,
            "value_at_risk": value,
            **{f"ev_{a}": ev[a] for a in ACTIONS},
            "chosen_ev": np.nan_to_num(chosen),
            "reason_codes": reason,
            "policy_version": policy.policy_version,
            "model_version": model_version,
            "policy_mode": mode,
        }
    )
    decisions = decisions[active]
    sent_ids = pd.Series(ids.to_numpy(), index=reviews.index, dtype=object).where(
        send, None
    )
    applied = reviews.assign(
        run_date=run_date, applied_action=applied_action, applied_decision_id=sent_ids
    )
    return decisions.loc[:, list(DECISION_COLUMNS)], applied


def _remaining(policy: PolicyConfig, used: pd.DataFrame) -> PolicyConfig:
    """``policy`` with the capacity and budget that ``used`` (treated rows) took."""
    if used.empty:
        return policy
    treated = used[used["arm"] == "treated"]
    counts = treated["action"].value_counts()
    capacity = dict(policy.capacity)
    spent = 0.0
    for action, n in counts.items():
        channel = policy.channel_of(str(action))
        capacity[channel] = max(0, capacity[channel] - int(n))
        spent += policy.action(str(action)).cost * int(n)
    budget = max(0.0, policy.daily_budget - spent)
    return policy.model_copy(update={"capacity": capacity, "daily_budget": budget})


def _history(rows: pd.DataFrame) -> list[str]:
    """One line of recent history per customer, for reviewers."""

    def number(value: Any, fmt: str = "{:.0f}") -> str:
        return "?" if pd.isna(value) else fmt.format(value)

    return [
        f"last purchase {number(r.recency_days)} d ago; "
        f"{number(r.tx_count_90d)} orders, {number(r.spend_90d)} spent in 90 d; "
        f"{number(r.tickets_90d)} tickets ({number(r.complaint_tickets_90d)} "
        f"complaints) in 90 d; {number(r.contacts_90d)} contacts in 90 d"
        for r in rows.itertuples()
    ]


def _sql_type(key: str, value: Any) -> str:
    if key == "run_date":
        return "date"
    if isinstance(value, bool | np.bool_):
        return "boolean"
    if isinstance(value, int | np.integer):
        return "bigint"
    if isinstance(value, float | np.floating):
        return "double"
    return "varchar"


def _policy_daily(
    con: duckdb.DuckDBPyConnection, run_date: date, daily: dict[str, Any]
) -> None:
    """Replace the ``marts.policy_daily`` row of ``run_date``; a column the policy
    adds later (a new action or channel) is added to the table."""
    row = {**daily, "run_date": run_date}
    if not table_exists(con, POLICY_DAILY.schema, POLICY_DAILY.table):
        columns = ", ".join(f'"{k}" {_sql_type(k, v)}' for k, v in row.items())
        con.execute(create_from_columns(POLICY_DAILY, columns))
    known = set(table_columns(con, POLICY_DAILY_TABLE))
    for key, value in row.items():
        if key not in known:
            con.execute(
                f'alter table {POLICY_DAILY_TABLE} add column "{key}" '
                f"{_sql_type(key, value)}"
            )
    con.execute(f"delete from {POLICY_DAILY_TABLE} where run_date = ?", [run_date])
    names = ", ".join(f'"{k}"' for k in row)
    marks = ", ".join("?" for _ in row)
    values = [v.item() if isinstance(v, np.generic) else v for v in row.values()]
    con.execute(f"insert into {POLICY_DAILY_TABLE} ({names}) values ({marks})", values)


def _champion(
    settings: Settings, scored_version: str | None, run_date: date
) -> tuple[dict[str, Any] | None, int | None, list[str]]:
    """The reference of the model that scored ``run_date``, its age in days,
    notes."""
    from ml.prediction.registry import load_reference, trained_as_of

    if scored_version is None:
        return None, None, []
    notes: list[str] = []
    trained = trained_as_of(settings, scored_version)
    age = (run_date - trained).days if trained else None
    reference = load_reference(settings, scored_version)
    if reference is None:
        notes.append(f"model {scored_version} has no training reference: no ood check")
    return reference, age, notes


def _explainer(
    settings: Settings, scored_version: str | None, notes: list[str]
) -> LoadedModel | None:
    """The model that scored the run date, to explain its review cases (loaded
    only when there are cases); None, with a note, when it cannot be loaded."""
    from ml.prediction.registry import ModelLoadError, load_model

    if scored_version is None:
        return None
    try:
        return load_model(settings, alias=None, version=scored_version)
    except ModelLoadError as error:
        notes.append(f"cannot explain scores: {error}")
        return None


def decide(
    settings: Settings, run_date: date, policy: PolicyConfig | None = None
) -> DecideSummary:
    """Decide ``run_date``: write its decisions, review queue, daily summary and
    exports (see the module docstring). Raises :class:`DecideError` when the run
    date has no feature snapshot (its data were not validated and built)."""
    policy = policy or load_policy_config()
    horizon = load_business_config(settings.config_file).horizon_days
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
        con.execute(DDL)
        version_scored = scored_version(con, run_date)
    reference, age, notes = _champion(settings, version_scored, run_date)
    unknown = sorted(
        set(policy.review.ood_features) - set((reference or {}).get("numeric", {}))
    )
    if reference is not None and unknown:
        notes.append(f"review.ood_features not in the model's reference: {unknown}")
    with connect(settings.warehouse_path, read_only=True) as con:
        candidates = _candidates(con, run_date, policy, reference)
        scoring_problem = _scoring_problem(con, run_date)
        reviews = _review_decisions(con, run_date)
        uplifts = current_uplifts(settings, run_date, policy, con=con)
    if candidates.empty:
        raise DecideError(
            f"no feature snapshot for {run_date}: validate and build that date "
            "before deciding; nothing was written"
        )
    candidates["value_at_risk"] = value_at_risk(candidates, policy, horizon)
    p = (
        candidates["p_churn"].to_numpy(dtype=np.float64)
        if version_scored is not None
        else None
    )
    reasons = fallback_reasons(
        p, policy, champion_age_days=age, scoring_problem=scoring_problem
    )
    mode: Mode = "fallback" if reasons else "model"
    model_version = version_scored if mode == "model" else None

    reviewed, applied = _apply_reviews(
        reviews, candidates, run_date, policy, mode, model_version, uplifts
    )
    rest = candidates[~candidates["customer_id"].isin(reviewed["customer_id"])]
    decided = run_policy(
        rest,
        run_date,
        _remaining(policy, reviewed),
        mode,
        model_version,
        uplifts=uplifts,
    )
    decisions = pd.concat(
        [d for d in (reviewed, decided) if not d.empty], ignore_index=True
    )
    decisions = decisions.sort_values("customer_id", kind="stable").reset_index(
        drop=True
    )
    cases = decisions.loc[decisions["arm"] == "review", "customer_id"].tolist()
    model = _explainer(settings, version_scored, notes) if cases else None
    review = _review_queue(
        decisions, _features_of(settings, run_date, cases), model, reference
    )
    daily = summarize(decisions, policy)
    daily |= {
        "run_date": run_date,
        "policy_version": policy.policy_version,
        "model_version": model_version,
        "policy_mode": mode,
        "fallback_reasons": "; ".join(reasons),
        "reviews_applied": len(applied),
        **{f"uplift_{a}": float(u) for a, u in sorted(uplifts.items())},
    }
    with connect(settings.warehouse_path) as con:
        con.execute("begin transaction")
        try:
            replace_run_date(con, DECISIONS_TABLE, run_date, decisions)
            replace_run_date(con, REVIEW_QUEUE_TABLE, run_date, review)
            applied_rows = (
                applied.loc[:, table_columns(con, REVIEW_APPLIED_TABLE)]
                if not applied.empty
                else applied
            )
            replace_run_date(con, REVIEW_APPLIED_TABLE, run_date, applied_rows)
            _policy_daily(con, run_date, daily)
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
    return DecideSummary(
        run_date,
        mode,
        model_version,
        reasons,
        daily,
        decisions=decisions,
        review=review,
        policy_version=policy.policy_version,
        reviews_applied=len(applied),
        notes=notes,
    )


def _review_queue(
    decisions: pd.DataFrame,
    candidates: pd.DataFrame,
    model: LoadedModel | None,
    reference: dict[str, Any] | None,
) -> pd.DataFrame:
    """The review cases of the run with their evidence."""
    cases = decisions[decisions["arm"] == "review"]
    if cases.empty:
        features = pd.DataFrame(columns=["customer_id", *HISTORY_COLUMNS])
    else:
        features = candidates.set_index("customer_id").loc[cases["customer_id"]]
        features = features.reset_index()
    reasons = (
        top_reasons(model, features, reference)
        if model is not None
        else ["" for _ in range(len(cases))]
    )
    return pd.DataFrame(
        {
            "decision_id": cases["decision_id"].to_numpy(),
            "run_date": cases["run_date"].to_numpy(),
            "customer_id": cases["customer_id"].to_numpy(),
            "action": cases["action"].to_numpy(),
            "p_churn": cases["p_churn"].to_numpy(),
            "value_at_risk": cases["value_at_risk"].to_numpy(),
            **{f"ev_{a}": cases[f"ev_{a}"].to_numpy() for a in ACTIONS},
            "expected_value": cases["chosen_ev"].round(4).to_numpy(),
            "reason_codes": cases["reason_codes"].to_numpy(),
            "top_reasons": reasons,
            "history": _history(features) if len(cases) else [],
            "model_version": cases["model_version"].to_numpy(),
            "policy_version": cases["policy_version"].to_numpy(),
        },
        columns=[
            "decision_id",
            "run_date",
            "customer_id",
            "action",
            "p_churn",
            "value_at_risk",
            *(f"ev_{a}" for a in ACTIONS),
            "expected_value",
            "reason_codes",
            "top_reasons",
            "history",
            "model_version",
            "policy_version",
        ],
    )


__all__ = [
    "DECISIONS_TABLE",
    "POLICY_DAILY_TABLE",
    "REVIEW_APPLIED_TABLE",
    "REVIEW_QUEUE_TABLE",
    "DecideError",
    "DecideSummary",
    "decide",
    "top_reasons",
]
