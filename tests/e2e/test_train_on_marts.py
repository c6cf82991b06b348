"""The prediction layer on marts that dbt really built from a simulated world.

The unit tests of ml.prediction.train use synthetic marts; this one checks the seam: the
simulator's landing data → gates → dbt marts → training, registry and scoring.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from ml.config.settings import Settings
from ml.storage.warehouse import connect

START = date(2024, 1, 1)
DAYS = 230
LAST = START + timedelta(days=DAYS - 1)
# the bulk build keeps a snapshot every 7 days: the newest one
SNAPSHOT = START + timedelta(days=7 * ((DAYS - 1) // 7))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    import os

    from ml.ops.tasks import rebuild
    from ml.sim import load_sim_config, simulate

    os.environ.setdefault("LOOPLINE_DBT_LOG_LEVEL", "warn")
    settings = Settings(home=Path(tmp_path_factory.mktemp("train-on-marts")))
    settings.ensure_dirs()
    config = load_sim_config().model_copy(
        update={"n_customers": 1500, "seed": 3, "drift": None}
    )
    simulate(settings, config, start=START, days=DAYS, progress=False)
    rebuild(START, LAST, every=7, settings=settings)
    return settings


def test_train_promote_and_score_on_real_marts(built: Settings) -> None:
    from ml.config.model import load_model_config
    from ml.prediction.registry import alias_version, promote
    from ml.prediction.score import score
    from ml.prediction.train import train

    config = load_model_config()
    config = config.model_copy(
        update={
            "split": config.split.model_copy(
                update={
                    "train_days": 84,
                    "validation_days": 21,
                    "test_days": 21,
                    # a 230-day world is shorter than the 180-day feature window
                    # plus the split
                    "skip_truncated_windows": False,
                }
            ),
            "thinning": config.thinning.model_copy(update={"every_days": 1}),
        }
    )
    result = train(built, LAST, config=config)

    assert result.rows["train"] > 0 and result.rows["test"] > 0
    # the simulated hazard is driven by observable behaviour: the model finds it
    assert 0.6 < result.metrics["roc_auc"] <= 1.0
    assert 0.0 <= result.metrics["ece"] <= 1.0
    # only labels that had matured by the training date were used
    assert result.windows.test.end <= LAST - timedelta(days=30)

    if alias_version(built, "champion", config=config) is None:
        promote(built, result.model_version, reason="integration test", config=config)
    assert alias_version(built, "champion", config=config) == result.model_version

    summary = score(built, SNAPSHOT, config=config)
    with connect(built.warehouse_path, read_only=True) as con:
        snapshot = con.execute(
            "select count(*) from marts.customer_features where as_of_date = ?",
            [SNAPSHOT],
        ).fetchone()
        scores = con.execute(
            "select count(*), min(p_churn), max(p_churn), any_value(model_version) "
            "from marts.scores where run_date = ?",
            [SNAPSHOT],
        ).fetchone()
    assert snapshot is not None and scores is not None
    assert summary.scored == snapshot[0] == scores[0] > 0
    assert 0.0 <= scores[1] <= scores[2] <= 1.0
    assert scores[3] == result.model_version
