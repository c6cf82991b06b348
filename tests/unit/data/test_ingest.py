"""Tests for ml.data.ingest: an external transaction log becomes landing partitions."""

from __future__ import annotations

import csv
import gzip
import hashlib
import random
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from ml.config.settings import Settings
from ml.contract.schema import CUSTOMERS, TRANSACTIONS
from ml.data.ingest import ImportInputError, ImportSummary, import_transactions
from ml.storage.landing_files import (
    is_declared_empty,
    list_partition_dates,
    partition_dir,
    partition_files,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
LOG = FIXTURES / "transactions_custom.csv"
DATE_FORMAT = "%d/%m/%Y %H:%M"

# What the fixture holds: 20 rows, 3 of them bad (a 31 February, an amount "n/a",
# a missing customer), 5 customers over 9 purchase days.
GOOD_DAYS = [
    date(2024, 1, 3),
    date(2024, 1, 5),
    date(2024, 1, 6),
    date(2024, 1, 7),
    date(2024, 1, 10),
    date(2024, 1, 12),
    date(2024, 1, 13),
    date(2024, 1, 14),
    date(2024, 1, 15),
]
FIRST_PURCHASES = {
    "C001": datetime(2024, 1, 3, 9, 15),
    "C002": datetime(2024, 1, 3, 17, 40),
    "C003": datetime(2024, 1, 5, 12, 0),
    "C004": datetime(2024, 1, 7, 10, 10),
    "C005": datetime(2024, 1, 10, 16, 20),
}


def _settings(home: Path) -> Settings:
    return Settings(home=home)


def _import(settings: Settings, path: Path = LOG, **options: object) -> ImportSummary:
    kwargs: dict[str, object] = {
        "customer_col": "client",
        "date_col": "purchased",
        "amount_col": "total",
        "date_format": DATE_FORMAT,
        "category_col": "kind",
        "progress": False,
    }
    kwargs.update(options)
    return import_transactions(settings, path, **kwargs)  # type: ignore[arg-type]


def _read_table(settings: Settings, table: str) -> pa.Table:
    """All partitions of a landing table, with a ``dt`` column, in a stable order."""
    parts = []
    for day in list_partition_dates(settings.landing_dir, table):
        for file in partition_files(settings.landing_dir, table, day):
            data = pq.read_table(file)
            parts.append(
                data.append_column("dt", pa.array([day] * data.num_rows, pa.date32()))
            )
    return pa.concat_tables(parts)


def _rejected_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path / "home")


def _partition_rows(settings: Settings, day: date) -> int:
    folder = partition_dir(settings.landing_dir, "transactions", day)
    return pq.read_table(folder / "part-0000.parquet").num_rows


def test_one_partition_per_purchase_day_with_contract_schema(
    settings: Settings,
) -> None:
    summary = _import(settings)

    span = [
        GOOD_DAYS[0] + timedelta(days=i)
        for i in range((GOOD_DAYS[-1] - GOOD_DAYS[0]).days + 1)
    ]
    # every day of the log's span has a partition; days without sales are empty
    assert list_partition_dates(settings.landing_dir, "transactions") == span
    for day in span:
        if day not in GOOD_DAYS:
            assert is_declared_empty(settings.landing_dir, "transactions", day)
            assert _partition_rows(settings, day) == 0
    for day in GOOD_DAYS:
        folder = partition_dir(settings.landing_dir, "transactions", day)
        assert [p.name for p in folder.iterdir()] == ["part-0000.parquet"]
        data = pq.read_table(folder / "part-0000.parquet")
        assert data.schema.equals(TRANSACTIONS.schema)
        # dt is the UTC date of the purchase
        assert {ts.date() for ts in data["transaction_at"].to_pylist()} == {day}

    assert summary.rows_read == 20
    assert summary.rows_written == 17
    assert summary.rejected == 3
    assert summary.days == len(GOOD_DAYS)
    assert summary.empty_days == len(span) - len(GOOD_DAYS)
    assert summary.customers == 5
    assert (summary.first_day, summary.last_day) == (GOOD_DAYS[0], GOOD_DAYS[-1])
    assert "rows written" in summary.describe()


