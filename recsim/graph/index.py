"""Integer arrays over an execution graph's nodes, worked out once and shared by every pass.

The scheduler (``recsim.graph.schedule``), the invariant checks (``recsim.metrics.invariants``) and
the timeline metrics (``recsim.engine.timeline``) all walk the same structure of a graph: the
in-order queue of every node and the node before it in that queue, the nodes it depends on, and the
vertex it collapses into (a collective's members are one vertex: they start and finish together).
Reading that off ``Node`` objects touches several attributes of each of 10^4-10^6 nodes, which in
Python costs more than the scheduling itself; a ``GraphIndex`` reads them once and keeps them as
plain lists of ints indexed by **position** (a node's place in ``graph.nodes``), so that each pass
is integer arithmetic over lists, or numpy over the same arrays.

The index is a snapshot: it describes the node list it was built from, and a graph edited after
that needs a new one.

What is derived from the lists (the id -> position map, the numpy arrays) is worked out when first
asked for; where the index is made from such arrays in the first place (``of``, ``repeated``), it
keeps them rather than converting its lists back (``_keep``), and the map of a chained graph, which
its metrics no longer need (the window carries its positions), is never made.

The index of a chained graph (``repeated``) goes further: it is made from its arrays alone
(``_ArrayIndex``) and makes each list field from its array only when something reads it. The
analytic engine, the invariant checks and the metrics read the arrays, so an evaluation at 128
GPUs makes none of the seven lists of 10^4 ints (each int an object of its own), which cost about
as much to make as to free.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate, chain, groupby, pairwise, repeat
from operator import attrgetter
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from recsim.graph.dep_rows import DenseChainRegion, region_queues, region_short, region_spread, tiled
from recsim.graph.ir import Collective, ExecutionGraph, GraphNodes, Node, Op, Stream, node_columns

# ``Stream.X.value`` goes through the enum's descriptor machinery on every access, which shows up
# when it is read once per node of a large graph: look the string up in a constant table instead.
STREAM_VALUES: dict[object, str] = {s: s.value for s in Stream}


def stream_value(stream: Stream | str) -> str:
    """The string value of a stream (a ``Stream`` or, from some readers, its plain string)."""
    found = STREAM_VALUES.get(stream)
    return found if found is not None else str(getattr(stream, "value", stream))


# Rows of ints in compressed form: (flat, end), row ``i`` being ``flat[end[i - 1]:end[i]]``.
Rows = tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]


def rows(values: Sequence[Sequence[int]], lengths: npt.NDArray[np.intp] | None = None) -> Rows:
    """``values`` (a sequence of rows of ints) in compressed form; ``lengths``: each row's length,
    where the caller has counted them (the same ends, summed in an array)."""
    if lengths is None:
        end = np.fromiter(accumulate(map(len, values)), dtype=np.intp, count=len(values))
    else:
        end = lengths.cumsum(dtype=np.intp)
    flat = np.fromiter(chain.from_iterable(values), dtype=np.intp, count=int(end[-1]) if end.size else 0)
    return flat, end


def row_lengths(end: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """Each row's length from the rows' ends (``Rows``): ``np.diff(end, prepend=0)``, without the
    concatenation ``prepend`` makes (a third of its time on 10^3-10^4 rows)."""
    lengths = np.empty_like(end)
    lengths[:1] = end[:1]
    np.subtract(end[1:], end[:-1], out=lengths[1:])
    return lengths


#: How many distinct small-int sort keys fit a 16-bit int, which numpy's stable sort (``kind=
#: "stable"``) sorts by radix rather than by timsort: cast to it, the same keys give the same order.
_RADIX_KEYS = int(np.iinfo(np.int16).max) + 1


# A collective op's key (``GraphIndex.of``).
_KEY = attrgetter("key")


@dataclass(frozen=True, eq=False)
class OpTable:
    """A sequence of ops as its distinct ops and, per position, which of them it holds.

    ``ops``: each op object once (by identity, not value: equal ops made apart stay apart), in
    the order of its first position; ``number[i]``: the place in ``ops`` of the op at position
    ``i``. A step graph's nodes share few ops (a dense layer's on every rank, a collective's part
    among the ranks that send and receive alike: about 100 for 900 nodes at 128 GPUs), so a
    reader that works something out per op does it for ``ops`` and spreads it by ``number`` in
    one array call: the durations, the interference slowdowns, the collectives and the window's
    host bytes each took a pass over every node to find the distinct ops again.
    """

    ops: list[Op]
    number: npt.NDArray[np.intp]

    @classmethod
    def of(cls, ops: Sequence[Op]) -> OpTable:
        """The table of ``ops`` (which must stay alive while it is read: ids name them)."""
        n = len(ops)
        # Sorting the ids groups each op's positions (a stable sort: the first is the earliest);
        # the groups are then renumbered by their first position.
        ids = np.fromiter(map(id, ops), dtype=np.uint64, count=n)
        order = ids.argsort(kind="stable")
        ordered = ids[order]
        fresh = np.empty(n, dtype=bool)
        fresh[:1] = True
        np.not_equal(ordered[1:], ordered[:-1], out=fresh[1:])
        firsts = order[fresh]  # each group's first position, groups in id order
        by_first = firsts.argsort()
        renumber = np.empty(by_first.size, dtype=np.intp)
        renumber[by_first] = np.arange(by_first.size, dtype=np.intp)
        number = np.empty(n, dtype=np.intp)
        number[order] = renumber[fresh.cumsum() - 1]
        return cls(list(map(ops.__getitem__, firsts[by_first].tolist())), number)  # (in C)

    @classmethod
    def of_column(cls, ops: Sequence[Op], region: DenseChainRegion | None) -> OpTable:
        """``of(ops)`` for a builder's column of ops, whose dense chains (``region``) hold the same
        ops chain after chain: the table of the column with one chain, spread over every chain
        (``recsim.graph.dep_rows``: the same first appearances, the same numbers)."""
        if region is None or not region.bases:
            return cls.of(ops)
        table = cls.of(region_short(ops, region))
        return cls(table.ops, region_spread(table.number, region))


@dataclass(frozen=True, eq=False)
class GraphIndex:
    """The structure of a graph by node position (see the module docstring).

    Dependencies are kept as in the nodes, repeats included, in compressed rows: node ``i``'s
    are ``dep_flat[dep_end[i - 1]:dep_end[i]]`` (``dep_end[-1]`` reads as 0 for ``i = 0``).
    Vertices are numbered by first appearance in graph order; ``vertex_head[v]`` is the position of
    vertex ``v``'s first node and ``members[v]`` lists the positions of a collective's nodes in
    graph order (only for collectives).
    """

    nodes: Sequence[Node]
    ids: list[int]
    queue: list[int]  # position -> number of its in-order queue
    queue_keys: list[tuple[int, str, int]]  # queue number -> (rank, stream value, lane)
    prev_in_queue: list[int]  # position -> position of the previous node of its queue, or -1
    dep_end: list[int]
    dep_flat: list[int]
    vertex: list[int]
    vertex_head: list[int]
    members: dict[int, list[int]]
    # Set by ``repeated``: (step nodes, steps) when position ``s * n + i`` is step ``s``'s copy of
    # step node ``i`` (the same rank, stream, lane, phase and op, but a collective's key).
    copies: tuple[Sequence[Node], int] | None = None

    @classmethod
    def of(
        cls, graph: ExecutionGraph, *, lazy_deps: bool = False, table: OpTable | None = None
    ) -> GraphIndex:
        """Read the structure of ``graph`` (``KeyError`` for a dependency on a missing node).

        Each attribute is read in one comprehension over the nodes and the rest is done on the
        resulting lists (with numpy where a pass would otherwise loop in Python).
        ``lazy_deps``: the dependency lists and the id -> position map are made only when read
        (``_LazyDepsIndex``), and so is the ``KeyError``: for a caller that takes the structure
        but the dependencies (the chained index has its own, ``recsim.graph.steps``). ``table``:
        the graph's ops as an ``OpTable``, where the caller has made it (the chained graph's
        templates read it first)."""
        columns = node_columns(graph)
        nodes: Sequence[Node]
        deps: Sequence[tuple[int, ...]] | None
        if columns is not None:
            # A built graph's columns (``ColumnarGraph``): its nodes are not made, here or by the
            # index, whose ``nodes`` make only the ones asked for (``GraphNodes``).
            nodes, ids, ops = GraphNodes(graph), columns.ids, columns.ops
            # The dependency column only where read now: its chains' tuples may not be made
            # (``NodeColumns.leave_chain_deps``), and a lazy index makes them if asked.
            deps = None if lazy_deps else columns.deps
            keys: Iterable[tuple[int, Stream | str, int]] = zip(
                columns.ranks, columns.streams, columns.lanes, strict=True
            )
        else:
            nodes = graph.nodes
            ids = [n.id for n in nodes]
            deps = None
            keys = ((n.rank, n.stream, n.lane) for n in nodes)
        size = len(ids)
        if lazy_deps:
            position: dict[int, int] | None = None
            dep_end: list[int] = []
            dep_flat: list[int] = []
        else:
            position = dict(zip(ids, range(size), strict=True))
            if deps is None:
                deps = [n.deps for n in nodes]
            dep_end = list(accumulate(map(len, deps)))
            dep_flat = list(map(position.__getitem__, chain.from_iterable(deps)))
        # Queues numbered by first appearance. The key holds the stream itself: a ``StrEnum``
        # hashes and compares as its value, so a plain-string stream from a reader lands in the
        # same queue; any other kind of stream is merged by value below.
        numbers: dict[tuple[int, Stream | str, int], int] = {}
        region = columns.chain_region if columns is not None else None
        if region is not None and region.bases:
            # A builder's dense chains (``recsim.graph.dep_rows``): their queues from the template,
            # the nodes before and after them one by one, numbered in the same order.
            start, stop = region.span
            ranks, streams, lanes = columns.ranks, columns.streams, columns.lanes  # type: ignore[union-attr]
            head = [
                numbers.setdefault(key, len(numbers))
                for key in zip(ranks[:start], streams[:start], lanes[:start], strict=True)
            ]
            middle = region_queues(region, numbers)  # type: ignore[arg-type]
            tail = [
                numbers.setdefault(key, len(numbers))
                for key in zip(ranks[stop:], streams[stop:], lanes[stop:], strict=True)
            ]
            queue_array = np.concatenate(
                (np.asarray(head, dtype=np.intp), middle, np.asarray(tail, dtype=np.intp))
            )
        else:
            queue_array = np.asarray([numbers.setdefault(key, len(numbers)) for key in keys], dtype=np.intp)
        values = STREAM_VALUES  # ``stream_value``, its common case inline (a queue per rank and lane)
        queue_keys = [
            (rank, values[stream] if stream in values else stream_value(stream), lane)
            for rank, stream, lane in numbers
        ]
        if len(set(queue_keys)) != len(queue_keys):
            canonical: dict[tuple[int, str, int], int] = {}
            renumber = [canonical.setdefault(key, len(canonical)) for key in queue_keys]
            queue_array = np.asarray(renumber, dtype=np.intp)[queue_array]
            queue_keys = list(canonical)
        # The previous node of each queue: neighbours in a stable sort by queue (of 16-bit queue
        # numbers where they fit, which numpy's stable sort takes by radix: the same order, in
        # half the machine instructions of the sort of 64-bit ints, callgrind, 1,644 nodes).
        by_queue = queue_array.astype(np.int16) if len(numbers) <= _RADIX_KEYS else queue_array
        order = by_queue.argsort(kind="stable")
        same = queue_array[order[1:]] == queue_array[order[:-1]]
        prev = np.full(size, -1, dtype=np.intp)
        prev[order[1:][same]] = order[:-1][same]
        # Vertices: every node is one, except that a collective's later members join its first.
        if columns is None:
            ops = [n.op for n in nodes]
        # The collectives found among the distinct ops (``OpTable``), not by a test per node; the
        # table is kept for the index's other readers (``op_table``).
        if table is None or table.number.size != len(ops):
            table = OpTable.of(ops)
        # Per collective node its key, and the first node of that key (its vertex's head), read
        # in C (``map``, ``zip``, ``dict``) rather than by comprehensions, whose turns cost more
        # (with the members below: 2.09 -> 2.04 M machine instructions for the step index at 128
        # GPUs, 135 collective nodes; callgrind).
        is_collective = np.fromiter(
            map(isinstance, table.ops, repeat(Collective)), dtype=bool, count=len(table.ops)
        )
        at = is_collective[table.number].nonzero()[0]
        collectives = at.tolist()
        keys = list(map(_KEY, map(ops.__getitem__, collectives)))
        # The first position of each key: the last one a dict keeps of the pairs taken backwards.
        first_of_key = dict(zip(reversed(keys), reversed(collectives), strict=True))
        heads = list(map(first_of_key.__getitem__, keys))
        is_head = np.ones(size, dtype=bool)
        head_of = np.fromiter(heads, dtype=np.intp, count=len(heads))
        is_head[at] = head_of == at
        number = is_head.cumsum() - 1
        vertex_array = number.copy()
        vertex_array[at] = number[head_of]
        # Each collective's positions in order, keyed by its vertex: the positions sorted (stably)
        # by their head and cut where it changes, in C; a group's head is its first position, so
        # the groups come in the order of their first appearance, as a loop over the nodes adds them.
        head_at = dict(zip(collectives, heads, strict=True)).__getitem__
        members = {
            number.item(head): list(group)
            for head, group in groupby(sorted(collectives, key=head_at), key=head_at)
        }
        # ``member_rows`` and ``collective_positions_array`` from the arrays at hand: the members
        # one collective after the other are the collective positions sorted stably by their head
        # (as ``members`` is made), and the positions in order are ``at`` itself (an array read
        # back from ``members`` cost two conversions of every member).
        member_flat = at[head_of.argsort(kind="stable")]
        member_bounds = [0, *accumulate(map(len, members.values()))]
        head_array = is_head.nonzero()[0]
        arrays: dict[str, object] = {
            "queue_array": queue_array,
            "prev_in_queue_array": prev,
            "vertex_array": vertex_array,
            "vertex_head_array": head_array,
            "member_rows": (list(members), member_flat, member_bounds),
            "collective_positions_array": at,
        }
        # The ops (and a built graph's ranks) by position, read above: kept for the readers
        # (``source_ops``, ``source_ranks``).
        arrays["source_ops"] = ops
        arrays["op_table"] = table
        if columns is not None:
            arrays["source_ranks"] = columns.ranks
        if position is None:
            if columns is not None:  # the dependencies, read from the columns if asked for
                arrays["_node_columns"] = columns
            # The fields but the dependencies, set as the dataclass's ``__init__`` would set them;
            # the lists of the queues' previous nodes, vertices and heads are made from their
            # arrays when read (the chained index reads the arrays only).
            lazy = object.__new__(_LazyDepsIndex)
            lazy.__dict__.update(
                nodes=nodes,
                ids=ids,
                queue_keys=queue_keys,
                members=members,
                copies=None,
            )
            return lazy._keep(**arrays)
        vertex, heads, queue = vertex_array.tolist(), head_array.tolist(), queue_array.tolist()
        index = cls(nodes, ids, queue, queue_keys, prev.tolist(), dep_end, dep_flat, vertex, heads, members)
        return index._keep(position=position, **arrays)

    def repeated(
        self,
        nodes: Sequence[Node],
        steps: int,
        stride: int,
        first: Rows,
        later: Rows,
    ) -> GraphIndex:
        """The index of ``steps`` copies of this graph's nodes, as ``chain_steps`` makes them.

        ``nodes`` are the copies: step ``s``'s copy of node ``i`` at position ``s * n + i``, its id
        offset by ``s * stride``, a collective's key made unique to its step (so that a copy's
        members make one vertex, as the original's do). The copies' dependencies replace the
        original's: row ``i`` of ``first`` (first step) and of ``later`` (the others) are node
        ``i``'s, as positions relative to the start of its step (negative ones reach into the
        previous step), in compressed rows (``rows``).
        Equal to ``GraphIndex.of`` the chained graph, without reading its nodes.
        """
        n, vertices = self.size, self.vertices
        # Everything but the dependencies repeats with an offset per step: the step's first
        # position (``shift``), id (``stride``) or vertex; as (steps, n) arrays, raveled.
        # (One column of step numbers for the three offsets.)
        step_column = np.arange(steps, dtype=np.intp)[:, None]  # ids: int64 from ``ids_array``
        shift = step_column * n
        ids = self.ids_array[None, :] + step_column * stride
        vertex = self.vertex_array[None, :] + step_column * vertices
        heads = self.vertex_head_array[None, :] + shift
        # A copy's first node in a queue follows the previous copy's last node of that queue.
        prev = self.prev_in_queue_array
        last_of_queue = np.full(len(self.queue_keys), -1, dtype=np.intp)
        np.maximum.at(last_of_queue, self.queue_array, np.arange(n, dtype=np.intp))
        later_prev = np.where(prev >= 0, prev, last_of_queue[self.queue_array] - n)
        # The steps' rows written in place (``out``), not made apart and concatenated: a copy of
        # each later step's row less (and callgrind counts a large copy a byte an instruction).
        prev_all = np.empty((steps, n), dtype=np.intp)
        prev_all[0] = prev
        np.add(later_prev[None, :], shift[1:], out=prev_all[1:])
        # Dependencies: the first step's template, then the later steps' shifted.
        first_flat, first_end = first
        later_flat, later_end = later
        later_steps = np.arange(steps - 1, dtype=np.intp)[:, None]
        dep_flat = np.empty(first_flat.size + (steps - 1) * later_flat.size, dtype=np.intp)
        dep_flat[: first_flat.size] = first_flat
        np.add(
            later_flat[None, :],
            shift[1:],
            out=dep_flat[first_flat.size :].reshape(steps - 1, later_flat.size),
        )
        dep_end = np.empty((steps, n), dtype=np.intp)
        dep_end[0] = first_end
        np.add(later_end[None, :], first_flat.size + later_steps * later_flat.size, out=dep_end[1:])
        # The collectives' members, step after step: the step's in compressed rows
        # (``member_rows``), offset per step in one array call and cut into the lists ``members``
        # holds; the rows and the sorted positions (``collective_positions_array``) are kept, as
        # the schedule and the metrics read them so (a comprehension per member cost more).
        step_vertices, step_flat, step_bounds = self.member_rows
        member_flat = (step_flat[None, :] + shift).ravel()
        listed = member_flat.tolist()
        member_bounds = [b + s * step_flat.size for s in range(steps) for b in step_bounds[:-1]]
        member_bounds.append(steps * step_flat.size)
        member_vertices = [v + s * vertices for s in range(steps) for v in step_vertices]
        members = {
            v: listed[a:b] for v, a, b in zip(member_vertices, member_bounds, member_bounds[1:], strict=False)
        }
        # The lists are made from these arrays when first read (``_ArrayIndex``): an analytic
        # evaluation reads the arrays only, and lists of 10^4-10^6 ints (an object per int) would
        # cost their making and their freeing.
        index = _ArrayIndex._of_arrays(
            nodes,
            list(self.queue_keys),
            members,
            (self.nodes, steps),
            ids_array=ids.ravel(),
            queue_array=tiled(self.queue_array, steps),
            prev_in_queue_array=prev_all.ravel(),
            dep_end_array=dep_end.ravel(),
            dep_flat_array=dep_flat,
            vertex_array=vertex.ravel(),
            vertex_head_array=heads.ravel(),
        )
        # The step nodes' ops and ranks, where the step index has them (from the graph's columns).
        kept = ("source_ops", "source_ranks", "op_table")
        index._keep(**{k: self.__dict__[k] for k in kept if k in self.__dict__})
        index._keep(
            member_rows=(member_vertices, member_flat, member_bounds),
            collective_positions_array=(self.collective_positions_array[None, :] + shift).ravel(),
        )
        if n and self.unique_ids and stride > int(self.ids_array.max()) - int(self.ids_array.min()):
            # The copies' ids are unique too: each step's lie in a range of their own.
            index._keep(unique_ids=True)
        return index

    @cached_property
    def source_ops(self) -> Sequence[Op]:
        """The op of each node by position; for an index of copies (``repeated``), of each step
        node (``source``), which its copies share but for a collective's key. Read from the
        graph's columns where it has them (``GraphIndex.of``), so that no node is made."""
        nodes = self.copies[0] if self.copies is not None else self.nodes
        return [n.op for n in nodes]

    @cached_property
    def op_table(self) -> OpTable:
        """``source_ops`` as its distinct ops and each position's among them (``OpTable``): what
        the cost model, the interference stretch and the metrics work out once per op rather than
        once per node."""
        return OpTable.of(self.source_ops)

    @cached_property
    def source_ranks(self) -> Sequence[int]:
        """The rank of each node by position (of each step node, as ``source_ops``)."""
        nodes = self.copies[0] if self.copies is not None else self.nodes
        return [n.rank for n in nodes]

    @cached_property
    def source_ranks_array(self) -> npt.NDArray[np.int64]:
        """``source_ranks`` as an array, made once for the metrics that each read it so (the
        kernels' energy and the window's op counts). A node's rank is its queue's (a queue is a
        rank's stream and lane: ``queue_keys``), so the array is the queues' ranks read by the
        nodes' queue numbers (a step node's, for an index of copies), not a list of 10^3-10^5
        ints converted one by one."""
        keys = self.queue_keys
        of_queue = np.fromiter((key[0] for key in keys), dtype=np.int64, count=len(keys))
        size = len(self.copies[0]) if self.copies is not None else self.size
        out: npt.NDArray[np.int64] = of_queue[self.queue_array[:size]]
        return out

    @property
    def kept_ranks(self) -> Sequence[int] | None:
        """``source_ranks`` where the index has them without making nodes (read off a built
        graph's columns), else None."""
        kept: Sequence[int] | None = self.__dict__.get("source_ranks")
        return kept

    def _keep(self, **derived: object) -> GraphIndex:
        """``self`` with the given derived values (``position``, ``ids_array``, ``vertex_array``
        ...) kept as if worked out from its lists, which they equal (arrays element for element,
        with the same dtype): the index was made from them, so working them out again would only
        cost time."""
        for name, value in derived.items():
            self.__dict__[name] = value
        return self

    def source(self, i: int) -> Node:
        """Node ``i``, or for an index of copies (``repeated``) the step node it copies: the same
        rank, stream, lane, phase and op but a collective's key, without making the copy."""
        if self.copies is None:
            return self.nodes[i]
        step_nodes = self.copies[0]
        return step_nodes[i % len(step_nodes)]

    # -- derived arrays ------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self.ids_array) if "ids" not in self.__dict__ else len(self.ids)

    @cached_property
    def kahn_rounds(self) -> KahnRounds:
        """Kahn's rounds of the graph's vertices (``KahnRounds``): the structure alone, worked out
        once however often the graph is scheduled (an evaluation schedules it twice, before and
        after the interference stretch, ``recsim.graph.schedule.asap_timing``)."""
        return _kahn_rounds(self)

    @property
    def vertices(self) -> int:
        return len(self.vertex_head_array) if "vertex_head" not in self.__dict__ else len(self.vertex_head)

    def deps_of(self, i: int) -> list[int]:
        """The positions node ``i`` depends on (repeats kept)."""
        end = self.dep_end_array
        out: list[int] = self.dep_flat_array[end.item(i - 1) if i else 0 : end.item(i)].tolist()
        return out

    def predecessors_of(self, i: int) -> list[int]:
        """Node ``i``'s dependencies and the previous node of its queue (positions)."""
        out = self.deps_of(i)
        prev = self.prev_in_queue_array.item(i)
        if prev >= 0:
            out.append(prev)
        return out

    @cached_property
    def position(self) -> dict[int, int]:
        """Node id -> position (the last one, for an id that appears twice)."""
        return dict(zip(self.ids, range(len(self.ids)), strict=True))

    @cached_property
    def unique_ids(self) -> bool:
        """No id appears twice (a node's id then names one position)."""
        return len(self.position) == self.size

    @cached_property
    def ids_array(self) -> npt.NDArray[np.int64]:
        return np.asarray(self.ids, dtype=np.int64)

    @cached_property
    def dep_child_array(self) -> npt.NDArray[np.intp]:
        """For every entry of ``dep_flat``, the position of the node that has that dependency."""
        return np.repeat(np.arange(self.size, dtype=np.intp), row_lengths(self.dep_end_array))

    @cached_property
    def dep_end_array(self) -> npt.NDArray[np.intp]:
        return np.asarray(self.dep_end, dtype=np.intp)

    @cached_property
    def dep_flat_array(self) -> npt.NDArray[np.intp]:
        return np.asarray(self.dep_flat, dtype=np.intp)

    @cached_property
    def prev_in_queue_array(self) -> npt.NDArray[np.intp]:
        return np.asarray(self.prev_in_queue, dtype=np.intp)

    @cached_property
    def vertex_array(self) -> npt.NDArray[np.intp]:
        return np.asarray(self.vertex, dtype=np.intp)

    @cached_property
    def queue_array(self) -> npt.NDArray[np.intp]:
        return np.asarray(self.queue, dtype=np.intp)

    @cached_property
    def vertex_head_array(self) -> npt.NDArray[np.intp]:
        return np.asarray(self.vertex_head, dtype=np.intp)

    @cached_property
    def stream_classes(self) -> tuple[list[tuple[int, str]], list[int]]:
        """The (rank, stream value) classes of the queues (their lanes merged) and each queue's."""
        number: dict[tuple[int, str], int] = {}
        of_queue = [number.setdefault((rank, stream), len(number)) for rank, stream, _ in self.queue_keys]
        return list(number), of_queue

    @cached_property
    def collective_positions(self) -> list[int]:
        """Positions of the collective nodes, in graph order."""
        return _listed(self.collective_positions_array)

    @cached_property
    def member_rows(self) -> tuple[list[int], npt.NDArray[np.intp], list[int]]:
        """``members`` in compressed form: the collectives' vertices, their members' positions
        one collective after the other (as ``members`` lists them), and where each one's end
        (from 0): the schedule reads the members' durations in one array call
        (``recsim.graph.schedule._vertex_lengths``)."""
        members = self.members
        flat = np.fromiter(chain.from_iterable(members.values()), dtype=np.intp)
        return list(members), flat, [0, *accumulate(map(len, members.values()))]

    @cached_property
    def collective_positions_array(self) -> npt.NDArray[np.intp]:
        """``collective_positions`` as an array (a node is in one collective: no position twice)."""
        flat = np.fromiter(chain.from_iterable(self.members.values()), dtype=np.intp)
        flat.sort()
        return flat


