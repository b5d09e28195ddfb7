"""recsim: a performance simulator and design-space explorer for deep-learning recommendation models.

The public API for notebooks and scripts lives in ``recsim.api`` and is re-exported here.
"""

__version__ = "0.1.0"

from contextlib import suppress as _suppress

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
from recsim.errors import RecsimError as _RecsimError
from recsim.fingerprint import model_fingerprint as _model_fingerprint

# The fingerprint of the code this process loads, taken at import: a file edited later (under a
# running notebook kernel, say) does not change what the process's points are stamped with. A file
# that cannot be read now (removed meanwhile, no permission) must not break the import: the sweep
# that needs the fingerprint asks again and reports it.
with _suppress(_RecsimError):
    _model_fingerprint()

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
