"""Scheduling rules, steady-state windows, critical-path breakdowns, invariants, results, memory."""

import math

import pytest

from recsim.api import make_plan
from recsim.config.loader import Override
from recsim.engine.simulate import SimulationOptions, simulate_training
from recsim.engine.timeline import busy_time, critical_path, step_window
from recsim.errors import SimulationError, TraceError
from recsim.graph.build import build_training_step
from recsim.graph.ir import Collective, CollectiveOp, Compute, ExecutionGraph, Node, Stream
from recsim.graph.schedule import Schedule, asap_schedule
from recsim.graph.steps import chain_steps
from recsim.hardware.library import HardwareLibrary
from recsim.metrics.invariants import check_breakdown, check_busy, check_schedule, check_utilisation
from recsim.metrics.result import Result
from recsim.planner import table_wise_round_robin
from recsim.planner.storage import plan_usage
from recsim.workload.library import WorkloadLibrary
from tests.conftest import FIXTURES

TINY = WorkloadLibrary([FIXTURES / "workloads"]).workload("tiny-dlrm")
TINY_SYSTEM = HardwareLibrary([FIXTURES / "minilib"]).system("tiny")


def k(i, rank=0, deps=(), stream=Stream.COMPUTE, dur=1.0, lane=0):
    return Node(i, rank, f"k{i}", stream, Compute("x"), tuple(deps), lane=lane, duration_s=dur)


def c(i, rank, key, dur=1.0, deps=(), group=(0, 1)):
    return Node(
        i,
        rank,
        key,
        Stream.COMM,
        Collective(CollectiveOp.ALL_REDUCE, key, group, 8.0),
        tuple(deps),
        duration_s=dur,
    )


def test_collective_waits_for_every_member():
    # rank 0 is ready at t=1, rank 1 at t=3: the all-reduce runs 3..5 on both.
    g = ExecutionGraph(
        2, [k(0, 0, dur=1.0), k(1, 1, dur=3.0), c(2, 0, "ar", 2.0, [0]), c(3, 1, "ar", 2.0, [1])]
    )
    s = asap_schedule(g)
    assert (s.start_s[2], s.finish_s[2]) == (3.0, 5.0)
    assert (s.start_s[3], s.finish_s[3]) == (3.0, 5.0)


def test_collective_takes_the_longest_member_duration():
    g = ExecutionGraph(2, [c(0, 0, "ar", 1.0), c(1, 1, "ar", 4.0)])
    assert asap_schedule(g).makespan_s == 4.0


def test_crossed_collective_order_deadlocks():
    # rank 0 issues a then b on one stream, rank 1 issues b then a: NCCL would hang.
    g = ExecutionGraph(2, [c(0, 0, "a"), c(1, 0, "b"), c(2, 1, "b"), c(3, 1, "a")])
    with pytest.raises(TraceError, match="collectives issued in different orders"):
        asap_schedule(g)


def test_lanes_are_separate_queues():
    g = ExecutionGraph(
        1, [k(0, stream=Stream.COMM, lane=0, dur=2.0), k(1, stream=Stream.COMM, lane=1, dur=2.0)]
    )
    assert asap_schedule(g).makespan_s == 2.0


