"""``hier_auto`` and ``hugectr_auto``: HugeCTR's auto sharding, over nodes as NVIDIA's multi-node
MLPerf DLRM-DCNv2 submissions run it (``--sharding_plan hier_auto``), and over GPUs as its single-node
ones do (``--sharding_plan auto``).

What HugeCTR does (its DLRM-DCNv2 example's ``sharding.generate_plan`` and ``Planner``/``CostModel``;
NVIDIA's MLPerf Training v4.0 ``config_DGXH100_8x8x2112.sh`` and ``config_DGXH100_16x8x1056.sh`` set
``SHARDING_PLAN=hier_auto``, ``MEM_COMM_BW_RATIO=67`` and ``DP_SHARDING_THRESHOLD=0.0125``):

1. **Small tables are replicated.** A table smaller than ``planner.hier_dp_threshold_bytes``
   (HugeCTR's ``--dp_sharding_threshold`` of 0.0125 GB) is data-parallel on every GPU. The size is
   HugeCTR's measure, ``rows x dim x byte_per_elem`` with ``byte_per_elem`` 8 under Adagrad (an fp32
   weight and an fp32 accumulator per element) and 4 under SGD, whatever the tables' storage dtype:
   so the same tables are replicated as in NVIDIA's runs.
2. **The other tables go to nodes**, a node being one bucket whose GPUs split the table's rows
   (``table_row_wise``: partial pools reduced over NVLink, then sent to the sample owners over the
   node's NICs). A bucket's cost is its memory work plus its communication: each table on it costs
   its hotness (lookups per sample) divided by the number of nodes the table is split over, plus a
   fixed ``c = (HBM bandwidth / NIC bandwidth per GPU) / WORK_RATIO`` per table, because every table
   a node holds sends one pooled vector per sample over the network while a lookup reads one vector
   from HBM. NVIDIA's ``MEM_COMM_BW_RATIO=67`` is exactly the H100's 3.35 TB/s over NDR's 50 GB/s:
   recsim takes the ratio from the system, so another GPU or network gets its own.
3. **Greedy placement with hot-table splitting.** Tables (shards) hottest first, each to the
   cheapest node that does not hold that table yet and has room (the node's HBM less the planner's
   reserve, less the dense side and the replicated tables, for its share of the rows, the
   pooled vectors its GPUs write, ``pooled_bucket_bytes``, the reduce-scatter outputs its GPUs
   hold until the all-to-all sends them on, ``scatter_bucket_bytes``, and the ids they read,
   ``input_bucket_bytes``). After each placement the hottest table
   that can still be spread over twice as many nodes (up to all of them) is split and the greedy
   redone; a table that fits no node is split instead; ``SEARCH_ITERATIONS`` rounds. The plans seen
   (and the uniform one, every table over every node) are ranked by their busiest node's cost; the
   cheapest wins.
4. A table on one node is ``table_row_wise`` over its GPUs; one split over several nodes is
   ``row_wise`` over all their GPUs (rows by id, evenly), as HugeCTR row-shards a table over every
   GPU that lists it. ``hier_auto``'s plan says its row splits reduce per node
   (``Plan.row_split_exchange`` ``node``: HugeCTR's train.py takes its hierarchical communication
   with this planner); ``hugectr_auto``'s leaves the exchange to the framework.

Differences from HugeCTR, on purpose: ties between equally cheap nodes or equally hot shards go to
the lower index (a stable sort; NumPy's default sort leaves them to the algorithm); the replicated
tables are taken from every GPU's memory (HugeCTR deducts them once per node); a node's room holds
the pooled vectors, reduce-scatter outputs and input ids of the tables it holds besides their rows (HugeCTR's
counts the rows alone, and a placement whose vectors do not fit beside them is then refused by
``check_fits``). HugeCTR raises on one
node ("only applicable to configs with more than one node"): so does this proposer, and ``auto``
then leaves it out.

``hugectr_auto`` is the same search with every GPU a bucket of its own (HugeCTR's ``Planner`` over
``num_gpus``; NVIDIA's v4.0 single-node configs: ``SHARDING_PLAN=auto``, ``DP_SHARDING_THRESHOLD=
0.008``, ``MEM_COMM_BW_RATIO`` 7 on DGX H100 and 11 on HGX H200). A table's fixed cost is then
``c = (HBM bandwidth / scale-up bandwidth per GPU) / WORK_RATIO``: the pooled vectors a GPU's tables
send go over NVLink. NVIDIA's ratios are exactly that per-direction figure (3.35 TB/s / 450 GB/s =
7.4 on H100, 4.8 TB/s / 450 GB/s = 10.7 on H200), which recsim takes from the system; on several
nodes the scale-out bandwidth per GPU replaces it (the vectors cross the network). The threshold is
``planner.gpu_dp_threshold_bytes``; a table on one GPU is ``table_wise``, one split over several
GPUs ``row_wise`` over them.

Within the user's limits (``recsim.planner.limits``) the search restricts itself: without
``data_parallel`` in ``planner.sharding_types`` no table is replicated (HugeCTR with its threshold
at 0); without ``row_wise`` no table is split over several buckets (nor is the uniform plan a
candidate); without the one-bucket kind (``table_wise`` per GPU, ``table_row_wise`` per node)
every table starts split over two. Tables take the dtype the planner starts them at (the
workload's, unless ``planner.embedding_dtypes`` leaves it out). Without both kinds, or without HBM
in ``planner.tiers``, there is no HugeCTR plan: ``InfeasibleError`` says which limit. The plan's
notes name each restriction that applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recsim.errors import InfeasibleError
from recsim.planner.proposers.base import PlanningContext, Proposer, allowed_tiers, register_proposer
from recsim.planner.storage import (
    capacity,
    check_fits,
    dense_hbm_bytes,
    input_buffer_bytes,
    plan_usage,
    pooled_output_bytes,
    reduce_group_size,
    reduce_scatter_output_bytes,
    shard_storage,
    stored_row_bytes,
)
from recsim.planner.types import Plan, Shard
from recsim.units import Dimension, format_quantity
from recsim.workload.spec import Table

#: HugeCTR's ``--mem_comm_work_ratio`` default (8 / 2) in its DLRM-DCNv2 ``train.py``, which NVIDIA's
#: MLPerf configs keep: the memory work of a lookup against the communication work of a vector.
WORK_RATIO = 8.0 / 2.0
#: Embedding optimizers without state: HugeCTR counts 4 bytes per element for them (SGD), else 8.
STATELESS = ("none", "sgd", "sparse_sgd")
#: HugeCTR ``Planner(max_search_iter=20)``: greedy rounds, each after one more split.
SEARCH_ITERATIONS = 20


@dataclass(frozen=True)
class HierTable:
    """What the planner knows of a table: hotness, bytes with optimizer state, and ``pooled``, the
    HBM its pooled vectors take on a bucket that holds a shard of it (``pooled_bucket_bytes``)."""

    index: int
    hotness: float
    bytes: float
    pooled: float = 0.0
    #: split count (buckets) -> HBM the table's reduce-scatter outputs take on a bucket that holds a
    #: shard of it split so (``scatter_bucket_bytes``); a count left out: none
    scatter: dict[int, float] = field(default_factory=dict)
    #: split count (buckets) -> HBM the ids its GPUs read take on a bucket that holds a shard of the
    #: table split so (``input_bucket_bytes``); a count left out: none
    inputs: dict[int, float] = field(default_factory=dict)

    def bucket_bytes(self, splits: int) -> float:
        """HBM a bucket that holds a shard of the table split over ``splits`` buckets takes for it:
        its share of the rows, its pooled vectors, its reduce-scatter outputs and the ids it reads."""
        return (
            self.bytes / splits + self.pooled + self.scatter.get(splits, 0.0) + self.inputs.get(splits, 0.0)
        )


def hugectr_table_bytes(ctx: PlanningContext, table: Table) -> float:
    """HugeCTR's size of ``table`` for its replication threshold (module docstring, step 1)."""
    stateless = ctx.workload.training.embedding_optimizer in STATELESS
    return table.rows * ctx.workload.table_dim(table) * (4.0 if stateless else 8.0)


