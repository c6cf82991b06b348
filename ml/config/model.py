"""The model parameters in ``config/model.yml``, as a typed object."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ml.config.files import CONFIG_DIR, REPO_ROOT, config_path, read_yaml

MODEL_CONFIG = "model.yml"
# the repository's copy
MODEL_CONFIG_FILE = REPO_ROOT / CONFIG_DIR / MODEL_CONFIG


class SplitConfig(BaseModel):
    """Window lengths (days of as_of_dates) of the out-of-time split."""

    test_days: int = 28
    validation_days: int = 28
    train_days: int = 365
    gap_days: int = 30
    # Leave out snapshots whose longest feature window reaches before the first
    # transaction on record (their long-window features are truncated).
    skip_truncated_windows: bool = True
    # A log too young for the full warm-up (the longest feature window) shrinks it
    # to the longest feature window that still leaves this many days of training
    # snapshots; a log too young even for the shortest is refused up front.
    min_train_days: int = Field(default=14, ge=1)
    # Training reads every snapshot of a seeded sample of at most this many
    # customers (by the md5 of the customer_id; 0 reads all): a million
    # customers' year of weekly snapshots would not fit in memory, and the model
    # is settled long before.
    max_customers: int = Field(default=200_000, ge=0)


class ThinningConfig(BaseModel):
    every_days: int = 7


class BacktestConfig(BaseModel):
    folds: int = 0
    step_days: int = 28


class BaselineConfig(BaseModel):
    C: float = 1.0
    max_iter: int = 1000
    # the logistic baseline is fitted on at most this many train rows (a seeded
    # sample); 0 uses them all
    max_train_rows: int = 200_000


class GradientBoostingConfig(BaseModel):
    learning_rate: float = 0.1
    max_iter: int = 200
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 50
    l2_regularization: float = 0.0
    early_stopping: bool = False
    # "balanced" or None
    class_weight: Literal["balanced"] | None = None
    # feature -> +1 (the churn probability may only rise with it) or -1; features
    # the model does not use are ignored
    monotonic: dict[str, Literal[-1, 1]] = Field(default_factory=dict)


class TuningConfig(BaseModel):
    """Candidate settings tried on the validation window. Each entry of a grid
    overrides some keys of its candidate's base settings; the candidate keeps the
    entry with the best validation ``gate.primary_metric`` (before calibration).
    An empty grid trains the base settings only.

    With more than one entry and more than ``sample_rows`` train rows, the entries
    are ranked on a seeded sample of ``sample_rows`` train rows (scored on the whole
    validation window), and the winner alone is then fitted on every train row: the
    ranking costs a fraction of the full fits it replaces. 0 ranks on every row."""

    baseline: list[dict[str, Any]] = Field(default_factory=list)
    gradient_boosting: list[dict[str, Any]] = Field(default_factory=list)
    sample_rows: int = Field(default=0, ge=0)


class BgNbdConfig(BaseModel):
    """The BG/NBD model: fitted on the train window, its churn ranking is a
    baseline of the gate, and (``as_features``) its P(alive) and P(no purchase in
    the horizon) are inputs of both candidates."""

    enabled: bool = True
    as_features: bool = True
    penalizer: float = 0.0


class BusinessMetricConfig(BaseModel):
    value_column: str = "spend_90d"
    contact_cost: float = 2.0
    save_rate: float = 0.2
    top_fractions: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2])


class GateConfig(BaseModel):
    primary_metric: str = "roc_auc"
    min_improvement: float = 0.002
    max_ece: float = 0.05
    ece_bins: int = 10


class ModelConfig(BaseModel):
    """Everything training, the gate and scoring need to know about the model."""

    registered_model: str = "loopline-churn"
    experiment: str = "loopline-churn"
    target: str = "churned"
    key_columns: list[str] = Field(
        default_factory=lambda: ["customer_id", "as_of_date"]
    )
    label_columns: list[str] = Field(
        default_factory=lambda: [
            "churned",
            "horizon_days",
            "horizon_end_date",
            "horizon_purchases",
            "horizon_spend",
        ]
    )
    categorical_features: list[str] = Field(
        default_factory=lambda: ["plan", "region", "acquisition_channel"]
    )
    exclude_features: list[str] = Field(default_factory=list)
    split: SplitConfig = Field(default_factory=SplitConfig)
    thinning: ThinningConfig = Field(default_factory=ThinningConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    gradient_boosting: GradientBoostingConfig = Field(
        default_factory=GradientBoostingConfig
    )
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    bgnbd: BgNbdConfig = Field(default_factory=BgNbdConfig)
    random_state: int = 42
    n_threads: int = 0
    calibration: Literal["isotonic", "sigmoid"] = "isotonic"
    business: BusinessMetricConfig = Field(default_factory=BusinessMetricConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    importance_rows: int = 1000
    importance_repeats: int = 3
    config_hash: str = ""


def load_model_config(path: Path | None = None) -> ModelConfig:
    """Load ``model.yml`` (the home's own copy, else the repository's; see
    :mod:`ml.config.files`) and stamp it with its content hash."""
    data, digest = read_yaml(path or config_path(MODEL_CONFIG))
    return ModelConfig.model_validate(data | {"config_hash": digest})


def resolve_threads(config: ModelConfig, override: int | None = None) -> int:
    """Threads for fitting and predicting: ``override`` (``LOOPLINE_THREADS``) if
    given, else ``config.n_threads``; 0 means one per core."""
    threads = config.n_threads if override is None else override
    return threads if threads > 0 else max(1, os.cpu_count() or 1)
