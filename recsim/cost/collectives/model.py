"""Fidelity 1 (alpha-beta) of a collective, the algorithm choice, and the flows for fidelity 2.

Time of an algorithm under protocol ``p`` (``recsim.hardware.calibration.CollectiveProtocol``)::

    t = max_L base_latency[L,p,kernel]
        + sum over stages s of ( sum_L max(k[s,L] step_latency[L,p], trips[s,L] wire[L])
                                 + max_L (sqrt(k[s,L] pipeline_latency[L,p]) + sqrt(T[s,L,p]))^2 )
    T[s,L,p] = bytes[s,L] / (bandwidth[s,L] x efficiency[L,p])

``wire[inter]`` is the one-way latency of the longest route between nodes (NICs, PCIe, switches:
``_TopologyFacts.wire_latency_s``) and ``trips`` the GPU-to-GPU messages the steps amount to (one
per step but for a SHARP reduction's switch hops, one trip); ``wire[intra]`` is 0.
``base_latency[L,p,kernel]`` is the protocol's per-call latency for the NCCL kernel path the
algorithm runs (``Algorithm.kernel``): point-to-point (send/recv, all-to-all) or ring/tree
(``CollectiveProtocol.base_latency_for``).

``L`` ranges over the levels the stage uses (``intra``: NVLink/NVSwitch or PCIe inside a node,
``inter``: NICs and network), ``k`` and ``bytes``/``bandwidth`` come from the algorithm
(``Algorithm.stages``) and the topology (``GroupLayout``), the constants from the calibration of
the NVSwitch and of the NIC (``level_calibration``; a NIC without RDMA has NCCL's socket transport's:
``base.socket_calibration``, every network step slower and a fraction of the line rate, which
the flows carry too). The levels of one stage run concurrently
(pipelined): each streams its bytes through its own chunked pipeline, filled at its own per-step
cost, and the slowest level sets the stage's time, so a level's fill pairs with its own bandwidth
term only (a reviewer found the NVLink fill of an 8-node all-reduce paired with the NICs' 1.4 ms
transfer: +52 us that neither level takes). Step latencies add up over the levels: each step of
either level is a hop the stage waits for. The protocol is the fastest that every level
used calibrates; the algorithm (when neither the call nor ``Collective.algorithm`` names one) the
fastest of the registered ``auto`` algorithms for the op: ring, tree and NVLS for all-reduce, as
NCCL's tuner picks by the same kind of latency/bandwidth model; direct for all-to-all.

Reduced precision on the wire (``wire_dtype``): the bytes scale with
``wire_bytes_per_value(wire) / wire_bytes_per_value(op.dtype)`` (an int8 wire carries FBGEMM's
row scales: ``recsim.workload.spec.QCOMM_INT8_ROW_BYTES``) and a quantise kernel before and a
dequantise kernel after are added, each reading and writing its tensor once at the accelerator's
element-wise share of its HBM bandwidth (``recsim.cost.compute.elementwise_memory_efficiency``), after an
element-wise kernel's launch gap and floor. Times are GPU-side (kernel time), the host's call
excluded: the fit compares them with each dataset as its harness timed it, a host bound by its
issue rate apart (``recsim.cost.collectives.calibrate.Timing``), so that a small collective costs
its kernel's time on NVSwitch (8 GPUs, 4 KiB: an all-to-all 8 us on H100 and 17 us on A100, an
all-reduce 16 and 24 us), not the 35-60 us per call a host-bound benchmark loop shows.

Flows (``collective_flows``): the algorithm's transfers with the chosen protocol's efficiency of
the level each crosses (same node: intra, else inter), grouped under the op's key;
``recsim.engine.network.simulate_flows`` shares links max-min fairly between them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import overload

import numpy as np
from numpy.typing import NDArray

from recsim.cost.collectives.base import (
    DEFAULT_NVLS,
    REGISTRY,
    Algorithm,
    Flow,
    GroupLayout,
    Level,
    LevelCost,
    Stage,
    facts,
    group_layout,
    level_calibration,
    route,
    traffic_matrix,
)
from recsim.cost.collectives.fabric import fabric_leaves
from recsim.cost.compute import elementwise_memory_efficiency
from recsim.errors import ConfigError
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.calibration import CollectiveCalibration, CollectiveProtocol, KernelKind
from recsim.hardware.topology import ACCELERATOR, Topology
from recsim.workload.spec import DTYPE_BYTES, wire_bytes_per_value

OpInput = Collective | Sequence[Collective]
Calibrations = Mapping[Level, CollectiveCalibration]


@dataclass(frozen=True)
class StageCost:
    """One stage under the chosen protocol (seconds): ``pipeline_latency_s`` is the pipeline fill
    the stage pays on top of its ``bandwidth_s`` (that of its slowest level; ``stage_costs``)."""

    name: str
    step_latency_s: float
    pipeline_latency_s: float
    bandwidth_s: float
    phases: int

    @property
    def time_s(self) -> float:
        return self.step_latency_s + (math.sqrt(self.pipeline_latency_s) + math.sqrt(self.bandwidth_s)) ** 2


@dataclass(frozen=True)
class CollectiveCost:
    """The alpha-beta cost of one collective, with its parts."""

    op: CollectiveOp
    algorithm: str
    protocol: str
    base_latency_s: float
    stages: tuple[StageCost, ...]
    efficiency: Mapping[Level, float] = field(default_factory=dict)
    wire_dtype: str = ""
    quantise_s: float = 0.0
    dequantise_s: float = 0.0

    @property
    def communication_s(self) -> float:
        if not self.stages:
            return 0.0
        return self.base_latency_s + sum(s.time_s for s in self.stages)

    @property
    def bandwidth_s(self) -> float:
        """The pure bandwidth part (what a flow simulation without contention reproduces)."""
        return sum(s.bandwidth_s for s in self.stages)

    @property
    def time_s(self) -> float:
        return self.quantise_s + self.communication_s + self.dequantise_s


# ------------------------------------------------------------------------------------------ protocols


def _protocol(
    topology: Topology, level: Level, name: str, calibration: Calibrations | None
) -> CollectiveProtocol | None:
    cal = (calibration or {}).get(level) or level_calibration(topology, level)
    if name == "nvls":
        return cal.nvls or DEFAULT_NVLS  # NVLS is an algorithm of the intra-node level only
    return cal.protocols.get(name)


@overload
def pipelined_s(steps: float, pipeline_latency_s: float, bandwidth_s: float) -> float: ...


@overload
def pipelined_s(
    steps: NDArray[np.float64], pipeline_latency_s: float, bandwidth_s: NDArray[np.float64]
) -> NDArray[np.float64]: ...


def pipelined_s(
    steps: float | NDArray[np.float64],
    pipeline_latency_s: float,
    bandwidth_s: float | NDArray[np.float64],
) -> float | NDArray[np.float64]:
    """A level's pipelined time: its bandwidth term ``bandwidth_s`` with the pipeline fill of its
    ``steps`` (``(sqrt(steps x pipeline_latency) + sqrt(bandwidth))^2``, the module docstring).
    Elementwise on arrays: the fit's vectorised times (``calibrate._predict``) call this same
    function, so the fitted constants mean what ``stage_costs`` makes of them."""
    out = (np.sqrt(np.multiply(steps, pipeline_latency_s)) + np.sqrt(bandwidth_s)) ** 2
    if isinstance(out, np.ndarray):
        return out
    return float(out)


def stage_costs(
    stages: Sequence[Stage],
    protos: Mapping[Level, CollectiveProtocol],
    wire_s: Mapping[Level, float] | None = None,
    kernel: KernelKind = KernelKind.COLLECTIVE,
) -> tuple[float, tuple[StageCost, ...]]:
    """(base latency, per-stage costs) of ``stages`` under one protocol's constants per level.

    ``wire_s``: a level's route latency (``_TopologyFacts.wire_latency_s`` for the network): its
    steps take at least that per GPU-to-GPU trip (``LevelCost.trips``). NCCL's per-step figures
    (``hwLat`` NET: 2.7 to 14.0 us) exceed an InfiniBand route's (NICs, PCIe, switches: 1.7-2.0 us
    on the shipped systems at 2 to 16 nodes); across the Ethernet spines of a RoCE fabric (2.9 us
    at 16 ZionEX nodes) or on a slower fabric (EFA, or a NIC given a longer latency) the route sets
    the step. ``kernel``: the NCCL kernel path the stages run, whose per-call
    latency each level's protocol gives (``CollectiveProtocol.base_latency_for``)."""
    used = {level for s in stages for level in s.levels}
    base = max((protos[level].base_latency_for(kernel) for level in used), default=0.0)
    wire = wire_s or {}
    out = []
    for s in stages:
        step = sum(_step_s(c, protos[lv], wire.get(lv, 0.0)) for lv, c in s.levels.items())
        seconds = [c.seconds / protos[lv].efficiency for lv, c in s.levels.items()]
        bw = max(seconds, default=0.0)
        # Each level's pipeline with its own fill and bandwidth term; the slowest sets the stage.
        # Reported as the fill that, paired with the stage's bandwidth term, gives that time.
        piped = max(
            (
                pipelined_s(c.steps, protos[lv].pipeline_latency_s, t)
                for (lv, c), t in zip(s.levels.items(), seconds, strict=True)
            ),
            default=0.0,
        )
        pipe = (math.sqrt(piped) - math.sqrt(bw)) ** 2
        out.append(StageCost(s.name, step, pipe, bw, s.phases))
    return base, tuple(out)


