"""The training run as five steps that a scheduler can run one at a time.

1. :func:`build_training_set` reads the matured examples for ``as_of`` from the
   warehouse (read-only) and writes them with the split windows under
   ``reports/training/<as_of>/``.
2. :func:`train_candidates` fits and calibrates both candidates, starts the MLflow
   run and logs its parameters and both models.
3. :func:`evaluate` scores the candidates on the out-of-time test window, logs
   metrics, plots, the model card and the training reference
   (:mod:`ml.prediction.reference`) into that run and registers the challenger.
4. :func:`gate` judges the challenger against the champion on the same test window
   and records the decision and its evidence.
5. :func:`promote` moves the ``champion`` alias when the gate said so.

Each step reads what the previous ones persisted (the training-set directory, the MLflow
run, the registry), so the values passed between steps are small: a path, a run id,
model URIs and a version. :func:`ml.prediction.train.train` runs the same steps in one
call.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ml.config.model import (
    ModelConfig,
    SplitConfig,
    load_model_config,
    resolve_threads,
)
from ml.config.settings import Settings, load_business_config
from ml.config.steplog import log_step
from ml.prediction import metrics
from ml.prediction.bgnbd import BgNbdParams, fit_bgnbd, p_no_purchase
from ml.prediction.examples import (
    SplitWindows,
    Window,
    backtest_windows,
    feature_columns,
    frame_hash,
    load_examples,
    prepare_features,
)
from ml.prediction.models import (
    BASELINE,
    BGNBD_INPUTS,
    GRADIENT_BOOSTING,
    TunedCandidate,
    candidate_params,
    fit_tuned,
)
from ml.prediction.reference import REFERENCE_FILE, build_reference
from ml.storage.warehouse import connect, table_exists

if TYPE_CHECKING:
    from sklearn.calibration import CalibratedClassifierCV

    from ml.prediction.gate import GateDecision
    from ml.prediction.registry import Promotion

log = logging.getLogger(__name__)

EXAMPLES_FILE = "examples.parquet"
# Each customer's lifetime state by day (dbt), read to fit BG/NBD on the customers
# known at the end of the train window.
LIFETIMES_TABLE = "intermediate.int_customer_lifetimes_accumulated"
# The classical churn rankings the gate compares the challenger with, besides the
# logistic baseline: days since the last purchase, and BG/NBD's P(no purchase in
# the horizon) fitted on the train window.
RECENCY = "recency"
BGNBD = "bgnbd"
CLASSICAL = (RECENCY, BGNBD)
MANIFEST_FILE = "manifest.json"
SPLITS = ("train", "validation", "test")
# The examples last read or written in this process, by (path, mtime): one entry.
_FRAMES: dict[tuple[str, int], pd.DataFrame] = {}


def resolve_as_of(
    requested: str | None,
    logical: str | None,
    run_after: datetime | None,
    triggered_on: str | None = None,
) -> date:
    """The training date of a scheduled or triggered run.

    An explicit ``requested`` date (a run parameter) wins, then the day whose
    outcomes requested the retrain (``triggered_on``, from the asset event), then
    the run's logical date, then the date the run was scheduled after
    (asset-triggered runs have no logical date). Never the wall clock, so reruns
    train on the same date.
    """
    for value in (requested, triggered_on, logical):
        if value:
            return date.fromisoformat(str(value)[:10])
    if run_after is not None:
        return run_after.date()
    raise ValueError("no as_of: give one, or run with a logical date")


def training_dir(settings: Settings, as_of: date) -> Path:
    """Where the training set of ``as_of`` is written."""
    return settings.reports_dir / "training" / as_of.isoformat()


@dataclass(frozen=True)
class WindowData:
    """The model input, label and business value of one window."""

    features: pd.DataFrame
    label: pd.Series
    value: pd.Series

    @property
    def rows(self) -> int:
        return len(self.label)


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
        for name in SPLITS
    }
    for name, part in parts.items():
        window: Window = getattr(windows, name)
        if part.rows == 0:
            raise ValueError(
                f"no matured training examples in the {name} window "
                f"{window.start}..{window.end}; build more history first"
            )
    return parts


def _windows_to_dict(windows: SplitWindows) -> dict[str, Any]:
    out: dict[str, Any] = {"gap_days": windows.gap_days}
    for name in SPLITS:
        window: Window = getattr(windows, name)
        out[name] = [window.start.isoformat(), window.end.isoformat()]
    return out


def _windows_from_dict(raw: dict[str, Any]) -> SplitWindows:
    parts = {
        name: Window(date.fromisoformat(raw[name][0]), date.fromisoformat(raw[name][1]))
        for name in SPLITS
    }
    return SplitWindows(**parts, gap_days=int(raw["gap_days"]))


@dataclass(frozen=True)
class TrainingSet:
    """The examples and split of one training date, persisted in ``path``."""

    path: Path
    as_of: date
    horizon_days: int
    folds: list[SplitWindows]
    rows: dict[str, int]
    fingerprint: dict[str, str]
    # BG/NBD fitted on each fold's train window (None: no lifetime state)
    bgnbd: list[BgNbdParams | None] = field(default_factory=list)

    @property
    def windows(self) -> SplitWindows:
        """The run's own split (fold 0)."""
        return self.folds[0]

    def frame(self) -> pd.DataFrame:
        """The thinned, matured examples of every fold (shared: do not modify).

        When the steps run in one process (``loopline train``) the file is read
        once; a rewritten file (new mtime) is read again.
        """
        path = self.path / EXAMPLES_FILE
        key = (str(path), path.stat().st_mtime_ns)
        cached = _FRAMES.get(key)
        if cached is None:
            cached = pd.read_parquet(path)
            cached["as_of_date"] = pd.to_datetime(cached["as_of_date"]).dt.date
            _FRAMES.clear()
            _FRAMES[key] = cached
        return cached

    def as_dict(self) -> dict[str, Any]:
        """Small, JSON-friendly summary (path, date, row counts)."""
        return {
            "path": str(self.path),
            "as_of": self.as_of.isoformat(),
            "rows": dict(self.rows),
        }

    @classmethod
    def load(cls, path: Path) -> TrainingSet:
        """Read a training set written by :func:`build_training_set`."""
        raw = json.loads((path / MANIFEST_FILE).read_text())
        return cls(
            path=path,
            as_of=date.fromisoformat(raw["as_of"]),
            horizon_days=int(raw["horizon_days"]),
            folds=[_windows_from_dict(fold) for fold in raw["folds"]],
            rows={k: int(v) for k, v in raw["rows"].items()},
            fingerprint=dict(raw["fingerprint"]),
            bgnbd=[
                None if fit is None else BgNbdParams(**fit)
                for fit in raw.get("bgnbd", [])
            ],
        )

    def bgnbd_of(self, fold: int = 0) -> BgNbdParams | None:
        """The BG/NBD fit of a fold's train window, if one was made."""
        return self.bgnbd[fold] if fold < len(self.bgnbd) else None


