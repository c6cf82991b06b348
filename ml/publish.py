"""The analyst copy: a read-only DuckDB file that is safe to query while the
pipeline writes.

DuckDB allows one writing process, and a writer fails at once while any other
process holds the file, readers included. So analysts never open the live
warehouse: the last task of ``loopline_nightly`` and of ``loopline_outcomes``
(and ``loopline publish`` by hand) writes a fresh copy of the ``marts`` and ``ops``
schemas, plus the ``reporting`` views, to ``$LOOPLINE_HOME/analytics.duckdb``.

The warehouse file is copied as it is (its compressed blocks, no row is
re-inserted) to a temporary file in the same directory while a read-only
connection keeps writers out; in the copy the unpublished schemas are dropped and
``ops.publication`` and the views are added; it is checkpointed, closed and
fsynced, then renamed over the previous copy with ``os.replace`` (atomic on one
file system). A reader that has the previous copy open keeps reading it (its file
stays alive until the last handle closes); a new connection opens the new one. No
reader ever sees a half-written copy, and a failed publish leaves the previous
copy untouched and removes its temporary file.

``raw``, ``staging`` and ``intermediate`` are not published: ``raw`` is the whole
landing history (the landing files keep it), ``staging`` holds views over ``raw``,
and ``intermediate`` holds building blocks whose content the marts carry in
analysable form. Their blocks stay in the copy as free space, so the copy takes
about as much disk as the warehouse: the price of copying at disk speed.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from ml.config import Settings
from ml.warehouse import duckdb_config

PUBLISHED_SCHEMAS = ("marts", "ops")
REPORTING_SCHEMA = "reporting"
PUBLICATION_TABLE = "ops.publication"
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
    """What one publish wrote (``ops.runs.detail`` and XCom)."""

    path: str
    tables: dict[str, int] = field(default_factory=dict)
    views: list[str] = field(default_factory=list)
    size_bytes: int = 0
    elapsed_seconds: float = 0.0

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
    settings: Settings, run_date: date, published_by: str
) -> PublishSummary:
    """Write a fresh analyst copy from the live warehouse and swap it in atomically.

    ``run_date`` is the logical date the copy is published for and
    ``published_by`` the step that published it; both are kept with each table's
    row count and latest date in ``ops.publication`` inside the copy. The live
    warehouse is only read (copied while a read-only connection holds it), yet
    that connection makes a writer fail, so this runs in the warehouse pool like
    every other task that opens the warehouse.
    """
    source = settings.warehouse_path
    target = settings.analytics_path
    if not source.is_file():
        raise PublishError(f"no warehouse at {source}: nothing to publish")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(target)
    began = time.perf_counter()
    temp = temp_path(target)
    try:
        tables, views = _write_copy(source, temp, run_date, published_by)
        _fsync(temp)
        os.replace(temp, target)
        _fsync(target.parent)
    except BaseException:
        _remove(temp)
        raise
    return PublishSummary(
        path=str(target),
        tables=tables,
        views=views,
        size_bytes=target.stat().st_size,
        elapsed_seconds=round(time.perf_counter() - began, 3),
    )


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
        if _process_alive(int(found["pid"])):
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


def _write_copy(
    source: Path, temp: Path, run_date: date, published_by: str
) -> tuple[dict[str, int], list[str]]:
    """Copy ``source`` to ``temp`` file by file, keep only the published schemas,
    add ``ops.publication`` and the views, checkpoint and close it."""
    _snapshot_files(source, temp)
    con = duckdb.connect(str(temp), config=duckdb_config())
    try:
        copied = published_tables(con, _catalog(con))
        if not any(schema == "marts" for schema, _ in copied):
            raise PublishError(
                f"the warehouse {source} has no marts yet: run a build first"
            )
        _drop_unpublished(con)
        con.execute(f"create schema if not exists {REPORTING_SCHEMA}")
        con.execute(f"drop table if exists {PUBLICATION_TABLE}")
        tables: dict[str, int] = {}
        freshness: dict[str, date | None] = {}
        for schema, table in copied:
            name = f"{schema}.{table}"
            if name == PUBLICATION_TABLE:
                continue
            row = con.execute(f'select count(*) from {schema}."{table}"').fetchone()
            tables[name] = int(row[0]) if row else 0
            freshness[name] = _latest_date(con, schema, table)
        _write_publication(con, run_date, published_by, tables, freshness)
        views = _create_views(con)
        con.execute("checkpoint")
    finally:
        con.close()
    return tables, views


def _snapshot_files(source: Path, temp: Path) -> None:
    """Copy the warehouse file (and its write-ahead log, if a writer left one) to
    ``temp`` while a read-only connection holds it: a writer cannot start midway,
    readers still can. A whole-file copy moves the compressed blocks as they are,
    many times faster than re-inserting every row (measured in
    docs/architecture.md)."""
    try:
        holder = duckdb.connect(str(source), read_only=True, config=duckdb_config())
    except duckdb.IOException as exc:
        raise PublishError(
            f"cannot read the warehouse {source}: another process holds it "
            f"(a pipeline task writing?). The analyst copy is unchanged. {exc}"
        ) from exc
    try:
        _copy_file(source, temp)
        wal = source.with_name(source.name + ".wal")
        if wal.is_file():
            _copy_file(wal, temp.with_name(temp.name + ".wal"))
    finally:
        holder.close()


def _copy_file(source: Path, target: Path) -> None:
    """Copy one file's bytes (the kernel copies them; no Python buffer)."""
    shutil.copyfile(source, target)


