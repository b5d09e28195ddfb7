"""Leaf uplinks: how much of a collective's network traffic an oversubscribed fabric lets through.

The scale-out fabrics recsim builds (``recsim.hardware.topology``) are non-blocking above their
leaves: a Clos spreads a leaf's uplinks over spines that take them all, a 3-tier Clos gives its
pods' aggregation switches as many ports up as down, and a rail-optimized fabric's spine joins its
rails' leaves the same way. Oversubscription lives at the leaves only: a leaf with ``d`` NIC ports
has ``d / o`` uplinks. So the network bound of a collective, beyond each NIC's own rate, is its
traffic leaving (and entering) each leaf over that leaf's uplinks (and downlinks from the spines):

    seconds >= max over leaves of (bytes leaving the leaf / its uplink capacity,
                                   bytes entering it / its downlink capacity).

Which leaf a transfer leaves by follows the routes (``Topology._split``): its sender's NIC, or
the NIC a PXN relay hands it to (on a rail-optimized fabric, the rail of the destination; for the
point-to-point algorithms wherever NCCL's p2p rule relays, ``Topology.p2p_first_hop``); it enters
by the destination's NIC. The bytes come from the algorithm's own transfers (its
``flows``, or an all-to-all's traffic matrix), stage by stage, so a ring, whose neighbours mostly
share a leaf, crosses the leaves' uplinks about once per leaf and channel, and an all-to-all
sends most of its bytes across them: what the flow model (fidelity 2) finds by routing every
transfer, without the contention between transfers. This replaces a cap of every node's network
rate at its share of the topology's bisection, which charged a ring as an all-to-all (2x too
slow on a Clos at 4:1) and missed a partly filled leaf (an all-to-all as fast at 4:1 as at 2:1).
Nothing here runs on a fabric whose leaves are not oversubscribed: the NICs bind first there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from recsim.cost.collectives.base import Traffic
from recsim.hardware.topology import Topology, gpu_id

_TOLERANCE = 1e-9
_CHUNK = 65536  # transfers per block where GPUs have several home NICs (a block x leaves array)


_Homes = tuple[
    NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], list[list[int]], NDArray[np.intp]
]


class FabricLeaves:
    """A topology's leaf switches (those with NICs below them) and their capacity to the tiers above."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        g = topology.graph
        nodes, succ, pred = g._node, g._succ, g._pred
        leaf_index: dict[str, int] = {}
        self.leaf_of_nic: dict[str, int] = {}
        down_ports: list[float] = []
        for v, data in nodes.items():
            if data["kind"] != "nic":
                continue
            ups = [w for w in succ[v] if nodes[w]["node"] is None]
            if len(ups) != 1:
                continue  # a NIC on no switch, or on several (not built): no leaf of its own
            k = leaf_index.setdefault(ups[0], len(leaf_index))
            if k == len(down_ports):
                down_ports.append(0.0)
            down_ports[k] += succ[v][ups[0]]["bandwidth_bytes_per_s"]
            self.leaf_of_nic[v] = k
        self.leaves = list(leaf_index)
        self.up = np.zeros(len(self.leaves))
        self.down = np.zeros(len(self.leaves))
        for leaf, k in leaf_index.items():
            self.up[k] = sum(
                d["bandwidth_bytes_per_s"] for w, d in succ[leaf].items() if nodes[w]["kind"] == "switch"
            )
            self.down[k] = sum(
                d["bandwidth_bytes_per_s"] for w, d in pred[leaf].items() if nodes[w]["kind"] == "switch"
            )
        nic_ports = np.asarray(down_ports)
        # Oversubscribed: some leaf takes more from its NICs than it can pass up or down. A leaf
        # with no link up or down (a one-tier rail, or one leaf alone) passes nothing: its NICs'
        # traffic stays under it or is relayed to another rail inside the node.
        joined = (self.up > 0) | (self.down > 0)
        self.oversubscribed = len(self.leaves) > 1 and bool(
            np.any(joined & (np.minimum(self.up, self.down) < nic_ports * (1 - _TOLERANCE)))
        )
        # ``_homes`` by the positions' vertices: a group's collectives (every algorithm and stage
        # of each) ask for the same group's, a pure function of the topology and the vertices.
        self._homes_of: dict[tuple[str, ...], _Homes] = {}

    # -- where a position's traffic leaves and enters --------------------------------------------

    @cached_property
    def _node_leaves(self) -> dict[int, frozenset[int]]:
        """Per node: the leaves of its scale-out NICs."""
        g = self.topology.graph
        out: dict[int, set[int]] = {}
        for nic, k in self.leaf_of_nic.items():
            out.setdefault(g.nodes[nic]["node"], set()).add(k)
        return {node: frozenset(ks) for node, ks in out.items()}

    @cached_property
    def _exits(self) -> dict[int, tuple[NDArray[np.intp], list[str]]]:
        """Per node: the leaf (-1: none) and the owner of each of its exits, in NIC index order
        (``Topology._node_exits``: a PXN relay leaves by the exit with the destination NIC's index)."""
        return {
            node: (
                np.array([self.leaf_of_nic.get(nic, -1) for nic, _ in exits], dtype=np.intp),
                [owner for _, owner in exits],
            )
            for node, exits in self.topology._node_exits.items()
        }

    @cached_property
    def _local_index(self) -> dict[str, int]:
        """Accelerator vertex -> its index inside its node."""
        nodes = self.topology.graph.nodes
        return {v: int(nodes[v]["index"]) for v in self.topology.accelerators}

    @cached_property
    def _nvlink_between(self) -> NDArray[np.bool_]:
        """``[i, j]``: local accelerators ``i`` and ``j`` of a node are joined by NVLink alone (node 0's
        stand for every node's; ``Topology._over_nvlink``)."""
        t = self.topology
        count = t.system.node.num_accelerators
        out = np.zeros((count, count), dtype=bool)
        for i in range(count):
            for j in range(count):
                if i != j:
                    out[i, j] = t._over_nvlink(gpu_id(0, i), gpu_id(0, j))
        return out

    @cached_property
    def _hops(self) -> NDArray[np.float64]:
        """Links between the NICs under two leaves (2 under one), inf where no path joins them: what
        ``Topology._nic_hops`` gives for NICs with one switch above them."""
        t = self.topology
        count = len(self.leaves)
        out = np.full((count, count), np.inf)
        for a in range(count):
            out[a, a] = 2.0
            for b in range(count):
                if a != b:
                    between = t._switch_paths(self.leaves[a], self.leaves[b])
                    if between:
                        out[a, b] = float(len(between[0]) + 1)
        return out

    @cached_property
    def _exit_index(self) -> dict[str, int]:
        """Exit NIC -> its index among its node's exits (``Topology._node_exits``)."""
        return {nic: k for exits in self.topology._node_exits.values() for k, (nic, _) in enumerate(exits)}

    @cached_property
    def _exit_tables(self) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
        """``_exits`` as tables by node number: (how many exits the node has, the leaf of its exit
        ``k`` (-1 past them), the local index of that exit's owner (0 past them))."""
        exits = self._exits
        size = 1 + max(exits, default=-1)
        width = max((leaves.size for leaves, _ in exits.values()), default=0)
        counts = np.zeros(size, dtype=np.intp)
        leaf = np.full((size, width), -1, dtype=np.intp)
        owner = np.zeros((size, width), dtype=np.intp)
        local = self._local_index
        for node, (leaves, owners) in exits.items():
            counts[node] = leaves.size
            leaf[node, : leaves.size] = leaves
            owner[node, : len(owners)] = [local[o] for o in owners]
        return counts, leaf, owner

    def _homes(self, vertices: Sequence[str]) -> _Homes:
        """Per position: its node, the one leaf of its node's NICs (-2: several, -1: none), its home
        NIC's leaf (-1: none; -2: several home NICs) and index among its node's exits (-1: none),
        the leaves of its home NICs (several where it has several) and its index inside its node
        (-1: not an accelerator). Made once per vertices (read-only arrays)."""
        key = tuple(vertices)
        found = self._homes_of.get(key)
        if found is None:
            found = self._homes_of[key] = self._make_homes(key)
        return found

    def _make_homes(self, vertices: tuple[str, ...]) -> _Homes:
        nodes = self.topology.graph._node
        n = len(vertices)
        node_of = np.fromiter((nodes[v]["node"] for v in vertices), dtype=np.intp, count=n)
        node_leaf = np.empty(n, dtype=np.intp)
        home_leaf = np.empty(n, dtype=np.intp)
        home_index = np.full(n, -1, dtype=np.intp)
        leaves: list[list[int]] = []
        index_of = self._exit_index
        local = self._local_index
        local_of = np.fromiter((local.get(v, -1) for v in vertices), dtype=np.intp, count=n)
        for p, v in enumerate(vertices):
            mine = self._node_leaves.get(int(node_of[p]), frozenset())
            node_leaf[p] = next(iter(mine)) if len(mine) == 1 else (-2 if mine else -1)
            home = [self.leaf_of_nic[nic] for nic in nodes[v].get("home_nics", ()) if nic in self.leaf_of_nic]
            leaves.append(home)
            home_leaf[p] = home[0] if len(home) == 1 else (-2 if home else -1)
            if len(home) == 1:
                home_index[p] = index_of.get(nodes[v]["home_nics"][0], -1)
        for a in (node_of, node_leaf, home_leaf, home_index, local_of):
            a.setflags(write=False)
        return node_of, node_leaf, home_leaf, home_index, leaves, local_of

    def _relayed_exits(
        self,
        vertices: Sequence[str],
        src: NDArray[np.intp],
        dst: NDArray[np.intp],
        homes: _Homes,
        point_to_point: bool = False,
    ) -> NDArray[np.intp]:
        """The exit leaf of each transfer ``src[k] -> dst[k]`` from a node whose NICs sit under
        several leaves: its own NIC's, or (PXN, ``Topology._pxn_relay``) that of its node's exit
        with the destination NIC's index, where that one is fewer hops from the destination's leaf
        (with PXN off: where the own NIC has no path to it) and its owner is reached over NVLink
        alone. ``point_to_point``: the transfers of a p2p algorithm, relayed wherever the owner is
        reached over NVLink and PXN is on (``Topology.p2p_first_hop``). Vectorised over the
        transfers (the NVLink test by local index, ``_nvlink_between``); the same choice as the
        routes' (a test checks)."""
        node_of, _, home_leaf, home_index, _, local_of = homes
        own = home_leaf[src]
        index = home_index[dst]
        dst_leaf = home_leaf[dst]
        candidate = np.full(src.size, -1, dtype=np.intp)
        relay_ok = np.zeros(src.size, dtype=bool)
        # Every sender's node's exit with the destination NIC's index, from the tables by node
        # (a node without exits has none to use).
        counts, exit_leaf, exit_owner = self._exit_tables
        sender_node = node_of[src]
        known = sender_node < counts.size
        usable = known & (index >= 0)
        usable[usable] = index[usable] < counts[sender_node[usable]]
        rows, cols = sender_node[usable], index[usable]
        candidate[usable] = exit_leaf[rows, cols]
        # NVLink to the owner, by local index: every node is built from the same spec.
        owners = exit_owner[rows, cols]
        senders = local_of[src[usable]]
        if senders.size and senders.min() < 0:  # a position that is no accelerator cannot relay
            raise KeyError(vertices[int(src[usable][np.argmin(senders)])])
        relay_ok[usable] = self._nvlink_between[senders, owners] & (senders != owners)
        valid = (candidate >= 0) & (own >= 0) & (dst_leaf >= 0)
        hops = self._hops
        nearer = np.zeros(src.size, dtype=bool)
        own_hops = hops[own[valid], dst_leaf[valid]]
        nearer[valid] = hops[candidate[valid], dst_leaf[valid]] < own_hops
        pxn = self.topology.pxn_enabled
        if not pxn:  # a relay only where the sender's own NIC has no path (``_pxn_relay``)
            nearer[valid] &= np.isinf(own_hops)
        elif point_to_point:
            nearer[valid] = True
        relay = valid & nearer & relay_ok & (home_index[src] != index)
        return np.where(relay, candidate, own)

    def seconds(self, vertices: Sequence[str], traffic: Traffic, *, point_to_point: bool = False) -> float:
        """The longest a leaf's uplinks or downlinks take to carry ``traffic`` (positions index
        ``vertices``) at their full rate; ``point_to_point``: leaving by NCCL's p2p rule
        (``_relayed_exits``)."""
        if traffic.bytes.size == 0:
            return 0.0
        homes = self._homes(vertices)
        node_of, node_leaf, home_leaf, _, leaves, _ = homes
        src, dst, size = traffic.src, traffic.dst, traffic.bytes
        remote = node_of[src] != node_of[dst]
        src, dst, size = src[remote], dst[remote], size[remote]
        count = len(self.leaves)
        out_bytes = np.zeros(count)
        in_bytes = np.zeros(count)
        single = (home_leaf[src] != -2) & (home_leaf[dst] != -2)
        if single.any():
            s, d, b = src[single], dst[single], size[single]
            exits = node_leaf[s].copy()
            exits[exits == -2] = -1
            several = node_leaf[s] == -2  # nodes under several leaves (rails): the route says which
            if several.any():
                exits[several] = self._relayed_exits(vertices, s[several], d[several], homes, point_to_point)
            entries = home_leaf[d]
            cross = (exits >= 0) & (entries >= 0) & (exits != entries)
            out_bytes += np.bincount(exits[cross], weights=b[cross], minlength=count)
            in_bytes += np.bincount(entries[cross], weights=b[cross], minlength=count)
        # A GPU with several home NICs spreads its transfers over them (no PXN: NCCL relays only
        # to a GPU's one NIC): the expected bytes through each leaf, with its leaves equally likely.
        if not single.all():
            weights = np.zeros((len(vertices), count))
            for p, mine in enumerate(leaves):
                for leaf in mine:
                    weights[p, leaf] += 1.0 / len(mine)
            rest = np.flatnonzero(~single)
            for start in range(0, rest.size, _CHUNK):
                part = rest[start : start + _CHUNK]
                ws, wd, b = weights[src[part]], weights[dst[part]], size[part, None]
                out_bytes += (b * ws * (1.0 - wd)).sum(axis=0)
                in_bytes += (b * wd * (1.0 - ws)).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            # A leaf with no link up or down passes nothing that way: its traffic took other routes.
            up = np.where(self.up > 0, out_bytes / self.up, 0.0)
            down = np.where(self.down > 0, in_bytes / self.down, 0.0)
        worst = float(max(up.max(), down.max())) if count else 0.0
        return worst if math.isfinite(worst) else 0.0


def fabric_leaves(topology: Topology) -> FabricLeaves:
    """``FabricLeaves(topology)``, made once per topology and kept by it (``Topology.derived``)."""
    return topology.derived(FabricLeaves)
