"""Access models: exact values on tiny tables, brute-force sums, simulated caches, the 2021 stats.

Tolerances, and why:

- closed forms and brute-force sums: 1e-12 relative where the model is exact (uniform, Zipf tables
  of up to 1024 rows), 1e-6 where the Zipf tail is integrated (measured: ~1e-8);
- Che's approximation against a simulated LRU cache, and ``top_k_share`` against a simulated LFU
  cache: 2 percentage points (measured: <= 0.18 pp LRU, <= 0.36 pp LFU on these streams);
- the generator against the 2021 stats on a scaled-down batch (see ``test_generator_reproduces``).
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import zeta

from recsim.errors import ConfigError
from recsim.workload.access import (
    AccessModel,
    EmpiricalModel,
    UniformModel,
    ZipfModel,
    access_model,
    fit_reuse_mixture,
    load_section,
    parse_locality_stats,
    register,
    registered_dists,
    resolve_stats,
    shared_access_model,
    shipped_access_root,
)
from recsim.workload.access.permutation import RowPermutation
from recsim.workload.access.reuse_fit import predicted_stats
from recsim.workload.access.slice import SubsetModel, water_fill
from recsim.workload.access.zipf import HEAD
from recsim.workload.spec import EmpiricalAccess, UniformAccess, ZipfAccess

STATS = shipped_access_root() / "2021_locality_stats.txt"
SECTIONS = parse_locality_stats(STATS)


def uniform(rows: int, seed: int = 0) -> AccessModel:
    return access_model(UniformAccess(dist="uniform"), rows, seed=seed)


def zipf(rows: int, alpha: float, seed: int = 0) -> AccessModel:
    return access_model(ZipfAccess(dist="zipf", alpha=alpha), rows, seed=seed)


def empirical(rows: int, section: int | str = 0, seed: int = 0) -> AccessModel:
    return access_model(
        EmpiricalAccess(dist="empirical", stats="2021-locality", section=section), rows, seed=seed
    )


# ------------------------------------------------------------------------------ brute force


def brute_unique(p: np.ndarray, n: float) -> float:
    # (1 - p) ** n itself rounds 1 - p (a relative error of 1e-16 / p), so sum it in the log1p form.
    with np.errstate(divide="ignore"):  # p = 1: log1p(-1) = -inf, and expm1(-inf) = -1 is right
        return float(np.sum(-np.expm1(n * np.log1p(-p))))


def brute_che(p: np.ndarray, cache: float) -> float:
    """Che's hit rate from the full probability vector (the definition, not the implementation)."""
    fill = lambda log_t: np.sum(1.0 - np.exp(-p * math.exp(log_t))) - cache  # noqa: E731
    log_t = brentq(
        fill, math.log(cache) - 1.0, math.log(-math.log1p(-cache / p.size) / p.min()) + 1.0, xtol=1e-13
    )
    return float(np.sum(p * (1.0 - np.exp(-p * math.exp(log_t)))))


def zipf_p(rows: int, alpha: float) -> np.ndarray:
    p = np.arange(1, rows + 1, dtype=np.float64) ** -alpha
    return p / p.sum()


# ------------------------------------------------------------------------------ uniform


def test_uniform_expected_unique_closed_form():
    assert uniform(4).expected_unique(2) == pytest.approx(4 * (1 - (3 / 4) ** 2), rel=1e-12)  # 1.75
    # Every sequence of 3 lookups into 3 rows: the mean number of distinct rows is 19/9.
    mean = np.mean([len(set(s)) for s in itertools.product(range(3), repeat=3)])
    assert uniform(3).expected_unique(3) == pytest.approx(mean, rel=1e-12) == pytest.approx(19 / 9)
    big = uniform(10**9)
    assert big.expected_unique(1e6) == pytest.approx(1e9 * -math.expm1(1e6 * math.log1p(-1e-9)), rel=1e-12)
    assert big.expected_unique(1) == pytest.approx(1.0)
    assert uniform(1).expected_unique(5) == 1.0
    assert uniform(7).expected_unique(0) == 0.0


def test_uniform_caches_are_proportional():
    m = uniform(1000)
    for cache in (0, 1, 250, 999, 1000, 5000):
        assert m.lru_hit_rate(cache) == pytest.approx(min(cache, 1000) / 1000)
        assert m.lfu_hit_rate(cache) == m.top_k_share(cache) == pytest.approx(min(cache, 1000) / 1000)
    assert m.characteristic_time(250) == pytest.approx(-1000 * math.log(0.75))
    # The generic Che solver on the one-group representation agrees with the closed form.
    assert m.popularity.lru_hit_rate(250) == pytest.approx(0.25, rel=1e-9)


