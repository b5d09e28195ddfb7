"""The chained steps' cross-step dependencies (``recsim.graph.steps._cross_dependencies``) read
each rank's input, optimizer and embedding-update nodes and its first input copy in one pass over
the step graph's columns: the same lists, in the same order, as the code it replaced (kept below
as the reference), on built graphs of real configurations (with a bounded input pipeline and
without), carried dependencies among them, and on random graphs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import pytest

from recsim.graph.build import build_training_step
from recsim.graph.index import OpTable
from recsim.graph.ir import Embedding, ExecutionGraph, Stream
from recsim.graph.steps import NodeColumns, _columns, _cross_dependencies
from tests.unit.test_analytic_speed_paths import random_graph
from tests.unit.test_shared_memo_speed_paths import CONFIGS, _setup


def previous_cross_dependencies(graph: ExecutionGraph, columns: NodeColumns) -> list[list[int] | None]:
    inputs: dict[int, list[int]] = defaultdict(list)
    optimizer: dict[int, list[int]] = defaultdict(list)
    emb_update: dict[tuple[int, str], list[int]] = defaultdict(list)
    ids, ranks, phases, ops = columns.ids, columns.ranks, columns.phases, columns.ops
    for nid, rank, phase, op in zip(ids, ranks, phases, ops, strict=True):
        if phase == "input":
            inputs[rank].append(nid)
        elif phase == "optimizer":
            optimizer[rank].append(nid)
        if isinstance(op, Embedding) and op.pass_ in ("backward", "update"):
            emb_update[(rank, op.table)].append(nid)
    bounded_input = graph.metadata.get("input_prefetch", "one_batch") == "one_batch"
    first_copy: set[int] = set()
    if bounded_input:
        copied: set[int] = set()
        for nid, rank, phase, stream in zip(ids, ranks, phases, columns.streams, strict=True):
            if phase == "input" and stream is Stream.COPY and rank not in copied:
                copied.add(rank)
                first_copy.add(nid)
    carried: dict[int, Sequence[int]] = graph.metadata.get("carried_dependencies") or {}
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


def _assert_same(graph: ExecutionGraph) -> None:
    columns = _columns(graph)
    # (It takes the ops' table and also lists the nodes with some: ``test_templates_speed_paths``.)
    got, _ = _cross_dependencies(graph, columns, OpTable.of(columns.ops))
    assert got == previous_cross_dependencies(graph, columns)
    assert [type(x) for x in got] == [type(x) for x in previous_cross_dependencies(graph, columns)]


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
@pytest.mark.parametrize("prefetch", [None, "one_batch", "unbounded"])
def test_cross_dependencies_match_the_previous_code_on_built_steps(
    name, nodes, plan_name, runtime, fold, prefetch
):
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    if prefetch is not None:
        step.metadata["input_prefetch"] = prefetch
    _assert_same(step)
    # Carried dependencies on some nodes, with and without a cross-step list of their own.
    step.metadata["carried_dependencies"] = {nid: [nid - 1, 0] for nid in _columns(step).ids[5::37]}
    _assert_same(step)


@pytest.mark.parametrize("seed", range(8))
def test_cross_dependencies_match_the_previous_code_on_random_graphs(seed):
    _assert_same(random_graph(seed, ranks=2 + seed % 5, per_rank=10 + 7 * seed))
