"""The bytes one step moves through each resource, and the utilisation per resource class they give
(``recsim.metrics.resources`` defines the classes and the figures).

Every byte comes from the cost model, as the engines charge it:

* collectives: their flows (``collective_flows``, the algorithm and protocol the cost chose; an
  uneven all-to-all's whole traffic matrix), routed as the DES engine routes them: each flow over
  its equal-cost paths (``Topology.route``), split in proportion to each path's weakest link
  (``network.edge_loads``, the cost model's ``route_edge_shares``: what the DES filling gives a
  lone flow, and an all-to-all through NVSwitch chips reached over 5-4-4-5 links, where an even
  split loaded a dgx-h100 GPU's 4-link NVLinks 12.5 % over what the DES moves; the ``scale_up``
  class sums a GPU's links, so its figures read the same either way), in wire bytes
  (payload / the protocol's efficiency: what the flow occupies of a link's capacity). The bytes a
  rank sends and receives are read from and written to its HBM;
* copies (``Transfer``): host <-> HBM over the rank's host link (its link to its PCIe switch and the
  switch's uplink to the CPU, or its direct link to the CPU) at ``PCIE_COPY_EFFICIENCY`` of the
  line rate where the link is PCIe (the copy's cost model), and through the node's host DRAM; from
  a peer (``peer``: the uploading GPU takes turns over the node's, ``GraphBuilder.global_batch_input``)
  1/(n-1) of the bytes from each other accelerator of the node, routed as a flow, as are copies
  between PCIe peers; every ``hbm`` end reads or writes its HBM;
* lookups (``Embedding``): the tier's ``bytes_by_resource`` (``recsim.cost.embedding``): ``hbm``,
  ``pcie`` over the host link (to the accelerator, but ``details["pcie_to_host_bytes"]``), ``ddr``
  and ``nmp_channel`` through host DRAM (as the energy model charges DRAM);
* kernels (``Compute``): the bytes their roofline's memory term moves (``hbm_bytes``);
* host work (``Host``, data loading): its bytes through host DRAM.

Like the stream busy times (``busy_time``), the step's work is the last chained step's nodes, whole,
over the window's length (the step time); a folded rank's (``recsim.graph.build``, ``rank_classes``)
is its representative's. Both engines count the same bytes; only the step time differs. Host traffic
goes to the CPU the accelerator hangs off and its memory (ASSUMPTION: host buffers local to it, as
NCCL and the data loaders pin them). A node's host DRAM serves reads and writes from the same
channels, so its instance counts both against the node's bandwidth (``host_memory_bandwidth``).
Each CPU socket's instance (``host_memory_socket``) counts the bytes DES puts on that socket's DRAM
link (``op_dram_bytes``: not RecNMP's in-DIMM reads) against the link's rate (``recsim.engine.
host_dram``), capped at 1 with a note where the step asks more (the analytic engine's, or nodes
counted whole past DES's window).

The analytic engine schedules each collective alone: where collectives overlap on a link, or an
algorithm's alpha-beta time is kinder than its flows' load, a link can carry more than its capacity
over the step. That is reported unclamped, with a note naming the class (the step is optimistic
there; DES shares the links). DES shares the links among collectives, so their bytes alone stay
within each link's capacity (checked: ``check_links``). DES also puts the copies' and lookups' link
bytes on its network (``op_host_flows``, the routes above: ``recsim.engine.des``), so there a copy or
a UVM lookup and a collective's traffic over one host link or NVLink slow each other, and the
ops of one rank that run at once on different queues share its HBM (``op_hbm_bytes``,
``recsim.engine.hbm``), and the ranks of one CPU socket its DRAM (``op_dram_bytes``,
``recsim.engine.host_dram``: the DRAM of the CPU each accelerator hangs off, as counted here); the
analytic engine shares nothing.
A note says where a link or memory carries more than its capacity over the step.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from recsim.cost.collectives.model import collective_pair_traffic
from recsim.cost.embedding import DDR, HBM, NMP_CHANNEL, PCIE
from recsim.cost.memo import TRAFFIC_KEPT, let_go_when_full
from recsim.cost.model import CostModel, copy_efficiency
from recsim.engine.network import _edge_index, edge_loads, path_split
from recsim.engine.timeline import Window
from recsim.graph.index import GraphIndex
from recsim.graph.ir import Collective, Compute, Embedding, Host, Op, Transfer, is_uneven_all_to_all
from recsim.hardware.system import System
from recsim.hardware.topology import ACCELERATOR, Topology
from recsim.metrics.resources import LABELS, RESOURCE_CLASSES, ResourceFigures

#: The classes whose instances are links of the topology (the rest are devices' memories).
LINK_CLASSES = ("host_link", "scale_up", "network", "network_uplinks")

#: The classes whose figures are capped at 1: a CPU socket's DRAM at the rate DES shares it at
#: (``recsim.engine.host_dram``), so a figure of the analytic engine, which does not share it,
#: means the same; what an instance asks past its capacity is said in a note instead.
CAPPED_CLASSES = ("host_memory_socket",)

#: How far above its capacity an instance may be before a note (or, for DES's collectives, an
#: invariant) says so: a chain of a few steps only nears the steady state, as ``check_busy`` allows.
OVER_CAPACITY = 1e-2


# ------------------------------------------------------------------------------ the hardware side


@dataclass(frozen=True)
class _LinkClass:
    """A class of links: groups of directed edges (one direction of one instance; a group's
    capacity is its edges' together), each group belonging to one instance."""

    instances: list[str]
    entry_edge: NDArray[np.int64]  # edge id of each (group, edge) entry
    entry_group: NDArray[np.int64]  # group of each entry
    group_instance: NDArray[np.int64]
    group_capacity: NDArray[np.float64]  # bytes/s


@dataclass(frozen=True)
class _Layout:
    """What the figures need of a topology: the link classes, each accelerator's routes to and from
    its CPU (edge ids of the one path), its node, and the edge count."""

    links: dict[str, _LinkClass]
    to_device: list[NDArray[np.int64]]  # per accelerator: the edges from its CPU to it
    to_host: list[NDArray[np.int64]]
    node_of: list[int]  # per accelerator
    n_edges: int


def _layout(topology: Topology) -> _Layout:
    """The topology's ``_Layout``, made once and kept by it (``Topology.derived``)."""
    return topology.derived(_make_layout)


def _host_cpu(topology: Topology, acc: str) -> str | None:
    """The CPU ``acc`` hangs off: through its PCIe switch, or directly (Grace's NVLink-C2C)."""
    nodes, succ = topology.graph._node, topology.graph._succ
    for parent in succ[acc]:
        kind = nodes[parent]["kind"]
        if kind == "cpu":
            return parent
        if kind == "pcie_switch":
            return next((v for v in succ[parent] if nodes[v]["kind"] == "cpu"), None)
    return None


def _make_layout(topology: Topology) -> _Layout:
    index = _edge_index(topology)
    capacity = index.capacity()
    nodes = topology.graph._node
    kinds = {v: d["kind"] for v, d in nodes.items()}
    accelerators = topology.accelerators
    groups: dict[str, list[tuple[str, list[int]]]] = defaultdict(list)  # class -> (instance, edges)

    def add(cls: str, instance: str, edges: list[int]) -> None:
        if edges:
            groups[cls].append((instance, edges))

    to_device: list[NDArray[np.int64]] = []
    to_host: list[NDArray[np.int64]] = []
    empty = np.zeros(0, dtype=np.int64)
    for acc in accelerators:
        cpu = _host_cpu(topology, acc)
        if cpu is None:
            to_device.append(empty)
            to_host.append(empty)
            continue
        route = [index.local_pair(cpu, acc), index.local_pair(acc, cpu)]
        down, up = route[0][0], route[1][0]
        # The one path's edges (a host route has one: its PCIe switch, or none).
        down = down[: int(route[0][1][0])]
        up = up[: int(route[1][1][0])]
        to_device.append(down)
        to_host.append(up)
        for edge in (*down.tolist(), *up.tolist()):
            add("host_link", acc, [edge])  # each direction of each link on the route its own
    by_vertex_out: dict[tuple[str, str], list[int]] = defaultdict(list)
    by_vertex_in: dict[tuple[str, str], list[int]] = defaultdict(list)
    for k, (a, b) in enumerate(index.edges):
        ka, kb = kinds[a], kinds[b]
        cls = None
        if (ka == ACCELERATOR and kb in ("nvswitch", ACCELERATOR)) or (
            kb == ACCELERATOR and ka == "nvswitch"
        ):
            if topology.graph._succ[a][b]["kind"] == "nvlink":
                cls = "scale_up"
        elif {ka, kb} == {"nic", "switch"}:
            cls = "network"
        elif ka == kb == "switch":
            cls = "network_uplinks"
        if cls is None:
            continue
        # The instance: the accelerator, NIC or (for switch-to-switch links) the tail's switch.
        if cls == "scale_up":
            if ka == ACCELERATOR:
                by_vertex_out[(cls, a)].append(k)
            if kb == ACCELERATOR:
                by_vertex_in[(cls, b)].append(k)
        elif cls == "network":
            nic = a if ka == "nic" else b
            (by_vertex_out if ka == "nic" else by_vertex_in)[(cls, nic)].append(k)
        else:
            by_vertex_out[(cls, a)].append(k)
            by_vertex_in[(cls, b)].append(k)
    for table in (by_vertex_out, by_vertex_in):
        for (cls, vertex), edges in table.items():
            add(cls, vertex, edges)
    links: dict[str, _LinkClass] = {}
    for cls in LINK_CLASSES:
        listed = groups.get(cls)
        if not listed:
            continue
        names = sorted(dict.fromkeys(name for name, _ in listed), key=_natural)
        number = {name: i for i, name in enumerate(names)}
        entry_edge = np.array([e for _, edges in listed for e in edges], dtype=np.int64)
        entry_group = np.repeat(np.arange(len(listed)), [len(edges) for _, edges in listed])
        group_capacity = np.array([float(capacity[edges].sum()) for _, edges in listed])
        links[cls] = _LinkClass(
            names,
            entry_edge,
            entry_group.astype(np.int64),
            np.array([number[name] for name, _ in listed], dtype=np.int64),
            group_capacity,
        )
    node_of = [int(nodes[acc]["node"]) for acc in accelerators]
    return _Layout(links, to_device, to_host, node_of, len(index.edges))


def _natural(name: str) -> tuple[object, ...]:
    """``n2.gpu10`` after ``n2.gpu9``: numbers compared as numbers."""
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


# ------------------------------------------------------------------------------ the bytes


@dataclass(frozen=True)
class _Traffic:
    """What one op or collective moves: wire bytes per edge (sparse), and bytes per rank through
    HBM, host DRAM and each direction of the host link (payload / wire)."""

    edges: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    edge_bytes: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    hbm: float = 0.0  # the op's own rank
    dram: float = 0.0
    dram_bus: float = 0.0  # of ``dram``, the bytes over the channels' bus (not RecNMP's in-DIMM reads)
    to_device: float = 0.0  # wire bytes over the rank's host link
    to_host: float = 0.0
    peer_in: float = 0.0  # payload from the node's peers (spread over them)
    peer_out: float = 0.0
    rank_hbm: Mapping[int, float] | None = None  # a collective's, by rank


@dataclass
class Loads:
    """The step's bytes: wire bytes per directed edge (the collectives' apart from the rest), and
    per rank through HBM, per node through host DRAM, and per CPU socket over its DRAM channels'
    bus (``sockets``: each socket's DRAM as ``recsim.engine.host_dram.dram_of_rank`` names it, its
    bytes in ``socket_dram`` and its rate in ``socket_capacity``, bytes/s)."""

    flow_edges: NDArray[np.float64]
    other_edges: NDArray[np.float64]
    hbm: NDArray[np.float64]
    dram: NDArray[np.float64]
    sockets: list[str] = field(default_factory=list)
    socket_dram: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    socket_capacity: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))


