"""The chained graph's templates: the cross-step dependencies found through arrays of the nodes'
phases and the ops' kinds (Python visiting only the nodes that may wait for the previous step),
a built step's dependencies taken as they are (the builder deduplicates them), and the later
steps' rows read off the nodes with cross-step dependencies only, give exactly what the code
they replaced gave (kept below as the reference), on built steps of real configurations (fused,
eager and HugeCTR's carried dependencies, folded and not) and on random and odd graphs (plain
string phases, duplicate and negative ids, empty dependency lists)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from itertools import chain

import numpy as np
import pytest

from recsim.api import make_plan, prepare
from recsim.graph.build import BuildOptions, build_training_step
from recsim.graph.index import GraphIndex, OpTable, rows
from recsim.graph.ir import (
    Compute,
    Embedding,
    ExecutionGraph,
    Host,
    NodeColumns,
    Stream,
    Transfer,
    node_columns,
)
from recsim.graph.steps import (
    ChainedGraph,
    _columns,
    _cross_dependencies,
    _later_rows,
    _Templates,
    chain_steps,
)
from tests.unit.test_analytic_speed_paths import random_graph
from tests.unit.test_shared_memo_speed_paths import CONFIGS, _setup

# ------------------------------------------------------------------------------- the references


def previous_cross_dependencies(graph: ExecutionGraph, columns: NodeColumns) -> list[list[int] | None]:
    """``recsim.graph.steps._cross_dependencies`` before (verbatim)."""
    inputs: dict[int, list[int]] = defaultdict(list)
    optimizer: dict[int, list[int]] = defaultdict(list)
    emb_update: dict[tuple[int, str], list[int]] = defaultdict(list)
    ids, ranks, phases, ops = columns.ids, columns.ranks, columns.phases, columns.ops
    bounded_input = graph.metadata.get("input_prefetch", "one_batch") == "one_batch"
    first_copy: set[int] = set()
    copied: set[int] = set()
    for nid, rank, phase, op, stream in zip(ids, ranks, phases, ops, columns.streams, strict=True):
        if phase == "input":
            inputs[rank].append(nid)
            if bounded_input and stream is Stream.COPY and rank not in copied:
                copied.add(rank)
                first_copy.add(nid)
        elif phase == "optimizer":
            optimizer[rank].append(nid)
        if isinstance(op, Embedding) and op.pass_ in ("backward", "update"):
            emb_update[(rank, op.table)].append(nid)
    carried = graph.metadata.get("carried_dependencies") or {}
    cross: list[list[int] | None] = []
    for nid, rank, phase, op, deps in zip(ids, ranks, phases, ops, columns.deps, strict=True):
        extra: list[int] | None = None
        if nid in first_copy:
            extra = list(optimizer[rank]) or None
        elif phase == "forward":
            if isinstance(op, Embedding):
                extra = list(dict.fromkeys([*inputs[rank], *emb_update[(rank, op.table)]]))
            elif not deps:
                extra = list(dict.fromkeys([*inputs[rank], *optimizer[rank]]))
        if carried and nid in carried:
            extra = list(dict.fromkeys([*(extra or []), *carried[nid]]))
        cross.append(extra)
    return cross


def previous_first(columns: NodeColumns) -> list[tuple[int, ...]]:
    """``_Templates.first`` before (verbatim)."""
    return [
        deps if len(deps) < 2 and type(deps) is tuple else tuple(dict.fromkeys(deps)) for deps in columns.deps
    ]


def previous_later_rows(first, cross: Sequence[list[int] | None], stride: int):
    """``recsim.graph.steps._later_rows`` before (verbatim, its ``_spread`` inlined)."""

    def spread(at, counts):
        before = np.cumsum(counts) - counts
        return np.repeat(at - before, counts) + np.arange(int(counts.sum()), dtype=np.intp)

    own_flat, own_end = first
    own_len = np.diff(own_end, prepend=0)
    extra_len = np.fromiter((0 if extra is None else len(extra) for extra in cross), np.intp, len(cross))
    extra_flat = np.fromiter(chain.from_iterable(extra for extra in cross if extra), np.intp) - stride
    end = np.cumsum(own_len + extra_len)
    start = end - own_len - extra_len
    flat = np.empty(int(end[-1]) if end.size else 0, dtype=np.intp)
    flat[spread(start, own_len)] = own_flat
    flat[spread(start + own_len, extra_len)] = extra_flat
    return flat, end


# ------------------------------------------------------------------------------- the checks


def assert_same_templates(graph: ExecutionGraph) -> None:
    columns = _columns(graph)
    templates = _Templates.of(graph)
    expected_cross = previous_cross_dependencies(graph, columns)
    assert templates.cross == expected_cross
    assert templates.crossing == [i for i, extra in enumerate(expected_cross) if extra is not None]
    assert templates.first == previous_first(columns)
    assert all(type(deps) is tuple for deps in templates.first)
    table = templates.table
    assert len(table.ops) == len(set(map(id, columns.ops))) and table.number.size == len(columns.ops)
    got = _cross_dependencies(graph, columns, OpTable.of(columns.ops))
    assert got == (templates.cross, templates.crossing)
    if not templates.plain and templates.first:
        for first in (rows(templates.first),):
            stride = templates.stride
            want = previous_later_rows(first, templates.cross, stride)
            for crossing in (templates.crossing, None):
                flat, end = _later_rows(first, templates.cross, stride, crossing)
                assert flat.dtype == want[0].dtype and np.array_equal(flat, want[0])
                assert end.dtype == want[1].dtype and np.array_equal(end, want[1])


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_templates_of_built_steps_match_the_previous_code(name, nodes, plan_name, runtime, fold):
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    columns = node_columns(step)
    assert columns is not None and columns.unique_deps
    assert_same_templates(step)
    # The same graph as plain nodes (no columns: every node's dependencies checked), and chained.
    plain = ExecutionGraph(step.ranks, list(step.nodes), dict(step.metadata))
    assert_same_templates(plain)
    assert _Templates.of(plain).first == _Templates.of(step).first
    lazy = ChainedGraph.lazy(step, 3)
    assert lazy.index().op_table is lazy._templates.table  # read by the templates, handed on
    assert list(lazy.nodes) == list(chain_steps(plain, 3).nodes)


@pytest.mark.parametrize(
    ("system_name", "workload_name", "nodes", "strategy", "runtime"),
    [
        ("dgx-h100", "dlrm-mlperf", 2, "hybrid_embedding", "fused"),  # carried dependencies
        ("dgx-a100", "dlrm-mlperf", 1, "hybrid_embedding", "fused"),
        ("dgx-h100", "dlrm-dcnv2", 1, "table_wise", "eager"),  # input in host order: unbounded
        ("dgx-a100", "rmc1", 2, "data_parallel", "fused"),  # replicated updates
    ],
)
def test_templates_of_other_frameworks_and_plans_match(system_name, workload_name, nodes, strategy, runtime):
    system, workload = prepare(
        system_name,
        workload_name,
        nodes=nodes,
        precision="fp16",
        overrides=[f"workload.training.runtime={runtime}"],
    )
    plan = make_plan(strategy, workload, system)
    for fold in (False, True):
        step = build_training_step(workload, plan, BuildOptions(validate_plan=False, fold_ranks=fold))
        assert_same_templates(step)
    if strategy == "hybrid_embedding" and nodes == 2:
        assert step.metadata.get("carried_dependencies")


@pytest.mark.parametrize("seed", range(12))
def test_templates_of_random_and_odd_graphs_match(seed):
    rng = random.Random(seed)
    graph = random_graph(seed, ranks=2 + seed % 4)
    kinds = [
        Host("data_loading", 1.0),
        Transfer("host", "hbm", 1.0),
        Embedding("t", "forward", 1, 1, "fp32", 1, 1.0),
        Embedding("t", "backward", 1, 1, "fp32", 1, 1.0),
        Embedding("u", "update", 1, 1, "fp32", 1, 1.0),
        Compute("y"),
    ]
    nodes = []
    for n in graph.nodes:
        phase = rng.choice(["input", "optimizer", "forward", "backward", "", "forwards"])
        op = n.op if n.stream is Stream.COMM else rng.choice(kinds)
        stream = Stream.COPY if isinstance(op, Transfer) else n.stream
        deps = rng.choice([n.deps, list(n.deps), (), [], n.deps + n.deps[:1]])
        nodes.append(replace(n, op=op, stream=stream, phase=phase, deps=deps))
    metadata: dict[str, object] = {}
    if seed % 3 == 1:
        metadata["input_prefetch"] = "host_order"
    if seed % 3 == 2:
        picked = rng.sample(nodes, 3)
        metadata["carried_dependencies"] = {picked[0].id: (picked[1].id, picked[2].id), picked[1].id: ()}
    g = ExecutionGraph(graph.ranks, nodes, metadata)
    assert_same_templates(g)
    # Duplicate ids (a node's copy at another position) and negative ids: the plain route.
    twice = ExecutionGraph(g.ranks, [*nodes, replace(nodes[0], deps=())], metadata)
    assert_same_templates(twice)
    negative = ExecutionGraph(g.ranks, [replace(n, id=n.id - 5, deps=()) for n in nodes], {})
    assert_same_templates(negative)
    # A chained index from templates is the plain one's.
    index = ChainedGraph.lazy(g, 3).index()
    plain = GraphIndex.of(chain_steps(g, 3))
    assert index.members == plain.members and np.array_equal(index.dep_flat_array, plain.dep_flat_array)


def test_templates_of_an_empty_graph():
    assert_same_templates(ExecutionGraph(1, []))


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_arrays_kept_from_the_making_equal_their_lists(name, nodes, plan_name, runtime, fold):
    """A built step's ids as a range and the vertex heads as found: the arrays the lists give."""
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    for index in (
        GraphIndex.of(step),
        GraphIndex.of(step, lazy_deps=True),
        ChainedGraph.lazy(step, 3).index(),
    ):
        for name_, dtype in (("ids", np.int64), ("vertex_head", np.intp)):
            kept, listed = getattr(index, f"{name_}_array"), getattr(index, name_)
            assert kept.dtype == dtype and kept.tolist() == listed