def model_features(
    frame: pd.DataFrame, windows: SplitWindows, config: ModelConfig
) -> tuple[list[str], list[str]]:
    """(numeric, categorical) features the candidates can learn from.

    A numeric feature with no value at all in the training window (for example
    ``days_since_last_contact`` before any customer was ever contacted) carries no
    information and cannot be binned, so it is left out of this model; the model's
    signature then simply does not ask for it.
    """
    numeric, categorical = feature_columns(list(frame.columns), config)
    train = frame[
        (frame["as_of_date"] >= windows.train.start)
        & (frame["as_of_date"] <= windows.train.end)
    ]
    numeric = [c for c in numeric if train[c].notna().any()]
    return numeric, categorical


class HistoryTooShortError(ValueError):
    """The log holds too few days to train on: a user's data problem, reported in
    plain words before any heavy work."""


@dataclass(frozen=True)
class WarmUp:
    """The feature warm-up a training run leaves out: the snapshots up to ``end``
    (inclusive), whose ``days``-day feature windows reach before the first
    transaction. ``full_days`` is the longest feature window; ``days`` is shorter
    when a young log made the warm-up shrink."""

    days: int
    full_days: int
    end: date | None

    @property
    def shrunk(self) -> bool:
        return self.days < self.full_days


def first_transaction_day(settings: Settings) -> date | None:
    """The first landing partition of ``raw.transactions`` (None without any)."""
    with connect(settings.warehouse_path, read_only=True) as con:
        if not table_exists(con, "raw", "transactions"):
            return None
        first = con.execute(
            "select min(partition_date) from raw.transactions"
        ).fetchall()[0][0]
    return cast(date | None, first)


