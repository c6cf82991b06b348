"""
### loopline_retrain

Retrains the churn model when an upstream DAG emits the `retrain_requested` asset,
or when triggered by hand (optionally with `{"as_of": "YYYY-MM-DD"}`):

1. `build_training_set`: reads the examples whose labels matured by *as_of* from the
   warehouse and writes them with the out-of-time split under
   `reports/training/<as_of>/`.
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
registers a new version and goes through the gate again.

Every task records itself in `ops.runs` (run date *as_of*, step: the task's name),
as the nightly and feedback tasks do, so every task opens the warehouse and is in
the one-slot `warehouse` pool (a nightly run waits while a retrain runs). Each
retries (3 times, after 30 s, then about twice as long each time, at most 5 min)
when it fails for a passing reason such as a warehouse another process holds; a
retried `evaluate` registers another version, which the gate judges like any other,
and the champion moves only through `gate` and `promote` (`loopline_airflow.retries`).
The logic lives in `ml.ops.tasks` (on `ml.prediction.training`).

A failed task writes one alert (DAG, task, run date, cause, what to do) to
`ops.alerts` and its log, and to Slack or e-mail when configured (`ml.ops.alerts`).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task
from loopline_airflow import dags_start_date
from loopline_airflow.alerts import alert_on_failure
from loopline_airflow.assets import RETRAIN_REQUESTED
from loopline_airflow.retries import RETRY_POLICY, warehouse_task

WAREHOUSE = warehouse_task()


@dag(
    dag_id="loopline_retrain",
    schedule=[RETRAIN_REQUESTED],
    start_date=dags_start_date(),
    catchup=False,
    max_active_runs=1,
    tags=["loopline", "training"],
    doc_md=__doc__,
    default_args={
        "retries": 0,
        "retry_policy": RETRY_POLICY,
        "on_failure_callback": alert_on_failure,
    },
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
    @task(**WAREHOUSE)
    def build_training_set(
        params: dict[str, Any] | None = None,
        ds: str | None = None,
        dag_run: Any = None,
        triggering_asset_events: Any = None,
    ) -> dict:
        from ml.ops.tasks import build_training_set

        events = [
            event.extra or {}
            for asset_events in (triggering_asset_events or {}).values()
            for event in asset_events
        ]
        trigger = events[-1] if events else (params or {}).get("trigger") or {}
        return build_training_set(
            (params or {}).get("as_of"), ds, dag_run.run_after, trigger
        )

    @task(**WAREHOUSE)
    def train_candidates(training: dict) -> dict:
        from ml.ops.tasks import train_candidates

        return train_candidates(training)

    @task(**WAREHOUSE)
    def evaluate(training: dict, candidates: dict) -> dict:
        from ml.ops.tasks import evaluate

        return evaluate(training, candidates)

    @task(**WAREHOUSE)
    def gate(training: dict, evaluation: dict) -> dict:
        from ml.ops.tasks import gate

        return gate(training, evaluation)

    @task(**WAREHOUSE)
    def promote(training: dict, decision: dict) -> dict:
        from ml.ops.tasks import promote

        return promote(training, decision)

    # Airflow passes each XComArg's value (the upstream task's dict) at run time.
    training = build_training_set()
    candidates = train_candidates(training)  # type: ignore[arg-type]
    evaluation = evaluate(training, candidates)  # type: ignore[arg-type]
    decision = gate(training, evaluation)  # type: ignore[arg-type]
    promote(training, decision)  # type: ignore[arg-type]


loopline_retrain()
