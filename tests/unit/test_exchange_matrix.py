"""The pooled exchange as an array with shared rows gives exactly what the list of lists gave.

``shard_ops.pooled_exchange`` fills a numpy matrix (it used to fill a list of lists of floats);
``PooledExchange.rows`` / ``columns`` hand each rank its row and column as tuples, equal ones
shared; the cost layer's ``traffic_matrix`` converts each distinct row once; the estimator and the
plan statistics sum each distinct row once. Each is compared here, bit for bit, with the plain
version (kept below as the reference) on real plans of every pooled shape: table-wise,
row-wise (one group over the world), table-row-wise (per node), grid, a model-parallel bottom MLP,
HugeCTR's hybrid plan (distributed rows) and hot-row replication, with and without per-node row
splits.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from recsim.api import load_workload, make_plan, prepare
from recsim.cost.collectives.base import traffic_matrix
from recsim.errors import InfeasibleError
from recsim.graph.build import BuildOptions, build_training_step
from recsim.graph.ir import Collective, CollectiveOp
from recsim.graph.runtime import runtime
from recsim.graph.shard_ops import (
    ShardOps,
    exchange_sums,
    pooled_blocks,
    pooled_exchange,
    reduce_groups,
)
from recsim.planner.estimator import Estimator, plan_perf
from recsim.planner.stats import a2a_send_bytes
from recsim.planner.types import Plan, Shard
from recsim.workload.spec import DTYPE_BYTES, Workload

FIXTURES = Path(__file__).parent.parent / "fixtures"


def reference_pooled_exchange(ops, plan, global_batch, wire_bytes, node_size=None):
    """``shard_ops.pooled_exchange`` as first written: a list of lists, entry by entry."""
    world = plan.world_size
    b = global_batch // world
    send = [[0.0] * world for _ in range(world)]
    groups = defaultdict(int)
    for block in pooled_blocks(plan):
        ranks = tuple(sorted({r for s in block for r in s.ranks}))
        dim = block[0].dim
        if block[0].sharding == "distributed":
            for shard in block:
                vector = b * dim * wire_bytes * ops.bags_hit(shard.table, ops.member_share(shard))
                for member in shard.ranks:
                    row = send[member]
                    for q in range(world):
                        row[q] += vector
            continue
        if len(ranks) == 1:
            vector = b * dim * wire_bytes * ops.bag_share(block)
            row = send[ranks[0]]
            for q in range(world):
                row[q] += vector
            continue
        for sub in reduce_groups(ranks, node_size):
            if len(sub) == 1:
                row = send[sub[0]]
                for q in range(world):
                    row[q] += b * dim * wire_bytes
                continue
            groups[sub] += dim
            for q in range(world):
                member = sub[q % len(sub)]
                if member != q:
                    send[member][q] += b * dim * wire_bytes
    if plan.bottom_rank is not None and ops.w.bottom_mlp:
        row = send[plan.bottom_rank]
        for q in range(world):
            row[q] += b * ops.w.bottom_mlp[-1] * wire_bytes
    return send, dict(groups)


def _same_bits(got: list[float], want: list[float]) -> bool:
    """Equal values with equal signs of zero (``==`` alone takes -0.0 for 0.0)."""
    return got == want and [math.copysign(1.0, x) for x in got] == [math.copysign(1.0, x) for x in want]


def _tiny_hybrid() -> tuple[object, Plan]:
    """Rows 0-9 of ``a`` replicated, 10-99 distributed over four ranks; ``b`` whole on rank 1."""
    everyone = (0, 1, 2, 3)
    plan = Plan(
        4,
        (
            Shard("a", "data_parallel", 0, 10, 0, 4, everyone, "hbm", "fp32", "popularity"),
            Shard("a", "distributed", 10, 100, 0, 4, everyone, "hbm", "fp32", "popularity"),
            Shard("b", "table_wise", 0, 50, 0, 4, (1,), "hbm", "fp32", "id"),
        ),
        strategy="test",
    )
    return load_workload(FIXTURES / "workloads" / "tiny-dlrm.yaml"), plan


PLANS = [
    ("dgx-h100", "dlrm-dcnv2", 2, "table_wise"),
    ("dgx-h100", "dlrm-dcnv2", 2, "row_wise"),
    ("dgx-h100", "dlrm-dcnv2", 2, "table_row_wise"),
    ("dgx-h100", "dlrm-dcnv2", 2, "grid"),
    ("dgx-h100", "dlrm-dcnv2", 2, "flexshard"),
    ("dgx-a100", "dlrm-mlperf", 2, "hybrid_embedding"),
    ("dgx-a100", "dlrm-mlperf", 1, "table_wise_mp_bottom"),
    ("zionex", "model-a", 2, "greedy"),
]

#: model-a with 100 of its 1000 drawn tables (its seeded draw: the whole model's first 100 row
#: counts, widths drawn from its 4-384; fp16, its access statistics) under greedy on 2 ZionEX nodes
#: whose GPUs have 8 GB of HBM (``MODEL_A_SETS``), 1.6 s of CPU to plan: as the whole model on
#: 40 GB, more tables than HBM holds, so greedy's plan mixes table-wise, column-wise, row-wise,
#: table-row-wise and grid shards of nine widths on HBM, UVM caches and host memory (the whole
#: model: the same five schemes, ten widths). The whole model, 17 s of CPU of greedy planning a
#: process, is checked behind the ``slow`` marker.
MODEL_A_TABLES = 100
MODEL_A_SETS = [
    f"workload.table_groups[0].count={MODEL_A_TABLES}",
    "node.accelerators.device.hbm.capacity=8 GB",
]
SLOW = {"zionex-model-a-2-greedy"}


def _label(name: str, workload_name: str, nodes: int, plan_name: str, tables: int | None = None) -> str:
    return f"{name}-{workload_name}-{nodes}-{plan_name}" + (f"-{tables}t" if tables else "")


LABELS = [_label(*p) for p in PLANS] + [_label("zionex", "model-a", 2, "greedy", MODEL_A_TABLES)]


def _params(labels: list[str]) -> list[object]:
    return [pytest.param(x, marks=pytest.mark.slow) if x in SLOW else x for x in labels]


@functools.cache
def _case(label: str) -> tuple[Workload, Plan, int]:
    """The workload, plan and accelerators per node of case ``label``, built on first use and kept for
    the process: at import time (as a parametrize list) the zionex greedy plan alone took 15-25 s of
    every collection, in each pytest-xdist worker and for any ``-k`` selection."""
    if label == "tiny-hybrid":
        workload, plan = _tiny_hybrid()
        return workload, plan, 2
    if label == _label("zionex", "model-a", 2, "greedy", MODEL_A_TABLES):
        name, workload_name, nodes, plan_name = "zionex", "model-a", 2, "greedy"
        sets = MODEL_A_SETS
    else:
        name, workload_name, nodes, plan_name = next(p for p in PLANS if _label(*p) == label)
        sets = []
    system, workload = prepare(name, workload_name, nodes=nodes, precision="fp16", overrides=sets)
    return workload, make_plan(plan_name, workload, system), system.node.num_accelerators


@pytest.mark.parametrize("label", _params([*LABELS, "tiny-hybrid"]))
@pytest.mark.parametrize("node_size", [None, "node"])
def test_the_exchange_matrix_and_its_shared_rows_are_the_list_of_lists(label, node_size):
    workload, plan, per_node = _case(label)
    size = per_node if node_size == "node" else None
    ops = ShardOps(workload)
    batch = workload.training.global_batch_size
    for wire in (2.0, 4.0):
        got = pooled_exchange(ops, plan, batch, wire, size)
        want, groups = reference_pooled_exchange(ops, plan, batch, wire, size)
        assert got.reduce_groups == groups
        assert not got.send.flags.writeable
        assert got.any_all_to_all == any(any(row) for row in want)
        columns = [list(c) for c in zip(*want, strict=True)]
        for mine, theirs in ((got.rows, want), (got.columns, columns)):
            assert len(mine) == plan.world_size
            for row, expected in zip(mine, theirs, strict=True):
                assert type(row) is tuple and {type(x) for x in row} <= {float}
                assert _same_bits(list(row), expected)
            # Equal rows are one tuple, unequal ones are not.
            by_value = {}
            for row in mine:
                assert by_value.setdefault(tuple(map(float.hex, row)), row) is row
        assert exchange_sums(got.rows) == [math.fsum(row) for row in want]
        assert exchange_sums(got.columns) == [math.fsum(c) for c in columns]


@pytest.mark.parametrize("label", _params(LABELS))
def test_the_built_all_to_alls_share_rows_and_their_matrix_is_the_rows_read_one_by_one(label):
    workload, plan, per_node = _case(label)
    step = build_training_step(workload, plan, BuildOptions(validate_plan=False, ranks_per_node=per_node))
    # The splits the builder gave each rank: its row and column of the exchange, as first written.
    wire = DTYPE_BYTES[step.metadata["comm_dtype"]]
    node_size = runtime(workload.training.runtime).row_split_node_size(per_node, plan)
    matrix, _ = reference_pooled_exchange(
        ShardOps(workload), plan, workload.training.global_batch_size, wire, node_size
    )
    columns = [list(c) for c in zip(*matrix, strict=True)]
    parts: dict[str, list[Collective]] = defaultdict(list)
    for node in step.nodes:
        if isinstance(node.op, Collective) and node.op.op is CollectiveOp.ALL_TO_ALL:
            parts[node.op.key].append(node.op)
    assert parts
    for key, ops in parts.items():
        if key in ("a2a_fwd", "a2a_bwd"):
            forward = key == "a2a_fwd"
            for r, op in enumerate(ops):
                assert _same_bits(list(op.send_bytes), matrix[r] if forward else columns[r])
                assert _same_bits(list(op.recv_bytes), columns[r] if forward else matrix[r])
        # Graph order is rank order: row ``i`` is member ``i``'s.
        want = np.asarray([op.send_bytes for op in ops], dtype=float)
        got = traffic_matrix(ops)
        assert got.shape == want.shape and got.tobytes() == want.tobytes(), key
        for op in ops:
            assert op.bytes == sum(op.send_bytes)
        # Equal splits are one tuple (bit for bit: -0.0 is not 0.0).
        for field in ("send_bytes", "recv_bytes"):
            values = [getattr(op, field) for op in ops]
            assert len({id(v) for v in values}) == len({tuple(map(float.hex, v)) for v in values}), key


def test_exchange_sums_are_per_tuple_even_where_tuples_die_on_the_way():
    # A generator's tuples are freed as it goes: a sum cached by a dead tuple's id is not reused.
    assert exchange_sums(tuple([float(i)] * 3) for i in range(5)) == [0.0, 3.0, 6.0, 9.0, 12.0]
    shared = (1.0, 2.0)
    assert exchange_sums([shared, (3.0,), shared]) == [3.0, 3.0, 3.0]


def test_a_rank_must_be_an_integer_not_a_bool():
    workload, plan = _tiny_hybrid()
    table_b = plan.shards[-1]

    def with_b_on(*ranks):
        return dataclasses.replace(
            plan, shards=(*plan.shards[:-1], dataclasses.replace(table_b, ranks=ranks))
        )

    with pytest.raises(InfeasibleError, match="ranks"):
        with_b_on(True).validate(workload)
    with pytest.raises(InfeasibleError, match="bottom-MLP rank"):
        dataclasses.replace(plan, bottom_rank=True).validate(workload)
    with_b_on(np.int64(1)).validate(workload)  # any integer type is a rank
    plan.validate(workload)


def test_a_part_without_splits_reads_as_an_even_row_among_shared_ones():
    group = (0, 1, 2)
    shared = (1.0, 2.0, 3.0)
    ops = [
        Collective(CollectiveOp.ALL_TO_ALL, "x", group, 6.0, "fp32", shared, shared),
        Collective(CollectiveOp.ALL_TO_ALL, "x", group, 9.0, "fp32"),
        Collective(CollectiveOp.ALL_TO_ALL, "x", group, 6.0, "fp32", shared, shared),
    ]
    assert traffic_matrix(ops).tolist() == [[1.0, 2.0, 3.0], [3.0, 3.0, 3.0], [1.0, 2.0, 3.0]]


@pytest.mark.parametrize("plan_name", ["table_wise", "row_wise", "table_row_wise"])
def test_the_planner_figures_read_the_exact_row_and_column_sums(plan_name):
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, precision="fp16")
    plan = make_plan(plan_name, workload, system)
    est = Estimator(system, workload)
    wire = DTYPE_BYTES[plan.comm_dtype]
    node_size = runtime(workload.training.runtime).row_split_node_size(est.per_node, plan)
    want, _ = reference_pooled_exchange(est.ops, plan, workload.training.global_batch_size, wire, node_size)
    assert a2a_send_bytes(plan, workload, est) == [math.fsum(row) for row in want]
    # The estimator's exchange term: the larger of a rank's row and column sums.
    columns = list(zip(*want, strict=True))
    assert any(math.fsum(c) != math.fsum(r) for r, c in zip(want, columns, strict=True))
    fast = plan_perf(est, plan)

    # The reference exchange, one tuple per rank, nothing shared.
    plain = SimpleNamespace(
        send=np.asarray(want),
        reduce_groups=pooled_exchange(est.ops, plan, est.batch, wire, node_size).reduce_groups,
        rows=[tuple(row) for row in want],
        columns=[tuple(c) for c in columns],
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("recsim.planner.estimator.pooled_exchange", lambda *args: plain)
        assert plan_perf(est, plan) == fast