def plan_warm_up(
    first: date | None,
    as_of: date,
    windows: SplitWindows,
    feature_windows: list[int],
    split: SplitConfig,
    horizon_days: int,
) -> WarmUp:
    """The warm-up of a run on ``as_of`` whose history starts on ``first``.

    The full warm-up is the longest feature window. A log too young for it keeps
    the longest feature window that still leaves ``split.min_train_days`` days of
    training snapshots before the train window ends. Raises
    :class:`HistoryTooShortError`, saying how many days the log holds and how many
    training needs, when even the shortest window leaves too few.
    """
    longest = max(feature_windows)
    if not split.skip_truncated_windows:
        return WarmUp(0, 0, None)
    if first is None:
        return WarmUp(longest, longest, None)
    held = (as_of - first).days + 1
    # days from the first transaction to the train window's end, minus training
    after = (as_of - windows.train.end).days + split.min_train_days

    def needed(warm_up: int) -> int:
        return warm_up + after

    for warm_up in sorted(set(feature_windows), reverse=True):
        if held >= needed(warm_up):
            return WarmUp(warm_up, longest, first + timedelta(days=warm_up - 1))
    shortest = min(feature_windows)
    raise HistoryTooShortError(
        f"the log is too young to train on {as_of}: it holds {held} days "
        f"({first} to {as_of}); training needs at least {needed(shortest)} "
        f"({needed(longest)} for the full {longest}-day feature look-back).\n"
        f"That is a feature warm-up of {shortest} to {longest} days, "
        f"{split.min_train_days} days of training snapshots, validation "
        f"{split.validation_days} and test {split.test_days} days with "
        f"{windows.gap_days}-day gaps, and the {horizon_days}-day label horizon: "
        "add history, or shorten split in config/model.yml."
    )


def fit_bgnbd_at(
    settings: Settings, day: date, penalizer: float = 0.0
) -> BgNbdParams | None:
    """Fit BG/NBD on every customer's history as known on ``day`` (the end of a
    train window): repeat purchase days, first-to-last and first-to-``day`` in
    days. None when the warehouse has no lifetime state (or too few customers)."""
    with connect(settings.warehouse_path, read_only=True) as con:
        schema, table = LIFETIMES_TABLE.split(".")
        if not table_exists(con, schema, table):
            return None
        grouped = con.execute(
            f"""
            with latest as (
                select * from {LIFETIMES_TABLE}
                where known_on <= ?
                qualify row_number() over (
                    partition by customer_id order by known_on desc
                ) = 1
            )
            select
                purchase_days - 1 as frequency,
                date_diff('day', first_purchase_date, last_purchase_date) as recency,
                date_diff('day', first_purchase_date, cast(? as date)) as age,
                count(*) as customers
            from latest
            group by all
            """,
            [day, day],
        ).df()
    if int(grouped["customers"].sum()) < 10 or grouped["frequency"].max() <= 0:
        return None
    return fit_bgnbd(
        grouped["frequency"],
        grouped["recency"],
        grouped["age"],
        weights=grouped["customers"],
        penalizer=penalizer,
    )


