"""The rejects files: rows that could not be imported, each with its reason.

Nothing is dropped silently. Rows whose values do not parse, and CSV lines that
could not be split into columns, go to ``landing/_rejected/<file name>.csv``
(:func:`rejected_file`; the customers file's rejects to their own file,
:func:`customers_rejected_file`), written atomically by :func:`write_rejected`.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from ml.data.ingest.source_reading import RECORD, Source, import_name, rows_table
from ml.data.ingest.sql_text import fetch_count, ident, lit

REJECTED_DIR = "_rejected"


def rejected_file(landing: Path, path: Path) -> Path:
    """Where rejected rows of the transaction log ``path`` go."""
    return landing / REJECTED_DIR / f"{import_name(path)}.csv"


def customers_rejected_file(landing: Path, path: Path, customers_path: Path) -> Path:
    """Where rejected rows of the customers file go (never the log's own file)."""
    name = import_name(customers_path)
    if name == import_name(path):
        name = f"{name}-customers"
    return landing / REJECTED_DIR / f"{name}.csv"


def write_rejected(
    con: duckdb.DuckDBPyConnection, source: Source, parsed: str, target: Path
) -> int:
    """Write rejected rows with their reason to ``target``; return their count.

    Columns: ``record`` (1-based among the rows read), ``line`` (file line, for
    CSV lines that could not be split into columns), ``reason``, then the source
    columns as text. A stale file from an earlier import is removed when nothing is
    rejected.
    """
    source_cols = ", ".join(
        f"cast(s.{ident(c)} as varchar) as {ident(c)}" for c in source.columns
    )
    null_cols = ", ".join(
        f"cast(null as varchar) as {ident(c)}" for c in source.columns
    )
    parts = [
        f"""
        select
            p.{RECORD} as record,
            cast(null as bigint) as line,
            p.reason,
            {source_cols}
        from {parsed} as p
        -- a record is its row's id plus one (source_reading.load_source): the
        -- join on the row id fetches the few rejected rows alone
        inner join {rows_table(source.table)} as s on s.rowid = p.{RECORD} - 1
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
    count = fetch_count(con, f"select count(*) from ({query})")
    if count == 0:
        target.unlink(missing_ok=True)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    con.execute(
        f"""
        copy (select * from ({query}) order by record nulls last, line)
        to {lit(str(tmp))} (format csv, header true)
        """
    )
    tmp.replace(target)
    return count
