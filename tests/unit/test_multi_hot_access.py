"""Fixed multi-hot rows (``recsim.workload.access.multi_hot``): exact figures on tiny tables, the
mechanism of facebookresearch/dlrm's ``multi_hot.py`` simulated literally, properties, and the
workload key ``multi_hot: fixed_rows``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.config import Override
from recsim.errors import ConfigError
from recsim.workload.access import FixedRowsModel, access_model, shared_access_model
from recsim.workload.access.multi_hot import _background_atoms
from recsim.workload.access.popularity import GroupedPopularity
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import FixedRowsAccess, UniformAccess, ZipfAccess
from tests.conftest import FIXTURES

LIB = WorkloadLibrary([FIXTURES / "workloads"])


def fixed(base: UniformAccess | ZipfAccess, rows: int, hotness: int, seed: int = 0) -> FixedRowsModel:
    model = access_model(FixedRowsAccess(dist="fixed_rows", base=base, hotness=hotness), rows, seed=seed)
    assert isinstance(model, FixedRowsModel)
    return model


UNIFORM = UniformAccess(dist="uniform")


def zipf(alpha: float) -> ZipfAccess:
    return ZipfAccess(dist="zipf", alpha=alpha)


# ------------------------------------------------------------------------------ exact figures


def test_distinct_rows_by_hand():
    # Two rows, Zipf 1 (q = 2/3, 1/3), rows of 2 ids: one sample looks up its id and one extra,
    # uniform over the two rows, so 1 or 2 distinct rows with probability 1/2 each.
    assert fixed(zipf(1.0), 2, 2).expected_unique(2) == pytest.approx(1.5, rel=1e-12)
    # Ten uniform rows, rows of 3 ids, 2 samples: d = 10 (1 - 0.9^2) = 1.9 distinct ids, and of the
    # 8.1 other rows each is among the 3.8 extras with probability 1 - 0.9^3.8.
    assert fixed(UNIFORM, 10, 3).expected_unique(6) == pytest.approx(4.572415984860966, rel=1e-12)


def test_one_id_per_row_is_the_base_model():
    for spec in (UNIFORM, zipf(1.05)):
        base = access_model(spec, 40_000)
        model = fixed(spec, 40_000, 1)
        for n in (0.5, 10.0, 3e3, 1e6):
            assert model.expected_unique(n) == base.expected_unique(n)
        assert model.lru_hit_rate(500) == base.lru_hit_rate(500)
        assert model.top_k_share(100) == base.top_k_share(100)


def test_background_atoms_by_hand():
    # One kind of slot, mass 1e-3, ln 2 of them per row on average: a row's background is 1e-3 times
    # a Poisson(ln 2) count, which is 0 with probability exactly 1/2, so the lower half of the
    # 32 equal-probability atoms are 0 and the upper half hold the whole mean, 1e-3 ln 2, twice over.
    atoms = _background_atoms(np.array([1e-3]), np.array([math.log(2.0) * 10]), 10.0)
    assert atoms.size == 32
    assert np.all(atoms[:16] == pytest.approx(0.0, abs=1e-15))
    assert float(atoms.mean()) == pytest.approx(1e-3 * math.log(2.0), rel=1e-12)
    assert float(atoms[16:].mean()) == pytest.approx(2e-3 * math.log(2.0), rel=1e-9)
    # The top atom, the counts' top 1/32: every count of 4 and more (P(>= 4) = 0.0056) and 3s for
    # the rest (P(>= 3) = 0.0333 > 1/32).
    p = [math.exp(-math.log(2.0)) * math.log(2.0) ** j / math.factorial(j) for j in range(20)]
    tail4 = 1.0 - sum(p[:4])
    top = sum(j * p[j] for j in range(4, 20)) + 3 * (1 / 32 - tail4)
    # Within 1e-3: the grid (a step of 1/185 slot) splits each sum of slots between two points,
    # and the band's edge then takes the upper one's share (1.7e-4 here).
    assert float(atoms[-1]) == pytest.approx(1e-3 * top * 32, rel=1e-3)
    assert np.all(np.diff(atoms) >= -1e-12 * atoms[-1])


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(1e-9, 1e-2), min_size=1, max_size=6),
    counts=st.lists(st.integers(1, 300), min_size=6, max_size=6),
    rows=st.integers(2, 100_000),
)
def test_background_atoms_keep_the_mean_in_order(values, counts, rows):
    x = np.array(values)
    c = np.array(counts[: len(values)], dtype=np.float64)
    exact = rows <= 16
    atoms = _background_atoms(x, c, float(rows), exact=exact)
    assert float(atoms.mean()) == pytest.approx(float(np.dot(c, x)) / rows, rel=1e-9)
    assert np.all(np.diff(atoms) >= -1e-9 * atoms[-1])
    assert atoms[0] >= 0.0
    if exact:
        # A binomial count never passes all the slots, but for the grid: a slot split between its
        # two neighbouring points (a step of at most the largest slot / 64) reaches one step past.
        assert atoms[-1] <= float(np.dot(c, x)) + float(x.max()) / 64 * (1 + 1e-9)


def test_folded_rows_of_a_uniform_base_spread_like_a_lookup_table():
    # A uniform base: every row holds its own slot and a Poisson(P - 1) number of others, so rows
    # that drew more are hotter (the mass and the rows kept); at P = 1 the base itself.
    model = fixed(UNIFORM, 8, 5)
    p = model.probabilities()
    assert p.sum() == pytest.approx(1.0, rel=1e-12)
    assert p[0] > 1 / 8 > p[-1]
    assert fixed(UNIFORM, 8, 1).probabilities() == pytest.approx([1 / 8] * 8, rel=1e-12)


def test_popularity_groups_agree_with_the_explicit_probabilities():
    model = fixed(zipf(1.1), 5_000, 7)
    p = model.probabilities()
    assert p.sum() == pytest.approx(1.0, rel=1e-12)
    assert np.all(np.diff(p) <= 1e-15)
    for k in (1, 10, 700, 4_999):
        assert model.top_k_share(k) == pytest.approx(float(p[:k].sum()), rel=1e-6)
    assert model.popularity.rows == pytest.approx(5_000, rel=1e-12)
    # The hottest row is the hottest id's slot, q_1 / P, plus a background of a few slots.
    q1 = access_model(zipf(1.1), 5_000).probabilities()[0]
    assert q1 / 7 < p[0] < q1 / 7 + 10.0 / 5_000


# ------------------------------------------------------------------------------ the mechanism


def _multi_hot_py_distinct(q: np.ndarray, hotness: int, batch: int, trials: int) -> np.ndarray:
    """Distinct rows of ``batch`` samples as facebookresearch/dlrm torchrec_dlrm/multi_hot.py makes
    them: a lookup table ``[i, randint(0, N, P - 1)]`` per id (a new one per trial, the expectation
    being over its draws), one-hot ids drawn with probabilities ``q``."""
    rows = len(q)
    rng = np.random.default_rng(11)
    out = np.empty(trials)
    for t in range(trials):
        table = np.concatenate([np.arange(rows)[:, None], rng.integers(0, rows, (rows, hotness - 1))], axis=1)
        ids = rng.choice(rows, size=batch, p=q)
        out[t] = len(np.unique(table[ids]))
    return out


@pytest.mark.parametrize(("rows", "hotness", "batch"), [(2_000, 5, 300), (500, 27, 40), (3_000, 2, 2_000)])
def test_distinct_rows_match_the_mechanism(rows, hotness, batch):
    model = fixed(zipf(1.05), rows, hotness)
    q = model.base.probabilities()
    seen = _multi_hot_py_distinct(q, hotness, batch, trials=300)
    error = seen.std() / math.sqrt(len(seen))
    # Within four standard errors, and within 0.5 % (the model takes d at its mean).
    assert abs(model.expected_unique(batch * hotness) - seen.mean()) < max(4 * error, 0.005 * seen.mean())


def test_sample_is_the_mechanism():
    model = fixed(zipf(1.05), 10_000, 6, seed=3)
    a = model.sample(6 * 500, np.random.default_rng(1)).reshape(500, 6)
    b = model.sample(6 * 500, np.random.default_rng(2)).reshape(500, 6)
    assert a.min() >= 0 and a.max() < 10_000
    # Each sample's row starts with its one-hot id and is that id's fixed row, in every batch.
    assert np.array_equal(a[:, 1:], model.extras(a[:, 0]))
    common = np.intersect1d(a[:, 0], b[:, 0])
    assert common.size > 0
    for i in common[:20]:
        assert np.array_equal(a[a[:, 0] == i][0], b[b[:, 0] == i][0])
    # Another seed, other extras.
    assert not np.array_equal(fixed(zipf(1.05), 10_000, 6, seed=4).extras(a[:, 0]), a[:, 1:])
    # A cut row when P does not divide n.
    assert model.sample(7, np.random.default_rng(1)).shape == (7,)
    with pytest.raises(ValueError, match="cannot draw"):
        model.sample(-1, np.random.default_rng(1))


def test_sampled_distinct_rows_match_the_figure():
    model = fixed(zipf(1.05), 200_000, 12, seed=1)
    counts = [len(np.unique(model.sample(12 * 4_000, np.random.default_rng(s)))) for s in range(20)]
    assert np.mean(counts) == pytest.approx(model.expected_unique(12 * 4_000), rel=0.01)


def test_more_distinct_rows_than_independent_lookups_of_a_skewed_table():
    # The MLPerf DCNv2 shape: 40M rows, Zipf 1.05, a batch of 55,296 samples. Drawn independently
    # every lookup repeats the hot rows; tied to its id, a sample's extras are fresh rows.
    for hotness, independent in ((27, 0.2763), (100, 0.2185)):
        n = 55_296 * hotness
        assert access_model(zipf(1.05), 40_000_000).expected_unique(n) / n == pytest.approx(
            independent, abs=1e-4
        )
        assert fixed(zipf(1.05), 40_000_000, hotness).expected_unique(n) / n == pytest.approx(
            0.435 if hotness == 27 else 0.426, abs=1e-3
        )


# Was a strict xfail (helper-297) while the fold spread the cold slots evenly: 0.810 against 0.86.
# The rows' background is now the compound Poisson a materialised table gives them.
def test_folded_top_share_matches_a_realised_lookup_table():
    rows, hotness = 20_000, 27
    model = fixed(zipf(1.05), rows, hotness)
    q = model.base.probabilities()
    rng = np.random.default_rng(3)
    shares = []
    hits = []
    for _ in range(4):
        table = np.concatenate([np.arange(rows)[:, None], rng.integers(0, rows, (rows, hotness - 1))], axis=1)
        row_probs = np.bincount(table.ravel(), weights=np.repeat(q / hotness, hotness), minlength=rows)
        shares.append(float(np.sort(row_probs)[::-1][: rows // 2].sum()))
        hits.append(GroupedPopularity(np.ones(rows), np.sort(row_probs)[::-1]).lru_hit_rate(rows // 10))
    # 0.861 and 0.459 realised; the even spread gave 0.810 and 0.434.
    assert model.top_k_share(rows // 2) == pytest.approx(np.mean(shares), rel=0.005)
    assert model.lru_hit_rate(rows // 10) == pytest.approx(np.mean(hits), rel=0.01)


def test_bag_share_of_ranks_bounds():
    model = fixed(zipf(1.0), 4, 2)
    # Both parts of a split: every bag; no ranks: none; more ranks: more bags.
    assert model.rank_bag_share([(0, 2), (2, 4)]) == pytest.approx(1.0, rel=1e-12)
    assert model.rank_bag_share([(0, 4)]) == pytest.approx(1.0, rel=1e-12)
    assert model.rank_bag_share([(2, 2)]) == 0.0
    assert model.rank_bag_share([(1, 4)]) >= model.rank_bag_share([(2, 4)]) > 0.0
    # One id per row: the ranks' own lookup share.
    one = fixed(zipf(1.0), 4, 1)
    assert one.rank_bag_share([(1, 4)]) == pytest.approx(one.top_k_share(4) - one.top_k_share(1), rel=1e-12)


def _realised_lookup_tables(
    q: np.ndarray, hotness: int, tables: int = 4, seed: int = 4
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Lookup tables made as multi_hot.py makes them (id ``i``'s row: ``i`` and ``hotness - 1``
    uniform ids), seeded, with each row's share of the lookups under id probabilities ``q``."""
    rows = len(q)
    rng = np.random.default_rng(seed)
    for _ in range(tables):
        table = np.concatenate([np.arange(rows)[:, None], rng.integers(0, rows, (rows, hotness - 1))], axis=1)
        row_probs = np.bincount(table.ravel(), weights=np.repeat(q / hotness, hotness), minlength=rows)
        yield table, row_probs


