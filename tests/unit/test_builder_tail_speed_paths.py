"""Two of the builder's and one of the metrics' smaller paths give exactly what the code they
replaced gave (kept below as the reference): the input pipeline's all-to-all parts asked once each
whether they are uneven (not once per folded rank), the dense layers' ops made once per
``ShardOps`` of their workload (not once per graph), and the critical path's pick among a
collective's dozens of candidate predecessors made in arrays. Graphs (nodes, metadata, the folded
ranks' parts) and paths compared on real configurations and random graphs, with ties."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import pytest

import recsim.graph.build as build_module
from recsim.api import make_plan, prepare
from recsim.cost.model import category_of, category_of_op
from recsim.engine.timeline import Window, critical_path, step_window, timing_of
from recsim.graph.build import BuildOptions, build_training_step
from recsim.graph.index import GraphIndex
from recsim.graph.ir import (
    Collective,
    CollectiveOp,
    Compute,
    ExecutionGraph,
    Host,
    Node,
    Op,
    Stream,
    Transfer,
    is_uneven_all_to_all,
)
from recsim.graph.schedule import Schedule, Timing, asap_timing
from recsim.graph.shard_ops import ShardOps
from recsim.graph.steps import ChainedGraph
from tests.unit.test_analytic_speed_paths import random_graph
from tests.unit.test_shared_memo_speed_paths import CONFIGS, _setup

# ------------------------------------------------------------------------------- the references


class _PreviousBuilder(build_module._Builder):
    """The builder with its previous input pipeline and its own layer ops (verbatim)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._layer_ops = {}

    def input_pipeline(self, batch: int) -> None:
        if self.global_input:
            self.global_batch_input(batch)
            return
        if self.per_rank_input:
            self.per_rank_feature_input(batch)
            return
        b = self.local_batch(batch)
        row = self._lookup_bytes_row(b)
        idx_bytes = self._local_lookup_bytes(b)
        dense = b * self.w.dense_features * build_module.DENSE_INPUT_BYTES
        load_op = Host("data_loading", dense + idx_bytes)
        h2d_op = Transfer("host", "hbm", dense + idx_bytes)
        skip = self.skip
        for r in range(self.world):
            if r in skip:
                continue
            load = self.add(r, "data_loading", Stream.HOST, load_op, phase="input")
            self.h2d[r] = self.add(r, "h2d_next_batch", Stream.COPY, h2d_op, [load], "input")
        group = tuple(range(self.world))
        send = tuple([row.get(q, 0.0) for q in group])
        total = sum(send)
        parts: dict[tuple[float, float], Collective] = {}
        folded: dict[int, Collective] = {}
        for r in range(self.world):
            value = send[r]
            key = (value, math.copysign(1.0, value))
            part = parts.get(key)
            if part is None:
                recv = (value,) * self.world
                part = parts[key] = Collective(
                    CollectiveOp.ALL_TO_ALL, "input_dist", group, total, "int64", send, recv
                )
            if r in skip:
                if is_uneven_all_to_all(part):
                    folded[r] = part
                self.input_ready[r] = -1
                continue
            copy = (self.h2d[r],)
            self.input_ready[r] = self.add(
                r,
                "input_dist",
                Stream.COMM,
                part,
                () if self.lagged_input else copy,
                "input",
                lane=self.input_lane,
            )
            if self.lagged_input:
                self.carried_input[self.input_ready[r]] = copy
        self._record_folded("input_dist", folded)


def previous_build(workload, plan, options, ops, monkeypatch: pytest.MonkeyPatch) -> ExecutionGraph:
    with monkeypatch.context() as patch:
        patch.setattr(build_module, "_Builder", _PreviousBuilder)
        return build_training_step(workload, plan, options, ops)


