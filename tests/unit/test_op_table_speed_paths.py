"""An index's ops as their distinct ops and each position's among them (``OpTable``), read by the
durations, the interference stretch, the whole all-to-alls, the index's collectives and the
window's host bytes and lookups, give exactly what the code they replaced gave (kept below as the
reference): each was found again by a pass over every node. Compared bit for bit on built and
chained graphs of real configurations and on random graphs, with ties, zeros of both signs,
infinities and NaN among the durations and times."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from recsim.api import make_plan, prepare
from recsim.cost.interference import _COMPUTE, _slowdown_of, stretched_lengths
from recsim.cost.model import CostModel
from recsim.engine import simulate as sim
from recsim.engine.analytic import graph_durations, graph_lengths
from recsim.engine.simulate import SimulationOptions, WindowOps, simulate_training
from recsim.graph.build import build_training_step
from recsim.graph.index import GraphIndex, OpTable
from recsim.graph.ir import (
    Collective,
    Compute,
    Embedding,
    ExecutionGraph,
    Host,
    Node,
    Op,
    Stream,
    Transfer,
)
from recsim.graph.schedule import asap_timing
from recsim.graph.steps import ChainedGraph, chain_steps
from tests.unit.test_analytic_speed_paths import random_graph
from tests.unit.test_shared_memo_speed_paths import CONFIGS, _model, _setup

# ------------------------------------------------------------------------------- the references


def previous_op_durations(cost: CostModel, ops: Sequence[Op], uneven_parts: bool) -> list[float]:
    """``CostModel._op_durations`` before the table (verbatim)."""
    from recsim.graph.ir import is_uneven_all_to_all

    by_op_id = cost._by_op_id
    keys = list(map(id, ops))
    found: dict[int, float] = {}
    for key, op in dict(zip(keys, ops, strict=True)).items():
        hit = by_op_id.get(key)
        if hit is not None and hit[0] is op:
            found[key] = hit[1]
            continue
        if not uneven_parts and is_uneven_all_to_all(op):
            found[key] = 0.0
            continue
        value = cost._op_duration(op)
        by_op_id[key] = (op, value)
        found[key] = value
    return list(map(found.__getitem__, keys))


def previous_graph_durations(index: GraphIndex, cost: CostModel) -> list[float]:
    """``recsim.engine.analytic.graph_durations`` before the table: every op's duration by
    position, the uneven all-to-alls found by a test per node (``_whole_all_to_alls`` without a
    table), the steps' lists repeated."""
    ops = index.source_ops
    node_at = index.copies[0].__getitem__ if index.copies is not None else index.nodes.__getitem__
    durations = previous_op_durations(cost, ops, uneven_parts=False)
    cost._whole_all_to_alls(ops, node_at, durations, False, index.kept_ranks)
    return durations * (index.copies[1] if index.copies is not None else 1)


def previous_slow(index: GraphIndex) -> np.ndarray:
    """The per-step-node slowdowns ``stretched_lengths`` worked out before the table (verbatim)."""
    ops = index.source_ops
    per_node = len(ops)
    keys = list(map(id, ops))
    slowdown = {key: _slowdown_of(op) for key, op in dict(zip(keys, ops, strict=True)).items()}
    on_compute = np.array([key[1] == _COMPUTE for key in index.queue_keys], dtype=bool)
    return np.where(
        on_compute[index.queue_array[:per_node]],
        np.fromiter(map(slowdown.__getitem__, keys), dtype=np.float64, count=per_node),
        1.0,
    )


def previous_host_bytes(ops: Sequence[Op], counts: Sequence[int]) -> float:
    """``recsim.engine.simulate._host_bytes`` before the table (verbatim, over every position)."""
    values: list[float] = []
    for op, count in zip(ops, counts, strict=True):
        if count and isinstance(op, (Host, Transfer)):
            values.extend([op.bytes] * count)
    return math.fsum(values)


