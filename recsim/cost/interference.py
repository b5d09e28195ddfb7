"""Communication slows the computation it overlaps, measured on a Kineto trace.

NCCL runs its collectives as kernels: while one is resident it holds SMs (a CTA per channel) and
streams the payload through HBM, so a compute kernel running beside it on the same GPU gets fewer
SMs and less memory bandwidth. The engines otherwise let a rank's computation and its collectives
overlap for free.

``overlap_slowdowns`` measures the effect on a trace: compute kernels are grouped by name, grid and
block (the same kernel on the same shape), and each group seen at least ``MIN_SAMPLES`` times with
no NCCL kernel overlapping it and as many times entirely inside NCCL kernels gives the ratio of
the two median durations. On the A100 recommendation trace (``../shared/reference/traces/``, rank
3; its 60 NCCL kernels, SendRecv for the all-to-all and a ring all-reduce, overlap 27 % of the
compute kernel time), 53 groups qualify. The median ratio is 1.29 over the 13 GEMM groups and 1.67
over the 40 others (element-wise, reductions, norms: memory-bound kernels lose the bandwidth as
well as the SMs); all 53 give 1.56, quartiles 1.20 and 1.73. ``COMM_SLOWDOWN`` holds these figures
and ``tests/unit/test_cost_interference.py`` re-measures them.

``interfered_durations`` applies them: a node on a rank's compute stream (a kernel: ``Compute`` or
``Embedding``) that overlaps that rank's collectives for a share ``f`` of its time takes
``1 + (slowdown - 1) f`` times as long on an A100 (footprint below), the slowdown of its class
(matrix products: GEMMs, dot interactions, cross layers, attention; or the rest). The overlap is
read off a schedule made without the effect (one pass: the stretched kernels are not re-checked
against the collectives they now overlap a little more or less). A collective's window on a rank is
its scheduled start to finish.

**Footprint.** The excess ``slowdown - 1`` scales with the share of the SMs the collective's kernel
holds, relative to the trace's: its CTAs (one per NCCL channel; the trace's hold 512-640 threads x
96 registers, 49,000-61,000 of an SM's 65,536, so a CTA all but takes its SM from the compute
kernels) over the GPU's SMs, against the trace's 24 on 108 (``footprint``): a kernel takes
``1 + (slowdown - 1) f x footprint`` times as long, an A100's as measured. The trace supports it: the
kernels inside its 24-CTA SendRecvs slow 1.41 (GEMM, 5 groups) and 1.67 (other, 24), inside its
8-CTA ones 1.08 (6) and 1.19 (10): 0.19 and 0.28 of the excess for a third of the CTAs; and the
GEMMs' 1.29 is 108 / (108 - 24), a GEMM's waves on the SMs left to it. CTAs: NVLS 16, CollNet 36,
every other algorithm the trace's 24 (H100 NCCL logs number 24 channels too, e.g.
vllm-project/vllm issue 10453's "Channel 00/0" to "23/0"; ``NVLS_CTAS``, ``COLLNET_CTAS``).
Collectives of different footprints running at once add their shares. Found and not used:
- the HBM bytes a collective streams do not drive it on the trace: its 24-CTA LL all-reduces (small
  messages, mostly waiting for peers, their threads polling LL flags) slow the kernels beside them
  2.45 (GEMM, 3 groups) and 4.0 (other, 15), far more than the SendRecvs that move the exchange's
  bytes with as many CTAs. The protocol's polling matters more than the payload; LL is NCCL's
  choice for small messages only, the collectives modelled here are mostly SIMPLE, and no trace
  measures LL128 or NVLS beside compute, so the protocol is not modelled.
- CollNet (SHARP) adds channels (NCCL connect.cc), so it stretches more, not less: NVIDIA's Eos
  runs (8 and 16 DGX H100 on InfiniBand with SHARP), which agree best without the stretch, move
  away (-8.0 -> -8.9 %, -7.9 -> -9.6 %). Which NCCL algorithm Eos ran (CollNet, or NVLS with SHARP
  on 16 channels) is not recorded.
ASSUMPTIONS: the A100 factors hold on other GPUs scaled by the SM share (no other trace in the
reference set has NCCL kernels beside compute kernels of the same shapes); a PCIe system's rings
(fewer channels in NCCL) and an all-to-all's point-to-point channels (NCCL rounds their pool up to
a power of two: 32 from 24 coll channels, src/graph/paths.cc; the trace's all-to-all kernels ran 24 CTAs
from such a pool) are taken at the trace's 24.

**Not monotone in the hardware.** Faster hardware that moves a collective earlier can move it
under a kernel it used to follow, and that kernel then runs slower: a tester's zionex DLRM step
(table-wise, fp16, fused) takes 2.096 ms with 31.5 GB/s PCIe switch ports and 2.124 ms (+1.3 %)
with 63 GB/s, because the next batch's copy finishes sooner and its index all-to-all then begins
inside the forward lookup instead of after it (when found, with copies at the PCIe line rate:
22 of about 2,500 perturbed runs, at most +1.1 %, every one a PCIe or DRAM speed-up). That is
the contention the traces show, not an artefact of the one-pass reading; a framework would see it
too unless it held the collective back.
With ``comm_interference`` off (``--no-comm-interference``) more bandwidth never slows a step.
The same holds for the workload's knobs: with it on, more work can make a step faster (a tester's
table-wise step on a DGX A100, ``recsim run`` analytic: 740 us, then 721 us, -2.5 %, with one
table's pooling doubled; with it off the step grows). Presumably the longer lookup shifts which
kernels a collective's window covers, as above; the case was not traced kernel by kernel.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import eq
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from recsim.cost.collectives.base import group_layout
from recsim.graph.dep_rows import tiled
from recsim.graph.index import GraphIndex
from recsim.graph.ir import Collective, CollectiveOp, Compute, Embedding, Stream
from recsim.graph.readers.kineto import KEvent, KinetoTrace

if TYPE_CHECKING:
    from recsim.cost.model import CostModel

__all__ = [
    "COLLNET_CTAS",
    "COMM_SLOWDOWN",
    "MIN_SAMPLES",
    "NVLS_CTAS",
    "TRACE_NCCL_CTAS",
    "TRACE_SMS",
    "collective_footprints",
    "footprint",
    "interfered_durations",
    "overlap_slowdowns",
]

COMM_SLOWDOWN: Final[dict[str, float]] = {
    # Measured (module docstring): median slowdown of a kernel entirely inside NCCL kernels.
    "gemm": 1.29,  # 13 GEMM groups (cutlass tensor-op GEMMs)
    "other": 1.67,  # 40 groups: element-wise, reduction, layer-norm, split-K reduce, embedding
}
#: Runs of a kernel group needed on each side (with and without NCCL beside it).
MIN_SAMPLES: Final[int] = 5
# A kernel counts as beside NCCL when this share of it overlaps NCCL kernels, as without when less
# than ``_CLEAR``: the kernels in between are left out of the measurement.
_INSIDE = 0.95
_CLEAR = 0.05


#: The footprint the measured slowdowns come with: the trace's NCCL kernels run 24 CTAs (``grid``
#: of its all-reduces and of the exchange's SendRecv kernels; a few short SendRecvs 7-8), one per
#: channel, on the A100's 108 SMs (its ``deviceProperties`` ``numSms``).
TRACE_NCCL_CTAS: Final[int] = 24
TRACE_SMS: Final[int] = 108
#: CTAs of an NVLS all-reduce: NCCL_NVLS_NCHANNELS's default 16 (NVIDIA/nccl
#: src/transport/nvls.cc; enqueue.cc: "NVLS should not need more than 16 channels to get peak
#: BW"; NVIDIA/nccl issue 1041: NVLS's execution channels are decorrelated from the search's).
NVLS_CTAS: Final[int] = 16
#: CTAs of a CollNet (SHARP) all-reduce: NCCL adds half the channels again, ``nChannels +
#: nChannels/2`` where intra-node bandwidth exceeds the network's and a node has several ranks
#: (NVIDIA/nccl src/graph/connect.cc, ncclTopoPostset), 1.5 x the trace's 24 (the trace's 24 with
#: one rank a node).
COLLNET_CTAS: Final[int] = 36
_CTAS: Final[dict[str, int]] = {"nvls": NVLS_CTAS, "collnet": COLLNET_CTAS}


def footprint(algorithm: str, sms: int) -> float:
    """A collective's share of the SMs relative to the trace's collectives' (module docstring): its
    CTAs (``NVLS_CTAS``, ``COLLNET_CTAS``, else the trace's 24: ring, tree and the all-to-all's
    point-to-point channels) over the GPU's ``sms``, divided by 24 / 108. 1 on an A100. A GPU with
    fewer SMs than CTAs gives them all (the CTAs then take turns on them): at most 108 / 24."""
    ctas = min(_CTAS.get(algorithm, TRACE_NCCL_CTAS), sms)
    return (ctas * TRACE_SMS) / (TRACE_NCCL_CTAS * sms)


def collective_footprints(index: GraphIndex, cost: CostModel) -> npt.NDArray[np.float64] | None:
    """Per op of ``index.op_table``, a collective's ``footprint`` on ``cost``'s accelerators (1 for
    the other ops, which the stretch does not read), or None where every collective's is 1 (an
    A100's: the stretch as measured)."""
    accelerator = cost.system.accelerator
    if accelerator is None:
        return None
    sms = accelerator.sms
    plain = footprint("", sms)
    ops = index.op_table.ops
    out = np.ones(len(ops))
    for i, op in enumerate(ops):
        if type(op) is Collective:
            # Only a reduction can run in the network (NVLS, CollNet): an all-to-all's is plain.
            name = cost.collective_algorithm(op) if op.op is CollectiveOp.ALL_REDUCE else ""
            if name == "collnet":
                # NCCL adds CollNet's channels only where a node holds several of the ranks.
                layout = group_layout(op.group, cost.topology)
                name = name if layout.n > layout.num_nodes else ""
            out[i] = footprint(name, sms) if name in _CTAS else plain
    if (out == 1.0).all():
        return None
    return out


