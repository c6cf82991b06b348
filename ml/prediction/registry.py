"""The model registry: ``loopline-churn`` with aliases ``champion`` and
``challenger`` (no stages), the promotion gate, manual promotion and rollback.

Every training run registers its model as ``challenger``. The gate re-scores the
current champion on the challenger's own out-of-time test window and promotes the
challenger only if, on that same window, it

* beats the champion by ``gate.min_improvement`` on ``gate.primary_metric``,
* has an expected calibration error of at most ``gate.max_ece``, and
* beats the baseline candidate of its run on the primary metric.

With no champion yet the first two conditions reduce to the calibration check and
the baseline comparison. The decision and its evidence go to a ``gate`` run in the
experiment and to tags on the challenger's model version. :func:`judge_challenger`
decides and records; :func:`promote_gated` then moves ``champion`` only if the
recorded decision says so and the champion is still the one the gate compared
against; :func:`run_gate` does both.

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

import pandas as pd

from ml.config.model import GateConfig, ModelConfig, load_model_config
from ml.config.settings import Settings
from ml.prediction.examples import Window
from ml.prediction.metrics import evaluate

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
class GateDecision:
    """The outcome of the promotion gate and the evidence behind it."""

    promoted: bool
    reasons: list[str]
    challenger_version: str
    champion_version: str | None
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    baseline_metrics: dict[str, float]
    gate_run_id: str = ""
    # the classical rankings on the same window (recency, bgnbd)
    classical_metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Small summary of the decision (no metrics)."""
        return {
            "promote": self.promoted,
            "reasons": list(self.reasons),
            "version": self.challenger_version,
            "champion_version": self.champion_version,
            "gate_run_id": self.gate_run_id,
        }


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


def _client(settings: Settings, config: ModelConfig) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    from ml.prediction.tracking import use_mlflow

    use_mlflow(settings, config)
    return MlflowClient(
        tracking_uri=settings.mlflow_tracking_uri,
        registry_uri=settings.mlflow_tracking_uri,
    )


def _drifted(champion: dict[str, float] | None, gate: GateConfig) -> bool:
    """The champion's calibration on the window is past the limit."""
    return champion is not None and champion["ece"] > gate.max_ece


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    baseline: dict[str, float],
    gate: GateConfig,
    classical: dict[str, dict[str, float]] | None = None,
) -> tuple[bool, list[str]]:
    """The gate's rule on metrics measured on one test window. Returns whether to
    promote and one reason per check (each starting with ``pass`` or ``fail``).

    1. Calibration: ECE <= ``max_ece``, or better than a champion whose own ECE
       on this window is past the limit (the limit must not keep a drifted
       champion that is worse calibrated than its challenger).
    2. Baselines: the primary metric beats the logistic ``baseline`` and every
       ``classical`` ranking (recency, BG/NBD), that is, the best of them.
    3. Champion: the primary metric beats the champion's by ``min_improvement``;
       or, when the champion has drifted out of calibration, the challenger is
       better calibrated and ranks at least as well.
    """
    metric = gate.primary_metric
    reasons: list[str] = []
    ok = True
    ece = challenger["ece"]
    drifted = _drifted(champion, gate)
    if ece <= gate.max_ece:
        reasons.append(f"pass: ece {ece:.4f} <= {gate.max_ece}")
    elif drifted and champion is not None and ece < champion["ece"]:
        reasons.append(
            f"pass: ece {ece:.4f} > {gate.max_ece}, but the champion's "
            f"{champion['ece']:.4f} on this window is worse"
        )
    else:
        ok = False
        reasons.append(f"fail: ece {ece:.4f} > {gate.max_ece}")
    rivals = {"logistic": baseline} | dict(classical or {})
    best_name = max(rivals, key=lambda name: rivals[name][metric])
    best = rivals[best_name][metric]
    others = ", ".join(
        f"{name} {found[metric]:.4f}"
        for name, found in rivals.items()
        if name != best_name
    )
    rest = f" (then {others})" if others else ""
    if challenger[metric] > best:
        reasons.append(
            f"pass: {metric} {challenger[metric]:.4f} beats the best baseline, "
            f"{best_name} {best:.4f}{rest}"
        )
    else:
        ok = False
        reasons.append(
            f"fail: {metric} {challenger[metric]:.4f} does not beat the best "
            f"baseline, {best_name} {best:.4f}"
            + (f" (then {others})" if others else "")
        )
    if champion is None:
        reasons.append("pass: no champion yet")
    elif challenger[metric] >= champion[metric] + gate.min_improvement:
        reasons.append(
            f"pass: {metric} {challenger[metric]:.4f} >= champion "
            f"{champion[metric]:.4f} + {gate.min_improvement}"
        )
    elif drifted and ece < champion["ece"] and challenger[metric] >= champion[metric]:
        reasons.append(
            f"pass: the champion drifted (ece {champion['ece']:.4f}); the "
            f"challenger is better calibrated ({ece:.4f}) and ranks as well "
            f"({metric} {challenger[metric]:.4f} >= {champion[metric]:.4f})"
        )
    else:
        ok = False
        reasons.append(
            f"fail: {metric} {challenger[metric]:.4f} < champion "
            f"{champion[metric]:.4f} + {gate.min_improvement}"
        )
    return ok, reasons


