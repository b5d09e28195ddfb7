"""``torchrec``'s plans pinned: a change to how the proposer searches (its partitioner's bookkeeping,
what it computes once rather than per proposal) must hand back the very plan it did.

Each case's plan is reduced to a digest of every shard's table, scheme, block, ranks, tier and
dtype and the plan's comm dtype, recorded from the proposer as of commit add8f6a (before its
partitioner checked a replicated or row-wise option once rather than once per proposal). The
cases between them pick every scheme but ``table_column_wise`` and both the ``hbm`` and
``uvm_caching`` tiers; a digest that moves is a changed plan, to be explained, not re-pinned."""

from __future__ import annotations

import hashlib

import pytest

from recsim.api import load_system, load_workload, make_plan
from recsim.planner.types import Plan

#: The p4d TorchRec validation cases' one-hot tables (``recsim.validation.cases._torchrec``).
ONE_HOT = tuple(f"tables[{i}].pooling=1" for i in range(26))

# name: (system, nodes, workload, workload overrides, planner overrides, shards, digest)
CASES: dict[str, tuple[str, int | None, str, tuple[str, ...], tuple[str, ...], int, str]] = {
    "p4d-sgd-table-wise": (
        "p4d-24xlarge",
        None,
        "dlrm-dcnv2",
        (*ONE_HOT, "training.embedding_optimizer=sgd", "training.global_batch_size=2048"),
        (),
        26,
        "489ea0bf90da5eaa",
    ),
    "p4d-adagrad-row-wise": (
        "p4d-24xlarge",
        None,
        "dlrm-dcnv2",
        (*ONE_HOT, "training.embedding_optimizer=adagrad", "training.global_batch_size=16384"),
        (),
        61,
        "3557a6a428128397",
    ),
    "zionex2-dcnv2-data-parallel-table-row-wise": ("zionex", 2, "dlrm-dcnv2", (), (), 61, "3e9033a9e5381fed"),
    "zionex1-mlperf-column-wise": (
        "zionex",
        1,
        "dlrm-mlperf",
        (),
        ("planner.sharding_types=[column_wise,table_column_wise,row_wise,table_row_wise]",),
        26,
        "467ec8f3fd3625ac",
    ),
    "zionex1-dcnv2-uvm-caching": (
        "zionex",
        1,
        "dlrm-dcnv2",
        (),
        ("planner.tiers=[uvm,uvm_caching]", "planner.cache_ratios=[0.2]"),
        40,
        "8b9a8f58dcc23646",
    ),
    "zionex4-rmc2": ("zionex", 4, "rmc2", (), (), 32, "f00a81ff8d21f41e"),
}

#: model-i (150 tables, 128 GPUs: about 4,500 proposals) and model-a (1000 tables, 128 GPUs: about
#: 30,000 proposals), the sizes the proposer's docstring times.
SLOW_CASES = {
    "zionex16-model-a": ("zionex", None, "model-a", (), (), 8000, "043b86ad0de6bd17"),
    "zionex16-model-i": ("zionex", None, "model-i", (), (), 1200, "a8a2701eb105e539"),
    "zionex2-model-i": ("zionex", 2, "model-i", (), (), 2400, "02f9517c89694974"),
}


def plan_digest(plan: Plan) -> str:
    """The first 16 hex digits of the SHA-256 of the plan's shards' placements (fields named, so a
    new field of ``Shard`` does not move it) and its comm dtype."""
    placed = tuple(
        (s.table, s.sharding, s.row_start, s.row_end, s.col_start, s.col_end, s.ranks, s.tier, s.dtype)
        for s in plan.shards
    )
    text = repr((plan.world_size, plan.strategy, plan.comm_dtype, placed))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check(case: tuple[str, int | None, str, tuple[str, ...], tuple[str, ...], int, str]) -> None:
    system_name, nodes, workload_name, workload_sets, planner_sets, shards, digest = case
    system = load_system(system_name, nodes=nodes)
    workload = load_workload(workload_name, overrides=workload_sets)
    plan = make_plan("torchrec", workload, system, planner=planner_sets)
    assert (len(plan.shards), plan_digest(plan)) == (shards, digest)


@pytest.mark.parametrize("name", sorted(CASES))
def test_plan_is_the_pinned_one(name: str) -> None:
    _check(CASES[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW_CASES))
def test_large_plan_is_the_pinned_one(name: str) -> None:
    _check(SLOW_CASES[name])