def build_training_set(
    settings: Settings, as_of: date, config: ModelConfig | None = None
) -> TrainingSet:
    """Read the examples matured by ``as_of`` and persist them with their split.

    Raises if any window of the run's own split is empty. Rewriting the directory
    of the same ``as_of`` replaces it file by file (each written then renamed).
    """
    from ml.prediction.tracking import dbt_manifest_hash, git_sha

    config = config or load_model_config()
    business = load_business_config(settings.config_file)
    horizon = business.horizon_days
    folds = backtest_windows(as_of, horizon, config)
    windows = folds[0]
    # what history training needs, checked before anything heavy is read
    warm_up = plan_warm_up(
        first_transaction_day(settings),
        as_of,
        windows,
        list(business.features.windows),
        config.split,
        horizon,
    )
    if warm_up.shrunk:
        log.warning(
            "young log: the feature warm-up left out of training shrinks from "
            "%d to %d days (snapshots after %s are used)",
            warm_up.full_days,
            warm_up.days,
            warm_up.end,
        )
    earliest = min(fold.train.start for fold in folds)
    frame = load_examples(
        settings.warehouse_path, earliest, windows.test.end, as_of, horizon, config
    )
    warm_up_end = warm_up.end
    if warm_up_end is not None:
        frame = frame[frame["as_of_date"] > warm_up_end].reset_index(drop=True)
    if frame.empty:
        raise ValueError(f"no matured training examples for as_of {as_of}")
    numeric, categorical = model_features(frame, windows, config)
    parts = split_frame(frame, windows, numeric, categorical, config)
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
        "feature_warm_up_end": warm_up_end.isoformat() if warm_up_end else "",
        "feature_warm_up_days": str(warm_up.days),
    }
    bgnbd = [
        fit_bgnbd_at(settings, fold.train.end, config.bgnbd.penalizer)
        if config.bgnbd.enabled
        else None
        for fold in folds
    ]
    path = training_dir(settings, as_of)
    path.mkdir(parents=True, exist_ok=True)
    staged = path / f".{EXAMPLES_FILE}.{os.getpid()}"
    frame.to_parquet(staged, index=False)
    os.replace(staged, path / EXAMPLES_FILE)
    written = path / EXAMPLES_FILE
    _FRAMES.clear()
    _FRAMES[(str(written), written.stat().st_mtime_ns)] = frame
    manifest = {
        "as_of": as_of.isoformat(),
        "horizon_days": horizon,
        "folds": [_windows_to_dict(fold) for fold in folds],
        "rows": rows,
        "fingerprint": fingerprint,
        "bgnbd": [None if fit is None else fit.as_dict() for fit in bgnbd],
    }
    staged = path / f".{MANIFEST_FILE}.{os.getpid()}"
    staged.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(staged, path / MANIFEST_FILE)
    training = TrainingSet(path, as_of, horizon, folds, rows, fingerprint, bgnbd)
    log_step("build_training_set", as_of, "success", training.as_dict())
    return training


@dataclass(frozen=True)
class CandidateRun:
    """The MLflow run of a training date and its two logged candidates."""

    run_id: str
    model_uri: str
    baseline_uri: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _fit(
    name: str,
    parts: dict[str, WindowData],
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
    bgnbd: BgNbdParams | None = None,
    horizon_days: int = 30,
) -> TunedCandidate:
    train, validation = parts["train"], parts["validation"]
    return fit_tuned(
        name,
        numeric,
        categorical,
        config,
        train.features,
        train.label,
        validation.features,
        validation.label,
        bgnbd if config.bgnbd.as_features else None,
        horizon_days,
    )


