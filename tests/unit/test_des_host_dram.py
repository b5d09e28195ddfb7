"""DES: the ranks of one CPU socket share its host DRAM (``recsim.engine.host_dram``)."""

import dataclasses

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

import recsim.engine.des as des_module
from recsim.config import Override
from recsim.cost.compute import CPU_MEMORY_EFFICIENCY
from recsim.cost.embedding import DDR
from recsim.cost.model import CostModel
from recsim.engine.analytic import run_analytic
from recsim.engine.des import DesCounters, run_des
from recsim.engine.host_dram import dram_of_rank, socket_dram_bytes_per_s
from recsim.engine.resources import op_dram_bytes
from recsim.errors import ConfigError
from recsim.graph.ir import Compute, Embedding, ExecutionGraph, Host, Node, Stream, Transfer
from recsim.hardware.library import HardwareLibrary
from tests.conftest import FIXTURES

HW = HardwareLibrary([FIXTURES / "minilib"])

# The tiny node (tests/fixtures/minilib): 2 sockets of 4 DDR4 channels, 64 bits a channel; at
# 0.4 Gb/s a pin a socket sustains 4 x 3.2 GB/s x 0.78 = 9.98 GB/s. One PCIe switch, on socket 0,
# holds both GPUs: each has 16 GB/s of its uplink (11.6 GB/s of uvm payload, TLP overhead off),
# and the uvm model gives each rank half its socket's DRAM (``Node.host_dram_ranks``), 4.99 GB/s:
# its lookups are DRAM-bound, and the two ranks, both on socket 0, fill it.
ONE_SOCKET_OF_GPUS = (
    "cluster.nodes=1",
    "node.accelerators.count=2",
    "node.pcie_switches.count=1",
    "node.host_memory.device.pin_rate=0.4 Gb/s",
)
SOCKET_BYTES_PER_S = 4 * 0.4e9 * 64 / 8 * 0.78


def system(*sets: str):
    return HW.system("tiny", [Override.parse(s) for s in sets])


def uvm_lookup(i: int, rank: int, lookups: float = 1e5) -> Node:
    op = Embedding(
        table="t", pass_="forward", rows=10**6, dim=128, dtype="fp32", batch=1000, lookups=lookups, tier="uvm"
    )
    return Node(i, rank, f"lookup{i}", Stream.COMPUTE, op)


def test_a_socket_has_its_share_of_the_dram_the_cost_models_price():
    sys_ = system(*ONE_SOCKET_OF_GPUS)
    node = sys_.node
    assert node.cpus.count == 2
    assert socket_dram_bytes_per_s(sys_) == pytest.approx(
        node.host_memory_bandwidth_bytes_per_s * CPU_MEMORY_EFFICIENCY / 2, rel=1e-12
    )
    assert socket_dram_bytes_per_s(sys_) == pytest.approx(SOCKET_BYTES_PER_S, rel=1e-12)
    cost = CostModel(sys_)
    # Both GPUs hang off socket 0 (through the one PCIe switch).
    assert [dram_of_rank(cost.topology, sys_, r)[0] for r in (0, 1)] == ["n0.cpu0", "n0.cpu0"]
    # The tiny default: 2 switches, GPUs 0-1 on socket 0 and 2-3 on socket 1.
    spread = system("cluster.nodes=2")
    names = [dram_of_rank(CostModel(spread).topology, spread, r)[0] for r in range(8)]
    assert names == ["n0.cpu0", "n0.cpu0", "n0.cpu1", "n0.cpu1", "n1.cpu0", "n1.cpu0", "n1.cpu1", "n1.cpu1"]


