"""Training reads a seeded sample of customers when there are too many."""

from __future__ import annotations

import duckdb

from ml.prediction.examples import customer_sample_predicate, thinning_predicate


def _kept(ids: int, max_customers: int) -> set[str]:
    predicate = customer_sample_predicate(ids, max_customers)
    with duckdb.connect() as con:
        rows = con.execute(
            "select customer_id from (select 'C' || lpad(cast(i as varchar), 7, '0') "
            f"as customer_id from range({ids}) t(i)) where {predicate}"
        ).fetchall()
    return {row[0] for row in rows}


def test_all_customers_are_read_when_they_fit() -> None:
    assert customer_sample_predicate(1_000, 2_000) == "true"
    assert customer_sample_predicate(5_000, 0) == "true"
    assert len(_kept(1_000, 1_000)) == 1_000


def test_a_large_base_is_sampled_to_about_the_cap_the_same_way_every_time() -> None:
    kept = _kept(50_000, 5_000)
    assert 4_500 <= len(kept) <= 5_500
    assert _kept(50_000, 5_000) == kept
    # a bigger cap keeps a superset: the sample is a threshold on the customer's hash
    assert kept <= _kept(50_000, 10_000)


def test_the_sample_does_not_follow_the_thinning_phase() -> None:
    """Daily snapshots thinned to one a week keep each customer on one weekday; the
    sampled customers still spread over all seven."""
    kept = sorted(_kept(50_000, 5_000))
    phase = thinning_predicate(7, 1).replace(
        "as_of_date", "date '1970-01-01' + cast(d as integer)"
    )
    with duckdb.connect() as con:
        con.execute("create table kept (customer_id varchar)")
        con.executemany("insert into kept values (?)", [[c] for c in kept])
        weekdays = con.execute(
            f"select count(distinct d) from kept, range(7) t(d) where {phase}"
        ).fetchall()
    assert weekdays[0][0] == 7
