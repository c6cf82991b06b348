"""Read an input file, of whatever dialect, into DuckDB.

The reading options are checked first (:func:`read_options`, :func:`set_timezone`).
A CSV file (``.csv``, ``.tsv``, ``.txt``, optionally ``.gz``) is normalised by
:func:`ml.data.dialect.prepare_csv` and read with every column as text; a Parquet
file is read as it is. Each row keeps its record number (:data:`RECORD`), and CSV
lines that do not split into the header's columns are kept aside for the rejects
file. :func:`require_columns` finds the columns the caller named, exactly or
ignoring case and surrounding spaces, and says which are missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from ml.data.dialect import (
    WHITESPACE,
    Dialect,
    DialectError,
    check_encoding,
    parse_delimiter,
    prepare_csv,
)
from ml.data.ingest.import_result import ImportInputError
from ml.data.ingest.sql_text import fetch_count, ident, lit

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSION_SUFFIXES = (".gz", ".zst")
DECIMAL_MARKS = (".", ",")
# The column with each row's 1-based record number (its position in the file).
RECORD = "__loopline_record"


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


@dataclass(frozen=True)
class Source:
    """A source file loaded into DuckDB: ``table`` is a view of its rows with a
    record number each."""

    table: str
    columns: dict[str, str]  # name -> DuckDB type
    records: int
    malformed: int  # CSV lines the reader could not split into the header's columns
    dialect: Dialect | None = None  # how a text file was read


def read_options(
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


def set_timezone(con: duckdb.DuckDBPyConnection, zone: str) -> None:
    """Use ``zone`` for the session; a clear error for an unknown zone."""
    try:
        con.execute(f"set TimeZone = {lit(zone)}")
    except duckdb.Error as exc:
        raise ImportInputError(
            f"unknown time zone {zone!r}; use an IANA name such as UTC, "
            "Europe/Berlin or America/New_York"
        ) from exc


def file_kind(path: Path) -> str:
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


def import_name(path: Path) -> str:
    """The file name without its type and compression suffixes (``a.csv.gz`` -> a)."""
    name = path.name
    for suffixes in (COMPRESSION_SUFFIXES, CSV_SUFFIXES + PARQUET_SUFFIXES):
        for suffix in suffixes:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    return name


def load_source(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: str,
    options: ReadOptions,
    workdir: Path,
) -> Source:
    """Load a CSV (every column as text) or Parquet file into a temp view
    ``table`` (over the table :func:`rows_table` names).

    A text file is first normalised (:func:`ml.data.dialect.prepare_csv`): decoded,
    LF line endings, its delimiter detected or given (a file that already is UTF-8
    with LF line endings is read in place). Column names lose surrounding
    spaces. Each row gets its 1-based record number (its position in the file). CSV
    lines that do not split into the header's columns are skipped by the reader and
    kept in the ``<table>_rejects`` table.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    kind = file_kind(path)
    dialect: Dialect | None = None
    if kind == "csv":
        copy = workdir / f"{table}.csv"
        try:
            dialect, copy = prepare_csv(
                path, copy, delimiter=options.delimiter, encoding=options.encoding
            )
        except DialectError as exc:
            raise ImportInputError(str(exc)) from exc
        quote = "" if dialect.delimiter == WHITESPACE else '"'
        csv_options = (
            f"header = true, all_varchar = true, ignore_errors = true, "
            f"delim = {lit(dialect.reader_delimiter)}, quote = {lit(quote)}, "
            f"escape = {lit(quote)}, new_line = '\\n'"
        )
        reader = (
            f"read_csv({lit(str(copy))}, {csv_options}, store_rejects = true, "
            f"rejects_table = {lit(table + '_rejects')}, "
            f"rejects_scan = {lit(table + '_scans')})"
        )
        describe = f"read_csv({lit(str(copy))}, {csv_options})"
    else:
        reader = describe = f"read_parquet({lit(str(path))})"
    try:
        described = con.execute(f"describe select * from {describe}").fetchall()
    except duckdb.Error as exc:
        raise ImportInputError(_read_error(path, dialect, exc)) from exc
    columns = _clean_names([(str(row[0]), str(row[1])) for row in described])
    aliases = ", ".join(ident(c) for c in columns)
    # The rows are stored in the file's order (insertion order is preserved), so
    # a row's record number is its row id plus one. Numbering them as they are
    # read (``with ordinality``) gives the same numbers but doubles the read.
    con.execute("set preserve_insertion_order = true")
    try:
        con.execute(
            f"""
            create temp table {rows_table(table)} as
            select * from {reader} as src({aliases})
            """
        )
    except duckdb.Error as exc:
        raise ImportInputError(_read_error(path, dialect, exc)) from exc
    con.execute(
        f"""
        create temp view {table} as
        select *, rowid + 1 as {RECORD} from {rows_table(table)}
        """
    )
    records = fetch_count(con, f"select count(*) from {table}")
    malformed = 0
    if kind == "csv":
        malformed = fetch_count(
            con, f"select count(distinct line) from {table}_rejects"
        )
    return Source(
        table=table,
        columns=columns,
        records=records,
        malformed=malformed,
        dialect=dialect,
    )


def rows_table(table: str) -> str:
    """The temp table that holds the rows of the source view ``table``."""
    return f"{table}_rows"


def drop_source(con: duckdb.DuckDBPyConnection, source: Source) -> None:
    """Free the memory of a loaded source: its view and its rows."""
    con.execute(f"drop view {source.table}")
    con.execute(f"drop table {rows_table(source.table)}")


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


def resolve_column(columns: dict[str, str], name: str) -> str | None:
    """The column of ``columns`` that ``name`` means: exact, else ignoring case."""
    if name in columns:
        return name
    wanted = name.strip().casefold()
    matches = [c for c in columns if c.strip().casefold() == wanted]
    return matches[0] if len(matches) == 1 else None


def require_columns(
    path: Path, source: Source, named: dict[str, str | None]
) -> dict[str, str]:
    """The file's column for every named option; fail naming what is missing.

    Names match exactly, or else ignoring case and surrounding spaces.
    """
    resolved: dict[str, str] = {}
    missing = []
    for option, name in named.items():
        if name is None:
            continue
        column = resolve_column(source.columns, name)
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
