"""A NIC without RDMA carries collectives over NCCL's socket transport: slower steps, a fraction of
the line rate (``recsim.cost.collectives.base.socket_calibration``), in both engines."""

from __future__ import annotations

import pytest

from recsim.api import load_system
from recsim.config import Override
from recsim.cost.collectives.base import (
    DEFAULT_NETWORK,
    DEFAULT_SOCKET,
    Level,
    level_calibration,
    socket_calibration,
)
from recsim.cost.collectives.model import collective_cost, collective_flows
from recsim.engine.network import collective_time_flows_s
from recsim.errors import ConfigError
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.calibration import SOCKET_LINE_FRACTION, WIRE_PAYLOAD_FRACTION, CollectiveCalibration
from recsim.hardware.library import HardwareLibrary
from recsim.hardware.topology import Topology, build_topology
from tests.conftest import FIXTURES

MINI = FIXTURES / "minilib"
MiB = 2**20


def _tiny(rdma: bool) -> Topology:
    """4 nodes x 4 tiny GPUs, a 200 Gb/s (25 GB/s) NIC per GPU, with or without RDMA."""
    lib = HardwareLibrary([MINI])
    return build_topology(lib.system("tiny", [Override.parse(f"node.nics.device.rdma={str(rdma).lower()}")]))


def _coll(op: str, size: float, group: tuple[int, ...]) -> Collective:
    return Collective(CollectiveOp(op), "x", group, size, "fp32")


@pytest.mark.parametrize("nic", ["eth-100g", "eth-25g"])
def test_the_shipped_ethernet_nics_state_the_socket_constants(nic):
    # The YAML blocks are written by hand, with their sources; they must be what the mechanism gives.
    cal = HardwareLibrary().load("nic", nic).spec.calibration
    assert cal is not None and cal.transport == "socket"
    assert cal.protocols.keys() == DEFAULT_SOCKET.protocols.keys()
    for name, proto in cal.protocols.items():
        want = DEFAULT_SOCKET.protocols[name]
        assert proto.base_latency_s == pytest.approx(want.base_latency_s), name
        assert proto.step_latency_s == pytest.approx(want.step_latency_s), name
        assert proto.pipeline_latency_s == pytest.approx(want.pipeline_latency_s), name
        assert proto.efficiency == pytest.approx(want.efficiency), name


def test_a_nic_without_rdma_and_without_a_block_gets_the_socket_defaults():
    assert level_calibration(_tiny(rdma=False), Level.INTER) is DEFAULT_SOCKET
    assert level_calibration(_tiny(rdma=True), Level.INTER) is DEFAULT_NETWORK


def test_socket_constants_from_the_network_ones():
    simple, ll, ll128 = (DEFAULT_SOCKET.protocols[p] for p in ("simple", "ll", "ll128"))
    # Every step 19.6 us longer (NCCL 2.20.3's NET steps 2.7 / 4.0 / 14.0 us); Simple at 0.48 of the
    # line rate; LL's and LL128's flag bytes cross the TCP stack too (4 of 8 and 120 of 128 bytes are
    # data). Simple's socket step is 33.6 us as it was against NCCL 2.7.5's 9.6 us (the refit keeps
    # issue 82's 42.0 us).
    assert simple.step_latency_s == pytest.approx(33.6e-6)
    assert ll.step_latency_s == pytest.approx(22.3e-6)
    assert ll128.step_latency_s == pytest.approx(23.6e-6)
    assert simple.base_latency_s == pytest.approx(8.4e-6)
    assert (simple.efficiency, ll.efficiency, ll128.efficiency) == pytest.approx((0.48, 0.24, 0.45))


