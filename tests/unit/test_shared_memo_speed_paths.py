"""The fast paths of an analytic evaluation that shares a ``CostMemo`` give exactly what the code
they replaced gave (kept below as the reference): whole all-to-alls keyed by value in the memo,
and Kahn's rounds with fewer array calls per round, then worked out in Python and renumbered in
release order (the same rounds, and the same schedule bit for bit); whole all-to-alls and the
critical path's categories read off a built graph's columns rather than nodes made one by one.
Each is compared bit for bit on built graphs of real configurations (folded and not, several plans
and runtimes) and, where it matters, on random graphs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from recsim.api import make_plan, prepare
from recsim.cost.collectives import collective_time_s
from recsim.cost.interference import interfered_durations, stretched_lengths
from recsim.cost.memo import CostMemo
from recsim.cost.model import CostModel, category_of, category_of_op
from recsim.engine.analytic import graph_durations
from recsim.engine.timeline import critical_path, step_window
from recsim.graph import index as index_module
from recsim.graph.build import BuildOptions, build_training_step
from recsim.graph.index import GraphIndex, KahnRounds
from recsim.graph.ir import Collective, CollectiveOp, Compute, Embedding, ExecutionGraph, Node, Stream
from recsim.graph.schedule import _vertex_lengths, asap_timing
from recsim.graph.shard_ops import ShardOps
from recsim.graph.steps import ChainedGraph, chain_steps
from tests.unit.test_analytic_speed_paths import random_graph

# (frontier, targets, slot) per round, and the waiting vertices.
PreviousRounds = tuple[tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...], np.ndarray]

CONFIGS = [
    ("dgx-h100", 16, "table_wise", "fused", True),
    ("dgx-h100", 2, "row_wise", "fused", False),
    ("dgx-h100", 2, "auto", "eager", True),
    ("dgx-a100", 2, "table_wise", "cuda_graphs", False),
]


def _setup(name: str, nodes: int, plan_name: str, runtime: str, fold: bool):
    system, workload = prepare(
        name,
        "dlrm-dcnv2",
        nodes=nodes,
        batch_size=55296 if nodes == 16 else None,
        precision="fp16",
        overrides=[f"workload.training.runtime={runtime}"],
    )
    plan = make_plan(plan_name, workload, system)
    memo = CostMemo(system, workload)
    options = BuildOptions(validate_plan=False, ranks_per_node=system.node.num_accelerators, fold_ranks=fold)
    return system, workload, plan, memo, options


def _model(system, workload, graph: ExecutionGraph, memo: CostMemo | None) -> CostModel:
    metadata = graph.metadata
    return CostModel(
        system,
        workload,
        fused_tables=metadata.get("fused_tables"),
        table_slices=metadata.get("table_slices"),
        memo=memo,
        folded_parts=metadata.get("folded_parts"),
    )


def _wholes(cost: CostModel, nodes: Sequence[Node]) -> list[list[Collective]]:
    """The parts, in group order, of each uneven all-to-all of ``nodes``."""
    by_key: dict[str, list[Node]] = {}
    for n in nodes:
        if type(n.op) is Collective and n.op.op is CollectiveOp.ALL_TO_ALL:
            by_key.setdefault(n.op.key, []).append(n)
    out = []
    for members in by_key.values():
        if any(m.op.send_bytes is not None for m in members):
            parts = cost.ordered_parts(members)
            assert parts is not None
            out.append(parts)
    return out


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_whole_all_to_alls_keyed_by_value_in_a_memo_cost_what_they_did(name, nodes, plan_name, runtime, fold):
    """A memo's whole all-to-all (``CostModel._whole_key``) costs what the model without a memo
    (identity-keyed, the code before) and the plain collective cost give, in a first evaluation
    and in later ones that find it in the memo; different matrices get different keys."""
    system, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    keys = set()
    for _ in range(3):  # each evaluation builds its own graph: new parts, new tuples
        step = build_training_step(workload, plan, options, memo.shard_ops)
        shared = _model(system, workload, step, memo)
        alone = _model(system, workload, step, None)
        wholes = _wholes(shared, step.nodes)
        assert wholes
        for parts in wholes:
            expected = collective_time_s(list(parts), alone.topology)
            assert alone.all_to_all_s(parts) == expected
            assert shared.all_to_all_s(parts) == expected
            assert shared.all_to_all_s(parts) == expected  # found in the memo
        assert shared.graph_durations_s(step.nodes) == alone.graph_durations_s(step.nodes)
        keys.add(tuple(shared._whole_key(parts) for parts in wholes))
    assert len(keys) == 1  # the same matrices, evaluation after evaluation
    (found,) = keys
    assert len(set(found)) == len(found)  # no two matrices of a step share a key


def test_whole_key_tells_parts_apart_by_every_field_but_their_name():
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=1, precision="fp16")
    cost = CostModel(system, workload, memo=CostMemo(system, workload))
    group = tuple(range(4))
    send = (1.0, 2.0, 3.0, 4.0)
    part = Collective(CollectiveOp.ALL_TO_ALL, "a", group, 10.0, "fp16", send, send)
    base = cost._whole_key([part] * 4)
    assert cost._whole_key([replace(part, key="b")] * 4) == base
    for changed in (
        replace(part, group=(0, 1, 2, 5)),
        replace(part, bytes=11.0),
        replace(part, dtype="fp32"),
        replace(part, send_bytes=(1.0, 2.0, 3.0, 5.0)),
        replace(part, recv_bytes=(1.0, 2.0, 3.0, 5.0)),
        replace(part, algorithm="pairwise"),
        replace(part, op=CollectiveOp.ALL_GATHER),
    ):
        assert cost._whole_key([part, part, changed, part]) != base
        assert cost._whole_key([changed] * 4) != base


# ------------------------------------------------------------------------------- Kahn's rounds


def previous_kahn_rounds(index: GraphIndex) -> PreviousRounds:
    """``recsim.graph.index._kahn_rounds`` before its rounds took their ranges from one counting
    array (an ``arange`` and a second ``repeat`` fewer per round), and before the rounds were
    worked out in Python and renumbered: (frontier, targets, slot) per round, and the waiting."""
    vertices = index.vertices
    vertex = index.vertex_array
    prev = index.prev_in_queue_array
    queued = np.flatnonzero(prev >= 0)
    src = np.concatenate((vertex[index.dep_flat_array], vertex[prev[queued]]))
    dst = np.concatenate((vertex[index.dep_child_array], vertex[queued]))
    keep = src != dst
    keys = src[keep].astype(np.int64) * vertices + dst[keep]
    keys.sort(kind="stable")
    if keys.size:
        distinct = np.empty(keys.size, dtype=bool)
        distinct[0] = True
        np.not_equal(keys[1:], keys[:-1], out=distinct[1:])
        keys = keys[distinct]
    src, dst = keys // vertices, keys % vertices
    pending = np.bincount(dst, minlength=vertices)
    out_count = np.bincount(src, minlength=vertices)
    out_start = np.cumsum(out_count) - out_count
    rounds = []
    frontier = np.flatnonzero(pending == 0)
    claim = np.full(vertices, -1, dtype=np.intp)
    while frontier.size:
        counts = out_count[frontier]
        edges = np.repeat(out_start[frontier] - (np.cumsum(counts) - counts), counts)
        edges += np.arange(edges.size)
        targets = dst[edges]
        rounds.append((frontier, targets, np.repeat(np.arange(frontier.size), counts)))
        np.subtract.at(pending, targets, 1)
        ready = targets[pending[targets] == 0]
        slots = np.arange(ready.size)
        claim[ready] = slots
        frontier = ready[claim[ready] == slots]
    return tuple(rounds), np.flatnonzero(pending > 0)


def previous_asap_timing(index: GraphIndex, durations: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``recsim.graph.schedule.asap_timing``'s times before the rounds were renumbered (verbatim,
    on ``previous_kahn_rounds``): (start, finish) by position."""
    rounds, _ = previous_kahn_rounds(index)
    length = _vertex_lengths(index, durations)
    begin = np.full(index.vertices, -math.inf)
    finish = np.zeros(index.vertices)
    if rounds:
        begin[rounds[0][0]] = 0.0
    for frontier, targets, slot in rounds:
        ends = begin[frontier] + length[frontier]
        finish[frontier] = ends
        if targets.size:
            np.fmax.at(begin, targets, ends[slot])
    vertex = index.vertex_array
    return begin[vertex], finish[vertex]