# ------------------------------------------------------------------------------ zipf


def test_zipf_tiny_exact():
    m = zipf(2, 1.0)  # p = (2/3, 1/3)
    assert m.probabilities() == pytest.approx([2 / 3, 1 / 3], rel=1e-15)
    assert m.expected_unique(2) == pytest.approx(13 / 9, rel=1e-14)
    assert m.top_k_share(1) == pytest.approx(2 / 3, rel=1e-14)
    assert m.top_k_share(2) == 1.0
    assert m.lru_hit_rate(2) == 1.0


@pytest.mark.parametrize("alpha", [0.3, 0.8, 1.0, 1.5, 3.0])
def test_zipf_small_table_matches_brute_force(alpha):
    rows = 300
    m = zipf(rows, alpha)
    p = zipf_p(rows, alpha)
    np.testing.assert_allclose(m.probabilities(), p, rtol=1e-12)
    for n in (1, 10, 1000, 10**6):
        assert m.expected_unique(n) == pytest.approx(brute_unique(p, n), rel=1e-12)
    for k in (1, 7, 150, 299):
        assert m.top_k_share(k) == pytest.approx(p[:k].sum(), rel=1e-12)
    for cache in (1, 10, 100, 299):
        assert m.lru_hit_rate(cache) == pytest.approx(brute_che(p, cache), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.5, 0.99, 1.0, 1.2, 2.0])
def test_zipf_tail_integral_matches_brute_force(alpha):
    """3e5 rows: ranks above HEAD come from the integrated tail; measured error ~1e-8."""
    rows = 300_000
    m = zipf(rows, alpha)
    p = zipf_p(rows, alpha)
    for n in (100, 10**4, 10**6, 10**8):
        assert m.expected_unique(n) == pytest.approx(brute_unique(p, n), rel=1e-6)
    for k in (10, HEAD, 5000, 200_000):
        assert m.top_k_share(k) == pytest.approx(p[:k].sum(), rel=1e-6)
    for cache in (10, 2000, 100_000, 290_000):
        assert m.lru_hit_rate(cache) == pytest.approx(brute_che(p, cache), rel=1e-6)


@pytest.mark.parametrize("alpha", [1.1, 2.0, 3.5])
def test_zipf_normaliser_is_the_generalised_harmonic_number(alpha):
    for rows in (10, HEAD, 10**5, 10**9):
        harmonic = zeta(alpha) - zeta(alpha, rows + 1)
        assert ZipfModel(rows, alpha).normaliser == pytest.approx(harmonic, rel=1e-8)


def test_zipf_sampler_draws_the_model_probabilities():
    rng = np.random.default_rng(11)
    m = zipf(50, 0.9, seed=4)
    ids = m.sample(200_000, rng)
    order = m.row_ids(np.arange(50))  # id of each rank
    freq = np.bincount(ids, minlength=50)[order] / ids.size
    p = m.probabilities()
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / ids.size))
    # A big table: the mass above rank HEAD (the analytic tail sampler) and in log-spaced rank bands.
    big = ZipfModel(10**7, 0.8, seed=1)
    ranks = big._sample_ranks(400_000, rng)
    edges = [0, 10, HEAD, 10**4, 10**5, 10**6, 10**7]
    for lo, hi in itertools.pairwise(edges):
        share = big.top_k_share(hi) - big.top_k_share(lo)
        got = np.mean((ranks >= lo) & (ranks < hi))
        assert got == pytest.approx(share, abs=5 * math.sqrt(share * (1 - share) / ranks.size))


def test_zipf_billion_rows_is_cheap_and_sane():
    m = zipf(10**9, 1.05, seed=7)
    assert len(m.popularity.probs) < 5000  # compressed, not per row
    assert 0 < m.lru_hit_rate(1e6) < m.lfu_hit_rate(1e6) < 1
    assert m.expected_unique(65536 * 40) < 65536 * 40
    ids = m.sample(100_000, np.random.default_rng(0))
    assert ids.min() >= 0 and ids.max() < 10**9
    with pytest.raises(ValueError, match="too many"):
        m.probabilities()


# ------------------------------------------------------------------------------ caches vs simulation


def simulated_lru(ids: np.ndarray, cache_rows: int, warmup: int) -> float:
    cache: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for i, row in enumerate(ids.tolist()):
        if row in cache:
            cache.move_to_end(row)
            hits += i >= warmup
        else:
            cache[row] = None
            if len(cache) > cache_rows:
                cache.popitem(last=False)
    return hits / (ids.size - warmup)


