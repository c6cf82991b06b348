"""The transaction log's columns mapped onto the landing contract.

:func:`parse_transactions` types the named columns (:mod:`ml.data.ingest.value_sql`)
into ``tx_parsed``, in one pass, with a rejection reason per row (a missing or
unreadable customer, date or amount, a negative amount, a repeated transaction id)
and a stable transaction id per good row; the view ``tx_good`` holds the good rows.
:func:`check_dates_parse` stops when not one date parses, and :func:`rows_per_day`
hands the days to the partition writer.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from ml.contract.schema import CATEGORIES
from ml.data.ingest.import_result import ImportInputError
from ml.data.ingest.source_reading import RECORD, ReadOptions, Source
from ml.data.ingest.sql_text import fetch_count, ident, lit, quoted, text_expr
from ml.data.ingest.value_sql import (
    amount_expr,
    bool_expr,
    customer_expr,
    is_temporal,
    timestamp_expr,
)

TRANSACTION_ID_PREFIX = "tx_"


def parse_transactions(
    con: duckdb.DuckDBPyConnection,
    source: Source,
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
    """Create ``tx_parsed`` (typed contract columns, a rejection reason, and the
    transaction id of each good row) and the view ``tx_good`` of its good rows.

    The id is the id column's value when there is one; else a hash of the
    purchase and its occurrence number among identical purchases, so two
    identical rows stay two purchases and the same file gets the same ids on
    every import.
    """
    cols = source.columns
    zone = options.timezone
    other_mark = "," if options.decimal == "." else "."
    amount_hint = (
        f"case when contains(raw_amount, {lit(other_mark)}) then "
        f"{lit(f' (the decimal mark is {options.decimal!r}: try --decimal')}"
        f" || {lit(' ' + other_mark + ')')} else '' end"
    )
    customer = ident(customer_col)
    when = ident(date_col)
    amount = ident(amount_col)
    categories = ", ".join(lit(c) for c in CATEGORIES)
    category_sql = (
        f"""
        case
            when lower(trim(cast({ident(category_col)} as varchar))) in ({categories})
                then lower(trim(cast({ident(category_col)} as varchar)))
            else 'other'
        end"""
        if category_col is not None
        else "'other'"
    )
    discount_sql = (
        bool_expr(ident(discount_col), cols[discount_col])
        if discount_col is not None
        else "false"
    )
    id_sql = text_expr(ident(id_col)) if id_col is not None else "null"
    date_hint = (
        f" does not match the date format {date_format}"
        if date_format is not None and not is_temporal(cols[date_col])
        else " is not an ISO date or timestamp (pass a date format)"
    )
    id_missing = (
        "case when source_id is null then 'transaction id is missing' end,"
        if id_col is not None
        else ""
    )
    if id_col is not None:
        transaction_id = "source_id"
        numbered = "select * from reasoned"
    else:
        # A rejected row has no amount key, so it never shares an occurrence
        # partition with a good one.
        transaction_id = f"""{lit(TRANSACTION_ID_PREFIX)} || left(md5(concat_ws('|',
                    customer_id,
                    strftime(transaction_at, '%Y-%m-%dT%H:%M:%S.%f'),
                    amount_key,
                    cast(occurrence as varchar)
                )), 24)"""
        numbered = f"""
            select
                *,
                row_number() over (
                    partition by customer_id, transaction_at, amount_key
                    order by category, is_discounted, {RECORD}
                ) as occurrence
            from (
                select
                    *,
                    case when reason is null then printf('%.6f', amount) end
                        as amount_key
                from reasoned
            )"""
    # A table of the import's own in-memory database, not a temp table, so the
    # cursors that write the day partitions side by side see it (and tx_good).
    # One statement types, reasons and numbers the rows: each extra copy of tens
    # of millions of rows would spill.
    con.execute(
        f"""
        create table tx_parsed as
        with typed as (
            select
                {RECORD},
                {customer_expr(customer, cols[customer_col])} as customer_id,
                {timestamp_expr(con, when, cols[date_col], date_format, zone)}
                    as transaction_at,
                {amount_expr(amount, cols[amount_col], options.decimal)} as amount,
                {category_sql} as category,
                {discount_sql} as is_discounted,
                {id_sql} as source_id,
                {text_expr(when)} as raw_date,
                {text_expr(amount)} as raw_amount
            from {source.table}
        ),
        reasoned as (
            select
                * exclude (raw_date, raw_amount),
                raw_date is not null as has_date,
                nullif(concat_ws('; ',
                    case when customer_id is null then 'customer is missing' end,
                    case
                        when raw_date is null then 'date is missing'
                        when transaction_at is null
                            then 'date ' || {quoted("raw_date")} || {lit(date_hint)}
                    end,
                    case
                        when raw_amount is null then 'amount is missing'
                        when amount is null
                            then 'amount ' || {quoted("raw_amount")}
                                || ' is not a number' || {amount_hint}
                        when not isfinite(amount)
                            then 'amount ' || {quoted("raw_amount")}
                                || ' is not a finite number'
                        when amount < 0
                            then 'amount ' || {quoted("raw_amount")}
                                || ' is negative (a refund is not a purchase)'
                    end,
                    {id_missing}
                ), '') as reason
            from typed
        ),
        numbered as ({numbered})
        select
            {RECORD},
            customer_id,
            transaction_at,
            amount,
            category,
            is_discounted,
            source_id,
            has_date,
            reason,
            case when reason is null then {transaction_id} end as transaction_id
        from numbered
        """
    )
    if id_col is not None:
        con.execute(
            f"""
            update tx_parsed
            set reason = 'duplicate transaction id ' || {quoted("dup.source_id")}
                || ' (first seen in record ' || dup.first_record || ')'
            from (
                select
                    {RECORD} as record,
                    source_id,
                    first_value({RECORD}) over (
                        partition by source_id order by {RECORD}
                    ) as first_record
                from tx_parsed
                where reason is null
            ) as dup
            where tx_parsed.{RECORD} = dup.record
                and dup.record <> dup.first_record
            """
        )
    con.execute(
        f"""
        create view tx_good as
        select
            transaction_id,
            customer_id,
            transaction_at,
            amount,
            category,
            is_discounted,
            {RECORD}
        from tx_parsed
        where reason is null
        """
    )


def check_dates_parse(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    path: Path,
    date_col: str,
    date_format: str | None,
) -> None:
    """Stop early when not a single date parses: the format is surely wrong."""
    parsed = fetch_count(con, "select count(transaction_at) from tx_parsed")
    present = fetch_count(con, "select count(*) from tx_parsed where has_date")
    if present == 0 or parsed > 0:
        return
    raw_date = text_expr(ident(date_col))
    examples = [
        str(row[0])
        for row in con.execute(
            f"select {raw_date} from {source.table} where {raw_date} is not null "
            f"order by {RECORD} limit 3"
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


def rows_per_day(con: duckdb.DuckDBPyConnection) -> list[tuple[date, int]]:
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
