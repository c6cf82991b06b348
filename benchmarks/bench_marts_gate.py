"""What the marts gate's suite costs on a frame as DuckDB's integers arrive (int32)
against the same frame with every integer column widened to int64 (``gx_frame``).

Reads the ``marts.customer_features`` snapshot of ``--date`` from the warehouse of
``--home`` (read-only), builds the suite as ``validate_marts`` does (yesterday's
row count included) and validates both frames ``--rounds`` times in an ephemeral
GX context, alternating which goes first. Prints the median of each, their ratio,
and whether every expectation gave the same verdict and unexpected count on both.

Run: ``.venv/bin/python benchmarks/bench_marts_gate.py --home DIR --date D
[--rounds 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from expectations.customer_features import build_suite
from ml.config.settings import Settings
from ml.data.validation.marts_gate import gx_frame


def _verdicts(result: Any) -> list[tuple[str, str | None, bool, Any]]:
    """Per expectation: its type, column, success and unexpected count."""
    return [
        (
            r.expectation_config.type,
            r.expectation_config.kwargs.get("column"),
            bool(r.success),
            (r.result or {}).get("unexpected_count"),
        )
        for r in result.results
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--date", type=date.fromisoformat, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import great_expectations as gx

    settings = Settings(home=args.home)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        snapshot = con.sql(
            "select * from marts.customer_features where as_of_date = ?",
            params=[args.date],
        ).to_arrow_table()
        row = con.execute(
            "select count(*) from marts.customer_features where as_of_date = ?",
            [args.date - timedelta(days=1)],
        ).fetchone()
    previous = int(row[0]) if row else 0
    narrow = [f.name for f in snapshot.schema if str(f.type) in ("int32", "int16")]
    print(
        f"{snapshot.num_rows:,} rows, {snapshot.num_columns} columns, "
        f"{len(narrow)} of them narrower integers than int64"
    )
    context = gx.get_context(mode="ephemeral")
    asset = context.data_sources.add_pandas("marts").add_dataframe_asset("cf")
    batch = asset.add_batch_definition_whole_dataframe("snapshot")
    suite = context.suites.add(build_suite(previous_row_count=previous or None))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="bench", data=batch, suite=suite)
    )
    frames = {
        "as read": lambda: snapshot.to_pandas(),
        "int64": lambda: gx_frame(snapshot),
    }
    seconds: dict[str, list[float]] = {name: [] for name in frames}
    verdicts: dict[str, Any] = {}
    for index in range(args.rounds):
        names = list(frames) if index % 2 == 0 else list(frames)[::-1]
        for name in names:
            began = time.perf_counter()
            frame = frames[name]()
            result = definition.run(
                batch_parameters={"dataframe": frame},
                result_format={
                    "result_format": "SUMMARY",
                    "partial_unexpected_count": 20,
                },
            )
            seconds[name].append(time.perf_counter() - began)
            verdicts[name] = _verdicts(result)
            print(f"  round {index + 1} {name:8s} {seconds[name][-1]:6.2f} s")
    read, wide = (statistics.median(seconds[name]) for name in frames)
    print(f"suite on the frame as read (median) {read:6.2f} s")
    print(f"suite on the int64 frame (median)   {wide:6.2f} s")
    print(f"ratio as read / int64               {read / wide:6.2f}x")
    same = verdicts["as read"] == verdicts["int64"]
    print(f"same verdicts and unexpected counts: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
