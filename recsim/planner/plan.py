"""Fixed, statistics-free plans: every table by one scheme, all in HBM at the workload's dtype.

These are the baselines the proposers are compared with (and what ``--plan table_wise`` etc.
run): ``table_wise_round_robin`` (whole tables rank by rank, in order), ``table_wise_greedy`` (whole
tables by LPT on lookup traffic), ``row_wise_all`` (every table over every rank), ``hybrid``
(row-wise for the tallest tables, LPT table-wise for the rest) and ``table_wise_mp_bottom`` (the
bottom MLP model-parallel on rank 0 and the tables by DLE's size-balanced buckets over the other
ranks, or all of them on up to four, as NVIDIA's DLE DLRM does). Their
pooled embeddings travel in the framework's default wire dtype (``runtime.default_wire_dtype``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from recsim.errors import InfeasibleError
from recsim.graph.runtime import default_wire_dtype
from recsim.planner.config import PlannerConfig, comm_dtypes_for
from recsim.planner.limits import with_start_dtypes
from recsim.planner.types import Plan, Shard
from recsim.workload.spec import Workload


def table_wise_round_robin(workload: Workload, world_size: int) -> Plan:
    """Whole tables on ranks 0, 1, ..., world_size - 1, 0, ... in table order, all in HBM."""
    if world_size < 1:
        raise InfeasibleError(f"world size must be >= 1, got {world_size}")
    shards = tuple(
        Shard(
            table=t.name,
            sharding="table_wise",
            row_start=0,
            row_end=t.rows,
            col_start=0,
            col_end=workload.table_dim(t),
            ranks=(i % world_size,),
            tier="hbm",
            dtype=workload.table_dtype(t),
        )
        for i, t in enumerate(workload.tables)
    )
    return Plan(
        world_size, shards, strategy="table_wise_round_robin", comm_dtype=default_wire_dtype(workload)
    )


def row_wise_all(workload: Workload, world_size: int) -> Plan:
    """Every table split by rows into ``world_size`` near-equal shards, one per rank."""
    shards = []
    for t in workload.tables:
        dim = workload.table_dim(t)
        bounds = [t.rows * r // world_size for r in range(world_size + 1)]
        if t.rows < world_size:
            # Too few rows to split: keep the table whole on one rank.
            shards.append(
                Shard(t.name, "table_wise", 0, t.rows, 0, dim, (0,), "hbm", workload.table_dtype(t))
            )
            continue
        for r in range(world_size):
            shards.append(
                Shard(
                    t.name, "row_wise", bounds[r], bounds[r + 1], 0, dim, (r,), "hbm", workload.table_dtype(t)
                )
            )
    return Plan(world_size, tuple(shards), strategy="row_wise", comm_dtype=default_wire_dtype(workload))


def table_wise_greedy(workload: Workload, world_size: int) -> Plan:
    """Whole tables, largest lookup traffic first, each on the rank with the least traffic so far (LPT)."""
    load = [0.0] * world_size
    shards = []
    order = sorted(workload.tables, key=lambda t: -workload.table_lookups(t) * workload.table_dim(t))
    for t in order:
        rank = min(range(world_size), key=lambda r: (load[r], r))
        load[rank] += workload.table_lookups(t) * workload.table_dim(t)
        dim = workload.table_dim(t)
        shards.append(Shard(t.name, "table_wise", 0, t.rows, 0, dim, (rank,), "hbm", workload.table_dtype(t)))
    return Plan(
        world_size, tuple(shards), strategy="table_wise_greedy", comm_dtype=default_wire_dtype(workload)
    )


#: Tables at least this tall are split by rows in ``hybrid``: a 40M-row table with 100 lookups per
#: sample (DLRM-DCNv2's t20) would otherwise keep one rank busy for most of a step. The threshold is
#: a planner default, not a calibration; the planner issue searches it.
ROW_WISE_MIN_ROWS = 10_000_000


def hybrid(workload: Workload, world_size: int, row_wise_min_rows: int = ROW_WISE_MIN_ROWS) -> Plan:
    """Row-wise for the tallest tables (over every rank), greedy table-wise (LPT) for the rest."""
    shards: list[Shard] = []
    load = [0.0] * world_size
    order = sorted(workload.tables, key=lambda t: -workload.table_lookups(t) * workload.table_dim(t))
    for t in order:
        dim = workload.table_dim(t)
        dtype = workload.table_dtype(t)
        if t.rows >= row_wise_min_rows and t.rows >= world_size:
            bounds = [t.rows * r // world_size for r in range(world_size + 1)]
            shards += [
                Shard(t.name, "row_wise", bounds[r], bounds[r + 1], 0, dim, (r,), "hbm", dtype)
                for r in range(world_size)
            ]
            continue
        rank = min(range(world_size), key=lambda r: (load[r], r))
        load[rank] += workload.table_lookups(t) * dim
        shards.append(Shard(t.name, "table_wise", 0, t.rows, 0, dim, (rank,), "hbm", dtype))
    return Plan(world_size, tuple(shards), strategy="hybrid", comm_dtype=default_wire_dtype(workload))


def dle_buckets(sizes: list[int], buckets: int) -> list[list[int]]:
    """NVIDIA DLE's table placement (``distribute_to_buckets``, dlrm/utils/distributed.py), as
    described there: tables by size (rows) largest first, each into the open bucket with the least
    rows so far (earlier buckets win ties), a bucket closing once it holds ``ceil(T / buckets)``
    tables; buckets are numbered in closing order, the ones still open last. Returns table indices
    per bucket; bucket ``i`` goes to rank ``i``."""
    cap = -(-len(sizes) // buckets)
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])  # stable: ties keep table order
    open_: list[list[int]] = [[] for _ in range(buckets)]
    closed: list[list[int]] = []
    for i in order:
        open_[0].append(i)
        if len(open_[0]) == cap:
            closed.append(open_.pop(0))
        open_.sort(key=lambda b: sum(sizes[j] for j in b))  # stable, as DLE's list.sort
    return closed + open_


#: From this many ranks up DLE keeps the bottom MLP's rank free of tables (``get_device_mapping``).
DLE_FREE_BOTTOM_RANK_ABOVE = 4


def table_wise_mp_bottom(workload: Workload, world_size: int) -> Plan:
    """NVIDIA DeepLearningExamples' hybrid-parallel DLRM: the bottom MLP model-parallel on rank 0
    (the whole global batch), whole tables by DLE's size-balanced buckets (``dle_buckets``) over
    all ranks, or, on more than four ranks, over all but rank 0, which then holds no table
    (DLE's ``get_device_mapping``, dlrm/utils/distributed.py: "for higher no. of GPUs, make sure
    the one with bottom mlp has no embeddings")."""
    tables = workload.tables
    sizes = [t.rows for t in tables]
    if workload.bottom_mlp and world_size > DLE_FREE_BOTTOM_RANK_ABOVE:
        buckets = [[], *dle_buckets(sizes, world_size - 1)]
    else:
        buckets = dle_buckets(sizes, world_size)
    shards = []
    for rank, bucket in enumerate(buckets):
        for i in bucket:
            t = tables[i]
            dim = workload.table_dim(t)
            shards.append(
                Shard(t.name, "table_wise", 0, t.rows, 0, dim, (rank,), "hbm", workload.table_dtype(t))
            )
    bottom = 0 if workload.bottom_mlp and world_size > 1 else None
    return Plan(
        world_size,
        tuple(shards),
        strategy="table_wise_mp_bottom",
        bottom_rank=bottom,
        comm_dtype=default_wire_dtype(workload),
    )


#: The statistics-free plans by strategy name: they need only the workload and the world size.
PLAIN_STRATEGIES: dict[str, Callable[[Workload, int], Plan]] = {
    "table_wise": table_wise_round_robin,
    "table_wise_greedy": table_wise_greedy,
    "row_wise": row_wise_all,
    "hybrid": hybrid,
    "table_wise_mp_bottom": table_wise_mp_bottom,
}


def plain_plan(name: str, workload: Workload, world_size: int, config: PlannerConfig) -> Plan:
    """``PLAIN_STRATEGIES[name]`` within ``config``'s precisions: every table at the dtype the
    planner starts it at (its own where ``planner.embedding_dtypes`` lists it, else the most
    precise listed one), the pooled embeddings in the first of ``planner.comm_dtypes``. Its
    schemes and tier are the strategy's own: ``recsim.planner.limits.check_limits`` refuses them
    where the limits leave them out."""
    plan = with_start_dtypes(PLAIN_STRATEGIES[name](workload, world_size), config, workload)
    wire = comm_dtypes_for(config, workload)[0]
    return plan if plan.comm_dtype == wire else dataclasses.replace(plan, comm_dtype=wire)
