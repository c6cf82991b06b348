"""The simulated world: determinism, the landing contract, truth, faults, actions."""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ml.config.settings import Settings
from ml.contract.schema import ACTIONS, CHANNELS, EXPORT_COLUMNS, TABLES
from ml.sim import (
    DriftConfig,
    NoWorldError,
    SimConfig,
    WorldExistsError,
    load_sim_config,
    next_sim_day,
    simulate,
    simulate_days,
    simulate_next_day,
)
from ml.sim.sim_config import FaultConfig
from ml.storage.landing_files import (
    list_partition_dates,
    partition_dir,
    partition_files,
    read_file,
)

START = date(2024, 3, 1)
TRUTH_COLUMNS = {
    "hidden_factor",
    "response_call",
    "response_voucher",
    "response_email",
    "uplift_call",
    "uplift_voucher",
    "uplift_email",
    "churned_on",
    "disengaging_since",
    "hazard",
    "engagement",
}


def _settings(path: Path) -> Settings:
    return Settings(home=path)


def _read(settings: Settings, table: str, day: date) -> pa.Table:
    files = partition_files(settings.landing_dir, table, day)
    return pa.concat_tables([read_file(f) for f in files])


def _landing(settings: Settings) -> dict[tuple[str, date], pa.Table]:
    return {
        (table, day): _read(settings, table, day)
        for table in TABLES
        for day in list_partition_dates(settings.landing_dir, table)
    }


def _truth(settings: Settings) -> dict[str, pa.Table]:
    root = settings.truth_dir
    files = [p for p in root.rglob("*.parquet") if "state" not in p.parts]
    return {str(p.relative_to(root)): pq.read_table(p) for p in sorted(files)}


def _day_end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), datetime.min.time())


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].equals(b[key]), key


def _write_queue(path: Path, columns: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)