def test_what_an_op_reads_and_writes_in_host_dram():
    cost = CostModel(system(*ONE_SOCKET_OF_GPUS))
    lookup = uvm_lookup(0, 0).op
    assert op_dram_bytes(lookup, cost) == cost.embedding_cost(lookup).bytes_on(DDR) > 0
    # The other host tiers: a UVM cache's misses, the CPU's lookups of a host-side shard.
    for tier in ("uvm_caching", "ddr"):
        other = dataclasses.replace(lookup, tier=tier)
        assert op_dram_bytes(other, cost) == cost.embedding_cost(other).bytes_on(DDR) > 0
    assert op_dram_bytes(Transfer(src="host", dst="hbm", bytes=1e6), cost) == 1e6
    assert op_dram_bytes(Transfer(src="hbm", dst="host", bytes=1e6), cost) == 1e6
    assert op_dram_bytes(Transfer(src="peer", dst="hbm", bytes=1e6), cost) == 0.0
    assert op_dram_bytes(Host("data_loading", bytes=2e6, cpu_s=1e-6), cost) == 2e6
    relu = Compute("relu", bytes_read=1e6, bytes_written=1e6, category="elementwise")
    assert op_dram_bytes(relu, cost) == 0


def test_two_ranks_uvm_lookups_on_one_socket_take_their_rows_over_its_dram():
    cost = CostModel(system(*ONE_SOCKET_OF_GPUS))
    a, b = uvm_lookup(0, 0), uvm_lookup(1, 1)
    ec = cost.embedding_cost(a.op)
    ddr_s = ec.details["ddr_s"]
    assert ec.link_window_s == ddr_s > ec.details["pcie_s"]  # DRAM-bound: its rows at DRAM speed
    payload = ec.bytes_on(DDR)
    # Both GPUs hang off socket 0: the cost model gives each half its channels (before, half the
    # node's: the whole socket each, which the DES then halved).
    assert payload / ddr_s == pytest.approx(SOCKET_BYTES_PER_S / 2, rel=1e-12)
    duration = cost.duration_s(a)
    # Alone, its modelled time.
    assert run_des(ExecutionGraph(2, [a]), cost).finish_s[0] == duration
    # Together they fill the socket: each its modelled time, as in the analytic engine.
    both = run_des(ExecutionGraph(2, [a, b]), cost)
    analytic = run_analytic(ExecutionGraph(2, [a, b]), cost)
    assert both.finish_s[0] == both.finish_s[1] == pytest.approx(duration, rel=1e-12)
    assert analytic.finish_s[0] == analytic.finish_s[1] == duration
    # Lookups alone never ask a socket more than it has: what the DES shares is what the rank
    # shares leave out (copies and host work beside the lookups, below).


def test_a_rank_s_host_dram_is_its_socket_s_share_in_both_engines():
    # A lone GPU on the tiny node's 2 sockets: its host memory is its socket's, half the node's
    # channels, in the cost model as in the DES. Before, the cost model gave it the whole node's,
    # its lookup asked twice what its socket has, and the DES stretched it: the engines disagreed.
    lone = system("cluster.nodes=1", "node.accelerators.count=1", "node.host_memory.device.pin_rate=0.4 Gb/s")
    assert lone.node.host_dram_ranks == 2
    cost = CostModel(lone)
    a = uvm_lookup(0, 0)
    ec = cost.embedding_cost(a.op)
    assert ec.bytes_on(DDR) / ec.details["ddr_s"] == pytest.approx(SOCKET_BYTES_PER_S, rel=1e-12)
    graph = ExecutionGraph(1, [a])
    assert run_des(graph, cost).finish_s[0] == run_analytic(graph, cost).finish_s[0] == cost.duration_s(a)
    # The host tier of the CPUs' own lookups (``ddr``) takes the same share.
    host = dataclasses.replace(a.op, tier="ddr")
    got = cost.embedding_cost(host)
    assert got.bytes_on(DDR) / got.details["bandwidth_s"] == pytest.approx(SOCKET_BYTES_PER_S, rel=1e-12)


