"""``hier_auto``: HugeCTR's hierarchical node-level planner (NVIDIA's multi-node MLPerf DCNv2 plan)."""

from __future__ import annotations

import pytest

from recsim.api import make_plan, prepare
from recsim.errors import InfeasibleError
from recsim.planner.proposers import PlanningContext
from recsim.planner.proposers.hier_auto import HierTable, _Search, hugectr_table_bytes, table_cost
from recsim.planner.storage import capacity, check_fits, plan_usage


def search(hotness: list[float], per_table: float, nodes: int = 2, node_bytes: float = 1e12) -> _Search:
    tables = [HierTable(i, h, 1.0) for i, h in enumerate(hotness)]
    return _Search(tables, nodes, per_table, node_bytes)


def test_greedy_balances_hotness_plus_a_cost_per_table() -> None:
    # Uniform (every table over both nodes): 22 / 2 + 4 x 5 = 31. First round, hottest first to the
    # cheapest node (ties to the lower one): t0 -> n0 (15), t1 -> n1 (15), t2 -> n0 (21), t3 -> n1
    # (21): max 21. Later rounds split t0, then t1, then t2 and cost more (25, 26, ...): round 1 wins.
    assert search([10, 10, 1, 1], per_table=5).run() == [[0, 2], [1, 3]]


def test_cheap_communication_spreads_everything_over_every_node() -> None:
    # With a small cost per table, splitting the hot tables over both nodes ends at the uniform plan
    # (60.5), which no partial split beats: None means "every table everywhere".
    assert search([100, 10, 5], per_table=1).run() is None


def test_a_table_too_big_for_a_node_is_split_not_dropped() -> None:
    tables = [HierTable(0, 1.0, 150.0), HierTable(1, 1.0, 10.0), HierTable(2, 1.0, 10.0)]
    s = _Search(tables, 3, 5.0, 100.0)
    _, stuck = s.greedy()
    assert stuck == 0  # 150 B fit no 100 B node whole
    # Split t0 over two nodes (75 B each); then t1 split as the hottest splittable shard: max cost
    # 5.5 + 5.5 = 11 on the nodes holding both halves, below the uniform 3 / 3 + 3 x 5 = 16.
    best = s.run()
    assert best == [[2], [0, 1], [0, 1]]
    assert all(s.node_bytes_used(h) <= 100.0 for h in best)


def test_nvidia_ratio_and_replication_threshold_on_dgx_h100() -> None:
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=135168, precision="fp16")
    ctx = PlanningContext(system, workload)
    # NVIDIA's MEM_COMM_BW_RATIO=67 is 3.35 TB/s over 50 GB/s; over HugeCTR's work ratio 4.
    assert table_cost(ctx) == pytest.approx(67.0 / 4.0)
    # HugeCTR's measure: rows x 128 x 8 B under Adagrad; 0.0125 GB keeps tables below 12,207 rows.
    t = workload.table("t23")  # 12,973 rows: just above the threshold
    assert hugectr_table_bytes(ctx, t) == 12973 * 128 * 8.0
    plan = make_plan("hier_auto", workload, system)
    plan.validate(workload)
    replicated = {s.table for s in plan.shards if s.sharding == "data_parallel"}
    assert replicated == {t.name for t in workload.tables if t.rows * 128 * 8 < 12.5e6}
    assert "t23" not in replicated and "t3" in replicated
    # Every other table lives on whole nodes: one node's GPUs (table_row_wise) or several nodes'.
    for name, shards in plan.by_table().items():
        if name in replicated:
            continue
        ranks = sorted(r for s in shards for r in s.ranks)
        nodes = sorted({r // 8 for r in ranks})
        assert ranks == [r for n in nodes for r in range(n * 8, n * 8 + 8)]
        assert {s.sharding for s in shards} == {"table_row_wise" if len(nodes) == 1 else "row_wise"}
    check_fits(plan_usage(plan, workload, system), capacity(system))
    assert make_plan("hier_auto", workload, system) == plan  # deterministic


def test_one_node_is_not_hierarchical() -> None:
    system, workload = prepare("dgx-h100", "dlrm-dcnv2")
    with pytest.raises(InfeasibleError, match="more than one node"):
        make_plan("hier_auto", workload, system)
