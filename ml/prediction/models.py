"""The two candidates and their calibration.

* ``baseline``: logistic regression on median-imputed, standardised numerics and
  one-hot categoricals. Its coefficients can be read directly.
* ``gradient_boosting``: HistGradientBoostingClassifier on raw numerics (it handles
  missing values) and ordinal-encoded categoricals declared as categorical.

Both are fitted on the train window and then calibrated on the validation window
with ``CalibratedClassifierCV(FrozenEstimator(model))``: the fitted model is not
refitted, only a calibrator (isotonic or sigmoid) is learnt on validation rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from ml.config.model import BaselineConfig, GradientBoostingConfig, ModelConfig
from ml.prediction.bgnbd import BgNbdParams, p_alive, p_no_purchase

BASELINE = "baseline"
GRADIENT_BOOSTING = "gradient_boosting"

# The exact non-default types a calibrated candidate holds, trusted when the model
# is loaded with skops. Saving fails if a model needs any type not listed here.
SKOPS_TRUSTED_TYPES: list[str] = [
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.frozen._frozen.FrozenEstimator",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.utils._bunch.Bunch",
    # the ColumnTransformer keeps a partial of check_array for its inputs
    "functools.partial",
    "sklearn.utils.validation.check_array",
]
# The BG/NBD feature step (see BgNbdFeatures) is Loopline's own type.
SKOPS_TRUSTED_TYPES.append("ml.prediction.models.BgNbdFeatures")
# The baseline's OneHotEncoder also keeps its output dtype (a numpy dtype object).
BASELINE_SKOPS_TRUSTED_TYPES: list[str] = [*SKOPS_TRUSTED_TYPES, "numpy.dtype"]


# The lifetime columns of marts.customer_features that are BG/NBD's (x, t_x, T),
# in days, and the two columns BgNbdFeatures adds from them.
BGNBD_INPUTS = ("lifetime_repeat_days", "lifetime_recency_days", "lifetime_days")
BGNBD_FEATURES = ("bgnbd_p_alive", "bgnbd_p_no_purchase")


class BgNbdFeatures(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """Add BG/NBD's P(alive) and P(no purchase in the horizon) to a frame.

    The parameters are fitted beforehand on the train window's customers (see
    ``ml.prediction.training``) and fixed here, so ``fit`` learns nothing and the step
    travels inside the logged model: scoring computes the same two columns from
    the same lifetime columns. Rows whose lifetime columns are missing or
    inconsistent get NaN (the candidates handle missing values).
    """

    def __init__(
        self,
        r: float = 1.0,
        alpha: float = 1.0,
        a: float = 1.0,
        b: float = 1.0,
        horizon_days: int = 30,
    ) -> None:
        self.r = r
        self.alpha = alpha
        self.a = a
        self.b = b
        self.horizon_days = horizon_days

    def fit(self, x: pd.DataFrame, y: Any = None) -> BgNbdFeatures:
        return self

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        out = x.copy()
        params = BgNbdParams(r=self.r, alpha=self.alpha, a=self.a, b=self.b)
        frequency, recency, age = (
            out[c].to_numpy(dtype="float64") for c in BGNBD_INPUTS
        )
        valid = (
            np.isfinite(frequency)
            & np.isfinite(recency)
            & np.isfinite(age)
            & (frequency >= 0)
            & (frequency == np.round(frequency))
            & (recency >= 0)
            & (recency <= age)
            & ((frequency > 0) | (recency == 0))
        )
        alive = np.full(len(out), np.nan)
        silent = np.full(len(out), np.nan)
        if valid.any():
            history = (frequency[valid], recency[valid], age[valid])
            alive[valid] = p_alive(params, *history)
            silent[valid] = p_no_purchase(params, self.horizon_days, *history)
        out[BGNBD_FEATURES[0]] = alive
        out[BGNBD_FEATURES[1]] = silent
        return out


def uses_bgnbd(numeric: list[str], bgnbd: BgNbdParams | None) -> bool:
    """Whether the candidates get the BG/NBD features: fitted parameters and the
    lifetime columns they need."""
    return bgnbd is not None and all(c in numeric for c in BGNBD_INPUTS)


def _pipeline(
    columns: ColumnTransformer,
    model: Any,
    bgnbd: BgNbdParams | None,
    horizon_days: int,
) -> Pipeline:
    """columns -> model, behind the BG/NBD feature step when ``bgnbd`` is given."""
    steps: list[tuple[str, Any]] = [("columns", columns), ("model", model)]
    if bgnbd is not None:
        features = BgNbdFeatures(
            r=bgnbd.r,
            alpha=bgnbd.alpha,
            a=bgnbd.a,
            b=bgnbd.b,
            horizon_days=horizon_days,
        )
        steps.insert(0, ("bgnbd", features))
    return Pipeline(steps)


def build_baseline(
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
    bgnbd: BgNbdParams | None = None,
    horizon_days: int = 30,
    overrides: dict[str, Any] | None = None,
) -> Pipeline:
    """Logistic regression on scaled numerics and one-hot categoricals (with the
    BG/NBD features first when ``bgnbd`` is given; see :func:`uses_bgnbd`)."""
    params = _settings(BASELINE, config, overrides)
    assert isinstance(params, BaselineConfig)
    with_bgnbd = uses_bgnbd(numeric, bgnbd)
    if with_bgnbd:
        numeric = [*numeric, *BGNBD_FEATURES]
    numeric_steps = Pipeline(
        [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
    )
    categorical_steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    columns = ColumnTransformer(
        [
            ("numeric", numeric_steps, numeric),
            ("categorical", categorical_steps, categorical),
        ],
        remainder="drop",
    )
    model = LogisticRegression(
        C=params.C,
        max_iter=params.max_iter,
        random_state=config.random_state,
    )
    return _pipeline(columns, model, bgnbd if with_bgnbd else None, horizon_days)


def build_gradient_boosting(
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
    bgnbd: BgNbdParams | None = None,
    horizon_days: int = 30,
    overrides: dict[str, Any] | None = None,
) -> Pipeline:
    """HistGradientBoosting with native categorical splits (with the BG/NBD
    features first when ``bgnbd`` is given; see :func:`uses_bgnbd`)."""
    with_bgnbd = uses_bgnbd(numeric, bgnbd)
    if with_bgnbd:
        numeric = [*numeric, *BGNBD_FEATURES]
    columns = ColumnTransformer(
        [
            ("numeric", "passthrough", numeric),
            (
                "categorical",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    encoded_missing_value=np.nan,
                ),
                categorical,
            ),
        ],
        remainder="drop",
    )
    params = _settings(GRADIENT_BOOSTING, config, overrides)
    assert isinstance(params, GradientBoostingConfig)
    is_categorical = [False] * len(numeric) + [True] * len(categorical)
    monotonic = [params.monotonic.get(c, 0) for c in numeric] + [0] * len(categorical)
    model = HistGradientBoostingClassifier(
        learning_rate=params.learning_rate,
        max_iter=params.max_iter,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        early_stopping=params.early_stopping,
        class_weight=params.class_weight,
        monotonic_cst=monotonic if any(monotonic) else None,
        categorical_features=is_categorical if categorical else None,
        random_state=config.random_state,
    )
    return _pipeline(columns, model, bgnbd if with_bgnbd else None, horizon_days)


def build_candidate(
    name: str,
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
    bgnbd: BgNbdParams | None = None,
    horizon_days: int = 30,
    overrides: dict[str, Any] | None = None,
) -> Pipeline:
    """An unfitted candidate pipeline by name; ``overrides`` replace some of its
    settings (one entry of its tuning grid)."""
    if name == BASELINE:
        return build_baseline(
            numeric, categorical, config, bgnbd, horizon_days, overrides
        )
    if name == GRADIENT_BOOSTING:
        return build_gradient_boosting(
            numeric, categorical, config, bgnbd, horizon_days, overrides
        )
    raise ValueError(f"unknown candidate {name!r}")


def _settings(
    name: str, config: ModelConfig, overrides: dict[str, Any] | None
) -> BaselineConfig | GradientBoostingConfig:
    """A candidate's settings with one tuning entry applied (validated; an unknown
    key is an error, not silently ignored)."""
    base = config.baseline if name == BASELINE else config.gradient_boosting
    unknown = set(overrides or {}) - set(type(base).model_fields)
    if unknown:
        raise ValueError(f"tuning entry for {name} has unknown keys {sorted(unknown)}")
    return type(base).model_validate(base.model_dump() | (overrides or {}))


def candidate_params(
    name: str, config: ModelConfig, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The hyperparameters of a candidate, for logging."""
    return _settings(name, config, overrides).model_dump()