def test_values_follow_the_contract(settings: Settings) -> None:
    _import(settings)
    rows = _read_table(settings, "transactions").to_pylist()
    assert len(rows) == 17

    by_time = {(r["customer_id"], r["transaction_at"]): r for r in rows}
    first = by_time[("C001", datetime(2024, 1, 3, 9, 15))]
    assert first["amount"] == 12.5
    assert first["category"] == "grocery"  # "Grocery" is case-folded
    assert first["is_discounted"] is False
    # a currency symbol is stripped from a text amount
    assert by_time[("C001", datetime(2024, 1, 7, 21, 45))]["amount"] == 23.1
    # unknown and empty categories become "other"
    assert by_time[("C002", datetime(2024, 1, 6, 19, 30))]["category"] == "other"
    assert by_time[("C005", datetime(2024, 1, 10, 16, 20))]["category"] == "other"
    assert by_time[("C003", datetime(2024, 1, 15, 10, 0))]["category"] == "grocery"

    assert {r["category"] for r in rows} <= {
        "grocery",
        "home",
        "fashion",
        "electronics",
        "beauty",
        "sports",
        "other",
    }
    assert all(r["transaction_at"].tzinfo is None for r in rows)


def test_date_format_is_respected(settings: Settings) -> None:
    _import(settings)
    days = list_partition_dates(settings.landing_dir, "transactions")
    # 05/01/2024 is the 5th of January with %d/%m, never the 1st of May
    assert date(2024, 1, 5) in days
    assert date(2024, 5, 1) not in days
    assert date(2024, 12, 1) not in days  # 12/01/2024 -> 12 January


def test_wrong_or_missing_date_format_is_a_clear_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "home")
    with pytest.raises(ImportInputError, match="purchased.*date format"):
        _import(settings, date_format=None)
    with pytest.raises(ImportInputError, match="%Y-%m-%d"):
        _import(settings, date_format="%Y-%m-%d")
    # nothing was written by a failed import
    assert not (settings.landing_dir / "transactions").exists()


def test_customers_are_derived_from_first_purchases(settings: Settings) -> None:
    summary = _import(settings)
    customers = _read_table(settings, "customers")

    assert customers.drop_columns(["dt"]).schema.equals(CUSTOMERS.schema)
    rows = {r["customer_id"]: r for r in customers.to_pylist()}
    assert rows.keys() == FIRST_PURCHASES.keys()
    for customer_id, first_at in FIRST_PURCHASES.items():
        row = rows[customer_id]
        assert row["dt"] == first_at.date()
        assert row["signup_date"] == first_at.date()
        assert row["updated_at"] == first_at
        assert row["plan"] == row["region"] == row["acquisition_channel"] == "unknown"
    # the rejected row of C005 on "31/02" does not move their signup
    assert summary.customer_rows_written == 5
    assert list_partition_dates(settings.landing_dir, "customers") == [
        date(2024, 1, 3),
        date(2024, 1, 5),
        date(2024, 1, 7),
        date(2024, 1, 10),
    ]


def test_ids_are_deterministic_and_stable_on_reimport(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "home")
    _import(settings)
    first = _read_table(settings, "transactions")
    first_customers = _read_table(settings, "customers")

    # a stale file in a partition is replaced, not kept next to the new one
    stale = partition_dir(settings.landing_dir, "transactions", GOOD_DAYS[0])
    (stale / "part-0001.parquet").write_bytes(b"stale")

    _import(settings)
    assert _read_table(settings, "transactions").equals(first)
    assert _read_table(settings, "customers").equals(first_customers)
    assert not (stale / "part-0001.parquet").exists()

    ids = first["transaction_id"].to_pylist()
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("tx_") for i in ids)
    # two identical purchases (C003, 05/01 12:00, 99.90) are two transactions
    twins = [
        r
        for r in first.to_pylist()
        if r["customer_id"] == "C003"
        and r["transaction_at"] == datetime(2024, 1, 5, 12)
    ]
    assert len(twins) == 2
    assert twins[0]["transaction_id"] != twins[1]["transaction_id"]

    # the same purchases in another order, imported elsewhere, get the same ids
    lines = LOG.read_text().splitlines()
    body = lines[1:]
    random.Random(7).shuffle(body)
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([lines[0], *body]) + "\n")
    other = _settings(tmp_path / "other")
    _import(other, shuffled)
    assert _read_table(other, "transactions").equals(first)


def _expected_id(customer: str, at: datetime, amount: float, occurrence: int) -> str:
    """The documented hashed id, computed here without DuckDB."""
    moment = at.strftime("%Y-%m-%dT%H:%M:%S.%f")
    key = f"{customer}|{moment}|{amount:.6f}|{occurrence}"
    return "tx_" + hashlib.md5(key.encode()).hexdigest()[:24]


