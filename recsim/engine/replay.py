"""Replay a real trace: its step time as recorded, or re-estimated on a system (what-if).

Two modes (DESIGN §4.4):

* ``keep`` — every node keeps its recorded duration; the graph is rescheduled with recsim's rules
  (in-order streams, dependencies, collective synchronisation). This checks that the graph's
  structure reproduces the recorded step, and is the base for what-ifs that change one thing.
* ``re-estimate`` — GPU work is re-costed on ``system``: GEMM kernels whose shapes the trace
  recorded get the calibrated GEMM model (kernel time: the gap before a kernel is the trace's own);
  other compute kernels (elementwise, embedding/TBE, memory-bound) are scaled by the ratio of HBM
  bandwidths of the recorded and the target GPU; collectives are re-costed on the target's
  topology with their recorded sizes; a copy's bytes move at the target node's rate instead of the
  recorded node's (``CostModel.copy_bytes_per_s``, the rate ``transfer_s`` prices a copy at: the
  node's share of the PCIe uplink to or from the host, half the HBM within the GPU, its NVLink
  fabric or PCIe to a peer), the rest of its recorded time (launch, latency) kept; the recorded node
  is ``recsim.api.infer_recorded_system``'s (ASSUMPTION: a trace names its GPU, not its node), and a
  copy to or from pageable host memory keeps its recorded time (a CPU staging copy paces it, as
  ``ReplayResult.notes`` says); host (CPU) work keeps its
  recorded time, since the target's CPUs run the same framework code. What waited for what (a CPU
  blocked on the GPU, a stream on another, a thread on another) the readers turned into dependencies
  (``recsim.graph.readers.waits``), so it follows the re-costed work. An op with nothing recorded
  (an execution trace alone) gets the cost model's own estimate from its tensors; CPU work and
  embedding lookups have none and count as no time, which ``ReplayResult.notes`` says.

The step time is the predicted span of the trace's marked steps (``ProfilerStep#N``: from the
first one's start to the last one's end, ``_steps_span``) divided by their number per rank, so that
warm-up and unmarked work around them do not count; a trace that marks no steps is one step.

Besides the step time, a replay reports what a run's ``Result`` does of its step where it can
(DESIGN §4.5): the predicted step's critical path by category (``breakdown_s``: ``critical_path``
over the steps' window, ``replay_category``, summing to the predicted step), and when a target
system is known (``re-estimate``) its power and energy by the run's power model (``step_energy``)
from the busy times in that window. A replay with the recorded durations has no system: no power.

The recorded GPU is the caller's (``recorded_on``); ``recsim.api.replay`` takes it, unless told,
from the GPU the trace names (``metadata["device"]``, Kineto's ``deviceProperties``: the library
accelerator of its architecture with the nearest memory, ``recsim.api.recorded_accelerator``), and
from the A100 of the reference trace when the trace names none.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recsim import __version__
from recsim.cost.compute import compute_time_s, gemm_kernels, kernel_time_s, product_kernel_time_s
from recsim.cost.model import CATEGORIES, CostModel, category_of
from recsim.cost.platform import platform_note
from recsim.cost.power import step_energy
from recsim.engine.resources import collective_loads, resource_figures
from recsim.engine.simulate import _host_bytes, _network_busy, _utilisation, _window_ops
from recsim.engine.timeline import Window, busy_time, critical_path
from recsim.errors import ConfigError, InfeasibleError, TraceError
from recsim.graph.index import GraphIndex
from recsim.graph.ir import (
    Collective,
    Compute,
    ExecutionGraph,
    Host,
    Node,
    Stream,
    Transfer,
    is_uneven_all_to_all,
)
from recsim.graph.readers._common import kernel_category
from recsim.graph.readers.waits import pageable_copy
from recsim.graph.schedule import Schedule, Timing, asap_schedule
from recsim.graph.summary import steps_by_rank
from recsim.hardware.devices import Accelerator
from recsim.hardware.system import System
from recsim.hardware.topology import Topology
from recsim.metrics.invariants import check_breakdown
from recsim.metrics.resources import ResourceUse
from recsim.metrics.result import (
    FrozenMap,
    flat_mapping,
    mapping_keys,
    resource_mappings,
    with_resource_notes,
)


@dataclass(frozen=True)
class ReplayResult:
    """Recorded and predicted time of the trace's steps, and what a run's ``Result`` reports of its
    step where a replay can say it (DESIGN §4.5); ``notes``: what the figures rest on that the user
    should know (the readers' notes, a CPU-only trace, partial collectives, operations without a
    cost, why a figure is missing, ``trace_notes``).

    ``breakdown_s`` is the predicted step's critical path by category, as a run's: it sums to
    ``predicted_step_s``; ``utilisation`` each stream class's busy share of the predicted steps,
    over the traced ranks. The power figures are a run's over the predicted step on the target
    system (``recsim.cost.power``); a replay with the recorded durations has no system, so None.
    ``energy_per_sample_j`` needs the step's batch (``metadata["global_batch_size"]``, where a
    reader found it), which a trace rarely records: None then. Every key of ``to_dict`` (what
    ``recsim replay --json`` prints) is explained in ``recsim.engine.replay_fields``.

    A replay's result also keeps what it scheduled (``graph``, ``schedule``, ``topology``; not
    part of its value), which ``write_timeline`` writes as a Chrome trace (``--timeline``)."""

    mode: str
    steps: int
    recorded_step_s: float | None
    predicted_step_s: float
    predicted_total_s: float
    notes: tuple[str, ...] = ()
    breakdown_s: Mapping[str, float] = field(default_factory=dict)
    utilisation: Mapping[str, float] = field(default_factory=dict)
    avg_power_w: float | None = None
    power_by_component_w: Mapping[str, float] | None = None
    energy_per_step_j: float | None = None
    energy_per_sample_j: float | None = None
    recsim_version: str = __version__
    # Utilisation per resource class (``recsim.metrics.resources``): a re-estimate's network and
    # scale-up links, from the collectives the trace records; None with the recorded durations.
    resources: ResourceUse | None = None
    # What the replay scheduled, for its timeline (``write_timeline``), as a run's ``Simulation``
    # keeps it: the trace's graph, the replayed schedule (the recorded durations rescheduled, or
    # the re-estimated ones) and the topology a re-estimate costed its collectives on. Not part of
    # the result's value (nor of ``to_dict``); None in a result built without a replay.
    graph: ExecutionGraph | None = field(default=None, compare=False, repr=False)
    schedule: Schedule | None = field(default=None, compare=False, repr=False)
    topology: Topology | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Read-only figures, as a ``Result``'s: a caller cannot change them through the mappings.
        object.__setattr__(self, "breakdown_s", FrozenMap(self.breakdown_s))
        object.__setattr__(self, "utilisation", FrozenMap(self.utilisation))
        if self.power_by_component_w is not None:
            object.__setattr__(self, "power_by_component_w", FrozenMap(self.power_by_component_w))

    @property
    def error(self) -> float | None:
        if self.recorded_step_s is None or self.recorded_step_s <= 0:
            return None
        return self.predicted_step_s / self.recorded_step_s - 1.0

    def to_dict(self) -> dict[str, object]:
        """Flat, as ``Result.to_dict``: a mapping's figures as ``breakdown_s.compute`` keys, every
        key of ``mapping_keys()`` listed (0.0 where this replay has none of it; None for power
        that is not known, so both modes have the same keys). What ``recsim replay --json``
        prints; each key's meaning: ``recsim.engine.replay_fields.REPLAY_FIELDS`` (also in
        ``recsim replay --help``)."""
        out: dict[str, object] = {
            "mode": self.mode,
            "steps": self.steps,
            "recorded_step_s": self.recorded_step_s,
            "predicted_step_s": self.predicted_step_s,
            "predicted_total_s": self.predicted_total_s,
            "error": self.error,
        }
        canonical = mapping_keys()
        figures = self.resources.figures if self.resources is not None else None
        out.update(flat_mapping("breakdown_s", self.breakdown_s, canonical["breakdown_s"], 0.0))
        out.update(resource_mappings(self.utilisation, figures, 0.0))
        out["avg_power_w"] = self.avg_power_w
        # Power that is not known (keep mode): None for every key, as a failed run's.
        by_component = self.power_by_component_w
        out.update(
            flat_mapping(
                "power_by_component_w",
                by_component or {},
                canonical["power_by_component_w"],
                None if by_component is None else 0.0,
            )
        )
        out["energy_per_step_j"] = self.energy_per_step_j
        out["energy_per_sample_j"] = self.energy_per_sample_j
        out["recsim_version"] = self.recsim_version
        out["notes"] = list(self.all_notes)
        return out

    @property
    def all_notes(self) -> tuple[str, ...]:
        """``notes`` and then the resource figures' own, as ``Result.all_notes``."""
        return with_resource_notes(self.notes, self.resources)

    def write_timeline(self, path: Path | str) -> Path:
        """Write the replayed schedule as a Chrome trace (Perfetto, chrome://tracing) through the
        writer ``recsim run --timeline`` uses (``recsim.graph.writers.chrome``), whole or not at
        all (``recsim.output``): with ``keep``, the recorded durations as rescheduled; with
        ``re-estimate``, the predicted schedule on the target, its collectives' algorithm and
        protocol in their slices' ``args``. Its last slice ends at ``predicted_total_s``; the
        steps' span (``predicted_step_s`` x ``steps``) lies within. Returns the path."""
        if self.graph is None or self.schedule is None:
            raise ConfigError(
                "this replay result keeps no schedule (it was not made by a replay): no timeline"
            )
        from recsim.graph.writers.chrome import write_chrome_trace

        out = Path(path)
        write_chrome_trace(self.graph, out, self.schedule, self.topology)
        return out


