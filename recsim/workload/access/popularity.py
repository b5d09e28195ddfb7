"""A compressed row-popularity distribution and the cache and reuse figures computed from it.

Every access model reduces a table's per-row lookup probabilities ``p_i`` (an independent reference
model, IRM: each lookup draws a row independently with these probabilities) to *groups*: ``w_j`` rows
that each have probability ``p_j``, sorted hottest first. A uniform table is one group, an empirical
one a few dozen, a Zipf table its hottest ranks one by one plus Gauss-Legendre nodes for the tail,
where ``w_j`` is a quadrature weight (a fractional number of rows). Every figure below is a sum
``sum_j w_j f(p_j)``, so a table of 10^9 rows costs a few thousand terms, never a per-row array.

Expected distinct rows among ``n`` lookups: row ``i`` is missed by all of them with probability
``(1 - p_i)^n``, so ``E[unique] = sum_i 1 - (1 - p_i)^n``, evaluated as ``-expm1(n log1p(-p_i))``
so that ``p_i`` of 1e-9 and ``n`` of 1e9 lose no digits.

LRU hit rate, Che's approximation (Che, Tung and Wang, "Hierarchical Web caching systems: modeling,
design and experimental results", IEEE JSAC 20(7), 2002): a cache of ``C`` rows behaves as if every
row stayed for the same *characteristic time* ``T`` after its last use, ``T`` being the root of
``sum_i 1 - exp(-p_i T) = C`` (the expected number of distinct rows used in ``T`` lookups fills the
cache); a lookup of row ``i`` hits if row ``i`` was used in the last ``T`` lookups, so
``hit(C) = sum_i p_i (1 - exp(-p_i T))``. Fricker, Robert and Roberts ("A versatile and accurate
approximation for LRU cache performance", ITC 24, 2012) explain why this mean-field estimate is
accurate for IRM streams with many rows, including small caches and Zipf popularity: the number of
distinct rows in a window is a sum of many independent indicators, so it concentrates at its mean.

LFU hit rate: for an IRM stream a perfect LFU cache converges to the ``C`` most popular rows, so its
hit rate is the traffic share of the hottest ``C`` rows, ``top_k_share(C)``; this is also the best any
cache of ``C`` rows can do on an IRM stream, so ``lru <= lfu``.

Cost: a plan's fused lookups build one popularity per rank and ask it for one or two figures, so
derived arrays are made on first use, figures are kept per object, and popularities derived from one
(slices, subsets, mixtures) are made once per object and shared. Every figure is still computed by
the same numpy expressions on the same arrays, so results are bit-for-bit those of the plain
implementation (``tests/unit/test_embedding_speed_paths.py`` keeps it as an oracle).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any, Self, TypeVar

import numpy as np
from scipy.optimize import brentq

from recsim.workload.access.model import cached_attribute

# numpy's C einsum, which ``np.einsum`` calls at its default ``optimize=False`` (``dot``). A private
# name: where a numpy release moves it, ``np.einsum`` itself (the same bits, slower).
try:  # numpy >= 2
    from numpy._core.multiarray import c_einsum as _c_einsum
except ImportError:
    try:  # numpy 1.26 (pyproject allows it)
        from numpy.core.multiarray import c_einsum as _c_einsum  # type: ignore[no-redef]
    except ImportError:
        _c_einsum = np.einsum  # type: ignore[assignment]

# scipy's C Brent solver, which ``brentq`` wraps (``_pick_root_finder``); a private name: where a
# scipy release moves it, None, and the searches call ``brentq`` itself (the same root, slower).
try:
    from scipy.optimize._zeros import _brentq as _C_BRENTQ
except ImportError:  # pragma: no cover (a scipy without it)
    _C_BRENTQ = None

#: Figures (``_figures``) and derived popularities (``_children``) one popularity keeps, the oldest
#: let go first. A design choice: an evaluation asks a model for a few figures and, row-wise, a
#: slice per rank group, but a model may be kept for the whole process
#: (``recsim.workload.access.shared_access_model``) while a sweep's points ask for figures at other
#: arguments and other slices. A table's slices hold its groups between them (a 40M-row Zipf
#: table's are ~70 kB with their arrays), so 32 of them are about two tables' worth. A figure or
#: popularity let go is worked out again, to the same value, when asked again.
FIGURES_KEPT = 256
CHILDREN_KEPT = 32

V = TypeVar("V")


#: Held while a bounded store lets its oldest entry go and takes the new one (``_remember``).
_STORE_LOCK = threading.Lock()


def _remember(store: dict[Any, V], key: Any, value: V, bound: int) -> V:
    """``store[key] = value``, first letting the oldest entry go when ``store`` holds ``bound``.

    Under a lock: a shared model (``shared_access_model``) is asked for figures from several
    threads at once where a sweep's points run in threads (a Dask worker's), and two threads that
    both picked the oldest key had both deleted it, the second with a ``KeyError`` (or a
    "dictionary changed size during iteration"). Only a figure not found takes it."""
    with _STORE_LOCK:
        if len(store) >= bound:
            del store[next(iter(store))]
        store[key] = value
    return value


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """``sum_j a_j b_j`` of two 1-D float arrays, summed by numpy itself (``einsum``), not BLAS.

    ``np.dot`` hands a long vector to OpenBLAS, which splits it over its threads: the last bits
    of the sum then depend on the machine's core count, and on a busy machine the threads wait
    for each other (a Che search's 6x10^4-term dots took 3 ms each instead of 20 us with both
    cores of a 2-core machine loaded, a plan's simulation 7.8 s instead of 1.0 s).

    Called as ``np.einsum`` calls it (``optimize=False``, its default: ``c_einsum(*operands)``, the
    same bits) without its Python dispatch, two thirds of each call's time in a Che search over a
    planner's shared cache (millions of calls for a thousand-table model)."""
    return float(_c_einsum("i,i->", a, b))


class GroupedPopularity:
    """``weights[j]`` rows of per-row lookup probability ``probs[j]``, hottest group first.

    ``weights`` may be fractional (quadrature nodes stand for a stretch of rows); ``sum(weights * probs)``
    is 1 up to rounding. ``top_k_share`` interpolates linearly inside a group, which is exact for
    groups of equal-probability rows.

    Cost: a fused (TBE) lookup builds one of these per rank from its tables' groups and asks for one
    or two figures, so the derived arrays (cumulative rows and mass, ``log1p(-p)``, ...) are made on
    first use, not in ``__init__``; each is computed by the same numpy expression as before, so the
    figures are bit-for-bit what an eager construction gives. An object is immutable, so it keeps
    the figures it was asked for (``lru_hit_rate``, ``expected_unique``, ...) and the popularities
    derived from it (``derive``): the ranks of a plan cut equal shards from one table and fuse equal
    sets of them, and each such popularity and figure is then computed once per model, not per rank.
    """

    def __init__(self, weights: np.ndarray, probs: np.ndarray) -> None:
        weights = np.asarray(weights, dtype=np.float64)
        probs = np.asarray(probs, dtype=np.float64)
        self._set(weights, probs, check_order=True)

    @classmethod
    def _derived(cls, weights: np.ndarray, probs: np.ndarray, *, ordered: bool) -> Self:
        """A popularity made by a model from validated groups (1-D float64 arrays of one length).

        ``ordered``: ``probs`` is non-increasing by construction (a sort, or a monotone map of
        groups that were), so the hottest-first check, which cannot fail then, is skipped; the
        range checks still run (a product may underflow to 0) and raise what ``__init__`` raises.
        """
        self = cls.__new__(cls)
        self._set(weights, probs, check_order=not ordered)
        return self

    def _set(self, weights: np.ndarray, probs: np.ndarray, *, check_order: bool) -> None:
        if weights.shape != probs.shape or weights.ndim != 1 or weights.size == 0:
            raise ValueError("weights and probs must be non-empty 1-D arrays of the same length")
        if _out_of_range(weights, probs):
            raise ValueError("weights must be > 0 and probs in (0, 1]")
        if check_order and np.any(np.diff(probs) > 1e-12 * probs[:-1]):
            raise ValueError("groups must be sorted hottest first")
        self.weights = weights
        self.probs = probs
        self.rows = float(weights.sum())
        # Che's T is searched by evaluating the occupancy at a dozen windows; the hit rate at the
        # root needs the same per-group terms again. The last search's terms, by window, negated
        # (``_unseen``).
        self._unseen_at: dict[float, np.ndarray] = {}
        # Figures already computed, by (figure, argument): the same figure of the same groups is
        # the same number (keys compare arguments exactly; a NaN never matches and is recomputed).
        self._figures: dict[tuple[str, float], float] = {}
        # Popularities derived from this one (``derive``), with the objects their key names by id.
        self._children: dict[tuple[object, ...], tuple[tuple[object, ...], GroupedPopularity]] = {}

    def derive(
        self, key: tuple[object, ...], make: Callable[[], GroupedPopularity], keep: tuple[object, ...] = ()
    ) -> GroupedPopularity:
        """The popularity ``make()`` builds from this one, made once per ``key``.

        ``key`` must name everything besides ``self`` that ``make`` reads (a slice's ranks, a
        subset's fraction, a mixture's other parts by ``id`` and its shares); objects named by
        ``id`` go in ``keep``, which holds them alive, so their ids cannot be reused while the key is
        stored. The cache lives on this object, so it lasts as long as the model it came from, and
        keeps the last ``CHILDREN_KEPT``.
        """
        found = self._children.get(key)
        if found is not None:
            return found[1]
        made = make()
        _remember(self._children, key, (keep, made), CHILDREN_KEPT)
        return made

    # -- derived arrays, on first use -----------------------------------------------------------

    @cached_attribute
    def _cum_rows(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.weights)])

    @cached_attribute
    def _mass(self) -> np.ndarray:
        """``weights * probs``: each group's share of the lookups."""
        return self.weights * self.probs

    @cached_attribute
    def _cum_mass(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self._mass)])

    @cached_attribute
    def _log_miss(self) -> np.ndarray:
        # log1p(-p) once: expected_unique is called for many batch sizes on the same table. A row of
        # p = 1 (a one-row table) gives -inf, which expected_unique turns into "always seen".
        with np.errstate(divide="ignore"):
            return np.log1p(-self.probs)

    @cached_attribute
    def _neg_probs(self) -> np.ndarray:
        # -p once: ``-probs * t`` is ``(-probs) * t``, so the product is the same bits.
        return -self.probs

    @cached_attribute
    def _nonincreasing(self) -> bool:
        """Whether ``probs`` never increases (a group may otherwise be 1e-12 hotter than the one
        before it); a monotone map of such groups keeps them hottest first."""
        p = self.probs
        return bool(np.all(p[1:] <= p[:-1]))

    # -- reuse ----------------------------------------------------------------------------------

    def expected_unique(self, n_lookups: float) -> float:
        """``sum_i 1 - (1 - p_i)^n``: expected distinct rows among ``n`` IRM lookups."""
        if n_lookups <= 0:
            return 0.0
        key = ("unique", n_lookups)
        found = self._figures.get(key)
        if found is not None:
            return found
        with np.errstate(invalid="ignore"):  # p = 1 gives log1p(-1) = -inf, and n * -inf = -inf is fine
            seen = n_lookups * self._log_miss
            np.expm1(seen, out=seen)
            np.negative(seen, out=seen)
        return _remember(self._figures, key, dot(self.weights, seen), FIGURES_KEPT)

    # -- caches ---------------------------------------------------------------------------------

    def _seen(self, t: float) -> np.ndarray:
        """``1 - exp(-p_j t)`` per group (the chance a row of group ``j`` is used in ``t`` lookups)."""
        seen = self._unseen(t)
        np.negative(seen, out=seen)
        return seen

    def _unseen(self, t: float) -> np.ndarray:
        """``exp(-p_j t) - 1`` per group: ``_seen(t)`` negated, exactly."""
        unseen = self._neg_probs * t
        np.expm1(unseen, out=unseen)
        return unseen

    def occupancy(self, t: float) -> float:
        """``sum_i 1 - exp(-p_i t)``: expected distinct rows used in a window of ``t`` lookups."""
        return dot(self.weights, self._seen(t))

    def characteristic_time(self, cache_rows: float) -> float:
        """Che's ``T``: the window (in lookups) whose expected distinct rows fill ``cache_rows``.

        ``0`` for an empty cache and ``inf`` for a cache that holds every row.
        """
        if cache_rows <= 0:
            return 0.0
        if cache_rows >= self.rows:
            return math.inf
        key = ("T", cache_rows)
        found = self._figures.get(key)
        if found is None:
            found = _remember(self._figures, key, self._search_t(cache_rows), FIGURES_KEPT)
        return found

    def _search_t(self, cache_rows: float) -> float:
        """``characteristic_time`` for ``0 < cache_rows < rows``: the root search."""
        # brentq evaluates the bracket's ends again, which were just evaluated to check it, and the
        # hit rate wants the terms at the root: keep every window's terms for this search.
        # Its excess too, by ``log t``: the ends' sums were worked out already (two of a dozen
        # evaluations; the same expression on the same terms, so the same bits). The terms are
        # kept negated, ``expm1(-p t)`` (``_unseen``), and their sums negated back: a product or a
        # sum of negated numbers is the negated product or sum to the bit (IEEE rounding to
        # nearest is symmetric), so that is ``dot(weights, _seen(t))`` with one pass fewer.
        unseen_at: dict[float, np.ndarray] = {}
        self._unseen_at = unseen_at
        excess_at: dict[float, float] = {}
        weights = self.weights

        def excess(log_t: float) -> float:
            found = excess_at.get(log_t)
            if found is not None:
                return found
            t = math.exp(log_t)
            unseen = unseen_at.get(t)
            if unseen is None:
                unseen = unseen_at[t] = self._unseen(t)
            value = excess_at[log_t] = -dot(weights, unseen) - cache_rows
            if value != value:  # as scipy's ``brentq`` refuses a NaN (``_find_root``)
                raise ValueError(f"The function value at x={log_t} is NaN; solver cannot continue.")
            return value

        # Bracket in log t: occupancy(t) <= t * sum(w p) = t, so t = C is at or below the root (at
        # it, within rounding, for tiny caches: then T = C); with p >= p_min every term is at least
        # 1 - exp(-p_min t), so t = -log(1 - C/rows) / p_min is at or above it.
        low = math.log(cache_rows)
        if excess(low) >= 0:
            return float(cache_rows)
        top = -math.log1p(-cache_rows / self.rows) / float(self.probs[-1])
        if not math.isfinite(top):
            return math.inf
        if not top > cache_rows:  # C/rows underflowed (subnormal caches): T = C to any precision
            return float(cache_rows)
        high = math.log(top)
        while excess(high) < 0:  # guards the bound against rounding
            high += 1.0
        log_t = _find_root(excess, low, high)
        return math.exp(log_t)

    def lru_hit_rate(self, cache_rows: float) -> float:
        """Che's approximation of the hit rate of an LRU cache of ``cache_rows`` rows."""
        key = ("lru", cache_rows)
        found = self._figures.get(key)
        if found is None:
            found = _remember(self._figures, key, self._lru_hit_rate(cache_rows), FIGURES_KEPT)
        return found

    def _lru_hit_rate(self, cache_rows: float) -> float:
        t = self.characteristic_time(cache_rows)
        if t == 0.0:
            return 0.0
        if math.isinf(t):
            return 1.0
        unseen = self._unseen_at.get(t)
        self._unseen_at = {}
        # ``dot(self._mass, self._seen(t))``, from the search's negated terms where it kept them.
        hit = dot(self._mass, self._seen(t)) if unseen is None else -dot(self._mass, unseen)
        return min(1.0, max(0.0, hit))

    def missed_unique_share(self, n_lookups: float, cache_rows: float) -> float:
        """Of the distinct rows among ``n_lookups`` IRM lookups, the expected share an LRU cache of
        ``cache_rows`` rows does not hold when the batch starts: ``sum_i u_i exp(-p_i T) / sum_i
        u_i`` with ``u_i = 1 - (1 - p_i)^n`` (row ``i`` is among the batch's rows) and Che's
        ``exp(-p_i T)`` (it is not in the cache), the two taken as independent (a batch is short
        beside the cache's window ``T``). Those rows are what a cache in front of slower memory
        fetches for the batch, each once however often the batch reads it."""
        if n_lookups <= 0:
            return 0.0
        t = self.characteristic_time(cache_rows)
        if t == 0.0:
            return 1.0
        if math.isinf(t):
            return 0.0
        key = ("missed", n_lookups, cache_rows)
        found = self._figures.get(key)
        if found is not None:
            return found
        with np.errstate(invalid="ignore"):
            used = n_lookups * self._log_miss
            np.expm1(used, out=used)
            np.negative(used, out=used)
        absent = self._neg_probs * t
        np.exp(absent, out=absent)
        unique = dot(self.weights, used)
        share = dot(self.weights, used * absent) / unique if unique > 0 else 0.0
        return _remember(self._figures, key, min(1.0, max(0.0, share)), FIGURES_KEPT)

    def top_k_share(self, k: float) -> float:
        """Share of lookups that go to the ``k`` hottest rows (linear inside a group)."""
        if k <= 0:
            return 0.0
        if k >= self.rows:
            return 1.0
        cum_rows = self._cum_rows
        cum_mass = self._cum_mass
        j = int(np.searchsorted(cum_rows, k, side="right")) - 1
        share = cum_mass[j] + (k - cum_rows[j]) * self.probs[j]
        return min(1.0, float(share / cum_mass[-1]))