def test_hashed_ids_number_identical_purchases_by_category_and_record(
    tmp_path: Path,
) -> None:
    """Identical purchases are numbered 1, 2, ... in the order of category, then
    record; a purchase that shares only the customer and the time (another
    amount) is occurrence 1 of its own; the ids are md5 of the documented key."""
    log = tmp_path / "repeats.csv"
    log.write_text(
        "client,purchased,total,kind\n"
        "C1,2024-01-05 12:00:00,10.5,home\n"
        "C1,2024-01-05 12:00:00,10.5,grocery\n"
        "C1,2024-01-05 12:00:00,10.5,home\n"
        "C1,2024-01-05 12:00:00,11,home\n"
        "C2,2024-01-06 08:30:00.250000,3,beauty\n"
        "C2,2024-01-06 08:30:00.250000,not a number,beauty\n"
    )
    settings = _settings(tmp_path / "home")
    summary = _import(settings, log, date_format=None)
    assert (summary.rows_written, summary.rejected) == (5, 1)
    noon = datetime(2024, 1, 5, 12)
    morning = datetime(2024, 1, 6, 8, 30, 0, 250000)
    expected = {
        # (C1, noon, 10.5): grocery (record 2) first, then home by record (1, 3)
        _expected_id("C1", noon, 10.5, 1): "grocery",
        _expected_id("C1", noon, 10.5, 2): "home",
        _expected_id("C1", noon, 10.5, 3): "home",
        _expected_id("C1", noon, 11.0, 1): "home",
        _expected_id("C2", morning, 3.0, 1): "beauty",
    }
    got = {
        row["transaction_id"]: row["category"]
        for row in _read_table(settings, "transactions").to_pylist()
    }
    assert got == expected


def test_id_column_is_used_when_given(settings: Settings) -> None:
    _import(settings, id_col="order_ref")
    ids = set(_read_table(settings, "transactions")["transaction_id"].to_pylist())
    assert len(ids) == 17
    assert "A-1001" in ids and "A-1009" not in ids  # A-1009 has a bad date


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    log = tmp_path / "dup.csv"
    log.write_text(
        "ref,client,purchased,total\n"
        "X1,C1,2024-02-01 10:00,5\n"
        "X1,C1,2024-02-01 10:00,5\n"
        "X2,C2,2024-02-02 11:00,7\n"
    )
    settings = _settings(tmp_path / "home")
    summary = _import(settings, log, id_col="ref", date_format=None, category_col=None)
    assert (summary.rows_written, summary.rejected) == (2, 1)
    assert summary.rejected_path is not None
    [row] = _rejected_rows(summary.rejected_path)
    assert row["record"] == "2"
    assert "duplicate transaction id 'X1'" in row["reason"]


def test_rejected_rows_are_written_with_reasons(settings: Settings) -> None:
    summary = _import(settings)

    expected = settings.landing_dir / "_rejected" / "transactions_custom.csv"
    assert summary.rejected_path == expected
    rows = _rejected_rows(expected)
    assert len(rows) == summary.rejected == 3
    reasons = {r["order_ref"]: r["reason"] for r in rows}
    assert reasons["A-1009"] == (
        f"date '31/02/2024 10:00' does not match the date format {DATE_FORMAT}"
    )
    assert reasons["A-1010"] == "amount 'n/a' is not a number"
    assert reasons["A-1014"] == "customer is missing"
    assert [r["record"] for r in rows] == ["9", "10", "14"]
    # the source columns are kept as they were
    assert rows[0]["purchased"] == "31/02/2024 10:00"
    assert summary.rows_read == summary.rows_written + summary.rejected


def test_rejected_file_is_removed_when_a_reimport_rejects_nothing(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path / "home")
    log = tmp_path / "log.csv"
    log.write_text("client,purchased,total\nC1,2024-02-01,5\nC2,2024-02-01,oops\n")
    first = _import(settings, log, date_format=None, category_col=None)
    assert first.rejected_path is not None and first.rejected_path.exists()

    log.write_text("client,purchased,total\nC1,2024-02-01,5\nC2,2024-02-01,6\n")
    second = _import(settings, log, date_format=None, category_col=None)
    assert second.rejected == 0 and second.rejected_path is None
    assert not first.rejected_path.exists()


