"""The analyst copy: a read-only DuckDB catalog that is safe to query while the
pipeline writes, and whose nightly cost follows the day's changes, not the history.

DuckDB allows one writing process, and a writer fails at once while any other
process holds the file, readers included. So analysts never open the live
warehouse: the last task of ``loopline_nightly`` and of ``loopline_outcomes``
(and ``loopline publish`` by hand) publishes the ``marts`` and ``ops`` schemas,
plus the ``reporting`` views, to ``$LOOPLINE_HOME/analytics.duckdb``.

**Two kinds of table.** A table with a date partition column (the first of
:data:`FRESHNESS_COLUMNS` it has, when that is a ``DATE`` without nulls) and at least
``partition_min_rows`` rows is published as Parquet files, one directory per
partition date, under ``$LOOPLINE_HOME/analytics_data/``; the catalog holds a view
over exactly those files. Every other table (small ones, and current-state tables
without a date) is copied into the catalog whole. A view of those schemas (a dbt
model materialised as a view, such as ``marts.training_examples``) is created in
the catalog with its own definition, over the published tables.

**Only what changed is written.** The catalog keeps a manifest
(``ops.publication_files``): per partition its rows, a fingerprint (the sum of the
row hashes) and its files. A publish for logical date ``d`` fingerprints only the
partitions the pipeline's runs for ``d`` write (:func:`written_dates`): ``d`` itself
(the nightly snapshot, scores, decisions, drift, the day's transactions) and
``d - H`` (the labels and decision outcomes that mature on ``d``). It writes a
new file only for a partition whose fingerprint changed; every other partition
keeps its files. A rerun or backfill of an earlier date publishes
for that date, so its partitions are the ones fingerprinted. If the rows of the
other partitions no longer add up to the table's row count (a rebuild, a catch-up,
or a backfill changed history), or the table's columns changed, every partition of
that table is fingerprinted again, and those that still match keep their files;
``full=True`` (``loopline publish --full``, and the first publish) does it for
every table. A change that keeps an older partition's row count and is not
published for its own date shows only with ``full``. The nightly publish therefore
reads two partitions per table and writes the day's changes, however long the
history is.

**Atomic, and old readers keep working.** The catalog is written to a temporary
file in the same directory, checkpointed, closed and fsynced, then renamed over the
previous one with ``os.replace``. Parquet files are never overwritten: a changed
partition gets a new file in a new directory. A reader that has the previous
catalog open keeps reading it and the files it names; a new connection opens the
new one. A file the new catalog no longer names is retired (listed in
``ops.publication_retired``) and deleted by the first publish ``keep_hours`` later,
so a reader's snapshot stays readable that long; a full publish also sweeps the
data directory for files no catalog ever named. A failed publish
removes its temporary catalog and the files it wrote, and leaves the previous copy
untouched. A publish killed before it could (``kill -9``) leaves them behind: its
temporary catalog carries its process id, and so does the name of every directory
of Parquet files it writes (``<run date>-<id>-<pid>@<host>``), so the next publish
deletes the temporary catalogs and the files no catalog names of publishes whose
process is gone from this host.

``raw``, ``staging`` and ``intermediate`` are not published: ``raw`` is the whole
landing history (the landing files keep it), ``staging`` holds views over ``raw``,
and ``intermediate`` holds building blocks whose content the marts carry in
analysable form.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ml.config.settings import Settings, load_business_config
from ml.contract.tables import (
    FILES_TABLE,
    PUBLICATION,
    PUBLICATION_FILES,
    PUBLICATION_RETIRED,
    PUBLICATION_TABLE,
    RETIRED_TABLE,
    ddl_script,
)
from ml.storage.procs import process_alive, safe_hostname
from ml.storage.warehouse import duckdb_config, held_connection

log = logging.getLogger(__name__)

PUBLISHED_SCHEMAS = ("marts", "ops")
REPORTING_SCHEMA = "reporting"
# Beside analytics.duckdb in LOOPLINE_HOME.
DATA_DIRECTORY = "analytics_data"
# A table with a date column and at least this many rows is published as Parquet
# partitions; smaller ones are copied into the catalog whole.
PARTITION_MIN_ROWS = 50_000
# Files no catalog names any more are kept this long for readers of an older one.
KEEP_HOURS = 24.0
# Aliases of the attached warehouse and previous copy while a catalog is written.
SOURCE = "wh"
TARGET = "new_copy"
PREVIOUS = "previous_copy"
# The date column that says how fresh a table is, first match wins.
FRESHNESS_COLUMNS = (
    "run_date",
    "as_of_date",
    "partition_date",
    "day",
    "computed_on",
    "matured_on",
)
_TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
# "<run date>-<8 hex>-<pid>@<host>": a directory of Parquet files one publish wrote
_BATCH_PATTERN = re.compile(
    r"^\d{4}-\d{2}-\d{2}-[0-9a-f]{8}-(?P<pid>\d+)@(?P<host>[A-Za-z0-9._-]+)$"
)


@dataclass(frozen=True)
class ReportingView:
    """A view of the analyst copy, created when every table it reads exists."""

    name: str
    needs: tuple[str, ...]
    sql: str


# Views an analyst reaches for first; each reads only tables of the copy itself.
REPORTING_VIEWS: tuple[ReportingView, ...] = (
    ReportingView(
        "latest_queue",
        ("marts.decisions",),
        """
        select run_date, decision_id, customer_id, action, chosen_ev,
            p_churn, value_at_risk, reason_codes, model_version, policy_mode
        from marts.decisions
        where arm = 'treated'
          and run_date = (select max(run_date) from marts.decisions)
        """,
    ),
    ReportingView(
        "uplift_by_action",
        ("marts.policy_performance",),
        """
        with pooled as (
            select action,
                count(*) as decision_dates,
                max(run_date) as last_decision_date,
                sum(n_treated) as n_treated,
                sum(n_holdout) as n_holdout,
                sum(churn_rate_treated * n_treated) as churned_treated,
                sum(churn_rate_holdout * n_holdout) as churned_holdout,
                sum(incremental_value) as incremental_value,
                sum(cost) as cost,
            from marts.policy_performance
            where n_treated > 0 and n_holdout > 0
            group by action
        )
        select action, decision_dates, last_decision_date, n_treated, n_holdout,
            churned_treated / n_treated as churn_rate_treated,
            churned_holdout / n_holdout as churn_rate_holdout,
            1 - (churned_treated / n_treated)
                / nullif(churned_holdout / n_holdout, 0) as uplift,
            incremental_value,
            cost,
            incremental_value - cost as realized_net_value,
        from pooled
        """,
    ),
    ReportingView(
        "pipeline_runs",
        ("ops.runs",),
        """
        select run_date, step, status, config_hash,
            try_cast(json_extract(detail, '$.elapsed_seconds') as double)
                as elapsed_seconds,
            detail
        from ops.runs
        """,
    ),
    ReportingView(
        "freshness",
        (PUBLICATION_TABLE,),
        f"""
        select table_name, row_count, latest_date, run_date as published_for,
            published_by
        from {PUBLICATION_TABLE}
        """,
    ),
)


class NotPublishedError(FileNotFoundError):
    """There is no analyst copy yet."""


class PublishError(RuntimeError):
    """The analyst copy could not be written; the previous copy is untouched."""


@dataclass
class PublishSummary:
    """What one publish wrote (``ops.runs.detail`` and XCom): the rows per table,
    the views, the catalog's and its files' bytes, and how many partitions were
    written anew, kept as they were, which tables were published whole, and how many
    unreferenced files were deleted."""

    path: str
    tables: dict[str, int] = field(default_factory=dict)
    views: list[str] = field(default_factory=list)
    size_bytes: int = 0
    elapsed_seconds: float = 0.0
    partitions_written: int = 0
    partitions_kept: int = 0
    republished: list[str] = field(default_factory=list)
    files_removed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def not_published_message(settings: Settings) -> str:
    """What to do when the analyst copy does not exist yet."""
    return (
        f"no analyst copy at {settings.analytics_path} yet: it is written at the "
        "end of every loopline_nightly and loopline_outcomes run. Run the nightly "
        "(loopline run --date D) or write it now from the warehouse with "
        "`loopline publish`."
    )


def analytics_database(settings: Settings) -> Path:
    """The path of the analyst copy; :class:`NotPublishedError` when missing."""
    path = settings.analytics_path
    if not path.is_file():
        raise NotPublishedError(not_published_message(settings))
    return path


@contextmanager
def open_analytics(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the analyst copy, closed on exit.

    A connection sees the copy that was current when it opened, for as long as it
    stays open; reconnect to see a newer one.
    """
    con = duckdb.connect(
        str(analytics_database(settings)), read_only=True, config=duckdb_config()
    )
    try:
        yield con
    finally:
        con.close()


