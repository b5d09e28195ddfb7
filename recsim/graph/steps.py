"""Chain copies of a one-step graph into several consecutive training steps.

A single step graph starts from an idle machine; the steady state only shows after a few steps,
when the next batch's input pipeline (data loading, H2D copy, index all-to-all) overlaps the
current step and each step's first kernels wait for the previous step's updates. Step ``s + 1``:

* its forward roots (nodes of phase ``forward`` without dependencies) wait for step ``s``'s input
  pipeline on the same rank (phase ``input``): that batch was prepared during step ``s``;
* its embedding forward of a table waits for step ``s``'s fused backward/update of that table on
  the same rank, and for a replicated table's dense ``update`` (the rows must be updated before
  they are read again);
* its dense forward roots wait for step ``s``'s optimizer nodes on the same rank (the dense
  optimizer, and the replicated tables' dense updates).
* a node the step graph names in ``metadata["carried_dependencies"]`` waits for the listed nodes
  of step ``s``: a framework that runs the next batch's routed lookups and their exchange inside
  the step (HugeCTR's inter-iteration overlap, ``recsim.graph.build``) has step ``s + 1``'s
  interaction wait for step ``s``'s exchange; the first step's waits for none;
* its input pipeline's first copy to the device (of batch ``s + 2``) waits for step ``s``'s
  optimizer nodes on the same rank: the device holds one batch ahead (a double buffer), so each
  step's copy and index exchange run inside the next step, not all at the start; the host's
  loading may run further ahead (loader workers prefetch). Not where
  ``metadata["input_prefetch"]`` is ``host_order``: the eager runtime's host thread loads and
  copies each batch in program order, after the previous step's dispatch and syncs.

Stream order and collective synchronisation then come from the scheduler. Node ids of step ``s``
are offset by ``s x (max id + 1)``; names get a ``#s`` suffix; ``metadata["steps"]`` records it.

Chaining runs once per evaluation over graphs of 10^4-10^6 nodes, so it is written for speed.
Everything that does not depend on the step is worked out once per node of the step graph
(``_Templates``): its dependencies as ids relative to the step's offset (its own, deduplicated in
order, then from the second step on the previous step's nodes it waits for, as negative offsets).
Ops other than collectives are shared between the copies (they are frozen values); a collective's
copy shares its group and split tuples. Nodes and collectives are made without their dataclass
``__init__``: a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``,
which looks the attribute up anew every time, while the copies here set the slots through their
descriptors directly, at about half the cost per node. Every field is set, in the class's own
order (``ir.NODE_FIELDS``, checked against the class at import).

``ChainedGraph`` is the chained graph with its nodes made only when something reads them. The
analytic engine needs the structure of the chained graph, not its node objects: ``index()``
derives its ``GraphIndex`` from the step graph's with the same templates in positions (as
compressed rows of numpy arrays: the later steps' dependencies are worked out there in arrays,
``_later_rows``, and the templates' tuples of them only when the copies are made), and the
copies' ops (hence durations) are the step's. A runtime that rewrites the graph (``eager``,
``cuda_graphs``) reads the nodes and gets them made; ``fused`` returns the graph as it is, and its
nodes are then made only if the caller of the simulation reads them (to write a timeline, say).

The step graph itself, as the builder makes it, is a ``ColumnarGraph``: its nodes' fields in one
list each. The templates and the step index read those lists, the index keeps the step's ops and
ranks (``GraphIndex.source_ops``, ``source_ranks``) for the cost model and the metrics, and the
few step nodes something asks for one by one (a copy on the critical path, an uneven
all-to-all's members) are made on their own: an analytic evaluation makes none of the step
graph's ``Node`` objects. Nine in ten of a built step graph's nodes at 128 GPUs are the ranks'
dense chains, laid down from one template (``NodeColumns.chain_region``): their dependencies,
ops, phases and queues are read off the template and spread over the chains in arrays
(``recsim.graph.dep_rows``), the other nodes one by one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from itertools import chain, repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from recsim.graph.dep_rows import dep_arrays, region_short, region_spread
from recsim.graph.index import GraphIndex, OpTable, Rows, rows
from recsim.graph.ir import (
    NODE_FIELDS,
    Collective,
    Embedding,
    ExecutionGraph,
    GraphNodes,
    Node,
    NodeColumns,
    Stream,
    node_columns,
)

_COLLECTIVE_FIELDS = ("op", "key", "group", "bytes", "dtype", "send_bytes", "recv_bytes", "algorithm")
if tuple(f.name for f in fields(Collective)) != _COLLECTIVE_FIELDS:  # pragma: no cover - IR changed
    raise ImportError("recsim.graph.steps copies Collective field by field: update _COLLECTIVE_FIELDS")


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Any, ...]:
    """The ``__set__`` of each slot of ``cls`` (a slots dataclass), in ``names`` order."""
    return tuple(vars(cls)[name].__set__ for name in names)


_SET_NODE = _slot_setters(Node, NODE_FIELDS)
_SET_COLLECTIVE = _slot_setters(Collective, _COLLECTIVE_FIELDS)


@dataclass(frozen=True)
class _Templates:
    """What every copy of each step node shares, worked out once per step graph.

    ``first[i]`` and ``later[i]`` are node ``i``'s dependencies in the first step and in the
    others, as ids relative to the step's offset; ``crossing`` lists the nodes with cross-step
    ones (a few per rank: ``_later_rows`` visits those, not every node). In the later steps the
    cross-step ones follow the own ones without being deduplicated against them: with ids in
    0..stride-1 the own ones fall in the step's block and the cross-step ones in the previous
    block, so they cannot repeat. ``plain``: some id is negative (never built, but a graph may
    have them), and the copies take the plain route (``cross`` then deduplicated with the
    shifted own ones). ``table``: the step graph's ops (``GraphIndex.op_table``), read here first
    and handed to the step index.
    """

    stride: int
    cross: list[list[int] | None]
    plain: bool
    crossing: list[int]  # the nodes whose ``cross`` is not None, in order
    table: OpTable
    # How many dependencies each node of ``first`` has, where they are read off the columns as
    # they are (the builder's): ``_cross_dependencies`` reads them too, and the chained index's
    # rows end where they add up to (``rows``). None where ``first`` deduplicated them.
    first_lengths: npt.NDArray[np.intp] | None = None
    # ``first``'s dependencies one after the other, where the builder's dense chains gave them in
    # arrays (``recsim.graph.dep_rows``): ``rows(first)``'s flat part, not read again.
    first_flat: npt.NDArray[np.intp] | None = None
    # The builder's columns, whose dependencies ``first`` copies when first read (None: ``of``
    # has set ``first``).
    source: NodeColumns | None = None

    @classmethod
    def of(cls, graph: ExecutionGraph) -> _Templates:
        # The fields read, from the graph's columns where it has them (its nodes are then not
        # made: ``ColumnarGraph``), else from its nodes.
        columns = _columns(graph)
        ids = columns.ids
        positional = columns.positional_ids  # ids 0..n-1 in order: the stride is their count
        stride = len(ids) if positional else max(ids, default=-1) + 1
        table = OpTable.of_column(columns.ops, columns.chain_region)
        first_flat = None
        first: list[tuple[int, ...]] | None
        if columns.unique_deps and columns.chain_region is not None:
            # The builder's dense chains, in arrays from their template (``recsim.graph.dep_rows``):
            # the column's entries outside them read, theirs left as they are (perhaps not made:
            # ``NodeColumns.pending_deps``).
            first_flat, lengths = dep_arrays(columns.pending_deps, columns.chain_region)  # type: ignore[arg-type]
        else:
            lengths = np.fromiter(map(len, columns.deps), dtype=np.intp, count=len(columns.deps))
        cross, crossing = _cross_dependencies(graph, columns, table, lengths)
        first_lengths = None
        if columns.unique_deps:  # the builder's: tuples without repeats already
            # The column as it is, copied when first read (``_Templates.first``): the chains'
            # tuples are made then, if ever.
            first = None
            first_lengths = lengths
        else:
            # Most nodes have at most one dependency, which needs no de-duplication (a tuple of
            # one is its own copy; a reader may have left a list).
            first = [
                deps if len(deps) < 2 and type(deps) is tuple else tuple(dict.fromkeys(deps))
                for deps in columns.deps
            ]
        plain = not positional and min(ids, default=0) < 0
        made = cls(stride, cross, plain, crossing, table, first_lengths, first_flat, columns)
        if first is not None:
            made.__dict__["first"] = first
        return made

    @cached_property
    def first(self) -> list[tuple[int, ...]]:
        """Per node, its dependencies in the first step (the builder's column, copied)."""
        assert self.source is not None  # ``of`` sets ``first`` where it has no column to read
        return list(self.source.deps)

    @cached_property
    def later(self) -> list[tuple[int, ...]]:
        """Per node, its dependencies from the second step on (made when the copies are: the
        chained index works them out in arrays, ``_later_rows``)."""
        stride = self.stride
        return [
            own if extra is None else (*own, *[i - stride for i in extra])
            for own, extra in zip(self.first, self.cross, strict=True)
        ]

    def deps(self, node: Node, i: int, step: int) -> tuple[int, ...]:
        """The dependencies of ``node`` (step node ``i``) in its copy for ``step``."""
        if step == 0:
            return self.first[i]
        offset = step * self.stride
        extra = self.cross[i]
        if self.plain and extra is not None:
            prev = offset - self.stride
            return tuple(dict.fromkeys([*[d + offset for d in node.deps], *[e + prev for e in extra]]))
        return tuple([d + offset for d in self.later[i]])


def chain_steps(graph: ExecutionGraph, steps: int) -> ExecutionGraph:
    """``steps`` consecutive copies of the step ``graph`` with the cross-step dependencies."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    templates = _Templates.of(graph)
    return ExecutionGraph(
        graph.ranks, _copies(graph, steps, templates), _chained_metadata(graph, steps, templates)
    )


def _chained_metadata(graph: ExecutionGraph, steps: int, templates: _Templates) -> dict[str, Any]:
    metadata = dict(graph.metadata)
    metadata["steps"] = steps
    metadata["step_stride"] = templates.stride
    return metadata


def _copies(graph: ExecutionGraph, steps: int, templates: _Templates) -> list[Node]:
    """Every step's copies of the step graph's nodes, in step then graph order."""
    step_nodes = graph.nodes
    stride, first, later = templates.stride, templates.first, templates.later
    set_id, set_rank, set_name, set_stream, set_op, set_deps, set_lane, set_duration, set_start, set_phase = (
        _SET_NODE
    )
    set_c_op, set_key, set_group, set_bytes, set_dtype, set_send, set_recv, set_algorithm = _SET_COLLECTIVE
    new = object.__new__
    nodes: list[Node] = []
    append = nodes.append
    for s in range(steps):
        offset = s * stride
        suffix = f"#{s}"
        keys: dict[str, str] = {}
        for i, (n, template) in enumerate(zip(step_nodes, first if s == 0 else later, strict=True)):
            if s == 0:
                deps = template
            elif templates.plain:
                deps = templates.deps(n, i, s)
            else:
                deps = tuple([d + offset for d in template])
            op = n.op
            if isinstance(op, Collective):
                key = keys.get(op.key)
                if key is None:
                    key = keys[op.key] = op.key + suffix
                copy = new(Collective)
                set_c_op(copy, op.op)
                set_key(copy, key)
                set_group(copy, op.group)
                set_bytes(copy, op.bytes)
                set_dtype(copy, op.dtype)
                set_send(copy, op.send_bytes)
                set_recv(copy, op.recv_bytes)
                set_algorithm(copy, op.algorithm)
                op = copy
            node = new(Node)
            set_id(node, n.id + offset)
            set_rank(node, n.rank)
            set_name(node, n.name + suffix)
            set_stream(node, n.stream)
            set_op(node, op)
            set_deps(node, deps)
            set_lane(node, n.lane)
            set_duration(node, n.duration_s)
            set_start(node, n.start_s)
            set_phase(node, n.phase)
            append(node)
    return nodes


def _columns(graph: ExecutionGraph) -> NodeColumns:
    """The graph's node columns: its own (``ColumnarGraph``), else read from its nodes (only the
    fields the templates read: ids, ranks, streams, ops, deps and phases)."""
    columns = node_columns(graph)
    if columns is not None:
        return columns
    nodes = graph.nodes
    return NodeColumns(
        ids=[n.id for n in nodes],
        ranks=[n.rank for n in nodes],
        streams=[n.stream for n in nodes],
        ops=[n.op for n in nodes],
        deps=[n.deps for n in nodes],
        phases=[n.phase for n in nodes],
    )


def _cross_dependencies(
    graph: ExecutionGraph,
    columns: NodeColumns,
    table: OpTable,
    lengths: npt.NDArray[np.intp] | None = None,
) -> tuple[list[list[int] | None], list[int]]:
    """Per node of the step graph (``columns``, its nodes' fields; ``table``, its ops as an
    ``OpTable``; ``lengths``, how many dependencies each node has, where the caller counted
    them): the previous step's nodes (their ids in the step graph) its copies from the
    second step on wait for, deduplicated in order; None when it waits for none. And the nodes
    that wait for some, in order (``_Templates.crossing``)."""
    inputs: dict[int, list[int]] = defaultdict(list)
    optimizer: dict[int, list[int]] = defaultdict(list)
    emb_update: dict[tuple[int, str], list[int]] = defaultdict(list)
    ids, ranks, phases, ops = columns.ids, columns.ranks, columns.phases, columns.ops
    # The dependency column as it is: its chains' entries may not be made
    # (``NodeColumns.pending_deps``); ``lengths`` counts them where given, and a chain node's
    # entry is read below only to tell whether it has none, which its count tells.
    deps = columns.pending_deps if lengths is not None else columns.deps
    n = len(ids)
    # Each node's phase as a small int, read in one pass in C, and the ops' kinds from their
    # distinct ones: the nodes of each kind are then found in arrays, and Python visits only
    # those (a few per rank), not every node twice.
    region = columns.chain_region
    if region is not None and region.bases:  # a builder's chains: their phases read once
        short = region_short(phases, region)
        phase = region_spread(np.fromiter(map(_PHASES.get, short, repeat(0)), np.int8, len(short)), region)
    else:
        phase = np.fromiter(map(_PHASES.get, phases, repeat(0)), dtype=np.int8, count=n)
    # The distinct ops that are lookups, read in C into an array (a list of bools converted by
    # ``np.asarray`` costs several hundred machine instructions an element), and the updating
    # ones among them (a backward or update pass) found among those few alone.
    distinct = table.ops
    lookup = np.fromiter(map(isinstance, distinct, repeat(Embedding)), dtype=bool, count=len(distinct))
    looked = lookup.nonzero()[0].tolist()
    update = np.zeros(len(distinct), dtype=bool)
    update[[k for k in looked if distinct[k].pass_ in ("backward", "update")]] = True  # type: ignore[union-attr]
    # The input pipeline is one batch deep on the device (a double buffer): step s + 1 copies batch
    # s + 2 to the GPU once step s is done with batch s + 1's buffer (its optimizer). The host's
    # loading runs ahead (loader workers prefetch several batches). Unbounded, every step's copy
    # and index exchange ran at the start and none inside the measured step. A runtime whose host
    # thread loads and copies each batch in program order (eager) bounds it on the host already.
    bounded_input = graph.metadata.get("input_prefetch", "one_batch") == "one_batch"
    # Each rank's first input copy (bounded) is found in the same pass as the lists.
    first_copy: set[int] = set()
    copied: set[int] = set()
    streams = columns.streams
    copy = Stream.COPY  # read once: an enum member's class attribute is a slow read (``build._COPY``)
    for i in (phase == _INPUT).nonzero()[0].tolist():
        nid, rank = ids[i], ranks[i]
        inputs[rank].append(nid)
        if bounded_input and streams[i] is copy and rank not in copied:
            copied.add(rank)
            first_copy.add(nid)
    for i in (phase == _OPTIMIZER).nonzero()[0].tolist():
        optimizer[ranks[i]].append(ids[i])
    for i in update[table.number].nonzero()[0].tolist():
        emb_update[(ranks[i], ops[i].table)].append(ids[i])  # type: ignore[union-attr]
    # Nodes that wait for named nodes of the previous step (``carried_dependencies``: a framework
    # that runs the next batch's routed lookups and exchange inside this step, whose interaction
    # then waits for the previous step's exchange; ``recsim.graph.build``).
    carried: dict[int, Sequence[int]] = graph.metadata.get("carried_dependencies") or {}
    # The nodes that may wait for the previous step: a forward lookup or a forward node without
    # dependencies, a rank's first input copy, a carried node. Each is then decided as before.
    maybe = (phase == _FORWARD) & (
        lookup[table.number]
        | ((np.fromiter(map(len, deps), np.intp, n) if lengths is None else lengths) == 0)
    )
    if first_copy:
        if columns.positional_ids:  # an id is its position (the builder's columns)
            maybe[list(first_copy)] = True
        else:
            maybe |= np.fromiter(map(first_copy.__contains__, ids), dtype=bool, count=n)
    if carried:
        maybe |= np.fromiter(map(carried.__contains__, ids), dtype=bool, count=n)
    cross: list[list[int] | None] = [None] * n
    crossing: list[int] = []
    # Where ids are positions (the builder's), no id is in two nodes and a node is of one phase:
    # each list above holds no repeats and two lists of two phases share none, so joining two is
    # without repeats already (a ``dict.fromkeys`` costs some 2,000 machine instructions, about
    # 80 a step graph at 128 GPUs; callgrind).
    distinct_ids = columns.positional_ids
    for i in maybe.nonzero()[0].tolist():
        nid, rank, op = ids[i], ranks[i], ops[i]
        extra: list[int] | None = None
        if nid in first_copy:
            extra = list(optimizer[rank]) or None
        elif phases[i] == "forward":
            if isinstance(op, Embedding):
                extra = [*inputs[rank], *emb_update[(rank, op.table)]]
            elif not (deps[i] if lengths is None else lengths[i]):
                extra = [*inputs[rank], *optimizer[rank]]
            if extra is not None and not distinct_ids:
                extra = list(dict.fromkeys(extra))
        if carried and nid in carried:
            extra = list(dict.fromkeys([*(extra or []), *carried[nid]]))
        if extra is not None:
            cross[i] = extra
            crossing.append(i)
    return cross, crossing


# The phases ``_cross_dependencies`` reads, as small ints (0: any other).
_INPUT, _OPTIMIZER, _FORWARD = 1, 2, 3
_PHASES = {"input": _INPUT, "optimizer": _OPTIMIZER, "forward": _FORWARD}


class ChainedGraph(ExecutionGraph):
    """``chain_steps(step, steps)`` with its nodes made when first read (module docstring).

    It is an ``ExecutionGraph`` in every respect: ``nodes`` (and everything reading it) makes and
    keeps the copies, exactly as ``chain_steps`` makes them, and an equal ``ExecutionGraph``
    compares equal to it. ``index()`` is its ``GraphIndex`` without making them.
    """

    _nodes: list[Node] | None
    _step: ExecutionGraph | None
    _steps: int
    _templates: _Templates | None

    @classmethod
    def lazy(cls, step: ExecutionGraph, steps: int) -> ChainedGraph:
        """``steps`` copies of the step graph ``step`` (which must not change meanwhile)."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        templates = _Templates.of(step)
        graph = cls(step.ranks, None, _chained_metadata(step, steps, templates))
        graph._step, graph._steps, graph._templates = step, steps, templates
        return graph

    def __init__(
        self, ranks: int, nodes: list[Node] | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        # Also what ``dataclasses.replace`` calls: given nodes, the graph is an ordinary one.
        self._step, self._steps, self._templates = None, 0, None
        super().__init__(ranks, nodes, {} if metadata is None else metadata)  # type: ignore[arg-type]

    @property  # type: ignore[override]
    def nodes(self) -> list[Node]:
        if self._nodes is None:
            step, templates = self._step, self._templates
            self._nodes = [] if step is None or templates is None else _copies(step, self._steps, templates)
        return self._nodes

    @nodes.setter
    def nodes(self, value: list[Node] | None) -> None:
        # ``None`` (from ``lazy``) leaves them to be made; anything else is the node list.
        self._nodes = value

    @property
    def made(self) -> bool:
        """Whether the nodes have been made (or were given)."""
        return self._nodes is not None

    def __len__(self) -> int:
        if self._nodes is None and self._step is not None:
            return len(self._step) * self._steps
        return len(self.nodes)

    def node_at(self, position: int) -> Node:
        return self.copy_at(position)

    def copy_at(self, position: int) -> Node:
        """The node at ``position``, made on its own while the graph's nodes are not made."""
        step, templates = self._step, self._templates
        if self._nodes is not None or step is None or templates is None:
            return self.nodes[position]
        size = len(step)
        if position < 0:
            position += size * self._steps
        if not 0 <= position < size * self._steps:
            raise IndexError(f"node position {position} out of range")
        s, i = divmod(position, size)
        n = step.node_at(i)  # made on its own from a built step graph's columns
        suffix = f"#{s}"
        op = n.op
        if isinstance(op, Collective):
            op = Collective(
                op.op,
                op.key + suffix,
                op.group,
                op.bytes,
                op.dtype,
                op.send_bytes,
                op.recv_bytes,
                op.algorithm,
            )
        deps = templates.deps(n, i, s)
        offset = s * templates.stride
        return Node(
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

    def index(self) -> GraphIndex:
        """The graph's ``GraphIndex``: from the step graph's while the nodes are not made."""
        step, templates = self._step, self._templates
        if self._nodes is not None or step is None or templates is None or templates.plain:
            return GraphIndex.of(self)
        # The step's own dependencies are the templates' business: the step index need not read
        # them into lists (through an id map) unless the ids are not positions.
        step_index = GraphIndex.of(step, lazy_deps=True, table=templates.table)
        size, stride = step_index.size, templates.stride
        first: Rows
        later: Rows
        positional = getattr(node_columns(step), "positional_ids", False)
        if stride == size and (positional or step_index.ids == list(range(size))):
            # Ids are positions (as the builder numbers nodes): the templates are in positions,
            # and an id of the previous block (``d - stride``) is that position less the size.
            if templates.first_flat is not None and templates.first_lengths is not None:
                first = (templates.first_flat, templates.first_lengths.cumsum(dtype=np.intp))
            else:
                first = rows(templates.first, templates.first_lengths)
            if first[0].size and not 0 <= int(first[0].min()) <= int(first[0].max()) < size:
                step_index.dep_flat  # noqa: B018 - a missing dependency: its ``KeyError``, as ``of`` raises
            # Ids 0..size-1: no map to make to know they are unique, and their array is a range.
            step_index._keep(unique_ids=True, ids_array=np.arange(size, dtype=np.int64))
            later = _later_rows(first, templates.cross, stride, templates.crossing)
        else:
            position = step_index.position
            step_index.dep_flat  # noqa: B018 - a missing dependency's ``KeyError``, as ``of`` raises
            if len(position) != size:  # duplicate ids: positions would be ambiguous
                return GraphIndex.of(self)
            # The templates in positions: an id ``d`` of the step's block is ``position[d]``, one
            # of the previous block (``d - stride``) that position less the step's size.
            first_lists = [[position[d] for d in deps] for deps in templates.first]
            first = rows(first_lists)
            later = rows(
                [
                    own if extra is None else [*own, *[position[e] - size for e in extra]]
                    for own, extra in zip(first_lists, templates.cross, strict=True)
                ]
            )
        return step_index.repeated(GraphNodes(self), self._steps, stride, first, later)


def _later_rows(
    first: Rows, cross: Sequence[list[int] | None], stride: int, crossing: Sequence[int] | None = None
) -> Rows:
    """``rows(_Templates.later)`` from ``first`` (``rows(_Templates.first)``) and the cross-step
    ids, in arrays: each node's own dependencies, then its cross-step ones less ``stride``.
    ``crossing``: the nodes whose ``cross`` is not None (``_Templates.crossing``), where known:
    only those are read.

    The cross-step ids are inserted into ``first``'s flat array, each after its node's own (at
    the node's end in ``first``), as ``np.insert`` places values before sorted indices: the
    ``k``-th inserted id lands at its insertion point plus ``k``. Only the few crossing nodes (a
    few per rank) are spread by their counts; spreading every node's own dependencies to its new
    start (two ``repeat`` over all the nodes) cost about twice as much (callgrind, 128 GPUs:
    0.55 -> 0.31 M machine instructions a call)."""
    own_flat, own_end = first
    if crossing is None:
        crossing = [i for i, extra in enumerate(cross) if extra is not None]
    # Read in C (``map``), not by a comprehension.
    extras: list[list[int]] = list(map(cross.__getitem__, crossing))  # type: ignore[arg-type]
    counts = np.fromiter(map(len, extras), dtype=np.intp, count=len(extras))
    extra_flat = np.fromiter(chain.from_iterable(extras), np.intp) - stride
    # Where each cross-step id goes in the new flat array: after its node's own dependencies and
    # every id inserted before it (the crossing nodes are in order, so the points do not decrease).
    where = np.asarray(crossing, dtype=np.intp)  # (converted once: it indexes twice)
    at = own_end[where].repeat(counts)
    at += np.arange(at.size, dtype=np.intp)
    flat = np.empty(own_flat.size + at.size, dtype=np.intp)
    flat[at] = extra_flat
    own = np.ones(flat.size, dtype=bool)
    own[at] = False
    flat[own] = own_flat
    # A node's row ends past every id inserted up to it, its own included.
    inserted = np.zeros(own_end.size, dtype=np.intp)
    inserted[where] = counts
    end = own_end + inserted.cumsum()
    return flat, end