def test_a_rank_s_data_loading_reads_its_socket_s_share_of_the_dram():
    # The data loader (a ``Host`` op) reads the batch from the rank's host memory: its socket's,
    # as the DES's DRAM link has it (``op_dram_bytes`` puts its bytes there), so a lone GPU on two
    # sockets gets one socket's channels, not the node's (it was priced at the node's over the
    # node's GPUs: twice what the DES's link holds, the socket's DRAM then reported over 100 %).
    lone = system("cluster.nodes=1", "node.accelerators.count=1", "node.host_memory.device.pin_rate=0.4 Gb/s")
    cost = CostModel(lone)
    load = Host("data_loading", bytes=1e7, cpu_s=1e-6)
    assert cost.host_s(load) == pytest.approx(1e-6 + 1e7 / SOCKET_BYTES_PER_S, rel=1e-12)
    assert dram_of_rank(cost.topology, lone, 0)[1] == pytest.approx(SOCKET_BYTES_PER_S, rel=1e-12)
    # Where every socket holds as many GPUs, each has the node's DRAM over the node's GPUs.
    even = CostModel(system("cluster.nodes=1", "node.host_memory.device.pin_rate=0.4 Gb/s"))
    assert even.system.node.num_accelerators == 4
    assert even.host_s(load) == pytest.approx(1e-6 + 1e7 / (2 * SOCKET_BYTES_PER_S / 4), rel=1e-12)


@pytest.mark.parametrize(
    ("sets", "ranks"),
    [
        (("node.accelerators.count=4",), 4),  # the tiny default: 2 GPUs a socket
        (("node.accelerators.count=2", "node.pcie_switches.count=1"), 4),  # both on socket 0
        (("node.accelerators.count=3",), 4),  # switches 0, 0, 1: two GPUs on socket 0
        (("node.accelerators.count=1",), 2),  # a lone GPU: its socket's channels
        (("node.cpus.count=1",), 4),  # one socket: the node's channels over its GPUs
        (("node.accelerators.count=2", "node.pcie_switches.count=4"), 2),  # switches 0 and 2: one a socket
        (("node.pcie_switches=null",), 4),  # on the CPUs' root ports: 0, 0, 1, 1
        (("node.pcie_switches=null", "node.accelerators.count=3"), 4),  # 0, 0, 1
    ],
)
def test_the_cost_models_socket_rule_is_the_topology_s(sets, ranks):
    # ``Node.accelerator_socket`` is the socket the topology wires each GPU to (the DES's DRAM
    # link, ``dram_of_rank``); ``host_dram_ranks`` the sockets times the most GPUs one holds.
    sys_ = system("cluster.nodes=1", *sets)
    topology = CostModel(sys_).topology
    node = sys_.node
    wired = [dram_of_rank(topology, sys_, r)[0] for r in range(node.num_accelerators)]
    assert wired == [f"n0.cpu{node.accelerator_socket(i)}" for i in range(node.num_accelerators)]
    assert node.host_dram_ranks == ranks


@pytest.mark.parametrize(
    "name",
    ["dgx-1-v100", "dgx-h100", "gb200-nvl72", "h100-pcie-server", "hgx-h100-4gpu", "zionex", "skylake-2s"],
)
def test_the_library_s_nodes_follow_the_socket_rule(name):
    # The library's nodes (PCIe switches on two or four sockets, Grace superchips without switches,
    # a CPU server): the rule is the topology's, and each holds as many GPUs a socket, so a rank's
    # share is the node's DRAM over its GPUs, as before the rule (all of it on the CPU server).
    sys_ = HardwareLibrary().system(name, [Override.parse("cluster.nodes=1")])
    node = sys_.node
    topology = CostModel(sys_).topology
    wired = [dram_of_rank(topology, sys_, r)[0] for r in range(node.num_accelerators)]
    assert wired == [f"n0.cpu{node.accelerator_socket(i)}" for i in range(node.num_accelerators)]
    assert node.host_dram_ranks == max(1, node.num_accelerators)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    accelerators=st.integers(1, 16),
    switches=st.one_of(st.none(), st.integers(1, 8)),
    cpus=st.integers(1, 4),
)
def test_host_dram_ranks_counts_the_accelerators_by_accelerator_socket(accelerators, switches, cpus):
    # ``host_dram_ranks`` applies ``accelerator_socket``'s rule inline (a planner asks for it with
    # every cached lookup it prices): the count is the one the method gives, GPU by GPU.
    sets = [f"node.accelerators.count={accelerators}", f"node.cpus.count={cpus}"]
    sets.append("node.pcie_switches=null" if switches is None else f"node.pcie_switches.count={switches}")
    try:
        node = system("cluster.nodes=1", *sets).node
    except ConfigError:  # more devices than the CPUs' PCIe lanes take: no such node
        reject()
    held = [0] * cpus
    for i in range(accelerators):
        held[node.accelerator_socket(i)] += 1
    assert node.host_dram_ranks == cpus * max(held)