def _op_traffic(op: Op, cost: CostModel, pcie_wire: float) -> _Traffic:
    """What a non-collective op moves (``pcie_wire``: wire bytes per payload byte of a PCIe copy)."""
    if isinstance(op, Compute):
        return _Traffic(hbm=cost.compute_hbm_bytes(op) if cost.system.accelerator is not None else 0.0)
    if isinstance(op, Embedding):
        detail = cost.embedding_cost(op)
        pcie = detail.bytes_on(PCIE)
        back = float(detail.details.get("pcie_to_host_bytes", 0.0))
        return _Traffic(
            hbm=detail.bytes_on(HBM),
            dram=detail.bytes_on(DDR) + detail.bytes_on(NMP_CHANNEL),
            dram_bus=detail.bytes_on(DDR),
            to_device=pcie - back,
            to_host=back,
        )
    if isinstance(op, Host):
        return _Traffic(dram=op.bytes, dram_bus=op.bytes)
    if isinstance(op, Transfer):
        src, dst, size = op.src.split(":")[0], op.dst.split(":")[0], op.bytes
        ends = (src, dst)
        return _Traffic(
            hbm=size * ends.count("hbm"),
            dram=size * ends.count("host"),
            dram_bus=size * ends.count("host"),
            to_device=size * pcie_wire if (src, dst) == ("host", "hbm") else 0.0,
            to_host=size * pcie_wire if (src, dst) == ("hbm", "host") else 0.0,
            peer_in=size if src == "peer" else 0.0,
            peer_out=size if dst == "peer" else 0.0,
        )
    return _Traffic()


