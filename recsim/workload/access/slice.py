"""The rows of a table between two popularity ranks: what a hot or a cold shard of it sees.

Statistics-driven plans (RecShard's HBM/UVM tiering, FlexShard's hot-row replication) remap a
table's ids by access frequency and split it at a popularity rank: rows ``[start, end)`` in
hottest-first order form one shard. Conditioned on a lookup landing in the slice, its row follows
the table's popularity restricted to those ranks, renormalised: the slice's groups are the table's
groups cut at ``start`` and ``end`` (a group cut in two keeps its per-row probability on each side,
so fractional weights stay exact), and ``share`` (``top_k_share(end) - top_k_share(start)``) is the
fraction of the table's lookups that the slice receives.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from recsim.workload.access.model import AccessModel
from recsim.workload.access.popularity import GroupedPopularity, dot


class SliceModel(AccessModel):
    """Popularity ranks ``[start, end)`` of ``base`` (0 = hottest), renormalised."""

    dist = "slice"

    def __init__(self, base: AccessModel, start: int, end: int) -> None:
        if not 0 <= start < end <= base.rows:
            raise ValueError(f"slice [{start}, {end}) is not inside a table of {base.rows} rows")
        super().__init__(end - start, base.seed)
        self.base = base
        self.start = int(start)
        self.end = int(end)
        self.share = base.top_k_share(end) - base.top_k_share(start)

    @classmethod
    def from_spec(cls, spec: Any, rows: int, *, seed: int = 0) -> Self:
        raise TypeError("a slice is cut from a model, not built from a spec")

    def __repr__(self) -> str:
        return f"SliceModel({self.base!r}, {self.start}, {self.end})"

    def _popularity(self) -> GroupedPopularity:
        # Made once per base model and rank range: equal slices on several ranks share it.
        return self.base.popularity.derive(("slice", self.start, self.end), self._slice_popularity)

    def _slice_popularity(self) -> GroupedPopularity:
        pop = self.base.popularity
        lo = np.clip(pop._cum_rows[:-1], self.start, self.end)
        hi = np.clip(pop._cum_rows[1:], self.start, self.end)
        weights = hi - lo
        keep = weights > 1e-9 * max(1.0, float(self.rows))
        w = weights[keep]
        p = pop.probs[keep]
        mass = dot(w, p)
        if mass <= 0:  # pragma: no cover - every group has p > 0
            raise ValueError("slice without lookups")
        # A run of groups of the base, scaled: as ordered as the base's groups are.
        return GroupedPopularity._derived(w, np.minimum(1.0, p / mass), ordered=pop._nonincreasing)

    def _rank_probabilities(self) -> np.ndarray:
        probs = self.base.probabilities()[self.start : self.end]
        return probs / probs.sum()

    def _sample_ranks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        # Inverse-CDF over the slice's groups, then a uniform rank inside the chosen group.
        pop = self.popularity
        mass = pop.weights * pop.probs
        which = rng.choice(len(mass), size=n, p=mass / mass.sum())
        offsets = np.concatenate([[0.0], np.cumsum(pop.weights)])
        ranks = offsets[which] + rng.random(n) * pop.weights[which]
        return np.minimum(np.floor(ranks).astype(np.int64), self.rows - 1)

    def row_ids(self, ranks: np.ndarray) -> np.ndarray:
        """Row ids of the base table (the slice keeps the table's id space)."""
        return self.base.row_ids(np.asarray(ranks) + self.start)


def water_fill(weights: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``min(1, s probs)`` for the ``s`` that makes ``sum(weights * min(1, s probs)) = 1``.

    ``weights`` sum to at least 1 (a block holds a row or more). Starting from ``s = 1 / sum(w p)``,
    the mass of the groups that ``s`` caps at 1 is taken out and ``s`` rescales the rest; every step
    keeps ``sum(w min(1, s p)) <= 1``, so ``s`` only grows and the capped set only gains groups
    (at most one pass per group, a handful in practice) and stops at the root.
    """
    capped = np.zeros(probs.shape, dtype=bool)
    scale = 1.0 / dot(weights, probs)
    while True:
        grown = capped | (probs * scale >= 1.0)
        if not np.any(~grown):  # every row capped: a block of one row, or rows all equally hot
            return np.ones_like(probs)
        if np.array_equal(grown, capped):
            break
        capped = grown
        free = ~capped
        scale = (1.0 - float(weights[capped].sum())) / dot(weights[free], probs[free])
    return np.minimum(1.0, probs * scale)


class SubsetModel(AccessModel):
    """``rows`` rows of ``base`` taken uniformly at random (a row-wise block in id order).

    The access models spread hot rows over the id space, so an id range of ``f = rows / base.rows``
    of the table holds, in expectation, a share ``f`` of every popularity group: its groups are the
    table's with weights ``w_j f``. Conditioned on a lookup landing in the block, a row's probability
    is its table probability over the block's traffic, so ``s p_j`` for one scale ``s`` (``1 / f``
    when the block receives its share ``f`` of the lookups). A row hotter than a block's whole
    traffic (``s p_j > 1``; the hottest Zipf rows of a table cut in 64 blocks) is in one block, not
    spread: it is capped at probability 1, and ``s`` is the scale that makes the block's
    distribution sum to 1 (``sum_j w_j f min(1, s p_j) = 1``, water-filling: the mass the capped
    groups cannot hold goes to the others in proportion to ``p_j``, as their share of a block
    without the hot rows' excess traffic). Without it a 1/64 block of a Zipf(1.2) table summed to
    0.683, and an LRU cache of all but one of its rows hit 0.683 of its lookups instead of ~1.
    """

    dist = "subset"

    def __init__(self, base: AccessModel, rows: int) -> None:
        if not 0 < rows <= base.rows:
            raise ValueError(f"a subset of {rows} rows is not inside a table of {base.rows} rows")
        super().__init__(rows, base.seed)
        self.base = base
        self.fraction = rows / base.rows

    @classmethod
    def from_spec(cls, spec: Any, rows: int, *, seed: int = 0) -> Self:
        raise TypeError("a subset is cut from a model, not built from a spec")

    def __repr__(self) -> str:
        return f"SubsetModel({self.base!r}, {self.rows})"

    def _popularity(self) -> GroupedPopularity:
        # Made once per base model and fraction: the ranks' equal row-wise blocks of a table share it.
        return self.base.popularity.derive(("subset", self.fraction), self._subset_popularity)

    def _subset_popularity(self) -> GroupedPopularity:
        pop = self.base.popularity
        weights = pop.weights * self.fraction
        probs = water_fill(weights, pop.probs)
        # The base's groups under a monotone map: as ordered as they are (every table's ranks share one base).
        return GroupedPopularity._derived(weights, probs, ordered=pop._nonincreasing)

    def _rank_probabilities(self) -> np.ndarray:
        step = max(1, round(1 / self.fraction))
        probs = self.base.probabilities()[::step][: self.rows]
        return probs / probs.sum()

    def _sample_ranks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        ranks = self.base._sample_ranks(n, rng)
        return np.minimum((ranks * self.fraction).astype(np.int64), self.rows - 1)