class _QueueListsFromArrays(GraphIndex):
    """The queue and vertex list fields of a ``GraphIndex``, each made from its array when first
    read (and kept): shared by ``_ArrayIndex`` and ``_LazyDepsIndex``, whose makers keep the
    arrays."""

    @cached_property
    def queue(self) -> list[int]:  # type: ignore[override]
        return _listed(self.queue_array)

    @cached_property
    def prev_in_queue(self) -> list[int]:  # type: ignore[override]
        return _listed(self.prev_in_queue_array)

    @cached_property
    def vertex(self) -> list[int]:  # type: ignore[override]
        return _listed(self.vertex_array)

    @cached_property
    def vertex_head(self) -> list[int]:  # type: ignore[override]
        return _listed(self.vertex_head_array)


class _ArrayIndex(_QueueListsFromArrays):
    """A ``GraphIndex`` made from its numpy arrays (``repeated``).

    It holds the arrays (``ids_array`` ... ``vertex_head_array``), equal element for element to the
    list fields they stand for, and makes each list field from its array when first read: the
    analytic engine and the metrics read the arrays, so an evaluation makes none of these lists.
    In every other respect it is a ``GraphIndex`` (its fields read as the same values).
    """

    @classmethod
    def _of_arrays(
        cls,
        nodes: Sequence[Node],
        queue_keys: list[tuple[int, str, int]],
        members: dict[int, list[int]],
        copies: tuple[Sequence[Node], int] | None,
        **arrays: npt.NDArray[np.intp] | npt.NDArray[np.int64],
    ) -> _ArrayIndex:
        if arrays.keys() != set(_ARRAYS):  # pragma: no cover - a caller's bug
            raise ValueError(f"an _ArrayIndex needs the arrays {sorted(_ARRAYS)}")
        index = object.__new__(cls)
        index.__dict__.update(nodes=nodes, queue_keys=queue_keys, members=members, copies=copies, **arrays)
        return index

    # The list fields, each made from its array when first read (and kept).

    @cached_property
    def ids(self) -> list[int]:  # type: ignore[override]
        return _listed(self.ids_array)

    @cached_property
    def dep_end(self) -> list[int]:  # type: ignore[override]
        return _listed(self.dep_end_array)

    @cached_property
    def dep_flat(self) -> list[int]:  # type: ignore[override]
        return _listed(self.dep_flat_array)