def _collective_traffic(parts: Collective | list[Collective], cost: CostModel, rank: int | None) -> _Traffic:
    """A collective's flows on the topology (``rank``: whose part a lone uneven part is), all
    phases together (``collective_pair_traffic``)."""
    topology = cost.topology
    pairs = collective_pair_traffic(parts, topology, rank=rank)
    keep = np.flatnonzero(pairs.payload > 0)
    if keep.size == 0:
        return _Traffic()
    srcs, dsts = [pairs.srcs[k] for k in keep.tolist()], [pairs.dsts[k] for k in keep.tolist()]
    # Each flow split over its paths by their widths (``edge_loads``).
    loads = edge_loads(srcs, dsts, pairs.wire[keep], topology)
    edges = np.flatnonzero(loads)
    # Each rank reads what it sends from its HBM and writes what it receives there.
    rank_of = {v: r for r, v in enumerate(topology.accelerators)}
    ends = np.fromiter((rank_of.get(v, -1) for v in (*srcs, *dsts)), dtype=np.intp, count=2 * len(srcs))
    payload = np.concatenate([pairs.payload[keep]] * 2)
    on_rank = ends >= 0
    hbm = np.bincount(ends[on_rank], weights=payload[on_rank], minlength=len(rank_of))
    touched = np.flatnonzero(hbm)
    return _Traffic(
        edges=edges,
        edge_bytes=loads[edges],
        rank_hbm=dict(zip(touched.tolist(), hbm[touched].tolist(), strict=True)),
    )


