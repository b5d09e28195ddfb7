"""Quantities with units: parse "80 GB", "3.35 TB/s", "19.5 TFLOP/s", "1.5 us", "400 W" into SI floats.

recsim keeps SI floats everywhere inside (bytes, seconds, bytes/s, FLOP/s, W, J, J/bit, Hz) and
accepts unit strings only at the edges: YAML files, ``--set`` overrides and printed output. This
module is the one place that converts between the two.

Rules (DESIGN §4.1):

* decimal prefixes are decimal (``GB`` = 1e9 bytes, ``kB``/``KB`` = 1e3), binary prefixes are binary
  (``GiB`` = 2**30 bytes);
* a lower-case ``b`` (or ``bit``) is a bit and an upper-case ``B`` a byte, so ``Gb/s`` and ``Gbps`` are
  gigabits per second (1.25e8 bytes/s) while ``GB/s`` and ``GBps`` are gigabytes per second;
* ``TOP/s`` / ``TOPS`` (integer operations) are accepted wherever FLOP/s are: both are "operations
  per second" of a compute peak;
* a number without a unit, or with a unit of the wrong dimension, is an error that quotes the text.

Units are case-sensitive where the case carries meaning (``mW`` vs ``MW``, ``Mb`` vs ``MB``).
"""

from __future__ import annotations

import decimal
import math
import re
from enum import StrEnum
from typing import Final

from recsim.errors import UnitError

__all__ = [
    "Dimension",
    "format_quantity",
    "parse_quantity",
    "unit_examples",
]


class Dimension(StrEnum):
    """The physical dimension of a quantity; each maps to one SI unit inside recsim."""

    BYTES = "bytes"
    BYTES_PER_S = "bytes/s"
    SECONDS = "s"
    WATTS = "W"
    JOULES = "J"
    JOULES_PER_BIT = "J/bit"
    FLOP = "FLOP"
    FLOP_PER_S = "FLOP/s"
    HERTZ = "Hz"
    IO_PER_S = "IO/s"


_DESCRIPTION: Final[dict[Dimension, str]] = {
    Dimension.BYTES: "a size in bytes, e.g. '80 GB', '40 MiB'",
    Dimension.BYTES_PER_S: "a bandwidth, e.g. '3.35 TB/s', '200 Gb/s'",
    Dimension.SECONDS: "a time, e.g. '1.5 us', '80 ns'",
    Dimension.WATTS: "a power, e.g. '400 W'",
    Dimension.JOULES: "an energy, e.g. '2.5 mJ'",
    Dimension.JOULES_PER_BIT: "an energy per bit, e.g. '3.9 pJ/bit'",
    Dimension.FLOP: "an operation count, e.g. '638 MFLOP'",
    Dimension.FLOP_PER_S: "a compute rate, e.g. '19.5 TFLOP/s', '624 TOP/s'",
    Dimension.HERTZ: "a frequency, e.g. '2.1 GHz'",
    Dimension.IO_PER_S: "an I/O rate, e.g. '1500 kIOPS'",
}