class _LazyDepsIndex(_QueueListsFromArrays):
    """A ``GraphIndex`` whose dependency lists (and id -> position map, a field-less derived value
    already) are made from its nodes when first read (``GraphIndex.of(graph, lazy_deps=True)``).

    The chained index (``recsim.graph.steps.ChainedGraph.index``) takes the step index's queues
    and vertices but has its dependencies from its templates: reading the step nodes'
    dependencies into lists, through a map of 10^3-10^5 ids, was a fifth of the step index's
    making for nothing. Read, they are what ``of`` makes (a missing dependency's ``KeyError``
    included)."""

    @cached_property
    def _deps(self) -> tuple[list[int], list[int]]:
        # The graph's dependency column where ``of`` read its columns: its nodes are not made.
        columns = self.__dict__.get("_node_columns")
        deps = [n.deps for n in self.nodes] if columns is None else columns.deps
        position = self.position
        return list(accumulate(map(len, deps))), list(map(position.__getitem__, chain.from_iterable(deps)))

    @cached_property
    def dep_end(self) -> list[int]:  # type: ignore[override]
        return self._deps[0]

    @cached_property
    def dep_flat(self) -> list[int]:  # type: ignore[override]
        return self._deps[1]


# The arrays an ``_ArrayIndex`` is made from, one per list field.
_ARRAYS = (
    "ids_array",
    "queue_array",
    "prev_in_queue_array",
    "dep_end_array",
    "dep_flat_array",
    "vertex_array",
    "vertex_head_array",
)