def register_challenger(
    settings: Settings, model_uri: str, run_id: str, config: ModelConfig | None = None
) -> str:
    """Register a logged model as a new version and point ``challenger`` at it."""
    import mlflow

    config = config or load_model_config()
    client = _client(settings, config)
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
    client = _client(settings, config)
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


def _set_champion(
    settings: Settings,
    config: ModelConfig,
    version: str,
    event: str,
    reason: str,
) -> None:
    """Point ``champion`` at ``version``, record it in the history, log the event."""
    client = _client(settings, config)
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


def run_gate(
    settings: Settings,
    version: str,
    x_test: pd.DataFrame,
    y_test: pd.Series,
    value_test: pd.Series,
    baseline_metrics: dict[str, float],
    test_window: Window,
    config: ModelConfig | None = None,
) -> GateDecision:
    """Decide whether challenger ``version`` replaces the champion, on the
    challenger's test window; promote it if so. Logs a ``gate`` run either way."""
    config = config or load_model_config()
    decision = judge_challenger(
        settings,
        version,
        x_test,
        y_test,
        value_test,
        baseline_metrics,
        test_window,
        config,
    )
    promote_gated(settings, version, config)
    return decision


def judge_challenger(
    settings: Settings,
    version: str,
    x_test: pd.DataFrame,
    y_test: pd.Series,
    value_test: pd.Series,
    baseline_metrics: dict[str, float],
    test_window: Window,
    config: ModelConfig | None = None,
    classical: dict[str, dict[str, float]] | None = None,
) -> GateDecision:
    """The gate without the promotion: measure challenger ``version`` and the
    current champion on the challenger's test window and decide (``classical``:
    the recency and BG/NBD rankings' metrics on that window, see :func:`decide`).

    The decision and its evidence go to a ``gate`` run and to tags on the version
    (``gate_decision``, ``gate_run_id``, ``gate_reasons`` and
    ``gate_champion_version``, the champion it was compared with);
    :func:`promote_gated` acts on them.
    """
    import mlflow

    from ml.prediction.tracking import use_mlflow

    config = config or load_model_config()
    client = _client(settings, config)
    challenger = load_model(settings, version=version, config=config)
    assert challenger is not None
    challenger_metrics = evaluate(
        y_test,
        challenger.model.predict_proba(x_test[challenger.input_columns])[:, 1],
        value_test,
        config.business,
        config.gate.ece_bins,
    )
    champion = load_model(settings, alias=CHAMPION, config=config)
    champion_metrics: dict[str, float] | None = None
    if champion is not None:
        missing = [c for c in champion.input_columns if c not in x_test.columns]
        if missing:
            raise ModelLoadError(
                f"champion version {champion.version} needs columns {missing} "
                "that the test window does not have"
            )
        champion_metrics = evaluate(
            y_test,
            champion.model.predict_proba(x_test[champion.input_columns])[:, 1],
            value_test,
            config.business,
            config.gate.ece_bins,
        )
    promoted, reasons = decide(
        challenger_metrics, champion_metrics, baseline_metrics, config.gate, classical
    )
    experiment_id = use_mlflow(settings, config)
    champion_version = champion.version if champion is not None else None
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"gate-v{version}"
    ) as run:
        mlflow.set_tags(
            {
                "step": "gate",
                "challenger_version": version,
                "champion_version": champion_version or "",
                "decision": "promote" if promoted else "reject",
                "test_window": f"{test_window.start}..{test_window.end}",
                "primary_metric": config.gate.primary_metric,
            }
        )
        mlflow.log_metrics(
            {f"challenger_{k}": v for k, v in challenger_metrics.items()}
        )
        mlflow.log_metrics({f"baseline_{k}": v for k, v in baseline_metrics.items()})
        for name, found in (classical or {}).items():
            mlflow.log_metrics({f"{name}_{k}": v for k, v in found.items()})
        if champion_metrics is not None:
            mlflow.log_metrics(
                {f"champion_{k}": v for k, v in champion_metrics.items()}
            )
        mlflow.log_dict(
            {
                "promoted": promoted,
                "reasons": reasons,
                "test_window": [str(test_window.start), str(test_window.end)],
                "challenger": {"version": version, "metrics": challenger_metrics},
                "champion": {"version": champion_version, "metrics": champion_metrics},
                "baseline": {"metrics": baseline_metrics},
                "classical": classical or {},
            },
            "gate.json",
        )
        gate_run_id = str(run.info.run_id)
    name = config.registered_model
    client.set_model_version_tag(
        name, version, "gate_decision", "promote" if promoted else "reject"
    )
    client.set_model_version_tag(name, version, "gate_run_id", gate_run_id)
    client.set_model_version_tag(name, version, "gate_reasons", "; ".join(reasons))
    client.set_model_version_tag(
        name, version, GATE_CHAMPION_TAG, champion_version or ""
    )
    return GateDecision(
        promoted=promoted,
        reasons=reasons,
        challenger_version=version,
        champion_version=champion_version,
        challenger_metrics=challenger_metrics,
        champion_metrics=champion_metrics,
        baseline_metrics=baseline_metrics,
        gate_run_id=gate_run_id,
        classical_metrics=dict(classical or {}),
    )


