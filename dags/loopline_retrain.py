"""
### loopline_retrain

Retrains the churn model when an upstream DAG emits the `retrain_requested` asset,
or when triggered by hand (optionally with `{"as_of": "YYYY-MM-DD"}`):

1. `build_training_set`: reads the examples whose labels matured by *as_of* from the
   warehouse (read-only, in the `warehouse` pool, since a reader blocks writers)
   and writes them with the out-of-time split under `reports/training/<as_of>/`.
2. `train_candidates`: fits and calibrates the baseline and the gradient-boosting
   candidate; starts the MLflow run and logs parameters and both models.
3. `evaluate`: test-window metrics, plots and the model card go into that run; the
   model is registered as `challenger`.
4. `gate`: the challenger against the current champion on the same test window; the
   decision and its evidence are logged to MLflow.
5. `promote`: moves the `champion` alias if the gate said so, and nothing otherwise.

*as_of* is the `as_of` parameter, else the day whose outcomes requested the retrain
(from the asset event), else the run's logical date, else the date the run was
scheduled after. The trigger's reasons (from the asset event's extra, or the
`trigger` parameter of a run started by hand for a recorded breach) become tags of
the MLflow training run. Intermediate results live
under `LOOPLINE_HOME` and in MLflow; XCom carries paths, ids and versions. A rerun
registers a new version and goes through the gate again. The logic lives in
`ml.prediction.training`.

A failed task writes one alert (DAG, task, run date, cause, what to do) to
`ops.alerts` and its log, and to Slack or e-mail when configured (`ml.ops.alerts`).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task
from loopline_airflow import dags_start_date
from loopline_airflow.alerts import alert_on_failure
from loopline_airflow.assets import RETRAIN_REQUESTED, WAREHOUSE_POOL


@dag(
    dag_id="loopline_retrain",
    schedule=[RETRAIN_REQUESTED],
    start_date=dags_start_date(),
    catchup=False,
    max_active_runs=1,
    tags=["loopline", "training"],
    doc_md=__doc__,
    default_args={"retries": 0, "on_failure_callback": alert_on_failure},
    params={
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Training date (YYYY-MM-DD); default: the run's date.",
        ),
        "trigger": Param(
            None,
            type=["null", "object"],
            description="The retrain trigger's event extra (day, reasons, tags).",
        ),
    },
)
def loopline_retrain() -> None:
    @task(pool=WAREHOUSE_POOL)
    def build_training_set(
        params: dict[str, Any] | None = None,
        ds: str | None = None,
        dag_run: Any = None,
        triggering_asset_events: Any = None,
    ) -> dict:
        from ml.config.settings import get_settings
        from ml.prediction.training import build_training_set, resolve_as_of

        events = [
            event.extra or {}
            for asset_events in (triggering_asset_events or {}).values()
            for event in asset_events
        ]
        trigger = events[-1] if events else (params or {}).get("trigger") or {}
        as_of = resolve_as_of(
            (params or {}).get("as_of"),
            ds,
            dag_run.run_after,
            triggered_on=trigger.get("day"),
        )
        training = build_training_set(get_settings(), as_of).as_dict()
        return training | {"trigger_tags": trigger.get("tags") or {}}

    @task
    def train_candidates(training: dict) -> dict:
        from ml.config.settings import get_settings
        from ml.prediction.training import train_candidates

        return train_candidates(
            get_settings(), training["path"], tags=training.get("trigger_tags")
        ).as_dict()

    @task
    def evaluate(training: dict, candidates: dict) -> dict:
        from ml.config.settings import get_settings
        from ml.prediction.training import evaluate

        return evaluate(
            get_settings(),
            training["path"],
            candidates["run_id"],
            candidates["model_uri"],
            candidates["baseline_uri"],
        ).as_dict()

    @task
    def gate(training: dict, evaluation: dict) -> dict:
        from ml.config.settings import get_settings
        from ml.prediction.training import gate

        return gate(
            get_settings(),
            training["path"],
            evaluation["run_id"],
            evaluation["version"],
        ).as_dict()

    @task
    def promote(decision: dict) -> dict:
        from ml.config.settings import get_settings
        from ml.prediction.training import promote

        return promote(get_settings(), decision["version"]).as_dict()

    training = build_training_set()
    candidates = train_candidates(training)
    evaluation = evaluate(training, candidates)
    promote(gate(training, evaluation))


loopline_retrain()