def _step_s(cost: LevelCost, proto: CollectiveProtocol, wire_s: float) -> float:
    """The step latency of ``cost`` on its level: its steps (or its own per-call figure,
    ``LevelCost.latency_s``), at least a route per trip."""
    steps = cost.steps * proto.step_latency_s if cost.latency_s is None else cost.latency_s
    trips = cost.steps if cost.trips is None else cost.trips
    return max(steps, trips * wire_s) if wire_s > 0 else steps


def _through_leaves(
    algorithm: Algorithm, op: OpInput, layout: GroupLayout, stages: list[Stage]
) -> list[Stage]:
    """``stages`` with each network level at no more than the rate its transfers get through the
    oversubscribed leaves' uplinks and downlinks (``recsim.cost.collectives.fabric``)."""
    leaves = fabric_leaves(layout.topology)
    p2p = algorithm.kernel == KernelKind.P2P  # leaving by NCCL's p2p rule (``_first_hop``)
    out = []
    for stage, traffic in zip(stages, algorithm.traffic(op, layout, stages), strict=True):
        inter = stage.levels.get(Level.INTER)
        if inter is not None and inter.bytes > 0:
            bound = leaves.seconds(layout.vertices, traffic, point_to_point=p2p)
            if bound > inter.seconds:
                slowed = {**stage.levels, Level.INTER: replace(inter, bandwidth=inter.bytes / bound)}
                stage = replace(stage, levels=slowed)
        out.append(stage)
    return out