@pytest.mark.parametrize(
    ("op", "size", "rdma_s", "socket_s"),
    [
        # Ring on 2 ranks, one per node: 2 steps, the whole buffer through one 25 GB/s NIC.
        # RDMA: 8.4 + 2 x 14.0 us + S / (25e9 x 0.97); socket: 8.4 + 2 x 33.6 us + S / (25e9 x 0.48).
        ("all_reduce", 64 * MiB, 8.4e-6 + 28.0e-6 + 64 * MiB / 24.25e9, 8.4e-6 + 67.2e-6 + 64 * MiB / 12e9),
        # Direct all-to-all: one step, half the buffer crosses the network.
        ("all_to_all", 64 * MiB, 8.4e-6 + 14.0e-6 + 32 * MiB / 24.25e9, 8.4e-6 + 33.6e-6 + 32 * MiB / 12e9),
        # 8 bytes, LL (base 6.6 us): RDMA's steps are the 5.8 us route (2 x 1 us NIC, PCIe, switch);
        # socket's 22.3 us.
        ("all_reduce", 8, 6.6e-6 + 11.6e-6 + 8 / (25e9 * 0.2425), 6.6e-6 + 44.6e-6 + 8 / (25e9 * 0.24)),
    ],
)
def test_exact_times_on_the_tiny_cluster_in_both_engines(op, size, rdma_s, socket_s):
    coll = _coll(op, size, (0, 4))
    for rdma, want in ((True, rdma_s), (False, socket_s)):
        topology = _tiny(rdma)
        assert collective_cost(coll, topology).time_s == pytest.approx(want, rel=1e-9), rdma
        assert collective_time_flows_s(coll, topology) == pytest.approx(want, rel=1e-9), rdma


def test_the_flows_carry_the_socket_efficiency():
    coll = _coll("all_reduce", 64 * MiB, tuple(range(16)))
    flows = collective_flows(coll, _tiny(rdma=False))
    cost = collective_cost(coll, _tiny(rdma=False))
    inter = {f.efficiency for f in flows if f.src.split(".")[0] != f.dst.split(".")[0]}
    assert inter == {cost.efficiency[Level.INTER]} == {0.48}


def test_nccl_tests_issue_82_small_socket_broadcast():
    # 2 nodes x 1 GPU over TCP, broadcast Ring/Simple at 8 B: 45.82 us out of place, 38.17 in place.
    # One network step: 8.4 + 33.6 us (the fit's point, reproduced through the whole model).
    simple = CollectiveCalibration(
        source="test", transport="socket", protocols={"simple": DEFAULT_SOCKET.protocols["simple"]}
    )
    coll = _coll("broadcast", 8, (0, 4))
    cost = collective_cost(coll, _tiny(rdma=False), calibration={Level.INTER: simple})
    assert cost.time_s == pytest.approx(42.0e-6, rel=1e-3)
    assert 38.17e-6 < cost.time_s < 45.82e-6


def test_nccl_issue_398_p3dn_ring_all_reduce_over_tcp():
    # p3dn.24xlarge: 8 V100-SXM2 (DGX-1's NVLink mesh) and one 100 Gb/s NIC, 2 nodes, NCCL over
    # sockets with the ring forced: "around 6GB/s" bus bandwidth (the efficiency's fit point). The
    # same node with RDMA moves about twice that.
    sets = ["node.nics.count=1", "cluster.scale_out.switch=tomahawk-32x100g"]
    size = 256 * MiB
    coll = _coll("all_reduce", size, tuple(range(16)))
    busbw = {}
    for nic in ("eth-100g", "roce-100g"):
        system = load_system("dgx-1-v100", nodes=2, overrides=[*sets, f"node.nics.device={nic}"])
        topology = build_topology(system)
        busbw[nic] = size / collective_cost(coll, topology, "ring").time_s * 2 * 15 / 16
    assert busbw["eth-100g"] == pytest.approx(6.0e9, rel=0.05)
    assert busbw["roce-100g"] > 1.9 * busbw["eth-100g"]


def _socket_busbw(nodes: int, nic: str, group: tuple[int, ...], size: float) -> float:
    """Ring all-reduce bus bandwidth (nccl-tests' busbw: algbw x 2(n-1)/n) over NCCL's socket
    transport, on DGX-1 V100 nodes with one NIC each (``nic``: a device name or a YAML mapping)."""
    sets = ["node.nics.count=1", "cluster.scale_out.switch=tomahawk-32x100g", f"node.nics.device={nic}"]
    topology = build_topology(load_system("dgx-1-v100", nodes=nodes, overrides=sets))
    n = len(group)
    return size / collective_cost(_coll("all_reduce", size, group), topology, "ring").time_s * 2 * (n - 1) / n


