"""Import an external transaction log into landing partitions.

A real shop rarely exports data in Loopline's shape. :func:`import_transactions`
reads any transaction log with one row per purchase (CSV or Parquet), maps the named
columns onto the landing contract (:data:`ml.contract.schema.TRANSACTIONS`) and writes
one
partition per purchase day, ``landing/transactions/dt=YYYY-MM-DD/part-0000.parquet``.
When no customers file is given, a customers table is derived from each customer's
first purchase.

Text files are read as real exports come (:mod:`ml.data.dialect`): any line
endings, a byte order mark, another encoding, a detected or given delimiter (also
runs of spaces), header names in another case; amounts with currency signs,
thousands separators or a decimal comma; times with offsets, stored in one zone
(``timezone``, default UTC) whose calendar day is the partition.

The work is done by DuckDB in a few set-based queries, so millions of rows import in
seconds. Rows whose customer, date or amount cannot be parsed are never dropped
silently: they go to ``landing/_rejected/<file name>.csv`` with a reason, and the
summary counts them. Importing the same file again produces the same partitions and
the same transaction ids, because every partition it writes is replaced and the ids
are content hashes.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ml.config.settings import Settings
from ml.contract.schema import (
    ACQUISITION_CHANNELS,
    CATEGORIES,
    CUSTOMERS,
    PLANS,
    REGIONS,
    TRANSACTIONS,
)
from ml.data.dialect import (
    WHITESPACE,
    Dialect,
    DialectError,
    check_encoding,
    parse_delimiter,
    prepare_csv,
)
from ml.storage.landing_files import (
    list_partition_dates,
    partition_dir,
    partition_files,
    write_empty_partition,
    write_partition,
)

REJECTED_DIR = "_rejected"
WRITE_THREADS = 4
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSION_SUFFIXES = (".gz", ".zst")
TRANSACTION_ID_PREFIX = "tx_"
# Values of a discount column that mean "discounted" (besides non-zero numbers).
TRUE_WORDS = ("true", "t", "yes", "y")
# Stripped from text amounts before they are read as numbers: spaces (also
# no-break), currency signs and apostrophes (1'234.50); and a three-letter currency
# code before or after the number (EUR 12.50, 12.50 USD).
CURRENCY_CHARS = "[\\s\u00a0\u202f$€£¥₹₽¢']"
CODE_BEFORE = r"^([A-Za-z]{3})\s*([-+]?[0-9.,])"
CODE_AFTER = r"([0-9.,])\s*[A-Za-z]{3}$"
DECIMAL_MARKS = (".", ",")

_RECORD = "__loopline_record"
_NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
)


class ImportInputError(ValueError):
    """The input file cannot be imported as asked (a missing column, a bad format)."""


@dataclass(frozen=True)
class ImportSummary:
    """What one import read, wrote and rejected.

    ``rows_read`` = ``rows_written`` + ``rejected`` (transaction rows); ``customers``
    counts the distinct customers of the written rows and ``customer_rows_written``
    the rows written to ``landing/customers`` (new customers and customers-file
    rows).
    """

    source: Path
    rows_read: int
    rows_written: int
    rejected: int
    days: int
    customers: int
    customer_rows_written: int
    first_day: date | None
    last_day: date | None
    rejected_path: Path | None = None
    customers_rejected: int = 0
    customers_rejected_path: Path | None = None
    empty_days: int = 0
    read_as: str | None = None  # how a text file was read (delimiter, encoding)

    def describe(self) -> str:
        """A short human-readable report."""
        span = (
            f"{self.first_day} .. {self.last_day}"
            if self.first_day is not None
            else "no days"
        )
        lines = [
            f"imported {self.source.name}",
            f"  rows read          {self.rows_read:>12,}",
            f"  rows written       {self.rows_written:>12,}",
            f"  rows rejected      {self.rejected:>12,}",
            f"  days               {self.days:>12,}  ({span})",
            f"  customers          {self.customers:>12,}",
            f"  customer rows      {self.customer_rows_written:>12,}",
            f"  days without sales {self.empty_days:>12,}  (declared empty)",
        ]
        if self.read_as is not None:
            lines.insert(1, f"  read with {self.read_as}")
        if self.rejected_path is not None:
            lines.append(f"  rejected rows are in {self.rejected_path}")
        if self.customers_rejected:
            lines.append(
                f"  customers file rows rejected: {self.customers_rejected:,}"
                f" (see {self.customers_rejected_path})"
            )
        return "\n".join(lines)

    def __rich__(self) -> str:
        return self.describe()


@dataclass(frozen=True)
class _Source:
    """A source file loaded into a DuckDB temp table with a record number."""

    table: str
    columns: dict[str, str]  # name -> DuckDB type
    records: int
    malformed: int  # CSV lines the reader could not split into the header's columns
    dialect: Dialect | None = None  # how a text file was read


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
    options = _read_options(delimiter, encoding, decimal, timezone)
    with (
        _progress(progress) as bar,
        duckdb.connect() as con,
        tempfile.TemporaryDirectory(prefix="loopline-import-") as tmp,
    ):
        workdir = Path(tmp)
        _set_timezone(con, options.timezone)
        con.execute("set enable_progress_bar = false")

        task = bar.add_task(f"reading {path.name}", total=1)
        source = _load_source(con, path, "tx_src", options, workdir)
        named = {
            "customer_col": customer_col,
            "date_col": date_col,
            "amount_col": amount_col,
            "id_col": id_col,
            "category_col": category_col,
            "discount_col": discount_col,
        }
        col = _require_columns(path, source, named)
        rows_read = source.records + source.malformed
        if rows_read == 0:
            raise ImportInputError(f"{path.name} has no data rows")
        bar.advance(task)

        task = bar.add_task("parsing", total=1)
        _parse_transactions(
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
        _check_dates_parse(con, path, col["date_col"], date_format)
        _assign_transaction_ids(con)
        bar.advance(task)

        rejected_path = landing / REJECTED_DIR / f"{_import_name(path)}.csv"
        rejected = _write_rejected(con, source, "tx_parsed", rejected_path)
        written = _count(con, "select count(*) from tx_good")
        if written == 0:
            raise ImportInputError(
                f"none of the {rows_read:,} rows of {path} could be imported; "
                f"the reasons are in {rejected_path}"
            )

        # Everything that can fail on the input is checked before the first write.
        customers_rejected = 0
        customers_rejected_path: Path | None = None
        if customers_path is not None:
            customers_rejected_path = _customers_rejected_path(
                landing, path, Path(customers_path)
            )
            customers_rejected = _load_customers_file(
                con,
                Path(customers_path),
                customer_col,
                customers_rejected_path,
                options,
                workdir,
            )
        else:
            con.execute(
                f"create temp table cust_file as {_empty_customers_sql()} limit 0"
            )
        day_counts = _day_counts(con)
        days = [day for day, _ in day_counts]
        customer_file_days = {
            row[0]
            for row in con.execute(
                "select distinct cast(updated_at as date) from cust_file"
            ).fetchall()
        }
        owned_days = set(days) | customer_file_days
        _register_known_customers(con, landing, owned_days)
        customer_rows = _customer_rows(con)
        customers = _count(con, "select count(distinct customer_id) from tx_good")
        rows = con.sql(
            f"""
            select {", ".join(TRANSACTIONS.columns)}
            from tx_good
            order by transaction_at, customer_id, transaction_id
            """
        ).to_arrow_table()

        task = bar.add_task("writing transactions", total=len(days))
        offsets = [0]
        for _, n in day_counts:
            offsets.append(offsets[-1] + n)
        # Parquet writing releases the GIL, so days are written in parallel.
        with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
            futures = [
                pool.submit(
                    write_partition,
                    landing,
                    "transactions",
                    day,
                    rows.slice(offsets[i], n),
                )
                for i, (day, n) in enumerate(day_counts)
            ]
            for future in as_completed(futures):
                future.result()
                bar.advance(task)
        # Inside the log's span, a day without purchases is a day the shop sold
        # nothing, not a late partition: declare it empty so the gate accepts it.
        written_days = set(days)
        empty_days = [
            day
            for day in (
                days[0] + timedelta(days=i) for i in range((days[-1] - days[0]).days)
            )
            if day not in written_days
        ]
        for day in empty_days:
            write_empty_partition(landing, "transactions", day)
        customers_task = bar.add_task("writing customers", total=len(owned_days))
        customer_rows_written = _write_customer_partitions(
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


# --- reading -------------------------------------------------------------------


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress]:
    """A rich progress display with one bar per stage (silent when disabled).

    The bars stay on screen after a finished import and vanish after a failed one,
    so that the error is all a failed import shows.
    """
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
    )
    with bar:
        try:
            yield bar
        except BaseException:
            bar.live.transient = True
            raise


def _read_options(
    delimiter: str | None, encoding: str, decimal: str, timezone: str
) -> ReadOptions:
    """Check the reading options before anything is read."""
    try:
        parsed = parse_delimiter(delimiter)
        codec = check_encoding(encoding)
    except DialectError as exc:
        raise ImportInputError(str(exc)) from exc
    if decimal not in DECIMAL_MARKS:
        raise ImportInputError(f"--decimal {decimal!r} must be '.' or ','")
    return ReadOptions(
        delimiter=parsed, encoding=codec, decimal=decimal, timezone=timezone
    )


def _set_timezone(con: duckdb.DuckDBPyConnection, zone: str) -> None:
    """Use ``zone`` for the session; a clear error for an unknown zone."""
    try:
        con.execute(f"set TimeZone = {_lit(zone)}")
    except duckdb.Error as exc:
        raise ImportInputError(
            f"unknown time zone {zone!r}; use an IANA name such as UTC, "
            "Europe/Berlin or America/New_York"
        ) from exc


def _file_kind(path: Path) -> str:
    """``csv`` or ``parquet``, from the file's suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise ImportInputError(
        f"cannot tell the type of {path.name}: expected a suffix in "
        f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
    )