def _cached(cost: CostModel, key: object, make: object) -> _Traffic:
    found = cost.traffic.get(key)
    if found is None:
        found = make()  # type: ignore[operator]
        let_go_when_full(cost.traffic, TRAFFIC_KEPT)[key] = found
    assert isinstance(found, _Traffic)
    return found


def step_loads(
    index: GraphIndex,
    window: Window,
    cost: CostModel,
    system: System,
    classes: Mapping[int, Sequence[int]],
) -> Loads:
    """The bytes of the window's nodes (see the module docstring). ``classes``: a folded
    representative's ranks (``rank_classes``), which move what it moves."""
    topology = cost.topology
    layout = _layout(topology)
    world = system.num_accelerators
    ops, ranks = index.source_ops, index.source_ranks
    n = len(ops)
    positions, step_of = _window_positions(index, window)
    counts = np.bincount(step_of, minlength=n)
    pcie_wire = pcie_wire_per_byte(system)
    # Per rank: HBM, host DRAM, and over the host link to the device, to the host, from peers and
    # to peers (payload for the peers', wire bytes for the host link's).
    # Each distinct op's row (by identity: a chain's copies and the ranks share their ops), then
    # every node's row times its count, added to its rank's at once.
    row_of: dict[int, int] = {}
    rows: list[tuple[float, ...]] = []
    taken: list[int] = []  # the step nodes that run in the window, but collectives
    at: list[int] = []  # their op's row
    collective_steps: list[int] = []
    for p in np.flatnonzero(counts).tolist():
        op = ops[p]
        if type(op) is Collective:
            collective_steps.append(p)
            continue
        k = row_of.get(id(op))
        if k is None:
            t = _cached(cost, cost.value_key(op), lambda op=op: _op_traffic(op, cost, pcie_wire))
            k = row_of[id(op)] = len(rows)
            rows.append((t.hbm, t.dram, t.to_device, t.to_host, t.peer_in, t.peer_out, t.dram_bus))
        taken.append(p)
        at.append(k)
    per_rank = np.zeros((world, 7))
    if taken:
        nodes = np.asarray(taken, dtype=np.intp)
        weighted = np.asarray(rows, dtype=np.float64)[at] * counts[nodes][:, None]
        np.add.at(per_rank, np.asarray(ranks, dtype=np.intp)[nodes], weighted)
    for rep, members in classes.items():  # a folded rank moves what its representative does
        per_rank[np.asarray(members, dtype=np.intp)] = per_rank[rep]
    hbm = per_rank[:, 0].copy()
    per_node = max(1, system.node.num_accelerators)
    dram = np.bincount(
        np.arange(world) // per_node, weights=per_rank[:, 1], minlength=max(1, system.num_nodes)
    )
    other = np.zeros(layout.n_edges)
    _host_link_loads(other, hbm, per_rank[:, 2:6], topology, system, pcie_wire)
    flow = np.zeros(layout.n_edges)
    _collective_loads(flow, hbm, index, positions, step_of, collective_steps, cost)
    sockets, socket_dram, socket_capacity = _socket_loads(per_rank[:, 6], topology, system)
    return Loads(flow, other, hbm, dram, sockets, socket_dram, socket_capacity)


