"""Kahn's rounds with their edges keyed by a shift instead of a product, the chain rounds they
note (``KahnRounds.runs``) and the schedule that times a run of them in one cumulative sum, and
the vertex lengths read off the members' durations only, give exactly what the code they replaced
gave (kept below as the reference): the same rounds, and the same times bit for bit, with ties,
zeros of both signs, infinities and NaN among the durations (a NaN in a run makes it take its
rounds one by one again), on random graphs, chained steps of real configurations, a deadlock and
an empty graph, through both ways of working the rounds out (Python and numpy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import numpy.typing as npt
import pytest

from recsim.graph import index as index_module
from recsim.graph.build import build_training_step
from recsim.graph.index import ColumnBlock, GraphIndex, KahnRounds, _chain_runs, _distinct_groups
from recsim.graph.ir import Collective, CollectiveOp, ExecutionGraph, Node, Stream
from recsim.graph.schedule import _vertex_lengths, asap_timing
from recsim.graph.steps import ChainedGraph, chain_steps
from tests.unit.test_analytic_speed_paths import random_graph
from tests.unit.test_kahn_solo_speed_path import previous_python_rounds
from tests.unit.test_shared_memo_speed_paths import CONFIGS, _setup

# ------------------------------------------------------------------------------- the references


def previous_kahn_rounds(index: GraphIndex) -> tuple[object, ...]:
    """``recsim.graph.index._kahn_rounds`` before (verbatim but for its rounds, which the previous
    Python rounds give: ``test_kahn_solo_speed_path``): its fields, edges keyed by a product."""
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
    out_end = np.cumsum(out_count)
    order: Sequence[int] | npt.NDArray[np.intp]
    if dst.size <= index_module._PYTHON_ROUNDS_EDGES:
        order, ends = previous_python_rounds(dst, out_count, out_end, pending)
    else:
        order, ends = index_module._array_rounds(dst, out_count, out_end, pending)
    released_order = np.asarray(order, dtype=np.intp)
    rank = np.full(vertices, -1, dtype=np.intp)
    rank[released_order] = np.arange(released_order.size, dtype=np.intp)
    counts = out_count[released_order]
    cut = np.concatenate(([0], np.cumsum(counts)))
    edges = np.repeat(out_end[released_order] - cut[1:], counts) + np.arange(int(cut[-1]), dtype=np.intp)
    sources = np.repeat(np.arange(released_order.size, dtype=np.intp), counts)
    targets = rank[dst[edges]]
    bounds = cut[[0, *ends]].tolist()
    return (
        released_order,
        rank,
        rank[vertex],
        ends,
        [sources[a:b] for a, b in pairwise(bounds)],
        [targets[a:b] for a, b in pairwise(bounds)],
        np.flatnonzero(rank < 0),
    )


def previous_vertex_lengths(index: GraphIndex, durations: Sequence[float]) -> np.ndarray:
    """``recsim.graph.schedule._vertex_lengths`` before (verbatim)."""
    given = np.asarray(durations, dtype=np.float64)
    length = given[index.vertex_head_array]
    members = index.members
    if members:
        at = (given.tolist() if isinstance(durations, np.ndarray) else durations).__getitem__
        length[list(members)] = [max(map(at, positions)) for positions in members.values()]
    return length


def previous_asap_timing(index: GraphIndex, durations: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``recsim.graph.schedule.asap_timing``'s times before (verbatim: a step per round)."""
    structure = index.kahn_rounds
    length = previous_vertex_lengths(index, durations)[structure.order]
    begin = np.full(length.size, -math.inf)
    finish = np.zeros(length.size)
    ends = structure.ends
    if ends:
        begin[: ends[0]] = 0.0
    a = 0
    for b, sources, targets in zip(ends, structure.sources, structure.targets, strict=True):
        np.add(begin[a:b], length[a:b], out=finish[a:b])
        if targets.size:
            np.fmax.at(begin, targets, finish[sources])
        a = b
    at = structure.at
    return begin[at], finish[at]


# ------------------------------------------------------------------------------- the checks


def _explicit_runs(rounds: KahnRounds) -> list[int]:
    """``_chain_runs`` of a structure's rounds (what the numpy rounds take)."""
    sources = np.concatenate(rounds.sources) if rounds.sources else np.zeros(0, dtype=np.intp)
    targets = np.concatenate(rounds.targets) if rounds.targets else np.zeros(0, dtype=np.intp)
    cuts = np.concatenate(([0], np.cumsum([s.size for s in rounds.sources], dtype=np.intp)))
    indegree = np.bincount(targets[targets >= 0], minlength=rounds.order.size)
    return _chain_runs(rounds.ends, cuts, sources, targets, indegree)


