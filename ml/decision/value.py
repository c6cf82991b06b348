"""Value at risk: a customer's expected spend over the next horizon if they stay.

The default estimate is deliberately transparent: trailing spend scaled to the horizon,
the recent window blended with a longer one (see ``value_at_risk`` in
``config/policy.yml``)::

    value = (1 - w) * spend_90d * H / 90 + w * spend_180d * H / 180

Anything that implements :class:`ValueEstimator` (for example a fitted spend model)
can replace it without touching the engine, which only sees the resulting column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from ml.config.policy import PolicyConfig, ValueAtRiskConfig


class ValueEstimator(Protocol):
    """Estimates each customer's spend over the next ``horizon_days`` if they stay."""

    def estimate(self, features: pd.DataFrame, horizon_days: int) -> np.ndarray:
        """One non-negative float per row of ``features``, in row order."""
        ...


def _spend(features: pd.DataFrame, column: str) -> np.ndarray:
    if column not in features.columns:
        raise KeyError(f"value_at_risk needs the feature column {column!r}")
    spend = pd.to_numeric(features[column], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    # Missing spend is no spend; refunds never make a customer worth less than 0.
    return np.clip(np.nan_to_num(spend, nan=0.0), 0.0, None)


@dataclass(frozen=True)
class TrailingSpend:
    """Trailing spend scaled to the horizon, optionally blended with a longer window."""

    window_column: str = "spend_90d"
    window_days: int = 90
    blend_column: str | None = "spend_180d"
    blend_days: int = 180
    blend_weight: float = 0.5

    def estimate(self, features: pd.DataFrame, horizon_days: int) -> np.ndarray:
        """Expected spend over ``horizon_days`` from the trailing windows."""
        recent = _spend(features, self.window_column) * (
            horizon_days / self.window_days
        )
        if self.blend_column is None or self.blend_weight == 0.0:
            return recent
        longer = _spend(features, self.blend_column) * (horizon_days / self.blend_days)
        return (1.0 - self.blend_weight) * recent + self.blend_weight * longer


def estimator_from_config(config: PolicyConfig | ValueAtRiskConfig) -> ValueEstimator:
    """The estimator ``config.value_at_risk`` (or a bare value config) describes."""
    value_config = config.value_at_risk if isinstance(config, PolicyConfig) else config
    if value_config.method == "trailing_spend":
        return TrailingSpend(
            window_column=value_config.window_column,
            window_days=value_config.window_days,
            blend_column=value_config.blend_column,
            blend_days=value_config.blend_days,
            blend_weight=value_config.blend_weight,
        )
    raise ValueError(f"unknown value_at_risk method {value_config.method!r}")


def value_at_risk(
    features: pd.DataFrame,
    config: PolicyConfig | ValueAtRiskConfig,
    horizon_days: int,
    estimator: ValueEstimator | None = None,
) -> np.ndarray:
    """Each customer's value at risk over ``horizon_days`` (float64, row order).

    ``estimator`` overrides the configured method, so a model can be swapped in.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    chosen = estimator or estimator_from_config(config)
    values = np.asarray(chosen.estimate(features, horizon_days), dtype=np.float64)
    if values.shape != (len(features),):
        raise ValueError(
            f"value estimator returned shape {values.shape}, expected {len(features)}"
        )
    return values
