"""The cluster as a graph: every accelerator, switch, CPU, memory, NIC and SSD, and the links between.

``build_topology(system)`` returns a ``Topology`` wrapping a networkx ``DiGraph``. Each physical
connection is two directed edges (one per direction) carrying ``bandwidth_bytes_per_s`` (per
direction, parallel links aggregated, ``links`` says how many), ``latency_s`` and ``kind``
(``nvlink``, ``pcie``, ``memory``, ``socket``, ``network``). The kind is the link's role, not its
family: ``nvlink`` (``SCALE_UP``) is every scale-up link, AMD's Infinity Fabric as well as NVLink,
``pcie`` every host interface. Switch-like vertices carry their traversal ``latency_s``.

Inside a node: accelerators hang off PCIe switches (or straight off the CPUs), NICs sit next to
their accelerator's PCIe switch, SSDs and front-end NICs off the CPUs; NVSwitch chips take an even
share of each accelerator's NVLink ports (DGX H100: 5-4-4-5 of 18); an NVLink mesh is wired as
listed. Between nodes (``ScaleOut``):

* ``single_switch``: every scale-out NIC on one switch (it must have the ports);
* ``clos``: NICs go node by node to the fewest leaves that take them, spread evenly over them
  (whole nodes to a leaf where one takes whole nodes); a leaf of radix R keeps ``d = R - u`` ports down and
  ``u = round(R / (1 + oversubscription))`` up. A leaf whose endpoints bring ``b`` down gets
  ``ceil(b / (o x port rate))`` uplinks (``ceil(e / o)`` for ``e`` endpoints at the ports' rate;
  half that for NICs at half of it), so a partly filled leaf keeps the configured oversubscription
  rather than becoming a free lunch. Two tiers: uplinks spread evenly over the fewest spines that
  can take them. Three tiers: leaves grouped into pods of ``R / 2``, each pod with its own
  aggregation switches (half down, half up), and a core tier over the pods;
* ``rail_optimized``: NIC *i* of each node goes to the leaves of rail *i*; ``tiers: 2`` adds a
  spine tier across rails; with ``tiers: 1`` cross-rail traffic first crosses NVLink to the peer
  accelerator on the right rail (NCCL's PXN).

Routes between accelerators are the equal-cost (fewest-hop) paths, preferring the scale-up fabric
inside a node: NVLink directly or through NVSwitch, else NVLink through one intermediate GPU (NCCL's
NVB paths, ``_nvb_relays``: the widest such relay), else PCIe. Leaving a node, traffic goes by
the sender's own NIC unless its node's NIC on the destination NIC's rail (its index) is nearer the
destination's NIC (a rail-optimized fabric's other rails): it then crosses NVLink to the peer that
owns that NIC first (NCCL's PXN, ``_pxn_relay``); with no NVLink to such a peer, relaying through
another accelerator is the last resort. Point-to-point sends (send/recv, all-to-all) relay by
NCCL's p2p rule on every fabric (``p2p_first_hop``); ``ScaleOut.pxn: false`` turns PXN off.
A route's bandwidth is the max-flow over its path set (what ECMP or NVSwitch striping can use); its
latency adds link and switch latencies along the path.

Two accelerators of a node whose PCIe route crosses a CPU's root complex on an Intel or Arm host
talk through host memory, not peer to peer (``shm_pair``): NCCL allows P2P there only up to
``PATH_PXB`` (src/graph/paths.cc, ``ncclTopoCheckP2p``: "Don't use P2P through ARM CPUs", and the
same for Intel x86), so the pair uses its SHM transport, which stages every byte in host memory.
Such a route offers ``SHM_EFFICIENCY`` of its links' rate (see there): its bandwidth, which bounds
the pair on its own (``recsim.cost.collectives.base.Flow.cap_bytes_per_s``), while the links it
crosses carry its plain bytes, as any other PCIe transfer's: the staging, not the links, is what
SHM_LINE_FRACTION's source found limiting. (Until 2026-12-07 a staged byte took 1 / SHM_EFFICIENCY
of every link of its route in the collectives' link charges and flows; ``recsim.engine.des``'s
audit notes.) Whether several staged pairs of one GPU each keep the one pair's rate, as modelled,
is not measured in ../shared/reference: the source ran one pair at a time.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar, cast

import networkx as nx
import numpy as np
from numpy.typing import NDArray

from recsim.errors import ConfigError
from recsim.hardware.devices import Link, Switch
from recsim.hardware.system import NicGroup, System

ACCELERATOR = "accelerator"
#: The edge kind of a scale-up link (accelerator to accelerator or NVSwitch): the links of the
#: accelerator's ``nvlink`` ports under an ``nvswitch`` or ``nvlink_mesh`` fabric, NVLink or another
#: family in that role (AMD's Infinity Fabric, ``SCALE_UP_LINK_FAMILIES``). Named ``nvlink`` for
#: the fabric the code was written for; every consumer reads it as "the scale-up fabric".
SCALE_UP = "nvlink"

#: Fraction of a PCIe link's line rate that a GPU-to-GPU copy staged through host memory (NCCL's
#: SHM transport, CUDA copies between GPUs without peer access; ``Topology.shm_pair``) reaches.
#: Measured proxy: p2pBandwidthLatencyTest with P2P disabled (the copy staged through host memory)
#: on 8 x H100 under two Xeon 8462Y+ (Sapphire Rapids, PCIe Gen5; a public acceptance-test sheet
#: on GitHub, nvbandwidth and CUDA samples, driver 595): 45.3-46.0 GB/s bidirectional per pair
#: within a socket, 51.7-53.3 GB/s across sockets, so 24.5 GB/s per direction (mean of 22.8 and
#: 26.2), of the Gen5 x16 link's 63.0 GB/s. The same host measured 55.3 GB/s for a plain
#: host-to-device copy, so the staging, not the link, is the limit: a staged pair is capped at this
#: rate, its links charged its plain bytes (``shm_pair``). Checked, not fitted, against MLPerf v3.1
#: DLRM-DCNv2 on 8 x H100 PCIe.
SHM_LINE_FRACTION = 24.5 / 63.0

#: The same, relative to what a collective's flows get of a PCIe route (its Simple protocol's
#: efficiency, 0.77: ``recsim.cost.collectives.base.DEFAULT_PCIE``, which a test keeps equal), so
#: a staged route's collective runs at the measured 24.5 GB/s: 24.5 / (63.0 x 0.77).
SHM_EFFICIENCY = SHM_LINE_FRACTION / 0.77

#: CPU vendors and architectures through whose root complex NCCL does not let GPUs talk peer to
#: peer (src/graph/paths.cc: ``p2pLevel = PATH_PXB`` for Arm, Intel x86 and Zhaoxin hosts).
_NO_P2P_THROUGH_CPU_VENDORS = ("intel", "zhaoxin")
_ARM_ARCHITECTURES = ("neoverse", "arm", "aarch64", "grace")


@dataclass(frozen=True)
class Route:
    """The equal-cost paths between two endpoints and what they offer."""

    src: str
    dst: str
    paths: tuple[tuple[str, ...], ...]
    bandwidth_bytes_per_s: float
    single_path_bandwidth_bytes_per_s: float
    latency_s: float

    @property
    def hops(self) -> int:
        return len(self.paths[0]) - 1

    @property
    def ecmp_width(self) -> int:
        return len(self.paths)


def _leaf_limit(sw: Switch, tiers: int) -> int:
    """The most leaves a Clos of ``sw`` takes above them: a spine's ports (2 tiers), or a core's
    ports' worth of pods of half a switch's ports each (3 tiers: every two pods share a core)."""
    return sw.ports if tiers == 2 else sw.ports * max(1, sw.ports // 2)


_Derived = TypeVar("_Derived")


def gpu_id(node: int, index: int) -> str:
    return f"n{node}.gpu{index}"


class Topology:
    """The graph of a ``System`` and the figures derived from it."""

    def __init__(self, system: System, graph: nx.DiGraph) -> None:
        self.system = system
        self.graph = graph
        # Routes are pure functions of the (immutable once built) graph: memoised per instance.
        self._routes: dict[tuple[str, str], Route] = {}
        self._edge_paths: dict[tuple[str, str], list[tuple[tuple[str, str], ...]]] = {}
        self._paths: dict[tuple[str, str], tuple[tuple[str, ...], ...]] = {}
        self._segments: dict[tuple[str, str, str], tuple[tuple[str, ...], ...]] = {}
        self._segment_flow: dict[tuple[str, ...], float] = {}  # keyed by the paths, flattened
        self._shape_flow: dict[tuple[object, ...], float] = {}  # keyed by the flow network's shape
        self._local_pair_bw: np.ndarray | None = None
        # (node, destination NIC) -> the node's exit on that NIC's rail, and its hops (``_pxn_relay``)
        self._rail_exit: dict[tuple[int, str], tuple[str, str, float]] = {}
        self._nvlink_only: dict[tuple[str, str], bool] = {}
        # (src, dst) -> ``p2p_first_hop``'s answer
        self._p2p_hops: dict[tuple[str, str], str] = {}
        # (src, dst) -> ``_split``'s answer: the flows of every collective between the same two
        # accelerators ask it again (their placement, their routes).
        self._splits: dict[tuple[str, str], tuple[str, str, str] | None] = {}
        # Whether node 0's accelerator pairs have their paths yet (``_find_paths``).
        self._local_paths_found = False
        # What other modules work out of this graph alone, by maker (``derived``).
        self._derived: dict[Callable[[Topology], object], object] = {}
        # The searches and checks below read vertex attributes from networkx's own dict
        # (``graph._node``, the dicts ``graph.nodes[v]`` returns through a view object per call).

    def derived(
        self, make: Callable[[Topology], _Derived], stale: Callable[[_Derived], bool] | None = None
    ) -> _Derived:
        """``make(self)``, made on the first call and kept for this topology's lifetime (made again
        where ``stale`` says the kept one is): what other modules work out of the graph alone and
        ask for over and over (the collectives' per-topology facts, the network's link numbering,
        the fabric's leaves), kept by the topology itself so that it goes when the topology goes.
        Module-level weak-keyed maps had kept them before, and every value held its topology, so
        the keys never died: each topology a process made (every point of a hardware sweep, 4,000
        objects at 16 nodes) stayed in memory, and every full collection walked it. The kept
        value and the topology refer to each other; the cyclic collector frees the two together."""
        found = self._derived.get(make)
        if found is None or (stale is not None and stale(cast(_Derived, found))):
            found = self._derived[make] = make(self)
        return cast(_Derived, found)

    @cached_property
    def accelerators(self) -> list[str]:
        return [v for v, d in self.graph._node.items() if d["kind"] == ACCELERATOR]

    @cached_property
    def switch_devices(self) -> dict[str, int]:
        """How many switch vertices (scale-out, NVSwitch, PCIe) of each device name the graph
        holds, in the order first met (the energy model charges their idle power every step)."""
        counts: dict[str, int] = {}
        for _, data in self.graph._node.items():
            if data["kind"] in ("switch", "nvswitch", "pcie_switch"):
                counts[data["device"]] = counts.get(data["device"], 0) + 1
        return counts

    @cached_property
    def scale_out_ports_used(self) -> dict[str, int]:
        """How many ports the graph's links take on its scale-out switches, by device name (a
        link's ``links`` count, each link once): what a run is provisioned of the fabric (the
        energy model charges a scale-out switch by this share of its ports)."""
        used: dict[str, int] = {}
        succ = self.graph._succ
        for v, data in self.graph._node.items():
            if data["kind"] == "switch":
                ports = sum(edge["links"] for edge in succ[v].values())
                used[data["device"]] = used.get(data["device"], 0) + ports
        return used

    def _fabric_graph(self, src: str, dst: str) -> Iterable[nx.DiGraph]:
        """Graphs to route in, best first.

        Inside a node: NVLink (direct or through NVSwitch) first. Leaving a node: the home NICs of
        the two accelerators (their own, or those on their PCIe switch, as NCCL picks by PCI
        distance), then any NIC of the two end nodes, then relaying through a peer accelerator
        over NVLink (PXN). Vertices of a third node never carry the traffic.

        The views of ``_vertex_filters`` (after the NVLink one): ``_find_paths`` searches the same
        vertices without building them (``_all_shortest_paths``); the tests keep these as the
        reference it must agree with.
        """
        g = self.graph
        if g.nodes[src]["node"] == g.nodes[dst]["node"]:
            # Direct NVLink or through NVSwitch.
            yield nx.subgraph_view(
                g,
                filter_node=lambda v: v in (src, dst) or g.nodes[v]["kind"] != ACCELERATOR,
                filter_edge=lambda a, b: g.edges[a, b]["kind"] == "nvlink",
            )
            # Else NVLink through one intermediate accelerator (NCCL's NVB paths).
            relays = self._nvb_relays(src, dst)
            yield nx.subgraph_view(
                g,
                filter_node=lambda v: v in (src, dst) or v in relays,
                filter_edge=lambda a, b: g.edges[a, b]["kind"] == "nvlink",
            )
        for allowed in self._vertex_filters(src, dst):
            yield nx.subgraph_view(g, filter_node=allowed)

    def _vertex_filters(self, src: str, dst: str) -> Iterator[Callable[[str], bool]]:
        """The vertices a route between ``src`` and ``dst`` may use over any link, best first:
        the home NICs only, any NIC of the two end nodes, then relaying through a peer accelerator
        (``_fabric_graph``)."""
        g = self.graph
        src_node, dst_node = g._node[src]["node"], g._node[dst]["node"]
        home = set(g._node[src].get("home_nics", ())) | set(g._node[dst].get("home_nics", ()))
        ends = (src_node, dst_node)

        def allowed(v: str, home_only: bool, relay: bool) -> bool:
            data = g._node[v]
            if v in (src, dst) or data["node"] is None:
                return True  # the endpoints and the network switches
            if data["node"] not in ends:
                return False  # a third node's NICs and PCIe never forward traffic
            if data["kind"] == ACCELERATOR:
                return relay
            if data["kind"] == "nic" and home_only and src_node != dst_node and home:
                return v in home
            return True

        for home_only, relay in ((True, False), (False, False), (False, True)):
            yield lambda v, h=home_only, r=relay: allowed(v, h, r)

    def local_pair_bandwidth(self) -> np.ndarray:
        """``bw[i, j]``: route bandwidth from local accelerator ``i`` to ``j`` inside a node (every
        node is built from the same node spec; node 0's vertices stand for all), memoised."""
        if self._local_pair_bw is None:
            g = max(1, self.system.node.num_accelerators)
            if not self._local_paths_found:
                self._local_paths_found = True
                self._find_local_paths(g)
            bw = np.full((g, g), np.inf)
            for i in range(g):
                for j in range(g):
                    if i != j:
                        bw[i, j] = self.route(gpu_id(0, i), gpu_id(0, j)).bandwidth_bytes_per_s
            self._local_pair_bw = bw
        return self._local_pair_bw

    def _find_local_paths(self, g: int) -> None:
        """Fill in ``paths`` between node 0's accelerators: one breadth-first search per source
        instead of one per pair, the same paths in the same order.

        A pair's search (``_find_paths``: NVLink edges, no accelerator but the two ends) stops at
        ``dst``'s level and never expands ``dst``; here the search from ``src`` goes on, reaching
        every accelerator without expanding any but ``src``. Both expand the same vertices in the
        same order up to ``dst``'s level, so ``dst``'s shortest-path predecessors (and theirs) are
        the same lists, and the same walk back gives the same tuple. A pair without such a path, or
        a name missing from the graph, is left to ``paths`` (the general search, or its error).
        """
        graph = self.graph
        names = [gpu_id(0, i) for i in range(g)]
        if any(name not in graph for name in names):
            return
        nodes = graph._node
        adjacency = self._lazy_nvlink_adjacency
        for src in names:
            pred = _shortest_path_predecessors(
                adjacency, src, lambda v: nodes[v]["kind"] != ACCELERATOR, names
            )
            back: dict[str, list[tuple[str, ...]]] = {src: [(src,)]}
            for dst in names:
                if dst != src and dst in pred and (src, dst) not in self._paths:
                    self._paths[(src, dst)] = tuple(_layered_paths_back(pred, dst, back))

    def route(self, src: str, dst: str) -> Route:
        """The route between two vertices (usually accelerators, e.g. ``n0.gpu3``)."""
        cached = self._routes.get((src, dst))
        if cached is None:
            cached = self._route(src, dst)
            self._routes[(src, dst)] = cached
        return cached

    @cached_property
    def _host_blocks_p2p(self) -> bool:
        """Whether the node's CPUs keep GPU peer traffic off their root complex (NCCL's rule)."""
        cpu = self.system.node.cpus.device
        vendor, arch = cpu.vendor.lower(), cpu.architecture.lower()
        return vendor in _NO_P2P_THROUGH_CPU_VENDORS or arch.startswith(_ARM_ARCHITECTURES)

    def shm_pair(self, src: str, dst: str) -> bool:
        """Whether two accelerators of one node exchange data through host memory (NCCL's SHM
        transport) rather than peer to peer: their route crosses a CPU (every path, PCIe only) on
        a host that does not let peer traffic through its root complex (Intel, Arm)."""
        if src == dst or not self._host_blocks_p2p:
            return False
        nodes = self.graph._node
        if nodes[src]["kind"] != ACCELERATOR or nodes[dst]["kind"] != ACCELERATOR:
            return False
        if nodes[src]["node"] != nodes[dst]["node"]:
            return False
        return all(any(nodes[v]["kind"] == "cpu" for v in path[1:-1]) for path in self.paths(src, dst))

    def local_shm_pairs(self) -> NDArray[np.bool_]:
        """``shm[i, j]``: local accelerators ``i`` and ``j`` talk through host memory (``shm_pair``,
        node 0's vertices standing for every node's), memoised."""
        return self._local_shm

    @cached_property
    def _local_shm(self) -> NDArray[np.bool_]:
        g = max(1, self.system.node.num_accelerators)
        found = np.zeros((g, g), dtype=bool)
        if self._host_blocks_p2p:
            for i in range(g):
                for j in range(g):
                    found[i, j] = self.shm_pair(gpu_id(0, i), gpu_id(0, j))
        found.setflags(write=False)
        return found

    def edge_paths(self, src: str, dst: str) -> list[tuple[tuple[str, str], ...]]:
        """The route's equal-cost paths as tuples of directed edges."""
        cached = self._edge_paths.get((src, dst))
        if cached is None:
            cached = [tuple(itertools.pairwise(p)) for p in self.paths(src, dst)]
            self._edge_paths[(src, dst)] = cached
        return cached

    def paths(self, src: str, dst: str) -> tuple[tuple[str, ...], ...]:
        """The route's equal-cost paths (``route(src, dst).paths``, without its bandwidth figures)."""
        cached = self._paths.get((src, dst))
        if cached is None:
            cached = self._find_paths(src, dst)
            self._paths[(src, dst)] = cached
        return cached

    def _route(self, src: str, dst: str) -> Route:
        paths = self.paths(src, dst)
        if src == dst:
            return Route(src, dst, paths, math.inf, math.inf, 0.0)
        if self.shm_pair(src, dst):
            found = self._route_from_paths(src, dst, paths)
            return Route(
                src,
                dst,
                paths,
                found.bandwidth_bytes_per_s * SHM_EFFICIENCY,
                found.single_path_bandwidth_bytes_per_s * SHM_EFFICIENCY,
                found.latency_s,
            )
        split = self._split(src, dst)
        if split is not None and self._integral_capacities:
            # Series composition through the two NICs (cut vertices of the path set): with integral
            # capacities every max-flow is exact, so the min of the three segments' is the same value.
            via, nic_a, nic_b = split
            segments = (
                self.source_segment(src, via, nic_a),
                self._fabric_segment(nic_a, nic_b),
                self._segment(nic_b, dst, "dst"),
            )
            if all(segments):  # else the route was found by the general search (e.g. PXN)
                flow = min(self._segment_max_flow(seg) for seg in segments)
                return self._route_from_paths(src, dst, paths, flow)
        return self._route_from_paths(src, dst, paths)

    def _find_paths(self, src: str, dst: str) -> tuple[tuple[str, ...], ...]:
        for name in (src, dst):
            if name not in self.graph:
                raise ConfigError(f"no device {name!r} in the topology of {self.system.name!r}")
        if src == dst:
            return ((src,),)
        split = self._split(src, dst)
        if split is not None:
            via, nic_a, nic_b = split
            first = self.source_segment(src, via, nic_a)
            fabric = self._fabric_segment(nic_a, nic_b)
            last = self._segment(nic_b, dst, "dst")
            if first and fabric and last:
                # The order nx.all_shortest_paths gives: a DFS back from ``dst``, so the choices
                # nearest the source vary fastest.
                return tuple(s + f[1:] + d[1:] for d in last for f in fabric for s in first)
        g = self.graph
        a, b = g._node[src], g._node[dst]
        if a["node"] == b["node"]:
            if a["node"] == 0 and a["kind"] == ACCELERATOR == b["kind"] and not self._local_paths_found:
                # Two of node 0's accelerators: the collectives ask for every such pair (rings,
                # shared links, pair bandwidths), so all are found at once, one search per source
                # (``_find_local_paths``: the same paths in the same order as the search below).
                self._local_paths_found = True
                self._find_local_paths(max(1, self.system.node.num_accelerators))
                found = self._paths.get((src, dst))
                if found is not None:
                    return found

            # The first graph of ``_fabric_graph`` (NVLink only, no relaying accelerator), searched
            # without building a networkx view: the same paths in the same order. An empty answer
            # (no such path) falls through to the general search, which finds that view empty too.
            def ok(v: str) -> bool:
                return v in (src, dst) or g._node[v]["kind"] != ACCELERATOR

            found = _all_shortest_paths(self._lazy_nvlink_adjacency, src, dst, ok)
            if found:
                return found
            relays = self._nvb_relays(src, dst)
            if relays:  # the second graph of ``_fabric_graph``: NVLink through one accelerator

                def relay_ok(v: str) -> bool:
                    return v in (src, dst) or v in relays

                found = _all_shortest_paths(self._lazy_nvlink_adjacency, src, dst, relay_ok)
                if found:
                    return found
        # The other views of ``_fabric_graph``, searched without building them (a networkx view
        # filters every vertex it reaches through three layers of Python: seconds at 1024 GPUs,
        # whose host-to-GPU copies each take this search): the same paths in the same order.
        for allowed in self._vertex_filters(src, dst):
            found = _all_shortest_paths(self._lazy_adjacency, src, dst, allowed)
            if found:
                return found
        raise ConfigError(f"{self.system.name}: no path from {src} to {dst}")

    # -- composed routes between accelerators of two nodes ---------------------------------------
    #
    # Leaving a node, the first view of ``_fabric_graph`` only lets the traffic through the home NICs
    # of the two accelerators. When each has exactly one, those two NICs are cut vertices: every
    # path is (src -> its NIC inside its node) + (NIC -> NIC through the network switches) + (NIC ->
    # dst inside its node), each segment's shortest paths found in its own region, and BFS
    # discovery order inside a region is the same as in the whole view (a region is entered through
    # its NIC only). ``_split`` checks the preconditions; anything else takes the general search.

    def _nvb_relays(self, src: str, dst: str) -> frozenset[str]:
        """The accelerator that relays peer traffic from ``src`` to ``dst`` (two accelerators of a
        node without an NVLink route of their own) over NVLink, as a set (empty: none).

        NCCL routes peer traffic between GPUs without a direct NVLink through one intermediate GPU
        over NVLink where it can (``NVB`` paths, ``NCCL_NVB_DISABLE``, default on since 2.11), before
        PCIe: its path search (src/graph/paths.cc, ``ncclTopoSetPaths``) lets a path through a GPU
        be two hops at most and keeps one path per pair, the widest (the first of the widest in its
        search order; here the lowest-numbered). On DGX-1's hybrid cube mesh every pair without a
        direct link has two candidates; PCIe and the sockets' link would carry three of a GPU's
        seven all-to-all peers at a tenth of NVLink's rate."""
        g = self.graph
        if g._node[src]["kind"] != ACCELERATOR or g._node[dst]["kind"] != ACCELERATOR:
            return frozenset()
        adjacency = self._lazy_nvlink_adjacency
        succ = g._succ
        best, width = "", 0.0
        for w in sorted(adjacency[src], key=_natural_key):
            if w != dst and g._node[w]["kind"] == ACCELERATOR and dst in adjacency[w]:
                wide = min(succ[src][w]["bandwidth_bytes_per_s"], succ[w][dst]["bandwidth_bytes_per_s"])
                if wide > width:
                    best, width = w, wide
        return frozenset((best,)) if best else frozenset()

    @cached_property
    def _lazy_adjacency(self) -> dict[str, list[str]]:
        """Successors of every vertex, filled in as the searches reach vertices: a route touches a
        few of them, where building the whole dict visits every vertex of the cluster."""
        succ = self.graph.succ
        return _LazyAdjacency(lambda v: list(succ[v]))

    @cached_property
    def _lazy_nvlink_adjacency(self) -> dict[str, list[str]]:
        """Successors over NVLink edges only, in the graph's order, filled in as the searches reach
        vertices (see ``_lazy_adjacency``)."""
        succ = self.graph.succ
        return _LazyAdjacency(lambda v: [w for w, d in succ[v].items() if d["kind"] == "nvlink"])

    @cached_property
    def _nics_are_the_only_gateways(self) -> bool:
        """No edge leaves a node except between one of its NICs and a network switch.

        Over the edge and vertex tables with numpy (the rule per edge, as a loop over the edges
        would apply it): an edge between two vertices of different nodes, or from a node's vertex
        other than a NIC to a switch, breaks it.
        """
        _, rows, cols, _ = self._edge_table
        node_of, is_nic = self._vertex_table
        na, nb = node_of[rows], node_of[cols]
        crossing = na != nb  # -1 (no node: a switch) on both sides is no crossing
        both_inside = crossing & (na >= 0) & (nb >= 0)
        inside = np.where(na >= 0, rows, cols)
        return not bool(np.any(both_inside | (crossing & ~is_nic[inside])))

    @cached_property
    def _vertex_table(self) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        """Per vertex (graph order): its node (-1 for none) and whether it is a NIC."""
        g = self.graph
        node_of = np.fromiter(
            (-1 if d["node"] is None else d["node"] for d in g._node.values()), dtype=np.int64, count=len(g)
        )
        is_nic = np.fromiter((d["kind"] == "nic" for d in g._node.values()), dtype=np.bool_, count=len(g))
        return node_of, is_nic

    @cached_property
    def _integral_capacities(self) -> bool:
        """Every capacity an integer below 2**52 (``float(c).is_integer() and c < 2**52`` for each),
        checked on the edge table's capacities at once."""
        caps = self._edge_table[3]
        return bool(np.all((np.floor(caps) == caps) & (caps < 2**52)))

    def _split(self, src: str, dst: str) -> tuple[str, str, str] | None:
        """(``src`` or its PXN relay, the NIC the traffic leaves by, ``dst``'s home NIC) where the
        route composes from segments (see above), else None (memoised)."""
        key = (src, dst)
        found = self._splits.get(key, ())
        if found == ():
            found = self._splits[key] = self._find_split(src, dst)
        return found  # type: ignore[return-value]

    def _find_split(self, src: str, dst: str) -> tuple[str, str, str] | None:
        g = self.graph
        a, b = g._node[src], g._node[dst]
        if a["kind"] != ACCELERATOR or b["kind"] != ACCELERATOR or a["node"] == b["node"]:
            return None
        home_a, home_b = a.get("home_nics", ()), b.get("home_nics", ())
        if len(home_a) != 1 or len(home_b) != 1 or not self._nics_are_the_only_gateways:
            return None
        nic_a, nic_b = home_a[0], home_b[0]
        if g._node[nic_a]["node"] != a["node"] or g._node[nic_b]["node"] != b["node"]:
            return None
        relay = self._pxn_relay(src, a["node"], nic_a, nic_b)
        if relay is not None:
            return relay, g._node[relay]["home_nics"][0], nic_b
        return src, nic_a, nic_b

    def first_hop(self, src: str, dst: str) -> str:
        """The accelerator whose NIC ``src``'s traffic to ``dst`` leaves its node by: ``src`` itself,
        or the peer that relays it (PXN); ``src`` where the route does not compose from segments."""
        split = self._split(src, dst)
        return src if split is None else split[0]

    # -- PXN: leaving a node by the NIC on the destination's rail ---------------------------------
    #
    # NCCL (2.12 on, ``NCCL_PXN_DISABLE=0``) sends to a GPU of another node through the NIC of its
    # own node with the destination NIC's index (its rail): the sender writes its data over NVLink
    # into the peer GPU that owns that NIC, whose proxy posts it (NVIDIA, "Doubling all2all
    # Performance with NVIDIA Collective Communication Library 2.12", 2022). On a rail-optimized
    # fabric this keeps the traffic off the spine between rails. The route (shared by every
    # collective: rings and trees follow NCCL's search graph's NICs, not the p2p rule) relays where
    # that NIC is nearer the destination's than the sender's own (a rail's leaf instead of the
    # spine, or a fabric with no cross-rail path at all); with PXN off (``ScaleOut.pxn``) only where
    # the sender's own NIC has no path at all. Point-to-point sends relay by NCCL's p2p rule on
    # every fabric (``p2p_first_hop``): the flows of send/recv and the all-to-alls take that.

    @cached_property
    def pxn_enabled(self) -> bool:
        """Whether NCCL's PXN relays are on (``ScaleOut.pxn``; a single node has none to make)."""
        scale_out = self.system.cluster.scale_out
        return scale_out is not None and scale_out.pxn

    def _pxn_relay(self, src: str, node: int, nic_a: str, nic_b: str) -> str | None:
        """The accelerator of ``src``'s node that relays ``src``'s traffic to ``nic_b`` (None: no
        relay): the first owner of the node's NIC with ``nic_b``'s index among its node's NICs,
        where that NIC is fewer network hops from ``nic_b`` than ``src``'s home NIC ``nic_a`` is
        (with PXN off: where ``nic_a`` has no path to ``nic_b``) and ``src`` reaches its owner over
        NVLink alone (PXN writes into the peer's memory over NVLink; never over PCIe)."""
        key = (node, nic_b)
        found = self._rail_exit.get(key)
        if found is None:
            found = self._rail_exit[key] = self._same_index_exit(node, nic_b)
        nic, relay, hops = found
        if not relay or nic == nic_a or relay == src:
            return None
        own = self._nic_hops(nic_a, nic_b)
        if not hops < own or not (self.pxn_enabled or math.isinf(own)):
            return None
        return relay if self._over_nvlink(src, relay) else None

    def p2p_first_hop(self, src: str, dst: str) -> str:
        """The accelerator whose NIC a point-to-point send from ``src`` to ``dst`` leaves by: NCCL's
        rule for send/recv (src/graph/search.cc ``ncclTopoGetNetDev`` without a graph, at
        ``NCCL_P2P_PXN_LEVEL=2``, its default): the NIC of the sender's node local to the GPU with
        the destination's device index (here its home NIC's index among the node's exits, the
        destination's rail), through the GPU that owns it where the sender reaches that GPU over
        NVLink (``peerGpu->paths[GPU][g1].type <= PATH_NVL``), whatever the fabric; else the
        route's (``first_hop``). With PXN off (``ScaleOut.pxn``), the route's."""
        found = self._p2p_hops.get((src, dst))
        if found is None:
            found = self._p2p_hops[(src, dst)] = self._find_p2p_first_hop(src, dst)
        return found

    @cached_property
    def pxn_local_relays(self) -> NDArray[np.intp]:
        """``relay[s, d]``: the local index of the accelerator through whose NIC a point-to-point
        send from local accelerator ``s`` to the accelerator with local index ``d`` of another node
        leaves (``p2p_first_hop``'s rule, by local index: every node is built from the same spec),
        -1 where the rule does not relay (PXN off, no NVLink to the owner, the sender's own NIC).
        Read-only."""
        count = self.system.node.num_accelerators
        out = np.full((count, count), -1, dtype=np.intp)
        exits = self._node_exits.get(0, [])
        if self.pxn_enabled and self.system.num_nodes >= 2 and exits:
            nodes = self.graph._node
            rail = {nic: k for k, (nic, _) in enumerate(exits)}
            homes = [nodes[gpu_id(0, i)].get("home_nics", ()) for i in range(count)]
            for s in range(count):
                for d in range(count):
                    if len(homes[s]) != 1 or len(homes[d]) != 1 or homes[d][0] not in rail:
                        continue
                    nic, relay = exits[rail[homes[d][0]]]
                    src = gpu_id(0, s)
                    if nic != homes[s][0] and relay != src and self._over_nvlink(src, relay):
                        out[s, d] = nodes[relay]["index"]
        out.setflags(write=False)
        return out

    def _find_p2p_first_hop(self, src: str, dst: str) -> str:
        route = self.first_hop(src, dst)
        if route != src or not self.pxn_enabled:
            return route
        g = self.graph._node
        a, b = g[src], g[dst]
        if a["kind"] != ACCELERATOR or b["kind"] != ACCELERATOR or a["node"] == b["node"]:
            return route
        home_a, home_b = a.get("home_nics", ()), b.get("home_nics", ())
        if len(home_a) != 1 or len(home_b) != 1:
            return route
        nic, relay, _ = self._same_index_exit(a["node"], home_b[0])
        if not relay or nic == home_a[0] or relay == src or not self._over_nvlink(src, relay):
            return route
        return relay

    @cached_property
    def _node_exits(self) -> dict[int, list[tuple[str, str]]]:
        """Per node: (NIC, its first owner) for each NIC that is some accelerator's only home NIC,
        in the order of the node's NICs (their index)."""
        nodes = self.graph._node
        out: dict[int, dict[str, str]] = {}
        for acc in self.accelerators:
            home = nodes[acc].get("home_nics", ())
            if len(home) == 1:
                out.setdefault(nodes[acc]["node"], {}).setdefault(home[0], acc)
        order = {v: k for k, v in enumerate(self.graph)}  # NICs are built in index order
        return {node: sorted(nics.items(), key=lambda e: order[e[0]]) for node, nics in out.items()}

    def _same_index_exit(self, node: int, nic_b: str) -> tuple[str, str, float]:
        """(NIC, owner, network hops to ``nic_b``) of ``node``'s exit with ``nic_b``'s index among
        its node's exits; ("", "", inf) where there is none."""
        theirs = self._node_exits.get(self.graph._node[nic_b]["node"], [])
        index = next((k for k, (nic, _) in enumerate(theirs) if nic == nic_b), None)
        mine = self._node_exits.get(node, [])
        if index is None or index >= len(mine):
            return "", "", math.inf
        nic, relay = mine[index]
        return nic, relay, self._nic_hops(nic, nic_b)

    def _nic_hops(self, nic_a: str, nic_b: str) -> float:
        """Links between two NICs through the network switches (inf: no such path)."""
        paths = self._fabric_segment(nic_a, nic_b)
        return float(len(paths[0]) - 1) if paths else math.inf

    def _over_nvlink(self, src: str, dst: str) -> bool:
        """Whether the route between two accelerators of a node uses NVLink alone (memoised)."""
        found = self._nvlink_only.get((src, dst))
        if found is None:
            succ = self.graph._succ
            paths = self.paths(src, dst)
            nodes = self.graph._node
            # NVLink alone and no accelerator between: NCCL's PXN takes NVLink paths, not NVB ones.
            found = all(succ[a][b]["kind"] == "nvlink" for a, b in itertools.pairwise(paths[0])) and all(
                nodes[v]["kind"] != ACCELERATOR for v in paths[0][1:-1]
            )
            self._nvlink_only[(src, dst)] = found
        return found

    def source_segment(self, src: str, via: str, nic: str) -> tuple[tuple[str, ...], ...]:
        """The paths from ``src`` to the NIC it leaves its node by: to ``nic`` itself, or (``via`` a
        PXN relay) over NVLink to the relay, then to the relay's NIC (empty if a part has none)."""
        if via == src:
            return self._segment(src, nic, "src")
        key = (src, nic, f"via {via}")
        cached = self._segments.get(key)
        if cached is None:
            hand = self.paths(src, via)
            onward = self._segment(via, nic, "src")
            cached = tuple(h + o[1:] for o in onward for h in hand) if hand and onward else ()
            self._segments[key] = cached
        return cached

    def _segment(self, src: str, dst: str, side: str) -> tuple[tuple[str, ...], ...]:
        """Shortest paths inside one node between an accelerator and its home NIC."""
        key = (src, dst, side)
        cached = self._segments.get(key)
        if cached is None:
            g = self.graph
            acc, nic = (src, dst) if side == "src" else (dst, src)
            node = g._node[acc]["node"]

            def ok(v: str) -> bool:
                data = g._node[v]
                if v in (acc, nic):
                    return True
                return data["node"] == node and data["kind"] not in (ACCELERATOR, "nic")

            cached = _all_shortest_paths(self._lazy_adjacency, src, dst, ok)
            self._segments[key] = cached
        return cached

    def _fabric_segment(self, nic_a: str, nic_b: str) -> tuple[tuple[str, ...], ...]:
        """Shortest paths between two NICs through the network switches only."""
        key = (nic_a, nic_b, "fabric")
        cached = self._segments.get(key)
        if cached is None:
            g = self.graph
            up_a = [v for v in self._lazy_adjacency[nic_a] if g._node[v]["node"] is None]
            up_b = [v for v in self._lazy_adjacency[nic_b] if g._node[v]["node"] is None]
            if len(up_a) == 1 and len(up_b) == 1 and up_a[0] != up_b[0]:
                # One switch above each NIC: the switch-to-switch paths, shared by every NIC pair
                # on the same two switches (BFS order between them is the same either way).
                between = self._switch_paths(up_a[0], up_b[0])
                cached = tuple((nic_a, *p, nic_b) for p in between)
            else:
                cached = _all_shortest_paths(
                    self._lazy_adjacency,
                    nic_a,
                    nic_b,
                    lambda v: v in (nic_a, nic_b) or g._node[v]["node"] is None,
                )
            self._segments[key] = cached
        return cached

    def _switch_paths(self, a: str, b: str) -> tuple[tuple[str, ...], ...]:
        key = (a, b, "switches")
        cached = self._segments.get(key)
        if cached is None:
            g = self.graph
            cached = _all_shortest_paths(self._lazy_adjacency, a, b, lambda v: g._node[v]["node"] is None)
            self._segments[key] = cached
        return cached

    def _segment_max_flow(self, paths: tuple[tuple[str, ...], ...]) -> float:
        key = tuple(v for p in paths for v in (*p, ""))
        cached = self._segment_flow.get(key)
        if cached is not None:
            return cached
        g = self.graph
        if len(paths[0]) <= 2:
            return float(min(g.edges[p[0], p[1]]["bandwidth_bytes_per_s"] for p in paths))
        sub = nx.DiGraph()
        for path in paths:
            for a, b in itertools.pairwise(path):
                sub.add_edge(a, b, capacity=g.edges[a, b]["bandwidth_bytes_per_s"])
        flow = float(nx.maximum_flow_value(sub, paths[0][0], paths[0][-1]))
        self._segment_flow[key] = flow
        return flow

    def route_latency_s(self, src: str, dst: str) -> float:
        """``route(src, dst).latency_s`` without the route's bandwidth figures (no max-flow)."""
        cached = self._routes.get((src, dst))
        if cached is not None:
            return cached.latency_s
        return max(self._path_latency_s(path) for path in self.paths(src, dst))

    def _path_latency_s(self, path: tuple[str, ...]) -> float:
        """One path's latency: its links', then its inner vertices' (switches, NICs), in that order."""
        succ, nodes = self.graph._succ, self.graph._node
        links = 0.0
        for a, b in itertools.pairwise(path):
            links += succ[a][b]["latency_s"]
        return links + sum(nodes[v].get("latency_s", 0.0) for v in path[1:-1])

    def _route_from_paths(
        self, src: str, dst: str, paths: tuple[tuple[str, ...], ...], flow: float | None = None
    ) -> Route:
        # networkx's own dicts behind ``g.edges[a, b]`` and ``g.nodes[v]``: the same attribute
        # dicts, without a view lookup per edge and vertex; the same arithmetic in the same order.
        # One pass over each path's edges for its width and latency (``_path_latency_s``'s sum, in
        # its order) and, where the max-flow is wanted, the flow network's shape key
        # (``_paths_max_flow``'s, over the same edges in the same order). ``x if x < y else y`` is
        # ``min(y, x)``, and ``x if x > y else y`` is ``max(y, x)``, NaNs included.
        succ, nodes = self.graph._succ, self.graph._node
        shaped = flow is None and len(paths[0]) > 2 and self._integral_capacities
        # Paths that share no vertex but their ends (a node's GPU pairs through the NVSwitch
        # chips) have the sum of their widths as max-flow (``_disjoint_paths_flow``): added up
        # here, where the widths are found anyway, instead of a shape key per route.
        disjoint = False
        if shaped:
            inner = [v for path in paths for v in path[1:-1]]
            disjoint = len(set(inner)) == len(inner)
        keyed = shaped and not disjoint
        number: dict[str, int] = {}
        edges: dict[tuple[int, int, float], None] = {}
        single = math.inf
        latency = 0.0
        total = 0.0  # the paths' capacities: exact sums need them below 2**53
        widths = 0.0
        for path in paths:
            path_bw = math.inf
            links = 0.0
            for a, b in itertools.pairwise(path):
                edge = succ[a][b]
                bw = edge["bandwidth_bytes_per_s"]
                if bw < path_bw:
                    path_bw = bw
                links += edge["latency_s"]
                if keyed:
                    ia = number.setdefault(a, len(number))
                    ib = number.setdefault(b, len(number))
                    edges[(ia, ib, bw)] = None
                elif disjoint:
                    total += bw
            if path_bw < single:
                single = path_bw
            widths += path_bw
            path_latency = links + sum(nodes[v].get("latency_s", 0.0) for v in path[1:-1])
            if path_latency > latency:
                latency = path_latency
        if flow is None:
            if disjoint:
                # Integral capacities (``shaped``) summing below 2**53: the exact max-flow, the
                # float ``nx.maximum_flow_value`` gives too; otherwise the general path.
                exact = total < 2.0**53 and math.isfinite(widths)
                flow = widths if exact else self._paths_max_flow(src, dst, paths)
            elif shaped:
                flow = self._shaped_max_flow(src, dst, paths, (number[src], number[dst], *edges))
            else:
                flow = self._paths_max_flow(src, dst, paths) if len(paths[0]) > 2 else single
        return Route(src, dst, paths, float(flow), single, latency)

    def _paths_max_flow(self, src: str, dst: str, paths: tuple[tuple[str, ...], ...]) -> float:
        """Max-flow from ``src`` to ``dst`` over the edges of ``paths``.

        Memoised by the shape of that flow network: vertices numbered in order of first appearance,
        each edge with its capacity. The routes between the accelerator pairs of a node (GPU ``i`` ->
        each NVSwitch chip -> GPU ``j``, for every ``i``, ``j`` of every node) then share one max-flow.
        Only with integral capacities, where every max-flow of isomorphic networks is the same float
        (as for the series composition in ``_route``); otherwise each route computes its own.
        """
        g = self.graph
        key: tuple[object, ...] | None = None
        if self._integral_capacities:
            succ = g._succ  # what ``g.edges[a, b]`` reads
            number: dict[str, int] = {}
            edges: dict[tuple[int, int, float], None] = {}
            for path in paths:
                for a, b in itertools.pairwise(path):
                    ia = number.setdefault(a, len(number))
                    ib = number.setdefault(b, len(number))
                    edges[(ia, ib, succ[a][b]["bandwidth_bytes_per_s"])] = None
            key = (number[src], number[dst], *edges)
        return self._shaped_max_flow(src, dst, paths, key)

    def _shaped_max_flow(
        self, src: str, dst: str, paths: tuple[tuple[str, ...], ...], key: tuple[object, ...] | None
    ) -> float:
        """``_paths_max_flow`` given its shape key (None: integral capacities do not hold)."""
        if key is not None:
            cached = self._shape_flow.get(key)
            if cached is not None:
                return cached
            flow = _disjoint_paths_flow(self.graph._succ, paths)
            if flow is not None:
                self._shape_flow[key] = flow
                return flow
        g = self.graph
        sub = nx.DiGraph()
        for path in paths:
            for a, b in itertools.pairwise(path):
                sub.add_edge(a, b, capacity=g.edges[a, b]["bandwidth_bytes_per_s"])
        flow = float(nx.maximum_flow_value(sub, src, dst))
        if key is not None:
            self._shape_flow[key] = flow
        return flow

    @cached_property
    def bisection_bandwidth_bytes_per_s(self) -> float:
        """Max-flow, one direction, from the first half of the accelerators to the second.

        Across nodes (first half of the nodes to the second) when there are several, else across
        the accelerators of the one node over its scale-up fabric.
        """
        g = self.graph
        nodes = self.system.num_nodes
        accs = self.accelerators
        if len(accs) < 2:
            return 0.0
        kinds: set[str] | None = None  # edge kinds kept (None: all)
        if nodes > 1:
            half = nodes // 2
            left = [a for a in accs if g.nodes[a]["node"] < half]
            right = [a for a in accs if g.nodes[a]["node"] >= half]
        else:
            left, right = accs[: len(accs) // 2], accs[len(accs) // 2 :]
            fabric = (
                "pcie"
                if self.system.node.scale_up and self.system.node.scale_up.fabric == "pcie"
                else "nvlink"
            )
            kinds = {"nvlink"} if fabric == "nvlink" else {"pcie", "socket"}
        index, rows, cols, caps = self._edge_table
        keep = None if kinds is None else np.isin(self._edge_kinds, sorted(kinds))
        exact = _integral_max_flow_arrays(
            len(index),
            rows if keep is None else rows[keep],
            cols if keep is None else cols[keep],
            caps if keep is None else caps[keep],
            [index[a] for a in left],
            [index[b] for b in right],
        )
        if exact is not None:
            return exact
        # The edges in the order ``view.edges(data=True)`` gives (vertex by vertex, successors in
        # insertion order), read from the adjacency dicts rather than through networkx's views.
        edges = [
            (a, b, data["bandwidth_bytes_per_s"])
            for a, nbrs in g.adjacency()
            for b, data in nbrs.items()
            if kinds is None or data["kind"] in kinds
        ]
        flow_graph = nx.DiGraph()
        for a, b, capacity in edges:
            flow_graph.add_edge(a, b, capacity=capacity)
        for a in left:
            flow_graph.add_edge("__source__", a)  # no capacity attribute = unbounded
        for b in right:
            flow_graph.add_edge(b, "__sink__")
        return float(nx.maximum_flow_value(flow_graph, "__source__", "__sink__"))

    @cached_property
    def _edge_table(self) -> tuple[dict[str, int], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """Every directed edge as arrays, in adjacency order: (vertex -> number in graph order, tail
        numbers, head numbers, capacities), for the bisection and the whole-graph checks. Read
        from the adjacency dicts themselves (``adjacency()``), not networkx's per-vertex views."""
        adjacency = list(self.graph.adjacency())
        index = {v: i for i, (v, _) in enumerate(adjacency)}
        degrees = np.asarray([len(nbrs) for _, nbrs in adjacency], dtype=np.int64)
        rows = np.repeat(np.arange(len(index), dtype=np.int64), degrees)
        cols = np.asarray([index[b] for _, nbrs in adjacency for b in nbrs], dtype=np.int64)
        caps = np.asarray(
            [d["bandwidth_bytes_per_s"] for _, nbrs in adjacency for d in nbrs.values()], dtype=np.float64
        )
        return index, rows, cols, caps

    @cached_property
    def _edge_kinds(self) -> NDArray[np.str_]:
        """Each edge's ``kind``, in ``_edge_table``'s order."""
        return np.asarray(
            [d["kind"] for _, nbrs in self.graph.adjacency() for d in nbrs.values()], dtype=np.str_
        )

    def summary(self) -> dict[str, Any]:
        """Counts of vertices by kind."""
        counts: dict[str, int] = {}
        for _, data in self.graph.nodes(data=True):
            counts[data["kind"]] = counts.get(data["kind"], 0) + 1
        return counts


# ------------------------------------------------------------------------------ construction

_NODE0 = "n0."  # the name prefix of node 0's vertices (``gpu_id``, ``build_node``)


@dataclass(frozen=True)
class _NodeTemplate:
    """Node 0's wiring, to copy for the other nodes (names without their ``n0.`` prefix).

    ``suffixes[i]`` and ``attrs[i]``: vertex ``i`` (graph order) and its attributes;
    ``edge_data[k]``: the attributes of directed edge ``k`` (insertion order); ``succ[i]`` /
    ``pred[i]``: (vertex, edge) numbers of vertex ``i``'s successors / predecessors, in the
    graph's order; ``nics``: the scale-out NICs in ``build_node``'s order.
    """

    suffixes: list[str]
    attrs: list[dict[str, Any]]
    edge_data: list[dict[str, Any]]
    succ: list[list[tuple[int, int]]]
    pred: list[list[tuple[int, int]]]
    nics: list[str]


class _Builder:
    def __init__(self, system: System) -> None:
        self.system = system
        self.g = nx.DiGraph()
        # Every directed edge ``connect`` added, in order: node 0's numbered for ``node_template``.
        self.edge_log: list[tuple[str, str]] = []
        # Leaves made so far under each name prefix (``_leaves`` numbers them on from there).
        self._leaf_count: dict[str, int] = {}

    def vertex(self, name: str, kind: str, node: int | None, device: str, latency_s: float = 0.0) -> str:
        self.g.add_node(name, kind=kind, node=node, device=device, latency_s=latency_s)
        return name

    def connect(self, a: str, b: str, bandwidth: float, latency: float, kind: str, links: int = 1) -> None:
        # Written into networkx's own dicts (as ``replicate_node`` does; ``build_topology`` clears
        # the graph's cache once at the end): what ``has_edge``, ``edges[u, v]`` and ``add_edge``
        # read and write, one attribute dict per edge shared by both adjacency entries, the
        # attributes in ``add_edge``'s order. A vertex not made yet is left to ``add_edge``.
        succ, pred = self.g._succ, self.g._pred
        for u, v in ((a, b), (b, a)):
            out = succ.get(u)
            edge = None if out is None else out.get(v)
            if edge is not None:
                edge["bandwidth_bytes_per_s"] += bandwidth
                edge["links"] += links
                continue
            if out is not None and v in succ:
                data = {
                    "bandwidth_bytes_per_s": bandwidth,
                    "latency_s": latency,
                    "kind": kind,
                    "links": links,
                }
                out[v] = data
                pred[v][u] = data
            else:
                self.g.add_edge(
                    u, v, bandwidth_bytes_per_s=bandwidth, latency_s=latency, kind=kind, links=links
                )
            self.edge_log.append((u, v))

    def link(
        self, a: str, b: str, link: Link, count: int = 1, cap: float | None = None, kind: str = "pcie"
    ) -> None:
        # The edge's kind is the link's role, not its family: a host interface or an SSD's link is
        # a ``pcie`` edge (NVLink-C2C, family cxl, included), an accelerator's scale-up link a
        # ``nvlink`` edge whatever its family (``_scale_up``). Keyed on the family, AMD's Infinity
        # Fabric (family xgmi) in an nvlink_mesh was routed and costed as PCIe (a tester's find).
        bw = count * link.bandwidth_bytes_per_s
        self.connect(a, b, min(bw, cap) if cap else bw, link.latency_s, kind, count)

    # -- one node ------------------------------------------------------------------------------

    def node_template(self, nics: Sequence[str]) -> _NodeTemplate | None:
        """Node 0, just built (and nothing else yet; ``nics`` its scale-out NICs, in order), as a
        template for the other nodes; None if its wiring does not have the shape
        ``replicate_node`` relies on (then each node is built)."""
        g = self.g
        names = list(g)
        number = {v: i for i, v in enumerate(names)}
        attrs = [dict(data) for data in g.nodes.values()]
        for v, data in zip(names, attrs, strict=True):
            if not v.startswith(_NODE0) or data["node"] != 0:
                return None
            if not all(h.startswith(_NODE0) for h in data.get("home_nics", ())):
                return None
        if not all(v.startswith(_NODE0) for v in nics) or len(self.edge_log) != g.number_of_edges():
            return None
        edge_number = {e: k for k, e in enumerate(self.edge_log)}
        return _NodeTemplate(
            suffixes=[v[len(_NODE0) :] for v in names],
            attrs=attrs,
            edge_data=[dict(g.succ[u][v]) for u, v in self.edge_log],
            succ=[[(number[w], edge_number[(v, w)]) for w in g.succ[v]] for v in names],
            pred=[[(number[u], edge_number[(u, v)]) for u in g.pred[v]] for v in names],
            nics=[v[len(_NODE0) :] for v in nics],
        )

    def replicate_node(self, template: _NodeTemplate, n: int) -> list[str]:
        """Node ``n`` as a copy of ``template`` (node 0): what ``build_node(n)`` would add, in the
        same order; returns its scale-out NIC vertices in order.

        The copy is written straight into the graph's dicts (networkx's documented ``_node``,
        ``_succ`` and ``_pred``; one attribute dict per edge, shared by its two adjacency entries
        as ``add_edge`` does): each vertex's successors and predecessors in node 0's order, which
        is the order ``build_node(n)`` would insert them in. Adding the edges one call at a time
        made replicating three times slower.
        """
        prefix = f"n{n}."
        names = [prefix + sfx for sfx in template.suffixes]
        cut = len(_NODE0)
        data = [d.copy() for d in template.edge_data]
        g = self.g
        node_attrs, succ, pred = g._node, g._succ, g._pred
        for i, name in enumerate(names):
            attrs = template.attrs[i].copy()
            attrs["node"] = n
            home = attrs.get("home_nics")
            if home is not None:
                attrs["home_nics"] = [prefix + h[cut:] for h in home]
            node_attrs[name] = attrs
            succ[name] = {names[j]: data[k] for j, k in template.succ[i]}
            pred[name] = {names[j]: data[k] for j, k in template.pred[i]}
        clear = getattr(nx, "_clear_cache", None)
        if clear is not None:
            clear(g)  # as add_node / add_edge do (networkx >= 3.3 caches some results per graph)
        return [prefix + sfx for sfx in template.nics]

    def build_node(self, n: int) -> list[str]:
        """Wire node ``n``; returns its scale-out NIC vertices in order."""
        node = self.system.node
        cpu = node.cpus.device
        sockets = [self.vertex(f"n{n}.cpu{s}", "cpu", n, cpu.name) for s in range(node.cpus.count)]
        mem = node.host_memory
        per_socket_bw = node.host_memory_bandwidth_bytes_per_s / node.cpus.count
        for s, sock in enumerate(sockets):
            dimm = mem.nmp.name if mem.nmp else mem.device.name
            m = self.vertex(f"n{n}.mem{s}", "memory", n, dimm)
            self.connect(sock, m, per_socket_bw, mem.dimm_memory.latency_s, "memory", cpu.memory_channels)
        if len(sockets) > 1:
            ic = cpu.socket_interconnect
            if ic is None:
                raise ConfigError(
                    f"{self.system.name}: {len(sockets)} sockets of {cpu.name} but the CPU has no "
                    "'socket_interconnect' (its QPI/UPI/xGMI links)"
                )
            # Each socket's links are spread over its peers (4-socket Cooper Lake: 6 UPI = 2 per pair).
            per_pair = max(1, ic.links // (len(sockets) - 1))
            for a, b in ((a, b) for i, a in enumerate(sockets) for b in sockets[i + 1 :]):
                self.connect(
                    a, b, per_pair * ic.link.bandwidth_bytes_per_s, ic.link.latency_s, "socket", per_pair
                )

        accs: list[str] = []
        acc_group = node.accelerators
        pcie_parents: list[str] = []
        if node.pcie_switches is not None:
            sw = node.pcie_switches.device
            for k in range(node.pcie_switches.count):
                v = self.vertex(f"n{n}.pcisw{k}", "pcie_switch", n, sw.name, sw.latency_s)
                parent = sockets[k * len(sockets) // node.pcie_switches.count]
                # The uplink's time is in the switch vertex and in the device's own link latency
                # (measured device-to-root-complex), so the edge adds none.
                self.connect(v, parent, sw.port_bandwidth_bytes_per_s, 0.0, "pcie")
                pcie_parents.append(v)
        parents = pcie_parents or sockets
        switch_port = node.pcie_switches.device.port_bandwidth_bytes_per_s if node.pcie_switches else None
        if acc_group is not None:
            dev = acc_group.device
            for i in range(acc_group.count):
                v = self.vertex(gpu_id(n, i), ACCELERATOR, n, dev.name)
                self.g.nodes[v]["index"] = i
                self.link(
                    v, parents[i * len(parents) // acc_group.count], dev.host_interface, cap=switch_port
                )
                accs.append(v)
            self._scale_up(n, accs)

        nics: list[str] = []
        group = node.nics
        if group is not None:
            nics = self._nics(n, "nic", group, accs, parents, switch_port)
        fnics: list[str] = []
        if node.frontend_nics is not None:
            fnics = self._nics(n, "fnic", node.frontend_nics, [], sockets, None)
        self._home_nics(accs, nics if group is not None else fnics, node.scale_out_nics)
        if node.ssds is not None:
            ssd = node.ssds.device
            for j in range(node.ssds.count):
                v = self.vertex(f"n{n}.ssd{j}", "ssd", n, ssd.name)
                self.link(v, sockets[j * len(sockets) // node.ssds.count], ssd.interface)
        return nics if group is not None else fnics

    def _nics(
        self,
        n: int,
        prefix: str,
        group: NicGroup,
        accs: Sequence[str],
        parents: Sequence[str],
        cap: float | None,
    ) -> list[str]:
        nic = group.device
        count = self.system.node.nic_count(group)
        out = []
        for j in range(count):
            v = self.vertex(f"n{n}.{prefix}{j}", "nic", n, nic.name, nic.latency_s)
            if group.per_accelerator is not None and accs:
                # Next to its accelerator: on the same PCIe switch (or CPU).
                acc_index = j // group.per_accelerator
                parent = next(iter(p for p in self.g.successors(accs[acc_index]) if p in parents))
            else:
                parent = parents[j * len(parents) // count]
            self.link(v, parent, nic.host_interface, cap=cap)
            out.append(v)
        return out

    def _home_nics(self, accs: Sequence[str], nics: Sequence[str], group: NicGroup | None) -> None:
        """Each accelerator's scale-out NICs: its own, else those on its PCIe parent, else all."""
        if group is None or not nics:
            return
        for i, acc in enumerate(accs):
            if group.per_accelerator is not None:
                home = list(nics[i * group.per_accelerator : (i + 1) * group.per_accelerator])
            else:
                parents = set(self.g.successors(acc))
                home = [nic for nic in nics if parents & set(self.g.successors(nic))] or list(nics)
            self.g.nodes[acc]["home_nics"] = home

    def _scale_up(self, n: int, accs: list[str]) -> None:
        up = self.system.node.scale_up
        if up is None or up.fabric == "pcie":
            return
        dev = self.system.node.accelerators.device if self.system.node.accelerators else None
        assert dev is not None and dev.nvlink is not None
        link = dev.nvlink.link
        if up.fabric == "nvlink_mesh":
            assert up.mesh is not None
            for a, b, links in up.mesh:
                self.link(accs[a], accs[b], link, links, kind=SCALE_UP)
            return
        assert up.switch is not None and up.switches is not None
        switches = [
            self.vertex(f"n{n}.nvsw{k}", "nvswitch", n, up.switch.name, up.switch.latency_s)
            for k in range(up.switches)
        ]
        # Each NVLink ends in a switch port: the slower of the two sets a link's rate (equal on the
        # shipped parts; a switch given slower ports binds).
        port = up.switch.port_bandwidth_bytes_per_s
        for acc in accs:
            for k, count in enumerate(_spread(dev.nvlink.count, len(switches))):
                if count:
                    self.link(acc, switches[k], link, count, cap=count * port, kind=SCALE_UP)

    # -- scale-out -----------------------------------------------------------------------------

    def scale_out(self, nics_by_node: list[list[str]]) -> None:
        cluster = self.system.cluster
        so = cluster.scale_out
        if so is None or cluster.nodes == 1:
            return  # one node: no traffic leaves it, so no fabric is built (or powered)
        sw = so.switch
        endpoints = [nic for nics in nics_by_node for nic in nics]
        if so.topology == "single_switch" or (so.topology == "clos" and so.tiers == 1):
            if len(endpoints) > sw.ports:
                raise ConfigError(
                    f"{self.system.name}: {len(endpoints)} NICs do not fit on one {sw.name} "
                    f"({sw.ports} ports): set cluster.scale_out.topology: clos with tiers: 2 (--set "
                    "cluster.scale_out.topology=clos --set cluster.scale_out.tiers=2), or use fewer nodes"
                )
            self._attach(endpoints, [self.vertex("sw0", "switch", None, sw.name, sw.latency_s)], sw)
            return
        if so.topology == "clos":
            leaves = self._leaves("leaf", endpoints, sw, so.oversubscription, _leaf_limit(sw, so.tiers))
            self._upper_tiers("", leaves, sw, so.tiers)
            return
        # rail-optimized: one group of leaves per rail (NIC index within the node).
        rails = max(len(nics) for nics in nics_by_node)
        all_leaves: list[tuple[str, int]] = []
        for r in range(rails):
            rail_eps = [nics[r] for nics in nics_by_node if r < len(nics)]
            # With one tier a rail's leaf has no spine above it: every port takes a NIC.
            leaves = self._leaves(f"rail{r}.leaf", rail_eps, sw, so.oversubscription, uplinks=so.tiers >= 2)
            if so.tiers < 2 and len(leaves) > 1:
                # No spine: a rail's leaves would not reach each other (a tester's 33-node run
                # failed with "no path" deep in the simulation).
                per_leaf = sw.ports // max(1, self._nic_ports(rail_eps[0]))
                raise ConfigError(
                    f"{self.system.name}: cluster.scale_out.tiers: 1 (rail_optimized, no spine) needs a "
                    f"rail's {len(rail_eps)} NICs on one leaf, and a {sw.name} takes {per_leaf}; "
                    f"use tiers: 2 for {len(nics_by_node)} nodes"
                )
            all_leaves += leaves
        if so.tiers >= 2:
            self._upper_tiers("", all_leaves, sw, so.tiers)

    def _attach(self, endpoints: Sequence[str], switches: Sequence[str], sw: Switch) -> None:
        for i, ep in enumerate(endpoints):
            nic_bw = self._nic_bandwidth(ep)
            self.connect(
                ep,
                switches[i * len(switches) // len(endpoints)],
                min(nic_bw, sw.port_bandwidth_bytes_per_s * self._nic_ports(ep)),
                0.0,
                "network",
                self._nic_ports(ep),
            )

    def _nic_ports(self, ep: str) -> int:
        group = self.system.node.scale_out_nics
        assert group is not None
        return group.device.ports

    def _nic_bandwidth(self, ep: str) -> float:
        group = self.system.node.scale_out_nics
        assert group is not None
        return group.device.port_bandwidth_bytes_per_s * group.device.ports

    def _leaves(
        self,
        prefix: str,
        endpoints: Sequence[str],
        sw: Switch,
        oversub: float,
        most: int | None = None,
        *,
        uplinks: bool = True,
    ) -> list[tuple[str, int]]:
        """Leaves holding ``endpoints``; returns (leaf, uplink ports) pairs. ``most``: the leaves the
        tiers above take, which whole-node leaves must not exceed where split ones would not;
        without ``uplinks`` (no tier above) every port takes an endpoint.

        As few leaves as the ports allow, the endpoints spread evenly over them (whole nodes where
        a leaf takes whole nodes), as an operator cables them: filled one by one, 16 ZionEX nodes
        at 2:1 made leaves of 5, 5, 5 and 1 node, and the last leaf's uplinks (its ``1 / o`` share,
        a quarter of a full leaf's) carried all its node's traffic out, slowing every ring through
        it (a tester's find: 2:1 ran slower than 3:1). Spread 4, 4, 4, 4, every leaf has the same
        share. A step can still be slower at a lower oversubscription: where fewer ports go up, a
        leaf takes more nodes, so fewer leaves hold the nodes and more of their traffic stays
        under a leaf; that is the fabric's, not the cabling's."""
        up = max(1, round(sw.ports / (1 + oversub))) if uplinks else 0
        down = sw.ports - up
        ports_per_ep = self._nic_ports(endpoints[0]) if endpoints else 1
        per_leaf = max(1, down // ports_per_ep)
        # Whole nodes to a leaf where a leaf holds one: a node split over two leaves would send
        # part of its traffic through the spine for no reason (endpoints come node by node).
        per_node = self._endpoints_per_node(endpoints)
        whole = per_leaf - per_leaf % per_node if per_leaf >= per_node > 1 else per_leaf
        unit = 1  # endpoints kept together on a leaf: a node's, or one
        if most is None or math.ceil(len(endpoints) / whole) <= most:
            per_leaf = whole
            if per_leaf >= per_node > 1 and len(endpoints) % per_node == 0:
                unit = per_node
        count = math.ceil(len(endpoints) / per_leaf)
        # ``count`` leaves of at most ``per_leaf``: the units shared as evenly as they go, the
        # leaves listed first taking one more.
        base, extra = divmod(len(endpoints) // unit, count)
        first = 0
        leaves = []
        for k in range(count):
            # Numbered on from the leaves already under ``prefix``: only this method makes vertices
            # named ``prefix`` + digits, so a counter gives the number a scan of the graph
            # (``_existing``) would, without visiting every vertex once per leaf.
            number = self._leaf_count.get(prefix, 0)
            self._leaf_count[prefix] = number + 1
            leaf = self.vertex(f"{prefix}{number}", "switch", None, sw.name, sw.latency_s)
            size = (base + (k < extra)) * unit
            mine = endpoints[first : first + size]
            first += size
            self._attach(mine, [leaf], sw)
            # Uplinks for the bandwidth the leaf's endpoints bring down, at the ports' rate: the
            # oversubscription is a bandwidth ratio (``ScaleOut``). Counted in ports, 100G NICs on
            # 200G ports got twice the uplink bandwidth the ratio says (a tester's "4:1" was 2:1).
            down_bytes_per_s = sum(self.g.edges[ep, leaf]["bandwidth_bytes_per_s"] for ep in mine)
            wanted = math.ceil(down_bytes_per_s / (oversub * sw.port_bandwidth_bytes_per_s))
            leaves.append((leaf, min(up, max(1, wanted))))
        return leaves

    def _endpoints_per_node(self, endpoints: Sequence[str]) -> int:
        """How many of ``endpoints`` (listed node by node) the first one's node has."""
        nodes = self.g.nodes
        first = nodes[endpoints[0]].get("node") if endpoints else None
        return sum(1 for _ in itertools.takewhile(lambda ep: nodes[ep].get("node") == first, endpoints))

    def _upper_tiers(self, prefix: str, lower: list[tuple[str, int]], sw: Switch, tiers: int) -> None:
        if len(lower) <= 1:
            return  # one leaf: nothing above it carries traffic
        if tiers == 2:
            if len(lower) > _leaf_limit(sw, tiers):
                raise ConfigError(
                    f"{self.system.name}: {self.system.cluster.nodes} nodes need {len(lower)} leaves, more "
                    f"than the {sw.ports}-port spine radix of {sw.name} in a 2-tier Clos takes: set "
                    "cluster.scale_out.tiers: 3 (--set cluster.scale_out.tiers=3), or use fewer nodes"
                )
            self._top(f"{prefix}spine", lower, sw)
            return
        pod_size = max(1, sw.ports // 2)
        pods = math.ceil(len(lower) / pod_size)
        if len(lower) > _leaf_limit(sw, tiers):
            # A core switch gives each pod one of its ports, so every two pods share a core: a
            # 3-tier Clos of R-port switches holds at most R pods (R^3 / 4 endpoints at one port each).
            raise ConfigError(
                f"{self.system.name}: {len(lower)} leaves make {pods} pods of {pod_size}, more than the "
                f"{sw.ports}-port core radix of {sw.name} in a 3-tier Clos (at most "
                f"{sw.ports**3 // 4:,} single-port endpoints); use switches with more ports"
            )
        aggs: list[tuple[str, int]] = []
        for p in range(pods):
            pod = lower[p * pod_size : (p + 1) * pod_size]
            uplinks = sum(u for _, u in pod)
            n_aggs = max(1, math.ceil(uplinks / (sw.ports // 2)))
            names = [
                self.vertex(f"pod{p}.agg{k}", "switch", None, sw.name, sw.latency_s) for k in range(n_aggs)
            ]
            down_used = [0] * n_aggs
            start = 0
            for leaf, u in pod:
                for k, c in enumerate(_rotated_spread(u, n_aggs, start)):
                    if c:
                        self.connect(leaf, names[k], c * sw.port_bandwidth_bytes_per_s, 0.0, "network", c)
                        down_used[k] += c
                start += u % n_aggs
            aggs += [(name, down_used[k]) for k, name in enumerate(names)]
        if len(aggs) > 1:
            self._top("core", aggs, sw)

    def _top(self, prefix: str, lower: list[tuple[str, int]], sw: Switch) -> None:
        total = sum(u for _, u in lower)
        count = max(1, math.ceil(total / sw.ports))
        tops = [self.vertex(f"{prefix}{k}", "switch", None, sw.name, sw.latency_s) for k in range(count)]
        start = 0
        for name, u in lower:
            for k, c in enumerate(_rotated_spread(u, count, start)):
                if c:
                    self.connect(name, tops[k], c * sw.port_bandwidth_bytes_per_s, 0.0, "network", c)
            start += u % count


def _natural_key(name: str) -> tuple[object, ...]:
    """Sort key reading the digit runs of a vertex name as numbers (``n0.gpu10`` after ``n0.gpu9``)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


class _LazyAdjacency(dict[str, list[str]]):
    """A vertex -> successors dict that computes an entry the first time it is asked for."""

    def __init__(self, successors: Callable[[str], list[str]]) -> None:
        super().__init__()
        self._successors = successors

    def __missing__(self, v: str) -> list[str]:
        found = self[v] = self._successors(v)
        return found


def _disjoint_paths_flow(
    succ: Mapping[str, Mapping[str, Any]], paths: tuple[tuple[str, ...], ...]
) -> float | None:
    """The max-flow over ``paths`` where they share no vertex but their two ends (GPU ``i`` -> each
    NVSwitch chip -> GPU ``j``): the sum of their widths (each its weakest link's capacity), as a
    flow network of disjoint chains has. None otherwise, or where the capacities are not whole
    numbers whose total stays below 2**53: only then is every sum of them exact, so that this one
    and the one ``nx.maximum_flow_value`` works out are the same float (the caller's condition
    for sharing max-flows, ``Topology._shaped_max_flow``). It spares that call's graph and
    preflow-push, which every new topology paid once for its node's GPU pairs."""
    inner = [v for path in paths for v in path[1:-1]]
    if len(set(inner)) != len(inner):
        return None
    total = 0.0
    flow = 0.0
    for path in paths:
        width = math.inf
        for a, b in itertools.pairwise(path):
            capacity = succ[a][b]["bandwidth_bytes_per_s"]
            if not float(capacity).is_integer():
                return None
            total += capacity
            width = min(width, capacity)
        flow += width
    return flow if total < 2.0**53 and math.isfinite(flow) else None


def _all_shortest_paths(
    adjacency: dict[str, list[str]], src: str, dst: str, ok: Callable[[str], bool]
) -> tuple[tuple[str, ...], ...]:
    """``nx.all_shortest_paths(view, src, dst)`` in the same order, ``view`` keeping the vertices
    ``ok`` accepts: the same breadth-first predecessor lists (stopped once ``dst``'s level is done,
    which completes every list a shortest path uses), then the same depth-first walk back."""
    seen = {src: 0}
    pred: dict[str, list[str]] = {src: []}
    level = 0
    nextlevel = [src]
    while nextlevel and dst not in seen:
        level += 1
        thislevel, nextlevel = nextlevel, []
        for v in thislevel:
            for w in adjacency[v]:
                if w not in seen:
                    if not ok(w):
                        continue
                    pred[w] = [v]
                    seen[w] = level
                    nextlevel.append(w)
                elif seen[w] == level:
                    pred[w].append(v)
    if dst not in pred:
        return ()
    return _paths_back(pred, src, dst)


def _shortest_path_predecessors(
    adjacency: dict[str, list[str]], src: str, expand: Callable[[str], bool], targets: Sequence[str]
) -> dict[str, list[str]]:
    """Breadth-first from ``src`` over ``adjacency``: the vertices reached, with their predecessors
    on shortest paths in discovery order (as ``_all_shortest_paths`` lists them). Only ``src`` and
    the vertices ``expand`` accepts are searched on from; the others are reached but end there. It
    stops after the level where the last of ``targets`` is reached (every list a shortest path to
    a target uses is complete by then), or when nothing is left to search."""
    seen = {src: 0}
    pred: dict[str, list[str]] = {src: []}
    level = 0
    nextlevel = [src]
    missing = {t for t in targets if t != src}
    while nextlevel and missing:
        level += 1
        thislevel, nextlevel = nextlevel, []
        for v in thislevel:
            for w in adjacency[v]:
                if w not in seen:
                    missing.discard(w)
                    pred[w] = [v]
                    seen[w] = level
                    if expand(w):
                        nextlevel.append(w)
                elif seen[w] == level:
                    pred[w].append(v)
    return pred


def _layered_paths_back(
    pred: dict[str, list[str]], v: str, back: dict[str, list[tuple[str, ...]]]
) -> list[tuple[str, ...]]:
    """``_paths_back(pred, src, v)`` where every predecessor is one level nearer ``src`` (as a
    breadth-first search lists them), with ``back`` holding ``src: [(src,)]`` and the paths found
    so far. No vertex can then come up twice on a walk back (its ``on_path`` test never fails),
    so the walk lists, for each predecessor ``p`` of ``v`` in order, the paths to ``p`` in their
    order, each extended by ``v``: built once per vertex and shared by every ``dst`` behind it."""
    found = back.get(v)
    if found is None:
        found = [(*q, v) for p in pred[v] for q in _layered_paths_back(pred, p, back)]
        back[v] = found
    return found


def _paths_back(pred: dict[str, list[str]], src: str, dst: str) -> tuple[tuple[str, ...], ...]:
    """Every shortest path from ``src`` to ``dst`` over the predecessor lists ``pred``, in the order
    of ``nx.all_shortest_paths``' depth-first walk back from ``dst``."""
    out = []
    on_path = {dst}
    stack = [[dst, 0]]
    top = 0
    while top >= 0:
        node, i = stack[top]
        if node == src:
            out.append(tuple(p for p, _ in reversed(stack[: top + 1])))
        if len(pred[node]) > i:
            stack[top][1] = i + 1
            nxt = pred[node][i]
            if nxt in on_path:
                continue
            on_path.add(nxt)
            top += 1
            if top == len(stack):
                stack.append([nxt, 0])
            else:
                stack[top][:] = [nxt, 0]
        else:
            on_path.discard(node)
            top -= 1
    return tuple(out)


def _integral_max_flow_arrays(
    size: int,
    rows: NDArray[np.int64],
    cols: NDArray[np.int64],
    caps: NDArray[np.float64],
    sources: Sequence[int],
    sinks: Sequence[int],
) -> float | None:
    """``_integral_max_flow`` over numbered vertices (``0 .. size - 1``; edge ``k`` from
    ``rows[k]`` to ``cols[k]`` with capacity ``caps[k]``), for the whole cluster's bisection.

    The same exact value: with integral capacities every exact max-flow is the same integer,
    whatever the vertex numbering (here graph order, not first appearance) or algorithm, and
    networkx's preflow-push on the float capacities finds it too (every partial sum is an integer
    below 2**53). Rather than ``_integral_max_flow``'s conservative bound on the flow value (the
    sum of the source edges, over 2**31 on a 1024-GPU cluster, which sent it to networkx at some
    600 ms), what scipy's int32 arithmetic needs is checked: every edge's capacity and the
    residual of an edge and its reverse (at most the sum of their capacities, so at most twice
    the largest) fit in int32; an edge's flow is bounded by its capacity, and the flow value is
    summed by numpy in int64.
    """
    if len(caps) == 0:
        return None
    if not bool(np.all((caps >= 0) & (caps < 2**52) & (np.floor(caps) == caps))):
        return None
    ints = caps.astype(np.int64)  # exact: integers below 2**52
    scale = int(np.gcd.reduce(ints))
    if scale == 0:
        return 0.0
    limit = 2**31 - 1
    edge_vals = ints // scale
    out_cap = np.zeros(size, dtype=np.int64)
    in_cap = np.zeros(size, dtype=np.int64)
    np.add.at(out_cap, rows, edge_vals)
    np.add.at(in_cap, cols, edge_vals)
    # A source's unbounded edge gets its vertex's capacity out, a sink's its capacity in (no flow
    # through them can exceed that); an endpoint without links carries nothing.
    src = np.asarray(sources, dtype=np.int64)
    src = src[out_cap[src] > 0]
    dst = np.asarray(sinks, dtype=np.int64)
    dst = dst[in_cap[dst] > 0]
    source, sink = size, size + 1
    vals = np.concatenate([edge_vals, out_cap[src], in_cap[dst]])
    largest = int(vals.max())
    # ``_integral_max_flow``'s own test is kept as an alternative, so that no network it solves
    # with scipy falls back to networkx here.
    if 2 * largest > limit and (largest > limit or int(out_cap[src].sum()) > limit):
        return None
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import maximum_flow

    all_rows = np.concatenate([rows, np.full(len(src), source, dtype=np.int64), dst])
    all_cols = np.concatenate([cols, src, np.full(len(dst), sink, dtype=np.int64)])
    matrix = csr_array((vals.astype(np.int32), (all_rows, all_cols)), shape=(size + 2, size + 2))
    return float(int(maximum_flow(matrix, source, sink).flow_value) * scale)


def _spread(total: int, bins: int) -> list[int]:
    """``total`` items over ``bins`` as evenly as possible, extras at both ends (5-4-4-5)."""
    base, extra = divmod(total, bins)
    counts = [base] * bins
    order = [i for pair in zip(range(bins), range(bins - 1, -1, -1), strict=False) for i in pair]
    seen: list[int] = []
    for i in order:
        if i not in seen:
            seen.append(i)
    for i in seen[:extra]:
        counts[i] += 1
    return counts


def _rotated_spread(total: int, bins: int, start: int) -> list[int]:
    """``total`` over ``bins`` evenly, the extras starting at ``start`` (mod ``bins``).

    Successive lower switches pass on ``start``, so the extras of all of them land on different
    upper switches and no upper switch ends up with more ports than its share.
    """
    base, extra = divmod(total, bins)
    counts = [base] * bins
    for i in range(extra):
        counts[(start + i) % bins] += 1
    return counts


def build_topology(system: System) -> Topology:
    """The graph of ``system`` (see the module docstring for the construction rules).

    Every node is built from the same node spec and its wiring depends on the node's number only
    through its vertices' names (``n<k>.``) and ``node`` attribute, so node 0 is built and the
    others are copies of it (``_NodeTemplate``): the same vertices, attributes and edges, inserted
    in the same order, hence the same graph, without running the builder once per node.
    """
    builder = _Builder(system)
    nics: list[list[str]] = []
    template: _NodeTemplate | None = None
    for n in range(system.num_nodes):
        if template is not None:
            nics.append(builder.replicate_node(template, n))
            continue
        nics.append(builder.build_node(n))
        if n == 0:
            template = builder.node_template(nics[0])
    builder.scale_out(nics)
    clear = getattr(nx, "_clear_cache", None)
    if clear is not None:
        clear(builder.g)  # as add_edge does (``_Builder.connect`` writes the graph's dicts)
    return Topology(system, builder.g)