# Checks of SOCKET_LINE_FRACTION on measured runs it was not fitted on (issue 398 is the fit). The
# NIC binds in each, so the node around it matters little: DGX-1 V100 nodes with one NIC stand in.


def test_nccl_tests_issue_83_azure_25g_ring_over_tcp():
    # Azure, 2 nodes x 4 V100, 25 Gb/s TCP, NCCL 2.9.6, Ring/Simple: at most 1.7 GB/s bus bandwidth
    # (of 3.125). The model's 1.50 (0.48 of the line rate) must not exceed the best measured and
    # stay within 15 % of it.
    busbw = _socket_busbw(2, "eth-25g", (0, 1, 2, 3, 8, 9, 10, 11), 1024 * MiB)
    assert busbw == pytest.approx(1.5e9, rel=0.01)
    assert 0.85 * 1.7e9 <= busbw <= 1.7e9


def test_nccl_issue_209_gcp_32gbe_ring_over_tcp():
    # GCP, 2 nodes x 8 GPUs, 32 GbE, NCCL 2.4.7: the maintainers' best all-reduce, 14.5-14.9 Gb/s
    # bus bandwidth for large messages (read as a ring's, as SOCKET_LINE_FRACTION's comment does).
    # Within 10 % of that range (the model: 0.48 x 32 = 15.4 Gb/s).
    nic = "{extends: eth-25g, name: eth-32g, port_bandwidth: 32 Gb/s}"
    busbw_gbit = _socket_busbw(2, nic, tuple(range(16)), 1024 * MiB) * 8 / 1e9
    assert 0.9 * 14.5 <= busbw_gbit <= 1.1 * 14.9


def test_nccl_issue_450_four_nodes_on_100g_tcp():
    # 4 nodes x 8 V100-32GB, 100 Gb/s TCP: "the best performance (bus-bw) is between 4~6GB/s" for
    # all-reduces of 8 to 128 MB (the issue's description). The model stays in that range, rising
    # with the size as the 33.6 us steps weigh less (5.2 GB/s at 8 MB, 5.9 at 128).
    busbw = [_socket_busbw(4, "eth-100g", tuple(range(32)), mib * MiB) for mib in (8, 16, 32, 64, 128)]
    assert all(4.0e9 <= b <= 6.0e9 for b in busbw), busbw
    assert busbw == sorted(busbw)


def _block(transport: str | None) -> str:
    return (
        "calibration:\n  source: test\n"
        + (f"  transport: {transport}\n" if transport else "")
        + "  protocols:\n    simple: {base_latency: 8 us, step_latency: 9 us, efficiency: 0.4}\n"
    )


def _nic(name: str, rdma: bool, transport: str | None) -> str:
    text = (MINI / "devices/tiny-nic.yaml").read_text().replace("name: tiny-nic", f"name: {name}")
    return text.replace("rdma: true", f"rdma: {str(rdma).lower()}") + _block(transport)


@pytest.mark.parametrize(
    ("rdma", "transport", "fragment"),
    [
        (False, None, "calibration.transport: 'rdma', but the NIC has rdma: false"),
        (False, "rdma", "calibration.transport: 'rdma', but the NIC has rdma: false"),
        (True, "socket", "calibration.transport: 'socket', but the NIC has rdma: true"),
    ],
)
def test_a_calibration_of_the_other_transport_is_refused(tmp_path, rdma, transport, fragment):
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices/x.yaml").write_text(_nic("x", rdma, transport))
    with pytest.raises(ConfigError) as info:
        HardwareLibrary([tmp_path, MINI]).load("nic", "x")
    message = str(info.value)
    assert fragment in message
    assert "x.yaml" in message and "\n" not in message


