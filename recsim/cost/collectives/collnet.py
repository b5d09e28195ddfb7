"""CollNet all-reduce: the inter-node part reduced in the InfiniBand switches (SHARP).

NCCL's CollNet algorithms (``NCCL_COLLNET_ENABLE=1`` with the SHARP plugin) split an all-reduce in
three pipelined parts: inside each node the ranks reduce-scatter the buffer over NVLink, so rank
``i`` holds the node's partial sum of shard ``i`` (``S/local``); each rank sends its shard through its
own NIC into the switches' aggregation tree, which adds the shards of all nodes and returns the sum;
inside the node the ranks all-gather the result. Across nodes a node therefore sends ``S`` and
receives ``S`` once (the double binary tree sends up to ``1.5 S``, the ring ``2 (n-1)/n x S``), in
one pass up the switch tree and back, at NCCL 2.20.3's per-call CollNet network latency (its
``hwLat`` NET CollNet rows, below) however many switch links the pass crosses, instead of the
tree's ``2 log2(nodes)`` network steps. Inside a node the reduce-scatter and all-gather move
``2 (local-1)/local x S`` per rank: in one step each way on an NVSwitch (CollNet Direct: every
rank reaches its peers directly), else in ``local - 1`` chain hops each way (CollNet Chain). On an
NVSwitch that reduces in the switch (Hopper's NVLink SHARP) the node's part may run as NVLS
instead, as NCCL 2.18 on pairs it with SHARP (its NVLS algorithm across nodes), where that is
faster (protocol ``nvls``): ``multimem.ld_reduce`` of each rank's shard and the result multicast
back, ``S (local+1)/local`` each way per rank in two steps (``recsim.cost.collectives.nvls``), under
the switch's NVLS constants, the network part Simple's bandwidth at NCCL's multi-node NVLS network
row. A tester found CollNet on H100 no faster than ring or tree: its node part always ran at an
NVLink ring's rate (``2 (local-1)/local x S``); with NVLS it wins from 64 MiB up (and, since NCCL
2.20.3's network rows, NVLS's 18 us against Direct's 36.6 us at 8 a node, at every size).

Available for a group on two or more nodes with the same accelerators on each, whose cluster
switches reduce in the network (``in_network_reduction: true``: SHARPv2/v3 Quantum switches). NCCL
does not use it unless asked (``auto = False``, as its tuner without ``NCCL_COLLNET_ENABLE``); a
framework that enables it asks for it by name (``Runtime``) and falls back to the automatic choice
where it is unavailable. Constants: the network level's calibration (per-call base, efficiency),
the node level's (its fitted steps), and NCCL 2.20.3's CollNet network rows (``_net_latency_s``).
NCCL picks Direct where the node has an NVSwitch (it disables Direct otherwise: tuning.cc,
``nvsCount == 0``; with both enabled its tuner takes the faster, and at 8 ranks a node Direct's
latency, 44.0 us, is 25 us under Chain's 69.2), so Direct on an NVSwitch node, Chain elsewhere.

Flows: one phase; each rank's reduce-scatter and all-gather traffic to its node peers (to and
from the NVSwitch chips under NVLS), and each rank's shard to and from its leaf switch (the
aggregation happens there and above).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from operator import itemgetter

from recsim.cost.collectives.base import (
    NVLS_MIN_GPUS,
    Algorithm,
    Flow,
    FlowList,
    GroupLayout,
    Level,
    LevelCost,
    Stage,
    Traffic,
    first,
    levels,
    register,
    stage_traffic,
)
from recsim.cost.collectives.ring import _payload
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.system import ScaleOut


def _network(layout: GroupLayout) -> ScaleOut | None:
    return layout.topology.system.cluster.scale_out


def _nvls(layout: GroupLayout) -> bool:
    """Whether the nodes' NVSwitches reduce in the switch (NVLS for the part inside a node): more
    than two members a node, as NCCL's ``ncclNvlsInit`` requires (``NVLS_MIN_GPUS``)."""
    up = layout.topology.system.node.scale_up
    return (
        layout.local > NVLS_MIN_GPUS
        and up is not None
        and up.fabric == "nvswitch"
        and up.switch is not None
        and up.switch.in_network_reduction
    )


def _direct(layout: GroupLayout) -> bool:
    """CollNet Direct (every rank reaches its node's peers in one step: an NVSwitch) or Chain."""
    return layout.fabric == "nvswitch"


