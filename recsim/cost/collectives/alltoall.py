"""All-to-all: direct (NCCL's grouped send/recv) and hierarchical (intra-node, then inter-node).

The traffic is a matrix ``M[i, j]`` (bytes member ``i`` sends to member ``j``; uneven splits from
``send_bytes``, see ``base.traffic_matrix``); a rank's copy to itself crosses no link.

* ``direct``: every rank sends to every peer at once. Inside a node a rank's NVLink port (all its
  scale-up links, ``GroupLayout.port_bandwidth``: on a 4-GPU NVLink mesh its three direct links,
  not the rings' sum, which costed it 1.5x slower than its flows) carries
  the larger of what it sends to and receives from same-node peers (and a peer reached over a
  slower route than the port, e.g. over PCIe on an NVLink mesh, takes at least its bytes over
  that route's bandwidth); across nodes each byte crosses one NIC at each end (point-to-point
  traffic cannot aggregate NICs: nccl-tests issue 267): its receiver's, and its sender's own or,
  with NCCL's PXN (on by default: ``pxn.py``), its sender's node's NIC on the receiver's rail,
  handed over NVLink to that NIC's GPU first; the busiest NIC (or rank) sets the time; both levels
  run concurrently. Steps: on each level, the
  rounds of concurrent p2p operations NCCL needs for that level's peers (``p2p_rounds``: 16 or 32
  at once): NCCL issues every peer's send and receive of the group in one kernel, each on its own
  channels, so the 7 peers of an 8-GPU node are one round (counted per peer, the steps charged an
  A100 all-to-all of 32 KiB per peer Simple's pipeline fill 7 times over).
* ``hierarchical``: (1) inside each node, rank ``(a, i)`` hands rank ``(a, j)`` everything bound for
  local index ``j`` on any node (``sum_b M[(a,i), (b,j)]``); (2) across nodes, rank ``(a, j)`` sends
  rank ``(b, j)`` the aggregate (``sum_i M[(a,i), (b,j)]``), rail to rail. It trades extra NVLink
  bytes for ``nodes - 1`` instead of ``n - local`` network messages per rank and keeps network
  traffic on one rail. Needs the same local indices on every node. Not chosen automatically (NCCL
  has no such algorithm); ask for it by name.

Both are grouped send/recv, so they run as NCCL runs point-to-point messages: LL while no peer's
message exceeds 16 KiB, else Simple, never LL128 (``base.p2p_protocols``; a reviewer found a
256 KiB all-to-all of 8 A100s, 32 KiB per peer, costed as LL where NCCL runs Simple).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from recsim.cost.collectives.base import (
    P2P_PROTOCOLS,
    Algorithm,
    Flow,
    GroupLayout,
    Level,
    LevelCost,
    Stage,
    Traffic,
    circulant_row,
    facts,
    group_layout,
    levels,
    matrix_flows,
    p2p_protocols,
    register,
    traffic_matrix,
)
from recsim.cost.collectives.pxn import pxn_exits, pxn_local_exits
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.calibration import KernelKind
from recsim.hardware.topology import Topology, gpu_id

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


def largest_message(op: Collective | Sequence[Collective]) -> float:
    """The most bytes one member of the all-to-all ``op`` sends another (its copy to itself aside):
    what decides NCCL's protocol for its point-to-point parts (``base.p2p_protocols``).

    One part: the largest entry of its circulant row off the diagonal (``circulant_row``). Every
    member's part: per distinct row (the parts share a few), its largest entry, or the second
    largest for the one member whose own column that largest entry is; no ``n x n`` matrix."""
    row = circulant_row(op)
    if row is not None:
        return float(row[1:].max(initial=0.0))
    if isinstance(op, Collective):
        m = traffic_matrix(op)  # splits of the wrong length: refused there, as the stages do
        np.fill_diagonal(m, 0.0)
        return float(m.max(initial=0.0))
    parts = list(op)
    n = len(parts)
    if n < 2:
        return 0.0
    # Distinct rows (by identity: a built graph's parts share one tuple per distinct row) and the
    # members sending each; a part without splits sends ``bytes / n`` to everyone.
    rows: dict[int, NDArray[np.float64]] = {}
    members: dict[int, list[int]] = {}
    for i, part in enumerate(parts):
        key = id(part.send_bytes) if part.send_bytes is not None else -1 - i
        if key not in rows:
            sends = part.send_bytes if part.send_bytes is not None else [part.bytes / n] * n
            rows[key] = np.asarray(sends, dtype=float)
            members[key] = []
        members[key].append(i)
    best = 0.0
    for key, r in rows.items():
        if r.shape != (n,):
            traffic_matrix(parts)  # refuses it with its message
        top = int(np.argmax(r))
        # The row's only member may be the column of its largest entry: that is its own copy.
        own = all(i == top for i in members[key])
        best = max(best, float(np.delete(r, top).max(initial=0.0) if own else r[top]))
    return best


def _peers(sends: NDArray[np.bool_]) -> int:
    """Most peers one member sends to or receives from: ``max(sends.sum(1).max(), sends.sum(0).max())``,
    counted in int32 (exact: at most ``n`` per member), about three times faster than bool sums."""
    return int(
        max(
            np.add.reduce(sends, axis=1, dtype=np.int32).max(),
            np.add.reduce(sends, axis=0, dtype=np.int32).max(),
        )
    )


def exact_sums(values: NDArray[np.float64]) -> bool:
    """Whether every sum of a subset of ``values``, added in any order, is exact.

    True when the values are finite, non-negative (no ``-0.0``) and all whole multiples of one
    power of two ``2**e``, and ``max x count`` (a bound on every subset sum) is below
    ``2**(52 + e)``: every partial sum is then a multiple of ``2**e`` with fewer than ``2**53``
    units, which a float holds exactly. Then numpy's pairwise row sums, its row-by-row column sums,
    ``np.bincount`` and ``total - part`` all give the same (exact) figure, so the costs may form
    their sums in whichever way is cheapest and stay bit for bit what the ``n x n`` matrix sums
    give. Bytes are usually whole numbers (or whole numbers over a power-of-two group size);
    values with a full 53-bit mantissa fail and are summed as before.
    """
    if values.size == 0:
        return True
    top = float(values.max())
    if not (float(values.min()) >= 0.0 and top < math.inf) or bool(np.signbit(values).any()):
        return False  # NaN, inf, negatives, -0.0
    if top == 0.0:
        return True
    bound = top * values.size  # rounded: the margin of one bit below covers it
    if bound <= 2.0**52 and bool((np.trunc(values) == values).all()):
        return True  # whole numbers (e = 0), the usual case, without the exponent work below
    pos = values[values > 0]
    mantissa, exponent = np.frexp(pos)  # pos = mantissa * 2**exponent, 0.5 <= mantissa < 1
    units = np.ldexp(mantissa, 53).astype(np.int64)  # pos = units * 2**(exponent - 53), exactly
    _, low = np.frexp((units & -units).astype(np.float64))  # lowest set bit of units = 2**(low - 1)
    e = int((exponent - 54 + low).min())  # every value is a whole multiple of 2**e
    return math.frexp(bound)[1] <= 52 + e  # bound < 2**(52 + e)


def _intra_cost(
    layout: GroupLayout,
    local_vals: NDArray[np.float64],
    row_sums: NDArray[np.float64],
    col_sums: NDArray[np.float64],
) -> LevelCost:
    """The NVLink demand of the slowest rank, from the bytes of the same-node pairs
    (``local_vals``, in ``same_node_pairs`` order, diagonal zero) and each rank's same-node bytes
    sent (``row_sums``) and received (``col_sums``)."""
    load = np.maximum(row_sums, col_sums)
    # A rank's port (all its NVLink links, through NVSwitch or to its mesh peers) carries all its
    # peers' bytes at once, not along rings (``port_bandwidth``); on a mesh or PCIe a peer without
    # a direct link is reached over a slower route, which may be the limit.
    port = layout.port_bandwidth
    seconds = load / port
    # Every node of a system is built from the same node spec, so the route between local GPUs
    # i and j is the same in every node: cost it once per local pair (node 0's vertices).
    nonzero = local_vals != 0
    values = local_vals[nonzero]
    rows = layout.same_node_rows[nonzero]
    cols = layout.same_node_cols[nonzero]
    per_pair = values / layout.same_node_pair_bandwidth[nonzero]
    np.maximum.at(seconds, rows, per_pair)
    np.maximum.at(seconds, cols, per_pair)
    worst = int(np.argmax(seconds))
    sends = values > 0
    n = layout.n
    peers = max(
        int(np.bincount(rows[sends], minlength=n).max()), int(np.bincount(cols[sends], minlength=n).max())
    )
    # Bytes so few that their time underflows to 0 s move at the port's bandwidth.
    rate = load[worst] / seconds[worst] if seconds[worst] > 0 else port[worst]
    return LevelCost(float(p2p_rounds(peers, layout.n)), float(load[worst]), float(rate))


def _inter_cost(
    layout: GroupLayout, row_sums: NDArray[np.float64], col_sums: NDArray[np.float64], peers: int
) -> LevelCost:
    """The NIC demand of the slowest rank (bytes over its NIC share), from each rank's remote bytes
    sent and received and the most remote peers of one rank."""
    load = np.maximum(row_sums, col_sums)
    bw = layout.own_nic_bandwidth
    worst = int(np.argmax(load / bw))
    return LevelCost(float(p2p_rounds(peers, layout.n)), float(load[worst]), float(bw[worst]))


def _local_sums(
    layout: GroupLayout, local_vals: NDArray[np.float64], buffer: NDArray[np.float64] | None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each rank's same-node bytes sent and received: the row and column sums of the matrix that
    holds ``local_vals`` at the same-node pairs and zeros elsewhere.

    Exact values (``exact_sums``) are summed per rank with ``np.bincount`` (``n x local`` pairs);
    others in the ``n x n`` matrix itself, as before (``buffer``: a scratch ``n x n`` C-ordered
    array to build it in, else a new one), since the order numpy adds them in shapes the result.
    """
    n = layout.n
    if exact_sums(local_vals):
        rows, cols = layout.same_node_rows, layout.same_node_cols
        return np.bincount(rows, weights=local_vals, minlength=n), np.bincount(
            cols, weights=local_vals, minlength=n
        )
    local_m = np.zeros((n, n)) if buffer is None else buffer
    local_m.fill(0.0)
    local_m.reshape(-1)[layout.same_node_pairs] = local_vals
    return local_m.sum(axis=1), local_m.sum(axis=0)


