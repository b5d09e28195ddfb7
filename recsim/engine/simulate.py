"""Simulate a training step end to end: plan -> memory check -> graph -> engine -> Result.

The steps: check that every rank's HBM holds its shards, dense model and activations, and every
node's host DRAM and SSDs their shards (else an ``infeasible`` Result naming the rank or node, the
tier and the shortfall); build the step graph and chain
``steps`` copies (default 3) so the pipeline reaches its steady state; schedule it with the
chosen engine, the kernels that overlap their rank's collectives slowed as measured
(``recsim.cost.interference``: the overlaps are read off the contention-free schedule, then the
analytic engine reschedules and DES runs with those durations); measure the last step (its
critical-path breakdown, busy times, energy); check the invariants. Everything returned is a
``Result``; only bugs raise.

The graph's ``GraphIndex`` (``recsim.graph.index``) is made once, and the schedule's ``Timing``
once after the engine (the analytic engine schedules twice when the interference changes
durations, and DES starts from the contention-free schedule): the engine, the invariant checks
and every metric read those integer and float arrays instead of walking the nodes again.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt

from recsim import __version__
from recsim.config.hashing import config_hash
from recsim.cost.compute import run_dtype_note
from recsim.cost.embedding import DDR, NMP_CHANNEL, EmbeddingCost
from recsim.cost.embedding.ddr import node_cores, rank_share
from recsim.cost.interference import collective_footprints, stretched_lengths
from recsim.cost.memo import CostMemo
from recsim.cost.model import CATEGORIES, CostModel, category_of, category_of_op
from recsim.cost.platform import platform_note
from recsim.cost.power import step_energy
from recsim.cost.provenance import calibration_note
from recsim.cost.sm_sharing import has_side_lanes, shared_sm_seconds
from recsim.engine import DEFAULT_STEPS
from recsim.engine.analytic import graph_lengths
from recsim.engine.gc_pause import paused_gc
from recsim.engine.resources import step_resources
from recsim.engine.timeline import Window, busy_time, critical_path, step_window
from recsim.errors import ConfigError, InfeasibleError
from recsim.graph.build import BuildOptions, build_training_step
from recsim.graph.index import GraphIndex, OpTable
from recsim.graph.ir import Collective, Embedding, ExecutionGraph, Host, Op, Stream, Transfer
from recsim.graph.runtime import apply_runtime
from recsim.graph.schedule import Schedule, Timing, asap_timing
from recsim.graph.shard_ops import ShardOps
from recsim.graph.steps import ChainedGraph
from recsim.hardware.system import System, capped_rates_note
from recsim.hardware.topology import Topology, build_topology
from recsim.metrics.invariants import (
    check_breakdown,
    check_busy,
    check_links,
    check_schedule,
    check_utilisation,
)
from recsim.metrics.resources import ResourceUse
from recsim.metrics.result import Result
from recsim.planner.storage import HBM_PARTS, Usage, capacity, check_fits, plan_usage
from recsim.planner.types import Plan
from recsim.workload.spec import Workload

if TYPE_CHECKING:  # the DES engine (and simpy) load only when a DES run asks for them
    from recsim.engine.des import DesCounters


@dataclass(frozen=True)
class Simulation:
    """A Result with the chained graph and schedule it came from (None when nothing ran), and the
    topology its collectives were costed on (a timeline reports their algorithm and protocol)."""

    result: Result
    graph: ExecutionGraph | None = None
    schedule: Schedule | None = None
    topology: Topology | None = None


@dataclass(frozen=True)
class SimulationOptions:
    """How to simulate: engine, number of chained steps, wire format of pooled embeddings."""

    fidelity: str = "analytic"
    steps: int = DEFAULT_STEPS
    comm_dtype: str | None = None  # None: the plan's choice
    check_invariants: bool = True
    # The DES engine adds its work (events, wall time) here when given: benchmarks read it.
    des_counters: DesCounters | None = None
    # Costs kept across evaluations of this system and workload (``recsim.cost.memo``): the
    # same results, computed once for a sweep or ``auto``'s candidates.
    costs: CostMemo | None = None
    # Kernels beside their rank's collectives run slower (``recsim.cost.interference``); False
    # lets computation and communication overlap for free (an ablation).
    comm_interference: bool = True
    # Kernels on two compute lanes of a rank share its SMs (``recsim.cost.sm_sharing``, measured
    # on the A100 trace); off by default: on, it moves the 43 end-to-end cases from 6.37 % to
    # 8.63 % mean |error| (the 31 MLPerf DCNv2 ones from -1.6 % to -5.9 % signed; figures of the
    # module docstring, at 5ef9c80), so the engines' free overlap of lanes stays the default until
    # that is understood.
    sm_sharing: bool = False
    # Stragglers, by rank: the speed of its accelerator (its compute and copy streams' nodes take
    # their time / factor; a thermally throttled or slower GPU) and of its scale-out NICs (their
    # links carry factor x their bandwidth: a degraded port), 1 being nominal. Both engines apply
    # them; collectives wait for their slowest member either way.
    speed_factors: Mapping[int, float] = field(default_factory=dict)
    nic_speed_factors: Mapping[int, float] = field(default_factory=dict)
    # Analytic: build and schedule one of the ranks that hold no shard of their own, for all of
    # them (``recsim.graph.build``, "Folded ranks"): the same result, the same schedule for the
    # ranks the graph holds, but ``Simulation.graph`` then lacks the others, so it is for callers
    # that keep only the ``Result`` (``recsim.api.simulate``, sweeps, the planner's ``auto``).
    fold_ranks: bool = False


def resolved_config_hash(system: System, workload: Workload, memo: CostMemo | None = None) -> str:
    """16 hex digits naming a run's resolved system and workload (``Result.resolved_config_hash``).

    A ``CostMemo`` of these very objects keeps them (``CostMemo.config_hash``): hashing the two
    configs' canonical JSON costs a twentieth of an analytic evaluation at 128 GPUs."""
    if memo is not None and memo.system is system and memo.workload is workload:
        return memo.config_hash
    return config_hash(system)[:8] + config_hash(workload)[:8]


