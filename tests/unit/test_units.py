import math

import pytest

from recsim.errors import UnitError
from recsim.units import Dimension, format_quantity, parse_quantity

D = Dimension


@pytest.mark.parametrize(
    ("text", "dim", "expected"),
    [
        ("80 GB", D.BYTES, 80e9),
        ("40 MiB", D.BYTES, 40 * 2**20),
        ("1.5 TiB", D.BYTES, 1.5 * 2**40),
        ("64 B", D.BYTES, 64.0),
        ("8 Gb", D.BYTES, 1e9),
        ("3.35 TB/s", D.BYTES_PER_S, 3.35e12),
        ("1555 GB/s", D.BYTES_PER_S, 1555e9),
        ("200 Gb/s", D.BYTES_PER_S, 25e9),
        ("200 Gbps", D.BYTES_PER_S, 25e9),
        ("25 GBps", D.BYTES_PER_S, 25e9),
        ("16 Gbit/s", D.BYTES_PER_S, 2e9),
        ("19.5 TFLOP/s", D.FLOP_PER_S, 19.5e12),
        ("312 TFLOPS", D.FLOP_PER_S, 312e12),
        ("624 TOP/s", D.FLOP_PER_S, 624e12),
        ("638 MFLOP", D.FLOP, 638e6),
        ("1.5 us", D.SECONDS, 1.5e-6),
        ("1.5 µs", D.SECONDS, 1.5e-6),
        ("80 ns", D.SECONDS, 80e-9),
        ("2 ms", D.SECONDS, 2e-3),
        ("3 min", D.SECONDS, 180.0),
        ("1 h", D.SECONDS, 3600.0),
        ("400 W", D.WATTS, 400.0),
        ("1.2 kW", D.WATTS, 1200.0),
        ("250 mW", D.WATTS, 0.25),
        ("2.5 mJ", D.JOULES, 2.5e-3),
        ("1 kWh", D.JOULES, 3.6e6),
        ("3.9 pJ/bit", D.JOULES_PER_BIT, 3.9e-12),
        ("8 pJ/B", D.JOULES_PER_BIT, 1e-12),
        ("2.1 GHz", D.HERTZ, 2.1e9),
        ("1500 kIOPS", D.IO_PER_S, 1.5e6),
        ("1e3 GB", D.BYTES, 1e12),
        ("1_000 MB", D.BYTES, 1e9),
        ("  7GB  ", D.BYTES, 7e9),
    ],
)
def test_parse_exact(text, dim, expected):
    assert parse_quantity(text, dim) == pytest.approx(expected, rel=1e-15)


def test_mega_and_milli_are_not_confused():
    assert parse_quantity("1 MW", D.WATTS) == 1e6
    assert parse_quantity("1 mW", D.WATTS) == 1e-3
    assert parse_quantity("1 Mb/s", D.BYTES_PER_S) == 125e3
    assert parse_quantity("1 MB/s", D.BYTES_PER_S) == 1e6


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (80, "has no unit"),
        (1.5, "has no unit"),
        ("80", "has no unit"),
        ("80 parsecs", "unknown unit 'parsecs'"),
        ("fast", "not a number with a unit"),
        ("", "not a number with a unit"),
        ("80 GB/s", "expected a size in bytes"),
        (True, "got bool"),
        (None, "got NoneType"),
        ("1e999 GB", "not a finite quantity"),
    ],
)
def test_parse_errors_quote_the_text(value, fragment):
    with pytest.raises(UnitError) as info:
        parse_quantity(value, D.BYTES)
    assert fragment in str(info.value)


def test_wrong_dimension_names_both():
    with pytest.raises(UnitError, match=r"'1 TB' is a size in bytes, expected a bandwidth"):
        parse_quantity("1 TB", D.BYTES_PER_S)


@pytest.mark.parametrize(
    ("value", "dim", "kwargs", "text"),
    [
        (80e9, D.BYTES, {}, "80 GB"),
        (40 * 2**20, D.BYTES, {"binary": True}, "40 MiB"),
        (25e9, D.BYTES_PER_S, {"bits": True}, "200 Gb/s"),
        (3.35e12, D.BYTES_PER_S, {}, "3.35 TB/s"),
        (1.5e-6, D.SECONDS, {}, "1.5 us"),
        (0.0, D.SECONDS, {}, "0 s"),
        (0.0, D.WATTS, {}, "0 W"),
        (400.0, D.WATTS, {}, "400 W"),
        (19.5e12, D.FLOP_PER_S, {}, "19.5 TFLOP/s"),
        (3.9e-12, D.JOULES_PER_BIT, {}, "3.9 pJ/bit"),
    ],
)
def test_format(value, dim, kwargs, text):
    assert format_quantity(value, dim, **kwargs) == text


@pytest.mark.parametrize(
    ("value", "dim", "kwargs", "text"),
    [
        # A value just under a unit that rounds up to it is printed in that unit: "1000 us" and
        # "1024 B" broke the docstring's "largest unit that keeps the mantissa >= 1" (the run table
        # printed a 999.96 us step as "1000 us", a 1023.99-byte buffer as "1024 B").
        (999.96e-6, D.SECONDS, {}, "1 ms"),
        (0.99996, D.SECONDS, {}, "1 s"),
        (59.9999, D.SECONDS, {}, "1 min"),
        (-999.96e-6, D.SECONDS, {}, "-1 ms"),
        (1023.99, D.BYTES, {"binary": True}, "1 KiB"),
        (999.96e9, D.BYTES, {}, "1 TB"),
        # Not rounded up to the next unit: kept in its own.
        (999.9e-6, D.SECONDS, {}, "999.9 us"),
        (1023.4, D.BYTES, {"binary": True}, "1023 B"),
    ],
)
def test_format_moves_to_the_next_unit_when_rounding_reaches_it(value, dim, kwargs, text):
    assert format_quantity(value, dim, **kwargs) == text


@pytest.mark.parametrize(
    ("value", "dim", "kwargs", "text"),
    [
        # A binary unit holds mantissas up to 1023: at 3 digits (`recsim plan`'s rank table) 1010
        # MiB printed as "1.01e+03 MiB"; and past the last unit of a ladder, 50,000 h as "5e+04 h".
        (1010 * 2**20, D.BYTES, {"binary": True, "digits": 3}, "1010 MiB"),
        (1023.4 * 2**30, D.BYTES, {"binary": True, "digits": 3}, "1023 GiB"),
        (5e4 * 3600, D.SECONDS, {}, "50000 h"),
        # Unchanged where the digits hold the mantissa.
        (1010 * 2**20, D.BYTES, {"binary": True}, "1010 MiB"),
        (999.4e-6, D.SECONDS, {"digits": 3}, "999 us"),
    ],
)
def test_format_never_prints_a_mantissa_in_exponent_notation(value, dim, kwargs, text):
    assert format_quantity(value, dim, **kwargs) == text


def test_format_rejects_non_finite():
    with pytest.raises(ValueError):
        format_quantity(math.inf, D.BYTES)
