"""The fast paths of the collective cost layer give the figures of the implementations they
replaced, bit for bit.

Each ``old_*`` / ``Old*`` below is the replaced implementation, copied verbatim (only renamed, and
made a subclass or a free function where it was a method) as the oracle:

* ``alltoall._level_costs`` copied the matrix, built the same-node matrix in a fresh ``n x n``
  array and summed both parts of the matrix; ``DirectAllToAll.stages`` always built the
  ``traffic_matrix``. Now one part's (circulant) matrix is costed from its row and the layout's
  same-node partner tables when its values are ``exact_sums`` (else summed in the matrix, peers
  counted from the row), and the general matrix is overwritten in place;
* ``alltoall._hierarchical_matrices`` looped over the ``n x n`` entries in Python;
* ``GroupLayout.local`` / ``uniform`` were recomputed on every read; ``own_nic_bandwidth`` and
  ``node_nic_bandwidth`` looked each member's home NICs up in the graph on every read;
  ``_TopologyFacts.nic_bandwidth`` read the graph through its Mapping views;
* ``Algorithm.traffic`` found each flow's stage with a search of its own (CollNet's now reads its
  ``FlowList`` without making the flows); ``FabricLeaves`` found a group's homes anew on every
  call and the relayed exits node by node (oversubscribed leaves);
* ``_TopologyFacts.local_link_shares`` read each pair's link shares from ``route_edge_shares``'
  generator, edge by edge.

The end-to-end checks cost random collectives (every op, every algorithm that can run them, uneven
all-to-all splits of several kinds, one part or every member's, wire dtypes) on several systems
from 1 to 128 nodes twice: on one topology with the old implementations patched in, on another
with the current ones, and compare the results' ``repr`` (exact floats).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from recsim.api import load_system
from recsim.cost.collectives import alltoall, base, fabric
from recsim.cost.collectives.alltoall import (
    DirectAllToAll,
    HierarchicalAllToAll,
    _circulant_level_costs,
    _hierarchical_matrices,
    _level_costs,
    exact_sums,
    p2p_rounds,
)
from recsim.cost.collectives.base import (
    REGISTRY,
    Algorithm,
    GroupLayout,
    LevelCost,
    Stage,
    Traffic,
    circulant_row,
    facts,
    group_layout,
    levels,
    traffic_matrix,
)
from recsim.cost.collectives.collnet import CollNetAllReduce
from recsim.cost.collectives.fabric import _CHUNK, FabricLeaves, fabric_leaves
from recsim.cost.collectives.model import collective_cost, collective_flows
from recsim.errors import ConfigError
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.topology import Topology, build_topology, gpu_id

# ------------------------------------------------------------------------------------------ oracles


def _old_peers(sends: NDArray[np.bool_]) -> int:
    """Most peers one member sends to or receives from: ``max(sends.sum(1).max(), sends.sum(0).max())``,
    counted in int32 (exact: at most ``n`` per member), about three times faster than bool sums."""
    return int(
        max(
            np.add.reduce(sends, axis=1, dtype=np.int32).max(),
            np.add.reduce(sends, axis=0, dtype=np.int32).max(),
        )
    )


def old_level_costs(
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
        # A rank's port (all its NVLink links, ``port_bandwidth``) carries all its peers' bytes; on
        # a mesh or PCIe a peer without a direct link is reached over a slower route.
        seconds = load / layout.port_bandwidth
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
        rate = load[worst] / seconds[worst] if seconds[worst] > 0 else layout.port_bandwidth[worst]
        intra = LevelCost(float(p2p_rounds(peers, layout.n)), float(load[worst]), float(rate))
    if layout.num_nodes >= 2:
        flat[pairs] = 0.0  # ``m`` is now the remote part
        remote_m = m
        if remote_m.any():
            load = np.maximum(remote_m.sum(axis=1), remote_m.sum(axis=0))
            bw = layout.own_nic_bandwidth
            worst = int(np.argmax(load / bw))
            inter = LevelCost(
                float(p2p_rounds(_old_peers(remote_m > 0), layout.n)), float(load[worst]), float(bw[worst])
            )
    return intra, inter


def old_direct_stages(
    self: DirectAllToAll, op: Collective | Sequence[Collective], layout: GroupLayout
) -> list[Stage]:
    if layout.n < 2:
        return []
    intra, inter = old_level_costs(layout, traffic_matrix(op))
    intra = with_shared_links(layout, intra, traffic_matrix(op))
    # The PCIe-only exit bound added since (``alltoall._with_pcie_exit``: the same call).
    intra = alltoall._with_pcie_exit(layout, intra, inter, traffic_matrix(op))
    if intra is None and inter is None:
        return []
    return [Stage("direct", levels(intra, inter), 1)]


def with_shared_links(
    layout: GroupLayout, intra: LevelCost | None, matrix: NDArray[np.float64]
) -> LevelCost | None:
    """The shared-link bound added since (``alltoall._with_shared_links``, not a fast path: the
    same call on the same-node bytes of the matrix)."""
    return alltoall._with_shared_links(layout, intra, matrix.reshape(-1)[layout.same_node_pairs].copy())


def old_hierarchical_matrices(
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


def old_hierarchical_stages(
    self: HierarchicalAllToAll, op: Collective | Sequence[Collective], layout: GroupLayout
) -> list[Stage]:
    if layout.n < 2:
        return []
    stage1, stage2 = old_hierarchical_matrices(layout, traffic_matrix(op))
    out = []
    intra, _ = old_level_costs(layout, stage1)
    intra = with_shared_links(layout, intra, stage1)
    if intra is not None:
        out.append(Stage("intra", levels(intra, None), 1))
    _, inter = old_level_costs(layout, stage2)
    if inter is not None:
        out.append(Stage("inter", levels(None, inter), 1))
    return out


class OldGroupLayout(GroupLayout):
    """``GroupLayout`` with the figures as they were computed (verbatim)."""

    @property
    def local(self) -> int:  # type: ignore[override]
        """Most group members on one node."""
        return max(len(ps) for ps in self.by_node.values())

    @property
    def uniform(self) -> bool:  # type: ignore[override]
        """Every node holds the same number of members at the same local indices."""
        patterns = {tuple(self.locals[p] for p in ps) for ps in self.by_node.values()}
        return len(patterns) == 1

    def _home(self, pos: int) -> list[str]:
        g = self.topology.graph
        nic_bw = facts(self.topology).nic_bandwidth
        return [v for v in g.nodes[self.vertices[pos]].get("home_nics", ()) if v in nic_bw]

    @cached_property
    def node_nic_bandwidth(self) -> float:
        """Per node: the members with a NIC times the slowest member's share (NCCL's equal parts,
        a channel per member; it was the home NICs' sum, which the flows showed too fast for a
        subset sharing NICs), smallest node; written plainly."""
        shares = self.own_nic_bandwidth
        best = math.inf
        for ps in self.by_node.values():
            own = [float(shares[p]) for p in ps if shares[p] > 0]
            best = min(best, len(own) * min(own) if own else 0.0)
        if best <= 0 or not math.isfinite(best):
            raise ConfigError(
                f"{self.topology.system.name}: no scale-out NICs between the nodes of the group"
            )
        return best  # (the bisection cap it had is gone: recsim.cost.collectives.fabric)

    @cached_property
    def own_nic_bandwidth(self) -> NDArray[np.float64]:
        """Per rank: its home NICs' bandwidth, shared with same-node members on the same NICs, at
        most its share (1/local) of the node's share of the bisection."""
        nic_bw = facts(self.topology).nic_bandwidth
        out = np.zeros(self.n)
        for ps in self.by_node.values():
            users: dict[str, int] = {}
            for p in ps:
                for v in self._home(p):
                    users[v] = users.get(v, 0) + 1
            for p in ps:
                out[p] = sum(nic_bw[v] / users[v] for v in self._home(p))
        if self.num_nodes > 1 and np.any(out <= 0):
            raise ConfigError(
                f"{self.topology.system.name}: an accelerator of the group has no scale-out NIC"
            )
        result: NDArray[np.float64] = out  # (no bisection cap since: recsim.cost.collectives.fabric)
        result.setflags(write=False)  # shared by every user of this (memoised) layout
        return result


