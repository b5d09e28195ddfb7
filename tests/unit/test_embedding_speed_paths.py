"""The fast paths of the access models and the embedding cost give bit-identical figures.

``GroupedPopularity`` makes its derived arrays on first use, keeps the figures it computed and the
popularities derived from it, and reuses the Che search's per-group terms for the hit rate; subsets,
slices and mixtures build their groups through ``GroupedPopularity.derive`` and share them. None of
that may change a single bit: this file keeps the implementations they replaced, verbatim (the
``Old*`` class and the ``old_*`` functions), as oracles, and compares with ``==`` (exact), never
approximately, on the models of every shipped workload, the 2021 empirical sections and a few more
Zipf exponents, for several batch and cache sizes. ``ShardOps`` gives the tables of one access spec
and row count one model, where it made one per table (``OldShardOps``): the same ops and results.

The oracles' sums of products go through ``popularity.dot`` (numpy's own reduction) where they
called ``np.dot`` (BLAS, whose threads make the last bits depend on the machine): the same
arithmetic on both sides, so the comparisons stay exact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pytest
from scipy.optimize import brentq

from recsim.api import load_workload, make_plan, prepare, workload_rows
from recsim.cost.memo import CostMemo
from recsim.engine.simulate import SimulationOptions, simulate_training
from recsim.graph.shard_ops import ShardOps
from recsim.workload.access import (
    AccessModel,
    GroupedPopularity,
    MixtureModel,
    UniformModel,
    ZipfModel,
    access_model,
    load_section,
    parse_locality_stats,
    shipped_access_root,
)
from recsim.workload.access.empirical import EmpiricalModel
from recsim.workload.access.popularity import _out_of_range, dot
from recsim.workload.access.slice import SliceModel, SubsetModel, water_fill

# ------------------------------------------------------------------------------ the oracles


class OldGroupedPopularity:
    """``weights[j]`` rows of per-row lookup probability ``probs[j]``, hottest group first.

    ``weights`` may be fractional (quadrature nodes stand for a stretch of rows); ``sum(weights * probs)``
    is 1 up to rounding. ``top_k_share`` interpolates linearly inside a group, which is exact for
    groups of equal-probability rows.
    """

    def __init__(self, weights: np.ndarray, probs: np.ndarray) -> None:
        weights = np.asarray(weights, dtype=np.float64)
        probs = np.asarray(probs, dtype=np.float64)
        if weights.shape != probs.shape or weights.ndim != 1 or weights.size == 0:
            raise ValueError("weights and probs must be non-empty 1-D arrays of the same length")
        if np.any(weights <= 0) or np.any(probs <= 0) or np.any(probs > 1):
            raise ValueError("weights must be > 0 and probs in (0, 1]")
        if np.any(np.diff(probs) > 1e-12 * probs[:-1]):
            raise ValueError("groups must be sorted hottest first")
        self.weights = weights
        self.probs = probs
        self.rows = float(weights.sum())
        self._cum_rows = np.concatenate([[0.0], np.cumsum(weights)])
        self._cum_mass = np.concatenate([[0.0], np.cumsum(weights * probs)])
        # log1p(-p) once: expected_unique is called for many batch sizes on the same table. A row of
        # p = 1 (a one-row table) gives -inf, which expected_unique turns into "always seen".
        with np.errstate(divide="ignore"):
            self._log_miss = np.log1p(-probs)

    # -- reuse ----------------------------------------------------------------------------------

    def expected_unique(self, n_lookups: float) -> float:
        """``sum_i 1 - (1 - p_i)^n``: expected distinct rows among ``n`` IRM lookups."""
        if n_lookups <= 0:
            return 0.0
        with np.errstate(invalid="ignore"):  # p = 1 gives log1p(-1) = -inf, and n * -inf = -inf is fine
            seen = -np.expm1(n_lookups * self._log_miss)
        return dot(self.weights, seen)

    # -- caches ---------------------------------------------------------------------------------

    def occupancy(self, t: float) -> float:
        """``sum_i 1 - exp(-p_i t)``: expected distinct rows used in a window of ``t`` lookups."""
        return dot(self.weights, -np.expm1(-self.probs * t))

    def characteristic_time(self, cache_rows: float) -> float:
        """Che's ``T``: the window (in lookups) whose expected distinct rows fill ``cache_rows``.

        ``0`` for an empty cache and ``inf`` for a cache that holds every row.
        """
        if cache_rows <= 0:
            return 0.0
        if cache_rows >= self.rows:
            return math.inf

        def excess(log_t: float) -> float:
            return self.occupancy(math.exp(log_t)) - cache_rows

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
        log_t = brentq(excess, low, high, xtol=1e-12, rtol=1e-13)
        return math.exp(log_t)

    def lru_hit_rate(self, cache_rows: float) -> float:
        """Che's approximation of the hit rate of an LRU cache of ``cache_rows`` rows."""
        t = self.characteristic_time(cache_rows)
        if t == 0.0:
            return 0.0
        if math.isinf(t):
            return 1.0
        hit = dot(self.weights * self.probs, -np.expm1(-self.probs * t))
        return min(1.0, max(0.0, hit))

    def top_k_share(self, k: float) -> float:
        """Share of lookups that go to the ``k`` hottest rows (linear inside a group)."""
        if k <= 0:
            return 0.0
        if k >= self.rows:
            return 1.0
        j = int(np.searchsorted(self._cum_rows, k, side="right")) - 1
        share = self._cum_mass[j] + (k - self._cum_rows[j]) * self.probs[j]
        return min(1.0, float(share / self._cum_mass[-1]))


