"""Pareto mask: the front is exactly the non-dominated feasible set, for any objective senses."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from recsim.errors import ConfigError
from recsim.explore.pareto import knee_point, pareto_mask

# Small integer grids make ties and duplicates common, the cases most likely to be wrong.
values = st.integers(min_value=1, max_value=4).flatmap(
    lambda k: st.integers(min_value=0, max_value=40).flatmap(
        lambda n: st.tuples(
            arrays(np.float64, (n, k), elements=st.sampled_from([0.0, 1.0, 2.0, 3.0, 4.5, np.nan])),
            st.lists(st.sampled_from(["max", "min"]), min_size=k, max_size=k),
            arrays(np.bool_, (n,), elements=st.booleans()),
        )
    )
)


def dominates(a, b, senses):
    a = np.where(np.array(senses) == "max", -a, a)
    b = np.where(np.array(senses) == "max", -b, b)
    return bool(np.all(a <= b) and np.any(a < b))


@settings(max_examples=200, deadline=None)
@given(values)
def test_front_is_exactly_the_non_dominated_feasible_set(case):
    matrix, senses, feasible = case
    mask = pareto_mask(matrix, senses, feasible)
    ok = feasible & np.all(np.isfinite(matrix), axis=1)
    assert not (mask & ~ok).any()  # NaN or infeasible never on the front
    for i in np.flatnonzero(mask):  # every front point is non-dominated
        assert not any(dominates(matrix[j], matrix[i], senses) for j in np.flatnonzero(ok))
    for i in np.flatnonzero(ok & ~mask):  # every other feasible point is dominated by a front point
        assert any(dominates(matrix[j], matrix[i], senses) for j in np.flatnonzero(mask))


@settings(max_examples=100, deadline=None)
@given(values, st.randoms(use_true_random=False))
def test_mask_invariant_under_row_permutation(case, rnd):
    matrix, senses, feasible = case
    order = list(range(len(matrix)))
    rnd.shuffle(order)
    mask = pareto_mask(matrix, senses, feasible)
    assert np.array_equal(pareto_mask(matrix[order], senses, feasible[order]), mask[order])


@settings(max_examples=100, deadline=None)
@given(values)
def test_flipping_a_sense_is_negating_its_column(case):
    matrix, senses, feasible = case
    if not senses:
        return
    flipped = ["min" if s == "max" else "max" for s in senses]
    assert np.array_equal(pareto_mask(-matrix, flipped, feasible), pareto_mask(matrix, senses, feasible))


def test_duplicates_of_a_front_point_are_all_on_the_front():
    matrix = np.array([[1.0, 5.0], [1.0, 5.0], [2.0, 4.0], [0.5, 4.0]])
    assert pareto_mask(matrix, ["max", "max"]).tolist() == [True, True, True, False]


def test_dataframe_with_senses_by_column_and_missing_values():
    df = pd.DataFrame(
        {"thr": [10.0, 20.0, None, 15.0], "power": [1.0, 3.0, 0.1, 1.0], "other": ["a", "b", "c", "d"]}
    )
    mask = pareto_mask(df, {"thr": "max", "power": "min"})
    assert mask.tolist() == [False, True, False, True]
    with pytest.raises(ConfigError, match="no column 'nope'"):
        pareto_mask(df, {"nope": "max"})
    with pytest.raises(ConfigError, match="'max' or 'min'"):
        pareto_mask(df, {"thr": "up"})


def test_large_input_is_fast_enough():
    rng = np.random.default_rng(0)
    matrix = rng.random((5000, 3))
    mask = pareto_mask(matrix, ["max", "min", "max"])
    assert 0 < mask.sum() < 5000


def test_knee_point_two_objectives():
    # A convex front (max throughput, min power): the bend at (8, 2) is the knee.
    df = pd.DataFrame(
        {
            "thr": [1.0, 8.0, 9.0, 10.0, 5.0, 7.0],
            "power": [1.0, 2.0, 5.0, 10.0, 3.0, 9.0],
            "status": ["ok", "ok", "ok", "ok", "ok", "infeasible"],
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    assert knee_point(df, {"thr": "max", "power": "min"}) == 11


def test_knee_point_edge_cases():
    empty = pd.DataFrame({"a": [np.nan], "b": [1.0]})
    assert knee_point(empty, {"a": "max", "b": "min"}) is None
    single = pd.DataFrame({"a": [1.0, 0.5], "b": [1.0, 2.0]})
    assert knee_point(single, {"a": "max", "b": "min"}) == 0
    three = pd.DataFrame({"a": [0.0, 1.0, 0.4], "b": [0.0, 1.0, 0.2], "c": [1.0, 0.0, 0.3]})
    assert knee_point(three, {"a": "max", "b": "min", "c": "min"}) == 2


@settings(max_examples=200, deadline=None)
@given(values, st.randoms(use_true_random=False))
def test_knee_invariant_under_row_permutation(case, rnd):
    # The knee is a property of the front, not of the row order: a front that bends away from the
    # utopia point has its two extremes tied (distance 0 from their line, both at distance 1 from
    # the utopia point), and the earlier row had won, so a re-ordered results table (a resumed
    # sweep, a sorted export) marked the other extreme as the knee.
    matrix, senses, feasible = case
    columns = [f"m{i}" for i in range(matrix.shape[1])]
    objectives = dict(zip(columns, senses, strict=True))
    if len(objectives) < len(columns):
        return
    df = pd.DataFrame(matrix, columns=columns)
    order = list(range(len(matrix)))
    rnd.shuffle(order)
    shuffled = df.iloc[order].reset_index(drop=True)
    knee = knee_point(df, objectives, feasible)
    again = knee_point(shuffled, objectives, feasible[order])
    assert (knee is None) == (again is None)
    if knee is not None:
        assert df.loc[knee].tolist() == shuffled.loc[again].tolist()


def test_knee_of_a_front_bending_away_from_utopia_is_order_free():
    # Throughput up, power down; (3.8, 5.5) lies on the far side of the line through the extremes
    # (a zionex sweep's analytic front had this shape), so the extremes tie as knee candidates:
    # the one with the best first objective wins, whatever the row order.
    df = pd.DataFrame({"thr": [3.46, 3.82, 5.41], "power": [5.35, 5.49, 5.95]})
    objectives = {"thr": "max", "power": "min"}
    assert knee_point(df, objectives) == 2
    assert knee_point(df.iloc[::-1], objectives) == 2
