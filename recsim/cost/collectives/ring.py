"""Ring algorithms: all-reduce, reduce-scatter, all-gather, and the pipelined chain (broadcast, reduce).

NCCL's ring visits the ranks node by node (one entry and one exit per node). Data of ``S`` bytes is
cut into ``n`` blocks; all-reduce is a reduce-scatter (``n-1`` steps) then an all-gather (``n-1``
steps), each step moving one block (``S/n``) from every rank to its successor, so a rank sends
``2(n-1)/n x S`` over its outgoing link; reduce-scatter and all-gather send ``(n-1)/n`` of the full
buffer. Across nodes NCCL runs one ring per channel and spreads the channels over the node's NICs,
so the node's bytes into the network (``2(n-1)/n x S`` for all-reduce, summed over channels) go over
all of its NICs together (``GroupLayout.node_nic_bandwidth``). Steps: ``2(n-1)`` for all-reduce of
which ``2(nodes-1)`` cross the network (NCCL's ``nsteps``/``nInterSteps``).

Flows: one ring per channel (``channels = ranks per node`` when the ring crosses nodes, each channel
entering every node at a different accelerator so that every NIC carries one channel; inside one
node the node's rings: one through NVSwitch, where all rings use the same links, several on an
NVLink mesh, with data in proportion to their rates), one phase per step.

Broadcast and reduce run as a pipelined chain from/to the root (``group[0]``): every rank receives
and forwards ``S``; ``n-1`` pipeline hops.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from recsim.cost.collectives.base import (
    Algorithm,
    Flow,
    FlowList,
    GroupLayout,
    LevelCost,
    Stage,
    Traffic,
    first,
    levels,
    register,
)
from recsim.graph.ir import Collective, CollectiveOp


def ring_stage(
    name: str, layout: GroupLayout, rank_bytes: float, steps: int, inter_steps: int, phases: int
) -> Stage:
    """A ring stage: every rank sends ``rank_bytes``; each node sends the same into the network.

    Across nodes each accelerator is the exit of one channel in ``local``, whose bytes leave over
    its NIC instead of NVLink: its NVLink port carries ``(local - 1) / local`` of ``rank_bytes``;
    where the exit hands its bytes over NVLink to the NIC on the next node's rail (PXN,
    ``relays_between_nodes``), every byte crosses NVLink, and on a node without NVLink (PCIe
    only) every byte crosses the GPU's PCIe link, to a peer or to the NIC.
    """
    intra = None
    if layout.local >= 2:
        share = 1.0
        if layout.num_nodes >= 2 and layout.pcie_only:
            # Without a scale-up fabric (PCIe), a channel's exit sends to its NIC over the same PCIe
            # link it sends its peers on: every byte crosses that link, the exit's at the link's
            # own rate and the network's efficiency (``GroupLayout.pcie_exit_weight``).
            share = (layout.local - 1 + layout.pcie_exit_weight) / layout.local
            if layout.staged:
                # Ring neighbours through host memory (NCCL's SHM): the rank's link carries its
                # plain bytes at the links' rate, and each neighbour pair, used by local - 1 of the
                # local channels, moves no faster than its route (its staging: the ring's rate).
                links_s = rank_bytes * (layout.local - 1 + layout.unstaged_exit_weight) / layout.local
                links_s /= layout.unstaged_intra_bandwidth
                pair_s = rank_bytes * (layout.local - 1) / layout.local / layout.intra_bandwidth
                moved = rank_bytes * share
                rate = moved / max(links_s, pair_s) if moved > 0 else layout.intra_bandwidth
                intra = LevelCost(steps - inter_steps, moved, rate)
        elif layout.num_nodes >= 2 and not relays_between_nodes(layout):
            share = (layout.local - 1) / layout.local
        if intra is None:
            intra = LevelCost(steps - inter_steps, rank_bytes * share, layout.intra_bandwidth)
    inter = None
    if layout.num_nodes >= 2:
        inter = LevelCost(inter_steps, rank_bytes, layout.node_nic_bandwidth)
    return Stage(name, levels(intra, inter), phases)


def channel_rings(layout: GroupLayout) -> list[tuple[list[int], float]]:
    """(group positions in ring order, share of the data) of each channel's ring.

    Inside one node: the node's rings (``GroupLayout.node_rings``; several on an NVLink mesh),
    each carrying data in proportion to its rate. Across nodes: ``local`` channels; channel ``c``
    visits each node's members in the order of its ring ``c`` mod (its rings) rotated by ``c``, so
    it leaves every node from a different accelerator (and NIC); a ring's channels share its part
    of the data (equal parts with one ring).
    """
    if layout.num_nodes == 1:
        (node,) = layout.by_node
        rings = layout.node_rings(node)
        total = sum(bw for _, bw in rings)
        return [(order, bw / total) for order, bw in rings]
    count = layout.local
    # Channel c follows each node's ring c mod (its fastest rings): NCCL's search gives every
    # channel one speed and splits the data equally, so on an NVLink mesh the channels spread over
    # the rings as fast as the first (both directions of a 4-GPU board's mesh), one ring (NVSwitch,
    # PCIe) taking them all.
    rings = [
        [order for order, bw in found if bw >= found[0][1]]
        for found in map(layout.node_rings, layout.by_node)
    ]
    out = []
    for c in range(count):
        ring: list[int] = []
        for orders in rings:
            ps = orders[c % len(orders)]
            k = c % len(ps)
            ring += ps[k:] + ps[:k]
        out.append((ring, 1.0 / count))
    return out


def relays_between_nodes(layout: GroupLayout) -> bool:
    """Whether some channel's hop from one node to the next is relayed over NVLink by a peer of the
    exit accelerator (``Topology``'s PXN route: its node's NIC on the entry's rail is nearer the
    entry's NIC than the exit's own, as on a rail-optimized fabric). Each accelerator is the exit of
    one channel, so then the busiest NVLink port carries all of a rank's bytes. The hops between
    the first two nodes stand for the others (every node is wired alike)."""
    if layout.num_nodes < 2:
        return False
    nodes, topology = layout.nodes, layout.topology
    for ring, _ in channel_rings(layout):
        k = next(i for i in range(len(ring)) if nodes[ring[i]] != nodes[ring[i + 1]])
        src, dst = layout.vertices[ring[k]], layout.vertices[ring[k + 1]]
        if topology.first_hop(src, dst) != src:
            return True
    return False


def ring_flows(layout: GroupLayout, block_bytes: float, phases: int) -> list[Flow]:
    """``phases`` steps; each step every rank sends one block (split over channels) to its successor."""
    out = FlowList()
    for ring, share in channel_rings(layout):
        pairs = list(zip(ring, ring[1:] + ring[:1], strict=True))
        for p in range(phases):
            for a, b in pairs:
                out.add(layout.vertices[a], layout.vertices[b], block_bytes * share, p)
    return out.flows()


def ring_pair_bytes(layout: GroupLayout, block_bytes: float, phases: int) -> dict[tuple[str, str], float]:
    """What ``ring_flows`` carries between vertices over all its phases (each the same): every
    channel's hop ``phases`` blocks, channels that share a hop summed, without a flow per phase."""
    out: dict[tuple[str, str], float] = {}
    vertices = layout.vertices
    for ring, share in channel_rings(layout):
        for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
            if a != b and block_bytes * share > 0:  # as ``FlowList.add``
                key = (vertices[a], vertices[b])
                out[key] = out.get(key, 0.0) + block_bytes * share * phases
    return out


