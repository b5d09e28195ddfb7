"""Chrome trace JSON (the Trace Event Format) that Perfetto and chrome://tracing open.

A process per rank, a thread per stream (and lane), a complete ("X") event per node with its op in
``args``, and flow arrows ("s"/"f") for dependencies that cross streams, so a collective waiting
on a kernel of another stream shows as an arrow. Times come from a ``Schedule`` (simulated), or
from the recorded start/duration of a trace.

Given the ``Topology`` a simulation costed its collectives on, each collective's slice also says
how it was costed: ``args.algorithm`` (ring, tree, nvls, collnet, direct, ...) and
``args.protocol`` (ll, ll128, simple, nvls) as ``collective_cost`` chose them, from the whole
collective (every member's part of an uneven all-to-all, as both engines cost it). The op's own
``algorithm`` field, a preference the cost may not take, then shows as ``args.requested_algorithm``.
Only this writer works them out: a simulation keeps no per-call choice. Without a topology (a
converted trace) the slices carry the op's fields alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from recsim.cost.collectives import collective_cost
from recsim.graph.ir import Collective, ExecutionGraph, Node, Stream, is_uneven_all_to_all
from recsim.graph.schedule import Schedule, asap_schedule
from recsim.hardware.topology import Topology
from recsim.output import write_text

_STREAM_ORDER = {Stream.COMPUTE: 0, Stream.COMM: 1, Stream.COPY: 2, Stream.HOST: 3}


def chrome_trace(
    graph: ExecutionGraph, schedule: Schedule | None = None, topology: Topology | None = None
) -> dict[str, Any]:
    """The trace as a dict (``traceEvents`` plus metadata); ``topology``: the one the collectives
    were costed on, to report each one's algorithm and protocol (``collective_choices``)."""
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
    choices = collective_choices(graph, topology) if topology is not None else {}
    for node in graph.nodes:
        ts, dur = _slice_us(schedule.start_s[node.id], schedule.finish_s[node.id])
        args = {k: _plain(v) for k, v in dataclasses.asdict(node.op).items()}
        args["kind"] = node.kind
        choice = choices.get(node.id)
        if choice is not None:
            requested = args.pop("algorithm", None)
            if requested is not None:
                args["requested_algorithm"] = requested
            args["algorithm"], args["protocol"] = choice
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


def collective_choices(graph: ExecutionGraph, topology: Topology) -> dict[int, tuple[str, str]]:
    """Node id -> (algorithm, protocol) ``collective_cost`` takes for each collective node of
    ``graph`` on ``topology`` (none for a group of one rank: it costs nothing). An uneven all-to-all
    with a part for every member is costed whole, as the engines cost it
    (``CostModel.collective_members_s``, the DES's traffic); one missing parts, from its own
    rank's part; any other collective from its part. Each distinct collective is costed once
    (the steps of a chained graph repeat them)."""
    members: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if isinstance(node.op, Collective) and len(node.op.group) > 1:
            members.setdefault(node.op.key, []).append(node)
    seen: dict[object, tuple[str, str]] = {}
    out: dict[int, tuple[str, str]] = {}

    def choose(op: Collective | list[Collective], rank: int | None = None) -> tuple[str, str]:
        parts = op if isinstance(op, list) else [op]
        key = (rank, tuple(dataclasses.replace(p, key="") for p in parts))
        found = seen.get(key)
        if found is None:
            cost = collective_cost(op, topology, rank=rank)
            found = seen[key] = (cost.algorithm, cost.protocol)
        return found

    for nodes in members.values():
        ops = [n.op for n in nodes if isinstance(n.op, Collective)]
        if not any(is_uneven_all_to_all(op) for op in ops):
            for n, op in zip(nodes, ops, strict=True):
                out[n.id] = choose(op)
            continue
        group = ops[0].group
        by_rank = {n.rank: op for n, op in zip(nodes, ops, strict=True)}
        if sorted(by_rank) == sorted(group) and len(by_rank) == len(nodes):
            whole = choose([by_rank[r] for r in group])
            out.update({n.id: whole for n in nodes})
        else:
            for n, op in zip(nodes, ops, strict=True):
                out[n.id] = choose(op, n.rank) if is_uneven_all_to_all(op) else choose(op)
    return out


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


def write_chrome_trace(
    graph: ExecutionGraph, path: Path, schedule: Schedule | None = None, topology: Topology | None = None
) -> None:
    """Write the Chrome trace of ``graph`` to ``path`` (gzip if ``.gz``), atomically; ``topology``
    as ``chrome_trace``'s."""
    text = json.dumps(chrome_trace(graph, schedule, topology), separators=(",", ":"), default=str)
    write_text(path, text, "timeline")
