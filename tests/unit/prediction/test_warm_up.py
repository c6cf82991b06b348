"""What history training needs: the feature warm-up and its shrinking for a young
log (``ml.prediction.training.plan_warm_up``)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from ml.config.model import ModelConfig, SplitConfig
from ml.prediction.examples import SplitWindows, split_windows
from ml.prediction.training import HistoryTooShortError, WarmUp, plan_warm_up

FIRST = date(2025, 1, 1)
WINDOWS = [7, 30, 90, 180]
HORIZON = 30


def plan(days: int, split: SplitConfig | None = None) -> tuple[WarmUp, SplitWindows]:
    config = ModelConfig(split=split or SplitConfig())
    as_of = FIRST + timedelta(days=days - 1)
    windows = split_windows(as_of, HORIZON, config)
    return plan_warm_up(FIRST, as_of, windows, WINDOWS, config.split, HORIZON), windows


def test_a_long_log_keeps_the_full_warm_up() -> None:
    warm_up, windows = plan(365)
    assert (warm_up.days, warm_up.full_days, warm_up.shrunk) == (180, 180, False)
    assert warm_up.end == FIRST + timedelta(days=179)
    # at least min_train_days of training snapshots lie after the warm-up
    assert warm_up.end is not None
    assert (windows.train.end - warm_up.end).days >= 14


def test_a_young_log_shrinks_the_warm_up_to_the_longest_window_that_fits() -> None:
    warm_up, windows = plan(200)
    # 200 days: the train window ends on day 54; 180 and 90 days do not fit
    assert warm_up.shrunk and warm_up.days == 30 and warm_up.full_days == 180
    assert warm_up.end == FIRST + timedelta(days=29)
    assert (windows.train.end - warm_up.end).days >= 14


def test_too_young_a_log_is_refused_saying_what_it_needs() -> None:
    with pytest.raises(HistoryTooShortError) as raised:
        plan(120)
    message = str(raised.value)
    assert "it holds 120 days (2025-01-01 to 2025-04-30)" in message
    assert "needs at least 167 (340 for the full 180-day feature look-back)" in message
    assert "30-day label horizon" in message and "config/model.yml" in message
    assert len(message.splitlines()) == 2
    # one day more than the minimum trains, with the shortest warm-up
    warm_up, _ = plan(167)
    assert warm_up.days == 7


def test_without_skipping_truncated_windows_nothing_is_left_out() -> None:
    warm_up, _ = plan(120, SplitConfig(skip_truncated_windows=False))
    assert warm_up.end is None and not warm_up.shrunk
