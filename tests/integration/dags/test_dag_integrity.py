"""DAG integrity: the DAG files import cleanly and stay thin."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[3] / "dags"
HEAVY = {"pandas", "numpy", "sklearn", "great_expectations", "mlflow", "duckdb", "dbt"}


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_no_import_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert "loopline_nightly" in dagbag.dags


def test_nightly_shape(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["loopline_nightly"]
    assert dag.max_active_runs == 1
    assert dag.doc_md and "loopline_nightly" in dag.doc_md
    assert dag.tags and "loopline" in dag.tags
    order = [
        "check_landing",
        "validate_landing",
        "dbt_build",
        "validate_marts",
        "score",
        "decide",
        "publish",
    ]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    for task_id in order[1:]:
        assert dag.get_task(task_id).pool == "warehouse", task_id
    # the analyst copy is written last, after the decisions
    assert dag.get_task("publish").downstream_task_ids == set()


@pytest.mark.parametrize("path", sorted(DAGS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_dag_files_are_thin(path: Path) -> None:
    """No heavy module at the top level, no now(), no business logic imports."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        else:
            continue
        assert not set(names) & (HEAVY | {"ml"}), f"{path.name}: top-level {names}"
    source = path.read_text()
    for forbidden in ("datetime.now(", "pendulum.now(", "date.today("):
        assert forbidden not in source, f"{path.name} calls {forbidden}"


def test_retrain_shape(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["loopline_retrain"]
    assert dag.max_active_runs == 1
    assert "as_of" in dag.params
    order = ["build_training_set", "train_candidates", "evaluate", "gate", "promote"]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    # scheduled on the retrain_requested asset, which the feedback layer emits
    assert "retrain_requested" in str(dag.timetable.asset_condition)


def test_outcomes_shape(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags["loopline_outcomes"]
    assert dag.max_active_runs == 1
    order = [
        "check_nightly",
        "join_outcomes",
        "drift",
        "learn_policy",
        "retrain_check",
        "request_retrain",
    ]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    for task_id in order[:-1]:
        assert dag.get_task(task_id).pool == "warehouse", task_id
    # Only the last task emits retrain_requested, and only after the short-circuit.
    emitters = [t.task_id for t in dag.tasks if t.outlets]
    assert emitters == ["request_retrain"]
    assert [a.name for a in dag.get_task("request_retrain").outlets] == [
        "retrain_requested"
    ]
    retrain = dagbag.dags["loopline_retrain"]
    assert "retrain_requested" in str(retrain.timetable.asset_condition)
    # The analyst copy is written last, whether or not a retrain was requested:
    # the short-circuit skips only its direct downstream task.
    publish = dag.get_task("publish")
    assert publish.upstream_task_ids == {"request_retrain"}
    assert publish.downstream_task_ids == set()
    assert publish.pool == "warehouse"
    assert publish.trigger_rule == "none_failed"
    assert dag.get_task("retrain_check").ignore_downstream_trigger_rules is False


def test_every_task_alerts_on_failure(dagbag) -> None:  # type: ignore[no-untyped-def]
    """A failed task of any Loopline DAG writes one alert (ml.ops.alerts)."""
    from loopline_airflow.alerts import alert_on_failure

    loopline = [d for d in dagbag.dags.values() if "loopline" in (d.tags or [])]
    assert {d.dag_id for d in loopline} == {
        "loopline_nightly",
        "loopline_outcomes",
        "loopline_retrain",
    }
    for dag in loopline:
        for task in dag.tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert alert_on_failure in callbacks, f"{dag.dag_id}.{task.task_id}"


# Tasks that never open the DuckDB warehouse, and why. Every other task of every DAG
# must be in the one-slot `warehouse` pool: DuckDB allows one writing process, and a
# writer fails at once while another process holds the file, readers included.
OUTSIDE_THE_POOL = {
    # sets the asset event's extra from its upstream's XCom
    ("loopline_outcomes", "request_retrain"): "asset event only",
    # (the retrain tasks record themselves in ops.runs: all of them are pooled)
}


def test_every_warehouse_task_is_in_the_one_slot_pool(dagbag) -> None:  # type: ignore[no-untyped-def]
    tasks = {
        (dag_id, task.task_id): task
        for dag_id, dag in dagbag.dags.items()
        for task in dag.tasks
    }
    # the exceptions name real tasks (a rename must revisit them)
    assert set(OUTSIDE_THE_POOL) <= set(tasks)
    for key, task in tasks.items():
        if key in OUTSIDE_THE_POOL:
            assert task.pool != "warehouse", key
        else:
            assert task.pool == "warehouse", f"{key} opens the warehouse: pool it"
    assert sum(task.pool == "warehouse" for task in tasks.values()) == len(tasks) - 1


def test_outcomes_waits_for_the_nightly_run_without_holding_the_pool(dagbag) -> None:  # type: ignore[no-untyped-def]
    """check_nightly is a rescheduling sensor: between two looks it frees its
    worker and its warehouse slot, so the nightly run it waits for can run."""
    sensor = dagbag.dags["loopline_outcomes"].get_task("check_nightly")
    assert sensor.mode == "reschedule"
    assert sensor.poke_interval > 0 and sensor.timeout >= sensor.poke_interval
    # Airflow can fail a rescheduling sensor when one look's exit is reported
    # after the next look was scheduled (apache/airflow#71172): it retries
    assert sensor.retries >= 1
