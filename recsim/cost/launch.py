"""The GPU-side cost of launching a kernel, measured on Kineto traces.

A kernel launch has two costs. The host pays the ``cudaLaunchKernel`` call (5-8 us on the traces in
``../shared/reference/traces/``); recsim charges it wherever it models the host thread: the
measured per-operator CPU times of the ``eager`` runtime (``recsim.graph.eager_calibration``,
which include the calls) and the host nodes of a replayed trace. The GPU pays only the gap between
the end of one kernel and the start of the next on the same stream when the next one was already
queued: the command processor fetching and dispatching it. That gap is what
``accelerator.kernel_launch`` is, and what ``recsim.cost.compute.compute_time_s`` and the GPU
embedding tiers add to a kernel's time. Charging the host call on the GPU timeline instead would
count the host's time twice under ``eager`` and, under ``fused``/``cuda_graphs`` (where the host
runs ahead of the GPU by construction), add time the GPU does not spend.

``queued_gaps_s`` measures it: for every pair of consecutive kernels on one GPU stream whose second
kernel's launch call had returned at least ``QUEUED_MARGIN_S`` before the first kernel ended (so
the second was waiting in the queue), the idle time between them. Kineto timestamps have 1 us
resolution, so the median of these gaps is the figure (the mean is pulled up by a few long gaps
where the stream waited on an event of another stream). On the A100 recommendation trace it is
2 us over 6,018 pairs (quartiles 2 and 3 us), on the V100 TorchRec DLRM traces 1 us over 246 pairs
(quartiles 1 and 2 us); the median does not move for margins from 0 to 50 us. The device YAMLs
quote these figures; ``tests/unit/test_cost_launch.py`` re-measures them.

The other fixed GPU cost is a kernel's own least time: the CUPTI duration of a kernel that moves next
to nothing (set-up, one wave of thread blocks, the completion). For PyTorch's element-wise and
reduction kernels (``elementwise_kernel``, ``vectorized_elementwise_kernel``, ``reduce_kernel``) it
is the most frequent duration, since most of them work on small tensors: ``elementwise_floor_s``.
On the A100 recommendation trace it is 3 us over 5,676 kernels (3 us: 1,175, 4 us: 1,055, 2 us:
37), on the V100 TorchRec DLRM traces 3 us over 1,462 (2 us: 354). That is
``accelerator.elementwise_kernel``: the fixed part of every element-wise, optimizer and loss kernel
(``recsim.cost.compute``). A GEMM's fixed part is its own fit's (``overhead``, 5.4 us on A100:
cuBLAS kernels set up tiles and a K loop), which an element-wise kernel does not pay.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from typing import Any

from recsim.graph.readers.kineto import KEvent, KinetoTrace

# The launch call must have returned this long before the previous kernel ended for the kernel to
# count as queued: a few timestamp ticks (1 us each) beyond the call's own end.
QUEUED_MARGIN_S = 5e-6

_US = 1e-6


def queued_gaps_s(trace: KinetoTrace, margin_s: float = QUEUED_MARGIN_S) -> list[float]:
    """Idle seconds between back-to-back kernels of one stream, the second already queued."""
    streams: dict[tuple[Any, Any], list[KEvent]] = defaultdict(list)
    for event in trace.gpu:
        if event.cat == "kernel":
            streams[(event.pid, event.tid)].append(event)
    margin_us = margin_s / _US
    gaps: list[float] = []
    for kernels in streams.values():
        kernels.sort(key=lambda e: e.ts)
        for previous, current in itertools.pairwise(kernels):
            launch = trace.launch.get(id(current))
            if launch is not None and launch.end <= previous.end - margin_us:
                gaps.append(max(0.0, current.ts - previous.end) * _US)
    return gaps


def median_queued_gap_s(traces: list[KinetoTrace]) -> float:
    """The median queued-kernel gap over the pairs of all ``traces`` (ValueError when none)."""
    gaps = [gap for trace in traces for gap in queued_gaps_s(trace)]
    if not gaps:
        raise ValueError("no queued back-to-back kernels in the traces")
    return statistics.median(gaps)


#: PyTorch's element-wise and reduction kernels, by name (``at::native::elementwise_kernel``,
#: ``vectorized_elementwise_kernel``, ``unrolled_elementwise_kernel``, ``reduce_kernel``).
ELEMENTWISE_NAMES = ("elementwise_kernel", "reduce_kernel")


def elementwise_durations_us(trace: KinetoTrace) -> list[float]:
    """The recorded durations (us) of the trace's PyTorch element-wise and reduction kernels."""
    return [
        event.dur
        for event in trace.gpu
        if event.cat == "kernel" and any(name in event.name for name in ELEMENTWISE_NAMES)
    ]


def elementwise_floor_s(traces: list[KinetoTrace]) -> float:
    """The most frequent duration of the element-wise and reduction kernels of ``traces``, at the
    traces' 1 us resolution, in seconds (ValueError when they have none). The smallest of equally
    frequent durations wins."""
    counts: dict[int, int] = defaultdict(int)
    for trace in traces:
        for dur in elementwise_durations_us(trace):
            counts[round(dur)] += 1
    if not counts:
        raise ValueError("no element-wise kernels in the traces")
    most = max(counts.values())
    return min(us for us, n in counts.items() if n == most) * _US


#: The host's ``cudaMemcpyAsync`` call before a copy between host and GPU memory starts: the median
#: call on the A100 recommendation trace, 8 us over 228 calls (``memcpy_call_s``; its asynchronous
#: pinned host-to-device copies alone: 6 us over 150). A lookup the CPUs run for a GPU (tiers
#: ``ddr``, ``nmp``) pays it for each copy its indices and pooled vectors take; a test re-measures it.
MEMCPY_CALL_S = 8e-6


def memcpy_call_s(traces: list[KinetoTrace]) -> float:
    """The median duration of the host's ``cudaMemcpyAsync`` calls of ``traces``, in seconds
    (ValueError when they have none)."""
    durations = [
        event.dur
        for trace in traces
        for events in trace.threads.values()
        for event in events
        if event.name == "cudaMemcpyAsync"
    ]
    if not durations:
        raise ValueError("no cudaMemcpyAsync calls in the traces")
    return statistics.median(durations) * _US
