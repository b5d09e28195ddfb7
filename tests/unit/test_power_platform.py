"""The platform's power (``node.platform``): supply efficiency by load, fans and baseboard by hand,
wall power never below the DC it delivers nor falling with load, and the platform in a step's
energy beside the components it leaves as they were; the generic default (a system naming no
supplies) and its sizing rule by hand, ``none`` (not modelled), liquid cooling, and every shipped
system's platform."""

import math

import pytest

from recsim.api import simulate_run
from recsim.config import Override
from recsim.cost.platform import (
    air_cooled_w,
    node_max_by_component_w,
    node_power,
    platform_note,
    platform_summary,
    sized_platform,
)
from recsim.cost.power import step_energy
from recsim.hardware.library import HardwareLibrary
from recsim.hardware.platform import (
    GENERIC_PLATFORM,
    PSU_EFFICIENCY_CURVES,
    Platform,
    psu_efficiency,
)
from recsim.hardware.topology import build_topology
from tests.conftest import FIXTURES

HW = HardwareLibrary([FIXTURES / "minilib"])
TITANIUM = "80plus-titanium-230v-redundant"
#: Two 1 kW Titanium supplies, fans 10 % of the DC, a 20 W baseboard.
PLATFORM = (
    "{psus: {count: 2, rated: 1000 W, efficiency: 80plus-titanium-230v-redundant}, "
    "fan_fraction: 0.1, baseboard: 20 W}"
)


def _platform() -> Platform:
    return Platform.model_validate(
        {
            "psus": {"count": 2, "rated": "1000 W", "efficiency": TITANIUM},
            "fan_fraction": 0.1,
            "baseboard": "20 W",
        }
    )


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        (0.05, 0.90),  # below the lowest certified point: held there
        (0.10, 0.90),
        (0.15, 0.92),  # halfway between 90 % at 10 % and 94 % at 20 %
        (0.50, 0.96),
        (0.75, 0.935),  # halfway between 96 % and 91 %
        (1.00, 0.91),
        (1.20, 0.91),  # overloaded: held at the rated point
    ],
)
def test_titanium_efficiency_interpolates_the_certified_points(load, expected):
    assert psu_efficiency(TITANIUM, load) == pytest.approx(expected)


def test_node_power_by_hand():
    # 880 W of components and a 20 W baseboard are 90 % of the DC (fans 10 %): 1000 W, half the two
    # supplies' 2000 W, at 96 %.
    p = node_power(_platform(), 880.0)
    assert p.dc_w == pytest.approx(1000.0)
    assert p.fans_w == pytest.approx(100.0)
    assert p.baseboard_w == 20.0
    assert p.efficiency == pytest.approx(0.96)
    assert p.wall_w == pytest.approx(1000.0 / 0.96)
    assert p.platform_w == pytest.approx(1000.0 / 0.96 - 880.0)


@pytest.mark.parametrize("curve", sorted(PSU_EFFICIENCY_CURVES))
def test_more_load_never_lowers_wall_power_and_wall_is_at_least_dc(curve):
    platform = Platform.model_validate(
        {"psus": {"count": 2, "rated": "1000 W", "efficiency": curve}, "fan_fraction": 0.1}
    )
    previous = 0.0
    for step in range(0, 2501, 5):  # 0 .. 2.5 kW of components, past the supplies' rating
        p = node_power(platform, float(step))
        assert p.wall_w >= p.dc_w >= p.components_w
        assert p.wall_w >= previous
        previous = p.wall_w


def _tiny(nodes: int, *extra: str):
    sets = [f"cluster.nodes={nodes}", "node.accelerators.count=2", *extra]
    return HW.system("tiny", [Override.parse(s) for s in sets])


@pytest.mark.parametrize("extra", [(), ("node.platform=generic",), ("node.platform=null",)])
def test_a_field_set_on_the_generic_default_changes_only_that_field(extra):
    # Was refused: "'platform' is a value, not a mapping" (or, left out, no 'psus'), so the
    # default's fans or supplies could not be changed without writing the whole platform.
    system = _tiny(1, *extra, "node.platform.fan_fraction=0.15", "node.platform.psus.count=4")
    psus = GENERIC_PLATFORM.psus.model_copy(update={"count": 4})
    assert system.node.platform == GENERIC_PLATFORM.model_copy(update={"fan_fraction": 0.15, "psus": psus})


def test_a_field_set_on_a_written_platform_keeps_the_rest():
    system = _tiny(1, f"node.platform={PLATFORM}", "node.platform.fan_fraction=0.15")
    assert system.node.platform == _platform().model_copy(update={"fan_fraction": 0.15})


