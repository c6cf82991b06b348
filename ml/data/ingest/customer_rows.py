"""The customers an import lands: a customers file's rows, or derived ones.

:func:`load_customers` reads an optional customers file into ``cust_file``
(attributes mapped onto the contract, bad rows to their rejects file), else an
empty ``cust_file``. :func:`register_known_customers` lists the customers that
landing partitions this import keeps already know, and
:func:`collect_customer_rows` adds a derived row (signup on the first purchase
day, attributes ``unknown``) for every customer not landed by their first purchase.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from ml.contract.schema import ACQUISITION_CHANNELS, CUSTOMERS, PLANS, REGIONS
from ml.data.ingest.import_result import ImportInputError
from ml.data.ingest.rejects import customers_rejected_file, write_rejected
from ml.data.ingest.source_reading import (
    RECORD,
    ReadOptions,
    load_source,
    require_columns,
    resolve_column,
)
from ml.data.ingest.sql_text import ident, lit, quoted, text_expr
from ml.data.ingest.value_sql import customer_expr, timestamp_expr
from ml.storage.landing_files import list_partition_dates, partition_files


def load_customers(
    con: duckdb.DuckDBPyConnection,
    landing: Path,
    path: Path,
    customers_path: Path | None,
    customer_col: str,
    options: ReadOptions,
    workdir: Path,
) -> tuple[int, Path | None]:
    """Create ``cust_file``; return the rejected row count and the rejects file.

    Without a customers file, ``cust_file`` is empty and there is no rejects file.
    The rejects file of a customers file is never the log's own (``path``).
    """
    if customers_path is None:
        con.execute(f"create temp table cust_file as {_empty_customers_sql()} limit 0")
        return 0, None
    rejected_path = customers_rejected_file(landing, path, customers_path)
    rejected = _load_customers_file(
        con, customers_path, customer_col, rejected_path, options, workdir
    )
    return rejected, rejected_path


def customer_file_days(con: duckdb.DuckDBPyConnection) -> set[date]:
    """The days of the customers file's rows (their ``updated_at``)."""
    return {
        row[0]
        for row in con.execute(
            "select distinct cast(updated_at as date) from cust_file"
        ).fetchall()
    }


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
    source = load_source(con, path, "cust_src", options, workdir)
    cols = source.columns
    id_name = resolve_column(cols, "customer_id") or customer_col
    id_name = require_columns(path, source, {"customer id": id_name})["customer id"]

    def attribute(name: str, allowed: tuple[str, ...]) -> str:
        found = resolve_column(cols, name)
        if found is None:
            return "'unknown'"
        value = f"lower(trim(cast({ident(found)} as varchar)))"
        values = ", ".join(lit(v) for v in allowed)
        return f"case when {value} in ({values}) then {value} else 'unknown' end"

    def stamp(name: str) -> tuple[str, str]:
        found = resolve_column(cols, name)
        if found is None:
            return "cast(null as timestamp)", "cast(null as varchar)"
        col = ident(found)
        expr = timestamp_expr(con, col, cols[found], None, options.timezone)
        return expr, text_expr(col)

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
                s.{RECORD},
                {customer_expr(ident(id_name), cols[id_name])} as customer_id,
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
                        then 'signup_date ' || {quoted("raw_signup")}
                            || ' is not a date'
                    when signup_date is null
                        then 'signup_date is missing and the customer has no purchase'
                end,
                case
                    when raw_updated is not null and parsed_updated is null
                        then 'updated_at ' || {quoted("raw_updated")}
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
                {RECORD} as record,
                first_value({RECORD}) over (
                    partition by customer_id, updated_at order by {RECORD}
                ) as first_record
            from cust_parsed
            where reason is null
        ) as dup
        where cust_parsed.{RECORD} = dup.record and dup.record <> dup.first_record
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
    return write_rejected(con, source, "cust_parsed", rejected_path)


def register_known_customers(
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
            listed = ", ".join(lit(f) for f in files[suffix])
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


def collect_customer_rows(con: duckdb.DuckDBPyConnection) -> pa.Table:
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
