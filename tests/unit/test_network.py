"""Flow-level network model: max-min allocation, phases, agreement with alpha-beta, contention."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace

import networkx as nx
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.api import load_system
from recsim.cost.collectives import (
    Flow,
    Level,
    collective_cost,
    collective_flows,
    collective_time_s,
)
from recsim.cost.collectives.base import REGISTRY, group_layout
from recsim.cost.collectives.model import choose_algorithm
from recsim.engine.des import FluidNetwork
from recsim.engine.network import (
    collective_time_flows_s,
    max_min_rates,
    simulate_flows,
    simulate_flows_detailed,
)
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.topology import Topology, build_topology

MiB = 2**20


def topo(system: str, nodes: int = 1, *overrides: str) -> Topology:
    return build_topology(load_system(system, nodes=nodes, overrides=overrides))


H1 = topo("dgx-h100")
H2 = topo("dgx-h100", 2)


def op_(kind: CollectiveOp, group: tuple[int, ...], size: float, key: str = "c") -> Collective:
    return Collective(kind, key, group, size, "fp16")


# ------------------------------------------------------------------------------------------ allocation


def test_single_flow_gets_the_route_bandwidth():
    """ECMP split: one GPU-to-GPU flow over the four NVSwitches reaches 18 x 25 GB/s, not one chip's."""
    alloc = max_min_rates([Flow("n0.gpu0", "n0.gpu5", 1e9)], H1)
    assert alloc.rates[0] == pytest.approx(450e9)
    assert alloc.rates[0] == pytest.approx(H1.route("n0.gpu0", "n0.gpu5").bandwidth_bytes_per_s)
    far = max_min_rates([Flow("n0.gpu0", "n1.gpu3", 1e9, efficiency=0.5)], H2)
    assert far.wire_rates[0] == pytest.approx(50e9) and far.rates[0] == pytest.approx(25e9)


def test_single_flow_agrees_with_alpha_beta():
    """The issue's check: with no contention the flow time is the alpha-beta bandwidth term."""
    for t, group in ((H1, (0, 5)), (H2, (0, 13))):
        op = Collective(CollectiveOp.SEND, "s", group, 256 * MiB)
        cost = collective_cost(op, t)
        flows = collective_flows(op, t)
        # Across nodes NCCL's PXN hands the bytes over NVLink to the sender's GPU on the receiver's
        # rail first (``Topology.p2p_first_hop``): rank 0 -> 13 goes n0.gpu0 -> n0.gpu5 -> n1.gpu5.
        hops = [(f.src, f.dst) for f in flows]
        relayed = [("n0.gpu0", "n0.gpu5"), ("n0.gpu5", "n1.gpu5")]
        assert hops == (relayed[:1] if t is H1 else relayed)
        assert simulate_flows(flows, t) == pytest.approx(cost.bandwidth_s, rel=1e-9)
        assert collective_time_flows_s(op, t) == pytest.approx(cost.time_s, rel=1e-9)


CASES = [
    (H1, CollectiveOp.ALL_REDUCE, 8, "ring"),
    (H1, CollectiveOp.ALL_REDUCE, 8, "nvls"),
    (H1, CollectiveOp.ALL_GATHER, 8, None),
    (H1, CollectiveOp.REDUCE_SCATTER, 4, None),
    (H1, CollectiveOp.ALL_TO_ALL, 8, None),
    (H1, CollectiveOp.BROADCAST, 8, None),
    (H2, CollectiveOp.ALL_REDUCE, 16, "ring"),
    (H2, CollectiveOp.ALL_REDUCE, 16, "tree"),
    (H2, CollectiveOp.ALL_GATHER, 16, None),
    (H2, CollectiveOp.REDUCE, 16, None),
    (H2, CollectiveOp.ALL_TO_ALL, 16, "direct"),
    (H2, CollectiveOp.ALL_TO_ALL, 16, "hierarchical"),
]


@pytest.mark.parametrize(("t", "kind", "n", "algorithm"), CASES)
def test_uncontended_collectives_agree_with_alpha_beta(t, kind, n, algorithm):
    op = op_(kind, tuple(range(n)), 64 * MiB)
    assert collective_time_flows_s(op, t, algorithm) == pytest.approx(
        collective_time_s(op, t, algorithm), rel=1e-6
    )


V1 = topo("dgx-1-v100")
V2 = topo("dgx-1-v100", 2)


