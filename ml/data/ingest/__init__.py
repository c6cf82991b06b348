"""Import an external transaction log into landing partitions.

A real shop rarely exports data in Loopline's shape. :func:`import_transactions`
reads any transaction log with one row per purchase (CSV or Parquet), maps the
named columns onto the landing contract (:data:`ml.contract.schema.TRANSACTIONS`)
and writes one partition per purchase day,
``landing/transactions/dt=YYYY-MM-DD/part-0000.parquet``. When no customers file
is given, a customers table is derived from each customer's first purchase.

Text files are read as real exports come (:mod:`ml.data.dialect`): any line
endings, a byte order mark, another encoding, a detected or given delimiter (also
runs of spaces), header names in another case; amounts with currency signs,
thousands separators or a decimal comma; times with offsets, stored in one zone
(``timezone``, default UTC) whose calendar day is the partition.

The work is done by DuckDB in a few set-based queries, so millions of rows import
in seconds. Rows whose customer, date or amount cannot be parsed are never
dropped silently: they go to ``landing/_rejected/<file name>.csv`` with a reason,
and the summary counts them. Importing the same file again produces the same
partitions and the same transaction ids, because every partition it writes is
replaced and the ids are content hashes.

This package holds the steps; :func:`import_transactions` runs them in order:

- :mod:`~ml.data.ingest.source_reading`: options, files and dialects into a
  DuckDB view with record numbers, the named columns found;
- :mod:`~ml.data.ingest.value_sql`: SQL that reads one value as its contract type;
- :mod:`~ml.data.ingest.transaction_rows`: the log mapped onto the contract,
  rejection reasons and transaction ids, in one pass;
- :mod:`~ml.data.ingest.rejects`: the rejects files;
- :mod:`~ml.data.ingest.customer_rows`: the customers file or derived customers;
- :mod:`~ml.data.ingest.day_partitions`: writing the day partitions;
- :mod:`~ml.data.ingest.import_progress`: the progress display;
- :mod:`~ml.data.ingest.import_result`: the summary and the error type.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb

from ml.config.settings import Settings
from ml.data.ingest.customer_rows import (
    collect_customer_rows,
    customer_file_days,
    load_customers,
    register_known_customers,
)
from ml.data.ingest.day_partitions import (
    declare_empty_days,
    write_customer_partitions,
    write_transaction_days,
)
from ml.data.ingest.import_progress import progress_display
from ml.data.ingest.import_result import ImportInputError, ImportSummary
from ml.data.ingest.rejects import REJECTED_DIR, rejected_file, write_rejected
from ml.data.ingest.source_reading import (
    ReadOptions,
    drop_source,
    load_source,
    read_options,
    require_columns,
    set_timezone,
)
from ml.data.ingest.sql_text import fetch_count
from ml.data.ingest.transaction_rows import (
    check_dates_parse,
    parse_transactions,
    rows_per_day,
)
from ml.storage.warehouse import duckdb_config

__all__ = [
    "REJECTED_DIR",
    "ImportInputError",
    "ImportSummary",
    "ReadOptions",
    "import_transactions",
]


def import_config(workdir: Path) -> dict[str, str | bool | int | float | list[str]]:
    """The import's in-memory DuckDB: the warehouse's memory limit, spilling into
    ``workdir`` above it, so a log of tens of millions of rows imports within the
    same memory as a night instead of DuckDB's default of 80 % of the machine."""
    return {**duckdb_config(), "temp_directory": str(workdir / "spill")}


