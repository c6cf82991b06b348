"""Run the dbt project (staging, intermediate, marts) on the warehouse.

One call is one ``dbt build`` in this process, through dbt's programmatic runner.
The nightly run builds one day (``start == end``): each incremental model replaces
only that day's partition (see ``dbt_project/macros/replace_range.sql``). A bulk
build covers a range in one invocation; ``rebuild`` does it from scratch. Both run
the same SQL, so they give the same rows.

dbt opens the DuckDB file itself: no connection to the warehouse may be held in this
process while it runs. Row counts are read afterwards, with a short-lived
connection.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ml.config.settings import DUCKDB_MEMORY_LIMIT_ENV, Settings, load_business_config
from ml.contract.schema import CATEGORIES
from ml.storage.warehouse import connect

MARTS_SCHEMA = "marts"
WAREHOUSE_ENV = "LOOPLINE_WAREHOUSE"
# dbt statuses that fail a build; "warn" and "skipped" do not by themselves.
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})

# dbt selector (intersection) of the data tests the nightly build leaves to the
# landing gate: see dbt_build_args.
NIGHTLY_EXCLUDED_TESTS = "resource_type:test,path:models/staging"
# As_of dates per dbt invocation of a bulk rebuild (see rebuild): at most a year
# of snapshots, and at most about BULK_CHUNK_ROWS snapshot rows (customers x
# dates), so a large customer base builds in several bounded steps instead of one
# query whose sorts and joins spill far past the memory limit.
BULK_CHUNK_DATES = 366
BULK_CHUNK_ROWS = 24_000_000
# dbt's runner is not re-entrant: one build at a time in a process.
_DBT_LOCK = threading.Lock()
# The project as dbt parsed it, kept for the next build in this process (see
# _parsed_manifest): the key says which project files, vars and target it is of.
_MANIFESTS: dict[tuple[Any, ...], Any] = {}
# What a parse depends on besides the run's dates (which only compile reads).
_PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "packages.yml")
_PROJECT_DIRS = ("models", "macros", "tests", "seeds", "snapshots", "dbt_packages")


@dataclass(frozen=True)
class NodeResult:
    """What happened to one dbt node (model, data test or unit test)."""

    unique_id: str
    name: str
    resource_type: str
    status: str
    execution_time: float
    message: str | None
    failures: int | None

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


@dataclass(frozen=True)
class DbtRunResult:
    """The outcome of one successful ``dbt build``."""

    start: date
    end: date
    every: int
    full_refresh: bool
    select: str | None
    elapsed_seconds: float
    nodes: tuple[NodeResult, ...]
    row_counts: dict[str, int]

    def node(self, name: str) -> NodeResult:
        """The result of the node called ``name`` (a model, test or unit test)."""
        for result in self.nodes:
            if result.name == name:
                return result
        raise KeyError(name)

    def as_counts(self) -> dict[str, Any]:
        """Small JSON-friendly facts (for ``ops.runs`` and XCom): what ran, how it
        ended, the marts' row counts and the time taken."""
        kinds: dict[str, int] = {}
        statuses: dict[str, int] = {}
        for result in self.nodes:
            kinds[result.resource_type] = kinds.get(result.resource_type, 0) + 1
            statuses[result.status] = statuses.get(result.status, 0) + 1
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "every": self.every,
            "full_refresh": self.full_refresh,
            "elapsed_seconds": round(self.elapsed_seconds, 2),
            "nodes": kinds,
            "statuses": statuses,
            "rows": dict(self.row_counts),
        }


class DbtBuildError(RuntimeError):
    """A dbt build failed: a model errored, a test failed, or dbt itself stopped."""

    def __init__(self, message: str, failures: tuple[NodeResult, ...] = ()) -> None:
        super().__init__(message)
        self.failures = failures


def dbt_vars(settings: Settings) -> dict[str, Any]:
    """The ``--vars`` of a build: the business parameters. They stay the same from
    night to night, so dbt's partial parsing holds (changed vars force a full
    re-parse, about 4 s); the run's dates go in :func:`dbt_run_env`."""
    config = load_business_config(settings.config_file)
    return {
        "horizon_days": config.horizon_days,
        "active_window_days": config.active_window_days,
        "feature_windows": list(config.features.windows),
        "categories": list(CATEGORIES),
    }


