"""Kernels beside collectives: the slowdowns re-measured on the A100 trace, the stretch by hand and
against a scalar reference, and the effect on a simulated step."""

from __future__ import annotations

import gzip
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.api import make_plan, prepare
from recsim.cost.interference import (
    COMM_SLOWDOWN,
    TRACE_NCCL_CTAS,
    TRACE_SMS,
    _slowdown_of,
    _slowdowns,
    collective_footprints,
    footprint,
    interfered_durations,
    overlap_slowdowns,
)
from recsim.engine.simulate import SimulationOptions, simulate_training
from recsim.graph.index import GraphIndex
from recsim.graph.ir import (
    Collective,
    CollectiveOp,
    Compute,
    Embedding,
    ExecutionGraph,
    Host,
    Node,
    Stream,
    Transfer,
)
from recsim.graph.readers.kineto import parse_kineto
from recsim.graph.steps import ChainedGraph

TRACE = Path(__file__).parents[1] / "data" / "traces" / "recsys_a100_8rank_rank3_control.json.gz"


def test_slowdowns_are_the_traces():
    with gzip.open(TRACE, "rt") as handle:
        trace = parse_kineto(TRACE, json.load(handle))
    measured = overlap_slowdowns(trace)
    assert (len(measured["gemm"]), len(measured["other"])) == (13, 40)
    assert statistics.median(measured["gemm"]) == pytest.approx(COMM_SLOWDOWN["gemm"], abs=0.005)
    assert statistics.median(measured["other"]) == pytest.approx(COMM_SLOWDOWN["other"], abs=0.005)
    everything = measured["gemm"] + measured["other"]
    assert statistics.median(everything) == pytest.approx(1.56, abs=0.005)


def test_slowdowns_of_ops_at_once_are_each_ops():
    # The stretch's comprehension against the one-op rule, class by class: a GEMM, a matrix
    # category with no flops (not a product), an interaction, an element-wise pass, a lookup, a
    # collective, a copy and host work (1: not a kernel).
    ops = [
        Compute("mm", 1.0, category="gemm"),
        Compute("mm0", 0.0, category="gemm"),
        Compute("dot", 2.0, category="interaction"),
        Compute("add", 1.0, category="elementwise"),
        Embedding("t", "forward", 10, 4, "fp32", 4, 4.0),
        Collective(CollectiveOp.ALL_REDUCE, "ar", (0, 1), 1e6),
        Transfer("hbm", "host", 8.0),
        Host("python", cpu_s=1.0),
    ]
    g, o = COMM_SLOWDOWN["gemm"], COMM_SLOWDOWN["other"]
    assert _slowdowns(ops) == [g, o, g, o, o, 1.0, 1.0, 1.0]
    assert [_slowdown_of(op) for op in ops] == [g, o, g, o, o, 1.0, 1.0, 1.0]  # one op at a time


def _graph() -> ExecutionGraph:
    gemm = Compute("mm", 1.0, category="gemm", shapes=((4, 4), (4, 4)))
    add = Compute("add", 1.0, category="elementwise")
    lookup = Embedding("t", "forward", 10, 4, "fp32", 4, 4.0)
    ar = Collective(CollectiveOp.ALL_REDUCE, "ar", (0, 1), 1e6)
    nodes = [
        Node(0, 0, "gemm", Stream.COMPUTE, gemm),
        Node(1, 0, "add", Stream.COMPUTE, add),
        Node(2, 0, "lookup", Stream.COMPUTE, lookup),
        Node(3, 0, "ar", Stream.COMM, ar),
        Node(4, 1, "ar", Stream.COMM, ar),
        Node(5, 1, "gemm", Stream.COMPUTE, gemm),
        Node(6, 0, "host", Stream.HOST, Host("python", cpu_s=1.0)),
    ]
    return ExecutionGraph(2, nodes)


