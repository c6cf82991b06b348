"""End to end: the real ``loopline_retrain`` DAG, in-process, on synthetic marts.

The warehouse of the session's LOOPLINE_HOME gets synthetic
``marts.training_examples`` and ``marts.customer_features`` (seconds to build, unlike
the simulator), then the DAG runs with ``dag.test()`` for an ``as_of`` given as a run
parameter. The first model beats the baseline and becomes the champion; a second run
for the same ``as_of`` registers another version, which the gate rejects (it is no
better than the champion), and the champion stays where it was.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ml.config.settings import Settings
from ml.prediction.training import resolve_as_of, training_dir

FIRST_DAY = date(2023, 5, 1)
DAYS = 300
AS_OF = FIRST_DAY + timedelta(days=DAYS - 1)
MODEL = "loopline-churn"
TASKS = ["build_training_set", "train_candidates", "evaluate", "gate", "promote"]


@pytest.fixture(scope="module")
def world(airflow_settings: Settings) -> Settings:
    from loopline_airflow.runner import configure

    from ml.sim.marts import write_synthetic_marts

    settings = airflow_settings
    configure(settings)
    settings.ensure_dirs()
    write_synthetic_marts(
        settings.warehouse_path, 1000, FIRST_DAY, DAYS, seed=5, horizon_days=30
    )
    return settings


def _retrain_runs(settings: Settings) -> list[tuple[str, str]]:
    """The (step, status) rows of the retrain steps on AS_OF, one per step."""
    from ml.storage.warehouse import connect

    with connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute(
            "select step, status from ops.runs where run_date = ?", [AS_OF]
        ).fetchall()
    return sorted((str(step), str(status)) for step, status in rows if step in TASKS)


def _champion(client: MlflowClient) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(MODEL, "champion").version)
    except MlflowException:
        return None


def test_retrain_promotes_the_first_model_and_reruns_safely(world: Settings) -> None:
    from loopline_airflow.runner import run_dag

    # both URIs: another module in this process may have set a global registry URI
    uri = world.mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    # the logical date differs from as_of: the run parameter wins
    first = run_dag(world, "loopline_retrain", date(2024, 3, 1), {"as_of": str(AS_OF)})
    assert first.ok, first.task_states
    assert first.task_states == dict.fromkeys(TASKS, "success")
    # every step recorded itself in ops.runs, on the training date
    assert _retrain_runs(world) == sorted((task, "success") for task in TASKS)

    assert (training_dir(world, AS_OF) / "examples.parquet").exists()
    champion = _champion(client)
    assert champion is not None
    version = client.get_model_version(MODEL, champion)
    assert version.tags["gate_decision"] == "promote"
    run = client.get_run(version.run_id)
    assert run.data.params["as_of"] == AS_OF.isoformat()
    assert run.data.metrics["test_roc_auc"] > run.data.metrics["baseline_test_roc_auc"]
    assert "model_card.md" in {a.path for a in client.list_artifacts(run.info.run_id)}

    # the gate's evidence: a gate run with its decision, metrics and gate.json
    gate_run = client.get_run(version.tags["gate_run_id"])
    assert gate_run.data.tags["decision"] == "promote"
    assert gate_run.data.tags["challenger_version"] == champion
    assert "challenger_roc_auc" in gate_run.data.metrics
    assert "baseline_roc_auc" in gate_run.data.metrics
    gate_json = client.download_artifacts(gate_run.info.run_id, "gate.json")
    evidence = json.loads(Path(gate_json).read_text())
    assert evidence["promoted"] is True
    history = json.loads(client.get_registered_model(MODEL).tags["champion_history"])
    assert history[-1] == champion

    # a rerun for the same as_of: a new version, rejected, champion unchanged
    second = run_dag(world, "loopline_retrain", date(2024, 3, 2), {"as_of": str(AS_OF)})
    assert second.ok, second.task_states
    # the rerun replaced the rows of its steps
    assert _retrain_runs(world) == sorted((task, "success") for task in TASKS)
    versions = client.search_model_versions(f"name = '{MODEL}'")
    newest = max(versions, key=lambda v: int(v.version))
    assert int(newest.version) > int(champion)
    assert newest.tags["gate_decision"] == "reject"
    assert _champion(client) == champion
    history_after = client.get_registered_model(MODEL).tags["champion_history"]
    assert json.loads(history_after) == history


@pytest.mark.parametrize(
    ("requested", "logical", "run_after", "expected"),
    [
        ("2024-02-03", "2024-03-01", None, date(2024, 2, 3)),
        (None, "2024-03-01", None, date(2024, 3, 1)),
        (None, None, datetime(2024, 4, 5, 23, 0, tzinfo=UTC), date(2024, 4, 5)),
        ("", None, datetime(2024, 4, 5, tzinfo=UTC), date(2024, 4, 5)),
    ],
)
def test_as_of_resolution(
    requested: str | None,
    logical: str | None,
    run_after: datetime | None,
    expected: date,
) -> None:
    assert resolve_as_of(requested, logical, run_after) == expected