@pytest.mark.parametrize(("name", "index"), [("dgx-h100", 8), ("dgx-h100", -1), ("skylake-2s", 0)])
def test_the_socket_of_an_accelerator_the_node_lacks_is_an_error(name, index):
    # The rule would otherwise give a socket for GPU 8 of an 8-GPU node, or any GPU of a CPU server.
    node = HardwareLibrary().system(name, [Override.parse("cluster.nodes=1")]).node
    with pytest.raises(ValueError, match="outside this node"):
        node.accelerator_socket(index)


def test_ranks_on_two_sockets_do_not_share_their_dram():
    # Two switches: GPU 0 on socket 0, GPU 1 on socket 1 (the uvm model's per-rank share, half
    # the node, is each socket's whole DRAM).
    cost = CostModel(system(*ONE_SOCKET_OF_GPUS, "node.pcie_switches.count=2"))
    a, b = uvm_lookup(0, 0), uvm_lookup(1, 1)
    counters = DesCounters()
    both = run_des(ExecutionGraph(2, [a, b]), cost, counters)
    assert both.finish_s[0] == both.finish_s[1] == cost.duration_s(a)
    assert counters.dram_flows == 0  # each socket's demand fits: no op goes on a link


def test_a_device_to_host_copy_and_a_lookup_share_the_dram_both_ways():
    # A copy to host memory writes what the lookup beside it (on the other GPU of the socket)
    # reads: DRAM is not full duplex. The copy asks its bytes over its time, more than the socket
    # has (the copy model prices the PCIe rate); the lookup asks its rank's share, half the socket,
    # no more than a fair half: it keeps its pace and its time, and the copy has the other half
    # while the lookup's rows stream, so it ends later than alone but before twice its time.
    cost = CostModel(system(*ONE_SOCKET_OF_GPUS))
    lookup = uvm_lookup(0, 0)
    copy = Node(1, 1, "d2h", Stream.COPY, Transfer(src="hbm", dst="host", bytes=4e6))
    copy_s = cost.duration_s(copy)
    assert 4e6 / copy_s > SOCKET_BYTES_PER_S  # it asks for the whole socket over its duration
    assert run_des(ExecutionGraph(2, [copy]), cost).finish_s[1] == copy_s  # alone: its time
    got = run_des(ExecutionGraph(2, [lookup, copy]), cost)
    assert got.finish_s[0] == pytest.approx(cost.duration_s(lookup), rel=1e-12)
    assert copy_s < got.finish_s[1] <= 2 * copy_s * (1 + 1e-12)


def test_ops_of_one_queue_get_no_dram_link_and_the_engines_agree():
    cost = CostModel(system(*ONE_SOCKET_OF_GPUS))
    a, b = uvm_lookup(0, 0), uvm_lookup(1, 0)
    b = Node(1, 0, "lookup1", Stream.COMPUTE, b.op, (0,))
    graph = ExecutionGraph(2, [a, b])
    counters = DesCounters()
    assert run_des(graph, cost, counters).finish_s == run_analytic(graph, cost).finish_s
    assert counters.dram_flows == counters.dram_rounds == 0


def delay(i: int, rank: int, flops: float) -> Node:
    op = Compute("linear", flops=flops, shapes=((64, 64), (64, 64)), category="gemm", dtype="fp16")
    return Node(i, rank, f"g{i}", Stream.COMPUTE, op)


