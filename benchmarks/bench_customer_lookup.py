"""The landing gate's "known customer" rule: ``Series.isin`` against
``ml.data.validation.rules.CustomerRegistry.known`` (index lookups).

The gate checks every landed row that names a customer against the ids in
``raw.customers``, once per table and night. That set grows with history, so the
lookup must cost next to nothing per known id. Builds a registry of ``--known`` ids
(the default is about the full demo's world after a year and four months) and a
day's ``--rows`` rows, times both side by side, checks they agree, and prints the
ratio.

Then the registry as the gate builds it from a DuckDB ``raw.customers`` of the
same ids (:func:`ml.data.validation.rules.customer_registry`): every known customer
loaded, against only the ids the day's rows refer to, each followed by the lookup;
both must agree.

Run: ``.venv/bin/python benchmarks/bench_customer_lookup.py [--known N] [--rows N]``
(a night at a million customers: ``--known 1400000 --rows 115000``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from ml.data.validation.rules import CustomerRegistry, customer_registry


def best_of(repeats: int, work: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    """The fastest of ``repeats`` calls of ``work`` and its result."""
    best, result = float("inf"), np.array([])
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--known", type=int, default=50_000)
    parser.add_argument("--rows", type=int, default=3_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    known = pd.Index(np.array([f"C{i:08d}" for i in range(1, args.known + 1)], object))
    # A few rows name customers the warehouse does not know.
    ids = pd.Series(
        np.where(
            rng.random(args.rows) < 0.01,
            "C99999999",
            rng.choice(known.to_numpy(), args.rows),
        )
    )
    days = np.full(args.rows, np.datetime64("2026-01-01", "us"))
    no_new = pd.Series(dtype="datetime64[us]")
    values = known.to_numpy()

    def by_registry() -> np.ndarray:
        # A new registry each time, as each gate run builds one: the time includes
        # building the index's lookup table.
        registry = CustomerRegistry(in_raw=pd.Index(values), first_day=no_new)
        return registry.known(ids, days)

    isin_s, by_isin = best_of(args.repeats, lambda: ids.isin(known).to_numpy(bool))
    index_s, by_index = best_of(args.repeats, by_registry)
    if not np.array_equal(by_isin, by_index):
        raise SystemExit("the two lookups disagree")
    print(f"{args.rows:,} rows against {args.known:,} known customers")
    print(f"  Series.isin               {isin_s * 1000:8.1f} ms")
    print(f"  CustomerRegistry.known    {index_s * 1000:8.1f} ms (a new registry)")
    print(f"  ratio                     {isin_s / index_s:8.1f}x")

    with duckdb.connect() as con:
        con.execute("create schema raw")
        con.register("_known", pa.table({"customer_id": pa.array(values, pa.string())}))
        con.execute(
            "create table raw.customers as select customer_id, "
            "date '2025-01-01' as partition_date from _known"
        )
        con.unregister("_known")
        referred = pa.chunked_array([pa.array(ids.to_numpy(), pa.string())])

        def whole_base() -> np.ndarray:
            return customer_registry(con, [], None, None).known(ids, days)

        def referred_only() -> np.ndarray:
            return customer_registry(con, [], None, None, referred).known(ids, days)

        whole_s, by_whole = best_of(args.repeats, whole_base)
        referred_s, by_referred = best_of(args.repeats, referred_only)
    agree = np.array_equal(by_whole, by_index) and np.array_equal(by_referred, by_index)
    if not agree:
        raise SystemExit("the registries disagree")
    print("customer_registry from raw.customers, then known()")
    print(f"  every known customer      {whole_s * 1000:8.1f} ms")
    print(f"  the rows' ids only        {referred_s * 1000:8.1f} ms")
    print(f"  ratio                     {whole_s / referred_s:8.1f}x")


if __name__ == "__main__":
    main()
