"""Where a point-to-point byte leaves its node: the sender's NIC, or a PXN relay's.

NCCL sends a point-to-point message (send/recv, the all-to-all's grouped sends) to a GPU of another
node through its node's NIC local to the GPU with the destination's device index, relayed by the
GPU that owns that NIC where the sender reaches it over NVLink (PXN, on by default from NCCL 2.12:
src/graph/search.cc ``ncclTopoGetNetDev``, ``NCCL_P2P_PXN_LEVEL=2``), on every fabric: the sender
writes into the relay GPU's memory over NVLink, and the relay's NIC sends it
(``Topology.p2p_first_hop``; ``ScaleOut.pxn: false`` models ``NCCL_PXN_DISABLE=1``). The flows
of the point-to-point algorithms follow it (``model.collective_flows``), so the direct all-to-all's
alpha-beta cost charges each remote byte to the NIC it leaves by (and the NVLink hand-over to the
relay) rather than to the sender's own NIC: a rank sending much to one node spreads it over that
node's NICs (a reviewer's find on a rail-optimized fabric: 7.2x between the cost and its flows).
The rule's relays are tabulated by local index (``Topology.pxn_local_relays``); where it does not
relay, the route's (``Topology.first_hop``) are taken, as below.

On the relay's NIC the bytes of every local sender for one remote rank are one connection (NCCL
shares the network connection per NIC, remote rank and channel among the local ranks:
src/transport/net.cc ``sendProxyConnect``, ``NCCL_NET_SHARED_COMMS``), so the DES moves them as one
flow (``recsim.engine.des``, ``_aggregate``) and a collective beside it on that NIC gets as much of
the NIC as the whole relayed all-to-all: on a rail-optimized fabric PXN leaves one all-to-all flow
per NIC where there were eight, and a DLRM step's backward all-to-all beside the CollNet all-reduce
took 81.8 us more with PXN against 10.8 us without, issued together (the figures are in
``recsim.engine.des``). The
analytic cost, which charges each NIC its bytes, is the same either way on that fabric.

``pxn_exits`` tabulates ``first_hop`` per ordered pair of group positions without asking it ``n^2``
times: the relay between two nodes depends only on the local indices of the two accelerators and on
the switches above each node's NICs (the hops the relay rule compares, ``Topology._pxn_relay``;
every node is built from the same node spec), so one representative pair of nodes per pair of such
switch signatures stands for the others; where all of a node's NICs hang off the same switches (a
Clos leaf holding whole nodes) none is nearer a destination than another, and nothing relays.
"""

from __future__ import annotations

from collections.abc import Callable
from weakref import WeakKeyDictionary

import numpy as np
from numpy.typing import NDArray

from recsim.cost.collectives.base import GroupLayout
from recsim.hardware.topology import Topology, gpu_id

_EXITS: WeakKeyDictionary[GroupLayout, NDArray[np.intp] | None] = WeakKeyDictionary()
_LOCAL_EXITS: WeakKeyDictionary[GroupLayout, NDArray[np.intp] | None] = WeakKeyDictionary()


def _memoised(
    memo: WeakKeyDictionary[GroupLayout, NDArray[np.intp] | None],
    layout: GroupLayout,
    compute: Callable[[GroupLayout], NDArray[np.intp] | None],
) -> NDArray[np.intp] | None:
    """``compute(layout)``, made read-only and kept in ``memo`` for the layout's lifetime."""
    if layout in memo:
        return memo[layout]
    out = compute(layout)
    if out is not None:
        out.setflags(write=False)
    memo[layout] = out
    return out


def _node_signatures(topology: Topology) -> dict[int, tuple[tuple[str, ...], ...]]:
    """Per node: the network switches above each of its NICs on the scale-out network (in the
    graph's order of the NICs), made once and kept by the topology (``Topology.derived``)."""
    return topology.derived(_make_node_signatures)


def _make_node_signatures(topology: Topology) -> dict[int, tuple[tuple[str, ...], ...]]:
    """``_node_signatures``, worked out."""
    g = topology.graph
    nodes = g._node
    per_node: dict[int, list[tuple[str, ...]]] = {}
    for v, data in nodes.items():
        if data["kind"] == "nic" and data["node"] is not None:
            up = tuple(sorted(u for u in g._succ[v] if nodes[u]["node"] is None))
            if up:  # a NIC on the scale-out network (not a front-end one off it)
                per_node.setdefault(data["node"], []).append(up)
    return {node: tuple(ups) for node, ups in per_node.items()}


def pxn_exits(layout: GroupLayout) -> NDArray[np.intp] | None:
    """``exits[i, j]``: the local index of the accelerator of member ``i``'s node whose NIC ``i``'s
    point-to-point bytes for member ``j`` leave by (``Topology.p2p_first_hop``; ``i``'s own index
    for a same-node pair), or None where no pair of the group is relayed (every byte leaves by its
    sender's NIC).

    The relay may be an accelerator outside the group: the topology's route takes it, and the flows
    with it. Read-only (memoised per layout)."""
    return _memoised(_EXITS, layout, _compute_exits)


