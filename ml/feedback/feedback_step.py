"""The nightly feedback steps after the outcome join (``loopline_outcomes``).

For day ``d`` (after the nightly run of ``d`` and
:func:`ml.feedback.outcomes.join_outcomes`):

* :func:`compute_drift` — PSI of each feature of the snapshot of ``d`` and of its
  scores against the training reference of the model that scored them, into
  ``marts.drift`` (needs no labels, so a shift is seen the day it happens);
* :func:`update_policy_parameters` — every action's uplift posterior from the
  matured outcomes of the last ``learning.window_days`` decision dates, per segment
  where there are enough data, into ``marts.policy_parameters`` with
  ``effective_from = d + 1``: the policy uses it from the next run on
  (:func:`ml.decision.parameters.current_uplifts`). Each row carries its evidence
  (n per arm, raw estimate, interval) and whether the action-level mean changed;
* :func:`check_retrain` — the retrain rules (:mod:`ml.feedback.trigger`) over the
  champion's realized history, today's drift and the last retrain, recorded in
  ``ops.retrain_events`` whether it fires or not.

Each step replaces the rows of ``d`` only, so reruns and backfills are idempotent,
and reads a bounded window, so its cost does not grow with the length of history.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from ml.config.policy import PolicyConfig, load_policy_config
from ml.config.settings import Settings, load_business_config
from ml.contract.tables import (
    DRIFT,
    DRIFT_TABLE,
    PARAMETERS,
    PARAMETERS_TABLE,
    RETRAIN_EVENTS,
    RETRAIN_EVENTS_TABLE,
    ddl_script,
)
from ml.decision.parameters import current_uplifts
from ml.storage.warehouse import (
    connect,
    ensure_schemas,
    replace_run_date,
    table_columns,
    table_exists,
)

# The tables this step owns (declared in ml.contract.tables).
DDL = ddl_script(DRIFT, PARAMETERS, RETRAIN_EVENTS)


@dataclass
class DriftSummary:
    """The drift of one day's snapshot."""

    day: str
    model_version: str | None
    features: int
    score_psi: float | None
    max_feature: str | None
    max_feature_psi: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RetrainCheck:
    """The retrain rules' verdict for one day (see :mod:`ml.feedback.trigger`)."""

    day: str
    fire: bool
    reasons: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    champion_version: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _prepare(settings: Settings) -> None:
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
        con.execute(DDL)


def _replace(
    con: duckdb.DuckDBPyConnection,
    table: str,
    key: str,
    day: date,
    frame: pd.DataFrame,
) -> None:
    """Replace the rows of ``day`` (date column ``key``) of ``table``, atomically."""
    con.execute("begin transaction")
    try:
        replace_run_date(con, table, day, frame, key=key)
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


# ---------------------------------------------------------------- drift


def compute_drift(settings: Settings, day: date) -> DriftSummary:
    """PSI of the features and scores of ``day`` against the scoring model's
    training reference, into ``marts.drift`` (nothing when ``day`` was not scored,
    for example in fallback mode without a champion)."""
    from ml.decision.decide_step import scored_version
    from ml.feedback.realized import drift_report
    from ml.prediction.registry import load_reference

    _prepare(settings)
    with connect(settings.warehouse_path, read_only=True) as con:
        version = scored_version(con, day)
    reference = load_reference(settings, version) if version else None
    report = pd.DataFrame(columns=["name", "kind", "psi"])
    if reference is not None:
        wanted = [
            c
            for c in [*reference.get("numeric", {}), *reference.get("categorical", {})]
            if c.isidentifier()
        ]
        with connect(settings.warehouse_path, read_only=True) as con:
            available = set(table_columns(con, "marts.customer_features"))
            columns = ", ".join(f"f.{c}" for c in wanted if c in available)
            frame = con.execute(
                f"""
                select {columns}, s.p_churn
                from marts.customer_features f
                join marts.scores s
                  on s.customer_id = f.customer_id and s.run_date = f.as_of_date
                where f.as_of_date = $d
                """,
                {"d": day},
            ).df()
        report = drift_report(reference, frame, frame["p_churn"].to_numpy())
    rows = report.assign(run_date=day, model_version=version)
    with connect(settings.warehouse_path) as con:
        _replace(con, DRIFT_TABLE, "run_date", day, rows)
    features = report[report["kind"] == "feature"].dropna(subset=["psi"])
    score = report.loc[report["kind"] == "score", "psi"]
    top = features.sort_values("psi", ascending=False).head(1)
    return DriftSummary(
        day.isoformat(),
        version,
        len(features),
        float(score.iloc[0]) if len(score) and np.isfinite(score.iloc[0]) else None,
        str(top["name"].iloc[0]) if len(top) else None,
        float(top["psi"].iloc[0]) if len(top) else None,
    )