def _listed(array: npt.NDArray[np.intp] | npt.NDArray[np.int64]) -> list[int]:
    out: list[int] = array.tolist()
    return out


# What the scheduler reads of a round (``KahnRounds.steps``).
RoundStep = tuple[
    int, int, slice, "npt.NDArray[np.intp] | None", "npt.NDArray[np.intp]", bool, "ColumnBlock | None"
]


@dataclass(frozen=True, eq=False)
class KahnRounds:
    """Kahn's algorithm on a graph's vertices, a level at a time, as the structure alone gives it
    (no durations), the vertices renumbered in release order so that each round is a range.

    ``order`` lists the released vertices round by round: a vertex's new number is its place in
    it (``rank``, -1 for one never released) and round ``k`` is the new numbers
    ``ends[k - 1]`` to ``ends[k] - 1`` (``ends[-1]`` read as 0 for ``k = 0``). ``sources[k]`` and
    ``targets[k]`` are that round's outgoing edges in the new numbering (a target never released
    reads -1), by source and then by original target number. ``at``: each node's vertex in the new
    numbering (``rank[index.vertex_array]``). ``waiting``: the vertices never released (a
    dependency cycle, or collectives issued in different orders), in the original numbering.
    ``distinct[k]``: whether no vertex is the target of two of round ``k``'s edges, so that the
    scheduler may raise the targets' starts with a gather, a maximum and an assignment, where a
    repeated target needs ``np.fmax.at`` (which takes each edge in turn, and costs half as much
    again a round). ``runs[k]``: how many chain rounds come in a row from round ``k`` on (0: ``k`` is none), a
    chain round being one whose every vertex hands on to the vertex at the same place of the
    next round, its only predecessor (``_chain_runs``): a rank's dense layers, one after the
    other on every rank, where each round of the run times one layer of every rank. The
    scheduler times such a run in one cumulative sum (``recsim.graph.schedule.asap_timing``).
    """

    order: npt.NDArray[np.intp]
    rank: npt.NDArray[np.intp]
    at: npt.NDArray[np.intp]
    ends: list[int]
    sources: list[npt.NDArray[np.intp]]
    targets: list[npt.NDArray[np.intp]]
    waiting: npt.NDArray[np.intp]
    runs: list[int]
    distinct: list[bool]

    @cached_property
    def steps(self) -> list[RoundStep]:
        """Per round what the scheduler reads of it, in one tuple (its loop then indexes one list,
        not six, and makes no slice: ``recsim.graph.schedule.asap_timing``, twice an evaluation):
        its first and end new numbers and their slice, its edges' targets (None: no edge) and
        sources, ``distinct``, and the block of column rounds it opens (``blocks``), if any."""
        starts = [0, *self.ends[:-1]] if self.ends else []
        return [
            (a, b, slice(a, b), into if into.size else None, out, spread, block)
            for a, b, into, out, spread, block in zip(
                starts, self.ends, self.targets, self.sources, self.distinct, self.blocks, strict=True
            )
        ]

    @cached_property
    def blocks(self) -> list[ColumnBlock | None]:
        """Per round, the block of column rounds it opens (``ColumnBlock``), or None: chain rounds
        (``runs``) and more (``_column_blocks``)."""
        return _column_blocks(self.ends, self.sources, self.targets)


