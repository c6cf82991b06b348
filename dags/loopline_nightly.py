"""
### loopline_nightly

The nightly run for one logical date *d*:

1. `check_landing`: waits until the partitions due for *d* have landed (a sensor in
   reschedule mode: it looks again every `LOOPLINE_LANDING_WAIT_POKE_SECONDS`, 300
   by default, holds no pool slot in between, and fails after
   `LOOPLINE_LANDING_WAIT_TIMEOUT_SECONDS`, 3600 by default, counted from its first
   look; its last look fails with the missing tables and where they should be).
2. `validate_landing`: Great Expectations gates on the landing partitions of *d*; bad
   rows go to `ops.quarantine`, schema faults stop the run; good rows replace
   partition *d* of `raw.*`.
3. `dbt_build`: one `dbt build` for *d* (staging → intermediate → marts, with tests).
4. `validate_marts`: gates on the feature snapshot of *d*.
5. `score`: the champion model (`models:/loopline-churn@champion`) scores the
   snapshot of *d* in chunks into `marts.scores`; without a champion it records that
   and succeeds.
6. `decide`: the policy turns the scores into `marts.decisions` (treated, holdout,
   review or none, with expected values and reasons), applies the review decisions
   that arrived on *d*, writes `marts.review_queue` and `marts.policy_daily`, and
   exports the action queues to `exports/dt=d/`. Without trusted scores it uses the
   rule fallback. A failed gate upstream stops the run before this task, so no
   queue is written.
7. `publish`: writes the read-only analyst copy (`analytics.duckdb`: the `marts`
   and `ops` schemas and the `reporting` views) and swaps it in atomically, so
   analysts see the night's results and never open the live warehouse. A failed
   task upstream stops the run before it: the previous copy stays.

Every task works on the partition of its logical date, so reruns, retries and
backfills are idempotent. Every task opens the warehouse (each records itself in
`ops.runs`), so all share the one-slot `warehouse` pool, and each retries (3 times,
after 30 s, then about twice as long each time, at most 5 min) when it fails for a
passing reason such as a warehouse another process holds. A data fault (a failed
gate, a partition still missing at the sensor's last look) fails at once, without
retry (`loopline_airflow.retries`). A night's decisions depend on earlier
nights' (contact cooldowns, learned uplifts): backfill with *Max Active Runs* 1 so
that the dates run in order. The logic lives in `ml.ops.tasks`.

A failed task writes one alert (DAG, task, run date, cause, what to do) to
`ops.alerts` and its log, and to Slack or e-mail when configured (`ml.ops.alerts`).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import PokeReturnValue, dag, task
from loopline_airflow import dags_start_date, landing_wait
from loopline_airflow.alerts import alert_on_failure
from loopline_airflow.assets import DECISIONS, FEATURE_MARTS, LANDING_RAW, SCORES
from loopline_airflow.retries import RETRY_POLICY, sensor_task, warehouse_task
from loopline_airflow.sensors import last_look

LANDING_WAIT = landing_wait()
WAREHOUSE = warehouse_task()


@dag(
    dag_id="loopline_nightly",
    schedule="@daily",
    start_date=dags_start_date(),
    catchup=False,
    max_active_runs=1,
    tags=["loopline", "nightly"],
    doc_md=__doc__,
    default_args={
        "retries": 0,
        "retry_policy": RETRY_POLICY,
        "on_failure_callback": alert_on_failure,
    },
)
def loopline_nightly() -> None:
    # Retries, as for check_nightly (loopline_outcomes): Airflow can fail a
    # rescheduling sensor between two looks (apache/airflow#71172).
    @task.sensor(
        **sensor_task(LANDING_WAIT.poke_seconds),
        mode="reschedule",
        poke_interval=LANDING_WAIT.poke_seconds,
        timeout=LANDING_WAIT.timeout_seconds,
    )
    def check_landing(ds: str | None = None, **context: Any) -> PokeReturnValue:
        from ml.ops.tasks import look_for_landing, parse_ds

        summary = look_for_landing(parse_ds(ds), last_look=last_look(context))
        return PokeReturnValue(
            is_done=summary is not None,
            xcom_value=summary.as_dict() if summary is not None else None,
        )

    @task(**WAREHOUSE, outlets=[LANDING_RAW])
    def validate_landing(ds: str | None = None) -> dict:
        from ml.ops.tasks import parse_ds, validate_landing

        return validate_landing(parse_ds(ds)).as_dict()

    @task(**WAREHOUSE)
    def dbt_build(ds: str | None = None) -> dict:
        from ml.ops.tasks import build_marts, parse_ds

        return build_marts(parse_ds(ds)).as_dict()

    @task(**WAREHOUSE, outlets=[FEATURE_MARTS])
    def validate_marts(ds: str | None = None) -> dict:
        from ml.ops.tasks import parse_ds, validate_marts

        return validate_marts(parse_ds(ds)).as_dict()

    @task(**WAREHOUSE, outlets=[SCORES])
    def score(ds: str | None = None) -> dict:
        from ml.ops.tasks import parse_ds, score

        return score(parse_ds(ds)).as_dict()

    @task(**WAREHOUSE, outlets=[DECISIONS])
    def decide(ds: str | None = None) -> dict:
        from ml.ops.tasks import decide, parse_ds

        return decide(parse_ds(ds)).as_dict()

    @task(**WAREHOUSE)
    def publish(ds: str | None = None) -> dict:
        from ml.ops.tasks import parse_ds, publish

        return publish(parse_ds(ds)).as_dict()

    (
        check_landing()
        >> validate_landing()
        >> dbt_build()
        >> validate_marts()
        >> score()
        >> decide()
        >> publish()
    )


loopline_nightly()