def _import_name(path: Path) -> str:
    """The file name without its type and compression suffixes (``a.csv.gz`` -> a)."""
    name = path.name
    for suffixes in (COMPRESSION_SUFFIXES, CSV_SUFFIXES + PARQUET_SUFFIXES):
        for suffix in suffixes:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    return name


@dataclass(frozen=True)
class ReadOptions:
    """How to read the input files (see ``docs/data_contract.md``).

    ``delimiter``: one character or ``whitespace``; None detects it. ``encoding``:
    of text files (a byte order mark wins). ``decimal``: the decimal mark of text
    amounts, ``.`` or ``,``. ``timezone``: the zone transaction times are stored in
    and whose calendar day is ``dt``; times without an offset are taken as already
    in it.
    """

    delimiter: str | None = None
    encoding: str = "utf-8"
    decimal: str = "."
    timezone: str = "UTC"


def _load_source(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: str,
    options: ReadOptions,
    workdir: Path,
) -> _Source:
    """Load a CSV (every column as text) or Parquet file into a temp table.

    A text file is first normalised (:func:`ml.data.dialect.prepare_csv`): decoded,
    LF line endings, its delimiter detected or given. Column names lose surrounding
    spaces. Each row gets its 1-based record number (its position in the file). CSV
    lines that do not split into the header's columns are skipped by the reader and
    kept in the ``<table>_rejects`` table.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    kind = _file_kind(path)
    dialect: Dialect | None = None
    if kind == "csv":
        copy = workdir / f"{table}.csv"
        try:
            dialect = prepare_csv(
                path, copy, delimiter=options.delimiter, encoding=options.encoding
            )
        except DialectError as exc:
            raise ImportInputError(str(exc)) from exc
        quote = "" if dialect.delimiter == WHITESPACE else '"'
        csv_options = (
            f"header = true, all_varchar = true, ignore_errors = true, "
            f"delim = {_lit(dialect.reader_delimiter)}, quote = {_lit(quote)}, "
            f"escape = {_lit(quote)}, new_line = '\\n'"
        )
        reader = (
            f"read_csv({_lit(str(copy))}, {csv_options}, store_rejects = true, "
            f"rejects_table = {_lit(table + '_rejects')}, "
            f"rejects_scan = {_lit(table + '_scans')})"
        )
        describe = f"read_csv({_lit(str(copy))}, {csv_options})"
    else:
        reader = describe = f"read_parquet({_lit(str(path))})"
    try:
        described = con.execute(f"describe select * from {describe}").fetchall()
    except duckdb.Error as exc:
        raise ImportInputError(_read_error(path, dialect, exc)) from exc
    columns = _clean_names([(str(row[0]), str(row[1])) for row in described])
    aliases = ", ".join([*(_ident(c) for c in columns), _RECORD])
    try:
        con.execute(
            f"""
            create temp table {table} as
            select * from {reader} with ordinality as src({aliases})
            """
        )
    except duckdb.Error as exc:
        raise ImportInputError(_read_error(path, dialect, exc)) from exc
    records = _count(con, f"select count(*) from {table}")
    malformed = 0
    if kind == "csv":
        malformed = _count(con, f"select count(distinct line) from {table}_rejects")
    return _Source(
        table=table,
        columns=columns,
        records=records,
        malformed=malformed,
        dialect=dialect,
    )


def _read_error(path: Path, dialect: Dialect | None, exc: duckdb.Error) -> str:
    """One line: the file, the reader's first line of error, how it was read."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    how = f" (read with {dialect.describe()}; try --delimiter)" if dialect else ""
    return f"cannot read {path.name}: {first}{how}"