def simulated_lfu(train: np.ndarray, test: np.ndarray, cache_rows: int) -> float:
    """A perfect LFU cache: the rows most used so far (in ``train``), measured on later lookups."""
    rows, counts = np.unique(train, return_counts=True)
    cached = rows[np.argsort(-counts, kind="stable")[:cache_rows]]
    return float(np.isin(test, cached).mean())


CACHE_MODELS = [
    ("zipf-0.6", lambda: zipf(20_000, 0.6, seed=1)),
    ("zipf-0.9", lambda: zipf(20_000, 0.9, seed=1)),
    ("zipf-1.2", lambda: zipf(20_000, 1.2, seed=1)),
    ("2021-s0", lambda: empirical(20_000, 0, seed=2)),
    ("2021-s1", lambda: empirical(20_000, "fbgemm_t856_bs65536_0", seed=2)),
]


@pytest.mark.parametrize("make", [m for _, m in CACHE_MODELS], ids=[n for n, _ in CACHE_MODELS])
def test_che_matches_simulated_lru(make):
    model = make()
    warmup = 60_000
    ids = model.sample(200_000, np.random.default_rng(5))
    for cache in (20, 200, 2000):
        # Che describes the steady state: the warm-up must fill the cache first.
        assert model.expected_unique(warmup) > 2 * cache
        assert model.lru_hit_rate(cache) == pytest.approx(simulated_lru(ids, cache, warmup), abs=0.02)


@pytest.mark.parametrize("make", [m for _, m in CACHE_MODELS], ids=[n for n, _ in CACHE_MODELS])
def test_top_k_share_matches_simulated_lfu(make):
    model = make()
    ids = model.sample(1_200_000, np.random.default_rng(6))
    for cache in (20, 200, 2000):
        assert model.lfu_hit_rate(cache) == pytest.approx(
            simulated_lfu(ids[:1_000_000], ids[1_000_000:], cache), abs=0.02
        )


# ------------------------------------------------------------------------------ empirical


@pytest.mark.parametrize("index", range(len(SECTIONS)))
def test_fit_reproduces_every_section_in_expectation(index):
    """The fitted population's expected stats equal the file's to its rounding (0.0005); so do a
    10^9-row table's at its reference batch, up to the rounding of classes to whole rows (~1e-5)."""
    stats = SECTIONS[index]
    mixture = fit_reuse_mixture(stats)
    assert mixture.tolerance == pytest.approx(0.0005)
    lookups, unique, row_share, index_share = predicted_stats(
        mixture.row_share, mixture.rates, stats.bin_lower
    )
    assert lookups / unique == pytest.approx(stats.indices / stats.unique, rel=1e-9)
    assert mixture.reference_rows * unique == pytest.approx(stats.unique, rel=1e-9)
    np.testing.assert_allclose(row_share, stats.row_share, rtol=0, atol=0.0005 + 1e-9)
    np.testing.assert_allclose(index_share, stats.index_share, rtol=0, atol=0.0005 + 1e-9)

    model = EmpiricalModel.from_stats(stats, 10**9)
    n = model.reference_lookups
    lookups, unique, row_share, index_share = predicted_stats(
        model.popularity.weights, n * model.popularity.probs, stats.bin_lower
    )
    assert lookups == pytest.approx(n, rel=1e-9)
    assert unique / lookups == pytest.approx(stats.unique_ratio, rel=1e-5)
    assert model.expected_unique(n) == pytest.approx(stats.unique_ratio * n, rel=1e-5)
    np.testing.assert_allclose(row_share, stats.row_share, rtol=0, atol=0.0005 + 2e-5)
    np.testing.assert_allclose(index_share, stats.index_share, rtol=0, atol=0.0005 + 2e-5)


