"""The simulated world: one day at a time, persisted between calls.

Every day draws from random streams seeded by ``(seed, day, stream)``, and the whole
state lives in ``truth/state/`` (arrays in an ``.npz``, bookkeeping in JSON), so a
world simulated over a range in one call and one continued day by day write the
same rows. Landing partitions go to ``settings.landing_dir``; everything the
pipeline must not see (latent attributes, churn events, treatment effects, the
paired counterfactuals of every contact (:mod:`ml.sim.counterfactual`), hazard
snapshots, injected faults) goes to ``settings.truth_dir``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from ml.config.settings import Settings, load_business_config
from ml.contract.schema import (
    ACQUISITION_CHANNELS,
    ACTIONS,
    CATEGORIES,
    PLANS,
    REGIONS,
    TABLES,
    TICKET_SEVERITIES,
    TICKET_TOPICS,
)
from ml.sim import actions, behaviour, counterfactual
from ml.sim.faults import FaultRecord, apply_faults
from ml.sim.population import NO_DAY, RESPONSE_TYPES, Population, new_customers
from ml.sim.sim_config import SimConfig
from ml.sim.sim_tables import (
    contract_table,
    customer_ids,
    dates,
    day_prefix,
    empty_table,
    labels,
    optional_dates,
    prefixed_ids,
    timestamps,
)
from ml.storage.landing_files import (
    list_partition_dates,
    write_partition,
    write_raw_partition,
)

STATE_VERSION = 1
SIM_TABLES = tuple(TABLES)
# Random streams of one day; the initial base has its own.
INIT, DELIVERY, REVIEW, SIGNUPS, CHANGES, TICKETS, HAZARD, PURCHASES, QUIET = range(9)
VOUCHER_PRICE_FACTOR = 0.85
# Rounding never yields a free purchase; negative or zero amounts are data faults.
MIN_AMOUNT = 0.5


class WorldExistsError(RuntimeError):
    """A new world would overwrite an existing one (pass ``reset=True``)."""


class NoWorldError(RuntimeError):
    """There is no persisted world to continue (run ``simulate`` first)."""


@dataclass(frozen=True)
class SimSummary:
    """What one call of the simulator wrote."""

    first_day: date
    last_day: date
    days: int
    rows: dict[str, int]
    customers_total: int
    customers_active: int
    signups: int
    churn_events: int
    treatments: int
    faults: list[str] = field(default_factory=list)


@dataclass
class _World:
    config: SimConfig
    start: date
    next_day: date
    pop: Population
    pending: dict[tuple[str, date], pa.Table]


@dataclass
class _DayStats:
    day: date
    customers_active: int = 0
    signups: int = 0
    onsets: int = 0
    churned: int = 0
    disengaging: int = 0
    transactions: int = 0
    revenue: float = 0.0
    tickets: int = 0
    mean_hazard: float = 0.0
    exported_decisions: int = 0
    reached: int = 0
    reviews: int = 0
    drift_active: bool = False


def _rng(config: SimConfig, day: date, stream: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, day.toordinal(), stream])


# ---------------------------------------------------------------- state on disk


def state_dir(settings: Settings) -> Path:
    """Where the persisted world lives (inside ``truth/``)."""
    return settings.truth_dir / "state"


def _world_file(settings: Settings) -> Path:
    return state_dir(settings) / "world.json"


def world_exists(settings: Settings) -> bool:
    """Whether a simulated world is persisted under ``settings``."""
    return _world_file(settings).is_file()


def next_sim_day(settings: Settings) -> date:
    """The day the persisted world simulates next."""
    if not world_exists(settings):
        raise NoWorldError(f"no simulated world under {settings.truth_dir}")
    return date.fromisoformat(json.loads(_world_file(settings).read_text())["next_day"])


def _pending_dir(settings: Settings) -> Path:
    return state_dir(settings) / "pending"


def _save_world(settings: Settings, world: _World) -> None:
    folder = state_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    world.pop.save(folder / "population.npz")
    pending = _pending_dir(settings)
    if pending.exists():
        shutil.rmtree(pending)
    for (table, day), data in sorted(world.pending.items()):
        path = pending / table / f"dt={day.isoformat()}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data, path)
    meta = {
        "version": STATE_VERSION,
        "start": world.start.isoformat(),
        "next_day": world.next_day.isoformat(),
        "config": world.config.model_dump(mode="json"),
    }
    tmp = _world_file(settings).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(_world_file(settings))


def _load_world(settings: Settings) -> _World:
    if not world_exists(settings):
        raise NoWorldError(
            f"no simulated world under {settings.truth_dir}; run simulate() first"
        )
    meta = json.loads(_world_file(settings).read_text())
    if meta.get("version") != STATE_VERSION:
        raise NoWorldError(
            f"world state version {meta.get('version')} is not supported"
        )
    pending: dict[tuple[str, date], pa.Table] = {}
    root = _pending_dir(settings)
    if root.is_dir():
        for path in sorted(root.glob("*/dt=*.parquet")):
            day = date.fromisoformat(path.stem.removeprefix("dt="))
            pending[(path.parent.name, day)] = pq.read_table(path)
    return _World(
        config=SimConfig.model_validate(meta["config"]),
        start=date.fromisoformat(meta["start"]),
        next_day=date.fromisoformat(meta["next_day"]),
        pop=Population.load(state_dir(settings) / "population.npz"),
        pending=pending,
    )


def _reset(settings: Settings) -> None:
    """Remove a previous world: its truth and its landing tables."""
    if settings.truth_dir.exists():
        shutil.rmtree(settings.truth_dir)
    for table in SIM_TABLES:
        folder = settings.landing_dir / table
        if folder.exists():
            shutil.rmtree(folder)


# ---------------------------------------------------------------- the initial base


def _initial_base(config: SimConfig, start: date) -> Population:
    """The customers who exist on the first day, already in a steady state."""
    rng = _rng(config, start, INIT)
    t0 = start.toordinal()
    n = config.n_customers
    # More recent signups than old ones: the business has been growing.
    ago = np.floor(config.rates.history_days * rng.random(n) ** 1.3).astype(np.int32)
    pop = new_customers(rng, n, t0 - 1 - ago, config)
    gap = rng.geometric(np.clip(pop.rate, 1e-3, 1.0)).astype(np.int32)
    pop.last_purchase[:] = np.maximum(t0 - gap, pop.signup_day)
    # Some customers are already on their way out when the simulation starts, as
    # many as the hazard implies, so churn runs at its steady rate from day one.
    hazard = behaviour.daily_hazard(pop, t0, config, 0.0)
    lags = behaviour.draw_lags(rng, n, config)
    leaving = rng.random(n) < np.clip(hazard * lags, 0.0, 0.5)
    elapsed = np.floor(rng.random(n) * lags).astype(np.int32)
    idx = np.flatnonzero(leaving)
    behaviour.start_disengaging(pop, idx, t0, lags[idx])
    pop.onset_day[idx] -= elapsed[idx]
    pop.churn_due[idx] -= elapsed[idx]
    # And some are in the middle of a quiet spell, as many as in the steady state.
    rates = config.rates
    mean_spell = (rates.quiet_spell_days_min + rates.quiet_spell_days_max) / 2
    busy = rates.quiet_spell_rate * mean_spell
    quiet = ~pop.disengaging & (rng.random(n) < busy / (1 + busy))
    spell = rng.integers(rates.quiet_spell_days_min, rates.quiet_spell_days_max + 1, n)
    left = 1 + np.floor(rng.random(n) * spell).astype(np.int32)
    pop.dormant_until[quiet] = t0 + left[quiet]
    pop.ewm_short[:] = pop.rate * behaviour.engagement(pop, t0)
    return pop


# ---------------------------------------------------------------- one day


@dataclass
class _DayOutput:
    tables: dict[str, pa.Table]
    treatments: pa.Table | None
    hazard_snapshot: pa.Table | None
    stats: _DayStats
    counterfactual: pa.Table | None = None


def _customer_rows(
    pop: Population, idx: np.ndarray, days: np.ndarray, seconds: np.ndarray
) -> pa.Table:
    return contract_table(
        "customers",
        {
            "customer_id": customer_ids(idx),
            "signup_date": dates(pop.signup_day[idx]),
            "plan": labels(pop.plan[idx], PLANS),
            "region": labels(pop.region[idx], REGIONS),
            "acquisition_channel": labels(pop.channel[idx], ACQUISITION_CHANNELS),
            "updated_at": timestamps(days, seconds),
        },
    )


def _act_on_exports(
    world: _World, settings: Settings, day: date, stats: _DayStats
) -> tuple[dict[str, pa.Table], actions.Delivery | None, pa.Table | None]:
    """Results of yesterday's queues and reviews (none on the world's first day),
    and the paired counterfactual of every exported contact (truth)."""
    if day == world.start:
        empty = {t: empty_table(t) for t in ("action_results", "review_decisions")}
        return empty, None, None
    config, pop, t = world.config, world.pop, day.toordinal()
    yesterday = day - timedelta(days=1)
    exported = actions.read_channel_exports(settings.exports_dir, yesterday, pop.size)
    twins = None
    if exported.size:
        horizon = load_business_config(settings.config_file).horizon_days
        # a generator of its own in the state the delivery below starts from, so
        # the contacted copy is contacted exactly as the customer
        rng = _rng(config, day, DELIVERY)
        twins = counterfactual.twin_outcomes(
            pop, exported, rng, day, world.start, config, horizon
        )
    delivery = actions.deliver(_rng(config, day, DELIVERY), pop, exported, t, config)
    queue = actions.read_review_queue(settings.exports_dir, yesterday, pop.size)
    reviews = actions.review(_rng(config, day, REVIEW), pop, queue, t, config)
    stats.exported_decisions, stats.reached = exported.size, delivery.reached
    stats.reviews = queue.size
    tables = {"action_results": delivery.results, "review_decisions": reviews}
    return tables, delivery if exported.size else None, twins


def _customers_of_the_day(world: _World, day: date, stats: _DayStats) -> pa.Table:
    """Signups (on the first day also the initial base) and attribute changes."""
    config, pop, t = world.config, world.pop, day.toordinal()
    rng = _rng(config, day, SIGNUPS)
    expected = config.rates.signup_rate * config.n_customers
    n_new = int(rng.poisson(expected * behaviour.signup_seasonality(day)))
    first_new = pop.size
    pop.extend(new_customers(rng, n_new, np.full(n_new, t), config))
    signup_seconds = rng.uniform(0, 86_400, n_new)
    stats.signups = n_new
    parts = []
    if day == world.start:
        # The base arrives as of its signups, so updated_at lies in the past.
        base = np.arange(first_new)
        base_seconds = rng.uniform(0, 86_400, first_new)
        parts.append(_customer_rows(pop, base, pop.signup_day[base], base_seconds))
    new = np.arange(first_new, pop.size)
    parts.append(_customer_rows(pop, new, np.full(n_new, t), signup_seconds))
    # Changes are drawn after the signup rows are built: those show the attributes
    # as they were at signup.
    eligible = pop.alive & (pop.signup_day < t)
    changes = behaviour.change_attributes(
        _rng(config, day, CHANGES), pop, eligible, config
    )
    days = np.full(changes.customer.size, t)
    parts.append(_customer_rows(pop, changes.customer, days, changes.seconds))
    return pa.concat_tables(parts)


def _tickets_of_the_day(world: _World, day: date, stats: _DayStats) -> pa.Table:
    config, pop, t = world.config, world.pop, day.toordinal()
    tickets = behaviour.draw_tickets(_rng(config, day, TICKETS), pop, config)
    behaviour.record_tickets(pop, tickets, t, config)
    stats.tickets = tickets.customer.size
    numbers = np.arange(1, tickets.customer.size + 1)
    return contract_table(
        "support_tickets",
        {
            "ticket_id": prefixed_ids("S" + day_prefix(day), numbers, 5),
            "customer_id": customer_ids(tickets.customer),
            "opened_at": timestamps(t, tickets.seconds),
            "topic": labels(tickets.topic, TICKET_TOPICS),
            "severity": labels(tickets.severity, TICKET_SEVERITIES),
        },
    )


def _churn(
    world: _World, day: date, drift: behaviour.DriftEffects, stats: _DayStats
) -> np.ndarray:
    """Who starts to disengage today and who leaves for good; returns the hazard."""
    config, pop, t = world.config, world.pop, day.toordinal()
    rng = _rng(config, day, HAZARD)
    step = behaviour.churn_step(rng, pop, t, config, drift.log_hazard)
    stats.onsets, stats.churned = step.onsets.size, int(step.leaving.sum())
    at_risk = step.at_risk
    stats.mean_hazard = float(step.hazard[at_risk].mean()) if at_risk.any() else 0.0
    return step.hazard


def _transactions_of_the_day(
    world: _World,
    day: date,
    drift: behaviour.DriftEffects,
    delivery: actions.Delivery | None,
    stats: _DayStats,
) -> pa.Table:
    """Purchases of the day, plus one for each voucher redeemed this morning."""
    config, pop, t = world.config, world.pop, day.toordinal()
    rng = _rng(config, day, PURCHASES)
    bought = behaviour.draw_purchases(rng, pop, t, day, config, drift.rate, drift.spend)
    voucher = np.array([], dtype=np.int64)
    voucher_seconds = np.array([], dtype=np.float64)
    if delivery is not None:
        # A customer who left today does not come back to redeem.
        keep = pop.alive[delivery.redeemed_customers]
        voucher = delivery.redeemed_customers[keep]
        voucher_seconds = delivery.redeemed_seconds[keep]
    noise = np.exp(config.rates.amount_noise_sigma * rng.normal(size=voucher.size))
    spend = pop.spend * drift.spend
    voucher_amount = np.round(spend[voucher] * noise * VOUCHER_PRICE_FACTOR, 2)

    order = np.argsort(np.concatenate([bought.seconds, voucher_seconds]), kind="stable")
    customer = np.concatenate([bought.customer, voucher])[order]
    seconds = np.concatenate([bought.seconds, voucher_seconds])[order]
    amount = np.concatenate([bought.amount, voucher_amount])[order]
    amount = np.maximum(amount, MIN_AMOUNT)
    category = np.concatenate([bought.category, pop.fav_category[voucher]])[order]
    discounted = np.concatenate([bought.is_discounted, np.ones(voucher.size, bool)])
    behaviour.record_purchases(pop, customer, t)
    stats.transactions, stats.revenue = customer.size, float(amount.sum())
    numbers = np.arange(1, customer.size + 1)
    return contract_table(
        "transactions",
        {
            "transaction_id": prefixed_ids("T" + day_prefix(day), numbers, 6),
            "customer_id": customer_ids(customer),
            "transaction_at": timestamps(t, seconds),
            "amount": pa.array(amount),
            "category": labels(category, CATEGORIES),
            "is_discounted": pa.array(discounted[order]),
        },
    )


def _simulate_day(world: _World, settings: Settings, day: date) -> _DayOutput:
    """Advance the world by ``day`` and return what it produced.

    ``ml.sim.counterfactual`` follows the same order of steps for its copies: a
    change of order here belongs there too."""
    pop, t = world.pop, day.toordinal()
    stats = _DayStats(day=day)
    tables, delivery, twins = _act_on_exports(world, settings, day, stats)
    tables["customers"] = _customers_of_the_day(world, day, stats)
    tables["support_tickets"] = _tickets_of_the_day(world, day, stats)
    segment = behaviour.drift_segment(pop, day, world.start, world.config)
    stats.drift_active = segment is not None
    drift = behaviour.drift_effects(segment, world.config)
    hazard = _churn(world, day, drift, stats)
    behaviour.start_quiet_spells(_rng(world.config, day, QUIET), pop, t, world.config)
    tables["transactions"] = _transactions_of_the_day(
        world, day, drift, delivery, stats
    )
    alive = pop.alive
    stats.customers_active = int(alive.sum())
    stats.disengaging = int((alive & pop.disengaging).sum())
    treatments = delivery.treatments if delivery is not None else None

    snapshot = None
    every = world.config.hazard_snapshot_every_days
    if every and (day - world.start).days % every == 0:
        snapshot = _hazard_snapshot(pop, t, hazard, alive)
    return _DayOutput(tables, treatments, snapshot, stats, twins)


def _hazard_snapshot(
    pop: Population, t: int, hazard: np.ndarray, alive: np.ndarray
) -> pa.Table:
    idx = np.flatnonzero(alive)
    treated = np.where(t < pop.treat_until, pop.treat_mult, 1.0)
    return pa.table(
        {
            "day": dates(np.full(idx.size, t)),
            "customer_id": customer_ids(idx),
            "hazard": pa.array(hazard[idx].astype(np.float32)),
            "engagement": pa.array(
                behaviour.engagement(pop, t)[idx].astype(np.float32)
            ),
            "is_disengaging": pa.array(pop.disengaging[idx]),
            "churn_due": optional_dates(pop.churn_due[idx], NO_DAY),
            "treatment_multiplier": pa.array(treated[idx].astype(np.float32)),
        }
    )


# ---------------------------------------------------------------- writing


def _write_landing(settings: Settings, table: str, day: date, data: pa.Table) -> None:
    if data.schema.names == TABLES[table].schema.names:
        write_partition(settings.landing_dir, table, day, data)
    else:
        write_raw_partition(settings.landing_dir, table, day, data)


def _write_truth_partition(
    settings: Settings, name: str, day: date, data: pa.Table
) -> None:
    folder = settings.truth_dir / name / f"dt={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, folder / "part-0000.parquet")


def _append_truth(
    settings: Settings, name: str, rows: pa.Table, days: set[date]
) -> None:
    """Add this call's rows to a truth table, replacing rows of re-simulated days."""
    path = settings.truth_dir / f"{name}.parquet"
    if path.is_file():
        old = pq.read_table(path)
        stale = pa.array([d in days for d in old.column("day").to_pylist()], pa.bool_())
        old = old.filter(pc.invert(stale))
        rows = pa.concat_tables([old, rows.cast(old.schema)]) if old.num_rows else rows
    pq.write_table(rows, path)