def _clean_names(described: list[tuple[str, str]]) -> dict[str, str]:
    """Column names without surrounding spaces (kept as they are if that clashes)."""
    stripped = [name.strip() or name for name, _ in described]
    if len(set(stripped)) < len(stripped):
        return dict(described)
    return {name: kind for name, (_, kind) in zip(stripped, described, strict=True)}


def _resolve(columns: dict[str, str], name: str) -> str | None:
    """The column of ``columns`` that ``name`` means: exact, else ignoring case."""
    if name in columns:
        return name
    wanted = name.strip().casefold()
    matches = [c for c in columns if c.strip().casefold() == wanted]
    return matches[0] if len(matches) == 1 else None


def _require_columns(
    path: Path, source: _Source, named: dict[str, str | None]
) -> dict[str, str]:
    """The file's column for every named option; fail naming what is missing.

    Names match exactly, or else ignoring case and surrounding spaces.
    """
    resolved: dict[str, str] = {}
    missing = []
    for option, name in named.items():
        if name is None:
            continue
        column = _resolve(source.columns, name)
        if column is None:
            missing.append((option, name))
        else:
            resolved[option] = column
    if missing:
        wanted = ", ".join(f"{name!r} ({option})" for option, name in missing)
        found = ", ".join(repr(c) for c in source.columns)
        if source.dialect is not None:
            hint = (
                f"; read with {source.dialect.describe()}: check the names, or "
                "try --delimiter (or --encoding)"
            )
        else:
            hint = ""
        raise ImportInputError(
            f"{path.name} has no column {wanted}; the columns found are: {found}{hint}"
        )
    return resolved


