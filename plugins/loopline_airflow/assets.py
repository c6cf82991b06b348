"""The assets and pool that Loopline's DAGs share.

Every DAG imports them from here, so a producer and its consumers always name the
same asset (an Asset is identified by its name and URI) and the same pool.
"""

from __future__ import annotations

from airflow.sdk import Asset

from loopline_airflow import WAREHOUSE_POOL

__all__ = [
    "DECISIONS",
    "FEATURE_MARTS",
    "LANDING_RAW",
    "RETRAIN_REQUESTED",
    "SCORES",
    "WAREHOUSE_POOL",
]

LANDING_RAW = Asset(name="landing_raw", uri="duckdb://loopline/raw")
FEATURE_MARTS = Asset(
    name="customer_features", uri="duckdb://loopline/marts/customer_features"
)
SCORES = Asset(name="scores", uri="duckdb://loopline/marts/scores")
# Decisions and their action-queue exports of a run date.
DECISIONS = Asset(name="decisions", uri="duckdb://loopline/marts/decisions")
# Emitted by the feedback layer when a retrain is due; schedules loopline_retrain.
RETRAIN_REQUESTED = Asset(name="retrain_requested", uri="loopline://retrain_requested")