# NCCL 2.20.3's CollNet latency (src/graph/tuning.cc @ b6475625, ``ncclTopoTuneModel``), in us:
#   Direct: baseLat 0 + 2 (min(1, ppn - 1) hwLat[intra][CollNetDirect] + (ppn - 1) 0.4) + interLat
#   Chain:  baseLat 0 + 2 (ppn - 1) hwLat[intra][CollNetChain] + interLat
#   NVLS (multi-node, NVLS inside and SHARP across): hwLat[NVLINK][NVLS] + interLat
# with ppn = nRanks / nNodes, hwLat[NVLINK] CollNetDirect 3.7, CollNetChain 2.8, NVLS 23 us and
# interLat = hwLat[NET][a][Simple] + 2 latencyInter: CollNetDirect 31, CollNetChain 30, NVLS 18 us
# (latencyInter, the NET plugin's props->latency, is 0 for the built-in IB transport). The network
# part is added once per call, not per switch hop. Here the intra part keeps the node level's
# fitted steps (2 for Direct, 2 (local - 1) for Chain, NVLS's as fitted) and the per-call base stays
# the kernel path's, as for every algorithm (NCCL's baseLat for CollNet is 0, as for Tree Simple):
# the network row, Direct's 0.4 us "arity serialization" per peer each way, are what is taken over.
# Its bandwidth side (same function), not taken over: busBw = nChannels x bwIntra of the CollNet
# graph (the intra bandwidth whatever the node count); Direct all-reduce divides it by the GPU/NIC
# ratio f - (f - 1)/2, f = ppn / nChannels, and on sm90 multiplies it by 0.85; both then x 0.5 to
# algorithm bandwidth (NVLS: min(bwIntra, bwInter), x 5/6); LL and LL128 get 0. Here the bytes
# each level moves (S through a node's NICs, 2 (local-1)/local x S on the node's links) at the
# fitted NIC and NVSwitch rates carry the bandwidth, as for every algorithm; NCCL's channel counts
# and graph bandwidths come from its topology search, which is not modelled.
#: hwLat[NET][CollNetDirect][Simple].
COLLNET_DIRECT_NET_LATENCY_S = 31e-6
#: hwLat[NET][CollNetChain][Simple].
COLLNET_CHAIN_NET_LATENCY_S = 30e-6
#: hwLat[NET][NVLS][Simple]: NCCL's NVLS algorithm across nodes (SHARP for the network part).
NVLS_NET_LATENCY_S = 18e-6
#: CollNet Direct's "arity serialization latency" per local peer, each way (x 2).
COLLNET_DIRECT_ARITY_S = 0.4e-6


def _net_latency_s(layout: GroupLayout, *, nvls: bool) -> float:
    """NCCL 2.20.3's once-per-call network latency of a CollNet all-reduce (see above)."""
    if nvls:
        return NVLS_NET_LATENCY_S
    if _direct(layout):
        return COLLNET_DIRECT_NET_LATENCY_S + 2 * (layout.local - 1) * COLLNET_DIRECT_ARITY_S
    return COLLNET_CHAIN_NET_LATENCY_S


def _leaves(layout: GroupLayout, nic: str) -> list[str]:
    """The network switches ``nic`` is cabled to."""
    graph = layout.topology.graph
    return [w for w in graph.succ[nic] if graph.nodes[w].get("node") is None]