def test_stretch_by_hand():
    # Rank 0's all-reduce runs over [1, 3); rank 1's (the same collective) too.
    index = GraphIndex.of(_graph())
    durations = [2.0, 1.0, 2.0, 2.0, 2.0, 1.0, 2.0]
    start = np.array([0.0, 2.0, 3.0, 1.0, 1.0, 3.0, 0.0])
    finish = start + np.array(durations)
    out = interfered_durations(index, durations, start, finish)
    g, o = COMM_SLOWDOWN["gemm"], COMM_SLOWDOWN["other"]
    assert out[0] == pytest.approx(2.0 * (1 + (g - 1) * 0.5))  # half of [0, 2) beside it
    assert out[1] == pytest.approx(1.0 * o)  # all of [2, 3)
    assert out[2] == out[3] == out[4] == 2.0  # after it; the collectives themselves
    assert out[5] == 1.0  # rank 1's kernel after its part
    assert out[6] == 2.0  # host work is not a kernel
    # Without collectives nothing changes.
    alone = ExecutionGraph(1, [Node(0, 0, "gemm", Stream.COMPUTE, _graph().nodes[0].op)])
    assert interfered_durations(GraphIndex.of(alone), [2.0], np.zeros(1), np.full(1, 2.0)) == [2.0]


def _reference(
    graph: ExecutionGraph, durations: list[float], start: np.ndarray, finish: np.ndarray
) -> list[float]:
    """Node by node: the union of the rank's collective windows, the kernel's share inside it."""
    out = list(durations)
    for i, n in enumerate(graph.nodes):
        if n.stream != Stream.COMPUTE or type(n.op) not in (Compute, Embedding) or finish[i] <= start[i]:
            continue
        windows = sorted(
            (start[j], finish[j])
            for j, m in enumerate(graph.nodes)
            if m.rank == n.rank and type(m.op) is Collective
        )
        union: list[list[float]] = []
        for a, b in windows:
            if union and a <= union[-1][1]:
                union[-1][1] = max(union[-1][1], b)
            else:
                union.append([a, b])
        inside = sum(max(0.0, min(b, finish[i]) - max(a, start[i])) for a, b in union)
        op = n.op
        matmul = type(op) is Compute and op.category in ("gemm", "interaction", "sequence") and op.flops > 0
        kind = "gemm" if matmul else "other"
        out[i] = durations[i] * (1 + (COMM_SLOWDOWN[kind] - 1) * inside / (finish[i] - start[i]))
    return out


@pytest.mark.parametrize(("nodes", "runtime"), [(1, "fused"), (2, "eager")])
def test_stretch_matches_the_scalar_reference_on_a_real_step(nodes, runtime):
    from recsim.engine.analytic import analytic_timing, graph_durations

    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=nodes, batch_size=16384, runtime=runtime)
    plan = make_plan("table_wise", workload, system)
    sim = simulate_training(system, workload, plan, SimulationOptions(comm_interference=False))
    graph = sim.graph
    assert graph is not None
    index = GraphIndex.of(graph)
    from recsim.cost.model import CostModel

    cost = CostModel(system, workload, fused_tables=graph.metadata.get("fused_tables"))
    timing = analytic_timing(index, cost)
    durations = graph_durations(index, cost)
    fast = interfered_durations(index, durations, timing.start, timing.finish)
    slow = _reference(graph, durations, timing.start, timing.finish)
    assert fast == pytest.approx(slow, rel=1e-9, abs=1e-15)
    assert sum(fast) > sum(durations)  # the step's kernels do overlap its collectives


def test_the_chained_index_gives_what_the_plain_one_does():
    # A fused run reads the chained graph's index (step copies by position); the same graph read
    # node by node must get the same stretch.
    from recsim.cost.model import CostModel
    from recsim.engine.analytic import analytic_timing, graph_durations
    from recsim.graph.build import build_training_step

    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    plan = make_plan("table_wise", workload, system)
    step = build_training_step(workload, plan)
    chained = ChainedGraph.lazy(step, 3).index()
    assert chained.copies is not None
    plain = GraphIndex.of(ExecutionGraph(step.ranks, list(ChainedGraph.lazy(step, 3).nodes)))
    cost = CostModel(system, workload, fused_tables=step.metadata.get("fused_tables"))
    timing = analytic_timing(chained, cost)
    durations = graph_durations(chained, cost)
    fast = interfered_durations(chained, durations, timing.start, timing.finish)
    assert fast == interfered_durations(plain, durations, timing.start, timing.finish)
    assert fast != durations


