"""Invariants checked after every run (DESIGN §4.6); a violation is a ``SimulationError``.

They are cheap (linear in the graph) and catch engine bugs, not user mistakes: every node
scheduled exactly once, no node finishing before it starts or before a predecessor finishes, no
in-order queue running two nodes at once, collectives consistent across their group (bytes sent
equal bytes received, via ``ExecutionGraph.validate``), the breakdown summing to the step time.

The schedule checks run once per evaluation over every node and dependency of graphs of
10^4-10^6 nodes, so they are vectorised over the schedule's ``Timing`` (the times by node
position, ``recsim.graph.schedule``): numpy evaluates each comparison, with the same floating-point
operations as the per-node test, for all nodes, dependencies and queue neighbours at once. Only
when something fails, or a time is not finite (where numpy's maximum and Python's ``max`` part
ways), does the per-node walk run, to name the first offending node in graph order as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from recsim.errors import SimulationError
from recsim.graph.index import GraphIndex
from recsim.graph.ir import ExecutionGraph
from recsim.graph.schedule import Schedule, Timing, queue_of

TOLERANCE_S = 1e-12


def check_schedule(graph: ExecutionGraph, schedule: Schedule, timing: Timing | None = None) -> None:
    """Every node once, time forwards, dependencies respected, queues serial (``timing``: the
    schedule's times by position, when the caller has them)."""
    index = timing.index if timing is not None else GraphIndex.of(graph)
    if timing is None or not timing.made(schedule):  # one made from ``timing`` has every node
        ids = set(index.ids)
        if schedule.start_s.keys() != ids or schedule.finish_s.keys() != ids:
            missing = sorted(ids - set(schedule.finish_s))[:3]
            raise SimulationError(f"nodes not scheduled exactly once (e.g. {missing})")
    if timing is None:
        timing = Timing.of(index, schedule)
    if not timing.finite or _violated(timing):
        _first_violation(graph, schedule)


def _violated(timing: Timing) -> bool:
    """Whether any finite time breaks a rule (the tests of ``_first_violation``, all at once)."""
    index = timing.index
    start, finish = timing.start, timing.finish
    if (finish < start - TOLERANCE_S).any():
        return True
    # ``max(1.0, s)`` is ``np.maximum(1.0, s)`` for finite ``s``.
    child = index.dep_child_array
    if child.size:
        s = start[child]
        if (finish[index.dep_flat_array] > s + TOLERANCE_S * np.maximum(1.0, s)).any():
            return True
    prev = index.prev_in_queue_array
    queued = np.flatnonzero(prev >= 0)
    s = start[queued]
    return bool((s < finish[prev[queued]] - TOLERANCE_S * np.maximum(1.0, s)).any())


def _first_violation(graph: ExecutionGraph, schedule: Schedule) -> None:
    """The per-node walk: raise for the first node in graph order that breaks a rule."""
    by_id = graph.by_id
    last_finish: dict[tuple[int, str, int], tuple[float, int]] = {}
    for n in graph.nodes:
        s, f = schedule.start_s[n.id], schedule.finish_s[n.id]
        if not (math.isfinite(s) and math.isfinite(f)) or f < s - TOLERANCE_S:
            raise SimulationError(f"node {n.name}#{n.id} on rank {n.rank}: time runs backwards ({s} -> {f})")
        for d in n.deps:
            if schedule.finish_s[d] > s + TOLERANCE_S * max(1.0, s):
                raise SimulationError(
                    f"node {n.name}#{n.id} starts at {s} before its dependency {by_id[d].name}#{d} "
                    f"finishes at {schedule.finish_s[d]}"
                )
        q = queue_of(n)
        if q in last_finish:
            prev_f, prev_id = last_finish[q]
            if s < prev_f - TOLERANCE_S * max(1.0, s):
                raise SimulationError(
                    f"queue rank {q[0]} {q[1]} lane {q[2]} runs {by_id[prev_id].name} and {n.name} at once"
                )
        last_finish[q] = (f, n.id)


def check_breakdown(breakdown_s: Mapping[str, float], step_s: float) -> None:
    """The breakdown adds up to the step time."""
    total = math.fsum(breakdown_s.values())
    if not math.isclose(total, step_s, rel_tol=1e-9, abs_tol=1e-12):
        raise SimulationError(f"breakdown sums to {total} s, the step takes {step_s} s")
    negative = [k for k, v in breakdown_s.items() if v < -TOLERANCE_S]
    if negative:
        raise SimulationError(f"negative breakdown entry {negative[0]!r}")


def check_busy(busy: Mapping[tuple[int, str], float], step_s: float) -> None:
    """No rank's stream busy for longer than the step: one step's work on an in-order stream fits
    one step time in the steady state (utilisation clamps a chain's last step to it, so this is
    where a scheduling bug that overlaps a queue would show). A chain of a few steps only nears the
    steady state: TorchRec's eager dcnv2 at batch 131,072 on p4d has a rank's compute 3 us past its
    116 ms step (2.6e-5); the check allows 1 % (a queue overlapped by a bug overshoots by kernels)."""
    limit = step_s * (1.0 + 1e-2)
    # Nothing over the limit (the rule): seen in C, the loop below only names the first that is.
    if not any(map(limit.__lt__, busy.values())):
        return
    for (rank, stream), value in busy.items():
        if value > limit:
            raise SimulationError(
                f"rank {rank}'s {stream} stream is busy {value:.6g} s in a step of {step_s:.6g} s"
            )


def check_utilisation(utilisation: Mapping[str, float]) -> None:
    """Nothing more than 100 % busy."""
    for name, value in utilisation.items():
        if value > 1.0 + 1e-9 or value < 0.0:
            raise SimulationError(f"resource class {name!r} is {value:.1%} busy")


def check_links(peaks: Mapping[str, tuple[str, float]], tolerance: float = 1e-2) -> None:
    """No link carries more collective bytes than its capacity over the step: ``peaks`` gives each
    link class's busiest instance and its utilisation counting the collectives' flows alone
    (``recsim.engine.resources``), which DES's shared network never lets exceed a link's rate. A
    chain of a few steps only nears the steady state (``check_busy``): ``tolerance`` allows 1 %."""
    for name, (instance, value) in peaks.items():
        if value > 1.0 + tolerance:
            raise SimulationError(
                f"resource class {name!r}: {instance} carries {value:.1%} of its capacity in "
                "collective bytes over the step"
            )
