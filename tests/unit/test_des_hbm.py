"""DES: the ops of one rank that run at once on different queues share its HBM (``recsim.engine.hbm``)."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recsim.engine.des as des_module
from recsim.config import Override
from recsim.cost.compute import elementwise_memory_efficiency, hbm_bytes
from recsim.cost.model import CostModel
from recsim.engine.analytic import run_analytic
from recsim.engine.des import DesCounters, run_des
from recsim.engine.hbm import hbm_capacity_bytes_per_s, water_fill
from recsim.graph.ir import Compute, ExecutionGraph, Node, Stream, Transfer
from recsim.hardware.library import HardwareLibrary
from tests.conftest import FIXTURES

HW = HardwareLibrary([FIXTURES / "minilib"])
# The tiny GPU (tests/fixtures/minilib/devices/tiny-gpu.yaml): 1200 GB/s of HBM, no GEMM fit of its
# own, so the un-calibrated transfer's memory efficiency (0.7804); 3 us per element-wise kernel
# and 4 us of launch gap.
SYSTEM = HW.system("tiny", [Override.parse(s) for s in ("cluster.nodes=1", "node.accelerators.count=1")])
# Op-keyed costs only (``compute_s``): a model caches its durations by node id, and these graphs
# reuse ids, so each run gets a model of its own.
COST = CostModel(SYSTEM)
CAPACITY = 1200e9 * 0.7804


def stream_kernel(nbytes: float) -> Compute:
    """A memory-bound kernel moving ``nbytes`` through HBM."""
    return Compute(
        "scale", bytes_read=nbytes / 2, bytes_written=nbytes / 2, dtype="fp16", category="elementwise"
    )


def gemm(m: int, n: int, k: int) -> Compute:
    return Compute("mm", flops=2.0 * m * n * k, dtype="fp16", shapes=((m, k), (k, n)), category="gemm")


def kernel(i: int, op: Compute, lane: int = 0, deps: tuple[int, ...] = ()) -> Node:
    return Node(i, 0, f"k{i}", Stream.COMPUTE, op, deps, lane=lane)


def finishes(graph: ExecutionGraph, counters: DesCounters | None = None) -> dict[int, float]:
    schedule = run_des(graph, CostModel(SYSTEM), counters)
    return {n.id: schedule.finish_s[n.id] for n in graph.nodes}


def test_the_capacity_is_the_rate_kernels_are_priced_at():
    acc = SYSTEM.accelerator
    assert acc is not None
    assert hbm_capacity_bytes_per_s(acc) == acc.hbm.bandwidth_bytes_per_s * elementwise_memory_efficiency(acc)
    assert hbm_capacity_bytes_per_s(acc) == pytest.approx(CAPACITY, rel=1e-12)
    # A long streaming kernel reaches it: its time is its bytes at that rate and its fixed costs.
    op = stream_kernel(1e9)
    assert COST.compute_s(op) == pytest.approx(7e-6 + 1e9 / CAPACITY, rel=1e-12)


@pytest.mark.parametrize(
    ("part", "stream_bytes_per_s"),
    # The best read-and-write STREAM rate measured on the part (Copy, Mul, Add, Triad):
    # ../shared/reference/microbench/ND_A100_v4_results.md, ND_H100_v5, ND_H200_v5.
    [("a100-sxm4-80gb", 1.70e12), ("h100-sxm5-80gb", 2.97e12), ("h200-sxm5-141gb", 4.15e12)],
)
def test_the_capacity_is_at_least_what_one_stream_kernel_was_measured_to_get(part, stream_bytes_per_s):
    # A shared link cannot deliver less to two ops than one STREAM kernel was measured to get: the
    # GEMM fit's memory efficiency (0.780 / 0.814 / 0.785 of the bandwidth) is under it.
    acc = HardwareLibrary().device("accelerator", part)
    # The YAML's calibration.stream.efficiency is the share to six digits (rel 1e-6).
    assert hbm_capacity_bytes_per_s(acc) == pytest.approx(stream_bytes_per_s, rel=1e-6)
    assert hbm_capacity_bytes_per_s(acc) > acc.hbm.bandwidth_bytes_per_s * elementwise_memory_efficiency(acc)
    # A what-if of the part's bandwidth scales the measured rate with it.
    faster = acc.model_copy(
        update={
            "hbm": acc.hbm.model_copy(update={"bandwidth_bytes_per_s": 2 * acc.hbm.bandwidth_bytes_per_s})
        }
    )
    assert hbm_capacity_bytes_per_s(faster) == pytest.approx(2 * stream_bytes_per_s, rel=1e-6)


def test_water_filling_gives_small_demands_their_pace_and_splits_the_rest():
    assert water_fill([1.0, 2.0, 10.0], 9.0) == [1.0, 1.0, 0.6]
    assert water_fill([5.0, 5.0], 10.0) == [1.0, 1.0]
    assert water_fill([8.0, 4.0], 10.0) == [6.0 / 8.0, 1.0]
    assert water_fill([8.0, 8.0, 8.0], 12.0) == [0.5, 0.5, 0.5]


def test_two_memory_bound_kernels_on_two_lanes_take_their_bytes_over_the_capacity():
    nbytes = 100e-6 * CAPACITY  # 100 us at the capacity; each kernel takes 107 us alone
    op = stream_kernel(nbytes)
    alone = COST.compute_s(op)
    assert alone == pytest.approx(107e-6, rel=1e-12)
    for lane in (0, 1):
        one = ExecutionGraph(1, [kernel(0, op, lane)])
        assert finishes(one) == {0: alone}
    counters = DesCounters()
    both = finishes(ExecutionGraph(1, [kernel(0, op, 0), kernel(1, op, 1)]), counters)
    # Each asks nbytes / 107 us, 93 % of the capacity: both get half of it, and both end when the
    # two kernels' bytes have gone through at the capacity.
    assert both[0] == both[1] == pytest.approx(2 * nbytes / CAPACITY, rel=1e-12)
    assert counters.hbm_flows == 2
    assert counters.hbm_peak_use == pytest.approx(1.0, rel=1e-12)
    # The analytic engine shares nothing: each kernel at its modelled time.
    analytic = run_analytic(ExecutionGraph(1, [kernel(0, op, 0), kernel(1, op, 1)]), CostModel(SYSTEM))
    assert analytic.finish_s[0] == analytic.finish_s[1] == alone


def test_a_short_kernel_beside_a_long_one_slows_it_by_what_it_took():
    long_bytes, short_bytes = 100e-6 * CAPACITY, 20e-6 * CAPACITY
    long_op, short_op = stream_kernel(long_bytes), stream_kernel(short_bytes)
    got = finishes(ExecutionGraph(1, [kernel(0, long_op, 0), kernel(1, short_op, 1)]))
    # Both start at 0 asking more than half: half each, until the short one's bytes are in
    # (40 us); the long one then has its whole pace back and ends 20 us of bytes late.
    long_pace = long_bytes / COST.compute_s(long_op)
    assert got[1] == pytest.approx(2 * short_bytes / CAPACITY, rel=1e-12)
    left = long_bytes - got[1] * CAPACITY / 2
    assert got[0] == pytest.approx(got[1] + left / long_pace, rel=1e-12)
    assert got[0] > COST.compute_s(long_op) * 1.1


def test_one_queue_gets_no_hbm_link_and_the_engines_agree():
    op = stream_kernel(100e-6 * CAPACITY)
    graph = ExecutionGraph(1, [kernel(0, op), kernel(1, op), kernel(2, op, deps=(0,))])
    counters = DesCounters()
    assert finishes(graph, counters) == run_analytic(graph, CostModel(SYSTEM)).finish_s
    assert counters.hbm_flows == counters.hbm_rounds == 0


def test_a_gemm_beside_a_streaming_kernel_is_not_slowed_where_their_demand_fits():
    # A compute-bound GEMM asks little of HBM (17 %): beside a streaming kernel that asks 74 % of
    # it (20 us of bytes in 27 us), the sum fits and both take their modelled time (their SMs are
    # not shared: not modelled).
    mm, stream = gemm(4096, 4096, 4096), stream_kernel(20e-6 * CAPACITY)
    acc = SYSTEM.accelerator
    assert acc is not None
    pace = hbm_bytes(mm, acc) / COST.compute_s(mm)
    assert pace + hbm_bytes(stream, acc) / COST.compute_s(stream) < CAPACITY
    graph = ExecutionGraph(1, [kernel(0, mm, 0), kernel(1, stream, 1)])
    counters = DesCounters()
    assert finishes(graph, counters) == run_analytic(graph, CostModel(SYSTEM)).finish_s
    assert counters.hbm_flows == 0  # neither can be slowed: no link


def everything_on_the_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put every op with HBM bytes and a duration on its rank's link, leaving ``_hbm_demands``'s
    filter out (what it leaves off must change nothing)."""

    def all_demands(graph, cost, duration_of, capacity, sm_shared=False):
        found = {}
        for n in graph.nodes:
            nbytes = des_module.op_hbm_bytes(n.op, cost)
            if nbytes > 0 and duration_of(n) > 0:
                found[n.id] = nbytes
        return found

    monkeypatch.setattr(des_module, "_hbm_demands", all_demands)


