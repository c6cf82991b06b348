"""The outcome join: what the decisions of a matured date actually changed.

On day ``d`` the decisions of run date ``r = d - H`` have matured: their horizon
``(r, r + H]`` is over, and ``marts.training_examples`` holds each customer's label
for ``r`` (churned, spend over the horizon). :func:`join_outcomes` replaces, for
decision date ``r``:

* ``marts.decision_outcomes``: one row per decision of ``r`` whose customer has a
  label: retained, realized spend over the horizon, the delivery status from
  ``raw.action_results`` (by decision_id), the review outcome from
  ``marts.review_applied`` and whether a person overrode the policy;
* ``marts.policy_performance``: treated against holdout per action and overall
  (:func:`ml.feedback.uplift.arm_comparison`): retention of each arm, the uplift
  with its 95 % interval, incremental value, cost, ROI, expected against realized;
* ``marts.model_performance``: realized ROC AUC, PR AUC, Brier and ECE of the scores
  of ``r``, calibration by decile (JSON) and the model version;
* ``marts.override_performance``: the outcomes of the policy's decisions that a
  person reviewed, by review outcome (approve, change, reject), beside those of
  the treated decisions nobody reviewed (``followed``): a human override is a
  signal, so it is measured.

Each night touches one decision date, so its cost grows with one day of decisions,
not with history. A rerun of ``d`` replaces the same rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from ml.config.policy import PolicyConfig, load_policy_config
from ml.config.settings import Settings, load_business_config
from ml.contract.tables import (
    DECISION_OUTCOMES,
    DECISION_OUTCOMES_TABLE,
    MODEL_PERFORMANCE,
    MODEL_PERFORMANCE_TABLE,
    OVERRIDE_PERFORMANCE,
    OVERRIDE_PERFORMANCE_TABLE,
    POLICY_PERFORMANCE,
    POLICY_PERFORMANCE_TABLE,
    create_like,
    ddl_script,
)
from ml.decision.decide_step import DDL as DECISION_DDL
from ml.storage.warehouse import connect, ensure_schemas, replace_run_date, table_exists

DELIVERED = ("delivered", "answered", "redeemed")


def randomized_sql(alias: str = "") -> str:
    """SQL predicate over ``marts.decisions`` (columns ``arm``, ``reason_codes``,
    optionally qualified by ``alias``): the decision is in the experiment.

    The experiment is the holdout and the treated decisions the policy's walk
    assigned itself: the holdout is a random draw among exactly those. A decision a
    person approved or changed goes out without a holdout draw, and review routes
    the high-value and out-of-range customers, whose churn differs from the rest;
    counting them among the treated would compare two different populations.
    """
    q = f"{alias}." if alias else ""
    return (
        f"({q}arm = 'holdout' or ({q}arm = 'treated' "
        f"and coalesce({q}reason_codes, '') not like 'review%'))"
    )


# The tables this step owns (declared in ml.contract.tables);
# marts.policy_performance is created from its first rows.
DDL = ddl_script(DECISION_OUTCOMES, MODEL_PERFORMANCE, OVERRIDE_PERFORMANCE)


@dataclass(frozen=True)
class OutcomeSummary:
    """What one outcome join found."""

    day: date
    decision_date: date
    outcomes: int
    treated: int
    holdout: int
    model: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "decision_date": self.decision_date.isoformat(),
            "outcomes": self.outcomes,
            "treated": self.treated,
            "holdout": self.holdout,
            "model": self.model,
        }


def _outcomes(
    con: duckdb.DuckDBPyConnection, decision_date: date, policy: PolicyConfig
) -> pd.DataFrame:
    segment_column = policy.learning.segment_column
    segment = (
        f"cast(f.{segment_column} as varchar)"
        if segment_column
        else "cast(null as varchar)"
    )
    costs = policy.costs()
    cost_sql = " ".join(f"when '{a}' then {c!r}" for a, c in costs.items())
    delivered = ", ".join(f"'{s}'" for s in DELIVERED)
    return con.execute(
        f"""
        select d.decision_id, d.run_date, d.customer_id, d.arm, d.action,
            d.p_churn, d.value_at_risk, d.chosen_ev as expected_ev,
            case when d.arm = 'treated' then case d.action {cost_sql} else 0 end
                else 0 end as cost,
            d.policy_mode, d.model_version, {segment} as segment,
            not l.churned as retained, l.horizon_spend as realized_spend,
            r.status as delivery_status,
            case when r.status is null then null
                else r.status in ({delivered}) end as delivered,
            a.decision as review_decision,
            coalesce(a.decision in ('reject', 'change'), false) as overridden,
            {randomized_sql("d")} as is_randomized
        from marts.decisions d
        join marts.training_examples l
          on l.customer_id = d.customer_id and l.as_of_date = d.run_date
        left join (
            -- staging.stg_landing__action_results' rule (the latest result_at,
            -- then source_file, status), over every partition: raw is read, as
            -- the lab warehouses without dbt have no staging views
            select * from raw.action_results
            qualify row_number() over (
                partition by decision_id order by result_at desc, source_file, status
            ) = 1
        ) r on r.decision_id = d.decision_id
        left join marts.review_applied a on a.review_decision_id = d.decision_id
        left join marts.customer_features f
          on f.customer_id = d.customer_id and f.as_of_date = d.run_date
        where d.run_date = $r
        order by d.customer_id
        """,
        {"r": decision_date},
    ).df()


def _policy_performance(
    con: duckdb.DuckDBPyConnection, decision_date: date, outcomes: pd.DataFrame
) -> pd.DataFrame:
    from ml.feedback.uplift import arm_comparison

    arms = outcomes[outcomes["is_randomized"].fillna(False).astype(bool)]
    if arms.empty:
        return pd.DataFrame()
    per_action = arm_comparison(arms, ["action"])
    overall = arm_comparison(arms, []).assign(action="all")
    frame = pd.concat([per_action, overall], ignore_index=True)
    if not table_exists(con, POLICY_PERFORMANCE.schema, POLICY_PERFORMANCE.table):
        con.register("_perf", frame.assign(run_date=decision_date))
        con.execute(create_like(POLICY_PERFORMANCE, "_perf"))
        con.unregister("_perf")
    return frame


def _override_performance(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Outcomes by review outcome: the reviewed decisions (approve, change, reject)
    beside the treated decisions nobody reviewed (``followed``)."""
    reviewed = outcomes[outcomes["review_decision"].notna()]
    followed = outcomes[
        (outcomes["arm"] == "treated") & outcomes["review_decision"].isna()
    ]
    groups = [("followed", followed)] + [
        (str(k), g) for k, g in reviewed.groupby("review_decision", sort=True)
    ]
    rows = [
        {
            "review_outcome": name,
            "n": len(group),
            "retention": float(group["retained"].astype(float).mean()),
            "mean_spend": float(group["realized_spend"].astype(float).mean()),
            "delivered_rate": (
                float(group["delivered"].dropna().astype(float).mean())
                if group["delivered"].notna().any()
                else None
            ),
        }
        for name, group in groups
        if len(group)
    ]
    return pd.DataFrame(
        rows,
        columns=["review_outcome", "n", "retention", "mean_spend", "delivered_rate"],
    )


