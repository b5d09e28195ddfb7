"""The ``AccessModel`` interface and the registry that maps an access spec's ``dist`` to a model.

An access model describes which rows of one embedding table a stream of lookups touches, as an
independent reference model (IRM): every lookup picks row ``i`` with a fixed probability ``p_i``.
Rows are numbered by popularity *rank* internally (0 = hottest); ``sample`` maps ranks to row ids
with a seeded permutation (``permutation.py``) so hot rows are spread over the id space.

Adding a distribution is one new class: subclass ``AccessModel``, set ``dist`` to the spec's
discriminator, implement ``from_spec``, ``_popularity``, ``_rank_probabilities`` and
``_sample_ranks`` (override the figures that have closed forms), and decorate it with ``@register``.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar, overload

import numpy as np

from recsim.errors import ConfigError
from recsim.workload.access.permutation import RowPermutation

if TYPE_CHECKING:
    from recsim.workload.access.popularity import GroupedPopularity

#: Tables up to this many rows may materialise per-row probabilities (``probabilities()``).
MAX_EXPLICIT_ROWS = 1 << 24

V = TypeVar("V")


class cached_attribute(Generic[V]):  # lower case: used like ``functools.cached_property``
    """``functools.cached_property`` without its lock: computed on first access, then a plain
    instance attribute (the descriptor has no ``__set__``, so the instance dict wins after that).

    Python 3.11's ``cached_property`` takes one class-wide ``RLock`` on every first access (3.12
    dropped it); the cost path makes thousands of short-lived ``Lookup``s and models per plan,
    whose first accesses paid for it. The values are pure functions of immutable objects, so two
    threads racing at worst compute the same value twice.
    """

    def __init__(self, func: Callable[[Any], V]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> Self: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> V: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> V | Self:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.func(instance)
        return value


class AccessModel(ABC):
    """Row popularity of one table of ``rows`` rows, and what caches and batches see of it.

    Interface (every figure is for an IRM stream; none materialises a per-row array):

    - ``expected_unique(n_lookups)``: expected distinct rows among ``n`` lookups, ``<= min(n, rows)``;
    - ``lru_hit_rate(cache_rows)``: steady-state hit rate of an LRU cache of that many rows (Che);
    - ``lfu_hit_rate(cache_rows)``: the same for a perfect LFU cache, ``top_k_share(cache_rows)``;
    - ``top_k_share(k)``: share of lookups that go to the ``k`` hottest rows (1 at ``k = rows``);
    - ``sample(n, rng)``: ``n`` row ids (int64, ``0..rows-1``) drawn with a numpy ``Generator``;
      the same generator state gives the same ids, and the hot rows are the same for every call
      (they are fixed by the model's ``seed``, not by ``rng``);
    - ``probabilities()``: per-rank probabilities, hottest first, for small tables (tests, plots).

    Counts (``n_lookups``, ``cache_rows``, ``k``) may be fractional; the figures are then
    interpolated, and they are monotone in the count.
    """

    dist: ClassVar[str]

    def __init__(self, rows: int, seed: int = 0) -> None:
        if rows < 1:
            raise ValueError(f"a table needs at least one row, got {rows}")
        self.rows = int(rows)
        self.seed = int(seed)

    @classmethod
    @abstractmethod
    def from_spec(cls, spec: Any, rows: int, *, seed: int = 0) -> Self:
        """The model of a table of ``rows`` rows for its ``spec`` (one of ``spec.py``'s access specs)."""

    # -- the popularity distribution ------------------------------------------------------------

    @cached_attribute
    def popularity(self) -> GroupedPopularity:
        """The compressed per-row probabilities every generic figure is computed from."""
        return self._popularity()

    @abstractmethod
    def _popularity(self) -> GroupedPopularity: ...

    def probabilities(self) -> np.ndarray:
        """Per-rank lookup probabilities, hottest first (only for tables of <= 2**24 rows)."""
        if self.rows > MAX_EXPLICIT_ROWS:
            raise ValueError(f"{self.rows} rows is too many to list one probability per row")
        return self._rank_probabilities()

    @abstractmethod
    def _rank_probabilities(self) -> np.ndarray: ...

    # -- figures --------------------------------------------------------------------------------

    def expected_unique(self, n_lookups: float) -> float:
        """Expected distinct rows among ``n_lookups`` lookups (capped at ``n`` for fractional ``n < 1``)."""
        return min(float(self.rows), self.popularity.expected_unique(n_lookups), max(0.0, n_lookups))

    def characteristic_time(self, cache_rows: float) -> float:
        """Che's characteristic time, in lookups (``inf`` once the cache holds the whole table)."""
        return self.popularity.characteristic_time(min(cache_rows, self.rows))

    def lru_hit_rate(self, cache_rows: float) -> float:
        """Steady-state hit rate of an LRU cache of ``cache_rows`` rows (Che's approximation)."""
        return 1.0 if cache_rows >= self.rows else self.popularity.lru_hit_rate(cache_rows)

    def missed_unique_share(self, n_lookups: float, cache_rows: float) -> float:
        """Share of the distinct rows of ``n_lookups`` lookups that an LRU cache of ``cache_rows``
        rows does not hold (``GroupedPopularity.missed_unique_share``): the rows it fetches."""
        return 0.0 if cache_rows >= self.rows else self.popularity.missed_unique_share(n_lookups, cache_rows)

    def lfu_hit_rate(self, cache_rows: float) -> float:
        """Hit rate of a perfect LFU cache of ``cache_rows`` rows: it holds the hottest rows."""
        return self.top_k_share(cache_rows)

    def top_k_share(self, k: float) -> float:
        """Share of lookups that go to the ``k`` hottest rows."""
        return 1.0 if k >= self.rows else self.popularity.top_k_share(k)

    # -- indices --------------------------------------------------------------------------------

    @cached_attribute
    def permutation(self) -> RowPermutation:
        """Popularity rank -> row id, fixed by ``(rows, seed)``."""
        return RowPermutation(self.rows, self.seed)

    def row_ids(self, ranks: np.ndarray) -> np.ndarray:
        """Row ids of popularity ranks (``row_ids(np.arange(k))`` are the ``k`` hottest rows)."""
        return self.permutation(np.asarray(ranks))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` i.i.d. row ids (int64) drawn from the model with ``rng``."""
        if n < 0:
            raise ValueError(f"cannot draw {n} indices")
        return self.row_ids(self._sample_ranks(int(n), rng))

    @abstractmethod
    def _sample_ranks(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` i.i.d. popularity ranks (int64, 0 = hottest)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rows={self.rows}, seed={self.seed})"


# ------------------------------------------------------------------------------ registry

M = TypeVar("M", bound=type[AccessModel])

_REGISTRY: dict[str, type[AccessModel]] = {}


def register(cls: M) -> M:
    """Class decorator: make ``cls`` the model of access specs with ``dist == cls.dist``."""
    dist = cls.dist
    if dist in _REGISTRY and _REGISTRY[dist] is not cls:
        raise ValueError(f"access dist {dist!r} is already registered to {_REGISTRY[dist].__name__}")
    _REGISTRY[dist] = cls
    return cls


def registered_dists() -> list[str]:
    """Every ``dist`` that has a model, sorted."""
    return sorted(_REGISTRY)


def access_model(spec: Any, rows: int, *, seed: int = 0) -> AccessModel:
    """The access model of a table of ``rows`` rows for an access spec (``UniformAccess``, ...).

    ``seed`` fixes which row ids are hot (pass a per-table value to decorrelate tables).
    """
    dist = getattr(spec, "dist", None)
    model = _REGISTRY.get(dist) if isinstance(dist, str) else None
    if model is None:
        raise ConfigError(f"access dist {dist!r} has no model (known: {', '.join(registered_dists())})")
    return model.from_spec(spec, rows, seed=seed)


#: Access models ``shared_access_model`` keeps for the process, the least recently used let go
#: first. A design choice: a production model has a thousand tables (model-a: 1,000 distinct
#: (spec, rows) pairs; dlrm-dcnv2 22 of its 26), each kept model being its popularity groups (up to
#: ~70 kB with their arrays, a 40M-row Zipf table's; model-a's thousand take 4.5 MB) and the
#: figures and slices asked of it (``popularity.FIGURES_KEPT``, ``CHILDREN_KEPT``).
SHARED_MODELS = 1024

#: Dists whose model is a function of the spec's numbers and the row count alone.
_PURE_DISTS = frozenset({"uniform", "zipf"})


def shared_access_model(spec: Any, rows: int) -> AccessModel:
    """``access_model(spec, rows)``, one object per (spec, rows) value for the process.

    An access model depends on the workload alone, never on the system: every point of a hardware
    sweep, each with its own ``ShardOps`` and ``CostModel``, asks for the same tables' models, and
    making them and working out their popularity, expected unique rows and cache hit rates was a
    tenth of an analytic evaluation at 128 GPUs. A model is immutable (the figures it keeps are
    pure functions of it and their argument), so sharing it changes no number. Bounded by
    ``SHARED_MODELS``; keyed by the spec's value (a frozen config) and ``rows``, an empirical spec
    by the stats file it names, resolved (``stats.resolve_stats``: a relative path is the file it
    reads now), as ``stats.load_section`` keeps that file's sections for the process already."""
    dist = getattr(spec, "dist", None)
    if dist in _PURE_DISTS or (dist == "fixed_rows" and getattr(spec.base, "dist", None) in _PURE_DISTS):
        # A fixed-rows spec is its base's numbers and the row length: as pure as its base.
        return _kept_model(spec, int(rows))
    if dist == "empirical":
        from recsim.workload.access.stats import resolve_stats  # the access package imports this module

        return _kept_empirical(resolve_stats(spec.stats), spec.section, int(rows))
    return access_model(spec, rows)


@functools.lru_cache(maxsize=SHARED_MODELS)
def _kept_model(spec: Any, rows: int) -> AccessModel:
    return access_model(spec, rows)


@functools.lru_cache(maxsize=SHARED_MODELS)
def _kept_empirical(path: Path, section: int | str, rows: int) -> AccessModel:
    """The model ``access_model`` makes of an empirical spec naming ``path`` and ``section``."""
    from recsim.workload.access.empirical import EmpiricalModel
    from recsim.workload.access.stats import load_section

    return EmpiricalModel.from_stats(load_section(path, section), rows)