def ring_traffic(layout: GroupLayout, block_bytes: float, phases: int) -> Traffic:
    """What ``ring_flows`` carries between positions over all its phases (each the same), without a
    flow per phase: one entry per channel hop, ``phases`` blocks each."""
    src: list[int] = []
    dst: list[int] = []
    sizes: list[float] = []
    for ring, share in channel_rings(layout):
        for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
            src.append(a)
            dst.append(b)
            sizes.append(block_bytes * share * phases)
    return Traffic(np.asarray(src, dtype=np.intp), np.asarray(dst, dtype=np.intp), np.asarray(sizes))


@register
class RingAllReduce(Algorithm):
    name = "ring"
    ops = frozenset({CollectiveOp.ALL_REDUCE, CollectiveOp.BARRIER})

    def stages(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Stage]:
        n = layout.n
        if n < 2:
            return []
        size = _payload(first(op))
        steps = 2 * (n - 1)
        return [ring_stage("ring", layout, 2 * (n - 1) / n * size, steps, 2 * (layout.num_nodes - 1), steps)]

    def flows(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Flow]:
        n = layout.n
        if n < 2:
            return []
        return ring_flows(layout, _payload(first(op)) / n, 2 * (n - 1))

    def traffic(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, stages: Sequence[Stage]
    ) -> list[Traffic]:
        n = layout.n
        return [ring_traffic(layout, _payload(first(op)) / n, 2 * (n - 1))]

    def pair_bytes(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, protocol: str
    ) -> dict[tuple[str, str], float]:
        n = layout.n
        return ring_pair_bytes(layout, _payload(first(op)) / n, 2 * (n - 1)) if n >= 2 else {}


