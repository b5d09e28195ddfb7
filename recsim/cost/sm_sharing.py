"""Kernels on two compute streams of one GPU share its SMs, measured on a Kineto trace.

A framework may run kernels on more than one compute stream of a GPU: HugeCTR's weight-gradient
GEMMs on their own stream (``recsim.graph.build.LANE_WGRAD``) and its backward index sort
(``LANE_INDEX``), TorchRec's input distribution beside the model. The engines run each lane as an
in-order queue with the whole GPU to itself, so two kernels of two lanes that overlap would each
take their stand-alone time. They do not: the CUDA block scheduler dispatches a kernel's thread
blocks to an SM only while that SM has the registers, shared memory and thread slots they need
(CUDA C++ Programming Guide, "Concurrent Kernel Execution" and "Hardware Multithreading": the
resources of an SM are split among the blocks resident on it), so a kernel launched beside one
whose blocks already hold the SMs gets only what that kernel leaves and the slots its retiring
blocks free, and the first one loses some of the SMs and of the memory bandwidth to it.

``lane_sharing_slowdowns`` measures the effect on a trace: compute kernels (no NCCL kernel
overlapping them or their partners, so ``recsim.cost.interference`` is not counted again) that
overlap kernels of another compute stream of their GPU, each kernel's stand-alone time being the
median of its group (name, grid, block) run with no other kernel beside it (at least ``MIN_CLEAR``
runs). A kernel started before all the kernels that overlap it is *resident* (its blocks were
dispatched first), one started at or after them all a *newcomer*. Over each role, the time a
kernel lost (its duration less its stand-alone time) summed against the time it overlapped the
other stream summed gives the share ``x`` of the overlap lost, and ``1 / (1 - x)`` the slowdown of
a kernel while it overlaps (it does ``1 / s`` of its stand-alone work per second there). On the
A100 recommendation trace (``../shared/reference/traces/``, rank 3: the model on one stream, the
sparse input distribution's permutes, scans and reductions on another; 1.9 ms of the 276 ms of
compute-kernel time overlaps the other stream) 19 resident kernels lose 44.5 us of 289 us of
overlap (x 0.154, slowdown 1.18) and 37 newcomers 161.5 us of 476 us (x 0.339, slowdown 1.51),
whichever stream they are on (newcomers on the model's stream 1.31, on the side stream 1.61;
residents 1.17 and 1.23). Together two kernels side by side do ``1/1.18 + 1/1.51 = 1.51`` times the
work of one alone: neither free (2) nor serialized (1). ``SM_SHARING_SLOWDOWN`` holds the figures
and ``tests/unit/test_cost_sm_sharing.py`` re-measures them.

``shared_sm_seconds`` applies them: a kernel (``Compute`` or ``Embedding``) on a compute lane of
a rank that overlaps, for ``o`` seconds, a kernel on another compute lane of the same rank takes
``(s - 1) o`` seconds longer, ``s`` the resident's slowdown if it started first, the newcomer's
if it started later; at the same start the launch order is unknown and each counts the mean of
the two. The overlaps are read off the contention-free schedule (one pass, as
``recsim.cost.interference`` reads those with the collectives), and the two stretches add
(``recsim.engine.simulate``): each was measured with the other absent. ASSUMPTIONS: the A100
figures hold on other GPUs and for every kind of kernel (the trace's pairs are element-wise,
reduction, scan, permute and cutlass GEMM kernels; no GEMM there is a newcomer); a kernel beside
two others at once (three lanes busy) is slowed by both.

**Off by default** (``SimulationOptions.sm_sharing``, ``recsim.api.simulate_run(sm_sharing=True)``):
on, it moved the 43 end-to-end validation cases from 6.40 % to 8.01 % mean |error| (signed +2.0 %
to -1.8 %): the six MLPerf DLRM v1 ones 8.88 % to 8.37 % (hgxa1004gpu +14.9 % to +14.2 %: there
the wgrad lane hides only the first two bottom wgrads, 64 us of a 2.3 ms step, beside the
embedding backward), the 31 MLPerf DCNv2 ones 4.85 % to 7.18 % (signed +0.5 % to -4.6 %: HugeCTR's
backward index sort on ``LANE_INDEX`` overlaps the whole dense forward, which then runs 20-50 %
longer on the critical path, e.g. dgxh100x1 -9.4 % to -15.5 %). Whether the DCNv2 cases' other
costs already absorb that sharing, or the sort's kernels leave the GEMMs more of the GPU than the
trace's pairs did, the reference data cannot tell yet. The sort was not priced too high for what
HugeCTR runs: its bytes match HugeCTR's index calculation (``recsim.cost.embedding.gpu``), and its
stream efficiency, since fitted on the trace's sort kernels (``gpu.SORT_EFFICIENCY``), made it
20 % shorter (the 40M-row table's, dgx-h100: 325 -> 259 us) but the refitted update stage longer:
with sm_sharing the 31 DCNv2 cases then go 4.77 % to 8.09 % (signed -1.6 % to -6.0 %), dgxh100x1
-11.4 % to -16.4 %; the 43 cases 6.34 % to 8.66 %. Measured again at 5ef9c80 (after the SIMT
K-loop fill and the GEMMs' narrow loads): the 43 cases 6.37 % to 8.63 % (signed +0.5 % to -2.7 %),
the 31 DCNv2 ones 4.77 % to 8.00 % (signed -1.6 % to -5.9 %; three fail their band instead of one),
the six DLRM v1 ones 8.91 % to 8.37 %, dgxh100x1 -11.4 % to -16.4 %.

The engines themselves still give each lane the whole GPU (``recsim.engine.analytic``), so the
two agree on a graph whose durations are given: ``recsim.engine.simulate`` hands both the same
stretched durations. DES also shares a rank's HBM between the ops of its queues
(``recsim.engine.hbm``); with this stretch on, not between the kernels of two compute lanes: the
measured slowdown is all a kernel lost beside the other stream's kernels, the HBM bandwidth they
took included, so the link takes a rank's compute-lane kernels as one flow (asking at most the
whole capacity) and slows them only for the copies and host transfers beside them, which this
stretch does not cover (nor does ``recsim.cost.interference``, which covers the NCCL kernels; they
put no flow on the link). On a graph whose only shared resource is HBM between two compute lanes
DES is then the analytic engine.
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from recsim.cost.interference import covered_s, interval_union, is_nccl
from recsim.graph.index import GraphIndex
from recsim.graph.ir import Compute, Embedding, Stream
from recsim.graph.readers.kineto import KEvent, KinetoTrace

__all__ = [
    "MIN_CLEAR",
    "SM_SHARING_SLOWDOWN",
    "has_side_lanes",
    "lane_sharing_slowdowns",
    "shared_sm_seconds",
]

SM_SHARING_SLOWDOWN: Final[dict[str, float]] = {
    # Measured (module docstring): a kernel's slowdown while it overlaps a kernel of another
    # compute stream of its GPU, by which of the two started first.
    "resident": 1.18,  # 19 kernels, 289 us of overlap, 15.4 % of it lost
    "newcomer": 1.51,  # 37 kernels, 476 us of overlap, 33.9 % of it lost
}
#: Runs of a kernel group with nothing beside it that give its stand-alone time.
MIN_CLEAR: Final[int] = 3


def _stream(e: KEvent) -> Any:
    return e.args.get("stream", e.tid)


def _group(e: KEvent) -> tuple[Any, ...]:
    return (e.name, tuple(e.args.get("grid", ())), tuple(e.args.get("block", ())))


def lane_sharing_slowdowns(
    trace: KinetoTrace, min_clear: int = MIN_CLEAR
) -> dict[str, tuple[float, int, float]]:
    """Per role (``resident``, ``newcomer``): the slowdown of ``trace``'s compute kernels while they
    overlap a kernel of another compute stream of their GPU, the number of kernels and their
    overlap in microseconds (module docstring)."""
    kernels = [e for e in trace.gpu if e.cat == "kernel" and e.dur > 0]
    nccl_by_pid: dict[Any, list[tuple[float, float]]] = defaultdict(list)
    for e in kernels:
        if is_nccl(e.name):
            nccl_by_pid[e.pid].append((e.ts, e.end))
    nccl_union = {pid: interval_union(spans) for pid, spans in nccl_by_pid.items()}
    compute = [e for e in kernels if not is_nccl(e.name)]
    by_stream: dict[tuple[Any, Any], list[KEvent]] = defaultdict(list)
    for e in compute:
        by_stream[(e.pid, _stream(e))].append(e)
    for events in by_stream.values():
        events.sort(key=lambda e: e.ts)
    # Per kernel: the union of the other compute streams of its GPU.
    others: dict[tuple[Any, Any], tuple[list[float], list[float]]] = {
        key: interval_union(
            [(e.ts, e.end) for k, es in by_stream.items() if k[0] == key[0] and k != key for e in es]
        )
        for key in by_stream
    }

    def beside_nccl(e: KEvent) -> bool:
        return e.pid in nccl_union and covered_s(nccl_union[e.pid], e.ts, e.end) > 0.0

    clear: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for e in compute:
        if not beside_nccl(e) and covered_s(others[(e.pid, _stream(e))], e.ts, e.end) == 0.0:
            clear[_group(e)].append(e.dur)
    alone = {group: statistics.median(durs) for group, durs in clear.items() if len(durs) >= min_clear}

    def partners(e: KEvent) -> list[KEvent]:
        out: list[KEvent] = []
        for (pid, stream), events in by_stream.items():
            if pid != e.pid or stream == _stream(e):
                continue
            # The stream's kernels are in order: those starting before ``e`` ends, ending after it starts.
            hi = bisect.bisect_left([x.ts for x in events], e.end)
            out.extend(x for x in events[:hi] if x.end > e.ts)
        return out

    lost: dict[str, float] = defaultdict(float)
    overlap: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for e in compute:
        if _group(e) not in alone or beside_nccl(e):
            continue
        near = partners(e)
        if not near or any(_group(x) not in alone or beside_nccl(x) for x in near):
            continue
        if all(x.ts > e.ts for x in near):
            role = "resident"
        elif all(x.ts <= e.ts for x in near):
            role = "newcomer"
        else:
            continue  # some started before it and some after: no single role
        overlap[role] += covered_s(others[(e.pid, _stream(e))], e.ts, e.end)
        lost[role] += e.dur - alone[_group(e)]
        count[role] += 1
    return {role: (1.0 / (1.0 - lost[role] / overlap[role]), count[role], overlap[role]) for role in overlap}


# A queue's stream as the index keeps it (``GraphIndex.queue_keys``: the stream's value).
_COMPUTE = Stream.COMPUTE.value


def has_side_lanes(index: GraphIndex) -> bool:
    """Whether a rank of ``index`` has more than one compute lane (kernels that may overlap)."""
    first: dict[int, int] = {}
    for rank, stream, lane in index.queue_keys:
        if stream == _COMPUTE and first.setdefault(rank, lane) != lane:
            return True
    return False


def shared_sm_seconds(
    index: GraphIndex, start: npt.NDArray[np.float64], finish: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64] | None:
    """The seconds each node of ``index`` (by position) takes longer for sharing its GPU's SMs with
    kernels on its rank's other compute lanes in the schedule ``start``/``finish`` (module
    docstring), or None where no two such kernels overlap."""
    if not has_side_lanes(index):
        return None  # one compute lane per rank: nothing runs beside anything
    keys = index.queue_keys
    table = index.op_table
    steps = index.copies[1] if index.copies is not None else 1
    per_node = table.number.size
    is_kernel = np.fromiter(
        (type(op) in (Compute, Embedding) for op in table.ops), dtype=bool, count=len(table.ops)
    )
    queue = index.queue_array
    on_compute = np.array([key[1] == _COMPUTE for key in keys], dtype=bool)
    kernel = np.tile(is_kernel[table.number], steps) & on_compute[queue]
    finite = np.isfinite(start) & np.isfinite(finish)
    kernel &= finite & (finish > start)
    if not kernel.any():
        return None
    rank_of_queue = np.array([key[0] for key in keys], dtype=np.int64)
    lane_of_queue = np.array([key[2] for key in keys], dtype=np.int64)
    rank = rank_of_queue[queue]
    lane = lane_of_queue[queue]
    # Every rank on one time line (as ``recsim.cost.interference`` does): rank ``r``'s times
    # shifted by ``r x span``, so that one sorted array of a lane's kernels serves all ranks.
    low = float(min(start[finite].min(), 0.0))
    span = 2.0 * (float(finish[finite].max()) - low) + 1e-9
    shift = (rank - rank.min()).astype(np.float64) * span - low
    extra = np.zeros(per_node * steps, dtype=np.float64)
    resident = SM_SHARING_SLOWDOWN["resident"] - 1.0
    newcomer = SM_SHARING_SLOWDOWN["newcomer"] - 1.0
    tie = (resident + newcomer) / 2.0
    found = False
    lanes = sorted({key[2] for key in keys if key[1] == _COMPUTE})
    for i, first in enumerate(lanes):
        a_pos = np.flatnonzero(kernel & (lane == first))
        if a_pos.size == 0:
            continue
        a_start = start[a_pos] + shift[a_pos]
        order = np.argsort(a_start, kind="stable")
        # A lane is an in-order queue: its kernels on one rank never overlap, so sorted by start
        # they are sorted by finish too.
        a_pos, a_start = a_pos[order], a_start[order]
        a_finish = finish[a_pos] + shift[a_pos]
        for second in lanes[i + 1 :]:
            b_pos = np.flatnonzero(kernel & (lane == second))
            if b_pos.size == 0:
                continue
            b_start = start[b_pos] + shift[b_pos]
            b_finish = finish[b_pos] + shift[b_pos]
            # For each kernel of the second lane, the first lane's kernels that overlap it: a
            # contiguous run of the sorted array (those ending after it starts, starting before it
            # ends), expanded to one (a, b) pair per overlap.
            lo = np.searchsorted(a_finish, b_start, side="right")
            hi = np.searchsorted(a_start, b_finish, side="left")
            n = np.maximum(hi - lo, 0)
            if not n.any():
                continue
            found = True
            b_of = np.repeat(np.arange(b_pos.size), n)
            a_of = np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
            # The overlap and the order from the unshifted times (the shift only finds the pairs).
            a, b = a_pos[a_of], b_pos[b_of]
            together = np.clip(np.minimum(finish[a], finish[b]) - np.maximum(start[a], start[b]), 0.0, None)
            a_first = start[a] < start[b]
            same = start[a] == start[b]
            a_rate = np.where(same, tie, np.where(a_first, resident, newcomer))
            b_rate = np.where(same, tie, np.where(a_first, newcomer, resident))
            np.add.at(extra, a, a_rate * together)
            np.add.at(extra, b, b_rate * together)
    return extra if found and extra.any() else None