def test_a_nic_without_rdma_cannot_inherit_an_rdma_nics_constants(tmp_path):
    # eth-100g extends roce-100g (same card): had roce-100g a calibration block, eth-100g would have
    # been costed with it, as RDMA (a tester found eth-100g exactly as fast as roce-100g).
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices/parent.yaml").write_text(_nic("parent", True, None))
    child = "kind: nic\nextends: parent\nname: child\nrdma: false\n"
    (tmp_path / "devices/child.yaml").write_text(child)
    lib = HardwareLibrary([tmp_path, MINI])
    with pytest.raises(ConfigError, match="rdma: false"):
        lib.load("nic", "child")
    (tmp_path / "devices/child.yaml").write_text(child + _block("socket"))
    loaded = HardwareLibrary([tmp_path, MINI]).load("nic", "child").spec.calibration
    assert loaded is not None and loaded.transport == "socket"


@pytest.mark.parametrize(("protocol", "efficiency"), [("simple", 0.97), ("ll128", 0.46), ("ll", 0.2425)])
def test_a_socket_block_faster_than_tcp_moves_is_refused(tmp_path, protocol, efficiency):
    # The label alone let RDMA constants be costed as socket: a socket block's protocol may move
    # at most SOCKET_LINE_FRACTION of the line rate in wire bytes (0.48, 0.45, 0.24 in payload).
    (tmp_path / "devices").mkdir()
    block = _block("socket").replace("simple: {", f"{protocol}: {{").replace("0.4}", f"{efficiency}}}")
    (tmp_path / "devices/x.yaml").write_text(_nic("x", False, None).split("calibration:")[0] + block)
    with pytest.raises(ConfigError) as info:
        HardwareLibrary([tmp_path, MINI]).load("nic", "x")
    message = str(info.value)
    assert f"{protocol} {efficiency:g} >" in message and "x.yaml" in message and "\n" not in message
    # At the bound it loads (the shipped eth-25g and eth-100g blocks sit there).
    at = SOCKET_LINE_FRACTION * WIRE_PAYLOAD_FRACTION[protocol]
    (tmp_path / "devices/x.yaml").write_text(
        (tmp_path / "devices/x.yaml").read_text().replace(f"{efficiency}}}", f"{at}}}")
    )
    assert HardwareLibrary([tmp_path, MINI]).load("nic", "x").spec.calibration is not None


def test_socket_calibration_is_never_faster_than_its_rdma_source():
    for cal in (DEFAULT_NETWORK, HardwareLibrary().load("nic", "ib-ndr-400g").spec.calibration):
        assert cal is not None
        sock = socket_calibration(cal)
        assert sock.transport == "socket"
        for name, p in cal.protocols.items():
            s = sock.protocols[name]
            assert s.base_latency_s == p.base_latency_s
            assert s.step_latency_s > p.step_latency_s
            assert s.pipeline_latency_s == p.pipeline_latency_s
            assert s.efficiency <= p.efficiency


@pytest.mark.parametrize(
    ("algorithm", "op", "group"),
    [
        ("direct", "all_to_all", (0, 2, 8, 10)),
        ("ring", "all_reduce", (0, 2, 8, 10)),
        ("tree", "all_reduce", (0, 1, 8, 9)),
        ("ring", "all_reduce", tuple(range(16))),
    ],
)
def test_socket_collectives_on_pcie_only_nodes_agree_with_their_flows(algorithm, op, group):
    # On a PCIe-only node a rank's NIC bytes share its PCIe link with its peer traffic, weighed by
    # the network level's efficiency (``GroupLayout.pcie_exit_weight``): the socket's 0.48, as the
    # flows carry it.
    sets = ["node.nics.device=eth-100g", "cluster.scale_out.switch=tomahawk-32x100g"]
    topology = build_topology(load_system("h100-pcie-server", nodes=2, overrides=sets))
    coll = Collective(CollectiveOp(op), "x", group, 64 * MiB, "fp16")
    analytic = collective_cost(coll, topology, algorithm).time_s
    assert collective_time_flows_s(coll, topology, algorithm) == pytest.approx(analytic, rel=1e-6)