class OldTopologyFacts(base._TopologyFacts):
    @cached_property
    def nic_bandwidth(self) -> dict[str, float]:
        """Scale-out NIC vertex -> its bandwidth to the network: the lesser of its two directions."""
        g = self.topology.graph
        out: dict[str, float] = {}
        for v, data in g.nodes(data=True):
            if data["kind"] != "nic":
                continue
            # ``g.succ[v]`` / ``g.pred[v]`` hold the out- and in-edges in the order ``out_edges`` and
            # ``in_edges`` give them (so the sums add in the same order), without the edge views.
            up = sum(d["bandwidth_bytes_per_s"] for d in g.succ[v].values() if d["kind"] == "network")
            down = sum(d["bandwidth_bytes_per_s"] for d in g.pred[v].values() if d["kind"] == "network")
            if min(up, down) > 0:
                out[v] = min(up, down)
        return out


# ------------------------------------------------------------------------------------------ inputs


def random_splits(rng: np.random.Generator, n: int, kind: int) -> NDArray[np.float64]:
    """Uneven all-to-all splits of several kinds: whole bytes, dyadic fractions, full-mantissa
    floats, sparse rows, ring (send/recv) rows, zeros, and the odd NaN / -0.0 / negative entry."""
    match kind % 9:
        case 0:
            row = rng.integers(0, 2_000_000, n).astype(float)
        case 1:
            row = rng.integers(1, 9, n) * 2.0**16 / 1024
        case 2:
            row = rng.random(n) * 1e6
        case 3:
            row = np.where(rng.random(n) < 0.7, 0.0, rng.integers(1, 1000, n).astype(float))
        case 4:
            row = np.zeros(n)
            row[1 % n] = float(rng.integers(1, 10**9))
        case 5:
            row = np.zeros(n)
        case 6:
            row = rng.integers(0, 3, n) * 17820.0
            row[rng.random(n) < 0.3] = 11339.78361548 * rng.random()
        case 7:
            row = rng.integers(0, 1000, n).astype(float)
            row[rng.integers(0, n)] = rng.choice([-0.0, np.nan, -3.0, 2.0**60, 1e-310])
        case _:
            row = rng.integers(0, 2**40, n).astype(float) * 2.0**-30
    return np.asarray(row, dtype=float)