def table_bytes(ctx: PlanningContext, table: Table) -> float:
    """Weights and optimizer state of ``table`` at the dtype the planner starts it at (the
    workload's, unless ``planner.embedding_dtypes`` leaves it out)."""
    w = ctx.workload
    return table.rows * stored_row_bytes(
        w.table_dim(table), ctx.estimator.start_dtype(table), w.training.embedding_optimizer
    )


def pooled_bucket_bytes(ctx: PlanningContext, table: Table, per_bucket: int) -> float:
    """HBM ``table``'s pooled vectors take on a bucket of ``per_bucket`` GPUs that holds a shard of
    it: each GPU pools its rows for every sample of the global batch, a row split's member its
    partial pools before they are reduced (``storage.pooled_output_bytes``, which the plan's
    ``check_fits`` charges too). HugeCTR's ``Planner`` sizes its buckets by the tables' bytes alone;
    recsim adds the vectors, so that the search does not end at a placement ``check_fits`` then
    refuses (module docstring, step 3)."""
    w = ctx.workload
    dtype = ctx.estimator.start_dtype(table)
    whole = Shard(table.name, "table_wise", 0, table.rows, 0, w.table_dim(table), (), "hbm", dtype)
    return per_bucket * pooled_output_bytes(whole, w, ctx.world_size)