def _evaluate(
    algorithm: Algorithm,
    op: OpInput,
    layout: GroupLayout,
    calibration: Calibrations | None,
) -> CollectiveCost | None:
    """The fastest protocol for ``algorithm``; None if no protocol is calibrated on every level."""
    stages = algorithm.stages(op, layout)
    head = op if isinstance(op, Collective) else op[0]
    if not stages:
        return CollectiveCost(head.op, algorithm.name, "", 0.0, ())
    used = {level for s in stages for level in s.levels}
    wire = {Level.INTER: facts(layout.topology).wire_latency_s} if Level.INTER in used else None
    if Level.INTER in used and fabric_leaves(layout.topology).oversubscribed:
        stages = _through_leaves(algorithm, op, layout, stages)
    best: CollectiveCost | None = None
    for name in algorithm.protocol_names(op, layout):
        protos = {
            lv: _protocol(layout.topology, lv, algorithm.level_protocol(lv, name, layout), calibration)
            for lv in used
        }
        if any(p is None for p in protos.values()):
            continue
        found = {lv: p for lv, p in protos.items() if p is not None}
        base, costs = stage_costs(
            algorithm.protocol_stages(op, layout, name, stages), found, wire, algorithm.kernel
        )
        cost = CollectiveCost(
            head.op, algorithm.name, name, base, costs, {lv: p.efficiency for lv, p in found.items()}
        )
        if best is None or cost.time_s < best.time_s:
            best = cost
    return best


