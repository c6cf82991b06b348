"""MLflow wiring: where runs and artifacts go, and what every run records.

Nothing here runs on import; :func:`use_mlflow` points the MLflow client at the
settings' SQLite store when a step starts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from ml.config import REPO_ROOT, Settings
from ml.train.config import ModelConfig


def use_mlflow(settings: Settings, config: ModelConfig) -> str:
    """Point MLflow at the settings' store and return the experiment id.

    The experiment keeps its artifacts under ``settings.mlartifacts_dir`` (a local
    path), whatever the default artifact root of the tracking store is.
    """
    settings.mlartifacts_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(config.experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = (settings.mlartifacts_dir / config.experiment).resolve().as_uri()
    return str(client.create_experiment(config.experiment, artifact_location=location))


def git_sha(repo: Path = REPO_ROOT) -> str:
    """The commit the code runs from, or ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    return sha or "unknown"


def dbt_manifest_hash(settings: Settings) -> str:
    """The dbt manifest hash when a dbt target exists, else ``unknown``."""
    if not (settings.dbt_target_dir / "manifest.json").exists():
        return "unknown"
    from ml.transform import manifest_hash

    try:
        return manifest_hash(settings)
    except (OSError, ValueError, KeyError):
        return "unknown"