def test_malformed_csv_lines_are_rejected_not_dropped(tmp_path: Path) -> None:
    log = tmp_path / "ragged.csv"
    log.write_text(
        "client,purchased,total\n"
        "C1,2024-02-01 10:00,5\n"
        "C2,2024-02-01 11:00,6,surplus\n"
        "C3,2024-02-02 09:00,7\n"
    )
    settings = _settings(tmp_path / "home")
    summary = _import(settings, log, date_format=None, category_col=None)
    assert (summary.rows_read, summary.rows_written, summary.rejected) == (3, 2, 1)
    assert summary.rejected_path is not None
    [row] = _rejected_rows(summary.rejected_path)
    assert row["line"] == "3"
    assert row["reason"].startswith("malformed CSV line")
    assert "surplus" in row["reason"]


def test_missing_column_error_names_it_and_lists_the_columns(
    settings: Settings,
) -> None:
    with pytest.raises(ImportInputError) as error:
        _import(settings, customer_col="buyer")
    message = str(error.value)
    assert "'buyer'" in message
    for found in ("order_ref", "client", "purchased", "total", "kind"):
        assert f"'{found}'" in message


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "home")
    with pytest.raises(FileNotFoundError):
        _import(settings, tmp_path / "nope.csv")
    odd = tmp_path / "log.xlsx"
    odd.write_text("x")
    with pytest.raises(ImportInputError, match="suffix"):
        _import(settings, odd)


def test_parquet_log_with_native_types(tmp_path: Path) -> None:
    log = tmp_path / "log.parquet"
    pq.write_table(
        pa.table(
            {
                "client": pa.array([7, 7, 8, 9], pa.int64()),
                "purchased": pa.array(
                    [
                        datetime(2024, 3, 1, 8, 0),
                        datetime(2024, 3, 2, 9, 30),
                        datetime(2024, 3, 2, 23, 0),
                        None,
                    ],
                    pa.timestamp("ns"),
                ),
                "total": pa.array([10.0, 20.5, 3.25, 1.0], pa.float64()),
                "kind": ["home", "Beauty", "garden", "home"],
                "promo": [True, False, None, False],
            }
        ),
        log,
    )
    settings = _settings(tmp_path / "home")
    summary = import_transactions(
        settings,
        log,
        customer_col="client",
        date_col="purchased",
        amount_col="total",
        category_col="kind",
        discount_col="promo",
        progress=False,
    )
    assert (summary.rows_written, summary.rejected, summary.days) == (3, 1, 2)
    assert list_partition_dates(settings.landing_dir, "transactions") == [
        date(2024, 3, 1),
        date(2024, 3, 2),
    ]
    data = _read_table(settings, "transactions")
    assert data.drop_columns(["dt"]).schema.equals(TRANSACTIONS.schema)
    assert data["customer_id"].to_pylist() == ["7", "7", "8"]
    assert data["category"].to_pylist() == ["home", "beauty", "other"]
    assert data["is_discounted"].to_pylist() == [True, False, False]
    customers = _read_table(settings, "customers")
    assert customers["customer_id"].to_pylist() == ["7", "8"]
    assert summary.rejected_path is not None
    [row] = _rejected_rows(summary.rejected_path)
    assert row["client"] == "9" and row["reason"] == "date is missing"


def test_parquet_and_csv_give_the_same_partitions(tmp_path: Path) -> None:
    csv_settings = _settings(tmp_path / "csv")
    _import(csv_settings)

    text = pacsv.read_csv(
        LOG,
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(
                ["order_ref", "client", "purchased", "total", "kind"], pa.string()
            )
        ),
    )
    log = tmp_path / "transactions_custom.parquet"
    pq.write_table(text, log)
    parquet_settings = _settings(tmp_path / "parquet")
    summary = _import(parquet_settings, log)

    assert summary.rejected == 3
    assert _read_table(parquet_settings, "transactions").equals(
        _read_table(csv_settings, "transactions")
    )


def test_iso_timestamps_with_offsets_are_converted_to_utc(tmp_path: Path) -> None:
    log = tmp_path / "iso.csv"
    log.write_text(
        "client,purchased,total\n"
        "C1,2024-01-05T23:30:00-02:00,5\n"
        "C1,2024-01-05T10:00:00Z,6\n"
        "C2,2024-01-05,7\n"
    )
    settings = _settings(tmp_path / "home")
    _import(settings, log, date_format=None, category_col=None)
    data = _read_table(settings, "transactions")
    stamps = data["transaction_at"].to_pylist()
    assert sorted(zip(stamps, data["dt"].to_pylist(), strict=True)) == [
        (datetime(2024, 1, 5, 0, 0), date(2024, 1, 5)),
        (datetime(2024, 1, 5, 10, 0), date(2024, 1, 5)),
        (datetime(2024, 1, 6, 1, 30), date(2024, 1, 6)),
    ]