def old_mixture_popularity(models: Sequence[AccessModel], shares: Sequence[float]) -> OldGroupedPopularity:
    """``MixtureModel._popularity`` as it was (``shares`` already normalised), on the oracle."""
    weights, probs = [], []
    for model, share in zip(models, shares, strict=True):
        if share <= 0:
            continue
        pop = old_popularity(model)
        weights.append(pop.weights)
        probs.append(pop.probs * share)
    w = np.concatenate(weights)
    p = np.concatenate(probs)
    order = np.argsort(-p, kind="stable")
    return OldGroupedPopularity(w[order], p[order])


def old_slice_popularity(base: AccessModel, start: int, end: int) -> OldGroupedPopularity:
    """``SliceModel._popularity`` as it was, on the oracle."""
    rows = end - start
    pop = old_popularity(base)
    lo = np.clip(pop._cum_rows[:-1], start, end)
    hi = np.clip(pop._cum_rows[1:], start, end)
    weights = hi - lo
    keep = weights > 1e-9 * max(1.0, float(rows))
    w = weights[keep]
    p = pop.probs[keep]
    mass = dot(w, p)
    if mass <= 0:  # pragma: no cover - every group has p > 0
        raise ValueError("slice without lookups")
    return OldGroupedPopularity(w, np.minimum(1.0, p / mass))


def old_subset_popularity(base: AccessModel, rows: int) -> OldGroupedPopularity:
    """``SubsetModel._popularity`` as it was, on the oracle."""
    fraction = rows / base.rows
    pop = old_popularity(base)
    # The block's probabilities by the same ``water_fill`` (checked against brentq in test_access.py):
    # this oracle checks the figures' caching, not the block's construction.
    weights = pop.weights * fraction
    return OldGroupedPopularity(weights, water_fill(weights, pop.probs))


def old_popularity(model: AccessModel) -> OldGroupedPopularity:
    """The oracle popularity of any model: derived ones the old way, base ones from their groups
    (``UniformModel``, ``ZipfModel`` and ``EmpiricalModel`` build them as before)."""
    if isinstance(model, MixtureModel):
        return old_mixture_popularity(model.models, model.shares)
    if isinstance(model, SliceModel):
        return old_slice_popularity(model.base, model.start, model.end)
    if isinstance(model, SubsetModel):
        return old_subset_popularity(model.base, model.rows)
    pop = model._popularity()  # a fresh object: nothing computed on it yet
    return OldGroupedPopularity(pop.weights.copy(), pop.probs.copy())


# ------------------------------------------------------------------------------ the models


@lru_cache(maxsize=1)
def shipped_tables() -> tuple[tuple[object, int], ...]:
    """Every distinct (access spec, rows) of the shipped workloads, in a fixed order."""
    found: dict[tuple[str, int], tuple[object, int]] = {}
    for row in workload_rows():
        workload = load_workload(row["name"])
        for spec in workload.tables:
            access = workload.table_access(spec)
            found.setdefault((repr(access), int(spec.rows)), (access, int(spec.rows)))
    return tuple(found[key] for key in sorted(found, key=lambda k: (k[0], k[1])))


