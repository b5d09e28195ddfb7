"""The access pattern of several tables looked up by one table-batched kernel.

FBGEMM's TBE runs a rank's tables in one kernel over one concatenated row space. Its lookups are a
mixture: a fraction ``share_t`` of them (the table's share of the kernel's lookups) goes to table
``t``, distributed there as that table's own model says. The mixture's popularity is the union of
the tables' popularity groups with each probability scaled by its table's share, so cache and reuse
figures of the fused kernel keep every table's skew (a uniform model over the summed rows would
lose it).

A plan's ranks fuse equal sets of equal shards (a row-wise table's blocks on every rank), so the union
is made once per distinct set of part popularities and shares and shared (``GroupedPopularity.derive``
on the first part): the ranks' mixtures then share one popularity and each of its figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from recsim.workload.access.model import AccessModel
from recsim.workload.access.popularity import GroupedPopularity


class MixtureModel(AccessModel):
    """Tables ``models`` receiving ``shares`` of the lookups (shares are normalised to sum 1)."""

    dist = "mixture"

    def __init__(self, models: Sequence[AccessModel], shares: Sequence[float], seed: int = 0) -> None:
        if len(models) != len(shares) or not models:
            raise ValueError("a mixture needs one share per model, and at least one model")
        total = float(sum(shares))
        if total <= 0 or any(s < 0 for s in shares):
            raise ValueError("mixture shares must be >= 0 and not all zero")
        super().__init__(sum(m.rows for m in models), seed)
        self.models = list(models)
        self.shares = [float(s) / total for s in shares]

    @classmethod
    def from_spec(cls, spec: Any, rows: int, *, seed: int = 0) -> Self:
        raise TypeError("a mixture is built from models, not from a spec")

    def _popularity(self) -> GroupedPopularity:
        parts = [(m.popularity, s) for m, s in zip(self.models, self.shares, strict=True) if s > 0]
        if len(parts) == 1 and parts[0][1] == 1.0 and parts[0][0]._nonincreasing:
            # One part takes every lookup (a rank's TBE of one table): the union would copy its
            # groups as they are (``p * 1.0`` is ``p``, and a stable sort keeps non-increasing
            # probabilities in their order), so its popularity is that part's, with the figures
            # it keeps, rather than an equal copy whose every figure is worked out again.
            return parts[0][0]
        pops = tuple(pop for pop, _ in parts)
        shares = tuple(share for _, share in parts)
        # The ranks of a plan fuse equal sets of equal shards (whose popularities are shared objects,
        # ``SubsetModel``/``SliceModel``): key the union by its parts' identities and shares, on its
        # first part, so each distinct union is sorted once per model and its figures computed once.
        key = ("mixture", tuple(map(id, pops)), shares)
        return pops[0].derive(key, lambda: _union(pops, shares), keep=pops[1:])

    def _rank_probabilities(self) -> np.ndarray:
        parts = [m.probabilities() * s for m, s in zip(self.models, self.shares, strict=True)]
        return np.sort(np.concatenate(parts))[::-1]

    def _sample_ranks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        # Which table each lookup goes to, then a rank within it; ranks are offset per table.
        which = rng.choice(len(self.models), size=n, p=np.asarray(self.shares))
        out = np.empty(n, dtype=np.int64)
        offset = 0
        for i, model in enumerate(self.models):
            mask = which == i
            out[mask] = model._sample_ranks(int(mask.sum()), rng) + offset
            offset += model.rows
        return out


def _union(pops: Sequence[GroupedPopularity], shares: Sequence[float]) -> GroupedPopularity:
    """The groups of ``pops``, each scaled by its share, hottest first (ties keep part order)."""
    w = np.concatenate([pop.weights for pop in pops])
    # Each part's probabilities times its share, in one multiplication rather than one a part (a
    # planner mixes a rank's dozens of tables for every block it tries there): a product is
    # rounded alone, so it is the same number either way.
    sizes = [pop.probs.size for pop in pops]
    p = np.concatenate([pop.probs for pop in pops]) * np.repeat(np.asarray(shares, dtype=np.float64), sizes)
    order = np.argsort(-p, kind="stable")
    # Sorted hottest first by construction: only the range checks are left to run.
    return GroupedPopularity._derived(w[order], p[order], ordered=True)


def fused_access_model(models: Sequence[AccessModel], lookups: Sequence[float]) -> MixtureModel:
    """The access model of a table-batched (TBE) lookup of tables ``models`` receiving ``lookups``
    each (``CostModel.access`` of a fused node; the planner's estimate of a rank's shared cache).
    Where no part gets a lookup (a rank holding only the far tail of very skewed tables: a tester's
    Zipf 7) nothing is read, and any weights describe that; by rows, as a uniform draw over the
    fused rows would be."""
    shares = [float(m.rows) for m in models] if not sum(lookups) > 0 else list(lookups)
    return MixtureModel(models, shares)