def _recorded_steps(graph: ExecutionGraph) -> tuple[int, float | None]:
    """(profiler steps per rank, their mean recorded duration) of the trace; (1, None) without.

    The readers list every rank's steps (``{rank, duration_s, ...}``): the ranks run their steps
    side by side, so the replayed span covers one rank's steps, not their sum over the ranks.
    Ranks that recorded different numbers of steps make the per-step time meaningless: a
    ``TraceError``.
    """
    by_rank = steps_by_rank(graph.metadata.get("steps"))
    if not by_rank:
        return 1, None
    counts = {rank: len(d) for rank, d in by_rank.items()}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"rank {r}: {n}" for r, n in counts.items())
        raise TraceError(
            f"the ranks recorded different numbers of profiler steps ({shown}); replay needs one count"
        )
    durations = [d for steps in by_rank.values() for d in steps]
    return next(iter(counts.values())), math.fsum(durations) / len(durations)


# Recorded times have at most nanosecond precision (Kineto's are microseconds with three decimals):
# a node that starts within this of a step's edge is on the step's side of it.
_EDGE_S = 1e-9


def _step_windows(steps: object) -> dict[int, tuple[float, float]] | None:
    """Each rank's recorded (start, end) of its marked steps, from its first step's start to its
    last step's end (the readers' ``metadata["steps"]``, times from the start of the rank's file,
    as its nodes' ``start_s``); None when the trace marks no steps or a step lacks a usable rank
    or start (the span of the steps is then not known)."""
    if not isinstance(steps, list) or not steps:
        return None
    windows: dict[int, tuple[float, float]] = {}
    for s in steps:
        if not isinstance(s, dict):
            return None
        rank, start, length = s.get("rank"), s.get("start_s"), s.get("duration_s")
        if not (
            isinstance(rank, int)
            and not isinstance(rank, bool)
            and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                for x in (start, length)
            )
        ):
            return None
        assert isinstance(start, (int, float)) and isinstance(length, (int, float))  # for the type checker
        first, last = windows.get(rank, (math.inf, -math.inf))
        windows[rank] = (min(first, start), max(last, start + length))
    return windows