@st.composite
def lanes_of_work(draw: st.DrawFn) -> ExecutionGraph:
    """Up to three compute lanes and a copy queue of one GPU, ops of random sizes and kinds."""
    nodes: list[Node] = []
    for i in range(draw(st.integers(2, 9))):
        lane = draw(st.integers(0, 2))
        kind = draw(st.sampled_from(["stream", "gemm", "copy"]))
        deps = (draw(st.integers(0, i - 1)),) if i and draw(st.booleans()) else ()
        if kind == "copy":
            op = Transfer(src="host", dst="hbm", bytes=draw(st.floats(1e5, 1e8)))
            nodes.append(Node(i, 0, f"c{i}", Stream.COPY, op, deps))
            continue
        if kind == "gemm":
            size = draw(st.sampled_from([64, 512, 4096]))
            op = gemm(size * draw(st.integers(1, 8)), size, size)
        else:
            op = stream_kernel(draw(st.floats(1e5, 2e8)))
        nodes.append(kernel(i, op, lane, deps))
    return ExecutionGraph(1, nodes)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(graph=lanes_of_work())
def test_sharing_hbm_never_speeds_anything_up_nor_runs_it_past_its_capacity(graph, monkeypatch):
    cost = CostModel(SYSTEM)
    counters = DesCounters()
    des = run_des(graph, cost, counters)
    analytic = run_analytic(graph, cost)
    assert counters.hbm_peak_use <= 1.0 + 1e-12
    for n in graph.nodes:
        took = des.finish_s[n.id] - des.start_s[n.id]
        assert took >= cost.duration_s(n) * (1 - 1e-12)
    assert max(des.finish_s.values()) >= max(analytic.finish_s.values()) * (1 - 1e-12)
    # The ops left off the links (none of them can be slowed) change nothing.
    with monkeypatch.context() as patch:
        everything_on_the_links(patch)
        every = DesCounters()
        full = run_des(graph, cost, every)
    assert every.hbm_flows >= counters.hbm_flows
    assert every.hbm_peak_use <= 1.0 + 1e-12
    for n in graph.nodes:
        assert math.isclose(full.finish_s[n.id], des.finish_s[n.id], rel_tol=1e-9), n


