"""The platform (``node.platform``) never makes a node's wall power less than the DC its supplies
deliver, nor that DC less than its components', for any supplies, fans, liquid cooling and load;
and every shipped system, compared in one sweep, carries a platform figure priced the same way."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsim.cost.platform import air_cooled_w, node_power, platform_note, sized_platform
from recsim.cost.power import step_energy
from recsim.hardware.library import HardwareLibrary
from recsim.hardware.platform import PSU_EFFICIENCY_CURVES, Platform
from recsim.hardware.system import System
from recsim.hardware.topology import build_topology

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COMPONENTS = ["accelerators", "cpus", "dram", "nmp", "nics", "ssds", "switches"]
SYSTEMS = sorted(p.stem for p in (Path(__file__).parents[2] / "hardware" / "systems").glob("*.yaml"))


@SETTINGS
@given(
    curve=st.sampled_from(sorted(PSU_EFFICIENCY_CURVES)),
    count=st.integers(min_value=1, max_value=64),
    rated_w=st.floats(min_value=100.0, max_value=10_000.0),
    fan_fraction=st.floats(min_value=0.0, max_value=0.5),
    baseboard_w=st.one_of(st.none(), st.floats(min_value=0.0, max_value=500.0)),
    liquid=st.sets(st.sampled_from(COMPONENTS)),
    watts=st.lists(st.floats(min_value=0.0, max_value=20_000.0), min_size=7, max_size=7),
)
def test_wall_is_never_below_dc_nor_dc_below_the_components(
    curve, count, rated_w, fan_fraction, baseboard_w, liquid, watts
):
    platform = Platform.model_validate(
        {
            "psus": {"count": count, "rated": f"{rated_w} W", "efficiency": curve},
            "fan_fraction": fan_fraction,
            "baseboard": None if baseboard_w is None else f"{baseboard_w} W",
            "liquid_cooled": sorted(liquid),
        }
    )
    by = dict(zip(COMPONENTS, watts, strict=True))
    p = node_power(platform, sum(by.values()), air_cooled_w(platform, by))
    assert p.wall_w >= p.dc_w >= p.components_w
    assert p.platform_w >= 0.0
    assert 0.0 <= p.fans_w <= p.dc_w


@cache
def _system(name: str) -> System:
    return HardwareLibrary().system(name, [])


@pytest.mark.parametrize("name", SYSTEMS)
def test_every_shipped_system_carries_a_platform_figure(name):
    # A sweep over the shipped systems charges each one's supplies and fans: none is priced on its
    # components alone, and each is priced by its own sourced platform or the generic default,
    # which the notes name.
    system = _system(name)
    platform = sized_platform(system.node)
    assert platform is not None and platform.psus.rated_w is not None
    energy = step_energy(system, build_topology(system), 0.01, {})
    watts = energy.power_by_component_w()
    assert watts["platform"] > 0.0
    components = sum(w for key, w in watts.items() if key != "platform")
    assert energy.avg_power_w > components
    note = platform_note(system)
    assert note is None or "generic default" in note
