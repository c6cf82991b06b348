"""The model registry: ``loopline-churn`` with aliases ``champion`` and
``challenger`` (no stages), loading a version, manual promotion and rollback.

Every training run registers its model as ``challenger``; the promotion gate
(:mod:`ml.prediction.gate`) decides whether it replaces the champion. Models load
with skops and Loopline's own list of trusted types (:func:`load_sklearn_model`),
never with the list a model artifact carries.

The champion history is a JSON list of versions in the registered model's tag
``champion_history``; :func:`rollback` pops it and points ``champion`` back at the
previous version. Promotions and rollbacks are logged as ``registry`` runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml.config.model import ModelConfig, load_model_config
from ml.config.settings import Settings

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
GATE_CHAMPION_TAG = "gate_champion_version"


class RegistryError(RuntimeError):
    """A registry operation cannot be done (unknown version, nothing to roll back)."""


class ModelLoadError(RuntimeError):
    """A registered model exists but cannot be loaded."""


@dataclass(frozen=True)
class Promotion:
    """What :func:`promote_gated` did with a gated version."""

    promoted: bool
    champion_version: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "promoted": self.promoted,
            "champion_version": self.champion_version,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class LoadedModel:
    """A registered model ready to predict."""

    model: Any
    version: str
    alias: str | None
    input_columns: list[str]
    input_types: dict[str, str]


@dataclass(frozen=True)
class VersionInfo:
    """One registered version, for listings."""

    version: str
    run_id: str
    aliases: list[str]
    created_at: datetime
    tags: dict[str, str] = field(default_factory=dict)


def registry_client(settings: Settings, config: ModelConfig) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    from ml.prediction.tracking import use_mlflow

    use_mlflow(settings, config)
    return MlflowClient(
        tracking_uri=settings.mlflow_tracking_uri,
        registry_uri=settings.mlflow_tracking_uri,
    )


def register_challenger(
    settings: Settings, model_uri: str, run_id: str, config: ModelConfig | None = None
) -> str:
    """Register a logged model as a new version and point ``challenger`` at it."""
    import mlflow

    config = config or load_model_config()
    client = registry_client(settings, config)
    version = mlflow.register_model(
        model_uri, config.registered_model, tags={"run_id": run_id}
    ).version
    client.set_registered_model_alias(config.registered_model, CHALLENGER, version)
    return str(version)


def alias_version(
    settings: Settings, alias: str = CHAMPION, config: ModelConfig | None = None
) -> str | None:
    """The version an alias points at, or None when it is not set."""
    from mlflow.exceptions import MlflowException

    config = config or load_model_config()
    client = registry_client(settings, config)
    try:
        found = client.get_model_version_by_alias(config.registered_model, alias)
    except MlflowException:
        return None
    return str(found.version)


def load_model(
    settings: Settings,
    alias: str | None = CHAMPION,
    version: str | None = None,
    config: ModelConfig | None = None,
) -> LoadedModel | None:
    """Load a registered version (by ``version``, else by ``alias``).

    Returns None when the alias is not set; raises :class:`ModelLoadError` when the
    version exists but cannot be loaded or carries no input signature.
    """

    config = config or load_model_config()
    if version is None:
        if alias is None:
            raise ValueError("give an alias or a version")
        version = alias_version(settings, alias, config)
        if version is None:
            return None
    model, columns, types = _load_version(
        settings.mlflow_tracking_uri, config.registered_model, str(version)
    )
    return LoadedModel(
        model=model,
        version=str(version),
        alias=alias,
        input_columns=list(columns),
        input_types=dict(types),
    )


@lru_cache(maxsize=4)
def _load_version(
    tracking_uri: str, name: str, version: str
) -> tuple[Any, tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Deserialise one registered version (cached: a version never changes, and
    the nightly score and decide steps load the same one when they share a
    process, as in ``loopline demo``)."""
    import mlflow

    from ml.config.output import quiet_mlflow

    quiet_mlflow()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    uri = f"models:/{name}/{version}"
    try:
        info = mlflow.models.get_model_info(uri)
        model = load_sklearn_model(uri)
    except Exception as error:  # any failure to read or deserialise the model
        raise ModelLoadError(
            f"cannot load {name} version {version}: {error}"
        ) from error
    signature = info.signature
    if signature is None or signature.inputs is None:
        raise ModelLoadError(f"{name} version {version} has no input signature")
    spec = signature.inputs.to_dict()
    return (
        model,
        tuple(item["name"] for item in spec),
        tuple((item["name"], item["type"]) for item in spec),
    )


def trusted_types() -> list[str]:
    """The types Loopline's models may hold, trusted when one is deserialised:
    the union of both candidates' lists (:mod:`ml.prediction.models`)."""
    from ml.prediction.models import BASELINE_SKOPS_TRUSTED_TYPES, SKOPS_TRUSTED_TYPES

    return sorted({*SKOPS_TRUSTED_TYPES, *BASELINE_SKOPS_TRUSTED_TYPES})


def load_sklearn_model(model_uri: str) -> Any:
    """Load a logged scikit-learn model with skops and Loopline's own list of
    trusted types.

    ``mlflow.sklearn.load_model`` would trust the types listed in the artifact's
    own MLmodel file (a crafted artifact can list anything), and it loads only
    when ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is true, which Loopline sets
    false (:mod:`ml.config.settings`). A model not saved with skops is refused.
    """
    import warnings

    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    local = Path(download_artifacts(artifact_uri=model_uri))
    flavor = Model.load(local / "MLmodel").flavors.get("sklearn") or {}
    if flavor.get("serialization_format") != "skops":
        raise ModelLoadError(
            f"{model_uri} is not a skops-serialised scikit-learn model "
            f"({flavor.get('serialization_format') or 'no sklearn flavor'}); "
            "Loopline loads no pickles"
        )
    with warnings.catch_warnings():
        # skops looks up the module of every function it knows (on import, and
        # for each type it checks) by asking every loaded module for the name;
        # Airflow's modules, when loaded in the same process, warn about each
        # deprecated name on the way: thousands of lines
        warnings.simplefilter("ignore")
        import skops.io

        return skops.io.load(local / flavor["pickled_model"], trusted=trusted_types())


