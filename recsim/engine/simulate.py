"""Simulate a training step end to end: plan -> memory check -> graph -> engine -> Result.

The steps: check that every rank's HBM holds its shards, dense model and activations, and every
node's host DRAM and SSDs their shards (else an ``infeasible`` Result naming the rank or node, the
tier and the shortfall); build the step graph and chain
``steps`` copies (default 3) so the pipeline reaches its steady state; schedule it with the
chosen engine; measure the last step (its critical-path breakdown, busy times, energy); check
the invariants. Everything returned is a ``Result``; only bugs raise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recsim import __version__
from recsim.config.hashing import config_hash
from recsim.cost.model import CATEGORIES, CostModel, category_of
from recsim.cost.power import step_energy
from recsim.engine import DEFAULT_STEPS
from recsim.engine.analytic import run_analytic
from recsim.engine.timeline import Window, busy_time, critical_path, step_window
from recsim.errors import InfeasibleError
from recsim.graph.build import BuildOptions, build_training_step
from recsim.graph.ir import Collective, ExecutionGraph, Host, Transfer
from recsim.graph.runtime import apply_runtime
from recsim.graph.schedule import Schedule
from recsim.graph.steps import chain_steps
from recsim.hardware.system import System
from recsim.metrics.invariants import check_breakdown, check_schedule, check_utilisation
from recsim.metrics.result import Result
from recsim.planner.storage import capacity, check_fits, plan_usage
from recsim.planner.types import Plan
from recsim.workload.spec import Workload

if TYPE_CHECKING:  # the DES engine (and simpy) load only when a DES run asks for them
    from recsim.engine.des import DesCounters


@dataclass(frozen=True)
class Simulation:
    """A Result with the chained graph and schedule it came from (None when nothing ran)."""

    result: Result
    graph: ExecutionGraph | None = None
    schedule: Schedule | None = None


@dataclass(frozen=True)
class SimulationOptions:
    """How to simulate: engine, number of chained steps, wire format of pooled embeddings."""

    fidelity: str = "analytic"
    steps: int = DEFAULT_STEPS
    comm_dtype: str | None = None  # None: the plan's choice
    check_invariants: bool = True
    # The DES engine adds its work (events, wall time) here when given: benchmarks read it.
    des_counters: DesCounters | None = None


def _context(system: System, workload: Workload, plan: Plan, options: SimulationOptions) -> dict[str, object]:
    return {
        "mode": "training",
        "fidelity": options.fidelity,
        "system": system.name,
        "workload": workload.name,
        "plan": plan.strategy,
        "num_accelerators": plan.world_size,
        "global_batch_size": workload.training.global_batch_size,
        "resolved_config_hash": config_hash(system)[:8] + config_hash(workload)[:8],
        "recsim_version": __version__,
    }


def simulate_training(
    system: System, workload: Workload, plan: Plan, options: SimulationOptions
) -> Simulation:
    """The steady-state training step of ``workload`` on ``system`` with ``plan``."""
    context = _context(system, workload, plan, options)
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
        usage = plan_usage(plan, workload, system)
    except InfeasibleError as exc:
        return Simulation(Result.failed("infeasible", str(exc), **context))
    memory_peak = {
        "hbm": max(usage.hbm_by_rank.values()),
        "ddr": max(usage.ddr_by_node.values(), default=0.0),
        "ssd": max(usage.ssd_by_node.values(), default=0.0),
    }
    try:
        check_fits(usage, capacity(system))
    except InfeasibleError as exc:
        return Simulation(
            Result.failed("infeasible", str(exc), memory_peak_bytes=memory_peak, memory_fits=False, **context)
        )
    try:
        step = build_training_step(
            workload, plan, BuildOptions(comm_dtype=options.comm_dtype, validate_plan=False)
        )
    except InfeasibleError as exc:
        return Simulation(Result.failed("infeasible", str(exc), **context))
    graph = apply_runtime(chain_steps(step, options.steps), workload)
    cost = CostModel(
        system,
        workload,
        fused_tables=graph.metadata.get("fused_tables"),
        table_slices=graph.metadata.get("table_slices"),
    )
    schedule = _run(graph, cost, options)
    if options.check_invariants:
        check_schedule(graph, schedule)
    window = step_window(graph, schedule)
    step_s = window.length_s
    breakdown, _ = critical_path(graph, schedule, window, category_of)
    breakdown = {k: breakdown.get(k, 0.0) for k in CATEGORIES}
    busy = busy_time(graph, schedule, window)
    utilisation = _utilisation(busy, plan.world_size, step_s)
    network_busy = _network_busy(graph, schedule, window, system)
    host_bytes = math.fsum(
        n.op.bytes for n in graph.nodes if n.id in window.node_ids and isinstance(n.op, Host | Transfer)
    )
    energy = step_energy(
        system, cost.topology, step_s, busy, host_bytes=host_bytes, network_busy_s=network_busy
    )
    if options.check_invariants:
        check_breakdown(breakdown, step_s)
        check_utilisation(utilisation)
    batch = workload.training.global_batch_size
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
        **context,  # type: ignore[arg-type]
    )
    return Simulation(result, graph, schedule)


def _run(graph: ExecutionGraph, cost: CostModel, options: SimulationOptions) -> Schedule:
    if options.fidelity == "analytic":
        return run_analytic(graph, cost)
    if options.fidelity == "des":
        from recsim.engine.des import run_des

        return run_des(graph, cost, options.des_counters)
    raise InfeasibleError(f"unknown fidelity {options.fidelity!r}; use analytic or des")


def _utilisation(busy: dict[tuple[int, str], float], ranks: int, step_s: float) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for (_rank, stream), value in busy.items():
        totals[stream] += value
    return {stream: totals[stream] / (ranks * step_s) for stream in sorted(totals)} if step_s > 0 else {}


def _network_busy(
    graph: ExecutionGraph, schedule: Schedule, window: Window, system: System
) -> dict[int, float]:
    """Per rank, time in collectives whose group spans more than one node."""
    per_node = max(1, system.node.num_accelerators)
    out: dict[int, float] = defaultdict(float)
    for n in graph.nodes:
        if n.id not in window.node_ids or not isinstance(n.op, Collective):
            continue
        if len({r // per_node for r in n.op.group}) > 1:
            out[n.rank] += schedule.finish_s[n.id] - schedule.start_s[n.id]
    return dict(out)