def _compute_exits(layout: GroupLayout) -> NDArray[np.intp] | None:
    if layout.num_nodes < 2:
        return None
    route = _route_exits(layout)
    locals_ = np.asarray(layout.locals, dtype=np.intp)
    relays = layout.topology.pxn_local_relays
    if not bool((relays >= 0).any()):
        return route
    # NCCL's p2p rule (``Topology.p2p_first_hop``): where it relays, its relay; else the route's.
    rule = relays[locals_[:, None], locals_[None, :]]
    rule = np.where(layout.same_node, -1, rule)
    own = np.broadcast_to(locals_[:, None], rule.shape) if route is None else route
    exits = np.where(rule >= 0, rule, own)
    if not bool((exits != locals_[:, None]).any()):
        return None
    out: NDArray[np.intp] = np.ascontiguousarray(exits)
    return out


def pxn_local_exits(layout: GroupLayout) -> NDArray[np.intp] | None:
    """``table[s, d]``: the local index of the accelerator whose NIC the point-to-point bytes of a
    member with local index ``s`` for a member with local index ``d`` on another node leave by,
    where that depends on the two local indices alone (NCCL's rule always does; the route does
    where every node of the group hangs off its switches alike); None where it does not, or the
    group spans one node (``pxn_exits`` then has every pair). ``pxn_exits(layout)[i, j] ==
    table[locals[i], locals[j]]`` for every pair on two nodes. Read-only (memoised per layout)."""
    return _memoised(_LOCAL_EXITS, layout, _compute_local_exits)


def _compute_local_exits(layout: GroupLayout) -> NDArray[np.intp] | None:
    if layout.num_nodes < 2:
        return None
    per_node = layout.gpus_per_node
    routes = _route_tables(layout)
    if routes is None:
        route = np.tile(np.arange(per_node, dtype=np.intp)[:, None], (1, per_node))
    elif routes[0].shape == (1, 1):
        route = routes[1][0]
    else:
        return None  # nodes under different switch patterns: the route depends on the nodes
    relays = layout.topology.pxn_local_relays
    if relays.shape != route.shape:
        return None
    out: NDArray[np.intp] = np.where(relays >= 0, relays, route)
    return out


def _route_exits(layout: GroupLayout) -> NDArray[np.intp] | None:
    """``Topology.first_hop`` per pair (None where no pair relays), without asking it ``n^2`` times."""
    routes = _route_tables(layout)
    if routes is None:
        return None
    pair_index, tables, node_kind = routes
    nodes = np.asarray([node_kind[node] for node in layout.nodes], dtype=np.intp)
    locals_ = np.asarray(layout.locals, dtype=np.intp)
    stacked = np.stack(tables)
    which = pair_index[nodes[:, None], nodes[None, :]]
    exits = stacked[np.maximum(which, 0), locals_[:, None], locals_[None, :]]
    exits = np.where(layout.same_node, locals_[:, None], exits)
    if not bool((exits != locals_[:, None]).any()):
        return None
    out: NDArray[np.intp] = exits
    return out


def _route_tables(
    layout: GroupLayout,
) -> tuple[NDArray[np.intp], list[NDArray[np.intp]], dict[int, int]] | None:
    """``Topology.first_hop`` by local indices, one table per pair of the group's kinds of node
    (the switches above their NICs): (the table of each pair of kinds, the tables, each node's
    kind); None where every node's NICs hang off the same switches (nothing relays)."""
    topology = layout.topology
    index_of = topology.graph._node
    signatures = _node_signatures(topology)
    group_nodes = sorted(layout.by_node)
    if all(len(set(signatures.get(node, ()))) <= 1 for node in group_nodes):
        # Every NIC of a node under the same switches (a Clos leaf holding whole nodes): each is
        # as far from any destination NIC as the sender's own, so the route never relays.
        return None
    kinds: dict[tuple[tuple[tuple[str, ...], ...], ...], int] = {}
    node_kind = {node: kinds.setdefault((signatures.get(node, ()),), len(kinds)) for node in group_nodes}
    local_ids = sorted(set(layout.locals))
    per_node = layout.gpus_per_node
    # One representative pair of (distinct) nodes per pair of signatures, in the group's order.
    pair_index = np.full((len(kinds), len(kinds)), -1, dtype=np.intp)
    tables: list[NDArray[np.intp]] = []
    for a in group_nodes:
        for b in group_nodes:
            ka, kb = node_kind[a], node_kind[b]
            if a == b or pair_index[ka, kb] >= 0:
                continue
            table = np.tile(np.arange(per_node, dtype=np.intp)[:, None], (1, per_node))
            for s in local_ids:
                for d in local_ids:
                    hop = topology.first_hop(gpu_id(a, s), gpu_id(b, d))
                    table[s, d] = index_of[hop]["index"]
            pair_index[ka, kb] = len(tables)
            tables.append(table)
    return pair_index, tables, node_kind