def _at(node: Node, t: float, schedule: Schedule) -> float:
    """The predicted time of recorded instant ``t`` inside ``node``: the same fraction of its
    predicted run as of its recorded one (its predicted start for a node of no recorded length)."""
    start = schedule.start_s[node.id]
    recorded = node.duration_s or 0.0
    if recorded <= 0 or node.start_s is None:
        return start
    fraction = min(max((t - node.start_s) / recorded, 0.0), 1.0)
    return start + fraction * (schedule.finish_s[node.id] - start)


def _steps_span(graph: ExecutionGraph, schedule: Schedule) -> float | None:
    """The predicted span of the trace's marked steps, or None where it marks none
    (``_steps_bounds``'s end less its start)."""
    bounds = _steps_bounds(graph, schedule)
    return None if bounds is None else bounds[1] - bounds[0]


def _steps_bounds(graph: ExecutionGraph, schedule: Schedule) -> tuple[float, float, frozenset[int]] | None:
    """The predicted (start, end) of the trace's marked steps and the ids of the nodes recorded in
    them, or None where it marks none.

    A step marker is a CPU annotation (``ProfilerStep#N``): work before the first (warm-up, the
    profiler starting) and after the last (the profiler stopping, a next step it did not mark) is
    not the steps' and must not be spread over them (a step left unmarked between two marked ones
    is inside the window and is spread over the marked ones). Each rank's steps start at the predicted time
    of its first step's start and end at that of its last step's end: the earliest predicted start
    and the latest predicted end of the rank's nodes recorded inside that window (or across one of
    its edges). The span runs from the earliest rank's start to the latest rank's end, as the
    makespan would. A node cut by an edge (a CPU segment across a step boundary, a kernel running
    past the step's end) places the edge at the same fraction of its predicted run (``_at``)."""
    windows = _step_windows(graph.metadata.get("steps"))
    if not windows:
        return None
    begin, end = math.inf, -math.inf
    inside: list[int] = []
    for node in graph.nodes:
        window = windows.get(node.rank)
        if window is None or node.start_s is None:
            continue
        first, last = window
        node_start = node.start_s
        node_end = node_start + (node.duration_s or 0.0)
        # The node lies in the window (one of no length on its first edge counts) or across an edge.
        if node_start >= last - _EDGE_S or (node_end <= first + _EDGE_S and node_start < first - _EDGE_S):
            continue
        begin = min(begin, _at(node, max(first, node_start), schedule))
        end = max(end, _at(node, min(last, node_end), schedule))
        inside.append(node.id)
    # A window of no length (a single marker of zero duration) says nothing about a step's time:
    # the whole trace's span is then taken, as for a trace without markers.
    return (begin, end, frozenset(inside)) if end > begin else None


