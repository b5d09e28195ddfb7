"""DES: copies and lookups put their bytes on the shared network, beside the collectives' flows."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsim.config import Override
from recsim.cost.embedding import PCIE
from recsim.cost.model import PCIE_COPY_EFFICIENCY, CostModel
from recsim.engine.analytic import run_analytic
from recsim.engine.des import run_des
from recsim.engine.network import _edge_index
from recsim.engine.resources import step_loads
from recsim.engine.timeline import step_window
from recsim.graph.index import GraphIndex
from recsim.graph.ir import (
    Collective,
    CollectiveOp,
    Compute,
    Embedding,
    ExecutionGraph,
    Node,
    Stream,
    Transfer,
)
from recsim.graph.schedule import Schedule
from recsim.hardware.library import HardwareLibrary
from tests.conftest import FIXTURES

HW = HardwareLibrary([FIXTURES / "minilib"])
# The tiny fixture's links (tests/fixtures/minilib): PCIe 4 x16 at 16 Gb/s a lane with no coding
# loss, and every PCIe switch port, 32 GB/s a direction; a NIC's port 200 Gb/s.
PCIE_BYTES_PER_S = 32e9
NIC_BYTES_PER_S = 25e9


def system(*sets: str):
    return HW.system("tiny", [Override.parse(s) for s in ("cluster.nodes=2", *sets)])


def ring(first: int, group: tuple[int, ...], nbytes: float) -> list[Node]:
    op = Collective(CollectiveOp.ALL_REDUCE, "ar", group, nbytes)
    return [Node(first + k, r, "ar", Stream.COMM, op) for k, r in enumerate(group)]


def copy(i: int, rank: int, nbytes: float, src: str = "host", dst: str = "hbm", deps=()) -> Node:
    return Node(i, rank, f"copy{i}", Stream.COPY, Transfer(src=src, dst=dst, bytes=nbytes), tuple(deps))


def test_a_copy_and_a_collective_on_one_host_link_slow_each_other_by_the_max_min_share():
    # One GPU per PCIe switch: a copy's share of the host link is the whole x16 link.
    sys_ = system("node.pcie_switches.count=4")
    assert sys_.node.host_bandwidth_bytes_per_s_per_accelerator == PCIE_BYTES_PER_S
    cost = CostModel(sys_)
    copy_bytes = 16e6
    # n0.gpu0 <-> n1.gpu0 all-reduce: into n1.gpu0 its flow comes NIC -> PCIe switch -> GPU, the
    # link the host-to-device copy of n1.gpu0 (rank 4) takes from the switch.
    graph = ExecutionGraph(8, [*ring(0, (0, 4), 64e6), copy(2, 4, copy_bytes)])
    nodes = {n.id: n for n in graph.nodes}
    base = cost.collective_members_s([nodes[0], nodes[1]])
    copy_s = cost.duration_s(nodes[2])
    des = run_des(graph, cost)
    # Sharing the switch -> GPU link (32 GB/s), both flows grow to 16 GB/s and fill it; the
    # all-reduce alone would move at the NIC's 25 GB/s, the copy at its link's 32.
    wire = copy_bytes / PCIE_COPY_EFFICIENCY
    shared_s = wire / (PCIE_BYTES_PER_S / 2)  # the copy's flow ends first
    copy_extra = shared_s - wire / PCIE_BYTES_PER_S
    # Then the all-reduce's flow is alone at 25 GB/s: it lost (1 - 16 / 25) of that while shared.
    ring_extra = shared_s * (1 - (PCIE_BYTES_PER_S / 2) / NIC_BYTES_PER_S)
    assert des.finish_s[2] == pytest.approx(copy_s + copy_extra, rel=1e-9)
    assert des.finish_s[0] == pytest.approx(base + ring_extra, rel=1e-9)
    assert des.finish_s[1] == des.finish_s[0]
    analytic = run_analytic(graph, cost)
    assert analytic.finish_s[2] == pytest.approx(copy_s, rel=1e-12)
    assert analytic.finish_s[0] == pytest.approx(base, rel=1e-12)


def test_a_copy_back_to_the_host_shares_the_other_direction():
    # Device to host leaves the GPU by its link to the switch, as the all-reduce's flow to the NIC
    # does; the host-to-device copy of the test above takes the other direction.
    cost = CostModel(system("node.pcie_switches.count=4"))
    alone = run_des(ExecutionGraph(8, [copy(2, 4, 16e6, src="hbm", dst="host")]), cost).finish_s[2]
    shared = run_des(
        ExecutionGraph(8, [*ring(0, (0, 4), 64e6), copy(2, 4, 16e6, src="hbm", dst="host")]), cost
    )
    assert alone == pytest.approx(cost.duration_s(copy(2, 4, 16e6, src="hbm", dst="host")), rel=1e-12)
    assert shared.finish_s[2] > alone * 1.2


def test_copies_under_one_switch_keep_their_modelled_time():
    # Two GPUs per PCIe switch (the fixture's): the copy model already gives each GPU half the
    # switch's uplink, so two copying together are not slowed a second time, and DES == analytic.
    cost = CostModel(system())
    assert cost.system.node.host_bandwidth_bytes_per_s_per_accelerator == PCIE_BYTES_PER_S / 2
    graph = ExecutionGraph(
        8, [copy(i, i, 64e6) for i in range(8)] + [copy(8 + i, i, 8e6, "hbm", "host") for i in range(8)]
    )
    des, analytic = run_des(graph, cost), run_analytic(graph, cost)
    for n in graph.nodes:
        assert des.finish_s[n.id] == analytic.finish_s[n.id]


def test_a_copy_off_the_collectives_links_is_not_slowed():
    cost = CostModel(system("node.pcie_switches.count=4"))
    graph = ExecutionGraph(8, [*ring(0, (0, 4), 64e6), copy(2, 1, 16e6)])  # n0.gpu1: its own links
    des, analytic = run_des(graph, cost), run_analytic(graph, cost)
    for n in graph.nodes:
        assert des.finish_s[n.id] == pytest.approx(analytic.finish_s[n.id], rel=1e-12)


def delay(i: int, rank: int, flops: float) -> Node:
    op = Compute("linear", flops=flops, shapes=((64, 64), (64, 64)), category="gemm", dtype="fp16")
    return Node(i, rank, f"g{i}", Stream.COMPUTE, op)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    switches=st.sampled_from([2, 4]),
    ring_bytes=st.floats(1e5, 2e8),
    copies=st.lists(
        st.tuples(
            st.integers(0, 7),
            st.floats(1e4, 2e8),
            st.sampled_from([("host", "hbm"), ("hbm", "host"), ("peer", "hbm"), ("hbm", "peer")]),
            st.floats(0, 1e12),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_sharing_links_never_makes_anything_faster(switches, ring_bytes, copies):
    cost = CostModel(system(f"node.pcie_switches.count={switches}"))
    nodes = ring(0, (0, 1, 4, 5), ring_bytes)
    for k, (rank, nbytes, (src, dst), flops) in enumerate(copies):
        first = 4 + 2 * k  # a kernel of random length first: the copy starts at a random time
        nodes += [delay(first, rank, flops), copy(first + 1, rank, nbytes, src, dst, deps=(first,))]
    graph = ExecutionGraph(8, nodes)
    des, analytic = run_des(graph, cost), run_analytic(graph, cost)
    for n in graph.nodes:
        assert des.start_s[n.id] >= analytic.start_s[n.id] * (1 - 1e-12)
        assert des.finish_s[n.id] >= analytic.finish_s[n.id] * (1 - 1e-12)


def uvm_lookup(i: int, rank: int) -> Node:
    op = Embedding(
        table="t", pass_="forward", rows=10**6, dim=128, dtype="fp32", batch=1000, lookups=1e5, tier="uvm"
    )
    return Node(i, rank, f"lookup{i}", Stream.COMPUTE, op)


def test_a_uvm_lookup_and_a_copy_of_one_rank_share_its_host_link():
    # Its rows come over the GPU's host link (wire bytes, TLP overhead included, at the rank's
    # share of it), as its input copy does: sharing the link at 16 GB/s each until the copy ends,
    # both lose the copy's bytes at the full 32 GB/s.
    cost = CostModel(system("node.pcie_switches.count=4"))
    lookup, transfer = uvm_lookup(0, 4), copy(1, 4, 16e6)
    lookup_wire = cost.embedding_cost(lookup.op).bytes_on(PCIE)
    copy_wire = 16e6 / PCIE_COPY_EFFICIENCY
    assert copy_wire < lookup_wire
    des = run_des(ExecutionGraph(8, [lookup, transfer]), cost)
    lost = copy_wire / PCIE_BYTES_PER_S
    assert des.finish_s[0] == pytest.approx(cost.duration_s(lookup) + lost, rel=1e-9)
    assert des.finish_s[1] == pytest.approx(cost.duration_s(transfer) + lost, rel=1e-9)
    # On another rank, each keeps its modelled time.
    apart = run_des(ExecutionGraph(8, [lookup, copy(1, 5, 16e6)]), cost)
    assert apart.finish_s[0] == cost.duration_s(lookup)


# Host DRAM at 0.6 (1.2) Gb/s a pin makes the tiny node's uvm lookup DRAM-bound: its 2,200 us of
# PCIe fit in a window of 6,838 (3,419) us, so it asks its link for under (over) half of it.
SLOW_DDR = "node.host_memory.device.pin_rate=0.6 Gb/s"
SLOWER_LINK_DDR = "node.host_memory.device.pin_rate=1.2 Gb/s"


def test_a_dram_bound_uvm_lookup_has_its_transfer_window():
    cost = CostModel(system("node.pcie_switches.count=4", SLOW_DDR))
    ec = cost.embedding_cost(uvm_lookup(0, 4).op)
    assert ec.details["ddr_s"] > ec.details["pcie_s"]
    assert ec.link_window_s == ec.details["ddr_s"]
    op = uvm_lookup(0, 4).op
    assert cost.link_window_s(op, ec.time_s) == ec.details["ddr_s"]
    # A slowed kernel's window takes the stretch; the fixed overheads do not grow.
    assert cost.link_window_s(op, ec.time_s + 1e-3) == pytest.approx(ec.details["ddr_s"] + 1e-3, rel=1e-12)
    assert cost.link_window_s(copy(1, 4, 16e6).op, 1e-3) is None  # a copy: its own time


def test_a_lookup_alone_keeps_its_modelled_time_paced_to_its_window():
    cost = CostModel(system("node.pcie_switches.count=4", SLOW_DDR))
    lookup = uvm_lookup(0, 4)
    graph = ExecutionGraph(8, [lookup])
    assert run_des(graph, cost).finish_s[0] == cost.duration_s(lookup)
    assert run_analytic(graph, cost).finish_s[0] == cost.duration_s(lookup)


# One socket of 4 channels at 1.6 Gb/s a pin: the uvm lookup is DRAM-bound as at SLOW_DDR (its share
# of the node's DRAM, 10.0 GB/s, under the 23.3 GB/s of payload its PCIe share moves), and the
# socket's DRAM (39.9 GB/s) feeds both the lookup's rows and a 26.2 GB/s copy: only the host link
# binds (at SLOW_DDR, 15.0 GB/s a socket, the copy would be slowed on DRAM too,
# ``tests/unit/test_des_host_dram.py``).
SLOW_DDR_ONE_SOCKET = ("node.cpus.count=1", "node.host_memory.device.pin_rate=1.6 Gb/s")


def test_a_lookup_with_slack_is_not_delayed_and_the_copy_beside_it_loses_only_the_paced_rate():
    # The lookup's rows come at DRAM speed: its flow takes wire / window (13.7 GB/s of the 32),
    # under a fair half, so it keeps that rate and ends within its window; the copy has the rest.
    cost = CostModel(system("node.pcie_switches.count=4", *SLOW_DDR_ONE_SOCKET))
    lookup, transfer = uvm_lookup(0, 4), copy(1, 4, 4e6)
    ec = cost.embedding_cost(lookup.op)
    assert ec.link_window_s is not None
    paced = ec.bytes_on(PCIE) / ec.link_window_s
    assert paced < PCIE_BYTES_PER_S / 2
    des = run_des(ExecutionGraph(8, [lookup, transfer]), cost)
    assert des.finish_s[0] == cost.duration_s(lookup)
    copy_wire = 4e6 / PCIE_COPY_EFFICIENCY
    lost = copy_wire / (PCIE_BYTES_PER_S - paced) - copy_wire / PCIE_BYTES_PER_S
    assert des.finish_s[1] == pytest.approx(cost.duration_s(transfer) + lost, rel=1e-9)


def test_a_lookup_whose_slack_the_copy_exceeds_is_delayed_past_its_window_only():
    # The reviewer's case: paced at 20.6 GB/s, over a fair half, the lookup's flow has 16 GB/s
    # while the copy runs, then its paced rate again; it is late by what it then still has to move
    # past its window (68 us; 152 us, the copy's bytes at the full rate, before the pacing).
    cost = CostModel(system("node.pcie_switches.count=4", SLOWER_LINK_DDR))
    lookup, transfer = uvm_lookup(0, 4), copy(1, 4, 4e6)
    ec = cost.embedding_cost(lookup.op)
    window = ec.link_window_s
    assert window is not None
    lookup_wire = ec.bytes_on(PCIE)
    paced = lookup_wire / window
    assert PCIE_BYTES_PER_S / 2 < paced < PCIE_BYTES_PER_S
    des = run_des(ExecutionGraph(8, [lookup, transfer]), cost)
    copy_wire = 4e6 / PCIE_COPY_EFFICIENCY
    together_s = copy_wire / (PCIE_BYTES_PER_S / 2)
    shared_s = together_s + (lookup_wire - together_s * PCIE_BYTES_PER_S / 2) / paced
    assert des.finish_s[0] == pytest.approx(cost.duration_s(lookup) + shared_s - window, rel=1e-9)
    assert des.finish_s[0] - cost.duration_s(lookup) == pytest.approx(67.76e-6, abs=0.01e-6)
    lost = together_s - copy_wire / PCIE_BYTES_PER_S
    assert des.finish_s[1] == pytest.approx(cost.duration_s(transfer) + lost, rel=1e-9)


def test_a_slowed_lookup_paces_its_flow_to_its_stretched_window():
    # A lookup slowed beside collectives (``durations``) streams its rows over the longer time:
    # alone it takes exactly the duration given; beside the copy, its flow, paced to the stretched
    # window, is under a fair half, so it is not delayed and the copy has the rest of the link.
    cost = CostModel(system("node.pcie_switches.count=4", SLOWER_LINK_DDR))
    lookup, transfer = uvm_lookup(0, 4), copy(1, 4, 4e6)
    ec = cost.embedding_cost(lookup.op)
    assert ec.link_window_s is not None
    stretch_s = 2 * ec.link_window_s
    slowed = {0: cost.duration_s(lookup) + stretch_s, 1: cost.duration_s(transfer)}
    alone = run_des(ExecutionGraph(8, [lookup]), cost, durations={0: slowed[0]})
    assert alone.finish_s[0] == slowed[0]
    paced = ec.bytes_on(PCIE) / (ec.link_window_s + stretch_s)
    assert paced < PCIE_BYTES_PER_S / 2
    des = run_des(ExecutionGraph(8, [lookup, transfer]), cost, durations=slowed)
    assert des.finish_s[0] == slowed[0]
    copy_wire = 4e6 / PCIE_COPY_EFFICIENCY
    lost = copy_wire / (PCIE_BYTES_PER_S - paced) - copy_wire / PCIE_BYTES_PER_S
    assert des.finish_s[1] == pytest.approx(slowed[1] + lost, rel=1e-9)


def busiest_link_s(graph: ExecutionGraph, cost: CostModel, schedule: Schedule) -> float:
    """The least time the graph's bytes need on its busiest link: every link's wire bytes (the
    collectives', the copies' and the lookups', as the utilisation figures route them) over its
    rate, the largest of them."""
    index = GraphIndex.of(graph)
    loads = step_loads(index, step_window(graph, schedule), cost, cost.system, {})
    capacity = _edge_index(cost.topology).capacity()
    return float(np.max((loads.flow_edges + loads.other_edges) / capacity))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    switches=st.sampled_from([2, 4]),
    ring_bytes=st.floats(1e5, 2e8),
    copies=st.lists(
        st.tuples(
            st.integers(0, 7),
            st.floats(1e4, 2e8),
            st.sampled_from([("host", "hbm"), ("hbm", "host")]),
            st.integers(0, 2),
        ),
        max_size=4,
    ),
    lookups=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 2)), max_size=3),
    dram_bound=st.booleans(),
)
def test_no_link_carries_more_than_its_rate_in_des(switches, ring_bytes, copies, lookups, dram_bound):
    """Everything starts at once, on lanes of its own (copies on up to three copy lanes, UVM
    lookups, DRAM-bound ones paced to their window, on compute lanes): no link moves bytes faster
    than its rate, so the DES run lasts at least its busiest link's bytes over that rate. (The
    analytic engine, which gives every op its links alone, need not: see the test below.)"""
    cost = CostModel(
        system(f"node.pcie_switches.count={switches}", *([SLOWER_LINK_DDR] if dram_bound else []))
    )
    nodes = ring(0, (0, 1, 4, 5), ring_bytes)
    for rank, nbytes, (src, dst), lane in copies:
        nodes.append(replace(copy(len(nodes), rank, nbytes, src, dst), lane=lane))
    for rank, lane in lookups:
        nodes.append(replace(uvm_lookup(len(nodes), rank), lane=lane))
    graph = ExecutionGraph(8, nodes)
    des = run_des(graph, cost)
    assert max(des.finish_s.values()) >= busiest_link_s(graph, cost, des) * (1 - 1e-6)


def test_the_analytic_engine_runs_links_past_their_rate_where_ops_overlap():
    # The bound above is not empty: a UVM lookup and two copies of one rank at once, each given the
    # rank's host link alone, finish sooner than the link could move their bytes.
    cost = CostModel(system("node.pcie_switches.count=4"))
    nodes = [uvm_lookup(0, 4), copy(1, 4, 16e6), replace(copy(2, 4, 16e6), lane=1)]
    graph = ExecutionGraph(8, nodes)
    analytic = run_analytic(graph, cost)
    assert max(analytic.finish_s.values()) < 0.8 * busiest_link_s(graph, cost, analytic)
    des = run_des(graph, cost)
    assert max(des.finish_s.values()) >= busiest_link_s(graph, cost, des) * (1 - 1e-6)