def base_models() -> list[AccessModel]:
    """A spread of the shipped tables (every 12th by rows, the smallest and largest of each
    spec), the 2021 empirical sections at three sizes, and Zipf at other exponents."""
    tables = shipped_tables()
    by_spec: dict[str, list[tuple[object, int]]] = {}
    for access, rows in tables:
        by_spec.setdefault(repr(access), []).append((access, rows))
    picked: list[tuple[object, int]] = []
    for entries in by_spec.values():
        entries.sort(key=lambda e: e[1])
        chosen = [*entries[::12], entries[-1]]
        picked += [e for i, e in enumerate(chosen) if e not in chosen[:i]]
    models: list[AccessModel] = [access_model(a, rows) for a, rows in picked]
    sections = parse_locality_stats(shipped_access_root() / "2021_locality_stats.txt")
    for index, rows in zip(
        range(len(sections)), (7, 100_000, 40_000_000, 3_000, 1_000_000_000), strict=False
    ):
        models.append(EmpiricalModel.from_stats(load_section("2021-locality", index), rows))
    models += [ZipfModel(rows, alpha) for alpha in (0.5, 1.0, 1.2, 2.0) for rows in (1, 2, 1500, 10**7)]
    return models


BASES = base_models()
CACHE_FRACTIONS = (1e-6, 1e-3, 0.01, 0.1, 0.5, 0.99, 1.0, 2.0)
CACHE_ROWS = (0.0, 0.5, 1.0, 7.3, 50e6 / 256, 50e6 / 512)
LOOKUPS = (0.0, 0.5, 1.0, 100.0, 55296.0 * 26, 1e6, 1e9)


def assert_same(new: GroupedPopularity, old: OldGroupedPopularity) -> None:
    """Every array and figure of ``new`` equals the oracle's exactly."""
    assert new.weights.dtype == old.weights.dtype and new.probs.dtype == old.probs.dtype
    assert np.array_equal(new.weights, old.weights) and np.array_equal(new.probs, old.probs)
    assert new.rows == old.rows
    assert np.array_equal(new._cum_rows, old._cum_rows)
    assert np.array_equal(new._cum_mass, old._cum_mass)
    assert np.array_equal(new._log_miss, old._log_miss)
    caches = [f * old.rows for f in CACHE_FRACTIONS] + list(CACHE_ROWS)
    for n in LOOKUPS:
        assert new.expected_unique(n) == old.expected_unique(n), n
        assert new.occupancy(n) == old.occupancy(n), n
    for c in caches:
        assert new.lru_hit_rate(c) == old.lru_hit_rate(c), c
        assert new.characteristic_time(c) == old.characteristic_time(c), c
        assert new.top_k_share(c) == old.top_k_share(c), c
    # Again, figures asked in the other order, on a copy with nothing computed yet.
    fresh = GroupedPopularity(new.weights, new.probs)
    for c in caches:
        assert fresh.characteristic_time(c) == old.characteristic_time(c), c
        assert fresh.lru_hit_rate(c) == old.lru_hit_rate(c), c
    # And the memoised answers once more.
    for c in caches:
        assert new.lru_hit_rate(c) == old.lru_hit_rate(c), c
    for n in LOOKUPS:
        assert new.expected_unique(n) == old.expected_unique(n), n


def assert_model_same(model: AccessModel) -> None:
    """The model's popularity and its ``AccessModel`` figures equal the oracle's."""
    old = old_popularity(model)
    assert_same(model.popularity, old)
    if type(model) is UniformModel:
        return  # closed forms, not the popularity's
    for n in LOOKUPS:
        want = min(float(model.rows), old.expected_unique(n), max(0.0, n))
        assert model.expected_unique(n) == want
    for c in [f * model.rows for f in CACHE_FRACTIONS] + list(CACHE_ROWS):
        want = 1.0 if c >= model.rows else old.lru_hit_rate(c)
        assert model.lru_hit_rate(c) == want
        if not isinstance(model, ZipfModel):
            assert model.top_k_share(c) == (1.0 if c >= model.rows else old.top_k_share(c))


# ------------------------------------------------------------------------------ tests


def test_the_sample_covers_the_shipped_models() -> None:
    kinds = {type(m).__name__ for m in BASES}
    assert kinds == {"UniformModel", "ZipfModel", "EmpiricalModel"}
    assert len(BASES) > 100


