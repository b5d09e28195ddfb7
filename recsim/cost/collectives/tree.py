"""Double binary tree all-reduce (NCCL's ``Tree``): chains inside nodes, two binary trees across them.

Across nodes NCCL builds two binary trees over the nodes such that a node that is interior in one
is a leaf in the other; each tree reduces half the data up to its root and broadcasts it back down,
pipelined in chunks, so both directions of every link are busy at once. A node sends ``S/2`` on
every tree edge it has (up to ``2S``: interior in one tree, one parent and two children, leaf in the
other; ``tree_degree``), spread over its NICs by channels like the ring. Inside a node the ranks
form a chain; a middle rank forwards the reduction up and the broadcast down, ``2S`` out of its
NVLink port (across nodes each rank holds every chain position once over the channels, which
averages to ``2 (local-1)/local x S``). On an NVLink mesh a middle rank's up and down take
different links: the chains follow the node's rings (``_chain_channels``) and the busiest link sets
the time (``_busiest_chain_link``). Without NVLink the heads' network bytes cross the same PCIe
link as the chain's. Latency is what makes it worth having: ``2 (local - 1)`` intra-node plus
``2 ceil(log2 nodes)`` network steps instead of the ring's ``2 (n - 1)`` (NCCL's tuning model
counts them the same way). Inside one node it costs the ring's steps and more bytes, and the
automatic choice never takes it there (``auto_for``: NCCL's tuner does not), even where a staged
pair's per-direction cap would let its chain finish first; asked for by name, it runs.

Flows: the chains of ``_chain_channels`` (``local`` channels across nodes, as the ring's), both
trees, one pipelined phase: every tree edge carries half its channel's share each way, every chain
edge the share.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from recsim.cost.collectives.base import (
    Algorithm,
    Flow,
    FlowList,
    GroupLayout,
    LevelCost,
    Stage,
    first,
    levels,
    register,
    route,
    route_edge_shares,
)
from recsim.cost.collectives.ring import _payload
from recsim.graph.ir import Collective, CollectiveOp


def binary_tree_edges(count: int, mirror: bool) -> list[tuple[int, int]]:
    """(child, parent) pairs of a heap-ordered binary tree over ``count`` nodes (or its mirror,
    ``i -> count - 1 - i``, whose leaves are the first tree's interior nodes)."""
    edges = []
    for i in range(1, count):
        child, parent = i, (i - 1) // 2
        if mirror:
            child, parent = count - 1 - child, count - 1 - parent
        edges.append((child, parent))
    return edges


def tree_degree(count: int) -> int:
    """Most tree edges at one node over both trees (parent and children): it sends ``S/2`` on each."""
    degree = [0] * count
    for mirror in (False, True):
        for child, parent in binary_tree_edges(count, mirror):
            degree[child] += 1
            degree[parent] += 1
    return max(degree)


def _chain_channels(layout: GroupLayout) -> list[tuple[list[list[int]], float]]:
    """(each node's chain, share of the data) per channel, as the stages cost them.

    The chains follow each node's rings (``GroupLayout.node_rings``; several on an NVLink mesh),
    each ring carrying data in proportion to its rate: the stage's bandwidth is the rings' sum.
    Across nodes each ring's part is cut over ``local`` channels, channel ``k`` rotated by ``k``
    so that every rank heads one (is each chain position once) and the nodes' NICs share the
    trees' traffic evenly, as the ring's channels leave each node from a different accelerator
    (``ring.channel_rings``).
    """
    per_node = [layout.node_rings(node) for node in layout.by_node]
    count = layout.local if layout.num_nodes > 1 else 1
    # The rings of a node with the most members set the data's split (a node of one member has
    # one "ring" of itself, at an infinite rate: no split to take from it).
    reference = max(per_node, key=lambda rings: len(rings[0][0]))
    if len(reference[0][0]) < 2:
        reference = [(reference[0][0], 1.0)]
    total = sum(rate for _, rate in reference)
    out = []
    for r, (_, bw) in enumerate(reference):
        for k in range(count):
            chains = []
            for rings in per_node:
                ps = rings[r % len(rings)][0]
                chains.append(ps[k % len(ps) :] + ps[: k % len(ps)])
            out.append((chains, bw / total / count))
    return out


def _chain_pair_load(layout: GroupLayout, size: float) -> dict[tuple[int, int], float]:
    """The bytes each ordered pair of group positions carries in the chains inside the nodes: each
    chain edge its channel's share of ``size`` each way (reduce up, broadcast down)."""
    pair_load: dict[tuple[int, int], float] = {}
    for orders, share in _chain_channels(layout):
        for chain in orders:
            for a, b in itertools.pairwise(chain):
                for pair in ((a, b), (b, a)):
                    pair_load[pair] = pair_load.get(pair, 0.0) + size * share
    return pair_load


def _busiest_staged_pair(layout: GroupLayout, pair_load: dict[tuple[int, int], float]) -> tuple[float, float]:
    """(bytes, rate) of the busiest pair of ``pair_load`` through host memory (NCCL's SHM,
    ``Topology.shm_pair``) at its staging's rate, its route's bandwidth (``Flow.cap_bytes_per_s``):
    the first of the longest; (0, inf) if none."""
    topology = layout.topology
    worst, worst_s = (0.0, math.inf), -1.0
    for (a, b), nbytes in pair_load.items():
        va, vb = layout.vertices[a], layout.vertices[b]
        if topology.shm_pair(va, vb):
            staged = route(topology, va, vb).bandwidth_bytes_per_s
            if nbytes / staged > worst_s:
                worst, worst_s = (nbytes, staged), nbytes / staged
    return worst


def _busiest_staged_pair_s(layout: GroupLayout, size: float) -> float:
    """How long the chains' busiest pair through host memory takes at its staging's rate
    (``_busiest_staged_pair``); 0 if none."""
    nbytes, rate = _busiest_staged_pair(layout, _chain_pair_load(layout, size))
    return nbytes / rate


def _busiest_chain_link(layout: GroupLayout, size: float, steps: int) -> LevelCost:
    """The chains' bytes on their busiest link inside a node, as the flows carry them: each chain
    edge carries its channel's share of ``size`` each way (reduce up, broadcast down), summed over
    the channels, and spread over the edge's route (its equal-cost paths, in proportion to each
    path's weakest link): where no ring runs over direct links, a chain edge is a route through
    another GPU, whose links it shares with other edges (a reviewer's find: charged at its own
    route's rate, such a tree came out at half its flows' time and won over the ring)."""
    pair_load = _chain_pair_load(layout, size)
    topology = layout.topology
    succ = topology.graph._succ
    # Per link: the bytes. A pair through host memory (NCCL's SHM, ``Topology.shm_pair``) puts its
    # plain bytes on each link and is bounded on its own by its staging, at its route's bandwidth
    # (``SHM_EFFICIENCY`` of the links': ``Flow.cap_bytes_per_s``, as the flows carry it).
    edge_load: dict[tuple[str, str], float] = {}
    worst, worst_s = (0.0, layout.intra_bandwidth), -1.0
    staged_bytes, staged = _busiest_staged_pair(layout, pair_load)
    if math.isfinite(staged):
        worst, worst_s = (staged_bytes, staged), staged_bytes / staged
    for (a, b), nbytes in pair_load.items():
        va, vb = layout.vertices[a], layout.vertices[b]
        for edge, share in route_edge_shares(topology, va, vb):
            edge_load[edge] = edge_load.get(edge, 0.0) + nbytes * share
    for (u, v), moved in edge_load.items():
        seconds = moved / succ[u][v]["bandwidth_bytes_per_s"]
        if seconds > worst_s:
            worst, worst_s = (moved, moved / seconds if seconds > 0 else layout.intra_bandwidth), seconds
    return LevelCost(steps, worst[0], worst[1])


@register
class DoubleBinaryTreeAllReduce(Algorithm):
    name = "tree"
    ops = frozenset({CollectiveOp.ALL_REDUCE, CollectiveOp.BARRIER})

    def auto_for(self, op: Collective, layout: GroupLayout) -> bool:
        # NCCL's tuner never picks Tree inside one node (it still runs when asked for by name):
        # its model (src/graph/tuning.cc, ncclTopoTuneModel) counts 2 (n - 1) intra-node steps
        # for either on one node, at per-step latencies (hwLat) no lower for Tree, and converts
        # bus to algorithm bandwidth with ``ratio = (a != NCCL_ALGO_RING) ? .5 : nRanks / nsteps``,
        # 0.5 for Tree against n / (2 (n - 1)) for Ring, Tree's bus bandwidth also capped at 0.92
        # of the graph's: Ring wins at every size on the same graph. recsim's own
        # chain can come out ahead where a pair's per-direction cap is the limit (a PCIe node
        # whose pairs stage through host memory: a chain sends S each way on a pair, a ring
        # 2 (n - 1) / n S one way), but NCCL would not run it there: on MLPerf v3.1's 8 x H100
        # PCIe server the case is -1.2 % with the ring, +9.5 % had the chain been chosen.
        return self.auto and len(set(layout.nodes)) >= 2

    def stages(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Stage]:
        if layout.n < 2:
            return []
        size = _payload(first(op))
        intra = None
        if layout.local >= 2:
            # A middle rank of a chain forwards S up and S down; across nodes every rank is each
            # chain position once over the ``local`` channels, which averages to 2 (local-1)/local.
            # A chain of two has no middle: each end sends S (up, or back down).
            local = layout.local
            share = (local - 1) / local if layout.num_nodes >= 2 or local == 2 else 1.0
            rank_bytes = 2 * size * share
            peer_bytes = rank_bytes
            exit_bytes = 0.0
            if layout.pcie_only and layout.num_nodes >= 2:
                # The heads' tree traffic leaves over the same PCIe link: 1/local of it a rank.
                exit_bytes = size / 2 * tree_degree(layout.num_nodes) / local
                rank_bytes += exit_bytes * layout.pcie_exit_weight
            intra = LevelCost(2 * (local - 1), rank_bytes, layout.intra_bandwidth)
            if layout.pcie_only and layout.num_nodes >= 2 and layout.staged:
                # Chain neighbours through host memory (NCCL's SHM): the rank's PCIe link carries
                # its plain bytes at the links' rate, and each staged pair moves no faster than its
                # staging (``_busiest_staged_pair_s``).
                exit_load = exit_bytes * layout.unstaged_exit_weight
                links_s = (peer_bytes + exit_load) / layout.unstaged_intra_bandwidth
                pair_s = _busiest_staged_pair_s(layout, size)
                if max(links_s, pair_s) > 0:
                    intra = LevelCost(2 * (local - 1), rank_bytes, rank_bytes / max(links_s, pair_s))
            if layout.fabric == "nvlink_mesh" or (layout.pcie_only and layout.num_nodes == 1):
                # On a mesh a middle rank's up and down go over different links: each chain link
                # carries its channel's share both ways, and the busiest link sets the time (the
                # rank's two sends at the rings' summed rate overcharged a 3-GPU chain 2x, and a
                # pair of reversed rings shares its links; a reviewer's find). On a PCIe node, a
                # chain's hops share switch uplinks and, where peers talk through host memory
                # (SHM), run at different rates: the slowest ring pair's rate for every hop
                # overcharged a chain with a same-switch hop by up to 32 % (a reviewer's find).
                intra = _busiest_chain_link(layout, size, 2 * (local - 1))
        inter = None
        if layout.num_nodes >= 2:
            depth = math.ceil(math.log2(layout.num_nodes))
            inter = LevelCost(2 * depth, size / 2 * tree_degree(layout.num_nodes), layout.node_nic_bandwidth)
        return [Stage("tree", levels(intra, inter), 1)]

    def flows(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Flow]:
        if layout.n < 2:
            return []
        size = _payload(first(op))
        out = FlowList()
        for orders, share in _chain_channels(layout):
            # Each channel carries its share of S; each of the two trees half of that.
            half = size * share / 2
            heads = []
            for ps in orders:
                heads.append(ps[0])  # the node's end of the inter-node trees
                for a, b in zip(ps[1:], ps[:-1], strict=True):
                    v_a, v_b = layout.vertices[a], layout.vertices[b]
                    out.add(v_a, v_b, 2 * half, 0)  # reduce towards the head, both trees
                    out.add(v_b, v_a, 2 * half, 0)  # broadcast back down
            for mirror in (False, True):
                for child, parent in binary_tree_edges(len(orders), mirror):
                    v_c, v_p = layout.vertices[heads[child]], layout.vertices[heads[parent]]
                    out.add(v_c, v_p, half, 0)
                    out.add(v_p, v_c, half, 0)
        return out.flows()
