"""recsim: a performance simulator and design-space explorer for deep-learning recommendation models.

The public API for notebooks and scripts lives in ``recsim.api`` and is re-exported here.
"""

__version__ = "0.1.0"

from recsim.api import (
    hardware_summary,
    load_system,
    load_workload,
    make_plan,
    plan,
    read_trace,
    replay,
    simulate,
    simulate_run,
    sweep,
    system_topology,
    validate,
)

__all__ = [
    "__version__",
    "hardware_summary",
    "load_system",
    "load_workload",
    "make_plan",
    "plan",
    "read_trace",
    "replay",
    "simulate",
    "simulate_run",
    "sweep",
    "system_topology",
    "validate",
]