def _brute_runs(rounds: KahnRounds) -> list[int]:
    """The chain rounds by their definition, edge by edge in Python, counted in runs."""
    indegree: dict[int, int] = {}
    for targets in rounds.targets:
        for t in targets.tolist():
            indegree[t] = indegree.get(t, 0) + 1
    chained = []
    a = 0
    for b, sources, targets in zip(rounds.ends, rounds.sources, rounds.targets, strict=True):
        w = b - a
        edges = list(zip(sources.tolist(), targets.tolist(), strict=True))
        chained.append(
            w > 0
            and edges == [(a + i, b + i) for i in range(w)]
            and all(indegree.get(b + i) == 1 for i in range(w))
        )
        a = b
    runs, run = [0] * len(chained), 0
    for k in range(len(chained) - 1, -1, -1):
        run = run + 1 if chained[k] else 0
        runs[k] = run
    return runs


def _assert_same_rounds(index: GraphIndex) -> None:
    got = index.kahn_rounds
    want = previous_kahn_rounds(index)
    fields = (got.order, got.rank, got.at, got.ends, got.sources, got.targets, got.waiting)
    for mine, theirs in zip(fields, want, strict=True):
        if isinstance(mine, np.ndarray):
            assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)  # type: ignore[union-attr]
        elif mine and isinstance(mine[0], np.ndarray):
            assert len(mine) == len(theirs)  # type: ignore[arg-type]
            assert all(np.array_equal(x, y) for x, y in zip(mine, theirs, strict=True))  # type: ignore[call-overload]
        else:
            assert mine == theirs
    assert got.runs == _brute_runs(got) == _explicit_runs(got)


def _assert_same_times(index: GraphIndex, seed: int) -> None:
    rng = np.random.default_rng(seed)
    choices = np.array([0.0, -0.0, 1.0, 0.5, 1e-3, math.inf, math.nan, 2.5e-4])
    weights = [0.05, 0.05, 0.2, 0.2, 0.2, 0.02, 0.02, 0.26]
    special = rng.choice(choices, index.size, p=weights)
    tied = rng.choice(choices[[0, 1, 2, 3]], index.size)
    one_nan = rng.random(index.size)
    if index.size:
        one_nan[rng.integers(index.size)] = math.nan
    for durations in (rng.random(index.size), special, tied, one_nan, np.zeros(index.size)):
        for given in (durations, durations.tolist()):
            with np.errstate(invalid="ignore"):  # inf + -inf: NaN, in both
                timing = asap_timing(index, given)
                start, finish = previous_asap_timing(index, given)
            assert timing.start.tobytes() == start.tobytes()
            assert timing.finish.tobytes() == finish.tobytes()
            got, want = _vertex_lengths(index, given), previous_vertex_lengths(index, given)
            assert got.tobytes() == want.tobytes()


ROUNDS_PATHS = pytest.mark.parametrize("python_edges", [index_module._PYTHON_ROUNDS_EDGES, -1])


@ROUNDS_PATHS
@pytest.mark.parametrize("seed", range(10))
def test_rounds_runs_and_times_match_the_previous_code_on_random_graphs(seed, python_edges, monkeypatch):
    monkeypatch.setattr(index_module, "_PYTHON_ROUNDS_EDGES", python_edges)
    graph = random_graph(seed, ranks=2 + seed % 5, per_rank=10 + 7 * seed)
    for g in (graph, chain_steps(graph, 3)):
        index = GraphIndex.of(g)
        _assert_same_rounds(index)
        _assert_same_times(index, seed)


@ROUNDS_PATHS
def test_rounds_runs_and_times_match_with_a_cycle_and_when_empty(python_edges, monkeypatch):
    monkeypatch.setattr(index_module, "_PYTHON_ROUNDS_EDGES", python_edges)

    def c(i, rank, key):
        return Node(i, rank, key, Stream.COMM, Collective(CollectiveOp.ALL_REDUCE, key, (0, 1), 8.0))

    deadlocked = ExecutionGraph(2, [c(0, 0, "a"), c(1, 0, "b"), c(2, 1, "b"), c(3, 1, "a")])
    for g in (deadlocked, ExecutionGraph(1, [])):
        _assert_same_rounds(GraphIndex.of(g))
    _assert_same_times(GraphIndex.of(ExecutionGraph(1, [])), 0)