def dbt_run_env(
    start: date, end: date, every: int, anchor: date | None = None
) -> dict[str, str]:
    """The run's dates for ``dbt_project/macros/run_dates.sql``, as environment
    variables (a var of the same name would win). ``anchor`` aligns the as_of
    dates of a chunk of a bulk build to the build's first date (empty: ``start``)."""
    return {
        "LOOPLINE_DBT_START_DATE": start.isoformat(),
        "LOOPLINE_DBT_END_DATE": end.isoformat(),
        "LOOPLINE_DBT_EVERY": str(every),
        "LOOPLINE_DBT_ANCHOR": "" if anchor is None else anchor.isoformat(),
    }


def dbt_build_args(
    settings: Settings, full_refresh: bool = False, select: str | None = None
) -> list[str]:
    """The command line of ``dbt build`` (without the ``dbt``); the run's dates
    travel in the environment (:func:`dbt_run_env`)."""
    project_dir = str(settings.dbt_project_dir)
    args = [
        "build",
        "--project-dir",
        project_dir,
        "--profiles-dir",
        project_dir,
        "--target-path",
        str(settings.dbt_target_dir),
        "--log-path",
        str(settings.dbt_log_dir),
        "--vars",
        json.dumps(dbt_vars(settings)),
        "--no-use-colors",
        "--log-level",
        settings.dbt_log_level,
        "--log-level-file",
        "info",
    ]
    if full_refresh:
        args.append("--full-refresh")
    else:
        # Unit tests pin the models' logic, not the day's data: the bulk build and
        # the test suite run them; the nightly build skips their ~1 s.
        args += ["--exclude-resource-type", "unit_test"]
        # The staging data tests (keys, nulls, accepted values of the day's landing
        # partition) repeat what the landing gate enforced on the same rows before
        # they were loaded into raw, and they are half of the build's nodes, each
        # with its own fixed cost. The nightly build leaves them to the gate; the
        # bulk build (and the test suite) still runs them.
        args += ["--exclude", NIGHTLY_EXCLUDED_TESTS]
    if select:
        args += ["--select", select]
    return args


def _project_key(settings: Settings) -> tuple[Any, ...]:
    """What the parsed project depends on: every project file's path, size and
    modification time, the vars and the target folder."""
    root = settings.dbt_project_dir
    files: list[tuple[str, int, int]] = []
    paths = [root / name for name in _PROJECT_FILES]
    for folder in _PROJECT_DIRS:
        paths += sorted((root / folder).rglob("*")) if (root / folder).is_dir() else []
    for path in paths:
        if path.is_file():
            stat = path.stat()
            files.append((str(path), stat.st_size, stat.st_mtime_ns))
    return (
        tuple(files),
        json.dumps(dbt_vars(settings), sort_keys=True),
        str(settings.dbt_target_dir),
        os.environ.get(WAREHOUSE_ENV),
    )


def _parsed_manifest(settings: Settings) -> Any:
    """The project's parsed manifest for this process: parsed once (``dbt parse``,
    which also writes ``target/manifest.json``) and reused by every later build
    while no project file, var or target changes.

    A night's build then skips dbt's parse step, partial or not. The run's dates
    are not part of it: they are read from the environment when a model is
    compiled, at run time (``dbt_project/macros/run_dates.sql``). Returns None
    when the parse fails; the build then parses (and reports) by itself.
    Call with ``_DBT_LOCK`` held and the build's environment set.
    """
    from dbt.cli.main import dbtRunner

    key = _project_key(settings)
    manifest = _MANIFESTS.get(key)
    if manifest is not None:
        return manifest
    project_dir = str(settings.dbt_project_dir)
    outcome = dbtRunner().invoke(
        [
            "parse",
            "--project-dir",
            project_dir,
            "--profiles-dir",
            project_dir,
            "--target-path",
            str(settings.dbt_target_dir),
            "--log-path",
            str(settings.dbt_log_dir),
            "--vars",
            json.dumps(dbt_vars(settings)),
            "--no-use-colors",
            "--log-level",
            settings.dbt_log_level,
            "--log-level-file",
            "info",
        ]
    )
    if not outcome.success or outcome.result is None:
        return None
    _MANIFESTS.clear()  # one project per process is the rule; keep one
    _MANIFESTS[key] = outcome.result
    return outcome.result


