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
the scheduler is written for speed. It works on the graph's ``GraphIndex`` (``recsim.graph.index``:
each node's queue, dependencies and vertex as lists of ints by position, read once and shared with
the invariant checks and metrics). Each collective's members are one vertex (the others are their
own vertex). The edges between vertices (explicit dependencies plus the previous node of the same
queue, self-edges of a collective dropped) are gathered with numpy, each kept once, in compressed
rows by source vertex. Kahn's algorithm then runs a level at a time: which vertices each round
releases is the structure alone, worked out once per index (``GraphIndex.kahn_rounds``, which
renumbers the vertices in release order so that a round is a range); scheduling takes each round
in numpy, setting its vertices' finishes and raising their successors' starts to them (a vertex's
start is the maximum of its predecessors' finish times). Step graphs are wide and shallow (10^4
vertices in under 10^2 levels), so the rounds are few and each is a handful of array operations;
a block of column rounds (every rank's dense layers, one after the other, each waiting for the
layer before it and perhaps for others before that: ``KahnRounds.blocks``) is timed in one
cumulative sum down the columns of the block.
The times are the same floats as the scalar algorithm's in any release order: a start is a max over
the same finishes and a finish is that start plus the vertex's length. Durations are asked for
once per node, in graph order.

``Timing`` keeps the result by position as numpy arrays, which is what the checks and metrics
read; ``Schedule`` is the same by node id, the engines' common output. A schedule made from a
timing holds it until its maps are made, and the timing holds that schedule only weakly, so that
an evaluation's objects form no reference cycle and are freed as soon as the caller drops them.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from recsim.errors import TraceError
from recsim.graph.index import GraphIndex, stream_value
from recsim.graph.ir import ExecutionGraph, Node