def test_the_filter_leaves_off_what_cannot_be_slowed_and_keeps_what_can():
    # A copy beside two streaming lanes can be slowed (their demands sum past the capacity); the
    # same copy beside one streaming lane cannot, and neither can that lane's kernel.
    stream = stream_kernel(100e-6 * CAPACITY)
    copy = Node(9, 0, "copy", Stream.COPY, Transfer(src="host", dst="hbm", bytes=64e6))
    two = ExecutionGraph(1, [kernel(0, stream, 0), kernel(1, stream, 1), copy])
    assert set(des_module._hbm_demands(two, COST, COST.duration_s, CAPACITY)) == {0, 1, 9}
    one = ExecutionGraph(1, [kernel(0, stream, 0), copy])
    assert des_module._hbm_demands(one, COST, COST.duration_s, CAPACITY) == {}


def test_the_dgx_h100_dcnv2_step_shares_hbm_between_the_cross_layers_and_the_side_lanes(monkeypatch):
    """HugeCTR's DCNv2 step (MLPerf's global batch, fp16, one node): the cross layers' element-wise
    kernels share HBM with the index sort (``LANE_INDEX``, beside their forward) and the weight-
    gradient GEMMs (``LANE_WGRAD``, beside their backward). DES step 3.866 ms without the links,
    3.976 ms with them; the analytic engine's 3.866 ms does not move. Under ``sm_sharing`` both
    engines 4.104 ms. (3.955, 3.955, 4.068 and 4.193 ms before the interference stretch scaled with
    the collectives' share of the SMs, ``recsim.cost.interference.footprint``: an H100's 132 SMs,
    its NVLS all-reduce's 16 CTAs; ``collective_footprints`` patched to None gives them again;
    3.851, 3.964 and 4.089 ms before HugeCTR's gradient all-reduces waited for
    the backward all-to-all, its one NCCL communicator's order: ``Runtime.
    all_reduces_after_exchange``, patched off, gives them again; 4.006 while the link's capacity was
    the GEMM fit's 0.814 of the bandwidth, under the 0.887 one STREAM kernel was measured to get:
    the device's ``calibration.stream``; 4.088 under sm_sharing before the fixed rows' fold gave each row
    its compound-Poisson background, ``multi_hot._spread_rows``.) The plan is NVIDIA's
    (``hugectr_auto``, what ``auto`` picked until the sort refit made greedy's plan 0.6 us faster).
    (3.897, 3.897 and 4.042 ms before the index sort's streaming efficiency and the gather refit,
    ``gpu.SORT_EFFICIENCY``; 4.018, 4.141 and 3.975 ms before the MLP layers' weight gradients went
    to ``LANE_WGRAD`` too: ``Runtime.async_mlp_wgrad``; 3.869, 4.012 and 3.869 ms before split-K's
    reduction was priced as a kernel of its own; 3.981, 3.981 and 4.134 ms, and 4.219 under
    sm_sharing, before dlrm-dcnv2's fixed multi-hot rows, ``multi_hot: fixed_rows``; 4.503, 4.503
    and 4.658 ms, and 4.743 under sm_sharing, before the update's visit to each unique row went at
    its own rate, ``gpu.row_visit_efficiency``.)"""
    from recsim.api import make_plan, prepare
    from recsim.engine.simulate import SimulationOptions, simulate_training

    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=1, batch_size=55296, precision="fp16")
    plan = make_plan("hugectr_auto", workload, system)

    def step_ms(fidelity: str, counters: DesCounters | None = None, sm_sharing: bool = False) -> float:
        options = SimulationOptions(fidelity=fidelity, des_counters=counters, sm_sharing=sm_sharing)
        return simulate_training(system, workload, plan, options).result.iteration_time_s * 1e3

    counters = DesCounters()
    shared = step_ms("des", counters)
    assert counters.hbm_flows > 0 and counters.hbm_peak_use <= 1.0 + 1e-12
    with monkeypatch.context() as patch:
        patch.setattr(des_module, "_hbm_demands", lambda *args: {})
        alone = step_ms("des")
    assert step_ms("analytic") == pytest.approx(3.866, abs=5e-4)
    assert alone == pytest.approx(3.866, abs=5e-4)
    assert shared == pytest.approx(3.976, abs=5e-4)
    # Under sm_sharing the lanes' kernels hold their slowdown beside each other, HBM included, in
    # their durations: DES no longer slows them for each other again (4.267 ms before), and what
    # it still shares (the copies beside them) is off the critical path: DES is the analytic 4.104.
    analytic = step_ms("analytic", sm_sharing=True)
    assert analytic == pytest.approx(4.104, abs=5e-4)
    assert step_ms("des", sm_sharing=True) == pytest.approx(analytic, rel=1e-12)


