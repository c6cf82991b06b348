"""Allocation under capacities and budget: feasibility, holdout walk, gap to optimal."""

from __future__ import annotations

import numpy as np
import pytest

from ml.decision.allocate import (
    allocate,
    exact_allocation,
    greedy_allocate,
    shadow_prices,
)

CHANNEL = np.arange(3)
UPLIFT = np.array([0.30, 0.20, 0.08])


def _problem(
    rng: np.random.Generator, n: int, *, realistic: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """A random problem: EV from p * value * uplift - cost, some pairs ineligible."""
    if realistic:
        cost = np.array([8.0, 3.5, 0.05])
        p, value = rng.beta(1, 4, n), rng.lognormal(4.3, 1.1, n)
        capacity = rng.integers(5, 40, 3)
        budget = float(rng.uniform(20, 200))
    else:
        cost = np.array([rng.uniform(3, 10), rng.uniform(1, 5), rng.uniform(0.05, 1)])
        p, value = rng.uniform(0, 1, n), rng.lognormal(4, 1, n)
        capacity = rng.integers(0, 5, 3)
        budget = float(rng.uniform(0, 30))
    ev = p[:, None] * value[:, None] * UPLIFT[None, :] - cost[None, :]
    allowed = (ev > 0) & (rng.uniform(size=ev.shape) > 0.15)
    return ev, allowed, cost, capacity, budget


def _ratio(found: float, best: float) -> float:
    return 1.0 if best <= 1e-12 else found / best


def test_greedy_is_close_to_exact_on_small_problems() -> None:
    """The pinned tolerance: mean >= 99%, every case >= 85% of the optimum."""
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(200):
        n = int(rng.integers(6, 13))
        ev, allowed, cost, capacity, budget = _problem(rng, n, realistic=False)
        greedy = allocate(ev, allowed, cost, CHANNEL, capacity, budget)
        exact = exact_allocation(ev, allowed, cost, CHANNEL, capacity, budget)
        assert greedy.total_ev <= exact.total_ev + 1e-6
        assert (exact.channel_used <= capacity).all()
        assert exact.budget_used <= budget + 1e-9
        ratios.append(_ratio(greedy.total_ev, exact.total_ev))
    ratios_arr = np.array(ratios)
    assert ratios_arr.mean() >= 0.99, ratios_arr.mean()
    assert ratios_arr.min() >= 0.85, ratios_arr.min()
    assert (ratios_arr >= 1 - 1e-9).mean() >= 0.9


def test_greedy_is_near_exact_at_a_realistic_shape() -> None:
    rng = np.random.default_rng(1)
    ratios = []
    for _ in range(5):
        ev, allowed, cost, capacity, budget = _problem(rng, 200, realistic=True)
        greedy = allocate(ev, allowed, cost, CHANNEL, capacity, budget)
        exact = exact_allocation(ev, allowed, cost, CHANNEL, capacity, budget)
        ratios.append(_ratio(greedy.total_ev, exact.total_ev))
    assert min(ratios) >= 0.95, ratios
    assert np.mean(ratios) >= 0.99, ratios


def test_channel_prices_fix_what_a_plain_ev_greedy_gets_wrong() -> None:
    # A prefers a call (10) but is almost as good with an e-mail (9); B is only
    # worth anything on the phone. One slot per channel: A e-mail + B call = 18.5.
    ev = np.array([[10.0, -1.0, 9.0], [9.5, -1.0, 1.0]])
    allowed = ev > 0
    cost = np.array([1.0, 1.0, 1.0])
    capacity = np.array([1, 1, 1])
    plain = greedy_allocate(ev, allowed, cost, CHANNEL, capacity, 100.0, ranking="ev")
    assert plain.total_ev == pytest.approx(11.0)
    best = allocate(ev, allowed, cost, CHANNEL, capacity, 100.0)
    exact = exact_allocation(ev, allowed, cost, CHANNEL, capacity, 100.0)
    assert exact.total_ev == pytest.approx(18.5)
    assert best.total_ev == pytest.approx(18.5)
    assert best.choice.tolist() == [2, 0]


@pytest.mark.parametrize("ranking", ["ev", "ev_per_cost", "priced"])
def test_every_ranking_respects_capacity_and_budget(ranking: str) -> None:
    rng = np.random.default_rng(2)
    for _ in range(50):
        n = int(rng.integers(1, 300))
        ev, allowed, cost, capacity, budget = _problem(rng, n, realistic=True)
        virtual = rng.uniform(size=n) < 0.2
        prices = shadow_prices(ev, allowed, cost, CHANNEL, capacity, budget)
        result = greedy_allocate(
            ev,
            allowed,
            cost,
            CHANNEL,
            capacity,
            budget,
            ranking=ranking,
            price=prices[0],
            channel_prices=prices[1],
            virtual=virtual,
        )
        chosen = result.choice >= 0
        assert allowed[chosen, result.choice[chosen]].all()
        real = chosen & ~virtual
        used = np.bincount(result.choice[real], minlength=3)
        assert (used <= capacity).all()
        assert cost[result.choice[real]].sum() <= budget + 1e-9
        assert result.channel_used.tolist() == used.tolist()


def test_full_channel_falls_back_to_next_best_action() -> None:
    ev = np.array([[9.0, 5.0, 1.0], [8.0, 4.0, 1.0], [7.0, 6.0, 1.0]])
    allowed = np.ones_like(ev, bool)
    cost = np.array([1.0, 1.0, 0.1])
    result = greedy_allocate(
        ev, allowed, cost, CHANNEL, np.array([1, 1, 5]), 100.0, ranking="ev"
    )
    assert result.choice.tolist() == [0, 2, 1]
    phone, voucher = 1 << 0, 1 << 1
    assert result.blocked.tolist() == [0, phone | voucher, phone]


def test_budget_closes_what_it_can_no_longer_pay_for() -> None:
    ev = np.array([[20.0, 0.0, 1.0], [18.0, 0.0, 1.0], [16.0, 0.0, 1.0]])
    allowed = ev > 0
    cost = np.array([5.0, 1.0, 0.5])
    result = greedy_allocate(
        ev, allowed, cost, CHANNEL, np.array([9, 9, 9]), 11.0, ranking="ev"
    )
    # Two calls (10), then only an e-mail fits the last 1.0.
    assert result.choice.tolist() == [0, 0, 2]
    assert result.budget_used == pytest.approx(10.5)
    assert result.blocked[2] == result.budget_bit


def test_virtual_rows_walk_but_consume_nothing() -> None:
    n = 100
    ev = np.column_stack([np.linspace(100, 1, n), np.zeros(n), np.zeros(n)])
    allowed = ev > 0
    cost = np.array([1.0, 1.0, 1.0])
    virtual = np.zeros(n, bool)
    virtual[[0, 3, 5]] = True
    result = greedy_allocate(
        ev, allowed, cost, CHANNEL, np.array([10, 0, 0]), 1e9, virtual=virtual
    )
    served = np.flatnonzero(result.choice >= 0)
    # The walk reaches row 12: rows 0..12 minus three virtual ones = ten slots.
    assert served.tolist() == list(range(13))
    assert result.channel_used.tolist() == [10, 0, 0]
    assert result.total_ev == pytest.approx(ev[served[~virtual[served]], 0].sum())


def test_ties_follow_the_tiebreak_not_the_row_order() -> None:
    ev = np.full((6, 3), -1.0)
    ev[:, 2] = 5.0
    allowed = ev > 0
    cost = np.array([1.0, 1.0, 1.0])
    tiebreak = np.array([0.6, 0.1, 0.5, 0.2, 0.9, 0.3])
    result = greedy_allocate(
        ev, allowed, cost, CHANNEL, np.array([0, 0, 3]), 1e9, tiebreak=tiebreak
    )
    assert np.flatnonzero(result.choice >= 0).tolist() == [1, 3, 5]
    order = np.random.default_rng(3).permutation(6)
    shuffled = greedy_allocate(
        ev[order],
        allowed[order],
        cost,
        CHANNEL,
        np.array([0, 0, 3]),
        1e9,
        tiebreak=tiebreak[order],
    )
    assert sorted(order[shuffled.choice >= 0].tolist()) == [1, 3, 5]


def test_nothing_allowed_or_no_capacity_gives_no_action() -> None:
    ev = np.ones((4, 3))
    cost = np.ones(3)
    none_allowed = allocate(ev, np.zeros((4, 3), bool), cost, CHANNEL, np.ones(3), 9.0)
    assert (none_allowed.choice == -1).all()
    no_slots = allocate(ev, ev > 0, cost, CHANNEL, np.zeros(3, np.int64), 9.0)
    assert (no_slots.choice == -1).all()
    assert (no_slots.blocked == 0b111).all()
    empty = allocate(
        np.zeros((0, 3)), np.zeros((0, 3), bool), cost, CHANNEL, np.ones(3), 1.0
    )
    assert empty.choice.shape == (0,)
