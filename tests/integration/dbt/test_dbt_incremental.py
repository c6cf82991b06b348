"""Two paths, the same rows: bulk builds and nightly builds agree, and reruns too."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest

import ml.data.dbt as dbt_module
from ml.config.settings import Settings
from ml.data.dbt import dbt_build, dbt_vars
from ml.storage.warehouse import connect
from tests.integration.dbt.conftest import (
    BUILD_END,
    BUILD_START,
    HORIZON_DAYS,
    MARTS,
    NIGHTLY_START,
    BuiltWorld,
    make_settings,
    read_rows,
    snapshot,
)


@pytest.mark.parametrize("table", MARTS)
def test_nightly_builds_equal_one_bulk_build(
    bulk: BuiltWorld, nightly: BuiltWorld, table: str
) -> None:
    bulk_rows = read_rows(bulk.settings, table)
    nightly_rows = nightly.before_rerun[table]
    assert bulk_rows, table
    assert len(nightly_rows) == len(bulk_rows)
    missing = set(bulk_rows) - set(nightly_rows)
    extra = set(nightly_rows) - set(bulk_rows)
    assert not missing and not extra, (sorted(missing)[:3], sorted(extra)[:3])
    assert nightly_rows == bulk_rows


@pytest.mark.parametrize("table", MARTS)
def test_a_rebuild_in_chunks_equals_one_bulk_build(
    bulk: BuiltWorld, chunked: BuiltWorld, table: str
) -> None:
    result = chunked.results[0]
    # 46 as_of dates, 15 per invocation: four builds, the first a full refresh
    assert sum(1 for n in result.nodes if n.name == "customer_features") == 4
    assert result.full_refresh and (result.start, result.end) == (
        BUILD_START,
        BUILD_END,
    )
    assert read_rows(chunked.settings, table) == read_rows(bulk.settings, table)


def test_the_nightly_range_covers_new_rows(nightly: BuiltWorld) -> None:
    features = nightly.before_rerun["customer_features"]
    nightly_days = {row[1] for row in features if row[1] >= NIGHTLY_START}
    assert nightly_days == {
        NIGHTLY_START + timedelta(days=i)
        for i in range((BUILD_END - NIGHTLY_START).days + 1)
    }


def test_dim_customers_agrees_after_the_last_night(
    bulk: BuiltWorld, nightly: BuiltWorld
) -> None:
    assert nightly.before_rerun["dim_customers"] == read_rows(
        bulk.settings, "dim_customers"
    )


def test_labels_appear_only_once_the_horizon_has_passed(
    bulk: BuiltWorld, nightly: BuiltWorld
) -> None:
    for run_date, latest in nightly.latest_label_after.items():
        assert latest == run_date - timedelta(days=HORIZON_DAYS), run_date
    labels = read_rows(bulk.settings, "churn_labels")
    assert max(row[1] for row in labels) == BUILD_END - timedelta(days=HORIZON_DAYS)
    assert min(row[1] for row in labels) == BUILD_START
    features = read_rows(
        bulk.settings,
        "customer_features",
        f"as_of_date > date '{BUILD_END.isoformat()}' - {HORIZON_DAYS}",
    )
    assert features  # the latest snapshots exist, unlabelled
    labelled = {(row[0], row[1]) for row in labels}
    assert not labelled & {(row[0], row[1]) for row in features}


def test_a_build_inside_a_hold_writes_through_the_held_instance(
    nightly: BuiltWorld,
) -> None:
    """The nights built while the warehouse was held open (as the closed loop
    holds it) are among those equal to the bulk build above; the held connection
    saw each night's rows as soon as dbt had written them."""
    assert len(nightly.held_nights) >= 2
    features = nightly.before_rerun["customer_features"]
    for day in nightly.held_nights:
        written = sum(1 for row in features if row[1] == day)
        assert written > 0
        assert nightly.rows_seen_held[day] == written


def test_rerunning_a_night_gives_identical_rows(nightly: BuiltWorld) -> None:
    assert snapshot(nightly.settings) == nightly.before_rerun
    rerun = nightly.results[-1]
    assert rerun.start == rerun.end == BUILD_END
    assert not rerun.full_refresh


