"""Invariants of every access model, on tables from 1 row to 10^9 rows.

Figures are computed numerically (root finding, quadrature), so comparisons allow 1e-9 relative slack;
anything beyond that is a bug, not rounding.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.workload.access import AccessModel, ZipfModel, access_model
from recsim.workload.access.zipf import HEAD
from recsim.workload.spec import EmpiricalAccess, UniformAccess, ZipfAccess

SETTINGS = settings(max_examples=60, deadline=None)
EPS = 1e-9

rows_any = st.one_of(st.integers(1, 3000), st.integers(1, 10**9))
specs = st.one_of(
    st.just(UniformAccess(dist="uniform")),
    st.builds(
        ZipfAccess,
        dist=st.just("zipf"),
        alpha=st.floats(0.05, 4.0, allow_nan=False, allow_infinity=False),
    ),
    st.builds(
        EmpiricalAccess,
        dist=st.just("empirical"),
        stats=st.just("2021-locality"),
        section=st.integers(0, 16),
    ),
)


@st.composite
def models(draw: st.DrawFn, rows: st.SearchStrategy[int] = rows_any) -> AccessModel:
    return access_model(draw(specs), draw(rows), seed=draw(st.integers(0, 2**32)))


def fraction_of(rows: int) -> st.SearchStrategy[float]:
    """Counts from 0 to a bit past the table, fractional ones included."""
    return st.floats(0.0, 1.2 * rows, allow_nan=False)


@SETTINGS
@given(model=models(), data=st.data())
def test_hit_rates_are_rates_and_grow_with_the_cache(model, data):
    a, b = sorted(data.draw(st.lists(fraction_of(model.rows), min_size=2, max_size=2)))
    for rate in (model.lru_hit_rate, model.lfu_hit_rate):
        low, high = rate(a), rate(b)
        assert 0.0 <= low <= 1.0 and 0.0 <= high <= 1.0
        assert low <= high + EPS
    # LFU keeps the hottest rows, the best any cache of that size can do on an IRM stream.
    assert model.lru_hit_rate(a) <= model.lfu_hit_rate(a) + EPS
    assert model.lru_hit_rate(model.rows) == model.lfu_hit_rate(model.rows) == 1.0
    assert model.lru_hit_rate(0) == model.lfu_hit_rate(0) == 0.0


@SETTINGS
@given(model=models(), data=st.data())
def test_expected_unique_is_bounded_and_grows(model, data):
    a, b = sorted(data.draw(st.lists(st.floats(0.0, 1e10, allow_nan=False), min_size=2, max_size=2)))
    low, high = model.expected_unique(a), model.expected_unique(b)
    assert 0.0 <= low <= min(a, model.rows) * (1 + EPS)
    assert high <= min(b, model.rows) * (1 + EPS)
    assert low <= high * (1 + EPS)
    assert abs(model.expected_unique(1) - 1.0) < 1e-9  # one lookup, one row


@SETTINGS
@given(model=models(), data=st.data())
def test_top_k_share_grows_to_one(model, data):
    a, b = sorted(data.draw(st.lists(fraction_of(model.rows), min_size=2, max_size=2)))
    assert 0.0 <= model.top_k_share(a) <= model.top_k_share(b) + EPS <= 1.0 + EPS
    assert model.top_k_share(model.rows) == 1.0
    assert model.top_k_share(0) == 0.0
    # The hottest k rows take at least their fair share.
    assert model.top_k_share(a) >= min(a, model.rows) / model.rows * (1 - EPS)


@SETTINGS
@given(model=models(), seed=st.integers(0, 2**63), n=st.integers(0, 2000))
def test_same_seed_same_indices(model, seed, n):
    first = model.sample(n, np.random.default_rng(seed))
    again = model.sample(n, np.random.default_rng(seed))
    assert first.dtype == np.int64 and first.shape == (n,)
    assert np.array_equal(first, again)
    if n:
        assert first.min() >= 0 and first.max() < model.rows


@SETTINGS
@given(model=models(st.integers(1, 2000)), n=st.floats(0.0, 1e7, allow_nan=False))
def test_figures_agree_with_the_explicit_probabilities(model, n):
    """On tables small enough to list, the compressed figures equal per-row sums (to 1e-9; 1e-6 for a
    Zipf table over 1024 rows, whose tail is integrated rather than summed: measured ~1e-8)."""
    p = model.probabilities()
    assert p.size == model.rows
    assert abs(p.sum() - 1.0) < 1e-12
    assert np.all(np.diff(p) <= 1e-15)  # hottest first
    with np.errstate(divide="ignore"):
        brute = float(np.sum(-np.expm1(n * np.log1p(-p)))) if n > 0 else 0.0
    brute = min(brute, n)  # the interpolation for fractional n < 1 is capped at n
    tol = 1e-6 if model.rows > HEAD and isinstance(model, ZipfModel) else 1e-9
    assert abs(model.expected_unique(n) - brute) <= tol * max(1.0, brute)
    k = int(n) % (model.rows + 1)
    assert abs(model.top_k_share(k) - p[:k].sum()) <= 1e-12


@SETTINGS
@given(model=models(st.integers(1, 5000)))
def test_ids_are_a_permutation_of_ranks(model):
    ids = model.row_ids(np.arange(model.rows))
    assert np.array_equal(np.sort(ids), np.arange(model.rows))


@SETTINGS
@given(model=models(), data=st.data())
def test_missed_unique_share_is_a_share_that_falls_with_the_cache(
    model: AccessModel, data: st.DataObject
) -> None:
    n = data.draw(st.floats(1.0, 1e6, allow_nan=False))
    small, large = sorted(data.draw(fraction_of(model.rows)) for _ in range(2))
    a, b = model.missed_unique_share(n, small), model.missed_unique_share(n, large)
    assert -EPS <= b <= a + EPS <= 1.0 + 2 * EPS
    assert model.missed_unique_share(n, model.rows) == 0.0
    # The rows a cache fetches are never more than its missed lookups. ``1 - hit rate`` loses the
    # hit rate's rounding (a sum over the rows, about 1e-14 absolute) to cancellation where nearly
    # every lookup hits (zipf alpha 3.87, 9,726 rows, a 1,582-row cache: 3.6e-10 missed, 8.6e-6
    # relative), so the bound allows n x 1e-14 besides its relative slack.
    if small > 0:
        missed = n * (1.0 - model.lru_hit_rate(small))
        assert a * model.expected_unique(n) <= missed * (1 + 1e-6) + n * 1e-14 + 1e-9
