"""Writing a night's decisions: DuckDB reading the pandas frame, or an Arrow table.

``ml.storage.warehouse.replace_run_date`` writes every per-night table of the
decision layer (a million customers: about 1.4M decisions a night). DuckDB scans
a pandas frame's text columns one value at a time, and an Arrow table as it is.
Builds a frame shaped like ``marts.decisions`` (``--rows`` rows, text columns in
pandas' default string dtype, as ``ml.decision.engine`` builds them), then, side
by side in one run on a warehouse file, inserts it as the frame itself and
through ``replace_run_date`` (which hands DuckDB an Arrow table), checks both
wrote the same rows, and prints the best of ``--repeats`` and the ratio.

Run: ``.venv/bin/python benchmarks/bench_replace_run_date.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ml.contract.tables import ACTIONS, DECISIONS, DECISIONS_TABLE
from ml.storage.warehouse import replace_run_date

RUN_DATE = date(2026, 1, 4)


def decisions_frame(rows: int) -> pd.DataFrame:
    """A seeded frame with the columns of ``marts.decisions`` but ``run_date``."""
    rng = np.random.default_rng(7)
    text = {
        "decision_id": [f"dec_{i:020x}" for i in range(rows)],
        "customer_id": [f"C{i:08d}" for i in range(rows)],
        "arm": rng.choice(["none", "treated", "holdout", "review"], rows).tolist(),
        "action": rng.choice(list(ACTIONS), rows).tolist(),
        "reason_codes": rng.choice(["ev_best", "budget", "holdout"], rows).tolist(),
        "policy_version": ["policy-1"] * rows,
        "model_version": ["7"] * rows,
        "policy_mode": ["model"] * rows,
    }
    names = ["p_churn", "value_at_risk", *(f"ev_{a}" for a in ACTIONS), "chosen_ev"]
    numbers = {name: rng.random(rows) for name in names}
    frame = pd.DataFrame({**{k: pd.Series(v, dtype="str") for k, v in text.items()}})
    for name, values in numbers.items():
        frame[name] = values
    return frame


def best_of(repeats: int, work: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_391_431)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    frame = decisions_frame(args.rows)

    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(str(Path(tmp) / "warehouse.duckdb"))
        con.execute("create schema marts")
        assert DECISIONS.ddl is not None
        con.execute(DECISIONS.ddl)

        def as_frame() -> None:
            con.execute("begin transaction")
            con.execute(f"delete from {DECISIONS_TABLE} where run_date = ?", [RUN_DATE])
            con.register("_staged", frame)
            con.execute(
                f"insert into {DECISIONS_TABLE} by name "
                "select *, $d as run_date from _staged",
                {"d": RUN_DATE},
            )
            con.unregister("_staged")
            con.execute("commit")

        def as_arrow() -> None:
            con.execute("begin transaction")
            replace_run_date(con, DECISIONS_TABLE, RUN_DATE, frame)
            con.execute("commit")

        order = "order by decision_id"
        frame_s = best_of(args.repeats, as_frame)
        by_frame = con.sql(f"select * from {DECISIONS_TABLE} {order}").to_arrow_table()
        arrow_s = best_of(args.repeats, as_arrow)
        by_arrow = con.sql(f"select * from {DECISIONS_TABLE} {order}").to_arrow_table()
        con.close()
    if not by_frame.equals(by_arrow) or by_arrow.num_rows != args.rows:
        raise SystemExit("the two writes left different rows")
    print(f"{args.rows:,} decisions into {DECISIONS_TABLE} (best of {args.repeats})")
    print(f"  the pandas frame          {frame_s:6.2f} s")
    print(f"  replace_run_date (Arrow)  {arrow_s:6.2f} s")
    print(f"  ratio                     {frame_s / arrow_s:6.2f}x")


if __name__ == "__main__":
    main()