class _RingPass(Algorithm):
    """``n - 1`` ring steps, each moving one ``chunk`` per rank (reduce-scatter, all-gather)."""

    def chunk(self, op: Collective, n: int) -> float:
        raise NotImplementedError  # pragma: no cover - each subclass says its chunk

    def stages(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Stage]:
        n = layout.n
        if n < 2:
            return []
        chunk = self.chunk(first(op), n)
        return [ring_stage("ring", layout, (n - 1) * chunk, n - 1, layout.num_nodes - 1, n - 1)]

    def flows(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Flow]:
        n = layout.n
        if n < 2:
            return []
        return ring_flows(layout, self.chunk(first(op), n), n - 1)

    def traffic(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, stages: Sequence[Stage]
    ) -> list[Traffic]:
        n = layout.n
        return [ring_traffic(layout, self.chunk(first(op), n), n - 1)]

    def pair_bytes(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, protocol: str
    ) -> dict[tuple[str, str], float]:
        n = layout.n
        return ring_pair_bytes(layout, self.chunk(first(op), n), n - 1) if n >= 2 else {}


@register
class RingReduceScatter(_RingPass):
    """``bytes`` is each rank's input (the whole buffer); each keeps ``bytes / n``."""

    name = "ring_reduce_scatter"
    ops = frozenset({CollectiveOp.REDUCE_SCATTER})

    def chunk(self, op: Collective, n: int) -> float:
        return op.bytes / n


@register
class RingAllGather(_RingPass):
    """``bytes`` is each rank's input (its shard); each ends with ``n x bytes``."""

    name = "ring_all_gather"
    ops = frozenset({CollectiveOp.ALL_GATHER})

    def chunk(self, op: Collective, n: int) -> float:
        return op.bytes


@register
class RingChain(Algorithm):
    """Broadcast from / reduce to ``group[0]`` along the ring, pipelined in chunks."""

    name = "ring_chain"
    ops = frozenset({CollectiveOp.BROADCAST, CollectiveOp.REDUCE})

    def stages(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Stage]:
        n = layout.n
        if n < 2:
            return []
        size = first(op).bytes
        return [ring_stage("chain", layout, size, n - 1, layout.num_nodes - 1, 1)]

    def flows(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Flow]:
        n = layout.n
        if n < 2:
            return []
        o = first(op)
        out = FlowList()
        for ring, share in channel_rings(layout):
            # NCCL's ring broadcast: the channel's ring read from the root on; the root's
            # predecessor is the end of the chain.
            k = ring.index(0)
            chain = ring[k:] + ring[:k]
            for a, b in itertools.pairwise(chain):
                src, dst = (a, b) if o.op is CollectiveOp.BROADCAST else (b, a)
                out.add(layout.vertices[src], layout.vertices[dst], o.bytes * share, 0)
        return out.flows()


def _payload(op: Collective) -> float:
    """A barrier moves no data (it is a zero-byte all-reduce in NCCL)."""
    return 0.0 if op.op is CollectiveOp.BARRIER else op.bytes
