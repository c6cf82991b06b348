"""``loopline import transactions`` reads real exports as they come.

Every fixture under ``tests/fixtures/import/`` holds the same four purchases (two
customers over three days) in another dialect: line endings, a byte order mark, an
encoding, a delimiter, quoting, a decimal comma, currency signs, a messy header,
time zones, gzip and Parquet. Each test runs the real command and reads the landed
partitions back.
"""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ml.cli.app import app
from ml.config.settings import Settings
from ml.storage.landing_files import list_partition_dates, partition_files

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "import"
COLUMNS = ["--customer-col", "customer", "--date-col", "date", "--amount-col", "amount"]
# The columns of the CDNOW log's layout (whitespace.txt).
CDNOW_COLUMNS = [
    "--customer-col",
    "customer_id",
    "--date-col",
    "date",
    "--amount-col",
    "dollar_value",
    "--date-format",
    "%Y%m%d",
]
# What every fixture holds, as (customer, transaction_at, amount).
PURCHASES = [
    ("C1", datetime(2024, 3, 1, 10, 0), 12.5),
    ("C2", datetime(2024, 3, 1, 18, 30), 1234.5),
    ("C1", datetime(2024, 3, 2, 9, 0), 7.0),
    ("C2", datetime(2024, 3, 4, 12, 0), 3.25),
]
DAYS = [date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 4)]


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("LOOPLINE_HOME", str(home))
    return home


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["import", "transactions", *args])
    return result.exit_code, result.stdout, result.stderr


def _import(name: str, *options: str) -> str:
    code, out, err = _run(str(FIXTURES / name), *COLUMNS, *options)
    assert code == 0, out + err
    return _flat(out)


def _flat(text: str) -> str:
    """Console output with its line wrapping undone."""
    return " ".join(text.split())


def _landed(home: Path) -> list[tuple[str, datetime, float]]:
    """The landed transactions, checked to sit in the partition of their day."""
    landing = Settings(home=home).landing_dir
    rows = []
    for day in list_partition_dates(landing, "transactions"):
        for file in partition_files(landing, "transactions", day):
            table: pa.Table = pq.read_table(file)
            for row in table.to_pylist():
                assert row["transaction_at"].date() == day
                rows.append((row["customer_id"], row["transaction_at"], row["amount"]))
    return sorted(rows, key=lambda r: (r[1], r[0]))


def _landed_days(home: Path) -> list[date]:
    landing = Settings(home=home).landing_dir
    return [
        day
        for day in list_partition_dates(landing, "transactions")
        if any(
            pq.read_metadata(f).num_rows
            for f in partition_files(landing, "transactions", day)
        )
    ]


@pytest.mark.parametrize(
    ("name", "described"),
    [
        ("lf.csv", "delimiter ',' (detected), encoding utf-8, LF line endings"),
        ("crlf.csv", "CRLF line endings"),
        # a header written with LF over rows that end in CRLF
        ("mixed_endings.csv", "mixed line endings"),
        ("bom_semicolon.csv", "delimiter ';' (detected), encoding utf-8 with BOM"),
        ("pipe.txt", "delimiter '|' (detected)"),
        ("quoted.csv", "delimiter ','"),
        ("messy_header.csv", "delimiter ','"),
        ("gzipped.csv.gz", "CRLF line endings"),
    ],
)
def test_text_dialects_land_the_same_purchases(
    home: Path, name: str, described: str
) -> None:
    out = _import(name)
    assert described in out
    assert "rows written" in out
    assert _landed(home) == PURCHASES
    assert _landed_days(home) == DAYS


def test_quoted_fields_keep_embedded_delimiters_and_newlines(home: Path) -> None:
    out = _import("quoted.csv")
    assert "rows rejected" in out and "rows read" in out
    # four records although the file has five lines: one field spans two
    assert _landed(home) == PURCHASES


def test_latin1_needs_its_encoding_and_then_reads(home: Path) -> None:
    code, out, err = _run(str(FIXTURES / "latin1_tab.tsv"), *COLUMNS)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in out + err
    assert "latin1_tab.tsv is not valid utf-8" in err
    assert "--encoding latin-1" in err

    out = _import("latin1_tab.tsv", "--encoding", "latin-1")
    assert "delimiter tab (detected), encoding iso8859-1" in out
    customers = {c for c, _, _ in _landed(home)}
    assert customers == {"Zoë", "Jürgen"}


def test_whitespace_delimited_log_like_cdnow(home: Path) -> None:
    code, out, err = _run(
        str(FIXTURES / "whitespace.txt"),
        *CDNOW_COLUMNS,
        "--delimiter",
        "whitespace",
    )
    assert code == 0, out + err
    out = _flat(out)
    assert "delimiter whitespace (given)" in out
    assert _landed(home) == [
        (c, datetime.combine(t.date(), datetime.min.time()), a) for c, t, a in PURCHASES
    ]


def test_whitespace_delimiter_is_detected(home: Path) -> None:
    code, out, err = _run(
        str(FIXTURES / "whitespace.txt"),
        *CDNOW_COLUMNS,
    )
    assert code == 0, out + err
    out = _flat(out)
    assert "delimiter whitespace (detected)" in out
    assert len(_landed(home)) == 4


def test_decimal_comma_with_thousands_dots_and_currency(home: Path) -> None:
    _import("decimal_comma.csv", "--decimal", ",")
    assert _landed(home) == PURCHASES