def _level_costs(
    layout: GroupLayout, matrix: NDArray[np.float64], *, owned: bool = False
) -> tuple[LevelCost | None, LevelCost | None]:
    """Direct exchange of ``matrix``: the NVLink and NIC demand of the slowest rank.

    Same-node entries are read through the layout's flat indices of its same-node pairs
    (``same_node_pairs``, a few per member) rather than by masking and scanning the whole ``n x n``
    matrix for them; the remote part zeroes them in place, and the same-node matrix (when its sums
    need it, see ``_local_sums``) is then rebuilt in the same buffer rather than in a new one (a
    fresh ``n x n`` array costs its page faults). The figures are those of masking the matrix
    (``np.where(same, m, 0)``): the same sums over the same arrays, the same nonzeros in the same
    (row-major) order, the same peer counts. ``owned``: ``matrix`` is the caller's to overwrite
    (a fresh array), else it is copied first.
    """
    m = matrix if owned and matrix.flags.c_contiguous and matrix.flags.writeable else matrix.copy()
    np.fill_diagonal(m, 0.0)
    flat = m.reshape(-1)  # a view: ``m`` is C-ordered
    pairs = layout.same_node_pairs
    local_vals = flat[pairs]
    intra = inter = None
    if layout.num_nodes >= 2:
        flat[pairs] = 0.0  # ``m`` is now the remote part
        if m.any():
            inter = _inter_cost(layout, m.sum(axis=1), m.sum(axis=0), _peers(m > 0))
    if layout.local >= 2 and local_vals.any():
        # One node: every entry is a same-node pair, so ``m`` is already the same-node matrix.
        if layout.num_nodes == 1 and not exact_sums(local_vals):
            row_sums, col_sums = m.sum(axis=1), m.sum(axis=0)
        else:
            row_sums, col_sums = _local_sums(layout, local_vals, m)
        intra = _intra_cost(layout, local_vals, row_sums, col_sums)
    return intra, inter