class ColumnBlock(NamedTuple):
    """Rounds ``k`` to ``k + run`` of ``KahnRounds`` (``k`` the round that opens it), all of one
    width ``w``, as the rows of a block whose columns are chains: each vertex of a row after the
    first waits for the vertex above it, and for nothing outside its column of the block (a rank's
    dense layers, where a layer's backward also waits for the one two above it). Where no length
    is negative or NaN, a vertex's finish is then at least that of every vertex above it, so its
    start is the finish of the one right above it, whatever else of its column it waits for: the
    finishes are one cumulative sum down the columns (``recsim.graph.schedule.asap_timing``).
    ``into``/``out``: the block's edges that leave it (to a round after ``k + run``: every edge
    of its last row, and the others' that reach past it), raised once the block is timed;
    ``spread``: no target among them repeats; ``groups``: the same edges in groups whose targets
    do not repeat (``_distinct_groups``; none: raised with ``np.fmax.at``). ``ordered``: some
    vertex waits for one above it other than the one right above (the start then rests on the
    lengths' being non-negative and the finishes above the block's being numbers). ``above``: the
    first vertex (new number) of the first round a vertex of the block waits for, which may be a
    round of its column before the block's first (those are timed before the block, and their
    finishes must not decrease down the column either)."""

    run: int
    into: npt.NDArray[np.intp]
    out: npt.NDArray[np.intp]
    spread: bool
    ordered: bool
    above: int
    groups: tuple[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]], ...] = ()