def _export(settings: Settings, day: date, customers: dict[str, list[int]]) -> None:
    """Write one channel queue per entry (channel -> customer numbers)."""
    folder = settings.exports_dir / f"dt={day.isoformat()}"
    for channel, numbers in customers.items():
        action = ACTIONS[CHANNELS.index(channel)]
        rows: list[list[object]] = [
            [f"{day}-{n}-{action}", f"C{n:08d}", action, 12.5, "ev", "m1", "p1"]
            for n in numbers
        ]
        _write_queue(folder / f"{channel}.csv", list(EXPORT_COLUMNS), rows)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A 2000-customer world over 60 days with default (fault-free) settings."""
    settings = _settings(tmp_path_factory.mktemp("world"))
    simulate(settings, SimConfig(n_customers=2000, seed=7), START, 60, progress=False)
    return settings


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_rows(world: Settings, tmp_path: Path) -> None:
    again = _settings(tmp_path)
    simulate(again, SimConfig(n_customers=2000, seed=7), START, 60, progress=False)
    _assert_same(_landing(world), _landing(again))
    _assert_same(_truth(world), _truth(again))


def test_different_seeds_differ(tmp_path: Path) -> None:
    a, b = _settings(tmp_path / "a"), _settings(tmp_path / "b")
    simulate(a, SimConfig(n_customers=300, seed=1), START, 3, progress=False)
    simulate(b, SimConfig(n_customers=300, seed=2), START, 3, progress=False)
    for table in ("customers", "transactions"):
        assert not _read(a, table, START).equals(_read(b, table, START))


def test_continuing_day_by_day_equals_one_call(tmp_path: Path) -> None:
    faults = FaultConfig.model_validate(
        {"late_partition": {"days": [3]}, "duplicates": {"days": [5]}}
    )
    config = SimConfig(n_customers=500, seed=11, faults=faults)
    whole, steps = _settings(tmp_path / "whole"), _settings(tmp_path / "steps")
    for settings in (whole, steps):
        # Exports for days 1 and 5 (day offsets), read on days 2 and 6.
        _export(settings, START + timedelta(1), {"phone": list(range(1, 80))})
        _export(settings, START + timedelta(5), {"email": list(range(50, 150))})
    simulate(whole, config, START, 10, progress=False)
    simulate(steps, config, START, 4, progress=False)
    assert next_sim_day(steps) == START + timedelta(4)
    simulate_days(steps, 3)
    for _ in range(3):
        simulate_next_day(steps)
    _assert_same(_landing(whole), _landing(steps))
    _assert_same(_truth(whole), _truth(steps))
    # The comparison covers queues acted on and a partition held over a call.
    assert _read(steps, "action_results", START + timedelta(2)).num_rows == 79
    assert _read(steps, "action_results", START + timedelta(6)).num_rows == 100
    faults = pq.read_table(steps.truth_dir / "faults.parquet").to_pylist()
    assert [(f["fault"], (f["day"] - START).days) for f in faults] == [
        ("late_partition", 3),
        ("duplicates", 5),
    ]


# ---------------------------------------------------------------- the contract


def test_every_partition_matches_the_contract(world: Settings) -> None:
    days = [START + timedelta(days=k) for k in range(60)]
    for table, contract in TABLES.items():
        assert list_partition_dates(world.landing_dir, table) == days
        for day in days:
            data = _read(world, table, day)
            assert data.schema.equals(contract.schema), (table, day)
            for column in contract.columns:
                if column not in contract.nullable:
                    assert data.column(column).null_count == 0, (table, day, column)
            for column, allowed in contract.allowed_values.items():
                values = set(data.column(column).to_pylist())
                assert values <= set(allowed), (table, column, values)
            keys = data.select(list(contract.key)).to_pylist()
            assert len({tuple(k.values()) for k in keys}) == len(keys), (table, day)
            if contract.event_time and data.num_rows:
                latest = pc.max(data.column(contract.event_time)).as_py()
                assert latest < _day_end(day), (table, day)


def test_first_day_holds_the_initial_base(world: Settings) -> None:
    first = _read(world, "customers", START).to_pandas()
    base = first[first["updated_at"] < datetime.combine(START, datetime.min.time())]
    assert len(base) == base["customer_id"].nunique() == 2000
    assert (base["updated_at"].dt.date == base["signup_date"]).all()
    assert (START - base["signup_date"].min()).days > 600
    assert (first["updated_at"] < _day_end(START)).all()
    later = _read(world, "customers", START + timedelta(days=10))
    assert later.num_rows > 0
    assert min(later.column("signup_date").to_pylist()) < START  # attribute changes


def test_value_differs_between_customers(world: Settings) -> None:
    truth = pq.read_table(world.truth_dir / "customers.parquet").to_pandas()
    assert truth["spend_level"].quantile(0.9) > 3 * truth["spend_level"].quantile(0.1)
    assert truth["purchase_rate"].quantile(0.9) > 3 * truth["purchase_rate"].quantile(
        0.1
    )


def test_weekly_seasonality(world: Settings) -> None:
    counts: dict[int, list[int]] = {}
    for day in list_partition_dates(world.landing_dir, "transactions"):
        counts.setdefault(day.weekday(), []).append(
            _read(world, "transactions", day).num_rows
        )
    saturday, tuesday = np.mean(counts[5]), np.mean(counts[1])
    assert saturday > 1.15 * tuesday


# ---------------------------------------------------------------- truth


def test_truth_is_kept_apart_from_landing(world: Settings) -> None:
    assert not world.truth_dir.is_relative_to(world.landing_dir)
    assert not world.landing_dir.is_relative_to(world.truth_dir)
    assert {p.name for p in world.landing_dir.iterdir()} == set(TABLES)
    for data in _landing(world).values():
        assert not TRUTH_COLUMNS & set(data.column_names)
    truth = _truth(world)
    assert {"customers.parquet", "churn_events.parquet", "daily.parquet"} <= set(truth)
    assert any(name.startswith("hazard/") for name in truth)
    columns = set(truth["customers.parquet"].column_names)
    assert TRUTH_COLUMNS - {"hazard", "engagement"} <= columns


def test_churned_customers_stop_buying(world: Settings) -> None:
    events = pq.read_table(world.truth_dir / "churn_events.parquet").to_pylist()
    assert len(events) > 50
    churned_on = {e["customer_id"]: e["churned_on"] for e in events}
    for (table, _day), data in _landing(world).items():
        if table != "transactions":
            continue
        for row in data.select(["customer_id", "transaction_at"]).to_pylist():
            gone = churned_on.get(row["customer_id"])
            assert gone is None or row["transaction_at"].date() < gone


def test_disengaging_customers_buy_less_before_they_leave(world: Settings) -> None:
    """Declining frequency is a real signal: churners' last weeks are quieter."""
    events = pq.read_table(world.truth_dir / "churn_events.parquet").to_pandas()
    late = events[events["churned_on"] >= START + timedelta(days=50)]
    ids = set(late["customer_id"])
    early_window = range(0, 14)
    late_window = range(36, 50)

    def purchases(window: range) -> int:
        total = 0
        for k in window:
            data = _read(world, "transactions", START + timedelta(days=k))
            total += sum(c in ids for c in data.column("customer_id").to_pylist())
        return total

    assert purchases(late_window) < 0.6 * purchases(early_window)


