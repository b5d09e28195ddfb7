"""Plan proposers, a registry keyed by name (see ``base``); importing this package registers them."""

# Registration order is import order: the proposers first, ``auto`` (which runs all of them) last.
# isort: off
from recsim.planner.proposers import fixed, greedy, recshard, flexshard  # noqa: F401  (register)
from recsim.planner.proposers import exhaustive, hybrid_embedding, hier_auto  # noqa: F401  (register)
from recsim.planner.proposers import torchrec  # noqa: F401  (register)
from recsim.planner.proposers import auto  # noqa: F401  (register last)

# isort: on
from recsim.planner.proposers.base import (
    PlanningContext,
    Proposer,
    proposer,
    register_proposer,
    registered_proposers,
)

__all__ = ["PlanningContext", "Proposer", "proposer", "register_proposer", "registered_proposers"]
