"""
### loopline_outcomes

The feedback run for one logical date *d*, after the nightly run of *d*:

1. `check_nightly`: waits until the nightly run of *d* has decided (a sensor in
   reschedule mode: it looks again every `LOOPLINE_NIGHTLY_WAIT_POKE_SECONDS`,
   600 by default, holds no pool slot in between, and fails after
   `LOOPLINE_NIGHTLY_WAIT_TIMEOUT_SECONDS`, 7200 by default, counted from its
   first look). It has three retries, against an Airflow race that can fail a
   rescheduling sensor between two looks.
2. `join_outcomes`: the decisions of *d − H* have matured; join them with their
   labels, delivery results and review outcomes into `marts.decision_outcomes`,
   `marts.policy_performance` (uplift against the holdout, with intervals),
   `marts.model_performance` (realized AUC, calibration) and
   `marts.override_performance`.
3. `drift`: PSI of the features and scores of *d* against the champion's training
   reference into `marts.drift`.
4. `learn_policy`: each action's uplift posterior into `marts.policy_parameters`;
   the policy uses it from *d + 1* on.
5. `retrain_check` (short-circuit): the retrain rules, recorded in
   `ops.retrain_events`; when nothing breaches, the next task is skipped.
6. `request_retrain`: emits the `retrain_requested` asset with the reasons, which
   schedules `loopline_retrain` (the reasons become tags of its MLflow run).
7. `publish`: writes the analyst copy again, now with the outcome, drift and
   policy marts of *d* and the retrain verdict. It runs whether or not a retrain
   was requested (`retrain_check` skips only its direct downstream task), and not
   after a failed task (`none_failed`).

A failed task stops the run before `request_retrain` and `publish`, so it emits
nothing and the previous analyst copy stays. Every
task works on the rows of its logical date, so reruns, retries and backfills are
idempotent. Warehouse writers share the one-slot `warehouse` pool with the nightly
DAG, so the two never write at the same time, and each retries (3 times, after
30 s, then about twice as long each time, at most 5 min) when it fails for a
passing reason such as a warehouse another process holds; a data fault fails at
once, without retry (`loopline_airflow.retries`). The logic lives in
`ml.ops.tasks`.

A failed task writes one alert (DAG, task, run date, cause, what to do) to
`ops.alerts` and its log, and to Slack or e-mail when configured (`ml.ops.alerts`).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task
from loopline_airflow import dags_start_date, nightly_wait
from loopline_airflow.alerts import alert_on_failure
from loopline_airflow.assets import RETRAIN_REQUESTED
from loopline_airflow.retries import RETRY_POLICY, sensor_task, warehouse_task

NIGHTLY_WAIT = nightly_wait()
NIGHTLY_WAIT_RETRIES = 3
WAREHOUSE = warehouse_task()


@dag(
    dag_id="loopline_outcomes",
    schedule="@daily",
    start_date=dags_start_date(),
    catchup=False,
    max_active_runs=1,
    tags=["loopline", "feedback"],
    doc_md=__doc__,
    default_args={
        "retries": 0,
        "retry_policy": RETRY_POLICY,
        "on_failure_callback": alert_on_failure,
    },
)
def loopline_outcomes() -> None:
    # Retries: Airflow can fail a rescheduling sensor when the executor reports
    # one poke's exit after the next poke was already scheduled (apache/airflow
    # #71172). A retry keeps looking; the timeout still counts from the first try.
    @task.sensor(
        **sensor_task(NIGHTLY_WAIT.poke_seconds, retries=NIGHTLY_WAIT_RETRIES),
        mode="reschedule",
        poke_interval=NIGHTLY_WAIT.poke_seconds,
        timeout=NIGHTLY_WAIT.timeout_seconds,
    )
    def check_nightly(ds: str | None = None) -> bool:
        from ml.ops.tasks import nightly_decided, parse_ds

        return nightly_decided(parse_ds(ds))

    @task(**WAREHOUSE)
    def join_outcomes(ds: str | None = None) -> dict:
        from ml.ops.tasks import outcomes, parse_ds

        return outcomes(parse_ds(ds)).as_dict()

    @task(**WAREHOUSE)
    def drift(ds: str | None = None) -> dict:
        from ml.ops.tasks import drift, parse_ds

        return drift(parse_ds(ds)).as_dict()

    @task(**WAREHOUSE)
    def learn_policy(ds: str | None = None) -> dict:
        from ml.ops.tasks import learn_policy, parse_ds

        return learn_policy(parse_ds(ds)).as_dict()

    # Only request_retrain (the direct downstream task) is skipped when nothing
    # breaches; publish keeps its own trigger rule.
    @task.short_circuit(**WAREHOUSE, ignore_downstream_trigger_rules=False)
    def retrain_check(ds: str | None = None) -> dict:
        from ml.ops.tasks import parse_ds, retrain_check

        verdict = retrain_check(parse_ds(ds))
        # An empty result short-circuits request_retrain.
        return verdict if verdict["fire"] else {}

    @task(outlets=[RETRAIN_REQUESTED])
    def request_retrain(verdict: dict, *, outlet_events: Any = None) -> dict:
        outlet_events[RETRAIN_REQUESTED].extra = {
            "day": verdict["day"],
            "reasons": verdict["reasons"],
            "champion_version": verdict["champion_version"],
            "tags": verdict["tags"],
        }
        return verdict

    @task(**WAREHOUSE, trigger_rule="none_failed")
    def publish(ds: str | None = None) -> dict:
        from ml.ops.tasks import parse_ds, publish_outcomes

        return publish_outcomes(parse_ds(ds)).as_dict()

    verdict = retrain_check()
    (check_nightly() >> join_outcomes() >> drift() >> learn_policy() >> verdict)
    # Airflow passes the XComArg's value (retrain_check's dict) at run time.
    request_retrain(verdict) >> publish()  # type: ignore[arg-type]


loopline_outcomes()