def _truth_customers(pop: Population) -> pa.Table:
    idx = np.arange(pop.size)
    columns: dict[str, pa.Array] = {
        "customer_id": customer_ids(idx),
        "signup_date": dates(pop.signup_day),
        "plan": labels(pop.plan, PLANS),
        "region": labels(pop.region, REGIONS),
        "acquisition_channel": labels(pop.channel, ACQUISITION_CHANNELS),
        "hidden_factor": pa.array(pop.hidden),
        "spend_level": pa.array(pop.spend),
        "purchase_rate": pa.array(pop.rate),
        "favourite_category": labels(pop.fav_category, CATEGORIES),
    }
    for k, action in enumerate(ACTIONS):
        columns[f"response_{action}"] = labels(pop.response[:, k], RESPONSE_TYPES)
    for k, action in enumerate(ACTIONS):
        columns[f"uplift_{action}"] = pa.array(pop.uplift[:, k])
    columns["disengaging_since"] = optional_dates(pop.onset_day, NO_DAY)
    columns["churned_on"] = optional_dates(pop.churned_on, NO_DAY)
    return pa.table(columns)


def _truth_churn_events(pop: Population) -> pa.Table:
    idx = np.flatnonzero(~pop.alive)
    idx = idx[np.lexsort((idx, pop.churned_on[idx]))]
    return pa.table(
        {
            "customer_id": customer_ids(idx),
            "churned_on": dates(pop.churned_on[idx]),
            "disengaging_since": dates(pop.onset_day[idx]),
        }
    )