# --- parsing -------------------------------------------------------------------


def _parse_transactions(
    con: duckdb.DuckDBPyConnection,
    source: _Source,
    *,
    customer_col: str,
    date_col: str,
    amount_col: str,
    date_format: str | None,
    id_col: str | None,
    category_col: str | None,
    discount_col: str | None,
    options: ReadOptions,
) -> None:
    """Create ``tx_parsed``: typed contract columns plus a rejection reason."""
    cols = source.columns
    zone = options.timezone
    other_mark = "," if options.decimal == "." else "."
    amount_hint = (
        f"case when contains(raw_amount, {_lit(other_mark)}) then "
        f"{_lit(f' (the decimal mark is {options.decimal!r}: try --decimal')}"
        f" || {_lit(' ' + other_mark + ')')} else '' end"
    )
    customer = _ident(customer_col)
    when = _ident(date_col)
    amount = _ident(amount_col)
    categories = ", ".join(_lit(c) for c in CATEGORIES)
    category_sql = (
        f"""
        case
            when lower(trim(cast({_ident(category_col)} as varchar))) in ({categories})
                then lower(trim(cast({_ident(category_col)} as varchar)))
            else 'other'
        end"""
        if category_col is not None
        else "'other'"
    )
    discount_sql = (
        _bool_expr(_ident(discount_col), cols[discount_col])
        if discount_col is not None
        else "false"
    )
    id_sql = _text_expr(_ident(id_col)) if id_col is not None else "null"
    date_hint = (
        f" does not match the date format {date_format}"
        if date_format is not None and not _is_temporal(cols[date_col])
        else " is not an ISO date or timestamp (pass a date format)"
    )
    id_missing = (
        "case when source_id is null then 'transaction id is missing' end,"
        if id_col is not None
        else ""
    )
    con.execute(
        f"""
        create temp table tx_parsed as
        with typed as (
            select
                {_RECORD},
                {_customer_expr(customer, cols[customer_col])} as customer_id,
                {_timestamp_expr(con, when, cols[date_col], date_format, zone)}
                    as transaction_at,
                {_amount_expr(amount, cols[amount_col], options.decimal)} as amount,
                {category_sql} as category,
                {discount_sql} as is_discounted,
                {id_sql} as source_id,
                {_text_expr(when)} as raw_date,
                {_text_expr(amount)} as raw_amount
            from {source.table}
        )
        select
            *,
            nullif(concat_ws('; ',
                case when customer_id is null then 'customer is missing' end,
                case
                    when raw_date is null then 'date is missing'
                    when transaction_at is null
                        then 'date ' || {_quoted("raw_date")} || {_lit(date_hint)}
                end,
                case
                    when raw_amount is null then 'amount is missing'
                    when amount is null
                        then 'amount ' || {_quoted("raw_amount")} || ' is not a number'
                            || {amount_hint}
                    when not isfinite(amount)
                        then 'amount ' || {_quoted("raw_amount")}
                            || ' is not a finite number'
                    when amount < 0
                        then 'amount ' || {_quoted("raw_amount")}
                            || ' is negative (a refund is not a purchase)'
                end,
                {id_missing}
            ), '') as reason
        from typed
        """
    )
    if id_col is not None:
        con.execute(
            f"""
            update tx_parsed
            set reason = 'duplicate transaction id ' || {_quoted("dup.source_id")}
                || ' (first seen in record ' || dup.first_record || ')'
            from (
                select
                    {_RECORD} as record,
                    source_id,
                    first_value({_RECORD}) over (
                        partition by source_id order by {_RECORD}
                    ) as first_record
                from tx_parsed
                where reason is null
            ) as dup
            where tx_parsed.{_RECORD} = dup.record
                and dup.record <> dup.first_record
            """
        )


