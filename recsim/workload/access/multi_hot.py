"""Fixed multi-hot rows: each one-hot id is always expanded to the same row of ``P`` ids.

MLPerf DLRM-DCNv2 trains on Criteo 1TB made multi-hot by facebookresearch/dlrm
``torchrec_dlrm/multi_hot.py`` (https://github.com/facebookresearch/dlrm/blob/main/torchrec_dlrm/multi_hot.py,
``Multihot.__make_multi_hot_indices_tables`` and ``__make_new_batch``; NVIDIA's v4.0 merlin_hugectr
README materialises the data with ``--multi_hot_distribution_type uniform``): once per run, seeded
(``np.random.seed(0)``), every table of ``N`` rows gets a lookup table whose row ``i`` is
``[i, u_1 .. u_{P-1}]``, the ``u`` drawn by ``np.random.randint(0, N, size=(N, P - 1))``; a sample
whose one-hot (Criteo) id is ``i`` then looks up that whole row (``torch.nn.functional.embedding``
of the one-hot ids into the lookup table). So a sample's ``P`` lookups are tied to its one id, and
an id seen twice in a batch repeats its whole row. The MLPerf data set is materialised once that
way (``torchrec_dlrm/scripts/materialize_synthetic_multihot_dataset.py``: the one-hot ids are the
preprocessed Criteo 1TB ids modulo the table's rows, ``sparse_data[:, j] % hash``, expanded by
``nn.functional.embedding(sparse_tensor, multi_hot_table)``; mlcommons/training's
recommendation_v2 README gives the md5sums of the result), so the one-hot ids follow Criteo's own
frequencies. ``FixedRowsModel`` wraps the model of the one-hot ids (``base``, the workload's
``dist``) with that expansion.

Distinct rows of a batch of ``B = n / P`` samples (``n`` lookups). Its one-hot ids have ``d``
distinct values, ``d = base.expected_unique(B)``; their rows hold the ``d`` ids themselves and
``d (P - 1)`` extras, each uniform over the ``N`` rows and independent of everything else (the
lookup table's draws). A row that is not one of the ``d`` ids is among the extras with probability
``1 - (1 - 1/N)^{d (P - 1)}``, so

    E[distinct] = d + (N - d) (1 - (1 - 1/N)^{d (P - 1)}),

the expectation over the lookup table's draws, with ``d`` at its mean (``d`` is a sum of many
nearly independent indicators, so it concentrates: the error is second order in its spread, and
as the formula is concave in ``d`` an overestimate: against the formula averaged over simulated
``d``, at most 0.33 % for tables of 155 rows and more at batches of 16 samples and more, up to
5 % only for tables of 3-14 rows at batches of 1-3 samples). The
correction counts the extras that land on each other and on the batch's own ids. ``P = 1`` gives
the base model; at ``d (P - 1) << N`` it is ``d P``: every distinct id brings ``P`` distinct rows.

Popularity, for the cache and top-k figures (``lru_hit_rate``, ``top_k_share``,
``missed_unique_share``). A one-hot id of probability ``q`` puts ``q / P`` of the lookups on each
of its ``P`` row slots, so the lookups go to ``N P`` slots, ``P`` for each of the base's rows,
spread over the ``N`` rows. The fold: the ``N`` hottest slots each on a row of their own, and the
mass of the other ``N (P - 1)`` slots, which land on random rows, spread evenly over all ``N`` rows
as a background ``b``: row ``k`` (hottest first) gets ``s_k + b``, ``s_k`` the ``k``-th hottest
slot. This keeps the mass, the order and ``N`` rows, is exact in expectation for a uniform base (every row
``1 / N``) and for ``P = 1``, and leaves the hot rows, which caches hold, their own probability
(``q / P``; two hot slots share a row with probability about their count over ``N``). Che's
approximation on these rows is what it is on the ``N P`` slots, where a sample's ``P`` lookups
coming together changes nothing: an id's slots stay in an LRU cache while the id recurs within the
cache's window, which is ``T / P`` samples for a window of ``T`` lookups, the same for every slot.
The even background is the expectation over the lookup table's draws, not a materialised table:
there each row holds a Poisson number of the cold slots (mean ``P - 1``), so rows spread around
``s_k + b`` and the ones that drew more are hotter. The fold so underestimates the hot mass of a
cache holding a large share of the rows (20k rows, 27-hot, Zipf 1.05: the top half 0.81 of the
lookups against 0.86 realised, its LRU hit rate 0.76 against 0.80; within 1 % for caches of a
thousandth of the rows; ``test_folded_top_share_matches_a_realised_lookup_table``, a strict xfail).
Models cut from this one (a popularity slice, a TBE mixture) count a batch's distinct rows on these
rows as independent lookups; at the MLPerf shapes (40M rows, Zipf 1.05, 3 to 100 ids a row, 6,912 to
55,296 samples) that is within 1.1 % of the formula above (0.4306 against 0.4259 of the lookups at
100 ids and 55,296 samples), as an id's slots are about as likely as its rows to be in the batch.
Against a simulated lookup table a popularity slice of the hottest tenth of the ranks counts its
distinct rows within 2 %; one of the other 90 % counts up to 17 % too many where it is not saturated
(2k-200k rows, 6-100 ids a row, Zipf 1.05-1.3: +6.5 % at 200k rows and 100 ids, +14 % at 2,209
rows and 6 ids), its share of the lookups too high by the fold's missing spread (above).

``sample`` draws the mechanism itself: ``ceil(n / P)`` one-hot ids from the base, each followed by
its ``P - 1`` extras, which are a fixed function of (seed, id, position) (a splitmix64 hash, as
``permutation``'s), so the same id brings the same row in every batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from recsim.workload.access.model import AccessModel, access_model, register, shared_access_model
from recsim.workload.access.permutation import _mix
from recsim.workload.access.popularity import GroupedPopularity, dot
from recsim.workload.spec import FixedRowsAccess

#: The word the extras' hash is keyed with besides the seed (any constant: it only keeps the
#: extras' stream apart from ``permutation``'s, which is keyed by the same seed).
_EXTRA_KEY = 0xF1ED_0F0A_11E5


@register
class FixedRowsModel(AccessModel):
    """One-hot ids drawn by ``base``, each looked up as its fixed row of ``hotness`` ids."""

    dist = "fixed_rows"

    def __init__(self, base: AccessModel, hotness: int, seed: int = 0) -> None:
        super().__init__(base.rows, seed)
        if hotness < 1 or hotness != int(hotness):
            raise ValueError(f"a fixed multi-hot row has a whole number >= 1 of ids, got {hotness}")
        self.base = base
        self.hotness = int(hotness)

    @classmethod
    def from_spec(cls, spec: Any, rows: int, *, seed: int = 0) -> Self:
        if not isinstance(spec, FixedRowsAccess):
            raise TypeError(f"expected FixedRowsAccess, got {type(spec).__name__}")
        # The one-hot ids' model is the base spec's own, shared with the tables of other row lengths
        # (dlrm-dcnv2's five 40M-row tables: one Zipf popularity, not five), unless seeded apart.
        base = shared_access_model(spec.base, rows) if seed == 0 else access_model(spec.base, rows, seed=seed)
        return cls(base, spec.hotness, seed)

    def __repr__(self) -> str:
        return f"FixedRowsModel({self.base!r}, hotness={self.hotness})"

    # -- figures --------------------------------------------------------------------------------

    def expected_unique(self, n_lookups: float) -> float:
        """Distinct rows among ``n_lookups`` lookups, ``n / P`` samples (the module docstring)."""
        n = max(0.0, n_lookups)
        if self.hotness == 1 or self.rows == 1:
            return self.base.expected_unique(n)
        d = self.base.expected_unique(n / self.hotness)
        extras = d * (self.hotness - 1)
        # (N - d) (1 - (1 - 1/N)^extras), with expm1/log1p so 1/N of 1e-9 keeps its digits.
        found = (self.rows - d) * -math.expm1(extras * math.log1p(-1.0 / self.rows))
        return min(float(self.rows), n, d + found)

    # A row of one id is the id: its figures are the base's own (closed forms included).

    def lru_hit_rate(self, cache_rows: float) -> float:
        return self.base.lru_hit_rate(cache_rows) if self.hotness == 1 else super().lru_hit_rate(cache_rows)

    def top_k_share(self, k: float) -> float:
        return self.base.top_k_share(k) if self.hotness == 1 else super().top_k_share(k)

    def characteristic_time(self, cache_rows: float) -> float:
        if self.hotness == 1:
            return self.base.characteristic_time(cache_rows)
        return super().characteristic_time(cache_rows)

    def missed_unique_share(self, n_lookups: float, cache_rows: float) -> float:
        if self.hotness == 1:
            return self.base.missed_unique_share(n_lookups, cache_rows)
        return super().missed_unique_share(n_lookups, cache_rows)

    def rank_bag_share(self, ranges: Sequence[tuple[int, int]]) -> float:
        """Share of the samples (bags) whose row has at least one lookup in the disjoint popularity
        ranks ``ranges`` of the fold (``[start, end)``, 0 the hottest; a hot/cold split's parts).

        Not ``1 - (1 - s)^P`` of a block receiving a share ``s`` of the lookups, which holds for
        independent lookups: a sample's ``P`` lookups are its id's row. In the fold an id of base
        rank ``r`` below ``ceil(N / P)`` has its ``P`` slots at ranks ``rP .. rP + P - 1``, so its
        bag hits the ranges iff they meet that run (the hot ids' bags are wholly in the hottest
        ranks: a replicated hot part serves them alone); the other ids' slots are the background,
        uniform over the rows, so such a bag hits ranges of ``R`` rows with ``1 - (1 - R/N)^P``."""
        slots = self.hotness
        head = -(-self.rows // slots)  # ids whose slots keep rows of their own
        runs = sorted((a // slots, min(head, -(-b // slots))) for a, b in ranges if b > a)
        hot = 0.0
        reach = 0
        for lo, hi in runs:
            lo = max(lo, reach)
            if hi > lo:
                hot += self.base.top_k_share(hi) - self.base.top_k_share(lo)
                reach = hi
        covered = sum(max(0, min(b, self.rows) - max(a, 0)) for a, b in ranges) / self.rows
        rest = max(0.0, 1.0 - self.base.top_k_share(head))
        background = rest * -math.expm1(slots * math.log1p(-min(1.0, covered))) if covered < 1 else rest
        return min(1.0, hot + background)

    # -- the popularity distribution ------------------------------------------------------------

    def _popularity(self) -> GroupedPopularity:
        base = self.base.popularity
        if self.hotness == 1:
            return base
        slots = base.weights * self.hotness
        probs = base.probs / self.hotness
        # The N hottest slots keep a row each: the base's groups cut at N slots.
        ends = np.cumsum(slots)
        kept = np.clip(ends, 0.0, self.rows) - np.clip(ends - slots, 0.0, self.rows)
        keep = kept > 1e-9 * self.rows
        w = kept[keep]
        p = probs[keep]
        background = max(0.0, 1.0 - dot(w, p)) / self.rows
        # A constant added to groups that were non-increasing leaves them so.
        return GroupedPopularity._derived(w, np.minimum(1.0, p + background), ordered=base._nonincreasing)

    def _rank_probabilities(self) -> np.ndarray:
        q = self.base.probabilities()
        if self.hotness == 1:
            return q
        # Rank k's P slots are slots kP .. kP + P - 1: the N hottest come from the first ceil(N/P) ranks.
        head = -(-self.rows // self.hotness)
        slots = np.repeat(q[:head] / self.hotness, self.hotness)[: self.rows]
        return slots + max(0.0, 1.0 - float(slots.sum())) / self.rows

    # -- generator ------------------------------------------------------------------------------

    def extras(self, ids: np.ndarray) -> np.ndarray:
        """The ``hotness - 1`` fixed extra ids of each one-hot id (shape ``ids.shape + (P - 1,)``):
        uniform over the rows, the same for an id in every call (fixed by the model's seed)."""
        ids = np.asarray(ids, dtype=np.int64)
        width = self.hotness - 1
        slot = ids.astype(np.uint64)[..., None] * np.uint64(max(1, width)) + np.arange(width, dtype=np.uint64)
        key = np.uint64(_mix(np.asarray([self.seed ^ _EXTRA_KEY], dtype=np.uint64))[0])
        # 64 hashed bits modulo N <= 2^53: the bias is below 2^-11 relative, far under sampling noise.
        return (_mix(slot ^ key) % np.uint64(self.rows)).astype(np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` row ids: the rows of ``ceil(n / P)`` one-hot ids drawn by the base, in order, each
        id followed by its extras (the last row cut short when ``P`` does not divide ``n``)."""
        if n < 0:
            raise ValueError(f"cannot draw {n} indices")
        ids = self.base.sample(-(-int(n) // self.hotness), rng)
        rows = np.concatenate([ids[:, None], self.extras(ids)], axis=1)
        return rows.ravel()[: int(n)]

    def _sample_ranks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        # Rows are not drawn by popularity rank here: a sample's ids are its one-hot id's fixed row.
        raise TypeError("a fixed-rows model draws row ids (sample), not popularity ranks")
