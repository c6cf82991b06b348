"""At most one action per customer, under channel capacities and a daily budget.

The problem is a small integer programme: choose ``x[i, a]`` in {0, 1} to maximise
``sum EV[i, a] x[i, a]`` with at most one action per customer, at most
``capacity[c]`` contacts on each channel ``c`` and at most ``budget`` of expected cost
in total. With a million customers it is solved by a vectorised greedy walk:

1. Rank every (customer, action) pair by a key (see *Rankings*).
2. Walk the pairs best first. A pair is taken when its customer has no action yet,
   its channel has a free slot and the budget still covers its cost; a customer whose
   best channel is full, or whose best action the budget can no longer pay for, falls
   back to their next-best open action.
3. Do this for each configured ranking and keep the walk with the highest total EV.

*The walk is not a Python loop.* Between two "events" (a channel filling up, or the
budget no longer covering an action's cost) every decision is a cumulative sum: the
walk sorts the open customers by their best open pair (only the head of the stream
that the remaining slots can reach), accepts the prefix up to the first event, closes
that channel (or every action the budget can no longer pay for) and repeats. Each
event closes at least one action, so there are at most ``actions + 1`` rounds. Ties
are broken by ``tiebreak`` (the engine passes a hash of the customer and the date),
so the result does not depend on the input's row order.

*Rankings.* ``ev`` ranks pairs by EV (right when only capacities bind), ``ev_per_cost``
by EV per unit of cost (right when only the budget binds), and ``priced`` by
``EV - price * cost - channel_price[channel]``: the Lagrangian relaxation of the
programme, where ``price`` is the budget's shadow price and ``channel_price`` the
channels'. For each budget price on a grid (then refined by golden-section steps) the
channel prices are set by a few rounds of coordinate updates, each making a channel's
demand equal its capacity; the walk then repairs what the prices get wrong. Prices
and rankings are compared on the pool of customers that can matter (for each action,
its best ``3 * capacity + 64`` customers by EV), and the winner is walked once over
everyone.

*Holdout.* ``virtual`` rows (the randomised holdout) take part in the walk like anyone
else and receive the action they would have been given at their turn, but consume no
slot and no budget. The holdout is therefore a random sample of exactly the stream of
customers the policy treats, assigned by the same rule.

*How close to optimal.* :func:`exact_allocation` solves the same programme with
``scipy.optimize.milp``. Measured with the default rankings on the problems of
``tests/unit/decision/test_allocate.py`` (which pins looser tolerances: mean >= 99%,
every case >= 85% on small problems, >= 95% at the realistic shape):

- 200 random small problems (6 to 12 customers, 3 actions, 15% of pairs ineligible,
  0 to 4 slots per channel, budgets of a few contacts): on average 99.92% of the
  optimal total EV, optimal in 98.5% of the cases, worst case 90.2%. The misses are
  knapsack effects: with a budget of a few contacts, one expensive pair can crowd
  out two cheaper ones that together are worth more.
- 20 problems at a realistic shape (200 customers, 5 to 40 slots per channel,
  binding budgets, call/voucher/e-mail costs 8/3.5/0.05): on average 99.77% of the
  optimum, worst case 97.9% (the test runs the first 5).
- 1M customers with the default capacities and budget (``priced`` wins): 99.92% of
  the linear-programming upper bound, which is at least the optimum; 99.95% with a
  budget of 1000, 100% when the budget does not bind. A plain ``ev`` greedy gets
  only about half of that total EV there, an ``ev_per_cost`` greedy about 80%.

Each contact is small next to the constraints at production scale, which is why the
gap shrinks as the problem grows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

RANKINGS = ("ev", "ev_per_cost", "priced")
# Costs below this count as this much when ranking by EV per unit of cost.
MIN_COST = 1e-6
# Budget prices tried by the "priced" ranking: 0 and a geometric grid up to the
# largest EV per unit of cost, then golden-section steps around the best.
PRICE_GRID_POINTS = 12
PRICE_REFINE_STEPS = 6
# Rounds of coordinate updates of the shadow prices.
CHANNEL_PRICE_ROUNDS = 4
BISECTION_STEPS = 40
# The price search runs on the customers that can matter: for each action, the
# best POOL_FACTOR * capacity + POOL_MIN by EV.
POOL_FACTOR = 3
POOL_MIN = 64


@dataclass(frozen=True)
class Allocation:
    """The outcome of an allocation, row-aligned with the input matrices.

    ``choice`` is the column of the chosen action (-1 = none); ``blocked`` a bit mask
    of what kept a customer from a better-ranked action: bit ``j`` for a full channel
    ``j``, bit ``n_channels`` for the budget. ``total_ev``, ``channel_used`` and
    ``budget_used`` count consuming (non-virtual) rows only. ``price`` and
    ``channel_prices`` are the shadow prices of the ``priced`` ranking (0 otherwise).
    """

    choice: np.ndarray
    blocked: np.ndarray
    ranking: str
    price: float
    channel_prices: np.ndarray
    total_ev: float
    channel_used: np.ndarray
    budget_used: float

    @property
    def budget_bit(self) -> int:
        return 1 << int(self.channel_used.shape[0])


def ranking_priority(
    ev: np.ndarray,
    cost: np.ndarray,
    ranking: str,
    price: float = 0.0,
    shift: np.ndarray | None = None,
) -> np.ndarray:
    """The ranking key of every (customer, action) pair; higher goes first.

    ``ev`` ranks by EV, ``ev_per_cost`` by EV per unit of cost, ``priced`` by
    ``EV - price * cost - shift`` (``shift``: each action's channel price).
    """
    ev = np.asarray(ev, dtype=np.float64)
    if ranking == "ev":
        return ev
    if ranking == "ev_per_cost":
        return ev / np.maximum(cost, MIN_COST)
    if ranking == "priced":
        offset = price * np.asarray(cost, dtype=np.float64)
        return ev - (offset if shift is None else offset + shift)
    raise ValueError(f"unknown ranking {ranking!r}; expected one of {RANKINGS}")


def _check(
    ev: np.ndarray,
    allowed: np.ndarray,
    cost: np.ndarray,
    channel: np.ndarray,
    capacity: np.ndarray,
) -> tuple[int, int, int]:
    if ev.ndim != 2 or allowed.shape != ev.shape:
        raise ValueError("ev and allowed must be (customers, actions) matrices")
    n, k = ev.shape
    if cost.shape != (k,) or channel.shape != (k,):
        raise ValueError("cost and channel need one entry per action column")
    m = int(capacity.shape[0])
    if k and (channel.min() < 0 or channel.max() >= m):
        raise ValueError("channel indices must point into capacity")
    return n, k, m


def greedy_allocate(
    ev: np.ndarray,
    allowed: np.ndarray,
    cost: np.ndarray,
    channel: np.ndarray,
    capacity: np.ndarray,
    budget: float,
    *,
    ranking: str = "ev",
    price: float = 0.0,
    channel_prices: np.ndarray | None = None,
    priority: np.ndarray | None = None,
    tiebreak: np.ndarray | None = None,
    virtual: np.ndarray | None = None,
) -> Allocation:
    """One greedy walk (see the module docstring).

    ``ev`` and ``allowed`` are (customers, actions); only allowed pairs are ever
    chosen. ``cost`` and ``channel`` give each action column its expected cost and
    its channel's index into ``capacity``. ``priority`` overrides the ranking key
    (the baselines use it); ``tiebreak`` orders equal keys (lower first, default: row
    order); ``virtual`` rows are walked but consume nothing (the holdout).
    """
    ev = np.asarray(ev, dtype=np.float64)
    allowed = np.asarray(allowed, dtype=bool)
    cost = np.asarray(cost, dtype=np.float64)
    channel = np.asarray(channel, dtype=np.int64)
    capacity = np.asarray(capacity, dtype=np.int64)
    n, k, m = _check(ev, allowed, cost, channel, capacity)
    prices = np.zeros(m) if channel_prices is None else np.asarray(channel_prices)
    if priority is None:
        key = ranking_priority(ev, cost, ranking, price, prices[channel])
    else:
        key = np.asarray(priority, dtype=np.float64)
        ranking = "custom"
    pr = np.where(allowed, key, -np.inf)
    tb = (
        np.arange(n, dtype=np.float64)
        if tiebreak is None
        else np.asarray(tiebreak, dtype=np.float64)
    )
    consume = np.ones(n, bool) if virtual is None else ~np.asarray(virtual, bool)
    budget_bit = 1 << m
    slack = 1e-9 * max(1.0, abs(float(budget)))

    remaining = capacity.copy()
    left = float(budget)
    closure = np.zeros(k, np.int64)
    for a in range(k):  # what can never be given is closed before the walk
        if remaining[channel[a]] <= 0:
            closure[a] |= 1 << int(channel[a])
        if cost[a] > left + slack:
            closure[a] |= budget_bit
    is_open = closure == 0

    choice = np.full(n, -1, np.int64)
    pending = np.flatnonzero(allowed.any(axis=1)) if k else np.zeros(0, np.int64)
    while pending.size and is_open.any():
        sub = pr[pending]
        sub[:, ~is_open] = -np.inf
        best = sub.argmax(axis=1)
        value = sub[np.arange(pending.size), best]
        live = value > -np.inf
        pending, best, value = pending[live], best[live], value[live]
        if not pending.size:
            break
        # Only the head of the stream can be reached before the next event: sort
        # that (with every tie at its edge) instead of every open customer.
        head = 2 * int(remaining[np.unique(channel[is_open])].sum()) + POOL_MIN
        rest = np.zeros(0, np.int64)
        if head < pending.size:
            edge = -np.partition(-value, head - 1)[head - 1]
            in_head = value >= edge
            rest = pending[~in_head]
            pending, best, value = pending[in_head], best[in_head], value[in_head]
        order = np.lexsort((tb[pending], -value))
        seq, act = pending[order], best[order]
        chan, price_of, use = channel[act], cost[act], consume[seq]
        spend = np.where(use, price_of, 0.0)
        over_budget = (np.cumsum(spend) - spend) + price_of > left + slack
        full = np.zeros(seq.size, bool)
        for j in np.unique(chan):
            on = chan == j
            taken = on & use
            full |= on & (np.cumsum(taken) - taken >= remaining[j])
        bad = np.flatnonzero(full | over_budget)
        stop = int(bad[0]) if bad.size else seq.size
        choice[seq[:stop]] = act[:stop]
        accepted = use[:stop]
        remaining -= np.bincount(chan[:stop][accepted], minlength=m)
        left -= float(price_of[:stop][accepted].sum())
        if stop < seq.size:
            if full[stop]:
                j = int(chan[stop])
                hit = is_open & (channel == j)
                closure[hit] |= 1 << j
                is_open &= ~hit
            if over_budget[stop]:
                hit = is_open & ((cost >= price_of[stop]) | (cost > left + slack))
                closure[hit] |= budget_bit
                is_open &= ~hit
        pending = np.concatenate([seq[stop:], rest])

    rows = np.arange(n)
    chosen = choice >= 0
    if k:
        chosen_key = np.where(chosen, pr[rows, np.maximum(choice, 0)], -np.inf)
        better = allowed & (pr > chosen_key[:, None])
        blocked = np.bitwise_or.reduce(np.where(better, closure[None, :], 0), axis=1)
    else:
        blocked = np.zeros(n, np.int64)
    counted = chosen & consume
    return Allocation(
        choice=choice,
        blocked=blocked.astype(np.int64),
        ranking=ranking,
        price=float(price),
        channel_prices=prices.astype(np.float64),
        total_ev=float(ev[rows[counted], choice[counted]].sum()),
        channel_used=np.bincount(channel[choice[counted]], minlength=m).astype(
            np.int64
        ),
        budget_used=float(cost[choice[counted]].sum()),
    )


def _channel_step(
    base: np.ndarray,
    channel: np.ndarray,
    capacity: np.ndarray,
    prices: np.ndarray,
) -> None:
    """One pass of coordinate updates of the channel prices, in place.

    Each update sets a channel's price so that no more customers prefer it, over
    doing nothing or another channel, than it has slots: midway between the
    ``capacity``-th and the ``capacity + 1``-th largest advantage of that channel.
    """
    for j in range(prices.shape[0]):
        own_cols = channel == j
        if not own_cols.any():
            continue
        adjusted = base - prices[channel]
        own = adjusted[:, own_cols].max(axis=1) + prices[j]
        other = np.zeros(base.shape[0])
        if (~own_cols).any():
            other = np.maximum(adjusted[:, ~own_cols].max(axis=1), 0.0)
        advantage = own - other
        slots = int(capacity[j])
        if int((advantage > 0).sum()) <= slots:
            prices[j] = 0.0
        elif slots == 0:
            prices[j] = float(advantage.max())
        else:
            # Between the last customer in and the first one out, so that exactly
            # `slots` customers strictly prefer the channel (no ties at the edge).
            edge = -np.partition(-advantage, [slots - 1, slots])[[slots - 1, slots]]
            prices[j] = max(0.0, float(edge.mean()))


def _demand_spend(ev: np.ndarray, cost: np.ndarray, shift: np.ndarray) -> float:
    """Expected cost if every customer took their best priced action, if positive."""
    adjusted = ev - shift
    best = adjusted.argmax(axis=1)
    wants = adjusted[np.arange(adjusted.shape[0]), best] > 0.0
    return float(cost[best[wants]].sum())


def shadow_prices(
    ev: np.ndarray,
    allowed: np.ndarray,
    cost: np.ndarray,
    channel: np.ndarray,
    capacity: np.ndarray,
    budget: float | None,
    consume: np.ndarray | None = None,
    price: float | None = None,
) -> tuple[float, np.ndarray]:
    """Approximate dual prices of the budget and the channels.

    Alternates a pass of channel-price updates with a bisection for the smallest
    budget price at which the customers' priced choices fit the budget. With
    ``price`` given, the budget price is held there and only the channels move.
    """
    n, k = ev.shape
    m = int(capacity.shape[0])
    prices = np.zeros(m)
    lam = 0.0 if price is None else float(price)
    if not n or not k:
        return lam, prices
    rows = np.ones(n, bool) if consume is None else np.asarray(consume, bool)
    ev_rows = np.where(allowed, ev, -np.inf)[rows]
    top = float(
        np.max(
            np.where(np.isfinite(ev_rows), ev_rows, 0.0) / np.maximum(cost, MIN_COST)
        )
    )
    for _ in range(CHANNEL_PRICE_ROUNDS):
        _channel_step(ev_rows - lam * cost, channel, capacity, prices)
        if price is not None or budget is None:
            continue
        shift = prices[channel]
        if _demand_spend(ev_rows, cost, shift) <= budget:
            lam = 0.0
            continue
        low, high = 0.0, max(top, 1e-9)
        for _ in range(BISECTION_STEPS):
            mid = 0.5 * (low + high)
            if _demand_spend(ev_rows, cost, shift + mid * cost) <= budget:
                high = mid
            else:
                low = mid
        lam = high
    return lam, prices


def _pool(
    ev: np.ndarray, allowed: np.ndarray, channel: np.ndarray, capacity: np.ndarray
) -> np.ndarray:
    """Rows that can matter: per action, the best POOL_FACTOR * capacity + POOL_MIN."""
    n, k = ev.shape
    keep = np.zeros(n, bool)
    for a in range(k):
        size = POOL_FACTOR * int(capacity[channel[a]]) + POOL_MIN
        if size >= n:
            keep |= allowed[:, a]
            continue
        column = np.where(allowed[:, a], ev[:, a], -np.inf)
        top = np.argpartition(-column, size - 1)[:size]
        keep[top[np.isfinite(column[top])]] = True
    return np.flatnonzero(keep)


def _price_grid(ev: np.ndarray, allowed: np.ndarray, cost: np.ndarray) -> list[float]:
    """0, then a geometric grid up to the largest EV per unit of cost."""
    ratios = np.where(allowed, ev / np.maximum(cost, MIN_COST), 0.0)
    top = float(ratios.max()) if ratios.size else 0.0
    if not top > 0.0:
        return [0.0]
    return [0.0, *np.geomspace(top * 1e-4, top, PRICE_GRID_POINTS - 1).tolist()]


def _refine(
    tried: list[tuple[float, float]], evaluate: Callable[[float], float]
) -> list[tuple[float, float]]:
    """Golden-section steps between the neighbours of the best price on the grid."""
    i = max(range(len(tried)), key=lambda j: (tried[j][1], -j))
    low = tried[max(i - 1, 0)][0]
    high = tried[min(i + 1, len(tried) - 1)][0]
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = evaluate(a), evaluate(b)
    found = [*tried, (a, fa), (b, fb)]
    for _ in range(PRICE_REFINE_STEPS - 2):
        if fa >= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = evaluate(a)
            found.append((a, fa))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = evaluate(b)
            found.append((b, fb))
    return found


def _fits_unconstrained(
    ev: np.ndarray,
    allowed: np.ndarray,
    cost: np.ndarray,
    channel: np.ndarray,
    capacity: np.ndarray,
    budget: float,
    virtual: np.ndarray | None,
) -> bool:
    """Whether every customer's best allowed action fits all limits at once."""
    n, k = ev.shape
    if not n or not k:
        return True
    wants = allowed.any(axis=1)
    if virtual is not None:
        wants &= ~np.asarray(virtual, bool)
    best = np.where(allowed, ev, -np.inf).argmax(axis=1)[wants]
    used = np.bincount(channel[best], minlength=capacity.shape[0])
    return bool((used <= capacity).all() and cost[best].sum() <= budget)


def allocate(
    ev: np.ndarray,
    allowed: np.ndarray,
    cost: np.ndarray,
    channel: np.ndarray,
    capacity: np.ndarray,
    budget: float,
    *,
    rankings: Sequence[str] = RANKINGS,
    tiebreak: np.ndarray | None = None,
    virtual: np.ndarray | None = None,
) -> Allocation:
    """The best greedy allocation over ``rankings`` (see the module docstring).

    Rankings and budget prices are compared on the pool of customers that can
    matter; the winner is then walked once over everyone. Ties keep the earlier
    candidate, so the result is deterministic.
    """
    if not rankings:
        raise ValueError("allocate needs at least one ranking")
    ev = np.asarray(ev, dtype=np.float64)
    allowed = np.asarray(allowed, dtype=bool)
    cost = np.asarray(cost, dtype=np.float64)
    channel = np.asarray(channel, dtype=np.int64)
    capacity = np.asarray(capacity, dtype=np.int64)
    n, k, m = _check(ev, allowed, cost, channel, capacity)
    tb = np.arange(n, dtype=np.float64) if tiebreak is None else tiebreak
    if _fits_unconstrained(ev, allowed, cost, channel, capacity, budget, virtual):
        # Everyone can have their best action: that is optimal, no search needed.
        rankings = ["ev"]
    pool = _pool(ev, allowed, channel, capacity)
    sub_ev, sub_allowed = ev[pool], allowed[pool]
    sub_tb = np.asarray(tb, dtype=np.float64)[pool]
    sub_virtual = None if virtual is None else np.asarray(virtual, bool)[pool]
    sub_consume = None if sub_virtual is None else ~sub_virtual
    channel_prices: dict[float, np.ndarray] = {}

    def prices_at(price: float) -> np.ndarray:
        if price not in channel_prices:
            channel_prices[price] = shadow_prices(
                sub_ev, sub_allowed, cost, channel, capacity, None, sub_consume, price
            )[1]
        return channel_prices[price]

    def total(ranking: str, price: float) -> float:
        return greedy_allocate(
            sub_ev,
            sub_allowed,
            cost,
            channel,
            capacity,
            budget,
            ranking=ranking,
            price=price,
            channel_prices=prices_at(price) if ranking == "priced" else None,
            tiebreak=sub_tb,
            virtual=sub_virtual,
        ).total_ev

    best: tuple[float, str, float] | None = None
    for ranking in rankings:
        if ranking == "priced":
            dual, dual_channels = shadow_prices(
                sub_ev, sub_allowed, cost, channel, capacity, budget, sub_consume
            )
            channel_prices[dual] = dual_channels
            grid = _price_grid(sub_ev, sub_allowed, cost)
            tried = [(p, total(ranking, p)) for p in grid]
            if len(tried) > 2:
                tried = _refine(tried, lambda p: total("priced", p))
            tried.insert(0, (dual, total(ranking, dual)))
        else:
            ranking_priority(sub_ev[:0], cost, ranking)  # rejects unknown names
            tried = [(0.0, total(ranking, 0.0))]
        for price, value in tried:
            if best is None or value > best[0] + 1e-9:
                best = (value, ranking, price)
    assert best is not None
    _, ranking, price = best
    return greedy_allocate(
        ev,
        allowed,
        cost,
        channel,
        capacity,
        budget,
        ranking=ranking,
        price=price,
        channel_prices=prices_at(price) if ranking == "priced" else None,
        tiebreak=tb,
        virtual=virtual,
    )


def exact_allocation(
    ev: np.ndarray,
    allowed: np.ndarray,
    cost: np.ndarray,
    channel: np.ndarray,
    capacity: np.ndarray,
    budget: float,
) -> Allocation:
    """The optimal allocation by mixed-integer programming (small problems, tests)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    ev = np.asarray(ev, dtype=np.float64)
    allowed = np.asarray(allowed, dtype=bool)
    cost = np.asarray(cost, dtype=np.float64)
    channel = np.asarray(channel, dtype=np.int64)
    capacity = np.asarray(capacity, dtype=np.int64)
    n, k, m = _check(ev, allowed, cost, channel, capacity)
    rows, cols = np.nonzero(allowed)
    pairs = rows.size
    choice = np.full(n, -1, np.int64)
    if pairs:
        one_each = np.zeros((n, pairs))
        one_each[rows, np.arange(pairs)] = 1.0
        per_channel = np.zeros((m, pairs))
        per_channel[channel[cols], np.arange(pairs)] = 1.0
        constraints = [
            LinearConstraint(one_each, -np.inf, 1.0),
            LinearConstraint(per_channel, -np.inf, capacity.astype(np.float64)),
            LinearConstraint(cost[cols][None, :], -np.inf, float(budget)),
        ]
        result = milp(
            -ev[rows, cols],
            constraints=constraints,
            integrality=np.ones(pairs),
            bounds=Bounds(0.0, 1.0),
            options={"mip_rel_gap": 0.0},
        )
        if result.x is None:
            raise RuntimeError(f"milp failed: {result.message}")
        taken = result.x > 0.5
        choice[rows[taken]] = cols[taken]
    idx = np.flatnonzero(choice >= 0)
    return Allocation(
        choice=choice,
        blocked=np.zeros(n, np.int64),
        ranking="exact",
        price=0.0,
        channel_prices=np.zeros(m),
        total_ev=float(ev[idx, choice[idx]].sum()),
        channel_used=np.bincount(channel[choice[idx]], minlength=m).astype(np.int64),
        budget_used=float(cost[choice[idx]].sum()),
    )