def _exact_circulant_level_costs(
    layout: GroupLayout, row: NDArray[np.float64]
) -> tuple[LevelCost | None, LevelCost | None]:
    """``_level_costs`` of the circulant ``M[i, j] = row[(j - i) % n]`` whose values are
    ``exact_sums``, from the layout's ``local x n`` tables of same-node partners (``partners``).

    Every row and every column of ``M`` (diagonal zeroed) holds each entry of ``z`` (``row`` with
    ``z[0] = 0``) once, so a rank's remote bytes are the total of ``z`` less its same-node bytes and
    its remote peers the positive entries of ``z`` less its positive same-node ones. The sums are
    exact, so they are the matrix's sums bit for bit; maxima and counts are exact anyway, and the
    per-pair times are the same quotients of the same operands.
    """
    n = layout.n
    sent, received, sent_bw, received_bw = layout.partners
    z = np.empty(n + 1)
    z[:n] = row
    z[0] = 0.0  # the diagonal: a rank's copy to itself crosses no link
    z[n] = 0.0  # the tables' padding
    out_vals = z[sent]  # what each rank sends to each member of its node
    in_vals = z[received]  # what it receives from each
    intra = inter = None
    row_local = col_local = None
    out_count = in_count = None
    if layout.local >= 2 and out_vals.any():
        row_local, col_local = out_vals.sum(axis=0), in_vals.sum(axis=0)
        load = np.maximum(row_local, col_local)
        # A rank's port carries all its peers' bytes; a peer over a slower route may be the limit.
        port = layout.port_bandwidth
        seconds = load / port
        seconds = np.maximum(seconds, (out_vals / sent_bw).max(axis=0))
        seconds = np.maximum(seconds, (in_vals / received_bw).max(axis=0))
        worst = int(np.argmax(seconds))
        out_count = (out_vals > 0).sum(axis=0)
        in_count = (in_vals > 0).sum(axis=0)
        peers = max(int(out_count.max()), int(in_count.max()))
        # Bytes so few that their time underflows to 0 s move at the port's bandwidth.
        rate = load[worst] / seconds[worst] if seconds[worst] > 0 else port[worst]
        intra = LevelCost(float(p2p_rounds(peers, layout.n)), float(load[worst]), float(rate))
    zn = z[:n]
    if layout.num_nodes >= 2 and n * int(np.count_nonzero(zn)) > int(np.count_nonzero(out_vals)):
        if row_local is None or col_local is None:
            row_local, col_local = out_vals.sum(axis=0), in_vals.sum(axis=0)
        if out_count is None or in_count is None:
            out_count = (out_vals > 0).sum(axis=0)
            in_count = (in_vals > 0).sum(axis=0)
        total = zn.sum()
        peers = int(np.count_nonzero(zn > 0)) - min(int(out_count.min()), int(in_count.min()))
        inter = _inter_cost(layout, total - row_local, total - col_local, peers)
    return intra, inter