def published_run_date(path: Path) -> date:
    """The run date the analyst copy at ``path`` was published for."""
    con = duckdb.connect(str(path), read_only=True, config=duckdb_config())
    try:
        row = con.execute(f"select max(run_date) from {PUBLICATION_TABLE}").fetchone()
    finally:
        con.close()
    if not row or row[0] is None:
        raise PublishError(f"{path} has no {PUBLICATION_TABLE} rows")
    return row[0]  # type: ignore[no-any-return]


def publish_analytics(
    settings: Settings,
    run_date: date,
    published_by: str,
    *,
    full: bool = False,
    partition_min_rows: int | None = None,
    checked_dates: tuple[date, ...] | None = None,
    keep_hours: float | None = None,
) -> PublishSummary:
    """Publish the warehouse's ``marts`` and ``ops`` to the analyst copy and swap
    the new catalog in atomically (see the module docstring).

    ``run_date`` is the logical date the copy is published for and
    ``published_by`` the step that published it; both are kept with each table's
    row count and latest date in ``ops.publication`` inside the copy.
    ``checked_dates`` are the partition dates fingerprinted (default:
    :func:`written_dates` of ``run_date`` and the label horizon); ``full``
    republishes every table whole;
    ``partition_min_rows`` and ``keep_hours`` default to :data:`PARTITION_MIN_ROWS`
    and :data:`KEEP_HOURS`. The live warehouse is
    only read (attached read-only, or through the connection this process holds
    it with: :func:`ml.storage.warehouse.hold`), yet that makes a writer fail, so
    this runs in the warehouse pool like every other task that opens the warehouse.
    """
    source = settings.warehouse_path
    target = settings.analytics_path
    if not source.is_file():
        raise PublishError(f"no warehouse at {source}: nothing to publish")
    if checked_dates is None:
        horizon = load_business_config(settings.config_file).horizon_days
        checked_dates = written_dates(run_date, horizon)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(target)
    began = time.perf_counter()
    temp = temp_path(target)
    plan = _Plan(
        source=source,
        previous=target,
        data_dir=data_directory(settings),
        run_date=run_date,
        published_by=published_by,
        full=full,
        min_rows=PARTITION_MIN_ROWS
        if partition_min_rows is None
        else partition_min_rows,
        checked=tuple(sorted(set(checked_dates))),
        keep_hours=KEEP_HOURS if keep_hours is None else keep_hours,
    )
    try:
        written = _write_catalog(temp, plan)
        _fsync(temp)
        os.replace(temp, target)
    except BaseException:
        # before the swap nothing names this publish's files: remove them too
        _remove(temp)
        for batch in plan.batches:
            shutil.rmtree(batch, ignore_errors=True)
        raise
    _fsync(target.parent)
    removed = _delete(written.expired)
    # files of publishes killed before their swap: named by no catalog
    removed += remove_orphaned_batches(
        plan.data_dir, written.files | set(written.retired)
    )
    if full:  # also files no catalog ever named (a publish killed mid-way)
        removed += remove_unreferenced_files(
            plan.data_dir, written.files | set(written.retired), plan.keep_hours
        )
    return PublishSummary(
        path=str(target),
        tables=written.tables,
        views=written.views,
        size_bytes=target.stat().st_size + written.data_bytes,
        elapsed_seconds=round(time.perf_counter() - began, 3),
        partitions_written=written.partitions_written,
        partitions_kept=written.partitions_kept,
        republished=written.republished,
        files_removed=removed,
    )


