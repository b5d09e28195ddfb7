"""Fidelity 2 of communication: flows on the topology's directed links, shared max-min fairly.

Input: ``Flow`` s (``recsim.cost.collectives``), e.g. ``collective_flows(op, topology)`` of one or
several collectives. Each flow follows ``Topology.route(src, dst)``: the equal-cost (fewest-hop)
paths between its ends.

ECMP: a flow is **split over all its equal-cost paths** (one subflow per path), as NVSwitch
striping and adaptive routing / packet spraying do, rather than hashed onto one: hashing would cap
a GPU-to-GPU flow through four NVSwitch chips at one chip's links (125 of 450 GB/s on DGX H100) and
make results depend on a hash. Each subflow weighs ``1 / paths`` so that a flow, not a path, is the
unit of fairness; subflows are filled independently, so when one path saturates the others keep
growing and a lone flow reaches the max-flow of its path set (the bandwidth ``Route`` reports).

Allocation (``max_min_rates``): weighted progressive filling (water-filling). All unfrozen
subflows grow at rates proportional to their weights until some link is full; the subflows on full
links freeze; repeat until every subflow is frozen. The result never exceeds a link's capacity and
is Pareto-efficient: every subflow (so every flow) crosses a saturated link, its bottleneck. A flow
of ``efficiency`` e (its protocol's achieved fraction of the link rate) occupies ``bytes / e`` of
link capacity: capacities are shared in wire bytes, payload rate = e x wire rate. A flow with a
rate limit of its own (``Flow.cap_bytes_per_s``: a pair staged through host memory, NCCL's SHM)
also crosses a link of its own of that capacity (``with_own_links``), which no other flow shares:
it keeps the cap while its links have room and shares them max-min fairly once they do not.

Simulation (``simulate_flows``): flows are grouped by ``group`` (one collective each); groups run
concurrently, the phases of a group in order, and a phase ends when its last flow ends. Rates are
recomputed whenever a flow finishes or a phase starts (event-driven fluid model); a phase that runs
alone is memoised by its flow set (a ring's ``2(n-1)`` identical phases cost one allocation).
Contention between collectives, oversubscribed uplinks and stragglers (a slower NIC: lower the
capacity of its edge in ``topology.graph``) all come out of the link capacities. Latency is not
simulated here: ``collective_time_flows_s`` adds the alpha-beta model's latency terms around the
simulated transfer time, so with no contention it equals ``collective_time_s``.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from recsim.cost.collectives import Flow, collective_cost, collective_flows, phase_ranges
from recsim.cost.collectives.base import width_shares
from recsim.cost.collectives.model import OpInput, StageCost
from recsim.hardware.topology import Topology

Edge = tuple[str, str]
_SATURATED = 1e-9  # relative residual capacity below which a link counts as full
_DONE = 1e-9  # relative remaining bytes below which a flow counts as finished


@dataclass(frozen=True)
class Allocation:
    """Rates of a set of concurrent flows (bytes/s) and the load they put on each link."""

    rates: NDArray[np.float64]  # payload rate per flow
    wire_rates: NDArray[np.float64]  # link capacity used per flow (payload / efficiency)
    edge_load: dict[Edge, float]
    capacity: dict[Edge, float]
    subflows: list[tuple[int, tuple[Edge, ...], float]]  # (flow, path edges, wire rate)

    def saturated(self, edge: Edge) -> bool:
        return self.edge_load[edge] >= self.capacity[edge] * (1 - 1e-6)


#: ``_EdgeIndex.slot_info``: a slot's group (the width patterns of its route's three segments, its
#: part, the shape of its segment's link-id matrix: slots alike share their split), that matrix
#: (None where the segment's paths differ in length: they are then loaded one by one) and the paths.
#: Slots whose link ids ``edge_loads`` stacks at once: a bounded scratch array (an all-to-all over
#: 512 GPUs has 2.6 x 10^5 fabric segments, tens of links each), with numpy's per-call overhead
#: spread over a few thousand slots.
_STACKED_SLOTS = 4096
_Shape = tuple[int, int, int]  # the width patterns' numbers of a composed route's three segments
_Group = tuple[_Shape, int, tuple[int, ...]]
_SlotInfo = tuple[_Group, NDArray[np.int32] | None, tuple[tuple[str, ...], ...]]


class _EdgeIndex:
    """Per-topology numbering of the directed links and, per (src, dst), its paths as link ids.

    Only the graph's structure is cached (routes are memoised on the topology anyway); capacities
    are read afresh at every allocation, so lowering an edge's bandwidth in place still counts.
    The pairs' link ids are kept as int32 (a link id is far below 2^31) and the path lengths of a
    pair whose paths are all as long are one array shared by every such pair: an all-to-all over
    512 GPUs has 2.6 x 10^5 pairs and 1.6 x 10^7 link ids, and the int64 ids and per-pair length
    arrays had cost ~240 MiB where this costs ~130.
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.edges: list[Edge] = list(topology.graph.edges)
        self.ids = {e: k for k, e in enumerate(self.edges)}
        self.pairs: dict[tuple[str, str], tuple[NDArray[np.int32], NDArray[np.int32]]] = {}
        # node -> node 0's edge ids (inside the node) as that node's (``local_pair``)
        self.node_edges: dict[int, NDArray[np.int32] | None] = {}
        self.segments: dict[int, tuple[tuple[tuple[str, ...], ...], NDArray[np.int32] | None]] = {}
        self._lengths: dict[tuple[int, int], NDArray[np.int32]] = {}
        # ``edge_loads``' split of composed routes, valid for the capacities it was read at
        # (``widths_for``): per (src, dst) its three slots (numbers into ``slot_info``: a segment,
        # its part of the route and the three segments' width patterns), or () where the route does
        # not compose; the slots' numbers and groups; per segment id its pattern's number; the
        # patterns; per (patterns, part) the segment's paths' shares.
        self._widths_capacity: NDArray[np.float64] | None = None
        self.pair_slots: dict[tuple[str, str], tuple[int, ...]] = {}
        self.slots: dict[tuple[int, int, _Shape], int] = {}
        self.slot_info: list[_SlotInfo] = []
        self.segment_patterns: dict[int, int] = {}
        self.patterns: dict[tuple[float, ...], int] = {}
        self._shares: dict[_Shape, tuple[NDArray[np.float64], ...]] = {}
        self._shapes: dict[_Shape, _Shape] = {}  # one tuple for the pairs alike
        self._groups: dict[_Group, _Group] = {}  # one tuple for the slots alike

    def widths_for(self, capacity: NDArray[np.float64]) -> None:
        """Keep ``edge_loads``' slots while the links' capacities are those they were read at;
        forget them where a capacity changed (lowered in place: a straggler)."""
        if self._widths_capacity is None or not np.array_equal(self._widths_capacity, capacity):
            self._widths_capacity = capacity.copy()
            for table in (
                self.pair_slots,
                self.slots,
                self.segment_patterns,
                self.patterns,
                self._shares,
                self._shapes,
                self._groups,
            ):
                table.clear()
            self.slot_info.clear()

    def composed_slots(self, src: str, dst: str) -> tuple[int, ...]:
        """The slots of the route from ``src`` to ``dst`` (``edge_loads``): its three segments, each
        with its part and the three segments' width patterns; () where the route does not compose."""
        pieces = _segments_of(self.topology, src, dst)
        found: tuple[int, ...] = ()
        if pieces is not None:  # each segment's tuple is the topology's own, kept there
            shape = (self._pattern(pieces[0]), self._pattern(pieces[1]), self._pattern(pieces[2]))
            shape = self._shapes.setdefault(shape, shape)
            slots = []
            for part, paths in enumerate(pieces):
                key = (id(paths), part, shape)
                slot = self.slots.get(key)
                if slot is None:
                    slot = self.slots[key] = len(self.slot_info)
                    ids = self._segment_ids(paths)
                    group = (shape, part, () if ids is None else ids.shape)
                    group = self._groups.setdefault(group, group)
                    self.slot_info.append((group, ids, paths))
                slots.append(slot)
            found = tuple(slots)
        self.pair_slots[(src, dst)] = found
        return found

    def slot_shares(self, shape: _Shape, part: int) -> NDArray[np.float64]:
        """The share of a route's bytes each path of its segment ``part`` carries, where its three
        segments' width patterns are ``shape`` (``_segment_shares``)."""
        found = self._shares.get(shape)
        if found is None:
            widths = list(self.patterns)  # by pattern number
            found = self._shares[shape] = _segment_shares(*(widths[k] for k in shape))
        return found[part]

    def _pattern(self, paths: tuple[tuple[str, ...], ...]) -> int:
        """The number of the pattern of a route segment's path widths (each its weakest link's rate,
        at the capacities of ``widths_for``)."""
        found = self.segment_patterns.get(id(paths))
        if found is None:
            capacity = self._widths_capacity
            assert capacity is not None
            ids = self._segment_ids(paths)  # keeps the tuple alive: its id stays its own
            if ids is not None:
                width = tuple(capacity[ids].min(axis=1).tolist())
            else:  # paths of different lengths (none without a link on a shipped topology)
                width = tuple(
                    min((float(capacity[self.ids[e]]) for e in itertools.pairwise(p)), default=math.inf)
                    for p in paths
                )
            found = self.segment_patterns[id(paths)] = self.patterns.setdefault(width, len(self.patterns))
        return found

    def pair(self, src: str, dst: str) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
        """(link ids of every path, one after the other; number of links of each path), read only."""
        cached = self.pairs.get((src, dst))
        if cached is None:
            cached = self._composed(src, dst) or self._listed(self.topology.edge_paths(src, dst))
            self.pairs[(src, dst)] = cached
        return cached

    def local_pair(self, src: str, dst: str) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
        """``pair(src, dst)`` for two vertices of one node ``k``: node 0's route between the same
        vertices of node 0, its links renamed to node ``k``'s. Every node is built from one spec
        (``recsim.hardware.topology``), and a route inside a node keeps to the node (a third
        node's vertices never forward; the network is no shortcut), so its routes are node 0's;
        ``tests/unit/test_resources.py`` checks them against the node's own search. Spares a path
        search per pair of every node but the first (host routes, a collective's hops)."""
        prefix = src.partition(".")[0]
        if prefix != dst.partition(".")[0] or prefix in ("", "n0") or not prefix.startswith("n"):
            return self.pair(src, dst)
        node = prefix[1:]
        if not node.isdigit():
            return self.pair(src, dst)
        if int(node) not in self.node_edges:
            self.node_edges[int(node)] = self._node_edges(prefix)
        mapped = self.node_edges[int(node)]
        head = len(prefix) + 1
        if mapped is None or ("n0." + src[head:], "n0." + dst[head:]) == (src, dst):
            return self.pair(src, dst)
        cols, lens = self.pair("n0." + src[head:], "n0." + dst[head:])
        out = mapped[cols]
        if (out < 0).any():
            return self.pair(src, dst)
        return out, lens

    def _node_edges(self, prefix: str) -> NDArray[np.int32] | None:
        """Per edge id: the id of the same edge of node ``prefix`` when the edge joins two of node 0's
        vertices (-1 otherwise); None when node ``prefix`` lacks one of them (not built alike)."""
        out = np.full(len(self.edges), -1, dtype=np.int32)
        for k, (a, b) in enumerate(self.edges):
            if a.startswith("n0.") and b.startswith("n0."):
                theirs = self.ids.get((f"{prefix}.{a[3:]}", f"{prefix}.{b[3:]}"))
                if theirs is None:
                    return None
                out[k] = theirs
        return out

    def _listed(self, paths: Sequence[Sequence[Edge]]) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
        cols = np.array([self.ids[e] for path in paths for e in path], dtype=np.int32)
        return cols, np.array([len(path) for path in paths], dtype=np.int32)

    def _same_lengths(self, paths: int, links: int) -> NDArray[np.int32]:
        """``paths`` lengths of ``links`` each: one array for every pair that has them."""
        found = self._lengths.get((paths, links))
        if found is None:
            found = self._lengths[(paths, links)] = np.full(paths, links, dtype=np.int32)
            found.flags.writeable = False
        return found

    def _segment_ids(self, paths: tuple[tuple[str, ...], ...]) -> NDArray[np.int32] | None:
        """A route segment's paths as a (paths x links) matrix of link ids (None if their lengths
        differ), memoised by the segment (``Topology`` keeps each segment's tuple)."""
        key = id(paths)
        found = self.segments.get(key)
        if found is None:
            lengths = {len(p) for p in paths}
            ids = None
            if len(lengths) == 1 and lengths != {1}:
                ids = np.array([[self.ids[e] for e in itertools.pairwise(p)] for p in paths], dtype=np.int32)
            found = self.segments[key] = (paths, ids)  # the tuple kept alive: its id stays its own
        return found[1]

    def _composed(self, src: str, dst: str) -> tuple[NDArray[np.int32], NDArray[np.int32]] | None:
        """The paths between accelerators of two nodes from their three segments' link ids, in the
        order ``Topology`` composes the paths themselves (``_find_paths``: the source segment's
        choices vary fastest, then the fabric's, then the destination's): at 1024 GPUs the pairs
        of an all-to-all are 10^5 and listing each path's edges in Python dominated. None where
        the topology does not compose (it then searches, and so do we)."""
        t = self.topology
        split = t._split(src, dst)
        if split is None:
            return None
        via, nic_a, nic_b = split
        first, fabric, last = (
            t.source_segment(src, via, nic_a),
            t._fabric_segment(nic_a, nic_b),
            t._segment(nic_b, dst, "dst"),
        )
        if not (first and fabric and last):
            return None
        s, f, d = self._segment_ids(first), self._segment_ids(fabric), self._segment_ids(last)
        if s is None or f is None or d is None:
            return None
        ls, lf = s.shape[1], f.shape[1]
        cols = np.empty((len(d), len(f), len(s), ls + lf + d.shape[1]), dtype=np.int32)
        cols[..., :ls] = s[None, None, :, :]
        cols[..., ls : ls + lf] = f[None, :, None, :]
        cols[..., ls + lf :] = d[:, None, None, :]
        n = cols.shape[0] * cols.shape[1] * cols.shape[2]
        return cols.reshape(-1), self._same_lengths(n, cols.shape[3])

    def capacity(self) -> NDArray[np.float64]:
        data = self.topology.graph.edges(data="bandwidth_bytes_per_s")
        return np.array([bw for _, _, bw in data], dtype=float)