@pytest.mark.parametrize("section", [0, 1])
def test_generator_reproduces_2021_stats(section):
    """Scaled down: the table gets ``rows = 2e6 R_ref / N`` rows (~550k), so its reference batch is 2M
    lookups instead of 887M or 468M; the popularity shape, and with it every row's expected uses, is
    the same. A row used > 4096 times carries >= 0.2 % of such a batch, so those bins hold a handful
    of rows and are compared pooled. Measured over 8 seeds: unique ratio within 0.3 %, row shares
    within 0.002, index shares within 0.0041; the tolerances are about twice that."""
    stats = SECTIONS[section]
    mixture = fit_reuse_mixture(stats)
    model = EmpiricalModel.from_stats(stats, round(2e6 * mixture.reference_rows / stats.indices), seed=9)
    n = round(model.reference_lookups)
    assert n == pytest.approx(2e6, rel=1e-5)
    _, counts = np.unique(model.sample(n, np.random.default_rng(section)), return_counts=True)
    assert counts.size / n == pytest.approx(stats.unique_ratio, rel=0.01)
    lower = np.asarray(stats.bin_lower)
    where = np.searchsorted(lower, counts, side="left") - 1  # a count k is in bin (lower[b], lower[b+1]]
    row_share = np.bincount(where, minlength=lower.size) / counts.size
    index_share = np.bincount(where, weights=counts, minlength=lower.size) / n
    np.testing.assert_allclose(row_share, stats.row_share, atol=0.005)
    pool = int(np.searchsorted(lower, 4096))
    pooled = lambda s: np.append(s[:pool], np.sum(s[pool:]))  # noqa: E731
    np.testing.assert_allclose(pooled(index_share), pooled(np.asarray(stats.index_share)), atol=0.008)


