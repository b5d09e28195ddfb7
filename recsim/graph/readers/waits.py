"""What a Kineto trace's CPU threads and GPU streams waited for: read from its sync records, or
from its timing where it has none.

A replay must know which waits were waits, or it counts them as work: a CPU thread blocked in a
``cudaStreamSynchronize`` for 6 ms is not 6 ms of CPU time, and a kernel that sat behind a
``cudaStreamWaitEvent`` for 3 ms did not need 3 ms to start. Here each is a dependency: the thread
goes on once the GPU event it waited for is done (``host_waits``; ``kineto._segments`` leaves the
blocked time out of the thread's work), the kernel starts once the other stream's event is done
(``gpu_waits``). Then a what-if that makes the GPU faster moves the work after the wait.

Two sources:

* **Sync records.** A trace taken with ``torch.profiler``'s
  ``_ExperimentalConfig(enable_cuda_sync_events=True)`` has ``cuda_sync`` events (libkineto's
  ``CudaSyncActivity``, one per CUPTI synchronisation record). Each names its kind
  (``cuda_sync_kind``: ``Stream Wait Event``, ``Event Sync``, ``Stream Sync``, ``Context Sync``),
  the ``stream`` it concerns, the ``correlation`` of the runtime call that made it, and for the
  event kinds the stream the event was recorded on (``wait_on_stream``) and the correlation of its
  ``cudaEventRecord`` call (``wait_on_cuda_event_record_corr_id``). The event's work is the last
  work launched on its stream before the record (before the call, for a stream or context sync);
  the GPU work that waits is the next launched on the waiting stream after the
  ``cudaStreamWaitEvent`` call. These waits are exact (``sync_waits``).
* **Timing**, for what the records do not cover (and for traces without them): a synchronisation
  blocked on the GPU event that finished last while it ran; a copy to or from pageable memory (or
  a synchronous one) on its own copy; a GPU event that started well after it could have, on the
  event of another stream that ended just before it, or else on a kernel of another stream that
  filled the GPU and ended just after it started. The thresholds are read on the reference
  traces (below).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsim.graph.readers.kineto import KEvent, KinetoTrace

_EPS_US = 1e-3  # one nanosecond: timestamps are microseconds with at most ns precision

# Runtime calls that can block the CPU thread until GPU work finishes: the synchronisations, and
# the copies (a copy to or from pageable memory returns only once it is done, ``cudaMemcpyAsync``
# included).
_BLOCKING = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")
_BLOCKING_DRIVER = ("cuStreamSynchronize", "cuCtxSynchronize", "cuEventSynchronize", "cuMemcpy")

# How soon after the GPU event it waits for (``cudaStreamWaitEvent``) a kernel starts. On the
# reference recsys trace (rank 3 of 8, A100), of the 71 events that started more than 25 us after
# they could have, the 33 that an end on another stream explains (NCCL after the compute that fed
# it, compute after NCCL) started 0-24 us after it; for the others the last end before them was
# 1.2 ms or more earlier. 50 us lies in that void, well above a launch's own latency (5-10 us).
_STREAM_WAIT_US = 50.0
# How long before a kernel that fills the GPU ends, the kernel it held back starts (as its last
# wave of thread blocks retires): 1-94 us for the 36 stalls of the same trace that no end on
# another stream explains (small kernels of the input pipeline's stream behind the embedding
# backward, 0.05-5 ms stalls); 2 stalls neither rule explains.
_TAIL_US = 100.0


def _may_block(event: KEvent) -> bool:
    return event.cat in ("cuda_runtime", "cuda_driver", "runtime") and event.name.startswith(
        _BLOCKING + _BLOCKING_DRIVER
    )


@dataclass
class SyncWaits:
    """The waits a trace's sync records name: id(runtime call) -> the GPU event the CPU waited for,
    id(GPU event) -> the events of other streams it waited for; ``calls``: id of every runtime call
    a record resolves (waited or not); how many stream-wait records resolve and how many do not
    (an unknown kind, or a call or event record the trace lacks)."""

    host: dict[int, KEvent] = field(default_factory=dict)
    gpu: dict[int, list[KEvent]] = field(default_factory=dict)
    calls: set[int] = field(default_factory=set)
    stream_waits: int = 0
    unresolved: int = 0

    @property
    def complete_stream_waits(self) -> bool:
        """Whether the records name every stream wait: some resolve, and none fails to."""
        return self.stream_waits > 0 and self.unresolved == 0


def sync_waits(trace: KinetoTrace) -> SyncWaits:
    """The exact waits of ``trace``'s ``cuda_sync`` records (empty without them)."""
    out = SyncWaits()
    if not trace.syncs:
        return out
    # Per (device, stream): the GPU work in launch order, with the launch times.
    launched: dict[tuple[Any, Any], list[tuple[float, KEvent]]] = defaultdict(list)
    for event in trace.gpu:
        runtime = trace.launch.get(id(event))
        if runtime is not None:
            launched[(event.pid, event.args.get("stream"))].append((runtime.ts, event))
    for queue in launched.values():
        queue.sort(key=lambda item: item[0])

    def last_before(queue: list[tuple[float, KEvent]], t: float) -> KEvent | None:
        i = bisect.bisect_left(queue, t, key=lambda item: item[0]) - 1
        return queue[i][1] if i >= 0 else None

    def record_of(sync: KEvent) -> KEvent | None:
        return trace.calls.get(sync.args.get("wait_on_cuda_event_record_corr_id"))

    def recorded(sync: KEvent, record: KEvent) -> KEvent | None:
        """The work the waited-on event stands for: the last launched on its stream before it was
        recorded."""
        return last_before(launched.get((sync.pid, sync.args.get("wait_on_stream")), []), record.ts)

    def names_its_stream(sync: KEvent) -> bool:
        # A record without the event's stream (-1) says too little: HolisticTraceAnalysis's
        # critical path skips such records too. The timing rules judge the wait instead.
        stream = sync.args.get("wait_on_stream")
        return isinstance(stream, int) and not isinstance(stream, bool) and stream >= 0

    for sync in trace.syncs:
        kind = str(sync.args.get("cuda_sync_kind") or sync.name)
        call = trace.calls.get(sync.args.get("correlation"))
        waited: KEvent | None
        if kind == "Stream Wait Event":
            record = record_of(sync)
            if call is None or record is None or not names_its_stream(sync):
                out.unresolved += 1
                continue
            out.stream_waits += 1
            producer = recorded(sync, record)
            stream = (sync.pid, sync.args.get("stream"))
            queue = launched.get(stream, [])
            i = bisect.bisect_right(queue, call.ts, key=lambda item: item[0])
            if producer is not None and i < len(queue) and queue[i][1] is not producer:
                out.gpu.setdefault(id(queue[i][1]), []).append(producer)
            continue
        if call is None:
            continue  # the timing rule judges the call, if the trace has it
        if kind == "Event Sync":
            record = record_of(sync)
            if record is None or not names_its_stream(sync):
                continue
            waited = recorded(sync, record)
        elif kind == "Stream Sync":
            waited = last_before(launched.get((sync.pid, sync.args.get("stream")), []), call.ts)
        elif kind in ("Context Sync", "Device Sync"):
            lasts = [
                last_before(queue, call.ts) for (device, _), queue in launched.items() if device == sync.pid
            ]
            waited = max((e for e in lasts if e is not None), key=lambda e: e.end, default=None)
        else:
            continue
        out.calls.add(id(call))
        if waited is not None and waited.end > call.ts:
            out.host[id(call)] = waited
    return out