def _circulant_level_costs(
    layout: GroupLayout, op: Collective, row: NDArray[np.float64]
) -> tuple[LevelCost | None, LevelCost | None]:
    """``_level_costs`` of ``traffic_matrix(op)``, the circulant ``M[i, j] = row[(j - i) % n]``
    (``circulant_row``), building the ``n x n`` matrix only where its sums need it.

    Values that are ``exact_sums`` take ``_exact_circulant_level_costs`` (no matrix). Others are
    summed in the matrix, as before, since the order numpy adds them in shapes the result; the
    peer counts are still read off ``z`` (``row`` with ``z[0] = 0``, each row and column of ``M``
    holds each of its entries once): a rank's remote peers are the positive entries of ``z`` less
    its positive same-node ones (integers: exact), and ``M`` has remote bytes where it has more
    nonzeros (``n`` times those of ``z``) than its same-node pairs.
    """
    if exact_sums(row):
        return _exact_circulant_level_costs(layout, row)
    n = layout.n
    z = row.copy()
    z[0] = 0.0  # the diagonal: a rank's copy to itself crosses no link
    local_vals = z[layout.same_node_offsets]  # ``M`` at the same-node pairs, row-major
    rows, cols = layout.same_node_rows, layout.same_node_cols
    intra = inter = None
    dense: NDArray[np.float64] | None = None
    if layout.num_nodes >= 2 and n * int(np.count_nonzero(z)) > int(np.count_nonzero(local_vals)):
        dense = traffic_matrix(op)  # a fresh C-ordered array: ours to overwrite
        np.fill_diagonal(dense, 0.0)
        dense.reshape(-1)[layout.same_node_pairs] = 0.0  # the remote part
        sends = local_vals > 0
        peers = int(np.count_nonzero(z > 0)) - min(
            int(np.bincount(rows[sends], minlength=n).min()), int(np.bincount(cols[sends], minlength=n).min())
        )
        inter = _inter_cost(layout, dense.sum(axis=1), dense.sum(axis=0), peers)
    if layout.local >= 2 and local_vals.any():
        row_local, col_local = _local_sums(layout, local_vals, dense)
        intra = _intra_cost(layout, local_vals, row_local, col_local)
    return intra, inter


def _relayed_level_costs(
    layout: GroupLayout, matrix: NDArray[np.float64], exits: NDArray[np.intp]
) -> tuple[LevelCost | None, LevelCost | None]:
    """``_level_costs`` of ``matrix`` where some remote bytes leave their node through a PXN relay
    (``pxn.pxn_exits``), as the flows carry them (``model.collective_flows``).

    Each remote byte crosses NVLink from its sender to the relay (unless it leaves by the sender's
    own NIC), then the NIC of the relay, then the NIC of its destination: the node level carries the
    same-node bytes plus those hand-overs (a relay outside the group joins the node level as one
    more member), the network level each NIC's bytes sent and received over its rate, and each
    accelerator's host link (its way to its NIC) the bytes it hands its NIC and receives from the
    destination's. The per-peer steps are those of the same-node and of the remote peers: a relayed
    send is one p2p operation, its hand-over no peer of its own.
    """
    n = layout.n
    per_node = layout.gpus_per_node
    m = np.array(matrix, dtype=np.float64)
    np.fill_diagonal(m, 0.0)
    same = layout.same_node
    remote = np.where(same, 0.0, m)
    local = np.where(same, m, 0.0)
    group = np.asarray(layout.group, dtype=np.intp)
    nodes = np.asarray(layout.nodes, dtype=np.intp)
    # The accelerator (its global rank) whose NIC each remote byte leaves by.
    exit_rank = nodes[:, None] * per_node + exits
    relayed = (remote > 0) & (exit_rank != group[:, None])
    rows, cols = np.nonzero(relayed)
    relays = exit_rank[rows, cols]
    world = layout.topology.system.num_accelerators
    member = np.zeros(world, dtype=bool)
    member[group] = True
    extra = np.unique(relays[~member[relays]])  # sorted, unique: ``setdiff1d``'s, at a mask's cost
    wide = group_layout((*layout.group, *extra.tolist()), layout.topology) if extra.size else layout
    position = np.full(world, -1, dtype=np.intp)
    position[np.asarray(wide.group, dtype=np.intp)] = np.arange(wide.n)
    # The node level: the same-node matrix of the group, widened by the relays outside it, plus
    # each hand-over from a sender to its relay.
    hand = np.zeros((wide.n, wide.n))
    hand[:n, :n] = local
    hand += np.bincount(
        rows * wide.n + position[relays], weights=remote[rows, cols], minlength=wide.n * wide.n
    ).reshape(wide.n, wide.n)
    intra = None
    if hand.any():
        pair_bytes = _same_node_bytes(wide, hand)
        intra, _ = _level_costs(wide, hand, owned=True)
        intra = _with_shared_links(wide, intra, pair_bytes)
        if intra is not None:
            peers = _peers(local > 0) if local.any() else 0
            intra = LevelCost(float(p2p_rounds(peers, n)), intra.bytes, intra.bandwidth, intra.trips)
    if not remote.any():
        return intra, None
    # The network level: per accelerator (by global rank), the bytes it hands its NIC and those
    # it receives; per NIC, those of its accelerators together.
    sent = np.bincount(exit_rank.reshape(-1), weights=remote.reshape(-1), minlength=world)
    received = np.zeros(world)
    received[group] = remote.sum(axis=0)
    return intra, _nic_level(layout, sent, received, _peers(remote > 0))