def _column_blocks(
    ends: list[int], sources: list[npt.NDArray[np.intp]], targets: list[npt.NDArray[np.intp]]
) -> list[ColumnBlock | None]:
    """``KahnRounds.blocks``: the blocks of column rounds, found greedily from the first round on
    (a block as long as it goes on, the next from the round after its last). Round ``k`` goes on
    to round ``k + 1`` when the two have one width ``w > 0``, every vertex ``a + i`` of ``k`` has
    an edge to ``b + i`` (the one below it), and every edge into ``k + 1`` comes from the same
    column (the same place in its round) of a round of the block, or of a round above it that
    hands on down its column to the block's first (``top``). Checked edge by edge in arrays; the
    walk over the rounds is in Python (a few hundred rounds at most)."""
    count = len(ends)
    blocks: list[ColumnBlock | None] = [None] * count
    if count < 2:
        return blocks
    per_round = np.fromiter(map(len, sources), dtype=np.intp, count=count)
    flat_s = np.concatenate(sources)
    flat_t = np.concatenate(targets)
    stops = np.asarray(ends, dtype=np.intp)
    starts = np.concatenate(([0], stops[:-1]))
    widths = stops - starts
    round_s = np.repeat(np.arange(count, dtype=np.intp), per_round)
    valid = flat_t >= 0  # a target never released reads -1 (then nothing is scheduled)
    round_t = np.searchsorted(stops, flat_t, side="right")
    round_t[~valid] = 0
    column = flat_s - starts[round_s]
    same = valid & (column == flat_t - starts[round_t])
    below = same & (round_t == round_s + 1)
    # Pairs (k, k + 1) of one width whose every vertex hands on to the one below it (the edges
    # are distinct: ``w`` of them below is every one).
    pair = np.zeros(count, dtype=bool)
    pair[:-1] = (widths[:-1] == widths[1:]) & (widths[:-1] > 0)
    pair &= np.bincount(round_s[below], minlength=count) == widths
    # Per round, whether an edge into it comes from another column, and the earliest round an
    # edge into it comes from, and whether one comes from above other than right above.
    across = np.bincount(round_t[valid & ~same], minlength=count) > 0
    earliest = np.full(count, count, dtype=np.intp)
    np.minimum.at(earliest, round_t[valid], round_s[valid])
    farther = np.bincount(round_t[same & ~below], minlength=count) > 0
    cuts = np.concatenate(([0], np.cumsum(per_round)))
    goes_on = (pair[:-1] & ~across[1:]).tolist()
    earliest_list, farther_list, pairs = earliest.tolist(), farther.tolist(), pair.tolist()
    # ``top[k]``: the first round of the column chain that reaches round ``k`` (rounds ``top[k]``
    # to ``k`` each handing on to the vertex below): an edge into the block from one of them, in
    # the same column, comes from a vertex above, timed before the block.
    top = [0] * count
    for k in range(1, count):
        top[k] = top[k - 1] if pairs[k - 1] else k
    k = 0
    while k < count - 1:
        if not goes_on[k] or earliest_list[k + 1] < top[k]:
            k += 1
            continue
        last = k + 1
        while last < count - 1 and goes_on[last] and earliest_list[last + 1] >= top[k]:
            last += 1
        if last - k < _LEAST_RUN:  # (not worth a block: its rounds take their steps)
            k = last + 1
            continue
        # The edges that leave the block: those of its rows but the last that reach past it,
        # and every edge of its last row.
        e = ends[last]
        inner_s, inner_t = flat_s[cuts[k] : cuts[last]], flat_t[cuts[k] : cuts[last]]
        leaving = inner_t >= e
        into = np.concatenate((inner_t[leaving], flat_t[cuts[last] : cuts[last + 1]]))
        out = np.concatenate((inner_s[leaving], flat_s[cuts[last] : cuts[last + 1]]))
        groups = _distinct_groups(into, out)
        # The first round any vertex of the block waits for (``top[k]`` at the earliest).
        reach = min(k, *earliest_list[k + 1 : last + 1])
        ordered = any(farther_list[k + 1 : last + 1])
        blocks[k] = ColumnBlock(last - k, into, out, len(groups) == 1, ordered, int(starts[reach]), groups)
        k = last + 1
    return blocks


# The fewest rounds after its first that make a block: a block costs about three rounds' array
# calls (128 GPUs: the eight blocks timed 240 us a schedule, without those of two rounds 233 us).
_LEAST_RUN = 3

# A block's edges that leave it are raised in groups of distinct targets (a gather, a maximum and
# an assignment each) up to this many groups, else with one ``np.fmax.at``, which takes the edges
# in turn (about as costly as three groups on 10^2 edges).
_MOST_GROUPS = 3


def _distinct_groups(
    into: npt.NDArray[np.intp], out: npt.NDArray[np.intp]
) -> tuple[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]], ...]:
    """The edges ``out -> into`` in groups whose targets do not repeat: the ``g``-th edge into
    each target in group ``g``; none where that takes more than ``_MOST_GROUPS`` groups."""
    if not into.size:
        return ((into, out),)
    order = np.argsort(into, kind="stable")
    ordered = into[order]
    fresh = np.empty(ordered.size, dtype=bool)
    fresh[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=fresh[1:])
    first = np.flatnonzero(fresh)
    # Each edge's place among the edges into its target (0 for the first).
    place = np.empty(into.size, dtype=np.intp)
    place[order] = np.arange(into.size) - np.repeat(first, np.diff(np.append(first, into.size)))
    count = int(place.max()) + 1
    if count > _MOST_GROUPS:
        return ()
    return tuple((into[place == g], out[place == g]) for g in range(count))