def previous_window_ops(index: GraphIndex, window: Any, classes: Any) -> tuple[list[Op], list[int]]:
    """``recsim.engine.simulate._window_ops`` before the table (verbatim)."""
    all_ops, all_ranks = index.source_ops, index.source_ranks
    positions = window.positions_in(index)
    if positions is None or index.copies is None:
        position = index.position
        at = [position[i] for i in window.node_ids]
        if index.copies is not None:
            at = [p % len(all_ops) for p in at]
        ops = [all_ops[p] for p in at]
        ranks: Sequence[int] = [all_ranks[p] for p in at]
        counts = [1] * len(ops)
    else:
        ops, ranks = list(all_ops), all_ranks
        counts = np.bincount(positions % len(ops), minlength=len(ops)).tolist()
    if classes:
        counts = [c * len(classes[r]) if r in classes else c for r, c in zip(ranks, counts, strict=True)]
    return ops, counts


# ------------------------------------------------------------------------------- the table


def _assert_table_of(ops: Sequence[object], table: OpTable) -> None:
    """The distinct objects in order of first appearance, and each position's number."""
    expected = list(dict(zip(map(id, ops), ops, strict=True)).values())
    assert len(table.ops) == len(expected) and all(a is b for a, b in zip(table.ops, expected, strict=True))
    assert table.number.dtype == np.intp and table.number.shape == (len(ops),)
    assert all(table.ops[k] is op for k, op in zip(table.number.tolist(), ops, strict=True))


@pytest.mark.parametrize("seed", range(10))
def test_op_table_numbers_the_distinct_objects_by_first_appearance(seed):
    rng = random.Random(seed)
    # Equal values made apart stay apart (identity, not value), and repeats come in any order.
    pool: list[object] = [Compute("x") for _ in range(rng.randint(1, 12))]
    pool += [Host("data_loading", 1.0), Host("data_loading", 1.0), -0.0, 0.0, math.nan]
    ops = [rng.choice(pool) for _ in range(rng.randint(0, 300))]
    _assert_table_of(ops, OpTable.of(ops))  # type: ignore[arg-type]


def test_op_table_of_nothing_and_of_one():
    empty = OpTable.of([])
    assert empty.ops == [] and empty.number.size == 0 and empty.number.dtype == np.intp
    op = Compute("x")
    _assert_table_of([op, op, op], OpTable.of([op, op, op]))


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_index_tables_are_their_source_ops(name, nodes, plan_name, runtime, fold):
    """The table the step index keeps (made with it) and the chained index's (handed on) are
    those of their ops, and the collectives the index found through it are every collective."""
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    for index in (
        GraphIndex.of(step),
        ChainedGraph.lazy(step, 3).index(),
        GraphIndex.of(chain_steps(step, 3)),
    ):
        _assert_table_of(index.source_ops, index.op_table)
        ops = index.source_ops if index.copies is None else [n.op for n in chain_steps(step, 3).nodes]
        expected = [i for i, op in enumerate(ops) if isinstance(op, Collective)]
        assert index.collective_positions == expected


# ------------------------------------------------------------------------------- the durations


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
@pytest.mark.parametrize("shared", [False, True])
def test_graph_lengths_are_the_previous_durations(name, nodes, plan_name, runtime, fold, shared):
    """Costed per distinct op and spread by position, with the whole all-to-alls found among the
    distinct ops: the previous durations, bit for bit, chained or not, with or without a memo
    (fresh models each: neither finds the other's costs by identity)."""
    system, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    for index in (
        ChainedGraph.lazy(step, 3).index(),
        GraphIndex.of(step),
        GraphIndex.of(chain_steps(step, 2)),
    ):
        expected = previous_graph_durations(index, _model(system, workload, step, memo if shared else None))
        got = graph_lengths(index, _model(system, workload, step, memo if shared else None))
        assert got.dtype == np.float64 and got.tobytes() == np.asarray(expected, dtype=np.float64).tobytes()
        listed = graph_durations(index, _model(system, workload, step, memo if shared else None))
        assert repr(listed) == repr(expected)


def test_graph_lengths_of_graphs_without_a_cost_to_share():
    """An empty graph and a graph of one node: what the previous code gave."""
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=1, precision="fp16")
    for graph in (
        ExecutionGraph(1, []),
        ExecutionGraph(1, [Node(0, 0, "k", Stream.COMPUTE, Compute("x", flops=1e9))]),
    ):
        index = GraphIndex.of(graph)
        expected = previous_graph_durations(index, CostModel(system, workload))
        got = graph_lengths(index, CostModel(system, workload))
        assert got.tolist() == expected and got.dtype == np.float64


