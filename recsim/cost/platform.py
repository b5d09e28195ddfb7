"""A node's wall (AC) power from its components' DC power and its platform (``node.platform``).

The supplies deliver the components' power, the baseboard's and the fans'; the fans draw
``fan_fraction`` of that DC total, so

    dc = components + baseboard + fans,  fans = fan_fraction / (1 - fan_fraction) x air-cooled
    wall = dc / efficiency(dc / (count x rated))

where the air-cooled power is the components not in ``liquid_cooled`` and the baseboard (on an
air-cooled node, all of it: ``dc = (components + baseboard) / (1 - fan_fraction)``), and the
efficiency is ``recsim.hardware.platform.psu_efficiency`` (the supplies share the load evenly, each
at the same load fraction). The ``platform`` component of the power breakdown is ``wall - components``: the
fans, the baseboard and the conversion loss, so the component figures stay the DC ones they were.

ASSUMPTIONS: fan power in proportion to the heat the node dissipates (the fans' controllers raise
their speed with the components' power; the cube law of fan power in airflow and the inlet
temperature are not modelled: a linear share, as the source's is); the efficiency of the step's
average load (the supplies' efficiency varies little over a step's swings in their middle range).

Supplies without a ``rated`` figure (``GENERIC_PLATFORM``'s) are sized by ``sized_platform`` on the
node's every-component-at-its-max DC (``node_max_by_component_w``); ``platform_note`` says, in a
result's notes, which platform priced the run where it is not the system's own sourced one, and
``platform_summary`` what ``recsim hw show`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass

from recsim.hardware.platform import (
    GENERIC_PLATFORM,
    GENERIC_SIZING_LOAD,
    NOT_MODELLED,
    Platform,
    psu_efficiency,
)
from recsim.hardware.system import Node, System


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


def node_power(platform: Platform, components_w: float, air_cooled_w: float | None = None) -> NodePower:
    """Wall power of a node whose components draw ``components_w`` (DC, W) on ``platform``, of
    which ``air_cooled_w`` is the heat the fans move (None: all of it). The supplies need a
    ``rated`` figure (``sized_platform`` gives one)."""
    components = max(0.0, components_w)
    air = components if air_cooled_w is None else min(components, max(0.0, air_cooled_w))
    baseboard = platform.baseboard_w or 0.0
    fans = platform.fan_fraction / (1.0 - platform.fan_fraction) * (air + baseboard)
    dc = components + baseboard + fans
    psus = platform.psus
    if psus.rated_w is None:
        raise ValueError("the supplies have no 'rated' output: size them first (sized_platform)")
    efficiency = psu_efficiency(psus.efficiency, dc / (psus.count * psus.rated_w))
    return NodePower(
        components_w=components,
        fans_w=fans,
        baseboard_w=baseboard,
        dc_w=dc,
        efficiency=efficiency,
        wall_w=dc / efficiency,
    )


def node_max_by_component_w(node: Node) -> dict[str, float]:
    """The DC each of a node's components draws with every one at its max (W, by
    ``recsim.cost.power.COMPONENTS`` name): accelerators, CPU sockets, NICs, SSDs and switches at
    their ``max``; the DIMMs at their idle power (RecNMP DIMMs at their max) plus every channel read
    at its full rate at the DIMM's energy per bit (the rule of ``step_energy``'s DRAM dynamic
    energy)."""
    out = dict.fromkeys(("accelerators", "cpus", "dram", "nmp", "nics", "ssds", "switches"), 0.0)
    acc = node.accelerators
    if acc is not None:
        out["accelerators"] = acc.count * acc.device.power.max_w
    out["cpus"] = node.cpus.count * node.cpus.device.power.max_w
    mem = node.host_memory
    dimms = node.memory_channels * mem.dimms_per_channel
    bits_per_s = node.host_memory_bandwidth_bytes_per_s * 8.0
    if mem.nmp is None:
        out["dram"] = dimms * (mem.device.idle_power_w or 0.0) + bits_per_s * mem.device.energy_per_bit_j
    else:
        out["dram"] = bits_per_s * mem.nmp.memory.energy_per_bit_j
        out["nmp"] = dimms * mem.nmp.power.max_w
    for group in (node.nics, node.frontend_nics):
        if group is not None:
            out["nics"] += node.nic_count(group) * group.device.power.max_w
    if node.ssds is not None:
        out["ssds"] = node.ssds.count * node.ssds.device.power.max_w
    up = node.scale_up
    if up is not None and up.switch is not None and up.switches:
        out["switches"] += up.switches * up.switch.power.max_w
    if node.pcie_switches is not None:
        out["switches"] += node.pcie_switches.count * node.pcie_switches.device.power.max_w
    return out


def air_cooled_w(platform: Platform, by_component_w: dict[str, float]) -> float:
    """The part of ``by_component_w`` the fans cool: every component not in ``liquid_cooled``."""
    cooled = set(platform.liquid_cooled)
    return sum(w for name, w in by_component_w.items() if name not in cooled)


def sized_platform(node: Node) -> Platform | None:
    """``node.platform`` with every supply rated: one without a ``rated`` figure is sized so that
    the node's every-component-at-its-max DC (fans and baseboard included) puts every supply at
    ``GENERIC_SIZING_LOAD`` of its rating. None where the node's platform is not modelled."""
    platform = node.platform
    if platform == NOT_MODELLED:
        return None
    assert isinstance(platform, Platform)
    if platform.psus.rated_w is not None:
        return platform
    unsized = platform.psus.model_copy(update={"rated_w": 1.0})
    peak_by = node_max_by_component_w(node)
    peak = node_power(
        platform.model_copy(update={"psus": unsized}),
        sum(peak_by.values()),
        air_cooled_w(platform, peak_by),
    )
    rated = peak.dc_w / (GENERIC_SIZING_LOAD * platform.psus.count)
    return platform.model_copy(update={"psus": platform.psus.model_copy(update={"rated_w": rated})})