def options_note(options: SimulationOptions) -> str | None:
    """The run's settings that change its figures but are neither the system, the workload nor the
    plan (so not in ``resolved_config_hash``): a saved result of a straggler or an fp8 all-to-all
    had read as the nominal run's (a tester's find). None for a nominal run."""
    said: list[str] = []
    if options.comm_dtype is not None:
        said.append(f"pooled embeddings sent as {options.comm_dtype} (--comm-dtype)")
    if not options.comm_interference:
        said.append("no slowdown of kernels beside collectives (--no-comm-interference)")
    if options.sm_sharing:
        said.append("kernels on two compute lanes of a GPU share its SMs (--sm-sharing)")
    for factors, what, flag in (
        (options.speed_factors, "accelerator", "--straggler"),
        (options.nic_speed_factors, "scale-out NICs", "--slow-nic"),
    ):
        slowed = sorted((r, f) for r, f in factors.items() if f != 1.0)  # 1: nominal, as the run
        if slowed:
            ranks = ", ".join(f"rank {r} at {f:g}x" for r, f in slowed)
            said.append(f"{what}: {ranks} ({flag})")
    return "run options: " + "; ".join(said) if said else None


def run_notes(system: System, options: SimulationOptions, *, reports_power: bool) -> tuple[str, ...]:
    """The notes that say how a run's figures were made. The platform's says how power was priced:
    only a result that reports power has it (an infeasible run's had carried it, with no power)."""
    memo = options.costs
    if memo is not None and memo.system is system:
        # The system's own notes, worked out once for the memo's system (``CostMemo.system_notes``).
        calibration, nic_cap, platform = memo.system_notes
    else:
        calibration, nic_cap = calibration_note(system), capped_rates_note(system)
        platform = platform_note(system) if reports_power else None
    said = (calibration, nic_cap, platform if reports_power else None, options_note(options))
    return tuple(n for n in said if n)


def run_context(
    system: System, workload: Workload, plan: Plan, options: SimulationOptions
) -> dict[str, object]:
    """The fields of a run's ``Result`` that say what was simulated (kept by a failed run too, so
    its notes are a run's that reports no power: ``run_notes``)."""
    return {
        "notes": run_notes(system, options, reports_power=False),
        "mode": "training",
        "fidelity": options.fidelity,
        "system": system.name,
        "workload": workload.name,
        "plan": plan.strategy,
        "num_accelerators": plan.world_size,
        "global_batch_size": workload.training.global_batch_size,
        "resolved_config_hash": resolved_config_hash(system, workload, options.costs),
        "recsim_version": __version__,
    }


def simulate_training(
    system: System, workload: Workload, plan: Plan, options: SimulationOptions
) -> Simulation:
    """The steady-state training step of ``workload`` on ``system`` with ``plan``."""
    # The cyclic collector would spend a third of an analytic evaluation walking the heap for
    # nothing (``recsim.engine.gc_pause``); reference counting still frees memory meanwhile. A DES
    # run keeps it: simpy's events and processes hold reference cycles for the run's length.
    pause = paused_gc() if options.fidelity == "analytic" else contextlib.nullcontext()
    with pause:
        return _simulate_training(system, workload, plan, options)


