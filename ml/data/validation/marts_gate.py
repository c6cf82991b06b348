"""The feature-mart gate: GX on today's ``marts.customer_features`` snapshot."""

from __future__ import annotations

from datetime import date, timedelta
from time import perf_counter
from typing import Any

import pandas as pd
import pyarrow as pa

from expectations.customer_features import (
    SUITE_NAME,
    build_suite,
    volume_bounds,
    volume_parameters,
)
from ml.config.settings import Settings, load_business_config
from ml.data.validation.context import refresh_data_docs, run_suite
from ml.data.validation.errors import GateFailure, MartValidationError
from ml.data.validation.gate_reports import MartReport
from ml.data.validation.gate_tables import replace_ops_rows, results_table
from ml.data.validation.results import flatten, outcome_rows, stop_failures
from ml.storage.warehouse import connect, ensure_schemas

TABLE = "customer_features"
ROW_COUNT = "expect_table_row_count_to_be_between"


def validate_marts(
    settings: Settings, run_date: date, *, data_docs: bool = True
) -> MartReport:
    """Validate the feature snapshot ``as_of_date = run_date`` of the warehouse.

    Reads the snapshot and yesterday's row count over a read-only connection, runs
    the ``marts.customer_features`` suite, stores every result in
    ``ops.validation_results`` (replacing this run date's rows) and raises
    :class:`MartValidationError` when any expectation fails.
    """
    began = perf_counter()
    config = load_business_config(settings.config_file).validation
    previous_day = run_date - timedelta(days=1)
    snapshot, previous = _read_snapshot(settings, run_date, previous_day)
    frame = gx_frame(snapshot)
    # the volume check's bounds are run-time parameters, so the suite is the same
    # every night and is stored once (no yesterday: no volume check)
    suite = build_suite(
        nullable=config.mart_nullable_features, volume_by_parameter=bool(previous)
    )
    suite_run = run_suite(
        settings,
        suite,
        datasource="marts",
        asset=TABLE,
        frame=frame,
        start=run_date,
        end=run_date,
        parameters=(
            volume_parameters(previous, config.mart_volume_tolerance)
            if previous
            else None
        ),
    )
    outcomes = flatten(suite_run.result, config.example_values)
    failures: list[GateFailure] = []
    for failure in stop_failures(outcomes, TABLE, run_date):
        explained = _explain_volume(
            failure, len(frame), previous, previous_day, config.mart_volume_tolerance
        )
        if explained not in failures:  # an empty snapshot fails both row counts
            failures.append(explained)
    rows = outcome_rows(
        outcomes, suite_name=SUITE_NAME, table=TABLE, start=run_date, end=run_date
    )
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
        replace_ops_rows(con, [TABLE], run_date, run_date, results_table(rows))
    if data_docs:
        refresh_data_docs(
            settings, [suite_run.result_id], run_date, config.data_docs_days
        )
    report = MartReport(
        run_date=run_date,
        rows=len(frame),
        previous_rows=previous,
        expectations_evaluated=len(outcomes),
        expectations_failed=sum(not o.success for o in outcomes),
        passed=not failures,
        seconds=perf_counter() - began,
    )
    if failures:
        raise MartValidationError(failures, report)
    return report


def gx_frame(snapshot: pa.Table) -> pd.DataFrame:
    """The snapshot as the pandas frame GX validates, every integer column as int64.

    GX's pandas engine compares a column with its bounds in one vectorised step
    only when its dtype is int64 or float64; any other dtype (the ``integer``
    counts and ages dbt writes arrive as int32) is walked value by value in
    Python, which at a million rows cost about 2 s of the gate's 3.5 s (see
    ``benchmarks/bench_marts_gate.py``). The values are the same.
    """
    fields = [
        pa.field(f.name, pa.int64(), f.nullable, f.metadata)
        if pa.types.is_integer(f.type) and f.type != pa.int64()
        else f
        for f in snapshot.schema
    ]
    return snapshot.cast(pa.schema(fields, snapshot.schema.metadata)).to_pandas()


def _read_snapshot(settings: Settings, run_date: date, previous_day: date) -> Any:
    """Today's snapshot (Arrow) and yesterday's row count, read-only."""
    missing = GateFailure(
        table=TABLE,
        partition_date=run_date,
        kind="data",
        expectation="table_exists",
        column=None,
        message=f"marts.{TABLE} does not exist in {settings.warehouse_path}",
    )
    if not settings.warehouse_path.exists():
        raise MartValidationError([missing])
    with connect(settings.warehouse_path, read_only=True) as con:
        (found,) = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'marts' and table_name = ?",
            [TABLE],
        ).fetchall()
        if not found[0]:
            raise MartValidationError([missing])
        snapshot = con.sql(
            f"select * from marts.{TABLE} where as_of_date = ?", params=[run_date]
        ).to_arrow_table()
        (counted,) = con.execute(
            f"select count(*) from marts.{TABLE} where as_of_date = ?", [previous_day]
        ).fetchall()
    return snapshot, int(counted[0])


def _explain_volume(
    failure: GateFailure,
    rows: int,
    previous: int,
    previous_day: date,
    tolerance: float,
) -> GateFailure:
    """Say what a failed row-count check compared, in words."""
    if failure.expectation != ROW_COUNT:
        return failure
    if rows == 0:
        message = f"{ROW_COUNT} failed: the snapshot has no rows"
    else:
        low, high = volume_bounds(previous, tolerance)
        message = (
            f"{ROW_COUNT} failed: {rows} rows, but {previous} on {previous_day} "
            f"allows {low}..{high} (validation.mart_volume_tolerance {tolerance:.0%})"
        )
    return GateFailure(
        table=failure.table,
        partition_date=failure.partition_date,
        kind=failure.kind,
        expectation=failure.expectation,
        column=None,
        message=message,
    )