def written_dates(run_date: date, horizon_days: int) -> tuple[date, ...]:
    """The partition dates the pipeline's runs for ``run_date`` write: the date
    itself and the date whose horizon ends on it (labels, training examples and
    decision outcomes of ``run_date - horizon_days``)."""
    return (run_date - timedelta(days=horizon_days), run_date)


def data_directory(settings: Settings) -> Path:
    """Where the Parquet partitions of the analyst copy live."""
    return settings.analytics_path.with_name(DATA_DIRECTORY)


def temp_path(target: Path) -> Path:
    """A temporary file beside ``target``, unique to this process and call."""
    suffix = uuid.uuid4().hex[:8]
    return target.with_name(f".{target.name}.{os.getpid()}.{suffix}.tmp")


def remove_stale_temp_files(target: Path) -> list[Path]:
    """Remove temporary copies of ``target`` left by a process that no longer
    runs (a publish killed mid-way); a live process's copy is left alone."""
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    for path in target.parent.iterdir():
        found = _TEMP_PATTERN.match(path.name.removesuffix(".wal"))
        if not found or found["name"] != target.name:
            continue
        if process_alive(int(found["pid"])):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def published_tables(
    con: duckdb.DuckDBPyConnection, catalog: str
) -> list[tuple[str, str]]:
    """The (schema, table) pairs of ``catalog`` that a publish copies."""
    placeholders = ", ".join("?" for _ in PUBLISHED_SCHEMAS)
    rows = con.execute(
        "select schema_name, table_name from duckdb_tables() "
        f"where database_name = ? and schema_name in ({placeholders}) "
        "order by schema_name, table_name",
        [catalog, *PUBLISHED_SCHEMAS],
    ).fetchall()
    return [(str(s), str(t)) for s, t in rows]