@pytest.mark.parametrize("rows", [1, 2, 3, 7, 1000])
def test_empirical_small_tables_are_consistent(rows):
    model = empirical(rows, 0, seed=1)
    p = model.probabilities()
    assert p.size == rows
    assert p.sum() == pytest.approx(1.0, rel=1e-12)
    assert np.all(np.diff(p) <= 1e-15)
    for n in (1, 10, 10**4):
        assert model.expected_unique(n) == pytest.approx(brute_unique(p, n), rel=1e-9)
    for k in range(0, rows + 1, max(1, rows // 7)):
        assert model.top_k_share(k) == pytest.approx(p[:k].sum(), rel=1e-9, abs=1e-15)
    ids = model.sample(5000, np.random.default_rng(0))
    assert ids.min() >= 0 and ids.max() < rows


def test_empirical_model_figures():
    stats, mixture = SECTIONS[0], fit_reuse_mixture(SECTIONS[0])
    model = empirical(10**8, 0)
    assert model.reference_lookups == pytest.approx(stats.indices * 1e8 / mixture.reference_rows)
    # The rows a batch uses more than 8 (64) times are, up to Poisson noise, the hottest rows by
    # popularity: the model's top-k share over that many rows is the stats' share of their lookups.
    for b in (4, 7):
        hot_rows = sum(stats.row_share[b:]) * stats.unique / mixture.reference_rows * model.rows
        assert model.top_k_share(hot_rows) == pytest.approx(sum(stats.index_share[b:]), abs=0.03)
    assert model.lru_hit_rate(1e6) < model.lfu_hit_rate(1e6)


# ------------------------------------------------------------------------------ stats files


def test_parse_2021_stats():
    assert len(SECTIONS) == 17
    first = SECTIONS[0]
    assert first.name == "fbgemm_t856_bs65536.pt"
    assert (first.batches, first.batch_size) == (1, 65536)
    assert (first.indices, first.unique, first.avg_reuse) == (887017990, 128435723, 6.9)
    assert first.bin_lower == (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
    assert first.row_share[:3] == (0.473, 0.152, 0.139)
    assert first.index_share[-1] == 0.019
    assert first.resolution == pytest.approx(0.001)
    assert first.bin_labels()[0] == "(0, 1]" and first.bin_labels()[-1] == "(32768+"
    assert [s.name for s in SECTIONS[1:3]] == ["fbgemm_t856_bs65536_0.pt", "fbgemm_t856_bs65536_1.pt"]


def test_shipped_stats_and_source():
    assert resolve_stats("2021-locality") == STATS.resolve()
    source = (shipped_access_root() / "SOURCE.md").read_text()
    assert "MIT" in source and "dlrm_datasets" in source


def test_sections_by_index_and_name():
    assert load_section("2021-locality", 2).name == "fbgemm_t856_bs65536_1.pt"
    assert load_section("2021-locality", "fbgemm_t856_bs65536_1.pt") == SECTIONS[2]
    assert load_section("2021-locality", "fbgemm_t856_bs65536_1") == SECTIONS[2]
    with pytest.raises(ConfigError, match="section 17 out of range"):
        load_section("2021-locality", 17)
    with pytest.raises(ConfigError, match="no section named 'nope'"):
        load_section("2021-locality", "nope")


def test_stats_references(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"unknown locality stats '2020-locality' \(shipped: 2021-locality"):
        resolve_stats("2020-locality")
    copy = tmp_path / "mine.txt"
    copy.write_text(STATS.read_text())
    assert resolve_stats(str(copy)) == copy.resolve()  # absolute
    monkeypatch.chdir(tmp_path)
    assert resolve_stats("mine.txt") == copy.resolve()  # relative to the working directory
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_stats("./missing.txt")
    spec = EmpiricalAccess(dist="empirical", stats=str(copy), section=3)
    assert access_model(spec, 100).stats == SECTIONS[3]


GOOD = STATS.read_text().split("\n\n")[0].splitlines()


def _broken(replace: dict[int, str | None]) -> str:
    """Section 0 with lines replaced (1-based), or removed (None)."""
    lines = [replace.get(i + 1, line) for i, line in enumerate(GOOD)]
    return "\n".join(line for line in lines if line is not None) + "\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (_broken({2: "Locality stats after 1 batch"}), 2, "expected 'Locality stats after processing"),
        (_broken({3: "Avg # of indices: lots"}), 3, "expected 'Avg # of indices: <number>'"),
        (_broken({4: "Avg # of unique cols: 999999999999"}), 4, "must be > 0 and <= indices"),
        (_broken({5: "Avg col size: 9.9"}), 5, "disagrees with indices / unique"),
        (_broken({9: "(2, 5]: 0.139"}), 10, "bin starts at 4, expected 5"),
        (
            _broken({8: "(1, 2]: 0.252"}),
            25,
            r"the CDF \(0.625\) disagrees with the bins above \(sum 0.7250\)",
        ),
        (_broken({7: "(0, 1]: 1.5"}), 7, r"share 1.5 is not in \[0, 1\]"),
        (_broken({24: "[0, 1, 2, 4]"}), 24, "bin edges"),
        (_broken({25: "0.000, 0.473"}), 25, "the CDF list in brackets"),
        (_broken({25: "['0.000', '0.473']"}), 25, "the CDF has 2 values, expected 18"),
        (_broken({26: "Ratio of something else:"}), 26, "expected 'Ratio of index distribution"),
        (_broken({43: None, 44: None, 45: None}), 42, "file ends where a reuse bin"),
        (_broken({45: "['0.000', 'x']"}), 45, "the CDF list of numbers"),
        (_broken({45: GOOD[44] + "\nextra"}), 46, "expected a blank line after the section"),
    ],
)
def test_malformed_stats_name_the_line(tmp_path, text, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        parse_locality_stats(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert "\n" not in str(info.value)


def test_unreadable_or_empty_stats(tmp_path):
    with pytest.raises(ConfigError, match="cannot read locality stats"):
        parse_locality_stats(tmp_path / "absent.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ConfigError, match="no locality-stats sections"):
        parse_locality_stats(tmp_path / "empty.txt")


def test_the_good_section_parses(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text(_broken({}))
    assert parse_locality_stats(path)[0].row_share == SECTIONS[0].row_share


# ------------------------------------------------------------------------------ registry, ids


def test_registry_dispatches_on_dist():
    assert registered_dists() == ["empirical", "fixed_rows", "uniform", "zipf"]
    assert isinstance(uniform(10), UniformModel)
    assert isinstance(zipf(10, 1.0), ZipfModel)
    assert isinstance(empirical(10), EmpiricalModel)

    class Other:
        dist = "pareto"

    with pytest.raises(ConfigError, match="access dist 'pareto' has no model"):
        access_model(Other(), 10)
    with pytest.raises(ValueError, match="already registered"):

        @register
        class Clash(UniformModel):
            dist = "zipf"


def test_permutation_is_a_bijection():
    for rows in [*range(1, 70), 255, 256, 257, 1000, 4099]:
        perm = RowPermutation(rows, seed=rows)(np.arange(rows))
        assert np.array_equal(np.sort(perm), np.arange(rows))


def test_hot_rows_are_spread_over_the_ids():
    model = zipf(10**9, 1.0, seed=3)
    hot = model.row_ids(np.arange(10_000))
    assert hot.mean() == pytest.approx(5e8, rel=0.05)
    assert not np.array_equal(hot, np.sort(hot))
    other = zipf(10**9, 1.0, seed=4).row_ids(np.arange(10_000))
    assert len(np.intersect1d(hot, other)) < 10  # another seed, other hot rows
    # The hottest rank (p = 4.7 %, twice the next) is the id the generator draws most.
    values, counts = np.unique(model.sample(10_000, np.random.default_rng(0)), return_counts=True)
    assert values[counts.argmax()] == hot[0]


def test_sample_shape_and_seed():
    model = empirical(12345, 0, seed=1)
    a = model.sample(1000, np.random.default_rng(42))
    b = model.sample(1000, np.random.default_rng(42))
    assert a.dtype == np.int64 and a.shape == (1000,)
    assert np.array_equal(a, b)
    assert model.sample(0, np.random.default_rng(0)).size == 0
    with pytest.raises(ValueError):
        model.sample(-1, np.random.default_rng(0))


def test_repr_and_path_helpers():
    assert "alpha=0.5" in repr(zipf(3, 0.5))
    assert "fbgemm_t856_bs65536.pt" in repr(empirical(3))


def test_missed_unique_share_against_an_lru_simulation():
    # A Zipf table of 2,000 rows behind an LRU cache of 400: the distinct rows of each 300-lookup
    # batch that the cache lacks when the batch starts, counted by replaying a sampled stream.
    model = access_model(ZipfAccess(dist="zipf", alpha=0.9), 2000, seed=3)
    rng = np.random.default_rng(7)
    stream = model.sample(300 * 400, rng)
    cache: OrderedDict[int, None] = OrderedDict()
    missed = unique = 0
    for start in range(0, len(stream), 300):
        batch = stream[start : start + 300]
        distinct = set(batch.tolist())
        if start >= 300 * 100:  # after warm-up
            unique += len(distinct)
            missed += sum(row not in cache for row in distinct)
        for row in batch.tolist():
            cache[row] = None
            cache.move_to_end(row)
            if len(cache) > 400:
                cache.popitem(last=False)
    assert model.missed_unique_share(300, 400) == pytest.approx(missed / unique, rel=0.05)


# ------------------------------------------------------------------------------ row-wise blocks


@pytest.mark.parametrize("blocks", [1, 8, 64, 1000])
@pytest.mark.parametrize("table", ["zipf 1.05", "zipf 1.2", "zipf 2.0", "empirical 3"])
def test_a_row_wise_block_is_a_distribution_its_whole_cache_hits(table, blocks):
    """A block of a skewed table sums to 1, and an LRU cache of (almost) all its rows hits ~all lookups.

    The capped hot rows' mass used to be dropped: a 1/64 block of Zipf(1.2) summed to 0.683, and a
    cache of all but one of its rows hit 0.683, then jumped to 1 at a cache of every row."""
    kind, value = table.split()
    base = zipf(10**6, float(value)) if kind == "zipf" else empirical(10**6, int(value))
    block = SubsetModel(base, base.rows // blocks)
    pop = block.popularity
    assert float(np.sum(pop.weights * pop.probs)) == pytest.approx(1.0, abs=1e-12)
    assert np.all(pop.probs <= 1.0)
    assert pop.rows == pytest.approx(block.rows)
    assert block.lru_hit_rate(block.rows - 1) > 0.999
    hits = [block.lru_hit_rate(f * block.rows) for f in (0.0, 1e-4, 1e-3, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(hits))
    assert hits[-1] == 1.0


def test_water_fill_solves_its_equation():
    """``water_fill`` is the root of ``sum w min(1, s p) = 1`` (found here by brentq), a monotone map of p."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        p = np.sort(rng.pareto(1.0, size=30) + 1e-3)[::-1]
        w = rng.uniform(0.01, 3.0, size=30)
        p = p / np.sum(w * p)
        f = rng.uniform(1.0 / w.sum(), 1.0)
        block = f * w

        def excess(s: float, block: np.ndarray = block, p: np.ndarray = p) -> float:
            return float(np.sum(block * np.minimum(1.0, s * p))) - 1.0

        scale = brentq(excess, 1.0, 1e12, xtol=1e-14, rtol=1e-14)
        got = water_fill(block, p)
        assert got == pytest.approx(np.minimum(1.0, scale * p), rel=1e-9)
        assert np.all(np.diff(got) <= 0)
    # Nothing capped: the plain 1 / f scaling; a one-row block: its row has every lookup.
    assert water_fill(np.full(4, 0.5), np.full(4, 0.25)) == pytest.approx(np.full(4, 0.5))
    assert water_fill(np.array([0.5, 0.5]), np.array([0.6, 0.4])) == pytest.approx(np.ones(2))


def test_a_bounded_figure_store_takes_two_threads_letting_the_oldest_go_at_once():
    """A popularity's figures and slices may be asked for from several threads at once (a shared
    model, ``shared_access_model``, kept for the process; a Dask worker runs its points in
    threads): two that each let the oldest entry go when the store is full must not both delete
    it. Here one thread stops between picking the oldest key and deleting it while the other
    thread lets the same key go (the interleaving the interpreter may choose at any bytecode); it
    raised ``KeyError`` in the first thread."""
    import threading

    from recsim.workload.access.popularity import _remember

    paused = threading.Event()
    other_done = threading.Event()
    first_thread: list[threading.Thread] = []

    class Store(dict[str, float]):
        def __delitem__(self, key: str) -> None:
            if threading.current_thread() is first_thread[0] and not paused.is_set():
                paused.set()
                other_done.wait(timeout=0.5)  # the other thread's turn (or, with a lock, the wait runs out)
            super().__delitem__(key)

    store = Store(old=1.0, older=2.0)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            _remember(store, "a", 3.0, 2)
        except BaseException as exc:  # the race's error is the finding
            errors.append(exc)

    def second() -> None:
        paused.wait(timeout=5.0)
        try:
            _remember(store, "b", 4.0, 2)
        except BaseException as exc:
            errors.append(exc)
        other_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    first_thread.append(threads[0])
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10.0)
    assert paused.is_set()
    assert errors == []
    assert len(store) == 2 and set(store) <= {"old", "older", "a", "b"} and {"a", "b"} <= set(store)


# ------------------------------------------------------------------------------ shared models


SHARED_SPECS: list[tuple[UniformAccess | ZipfAccess | EmpiricalAccess, int]] = [
    (UniformAccess(dist="uniform"), 50_000),
    (ZipfAccess(dist="zipf", alpha=1.05), 4_000_000),
    (ZipfAccess(dist="zipf", alpha=0.7), 700),
    (EmpiricalAccess(dist="empirical", stats="2021-locality", section=0), 10**7),
    (EmpiricalAccess(dist="empirical", stats="2021-locality", section=3), 20_000),
]


def figures(model: AccessModel) -> list[float]:
    """Every figure an evaluation asks of a model, at a few arguments (cache sizes as fractions
    of the table, and a cache bigger than it)."""
    rows = model.rows
    caches = [1.0, rows * 1e-3, rows * 0.05, rows * 0.5, rows * 2.0]
    out = [model.expected_unique(n) for n in (0.0, 1.0, 37.5, 1e4, 3e7)]
    for c in caches:
        out += [
            model.characteristic_time(c),
            model.lru_hit_rate(c),
            model.lfu_hit_rate(c),
            model.top_k_share(c),
        ]
        out += [model.missed_unique_share(n, c) for n in (10.0, 1e5)]
    return out


def test_shared_models_are_one_object_per_spec_value_and_rows() -> None:
    """``shared_access_model`` keys by the spec's value (a new, equal spec object finds the same
    model) and the row count (an int-like count too), never by identity; a different
    number, dist, row count, stats section gives another model."""
    zipf_spec = ZipfAccess(dist="zipf", alpha=1.05)
    model = shared_access_model(zipf_spec, 10**6)
    twin = ZipfAccess(dist="zipf", alpha=1.05)
    assert twin is not zipf_spec and twin == zipf_spec
    assert shared_access_model(twin, 10**6) is model
    assert shared_access_model(twin, np.int64(10**6)) is model
    assert shared_access_model(ZipfAccess(dist="zipf", alpha=1.2), 10**6) is not model
    assert shared_access_model(zipf_spec, 10**6 + 1) is not model
    assert shared_access_model(zipf_spec, 10**6 + 1) is shared_access_model(twin, 10**6 + 1)

    uniform_model = shared_access_model(UniformAccess(dist="uniform"), 10**6)
    assert shared_access_model(UniformAccess(dist="uniform"), 10**6) is uniform_model
    assert uniform_model is not model and isinstance(uniform_model, UniformModel)
    assert shared_access_model(UniformAccess(dist="uniform"), 999_999) is not uniform_model

    def emp(stats: str, section: int | str) -> EmpiricalAccess:
        return EmpiricalAccess(dist="empirical", stats=stats, section=section)

    first = shared_access_model(emp("2021-locality", 0), 10**6)
    assert isinstance(first, EmpiricalModel)
    assert shared_access_model(emp("2021-locality", 0), 10**6) is first
    # Keyed by the file the stats name resolves to: the shipped name and its absolute path agree.
    assert shared_access_model(emp(str(STATS), 0), 10**6) is first
    other = shared_access_model(emp("2021-locality", 1), 10**6)
    assert other is not first
    assert other.expected_unique(1e5) != first.expected_unique(1e5)  # section 1's model, not 0's
    assert shared_access_model(emp("2021-locality", 0), 10**6 + 1) is not first


@pytest.mark.parametrize(
    ("spec", "rows"),
    SHARED_SPECS,
    ids=["uniform", "zipf-1.05", "zipf-0.7-small", "empirical-0", "empirical-3"],
)
def test_a_shared_model_gives_a_fresh_models_figures_exactly(
    spec: UniformAccess | ZipfAccess | EmpiricalAccess, rows: int
) -> None:
    """Sharing changes no number: a shared model's figures are a fresh ``access_model``'s, bit for
    bit, when first asked, when asked again (kept), and once its kept figures have been let go
    after many other arguments (worked out again)."""
    from recsim.workload.access.popularity import FIGURES_KEPT

    fresh = figures(access_model(spec, rows))
    shared = shared_access_model(spec, rows)
    assert type(shared) is type(access_model(spec, rows)) and shared.rows == rows
    np.testing.assert_array_equal(shared.probabilities(), access_model(spec, rows).probabilities())
    assert figures(shared) == fresh
    assert figures(shared_access_model(spec, rows)) == fresh
    for n in range(1, FIGURES_KEPT + 10):
        shared.expected_unique(n + 0.25)
    assert figures(shared) == fresh


def test_figure_and_slice_stores_stay_within_their_bounds() -> None:
    """A model kept for the process is asked for figures at ever new arguments and for ever new
    slices (a sweep's points): its popularity keeps at most ``FIGURES_KEPT`` figures and
    ``CHILDREN_KEPT`` derived popularities, the oldest let go first, and a figure or slice let go
    is worked out again to the same value."""
    from recsim.workload.access.popularity import CHILDREN_KEPT, FIGURES_KEPT
    from recsim.workload.access.slice import SliceModel

    model = zipf(10**6, 1.05)
    pop = model.popularity
    first_unique = model.expected_unique(1.5)
    first_hit = model.lru_hit_rate(1000.5)
    first_missed = model.missed_unique_share(10.5, 1000.5)
    for k in range(3 * FIGURES_KEPT):
        model.expected_unique(2.0 + k)
        model.lru_hit_rate(2000.0 + k)  # with its characteristic time: two figures
        model.missed_unique_share(5.0 + k, 2000.0 + k)
        assert len(pop._figures) <= FIGURES_KEPT
    assert len(pop._figures) == FIGURES_KEPT
    assert ("unique", 1.5) not in pop._figures and ("unique", 2.0 + 3 * FIGURES_KEPT - 1) in pop._figures
    assert model.expected_unique(1.5) == first_unique
    assert model.lru_hit_rate(1000.5) == first_hit
    assert model.missed_unique_share(10.5, 1000.5) == first_missed

    first_slice = SliceModel(model, 0, 1000).popularity
    first_weights = first_slice.weights.copy()
    for k in range(3 * CHILDREN_KEPT):
        assert SliceModel(model, k + 1, 2000 + k).popularity.rows == pytest.approx(1999)
        assert len(pop._children) <= CHILDREN_KEPT
    assert len(pop._children) == CHILDREN_KEPT
    last = SliceModel(model, 3 * CHILDREN_KEPT, 2000 + 3 * CHILDREN_KEPT - 1).popularity
    assert SliceModel(model, 3 * CHILDREN_KEPT, 2000 + 3 * CHILDREN_KEPT - 1).popularity is last  # kept
    again = SliceModel(model, 0, 1000).popularity  # let go: made again, equal
    assert again is not first_slice
    np.testing.assert_array_equal(again.weights, first_weights)
    np.testing.assert_array_equal(again.probs, first_slice.probs)


def test_shared_models_stay_within_their_bound() -> None:
    """At most ``SHARED_MODELS`` models are kept, the least recently used let go first."""
    from recsim.workload.access.model import SHARED_MODELS, _kept_model

    spec = UniformAccess(dist="uniform")
    oldest = shared_access_model(spec, 10**9 + 1)
    recent = shared_access_model(spec, 10**9 + 2)
    for rows in range(SHARED_MODELS):
        if rows % 100 == 0:
            assert shared_access_model(spec, 10**9 + 2) is recent  # used: kept
        shared_access_model(spec, 2 * 10**9 + rows)
        assert _kept_model.cache_info().currsize <= SHARED_MODELS
    assert shared_access_model(spec, 10**9 + 1) is not oldest
    assert shared_access_model(spec, 10**9 + 2) is recent