# Times on a grid of quarters, so that kernels often start or end exactly where a window opens or
# closes (the edges of the stretch's test of which kernels may overlap a window at all).
_QUARTERS = st.integers(min_value=0, max_value=24).map(lambda q: q / 4.0)
_SPANS = st.integers(min_value=1, max_value=8).map(lambda q: q / 4.0)


@st.composite
def _kernels_and_windows(draw: st.DrawFn) -> tuple[ExecutionGraph, list[float], np.ndarray, np.ndarray]:
    """Two ranks' GEMMs and collective parts at times of the grid (any times: the stretch reads a
    schedule's, it does not check one), each collective on both ranks at times of its own."""
    gemm = Compute("mm", 1.0, category="gemm", shapes=((4, 4), (4, 4)))
    nodes: list[Node] = []
    times: list[tuple[float, float]] = []
    for k in range(draw(st.integers(min_value=1, max_value=3))):
        op = Collective(CollectiveOp.ALL_REDUCE, f"ar{k}", (0, 1), 1e6)
        for rank in (0, 1):
            nodes.append(Node(len(nodes), rank, f"ar{k}", Stream.COMM, op))
            a = draw(_QUARTERS)
            times.append((a, a + draw(_SPANS)))
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        nodes.append(Node(len(nodes), draw(st.sampled_from((0, 1))), "mm", Stream.COMPUTE, gemm))
        a = draw(_QUARTERS)
        times.append((a, a + draw(_SPANS)))
    start = np.array([a for a, _ in times])
    finish = np.array([b for _, b in times])
    return ExecutionGraph(2, nodes), (finish - start).tolist(), start, finish


@settings(max_examples=200, deadline=None)
@given(case=_kernels_and_windows())
def test_a_kernel_beside_no_window_keeps_its_length_to_the_bit(case):
    # The stretch works out the covered time only of the kernels that may overlap a window (one
    # opens inside them, or they start before the one before them closed): every other keeps its
    # length exactly, and every kernel's stretch is the scalar reference's.
    graph, durations, start, finish = case
    out = interfered_durations(GraphIndex.of(graph), durations, start, finish)
    slow = _reference(graph, durations, start, finish)
    assert out == pytest.approx(slow, rel=1e-12)
    for i, node in enumerate(graph.nodes):
        if slow[i] == durations[i]:  # no overlap (on the grid, an overlap is a quarter at least)
            assert out[i] == durations[i]
        elif node.stream == Stream.COMPUTE:
            assert out[i] > durations[i]


def test_a_broken_duration_stays_on_its_node():
    index = GraphIndex.of(_graph())
    durations = [2.0, 1.0, 2.0, 2.0, 2.0, float("inf"), 2.0]
    start = np.array([0.0, 2.0, 3.0, 1.0, 1.0, 3.0, 0.0])
    finish = start + np.array(durations)
    out = interfered_durations(index, durations, start, finish)
    assert out[5] == float("inf")
    assert out[0] == pytest.approx(2.0 * (1 + (COMM_SLOWDOWN["gemm"] - 1) * 0.5))


def test_interference_never_speeds_a_step_up_and_both_engines_take_it():
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    plan = make_plan("table_wise", workload, system)
    results = {}
    for fidelity in ("analytic", "des"):
        for on in (False, True):
            options = SimulationOptions(fidelity=fidelity, comm_interference=on)
            results[(fidelity, on)] = simulate_training(system, workload, plan, options).result
    for fidelity in ("analytic", "des"):
        free, slowed = results[(fidelity, False)], results[(fidelity, True)]
        assert slowed.iteration_time_s > free.iteration_time_s
        assert sum(slowed.breakdown_s.values()) == pytest.approx(slowed.iteration_time_s)


# ---------------------------------------------------------------------------------- the footprint


def _trace() -> tuple[object, dict]:
    with gzip.open(TRACE, "rt") as handle:
        raw = json.load(handle)
    return parse_kineto(TRACE, raw), raw