def _local_relayed_level_costs(
    layout: GroupLayout,
    table: NDArray[np.intp],
    *,
    matrix: NDArray[np.float64] | None = None,
    row: NDArray[np.float64] | None = None,
) -> tuple[LevelCost | None, LevelCost | None]:
    """``_relayed_level_costs`` where the exits depend on local indices alone (``table``,
    ``pxn.pxn_local_exits``) and every relay is a member of the group, without an ``n x n`` table
    of exits: each member's remote bytes per destination local index (``by_local``, ``n x
    local``: ``_remote_by_local``) give its bytes per exit of its node, ``by_exit[i, r]``, hence
    both the hand-overs (to the member with local index ``r`` of ``i``'s node) and what each
    accelerator hands its NIC; the node level is costed from the same-node pairs
    (``same_node_pairs``) alone, as ``_level_costs`` reads them. The exchange is ``matrix``, or the
    circulant one of ``row`` (``base.circulant_row``). The loads of the general path, summed in
    another order (a test checks). A relay outside the group: the general path, which widens the
    node level."""
    n = layout.n
    per_node = layout.gpus_per_node
    found = _circulant_by_local(layout, row) if row is not None else None
    if found is None:
        if matrix is None:
            assert row is not None
            matrix = row[(np.arange(n)[None, :] - np.arange(n)[:, None]) % n]
        found = _remote_by_local(layout, matrix)
    by_local, local_vals, received_members, remote_peers = found
    nodes = np.asarray(layout.nodes, dtype=np.intp)
    locals_ = np.asarray(layout.locals, dtype=np.intp)
    index = (np.arange(n, dtype=np.intp)[:, None] * per_node + table[locals_]).reshape(-1)
    by_exit = np.bincount(index, weights=by_local.reshape(-1), minlength=n * per_node).reshape(n, per_node)
    own = by_exit[np.arange(n), locals_].copy()  # what leaves by the sender's own NIC
    by_exit[np.arange(n), locals_] = 0.0  # (no hand-over)
    position = np.full((int(nodes.max()) + 1, per_node), -1, dtype=np.intp)
    position[nodes, locals_] = np.arange(n)
    if bool(((by_exit > 0) & (position[nodes] < 0)).any()):
        exits = pxn_exits(layout)
        assert exits is not None  # the table relays a member's bytes: so do the pairs
        if matrix is None:
            assert row is not None
            matrix = row[(np.arange(n)[None, :] - np.arange(n)[:, None]) % n]
        return _relayed_level_costs(layout, matrix, exits)
    rows, cols = layout.same_node_rows, layout.same_node_cols
    hand_vals = local_vals + np.where(rows != cols, by_exit[rows, locals_[cols]], 0.0)
    intra = None
    if layout.local >= 2 and hand_vals.any():
        row_sums, col_sums = _local_sums(layout, hand_vals, None)
        intra = _intra_cost(layout, hand_vals, row_sums, col_sums)
        if facts(layout.topology).local_link_shares is not None:
            intra = _with_shared_links(layout, intra, hand_vals.copy())
        if intra is not None:
            sends = local_vals > 0
            peers = 0
            if sends.any():
                peers = max(
                    int(np.bincount(rows[sends], minlength=n).max()),
                    int(np.bincount(cols[sends], minlength=n).max()),
                )
            intra = LevelCost(float(p2p_rounds(peers, n)), intra.bytes, intra.bandwidth, intra.trips)
    if not by_local.any():
        return intra, None
    world = layout.topology.system.num_accelerators
    by_exit[np.arange(n), locals_] = own
    exit_ranks = (nodes[:, None] * per_node + np.arange(per_node, dtype=np.intp)[None, :]).reshape(-1)
    sent = np.bincount(exit_ranks, weights=by_exit.reshape(-1), minlength=world)
    received = np.zeros(world)
    received[np.asarray(layout.group, dtype=np.intp)] = received_members
    return intra, _nic_level(layout, sent, received, remote_peers)


_RemoteSummary = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], int]