def _socket_loads(
    bus_by_rank: NDArray[np.float64], topology: Topology, system: System
) -> tuple[list[str], NDArray[np.float64], NDArray[np.float64]]:
    """Each CPU socket's DRAM bus bytes (every socket of the topology, busy or not, then the node
    DRAM of any rank that hangs off no CPU) and its rate: the ranks' bytes (``op_dram_bytes``,
    ``bus_by_rank``) summed on the DRAM each reads and writes, at the rate DES's DRAM link has
    (``recsim.engine.host_dram.dram_of_rank``: the node's channels at ``CPU_MEMORY_EFFICIENCY``
    over its sockets), so both engines report the quantity DES shares."""
    # Imported here: ``host_dram`` reads this module's ``_host_cpu``.
    from recsim.engine.host_dram import dram_of_rank, socket_dram_bytes_per_s

    nodes = topology.graph._node
    cpus = sorted((v for v, d in nodes.items() if d["kind"] == "cpu"), key=_natural)
    capacity = dict.fromkeys(cpus, socket_dram_bytes_per_s(system)) if cpus else {}
    carried: dict[str, float] = dict.fromkeys(capacity, 0.0)
    for rank, size in enumerate(bus_by_rank.tolist()):
        name, rate = dram_of_rank(topology, system, rank)
        capacity.setdefault(name, rate)
        carried[name] = carried.get(name, 0.0) + size
    names = list(capacity)
    return (
        names,
        np.array([carried[n] for n in names], dtype=np.float64),
        np.array([capacity[n] for n in names], dtype=np.float64),
    )


def _window_positions(index: GraphIndex, window: Window) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """The positions of the window's nodes in ``index``, and of the step nodes they copy (the same
    positions for an index that is no chain of copies)."""
    positions = window.positions_in(index)
    if positions is None:
        position = index.position
        positions = np.asarray(sorted(position[i] for i in window.node_ids), dtype=np.intp)
    step_of = positions % len(index.source_ops) if index.copies is not None else positions
    return positions, step_of


def collective_loads(index: GraphIndex, window: Window, cost: CostModel, system: System) -> Loads:
    """The bytes of the window's collectives alone (a replay's: the trace records the collectives'
    sizes, not what its kernels and lookups move)."""
    layout = _layout(cost.topology)
    positions, step_of = _window_positions(index, window)
    ops = index.source_ops
    steps = sorted({s for s in step_of.tolist() if type(ops[s]) is Collective})
    flow = np.zeros(layout.n_edges)
    hbm = np.zeros(system.num_accelerators)
    _collective_loads(flow, hbm, index, positions, step_of, steps, cost)
    return Loads(flow, np.zeros(layout.n_edges), hbm, np.zeros(max(1, system.num_nodes)))


@dataclass(frozen=True)
class HostFlow:
    """One flow of a copy's or a lookup's bytes over the topology (``host_flows``): the link ids of
    its equal-cost paths one after the other (``cols``; ``lens``: links per path, as
    ``_EdgeIndex.pair`` gives them), the wire bytes it carries, split over its paths by their
    widths (``network.path_split``), and its kind: ``to_device`` or ``to_host`` over the rank's
    host link (one path), ``peer`` between the rank and ``peer`` (whose HBM reads or writes
    ``payload`` of it)."""

    cols: NDArray[np.int32] | NDArray[np.int64]
    lens: NDArray[np.int32]
    wire_bytes: float
    kind: str
    peer: int = -1
    payload: float = 0.0


#: ``HostFlow.kind`` of the flows over a rank's host link (the other kind is ``peer``).
HOST_LINK_KINDS = ("to_device", "to_host")


def pcie_wire_per_byte(system: System) -> float:
    """Wire bytes a copy over the host link occupies per payload byte: 1 / ``copy_efficiency``
    of the host interface's family (the copy's cost model), 1 without accelerators."""
    acc = system.accelerator
    return 1.0 / copy_efficiency(acc.host_interface.family) if acc is not None else 1.0


