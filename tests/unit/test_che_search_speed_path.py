"""Che's search (``GroupedPopularity._search_t``) keeps its terms negated and calls scipy's C Brent
solver without ``brentq``'s wrapper: the same bits as the plain search, ``brentq`` over the
occupancy ``dot(weights, 1 - exp(-p t))`` (``test_embedding_speed_paths`` holds the whole plain
popularity as an oracle; this pins the two pieces on their own)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.optimize import brentq

from recsim.workload.access import popularity
from recsim.workload.access.popularity import GroupedPopularity, dot

TERMS = st.floats(min_value=-50.0, max_value=0.0, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=0, max_value=300).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.float64, n, elements=st.floats(1e-3, 1e6)),
            hnp.arrays(np.float64, n, elements=TERMS),
        )
    )
)
def test_a_sum_of_negated_terms_is_the_negated_sum(pair: tuple[np.ndarray, np.ndarray]) -> None:
    weights, exponents = pair
    unseen = np.expm1(exponents)
    assert -dot(weights, unseen) == dot(weights, -unseen)


def plain_t(pop: GroupedPopularity, cache_rows: float) -> float:
    """Che's ``T`` as ``_search_t`` found it before: ``brentq`` over the positive terms."""

    def excess(log_t: float) -> float:
        seen = -np.expm1(-pop.probs * math.exp(log_t))
        return float(np.einsum("i,i->", pop.weights, seen)) - cache_rows

    low = math.log(cache_rows)
    if excess(low) >= 0:
        return float(cache_rows)
    high = math.log(-math.log1p(-cache_rows / pop.rows) / float(pop.probs[-1]))
    while excess(high) < 0:
        high += 1.0
    return math.exp(brentq(excess, low, high, xtol=1e-12, rtol=1e-13))


@settings(max_examples=40, deadline=None)
@given(
    groups=st.lists(st.tuples(st.floats(1.0, 1e5), st.floats(1e-9, 1.0)), min_size=2, max_size=40),
    fraction=st.floats(0.001, 0.9),
)
def test_the_characteristic_time_is_the_plain_searchs(
    groups: list[tuple[float, float]], fraction: float
) -> None:
    weights = np.array([w for w, _ in groups])
    probs = np.array(sorted((p for _, p in groups), reverse=True))
    probs /= float(np.dot(weights, probs))  # lookups' probabilities sum to 1
    pop = GroupedPopularity(weights, np.minimum(probs, 1.0))
    cache = fraction * pop.rows
    expected = plain_t(pop, cache)
    assert pop.characteristic_time(cache) == expected
    seen = -np.expm1(-pop.probs * expected)
    assert pop.lru_hit_rate(cache) == min(1.0, max(0.0, float(np.einsum("i,i->", pop._mass, seen))))


def test_the_c_solver_is_used_on_this_scipy_and_finds_brentqs_root() -> None:
    # Where a scipy release moves or changes its private solver, the search falls back to ``brentq``
    # (the same root, slower): said here as a skip, rather than found in a planner's time (a newer
    # scipy is no user error and must not fail the suite; the fallback has its own test below).
    if popularity._find_root is not popularity._c_brentq_root:
        pytest.skip("this scipy's private C Brent solver is missing or differs: the searches call brentq")

    def f(x: float) -> float:
        return math.exp(x) - 3.0

    assert popularity._c_brentq_root(f, 0.0, 2.0) == brentq(f, 0.0, 2.0, xtol=1e-12, rtol=1e-13)


def test_a_scipy_without_the_c_solver_or_with_another_one_falls_back_to_brentq(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(popularity, "_C_BRENTQ", None)
    assert popularity._pick_root_finder() is popularity._brentq_checked

    def other_signature(f: object, a: float, b: float) -> float:
        return 0.0

    monkeypatch.setattr(popularity, "_C_BRENTQ", other_signature)
    assert popularity._pick_root_finder() is popularity._brentq_checked

    def wrong_root(*args: object) -> float:
        return 2.5

    monkeypatch.setattr(popularity, "_C_BRENTQ", wrong_root)
    assert popularity._pick_root_finder() is popularity._brentq_checked