def input_bucket_bytes(ctx: PlanningContext, table: Table, per_bucket: int, splits: int) -> float:
    """HBM the ids ``table``'s lookups read take on a bucket of ``per_bucket`` GPUs that holds a
    shard of it split over ``splits`` buckets: on each GPU what ``storage.input_buffer_bytes``
    charges its shard (which the plan's ``check_fits`` charges too: under TorchRec's all-to-all the
    ids of its rows and a length a sample, under DLE's loader all the table's ids), summed over the
    GPUs of the bucket with the most rows as ``hier_plan`` cuts them (rows ``rows x j // n`` to
    ``rows x (j + 1) // n`` on the ``j``-th of the ``n`` GPUs)."""
    w = ctx.workload
    n = splits * per_bucket
    dim = w.table_dim(table)

    def rows_of(bucket: int) -> int:
        return table.rows * (bucket + 1) * per_bucket // n - table.rows * bucket * per_bucket // n

    fullest = max(range(splits), key=lambda b: (rows_of(b), -b))
    kind = "table_wise" if n == 1 else "row_wise"
    est = ctx.estimator
    total = 0.0
    for j in range(fullest * per_bucket, (fullest + 1) * per_bucket):
        start, end = table.rows * j // n, table.rows * (j + 1) // n
        if end > start:
            gpu = Shard(table.name, kind, start, end, 0, dim, (), "hbm")
            total += input_buffer_bytes(gpu, w, ctx.world_size, est.ops, est.framework)
    return total


def scatter_bucket_bytes(
    ctx: PlanningContext, table: Table, per_bucket: int, splits: int, node_size: int | None
) -> float:
    """HBM the reduce-scatter outputs of ``table`` take on a bucket of ``per_bucket`` GPUs that
    holds a shard of it split over ``splits`` buckets: on each GPU the output of its reduce group
    (all the split's GPUs, or each node's where the plan reduces per node, ``node_size``), as
    ``storage.reduce_scatter_by_rank`` charges the placed plan (``reduce_scatter_output_bytes``,
    the same sum). Exact where buckets are whole nodes (``hier_auto``); for single GPUs reduced per
    node the group is the GPUs of a node that hold the table, which the search does not know before
    it places them: it takes consecutive ones (``check_fits`` judges the plan)."""
    w = ctx.workload
    group = reduce_group_size(splits * per_bucket, node_size)
    world = ctx.world_size
    dim = w.table_dim(table)
    comm = ctx.estimator.comm_dtype
    return per_bucket * reduce_scatter_output_bytes(w.training.global_batch_size, dim, comm, group, world)