def assert_same_rounds(got: KahnRounds, want: PreviousRounds) -> None:
    """The same rounds (a round's vertices in any order: their release order within a round changes
    no time), the same edges out of each, and the same waiting vertices."""
    rounds, waiting = want
    assert len(got.ends) == len(rounds) == len(got.sources) == len(got.targets)
    start = 0
    for end, sources, targets, (frontier, old_targets, slot) in zip(
        got.ends, got.sources, got.targets, rounds, strict=True
    ):
        released = got.order[start:end]
        assert sorted(released.tolist()) == sorted(frontier.tolist())
        assert np.array_equal(got.rank[released], np.arange(start, end))
        assert ((sources >= start) & (sources < end)).all()
        edges = sorted(zip(got.order[sources].tolist(), got.order[targets].tolist(), strict=True))
        assert edges == sorted(zip(frontier[slot].tolist(), old_targets.tolist(), strict=True))
        start = end
    assert got.waiting.dtype == waiting.dtype and np.array_equal(got.waiting, waiting)


def assert_same_timing(index: GraphIndex, seed: int) -> None:
    """``asap_timing`` gives the previous code's times bit for bit, with ties, zeros of both
    signs, infinities and NaN among the durations."""
    rng = np.random.default_rng(seed)
    choices = np.array([0.0, -0.0, 1.0, 0.5, 1e-3, math.inf, math.nan, 2.5e-4])
    weights = [0.05, 0.05, 0.2, 0.2, 0.2, 0.02, 0.02, 0.26]
    for durations in (rng.random(index.size).tolist(), rng.choice(choices, index.size, p=weights).tolist()):
        with np.errstate(invalid="ignore"):  # inf + -inf: NaN, in both
            timing = asap_timing(index, durations)
            start, finish = previous_asap_timing(index, durations)
        assert timing.start.tobytes() == start.tobytes()
        assert timing.finish.tobytes() == finish.tobytes()


