"""The owner side of the pooled exchange in HBM: its bytes per shard and rank, how the simulator's
memory report (``plan_usage``) charges them, and how the planner's partitioner places by them."""

from __future__ import annotations

import pytest

from recsim.config.loader import Override
from recsim.hardware.library import HardwareLibrary
from recsim.hardware.system import System
from recsim.planner.storage import (
    dense_hbm_bytes,
    plan_usage,
    pooled_by_rank,
    pooled_output_bytes,
    shard_storage,
)
from recsim.planner.types import Plan, Shard
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import Workload
from tests.conftest import FIXTURES

WL = WorkloadLibrary([FIXTURES / "workloads"])
HW = HardwareLibrary([FIXTURES / "minilib"])

# tiny-dlrm: global batch 8, dim 4, fp32 tables and training (no narrow output): table a pooled for
# the whole batch is 8 x 4 x 4 B.
A_POOLED = 8 * 4 * 4


@pytest.fixture(scope="module")
def tiny() -> Workload:
    return WL.workload("tiny-dlrm")


def two_gpus() -> System:
    return HW.system("tiny", [Override.parse("cluster.nodes=1"), Override.parse("node.accelerators.count=2")])


def test_a_table_owner_holds_its_global_batch_of_pooled_vectors(tiny):
    whole = Shard("a", "table_wise", 0, 100, 0, 4, (0,))
    assert pooled_output_bytes(whole, tiny, 2) == A_POOLED
    # whatever tier holds the rows: the lookups write the vectors in HBM
    assert pooled_output_bytes(Shard("a", "table_wise", 0, 100, 0, 4, (0,), tier="uvm"), tiny, 2) == A_POOLED
    # a column block its columns; each member of a row split its partial pools for every sample
    assert pooled_output_bytes(Shard("a", "column_wise", 0, 100, 0, 2, (1,)), tiny, 2) == 8 * 2 * 4
    assert pooled_output_bytes(Shard("a", "row_wise", 0, 50, 0, 4, (0,)), tiny, 2) == A_POOLED
    # no exchange: replicated rows serve the local batch, and a world of one sends nothing
    assert pooled_output_bytes(Shard("a", "data_parallel", 0, 100, 0, 4, (0, 1)), tiny, 2) == 0.0
    assert pooled_output_bytes(whole, tiny, 1) == 0.0


def test_narrow_lookups_write_half_precision_vectors():
    # fp16 training under the fused runtime (HugeCTR writes its lookups in the half precision,
    # ``Runtime.lookup_output_dtype``): 2 B a value; the eager runtime (TorchRec's TBE output
    # in the table's fp32) 4 B.
    fused = WL.workload("tiny-dlrm", [Override.parse("training.precision=fp16")])
    eager = WL.workload(
        "tiny-dlrm", [Override.parse("training.precision=fp16"), Override.parse("training.runtime=eager")]
    )
    whole = Shard("a", "table_wise", 0, 100, 0, 4, (0,))
    assert pooled_output_bytes(whole, fused, 2) == 8 * 4 * 2
    assert pooled_output_bytes(whole, eager, 2) == 8 * 4 * 4


def test_plan_usage_charges_the_owner_once_per_table_and_column_range(tiny):
    system = two_gpus()
    plan = Plan(
        2,
        (
            # a's hot rows replicated (no owner side), its cold rows owned by rank 0
            Shard("a", "data_parallel", 0, 10, 0, 4, (0, 1), order="popularity"),
            Shard("a", "table_wise", 10, 100, 0, 4, (0,), tier="uvm", order="popularity"),
            # b split by rows: each member pools every sample
            Shard("b", "row_wise", 0, 25, 0, 4, (0,)),
            Shard("b", "row_wise", 25, 50, 0, 4, (1,)),
        ),
    )
    assert pooled_by_rank(plan, tiny) == {0: 2 * A_POOLED, 1: A_POOLED}
    usage = plan_usage(plan, tiny, system)
    assert usage.pooled_by_rank == {0: 2 * A_POOLED, 1: A_POOLED}
    dense = dense_hbm_bytes(tiny, 2)
    for rank in (0, 1):
        rows = sum(shard_storage(s, tiny, 2).hbm_bytes for s in plan.shards if rank in s.ranks)
        assert usage.hbm_by_rank[rank] == dense + rows + pooled_by_rank(plan, tiny)[rank]