@pytest.mark.parametrize(
    ("t", "n", "algorithm"),
    [
        (V1, 8, "tree"),
        (V1, 4, "tree"),
        (V1, 3, "tree"),
        (V1, 5, "tree"),
        (V2, 16, "tree"),
        (V2, 16, "collnet"),
        (V2, 16, "ring"),
        (topo("hgx-a100-4gpu"), 4, "tree"),
    ],
)
@pytest.mark.parametrize("size", [64 * 1024, 64 * MiB])
def test_an_nvlink_mesh_moves_trees_and_collnet_as_their_stages_cost_them(t, n, algorithm, size):
    """On DGX-1's hybrid cube mesh the flows of a tree's chains follow the node's rings, spread by
    their rates, and CollNet's node part the rings too (CollNet Chain): the tree's chains took one
    ring (+48 % at 64 MiB on one node) and CollNet's node part every pair of GPUs, relayed over a
    third GPU where the mesh has no direct link (5.8x slower than its stage; DES found it). The
    stage charges the chains' busiest link: a middle rank's up and down take different links (a
    3-GPU chain was charged 2x; a reviewer's find)."""
    op = op_(CollectiveOp.ALL_REDUCE, tuple(range(n)), size)
    assert collective_time_flows_s(op, t, algorithm) == pytest.approx(
        collective_time_s(op, t, algorithm), rel=1e-6
    )


def test_phases_run_in_order_and_rates_are_recomputed():
    link = H1.graph.edges["n0.gpu0", "n0.nvsw0"]["bandwidth_bytes_per_s"]
    sw = "n0.nvsw0"
    # Two phases on one link: back to back.
    flows = [Flow("n0.gpu0", sw, 1e9, 0), Flow("n0.gpu0", sw, 1e9, 1)]
    assert simulate_flows(flows, H1) == pytest.approx(2e9 / link)
    # One phase, sizes 1 and 3: they share until the small one ends, then the big one has the link.
    flows = [Flow("n0.gpu0", sw, 1e9, 0), Flow("n0.gpu0", sw, 3e9, 0)]
    result = simulate_flows_detailed(flows, H1)
    assert result.flow_finish_s[0] == pytest.approx(2e9 / link)
    assert result.makespan_s == pytest.approx(4e9 / link)


def test_groups_run_concurrently():
    sw = "n0.nvsw0"
    link = H1.graph.edges["n0.gpu0", sw]["bandwidth_bytes_per_s"]
    a = [Flow("n0.gpu0", sw, 1e9, p, "a") for p in range(3)]
    b = [Flow("n0.gpu1", sw, 1e9, p, "b") for p in range(3)]  # other link: no sharing
    result = simulate_flows_detailed(a + b, H1)
    assert result.group_finish_s == pytest.approx({"a": 3e9 / link, "b": 3e9 / link})
    shared = [replace(f, src="n0.gpu0") for f in b]
    assert simulate_flows(a + shared, H1) == pytest.approx(6e9 / link)


# ------------------------------------------------------------------------------------------ properties

GPUS = [f"n{n}.gpu{i}" for n in range(2) for i in range(8)]


@st.composite
def flow_sets(draw: st.DrawFn) -> list[Flow]:
    pairs = draw(st.lists(st.tuples(st.sampled_from(GPUS), st.sampled_from(GPUS)), min_size=1, max_size=24))
    effs = draw(st.lists(st.sampled_from([1.0, 0.97, 0.75, 0.5]), min_size=len(pairs), max_size=len(pairs)))
    return [Flow(a, b, 1e9, efficiency=e) for (a, b), e in zip(pairs, effs, strict=True) if a != b] or [
        Flow(GPUS[0], GPUS[9], 1e9)
    ]


@settings(max_examples=60, deadline=None)
@given(flow_sets())
def test_max_min_is_feasible_and_pareto(flows):
    alloc = max_min_rates(flows, H2)
    for edge, load in alloc.edge_load.items():
        assert load <= alloc.capacity[edge] * (1 + 1e-9)  # never above a link's capacity
    paths = {i: sum(1 for j, _, _ in alloc.subflows if j == i) for i, _, _ in alloc.subflows}
    for i, path, rate in alloc.subflows:
        assert rate > 0
        # Pareto: every subflow (so every flow) crosses a saturated link ...
        full = [e for e in path if alloc.saturated(e)]
        assert full, (flows[i], path)
        # ... on which no subflow gets more per unit of weight (1 / paths): weighted max-min.
        level = rate * paths[i]
        assert any(
            all(r * paths[j] <= level * (1 + 1e-6) for j, p, r in alloc.subflows if e in p) for e in full
        )