def test_a_chain_of_single_nodes_is_one_run():
    """Two ranks, each a line of ten kernels: nine chain rounds in a row, then the last round."""
    from recsim.graph.ir import Compute

    nodes = [
        Node(r * 10 + i, r, f"k{i}", Stream.COMPUTE, Compute("x"), (r * 10 + i - 1,) if i else ())
        for r in range(2)
        for i in range(10)
    ]
    index = GraphIndex.of(ExecutionGraph(2, nodes))
    assert index.kahn_rounds.runs == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    _assert_same_times(index, 3)
    timing = asap_timing(index, [1.0] * 20)
    assert timing.finish.tolist() == [float(i + 1) for i in range(10)] * 2
    # A NaN inside the run: ``fmax`` skips it where the sum would carry it on; the run takes its
    # rounds one by one, as before.
    durations = [1.0] * 3 + [math.nan] + [1.0] * 16
    timing = asap_timing(index, durations)
    start, finish = previous_asap_timing(index, durations)
    assert timing.start.tobytes() == start.tobytes() and timing.finish.tobytes() == finish.tobytes()
    assert math.isinf(timing.start[4]) and timing.start[14] == 4.0  # rank 1 runs on


def test_rows_that_wait_two_above_make_one_block():
    """Two ranks, each a line of ten kernels where kernel ``i`` waits for kernels ``i - 1`` and
    ``i - 2`` (as a backward's layers do), and a kernel on a third rank that waits for rank 0's
    kernel 4 and rank 1's last: the ten rounds are one block (``KahnRounds.blocks``), the third
    rank's kernel raised once the block is timed; a negative length in the block takes its
    rounds one by one, as a NaN does."""
    from recsim.graph.ir import Compute

    def deps(r: int, i: int) -> tuple[int, ...]:
        return tuple(r * 10 + j for j in (i - 1, i - 2) if j >= 0)

    nodes = [
        Node(r * 10 + i, r, f"k{i}", Stream.COMPUTE, Compute("x"), deps(r, i))
        for r in range(2)
        for i in range(10)
    ]
    nodes.append(Node(20, 2, "after", Stream.COMPUTE, Compute("x"), (4, 19)))
    index = GraphIndex.of(ExecutionGraph(3, nodes))
    rounds = index.kahn_rounds
    assert rounds.runs[0] == 0  # not chain rounds: each kernel waits for two
    block = rounds.blocks[0]
    assert isinstance(block, ColumnBlock) and block.run == 9 and block.ordered and not block.spread
    # The edges that leave the block: rank 0's kernel 4 (row 4) and rank 1's last (row 9), both
    # to one target (raised with ``np.fmax.at``).
    assert sorted(block.out.tolist()) == [8, 19] and block.into.tolist() == [20, 20]
    assert rounds.blocks[1:] == [None] * (len(rounds.ends) - 1)
    timing = asap_timing(index, [1.0] * 21)
    assert timing.finish.tolist() == [float(i + 1) for i in range(10)] * 2 + [11.0]
    assert timing.start[20] == 10.0
    _assert_same_times(index, 5)
    for durations in ([1.0] * 5 + [-2.0] + [1.0] * 15, [1.0] * 5 + [math.nan] + [1.0] * 15):
        timing = asap_timing(index, durations)
        start, finish = previous_asap_timing(index, durations)
        assert timing.start.tobytes() == start.tobytes() and timing.finish.tobytes() == finish.tobytes()
    # Rank 0's kernel 6 waits for kernel 4 (finish 5.0), not for kernel 5 (finish 3.0, its length -2).
    timing = asap_timing(index, [1.0] * 5 + [-2.0] + [1.0] * 15)
    assert timing.start[6] == 5.0