def test_the_slowdown_follows_the_nccl_kernels_ctas_on_the_trace():
    # The kernels inside the trace's 24-CTA SendRecvs against those inside its 8-CTA ones (the
    # same protocol, SIMPLE): a third of the CTAs, a fifth (GEMM) to three tenths (other) of the
    # excess. The LL all-reduces, 24 CTAs too, slow their neighbours far more (the module
    # docstring's negative finding: the protocol, not the CTAs nor the bytes).
    trace, raw = _trace()

    def grid(e) -> int:
        return int(e.args["grid"][0])

    def medians(beside) -> dict[str, tuple[int, float]]:
        found = overlap_slowdowns(trace, beside=beside)
        return {k: (len(v), round(statistics.median(v), 3)) for k, v in found.items()}

    wide = medians(lambda e: "SendRecv" in e.name and grid(e) == TRACE_NCCL_CTAS)
    narrow = medians(lambda e: "SendRecv" in e.name and grid(e) <= 8)
    ll = medians(lambda e: "AllReduce_RING_LL" in e.name)
    assert wide == {"gemm": (5, 1.405), "other": (24, 1.667)}
    assert narrow == {"gemm": (6, 1.077), "other": (10, 1.186)}
    assert ll == {"gemm": (3, 2.45), "other": (15, 4.0)}
    # Every NCCL kernel of the trace: 24 CTAs but the short SendRecvs (7-8), on 108 SMs.
    assert {grid(e) for e in trace.gpu if "nccl" in e.name.lower()} == {7, 8, TRACE_NCCL_CTAS}
    assert raw["deviceProperties"][0]["numSms"] == TRACE_SMS
    # The GEMMs' slowdown is their waves on the SMs the 24 CTAs leave them.
    waves = TRACE_SMS / (TRACE_SMS - TRACE_NCCL_CTAS)
    assert waves == pytest.approx(COMM_SLOWDOWN["gemm"], abs=0.005)


def test_footprints_by_hand():
    assert footprint("ring", TRACE_SMS) == 1.0  # the trace's own collectives: as measured
    assert footprint("direct", TRACE_SMS) == 1.0
    assert footprint("collnet", TRACE_SMS) == 1.5  # 36 CTAs
    assert footprint("ring", 132) == 108 / 132
    assert footprint("nvls", 132) == (16 * 108) / (24 * 132)
    assert footprint("nvls", 132) == pytest.approx(0.54545, abs=1e-5)
    # Fewer SMs than CTAs: the collective holds them all, no more.
    assert footprint("ring", 16) == footprint("collnet", 16) == 108 / 24


def test_stretch_by_hand_with_footprints():
    # ``_graph``'s all-reduce over [1, 3) with half the trace's footprint: half the excess.
    index = GraphIndex.of(_graph())
    durations = [2.0, 1.0, 2.0, 2.0, 2.0, 1.0, 2.0]
    start = np.array([0.0, 2.0, 3.0, 1.0, 1.0, 3.0, 0.0])
    finish = start + np.array(durations)
    half = np.full(len(index.op_table.ops), 0.5)
    out = interfered_durations(index, durations, start, finish, half)
    g, o = COMM_SLOWDOWN["gemm"], COMM_SLOWDOWN["other"]
    assert out[0] == 2.0 * (1 + (g - 1) * 0.5 * 0.5)
    assert out[1] == 1.0 * (1 + (o - 1) * 0.5)
    assert out[2:] == durations[2:]
    # Footprint 1 everywhere is the measured stretch, to the bit.
    ones = np.ones(len(index.op_table.ops))
    assert interfered_durations(index, durations, start, finish, ones) == interfered_durations(
        index, durations, start, finish
    )


def test_footprints_of_collectives_at_once_add_up():
    # Two collectives on rank 0, [0, 2) of footprint 0.25 and [1, 3) of footprint 0.5, beside a
    # GEMM over [0, 4): 2 x 0.25 + 2 x 0.5 of its 4 s, weighted.
    gemm = Compute("mm", 1.0, category="gemm", shapes=((4, 4), (4, 4)))
    a = Collective(CollectiveOp.ALL_REDUCE, "a", (0, 1), 1e6)
    b = Collective(CollectiveOp.ALL_TO_ALL, "b", (0, 1), 1e6)
    nodes = [
        Node(0, 0, "gemm", Stream.COMPUTE, gemm),
        Node(1, 0, "a", Stream.COMM, a),
        Node(2, 0, "b", Stream.COMM, b),
    ]
    index = GraphIndex.of(ExecutionGraph(2, nodes))
    weights = np.ones(len(index.op_table.ops))
    weights[index.op_table.number[1]] = 0.25
    weights[index.op_table.number[2]] = 0.5
    start, finish = np.array([0.0, 0.0, 1.0]), np.array([4.0, 2.0, 3.0])
    out = interfered_durations(index, [4.0, 2.0, 2.0], start, finish, weights)
    g = COMM_SLOWDOWN["gemm"]
    assert out[0] == pytest.approx(4.0 * (1 + (g - 1) * (0.25 * 0.5 + 0.5 * 0.5)), rel=1e-15)


