"""The landing gate: validate landing partitions, quarantine bad rows, load good ones.

For every landing table the partitions of the run date (or of a date range, for the
history rebuild) are read with the file each row came from. A table's shape is
checked file by file against the contract and by its GX suite; a schema fault, or a
missing or empty partition of a required table, stops the run. Row faults go to
``ops.quarantine`` with a reason; when more than ``validation.max_bad_row_fraction``
of a partition is bad, and at least ``validation.min_bad_rows`` of its table, the
run stops as well. Only when every table passes are the
good rows loaded into ``raw``, each partition replaced as a whole; a failed gate
loads nothing and deletes nothing, and its quarantine rows keep ``loaded = false``
(a passing gate sets it once the table's good rows are loaded). Every expectation
result, rule count and gate
fault is written to ``ops.validation_results`` either way, replacing the rows of the
same tables and run dates, so a rerun is idempotent. A table with no partition on a
day is legitimately absent (unless required): nothing is read and ``raw`` keeps
whatever it has for that day.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from expectations import landing_suite_builder
from expectations.suite_parts import (
    CUSTOMER_MISMATCH,
    DUPLICATE_KEY,
    FUTURE_EVENT_TIME,
    IMPLAUSIBLE_AMOUNT,
    INVALID_NEW_ACTION,
    NEGATIVE_AMOUNT,
    NON_FINITE_AMOUNT,
    NULL_KEY,
    NULL_REQUIRED,
    REASONS,
    ROW,
    UNKNOWN_CUSTOMER,
    UNKNOWN_DECISION,
    VALUE_NOT_ALLOWED,
    suite_parameters,
    unique_key,
)
from ml.config.settings import Settings, ValidationConfig, load_business_config
from ml.contract.schema import TABLES, TableContract
from ml.data.validation.amounts import ensure_profile, implausible, update_profile
from ml.data.validation.context import SuiteRun, refresh_data_docs, run_suite
from ml.data.validation.errors import GateFailure, ValidationGateError
from ml.data.validation.frames import LandingBatch, read_landing
from ml.data.validation.gate_reports import (
    ABSENT,
    FAILED,
    LOADED,
    NOT_LOADED,
    LandingReport,
    TableReport,
)
from ml.data.validation.gate_tables import (
    QUARANTINE_SCHEMA,
    mark_loaded,
    replace_ops_rows,
    results_table,
)
from ml.data.validation.references import REFERENCES
from ml.data.validation.results import (
    ExpectationOutcome,
    flatten,
    outcome_rows,
    stop_failures,
    to_json,
)
from ml.data.validation.rules import (
    CustomerRegistry,
    RowVerdicts,
    assign_reasons,
    customer_registry,
)
from ml.storage.landing_files import partition_files
from ml.storage.warehouse import (
    connect,
    ensure_schemas,
    replace_raw_partition,
    replace_raw_range,
)

RULE_EXPECTATION = "quarantine_rule"
# A history gate (validate_landing_history) reads at most about this many bytes of
# landing files per chunk of days: the gate holds a chunk in memory several times
# over (Arrow, the pandas frame GX validates, the row verdicts), so a year of a
# million customers (35M transactions) is gated a month or so at a time.
HISTORY_CHUNK_BYTES = 128 * 1024**2
BAD_ROWS = "max_bad_row_fraction"


@dataclass
class _TableRun:
    """Everything the gate learned about one table in this call."""

    batch: LandingBatch
    frame: pd.DataFrame | None = None
    suite_run: SuiteRun | None = None
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    verdicts: RowVerdicts | None = None
    failures: list[GateFailure] = field(default_factory=list)
    rows_loaded: int = 0
    day_rows: dict[date, np.ndarray] | None = None

    @property
    def absent(self) -> bool:
        return not self.batch.partitions and not self.batch.faults


def validate_landing(
    settings: Settings,
    run_date: date,
    tables: Sequence[str] | None = None,
    *,
    data_docs: bool = True,
) -> LandingReport:
    """Gate the landing partitions ``dt=run_date`` and load their good rows.

    ``tables`` limits the call to some landing tables (default: all). Raises
    :class:`ValidationGateError` when a table fails; then nothing is loaded, but
    the ops rows are written. ``data_docs`` renders this run's Data Docs pages
    (about 1 s; the store keeps ``validation.data_docs_days`` run dates).
    """
    return _run_gate(settings, run_date, run_date, tables, data_docs=data_docs)


def validate_landing_range(
    settings: Settings,
    start: date,
    end: date,
    tables: Sequence[str] | None = None,
    *,
    data_docs: bool = True,
) -> LandingReport:
    """Gate and load every landing partition from ``start`` to ``end`` at once.

    The bulk form of :func:`validate_landing` for history rebuilds: one GX run per
    table over the whole range, row rules applied with each row's own partition day,
    one load per table. From the same starting warehouse, ``raw`` and
    ``ops.quarantine`` end up exactly as after calling :func:`validate_landing` for
    each day in order; ``ops.validation_results`` holds one GX result set for the
    range (its event-time bound is the end of the range; the quarantine rule uses
    each row's day) plus the per-day rule counts. All or nothing: when any partition
    fails, nothing in the range is loaded.
    """
    return _run_gate(settings, start, end, tables, data_docs=data_docs)


def validate_landing_history(
    settings: Settings,
    start: date,
    end: date,
    *,
    chunk_bytes: int = HISTORY_CHUNK_BYTES,
    data_docs: bool = True,
    on_chunk: Callable[[date, date], None] | None = None,
) -> LandingReport:
    """Gate and load the landing history ``start``..``end``, in chunks of days.

    :func:`validate_landing_range` over consecutive chunks of days, in date order,
    each holding at most about ``chunk_bytes`` of landing files (at least one day),
    so memory follows the chunk, not the history. Each chunk sees the customers the
    chunks before it loaded, exactly as the nightly runs of those days would, so
    ``raw`` and ``ops.quarantine`` end up as after one range call. When a chunk
    fails, the chunks before it stay loaded (they passed), nothing of the failing
    chunk or after it is, and the :class:`ValidationGateError` says which days were
    loaded. ``on_chunk(first, last)`` is called before each chunk (progress).
    Returns one report for the whole history; Data Docs are rendered once, for the
    last chunk.
    """
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    began = perf_counter()
    chunks = history_chunks(settings, start, end, chunk_bytes)
    reports: list[LandingReport] = []
    for number, (first, last) in enumerate(chunks):
        if on_chunk is not None:
            on_chunk(first, last)
        try:
            report = _run_gate(
                settings,
                first,
                last,
                None,
                data_docs=data_docs and number == len(chunks) - 1,
            )
        except ValidationGateError as exc:
            if not reports:
                raise
            loaded = f"{start.isoformat()}..{(first - timedelta(days=1)).isoformat()}"
            raise ValidationGateError(
                [
                    GateFailure(
                        f.table,
                        f.partition_date,
                        f.kind,
                        f.expectation,
                        f.column,
                        f"{f.message} (the history before {first} passed and "
                        f"is loaded: {loaded})",
                    )
                    for f in exc.failures
                ],
                exc.report,
            ) from exc
        reports.append(report)
    return _merged(reports, start, end, perf_counter() - began)


def history_chunks(
    settings: Settings, start: date, end: date, chunk_bytes: int
) -> list[tuple[date, date]]:
    """Consecutive (first, last) days covering ``start``..``end``, each with at
    most about ``chunk_bytes`` of landing files of every table (at least a day)."""
    sizes: dict[date, int] = {}
    for table in TABLES:
        day = start
        while day <= end:
            files = partition_files(settings.landing_dir, table, day)
            sizes[day] = sizes.get(day, 0) + sum(f.stat().st_size for f in files)
            day += timedelta(days=1)
    chunks: list[tuple[date, date]] = []
    first, held = start, 0
    day = start
    while day <= end:
        size = sizes.get(day, 0)
        if held and held + size > chunk_bytes:
            chunks.append((first, day - timedelta(days=1)))
            first, held = day, 0
        held += size
        day += timedelta(days=1)
    chunks.append((first, end))
    return chunks


def _merged(
    reports: list[LandingReport], start: date, end: date, seconds: float
) -> LandingReport:
    """One report for consecutive chunks' reports (all of them passed)."""
    if len(reports) == 1:
        only = reports[0]
        return LandingReport(start, end, only.tables, only.passed, seconds)
    tables: dict[str, TableReport] = {}
    for name in reports[0].tables:
        parts = [r.tables[name] for r in reports if name in r.tables]
        quarantined: dict[str, int] = {}
        for part in parts:
            for reason, rows in part.quarantined.items():
                quarantined[reason] = quarantined.get(reason, 0) + rows
        statuses = {part.status for part in parts}
        tables[name] = TableReport(
            table=name,
            status=LOADED if LOADED in statuses else parts[-1].status,
            partitions=sum(p.partitions for p in parts),
            files=sum(p.files for p in parts),
            rows_read=sum(p.rows_read for p in parts),
            rows_loaded=sum(p.rows_loaded for p in parts),
            quarantined=quarantined,
            expectations_evaluated=sum(p.expectations_evaluated for p in parts),
            expectations_failed=sum(p.expectations_failed for p in parts),
        )
    passed = all(r.passed for r in reports)
    return LandingReport(start, end, tables, passed, seconds)


def _selected(tables: Sequence[str] | None) -> list[str]:
    if tables is None:
        return list(TABLES)
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise ValueError(f"unknown landing tables: {unknown}; known: {list(TABLES)}")
    # customers first: the other tables' customer check needs its good rows
    return [t for t in TABLES if t in tables]


def _run_gate(
    settings: Settings,
    start: date,
    end: date,
    tables: Sequence[str] | None,
    *,
    data_docs: bool,
) -> LandingReport:
    began = perf_counter()
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    config = load_business_config(settings.config_file).validation
    selected = _selected(tables)
    required = set(config.required_tables)
    runs = {
        t: _TableRun(
            read_landing(
                settings.landing_dir,
                t,
                start,
                end,
                required=t in required,
                example_count=config.example_values,
            )
        )
        for t in selected
    }
    for table, run in runs.items():
        _run_table_suite(settings, run, start, end, table in required, config)

    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
        if "transactions" in runs:
            ensure_profile(con)
        registry: CustomerRegistry | None = None
        for table, run in runs.items():
            if run.failures or run.frame is None or run.batch.data is None:
                continue
            if table != "customers" and "customer_id" in run.batch.contract.columns:
                registry = registry or _registry(settings, con, runs, start, end)
            run.verdicts = assign_reasons(
                run.batch,
                run.frame,
                con,
                sorted(run.batch.partitions),
                None if table == "customers" else registry,
                _amount_rule(con, run, config) if table == "transactions" else None,
            )
            run.failures += _bad_row_failures(run, config)
        failures = [f for run in runs.values() for f in run.failures]
        results, quarantine = _ops_rows(runs, start, end, config)
        replace_ops_rows(con, selected, start, end, results, quarantine)
        if not failures:
            for table, run in runs.items():
                run.rows_loaded = _load(con, table, run, start, end)
                mark_loaded(con, table, start, end)
    report = _report(runs, start, end, not failures, perf_counter() - began)
    if data_docs:
        _build_docs(settings, runs, end, config.data_docs_days)
    if failures:
        raise ValidationGateError(failures, report)
    return report


def _run_table_suite(
    settings: Settings,
    run: _TableRun,
    start: date,
    end: date,
    required: bool,
    config: ValidationConfig,
) -> None:
    """Run the table's GX suite; collect the faults that stop the run."""
    batch = run.batch
    run.failures = list(batch.faults)
    if run.absent:
        return
    data = batch.data
    if data is None and not batch.partitions:
        data = batch.contract.schema.empty_table()  # a required partition is missing
    if data is None:
        return  # the files' column types disagree; batch.faults say how
    run.frame = data.to_pandas()
    extra = (
        {"max_amount": config.amounts.max_amount}
        if batch.table == "transactions"
        else {}
    )
    suite = landing_suite_builder(batch.table)(required=required, **extra)
    run.suite_run = run_suite(
        settings,
        suite,
        datasource="landing",
        asset=batch.table,
        frame=run.frame,
        start=start,
        end=end,
        parameters=suite_parameters(end),
    )
    run.outcomes = flatten(run.suite_run.result, config.example_values)
    if not batch.has_schema_fault:
        # The file checks explain schema faults more precisely; GX is the backstop.
        run.failures += stop_failures(run.outcomes, batch.table, start)


def _amount_rule(
    con: Any, run: _TableRun, config: ValidationConfig
) -> Callable[[np.ndarray], np.ndarray]:
    """The implausible-amount rule of a transactions batch (see amounts)."""
    frame = run.frame
    assert frame is not None
    days = sorted(run.batch.partitions)
    row_days = run.batch.partition_date.to_numpy(zero_copy_only=False)

    def rule(good: np.ndarray) -> np.ndarray:
        return implausible(con, frame, row_days, days, config.amounts, good)

    return rule


def _registry(
    settings: Settings,
    con: Any,
    runs: dict[str, _TableRun],
    start: date,
    end: date,
) -> CustomerRegistry:
    """Customers known to rows of this call (raw plus customers landed so far),
    looked up for the ids those rows refer to only."""
    referred = pa.chunked_array(
        [
            run.batch.data.column("customer_id").cast(pa.string())
            for table, run in runs.items()
            if table != "customers"
            and run.batch.data is not None
            and "customer_id" in run.batch.data.column_names
        ],
        type=pa.string(),
    )
    customers = runs.get("customers")
    if customers is not None:
        return customer_registry(
            con,
            sorted(customers.batch.partitions),
            customers.batch,
            customers.verdicts,
            referred,
        )
    # customers is not validated in this call: raw.customers stays as it is, and
    # the customers landed by each day still count.
    landed = read_landing(settings.landing_dir, "customers", start, end)
    return customer_registry(con, [], landed, None, referred)


def _row_examples(
    run: _TableRun, rows: np.ndarray, column: str | None, count: int
) -> list[Any]:
    """Example values of ``column`` (a key may be ``a|b``) for the first ``rows``."""
    if run.frame is None or column is None:
        return []
    picked = rows[:count]
    parts = [
        [None if pd.isna(v) else v for v in run.frame[c].to_numpy()[picked].tolist()]
        for c in column.split("|")
    ]
    if len(parts) == 1:
        return parts[0]
    return ["|".join(str(v) for v in values) for values in zip(*parts, strict=True)]


def _rows_by_day(run: _TableRun) -> dict[date, np.ndarray]:
    """Row positions of each partition day (computed once per table)."""
    if run.day_rows is None:
        days = run.batch.partition_date.to_numpy(zero_copy_only=False)
        by_day = {d: np.array([], dtype=np.int64) for d in run.batch.partitions}
        if days.size == 0:
            run.day_rows = by_day
            return by_day
        unique, inverse = np.unique(days, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        groups = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
        for day, rows in zip(unique.astype(object), groups, strict=True):
            by_day[day] = rows
        run.day_rows = by_day
    return run.day_rows


def _reason_rows(run: _TableRun, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The quarantined positions among ``rows``, by reason (in reason order)."""
    assert run.verdicts is not None
    reasons = run.verdicts.reason[rows]
    return {
        reason: rows[reasons == reason]
        for reason in REASONS
        if np.any(reasons == reason)
    }


def _bad_row_failures(run: _TableRun, config: ValidationConfig) -> list[GateFailure]:
    """Partitions with more bad rows than ``validation.max_bad_row_fraction``,
    and at least ``validation.min_bad_rows`` of their table."""
    failures = []
    assert run.verdicts is not None
    least = config.min_bad_rows.of(run.batch.table)
    for day, rows in _rows_by_day(run).items():
        if rows.size == 0:
            continue
        by_reason = _reason_rows(run, rows)
        bad = sum(len(r) for r in by_reason.values())
        if bad / rows.size <= config.max_bad_row_fraction or bad < least:
            continue
        details = []
        for reason, hits in by_reason.items():
            column = run.verdicts.column[hits[0]]
            examples = _row_examples(run, hits, column, config.example_values)
            shown = ", ".join(repr(v) for v in examples)
            details.append(f"{reason} {len(hits)} ({column}: {shown})")
        failures.append(
            GateFailure(
                table=run.batch.table,
                partition_date=day,
                kind="bad_rows",
                expectation=BAD_ROWS,
                column=run.verdicts.column[next(iter(by_reason.values()))[0]],
                message=(
                    f"{bad} of {rows.size} rows ({bad / rows.size:.1%}) fail row "
                    f"checks, above validation.max_bad_row_fraction "
                    f"{config.max_bad_row_fraction:.1%} (and at least "
                    f"validation.min_bad_rows.{run.batch.table} = {least}): "
                    + "; ".join(details)
                ),
            )
        )
    return failures


def _applicable_reasons(contract: TableContract) -> list[str]:
    reasons = [NULL_KEY]
    if any(
        c not in contract.key and c not in contract.nullable for c in contract.columns
    ):
        reasons.append(NULL_REQUIRED)
    if contract.allowed_values:
        reasons.append(VALUE_NOT_ALLOWED)
    if "new_action" in contract.columns and "decision" in contract.columns:
        reasons.append(INVALID_NEW_ACTION)
    if "amount" in contract.columns:
        reasons.insert(1, NON_FINITE_AMOUNT)
        reasons += [NEGATIVE_AMOUNT, IMPLAUSIBLE_AMOUNT]
    if contract.event_time:
        reasons.append(FUTURE_EVENT_TIME)
    if contract.name != "customers" and "customer_id" in contract.columns:
        reasons.append(UNKNOWN_CUSTOMER)
    if contract.name in REFERENCES:
        reasons += [UNKNOWN_DECISION, CUSTOMER_MISMATCH]
    reasons.append(DUPLICATE_KEY)
    return reasons


def _ops_rows(
    runs: dict[str, _TableRun], start: date, end: date, config: ValidationConfig
) -> tuple[pa.Table, pa.Table]:
    """The ``ops.validation_results`` and ``ops.quarantine`` rows of this call."""
    results: list[dict[str, Any]] = []
    quarantine: list[pa.Table] = []
    for table, run in runs.items():
        suite_name = f"landing.{table}"
        results += outcome_rows(
            run.outcomes, suite_name=suite_name, table=table, start=start, end=end
        )
        for failure in run.failures:
            results.append(
                {
                    "run_date": failure.partition_date,
                    "suite_name": f"{suite_name}.gate",
                    "table_name": table,
                    "partition_date": failure.partition_date,
                    "partition_end": failure.partition_date,
                    "expectation_type": failure.expectation,
                    "column_name": failure.column,
                    "severity": ROW if failure.kind == "bad_rows" else "schema",
                    "reason": failure.kind,
                    "success": False,
                    "observed_value": str(failure),
                }
            )
        if run.verdicts is None:
            continue
        results += _rule_rows(run, suite_name, config)
        quarantine.append(_quarantine_rows(run))
    q = pa.concat_tables(quarantine) if quarantine else QUARANTINE_SCHEMA.empty_table()
    return results_table(results), q


def _rule_rows(
    run: _TableRun, suite_name: str, config: ValidationConfig
) -> list[dict[str, Any]]:
    """One row per partition day and row rule: how many rows it set aside."""
    assert run.verdicts is not None
    rows = []
    reasons = _applicable_reasons(run.batch.contract)
    for day, positions in _rows_by_day(run).items():
        by_reason = _reason_rows(run, positions)
        for reason in reasons:
            hits = by_reason.get(reason, np.array([], dtype=np.int64))
            column = run.verdicts.column[hits[0]] if hits.size else None
            examples = _row_examples(run, hits, column, config.example_values)
            rows.append(
                {
                    "run_date": day,
                    "suite_name": suite_name,
                    "table_name": run.batch.table,
                    "partition_date": day,
                    "partition_end": day,
                    "expectation_type": RULE_EXPECTATION,
                    "column_name": column,
                    "severity": ROW,
                    "reason": reason,
                    "success": hits.size == 0,
                    "element_count": int(positions.size),
                    "unexpected_count": int(hits.size),
                    "unexpected_percent": (
                        100.0 * hits.size / positions.size if positions.size else 0.0
                    ),
                    "example_values": to_json(examples),
                }
            )
    return rows


def _quarantine_rows(run: _TableRun) -> pa.Table:
    """The quarantined rows of a table, each with its record as JSON."""
    assert run.verdicts is not None and run.batch.data is not None
    bad = np.flatnonzero(run.verdicts.bad)
    if bad.size == 0:
        return QUARANTINE_SCHEMA.empty_table()
    take = pa.array(bad)
    records = run.batch.data.take(take).to_pylist()
    key = unique_key(run.batch.contract)
    days = run.batch.partition_date.take(take)
    return pa.table(
        {
            "run_date": days,
            "table_name": pa.array([run.batch.table] * bad.size, pa.string()),
            "partition_date": days,
            "source_file": run.batch.source_file.take(take),
            "reason": pa.array(run.verdicts.reason[bad].tolist(), pa.string()),
            "column_name": pa.array(run.verdicts.column[bad].tolist(), pa.string()),
            "record_key": pa.array(
                ["|".join(str(r.get(c)) for c in key) for r in records], pa.string()
            ),
            "record_json": pa.array([_record_json(r) for r in records], pa.string()),
            # set by mark_loaded once the good rows of the table are loaded
            "loaded": pa.array([False] * bad.size, pa.bool_()),
        },
        schema=QUARANTINE_SCHEMA,
    )


def _record_json(record: dict[str, Any]) -> str:
    """A landing row as strict JSON: ISO dates and times, NaN as null."""
    clean = {
        k: None if isinstance(v, float) and math.isnan(v) else v
        for k, v in record.items()
    }
    return json.dumps(clean, default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _load(con: Any, table: str, run: _TableRun, start: date, end: date) -> int:
    """Replace the raw partitions that landed with the table's good rows."""
    batch = run.batch
    if not batch.partitions or batch.data is None:
        return 0
    keep = (
        pa.array(~run.verdicts.bad)
        if run.verdicts is not None
        else pa.array(np.ones(batch.data.num_rows, dtype=bool))
    )
    good = batch.data.filter(keep)
    files = batch.source_file.filter(keep)
    days = batch.partition_date.filter(keep)
    if start == end:
        loaded = replace_raw_partition(con, table, start, good, source_file=files)
    else:
        loaded = replace_raw_range(
            con,
            table,
            sorted(batch.partitions),
            good,
            partition_date=days,
            source_file=files,
        )
    if table == "transactions":
        rows = pa.table(
            {
                "partition_date": days.cast(pa.date32()),
                "customer_id": good.column("customer_id"),
                "amount": good.column("amount").cast(pa.float64()),
            }
        )
        update_profile(con, sorted(batch.partitions), rows)
    return loaded


def _report(
    runs: dict[str, _TableRun], start: date, end: date, passed: bool, seconds: float
) -> LandingReport:
    tables = {}
    for table, run in runs.items():
        if run.failures:
            status = FAILED
        elif run.absent:
            status = ABSENT
        else:
            status = LOADED if passed else NOT_LOADED
        quarantined: dict[str, int] = {}
        if run.verdicts is not None:
            for reason in run.verdicts.reason[run.verdicts.bad]:
                quarantined[reason] = quarantined.get(reason, 0) + 1
        tables[table] = TableReport(
            table=table,
            status=status,
            partitions=len(run.batch.partitions),
            files=run.batch.files,
            rows_read=run.batch.rows,
            rows_loaded=run.rows_loaded,
            quarantined=quarantined,
            expectations_evaluated=len(run.outcomes),
            expectations_failed=sum(not o.success for o in run.outcomes),
        )
    return LandingReport(
        start=start, end=end, tables=tables, passed=passed, seconds=seconds
    )


def _build_docs(
    settings: Settings, runs: dict[str, _TableRun], end: date, keep_days: int
) -> None:
    ids = [r.suite_run.result_id for r in runs.values() if r.suite_run is not None]
    if ids:
        refresh_data_docs(settings, ids, end, keep_days)
