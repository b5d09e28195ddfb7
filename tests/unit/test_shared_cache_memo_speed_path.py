"""``Estimator.shared_cache_s`` keeps its members' ops and access models by the shard's identity and
its figures by the identities of one object per distinct op: the same bits as pricing the fused
lookup from scratch (the plain path below, the engines' op and access model), whatever groups were
priced before and whether the shards are the objects seen before or equal copies of them."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.cost.embedding import embedding_cost
from recsim.graph.build import fused_embedding
from recsim.hardware.system import System
from recsim.planner.estimator import Estimator
from recsim.planner.types import Shard
from recsim.workload.access.mixture import fused_access_model
from recsim.workload.spec import Workload
from tests.unit.test_planner_shared_cache import TIER, gpus, skew  # noqa: F401  (a fixture)

NAMES = ["big", "mid", "hot1", "hot2"]


@pytest.fixture(scope="module")
def one_gpu() -> System:
    return gpus(1)


def plain_s(est: Estimator, shards: tuple[Shard, ...], pass_: str) -> float:
    """The fused lookup priced from scratch: ops made again, access models made again."""
    ops = [est.lookup_op(s, pass_) for s in shards]
    fused = fused_embedding(ops, f"tbe:{TIER}", TIER)
    if any(op.presorted for op in ops):
        fused = dataclasses.replace(fused, presorted=True)
    access = fused_access_model([est.access_of(s) for s in shards], [op.lookups for op in ops])
    return embedding_cost(fused, est.system, access).time_s


def whole(w: Workload, name: str) -> Shard:
    table = w.table(name)
    return Shard(name, "table_wise", 0, table.rows, 0, 64, (0,), tier=TIER)


@settings(max_examples=10, deadline=None)
@given(
    before=st.lists(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True), max_size=4),
    group=st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True),
    copies=st.booleans(),
)
def test_a_group_is_priced_as_from_scratch_whatever_came_before(
    skew: Workload,  # noqa: F811  (the fixture)
    one_gpu: System,
    before: list[list[str]],
    group: list[str],
    copies: bool,
) -> None:
    est = Estimator(one_gpu, skew)
    shards = {name: whole(skew, name) for name in NAMES}
    for names in before:
        est.shared_cache_s(tuple(shards[n] for n in names), "forward")
        est.shared_cache_s(tuple(shards[n] for n in names), "backward")
    # Equal shards that are other objects find the same ops and figures as the ones seen.
    asked = tuple(copy.copy(shards[n]) if copies else shards[n] for n in group)
    fresh = Estimator(one_gpu, skew)
    for pass_ in ("forward", "backward"):
        got = est.shared_cache_s(asked, pass_)
        assert got == plain_s(fresh, asked, pass_)
        assert got == est.shared_cache_s(asked, pass_)  # asked again: the kept figure
        assert got > 0.0


def test_groups_that_differ_get_their_own_figures(skew: Workload, one_gpu: System) -> None:  # noqa: F811
    """A group with a member more, or another member, is not answered by a kept figure."""
    est = Estimator(one_gpu, skew)
    big, hot1, hot2 = (whole(skew, n) for n in ("big", "hot1", "hot2"))
    alone = est.shared_cache_s((hot1,), "forward")
    beside = est.shared_cache_s((hot1, big), "forward")
    assert alone != beside
    assert beside == plain_s(Estimator(one_gpu, skew), (hot1, big), "forward")
    # hot2 is a copy of hot1 but for its name: another op, so another figure is looked up.
    other = plain_s(Estimator(one_gpu, skew), (hot2, big), "forward")
    assert est.shared_cache_s((hot2, big), "forward") == other