def test_one_hgx_h200_node_runs_its_all_reduce_after_the_backward_all_to_all(monkeypatch):
    """What DES charges on one node beside HBM (``recsim.engine.des``, the one-node audit): HPE's
    v5.0 HGX H200 node (validation case mlperf-train-v5.0-dcnv2-hgxh200-hpe-n1, its plan settings),
    HBM links left out. HugeCTR's one NCCL communicator runs the dense all-reduce after the
    backward all-to-all (``Runtime.all_reduces_after_exchange``), so the two no longer share the
    GPUs' NVSwitch ports: the a2a_bwd takes its 139.31 us alone in both engines and DES without
    HBM is the analytic step, 3.764 ms; DES 3.800 (HBM 36 us more). (3.849 and 3.886 ms before the
    interference stretch scaled with the collectives' share of an H200's 132 SMs,
    ``recsim.cost.interference.footprint``; ``collective_footprints`` patched to None gives them
    again.) Before that order (patched off,
    the figures come back): the all-reduce started 62.7 us before the a2a_bwd, which, sharing the
    ports, took 188.32 us on the critical path: 3.712 ms analytic, 3.756 DES without HBM, 3.794
    DES (3.838 while the HBM link's capacity was the GEMM fit's: the device's ``calibration.stream``)."""
    from recsim.api import make_plan, prepare
    from recsim.engine.simulate import Simulation, SimulationOptions, simulate_training

    system, workload = prepare("hgx-h200", "dlrm-dcnv2", nodes=1, batch_size=65536, precision="fp16")
    planner = ["planner.hugectr_mem_comm_bw_ratio=11", "planner.gpu_dp_threshold_bytes=8000000"]
    plan = make_plan("hugectr_auto", workload, system, planner=planner)

    def run(fidelity: str) -> Simulation:
        options = SimulationOptions(fidelity=fidelity, comm_dtype="fp16")
        return simulate_training(system, workload, plan, options)

    def span_us(sim: Simulation, name: str) -> tuple[float, float]:
        """(start, duration) of rank 0's ``name`` in the last chained step, in us."""
        assert sim.graph is not None and sim.schedule is not None
        (node,) = [n for n in sim.graph.nodes if n.rank == 0 and n.name == f"{name}#2"]
        begin = sim.schedule.start_s[node.id]
        return begin * 1e6, (sim.schedule.finish_s[node.id] - begin) * 1e6

    analytic = run("analytic")
    with monkeypatch.context() as patch:
        patch.setattr(des_module, "_hbm_demands", lambda *args: {})
        links = run("des")
    shared = run("des")
    steps_ms = [s.result.iteration_time_s * 1e3 for s in (analytic, links, shared)]
    assert steps_ms == pytest.approx([3.764, 3.764, 3.800], abs=5e-4)
    for sim in (analytic, links):
        a2a, reduce = span_us(sim, "a2a_bwd"), span_us(sim, "allreduce_bucket0")
        assert reduce[0] >= a2a[0] + a2a[1]  # after it, in the communicator's order
        assert (a2a[1], reduce[1]) == pytest.approx((139.31, 187.26), abs=0.01)