# ---------------------------------------------------------------- learning


def update_policy_parameters(
    settings: Settings, day: date, policy: PolicyConfig | None = None
) -> pd.DataFrame:
    """Posterior uplift per action (and segment) from the matured outcomes of the
    last ``learning.window_days`` decision dates up to ``day``; written to
    ``marts.policy_parameters`` with ``effective_from = day + 1``."""
    from ml.feedback.uplift import update_parameters

    policy = policy or load_policy_config()
    learning = policy.learning
    _prepare(settings)
    horizon = load_business_config(settings.config_file).horizon_days
    newest = day - timedelta(days=horizon)
    oldest = newest - timedelta(days=learning.window_days - 1)
    with connect(settings.warehouse_path, read_only=True) as con:
        if table_exists(con, "marts", "decision_outcomes"):
            outcomes = con.execute(
                """
                select arm, action, retained, segment
                from marts.decision_outcomes
                where run_date between $a and $b and is_randomized
                """,
                {"a": oldest, "b": newest},
            ).df()
        else:
            outcomes = pd.DataFrame(columns=["arm", "action", "retained", "segment"])
        previous = current_uplifts(settings, day, policy, con=con)
    table = update_parameters(
        outcomes,
        policy.uplift_priors(),
        segment_column="segment" if learning.segment_column else None,
        min_n=learning.min_n,
    )
    table["computed_on"] = day
    table["effective_from"] = day + timedelta(days=1)
    action_level = table["segment"].isna()
    table["previous_mean"] = np.where(
        action_level, table["action"].map(previous).astype(float), np.nan
    )
    table["changed"] = action_level & ~np.isclose(
        table["posterior_mean"].astype(float),
        table["previous_mean"].astype(float),
        rtol=0.0,
        atol=1e-9,
    )
    with connect(settings.warehouse_path) as con:
        _replace(con, PARAMETERS_TABLE, "computed_on", day, table)
    return table


# ---------------------------------------------------------------- trigger


def _last_retrain(
    con: duckdb.DuckDBPyConnection, day: date, trained: date | None
) -> date | None:
    rows = con.execute(
        f"select max(day) from {RETRAIN_EVENTS_TABLE} where fired and day < ?", [day]
    ).fetchall()
    fired = rows[0][0] if rows else None
    candidates = [d for d in (fired, trained) if d is not None]
    return max(candidates) if candidates else None


def check_retrain(settings: Settings, day: date) -> RetrainCheck:
    """Apply the retrain rules for ``day`` and record the verdict in
    ``ops.retrain_events``. The champion's training date counts as its last
    retrain for the cooldown."""
    from ml.feedback.trigger import evaluate_trigger
    from ml.prediction.registry import champion_metrics, trained_as_of

    cfg = load_business_config(settings.config_file).retrain_trigger
    _prepare(settings)
    champion = champion_metrics(settings)
    version = champion[0] if champion else None
    test_auc = float(champion[1].get("roc_auc", np.nan)) if champion else np.nan
    trained = trained_as_of(settings, version) if version else None
    with connect(settings.warehouse_path, read_only=True) as con:
        history = con.execute(
            """
            select run_date as score_date, roc_auc, ece, n as n_labels
            from marts.model_performance
            where model_version = $v and run_date <= $d
            order by run_date desc
            limit $n
            """,
            {"v": version, "d": day, "n": cfg.n},
        ).df()
        drift = con.execute(
            f"select name, kind, psi from {DRIFT_TABLE} where run_date = ?", [day]
        ).df()
        last = _last_retrain(con, day, trained)
    if version is None:
        decision_fire = False
        reasons: list[str] = []
        blocked = ["champion: no champion to retrain against"]
        evidence: dict[str, Any] = {}
        tags: dict[str, str] = {}
    else:
        decision = evaluate_trigger(history, test_auc, drift, day, last, cfg)
        decision_fire = decision.fire
        reasons, blocked = decision.reasons, decision.blocked
        evidence = decision.evidence
        tags = decision.tags() | {"trigger.day": day.isoformat()}
    row = pd.DataFrame(
        [
            {
                "day": day,
                "fired": decision_fire,
                "reasons": " | ".join(reasons),
                "blocked": " | ".join(blocked),
                "evidence": json.dumps(evidence, default=str),
                "champion_version": version,
                "champion_test_auc": test_auc if np.isfinite(test_auc) else None,
            }
        ]
    )
    with connect(settings.warehouse_path) as con:
        _replace(con, RETRAIN_EVENTS_TABLE, "day", day, row)
    return RetrainCheck(day.isoformat(), decision_fire, reasons, blocked, version, tags)