def test_a_decimal_comma_is_never_read_as_a_thousands_mark(home: Path) -> None:
    out = _import("decimal_comma.csv")  # --decimal , forgotten
    # 12,50 and 3,25 are not numbers with '.' as the decimal mark: rejected, with
    # the rows whose text is unambiguous (7 and 1.234,50 is not) kept
    assert "rows rejected" in out
    amounts = sorted(a for _, _, a in _landed(home))
    assert amounts == [7.0]
    rejected = Settings(home=home).landing_dir / "_rejected" / "decimal_comma.csv"
    with rejected.open(newline="") as handle:
        reasons = [row["reason"] for row in csv.DictReader(handle)]
    hint = "(the decimal mark is '.': try --decimal ,)"
    assert reasons == [
        f"amount {value} is not a number {hint}"
        for value in ("'12,50'", "'1.234,50 €'", "'3,25'")
    ]


def test_currency_signs_codes_and_thousands_separators(home: Path) -> None:
    _import("thousands.csv")
    assert _landed(home) == PURCHASES


def test_header_names_match_ignoring_case_and_spaces(home: Path) -> None:
    code, out, err = _run(
        str(FIXTURES / "messy_header.csv"),
        "--customer-col",
        "CUSTOMER",
        "--date-col",
        "Date",
        "--amount-col",
        "amount",
    )
    assert code == 0, out + err
    assert _landed(home) == PURCHASES


def test_parquet_input(home: Path) -> None:
    out = _import("native.parquet")
    assert "rows written" in out
    assert _landed(home) == PURCHASES


def test_times_are_stored_in_utc_by_default(home: Path) -> None:
    _import("timezones.csv")
    assert _landed(home) == [
        ("C2", datetime(2024, 3, 1, 13, 30), 1234.5),  # 18:30+05:00
        ("C1", datetime(2024, 3, 1, 23, 30), 12.5),  # 23:30Z
        ("C1", datetime(2024, 3, 2, 9, 0), 7.0),  # no offset: already UTC
        ("C2", datetime(2024, 3, 4, 0, 0), 3.25),  # a date alone: midnight
    ]


def test_timezone_option_sets_the_zone_and_the_day(home: Path) -> None:
    _import("timezones.csv", "--timezone", "Europe/Berlin")
    assert _landed(home) == [
        ("C2", datetime(2024, 3, 1, 14, 30), 1234.5),
        # 23:30 UTC is 00:30 in Berlin: it lands on the next day there
        ("C1", datetime(2024, 3, 2, 0, 30), 12.5),
        ("C1", datetime(2024, 3, 2, 9, 0), 7.0),
        ("C2", datetime(2024, 3, 4, 0, 0), 3.25),
    ]
    assert _landed_days(home) == [date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 4)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            [str(FIXTURES / "no_delimiter.csv"), *COLUMNS],
            "no_delimiter.csv: cannot detect the delimiter",
        ),
        (
            [str(FIXTURES / "lf.csv"), *COLUMNS, "--delimiter", ";"],
            "read with delimiter ';' (given), encoding utf-8, LF line endings",
        ),
        (
            [str(FIXTURES / "lf.csv"), *COLUMNS, "--timezone", "Mars/Olympus"],
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            [str(FIXTURES / "lf.csv"), *COLUMNS, "--encoding", "klingon"],
            "unknown encoding 'klingon'",
        ),
        (
            [str(FIXTURES / "lf.csv"), *COLUMNS, "--decimal", ":"],
            "--decimal ':' must be '.' or ','",
        ),
        (
            [str(FIXTURES / "truncated.parquet"), *COLUMNS],
            "cannot read truncated.parquet: Invalid Input Error: No magic bytes",
        ),
        (
            [str(FIXTURES / "truncated.csv.gz"), *COLUMNS],
            "truncated.csv.gz: not a valid gzip file",
        ),
    ],
)
def test_unreadable_input_gets_one_line_and_a_non_zero_exit(
    home: Path, args: list[str], expected: str
) -> None:
    code, out, err = _run(*args)
    assert code == 2
    assert expected in err
    assert err.count("\n") == 1
    assert "Traceback" not in out + err
    assert not list_partition_dates(Settings(home=home).landing_dir, "transactions")


def test_unreadable_delimiter_message_says_what_was_detected(home: Path) -> None:
    code, _, err = _run(str(FIXTURES / "no_delimiter.csv"), *COLUMNS)
    assert code == 2
    assert "customer#date#amount" in err and "pass --delimiter" in err
    code, out, err = _run(
        str(FIXTURES / "no_delimiter.csv"), *COLUMNS, "--delimiter", "#"
    )
    assert code == 0, out + err


def test_customers_file_in_its_own_dialect(home: Path) -> None:
    # UTF-8 BOM, ';', mixed line endings, header names in other case with spaces,
    # next to a comma-separated log: each file's delimiter is detected on its own
    out = _import(
        "lf.csv",
        "--customers-file",
        str(FIXTURES / "customers_bom_semicolon.csv"),
    )
    assert "customers file rows rejected" not in out
    landing = Settings(home=home).landing_dir
    rows = []
    for day in list_partition_dates(landing, "customers"):
        for file in partition_files(landing, "customers", day):
            rows += pq.read_table(file).to_pylist()
    found = sorted((r["customer_id"], r["plan"], r["signup_date"]) for r in rows)
    assert found == [
        ("C1", "premium", date(2024, 2, 15)),
        ("C2", "basic", date(2024, 2, 20)),
    ]
    assert _landed(home) == PURCHASES
