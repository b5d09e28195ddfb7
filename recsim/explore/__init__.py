"""Design-space exploration: sweep specs, point evaluation, executors, a crash-safe store.

A sweep (``kind: sweep`` YAML, ``recsim.explore.spec``) names a base configuration, axes to vary,
validity filters, constraints, objectives and a search method. ``run_sweep`` enumerates its points
(``recsim.explore.points``), evaluates each (``recsim.explore.evaluate``) on a local process pool or
a Dask cluster (``recsim.explore.executors``), writes a ``PointRecord`` (``recsim.explore.records``)
to the SQLite store as each finishes (``recsim.explore.store``), and exports the results, the Pareto
front (``recsim.explore.pareto``) and its plot (``recsim.explore.plots``).

The heavy modules are imported on first use, so ``import recsim.explore`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recsim.explore.records import PointRecord

if TYPE_CHECKING:
    from recsim.explore.spec import SweepSpec, load_sweep
    from recsim.explore.sweep import SweepResult, run_sweep

__all__ = ["PointRecord", "SweepResult", "SweepSpec", "load_sweep", "run_sweep"]

_LAZY = {
    "SweepSpec": "recsim.explore.spec",
    "load_sweep": "recsim.explore.spec",
    "SweepResult": "recsim.explore.sweep",
    "run_sweep": "recsim.explore.sweep",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'recsim.explore' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
