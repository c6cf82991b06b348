"""MLflow wiring: where runs and artifacts go, and what every run records.

Nothing here runs on import; :func:`use_mlflow` points the MLflow client at the
settings' tracking URI (the SQLite store under ``LOOPLINE_HOME`` by default, an MLflow
server in the compose stack) when a step starts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from ml.config.model import ModelConfig
from ml.config.settings import REPO_ROOT, Settings


def use_mlflow(settings: Settings, config: ModelConfig) -> str:
    """Point MLflow at the settings' store and return the experiment id.

    With a store the client opens itself (SQLite by default) the experiment keeps
    its artifacts under ``settings.mlartifacts_dir``, whatever the store's default
    artifact root is. With a tracking server the server chooses (the compose
    stack's server proxies them to its own volume), so every container reads the
    same artifacts.
    """
    from ml.config.output import quiet_mlflow

    quiet_mlflow()  # in a loopline command: MLflow's messages to its log file
    uri = settings.mlflow_tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(config.experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    if is_tracking_server(uri):
        return str(client.create_experiment(config.experiment))
    settings.mlartifacts_dir.mkdir(parents=True, exist_ok=True)
    location = (settings.mlartifacts_dir / config.experiment).resolve().as_uri()
    return str(client.create_experiment(config.experiment, artifact_location=location))


def is_tracking_server(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` names an MLflow server (not a store the client
    opens itself, like ``sqlite:///...``)."""
    return tracking_uri.startswith(("http://", "https://", "databricks"))


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
    from ml.data.dbt import manifest_hash

    try:
        return manifest_hash(settings)
    except (OSError, ValueError, KeyError):
        return "unknown"
