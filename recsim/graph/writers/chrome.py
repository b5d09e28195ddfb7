"""Chrome trace JSON (the Trace Event Format) that Perfetto and chrome://tracing open.

A process per rank, a thread per stream (and lane), a complete ("X") event per node with its op in
``args``, and flow arrows ("s"/"f") for dependencies that cross streams, so a collective waiting
on a kernel of another stream shows as an arrow. Times come from a ``Schedule`` (simulated), or
from the recorded start/duration of a trace.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from recsim.graph.ir import ExecutionGraph, Stream
from recsim.graph.schedule import Schedule, asap_schedule
from recsim.output import write_text

_STREAM_ORDER = {Stream.COMPUTE: 0, Stream.COMM: 1, Stream.COPY: 2, Stream.HOST: 3}


def chrome_trace(graph: ExecutionGraph, schedule: Schedule | None = None) -> dict[str, Any]:
    """The trace as a dict (``traceEvents`` plus metadata)."""
    if schedule is None:
        recorded = all(n.start_s is not None and n.duration_s is not None for n in graph.nodes)
        if recorded and graph.nodes:
            t0 = min(n.start_s or 0.0 for n in graph.nodes)
            schedule = Schedule(
                {n.id: (n.start_s or 0.0) - t0 for n in graph.nodes},
                {n.id: (n.start_s or 0.0) - t0 + (n.duration_s or 0.0) for n in graph.nodes},
            )
        else:
            schedule = asap_schedule(graph)
    events: list[dict[str, Any]] = []
    threads: dict[tuple[int, Stream, int], int] = {}
    for node in graph.nodes:
        key = (node.rank, node.stream, node.lane)
        if key not in threads:
            threads[key] = _STREAM_ORDER[node.stream] * 1000 + node.lane
    for rank in range(graph.ranks):
        events.append({"ph": "M", "name": "process_name", "pid": rank, "args": {"name": f"rank {rank}"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": rank, "args": {"sort_index": rank}})
    for (rank, stream, lane), tid in sorted(threads.items(), key=lambda kv: kv[1]):
        label = stream.value if lane == 0 else f"{stream.value} {lane}"
        events.append({"ph": "M", "name": "thread_name", "pid": rank, "tid": tid, "args": {"name": label}})
    for node in graph.nodes:
        ts, dur = _slice_us(schedule.start_s[node.id], schedule.finish_s[node.id])
        args = {k: _plain(v) for k, v in dataclasses.asdict(node.op).items()}
        args["kind"] = node.kind
        events.append(
            {
                "ph": "X",
                "name": node.name,
                "cat": node.kind,
                "pid": node.rank,
                "tid": threads[(node.rank, node.stream, node.lane)],
                "ts": ts,
                "dur": dur,
                "args": args,
            }
        )
    flow = 0
    by_id = graph.by_id
    for node in graph.nodes:
        for dep_id in node.deps:
            dep = by_id[dep_id]
            if (dep.rank, dep.stream, dep.lane) == (node.rank, node.stream, node.lane):
                continue
            flow += 1
            events.append(
                {
                    "ph": "s",
                    "id": flow,
                    "name": "dep",
                    "cat": "dep",
                    "pid": dep.rank,
                    "tid": threads[(dep.rank, dep.stream, dep.lane)],
                    # Mid-slice: a viewer binds a flow event to the slice that encloses its time,
                    # and a slice's end is also where the next one on its thread may begin.
                    "ts": (schedule.start_s[dep_id] + schedule.finish_s[dep_id]) / 2 * 1e6,
                }
            )
            events.append(
                {
                    "ph": "f",
                    "bp": "e",
                    "id": flow,
                    "name": "dep",
                    "cat": "dep",
                    "pid": node.rank,
                    "tid": threads[(node.rank, node.stream, node.lane)],
                    "ts": (schedule.start_s[node.id] + schedule.finish_s[node.id]) / 2 * 1e6,
                }
            )
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"recsim": graph.metadata}}


def _slice_us(start_s: float, finish_s: float) -> tuple[float, float]:
    """A slice's ``ts`` and ``dur`` in microseconds, ``ts + dur`` never past ``finish_s * 1e6``:
    the next slice of a thread starting where this one finishes has ``ts`` ``finish_s * 1e6``, and
    ``dur`` scaled on its own (or even ``finish_s * 1e6 - ts``, inexact where ``ts`` is under half
    of it) can round so that the two overlap by a step (a tester's find: by ~2e-12 us)."""
    ts = start_s * 1e6
    end = finish_s * 1e6
    dur = end - ts
    # Where the subtraction rounded, ``dur``'s step is about ``end``'s (``ts`` under half of
    # ``end``), so one step down puts ``ts + dur`` back at or before ``end``.
    while dur > 0.0 and ts + dur > end:
        dur = math.nextafter(dur, 0.0)
    return ts, dur


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "value"):
        return value.value
    return value


def write_chrome_trace(graph: ExecutionGraph, path: Path, schedule: Schedule | None = None) -> None:
    """Write the Chrome trace of ``graph`` to ``path`` (gzip if ``.gz``), atomically."""
    text = json.dumps(chrome_trace(graph, schedule), separators=(",", ":"), default=str)
    write_text(path, text, "timeline")