def _simulate_training(
    system: System, workload: Workload, plan: Plan, options: SimulationOptions
) -> Simulation:
    context = run_context(system, workload, plan, options)
    check_speed_factors(options, system)
    if options.costs is not None:
        # First: a memo of another system or workload is a caller's mistake (``ValueError``),
        # whatever the plan, and even where the costs below would not take it (slow NICs).
        options.costs.check(system, workload)
    acc = system.accelerator
    if acc is None:
        return Simulation(
            Result.failed("infeasible", f"system {system.name!r} has no accelerators to train on", **context)
        )
    if plan.world_size != system.num_accelerators:
        return Simulation(
            Result.failed(
                "infeasible",
                f"plan is for {plan.world_size} ranks, "
                f"{system.name} has {system.num_accelerators} accelerators",
                **context,
            )
        )
    try:
        plan.validate(workload)
        usage = plan_usage(plan, workload, system, options.costs)
    except InfeasibleError as exc:
        return Simulation(Result.failed("infeasible", str(exc), **context))
    memory_peak = memory_peaks(usage)
    try:
        check_fits(usage, capacity(system))
    except InfeasibleError as exc:
        return Simulation(
            Result.failed("infeasible", str(exc), memory_peak_bytes=memory_peak, memory_fits=False, **context)
        )
    # The builder's shard figures and the cost model's embedding costs read the same access
    # models: made once, by the builder, and handed on (their popularity is worked out once).
    shard_ops = ShardOps(workload) if options.costs is None else options.costs.shard_ops
    try:
        step = build_training_step(
            workload,
            plan,
            BuildOptions(
                comm_dtype=options.comm_dtype,
                validate_plan=False,
                ranks_per_node=max(1, system.node.num_accelerators),
                # The DES engine moves every rank's flows; a straggler's or slow NIC's rank is
                # its own.
                fold_ranks=options.fold_ranks and options.fidelity == "analytic",
                keep_ranks=frozenset([*options.speed_factors, *options.nic_speed_factors]),
            ),
            shard_ops,
        )
    except InfeasibleError as exc:
        return Simulation(Result.failed("infeasible", str(exc), **context))
    chained = ChainedGraph.lazy(step, options.steps)
    graph = apply_runtime(chained, workload)
    # A runtime that keeps the graph (``fused``) returns it without reading its nodes: its index
    # then comes from the step graph's, and its nodes are made only if the caller reads them.
    index = chained.index() if graph is chained else GraphIndex.of(graph)
    # Slow NICs change the topology: the costs are then the run's own, not a shared memo's.
    slow_nics = slowed_topology(system, options)
    cost = CostModel(
        system,
        workload,
        topology=slow_nics,
        fused_tables=graph.metadata.get("fused_tables"),
        table_slices=graph.metadata.get("table_slices"),
        access_models=shard_ops.access_models(),
        memo=options.costs if slow_nics is None else None,
        folded_parts=graph.metadata.get("folded_parts"),
    )
    classes: dict[int, tuple[int, ...]] = graph.metadata.get("rank_classes") or {}
    schedule, timing = _run(graph, index, cost, options, plan)
    if options.check_invariants:
        check_schedule(graph, schedule, timing)
    window = step_window(graph, schedule, timing)
    step_s = window.length_s
    breakdown, _ = critical_path(graph, schedule, window, category_of, timing, op_category=category_of_op)
    breakdown = {k: breakdown.get(k, 0.0) for k in CATEGORIES}
    busy = unfolded_streams(busy_time(graph, schedule, window, timing), classes)
    network_busy = unfolded(_network_busy(timing, window, system), classes)
    # The window's ops and their counts, worked out once for both readers (``timing.index`` is
    # ``index``: both engines' timings are of it).
    window_ops = _window_ops(index, window, classes)
    host_bytes = _host_bytes(window_ops)
    tiers = _tier_activity(timing, window, cost, system, window_ops)
    kernel_j = unfolded(_kernel_energy(index, window, cost), classes)
    utilisation = _utilisation(device_busy(busy, tiers, step_s), plan.world_size, step_s)
    energy = step_energy(
        system,
        cost.topology,
        step_s,
        busy,
        host_bytes=host_bytes + tiers.dram_bytes,
        network_busy_s=network_busy,
        cpu_busy_s=tiers.cpu_busy_s,
        nmp_busy_s=tiers.nmp_busy_s,
        off_gpu_s=tiers.off_gpu_s,
        kernel_j=kernel_j,
    )
    if options.check_invariants:
        check_breakdown(breakdown, step_s)
        check_busy(busy, step_s)  # before ``_utilisation``'s clamp
        check_utilisation(utilisation)
    resources = _resources(index, window, cost, system, classes, options)
    batch = workload.training.global_batch_size
    fallback = run_dtype_note(workload.training.precision, acc)
    context.pop("notes")
    said = run_notes(system, options, reports_power=True)  # this result reports power
    result = Result(
        status="ok",
        iteration_time_s=step_s,
        throughput_samples_per_s=batch / step_s if step_s > 0 else math.nan,
        breakdown_s=breakdown,
        utilisation=utilisation,
        memory_peak_bytes=memory_peak,
        memory_fits=True,
        energy_per_sample_j=energy.total_j / batch,
        avg_power_w=energy.avg_power_w,
        power_by_component_w=energy.power_by_component_w(),
        notes=(*said, fallback) if fallback else said,
        resources=resources,
        **context,  # type: ignore[arg-type]
    )
    return Simulation(result, graph, schedule, cost.topology)


def memory_peaks(usage: Usage) -> dict[str, float]:
    """``Result.memory_peak_bytes``: the most HBM a rank holds, host DRAM and SSD bytes a node holds,
    and what fills that rank's HBM by kind (``hbm_<kind>``, ``Usage.hbm_parts``; they add up to
    ``hbm``), so a plan that runs out of HBM shows what took it. The rank is the first of the
    fullest, the one ``check_fits`` names."""
    hbm = usage.hbm_by_rank
    rank = max(hbm, key=hbm.__getitem__)
    parts = usage.hbm_parts(rank)
    return {
        "hbm": hbm[rank],
        "ddr": max(usage.ddr_by_node.values(), default=0.0),
        "ssd": max(usage.ssd_by_node.values(), default=0.0),
        **{f"hbm_{kind}": parts[kind] for kind in HBM_PARTS},
    }