# Kahn's rounds in Python (small graphs) and in numpy (large ones, here every graph).
ROUNDS_PATHS = pytest.mark.parametrize("python_edges", [index_module._PYTHON_ROUNDS_EDGES, -1])


@ROUNDS_PATHS
@pytest.mark.parametrize("seed", range(10))
def test_kahn_rounds_match_the_previous_code_on_random_graphs(seed, python_edges, monkeypatch):
    monkeypatch.setattr(index_module, "_PYTHON_ROUNDS_EDGES", python_edges)
    graph = random_graph(seed, ranks=2 + seed % 5, per_rank=10 + 7 * seed)
    for g in (graph, chain_steps(graph, 3)):
        index = GraphIndex.of(g)
        assert_same_rounds(index.kahn_rounds, previous_kahn_rounds(index))
        assert_same_timing(index, seed)


@ROUNDS_PATHS
def test_kahn_rounds_match_the_previous_code_with_a_cycle_and_when_empty(python_edges, monkeypatch):
    monkeypatch.setattr(index_module, "_PYTHON_ROUNDS_EDGES", python_edges)

    def c(i, rank, key):
        return Node(i, rank, key, Stream.COMM, Collective(CollectiveOp.ALL_REDUCE, key, (0, 1), 8.0))

    deadlocked = ExecutionGraph(2, [c(0, 0, "a"), c(1, 0, "b"), c(2, 1, "b"), c(3, 1, "a")])
    for g in (deadlocked, ExecutionGraph(1, [])):
        index = GraphIndex.of(g)
        assert_same_rounds(index.kahn_rounds, previous_kahn_rounds(index))
    assert GraphIndex.of(deadlocked).kahn_rounds.waiting.size


@ROUNDS_PATHS
@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_kahn_rounds_match_the_previous_code_on_chained_steps(
    name, nodes, plan_name, runtime, fold, python_edges, monkeypatch
):
    monkeypatch.setattr(index_module, "_PYTHON_ROUNDS_EDGES", python_edges)
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    index = ChainedGraph.lazy(step, 3).index()
    assert_same_rounds(index.kahn_rounds, previous_kahn_rounds(index))
    assert np.array_equal(index.kahn_rounds.at, index.kahn_rounds.rank[index.vertex_array])
    assert_same_timing(index, nodes)


