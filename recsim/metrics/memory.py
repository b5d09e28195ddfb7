"""Memory accounting of a training step (see ``recsim.planner.storage`` for the model).

``rank_memory_bytes`` keeps the (HBM per rank, host bytes per rank) view the engines report;
the planner's ``plan_usage`` is the full model (HBM per rank, host DRAM and SSD per node).
"""

from __future__ import annotations

from recsim.hardware.system import System
from recsim.planner.storage import Usage, plan_usage
from recsim.planner.types import Plan
from recsim.workload.spec import Workload


def memory_usage(workload: Workload, plan: Plan, system: System) -> Usage:
    """HBM per rank, host DRAM and SSD per node of ``plan`` on ``system``."""
    return plan_usage(plan, workload, system)
