"""Chain copies of a one-step graph into several consecutive training steps.

A single step graph starts from an idle machine; the steady state only shows after a few steps,
when the next batch's input pipeline (data loading, H2D copy, index all-to-all) overlaps the
current step and each step's first kernels wait for the previous step's updates. Step ``s + 1``:

* its forward roots (nodes of phase ``forward`` without dependencies) wait for step ``s``'s input
  pipeline on the same rank (phase ``input``): that batch was prepared during step ``s``;
* its embedding forward of a table waits for step ``s``'s fused backward/update of that table on
  the same rank (the rows must be updated before they are read again);
* its dense forward roots wait for step ``s``'s dense optimizer on the same rank.

Stream order and collective synchronisation then come from the scheduler. Node ids of step ``s``
are offset by ``s x (max id + 1)``; names get a ``#s`` suffix; ``metadata["steps"]`` records it.

Chaining runs once per evaluation over graphs of 10^4-10^6 nodes, so the copies are made
directly: everything that does not depend on the step (deduplicated dependencies, the cross-step
dependencies of each node) is worked out once per node of the step graph, and nodes and
collectives are constructed with their fields rather than through ``dataclasses.replace`` (which
introspects the fields on every call). Ops other than collectives are shared between the copies
(they are frozen values); a collective's copy shares its group and split tuples.
"""

from __future__ import annotations

from collections import defaultdict

from recsim.graph.ir import Collective, Embedding, ExecutionGraph, Node


def chain_steps(graph: ExecutionGraph, steps: int) -> ExecutionGraph:
    """``steps`` consecutive copies of the step ``graph`` with the cross-step dependencies."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    stride = max((n.id for n in graph.nodes), default=-1) + 1
    inputs: dict[int, list[int]] = defaultdict(list)
    optimizer: dict[int, list[int]] = defaultdict(list)
    emb_update: dict[tuple[int, str], list[int]] = defaultdict(list)
    for n in graph.nodes:
        if n.phase == "input":
            inputs[n.rank].append(n.id)
        elif n.phase == "optimizer":
            optimizer[n.rank].append(n.id)
        if isinstance(n.op, Embedding) and n.op.pass_ == "backward":
            emb_update[(n.rank, n.op.table)].append(n.id)
    # Per node of the step graph, once: its own dependencies (deduplicated, order kept) and the
    # previous step's nodes it waits for from the second step on (ids of the previous step, as
    # offsets from its start), or None when it waits for none.
    own: list[tuple[int, ...]] = []
    cross: list[list[int] | None] = []
    for n in graph.nodes:
        own.append(tuple(dict.fromkeys(n.deps)))
        extra: list[int] | None = None
        if n.phase == "forward":
            if isinstance(n.op, Embedding):
                extra = [*inputs[n.rank], *emb_update[(n.rank, n.op.table)]]
            elif not n.deps:
                extra = [*inputs[n.rank], *optimizer[n.rank]]
        cross.append(extra)
    nodes: list[Node] = []
    append = nodes.append
    for s in range(steps):
        offset = s * stride
        prev = (s - 1) * stride
        suffix = f"#{s}"
        keys: dict[str, str] = {}
        for n, base, extra in zip(graph.nodes, own, cross, strict=True):
            deps = tuple([d + offset for d in base]) if offset else base
            if s > 0 and extra is not None:
                deps = tuple(dict.fromkeys([*deps, *[i + prev for i in extra]]))
            op = n.op
            if isinstance(op, Collective):
                key = keys.get(op.key)
                if key is None:
                    key = keys[op.key] = op.key + suffix
                op = Collective(
                    op.op, key, op.group, op.bytes, op.dtype, op.send_bytes, op.recv_bytes, op.algorithm
                )
            # Positional (fast): tests check these are all the fields of Node and Collective.
            append(
                Node(
                    n.id + offset,
                    n.rank,
                    n.name + suffix,
                    n.stream,
                    op,
                    deps,
                    n.lane,
                    n.duration_s,
                    n.start_s,
                    n.phase,
                )
            )
    metadata = dict(graph.metadata)
    metadata["steps"] = steps
    metadata["step_stride"] = stride
    return ExecutionGraph(graph.ranks, nodes, metadata)


def step_of(node_id: int, stride: int) -> int:
    """The step a node of a chained graph belongs to."""
    return node_id // stride