def _brentq_checked(f: Callable[[float], float], a: float, b: float) -> float:
    """``scipy.optimize.brentq(f, a, b, xtol=1e-12, rtol=1e-13)``."""
    return float(brentq(f, a, b, xtol=1e-12, rtol=1e-13))


def _c_brentq_root(f: Callable[[float], float], a: float, b: float) -> float:
    """The same root from scipy's C Brent solver, called as ``brentq`` calls it (maxiter 100,
    no extra arguments, no full output) without its wrapper, which checks each value for NaN
    in Python (``excess`` does that itself): a twentieth of a cache-only plan's time."""
    return float(_C_BRENTQ(f, a, b, 1e-12, 1e-13, 100, (), False, True))


def _pick_root_finder() -> Callable[[Callable[[float], float], float, float], float]:
    """``_c_brentq_root`` where this scipy has the C solver it calls and its root on a probe is
    ``brentq``'s to the bit, else ``brentq`` itself: a private name, which a scipy release may
    move or change."""
    if _C_BRENTQ is None:
        return _brentq_checked

    def probe(x: float) -> float:
        return x * x * x - 2.0 * x - 5.0

    try:
        same = _c_brentq_root(probe, 2.0, 3.0) == _brentq_checked(probe, 2.0, 3.0)
    except Exception:  # any change of the private call's signature or result
        same = False
    return _c_brentq_root if same else _brentq_checked


def _out_of_range(weights: np.ndarray, probs: np.ndarray) -> bool:
    """``np.any(weights <= 0) or np.any(probs <= 0) or np.any(probs > 1)`` in three reductions.

    ``fmin``/``fmax`` skip NaNs as the element-wise comparisons do (a NaN compares false), so the
    verdict is the same for every input, NaNs included.
    """
    return bool(np.fmin.reduce(weights) <= 0 or np.fmin.reduce(probs) <= 0 or np.fmax.reduce(probs) > 1)


#: The root finder of Che's searches: ``brentq``'s root, its wrapper skipped where that is safe.
_find_root = _pick_root_finder()
