"""Reader joining PyTorch execution traces with their Kineto traces: ET structure, Kineto times.

Input: pairs of files, an ET (``pytorch_et``) and the Kineto trace recorded in the same profiling
window, one pair per rank, in any order (ranks are paired by the rank each file declares or spells
in its name, else by the order given). The ET gives what it alone knows: operators, tensors, and
so the data dependencies and collective sizes (see ``pytorch_et``); Kineto gives what it alone
knows: how long each thing took and on which CUDA stream.

Matching an ET node to a Kineto event: ``rf_id`` (ET) == ``args["Record function id"]`` (Kineto
``cpu_op`` / ``user_annotation``). Older traces lack that id; then the nodes are matched by name
in order within each CPU thread (an order-preserving alignment of the two name sequences; each ET
thread is mapped to the Kineto thread it aligns with best), and ``metadata["notes"]`` says so with
the match rate. Kernels are attributed to the ET top-level operator whose (folded) subtree
contains the innermost matched CPU event around the kernel's launch.

Result per top-level ET operator:

* it launched kernels: its duration is the *sum* of its kernels' recorded durations (the GPU time
  it costs; the idle gaps between them are not its work), its start the first kernel's start, and
  its stream the kernels' (NCCL -> ``comm``, only memcpys -> ``copy``, else ``compute``; lane and
  stream order per CUDA stream); it depends on the CPU time up to its first kernel's launch (below);
* no kernels: a ``host`` op lasting its ``cpu_op``'s recorded duration on its thread's lane, even
  when the ET saw CUDA tensors (Kineto shows it launched nothing);
* no Kineto match: kept as the ET alone places it, without a duration.

The rest of each CPU thread's busy time (the operators that launched kernels, and the Python and
runtime time between operators) becomes ``host`` segments cut at kernel launches, as the Kineto
reader cuts a thread (``_HostTime``): a GPU op waits for the CPU to reach its launch, so a trace of
eager PyTorch that is bound by the CPU stays so when its GPU work is re-costed.

Steps: ``metadata["steps"]`` lists only the Kineto profiler steps the ET covers (those in which its
operators launched GPU work, ``_covered_steps``), so the replayed step divides the ET's work by the
steps it came from; a note says so when the Kineto window holds more.

Waits are read from the timing as the Kineto reader reads them: a segment after a call that
blocked on the GPU depends on the op whose kernel it waited for, an op whose first kernel waited
for another stream depends on the op of that kernel, and a thread woken from sleep on the segments
of the threads then busy. Kernels launched outside any matched operator are left out and counted in
a note (a wait for one of them is lost: the segment after it starts when the CPU got there).
"""

from __future__ import annotations

import bisect
import difflib
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from recsim.errors import TraceError, first_few
from recsim.graph.ir import Compute, ExecutionGraph, Host, Stream, Transfer
from recsim.graph.readers import load_documents, register
from recsim.graph.readers._common import (
    LaneMap,
    Pending,
    assign_ranks,
    check_world,
    op_category,
    world_metadata,
)
from recsim.graph.readers.kineto import (
    KEvent,
    KinetoTrace,
    count_waits,
    gpu_stream,
    is_kineto_document,
    parse_kineto,
    segment_pending,
    steps_metadata,
    trace_device,
    trace_waits,
    unmarked_notes,
)
from recsim.graph.readers.pytorch_et import (
    EtNode,
    EtOp,
    EtRank,
    Placement,
    Placer,
    assemble,
    is_et_document,
    read_et_ranks,
)

_ROOT_PREFIX = "[pytorch|profiler|execution_"


def _kineto_ops(trace: KinetoTrace) -> dict[Any, list[KEvent]]:
    """Per CPU thread, the operator and annotation events (what ET nodes can match), in start order."""
    out: dict[Any, list[KEvent]] = {}
    for thread, events in trace.threads.items():
        ops = [e for e in events if e.cat != "cuda_runtime" and e.cat not in ("cuda_driver", "runtime")]
        ops = [e for e in ops if not e.name.startswith("ProfilerStep#")]
        if ops:
            out[thread] = ops
    return out


