"""Reading landing partitions into one Arrow table per landing table.

Each file is read as it is (``ml.storage.landing_files.read_file``) and only *safely*
conformed to the contract: timestamps to microseconds without a time zone (UTC),
integers to double where the contract says double, all-null columns and other string
encodings to the contract type, and, for CSV files only (which carry no types),
integer-looking text back to text and empty strings to null. Anything else keeps the
type it was written with, so the schema checks see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ml.contract.schema import TABLES, TableContract
from ml.data.validation.errors import GateFailure
from ml.storage.landing_files import (
    is_declared_empty,
    list_partition_dates,
    partition_files,
    read_file,
)

COLUMN_SET = "expect_table_columns_to_match_set"
COLUMN_TYPE = "expect_column_values_to_be_of_type"
ROW_COUNT = "expect_table_row_count_to_be_between"
# The gate's own check that every landing file can be read (no GX expectation).
READABLE_FILE = "readable_file"
SCHEMA_KINDS = ("schema", "missing_partition", "empty_partition")


@dataclass(frozen=True)
class PartitionInfo:
    """One landing partition that was read."""

    day: date
    files: tuple[str, ...]
    rows: int


@dataclass
class LandingBatch:
    """All rows of one landing table over a date range, with where each came from.

    ``data`` is ``None`` when the table is absent in the range, or when its files
    cannot be combined (their column types disagree; ``faults`` says how).
    """

    table: str
    data: pa.Table | None
    partition_date: pa.Array
    source_file: pa.Array
    partitions: dict[date, PartitionInfo] = field(default_factory=dict)
    faults: list[GateFailure] = field(default_factory=list)

    @property
    def contract(self) -> TableContract:
        return TABLES[self.table]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions.values())

    @property
    def files(self) -> int:
        return sum(len(p.files) for p in self.partitions.values())

    @property
    def has_schema_fault(self) -> bool:
        return any(f.kind in SCHEMA_KINDS for f in self.faults)


def conform(data: pa.Table, contract: TableContract, *, from_csv: bool) -> pa.Table:
    """Cast the columns of one file to the contract where that loses nothing."""
    targets = {f.name: f.type for f in contract.schema}
    columns = []
    for name, column in zip(data.column_names, data.columns, strict=True):
        target = targets.get(name)
        if target is not None and column.type != target:
            column = _conform_column(column, target, from_csv=from_csv)
        if from_csv and column.type == pa.string():
            column = pc.if_else(
                pc.equal(column, ""), pa.scalar(None, pa.string()), column
            )
        columns.append(column)
    return pa.table(columns, names=data.column_names)


def _conform_column(
    column: pa.ChunkedArray, target: pa.DataType, *, from_csv: bool
) -> pa.ChunkedArray:
    source = column.type
    if pa.types.is_null(source):
        return column.cast(target)
    if pa.types.is_timestamp(source) and pa.types.is_timestamp(target):
        # Arrow keeps instants in UTC: dropping the zone gives naive UTC.
        return column.cast(pa.timestamp(source.unit)).cast(target, safe=False)
    if pa.types.is_integer(source) and pa.types.is_floating(target):
        return column.cast(target)
    if pa.types.is_dictionary(source):
        return _conform_column(
            column.cast(source.value_type), target, from_csv=from_csv
        )
    if target == pa.string() and (
        pa.types.is_large_string(source) or pa.types.is_string_view(source)
    ):
        return column.cast(target)
    if target == pa.date32() and pa.types.is_date64(source):
        return column.cast(target)
    if from_csv and target == pa.string() and pa.types.is_integer(source):
        return column.cast(target)
    return column


def _examples(column: pa.ChunkedArray, n: int) -> str:
    values = column.drop_null().slice(0, n).to_pylist()
    return ", ".join(repr(v) for v in values) if values else "(all null)"


def _file_faults(
    table: str,
    day: date,
    file_name: str,
    data: pa.Table,
    contract: TableContract,
    example_count: int,
) -> list[GateFailure]:
    """Column-set and column-type faults of one file, with example values."""
    faults = []
    found = data.column_names
    missing = [c for c in contract.columns if c not in found]
    unexpected = [c for c in found if c not in contract.columns]
    if missing or unexpected:
        found_text = ", ".join(repr(c) for c in unexpected)
        if missing:
            text = "missing column " + ", ".join(repr(c) for c in missing)
            if unexpected:
                text += f" (found unexpected {found_text})"
        else:
            text = f"unexpected column {found_text}"
        examples = "; ".join(
            f"{c}=[{_examples(data.column(c), example_count)}]" for c in unexpected
        )
        message = f"{COLUMN_SET} failed: {text} in {file_name}"
        if examples:
            message += f"; examples: {examples}"
        faults.append(
            GateFailure(
                table=table,
                partition_date=day,
                kind="schema",
                expectation=COLUMN_SET,
                column=(missing or unexpected)[0],
                message=message,
            )
        )
    for f in contract.schema:
        if f.name not in found:
            continue
        actual = data.schema.field(f.name).type
        if actual != f.type:
            faults.append(
                GateFailure(
                    table=table,
                    partition_date=day,
                    kind="schema",
                    expectation=COLUMN_TYPE,
                    column=f.name,
                    message=(
                        f"{COLUMN_TYPE} failed: column {f.name!r} has type {actual}, "
                        f"expected {f.type} in {file_name}; examples: "
                        f"{_examples(data.column(f.name), example_count)}"
                    ),
                )
            )
    return faults


def read_landing(
    landing_dir: Path,
    table: str,
    start: date,
    end: date,
    *,
    required: bool = False,
    example_count: int = 5,
) -> LandingBatch:
    """Read every partition of ``table`` from ``start`` to ``end`` (inclusive).

    Structural faults (a file's columns or types differ from the contract; a
    required partition is missing or empty) are collected in ``faults``.
    """
    contract = TABLES[table]
    days = [d for d in list_partition_dates(landing_dir, table) if start <= d <= end]
    pieces: list[pa.Table] = []
    dates: list[pa.Array] = []
    files: list[pa.Array] = []
    partitions: dict[date, PartitionInfo] = {}
    faults: list[GateFailure] = []
    unreadable: set[date] = set()
    for day in days:
        names = []
        rows = 0
        for path in partition_files(landing_dir, table, day):
            name = path.relative_to(landing_dir).as_posix()
            try:
                read = read_file(path)
            except (pa.ArrowException, OSError) as exc:
                faults.append(_unreadable(table, day, name, exc))
                unreadable.add(day)
                continue
            data = conform(read, contract, from_csv=path.suffix == ".csv")
            faults += _file_faults(table, day, name, data, contract, example_count)
            pieces.append(data)
            dates.append(pa.array([day] * data.num_rows, pa.date32()))
            files.append(pa.array([name] * data.num_rows, pa.string()))
            names.append(name)
            rows += data.num_rows
        if names:
            partitions[day] = PartitionInfo(day=day, files=tuple(names), rows=rows)
    if required:
        # a day with an unreadable file already has its fault
        faults += _required_faults(
            table, start, end, partitions, landing_dir, skip=unreadable
        )
    combined: pa.Table | None = None
    if pieces:
        try:
            combined = pa.concat_tables(pieces, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            combined = None  # the type faults above explain why
    return LandingBatch(
        table=table,
        data=combined,
        partition_date=pa.concat_arrays(dates) if dates else pa.array([], pa.date32()),
        source_file=pa.concat_arrays(files) if files else pa.array([], pa.string()),
        partitions=partitions,
        faults=faults,
    )


def _unreadable(table: str, day: date, name: str, exc: Exception) -> GateFailure:
    """A landing file that cannot be read at all (truncated, not Parquet or CSV):
    a schema fault naming the table and the file, on one line."""
    cause = " ".join(str(exc).split()) or "no detail"
    return GateFailure(
        table=table,
        partition_date=day,
        kind="schema",
        expectation=READABLE_FILE,
        column=None,
        message=(
            f"cannot read landing file {name} of table {table}: "
            f"{type(exc).__name__}: {cause}; deliver the partition again"
        ),
    )


def _required_faults(
    table: str,
    start: date,
    end: date,
    partitions: dict[date, PartitionInfo],
    landing_dir: Path,
    skip: set[date] | None = None,
) -> list[GateFailure]:
    """A required table needs a non-empty partition for every day in the range
    (the days in ``skip`` are not checked)."""
    faults = []
    day = start
    while day <= end:
        info = partitions.get(day)
        if skip and day in skip:
            pass
        elif info is None:
            folder = (landing_dir / table / f"dt={day.isoformat()}").as_posix()
            faults.append(
                GateFailure(
                    table=table,
                    partition_date=day,
                    kind="missing_partition",
                    expectation=ROW_COUNT,
                    column=None,
                    message=(
                        f"required partition is missing: no data files in {folder} "
                        "(validation.required_tables)"
                    ),
                )
            )
        elif info.rows == 0 and not is_declared_empty(landing_dir, table, day):
            faults.append(
                GateFailure(
                    table=table,
                    partition_date=day,
                    kind="empty_partition",
                    expectation=ROW_COUNT,
                    column=None,
                    message=(
                        f"required partition is empty: 0 rows in {len(info.files)} "
                        f"file(s) ({', '.join(info.files)})"
                    ),
                )
            )
        day = date.fromordinal(day.toordinal() + 1)
    return faults


def empty_contract_table(contract: TableContract) -> pa.Table:
    """A table with the contract's columns and no rows."""
    return contract.schema.empty_table()