def _model_performance(outcomes: pd.DataFrame) -> dict[str, Any]:
    from ml.feedback.realized import calibration_by_decile, realized_model_metrics

    scored = outcomes[outcomes["p_churn"].notna()]
    if scored.empty:
        return {}
    y = (~scored["retained"].astype(bool)).to_numpy(dtype=np.int64)
    p = scored["p_churn"].to_numpy(dtype=np.float64)
    metrics = realized_model_metrics(y, p)
    deciles = calibration_by_decile(y, p)
    versions = scored["model_version"].dropna().unique()
    return {
        "model_version": str(versions[0]) if len(versions) else None,
        **{k: float(v) for k, v in metrics.items()},
        "calibration": json.dumps(deciles.to_dict(orient="records"), default=float),
    }


def join_outcomes(
    settings: Settings, day: date, policy: PolicyConfig | None = None
) -> OutcomeSummary:
    """Join the decisions that mature on ``day`` with what happened (see above)."""
    policy = policy or load_policy_config()
    horizon = load_business_config(settings.config_file).horizon_days
    decision_date = day - timedelta(days=horizon)
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
        con.execute(DECISION_DDL)
        con.execute(DDL)
        outcomes = _outcomes(con, decision_date, policy)
        outcomes["matured_on"] = day
        performance = _policy_performance(con, decision_date, outcomes)
        model = _model_performance(outcomes)
        overrides = _override_performance(outcomes)
        con.execute("begin transaction")
        try:
            replace_run_date(con, DECISION_OUTCOMES_TABLE, decision_date, outcomes)
            if table_exists(con, POLICY_PERFORMANCE.schema, POLICY_PERFORMANCE.table):
                replace_run_date(
                    con, POLICY_PERFORMANCE_TABLE, decision_date, performance
                )
            replace_run_date(
                con,
                MODEL_PERFORMANCE_TABLE,
                decision_date,
                pd.DataFrame([model]) if model else pd.DataFrame(),
            )
            replace_run_date(con, OVERRIDE_PERFORMANCE_TABLE, decision_date, overrides)
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
    arm = outcomes["arm"]
    return OutcomeSummary(
        day,
        decision_date,
        len(outcomes),
        int((arm == "treated").sum()),
        int((arm == "holdout").sum()),
        {k: v for k, v in model.items() if k != "calibration"},
    )
