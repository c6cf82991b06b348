"""Training of the churn model: data split, candidates, metrics, MLflow logging."""

from ml.train.core import TrainResult, train

__all__ = ["TrainResult", "train"]
