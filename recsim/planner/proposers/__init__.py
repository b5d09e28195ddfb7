"""Plan proposers, a registry keyed by name (see ``base``); importing this package registers them."""

from recsim.planner.proposers import auto, fixed, greedy  # noqa: F401  (register; auto last)
from recsim.planner.proposers.base import (
    PlanningContext,
    Proposer,
    proposer,
    register_proposer,
    registered_proposers,
)

__all__ = ["PlanningContext", "Proposer", "proposer", "register_proposer", "registered_proposers"]