def test_collectives_put_nothing_on_the_hbm_link():
    # Their kernels' HBM use is in the interference stretch of the kernels beside them.
    from recsim.engine.resources import op_hbm_bytes
    from recsim.graph.ir import Collective, CollectiveOp

    assert op_hbm_bytes(Collective(CollectiveOp.ALL_REDUCE, "ar", (0, 1), 64e6), COST) == 0.0
    assert op_hbm_bytes(stream_kernel(1e6), COST) == 1e6


def test_a_copy_within_the_gpu_priced_past_the_capacity_keeps_its_time_alone_and_asks_all_of_it():
    # A copy kernel within the GPU is priced at the full HBM bandwidth (read and write: half of it
    # each way), above the capacity kernels are priced at: alone it keeps its modelled time; beside
    # a streaming kernel it asks the whole capacity, and the two share it.
    copy_op = Transfer(src="hbm", dst="hbm", bytes=60e6)
    copy = Node(5, 0, "d2d", Stream.COPY, copy_op)
    took = COST.transfer_s(copy_op)
    assert took == pytest.approx(2 * 60e6 / 1200e9, rel=1e-12)
    assert finishes(ExecutionGraph(1, [copy])) == {5: took}
    stream = stream_kernel(100e-6 * CAPACITY)
    both = finishes(ExecutionGraph(1, [kernel(0, stream, 0), copy]))
    # Both ask more than half (the copy the whole capacity, the kernel 93 %): half each, until the
    # kernel's bytes are in (199 us); the copy then gets its whole pace for what it has left of its
    # 100 us of work at the capacity.
    pace = (100e-6 * CAPACITY) / COST.compute_s(stream)
    assert both[0] == pytest.approx(COST.compute_s(stream) * pace / (CAPACITY / 2), rel=1e-12)
    assert both[5] == pytest.approx(both[0] + (took - both[0] / 2), rel=1e-12)
    assert both[5] > took * 1.9