def train_candidates(
    settings: Settings,
    path: Path | str,
    config: ModelConfig | None = None,
    tags: dict[str, str] | None = None,
) -> CandidateRun:
    """Fit and calibrate both candidates on the training set in ``path``; start the
    MLflow run and log its parameters, fingerprint and both models. ``tags`` are
    added to the run (the retrain trigger's reasons when a breach requested it)."""
    import mlflow
    from mlflow.models import infer_signature

    from ml.prediction.models import BASELINE_SKOPS_TRUSTED_TYPES, SKOPS_TRUSTED_TYPES
    from ml.prediction.tracking import use_mlflow

    config = config or load_model_config()
    training = TrainingSet.load(Path(path))
    frame = training.frame()
    numeric, categorical = model_features(frame, training.windows, config)
    parts = split_frame(frame, training.windows, numeric, categorical, config)
    bgnbd = training.bgnbd_of(0)
    with threadpool_limits(limits=resolve_threads(config, settings.threads)):
        tuned = {
            name: _fit(
                name,
                parts,
                numeric,
                categorical,
                config,
                bgnbd,
                training.horizon_days,
            )
            for name in (GRADIENT_BOOSTING, BASELINE)
        }
    models = {name: result.model for name, result in tuned.items()}
    as_of = training.as_of.isoformat()
    experiment_id = use_mlflow(settings, config)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"train-{as_of}"
    ) as run:
        mlflow.set_tags(
            {"step": "train", "as_of": as_of, **training.fingerprint, **(tags or {})}
        )
        params: dict[str, Any] = {
            "as_of": as_of,
            "horizon_days": training.horizon_days,
            "candidate": GRADIENT_BOOSTING,
            "calibration": config.calibration,
            "thinning_every_days": config.thinning.every_days,
            "n_numeric_features": len(numeric),
            "n_categorical_features": len(categorical),
            "backtest_folds": config.backtest.folds,
            **training.windows.as_params("window_"),
            **{f"rows_{name}": n for name, n in training.rows.items()},
            **training.fingerprint,
        }
        for name in (GRADIENT_BOOSTING, BASELINE):
            chosen = candidate_params(name, config, tuned[name].overrides)
            params |= {f"{name}_{k}": v for k, v in chosen.items()}
            params[f"{name}_validation_score"] = tuned[name].validation_score
            params[f"{name}_tuning_rows"] = tuned[name].ranking_rows
        params["bgnbd_features"] = bool(bgnbd is not None and config.bgnbd.as_features)
        if bgnbd is not None:
            params |= {f"bgnbd_{k}": v for k, v in bgnbd.as_dict().items()}
        mlflow.log_params(params)
        mlflow.log_dict(
            {
                name: {
                    "metric": config.gate.primary_metric,
                    "chosen": result.overrides,
                    "ranked_on_train_rows": result.ranking_rows,
                    "tried": [
                        {"overrides": overrides, "validation": score}
                        for overrides, score in result.tried
                    ],
                }
                for name, result in tuned.items()
            },
            "tuning.json",
        )
        mlflow.log_dict(
            {"numeric": numeric, "categorical": categorical}, "features.json"
        )
        example = parts["test"].features.head(5)
        uris: dict[str, str] = {}
        logged = (
            (GRADIENT_BOOSTING, "model", SKOPS_TRUSTED_TYPES),
            (BASELINE, "baseline", BASELINE_SKOPS_TRUSTED_TYPES),
        )
        for name, artifact, trusted in logged:
            model = models[name]
            uris[name] = mlflow.sklearn.log_model(
                model,
                name=artifact,
                signature=infer_signature(example, model.predict_proba(example)),
                input_example=example,
                serialization_format="skops",
                skops_trusted_types=trusted,
                pip_requirements=["scikit-learn", "skops"],
            ).model_uri
        run_id = str(run.info.run_id)
    candidates = CandidateRun(run_id, uris[GRADIENT_BOOSTING], uris[BASELINE])
    log_step("train_candidates", training.as_of, "success", candidates.as_dict())
    return candidates