def trace_notes(graph: ExecutionGraph, *, keep: bool) -> list[str]:
    """What the replay's figures rest on that the reader or the trace's shape tells: the readers'
    own notes (``metadata["notes"]``: events without a length, collectives whose parts disagree,
    ...), a trace without GPU work, collectives missing members whose traces were not given
    (how the replay takes them: ``keep``, with the recorded durations, or re-estimated), and, when
    re-estimating, collectives of a single member, which keep their recorded durations."""
    raw = graph.metadata.get("notes")
    notes = _by_ranks([str(n) for n in raw]) if isinstance(raw, (list, tuple)) else []
    if graph.nodes and all(n.stream is Stream.HOST for n in graph.nodes):
        notes.append(
            "the trace records no GPU work (kernels, copies), only CPU time: a CPU-only profile, or "
            "one taken without CUDA activities"
        )
    partial = _partial_collectives(graph)
    if partial is not None:
        count, total, absent = partial
        how = (
            "each takes the recorded duration of the last of its present members to arrive, its "
            "wait for the missing ones included"
            if keep
            else "they are re-costed on the target without waits for the missing ranks"
        )
        notes.append(
            f"{count} of {total} collectives miss members whose traces were not given "
            f"(rank{'s' if len(absent) > 1 else ''} {_runs(absent)}): when they arrived is not "
            f"known, so {how}"
        )
    lone = None if keep else _lone_collectives(graph)
    if lone is not None:
        # A group of one is no traffic to re-cost: such a collective keeps its recorded time, which
        # on a job of several ranks holds its wait for the others. A Chakra file records no group
        # (its reader takes the files given as the job), so one file read alone gives these.
        count, total = lone
        why = (
            "a Chakra trace does not record collective groups, and one rank's file was given"
            if graph.metadata.get("format") == "chakra"
            else "the trace names no other rank in their groups"
        )
        notes.append(
            f"{count} of {total} collectives have a single member ({why}): which ranks took part "
            "and when they arrived is not known, so they keep their recorded durations, not "
            "re-costed on the target"
        )
    return notes


def _lone_collectives(graph: ExecutionGraph) -> tuple[int, int] | None:
    """(collectives whose group is one rank, collectives) of the trace, or None when there are none
    of the former (counted per collective, as ``_partial_collectives``)."""
    groups: dict[object, tuple[int, ...]] = {}
    for node in graph.nodes:
        if isinstance(node.op, Collective):
            groups.setdefault(node.op.key, node.op.group)
    count = sum(1 for group in groups.values() if len(group) <= 1)
    return (count, len(groups)) if count else None


_RANK_NOTE = re.compile(r"rank (\d+): (.*)", re.DOTALL)


def _by_ranks(notes: list[str]) -> list[str]:
    """The readers' notes with the ranks that say the same thing (``rank 3: ...``) said once
    (``ranks 0-7: ...``), where the first of them was: eight ranks' files of one job often do."""
    ranks: dict[str, list[int]] = {}
    order: list[tuple[str, bool]] = []  # (note, said by ranks)
    for note in notes:
        match = _RANK_NOTE.fullmatch(note)
        if match is None:
            order.append((note, False))
            continue
        text = match.group(2)
        if text not in ranks:
            ranks[text] = []
            order.append((text, True))
        ranks[text].append(int(match.group(1)))
    said: list[str] = []
    for text, by_ranks in order:
        if by_ranks:
            who = sorted(set(ranks[text]))
            text = f"rank{'s' if len(who) > 1 else ''} {_runs(who)}: {text}"
        said.append(text)
    return said


def _runs(ranks: list[int]) -> str:
    """Sorted ``ranks`` as runs for a message: ``0-2, 4-7``."""
    runs: list[list[int]] = []
    for r in ranks:
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _partial_collectives(graph: ExecutionGraph) -> tuple[int, int, list[int]] | None:
    """(collectives missing members, collectives, the ranks missing) of the trace, or None when
    every collective has all its members."""
    present: dict[object, set[int]] = {}
    groups: dict[object, tuple[int, ...]] = {}
    for node in graph.nodes:
        if isinstance(node.op, Collective):
            present.setdefault(node.op.key, set()).add(node.rank)
            groups.setdefault(node.op.key, node.op.group)
    absent: set[int] = set()
    count = 0
    for key, ranks in present.items():
        missing = set(groups[key]) - ranks
        if missing:
            count += 1
            absent |= missing
    return (count, len(present), sorted(absent)) if count else None


@dataclass(frozen=True)
class _Replayed:
    """The replayed schedule, and the window its step time is read off: the predicted span of the
    trace's marked steps with the nodes recorded in them (``_steps_bounds``), or the whole trace
    where it marks none."""

    schedule: Schedule
    window: Window
    steps: int
    step_s: float  # predicted time per step: the window's length over ``steps``
    total_s: float  # the predicted makespan


def _replay(graph: ExecutionGraph, durations: dict[int, float], steps: int) -> _Replayed:
    """``graph`` scheduled with ``durations``: its predicted time per step, the span of its marked
    steps (``_steps_span``) per step, or the whole trace's where it marks none."""
    schedule = asap_schedule(graph, durations)
    total = schedule.makespan_s
    bounds = _steps_bounds(graph, schedule)
    if bounds is None:
        # The schedule starts at 0 (a node without predecessors starts then) and ends at its makespan.
        window = Window(0.0, total, frozenset(n.id for n in graph.nodes))
        return _Replayed(schedule, window, steps, total / steps, total)
    begin, end, ids = bounds
    return _Replayed(schedule, Window(begin, end, ids), steps, (end - begin) / steps, total)


def replay_category(node: Node) -> str:
    """The breakdown category of a recorded node: ``category_of``, a run's, with what the trace's
    ops stand for in a run's graph. A trace's embedding lookups are kernels (TBE's, ``Compute`` of
    category ``embedding``), which a run's graph has as ``Embedding`` ops; its CPU operators
    (``Compute`` on the host, from an execution trace) are the framework's host time, which a run's
    graph has as ``Host`` ops."""
    op = node.op
    if isinstance(op, Compute):
        if op.category == "embedding":
            return "embedding"
        if op.category in ("host", "cpu") or node.stream is Stream.HOST:
            return "host"
    return category_of(node)


