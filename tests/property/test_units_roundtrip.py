import math

from hypothesis import given
from hypothesis import strategies as st

from recsim.units import Dimension, format_quantity, parse_quantity

positive = st.floats(min_value=1e-15, max_value=1e21, allow_nan=False, allow_infinity=False)


@given(value=positive, dim=st.sampled_from(list(Dimension)), binary=st.booleans(), bits=st.booleans())
def test_exact_round_trip(value, dim, binary, bits):
    text = format_quantity(value, dim, digits=17, binary=binary, bits=bits)
    assert math.isclose(parse_quantity(text, dim), value, rel_tol=1e-14)


@given(value=positive, dim=st.sampled_from(list(Dimension)))
def test_short_format_within_rounding(value, dim):
    text = format_quantity(value, dim, digits=4)
    assert math.isclose(parse_quantity(text, dim), value, rel_tol=5e-4)


@given(mantissa=st.integers(min_value=1, max_value=999), dim=st.sampled_from(list(Dimension)))
def test_format_parse_format_is_stable(mantissa, dim):
    text = format_quantity(float(mantissa), dim)
    assert format_quantity(parse_quantity(text, dim), dim) == text


#: Values a hair under a unit of each ladder (decimal and binary prefixes, minutes), where the
#: rounded mantissa reaches the next unit.
near_a_unit = st.tuples(
    st.floats(min_value=0.99995, max_value=0.9999999),
    st.sampled_from([1e-9, 1e-6, 1e-3, 1.0, 60.0, 1e3, 1e6, 1e9, 1e12, 2.0**10, 2.0**20, 2.0**30, 2.0**40]),
).map(lambda pair: pair[0] * pair[1])


@given(value=st.one_of(positive, near_a_unit), dim=st.sampled_from(list(Dimension)), binary=st.booleans())
def test_a_printed_quantity_reads_back_to_itself(value, dim, binary):
    # Printed, read and printed again, a quantity keeps its text: a value that rounded up to the
    # next unit ("1000 us") printed in the next unit ("1 ms") the second time.
    text = format_quantity(value, dim, binary=binary)
    assert format_quantity(parse_quantity(text, dim), dim, binary=binary) == text