@dataclass(frozen=True)
class Evaluation:
    """The test-window results of a run and the registered challenger version."""

    run_id: str
    model_version: str
    metrics: dict[str, float]
    baseline_metrics: dict[str, float]
    backtest: list[dict[str, float]] = field(default_factory=list)
    # the classical rankings on the same test window (recency, bgnbd)
    classical: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Small summary: run, version and a few headline metrics."""
        keys = ("roc_auc", "pr_auc", "ece")
        return {
            "run_id": self.run_id,
            "version": self.model_version,
            "metrics": {k: self.metrics[k] for k in keys},
            "baseline_metrics": {k: self.baseline_metrics[k] for k in keys},
            "classical_roc_auc": {
                name: found["roc_auc"] for name, found in self.classical.items()
            },
        }


def classical_baselines(
    part: WindowData,
    bgnbd: BgNbdParams | None,
    horizon_days: int,
    config: ModelConfig,
) -> dict[str, dict[str, float]]:
    """The classical churn rankings on one window: recency (days since the last
    purchase; ROC and PR AUC only, it is no probability) and, with a BG/NBD fit
    and the lifetime columns, BG/NBD's P(no purchase in the horizon) (all
    metrics)."""
    features = part.features
    out: dict[str, dict[str, float]] = {}
    if "recency_days" in features:
        out[RECENCY] = metrics.ranking_metrics(part.label, features["recency_days"])
    if bgnbd is not None and all(c in features for c in BGNBD_INPUTS):
        frequency, recency, age = (features[c].to_numpy() for c in BGNBD_INPUTS)
        out[BGNBD] = metrics.evaluate(
            part.label,
            p_no_purchase(bgnbd, horizon_days, frequency, recency, age),
            part.value,
            config.business,
            config.gate.ece_bins,
        )
    return out


def _score(
    model: CalibratedClassifierCV,
    part: WindowData,
    config: ModelConfig,
    p: np.ndarray | None = None,
) -> dict[str, float]:
    """Test metrics of ``model`` on ``part`` (``p``: its predictions, if known)."""
    return metrics.evaluate(
        part.label,
        model.predict_proba(part.features)[:, 1] if p is None else p,
        part.value,
        config.business,
        config.gate.ece_bins,
    )


def run_backtest(
    frame: pd.DataFrame,
    folds: list[SplitWindows],
    numeric: list[str],
    categorical: list[str],
    config: ModelConfig,
    bgnbd: list[BgNbdParams | None] | None = None,
    horizon_days: int = 30,
) -> list[dict[str, float]]:
    """Rolling-origin backtest: the challenger's test metrics on every fold
    (``bgnbd``: the BG/NBD fit of each fold's train window)."""
    results: list[dict[str, float]] = []
    for index, windows in enumerate(folds):
        parts = split_frame(frame, windows, numeric, categorical, config)
        fit = bgnbd[index] if bgnbd and index < len(bgnbd) else None
        model = _fit(
            GRADIENT_BOOSTING, parts, numeric, categorical, config, fit, horizon_days
        ).model
        results.append(_score(model, parts["test"], config))
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
    models: dict[str, CalibratedClassifierCV],
    test: WindowData,
    curves: dict[str, np.ndarray],
    config: ModelConfig,
) -> None:
    """ROC, PR, calibration, gain and permutation-importance plots of the test
    window; ``curves`` holds each model's test predictions."""
    import mlflow

    from ml.prediction import plots

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
    drops = metrics.permutation_importance(
        models[GRADIENT_BOOSTING],
        sample,
        test.label.loc[sample.index],
        repeats=config.importance_repeats,
        random_state=config.random_state,
    )
    importance = pd.Series(drops.mean(axis=1), index=list(sample.columns))
    mlflow.log_figure(
        plots.importance_figure(importance), "plots/permutation_importance.png"
    )
    mlflow.log_dict(
        {str(k): float(v) for k, v in importance.sort_values(ascending=False).items()},
        "importance.json",
    )


def evaluate(
    settings: Settings,
    path: Path | str,
    run_id: str,
    model_uri: str,
    baseline_uri: str,
    config: ModelConfig | None = None,
) -> Evaluation:
    """Score both logged candidates on the validation and test windows, run the
    backtest, log metrics, plots and the model card into ``run_id`` and register
    the challenger (``model_uri``) as a new version."""
    import mlflow

    from ml.prediction.registry import load_sklearn_model, register_challenger
    from ml.prediction.tracking import use_mlflow

    config = config or load_model_config()
    training = TrainingSet.load(Path(path))
    frame = training.frame()
    numeric, categorical = model_features(frame, training.windows, config)
    parts = split_frame(frame, training.windows, numeric, categorical, config)
    use_mlflow(settings, config)
    models = {
        GRADIENT_BOOSTING: load_sklearn_model(model_uri),
        BASELINE: load_sklearn_model(baseline_uri),
    }
    with threadpool_limits(limits=resolve_threads(config, settings.threads)):
        test = parts["test"]
        curves = {
            name: model.predict_proba(test.features)[:, 1]
            for name, model in models.items()
        }
        challenger = _score(
            models[GRADIENT_BOOSTING], test, config, curves[GRADIENT_BOOSTING]
        )
        p_validation = models[GRADIENT_BOOSTING].predict_proba(
            parts["validation"].features
        )[:, 1]
        validation = _score(
            models[GRADIENT_BOOSTING], parts["validation"], config, p_validation
        )
        baseline = _score(models[BASELINE], test, config, curves[BASELINE])
        backtest = run_backtest(
            frame,
            training.folds[1:],
            numeric,
            categorical,
            config,
            training.bgnbd[1:],
            training.horizon_days,
        )
        classical = classical_baselines(
            test, training.bgnbd_of(0), training.horizon_days, config
        )
        with mlflow.start_run(run_id=run_id):
            mlflow.log_metrics({f"test_{k}": v for k, v in challenger.items()})
            mlflow.log_metrics({f"validation_{k}": v for k, v in validation.items()})
            mlflow.log_metrics({f"baseline_test_{k}": v for k, v in baseline.items()})
            for name, found in classical.items():
                mlflow.log_metrics({f"{name}_test_{k}": v for k, v in found.items()})
            for fold, fold_metrics in enumerate(backtest, start=1):
                mlflow.log_metrics(
                    {f"backtest_{k}": v for k, v in fold_metrics.items()}, step=fold
                )
            if backtest:
                primary = config.gate.primary_metric
                values = [challenger[primary]] + [m[primary] for m in backtest]
                mlflow.log_metrics(
                    {
                        f"backtest_mean_{primary}": statistics.fmean(values),
                        f"backtest_std_{primary}": statistics.pstdev(values),
                    }
                )
            _log_plots(models, test, curves, config)
            mlflow.log_dict(
                build_reference(
                    parts["train"].features, numeric, categorical, p_validation
                ),
                REFERENCE_FILE,
            )
            mlflow.log_text(
                model_card(
                    training.as_of,
                    training.windows,
                    training.rows,
                    challenger,
                    baseline,
                    config,
                    training.horizon_days,
                    training.fingerprint,
                ),
                "model_card.md",
            )
    version = register_challenger(settings, model_uri, run_id, config)
    evaluation = Evaluation(run_id, version, challenger, baseline, backtest, classical)
    log_step("evaluate", training.as_of, "success", evaluation.as_dict())
    return evaluation