def random_ops(rng: np.random.Generator, world: int, count: int, max_a2a: int) -> list[tuple[Any, ...]]:
    """(op, algorithm, wire_dtype, rank) tuples over random groups of ``world`` ranks."""
    out: list[tuple[Any, ...]] = []
    plain = [
        CollectiveOp.ALL_REDUCE,
        CollectiveOp.REDUCE_SCATTER,
        CollectiveOp.ALL_GATHER,
        CollectiveOp.BROADCAST,
        CollectiveOp.REDUCE,
        CollectiveOp.BARRIER,
    ]
    a2a = 0
    for k in range(count):
        n = int(rng.integers(2, world + 1)) if world > 1 else 1
        match k % 4:
            case 0:
                group = tuple(range(world))
            case 1:
                group = tuple(rng.permutation(world)[:n].tolist())
            case 2:
                group = tuple(range(0, world, max(1, world // n)))[:n]
            case _:
                group = tuple(sorted(rng.permutation(world)[:n].tolist()))
        size = float(rng.choice([0.0, 4.0, 1e3, 1e6, 3e8, 123456.789]))
        wire = None if k % 5 else "fp16"
        if k % 3 == 0 and a2a < max_a2a and len(group) >= 1:
            a2a += 1
            m = len(group)
            alg = None if k % 2 else "hierarchical"
            if k % 7 == 6:  # every member's part
                parts = [
                    Collective(
                        CollectiveOp.ALL_TO_ALL,
                        "a2a",
                        group,
                        size,
                        send_bytes=None if (k + i) % 5 == 0 else tuple(random_splits(rng, m, k + i).tolist()),
                    )
                    for i in range(m)
                ]
                out.append((parts, alg, wire, None))
            elif k % 4 == 1:
                out.append((Collective(CollectiveOp.ALL_TO_ALL, "a2a", group, size), alg, wire, None))
            else:
                splits = tuple(random_splits(rng, m, k).tolist())
                rank = group[int(rng.integers(0, m))] if k % 2 else None
                op = Collective(CollectiveOp.ALL_TO_ALL, "a2a", group, size, send_bytes=splits)
                out.append((op, alg, wire, rank))
            continue
        kind = plain[len(out) % len(plain)]
        names = [None] + [a.name for a in REGISTRY.values() if kind in a.ops]
        alg = names[int(rng.integers(0, len(names)))]
        out.append((Collective(kind, "c", group, size, dtype="fp32"), alg, wire, None))
        if len(group) >= 2 and k % 4 == 1:
            pair = group[:2]
            out.append((Collective(CollectiveOp.SEND, "p2p", pair, size), None, wire, None))
    return out


def cost_all(topology: Topology, ops: list[tuple[Any, ...]]) -> list[str]:
    out = []
    for op, alg, wire, rank in ops:
        try:
            with np.errstate(invalid="ignore"):  # NaN bytes compared in np.maximum
                cost = collective_cost(op, topology, alg, wire_dtype=wire, rank=rank)
                text = repr(cost)
                if alg == "hierarchical" and cost.stages:
                    text += repr(collective_flows(op, topology, alg, wire_dtype=wire, rank=rank))
        except (ConfigError, KeyError) as exc:
            text = f"{type(exc).__name__}: {exc}"
        out.append(text)
    return out


def old_costs(topology: Topology, ops: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    with monkeypatch.context() as mp:
        mp.setattr(base, "GroupLayout", OldGroupLayout)
        mp.setattr(alltoall, "_hierarchical_matrices", old_hierarchical_matrices)
        mp.setattr(DirectAllToAll, "stages", old_direct_stages)
        mp.setattr(HierarchicalAllToAll, "stages", old_hierarchical_stages)
        topology._derived[base._TopologyFacts] = OldTopologyFacts(topology)
        return cost_all(topology, ops)


def old_traffic(
    self: Algorithm, op: Collective | Sequence[Collective], layout: GroupLayout, stages: Sequence[Stage]
) -> list[Traffic]:
    """Per stage of ``stages`` (``stages(op, layout)``), the bytes its transfers carry between
    group positions: ``flows`` gathered by the stages' phases. An algorithm with a cheaper
    account of them (an all-to-all's matrix) gives it instead."""
    index = {v: p for p, v in enumerate(layout.vertices)}
    bounds = np.cumsum([s.phases for s in stages])
    parts: list[tuple[list[int], list[int], list[float]]] = [([], [], []) for _ in stages]
    for f in self.flows(op, layout):
        src, dst = index.get(f.src), index.get(f.dst)
        if src is None or dst is None:
            continue  # a transfer to a switch (in-network reduction): no GPU-to-GPU route
        k = int(np.searchsorted(bounds, f.phase, side="right"))
        if k >= len(parts):
            raise ValueError(f"{self.name}: a flow in phase {f.phase}, past its stages' {int(bounds[-1])}")
        parts[k][0].append(src)
        parts[k][1].append(dst)
        parts[k][2].append(f.bytes)
    return [
        Traffic(np.asarray(a, dtype=np.intp), np.asarray(b, dtype=np.intp), np.asarray(c, dtype=np.float64))
        for a, b, c in parts
    ]


_OldHomes = tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], list[list[int]]]


class OldFabricLeaves(FabricLeaves):
    """``FabricLeaves`` finding each call's homes anew and the relayed exits node by node."""

    def _homes(
        self, vertices: Sequence[str]
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], list[list[int]]]:
        """Per position: its node, the one leaf of its node's NICs (-2: several, -1: none), its home
        NIC's leaf (-1: none; -2: several home NICs) and index among its node's exits (-1: none),
        and the leaves of its home NICs (several where it has several)."""
        nodes = self.topology.graph.nodes
        n = len(vertices)
        node_of = np.fromiter((nodes[v]["node"] for v in vertices), dtype=np.intp, count=n)
        node_leaf = np.empty(n, dtype=np.intp)
        home_leaf = np.empty(n, dtype=np.intp)
        home_index = np.full(n, -1, dtype=np.intp)
        leaves: list[list[int]] = []
        index_of = {
            nic: k for exits in self.topology._node_exits.values() for k, (nic, _) in enumerate(exits)
        }
        for p, v in enumerate(vertices):
            mine = self._node_leaves.get(int(node_of[p]), frozenset())
            node_leaf[p] = next(iter(mine)) if len(mine) == 1 else (-2 if mine else -1)
            home = [self.leaf_of_nic[nic] for nic in nodes[v].get("home_nics", ()) if nic in self.leaf_of_nic]
            leaves.append(home)
            home_leaf[p] = home[0] if len(home) == 1 else (-2 if home else -1)
            if len(home) == 1:
                home_index[p] = index_of.get(nodes[v]["home_nics"][0], -1)
        return node_of, node_leaf, home_leaf, home_index, leaves

    def _relayed_exits(
        self,
        vertices: Sequence[str],
        src: NDArray[np.intp],
        dst: NDArray[np.intp],
        homes: _OldHomes,
        point_to_point: bool = False,
    ) -> NDArray[np.intp]:
        """The exit leaf of each transfer ``src[k] -> dst[k]`` from a node whose NICs sit under
        several leaves: its own NIC's, or (PXN, ``Topology._pxn_relay``) that of its node's exit
        with the destination NIC's index, where that one is fewer hops from the destination's leaf
        and its owner is reached over NVLink alone. Vectorised over the transfers (the NVLink test
        by local index, ``_nvlink_between``); the same choice as the routes' (a test checks).

        ``point_to_point`` and PXN off: the rules added since (``FabricLeaves._relayed_exits``,
        not a fast path: the same test on the same hops)."""
        node_of, _, home_leaf, home_index, _ = homes
        own = home_leaf[src]
        index = home_index[dst]
        dst_leaf = home_leaf[dst]
        candidate = np.full(src.size, -1, dtype=np.intp)
        relay_ok = np.zeros(src.size, dtype=bool)
        for node in np.unique(node_of[src]).tolist():
            exits, owners = self._exits.get(node, (np.zeros(0, dtype=np.intp), []))
            mine = node_of[src] == node
            usable = mine & (index >= 0) & (index < exits.size)
            candidate[usable] = exits[index[usable]]
            # NVLink to the owner, by local index: every node is built from the same spec.
            local = self._local_index
            owner_local = np.array([local[o] for o in owners] or [0], dtype=np.intp)
            cand_owner = owner_local[np.where(usable, index, 0)]
            senders = np.array([local[vertices[p]] for p in src[usable].tolist()], dtype=np.intp)
            relay_ok[usable] = self._nvlink_between[senders, cand_owner[usable]] & (
                senders != cand_owner[usable]
            )
        valid = (candidate >= 0) & (own >= 0) & (dst_leaf >= 0)
        hops = self._hops
        nearer = np.zeros(src.size, dtype=bool)
        nearer[valid] = hops[candidate[valid], dst_leaf[valid]] < hops[own[valid], dst_leaf[valid]]
        if not self.topology.pxn_enabled:
            nearer[valid] &= np.isinf(hops[own[valid], dst_leaf[valid]])
        elif point_to_point:
            nearer[valid] = True
        relay = valid & nearer & relay_ok & (home_index[src] != index)
        return np.where(relay, candidate, own)

    def seconds(self, vertices: Sequence[str], traffic: Traffic, *, point_to_point: bool = False) -> float:
        """The longest a leaf's uplinks or downlinks take to carry ``traffic`` (positions index
        ``vertices``) at their full rate."""
        if traffic.bytes.size == 0:
            return 0.0
        homes = self._homes(vertices)
        node_of, node_leaf, home_leaf, _, leaves = homes
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


def old_route_edge_shares(topology: Topology, src: str, dst: str) -> Iterator[tuple[tuple[str, str], float]]:
    """(directed link, share) of the bytes from ``src`` to ``dst`` on each link of each of their
    equal-cost paths, a path's share in proportion to its weakest link (NVSwitch striping; one
    path on PCIe or through a relaying GPU)."""
    succ = topology.graph._succ
    paths = topology.paths(src, dst)
    widths = [min(succ[a][b]["bandwidth_bytes_per_s"] for a, b in itertools.pairwise(p)) for p in paths]
    total = sum(widths)
    for path, width in zip(paths, widths, strict=True):
        for edge in itertools.pairwise(path):
            yield edge, width / total


def old_local_link_shares(topology: Topology) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """How point-to-point traffic between a node's accelerators loads the node's links, where
    links are shared: ``(shares, capacity)``, ``shares[i * local + j, k]`` the part of what
    local accelerator ``i`` sends ``j`` that crosses link ``k`` (node 0's links stand for every
    node's), ``capacity[k]`` its bytes/s.

    A pair's bytes spread over its equal-cost paths in proportion to each path's weakest link
    (NVSwitch striping; one path on PCIe). None where no link carries the traffic of two pairs
    with different senders and different receivers: every link is then one sender's or one
    receiver's port, and the per-rank figures (a rank's bytes over its port, a pair's over its
    route) are exact (NVSwitch, direct NVLinks). On PCIe, and for the pairs of an NVLink mesh
    without a direct link, several GPUs' traffic shares a PCIe switch's uplink and the CPUs'
    link, which those figures miss (a tester found DGX-1's all-to-all 4.5x too fast).
    """
    local = topology.system.node.num_accelerators
    if local < 2:
        return None
    succ = topology.graph._succ
    links: dict[tuple[str, str], int] = {}
    entries: dict[tuple[int, int], float] = {}
    senders: dict[int, set[int]] = {}
    receivers: dict[int, set[int]] = {}
    for i in range(local):
        for j in range(local):
            if i == j:
                continue
            for edge, share in old_route_edge_shares(topology, gpu_id(0, i), gpu_id(0, j)):
                k = links.setdefault(edge, len(links))
                key = (i * local + j, k)
                entries[key] = entries.get(key, 0.0) + share
                senders.setdefault(k, set()).add(i)
                receivers.setdefault(k, set()).add(j)
    if not any(len(senders[k]) > 1 and len(receivers[k]) > 1 for k in senders):
        return None
    shares = np.zeros((local * local, len(links)))
    # A pair that talks through host memory (NCCL's SHM transport, ``Topology.shm_pair``) puts its
    # plain bytes on each link (since 2026-12-07; its staging bounds it on its own).
    for (pair, k), share in entries.items():
        shares[pair, k] = share
    capacity = np.array([succ[a][b]["bandwidth_bytes_per_s"] for a, b in links], dtype=np.float64)
    shares.setflags(write=False)
    capacity.setflags(write=False)
    return shares, capacity


# ------------------------------------------------------------------------------------------ checks

SYSTEMS: list[tuple[str, int, int, int]] = [  # name, nodes, random ops, of which all-to-alls at most
    ("dgx-h100", 1, 60, 20),
    ("dgx-h100", 2, 60, 20),
    ("dgx-h100", 16, 60, 20),
    ("dgx-h100", 128, 12, 4),
    ("dgx-a100", 3, 60, 20),
    ("p4d-24xlarge", 2, 60, 20),
    ("zionex", 2, 60, 20),
    ("dgx-1-v100", 2, 40, 12),
    ("h100-pcie-server", 2, 40, 12),
]


@pytest.mark.parametrize(("name", "nodes", "count", "max_a2a"), SYSTEMS)
def test_collective_costs_match_the_old_implementations(
    name: str, nodes: int, count: int, max_a2a: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With PXN off: the old direct all-to-all charged every remote byte to its sender's NIC, as
    # NCCL does without PXN (with it, ``alltoall._relayed_level_costs`` has its own tests:
    # tests/unit/test_alltoall_pxn.py).
    system = load_system(name, nodes=nodes, overrides=["cluster.scale_out.pxn=false"] if nodes > 1 else [])
    rng = np.random.default_rng(nodes * 31 + len(name))
    ops = random_ops(rng, system.num_accelerators, count, max_a2a)
    if nodes == 128:  # the old hierarchical loop takes seconds on 1024 ranks: direct only there
        ops = [(op, None if alg == "hierarchical" else alg, w, r) for op, alg, w, r in ops]
    expected = old_costs(build_topology(system), ops, monkeypatch)
    got = cost_all(build_topology(system), ops)
    for (op, alg, _, _), e, g in zip(ops, expected, got, strict=True):
        assert g == e, (getattr(op, "op", "parts"), alg)


RAILS_4_TO_1 = (
    "cluster.scale_out.topology=rail_optimized",
    "cluster.scale_out.tiers=2",
    "cluster.scale_out.oversubscription=4",
)
OVERSUBSCRIBED: list[tuple[str, int, tuple[str, ...]]] = [
    ("dgx-h100", 16, RAILS_4_TO_1),
    ("dgx-h100", 5, (*RAILS_4_TO_1[:2], "cluster.scale_out.oversubscription=2")),
    ("dgx-h100", 8, ("cluster.scale_out.oversubscription=4",)),
    ("dgx-h100", 8, ("node.nics.per_accelerator=2", "cluster.scale_out.oversubscription=4")),
    ("p4d-24xlarge", 6, RAILS_4_TO_1),
    ("dgx-h100", 16, (*RAILS_4_TO_1, "cluster.scale_out.switch=quantum-qm8700")),
]


@pytest.mark.parametrize(("name", "nodes", "overrides"), OVERSUBSCRIBED)
def test_leaf_bounds_match_the_flow_by_flow_traffic(
    name: str, nodes: int, overrides: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On oversubscribed leaves every network stage is bounded by its transfers' bytes through
    them (``model._through_leaves``): the flows gathered by stage at once (``Algorithm.traffic``)
    and the homes kept per group, the relayed exits found for every node at once
    (``FabricLeaves``), give the figures of the flow-by-flow and node-by-node code."""
    try:
        system = load_system(name, nodes=nodes, overrides=overrides)
    except ConfigError:
        pytest.skip(f"{name} with {overrides} does not load")
    rng = np.random.default_rng(nodes * 7 + len(overrides))
    ops = random_ops(rng, system.num_accelerators, 40, 12)
    old_topology, new_topology = build_topology(system), build_topology(system)
    assert fabric_leaves(new_topology).oversubscribed
    with monkeypatch.context() as mp:
        mp.setattr(Algorithm, "traffic", old_traffic)
        mp.setattr(CollNetAllReduce, "traffic", old_traffic)  # its own: the FlowList's entries
        old_topology._derived[fabric.FabricLeaves] = OldFabricLeaves(old_topology)
        expected = cost_all(old_topology, ops)
    got = cost_all(new_topology, ops)
    for (op, alg, _, _), e, g in zip(ops, expected, got, strict=True):
        assert g == e, (getattr(op, "op", "parts"), alg)


@pytest.mark.parametrize(
    ("name", "nodes"),
    [("dgx-h100", 2), ("dgx-1-v100", 2), ("h100-pcie-server", 2), ("zionex", 2), ("p4d-24xlarge", 1)],
)
def test_local_link_shares_match_the_edge_by_edge_code(name: str, nodes: int) -> None:
    """The shares of a node's links in its pairs' traffic, read path by path
    (``_TopologyFacts.local_link_shares``), are those ``route_edge_shares`` gave edge by edge."""
    system = load_system(name, nodes=nodes)
    got = facts(build_topology(system)).local_link_shares
    want = old_local_link_shares(build_topology(system))
    assert (got is None) == (want is None)
    if got is not None and want is not None:
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def test_direct_all_to_all_of_1024_ranks_matches_the_matrix() -> None:
    """The circulant path at full scale: exact rows (partner tables), inexact rows (the matrix)."""
    topology = build_topology(load_system("dgx-h100", nodes=128))
    rng = np.random.default_rng(11)
    layouts = [group_layout(tuple(range(1024)), topology), group_layout(tuple(range(0, 1024, 3)), topology)]
    for layout in layouts:
        n = layout.n
        for kind in (0, 1, 2, 3, 6, 7):
            row = random_splits(rng, n, kind)
            op = Collective(CollectiveOp.ALL_TO_ALL, "a2a", layout.group, 1e6, send_bytes=tuple(row.tolist()))
            expected = repr(old_level_costs(layout, traffic_matrix(op)))
            with np.errstate(invalid="ignore"):
                assert repr(_circulant_level_costs(layout, op, row)) == expected, kind


@pytest.mark.parametrize(
    ("name", "nodes"), [("dgx-h100", 4), ("dgx-1-v100", 2), ("zionex", 2), ("dgx-a100", 3)]
)
def test_circulant_and_matrix_level_costs_match_the_old_ones(name: str, nodes: int) -> None:
    topology = build_topology(load_system(name, nodes=nodes))
    world = topology.system.num_accelerators
    rng = np.random.default_rng(5)
    groups = [
        tuple(range(world)),
        tuple(range(0, world, 2)),
        tuple(range(world - 1, -1, -3)),  # unsorted, uneven per node
        (0, 1, world - 1),
        (1, 2),
        tuple(rng.permutation(world)[: world // 2].tolist()),
    ]
    for group in groups:
        layout = group_layout(group, topology)
        n = len(group)
        for kind in range(27):
            row = random_splits(rng, n, kind)
            op = Collective(CollectiveOp.ALL_TO_ALL, "a2a", group, 1e6, send_bytes=tuple(row.tolist()))
            assert np.array_equal(circulant_row(op), row, equal_nan=True)
            m = traffic_matrix(op)
            before = m.copy()
            with np.errstate(invalid="ignore"):
                expected = repr(old_level_costs(layout, m))
                assert repr(_circulant_level_costs(layout, op, row)) == expected
                assert repr(_level_costs(layout, m)) == expected
                assert np.array_equal(m, before, equal_nan=True)  # the caller's matrix is left alone
                assert repr(_level_costs(layout, m, owned=True)) == expected
            dense = rng.random((n, n)) * 1e6
            if kind % 3 == 0:
                dense = np.round(dense)
            if kind % 4 == 1:
                dense[rng.random((n, n)) < 0.6] = 0.0
            assert repr(_level_costs(layout, dense)) == repr(old_level_costs(layout, dense))
        uniform = Collective(CollectiveOp.ALL_TO_ALL, "a2a", group, 3e6)
        expected = repr(old_level_costs(layout, traffic_matrix(uniform)))
        row = circulant_row(uniform)
        assert row is not None
        assert repr(_circulant_level_costs(layout, uniform, row)) == expected


@pytest.mark.parametrize(("name", "nodes"), [("dgx-h100", 4), ("dgx-a100", 3), ("zionex", 2)])
def test_hierarchical_matrices_match_the_loop(name: str, nodes: int) -> None:
    topology = build_topology(load_system(name, nodes=nodes))
    world = topology.system.num_accelerators
    rng = np.random.default_rng(3)
    groups = [tuple(range(world)), tuple(range(0, world, 2)), tuple(range(world - 1, -1, -1))]
    groups.append(tuple(rng.permutation(world).tolist()))
    for group in groups:
        layout = group_layout(group, topology)
        assert layout.uniform
        n = len(group)
        for k in range(6):
            m = rng.random((n, n)) * 1e6
            if k == 1:
                m[rng.random((n, n)) < 0.3] = -0.0
            if k == 2:
                m[rng.random((n, n)) < 0.1] = np.nan
            if k == 3:
                m = -m
            if k == 4:
                m = np.round(m)
            for got, expected in zip(
                _hierarchical_matrices(layout, m), old_hierarchical_matrices(layout, m), strict=True
            ):
                assert got.tobytes() == expected.tobytes()  # -0.0 and NaN payloads included
    uneven = group_layout((0, 1, 8), build_topology(load_system("dgx-h100", nodes=2)))
    with pytest.raises(KeyError):
        _hierarchical_matrices(uneven, np.ones((3, 3)))
    with pytest.raises(KeyError):
        old_hierarchical_matrices(uneven, np.ones((3, 3)))


@pytest.mark.parametrize(
    ("name", "nodes"),
    [
        ("dgx-h100", 16),
        ("dgx-a100", 3),
        ("p4d-24xlarge", 2),
        ("zionex", 2),
        ("dgx-1-v100", 2),
        ("big-basin", 1),
    ],
)
def test_layout_figures_match_the_old_ones(name: str, nodes: int) -> None:
    system = load_system(name, nodes=nodes)
    old_topology, new_topology = build_topology(system), build_topology(system)
    old_topology._derived[base._TopologyFacts] = OldTopologyFacts(old_topology)
    old_nics, new_nics = facts(old_topology).nic_bandwidth, facts(new_topology).nic_bandwidth
    assert list(new_nics.items()) == list(old_nics.items())
    world = system.num_accelerators
    rng = random.Random(9)
    groups = [
        tuple(range(world)),
        tuple(range(0, world, 2)),
        tuple(rng.sample(range(world), max(1, world // 3))),
    ]
    groups += [(0,), (0, world - 1)]
    for group in groups:
        old, new = OldGroupLayout(group, old_topology), GroupLayout(group, new_topology)
        assert (new.local, new.uniform) == (old.local, old.uniform)
        assert [new.home_nics(p) for p in range(new.n)] == [old.home_nics(p) for p in range(old.n)]
        for figure in ("node_nic_bandwidth", "own_nic_bandwidth"):
            try:
                expected = repr(getattr(old, figure))
            except ConfigError as exc:
                with pytest.raises(ConfigError, match=str(exc)):
                    getattr(new, figure)
                continue
            assert repr(getattr(new, figure)) == expected


def test_partner_tables_hold_the_same_node_pairs() -> None:
    topology = build_topology(load_system("dgx-h100", nodes=3))
    for group in [tuple(range(24)), (0, 1, 2, 9, 17, 18), tuple(range(23, -1, -2))]:
        layout = group_layout(group, topology)
        n = layout.n
        sent, received, sent_bw, received_bw = layout.partners
        pair_bw = topology.local_pair_bandwidth()
        listed = set()
        for slot in range(sent.shape[0]):
            for i in range(n):
                if sent[slot, i] == n:
                    assert received[slot, i] == n and sent_bw[slot, i] == received_bw[slot, i] == math.inf
                    continue
                j = (i + int(sent[slot, i])) % n
                assert (i - j) % n == received[slot, i]
                assert layout.nodes[i] == layout.nodes[j]
                li, lj = layout.locals[i], layout.locals[j]
                assert sent_bw[slot, i] == pair_bw[li, lj] and received_bw[slot, i] == pair_bw[lj, li]
                listed.add(i * n + j)
        assert sorted(listed) == layout.same_node_pairs.tolist()


def test_exact_sums_means_every_order_gives_one_figure() -> None:
    """Where ``exact_sums`` holds, numpy's row and column sums of shuffled copies, ``np.bincount``
    and the correctly rounded sum agree; it refuses what would round, and NaN, inf, -0.0 and
    negatives."""
    rng = np.random.default_rng(1)
    accepted = 0
    for k in range(400):
        n = int(rng.integers(1, 300))
        scale = 2.0 ** int(rng.integers(-40, 60))
        if k % 3 == 0:
            values = rng.integers(0, 2 ** int(rng.integers(1, 53)), n).astype(float) * scale
        elif k % 3 == 1:
            values = np.round(rng.random(n) * 2**20) * scale
        else:
            values = rng.random(n) * scale
        if exact_sums(values):
            accepted += 1
            total = math.fsum(values.tolist())
            for _ in range(3):
                shuffled = rng.permutation(values)
                grid = np.stack([shuffled, rng.permutation(values)])
                assert grid.sum(axis=1).tolist() == [total, total]
                assert grid.T.sum(axis=0).tolist() == [total, total]
                assert np.bincount(np.zeros(n, dtype=np.intp), weights=shuffled)[0] == total
                part = shuffled[: n // 2]
                assert total - part.sum() == math.fsum(shuffled[n // 2 :].tolist())
    assert accepted > 150
    assert exact_sums(np.array([]))
    assert exact_sums(np.zeros(5))
    assert exact_sums(np.array([2.0**52, 0.0]))
    assert not exact_sums(np.array([2.0**52, 1.0]))  # bound reaches 2**53
    assert not exact_sums(np.array([0.1, 0.2, 0.3]))
    assert not exact_sums(np.array([1.0, -0.0]))
    assert not exact_sums(np.array([1.0, -1.0]))
    assert not exact_sums(np.array([1.0, np.nan]))
    assert not exact_sums(np.array([1.0, np.inf]))
    assert exact_sums(np.array([1e-320, 3e-320]))  # subnormal multiples of 2**-1074
    assert exact_sums(np.array([0.5, 0.25, 3.0 * 2.0**-30]))
