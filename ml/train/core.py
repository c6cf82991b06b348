"""``train``: fit, calibrate, evaluate, log and register one churn model.

One call trains both candidates on the train window, calibrates them on validation,
evaluates them on the out-of-time test window, logs everything to MLflow, registers
the gradient-boosting model as ``challenger`` and runs the promotion gate.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import pandas as pd
from threadpoolctl import threadpool_limits

from ml.config import Settings, load_business_config
from ml.train.config import ModelConfig, load_model_config
from ml.train.data import (
    SplitWindows,
    Window,
    backtest_windows,
    feature_columns,
    frame_hash,
    load_examples,
    prepare_features,
)
from ml.train.metrics import evaluate
from ml.train.models import (
    BASELINE,
    GRADIENT_BOOSTING,
    candidate_params,
    fit_calibrated,
)

if TYPE_CHECKING:
    from sklearn.calibration import CalibratedClassifierCV

    from ml.registry import GateDecision


@dataclass(frozen=True)
class WindowData:
    """The model input, label and business value of one window."""

    features: pd.DataFrame
    label: pd.Series
    value: pd.Series

    @property
    def rows(self) -> int:
        return len(self.label)


@dataclass(frozen=True)
class Candidate:
    """A fitted, calibrated candidate and its test metrics."""

    name: str
    model: CalibratedClassifierCV
    test_metrics: dict[str, float]
    validation_metrics: dict[str, float]


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced."""

    run_id: str
    as_of: date
    windows: SplitWindows
    rows: dict[str, int]
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    model_version: str
    backtest: list[dict[str, float]] = field(default_factory=list)
    gate: GateDecision | None = None

    @property
    def promoted(self) -> bool:
        return self.gate is not None and self.gate.promoted


def window_data(
    frame: pd.DataFrame,
    window: Window,
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
) -> WindowData:
    """The rows of ``frame`` whose as_of_date lies in ``window``."""
    rows = frame[
        (frame["as_of_date"] >= window.start) & (frame["as_of_date"] <= window.end)
    ]
    return WindowData(
        features=prepare_features(rows, numeric, categorical),
        label=rows[config.target].astype(int),
        value=rows[config.business.value_column].astype(float),
    )


def split_frame(
    frame: pd.DataFrame,
    windows: SplitWindows,
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
) -> dict[str, WindowData]:
    """Train, validation and test data; raises if a window is empty."""
    parts = {
        name: window_data(frame, getattr(windows, name), numeric, categorical, config)
        for name in ("train", "validation", "test")
    }
    for name, part in parts.items():
        window: Window = getattr(windows, name)
        if part.rows == 0:
            raise ValueError(
                f"no matured training examples in the {name} window "
                f"{window.start}..{window.end}; build more history first"
            )
    return parts


def fit_candidates(
    parts: dict[str, WindowData],
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
) -> dict[str, Candidate]:
    """Fit, calibrate and evaluate both candidates on one split."""
    out: dict[str, Candidate] = {}
    train, validation, test = parts["train"], parts["validation"], parts["test"]
    for name in (BASELINE, GRADIENT_BOOSTING):
        model = fit_calibrated(
            name,
            numeric,
            categorical,
            config,
            train.features,
            train.label,
            validation.features,
            validation.label,
        )
        out[name] = Candidate(
            name=name,
            model=model,
            test_metrics=evaluate(
                test.label,
                model.predict_proba(test.features)[:, 1],
                test.value,
                config.business,
                config.gate.ece_bins,
            ),
            validation_metrics=evaluate(
                validation.label,
                model.predict_proba(validation.features)[:, 1],
                validation.value,
                config.business,
                config.gate.ece_bins,
            ),
        )
    return out


def run_backtest(
    frame: pd.DataFrame,
    folds: list[SplitWindows],
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
) -> list[dict[str, float]]:
    """Rolling-origin backtest: the challenger's test metrics on every fold."""
    results: list[dict[str, float]] = []
    for windows in folds:
        parts = split_frame(frame, windows, numeric, categorical, config)
        test = parts["test"]
        model = fit_calibrated(
            GRADIENT_BOOSTING,
            numeric,
            categorical,
            config,
            parts["train"].features,
            parts["train"].label,
            parts["validation"].features,
            parts["validation"].label,
        )
        results.append(
            evaluate(
                test.label,
                model.predict_proba(test.features)[:, 1],
                test.value,
                config.business,
                config.gate.ece_bins,
            )
        )
    return results


