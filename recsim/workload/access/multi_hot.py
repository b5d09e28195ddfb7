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
spread over the ``N`` rows: row ``j`` holds its own id's slot and the extras that land on it, a
Binomial(``N (P - 1)``, ``1 / N``), so nearly Poisson(``P - 1``), number of them, of the masses of
uniformly chosen ids. The fold is this distribution of a row's mass, sorted (the expected sorted
rows of a lookup table, as the quantiles of the rows' mixture, which they are for many rows):

- the ``n_big`` hottest ids (``BIG_PER_ROW``: ``(P - 1) n_big / N = 0.03`` of them per row) have
  their ``P`` slots on ``P n_big`` rows, one each (two on one row, a share of ``0.03^2 / 2`` of
  the rows, is left out);
- the other rows, ``N - P n_big``, hold their own id's slot (a share ``theta`` of the other ids'
  rows);
- every remaining slot (the other ids' extras and own slots not kept) lands on a uniform row, so a
  row's background ``B`` is compound Poisson: the sum of the slots' masses, each present with
  probability ``1 / N``. Its distribution is computed from its characteristic function on a grid
  (an FFT) and cut into ``BACKGROUND_ATOMS`` equal-probability atoms (each its band's mean), and
  each row group of the two kinds above becomes one group per atom, ``slot + atom``. Tables of
  at most ``EXACT_ROWS_MAX`` rows keep every id's own slot on its row and count each extra on a row
  as a Bernoulli of ``1 / N`` (a binomial), so no row passes the table's whole mass.

This keeps the mass, the ``N`` rows and the order, is the base at ``P = 1``, and leaves the hot rows,
which caches hold, their own probability (``q / P`` and a background of a few slots). Che's
approximation on these rows is what it is on the ``N P`` slots, where a sample's ``P`` lookups
coming together changes nothing: an id's slots stay in an LRU cache while the id recurs within the
cache's window, which is ``T / P`` samples for a window of ``T`` lookups, the same for every slot.
Against lookup tables made as multi_hot.py makes them (2k-400k rows, 3-100 ids a row, Zipf 1.05 and
1.3; four tables each, made as the tests make them) the top-k shares and LRU hit rates of caches of
a thousandth to half the rows agree within 0.005 (20k rows, 27-hot, Zipf 1.05: the top half 0.861
against 0.861 realised, LRU of a tenth 0.456 against 0.459;
``test_folded_top_share_matches_a_realised_lookup_table``), and within 0.016 for 155 rows. The
fold used before spread the cold slots' mass evenly over the rows and so missed the rows that drew
more of them: 0.810 and 0.434 there, 0.882 against 0.908 for the top half of a 40M-row, 100-hot
table, the same within 1e-4 for caches of a thousandth of the rows.
Building it costs 1-2 ms a table (an FFT of 2^14 to 2^16 points; dlrm-dcnv2's 26 tables 34 ms
against 3 ms before), its figures what they cost before (about as many groups as the base).
Models cut from this one (a popularity slice, a TBE mixture) count a batch's distinct rows on these
rows as independent lookups; at the MLPerf shapes (40M rows, Zipf 1.05, 3 to 100 ids a row, 6,912 to
55,296 samples) that is within 1.1 % of the formula above (0.4306 against 0.4259 of the lookups at
100 ids and 55,296 samples), as an id's slots are about as likely as its rows to be in the batch.
Against simulated lookup tables (155-200k rows, 5-100 ids a row, Zipf 1.05/1.3, batches of 32 to
6,912 samples; twenty tables each) popularity slices of the hottest hundredth and tenth of the ranks
and of the other 90 % count their distinct rows within 1.1 % (+1.1 % at 2,209 rows, 6 ids, Zipf 1.3,
the rest within 0.8 %), their shares of the lookups within 0.005; with the even spread the cold
slice counted up to 17 % too many, its share too high by the missing spread.

``sample`` draws the mechanism itself: ``ceil(n / P)`` one-hot ids from the base, each followed by
its ``P - 1`` extras, which are a fixed function of (seed, id, position) (a splitmix64 hash, as
``permutation``'s), so the same id brings the same row in every batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from recsim.workload.access.model import (
    AccessModel,
    access_model,
    cached_attribute,
    register,
    shared_access_model,
)
from recsim.workload.access.permutation import _mix
from recsim.workload.access.popularity import GroupedPopularity
from recsim.workload.spec import FixedRowsAccess

#: Expected extras of the "big" ids (those given rows of their own) per row, ``(P - 1) n_big / N``.
#: A numerical setting, not a fit: the fold leaves out a row drawing two big slots, which a share of
#: about ``BIG_PER_ROW^2 / 2`` of the rows does, and the smaller it is the finer the background's
#: grid. Measured on 2,209-40M-row tables (3-100 ids a row, Zipf 1.05/1.3; top-k shares and LRU hit
#: rates at a thousandth to half the rows): 0.01 moves them by at most 0.0034, 0.1 by 0.0094.
BIG_PER_ROW = 0.03

#: Equal-probability atoms a row's background is cut into (each its band's mean, so the mean is
#: kept): the sorted rows are sums of a slot and one of these. A numerical setting: 128 atoms move
#: the figures above by at most 0.0013.
BACKGROUND_ATOMS = 32

#: The longest FFT grid for the background's distribution (points); a coarser step beyond it.
#: A cost bound: the tables above need 2^14 to 2^16.
GRID_POINTS_MAX = 1 << 16

#: Tables of at most this many rows take each slot as on a row or not (a Bernoulli of 1/N, the
#: extras' count a binomial), with every id's own slot kept on its row: a row then never holds more
#: than all the slots, which the Poisson count, a 1/N relative approximation, would let a table of
#: a few rows pass. A cost bound: the product over the slots costs a term per (row, frequency).
EXACT_ROWS_MAX = 16

#: The background's grid for those tables (points): at most 16 rows times 1,025 frequencies.
EXACT_GRID_POINTS = 1 << 11

#: Relative width of the probability bands the fold's groups are merged in (a cost setting: each
#: figure costs a term per group, and this keeps about the base's count). Merging changes the
#: figures above by at most 6e-5 (measured against no merging).
MERGE_STEP = 1.0 / 128.0

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

    def rank_bag_share(self, ranges: Sequence[tuple[int, int]], members: int = 1) -> float:
        """Share of the samples (bags) whose row has at least one lookup in the disjoint popularity
        ranks ``ranges`` of the fold (``[start, end)``, 0 the hottest; a hot/cold split's parts),
        or, with ``members`` > 1, in one member's rows of them where the ranks are dealt to
        ``members`` ranks in turn (a ``distributed`` shard: rank ``i`` of its rows on member
        ``i mod members``).

        Not ``1 - (1 - s)^P`` of a block receiving a share ``s`` of the lookups, which holds for
        independent lookups: a sample's ``P`` lookups are its id's row, whose slots make the rows
        they land on as hot as they are. An id of slot mass ``x = q / P`` has its own slot on a row
        of mass ``x + B`` (``B`` the background, ``_background_atoms``) and each extra on a uniform
        row, of mass ``x`` plus what that row holds without it, a row of the fold drawn uniformly
        (its ``BACKGROUND_ATOMS`` equal-row bands). With ``f_own`` and ``f_extra`` the chances that
        those masses rank inside ``ranges``, the id's bag misses them with ``(1 - f_own)
        (1 - f_extra)^(P - 1)`` (the rows' backgrounds independent). A hot id's rows are all among
        the hottest ranks, so a replicated hot part serves its bags alone. Against lookup tables
        made as multi_hot.py makes them (four each, 155-50k rows, 3-27 ids, Zipf 1.05/1.3,
        the hottest hundredth, tenth and half of the rows replicated) within 3.5 % for tables of 2k
        rows and more where the bags are more than a tenth of the samples, within 8 % otherwise
        (0.103 against 0.096 at 50k rows, 8 ids, Zipf 1.3; 0.498 against 0.542 at 155 rows); the
        runs of slots this replaced (ranks ``rP .. rP + P - 1`` for the ``N / P`` hottest ids, the
        others uniform) were off by up to 21 %.

        A member of ``n = members`` holds every ``n``-th rank: a row of a given mass ranks at one
        place in the spans, and that place is the member's one time in ``n`` whatever the mass (the
        fold knows a row's rank only to its group, far wider than ``n`` ranks), so each of the id's
        rows lands on the member with ``f / n``, independently across the id's rows as their ranks
        are: ``(1 - f_own / n) (1 - f_extra / n)^(P - 1)`` misses. Not ``1 - (1 - s / n)^P`` of the
        member's share ``s / n`` of the lookups: a hot id's ``P`` rows all rank among the hottest
        and meet a member of their range ``P / n`` times on average, the bag once at most, so the
        member sees fewer bags than independent lookups would spread there (the two agree where
        the spans hold every rank, ``f_own = f_extra = 1``)."""
        slots = self.hotness
        if members < 1:
            raise ValueError(f"a block's rows are dealt to a whole number >= 1 of ranks, got {members}")
        spans = [(max(0, a), min(self.rows, b)) for a, b in ranges if b > a]
        if slots == 1 or self.rows == 1:
            # One id a row: the member's share of the ranks' lookups.
            return min(1.0, sum(self.top_k_share(b) - self.top_k_share(a) for a, b in spans)) / members
        own_rank, extra_rank = self._slot_ranks

        def inside(rank: np.ndarray) -> np.ndarray:
            """Per base group, the share of the equally likely ranks (``_slot_ranks``) inside the
            spans: the chance the id's row of that mass ranks there."""
            hit = np.zeros(rank.shape, dtype=bool)
            for a, b in spans:
                hit |= (rank >= a) & (rank < b)
            return hit.mean(axis=1)

        f_own = inside(own_rank) / members
        f_extra = inside(extra_rank) / members
        extras_miss = (1.0 - f_extra) ** (slots - 1)
        miss = (1.0 - f_own) * extras_miss
        base = self.base.popularity
        return min(1.0, float(np.dot(base.weights * base.probs, 1.0 - miss)))

    @cached_attribute
    def _slot_ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """The popularity ranks ``rank_bag_share`` reads, per base group (rows) and equally likely
        background (columns): of the id's own slot (``slot + atom``, the background's atoms) and of
        an extra's (``slot + row_mass``, a uniform row's mass). They depend on the model alone, not
        on the spans asked about, so they are worked out once per model: the planner asks for the
        bag share of thousands of blocks of the same table (each time the fold's FFT and two
        searches over every group, 45 of the 54 s `plan` took on dlrm-dcnv2 at a 75 % HBM reserve).

        A row's rank is the rows of the fold hotter than it, at most ``N - 1`` (a mass below every
        group of the fold, which its bands' means allow, is the coldest row, not a row past the
        table: it ranked outside every span, and a block of every rank missed a share of the bags,
        0.74 of a 4-row table's for 0.75 at 2 ids dealt to 2 members)."""
        slots = self.hotness
        base = self.base.popularity
        _, _, _, atoms = _fold_parts(base.weights, base.probs, self.rows, slots)
        pop = self.popularity
        k = BACKGROUND_ATOMS
        levels = np.arange(k + 1, dtype=np.float64) / k * pop.rows
        # A uniform row's mass, the fold cut into k bands of equal rows (each its band's mean).
        row_mass = np.diff(np.interp(levels, pop._cum_rows, pop._cum_mass)) / (pop.rows / k)

        def rank_of(add: np.ndarray) -> np.ndarray:
            mass = (base.probs / slots)[:, None] + add[None, :]
            rank = pop._cum_rows[np.searchsorted(-pop.probs, -mass.ravel(), side="left")].reshape(mass.shape)
            return np.minimum(rank, self.rows - 1)

        return rank_of(atoms), rank_of(row_mass)

    # -- the popularity distribution ------------------------------------------------------------

    def _popularity(self) -> GroupedPopularity:
        base = self.base.popularity
        if self.hotness == 1 or self.rows == 1:
            return base  # one id a row, or one row holding every slot
        weights, probs = _spread_rows(base.weights, base.probs, self.rows, self.hotness)
        return GroupedPopularity._derived(weights, probs, ordered=True)

    def _rank_probabilities(self) -> np.ndarray:
        if self.hotness == 1 or self.rows == 1:
            return self.base.probabilities()
        # Rank i holds the rows [i, i + 1) of the groups: the mass between those cumulative rows.
        pop = self.popularity
        mass = np.interp(np.arange(self.rows + 1, dtype=np.float64), pop._cum_rows, pop._cum_mass)
        return np.diff(mass)

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


def _spread_rows(
    weights: np.ndarray, probs: np.ndarray, rows: int, hotness: int
) -> tuple[np.ndarray, np.ndarray]:
    """The fold's row groups (hottest first) of a table of ``rows`` rows whose one-hot ids have the
    groups ``(weights, probs)`` and rows of ``hotness`` ids (the module docstring).

    The ``n_big`` hottest ids (``BIG_PER_ROW``; none at ``EXACT_ROWS_MAX`` rows and fewer) put
    their ``P`` slots on ``P n_big`` rows, one each. The other ids' own slots stay on the other
    ``N - P n_big`` rows (a share ``theta`` of those ids' rows; the rest of their own slots are
    spread like the extras), and their extras fall on uniform rows, so a row's background, the
    mass of the spread slots landing on it, is compound Poisson: ``B = sum_s X_s`` with ``X_s`` a
    slot's mass with probability ``1/N``. Its distribution comes from its characteristic function
    ``exp(sum_s (e^{i t x_s} - 1) / N)`` on a grid (an FFT), cut into ``BACKGROUND_ATOMS``
    equal-probability atoms; each row group then splits into one group per atom."""
    big_w, small_w, theta, atoms = _fold_parts(weights, probs, rows, hotness)
    p = float(hotness)
    slot = probs / p
    k = atoms.size
    big = big_w > 0
    small = small_w * theta > 0
    group_w = np.concatenate([big_w[big] * p, small_w[small] * theta])
    group_p = np.concatenate([slot[big], slot[small]])
    out_w = np.repeat(group_w / k, k)
    out_p = (group_p[:, None] + atoms[None, :]).ravel()
    order = np.argsort(-out_p, kind="stable")
    out_w = out_w[order]
    out_p = out_p[order]
    # Groups whose probabilities agree to a relative MERGE_STEP merged into one of their mass and rows
    # (the cost of every figure is a term per group; this keeps about the base's count).
    cut = np.floor(np.log(out_p) / MERGE_STEP)
    starts = np.flatnonzero(np.concatenate([[True], cut[1:] != cut[:-1]]))
    rows_of = np.add.reduceat(out_w, starts)
    mass_of = np.add.reduceat(out_w * out_p, starts)
    return rows_of, np.minimum(1.0, mass_of / rows_of)


def _fold_parts(
    weights: np.ndarray, probs: np.ndarray, rows: int, hotness: int
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """The fold's parts (``_spread_rows``): each base group's rows among the big ids and among the
    others, the share ``theta`` of the others' rows that keep their own slot, and the background's
    atoms."""
    n = float(rows)
    p = float(hotness)
    slot = probs / p
    # The big ids: the hottest n_big rows of the base (a fractional group at the cut).
    exact = rows <= EXACT_ROWS_MAX
    n_big = 0.0 if exact else min(n / p, BIG_PER_ROW * n / (p - 1.0))
    ends = np.cumsum(weights)
    big_w = np.clip(ends, 0.0, n_big) - np.clip(ends - weights, 0.0, n_big)
    # The rest of each group, cut the same way (not ``weights - big_w``, which leaves 1e-13 rows of
    # the hottest ids, whose slots would stretch the background's grid).
    small_w = np.clip(ends, n_big, None) - np.clip(ends - weights, n_big, None)
    theta = (n - n_big * p) / (n - n_big) if n > n_big else 0.0
    # Spread slots of each small group: its P - 1 extras per id and the (1 - theta) own slots not kept.
    spread_w = small_w * (p - theta)
    return big_w, small_w, theta, _background_atoms(slot, spread_w, n, exact=exact)


def _background_atoms(
    values: np.ndarray, counts: np.ndarray, rows: float, *, exact: bool = False
) -> np.ndarray:
    """``BACKGROUND_ATOMS`` equal-probability atoms of a row's background ``B``, the sum of the
    ``counts`` slots of mass ``values`` that each land on the row with probability ``1 / rows``
    (non-decreasing; their mean is ``E[B] = sum counts * values / rows`` exactly). ``exact``: the
    slots' binomial count (``EXACT_ROWS_MAX``; whole ``counts``), not the Poisson one."""
    keep = counts > 0
    x = values[keep]
    c = counts[keep] / rows  # each slot's expected count on a row
    k = BACKGROUND_ATOMS
    mean = float(np.dot(c, x))
    if x.size == 0 or mean <= 0.0:
        return np.zeros(1)
    top = float(x.max())
    sd = math.sqrt(float(np.dot(c, x * x)))
    # The step resolves both the largest slot (64 steps) and the background's mean (128 steps). The
    # grid reaches t past the mean where Bernstein's inequality for summands <= top bounds the
    # tail, exp(-t^2 / (2 (var + top t / 3))), by e^-28 (1e-12): what lies beyond would wrap
    # around to the grid's low end.
    t = 28.0 * top / 3.0 + math.sqrt((28.0 * top / 3.0) ** 2 + 56.0 * sd * sd)
    reach = mean + t
    step = max(min(top / 64.0, mean / 128.0), reach / ((EXACT_GRID_POINTS if exact else GRID_POINTS_MAX) - 2))
    size = 1 << max(4, math.ceil(math.log2(reach / step + 2.0)))
    # Each slot split between the two grid points around it, so its mean is kept.
    pos = x / step
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    if exact:
        # Each slot is on the row or not (probability 1 / N): the product of the slots' Bernoulli
        # characteristic functions, so the row never holds more than all of them (a small table's
        # rows could otherwise pass probability 1). log1p's argument has a real part >= 0 (N >= 2).
        freq = np.arange(size // 2 + 1, dtype=np.float64) * (2.0 * math.pi / size)
        # A slot's transform, its mass split between points lo and lo + 1 (rfft's sign).
        at_lo = np.exp(-1j * np.outer(lo.astype(np.float64), freq))
        split = at_lo * ((1.0 - frac)[:, None] + frac[:, None] * np.exp(-1j * freq)[None, :])
        log_cf = (counts[keep][:, None] * np.log1p((split - 1.0) / rows)).sum(axis=0)
    else:
        # Many rows: the count of each slot on a row is Poisson (the binomial's difference is of
        # order 1 / N), and the slots' sum is one histogram's transform.
        hist = np.bincount(lo, weights=c * (1.0 - frac), minlength=size + 1)[:size]
        hist += np.bincount(lo + 1, weights=c * frac, minlength=size + 1)[:size]
        log_cf = np.fft.rfft(hist) - float(c.sum())
    pmf = np.fft.irfft(np.exp(log_cf), size)
    # The FFT's rounding leaves values of order 1e-16 around zero; they are not probabilities.
    pmf = np.clip(pmf, 0.0, None)
    pmf /= pmf.sum()
    grid = np.arange(size, dtype=np.float64) * step
    cum_p = np.concatenate([[0.0], np.cumsum(pmf)])
    cum_m = np.concatenate([[0.0], np.cumsum(pmf * grid)])
    # The mass below each quantile level, the last grid point split at the level.
    levels = np.arange(k + 1, dtype=np.float64) / k
    atoms = np.diff(np.interp(levels, cum_p, cum_m)) * k
    # The grid's mean is the slots' mean up to rounding (each slot split keeping its mean; the
    # clip above moves it by 1e-16): restore it exactly, so the fold keeps the total mass.
    return atoms * (mean / float(atoms.mean()))
