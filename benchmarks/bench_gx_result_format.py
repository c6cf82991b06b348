"""The GX gates with result format BASIC (what they use) against SUMMARY.

SUMMARY adds per-value counts of the unexpected values to every expectation's
result, so GX builds and resolves more metrics per expectation; the gates read
only the unexpected count and up to 20 unexpected values, which BASIC gives.

Point ``--home`` at a home whose nightly ran for ``--date`` (a finished ``loopline
demo``; only read). Its warehouse and GX project are copied to a scratch home
whose landing directory is the original's, and both gates of that night (the
landing gate and the marts gate) run there ``--rounds`` times each way,
alternating which goes first. Prints each way's median seconds per gate, the
ratio, and whether both ways stored the same results (verdicts, counts,
example values and observed values).

Run: ``.venv/bin/python benchmarks/bench_gx_result_format.py --home DIR --date D
[--rounds 3]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import ml.data.validation.context as gx_context
from ml.config.settings import Settings
from ml.data.validation import validate_landing
from ml.data.validation.marts_gate import validate_marts
from ml.storage.warehouse import connect

WAYS = {
    "BASIC": {"result_format": "BASIC", "partial_unexpected_count": 20},
    "SUMMARY": {"result_format": "SUMMARY", "partial_unexpected_count": 20},
}


def _scratch(home: Path, scratch: Path) -> Settings:
    source = Settings(home=home)
    settings = Settings(home=scratch)
    shutil.copyfile(source.warehouse_path, settings.warehouse_path)
    if source.gx_dir.is_dir():
        shutil.copytree(source.gx_dir, settings.gx_dir)
    settings.landing_dir.symlink_to(source.landing_dir)
    return settings


def _results(settings: Settings, day: date) -> list[tuple[Any, ...]]:
    """The night's stored verdicts, as the gates wrote them."""
    with connect(settings.warehouse_path, read_only=True) as con:
        return con.execute(
            "select table_name, partition_date, expectation_type, column_name, "
            "success, element_count, unexpected_count, example_values, "
            "observed_value from ops.validation_results where run_date = ? "
            "order by all",
            [day],
        ).fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--date", type=date.fromisoformat, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    gates = {
        "landing": lambda s: validate_landing(s, args.date, data_docs=False),
        "marts": lambda s: validate_marts(s, args.date, data_docs=False),
    }
    seconds = {(way, gate): [] for way in WAYS for gate in gates}
    verdicts: dict[str, list[tuple[Any, ...]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        settings = _scratch(args.home, Path(scratch))
        for gate in gates.values():  # warm-up: imports, GX context, suites
            gate(settings)
        for round_ in range(args.rounds):
            order = list(WAYS) if round_ % 2 == 0 else list(reversed(WAYS))
            for way in order:
                gx_context.RESULT_FORMAT = WAYS[way]
                for name, gate in gates.items():
                    began = time.perf_counter()
                    gate(settings)
                    seconds[(way, name)].append(time.perf_counter() - began)
                verdicts[way] = _results(settings, args.date)
                times = ", ".join(
                    f"{name} {seconds[(way, name)][-1]:.3f} s" for name in gates
                )
                print(f"  round {round_ + 1} {way}: {times}", flush=True)
    for name in gates:
        basic = statistics.median(seconds[("BASIC", name)])
        summary = statistics.median(seconds[("SUMMARY", name)])
        print(
            f"{name} gate: SUMMARY {summary:.3f} s, BASIC {basic:.3f} s "
            f"(median of {args.rounds}): {summary / basic:.2f}x"
        )
    same = verdicts["BASIC"] == verdicts["SUMMARY"]
    print(
        f"same stored results ({len(verdicts['BASIC'])} rows) both ways: "
        f"{'yes' if same else 'NO'}"
    )
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
