"""List scheduling of an execution graph from given node durations, without resource contention.

The rules, the same ones the discrete-event engine follows:

* a node starts when all its dependencies have finished;
* each (rank, stream, lane) is an in-order queue: a node also waits for the node before it in the
  same queue, in graph order (GPU streams and CPU threads run in launch order);
* a collective starts on all ranks of its group at once, when every member is ready, and finishes
  on all of them together (NCCL's implicit synchronisation); its duration is the longest of the
  members' durations.

The result is the earliest-start schedule: the critical path with stream serialisation and
collective synchronisation. Collectives issued in different orders on different ranks deadlock,
as they would on real hardware; the scheduler reports the cycle.

Implementation: the analytic engine schedules graphs of 10^4-10^6 nodes once per evaluation, so
the scheduler is written for speed. Each collective's members collapse into one vertex (the
others are their own vertex); vertices are numbered densely and everything is kept in lists
indexed by vertex. Durations are asked for once per node, in graph order. A vertex's dependency
edges are kept with repeats (an edge counted twice in the pending count is also released twice),
which spares building a set per vertex; Kahn's algorithm then releases each vertex when its last
predecessor finishes, its start being the running maximum of the predecessors' finish times. The
times are the same floats whatever the release order: a start is a max over the same finishes and
a finish is that start plus the vertex's length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from recsim.errors import TraceError
from recsim.graph.ir import Collective, ExecutionGraph, Node, Stream


@dataclass(frozen=True)
class Schedule:
    """Start and finish time (s) per node id, and the makespan."""

    start_s: dict[int, float]
    finish_s: dict[int, float]

    @property
    def makespan_s(self) -> float:
        return max(self.finish_s.values(), default=0.0)


# ``Stream.X.value`` goes through the enum's descriptor machinery on every access, which shows up
# when it is read once per node of a large graph: look the string up in a constant table instead.
_STREAM_VALUES: dict[object, str] = {s: s.value for s in Stream}


def _stream_value(stream: Stream | str) -> str:
    found = _STREAM_VALUES.get(stream)
    return found if found is not None else str(getattr(stream, "value", stream))


def queue_of(node: Node) -> tuple[int, str, int]:
    """The in-order queue a node runs on."""
    return (node.rank, _stream_value(node.stream), node.lane)


def _duration_function(
    durations_s: Mapping[int, float] | Callable[[Node], float] | None,
) -> Callable[[Node], float]:
    if durations_s is None:
        return lambda n: n.duration_s or 0.0
    if callable(durations_s):
        return durations_s
    table = durations_s
    return lambda n: table.get(n.id, 0.0)


def asap_schedule(
    graph: ExecutionGraph,
    durations_s: Mapping[int, float] | Callable[[Node], float] | None = None,
) -> Schedule:
    """Schedule ``graph`` with ``durations_s`` (a map by id, a function, or recorded durations)."""
    durations = _duration_function(durations_s)
    nodes = graph.nodes
    count = len(nodes)
    # Pass 1: the vertex of every node (by position in ``nodes``, and by id for the dependencies)
    # and each vertex's length.
    vertex_of: list[int] = [0] * count
    vertex_by_id: dict[int, int] = {}
    first_member: list[int] = []  # vertex -> position of its first node (for error messages)
    length: list[float] = []
    by_key: dict[str, int] = {}
    for i, n in enumerate(nodes):
        op = n.op
        d = durations(n)
        if isinstance(op, Collective):
            v = by_key.get(op.key)
            if v is not None:
                vertex_of[i] = vertex_by_id[n.id] = v
                # ``max`` semantics: keep the first of equal values, take a later one if larger.
                if d > length[v]:
                    length[v] = d
                continue
            by_key[op.key] = v = len(length)
        else:
            v = len(length)
        vertex_of[i] = vertex_by_id[n.id] = v
        first_member.append(i)
        length.append(d)
    vertices = len(length)
    # Pass 2: edges between vertices, explicit ones plus the previous node of the same queue.
    children: list[list[int]] = [[] for _ in range(vertices)]
    pending = [0] * vertices
    last_in_queue: dict[tuple[int, str, int], int] = {}
    stream_values = _STREAM_VALUES
    for n, v in zip(nodes, vertex_of, strict=True):
        for d in n.deps:
            dv = vertex_by_id[d]
            if dv != v:
                children[dv].append(v)
                pending[v] += 1
        stream = n.stream
        q = (n.rank, stream_values.get(stream) or _stream_value(stream), n.lane)
        prev = last_in_queue.get(q)
        if prev is not None and prev != v:
            children[prev].append(v)
            pending[v] += 1
        last_in_queue[q] = v
    # Kahn's algorithm; ``begin[v]`` is the latest finish among the predecessors released so far
    # (a vertex without predecessors starts at 0).
    begin = [-math.inf] * vertices
    finish = [0.0] * vertices
    ready = [v for v in range(vertices) if pending[v] == 0]
    for v in ready:
        begin[v] = 0.0
    done = 0
    while ready:
        v = ready.pop()
        done += 1
        end = begin[v] + length[v]
        finish[v] = end
        for c in children[v]:
            if end > begin[c]:
                begin[c] = end
            pending[c] -= 1
            if pending[c] == 0:
                ready.append(c)
    if done != vertices:
        waiting = (nodes[first_member[v]] for v in range(vertices) if pending[v] > 0)
        heads = sorted(waiting, key=lambda n: n.id)
        names = ", ".join(f"{n.name}@rank{n.rank}" for n in heads[:4])
        raise TraceError(
            f"the graph cannot be scheduled: a dependency cycle or collectives issued in different "
            f"orders on different ranks (waiting: {names})"
        )
    start_s = {n.id: begin[v] for n, v in zip(nodes, vertex_of, strict=True)}
    finish_s = {n.id: finish[v] for n, v in zip(nodes, vertex_of, strict=True)}
    return Schedule(start_s, finish_s)
