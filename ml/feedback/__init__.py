"""The feedback layer: measured uplift, model and drift monitors, the retrain trigger.

Pure functions over numpy and pandas; nothing here touches the warehouse, MLflow or
Airflow. The names below load on first use, so importing ``ml.feedback`` (for example
for :class:`TriggerConfig`) does not pull in scipy or scikit-learn.

* :mod:`ml.feedback.uplift`: treated against holdout per group, with intervals, and
  the Beta–Binomial update of each action's uplift prior;
* :mod:`ml.feedback.realized`: realized model metrics, calibration by decile, PSI
  drift against the training reference;
* :mod:`ml.feedback.trigger`: the configurable retrain rules.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml.feedback.realized import (
        calibration_by_decile,
        drift_report,
        realized_model_metrics,
    )
    from ml.feedback.trigger import TriggerConfig, TriggerDecision, evaluate_trigger
    from ml.feedback.uplift import (
        Posterior,
        arm_comparison,
        posterior_uplift,
        update_parameters,
    )

_EXPORTS = {
    "Posterior": "ml.feedback.uplift",
    "arm_comparison": "ml.feedback.uplift",
    "posterior_uplift": "ml.feedback.uplift",
    "update_parameters": "ml.feedback.uplift",
    "calibration_by_decile": "ml.feedback.realized",
    "drift_report": "ml.feedback.realized",
    "realized_model_metrics": "ml.feedback.realized",
    "TriggerConfig": "ml.feedback.trigger",
    "TriggerDecision": "ml.feedback.trigger",
    "evaluate_trigger": "ml.feedback.trigger",
}
__all__ = [
    "Posterior",
    "TriggerConfig",
    "TriggerDecision",
    "arm_comparison",
    "calibration_by_decile",
    "drift_report",
    "evaluate_trigger",
    "posterior_uplift",
    "realized_model_metrics",
    "update_parameters",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ml.feedback' has no attribute {name!r}")
