"""Collective communication cost: algorithms over the cluster topology, at two fidelities.

Fidelity 1 (``collective_time_s``, ``collective_cost``): an alpha-beta model per fabric level with
NCCL-like protocols, calibrated on measured NCCL times (``calibrate``; constants in the NVSwitch
and NIC ``calibration`` blocks). Fidelity 2 (``collective_flows`` here,
``recsim.engine.network.simulate_flows`` there): the algorithm's point-to-point flows sharing the
topology's links max-min fairly, which shows contention, oversubscription and stragglers.

Algorithms (``REGISTRY``, one class each, ``@register``): ``ring`` and ``tree`` (double binary
tree), ``nvls`` (in-switch reduction) and ``collnet`` (SHARP in the IB switches) all-reduce;
``ring_reduce_scatter``, ``ring_all_gather``; ``ring_chain`` (broadcast, reduce); ``direct`` and
``hierarchical`` all-to-all; ``p2p`` send/recv.
Modules: ``base`` (layout, levels, registry, defaults), ``ring``, ``tree``, ``nvls``, ``collnet``,
``alltoall``, ``p2p``, ``model`` (time, choice, flows, reduced precision), ``calibrate`` (datasets and fit).
"""

from recsim.cost.collectives import alltoall, collnet, nvls, p2p, ring, tree  # noqa: F401  (registration)
from recsim.cost.collectives.base import (
    REGISTRY,
    Algorithm,
    Flow,
    GroupLayout,
    Level,
    LevelCost,
    Stage,
    level_calibration,
    register,
    traffic_matrix,
)
from recsim.cost.collectives.model import (
    CollectiveCost,
    StageCost,
    bytes_per_rank,
    choose_algorithm,
    collective_cost,
    collective_flows,
    collective_time_s,
    conversion_time_s,
    phase_ranges,
)

__all__ = [
    "REGISTRY",
    "Algorithm",
    "CollectiveCost",
    "Flow",
    "GroupLayout",
    "Level",
    "LevelCost",
    "Stage",
    "StageCost",
    "bytes_per_rank",
    "choose_algorithm",
    "collective_cost",
    "collective_flows",
    "collective_time_s",
    "conversion_time_s",
    "level_calibration",
    "phase_ranges",
    "register",
    "traffic_matrix",
]