def run_with_dram_scaled(graph: ExecutionGraph, cost: CostModel, factor: float, counters: DesCounters):
    """DES with every DRAM link ``factor`` times the capacity the cost models price (their times
    unchanged)."""
    real = des_module.dram_of_rank

    def scaled(topology, system, rank):
        name, capacity = real(topology, system, rank)
        return name, capacity * factor

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(des_module, "dram_of_rank", scaled)
        return run_des(graph, cost, counters)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    work=st.lists(
        st.tuples(
            st.integers(0, 3),  # rank (0-1 on socket 0, 2-3 on socket 1)
            st.sampled_from(["lookup", "h2d", "d2h", "host"]),
            st.floats(1e4, 1e8),  # bytes (lookups: 1e-3 of them)
            st.floats(0, 1e12),  # flops of a kernel before it: a random start
        ),
        min_size=1,
        max_size=5,
    ),
    factor=st.floats(1.0, 8.0),
)
def test_more_dram_bandwidth_is_never_slower_and_never_faster_than_unshared(work, factor):
    cost = CostModel(system("cluster.nodes=1", "node.host_memory.device.pin_rate=0.4 Gb/s"))
    nodes: list[Node] = []
    for k, (rank, kind, nbytes, flops) in enumerate(work):
        first = 2 * k
        op = {
            "lookup": uvm_lookup(0, 0, lookups=max(1.0, nbytes / 1e3)).op,
            "h2d": Transfer(src="host", dst="hbm", bytes=nbytes),
            "d2h": Transfer(src="hbm", dst="host", bytes=nbytes),
            "host": Host("data_loading", bytes=nbytes),
        }[kind]
        stream = {"lookup": Stream.COMPUTE, "host": Stream.HOST}.get(kind, Stream.COPY)
        lane = k if kind == "lookup" else 0
        nodes += [delay(first, rank, flops), Node(first + 1, rank, kind, stream, op, (first,), lane=lane)]
    graph = ExecutionGraph(4, nodes)
    counters = DesCounters()
    base = run_des(graph, CostModel(cost.system), counters)
    analytic = run_analytic(graph, CostModel(cost.system))
    wider = run_with_dram_scaled(graph, CostModel(cost.system), factor, DesCounters())
    for n in graph.nodes:
        assert base.finish_s[n.id] >= analytic.finish_s[n.id] * (1 - 1e-12)
        assert wider.finish_s[n.id] >= analytic.finish_s[n.id] * (1 - 1e-12)
    assert max(wider.finish_s.values()) <= max(base.finish_s.values()) * (1 + 1e-12)
    assert counters.dram_peak_use <= 1.0 + 1e-9


def test_the_over_capacity_note_says_des_shares_hbm_and_host_dram():
    # HBM and host DRAM are DES's shared resources (``recsim.engine.hbm``, ``recsim.engine.
    # host_dram``): the analytic engine's note must not say DES slows copies and lookups on links
    # only, and DES's own note over HBM must not say the ops beside each other are not slowed.
    import numpy as np

    from recsim.engine.network import _edge_index
    from recsim.engine.resources import Loads, resource_figures

    sys_ = system("cluster.nodes=1")
    topology = CostModel(sys_).topology
    edges = len(_edge_index(topology).capacity())
    hbm = np.full(len(topology.accelerators), 2 * sys_.accelerator.hbm.bandwidth_bytes_per_s)
    dram = np.array([2 * sys_.node.host_memory_bandwidth_bytes_per_s])
    notes = {
        fidelity: resource_figures(
            Loads(np.zeros(edges), np.zeros(edges), hbm, dram), topology, sys_, 1.0, fidelity
        ).figures.notes
        for fidelity in ("analytic", "des")
    }
    assert len(notes["analytic"]) == len(notes["des"]) == 2  # HBM and host memory, each 2x
    for note in notes["analytic"]:
        assert "links only" not in note
        assert note.endswith("so the step is optimistic there; --fidelity des shares it")
    hbm_note, dram_note = notes["des"]
    assert "DES shares each rank's HBM" in hbm_note and "not slowed" not in hbm_note
    assert "DES shares each socket's DRAM" in dram_note