def gate(
    settings: Settings,
    path: Path | str,
    run_id: str,
    version: str,
    config: ModelConfig | None = None,
) -> GateDecision:
    """Judge challenger ``version`` against the champion on the test window of the
    training set in ``path``; the baseline's metrics come from ``run_id``.

    Records the decision and its evidence (a ``gate`` run and version tags) but
    does not move any alias: that is :func:`promote`. If ``version`` already is
    the champion (a rerun after promotion), its recorded decision is returned.
    """
    from mlflow.tracking import MlflowClient

    from ml.prediction.gate import judge_challenger, recorded_gate
    from ml.prediction.registry import CHAMPION, alias_version

    config = config or load_model_config()
    if alias_version(settings, CHAMPION, config) == version:
        recorded = recorded_gate(settings, version, config)
        if recorded is not None:
            log_step("gate", None, "success", recorded.as_dict() | {"recorded": True})
            return recorded
    training = TrainingSet.load(Path(path))
    frame = training.frame()
    # the champion may use features this run excludes: give the gate all of them
    every_feature = feature_columns(
        list(frame.columns), config.model_copy(update={"exclude_features": []})
    )
    test = window_data(frame, training.windows.test, *every_feature, config)
    logged = MlflowClient(settings.mlflow_tracking_uri).get_run(run_id).data.metrics
    prefix = "baseline_test_"
    baseline = {k[len(prefix) :]: v for k, v in logged.items() if k.startswith(prefix)}
    if not baseline:
        raise ValueError(f"run {run_id} has no baseline test metrics; evaluate first")
    classical = {
        name: {
            k[len(f"{name}_test_") :]: v
            for k, v in logged.items()
            if k.startswith(f"{name}_test_")
        }
        for name in CLASSICAL
    }
    classical = {name: found for name, found in classical.items() if found}
    with threadpool_limits(limits=resolve_threads(config, settings.threads)):
        decision = judge_challenger(
            settings,
            version,
            test.features,
            test.label,
            test.value,
            baseline,
            training.windows.test,
            config,
            classical=classical,
        )
    log_step("gate", training.as_of, "success", decision.as_dict())
    return decision


def promote(
    settings: Settings, version: str, config: ModelConfig | None = None
) -> Promotion:
    """Make ``version`` the champion if its gate decision says so (idempotent)."""
    from ml.prediction.gate import promote_gated

    promotion = promote_gated(settings, version, config or load_model_config())
    log_step("promote", None, "success", promotion.as_dict() | {"version": version})
    return promotion