def test_a_node_whose_platform_is_none_reports_no_platform_power_and_says_so():
    system = _tiny(1, "node.platform=none")
    e = step_energy(system, build_topology(system), 0.01, {})
    assert "platform" not in e.by_component_j
    note = platform_note(system)
    assert note is not None and "not modelled" in note


@pytest.mark.parametrize("extra", [(), ("node.platform=generic",), ("node.platform=null",)])
def test_a_node_naming_no_platform_gets_the_generic_default(extra):
    # Left out, 'generic', or null (which drops the key, as everywhere in a config).
    system = _tiny(1, *extra)
    assert system.node.platform == GENERIC_PLATFORM
    e = step_energy(system, build_topology(system), 0.01, {})
    assert e.by_component_j["platform"] > 0.0
    note = platform_note(system)
    assert note is not None and "generic default" in note and "ASSUMPTION" in note


def test_the_generic_sizing_rule_by_hand():
    # tiny with 2 GPUs, every component at its max: 2 x 400 W GPUs, 2 x 200 W CPU sockets, 8
    # channels of 25.6 GB/s DDR at 20 pJ/bit (32.768 W; the DIMMs give no idle power), 2 x 20 W
    # NICs, 2 x 100 W NVSwitches + 2 x 30 W PCIe switches: 1532.768 W. With the fans' 10 %, 1703.08 W
    # of DC, which two supplies carry at half their rating: 1703.08 W each.
    node = _tiny(1).node
    by = node_max_by_component_w(node)
    assert by == pytest.approx(
        {
            "accelerators": 800.0,
            "cpus": 400.0,
            "dram": 32.768,
            "nmp": 0.0,
            "nics": 40.0,
            "ssds": 0.0,
            "switches": 260.0,
        }
    )
    sized = sized_platform(node)
    assert sized is not None and sized.psus.count == 2
    assert sized.psus.rated_w == pytest.approx(1532.768 / 0.9)
    assert sized.psus.efficiency == "80plus-platinum-230v-redundant"
    # At that max draw every supply is at 50 %: Platinum's 94 %.
    peak = node_power(sized, sum(by.values()))
    assert peak.dc_w / (2 * sized.psus.rated_w) == pytest.approx(0.5)
    assert peak.efficiency == pytest.approx(0.94)
    assert peak.wall_w == pytest.approx(1532.768 / 0.9 / 0.94)


def test_supplies_without_a_rating_are_sized_by_the_rule_and_a_note_says_so():
    system = _tiny(
        1,
        "node.platform={psus: {count: 4, efficiency: 80plus-titanium-230v-redundant}, fan_fraction: 0.1}",
    )
    sized = sized_platform(system.node)
    assert sized is not None and sized.psus.rated_w == pytest.approx(1532.768 / 0.9 / (0.5 * 4))
    note = platform_note(system)
    assert note is not None and "sizing rule" in note
    # ``recsim hw show`` says it too: the rating is the rule's, not a sourced figure.
    summary = platform_summary(system.node)
    assert summary.startswith("4 x ") and "sizing rule" in summary
    sourced = _tiny(
        1,
        "node.platform={psus: {count: 4, rated: 1 kW, efficiency: 80plus-titanium-230v-redundant}, "
        "fan_fraction: 0.1}",
    )
    assert "sizing rule" not in platform_summary(sourced.node)


def test_liquid_cooled_components_leave_the_fans_out():
    # Fans move only the air-cooled heat: 100 W of NICs among 1000 W of components, fans 10 % of
    # the air-cooled DC: 100 / 0.9 - 100 W.
    platform = Platform.model_validate(
        {
            "psus": {"count": 2, "rated": "1000 W", "efficiency": TITANIUM},
            "fan_fraction": 0.1,
            "liquid_cooled": ["accelerators", "cpus"],
        }
    )
    by = {"accelerators": 700.0, "cpus": 200.0, "nics": 100.0}
    assert air_cooled_w(platform, by) == 100.0
    p = node_power(platform, 1000.0, air_cooled_w(platform, by))
    assert p.fans_w == pytest.approx(100.0 / 0.9 - 100.0)
    assert p.dc_w == pytest.approx(1000.0 + 100.0 / 0.9 - 100.0)
    air = node_power(platform, 1000.0)
    assert air.fans_w == pytest.approx(1000.0 / 0.9 - 1000.0) and air.fans_w > p.fans_w