@pytest.mark.parametrize(
    ("rows", "hotness", "hot"),
    [(2_000, 3, 200), (50_000, 8, 5_000), (20_000, 27, 2_000), (20_000, 27, 10_000)],
)
def test_cold_bag_share_matches_the_mechanism(rows, hotness, hot):
    # The bags (samples) with a lookup outside a realised table's ``hot`` hottest rows, on lookup
    # tables made as multi_hot.py makes them: 0.380 / 0.335 / 0.492 / 0.354 of the samples, where
    # independent lookups (1 - (1 - s)^P) would give 0.73 / 0.95 / 1.00 / 0.98. Within 4 %: the
    # runs of slots (before the compound-Poisson fold) gave 0.367 / 0.319 / 0.469 / 0.321.
    model = fixed(zipf(1.05), rows, hotness)
    q = model.base.probabilities()
    seen = []
    for table, row_probs in _realised_lookup_tables(q, hotness):
        in_hot = np.zeros(rows, dtype=bool)
        in_hot[np.argsort(-row_probs, kind="stable")[:hot]] = True
        seen.append(float(q[(~in_hot[table]).any(axis=1)].sum()))
    assert model.rank_bag_share([(hot, rows)]) == pytest.approx(np.mean(seen), rel=0.04)


def test_a_distributed_member_s_bag_share_of_every_rank_is_independent_draws():
    # Every rank of the table dealt to n members: each of a bag's P rows is on a given member one
    # time in n, so 1 - (1 - 1/n)^P of the bags meet it, as independent lookups would.
    model = fixed(zipf(1.0), 4, 2)
    assert model.rank_bag_share([(0, 4)], members=2) == pytest.approx(0.75, rel=1e-12)
    assert model.rank_bag_share([(0, 4)], members=3) == pytest.approx(5 / 9, rel=1e-12)
    assert model.rank_bag_share([(0, 2), (2, 4)], members=1) == pytest.approx(1.0, rel=1e-12)
    # One id a row: the member's share of the ranks' lookups.
    one = fixed(zipf(1.0), 4, 1)
    share = one.top_k_share(4) - one.top_k_share(1)
    assert one.rank_bag_share([(1, 4)], members=2) == pytest.approx(share / 2, rel=1e-12)
    with pytest.raises(ValueError, match="whole number >= 1 of ranks"):
        model.rank_bag_share([(0, 4)], members=0)


