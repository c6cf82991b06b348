"""The decision policy: expected value, allocation, holdout, review and fallback.

Pure functions over numpy and pandas; nothing here touches the warehouse, MLflow or
Airflow. The names below load on first use, so importing ``ml.decision`` (for example
for its config) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml.config.policy import PolicyConfig, load_policy_config
    from ml.decision.engine import (
        decide,
        fallback_reasons,
        score_sanity,
        summarize,
    )
    from ml.decision.value import ValueEstimator, value_at_risk

_EXPORTS = {
    "PolicyConfig": "ml.config.policy",
    "load_policy_config": "ml.config.policy",
    "decide": "ml.decision.engine",
    "fallback_reasons": "ml.decision.engine",
    "score_sanity": "ml.decision.engine",
    "summarize": "ml.decision.engine",
    "ValueEstimator": "ml.decision.value",
    "value_at_risk": "ml.decision.value",
}
__all__ = [
    "PolicyConfig",
    "ValueEstimator",
    "decide",
    "fallback_reasons",
    "load_policy_config",
    "score_sanity",
    "summarize",
    "value_at_risk",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ml.decision' has no attribute {name!r}")