def test_the_platform_prices_every_node_on_what_is_inside_it_and_leaves_the_components_alone():
    # Two nodes on one 8-port switch: the switch is a box of its own, outside the nodes' supplies.
    scale_out = "cluster.scale_out={topology: single_switch, tiers: 1, switch: tiny-switch}"
    bare = _tiny(2, scale_out, "node.platform=none")
    with_platform = _tiny(2, scale_out, f"node.platform={PLATFORM}")
    step = 0.01
    busy = {(0, "compute"): 0.005, (0, "host"): 0.002}
    before = step_energy(bare, build_topology(bare), step, busy, host_bytes=1e8)
    after = step_energy(with_platform, build_topology(with_platform), step, busy, host_bytes=1e8)
    for name, joules in before.by_component_j.items():
        assert after.by_component_j[name] == pytest.approx(joules)
    # The scale-out switch: 4 NIC ports of 8 at 100 W (test_power's scale-out case).
    switch_w = 100 * 4 / 8
    inside_w = before.total_j / step - switch_w
    per_node = node_power(_platform(), inside_w / 2)
    assert after.by_component_j["platform"] == pytest.approx(2 * per_node.platform_w * step)
    assert after.total_j == pytest.approx(before.total_j + 2 * per_node.platform_w * step)


@pytest.mark.parametrize(
    ("name", "rated_input_w"),
    [
        ("dgx-h100", 10_200.0),  # DGX H100/H200 User Guide: 10.2 kW maximum input
        ("dgx-a100", 6_500.0),  # DGX A100 User Guide: 6.5 kW maximum input
        ("dgx-b200", 14_300.0),  # DGX B200 User Guide: 14.3 kW maximum input
    ],
)
def test_a_dgx_with_every_component_at_its_max_stays_under_its_rated_input(name, rated_input_w):
    # Every component at its max power (DRAM: its DIMMs' idle power and every channel at its full
    # rate). Measured: 8.4 kW at most on an 8 x H100 HGX node in training (Latif et al., IEEE
    # Access 2025).
    node = HardwareLibrary().system(name, []).node
    platform = sized_platform(node)
    assert platform is not None and platform.psus.rated_w is not None
    components = sum(node_max_by_component_w(node).values())
    wall = node_power(platform, components)
    assert components < wall.wall_w < rated_input_w


@pytest.mark.parametrize("name", ["hgx-h100-4gpu", "hgx-a100-4gpu"])
def test_four_gpu_servers_do_not_inherit_the_dgx_supplies(name):
    # They extend a DGX document for its host side; their own (Dell) supplies are not sourced, so
    # the generic default, not the parent's six supplies.
    assert HardwareLibrary().system(name, []).node.platform == GENERIC_PLATFORM


def test_the_nvl72_rack_is_liquid_cooled_and_fed_by_its_power_shelves():
    node = HardwareLibrary().system("gb200-nvl72", []).node
    platform = sized_platform(node)
    assert platform is not None
    assert (platform.psus.count, platform.psus.rated_w) == (48, 5500.0)  # 8 shelves x 6 x 5.5 kW
    assert set(platform.liquid_cooled) == {"accelerators", "cpus"}
    by = node_max_by_component_w(node)
    cooled = node_power(platform, sum(by.values()), air_cooled_w(platform, by))
    assert cooled.fans_w < 0.02 * cooled.components_w


def test_a_supply_rated_at_zero_is_refused():
    with pytest.raises(ValueError, match="rated"):
        psus = {"count": 2, "rated": "0 W", "efficiency": TITANIUM}
        Platform.model_validate({"psus": psus, "fan_fraction": 0.1})


def test_only_a_run_that_reports_power_says_how_its_platform_was_priced(monkeypatch):
    # An infeasible run reports no power: its notes had still carried the platform's.
    monkeypatch.setenv("RECSIM_HARDWARE_PATH", str(FIXTURES / "minilib"))
    monkeypatch.setenv("RECSIM_WORKLOAD_PATH", str(FIXTURES / "workloads"))
    sets = ["node.accelerators.count=2"]
    ok = simulate_run("tiny", "tiny-dlrm", nodes=1, overrides=sets).result
    assert ok.status == "ok" and ok.avg_power_w > 0.0
    assert any(note.startswith("platform: the generic default") for note in ok.notes)
    # One 75 GiB table on one 37 GiB GPU.
    big = [*sets, "workload.tables[0].rows=4000000000"]
    failed = simulate_run("tiny", "tiny-dlrm", nodes=1, plan="table_wise", overrides=big).result
    assert failed.status == "infeasible" and math.isnan(failed.avg_power_w)
    assert not any("platform" in note for note in failed.notes)
    assert failed.notes[0].startswith("calibrations not measured")  # the other notes stay
