"""Utilisation per resource class (``recsim.engine.resources``, ``recsim.metrics.resources``): the
bytes by hand on the tiny system, the collectives' pair traffic and link loads against the flows
the DES engine moves, both engines, folded ranks, the DES invariant and the lazy value."""

from __future__ import annotations

import dataclasses
import functools
import math
import pickle
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsim.api import make_plan, prepare
from recsim.config.loader import Override
from recsim.cost.collectives import collective_cost, collective_flows
from recsim.cost.collectives.base import Level, route_edge_shares
from recsim.cost.collectives.model import collective_pair_traffic
from recsim.cost.compute import CPU_MEMORY_EFFICIENCY
from recsim.cost.model import PCIE_COPY_EFFICIENCY, CostModel
from recsim.engine.analytic import run_analytic
from recsim.engine.des import run_des
from recsim.engine.network import _edge_index, edge_loads
from recsim.engine.resources import resource_figures, step_loads, step_resources
from recsim.engine.simulate import SimulationOptions, simulate_training
from recsim.engine.timeline import step_window
from recsim.errors import SimulationError
from recsim.graph.index import GraphIndex
from recsim.graph.ir import Collective, CollectiveOp, Compute, ExecutionGraph, Host, Node, Stream, Transfer
from recsim.hardware.library import HardwareLibrary
from recsim.hardware.system import System
from recsim.metrics.invariants import check_links
from recsim.metrics.resources import ResourceFigures, ResourceUse
from recsim.metrics.result import RESOURCE_CLASSES, Result
from recsim.planner import table_wise_round_robin
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import Workload
from tests.conftest import FIXTURES

TINY = WorkloadLibrary([FIXTURES / "workloads"]).workload("tiny-dlrm")
TINY_SYSTEM = HardwareLibrary([FIXTURES / "minilib"]).system("tiny")


def _a2a(key: str, group: tuple[int, ...], size: float) -> Collective:
    return Collective(CollectiveOp.ALL_TO_ALL, key, group, size)


def _figures(graph: ExecutionGraph, system=TINY_SYSTEM, fidelity: str = "analytic"):
    cost = CostModel(system)
    schedule = run_analytic(graph, cost) if fidelity == "analytic" else run_des(graph, cost)
    index = GraphIndex.of(graph)
    window = step_window(graph, schedule)
    loads = step_loads(index, window, cost, system, {})
    return cost, window, loads, resource_figures(loads, cost.topology, system, window.length_s, fidelity)


