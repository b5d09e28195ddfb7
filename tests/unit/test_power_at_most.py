"""``recsim.cost.power._at_most`` is ``min(cap, value)`` to the bit (signed zeros and NaN as the
builtin leaves them), which ``step_energy``'s loops read without the builtin's call."""

from __future__ import annotations

import math
import struct

from hypothesis import given
from hypothesis import strategies as st

from recsim.cost.power import _at_most

floats = st.one_of(st.floats(allow_nan=True), st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan]))


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


@given(value=floats, cap=floats)
def test_at_most_is_the_builtin_min(value: float, cap: float) -> None:
    assert _bits(_at_most(value, cap)) == _bits(min(cap, value))


def test_a_few_cases() -> None:
    assert _at_most(0.5, 1.0) == 0.5 and _at_most(2.0, 1.0) == 1.0
    assert math.isnan(_at_most(1.0, math.nan)) and _at_most(math.nan, 1.0) == 1.0
    assert math.copysign(1.0, _at_most(-0.0, 0.0)) == 1.0  # equal: the cap, as ``min(0.0, -0.0)``
