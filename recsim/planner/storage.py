"""Memory accounting of a plan: what each rank keeps in HBM and each node in DDR and on SSDs.

**Per shard** (``shard_storage``), rows x (row bytes + optimizer state), where a row is ``dim x dtype``
bytes plus FBGEMM's per-row scale and bias for int8/int4 (its training TBE's) and the state is
FBGEMM's (fp32 whatever the table dtype: row-wise Adagrad one value per row, Adagrad one per
element, Adam two), lands:

- ``hbm``: in HBM on the shard's rank (every rank for data-parallel shards, which, replicated over
  several ranks, also keep an fp32 gradient accumulator of their rows: they train as dense
  parameters, ``recsim.planner.types.dense_gradient``);
- ``uvm`` / ``ddr`` / ``nmp``: in host DRAM of the rank's node (RecNMP's DIMMs *are* host memory);
- ``uvm_caching:r``: the table in host DRAM and a cache of ``r x rows`` rows (weights) in HBM with
  FBGEMM's bookkeeping: two int64 per cache slot (row id, LRU timestep) and an int32 per row of the
  whole table (``uvm_caching.cache_hbm_bytes``);
- for ``uvm`` and ``uvm_caching``, a row-wise optimizer state (row-wise Adagrad's fp32 a row) in
  HBM, not host DRAM: FBGEMM keeps it on the device (``recsim.cost.embedding.base.
  managed_state_in_hbm``); element-wise states stay with the rows in host DRAM;
- ``ssd`` / ``smartssd``: on the node's SSDs; the ``ssd`` tier's OS page cache (its parameter, a
  fraction of host memory) is host DRAM taken once per node that has SSD shards.

**Per rank** the dense side comes on top in HBM (``dense_hbm_bytes``): the dense model in fp32 with
its gradient and optimizer state (mixed precision keeps fp32 master weights), every dense layer's
output for the local batch in the training precision, and the pooled embeddings that the
backward pass needs -- the all-to-all's receive side, in the dtype the framework's dense side reads
them (``Runtime.received_pooled_dtype``: HugeCTR's and DLE's half precision under mixed precision,
TorchRec's fp32); and, where the framework builds a second,
forward-only network for evaluation (HugeCTR with a ``training.eval_batch_size``), that network's
outputs at the evaluation batch (``eval_network``). A model-parallel bottom MLP moves its outputs
for the whole batch, and its weights, to its rank (``mp_bottom_hbm_bytes``).

**Per shard and rank**, the owner side of that exchange (``pooled_output_bytes``): a rank that
pools a non-replicated shard pools it for the *global* batch -- a whole table's owner for every
sample, each member of a row split its partial pools for every sample before the reduce-scatter --
before the all-to-all sends each rank its samples, and receives their gradients for the global
batch in the backward. ``B x dim`` values in the dtype the lookups write (``Runtime.
lookup_output_dtype``, else the table's), once per (table, column range) a rank pools
(``pooled_block_bytes``: a hot / cold split on one rank writes one output); a part of a table (a
routed rank's share, a popularity slice) only the bags that drew one of its rows where the
framework's lookups pool those alone (``Runtime.pools_hit_bags_only``), as the graph's do. Whatever
tier holds the rows (UVM, DDR), the TBE writes these vectors in HBM. This is TorchRec's planner's
``output_sizes`` (torchrec/distributed/planner/shard_estimators.py,
``_calculate_tw_shard_io_sizes`` and the cw / rw / twrw ones: ``batch_size x world_size x shard
columns x output dtype bytes`` per shard, added to each shard's HBM in ``calculate_shard_storages``
whatever its compute kernel). One buffer, not two: the forward's output is freed once sent (the
TBE's backward does not read it), before its gradient arrives. A row split reduced over a group
``G`` smaller than the world (``graph.shard_ops.pooled_exchange``: per node under a hierarchical
plan, or a split over some of the ranks) also holds its reduce-scatter's output, the ``B / |G|``
samples' sums each member then sends on in the all-to-all (``B / |G| x dim`` values in the
reduce-scatter's forward wire dtype, ``graph.build.row_split_wire_dtypes``): counted with the
pooled vectors (``reduce_scatter_by_rank``). Over the whole world that output is the rank's own
samples, the receive side the dense activations count.
The planner counts the same bytes (``reduce_scatter_output_bytes``, one sum for all): the estimator
adds them to each block's storage (``Estimator.block``, a row split's reduce-scatter output over
its reduce group: per node where the plans reduce row splits so, ``planner.row_split_exchange``
``node`` on a framework that can), which its partitioner places, and ``hier_auto`` to the bytes of
a bucket that holds a row split (``pooled_bucket_bytes``).

**Per shard and rank**, the ids its lookups read (``input_buffer_bytes``): the input distribution
delivers an owner the ids (and lengths) of its shards' lookups for the global batch, which it holds
through the step (the TBE's backward reads them again). TorchRec's planner counts them as
``input_sizes`` (torchrec/distributed/planner/shard_estimators.py, ``calculate_shard_storages``
adds them to each shard's HBM; ``_calculate_tw_shard_io_sizes``: ``batch_size x world_size x
pooling factor x BIGINT_DTYPE`` (8 B) for a whole table, ``_calculate_cw_shard_io_sizes`` the same
for *every* column shard, ``_calculate_rw_shard_io_sizes`` ``1 / world_size`` of it,
``_calculate_twrw_shard_io_sizes`` ``1 / local_world_size``; a data-parallel shard the local
batch's, which it does not exchange). Here they are the bytes the graph's input all-to-all moves
(``ShardOps.input_dist_bytes``, one figure for both): a shard's share of the table's lookups (a row
split's member the ids of its rows, a column block all of them) at the workload's index width
(``training.index_dtype``, where TorchRec's planner assumes int64), and an int32 length a sample
(the KeyedJaggedTensor's, which TorchRec's planner leaves out). That is how TorchRec (``eager``)
delivers them; the other frameworks hold what their loaders give each rank
(``input_path``, as the graph's input pipeline chooses): DLE's (``cuda_graphs``) reads each table
it holds once for the global batch, int64 ids and no lengths (``graph.build.feature_index_bytes``,
``input_block_bytes`` once a table a rank); HugeCTR's hybrid embedding (``fused`` with routed
rows) gives every GPU the global batch's raw records, whatever its shards (its reader's buffers,
below). Replicated (``data_parallel``) shards get no input
distribution: none. How many batches of them an owner holds (``held_input_batches``): two under
TorchRec's ``TrainPipelineSparseDist`` (``eager``, ``Runtime.input_dist_follows_previous_copy``),
whose step ``i`` distributes batch ``i + 1``'s ids (``start_sparse_data_dist``, between this step's
forward and backward in the eager issue order) while batch ``i``'s backward still reads its own:
TorchRec's planner counts ``2 x input_size`` for it (``calculate_pipeline_io_cost``:
``PipelineType.TRAIN_SPARSE_DIST`` returns ``2 x input_size`` (+ the output size where it counts
ephemeral storage), ``TRAIN_PREFETCH_SPARSE_DIST`` ``3 x input_size`` plus the prefetch's, an
inference plan 0, any other pipeline the catch-all ``input_size + output_size``); two under DLE
(``cuda_graphs``), whose ``prefetcher`` copies the next batch to the device before this step runs
(``Runtime.prefetches_next_batch``); one under HugeCTR (``fused``), whose next batch waits in its
reader's own buffers. Those buffers -- HugeCTR's AsyncReaders' ``num_threads x
num_batches_per_thread`` record buffers on every GPU (the global batch's records under the hybrid
embedding) and the tensors they split them into, DLE's dense features and labels -- come on top of
the ids in a rank's inputs (``reader_buffers``: ``input_by_rank``); the planners keep them on every
rank beside the dense side (``rank_reader_bytes``, ``Estimator.reader_hbm_bytes``). The estimator
adds the ids to each block's storage (``Block.input_hbm_bytes``), the greedy proposers to the
least a table takes wherever its rows go (``greedy.least_io_bytes``), ``hier_auto`` to its buckets
(``input_bucket_bytes``), and RecShard budgets a hot set at the most its column splits take (each
block reads every id again: ``recshard.split_budget_bytes``), so that a placement the planner makes
fits ``check_fits``.

**Capacity** (``capacity``): the accelerator's HBM per rank, the node's host memory, and the node's
SSDs (count x capacity). ``check_fits`` compares the totals with the capacities less a reserve and
raises ``InfeasibleError`` naming the rank or node, the tier, the bytes and the largest tables on it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import add
from typing import TYPE_CHECKING

from recsim.cost.embedding.base import (
    accumulator_dtype,
    managed_state_in_hbm,
    optimizer_state_bytes,
    parse_tier,
    quant_row_overhead_bytes,
    tier_model,
)
from recsim.cost.embedding.uvm_caching import cache_hbm_bytes
from recsim.cost.memo import VALUES_KEPT, CostMemo, let_go_when_full
from recsim.errors import InfeasibleError
from recsim.graph.build import (
    OPTIMIZER_STATE,
    feature_index_bytes,
    trained_dense_layers,
)
from recsim.graph.shard_ops import ShardOps
from recsim.hardware.system import System
from recsim.planner.eval_network import eval_network_parts
from recsim.planner.reader_buffers import reader_by_rank
from recsim.planner.types import Plan, Shard, Storage, dense_gradient
from recsim.units import Dimension, format_quantity
from recsim.workload.spec import DTYPE_BYTES, INDEX_DTYPE_BYTES, Layer, Workload, wire_bytes_per_value

if TYPE_CHECKING:
    from recsim.graph.runtime import Runtime

#: Tiers whose rows live in host DRAM, and on SSDs.
HOST_TIERS = ("uvm", "uvm_caching", "ddr", "nmp")
SSD_TIERS = ("ssd", "smartssd")


def row_bytes(dim: int, dtype: str) -> float:
    """Stored bytes of one row of a trained table (int8 rows carry the training TBE's fp32 scale
    and bias, int4 rows an fp16 pair: ``quant_row_overhead_bytes``), as the training step's
    lookups read them (``EmbeddingCost.row_bytes``): the planner plans a training step."""
    return dim * DTYPE_BYTES[dtype] + quant_row_overhead_bytes(dtype)


def stored_row_bytes(dim: int, dtype: str, optimizer: str) -> float:
    """Bytes one row keeps with its optimizer state (``row_bytes`` plus FBGEMM's state)."""
    return row_bytes(dim, dtype) + optimizer_state_bytes(optimizer, dim)


def shard_storage(shard: Shard, workload: Workload, world_size: int | None = None) -> Storage:
    """Bytes one copy of ``shard`` keeps in HBM, host DRAM and on SSDs (its rank's, or its node's;
    one rank's share of a distributed shard). ``world_size``: the plan's (None: the shard's ranks
    tell, which a planner's candidate shard has not been given yet)."""
    table = workload.table(shard.table)
    dtype = shard.dtype or workload.table_dtype(table)
    optimizer = workload.training.embedding_optimizer
    per_row = stored_row_bytes(shard.dim, dtype, optimizer)
    world = len(shard.ranks) if world_size is None else world_size
    if dense_gradient(shard, world):  # its gradient accumulator (HugeCTR's, DDP's .grad)
        per_row += shard.dim * DTYPE_BYTES[accumulator_dtype(dtype)]
    rows = shard.rows_per_rank
    size = rows * per_row
    name, raw = parse_tier(shard.tier)
    if name == "hbm":
        return Storage(hbm_bytes=size)
    # FBGEMM keeps a row-wise optimizer state on the device even where the weights are in managed
    # memory (``managed_state_in_hbm``: ``construct_split_state``): rows x state in HBM, not DDR.
    state_hbm = 0.0
    if name in ("uvm", "uvm_caching") and managed_state_in_hbm(optimizer):
        state_hbm = rows * optimizer_state_bytes(optimizer, shard.dim)
    if name == "uvm_caching":
        ratio = tier_model(name).resolve_param(raw) or 0.0
        # FBGEMM allocates the cache in whole 32-way sets, rounded up (``uvm_caching.cache_rows``),
        # with its slots' tags and timesteps and a table map over every row of the shard.
        cache = cache_hbm_bytes(rows, ratio, row_bytes(shard.dim, dtype))
        return Storage(hbm_bytes=cache + state_hbm, ddr_bytes=size - state_hbm)
    if name == "uvm":
        return Storage(hbm_bytes=state_hbm, ddr_bytes=size - state_hbm)
    if name in HOST_TIERS:
        return Storage(ddr_bytes=size)
    if name in SSD_TIERS:
        return Storage(ssd_bytes=size)
    raise InfeasibleError(f"shard of {shard.table!r}: tier {shard.tier!r} has no storage model")


def pooled_output_bytes(
    shard: Shard,
    workload: Workload,
    world_size: int,
    ops: ShardOps | None = None,
    value_bytes: float | None = None,
    framework: Runtime | None = None,
) -> float:
    """HBM the owner side of the pooled exchange takes on each rank of ``shard`` (module
    docstring): ``B x dim`` values for the global batch ``B`` in the dtype the lookups write
    (``Runtime.lookup_output_dtype``, else the table's). None for a replicated (``data_parallel``)
    shard, whose lookups serve the local batch (``dense_hbm_bytes``'s pooled embeddings), nor in a
    world of one rank (no exchange).

    A lookup of a part of a table (a rank's share of a routed, ``distributed``, shard; a popularity
    slice) writes only the bags that drew one of its rows where the framework pools those alone
    (``Runtime.pools_hit_bags_only``: HugeCTR's kernels walk the lookups), ``ShardOps.part_bag_share``
    (``ops`` made here when not given), as the graph's lookup does
    (``ShardOps.op``); elsewhere (FBGEMM's TBE) every sample's bag, empty ones included, compacted
    only for the exchange. The reduce-scatter's output (``1 / |G|`` of a row split's partial pools)
    is ``reduce_scatter_by_rank``'s. ``value_bytes``, ``framework``: ``_pooled_value_bytes`` of
    ``shard`` and the workload's runtime, where the caller has them."""
    if world_size <= 1 or shard.sharding == "data_parallel":
        return 0.0
    w = workload
    framework = framework or _framework(w)
    bags = float(w.training.global_batch_size)
    if framework.pools_hit_bags_only and _is_part(shard, w):
        ops = ops or ShardOps(w)
        bags *= ops.part_bag_share(shard)
    return bags * (_pooled_value_bytes(shard, w) if value_bytes is None else value_bytes)


def _framework(workload: Workload) -> Runtime:
    """The workload's framework runtime (``training.runtime``)."""
    from recsim.graph.runtime import runtime  # the framework module reads the plan types

    return runtime(workload.training.runtime)


def _is_part(shard: Shard, workload: Workload) -> bool:
    """Whether ``shard``'s lookups read a part of its table whose bags not all draw a row: a rank's
    share of a routed (``distributed``) shard, or a popularity slice (``ShardOps.is_slice``)."""
    if shard.sharding == "distributed":
        return True
    return shard.order == "popularity" and shard.rows < workload.table(shard.table).rows


def _pooled_value_bytes(shard: Shard, workload: Workload, framework: Runtime | None = None) -> float:
    """Bytes of one of ``shard``'s pooled vectors: ``dim`` values in the dtype the lookups write
    (``Runtime.lookup_output_dtype``, else the table's)."""
    w = workload
    dtype = shard.dtype or w.table_dtype(w.table(shard.table))
    out = (framework or _framework(w)).lookup_output_dtype(w.training.precision, dtype) or dtype
    return shard.dim * DTYPE_BYTES[out]


def pooled_block_bytes(
    shards: Sequence[Shard],
    workload: Workload,
    world_size: int,
    ops: ShardOps | None = None,
    value_bytes: dict[tuple[str, int, str | None], float] | None = None,
) -> float:
    """``pooled_output_bytes`` of shards that live on one rank, per (table, column range) as they
    are pooled (``graph.shard_ops.pooled_blocks``): their sum, but no more than one output for
    every sample (a table's hot and cold rows on one rank write one ``B x dim`` output, or, where
    each part pools its hit bags alone, their hit bags). ``value_bytes``: a memo of the vectors'
    sizes by (table, dim, dtype), which a caller pricing many ranks of one plan shares."""
    pooled: dict[tuple[str, int, int], float] = defaultdict(float)
    whole: dict[tuple[str, int, int], float] = defaultdict(float)
    batch = float(workload.training.global_batch_size)
    sizes = {} if value_bytes is None else value_bytes
    framework = _framework(workload)
    for s in shards:
        size_key = (s.table, s.dim, s.dtype)
        size = sizes.get(size_key)
        if size is None:
            size = sizes[size_key] = _pooled_value_bytes(s, workload, framework)
        out = pooled_output_bytes(s, workload, world_size, ops, size, framework)
        if out > 0:
            key = (s.table, s.col_start, s.col_end)
            pooled[key] += out
            whole[key] = max(whole[key], batch * size)
    return sum(min(out, whole[key]) for key, out in pooled.items())


def pooled_by_rank(plan: Plan, workload: Workload, ops: ShardOps | None = None) -> dict[int, float]:
    """HBM of the owner side of ``plan``'s pooled exchange per rank (``pooled_block_bytes`` of each
    rank's shards); ranks without any left out.

    What ``pooled_block_bytes`` adds up per rank depends on each shard only through its (table,
    column range), its ``pooled_output_bytes`` and its whole-batch output: those are worked out
    once a shard (not once a shard and rank), and ranks whose shards give the same of them (a row
    split's members, a table-wise plan's ranks with equal tables) share one sum."""
    world = plan.world_size
    if world <= 1:
        return {}  # no exchange (``pooled_output_bytes``)
    framework = _framework(workload)
    hit_bags_only = framework.pools_hit_bags_only
    batch = float(workload.training.global_batch_size)
    precision = workload.training.precision
    out_bytes: dict[str, int] = {}  # table dtype -> bytes of a value the lookups write
    blocks: dict[int, list[tuple[tuple[str, int, int], float, float]]] = defaultdict(list)
    for s in plan.shards:
        if s.sharding == "data_parallel":
            continue
        dtype = s.dtype or workload.table_dtype(workload.table(s.table))
        value = out_bytes.get(dtype)
        if value is None:  # ``_pooled_value_bytes``'s dtype, once a table dtype
            out_dtype = framework.lookup_output_dtype(precision, dtype) or dtype
            value = out_bytes[dtype] = DTYPE_BYTES[out_dtype]
        size = s.dim * value
        whole = batch * size
        if hit_bags_only and _is_part(s, workload):
            if ops is None:
                ops = ShardOps(workload)  # once for the plan, where a part of a table asks
            out = pooled_output_bytes(s, workload, world, ops, size, framework)
        else:
            out = whole  # ``pooled_output_bytes``: every sample's bag
        if out > 0:  # pooled_block_bytes leaves the others out
            block = ((s.table, s.col_start, s.col_end), out, whole)
            for rank in s.ranks:
                blocks[rank].append(block)
    sums: dict[tuple[tuple[tuple[str, int, int], float, float], ...], float] = {}
    result: dict[int, float] = {}
    for rank in sorted(blocks):
        rank_blocks = tuple(blocks[rank])
        if len(rank_blocks) == 1:  # one positive output, no more than its whole-batch one
            _, out, whole = rank_blocks[0]
            total = min(out, whole)
        else:
            total = sums.get(rank_blocks)
            if total is None:
                total = sums[rank_blocks] = _capped_sum(rank_blocks)
        if total:
            result[rank] = total
    return result


def _capped_sum(blocks: Sequence[tuple[tuple[str, int, int], float, float]]) -> float:
    """``pooled_block_bytes``'s sum of (key, pooled output, whole-batch output) blocks of one rank:
    per key the outputs added, no more than the largest whole-batch output."""
    pooled: dict[tuple[str, int, int], float] = defaultdict(float)
    whole: dict[tuple[str, int, int], float] = defaultdict(float)
    for key, out, full in blocks:
        pooled[key] += out
        whole[key] = max(whole[key], full)
    return sum(min(out, whole[key]) for key, out in pooled.items())


def reduce_scatter_by_rank(plan: Plan, workload: Workload, ranks_per_node: int | None) -> dict[int, float]:
    """HBM of the reduce-scatter outputs of ``plan``'s row splits per rank (module docstring): per
    reduce group ``G`` smaller than the world (``graph.shard_ops.reduce_groups``, per node where the
    framework reduces row splits so: ``Runtime.row_split_node_size``), ``B / |G| x dim`` values of
    the forward wire on each member. Ranks without any left out; none for an int8 wire, which no
    framework reduces (``row_split_wire_dtypes`` refuses the plan)."""
    from recsim.graph.shard_ops import pooled_blocks, reduce_groups

    world = plan.world_size
    if world <= 1 or plan.comm_dtype == "int8":
        return {}
    node_size = _framework(workload).row_split_node_size(ranks_per_node, plan)
    batch = float(workload.training.global_batch_size)
    out: dict[int, float] = defaultdict(float)
    for block in pooled_blocks(plan):
        if block[0].sharding == "distributed":
            continue  # routed rows send their partial pools as they are: no reduce-scatter
        if len(block) == 1 and len(block[0].ranks) < 2:
            continue  # one shard on one rank (a table-wise plan's every block): no group, as below
        ranks = tuple(sorted({r for s in block for r in s.ranks}))
        if len(ranks) < 2:
            continue
        for group in reduce_groups(ranks, node_size):
            if 1 < len(group) < world:
                held = reduce_scatter_output_bytes(batch, block[0].dim, plan.comm_dtype, len(group), world)
                for member in group:
                    out[member] += held
    return dict(out)


def reduce_scatter_output_bytes(batch: float, dim: int, comm_dtype: str, group: int, world: int) -> float:
    """HBM the reduce-scatter output of a row split of ``dim`` columns takes on each member of a
    reduce group of ``group`` ranks in a world of ``world`` (module docstring): ``batch / group x
    dim`` values of the forward wire of ``comm_dtype`` (``graph.build.row_split_wire_dtypes``) for a
    group smaller than the world, else nothing (over the whole world the output is the rank's own
    samples, which the dense activations count); nothing for an int8 wire, which no framework
    reduces. The one sum ``reduce_scatter_by_rank``, the estimator's blocks and ``hier_auto``'s
    bucket sizing charge, so that a placement the planner makes fits ``check_fits``."""
    from recsim.graph.build import row_split_wire_dtypes

    if not 1 < group < world or comm_dtype == "int8":
        return 0.0
    return batch / group * dim * wire_bytes_per_value(row_split_wire_dtypes(comm_dtype)[0])


def reduce_group_size(split_ranks: int, node_size: int | None) -> int:
    """The size of the reduce groups of a row split over ``split_ranks`` ranks placed node by node
    (a whole node's GPUs, or whole nodes): all of them, or per node where the framework reduces row
    splits per node (``node_size``, ``Runtime.row_split_node_size``), as
    ``graph.shard_ops.reduce_groups`` groups a placed split's ranks."""
    return min(split_ranks, node_size) if node_size else split_ranks


def input_buffer_bytes(
    shard: Shard,
    workload: Workload,
    world_size: int,
    ops: ShardOps | None = None,
    framework: Runtime | None = None,
) -> float:
    """HBM the ids (and lengths) ``shard``'s lookups read take on each of its ranks for the global
    batch, each batch its owner holds (``held_input_batches``; module docstring), by how the
    framework delivers them (``input_path``):

    - ``all_to_all`` (TorchRec's ``KJTAllToAll``): ``ShardOps.input_dist_bytes`` for the global
      batch, the bytes the graph's input all-to-all delivers (each column block all the table's
      ids, a row split's member those of its rows, every shard a length a sample);
    - ``features`` (DLE's per-rank loader): the table's int64 ids for the global batch
      (``graph.build.feature_index_bytes``), once a table on a rank (``input_block_bytes``);
    - ``global_batch`` (HugeCTR's hybrid embedding): nothing per shard; every rank holds the whole
      batch's records in its reader's buffers (``reader_buffers``, ``input_by_rank``).

    Nothing for a replicated (``data_parallel``) shard: no input distribution, its lookups read the
    local batch's ids. ``ops``: made here where not given."""
    return _shard_input(shard, workload, world_size, ops, framework or _framework(workload))[1]


def _shard_input(
    shard: Shard, workload: Workload, world_size: int, ops: ShardOps | None, framework: Runtime
) -> tuple[str, float]:
    """``shard``'s input path (``input_path``; ``""`` for a replicated shard, which has none) and
    its ``input_buffer_bytes``: one decision, which ``input_block_bytes`` needs both halves of."""
    if shard.sharding == "data_parallel":
        return "", 0.0
    w = workload
    path = input_path(framework, Plan(world_size, (shard,)))
    if path == "features":
        batch = float(w.training.global_batch_size)
        return path, held_input_batches(framework) * feature_index_bytes(w, w.table(shard.table), batch)
    if path == "global_batch":
        return path, 0.0
    return path, distributed_ids_bytes(shard, w, ops or ShardOps(w), framework)


def held_input_batches(framework: Runtime) -> int:
    """How many batches of its ids an owner holds at once under ``framework`` (module docstring):
    two where its step distributes the next batch's ids while this batch's backward still reads its
    own (``Runtime.input_dist_follows_previous_copy``: TorchRec's ``TrainPipelineSparseDist``, whose
    planner counts ``2 x input_size``) or its loader copies the next batch to the device before this
    step (``Runtime.prefetches_next_batch``: DLE's ``prefetcher``, ``reader_buffers``), else one."""
    return 2 if framework.input_dist_follows_previous_copy or framework.prefetches_next_batch else 1


def distributed_ids_bytes(shard: Shard, workload: Workload, ops: ShardOps, framework: Runtime) -> float:
    """HBM the input all-to-all's ids (and lengths) of ``shard`` take on each of its ranks: the
    bytes one global batch's exchange delivers it (``ShardOps.input_dist_bytes``) times the batches
    the framework holds (``held_input_batches``). The one figure ``input_buffer_bytes`` (hence the
    estimator and the proposers) and ``input_by_rank`` (``plan_usage``) charge on that path."""
    w = workload
    batch = float(w.training.global_batch_size)
    one = ops.input_dist_bytes(shard, batch, INDEX_DTYPE_BYTES[w.training.index_dtype])
    return held_input_batches(framework) * one


def input_path(framework: Runtime, plan: Plan) -> str:
    """How ``framework`` delivers ``plan``'s ids to the ranks that look them up: ``global_batch``
    (``Runtime.global_batch_input``), ``features`` (``Runtime.per_rank_feature_input``), else
    ``all_to_all``, as ``graph.build._Builder.input_pipeline`` chooses."""
    if framework.global_batch_input(plan):
        return "global_batch"
    if framework.per_rank_feature_input(plan):
        return "features"
    return "all_to_all"


def input_block_bytes(
    shards: Sequence[Shard],
    workload: Workload,
    world_size: int,
    ops: ShardOps | None = None,
    framework: Runtime | None = None,
) -> float:
    """``input_buffer_bytes`` of shards that live on one rank: their sum where each shard gets its
    own ids (``all_to_all``: every column block, a hot and a cold part each theirs), once a table
    where the rank reads a table's feature once however many blocks of it it holds (``features``,
    as ``graph.build._Builder.per_rank_feature_input`` reads them): ``input_block_parts`` added up.
    The estimator's blocks charge this per block, before placement, with the once-a-table part
    apart (``Block.input_once_bytes``), so that blocks of one table put on one rank count those
    ids once there (``estimator.repeated_input_bytes``), as ``plan_usage`` does (``ids_by_rank``)."""
    own, once = input_block_parts(shards, workload, world_size, ops, framework)
    return own + math.fsum(once.values())


def input_block_parts(
    shards: Sequence[Shard],
    workload: Workload,
    world_size: int,
    ops: ShardOps | None = None,
    framework: Runtime | None = None,
) -> tuple[float, dict[str, float]]:
    """``input_block_bytes`` of ``shards`` in its two parts: the ids every shard gets its own copy
    of, summed (``all_to_all``), and by table those a rank reads once however many shards of the
    table it holds (``features``)."""
    framework = framework or _framework(workload)
    seen: dict[str, float] = {}
    total = 0.0
    for s in shards:
        path, size = _shard_input(s, workload, world_size, ops, framework)
        if size and path == "features":
            seen[s.table] = size
        else:
            total += size
    return total, seen


def input_by_rank(
    plan: Plan, workload: Workload, ops: ShardOps | None = None, kept: dict[object, object] | None = None
) -> dict[int, float]:
    """HBM of each rank's inputs under ``plan``: the ids it holds for its lookups
    (``input_buffer_bytes``, per rank ``input_block_bytes`` of its shards; ``held_input_batches`` of
    them) and its loader's own buffers (``reader_buffers.reader_by_rank``: HugeCTR's records and
    split tensors, among them the global batch's records where the framework gives every rank the
    whole batch; DLE's dense features and labels); ranks without any left out. ``kept``: a
    ``CostMemo.storage`` of ``workload`` (``plan_usage``), which keeps each distinct shard's ids and
    the reader's bytes per rank, pure functions of the workload, the shard and the world size."""
    w = workload
    framework = _framework(w)
    path = input_path(framework, plan)
    ids = _ids_by_rank(plan, w, framework, path, ops, kept)
    reader = reader_by_rank(plan, w, framework, path, held_input_batches(framework), kept)
    if not reader:
        return ids
    # ``ids.get(r, 0.0) + reader.get(r, 0.0)`` per rank, the same additions, iterated in C (a
    # comprehension over 128 ranks was a tenth of ``plan_usage``).
    ranks = sorted(ids.keys() | reader.keys())
    zero = repeat(0.0)
    return dict(zip(ranks, map(add, map(ids.get, ranks, zero), map(reader.get, ranks, zero)), strict=True))


def rank_reader_bytes(
    workload: Workload, world_size: int, framework: Runtime | None = None, routed_rows: bool = False
) -> float:
    """HBM of the loader's own buffers (``reader_buffers``) on the fullest rank of a plan of
    ``world_size`` ranks without a model-parallel bottom MLP and, unless ``routed_rows``, without
    routed rows: what the planners keep on every rank beside the dense side
    (``Estimator.reader_hbm_bytes``); the one sum ``input_by_rank`` adds to such a plan's ranks
    besides their ids. With ``routed_rows`` (``distributed`` shards: the hybrid embedding's plans),
    the reader the framework gives such a plan (HugeCTR: the one-hot reader of the global batch,
    ``Runtime.global_batch_input``)."""
    framework = framework or _framework(workload)
    everyone = tuple(range(world_size))
    routed = (
        tuple(
            Shard(t.name, "distributed", 0, t.rows, 0, workload.table_dim(t), everyone)
            for t in workload.tables[:1]
        )
        if routed_rows
        else ()
    )
    probe = Plan(world_size, routed)
    path = input_path(framework, probe)
    reader = reader_by_rank(probe, workload, framework, path, held_input_batches(framework))
    return max(reader.values(), default=0.0)


def ids_by_rank(plan: Plan, workload: Workload, ops: ShardOps | None = None) -> dict[int, float]:
    """The ids part of ``input_by_rank``: what each rank of ``plan`` holds for its lookups
    (``input_buffer_bytes``, per rank ``input_block_bytes`` of its shards), its loader's own
    buffers left out; ranks without any left out."""
    framework = _framework(workload)
    return _ids_by_rank(plan, workload, framework, input_path(framework, plan), ops)


def _ids_by_rank(
    plan: Plan,
    workload: Workload,
    framework: Runtime,
    path: str,
    ops: ShardOps | None,
    kept: dict[object, object] | None = None,
) -> dict[int, float]:
    """``ids_by_rank`` on ``path``: nothing where every rank gets the whole batch (its records are
    the reader's buffers). ``kept``: ``input_by_rank``'s."""
    w = workload
    if path == "global_batch":
        return {}
    if path == "all_to_all":
        ops = ops or ShardOps(w)
        out: dict[int, float] = defaultdict(float)
        for s in plan.shards:
            # A shard's ids are a function of the shard and the workload (``ops`` is of it): kept
            # by shard value in the memo, where given (a sweep's evaluations place the same shards).
            key = ("ids", s)
            found = kept.get(key) if kept is not None else None
            if isinstance(found, float):
                size = found
            else:
                size = distributed_ids_bytes(s, w, ops, framework)
                if kept is not None:
                    let_go_when_full(kept, VALUES_KEPT)[key] = size
            if size:
                for rank in s.ranks:
                    out[rank] += size
        return {r: out[r] for r in sorted(out)}
    # ``features``: each rank its tables' ids once (``input_block_bytes`` of its shards), summed
    # here once a table a rank rather than through ``input_buffer_bytes`` shard by shard, which
    # made plan_usage of a row-wise plan over 128 ranks four times slower (3.5 -> 15 ms).
    tables_of: dict[int, set[str]] = defaultdict(set)
    for s in plan.shards:
        if s.sharding != "data_parallel":
            for rank in s.ranks:
                tables_of[rank].add(s.table)
    batch = float(w.training.global_batch_size)
    held = held_input_batches(framework)
    names = {s.table for s in plan.shards}
    ids = {name: held * feature_index_bytes(w, w.table(name), batch) for name in names}
    blocks = {r: math.fsum(ids[name] for name in tables_of[r]) for r in sorted(tables_of)}
    return {r: v for r, v in blocks.items() if v}


def page_cache_fraction(tier: str) -> float:
    """The share of host memory an ``ssd`` tier's page cache asks (``ssd:<fraction>``; 0 for
    other tiers). A node books one page cache, at the largest fraction its shards ask."""
    name, raw = parse_tier(tier)
    if name != "ssd":
        return 0.0
    return tier_model(name).resolve_param(raw) or 0.0


def page_cache_bytes(shard: Shard, system: System) -> float:
    """Host DRAM the ``ssd`` tier's page cache takes on the node (0 for other tiers)."""
    return page_cache_fraction(shard.tier) * system.node.host_memory_capacity_bytes


def _dense_layer_bytes(workload: Workload, layers: Sequence[Layer], batch: float) -> tuple[float, float]:
    """(weights with their gradient and optimizer state in fp32, outputs for ``batch`` samples in
    the training precision) of ``layers``."""
    state = OPTIMIZER_STATE[workload.training.optimizer]
    weights = sum(layer.params for layer in layers) * 4.0 * (2 + state)
    outputs = batch * DTYPE_BYTES[workload.training.precision] * sum(layer.out_features for layer in layers)
    return weights, outputs


def dense_weight_bytes(workload: Workload) -> float:
    """The dense model's weights with their gradients and optimizer state, in fp32: what every rank
    holds whatever its batch (the layers as the framework trains them, a padded layer's extra weights
    too: ``graph.build.trained_dense_layers``)."""
    return _dense_layer_bytes(workload, trained_dense_layers(workload), 0.0)[0]


def dense_hbm_parts(workload: Workload, world_size: int) -> tuple[float, float]:
    """``dense_hbm_bytes`` in its two parts: the dense weights with their gradients and optimizer
    state with the framework's evaluation network's copy of them, and the activations of the rank's
    batch (every dense layer's output and the pooled embeddings it receives) with those of the
    evaluation network at its evaluation batch (``eval_network.eval_network_parts``)."""
    b = workload.training.global_batch_size / world_size
    weights, activations = _dense_layer_bytes(workload, trained_dense_layers(workload), b)
    # The pooled embeddings each rank receives for its samples, held for the backward in the
    # dtype its dense side reads them (``Runtime.received_pooled_dtype``: fp16 under HugeCTR's and
    # DLE's mixed precision, was fp32 for every framework).
    received = DTYPE_BYTES[_framework(workload).received_pooled_dtype(workload)]
    pooled = b * received * sum(workload.table_dim(t) for t in workload.tables)
    # HugeCTR's evaluation network, its weights and its activations at the evaluation batch held
    # beside these for the run (0 without a ``training.eval_batch_size``; ``eval_network``).
    eval_weights, eval_activations = eval_network_parts(workload, world_size)
    return weights + eval_weights, activations + pooled + eval_activations


def dense_hbm_bytes(workload: Workload, world_size: int) -> float:
    """HBM every rank needs for the dense model, its optimizer and the activations of its batch."""
    weights, activations = dense_hbm_parts(workload, world_size)
    return weights + activations


def mp_bottom_hbm_parts(
    workload: Workload, world_size: int, bottom_rank: int
) -> dict[int, tuple[float, float]]:
    """What a model-parallel bottom MLP (``Plan.bottom_rank``) changes in ``dense_hbm_parts``, as
    (weights, activations) per rank: its rank keeps the bottom layers' outputs for the whole global
    batch, the other ranks neither those outputs nor the bottom weights, their gradients and
    optimizer state."""
    bottom = [layer for layer in workload.dense_layers if layer.part == "bottom"]
    if not bottom:
        return {}
    batch = workload.training.global_batch_size
    b = batch / world_size
    weights, local = _dense_layer_bytes(workload, bottom, b)
    _, whole = _dense_layer_bytes(workload, bottom, batch)
    return {r: (0.0, whole - local) if r == bottom_rank else (-weights, -local) for r in range(world_size)}


def mp_bottom_hbm_bytes(workload: Workload, world_size: int, bottom_rank: int) -> dict[int, float]:
    """``mp_bottom_hbm_parts``, its two parts together: what a model-parallel bottom MLP changes in
    ``dense_hbm_bytes`` per rank."""
    parts = mp_bottom_hbm_parts(workload, world_size, bottom_rank)
    return {r: weights + activations for r, (weights, activations) in parts.items()}


#: The kinds of bytes that fill a rank's HBM (``Usage.hbm_parts``): its shards' rows with their
#: optimizer state and caches, the dense weights with their gradients and optimizer state, the
#: activations of its batch, and the pooled vectors it writes as an owner (``pooled_output_bytes``,
#: with its row splits' reduce-scatter outputs: ``reduce_scatter_by_rank``), and its inputs: the ids
#: its lookups read and its loader's own buffers (``input_by_rank``).
HBM_PARTS = ("tables", "dense", "activations", "pooled", "inputs")


@dataclass(frozen=True)
class Usage:
    """A plan's bytes per rank (HBM) and per node (host DRAM, SSD), with what fills them: a rank's
    HBM is its dense weights (``dense_by_rank``), its activations (``activations_by_rank``), its
    shards' bytes (``tables_by_rank``), its pooled vectors (``pooled_by_rank``) and its inputs, the
    ids its lookups read and its loader's own buffers (``input_by_rank``)."""

    hbm_by_rank: dict[int, float]
    ddr_by_node: dict[int, float]
    ssd_by_node: dict[int, float]
    dense_hbm_bytes: float
    tables_by_rank: dict[int, dict[str, float]]  # rank -> table -> HBM bytes
    tables_by_node: dict[int, dict[str, float]]  # node -> table -> DDR + SSD bytes
    #: rank -> HBM of the owner side of the pooled exchange (``pooled_output_bytes``)
    pooled_by_rank: dict[int, float] = field(default_factory=dict)
    #: rank -> HBM of the dense weights with their gradients and optimizer state (``dense_hbm_parts``)
    dense_by_rank: dict[int, float] = field(default_factory=dict)
    #: rank -> HBM of the activations of its batch: the dense layers' outputs and the pooled
    #: embeddings it receives (``dense_hbm_parts``)
    activations_by_rank: dict[int, float] = field(default_factory=dict)
    #: rank -> HBM of the ids (and lengths) its lookups read for the global batch, each batch it holds,
    #: and of its loader's own buffers (``input_by_rank``, ``reader_buffers``)
    input_by_rank: dict[int, float] = field(default_factory=dict)

    def hbm_parts(self, rank: int) -> dict[str, float]:
        """What fills ``rank``'s HBM, by kind (``HBM_PARTS``): they add up to ``hbm_by_rank``."""
        return {
            "tables": math.fsum(self.tables_by_rank.get(rank, {}).values()),
            "dense": self.dense_by_rank.get(rank, 0.0),
            "activations": self.activations_by_rank.get(rank, 0.0),
            "pooled": self.pooled_by_rank.get(rank, 0.0),
            "inputs": self.input_by_rank.get(rank, 0.0),
        }


def plan_usage(plan: Plan, workload: Workload, system: System, memo: CostMemo | None = None) -> Usage:
    """Bytes of ``plan`` per rank and node on ``system`` (ranks fill nodes in order). ``memo``: a
    ``CostMemo`` of ``workload``, which keeps the dense model's bytes per world size and each
    distinct shard's storage (``CostMemo.storage``: a sweep's or planner's evaluations place the
    same shards again); the same values as without it."""
    per_node = max(1, system.node.num_accelerators)
    kept = memo.storage if memo is not None and memo.workload is workload else None
    dense_key = ("dense", plan.world_size)
    parts = kept.get(dense_key) if kept is not None else None
    if parts is None:
        parts = dense_hbm_parts(workload, plan.world_size)
        if kept is not None:
            let_go_when_full(kept, VALUES_KEPT)[dense_key] = parts
    weights, activations = parts  # type: ignore[misc]
    dense = weights + activations
    # The ranks' dicts made from the first one's keys (``dict.fromkeys`` of a dict takes its size
    # and hashes at once; of a range it hashes and grows: a tenth of this function at 128 ranks).
    dense_by: dict[int, float] = dict.fromkeys(range(plan.world_size), weights)
    hbm: dict[int, float] = dict.fromkeys(dense_by, dense)
    activations_by: dict[int, float] = dict.fromkeys(dense_by, activations)
    if plan.bottom_rank is not None and plan.world_size > 1:
        for r, (w, a) in mp_bottom_hbm_parts(workload, plan.world_size, plan.bottom_rank).items():
            hbm[r] += w + a
            dense_by[r] += w
            activations_by[r] += a
    ddr: dict[int, float] = defaultdict(float)
    ssd: dict[int, float] = defaultdict(float)
    cache: dict[int, float] = defaultdict(float)
    by_rank: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_node: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    pooled = pooled_by_rank(plan, workload)
    for rank, out in reduce_scatter_by_rank(plan, workload, per_node).items():
        pooled[rank] = pooled.get(rank, 0.0) + out
    for rank, out in pooled.items():
        hbm[rank] += out
    # The memo's shard figures (``CostMemo.shard_ops``, of this workload), which the builder reads
    # next: the same values as a fresh ``ShardOps``'s, without making its tables' again.
    inputs = input_by_rank(plan, workload, memo.shard_ops if kept is not None else None, kept)
    # ``hbm[rank] += held`` for each rank in turn (a rank out of the world raises ``KeyError``
    # alike), iterated in C: the inputs are on every rank (HugeCTR's readers).
    hbm.update(zip(inputs, map(add, map(hbm.__getitem__, inputs), inputs.values()), strict=True))
    host_bytes = system.node.host_memory_capacity_bytes
    storages: dict[tuple[object, ...], Storage] = {}
    page_caches: dict[str, float] = {}
    nodes_of: dict[tuple[int, ...], tuple[int, ...]] = {}
    world = plan.world_size
    for shard in plan.shards:
        key = (shard.table, shard.sharding, shard.rows_per_rank, shard.dim, shard.tier, shard.dtype)
        st = storages.get(key)
        if st is None:
            # A shard's storage is a function of these fields, the world size and the workload.
            found = kept.get((key, world)) if kept is not None else None
            st = storages[key] = found if found is not None else shard_storage(shard, workload, world)
            if kept is not None and found is None:
                let_go_when_full(kept, VALUES_KEPT)[(key, world)] = st
        page = page_caches.get(shard.tier)
        if page is None:  # ``page_cache_bytes``, once a tier
            page = page_caches[shard.tier] = page_cache_fraction(shard.tier) * host_bytes
        ranks = shard.ranks
        shard_nodes = nodes_of.get(ranks)
        if shard_nodes is None:
            shard_nodes = nodes_of[ranks] = tuple(dict.fromkeys(rank // per_node for rank in ranks))
        table, hbm_bytes = shard.table, st.hbm_bytes
        if hbm_bytes:
            for rank in ranks:
                hbm[rank] += hbm_bytes
                by_rank[rank][table] += hbm_bytes
        else:
            for rank in ranks:
                hbm[rank] += hbm_bytes  # a rank out of the plan's world raises, as it always did
        if page:  # the largest a node's shards ask: once a node of the shard is as once a rank
            for node in shard_nodes:
                cache[node] = max(cache[node], page)
        host, ssd_bytes = st.ddr_bytes, st.ssd_bytes
        if host or ssd_bytes:  # added once a rank, in the order they always were
            for rank in ranks:
                node = rank // per_node
                ddr[node] += host
                ssd[node] += ssd_bytes
                by_node[node][table] += host + ssd_bytes
    # The nodes with shards in the order they come (ddr's and ssd's keys): a node first comes with
    # the first shard of its ranks, whose ranks came first then.
    nodes = dict.fromkeys(node for shard_nodes in nodes_of.values() for node in shard_nodes)
    ddr = {node: ddr.get(node, 0.0) + cache.get(node, 0.0) for node in nodes}
    ssd = {node: ssd.get(node, 0.0) for node in nodes}
    return Usage(
        dict(hbm),
        dict(ddr),
        dict(ssd),
        dense,
        {r: dict(v) for r, v in by_rank.items()},
        {n: dict(v) for n, v in by_node.items()},
        pooled,
        dense_by,
        activations_by,
        inputs,
    )


@dataclass(frozen=True)
class Capacity:
    """Bytes available per rank (HBM) and per node (host DRAM, SSDs)."""

    hbm_bytes_per_rank: float
    ddr_bytes_per_node: float
    ssd_bytes_per_node: float
    ranks_per_node: int

    @classmethod
    def unlimited(cls, ranks_per_node: int = 1) -> Capacity:
        """No limits (fixed schemes place blindly; the simulation then checks memory)."""
        inf = float("inf")
        return cls(inf, inf, inf, ranks_per_node)

    def less(self, hbm_reserve: float, ddr_reserve: float) -> Capacity:
        return Capacity(
            self.hbm_bytes_per_rank * (1 - hbm_reserve),
            self.ddr_bytes_per_node * (1 - ddr_reserve),
            self.ssd_bytes_per_node,
            self.ranks_per_node,
        )


def capacity(system: System) -> Capacity:
    node = system.node
    acc = system.accelerator
    ssds = node.ssds.count * node.ssds.device.capacity_bytes if node.ssds else 0.0
    return Capacity(
        acc.hbm.capacity_bytes if acc else 0.0,
        node.host_memory_capacity_bytes,
        ssds,
        max(1, node.num_accelerators),
    )


def _b(x: float) -> str:
    return format_quantity(x, Dimension.BYTES, binary=True)


def _largest(tables: dict[str, float], n: int = 3) -> str:
    top = sorted(tables.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{name} {_b(size)}" for name, size in top)


def check_fits(usage: Usage, cap: Capacity, *, what: str = "plan") -> None:
    """Raise ``InfeasibleError`` at the first rank or node whose bytes exceed ``cap``."""
    for rank, used in sorted(usage.hbm_by_rank.items(), key=lambda kv: -kv[1])[:1]:
        if used > cap.hbm_bytes_per_rank:
            tables = usage.tables_by_rank.get(rank, {})
            raise InfeasibleError(
                f"{what}: rank {rank} needs {_b(used)} of HBM, {_b(cap.hbm_bytes_per_rank)} available "
                f"({_b(used - cap.hbm_bytes_per_rank)} short; dense side {_b(usage.dense_hbm_bytes)}"
                + (f", pooled outputs {_b(out)}" if (out := usage.pooled_by_rank.get(rank, 0.0)) else "")
                + (f", inputs {_b(ids)}" if (ids := usage.input_by_rank.get(rank, 0.0)) else "")
                + (f"; largest tables: {_largest(tables)})" if tables else ")")
            )
    for label, by_node, limit in (
        ("host DRAM", usage.ddr_by_node, cap.ddr_bytes_per_node),
        ("SSD", usage.ssd_by_node, cap.ssd_bytes_per_node),
    ):
        for node, used in sorted(by_node.items(), key=lambda kv: -kv[1])[:1]:
            if used > limit:
                tables = usage.tables_by_node.get(node, {})
                raise InfeasibleError(
                    f"{what}: node {node} needs {_b(used)} of {label}, {_b(limit)} available "
                    f"({_b(used - limit)} short"
                    + (f"; largest tables: {_largest(tables)})" if tables else ")")
                )