def _window_timing(graph: ExecutionGraph, replayed: _Replayed) -> Timing:
    """The replayed schedule as seen inside its window: every start and finish clamped into it.

    A run's window ends with the last node of its last step and the run's metrics take its nodes
    whole; a replay's window is the marked steps' predicted span, whose edges may cut nodes (a CPU
    segment across a step boundary, ``_at``). Clamped, ``critical_path`` starts from a node that
    ends the window (one cut by its end does so at the end) and stops at its start, so the
    breakdown sums to the span, and ``busy_time`` counts the part of each node inside the span.
    The walk back is otherwise the same: a node on the path starts inside the window, so its
    predecessors finish inside it (kept) or before it (clamped to its start: the walk stops there
    all the same, the gap to the window's start being ``exposed_wait`` either way)."""
    timing = Timing.of(GraphIndex.of(graph), replayed.schedule)
    lo, hi = replayed.window.start_s, replayed.window.end_s
    return Timing(timing.index, np.clip(timing.start, lo, hi), np.clip(timing.finish, lo, hi))


def _breakdown(graph: ExecutionGraph, replayed: _Replayed, timing: Timing) -> dict[str, float]:
    """The predicted step's critical path by category (``CATEGORIES``, a run's): the window's
    divided by its number of steps, so it sums to the predicted step time (checked, as a run's)."""
    window = replayed.window
    if not window.node_ids:
        return dict.fromkeys(CATEGORIES, 0.0)
    totals, _ = critical_path(graph, replayed.schedule, window, replay_category, timing)
    breakdown = {k: totals.get(k, 0.0) / replayed.steps for k in CATEGORIES}
    check_breakdown(breakdown, replayed.step_s)
    return breakdown


def _job_ranks(graph: ExecutionGraph) -> int:
    """The number of ranks of the traced job: the graph's (a reader's: the world size the traces
    declare in ``distributedInfo``, at least the files and their ranks), its nodes' ranks and those
    its collectives' groups name. Without the graph's, a rank-3 trace of an 8-rank job with no
    collectives was replayed as a 4-rank job, the other 4 GPUs at idle power (a tester's find)."""
    return max(
        graph.ranks,
        1
        + max(
            (max(n.rank, *n.op.group) if isinstance(n.op, Collective) else n.rank for n in graph.nodes),
            default=-1,
        ),
    )


def _busy(graph: ExecutionGraph, replayed: _Replayed, timing: Timing) -> dict[tuple[int, str], float]:
    """Per (rank, stream class), the time its nodes recorded in the steps run inside the window
    (``busy_time`` over the clamped ``timing``)."""
    return busy_time(graph, replayed.schedule, replayed.window, timing)


def _replay_utilisation(
    graph: ExecutionGraph, replayed: _Replayed, busy: Mapping[tuple[int, str], float]
) -> dict[str, float]:
    """Each stream class's busy share of the window over the traced ranks (a run's ``_utilisation``)."""
    ranks = len({n.rank for n in graph.nodes})
    return _utilisation(busy, ranks, replayed.window.length_s) if ranks else {}


#: The resource classes a re-estimated replay knows the bytes of: those only collectives load. A
#: trace records its collectives' sizes, not what its kernels read from HBM, its lookups move over
#: PCIe (UVM rows inside a TBE kernel) or its CPU work through host DRAM; those classes are left out.
REPLAY_CLASSES = ("scale_up", "network", "network_uplinks")


def _replay_resources(replayed: _Replayed, timing: Timing, cost: CostModel, system: System) -> ResourceUse:
    """Utilisation of the links only collectives load, over the predicted steps' window: the
    window's collectives' flows on ``system``'s topology (``recsim.engine.resources``)."""
    loads = collective_loads(timing.index, replayed.window, cost, system)
    figures = resource_figures(
        loads, cost.topology, system, replayed.window.length_s, "replay", REPLAY_CLASSES
    )
    return ResourceUse(figures.figures)


@dataclass(frozen=True)
class _Power:
    """The power figures of a re-estimated step (``ReplayResult``'s of the same names)."""

    avg_power_w: float
    power_by_component_w: dict[str, float]
    energy_per_step_j: float
    energy_per_sample_j: float | None


