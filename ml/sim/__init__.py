"""The simulated world: a seeded, deterministic population of customers.

It writes daily landing partitions as a real source would (``settings.landing_dir``),
reacts to the pipeline's exported action queues and review queue, and keeps the
ground truth the pipeline must never read apart (``settings.truth_dir``).
"""

from ml.sim.sim_config import (
    DriftConfig,
    FaultConfig,
    FaultSpec,
    SimConfig,
    load_sim_config,
    with_row_faults,
)
from ml.sim.world import (
    NoWorldError,
    SimSummary,
    WorldExistsError,
    next_sim_day,
    simulate,
    simulate_days,
    simulate_next_day,
    world_exists,
)

__all__ = [
    "DriftConfig",
    "FaultConfig",
    "FaultSpec",
    "NoWorldError",
    "SimConfig",
    "SimSummary",
    "WorldExistsError",
    "load_sim_config",
    "next_sim_day",
    "simulate",
    "simulate_days",
    "simulate_next_day",
    "with_row_faults",
    "world_exists",
]