def platform_note(system: System) -> str | None:
    """One line of a result's notes where the node's platform is not a sourced one of its system:
    the generic default, supplies sized by the rule, or no platform at all. None otherwise."""
    platform = system.node.platform
    sized = sized_platform(system.node)
    if sized is None or not isinstance(platform, Platform):
        return (
            "platform not modelled (node.platform: none): power is the components' DC draw, "
            "without supply losses or fans"
        )
    assert sized.psus.rated_w is not None
    if platform == GENERIC_PLATFORM:
        return (
            f"platform: the generic default (ASSUMPTION, {system.name} names no supplies): "
            f"{sized.psus.count} x {sized.psus.rated_w:,.0f} W 80 PLUS Platinum supplies sized at "
            f"{GENERIC_SIZING_LOAD:.0%} load at the node's all-max draw, fans "
            f"{platform.fan_fraction:.0%} of the DC"
        )
    if platform.psus.rated_w is None:
        return (
            f"platform: supplies rated by the generic sizing rule ({sized.psus.count} x "
            f"{sized.psus.rated_w:,.0f} W, {GENERIC_SIZING_LOAD:.0%} load at the node's all-max draw)"
        )
    return None


def platform_summary(node: Node) -> str:
    """One line for ``recsim hw show``: the node's supplies (as sized), fans and cooling, or that
    the platform is not modelled; the generic default is named as such, and so are supplies whose
    rating the sizing rule gave (as ``platform_note`` says of a run)."""
    sized = sized_platform(node)
    if sized is None:
        return "not modelled (node.platform: none)"
    psus = sized.psus
    assert psus.rated_w is not None
    said = f"{psus.count} x {psus.rated_w:,.0f} W {psus.efficiency}, fans {sized.fan_fraction:.0%} of the DC"
    if sized.liquid_cooled:
        said += f" of the air-cooled parts ({', '.join(sized.liquid_cooled)} liquid cooled)"
    if sized.baseboard_w:
        said += f", baseboard {sized.baseboard_w:,.0f} W"
    if node.platform == GENERIC_PLATFORM:
        return f"generic default (ASSUMPTION): {said}"
    if isinstance(node.platform, Platform) and node.platform.psus.rated_w is None:
        # A rating worked out here, not a sourced one: say so, as the run's notes do.
        said += (
            f" (rated by the generic sizing rule: {GENERIC_SIZING_LOAD:.0%} load at the node's all-max draw)"
        )
    return said