def test_under_sm_sharing_two_compute_lanes_do_not_share_hbm_again():
    # Two streaming kernels on two compute lanes ask 93 % of the capacity each. Off, the link
    # shares it (each ends at 2 x nbytes / capacity); under ``sm_sharing`` their slowdown beside
    # each other, the HBM they take from each other included, is in their (stretched) durations
    # (``recsim.cost.sm_sharing``): they go on no link, and DES is the analytic engine.
    nbytes = 100e-6 * CAPACITY
    op = stream_kernel(nbytes)
    graph = ExecutionGraph(1, [kernel(0, op, 0), kernel(1, op, 1), kernel(2, op, 1, (1,))])
    assert des_module._hbm_demands(graph, COST, COST.duration_s, CAPACITY, True) == {}
    cost = CostModel(SYSTEM)
    analytic = run_analytic(graph, cost)
    shared = run_des(graph, CostModel(SYSTEM), sm_shared=True)
    assert shared.start_s == analytic.start_s and shared.finish_s == analytic.finish_s
    off = run_des(graph, CostModel(SYSTEM))
    assert off.finish_s[0] == pytest.approx(2 * nbytes / CAPACITY, rel=1e-12)
    assert off.finish_s == run_des(graph, CostModel(SYSTEM), sm_shared=False).finish_s


def test_under_sm_sharing_a_copy_still_shares_hbm_with_the_compute_lanes_as_one():
    # A host-to-device copy beside the two lanes: the lanes' kernels ask 2 x 93 % together, taken
    # as one flow asking the whole capacity, so the copy and the pair split it max-min (the copy
    # asks less than half: it gets its pace, the pair the rest, each kernel that share of its own
    # pace). The filter puts all three on the link, and the pair's kernels end together.
    nbytes = 100e-6 * CAPACITY
    op = stream_kernel(nbytes)
    copy = Node(9, 0, "copy", Stream.COPY, Transfer(src="host", dst="hbm", bytes=64e6))
    graph = ExecutionGraph(1, [kernel(0, op, 0), kernel(1, op, 1), copy])
    assert set(des_module._hbm_demands(graph, COST, COST.duration_s, CAPACITY, True)) == {0, 1, 9}
    took = COST.duration_s(copy)
    pace = 64e6 / took
    assert pace < CAPACITY / 2
    des = run_des(graph, CostModel(SYSTEM), sm_shared=True)
    assert des.finish_s[9] == pytest.approx(took, rel=1e-12)  # never slowed
    alone = COST.compute_s(op)
    assert des.finish_s[0] == des.finish_s[1]
    # The copy (2.4 ms, 2.8 % of the capacity) outlasts them: beside it the pair gets
    # (capacity - pace) / capacity of its pace all along.
    assert took > alone
    assert des.finish_s[0] == pytest.approx(alone * CAPACITY / (CAPACITY - pace), rel=1e-9)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(graph=lanes_of_work())
def test_under_sm_sharing_the_filter_leaves_off_only_what_cannot_be_slowed(graph, monkeypatch):
    # The grouped filter (``_may_be_slowed`` with the compute lanes' kernels as one flow) keeps
    # what the grouped link can slow: every op on the link gives the same schedule. Nothing runs
    # faster than its modelled time.
    cost = CostModel(SYSTEM)
    des = run_des(graph, cost, sm_shared=True)
    for n in graph.nodes:
        assert des.finish_s[n.id] - des.start_s[n.id] >= cost.duration_s(n) * (1 - 1e-12)
    with monkeypatch.context() as patch:
        everything_on_the_links(patch)
        full = run_des(graph, cost, sm_shared=True)
    for n in graph.nodes:
        assert math.isclose(full.finish_s[n.id], des.finish_s[n.id], rel_tol=1e-9), n