# ------------------------------------------------------------------------------------------ choice


def _normalise(op: OpInput, rank: int | None) -> OpInput:
    """One part with uneven splits as the part of ``group[0]`` (see ``traffic_matrix``)."""
    if not isinstance(op, Collective):
        parts = list(op)
        if not parts:
            raise ConfigError("a collective needs at least one part")
        return parts
    if op.send_bytes is None or rank is None or rank == op.group[0]:
        return op
    if rank not in op.group:
        raise ConfigError(f"rank {rank} is not in the group {op.group} of collective {op.key!r}")
    row = traffic_matrix(op, rank)[0]
    col = traffic_matrix(op, rank)[:, 0]
    return replace(op, send_bytes=tuple(float(x) for x in row), recv_bytes=tuple(float(x) for x in col))


def _head(op: OpInput) -> Collective:
    return op if isinstance(op, Collective) else op[0]


def _algorithms(head: Collective, layout: GroupLayout, name: str | None) -> list[Algorithm]:
    if name is not None:
        alg = REGISTRY.get(name.lower())
        if alg is None:
            raise ConfigError(f"unknown collective algorithm {name!r}; known: {', '.join(sorted(REGISTRY))}")
        if head.op not in alg.ops:
            raise ConfigError(f"algorithm {name!r} does not implement {head.op.value}")
        reason = alg.unavailable(head, layout)
        if reason:
            raise ConfigError(f"algorithm {name!r} cannot run {head.op.value} here: {reason}")
        return [alg]
    found = [
        a
        for a in REGISTRY.values()
        if a.auto_for(head, layout) and head.op in a.ops and a.unavailable(head, layout) is None
    ]
    if not found:
        reasons = [
            f"{a.name}: {a.unavailable(head, layout)}"
            for a in REGISTRY.values()
            if a.auto_for(head, layout) and head.op in a.ops
        ]
        detail = "; ".join(reasons) if reasons else "none implements it"
        raise ConfigError(f"no collective algorithm can run {head.op.value} here ({detail})")
    return found


#: Collectives that sum what they receive.
_REDUCING = (CollectiveOp.ALL_REDUCE, CollectiveOp.REDUCE_SCATTER, CollectiveOp.REDUCE)


def _scaled(op: OpInput, wire_dtype: str | None) -> tuple[OpInput, float]:
    """``op`` with its bytes at ``wire_dtype``, and the byte ratio."""
    head = _head(op)
    if wire_dtype is None or wire_dtype == head.dtype:
        return op, 1.0
    for dtype in (wire_dtype, head.dtype):
        if dtype not in DTYPE_BYTES:
            raise ConfigError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}")
    if wire_dtype == "int8" and head.op in _REDUCING:
        # FBGEMM's int8 wire is row-quantised with a scale and bias per 32 values: NCCL would add
        # the codes and the scales as integers (``recsim.graph.build.row_split_wire_dtypes``).
        raise ConfigError(f"an int8 wire cannot {head.op.value}: row-quantised values do not sum")
    ratio = wire_bytes_per_value(wire_dtype) / wire_bytes_per_value(head.dtype)

    def one(part: Collective) -> Collective:
        return replace(
            part,
            bytes=part.bytes * ratio,
            dtype=wire_dtype,
            send_bytes=None if part.send_bytes is None else tuple(b * ratio for b in part.send_bytes),
            recv_bytes=None if part.recv_bytes is None else tuple(b * ratio for b in part.recv_bytes),
        )

    return (one(op) if isinstance(op, Collective) else [one(p) for p in op]), ratio


