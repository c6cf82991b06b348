"""The retrain trigger's rules as configured (``retrain_trigger`` in loopline.yml).

The rules themselves are applied by :func:`ml.feedback.trigger.evaluate_trigger`;
this schema lives in the configuration package so that
:class:`ml.config.settings.Settings` can embed it without importing the feedback
layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TriggerConfig(BaseModel):
    """The retrain rules (``retrain_trigger`` in ``config/loopline.yml``)."""

    model_config = ConfigDict(extra="forbid")

    # Decay: realized AUC below champion test AUC − auc_drop on k of the last n
    # score dates.
    auc_drop: float = Field(default=0.05, ge=0.0)
    k: int = Field(default=3, ge=1)
    n: int = Field(default=5, ge=1)
    # Drift: PSI above this on the score or on a key feature (empty = any feature).
    psi_threshold: float = Field(default=0.2, gt=0.0)
    psi_features: list[str] = Field(default_factory=list)
    # Calibration: expected calibration error above this on the latest score date.
    max_ece: float = Field(default=0.08, gt=0.0)
    # A score date counts for decay and calibration with at least this many labels.
    min_labels: int = Field(default=500, ge=0)
    # Days after a retrain during which the trigger does not fire.
    cooldown_days: int = Field(default=14, ge=0)

    @model_validator(mode="after")
    def _k_within_n(self) -> TriggerConfig:
        if self.k > self.n:
            raise ValueError(f"k ({self.k}) must not exceed n ({self.n})")
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> TriggerConfig:
        """Validate a mapping (for example a YAML section); None gives defaults."""
        return cls.model_validate(dict(data or {}))