@pytest.mark.parametrize(
    ("rows", "hotness", "hot", "members"),
    [(2_000, 3, 200, 4), (20_000, 27, 2_000, 8), (20_000, 27, 10_000, 8)],
)
def test_a_distributed_member_s_bag_share_matches_the_mechanism(rows, hotness, hot, members):
    # HugeCTR's hybrid embedding under MLPerf's fixed rows: the rows below the ``hot`` replicated
    # ones dealt to ``members`` ranks in turn (rank ``hot + i`` of the realised lookup table's
    # popularity on member ``i mod members``). The bags with a lookup on a member, on lookup tables
    # made as multi_hot.py makes them (four, seeded; every member): 0.195 / 0.461 / 0.252 of the
    # samples, the model 0.193 / 0.452 / 0.256 (within 2 %), where independent lookups of the
    # member's share (1 - (1 - s / n)^P, used for distributed shards before) gave 0.228 / 0.763 /
    # 0.378 (17 to 65 % too many).
    model = fixed(zipf(1.05), rows, hotness)
    q = model.base.probabilities()
    seen = []
    for table, row_probs in _realised_lookup_tables(q, hotness):
        rank = np.empty(rows, dtype=np.int64)
        rank[np.argsort(-row_probs, kind="stable")] = np.arange(rows)
        for m in range(members):
            on_member = (rank >= hot) & ((rank - hot) % members == m)
            seen.append(float(q[on_member[table].any(axis=1)].sum()))
    realised = float(np.mean(seen))
    assert model.rank_bag_share([(hot, rows)], members) == pytest.approx(realised, rel=0.03)
    share = model.top_k_share(rows) - model.top_k_share(hot)
    assert 1.0 - (1.0 - share / members) ** hotness > 1.15 * realised