def tuning_grid(name: str, config: ModelConfig) -> list[dict[str, Any]]:
    """The settings tried for a candidate: its grid, or its base settings only."""
    grid = (
        config.tuning.baseline if name == BASELINE else config.tuning.gradient_boosting
    )
    return [dict(entry) for entry in grid] or [{}]


def fit_sample(
    x: pd.DataFrame, y: pd.Series, max_rows: int, random_state: int
) -> tuple[pd.DataFrame, pd.Series]:
    """A seeded random sample of at most ``max_rows`` rows (all rows if 0 or fewer
    rows exist), keeping both classes' shares up to sampling noise."""
    if max_rows <= 0 or len(y) <= max_rows:
        return x, y
    rows = np.sort(
        np.random.default_rng(random_state).choice(len(y), max_rows, replace=False)
    )
    return x.iloc[rows], y.iloc[rows]


@dataclass(frozen=True)
class TunedCandidate:
    """A calibrated candidate and how its settings were chosen: every grid entry
    tried with its validation score (before calibration)."""

    model: CalibratedClassifierCV
    overrides: dict[str, Any]
    # the chosen settings' validation score, fitted on every train row
    validation_score: float
    tried: list[tuple[dict[str, Any], float]]
    # the train rows the grid entries were ranked on (all of them unless sampled)
    ranking_rows: int


