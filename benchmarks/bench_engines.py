"""Speed of the simulator itself: analytic evaluations and DES steps of dlrm-dcnv2 on dgx-h100 nodes.

Prints figures; asserts nothing. The DES figure is set next to the raw simpy event rate measured in
the same run, so a slow machine shows as both figures dropping together: the DES line gives the
simpy events the engine processed per second of its own wall time (``recsim.engine.des.DesCounters``),
directly comparable with the raw rate (their ratio is what the engine's work per event costs).
Each DES run also prints the peak resident memory of the process during it (Linux: the peak is
reset before the run, ``/proc/self/clear_refs``; elsewhere the process's peak so far), so a
regression in what the engine keeps shows (16 flow-set mixes kept whatever their size had taken
64 ZionEX nodes to 8.5 GB).

The steady analytic figures of one node count do not depend on the counts run before them in the
same process: the 128-GPU rate sharing a CostMemo, measured alternately with ``1 16 128`` and with
``16`` alone on the shared development VM (2026-12-07), was 175, 212, 158, 164, 170, 179, 164/s
alone and 180, 209, 197, 180, 179, 182, 187/s after the 8-GPU runs; the spread is the machine's.
The cyclic collector is not what moves it: an evaluation frees about what it allocates, so the
collector ran about once in 20 evaluations there (0.04-0.06 ms an evaluation on average), in
either order. What the earlier runs had left was every topology they made (module-level caches
whose values held their keys: 459 MiB resident before the 1,024-GPU DES run, 171 MiB once the
topology keeps them itself, ``recsim.hardware.topology.Topology.derived``).

Where the 128-GPU evaluation sharing a CostMemo spends its machine instructions (callgrind, a dump
at each phase's entry and exit, 2026-12-07, after the changes of that day: 38.2 M an evaluation,
39.2 M before them): the graph build 6.8 M, the two schedules (``asap_timing``) 4.9 M, the chained
graph's index 3.6 M and its templates (``ChainedGraph.lazy``) 2.7 M, the interference stretch 3.4 M,
the durations 2.2 M, memory use (``plan_usage``) 2.2 M and the plan's check 0.65 M, busy time
1.9 M, kernel energy 1.8 M, the critical path 1.3 M, step energy 1.0 M, network busy time 0.95 M,
utilisation 0.5 M, the rest below 0.5 M each, and about 3 M outside the phases (mostly freeing
what the evaluation made). No phase holds a tenth of it. A numpy call costs 2,000-15,000
instructions whatever its arithmetic (a slice 2,100, a gather of 30 4,100, ``x.max()`` 9,800, a
``cumsum`` 7,600), a Python loop iteration a few hundred: the evaluation makes some 3,500 numpy
calls, indexing included, about 1,300 of them in the Kahn rounds of the two schedules (80 rounds a
schedule outside the column blocks, 8 array calls and about 19,000 instructions each), so what
remains is array calls on 10^1-10^3 elements and Python loops of 10^2, spread thin. Tried that day
and dropped, as it cost more: ``_utilisation`` in arrays (0.52 -> 0.83 M: a table and a cumulative
sum over 512 entries cost more than the loop) and ``_network_busy`` in arrays (0.95 -> 1.15 M:
``np.unique`` and a lexsort over 135 members).

Later that day (callgrind: a run of the first evaluation and 10 more less a run of the first alone,
over 10; ``PYTHONHASHSEED=0`` and one OpenBLAS thread, whose idle threads otherwise add millions
that are not the evaluation's): 38.26 M -> 37.17 M an evaluation. The interference stretch works out
the covered time of the kernels that may overlap a window alone (about 1 in 6) and the end's binary
search only where a window opens inside the kernel (110 of 4,365), and the CPUs' energy loop makes
no two calls a rank (together about 1.1 M). Tried and dropped
(``recsim.graph.schedule.asap_timing``'s comments): the schedules' rounds pulled from the
predecessors with ``np.fmax.reduceat`` (+1.4 M: it costs about 25 ns per segment), and the second
schedule started where the stretch first moves a length (round 0). Measure instructions, not time,
on the shared VM: CPU time per evaluation moved between 4.6 and 9.1 ms for the same code there
within minutes (load 4 on 2 cores).

Later still that day: 37.07 -> 36.02 M an evaluation (callgrind collecting only inside the
evaluations after the first, ``--collect-atstart=no --toggle-collect=starmap_next`` with them run
from an ``itertools.starmap``, which recsim does not use; by the method above 37.16 -> 36.13 M; on
top of HugeCTR's communicator order, c4b6144, 37.13 -> 36.06 M). A phase's inclusive count, by
running it from another unused C iterator (``dropwhile``, ``filterfalse``, ``groupby``: their
``*_next`` functions' inclusive costs), was, before: the build 6.94 M (its two embedding passes 2.28
M, of which the 52 ``lookup`` calls 0.88 M; ``add`` 2.0 M for about 300 nodes, the marker's own
calls included; the pooled exchanges 0.52 M, the input pipeline 0.51 M, the dense chain 0.38 M, the
builder's ``__init__`` 0.25 M, ``metadata`` 0.18 M), the chained templates 2.70 M
(``_cross_dependencies`` 1.36 M) and the chained index 3.64 M (the step's ``GraphIndex.of`` 1.98 M,
``repeated`` 1.01 M, ``_later_rows`` 0.56 M). What changed: CPython 3.11's ``EnumType`` defines
``__getattr__``, so an enum member read off its class (``Stream.COMPUTE``) takes the slow hook,
90-160 ns against 35 ns for a plain class's: the builder reads the streams from module constants
(-0.27 M); the per-rank passes lay their nodes down a column at a time (``_Builder.add_each``: -0.57
M); a lookup's output dtype once per table dtype and the cost model's all-to-all scan's
``CollectiveOp`` once (-0.2 M). The 200/s target (about 34 M) is not reached: what is left is spread
as above, each part 0.2-2 M.

The build, that night (callgrind, 10 evaluations from a ``starmap``, the build from ``takewhile``;
this harness counts 41.53 M an evaluation at the branch point, so compare within it): 41.53 -> 40.64
M an evaluation, the build 6.22 -> 5.21 M (built alone 20 times, 6.51 -> 5.52 M). Its loops over
ranks and shards run in C where they were comprehensions (each a Python call of its own in 3.11),
``add`` stages a node as one tuple (``_Builder.lay_staged``), the chains' like columns are written
once for all ranks, ``ShardOps.op`` finds an op by its shard's id, and two distinct dependencies
are not de-duplicated through a dict (~2,000 instructions each with its share of the collector's
rounds; ~80 a graph). Left: the embedding passes (1.75 M for 78 nodes), allocation elsewhere.

Later (2026-12-08, the chained index and templates): the step index's collective keys, heads and
members, the op table's ops, the templates' lookup test and ``_later_rows``' extras read in C
(``map``, ``zip``, ``dict``, ``groupby``) rather than by comprehensions: 35.68 -> 35.59 M an
evaluation (20 after the first, each result dropped as it comes, ``collections.deque(...,
maxlen=0)``: kept, they counted some 41.6 M, the collector walking what they hold, presumably);
the index 3.62 -> 3.55 M, the templates 2.62 M. Tried and dropped: the step index's queue numbers
in arrays (int keys, a stable sort, first appearances; the step index 2.09 -> 2.24 M) and the
update test as ``map(getattr, ops, repeat("pass_"), repeat(None))`` (+0.06 M: each op without the
attribute raises inside). On 1,644 nodes an array call pays per element (``np.fromiter`` about 230
instructions an int, a stable int64 ``argsort`` about 55), a comprehension's turn 500-1,300 and a
``map`` over a C callable 200-600: arrays pay only where a few calls replace a loop.

Then (by the starmap method): ``plan_usage`` 2.20 -> 1.68 M, of 35.85 -> 35.36 M an evaluation: the
memo's storage keeps each shard's input ids and HugeCTR's reader bytes a rank, a one-rank block skips
the reduce-scatter's rank sets, the 128-rank dicts are made in C. Dropped: ``_kernel_energy``'s terms
as op numbers read into ``fsum`` through ``map`` (1.74 -> 1.91 M: a call a term costs more than the
float it saves) and its rank sort by radix on 16-bit ints (-0.025 M). Its 1.74 M is mostly the terms:
``fsum`` 0.29 M over 1,617, their floats made and freed 0.4 M, the gathers 0.16 M.

Then (starmap method) 35.41 -> 34.41 M: ``_ordered_parts`` checks an all-to-all's 128 parts by dict, set
and ``map`` calls (0.59 -> 0.39 M for three), the durations' and ``kernel_js``' loops over the ~150
distinct ops look them up by identity without a method call each (-0.17, -0.21 M), ``Plan.validate``
skips what a one-shard table cannot fail (0.64 -> 0.36 M), ``_network_busy`` a group's nodes by its
extremes (-0.11 M). Dropped: ``unfolded_streams`` through ``dict.update(zip(...))`` (0.43 M either way:
the 408 keys' tuples and inserts are the cost, not the loop), ``list(map(list.__getitem__, ...))`` and
an array store for 27 positions (each dearer than its comprehension or loop).

Then (starmap method): 35.43 -> 34.60 M an evaluation. Each phase from its own iterator, before -> after:
the two schedules 4.68 -> 4.30 M (a collective's longest member by ``reduceat``, ``take`` for gathers of
thousands), the stretch 3.48 -> 3.24 M (nodes shifted once by their queue's shift, kernels selected by mask,
the ops' slowdowns in one comprehension), busy time 1.88 -> 1.69 M (the union's table by flat cell), the
critical path 1.41 -> 1.39 M. Dropped: a set for ``np.unique`` of the footprints (+0.1 M: hashing 405 floats),
the path's one-candidate shortcut (-0.01 M); only 1 of the 68 stepped rounds raises targets no round raised
before. Two footprint classes cannot share one weighted pass to the bit (``stretched_lengths``' comments).

Then the chained index and templates (starmap method): 35.44 -> 34.59 M an evaluation. ``_later_rows``
inserts the cross-step ids after their nodes' own (``np.insert``'s placement: 0.55 -> 0.31 M), the chains'
dependencies are a table where the joined nodes' counts are equal (0.41 -> 0.27 M), ``repeated`` writes
the later steps in place (0.88 -> 0.79 M: callgrind counts a large copy a byte an instruction), the
builder's cross-step lists skip ``dict.fromkeys`` (1.23 -> 1.02 M). Dropped: ``OpTable.of`` by dicts of
ids (0.52 -> 0.88 M), the queues numbered by ``dict.fromkeys``/``filterfalse`` (+0.22 M: each key made and
hashed twice), their keys read in C (-0.02 M). The builder recording queue numbers would only move the
per-node dict work; the build (5.2 M) has no callee above 3 % of it."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from typing import NamedTuple

import simpy

from recsim.api import make_plan, prepare
from recsim.cost.memo import CostMemo
from recsim.engine.des import DesCounters
from recsim.engine.simulate import SimulationOptions, simulate_training


def raw_simpy_events_per_s(n: int = 200_000) -> float:
    env = simpy.Environment()

    def ticker():
        for _ in range(n):
            yield env.timeout(1.0)

    env.process(ticker())
    start = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - start)


def reset_peak_memory() -> bool:
    """Start the process's peak resident memory afresh from what it holds now (Linux); False
    where it cannot be (the peak then stays the process's own)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_memory_mib() -> float:
    """The peak resident memory (MiB) since the last reset, else of the whole process."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resident_mib() -> float:
    """The resident memory (MiB) now (Linux; NaN elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def bench(nodes: int, fidelity: str, counters: DesCounters | None = None) -> tuple[float, float]:
    """(wall time of one simulation, its throughput); the DES run adds its work to ``counters``."""
    # MLPerf's global batch (55,296) at every size: strong scaling, as a sweep over nodes would do.
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=nodes, batch_size=55296, precision="fp16")
    plan = make_plan("table_wise", workload, system)
    start = time.perf_counter()
    options = SimulationOptions(fidelity=fidelity, des_counters=counters, fold_ranks=True)
    result = simulate_training(system, workload, plan, options).result
    wall = time.perf_counter() - start
    return wall, result.throughput_samples_per_s


#: A rail-optimized fabric at 4:1, where every collective's transfers are taken through the
#: leaves' uplinks (``recsim.cost.collectives.fabric``): what that bound costs an evaluation.
RAILS_4_TO_1 = (
    "cluster.scale_out.topology=rail_optimized",
    "cluster.scale_out.tiers=2",
    "cluster.scale_out.oversubscription=4",
)


def distinct_system(k: int) -> tuple[str, ...]:
    """``--set`` texts that make the ``k``-th point of a hardware sweep: another HBM bandwidth and
    another NIC port rate (k = 0 is nearly nominal), so no two points are the same system."""
    return (
        f"node.accelerators.device.hbm.bandwidth={3000 + k} GB/s",
        f"node.nics.device.port_bandwidth={400 + k} Gb/s",
    )


class Steady(NamedTuple):
    """Medians over the measured evaluations (seconds): of their wall time, and of the process's
    CPU time during them (``time.process_time``), which the other processes of a shared machine
    do not inflate: two runs far apart in wall time at the same CPU time were slowed by the
    machine, not by recsim."""

    wall_s: float
    cpu_s: float


def steady_analytic(
    nodes: int,
    repeats: int = 7,
    *,
    shared_costs: bool = False,
    overrides: tuple[str, ...] = (),
    distinct: bool = False,
) -> Steady:
    """Median wall and CPU times of ``repeats`` analytic evaluations after the first, in one process.

    Each is a whole evaluation (memory check, graph, topology, costs, schedule, metrics); nothing of
    one is reused by the next (recsim keeps no result caches), but the process has loaded the
    device calibrations and imported its modules, as in a sweep. The first evaluation pays those.
    ``shared_costs``: the evaluations share one ``CostMemo`` (the topology, the op costs and the
    access models of the system and workload), as the planner's candidates and a sweep's points
    of one system and workload do; the graph, schedule and metrics are still each evaluation's.
    ``overrides``: ``--set`` texts for the system (``RAILS_4_TO_1``). ``distinct``: every
    evaluation is of another system (``distinct_system``: a hardware sweep's points), each
    prepared and planned before the timing, so that nothing that holds for one system alone can
    carry over from one evaluation to the next.
    """
    if distinct and shared_costs:
        raise ValueError("a CostMemo is of one system: distinct systems cannot share one")
    points = []
    for k in range(repeats + 1 if distinct else 1):
        system, workload = prepare(
            "dgx-h100",
            "dlrm-dcnv2",
            nodes=nodes,
            batch_size=55296,
            precision="fp16",
            overrides=overrides + (distinct_system(k) if distinct else ()),
        )
        points.append((system, workload, make_plan("table_wise", workload, system)))
    system, workload, _ = points[0]
    memo = CostMemo(system, workload) if shared_costs else None
    # As a sweep's points and the planner's candidates are: only the result is kept, so the ranks
    # that hold no shard of their own are built once (``SimulationOptions.fold_ranks``).
    options = SimulationOptions(fidelity="analytic", costs=memo, fold_ranks=True)
    simulate_training(*points[0], options)  # the first (it fills the memo)
    walls, cpus = [], []
    for k in range(repeats):
        point = points[k + 1] if distinct else points[0]
        start, start_cpu = time.perf_counter(), time.process_time()
        simulate_training(*point, options)
        cpus.append(time.process_time() - start_cpu)
        walls.append(time.perf_counter() - start)
    return Steady(statistics.median(walls), statistics.median(cpus))


def steady_text(steady: Steady) -> str:
    """``steady`` as printed: the wall time and its rate, then the CPU time and its rate."""
    wall, cpu = steady.wall_s, steady.cpu_s
    return f"{wall:7.3f} s ({1 / wall:6.2f}/s; CPU {cpu:7.4f} s, {1 / cpu:6.2f}/s)"


def main() -> None:
    print(f"raw simpy: {raw_simpy_events_per_s():,.0f} events/s")
    node_counts = [int(a) for a in sys.argv[1:]] or [1, 16]
    process_peak = 0.0  # the process's peak resident memory (MiB), over the resets below
    for nodes in node_counts:
        gpus = nodes * 8
        wall, thr = bench(nodes, "analytic")
        rate = 1 / wall
        print(
            f"analytic  {gpus:5d} GPUs: {wall:7.2f} s first evaluation ({rate:6.2f}/s), {thr:,.0f} samples/s"
        )
        head = f"analytic  {gpus:5d} GPUs:"
        print(f"{head} {steady_text(steady_analytic(nodes))} per later one (median of 7)")
        steady = steady_analytic(nodes, distinct=True)
        print(f"{head} {steady_text(steady)} per later one, each another system (median of 7)")
        steady = steady_analytic(nodes, shared_costs=True)
        print(f"{head} {steady_text(steady)} per later one sharing a CostMemo (median of 7)")
        if nodes > 1:
            over = steady_analytic(nodes, 3, overrides=RAILS_4_TO_1)
            print(f"{head} {steady_text(over)} per evaluation on rails at 4:1")
        counters = DesCounters()
        before = resident_mib()
        process_peak = max(process_peak, peak_memory_mib())  # the reset forgets it
        reset = reset_peak_memory()
        wall, thr = bench(nodes, "des", counters)
        peak = peak_memory_mib()
        process_peak = max(process_peak, peak)
        events, engine_s = counters.events, counters.wall_s
        print(f"des       {gpus:5d} GPUs: {wall:7.2f} s per step simulation, {thr:,.0f} samples/s")
        rate = events / engine_s if engine_s > 0 else float("nan")
        print(f"des       {gpus:5d} GPUs: {rate:,.0f} simulated events/s ({events:,} in {engine_s:.2f} s)")
        if reset:
            print(
                f"des       {gpus:5d} GPUs: peak resident memory {peak:,.0f} MiB during the run "
                f"({peak - before:,.0f} MiB above the {before:,.0f} MiB held before it)"
            )
        else:
            print(f"des       {gpus:5d} GPUs: peak resident memory {peak:,.0f} MiB (the process's, so far)")
    process_peak = max(process_peak, peak_memory_mib())
    print(f"peak resident memory: {process_peak:.0f} MiB")


if __name__ == "__main__":
    main()