def table_cost(ctx: PlanningContext, *, within_node: bool = False) -> float:
    """The per-table communication cost ``c`` in lookups (module docstring, step 2): HBM bandwidth
    over the bandwidth per GPU the pooled vectors leave by (the NICs, or NVLink ``within_node``),
    or ``planner.hugectr_mem_comm_bw_ratio`` where set, over ``WORK_RATIO``."""
    configured = ctx.config.hugectr_mem_comm_bw_ratio
    if configured is not None:
        return configured / WORK_RATIO
    acc = ctx.system.accelerator
    if within_node:
        link = ctx.system.node.scale_up_bandwidth_bytes_per_s_per_accelerator
        what = "a scale-up fabric"
    else:
        link = ctx.system.scale_out_bandwidth_bytes_per_s_per_accelerator
        what = "a scale-out network"
    if acc is None or link <= 0:
        raise InfeasibleError(f"HugeCTR's auto sharding needs accelerators and {what}")
    return acc.hbm.bandwidth_bytes_per_s / link / WORK_RATIO


class _Search:
    """HugeCTR's greedy search (module docstring, step 3); a "node" here is a bucket of GPUs: a
    node's GPUs for ``hier_auto``, one GPU for ``hugectr_auto``."""

    def __init__(
        self,
        tables: list[HierTable],
        nodes: int,
        per_table: float,
        node_bytes: float,
        *,
        min_split: int = 1,
        max_split: int | None = None,
    ) -> None:
        """``min_split`` / ``max_split``: the fewest and most nodes a table may be split over
        (the user's ``planner.sharding_types``: 2 where a table may not stay on one node, 1 where
        it may not be split over several; the uniform plan counts only where it may)."""
        self.tables = {t.index: t for t in tables}
        self.nodes = nodes
        self.per_table = per_table
        self.node_bytes = node_bytes
        self.min_split = min_split
        self.max_split = nodes if max_split is None else max_split
        self.splits = {t.index: min_split for t in tables}

    def shards(self) -> list[int]:
        """One entry per shard (a table split ``k`` ways appears ``k`` times), hottest first."""
        out = [i for i in self.tables for _ in range(self.splits[i])]
        return sorted(out, key=lambda i: (-self.tables[i].hotness / self.splits[i], i))

    def node_cost(self, held: list[int]) -> float:
        return sum(self.tables[i].hotness / self.splits[i] for i in held) + self.per_table * len(held)

    def node_bytes_used(self, held: list[int]) -> float:
        """A node's share of the rows of the tables it holds, their pooled vectors whole (every
        member of a row split pools all samples: ``pooled_bucket_bytes``) and their reduce-scatter
        outputs (``scatter_bucket_bytes``)."""
        return sum(self.tables[i].bucket_bytes(self.splits[i]) for i in held)

    def greedy(self) -> tuple[list[list[int]], int | None]:
        """Shard lists per node, or the table that fit no node."""
        held: list[list[int]] = [[] for _ in range(self.nodes)]
        costs = [0.0] * self.nodes
        for i in self.shards():
            for node in sorted(range(self.nodes), key=lambda n: (costs[n], n)):
                if i in held[node]:
                    continue
                held[node].append(i)
                if self.node_bytes_used(held[node]) <= self.node_bytes:
                    costs[node] = self.node_cost(held[node])
                    break
                held[node].pop()
            else:
                return held, i
        return held, None

    def split(self, i: int) -> bool:
        if self.splits[i] * 2 > self.max_split:
            return False
        self.splits[i] *= 2
        return True

    def run(self) -> list[list[int]] | None:
        """The cheapest placement found, or None when the uniform one (every table everywhere) is,
        or, where tables may not be split over every node, when none was found."""
        everywhere = list(self.tables)
        uniform_cost = sum(self.tables[i].hotness for i in everywhere) / self.nodes
        best_cost, best = uniform_cost + self.per_table * len(everywhere), None
        if self.max_split < self.nodes:
            best_cost = float("inf")  # the uniform plan splits every table over every node
        for _ in range(SEARCH_ITERATIONS):
            held, stuck = self.greedy()
            if stuck is None:
                cost = max(self.node_cost(h) for h in held)
                if cost < best_cost:
                    best_cost, best = cost, held
                # The hottest shard whose table can still be spread over twice as many nodes.
                for i in self.shards():
                    if self.split(i):
                        break
            elif not self.split(stuck):
                break
        return best