@pytest.mark.parametrize("chunk", range(4))
def test_base_models_are_bit_identical(chunk: int) -> None:
    for model in BASES[chunk::4]:
        assert_model_same(model)


@pytest.mark.parametrize("chunk", range(4))
def test_subsets_and_slices_are_bit_identical(chunk: int) -> None:
    for base in BASES[chunk::4]:
        rows = base.rows
        derived: list[AccessModel] = [SubsetModel(base, max(1, rows // k)) for k in (1, 2, 16, 128)]
        if rows >= 3:
            third = rows // 3
            derived += [SliceModel(base, 0, third), SliceModel(base, third, rows), SliceModel(base, 1, 2)]
        for model in derived:
            assert_model_same(model)


def mixtures_of(models: Sequence[AccessModel], seed: int) -> list[MixtureModel]:
    rng = np.random.default_rng(seed)
    out = []
    for size in (1, 2, 3, 7):
        pick = rng.choice(len(models), size=min(size, len(models)), replace=False)
        shares = [float(x) for x in rng.integers(0, 50, size=pick.size)]
        shares[0] += 1.0  # at least one positive share
        out.append(MixtureModel([models[i] for i in pick], shares))
    return out


def test_mixtures_are_bit_identical() -> None:
    parts: list[AccessModel] = []
    for base in BASES[::3]:
        parts += [base, SubsetModel(base, max(1, base.rows // 8))]
        if base.rows >= 10:
            parts.append(SliceModel(base, base.rows // 10, base.rows))
    for seed in range(12):
        for mixture in mixtures_of(parts, seed):
            assert_model_same(mixture)


def test_every_shipped_workload_fused_per_rank_is_bit_identical() -> None:
    """A rank's TBE: the workload's tables (its first 32: some have hundreds, which only make the
    arrays longer), each a row-wise block, shares by lookups."""
    for row in workload_rows():
        workload = load_workload(row["name"])
        tables = [(workload.table_access(t), t.rows, workload.table_lookups(t)) for t in workload.tables[:32]]
        for ranks in (1, 128):
            models = [SubsetModel(access_model(a, rows), max(1, rows // ranks)) for a, rows, _ in tables]
            assert_model_same(MixtureModel(models, [lookups for *_, lookups in tables]))


def test_equal_shards_share_one_popularity() -> None:
    base = ZipfModel(40_000_000, 1.05)
    other = ZipfModel(17_295, 1.05)
    a = MixtureModel([SubsetModel(base, 312_500), SubsetModel(other, 2_161)], [3.0, 1.0])
    b = MixtureModel([SubsetModel(base, 312_500), SubsetModel(other, 2_161)], [3.0, 1.0])
    c = MixtureModel([SubsetModel(base, 312_500), SubsetModel(other, 2_161)], [1.0, 3.0])
    assert a.popularity is b.popularity
    assert c.popularity is not a.popularity
    assert SliceModel(base, 10, 500).popularity is SliceModel(base, 10, 500).popularity
    assert SliceModel(base, 10, 500).popularity is not SliceModel(base, 10, 501).popularity
    for model in (a, b, c):
        assert_model_same(model)
    # A fresh base makes fresh popularities: the caches live on the model objects.
    again = MixtureModel([SubsetModel(ZipfModel(40_000_000, 1.05), 312_500)], [1.0])
    assert again.popularity is not MixtureModel([SubsetModel(base, 312_500)], [1.0]).popularity


def test_range_checks_match_the_elementwise_ones() -> None:
    rng = np.random.default_rng(0)
    specials = np.array([0.0, -0.0, -1.0, 1.0, 1.0 + 2**-52, np.nan, np.inf, -np.inf, 5e-324, 0.5])
    for _ in range(3000):
        n = int(rng.integers(1, 6))
        w = rng.choice(specials, size=n)
        p = rng.choice(specials, size=n)
        want = bool(np.any(w <= 0) or np.any(p <= 0) or np.any(p > 1))
        assert _out_of_range(w, p) == want, (w, p)


@pytest.mark.parametrize(
    ("weights", "probs"),
    [
        ([1.0, 2.0], [0.5, 0.25]),
        ([1.0, 0.0], [0.5, 0.25]),
        ([1.0, 1.0], [0.5, 0.0]),
        ([1.0, 1.0], [1.5, 0.25]),
        ([1.0, 1.0], [0.25, 0.5]),
        ([1.0, np.nan], [0.5, 0.25]),
        ([1.0, 1.0], [np.nan, 0.25]),
        ([], []),
        ([1.0], [0.5, 0.5]),
    ],
)
def test_construction_errors_are_unchanged(weights: list[float], probs: list[float]) -> None:
    def outcome(cls: type) -> str:
        try:
            cls(np.array(weights), np.array(probs))
        except ValueError as exc:
            return str(exc)
        return "ok"

    assert outcome(GroupedPopularity) == outcome(OldGroupedPopularity)


def test_uniform_and_zipf_keep_their_closed_forms() -> None:
    uni = UniformModel(1000)
    assert uni.lru_hit_rate(10.0) == 0.01
    assert math.isinf(uni.characteristic_time(1000.0))
    zipf = ZipfModel(10**7, 1.05)
    # The closed form (exact head, integrated tail) against the exact harmonic sums.
    weights = np.arange(1, 10**7 + 1, dtype=np.float64) ** -1.05
    assert zipf.top_k_share(2048.0) == pytest.approx(weights[:2048].sum() / weights.sum(), rel=1e-4)


# ------------------------------------------------------------------------------ shard figures


class OldShardOps(ShardOps):
    """``ShardOps`` with one access model per table name (``table_model`` verbatim)."""

    def table_model(self, name: str) -> AccessModel:
        model = self._models.get(name)
        if model is None:
            table = self.tables[name]
            model = access_model(self.w.table_row_access(table), table.rows)
            self._models[name] = model
        return model


@pytest.mark.parametrize(
    ("workload_name", "plan_name"),
    [
        ("dlrm-dcnv2", "table_wise"),
        ("dlrm-dcnv2", "row_wise"),
        ("dlrm-dcnv2", "recshard"),
        ("model-a", "table_wise"),
    ],
)
def test_tables_alike_share_one_model_and_the_figures_are_unchanged(
    workload_name: str, plan_name: str
) -> None:
    """Tables of one access spec and row count share an access model (``ShardOps.table_model``):
    the same ops and the same simulation, to the bit, as a model per table gives."""
    system, workload = prepare("dgx-h100", workload_name, nodes=2)
    plan = make_plan(plan_name, workload, system)
    new, old = ShardOps(workload), OldShardOps(workload)
    for shard in plan.shards:
        for pass_ in ("forward", "backward"):
            assert new.op(shard, pass_, 4096, plan.world_size) == old.op(shard, pass_, 4096, plan.world_size)
    results = []
    for ops in (ShardOps(workload), OldShardOps(workload)):
        memo = CostMemo(system, workload)
        memo.__dict__["shard_ops"] = ops  # the memo's cached_property, given
        result = simulate_training(system, workload, plan, SimulationOptions(costs=memo)).result
        results.append(json.dumps(result.to_dict(), sort_keys=True))
    assert results[0] == results[1]
    by_value: dict[tuple[object, int], list[str]] = {}
    for table in workload.tables:
        by_value.setdefault((workload.table_row_access(table), table.rows), []).append(table.name)
    for names in by_value.values():
        assert len({id(new.table_model(name)) for name in names}) == 1
    assert len({id(new.table_model(t.name)) for t in workload.tables}) == len(by_value)
    if workload_name == "dlrm-dcnv2":
        # Its five 40M-row tables shared one model (5) until their fixed multi-hot rows
        # (multi_hot: fixed_rows) made each row length (3, 7, 12, 27, 100) a model of its own.
        assert max(map(len, by_value.values())) == 1
        assert len({new.table_model(t.name).rows for t in workload.tables if t.rows == 40_000_000}) == 1
        assert len({id(new.table_model(t.name)) for t in workload.tables if t.rows == 40_000_000}) == 5


def test_a_mixture_of_one_part_is_that_part() -> None:
    """A TBE of one table (or whose other tables get no lookup) has the table's popularity object,
    the figures it keeps included; the union of its groups, which it would otherwise be, is equal
    to the bit (``assert_model_same``)."""
    base = ZipfModel(40_000_000, 1.05)
    for mixture in (MixtureModel([base], [3.0]), MixtureModel([base, ZipfModel(10, 0.5)], [2.0, 0.0])):
        assert mixture.popularity is base.popularity
        assert_model_same(mixture)
    assert MixtureModel([base, base], [1.0, 1.0]).popularity is not base.popularity