def test_churn_rate_is_realistic(world: Settings) -> None:
    truth = pq.read_table(world.truth_dir / "customers.parquet").to_pandas()
    as_of = START + timedelta(days=20)
    signed_up = truth["signup_date"] <= as_of
    churned = truth["churned_on"]
    active = signed_up & (churned.isna() | (churned > as_of))
    within = active & (churned > as_of) & (churned <= as_of + timedelta(days=30))
    rate = within.sum() / active.sum()
    assert 0.05 <= rate <= 0.15


# ---------------------------------------------------------------- data faults


FAULT_DAY = 2
FAULT_DATE = START + timedelta(days=FAULT_DAY)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = _settings(tmp_path_factory.mktemp("clean"))
    simulate(settings, SimConfig(n_customers=400, seed=5), START, 5, progress=False)
    return settings


def _faulty(path: Path, fault: str, **spec: object) -> Settings:
    settings = _settings(path)
    faults = FaultConfig.model_validate({fault: {"days": [FAULT_DAY], **spec}})
    config = SimConfig(n_customers=400, seed=5, faults=faults)
    simulate(settings, config, START, 5, progress=False)
    return settings


def _only_difference(clean: Settings, faulty: Settings) -> tuple[pa.Table, pa.Table]:
    """Every partition and the truth agree except transactions of the fault day."""
    a, b = _landing(clean), _landing(faulty)
    assert a.keys() == b.keys()
    for key in a:
        if key != ("transactions", FAULT_DATE):
            assert a[key].equals(b[key]), key
    truth_a, truth_b = _truth(clean), _truth(faulty)
    truth_a.pop("faults.parquet")
    faults = truth_b.pop("faults.parquet").to_pylist()
    assert [f["day"] for f in faults] == [FAULT_DATE]
    _assert_same(truth_a, truth_b)
    return a[("transactions", FAULT_DATE)], b[("transactions", FAULT_DATE)]


def test_no_fault_when_disabled(clean: Settings) -> None:
    assert pq.read_table(clean.truth_dir / "faults.parquet").num_rows == 0
    for (table, _day), data in _landing(clean).items():
        assert data.schema.equals(TABLES[table].schema)
        if table == "transactions":
            assert pc.min(data.column("amount")).as_py() > 0
            assert data.column("customer_id").null_count == 0
            ids = data.column("transaction_id")
            assert pc.count_distinct(ids).as_py() == len(ids)


def test_fault_renamed_column(clean: Settings, tmp_path: Path) -> None:
    good, bad = _only_difference(clean, _faulty(tmp_path, "renamed_column"))
    assert bad.column_names == [
        "amt" if c == "amount" else c for c in TABLES["transactions"].columns
    ]
    assert bad.rename_columns(good.column_names).equals(good)


def test_fault_nulls(clean: Settings, tmp_path: Path) -> None:
    good, bad = _only_difference(clean, _faulty(tmp_path, "nulls", fraction=0.05))
    assert bad.schema.equals(good.schema)
    nulls = bad.column("customer_id").is_null()
    assert pc.sum(nulls).as_py() == max(1, round(0.05 * good.num_rows))
    assert bad.drop_columns(["customer_id"]).equals(good.drop_columns(["customer_id"]))
    kept = pc.invert(nulls)
    assert bad.filter(kept).equals(good.filter(kept))


def test_fault_negative_amounts(clean: Settings, tmp_path: Path) -> None:
    good, bad = _only_difference(clean, _faulty(tmp_path, "negative_amounts"))
    negative = pc.less(bad.column("amount"), 0)
    assert pc.sum(negative).as_py() == max(1, round(0.02 * good.num_rows))
    assert pc.abs(bad.column("amount")).equals(good.column("amount"))
    assert bad.drop_columns(["amount"]).equals(good.drop_columns(["amount"]))


def test_fault_future_timestamps(clean: Settings, tmp_path: Path) -> None:
    good, bad = _only_difference(clean, _faulty(tmp_path, "future_timestamps"))
    future = pc.greater_equal(
        bad.column("transaction_at"),
        pa.scalar(_day_end(FAULT_DATE), pa.timestamp("us")),
    )
    assert pc.sum(future).as_py() == max(1, round(0.02 * good.num_rows))
    assert bad.filter(pc.invert(future)).equals(good.filter(pc.invert(future)))
    column = "transaction_at"
    assert bad.drop_columns([column]).equals(good.drop_columns([column]))


