"""The bulk landing gate gives the same raw and quarantine rows as day by day."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from ml.config.settings import Settings
from ml.data.validation import (
    ValidationGateError,
    validate_landing,
    validate_landing_history,
    validate_landing_range,
)
from ml.data.validation.landing_gate import history_chunks
from ml.storage.landing_files import write_partition, write_raw_partition
from tests.integration.gates.gate_fixtures import (
    DAY,
    at,
    customers,
    support_tickets,
    table,
    transactions,
)

D1, D2, D3 = DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)
COMPARED = {
    "customers": "select * from raw.customers order by all",
    "transactions": "select * from raw.transactions order by all",
    "support_tickets": "select * from raw.support_tickets order by all",
    "quarantine": "select * from ops.quarantine order by all",
    "rules": "select * exclude (example_values) from ops.validation_results "
    "where expectation_type = 'quarantine_rule' order by all",
}


def land_three_days(landing: Path) -> None:
    """Three days with a fault of every kind that depends on other days."""
    write_partition(landing, "customers", D1, table("customers", customers(D1)))
    day1 = transactions(D1)
    day1["transaction_at"][0] = at(D2)  # after its partition day
    write_partition(landing, "transactions", D1, table("transactions", day1))

    day2 = transactions(D2, 80)
    day2["customer_id"][0] = "C100"  # signs up only on D3
    day2["transaction_id"][1] = day1["transaction_id"][5]  # seen on D1
    day2["transaction_id"][2] = None
    write_partition(landing, "transactions", D2, table("transactions", day2))
    tickets = table("support_tickets", support_tickets(D2))
    write_partition(landing, "support_tickets", D2, tickets)

    write_partition(
        landing, "customers", D3, table("customers", customers(D3, ["C100"]))
    )
    day3 = transactions(D3)
    day3["customer_id"][0] = "C100"
    day3["transaction_id"][2] = day3["transaction_id"][3]
    write_partition(landing, "transactions", D3, table("transactions", day3))


def snapshot(settings: Settings) -> dict[str, list[tuple]]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return {k: con.execute(sql).fetchall() for k, sql in COMPARED.items()}


def test_range_equals_day_by_day(tmp_path: Path) -> None:
    bulk = Settings(home=tmp_path / "bulk")
    daily = Settings(home=tmp_path / "daily")
    for settings in (bulk, daily):
        land_three_days(settings.landing_dir)

    report = validate_landing_range(bulk, D1, D3, data_docs=False)
    reports = [validate_landing(daily, d, data_docs=False) for d in (D1, D2, D3)]

    assert snapshot(bulk) == snapshot(daily)
    tx = report.tables["transactions"]
    assert tx.partitions == 3 and tx.rows_read == 160
    assert tx.quarantined == {
        "future_event_time": 1,
        "unknown_customer": 1,
        "duplicate_key": 2,
        "null_key": 1,
    }
    assert (
        tx.rows_loaded
        == 155
        == sum(r.tables["transactions"].rows_loaded for r in reports)
    )
    assert report.tables["support_tickets"].partitions == 1
    assert report.tables["action_results"].status == "absent"
    # rerunning the range changes nothing
    validate_landing_range(bulk, D1, D3, data_docs=False)
    assert snapshot(bulk) == snapshot(daily)


def test_a_failing_day_stops_the_whole_range(settings: Settings) -> None:
    land_three_days(settings.landing_dir)
    validate_landing(settings, D1, data_docs=False)
    broken = table("transactions", transactions(D2)).drop_columns(["category"])
    write_raw_partition(settings.landing_dir, "transactions", D2, broken)

    with pytest.raises(
        ValidationGateError, match="transactions dt=2025-03-03: .*'category'"
    ):
        validate_landing_range(settings, D1, D3, data_docs=False)

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        loaded = con.execute(
            "select partition_date, count(*) from raw.transactions group by 1"
        ).fetchall()
    assert loaded == [(D1, 39)]  # D1 from before; nothing of the range run


def test_a_missing_required_day_is_named(settings: Settings) -> None:
    land_three_days(settings.landing_dir)
    with pytest.raises(
        ValidationGateError, match=r"transactions dt=2025-03-05: .*missing"
    ):
        validate_landing_range(settings, D1, D3 + timedelta(days=1), data_docs=False)


def test_a_truncated_file_stops_the_rebuild_naming_table_and_file(
    settings: Settings,
) -> None:
    """The bulk rebuild (ml.ops.tasks.rebuild) reads every landed day; a truncated
    Parquet file gives one line naming the table and the file, nothing is loaded,
    and the rows the stopped run set aside say they were not loaded."""
    from ml.ops.tasks import rebuild

    land_three_days(settings.landing_dir)
    folder = settings.landing_dir / "support_tickets" / "dt=2025-03-03"
    path = folder / "part-0000.parquet"
    path.write_bytes(path.read_bytes()[:100])  # a copy cut short

    with pytest.raises(ValidationGateError) as caught:
        rebuild(D1, D3, settings=settings)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        "support_tickets dt=2025-03-03: cannot read landing file "
        "support_tickets/dt=2025-03-03/part-0000.parquet of table support_tickets: "
        "ArrowInvalid: "
    )
    assert "magic bytes" in message
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        assert con.execute("select count(*) from raw.transactions").fetchone() == (0,)
        quarantined = con.execute(
            "select table_name, loaded, count(*) from ops.quarantine group by all"
        ).fetchall()
        step = con.execute(
            "select status, detail from ops.runs where step = 'rebuild'"
        ).fetchall()
    # the transactions' bad rows were set aside, but the run stopped: not loaded
    assert quarantined == [("transactions", False, 5)]
    assert step and step[0][0] == "failed" and "cannot read landing file" in step[0][1]


def test_history_in_chunks_equals_one_range(tmp_path: Path) -> None:
    """The history gate (ml.ops.tasks.rebuild) in chunks of a day gives the rows of
    one range call: each chunk sees the customers the chunks before it loaded."""
    chunked = Settings(home=tmp_path / "chunked")
    whole = Settings(home=tmp_path / "whole")
    for settings in (chunked, whole):
        land_three_days(settings.landing_dir)
    assert history_chunks(chunked, D1, D3, 1) == [(D1, D1), (D2, D2), (D3, D3)]
    assert history_chunks(chunked, D1, D3, 10**9) == [(D1, D3)]

    seen: list[tuple[object, object]] = []
    report = validate_landing_history(
        chunked,
        D1,
        D3,
        chunk_bytes=1,
        data_docs=False,
        on_chunk=lambda a, b: seen.append((a, b)),
    )
    one = validate_landing_range(whole, D1, D3, data_docs=False)

    assert seen == [(D1, D1), (D2, D2), (D3, D3)]
    assert snapshot(chunked)["transactions"] == snapshot(whole)["transactions"]
    assert snapshot(chunked)["quarantine"] == snapshot(whole)["quarantine"]
    assert snapshot(chunked)["customers"] == snapshot(whole)["customers"]
    assert (report.start, report.end, report.passed) == (D1, D3, True)
    for name in ("customers", "transactions", "support_tickets", "action_results"):
        mine, theirs = report.tables[name], one.tables[name]
        assert (mine.status, mine.partitions, mine.rows_read, mine.rows_loaded) == (
            theirs.status,
            theirs.partitions,
            theirs.rows_read,
            theirs.rows_loaded,
        ), name
        assert mine.quarantined == theirs.quarantined, name


def test_a_failing_chunk_keeps_the_chunks_before_it(settings: Settings) -> None:
    land_three_days(settings.landing_dir)
    broken = table("transactions", transactions(D3)).drop_columns(["category"])
    write_raw_partition(settings.landing_dir, "transactions", D3, broken)

    with pytest.raises(ValidationGateError) as caught:
        validate_landing_history(settings, D1, D3, chunk_bytes=1, data_docs=False)

    message = str(caught.value)
    assert message.startswith("transactions dt=2025-03-04: ")
    assert "'category'" in message
    assert "loaded: 2025-03-02..2025-03-03" in message
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        loaded = con.execute(
            "select partition_date, count(*) from raw.transactions "
            "group by 1 order by 1"
        ).fetchall()
    # D1 and D2 passed in their chunks and stay loaded; nothing of D3
    assert [day for day, _ in loaded] == [D1, D2]
