"""Field types for config schemas: quantities with units, positive counts, strict base model.

A quantity field accepts only a string with a unit in YAML (``"80 GB"``); the validator parses it
with ``recsim.units`` into an SI float, so the validated model holds plain floats whose attribute
names carry the unit (``capacity_bytes``) while the YAML key stays short (``capacity``, the alias).
The JSON Schema of such a field is a string with a number-and-unit pattern, so editors flag
``capacity: 80`` before recsim does.
"""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Ge, Gt, Le
from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from recsim.units import QUANTITY_PATTERN, Dimension, parse_quantity, unit_examples


class Spec(BaseModel):
    """Base of every config schema: strict types, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        populate_by_name=True,
        validate_default=False,
        ser_json_inf_nan="strings",
        # A float setting is a finite number: an infinite oversubscription or bandwidth has no
        # topology to build (quantities with units are checked in ``recsim.units`` already).
        allow_inf_nan=False,
    )


def _quantity(dimension: Dimension) -> Any:
    def parse(value: object) -> float:
        return parse_quantity(value, dimension)

    return (
        BeforeValidator(parse),
        WithJsonSchema(
            {
                "type": "string",
                "pattern": QUANTITY_PATTERN,
                "description": unit_examples(dimension),
            }
        ),
    )


Bytes = Annotated[float, *_quantity(Dimension.BYTES), Gt(0)]
BytesPerS = Annotated[float, *_quantity(Dimension.BYTES_PER_S), Gt(0)]
Seconds = Annotated[float, *_quantity(Dimension.SECONDS), Ge(0)]
PositiveSeconds = Annotated[float, *_quantity(Dimension.SECONDS), Gt(0)]
Watts = Annotated[float, *_quantity(Dimension.WATTS), Ge(0)]
JoulesPerBit = Annotated[float, *_quantity(Dimension.JOULES_PER_BIT), Gt(0)]
Joules = Annotated[float, *_quantity(Dimension.JOULES), Ge(0)]
FlopPerS = Annotated[float, *_quantity(Dimension.FLOP_PER_S), Gt(0)]
Hertz = Annotated[float, *_quantity(Dimension.HERTZ), Gt(0)]
IoPerS = Annotated[float, *_quantity(Dimension.IO_PER_S), Gt(0)]
PositiveInt = Annotated[int, Gt(0)]
NonNegativeInt = Annotated[int, Ge(0)]
Fraction = Annotated[float, Gt(0), Le(1)]
Ratio = Annotated[float, Gt(0)]