def test_a_later_export_does_not_rederive_known_customers(tmp_path: Path) -> None:
    lines = LOG.read_text().splitlines()
    january_early = [ln for ln in lines[1:] if ln.split(",")[2][3:5] == "01"][:8]
    january_late = [ln for ln in lines[1:] if ln not in january_early]
    early, late = tmp_path / "early.csv", tmp_path / "late.csv"
    early.write_text("\n".join([lines[0], *january_early]) + "\n")
    late.write_text("\n".join([lines[0], *january_late]) + "\n")

    settings = _settings(tmp_path / "home")
    _import(settings, early)
    summary = _import(settings, late)
    _import(settings, late)  # re-importing the later export changes nothing

    customers = _read_table(settings, "customers").to_pylist()
    assert {r["customer_id"]: r["updated_at"] for r in customers} == FIRST_PURCHASES
    assert summary.customer_rows_written == 1  # only C005 is new in the later file


def test_customers_file_is_used_and_gaps_are_derived(tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "customer_id,signup_date,plan,region\n"
        "C001,2023-12-20,premium,north\n"
        "C002,,gold,south\n"
        "C009,not a date,basic,east\n"
    )
    settings = _settings(tmp_path / "home")
    summary = _import(settings, customers_path=people)

    rows = {r["customer_id"]: r for r in _read_table(settings, "customers").to_pylist()}
    assert rows.keys() == FIRST_PURCHASES.keys()
    assert rows["C001"]["signup_date"] == date(2023, 12, 20)
    assert rows["C001"]["dt"] == date(2023, 12, 20)
    assert (rows["C001"]["plan"], rows["C001"]["region"]) == ("premium", "north")
    assert rows["C001"]["acquisition_channel"] == "unknown"
    # an empty signup date falls back to the first purchase; unknown plans too
    assert rows["C002"]["signup_date"] == date(2024, 1, 3)
    assert rows["C002"]["plan"] == "unknown"
    # customers missing from the file are derived from their first purchase
    assert rows["C004"]["updated_at"] == FIRST_PURCHASES["C004"]
    assert summary.customers_rejected == 1
    assert summary.customers_rejected_path is not None
    [bad] = _rejected_rows(summary.customers_rejected_path)
    assert bad["customer_id"] == "C009"
    assert bad["reason"] == "signup_date 'not a date' is not a date"


def test_progress_bar_does_not_change_the_result(tmp_path: Path) -> None:
    quiet = _settings(tmp_path / "quiet")
    loud = _settings(tmp_path / "loud")
    _import(quiet)
    _import(loud, progress=True)
    assert _read_table(loud, "transactions").equals(_read_table(quiet, "transactions"))


def test_a_profile_that_lands_after_the_first_purchase_keeps_a_derived_row(
    tmp_path: Path,
) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "customer_id,signup_date,plan,updated_at\n"
        "C003,2024-01-05,plus,2024-01-09 08:00\n"
    )
    settings = _settings(tmp_path / "home")
    _import(settings, customers_path=people)

    rows = [
        r
        for r in _read_table(settings, "customers").to_pylist()
        if r["customer_id"] == "C003"
    ]
    # known from the first purchase on, then the profile arrives as a change
    assert [(r["dt"], r["plan"]) for r in rows] == [
        (date(2024, 1, 5), "unknown"),
        (date(2024, 1, 9), "plus"),
    ]


def test_negative_amounts_are_rejected(tmp_path: Path) -> None:
    log = tmp_path / "refunds.csv"
    log.write_text("client,purchased,total\nC1,2024-02-01,5\nC1,2024-02-02,-5\n")
    settings = _settings(tmp_path / "home")
    summary = _import(settings, log, date_format=None, category_col=None)
    assert (summary.rows_written, summary.rejected) == (1, 1)
    assert summary.rejected_path is not None
    [row] = _rejected_rows(summary.rejected_path)
    assert row["reason"] == "amount '-5' is negative (a refund is not a purchase)"