def previous_critical_path(
    graph: ExecutionGraph,
    schedule: Schedule,
    window: Window,
    category: Callable[[Node], str],
    timing: Timing | None = None,
    *,
    op_category: Callable[[Op], str] | None = None,
) -> tuple[dict[str, float], list[int]]:
    """``recsim.engine.timeline.critical_path`` before (verbatim)."""
    timing = timing_of(graph, schedule, timing)
    index = timing.index
    nodes, members = index.nodes, index.members
    if op_category is not None:
        ops = index.source_ops
        per_step = len(ops)  # an index of copies: position ``p`` copies step node ``p % per_step``

        def category_at(p: int) -> str:
            return op_category(ops[p % per_step])

    else:

        def category_at(p: int) -> str:
            return category(nodes[p])

    # The path is short (tens of nodes): each time and id is read off the arrays as a Python
    # float or int (the same values the lists hold), rather than converting whole arrays.
    start_array, finish_array = timing.start, timing.finish
    ids_array, vertex_array = index.ids_array, index.vertex_array

    def finish(p: int) -> float:
        return float(finish_array[p])

    def last_key(p: int) -> tuple[float, int]:
        return float(finish_array[p]), int(ids_array[p])

    window_start = window.start_s
    known = window.positions_in(index)
    if timing.finite and known is not None and known.size:
        # The same nodes (ids are unique); the choice below does not depend on their order.
        in_window: list[int] = []
        at = known
    else:
        position = index.position
        in_window = [position[i] for i in window.node_ids]
        at = np.asarray(in_window, dtype=np.intp)
    if timing.finite and at.size:
        # The node that ends the window (the latest finish not after it: a node working for the
        # next batch may end later, ``step_window``), the largest id among equal ones: as ``max``
        # by (finish, id).
        ends = timing.finish[at]
        closing = ends <= window.end_s
        if closing.any() and not closing.all():
            at, ends = at[closing], ends[closing]
        last = at[ends == ends.max()]
        current = int(last[np.argmax(ids_array[last])])
    else:
        current = max(in_window, key=last_key)
    totals: dict[str, float] = defaultdict(float)
    path: list[int] = []
    time = finish(current)
    while True:
        path.append(int(ids_array[current]))
        begins = float(start_array[current])
        begin = max(begins, window_start)
        totals[category_at(current)] += max(0.0, time - begin)
        if begins <= window_start:
            break
        candidates = index.predecessors_of(current)
        group = members.get(int(vertex_array[current]))
        if group is not None:  # a collective: any member's predecessor
            for m in group:
                candidates.extend(index.predecessors_of(m))
        if not candidates:
            totals["exposed_wait"] += begins - window_start
            break
        best = max(candidates, key=last_key)
        best_finish = finish(best)
        gap = begins - max(best_finish, window_start)
        if gap > 0:
            totals["exposed_wait"] += gap
        if best_finish <= window_start:
            break
        time = best_finish
        current = best
    return dict(totals), path


# ------------------------------------------------------------------------------- the builder


def _assert_same_graph(got: ExecutionGraph, want: ExecutionGraph) -> None:
    assert got.nodes == want.nodes
    assert got.metadata == want.metadata
    # The folded ranks' parts in the same order (the cost model reads them by rank).
    for key, parts in (want.metadata.get("folded_parts") or {}).items():
        assert list(got.metadata["folded_parts"][key].items()) == list(parts.items())


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_builds_match_the_previous_builder(name, nodes, plan_name, runtime, fold, monkeypatch):
    """Graph after graph on one ``ShardOps`` (a cost memo's: its layer ops made by the first
    graph), and on a fresh one: the previous builder's graph, node for node."""
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    for ops in (memo.shard_ops, memo.shard_ops, ShardOps(workload)):
        got = build_training_step(workload, plan, options, ops)
        _assert_same_graph(got, previous_build(workload, plan, options, ShardOps(workload), monkeypatch))


