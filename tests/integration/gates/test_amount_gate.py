"""Amounts at the landing gate: non-finite and implausible values go to quarantine.

The plausible range is learned from the loaded history (a per-day histogram of
log10(amount) in ``ops.amount_profile``) with a hard cap from the business config.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from ml.config.settings import Settings
from ml.data.validation import (
    ValidationGateError,
    validate_landing,
    validate_landing_range,
)
from ml.data.validation.amounts import AmountProfile, _profile
from ml.storage.landing_files import write_partition
from tests.integration.gates.gate_fixtures import (
    DAY,
    customers,
    settings_with,
    table,
    transactions,
)

CORE = ("customers", "transactions")
HISTORY = [DAY - timedelta(days=i) for i in range(6, 0, -1)]


def _rows(settings: Settings, sql: str, params: list[Any] | None = None) -> list:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _write(settings: Settings, day: date, columns: dict[str, list]) -> None:
    write_partition(
        settings.landing_dir, "transactions", day, table("transactions", columns)
    )


def _history(settings: Settings, *, big_spender: bool = False) -> None:
    """Six loaded days of 40 purchases of 10..49 each; customers land on day one.

    With ``big_spender``, C001's first purchase of the last day is 2,000.
    """
    write_partition(
        settings.landing_dir,
        "customers",
        HISTORY[0],
        table("customers", customers(HISTORY[0])),
    )
    for day in HISTORY:
        columns = transactions(day)
        if big_spender and day == HISTORY[-1]:
            columns["amount"][0] = 2_000.0
        _write(settings, day, columns)
        validate_landing(settings, day, CORE, data_docs=False)


def _today(amounts: dict[int, float], n: int = 100) -> dict[str, list]:
    columns = transactions(DAY, n)
    for i, value in amounts.items():
        columns["amount"][i] = value
    return columns


def _quarantined(settings: Settings) -> list[tuple[str, str]]:
    return _rows(
        settings,
        "select reason, record_key from ops.quarantine "
        "where table_name = 'transactions' order by record_key",
    )


def test_inf_and_nan_are_quarantined_as_non_finite(settings: Settings) -> None:
    _history(settings)
    _write(settings, DAY, _today({3: float("inf"), 4: float("nan"), 5: -float("inf")}))

    report = validate_landing(settings, DAY, CORE, data_docs=False)

    assert report.tables["transactions"].quarantined == {"non_finite_amount": 3}
    assert [r for r, _ in _quarantined(settings)] == ["non_finite_amount"] * 3
    (bad,) = _rows(
        settings,
        "select count(*) from raw.transactions where not isfinite(amount)",
    )
    assert bad == (0,)
    assert _rows(
        settings,
        "select count(*) from raw.transactions where partition_date = ?",
        [DAY],
    ) == [(97,)]


def test_an_amount_above_the_hard_cap_is_implausible_without_history(
    settings: Settings,
) -> None:
    write_partition(
        settings.landing_dir, "customers", DAY, table("customers", customers(DAY))
    )
    _write(settings, DAY, _today({7: 1e12}))

    report = validate_landing(settings, DAY, CORE, data_docs=False)

    assert report.tables["transactions"].quarantined == {"implausible_amount": 1}
    assert _quarantined(settings) == [("implausible_amount", "T0302-0007")]
    assert _rows(settings, "select max(amount) from raw.transactions") == [(109.0,)]
    (measured,) = _rows(
        settings,
        "select unexpected_count from ops.validation_results "
        "where expectation_type = 'expect_column_values_to_be_between' "
        "and column_name = 'amount' and reason = 'implausible_amount'",
    )
    assert measured == (1,)


def test_the_range_learned_from_history_quarantines_far_outliers(
    settings: Settings,
) -> None:
    _history(settings)
    # under the hard cap of 1,000,000, but a thousand times the usual basket
    columns = _today({10: 50_000.0, 11: 400.0})
    columns["customer_id"][12] = "C003"
    columns["amount"][12] = 6_000.0
    _write(settings, DAY, columns)

    report = validate_landing(settings, DAY, CORE, data_docs=False)

    quarantined = _quarantined(settings)
    assert report.tables["transactions"].quarantined == {"implausible_amount": 2}
    assert quarantined == [
        ("implausible_amount", "T0302-0010"),
        ("implausible_amount", "T0302-0012"),
    ]
    # 400 is large but plausible: eight times the largest basket so far
    assert _rows(
        settings, "select count(*) from raw.transactions where amount = 400"
    ) == [(1,)]


def test_a_customer_who_spent_that_much_before_is_not_an_outlier(
    settings: Settings,
) -> None:
    _history(settings, big_spender=True)  # C001 once spent 2,000 (plausible)
    _write(settings, DAY, _today({0: 20_000.0, 1: 20_000.0}))

    report = validate_landing(settings, DAY, CORE, data_docs=False)

    # C001 spent at least a tenth of 20,000 before: plausible for them; C002 not
    assert report.tables["transactions"].quarantined == {"implausible_amount": 1}
    assert _quarantined(settings) == [("implausible_amount", "T0302-0001")]
    assert _rows(
        settings,
        "select max_amount from ops.amount_customer_max where customer_id = 'C001'",
    ) == [(20_000.0,)]


def test_the_profile_is_a_per_day_summary_that_reruns_replace(
    settings: Settings,
) -> None:
    _history(settings)
    per_day = _rows(
        settings,
        "select partition_date, sum(n) from ops.amount_profile group by all "
        "order by all",
    )
    assert per_day == [(day, 40) for day in HISTORY]
    before = _rows(settings, "select * from ops.amount_profile order by all")

    validate_landing(settings, HISTORY[2], CORE, data_docs=False)  # a rerun

    assert _rows(settings, "select * from ops.amount_profile order by all") == before
    # the summary matches what raw holds
    assert _rows(
        settings,
        "select partition_date, cast(floor(log10(amount) / 0.05) as integer) as b, "
        "count(*) from raw.transactions group by all order by all",
    ) == _rows(
        settings,
        "select partition_date, log_bin, n from ops.amount_profile order by all",
    )


def test_a_warehouse_loaded_before_the_summary_existed_is_summarised_once(
    settings: Settings,
) -> None:
    _history(settings)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("drop table ops.amount_profile")
        con.execute("drop table ops.amount_customer_max")
    _write(settings, DAY, _today({10: 50_000.0}))

    report = validate_landing(settings, DAY, CORE, data_docs=False)

    assert report.tables["transactions"].quarantined == {"implausible_amount": 1}
    assert _rows(
        settings, "select count(distinct partition_date) from ops.amount_profile"
    ) == [(len(HISTORY) + 1,)]


def test_range_gate_quarantines_the_same_rows_as_day_by_day(tmp_path: Path) -> None:
    def land(settings: Settings) -> None:
        write_partition(
            settings.landing_dir,
            "customers",
            HISTORY[0],
            table("customers", customers(HISTORY[0])),
        )
        for i, day in enumerate([*HISTORY, DAY]):
            columns = transactions(day, 100)
            if i in (3, 6):
                columns["amount"][5] = 1e12 if i == 3 else 75_000.0
            _write(settings, day, columns)

    daily = Settings(home=tmp_path / "daily")
    land(daily)
    for day in [*HISTORY, DAY]:
        validate_landing(daily, day, CORE, data_docs=False)
    bulk = Settings(home=tmp_path / "bulk")
    land(bulk)
    validate_landing_range(bulk, HISTORY[0], DAY, CORE, data_docs=False)

    sql = (
        "select partition_date, reason, record_key from ops.quarantine "
        "where table_name = 'transactions' order by all"
    )
    assert _rows(daily, sql) == _rows(bulk, sql)
    assert [r[1] for r in _rows(daily, sql)] == ["implausible_amount"] * 2
    profile = "select * from ops.amount_profile order by all"
    assert _rows(daily, profile) == _rows(bulk, profile)


def test_a_day_of_implausible_amounts_stops_the_run(settings: Settings) -> None:
    _history(settings)
    _write(settings, DAY, _today({i: 1e9 for i in range(10)}))
    with pytest.raises(ValidationGateError, match="implausible_amount 10"):
        validate_landing(settings, DAY, CORE, data_docs=False)
    assert _rows(
        settings,
        "select count(*) from raw.transactions where partition_date = ?",
        [DAY],
    ) == [(0,)]


def test_hard_cap_comes_from_the_config(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, amounts={"max_amount": 100.0})
    write_partition(
        settings.landing_dir, "customers", DAY, table("customers", customers(DAY))
    )
    _write(settings, DAY, _today({}, n=100))  # amounts 10..109

    with pytest.raises(ValidationGateError, match="implausible_amount 9"):
        validate_landing(settings, DAY, CORE, data_docs=False)


def test_median_and_spread_of_the_histogram() -> None:
    rng = np.random.default_rng(3)
    logs = rng.normal(1.5, 0.3, 20_000)
    bins, counts = np.unique(np.floor(logs / 0.05).astype(int), return_counts=True)
    profile = _profile(dict(zip(bins.tolist(), counts.tolist(), strict=True)))
    assert isinstance(profile, AmountProfile)
    assert profile.rows == 20_000
    assert abs(profile.median - 1.5) < 0.05
    assert abs(profile.spread - 0.3) < 0.05
    assert profile.z(np.array([10**1.5, 10**4.5, 0.0]))[1] == pytest.approx(
        (4.5 - profile.median) / profile.spread
    )
