"""Kahn's rounds in Python release a vertex's only successor outright when that successor has no
other predecessor (``recsim.graph.index._python_rounds``): the same vertices in the same order,
round by round, as the code it replaced (kept below as the reference), on random graphs, chained
steps of real configurations, a deadlock and an empty graph."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from recsim.graph import index as index_module
from recsim.graph.build import build_training_step
from recsim.graph.index import GraphIndex
from recsim.graph.ir import Collective, CollectiveOp, Compute, ExecutionGraph, Node, Stream
from recsim.graph.steps import ChainedGraph, chain_steps
from tests.unit.test_analytic_speed_paths import random_graph
from tests.unit.test_shared_memo_speed_paths import CONFIGS, _setup


def previous_python_rounds(
    dst: npt.NDArray[np.int64],
    out_count: npt.NDArray[np.intp],
    out_end: npt.NDArray[np.intp],
    pending: npt.NDArray[np.intp],
) -> tuple[list[int], list[int]]:
    successors = dst.tolist()
    start = out_end - out_count
    stop = out_end.tolist()
    first = start.tolist()
    left = pending.tolist()
    one = out_count == 1
    only_array = np.full(out_count.size, -1, dtype=np.intp)
    only_array[one] = dst[start[one]]
    only = only_array.tolist()
    frontier: list[int] = np.flatnonzero(pending == 0).tolist()
    order: list[int] = []
    ends: list[int] = []
    while frontier:
        order += frontier
        ends.append(len(order))
        released: list[int] = []
        release = released.append
        for v in frontier:
            t = only[v]
            if t >= 0:
                count = left[t]
                if count == 1:
                    release(t)
                else:
                    left[t] = count - 1
                continue
            for t in successors[first[v] : stop[v]]:
                count = left[t] - 1
                left[t] = count
                if not count:
                    release(t)
        frontier = released
    return order, ends


def assert_same_python_rounds(index: GraphIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both give the same order and round ends, bit for bit, on the arrays ``index`` makes."""
    seen: list[tuple[np.ndarray, ...]] = []
    current = index_module._python_rounds

    def spy(*arrays):
        seen.append(tuple(a.copy() for a in arrays))
        return current(*arrays)

    monkeypatch.setattr(index_module, "_PYTHON_ROUNDS_EDGES", 1 << 30)
    monkeypatch.setattr(index_module, "_python_rounds", spy)
    index.kahn_rounds  # noqa: B018 (worked out once, through the spy)
    assert len(seen) == 1
    order, ends, _chained = current(*seen[0])  # which rounds chain: ``test_chain_round_speed_paths``
    want = previous_python_rounds(*seen[0])
    assert (order, ends) == want


@pytest.mark.parametrize("seed", range(12))
def test_python_rounds_match_the_previous_code_on_random_graphs(seed, monkeypatch):
    graph = random_graph(seed, ranks=2 + seed % 5, per_rank=10 + 7 * seed)
    for g in (graph, chain_steps(graph, 3)):
        with monkeypatch.context() as patch:
            assert_same_python_rounds(GraphIndex.of(g), patch)


def test_python_rounds_match_the_previous_code_with_a_cycle_and_when_empty(monkeypatch):
    def c(i, rank, key):
        return Node(i, rank, key, Stream.COMM, Collective(CollectiveOp.ALL_REDUCE, key, (0, 1), 8.0))

    deadlocked = ExecutionGraph(2, [c(0, 0, "a"), c(1, 0, "b"), c(2, 1, "b"), c(3, 1, "a")])
    for g in (deadlocked, ExecutionGraph(1, [])):
        with monkeypatch.context() as patch:
            assert_same_python_rounds(GraphIndex.of(g), patch)


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_python_rounds_match_the_previous_code_on_chained_steps(
    name, nodes, plan_name, runtime, fold, monkeypatch
):
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    assert_same_python_rounds(ChainedGraph.lazy(step, 3).index(), monkeypatch)


def test_python_rounds_match_the_previous_code_with_side_lanes(monkeypatch):
    """The fused runtime's side lanes (``LANE_INDEX``'s index sorts, ``LANE_WGRAD``'s weight
    gradients): a node whose only successor waits for a side-lane node too (read without a slice,
    ``_python_rounds``' ``-2 - t``), in the same order as the previous code, on the step graph and on
    chained steps."""
    from recsim.graph.build import LANE_INDEX, LANE_WGRAD

    _, workload, plan, memo, options = _setup(*CONFIGS[0])
    step = build_training_step(workload, plan, options, memo.shard_ops)
    lanes = {n.lane for n in step.nodes if n.stream == Stream.COMPUTE}
    assert {LANE_INDEX, LANE_WGRAD} <= lanes  # the fused runtime's side lanes are in the graph
    for index in (GraphIndex.of(step), ChainedGraph.lazy(step, 3).index()):
        with monkeypatch.context() as patch:
            assert_same_python_rounds(index, patch)
    # Each rank: a chain of eight kernels and a side-lane kernel after the first, which the fourth
    # waits for too; the side-lane kernel's and the third kernel's one successor (the fourth) then
    # has two predecessors, the case read without a slice.
    nodes: list[Node] = []
    for r in range(3):
        base = len(nodes)
        side = base + 8
        for i in range(8):
            deps = () if i == 0 else (base + i - 1, side) if i == 3 else (base + i - 1,)
            nodes.append(Node(base + i, r, f"k{i}", Stream.COMPUTE, Compute("x"), deps))
        nodes.append(Node(side, r, "w", Stream.COMPUTE, Compute("x"), (base,), lane=LANE_WGRAD))
    index = GraphIndex.of(ExecutionGraph(3, nodes))
    with monkeypatch.context() as patch:
        assert_same_python_rounds(index, patch)