def host_flows(
    host: Sequence[float], rank: int, topology: Topology, system: System, pcie_wire: float
) -> list[HostFlow]:
    """The flows of a rank's host traffic ``host`` (wire bytes over its host link to the device and
    to the host, payload from and to its node's peers, as ``_op_traffic`` counts them), routed:
    host link bytes over the one path between the rank and the CPU it hangs off (``_Layout``); a
    peer copy's bytes 1/(n-1) from (to) each other accelerator of the node, as a flow over the
    pair's equal-cost paths, in wire bytes at the copy's efficiency where the peers talk over PCIe
    (``pcie_wire``). Flows without bytes, or without a path (no CPU), are left out."""
    layout = _layout(topology)
    out: list[HostFlow] = []
    for kind, size, route in (
        ("to_device", host[0], layout.to_device[rank]),
        ("to_host", host[1], layout.to_host[rank]),
    ):
        if size > 0 and len(route):
            out.append(HostFlow(route, np.array([len(route)], dtype=np.int32), float(size), kind))
    per_node = system.node.num_accelerators
    if host[2] + host[3] <= 0 or per_node < 2:
        return out
    node = system.node
    nvlink = node.scale_up is not None and node.scale_up.fabric != "pcie" and system.accelerator is not None
    wire = 1.0 if nvlink and system.accelerator.nvlink is not None else pcie_wire  # type: ignore[union-attr]
    index = _edge_index(topology)
    accelerators = topology.accelerators
    base = rank - rank % per_node
    peers = [q for q in range(base, min(base + per_node, len(accelerators))) if q != rank]
    for q in peers:
        for src, dst, size in ((q, rank, host[2]), (rank, q, host[3])):
            if size <= 0:
                continue
            share = size / len(peers)
            cols, lens = index.pair(accelerators[src], accelerators[dst])
            out.append(HostFlow(cols, lens, share * wire, "peer", q, share))
    return out


def op_host_flows(op: Op, rank: int, cost: CostModel) -> list[HostFlow]:
    """The flows of one copy or lookup of ``rank`` (``host_flows`` of what ``_op_traffic`` counts
    for it; none for other ops): the traffic the DES engine puts on its shared network."""
    if not isinstance(op, Transfer | Embedding):
        return []
    system = cost.system
    pcie_wire = pcie_wire_per_byte(system)
    t = _cached(cost, cost.value_key(op), lambda: _op_traffic(op, cost, pcie_wire))
    host = (t.to_device, t.to_host, t.peer_in, t.peer_out)
    return host_flows(host, rank, cost.topology, system, pcie_wire)


def op_hbm_bytes(op: Op, cost: CostModel) -> float:
    """The bytes one op other than a collective moves through its own rank's HBM (``_op_traffic``'s
    ``hbm``; 0 for a collective, whose kernels' HBM use is in their interference stretch): what the
    DES engine puts on the rank's HBM link (``recsim.engine.hbm``)."""
    if isinstance(op, Collective) or cost.system.accelerator is None:
        return 0.0
    pcie_wire = pcie_wire_per_byte(cost.system)
    return _cached(cost, cost.value_key(op), lambda: _op_traffic(op, cost, pcie_wire)).hbm


def op_dram_bytes(op: Op, cost: CostModel) -> float:
    """The bytes one op other than a collective moves through its rank's host DRAM over the
    channels' bus (``_op_traffic``'s ``dram`` but a lookup's ``nmp_channel`` bytes, which RecNMP
    DIMMs read inside the DIMM): what the DES engine puts on the socket's DRAM link
    (``recsim.engine.host_dram``). 0 for a collective (NCCL's host-staged transports are not
    counted here, as the report does not count them either)."""
    if isinstance(op, Collective):
        return 0.0
    pcie_wire = pcie_wire_per_byte(cost.system)
    return _cached(cost, cost.value_key(op), lambda: _op_traffic(op, cost, pcie_wire)).dram_bus


def _host_link_loads(
    edges: NDArray[np.float64],
    hbm: NDArray[np.float64],
    host: NDArray[np.float64],
    topology: Topology,
    system: System,
    pcie_wire: float,
) -> None:
    """Add each rank's host traffic (``host``: to device, to host, from peers, to peers) to
    ``edges`` (``host_flows``, each split over its paths by their widths, ``network.path_split``),
    and what its peers' HBM reads or writes for it to ``hbm``. The host links' bytes first, then
    the peers', rank by rank (the order of the sums on a shared edge)."""
    ranks = np.flatnonzero(host.any(axis=1)).tolist()
    flows = {r: host_flows(host[r].tolist(), r, topology, system, pcie_wire) for r in ranks}
    capacity = _edge_index(topology).capacity()
    for kind in HOST_LINK_KINDS:
        for r in ranks:
            for f in flows[r]:
                if f.kind == kind:
                    edges[f.cols] += f.wire_bytes  # one path, its links each once
    for r in ranks:
        for f in flows[r]:
            if f.kind == "peer":
                hbm[f.peer] += f.payload  # the peer's side of the copy
                weights = np.repeat(f.wire_bytes * path_split(f.cols, f.lens, capacity), f.lens)
                np.add.at(edges, f.cols, weights)