def _power(
    graph: ExecutionGraph,
    replayed: _Replayed,
    timing: Timing,
    busy_s: Mapping[tuple[int, str], float],
    system: System,
    topology: Topology,
) -> tuple[_Power, list[str]]:
    """The power figures of the predicted step on ``system`` and the notes they need, from the
    power model of a run (``step_energy``) over the window: each rank's stream busy times in it
    (``busy_s``), its scale-out collectives' time, the bytes its copies move.

    The power is the whole system's, as a run's: a rank of the job whose trace was not given ran
    too, so it is taken to be as busy as the traced ranks on average (a note says so), and an
    accelerator that runs no rank of the job draws its no-program idle power.

    The accelerators are priced by the linear utilisation rule (their floor in a job, and the rest
    of their range by their compute stream's busy share), not by their kernels' work as a run's
    are: a trace's kernels do not all carry their FLOPs and bytes (a Kineto kernel without its
    tensors, an embedding lookup whose rows are unknown), and pricing those at no work would be
    worse. A note says so: the rule over-charges GPUs whose kernels wait on a slow link."""
    window = replayed.window
    busy = dict(busy_s)
    network = _network_busy(timing, window, system)
    host_bytes = _host_bytes(_window_ops(timing.index, window, {}))
    notes: list[str] = []
    traced = sorted({n.rank for n in graph.nodes})
    job = _job_ranks(graph)
    missing = [r for r in range(job) if r not in traced]
    if missing and traced:
        for stream in dict.fromkeys(stream for _, stream in busy):
            mean = math.fsum(busy.get((r, stream), 0.0) for r in traced) / len(traced)
            busy.update({(r, stream): mean for r in missing})
        mean_network = math.fsum(network.get(r, 0.0) for r in traced) / len(traced)
        network.update({r: mean_network for r in missing})
        host_bytes *= job / len(traced)
        notes.append(
            f"power: rank{'s' if len(missing) > 1 else ''} {_runs(missing)} of the job's {job} "
            f"{'are' if len(missing) > 1 else 'is'} not in the trace: taken to be as busy as the "
            "traced ranks on average"
        )
    idle = system.num_accelerators - job
    if idle > 0:
        notes.append(
            f"power: {system.name} has {system.num_accelerators} accelerators and the job "
            f"{job} rank{'s' if job != 1 else ''}: the other {idle} "
            f"{'are' if idle != 1 else 'is'} counted at their no-program idle power"
        )
    notes.append(
        "power: the accelerators are priced by their compute streams' busy share (floor in a job + "
        "(max - floor) x busy), not by their kernels' FLOPs and bytes as a run's are (a trace's "
        "kernels do not all carry them): a GPU whose kernels wait on a slow link reads busy and is "
        "over-charged"
    )
    said = platform_note(system)
    if said is not None:
        notes.append(f"power: {said}")
    energy = step_energy(
        system,
        topology,
        window.length_s,
        busy,
        host_bytes=host_bytes,
        network_busy_s=network,
        job_ranks=job,
    )
    per_step_j = energy.total_j / replayed.steps
    batch = graph.metadata.get("global_batch_size")
    per_sample_j: float | None = None
    if isinstance(batch, int) and not isinstance(batch, bool) and batch > 0:
        per_sample_j = per_step_j / batch
    else:
        notes.append(
            "the trace does not record its batch size: no energy per sample (energy_per_step_j is "
            "the whole system's energy per step)"
        )
    return _Power(energy.avg_power_w, energy.power_by_component_w(), per_step_j, per_sample_j), notes


def _refuse_untimed(graph: ExecutionGraph, lengths: Sequence[float], target: str | None) -> None:
    """Refuse a replay in which no operation takes time (``lengths``: each node's, recorded or
    re-estimated on ``target``; None for the recorded durations): its step would be 0 s, and a
    re-estimate's power the idle floor, reported as figures (a tester's find: an execution trace
    alone re-estimated to 0 s and 0 W, its notes saying why). The rule is the whole trace's, not
    the marked steps': the steps' window is the trace's span where they take no time
    (``_steps_bounds``), so a step of 0 s is exactly a trace of no time. The error names what is
    missing: recorded durations, a cost model for the operations without them, or durations that
    are all 0."""
    if any(length > 0 for length in lengths):
        return
    nodes = graph.nodes
    n = len(nodes)
    unrecorded = sum(1 for node in nodes if node.duration_s is None)
    no_model = sum(1 for node in nodes if unmodelled(node))
    zero = sum(1 for node in nodes if node.duration_s is not None and node.duration_s <= 0)
    if unrecorded == n:
        if target is None:
            raise TraceError(
                "the trace records no durations (an execution trace without its Kineto profile?): "
                "give the Kineto trace files too, or re-estimate it on a system (--re-estimate --system S)"
            )
        why = [f"{no_model} are CPU work or embedding lookups, which no model costs"] if no_model else []
        why += [f"{n - no_model} cost 0 s"] if n - no_model else []
        raise TraceError(
            "the trace records no durations (an execution trace without its Kineto profile?), and "
            f"none of its {n} operation{'s' if n != 1 else ''} has a cost model's estimate on "
            f"{target} ({'; '.join(why)}): its step would be 0 s; give the Kineto trace files too"
        )
    if target is None:
        parts = [f"{unrecorded} have no recorded duration"] if unrecorded else []
    else:
        parts = [f"{no_model} have no recorded duration and no cost model"] if no_model else []
        if unrecorded - no_model:
            parts.append(f"{unrecorded - no_model} have no recorded duration and cost 0 s on {target}")
    if zero:
        parts.append(f"{zero} record a duration of 0 (complete events without a 'dur' are read as 0 long)")
    if n - unrecorded - zero:
        parts.append(f"{n - unrecorded - zero} re-estimate to 0 s on {target}")
    raise TraceError(
        f"no operation of the trace takes any time{f' on {target}' if target else ''}, so there is "
        f"no step to time: of its {n} operation{'s' if n != 1 else ''}, {'; '.join(parts)}. Give "
        "the trace with its events' durations"
    )