@settings(max_examples=25, deadline=None)
@given(flow_sets(), st.floats(1.0, 4.0))
def test_uniformly_faster_links_never_slow_flows_down(flows, factor):
    g = H2.graph.copy()
    for _, _, d in g.edges(data=True):
        d["bandwidth_bytes_per_s"] *= factor
    faster = Topology(H2.system, g)
    assert simulate_flows(flows, faster) <= simulate_flows(flows, H2) * (1 + 1e-9)


# ------------------------------------------------------------------------------------------ contention


def test_concurrent_collectives_share_links():
    group = tuple(range(16))
    one = collective_flows(op_(CollectiveOp.ALL_TO_ALL, group, 64 * MiB, "a"), H2)
    two = collective_flows(op_(CollectiveOp.ALL_TO_ALL, group, 64 * MiB, "b"), H2)
    alone = simulate_flows(one, H2)
    both = simulate_flows_detailed(one + two, H2)
    assert both.makespan_s == pytest.approx(2 * alone, rel=1e-6)  # every NIC carries both
    # An all-reduce inside node 1 shares NVLink with the all-to-all's intra-node part only: the
    # all-to-all is NIC-bound, so it barely notices.
    local = collective_flows(op_(CollectiveOp.ALL_REDUCE, tuple(range(8, 16)), 64 * MiB, "r"), H2)
    mixed = simulate_flows_detailed(one + local, H2)
    # (to rounding: the filling's sums in another order may finish it an ulp sooner)
    assert alone * (1 - 1e-12) <= mixed.group_finish_s["a"] < 1.1 * alone


def test_oversubscription_slows_inter_node_traffic():
    """A tapered leaf (3:1) against a full-bisection one; small-radix switches so that a node's
    NICs spread over several leaves."""
    full = topo("dgx-h100", 2, "cluster.scale_out.switch.ports=8", "cluster.scale_out.oversubscription=1")
    tapered = topo("dgx-h100", 2, "cluster.scale_out.switch.ports=8", "cluster.scale_out.oversubscription=3")
    op = op_(CollectiveOp.ALL_TO_ALL, tuple(range(16)), 64 * MiB)
    assert collective_time_flows_s(op, tapered) > 1.5 * collective_time_flows_s(op, full)
    assert collective_time_s(op, tapered) > 1.5 * collective_time_s(op, full)
    # Inside one node nothing changes.
    local = op_(CollectiveOp.ALL_TO_ALL, tuple(range(8)), 64 * MiB)
    assert collective_time_flows_s(local, tapered) == pytest.approx(collective_time_flows_s(local, full))


def test_a_straggler_nic_slows_the_whole_ring():
    """Half-speed NIC on one GPU: every ring step waits for the channel through it."""
    op = op_(CollectiveOp.ALL_REDUCE, tuple(range(16)), 256 * MiB)
    g = H2.graph.copy()
    for a, b in (("n1.nic3", "leaf0"), ("leaf0", "n1.nic3")):
        g.edges[a, b]["bandwidth_bytes_per_s"] /= 4
    slow = Topology(H2.system, g)
    base = collective_time_flows_s(op, H2, "ring")
    straggler = collective_time_flows_s(op, slow, "ring")
    cost = collective_cost(op, H2, "ring")
    eff = cost.efficiency[Level.INTER]
    # Each step moves S / (n x 8 channels) per channel; the slow NIC moves it at 12.5 GB/s.
    steps = 2 * 15
    expected_bw = steps * op.bytes / 16 / 8 / (50e9 / 4 * eff)
    assert straggler > 1.8 * base
    assert straggler - (cost.time_s - cost.bandwidth_s) == pytest.approx(expected_bw, rel=0.05)
    # The alpha-beta model splits the data evenly over the channels too: the node moves 8 x the
    # slowest NIC's rate, not its NICs' total (which drops by 3/32 only).
    assert collective_time_s(op, slow, "ring") == pytest.approx(straggler, rel=0.05)


