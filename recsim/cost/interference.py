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
``1 + (slowdown - 1) f`` times as long, the slowdown of its class (matrix products: GEMMs, dot
interactions, cross layers, attention; or the rest). The overlap
is read off a schedule made without the effect (one pass: the stretched kernels are not
re-checked against the collectives they now overlap a little more or less). A collective's window
on a rank is its scheduled start to finish. ASSUMPTION: the A100 figures hold on other GPUs (no
other trace in the reference set has NCCL kernels beside compute kernels of the same shapes).

**Not monotone in the hardware.** Faster hardware that moves a collective earlier can move it
under a kernel it used to follow, and that kernel then runs slower: a tester's zionex DLRM step
(table-wise, fp16, fused) takes 2.096 ms with 31.5 GB/s PCIe switch ports and 2.124 ms (+1.3 %)
with 63 GB/s, because the next batch's copy finishes sooner and its index all-to-all then begins
inside the forward lookup instead of after it (when found, with copies at the PCIe line rate:
22 of about 2,500 perturbed runs, at most +1.1 %, every one a PCIe or DRAM speed-up). That is
the contention the traces show, not an artefact of the one-pass reading; a framework would see it
too unless it held the collective back.
With ``comm_interference`` off (``--no-comm-interference``) more bandwidth never slows a step.
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from recsim.graph.dep_rows import tiled
from recsim.graph.index import GraphIndex
from recsim.graph.ir import Compute, Embedding, Stream
from recsim.graph.readers.kineto import KinetoTrace

