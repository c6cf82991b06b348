"""Where the business config comes from: the environment, the home, the repo."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.cli.demo_command import with_horizon
from ml.config.settings import REPO_ROOT, get_settings, load_business_config


def test_a_home_with_its_own_config_keeps_it_for_every_later_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``loopline demo --quick`` writes the home's config with H = 7; a later
    ``loopline report`` on that home (a new process, no LOOPLINE_CONFIG_FILE) must
    measure with the same horizon, not the repository's."""
    # with_horizon sets LOOPLINE_CONFIG_FILE itself: setting it here first makes
    # monkeypatch record (and restore) the variable's state before the test
    monkeypatch.setenv("LOOPLINE_CONFIG_FILE", "unset-below")
    monkeypatch.delenv("LOOPLINE_CONFIG_FILE")
    monkeypatch.setenv("LOOPLINE_HOME", str(tmp_path / "home"))
    fresh = get_settings()
    assert fresh.config_file == REPO_ROOT / "config" / "loopline.yml"
    repo_horizon = load_business_config().horizon_days
    assert repo_horizon != 7

    written = with_horizon(fresh, 7)
    assert written.config_file == tmp_path / "home" / "config" / "loopline.yml"
    monkeypatch.delenv("LOOPLINE_CONFIG_FILE")  # as in a new process
    later = get_settings()
    assert later.config_file == written.config_file
    assert load_business_config().horizon_days == 7
    # the environment still wins over the home's file
    monkeypatch.setenv("LOOPLINE_CONFIG_FILE", str(REPO_ROOT / "config/loopline.yml"))
    assert load_business_config().horizon_days == repo_horizon


def test_every_landing_table_has_a_minimum_of_bad_rows(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from ml.config.settings import MinBadRows
    from ml.contract.schema import TABLES

    shipped = load_business_config(REPO_ROOT / "config" / "loopline.yml")
    assert set(MinBadRows.model_fields) == set(TABLES)
    assert {t: shipped.validation.min_bad_rows.of(t) for t in TABLES} == dict.fromkeys(
        TABLES, 5
    )
    typo = tmp_path / "loopline.yml"
    typo.write_text("validation:\n  min_bad_rows:\n    customer: 1\n")
    with pytest.raises(ValidationError, match="customer"):
        load_business_config(typo)