def dbt_build(
    settings: Settings,
    start: date,
    end: date,
    every: int = 1,
    full_refresh: bool = False,
    select: str | None = None,
    anchor: date | None = None,
) -> DbtRunResult:
    """Run one ``dbt build`` for the as_of_dates ``start, start + every, ... <= end``.

    With ``anchor``, the as_of_dates are instead those of ``anchor, anchor +
    every, ...`` between ``start`` and ``end`` (a chunk of a bulk build, see
    :func:`rebuild`); the partition-keyed models build every day from ``start``.

    Raises :class:`DbtBuildError` naming every failed node and its message. The
    warehouse must exist with its ``raw`` schema
    (``ml.storage.warehouse.ensure_schemas``).
    """
    if end < start:
        raise ValueError(f"end {end} lies before start {start}")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if not settings.warehouse_path.exists():
        raise DbtBuildError(
            f"warehouse {settings.warehouse_path} does not exist; "
            "load the raw tables first (ml.storage.warehouse.ensure_schemas)"
        )
    settings.dbt_target_dir.mkdir(parents=True, exist_ok=True)
    settings.dbt_log_dir.mkdir(parents=True, exist_ok=True)
    args = dbt_build_args(settings, full_refresh, select)

    from dbt.cli.main import dbtRunner  # heavy import, only when a build runs

    began = time.perf_counter()
    env = {
        WAREHOUSE_ENV: str(settings.warehouse_path),
        DUCKDB_MEMORY_LIMIT_ENV: settings.duckdb_memory_limit,
    }
    env |= dbt_run_env(start, end, every, anchor)
    with _DBT_LOCK, _environment(env):
        try:
            manifest = _parsed_manifest(settings)
            outcome = dbtRunner(manifest=manifest).invoke(args)
        finally:
            _close_dbt_warehouse()
    elapsed = time.perf_counter() - began

    nodes = _node_results(outcome.result)
    failures = tuple(node for node in nodes if node.failed)
    if failures or not outcome.success:
        raise DbtBuildError(
            _failure_message(start, end, failures, outcome.exception), failures
        )
    return DbtRunResult(
        start=start,
        end=end,
        every=every,
        full_refresh=full_refresh,
        select=select,
        elapsed_seconds=elapsed,
        nodes=nodes,
        row_counts=mart_row_counts(settings.warehouse_path),
    )


DOCS_TARGET = "analytics"
ANALYTICS_ENV = "LOOPLINE_ANALYTICS"
DOCS_FILES = ("index.html", "manifest.json", "catalog.json", "static_index.html")


def dbt_docs_args(settings: Settings) -> list[str]:
    """The command line of ``dbt docs generate`` (without the ``dbt``): profile
    target ``analytics``, which attaches the analyst copy read-only, and the docs
    site's own target path."""
    project_dir = str(settings.dbt_project_dir)
    return [
        "docs",
        "generate",
        "--project-dir",
        project_dir,
        "--profiles-dir",
        project_dir,
        "--target",
        DOCS_TARGET,
        "--target-path",
        str(settings.dbt_docs_dir),
        "--log-path",
        str(settings.dbt_log_dir),
        "--vars",
        json.dumps(dbt_vars(settings)),
        "--static",
        "--no-use-colors",
        "--log-level",
        settings.dbt_log_level,
        "--log-level-file",
        "info",
    ]


