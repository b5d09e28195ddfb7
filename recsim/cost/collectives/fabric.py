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
the NIC a PXN relay hands it to (on a rail-optimized fabric, the rail of the destination); it
enters by the destination's NIC. The bytes come from the algorithm's own transfers (its
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
import weakref
from collections.abc import Sequence
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from recsim.cost.collectives.base import Traffic
from recsim.hardware.topology import Topology

_TOLERANCE = 1e-9


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
        # Oversubscribed: some leaf takes more from its NICs than it can pass up or down (one leaf
        # alone has nothing to pass: every route stays under it).
        self.oversubscribed = len(self.leaves) > 1 and bool(
            np.any(np.minimum(self.up, self.down) < nic_ports * (1 - _TOLERANCE))
        )

    @cached_property
    def _node_leaves(self) -> dict[int, frozenset[int]]:
        """Per node: the leaves of its scale-out NICs."""
        g = self.topology.graph
        out: dict[int, set[int]] = {}
        for nic, k in self.leaf_of_nic.items():
            out.setdefault(g.nodes[nic]["node"], set()).add(k)
        return {node: frozenset(ks) for node, ks in out.items()}

    def _exit_leaf(self, src: str, dst: str) -> int:
        """The leaf ``src``'s traffic to ``dst`` (accelerators of two nodes whose NICs sit under
        several leaves) leaves by; -1 where the route does not compose through one NIC per end."""
        split = self.topology._split(src, dst)
        return -1 if split is None else self.leaf_of_nic.get(split[1], -1)

    def _position_leaves(
        self, vertices: Sequence[str]
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
        """Per position: its node, the one leaf of its node's NICs (-2: several, -1: none) and the
        leaf of its home NIC (-1: none, or several home NICs)."""
        nodes = self.topology.graph.nodes
        node_of = np.fromiter((nodes[v]["node"] for v in vertices), dtype=np.intp, count=len(vertices))
        node_leaf = np.empty(len(vertices), dtype=np.intp)
        home_leaf = np.empty(len(vertices), dtype=np.intp)
        for p, v in enumerate(vertices):
            leaves = self._node_leaves.get(int(node_of[p]), frozenset())
            node_leaf[p] = next(iter(leaves)) if len(leaves) == 1 else (-2 if leaves else -1)
            home = nodes[v].get("home_nics", ())
            home_leaf[p] = self.leaf_of_nic.get(home[0], -1) if len(home) == 1 else -1
        return node_of, node_leaf, home_leaf

    def seconds(self, vertices: Sequence[str], traffic: Traffic) -> float:
        """The longest a leaf's uplinks or downlinks take to carry ``traffic`` (positions index
        ``vertices``) at their full rate."""
        if traffic.bytes.size == 0:
            return 0.0
        node_of, node_leaf, home_leaf = self._position_leaves(vertices)
        src, dst = traffic.src, traffic.dst
        remote = node_of[src] != node_of[dst]
        exits = np.where(remote, node_leaf[src], -1)
        # Nodes whose NICs sit under several leaves (rails): the route says which (PXN).
        for k in np.flatnonzero(exits == -2).tolist():
            exits[k] = self._exit_leaf(vertices[int(src[k])], vertices[int(dst[k])])
        entries = home_leaf[dst]
        cross = (exits >= 0) & (entries >= 0) & (exits != entries)
        if not cross.any():
            return 0.0
        count = len(self.leaves)
        out_bytes = np.bincount(exits[cross], weights=traffic.bytes[cross], minlength=count)
        in_bytes = np.bincount(entries[cross], weights=traffic.bytes[cross], minlength=count)
        with np.errstate(divide="ignore", invalid="ignore"):
            # A leaf with no link up or down passes nothing that way: its traffic took other routes.
            up = np.where(self.up > 0, out_bytes / self.up, 0.0)
            down = np.where(self.down > 0, in_bytes / self.down, 0.0)
        worst = float(max(up.max(), down.max()))
        return worst if math.isfinite(worst) else 0.0


_LEAVES: weakref.WeakKeyDictionary[Topology, FabricLeaves] = weakref.WeakKeyDictionary()


def fabric_leaves(topology: Topology) -> FabricLeaves:
    """``FabricLeaves(topology)``, made once per topology."""
    found = _LEAVES.get(topology)
    if found is None:
        found = _LEAVES[topology] = FabricLeaves(topology)
    return found