@dataclass(frozen=True)
class Schedule:
    """Start and finish time (s) per node id, and the makespan.

    One made from a ``Timing`` (``Timing.schedule``) makes its two maps of 10^4-10^6 entries when
    first read: the analytic engine's own checks and metrics read the timing instead, so an
    evaluation whose caller does not look at the schedule never makes them. It is otherwise the
    same schedule (equal, printed, copied and pickled with its maps).
    """

    start_s: dict[int, float]
    finish_s: dict[int, float]

    @classmethod
    def _of_timing(cls, timing: Timing) -> Schedule:
        made = object.__new__(cls)
        made.__dict__["_timing"] = timing
        return made

    def __getattr__(self, name: str) -> dict[int, float]:
        # Only reached for an attribute not set: the maps of a schedule made by ``_of_timing``.
        timing = self.__dict__.get("_timing")
        if timing is None or name not in ("start_s", "finish_s"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        ids = timing.index.ids
        self.__dict__["start_s"] = dict(zip(ids, timing.start_list, strict=True))
        self.__dict__["finish_s"] = dict(zip(ids, timing.finish_list, strict=True))
        del self.__dict__["_timing"]
        value: dict[int, float] = self.__dict__[name]
        return value

    def __getstate__(self) -> dict[str, dict[int, float]]:
        return {"start_s": self.start_s, "finish_s": self.finish_s}

    @property
    def makespan_s(self) -> float:
        return max(self.finish_s.values(), default=0.0)


@dataclass(frozen=True, eq=False)
class Timing:
    """Start and finish (s) of every node of ``index`` by position, as float64 arrays."""

    index: GraphIndex
    start: npt.NDArray[np.float64]
    finish: npt.NDArray[np.float64]

    @classmethod
    def of(cls, index: GraphIndex, schedule: Schedule) -> Timing:
        """The times of ``schedule`` by position (``KeyError`` when a node is missing from it)."""
        ids = index.ids
        start = np.array(list(map(schedule.start_s.__getitem__, ids)), dtype=np.float64)
        finish = np.array(list(map(schedule.finish_s.__getitem__, ids)), dtype=np.float64)
        return cls(index, start, finish)

    @cached_property
    def finite(self) -> bool:
        """Every time is finite (the vectorised paths then match the scalar ones exactly)."""
        return bool(np.isfinite(self.start).all() and np.isfinite(self.finish).all())

    @cached_property
    def start_list(self) -> list[float]:
        """``start`` as Python floats (what sums over single nodes take)."""
        out: list[float] = self.start.tolist()
        return out

    @cached_property
    def finish_list(self) -> list[float]:
        out: list[float] = self.finish.tolist()
        return out

    def schedule(self) -> Schedule:
        """The same times by node id (made once while it lives; ``made`` tells one made here).

        The timing holds its schedule by weak reference: the schedule holds the timing until its
        maps are made, and a strong reference back would make a cycle that keeps the whole
        evaluation (the index, the graph it reads, its nodes) alive until the cyclic collector
        walks it, instead of freeing it by reference counting once the caller drops it."""
        ref: weakref.ref[Schedule] | None = self.__dict__.get("_schedule")
        made = None if ref is None else ref()
        if made is None:
            made = Schedule._of_timing(self)
            self.__dict__["_schedule"] = weakref.ref(made)
        return made

    def made(self, schedule: Schedule) -> bool:
        """Whether ``schedule`` is the one ``schedule()`` made from these times: it then has a time
        for every node of the index, and nothing else, by construction."""
        ref: weakref.ref[Schedule] | None = self.__dict__.get("_schedule")
        return ref is not None and ref() is schedule

    def __getstate__(self) -> dict[str, object]:
        # A weak reference does not pickle or copy: a copy makes its own schedule when asked.
        state = dict(self.__dict__)
        state.pop("_schedule", None)
        return state


def queue_of(node: Node) -> tuple[int, str, int]:
    """The in-order queue a node runs on."""
    return (node.rank, stream_value(node.stream), node.lane)


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
    lengths = [durations(n) for n in graph.nodes]
    return asap_timing(GraphIndex.of(graph), lengths).schedule()


def _vertex_lengths(index: GraphIndex, durations: Sequence[float]) -> npt.NDArray[np.float64]:
    """Each vertex's length: its first node's duration, or for a collective the longest of its
    members' (``max`` semantics: the first of equal values, a later one only if larger).

    Taken from an array of the durations by the heads' positions (the same floats) rather than a
    list made from the index's ``vertex_head`` list; a collective's head is its first member,
    where ``max`` starts. ``max`` over the members is the loop ``if d > best: best = d`` from the
    first member on (it compares with ``>`` and keeps the first of equal values), run in C, or
    where it gives the same floats ``np.maximum.reduceat``; the collectives' lengths are then set
    in one assignment."""
    given = np.asarray(durations, dtype=np.float64)
    length = given.take(index.vertex_head_array)  # ``given[...]`` (``take``: see ``asap_timing``)
    if index.members:
        vertices, flat, bounds = index.member_rows
        members = given[flat]
        # Each collective's longest member in one ``reduceat`` (a call, not a comprehension's
        # turn, a slice and a ``max`` per collective: about 0.1 M machine instructions a schedule
        # less at 128 GPUs, 15 collectives of 27 members). Where every longest is positive it is
        # the value ``max`` returns (equal positive floats are one value); a NaN (``max``
        # keeps one only where it comes first), a zero (``max`` keeps the first of 0.0 and -0.0)
        # or a negative length take the members in turn instead. Every row has a member.
        longest = np.maximum.reduceat(members, bounds[:-1])
        if (longest > 0.0).all():
            length[vertices] = longest
        else:
            # The members' durations as Python floats (the same values): ``max`` compares those
            # in C, where numpy scalars would each go through numpy's comparison. Only the
            # members' are converted (``GraphIndex.member_rows``), not every node's.
            values = members.tolist()
            length[vertices] = [max(values[a:b]) for a, b in pairwise(bounds)]
    return length


def asap_timing(index: GraphIndex, durations: Sequence[float]) -> Timing:
    """The earliest-start times of the graph of ``index`` with ``durations`` by position."""
    structure = index.kahn_rounds
    if structure.waiting.size:
        nodes = index.nodes
        waiting = (nodes[index.vertex_head[v]] for v in structure.waiting.tolist())
        heads = sorted(waiting, key=lambda n: n.id)
        names = ", ".join(f"{n.name}@rank{n.rank}" for n in heads[:4])
        raise TraceError(
            f"the graph cannot be scheduled: a dependency cycle or collectives issued in different "
            f"orders on different ranks (waiting: {names})"
        )
    # Kahn's rounds (``GraphIndex.kahn_rounds``), the vertices renumbered in release order so that
    # a round's starts, lengths and finishes are slices: ``begin[v]`` is the latest finish among
    # the predecessors released so far (``fmax`` skips a NaN finish as the scalar
    # ``if end > begin`` did); a vertex without predecessors (the first round) starts at 0.
    # The gathers of every vertex or node take ``take``: the same elements as indexing by the
    # array, about 2 machine instructions an element fewer on arrays of thousands (4 of about
    # 4,700 a schedule at 128 GPUs; on tens of elements indexing costs less).
    length = _vertex_lengths(index, durations).take(structure.order)
    begin = np.full(length.size, -math.inf)
    finish = np.zeros(length.size)
    ends = structure.ends
    if ends:
        begin[: ends[0]] = 0.0
    steps = structure.steps
    # A round that is not part of a chain run costs about 19,000 machine instructions (callgrind,
    # 128 GPUs: 2.8 M a call, 150 rounds), nearly all of it numpy's per-call overhead (a ufunc
    # call about 4,000, a fancy gather of 54 about 2,500, a slice about 1,100), not the arithmetic.
    # Tried and dropped: no finish slice per round, ``begin[out] + length[out]`` for the edges and
    # every finish at the end (the two gathers cost what the three slices saved: 2.79 M either
    # way). A loop in Python floats would not pay either: Kahn's loop in Python takes about 1,000
    # instructions a vertex or edge (``_python_rounds``). What pays is fewer rounds: the column
    # blocks below take 70 of the 150 in five blocks (the ranks' dense layers, forward and
    # backward; strict chain rounds alone, ``KahnRounds.runs``, took 48 in three): a schedule in
    # about 240 us where it took about 270 (CPU time, same machine, 2026-12-07).
    # Also tried and dropped (2026-12-07, 128 GPUs): pulling each round's starts from its
    # predecessors' finishes (the edges by target, worked out once with the rounds: a gather and
    # ``np.fmax.reduceat`` a round, the begins in one ``reduceat`` over every edge at the end, no
    # raises after a block; the same floats where every length is a number >= 0): 240 -> 300 us a
    # schedule, as ``reduceat`` costs about 25 ns per segment on top of its call (1.1 us for a round
    # of 27 vertices with two edges each, against 0.6 us for ``fmax``; 117 us for the 4,542
    # vertices' begins at once), and 82 of the 85 pulled steps have a vertex with two predecessors
    # or more. The same pull with the predecessors padded to a (degree, width) table costs what the
    # push does (a gather per column and an ``fmax`` per column after the first: 1.2 us a round of
    # degree 2, against 1.3 us for the push's gather, maximum and assignment). Nor can the second
    # schedule (after the interference stretch) start where the first one's lengths change: the
    # stretch moves kernels of the first round already (630 of 4,932 nodes, from round 0 on).
    general = -1  # the rounds up to this one take one step each (a block that met a NaN)
    # Every length a number, none negative (as durations are): no time is then NaN, and a block's
    # checks for NaN and negative lengths can only pass (two array calls here, not two a block).
    # From the extremes (a NaN makes the least NaN, which fails the test): two reductions, not
    # two comparisons over every vertex and two ``all``.
    plain = not length.size or (bool(length.min() >= 0.0) and math.isfinite(length.max()))
    k, count = 0, len(ends)
    # The ufuncs looked up once, not twice a round through the module (the same calls).
    add, fmax, fmax_at = np.add, np.fmax, np.fmax.at
    while k < count:
        a, b, span, into, out, spread, column = steps[k]
        if column is not None and k > general:
            # A block of column rounds (``KahnRounds.blocks``): rounds ``k`` to ``k + run`` are the
            # rows of a block, each vertex waiting for the one above it (and perhaps for others
            # above that in its column, which finish no later where no length is negative), so
            # that each row's begins are the finishes of the row above (``fmax`` with the initial
            # -inf, and with the earlier finishes of the column, gives that finish itself) and the
            # finishes a running sum down the columns: one cumulative sum (additions in the same
            # order, the same floats) instead of a step per round; the edges that leave the block
            # are raised after it, at once (a start is a maximum: the order of the raises does not
            # matter). A NaN finish differs (``fmax`` skips it; the sum carries it on), and so does
            # a negative length where a vertex waits for more than the one above it: those rounds
            # then take their steps after all, as does a NaN finish above the block in a column it
            # reads (``ColumnBlock.above``).
            run = column.run
            last = k + run
            e, w = ends[last], b - a
            block = finish[a:e].reshape(run + 1, w)
            add(begin[a:b], length[a:b], out=block[0])
            block[1:] = length[b:e].reshape(run, w)
            np.add.accumulate(block, axis=0, out=block)
            above = column.above
            if plain or (
                not np.isnan(block).any()
                and not (
                    column.ordered and ((length[above:e] < 0.0).any() or np.isnan(finish[above:a]).any())
                )
            ):
                begin[b:e] = finish[a : e - w]
                groups = column.groups
                if groups:
                    for into_g, out_g in groups:  # each group's targets distinct
                        if into_g.size:
                            begin[into_g] = fmax(begin[into_g], finish[out_g])
                else:
                    fmax_at(begin, column.into, finish[column.out])
                k = last + 1
                continue
            general = last
        add(begin[span], length[span], out=finish[span])
        if into is not None:
            if spread:  # a gather, a maximum and an assignment (no target repeats)
                begin[into] = fmax(begin[into], finish[out])
            else:
                fmax_at(begin, into, finish[out])
        k += 1
    at = structure.at
    return Timing(index, begin.take(at), finish.take(at))