# ------------------------------------------------------------- reading ops and ranks, not nodes


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_costs_and_critical_path_read_off_the_columns_match_the_nodes(name, nodes, plan_name, runtime, fold):
    """Whole all-to-alls costed from the columns' ops and ranks (``_whole_all_to_alls`` given
    ``ranks``) and the critical path's categories read off the ops (``op_category``) give what
    the member and path nodes, made one by one, gave."""
    system, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    chained = ChainedGraph.lazy(step, 3)
    index = chained.index()
    assert index.kept_ranks is not None
    step_nodes, steps = index.copies
    # Fresh models: neither finds the other's whole all-to-alls.
    columns = graph_durations(index, _model(system, workload, step, None))
    made = _model(system, workload, step, None).graph_durations_of(index.source_ops, step_nodes.__getitem__)
    assert repr(columns) == repr(made * steps)
    timing = asap_timing(index, columns)
    schedule = timing.schedule()
    window = step_window(chained, schedule, timing)
    by_node = critical_path(chained, schedule, window, category_of, timing)
    by_op = critical_path(chained, schedule, window, category_of, timing, op_category=category_of_op)
    assert by_op == by_node
    assert not chained.made


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_stretched_lengths_are_the_interfered_durations(name, nodes, plan_name, runtime, fold):
    """The engine's array form of the stretch (``stretched_lengths``) gives the listed one's floats,
    and None only where that one returns the durations unchanged."""
    system, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    index = ChainedGraph.lazy(step, 3).index()
    durations = graph_durations(index, _model(system, workload, step, memo))
    timing = asap_timing(index, durations)
    listed = interfered_durations(index, durations, timing.start, timing.finish)
    lengths = np.asarray(durations, dtype=np.float64)
    stretched = stretched_lengths(index, lengths, timing.start, timing.finish)
    assert stretched is not None and stretched is not lengths
    assert repr(stretched.tolist()) == repr(listed)
    assert np.array_equal(lengths, np.asarray(durations))  # not changed in place
    # Windows of no length overlap nothing: every length as it was, as the listed form gives.
    quiet = np.zeros_like(timing.start)
    unchanged = stretched_lengths(index, lengths, quiet, quiet)
    assert unchanged is not None and unchanged.tobytes() == lengths.tobytes()
    assert interfered_durations(index, durations, quiet, quiet) == durations
    # A graph without a collective: nothing to stretch (None), the durations as given.
    alone = GraphIndex.of(ExecutionGraph(1, [Node(0, 0, "k", Stream.COMPUTE, Compute("x"))]))
    assert stretched_lengths(alone, np.array([2.0]), np.zeros(1), np.full(1, 2.0)) is None


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_shard_ops_made_once_equal_fresh_ones(name, nodes, plan_name, runtime, fold):
    """``ShardOps.op`` gives the op it made for equal arguments, equal to what a fresh
    ``ShardOps`` makes, and the slices it named (``slices``) are the fresh one's."""
    system, workload, plan, memo, _ = _setup(name, nodes, plan_name, runtime, fold)
    shared = memo.shard_ops
    world = system.num_accelerators
    batch = workload.training.global_batch_size
    arguments = [
        (shard, pass_, batch, world, dtype, hit, atomic)
        for shard in plan.shards
        for pass_ in ("forward", "backward", "update")
        for dtype, hit, atomic in ((None, False, False), ("fp16", True, True))
    ]
    first = [shared.op(*args) for args in arguments]
    fresh = ShardOps(workload)
    for args, op in zip(arguments, first, strict=True):
        assert shared.op(*args) is op
        assert fresh.op(*args) == op
    assert fresh.slices == shared.slices


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_graphs_built_on_shared_shard_ops_equal_fresh_ones(name, nodes, plan_name, runtime, fold):
    """Graphs built one after another on one ``ShardOps`` (a ``CostMemo``'s: the later ones take
    its ops and fused TBE ops as made) equal a graph built on a fresh one, nodes and metadata."""
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    fresh = build_training_step(workload, plan, options, ShardOps(workload))
    built = [build_training_step(workload, plan, options, memo.shard_ops) for _ in range(3)]
    for step in built:
        assert step.nodes == fresh.nodes
        assert step.metadata == fresh.metadata
    fused = [[n.op for n in step.nodes if type(n.op) is Embedding] for step in built]
    assert fused[0]
    # The later graphs hold the first one's lookups (the same objects; a presorted one, an index
    # sort and a replicated update are made from them anew).
    lookups = [(a, b) for a, b in zip(fused[0], fused[2], strict=True) if a.pass_ in ("forward", "backward")]
    assert lookups
    assert all(a is b for a, b in lookups if not a.presorted)