def replay_keep(graph: ExecutionGraph) -> ReplayResult:
    """Reschedule the trace with its recorded durations; a trace in which no operation records any
    time (``_refuse_untimed``) is refused."""
    durations = {n.id: n.duration_s or 0.0 for n in graph.nodes}
    _refuse_untimed(graph, list(durations.values()), None)
    steps, recorded = _recorded_steps(graph)
    replayed = _replay(graph, durations, steps)
    timing = _window_timing(graph, replayed)
    busy = _busy(graph, replayed, timing)
    notes = trace_notes(graph, keep=True)
    notes.append(
        "no power or energy: a replay with the recorded durations has no target system (the "
        "trace's GPU alone does not say the node's CPUs, memory, NICs and switches); re-estimate "
        "it on one for them (--re-estimate --system S)"
    )
    return ReplayResult(
        "keep",
        steps,
        recorded,
        replayed.step_s,
        replayed.total_s,
        tuple(notes),
        breakdown_s=_breakdown(graph, replayed, timing),
        utilisation=_replay_utilisation(graph, replayed, busy),
        graph=graph,
        schedule=replayed.schedule,
    )


def reestimate_duration(
    node: Node,
    cost: CostModel,
    recorded_on: Accelerator,
    target: Accelerator,
    recorded_cost: CostModel | None = None,
) -> float:
    """The re-estimated duration of one recorded node (see the module docstring). ``recorded_cost``:
    the cost model of the node the trace was recorded in, whose copy rates a recorded copy is read
    at (``CostModel.copy_bytes_per_s``); without one, copies keep their recorded times."""
    recorded = node.duration_s or 0.0
    op = node.op
    if node.duration_s is None and not unmodelled(node):
        # Nothing recorded (an execution trace without its Kineto trace): the cost model's own
        # estimate, a GPU op's from the bytes and FLOPs of its recorded tensors.
        if isinstance(op, Compute):
            return compute_time_s(op, target)
        if isinstance(op, Transfer):
            return cost.transfer_s(op)
    if isinstance(op, Compute):
        if op.category == "gemm" and op.flops > 0 and gemm_kernels(op):
            # Kernel time only: a recorded kernel's duration is its own (CUPTI's), and the gap in
            # front of it is the trace's (its launch, the host segments before it). A node named
            # after its GEMM kernel (the Kineto reader's, one node per kernel) is the product's
            # kernel alone: where cuBLAS split K, its reduction kernel is a recorded node of its
            # own (no FLOPs, rescaled as other kernels). A node of an operator (``aten::mm``: the
            # ET+Kineto reader's, whose duration sums every kernel the op launched) holds the
            # reduction too, so it gets both.
            if kernel_category(op.op) == "gemm":
                return product_kernel_time_s(op, target)
            return kernel_time_s(op, target)
        if op.category in ("host", "cpu"):
            return recorded
        if node.stream.value in ("compute", "copy") and recorded > 0:
            was, now = recorded_on.hbm.bandwidth_bytes_per_s, target.hbm.bandwidth_bytes_per_s
            # Equal rates keep the recorded time exactly (``recorded * was / now`` may be 1 ulp off).
            return recorded if was == now else recorded * was / now
        return recorded
    if isinstance(op, Collective):
        # An uneven all-to-all is re-costed whole, from all its parts (``replay_reestimate``).
        if len(op.group) > 1 and op.bytes > 0 and not is_uneven_all_to_all(op):
            return cost.collective_s(op)
        return recorded
    if (
        isinstance(op, Transfer)
        and recorded > 0
        and recorded_cost is not None
        and not pageable_copy(node.name)
    ):
        was, now = recorded_cost.copy_bytes_per_s(op), cost.copy_bytes_per_s(op)
        if was and now:
            return rescaled_copy_s(recorded, op.bytes, was, now)
    return recorded


def rescaled_copy_s(
    recorded_s: float, nbytes: float, was_bytes_per_s: float, now_bytes_per_s: float
) -> float:
    """A recorded copy's time at another rate: only its bytes' part moves (``nbytes`` at each
    rate), its launch and latency (the rest of the recorded time) are kept, so that a small copy
    (a V100 trace's 1 us copies of 24 B) is not sped up as if it were all bandwidth (a reviewer
    found one at 0.06 us on GB200). A copy that ran faster than ``was`` (its bytes' time at that
    rate is more than its whole recorded time) is all bytes: the recorded time scales by
    ``was / now``, so the result moves continuously and never grows as ``now`` does (a reviewer's
    find: ``max(recorded - b / was, 0) + b / now`` jumped from 400 us to 617 us when ``now`` rose
    0.1 % above ``was``). Equal rates keep the recorded time exactly."""
    if was_bytes_per_s == now_bytes_per_s:
        return recorded_s
    moving_s = min(recorded_s, nbytes / was_bytes_per_s)
    # ``recorded - moving + moving * was / now`` written so that rounding keeps it monotone:
    # ``was / now - 1`` is >= 0 below ``was`` and <= 0 above it, exactly.
    return recorded_s + moving_s * (was_bytes_per_s / now_bytes_per_s - 1.0)