def _resources(
    index: GraphIndex,
    window: Window,
    cost: CostModel,
    system: System,
    classes: Mapping[int, Sequence[int]],
    options: SimulationOptions,
) -> ResourceUse:
    """The step's utilisation per resource class (``recsim.engine.resources``). An analytic run's is
    worked out when first read: the planner and a sweep's ranking read the step time alone, and
    counting every op's and collective's bytes would cost them a few percent of an evaluation.
    DES's is worked out now, for its invariant: the collectives' bytes on a link stay within its
    capacity, as its shared network moves them (``check_links``)."""
    if options.fidelity != "des":
        return ResourceUse(lambda: step_resources(index, window, cost, system, classes, "analytic").figures)
    measured = step_resources(index, window, cost, system, classes, "des")
    if options.check_invariants:
        check_links(measured.flow_peaks)
    return ResourceUse(measured.figures)


def des_key(plan: Plan, options: SimulationOptions) -> tuple[object, ...]:
    """What a DES run's schedule depends on besides its system and workload (a ``CostMemo``'s
    own): the plan, its notes aside, and the options that change the graph or its durations.
    Stragglers are keyed as given (a speed of 1 listed is another key: simulated again, not
    wrongly reused); ``fold_ranks`` is off under DES and ``check_invariants`` checks, changing
    nothing."""
    return (
        replace(plan, notes=()),
        options.steps,
        options.comm_dtype,
        options.comm_interference,
        options.sm_sharing,
        tuple(sorted(options.speed_factors.items())),
        tuple(sorted(options.nic_speed_factors.items())),
    )


def _run(
    graph: ExecutionGraph, index: GraphIndex, cost: CostModel, options: SimulationOptions, plan: Plan
) -> tuple[Schedule, Timing]:
    if options.fidelity not in ("analytic", "des"):
        raise InfeasibleError(f"unknown fidelity {options.fidelity!r}; use analytic or des")
    # Both engines take the durations the kernels have beside the collectives they overlap
    # (``recsim.cost.interference``), read off the contention-free schedule of the same graph.
    # ASSUMPTION (DES): the overlaps come from the contention-free schedule, not DES's own, where
    # collectives slowed by shared links overlap a little more of their neighbours.
    # The durations as an array, made once: both schedules and the stretch read them so.
    lengths = graph_lengths(index, cost)
    durations: list[float] | None = None  # the same as Python floats, made where the DES needs them
    if options.speed_factors:
        durations = _slowed(index, lengths.tolist(), options.speed_factors)
        lengths = np.asarray(durations, dtype=np.float64)
    timing: Timing | None = None  # the schedule of ``lengths``, once made
    # Kernels on two compute lanes of a rank share its SMs (``recsim.cost.sm_sharing``, when
    # asked): read off the same contention-free schedule, the seconds they lose add to the
    # collectives' stretch (each slowdown was measured with the other absent).
    lanes = options.sm_sharing and has_side_lanes(index)
    if options.costs is not None and (options.comm_interference or lanes or options.fidelity == "analytic"):
        # The graph is scheduled below: its Kahn rounds are those of an earlier evaluation of the
        # same structure where the memo keeps them (a sweep's points, a benchmark's repeats).
        options.costs.kahn_rounds(index)
    changed = False  # whether the stretches moved a length (DES then takes the lengths as given)
    if options.comm_interference or lanes:
        timing = asap_timing(index, lengths)
        stretched = None
        if options.comm_interference:
            footprints = collective_footprints(index, cost)
            stretched = stretched_lengths(index, lengths, timing.start, timing.finish, footprints)
        shared = shared_sm_seconds(index, timing.start, timing.finish) if lanes else None
        if shared is not None:
            stretched = (lengths if stretched is None else stretched) + shared
        # Unchanged (nothing overlapped, or no kernel's length moved): the schedule stands. A NaN
        # length never compares equal: scheduled again, to the same times.
        if stretched is not None and not np.array_equal(stretched, lengths):
            lengths, timing, durations, changed = stretched, None, None, True
    if options.fidelity == "analytic":
        if timing is None:
            timing = asap_timing(index, lengths)
        return timing.schedule(), timing
    if options.fidelity == "des":
        from recsim.engine.des import run_des

        given = options.comm_interference or changed or options.speed_factors
        ids = set(index.ids)
        # The same plan with the same options is the same schedule: ``auto`` simulates its DES
        # finalists, then the run simulates the winner again (a minute each at 512 GPUs). A run
        # that counts the engine's work (a benchmark) runs it.
        memo = options.costs
        key = des_key(plan, options) if memo is not None else None
        kept = memo.des_schedule(key) if memo is not None and options.des_counters is None else None
        if kept is not None and kept.start_s.keys() == ids:
            # A copy (the order of its maps too): the caller may change what it is handed.
            schedule = Schedule(dict(kept.start_s), dict(kept.finish_s))
        else:
            by_id = None
            if given:
                if durations is None:  # the modelled or stretched ones, as Python floats
                    durations = lengths.tolist()
                by_id = dict(zip(index.ids, durations, strict=True))
            # Under ``sm_sharing`` the compute lanes' kernels hold their slowdown beside each other
            # in their durations, HBM included: DES's HBM link does not slow them for it again.
            schedule = run_des(graph, cost, options.des_counters, by_id, sm_shared=lanes)
            if memo is not None:
                memo.keep_des_schedule(key, Schedule(dict(schedule.start_s), dict(schedule.finish_s)))
        if options.check_invariants and (schedule.start_s.keys() != ids or schedule.finish_s.keys() != ids):
            check_schedule(graph, schedule)  # names the nodes missing from the schedule
        return schedule, Timing.of(index, schedule)
    raise InfeasibleError(f"unknown fidelity {options.fidelity!r}; use analytic or des")


