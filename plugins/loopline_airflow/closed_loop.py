"""The closed loop, one simulated day at a time, through the real DAGs in-process.

Each day ``d``:

1. the simulated world lives through ``d``: it reads the action queues exported the
   night before, contacts those customers, and lands the day's data (transactions,
   customers, tickets, action results, review decisions);
2. ``loopline_nightly`` runs for ``d`` (gate, dbt, gate, score, decide, exports);
3. ``loopline_outcomes`` runs for ``d`` (outcome join, drift, policy learning,
   retrain check) and emits the ``retrain_requested`` asset on a breach;
4. when a new ``retrain_requested`` event was recorded in Airflow's metadata,
   ``loopline_retrain`` runs with that event's extra (day, reasons, tags) — what the
   scheduler does for an asset-scheduled DAG, done here in-process because
   ``dag.test()`` has no scheduler.

Steps 2 to 4 hold the warehouse open (:func:`loopline_airflow.runner.hold_warehouse`):
every task's connection is a cursor of one DuckDB instance, checkpointed once when
the day's runs are done (``seconds["checkpoint"]``).

:func:`run_loop` calls ``on_day`` after every day with the day's
:class:`LoopDay`, so a caller can print a status line or draw a progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

from loopline_airflow.runner import (
    DagRunOutcome,
    ensure_metadata,
    hold_warehouse,
    run_dag,
)
from ml.config.settings import Settings

RETRAIN_ASSET_NAME = "retrain_requested"


@dataclass
class LoopDay:
    """What happened on one simulated day."""

    day: date
    seconds: dict[str, float]
    nightly: DagRunOutcome
    outcomes: DagRunOutcome | None
    retrain: DagRunOutcome | None
    retrain_request: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        runs = [self.nightly, self.outcomes, self.retrain]
        return all(r is None or r.ok for r in runs) and self.outcomes is not None


def retrain_requests(after_id: int = 0) -> list[tuple[int, dict[str, Any]]]:
    """``retrain_requested`` asset events recorded after ``after_id`` (id, extra)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.id, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == RETRAIN_ASSET_NAME, AssetEvent.id > after_id)
            .order_by(AssetEvent.id)
        ).all()
    # the columns' Python types: Airflow's models leave them untyped (object)
    typed = cast("list[tuple[int, dict[str, Any] | None]]", rows)
    return [(int(i), dict(extra or {})) for i, extra in typed]


def _last_request_id() -> int:
    found = retrain_requests(0)
    return found[-1][0] if found else 0


def run_day(settings: Settings, day: date, seen: int) -> tuple[LoopDay, int]:
    """Simulate ``day`` and run the DAGs for it; ``seen`` is the id of the last
    retrain request already served. Returns the day and the new ``seen``."""
    from ml.sim import simulate_next_day
    from ml.sim.world import next_sim_day

    expected = next_sim_day(settings)
    if expected != day:
        raise ValueError(f"the world's next day is {expected}, not {day}")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    simulate_next_day(settings)
    seconds["simulate"] = time.perf_counter() - started
    outcomes = retrain = request = None
    with hold_warehouse(settings):
        nightly = run_dag(settings, "loopline_nightly", day)
        seconds["nightly"] = nightly.seconds
        if nightly.ok:
            outcomes = run_dag(settings, "loopline_outcomes", day)
            seconds["outcomes"] = outcomes.seconds
            fresh = retrain_requests(seen)
            if fresh:
                seen, request = fresh[-1]
                retrain = run_dag(
                    settings,
                    "loopline_retrain",
                    day,
                    conf={"trigger": request, "as_of": request.get("day")},
                )
                seconds["retrain"] = retrain.seconds
        closing = time.perf_counter()
    # the day's writes, checkpointed as the hold closes
    seconds["checkpoint"] = time.perf_counter() - closing
    return LoopDay(day, seconds, nightly, outcomes, retrain, request), seen


def run_loop(
    settings: Settings,
    days: Iterable[date],
    on_day: Callable[[LoopDay], None] | None = None,
    stop_on_failure: bool = True,
) -> list[LoopDay]:
    """Run :func:`run_day` for each of ``days`` in order."""
    ensure_metadata(settings)
    seen = _last_request_id()
    results: list[LoopDay] = []
    for day in days:
        result, seen = run_day(settings, day, seen)
        results.append(result)
        if on_day is not None:
            on_day(result)
        if stop_on_failure and not result.ok:
            break
    return results