def import_transactions(
    settings: Settings,
    path: Path,
    customer_col: str,
    date_col: str,
    amount_col: str,
    date_format: str | None = None,
    id_col: str | None = None,
    category_col: str | None = None,
    customers_path: Path | None = None,
    progress: bool = True,
    discount_col: str | None = None,
    *,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    decimal: str = ".",
    timezone: str = "UTC",
) -> ImportSummary:
    """Turn an external transaction log into landing partitions.

    Args:
        settings: where the landing folder is.
        path: the log, CSV (``.csv``, ``.tsv``, ``.txt``, optionally ``.gz``) or
            Parquet (``.parquet``, ``.pq``); one row per purchase, with a header.
        customer_col: column with the customer id (kept as text).
        date_col: column with the purchase date or time; ``dt`` is its calendar
            day in ``timezone``.
        amount_col: column with the purchase amount.
        date_format: strptime format of ``date_col`` (e.g. ``%d/%m/%Y %H:%M``); when
            omitted, ISO 8601 dates and timestamps (with or without offset) are read.
        id_col: column with a unique transaction id; when omitted, the id is a hash of
            (customer, timestamp, amount, occurrence among identical rows).
        category_col: column mapped onto the contract categories (else ``other``).
        customers_path: an optional customers file (CSV or Parquet) with
            ``customer_id`` (or ``customer_col``) and any of ``signup_date``, ``plan``,
            ``region``, ``acquisition_channel``, ``updated_at``. Customers it lacks
            are derived from their first purchase.
        progress: show a progress bar.
        discount_col: optional column saying whether the purchase was discounted
            (true/yes/1 or a non-zero discount amount); else ``is_discounted`` is
            false.
        delimiter: of text files: one character, a name (``comma``, ``semicolon``,
            ``tab``, ``pipe``) or ``whitespace`` (runs of spaces and tabs); None
            or ``auto`` detects it. It applies to the customers file too.
        encoding: of text files (default UTF-8; a byte order mark is honoured).
        decimal: the decimal mark of text amounts, ``.`` (default) or ``,``.
        timezone: the IANA zone transaction times are stored in (default UTC).
            A time with an offset is converted to it; a time without one is taken
            as already in it; a date alone is midnight of that day.

    Returns:
        The counts of what was read, written and rejected.

    Raises:
        FileNotFoundError: the file does not exist.
        ImportInputError: a named column is missing, the file cannot be read, an
            option or the date format is not supported, or no row at all could be
            imported.
    """
    path = Path(path)
    landing = settings.landing_dir
    options = read_options(delimiter, encoding, decimal, timezone)
    with (
        progress_display(progress) as bar,
        tempfile.TemporaryDirectory(prefix="loopline-import-") as tmp,
        duckdb.connect(config=import_config(Path(tmp))) as con,
    ):
        workdir = Path(tmp)
        set_timezone(con, options.timezone)
        con.execute("set enable_progress_bar = false")

        task = bar.add_task(f"reading {path.name}", total=1)
        source = load_source(con, path, "tx_src", options, workdir)
        named = {
            "customer_col": customer_col,
            "date_col": date_col,
            "amount_col": amount_col,
            "id_col": id_col,
            "category_col": category_col,
            "discount_col": discount_col,
        }
        col = require_columns(path, source, named)
        rows_read = source.records + source.malformed
        if rows_read == 0:
            raise ImportInputError(f"{path.name} has no data rows")
        bar.advance(task)

        task = bar.add_task("parsing", total=1)
        parse_transactions(
            con,
            source,
            customer_col=col["customer_col"],
            date_col=col["date_col"],
            amount_col=col["amount_col"],
            date_format=date_format,
            id_col=col.get("id_col"),
            category_col=col.get("category_col"),
            discount_col=col.get("discount_col"),
            options=options,
        )
        check_dates_parse(con, source, path, col["date_col"], date_format)
        bar.advance(task)

        rejected_path = rejected_file(landing, path)
        rejected = write_rejected(con, source, "tx_parsed", rejected_path)
        # the rejects were the last use of the source rows: free their memory
        # before the partitions are sorted and written
        drop_source(con, source)
        written = fetch_count(con, "select count(*) from tx_good")
        if written == 0:
            raise ImportInputError(
                f"none of the {rows_read:,} rows of {path} could be imported; "
                f"the reasons are in {rejected_path}"
            )

        # Everything that can fail on the input is checked before the first write.
        customers_rejected, customers_rejected_path = load_customers(
            con,
            landing,
            path,
            Path(customers_path) if customers_path is not None else None,
            customer_col,
            options,
            workdir,
        )
        day_counts = rows_per_day(con)
        days = [day for day, _ in day_counts]
        owned_days = set(days) | customer_file_days(con)
        register_known_customers(con, landing, owned_days)
        customer_rows = collect_customer_rows(con)
        customers = fetch_count(con, "select count(distinct customer_id) from tx_good")

        task = bar.add_task("writing transactions", total=len(days))
        write_transaction_days(con, landing, day_counts, lambda: bar.advance(task))
        empty_days = declare_empty_days(landing, days)
        customers_task = bar.add_task("writing customers", total=len(owned_days))
        customer_rows_written = write_customer_partitions(
            landing, customer_rows, owned_days, lambda: bar.advance(customers_task)
        )

    return ImportSummary(
        source=path,
        rows_read=rows_read,
        rows_written=written,
        rejected=rejected,
        days=len(days),
        customers=customers,
        customer_rows_written=customer_rows_written,
        first_day=days[0],
        last_day=days[-1],
        read_as=source.dialect.describe() if source.dialect is not None else None,
        rejected_path=rejected_path if rejected else None,
        customers_rejected=customers_rejected,
        customers_rejected_path=(
            customers_rejected_path if customers_rejected else None
        ),
        empty_days=len(empty_days),
    )