def _edge_index(topology: Topology) -> _EdgeIndex:
    """The topology's ``_EdgeIndex``, kept by it (``Topology.derived``); made again where the
    graph has gained or lost links since."""
    edges = topology.graph.number_of_edges()
    return topology.derived(_EdgeIndex, lambda index: len(index.edges) != edges)


@dataclass(frozen=True)
class _FlowSet:
    """Flows as arrays: the link ids of all their subflows' paths, in flow then path order.

    The arrays derived from them (subflow weights, entry offsets) are computed once per set and
    kept: the DES fills the same set (one collective's flows, or a few collectives' together) over
    and over as its flows finish.
    """

    cols: NDArray[np.int64]  # link id of each (subflow, link) entry
    sub_len: NDArray[np.int64]  # links per subflow
    n_paths: NDArray[np.int64]  # subflows (equal-cost paths) per flow

    @staticmethod
    def of(flows: Sequence[Flow], topology: Topology) -> _FlowSet:
        return _FlowSet.of_pairs([f.src for f in flows], [f.dst for f in flows], topology)

    @staticmethod
    def of_pairs(srcs: Sequence[str], dsts: Sequence[str], topology: Topology) -> _FlowSet:
        """The flows from ``srcs[i]`` to ``dsts[i]``."""
        index = _edge_index(topology)
        pair = index.pair
        parts = [pair(s, d) for s, d in zip(srcs, dsts, strict=True)]
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return _FlowSet(empty, empty, empty)
        # The set's arrays as int64 (the index keeps int32): a filling indexes and counts with
        # them every round, and numpy casts other integers to its index type each time.
        return _FlowSet(
            np.concatenate([c for c, _ in parts], dtype=np.int64),
            np.concatenate([n for _, n in parts], dtype=np.int64),
            np.fromiter((len(n) for _, n in parts), dtype=np.int64, count=len(parts)),
        )

    @staticmethod
    def concat(sets: Sequence[_FlowSet]) -> _FlowSet:
        if len(sets) == 1:
            return sets[0]
        return _FlowSet(
            np.concatenate([s.cols for s in sets]),
            np.concatenate([s.sub_len for s in sets]),
            np.concatenate([s.n_paths for s in sets]),
        )

    def subset(self, keep: NDArray[np.bool_]) -> _FlowSet:
        """The flows where ``keep`` is true."""
        sub_keep = np.repeat(keep, self.n_paths)
        return _FlowSet(
            self.cols[np.repeat(sub_keep, self.sub_len)], self.sub_len[sub_keep], self.n_paths[keep]
        )

    @property
    def n_flows(self) -> int:
        return len(self.n_paths)

    @cached_property
    def sub_weight(self) -> NDArray[np.float64]:
        """Weight of each subflow: ``1 / paths`` of its flow, so that a flow is the unit of fairness."""
        weight: NDArray[np.float64] = 1.0 / np.repeat(self.n_paths, self.n_paths).astype(float)
        return weight

    @cached_property
    def entry_weight(self) -> NDArray[np.float64]:
        """``sub_weight`` of the subflow of each (subflow, link) entry."""
        weight: NDArray[np.float64] = np.repeat(self.sub_weight, self.sub_len)
        return weight

    @cached_property
    def sub_start(self) -> NDArray[np.int64]:
        """Offset of each subflow's first entry."""
        start: NDArray[np.int64] = np.cumsum(self.sub_len) - self.sub_len
        return start

    @cached_property
    def flow_sub_start(self) -> NDArray[np.int64]:
        """Offset of each flow's first subflow."""
        start: NDArray[np.int64] = np.cumsum(self.n_paths) - self.n_paths
        return start

    @cached_property
    def flow_entries(self) -> NDArray[np.int64]:
        """Entries (links over all paths) per flow."""
        entries: NDArray[np.int64] = np.bincount(
            self.flow_of_sub, weights=self.sub_len, minlength=self.n_flows
        ).astype(np.int64)
        return entries

    @cached_property
    def flow_of_sub(self) -> NDArray[np.int64]:
        flow: NDArray[np.int64] = np.repeat(np.arange(self.n_flows), self.n_paths)
        return flow


