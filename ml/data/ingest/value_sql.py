"""SQL expressions that read one source value as its contract type.

A customer id as text (integral floats lose their ``.0``), an amount as a double
(currency signs and codes, thousands separators, a decimal comma), a discount
flag from a boolean, a number or a word, and a timestamp in the import's time
zone (ISO 8601 or a strptime format, offsets converted). Each expression is null
where the value cannot be read, so the caller can reject the row with a reason.
"""

from __future__ import annotations

import re

import duckdb

from ml.data.ingest.import_result import ImportInputError
from ml.data.ingest.sql_text import lit, text_expr

# Values of a discount column that mean "discounted" (besides non-zero numbers).
TRUE_WORDS = ("true", "t", "yes", "y")
# Stripped from text amounts before they are read as numbers: spaces (also
# no-break), currency signs and apostrophes (1'234.50); and a three-letter currency
# code before or after the number (EUR 12.50, 12.50 USD).
CURRENCY_CHARS = "[\\s\u00a0\u202f$€£¥₹₽¢']"
CODE_BEFORE = r"^([A-Za-z]{3})\s*([-+]?[0-9.,])"
CODE_AFTER = r"([0-9.,])\s*[A-Za-z]{3}$"
# An ISO 8601 date or local date and time: no offset, no zone.
LOCAL_ISO = (
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"([ T][0-9]{1,2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,9})?)?)?"
)
NUMERIC_TYPES = (
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


def is_temporal(duck_type: str) -> bool:
    return duck_type == "DATE" or duck_type.startswith("TIMESTAMP")


def is_numeric(duck_type: str) -> bool:
    return duck_type in NUMERIC_TYPES or duck_type.startswith("DECIMAL")


def customer_expr(col: str, duck_type: str) -> str:
    """Customer id as text; integral floats lose their ``.0``."""
    if duck_type in ("FLOAT", "DOUBLE"):
        return f"""
            case
                when isfinite({col}) and {col} = trunc({col}) and abs({col}) < 1e18
                    then cast(cast({col} as bigint) as varchar)
                else cast({col} as varchar)
            end"""
    return text_expr(col)


def amount_expr(col: str, duck_type: str, decimal: str = ".") -> str:
    """Amount as a double; text may carry spaces, a currency and thousands marks.

    With ``decimal`` ``.``, ``1,234.50`` is read as 1234.5; with ``,``, ``1.234,50``
    and ``12,5`` are. A separator that does not group thousands (``12,50`` when the
    mark is ``.``) leaves the text unreadable, so it is rejected, never guessed.
    """
    if is_numeric(duck_type):
        return f"cast({col} as double)"
    text = f"cast({col} as varchar)"
    text = f"regexp_replace({text}, {lit(CODE_BEFORE)}, '\\2')"
    text = f"regexp_replace({text}, {lit(CODE_AFTER)}, '\\1')"
    text = f"regexp_replace({text}, {lit(CURRENCY_CHARS)}, '', 'g')"
    group, mark = (",", ".") if decimal == "." else (".", ",")
    grouped = "[+-]?[0-9]{1,3}(" + re.escape(group) + "[0-9]{3})+(" + re.escape(mark)
    grouped += "[0-9]*)?"
    plain = "[+-]?[0-9]*" + re.escape(mark) + "?[0-9]*"
    # With a decimal point, text DuckDB reads as a number reads the same through
    # the cleaning below (it carries no currency, code or thousands mark), so most
    # values skip the regular expressions.
    fast = f"try_cast(cast({col} as varchar) as double), " if decimal == "." else ""
    return f"""
        coalesce({fast}case
            when regexp_full_match({text}, {lit(grouped)})
                then try_cast(replace(replace({text}, {lit(group)}, ''),
                    {lit(mark)}, '.') as double)
            when regexp_full_match({text}, {lit(plain)})
                then try_cast(replace({text}, {lit(mark)}, '.') as double)
            when contains({text}, {lit(group)}) then null
            else try_cast({text} as double)
        end)"""


def bool_expr(col: str, duck_type: str) -> str:
    """A discount flag from a boolean, a number (non-zero) or a word."""
    if duck_type == "BOOLEAN":
        return f"coalesce({col}, false)"
    if is_numeric(duck_type):
        return f"coalesce(cast({col} as double) <> 0, false)"
    text = f"lower(trim(cast({col} as varchar)))"
    words = ", ".join(lit(w) for w in TRUE_WORDS)
    return f"""
        case
            when {text} in ({words}) then true
            else coalesce(try_cast({text} as double) <> 0, false)
        end"""


def timestamp_expr(
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
        return f"timezone({lit(zone)}, {col})"
    if is_temporal(duck_type):
        return f"cast({col} as timestamp)"
    text = text_expr(col)
    if date_format is None:
        with_zone = f"timezone({lit(zone)}, try_cast({text} as timestamptz))"
        if zone != "UTC":
            return with_zone
        # In UTC a local ISO date or time (no offset, no zone name) reads the same
        # without the time zone machinery, at half the cost.
        return f"""
            case
                when regexp_full_match({text}, {lit(LOCAL_ISO)})
                    then try_cast({text} as timestamp)
                else {with_zone}
            end"""
    try:
        rows = con.execute(
            "select typeof(try_strptime('', ?))", [date_format]
        ).fetchall()
    except duckdb.Error as exc:
        raise ImportInputError(f"invalid date format {date_format!r}: {exc}") from exc
    parsed = f"try_strptime({text}, {lit(date_format)})"
    if rows and rows[0][0] == "TIMESTAMP WITH TIME ZONE":
        return f"timezone({lit(zone)}, {parsed})"
    return parsed