def test_a_ring_over_any_subset_of_nic_sharing_gpus_agrees_with_the_flows():
    # p4d: 4 EFA for 8 GPUs, two GPUs per NIC. A subset with 3 members on 2 NICs moves 1.5 NICs'
    # worth (a channel per member, equal parts), not 2: the NICs-used rule was 0.64x the flows.
    t = topo("p4d-24xlarge", nodes=2)
    rng = random.Random(4)
    subsets = [tuple(sorted(rng.sample(range(8), rng.randint(1, 8)))) for _ in range(12)]
    for local in [(0, 1, 2), *subsets]:
        group = (*local, *(8 + r for r in local))
        op = op_(CollectiveOp.ALL_REDUCE, group, 256 * MiB)
        flows = collective_time_flows_s(op, t, "ring")
        assert collective_time_s(op, t, "ring") == pytest.approx(flows, rel=0.02), local


def test_mesh_ring_flows_agree_and_shared_pcie_links_count_in_both():
    t = topo("dgx-1-v100")
    ring = op_(CollectiveOp.ALL_REDUCE, tuple(range(8)), 64 * MiB)
    alpha_beta = collective_time_s(ring, t, "ring")
    assert collective_time_flows_s(ring, t, "ring") == pytest.approx(alpha_beta, rel=1e-6)
    # All-to-all: the pairs without an NVLink go through one GPU over NVLink (NCCL's NVB paths),
    # sharing its links with its own traffic. The alpha-beta figure charged each pair's bytes over
    # its own route only, 4.5x faster than the flows (a tester's find, when those pairs crossed
    # PCIe); it charges the busiest shared link too.
    a2a = op_(CollectiveOp.ALL_TO_ALL, tuple(range(8)), 64 * MiB)
    assert collective_time_flows_s(a2a, t) == pytest.approx(collective_time_s(a2a, t), rel=1e-9)
    for system, gpus in (("h100-pcie-server", 8), ("big-basin", 8)):
        # PCIe servers share switch uplinks.
        other = topo(system)
        a2a = op_(CollectiveOp.ALL_TO_ALL, tuple(range(gpus)), 64 * MiB)
        assert collective_time_flows_s(a2a, other) == pytest.approx(collective_time_s(a2a, other), rel=1e-9)


def test_flows_respect_the_topology_graph():
    flows = collective_flows(op_(CollectiveOp.ALL_REDUCE, tuple(range(16)), 64 * MiB), H2, "ring")
    for f in flows:
        assert nx.has_path(H2.graph, f.src, f.dst)
    inter = [f for f in flows if f.src.split(".")[0] != f.dst.split(".")[0]]
    # 8 channels per direction cross between the nodes, each on its own pair of GPUs (NICs).
    pairs = {(f.src, f.dst) for f in inter}
    assert len(pairs) == 16
    assert len({a for a, _ in pairs}) == 16 and len({b for _, b in pairs}) == 16


def test_simulation_is_fast_enough():
    """A 4-node (32 GPU) all-to-all: ~1000 flows x 1-2 paths."""
    t = topo("dgx-h100", 4)
    op = op_(CollectiveOp.ALL_TO_ALL, tuple(range(32)), 64 * MiB)
    assert collective_time_flows_s(op, t) == pytest.approx(collective_time_s(op, t), rel=1e-6)


# ------------------------------------------------------------------------------------------ rate caps


def _des_finish(flows: list[Flow], topology: Topology) -> list[float]:
    """When each of ``flows`` (one transfer each, all started at 0) ends in the DES network."""
    env = simpy.Environment()
    net = FluidNetwork(env, topology)
    done = [net.transfer([f]) for f in flows]
    ends: list[float] = [0.0] * len(flows)

    def watch(i: int):
        yield done[i]
        ends[i] = env.now

    for i in range(len(flows)):
        env.process(watch(i))
    env.run()
    return ends