def test_shard_ops_bag_share_follows_the_fixed_rows():
    from recsim.graph.shard_ops import ShardOps, pooled_exchange
    from recsim.planner.types import Plan, Shard

    w = LIB.workload(
        "tiny-dlrm", [Override.parse("embedding.access={dist: zipf, alpha: 1.2, multi_hot: fixed_rows}")]
    )
    ops = ShardOps(w)
    cold = Shard("a", "table_wise", 10, 100, 0, 4, (0,), order="popularity")
    model = ops.table_model("a")
    assert isinstance(model, FixedRowsModel)
    assert ops.bag_share([cold]) == model.rank_bag_share([(10, 100)])
    # Fewer bags than independent draws of the same lookup share would touch.
    assert ops.bag_share([cold]) < ops.bags_hit("a", ops.lookup_share(cold))
    # An id-ordered block: a row's ids land in it independently (uniform extras, permuted ids).
    ids = Shard("a", "table_wise", 10, 100, 0, 4, (0,))
    assert ops.bag_share([ids]) == ops.bags_hit("a", ops.lookup_share(ids))
    # A rank's part of a routed shard: the lookup pools, the exchange sends and the planner keeps
    # room for the bags whose rows meet it (``part_bag_share``), the shard's ranks dealt to its 4
    # ranks in turn (2026-12-07: 1 - (1 - s / 4)^P of its lookup share, as independent lookups).
    routed = Shard("a", "distributed", 10, 100, 0, 4, (0, 1, 2, 3), order="popularity")
    assert ops.part_bag_share(routed) == model.rank_bag_share([(10, 100)], 4)
    assert ops.part_bag_share(routed) < ops.bags_hit("a", ops.member_share(routed))
    # A popularity slice alone: the bags ``bag_share`` gives the exchange of its block, which its
    # lookup pools too (2026-12-07: the lookup's and the planner's bags were independent draws,
    # bags_hit of its lookup share, the exchange's the fixed rows').
    assert ops.part_bag_share(cold) == ops.bag_share([cold]) < ops.bags_hit("a", ops.member_share(cold))
    lookup = ops.op(cold, "forward", 8, 4, hit_bags_only=True)
    assert lookup.bags == pytest.approx(8 * ops.bag_share([cold]), rel=1e-12)
    exchange = pooled_exchange(ops, Plan(4, (routed,)), 8, 2.0)
    assert list(exchange.send[0]) == pytest.approx([2 * 4 * 2.0 * ops.part_bag_share(routed)] * 4, rel=1e-12)
    by_id = dataclasses.replace(routed, order="id")
    assert ops.part_bag_share(by_id) == ops.bags_hit("a", ops.member_share(by_id))


