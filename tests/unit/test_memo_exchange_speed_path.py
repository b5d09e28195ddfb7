"""A cost memo's ``ShardOps`` keeps each plan's pooled exchange (its matrix, its rows' and columns'
sums and the builder's all-to-all parts, ``ShardOps.exchanges``): a later graph of the plan reads
them instead of working them out again, and is the graph a fresh ``ShardOps`` builds, the same
part objects laid down as the first graph's; likewise its input pipeline ops (``ShardOps.inputs``).
The memo then finds a whole all-to-all's value key by its parts' ids (``CostMemo.whole_keys``)."""

from __future__ import annotations

from typing import Any

import pytest

from recsim.graph.build import build_training_step
from recsim.graph.ir import Collective, CollectiveOp
from recsim.graph.shard_ops import ShardOps
from tests.unit.test_shared_memo_speed_paths import CONFIGS, _setup

FIELDS = ("ids", "ranks", "names", "streams", "ops", "deps", "lanes", "phases")
MEMO_CONFIGS = [*CONFIGS, ("dgx-h100", 2, "table_wise", "fused", True)]


def assert_same_graph(graph: Any, fresh: Any) -> None:
    """``graph`` (built from a memo's ``ShardOps``) is the graph a fresh ``ShardOps`` builds."""
    for field in FIELDS:
        assert getattr(graph.columns, field) == getattr(fresh.columns, field), field
    assert graph.metadata == fresh.metadata


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), MEMO_CONFIGS)
def test_a_later_graph_reads_the_kept_exchange(name, nodes, plan_name, runtime, fold):
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    first = build_training_step(workload, plan, options, memo.shard_ops)
    kept = dict(memo.shard_ops.exchanges)
    assert [entry[0] for entry in kept.values()] == [plan]
    later = build_training_step(workload, plan, options, memo.shard_ops)
    assert memo.shard_ops.exchanges == kept  # read, not made again
    fresh = build_training_step(workload, plan, options, ShardOps(workload))
    for graph in (first, later):
        assert_same_graph(graph, fresh)
        assert list(graph.metadata.get("folded_parts", {})) == list(fresh.metadata.get("folded_parts", {}))
    # The later graph's all-to-all parts are the first one's objects (the cost model finds them
    # by identity), not equal copies.
    parts = [
        (a, b)
        for a, b in zip(first.columns.ops, later.columns.ops, strict=True)
        if isinstance(a, Collective) and a.op is CollectiveOp.ALL_TO_ALL and a.key.startswith("a2a_")
    ]
    assert parts
    assert all(a is b for a, b in parts)


def test_another_plan_object_gets_its_own_exchange():
    _, workload, plan, memo, options = _setup("dgx-h100", 2, "table_wise", "fused", True)
    build_training_step(workload, plan, options, memo.shard_ops)
    other = type(plan)(**{f: getattr(plan, f) for f in plan.__dataclass_fields__})
    build_training_step(workload, other, options, memo.shard_ops)
    assert {id(entry[0]) for entry in memo.shard_ops.exchanges.values()} == {id(plan), id(other)}


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), MEMO_CONFIGS)
def test_a_later_graph_reads_the_kept_input_ops(name, nodes, plan_name, runtime, fold):
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    first = build_training_step(workload, plan, options, memo.shard_ops)
    kept = dict(memo.shard_ops.inputs)
    later = build_training_step(workload, plan, options, memo.shard_ops)
    assert memo.shard_ops.inputs == kept
    fresh = build_training_step(workload, plan, options, ShardOps(workload))
    inputs = [k for k, phase in enumerate(fresh.columns.phases) if phase == "input"]
    assert_same_graph(later, fresh)
    if kept:  # the input-dist runtimes: the later graph lays down the first one's op objects
        assert inputs
        assert all(first.columns.ops[k] is later.columns.ops[k] for k in inputs)


def test_whole_all_to_all_keys_are_kept_by_their_parts_ids():
    from recsim.cost.memo import WHOLE_KEYS_KEPT
    from recsim.engine.simulate import SimulationOptions, simulate_training

    system, workload, plan, memo, _ = _setup("dgx-h100", 16, "table_wise", "fused", True)
    options = SimulationOptions(fidelity="analytic", costs=memo, fold_ranks=True)
    first = simulate_training(system, workload, plan, options)
    kept = dict(memo.whole_keys)
    assert 0 < len(kept) <= WHOLE_KEYS_KEPT
    later = simulate_training(system, workload, plan, options)
    assert memo.whole_keys == kept  # the later evaluation's parts are the first's: found, not added
    memo.whole_keys.clear()
    again = simulate_training(system, workload, plan, options)  # resolved part by part once more
    assert memo.whole_keys == kept
    assert repr(first.result) == repr(later.result) == repr(again.result)