def test_weekly_snapshots_are_the_daily_ones_on_their_dates(
    bulk: BuiltWorld, weekly: BuiltWorld
) -> None:
    features = read_rows(weekly.settings, "customer_features")
    dates = sorted({row[1] for row in features})
    assert dates == [
        BUILD_START + timedelta(days=7 * i)
        for i in range((BUILD_END - BUILD_START).days // 7 + 1)
    ]
    on_dates = "as_of_date in ({})".format(
        ", ".join(f"date '{day.isoformat()}'" for day in dates)
    )
    assert features == read_rows(bulk.settings, "customer_features", on_dates)
    labels = read_rows(weekly.settings, "churn_labels")
    assert labels == read_rows(bulk.settings, "churn_labels", on_dates)
    assert {row[1] for row in labels} == {
        day for day in dates if day + timedelta(days=HORIZON_DAYS) <= BUILD_END
    }
    # the chunks built every day's partitions, the days between chunks included
    assert len(weekly.results[0].nodes) > len(bulk.results[0].nodes)
    assert read_rows(weekly.settings, "fct_transactions") == read_rows(
        bulk.settings, "fct_transactions"
    )


def _states(built: BuiltWorld, day: object) -> dict[str, tuple[object, ...]]:
    with connect(built.settings.warehouse_path, read_only=True) as con:
        rows = con.execute(
            "select * exclude (state_date) from intermediate.int_customer_states "
            "where state_date = ? order by customer_id",
            [day],
        ).fetchall()
    return {str(row[0]): row for row in rows}


def test_the_carried_state_equals_the_state_from_the_look_back(
    bulk: BuiltWorld, nightly: BuiltWorld
) -> None:
    """Five nights of running sums, lists and latest versions carried forward end
    where one computation from the look-back ends (the bulk build's last date)."""
    from_look_back = _states(bulk, BUILD_END)
    carried = _states(nightly, BUILD_END)
    assert len(from_look_back) > 20
    # the carried state also keeps customers the look-back no longer sees
    assert set(from_look_back) <= set(carried)
    differing = [
        (row, carried[customer])
        for customer, row in from_look_back.items()
        if carried[customer] != row
    ]
    assert not differing, differing[:2]
    with connect(nightly.settings.warehouse_path, read_only=True) as con:
        listed, counted = con.execute(
            "select count(purchase_days_listed), sum(purchase_days_90d) "
            "from intermediate.int_customer_states where state_date = ?",
            [BUILD_END],
        ).fetchall()[0]
    assert listed > 0 and counted > 0  # the lists and the first-arrival counts


def _state_dates(settings: Settings) -> set[date]:
    with connect(settings.warehouse_path, read_only=True) as con:
        return {
            row[0]
            for row in con.execute(
                "select distinct state_date from intermediate.int_customer_states"
            ).fetchall()
        }


def test_states_of_fewer_than_twice_the_kept_days_are_all_kept(
    nightly: BuiltWorld,
) -> None:
    kept = _state_dates(nightly.settings)
    assert max(kept) == BUILD_END
    # six days of states (state_keep_days 7): none is old enough to be pruned
    assert min(kept) == NIGHTLY_START - timedelta(days=1)  # the bulk build's last
    assert len(kept) == (BUILD_END - NIGHTLY_START).days + 2


def test_states_are_pruned_in_batches(
    nightly: BuiltWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With state_keep_days 2, a night deletes the states older than two days once
    the oldest is more than four days old, and leaves them otherwise; the nights
    after a prune still carry the state forward."""
    home = tmp_path / "home"
    shutil.copytree(nightly.settings.home, home)
    settings = make_settings(home)
    with_keep = {**dbt_vars(settings), "state_keep_days": 2}
    monkeypatch.setattr(dbt_module, "dbt_vars", lambda _: with_keep)
    kept: list[set[date]] = []
    for offset in range(1, 5):
        day = BUILD_END + timedelta(days=offset)
        result = dbt_build(settings, day, day)
        assert result.node("int_customer_states").status == "success"
        kept.append(_state_dates(settings))
    days = [BUILD_END + timedelta(days=i) for i in range(1, 5)]
    # night 1 prunes (the oldest, 02-24, is more than four days old): 3 days left
    assert kept[0] == {days[0] - timedelta(days=i) for i in range(3)}
    # nights 2 and 3 add a day each and delete nothing
    assert kept[1] == kept[0] | {days[1]}
    assert kept[2] == kept[1] | {days[2]}
    # night 4 prunes again, down to the last three days
    assert kept[3] == {days[3] - timedelta(days=i) for i in range(3)}
    with connect(settings.warehouse_path, read_only=True) as con:
        counts = con.execute(
            "select state_date, count(*) from intermediate.int_customer_states "
            "group by state_date order by state_date"
        ).fetchall()
    # every kept night carries every known customer forward
    assert len({n for _, n in counts}) == 1 and counts[0][1] > 20
