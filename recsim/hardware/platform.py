"""A server's platform: what draws power besides its components (``node.platform`` of a system).

The component powers of ``recsim.cost.power`` are DC figures: what a GPU board, a CPU socket or a
NIC draws from the rails. What the wall sees is more: the power supplies lose part of what they
convert, and the fans (and, where sourced, the baseboard: BMC, retimers, VRM overhead) draw from
the same supplies. ``Platform`` holds the figures that price this (``recsim.cost.platform`` does
the arithmetic); a node without one reports its components only, as before.

Efficiency curves
-----------------
A supply's efficiency depends on its load fraction: its DC output over its rated output. The 80
PLUS programme certifies a minimum efficiency at a few load points (CLEAResult / 80 PLUS
programme requirements, tabulated by Tom's Hardware, "Is 80 PLUS Broken?", 2017,
https://www.tomshardware.com/reviews/80-plus-psu-efficiency,4848-2.html, "230V Internal
Redundant" columns). ``PSU_EFFICIENCY_CURVES`` holds those points; between them the efficiency is
interpolated linearly, outside them held at the nearest point (ASSUMPTION: a supply's efficiency
falls below its lowest certified load point, so the held figure is optimistic there; no certified
figure exists to price that). The certified figures are minimums: a certified supply may do better.

The generic platform
--------------------
A system that names no platform is not left without one: a sweep that compared a DGX (its own
supplies) with a server priced on its components alone would charge them differently for the same
work. Such a node gets ``GENERIC_PLATFORM`` (ASSUMPTION, reported in every result's notes): two 80
PLUS Platinum supplies (the level most servers' datasheets give; Titanium is the top one), fans 10 %
of the DC (Neudorfer, as the DGX figures), and supplies sized by ``GENERIC_SIZING_LOAD``: N+N
redundant sharing, the set's rating twice the node's every-component-at-its-max DC draw, so that at
that draw every supply is at half its rating (``recsim.cost.platform.sized_platform``). A supply
whose ``rated`` is left out is sized by that rule too. ``platform: none`` is the explicit choice
not to model the platform (a result then says so); ``platform: generic`` (or null, which in a config
drops an inherited key) asks for the default where an ``extends:`` parent names other supplies.
``--set node.platform.FIELD=...`` on a node with the default changes that field of the generic
platform (``expand_platform``); on ``none`` it is refused (there are no fields to set).

Liquid cooling
--------------
``liquid_cooled`` names the components whose heat leaves through cold plates (the coolant loop's
pumps and heat exchanger are the facility's, outside the node's supplies: ASSUMPTION, an in-rack CDU
would be the node's); the fans move the rest of the heat, so ``fan_fraction`` prices only the
air-cooled components' share (fan power in proportion to the heat they move, as for an air-cooled
node).
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Final, Literal, Self

from annotated_types import Ge, Lt
from pydantic import Field, model_validator

from recsim.config.types import PositiveInt, Spec, Watts
from recsim.errors import ConfigError

#: Minimum efficiency (AC in to DC out) at each load fraction of the 80 PLUS levels for 230 V
#: internal redundant (data-centre) supplies, (load fraction, efficiency) in increasing load: the
#: 80 PLUS programme's requirements (module docstring). Titanium adds the 10 % point.
PSU_EFFICIENCY_CURVES: Final[dict[str, tuple[tuple[float, float], ...]]] = {
    "80plus-titanium-230v-redundant": ((0.10, 0.90), (0.20, 0.94), (0.50, 0.96), (1.00, 0.91)),
    "80plus-platinum-230v-redundant": ((0.20, 0.90), (0.50, 0.94), (1.00, 0.91)),
    "80plus-gold-230v-redundant": ((0.20, 0.88), (0.50, 0.92), (1.00, 0.88)),
}

#: The sizing rule of supplies with no ``rated`` (``GENERIC_PLATFORM``'s): the load fraction every
#: supply is at when the node draws every component's max DC. N+N redundancy (two supplies, either
#: able to carry the node alone) puts them at half their rating there. ASSUMPTION: the usual sizing
#: of a redundant server's supplies (the DGX H100 User Guide's six 3.3 kW supplies for its 10.2 kW
#: input are 4+2; the DGX A100 User Guide's six 3 kW for 6.5 kW are 3+3, at 36 % with all six up).
GENERIC_SIZING_LOAD: Final[float] = 0.5

#: Component names ``liquid_cooled`` may list (``recsim.cost.power.COMPONENTS`` inside a node).
CooledComponent = Literal["accelerators", "cpus", "dram", "nmp", "nics", "ssds", "switches"]

EfficiencyCurve = Literal[
    "80plus-titanium-230v-redundant", "80plus-platinum-230v-redundant", "80plus-gold-230v-redundant"
]


def psu_efficiency(curve: str, load_fraction: float) -> float:
    """Efficiency of a supply of ``curve`` at ``load_fraction`` of its rated output: linear between
    the curve's points, held at the end points outside them."""
    points = PSU_EFFICIENCY_CURVES[curve]
    if load_fraction <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if load_fraction <= x1:
            return y0 + (y1 - y0) * (load_fraction - x0) / (x1 - x0)
    return points[-1][1]