def output_bytes(op: OpInput) -> float:
    """Bytes a rank ends with (the largest over the group for an all-to-all)."""
    head = _head(op)
    n = len(head.group)
    kind = head.op
    if kind is CollectiveOp.BARRIER:
        return 0.0
    if kind is CollectiveOp.REDUCE_SCATTER:
        return head.bytes / n
    if kind is CollectiveOp.ALL_GATHER:
        return head.bytes * n
    if kind is CollectiveOp.ALL_TO_ALL:
        return float(traffic_matrix(op).sum(axis=0).max())
    return head.bytes


def input_bytes(op: OpInput) -> float:
    head = _head(op)
    if head.op is CollectiveOp.BARRIER:
        return 0.0
    if head.op is CollectiveOp.ALL_TO_ALL:
        return float(traffic_matrix(op).sum(axis=1).max())
    return head.bytes


def conversion_time_s(src_bytes: float, ratio: float, topology: Topology) -> float:
    """A cast kernel reading ``src_bytes`` and writing ``src_bytes x ratio`` on the accelerator's HBM,
    after its launch gap and its element-wise floor (``accelerator.elementwise_kernel``, measured:
    ``recsim.cost.launch``), as every element-wise kernel pays them (a tester found an fp8 wire
    winning on a 64 KiB tensor, its casts costing 0.05 us)."""
    if src_bytes <= 0:
        return 0.0
    acc = topology.system.accelerator
    if acc is None:
        raise ConfigError(f"{topology.system.name}: reduced-precision communication needs accelerators")
    moved = src_bytes * (1.0 + ratio) / (acc.hbm.bandwidth_bytes_per_s * elementwise_memory_efficiency(acc))
    return acc.kernel_launch_s + acc.elementwise_kernel_s + moved


def collective_cost(
    op: OpInput,
    topology: Topology,
    algorithm: str | None = None,
    *,
    wire_dtype: str | None = None,
    rank: int | None = None,
    calibration: Calibrations | None = None,
) -> CollectiveCost:
    """The alpha-beta cost of ``op`` on ``topology`` with its algorithm, protocol and parts.

    ``op``: one rank's part, or every member's part in group order (exact uneven all-to-all);
    ``rank``: whose part a single uneven all-to-all part is (default ``group[0]``);
    ``algorithm``: a registered name (case-insensitive; an error if it cannot run ``op`` here), else
    ``op.algorithm`` if that can run here, else the fastest automatic one;
    ``wire_dtype``: send in this dtype (quantise before, dequantise after);
    ``calibration``: per-level constants instead of the devices' own (used by the fit).
    """
    op = _normalise(op, rank)
    head = _head(op)
    layout = group_layout(head.group, topology)
    wire, ratio = _scaled(op, wire_dtype)
    best: CollectiveCost | None = None
    name = algorithm
    if name is None and head.algorithm is not None:
        # An algorithm recorded on the op (e.g. from a trace of other hardware) is a preference:
        # taken if it is known and can run here, else the automatic choice.
        known = REGISTRY.get(head.algorithm.lower())
        if known is not None and head.op in known.ops and known.unavailable(head, layout) is None:
            name = known.name
    for alg in _algorithms(head, layout, name):
        cost = _evaluate(alg, wire, layout, calibration)
        if cost is not None and (best is None or cost.time_s < best.time_s):
            best = cost
    if best is None:
        raise ConfigError(
            f"no protocol is calibrated on every level for {head.op.value} on {topology.system.name}"
        )
    if ratio != 1.0 and best.stages:
        best = replace(
            best,
            wire_dtype=wire_dtype or "",
            quantise_s=conversion_time_s(input_bytes(op), ratio, topology),
            dequantise_s=conversion_time_s(output_bytes(op), ratio, topology),
        )
    return best


