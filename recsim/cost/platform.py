"""A node's wall (AC) power from its components' DC power and its platform (``node.platform``).

The supplies deliver the components' power, the baseboard's and the fans'; the fans draw
``fan_fraction`` of that DC total, so

    dc = (components + baseboard) / (1 - fan_fraction)
    wall = dc / efficiency(dc / (count x rated))

(``recsim.hardware.platform.psu_efficiency``: the supplies share the load evenly, each at the same
load fraction). The ``platform`` component of the power breakdown is ``wall - components``: the
fans, the baseboard and the conversion loss, so the component figures stay the DC ones they were.

ASSUMPTIONS: fan power in proportion to the heat the node dissipates (the fans' controllers raise
their speed with the components' power; the cube law of fan power in airflow and the inlet
temperature are not modelled: a linear share, as the source's is); the efficiency of the step's
average load (the supplies' efficiency varies little over a step's swings in their middle range).
"""

from __future__ import annotations

from dataclasses import dataclass

from recsim.hardware.platform import Platform, psu_efficiency


@dataclass(frozen=True)
class NodePower:
    """A node's draw at the wall and its parts (W)."""

    components_w: float
    fans_w: float
    baseboard_w: float
    dc_w: float
    efficiency: float
    wall_w: float

    @property
    def platform_w(self) -> float:
        """What the platform adds to the components: fans, baseboard and conversion loss."""
        return self.wall_w - self.components_w


def node_power(platform: Platform, components_w: float) -> NodePower:
    """Wall power of a node whose components draw ``components_w`` (DC, W) on ``platform``."""
    components = max(0.0, components_w)
    baseboard = platform.baseboard_w or 0.0
    dc = (components + baseboard) / (1.0 - platform.fan_fraction)
    psus = platform.psus
    efficiency = psu_efficiency(psus.efficiency, dc / (psus.count * psus.rated_w))
    return NodePower(
        components_w=components,
        fans_w=dc - components - baseboard,
        baseboard_w=baseboard,
        dc_w=dc,
        efficiency=efficiency,
        wall_w=dc / efficiency,
    )