def host_waits(trace: KinetoTrace, exact: SyncWaits | None = None) -> dict[int, KEvent]:
    """id(runtime call) -> the GPU event it blocked on, for the calls that blocked the CPU thread.

    A call a sync record covers waited for what the record names (``exact``, ``sync_waits``).
    Otherwise from the timing: a copy blocked if it returned only after its own GPU copy had
    finished (a copy to or from pageable memory, or a synchronous ``cudaMemcpy``); a
    synchronisation blocked on the GPU event that finished last while it ran (the call returns a
    few microseconds after what it waits for). A call during which no GPU event finished did not
    wait. The wait is then a dependency (``kineto._segments``), not CPU time, so a GPU that is
    faster or slower in a what-if moves the thread's later work.
    """
    exact = exact if exact is not None else sync_waits(trace)
    ends = sorted(trace.gpu, key=lambda e: e.end)
    end_times = [e.end for e in ends]
    launched: dict[int, list[KEvent]] = defaultdict(list)
    for event in trace.gpu:
        runtime = trace.launch.get(id(event))
        if runtime is not None:
            launched[id(runtime)].append(event)
    out: dict[int, KEvent] = dict(exact.host)
    for events in trace.threads.values():
        for call in events:
            if not _may_block(call) or call.dur <= 0 or id(call) in exact.calls:
                continue
            own = launched.get(id(call))
            if own:
                # Only a copy that blocks by its nature: a synchronous one, or one to or from
                # pageable memory (an asynchronous copy may finish before its call returns).
                last = max(own, key=lambda e: e.end)
                blocking = "Async" not in call.name or pageable_copy(last.name)
                if blocking and call.ts < last.end <= call.end + _EPS_US:
                    out[id(call)] = last
                continue
            i = bisect.bisect_right(end_times, call.end + _EPS_US) - 1
            if i >= 0 and end_times[i] > call.ts:
                out[id(call)] = ends[i]
    return out