def generate_docs(settings: Settings, analytics: Path, run_date: date) -> Path:
    """Generate dbt's documentation site into ``settings.dbt_docs_dir`` and return
    that folder: ``index.html`` with ``manifest.json`` and ``catalog.json`` (served
    over HTTP), and ``static_index.html``, one file that opens from disk.

    The catalog (column types, row counts) is read from the analyst copy
    ``analytics`` (its database file), attached read-only, so this never holds the
    live warehouse: the marts appear with their columns; staging and intermediate,
    which are not published, with their descriptions and SQL only. The SQL is
    compiled for ``run_date``, the copy's run date. Raises :class:`DbtBuildError`
    when dbt fails.
    """
    settings.dbt_docs_dir.mkdir(parents=True, exist_ok=True)
    settings.dbt_log_dir.mkdir(parents=True, exist_ok=True)

    from dbt.cli.main import dbtRunner  # heavy import, only when docs are built

    env = {ANALYTICS_ENV: str(analytics)} | dbt_run_env(run_date, run_date, 1)
    with _DBT_LOCK, _environment(env):
        try:
            outcome = dbtRunner().invoke(dbt_docs_args(settings))
        finally:
            _close_dbt_warehouse()
    missing = [f for f in DOCS_FILES if not (settings.dbt_docs_dir / f).is_file()]
    if not outcome.success or missing:
        raise DbtBuildError(
            f"dbt docs generate failed ({outcome.exception or 'see the dbt log'}); "
            f"missing: {', '.join(missing) or 'nothing'}"
        )
    return settings.dbt_docs_dir


def rebuild(
    settings: Settings,
    start: date,
    end: date,
    every: int = 1,
    chunk_dates: int | None = None,
    on_chunk: Callable[[date, date], None] | None = None,
) -> DbtRunResult:
    """Rebuild every model from scratch for the range.

    The as_of dates are built ``chunk_dates`` at a time: a full-refresh build of the
    first chunk, then an incremental build of each next one (the nightly query over
    a range, so the rows are the same as one build of the whole range). Each chunk
    builds from the day after the one before it ended, so the partition-keyed
    models see every day, and its as_of dates stay those of ``start, start +
    every, ...`` (the ``anchor`` of :func:`dbt_build`). Every dbt
    invocation costs seconds of fixed overhead and runs every data test again, so a
    chunk is as large as memory allows: each chunk's ``customer_features`` also
    re-reads the look-back before its first date, so fewer chunks read less.
    Left out, ``chunk_dates`` is :func:`bulk_chunk_dates` of the customers in
    ``raw.customers``: a year of dates up to 65,000 customers, 11 for 2.16 million.
    Returns one result for the whole range (every chunk's nodes, the total time,
    the final row counts).
    """
    if chunk_dates is None:
        chunk_dates = bulk_chunk_dates(raw_customer_count(settings.warehouse_path))
    if chunk_dates < 1:
        raise ValueError(f"chunk_dates must be >= 1, got {chunk_dates}")
    step = timedelta(days=every * chunk_dates)
    results: list[DbtRunResult] = []
    first_as_of = build_from = start
    while first_as_of <= end:
        chunk_end = min(end, first_as_of + step - timedelta(days=every))
        if on_chunk is not None:
            on_chunk(build_from, chunk_end)
        results.append(
            dbt_build(
                settings,
                build_from,
                chunk_end,
                every=every,
                full_refresh=not results,
                anchor=start,
            )
        )
        build_from = chunk_end + timedelta(days=1)
        first_as_of = chunk_end + timedelta(days=every)
    if not results:
        raise ValueError(f"end {end} lies before start {start}")
    return DbtRunResult(
        start=start,
        end=end,
        every=every,
        full_refresh=True,
        select=None,
        elapsed_seconds=sum(r.elapsed_seconds for r in results),
        nodes=tuple(node for r in results for node in r.nodes),
        row_counts=results[-1].row_counts,
    )