def fit_tuned(
    name: str,
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
    x_train: pd.DataFrame,
    y_train: pd.Series,
    x_validation: pd.DataFrame,
    y_validation: pd.Series,
    bgnbd: BgNbdParams | None = None,
    horizon_days: int = 30,
) -> TunedCandidate:
    """Fit a candidate on train for each entry of its tuning grid, keep the entry
    with the best validation score (``gate.primary_metric``), and calibrate it on
    validation. The test window plays no part.

    The baseline is fitted on at most ``baseline.max_train_rows`` train rows. A grid
    of more than one entry is ranked on at most ``tuning.sample_rows`` of those rows
    (a seeded sample); the winner is then fitted on all of them."""
    from ml.prediction.metrics import score_metric

    if y_train.nunique() < 2 or y_validation.nunique() < 2:
        raise ValueError(
            "train and validation windows must each hold churners and non-churners"
        )
    if name == BASELINE:
        x_train, y_train = fit_sample(
            x_train, y_train, config.baseline.max_train_rows, config.random_state
        )
    grid = tuning_grid(name, config)
    x_rank, y_rank = (
        fit_sample(x_train, y_train, config.tuning.sample_rows, config.random_state)
        if len(grid) > 1
        else (x_train, y_train)
    )
    if y_rank.nunique() < 2:  # a sample too small to hold both classes
        x_rank, y_rank = x_train, y_train

    def fitted(overrides: dict[str, Any], x: pd.DataFrame, y: pd.Series) -> Pipeline:
        model = build_candidate(
            name, numeric, categorical, config, bgnbd, horizon_days, overrides
        )
        model.fit(x, y)
        return model

    def scored(model: Pipeline) -> float:
        return score_metric(
            config.gate.primary_metric,
            y_validation,
            model.predict_proba(x_validation)[:, 1],
        )

    tried: list[tuple[dict[str, Any], float]] = []
    best: tuple[Pipeline, dict[str, Any], float] | None = None
    for overrides in grid:
        model = fitted(overrides, x_rank, y_rank)
        score = scored(model)
        tried.append((overrides, score))
        if best is None or score > best[2]:
            best = (model, overrides, score)
    assert best is not None
    if len(y_rank) < len(y_train):  # ranked on a sample: fit the winner on all rows
        model = fitted(best[1], x_train, y_train)
        best = (model, best[1], scored(model))
    calibrated = CalibratedClassifierCV(
        FrozenEstimator(best[0]), method=config.calibration
    )
    calibrated.fit(x_validation, y_validation)
    return TunedCandidate(calibrated, best[1], best[2], tried, len(y_rank))


def fit_calibrated(
    name: str,
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
    x_train: pd.DataFrame,
    y_train: pd.Series,
    x_validation: pd.DataFrame,
    y_validation: pd.Series,
    bgnbd: BgNbdParams | None = None,
    horizon_days: int = 30,
) -> CalibratedClassifierCV:
    """:func:`fit_tuned`, returning the calibrated model only."""
    return fit_tuned(
        name,
        numeric,
        categorical,
        config,
        x_train,
        y_train,
        x_validation,
        y_validation,
        bgnbd,
        horizon_days,
    ).model
