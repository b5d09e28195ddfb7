"""``trace info``: the figures of an execution graph read from a trace.

``trace_info(graph)`` returns a flat-ish dict (JSON-ready, SI units, keys ending in ``_s`` are
seconds): ranks, profiler steps (from the readers' ``metadata["steps"]``), recorded time per op
category and per stream class, the kernels with the most total time, collectives by op (count and
bytes), and the critical path of recorded durations: the longest path through the dependencies and
the streams' order (each stream runs its nodes one after the other, as the schedulers run them)
where each node weighs its ``duration_s`` (missing durations weigh 0). Nodes run concurrently on
different streams and ranks, so the per-category and per-stream totals are busy time summed over
ranks and lanes, not wall time; the critical path and the steps are wall-time figures.

Categories: a ``Compute`` node's own ``category`` (gemm, embedding, elementwise, memory, other,
...), ``communication`` for collectives, ``memory`` for transfers, ``embedding`` for embedding
passes and ``host`` for CPU work. One pass over the nodes plus one topological pass: linear in the
graph, a second or two for the 10^5-node graphs of 8-rank traces.
"""

from __future__ import annotations

from collections import defaultdict, deque
from statistics import mean
from typing import Any

from recsim.errors import TraceError
from recsim.graph.index import GraphIndex
from recsim.graph.ir import Collective, Compute, Embedding, ExecutionGraph, Host, Node, Transfer

TOP_KERNELS = 10


def node_category(node: Node) -> str:
    """The op category a node's time is booked under."""
    op = node.op
    if isinstance(op, Compute):
        return "communication" if op.category in ("nccl", "communication") else op.category
    if isinstance(op, Collective):
        return "communication"
    if isinstance(op, Transfer):
        return "memory"
    if isinstance(op, Embedding):
        return "embedding"
    if isinstance(op, Host):
        return "host"
    return "other"


