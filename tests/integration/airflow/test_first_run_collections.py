"""A process's first DAG run holds off the garbage collector's full collections.

``loopline_airflow.runner._full_collections_deferred`` wraps every in-process
run (``run_dag``). The first time in a process it sets the old generation's
threshold out of reach and puts CPython's thresholds back when the run ends,
also when the run raises; every later run leaves the collector as it is. The
allocation below (long-lived objects, as a first run's imports make them) makes
the collector run full collections under its own thresholds, and none inside
the first block.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest
from loopline_airflow import runner

LONG_LIVED = 1_500_000


def full_collections() -> int:
    return int(gc.get_stats()[2]["collections"])


def allocate_long_lived() -> list[list[int]]:
    """Tracked containers that stay alive: the old generation grows by a lot."""
    return [[i] for i in range(LONG_LIVED)]


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As in a process that has begun no DAG run yet, with CPython's thresholds."""
    monkeypatch.setattr(runner, "_FIRST_RUN_BEGUN", threading.Event())
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    gc.collect()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def test_the_allocation_makes_full_collections_by_default(fresh_process: None) -> None:
    before = full_collections()
    kept = allocate_long_lived()
    assert full_collections() > before
    del kept


def test_the_first_run_makes_none_and_the_thresholds_come_back(
    fresh_process: None,
) -> None:
    before = full_collections()
    with runner._full_collections_deferred():
        assert gc.get_threshold() == (700, 10, runner.NO_FULL_COLLECTIONS)
        kept = allocate_long_lived()
        assert full_collections() == before
    assert gc.get_threshold() == (700, 10, 10)
    del kept
    # the next full collection comes with the restored thresholds
    more = allocate_long_lived()
    assert full_collections() > before
    del more


def test_later_runs_collect_as_usual(fresh_process: None) -> None:
    with runner._full_collections_deferred():
        pass
    before = full_collections()
    with runner._full_collections_deferred():
        assert gc.get_threshold() == (700, 10, 10)
        kept = allocate_long_lived()
    assert full_collections() > before
    del kept


def test_a_run_that_raises_puts_the_thresholds_back(fresh_process: None) -> None:
    with pytest.raises(RuntimeError), runner._full_collections_deferred():
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == (700, 10, 10)
    assert runner._FIRST_RUN_BEGUN.is_set()
