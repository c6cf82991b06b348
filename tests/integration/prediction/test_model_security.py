"""Loading models safely, listing them, and a real ``loopline train`` that prints
only its own lines.

* Loopline loads a model with skops and its own list of trusted types, never with
  the list the artifact's MLmodel file carries, and never a pickle;
* every Loopline process forbids MLflow to deserialise models;
* ``loopline models`` shows each version's aliases, read from the registry;
* ``loopline train`` (a subprocess) prints no warnings or MLflow messages: they
  go to ``LOOPLINE_HOME/logs/loopline.log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import mlflow
import pytest
import skops.io
from mlflow.exceptions import MlflowException
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer
from sklearn.tree import DecisionTreeClassifier
from skops.io.exceptions import UntrustedTypesFoundException

from ml import PICKLE_SWITCH
from ml.config.settings import Settings
from ml.prediction.registry import (
    CHALLENGER,
    CHAMPION,
    ModelLoadError,
    alias_version,
    list_versions,
    load_model,
    load_sklearn_model,
    promote,
    register_challenger,
)
from ml.sim.marts import write_synthetic_marts

AS_OF = "2025-06-01"
LIBRARY_LINES = ("Warning", "WARNING", "INFO mlflow", "Detected uv project")


@dataclass
class Registry:
    settings: Settings
    env: dict[str, str]
    train: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """One real ``loopline train`` on synthetic marts (version 1), then the same
    logged model registered again (version 2, the challenger)."""
    home = tmp_path_factory.mktemp("models")
    config_file = home / "loopline.yml"
    config_file.write_text("horizon_days: 7\n")
    settings = Settings(home=home, config_file=config_file)
    write_synthetic_marts(
        settings.warehouse_path, 300, date(2024, 1, 1), 520, seed=1, horizon_days=7
    )
    env = {
        **os.environ,
        "LOOPLINE_HOME": str(home),
        "LOOPLINE_CONFIG_FILE": str(config_file),
        "COLUMNS": "200",
    }
    env.pop("LOOPLINE_DEBUG", None)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("loopline")), "train", "--as-of", AS_OF],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    if alias_version(settings, CHAMPION) is None:
        promote(settings, "1", reason="test: a champion to list")
    first = mlflow.MlflowClient(settings.mlflow_tracking_uri).get_model_version(
        "loopline-churn", "1"
    )
    register_challenger(settings, str(first.source), str(first.run_id))
    return Registry(settings, env, done)


def test_train_prints_only_its_own_lines(registry: Registry) -> None:
    output = registry.train.stdout + registry.train.stderr
    found = [
        line for line in output.splitlines() if any(w in line for w in LIBRARY_LINES)
    ]
    assert found == []
    assert "gate:" in registry.train.stdout
    assert registry.train.stderr == ""
    # MLflow said things; they are in the log file
    log = (registry.settings.root / "logs" / "loopline.log").read_text()
    assert "Detected uv project" in log


def test_models_shows_each_versions_aliases(registry: Registry) -> None:
    versions = {v.version: v.aliases for v in list_versions(registry.settings)}
    assert versions == {"2": [CHALLENGER], "1": [CHAMPION]}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("loopline")), "models"],
        env=registry.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    rows = {
        cells[0]: cells[1]
        for line in result.stdout.splitlines()
        if (cells := [c.strip() for c in line.strip("│ ").split("│")])[0] in "12"
        and len(cells) > 1
    }
    assert rows == {"1": CHAMPION, "2": CHALLENGER}


def test_the_champion_loads_with_loopline_trusted_types(registry: Registry) -> None:
    loaded = load_model(registry.settings)
    assert loaded is not None and loaded.version == "1"
    assert loaded.model.predict_proba is not None


def test_an_artifact_cannot_widen_the_trusted_types(tmp_path: Path) -> None:
    """A model whose MLmodel file trusts types Loopline does not: MLflow's loader
    would trust them (it takes the list from the artifact); Loopline's refuses."""
    model = Pipeline([("scale", Normalizer()), ("tree", DecisionTreeClassifier())])
    model.fit([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [0, 1, 1])
    own_list = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    path = tmp_path / "crafted"
    mlflow.sklearn.save_model(
        model, path, serialization_format="skops", skops_trusted_types=own_list
    )
    with pytest.raises(UntrustedTypesFoundException, match="Untrusted types"):
        load_sklearn_model(str(path))
    # MLflow refuses to deserialise anything in a Loopline process ...
    with pytest.raises(MlflowException, match=PICKLE_SWITCH):
        mlflow.sklearn.load_model(str(path))


def test_a_pickled_model_is_refused(tmp_path: Path) -> None:
    model = DecisionTreeClassifier().fit([[0.0], [1.0]], [0, 1])
    path = tmp_path / "pickled"
    mlflow.sklearn.save_model(model, path, serialization_format="pickle")
    with pytest.raises(ModelLoadError, match="loads no pickles"):
        load_sklearn_model(str(path))
    with pytest.raises(MlflowException, match=PICKLE_SWITCH):
        mlflow.sklearn.load_model(str(path))


def test_every_loopline_process_forbids_deserialisation() -> None:
    """Even when the environment allows it, importing Loopline turns it off, for
    the process and every process it starts (Airflow services, their tasks)."""
    inner = f"import os; print(os.environ[{PICKLE_SWITCH!r}])"
    outer = (
        "import os, subprocess, sys, ml\n"
        f"print(os.environ[{PICKLE_SWITCH!r}], flush=True)\n"
        f"subprocess.run([sys.executable, '-c', {inner!r}], check=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", outer],
        env={**os.environ, PICKLE_SWITCH: "true"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.split() == ["false", "false"]