def promote_gated(
    settings: Settings, version: str, config: ModelConfig | None = None
) -> Promotion:
    """Make ``version`` the champion if the gate decided to promote it.

    Acts on the decision recorded on the version, so it is safe to repeat: a version
    that already is the champion is left alone (no second history entry), and a
    version the gate rejected changes nothing. If the champion has moved since the
    gate compared against it, the decision is stale and :class:`RegistryError` is
    raised instead of overwriting the newer champion.
    """
    config = config or load_model_config()
    client = _client(settings, config)
    name = config.registered_model
    tags = client.get_model_version(name, version).tags or {}
    current = alias_version(settings, CHAMPION, config)
    decision = tags.get("gate_decision")
    if decision != "promote":
        reason = f"gate decision is {decision or 'missing'}"
        return Promotion(False, current, reason)
    if current == version:
        return Promotion(False, current, "already the champion")
    judged_against = tags.get(GATE_CHAMPION_TAG) or None
    if current != judged_against:
        raise RegistryError(
            f"the gate compared version {version} with champion "
            f"{judged_against or 'none'}, but the champion is now {current}; "
            "run the gate again"
        )
    _set_champion(settings, config, version, "promote", "passed the gate")
    return Promotion(True, version, "passed the gate")


def recorded_gate(
    settings: Settings, version: str, config: ModelConfig | None = None
) -> GateDecision | None:
    """The gate decision recorded for ``version``, or None if it was never gated."""
    import mlflow

    config = config or load_model_config()
    client = _client(settings, config)
    tags = client.get_model_version(config.registered_model, version).tags or {}
    gate_run_id = tags.get("gate_run_id")
    if not gate_run_id:
        return None
    raw = mlflow.artifacts.load_dict(f"runs:/{gate_run_id}/gate.json")
    return GateDecision(
        promoted=bool(raw["promoted"]),
        reasons=list(raw["reasons"]),
        challenger_version=str(raw["challenger"]["version"]),
        champion_version=raw["champion"]["version"],
        challenger_metrics=dict(raw["challenger"]["metrics"]),
        champion_metrics=raw["champion"]["metrics"],
        baseline_metrics=dict(raw["baseline"]["metrics"]),
        gate_run_id=gate_run_id,
    )


def promote(
    settings: Settings, version: str, reason: str, config: ModelConfig | None = None
) -> None:
    """Make ``version`` the champion by hand (bypassing the gate), with a reason."""
    from mlflow.exceptions import MlflowException

    config = config or load_model_config()
    client = _client(settings, config)
    try:
        client.get_model_version(config.registered_model, version)
    except MlflowException as error:
        raise RegistryError(
            f"{config.registered_model} has no version {version}"
        ) from error
    _set_champion(settings, config, str(version), "promote", reason)


def rollback(
    settings: Settings, reason: str = "rollback", config: ModelConfig | None = None
) -> str:
    """Point ``champion`` back at the previous champion; returns its version."""
    config = config or load_model_config()
    client = _client(settings, config)
    history = _history(client, config.registered_model)
    if len(history) < 2:
        raise RegistryError("no previous champion to roll back to")
    previous = history[-2]
    _set_champion(settings, config, previous, "rollback", reason)
    return previous


def list_versions(
    settings: Settings, config: ModelConfig | None = None
) -> list[VersionInfo]:
    """Every registered version, newest first, with its aliases and tags."""
    config = config or load_model_config()
    client = _client(settings, config)
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
    client = _client(settings, config)
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
    client = _client(settings, config)
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
    client = _client(settings, config)
    run_id = _version_run_id(client, version, config)
    raw = client.get_run(str(run_id)).data.params.get("as_of") if run_id else None
    return date.fromisoformat(raw) if raw else None
