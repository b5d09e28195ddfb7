"""``popularity.dot`` calls numpy's C einsum as ``np.einsum`` does by default: the same bits."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recsim.workload.access.popularity import dot

FLOATS = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(min_value=0, max_value=300).flatmap(
        lambda n: st.tuples(*(hnp.arrays(np.float64, n, elements=FLOATS),) * 2)
    )
)
def test_dot_is_numpys_einsum(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    got = dot(a, b)
    assert isinstance(got, float)
    assert got == float(np.einsum("i,i->", a, b))


def test_dot_of_a_small_case() -> None:
    assert dot(np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.25, 2.0])) == 7.0