def _align(et_names: Sequence[str], k_names: Sequence[str]) -> list[tuple[int, int]]:
    """(ET index, Kineto index) pairs of an order-preserving alignment of two name sequences.

    ``difflib``'s matcher anchors on the longest common runs and recurses on both sides, so an
    op missing from one trace (or a Kineto window covering extra steps) costs only the ops around
    it, not the rest of the thread. ``autojunk`` is off: frequent names (``aten::as_strided``) are
    the bulk of the sequence, not noise.
    """
    matcher = difflib.SequenceMatcher(None, list(et_names), list(k_names), autojunk=False)
    return [(a + i, b + i) for a, b, size in matcher.get_matching_blocks() for i in range(size)]


def _match_by_order(et_rank: EtRank, trace: KinetoTrace) -> tuple[dict[int, KEvent], int]:
    """ET node id -> Kineto event by name and order per thread; also the number of ET nodes tried."""
    by_tid: dict[int, list[EtNode]] = defaultdict(list)
    for node in et_rank.trace.nodes.values():
        if not node.name.startswith(_ROOT_PREFIX):
            by_tid[node.tid].append(node)
    for nodes in by_tid.values():
        nodes.sort(key=lambda n: (n.rf_id if n.rf_id is not None else n.id, n.id))
    k_threads = _kineto_ops(trace)
    scored: list[tuple[int, int, Any, list[tuple[int, int]]]] = []
    for tid, nodes in by_tid.items():
        names = [n.name for n in nodes]
        for thread, events in k_threads.items():
            pairs = _align(names, [e.name for e in events])
            scored.append((len(pairs), tid, thread, pairs))
    matched: dict[int, KEvent] = {}
    used_tids: set[int] = set()
    used_threads: set[Any] = set()
    # Each ET thread takes the Kineto thread it aligns best with, best pairs first.
    for _, tid, thread, pairs in sorted(scored, key=lambda s: -s[0]):
        if tid in used_tids or thread in used_threads or not pairs:
            continue
        used_tids.add(tid)
        used_threads.add(thread)
        nodes = by_tid[tid]
        events = k_threads[thread]
        for i, k in pairs:
            matched[nodes[i].id] = events[k]
    return matched, sum(len(v) for v in by_tid.values())


#: Below this share of its operators found in the Kineto trace, an ET and a Kineto file are not one
#: rank's recording of one run (the PARAM DLRM pairs match 99.8-100 %, the tiny add 100 %; a DLRM ET
#: beside another program's Kineto trace matched 0.8 % and replayed at 19.8 s, without a word).
MIN_MATCHED_SHARE = 0.5


def _checked_match(
    et_rank: EtRank, trace: KinetoTrace, et_path: Path, k_path: Path
) -> tuple[dict[int, KEvent], str]:
    """``_match``, refused when too few of the ET's operators are in the Kineto trace, or when the
    ET holds none (0 of 0 would pass the share test, and the join would then read as a CPU-only
    trace: it gets the error an empty ET read alone gets)."""
    if not et_rank.ops:
        raise TraceError(f"{et_path}: the trace holds no operations (a profile of no work)")
    matched, how = _match(et_rank, trace)
    ops = sum(1 for n in et_rank.trace.nodes.values() if not n.name.startswith(_ROOT_PREFIX))
    if ops and len(matched) < MIN_MATCHED_SHARE * ops:
        raise TraceError(
            f"{k_path}: holds {len(matched)} of the {ops} operators of {et_path} "
            f"({len(matched) / ops:.0%}): not the same run and rank; give each rank's ET file and "
            "the Kineto trace recorded with it"
        )
    return matched, how