def gpu_waits(
    trace: KinetoTrace, host: Mapping[int, KEvent] | None = None, exact: SyncWaits | None = None
) -> dict[int, list[KEvent]]:
    """id(GPU event) -> the events on other CUDA streams of its GPU it waited for.

    The sync records' stream waits (``exact``, ``sync_waits``), and what the timing shows. A GPU
    event stalled if it started more than ``_STREAM_WAIT_US`` after it could have (its launch
    issued, the work before it on its stream and the events the records say it waited for done).
    Unless the records name every stream wait, it waited for the event on another stream that
    ended last before it started, if that one ended after it could have started and within
    ``_STREAM_WAIT_US`` of its start (a ``cudaStreamWaitEvent`` the trace does not name). Else,
    records or not, it waited for an event of another stream running when it started and ending
    within ``_TAIL_US`` after, whose thread blocks held the GPU (this makes it start up to
    ``_TAIL_US`` late in a replay). A stall neither explains is left out: replayed, the event starts
    when it could have.
    ``host`` (``host_waits``): a launch that blocked until its own copy was done issued it when
    it was called.
    """
    exact = exact if exact is not None else sync_waits(trace)
    recorded = exact.complete_stream_waits
    by_end = sorted(trace.gpu, key=lambda e: e.end)
    end_times = [e.end for e in by_end]
    last_end: dict[Any, float] = {}
    running: list[KEvent] = []  # events started so far that may still run
    out: dict[int, list[KEvent]] = {k: list(v) for k, v in exact.gpu.items()}
    for event in trace.gpu:  # in start order
        stream = (event.pid, event.args.get("stream"))
        runtime = trace.launch.get(id(event))
        ready = last_end.get(stream, -math.inf)
        if runtime is not None:
            ready = max(ready, runtime.ts if host is not None and id(runtime) in host else runtime.end)
        for other in out.get(id(event), ()):
            ready = max(ready, other.end)
        running = [e for e in running if e.end > event.ts]
        if event.ts - ready > _STREAM_WAIT_US:
            i = bisect.bisect_right(end_times, event.ts + _EPS_US) - 1
            while i >= 0 and (
                by_end[i].pid != event.pid or (by_end[i].pid, by_end[i].args.get("stream")) == stream
            ):
                i -= 1
            if (
                not recorded
                and i >= 0
                and by_end[i].end > ready
                and event.ts - by_end[i].end <= _STREAM_WAIT_US
            ):
                out.setdefault(id(event), []).append(by_end[i])
            else:
                holding = [
                    e
                    for e in running
                    if e.pid == event.pid
                    and (e.pid, e.args.get("stream")) != stream
                    and e.end <= event.ts + _TAIL_US
                ]
                if holding:
                    out.setdefault(id(event), []).append(max(holding, key=lambda e: e.end))
        running.append(event)
        last_end[stream] = max(last_end.get(stream, -math.inf), event.end)
    return out


def pageable_copy(name: str) -> bool:
    """Whether a recorded copy (CUPTI's memcpy name, "Memcpy HtoD (Pageable -> Device)") has a
    pageable end: the driver stages it through a pinned buffer with a CPU copy, and its call
    returns only once it is done."""
    return "Pageable" in name