@pytest.mark.parametrize(
    ("system_name", "workload_name", "nodes", "strategy"),
    [
        ("dgx-h100", "dlrm-dcnv2", 16, "table_wise"),  # a hundred folded ranks
        ("dgx-h100", "dlrm-mlperf", 2, "hybrid_embedding"),
        ("dgx-a100", "rmc1", 2, "data_parallel"),
        ("dgx-h100", "dlrm-dcnv2", 2, "row_wise"),
    ],
)
def test_folded_input_parts_match_the_previous_builder(
    system_name, workload_name, nodes, strategy, monkeypatch
):
    system, workload = prepare(system_name, workload_name, nodes=nodes, precision="fp16")
    plan = make_plan(strategy, workload, system)
    for fold in (True, False):
        options = BuildOptions(
            validate_plan=False, ranks_per_node=system.node.num_accelerators, fold_ranks=fold
        )
        got = build_training_step(workload, plan, options, ShardOps(workload))
        _assert_same_graph(got, previous_build(workload, plan, options, ShardOps(workload), monkeypatch))


def test_layer_ops_are_made_once_per_shard_ops_of_their_workload():
    """The dense layers' ops of a ``ShardOps``'s own workload are the same objects graph after
    graph; another (equal) workload object's are made per graph and not kept."""
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=1, precision="fp16")
    plan = make_plan("table_wise", workload, system)
    ops = ShardOps(workload)
    options = BuildOptions(validate_plan=False)

    def dense_ops(graph: ExecutionGraph) -> list[Op]:
        """The dense layers' ops (the loss's is made per graph: not a layer's)."""
        return [n.op for n in graph.nodes if isinstance(n.op, Compute) and n.name.endswith(("_fwd", "_bwd"))]

    first, second = (dense_ops(build_training_step(workload, plan, options, ops)) for _ in range(2))
    assert first and all(a is b for a, b in zip(first, second, strict=True))
    kept = len(ops.layer_ops)
    assert kept and all(layer in workload.dense_layers for layer, _ in ops.layer_ops.values())
    _, other = prepare("dgx-h100", "dlrm-dcnv2", nodes=1, precision="fp16")
    assert other == workload and other is not workload
    theirs = dense_ops(build_training_step(other, plan, options, ops))
    assert theirs == first and len(ops.layer_ops) == kept


# ------------------------------------------------------------------------------- the critical path


def _assert_same_path(graph, timing: Timing) -> None:
    schedule = timing.schedule()
    window = step_window(graph, schedule, timing)
    for given in (window, Window(window.start_s, window.end_s, window.node_ids)):
        for op_category in (None, category_of_op):
            got = critical_path(graph, schedule, given, category_of, timing, op_category=op_category)
            want = previous_critical_path(
                graph, schedule, given, category_of, timing, op_category=op_category
            )
            assert repr(got) == repr(want)


@pytest.mark.parametrize("seed", range(12))
def test_critical_path_matches_the_previous_code_on_random_graphs(seed):
    """Wide collectives (every rank a member), durations with many ties (equal finishes: the id
    decides), zeros of both signs, and non-finite times (the plain path)."""
    rng = np.random.default_rng(seed)
    graph = random_graph(seed, ranks=10 + seed % 7, per_rank=12)
    index = GraphIndex.of(graph)
    choices = np.array([0.0, -0.0, 1.0, 0.5, 0.25])
    for durations in (
        rng.random(index.size),
        rng.choice(choices, index.size),
        rng.choice([1.0, 2.0], index.size),
    ):
        _assert_same_path(graph, asap_timing(index, durations))
    special = rng.choice(np.array([1.0, math.inf, math.nan]), index.size, p=[0.9, 0.05, 0.05])
    with np.errstate(invalid="ignore"):
        _assert_same_path(graph, asap_timing(index, special))


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_critical_path_matches_the_previous_code_on_chained_steps(name, nodes, plan_name, runtime, fold):
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    chained = ChainedGraph.lazy(step, 3)
    index = chained.index()
    rng = np.random.default_rng(nodes)
    for durations in (rng.random(index.size) * 1e-3, rng.choice([1e-4, 2e-4], index.size)):
        _assert_same_path(chained, asap_timing(index, durations))