__all__ = [
    "COMM_SLOWDOWN",
    "MIN_SAMPLES",
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


def overlap_slowdowns(trace: KinetoTrace, min_samples: int = MIN_SAMPLES) -> dict[str, list[float]]:
    """Per class (``gemm``, ``other``), the slowdown ratio of each kernel group of ``trace`` seen
    ``min_samples`` times both beside NCCL kernels and clear of them (module docstring)."""
    kernels = [e for e in trace.gpu if e.cat == "kernel"]
    # Per device (``pid``), the union of its NCCL kernels' spans, as disjoint sorted intervals.
    spans: dict[Any, list[tuple[float, float]]] = defaultdict(list)
    for e in kernels:
        if is_nccl(e.name):
            spans[e.pid].append((e.ts, e.end))
    unions = {pid: interval_union(intervals) for pid, intervals in spans.items()}
    groups: dict[tuple[Any, ...], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for e in kernels:
        if is_nccl(e.name) or e.dur <= 0:
            continue
        share = covered_s(unions.get(e.pid, ([], [])), e.ts, e.end) / e.dur
        key = (e.name, tuple(e.args.get("grid", ())), tuple(e.args.get("block", ())))
        clear, beside = groups[key]
        if share < _CLEAR:
            clear.append(e.dur)
        elif share > _INSIDE:
            beside.append(e.dur)
    out: dict[str, list[float]] = {"gemm": [], "other": []}
    for (name, _, _), (clear, beside) in groups.items():
        if len(clear) >= min_samples and len(beside) >= min_samples:
            ratio = statistics.median(beside) / statistics.median(clear)
            out["gemm" if "gemm" in name.lower() else "other"].append(ratio)
    return out


#: Compute categories whose kernels are matrix products (the cost layer prices them on the tensor
#: peak: GEMMs, dot interactions and DCN cross layers, attention and GRU gates).
_MATMUL = frozenset({"gemm", "interaction", "sequence"})


def _slowdown_of(op: object) -> float:
    """The slowdown class of a compute-stream op beside a collective (1: not a kernel)."""
    if type(op) is Compute:
        matmul = op.category in _MATMUL and op.flops > 0
        return COMM_SLOWDOWN["gemm"] if matmul else COMM_SLOWDOWN["other"]
    if type(op) is Embedding:
        return COMM_SLOWDOWN["other"]
    return 1.0


# A queue's stream as the index keeps it (``GraphIndex.queue_keys``: the stream's value).
_COMPUTE = Stream.COMPUTE.value


def interfered_durations(
    index: GraphIndex,
    durations: Sequence[float],
    start: npt.NDArray[np.float64],
    finish: npt.NDArray[np.float64],
) -> list[float]:
    """``durations`` (by position) with every compute-stream kernel stretched by its overlap with
    its rank's collectives in the schedule ``start``/``finish`` (module docstring)."""
    stretched = stretched_lengths(index, np.asarray(durations, dtype=np.float64), start, finish)
    if stretched is None:
        return list(durations)
    result: list[float] = stretched.tolist()
    return result


def stretched_lengths(
    index: GraphIndex,
    lengths: npt.NDArray[np.float64],
    start: npt.NDArray[np.float64],
    finish: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64] | None:
    """``interfered_durations`` of the durations ``lengths`` as a float64 array (a new one), or None
    where no kernel overlaps a collective's window (nothing to stretch): for the engine, which
    schedules arrays and so converts neither way."""
    # The step nodes' ops (``GraphIndex.source_ops``: a built step graph's columns, no node made).
    table = index.op_table
    steps = index.copies[1] if index.copies is not None else 1
    per_node = table.number.size
    # Per step node: its slowdown (1 for what is not a kernel on a compute stream); the copies of
    # a chained graph repeat it step by step. The ops are few and shared by the ranks' nodes (a
    # dense layer's by every rank): each distinct op's slowdown is worked out once (the index's
    # ``op_table``, which the durations read too), and whether a node is on a compute stream is
    # its queue's.
    slowdown = np.fromiter(map(_slowdown_of, table.ops), dtype=np.float64, count=len(table.ops))
    on_compute = np.array([key[1] == _COMPUTE for key in index.queue_keys], dtype=bool)
    slow = np.where(on_compute[index.queue_array[:per_node]], slowdown[table.number], 1.0)
    # The collectives: the index's (every ``Collective`` node, all steps, in order), not read off
    # the ops again.
    taken = index.collective_positions_array
    if not taken.size or not (slow > 1.0).any():
        return None
    slow = tiled(slow, steps)
    keys = index.queue_keys
    rank_of_queue = np.array([key[0] for key in keys], dtype=np.int64)
    # Each rank's collective windows, merged into disjoint intervals on one time line: rank ``r``'s
    # times are shifted by ``r x span`` so that one sort and one running maximum serve all ranks.
    finite = np.isfinite(start) & np.isfinite(finish)
    if not finite.all():  # a broken duration stays broken; it must not spoil the other ranks
        taken = taken[finite[taken]]
        slow = np.where(finite, slow, 1.0)
        if not taken.size:
            return None
        low = float(min(start[finite].min(), 0.0))
        high = float(finish[finite].max())
    else:  # every time finite: the extremes of the whole arrays (the same values, no copies)
        low = float(min(start.min(), 0.0))
        high = float(finish.max())
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

    def shift_of(at: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        return (rank_of_queue[queue[at]] - least).astype(np.float64) * span - low

    shift = shift_of(taken)
    a = start[taken] + shift
    b = finish[taken] + shift
    order = a.argsort(kind="stable")
    a, b = a[order], b[order]
    reach = np.maximum.accumulate(b)
    fresh = np.ones(a.size, dtype=bool)
    fresh[1:] = a[1:] > reach[:-1]
    first = fresh.nonzero()[0]
    merged_a = a[first]
    merged_b = np.maximum.reduceat(b, first) if first.size else b[:0]
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

    base = lengths
    kernel = ((slow > 1.0) & (finish > start)).nonzero()[0]
    shift = shift_of(kernel)
    s = start[kernel] + shift
    e = finish[kernel] + shift
    # How many merged intervals start at or before each kernel's start, then its end: the same
    # count as at its start unless the next interval starts by then (``np.searchsorted`` for
    # those alone: the counts are the same, and a kernel seldom spans a window's opening, so the
    # binary searches, about a million machine instructions an evaluation at 128 GPUs, halve).
    at_s = np.searchsorted(merged_a, s, side="right")
    later = next_a[at_s] <= e  # an interval opens inside the kernel
    # The kernels that may overlap a window: one opens inside them, or they start before the last
    # one that opened before them has closed. Any other lies between two windows (or before the
    # first): its covered time is the same at both ends (the whole interval before it, or none,
    # the same floats: ``t - a`` is at least ``b - a`` for ``t >= b``), so its share is 0 and its
    # length stays as it is (``x * 1.0`` is ``x``), as in ``out``'s copy. At 128 GPUs about one
    # kernel in six may, and the arrays below are of those alone.
    touched = (later | (s < reach_at[at_s])).nonzero()[0]
    kernel, s, e, at_s, later = kernel[touched], s[touched], e[touched], at_s[touched], later[touched]
    kernel_start, kernel_finish = start[kernel], finish[kernel]
    # Lengths from the unshifted times (the shift is only for finding each rank's windows).
    length = kernel_finish - kernel_start
    at_e = at_s.copy()
    if later.any():
        at_e[later] = np.searchsorted(merged_a, e[later], side="right")
    # Both ends in one call (the same values element by element; half the array calls).
    ends = covered_before(np.concatenate((e, s)), np.concatenate((at_e, at_s)))
    share = np.clip((ends[: e.size] - ends[e.size :]) / length, 0.0, 1.0)
    out = base.copy()
    out[kernel] = base[kernel] * (1.0 + (slow[kernel] - 1.0) * share)
    assert out.size == per_node * steps
    return out
