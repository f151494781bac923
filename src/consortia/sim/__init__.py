"""The seeded deterministic simulator: real consensus cores and real execution on a simulated
network with faults and byzantine validators. ``run_seed(seed)`` runs one reproducible scenario;
``python -m consortia.sim --seeds 0:500`` runs many and prints a summary."""

from consortia.sim.scenario import (
    BYZANTINE_ROLES,
    Crash,
    Partition,
    Role,
    Scenario,
    random_scenario,
)
from consortia.sim.simulation import (
    Commit,
    SimResult,
    Simulation,
    SimulationFailure,
    reproduce_command,
    run_seed,
)

__all__ = [
    "BYZANTINE_ROLES",
    "Commit",
    "Crash",
    "Partition",
    "Role",
    "Scenario",
    "SimResult",
    "Simulation",
    "SimulationFailure",
    "random_scenario",
    "reproduce_command",
    "run_seed",
]