class PowerSupplies(Spec):
    """A node's power supplies, all sharing its load (``count`` of them, each rated ``rated`` DC
    out, certified to ``efficiency``). A redundant set (4+2) still shares the load over every
    supply while all are up, so ``count`` is every supply, not the ones the load needs. ``rated``
    left out: sized by ``GENERIC_SIZING_LOAD`` on the node's every-component-at-its-max draw."""

    count: PositiveInt
    rated_w: Watts | None = Field(default=None, alias="rated")
    efficiency: EfficiencyCurve

    @model_validator(mode="after")
    def _rated(self) -> Self:
        if self.rated_w is not None and self.rated_w <= 0:
            raise ValueError("a power supply's 'rated' output must be above 0 W")
        return self


class Platform(Spec):
    """What a node draws beyond its components: the supplies' conversion loss, the fans' share of
    the DC the supplies deliver (``fan_fraction``), and a fixed baseboard draw where sourced."""

    psus: PowerSupplies
    #: The fans' share of the DC power the supplies deliver (fans included).
    fan_fraction: Annotated[float, Ge(0), Lt(1)]
    #: Fixed board-level draw (BMC, retimers, boot drives ...) not priced by any component;
    #: None: not modelled (no sourced figure).
    baseboard_w: Watts | None = Field(default=None, alias="baseboard")
    #: Components cooled by liquid (cold plates), whose heat the fans do not move.
    liquid_cooled: list[CooledComponent] = Field(default_factory=list)


#: The platform of a node whose system names none (module docstring; ASSUMPTION): two Platinum
#: supplies sized by ``GENERIC_SIZING_LOAD``, fans 10 % of the DC (Neudorfer, "How to Optimize the
#: Energy Efficiency of Your Server", eWeek 2009: "10 to 15 percent or more"; the low end, as the
#: DGX systems'), no baseboard figure.
GENERIC_PLATFORM: Final[Platform] = Platform(
    psus=PowerSupplies(count=2, rated_w=None, efficiency="80plus-platinum-230v-redundant"),
    fan_fraction=0.10,
)

#: What ``node.platform: generic`` stands for.
GENERIC: Final[str] = "generic"
#: ``node.platform: none``: the platform is not modelled (the user's choice).
NOT_MODELLED: Final = "none"


def expand_platform(value: object) -> dict[str, Any] | None:
    """The mapping ``node.platform``'s ``value`` stands for where an override sets a field inside
    it (``--set node.platform.fan_fraction=0.15``): left out (None), null or ``generic`` is
    ``GENERIC_PLATFORM``'s, so the field changes the default; ``none`` has no fields (the platform
    is not modelled: a ``ConfigError`` says what is expected); any other value is left to the
    schema (None: not expanded)."""
    if value is None or value == GENERIC:
        return GENERIC_PLATFORM.model_dump(mode="json", by_alias=True, exclude_none=True)
    if value == NOT_MODELLED:
        raise ConfigError(
            f"{NOT_MODELLED!r} (the platform not modelled) has no fields; expected a "
            f"platform mapping or {GENERIC!r} (the default) to set a field in"
        )
    return None