_DECIMAL: Final[dict[str, float]] = {
    "": 1.0,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
_BINARY: Final[dict[str, float]] = {
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
_SMALL: Final[dict[str, float]] = {
    "f": 1e-15,
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "µ": 1e-6,
    "μ": 1e-6,
    "m": 1e-3,
}


def _build_table() -> dict[str, tuple[Dimension, float]]:
    table: dict[str, tuple[Dimension, float]] = {}

    def add(unit: str, dim: Dimension, factor: float) -> None:
        if unit in table and table[unit] != (dim, factor):
            raise AssertionError(f"ambiguous unit {unit!r}")  # a bug in this table, not user input
        table[unit] = (dim, factor)

    for prefix, factor in (_DECIMAL | _BINARY).items():
        add(f"{prefix}B", Dimension.BYTES, factor)
        add(f"{prefix}b", Dimension.BYTES, factor / 8)
        add(f"{prefix}bit", Dimension.BYTES, factor / 8)
        for per_s in ("/s", "ps"):
            add(f"{prefix}B{per_s}", Dimension.BYTES_PER_S, factor)
            add(f"{prefix}b{per_s}", Dimension.BYTES_PER_S, factor / 8)
        add(f"{prefix}bit/s", Dimension.BYTES_PER_S, factor / 8)
    for prefix, factor in _DECIMAL.items():
        for name in ("FLOP/s", "FLOPS", "flop/s", "OP/s", "OPS", "op/s"):
            add(f"{prefix}{name}", Dimension.FLOP_PER_S, factor)
        for name in ("FLOP", "flop", "OP", "op"):
            add(f"{prefix}{name}", Dimension.FLOP, factor)
        add(f"{prefix}IOPS", Dimension.IO_PER_S, factor)
    for prefix, factor in {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.items():
        add(f"{prefix}Hz", Dimension.HERTZ, factor)
    for prefix, factor in ({"": 1.0} | _SMALL).items():
        add(f"{prefix}s", Dimension.SECONDS, factor)
    add("sec", Dimension.SECONDS, 1.0)
    add("min", Dimension.SECONDS, 60.0)
    add("h", Dimension.SECONDS, 3600.0)
    for prefix, factor in ({"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9} | _SMALL).items():
        add(f"{prefix}W", Dimension.WATTS, factor)
        add(f"{prefix}J", Dimension.JOULES, factor)
        add(f"{prefix}J/bit", Dimension.JOULES_PER_BIT, factor)
        add(f"{prefix}J/b", Dimension.JOULES_PER_BIT, factor)
        add(f"{prefix}J/B", Dimension.JOULES_PER_BIT, factor / 8)
    add("Wh", Dimension.JOULES, 3600.0)
    add("kWh", Dimension.JOULES, 3.6e6)
    return table


_UNITS: Final[dict[str, tuple[Dimension, float]]] = _build_table()

_NUMBER = r"[+-]?(?:\d+(?:_\d+)*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY_RE: Final[re.Pattern[str]] = re.compile(rf"^\s*({_NUMBER})\s*([^\s\d].*?)?\s*$")

# Pattern for JSON Schema: a number followed by a unit (the loader checks the unit itself).
QUANTITY_PATTERN: Final[str] = rf"^\s*{_NUMBER}\s*[^\s\d].*$"


def unit_examples(dimension: Dimension) -> str:
    """A human description of what a quantity of ``dimension`` looks like."""
    return _DESCRIPTION[dimension]


def parse_quantity(text: object, dimension: Dimension) -> float:
    """Parse ``text`` (e.g. ``"3.35 TB/s"``) into an SI float of ``dimension``.

    Raises ``UnitError`` quoting the text when the unit is missing, unknown or of another dimension,
    or when the number is not finite.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise UnitError(f"expected {unit_examples(dimension)}, got {type(text).__name__} {text!r}")
    if isinstance(text, (int, float)):
        raise UnitError(f"{text!r} has no unit: expected {unit_examples(dimension)}")
    match = _QUANTITY_RE.match(text)
    if match is None:
        raise UnitError(f"{text!r} is not a number with a unit: expected {unit_examples(dimension)}")
    number_text, unit = match.group(1), match.group(2)
    if not unit:
        raise UnitError(f"{text!r} has no unit: expected {unit_examples(dimension)}")
    unit = unit.strip()
    if unit not in _UNITS:
        raise UnitError(f"{text!r}: unknown unit {unit!r}: expected {unit_examples(dimension)}")
    unit_dim, factor = _UNITS[unit]
    if unit_dim is not dimension:
        raise UnitError(
            f"{text!r} is {unit_examples(unit_dim).split(',')[0]}, expected {unit_examples(dimension)}"
        )
    # In decimal, then rounded once: "2.039 TB/s" and "2039 GB/s" are the same float (a float
    # product rounded twice told them apart, and so did the config hash).
    # No traps: an exponent past the context's range gives an infinity (or NaN), which the
    # finiteness check below turns into the user's error (not a decimal.Overflow traceback).
    with decimal.localcontext(decimal.Context(prec=60, traps=[])):
        value = float(decimal.Decimal(number_text.replace("_", "")) * decimal.Decimal(repr(factor)))
    if not math.isfinite(value):
        raise UnitError(f"{text!r} is not a finite quantity")
    return value


def quantity_of(text: object) -> tuple[Dimension, float] | None:
    """``(dimension, SI value)`` of a quantity text in any known unit (``"2 TB/s"``), else None
    (a number, a plain word, a unit recsim does not know)."""
    if not isinstance(text, str):
        return None
    match = _QUANTITY_RE.match(text)
    if match is None or not match.group(2) or match.group(2).strip() not in _UNITS:
        return None
    dimension = _UNITS[match.group(2).strip()][0]
    try:
        return dimension, parse_quantity(text, dimension)
    except UnitError:
        return None


# Output units, largest first: (threshold factor, unit string).
_FORMAT_LADDER: Final[dict[Dimension, tuple[tuple[float, str], ...]]] = {
    Dimension.BYTES: tuple((f, f"{p}B") for p, f in _DECIMAL.items() if p not in ("K",))[::-1],
    Dimension.BYTES_PER_S: tuple((f, f"{p}B/s") for p, f in _DECIMAL.items() if p not in ("K",))[::-1],
    Dimension.FLOP_PER_S: tuple((f, f"{p}FLOP/s") for p, f in _DECIMAL.items() if p not in ("K",))[::-1],
    Dimension.FLOP: tuple((f, f"{p}FLOP") for p, f in _DECIMAL.items() if p not in ("K",))[::-1],
    Dimension.IO_PER_S: ((1e6, "MIOPS"), (1e3, "kIOPS"), (1.0, "IOPS")),
    Dimension.HERTZ: ((1e9, "GHz"), (1e6, "MHz"), (1e3, "kHz"), (1.0, "Hz")),
    Dimension.SECONDS: (
        (3600.0, "h"),
        (60.0, "min"),
        (1.0, "s"),
        (1e-3, "ms"),
        (1e-6, "us"),
        (1e-9, "ns"),
        (1e-12, "ps"),
    ),
    Dimension.WATTS: ((1e6, "MW"), (1e3, "kW"), (1.0, "W"), (1e-3, "mW"), (1e-6, "uW")),
    Dimension.JOULES: (
        (1e6, "MJ"),
        (1e3, "kJ"),
        (1.0, "J"),
        (1e-3, "mJ"),
        (1e-6, "uJ"),
        (1e-9, "nJ"),
        (1e-12, "pJ"),
    ),
    Dimension.JOULES_PER_BIT: (
        (1.0, "J/bit"),
        (1e-3, "mJ/bit"),
        (1e-6, "uJ/bit"),
        (1e-9, "nJ/bit"),
        (1e-12, "pJ/bit"),
        (1e-15, "fJ/bit"),
    ),
}
_BINARY_BYTES: Final[tuple[tuple[float, str], ...]] = tuple(
    (f, f"{p}B") for p, f in ({"": 1.0} | _BINARY).items()
)[::-1]
_BITS_PER_S: Final[tuple[tuple[float, str], ...]] = tuple(
    (f / 8, f"{p}b/s") for p, f in _DECIMAL.items() if p not in ("K",)
)[::-1]


def format_quantity(
    value: float,
    dimension: Dimension,
    *,
    digits: int = 4,
    binary: bool = False,
    bits: bool = False,
) -> str:
    """Format an SI float with the largest unit that keeps the mantissa >= 1.

    ``digits`` significant digits (use 17 for an exact round trip through ``parse_quantity``);
    ``binary`` uses KiB/MiB/GiB for sizes; ``bits`` prints bandwidths in b/s as networks do.
    """
    ladder = _FORMAT_LADDER[dimension]
    if binary and dimension is Dimension.BYTES:
        ladder = _BINARY_BYTES
    if bits and dimension is Dimension.BYTES_PER_S:
        ladder = _BITS_PER_S
    if not math.isfinite(value):
        raise ValueError(f"cannot format non-finite {value!r}")
    magnitude = abs(value)
    factor, unit = ladder[-1]
    if magnitude == 0.0:
        factor, unit = next(((f, u) for f, u in ladder if f == 1.0), ladder[-1])
    for candidate_factor, candidate_unit in ladder:
        # Judged on the mantissa as printed: 999.96 us rounds to 1000 at 4 digits, which is
        # "1 ms", not "1000 us" (a value just under a unit printed as 1000 or 1024 of the one below).
        if float(f"{magnitude / candidate_factor:.{digits}g}") >= 1.0:
            factor, unit = candidate_factor, candidate_unit
            break
    mantissa = value / factor
    text = f"{mantissa:.{digits}g}"
    if "e+" in text:
        # More whole digits than ``digits`` (a binary unit's 1000-1023, or past the ladder's last
        # unit): the whole number, not "1.01e+03 MiB".
        text = f"{mantissa:.0f}"
    return f"{text} {unit}"