def test_a_capped_flow_alone_takes_its_bytes_over_its_cap():
    """A flow with a rate limit of its own (``Flow.cap_bytes_per_s``, a pair staged through host
    memory) takes wire bytes / cap where its links have more room, in both fluid simulations."""
    sw = "n0.nvsw0"
    link = H1.graph.edges["n0.gpu0", sw]["bandwidth_bytes_per_s"]  # 4 or 5 x 25 GB/s
    capped = Flow("n0.gpu0", sw, 1e9, efficiency=0.5, cap_bytes_per_s=20e9)
    assert link > 20e9
    alloc = max_min_rates([capped], H1)
    assert alloc.wire_rates[0] == 20e9 and alloc.rates[0] == 10e9
    assert simulate_flows([capped], H1) == pytest.approx(2e9 / 20e9)
    assert _des_finish([capped], H1) == [pytest.approx(2e9 / 20e9)]
    # A cap above what the links give changes nothing.
    loose = replace(capped, cap_bytes_per_s=10 * link)
    assert simulate_flows([loose], H1) == pytest.approx(
        simulate_flows([replace(capped, cap_bytes_per_s=math.inf)], H1)
    )


def test_capped_flows_keep_their_caps_while_the_link_has_room_and_share_it_when_not():
    sw = "n0.nvsw0"
    link = H1.graph.edges["n0.gpu0", sw]["bandwidth_bytes_per_s"]
    cap = 0.3 * link
    # Two staged pairs on one link: each keeps its cap (0.6 of the link used), the link's load is
    # their plain bytes, not bytes / SHM_EFFICIENCY each.
    two = [Flow("n0.gpu0", sw, 1e9, cap_bytes_per_s=cap) for _ in range(2)]
    alloc = max_min_rates(two, H1)
    assert list(alloc.wire_rates) == [pytest.approx(cap)] * 2
    assert alloc.edge_load[("n0.gpu0", sw)] == pytest.approx(2 * cap)
    assert not alloc.saturated(("n0.gpu0", sw))
    # Four: the link is full first, an equal quarter each, under the cap.
    four = two * 2
    assert list(max_min_rates(four, H1).wire_rates) == [pytest.approx(link / 4)] * 4
    # Beside an uncapped flow the capped one keeps its cap and the other takes the rest; when the
    # capped one ends first the other has the whole link.
    free = Flow("n0.gpu0", sw, 1e9)
    alloc = max_min_rates([two[0], free], H1)
    assert list(alloc.wire_rates) == [pytest.approx(cap), pytest.approx(link - cap)]
    ends = simulate_flows_detailed([two[0], free], H1).flow_finish_s
    assert ends[1] == pytest.approx(1e9 / (link - cap))  # first: 1e9 at 0.7 of the link
    assert ends[0] == pytest.approx(1e9 / cap)  # its cap all along (0.3 < the link's rest)
    assert _des_finish([two[0], free], H1) == [pytest.approx(ends[0]), pytest.approx(ends[1])]


def test_zero_and_bad_flows():
    assert simulate_flows([], H1) == 0.0
    with pytest.raises(ValueError, match="bad flow"):
        simulate_flows([Flow("n0.gpu0", "n0.gpu1", 1.0, efficiency=0.0)], H1)
    assert collective_flows(op_(CollectiveOp.ALL_REDUCE, (0,), 1e6), H1) == []


def test_a_flow_from_a_vertex_to_itself_costs_nothing_in_both_simulations():
    """A reviewer's find: such a flow (no link on its path) crashed the filling with numpy's
    'zero-size array' error; the collectives drop them, but the flow simulations are public."""
    real = Flow("n0.gpu0", "n1.gpu3", 1e9)
    self_flow = Flow("n0.gpu0", "n0.gpu0", 1e9)
    assert simulate_flows([self_flow], H2) == 0.0
    assert simulate_flows([self_flow, real], H2) == simulate_flows([real], H2)
    with pytest.raises(ValueError, match="itself"):
        max_min_rates([self_flow, real], H2)

    def des_finish(flows: list[Flow]) -> float:
        env = simpy.Environment()
        net = FluidNetwork(env, H2)
        done = net.transfer(flows)
        env.run()
        assert done.triggered
        return env.now

    assert des_finish([self_flow]) == 0.0
    assert des_finish([self_flow, real]) == des_finish([real]) == simulate_flows([real], H2)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="bad flow"):
            des_finish([Flow("n0.gpu0", "n1.gpu3", bad)])


