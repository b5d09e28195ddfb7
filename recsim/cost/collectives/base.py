"""The pieces every collective algorithm shares: where the ranks sit, what each fabric level offers.

* ``Flow``: one point-to-point transfer of a collective (the input of ``recsim.engine.network``).
* ``Level``: the two fabric levels a collective can cross, ``intra`` (NVLink/NVSwitch, or PCIe,
  inside a node) and ``inter`` (NICs and the scale-out network).
* ``GroupLayout``: the ranks of a group placed on the topology (rank ``r`` is accelerator
  ``r % gpus_per_node`` of node ``r // gpus_per_node``) and the bandwidth each level gives them,
  read off the topology graph:

  - ``intra_bandwidth``: the route bandwidth (max-flow over the equal-cost paths) between ring
    neighbours inside a node, the smallest over the group: a GPU's whole NVLink (18 x 25 GB/s on
    H100) through NVSwitch, the PCIe path without NVLink; on an NVLink mesh (DGX-1) the sum of
    NCCL-style rings over the direct links (``mesh_rings``: 6 x 25 GB/s per V100 where the mesh
    allows it);
  - ``port_bandwidth``: per member, all its scale-up links together, for point-to-point traffic
    that uses every link at once (all-to-all; a 4-GPU mesh's three links, not its rings);
  - ``node_nic_bandwidth``: the scale-out NICs of a node that the group's accelerators use (their
    home NICs): ring and tree collectives run a channel per member through its NIC, an equal share
    of the data each, so the node moves its members' count times the slowest member's share (the
    NICs' sum where the shares are equal; a degraded NIC holds back every channel's step, as flows
    show);
  - ``own_nic_bandwidth``: one accelerator's home NICs, shared with the group members that have the
    same home NIC: point-to-point traffic (all-to-all, send/recv) cannot aggregate NICs (NCCL
    maintainers, nccl-tests issue 267);
  - an oversubscribed fabric's leaves bound the network part further, from each algorithm's own
    transfers (``recsim.cost.collectives.fabric``). Every figure is a min or sum of link
    capacities, so more bandwidth anywhere never lowers it.

* ``Stage``/``LevelCost``: what an algorithm asks of each level (pipeline steps and bytes through
  the bottleneck resource of that level); ``recsim.cost.collectives.model`` turns them into time.
* ``Algorithm`` and ``REGISTRY``: one class per algorithm, registered under its name with
  ``@register``; adding an algorithm is one class.
* ``level_calibration``: the calibrated constants of a level (the NVSwitch's or NIC's
  ``calibration`` block) or the documented defaults below when a device has none; a NIC without
  RDMA gets NCCL's socket transport (``socket_calibration``, ``DEFAULT_SOCKET``): slower steps and
  a fraction of the line rate, as measured over TCP.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import ClassVar, TypeVar

import numpy as np
from numpy.typing import NDArray

from recsim.errors import ConfigError
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.calibration import (
    SOCKET_LINE_FRACTION,
    WIRE_PAYLOAD_FRACTION,
    CollectiveCalibration,
    CollectiveProtocol,
    KernelKind,
)
from recsim.hardware.system import Node
from recsim.hardware.topology import SHM_EFFICIENCY, Route, Topology, gpu_id

# ------------------------------------------------------------------------------------------ flows


@dataclass(frozen=True, slots=True)
class Flow:
    """``bytes`` of payload from vertex ``src`` to vertex ``dst`` of the topology graph.

    Flows of one ``group`` (a collective's key) run phase by phase: phase ``p + 1`` starts when the
    last flow of phase ``p`` has finished; different groups run concurrently and share links.
    ``efficiency`` is the achieved fraction of the link rate for this flow's protocol and level
    (calibrated): the flow occupies ``bytes / efficiency`` of link capacity.

    ``cap_bytes_per_s``: the most link capacity (wire bytes/s, as the links' rates) the flow can
    take whatever room its links have, a limit of its own, not of a link: a pair that talks through
    host memory (NCCL's SHM transport, ``Topology.shm_pair``) moves no faster than its staging
    (the route's bandwidth, ``SHM_EFFICIENCY`` of its links' rate), while the links it crosses
    carry its plain bytes. inf: no such limit. The fluid network takes it as a link of the flow's
    own of that capacity (``recsim.engine.network``).
    """

    src: str
    dst: str
    bytes: float
    phase: int = 0
    group: str = ""
    efficiency: float = 1.0
    cap_bytes_per_s: float = math.inf

    @property
    def wire_bytes(self) -> float:
        return self.bytes / self.efficiency


# ------------------------------------------------------------------------------------------ levels


class Level(StrEnum):
    INTRA = "intra"
    INTER = "inter"


@dataclass(frozen=True, slots=True)
class LevelCost:
    """One stage's demand on one level: ``steps`` sequential pipeline hops, ``bytes`` through the
    level's bottleneck resource whose rate is ``bandwidth`` (bytes/s, before efficiency), in
    ``trips`` GPU-to-GPU messages."""

    steps: float
    bytes: float
    bandwidth: float
    # How many trips from one GPU to another the steps amount to, each taking at least the level's
    # route latency (``stage_costs``); None: one per step (a ring's or a tree's hop, an all-to-all
    # round). A SHARP reduction's steps are switch hops of one trip up the tree and back.
    trips: float | None = None
    # The level's latency for the stage as one figure, in place of ``steps`` x the protocol's step
    # latency (still at least ``trips`` routes): NCCL's CollNet and multi-node NVLS rows are a
    # per-call network latency, not a per-hop one (``recsim.cost.collectives.collnet``).
    latency_s: float | None = None

    @property
    def seconds(self) -> float:
        """Bandwidth time at 100 % efficiency."""
        if self.bytes <= 0:
            return 0.0
        return self.bytes / self.bandwidth


@dataclass(frozen=True)
class Traffic:
    """Bytes between group positions: ``src[k]`` sends ``bytes[k]`` to ``dst[k]``."""

    src: NDArray[np.intp]
    dst: NDArray[np.intp]
    bytes: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Stage:
    """A pipelined part of an algorithm; stages run one after the other.

    ``phases`` is how many consecutive flow phases the stage's flows use (a ring all-reduce is one
    stage of ``2(n-1)`` phases; a hierarchical all-to-all two stages of one phase each).
    """

    name: str
    levels: Mapping[Level, LevelCost]
    phases: int = 1


# ------------------------------------------------------------------------------------------ defaults
# Used where a device has no calibration block. Latencies are NCCL's own tuning model.
#
# Inside a node (``DEFAULT_NVLINK``, ``DEFAULT_PCIE``): NCCL 2.20.3 (NVIDIA/nccl src/graph/tuning.cc
# @ b6475625: baseLat ring LL 6.6 us, LL128 14.0 us, Simple 8.4 us; hwLat per ring step NVLink LL 0.6
# / LL128 1.9 / Simple 3.4 us, PCI LL 1.0 / Simple 5.7 us), the same ring rows as the 2.28 copies
# quoted in ``calibrate.SIMPLE_BASE_OVER_LL_S`` and what the reference data ran (2.18.5 Azure, 2.29.2
# cluster01). They were NCCL 2.7.5's (tuning.cc @ 01afd20a: LL 3.6 / LL128 10.0 us base, NVLink LL
# 0.47 us a step), a 2020 release that predates Hopper: an 8-GPU H100 PCIe server then got a 2-rank
# all-gather in 4.6 us, under every measured NVLink figure (vidur's DGX H100, 2 GPUs: 6-7 us; the
# fitted NVSwitch gen3: 6.4 us) although a PCIe step is slower than an NVLink one in NCCL's own
# table. Measured, on the PARAM DLRM trace (8 x V100, DGX-1, Sept. 2023, tests/data/traces/
# param_dlrm_kineto; not fitted): its 40 LL all-to-alls of 24 B-6.5 KiB a peer take 7-10 us,
# 2.7.5 gives 4.1-7.0 us and 2.20.3 7.2-10.2 us (base + one round of peers; median |error| 0.40 ->
# 0.09); its 448 B all-reduce 20 us on every rank, 10.2 and 15.0 us (14 ring steps).
#
# Across nodes (``DEFAULT_NETWORK``, and the NIC blocks that copy it: ib-ndr-400g, eth-100g,
# eth-25g): NCCL 2.20.3 too, the release line of the DCNv2 multi-node runs validated here (NVIDIA's
# MLPerf v4.0 HugeCTR container builds on nvcr.io/nvidia/pytorch:24.04: mlcommons/
# training_results_v4.0 NVIDIA/benchmarks/dlrm_dcnv2/implementations/merlin_hugectr/Dockerfile).
# Base as inside a node; hwLat NET ring LL 2.7 / LL128 4.0 / Simple 14.0 us (2.7.5: 9.6 us Simple, LL
# and LL128 unchanged; a 2.17-era copy, with NVLS but not NVLS tree, still has 9.6 us and the 3.6 /
# 10.0 us bases: the DLRM v1 runs of 2021-22 ran that table, and their HugeCTR 3.x exchanges are not
# NCCL at all). 2.20.3 adds ``latencyInter`` to each network step (twice for Simple, the flush): the
# NET plugin's ``props->latency``, which the built-in IB and socket transports leave at 0 ("Not
# set", src/transport/net_ib.cc, net_socket.cc), so nothing here.
# Not taken over, recsim's algorithms keep their own step counts (the ring's 2 (nodes - 1) network
# steps, the tree's 2 log2(nodes), each at this row's step; CollNet takes its own per-call rows,
# ``recsim.cost.collectives.collnet``):
# * 2.20.3 counts 2 x nodes network steps for a ring all-reduce (2.7.5: 2 (nodes - 1)), and
#   2 (ranks - 1) - 2 x nodes intra-node ones: at one GPU per node that is -2, a fitted count, not
#   a step count;
# * it floors a multi-node ring's intra-node step at the host's network post overhead (1 us Intel,
#   2 us AMD; x 3 for Simple), where 2.7.5 took 1.8 x the LL intra step;
# * it scales a multi-node Simple ring all-reduce's latency by 1.4 on sm80+ (1.9 in 2.7.5, the
#   "plateau");
# * its tree Simple row is a 256 KiB chunk's latency (2.7.5's own comment; NET 28 us, 50 in 2.7.5),
#   not a network step's. (Its CollNet rows, NET Direct / Chain 31 / 30 us added once per call, are
#   taken over by ``collnet``, not through this table.)
# The two-node nccl-tests (cluster00, 32 MiB and up) are bandwidth-bound and cannot tell either
# table apart; ``SOCKET_STEP_LATENCY_S`` is refitted on these rows (its total, 42.0 us for one
# socket step, is unchanged). Nor do they reach the MLPerf DLRM exchanges across nodes (rail to rail,
# 0.27-1.28 MB a peer, 4-9 MB a NIC; their smallest point is 2 MiB a peer, 16.8 MB a NIC), so the
# Simple row's flat rate down to those sizes is unmeasured. RoCE NICs take this block too: the one
# measured RoCE/InfiniBand comparison at 400G found gives them equal NCCL bandwidth (figures and
# sources with the multi-node finding in ``recsim.validation.cases``).
#
# Efficiencies: ring LL moves a quarter of the Simple bandwidth and LL128 0.92 of it (the same
# tuning.cc; its per-channel LL128 cap is not modelled); Simple on NVLink/PCIe 0.77, ASSUMPTION: the
# mean of the fitted NVSwitch gen2 and gen3 Simple efficiencies, (0.7711 + 0.7768) / 2 = 0.774
# (hardware/devices/switches/nvswitch-gen2.yaml, nvswitch-gen3.yaml), to two places; on PCIe
# carried over (../shared/reference/collectives has no PCIe-only NCCL run); Simple on the network 0.97:
# a ConnectX-7 400 Gb/s NIC gives 48-49 GB/s of 50 (NCCL maintainers, nccl-tests issue 267).
#
# LL128 runs on NVLink (a V100 DGX-1 mesh included: NCCL enables it for sm70 with the intra-node
# path on NVLink, ``calibrate.NVLINK_PROTOCOLS``), never on PCIe alone.

_NCCL_2_20 = "NVIDIA/nccl 2.20.3 src/graph/tuning.cc (baseLat, hwLat ring) and nccl-tests issue 267"
_NCCL_2_20_NET = (
    "NVIDIA/nccl 2.20.3 src/graph/tuning.cc (baseLat ring, hwLat NET ring) and nccl-tests issue 267"
)


def _proto(base_us: float, step_us: float, efficiency: float, pipeline_us: float = 0.0) -> CollectiveProtocol:
    return CollectiveProtocol.model_validate(
        {
            "base_latency": f"{base_us} us",
            "step_latency": f"{step_us} us",
            "pipeline_latency": f"{pipeline_us} us",
            "efficiency": efficiency,
        }
    )


DEFAULT_NVLINK = CollectiveCalibration(
    source=f"ASSUMPTION: {_NCCL_2_20}; Simple efficiency = mean of the fitted NVSwitch gen2/gen3",
    protocols={
        "ll": _proto(6.6, 0.6, 0.77 / 4),
        "ll128": _proto(14.0, 1.9, 0.77 * 0.92),
        "simple": _proto(8.4, 3.4, 0.77),
    },
)
DEFAULT_PCIE = CollectiveCalibration(
    source=f"ASSUMPTION: {_NCCL_2_20}; Simple efficiency as NVLink",
    protocols={"ll": _proto(6.6, 1.0, 0.77 / 4), "simple": _proto(8.4, 5.7, 0.77)},
)
DEFAULT_NETWORK = CollectiveCalibration(
    source=f"ASSUMPTION: {_NCCL_2_20_NET}",
    protocols={
        "ll": _proto(6.6, 2.7, 0.97 / 4),
        "ll128": _proto(14.0, 4.0, 0.97 * 0.92),
        "simple": _proto(8.4, 14.0, 0.97),
    },
)

# ------------------------------------------------------------------------------------------ socket
# A NIC without RDMA (``Nic.rdma: false``) carries collectives through NCCL's socket transport
# (NET/Socket, src/transport/net_socket.cc): no GPUDirect RDMA, so every network step is staged in
# host memory (the GPU writes its buffer into pinned host memory over PCIe, a CPU proxy thread
# pushes it through the kernel TCP stack, and the receiver's proxy and GPU do the reverse). Two
# effects, each from measured NCCL runs over TCP:
#
# * throughput: the CPU proxy threads and the TCP stack, not the wire, set the rate. NCCL splits a
#   step's data evenly over its sockets, so it moves at the slowest socket's rate times their
#   count (NCCL maintainers, NVIDIA/nccl-tests issue 83 and NVIDIA/nccl issue 438), well below
#   what iperf-style tests of independent streams report.
# * latency: every network step pays the socket path (GPU to host buffer, proxy poll, send/recv
#   system calls, TCP stack on both hosts) on top of NCCL's per-step figure for the network.

# ``SOCKET_LINE_FRACTION`` (the share of the line rate the socket transport moves per wire byte, and
# its sources) and ``WIRE_PAYLOAD_FRACTION`` live in ``recsim.hardware.calibration``: a NIC's
# socket calibration block is checked against them when it loads.

#: Added to every network step of every protocol: the socket path's one-way latency beyond the
#: RDMA path's (``hwLat`` NET, the ``step_latency`` of ``DEFAULT_NETWORK``). Fitted on
#: NVIDIA/nccl-tests issue 82 (Azure, 2 nodes x 1 V100-PCIE-16GB, NCCL 2.9.6 over NET/Socket,
#: broadcast with NCCL_ALGO=Ring NCCL_PROTO=Simple): 45.82 us out of place and 38.17 us in place at
#: 8 bytes, mean 42.0 us. That broadcast is one network step: the RDMA model gives it
#: base_latency + step_latency = 8.4 + 14.0 us (Simple, ``DEFAULT_NETWORK``: NCCL 2.20.3's hwLat
#: NET), so the socket path adds 42.0 - 22.4 = 19.6 us (24.0 us against NCCL 2.7.5's 9.6 us step:
#: the socket step, 33.6 us, is the same either way; 2.9.6's own table still had 9.6 us, but only
#: the sum is measured). ASSUMPTION: the same for LL and LL128 (one measurement, Simple only; the
#: socket path's cost is per message, not per protocol). The 42.0 us is nccl-tests' host wall clock
#: over 100 calls issued back to back, divided by 100, and the 22.4 us a model of the GPU's time: the
#: collective refit found such host-timed small calls bound by the host's issue period where it is
#: the longer (``recsim.cost.collectives.calibrate``, ``Timing.ISSUE``: 34-44 us for ``-g 8``, one
#: thread issuing 8 GPUs' calls). Here each process issues one GPU's call (``-g 1``, MPI), so the
#: host's share is probably well below 42 us, but the run does not separate it: if the host bound
#: it, the socket path's own cost is less than 19.6 us.
SOCKET_STEP_LATENCY_S = 19.6e-6


def socket_calibration(rdma: CollectiveCalibration, source: str = "") -> CollectiveCalibration:
    """``rdma``'s protocols over NCCL's socket transport: each step ``SOCKET_STEP_LATENCY_S``
    longer, each protocol at most ``SOCKET_LINE_FRACTION`` of the line rate in wire bytes
    (``WIRE_PAYLOAD_FRACTION`` of that in payload); base latencies (host-side launch and
    setup) unchanged. Never faster than ``rdma``: latencies only grow, efficiencies only shrink."""
    protocols = {
        name: p.model_copy(
            update={
                "step_latency_s": p.step_latency_s + SOCKET_STEP_LATENCY_S,
                "efficiency": min(p.efficiency, SOCKET_LINE_FRACTION * WIRE_PAYLOAD_FRACTION.get(name, 1.0)),
            }
        )
        for name, p in rdma.protocols.items()
    }
    return CollectiveCalibration(
        source=source or f"socket_calibration({rdma.source})",
        fit=rdma.fit,
        transport="socket",
        protocols=protocols,
    )


DEFAULT_SOCKET = socket_calibration(
    DEFAULT_NETWORK,
    "ASSUMPTION: DEFAULT_NETWORK over NCCL's socket transport (recsim.cost.collectives.base: "
    "SOCKET_LINE_FRACTION from NVIDIA/nccl issue 398, SOCKET_STEP_LATENCY_S from NVIDIA/nccl-tests "
    "issue 82)",
)

# NVLS on an NVSwitch that reduces in the switch but has no calibration block: the gen3 fit
# (hardware/devices/switches/nvswitch-gen3.yaml), ASSUMPTION for any other such switch.
DEFAULT_NVLS = _proto(26.0, 0.0, 0.7107, pipeline_us=4.543)

GENERIC_PROTOCOLS: tuple[str, ...] = ("ll", "ll128", "simple")

# Point-to-point operations (a send/recv pair, each peer's part of an all-to-all) run LL or Simple,
# never LL128, and LL only for a small message: NCCL's addP2pToPlan (src/enqueue.cc) takes LL when
# a peer's bytes are at most nChannels x NCCL_P2P_LL_THRESHOLD (16384), nChannels being the
# channels that carry them, one per p2pChunkSize / 8 bytes on NVLink (512 KiB / 8) or / 2 on the
# network (128 KiB / 2): one channel up to 64 KiB, and above that each channel brings 64 KiB of
# message for 16 KiB of threshold, so LL runs up to 16 KiB per peer. NCCL 2.12-2.18 tested each
# chunk of a peer's message (at least 64 KiB on NVLink) against 16 KiB: the same inside a node.
# (A release between scaled the threshold by the channels a peer may use; not modelled.)
P2P_PROTOCOLS: tuple[str, ...] = ("ll", "simple")
P2P_LL_THRESHOLD_BYTES = 16384.0
MESH_SEARCH_MAX = 8  # ring search over an NVLink mesh is exhaustive: (n-1)! orders per ring


# ------------------------------------------------------------------------------------------ caches


class _TopologyFacts:
    """Per-topology caches: routes, NIC bandwidths and group layouts are asked for over and over.

    Everything here is a pure function of the (immutable once built) topology graph. A sweep costs
    the same few collective groups on every evaluation and every rank, so a ``GroupLayout`` is kept
    per group (with its cached bandwidth figures). Inside a node, every node of a system is built
    from the same node spec, so routes between local accelerators are found once, on node 0, and
    stand for every node (``local_route_bandwidth``); 16 nodes then cost 8 routes, not 128.
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.routes: dict[tuple[str, str], Route] = {}
        self.rings: dict[tuple[str, ...], list[tuple[tuple[int, ...], float]]] = {}
        self.layouts: dict[tuple[int, ...], GroupLayout] = {}
        # (local i, local j) -> route bandwidth on node 0, or None when node 0's route leaves the
        # node (then it may differ between nodes and each node's own route is taken).
        self.local_routes: dict[tuple[int, int], float | None] = {}
        self.host_links: dict[int, float] = {}  # local index -> ``host_link_bandwidth``
        self.scale_up_ports: dict[int, float] = {}  # local index -> ``scale_up_port_bandwidth``

    @cached_property
    def wire_latency_s(self) -> float:
        """The one-way latency of the longest route between two nodes' accelerators (NICs, PCIe,
        switches; ``Topology.route_latency_s``): a network step of a collective, a message from one
        GPU to another across the fabric, takes at least this long (``stage_costs``). From node 0's
        first accelerator to every accelerator of node 1 and of the last node (a route to another
        local index crosses rails, and the last node is the farthest in the switch tree); 0 on one
        node."""
        accelerators = self.topology.accelerators
        nodes = max(1, self.topology.system.num_nodes)
        if nodes < 2 or not accelerators:
            return 0.0
        per_node = len(accelerators) // nodes
        far = {*accelerators[per_node : 2 * per_node], *accelerators[(nodes - 1) * per_node :]}
        return max((self.topology.route_latency_s(accelerators[0], dst) for dst in sorted(far)), default=0.0)

    def route(self, src: str, dst: str) -> Route:
        key = (src, dst)
        found = self.routes.get(key)
        if found is None:
            found = self.topology.route(src, dst)
            self.routes[key] = found
        return found

    def local_route_bandwidth(self, node: int, i: int, j: int) -> float:
        """Route bandwidth from local accelerator ``i`` to ``j`` of ``node``.

        Node 0's route stands for every node when all its paths stay inside node 0 (the nodes are
        identical copies, so the same paths exist inside each); a route that leaves its node (none
        does on the shipped systems) is taken node by node.
        """
        key = (i, j)
        if key not in self.local_routes:
            found = self.route(gpu_id(0, i), gpu_id(0, j))
            g = self.topology.graph
            inside = all(g.nodes[v]["node"] == 0 for path in found.paths for v in path)
            self.local_routes[key] = found.bandwidth_bytes_per_s if inside else None
        bw = self.local_routes[key]
        if bw is None:
            return self.route(gpu_id(node, i), gpu_id(node, j)).bandwidth_bytes_per_s
        return bw

    @cached_property
    def nic_bandwidth(self) -> dict[str, float]:
        """Scale-out NIC vertex -> its bandwidth to the network: the lesser of its two directions."""
        g = self.topology.graph
        out: dict[str, float] = {}
        # networkx's own dicts behind ``g.nodes`` / ``g.succ`` / ``g.pred`` (as the topology builder
        # reads them): the same vertices and edges in the same order, so the sums add in the same
        # order, without a Mapping view per vertex (half the time on 1280 NICs of 1024 GPUs).
        # ``succ[v]`` / ``pred[v]`` hold the out- and in-edges in the order ``out_edges`` and
        # ``in_edges`` give them.
        succ, pred = g._succ, g._pred
        for v, data in g._node.items():
            if data["kind"] != "nic":
                continue
            up = sum(d["bandwidth_bytes_per_s"] for d in succ[v].values() if d["kind"] == "network")
            down = sum(d["bandwidth_bytes_per_s"] for d in pred[v].values() if d["kind"] == "network")
            if min(up, down) > 0:
                out[v] = min(up, down)
        return out

    def mesh_rings(self, vertices: tuple[str, ...]) -> list[tuple[tuple[int, ...], float]]:
        """NCCL-style rings over the direct NVLinks between ``vertices`` (an NVLink mesh).

        Greedy, as NCCL's ring search: take the directed Hamiltonian cycle whose weakest link is the
        strongest, subtract its rate from every link it uses, repeat until no cycle is left. Each
        ring is (positions in ring order, bytes/s); their sum is what ring collectives get per GPU.
        Exhaustive over orders, so only for up to ``MESH_SEARCH_MAX`` accelerators.
        """
        key = ("mesh", *vertices)
        if key in self.rings:
            return self.rings[key]
        g = self.topology.graph
        n = len(vertices)
        rings: list[tuple[tuple[int, ...], float]] = []
        if 2 < n <= MESH_SEARCH_MAX:
            residual = {
                (i, j): g.edges[a, b]["bandwidth_bytes_per_s"]
                for i, a in enumerate(vertices)
                for j, b in enumerate(vertices)
                if i != j and g.has_edge(a, b) and g.edges[a, b]["kind"] == "nvlink"
            }
            while True:
                best, best_bw = None, 0.0
                for rest in itertools.permutations(range(1, n)):
                    order = (0, *rest)
                    bw = min(
                        residual.get((a, b), 0.0) for a, b in zip(order, order[1:] + order[:1], strict=True)
                    )
                    if bw > best_bw * (1 + 1e-12):
                        best, best_bw = order, bw
                if best is None:
                    break
                for a, b in zip(best, best[1:] + best[:1], strict=True):
                    residual[(a, b)] -= best_bw
                rings.append((best, best_bw))
        self.rings[key] = rings
        return rings

    def host_link_bandwidth(self, index: int) -> float:
        """What local accelerator ``index``'s links other than NVLink (its PCIe link, to a switch or
        the CPU: the way to its NICs) carry, the lesser direction (node 0's stands for every node's;
        inf without such a link)."""
        found = self.host_links.get(index)
        if found is None:
            g = self.topology.graph
            v = gpu_id(0, index)
            if v not in g:
                found = math.inf
            else:
                out = sum(d["bandwidth_bytes_per_s"] for d in g.succ[v].values() if d["kind"] != "nvlink")
                into = sum(d["bandwidth_bytes_per_s"] for d in g.pred[v].values() if d["kind"] != "nvlink")
                found = min(out, into) if out > 0 and into > 0 else math.inf
            self.host_links[index] = found
        return found

    def scale_up_port_bandwidth(self, index: int) -> float:
        """What local accelerator ``index``'s scale-up links (``nvlink``: to the NVSwitch chips, or
        straight to peers on a mesh) carry together, the lesser direction (node 0's stands for every
        node's; 0 without such links)."""
        found = self.scale_up_ports.get(index)
        if found is None:
            g = self.topology.graph
            v = gpu_id(0, index)
            found = 0.0
            if v in g:
                out = sum(d["bandwidth_bytes_per_s"] for d in g.succ[v].values() if d["kind"] == "nvlink")
                into = sum(d["bandwidth_bytes_per_s"] for d in g.pred[v].values() if d["kind"] == "nvlink")
                found = min(out, into)
            self.scale_up_ports[index] = found
        return found

    @cached_property
    def local_link_shares(self) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
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
        topology = self.topology
        local = topology.system.node.num_accelerators
        if local < 2:
            return None
        succ = topology.graph._succ
        links: dict[tuple[str, str], int] = {}
        senders: list[set[int]] = []  # by link number
        receivers: list[set[int]] = []
        pairs = [(i, j) for i in range(local) for j in range(local) if i != j]
        # Which pairs cross each link first, from the paths alone: on NVSwitch and direct NVLinks
        # no link is shared, and the answer (None) needs no pair's shares, whose numpy work per
        # pair was most of this on every new topology. Links are numbered as they come.
        for i, j in pairs:
            for path in topology.paths(gpu_id(0, i), gpu_id(0, j)):
                for edge in itertools.pairwise(path):
                    k = links.get(edge)
                    if k is None:
                        k = links[edge] = len(links)
                        senders.append(set())
                        receivers.append(set())
                    senders[k].add(i)
                    receivers[k].add(j)
        if not any(len(s) > 1 and len(r) > 1 for s, r in zip(senders, receivers, strict=True)):
            return None
        entries: dict[tuple[int, int], float] = {}
        for i, j in pairs:
            pair = i * local + j
            # ``route_edge_shares`` inline (the same shares, edges in the same order): the 56
            # pairs of a DGX node cross 448 links, a generator step each otherwise.
            for path, share in _path_shares(topology, gpu_id(0, i), gpu_id(0, j)):
                for edge in itertools.pairwise(path):
                    key = (pair, links[edge])
                    entries[key] = entries.get(key, 0.0) + share
        shares = np.zeros((local * local, len(links)))
        # A pair that talks through host memory (NCCL's SHM transport, ``Topology.shm_pair``) is
        # limited by its staging, not by the links: SHM_LINE_FRACTION's own source measured 55.3 GB/s
        # for a plain host-to-device copy on the host where a staged pair moved 24.5 GB/s a
        # direction. So its bytes take their plain share of each link here, and its own rate is
        # bounded on its own (the pair's route bandwidth, ``SHM_EFFICIENCY`` of the links': the
        # all-to-all's per-pair bound, ``Flow.cap_bytes_per_s`` in the flows). Until 2026-12-07 they
        # took 1 / SHM_EFFICIENCY of every link, as if each staged byte occupied the link that long.
        for (pair, k), share in entries.items():
            shares[pair, k] = share
        capacity = np.array([succ[a][b]["bandwidth_bytes_per_s"] for a, b in links], dtype=np.float64)
        shares.setflags(write=False)
        capacity.setflags(write=False)
        return shares, capacity


def route_edge_shares(topology: Topology, src: str, dst: str) -> Iterator[tuple[tuple[str, str], float]]:
    """(directed link, share) of the bytes from ``src`` to ``dst`` on each link of each of their
    equal-cost paths, a path's share in proportion to its weakest link (NVSwitch striping; one
    path on PCIe or through a relaying GPU)."""
    for path, share in _path_shares(topology, src, dst):
        for edge in itertools.pairwise(path):
            yield edge, share


def width_shares(widths: NDArray[np.float64]) -> NDArray[np.float64]:
    """The share of a pair's bytes each of its equal-cost paths carries, from each path's width (its
    weakest link's rate): in proportion to it. NVSwitch stripes a GPU's traffic over its links, so
    over each chip in proportion to the links to it (5-4-4-5 on H100), and a lone flow's subflows
    in the DES filling grow until each path's weakest link is full (``recsim.engine.network``).
    The one rule for the cost model (``route_edge_shares``, ``local_link_shares``) and for the link
    loads the utilisation reports (``recsim.engine.network.edge_loads``)."""
    shares: NDArray[np.float64] = widths / widths.sum()
    return shares


def _path_shares(topology: Topology, src: str, dst: str) -> list[tuple[tuple[str, ...], float]]:
    """Each equal-cost path from ``src`` to ``dst`` with its share of the bytes (``width_shares``
    of its weakest link's rate; ``route_edge_shares``)."""
    succ = topology.graph._succ
    paths = topology.paths(src, dst)
    widths = [min(succ[a][b]["bandwidth_bytes_per_s"] for a, b in itertools.pairwise(p)) for p in paths]
    shares = width_shares(np.asarray(widths, dtype=np.float64)).tolist()
    return list(zip(paths, shares, strict=True))


def facts(topology: Topology) -> _TopologyFacts:
    """The topology's ``_TopologyFacts``, made once and kept by it (``Topology.derived``)."""
    return topology.derived(_TopologyFacts)


def route(topology: Topology, src: str, dst: str) -> Route:
    """``topology.route`` with a per-topology cache."""
    return facts(topology).route(src, dst)


def group_layout(group: Sequence[int], topology: Topology) -> GroupLayout:
    """``GroupLayout(group, topology)``, one per group and topology (its figures are computed once).

    The layout is shared: treat it and its arrays as read-only.
    """
    key = tuple(group)
    cache = facts(topology).layouts
    found = cache.get(key)
    if found is None:
        found = GroupLayout(key, topology)
        cache[key] = found
    return found


# ------------------------------------------------------------------------------------------ layout


#: NVLS needs more than this many GPUs of the communicator on a node: ``ncclNvlsInit``
#: (src/transport/nvls.cc) returns with ``nvlsSupport = 0`` when ``gpuCount <= 2``.
NVLS_MIN_GPUS = 2


class GroupLayout:
    """The ranks of a collective's group on the topology, and the bandwidth of each level."""

    def __init__(self, group: Sequence[int], topology: Topology) -> None:
        system = topology.system
        per_node = system.node.num_accelerators
        if per_node == 0:
            raise ConfigError(f"{system.name}: collectives need accelerators")
        if len(set(group)) != len(group):
            raise ConfigError(f"collective group {tuple(group)} repeats a rank")
        for r in group:
            if not 0 <= r < system.num_accelerators:
                raise ConfigError(
                    f"rank {r} is outside {system.name} ({system.num_accelerators} accelerators)"
                )
        self.topology = topology
        self.group = tuple(group)
        self.gpus_per_node = per_node
        self.nodes = tuple(r // per_node for r in self.group)
        self.locals = tuple(r % per_node for r in self.group)
        self.vertices = tuple(gpu_id(n, i) for n, i in zip(self.nodes, self.locals, strict=True))
        by_node: dict[int, list[int]] = {}
        for pos, node in enumerate(self.nodes):
            by_node.setdefault(node, []).append(pos)
        # Node by node, accelerators by index inside a node: a ring enters and leaves each node
        # once (NCCL); ``node_rings`` may reorder inside a node (NVLink mesh).
        self.by_node = {n: sorted(ps, key=lambda p: self.locals[p]) for n, ps in sorted(by_node.items())}

    # -- shape -----------------------------------------------------------------------------------

    @property
    def n(self) -> int:
        return len(self.group)

    @property
    def num_nodes(self) -> int:
        return len(self.by_node)

    @cached_property
    def local(self) -> int:
        """Most group members on one node (asked by every algorithm on every cost: made once)."""
        return max(len(ps) for ps in self.by_node.values())

    @cached_property
    def uniform(self) -> bool:
        """Every node holds the same number of members at the same local indices."""
        patterns = {tuple(self.locals[p] for p in ps) for ps in self.by_node.values()}
        return len(patterns) == 1

    @cached_property
    def same_node(self) -> NDArray[np.bool_]:
        """``same[i, j]``: group positions ``i`` and ``j`` are on one node. Every all-to-all of the
        group asks for it, so it is made once (read-only: the memoised layout is shared)."""
        nodes = np.asarray(self.nodes)
        same: NDArray[np.bool_] = nodes[:, None] == nodes[None, :]
        same.setflags(write=False)
        return same

    @cached_property
    def same_node_pairs(self) -> NDArray[np.intp]:
        """``np.flatnonzero(same_node)``: the flat (row-major) indices ``i * n + j`` of the position
        pairs on one node, the diagonal included; a few per member, where ``same_node`` has ``n``."""
        by_node = np.asarray(self.nodes)
        order = np.argsort(by_node, kind="stable")
        pairs: list[NDArray[np.intp]] = []
        _, starts, counts = np.unique(by_node[order], return_index=True, return_counts=True)
        for start, count in zip(starts.tolist(), counts.tolist(), strict=True):
            members = order[start : start + count]
            pairs.append((members[:, None] * self.n + members[None, :]).reshape(-1))
        out: NDArray[np.intp] = np.sort(np.concatenate(pairs)) if pairs else np.zeros(0, dtype=np.intp)
        out.setflags(write=False)
        return out

    @cached_property
    def same_node_rows(self) -> NDArray[np.intp]:
        """Row (sender position) of each pair of ``same_node_pairs``."""
        rows = self.same_node_pairs // self.n
        rows.setflags(write=False)
        return rows

    @cached_property
    def same_node_cols(self) -> NDArray[np.intp]:
        """Column (receiver position) of each pair of ``same_node_pairs``."""
        cols = self.same_node_pairs % self.n
        cols.setflags(write=False)
        return cols

    @cached_property
    def same_node_offsets(self) -> NDArray[np.intp]:
        """``(col - row) % n`` of each pair of ``same_node_pairs``: where a rotated (circulant)
        traffic matrix ``M[i, j] = r[(j - i) % n]`` reads the pair's bytes from ``r``."""
        offsets = (self.same_node_cols - self.same_node_rows) % self.n
        offsets.setflags(write=False)
        return offsets

    @cached_property
    def partners(self) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]:
        """The same-node pairs as ``local x n`` tables, one column per member ``i``, one row per
        member ``j`` of its node (itself included), columns shorter than ``local`` padded:

        ``(sent, received, sent_bandwidth, received_bandwidth)``: the offsets ``(j - i) % n`` and
        ``(i - j) % n`` (where a circulant traffic matrix ``M[i, j] = r[(j - i) % n]`` reads what
        ``i`` sends to ``j`` and receives from it; ``n`` in the padding) and the route bandwidths
        ``i -> j`` and ``j -> i`` (inf in the padding and on the diagonal). Per-member figures of
        such a matrix are then reductions over the ``local`` rows of a table (vector operations
        ``n`` wide) instead of scatters over its ``n x local`` pairs.
        """
        n, rows, cols = self.n, self.same_node_rows, self.same_node_cols
        counts = np.bincount(rows, minlength=n)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
        slot = np.arange(rows.size) - starts[rows]  # rows are sorted: pairs member by member
        width = int(counts.max()) if n else 1
        sent = np.full((width, n), n, dtype=np.intp)
        received = np.full((width, n), n, dtype=np.intp)
        sent[slot, rows] = (cols - rows) % n
        received[slot, rows] = (rows - cols) % n
        locals_ = np.asarray(self.locals)
        pair_bw = self.topology.local_pair_bandwidth()
        sent_bw = np.full((width, n), np.inf)
        received_bw = np.full((width, n), np.inf)
        sent_bw[slot, rows] = pair_bw[locals_[rows], locals_[cols]]
        received_bw[slot, rows] = pair_bw[locals_[cols], locals_[rows]]
        for a in (sent, received, sent_bw, received_bw):
            a.setflags(write=False)
        return sent, received, sent_bw, received_bw

    @cached_property
    def same_node_pair_bandwidth(self) -> NDArray[np.float64]:
        """Route bandwidth of each pair of ``same_node_pairs`` (by local index: every node is built
        from the same node spec, ``Topology.local_pair_bandwidth``); inf on the diagonal."""
        locals_ = np.asarray(self.locals)
        pair_bw = self.topology.local_pair_bandwidth()
        bw: NDArray[np.float64] = pair_bw[locals_[self.same_node_rows], locals_[self.same_node_cols]]
        bw.setflags(write=False)
        return bw

    def shared_link_seconds(self, pair_bytes: NDArray[np.float64]) -> float:
        """The longest a link inside a node takes to carry the same-node traffic ``pair_bytes`` (one
        figure per pair of ``same_node_pairs``, the diagonal's ignored) at its full rate, where links
        are shared (``_TopologyFacts.local_link_shares``); 0 where they are not."""
        found = facts(self.topology).local_link_shares
        if found is None or pair_bytes.size == 0:
            return 0.0
        shares, capacity = found
        local = self.gpus_per_node
        locals_ = np.asarray(self.locals)
        _, node_index = np.unique(np.asarray(self.nodes), return_inverse=True)
        rows, cols = self.same_node_rows, self.same_node_cols
        off = rows != cols
        per_node = np.zeros((int(node_index.max()) + 1, local * local))
        np.add.at(
            per_node,
            (node_index[rows[off]], locals_[rows[off]] * local + locals_[cols[off]]),
            pair_bytes[off],
        )
        return float(((per_node @ shares) / capacity).max())

    # -- bandwidth ---------------------------------------------------------------------------------

    def node_rings(self, node: int) -> list[tuple[list[int], float]]:
        """Rings inside ``node`` as (group positions in ring order, bytes/s per rank).

        On an NVLink mesh the NCCL-style rings over direct links (``mesh_rings``); otherwise, or if
        the mesh has no NVLink ring through the members, one ring in accelerator order whose rate
        is its weakest route (through NVSwitch: the GPU's whole NVLink).
        """
        ps = self.by_node[node]
        known = facts(self.topology)
        up = self.topology.system.node.scale_up
        if up is not None and up.fabric == "nvlink_mesh" and len(ps) > 2:
            # The mesh is wired the same in every node: search it once, on node 0's accelerators.
            found = known.mesh_rings(tuple(gpu_id(0, self.locals[p]) for p in ps))
            if found:
                return [([ps[i] for i in order], bw) for order, bw in found]
        loc = self.locals
        bw = min(
            (
                known.local_route_bandwidth(node, loc[a], loc[b])
                for a, b in zip(ps, ps[1:] + ps[:1], strict=True)
            ),
            default=math.inf,
        )
        return [(list(ps), bw)]

    @cached_property
    def intra_bandwidth(self) -> float:
        """Scale-up bandwidth per rank for ring traffic: the sum of the node's rings (smallest node)."""
        best = math.inf
        for node, ps in self.by_node.items():
            if len(ps) >= 2:
                best = min(best, sum(bw for _, bw in self.node_rings(node)))
        return best

    @cached_property
    def port_bandwidth(self) -> NDArray[np.float64]:
        """Per member: what its scale-up links carry at once to all its peers together, for
        point-to-point traffic (all-to-all), which sends to every peer at once over every link
        rather than along rings: the sum of its NVLink links' rates (``scale_up_port_bandwidth``;
        through NVSwitch the same figure as ``intra_bandwidth``, on a 4-GPU NVLink mesh the three
        direct links, 3 x 6 x 25 GB/s on H100, where the rings sum to 300 GB/s). A member without
        scale-up links (PCIe): ``intra_bandwidth`` over the links (``unstaged_intra_bandwidth``: a
        route through host memory at its links' rate, not its staging's, which bounds each pair on
        its own). A peer's own route may be slower still (the all-to-all's per-pair bounds)."""
        known = facts(self.topology)
        ports = [known.scale_up_port_bandwidth(i) for i in self.locals]
        out = np.array([p if p > 0 else self.unstaged_intra_bandwidth for p in ports], dtype=np.float64)
        out.setflags(write=False)  # shared by every user of this (memoised) layout
        return out

    @cached_property
    def unstaged_intra_bandwidth(self) -> float:
        """``intra_bandwidth`` with a route through host memory (NCCL's SHM, ``Topology.shm_pair``)
        at its links' rate: the rate of the links a rank's point-to-point bytes cross, where
        ``intra_bandwidth`` is a ring's, whose hops through host memory move at their staging's
        (``SHM_EFFICIENCY`` of the links', the limit of each staged pair on its own,
        ``Flow.cap_bytes_per_s``). The same figure where no pair is staged."""
        topology = self.topology
        shm = topology.local_shm_pairs()
        if not shm.any():
            return self.intra_bandwidth
        loc, known = self.locals, facts(topology)
        best = math.inf
        for node, ps in self.by_node.items():
            if len(ps) < 2:
                continue
            hops = zip(ps, ps[1:] + ps[:1], strict=True)
            rate = min(
                known.local_route_bandwidth(node, loc[a], loc[b])
                / (SHM_EFFICIENCY if shm[loc[a], loc[b]] else 1.0)
                for a, b in hops
            )
            best = min(best, rate)
        return best

    @property
    def fabric(self) -> str:
        """The node's scale-up fabric: ``nvswitch``, ``nvlink_mesh`` or ``pcie`` (none declared)."""
        up = self.topology.system.node.scale_up
        return "pcie" if up is None else up.fabric

    @property
    def pcie_only(self) -> bool:
        """The node has no scale-up fabric: a GPU's peer traffic and its NIC traffic share its one
        PCIe link (on NVLink they take separate links)."""
        return self.fabric == "pcie"

    @cached_property
    def pcie_exit_weight(self) -> float:
        """On a PCIe-only node, what a byte to the NIC costs on a rank's PCIe link in bytes of its
        peer traffic at ``intra_bandwidth`` and the node level's efficiency: the NIC bytes cross
        the link at its own rate (not the SHM one where peers talk through host memory, NCCL's
        SHM, ``Topology.shm_pair``) and at the network level's efficiency (Simple protocol), as the
        flows carry them; 1 where both rates and efficiencies are the same."""
        return self._exit_weight(self.intra_bandwidth)

    def _exit_weight(self, intra: float) -> float:
        """``pcie_exit_weight`` with the peer traffic at ``intra``."""
        succ = self.topology.graph._succ
        own = min(
            (d["bandwidth_bytes_per_s"] for d in succ[self.vertices[0]].values() if d["kind"] == "pcie"),
            default=math.inf,
        )
        if not (math.isfinite(own) and math.isfinite(intra)):
            return 1.0
        node_level = level_calibration(self.topology, Level.INTRA).protocols.get("simple")
        network = level_calibration(self.topology, Level.INTER).protocols.get("simple")
        ratio = node_level.efficiency / network.efficiency if node_level and network else 1.0
        return min(1.0, intra / own) * ratio

    @cached_property
    def staged(self) -> bool:
        """Some ring neighbours inside a node talk through host memory (NCCL's SHM,
        ``Topology.shm_pair``): their pairs are bounded by their staging
        (``Flow.cap_bytes_per_s``), the links they cross by their plain bytes
        (``unstaged_intra_bandwidth``, ``unstaged_exit_weight``)."""
        return self.unstaged_intra_bandwidth != self.intra_bandwidth

    @cached_property
    def unstaged_exit_weight(self) -> float:
        """``pcie_exit_weight`` in bytes of peer traffic at ``unstaged_intra_bandwidth``: the exit's
        bytes on a rank's PCIe link beside its peer bytes at the links' rate, where peers talk
        through host memory (``staged``); ``pcie_exit_weight`` where none do."""
        if not self.staged:
            return self.pcie_exit_weight
        return self._exit_weight(self.unstaged_intra_bandwidth)

    def home_nics(self, pos: int) -> list[str]:
        """The scale-out NIC vertices of group position ``pos`` (its home NICs)."""
        return list(self._homes[pos])

    @cached_property
    def network_hops(self) -> int:
        """Links on a NIC-to-NIC path from the group's first node to its last, on the topology as
        built (up the switch tree and down: a cluster under one leaf switch has no spine to climb)."""
        nodes = list(self.by_node.values())
        nic_a, nic_b = self.home_nics(nodes[0][0])[0], self.home_nics(nodes[-1][0])[0]
        return len(self.topology.paths(nic_a, nic_b)[0]) - 1

    @cached_property
    def _homes(self) -> tuple[tuple[str, ...], ...]:
        """Every position's home NICs, looked up once per layout: the NIC figures below read them
        two or three times per member, and a graph lookup per read added up on 1024 members."""
        nodes = self.topology.graph.nodes
        nic_bw = facts(self.topology).nic_bandwidth
        return tuple(
            tuple(v for v in nodes[vertex].get("home_nics", ()) if v in nic_bw) for vertex in self.vertices
        )

    @cached_property
    def node_nic_bandwidth(self) -> float:
        """Per node: what the group's members there can push through their home NICs together
        (``own_nic_bandwidth``: the NICs' rates shared by their users, each member at most its host
        link's), the smallest node. NCCL cuts the data into equal parts, one per channel, a channel
        per member through its NIC, so a step ends when the slowest member's part is through: the
        members with a NIC, times the slowest of their shares (their sum when all are equal; three
        members on two NICs move 1.5 NICs' worth, as the flows do, not 2)."""
        shares = self.own_nic_bandwidth

        def node_rate(ps: Sequence[int]) -> float:
            own = [float(shares[p]) for p in ps if shares[p] > 0]
            return len(own) * min(own) if own else 0.0

        best = min((node_rate(ps) for ps in self.by_node.values()), default=math.inf)
        if best <= 0 or not math.isfinite(best):
            raise ConfigError(
                f"{self.topology.system.name}: no scale-out NICs between the nodes of the group"
            )
        return best

    @cached_property
    def own_nic_bandwidth(self) -> NDArray[np.float64]:
        """Per rank: its home NICs' bandwidth, shared with same-node members on the same NICs, at
        most what its own link to them carries (its PCIe link: two 400G NICs per H100 move what one
        PCIe 5 x16 does; a tester found the figure counting both NICs in full)."""
        known = facts(self.topology)
        nic_bw = known.nic_bandwidth
        homes = self._homes
        shares = [0.0] * self.n
        for ps in self.by_node.values():
            users: dict[str, int] = {}
            for p in ps:
                for v in homes[p]:
                    users[v] = users.get(v, 0) + 1
            for p in ps:
                shares[p] = min(
                    sum(nic_bw[v] / users[v] for v in homes[p]), known.host_link_bandwidth(self.locals[p])
                )
        out = np.array(shares, dtype=np.float64)
        if self.num_nodes > 1 and np.any(out <= 0):
            raise ConfigError(
                f"{self.topology.system.name}: an accelerator of the group has no scale-out NIC"
            )
        result: NDArray[np.float64] = out
        result.setflags(write=False)  # shared by every user of this (memoised) layout
        return result

    # -- in-switch reduction -------------------------------------------------------------------------

    def nvswitch_shares(self, v: str) -> list[tuple[str, float]]:
        """(NVSwitch vertex, share of accelerator ``v``'s NVLink bandwidth to it)."""
        g = self.topology.graph
        edges = [
            (b, d["bandwidth_bytes_per_s"])
            for _, b, d in g.out_edges(v, data=True)
            if g.nodes[b]["kind"] == "nvswitch"
        ]
        total = sum(bw for _, bw in edges)
        return [(b, bw / total) for b, bw in edges]

    @property
    def in_switch_reduction(self) -> bool:
        """NVLS possible: one node of more than two members, NVSwitch fabric with
        ``in_network_reduction`` (NCCL's ``ncclNvlsInit``, src/transport/nvls.cc, leaves NVLS off
        where the communicator has two GPUs or fewer on the node: ``gpuCount <= 2``)."""
        up = self.topology.system.node.scale_up
        return (
            self.num_nodes == 1
            and self.local > NVLS_MIN_GPUS
            and up is not None
            and up.fabric == "nvswitch"
            and up.switch is not None
            and up.switch.in_network_reduction
        )


# ------------------------------------------------------------------------------------------ calibration


def level_calibration(topology: Topology, level: Level) -> CollectiveCalibration:
    """The calibration of ``level`` of ``topology``'s system (device block, else a default)."""
    return node_level_calibration(topology.system.node, level)


def node_level_calibration(node: Node, level: Level) -> CollectiveCalibration:
    """The calibration of ``level`` of a system's ``node`` (device block, else a default)."""
    if level is Level.INTRA:
        up = node.scale_up
        if up is not None and up.fabric == "nvswitch" and up.switch is not None:
            return up.switch.calibration or DEFAULT_NVLINK
        if up is not None and up.calibration is not None:
            return up.calibration
        if up is not None and up.fabric == "nvlink_mesh":
            return DEFAULT_NVLINK
        return DEFAULT_PCIE
    group = node.scale_out_nics
    if group is not None and group.device.calibration is not None:
        return group.device.calibration
    if group is not None and not group.device.rdma:
        return DEFAULT_SOCKET
    return DEFAULT_NETWORK


# ------------------------------------------------------------------------------------------ traffic


def traffic_matrix(op: Collective | Sequence[Collective], rank: int | None = None) -> NDArray[np.float64]:
    """``M[i, j]``: bytes group member ``i`` sends to member ``j`` in an all-to-all.

    ``op`` is either every member's part (in group order, all with the same group) or one part.
    One part without splits: ``bytes / n`` to every member. One part with ``send_bytes``: it is
    the part of ``rank`` (default ``group[0]``) and every member is assumed to send the same
    pattern shifted by its distance to ``rank`` (member ``i`` sends to ``i + d`` what ``rank`` sends
    to ``rank + d``), which is exact for uniform and ring (send/recv) patterns.
    """
    if isinstance(op, Collective):
        n = len(op.group)
        if op.send_bytes is None:
            return np.full((n, n), op.bytes / n)
        me = op.group.index(rank) if rank is not None else 0
        row = np.asarray(op.send_bytes, dtype=float)
        # M[i, j] = row[(j - i + me) % n]: row i is ``row`` rotated left by ``(me - i) % n``, a
        # window of ``row`` repeated twice; gathering those windows copies the same values without
        # computing and indexing with an ``n x n`` array of positions.
        if row.shape != (n,):
            raise ConfigError(
                f"all-to-all {op.key!r}: {row.size} send_bytes for a group of {n} (one per member)"
            )
        idx = np.arange(n)
        if n == 0:
            return row[(idx[None, :] - idx[:, None] + me) % n]
        windows = np.lib.stride_tricks.sliding_window_view(np.concatenate([row, row]), n)
        out: NDArray[np.float64] = windows[(me - idx) % n]
        return out
    parts = list(op)
    n = len(parts[0].group)
    if len(parts) != n:
        raise ConfigError(f"all-to-all: {len(parts)} parts for a group of {n}")
    # A built graph's parts share one tuple per distinct row (``PooledExchange``; the input
    # distribution's senders all send alike): each distinct row is converted once and the matrix
    # gathered from them, not 10^6 floats read one by one at 1,024 ranks.
    distinct: dict[int, int] = {}
    unique: list[Sequence[float]] = []
    which = []
    for part in parts:
        row = part.send_bytes
        if row is None:
            which.append(len(unique))
            unique.append([part.bytes / n] * n)
            continue
        k = distinct.get(id(row))
        if k is None:
            k = distinct[id(row)] = len(unique)
            unique.append(row)
        which.append(k)
    return np.asarray(unique, dtype=float)[which]


def circulant_row(op: Collective | Sequence[Collective]) -> NDArray[np.float64] | None:
    """``r`` with ``traffic_matrix(op)[i, j] == r[(j - i) % n]`` for every ``i, j``, or None.

    One part (uniform, or uneven splits as the part of ``group[0]``) makes a circulant matrix: every
    row is ``r`` rotated, so every row and every column holds each entry of ``r`` once. The costs
    read row and column figures off ``r`` and the layout's same-node pairs (``n x local`` of them)
    instead of building the ``n x n`` matrix. None for every member's part (a general matrix) and
    for splits whose length is not the group's (``traffic_matrix`` indexes those as it must).
    Read it, do not write it: it may be the op's own array of splits.
    """
    if not isinstance(op, Collective):
        return None
    n = len(op.group)
    if n == 0:
        return None
    if op.send_bytes is None:
        return np.full(n, op.bytes / n)
    row = np.asarray(op.send_bytes, dtype=float)
    if row.shape != (n,):
        return None
    return row


# ------------------------------------------------------------------------------------------ registry


def p2p_protocols(largest_message: float) -> tuple[str, ...]:
    """The protocols NCCL may run point-to-point messages of at most ``largest_message`` bytes in
    (``P2P_LL_THRESHOLD_BYTES``): LL and Simple up to the threshold, Simple above it."""
    return P2P_PROTOCOLS if largest_message <= P2P_LL_THRESHOLD_BYTES else ("simple",)


class Algorithm(ABC):
    """A collective algorithm: its stages for the alpha-beta model and its flows for the engine.

    ``ops`` are the collectives it implements; ``protocols`` the protocol names it may run with
    (the cost model takes the fastest one both levels calibrate; ``protocol_names`` may narrow them
    for an op, as the point-to-point algorithms do: ``p2p_protocols``); ``auto`` whether the automatic
    choice considers it (NCCL's tuner picks among ring, tree and NVLS; a hierarchical all-to-all is
    a library-level algorithm that must be asked for by name). ``kernel`` is the NCCL kernel path it
    runs, which picks the protocol's per-call latency (``CollectiveProtocol.base_latency_for``):
    the point-to-point algorithms (send/recv, direct and hierarchical all-to-all) run NCCL's p2p
    kernel, the others its ring/tree (or in-switch) collective kernels.
    """

    name: ClassVar[str]
    ops: ClassVar[frozenset[CollectiveOp]]
    protocols: ClassVar[tuple[str, ...]] = GENERIC_PROTOCOLS
    auto: ClassVar[bool] = True
    kernel: ClassVar[KernelKind] = KernelKind.COLLECTIVE

    def unavailable(self, op: Collective, layout: GroupLayout) -> str | None:
        """Why this algorithm cannot run ``op`` here, or None if it can."""
        return None

    def auto_for(self, op: Collective, layout: GroupLayout) -> bool:
        """Whether the automatic choice considers it for ``op`` on ``layout`` (``auto``, unless the
        tuner it stands for would never pick it there though it can run)."""
        return self.auto

    # The protocols: each is one way to run the algorithm, costed with its constants per level;
    # the fastest wins (``recsim.cost.collectives.model``). An algorithm whose protocol changes
    # what moves where (CollNet's NVLS part inside a node) says so in the three hooks below.

    def protocol_names(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> tuple[str, ...]:
        """The protocols to cost the algorithm under for ``op`` on ``layout``."""
        return self.protocols

    def protocol_stages(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, protocol: str, stages: list[Stage]
    ) -> list[Stage]:
        """The stages under ``protocol``, given ``stages(op, layout)``: the same unless the protocol
        moves other bytes."""
        return stages

    def level_protocol(self, level: Level, protocol: str, layout: GroupLayout) -> str:
        """The constants ``level`` runs under when the algorithm runs under ``protocol``: the same,
        but for an algorithm whose parts run different kernels."""
        return protocol

    def protocol_flows(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, protocol: str
    ) -> list[Flow]:
        """The flows under ``protocol``: ``flows`` unless the protocol moves other bytes."""
        return self.flows(op, layout)

    def pair_bytes(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, protocol: str
    ) -> dict[tuple[str, str], float]:
        """``protocol_flows`` summed over their phases: bytes per (source, destination) vertex, in
        the order of their first flow (``collective_pair_traffic``). An algorithm with a cheaper
        account of them (a ring's hops, an all-to-all's matrix) gives it instead."""
        out: dict[tuple[str, str], float] = {}
        get = out.get
        for f in self.protocol_flows(op, layout, protocol):
            key = (f.src, f.dst)
            out[key] = get(key, 0.0) + f.bytes
        return out

    @abstractmethod
    def stages(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Stage]:
        """The stages (steps and bytes per level) of ``op``."""

    @abstractmethod
    def flows(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Flow]:
        """The point-to-point transfers of ``op``, phase-numbered, with efficiency 1."""

    def traffic(
        self, op: Collective | Sequence[Collective], layout: GroupLayout, stages: Sequence[Stage]
    ) -> list[Traffic]:
        """Per stage of ``stages`` (``stages(op, layout)``), the bytes its transfers carry between
        group positions: ``flows`` gathered by the stages' phases. An algorithm with a cheaper
        account of them (an all-to-all's matrix) gives it instead."""
        flows = self.flows(op, layout)
        return stage_traffic(
            self.name,
            layout,
            stages,
            len(flows),
            (f.src for f in flows),
            (f.dst for f in flows),
            (f.phase for f in flows),
            (f.bytes for f in flows),
        )


def stage_traffic(
    name: str,
    layout: GroupLayout,
    stages: Sequence[Stage],
    count: int,
    src: Iterable[str],
    dst: Iterable[str],
    phase: Iterable[int],
    size: Iterable[float],
) -> list[Traffic]:
    """``Algorithm.traffic`` of ``count`` transfers, given as their source and destination vertices,
    phases and bytes, in order (an algorithm's flows, or the entries of its ``FlowList``).

    Every transfer's positions and stage are found for all at once (a collective on 128 GPUs has a
    thousand flows or more): each stage's transfers are its flows' in their order, as appending
    flow by flow gave. A transfer to a switch (in-network reduction) has no GPU-to-GPU route and is
    left out."""
    index = {v: p for p, v in enumerate(layout.vertices)}
    bounds = np.cumsum([s.phases for s in stages])
    sources = np.fromiter((index.get(v, -1) for v in src), dtype=np.intp, count=count)
    targets = np.fromiter((index.get(v, -1) for v in dst), dtype=np.intp, count=count)
    routed = (sources >= 0) & (targets >= 0)
    phases = np.fromiter(phase, dtype=np.int64, count=count)[routed]
    sizes = np.fromiter(size, dtype=np.float64, count=count)[routed]
    sources, targets = sources[routed], targets[routed]
    stage = np.searchsorted(bounds, phases, side="right")
    past = np.flatnonzero(stage >= len(stages))
    if past.size:
        raise ValueError(
            f"{name}: a flow in phase {int(phases[past[0]])}, past its stages' {int(bounds[-1])}"
        )
    out = []
    for k in range(len(stages)):
        mine = stage == k
        out.append(Traffic(sources[mine], targets[mine], sizes[mine]))
    return out


REGISTRY: dict[str, Algorithm] = {}

A = TypeVar("A", bound=type[Algorithm])


def register(cls: A) -> A:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if cls.name in REGISTRY:
        raise ValueError(f"collective algorithm {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls()
    return cls


def first(op: Collective | Sequence[Collective]) -> Collective:
    """The (first) part of ``op``."""
    return op if isinstance(op, Collective) else op[0]


def levels(intra: LevelCost | None, inter: LevelCost | None) -> dict[Level, LevelCost]:
    """A stage's level map without the levels it does not use."""
    out: dict[Level, LevelCost] = {}
    if intra is not None:
        out[Level.INTRA] = intra
    if inter is not None:
        out[Level.INTER] = inter
    return out


@dataclass
class FlowList:
    """Collects flows, merging repeats of one (src, dst, phase) (channels that share a link)."""

    items: dict[tuple[str, str, int], float] = field(default_factory=dict)

    def add(self, src: str, dst: str, nbytes: float, phase: int) -> None:
        if src == dst or nbytes <= 0:
            return  # a rank's copy to itself crosses no link
        key = (src, dst, phase)
        self.items[key] = self.items.get(key, 0.0) + nbytes

    def flows(self) -> list[Flow]:
        return [Flow(s, d, b, p) for (s, d, p), b in self.items.items()]


def matrix_flows(vertices: Sequence[str], matrix: NDArray[np.float64], phase: int) -> list[Flow]:
    """One flow per entry of ``matrix`` (bytes position ``i`` sends to position ``j``, at
    ``vertices[i]`` and ``vertices[j]``), row by row: what ``FlowList.add`` over every entry gives
    (no self-copies, no empty entries; distinct positions are distinct vertices), found with numpy
    rather than one Python call per entry: an all-to-all of ``n`` ranks has ``n^2`` entries."""
    m = np.asarray(matrix, dtype=float)
    send = ~(m <= 0)  # as FlowList.add: only bytes <= 0 are dropped
    np.fill_diagonal(send, False)
    rows, cols = np.nonzero(send)
    return [
        Flow(vertices[i], vertices[j], b, phase)
        for i, j, b in zip(rows.tolist(), cols.tolist(), m[rows, cols].tolist(), strict=True)
    ]