def test_compressed_csv_with_offsets_in_the_date_format(tmp_path: Path) -> None:
    log = tmp_path / "shop.csv.gz"
    with gzip.open(log, "wt") as handle:
        handle.write(
            "client;purchased;total\n"
            "C1;05/01/2024 23:30 -0200;3.5\n"
            "C2;06/01/2024 10:00 +0000;4\n"
        )
    settings = _settings(tmp_path / "home")
    summary = _import(settings, log, date_format="%d/%m/%Y %H:%M %z", category_col=None)
    assert (summary.rows_written, summary.days) == (2, 1)
    data = _read_table(settings, "transactions")
    assert data["transaction_at"].to_pylist() == [
        datetime(2024, 1, 6, 1, 30),
        datetime(2024, 1, 6, 10, 0),
    ]
    assert data["dt"].to_pylist() == [date(2024, 1, 6)] * 2


def test_days_without_sales_are_declared_empty_and_pass_the_gate(
    tmp_path: Path,
) -> None:
    """Inside the log's span, a day with no purchases is closed, not late."""
    from ml.data.validation import validate_landing_range
    from ml.storage.landing_files import is_declared_empty, partition_files
    from ml.storage.warehouse import connect, ensure_schemas

    settings = Settings(home=tmp_path / "home")
    settings.ensure_dirs()
    csv = tmp_path / "gaps.csv"
    csv.write_text(
        "client,purchased,total\n"
        "a,2024-01-01 10:00,5.0\n"
        "b,2024-01-01 11:00,7.5\n"
        "a,2024-01-04 09:30,3.0\n"
    )
    summary = import_transactions(
        settings, csv, "client", "purchased", "total", progress=False
    )
    assert summary.empty_days == 2
    for day in (date(2024, 1, 2), date(2024, 1, 3)):
        assert is_declared_empty(settings.landing_dir, "transactions", day)
        assert partition_files(settings.landing_dir, "transactions", day)
    assert not is_declared_empty(settings.landing_dir, "transactions", date(2024, 1, 4))

    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
    report = validate_landing_range(
        settings, date(2024, 1, 1), date(2024, 1, 4), data_docs=False
    )
    assert report.passed
    with connect(settings.warehouse_path, read_only=True) as con:
        assert con.execute("select count(*) from raw.transactions").fetchone() == (3,)


def test_an_import_removes_the_staging_folder_a_killed_import_left(
    settings: Settings,
) -> None:
    """An import killed mid-write (kill -9) leaves its staging folder under
    landing/transactions; the next import removes it and writes the same days."""
    import subprocess
    import sys

    from ml.storage.procs import safe_hostname

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    root = settings.landing_dir / "transactions"
    stale = root / f".import-{int(gone.stdout)}@{safe_hostname()}-deadbeef"
    (stale / "dt=2024-01-03").mkdir(parents=True)
    (stale / "dt=2024-01-03" / "part-0.parquet").write_bytes(b"half a file")

    _import(settings)

    assert not stale.exists()
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []
    written = [
        day
        for day in list_partition_dates(settings.landing_dir, "transactions")
        if not is_declared_empty(settings.landing_dir, "transactions", day)
    ]
    assert written == GOOD_DAYS


def _write_large_log(
    path: Path, shuffled: bool = False, rows: int = 400_000, bad: Sequence[int] = ()
) -> None:
    """``rows`` purchases of 20,000 customers over a year, in the fixture's shape
    (400,000 by default); large enough that DuckDB reads and writes it with
    several threads. Records (1-based) in ``bad`` have the total ``bad``."""
    import duckdb

    order = "order by hash(i)" if shuffled else "order by i"
    total = "cast(round(5 + (i * 37 % 12000) / 100.0, 2) as varchar)"
    if bad:
        listed = ", ".join(map(str, bad))
        total = f"case when i + 1 in ({listed}) then 'bad' else {total} end"
    with duckdb.connect() as con:
        con.execute(
            f"""
            copy (
                select
                    'C' || lpad(cast(i % 20000 as varchar), 6, '0') as client,
                    strftime(timestamp '2024-01-01' + to_minutes(i * 7 % 525600),
                        '%d/%m/%Y %H:%M') as purchased,
                    {total} as total,
                    (['grocery', 'home', 'fashion'])[1 + cast(i % 3 as integer)]
                        as kind
                from range({rows}) as t(i)
                {order}
            ) to '{path}' (header, delimiter ',')
            """
        )


