"""Reader for Kineto / Chrome trace JSON (``torch.profiler`` ``export_chrome_trace``), one file per rank.

The format: ``{"traceEvents": [...], "deviceProperties": [...], "distributedInfo": {"rank",
"world_size", ...}}``, or Chrome's array form, the bare list of events (no device or rank then).
Events have ``ph`` (``X`` complete, ``s``/``f`` flow, ``M`` metadata, ``i`` instant), ``cat``,
``name``, ``pid``, ``tid``, ``ts`` and ``dur`` in microseconds, and ``args``.
What this reader uses:

* GPU activity: ``cat`` ``kernel``, ``gpu_memcpy``, ``gpu_memset`` with ``args.stream`` (the CUDA
  stream) and ``args.correlation`` (the id of the ``cuda_runtime`` call that launched it; ``ac2g``
  / ``async_cpu_to_gpu`` flow events carry the same id and are the fallback).
* CPU activity: ``cpu_op`` (operators, with ``Input Dims`` / ``Input type`` when recorded with
  shapes, and ``Record function id`` in newer traces), ``user_annotation`` (``record_function``
  labels such as ``## forward ##``, ``nccl:all_to_all`` and ``ProfilerStep#N``), ``cuda_runtime``.
* NCCL kernels of newer traces carry ``Collective name``, ``In msg nelems``, ``Out msg nelems``,
  ``Group size``, ``dtype``, ``In split size``, ``Out split size``, ``Process Group Name`` and
  ``Process Group Ranks``; older traces get the same from the enclosing ``nccl:*`` annotation's
  ``Input Dims`` / ``Input type`` and from the kernel name.
* ``cuda_sync`` records (traces taken with ``enable_cuda_sync_events``): which GPU work each
  synchronisation and stream wait waited for (``recsim.graph.readers.waits``).

Choices:

* **GPU nodes**: every kernel / memcpy / memset, with its recorded duration and start. NCCL kernels
  are ``Collective`` ops on the ``comm`` stream; memcpys are ``Transfer`` ops on ``copy``; the rest
  ``Compute`` on ``compute`` with a category from the kernel name and the input shapes of the CPU
  op that launched it. Lanes number the CUDA streams of a class, per device (a GPU event's
  ``pid``: stream 7 of GPU 0 and stream 7 of GPU 1 are two queues), so two compute streams stay two
  queues; stream order is kept per CUDA stream (a memcpy issued on the compute stream still waits
  for the kernel before it).
* **Host nodes**: a CPU thread's time is cut at every kernel launch: a ``Host`` node covers the
  thread's busy time from the previous launch (or the start of the busy period) up to the end of
  the ``cuda_runtime`` call that launched a kernel (its start, for a copy that blocked until done:
  below), named after the innermost ``cpu_op`` around
  that launch; busy time after the last launch of a busy period is one more node. "Busy" is the
  union of ``cpu_op`` and ``cuda_runtime`` intervals, through gaps shorter than ``_IDLE_US`` and
  through the longer gaps inside a ``user_annotation`` that are the thread's own Python work, not a
  wait for another thread (``host_segments``): so Python and engine time between traced calls
  counts, sleep and waiting do not. This way a
  kernel depends on *exactly* the CPU work done before its launch, nested operators are never
  double counted, and the host nodes of a thread sum to its busy time, less its waits (below). A
  kernel depends on its launch node and on the previous work of its CUDA stream; host nodes are
  chained per thread.
* **Waits** (``recsim.graph.readers.waits``: from the trace's ``cuda_sync`` records where it has
  them, else from its timing):
  - a call that blocked the CPU until GPU work finished (``host_waits``: a synchronisation, or a
    copy to pageable memory) is not CPU time: the host node after it depends on the GPU event it
    waited for, so a faster or slower GPU in a what-if moves the thread's later work;
  - a GPU event waits for the events of other streams it waited for (``gpu_waits``: a
    ``cudaStreamWaitEvent``, or a kernel that filled the GPU);
  - a thread that woke from sleep or a wait waits for the other threads' work up to that moment
    (the autograd engine's thread for the main thread's ``backward()``, the main thread for the
    end of the backward pass);
  - a collective takes its last-arriving member's duration (``_common._last_arrivals``): the
    others' include their wait for it (where members are missing, the last present one's, which
    includes its wait for them).
  Nodes are added in start order, a valid execution order.
* **Steps**: ``ProfilerStep#N`` annotations become ``metadata["steps"]``: ``[{name, rank,
  start_s, duration_s}]`` (times relative to the first event of the file).

Not handled: a thread's own untraced work that is not inside an annotation (it counts as sleep);
GPU-side ``gpu_user_annotation`` ranges, python_function events and CUDA graph launches are ignored.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from recsim.errors import TraceError
from recsim.graph.ir import Collective, CollectiveOp, Compute, ExecutionGraph, Host, Op, Stream, Transfer
from recsim.graph.readers import recsim_timeline, register
from recsim.graph.readers._common import (
    MAX_ELEMENTS,
    LaneMap,
    Pending,
    PendingGraph,
    assign_ranks,
    bad_extent,
    check_world,
    collective_from_label,
    collective_op,
    contiguous_group,
    distributed_info,
    dtype_bytes,
    dtype_name,
    gemm_flops,
    gemm_math_dtype,
    kernel_category,
    op_category,
    parse_int_list,
    split_bytes,
    world_metadata,
)
from recsim.graph.readers.waits import SyncWaits, gpu_waits, host_waits, sync_waits

_HOST_CATS = {
    "cpu_op": 1,
    "operator": 1,
    "user_annotation": 0,
    "cuda_runtime": 2,
    "cuda_driver": 2,
    "runtime": 2,
}
_GPU_CATS = {
    "kernel": "kernel",
    "gpu_memcpy": "memcpy",
    "memcpy": "memcpy",
    "gpu_memset": "memset",
    "memset": "memset",
}
_FLOW_CATS = {"ac2g", "async_cpu_to_gpu"}
_SYNC_CAT = "cuda_sync"  # CUPTI synchronisation records (``recsim.graph.readers.waits``)
# The arguments that identify things (streams, calls, events): numbers or strings, keys of maps.
_ID_ARGS = (
    "correlation",
    "stream",
    "External id",
    "wait_on_stream",
    "wait_on_cuda_event_record_corr_id",
    "Record function id",
)
_KNOWN_CATS = frozenset(_HOST_CATS) | frozenset(_GPU_CATS) | _FLOW_CATS | {_SYNC_CAT}
_EPS_US = 1e-3  # one nanosecond: timestamps are microseconds with at most ns precision
# Timestamps from here on cannot hold whole microseconds (a double's spacing exceeds 1 us); real
# traces count from the epoch (1.7e15 us, spacing 0.25 us) or from boot (4e12 us).
_MAX_TS_US = 2.0**53


@dataclass(slots=True, eq=False)
class KEvent:
    """One complete (``X``) event; ``parent`` is the enclosing event on the same CPU thread."""

    name: str
    cat: str
    pid: Any
    tid: Any
    ts: float
    dur: float
    args: dict[str, Any]
    parent: KEvent | None = None

    @property
    def end(self) -> float:
        return self.ts + self.dur

    def ancestors(self) -> list[KEvent]:
        out = []
        cur = self.parent
        while cur is not None:
            out.append(cur)
            cur = cur.parent
        return out


@dataclass
class KinetoTrace:
    """A parsed Kineto file: host threads (events sorted, nested), GPU events with their launches."""

    path: Path
    rank_hint: int | None
    world_hint: int | None
    threads: dict[tuple[Any, Any], list[KEvent]]
    gpu: list[KEvent]
    launch: dict[int, KEvent]  # id(gpu event) -> the cuda_runtime event that launched it
    steps: list[KEvent]
    origin_us: float
    notes: list[str] = field(default_factory=list)
    # The GPU it ran on, from ``deviceProperties`` (``device_properties``), if recorded.
    device: dict[str, Any] | None = None
    # The ``cuda_sync`` records, and the runtime calls by correlation id (``waits``).
    syncs: list[KEvent] = field(default_factory=list)
    calls: dict[Any, KEvent] = field(default_factory=dict)


#: The name of an event that has none.
UNNAMED = "<unnamed>"


def is_kineto_document(data: Any) -> bool:
    """A Chrome trace: the object form (``{"traceEvents": [...]}``) or the array form, a bare list
    of events, which ``parse_kineto`` reads too (told by its first item, an event with a ``ph``)."""
    if isinstance(data, list):
        return bool(data) and isinstance(data[0], dict) and "ph" in data[0]
    return isinstance(data, dict) and isinstance(data.get("traceEvents"), list)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def parse_kineto(path: Path, data: Any) -> KinetoTrace:
    """Parse a Kineto document; one-line ``TraceError`` when it is not one."""
    if isinstance(data, list):
        events_raw: list[Any] = data
        top: dict[str, Any] = {}
    elif is_kineto_document(data):
        if recsim_timeline(data):
            # recsim's own timeline (``otherData.recsim``) among the inputs, where the reader
            # checks only the first file (a tester's find: it was read as one more rank).
            raise TraceError(
                f"{path}: a Chrome timeline written by recsim (a simulated schedule, not a profile); "
                "leave it out of the traces"
            )
        events_raw = data["traceEvents"]
        top = data
    else:
        raise TraceError(f"{path}: not a Kineto/Chrome trace (no 'traceEvents' list)")
    threads: dict[tuple[Any, Any], list[KEvent]] = defaultdict(list)
    gpu: list[KEvent] = []
    syncs: list[KEvent] = []
    no_dur = 0
    # Events skipped or renamed for a missing field, said in the notes (and in the error when
    # nothing is left: "holds no operations" alone did not say why).
    no_cat = no_ph = no_name = 0
    runtime_by_corr: dict[Any, KEvent] = {}
    flow_events: list[dict[str, Any]] = []
    origin = math.inf
    for index, raw in enumerate(events_raw):
        if not isinstance(raw, dict):
            raise TraceError(f"{path}: traceEvents[{index}] is not an object")
        cat = raw.get("cat")
        if cat is not None and not isinstance(cat, str):
            # A list or object is not hashable: the lookup below raised a TypeError (a tester's find).
            raise TraceError(
                f"{path}: traceEvents[{index}] ({raw.get('name')!r}): 'cat' is not a string: {cat!r}"
            )
        if cat not in _KNOWN_CATS:
            if cat is None and raw.get("ph") == "X":
                no_cat += 1  # work without a category (metadata events have none: not counted)
            cat = cat.lower() if isinstance(cat, str) else ""
            if cat not in _KNOWN_CATS:
                continue
        ph = raw.get("ph")
        if ph is None:
            no_ph += 1
            continue
        if cat in _FLOW_CATS:
            if ph in ("s", "f", "t"):
                flow_events.append(raw)  # only needed for GPU events without a correlation id
            continue
        if ph != "X":
            continue
        ts = raw.get("ts")
        if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not math.isfinite(ts):
            raise TraceError(f"{path}: traceEvents[{index}] ({raw.get('name')!r}) has no numeric 'ts'")
        if abs(ts) >= _MAX_TS_US:
            # Past 2^53 a double's spacing is over a microsecond (at 1e300, 1e284 us): events
            # microseconds apart get one start, and the steps' and kernels' times are lost.
            raise TraceError(
                f"{path}: traceEvents[{index}] ({raw.get('name')!r}): 'ts' {ts!r} is past 2^53 us "
                f"(285 years): a timestamp there cannot hold microseconds (spacing {math.ulp(ts):.3g} us)"
            )
        if "dur" not in raw and cat != _SYNC_CAT:
            no_dur += 1  # a complete event without its length: taken as 0, and said so
        dur = raw.get("dur", 0.0)
        if (
            not isinstance(dur, (int, float))
            or isinstance(dur, bool)
            or not dur >= 0
            or not math.isfinite(dur)
        ):
            raise TraceError(
                f"{path}: traceEvents[{index}] ({raw.get('name')!r}) has a bad 'dur' {raw.get('dur')!r}"
            )
        if dur >= _MAX_TS_US:
            # As for 'ts': a length past 285 years is a corrupt field, and a replay of it
            # predicted a step of 2.8e290 h without a word (a helper's find).
            raise TraceError(
                f"{path}: traceEvents[{index}] ({raw.get('name')!r}): 'dur' {dur!r} is past 2^53 us "
                "(285 years): no recorded operation lasts that long (a corrupt field?)"
            )
        args = raw.get("args")
        if not isinstance(args, dict):
            args = {}
        for where, value in (
            ("pid", raw.get("pid")),
            ("tid", raw.get("tid")),
            *((f"args.{k}", args.get(k)) for k in _ID_ARGS if k in args),
        ):
            if value is not None and not isinstance(value, (int, float, str)):
                raise TraceError(
                    f"{path}: traceEvents[{index}] ({raw.get('name')!r}): {where} is not a number or "
                    f"a string: {value!r}"
                )
        _check_sizes(path, index, raw.get("name"), args)
        name = raw.get("name")
        if name is None or name == "":
            no_name += 1
            name = UNNAMED
        event = KEvent(str(name), cat, raw.get("pid"), raw.get("tid"), float(ts), float(dur), args)
        if cat == _SYNC_CAT:
            syncs.append(event)  # not work: when it ran is the runtime call's business
            continue
        if ts < origin:
            origin = ts
        if cat in _GPU_CATS:
            gpu.append(event)
        else:
            threads[(event.pid, event.tid)].append(event)
            if _HOST_CATS[cat] == 2 and "correlation" in args:
                runtime_by_corr[args["correlation"]] = event
    marks: dict[tuple[Any, Any], list[KEvent]] = {}
    for thread, events in threads.items():
        events.sort(key=lambda e: (e.ts, -e.dur, _HOST_CATS[e.cat]))
        _nest(events)
        found = [e for e in events if e.name.startswith("ProfilerStep#")]
        if found:
            marks[thread] = found
    steps, step_notes = _profiler_steps(marks)
    gpu.sort(key=lambda e: e.ts)
    launch: dict[int, KEvent] = {}
    unlinked: list[KEvent] = []
    for event in gpu:
        corr = event.args.get("correlation")
        runtime = runtime_by_corr.get(corr) if corr is not None else None
        if runtime is not None:
            launch[id(event)] = runtime
        else:
            unlinked.append(event)
    missing = 0
    if unlinked:
        flow_starts = _flow_launches(_flows(flow_events), threads)
        for event in unlinked:
            runtime = flow_starts.get((event.pid, event.tid, event.ts))
            if runtime is not None:
                launch[id(event)] = runtime
            else:
                missing += 1
    rank, world = distributed_info(path, top.get("distributedInfo"))
    trace = KinetoTrace(
        path,
        rank,
        world,
        dict(threads),
        gpu,
        launch,
        steps,
        origin if math.isfinite(origin) else 0.0,
        device=device_properties(top.get("deviceProperties")),
        syncs=syncs,
        calls=runtime_by_corr,
    )
    trace.notes.extend(step_notes)
    if missing:
        # Said with what it does to the replay: a GPU-only profile (CUDA activities alone) replayed
        # to 0.3 ms of a 2.1 ms span, its kernels run back to back, and the note did not say why.
        trace.notes.append(
            f"{missing} GPU events without a recorded launch (no correlation or flow): each waits "
            "only for the work before it on its CUDA stream, so the replay may run it earlier than "
            "recorded (the idle time before it is not kept)"
        )
    if no_dur:
        trace.notes.append(f"{no_dur} complete ('X') events without a 'dur', taken as 0 long")
    if no_cat:
        trace.notes.append(f"{no_cat} complete ('X') events without a 'cat' (category), skipped")
    if no_ph:
        trace.notes.append(f"{no_ph} events of a known category without a 'ph' (phase), skipped")
    if no_name:
        trace.notes.append(f"{no_name} events without a 'name', named {UNNAMED!r}")
    return trace


def _profiler_steps(marks: Mapping[tuple[Any, Any], list[KEvent]]) -> tuple[list[KEvent], list[str]]:
    """The steps of a trace from its ``ProfilerStep#N`` markers per thread, and notes on those left
    out: one thread's markers count (the thread with the most, the first of them at a tie; a
    second thread's would count its steps again), a marker nested in another is part of that
    step, and a marker of no length marks no step (its recorded step read as 0 s)."""
    notes: list[str] = []
    kept: dict[tuple[Any, Any], list[KEvent]] = {}
    nested = empty = 0
    for thread, found in marks.items():
        outer = [e for e in found if not any(a.name.startswith("ProfilerStep#") for a in e.ancestors())]
        nested += len(found) - len(outer)
        timed = [e for e in outer if e.dur > 0]
        empty += len(outer) - len(timed)
        if timed:
            kept[thread] = timed
    if nested:
        notes.append(f"{_markers(nested)} inside another step's, left out: part of that step")
    if empty:
        notes.append(
            f"{_markers(empty)} of no length, left out: they time no step"
            + ("; the whole trace is taken as the step" if not kept else "")
        )
    if len(kept) > 1:
        thread = max(kept, key=lambda t: len(kept[t]))  # the first of the most (max keeps the first)
        others = sum(len(v) for t, v in kept.items() if t != thread)
        notes.append(
            f"ProfilerStep markers on {len(kept)} threads: thread {thread[1]}'s (pid {thread[0]}) "
            f"{len(kept[thread])} are the steps, {_markers(others)} of the other threads left out "
            "(they would count the steps again)"
        )
        kept = {thread: kept[thread]}
    steps = [e for found in kept.values() for e in found]
    return sorted(steps, key=lambda e: e.ts), notes


def _markers(count: int) -> str:
    return f"{count} ProfilerStep marker{'' if count == 1 else 's'}"


def _check_sizes(path: Path, index: int, name: Any, args: dict[str, Any]) -> None:
    """One-line ``TraceError`` for an event's sizes no real run has: a tensor of a negative
    dimension or more elements than memory holds (``Input Dims``), such a message (``In msg nelems``
    / ``Out msg nelems``), or a process group whose ``Process Group Ranks`` is cut off or disagrees
    with its ``Group size`` (costed as they were, they gave steps of 10^13 s, or groups of ranks
    the job does not have)."""
    where = f"{path}: traceEvents[{index}] ({name!r})"
    dims = args.get("Input Dims")
    if isinstance(dims, list):
        for j, shape in enumerate(dims):
            if isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
                why = bad_extent(shape)
                if why is not None:
                    raise TraceError(f"{where}: args.Input Dims[{j}] {shape} is not a tensor's shape: {why}")
    for key in ("In msg nelems", "Out msg nelems"):
        count = _number(args.get(key))
        if count is not None and not 0 <= count <= MAX_ELEMENTS:
            raise TraceError(
                f"{where}: args.{key} {args[key]!r}: expected a count of elements from 0 to 2^48"
            )
    text = args.get("Process Group Ranks")
    if isinstance(text, str) and text.strip() not in ("", "[]") and "..." not in text:
        ranks = parse_int_list(text)
        if ranks is None:
            raise TraceError(
                f"{where}: args.Process Group Ranks {text!r}: expected a list of ranks like '[0, 1]'"
            )
        size = args.get("Group size")
        if isinstance(size, int) and not isinstance(size, bool) and size != len(ranks):
            raise TraceError(
                f"{where}: args.Process Group Ranks {text!r} names {len(ranks)} ranks, "
                f"its Group size is {size}"
            )


def device_properties(raw: Any) -> dict[str, Any] | None:
    """The recording GPU from a trace's ``deviceProperties`` (its first device: a rank's process
    records the GPUs it sees, its own first): ``{name, memory_bytes, compute_capability}``, or None
    when the trace has none or they are malformed. A GPU named without its compute capability or
    memory keeps its name, with None for those (the replay says it does not know it)."""
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], dict):
        return None
    first = raw[0]
    name, memory = first.get("name"), first.get("totalGlobalMem")
    major, minor = first.get("computeMajor"), first.get("computeMinor")
    if not isinstance(name, str):
        return None
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (memory, major, minor)):
        known = isinstance(memory, int) and not isinstance(memory, bool)
        return {"name": name, "memory_bytes": float(memory) if known else None, "compute_capability": None}
    return {"name": name, "memory_bytes": float(memory), "compute_capability": f"{major}.{minor}"}


def trace_device(traces: Sequence[KinetoTrace]) -> dict[str, Any] | None:
    """The device the traces recorded (the first that names one). Files that name two GPU models
    are a ``TraceError`` naming both: a re-estimate reads every rank's durations as one GPU's, so
    the second model's were read as the first's (a tester's find)."""
    named = [t for t in traces if t.device is not None]
    for trace in named[1:]:
        first, other = named[0].device, trace.device
        assert first is not None and other is not None  # for the type checker
        if other.get("name") != first.get("name"):
            raise TraceError(
                f"{trace.path}: recorded on {other.get('name')!r}, {named[0].path} on "
                f"{first.get('name')!r}: a replay reads all ranks' durations as one GPU's; give the "
                "traces of one GPU model"
            )
    return named[0].device if named else None


def unmarked_notes(marked: Sequence[tuple[int, Path, bool]]) -> list[str]:
    """Notes on the rank files without a ``ProfilerStep`` mark where other ranks' files have some
    (``marked``: rank, file, whether it marks steps): the recorded step is the marked ranks' mean
    and the predicted one their steps' span, so those ranks' files count in neither (said, as they
    silently dropped out of the mean; a tester's find)."""
    if not any(has for _, _, has in marked):
        return []
    return [
        f"rank {rank}: {path} marks no profiler steps (ProfilerStep#N): the step times are the other ranks'"
        for rank, path, has in sorted(marked)
        if not has
    ]


def _flows(raw_events: list[dict[str, Any]]) -> dict[Any, list[tuple[str, Any, Any, float]]]:
    flows: dict[Any, list[tuple[str, Any, Any, float]]] = defaultdict(list)
    for raw in raw_events:
        ts = _number(raw.get("ts"))
        if ts is not None:
            flows[raw.get("id")].append((raw["ph"], raw.get("pid"), raw.get("tid"), ts))
    return flows


def _nest(events: list[KEvent]) -> None:
    """Set ``parent`` on events of one thread sorted by (start, -duration)."""
    stack: list[KEvent] = []
    for event in events:
        while stack and stack[-1].end <= event.ts + _EPS_US:
            stack.pop()
        event.parent = stack[-1] if stack else None
        stack.append(event)


def _flow_launches(
    flows: dict[Any, list[tuple[str, Any, Any, float]]], threads: dict[tuple[Any, Any], list[KEvent]]
) -> dict[tuple[Any, Any, float], KEvent]:
    """GPU (pid, tid, ts) -> launching runtime event, from ac2g flows (traces without ``correlation``)."""
    out: dict[tuple[Any, Any, float], KEvent] = {}
    starts: dict[tuple[Any, Any], list[float]] = {k: [e.ts for e in v] for k, v in threads.items()}
    for points in flows.values():
        host = [p for p in points if (p[1], p[2]) in threads]
        device = [p for p in points if (p[1], p[2]) not in threads]
        if not host or not device:
            continue
        _, pid, tid, ts = host[0]
        events = threads[(pid, tid)]
        i = bisect.bisect_right(starts[(pid, tid)], ts + _EPS_US) - 1
        while i >= 0 and events[i].cat not in ("cuda_runtime", "cuda_driver", "runtime"):
            i -= 1
        if i >= 0:
            for _, dpid, dtid, dts in device:
                out[(dpid, dtid, dts)] = events[i]
    return out


# -- helpers shared with the ET join ---------------------------------------------------------------


def launching_op(runtime: KEvent | None) -> KEvent | None:
    """The innermost ``cpu_op`` around a runtime call (None for launches outside any operator)."""
    cur = runtime.parent if runtime is not None else None
    while cur is not None:
        if cur.cat in ("cpu_op", "operator") and not cur.name.startswith("ProfilerStep#"):
            return cur
        cur = cur.parent
    return None


def input_shapes(op: KEvent | None) -> tuple[tuple[int, ...], ...]:
    """Tensor shapes from a CPU op's ``Input Dims`` (scalars and lists of tensors left out)."""
    if op is None:
        return ()
    dims = op.args.get("Input Dims")
    if not isinstance(dims, list):
        return ()
    return tuple(
        tuple(int(d) for d in s)
        for s in dims
        if isinstance(s, list) and s and all(isinstance(d, int) and not isinstance(d, bool) for d in s)
    )


def gpu_stream(event: KEvent) -> tuple[Stream, Any]:
    """The stream class of a GPU event and its CUDA stream id."""
    stream_id = event.args.get("stream", event.tid)
    if "nccl" in event.name.lower():
        return Stream.COMM, stream_id
    if _GPU_CATS[event.cat] == "memcpy":
        return Stream.COPY, stream_id
    return Stream.COMPUTE, stream_id


def _memcpy_tiers(name: str) -> tuple[str, str]:
    for tag, tiers in (("HtoD", ("host", "hbm")), ("DtoH", ("hbm", "host")), ("DtoD", ("hbm", "hbm"))):
        if tag in name:
            return tiers
    if "PtoP" in name:
        return "hbm", "peer"
    if "HtoH" in name:
        return "host", "host"
    return "hbm", "hbm"


#: ``Collective name`` values (c10d's, ``ProcessGroupNCCL``) of the collectives recsim has no op
#: for: rooted gather and scatter, as in ``_common.collective_op`` and the Chakra reader.
_UNMODELLED = frozenset({"gather", "scatter"})


@dataclass(slots=True)
class CollectiveGuess:
    op: CollectiveOp
    bytes: float
    out_bytes: float
    dtype: str
    group: tuple[int, ...]
    pg: str
    in_split: list[int] | None
    out_split: list[int] | None


def nccl_collective(event: KEvent, runtime: KEvent | None, rank: int, world: int) -> CollectiveGuess | None:
    """What a NCCL kernel does: its own args first, then the ``nccl:*`` annotation around its launch."""
    args = event.args
    label = args.get("Collective name")
    op = collective_from_label(str(label)) if label else None
    if op is None and isinstance(label, str) and label.strip("_").lower() in _UNMODELLED:
        # Named a gather or scatter, which NCCL runs as grouped sends and receives: the kernel's
        # name (SendRecv) would make it an all-to-all of its bytes (a tester's find). It stays a
        # communication kernel with its recorded time, as the Chakra reader keeps GATHER/SCATTER.
        return None
    annotation = None
    for anc in runtime.ancestors() if runtime is not None else []:
        if anc.name.startswith("nccl:"):
            annotation = anc
            break
    if op is None and annotation is not None:
        op = collective_op(annotation.name)
    if op is None:
        op = collective_op(event.name)
    if op is None:
        return None
    dtype_text = args.get("dtype")
    size = dtype_bytes(dtype_text) if isinstance(dtype_text, str) else None
    nelems_in = _number(args.get("In msg nelems"))
    nelems_out = _number(args.get("Out msg nelems"))
    if nelems_in is not None and size:
        in_bytes = nelems_in * size
        out_bytes = (nelems_out if nelems_out is not None else nelems_in) * size
        dtype = dtype_name(dtype_text)
    elif annotation is not None:
        dims = input_shapes(annotation)
        types = annotation.args.get("Input type")
        first_type = types[0] if isinstance(types, list) and types and isinstance(types[0], str) else None
        elem = dtype_bytes(first_type) or 4
        in_bytes = float(sum(math.prod(d) for d in dims) * elem)
        out_bytes = in_bytes
        dtype = dtype_name(first_type)
    else:
        in_bytes = out_bytes = 0.0
        dtype = "fp32"
    ranks = parse_int_list(args.get("Process Group Ranks"))
    group_size = args.get("Group size")
    if ranks and rank in ranks:
        group = tuple(ranks)
    else:
        group = contiguous_group(rank, group_size if isinstance(group_size, int) else world, world)
    pg = str(args.get("Process Group Name", "")) or (
        "world" if len(group) == world else f"g{group[0]}-{group[-1]}"
    )
    return CollectiveGuess(
        op,
        in_bytes,
        out_bytes,
        dtype,
        group,
        pg,
        parse_int_list(args.get("In split size")),
        parse_int_list(args.get("Out split size")),
    )


def make_collective(guess: CollectiveGuess, key: str) -> Collective:
    send = recv = None
    if guess.op is CollectiveOp.ALL_TO_ALL:
        send = split_bytes(guess.bytes, guess.in_split, len(guess.group))
        recv = split_bytes(guess.out_bytes, guess.out_split, len(guess.group))
        if (send is None) != (recv is None):
            n = len(guess.group)
            send = send or tuple(guess.bytes / n for _ in guess.group)
            recv = recv or tuple(guess.out_bytes / n for _ in guess.group)
    return Collective(
        op=guess.op,
        key=key,
        group=guess.group,
        bytes=guess.bytes,
        dtype=guess.dtype,
        send_bytes=send,
        recv_bytes=recv,
    )


def gpu_op(event: KEvent, runtime: KEvent | None, flops: float = 0.0) -> Op:
    """The op of a non-NCCL GPU event."""
    kind = _GPU_CATS[event.cat]
    nbytes = _number(event.args.get("bytes")) or 0.0
    if kind == "memcpy":
        src, dst = _memcpy_tiers(event.name)
        return Transfer(src=src, dst=dst, bytes=nbytes)
    if kind == "memset":
        return Compute(op=event.name, bytes_written=nbytes, category="memory")
    owner = launching_op(runtime)
    types = owner.args.get("Input type") if owner is not None else None
    first_type = (
        next((t for t in types if isinstance(t, str) and t), None) if isinstance(types, list) else None
    )
    category = kernel_category(event.name)
    dtype = dtype_name(first_type)
    return Compute(
        op=event.name,
        flops=flops,
        dtype=gemm_math_dtype(event.name, dtype) if category == "gemm" else dtype,
        shapes=input_shapes(owner),
        category=category,
    )


def steps_metadata(
    trace: KinetoTrace, rank: int, steps: Sequence[KEvent] | None = None
) -> list[dict[str, Any]]:
    """``metadata["steps"]`` entries of ``steps`` (default: all of the trace's profiler steps)."""
    return [
        {
            "name": s.name,
            "rank": rank,
            "start_s": (s.ts - trace.origin_us) * 1e-6,
            "duration_s": s.dur * 1e-6,
        }
        for s in (trace.steps if steps is None else steps)
    ]


# -- the graph of one Kineto file ------------------------------------------------------------------


@dataclass(slots=True)
class Segment:
    """A stretch of one CPU thread's busy time (us), ending where ``launch`` issued GPU work if it
    did; ``wait``: the GPU event the thread blocked on just before it (see ``host_waits``)."""

    start: float
    end: float
    name: str
    launch: KEvent | None
    wait: KEvent | None = None


# A CPU thread is busy through a gap between its traced events shorter than this: untraced work
# (the autograd engine between the backward operators, Python between calls), not sleep. On the
# reference recsys trace the autograd thread's 4,305 gaps inside the backward pass are all under
# 50 us (4,066 under 10 us), the next one 28 ms (it sleeps through the forward pass); a thread
# that polls CUDA events sleeps 50 us and more between polls.
_IDLE_US = 50.0


@dataclass(slots=True)
class ThreadSegments:
    """One CPU thread's segments; ``after[i]``: (thread, segment index) of the other threads'
    segments segment ``i`` waits for (a thread that woke up was woken by the threads then busy)."""

    thread: tuple[Any, Any]
    segments: list[Segment]
    after: dict[int, list[tuple[tuple[Any, Any], int]]]


def host_segments(
    trace: KinetoTrace,
    holes: Mapping[tuple[Any, Any], Sequence[tuple[float, float]]] | None = None,
    waits: Mapping[int, KEvent] | None = None,
) -> list[ThreadSegments]:
    """Each CPU thread's busy time cut at its kernel launches (see the module docstring), threads
    in the order of their first event. ``holes``: per thread, intervals (us) that other nodes
    already account for (none of them contains a launch); they are left out of the segments.
    ``waits`` (``host_waits``): the time a call spent blocked is left out too, and the segment after
    it waits for the GPU event instead.

    What a thread does between its traced calls is read from the timing too. A gap shorter than
    ``_IDLE_US`` is its own untraced work (the autograd engine between operators, Python between
    calls). A longer one is sleep, unless it lies inside one of the thread's ``record_function``
    annotations and the other threads were busy for less than half of it (``_WAITING``): then it
    is the thread's own Python work. A thread that starts work after sleeping (the autograd
    engine's device thread at ``backward()``, the main thread when the backward pass is done) was
    woken by another: the trace does not say which, so it waits for the other threads' work up to
    that moment (their latest segment that ended by then; a thread busy at that moment is cut
    there)."""
    launching = {id(r) for r in (trace.launch.get(id(e)) for e in trace.gpu) if r is not None}
    waits = waits or {}
    threads = sorted(trace.threads.items(), key=lambda kv: kv[1][0].ts)
    traced = {
        thread: _blocks([e for e in events if e.cat != "user_annotation"]) for thread, events in threads
    }
    # What each thread is seen doing in the traced calls, less its waits on the GPU (a thread
    # blocked in a synchronisation is not at work for the others' annotated gaps' sake).
    gaps = {thread: _wait_gaps(events, waits) for thread, events in threads}
    working = {
        thread: [(p.start, p.end) for p in _minus(bl, gaps[thread])] if gaps[thread] else bl
        for thread, bl in traced.items()
    }
    blocks = {
        thread: _fill(
            traced[thread],
            _blocks([e for e in events if e.cat == "user_annotation"], 0.0),
            [b for other, bl in working.items() if other != thread for b in bl],
        )
        for thread, events in threads
    }
    blocks = {thread: [b for b in bl if b[1] - b[0] > _EPS_US] for thread, bl in blocks.items()}
    cuts: dict[tuple[Any, Any], list[float]] = defaultdict(list)
    for woken, periods in blocks.items():
        for start, _ in periods:
            for other, bl in blocks.items():
                if other != woken and _inside(bl, start):
                    cuts[other].append(start)
    out: list[ThreadSegments] = []
    for thread, events in threads:
        left_out = [(a, b, None) for a, b in (holes or {}).get(thread, ())] + gaps[thread]
        launches = [e for e in events if id(e) in launching]
        segs = _segments(events, blocks[thread], launches, left_out, waits, sorted(set(cuts[thread])))
        # A block that opens with time left out (a CPU-only op of the ET join, a wait) gets a
        # segment of no length at its start, to carry what woke the thread: the op after it then
        # waits for that too.
        starts = [seg.start for seg in segs]
        event_starts = [e.ts for e in events]
        for t, _ in reversed(blocks[thread]):
            i = bisect.bisect_left(starts, t - _EPS_US)
            if i == len(segs) or segs[i].start > t + _EPS_US:
                segs.insert(i, Segment(t, t, _innermost_name(events, event_starts, t), None))
                starts.insert(i, t)
        out.append(ThreadSegments(thread, segs, {}))
    ends = {ts.thread: [seg.end for seg in ts.segments] for ts in out}
    for ts in out:
        starts = [seg.start for seg in ts.segments]
        for t, _ in blocks[ts.thread]:
            i = bisect.bisect_left(starts, t - _EPS_US)
            if i == len(starts):
                continue
            for other, other_ends in ends.items():
                j = bisect.bisect_right(other_ends, t + _EPS_US) - 1
                if other != ts.thread and j >= 0:
                    ts.after.setdefault(i, []).append((other, j))
    return out


def _wait_gaps(events: list[KEvent], waits: Mapping[int, KEvent]) -> list[tuple[float, float, KEvent | None]]:
    """The time each of a thread's blocking calls spent waiting on the GPU (``host_waits``), with
    the GPU event it waited for."""
    out: list[tuple[float, float, KEvent | None]] = []
    for call in events:
        gpu = waits.get(id(call))
        if gpu is not None:
            out.append((call.ts, min(max(gpu.end, call.ts), call.end), gpu))
    return out


def segment_pending(
    rank: int,
    timeline: ThreadSegments,
    index: int,
    origin_us: float,
    lane: int,
    queue: Hashable,
    waited: Hashable | None,
) -> Pending:
    """The host node of segment ``index`` of ``timeline`` (key ``("host", rank, thread, index)``),
    depending on ``waited`` (the node of the GPU event it waited for, if any) and on the other
    threads' segments that woke it."""
    seg = timeline.segments[index]
    deps: list[Hashable] = [waited] if waited is not None else []
    deps += [("host", rank, other, j) for other, j in timeline.after.get(index, ())]
    return Pending(
        key=("host", rank, timeline.thread, index),
        rank=rank,
        name=seg.name,
        stream=Stream.HOST,
        op=Host(op=seg.name),
        deps=deps,
        lane=lane,
        queue=queue,
        duration_s=(seg.end - seg.start) * 1e-6,
        start_s=(seg.start - origin_us) * 1e-6,
    )


def _blocks(events: list[KEvent], through_us: float = _IDLE_US) -> list[tuple[float, float]]:
    """The union of ``events`` (sorted by start) through gaps shorter than ``through_us``."""
    blocks: list[tuple[float, float]] = []
    for e in events:
        if blocks and e.ts < blocks[-1][1] + max(through_us, _EPS_US):
            if e.end > blocks[-1][1]:
                blocks[-1] = (blocks[-1][0], e.end)
        else:
            blocks.append((e.ts, e.end))
    return blocks


# An annotated gap in a thread's calls during which the other threads were busy for at least this
# share of the time is a wait for them. On the reference traces the two kinds do not mix: the main
# thread's gaps inside ``## backward ##`` (the autograd thread at work) are 71-100 % covered, its
# Python gaps (216 of 50 us or more in the recsys trace) 0-2 %.
_WAITING = 0.5


def _fill(
    blocks: list[tuple[float, float]],
    annotated: list[tuple[float, float]],
    others: list[tuple[float, float]],
) -> list[tuple[float, float]]:
    """``blocks`` joined across the gaps that are the thread's own annotated work (``_WAITING``)."""
    # An annotation's edges count as points of work, so that its time before the first call in it
    # and after the last is judged as a gap between calls is.
    blocks = sorted([*blocks, *((a, a) for a, _ in annotated), *((b, b) for _, b in annotated)])
    if not blocks:
        return []
    union: list[tuple[float, float]] = []
    for a, b in sorted(others):
        if union and a <= union[-1][1]:
            union[-1] = (union[-1][0], max(union[-1][1], b))
        else:
            union.append((a, b))
    out = [blocks[0]]
    for start, end in blocks[1:]:
        if start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
            continue
        gap = (out[-1][1], start)
        inside = any(a <= gap[0] + _EPS_US and gap[1] <= b + _EPS_US for a, b in annotated)
        if inside and _covered(union, *gap) < _WAITING * (gap[1] - gap[0]):
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _covered(periods: list[tuple[float, float]], start: float, end: float) -> float:
    """How long ``periods`` (sorted, disjoint) cover [start, end]."""
    total = 0.0
    i = max(bisect.bisect_right(periods, (start, math.inf)) - 1, 0)
    while i < len(periods) and periods[i][0] < end:
        total += max(0.0, min(periods[i][1], end) - max(periods[i][0], start))
        i += 1
    return total


def _inside(blocks: list[tuple[float, float]], t: float) -> bool:
    i = bisect.bisect_right(blocks, (t, math.inf)) - 1
    return i >= 0 and blocks[i][0] + _EPS_US < t < blocks[i][1] - _EPS_US


@dataclass(slots=True)
class _Piece:
    start: float
    end: float
    wait: KEvent | None


def _minus(
    blocks: list[tuple[float, float]], gaps: Sequence[tuple[float, float, KEvent | None]]
) -> list[_Piece]:
    """The parts of ``blocks`` (sorted, disjoint) outside ``gaps``, each longer than ``_EPS_US``;
    a part after a gap that is a wait (its third item) carries it (to the next part if none is
    left in its block)."""
    out: list[_Piece] = []
    ordered = sorted(gaps, key=lambda g: (g[0], g[1]))
    hi = 0
    wait: KEvent | None = None
    for start, end in blocks:
        cur = start
        while hi < len(ordered) and ordered[hi][1] <= cur:
            wait = ordered[hi][2] or wait
            hi += 1
        j = hi
        while j < len(ordered) and ordered[j][0] < end:
            g_start, g_end, g_wait = ordered[j]
            if g_start > cur + _EPS_US:
                out.append(_Piece(cur, g_start, wait))
                wait = None
            if g_end > cur:
                cur = g_end
                wait = g_wait or wait
            j += 1
        hi = j
        if end > cur + _EPS_US:
            out.append(_Piece(cur, end, wait))
            wait = None
    return out


def _segments(
    events: list[KEvent],
    blocks: list[tuple[float, float]],
    launches: list[KEvent],
    gaps: Sequence[tuple[float, float, KEvent | None]] = (),
    waits: Mapping[int, KEvent] | None = None,
    cuts: Sequence[float] = (),
) -> list[Segment]:
    """Cut a thread's busy ``blocks`` at each launch and at ``cuts`` (see module docstring), less
    ``gaps``."""
    segments: list[Segment] = []
    starts = [e.ts for e in events]
    pieces = _minus(blocks, gaps) if gaps else [_Piece(a, b, None) for a, b in blocks]
    waits = waits or {}

    def issued(runtime: KEvent) -> float:
        # A call that blocked until its own copy was done issued it when it was called.
        return runtime.ts if id(runtime) in waits else runtime.end

    points: list[tuple[float, KEvent | None]] = sorted(
        [(issued(r), r) for r in launches] + [(t, None) for t in cuts], key=lambda p: p[0]
    )
    li = 0
    for piece in pieces:
        cur = piece.start
        wait = piece.wait
        made = False
        while li < len(points) and points[li][0] <= piece.end + _EPS_US:
            at, runtime = points[li]
            li += 1
            if runtime is None and not cur + _EPS_US < at < piece.end - _EPS_US:
                continue  # a cut at a piece's edge (or in a gap) cuts nothing
            cut = max(at, cur)
            if runtime is not None:
                owner = launching_op(runtime)
                name = owner.name if owner is not None else runtime.name
            else:
                name = _innermost_name(events, starts, (cur + cut) / 2)
            segments.append(Segment(cur, cut, name, runtime, wait))
            wait = None
            cur = cut
            made = True
        if piece.end > cur + _EPS_US or not made:
            name = _innermost_name(events, starts, (cur + piece.end) / 2)
            segments.append(Segment(cur, piece.end, name, None, wait))
    return segments


def _innermost_name(events: list[KEvent], starts: list[float], t: float) -> str:
    i = bisect.bisect_right(starts, t) - 1
    if i < 0:
        return events[0].name if events else "host"
    cur: KEvent | None = events[i]
    while cur is not None and cur.end < t:
        cur = cur.parent
    chosen = cur if cur is not None else events[i]
    # Prefer an operator over the runtime call or annotation it sits in.
    op = chosen
    while op is not None and op.cat not in ("cpu_op", "operator"):
        op = op.parent
    return (op or chosen).name


@dataclass(frozen=True)
class TraceWaits:
    """What one file's replay reads as waits (``recsim.graph.readers.waits``), and its CPU threads'
    segments with those waits left out: what the Kineto reader and the ET join both build on."""

    exact: SyncWaits
    host: Mapping[int, KEvent]  # id(runtime call) -> the GPU event it blocked on
    streams: Mapping[int, Sequence[KEvent]]  # id(GPU event) -> the other streams' events it waited for
    timelines: list[ThreadSegments]


def trace_waits(
    trace: KinetoTrace, holes: Mapping[tuple[Any, Any], Sequence[tuple[float, float]]] | None = None
) -> TraceWaits:
    """The waits of ``trace`` and its host segments (``host_segments``, ``holes`` left out)."""
    exact = sync_waits(trace)
    host = host_waits(trace, exact)
    return TraceWaits(exact, host, gpu_waits(trace, host, exact), host_segments(trace, holes, host))


def count_waits(counts: dict[str, float], found: TraceWaits, trace: KinetoTrace) -> None:
    """Add what one file's replay reads as waits to ``counts`` (``metadata["waits"]``): the CPU's
    waits on the GPU (how many, how long blocked, how many named by sync records), the waits
    between streams, and the wake-ups between threads."""
    blocked = math.fsum(
        end - start for events in trace.threads.values() for start, end, _ in _wait_gaps(events, found.host)
    )
    exact = found.exact
    counts["cpu_waits_on_gpu"] = counts.get("cpu_waits_on_gpu", 0) + len(found.host)
    counts["cpu_blocked_s"] = counts.get("cpu_blocked_s", 0.0) + blocked * 1e-6
    counts["from_sync_records"] = (
        counts.get("from_sync_records", 0) + len(exact.host) + sum(len(v) for v in exact.gpu.values())
    )
    counts["stream_waits"] = counts.get("stream_waits", 0) + sum(len(v) for v in found.streams.values())
    counts["thread_wakeups"] = counts.get("thread_wakeups", 0) + sum(
        len(deps) for t in found.timelines for deps in t.after.values()
    )


def kineto_pending(
    trace: KinetoTrace,
    rank: int,
    world: int,
    pending: PendingGraph,
    lanes: LaneMap,
    counts: dict[str, float] | None = None,
) -> None:
    """Add the nodes of one Kineto file (rank ``rank``) to ``pending`` (and its waits to
    ``counts``, ``count_waits``)."""
    origin = trace.origin_us
    segment_of: dict[int, tuple[Any, ...]] = {}  # id(launching runtime event) -> its host node key
    gpu_key = {id(event): ("gpu", rank, index) for index, event in enumerate(trace.gpu)}
    # (start, end, host first at a tie, node): added in start order, so that a GPU event comes after
    # the segment that launched it (which ends by its start) and a segment after a wait after the
    # GPU event it waits for (which ends by its start: the end breaks a tie at a zero-length event).
    nodes: list[tuple[float, float, int, Pending]] = []
    found = trace_waits(trace)
    if counts is not None:
        count_waits(counts, found, trace)
    stream_waits = found.streams
    # Host: one lane per thread, threads in the order of their first event.
    for thread_index, timeline in enumerate(found.timelines):
        for seg_index, seg in enumerate(timeline.segments):
            waited = gpu_key[id(seg.wait)] if seg.wait is not None else None
            queue = ("thread", timeline.thread)
            node = segment_pending(rank, timeline, seg_index, origin, thread_index, queue, waited)
            nodes.append((seg.start, seg.end, 0, node))
            if seg.launch is not None:
                segment_of[id(seg.launch)] = node.key
    ordinal: dict[str, int] = defaultdict(int)
    gemm_seen: set[int] = set()
    for index, event in enumerate(trace.gpu):
        runtime = trace.launch.get(id(event))
        stream, stream_id = gpu_stream(event)
        op: Op | None = None
        if stream is Stream.COMM:
            guess = nccl_collective(event, runtime, rank, world)
            if guess is not None:
                ordinal[guess.pg] += 1
                op = make_collective(guess, f"{guess.pg}/#{ordinal[guess.pg]}")
            else:
                op = Compute(op=event.name, category="communication")
        else:
            flops = 0.0
            owner = launching_op(runtime)
            is_gemm = (
                owner is not None
                and kernel_category(event.name) == "gemm"
                and op_category(owner.name) == "gemm"
            )
            if is_gemm and id(owner) not in gemm_seen:  # a GEMM op's FLOPs go to its first GEMM kernel only
                gemm_seen.add(id(owner))
                flops = gemm_flops(owner.name, input_shapes(owner))
            op = gpu_op(event, runtime, flops)
        segment = segment_of.get(id(runtime)) if runtime is not None else None
        deps = [segment] if segment is not None else []
        deps += [gpu_key[id(other)] for other in stream_waits.get(id(event), ())]
        # A CUDA stream id is per device: the same id on two GPUs of one file (its GPU events' pid
        # is the device) is two in-order queues, so the lane is keyed by both, as the queue is.
        queue = ("cuda", event.pid, stream_id)
        node = Pending(
            key=("gpu", rank, index),
            rank=rank,
            name=event.name,
            stream=stream,
            op=op,
            deps=deps,
            lane=lanes.lane(rank, stream, queue),
            queue=queue,
            duration_s=event.dur * 1e-6,
            start_s=(event.ts - origin) * 1e-6,
        )
        nodes.append((event.ts, event.end, 1, node))
    nodes.sort(key=lambda item: item[:3])
    for *_, node in nodes:
        pending.add(node)


def read_kineto_files(paths: Sequence[Path], datas: Sequence[Any], fmt: str) -> ExecutionGraph:
    traces = [parse_kineto(p, d) for p, d in zip(paths, datas, strict=True)]
    ranks = assign_ranks(list(paths), [t.rank_hint for t in traces])
    check_world(list(paths), ranks, [t.world_hint for t in traces])
    world = max([len(paths), *(r + 1 for r in ranks), *(t.world_hint or 0 for t in traces)])
    pending = PendingGraph()
    lanes = LaneMap()
    steps: list[dict[str, Any]] = []
    notes: list[str] = []
    # A rank's nodes are added in start order (``kineto_pending``), a valid execution order.
    counts: dict[str, float] = {}
    for rank, trace in sorted(zip(ranks, traces, strict=True), key=lambda item: item[0]):
        kineto_pending(trace, rank, world, pending, lanes, counts)
        steps.extend(steps_metadata(trace, rank))
        notes.extend(f"rank {rank}: {n}" for n in trace.notes)
    notes.extend(unmarked_notes([(r, t.path, bool(t.steps)) for r, t in zip(ranks, traces, strict=True)]))
    metadata = world_metadata(world, ranks, fmt, paths)
    metadata["steps"] = steps
    metadata["waits"] = counts
    device = trace_device(traces)
    if device is not None:
        metadata["device"] = device
    if notes:
        metadata["notes"] = notes
    return pending.build(world, metadata)


@register
class KinetoReader:
    name: ClassVar[str] = "kineto"
    description: ClassVar[str] = (
        "Kineto / Chrome trace JSON from torch.profiler (kernels, CPU ops, steps), one file per rank"
    )

    @classmethod
    def sniff(cls, path: Path, data: Any) -> bool:
        return is_kineto_document(data)

    def read(self, paths: Sequence[Path], parsed: dict[Path, Any] | None = None) -> ExecutionGraph:
        from recsim.graph.readers.et_kineto import load_or_join

        datas, joined = load_or_join(paths, parsed)
        return joined if joined is not None else read_kineto_files(paths, datas, self.name)