def _faults_table(records: list[FaultRecord]) -> pa.Table:
    return pa.table(
        {
            "day": pa.array([r.day for r in records], pa.date32()),
            "table_name": pa.array([r.table for r in records], pa.string()),
            "fault": pa.array([r.fault for r in records], pa.string()),
            "rows": pa.array([r.rows for r in records], pa.int64()),
            "detail": pa.array([r.detail for r in records], pa.string()),
        }
    )


# ---------------------------------------------------------------- the loop


def _run(settings: Settings, world: _World, days: int, progress: bool) -> SimSummary:
    if days < 1:
        raise ValueError("days must be at least 1")
    first_day = world.next_day
    rows = dict.fromkeys(SIM_TABLES, 0)
    all_stats: list[_DayStats] = []
    fault_records: list[FaultRecord] = []
    treatments = 0
    churned_before = int((~world.pop.alive).sum())
    size_before = world.pop.size

    with Progress(
        TextColumn("[bold]simulating[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not progress,
        transient=False,
    ) as bar:
        task = bar.add_task("", total=days)
        for _ in range(days):
            day = world.next_day
            bar.update(task, description=day.isoformat())
            out = _simulate_day(world, settings, day)
            faulted = apply_faults(out.tables, day, world.start, world.config)
            # Late partitions of yesterday arrive together with today's data.
            for key in sorted(k for k in world.pending if k[1] < day):
                table, late_day = key
                data = world.pending.pop(key)
                _write_landing(settings, table, late_day, data)
                rows[table] += data.num_rows
            for table in SIM_TABLES:
                data = faulted.tables[table]
                if table in faulted.late:
                    world.pending[(table, day)] = data
                    continue
                _write_landing(settings, table, day, data)
                rows[table] += data.num_rows
            if out.treatments is not None:
                _write_truth_partition(settings, "treatments", day, out.treatments)
                treatments += out.treatments.num_rows
            if out.counterfactual is not None:
                _write_truth_partition(
                    settings, counterfactual.TRUTH_NAME, day, out.counterfactual
                )
            if out.hazard_snapshot is not None:
                _write_truth_partition(settings, "hazard", day, out.hazard_snapshot)
            fault_records.extend(faulted.records)
            all_stats.append(out.stats)
            world.next_day = day + timedelta(days=1)
            bar.advance(task)

    simulated = {s.day for s in all_stats}
    settings.truth_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        _truth_customers(world.pop), settings.truth_dir / "customers.parquet"
    )
    pq.write_table(
        _truth_churn_events(world.pop), settings.truth_dir / "churn_events.parquet"
    )
    daily = pa.Table.from_pylist([asdict(s) for s in all_stats])
    _append_truth(settings, "daily", daily, simulated)
    _append_truth(settings, "faults", _faults_table(fault_records), simulated)
    _save_world(settings, world)
    return SimSummary(
        first_day=first_day,
        last_day=world.next_day - timedelta(days=1),
        days=days,
        rows=rows,
        customers_total=world.pop.size,
        customers_active=int(world.pop.alive.sum()),
        signups=world.pop.size - size_before,
        churn_events=int((~world.pop.alive).sum()) - churned_before,
        treatments=treatments,
        faults=[f"{r.day} {r.table} {r.fault} ({r.rows} rows)" for r in fault_records],
    )


