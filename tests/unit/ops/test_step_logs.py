"""Every pipeline step logs one structured line (JSON) with its counts."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from ml.config.settings import Settings
from ml.config.steplog import LOGGER_NAME, STEP_EVENT
from ml.contract.schema import TABLES
from ml.ops.tasks import check_landing, nightly_decided, record_run
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


def _step_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.name == LOGGER_NAME and STEP_EVENT in r.getMessage()
    ]


def test_a_step_logs_one_json_line_with_its_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path / "home")
    write_partition(settings.landing_dir, "transactions", DAY, _transactions(4))
    write_partition(settings.landing_dir, "transactions", DAY, _transactions(2), part=1)

    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        summary = check_landing(DAY, settings)

    [line] = _step_lines(caplog)
    assert line["step"] == "check_landing"
    assert line["run_date"] == "2025-03-02"
    assert line["status"] == "success"
    assert len(line["config_hash"]) == 16
    # the counts are the step's own (what ops.runs.detail and XCom carry)
    assert line["counts"] == summary.counts
    assert line["counts"]["transactions"] == 2
    with connect(settings.warehouse_path, read_only=True) as con:
        detail = con.execute(
            "select detail from ops.runs where step = 'check_landing'"
        ).fetchone()
    assert detail is not None and json.loads(detail[0]) == line["counts"]

    # the feedback run's sensor reads that record
    assert not nightly_decided(DAY, settings)
    record_run(settings, DAY, "decide", "success", {"arms": {"treated": 3}})
    assert nightly_decided(DAY, settings)


def test_a_failed_step_logs_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path / "home")
    settings.ensure_dirs()
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        record_run(settings, DAY, "validate_landing", "failed", {"error": "boom"})
    [record] = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert record.levelno == logging.WARNING
    assert json.loads(record.getMessage())["counts"] == {"error": "boom"}