def _match(et_rank: EtRank, trace: KinetoTrace) -> tuple[dict[int, KEvent], str]:
    by_rf: dict[int, KEvent] = {}
    for events in trace.threads.values():
        for e in events:
            rf = e.args.get("Record function id")
            if isinstance(rf, int) and e.cat not in ("cuda_runtime", "cuda_driver", "runtime"):
                by_rf[rf] = e
    if by_rf:
        matched = {
            n.id: by_rf[n.rf_id]
            for n in et_rank.trace.nodes.values()
            if n.rf_id is not None and n.rf_id in by_rf and by_rf[n.rf_id].name == n.name
        }
        return matched, f"matched by rf_id: {len(matched)} ET nodes"
    matched, tried = _match_by_order(et_rank, trace)
    rate = len(matched) / tried if tried else 0.0
    return matched, (
        f"Kineto trace has no 'Record function id': matched ET nodes by name and order within each thread "
        f"({len(matched)} of {tried}, {rate:.0%})"
    )


def _covered_steps(trace: KinetoTrace, info: _Joined, matched: dict[int, KEvent]) -> list[KEvent]:
    """The Kineto profiler steps the ET covers: those in which its operators launched GPU work.

    The Kineto window may hold more steps than the ET (the ET observer is often started for one
    step inside a longer profile). The joined graph holds only the ET's operators, so the step time
    must divide their work by the steps it came from, not by all of Kineto's: one step's work over
    three steps read as a step 62 % short. A step counts when one of the kernels attributed to an
    ET operator was launched inside it (its launch call started within the step's annotation, on
    whatever thread); a trace whose ET operators launched no kernel (a CPU-only run) counts the
    steps in which a matched operator started instead.
    """
    starts = sorted(
        launch.ts
        for kernels in info.kernels.values()
        for kernel in kernels
        if (launch := trace.launch.get(id(kernel))) is not None
    )
    if not starts:
        starts = sorted(event.ts for event in matched.values())

    def covered(step: KEvent) -> bool:
        first = bisect.bisect_left(starts, step.ts)
        return first < len(starts) and starts[first] < step.end

    return [step for step in trace.steps if covered(step)]


@dataclass
class _Joined:
    kernels: dict[int, list[KEvent]]  # top-level ET op id -> its GPU events
    host: dict[int, KEvent]  # top-level ET op id -> its Kineto cpu_op
    unattributed: int
    unattributed_s: float


def _attribute(et_rank: EtRank, trace: KinetoTrace, matched: dict[int, KEvent]) -> _Joined:
    top_of: dict[int, int] = {}
    for op in et_rank.ops:
        for node_id in op.subtree:
            top_of[node_id] = op.et_id
    et_of_event = {id(ev): node_id for node_id, ev in matched.items()}
    kernels: dict[int, list[KEvent]] = defaultdict(list)
    missing = 0
    missing_s = 0.0
    for event in trace.gpu:
        runtime = trace.launch.get(id(event))
        owner = None
        cur = runtime.parent if runtime is not None else None
        while cur is not None:
            node_id = et_of_event.get(id(cur))
            if node_id is not None and node_id in top_of:
                owner = top_of[node_id]
                break
            cur = cur.parent
        if owner is None:
            missing += 1
            missing_s += event.dur * 1e-6
        else:
            kernels[owner].append(event)
    host = {op.et_id: matched[op.et_id] for op in et_rank.ops if op.et_id in matched}
    return _Joined(dict(kernels), host, missing, missing_s)