def model_card(
    as_of: date,
    windows: SplitWindows,
    rows: dict[str, int],
    metrics: dict[str, float],
    baseline_metrics: dict[str, float],
    config: ModelConfig,
    horizon_days: int,
    fingerprint: dict[str, str],
) -> str:
    """A markdown model card for the run."""
    keys = ["roc_auc", "pr_auc", "brier", "log_loss", "ece", "lift_top10"]
    keys += ["capture_top10", "net_value_top10"]
    table = "\n".join(
        f"| {k} | {metrics.get(k, float('nan')):.4f} | "
        f"{baseline_metrics.get(k, float('nan')):.4f} |"
        for k in keys
    )
    n_validation = rows["validation"]
    return f"""# Model card: {config.registered_model}

## Purpose
Probability that an active customer makes no purchase in the next {horizon_days}
days (`p_churn`), scored nightly for every row of `marts.customer_features`, to rank
customers for retention actions. Not for decisions about individuals beyond
choosing whom to contact.

## Model
HistGradientBoostingClassifier ({config.calibration} calibration on the validation
window). Baseline: logistic regression on scaled numerics and one-hot categoricals.

## Data (trained on {as_of}; labels matured by then)
| window | from | to | rows |
|---|---|---|---|
| train | {windows.train.start} | {windows.train.end} | {rows["train"]} |
| validation | {windows.validation.start} | {windows.validation.end} | {n_validation} |
| test | {windows.test.start} | {windows.test.end} | {rows["test"]} |

Gap between windows: {windows.gap_days} days (>= horizon). Snapshots thinned to one
per customer every {config.thinning.every_days} days.
Fingerprint: {json.dumps(fingerprint, sort_keys=True)}

## Test-window metrics
| metric | model | baseline |
|---|---|---|
{table}

Business metric: targeting the top k% costs {config.business.contact_cost} per
contact and saves {config.business.save_rate:.0%} of targeted churners, each worth
`{config.business.value_column}`.

## Known limits
- The newest {windows.gap_days * 2 + windows.validation.days + windows.test.days}
  days of matured labels are used for validation and test, not for fitting: the
  model is that much older than the data.
- Observational labels: customers already contacted by retention actions churn
  less, which the model learns as if it were natural behaviour.
- `{config.business.value_column}` is a proxy for customer value, not a forecast.
- Calibration holds for the population of the validation window; under drift it
  degrades before the ranking does.
"""


def _log_plots(
    candidates: dict[str, Candidate], test: WindowData, config: ModelConfig
) -> None:
    import mlflow
    from sklearn.inspection import permutation_importance

    from ml.train import plots

    curves = {
        name: candidate.model.predict_proba(test.features)[:, 1]
        for name, candidate in candidates.items()
    }
    y = test.label.to_numpy()
    mlflow.log_figure(plots.roc_figure(y, curves), "plots/roc.png")
    mlflow.log_figure(plots.pr_figure(y, curves), "plots/pr.png")
    mlflow.log_figure(
        plots.calibration_figure(y, curves, config.gate.ece_bins),
        "plots/calibration.png",
    )
    mlflow.log_figure(plots.gain_figure(y, curves), "plots/cumulative_gain.png")
    sample = test.features.sample(
        n=min(config.importance_rows, test.rows), random_state=config.random_state
    )
    result = permutation_importance(
        candidates[GRADIENT_BOOSTING].model,
        sample,
        test.label.loc[sample.index],
        scoring="roc_auc",
        n_repeats=config.importance_repeats,
        random_state=config.random_state,
        n_jobs=1,
    )
    importance = pd.Series(result.importances_mean, index=list(sample.columns))
    mlflow.log_figure(
        plots.importance_figure(importance), "plots/permutation_importance.png"
    )
    mlflow.log_dict(
        {str(k): float(v) for k, v in importance.sort_values(ascending=False).items()},
        "importance.json",
    )


def train(
    settings: Settings,
    as_of: date,
    config: ModelConfig | None = None,
    gate: bool = True,
) -> TrainResult:
    """Train on the labels matured by ``as_of``, log the run, register the model as
    challenger and (unless ``gate`` is false) run the promotion gate."""
    config = config or load_model_config()
    with threadpool_limits(limits=config.n_threads):
        return _train(settings, as_of, config, gate)


