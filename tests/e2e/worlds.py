"""Small simulated worlds for the end-to-end tests."""

from __future__ import annotations

from datetime import date

from ml.config.settings import Settings
from ml.storage.warehouse import connect, ensure_schemas


def simulate_world(
    settings: Settings, *, customers: int, seed: int, start: date, days: int
) -> Settings:
    """A drift-free world of ``customers`` over ``days`` from ``start``, landed in
    ``settings``' home (replacing any earlier world), with the warehouse schemas
    created. The history is not loaded: the caller rebuilds what it needs."""
    from ml.sim import load_sim_config, simulate

    settings.ensure_dirs()
    with connect(settings.warehouse_path) as con:
        ensure_schemas(con)
    config = load_sim_config().model_copy(
        update={"n_customers": customers, "seed": seed, "drift": None}
    )
    simulate(settings, config, start=start, days=days, progress=False, reset=True)
    return settings