class _HostTime:
    """Kineto's CPU time between the ET's operators (an ``Interleave`` for ``assemble``).

    Each rank's CPU threads are cut at their kernel launches exactly as the Kineto reader cuts them
    (``kineto.host_segments``): a segment is a ``Host`` node covering the thread's busy time up to
    the end of the runtime call that launched a kernel, the segments of a thread are chained, and
    an operator's GPU node depends on the segment that launched its first kernel. So a GPU op cannot
    start before the CPU has got to its launch, and a host-bound step (eager PyTorch dispatch) stays
    host-bound when its GPU work is re-costed. The ET's CPU-only operators keep their own recorded
    time and are holes in the segments, so a thread's segments and CPU-only operators sum to its
    busy time, less its waits. A thread's segments run on the lane of the ET thread whose operators
    were matched on it.

    The segments are handed to ``assemble`` per thread, in start order, as late as possible: before
    a CPU-only op, its thread's segments that started before it; before a GPU op, its thread's up to
    its launch segment; a segment's own dependencies on other threads' segments first; the rest
    after the rank's last op. So each thread's queue keeps its order among the ET's ops of the
    thread, and a segment that waits for a GPU op comes after it whenever the op was added in time
    (a wait for a later op is dropped by ``PendingGraph.build``, and the CPU goes on at once).
    """

    def __init__(self, joined: dict[int, tuple[_Joined, KinetoTrace]], ets: dict[int, EtRank]) -> None:
        self.counts: dict[str, float] = {}  # what the ranks' traces read as waits (``count_waits``)
        # rank -> Kineto thread -> its segments by start, and how many of them were handed out
        self._queues: dict[int, dict[tuple[Any, Any], list[Pending]]] = {}
        self._next: dict[int, dict[tuple[Any, Any], int]] = {}
        self._emitted: dict[int, set[Hashable]] = {}
        self._thread_of: dict[int, dict[int, tuple[Any, Any]]] = {}  # rank -> ET tid -> Kineto thread
        self._key_of: dict[int, dict[int, tuple[Any, ...]]] = {}  # rank -> id(launch) -> segment key
        self._lanes: dict[int, dict[int, int]] = {}  # rank -> ET tid -> lane
        self._stream_waits: dict[int, dict[int, tuple[tuple[int, int], ...]]] = {}  # rank -> op -> ops
        for rank, (info, trace) in joined.items():
            self._build(rank, info, trace, ets[rank])

    def _build(self, rank: int, info: _Joined, trace: KinetoTrace, et_rank: EtRank) -> None:
        et_lanes: dict[int, int] = {}
        for op in et_rank.ops:
            et_lanes.setdefault(op.tid, len(et_lanes))  # as ``assemble`` numbers the ET's threads
        # The ET thread whose operators were matched on each Kineto thread, by count.
        votes: dict[tuple[Any, Any], dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for op in et_rank.ops:
            event = info.host.get(op.et_id)
            if event is not None:
                votes[(event.pid, event.tid)][op.tid] += 1
        thread_tid: dict[tuple[Any, Any], int] = {}
        for thread, count in sorted(votes.items(), key=lambda kv: -max(kv[1].values())):
            tid = max(count, key=lambda t: count[t])
            if tid not in thread_tid.values():
                thread_tid[thread] = tid
        holes: dict[tuple[Any, Any], list[tuple[float, float]]] = defaultdict(list)
        for op in et_rank.ops:
            event = info.host.get(op.et_id)
            if event is not None and op.et_id not in info.kernels:
                holes[(event.pid, event.tid)].append((event.ts, event.end))
        lanes = et_lanes  # and the Kineto threads no ET thread was matched on, after them
        extra = len(lanes)
        origin = trace.origin_us
        keys: dict[int, tuple[Any, ...]] = {}
        queues: dict[tuple[Any, Any], list[Pending]] = {}
        owner = {id(k): (rank, op_id) for op_id, kernels in info.kernels.items() for k in kernels}
        found = trace_waits(trace, holes)
        count_waits(self.counts, found, trace)
        stream_waits = found.streams
        for timeline in found.timelines:
            thread, segments = timeline.thread, timeline.segments
            tid = thread_tid.get(thread)
            if tid is not None:
                lane, queue = lanes[tid], ("thread", tid)
            else:
                lane, queue = extra, ("kineto thread", thread)  # a lane of its own, after the ET's
                extra += 1
            waiting = queues.setdefault(thread, [])
            for index, seg in enumerate(segments):
                # The GPU op it waited for, if its kernel was attributed to one.
                waited = owner.get(id(seg.wait)) if seg.wait is not None else None
                node = segment_pending(rank, timeline, index, origin, lane, queue, waited)
                waiting.append(node)
                if seg.launch is not None:
                    keys[id(seg.launch)] = node.key
        self._queues[rank] = queues
        self._next[rank] = dict.fromkeys(queues, 0)
        self._emitted[rank] = set()
        self._thread_of[rank] = {tid: thread for thread, tid in thread_tid.items()}
        self._key_of[rank] = keys
        self._lanes[rank] = lanes
        # An op waits for the ops whose kernels its first kernel waited for on other streams.
        self._stream_waits[rank] = {
            op_id: tuple(
                owner[id(other)]
                for other in stream_waits.get(id(kernels[0]), ())
                if id(other) in owner and owner[id(other)] != (rank, op_id)
            )
            for op_id, kernels in info.kernels.items()
        }

    def segment_key(self, rank: int, launch: KEvent) -> tuple[Any, ...] | None:
        """The key of the segment of ``rank`` that ends with the runtime call ``launch``."""
        return self._key_of.get(rank, {}).get(id(launch))

    def stream_waits(self, rank: int, op_id: int) -> tuple[tuple[int, int], ...]:
        """The keys of the ops whose kernels op ``op_id``'s first kernel waited for."""
        return self._stream_waits.get(rank, {}).get(op_id, ())

    def lane(self, rank: int, tid: int, default: int) -> int:
        return self._lanes.get(rank, {}).get(tid, default)

    def before(self, rank: int, op: EtOp, place: Placement) -> list[Pending]:
        out: list[Pending] = []
        if rank not in self._queues:
            return out
        if place.stream is Stream.HOST and place.start_s is not None:
            thread = self._thread_of[rank].get(op.tid)
            if thread is not None:
                self._emit_started(rank, thread, place.start_s, out)
        for key in place.deps:
            if _is_segment(key):
                self._emit_through(rank, key, out)
        return out

    def rest(self, rank: int) -> list[Pending]:
        out: list[Pending] = []
        queues = self._queues.get(rank, {})
        while True:
            heads = [
                (q[self._next[rank][t]].start_s or 0.0, i, t)
                for i, (t, q) in enumerate(queues.items())
                if self._next[rank][t] < len(q)
            ]
            if not heads:
                return out
            _, _, thread = min(heads)
            self._emit_next(rank, thread, out)

    def _emit_started(self, rank: int, thread: tuple[Any, Any], t: float, out: list[Pending]) -> None:
        queue, pos = self._queues[rank][thread], self._next[rank]
        while pos[thread] < len(queue) and (queue[pos[thread]].start_s or 0.0) <= t:
            self._emit_next(rank, thread, out)

    def _emit_through(self, rank: int, key: Hashable, out: list[Pending]) -> None:
        assert isinstance(key, tuple)
        thread = key[2]
        queue, pos = self._queues[rank].get(thread, []), self._next[rank]
        while key not in self._emitted[rank] and pos.get(thread, 0) < len(queue):
            self._emit_next(rank, thread, out)

    def _emit_next(self, rank: int, thread: tuple[Any, Any], out: list[Pending]) -> None:
        node = self._queues[rank][thread][self._next[rank][thread]]
        self._next[rank][thread] += 1
        for dep in node.deps:  # the other threads' segments that woke it come first
            if _is_segment(dep) and dep not in self._emitted[rank]:
                self._emit_through(rank, dep, out)
        out.append(node)
        self._emitted[rank].add(node.key)


def _is_segment(key: Hashable) -> bool:
    return isinstance(key, tuple) and key[:1] == ("host",)


def _placer(
    joined: dict[int, tuple[_Joined, KinetoTrace]], host: _HostTime, lanes: LaneMap, counts: dict[str, int]
) -> Placer:
    def place(rank: int, op: EtOp, default: Placement, thread_lane: int) -> Placement:
        found = joined.get(rank)
        if found is None:
            return default
        info, trace = found
        origin = trace.origin_us
        kernels = info.kernels.get(op.et_id)
        if kernels:
            counts["gpu"] += 1
            streams = [gpu_stream(k) for k in kernels]
            classes = {s for s, _ in streams}
            if Stream.COMM in classes:
                stream = Stream.COMM
            elif classes == {Stream.COPY}:
                stream = Stream.COPY
            else:
                stream = Stream.COMPUTE
            first = kernels[0]
            launch = trace.launch.get(id(first))
            launched_after = host.segment_key(rank, launch) if launch is not None else None
            cuda_stream = next((sid for (s, sid) in streams if s is stream), streams[0][1])
            node_op = None
            if op.kind == "host" or (stream is Stream.COPY and op.kind != "transfer"):
                if stream is Stream.COPY:
                    node_op = Transfer(
                        src="hbm", dst="hbm", bytes=sum(float(k.args.get("bytes", 0) or 0) for k in kernels)
                    )
                else:
                    node_op = Compute(op=op.name, category=op_category(op.name))
            # Per device and stream (the same stream id on two GPUs is two queues, as in ``kineto``).
            queue = ("cuda", first.pid, cuda_stream)
            return Placement(
                stream,
                lanes.lane(rank, stream, queue),
                queue,
                duration_s=sum(k.dur for k in kernels) * 1e-6,
                start_s=(first.ts - origin) * 1e-6,
                op=node_op,
                deps=(
                    *((launched_after,) if launched_after is not None else ()),
                    *host.stream_waits(rank, op.et_id),
                ),
            )
        cpu = info.host.get(op.et_id)
        if cpu is None:
            counts["unmatched"] += 1
            return default
        counts["host"] += 1
        if op.kind == "collective":
            # A collective without a kernel (e.g. gloo): its CPU time is its time.
            return Placement(
                default.stream, default.lane, default.queue, cpu.dur * 1e-6, (cpu.ts - origin) * 1e-6
            )
        return Placement(
            Stream.HOST,
            host.lane(rank, op.tid, thread_lane),
            ("thread", op.tid),
            duration_s=cpu.dur * 1e-6,
            start_s=(cpu.ts - origin) * 1e-6,
            op=Host(op=op.name) if op.kind != "host" else None,
        )

    return place


def _split(
    paths: Sequence[Path], datas: Sequence[Any]
) -> tuple[list[tuple[Path, Any]], list[tuple[Path, Any]]]:
    ets: list[tuple[Path, Any]] = []
    kinetos: list[tuple[Path, Any]] = []
    for path, data in zip(paths, datas, strict=True):
        if is_et_document(data):
            ets.append((path, data))
        elif is_kineto_document(data):
            kinetos.append((path, data))
        else:
            raise TraceError(f"{path}: neither a PyTorch execution trace nor a Kineto trace")
    if not ets or len(ets) != len(kinetos):
        # Name the files: ``--format et_kineto`` given one kind of file fails here (a tester's find).
        raise TraceError(
            f"{first_few(list(paths))}: joining execution traces (ET) with Kineto traces needs one "
            f"Kineto trace per ET file (got {len(ets)} ET, {len(kinetos)} Kineto)"
        )
    return ets, kinetos


def load_or_join(
    paths: Sequence[Path], parsed: dict[Path, Any] | None = None
) -> tuple[list[Any], ExecutionGraph | None]:
    """Load ``paths`` (those in ``parsed`` are not parsed again: ``load_documents``); when they mix
    ET and Kineto documents, also the joined graph.

    Both single-format readers start here, so a user who passes both kinds of file to either reader
    gets the joined graph.
    """
    if not paths:
        raise TraceError("no trace files given")
    datas = load_documents(paths, parsed)
    has_et = any(is_et_document(d) for d in datas)
    has_kineto = any(is_kineto_document(d) for d in datas)
    return datas, (join_loaded(list(paths), datas) if has_et and has_kineto else None)


def join_loaded(paths: Sequence[Path], datas: Sequence[Any]) -> ExecutionGraph:
    """The joined graph of already-loaded ET and Kineto documents (pairs, any order)."""
    ets, kinetos = _split(paths, datas)
    ranked, world = read_et_ranks([p for p, _ in ets], [d for _, d in ets])
    traces = [parse_kineto(p, d) for p, d in kinetos]
    k_ranks = assign_ranks([p for p, _ in kinetos], [t.rank_hint for t in traces])
    # One job size among all the files, ET and Kineto alike, and every rank inside it.
    check_world(
        [*(e.path for _, e in ranked), *(p for p, _ in kinetos)],
        [*(r for r, _ in ranked), *k_ranks],
        [*(e.trace.declared_world for _, e in ranked), *(t.world_hint for t in traces)],
    )
    notes: list[str] = []
    by_rank = dict(zip(k_ranks, traces, strict=True))
    k_path = dict(zip(k_ranks, [p for p, _ in kinetos], strict=True))
    et_path = {r: e.path for r, e in ranked}
    if set(by_rank) != {r for r, _ in ranked}:
        declared = all(t.rank_hint is not None for t in traces) and all(
            e.rank_hint() is not None for _, e in ranked
        )
        if declared:
            # Each file says its rank: a rank's ET beside another rank's Kineto trace is a mistake
            # (its durations would be another GPU's), not files to pair up by order.
            et_side = ", ".join(f"{et_path[r]} is rank {r}" for r, _ in ranked)
            k_side = ", ".join(f"{k_path[r]} is rank {r}" for r in sorted(by_rank))
            raise TraceError(
                f"the ET and Kineto files are of different ranks ({et_side}; {k_side}); give each "
                "rank's ET file with the Kineto trace recorded beside it"
            )
        # Ranks taken from file names or order: pair them in rank order.
        ordered = sorted(zip(k_ranks, traces, [p for p, _ in kinetos], strict=True), key=lambda item: item[0])
        by_rank = {r: t for (r, _), (_, t, _) in zip(ranked, ordered, strict=True)}
        k_path = {r: path for (r, _), (_, _, path) in zip(ranked, ordered, strict=True)}
        notes.append("ET and Kineto files declare different ranks; paired them in rank order")
    joined: dict[int, tuple[_Joined, KinetoTrace]] = {}
    steps: list[dict[str, Any]] = []
    for rank, et_rank in ranked:
        trace = by_rank[rank]
        world = max(world, trace.world_hint or 0)
        matched, how = _checked_match(et_rank, trace, et_path[rank], k_path[rank])
        info = _attribute(et_rank, trace, matched)
        joined[rank] = (info, trace)
        notes.append(f"rank {rank}: {how}")
        if info.unattributed:
            notes.append(
                f"rank {rank}: {info.unattributed} GPU events ({info.unattributed_s * 1e3:.3f} ms) launched "
                f"outside any matched ET operator were left out"
            )
        notes.extend(f"rank {rank}: {n}" for n in et_rank.notes + trace.notes)
        covered = _covered_steps(trace, info, matched)
        if len(covered) < len(trace.steps):
            notes.append(
                f"rank {rank}: the ET covers {len(covered)} of the {len(trace.steps)} profiler steps of "
                f"{k_path[rank]}; the step time is over those"
            )
        steps.extend(steps_metadata(trace, rank, covered))
    notes.extend(unmarked_notes([(r, k_path[r], bool(t.steps)) for r, t in by_rank.items()]))
    counts: dict[str, int] = defaultdict(int)
    metadata = world_metadata(world, (r for r, _ in ranked), "et_kineto", paths)
    metadata["schema_versions"] = sorted({r.trace.schema for _, r in ranked})
    metadata["steps"] = steps
    metadata["notes"] = notes
    device = trace_device(traces)
    if device is not None:
        metadata["device"] = device
    host = _HostTime(joined, dict(ranked))
    metadata["waits"] = host.counts
    graph = assemble(ranked, world, metadata, _placer(joined, host, LaneMap(), counts), host)
    graph.metadata["join"] = {
        "ops_with_kernels": counts["gpu"],
        "host_ops_timed": counts["host"],
        "ops_without_kineto_match": counts["unmatched"],
    }
    return graph


@register
class ETKinetoReader:
    name: ClassVar[str] = "et_kineto"
    description: ClassVar[str] = (
        "PyTorch ET joined with Kineto (pairs of files, one pair per rank): ET dependencies, Kineto durations"
    )

    @classmethod
    def sniff(cls, path: Path, data: Any) -> bool:
        # Never chosen from one file: the ET and Kineto readers hand over to this one when they
        # find both kinds of file among their inputs.
        return False

    def read(self, paths: Sequence[Path], parsed: dict[Path, Any] | None = None) -> ExecutionGraph:
        return join_loaded(list(paths), load_documents(paths, parsed))