def _collective_loads(
    edges: NDArray[np.float64],
    hbm: NDArray[np.float64],
    index: GraphIndex,
    positions: NDArray[np.intp],
    step_of: NDArray[np.intp],
    collective_steps: list[int],
    cost: CostModel,
) -> None:
    """Add the window's collectives' flows to ``edges`` and their ranks' bytes to ``hbm``: each
    collective once (its members are one vertex of the index), the whole group's traffic."""
    if not collective_steps:
        return
    ops, ranks = index.source_ops, index.source_ranks
    members_of: dict[int, list[int]] = defaultdict(list)
    vertex = index.vertex_array
    taken = np.isin(step_of, np.asarray(collective_steps, dtype=np.intp))
    for p, s in zip(positions[taken].tolist(), step_of[taken].tolist(), strict=True):
        members_of[int(vertex[p])].append(s)
    for steps in members_of.values():
        member_ops = [ops[p] for p in steps]
        head = member_ops[0]
        assert isinstance(head, Collective)
        if len(head.group) < 2:
            continue
        parts: Collective | list[Collective] = head
        rank: int | None = None
        if any(is_uneven_all_to_all(o) for o in member_ops):
            whole = cost._ordered_parts(member_ops, [ranks[p] for p in steps])
            if whole is not None:
                parts = whole
            else:  # a one-rank trace: its part stands for the matrix, as ``part_s`` costs it
                rank = ranks[steps[0]]
        key = (cost.collective_key(parts), rank)
        found = _cached(cost, key, lambda parts=parts, rank=rank: _collective_traffic(parts, cost, rank))
        np.add.at(edges, found.edges, found.edge_bytes)
        for r, b in (found.rank_hbm or {}).items():
            hbm[r] += b


# ------------------------------------------------------------------------------ the figures


@dataclass(frozen=True)
class StepResources:
    """The figures of a step, and the busiest instance of each link class counting the
    collectives' bytes alone (``check_links``: what DES's shared network keeps within capacity)."""

    figures: ResourceFigures
    flow_peaks: Mapping[str, tuple[str, float]]


