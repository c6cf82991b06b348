"""The decision policy: expected value, allocation, holdout, review and fallback.

Pure functions over numpy and pandas; nothing here touches the warehouse, MLflow or
Airflow. The names below load on first use, so importing ``ml.policy`` (for example
for its config) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml.policy.config import PolicyConfig, load_policy_config
    from ml.policy.engine import (
        decide,
        fallback_reasons,
        score_sanity,
        summarize,
    )
    from ml.policy.value import ValueEstimator, value_at_risk

_EXPORTS = {
    "PolicyConfig": "ml.policy.config",
    "load_policy_config": "ml.policy.config",
    "decide": "ml.policy.engine",
    "fallback_reasons": "ml.policy.engine",
    "score_sanity": "ml.policy.engine",
    "summarize": "ml.policy.engine",
    "ValueEstimator": "ml.policy.value",
    "value_at_risk": "ml.policy.value",
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
    raise AttributeError(f"module 'ml.policy' has no attribute {name!r}")