# ------------------------------------------------------------------------------- the stretch


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_stretch_slowdowns_from_the_table_are_the_previous_ones(name, nodes, plan_name, runtime, fold):
    system, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    for index in (ChainedGraph.lazy(step, 3).index(), GraphIndex.of(step)):
        table = index.op_table
        per_node = table.number.size
        slowdown = np.fromiter(map(_slowdown_of, table.ops), dtype=np.float64, count=len(table.ops))
        on_compute = np.array([key[1] == _COMPUTE for key in index.queue_keys], dtype=bool)
        got = np.where(on_compute[index.queue_array[:per_node]], slowdown[table.number], 1.0)
        assert got.tobytes() == previous_slow(index).tobytes()
        # End to end, on the schedule of the graph's own durations.
        lengths = graph_lengths(index, _model(system, workload, step, memo))
        timing = asap_timing(index, lengths)
        stretched = stretched_lengths(index, lengths, timing.start, timing.finish)
        expected = previous_stretched_lengths(index, lengths, timing.start, timing.finish)
        assert stretched is not None and expected is not None and stretched.tobytes() == expected.tobytes()


def _special_times(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    choices = np.array([0.0, -0.0, 1.0, 0.5, 1e-3, math.inf, math.nan, 2.5e-4])
    start = rng.choice(choices, size, p=[0.1, 0.05, 0.2, 0.2, 0.2, 0.02, 0.02, 0.21])
    with np.errstate(invalid="ignore"):
        finish = start + rng.choice(choices, size, p=[0.1, 0.05, 0.2, 0.2, 0.2, 0.02, 0.02, 0.21])
    return start, finish


@pytest.mark.parametrize("seed", range(8))
def test_stretch_on_random_graphs_matches_the_previous_slowdowns(seed):
    """Random graphs with kernels beside collectives, ordinary and special times: the stretch
    from the table's slowdowns equals the previous per-node ones, through the whole function."""
    rng = np.random.default_rng(seed)
    graph = random_graph(seed, ranks=2 + seed % 4)
    kinds = [
        Compute("gemm", flops=1.0, category="gemm"),
        Compute("y"),
        Embedding("t", "forward", 1, 1, "fp32", 1, 1.0),
    ]
    nodes = [n if isinstance(n.op, Collective) else replace(n, op=kinds[n.id % 3]) for n in graph.nodes]
    for g in (ExecutionGraph(graph.ranks, nodes), chain_steps(ExecutionGraph(graph.ranks, nodes), 2)):
        index = GraphIndex.of(g)
        assert np.array_equal(
            np.where(
                np.array([k[1] == _COMPUTE for k in index.queue_keys])[index.queue_array],
                np.fromiter(map(_slowdown_of, index.op_table.ops), np.float64)[index.op_table.number],
                1.0,
            ),
            previous_slow(index),
        )
        lengths = rng.random(index.size)
        for start, finish in (
            (asap_timing(index, lengths).start, asap_timing(index, lengths).finish),
            _special_times(rng, index.size),
        ):
            with np.errstate(invalid="ignore"):
                got = stretched_lengths(index, lengths, start, finish)
                expected = previous_stretched_lengths(index, lengths, start, finish)
            assert (got is None) == (expected is None)
            if got is not None:
                assert got.tobytes() == expected.tobytes()


def previous_stretched_lengths(
    index: GraphIndex,
    lengths: npt.NDArray[np.float64],
    start: npt.NDArray[np.float64],
    finish: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64] | None:
    """``recsim.cost.interference.stretched_lengths`` before the table (verbatim)."""
    # The step nodes' ops (``GraphIndex.source_ops``: a built step graph's columns, no node made).
    ops = index.source_ops
    steps = index.copies[1] if index.copies is not None else 1
    per_node = len(ops)
    # Per step node: its slowdown (1 for what is not a kernel on a compute stream); the copies of
    # a chained graph repeat it step by step. The ops are few and shared by the ranks' nodes (a
    # dense layer's by every rank): each op's slowdown is worked out once, by identity (the nodes
    # keep their ops alive meanwhile), and whether a node is on a compute stream is its queue's.
    keys = list(map(id, ops))
    slowdown = {key: _slowdown_of(op) for key, op in dict(zip(keys, ops, strict=True)).items()}
    on_compute = np.array([key[1] == _COMPUTE for key in index.queue_keys], dtype=bool)
    slow = np.where(
        on_compute[index.queue_array[:per_node]],
        np.fromiter(map(slowdown.__getitem__, keys), dtype=np.float64, count=per_node),
        1.0,
    )
    # The collectives: the index's (every ``Collective`` node, all steps), not read off the ops again.
    collective = np.zeros(per_node * steps, dtype=bool)
    collective[index.collective_positions_array] = True
    if not collective.any() or not (slow > 1.0).any():
        return None
    slow = np.tile(slow, steps)
    keys = index.queue_keys
    rank_of_queue = np.array([key[0] for key in keys], dtype=np.int64)
    rank = rank_of_queue[index.queue_array]
    # Each rank's collective windows, merged into disjoint intervals on one time line: rank ``r``'s
    # times are shifted by ``r x span`` so that one sort and one running maximum serve all ranks.
    finite = np.isfinite(start) & np.isfinite(finish)
    if not finite.all():  # a broken duration stays broken; it must not spoil the other ranks
        collective &= finite
        slow = np.where(finite, slow, 1.0)
    if not collective.any():
        return None
    low = float(min(start[finite].min(), 0.0))
    # Twice the schedule's extent (not a fixed second more): the shift costs a rank's times the
    # bits of ``rank x span``, so the smaller it is the less rounding grows with the rank number
    # (a reviewer found 1e-9 at 4,096 ranks). The nanosecond only keeps ranks apart on a schedule
    # of no length, where every interval is empty anyway.
    span = 2.0 * (float(finish[finite].max()) - low) + 1e-9
    shift = np.where(finite, (rank - rank.min()).astype(np.float64) * span - low, 0.0)
    a = start[collective] + shift[collective]
    b = finish[collective] + shift[collective]
    order = np.argsort(a, kind="stable")
    a, b = a[order], b[order]
    reach = np.maximum.accumulate(b)
    fresh = np.ones(a.size, dtype=bool)
    fresh[1:] = a[1:] > reach[:-1]
    first = np.flatnonzero(fresh)
    merged_a = a[first]
    merged_b = np.maximum.reduceat(b, first) if first.size else b[:0]
    # Union length before each merged interval, to read the covered time of any window in two
    # binary searches.
    covered = np.concatenate(([0.0], np.cumsum(merged_b - merged_a)))

    def covered_before(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        i = np.searchsorted(merged_a, t, side="right")  # intervals starting at or before t
        inside = np.clip(t - merged_a[np.maximum(i - 1, 0)], 0.0, None)
        inside = np.minimum(inside, (merged_b - merged_a)[np.maximum(i - 1, 0)])
        return np.where(i > 0, covered[np.maximum(i - 1, 0)] + inside, 0.0)

    base = lengths
    kernel = np.flatnonzero((slow > 1.0) & (finish > start))
    s = start[kernel] + shift[kernel]
    e = finish[kernel] + shift[kernel]
    # Lengths from the unshifted times (the shift is only for finding each rank's windows).
    length = finish[kernel] - start[kernel]
    share = np.clip((covered_before(e) - covered_before(s)) / length, 0.0, 1.0)
    out = base.copy()
    out[kernel] = base[kernel] * (1.0 + (slow[kernel] - 1.0) * share)
    assert out.size == per_node * steps
    return out


# ------------------------------------------------------------------------------- the window's tail


@pytest.mark.parametrize("seed", range(20))
def test_host_bytes_per_distinct_op_sum_the_same_values(seed):
    """Each distinct op's bytes, its total count times: the same multiset of values as every
    position's, so ``fsum`` gives the same float."""
    rng = random.Random(seed)
    pool: list[Op] = []
    for _ in range(rng.randint(1, 15)):
        size = rng.choice([0.0, -0.0, 1e-300, 3.0, 0.1, 1e15]) * rng.random() ** rng.choice([1, 8])
        size *= rng.choice([1.0, 1e3, -1.0])
        pool.append(
            rng.choice(
                [Host("data_loading", size), Transfer("host", "hbm", size), Compute("x", bytes_read=size)]
            )
        )
    ops = [rng.choice(pool) for _ in range(rng.randint(0, 200))]
    counts = [rng.choice([0, 1, 2, 3, 27, 101]) for _ in ops]
    table = OpTable.of(ops)
    per_op = np.bincount(table.number, weights=counts, minlength=len(table.ops)).astype(np.int64).tolist()
    got = sim._host_bytes(WindowOps(ops, counts, table, per_op))
    assert repr(got) == repr(previous_host_bytes(ops, counts))
    assert repr(sim._host_bytes((ops, counts))) == repr(got)  # a plain pair: every position


TAIL_CASES: list[tuple[str, str, int, str, dict[str, Any]]] = [
    ("dgx-h100", "dlrm-dcnv2", 16, "table_wise", {"fold_ranks": True}),
    ("dgx-h100", "dlrm-dcnv2", 4, "table_wise", {}),
    ("dgx-h100", "dlrm-dcnv2", 4, "table_wise", {"fidelity": "des", "steps": 1}),
    ("dgx-a100", "rmc1", 2, "data_parallel", {"fold_ranks": True}),
    ("dgx-a100", "rmc1", 1, "table_wise", {"tier": "ddr"}),
    ("dgx-a100", "rmc1", 2, "table_wise", {"tier": "uvm_caching:0.2", "fold_ranks": True}),
]


@pytest.mark.parametrize(("system_name", "workload_name", "nodes", "strategy", "extra"), TAIL_CASES)
def test_window_ops_host_bytes_and_tiers_are_the_previous_ones(
    monkeypatch: pytest.MonkeyPatch,
    system_name: str,
    workload_name: str,
    nodes: int,
    strategy: str,
    extra: dict[str, Any],
) -> None:
    """In a whole evaluation: the window's ops and counts as before, each distinct op's total the
    sum of its positions' counts, the host bytes and the tiers' activity as the previous code
    gives them from the previous window ops (off-HBM lookups included: ``ddr``, UVM, NMP)."""
    system, workload = prepare(system_name, workload_name, nodes=nodes)
    plan = make_plan(strategy, workload, system)
    extra = dict(extra)
    tier = extra.pop("tier", None)
    if tier is not None:
        plan = replace(plan, shards=tuple(replace(s, tier=tier) for s in plan.shards))
    window_ops_of, tier_activity = sim._window_ops, sim._tier_activity
    checked: list[str] = []

    def spy_tiers(timing: Any, window: Any, cost: Any, system: Any, window_ops: Any) -> Any:
        index = timing.index
        classes = asked[-1]
        ops, counts = previous_window_ops(index, window, classes)
        assert isinstance(window_ops, WindowOps)
        assert all(a is b for a, b in zip(window_ops.ops, ops, strict=True)) and window_ops.counts == counts
        if window_ops.table is not None:
            assert window_ops.table is index.op_table
            totals = [0] * len(window_ops.table.ops)
            for k, count in zip(window_ops.table.number.tolist(), counts, strict=True):
                totals[k] += count
            assert window_ops.per_op == totals
        assert repr(sim._host_bytes(window_ops)) == repr(previous_host_bytes(ops, counts))
        out = tier_activity(timing, window, cost, system, window_ops)
        # The previous path: every position of the plain pair.
        assert out == tier_activity(timing, window, cost, system, (ops, counts))
        checked.append("tiers")
        return out

    asked: list[Any] = []

    def spy_window_ops(index: Any, window: Any, classes: Any) -> Any:
        asked.append(classes)
        return window_ops_of(index, window, classes)

    monkeypatch.setattr(sim, "_window_ops", spy_window_ops)
    monkeypatch.setattr(sim, "_tier_activity", spy_tiers)
    result = simulate_training(system, workload, plan, SimulationOptions(**extra)).result
    assert result.status == "ok" and checked == ["tiers"]
