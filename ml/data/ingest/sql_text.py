"""Small helpers that write DuckDB SQL text for the importer.

Quoting of identifiers and literals, the text form of a column, a value shown
in quotes inside a rejection reason, and the one number a ``count`` query returns.
"""

from __future__ import annotations

import duckdb


def fetch_count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    """The single number a ``select count(...)`` returns.

    ``fetchall`` (not ``fetchone``) so that no result is left open on the
    connection, which DuckDB would refuse for the next query.
    """
    rows = con.execute(query).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def quoted(expr: str, width: int = 60) -> str:
    """SQL that shows a text value in single quotes, shortened, for a reason."""
    return f"'''' || left({expr}, {width}) || ''''"


def text_expr(col: str) -> str:
    """The column as trimmed text, null when empty."""
    return f"nullif(trim(cast({col} as varchar)), '')"