def recorded_copies(nodes: Sequence[Node]) -> list[Node]:
    """The copies with a recorded duration: those a re-estimate rescales by the nodes' rates."""
    return [n for n in nodes if isinstance(n.op, Transfer) and (n.duration_s or 0.0) > 0]


def _copy_notes(
    nodes: Sequence[Node], recorded_on: Accelerator, recorded_cost: CostModel | None
) -> list[str]:
    """What the replay says of the recorded copies that keep their recorded times."""
    copies = recorded_copies(nodes)
    if not copies:
        return []
    if recorded_cost is None:
        return [
            f"{len(copies)} copies keep their recorded times: recorded node unknown (no recorded "
            f"system was given for {recorded_on.name}), so the rates they ran at are unknown"
        ]
    pageable = [n for n in copies if pageable_copy(n.name)]
    if not pageable:
        return []
    total_s = sum(n.duration_s or 0.0 for n in pageable)
    return [
        f"{len(pageable)} copies to or from pageable host memory ({total_s * 1e3:.3g} ms) keep their "
        "recorded times: the driver stages them through a pinned buffer with a CPU copy, which the "
        "link's rate does not set"
    ]


def unmodelled(node: Node) -> bool:
    """A node without a recorded duration that no cost model estimates from the trace: CPU work
    (framework code) and an embedding lookup, whose recorded tensors (the whole table) do not say
    which rows it read. It counts as no time."""
    if node.duration_s is not None:
        return False
    op = node.op
    if isinstance(op, Host):
        return True
    return isinstance(op, Compute) and (
        op.category in ("host", "cpu", "embedding") or node.stream is Stream.HOST
    )


def _check_ranks_fit(graph: ExecutionGraph, system: System) -> None:
    """Refuse a trace with more ranks than ``system`` has accelerators, naming the ``--nodes`` that
    would hold them (it had failed at its first collective, "rank 4 is outside ...")."""
    ranks = _job_ranks(graph)
    have = system.num_accelerators
    if ranks > have:
        per_node = system.node.num_accelerators
        hint = f": --nodes {-(-ranks // per_node)}" if per_node else ""
        raise ConfigError(
            f"the trace has {ranks} ranks and {system.name} {have} accelerator{'s' if have != 1 else ''}"
            f" ({system.num_nodes} node{'s' if system.num_nodes != 1 else ''}){hint}"
        )


def replay_reestimate(
    graph: ExecutionGraph, system: System, recorded_on: Accelerator, recorded_system: System | None = None
) -> ReplayResult:
    """Re-cost the trace's GPU work on ``system`` and reschedule; a trace in which nothing takes
    time, recorded or re-estimated (``_refuse_untimed``), is refused. ``recorded_system``: the node the
    trace ran in, whose copy rates its copies are read at (``recsim.api.infer_recorded_system``); ``system``
    itself where it holds ``recorded_on``; else, without one, the copies keep their recorded times
    (a note says so)."""
    target = system.accelerator
    if target is None:
        raise InfeasibleError(f"system {system.name!r} has no accelerator to replay GPU work on")
    nodes = graph.nodes
    _check_ranks_fit(graph, system)
    cost = CostModel(system)
    if recorded_system is None and target.name == recorded_on.name:
        recorded_system = system
    recorded_cost = (
        None if recorded_system is None else cost if recorded_system is system else CostModel(recorded_system)
    )
    lengths = [reestimate_duration(n, cost, recorded_on, target, recorded_cost) for n in nodes]
    # An uneven all-to-all is re-costed from all its parts where the trace has every rank's, else
    # from each rank's own part as that rank's (``CostModel.collective_members_s``); one of a
    # single member or of no bytes keeps its recorded time, as other collectives do.
    cost.whole_all_to_alls(nodes, lengths, keep_idle=True)
    _refuse_untimed(graph, lengths, system.name)
    durations = {n.id: d for n, d in zip(nodes, lengths, strict=True)}
    steps, recorded = _recorded_steps(graph)
    replayed = _replay(graph, durations, steps)
    timing = _window_timing(graph, replayed)
    busy = _busy(graph, replayed, timing)
    power, said = _power(graph, replayed, timing, busy, system, cost.topology)
    # The trace's notes, what the power rests on, then what no model costs (last: the step's
    # figures lack it).
    notes = [*trace_notes(graph, keep=False), *said, *_copy_notes(nodes, recorded_on, recorded_cost)]
    missing = sum(1 for n in nodes if unmodelled(n))
    if missing:
        notes.append(
            f"{missing} of {len(nodes)} operations have no recorded duration and no cost model (CPU "
            "work, embedding lookups) and count as no time: give the Kineto traces with the "
            "execution traces for them"
        )
    return ReplayResult(
        "re-estimate",
        steps,
        recorded,
        replayed.step_s,
        replayed.total_s,
        tuple(notes),
        breakdown_s=_breakdown(graph, replayed, timing),
        utilisation=_replay_utilisation(graph, replayed, busy),
        resources=_replay_resources(replayed, timing, cost, system),
        avg_power_w=power.avg_power_w,
        power_by_component_w=power.power_by_component_w,
        energy_per_step_j=power.energy_per_step_j,
        energy_per_sample_j=power.energy_per_sample_j,
        graph=graph,
        schedule=replayed.schedule,
        topology=cost.topology,
    )