def _remote_by_local(layout: GroupLayout, matrix: NDArray[np.float64]) -> _RemoteSummary:
    """(``by_local[i, d]``: what member ``i`` sends the members with local index ``d`` on other
    nodes; the same-node pairs' bytes (``same_node_pairs`` order, diagonal zero); each member's
    remote bytes received; the most remote peers of one member) of ``matrix``."""
    n = layout.n
    remote = np.array(matrix, dtype=np.float64)  # a copy: the same-node pairs zeroed below
    np.fill_diagonal(remote, 0.0)
    flat = remote.reshape(-1)  # a view: the copy is C-ordered
    local_vals = flat[layout.same_node_pairs]
    flat[layout.same_node_pairs] = 0.0  # now the remote part
    g = layout.gpus_per_node
    if n % g == 0 and _whole_nodes_in_order(layout):
        by_local = remote.reshape(n, n // g, g).sum(axis=1)  # columns k * g + d, summed over k
    else:
        onehot = np.zeros((n, g))
        onehot[np.arange(n), np.asarray(layout.locals, dtype=np.intp)] = 1.0
        by_local = remote @ onehot
    return by_local, local_vals, remote.sum(axis=0), _peers(remote > 0)


def _circulant_by_local(layout: GroupLayout, row: NDArray[np.float64]) -> _RemoteSummary | None:
    """``_remote_by_local`` of the circulant matrix ``M[i, j] = row[(j - i) % n]`` without making
    it, where the group is whole nodes in order (position ``k * g + s`` is local index ``s`` of
    its ``k``-th node): member ``(k, s)`` sends local index ``d`` of the node ``t`` nodes on
    ``row[(t g + d - s) % n]``, the same for every ``k``, so a ``nodes x g x g`` table has every
    remote entry. None for any other group."""
    n, g = layout.n, layout.gpus_per_node
    if n % g or not _whole_nodes_in_order(layout):
        return None
    offsets = np.arange(g)[None, :] - np.arange(g)[:, None]  # [s, d]: d - s
    hops = np.arange(1, n // g)[:, None, None] * g  # to the nodes t = 1 .. K - 1 places on
    remote = row[(hops + offsets[None]) % n]  # [t, s, d]
    by_local_s = remote.sum(axis=0)
    sends = remote > 0
    peers = max(int(sends.sum(axis=(0, 2)).max()), int(sends.sum(axis=(0, 1)).max())) if sends.size else 0
    local_vals = row[layout.same_node_offsets].astype(np.float64, copy=True)
    local_vals[layout.same_node_rows == layout.same_node_cols] = 0.0
    locals_ = np.asarray(layout.locals, dtype=np.intp)
    return by_local_s[locals_], local_vals, by_local_s.sum(axis=0)[locals_], peers


def _whole_nodes_in_order(layout: GroupLayout) -> bool:
    """Every node of the group whole (all its accelerators) and its members consecutive, in local
    order: position ``k * g + s`` is local index ``s``."""
    g = layout.gpus_per_node
    locals_ = np.asarray(layout.locals, dtype=np.intp)
    nodes = np.asarray(layout.nodes, dtype=np.intp).reshape(-1, g)
    return bool(
        np.array_equal(locals_, np.tile(np.arange(g), layout.n // g)) and (nodes == nodes[:, :1]).all()
    )


def _table_relays(layout: GroupLayout, table: NDArray[np.intp]) -> bool:
    """Whether ``table`` (``pxn.pxn_local_exits``) relays some pair of the group on two nodes: a
    local index ``s`` on one node and ``d`` on another with ``table[s, d] != s``."""
    per_node = layout.gpus_per_node
    _, node_slot = np.unique(np.asarray(layout.nodes), return_inverse=True)
    present = np.zeros((int(node_slot.max()) + 1, per_node))
    present[node_slot, np.asarray(layout.locals, dtype=np.intp)] = 1.0
    counts = present.sum(axis=0)
    across = counts[:, None] * counts[None, :] - present.T @ present > 0  # on two different nodes
    return bool((across & (table != np.arange(per_node)[:, None])).any())


def _nic_level(
    layout: GroupLayout, sent: NDArray[np.float64], received: NDArray[np.float64], peers: int
) -> LevelCost:
    """The network level of a relayed exchange: per accelerator (by global rank) the bytes it
    hands its NIC (``sent``) and those it receives; per NIC, those of its accelerators together;
    the slowest of the NICs and the accelerators' host links sets it."""
    per_node = layout.gpus_per_node
    ranks = np.flatnonzero((sent != 0) | (received != 0))
    sent, received = sent[ranks], received[ranks]
    # Each NIC by the global rank of its first owner, its rate and each accelerator's host link
    # by local index (every node is built from the same spec: ``_local_nic_tables``).
    owner, nic_rate, host_rate = _local_nic_tables(layout.topology)
    local_of = ranks % per_node
    nic_ids, nic_slot = np.unique(ranks - local_of + owner[local_of], return_inverse=True)
    nic_sent = np.bincount(nic_slot, weights=sent, minlength=nic_ids.size)
    nic_received = np.bincount(nic_slot, weights=received, minlength=nic_ids.size)
    nic_bw = nic_rate[nic_ids % per_node]
    host_bw = host_rate[local_of]
    loads = np.concatenate([np.maximum(nic_sent, nic_received), np.maximum(sent, received)])
    seconds = loads / np.concatenate([nic_bw, host_bw])
    worst = int(np.argmax(seconds))
    rate = loads[worst] / seconds[worst] if seconds[worst] > 0 else float(nic_bw.min())
    return LevelCost(float(p2p_rounds(peers, layout.n)), float(loads[worst]), float(rate))


_NicTables = tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]


def _local_nic_tables(topology: Topology) -> _NicTables:
    """By local index of an accelerator with one home NIC: the local index of that NIC's first
    owner, the NIC's rate, and the accelerator's host link (``_TopologyFacts.host_link_bandwidth``),
    node 0's standing for every node's (made once and kept by the topology: ``Topology.derived``)."""
    return topology.derived(_make_local_nic_tables)


def _make_local_nic_tables(topology: Topology) -> _NicTables:
    """``_local_nic_tables``, worked out."""
    known = facts(topology)
    graph = topology.graph._node
    count = topology.system.node.num_accelerators
    homes = [graph[gpu_id(0, i)].get("home_nics", ()) for i in range(count)]
    first: dict[str, int] = {}
    owner = np.arange(count, dtype=np.intp)
    nic_rate = np.full(count, np.nan)
    for i, home in enumerate(homes):
        if len(home) == 1:
            owner[i] = first.setdefault(home[0], i)
            nic_rate[i] = known.nic_bandwidth[home[0]]
    host_rate = np.asarray([known.host_link_bandwidth(i) for i in range(count)], dtype=np.float64)
    return owner, nic_rate, host_rate


def _single_nic(layout: GroupLayout) -> bool:
    """Every member has one scale-out NIC (what a PXN route needs at both ends): one member per
    local index stands for the others (every node is built from the same spec)."""
    _, first = np.unique(np.asarray(layout.locals), return_index=True)
    return all(len(layout.home_nics(p)) == 1 for p in first.tolist())


def _with_shared_links(
    layout: GroupLayout, intra: LevelCost | None, pair_bytes: NDArray[np.float64]
) -> LevelCost | None:
    """``intra`` at no more than the rate the node's shared links allow (``shared_link_seconds``):
    its bytes over the longer of its own time and the busiest shared link's."""
    if intra is None or intra.bytes <= 0:
        return intra
    bound = layout.shared_link_seconds(pair_bytes)
    if not bound > intra.seconds:  # (NaN bytes: as they are)
        return intra
    return LevelCost(intra.steps, intra.bytes, intra.bytes / bound, intra.trips)


def _same_node_bytes(layout: GroupLayout, matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    """``matrix`` at the layout's same-node pairs (a copy), where the node's links are shared."""
    if facts(layout.topology).local_link_shares is None:
        return np.zeros(0)
    return matrix.reshape(-1)[layout.same_node_pairs].copy()


def _remote_traffic(layout: GroupLayout, matrix: NDArray[np.float64]) -> Traffic:
    """The entries of ``matrix`` between positions on different nodes, as ``Traffic``."""
    m = np.asarray(matrix, dtype=np.float64)
    nodes = np.asarray(layout.nodes)
    send = (m > 0) & (nodes[:, None] != nodes[None, :])
    rows, cols = np.nonzero(send)
    return Traffic(rows.astype(np.intp), cols.astype(np.intp), m[rows, cols])


def _with_pcie_exit(
    layout: GroupLayout, intra: LevelCost | None, inter: LevelCost | None, matrix: NDArray[np.float64]
) -> LevelCost | None:
    """``intra`` on a PCIe-only node, where a rank's peer bytes and its bytes to and from its NIC
    cross its one PCIe link: at no more than the rate that link allows both (its NIC bytes at the
    link's own rate, ``GroupLayout.pcie_exit_weight``). Taken apart, a rank with a NIC of its own
    was charged the longer of the two where its link carries their sum: 34-43 % under the flows
    (a reviewer's find, for groups of one GPU per PCIe switch)."""
    if intra is None or inter is None or not layout.pcie_only or intra.bytes <= 0:
        return intra
    m = np.array(matrix, dtype=np.float64)
    np.fill_diagonal(m, 0.0)
    nodes = np.asarray(layout.nodes)
    local = np.where(nodes[:, None] == nodes[None, :], m, 0.0)
    remote = m - local
    # Peers through host memory (NCCL's SHM, ``GroupLayout.staged``): the link carries their plain
    # bytes at its own rate; each pair's staging bounds it on its own (``intra``'s per-pair bound).
    weight = layout.unstaged_exit_weight if layout.staged else layout.pcie_exit_weight
    load = np.maximum(
        local.sum(axis=1) + weight * remote.sum(axis=1), local.sum(axis=0) + weight * remote.sum(axis=0)
    )
    rate = layout.unstaged_intra_bandwidth if layout.staged else layout.intra_bandwidth
    seconds = float(load.max()) / rate
    if not seconds > intra.seconds:
        return intra
    return LevelCost(intra.steps, intra.bytes, intra.bytes / seconds, intra.trips)


@register
class DirectAllToAll(Algorithm):
    name = "direct"
    ops = frozenset({CollectiveOp.ALL_TO_ALL})
    protocols = P2P_PROTOCOLS
    kernel = KernelKind.P2P

    def protocol_names(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> tuple[str, ...]:
        return p2p_protocols(largest_message(op))

    def stages(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Stage]:
        if layout.n < 2:
            return []
        row = circulant_row(op)
        table = pxn_local_exits(layout)
        exits = None
        if layout.num_nodes >= 2 and (table is None or _table_relays(layout, table)):
            exits = pxn_exits(layout) if table is None else table
        if exits is not None and _single_nic(layout):
            # Some remote bytes leave by a PXN relay's NIC: charged where they leave.
            if table is not None and row is not None and isinstance(op, Collective):
                intra, inter = _local_relayed_level_costs(layout, table, row=row)
            elif table is not None:
                intra, inter = _local_relayed_level_costs(layout, table, matrix=traffic_matrix(op))
            else:
                intra, inter = _relayed_level_costs(layout, traffic_matrix(op), exits)
        elif row is not None and isinstance(op, Collective):
            intra, inter = _circulant_level_costs(layout, op, row)
            if facts(layout.topology).local_link_shares is not None:
                intra = _with_shared_links(layout, intra, row[layout.same_node_offsets])
            if layout.pcie_only and inter is not None:
                intra = _with_pcie_exit(layout, intra, inter, traffic_matrix(op))
        else:
            matrix = traffic_matrix(op)
            pair_bytes = _same_node_bytes(layout, matrix)
            intra, inter = _level_costs(layout, matrix, owned=False)
            intra = _with_shared_links(layout, intra, pair_bytes)
            intra = _with_pcie_exit(layout, intra, inter, matrix)
        if intra is None and inter is None:
            return []
        return [Stage("direct", levels(intra, inter), 1)]

    def flows(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Flow]:
        return matrix_flows(layout.vertices, traffic_matrix(op), 0)

    def pair_bytes(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, protocol: str
    ) -> dict[tuple[str, str], float]:
        # One phase: the flows are the matrix's entries, each its own pair (``matrix_flows``'s,
        # without making them).
        m = np.asarray(traffic_matrix(op), dtype=float)
        send = ~(m <= 0)
        np.fill_diagonal(send, False)
        rows, cols = np.nonzero(send)
        vertices = layout.vertices
        return dict(
            zip(
                zip([vertices[i] for i in rows.tolist()], [vertices[j] for j in cols.tolist()], strict=True),
                m[rows, cols].tolist(),
                strict=True,
            )
        )

    def traffic(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, stages: Sequence[Stage]
    ) -> list[Traffic]:
        return [_remote_traffic(layout, traffic_matrix(op))]


def _hierarchical_matrices(
    layout: GroupLayout, m: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(intra-node hand-over matrix, inter-node rail matrix), both indexed by group position.

    Entry ``(src, dst)`` of ``m`` goes to ``stage1[src, via]`` and (when ``src`` and ``dst`` are on
    different nodes) to ``stage2[via, dst]``, ``via`` being the member of ``src``'s node on
    ``dst``'s rail. The entries are accumulated with ``np.bincount`` over their flat targets, in
    row-major order of ``m``: for every target the same additions in the same order, from the same
    ``0.0``, as the loop over ``src`` then ``dst`` that did it one entry at a time (a second per
    all-to-all on 1024 GPUs); a same-node entry adds ``0.0`` to its ``stage2`` target, as the loop
    did.
    """
    n = layout.n
    nodes = np.asarray(layout.nodes)
    node_ids, node_index = np.unique(nodes, return_inverse=True)
    local_ids, local_index = np.unique(np.asarray(layout.locals), return_inverse=True)
    member = np.full((len(node_ids), len(local_ids)), -1, dtype=np.intp)
    member[node_index, local_index] = np.arange(n)
    via = member[node_index[:, None], local_index[None, :]]  # via[src, dst]
    if bool((via < 0).any()):
        src, dst = np.argwhere(via < 0)[0].tolist()
        raise KeyError((layout.nodes[src], layout.locals[dst]))  # as the dict lookup it replaces
    values = np.asarray(m, dtype=np.float64).reshape(-1)
    rows = np.arange(n)[:, None]
    cols = np.arange(n)[None, :]
    stage1 = np.bincount((rows * n + via).reshape(-1), weights=values, minlength=n * n).reshape(n, n)
    remote = np.where(layout.same_node, 0.0, values.reshape(n, n)).reshape(-1)
    stage2 = np.bincount((via * n + cols).reshape(-1), weights=remote, minlength=n * n).reshape(n, n)
    np.fill_diagonal(stage1, 0.0)
    return stage1, stage2


@register
class HierarchicalAllToAll(Algorithm):
    name = "hierarchical"
    ops = frozenset({CollectiveOp.ALL_TO_ALL})
    protocols = P2P_PROTOCOLS
    kernel = KernelKind.P2P
    auto = False

    def protocol_names(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> tuple[str, ...]:
        # Both stages are grouped send/recv: their largest hand-over decides the protocol.
        if layout.n < 2:
            return self.protocols
        stage1, stage2 = _hierarchical_matrices(layout, traffic_matrix(op))
        np.fill_diagonal(stage2, 0.0)
        return p2p_protocols(max(float(stage1.max(initial=0.0)), float(stage2.max(initial=0.0))))

    def unavailable(self, op: Collective, layout: GroupLayout) -> str | None:
        if not layout.uniform:
            return "hierarchical all-to-all needs the same local accelerators on every node"
        return None

    def stages(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Stage]:
        if layout.n < 2:
            return []
        stage1, stage2 = _hierarchical_matrices(layout, traffic_matrix(op))
        out = []
        pair_bytes = _same_node_bytes(layout, stage1)
        intra, _ = _level_costs(layout, stage1, owned=True)
        intra = _with_shared_links(layout, intra, pair_bytes)
        if intra is not None:
            out.append(Stage("intra", levels(intra, None), 1))
        _, inter = _level_costs(layout, stage2, owned=True)
        if inter is not None:
            out.append(Stage("inter", levels(None, inter), 1))
        return out

    def traffic(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, stages: Sequence[Stage]
    ) -> list[Traffic]:
        stage1, stage2 = _hierarchical_matrices(layout, traffic_matrix(op))
        # The network carries the second stage only: the first stays inside the nodes.
        return [_remote_traffic(layout, stage2 if Level.INTER in s.levels else stage1) for s in stages]

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