def test_a_tiny_step_s_bytes_by_hand():
    # Rank 0 (n0.gpu0) copies 1 MB to its HBM and loads 2 MB from host memory; rank 1 runs a
    # kernel reading 3 MB and writing 1 MB; ranks 0 and 4 (n1.gpu0) swap 4 MB each over the network.
    graph = ExecutionGraph(
        8,
        [
            Node(0, 0, "load", Stream.HOST, Host("data_loading", 2e6)),
            Node(1, 0, "h2d", Stream.COPY, Transfer("host", "hbm", 1e6), (0,)),
            Node(2, 1, "kernel", Stream.COMPUTE, Compute("k", bytes_read=3e6, bytes_written=1e6)),
            Node(3, 0, "a2a", Stream.COMM, _a2a("x", (0, 4), 8e6)),
            Node(4, 4, "a2a", Stream.COMM, _a2a("x", (0, 4), 8e6)),
        ],
    )
    cost, window, loads, found = _figures(graph)
    step = window.length_s
    net = collective_cost(_a2a("x", (0, 4), 8e6), cost.topology).efficiency[Level.INTER]
    fig = found.figures
    # HBM: the copy's 1 MB and the 4 MB sent and 4 MB received on rank 0, 8 MB on rank 4, the
    # kernel's 4 MB on rank 1, over the tiny GPU's 1200 GB/s.
    hbm = [9e6, 4e6, 0, 0, 8e6, 0, 0, 0, *[0] * 8]
    assert loads.hbm.tolist() == hbm
    assert fig.mean["hbm"] == pytest.approx(sum(hbm) / 16 / (1200e9 * step), rel=1e-12)
    assert fig.peak["hbm"] == pytest.approx(9e6 / (1200e9 * step), rel=1e-12)
    assert fig.busiest["hbm"] == "n0.gpu0"
    # Host DRAM: node 0's 2 MB loaded and 1 MB copied out of it, over its 2 x 4 channels of
    # DDR4-3200 (204.8 GB/s).
    assert loads.dram.tolist() == [3e6, 0, 0, 0]
    assert fig.peak["host_memory"] == pytest.approx(3e6 / (204.8e9 * step), rel=1e-12)
    # Per socket: all 3 MB on n0.cpu0 (n0.gpu0's), each of the eight sockets at its 4 channels'
    # 102.4 GB/s x CPU_MEMORY_EFFICIENCY, the rate DES shares it at.
    socket = 204.8e9 * CPU_MEMORY_EFFICIENCY / 2
    assert loads.sockets == [f"n{n}.cpu{c}" for n in range(4) for c in range(2)]
    assert loads.socket_dram.tolist() == [3e6, *[0.0] * 7]
    assert loads.socket_capacity.tolist() == [socket] * 8
    assert fig.peak["host_memory_socket"] == pytest.approx(3e6 / (socket * step), rel=1e-12)
    assert fig.mean["host_memory_socket"] == pytest.approx(3e6 / (socket * step) / 8, rel=1e-12)
    assert fig.busiest["host_memory_socket"] == "n0.cpu0"
    # NIC ports: 4 MB each way on n0.nic0 and n1.nic0 at the network's efficiency, 25 GB/s each.
    nic = 4e6 / net / (25e9 * step)
    assert fig.peak["network"] == pytest.approx(nic, rel=1e-12)
    assert fig.mean["network"] == pytest.approx(2 * nic / 16, rel=1e-12)
    # Host link of rank 0: into the GPU from its PCIe switch (32 GB/s), the copy at the PCIe copy
    # efficiency and what comes in from its NIC (GPUDirect, under the same switch).
    host = (1e6 / PCIE_COPY_EFFICIENCY + 4e6 / net) / (32e9 * step)
    assert fig.peak["host_link"] == pytest.approx(host, rel=1e-12)
    assert fig.busiest["host_link"] == "n0.gpu0"
    # Rank 1 shares the switch's uplink to the CPU, which carried the copy; rank 4 its own NIC's.
    shared, remote = 1e6 / PCIE_COPY_EFFICIENCY / (32e9 * step), 4e6 / net / (32e9 * step)
    assert fig.mean["host_link"] == pytest.approx((host + shared + remote) / 16, rel=1e-12)
    # Leaf 0's four uplinks (100 GB/s together) carry what leaves node 0.
    assert fig.peak["network_uplinks"] == pytest.approx(4e6 / net / (100e9 * step), rel=1e-12)
    # Nothing crossed NVLink.
    assert fig.peak["scale_up"] == 0.0
    assert fig.classes == RESOURCE_CLASSES and fig.notes == ()


def _socket_graph() -> ExecutionGraph:
    # Ranks 0 and 1, both on n0.cpu0, each load 2 MB on the host stream while copying 0.5 MB of
    # it to their HBM: 5 MB through the socket's DRAM, none through n0.cpu1's.
    return ExecutionGraph(
        8,
        [
            Node(0, 0, "load", Stream.HOST, Host("data_loading", 2e6)),
            Node(1, 1, "load", Stream.HOST, Host("data_loading", 2e6)),
            Node(2, 0, "h2d", Stream.COPY, Transfer("host", "hbm", 0.5e6)),
            Node(3, 1, "h2d", Stream.COPY, Transfer("host", "hbm", 0.5e6)),
        ],
    )


