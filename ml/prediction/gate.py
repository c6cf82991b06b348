"""The promotion gate: does the challenger replace the champion?

The gate re-scores the current champion on the challenger's own out-of-time test
window and promotes the challenger only if, on that same window, it

* beats the champion by ``gate.min_improvement`` on ``gate.primary_metric``,
* has an expected calibration error of at most ``gate.max_ece`` (a drifted
  champion, itself past that limit on the window, does not block a better
  calibrated challenger that ranks at least as well), and
* beats the best baseline on the primary metric: the logistic candidate of its
  run, recency and BG/NBD.

With no champion yet the first two conditions reduce to the calibration check and
the baseline comparison. :func:`gate` is the verdict alone (pure);
:func:`judge_challenger` decides and records the decision and its evidence in a
``gate`` run of the experiment and in tags on the challenger's model version;
:func:`promote_gated` then moves ``champion`` only if the recorded decision says so
and the champion is still the one the gate compared against; :func:`run_gate` does
both. The registry itself (aliases, loading, manual promotion and rollback) is
:mod:`ml.prediction.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ml.config.model import GateConfig, ModelConfig, load_model_config
from ml.config.settings import Settings
from ml.prediction.examples import Window
from ml.prediction.metrics import evaluate
from ml.prediction.registry import (
    CHAMPION,
    GATE_CHAMPION_TAG,
    ModelLoadError,
    Promotion,
    RegistryError,
    alias_version,
    load_model,
    registry_client,
    set_champion,
)


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


def drifted(champion: dict[str, float] | None, gate: GateConfig) -> bool:
    """The champion's calibration on the window is past the limit."""
    return champion is not None and champion["ece"] > gate.max_ece


def gate(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    baseline: dict[str, float],
    rules: GateConfig,
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
    metric = rules.primary_metric
    reasons: list[str] = []
    ok = True
    ece = challenger["ece"]
    champion_drifted = drifted(champion, rules)
    if ece <= rules.max_ece:
        reasons.append(f"pass: ece {ece:.4f} <= {rules.max_ece}")
    elif champion_drifted and champion is not None and ece < champion["ece"]:
        reasons.append(
            f"pass: ece {ece:.4f} > {rules.max_ece}, but the champion's "
            f"{champion['ece']:.4f} on this window is worse"
        )
    else:
        ok = False
        reasons.append(f"fail: ece {ece:.4f} > {rules.max_ece}")
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
    elif challenger[metric] >= champion[metric] + rules.min_improvement:
        reasons.append(
            f"pass: {metric} {challenger[metric]:.4f} >= champion "
            f"{champion[metric]:.4f} + {rules.min_improvement}"
        )
    elif (
        champion_drifted
        and ece < champion["ece"]
        and challenger[metric] >= champion[metric]
    ):
        reasons.append(
            f"pass: the champion drifted (ece {champion['ece']:.4f}); the "
            f"challenger is better calibrated ({ece:.4f}) and ranks as well "
            f"({metric} {challenger[metric]:.4f} >= {champion[metric]:.4f})"
        )
    else:
        ok = False
        reasons.append(
            f"fail: {metric} {challenger[metric]:.4f} < champion "
            f"{champion[metric]:.4f} + {rules.min_improvement}"
        )
    return ok, reasons


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
    client = registry_client(settings, config)
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
    promoted, reasons = gate(
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
    client = registry_client(settings, config)
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
    set_champion(settings, config, version, "promote", "passed the gate")
    return Promotion(True, version, "passed the gate")


def recorded_gate(
    settings: Settings, version: str, config: ModelConfig | None = None
) -> GateDecision | None:
    """The gate decision recorded for ``version``, or None if it was never gated."""
    import mlflow

    config = config or load_model_config()
    client = registry_client(settings, config)
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
