"""Scoring a feature snapshot with the champion into marts.scores."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from ml.config.model import ModelConfig
from ml.config.settings import Settings
from ml.prediction.registry import CHAMPION, alias_version, load_model
from ml.prediction.score import ScoreSchemaError, ScoreSummary, score
from ml.prediction.train import train
from ml.sim.marts import write_synthetic_marts
from ml.storage.warehouse import connect

RUN_DATE = date(2024, 4, 29)


@dataclass
class Scored:
    settings: Settings
    config: ModelConfig
    before_training: ScoreSummary


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Scored:
    home = tmp_path_factory.mktemp("score")
    config_file = home / "loopline.yml"
    config_file.write_text("horizon_days: 7\n")
    settings = Settings(home=home, config_file=config_file)
    write_synthetic_marts(
        settings.warehouse_path, 300, date(2024, 1, 1), 120, seed=5, horizon_days=7
    )
    config = ModelConfig()
    config.split.test_days = 14
    config.split.validation_days = 14
    config.gradient_boosting.max_iter = 50
    config.gate.max_ece = 0.2
    config.importance_rows = 200
    config.importance_repeats = 1
    before = score(settings, RUN_DATE, config=config)
    result = train(settings, RUN_DATE, config)
    assert result.promoted, result.gate
    return Scored(settings, config, before)


def _scores(settings: Settings, day: date) -> list[tuple[object, ...]]:
    with connect(settings.warehouse_path, read_only=True) as con:
        return con.execute(
            "select * from marts.scores where run_date = ? order by customer_id", [day]
        ).fetchall()


def test_no_champion_is_recorded_and_succeeds(scored: Scored) -> None:
    assert scored.before_training.scored == 0
    assert scored.before_training.reason == "no champion"


def test_chunked_equals_unchunked_and_rerun_is_identical(scored: Scored) -> None:
    settings, config = scored.settings, scored.config
    whole = score(settings, RUN_DATE, batch_size=1_000_000, config=config)
    rows_whole = _scores(settings, RUN_DATE)
    chunked = score(settings, RUN_DATE, batch_size=37, config=config)
    rows_chunked = _scores(settings, RUN_DATE)
    again = score(settings, RUN_DATE, batch_size=37, config=config)
    assert whole.scored == chunked.scored == again.scored == 300
    assert rows_whole == rows_chunked == _scores(settings, RUN_DATE)
    assert len({row[1] for row in rows_whole}) == 300


def test_scores_come_from_the_champion_loaded_by_alias(scored: Scored) -> None:
    settings, config = scored.settings, scored.config
    summary = score(settings, RUN_DATE, config=config)
    version = alias_version(settings, CHAMPION, config)
    assert summary.model_version == version
    rows = _scores(settings, RUN_DATE)
    assert {(row[3], row[4]) for row in rows} == {(version, CHAMPION)}
    assert all(0.0 <= float(row[2]) <= 1.0 for row in rows)  # type: ignore[arg-type]
    loaded = load_model(settings, CHAMPION, config=config)
    assert loaded is not None and loaded.version == version


def test_other_dates_are_left_alone(scored: Scored) -> None:
    settings, config = scored.settings, scored.config
    score(settings, date(2024, 4, 28), config=config)
    before = _scores(settings, date(2024, 4, 28))
    score(settings, RUN_DATE, config=config)
    assert _scores(settings, date(2024, 4, 28)) == before


@pytest.mark.parametrize(
    "change",
    [
        "rename column recency_days to recency",
        "alter column plan type integer using 1",
    ],
)
def test_schema_mismatch_raises_a_clear_error(scored: Scored, change: str) -> None:
    settings, config = scored.settings, scored.config
    before = _scores(settings, RUN_DATE)
    with connect(settings.warehouse_path) as con:
        con.execute(
            "create table marts.features_backup as from marts.customer_features"
        )
        con.execute(f"alter table marts.customer_features {change}")
    try:
        with pytest.raises(ScoreSchemaError, match="does not match model version"):
            score(settings, RUN_DATE, config=config)
    finally:
        with connect(settings.warehouse_path) as con:
            con.execute("drop table marts.customer_features")
            con.execute("alter table marts.features_backup rename to customer_features")
    assert _scores(settings, RUN_DATE) == before


def test_a_missing_model_version_is_a_clear_error(scored: Scored) -> None:
    from ml.prediction.registry import ModelLoadError

    with pytest.raises(ModelLoadError, match="cannot load"):
        load_model(scored.settings, version="999", config=scored.config)


def test_empty_snapshot_scores_nothing(scored: Scored, tmp_path: Path) -> None:
    summary = score(scored.settings, date(2030, 1, 1), config=scored.config)
    assert summary.scored == 0 and summary.reason == "no feature rows"


def test_no_champion_clears_that_dates_scores_only(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        con.execute("create schema marts")
        con.execute(
            "create table marts.scores (run_date date not null, customer_id varchar "
            "not null, p_churn double not null, model_version varchar not null, "
            "model_alias varchar not null)"
        )
        con.execute(
            "insert into marts.scores values "
            "(?, 'a', 0.1, '1', 'champion'), (?, 'a', 0.2, '1', 'champion')",
            [RUN_DATE, date(2024, 4, 28)],
        )
    summary = score(settings, RUN_DATE, config=ModelConfig())
    assert (summary.scored, summary.reason) == (0, "no champion")
    assert _scores(settings, RUN_DATE) == []
    assert len(_scores(settings, date(2024, 4, 28))) == 1