def test_fault_duplicates(clean: Settings, tmp_path: Path) -> None:
    good, bad = _only_difference(clean, _faulty(tmp_path, "duplicates", fraction=0.03))
    extra = max(1, round(0.03 * good.num_rows))
    assert bad.num_rows == good.num_rows + extra
    assert bad.slice(0, good.num_rows).equals(good)
    ids = set(good.column("transaction_id").to_pylist())
    dupes = bad.slice(good.num_rows).column("transaction_id").to_pylist()
    assert len(set(dupes)) == extra and set(dupes) <= ids


def test_fault_late_partition(clean: Settings, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    faults = FaultConfig.model_validate({"late_partition": {"days": [FAULT_DAY]}})
    simulate(
        settings,
        SimConfig(n_customers=400, seed=5, faults=faults),
        START,
        FAULT_DAY + 1,
        progress=False,
    )
    folder = partition_dir(settings.landing_dir, "transactions", FAULT_DATE)
    assert not folder.exists()
    assert partition_dir(settings.landing_dir, "customers", FAULT_DATE).exists()
    simulate_next_day(settings)
    assert folder.exists()
    simulate_days(settings, 5 - FAULT_DAY - 2)
    _only_difference(clean, settings)


# ---------------------------------------------------------------- actions


@pytest.fixture(scope="module")
def acted(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A world whose pipeline exported queues for its fourth day."""
    settings = _settings(tmp_path_factory.mktemp("acted"))
    simulate(settings, SimConfig(n_customers=800, seed=3), START, 4, progress=False)
    day = START + timedelta(days=3)
    _export(
        settings,
        day,
        {
            "phone": list(range(1, 201)),
            "voucher": list(range(150, 351)),
            "email": [*range(300, 501), 99_999_999],
        },
    )
    review_rows: list[list[object]] = [
        [f"r-{n}", f"C{n:08d}", ACTIONS[n % 3], 0.4, float(n)] for n in range(1, 301)
    ]
    review_rows.append(["r-x", "nobody", "call", 0.5, 10.0])
    _write_queue(
        settings.exports_dir / f"dt={day.isoformat()}" / "review.csv",
        ["decision_id", "customer_id", "action", "p_churn", "value_at_risk"],
        review_rows,
    )
    simulate_next_day(settings)
    return settings


def test_exports_produce_action_results_the_next_day(acted: Settings) -> None:
    results = _read(acted, "action_results", START + timedelta(days=4)).to_pandas()
    assert len(results) == 200 + 201 + 202
    assert results["decision_id"].is_unique
    allowed = {
        "phone": {"answered", "no_answer"},
        "voucher": {"delivered", "redeemed", "bounced"},
        "email": {"delivered", "bounced"},
    }
    for channel, statuses in allowed.items():
        rows = results[results["channel"] == channel]
        assert set(rows["status"]) <= statuses
        assert len(set(rows["status"])) > 1
        assert set(rows["action"]) == {ACTIONS[CHANNELS.index(channel)]}
    unknown = results[results["customer_id"] == "C99999999"]
    assert list(unknown["status"]) == ["bounced"]
    for day in (START, START + timedelta(days=3)):
        assert _read(acted, "action_results", day).num_rows == 0


def test_treatments_follow_the_response_type(acted: Settings) -> None:
    path = acted.truth_dir / "treatments" / f"dt={START + timedelta(days=4)}"
    treatments = pq.read_table(path).to_pandas()
    assert len(treatments) == 603
    reached = treatments[treatments["reached"]]
    assert set(reached["status"]) <= {"answered", "delivered", "redeemed"}
    effects = reached.groupby("response_type")["effect"].agg(set).to_dict()
    assert effects["persuadable"] <= {"hazard_reduced", "rescued"}
    assert effects["sleeping_dog"] <= {"hazard_raised", "triggered_churn"}
    assert effects["sure_thing"] == {"none"} and effects["lost_cause"] == {"none"}
    assert set(treatments[~treatments["reached"]]["effect"]) == {"none"}
    redeemed = treatments[treatments["status"] == "redeemed"]["customer_id"]
    bought = _read(acted, "transactions", START + timedelta(days=4))
    discounted = bought.filter(bought.column("is_discounted")).column("customer_id")
    assert set(redeemed) <= set(discounted.to_pylist())


def test_review_queue_produces_review_decisions(acted: Settings) -> None:
    decisions = _read(acted, "review_decisions", START + timedelta(days=4)).to_pandas()
    assert len(decisions) == 301
    assert set(decisions["reviewer"]) <= {
        "a.moreau",
        "j.okafor",
        "l.svensson",
        "r.tanaka",
    }
    counts = decisions["decision"].value_counts()
    assert counts["approve"] > 0.6 * len(decisions)
    changed = decisions[decisions["decision"] == "change"]
    assert changed["new_action"].notna().all()
    assert decisions[decisions["decision"] != "change"]["new_action"].isna().all()
    assert decisions.set_index("decision_id").loc["r-x", "decision"] == "reject"
    assert decisions["reason_code"].notna().all()


def test_treatment_changes_who_churns(tmp_path: Path) -> None:
    """Calling everyone saves persuadables and drives sleeping dogs away."""
    config = SimConfig(n_customers=3000, seed=21)
    base, called = _settings(tmp_path / "base"), _settings(tmp_path / "called")
    _export(called, START, {"phone": list(range(1, 3001))})
    for settings in (base, called):
        simulate(settings, config, START, 50, progress=False)
    treatments = pq.read_table(called.truth_dir / "treatments").to_pandas()
    reached = treatments[treatments["reached"]].set_index("customer_id")

    def churned(settings: Settings, kind: str) -> int:
        truth = pq.read_table(settings.truth_dir / "customers.parquet").to_pandas()
        truth = truth.set_index("customer_id").loc[reached.index]
        return int(
            (truth["churned_on"].notna() & (truth["response_call"] == kind)).sum()
        )

    assert churned(called, "persuadable") < 0.8 * churned(base, "persuadable")
    assert churned(called, "sleeping_dog") > 1.5 * churned(base, "sleeping_dog")


# ---------------------------------------------------------------- drift


def test_drift_shifts_the_segment_after_its_start(tmp_path: Path) -> None:
    drift = DriftConfig(
        start=25, hazard_multiplier=3.0, spend_multiplier=0.6, rate_multiplier=0.7
    )
    plain, drifting = _settings(tmp_path / "plain"), _settings(tmp_path / "drift")
    simulate(plain, SimConfig(n_customers=1500, seed=9), START, 50, progress=False)
    config = SimConfig(n_customers=1500, seed=9, drift=drift)
    simulate(drifting, config, START, 50, progress=False)
    before = {k: v for k, v in _landing(plain).items() if k[1] < START + timedelta(25)}
    after = {
        k: v for k, v in _landing(drifting).items() if k[1] < START + timedelta(25)
    }
    _assert_same(before, after)

    truth = pq.read_table(drifting.truth_dir / "customers.parquet").to_pandas()
    south = set(truth.loc[truth["region"] == "south", "customer_id"])

    def mean_amount(settings: Settings, days: range, in_south: bool) -> float:
        amounts = []
        for k in days:
            data = _read(
                settings, "transactions", START + timedelta(days=k)
            ).to_pandas()
            amounts.append(data[data["customer_id"].isin(south) == in_south]["amount"])
        return float(np.concatenate(amounts).mean())

    late = range(30, 50)
    ratio_south = mean_amount(drifting, late, True) / mean_amount(plain, late, True)
    ratio_other = mean_amount(drifting, late, False) / mean_amount(plain, late, False)
    assert ratio_south < 0.75 and 0.9 < ratio_other < 1.1

    hazard = pq.read_table(drifting.truth_dir / "hazard").to_pandas()
    hazard = hazard[~hazard["is_disengaging"]]
    hazard["south"] = hazard["customer_id"].isin(south)
    hazard["after"] = hazard["day"] >= START + timedelta(days=25)
    means = hazard.groupby(["after", "south"])["hazard"].mean()
    assert means[(True, True)] / means[(True, False)] > 2.0
    assert means[(False, True)] / means[(False, False)] < 1.5


# ---------------------------------------------------------------- the API


def test_existing_world_is_not_overwritten(clean: Settings) -> None:
    with pytest.raises(WorldExistsError):
        simulate(clean, SimConfig(n_customers=10), START, 1, progress=False)


def test_reset_replaces_the_world(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    simulate(settings, SimConfig(n_customers=50), START, 3, progress=False)
    later = START + timedelta(days=100)
    summary = simulate(
        settings, SimConfig(n_customers=50), later, 2, progress=False, reset=True
    )
    assert summary.first_day == later and summary.last_day == later + timedelta(1)
    assert list_partition_dates(settings.landing_dir, "transactions") == [
        later,
        later + timedelta(1),
    ]


def test_continuing_needs_a_world(tmp_path: Path) -> None:
    with pytest.raises(NoWorldError):
        simulate_next_day(_settings(tmp_path))


def test_summary_counts_rows(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    summary = simulate(settings, SimConfig(n_customers=200), START, 4, progress=False)
    assert summary.days == 4 and summary.first_day == START
    for table in TABLES:
        written = sum(
            _read(settings, table, START + timedelta(k)).num_rows for k in range(4)
        )
        assert summary.rows[table] == written
    assert summary.rows["customers"] >= 200
    nxt = simulate_next_day(settings)
    assert nxt.first_day == nxt.last_day == START + timedelta(days=4)


def test_default_config_file_has_every_fault_off() -> None:
    config = load_sim_config()
    assert not any(
        getattr(config.faults, name).enabled for name in FaultConfig.model_fields
    )
    assert config.drift is not None


# ---------------------------------------------------------------- counterfactual pairs


def _pairs(settings: Settings) -> pd.DataFrame:
    return pq.read_table(settings.truth_dir / "counterfactual").to_pandas()


def test_every_known_decision_gets_a_pair(acted: Settings) -> None:
    day = START + timedelta(days=4)
    pairs = _pairs(acted)
    # 603 exported decisions, one of them for a customer the world does not know
    assert len(pairs) == 602 and pairs["decision_id"].is_unique
    assert "C99999999" not in set(pairs["customer_id"])
    assert set(pairs["day"]) == {day} and set(pairs["run_date"]) == {day - timedelta(1)}
    horizon = int(pairs["horizon_days"].iloc[0])
    for column in ("first_purchase_contacted", "first_purchase_untreated"):
        known = pairs[column].dropna()
        assert known.between(1, horizon).all()
        assert len(known) < len(pairs)  # some copies churn within the horizon
    # The contacted copy is contacted as the world contacted the customer: a
    # redeemed voucher is a purchase on the first day.
    treatments = pq.read_table(acted.truth_dir / "treatments").to_pandas()
    redeemed = treatments.loc[treatments["status"] == "redeemed", "decision_id"]
    assert len(redeemed) > 10
    by_id = pairs.set_index("decision_id")
    assert (by_id.loc[redeemed, "first_purchase_contacted"] == 1).all()


def test_pairs_agree_with_a_whole_second_world(tmp_path: Path) -> None:
    """The same world run twice, with and without the queues, is the counterfactual
    the pairs stand in for; the two measure the same effect."""
    config = SimConfig(n_customers=3000, seed=21)
    contacted, untouched = _settings(tmp_path / "a"), _settings(tmp_path / "b")
    odd, even = list(range(1, 3001, 2)), list(range(2, 3001, 2))
    _export(contacted, START + timedelta(10), {"voucher": odd, "phone": even})
    for settings in (contacted, untouched):
        simulate(settings, config, START, 45, progress=False)
    pairs = _pairs(contacted)
    horizon = int(pairs["horizon_days"].iloc[0])
    run_date = START + timedelta(10)

    def churned(settings: Settings, customers: pd.Series) -> np.ndarray:
        buyers: set[str] = set()
        for k in range(1, horizon + 1):
            day = run_date + timedelta(k)
            bought = _read(settings, "transactions", day)["customer_id"]
            buyers |= set(bought.to_pylist())
        return ~customers.isin(buyers).to_numpy()

    vouchers = pairs[pairs["action"] == "voucher"]
    world = (
        1
        - churned(contacted, vouchers["customer_id"]).mean()
        / churned(untouched, vouchers["customer_id"]).mean()
    )
    paired = 1 - (
        vouchers["first_purchase_contacted"].isna().mean()
        / vouchers["first_purchase_untreated"].isna().mean()
    )
    assert paired > 0.1
    assert abs(world - paired) < 0.06, (world, paired)
    # Calls help persuadables and push sleeping dogs away, in the label's units too.
    truth = pq.read_table(contacted.truth_dir / "customers.parquet").to_pandas()
    calls = pairs[pairs["action"] == "call"].merge(truth, on="customer_id")
    for kind, sign in (("persuadable", 1), ("sleeping_dog", -1)):
        group = calls[calls["response_call"] == kind]
        assert len(group) > 50
        gain = (
            group["first_purchase_untreated"].isna().mean()
            - group["first_purchase_contacted"].isna().mean()
        )
        assert sign * gain > 0, (kind, gain)
