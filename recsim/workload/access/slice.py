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


class SubsetModel(AccessModel):
    """``rows`` rows of ``base`` taken uniformly at random (a row-wise block in id order).

    The access models spread hot rows over the id space, so an id range of ``f = rows / base.rows``
    of the table holds, in expectation, a share ``f`` of every popularity group, and receives a
    share ``f`` of the lookups: its groups are the table's with weights ``w_j f`` and per-row
    probabilities ``p_j / f`` (conditioned on landing in the block). A row hotter than the block's
    whole traffic (``p_j > f``) is capped at probability 1: such a row is in one block, not spread.
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
        probs = np.minimum(1.0, pop.probs / self.fraction)
        # The base's groups scaled: as ordered as they are (every table's ranks share one base).
        return GroupedPopularity._derived(pop.weights * self.fraction, probs, ordered=pop._nonincreasing)

    def _rank_probabilities(self) -> np.ndarray:
        step = max(1, round(1 / self.fraction))
        probs = self.base.probabilities()[::step][: self.rows]
        return probs / probs.sum()

    def _sample_ranks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        ranks = self.base._sample_ranks(n, rng)
        return np.minimum((ranks * self.fraction).astype(np.int64), self.rows - 1)