def collective_time_s(
    op: OpInput,
    topology: Topology,
    algorithm: str | None = None,
    *,
    wire_dtype: str | None = None,
    rank: int | None = None,
) -> float:
    """Seconds ``op`` takes on ``topology`` (fidelity 1, see the module docstring)."""
    return collective_cost(op, topology, algorithm, wire_dtype=wire_dtype, rank=rank).time_s


def choose_algorithm(op: OpInput, topology: Topology) -> tuple[str, str]:
    """(algorithm, protocol) the automatic choice takes for ``op``."""
    cost = collective_cost(op, topology)
    return cost.algorithm, cost.protocol


def collective_flows(
    op: OpInput,
    topology: Topology,
    algorithm: str | None = None,
    *,
    wire_dtype: str | None = None,
    rank: int | None = None,
) -> list[Flow]:
    """The flows of ``op`` (fidelity 2 input): chosen algorithm and protocol, bytes at the wire dtype.

    Each flow carries the efficiency of its level under the chosen protocol and ``group = op.key``.
    """
    cost = collective_cost(op, topology, algorithm, wire_dtype=wire_dtype, rank=rank)
    op = _normalise(op, rank)
    head = _head(op)
    layout = group_layout(head.group, topology)
    wire, _ = _scaled(op, wire_dtype)
    if not cost.stages:
        return []
    algorithm = REGISTRY[cost.algorithm]
    flows = algorithm.protocol_flows(wire, layout, cost.protocol)
    g = topology.graph
    nodes = g.nodes
    inter = cost.efficiency.get(Level.INTER)
    intra = cost.efficiency.get(Level.INTRA, inter)
    first_hop = _first_hop(algorithm, topology)
    out = []
    for f in flows:
        if nodes[f.src]["node"] == nodes[f.dst]["node"] or inter is None:
            # Through host memory (NCCL's SHM transport, ``Topology.shm_pair``): the staging bounds
            # the pair at its route's bandwidth (``SHM_EFFICIENCY`` of its links' rate), while its
            # links carry its plain bytes (``Flow.cap_bytes_per_s``).
            cap = (
                route(topology, f.src, f.dst).bandwidth_bytes_per_s
                if topology.shm_pair(f.src, f.dst)
                else f.cap_bytes_per_s
            )
            out.append(
                replace(f, group=head.key, efficiency=cost.efficiency[Level.INTRA], cap_bytes_per_s=cap)
            )
            continue
        via = first_hop(f.src, f.dst) if nodes[f.src]["kind"] == ACCELERATOR else f.src
        if via != f.src and nodes[f.dst]["kind"] == ACCELERATOR:
            # A PXN relay: the hand-over to the peer is an NVLink copy at the node level's
            # efficiency (the analytic figure counts those bytes there), the rest a network send.
            out.append(replace(f, dst=via, group=head.key, efficiency=intra))
            out.append(replace(f, src=via, group=head.key, efficiency=inter))
        else:
            out.append(replace(f, group=head.key, efficiency=inter))
    return out


def _first_hop(algorithm: Algorithm, topology: Topology) -> Callable[[str, str], str]:
    """Where ``algorithm``'s bytes from one node to another leave their node: by NCCL's p2p rule
    (``Topology.p2p_first_hop``, PXN on every fabric) for the algorithms that run NCCL's p2p kernel
    (send/recv, the all-to-alls: NCCL picks their NIC per peer), by the route's for the others
    (rings and trees leave by their search graph's NICs)."""
    return topology.p2p_first_hop if algorithm.kernel == KernelKind.P2P else topology.first_hop


