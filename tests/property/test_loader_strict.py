"""The loader is strict (any unknown key, anywhere, is rejected) and accepts every valid variation."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsim.config import Override
from recsim.config.tree import walk
from recsim.config.validate import allowed_keys, validate_tree
from recsim.errors import ConfigError
from recsim.hardware.system import System
from recsim.hardware.topology import build_topology

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

keys = st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True)


@pytest.fixture(scope="module")
def tiny_tree(minilib):
    return minilib.resolve_tree("system", "tiny")


@SETTINGS
@given(data=st.data(), key=keys)
def test_unknown_key_anywhere_is_rejected(tiny_tree, data, key):
    mappings = [path for path, value in walk(tiny_tree.data) if isinstance(value, dict)]
    path = data.draw(st.sampled_from(mappings))
    if key in allowed_keys(System, path) or key == "extends":
        return
    tree = tiny_tree.copy()
    node = tree.data
    for part in path:
        node = node[part]
    node[key] = "1 GB"
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        validate_tree(System, tree)


@SETTINGS
@given(
    nodes=st.integers(1, 8),
    gpus=st.integers(1, 8),
    dpc=st.integers(1, 2),
    oversub=st.sampled_from([1.0, 1.5, 2.0, 3.0]),
    topology=st.sampled_from(["clos", "rail_optimized"]),
    tiers=st.sampled_from([2, 3]),
    nic_gbps=st.sampled_from([100, 200, 400]),
)
def test_random_valid_systems_load_and_wire(minilib, nodes, gpus, dpc, oversub, topology, tiers, nic_gbps):
    sets = [
        f"cluster.nodes={nodes}",
        f"node.accelerators.count={gpus}",
        f"node.scale_up.switches={math.ceil(gpus * 12 / 36)}",
        f"node.host_memory.dimms_per_channel={dpc}",
        f"cluster.scale_out.oversubscription={oversub}",
        f"cluster.scale_out.topology={topology}",
        f"cluster.scale_out.tiers={tiers}",
        "cluster.scale_out.switch.ports=64",
        f"node.nics.device.port_bandwidth={nic_gbps} Gb/s",
    ]
    system = minilib.system("tiny", [Override.parse(s) for s in sets])
    assert system.num_accelerators == nodes * gpus
    topo = build_topology(system)
    # A NIC port runs at the slower of the NIC and the 200 Gb/s switch port it plugs into.
    nic = min(nic_gbps, 200) * 1e9 / 8
    bisection = topo.bisection_bandwidth_bytes_per_s
    if nodes > 1:
        # Never more than the NICs on the smaller side can send ...
        assert bisection <= (nodes // 2) * gpus * nic * (1 + 1e-9)
        # ... and a non-blocking Clos delivers exactly that.
        if oversub == 1.0 and topology == "clos":
            assert bisection == pytest.approx((nodes // 2) * gpus * nic)
        route = topo.route("n0.gpu0", f"n{nodes - 1}.gpu{gpus - 1}")
        assert route.bandwidth_bytes_per_s <= nic * (1 + 1e-9)


@SETTINGS
@given(scale=st.sampled_from([2, 4, 10]), oversub=st.sampled_from([1.0, 2.0]))
def test_more_bandwidth_is_never_less_bisection(minilib, scale, oversub):
    base = [f"cluster.scale_out.oversubscription={oversub}", "cluster.scale_out.switch.ports=12"]
    slow = build_topology(minilib.system("tiny", [Override.parse(s) for s in base]))
    fast_sets = [
        *base,
        f"cluster.scale_out.switch.port_bandwidth={200 * scale} Gb/s",
        f"node.nics.device.port_bandwidth={200 * scale} Gb/s",
        f"node.nics.device.host_interface.lane_rate={16 * scale} Gb/s",
        f"node.accelerators.device.host_interface.lane_rate={16 * scale} Gb/s",
        f"node.pcie_switches.device.port_bandwidth={32 * scale} GB/s",
    ]
    fast = build_topology(minilib.system("tiny", [Override.parse(s) for s in fast_sets]))
    assert fast.bisection_bandwidth_bytes_per_s == pytest.approx(scale * slow.bisection_bandwidth_bytes_per_s)
