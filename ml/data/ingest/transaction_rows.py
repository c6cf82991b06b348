"""The transaction log's columns mapped onto the landing contract.

:func:`parse_transactions` types the named columns (:mod:`ml.data.ingest.value_sql`)
into ``tx_parsed``, in one pass, with a rejection reason per row (a missing or
unreadable customer, date or amount, a negative amount, a repeated transaction id);
the view ``tx_good`` holds the good rows with a stable transaction id each.
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
# The SQL macro that spells a row's ``id_key`` of ``tx_good`` as its transaction id.
TRANSACTION_ID_MACRO = "tx_transaction_id"


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
    """Create ``tx_parsed`` (typed contract columns and a rejection reason per
    row) and the view ``tx_good`` of its good rows with their transaction ids
    (and ``id_key``, which sorts as the id does and which the macro
    :data:`TRANSACTION_ID_MACRO` spells as the id).

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
    # The rows are held in memory (and spilled above the memory limit) until the
    # partitions are written, so they are held narrow: the category as an enum
    # (its labels in text order, so it sorts as the text does), the source id only
    # when there is an id column, else a hashed id as the 12 bytes its 24 hex
    # digits spell (stored inline, where the text would take a heap string per
    # row; the bytes sort as the digits do). tx_good spells the id out.
    category_type = "enum(" + ", ".join(lit(c) for c in sorted(CATEGORIES)) + ")"
    id_column = (
        "source_id"
        if id_col is not None
        else f"case when reason is null then {id_digest_sql('1')} end as id_digest"
    )
    # A table of the import's own in-memory database, not a temp table, so the
    # cursors that write the day partitions side by side see it (and tx_good).
    # One statement types and reasons the rows: each extra copy of tens of
    # millions of rows would spill.
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
        )
        select
            {RECORD},
            customer_id,
            transaction_at,
            amount,
            cast(category as {category_type}) as category,
            is_discounted,
            {id_column},
            has_date,
            reason
        from reasoned
        """
    )
    if id_col is not None:
        id_key, spelled = "source_id", "key"
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
    else:
        id_key = "id_digest"
        spelled = f"{lit(TRANSACTION_ID_PREFIX)} || lower(hex(key))"
        number_repeated_purchases(con)
    # tx_good's id_key sorts as its transaction_id does; the macro spells a key
    # out, so a sort can carry the short key and spell it afterwards
    con.execute(f"create macro {TRANSACTION_ID_MACRO}(key) as {spelled}")
    con.execute(
        f"""
        create view tx_good as
        select
            {TRANSACTION_ID_MACRO}({id_key}) as transaction_id,
            {id_key} as id_key,
            customer_id,
            transaction_at,
            amount,
            cast(category as varchar) as category,
            is_discounted,
            {RECORD}
        from tx_parsed
        where reason is null
        """
    )


def id_digest_sql(occurrence: str) -> str:
    """The 12 bytes of a hashed transaction id: the first 24 hex digits of the
    md5 of customer, time, amount and ``occurrence`` (SQL of a good row)."""
    return f"""unhex(left(md5(concat_ws('|',
        customer_id,
        strftime(transaction_at, '%Y-%m-%dT%H:%M:%S.%f'),
        printf('%.6f', amount),
        cast({occurrence} as varchar)
    )), 24))"""


def number_repeated_purchases(con: duckdb.DuckDBPyConnection) -> None:
    """Give the 2nd, 3rd, ... of identical good rows of ``tx_parsed`` (in the
    order of category, discount and record) the id of that occurrence, so two
    identical purchases get two ids.

    Every good row starts with the id of occurrence 1. Only rows whose customer
    and time hash the same as another good row's can share a purchase with it,
    so the numbering's window runs over those alone, not over the whole log: in
    most logs they are few.
    """
    con.execute(
        f"""
        create temp table tx_repeated as
        select record, {id_digest_sql("occurrence")} as id_digest from (
            select
                {RECORD} as record,
                customer_id,
                transaction_at,
                amount,
                row_number() over (
                    partition by customer_id, transaction_at, printf('%.6f', amount)
                    order by category, is_discounted, {RECORD}
                ) as occurrence
            from tx_parsed
            where reason is null and hash(customer_id, transaction_at) in (
                select key from (
                    select hash(customer_id, transaction_at) as key
                    from tx_parsed
                    where reason is null
                )
                group by key
                having count(*) > 1
            )
        )
        where occurrence > 1
        """
    )
    if fetch_count(con, "select count(*) from tx_repeated"):
        con.execute(
            f"""
            update tx_parsed
            set id_digest = tx_repeated.id_digest
            from tx_repeated
            where tx_parsed.{RECORD} = tx_repeated.record
            """
        )
    con.execute("drop table tx_repeated")


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