@dataclass(frozen=True)
class PairTraffic:
    """A collective's flows summed over their phases: ``payload[k]`` bytes from ``srcs[k]`` to
    ``dsts[k]`` at ``efficiency[k]`` (so ``payload / efficiency`` wire bytes), one entry per
    (source, destination, efficiency)."""

    srcs: list[str]
    dsts: list[str]
    payload: NDArray[np.float64]
    efficiency: NDArray[np.float64]

    @property
    def wire(self) -> NDArray[np.float64]:
        out: NDArray[np.float64] = self.payload / self.efficiency
        return out


def collective_pair_traffic(
    op: OpInput, topology: Topology, algorithm: str | None = None, *, rank: int | None = None
) -> PairTraffic:
    """What ``collective_flows`` moves between each pair of vertices, all phases together: the
    same flows, their bytes summed per (source, destination) before each pair is placed on its
    level (the efficiency, a PXN relay's hand-over), rather than placing every phase's flow (a ring
    on 128 GPUs has 254 phases of 128 flows). For a caller that needs a collective's bytes per
    link, not its phases (``recsim.engine.resources``); ``tests/unit/test_resources.py`` keeps it
    equal to the flows summed."""
    cost = collective_cost(op, topology, algorithm, rank=rank)
    op = _normalise(op, rank)
    head = _head(op)
    empty = PairTraffic([], [], np.zeros(0), np.ones(0))
    if not cost.stages:
        return empty
    layout = group_layout(head.group, topology)
    algorithm = REGISTRY[cost.algorithm]
    summed = algorithm.pair_bytes(op, layout, cost.protocol)
    first_hop = _first_hop(algorithm, topology)
    nodes = topology.graph._node
    inter = cost.efficiency.get(Level.INTER)
    intra = cost.efficiency.get(Level.INTRA, inter)
    out: dict[tuple[str, str, float], float] = {}
    for (src, dst), size in summed.items():
        # As ``collective_flows`` places each flow: the node's level (a pair through host memory,
        # NCCL's SHM, too: its links carry its plain bytes; its staging bounds its rate, which is
        # no link's load), else the network, after a PXN relay's hand-over at the node's level.
        parts: tuple[tuple[str, str, float], ...]
        a, b = nodes[src], nodes[dst]
        if a["node"] == b["node"] or inter is None:
            parts = ((src, dst, cost.efficiency[Level.INTRA]),)
        else:
            via = first_hop(src, dst) if nodes[src]["kind"] == ACCELERATOR else src
            if via != src and nodes[dst]["kind"] == ACCELERATOR:
                assert intra is not None
                parts = ((src, via, intra), (via, dst, inter))
            else:
                parts = ((src, dst, inter),)
        for key in parts:
            out[key] = out.get(key, 0.0) + size
    if not out:
        return empty
    return PairTraffic(
        [s for s, _, _ in out],
        [d for _, d, _ in out],
        np.fromiter(out.values(), dtype=np.float64, count=len(out)),
        np.fromiter((e for _, _, e in out), dtype=np.float64, count=len(out)),
    )


def bytes_per_rank(flows: Sequence[Flow]) -> tuple[dict[str, float], dict[str, float]]:
    """(bytes sent, bytes received) per vertex over ``flows``."""
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    for f in flows:
        sent[f.src] = sent.get(f.src, 0.0) + f.bytes
        received[f.dst] = received.get(f.dst, 0.0) + f.bytes
    return sent, received


def phase_ranges(cost: CollectiveCost) -> list[range]:
    """The flow phases of each stage of ``cost``."""
    out = []
    start = 0
    for s in cost.stages:
        out.append(range(start, start + s.phases))
        start += s.phases
    return out


__all__ = [
    "CollectiveCost",
    "PairTraffic",
    "StageCost",
    "bytes_per_rank",
    "choose_algorithm",
    "collective_cost",
    "collective_flows",
    "collective_pair_traffic",
    "collective_time_s",
    "conversion_time_s",
    "phase_ranges",
    "pipelined_s",
    "stage_costs",
]
