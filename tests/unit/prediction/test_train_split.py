"""The out-of-time split, snapshot thinning and metrics (no MLflow)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from ml.config.model import ModelConfig
from ml.prediction.examples import (
    backtest_windows,
    feature_columns,
    load_examples,
    split_windows,
)
from ml.prediction.metrics import evaluate, expected_calibration_error
from ml.sim.marts import write_synthetic_marts
from ml.storage.warehouse import connect


@pytest.mark.parametrize("horizon", [7, 30, 45])
@pytest.mark.parametrize("gap", [0, 7, 60])
@pytest.mark.parametrize("as_of", [date(2024, 6, 30), date(2025, 1, 1)])
def test_windows_are_ordered_with_a_gap_of_at_least_the_horizon(
    horizon: int, gap: int, as_of: date
) -> None:
    config = ModelConfig()
    config.split.gap_days = gap
    w = split_windows(as_of, horizon, config)
    assert w.gap_days >= horizon
    assert w.test.end == as_of - timedelta(days=horizon)
    assert w.test.days == config.split.test_days
    assert w.validation.days == config.split.validation_days
    assert w.train.start <= w.train.end < w.validation.start <= w.validation.end
    assert w.validation.end < w.test.start <= w.test.end
    # the last training label window (d, d + H] ends before validation features
    assert w.train.end + timedelta(days=horizon) < w.validation.start
    assert w.validation.end + timedelta(days=horizon) < w.test.start
    assert (w.validation.start - w.train.end).days - 1 == w.gap_days
    assert (w.test.start - w.validation.end).days - 1 == w.gap_days


def test_backtest_folds_move_back_and_keep_the_gap() -> None:
    config = ModelConfig()
    config.backtest.folds = 3
    config.backtest.step_days = 14
    folds = backtest_windows(date(2024, 12, 31), 30, config)
    assert len(folds) == 4
    for earlier, later in zip(folds[1:], folds, strict=False):
        assert later.test.end - earlier.test.end == timedelta(days=14)
        assert earlier.train.end + timedelta(days=30) < earlier.validation.start


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("split") / "warehouse.duckdb"
    write_synthetic_marts(path, 60, date(2024, 1, 1), 90, seed=3, horizon_days=7)
    return path


def test_only_matured_labels_are_read(warehouse: Path) -> None:
    config = ModelConfig()
    as_of = date(2024, 3, 1)
    frame = load_examples(warehouse, date(2023, 1, 1), as_of, as_of, 7, config)
    assert not frame.empty
    assert max(frame["as_of_date"]) <= as_of - timedelta(days=7)


def test_rerun_for_a_past_date_reads_the_same_rows(warehouse: Path) -> None:
    config = ModelConfig()
    as_of = date(2024, 2, 20)
    first = load_examples(warehouse, date(2023, 1, 1), as_of, as_of, 7, config)
    again = load_examples(warehouse, date(2023, 1, 1), as_of, as_of, 7, config)
    assert first.equals(again)


def test_thinning_keeps_one_snapshot_per_customer_every_n_days(
    warehouse: Path,
) -> None:
    config = ModelConfig()
    config.thinning.every_days = 7
    frame = load_examples(
        warehouse, date(2023, 1, 1), date(2024, 4, 1), date(2024, 4, 1), 7, config
    )
    for _, dates in frame.groupby("customer_id")["as_of_date"]:
        gaps = {(b - a).days for a, b in zip(dates, dates[1:], strict=False)}
        assert gaps == {7}
    # the phase differs between customers, so several weekdays are represented
    assert frame["as_of_date"].map(lambda d: d.weekday()).nunique() > 1
    config.thinning.every_days = 1
    everything = load_examples(
        warehouse, date(2023, 1, 1), date(2024, 4, 1), date(2024, 4, 1), 7, config
    )
    assert len(everything) > 6 * len(frame)


def test_thinning_keeps_every_snapshot_of_a_weekly_rebuild(tmp_path: Path) -> None:
    # a history rebuilt with --every 7 has one snapshot per customer a week:
    # thinning to one a week must keep them all, not the customers whose phase
    # happens to match the rebuild's weekday
    warehouse = tmp_path / "warehouse.duckdb"
    write_synthetic_marts(warehouse, 300, date(2024, 1, 1), 120, seed=3)
    with connect(warehouse) as con:
        con.execute(
            "delete from marts.training_examples "
            "where datediff('day', date '2024-01-01', as_of_date) % 7 <> 0"
        )
        weekly = con.execute("select count(*) from marts.training_examples").fetchall()
    config = ModelConfig()
    config.thinning.every_days = 7
    frame = load_examples(
        warehouse, date(2023, 1, 1), date(2024, 6, 1), date(2024, 6, 1), 7, config
    )
    assert len(frame) == weekly[0][0] > 0


def test_a_weekly_rebuild_followed_by_nightly_runs_is_thinned_by_each_part(
    tmp_path: Path,
) -> None:
    # weekly snapshots up to a rebuild's end, then one a night: the weekly ones are
    # all kept, the nightly ones thinned to one a customer every seven days
    warehouse = tmp_path / "warehouse.duckdb"
    write_synthetic_marts(warehouse, 300, date(2024, 1, 1), 120, seed=3)
    nightly_from = date(2024, 3, 11)  # 70 days in: a weekly date, then nightly
    with connect(warehouse) as con:
        con.execute(
            "delete from marts.training_examples where as_of_date < ? "
            "and datediff('day', date '2024-01-01', as_of_date) % 7 <> 0",
            [nightly_from],
        )
        weekly, nightly = con.execute(
            "select count(*) filter (where as_of_date <= ?), "
            "count(*) filter (where as_of_date > ?) from marts.training_examples",
            [nightly_from, nightly_from],
        ).fetchone()
    config = ModelConfig()
    config.thinning.every_days = 7
    frame = load_examples(
        warehouse, date(2023, 1, 1), date(2024, 6, 1), date(2024, 6, 1), 7, config
    )
    before = frame[frame["as_of_date"] <= nightly_from]
    after = frame[frame["as_of_date"] > nightly_from]
    assert len(before) == weekly > 0
    assert 0.12 * nightly <= len(after) <= 0.16 * nightly  # about one in seven
    for _, dates in after.groupby("customer_id")["as_of_date"]:
        gaps = {(b - a).days for a, b in zip(dates, dates[1:], strict=False)}
        assert gaps <= {7}
    assert after["as_of_date"].map(lambda d: d.weekday()).nunique() == 7


def test_label_and_key_columns_are_never_features(warehouse: Path) -> None:
    config = ModelConfig()
    frame = load_examples(
        warehouse, date(2023, 1, 1), date(2024, 2, 1), date(2024, 2, 1), 7, config
    )
    numeric, categorical = feature_columns(list(frame.columns), config)
    forbidden = set(config.label_columns) | set(config.key_columns)
    assert not forbidden & set(numeric + categorical)
    assert categorical == ["plan", "region", "acquisition_channel"]
    assert len(numeric) == 24


def test_ece_is_small_for_calibrated_predictions_and_large_otherwise() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20_000)
    y = rng.uniform(0, 1, 20_000) < p
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, np.clip(p + 0.3, 0, 1)) > 0.2


def test_lift_and_capture_of_a_perfect_ranking() -> None:
    config = ModelConfig()
    y = np.array([1] * 10 + [0] * 90)
    p = np.linspace(1, 0, 100)
    value = np.full(100, 10.0)
    metrics = evaluate(y, p, value, config.business)
    assert metrics["capture_top10"] == 1.0
    assert metrics["lift_top10"] == pytest.approx(10.0)
    assert metrics["value_capture_top10"] == 1.0
    expected = config.business.save_rate * 100 - config.business.contact_cost * 10
    assert metrics["net_value_top10"] == pytest.approx(expected)