def path_split(
    cols: NDArray[np.integer], lens: NDArray[np.integer], capacity: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Each path's share of a flow's bytes, its paths given as link ids one after the other
    (``cols``; ``lens``: links per path, as ``_EdgeIndex.pair`` gives them) over links of
    ``capacity``: ``width_shares`` of each path's weakest link, the rule the cost model splits a
    pair's bytes by (``route_edge_shares``) and what the DES filling gives a lone flow."""
    if not len(cols):  # from a vertex to itself: no link to load
        return np.full(len(lens), 1.0 / max(1, len(lens)))
    starts = np.cumsum(lens) - lens
    return width_shares(np.minimum.reduceat(capacity[cols], starts))


def edge_loads(
    srcs: Sequence[str], dsts: Sequence[str], wire: NDArray[np.float64], topology: Topology
) -> NDArray[np.float64]:
    """Wire bytes each link (by ``_EdgeIndex`` id) carries when ``wire[k]`` bytes go from ``srcs[k]``
    to ``dsts[k]``, each flow split over its equal-cost paths in proportion to each path's weakest
    link (``width_shares``, the cost model's ``route_edge_shares``: what ``route_edge_shares`` of
    every flow adds up to). An even split (the subflows' weights) made a dgx-h100 all-to-all's
    busiest NVLink 12.5 % heavier than the DES moves: its GPUs reach the four NVSwitch chips over
    5, 4, 4 and 5 links, and the DES filling gives the 5-link paths 5/4 of the 4-link ones' rate.

    A route between accelerators of two nodes is every combination of its three segments' paths
    (``_EdgeIndex._composed``): the source's to the NIC it leaves by, the fabric's between the two
    NICs and the destination's; a combined path's width is the least of its three parts'. A
    segment's paths' shares depend on the three segments' widths only, so the bytes are gathered
    per slot (a segment, its part of the route and the three segments' width patterns,
    ``_EdgeIndex.composed_slots``, kept while the capacities stay: an all-to-all's n^2 pairs share
    n source segments and a few patterns), and the slots alike loaded together, each path's links
    its share of its slot's bytes; a route that does not compose is split as a whole
    (``path_split``)."""
    index = _edge_index(topology)
    capacity = index.capacity()  # read afresh, as the DES filling does
    index.widths_for(capacity)
    loads = np.zeros(len(index.edges))
    whole: dict[tuple[str, str], float] = {}
    known = index.pair_slots
    gathered: dict[int, float] = {}  # bytes per slot
    for src, dst, size in zip(srcs, dsts, np.asarray(wire, dtype=np.float64).tolist(), strict=True):
        key = (src, dst)
        slots = known.get(key)
        if slots is None:
            slots = index.composed_slots(src, dst)
        if not slots:
            whole[key] = whole.get(key, 0.0) + size
            continue
        first, fabric, last = slots
        gathered[first] = gathered.get(first, 0.0) + size
        gathered[fabric] = gathered.get(fabric, 0.0) + size
        gathered[last] = gathered.get(last, 0.0) + size
    # Slots alike (the same split over link-id matrices of one shape) loaded together: their
    # matrices stacked, each path's links its share of its slot's bytes.
    groups: dict[_Group, list[tuple[NDArray[np.int32], float]]] = {}
    link_ids: list[NDArray[np.integer]] = []
    link_bytes: list[NDArray[np.float64]] = []
    info = index.slot_info
    for slot, size in gathered.items():
        group, ids, paths = info[slot]
        if ids is not None:
            groups.setdefault(group, []).append((ids, size))
            continue
        shape, part, _ = group
        for path, share in zip(paths, (size * index.slot_shares(shape, part)).tolist(), strict=True):
            cols = np.asarray([index.ids[e] for e in itertools.pairwise(path)], dtype=np.int64)
            link_ids.append(cols)
            link_bytes.append(np.full(len(cols), share))
    for (shape, part, _), members in groups.items():
        split = index.slot_shares(shape, part)
        for start in range(0, len(members), _STACKED_SLOTS):
            chunk = members[start : start + _STACKED_SLOTS]
            stacked = np.stack([ids for ids, _ in chunk])  # slots x paths x links
            sizes = np.fromiter((size for _, size in chunk), dtype=np.float64, count=len(chunk))
            # Each path's bytes, broadcast over its links (not made link by link).
            np.add.at(loads, stacked, (sizes[:, None] * split[None, :])[:, :, None])
    for cols, values in zip(link_ids, link_bytes, strict=True):
        np.add.at(loads, cols, values)
    for (src, dst), size in whole.items():
        cols, lens = index.local_pair(src, dst)
        np.add.at(loads, cols, np.repeat(size * path_split(cols, lens, capacity), lens))
    return loads


def _segment_shares(
    first: tuple[float, ...], fabric: tuple[float, ...], last: tuple[float, ...]
) -> tuple[NDArray[np.float64], ...]:
    """Per segment of a composed route whose three segments' paths have these widths: the share of
    the route's bytes each of its paths carries, the sum of the shares (``width_shares``) of the
    combined paths through it, a combined path as wide as its narrowest part."""
    a, b, c = (np.asarray(w, dtype=np.float64) for w in (first, fabric, last))
    combined = np.minimum(np.minimum(a[:, None, None], b[None, :, None]), c[None, None, :])
    shares = width_shares(combined.reshape(-1)).reshape(combined.shape)
    return shares.sum(axis=(1, 2)), shares.sum(axis=(0, 2)), shares.sum(axis=(0, 1))


def _segments_of(topology: Topology, src: str, dst: str) -> tuple[tuple[tuple[str, ...], ...], ...] | None:
    """The three segments of the route from ``src`` to ``dst`` (``edge_loads``), or None where it
    does not compose from them (``_EdgeIndex._composed``'s test)."""
    parts = topology._split(src, dst)
    if parts is None:
        return None
    via, nic_a, nic_b = parts
    pieces = (
        topology.source_segment(src, via, nic_a),
        topology._fabric_segment(nic_a, nic_b),
        topology._segment(nic_b, dst, "dst"),
    )
    return pieces if all(pieces) else None


class Scratch:
    """A float64 buffer the fillings of one caller reuse for their writable copy of a set's
    ``entry_weight`` (``FluidNetwork`` keeps one): allocating and first touching tens of MiB afresh
    at every filling costs more than the filling's passes, and one buffer, as long as the largest
    set filled, costs less memory than one kept with every set (a copy of each collective's and
    each mix's weights: 10^7 entries a set at 64 ZionEX nodes)."""

    def __init__(self) -> None:
        self._buffer: NDArray[np.float64] = np.empty(0)

    def weight(self, fs: _FlowSet) -> NDArray[np.float64]:
        """``fs.entry_weight`` copied into the buffer (valid until the next call)."""
        n = len(fs.cols)
        if len(self._buffer) < n:
            self._buffer = np.empty(n)
        out = self._buffer[:n]
        np.copyto(out, fs.entry_weight)
        return out


def _ranges(starts: NDArray[np.int64], lengths: NDArray[np.int64]) -> NDArray[np.int64]:
    """``[starts[0], starts[0] + lengths[0]) + [starts[1], ...) + ...`` as one index array."""
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    out: NDArray[np.int64] = np.repeat(starts - offsets, lengths) + np.arange(total)
    return out


@dataclass(frozen=True)
class _Filling:
    wire: NDArray[np.float64]  # wire rate per flow
    rate: NDArray[np.float64]  # wire rate per subflow
    capacity: NDArray[np.float64]  # per link id
    residual: NDArray[np.float64]  # per link id


def _fill(
    fs: _FlowSet,
    topology: Topology,
    capacity: NDArray[np.float64] | None = None,
    live: NDArray[np.int64] | None = None,
    scratch: Scratch | None = None,
) -> _Filling:
    """Weighted progressive filling over link ids (the arithmetic of the sparse formulation, entry
    for entry: each link's demand sums its growing subflows' weights in subflow order).

    ``live``: the flows (sorted indices) taking part, the others get rate 0; the same arithmetic as
    filling ``fs.subset(live)``, without building the subset. A frozen subflow's entries first
    stay in place with weight 0 (adding 0.0 leaves every sum as it was), and are dropped once most
    entries are frozen: each round then costs a few passes over the entries still in play, and
    big arrays are not allocated afresh (first-touching tens of MiB costs more than a pass).
    ``scratch``: where the writable copy of the weights goes (None: a copy of its own).
    """

    def writable() -> NDArray[np.float64]:
        out: NDArray[np.float64] = fs.entry_weight.copy() if scratch is None else scratch.weight(fs)
        return out

    if capacity is None:
        capacity = _edge_index(topology).capacity()
    n_edges = len(capacity)
    n_sub = len(fs.sub_len)
    sub_weight = fs.sub_weight
    rate = np.zeros(n_sub)
    residual = capacity.copy()
    # The entries in play: those of subflows ``sub`` (None: every subflow, in order).
    sub: NDArray[np.int64] | None = None
    cols, weight, starts, lens = fs.cols, fs.entry_weight, fs.sub_start, fs.sub_len
    if live is None:
        active = np.ones(n_sub, dtype=bool)
        n_active = n_sub
        e_active = len(cols)
    else:
        taking_part = np.zeros(fs.n_flows, dtype=bool)
        taking_part[live] = True
        active = np.repeat(taking_part, fs.n_paths)
        n_active = int(fs.n_paths[live].sum())
        e_active = int(fs.flow_entries[live].sum())
        if 2 * e_active < len(cols):  # a few flows: gather their entries
            sub = np.flatnonzero(active)
            lens = fs.sub_len[sub]
            entries = _ranges(fs.sub_start[sub], lens)
            cols, weight = cols[entries], weight[entries]
            starts = np.cumsum(lens) - lens
        elif n_active < n_sub:  # most flows: zero the others' entries
            dead = np.flatnonzero(~taking_part)
            dead_subs = _ranges(fs.flow_sub_start[dead], fs.n_paths[dead])
            weight = writable()
            weight[_ranges(fs.sub_start[dead_subs], fs.sub_len[dead_subs])] = 0.0
    while n_active:
        demand = np.bincount(cols, weights=weight, minlength=n_edges)
        used = demand > 0
        step = float(np.min(residual[used] / demand[used]))
        np.add(rate, sub_weight * step, out=rate, where=active)
        residual -= demand * step
        full = used & (residual <= _SATURATED * capacity)
        residual[full] = 0.0
        # A subflow freezes when any of its links is full.
        in_play = active if sub is None else active[sub]
        hit = np.logical_or.reduceat(full[cols], starts)
        newly = np.flatnonzero(hit & in_play)
        active[newly if sub is None else sub[newly]] = False
        n_active -= len(newly)
        if not n_active:
            break
        e_active -= int(lens[newly].sum())
        if 2 * e_active < len(cols):  # mostly frozen entries: keep only the growing subflows'
            keep = np.flatnonzero(in_play & ~hit)
            entries = _ranges(starts[keep], lens[keep])
            cols, weight = cols[entries], weight[entries]
            sub = keep if sub is None else sub[keep]
            lens = lens[keep]
            starts = np.cumsum(lens) - lens
        else:
            if weight is fs.entry_weight:
                weight = writable()
            weight[_ranges(starts[newly], lens[newly])] = 0.0
    wire = np.bincount(fs.flow_of_sub, weights=rate, minlength=fs.n_flows)
    return _Filling(wire, rate, capacity, residual)


def with_own_links(fs: _FlowSet, own: NDArray[np.int64]) -> _FlowSet:
    """``fs`` with flow ``i`` crossing link ``own[i]`` as well, where ``own[i] >= 0``, on each of
    its paths (after the path's links): a link of the flow's own, whose capacity is the flow's
    rate limit (``Flow.cap_bytes_per_s``). Each subflow loads it with its weight, as it loads its
    path's links, so the link carries the flow's whole rate; the set itself where none has one."""
    sub_own = own[fs.flow_of_sub]
    capped = np.flatnonzero(sub_own >= 0)
    if not len(capped):
        return fs
    ends = fs.sub_start[capped] + fs.sub_len[capped]
    cols = np.insert(fs.cols, ends, sub_own[capped]).astype(np.int64)
    return _FlowSet(cols, fs.sub_len + (sub_own >= 0), fs.n_paths)


def _capped(
    flows: Sequence[Flow], topology: Topology, capacity: NDArray[np.float64] | None = None
) -> tuple[_FlowSet, NDArray[np.float64]]:
    """``flows`` as a set, with a link of its own for each flow with a rate limit
    (``with_own_links``), and the capacities of the topology's links (``capacity``, or read afresh)
    followed by those links'."""
    if capacity is None:
        capacity = _edge_index(topology).capacity()
    fs = _FlowSet.of(flows, topology)
    caps = np.array([f.cap_bytes_per_s for f in flows], dtype=float)
    limited = np.flatnonzero(np.isfinite(caps))
    if not len(limited):
        return fs, capacity
    own = np.full(len(flows), -1, dtype=np.int64)
    own[limited] = len(capacity) + np.arange(len(limited))
    return with_own_links(fs, own), np.concatenate([capacity, caps[limited]])


def _wire_rates(
    flows: Sequence[Flow], topology: Topology, capacity: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """``max_min_rates(flows, topology).wire_rates``, without building the allocation's tables."""
    fs, capacity = _capped(flows, topology, capacity)
    return _fill(fs, topology, capacity).wire


def max_min_rates(flows: Sequence[Flow], topology: Topology) -> Allocation:
    """Weighted max-min fair rates of ``flows`` over ``topology``'s links (see the module docstring).

    Every flow must cross a link: one from a vertex to itself shares nothing and has no rate."""
    for f in flows:
        if f.src == f.dst:
            raise ValueError(f"flow {f} goes from a vertex to itself: it crosses no link and has no rate")
    index = _edge_index(topology)
    fs, capacity = _capped(flows, topology)
    filling = _fill(fs, topology, capacity)
    subflows: list[tuple[int, tuple[Edge, ...], float]] = []
    s = 0
    for i, f in enumerate(flows):
        for path in topology.edge_paths(f.src, f.dst):
            subflows.append((i, path, float(filling.rate[s])))
            s += 1
    # Link ids in order of first use; the flows' own links (``with_own_links``) are no edge.
    seen = [k for k in dict.fromkeys(fs.cols.tolist()) if k < len(index.edges)]
    load = filling.capacity - filling.residual
    eff = np.array([f.efficiency for f in flows], dtype=float)
    return Allocation(
        rates=filling.wire * eff,
        wire_rates=filling.wire,
        edge_load={index.edges[k]: float(load[k]) for k in seen},
        capacity={index.edges[k]: float(filling.capacity[k]) for k in seen},
        subflows=subflows,
    )


@dataclass(frozen=True)
class FlowSimulation:
    """Outcome of ``simulate_flows_detailed``: when everything, each group and each flow finished."""

    makespan_s: float
    group_finish_s: dict[str, float]
    flow_finish_s: NDArray[np.float64]


def simulate_flows_detailed(flows: Sequence[Flow], topology: Topology) -> FlowSimulation:
    """Event-driven fluid simulation of ``flows`` (see the module docstring)."""
    phases: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, f in enumerate(flows):
        if (
            f.bytes < 0
            or not math.isfinite(f.bytes)
            or not 0 < f.efficiency <= 1
            or not f.cap_bytes_per_s > 0
        ):
            raise ValueError(
                f"bad flow {f}: bytes must be finite and >= 0, efficiency in (0, 1], the cap > 0"
            )
        phases[f.group][f.phase].append(i)
    # A flow from a vertex to itself crosses no link: done at once, as a zero-byte flow is (and
    # as the DES engine's ``FluidNetwork.traffic`` drops it).
    remaining = np.array([0.0 if f.src == f.dst else f.wire_bytes for f in flows], dtype=float)
    finish = np.zeros(len(flows))
    order = {grp: sorted(ps) for grp, ps in phases.items()}
    cursor = dict.fromkeys(order, 0)
    group_finish = dict.fromkeys(order, 0.0)
    memo: dict[tuple[tuple[str, str, float, float, float], ...], list[float]] = {}
    capacity = _edge_index(topology).capacity()
    now = 0.0

    def current(grp: str) -> list[int]:
        return [i for i in phases[grp][order[grp][cursor[grp]]] if remaining[i] > 0]

    def advance(grp: str) -> None:
        """Move ``grp`` past finished phases (and empty ones)."""
        while cursor[grp] < len(order[grp]) and not current(grp):
            cursor[grp] += 1
        if cursor[grp] >= len(order[grp]):
            group_finish[grp] = now

    fresh = set(order)  # groups whose current phase has not started yet
    for grp in order:
        advance(grp)
    while True:
        live = [grp for grp in order if cursor[grp] < len(order[grp])]
        if not live:
            break
        if len(live) == 1 and live[0] in fresh:
            grp = live[0]

            def signature(i: int) -> tuple[str, str, float, float, float]:
                f = flows[i]
                return (f.src, f.dst, f.wire_bytes, f.efficiency, f.cap_bytes_per_s)

            ids = sorted(current(grp), key=signature)
            key = tuple(signature(i) for i in ids)
            if key not in memo:
                memo[key] = _phase_alone(flows, ids, topology, capacity)
            offsets = memo[key]
            for i, offset in zip(ids, offsets, strict=True):
                remaining[i] = 0.0
                finish[i] = now + offset
            now += max(offsets)
            cursor[grp] += 1
            advance(grp)
            continue
        ids = [i for grp in live for i in current(grp)]
        wire = _wire_rates([flows[i] for i in ids], topology, capacity)
        dt = float(np.min(remaining[ids] / wire))
        now += dt
        remaining[ids] -= wire * dt
        done = [i for i in ids if remaining[i] <= _DONE * flows[i].wire_bytes]
        for i in done:
            remaining[i] = 0.0
            finish[i] = now
        fresh.clear()
        for grp in live:
            before = cursor[grp]
            advance(grp)
            if cursor[grp] != before:
                fresh.add(grp)
    return FlowSimulation(now, group_finish, finish)


def _phase_alone(
    flows: Sequence[Flow], ids: list[int], topology: Topology, capacity: NDArray[np.float64]
) -> list[float]:
    """Finish time of each flow of one phase (``ids`` order) with nothing else on the network."""
    remaining = {i: flows[i].wire_bytes for i in ids}
    done: dict[int, float] = {}
    elapsed = 0.0
    while remaining:
        live = list(remaining)
        wire = _wire_rates([flows[i] for i in live], topology, capacity).tolist()
        dt = min(remaining[i] / w for i, w in zip(live, wire, strict=True))
        elapsed += dt
        for i, w in zip(live, wire, strict=True):
            remaining[i] -= w * dt
            if remaining[i] <= _DONE * flows[i].wire_bytes:
                del remaining[i]
                done[i] = elapsed
    return [done[i] for i in ids]


def simulate_flows(flows: Sequence[Flow], topology: Topology) -> float:
    """Completion time (s) of ``flows``: groups concurrently, each group's phases in order."""
    return simulate_flows_detailed(flows, topology).makespan_s


def collective_time_flows_s(
    op: OpInput,
    topology: Topology,
    algorithm: str | None = None,
    *,
    wire_dtype: str | None = None,
    rank: int | None = None,
) -> float:
    """``collective_time_s`` with each stage's bandwidth term replaced by its simulated flow time."""
    cost = collective_cost(op, topology, algorithm, wire_dtype=wire_dtype, rank=rank)
    if not cost.stages:
        return cost.time_s
    flows = collective_flows(op, topology, cost.algorithm, wire_dtype=wire_dtype, rank=rank)
    stages = []
    for stage, phases in zip(cost.stages, phase_ranges(cost), strict=True):
        mine = [f for f in flows if f.phase in phases]
        stages.append(replace(stage, bandwidth_s=simulate_flows(mine, topology)))
    return replace(cost, stages=tuple(stages)).time_s


__all__ = [
    "Allocation",
    "FlowSimulation",
    "StageCost",
    "collective_time_flows_s",
    "edge_loads",
    "max_min_rates",
    "path_split",
    "simulate_flows",
    "simulate_flows_detailed",
    "with_own_links",
]