def is_nccl(name: str) -> bool:
    """Whether a kernel of a trace is one of NCCL's (its collectives' and point-to-point kernels)."""
    return "nccl" in name.lower()


def interval_union(intervals: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The union of ``intervals`` as disjoint sorted intervals (starts, ends)."""
    merged: list[list[float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [m[0] for m in merged], [m[1] for m in merged]


def covered_s(union: tuple[list[float], list[float]], a: float, b: float) -> float:
    """The time of ``[a, b)`` that ``union`` (``interval_union``) covers."""
    starts, ends = union
    # The disjoint spans that start before ``b`` and end after ``a``.
    first, last = bisect.bisect_right(ends, a), bisect.bisect_left(starts, b)
    return sum(max(0.0, min(ends[i], b) - max(starts[i], a)) for i in range(first, last))


def overlap_slowdowns(
    trace: KinetoTrace, min_samples: int = MIN_SAMPLES, beside: Callable[[KEvent], bool] | None = None
) -> dict[str, list[float]]:
    """Per class (``gemm``, ``other``), the slowdown ratio of each kernel group of ``trace`` seen
    ``min_samples`` times both beside NCCL kernels and clear of them (module docstring).
    ``beside``: which NCCL kernels count as beside (e.g. those of one grid size); the kernels
    clear of them are clear of every NCCL kernel all the same."""
    kernels = [e for e in trace.gpu if e.cat == "kernel"]
    # Per device (``pid``), the union of its NCCL kernels' spans, as disjoint sorted intervals: of
    # all of them (clear of NCCL) and of those ``beside`` selects (inside NCCL).
    spans: dict[Any, list[tuple[float, float]]] = defaultdict(list)
    chosen: dict[Any, list[tuple[float, float]]] = defaultdict(list)
    for e in kernels:
        if is_nccl(e.name):
            spans[e.pid].append((e.ts, e.end))
            if beside is None or beside(e):
                chosen[e.pid].append((e.ts, e.end))
    unions = {pid: interval_union(intervals) for pid, intervals in spans.items()}
    insides = {pid: interval_union(intervals) for pid, intervals in chosen.items()}
    groups: dict[tuple[Any, ...], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for e in kernels:
        if is_nccl(e.name) or e.dur <= 0:
            continue
        share = covered_s(unions.get(e.pid, ([], [])), e.ts, e.end) / e.dur
        key = (e.name, tuple(e.args.get("grid", ())), tuple(e.args.get("block", ())))
        clear, inside = groups[key]
        if share < _CLEAR:
            clear.append(e.dur)
        elif covered_s(insides.get(e.pid, ([], [])), e.ts, e.end) / e.dur > _INSIDE:
            inside.append(e.dur)
    out: dict[str, list[float]] = {"gemm": [], "other": []}
    for (name, _, _), (clear, inside) in groups.items():
        if len(clear) >= min_samples and len(inside) >= min_samples:
            ratio = statistics.median(inside) / statistics.median(clear)
            out["gemm" if "gemm" in name.lower() else "other"].append(ratio)
    return out


#: Compute categories whose kernels are matrix products (the cost layer prices them on the tensor
#: peak: GEMMs, dot interactions and DCN cross layers, attention and GRU gates).
_MATMUL = frozenset({"gemm", "interaction", "sequence"})


def _slowdown_of(op: object) -> float:
    """The slowdown class of a compute-stream op beside a collective (1: not a kernel)."""
    return _slowdowns((op,))[0]


def _slowdowns(ops: Sequence[object]) -> list[float]:
    """The slowdown class of each of ``ops`` beside a collective, in one comprehension (the one
    copy of the rule): a GEMM-like kernel (a matrix-product category with FLOPs) the GEMMs' factor,
    another compute kernel or a lookup the others', anything else 1 (not a kernel). A Python call
    an op cost about 1,400 machine instructions, 0.2 M an evaluation at 128 GPUs (150 ops)."""
    gemm, other = COMM_SLOWDOWN["gemm"], COMM_SLOWDOWN["other"]
    return [
        (gemm if op.category in _MATMUL and op.flops > 0 else other)
        if type(op) is Compute
        else (other if type(op) is Embedding else 1.0)
        for op in ops
    ]


# A queue's stream as the index keeps it (``GraphIndex.queue_keys``: the stream's value).
_COMPUTE = Stream.COMPUTE.value


def interfered_durations(
    index: GraphIndex,
    durations: Sequence[float],
    start: npt.NDArray[np.float64],
    finish: npt.NDArray[np.float64],
    footprints: npt.NDArray[np.float64] | None = None,
) -> list[float]:
    """``durations`` (by position) with every compute-stream kernel stretched by its overlap with
    its rank's collectives in the schedule ``start``/``finish`` (module docstring), each
    collective's window weighted by its footprint (``stretched_lengths``)."""
    stretched = stretched_lengths(index, np.asarray(durations, dtype=np.float64), start, finish, footprints)
    if stretched is None:
        return list(durations)
    result: list[float] = stretched.tolist()
    return result


def stretched_lengths(
    index: GraphIndex,
    lengths: npt.NDArray[np.float64],
    start: npt.NDArray[np.float64],
    finish: npt.NDArray[np.float64],
    footprints: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64] | None:
    """``interfered_durations`` of the durations ``lengths`` as a float64 array (a new one), or None
    where no kernel overlaps a collective's window (nothing to stretch): for the engine, which
    schedules arrays and so converts neither way. ``footprints``: per op of ``index.op_table``,
    a collective's ``footprint`` (read for the collectives only); None: 1 for every one."""
    # The step nodes' ops (``GraphIndex.source_ops``: a built step graph's columns, no node made).
    table = index.op_table
    steps = index.copies[1] if index.copies is not None else 1
    per_node = table.number.size
    # Per step node: its slowdown (1 for what is not a kernel on a compute stream); the copies of
    # a chained graph repeat it step by step. The ops are few and shared by the ranks' nodes (a
    # dense layer's by every rank): each distinct op's slowdown is worked out once (the index's
    # ``op_table``, which the durations read too), and whether a node is on a compute stream is
    # its queue's.
    slowdown = np.fromiter(_slowdowns(table.ops), dtype=np.float64, count=len(table.ops))
    # The queues' ranks and streams as columns: ``zip`` transposes the keys and ``map`` compares
    # the streams in C, where two comprehensions over the queues (215 at 128 GPUs) each took a
    # Python turn a queue (with the per-queue shift below: 3.48 -> 3.42 M machine instructions a
    # stretch at 128 GPUs, callgrind).
    keys = index.queue_keys
    queue_ranks, queue_streams = tuple(zip(*keys, strict=True))[:2] if keys else ((), ())
    on_compute = np.fromiter(map(eq, queue_streams, repeat(_COMPUTE)), dtype=bool, count=len(keys))
    slow = np.where(on_compute[index.queue_array[:per_node]], slowdown[table.number], 1.0)
    # The collectives: the index's (every ``Collective`` node, all steps, in order), not read off
    # the ops again.
    taken = index.collective_positions_array
    if not taken.size or not (slow > 1.0).any():
        return None
    slow = tiled(slow, steps)
    rank_of_queue = np.array(queue_ranks, dtype=np.int64)
    # Each rank's collective windows, merged into disjoint intervals on one time line: rank ``r``'s
    # times are shifted by ``r x span`` so that one sort and one running maximum serve all ranks.
    # Every time is finite where each array's least and greatest are (a NaN makes both NaN):
    # four reductions, not two tests and a conjunction over every node before two of them.
    extremes = (start.min(), start.max(), finish.min(), finish.max())
    if not all(map(math.isfinite, extremes)):
        # A broken duration stays broken; it must not spoil the other ranks.
        finite = np.isfinite(start) & np.isfinite(finish)
        taken = taken[finite[taken]]
        slow = np.where(finite, slow, 1.0)
        if not taken.size:
            return None
        low = float(min(start[finite].min(), 0.0))
        high = float(finish[finite].max())
    else:  # every time finite: the extremes of the whole arrays (the same values, no copies)
        low = float(min(extremes[0], 0.0))
        high = float(extremes[3])
    # Twice the schedule's extent (not a fixed second more): the shift costs a rank's times the
    # bits of ``rank x span``, so the smaller it is the less rounding grows with the rank number
    # (a reviewer found 1e-9 at 4,096 ranks). The nanosecond only keeps ranks apart on a schedule
    # of no length, where every interval is empty anyway.
    span = 2.0 * (high - low) + 1e-9
    # The shift of the nodes read below only (the collectives and the kernels, all with finite
    # times), not of every node: each queue's rank is the rank of its nodes, so the least rank of
    # the queues is the nodes' least.
    least = rank_of_queue.min()
    queue = index.queue_array
    # Each queue's shift, worked out for the queues (215 at 128 GPUs), then every node's times
    # shifted at once and the collectives' and kernels' read off them: the same additions of the
    # same values as node by node. A gather or a selection costs about 15 machine instructions
    # an element, an addition a few: one gather and two additions over the 4,932 nodes and two
    # selections of the 4,365 kernels by their mask cost about 0.09 M less an evaluation at 128
    # GPUs (callgrind) than the kernels' four gathers (their queues, their queues' shifts, their
    # starts and finishes) and five array operations over them.
    queue_shift = (rank_of_queue - least).astype(np.float64) * span - low
    shift = queue_shift[queue]
    shifted_start, shifted_finish = start + shift, finish + shift
    a = shifted_start[taken]
    b = shifted_finish[taken]
    order = a.argsort(kind="stable")
    a, b = a[order], b[order]

    base = lengths
    is_kernel = (slow > 1.0) & (finish > start)
    kernel = is_kernel.nonzero()[0]
    s = shifted_start[is_kernel]
    e = shifted_finish[is_kernel]
    out = base.copy()
    w = None if footprints is None else tiled(footprints[table.number], steps)[taken][order]
    # The distinct footprints in increasing order, as ``np.unique`` gives them: a sort and the
    # first of each run, half the machine instructions of ``np.unique``'s Python (70,000).
    values = None
    if w is not None:
        ordered = np.sort(w)
        values = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
    if values is None or values.size == 1:
        # One footprint for every collective (1: the trace's share, as measured): one union.
        weight = 1.0 if values is None else float(values[0])
        near, share = _covered_share(a, b, s, e, kernel, start, finish)
        excess = weight * share
    else:
        # The collectives of each footprint apart (NVLS or CollNet beside ring and all-to-all);
        # the SMs that collectives of two footprints hold at once add up. The kernels that may
        # overlap any window first (about one in six), then each footprint's share of those.
        # Not one pass with each window weighted by its footprint (asked, 2026-12-08): the
        # excess adds, footprint by footprint in increasing order, the footprint times the share
        # of the kernel that union of its windows covers, worked out from that union's own
        # running widths; a weighted union adds other floats in another order, and counts a
        # time two footprints' windows share once. Nor is the second pass wider than it need
        # be: each footprint's ``_covered_share`` works out the covered time of the kernels that
        # may overlap one of its own windows alone (``touched``), of those ``_near`` found.
        near = _near(*_merged(a, b), s, e)
        s, e, nearby = s[near], e[near], kernel[near]
        excess = np.zeros(near.size)
        for value in values:
            if value > 0.0:
                mask = w == value
                found, share = _covered_share(a[mask], b[mask], s, e, nearby, start, finish)
                excess[found] += float(value) * share
    kernel = kernel[near]
    out[kernel] = base[kernel] * (1.0 + (slow[kernel] - 1.0) * excess)
    assert out.size == per_node * steps
    return out


def _merged(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The union of the windows ``[a, b)`` (sorted by ``a``, at least one) as disjoint intervals."""
    reach = np.maximum.accumulate(b)
    fresh = np.ones(a.size, dtype=bool)
    fresh[1:] = a[1:] > reach[:-1]
    first = fresh.nonzero()[0]
    return a[first], np.maximum.reduceat(b, first)


def _near(
    merged_a: npt.NDArray[np.float64],
    merged_b: npt.NDArray[np.float64],
    s: npt.NDArray[np.float64],
    e: npt.NDArray[np.float64],
) -> npt.NDArray[np.intp]:
    """The kernels ``[s, e)`` that may overlap a merged interval: one opens inside them, or they
    start before the last one that opened before them has closed. Any other lies between two
    intervals (or before the first): its covered time is the same at both ends (the whole interval
    before it, or none, the same floats: ``t - a`` is at least ``b - a`` for ``t >= b``), so its
    share is 0 and its length stays as it is. At 128 GPUs about one kernel in six may."""
    at_s = np.searchsorted(merged_a, s, side="right")
    opens = np.concatenate((merged_a, [np.inf]))[at_s] <= e
    reach_at = np.concatenate(([-np.inf], merged_b))
    near: npt.NDArray[np.intp] = (opens | (s < reach_at[at_s])).nonzero()[0]
    return near


def _covered_share(
    a: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
    s: npt.NDArray[np.float64],
    e: npt.NDArray[np.float64],
    kernel: npt.NDArray[np.intp],
    start: npt.NDArray[np.float64],
    finish: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Which kernels ``[s, e)`` (the nodes ``kernel``, shifted) may overlap the union of the windows
    ``[a, b)`` (sorted by ``a``; ``_near``), and the share of each of those that the union covers,
    in ``[0, 1]``, of its length from the unshifted ``start`` and ``finish``; every other's is 0."""
    if not a.size:
        return np.zeros(0, dtype=np.intp), np.zeros(0)
    merged_a, merged_b = _merged(a, b)
    width = merged_b - merged_a
    # Union length before each merged interval, to read the covered time of any window in two
    # binary searches. Each table is read at ``i - 1`` for the ``i`` intervals that start at or
    # before a time, the first entry repeated in front for ``i = 0`` (whose result is 0 anyway).
    covered = np.concatenate(([0.0], width.cumsum()))
    covered_at = np.concatenate((covered[:1], covered[:-1]))
    start_at = np.concatenate((merged_a[:1], merged_a))
    width_at = np.concatenate((width[:1], width))
    # The first start after the ``i`` intervals that start at or before a time (none: +inf), and
    # the end of the last of them (none: -inf).
    next_a = np.concatenate((merged_a, [np.inf]))
    reach_at = np.concatenate(([-np.inf], merged_b))

    def covered_before(t: npt.NDArray[np.float64], i: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        # ``i``: how many intervals start at or before each ``t``.
        inside = np.clip(t - start_at[i], 0.0, None)
        inside = np.minimum(inside, width_at[i])
        return np.where(i > 0, covered_at[i] + inside, 0.0)

    # How many merged intervals start at or before each kernel's start, then its end: the same
    # count as at its start unless the next interval starts by then (``np.searchsorted`` for
    # those alone: the counts are the same, and a kernel seldom spans a window's opening, so the
    # binary searches, about a million machine instructions an evaluation at 128 GPUs, halve).
    at_s = np.searchsorted(merged_a, s, side="right")
    later = next_a[at_s] <= e  # an interval opens inside the kernel
    # Only the kernels that may overlap an interval (``_near``, the same test on the same counts).
    touched = (later | (s < reach_at[at_s])).nonzero()[0]
    s, e, at_s, later = s[touched], e[touched], at_s[touched], later[touched]
    at_e = at_s.copy()
    if later.any():
        at_e[later] = np.searchsorted(merged_a, e[later], side="right")
    # Both ends in one call (the same values element by element; half the array calls).
    ends = covered_before(np.concatenate((e, s)), np.concatenate((at_e, at_s)))
    node = kernel[touched]
    length = finish[node] - start[node]
    share = np.clip((ends[: e.size] - ends[e.size :]) / length, 0.0, 1.0)
    return touched, share
