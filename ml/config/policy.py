"""The decision policy in ``config/policy.yml``, as a typed object.

Every knob is explained in the YAML file itself. Unknown keys are rejected, so a typo
in the policy fails loudly instead of silently falling back to a default.
``policy_version`` is the first 16 hex characters of the sha256 of the file's bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ml.config.files import CONFIG_DIR, REPO_ROOT, config_path, read_yaml
from ml.contract.schema import ACTIONS, CHANNELS

POLICY_CONFIG = "policy.yml"
# the repository's copy
POLICY_CONFIG_FILE = REPO_ROOT / CONFIG_DIR / POLICY_CONFIG

Ranking = Literal["ev", "ev_per_cost", "priced"]
DEFAULT_RANKINGS: tuple[Ranking, ...] = ("ev", "ev_per_cost", "priced")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UpliftPrior(_Strict):
    """Beta prior on the share of would-be churners an action saves."""

    mean: float = Field(ge=0.0, le=1.0)
    strength: float = Field(default=20.0, gt=0.0)

    @property
    def alpha(self) -> float:
        return self.mean * self.strength

    @property
    def beta(self) -> float:
        return (1.0 - self.mean) * self.strength


class Eligibility(_Strict):
    """Who may get an action: a value floor and optional segment lists."""

    min_value_at_risk: float = 0.0
    plans: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)


class ActionConfig(_Strict):
    """One action, its channel, expected cost per contact and uplift prior."""

    name: str
    channel: str
    unit_cost: float = Field(ge=0.0)
    redeem_cost: float = Field(default=0.0, ge=0.0)
    redeem_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    uplift: UpliftPrior
    eligibility: Eligibility = Field(default_factory=Eligibility)

    @property
    def cost(self) -> float:
        """Expected cost of one contact: unit cost plus the expected redemption."""
        return self.unit_cost + self.redeem_cost * self.redeem_rate

    @field_validator("name")
    @classmethod
    def _known_action(cls, value: str) -> str:
        if value not in ACTIONS:
            raise ValueError(f"unknown action {value!r}; expected one of {ACTIONS}")
        return value

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, value: str) -> str:
        if value not in CHANNELS:
            raise ValueError(f"unknown channel {value!r}; expected one of {CHANNELS}")
        return value


class ContactRules(_Strict):
    """Cooldown and frequency cap over our own treated and held-out decisions."""

    cooldown_days: int = Field(default=14, ge=0)
    max_contacts_90d: int = Field(default=3, ge=0)


class HoldoutConfig(_Strict):
    """Share of would-be-treated customers kept as a randomised control."""

    fraction: float = Field(default=0.10, ge=0.0, lt=1.0)
    salt: str = "loopline-holdout-v1"


class ReviewConfig(_Strict):
    """When a would-be decision goes to a person instead, and how many per day."""

    p_band: tuple[float, float] = (0.45, 0.55)
    value_at_risk_threshold: float = 1000.0
    max_per_day: int = Field(default=50, ge=0)
    ood: bool = True
    # The features whose training range the ood check uses (empty: every numeric
    # feature of the model's reference). A feature the policy itself moves (contact
    # counts) or that grows with the calendar (tenure) leaves the training range by
    # construction, not because the customer is unusual.
    ood_features: list[str] = Field(default_factory=list)

    @field_validator("p_band")
    @classmethod
    def _ordered_band(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"p_band must satisfy 0 <= low <= high <= 1, got {value}")
        return value


class SanityConfig(_Strict):
    """Checks a score distribution must pass before the model policy is used."""

    min_rows: int = Field(default=100, ge=0)
    max_nan_share: float = Field(default=0.01, ge=0.0, le=1.0)
    mean_p_churn: tuple[float, float] = (0.005, 0.80)
    min_std_p_churn: float = Field(default=0.005, ge=0.0)


class FallbackConfig(_Strict):
    """The rule policy used when there is no trustworthy model."""

    action: str = "email"
    min_recency_days: int = 21
    min_tx_count_180d: int = 3
    max_champion_age_days: int = 120
    sanity: SanityConfig = Field(default_factory=SanityConfig)


class ValueAtRiskConfig(_Strict):
    """Transparent value-at-risk estimate from trailing spend."""

    method: Literal["trailing_spend"] = "trailing_spend"
    window_column: str = "spend_90d"
    window_days: int = Field(default=90, gt=0)
    blend_column: str | None = "spend_180d"
    blend_days: int = Field(default=180, gt=0)
    blend_weight: float = Field(default=0.5, ge=0.0, le=1.0)


class AllocationConfig(_Strict):
    """Rankings tried by the greedy allocation (the best total EV wins)."""

    rankings: list[Ranking] = Field(default_factory=lambda: list(DEFAULT_RANKINGS))

    @field_validator("rankings")
    @classmethod
    def _non_empty(cls, value: list[Ranking]) -> list[Ranking]:
        if not value:
            raise ValueError("allocation.rankings needs at least one ranking")
        return value


class LearningConfig(_Strict):
    """How the policy learns each action's uplift from its randomized holdout.

    Every night the matured outcomes of the last ``window_days`` decision dates
    update each action's Beta prior (``ml.feedback.uplift.update_parameters``);
    segments of ``segment_column`` with at least ``min_n`` treated and ``min_n``
    held-out outcomes of an action get their own row. With ``use_posteriors`` the
    next run's EV uses the action-level posterior mean instead of the prior mean.
    """

    window_days: int = Field(default=180, gt=0)
    min_n: int = Field(default=200, ge=1)
    segment_column: str | None = "region"
    use_posteriors: bool = True


class PolicyConfig(_Strict):
    """Everything ``ml.decision.engine.decide`` needs to know about the policy."""

    actions: list[ActionConfig]
    capacity: dict[str, int]
    daily_budget: float = Field(ge=0.0)
    contact: ContactRules = Field(default_factory=ContactRules)
    holdout: HoldoutConfig = Field(default_factory=HoldoutConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    fallback: FallbackConfig = Field(default_factory=FallbackConfig)
    value_at_risk: ValueAtRiskConfig = Field(default_factory=ValueAtRiskConfig)
    allocation: AllocationConfig = Field(default_factory=AllocationConfig)
    learning: LearningConfig = Field(default_factory=LearningConfig)
    policy_version: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> PolicyConfig:
        names = [a.name for a in self.actions]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate action names in {names}")
        channels = [a.channel for a in self.actions]
        if len(set(channels)) != len(channels):
            raise ValueError(f"each channel carries one action, got {channels}")
        for channel, slots in self.capacity.items():
            if channel not in CHANNELS:
                raise ValueError(f"capacity for unknown channel {channel!r}")
            if slots < 0:
                raise ValueError(f"capacity of {channel!r} is negative")
        missing = [c for c in channels if c not in self.capacity]
        if missing:
            raise ValueError(f"no capacity given for channel(s) {missing}")
        if self.fallback.action not in names:
            raise ValueError(f"fallback action {self.fallback.action!r} not in {names}")
        return self

    def action(self, name: str) -> ActionConfig:
        """The configured action called ``name`` (KeyError if absent)."""
        for action in self.actions:
            if action.name == name:
                return action
        raise KeyError(name)

    def channel_of(self, name: str) -> str:
        return self.action(name).channel

    def costs(self) -> dict[str, float]:
        """Expected cost of one contact, per action."""
        return {a.name: a.cost for a in self.actions}

    def uplift_priors(self) -> dict[str, tuple[float, float]]:
        """Beta ``(alpha, beta)`` of each action's uplift prior."""
        return {a.name: (a.uplift.alpha, a.uplift.beta) for a in self.actions}

    def uplift_means(self) -> dict[str, float]:
        """Prior mean uplift, per action."""
        return {a.name: a.uplift.mean for a in self.actions}


def load_policy_config(path: Path | None = None) -> PolicyConfig:
    """Load ``policy.yml`` (the home's own copy, else the repository's; see
    :mod:`ml.config.files`) and stamp it with its content hash."""
    data, digest = read_yaml(path or config_path(POLICY_CONFIG))
    return PolicyConfig.model_validate(data | {"policy_version": digest})
