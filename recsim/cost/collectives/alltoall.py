"""All-to-all: direct (NCCL's grouped send/recv) and hierarchical (intra-node, then inter-node).

The traffic is a matrix ``M[i, j]`` (bytes member ``i`` sends to member ``j``; uneven splits from
``send_bytes``, see ``base.traffic_matrix``); a rank's copy to itself crosses no link.

* ``direct``: every rank sends to every peer at once. Inside a node a rank's NVLink port carries
  the larger of what it sends to and receives from same-node peers (and a peer reached over a
  slower route than the port, e.g. over PCIe on an NVLink mesh, takes at least its bytes over
  that route's bandwidth); across nodes each rank uses its
  own NIC (point-to-point traffic cannot aggregate NICs: nccl-tests issue 267), so the slowest rank
  (bytes over its NIC share) sets the time; both levels run concurrently. Steps: inside a node, the
  number of peers (the NVSwitch protocol constants were fitted on 8-GPU nccl-tests with that
  count); across nodes, where the latencies are NCCL's ring tuning constants, the rounds of
  concurrent p2p operations NCCL needs for the remote peers (``p2p_rounds``: 16 or 32 at once).
* ``hierarchical``: (1) inside each node, rank ``(a, i)`` hands rank ``(a, j)`` everything bound for
  local index ``j`` on any node (``sum_b M[(a,i), (b,j)]``); (2) across nodes, rank ``(a, j)`` sends
  rank ``(b, j)`` the aggregate (``sum_i M[(a,i), (b,j)]``), rail to rail. It trades extra NVLink
  bytes for ``nodes - 1`` instead of ``n - local`` network messages per rank and keeps network
  traffic on one rail. Needs the same local indices on every node. Not chosen automatically (NCCL
  has no such algorithm); ask for it by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from recsim.cost.collectives.base import (
    Algorithm,
    Flow,
    GroupLayout,
    LevelCost,
    Stage,
    levels,
    matrix_flows,
    register,
    traffic_matrix,
)
from recsim.graph.ir import Collective, CollectiveOp

#: NCCL runs a grouped all-to-all's sends and receives on its p2p channels side by side: each peer
#: gets ``NCCL_NCHANNELS_PER_NET_PEER`` (default 2) channels, halved while ``channels x ranks``
#: exceeds the communicator's p2p channels ("Try to use all channels, but one channel per
#: operation", src/enqueue.cc), whose number is ``NCCL_MAX_P2P_NCHANNELS`` = MAXCHANNELS = 32 by
#: default. So ``32 / channels-per-peer`` peers are served at once and the per-peer latency is paid
#: once per round of them, not once per peer.
P2P_CHANNELS = 32
P2P_CHANNELS_PER_PEER = 2


def p2p_rounds(peers: int, ranks: int) -> int:
    """Rounds of concurrent point-to-point operations NCCL needs to reach ``peers`` peers."""
    if peers <= 0:
        return 0
    per_peer = P2P_CHANNELS_PER_PEER
    while per_peer * ranks > P2P_CHANNELS and per_peer > 1:
        per_peer //= 2
    return math.ceil(peers / max(1, P2P_CHANNELS // per_peer))


def _same_node(layout: GroupLayout) -> NDArray[np.bool_]:
    """``same[i, j]``: members ``i`` and ``j`` are on one node (the layout's, made once per layout)."""
    return layout.same_node


def _peers(sends: NDArray[np.bool_]) -> int:
    """Most peers one member sends to or receives from: ``max(sends.sum(1).max(), sends.sum(0).max())``,
    counted in int32 (exact: at most ``n`` per member), about three times faster than bool sums."""
    return int(
        max(
            np.add.reduce(sends, axis=1, dtype=np.int32).max(),
            np.add.reduce(sends, axis=0, dtype=np.int32).max(),
        )
    )


def _level_costs(
    layout: GroupLayout, matrix: NDArray[np.float64]
) -> tuple[LevelCost | None, LevelCost | None]:
    """Direct exchange of ``matrix``: the NVLink and NIC demand of the slowest rank.

    Same-node entries are read through the layout's flat indices of its same-node pairs
    (``same_node_pairs``, a few per member) rather than by masking and scanning the whole ``n x n``
    matrix for them; the remote part zeroes them in place. The figures are those of masking the
    matrix (``np.where(same, m, 0)``): the same sums over the same arrays, the same nonzeros in the
    same (row-major) order, the same peer counts.
    """
    m = matrix.copy()
    np.fill_diagonal(m, 0.0)
    n = m.shape[1]
    flat = m.reshape(-1)  # a view: ``m`` is a fresh C-ordered copy
    pairs = layout.same_node_pairs
    local_vals = flat[pairs]
    intra = inter = None
    if layout.local >= 2 and local_vals.any():
        local_m = np.zeros_like(m)
        local_m.reshape(-1)[pairs] = local_vals
        load = np.maximum(local_m.sum(axis=1), local_m.sum(axis=0))
        # A rank's port (its NVLink through NVSwitch) carries all its peers' bytes; on a mesh or
        # PCIe a peer without a direct link is reached over a slower route, which may be the limit.
        seconds = load / layout.intra_bandwidth
        # Every node of a system is built from the same node spec, so the route between local GPUs
        # i and j is the same in every node: cost it once per local pair (node 0's vertices).
        locals_ = np.asarray(layout.locals)
        nonzero = local_vals != 0
        values = local_vals[nonzero]
        rows, cols = np.divmod(pairs[nonzero], n)
        pair_bw = layout.topology.local_pair_bandwidth()
        bw = pair_bw[locals_[rows], locals_[cols]]
        per_pair = values / bw
        np.maximum.at(seconds, rows, per_pair)
        np.maximum.at(seconds, cols, per_pair)
        worst = int(np.argmax(seconds))
        sends = values > 0
        peers = max(
            int(np.bincount(rows[sends], minlength=n).max()), int(np.bincount(cols[sends], minlength=n).max())
        )
        # Bytes so few that their time underflows to 0 s move at the port's bandwidth.
        rate = load[worst] / seconds[worst] if seconds[worst] > 0 else layout.intra_bandwidth
        intra = LevelCost(float(peers), float(load[worst]), float(rate))
    if layout.num_nodes >= 2:
        flat[pairs] = 0.0  # ``m`` is now the remote part
        remote_m = m
        if remote_m.any():
            load = np.maximum(remote_m.sum(axis=1), remote_m.sum(axis=0))
            bw = layout.own_nic_bandwidth
            worst = int(np.argmax(load / bw))
            inter = LevelCost(
                float(p2p_rounds(_peers(remote_m > 0), layout.n)), float(load[worst]), float(bw[worst])
            )
    return intra, inter


@register
class DirectAllToAll(Algorithm):
    name = "direct"
    ops = frozenset({CollectiveOp.ALL_TO_ALL})

    def stages(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Stage]:
        if layout.n < 2:
            return []
        intra, inter = _level_costs(layout, traffic_matrix(op))
        if intra is None and inter is None:
            return []
        return [Stage("direct", levels(intra, inter), 1)]

    def flows(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Flow]:
        return matrix_flows(layout.vertices, traffic_matrix(op), 0)


def _hierarchical_matrices(
    layout: GroupLayout, m: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(intra-node hand-over matrix, inter-node rail matrix), both indexed by group position."""
    n = layout.n
    pos = {(layout.nodes[p], layout.locals[p]): p for p in range(n)}
    stage1 = np.zeros((n, n))
    stage2 = np.zeros((n, n))
    for src in range(n):
        a = layout.nodes[src]
        for dst in range(n):
            b, j = layout.nodes[dst], layout.locals[dst]
            via = pos[(a, j)]  # the member of the source node on the destination's rail
            stage1[src, via] += m[src, dst]
            stage2[via, dst] += m[src, dst] if b != a else 0.0
    np.fill_diagonal(stage1, 0.0)
    return stage1, stage2


@register
class HierarchicalAllToAll(Algorithm):
    name = "hierarchical"
    ops = frozenset({CollectiveOp.ALL_TO_ALL})
    auto = False

    def unavailable(self, op: Collective, layout: GroupLayout) -> str | None:
        if not layout.uniform:
            return "hierarchical all-to-all needs the same local accelerators on every node"
        return None

    def stages(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Stage]:
        if layout.n < 2:
            return []
        stage1, stage2 = _hierarchical_matrices(layout, traffic_matrix(op))
        out = []
        intra, _ = _level_costs(layout, stage1)
        if intra is not None:
            out.append(Stage("intra", levels(intra, None), 1))
        _, inter = _level_costs(layout, stage2)
        if inter is not None:
            out.append(Stage("inter", levels(None, inter), 1))
        return out

    def flows(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Flow]:
        stage1, stage2 = _hierarchical_matrices(layout, traffic_matrix(op))
        out: list[Flow] = []
        phase = 0
        for m in (stage1, stage2):
            if not m.any():
                continue
            out += matrix_flows(layout.vertices, m, phase)
            phase += 1
        return out
