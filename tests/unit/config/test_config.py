"""Where the business config comes from: the environment, the home, the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer

from ml.cli.demo_command import with_horizon
from ml.config.settings import REPO_ROOT, get_settings, load_business_config


def test_a_home_with_its_own_config_keeps_it_for_every_later_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``loopline demo --quick`` writes the home's config with H = 7; a later
    ``loopline report`` on that home (a new process, no LOOPLINE_CONFIG_FILE) must
    measure with the same horizon, not the repository's."""
    monkeypatch.delenv("LOOPLINE_CONFIG_FILE", raising=False)
    monkeypatch.setenv("LOOPLINE_HOME", str(tmp_path / "home"))
    fresh = get_settings()
    assert fresh.config_file == REPO_ROOT / "config" / "loopline.yml"
    repo_horizon = load_business_config().horizon_days
    assert repo_horizon != 7

    written = with_horizon(fresh, 7)
    assert written.config_file == tmp_path / "home" / "config" / "loopline.yml"
    assert "LOOPLINE_CONFIG_FILE" not in os.environ  # the environment is untouched
    later = get_settings()  # as in a new process
    assert later.config_file == written.config_file
    assert load_business_config().horizon_days == 7
    # the environment still wins over the home's file
    monkeypatch.setenv("LOOPLINE_CONFIG_FILE", str(REPO_ROOT / "config/loopline.yml"))
    assert load_business_config().horizon_days == repo_horizon
    # ... so the demo refuses to run where its copy would be ignored
    with pytest.raises(typer.BadParameter, match="unset LOOPLINE_CONFIG_FILE"):
        with_horizon(get_settings(), 7)


@pytest.mark.parametrize(
    ("name", "load", "stamp"),
    [
        ("loopline.yml", "business", "config_hash"),
        ("model.yml", "model", "config_hash"),
        ("policy.yml", "policy", "policy_version"),
    ],
)
def test_every_config_file_follows_one_path_rule_and_one_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, load: str, stamp: str
) -> None:
    """The home's own ``config/<name>`` wins over the repository's, and each file
    is versioned by the sha256 of its bytes (16 hex characters)."""
    from ml.config.files import config_path, content_hash
    from ml.config.model import load_model_config
    from ml.config.policy import load_policy_config

    loaders = {
        "business": load_business_config,
        "model": load_model_config,
        "policy": load_policy_config,
    }
    monkeypatch.delenv("LOOPLINE_CONFIG_FILE", raising=False)
    monkeypatch.setenv("LOOPLINE_HOME", str(tmp_path))
    shipped = REPO_ROOT / "config" / name
    assert config_path(name) == shipped
    repo_stamp = getattr(loaders[load](), stamp)
    assert repo_stamp == content_hash(shipped.read_bytes())

    own = tmp_path / "config" / name
    own.parent.mkdir(parents=True)
    own.write_bytes(shipped.read_bytes() + b"\n# the home's own copy\n")
    assert config_path(name) == own
    home_stamp = getattr(loaders[load](), stamp)
    assert home_stamp == content_hash(own.read_bytes()) != repo_stamp


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


def test_a_config_file_is_parsed_once_per_content_and_read_every_time(
    tmp_path: Path,
) -> None:
    from ml.config.files import read_yaml

    path = tmp_path / "loopline.yml"
    path.write_text("horizon_days: 30\nfeatures:\n  windows: [7, 30]\n")
    first, first_hash = read_yaml(path)
    first["features"]["windows"].append(90)  # a caller's copy is its own
    again, again_hash = read_yaml(path)
    assert again == {"horizon_days": 30, "features": {"windows": [7, 30]}}
    assert again_hash == first_hash
    path.write_text("horizon_days: 14\n")  # a changed file is read anew
    changed, changed_hash = read_yaml(path)
    assert changed == {"horizon_days": 14} and changed_hash != first_hash
    path.write_text("- not\n- a mapping\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        read_yaml(path)