def test_chain_steps_and_steady_window():
    step = build_training_step(TINY, table_wise_round_robin(TINY, 2))
    chained = chain_steps(step, 3)
    chained.validate()
    assert len(chained) == 3 * len(step)
    s = asap_schedule(chained, lambda n: 1e-3)
    w = step_window(chained, s)
    stride = chained.metadata["step_stride"]
    assert all(i // stride == 2 for i in w.node_ids)
    assert w.length_s > 0
    # every step repeats the same pattern with constant durations: the steady step equals the
    # previous one's length
    ends = [max(s.finish_s[i] for i in s.finish_s if i // stride == j) for j in range(3)]
    assert ends[2] - ends[1] == pytest.approx(ends[1] - ends[0])
    # cross-step dependency: step 1's embedding forward waits for step 0's input distribution
    fwd = next(n for n in chained.nodes if n.name.startswith("emb_forward:") and n.name.endswith("#1"))
    assert any(chained.node(d).name == "input_dist#0" for d in fwd.deps)


def test_the_input_pipeline_is_one_batch_deep():
    # Step s's copy of its batch (batch s + 1) to the device waits for step s - 1's optimizer on its
    # rank: unbounded, every step's copy ran at the start and none inside the measured step. The
    # host's loading is free to run ahead (loader workers prefetch).
    step = build_training_step(TINY, table_wise_round_robin(TINY, 2))
    assert step.metadata["input_prefetch"] == "one_batch"
    chained = chain_steps(step, 3)
    s = asap_schedule(chained, lambda n: 1e-3)
    for rank in range(2):
        for j in (1, 2):
            copy = next(n for n in chained.nodes if n.rank == rank and n.name == f"h2d_next_batch#{j}")
            opt = next(n for n in chained.nodes if n.rank == rank and n.name == f"dense_optimizer#{j - 1}")
            assert opt.id in copy.deps and s.start_s[copy.id] >= s.finish_s[opt.id]
            load = next(n for n in chained.nodes if n.rank == rank and n.name == f"data_loading#{j}")
            assert opt.id not in load.deps
    w = step_window(chained, s)
    busy = busy_time(chained, s, w)
    assert busy[(0, "host")] > 0 and busy[(0, "copy")] > 0
    # The eager runtime's host thread loads each batch in program order: no such dependency.
    eager = WorkloadLibrary([FIXTURES / "workloads"]).workload(
        "tiny-dlrm", [Override.parse("training.runtime=eager")]
    )
    step = build_training_step(eager, table_wise_round_robin(eager, 2))
    assert step.metadata["input_prefetch"] == "host_order"
    chained = chain_steps(step, 2)
    for name in ("data_loading#1", "h2d_next_batch#1"):
        node = next(n for n in chained.nodes if n.rank == 0 and n.name == name)
        assert all(d // chained.metadata["step_stride"] == 1 for d in node.deps)


def test_a_data_parallel_plan_loads_and_copies_its_indices():
    # Replicated tables are looked up where they are, but every rank still reads and copies its
    # local batch's indices: with no dense features the input was empty (a fuzzer's find).
    workload = WorkloadLibrary().workload("ncf")
    assert workload.dense_features == 0
    system = HardwareLibrary().system("dgx-h100")
    plan = make_plan("data_parallel", workload, system)
    step = build_training_step(workload, plan)
    b = workload.training.global_batch_size // plan.world_size
    loads = [n for n in step.nodes if n.name == "data_loading"]
    expected = sum(workload.table_lookups(t) * b * 8.0 + b * 4.0 for t in workload.tables)
    assert loads and all(n.op.bytes == pytest.approx(expected) for n in loads)
    result = simulate_training(system, workload, plan, SimulationOptions()).result
    assert result.utilisation["host"] > 0 and result.utilisation["copy"] > 0


def test_busy_time_takes_each_ranks_last_step_whole():
    # Rank 1 is the bottleneck; rank 0 starts its last step's kernel before the window opens.
    # Its busy time is that kernel whole (its step's work), not the part inside the window.
    nodes = [
        k(0, rank=0, dur=1.0),
        k(1, rank=1, dur=3.0),
        k(10, rank=0, deps=[0], dur=1.0),
        k(11, rank=1, deps=[1], dur=3.0),
    ]
    g = ExecutionGraph(2, nodes, {"steps": 2, "step_stride": 10})
    s = asap_schedule(g)
    w = step_window(g, s)
    assert (w.start_s, w.end_s) == (3.0, 6.0) and s.start_s[10] == 1.0
    busy = busy_time(g, s, w)
    assert busy == {(0, "compute"): 1.0, (1, "compute"): 3.0}


@pytest.mark.parametrize(
    ("system_name", "workload_name", "rank"),
    # Rank 0 of dgx-h100 at 0.99 and big-basin's at 0.7 lowered the energy per sample before
    # (x0.9997 and x0.937: their busy time was clipped to the last step's window).
    [("dgx-h100", "dlrm-dcnv2", 0), ("dgx-h100", "dlrm-dcnv2", 3), ("big-basin", "rmc2", 0)],
)
def test_a_straggler_never_lowers_the_energy_per_sample(system_name, workload_name, rank):
    system = HardwareLibrary().system(system_name)
    workload = WorkloadLibrary().workload(workload_name)
    plan = make_plan("row_wise", workload, system)
    base = simulate_training(system, workload, plan, SimulationOptions()).result
    for factor in (0.99, 0.7, 0.5):
        slow = simulate_training(
            system, workload, plan, SimulationOptions(speed_factors={rank: factor})
        ).result
        assert slow.iteration_time_s >= base.iteration_time_s
        assert slow.energy_per_sample_j >= base.energy_per_sample_j
        # The same work in a longer step: the fast ranks' compute is no busier than without.
        assert slow.utilisation["compute"] <= base.utilisation["compute"]


def test_critical_path_sums_to_the_window():
    step = build_training_step(TINY, table_wise_round_robin(TINY, 2))
    chained = chain_steps(step, 3)
    s = asap_schedule(chained, lambda n: 1e-3 * (1 + n.id % 3))
    w = step_window(chained, s)
    totals, path = critical_path(chained, s, w, lambda n: n.op.kind)
    assert math.fsum(totals.values()) == pytest.approx(w.length_s)
    assert path[0] == max(w.node_ids, key=lambda i: (s.finish_s[i], i))


def test_critical_path_counts_gaps_as_exposed_wait():
    g = ExecutionGraph(1, [k(0, dur=1.0), k(1, deps=[0], dur=1.0)])
    s = Schedule({0: 0.0, 1: 1.5}, {0: 1.0, 1: 2.5})  # a contention gap of 0.5 s
    totals, _ = critical_path(g, s, step_window(g, s), lambda n: "compute")
    assert totals == {"compute": 2.0, "exposed_wait": 0.5}


def test_busy_time_is_a_union():
    g = ExecutionGraph(
        1, [k(0, dur=2.0), k(1, stream=Stream.HOST, dur=1.0), k(2, stream=Stream.COPY, dur=1.0)]
    )
    s = Schedule({0: 0.0, 1: 0.5, 2: 0.0}, {0: 2.0, 1: 1.5, 2: 1.0})
    busy = busy_time(g, s, step_window(g, s))
    assert busy[(0, "compute")] == 2.0
    assert busy[(0, "host")] == 1.0


def test_invariants_catch_engine_bugs():
    g = ExecutionGraph(1, [k(0), k(1, deps=[0])])
    with pytest.raises(SimulationError, match="before its dependency"):
        check_schedule(g, Schedule({0: 0.0, 1: 0.5}, {0: 1.0, 1: 1.5}))
    with pytest.raises(SimulationError, match="runs k0 and k1 at once"):
        check_schedule(ExecutionGraph(1, [k(0), k(1)]), Schedule({0: 0.0, 1: 0.5}, {0: 1.0, 1: 1.5}))
    with pytest.raises(SimulationError, match="not scheduled exactly once"):
        check_schedule(g, Schedule({0: 0.0}, {0: 1.0}))
    with pytest.raises(SimulationError, match="sums to"):
        check_breakdown({"compute": 1.0}, 2.0)
    with pytest.raises(SimulationError, match="busy"):
        check_utilisation({"compute": 1.2})


def test_result_to_dict_is_flat():
    r = Result(
        "ok", iteration_time_s=2.0, breakdown_s={"compute": 1.5, "all_to_all": 0.5}, energy_per_sample_j=0.25
    )
    d = r.to_dict()
    assert d["breakdown_s.compute"] == 1.5
    assert d["samples_per_joule"] == 4.0
    assert Result("error", "x").to_dict()["iteration_time_s"] is None


def test_every_result_has_the_same_keys():
    ok = Result("ok", iteration_time_s=2.0, utilisation={"compute": 0.5}, power_by_component_w={"cpus": 9.0})
    failed = Result("infeasible", "no room", memory_peak_bytes={"hbm": 3.0})
    assert list(ok.to_dict()) == list(failed.to_dict())
    d, f = ok.to_dict(), failed.to_dict()
    # An ok result's missing stream or component is idle or absent: 0; a failed one's is unknown.
    assert (
        d["utilisation.compute"] == 0.5
        and d["utilisation.host"] == 0.0
        and d["power_by_component_w.ssds"] == 0.0
    )
    assert d["power_by_component_w.cpus"] == 9.0
    assert (
        f["memory_peak_bytes.hbm"] == 3.0
        and f["memory_peak_bytes.ddr"] is None
        and f["breakdown_s.compute"] is None
    )
    # A key outside the canonical ones is kept, after them.
    extra = Result("ok", breakdown_s={"compute": 1.0, "custom": 2.0}).to_dict()
    assert extra["breakdown_s.custom"] == 2.0 and list(extra).index("breakdown_s.custom") > list(extra).index(
        "breakdown_s.compute"
    )


def test_memory_by_hand():
    usage = plan_usage(table_wise_round_robin(TINY, 2), TINY, TINY_SYSTEM)
    hbm = usage.hbm_by_rank
    # table a (100 x 4 fp32) on rank 0 with row-wise Adagrad state (4 B per row); dense: 131 fp32
    # params x (param + grad + one Adagrad state); activations: 4 samples x (8+4+3+6+1) x 4 B;
    # pooled embeddings for the local batch: 4 x (4 + 4) x 4 B; and the owner side of the pooled
    # exchange, the owned table's vectors for the global batch (storage.pooled_output_bytes, as
    # TorchRec's output_sizes): 8 samples x 4 x 4 B on each rank, each owning one table; and the
    # ids the owner reads for the global batch (storage.input_buffer_bytes, as TorchRec's
    # input_sizes): 8 samples x (pooling x 8 B + a 4 B length), a's pooling 2, b's 3.
    # (131 params and the 6 weights tiny's top0 has for HugeCTR's dot padding column, fused:
    # ``graph.build.trained_dense_layers``)
    dense = (131 + 6) * 4 * 3
    act = 4 * 4 * (8 + 4 + 3 + 6 + 1)
    pooled = 4 * 4 * 8
    owned = 8 * 4 * 4
    # And the loader's own buffers on every rank (``planner.reader_buffers``, tiny's fused runtime:
    # HugeCTR's multi-hot reader, ``test_planner_stats.READER_2``; 2026-12-07, left out before).
    reader = 16 * 4 * 10 * 4 + (4 * (4 + 4 * 4) + 4 * 5 * 4 + 2 * (5 * 4 + 8)) + 4 * (4 + 4 * 4)
    assert reader == 2856
    assert hbm[0] == 100 * (16 + 4) + dense + act + pooled + owned + 8 * (2 * 8 + 4) + reader
    assert hbm[1] == 50 * (16 + 4) + dense + act + pooled + owned + 8 * (3 * 8 + 4) + reader
    assert sum(usage.ddr_by_node.values()) == 0 and sum(usage.ssd_by_node.values()) == 0


def test_check_busy_names_the_first_stream_over_the_step():
    busy = {(0, "compute"): 1.0, (1, "comm"): 1.01, (2, "compute"): 1.5, (3, "host"): 2.0}
    with pytest.raises(SimulationError, match=r"rank 2's compute stream is busy 1\.5 s in a step of 1 s"):
        check_busy(busy, 1.0)
    check_busy({(0, "compute"): 1.01, (1, "comm"): math.nan, (2, "host"): 0}, 1.0)  # within 1 %
    check_busy({}, 0.0)