def test_a_large_log_in_another_order_gives_the_same_files(tmp_path: Path) -> None:
    """Each day's rows are written by time, customer and id whatever the order of
    the log, also when DuckDB works with several threads."""
    ordered, shuffled = tmp_path / "ordered.csv", tmp_path / "shuffled.csv"
    _write_large_log(ordered)
    _write_large_log(shuffled, shuffled=True)
    first = _settings(tmp_path / "first")
    second = _settings(tmp_path / "second")
    _import(first, ordered)
    _import(second, shuffled)

    for day in list_partition_dates(first.landing_dir, "transactions"):
        files = partition_files(first.landing_dir, "transactions", day)
        again = partition_files(second.landing_dir, "transactions", day)
        assert [f.name for f in files] == [f.name for f in again]
        for file, other in zip(files, again, strict=True):
            data = pq.read_table(file)
            assert data.equals(pq.read_table(other)), day
            keys = list(
                zip(
                    data.column("transaction_at").to_pylist(),
                    data.column("customer_id").to_pylist(),
                    data.column("transaction_id").to_pylist(),
                    strict=True,
                )
            )
            assert keys == sorted(keys), day


def test_record_numbers_are_file_positions_in_a_large_log(tmp_path: Path) -> None:
    """A rejected row's record is its position in the file, and its source
    columns are that row's, also in a log that DuckDB reads in parallel (about
    28 MB, so many buffers of its reader)."""
    log = tmp_path / "large.csv"
    bad = [1, 2, 99_999, 250_001, 512_345, 799_998, 800_000]
    _write_large_log(log, rows=800_000, bad=bad)
    settings = _settings(tmp_path / "home")
    summary = _import(settings, log)
    assert summary.rejected == len(bad)
    assert summary.rejected_path is not None
    rows = _rejected_rows(summary.rejected_path)
    assert [int(r["record"]) for r in rows] == bad
    # the row written at position i + 1 (no two rows of the log share both)
    expected = [
        (
            f"C{(n - 1) % 20000:06d}",
            (datetime(2024, 1, 1) + timedelta(minutes=(n - 1) * 7 % 525600)).strftime(
                DATE_FORMAT
            ),
        )
        for n in bad
    ]
    assert [(r["client"], r["purchased"]) for r in rows] == expected


def test_the_import_runs_within_the_warehouse_memory_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import's DuckDB takes the warehouse's memory limit and spills above it
    (its default would be 80 % of the machine): a log larger than the limit
    imports under it to the same partitions as without one."""
    from ml.data.ingest import import_config

    log = tmp_path / "large.csv"
    _write_large_log(log)
    free = _settings(tmp_path / "free")
    _import(free, log)

    monkeypatch.setenv("LOOPLINE_DUCKDB_MEMORY_LIMIT", "160MiB")
    config = import_config(tmp_path)
    assert config["memory_limit"] == "160MiB"
    assert config["temp_directory"] == str(tmp_path / "spill")
    limited = _settings(tmp_path / "limited")
    summary = _import(limited, log)

    assert summary.rows_written == 400000
    assert _read_table(limited, "transactions").equals(
        _read_table(free, "transactions")
    )
    assert _read_table(limited, "customers").equals(_read_table(free, "customers"))

    # the limit reaches the import's connection: far too little memory fails,
    # with DuckDB's reason in the import's error
    monkeypatch.setenv("LOOPLINE_DUCKDB_MEMORY_LIMIT", "16MiB")
    with pytest.raises(ImportInputError, match="Out of Memory"):
        _import(_settings(tmp_path / "starved"), log)


def test_day_spans_cover_every_day_once_in_balanced_runs() -> None:
    from ml.data.ingest.day_partitions import day_spans

    days = [(date(2024, 1, 1) + timedelta(days=i), 10 + i % 7) for i in range(50)]
    for parts in (1, 2, 3, 8, 60):
        spans = day_spans(days, parts)
        assert 1 <= len(spans) <= min(parts, len(days))
        assert spans[0][0] == days[0][0] and spans[-1][1] == days[-1][0]
        for (_, last), (first, _) in zip(spans, spans[1:], strict=False):
            assert first == last + timedelta(days=1)
        if parts == 2:
            rows = [sum(n for day, n in days if lo <= day <= hi) for lo, hi in spans]
            assert abs(rows[0] - rows[1]) <= 2 * max(n for _, n in days)
    assert day_spans([], 2) == []
