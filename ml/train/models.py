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

from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from ml.train.config import ModelConfig

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
# The baseline's OneHotEncoder also keeps its output dtype (a numpy dtype object).
BASELINE_SKOPS_TRUSTED_TYPES: list[str] = [*SKOPS_TRUSTED_TYPES, "numpy.dtype"]


def build_baseline(
    numeric: list[str], categorical: list[str], config: ModelConfig
) -> Pipeline:
    """Logistic regression on scaled numerics and one-hot categoricals."""
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
        C=config.baseline.C,
        max_iter=config.baseline.max_iter,
        random_state=config.random_state,
    )
    return Pipeline([("columns", columns), ("model", model)])


def build_gradient_boosting(
    numeric: list[str], categorical: list[str], config: ModelConfig
) -> Pipeline:
    """HistGradientBoosting with native categorical splits."""
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
    params = config.gradient_boosting
    is_categorical = [False] * len(numeric) + [True] * len(categorical)
    model = HistGradientBoostingClassifier(
        learning_rate=params.learning_rate,
        max_iter=params.max_iter,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        early_stopping=params.early_stopping,
        categorical_features=is_categorical if categorical else None,
        random_state=config.random_state,
    )
    return Pipeline([("columns", columns), ("model", model)])


def build_candidate(
    name: str, numeric: list[str], categorical: list[str], config: ModelConfig
) -> Pipeline:
    """An unfitted candidate pipeline by name."""
    if name == BASELINE:
        return build_baseline(numeric, categorical, config)
    if name == GRADIENT_BOOSTING:
        return build_gradient_boosting(numeric, categorical, config)
    raise ValueError(f"unknown candidate {name!r}")


def candidate_params(name: str, config: ModelConfig) -> dict[str, Any]:
    """The hyperparameters of a candidate, for logging."""
    if name == BASELINE:
        return config.baseline.model_dump()
    return config.gradient_boosting.model_dump()


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


def fit_calibrated(
    name: str,
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
    x_train: pd.DataFrame,
    y_train: pd.Series,
    x_validation: pd.DataFrame,
    y_validation: pd.Series,
) -> CalibratedClassifierCV:
    """Fit a candidate on train and calibrate it on validation.

    The baseline is fitted on at most ``baseline.max_train_rows`` train rows."""
    if y_train.nunique() < 2 or y_validation.nunique() < 2:
        raise ValueError(
            "train and validation windows must each hold churners and non-churners"
        )
    if name == BASELINE:
        x_train, y_train = fit_sample(
            x_train, y_train, config.baseline.max_train_rows, config.random_state
        )
    model = build_candidate(name, numeric, categorical, config)
    model.fit(x_train, y_train)
    calibrated = CalibratedClassifierCV(
        FrozenEstimator(model), method=config.calibration
    )
    calibrated.fit(x_validation, y_validation)
    return calibrated
