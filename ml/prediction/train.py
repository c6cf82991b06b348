"""``train``: fit, calibrate, evaluate, log and register one churn model.

One call runs the steps of :mod:`ml.prediction.training` in order: it persists the
training set, trains both candidates on the train window and calibrates them on
validation, evaluates them on the out-of-time test window, logs everything to MLflow,
registers the gradient-boosting model as ``challenger`` and runs the promotion gate. The
``loopline_retrain`` DAG runs the same steps as separate tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from ml.config.model import ModelConfig, load_model_config
from ml.config.settings import Settings
from ml.prediction import training as steps
from ml.prediction.examples import SplitWindows
from ml.prediction.training import (
    build_training_set,
    evaluate,
    promote,
    train_candidates,
)

if TYPE_CHECKING:
    from ml.prediction.gate import GateDecision

__all__ = ["TrainResult", "train"]


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced."""

    run_id: str
    as_of: date
    windows: SplitWindows
    rows: dict[str, int]
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    model_version: str
    backtest: list[dict[str, float]] = field(default_factory=list)
    gate: GateDecision | None = None

    @property
    def promoted(self) -> bool:
        return self.gate is not None and self.gate.promoted


def train(
    settings: Settings,
    as_of: date,
    config: ModelConfig | None = None,
    gate: bool = True,
) -> TrainResult:
    """Train on the labels matured by ``as_of``, log the run, register the model as
    challenger and (unless ``gate`` is false) run the promotion gate and promote
    the challenger if it passes."""
    config = config or load_model_config()
    training = build_training_set(settings, as_of, config)
    candidates = train_candidates(settings, training.path, config)
    evaluation = evaluate(
        settings,
        training.path,
        candidates.run_id,
        candidates.model_uri,
        candidates.baseline_uri,
        config,
    )
    result = TrainResult(
        run_id=evaluation.run_id,
        as_of=as_of,
        windows=training.windows,
        rows=training.rows,
        metrics=evaluation.metrics,
        baseline_metrics=evaluation.baseline_metrics,
        model_version=evaluation.model_version,
        backtest=evaluation.backtest,
    )
    if not gate:
        return result
    decision = steps.gate(
        settings, training.path, evaluation.run_id, evaluation.model_version, config
    )
    promote(settings, evaluation.model_version, config)
    return TrainResult(**{**result.__dict__, "gate": decision})