@settings(max_examples=100, deadline=None)
@given(case=_kernels_and_windows(), scale=st.sampled_from((0.0, 0.5, 1.0, 2.0)))
def test_a_collective_with_no_footprint_stretches_nothing(case, scale):
    # Footprint 0 (no SMs held): every length stays to the bit; otherwise the excess scales with
    # the footprint (one footprint for every collective: the union's share, times it).
    graph, durations, start, finish = case
    index = GraphIndex.of(graph)
    weights = np.full(len(index.op_table.ops), scale)
    out = interfered_durations(index, durations, start, finish, weights)
    if scale == 0.0:
        assert out == durations
    full = interfered_durations(index, durations, start, finish)
    for got, measured, d in zip(out, full, durations, strict=True):
        assert got - d == pytest.approx((measured - d) * scale, rel=1e-12, abs=1e-15)


def test_collective_footprints_on_an_a100_and_an_h100_node():
    # An A100's collectives hold the trace's share (None: the stretch as measured); an H100's a
    # smaller one, its NVLS all-reduce (inside a node, large) smaller still.
    from recsim.cost.model import CostModel

    ranks = tuple(range(8))
    reduce = Collective(CollectiveOp.ALL_REDUCE, "ar", ranks, 256e6)
    exchange = Collective(CollectiveOp.ALL_TO_ALL, "a2a", ranks, 64e6)
    gemm = Compute("mm", 1.0, category="gemm", shapes=((4, 4), (4, 4)))
    nodes = [Node(0, 0, "ar", Stream.COMM, reduce), Node(1, 0, "a2a", Stream.COMM, exchange)]
    nodes.append(Node(2, 0, "mm", Stream.COMPUTE, gemm))
    index = GraphIndex.of(ExecutionGraph(8, nodes))
    a100, workload = prepare("dgx-a100", "dlrm-dcnv2", nodes=1, batch_size=16384)
    assert collective_footprints(index, CostModel(a100, workload)) is None
    h100, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=1, batch_size=16384)
    cost = CostModel(h100, workload)
    assert cost.collective_algorithm(reduce) == "nvls"
    found = collective_footprints(index, cost)
    assert found is not None
    number = index.op_table.number
    assert found[number[0]] == (16 * 108) / (24 * 132)
    assert found[number[1]] == 108 / 132


def test_collnet_adds_channels_only_where_a_node_holds_several_ranks(monkeypatch):
    # NCCL's ncclTopoPostset adds half the channels again for CollNet where nRanks > nNodes: a
    # group of one rank a node keeps the plain footprint.
    from recsim.cost.model import CostModel

    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384)
    cost = CostModel(system, workload)
    monkeypatch.setattr(cost, "collective_algorithm", lambda op: "collnet")
    spread = Collective(CollectiveOp.ALL_REDUCE, "spread", (0, 8), 64e6)
    packed = Collective(CollectiveOp.ALL_REDUCE, "packed", tuple(range(16)), 64e6)
    gemm = Compute("mm", 1.0, category="gemm", shapes=((4, 4), (4, 4)))
    nodes = [
        Node(0, 0, "spread", Stream.COMM, spread),
        Node(1, 0, "packed", Stream.COMM, packed),
        Node(2, 0, "mm", Stream.COMPUTE, gemm),
    ]
    index = GraphIndex.of(ExecutionGraph(16, nodes))
    found = collective_footprints(index, cost)
    assert found is not None
    number = index.op_table.number
    assert found[number[0]] == 108 / 132
    assert found[number[1]] == (36 * 108) / (24 * 132)
