"""Training of the churn model: data split, candidates, metrics, MLflow logging.

``train`` and ``TrainResult`` are loaded on first use, so importing a light
submodule (such as ``ml.train.cli`` for the command line) does not pull in
scikit-learn, pandas and MLflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml.train.core import TrainResult, train

__all__ = ["TrainResult", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ml.train import core

        return getattr(core, name)
    raise AttributeError(f"module 'ml.train' has no attribute {name!r}")