def short_kernel_name(name: str, limit: int = 100) -> str:
    """A kernel name without ``void`` and its trailing parameter list, cut to ``limit`` characters."""
    text = name
    if not text.startswith(("Memcpy", "Memset")) and text.endswith(")"):
        depth = 0
        for i in range(len(text) - 1, -1, -1):
            if text[i] == ")":
                depth += 1
            elif text[i] == "(":
                depth -= 1
                if depth == 0:
                    text = text[:i] if i > 0 else text
                    break
    text = text.removeprefix("void ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def critical_path(graph: ExecutionGraph) -> tuple[float, list[int]]:
    """Length (s) and node ids of the longest recorded-duration path through the graph.

    A node follows its dependencies and the node before it on its in-order queue (its rank's
    stream and lane, in graph order), as the schedulers run it: a reader that records no edge
    between consecutive kernels of one stream (a Chakra trace) still has them run one after the
    other. Ties go to the first predecessor (the queue's previous node, then the dependencies in
    order)."""
    index = GraphIndex.of(graph)
    nodes, size = index.nodes, len(index.nodes)
    prev_in_queue, dep_end, dep_flat = index.prev_in_queue, index.dep_end, index.dep_flat
    preds: list[list[int]] = []
    forward = True  # every predecessor earlier in graph order: one pass in that order will do
    for i in range(size):
        before = [prev_in_queue[i]] if prev_in_queue[i] >= 0 else []
        before.extend(dep_flat[dep_end[i - 1] if i else 0 : dep_end[i]])
        if forward and any(p >= i for p in before):
            forward = False
        preds.append(before)
    order = range(size) if forward else _kahn_order(graph, preds)
    finish = [0.0] * size
    via: list[int] = [-1] * size
    for i in order:
        start, prev = 0.0, -1
        for p in preds[i]:
            if prev < 0 or finish[p] > start:
                start, prev = finish[p], p
        finish[i] = start + (nodes[i].duration_s or 0.0)
        via[i] = prev
    if not size:
        return 0.0, []
    best = max(range(size), key=finish.__getitem__)  # the first of equal ends
    path: list[int] = []
    cur = best
    while cur >= 0:
        path.append(index.ids[cur])
        cur = via[cur]
    path.reverse()
    return finish[best], path


def _kahn_order(graph: ExecutionGraph, preds: list[list[int]]) -> list[int]:
    """Positions in an order that puts every node after its ``preds``; ``TraceError`` naming the
    nodes of a cycle (among the dependencies and the streams' order) otherwise."""
    size = len(preds)
    children: list[list[int]] = [[] for _ in range(size)]
    waiting = [0] * size
    for i, before in enumerate(preds):
        for p in before:
            children[p].append(i)
            waiting[i] += 1
    ready = deque(i for i in range(size) if waiting[i] == 0)
    order: list[int] = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for c in children[i]:
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.append(c)
    if len(order) != size:
        stuck = [graph.nodes[i] for i in range(size) if waiting[i] > 0]
        shown = ", ".join(f"{n.name} (id {n.id}, rank {n.rank}, {n.stream})" for n in stuck[:4])
        more = f" and {len(stuck) - 4} more" if len(stuck) > 4 else ""
        raise TraceError(
            f"the dependencies and the streams' order form a cycle: {shown}{more} never start (a "
            "node waits for one queued after it on its stream, or on a cycle that does)"
        )
    return order


def trace_info(graph: ExecutionGraph, reader: str | None = None) -> dict[str, Any]:
    """The summary of ``graph`` (see module docstring); ``reader``: the reader that read it. A
    native graph's metadata names the format it was converted from: the summary gives both
    (``format: native``, ``converted_from: pytorch_et``): the source's alone read as the file's."""
    meta = graph.metadata
    by_category: dict[str, float] = defaultdict(float)
    by_stream: dict[str, float] = defaultdict(float)
    kinds: dict[str, int] = defaultdict(int)
    kernels: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    collectives: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    recorded = 0
    for node in graph.nodes:
        kinds[node.kind] += 1
        dur = node.duration_s
        if isinstance(node.op, Collective):
            entry = collectives[node.op.op.value]
            entry[0] += 1
            entry[1] += node.op.bytes
            entry[2] += dur or 0.0
        if dur is None:
            continue
        recorded += 1
        by_category[node_category(node)] += dur
        by_stream[node.stream.value] += dur
        if not isinstance(node.op, Host):
            entry = kernels[node.name]
            entry[0] += 1
            entry[1] += dur
    length, path = critical_path(graph)
    source = meta.get("format", "unknown")
    converted = reader == "native" and source != "native"
    info: dict[str, Any] = {
        "format": "native" if converted else source,
        **({"converted_from": source} if converted else {}),
        "ranks": graph.ranks,
        "trace_ranks": meta.get("trace_ranks", list(range(graph.ranks))),
        "nodes": len(graph),
        "nodes_by_kind": dict(sorted(kinds.items())),
        "nodes_with_duration": recorded,
    }
    steps = meta.get("steps") or []
    if steps:
        info["steps"] = [
            {k: s[k] for k in ("name", "rank", "start_s", "duration_s") if k in s}
            for s in steps
            if isinstance(s, dict)
        ]
        # Steps per rank: the ranks run theirs side by side (a replay divides by this count).
        by_rank = steps_by_rank(info["steps"])
        if by_rank:
            info["step_time_mean_s"] = mean(d for durations in by_rank.values() for d in durations)
        info["steps_per_rank"] = {("?" if r is None else r): len(d) for r, d in by_rank.items()}
        if len({len(d) for d in by_rank.values()}) > 1:
            info["note"] = "ranks recorded different numbers of profiler steps (`recsim replay` refuses it)"
    info["time_by_category_s"] = dict(sorted(by_category.items(), key=lambda kv: -kv[1]))
    info["time_by_stream_s"] = dict(sorted(by_stream.items(), key=lambda kv: -kv[1]))
    top = sorted(kernels.items(), key=lambda kv: -kv[1][1])[:TOP_KERNELS]
    info["top_kernels"] = [
        {"name": short_kernel_name(name), "count": int(count), "total_s": total}
        for name, (count, total) in top
    ]
    info["collectives"] = [
        {"op": op, "count": int(c[0]), "bytes": c[1], "time_s": c[2]} for op, c in sorted(collectives.items())
    ]
    info["critical_path_s"] = length
    info["critical_path_nodes"] = len(path)
    if meta.get("waits"):
        # What a replay reads as waits rather than work (``recsim.graph.readers.waits``).
        info["waits"] = dict(meta["waits"])
    if meta.get("notes"):
        info["notes"] = list(meta["notes"])
    return info


def steps_by_rank(steps: Any) -> dict[int | None, list[float]]:
    """Recorded profiler-step durations (the readers' ``metadata["steps"]``) by rank: ranks in
    order, then the steps without a usable rank (not an int) under ``None``; steps without a
    duration are left out, a duration that is not a number is a ``TraceError``."""
    found: dict[int | None, list[float]] = defaultdict(list)
    for i, s in enumerate(steps if isinstance(steps, list) else ()):
        if not isinstance(s, dict) or "duration_s" not in s:
            continue
        try:
            duration = float(s["duration_s"])
        except (TypeError, ValueError):
            raise TraceError(f"metadata steps[{i}]: duration_s {s['duration_s']!r} is not a number") from None
        rank = s.get("rank")
        found[rank if isinstance(rank, int) and not isinstance(rank, bool) else None].append(duration)
    return dict(sorted(found.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