def test_rail_optimized_traffic_stays_on_its_rail_under_flows():
    """PXN: a GPU's traffic for another rail crosses NVLink to the peer on that rail, so a tapered
    spine between rails costs an all-to-all or a ring nothing (a tester found a lone all-to-all 7x
    slower under flows at 8:1 than at 1:1, the analytic figure unchanged). The ring's exit hands its
    bytes over NVLink too, which the analytic ring stage charges (all of a rank's bytes on NVLink)."""
    rails = ("cluster.scale_out.topology=rail_optimized", "cluster.scale_out.tiers=2")
    full = topo("dgx-h100", 2, *rails, "cluster.scale_out.oversubscription=1")
    tapered = topo("dgx-h100", 2, *rails, "cluster.scale_out.oversubscription=8")
    a2a = op_(CollectiveOp.ALL_TO_ALL, tuple(range(16)), 64 * MiB)
    assert collective_time_flows_s(a2a, tapered) == pytest.approx(collective_time_flows_s(a2a, full))
    assert collective_time_flows_s(a2a, tapered) == pytest.approx(collective_time_s(a2a, tapered))
    ring = op_(CollectiveOp.REDUCE_SCATTER, tuple(range(16)), 64 * MiB)
    flows = collective_time_flows_s(ring, tapered, "ring_reduce_scatter")
    assert flows == pytest.approx(collective_time_flows_s(ring, full, "ring_reduce_scatter"))
    analytic = collective_time_s(ring, tapered, "ring_reduce_scatter")
    assert flows == pytest.approx(analytic, rel=1e-6)  # the hand-over at the NVLink level's efficiency

    def nvlink_bytes(t: Topology) -> float:
        (stage,) = REGISTRY["ring_reduce_scatter"].stages(ring, group_layout(ring.group, t))
        return stage.levels[Level.INTRA].bytes

    assert nvlink_bytes(tapered) == pytest.approx(nvlink_bytes(H2) * 8 / 7)


@pytest.mark.parametrize("oversubscription", [2, 4])
def test_oversubscribed_leaves_bound_the_analytic_figure_as_they_do_the_flows(oversubscription):
    """The analytic network figure takes each algorithm's transfers through the leaves' uplinks (a
    tester found a cap at the bisection's share that charged a ring as an all-to-all, 2x too slow
    at 4:1, and missed a leaf of two nodes behind four uplinks: 2:1 and 4:1 costed the same)."""
    t = topo("dgx-h100", 8, f"cluster.scale_out.oversubscription={oversubscription}")
    full = topo("dgx-h100", 8)
    group = tuple(range(64))
    a2a = op_(CollectiveOp.ALL_TO_ALL, group, 256 * MiB)
    ring = op_(CollectiveOp.ALL_REDUCE, group, 256 * MiB)
    for op, algorithm in ((a2a, None), (ring, "ring")):
        analytic = collective_time_s(op, t, algorithm)
        assert analytic == pytest.approx(collective_time_flows_s(op, t, algorithm), rel=1e-6)
        assert analytic >= collective_time_s(op, full, algorithm)
    assert collective_time_s(a2a, t) > collective_time_s(a2a, full)
    tree = op_(CollectiveOp.ALL_REDUCE, group, 256 * MiB)
    assert collective_time_s(tree, t, "tree") <= collective_time_flows_s(tree, t, "tree") * (1 + 1e-9)


def test_the_leaves_uplinks_set_the_all_to_all_and_a_ring_crosses_leaves_once():
    # 8 nodes on two leaves of 4 either way: at 4:1 each leaf has half the uplinks it has at 2:1
    # (ceil(32 / 4) = 8 against 16), and the all-to-all's half that crosses them takes twice as
    # long. Filled one by one, 4:1 had left 2 nodes on a leaf of their own, with 4 uplinks.
    half = topo("dgx-h100", 8, "cluster.scale_out.oversubscription=2")
    quarter = topo("dgx-h100", 8, "cluster.scale_out.oversubscription=4")
    a2a = op_(CollectiveOp.ALL_TO_ALL, tuple(range(64)), 256 * MiB)
    assert collective_time_s(a2a, quarter) == pytest.approx(2 * collective_time_s(a2a, half), rel=0.02)
    # 16 nodes at 4:1 fill one leaf: a ring's neighbours share it but for two hops, so the NICs bind.
    t = topo("dgx-h100", 16, "cluster.scale_out.oversubscription=4")
    ring = op_(CollectiveOp.ALL_REDUCE, tuple(range(128)), 256 * MiB)
    flat = topo("dgx-h100", 16)
    assert collective_time_s(ring, t, "ring") < 1.2 * collective_time_s(ring, flat, "ring")