@register
class CollNetAllReduce(Algorithm):
    name = "collnet"
    ops = frozenset({CollectiveOp.ALL_REDUCE})
    # Simple only: NCCL never runs CollNet under LL or LL128 (src/graph/tuning.cc, 2.28:
    # ``if (a == NCCL_ALGO_COLLNET_DIRECT && p != NCCL_PROTO_SIMPLE) busBw = 0; // Not used``, the
    # same for COLLNET_CHAIN; its device table has only the COLLNET_DIRECT_SIMPLE and
    # COLLNET_CHAIN_SIMPLE kernels). ``protocol_names`` adds NVLS for the node's part.
    protocols = ("simple",)
    auto = False

    def unavailable(self, op: Collective, layout: GroupLayout) -> str | None:
        if layout.num_nodes < 2:
            return "CollNet reduces across nodes; the group is on one node"
        if not layout.uniform:
            return "CollNet needs the same local accelerators on every node"
        net = _network(layout)
        if net is None or not net.switch.in_network_reduction:
            return "CollNet needs cluster switches with in_network_reduction: true (SHARP)"
        return None

    def stages(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Stage]:
        if layout.n < 2:
            return []
        size = _payload(first(op))
        local = layout.local
        intra = None
        if local >= 2:
            # CollNet Direct on an NVSwitch node: every rank reads and writes its peers directly, one
            # step each way; elsewhere (CollNet Chain) a chain of local - 1 hops each way.
            hops = 1 if _direct(layout) else local - 1
            rank_bytes = 2 * size * (local - 1) / local
            peer_bytes = rank_bytes
            if layout.pcie_only:  # its shard to the NIC leaves over the same PCIe link
                rank_bytes += size / local * layout.pcie_exit_weight
            intra = LevelCost(2 * hops, rank_bytes, layout.intra_bandwidth)
            if layout.pcie_only and layout.staged:
                # Chain neighbours through host memory (NCCL's SHM): the rank's PCIe link carries
                # its plain bytes at the links' rate, and each ring pair, which carries the rank's
                # peer bytes, moves no faster than its route (its staging: the ring's rate).
                links_s = (
                    peer_bytes + size / local * layout.unstaged_exit_weight
                ) / layout.unstaged_intra_bandwidth
                pair_s = peer_bytes / layout.intra_bandwidth
                if max(links_s, pair_s) > 0:
                    intra = LevelCost(2 * hops, rank_bytes, rank_bytes / max(links_s, pair_s))
        # Up the aggregation tree and down in one pass, at NCCL's per-call CollNet network latency
        # (with Direct's arity serialization), in one trip (a route's latency at least: NIC,
        # switches up and down, NIC).
        net = _net_latency_s(layout, nvls=False)
        inter = LevelCost(1, size, layout.node_nic_bandwidth, trips=1, latency_s=net)
        return [Stage("collnet", levels(intra, inter), 1)]

    # NVLS inside the node is one more way to run it (NCCL's NVLS algorithm with SHARP), chosen
    # where it is faster, as NCCL's tuner chooses: under the "nvls" protocol the node's part is
    # NVLS under the switch's NVLS constants, the network's part Simple (NVLS is a Simple kernel).

    def protocol_names(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> tuple[str, ...]:
        return (*self.protocols, "nvls") if _nvls(layout) else self.protocols

    def protocol_stages(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, protocol: str, stages: list[Stage]
    ) -> list[Stage]:
        if protocol != "nvls" or not stages:
            return stages
        local = layout.local
        # The switch reduces each shard and multicasts the sum: S (local+1)/local each way, 2 steps.
        nvls = LevelCost(2, _payload(first(op)) * (local + 1) / local, layout.intra_bandwidth)
        # NCCL's multi-node NVLS (NVLS inside, SHARP across): its own per-call network row.
        net = _net_latency_s(layout, nvls=True)
        out = []
        for s in stages:
            inter = s.levels.get(Level.INTER)
            new = {**s.levels, Level.INTRA: nvls}
            if inter is not None:
                new[Level.INTER] = replace(inter, latency_s=net)
            out.append(Stage(s.name, new, s.phases))
        return out

    def level_protocol(self, level: Level, protocol: str, layout: GroupLayout) -> str:
        if protocol == "nvls":
            return "nvls" if level is Level.INTRA else "simple"
        return protocol

    def protocol_flows(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, protocol: str
    ) -> list[Flow]:
        return self._flows(op, layout, nvls=protocol == "nvls").flows()

    def flows(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Flow]:
        return self._flows(op, layout, nvls=False).flows()

    def traffic(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, stages: Sequence[Stage]
    ) -> list[Traffic]:
        # ``flows`` gathered by stage (``Algorithm.traffic``), read from the merged entries
        # themselves: the same transfers in the same order, without a ``Flow`` made for each.
        items = self._flows(op, layout, nvls=False).items
        return stage_traffic(
            self.name,
            layout,
            stages,
            len(items),
            map(itemgetter(0), items),
            map(itemgetter(1), items),
            map(itemgetter(2), items),
            items.values(),
        )

    def _flows(self, op: Collective | Sequence[Collective], layout: GroupLayout, *, nvls: bool) -> FlowList:
        out = FlowList()
        if layout.n < 2:
            return out
        size = _payload(first(op))
        direct = _direct(layout)
        for ps in layout.by_node.values():
            local = len(ps)
            if nvls:
                for p in ps:  # to and from the switch chips, in proportion to the GPU's links
                    v = layout.vertices[p]
                    for chip, share in layout.nvswitch_shares(v):
                        out.add(v, chip, size * (local + 1) / local * share, 0)
                        out.add(chip, v, size * (local + 1) / local * share, 0)
            elif direct:
                for a in ps:
                    for b in ps:
                        if a != b:  # reduce-scatter then all-gather: S/local each way per pair
                            out.add(layout.vertices[a], layout.vertices[b], 2 * size / local, 0)
            elif local >= 2:
                # CollNet Chain: the node's rings, each rank passing 2 (local-1)/local x S to its
                # successor, spread over the rings by their rates, as the stage costs it (its
                # ``intra_bandwidth`` is the rings' sum). Pairs on a mesh without a direct link
                # would otherwise relay through a third GPU and share its links.
                rings = layout.node_rings(layout.nodes[ps[0]])
                total = sum(bw for _, bw in rings)
                for order, bw in rings:
                    part = 2 * size * (local - 1) / local * bw / total
                    for a, b in zip(order, order[1:] + order[:1], strict=True):
                        out.add(layout.vertices[a], layout.vertices[b], part, 0)
            for p in ps:
                v = layout.vertices[p]
                nics = layout.home_nics(p)
                for nic in nics:
                    # Up through the NIC into its leaf switch(es), where the aggregation starts,
                    # and the sum back down: the NIC-to-leaf links carry the shard both ways.
                    leaves = _leaves(layout, nic)
                    share = size / local / len(nics) / len(leaves)
                    for leaf in leaves:
                        out.add(v, leaf, share, 0)
                        out.add(leaf, v, share, 0)
        return out