#: The speeds a straggler may have, relative to nominal: below a thousandth a step would take
#: hours (and a speed that underflows breaks the schedule's arithmetic); above a thousandfold is no
#: straggler.
SPEED_RANGE = (1e-3, 1e3)


def check_speed_factors(options: SimulationOptions, system: System) -> None:
    """``ConfigError`` unless every straggler is a rank of ``system`` with a speed in
    ``SPEED_RANGE``, and every slow NIC's rank has a scale-out NIC (a one-node system has none)."""
    ranks = system.num_accelerators
    for what, factors in (
        # The API's names, and the CLI options that fill them.
        ("speed_factors (--straggler)", options.speed_factors),
        ("nic_speed_factors (--slow-nic)", options.nic_speed_factors),
    ):
        for rank, factor in factors.items():
            if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 0 <= rank < ranks:
                raise ConfigError(f"{what}: rank {rank!r} is not a rank of {system.name} (0..{ranks - 1})")
            low, high = SPEED_RANGE
            if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not low <= factor <= high:
                raise ConfigError(
                    f"{what}: rank {rank}'s speed must be a number from {low:g} to {high:g} "
                    f"(1 = nominal), got {factor!r}"
                )
    if options.nic_speed_factors and (system.num_nodes < 2 or system.node.scale_out_nics is None):
        raise ConfigError(
            f"nic_speed_factors (--slow-nic): {system.name} with {system.num_nodes} node(s) has no "
            "scale-out network for a slow NIC to slow (nothing leaves a node)"
        )


def slowed_topology(system: System, options: SimulationOptions) -> Topology | None:
    """The cluster of ``system`` with the stragglers' NICs slowed (``nic_speed_factors``: every home
    NIC of the rank's accelerator, its links both ways), or None when no NIC is. A NIC that several
    accelerators share (one per PCIe switch) is slowed once, by the lowest speed given for them:
    slowing it for one rank slows it for its neighbours too."""
    factors = {r: f for r, f in options.nic_speed_factors.items() if f != 1}
    if not factors:
        return None
    from recsim.engine.des import with_nic_speed

    topology = options.costs.topology if options.costs is not None else build_topology(system)
    accelerators = topology.accelerators
    by_nic: dict[str, float] = {}
    for rank, factor in sorted(factors.items()):
        for nic in topology.graph.nodes[accelerators[rank]].get("home_nics", ()):
            by_nic[nic] = min(factor, by_nic.get(nic, factor))
    for nic, factor in sorted(by_nic.items()):
        topology = with_nic_speed(topology, nic, factor)
    return topology


def _slowed(index: GraphIndex, durations: list[float], factors: Mapping[int, float]) -> list[float]:
    """``durations`` with each straggler's compute and copy stream nodes taking time / factor (its
    GPU's kernels; the lookups its host runs keep their time)."""
    device = (Stream.COMPUTE.value, Stream.COPY.value)
    scale = np.array(
        [1.0 / factors.get(rank, 1.0) if stream in device else 1.0 for rank, stream, _ in index.queue_keys],
        dtype=np.float64,
    )
    per_position = scale[index.queue_array]
    # The lookups the host runs (tier ddr, nmp) take the CPUs' and DIMMs' time, not the GPU's.
    for position, _, _ in _host_run_lookups(index):
        per_position[position] = 1.0
    out: list[float] = (np.asarray(durations, dtype=np.float64) * per_position).tolist()
    return out


def device_busy(
    busy: Mapping[tuple[int, str], float], tiers: TierActivity, step_s: float
) -> dict[tuple[int, str], float]:
    """``busy`` (per rank and stream) as the devices spend it: a lookup the CPUs or the RecNMP
    DIMMs run (tier ``ddr``, ``nmp``) holds its rank's compute stream while the GPU waits, so its
    time is the host's, not the GPU's (as ``step_energy`` charges it: the GPU's active power on
    the rest, the CPUs' on the rank's host work plus its ``ddr`` lookups, at most the step)."""
    out = dict(busy)
    for rank, seconds in tiers.off_gpu_s.items():
        key = (rank, Stream.COMPUTE.value)
        out[key] = max(0.0, out.get(key, 0.0) - seconds)
    for rank, seconds in tiers.cpu_busy_s.items():
        key = (rank, Stream.HOST.value)
        out[key] = min(step_s, out.get(key, 0.0) + seconds)
    return out


def _utilisation(busy: Mapping[tuple[int, str], float], ranks: int, step_s: float) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for (_rank, stream), value in busy.items():
        # A step's work on one stream fits one step time in the steady state; a chain of a few
        # steps may not have quite reached it (``busy_time`` takes each rank's step whole).
        # ``min(value, step_s)`` (the same value, NaN included), without the builtin's call.
        totals[stream] += step_s if step_s < value else value
    # ``min``: the sum of clamped busy times over ranks x step can still round above 1.
    return (
        {stream: min(1.0, totals[stream] / (ranks * step_s)) for stream in sorted(totals)}
        if step_s > 0
        else {}
    )


# The ops that move host bytes, as a tuple made once: ``Host | Transfer`` written in the test
# would build a new union for every node it is tested on (and a union checks no faster).
_MOVES_HOST_BYTES = (Host, Transfer)


