"""Drift of one day's snapshot, the first nightly feedback step.

:func:`compute_drift` computes the PSI of each feature of the snapshot of ``d``
and of its scores against the training reference of the model that scored them,
into ``marts.drift``. It needs no labels, so a shift is seen the day it happens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from ml.config.settings import Settings
from ml.contract.tables import DRIFT_TABLE
from ml.feedback.feedback_tables import prepare_feedback_tables, replace_day
from ml.storage.warehouse import connect, table_columns


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


def compute_drift(settings: Settings, day: date) -> DriftSummary:
    """PSI of the features and scores of ``day`` against the scoring model's
    training reference, into ``marts.drift`` (nothing when ``day`` was not scored,
    for example in fallback mode without a champion)."""
    from ml.decision.decide_step import scored_version
    from ml.feedback.realized import drift_report
    from ml.prediction.registry import load_reference

    prepare_feedback_tables(settings)
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
        replace_day(con, DRIFT_TABLE, "run_date", day, rows)
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
