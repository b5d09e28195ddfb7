"""Any text, number or object given where a quantity is expected is a ``UnitError`` (a
``ConfigError`` the CLI prints as one line) or a finite float, never another exception."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.errors import UnitError
from recsim.units import Dimension, parse_quantity, quantity_of

#: Texts near quantities: signs, digits, dots, exponents, underscores, spaces and unit letters.
near_quantities = st.from_regex(r"[-+]?[0-9._]{0,8}([eE][-+]?[0-9]{0,6})?\s?[A-Za-z/_ ]{0,8}", fullmatch=True)
anything = st.one_of(
    st.text(max_size=24),
    near_quantities,
    st.floats(),
    st.integers(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(value=anything, dim=st.sampled_from(list(Dimension)))
def test_a_quantity_parses_to_a_finite_float_or_is_a_unit_error(value: object, dim: Dimension) -> None:
    try:
        parsed = parse_quantity(value, dim)
    except UnitError as exc:
        assert str(exc)  # says what it expected
    else:
        assert isinstance(parsed, float) and math.isfinite(parsed)
    found = quantity_of(value)
    assert found is None or (found[0] in Dimension and math.isfinite(found[1]))


def test_the_edges_of_the_number_syntax() -> None:
    # Exponents past any float, signs of zero and bare dots: each a UnitError or a finite value.
    assert parse_quantity("-0 GB", Dimension.BYTES) == 0.0
    assert parse_quantity(".5 GB", Dimension.BYTES) == 5e8
    for text in ("1e400 GB", "1e99999999999 GB", "nan GB", "inf GB", ". GB", "1e GB", "--1 GB", "1__0 GB"):
        try:
            value = parse_quantity(text, Dimension.BYTES)
        except UnitError:
            continue
        raise AssertionError(f"{text!r} parsed as {value!r}")