def resource_figures(
    loads: Loads,
    topology: Topology,
    system: System,
    step_s: float,
    fidelity: str,
    known: Iterable[str] = RESOURCE_CLASSES,
) -> StepResources:
    """Utilisation per class from the step's ``loads`` over ``step_s`` (see the module docstring);
    ``known``: the classes whose bytes ``loads`` holds (the others are left out)."""
    known = tuple(known)
    if not step_s > 0 or not math.isfinite(step_s):
        return StepResources(ResourceFigures(classes=()), {})
    layout = _layout(topology)
    per_instance: dict[str, tuple[list[str], NDArray[np.float64]]] = {}
    flow_peaks: dict[str, tuple[str, float]] = {}
    acc = system.accelerator
    if acc is not None and len(topology.accelerators):
        per_instance["hbm"] = (topology.accelerators, loads.hbm / (acc.hbm.bandwidth_bytes_per_s * step_s))
    memory_bw = system.node.host_memory_bandwidth_bytes_per_s
    if memory_bw > 0:
        names = [f"n{k}" for k in range(len(loads.dram))]
        per_instance["host_memory"] = (names, loads.dram / (memory_bw * step_s))
    if loads.sockets and memory_bw > 0:  # a node without DRAM bandwidth has no socket figures either
        per_instance["host_memory_socket"] = (
            loads.sockets,
            loads.socket_dram / (loads.socket_capacity * step_s),
        )
    for cls, links in layout.links.items():
        both = _instance_use(links, loads.flow_edges + loads.other_edges, step_s)
        alone = _instance_use(links, loads.flow_edges, step_s)
        per_instance[cls] = (links.instances, both)
        k = int(np.argmax(alone))
        flow_peaks[cls] = (links.instances[k], float(alone[k]))
    mean: dict[str, float] = {}
    peak: dict[str, float] = {}
    busiest: dict[str, str] = {}
    notes: list[str] = []
    for cls in RESOURCE_CLASSES:
        if cls not in known or cls not in per_instance:
            continue
        names, values = per_instance[cls]
        k = int(np.argmax(values))
        mean[cls], peak[cls], busiest[cls] = float(values.mean()), float(values[k]), names[k]
        label = LABELS[cls]
        flows = flow_peaks.get(cls)
        if cls in CAPPED_CLASSES:
            # A share of a rate DES shares (never over 1): what it carries past it is the note's.
            mean[cls] = float(np.minimum(values, 1.0).mean())
            peak[cls] = min(peak[cls], 1.0)
            if values[k] > 1.0 + OVER_CAPACITY:
                notes.append(_capped_note(cls, names[k], float(values[k]), fidelity))
        elif fidelity != "des" and flows is not None and flows[1] > 1.0 + OVER_CAPACITY:
            engine, hint = (
                ("the analytic engine runs", "; --fidelity des shares them")
                if fidelity == "analytic"
                else ("a replay runs", "")
            )
            notes.append(
                f"{fidelity}: the collectives ask {flows[1]:.2f}x what {flows[0]} ({label}, "
                f"utilisation_max.{cls}) carries in the step: {engine} each collective as if it had "
                f"the links alone, so the step is optimistic there{hint}"
            )
        elif peak[cls] > 1.0 + OVER_CAPACITY:
            if fidelity == "des" and cls in LINK_CLASSES:
                # Every byte on a link is a flow of DES's network, within capacity at every instant.
                who = (
                    "DES keeps the link within its capacity at every instant, but the step's nodes, "
                    "counted whole, outlast the window (the chained steps are not yet steady)"
                )
            elif fidelity == "des" and cls == "host_memory":
                # Every DDR byte but RecNMP's channel bytes is a flow of a socket's DRAM link, at
                # CPU_MEMORY_EFFICIENCY of the pin rate this figure divides by.
                who = (
                    "DES shares each socket's DRAM among its copies, lookups and host work at every "
                    "instant, but not RecNMP DIMMs' channel bytes, and the step's nodes, counted "
                    "whole, may outlast the window"
                )
            elif fidelity == "des" and cls == "hbm":
                # The ops of a rank's queues are flows of its HBM link, at the fitted memory
                # efficiency of the bandwidth this figure divides by; a collective's kernels are not
                # (their HBM use is in their interference stretch), though their bytes count here.
                who = (
                    "DES shares each rank's HBM among its kernels, copies and lookups at every "
                    "instant, but not the collectives' own HBM traffic, and the step's nodes, counted "
                    "whole, may outlast the window"
                )
            else:
                # HBM and host DRAM are DES's shared resources as well as the links (``recsim.
                # engine.hbm``, ``recsim.engine.host_dram``): only the analytic engine and a replay
                # run the ops beside each other unslowed.
                who = (
                    "the copies, lookups and kernels that share it are not slowed for it, so the step "
                    "is optimistic there" + ("; --fidelity des shares it" if fidelity == "analytic" else "")
                )
            notes.append(
                f"{busiest[cls]} ({label}, utilisation_max.{cls}) carries {peak[cls]:.2f}x its capacity "
                f"in the step: {who}"
            )
    figures = ResourceFigures(
        mean, peak, busiest, tuple(c for c in RESOURCE_CLASSES if c in known), tuple(notes)
    )
    return StepResources(figures, {c: v for c, v in flow_peaks.items() if c in known})


def _capped_note(cls: str, name: str, raw: float, fidelity: str) -> str:
    """The note of a capped class's instance that carries ``raw`` x its capacity in the step."""
    if fidelity == "des":
        # Every byte of the class is a flow of the socket's DRAM link (``op_dram_bytes``).
        who = (
            "DES shares each socket's DRAM among its copies, lookups and host work at every instant, "
            "but the step's nodes, counted whole, outlast the window"
        )
    else:
        who = (
            "the copies, lookups and host work that share it are not slowed for it, so the step is "
            "optimistic there" + ("; --fidelity des shares it" if fidelity == "analytic" else "")
        )
    return (
        f"{name} ({LABELS[cls]}, utilisation_max.{cls}, reported as 100%) carries {raw:.2f}x its "
        f"capacity in the step: {who}"
    )


def _instance_use(links: _LinkClass, edge_bytes: NDArray[np.float64], step_s: float) -> NDArray[np.float64]:
    """Each instance's utilisation: its busiest group's bytes over the group's capacity."""
    carried = np.bincount(
        links.entry_group, weights=edge_bytes[links.entry_edge], minlength=len(links.group_capacity)
    )
    use = carried / (links.group_capacity * step_s)
    out = np.zeros(len(links.instances))
    np.maximum.at(out, links.group_instance, use)
    return out


def step_resources(
    index: GraphIndex,
    window: Window,
    cost: CostModel,
    system: System,
    classes: Mapping[int, Sequence[int]],
    fidelity: str,
) -> StepResources:
    """``resource_figures`` of the window's nodes (``step_loads``) over the window's length."""
    loads = step_loads(index, window, cost, system, classes)
    return resource_figures(loads, cost.topology, system, window.length_s, fidelity)
