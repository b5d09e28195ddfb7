"""``flexshard``: the greedy's options plus hot-row replication -- a table's hottest rows on every
GPU, so the lookups that land in them need no all-to-all.

Model (after FlexShard, Sethi et al., 2023, "FlexShard: Flexible Sharding for Industry-Scale
Sequence Recommendation Models"; the same idea as HugeCTR's hybrid embedding for MLPerf DLRM):
remap a table's ids by access frequency and replicate its hottest rows on every rank
(data-parallel: every rank serves its own samples' hot lookups locally, and the hot rows'
gradient is all-reduced); the cold rows stay sharded, and their owner returns only the bags that
drew at least one cold row (``ShardOps.bag_share``: ``1 - (1 - s)^P`` of them for a cold lookup
share ``s`` and pooling ``P`` drawn independently; with MLPerf's fixed multi-hot rows about the
share of the ids that are cold, ``FixedRowsModel.rank_bag_share``). FlexShard reports more than
85 % less all-to-all traffic on skewed production tables.

Here each table, in each of the greedy's orders (``greedy.table_orders``; the plan with the lower
estimated makespan is kept), takes whichever of its options places best
(``greedy.best_placement``: the lowest bound on the final makespan): the greedy's
statistics-free options (every allowed scheme and column split), and, for each hot-set size of
``Estimator.hot_rows_options``, the hottest rows replicated with the cold rows whole on one rank.
The estimator charges the replicated rows their lookups on every rank, their HBM on every rank
(the partitioner checks it) and their gradient all-reduce, so replication wins only where the
all-to-all it saves is worth more. Tier classes and precisions are tried as the greedy does:
HBM first, then the slow tiers, then lower precisions; ``InfeasibleError`` names the table, its
bytes and what was tried when nothing fits. Replication needs ``data_parallel`` (the hot rows) and
``table_wise`` (the cold rows) in ``planner.sharding_types``: without either, flexshard plans as the
greedy does.
"""

from __future__ import annotations

import math

from recsim.errors import InfeasibleError
from recsim.planner.estimator import Candidate
from recsim.planner.partitioners import Partitioner
from recsim.planner.proposers.base import PlanningContext, Proposer, register_proposer
from recsim.planner.proposers.greedy import (
    best_placement,
    finished_plan,
    plan_each_order,
    size_label,
)
from recsim.planner.types import Plan, Shard
from recsim.workload.spec import Table


def replication_candidates(
    ctx: PlanningContext, table: Table, dtype: str, tiers: list[str]
) -> list[Candidate]:
    """The table's hot-row replication options: each hot-set size, cold rows whole on each tier."""
    est = ctx.estimator
    out: list[Candidate] = []
    for tier in tiers:
        for k in est.hot_rows_options(table):
            cand = est.candidate(table, "table_wise", tier, dtype, hot_rows=k, hot_placement="replicate")
            if cand is not None and math.isfinite(cand.max_block_perf_s):
                out.append(cand)
    return out


def place_table_flex(
    ctx: PlanningContext, part: Partitioner, table: Table, remaining_s: float = 0.0
) -> list[Shard]:
    """The table's best fitting option among the greedy's and the replication ones."""
    est = ctx.estimator
    allow_hbm = "hbm" in ctx.config.tiers
    # The hot rows are replicated (data_parallel), the cold ones whole on one rank (table_wise):
    # where planner.sharding_types leaves either out, the greedy's options alone.
    replicate = allow_hbm and {"data_parallel", "table_wise"} <= set(ctx.config.sharding_types)
    slow = [t for t in est.tiers() if t != "hbm"]
    tried: list[str] = []
    for dtype in est.dtypes_for(table):
        for tiers in (["hbm"] if allow_hbm else [], slow):
            if not tiers:
                continue
            cands = est.candidates(table, dtype, tiers)
            if replicate:  # the replicated hot rows live in HBM
                cands += replication_candidates(ctx, table, dtype, tiers)
            shards = best_placement(part, cands, remaining_s)
            if shards is not None:
                return shards
            tried.append(f"{dtype} on {'/'.join(tiers)}")
    size = size_label(ctx, table)
    raise InfeasibleError(
        f"flexshard: table {table.name!r} ({table.rows} rows, {size} at {ctx.workload.table_dtype(table)}) "
        f"fits nowhere: tried {', '.join(tried) or 'no allowed tier'}; {part.free_summary()}"
    )


@register_proposer
class FlexShard(Proposer):
    name = "flexshard"
    description = "greedy plus hot-row replication (hottest rows on every GPU, cold rows sharded)"

    def propose(self, ctx: PlanningContext) -> Plan:
        # Replication keeps no tables off HBM first: the bin-packing order's HBM set goes unused.
        def place(part: Partitioner, table: Table, remaining_s: float, hbm_first: bool) -> object:
            return place_table_flex(ctx, part, table, remaining_s)

        return finished_plan(ctx, plan_each_order(ctx, "lpt", place), self.name)