def _kahn_rounds(index: GraphIndex) -> KahnRounds:
    """``GraphIndex.kahn_rounds``: the edges between vertices, Kahn's algorithm a level at a time,
    then each round's edges in the new numbering."""
    vertices = index.vertices
    # The edges between vertices: each explicit dependency and each node's predecessor in its
    # queue, except within a collective's vertex; each once (a node often both depends on and
    # follows the same node), sorted by source: vertex ``v``'s successors are
    # ``dst[out_end[v] - out_count[v]:out_end[v]]``.
    vertex = index.vertex_array
    prev = index.prev_in_queue_array
    queued = np.flatnonzero(prev >= 0)
    src = np.concatenate((vertex[index.dep_flat_array], vertex[prev[queued]]))
    dst = np.concatenate((vertex[index.dep_child_array], vertex[queued]))
    keep = src != dst
    # An edge as one int, source in the high bits: sorted by source, then target, as the pairs
    # are, and taken apart by a shift and a mask (an int64 division costs several times more).
    # A vertex number fits in 31 bits unless the graph has 2^31 vertices, which no memory holds.
    keys = (src[keep].astype(np.int64) << _TARGET_BITS) | dst[keep]
    # The same sorted values whatever the algorithm. The stable one (timsort) is kept for its
    # steady cost: the keys come nearly sorted (the dependencies and the queues' links each by
    # node position, which the vertices follow), runs that it merges in close to linear time.
    # 10^4 keys at 128 GPUs: timsort about 50 us; the default 60 us with numpy's AVX2 sort and
    # 270 us where numpy dispatches to its AVX-512 one on the development VM (the same sorted
    # values; callgrind, which hides AVX-512 from numpy, counts the two alike).
    keys.sort(kind="stable")
    if keys.size:
        distinct = np.empty(keys.size, dtype=bool)
        distinct[0] = True
        np.not_equal(keys[1:], keys[:-1], out=distinct[1:])
        keys = keys[distinct]
    src, dst = keys >> _TARGET_BITS, keys & _TARGET_MASK
    pending = np.bincount(dst, minlength=vertices)
    out_count = np.bincount(src, minlength=vertices)
    out_end = np.cumsum(out_count)
    # The rounds themselves: the order the vertices are released in, round by round.
    order: Sequence[int] | npt.NDArray[np.intp]
    chained: list[bool] | None = None  # which rounds are chain rounds, where the rounds tell
    if dst.size <= _PYTHON_ROUNDS_EDGES:
        order, ends, chained = _python_rounds(dst, out_count, out_end, pending)
    else:
        order, ends = _array_rounds(dst, out_count, out_end, pending)
    released_order = np.asarray(order, dtype=np.intp)
    rank = np.full(vertices, -1, dtype=np.intp)
    rank[released_order] = np.arange(released_order.size, dtype=np.intp)
    # Each released vertex's edges, in release order (its successors are a range of ``dst``): the
    # round of new numbers ``a`` to ``b - 1`` has the edges ``cut[a]`` to ``cut[b] - 1``.
    counts = out_count[released_order]
    cut = np.concatenate(([0], np.cumsum(counts)))
    edges = np.repeat(out_end[released_order] - cut[1:], counts) + np.arange(int(cut[-1]), dtype=np.intp)
    sources = np.repeat(np.arange(released_order.size, dtype=np.intp), counts)
    targets = rank[dst[edges]]
    cuts = cut[[0, *ends]]
    bounds = cuts.tolist()
    # Which rounds raise no target twice: each edge keyed by its round and target, sorted, so that
    # a target repeated within a round shows as two equal neighbours.
    round_of = np.repeat(np.arange(len(ends), dtype=np.int64), np.diff(cuts))
    keyed = round_of * (vertices + 1) + (targets + 1)  # a target never released reads -1
    keyed.sort(kind="stable")  # in runs already (by round, then mostly by target): as ``keys``
    repeated = np.zeros(len(ends), dtype=bool)
    repeated[keyed[1:][keyed[1:] == keyed[:-1]] // (vertices + 1)] = True
    return KahnRounds(
        released_order,
        rank,
        rank[vertex],
        ends,
        [sources[a:b] for a, b in pairwise(bounds)],
        [targets[a:b] for a, b in pairwise(bounds)],
        np.flatnonzero(rank < 0),
        _runs(chained)
        if chained is not None
        else _chain_runs(ends, cuts, sources, targets, pending[released_order]),
        (~repeated).tolist(),
    )


# ``_kahn_rounds``' edge keys: the target in the low bits.
_TARGET_BITS = 32
_TARGET_MASK = (1 << _TARGET_BITS) - 1


def _chain_runs(
    ends: list[int],
    cuts: npt.NDArray[np.intp],
    sources: npt.NDArray[np.intp],
    targets: npt.NDArray[np.intp],
    indegree: npt.NDArray[np.intp],
) -> list[int]:
    """``KahnRounds.runs``: per round, how many chain rounds follow from it on (itself included).

    Round ``k`` (new numbers ``a`` to ``b - 1``, ``w = b - a`` of them) is a chain round when it
    has ``w`` edges, the ``i``-th from ``a + i`` to ``b + i``, and each of those targets has no
    other predecessor (``indegree``: per new number): each of its vertices hands on to one
    vertex of the next round, which starts when it finishes. Checked edge by edge in arrays, not
    assumed of the release order."""
    count = len(ends)
    if not count or not sources.size:
        return [0] * count
    starts = np.concatenate(([0], ends[:-1]))
    stops = np.asarray(ends)
    widths = stops - starts
    per_round = np.diff(cuts)
    round_of = np.repeat(np.arange(count), per_round)
    place = np.arange(sources.size) - cuts[round_of]  # an edge's place among its round's
    aligned = (sources == starts[round_of] + place) & (targets == stops[round_of] + place)
    aligned[aligned] = indegree[targets[aligned]] == 1
    chain = (per_round == widths) & (widths > 0)
    chain &= np.bincount(round_of[~aligned], minlength=count) == 0  # no edge out of line
    return _runs(chain.tolist())


def _runs(chained: list[bool]) -> list[int]:
    """Per round, how many of ``chained`` are true in a row from it on (``KahnRounds.runs``)."""
    runs = [0] * len(chained)
    run = 0
    for k in range(len(chained) - 1, -1, -1):
        run = run + 1 if chained[k] else 0
        runs[k] = run
    return runs


# Up to this many edges, Kahn's rounds are worked out in Python (``_python_rounds``), beyond it in
# numpy (``_array_rounds``): a round costs the latter a dozen array calls (about 9 us) whatever
# its size, the former about 0.1 us per edge, and a step graph has 10-30 rounds per step (an
# evaluation chains three). Either gives the same rounds, up to the order within a round.
_PYTHON_ROUNDS_EDGES = 8192


def _python_rounds(
    dst: npt.NDArray[np.int64],
    out_count: npt.NDArray[np.intp],
    out_end: npt.NDArray[np.intp],
    pending: npt.NDArray[np.intp],
) -> tuple[list[int], list[int], list[bool]]:
    """Kahn's rounds over lists: the vertices in release order, each round's end in it, and which
    rounds are chain rounds (``KahnRounds.runs``). A round releases the vertices whose last
    pending predecessor was in the round before, in the order of that last edge (the order within
    a round changes no time: a start is a max over its predecessors' finishes, whatever their
    order; ``recsim.graph.schedule``)."""
    successors = dst.tolist()
    start = out_end - out_count
    # Vertex ``v``'s successors are ``successors[bounds[v]:bounds[v + 1]]`` (the rows are contiguous
    # by source): one list of ints for both ends of the slice, where two cost twice the conversion.
    bounds = out_end.tolist()
    bounds.insert(0, 0)
    left = pending.tolist()
    # Most vertices have one successor (a rank's chain of layers) that has no other predecessor:
    # such a vertex releases it outright (its ``left`` is 1 and no other edge reads it), read
    # directly rather than through a slice of one. A vertex whose one successor waits for others
    # too (a DCNv2 layer's input-gradient GEMM waits for the previous layer's weight gradients on
    # their side lane; a queue's next node that also waits for a collective) is read directly as
    # well, its successor stored as ``-2 - t``: its count goes down as the slice's loop would, in
    # the same place of the round, without the slice. -1: the others, which take the slice.
    solo_array = np.full(out_count.size, -1, dtype=np.intp)
    one = np.flatnonzero(out_count == 1)
    successor = dst[start[one]]
    solo_array[one] = np.where(pending[successor] == 1, successor, -2 - successor)
    solo = solo_array.tolist()
    frontier: list[int] = np.flatnonzero(pending == 0).tolist()
    order: list[int] = []
    ends: list[int] = []
    # A round of such vertices only (every rank's next dense layer) releases their successors in
    # its own order: a chain round (``KahnRounds.runs``: the ``i``-th vertex hands on to the next
    # round's ``i``-th, its only predecessor), noted as the rounds go.
    chained: list[bool] = []
    # Tried and dropped (2026-12-07): a chain round first, as ``[solo[v] for v in frontier]`` kept
    # where its least entry is >= 0 (the same order), the loop below otherwise. Slower (the 128-GPU
    # step, 3 steps folded: 0.90 -> 1.02 ms): only 45 of its 150 rounds are chain rounds (1,215 of
    # 4,542 vertices); the other 27-wide rounds (110 are) are every rank class's next layer, but
    # mixed (a layer waiting for its side lane's weight gradients), so the comprehension is paid
    # twice there. The rounds enter an evaluation sharing a ``CostMemo`` only once per structure
    # (``CostMemo.kahn_rounds``): 1.5 ms of a fresh 128-GPU evaluation's 22 ms, none of a repeat's.
    while frontier:
        order += frontier
        ends.append(len(order))
        # ``released.append(t)`` as a method call, which CPython 3.11 specialises for a list, not a
        # bound method kept in a local (a generic call): 3 % fewer instructions over the rounds.
        released: list[int] = []
        mixed = False
        for v in frontier:
            t = solo[v]
            if t >= 0:
                released.append(t)
                continue
            mixed = True
            if t < -1:
                t = -2 - t
                count = left[t] - 1
                left[t] = count
                if not count:
                    released.append(t)
                continue
            for t in successors[bounds[v] : bounds[v + 1]]:
                count = left[t] - 1
                left[t] = count
                if not count:
                    released.append(t)
        chained.append(not mixed and bool(released))
        frontier = released
    return order, ends, chained


def _array_rounds(
    dst: npt.NDArray[np.int64],
    out_count: npt.NDArray[np.intp],
    out_end: npt.NDArray[np.intp],
    pending: npt.NDArray[np.intp],
) -> tuple[npt.NDArray[np.intp], list[int]]:
    """``_python_rounds`` a round at a time in numpy (for large graphs): the released vertices of
    a round in the order of the edge that releases each, its last in the round (``claim`` keeps
    a vertex's last slot, as ``_python_rounds`` appends a vertex when its count reaches zero)."""
    pending = pending.copy()
    # 0, 1, 2 ... sliced for each round's ranges: a round is a dozen calls on small arrays, so
    # every call saved (an ``arange`` made anew, a second ``repeat``) shows over the rounds.
    counting = np.arange(max(pending.size, dst.size), dtype=np.intp)
    frontier = np.flatnonzero(pending == 0)
    claim = np.full(pending.size, -1, dtype=np.intp)
    # A vertex's only successor when that successor has no other predecessor, else -1 (as
    # ``_python_rounds``' ``solo``): a round of such vertices (a chain round, ``KahnRounds.runs``)
    # releases their successors in its own order, one gather instead of a dozen calls. Their
    # counts are left as they are: each such successor has no other edge to read it.
    solo = np.full(pending.size, -1, dtype=np.intp)
    one = np.flatnonzero(out_count == 1)
    successor = dst[(out_end - out_count)[one]]
    solo[one] = np.where(pending[successor] == 1, successor, -1)
    rounds: list[npt.NDArray[np.intp]] = []
    ends: list[int] = []
    released = 0
    while frontier.size:
        rounds.append(frontier)
        released += frontier.size
        ends.append(released)
        following = solo[frontier]
        if following.min() >= 0:
            frontier = following
            continue
        # The frontier's outgoing edges, and the vertices that have just lost their last
        # pending predecessor (each once: ``claim`` keeps one slot per vertex). The ``k``-th
        # edge of a frontier vertex ``f`` is ``out_start[f] + k``, and ``k`` is its place among
        # the round's edges less the edges of the vertices before ``f`` in the frontier; with
        # ``ends`` their running count, that is ``out_end[f] - ends[slot] + place``.
        counts = out_count[frontier]
        running = np.cumsum(counts)
        slot = np.repeat(counting[: frontier.size], counts)
        edges = (out_end[frontier] - running)[slot]
        edges += counting[: slot.size]
        targets = dst[edges]
        np.subtract.at(pending, targets, 1)
        ready = targets[pending[targets] == 0]
        slots = counting[: ready.size]
        claim[ready] = slots
        frontier = ready[claim[ready] == slots]
    order = np.concatenate(rounds) if rounds else np.zeros(0, dtype=np.intp)
    return order, ends
