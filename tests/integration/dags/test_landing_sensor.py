"""check_landing waits for late partitions: each look says whether the data is
there, only the last one fails, and a look that finds nothing records nothing."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from ml.config.settings import Settings
from ml.contract.schema import TABLES
from ml.ops.status import collect_status
from ml.ops.tasks import (
    LandingNotReadyError,
    look_for_landing,
    record_run,
)
from ml.storage.landing_files import write_partition
from ml.storage.warehouse import connect

DAY = date(2025, 3, 2)


def _transactions(n: int) -> pa.Table:
    return pa.table(
        {
            "transaction_id": [f"T{i}" for i in range(n)],
            "customer_id": [f"C{i % 3}" for i in range(n)],
            "transaction_at": [datetime(2025, 3, 2, 9, i) for i in range(n)],
            "amount": [10.0 + i for i in range(n)],
            "category": ["grocery"] * n,
            "is_discounted": [False] * n,
        },
        schema=TABLES["transactions"].schema,
    )


def _check_landing_rows(settings: Settings) -> list[tuple[str, str]]:
    if not settings.warehouse_path.exists():
        return []
    with connect(settings.warehouse_path, read_only=True) as con:
        rows = con.execute(
            "select status, detail from ops.runs where step = 'check_landing'"
        ).fetchall()
    return [(str(s), str(d)) for s, d in rows]


def test_a_look_waits_until_the_partition_lands_and_the_last_one_fails(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home")

    # not there yet, another look will come: nothing raised, nothing recorded
    assert look_for_landing(DAY, settings, last_look=False) is None
    assert _check_landing_rows(settings) == []
    # the last look fails with the cause
    with pytest.raises(LandingNotReadyError, match="transactions"):
        look_for_landing(DAY, settings, last_look=True)

    write_partition(settings.landing_dir, "transactions", DAY, _transactions(3))
    summary = look_for_landing(DAY, settings, last_look=False)

    assert summary is not None and summary.counts["transactions"] == 1
    [(status, detail)] = _check_landing_rows(settings)
    assert status == "success" and json.loads(detail) == summary.counts


@pytest.mark.parametrize(
    ("elapsed", "last"),
    [(0, False), (3299, False), (3301, True), (3600, True), (0.0, True)],
    ids=["first", "before-last", "last", "at-timeout", "no-wait"],
)
def test_the_last_look_is_the_one_after_which_the_timeout_passes(
    elapsed: float, last: bool
) -> None:
    from loopline_airflow.sensors import is_last_look

    # poke every 300 s for 3600 s; "no-wait": an in-process run's timeout of 0
    timeout = 0 if last and elapsed == 0 else 3600
    assert is_last_look(elapsed, 300, timeout) is last


def test_retrain_steps_do_not_move_the_status_day(tmp_path: Path) -> None:
    """A retrain records its steps on its training date, which a run started by
    hand may put after the last nightly run: the status stays on that run."""
    settings = Settings(home=tmp_path / "home")
    settings.ensure_dirs()
    record_run(settings, DAY, "decide", "success", {})
    later = date(2026, 1, 1)
    for step in ("build_training_set", "train_candidates", "promote"):
        record_run(settings, later, step, "success", {})

    status = collect_status(
        settings,
        airflow_url="sqlite:///" + str(tmp_path / "none.db"),
        with_champion=False,
    )

    assert status.day == DAY