class WindowOps(NamedTuple):
    """What ``_window_ops`` gives: the ops of the step nodes by position and how many times each
    runs in the window; for a chained graph's window also the ops as the index's ``OpTable`` and
    each distinct op's total count (``per_op``), so that a reader that works per op (the host
    bytes) visits the ~100 distinct ops rather than every node."""

    ops: Sequence[Op]
    counts: list[int]
    table: OpTable | None = None
    per_op: list[int] | None = None


def _host_bytes(window_ops: WindowOps | tuple[Sequence[Op], Sequence[int]]) -> float:
    """The bytes the window's host work and copies to or from host memory move, from its ops and
    how often each runs (``_window_ops``: a folded rank's counted as its representative's).
    ``fsum`` is exact: the order of the window's nodes does not matter, and neither does reading a
    copy's op off its step node."""
    ops, counts = window_ops[0], window_ops[1]
    table = window_ops.table if isinstance(window_ops, WindowOps) else None
    if table is not None and window_ops.per_op is not None:
        # Each distinct op with its total count: the same values, as many times (``fsum`` takes
        # them in any order to the same sum).
        ops, counts = table.ops, window_ops.per_op
    # ``count`` copies of each value, as a list (``fsum`` of the same values in any order is the
    # same correctly rounded sum; a product ``bytes * count`` would round differently).
    values: list[float] = []
    extend = values.extend
    for op, count in zip(ops, counts, strict=True):
        if count and isinstance(op, _MOVES_HOST_BYTES) and (type(op) is Host or _touches_host(op)):
            extend([op.bytes] * count)
    return math.fsum(values)


def _touches_host(op: Transfer) -> bool:
    """Whether a copy reads or writes host memory: not a copy between GPUs (``peer``, a traced
    device-to-device ``hbm`` -> ``hbm``), whose bytes never reach the host's DRAM channels."""
    return op.src.split(":", 1)[0] == "host" or op.dst.split(":", 1)[0] == "host"


@dataclass(frozen=True)
class TierActivity:
    """What the window's lookups outside HBM do to the host side, for the energy model: the bytes
    they move through host DRAM's channels (rows read and written in place; for RecNMP DIMMs the
    instructions and partial sums, the rows they read inside being their active power), the CPU
    seconds of the lookups the CPUs run (tier ``ddr``), by rank, and the seconds the RecNMP DIMMs
    read rows at their ranks' full rate, by node; and by rank, the seconds its compute stream holds
    lookups that the CPUs or the DIMMs run while the GPU waits (``off_gpu_s``)."""

    dram_bytes: float = 0.0
    cpu_busy_s: dict[int, float] = field(default_factory=dict)
    nmp_busy_s: dict[int, float] = field(default_factory=dict)
    off_gpu_s: dict[int, float] = field(default_factory=dict)


#: Tiers whose lookups the host runs (the CPUs, or the CPUs and RecNMP DIMMs) while the rank's
#: compute stream waits for them.
HOST_RUN_TIERS = ("ddr", "nmp")


