"""Benchmark of ``publish``: writing the analyst copy from a demo-sized warehouse.

Point it at a ``LOOPLINE_HOME`` whose warehouse holds the marts (for the demo's
size: ``loopline simulate --customers 20000 --days 365`` then ``loopline rebuild``
over the same range, or a finished ``loopline demo``). With ``--loop-days N`` it
first adds, where they are missing, the rows a closed loop of N nights leaves
behind: one ``marts.scores`` and one ``marts.decisions`` row per active customer
and night, and one ``marts.decision_outcomes`` row per decision (the three tables
that grow with the loop; values are placeholders, sizes are real). Then it times
``ml.publish.publish_analytics`` ``--repeat`` times and prints the warehouse and
copy sizes, the rows copied, and the seconds per publish.

Run: ``.venv/bin/python benchmarks/bench_publish.py --home DIR [--loop-days 120]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path

from ml.config import Settings
from ml.decide import DDL as DECISIONS_DDL
from ml.outcomes import DDL as OUTCOMES_DDL
from ml.publish import publish_analytics
from ml.score import SCORES_DDL
from ml.warehouse import connect, table_exists


def add_loop_rows(settings: Settings, days: int) -> dict[str, int]:
    """Add placeholder loop rows for the last ``days`` feature snapshots to the
    loop tables that are missing; returns the rows added per table."""
    added: dict[str, int] = {}
    with connect(settings.warehouse_path) as con:
        if table_exists(con, "marts", "decisions"):
            return added
        con.execute(DECISIONS_DDL)
        con.execute(SCORES_DDL)
        con.execute(OUTCOMES_DDL)
        recent = (
            "from marts.customer_features where as_of_date > "
            f"(select max(as_of_date) from marts.customer_features) - {days}"
        )
        con.execute(
            "insert into marts.scores by name select as_of_date as run_date, "
            "customer_id, (hash(customer_id, as_of_date) % 1000) / 1000.0 "
            f"as p_churn, '1' as model_version, 'champion' as model_alias {recent}"
        )
        con.execute(
            "insert into marts.decisions by name select "
            "md5(customer_id || as_of_date)[:16] as decision_id, "
            "as_of_date as run_date, customer_id, "
            "case when hash(customer_id) % 20 = 0 then 'treated' else 'none' end "
            "as arm, 'email' as action, 0.3 as p_churn, spend_90d / 3 "
            "as value_at_risk, 0.1 as ev_call, 0.2 as ev_voucher, 0.3 as ev_email, "
            "0.3 as chosen_ev, 'ev' as reason_codes, 'p' as policy_version, "
            f"'1' as model_version, 'model' as policy_mode {recent}"
        )
        con.execute(
            "insert into marts.decision_outcomes by name select decision_id, "
            "run_date, run_date + 30 as matured_on, customer_id, arm, action, "
            "p_churn, value_at_risk, chosen_ev as expected_ev, 0.0 as cost, "
            "policy_mode, model_version, 'basic' as segment, "
            "hash(decision_id) % 3 > 0 as retained, 10.0 as realized_spend, "
            "false as overridden from marts.decisions"
        )
        for table in ("scores", "decisions", "decision_outcomes"):
            row = con.execute(f"select count(*) from marts.{table}").fetchone()
            added[table] = int(row[0]) if row else 0
    return added


def main() -> None:
    """Parse arguments, optionally grow the loop tables, time the publishes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--loop-days", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    settings = Settings(home=args.home)
    if args.loop_days:
        started = time.perf_counter()
        added = add_loop_rows(settings, args.loop_days)
        if added:
            print(f"added loop rows {added} in {time.perf_counter() - started:.1f} s")
    seconds = []
    summary = None
    for _ in range(args.repeat):
        summary = publish_analytics(settings, date.today(), "bench_publish")
        seconds.append(summary.elapsed_seconds)
    assert summary is not None
    mib = 1024 * 1024
    warehouse = settings.warehouse_path.stat().st_size / mib
    print(f"warehouse {settings.warehouse_path}: {warehouse:,.0f} MiB")
    print(f"analyst copy {summary.path}: {summary.size_bytes / mib:,.0f} MiB")
    largest = sorted(summary.tables.items(), key=lambda kv: -kv[1])[:6]
    print(
        f"{len(summary.tables)} tables, {sum(summary.tables.values()):,} rows; "
        "largest: " + ", ".join(f"{name} {rows:,}" for name, rows in largest)
    )
    print(
        f"publish: {', '.join(f'{s:.2f}' for s in seconds)} s "
        f"(median {statistics.median(seconds):.2f} s)"
    )


if __name__ == "__main__":
    main()