def _check_dates_parse(
    con: duckdb.DuckDBPyConnection, path: Path, date_col: str, date_format: str | None
) -> None:
    """Stop early when not a single date parses: the format is surely wrong."""
    parsed = _count(con, "select count(transaction_at) from tx_parsed")
    present = _count(con, "select count(raw_date) from tx_parsed")
    if present == 0 or parsed > 0:
        return
    examples = [
        str(row[0])
        for row in con.execute(
            "select raw_date from tx_parsed where raw_date is not null limit 3"
        ).fetchall()
    ]
    how = (
        f"with the date format {date_format!r}"
        if date_format is not None
        else "as ISO dates; pass a date format such as '%d/%m/%Y %H:%M'"
    )
    raise ImportInputError(
        f"none of the {present:,} values of column {date_col!r} in {path.name} "
        f"could be read {how} (examples: {', '.join(map(repr, examples))})"
    )


def _assign_transaction_ids(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``tx_good`` with the contract columns and a stable transaction id.

    Without an id column the id hashes the purchase and its occurrence number among
    identical purchases, so two identical rows stay two purchases, and the same file
    gets the same ids on every import.
    """
    con.execute(
        f"""
        create temp table tx_good as
        with valid as (
            select *, printf('%.6f', amount) as amount_key
            from tx_parsed
            where reason is null
        ),
        numbered as (
            select
                *,
                row_number() over (
                    partition by customer_id, transaction_at, amount_key
                    order by category, is_discounted, {_RECORD}
                ) as occurrence
            from valid
        )
        select
            coalesce(
                source_id,
                {_lit(TRANSACTION_ID_PREFIX)} || left(md5(concat_ws('|',
                    customer_id,
                    strftime(transaction_at, '%Y-%m-%dT%H:%M:%S.%f'),
                    amount_key,
                    cast(occurrence as varchar)
                )), 24)
            ) as transaction_id,
            customer_id,
            transaction_at,
            amount,
            category,
            is_discounted
        from numbered
        """
    )


def _day_counts(con: duckdb.DuckDBPyConnection) -> list[tuple[date, int]]:
    """Rows per purchase day, in day order."""
    return [
        (row[0], int(row[1]))
        for row in con.execute(
            """
            select cast(transaction_at as date) as day, count(*)
            from tx_good
            group by day
            order by day
            """
        ).fetchall()
    ]


# --- rejected rows -------------------------------------------------------------


def _write_rejected(
    con: duckdb.DuckDBPyConnection, source: _Source, parsed: str, target: Path
) -> int:
    """Write rejected rows with their reason to ``target``; return their count.

    Columns: ``record`` (1-based among the rows read), ``line`` (file line, for
    CSV lines that could not be split into columns), ``reason``, then the source
    columns as text. A stale file from an earlier import is removed when nothing is
    rejected.
    """
    source_cols = ", ".join(
        f"cast(s.{_ident(c)} as varchar) as {_ident(c)}" for c in source.columns
    )
    null_cols = ", ".join(
        f"cast(null as varchar) as {_ident(c)}" for c in source.columns
    )
    parts = [
        f"""
        select
            s.{_RECORD} as record,
            cast(null as bigint) as line,
            p.reason,
            {source_cols}
        from {parsed} as p
        inner join {source.table} as s using ({_RECORD})
        where p.reason is not null
        """
    ]
    if source.malformed:
        parts.append(
            f"""
            select
                cast(null as bigint) as record,
                cast(line as bigint) as line,
                'malformed CSV line (' || string_agg(distinct lower(
                    cast(error_type as varchar)), ', ') || '): '
                    || left(any_value(csv_line), 200) as reason,
                {null_cols}
            from {source.table}_rejects
            group by line
            """
        )
    query = " union all ".join(parts)
    count = _count(con, f"select count(*) from ({query})")
    if count == 0:
        target.unlink(missing_ok=True)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    con.execute(
        f"""
        copy (select * from ({query}) order by record nulls last, line)
        to {_lit(str(tmp))} (format csv, header true)
        """
    )
    tmp.replace(target)
    return count


# --- customers -----------------------------------------------------------------


def _customers_rejected_path(landing: Path, path: Path, customers_path: Path) -> Path:
    """Where rejected rows of the customers file go (never the log's own file)."""
    name = _import_name(customers_path)
    if name == _import_name(path):
        name = f"{name}-customers"
    return landing / REJECTED_DIR / f"{name}.csv"


def _empty_customers_sql() -> str:
    """A select with the customers contract columns and types (no rows)."""
    return """
        select
            cast(null as varchar) as customer_id,
            cast(null as date) as signup_date,
            cast(null as varchar) as plan,
            cast(null as varchar) as region,
            cast(null as varchar) as acquisition_channel,
            cast(null as timestamp) as updated_at
    """


def _load_customers_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    customer_col: str,
    rejected_path: Path,
    options: ReadOptions,
    workdir: Path,
) -> int:
    """Create ``cust_file`` from a customers file; return the rejected row count.

    Missing attributes become ``unknown``; an empty ``signup_date`` becomes the first
    purchase date; ``updated_at`` defaults to the signup date. A row whose customer is
    missing, whose dates do not parse, or that repeats (customer, updated_at) is
    rejected.
    """
    source = _load_source(con, path, "cust_src", options, workdir)
    cols = source.columns
    id_name = _resolve(cols, "customer_id") or customer_col
    id_name = _require_columns(path, source, {"customer id": id_name})["customer id"]

    def attribute(name: str, allowed: tuple[str, ...]) -> str:
        found = _resolve(cols, name)
        if found is None:
            return "'unknown'"
        value = f"lower(trim(cast({_ident(found)} as varchar)))"
        values = ", ".join(_lit(v) for v in allowed)
        return f"case when {value} in ({values}) then {value} else 'unknown' end"

    def stamp(name: str) -> tuple[str, str]:
        found = _resolve(cols, name)
        if found is None:
            return "cast(null as timestamp)", "cast(null as varchar)"
        col = _ident(found)
        expr = _timestamp_expr(con, col, cols[found], None, options.timezone)
        return expr, _text_expr(col)

    signup, raw_signup = stamp("signup_date")
    updated, raw_updated = stamp("updated_at")
    con.execute(
        f"""
        create temp table cust_parsed as
        with first_purchase as (
            select customer_id, cast(min(transaction_at) as date) as first_day
            from tx_good
            group by customer_id
        ),
        typed as (
            select
                s.{_RECORD},
                {_customer_expr(_ident(id_name), cols[id_name])} as customer_id,
                cast({signup} as date) as parsed_signup,
                {raw_signup} as raw_signup,
                {updated} as parsed_updated,
                {raw_updated} as raw_updated,
                {attribute("plan", PLANS)} as plan,
                {attribute("region", REGIONS)} as region,
                {attribute("acquisition_channel", ACQUISITION_CHANNELS)}
                    as acquisition_channel
            from cust_src as s
        ),
        filled as (
            select
                t.*,
                coalesce(t.parsed_signup, f.first_day) as signup_date
            from typed as t
            left join first_purchase as f using (customer_id)
        ),
        stamped as (
            select
                *,
                coalesce(parsed_updated, cast(signup_date as timestamp))
                    as updated_at
            from filled
        )
        select
            *,
            nullif(concat_ws('; ',
                case when customer_id is null then 'customer is missing' end,
                case
                    when raw_signup is not null and parsed_signup is null
                        then 'signup_date ' || {_quoted("raw_signup")}
                            || ' is not a date'
                    when signup_date is null
                        then 'signup_date is missing and the customer has no purchase'
                end,
                case
                    when raw_updated is not null and parsed_updated is null
                        then 'updated_at ' || {_quoted("raw_updated")}
                            || ' is not a timestamp'
                end
            ), '') as reason
        from stamped
        """
    )
    con.execute(
        f"""
        update cust_parsed
        set reason = 'duplicate customer row (first seen in record '
            || dup.first_record || ')'
        from (
            select
                {_RECORD} as record,
                first_value({_RECORD}) over (
                    partition by customer_id, updated_at order by {_RECORD}
                ) as first_record
            from cust_parsed
            where reason is null
        ) as dup
        where cust_parsed.{_RECORD} = dup.record and dup.record <> dup.first_record
        """
    )
    con.execute(
        f"""
        create temp table cust_file as
        select {", ".join(CUSTOMERS.columns)}
        from cust_parsed
        where reason is null
        """
    )
    return _write_rejected(con, source, "cust_parsed", rejected_path)


def _register_known_customers(
    con: duckdb.DuckDBPyConnection, landing: Path, owned_days: set[date]
) -> None:
    """Create ``known_customers(customer_id, dt)`` from partitions this import keeps.

    Partitions of the days this import writes are about to be replaced, so only the
    others tell which customers the landing folder already knows (e.g. from an
    earlier, older export).
    """
    files: dict[str, list[str]] = {".parquet": [], ".csv": []}
    for day in list_partition_dates(landing, "customers"):
        if day not in owned_days:
            for file in partition_files(landing, "customers", day):
                files[file.suffix].append(str(file))
    parts = ["select cast(null as varchar) as customer_id, cast(null as date) as dt"]
    for suffix, reader, options in (
        (".parquet", "read_parquet", ""),
        (".csv", "read_csv", ", header = true, all_varchar = true"),
    ):
        if files[suffix]:
            listed = ", ".join(_lit(f) for f in files[suffix])
            parts.append(
                f"""
                select cast(customer_id as varchar), cast(dt as date)
                from {reader}([{listed}], hive_partitioning = true,
                    union_by_name = true{options})
                """
            )
    try:
        con.execute(
            f"""
            create temp table known_customers as
            select * from ({" union all ".join(parts)})
            where customer_id is not null
            """
        )
    except duckdb.Error as exc:
        raise ImportInputError(
            f"cannot read the existing customers partitions in {landing}: {exc}"
        ) from exc


def _customer_rows(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Customer rows to write: the customers file plus derived first purchases.

    A customer gets a derived row (signup on the first purchase day, attributes
    ``unknown``) unless the customers file lands them by that day, or an earlier
    partition that this import does not replace already knows them. The validation
    gate quarantines a purchase whose customer has not landed by the purchase's
    day, so every customer must be known by their first purchase.
    """
    return con.sql(
        f"""
        with first_purchase as (
            select customer_id, min(transaction_at) as first_at
            from tx_good
            group by customer_id
        ),
        derived as (
            select
                f.customer_id,
                cast(f.first_at as date) as signup_date,
                'unknown' as plan,
                'unknown' as region,
                'unknown' as acquisition_channel,
                f.first_at as updated_at
            from first_purchase as f
            where not exists (
                select 1
                from cust_file as c
                where c.customer_id = f.customer_id
                    and cast(c.updated_at as date) <= cast(f.first_at as date)
            )
            and not exists (
                select 1
                from known_customers as k
                where k.customer_id = f.customer_id
                    and k.dt < cast(f.first_at as date)
            )
        ),
        combined as (
            select {", ".join(CUSTOMERS.columns)} from cust_file
            union all
            select {", ".join(CUSTOMERS.columns)} from derived
        )
        select * from combined
        order by updated_at, customer_id
        """
    ).to_arrow_table()


def _write_customer_partitions(
    landing: Path,
    rows: pa.Table,
    owned_days: set[date],
    advance: Callable[[], None],
) -> int:
    """Replace the customers partition of every owned day; return rows written.

    An owned day without customer rows loses its old partition, so a re-import after
    a customer's first purchase moved leaves no stale row behind.
    """
    # Rows are sorted by updated_at, so each day is one contiguous slice.
    runs = pc.value_counts(rows["updated_at"].cast(pa.date32()))
    bounds: dict[date, tuple[int, int]] = {}
    start = 0
    for day, n in zip(
        runs.field("values").to_pylist(), runs.field("counts").to_pylist(), strict=True
    ):
        bounds[day] = (start, n)
        start += n
    for day in sorted(owned_days):
        if day in bounds:
            offset, n = bounds[day]
            write_partition(landing, "customers", day, rows.slice(offset, n))
        else:
            folder = partition_dir(landing, "customers", day)
            if folder.exists():
                shutil.rmtree(folder)
        advance()
    return rows.num_rows


# --- SQL helpers ---------------------------------------------------------------


def _count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    """The single number a ``select count(...)`` returns.

    ``fetchall`` (not ``fetchone``) so that no result is left open on the
    connection, which DuckDB would refuse for the next query.
    """
    rows = con.execute(query).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _quoted(expr: str, width: int = 60) -> str:
    """SQL that shows a text value in single quotes, shortened, for a reason."""
    return f"'''' || left({expr}, {width}) || ''''"


def _text_expr(col: str) -> str:
    """The column as trimmed text, null when empty."""
    return f"nullif(trim(cast({col} as varchar)), '')"


def _is_temporal(duck_type: str) -> bool:
    return duck_type == "DATE" or duck_type.startswith("TIMESTAMP")


def _is_numeric(duck_type: str) -> bool:
    return duck_type in _NUMERIC_TYPES or duck_type.startswith("DECIMAL")


def _customer_expr(col: str, duck_type: str) -> str:
    """Customer id as text; integral floats lose their ``.0``."""
    if duck_type in ("FLOAT", "DOUBLE"):
        return f"""
            case
                when isfinite({col}) and {col} = trunc({col}) and abs({col}) < 1e18
                    then cast(cast({col} as bigint) as varchar)
                else cast({col} as varchar)
            end"""
    return _text_expr(col)


def _amount_expr(col: str, duck_type: str, decimal: str = ".") -> str:
    """Amount as a double; text may carry spaces, a currency and thousands marks.

    With ``decimal`` ``.``, ``1,234.50`` is read as 1234.5; with ``,``, ``1.234,50``
    and ``12,5`` are. A separator that does not group thousands (``12,50`` when the
    mark is ``.``) leaves the text unreadable, so it is rejected, never guessed.
    """
    if _is_numeric(duck_type):
        return f"cast({col} as double)"
    text = f"cast({col} as varchar)"
    text = f"regexp_replace({text}, {_lit(CODE_BEFORE)}, '\\2')"
    text = f"regexp_replace({text}, {_lit(CODE_AFTER)}, '\\1')"
    text = f"regexp_replace({text}, {_lit(CURRENCY_CHARS)}, '', 'g')"
    group, mark = (",", ".") if decimal == "." else (".", ",")
    grouped = "[+-]?[0-9]{1,3}(" + re.escape(group) + "[0-9]{3})+(" + re.escape(mark)
    grouped += "[0-9]*)?"
    plain = "[+-]?[0-9]*" + re.escape(mark) + "?[0-9]*"
    return f"""
        case
            when regexp_full_match({text}, {_lit(grouped)})
                then try_cast(replace(replace({text}, {_lit(group)}, ''),
                    {_lit(mark)}, '.') as double)
            when regexp_full_match({text}, {_lit(plain)})
                then try_cast(replace({text}, {_lit(mark)}, '.') as double)
            when contains({text}, {_lit(group)}) then null
            else try_cast({text} as double)
        end"""


def _bool_expr(col: str, duck_type: str) -> str:
    """A discount flag from a boolean, a number (non-zero) or a word."""
    if duck_type == "BOOLEAN":
        return f"coalesce({col}, false)"
    if _is_numeric(duck_type):
        return f"coalesce(cast({col} as double) <> 0, false)"
    text = f"lower(trim(cast({col} as varchar)))"
    words = ", ".join(_lit(w) for w in TRUE_WORDS)
    return f"""
        case
            when {text} in ({words}) then true
            else coalesce(try_cast({text} as double) <> 0, false)
        end"""


def _timestamp_expr(
    con: duckdb.DuckDBPyConnection,
    col: str,
    duck_type: str,
    date_format: str | None,
    zone: str = "UTC",
) -> str:
    """SQL for a timestamp without zone, in ``zone``, from a date/time column.

    Null when the value cannot be read. Text is read with ``date_format`` when given
    (strptime), else as ISO 8601 (a date alone is midnight). A value with an offset
    (``+02:00``, ``Z`` or ``%z``) is converted to ``zone``; one without is taken as
    already in ``zone``. The session time zone must be ``zone``.
    """
    if duck_type == "TIMESTAMP WITH TIME ZONE":
        return f"timezone({_lit(zone)}, {col})"
    if _is_temporal(duck_type):
        return f"cast({col} as timestamp)"
    text = _text_expr(col)
    if date_format is None:
        return f"timezone({_lit(zone)}, try_cast({text} as timestamptz))"
    try:
        rows = con.execute(
            "select typeof(try_strptime('', ?))", [date_format]
        ).fetchall()
    except duckdb.Error as exc:
        raise ImportInputError(f"invalid date format {date_format!r}: {exc}") from exc
    parsed = f"try_strptime({text}, {_lit(date_format)})"
    if rows and rows[0][0] == "TIMESTAMP WITH TIME ZONE":
        return f"timezone({_lit(zone)}, {parsed})"
    return parsed
