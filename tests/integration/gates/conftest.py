"""Fixtures of the gate tests; the data builders are in ``gate_fixtures``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.config.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings rooted in a fresh temporary home."""
    return Settings(home=tmp_path / "home")