def bulk_chunk_dates(customers: int, row_budget: int = BULK_CHUNK_ROWS) -> int:
    """As_of dates per bulk build for ``customers`` customers: about
    ``row_budget`` snapshot rows, at least one date and at most a year."""
    if customers <= 0:
        return BULK_CHUNK_DATES
    return max(1, min(BULK_CHUNK_DATES, row_budget // customers))


def raw_customer_count(warehouse_path: Path) -> int:
    """Distinct customers in ``raw.customers`` (0 when the table is missing)."""
    with connect(warehouse_path) as con:
        exists = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'raw' and table_name = 'customers'"
        ).fetchone()
        if not exists or not exists[0]:
            return 0
        row = con.execute(
            "select count(distinct customer_id) from raw.customers"
        ).fetchone()
    return int(row[0]) if row else 0


def mart_row_counts(warehouse_path: Path) -> dict[str, int]:
    """Row count of every table in schema ``marts``."""
    with connect(warehouse_path) as con:
        tables = [
            row[0]
            for row in con.execute(
                "select table_name from information_schema.tables "
                "where table_schema = ? and table_type = 'BASE TABLE' "
                "order by table_name",
                [MARTS_SCHEMA],
            ).fetchall()
        ]
        counts = {}
        for table in tables:
            row = con.execute(
                f'select count(*) from {MARTS_SCHEMA}."{table}"'
            ).fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def manifest_hash(settings: Settings) -> str:
    """A sha256 of the dbt project as compiled into ``target/manifest.json``.

    It covers each node's, macro's and source's file checksum and the models'
    SQL, not the run's metadata (invocation id, time, vars), so it changes when the
    project changes and stays the same across nightly runs of the same project.
    """
    path = settings.dbt_target_dir / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run a dbt build first")
    manifest = json.loads(path.read_text())
    parts: list[str] = []
    for section in ("nodes", "sources", "macros", "unit_tests"):
        for unique_id, item in sorted(manifest.get(section, {}).items()):
            if section == "macros" and item.get("package_name") != "loopline":
                continue
            checksum = item.get("checksum") or ""
            if isinstance(checksum, dict):
                checksum = checksum.get("checksum", "")
            if not checksum:
                checksum = hashlib.sha256(
                    (item.get("macro_sql") or item.get("raw_code") or "").encode()
                ).hexdigest()
            parts.append(f"{unique_id}:{checksum}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _node_results(result: Any) -> tuple[NodeResult, ...]:
    """Flatten dbt's run results into :class:`NodeResult` rows."""
    results = getattr(result, "results", None) or []
    nodes = []
    for item in results:
        node = item.node
        nodes.append(
            NodeResult(
                unique_id=node.unique_id,
                name=node.name,
                resource_type=str(node.resource_type),
                status=str(item.status),
                execution_time=float(item.execution_time or 0.0),
                message=item.message,
                failures=item.failures,
            )
        )
    return tuple(nodes)


# The first line dbt gives a node's error, naming the node and not the cause.
_ERROR_HEADERS = ("Runtime Error in ", "Database Error in ", "Compilation Error in ")


def _failure_message(
    start: date,
    end: date,
    failures: tuple[NodeResult, ...],
    exception: BaseException | None,
) -> str:
    """One readable message naming the failed nodes."""
    lines = [f"dbt build failed for {start.isoformat()}..{end.isoformat()}"]
    for node in failures:
        detail = [line.strip() for line in (node.message or "").splitlines()]
        detail = [line for line in detail if line]
        first = detail[0] if detail else ""
        # "Runtime Error in model x (path)" only names the node: the cause (a
        # full disk, a bad cast) is the line after it
        if first.startswith(_ERROR_HEADERS) and len(detail) > 1:
            first = detail[1]
        lines.append(f"  {node.resource_type} {node.name}: {node.status}: {first}")
    if exception is not None:
        lines.append(f"  dbt stopped: {exception}")
    if not failures and exception is None:
        lines.append("  see the dbt log for details")
    return "\n".join(lines)


def _close_dbt_warehouse() -> None:
    """Close the DuckDB database dbt-duckdb keeps open after a run.

    dbt-duckdb holds its database in a process-wide environment. Left open, it
    keeps the file locked and makes every later ``duckdb.connect`` of the file in
    this process fail with a different configuration (e.g. ``read_only``).
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        if environment is not None:
            environment.close()
        DuckDBConnectionManager._ENV = None


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