def _catalog(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("select current_database()").fetchone()
    return str(row[0]) if row else ""


def _drop_unpublished(con: duckdb.DuckDBPyConnection) -> None:
    """Drop every schema of the copy that is not published (``raw``, ``staging``,
    ``intermediate`` and any other), views first since they read tables."""
    catalog = _catalog(con)
    keep = {*PUBLISHED_SCHEMAS, "main", "information_schema", "pg_catalog"}
    schemas = [
        str(r[0])
        for r in con.execute(
            "select schema_name from duckdb_schemas() "
            "where database_name = ? and not internal",
            [catalog],
        ).fetchall()
    ]
    for schema in sorted(set(schemas) - keep):
        con.execute(f'drop schema "{schema}" cascade')
    for kind, listing in (
        ("view", "select schema_name, view_name from duckdb_views()"),
        ("table", "select schema_name, table_name from duckdb_tables()"),
    ):
        rows = con.execute(
            f"{listing} where database_name = ? and schema_name = 'main' "
            + ("and not internal" if kind == "view" else ""),
            [catalog],
        ).fetchall()
        for schema, name in rows:
            con.execute(f'drop {kind} "{schema}"."{name}"')


def _latest_date(
    con: duckdb.DuckDBPyConnection, schema: str, table: str
) -> date | None:
    columns = {
        str(r[0])
        for r in con.execute(
            "select column_name from duckdb_columns() where database_name = "
            "current_database() and schema_name = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    }
    for column in FRESHNESS_COLUMNS:
        if column in columns:
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
    con.execute(
        f"create table {PUBLICATION_TABLE} (run_date date not null, "
        "published_by varchar not null, table_name varchar not null, "
        "row_count bigint not null, latest_date date)"
    )
    con.executemany(
        f"insert into {PUBLICATION_TABLE} values (?, ?, ?, ?, ?)",
        [
            [run_date, published_by, name, rows, freshness.get(name)]
            for name, rows in tables.items()
        ],
    )


def _create_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Create each reporting view whose tables were published."""
    present = {
        f"{s}.{t}"
        for s, t in con.execute(
            "select schema_name, table_name from duckdb_tables() "
            "where database_name = current_database()"
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


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = [
    "PUBLICATION_TABLE",
    "PUBLISHED_SCHEMAS",
    "REPORTING_SCHEMA",
    "REPORTING_VIEWS",
    "NotPublishedError",
    "PublishError",
    "PublishSummary",
    "analytics_database",
    "not_published_message",
    "open_analytics",
    "publish_analytics",
    "published_run_date",
    "published_tables",
    "remove_stale_temp_files",
    "temp_path",
]