def test_a_saturated_socket_reads_full_where_its_node_reads_under_half():
    # DES shares n0.cpu0's DRAM between the two loads and copies: the socket is busy the whole
    # step (5 MB at 204.8 GB/s x CPU_MEMORY_EFFICIENCY / 2 sockets), while the node's figure, its
    # two sockets' channels at their pin rate, reads 5 / 12.8 = 39 %.
    socket = 204.8e9 * CPU_MEMORY_EFFICIENCY / 2
    _, window, loads, found = _figures(_socket_graph(), fidelity="des")
    fig = found.figures
    assert loads.socket_dram.tolist()[:2] == [5e6, 0.0]
    assert window.length_s == pytest.approx(5e6 / socket, rel=1e-9)
    assert fig.peak["host_memory_socket"] == pytest.approx(1.0, rel=1e-9)
    assert fig.busiest["host_memory_socket"] == "n0.cpu0"
    assert fig.mean["host_memory_socket"] == pytest.approx(1.0 / 8, rel=1e-9)
    assert fig.peak["host_memory"] == pytest.approx(5e6 / (204.8e9 * window.length_s), rel=1e-9)
    assert fig.peak["host_memory"] == pytest.approx(0.39, rel=1e-9)
    assert fig.notes == ()


def test_an_analytic_socket_over_its_capacity_reads_full_with_a_note():
    # The analytic engine runs each load at the rank's share of the node's DRAM (a quarter: four
    # ranks) and the copies beside them unslowed: n0.cpu0 is asked 5 MB in the 2 MB load's
    # 2e6 / (204.8e9 x CPU_MEMORY_EFFICIENCY / 4) s, 1.25x what it carries. The figure stays 1, the
    # note says how much more.
    socket = 204.8e9 * CPU_MEMORY_EFFICIENCY / 2
    _, window, _, found = _figures(_socket_graph())
    assert window.length_s == pytest.approx(2e6 / (socket / 2), rel=1e-9)
    fig = found.figures
    assert fig.peak["host_memory_socket"] == 1.0
    assert fig.mean["host_memory_socket"] == 1.0 / 8
    (note,) = fig.notes
    assert note.startswith("n0.cpu0 (CPU socket memory, utilisation_max.host_memory_socket, reported as 100%")
    assert "carries 1.25x its capacity" in note and "--fidelity des shares it" in note


def test_overlapping_collectives_overload_a_link_in_the_analytic_engine_only():
    # Two all-to-alls on different lanes of the same ranks at once: the analytic engine gives each
    # the NIC alone, so over the step the NIC carries about twice its capacity, which a note says;
    # DES shares the NIC between them and stays within it.
    def node(i: int, rank: int, key: str, lane: int) -> Node:
        return Node(i, rank, key, Stream.COMM, _a2a(key, (0, 4), 2e9), lane=lane)

    graph = ExecutionGraph(
        8, [node(0, 0, "a", 0), node(1, 4, "a", 0), node(2, 0, "b", 1), node(3, 4, "b", 1)]
    )
    *_, analytic = _figures(graph)
    assert analytic.figures.peak["network"] > 1.9
    (note,) = [n for n in analytic.figures.notes if "NIC port" in n]
    assert note.startswith("analytic: the collectives ask") and "--fidelity des" in note
    assert "utilisation_max.network" in note
    # The GPU's PCIe link carries both too (GPUDirect to its NIC): 2 x 25 / 32 of its rate.
    assert analytic.figures.peak["host_link"] == pytest.approx(
        2 * 25 / 32 * analytic.figures.peak["network"] / 2
    )
    with pytest.raises(SimulationError, match=r"'host_link': n0\.gpu0 carries 15\d\.\d% of its capacity"):
        check_links(analytic.flow_peaks)
    *_, des = _figures(graph, fidelity="des")
    assert 0.9 < des.figures.peak["network"] <= 1.0 + 1e-9
    check_links(des.flow_peaks)
    assert not any("NIC port" in n for n in des.figures.notes)


SYSTEMS = [
    ("dgx-h100", 2, ()),
    # Rails at 4:1: PXN relays over NVLink, leaves with uplinks.
    ("dgx-h100", 4, ("cluster.scale_out.topology=rail_optimized", "cluster.scale_out.tiers=2")),
    ("h100-pcie-server", 2, ()),  # Intel hosts: GPU pairs through host memory (SHM)
    ("p4d-24xlarge", 4, ("cluster.scale_out.topology=clos", "cluster.scale_out.oversubscription=4")),
]