# ------------------------------------------------------------------------------ properties


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 10**9),
    hotness=st.integers(1, 120),
    alpha=st.floats(0.3, 2.0),
    n=st.floats(0.0, 1e9),
    more=st.floats(0.0, 1e9),
)
def test_distinct_rows_bounded_and_monotone(rows, hotness, alpha, n, more):
    model = fixed(zipf(alpha), rows, hotness)
    u = model.expected_unique(n)
    assert 0.0 <= u <= min(n, rows) * (1 + 1e-12)
    assert model.expected_unique(n + more) >= u * (1 - 1e-12)
    # At least the distinct one-hot ids of n / P samples, at most P times them.
    d = model.base.expected_unique(n / hotness)
    assert d * (1 - 1e-9) <= u <= hotness * d * (1 + 1e-9) + 1e-12


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 10**8), hotness=st.integers(1, 120), alpha=st.floats(0.3, 2.0))
def test_folded_popularity_keeps_rows_and_mass(rows, hotness, alpha):
    pop = fixed(zipf(alpha), rows, hotness).popularity
    assert pop.rows == pytest.approx(rows, rel=1e-9)
    assert float(np.sum(pop.weights * pop.probs)) == pytest.approx(1.0, rel=1e-9)
    assert np.all(np.diff(pop.probs) <= 0)