@dataclass
class _Plan:
    """What one publish reads and where it writes."""

    source: Path
    previous: Path
    data_dir: Path
    run_date: date
    published_by: str
    full: bool
    min_rows: int
    checked: tuple[date, ...]  # the partition dates fingerprinted
    keep_hours: float
    batches: list[Path] = field(default_factory=list)
    # the warehouse's catalog name on the publishing connection
    catalog: str = SOURCE


@dataclass(frozen=True)
class _Partition:
    """One partition of a partitioned table, as the manifest records it."""

    value: date
    rows: int
    fingerprint: str
    files: tuple[str, ...]


@dataclass
class _Written:
    """What :func:`_write_catalog` put into the new catalog."""

    tables: dict[str, int] = field(default_factory=dict)
    views: list[str] = field(default_factory=list)
    files: set[str] = field(default_factory=set)
    data_bytes: int = 0
    partitions_written: int = 0
    partitions_kept: int = 0
    republished: list[str] = field(default_factory=list)
    # files no longer named, with when they were retired; and those to delete
    retired: dict[str, float] = field(default_factory=dict)
    expired: list[str] = field(default_factory=list)


def _write_catalog(temp: Path, plan: _Plan) -> _Written:
    """Build the new catalog in ``temp``: small tables copied, partitioned tables
    as views over their files, ``ops.publication``, the manifest and the views.

    Inside :func:`ml.storage.warehouse.hold` of the warehouse (the in-process
    closed loop holds it for a whole night), the file cannot be attached a second
    time: the new catalog is then attached to a cursor of the held connection and
    the warehouse is read through it, without writing to it."""
    held = held_connection(plan.source)
    if held is not None:
        con = held.cursor()
        row = con.execute("select current_database()").fetchone()
        plan.catalog = str(row[0]) if row else SOURCE
    else:
        con = duckdb.connect(str(temp), config=duckdb_config())
    try:
        if held is not None:
            con.execute(f"attach {_quote(temp)} as {TARGET}")
            con.execute(f"use {TARGET}")
        else:
            try:
                con.execute(f"attach {_quote(plan.source)} as {SOURCE} (read_only)")
            except duckdb.IOException as exc:
                raise PublishError(
                    f"cannot read the warehouse {plan.source}: another process "
                    "holds it (a pipeline task writing?). The analyst copy is "
                    f"unchanged. {exc}"
                ) from exc
        before = _previous_copy(con, plan)
        previous = {} if plan.full else before.tables
        copied = [
            (schema, table)
            for schema, table in published_tables(con, plan.catalog)
            if f"{schema}.{table}"
            not in (PUBLICATION_TABLE, FILES_TABLE, RETIRED_TABLE)
        ]
        if not any(schema == "marts" for schema, _ in copied):
            raise PublishError(
                f"the warehouse {plan.source} has no marts yet: run a build first"
            )
        for schema in (*PUBLISHED_SCHEMAS, REPORTING_SCHEMA):
            con.execute(f"create schema if not exists {schema}")
        written = _Written()
        freshness: dict[str, date | None] = {}
        manifest: list[tuple[str, str, str, _Partition]] = []
        every_column = _all_columns(con, plan.catalog)
        for schema, table in copied:
            name = f"{schema}.{table}"
            rows = _count(con, f'{plan.catalog}.{schema}."{table}"')
            written.tables[name] = rows
            columns = every_column.get((schema, table), [])
            column = _partition_column(
                con, plan.catalog, schema, table, columns, rows, plan.min_rows
            )
            if column is None:
                con.execute(
                    f'create table {schema}."{table}" as '
                    f'select * from {plan.catalog}.{schema}."{table}"'
                )
                freshness[name] = _latest_date(con, schema, table, columns)
                continue
            signature = json.dumps(columns)  # a change republishes the table
            partitions = _publish_partitions(
                con,
                plan,
                schema,
                table,
                column,
                rows,
                previous.get(name),
                signature,
                written,
            )
            files = [f for part in partitions for f in part.files]
            con.execute(
                f'create view {schema}."{table}" as select * from read_parquet('
                f"[{', '.join(_quote(f) for f in files)}])"
            )
            freshness[name] = max(part.value for part in partitions)
            manifest += [(name, column, signature, part) for part in partitions]
            written.files.update(files)
        written.data_bytes = sum(Path(f).stat().st_size for f in written.files)
        marts_views = _copy_views(con, plan.catalog)
        _retire(before, written, plan.keep_hours)
        _write_publication(
            con, plan.run_date, plan.published_by, written.tables, freshness
        )
        _write_manifest(con, manifest, written.retired)
        written.views = marts_views + _create_views(con)
        if held is None:
            con.execute(f"detach {SOURCE}")
            con.execute("checkpoint")
        else:
            con.execute(f"checkpoint {TARGET}")
    finally:
        if held is not None:  # the held warehouse stays open; the copy is closed
            con.execute(f"use {plan.catalog}")
            con.execute(f"detach database if exists {TARGET}")
        con.close()
    return written