def _collectives(world: int) -> list[Collective | list[Collective]]:
    group = tuple(range(world))
    uneven = [
        Collective(
            CollectiveOp.ALL_TO_ALL,
            "u",
            group,
            float(sum(range(world))) * 1e5,
            "fp16",
            tuple(float((r + q) % 5) * 1e5 for q in group),
            tuple(float((q + r) % 5) * 1e5 for q in group),
        )
        for r in group
    ]
    return [
        Collective(CollectiveOp.ALL_REDUCE, "ar", group, 64e6),
        Collective(CollectiveOp.ALL_TO_ALL, "a2a", group, 32e6),
        Collective(CollectiveOp.REDUCE_SCATTER, "rs", group, 16e6),
        Collective(CollectiveOp.ALL_GATHER, "ag", group[: world // 2], 1e6),
        uneven,
    ]


@pytest.mark.parametrize(("name", "nodes", "overrides"), SYSTEMS)
def test_pair_traffic_and_link_loads_are_the_flows_the_des_engine_moves(name, nodes, overrides):
    system, _ = prepare(name, "dlrm-dcnv2", nodes=nodes, overrides=overrides)
    topology = CostModel(system).topology
    index = _edge_index(topology)
    for op in _collectives(system.num_accelerators):
        flows = collective_flows(op, topology)
        summed: dict[tuple[str, str, float], float] = defaultdict(float)
        for f in flows:
            summed[(f.src, f.dst, f.efficiency)] += f.bytes
        pairs = collective_pair_traffic(op, topology)
        keys = zip(pairs.srcs, pairs.dsts, pairs.efficiency.tolist(), strict=True)
        mine = dict(zip(keys, pairs.payload.tolist(), strict=True))
        assert mine.keys() == summed.keys()
        for key, size in summed.items():
            assert mine[key] == pytest.approx(size, rel=1e-12)
        # Each flow over its paths by their widths, as the cost model splits a pair's bytes.
        expected = [0.0] * len(index.edges)
        for src, dst, size in zip(pairs.srcs, pairs.dsts, pairs.wire.tolist(), strict=True):
            for edge, share in route_edge_shares(topology, src, dst):
                expected[index.ids[edge]] += size * share
        assert edge_loads(pairs.srcs, pairs.dsts, pairs.wire, topology).tolist() == pytest.approx(
            expected, rel=1e-12, abs=1e-6
        )


@pytest.mark.parametrize(("name", "nodes", "overrides"), SYSTEMS)
def test_routes_inside_a_node_are_node_zero_s_renamed(name, nodes, overrides):
    system, _ = prepare(name, "dlrm-dcnv2", nodes=nodes, overrides=overrides)
    topology = CostModel(system).topology
    index = _edge_index(topology)
    per_node = system.node.num_accelerators
    for k in range(1, nodes):
        inside = [f"n{k}.gpu{i}" for i in range(per_node)] + [f"n{k}.cpu0"]
        for src in inside:
            for dst in inside:
                if src != dst:
                    mine, theirs = index.local_pair(src, dst), index.pair(src, dst)
                    assert mine[0].tolist() == theirs[0].tolist() and mine[1].tolist() == theirs[1].tolist()


def _run(system, workload, plan, **options):
    return simulate_training(system, workload, plan, SimulationOptions(**options)).result


def test_both_engines_count_the_same_bytes_and_folded_ranks_their_representative_s():
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2)
    plan = make_plan("table_wise", workload, system)
    analytic = _run(system, workload, plan)
    folded = _run(system, workload, plan, fold_ranks=True)
    des = _run(system, workload, plan, fidelity="des")
    assert folded.resources == analytic.resources
    a, d = analytic.resources.figures, des.resources.figures
    # The same bytes over a step time of each engine's.
    scale = analytic.iteration_time_s / des.iteration_time_s
    for name in RESOURCE_CLASSES:
        assert d.mean.get(name, 0.0) == pytest.approx(a.mean.get(name, 0.0) * scale, rel=1e-9)
        assert d.peak.get(name, 0.0) == pytest.approx(a.peak.get(name, 0.0) * scale, rel=1e-9)
    # One switch: no uplinks.
    assert set(a.mean) == {"hbm", "host_link", "scale_up", "network", "host_memory", "host_memory_socket"}


def test_a_uvm_plan_loads_the_host_links_and_host_memory():
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=1)
    plan = make_plan("table_wise", workload, system)
    hbm = _run(system, workload, plan)
    shards = tuple(dataclasses.replace(s, tier="uvm") for s in plan.shards)
    uvm = _run(system, workload, dataclasses.replace(plan, shards=shards))
    # The rows cross PCIe and host DRAM: the busiest host link (a switch's uplink, which two GPUs
    # share) over half busy, 40x the bytes through host memory.
    assert uvm.resources.figures.peak["host_link"] > 0.5 > 5 * hbm.resources.figures.peak["host_link"]

    def dram_bytes(result: Result) -> float:
        return result.resources.figures.mean["host_memory"] * result.iteration_time_s

    assert dram_bytes(uvm) > 40 * dram_bytes(hbm)


