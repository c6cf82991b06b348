"""Data Docs of many nights in one process are rendered once, at the end.

A scheduled night renders its gate pages itself. The demo and ``loopline backfill``
run many nights in one process inside ``deferred_data_docs``: the nights skip the
rendering pass, and the block's end renders every night's pages in one pass.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from ml.config.settings import get_settings
from ml.ops.tasks import deferred_data_docs, validate_marts
from tests.integration.gates.gate_fixtures import DAY, features
from tests.integration.gates.test_marts_gate import write_features

YESTERDAY = DAY - timedelta(days=1)
BEFORE = DAY - timedelta(days=2)


def result_pages(docs: Path, day: object) -> list[Path]:
    """The rendered result pages of one run date (its run name is the date)."""
    return sorted(docs.glob(f"validations/**/{day}/*/*.html"))


def test_nights_in_a_deferred_block_render_once_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LOOPLINE_DATA_DOCS", raising=False)
    settings = get_settings()
    write_features(
        settings,
        *(pd.DataFrame(features(day, 10)) for day in (BEFORE, YESTERDAY, DAY)),
    )
    docs = settings.data_docs_dir

    # a night on its own renders its pages at once
    validate_marts(BEFORE)
    assert result_pages(docs, BEFORE)

    with deferred_data_docs(settings, YESTERDAY):
        assert get_settings().data_docs == "deferred"
        validate_marts(YESTERDAY)
        validate_marts(DAY)
        # validated and recorded, but nothing rendered yet
        assert not result_pages(docs, YESTERDAY)
        assert not result_pages(docs, DAY)

    # the block's end rendered both nights, and the setting is back
    assert get_settings().data_docs == "nightly"
    assert result_pages(docs, YESTERDAY)
    assert result_pages(docs, DAY)
    index = (docs / "index.html").read_text()
    assert str(DAY) in index and str(YESTERDAY) in index


def test_a_failing_night_still_gets_its_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LOOPLINE_DATA_DOCS", raising=False)
    settings = get_settings()
    bad = pd.DataFrame(features(DAY, 10))
    bad["recency_days"] = -5  # out of range: the mart gate fails
    write_features(settings, pd.DataFrame(features(YESTERDAY, 10)), bad)

    with (
        pytest.raises(Exception, match="recency_days"),
        deferred_data_docs(settings, YESTERDAY),
    ):
        validate_marts(YESTERDAY)
        validate_marts(DAY)
    assert result_pages(settings.data_docs_dir, DAY)