@pytest.mark.parametrize("system", ["hgx-h100-4gpu", "dgx-1-v100"])
def test_ring_channels_across_nodes_use_every_ring_of_a_mesh(system):
    """Across nodes the ring's channels follow the mesh's fastest rings in turn, as the analytic
    figure counts them (a tester found the flows on the first ring alone: 1.27x slower)."""
    t = topo(system, 2)
    ring = op_(CollectiveOp.ALL_REDUCE, tuple(range(2 * t.system.node.num_accelerators)), 256 * MiB)
    assert collective_time_flows_s(ring, t, "ring") == pytest.approx(
        collective_time_s(ring, t, "ring"), rel=1e-6
    )


def test_collnet_runs_its_node_part_as_nvls_where_that_is_faster():
    """NCCL pairs SHARP with NVLS on Hopper: the node's part reduced in the NVSwitch moves
    S (local+1)/local each way instead of a ring's 2 (local-1)/local x S. A tester found CollNet on
    H100 no faster than ring or tree. Small buffers too: NCCL 2.20.3's multi-node NVLS network row
    (hwLat NET NVLS 18 us once) is below CollNet Direct's (31 us + 0.4 us per local peer each way)."""
    big = op_(CollectiveOp.ALL_REDUCE, tuple(range(16)), 256 * MiB)
    cost = collective_cost(big, H2, "collnet")
    assert cost.protocol == "nvls"
    assert cost.time_s < 0.9 * collective_time_s(big, H2, "ring")
    assert collective_time_flows_s(big, H2, "collnet") == pytest.approx(cost.time_s, rel=1e-6)
    chips = {f.dst for f in collective_flows(big, H2, "collnet") if "nvsw" in f.dst}
    assert chips == {f"n{n}.nvsw{k}" for n in range(2) for k in range(4)}
    small = op_(CollectiveOp.ALL_REDUCE, tuple(range(16)), 1 * MiB)
    assert collective_cost(small, H2, "collnet").protocol == "nvls"
    # Without in-switch reduction there is no NVLS part.
    plain = topo("dgx-h100", 2, "node.scale_up.switch.in_network_reduction=false")
    assert collective_cost(big, plain, "collnet").protocol != "nvls"


def test_gpus_without_a_direct_nvlink_talk_through_one_gpu_over_nvlink():
    """NCCL's NVB paths (``NCCL_NVB_DISABLE=0``, the default since 2.11): DGX-1's GPU 0 reaches GPU 5,
    6 and 7 (no NVLink of their own) through one neighbour over NVLink, the widest and then the
    lowest-numbered, not over PCIe and the sockets' link (15.75 GB/s where 25-50 GB/s is there). A
    TF2 DLRM on 8 V100s (DeepLearningExamples, 6.31M samples/s with AMP) was predicted at 4.5M,
    8.5 ms of its 14.5 ms step in the all-to-all; now 2.5 ms."""
    t = topo("dgx-1-v100")
    assert t.route("n0.gpu0", "n0.gpu5").paths == (("n0.gpu0", "n0.gpu1", "n0.gpu5"),)
    assert t.route("n0.gpu0", "n0.gpu7").paths == (("n0.gpu0", "n0.gpu4", "n0.gpu7"),)
    assert t.route("n0.gpu0", "n0.gpu7").bandwidth_bytes_per_s == 50e9
    for j in range(1, 8):
        (path,) = t.route("n0.gpu0", f"n0.gpu{j}").paths
        assert len(path) <= 3 and all(t.graph.edges[e]["kind"] == "nvlink" for e in itertools.pairwise(path))
    # A relay carries its own traffic and the relayed: the all-to-all's busiest link says so in both
    # fidelities; NVSwitch systems have no such paths.
    a2a = op_(CollectiveOp.ALL_TO_ALL, tuple(range(8)), 64 * MiB)
    assert collective_time_flows_s(a2a, t) == pytest.approx(collective_time_s(a2a, t), rel=1e-9)
    assert collective_time_s(a2a, t) < 2e-3
    assert all(len(p) == 3 for j in range(1, 8) for p in H1.route("n0.gpu0", f"n0.gpu{j}").paths)


