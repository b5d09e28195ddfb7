"""Embedding-table access models: which rows a stream of lookups touches, and what caches see of it.

``access_model(spec, rows, seed=...)`` turns one of ``recsim.workload.spec``'s access specs into an
``AccessModel`` for a table of ``rows`` rows (up to 10^9: nothing is per-row). The interface is on
``AccessModel``; the modules, one concept each:

- ``model``: the interface and the registry keyed by the spec's ``dist``; ``shared_access_model``,
  one model per (spec, rows) for the process (a workload's models are the same on every system);
- ``popularity``: the compressed popularity representation and the math on it (expected unique rows,
  Che's LRU approximation, LFU / top-k share), with its sources;
- ``uniform``, ``zipf``, ``empirical``: the models (``empirical`` fits ``locality_stats``);
- ``stats``: the ``locality_stats.txt`` parser and shipped-name resolution;
- ``reuse_fit``: the deconvolution of a reuse histogram into popularity classes;
- ``permutation``: the seeded rank -> row-id permutation that spreads hot rows over the ids;
- ``mixture``: several tables batched in one kernel (TBE), each keeping its own skew;
- ``multi_hot``: a base model's one-hot ids each expanded to a fixed row of ``P`` ids (MLPerf
  DLRM-DCNv2's synthetic multi-hot data), the ``multi_hot: fixed_rows`` of an access spec.
"""

from __future__ import annotations

from recsim.workload.access.empirical import EmpiricalModel
from recsim.workload.access.mixture import MixtureModel
from recsim.workload.access.model import (
    AccessModel,
    access_model,
    register,
    registered_dists,
    shared_access_model,
)
from recsim.workload.access.multi_hot import FixedRowsModel
from recsim.workload.access.popularity import GroupedPopularity
from recsim.workload.access.reuse_fit import ReuseMixture, fit_reuse_mixture
from recsim.workload.access.stats import (
    LocalityStats,
    load_section,
    parse_locality_stats,
    resolve_stats,
    shipped_access_root,
)
from recsim.workload.access.uniform import UniformModel
from recsim.workload.access.zipf import ZipfModel

__all__ = [
    "AccessModel",
    "EmpiricalModel",
    "FixedRowsModel",
    "GroupedPopularity",
    "LocalityStats",
    "MixtureModel",
    "ReuseMixture",
    "UniformModel",
    "ZipfModel",
    "access_model",
    "fit_reuse_mixture",
    "load_section",
    "parse_locality_stats",
    "register",
    "registered_dists",
    "resolve_stats",
    "shared_access_model",
    "shipped_access_root",
]