def _quote(value: Path | str) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def _count(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    row = con.execute(f"select count(*) from {relation}").fetchone()
    return int(row[0]) if row else 0


def _all_columns(
    con: duckdb.DuckDBPyConnection, database: str
) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Name and type of each column of every table of ``database``, in order, by
    (schema, table): one catalog query per publish instead of one per table."""
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, column, kind in con.execute(
        "select schema_name, table_name, column_name, data_type from duckdb_columns() "
        "where database_name = ? order by schema_name, table_name, column_index",
        [database],
    ).fetchall():
        found.setdefault((str(schema), str(table)), []).append((str(column), str(kind)))
    return found


def _partition_column(
    con: duckdb.DuckDBPyConnection,
    source: str,
    schema: str,
    table: str,
    columns: list[tuple[str, str]],
    rows: int,
    min_rows: int,
) -> str | None:
    """The column a table is partitioned by: the first of
    :data:`FRESHNESS_COLUMNS` it has, when that is a ``DATE`` without nulls and the
    table has ``min_rows`` rows; None to copy the table whole."""
    if rows < min_rows:
        return None
    types = dict(columns)
    column = next((c for c in FRESHNESS_COLUMNS if c in types), None)
    if column is None or types[column] != "DATE":
        return None
    nulls = _count(con, f'{source}.{schema}."{table}" where "{column}" is null')
    return column if nulls == 0 else None


def _fingerprints(
    con: duckdb.DuckDBPyConnection,
    source: str,
    schema: str,
    table: str,
    column: str,
    dates: tuple[date, ...] | None,
) -> dict[date, tuple[int, str]]:
    """Rows and the sum of row hashes per partition: those of ``dates``, or all."""
    where = "" if dates is None else f' where "{column}" in (select unnest(?::date[]))'
    rows = con.execute(
        f'select "{column}", count(*), sum(hash(t))::varchar '
        f'from {source}.{schema}."{table}" t{where} group by 1',
        [] if dates is None else [list(dates)],
    ).fetchall()
    return {value: (int(n), str(h)) for value, n, h in rows}


def _publish_partitions(
    con: duckdb.DuckDBPyConnection,
    plan: _Plan,
    schema: str,
    table: str,
    column: str,
    rows: int,
    previous: _Previous | None,
    signature: str,
    written: _Written,
) -> list[_Partition]:
    """The partitions of one table after this publish: unchanged ones keep their
    files, changed and new ones get new files, vanished ones are dropped."""
    name = f"{schema}.{table}"
    if previous is not None and (previous.column, previous.signature) != (
        column,
        signature,
    ):
        previous = None  # partitioned differently, or its columns changed
    old = {p.value: p for p in (previous.partitions if previous else [])}
    checked = set(plan.checked)
    kept = [p for p in old.values() if p.value not in checked]
    current = _fingerprints(con, plan.catalog, schema, table, column, plan.checked)
    if (
        previous is None
        or sum(p.rows for p in kept) + sum(n for n, _ in current.values()) != rows
    ):
        # first publish of the table, its columns changed, or history changed:
        # every partition is fingerprinted, and those that still match keep their
        # files
        kept = []
        current = _fingerprints(con, plan.catalog, schema, table, column, None)
        written.republished.append(name)
    unchanged = [
        old[value]
        for value, (n, fingerprint) in current.items()
        if value in old
        and (old[value].rows, old[value].fingerprint) == (n, fingerprint)
    ]
    same = {p.value for p in unchanged}
    changed = sorted(v for v in current if v not in same)
    files = _write_partitions(con, plan, schema, table, column, changed)
    fresh = [
        _Partition(value, current[value][0], current[value][1], files[value])
        for value in changed
    ]
    written.partitions_written += len(fresh)
    written.partitions_kept += len(kept) + len(unchanged)
    return sorted([*kept, *unchanged, *fresh], key=lambda p: p.value)


def _write_partitions(
    con: duckdb.DuckDBPyConnection,
    plan: _Plan,
    schema: str,
    table: str,
    column: str,
    values: list[date],
) -> dict[date, tuple[str, ...]]:
    """Write the partitions ``values`` of a table as Parquet in one ``COPY`` into a
    new directory (never over an existing file); return each one's files."""
    if not values:
        return {}
    batch = (
        plan.data_dir
        / f"{schema}.{table}"
        / f"{plan.run_date.isoformat()}-{uuid.uuid4().hex[:8]}-{_owner()}"
    )
    batch.parent.mkdir(parents=True, exist_ok=True)
    plan.batches.append(batch)
    _copy_partitions(con, plan.catalog, schema, table, column, values, batch)
    files: dict[date, list[str]] = {}
    for path in sorted(batch.glob(f"{column}=*/*.parquet")):
        value = date.fromisoformat(path.parent.name.split("=", 1)[1])
        files.setdefault(value, []).append(str(path))
    missing = [v for v in values if v not in files]
    if missing:
        raise PublishError(
            f"publishing {schema}.{table} wrote no file for {missing[:3]}"
        )
    return {value: tuple(paths) for value, paths in files.items()}


def _copy_partitions(
    con: duckdb.DuckDBPyConnection,
    source: str,
    schema: str,
    table: str,
    column: str,
    values: list[date],
    batch: Path,
) -> None:
    """One ``COPY … PARTITION_BY`` of the rows of ``values`` into ``batch``."""
    con.execute(
        f'copy (select * from {source}.{schema}."{table}" '
        f'where "{column}" in (select unnest(?::date[]))) to {_quote(batch)} '
        f'(format parquet, partition_by ("{column}"), write_partition_columns true, '
        "filename_pattern 'part_{i}')",
        [values],
    )


@dataclass(frozen=True)
class _Previous:
    """A partitioned table as the current analyst copy has it."""

    column: str
    signature: str
    partitions: list[_Partition]


@dataclass
class _PreviousCopy:
    """What the current analyst copy names: its partitioned tables (those whose
    files are all in place), every file of this home it names, and the files it
    retired that are not deleted yet."""

    tables: dict[str, _Previous] = field(default_factory=dict)
    files: set[str] = field(default_factory=set)
    retired: dict[str, float] = field(default_factory=dict)


def _previous_copy(con: duckdb.DuckDBPyConnection, plan: _Plan) -> _PreviousCopy:
    """Read the manifest of the current analyst copy. A table whose files are
    missing or live outside this home's data directory (a copied home) is left
    out of ``tables``, so it is published whole."""
    found = _PreviousCopy()
    if not plan.previous.is_file():
        return found
    try:
        con.execute(f"attach {_quote(plan.previous)} as {PREVIOUS} (read_only)")
    except duckdb.Error:
        log.warning("cannot read the previous analyst copy", exc_info=True)
        return found
    try:
        present = {
            f"ops.{r[0]}"
            for r in con.execute(
                "select table_name from duckdb_tables() where database_name = ? "
                "and schema_name = 'ops'",
                [PREVIOUS],
            ).fetchall()
        }
        rows = (
            con.execute(
                f"select table_name, partition_column, signature, partition_value, "
                f"row_count, fingerprint, files from {PREVIOUS}.{FILES_TABLE}"
            ).fetchall()
            if FILES_TABLE in present
            else []
        )
        retired = (
            con.execute(
                f"select file, epoch(retired_at) from {PREVIOUS}.{RETIRED_TABLE}"
            ).fetchall()
            if RETIRED_TABLE in present
            else []
        )
    finally:
        con.execute(f"detach {PREVIOUS}")
    home = str(plan.data_dir.resolve()) + os.sep
    broken: set[str] = set()
    for name, column, signature, value, n, fingerprint, files in rows:
        paths = tuple(str(f) for f in files)
        ours = [f for f in paths if f.startswith(home)]
        found.files.update(ours)
        if len(ours) != len(paths) or not all(os.path.isfile(f) for f in paths):
            broken.add(str(name))
            continue
        entry = found.tables.setdefault(
            str(name), _Previous(str(column), str(signature), [])
        )
        entry.partitions.append(_Partition(value, int(n), str(fingerprint), paths))
    for name in broken:
        found.tables.pop(name, None)
    found.retired = {str(f): float(t) for f, t in retired if str(f).startswith(home)}
    return found


def _retire(before: _PreviousCopy, written: _Written, keep_hours: float) -> None:
    """The files the previous copy named and the new one does not are retired
    now; retired files older than ``keep_hours`` are to be deleted after the swap,
    the others are carried in the new copy's ``ops.publication_retired``."""
    now = time.time()
    retired = {f: t for f, t in before.retired.items() if f not in written.files}
    for path in before.files - written.files:
        retired.setdefault(path, now)
    cutoff = now - keep_hours * 3600.0
    written.expired = sorted(f for f, t in retired.items() if t <= cutoff)
    written.retired = {f: t for f, t in retired.items() if t > cutoff}


def _write_manifest(
    con: duckdb.DuckDBPyConnection,
    manifest: list[tuple[str, str, str, _Partition]],
    retired: dict[str, float],
) -> None:
    """``ops.publication_files`` and ``ops.publication_retired``, inserted from
    Arrow in one statement each (row-by-row inserts cost seconds for thousands of
    partitions)."""
    files = pa.table(
        {
            "table_name": pa.array([m[0] for m in manifest], pa.string()),
            "partition_column": pa.array([m[1] for m in manifest], pa.string()),
            "signature": pa.array([m[2] for m in manifest], pa.string()),
            "partition_value": pa.array([m[3].value for m in manifest], pa.date32()),
            "row_count": pa.array([m[3].rows for m in manifest], pa.int64()),
            "fingerprint": pa.array([m[3].fingerprint for m in manifest], pa.string()),
            "files": pa.array(
                [list(m[3].files) for m in manifest], pa.list_(pa.string())
            ),
        }
    )
    con.register("publication_files_rows", files)
    con.execute(ddl_script(PUBLICATION_FILES, PUBLICATION_RETIRED))
    con.execute(
        f"insert into {FILES_TABLE} by name select * from publication_files_rows"
    )
    con.unregister("publication_files_rows")
    pending = pa.table(
        {
            "file": pa.array(list(retired), pa.string()),
            "retired_at_epoch": pa.array(list(retired.values()), pa.float64()),
        }
    )
    con.register("publication_retired_rows", pending)
    con.execute(
        f"insert into {RETIRED_TABLE} by name select file, "
        "to_timestamp(retired_at_epoch) as retired_at from publication_retired_rows"
    )
    con.unregister("publication_retired_rows")


def _delete(paths: list[str]) -> int:
    """Delete files (a missing one is fine) and the directories left empty."""
    removed = 0
    for name in paths:
        path = Path(name)
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        for folder in (path.parent, path.parent.parent):
            try:
                folder.rmdir()
            except OSError:
                break
    return removed


def _owner() -> str:
    """``<pid>@<host>`` of this process, for the name of a batch directory."""
    return f"{os.getpid()}@{safe_hostname()}"


# Batch directories of dead writers this process has already swept: a night's
# publish walks only the batches it has not seen (a walk of a year's batches costs
# about 0.2 s a publish).
_SWEPT_BATCHES: set[str] = set()


def remove_orphaned_batches(data_dir: Path, referenced: set[str]) -> int:
    """Delete the Parquet files not in ``referenced`` that lie in a batch
    directory written by a process of this host that no longer runs (a publish
    killed before its swap), and the directories left empty; return how many
    files were deleted. A live publish's directories, other hosts' and those
    named before batch names carried their writer are left to
    :func:`remove_unreferenced_files`."""
    if not data_dir.is_dir():
        return 0
    host = _owner().split("@", 1)[1]
    keep = {str(Path(f)) for f in referenced}
    removed = 0
    for batch in sorted(p for p in data_dir.glob("*/*") if p.is_dir()):
        found = _BATCH_PATTERN.match(batch.name)
        if found is None or found["host"] != host:
            continue
        if str(batch) in _SWEPT_BATCHES or process_alive(int(found["pid"])):
            continue
        for path in sorted(batch.rglob("*.parquet")):
            if str(path) not in keep:
                path.unlink(missing_ok=True)
                removed += 1
        for folder in sorted(
            (p for p in batch.rglob("*") if p.is_dir()),
            key=lambda p: len(p.parts),
            reverse=True,
        ):
            if not any(folder.iterdir()):
                folder.rmdir()
        if not any(batch.iterdir()):
            batch.rmdir()
        else:
            # its writer is gone, so nothing new lands in it: what it still holds
            # is referenced, and a later publish retires those files by name
            _SWEPT_BATCHES.add(str(batch))
    return removed


def remove_unreferenced_files(
    data_dir: Path, referenced: set[str], keep_hours: float = KEEP_HOURS
) -> int:
    """Sweep ``data_dir``: delete Parquet files that are not in ``referenced`` and
    are older than ``keep_hours``, and the directories left empty; return how many
    files were deleted. A nightly publish deletes the files it retired by name; a
    full publish also sweeps, for files no catalog ever named (a publish killed
    before its swap)."""
    if not data_dir.is_dir():
        return 0
    cutoff = time.time() - keep_hours * 3600.0
    keep = {str(Path(f)) for f in referenced}
    removed = 0
    for path in data_dir.rglob("*.parquet"):
        if str(path) in keep:
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    for folder in sorted(data_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def _latest_date(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    columns: list[tuple[str, str]],
) -> date | None:
    """The latest value of the table's first :data:`FRESHNESS_COLUMNS` column
    (``columns``: its names and types), or None without one."""
    names = {name for name, _ in columns}
    for column in FRESHNESS_COLUMNS:
        if column in names:
            row = con.execute(
                f'select max("{column}")::date from {schema}."{table}"'
            ).fetchone()
            return row[0] if row else None
    return None


def _write_publication(
    con: duckdb.DuckDBPyConnection,
    run_date: date,
    published_by: str,
    tables: dict[str, int],
    freshness: dict[str, date | None],
) -> None:
    """``ops.publication``: one row per published table, inserted from Arrow in
    one statement (``executemany`` costs a statement per table)."""
    con.execute(ddl_script(PUBLICATION))
    names = list(tables)
    rows = pa.table(
        {
            "run_date": pa.array([run_date] * len(names), pa.date32()),
            "published_by": pa.array([published_by] * len(names), pa.string()),
            "table_name": pa.array(names, pa.string()),
            "row_count": pa.array([tables[n] for n in names], pa.int64()),
            "latest_date": pa.array([freshness.get(n) for n in names], pa.date32()),
        }
    )
    con.register("publication_rows", rows)
    con.execute(
        f"insert into {PUBLICATION_TABLE} by name select * from publication_rows"
    )
    con.unregister("publication_rows")


def _copy_views(con: duckdb.DuckDBPyConnection, source: str) -> list[str]:
    """Create each view of the warehouse's published schemas (a dbt model
    materialised as a view, such as ``marts.training_examples``) with its own
    definition, over the tables just published. DuckDB keeps a view's SQL
    without the catalog's name, so it reads the copy's tables, not the
    warehouse's."""
    placeholders = ", ".join("?" for _ in PUBLISHED_SCHEMAS)
    views = con.execute(
        "select schema_name, view_name, sql from duckdb_views() "
        f"where database_name = ? and schema_name in ({placeholders}) "
        "and not internal order by schema_name, view_name",
        [source, *PUBLISHED_SCHEMAS],
    ).fetchall()
    created = []
    for schema, name, sql in views:
        try:
            con.execute(str(sql))
        except duckdb.Error as exc:
            raise PublishError(
                f"cannot publish the view {schema}.{name}: {exc}. "
                "The analyst copy is unchanged."
            ) from exc
        created.append(f"{schema}.{name}")
    return created


def _create_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Create each reporting view whose tables were published (as tables or as
    views over their partitions)."""
    present = {
        f"{s}.{t}"
        for s, t in con.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where database_name = current_database() "
            "union all select schema_name, view_name from duckdb_views() "
            "where database_name = current_database() and not internal"
        ).fetchall()
    }
    created = []
    for view in REPORTING_VIEWS:
        if all(need in present for need in view.needs):
            con.execute(f"create view {REPORTING_SCHEMA}.{view.name} as {view.sql}")
            created.append(f"{REPORTING_SCHEMA}.{view.name}")
    return created


def _fsync(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(temp: Path) -> None:
    for path in (temp, temp.with_name(temp.name + ".wal")):
        path.unlink(missing_ok=True)


__all__ = [
    "FILES_TABLE",
    "PUBLICATION_TABLE",
    "PUBLISHED_SCHEMAS",
    "RETIRED_TABLE",
    "REPORTING_SCHEMA",
    "REPORTING_VIEWS",
    "NotPublishedError",
    "PublishError",
    "PublishSummary",
    "analytics_database",
    "data_directory",
    "not_published_message",
    "open_analytics",
    "publish_analytics",
    "published_run_date",
    "published_tables",
    "remove_orphaned_batches",
    "remove_stale_temp_files",
    "remove_unreferenced_files",
    "temp_path",
]
