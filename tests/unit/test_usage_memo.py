"""``plan_usage`` with a ``CostMemo`` (the dense bytes and shard storages kept across plans): the
same usage as without it, for the plan that filled it and for another plan after it."""

from __future__ import annotations

from recsim.api import make_plan, prepare
from recsim.cost.memo import CostMemo
from recsim.planner.storage import plan_usage


def test_a_memo_gives_the_usage_without_it() -> None:
    system, workload = prepare("dgx-a100", "rmc1", nodes=2)
    memo = CostMemo(system, workload)
    for strategy in ("table_wise", "row_wise", "table_wise", "data_parallel"):
        plan = make_plan(strategy, workload, system)
        assert plan_usage(plan, workload, system, memo) == plan_usage(plan, workload, system)
    assert ("dense", 16) in memo.storage  # kept: the next evaluation reads it
    assert len(memo.storage) > 1  # and the shards'


def test_a_memo_of_another_workload_is_not_read() -> None:
    system, workload = prepare("dgx-a100", "rmc1", nodes=2)
    _, other = prepare("dgx-a100", "dlrm-mlperf", nodes=2)
    memo = CostMemo(system, other)
    plan = make_plan("table_wise", workload, system)
    assert plan_usage(plan, workload, system, memo) == plan_usage(plan, workload, system)
    assert not memo.storage