@functools.cache
def _tiny_system(nodes: int) -> System:
    return HardwareLibrary([FIXTURES / "minilib"]).system("tiny", [Override.parse(f"cluster.nodes={nodes}")])


@functools.cache
def _tiny_workload(batch: int) -> Workload:
    return WorkloadLibrary([FIXTURES / "workloads"]).workload(
        "tiny-dlrm", [Override.parse(f"training.global_batch_size={batch}")]
    )


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ranks=st.sampled_from([4, 8, 16]),
    batch=st.sampled_from([64, 256, 1024]),
    fidelity=st.sampled_from(["analytic", "des"]),
)
def test_figures_are_shares_and_des_collectives_stay_within_their_links(ranks, batch, fidelity):
    system = _tiny_system(ranks // 4)
    workload = _tiny_workload(batch)
    result = _run(system, workload, table_wise_round_robin(workload, ranks), fidelity=fidelity)
    assert result.status == "ok"
    figures = result.resources.figures
    for name, mean in figures.mean.items():
        assert 0.0 <= mean <= figures.peak[name] + 1e-12 and math.isfinite(figures.peak[name])
    if fidelity == "des":  # checked by the run, and here once more
        sim = simulate_training(
            system, workload, table_wise_round_robin(workload, ranks), SimulationOptions("des")
        )
        index = GraphIndex.of(sim.graph)
        window = step_window(sim.graph, sim.schedule)
        cost = CostModel(system, workload)
        found = step_resources(index, window, cost, system, {}, "des")
        assert all(value <= 1.01 for _, value in found.flow_peaks.values())


def test_the_result_flattens_the_classes_and_works_them_out_when_read():
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2)
    result = _run(system, workload, make_plan("table_wise", workload, system))
    assert result.resources is not None and result.resources._work is not None  # not yet
    data = result.to_dict()
    assert result.resources._work is None
    figures = result.resources.figures
    for name in RESOURCE_CLASSES:
        assert data[f"utilisation.{name}"] == figures.mean.get(name, 0.0)
        assert data[f"utilisation_max.{name}"] == figures.peak.get(name, 0.0)
    assert data["utilisation.network_uplinks"] == 0.0  # one switch: no uplinks
    # The streams' keys stay as they were, first.
    keys = [k for k in data if k.startswith("utilisation")]
    assert keys[:4] == ["utilisation.compute", "utilisation.comm", "utilisation.copy", "utilisation.host"]
    again = pickle.loads(pickle.dumps(result))
    assert again == result and again.to_dict() == data
    # Not known: a failed run, or a result without figures.
    for unknown in (Result.failed("infeasible", "no"), Result("ok")):
        out = unknown.to_dict()
        assert all(
            out[f"{h}.{n}"] is None for h in ("utilisation", "utilisation_max") for n in RESOURCE_CLASSES
        )


def test_a_lazy_value_compares_hashes_and_pickles_as_its_figures():
    figures = ResourceFigures({"hbm": 0.5}, {"hbm": 0.75}, {"hbm": "n0.gpu1"}, notes=("x",))
    calls = []

    def work() -> ResourceFigures:
        calls.append(1)
        return figures

    lazy = ResourceUse(work)
    assert "not yet" in repr(lazy) and not calls
    assert lazy == ResourceUse(figures) and hash(lazy) == hash(ResourceUse(figures))
    assert pickle.loads(pickle.dumps(lazy)).figures == figures
    assert calls == [1]
    assert figures.value("hbm", "peak") == 0.75 and figures.value("network") == 0.0
    assert ResourceFigures(classes=("network",)).value("hbm") is None
