"""The retrain check, the third nightly feedback step.

:func:`check_retrain` applies the retrain rules (:mod:`ml.feedback.trigger`) to
the champion's realized history, today's drift and the last retrain, and records
the verdict in ``ops.retrain_events`` whether it fires or not.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from ml.config.settings import Settings, load_business_config
from ml.contract.tables import DRIFT_TABLE, RETRAIN_EVENTS_TABLE
from ml.feedback.feedback_tables import prepare_feedback_tables, replace_day
from ml.storage.warehouse import connect


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
    prepare_feedback_tables(settings)
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
        replace_day(con, RETRAIN_EVENTS_TABLE, "day", day, row)
    return RetrainCheck(day.isoformat(), decision_fire, reasons, blocked, version, tags)