def test_a_block_may_read_its_columns_above_it():
    """Two ranks, each a line of ten kernels; rank 0's kernel 5 also waits for rank 1's kernel 2
    (another column: the block of rounds 0-4 ends there), and kernels 6-9 also wait for the
    kernel three above them, kernels 6 and 7 for kernels 3 and 4, above the second block (rounds
    5-9), in its columns: that block reads them (``ColumnBlock.above``), and where one of them
    finishes at NaN, or a length between is negative, it takes its rounds one by one."""
    from recsim.graph.ir import Compute

    def deps(r: int, i: int) -> tuple[int, ...]:
        own = tuple(r * 10 + j for j in (i - 1, i - 3 if i >= 6 else -1) if j >= 0)
        return own + ((12,) if (r, i) == (0, 5) else ())

    nodes = [
        Node(r * 10 + i, r, f"k{i}", Stream.COMPUTE, Compute("x"), deps(r, i))
        for r in range(2)
        for i in range(10)
    ]
    index = GraphIndex.of(ExecutionGraph(2, nodes))
    blocks = index.kahn_rounds.blocks
    first, second = blocks[0], blocks[5]
    assert first is not None and (first.run, first.ordered) == (4, False)
    assert second is not None and (second.run, second.ordered, second.above) == (4, True, 6)
    assert blocks[1:5] == [None] * 4 and blocks[6:] == [None] * 4
    timing = asap_timing(index, [1.0] * 20)
    assert timing.finish.tolist() == [float(i + 1) for i in range(10)] * 2
    _assert_same_times(index, 7)
    ones = [1.0] * 20
    for at, value in ((3, math.nan), (4, -2.0), (3, -2.0), (8, -2.0), (13, math.inf), (14, -math.inf)):
        durations = [*ones[:at], value, *ones[at + 1 :]]
        with np.errstate(invalid="ignore"):
            timing = asap_timing(index, durations)
            start, finish = previous_asap_timing(index, durations)
        assert timing.start.tobytes() == start.tobytes() and timing.finish.tobytes() == finish.tobytes()
    # Rank 0's kernel 6 waits for kernels 5 and 3: with kernel 4 two shorter (-2), kernel 3's
    # finish (4.0) is the later one.
    timing = asap_timing(index, [*ones[:4], -2.0, *ones[5:]])
    assert timing.start[6] == 4.0


@ROUNDS_PATHS
@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_rounds_runs_and_times_match_on_chained_steps(
    name, nodes, plan_name, runtime, fold, python_edges, monkeypatch
):
    monkeypatch.setattr(index_module, "_PYTHON_ROUNDS_EDGES", python_edges)
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    index = ChainedGraph.lazy(step, 3).index()
    _assert_same_rounds(index)
    assert any(index.kahn_rounds.runs)  # the ranks' dense layers: the runs are there to take
    _assert_same_times(index, nodes)


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_member_rows_are_the_members(name, nodes, plan_name, runtime, fold):
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    for index in (GraphIndex.of(step), ChainedGraph.lazy(step, 3).index()):
        vertices, flat, bounds = index.member_rows
        assert vertices == list(index.members)
        rows = [flat[a:b].tolist() for a, b in pairwise(bounds)]
        assert rows == list(index.members.values()) and flat.dtype == np.intp


def test_distinct_groups_split_repeated_targets():
    into, out = np.array([5, 7, 5, 9, 5, 7]), np.array([0, 1, 2, 3, 4, 5])
    groups = _distinct_groups(into, out)
    assert [(t.tolist(), s.tolist()) for t, s in groups] == [
        ([5, 7, 9], [0, 1, 3]),
        ([5, 7], [2, 5]),
        ([5], [4]),
    ]
    assert _distinct_groups(np.array([1, 1, 1, 1]), np.array([0, 1, 2, 3])) == ()  # four: ``fmax.at``
    rng = np.random.default_rng(0)
    for _ in range(50):
        into = rng.integers(0, 6, rng.integers(0, 12))
        out = rng.permutation(into.size)
        groups = _distinct_groups(into, out)
        if groups:
            assert all(np.unique(t).size == t.size for t, _ in groups)
            pairs = sorted(p for t, s in groups for p in zip(t.tolist(), s.tolist(), strict=True))
            assert pairs == sorted(zip(into.tolist(), out.tolist(), strict=True))


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_source_ranks_array_is_the_nodes_ranks(name, nodes, plan_name, runtime, fold):
    """``GraphIndex.source_ranks_array``, read off the queues' ranks, is each (step) node's rank."""
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    for index in (
        GraphIndex.of(step),
        ChainedGraph.lazy(step, 3).index(),
        GraphIndex.of(chain_steps(step, 2)),
    ):
        got = index.source_ranks_array
        assert got.dtype == np.int64 and got.tolist() == list(index.source_ranks)
    graph = random_graph(3, ranks=4, per_rank=20)
    index = GraphIndex.of(graph)
    assert index.source_ranks_array.tolist() == [n.rank for n in graph.nodes]