def hier_plan(ctx: PlanningContext, name: str) -> Plan:
    """The node-level plan of the module docstring."""
    if ctx.system.num_nodes < 2:
        raise InfeasibleError("hier_auto needs more than one node (HugeCTR's hier_auto does too)")
    return _plan(
        ctx,
        name,
        per_bucket=ctx.system.node.num_accelerators,
        per_table=table_cost(ctx),
        threshold=ctx.config.hier_dp_threshold_bytes,
    )


def gpu_plan(ctx: PlanningContext, name: str) -> Plan:
    """The GPU-level plan of the module docstring (``hugectr_auto``)."""
    # One GPU: a single bucket, nothing to trade against communication.
    alone = ctx.world_size == 1
    return _plan(
        ctx,
        name,
        per_bucket=1,
        per_table=0.0 if alone else table_cost(ctx, within_node=ctx.system.num_nodes == 1),
        threshold=ctx.config.gpu_dp_threshold_bytes,
    )


def _plan(ctx: PlanningContext, name: str, *, per_bucket: int, per_table: float, threshold: float) -> Plan:
    """HugeCTR's search over buckets of ``per_bucket`` consecutive GPUs (module docstring)."""
    w = ctx.workload
    cfg = ctx.config
    system = ctx.system
    world = ctx.world_size
    if system.accelerator is None or world < 1 or per_bucket < 1 or world % per_bucket:
        raise InfeasibleError(f"{name} needs accelerators, the same number on every node")
    buckets = world // per_bucket
    # The user's limits. Every table lives in HBM. A table on one bucket is ``table_wise`` (one GPU)
    # or ``table_row_wise`` (one node's GPUs), one over several buckets ``row_wise``: the search
    # keeps to the kinds allowed. Without ``data_parallel`` no table is replicated (HugeCTR with
    # its threshold at 0).
    allowed = cfg.sharding_types
    if "hbm" not in allowed_tiers(ctx):
        raise InfeasibleError(
            f"{name} places every table in HBM, which planner.tiers ({', '.join(cfg.tiers)}) leaves out"
        )
    one_kind = "table_wise" if per_bucket == 1 else "table_row_wise"
    one, many = one_kind in allowed, "row_wise" in allowed and buckets > 1
    if not one and not many:
        raise InfeasibleError(
            f"{name} shards a table {one_kind} on one {'GPU' if per_bucket == 1 else 'node'} or row_wise "
            f"over several, which planner.sharding_types ({', '.join(allowed)}) leaves out"
            + ("" if buckets > 1 else " (one bucket: nothing to split over)")
        )
    notes: list[str] = []
    if "data_parallel" not in allowed:
        threshold = 0.0
        notes.append("no table replicated: planner.sharding_types leaves out data_parallel")
    if not one:
        notes.append(
            f"every table over several {'GPUs' if per_bucket == 1 else 'nodes'}: "
            f"planner.sharding_types leaves out {one_kind}"
        )
    if not many and buckets > 1:
        notes.append("no table split over several buckets: planner.sharding_types leaves out row_wise")
    everyone = tuple(range(world))
    sizes = [table_bytes(ctx, t) for t in w.tables]
    replicated = [k for k, t in enumerate(w.tables) if hugectr_table_bytes(ctx, t) < threshold]
    cap = capacity(system).less(cfg.hbm_reserve, cfg.ddr_reserve)
    # A replicated table's HBM on every rank: as placed (its gradient accumulator too, on several ranks).
    replicated_bytes = 0.0
    for k in replicated:
        t = w.tables[k]
        copy = Shard(
            t.name,
            "data_parallel",
            0,
            t.rows,
            0,
            w.table_dim(t),
            everyone,
            dtype=ctx.estimator.start_dtype(t),
        )
        replicated_bytes += shard_storage(copy, w, world).hbm_bytes
    # The loader's own buffers too (``Estimator.reader_hbm_bytes``), on every rank.
    reader = ctx.estimator.reader_hbm_bytes
    free_per_rank = cap.hbm_bytes_per_rank - dense_hbm_bytes(w, world) - reader - replicated_bytes
    if free_per_rank <= 0:
        raise InfeasibleError(
            f"{name}: the dense side, the loader's buffers and replicated tables leave no HBM for the others"
        )
    kept = set(replicated)
    # The node-level plan's row splits reduce per node (HugeCTR's hierarchical communication, which
    # its train.py takes with this planner); the GPU-level one leaves it to the framework. A
    # configured ``planner.row_split_exchange`` replaces either (``config.stamp_exchange``, which
    # the plan gets on its way out): the search sizes the buckets, and ``check_fits`` below judges
    # the plan, under the exchange it will run.
    exchange = cfg.row_split_exchange or ("node" if per_bucket > 1 else None)
    probe = Plan(world, (), strategy=name, row_split_exchange=exchange)
    node_size = ctx.estimator.framework.row_split_node_size(max(1, system.node.num_accelerators), probe)
    sharded = [
        HierTable(
            k,
            w.table_lookups(t),
            sizes[k],
            pooled_bucket_bytes(ctx, t, per_bucket),
            {n: scatter_bucket_bytes(ctx, t, per_bucket, n, node_size) for n in range(1, buckets + 1)},
            {n: input_bucket_bytes(ctx, t, per_bucket, n) for n in range(1, buckets + 1)},
        )
        for k, t in enumerate(w.tables)
        if k not in kept
    ]
    search = _Search(
        sharded,
        buckets,
        per_table,
        free_per_rank * per_bucket,
        min_split=1 if one else 2,
        max_split=None if many else 1,
    )
    placement = search.run()
    holders: dict[int, list[int]] = {}
    if placement is None and not many and buckets > 1 and sharded:
        room = format_quantity(free_per_rank * per_bucket, Dimension.BYTES, binary=True)
        where = "GPU" if per_bucket == 1 else "node"
        raise InfeasibleError(
            f"{name}: no placement of the tables, each on one {where} (planner.sharding_types leaves "
            f"out row_wise), fits the {room} of HBM each {where} has free"
        )
    if placement is None:
        holders = {t.index: list(range(buckets)) for t in sharded}
    else:
        for node, held in enumerate(placement):
            for k in held:
                holders.setdefault(k, []).append(node)
    shards: list[Shard] = []
    for k, table in enumerate(w.tables):
        dim, dtype = w.table_dim(table), ctx.estimator.start_dtype(table)
        if k in kept:
            shards.append(Shard(table.name, "data_parallel", 0, table.rows, 0, dim, everyone, "hbm", dtype))
            continue
        owners = sorted(holders[k])
        ranks = [r for bucket in owners for r in range(bucket * per_bucket, (bucket + 1) * per_bucket)]
        # One GPU holds the whole table; one node's GPUs split its rows; several nodes' GPUs too.
        kind = "table_wise" if len(ranks) == 1 else "table_row_wise" if len(owners) == 1 else "row_wise"
        n = len(ranks)
        for j, rank in enumerate(ranks):
            start, end = table.rows * j // n, table.rows * (j + 1) // n
            if end > start:
                shards.append(Shard(table.name, kind, start, end, 0, dim, (rank,), "hbm", dtype))
    plan = Plan(
        world,
        tuple(shards),
        strategy=name,
        notes=tuple(notes),
        comm_dtype=ctx.estimator.comm_dtype,
        row_split_exchange=exchange,
    )
    check_fits(plan_usage(plan, w, system), cap, what=name)
    return plan


@register_proposer
class HierAuto(Proposer):
    name = "hier_auto"
    description = (
        "HugeCTR hier_auto: small tables replicated, the rest row-split in nodes, hot ones over several"
    )

    def propose(self, ctx: PlanningContext) -> Plan:
        return hier_plan(ctx, self.name)


@register_proposer
class HugectrAuto(Proposer):
    name = "hugectr_auto"
    description = "HugeCTR auto (its single-node MLPerf plan): small tables replicated, the rest over GPUs"

    def propose(self, ctx: PlanningContext) -> Plan:
        return gpu_plan(ctx, self.name)