def _train(
    settings: Settings, as_of: date, config: ModelConfig, gate: bool
) -> TrainResult:
    """The body of :func:`train`, inside its thread limit."""
    import mlflow
    from mlflow.models import infer_signature

    from ml.registry import register_challenger, run_gate
    from ml.train.models import SKOPS_TRUSTED_TYPES
    from ml.train.tracking import dbt_manifest_hash, git_sha, use_mlflow

    business = load_business_config(settings.config_file)
    horizon = business.horizon_days
    folds = backtest_windows(as_of, horizon, config)
    windows = folds[0]
    earliest = min(fold.train.start for fold in folds)
    frame = load_examples(
        settings.warehouse_path, earliest, windows.test.end, as_of, horizon, config
    )
    if frame.empty:
        raise ValueError(f"no matured training examples for as_of {as_of}")
    numeric, categorical = feature_columns(list(frame.columns), config)
    parts = split_frame(frame, windows, numeric, categorical, config)
    candidates = fit_candidates(parts, numeric, categorical, config)
    challenger = candidates[GRADIENT_BOOSTING]
    baseline = candidates[BASELINE]
    backtest = run_backtest(frame, folds[1:], numeric, categorical, config)

    rows = {name: part.rows for name, part in parts.items()}
    used = frame[
        (frame["as_of_date"] >= windows.train.start)
        & (frame["as_of_date"] <= windows.test.end)
    ]
    fingerprint = {
        "data_hash": frame_hash(used),
        "dbt_manifest_hash": dbt_manifest_hash(settings),
        "config_hash": business.config_hash,
        "model_config_hash": config.config_hash,
        "git_sha": git_sha(),
    }
    experiment_id = use_mlflow(settings, config)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"train-{as_of.isoformat()}"
    ) as run:
        mlflow.set_tags({"step": "train", "as_of": as_of.isoformat(), **fingerprint})
        params: dict[str, Any] = {
            "as_of": as_of.isoformat(),
            "horizon_days": horizon,
            "candidate": GRADIENT_BOOSTING,
            "calibration": config.calibration,
            "thinning_every_days": config.thinning.every_days,
            "n_numeric_features": len(numeric),
            "n_categorical_features": len(categorical),
            "backtest_folds": config.backtest.folds,
            **windows.as_params("window_"),
            **{f"rows_{name}": n for name, n in rows.items()},
            **fingerprint,
        }
        params |= {
            f"{GRADIENT_BOOSTING}_{k}": v
            for k, v in candidate_params(GRADIENT_BOOSTING, config).items()
        }
        params |= {
            f"{BASELINE}_{k}": v for k, v in candidate_params(BASELINE, config).items()
        }
        mlflow.log_params(params)
        mlflow.log_metrics({f"test_{k}": v for k, v in challenger.test_metrics.items()})
        mlflow.log_metrics(
            {f"validation_{k}": v for k, v in challenger.validation_metrics.items()}
        )
        mlflow.log_metrics(
            {f"baseline_test_{k}": v for k, v in baseline.test_metrics.items()}
        )
        for fold, fold_metrics in enumerate(backtest, start=1):
            mlflow.log_metrics(
                {f"backtest_{k}": v for k, v in fold_metrics.items()}, step=fold
            )
        if backtest:
            primary = config.gate.primary_metric
            values = [challenger.test_metrics[primary]] + [m[primary] for m in backtest]
            mlflow.log_metrics(
                {
                    f"backtest_mean_{primary}": statistics.fmean(values),
                    f"backtest_std_{primary}": statistics.pstdev(values),
                }
            )
        mlflow.log_dict(
            {"numeric": numeric, "categorical": categorical}, "features.json"
        )
        _log_plots(candidates, parts["test"], config)
        mlflow.log_text(
            model_card(
                as_of,
                windows,
                rows,
                challenger.test_metrics,
                baseline.test_metrics,
                config,
                horizon,
                fingerprint,
            ),
            "model_card.md",
        )
        example = parts["test"].features.head(5)
        signature = infer_signature(example, challenger.model.predict_proba(example))
        info = mlflow.sklearn.log_model(
            challenger.model,
            name="model",
            signature=signature,
            input_example=example,
            serialization_format="skops",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            pip_requirements=["scikit-learn", "skops"],
        )
        run_id = run.info.run_id
    version = register_challenger(settings, info.model_uri, run_id, config)
    result = TrainResult(
        run_id=run_id,
        as_of=as_of,
        windows=windows,
        rows=rows,
        metrics=challenger.test_metrics,
        baseline_metrics=baseline.test_metrics,
        model_version=version,
        backtest=backtest,
    )
    if not gate:
        return result
    # the champion may use features this run excludes: give the gate all of them
    every_feature = feature_columns(
        list(frame.columns), config.model_copy(update={"exclude_features": []})
    )
    gate_test = window_data(frame, windows.test, *every_feature, config)
    decision = run_gate(
        settings,
        version,
        gate_test.features,
        gate_test.label,
        gate_test.value,
        baseline.test_metrics,
        windows.test,
        config,
    )
    return TrainResult(**{**result.__dict__, "gate": decision})