def simulate(
    settings: Settings,
    config: SimConfig,
    start: date,
    days: int,
    progress: bool = True,
    reset: bool = False,
) -> SimSummary:
    """Create a new world on ``start`` and simulate ``days`` days of it.

    Refuses to overwrite an existing world, or simulator tables already in landing,
    unless ``reset`` is true; a reset deletes ``truth/`` and the simulator's landing
    tables (exports and the warehouse are left alone).
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if reset:
        _reset(settings)
    elif world_exists(settings):
        raise WorldExistsError(
            f"a simulated world already exists under {settings.truth_dir} "
            f"(next day {next_sim_day(settings)}); continue it or pass reset=True"
        )
    else:
        occupied = [
            t for t in SIM_TABLES if list_partition_dates(settings.landing_dir, t)
        ]
        if occupied:
            raise WorldExistsError(
                f"landing already holds {', '.join(occupied)} under "
                f"{settings.landing_dir}; pass reset=True to replace them"
            )
    world = _World(
        config=config,
        start=start,
        next_day=start,
        pop=_initial_base(config, start),
        pending={},
    )
    return _run(settings, world, days, progress)


def simulate_days(
    settings: Settings, days: int = 1, progress: bool = False
) -> SimSummary:
    """Continue the persisted world by ``days`` days, acting on the exports."""
    return _run(settings, _load_world(settings), days, progress)


def simulate_next_day(settings: Settings) -> SimSummary:
    """Continue the persisted world by one day (the nightly step)."""
    return simulate_days(settings, 1, progress=False)
