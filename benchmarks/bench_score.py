"""Benchmark of ``ml.prediction.score.score`` against a raw ``predict_proba``.

In a fresh temporary ``LOOPLINE_HOME``: trains a champion on a small synthetic
world, then replaces ``marts.customer_features`` with one snapshot of ``--rows``
rows and measures

* ``score()``: DuckDB -> Arrow batches -> model -> ``marts.scores`` (one transaction),
* raw ``predict_proba`` on the same matrix already in memory,

side by side with their ratio, and the peak Python memory of ``score()``
(tracemalloc) at 250k rows and at ``--rows``, plus the process max RSS.

Run: ``.venv/bin/python benchmarks/bench_score.py [--rows N] [--reduced]``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from datetime import date
from pathlib import Path

from threadpoolctl import threadpool_limits

from ml.config.model import load_model_config, resolve_threads
from ml.config.settings import Settings
from ml.prediction.examples import prepare_features
from ml.prediction.registry import load_model
from ml.prediction.score import score
from ml.prediction.train import train
from ml.sim.marts import write_synthetic_marts
from ml.storage.warehouse import connect

RUN_DATE = date(2024, 6, 1)


def _snapshot(settings: Settings, rows: int) -> None:
    write_synthetic_marts(settings.warehouse_path, rows, RUN_DATE, 1, seed=9)


def main() -> None:
    """Parse arguments, train, time both paths, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reduced", action="store_true", help="100k / 25k rows")
    args = parser.parse_args()
    rows = 100_000 if args.reduced else args.rows
    small = 25_000 if args.reduced else 250_000
    config = load_model_config()
    config.split.test_days = 14
    config.split.validation_days = 14
    config.split.gap_days = 7
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        home = Path(tmp)
        (home / "loopline.yml").write_text("horizon_days: 7\n")
        settings = Settings(home=home, config_file=home / "loopline.yml")
        write_synthetic_marts(
            settings.warehouse_path, 1500, date(2024, 1, 1), 150, 1, 7
        )
        result = train(settings, date(2024, 5, 29), config, gate=False)
        from ml.prediction.registry import promote

        promote(settings, result.model_version, "benchmark", config)

        peaks: dict[int, float] = {}
        for n in (small, rows):
            _snapshot(settings, n)
            tracemalloc.start()
            score(settings, RUN_DATE, config=config)
            peaks[n] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()

        began = time.perf_counter()
        summary = score(settings, RUN_DATE, config=config)
        scored_s = time.perf_counter() - began

        model = load_model(settings, "champion", config=config)
        assert model is not None
        with connect(settings.warehouse_path, read_only=True) as con:
            frame = con.execute(
                "select * from marts.customer_features where as_of_date = ?", [RUN_DATE]
            ).df()
        numeric = [c for c in model.input_columns if model.input_types[c] != "string"]
        categorical = [c for c in model.input_columns if c not in numeric]
        matrix = prepare_features(frame, numeric, categorical)[model.input_columns]
        with threadpool_limits(limits=resolve_threads(config, settings.threads)):
            began = time.perf_counter()
            model.model.predict_proba(matrix)
            raw_s = time.perf_counter() - began
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows scored: {summary.scored}")
    print(f"score() DuckDB -> marts.scores: {scored_s:.2f} s")
    print(f"raw predict_proba (in memory):  {raw_s:.2f} s")
    print(f"ratio score/raw: {scored_s / raw_s:.2f}")
    for n, peak in peaks.items():
        print(f"peak traced memory of score() at {n} rows: {peak:.1f} MiB")
    print(f"process max RSS: {max_rss:.0f} MiB")


if __name__ == "__main__":
    main()