def _tier_activity(
    timing: Timing,
    window: Window,
    cost: CostModel,
    system: System,
    window_ops: WindowOps | tuple[Sequence[Op], Sequence[int]],
) -> TierActivity:
    """``TierActivity`` of the window: the DRAM bytes of one step's lookups (each copy of a step
    node in the window counted, as ``_host_bytes`` does), and the seconds of the window's host-run
    lookups, whole (as ``busy_time`` takes a rank's step: a rank that is not the bottleneck runs
    its last step's lookups before the window opens). An HBM lookup touches none of it, so a plan
    all in HBM costs one pass over the ops. ``window_ops``: ``_window_ops(timing.index, window,
    classes)``; a folded rank holds HBM lookups only (``recsim.graph.build.interchangeable_ranks``):
    the host-run ones are all in the graph."""
    index = timing.index
    ops, counts = window_ops[0], window_ops[1]
    table = window_ops.table if isinstance(window_ops, WindowOps) else None
    per_node = max(1, system.node.num_accelerators)
    # Each op costed once: the copies of a chained graph share their step node's op.
    costs: dict[int, EmbeddingCost] = {}

    def cost_of(op: Embedding) -> EmbeddingCost:
        found = costs.get(id(op))
        if found is None:
            found = costs[id(op)] = cost.embedding_cost(op)
        return found

    dram = 0.0
    off_hbm = False  # a lookup outside HBM in ``ops`` (every step node's, for a chained graph)
    positions: Sequence[int] = range(len(ops))
    if table is not None:
        # Only the positions of such lookups, found among the distinct ops (the same positions,
        # in the same order: the sum below adds the same terms in turn).
        outside = [type(op) is Embedding and op.tier != "hbm" for op in table.ops]
        positions = np.asarray(outside, dtype=bool)[table.number].nonzero()[0].tolist()
    for position in positions:
        op, count = ops[position], counts[position]
        if type(op) is Embedding and op.tier != "hbm":
            off_hbm = True
            if count:
                detail = cost_of(op)
                # A RecNMP gather's rows are read inside the DIMMs, whose active power charges
                # them (``step_energy``); only what crosses the channels costs energy per bit.
                dram += count * (detail.bytes_on(DDR) + detail.bytes_on(NMP_CHANNEL))
    cpu: dict[int, float] = defaultdict(float)
    nmp: dict[int, float] = defaultdict(float)
    off_gpu: dict[int, float] = defaultdict(float)
    if not off_hbm and index.copies is not None:
        # Every step node was seen: no lookup the host runs (those are outside HBM), in any step.
        return TierActivity(dram)
    in_window = _window_mask(index, window)
    rank_cores = node_cores(system) * rank_share(system)
    for position, op, rank in _host_run_lookups(index):
        if not in_window[position]:
            continue
        assert type(op) is Embedding
        start, finish = float(timing.start[position]), float(timing.finish[position])
        inside = max(0.0, finish - start)
        if inside <= 0.0:
            continue
        detail = cost_of(op)
        off_gpu[rank] += inside
        # The CPUs or DIMMs pool the rows; the copy of the result over PCIe is not their work.
        pcie_s = float(detail.details.get("pcie_s", 0.0))
        share = max(0.0, detail.time_s - pcie_s) / detail.time_s if detail.time_s > 0 else 0.0
        if op.tier.split(":", 1)[0] == "nmp" and detail.details.get("via") != "ddr":
            # The node's DIMMs are busy reading the gather's rows at their ranks' full rate (the
            # tier's ``dimm_read_s``), not for the whole lookup, which may wait on the channels or
            # PCIe meanwhile.
            nmp[rank // per_node] += float(detail.details.get("dimm_read_s", 0.0))
        else:
            # In seconds of the rank's whole share of the cores (``step_energy``): a lookup of
            # fewer bags than that share keeps only its ``threads`` of them busy.
            threads = detail.details.get("threads")
            busy = min(1.0, float(threads) / rank_cores) if threads is not None and rank_cores > 0 else 1.0
            cpu[rank] += inside * share * busy
    return TierActivity(dram, dict(cpu), dict(nmp), dict(off_gpu))


def _host_run_lookups(index: GraphIndex) -> list[tuple[int, Op, int]]:
    """(position, op, rank) of every lookup of a host-run tier (``HOST_RUN_TIERS``), all steps:
    read off the index's ops and ranks (``GraphIndex.source_ops``), no node made."""

    def host_run(op: Op) -> bool:
        return type(op) is Embedding and op.tier.split(":", 1)[0] in HOST_RUN_TIERS

    ops, ranks = index.source_ops, index.source_ranks
    found = [k for k, op in enumerate(ops) if host_run(op)]
    steps = 1 if index.copies is None else index.copies[1]
    return [(k + s * len(ops), ops[k], ranks[k]) for s in range(steps) for k in found]


def _kernel_energy(index: GraphIndex, window: Window, cost: CostModel) -> dict[int, float]:
    """The dynamic energy of each rank's kernels over the window's step (``CostModel.kernel_j``: what its
    ops compute and move), by rank of the graph (a folded class's representative holds its class's,
    ``unfolded`` gives it to the others). Each op is priced once (the copies of a chained graph's
    step node share its op); ``fsum`` adds a rank's terms exactly, so neither the order the window
    lists its nodes in nor the engine matters. Empty without accelerators."""
    if cost.system.accelerator is None:
        return {}
    positions = window.positions_in(index)
    if positions is not None and index.copies is not None:
        # A chained graph's window: each distinct op priced once (the index's ``op_table``, as the
        # durations are) and spread by position in arrays; per rank the same values, as many times,
        # to ``fsum`` (exact: the same sum as the loop below). Python visits the ranks, not the
        # ~10^3 step nodes (this ran on every evaluation: 6 % of one at 128 GPUs).
        table = index.op_table
        per_step = table.number.size
        counts = np.bincount(positions % per_step, minlength=per_step)
        priced = np.array(cost.kernel_js(table.ops), dtype=np.float64)[table.number]
        rank_of = index.source_ranks_array
        taken = ((counts > 0) & (priced != 0.0)).nonzero()[0]
        taken = taken[rank_of[taken].argsort(kind="stable")]  # each rank's terms together
        terms = priced[taken].repeat(counts[taken]).tolist()
        # Each rank's first term: the terms are in rank order, so where the rank changes (what
        # ``np.unique(..., return_index=True)`` gives, without its sort).
        owners = rank_of[taken].repeat(counts[taken])
        fresh = np.empty(owners.size, dtype=bool)
        fresh[:1] = True
        np.not_equal(owners[1:], owners[:-1], out=fresh[1:])
        first = fresh.nonzero()[0]
        ranks = owners[first]
        ends = [*first[1:].tolist(), len(terms)]
        return {
            rank: math.fsum(terms[a:b])
            for rank, a, b in zip(ranks.tolist(), first.tolist(), ends, strict=True)
        }
    ops, ranks, counts = _window_op_ranks(index, window)
    priced_of: dict[int, float] = {}
    terms: dict[int, list[float]] = defaultdict(list)
    for op, rank, count in zip(ops, ranks, counts, strict=True):
        if not count:
            continue
        joules = priced_of.get(id(op))
        if joules is None:
            joules = priced_of[id(op)] = cost.kernel_j(op)
        if joules:
            # ``count`` copies, not a product: the same correctly rounded sum however they come.
            terms[rank].extend([joules] * count)
    return {rank: math.fsum(values) for rank, values in terms.items()}


def _window_ops(index: GraphIndex, window: Window, classes: Mapping[int, Sequence[int]]) -> WindowOps:
    """The ops of the step nodes that run in ``window`` and how many times each does: for a
    chained graph read off its step graph, the copies of each step node in the window; else every
    node of the window once. A representative's node counts once for each rank of its class
    (``classes``, ``recsim.graph.build``: the graph holds one of the ranks that run the same
    nodes). Read off the index's ops and ranks (``GraphIndex.source_ops``): no node is made."""
    positions = window.positions_in(index)
    if positions is None or index.copies is None:
        ops, ranks, counts = _window_op_ranks(index, window)
        if classes:
            counts = [c * len(classes[r]) if r in classes else c for r, c in zip(ranks, counts, strict=True)]
        return WindowOps(ops, counts)
    # A chained graph's window: every step node's op, counted in arrays (a representative's
    # count times its class's size: the same ints), and each distinct op's total.
    all_ops = index.source_ops
    table = index.op_table
    times = np.bincount(positions % len(all_ops), minlength=len(all_ops))
    if classes:
        rank_of = index.source_ranks_array
        for rank, members in classes.items():
            times[rank_of == rank] *= len(members)
    per_op = np.bincount(table.number, weights=times, minlength=len(table.ops)).astype(np.int64)
    return WindowOps(list(all_ops), times.tolist(), table, per_op.tolist())


def _window_op_ranks(index: GraphIndex, window: Window) -> tuple[list[Op], Sequence[int], list[int]]:
    """``_window_ops`` by rank of the graph, before a folded class's ranks are counted: the ops,
    the rank each runs on, and how many copies of it the window holds."""
    all_ops, all_ranks = index.source_ops, index.source_ranks
    positions = window.positions_in(index)
    if positions is None or index.copies is None:
        position = index.position
        at = [position[i] for i in window.node_ids]
        if index.copies is not None:  # a copy's op and rank are its step node's (``source``)
            at = [p % len(all_ops) for p in at]
        ops = [all_ops[p] for p in at]
        ranks: Sequence[int] = [all_ranks[p] for p in at]
        counts = [1] * len(ops)
    else:
        ops, ranks = list(all_ops), all_ranks
        counts = np.bincount(positions % len(ops), minlength=len(ops)).tolist()
    return ops, ranks, counts


def unfolded(per_rank: dict[int, float], classes: Mapping[int, Sequence[int]]) -> dict[int, float]:
    """``per_rank`` with each representative's value given to every rank of its class too
    (``classes``: the graph held one of the ranks that run the same nodes, ``recsim.graph.build``)."""
    if not classes:
        return per_rank
    out = dict(per_rank)
    for rank, value in per_rank.items():
        for member in classes.get(rank, ()):
            out[member] = value
    return out


def unfolded_streams(
    per_queue: dict[tuple[int, str], float], classes: Mapping[int, Sequence[int]]
) -> dict[tuple[int, str], float]:
    """``unfolded`` for values by (rank, stream)."""
    if not classes:
        return per_queue
    out = dict(per_queue)
    for (rank, stream), value in per_queue.items():
        for member in classes.get(rank, ()):
            out[(member, stream)] = value
    return out


def _window_mask(index: GraphIndex, window: Window) -> npt.NDArray[np.bool_]:
    """Which positions of ``index`` hold the window's nodes: from the positions ``step_window``
    found, else by looking each id up."""
    inside = np.zeros(index.size, dtype=bool)
    positions = window.positions_in(index)
    if positions is not None:
        inside[positions] = True
    else:
        ids = index.ids
        inside[[p for p in range(index.size) if ids[p] in window.node_ids]] = True
    return inside


def _network_busy(timing: Timing, window: Window, system: System) -> dict[int, float]:
    """Per rank, the time of the window's collectives whose group spans more than one node: the
    union of their intervals (collectives on different lanes overlap), whole, as ``busy_time``
    takes a rank's step."""
    per_node = max(1, system.node.num_accelerators)
    index = timing.index
    # The collectives' ops and ranks by position (a copy's are its step node's: ``source``).
    ops, ranks = index.source_ops, index.source_ranks
    size = len(ops)
    at = index.collective_positions_array  # in graph order
    inside = _window_mask(index, window)
    taken = at[inside[at]] if at.size else at
    starts, finishes = timing.start[taken].tolist(), timing.finish[taken].tolist()
    spans: dict[int, list[tuple[float, float]]] = defaultdict(list)
    # Whether a group spans nodes, by the group tuple's identity (the members of a collective and
    # its copies in other steps share it; the graph keeps the tuples alive meanwhile).
    wide_group: dict[int, bool] = {}
    for p, start, finish in zip(taken.tolist(), starts, finishes, strict=True):
        op = ops[p % size]
        assert isinstance(op, Collective)
        group = op.group
        wide = wide_group.get(id(group))
        if wide is None:
            # Two nodes among the group's ranks: floor division by ``per_node`` (>= 1) keeps the
            # ranks' order, so its lowest and highest ranks' nodes differ exactly when two ranks'
            # do (two C passes over a 128-rank group, not a set of its nodes).
            wide = wide_group[id(group)] = len(group) > 1 and min(group) // per_node != max(group) // per_node
        if wide and finish > start:
            spans[ranks[p % size]].append((start, finish))
    return {rank: union_length(intervals) for rank, intervals in spans.items()}


def union_length(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of ``intervals`` (sorted here)."""
    intervals.sort()
    total = 0.0
    cur_s, cur_f = intervals[0]
    for s, f in intervals[1:]:
        if s > cur_f:
            total += cur_f - cur_s
            cur_s, cur_f = s, f
        elif f > cur_f:
            cur_f = f
    return total + (cur_f - cur_s)
