"""``CostModel._ordered_parts`` checks and orders an all-to-all's parts with dict, set and ``map``
calls rather than a Python loop over the members, and ``CostModel.kernel_js`` prices a list of ops
with ``kernel_j``'s identity layer written out: the same answers as the code they replaced (kept
below as the reference), on drawn member lists (ranks repeated, missing, outside the group, ops
that are not collectives, folded parts that collide) and on a built graph's ops."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.api import make_plan, prepare
from recsim.cost.memo import CostMemo
from recsim.cost.model import CostModel
from recsim.engine.simulate import SimulationOptions, simulate_training
from recsim.graph.index import GraphIndex
from recsim.graph.ir import Collective, CollectiveOp, Compute, Op
from tests.unit.test_shared_memo_speed_paths import _model as graph_cost_model


def previous_ordered_parts(
    folded_parts: Mapping[str, Mapping[int, Collective]], ops: Sequence[Op], ranks: Sequence[int]
) -> list[Collective] | None:
    """The code before the checks were made in C (``CostModel._ordered_parts``)."""
    first = ops[0]
    if not isinstance(first, Collective):
        return None
    group = first.group
    member = {rank: i for i, rank in enumerate(group)}
    by_member: list[Collective | None] = [None] * len(group)
    for op, rank in zip(ops, ranks, strict=True):
        i = member.get(rank)
        if i is None or by_member[i] is not None or not isinstance(op, Collective):
            return None
        by_member[i] = op
    folded = folded_parts and (folded_parts.get(first.key) or folded_parts.get(first.key.rpartition("#")[0]))
    if folded:
        for rank, part in folded.items():
            i = member.get(rank)
            if i is None or by_member[i] is not None:
                return None
            by_member[i] = part
    parts = [part for part in by_member if part is not None]
    return parts if len(parts) == len(group) else None


_MODEL: list[CostModel] = []


def _model(folded: Mapping[str, Mapping[int, Collective]]) -> CostModel:
    """A cost model of one DGX H100 (made once: the topology is the slow part) with ``folded``."""
    if not _MODEL:
        _MODEL.append(CostModel(prepare("dgx-h100", "dlrm-dcnv2", nodes=1)[0]))
    _MODEL[0]._folded_parts = folded
    return _MODEL[0]


def _part(group: tuple[int, ...], rank: int, key: str) -> Collective:
    # Each part its own bytes, so that two parts are told apart by value as well as identity.
    return Collective(CollectiveOp.ALL_TO_ALL, key, group, float(rank + 1), "fp32", (1.0,) * len(group))


@settings(max_examples=300, deadline=None)
@given(
    group=st.lists(st.integers(0, 7), min_size=1, max_size=8),
    ranks=st.lists(st.integers(-1, 8), min_size=1, max_size=8),
    folded_ranks=st.lists(st.integers(-1, 8), max_size=6, unique=True),
    not_collective=st.integers(-1, 7),
    key=st.sampled_from(["a2a", "a2a#1"]),
)
def test_ordered_parts_as_before(
    group: list[int], ranks: list[int], folded_ranks: list[int], not_collective: int, key: str
) -> None:
    members = tuple(group)
    ops: list[Op] = [_part(members, r, key) for r in ranks]
    if 0 < not_collective < len(ops):  # never the first: both read its group
        ops[not_collective] = Compute("relu")
    folded = {"a2a": {r: _part(members, 100 + r, "a2a") for r in folded_ranks}}
    model = _model(folded)
    got = model._ordered_parts(ops, ranks)
    want = previous_ordered_parts(folded, ops, ranks)
    assert (got is None) == (want is None)
    if got is not None and want is not None:
        assert len(got) == len(want) and all(a is b for a, b in zip(got, want, strict=True))


def test_ordered_parts_whole_group() -> None:
    """A group of three, two parts given and one folded: in group order, the objects given."""
    group = (2, 0, 1)
    a, b, c = (_part(group, r, "x") for r in group)
    model = _model({"x": {1: c}})
    assert model._ordered_parts([b, a], [0, 2]) == [a, b, c]
    assert model._ordered_parts([b, a], [0, 0]) is None  # rank 0 twice
    assert model._ordered_parts([b, a, c], [0, 2, 1]) is None  # rank 1 given and folded


def test_kernel_js_as_kernel_j() -> None:
    """``kernel_js`` gives ``kernel_j``'s values, op by op, over a built graph's distinct ops, with
    a memo (its identity layer, the path written out) and without one."""
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2)
    plan = make_plan("table_wise", workload, system)
    memo = CostMemo(system, workload)
    simulation = simulate_training(system, workload, plan, SimulationOptions(costs=memo))
    assert simulation.graph is not None
    graph = simulation.graph
    ops = GraphIndex.of(graph).op_table.ops
    want = [graph_cost_model(system, workload, graph, None).kernel_j(op) for op in ops]
    assert any(want)
    # With the memo the simulation filled (found by identity), with a fresh one, and without.
    for shared in (memo, CostMemo(system, workload), None):
        assert graph_cost_model(system, workload, graph, shared).kernel_js(ops) == want