@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(2, 10**8),
    hotness=st.integers(2, 60),
    alpha=st.floats(0.3, 2.0),
    cuts=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
    members=st.integers(1, 8),
)
def test_a_bag_share_is_the_models_whatever_was_asked_before(rows, hotness, alpha, cuts, members):
    # ``rank_bag_share`` keeps the slots' ranks on the model (``_slot_ranks``) after its first call:
    # a model asked about other spans first answers as a fresh one does, bit for bit.
    a, b, c, d = (int(x * rows) for x in cuts)
    first, then = [(min(a, b), max(a, b))], [(min(c, d), max(c, d)), (0, min(a, c))]
    asked = fixed(zipf(alpha), rows, hotness)
    asked.rank_bag_share(first, members=members)
    assert asked.rank_bag_share(then, members=members) == fixed(zipf(alpha), rows, hotness).rank_bag_share(
        then, members=members
    )


# ------------------------------------------------------------------------------ workloads


def test_workload_key_resolves_with_the_tables_pooling():
    w = LIB.workload(
        "tiny-dlrm", [Override.parse("embedding.access={dist: zipf, alpha: 1.2, multi_hot: fixed_rows}")]
    )
    spec = w.table_row_access(w.table("a"))
    assert spec == FixedRowsAccess(dist="fixed_rows", base=zipf(1.2), hotness=2)
    # Table b keeps its own access, independent lookups: the spec itself.
    assert w.table_row_access(w.table("b")) == zipf(1.1)
    model = shared_access_model(spec, 100)
    assert isinstance(model, FixedRowsModel) and model.hotness == 2
    assert shared_access_model(spec, 100) is model
    # Another row length, the same one-hot ids' model.
    longer = shared_access_model(spec.model_copy(update={"hotness": 5}), 100)
    assert longer is not model and longer.base is model.base


def test_fractional_pooling_with_fixed_rows_is_an_error(tmp_path):
    text = (FIXTURES / "workloads" / "tiny-dlrm.yaml").read_text()
    old = "{name: a, rows: 100, pooling: 2}"
    assert old in text
    path = tmp_path / "w.yaml"
    path.write_text(
        text.replace(
            old, "{name: a, rows: 100, pooling: 2.5, access: {dist: uniform, multi_hot: fixed_rows}}"
        )
    )
    with pytest.raises(ConfigError) as info:
        WorkloadLibrary([tmp_path]).workload(str(path))
    line = text.splitlines().index("tables:") + 1
    assert str(info.value).startswith(f"{path}:{line}: tables: table 'a': access multi_hot 'fixed_rows'"), (
        info.value
    )
    assert "whole number, got 2.5" in str(info.value)


def test_unknown_multi_hot_is_an_error(tmp_path):
    text = (FIXTURES / "workloads" / "tiny-dlrm.yaml").read_text()
    path = tmp_path / "w.yaml"
    path.write_text(
        text.replace("access: {dist: zipf, alpha: 1.1}", "access: {dist: zipf, alpha: 1.1, multi_hot: fixed}")
    )
    with pytest.raises(ConfigError, match="multi_hot") as info:
        WorkloadLibrary([tmp_path]).workload(str(path))
    assert "fixed_rows" in str(info.value)


def test_shipped_dcnv2_uses_fixed_rows():
    w = WorkloadLibrary().workload("dlrm-dcnv2")
    t20 = w.table("t20")
    assert w.table_row_access(t20) == FixedRowsAccess(dist="fixed_rows", base=zipf(1.05), hotness=100)
    # A one-hot table's row is its id: the Zipf itself.
    assert w.table_row_access(w.table("t5")) == zipf(1.05)
    v1 = WorkloadLibrary().workload("dlrm-mlperf")
    assert v1.table_row_access(v1.table("t0")) == zipf(1.05)


def test_model_checks_its_row_length():
    with pytest.raises(ValueError, match="whole number >= 1"):
        FixedRowsModel(access_model(UNIFORM, 10), 0)
    with pytest.raises(TypeError, match="FixedRowsAccess"):
        FixedRowsModel.from_spec(UNIFORM, 10)