def _log_event(
    settings: Settings, config: ModelConfig, name: str, tags: dict[str, str]
) -> str:
    import mlflow

    from ml.prediction.tracking import use_mlflow

    experiment_id = use_mlflow(settings, config)
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.set_tags({"step": "registry", **tags})
    return str(run.info.run_id)


def _history(client: MlflowClient, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags or {}
    return list(json.loads(tags.get(HISTORY_TAG, "[]")))


def set_champion(
    settings: Settings,
    config: ModelConfig,
    version: str,
    event: str,
    reason: str,
) -> None:
    """Point ``champion`` at ``version``, record it in the history, log the event."""
    client = registry_client(settings, config)
    name = config.registered_model
    previous = alias_version(settings, CHAMPION, config)
    history = _history(client, name)
    if event == "rollback":
        history = history[:-1]
    else:
        history.append(version)
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, version, f"{event}_at", stamp)
    client.set_model_version_tag(name, version, f"{event}_reason", reason)
    _log_event(
        settings,
        config,
        f"{event}-v{version}",
        {
            "event": event,
            "reason": reason,
            "from_version": previous or "",
            "to_version": version,
            "at": stamp,
        },
    )


def promote(
    settings: Settings, version: str, reason: str, config: ModelConfig | None = None
) -> None:
    """Make ``version`` the champion by hand (bypassing the gate), with a reason."""
    from mlflow.exceptions import MlflowException

    config = config or load_model_config()
    client = registry_client(settings, config)
    try:
        client.get_model_version(config.registered_model, version)
    except MlflowException as error:
        raise RegistryError(
            f"{config.registered_model} has no version {version}"
        ) from error
    set_champion(settings, config, str(version), "promote", reason)


def rollback(
    settings: Settings, reason: str = "rollback", config: ModelConfig | None = None
) -> str:
    """Point ``champion`` back at the previous champion; returns its version."""
    config = config or load_model_config()
    client = registry_client(settings, config)
    history = _history(client, config.registered_model)
    if len(history) < 2:
        raise RegistryError("no previous champion to roll back to")
    previous = history[-2]
    set_champion(settings, config, previous, "rollback", reason)
    return previous


def list_versions(
    settings: Settings, config: ModelConfig | None = None
) -> list[VersionInfo]:
    """Every registered version, newest first, with its aliases and tags."""
    config = config or load_model_config()
    client = registry_client(settings, config)
    name = config.registered_model
    found = client.search_model_versions(f"name = '{name}'")
    # search_model_versions leaves each version's aliases empty; the registered
    # model knows them
    aliases: dict[str, list[str]] = {}
    if found:
        for alias, version in (client.get_registered_model(name).aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
    out = [
        VersionInfo(
            version=str(v.version),
            run_id=str(v.run_id or ""),
            aliases=sorted(aliases.get(str(v.version), [])),
            created_at=datetime.fromtimestamp(v.creation_timestamp / 1000, UTC),
            tags=dict(v.tags or {}),
        )
        for v in found
    ]
    return sorted(out, key=lambda v: int(v.version), reverse=True)


def _version_run_id(client: MlflowClient, version: str, config: ModelConfig) -> str:
    """The id of the training run that logged ``version``."""
    return str(client.get_model_version(config.registered_model, version).run_id or "")


def champion_metrics(
    settings: Settings, config: ModelConfig | None = None
) -> tuple[str, dict[str, float]] | None:
    """The champion's version and the test-window metrics its training run logged
    (``test_*`` without the prefix), or None when there is no champion."""
    config = config or load_model_config()
    version = alias_version(settings, CHAMPION, config)
    if version is None:
        return None
    client = registry_client(settings, config)
    run_id = _version_run_id(client, version, config)
    logged = client.get_run(str(run_id)).data.metrics if run_id else {}
    prefix = "test_"
    return version, {
        k[len(prefix) :]: float(v) for k, v in logged.items() if k.startswith(prefix)
    }


def load_reference(
    settings: Settings, version: str, config: ModelConfig | None = None
) -> dict[str, Any] | None:
    """The training reference (:mod:`ml.prediction.reference`) logged with ``version``,
    or None for a version trained before references were stored."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from ml.prediction.reference import REFERENCE_FILE

    # one small JSON file: no progress bar
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    config = config or load_model_config()
    client = registry_client(settings, config)
    run_id = _version_run_id(client, version, config)
    try:
        loaded = mlflow.artifacts.load_dict(f"runs:/{run_id}/{REFERENCE_FILE}")
    except (MlflowException, OSError):
        return None
    return dict(loaded)


def trained_as_of(
    settings: Settings, version: str, config: ModelConfig | None = None
) -> date | None:
    """The training date (``as_of`` param of its run) of ``version``."""
    config = config or load_model_config()
    client = registry_client(settings, config)
    run_id = _version_run_id(client, version, config)
    raw = client.get_run(str(run_id)).data.params.get("as_of") if run_id else None
    return date.fromisoformat(raw) if raw else None