@pytest.mark.parametrize("algorithm", ["ring", "tree", "collnet"])
def test_without_nvlink_a_gpus_network_bytes_share_its_pcie_link_in_both_fidelities(algorithm):
    """On a PCIe-only server a channel's exit sends to its NIC over the PCIe link it sends its
    peers on: the stages charged only the peers' share ((local-1)/local), 10 % under the flows at
    64 MiB over two nodes (a fuzzer's find: DES slower than analytic with nothing else running)."""
    t = topo("h100-pcie-server", 2)
    op = op_(CollectiveOp.ALL_REDUCE, tuple(range(16)), 64 * MiB)
    assert collective_time_s(op, t, algorithm) == pytest.approx(
        collective_time_flows_s(op, t, algorithm), rel=0.03
    )


@pytest.mark.parametrize("group", [(0, 8), (0, 8, 9, 10, 11), tuple(range(0, 64, 8))])
def test_a_tree_over_nodes_holding_one_member_moves_its_bytes(group):
    """A node with one member has one "ring" of itself at an infinite rate: the chains' split was
    taken from the first node's rings, inf / inf, and every flow carried NaN bytes (DES then dropped
    the tree's traffic silently; a reviewer's find)."""
    t = topo("dgx-h100", 8)
    op = op_(CollectiveOp.ALL_REDUCE, group, 64 * MiB)
    flows = collective_flows(op, t, "tree")
    assert flows and all(0 < f.bytes <= 64 * MiB for f in flows)
    assert collective_time_flows_s(op, t, "tree") == pytest.approx(collective_time_s(op, t, "tree"), rel=1e-6)


@pytest.mark.parametrize("group", [(0, 1, 4), (0, 3, 4), (0, 1, 3, 5)])
def test_a_tree_whose_chain_edges_cross_another_gpu_is_charged_their_shared_links(group):
    """No NVLink ring runs through these DGX-1 members: a chain edge (1 -> 4) is a route through
    GPU 0, sharing its links with the edge 0 -> 1. Charged at each edge's own route, the tree came
    out at half its flows' time and won over the ring (a reviewer's find)."""
    op = op_(CollectiveOp.ALL_REDUCE, group, 64 * MiB)
    assert collective_time_s(op, V1, "tree") == pytest.approx(
        collective_time_flows_s(op, V1, "tree"), rel=1e-6
    )
    assert choose_algorithm(op, V1)[0] == "ring"


@st.composite
def capped_flow_sets(draw: st.DrawFn) -> list[Flow]:
    """``flow_sets`` with some flows capped (``Flow.cap_bytes_per_s``) at a fraction of their
    route's bandwidth, some uncapped, in two groups, some without bytes."""
    flows = draw(flow_sets())
    out = []
    for f in flows:
        fraction = draw(st.sampled_from([math.inf, 0.05, 0.3, 0.9, 1.5]))
        cap = fraction * H2.route(f.src, f.dst).bandwidth_bytes_per_s
        size = draw(st.sampled_from([0.0, 1e6, 1e9]))
        out.append(replace(f, bytes=size, group=draw(st.sampled_from("ab")), cap_bytes_per_s=cap))
    return out


@settings(max_examples=30, deadline=None)
@given(capped_flow_sets())
def test_capped_flows_keep_their_caps_and_links_and_both_fluid_networks_agree(flows):
    """A capped flow's link of its own (``with_own_links``) bounds it and nothing else: no flow above
    its cap, no link above its capacity, each capped flow at least its wire bytes / cap late, and the
    DES network (``FluidNetwork``, a transfer per group) ends each group when
    ``simulate_flows_detailed`` does."""
    alloc = max_min_rates(flows, H2)
    for f, wire in zip(flows, alloc.wire_rates, strict=True):
        assert wire <= f.cap_bytes_per_s * (1 + 1e-9)
    for edge, load in alloc.edge_load.items():
        assert load <= alloc.capacity[edge] * (1 + 1e-9)
    result = simulate_flows_detailed(flows, H2)
    for f, end in zip(flows, result.flow_finish_s, strict=True):
        assert end >= f.wire_bytes / f.cap_bytes_per_s * (1 - 1e-9)
    env = simpy.Environment()
    net = FluidNetwork(env, H2)
    ends: dict[str, float] = {}

    def watch(group: str):
        yield net.transfer([f for f in flows if f.group == group])
        ends[group] = env.now

    for group in sorted({f.group for f in flows}):
        env.process(watch(group))
    env.run()
    assert ends.keys() == result.group_finish_s.keys()
    for group, end in ends.items():
        assert end == pytest.approx(result.group_finish_s[group], rel=1e-9, abs=1e-15)
