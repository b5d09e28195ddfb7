"""``torchrec``: the plan TorchRec's own planner (``EmbeddingShardingPlanner``) picks.

What users of TorchRec's DLRM (facebookresearch/dlrm ``torchrec_dlrm/dlrm_main.py``) train on: the
planner of TorchRec 0.3-0.5 (2022-23) with dlrm_main's arguments -- a ``Topology`` of the job's
world and local size and nothing else (so TorchRec's default capacities and bandwidths), the
per-rank batch, ``HeuristicalStorageReservation(percentage=0.05)`` and the default sharders. This
module re-derives its decision in recsim's terms (its own code, after reading TorchRec's sources:
``torchrec/distributed/planner/{constants,shard_estimators,storage_reservations,enumerators,
proposers,partitioners,planners}.py`` and ``torchrec/distributed/sharding_plan.py``, the versions
with ``_get_optimizer_multipler`` and ``Topology.hbm_mem_bw``, TorchRec 0.4/0.5; the partitioner
and proposers of the same era, ``GridSearchProposer`` among the planner's defaults; read through a
source index that did not give the file versions' commits, so none is named here):

1. **Enumerate** per table every scheme the ``EmbeddingBagCollectionSharder`` allows on CUDA --
   data_parallel, table_wise, column_wise, table_column_wise, row_wise, table_row_wise, in that
   order -- each with the compute kernels the enumerator keeps: ``dense`` for data_parallel; for
   the others ``fused`` (HBM), ``fused_uvm`` (host memory over UVM) and ``fused_uvm_caching`` (UVM
   with 20 % of the rows cached in HBM), ``dense`` dropped where ``fused`` is there. Shard shapes:
   row splits of ``ceil(rows / n)`` rows (the last ones shorter or empty), column blocks of 128.
2. **Estimate** each shard's perf (``perf_func_emb_wall_time``: forward and backward compute as bytes
   over the kernel's bandwidth, the pooled output's exchange over the NVLink or network constant,
   a row split's batched copy, a replicated table's all-reduce and element-wise optimizer kernels)
   and storage (``calculate_shard_storages``: the shard's share of the table with the optimizer
   state TorchRec assumes -- none for SGD, the table again for Adagrad, twice for Adam, a column
   for row-wise Adagrad -- plus the ids it reads and the pooled vectors it writes for the global
   batch in HBM).
3. **Reserve** on every device: first 5 % of the capacity (dlrm_main's percentage, truncated to
   whole bytes), then 6 x the dense parameters' bytes and 20 copies of the batch's ids
   (``HeuristicalStorageReservation.reserve`` takes the percentage off before the two heuristics).
   This reservation *replaces* recsim's ``planner.hbm_reserve`` and ``planner.ddr_reserve`` (default
   15 %), which this proposer does not read: it plans as TorchRec would, and ``recsim plan`` reports
   the plan's fit within recsim's reserves (``recsim.planner.limits``).
4. **Propose** whole plans, one option per table: grid search over every combination (skipped when
   there are more than 10^4), greedy by the largest shard's perf, greedy by the shards' summed perf
   (each walks the options of the table with the largest storage one step at a time), and uniform
   (every table its best option of one scheme).
5. **Partition** each proposal (``GreedyPerfPartitioner``): replicated and row-wise options first,
   shard ``i`` on device ``i``; then the others largest storage first, each shard on the device
   with the least perf so far that holds it (table_row_wise and table_column_wise on one host).
6. **Rate** a placed proposal by its largest device perf sum and keep the lowest (the first on a tie).

Why the TorchRec p4d cases keep their tables whole: with one-hot pooled lookups a row-wise shard
writes the pooled vectors of the whole global batch as a table-wise shard does, and pays a batched
copy of them besides, so each of its shards rates near a whole table and eight of them load every
device; a table is split only when it does not fit whole (under Adagrad, a 40M-row table with its
state is 38 GiB, over the 32 GiB ``HBM_CAP`` less the reservation).

Mapping onto recsim: ``fused`` -> tier ``hbm``, ``fused_uvm`` -> ``uvm``, ``fused_uvm_caching`` ->
``uvm_caching:0.2``; empty row-split shards are dropped; tables at the precision the planner starts
them at; the first of ``planner.comm_dtypes``. Within the user's limits: only the schemes of
``planner.sharding_types`` and the tiers of ``planner.tiers`` are enumerated, ``fused_uvm_caching``
only where ``planner.cache_ratios`` lists 0.2 (TorchRec's ratio, the only one it tries here).

Simplifications, said where a reader would look:

- The lookups per sample TorchRec assumes are the workload's own (``ParameterConstraints
  (pooling_factors=...)``, as a user who knows them passes); dlrm_main passes none, and TorchRec
  then assumes 1.0 per feature -- the same on one-hot Criteo, which is what the validation runs.
- Capacities: TorchRec's defaults (``HBM_CAP`` 32 GiB, ``DDR_CAP`` 128 GiB a device, as dlrm_main
  names none), each at most what the device (HBM) or its share of the host (DDR) really has, so a
  plan is not made for memory the machine does not have (a TorchRec user there would pass
  ``Topology(hbm_cap=...)``; recsim has no such option).
- Unweighted features, no feature processor, pooled outputs (an ``EmbeddingBagCollection``), one
  pooling per sample, no per-table constraints, no ``cache_load_factor`` (TorchRec's 0.2).
- Its cost is TorchRec's: each greedy proposer walks every option of every table (about 16 a
  table), a partition each; here a proposal stops being placed once a device's perf reaches the best
  rating so far (perfs only grow: the same choice). DLRM-DCNv2 on 8-16 GPUs plans in under a
  second, model-i (150 tables, 128 GPUs) in about 1 s, model-a (1000 tables) in about 10 s.
- TorchRec compares ``Storage`` objects, a ``@dataclass(order=True)`` of ``(hbm, ddr)`` in that
  era (before ``Storage.fits_in``): a shard fits where ``device.storage >= shard.storage`` as
  tuples, so the host memory decides only on equal HBM (a UVM option over the DDR left still
  fits); here the same (``fits``). Its uniform placement checks each replicated or row-wise option
  against the devices' storage *before* any of them is placed (they are not summed in the check);
  so is it here. Both can hand back a plan over the memory; recsim's own check of the plan then
  says so.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from recsim.errors import InfeasibleError
from recsim.graph.build import trained_dense_layers
from recsim.planner.config import comm_dtypes_for
from recsim.planner.proposers.base import PlanningContext, Proposer, allowed_tiers, register_proposer
from recsim.planner.storage import capacity
from recsim.planner.types import Plan, Shard
from recsim.workload.spec import DTYPE_BYTES

_GIB = 1024**3
# torchrec/distributed/planner/constants.py (TorchRec 0.4/0.5). Its bandwidths are in bytes per
# millisecond (``X * 1024**3 / 1000``); per second they are X GiB/s.
#: ``HBM_CAP``: the HBM a device offers the planner when the ``Topology`` names none (dlrm_main's).
HBM_CAP_BYTES = 32 * _GIB
#: ``DDR_CAP``: the host memory a device offers the planner by default.
DDR_CAP_BYTES = 128 * _GIB
#: ``HBM_MEM_BW``: 897 GiB/s, the HBM bandwidth a ``fused`` kernel reads and writes at.
HBM_MEM_BW_BYTES_PER_S = 897.0 * _GIB
#: ``DDR_MEM_BW``: 51 GiB/s, the host memory's.
DDR_MEM_BW_BYTES_PER_S = 51.0 * _GIB
#: ``INTRA_NODE_BANDWIDTH``: 600 GiB/s, what the pooled exchange moves at inside a node.
INTRA_NODE_BW_BYTES_PER_S = 600.0 * _GIB
#: ``CROSS_NODE_BANDWIDTH``: 12.5 GiB/s, between nodes (one NIC a GPU).
CROSS_NODE_BW_BYTES_PER_S = 12.5 * _GIB
#: ``BIGINT_DTYPE``: bytes of an id (int64).
ID_BYTES = 8
#: ``MIN_CW_DIM`` (sharding_plan.py): the width of a column block.
COLUMN_BLOCK = 128
#: ``UVM_CACHING_RATIO``: the rows a ``fused_uvm_caching`` table keeps in HBM.
UVM_CACHING_RATIO = 0.2
#: recsim's tier of that kernel (``Estimator.tiers``' spelling of a cache ratio).
UVM_CACHING_TIER = f"uvm_caching:{UVM_CACHING_RATIO:g}"
#: ``kernel_bw_lookup`` (constants.py) on CUDA: the ``dense`` kernel moves at half ``HBM_MEM_BW``
#: (``0.5 * HBM_MEM_BW``),
DENSE_KERNEL_BW_FRACTION = 0.5
#: and the UVM kernels at a tenth of their memory's (``DDR_MEM_BW / 10``, and ``/ 10`` of the
#: caching kernel's cached/uncached blend).
UVM_KERNEL_BW_DIVISOR = 10
#: ``BATCHED_COPY_PERF_FACTOR`` ("empirical studies"): a row split's backward copy of its pooled
#: gradients, in passes over them at the kernel's bandwidth.
BATCHED_COPY_PERF_FACTOR = 2.455
#: ``FULL_BLOCK_EMB_DIM``, ``HALF_BLOCK_PENALTY``, ``QUARTER_BLOCK_PENALTY`` ("empirical studies"):
#: FBGEMM's kernel runs 32 threads x 4-wide vectors; narrower rows use the block less well.
FULL_BLOCK_DIM = 128
HALF_BLOCK_PENALTY = 1.15
QUARTER_BLOCK_PENALTY = 1.75
#: shard_estimators.py's block rule: rows of at least 64 (half of ``FULL_BLOCK_EMB_DIM``) pay the
#: half-block penalty, narrower ones the quarter-block one (``if emb_dim >= 64``).
HALF_BLOCK_DIM = 64
#: ``BWD_COMPUTE_MULTIPLIER`` ("empirical studies"): backward with the fused optimizer, in forwards.
BWD_COMPUTE_MULTIPLIER = 2.0
#: ``DP_ELEMENTWISE_KERNELS_PERF_FACTOR`` ("empirical studies"): a replicated table's optimizer
#: step, fill and unary kernels, in passes over the table.
DP_ELEMENTWISE_FACTOR = 9.22
#: The smallest row width the lookup kernel reads (shard_estimators.py: "minimum embedding dim is
#: set to 32 due to kernel usage").
MIN_LOOKUP_DIM = 32
#: storage_reservations.py: dense parameters cost 6 x their bytes (parameter, ~2x optimizer, ~3x DDP),
DENSE_PARAMETER_COPIES = 6
#: and the ids 20 x the batch's ("2 pipelined batches each with 10 internal copies").
ID_BUFFER_COPIES = 20
#: dlrm_main.py's ``HeuristicalStorageReservation(percentage=0.05)``.
RESERVE_FRACTION = 0.05
#: proposers.py ``MAX_PROPOSALS``: grid search is skipped beyond this many combinations.
MAX_GRID_PROPOSALS = 10_000
#: shard_estimators.py ``_get_optimizer_multipler``: the optimizer state as a multiple of the
#: weights (SGD none; Adam two; row-wise Adagrad one column; any other, Adagrad among them, one).
OPTIMIZER_MULTIPLIER = {"none": 0.0, "sgd": 0.0, "sparse_sgd": 0.0, "adam": 2.0}

# The schemes in the order ``EmbeddingBagCollectionSharder.sharding_types("cuda")`` lists them: the
# order breaks ties between options of equal perf (TorchRec sorts them stably).
SCHEMES = ("data_parallel", "table_wise", "column_wise", "table_column_wise", "row_wise", "table_row_wise")
#: Kernels (TorchRec's name, recsim's tier) a sharded (not replicated) table may run.
SHARDED_KERNELS = (("fused", "hbm"), ("fused_uvm", "uvm"), ("fused_uvm_caching", "uvm_caching"))
#: Schemes the partitioner places shard ``i`` on device ``i`` (``PartitionByType.UNIFORM``), and
#: those it keeps on one host (``HOST``); the rest go device by device.
UNIFORM = ("data_parallel", "row_wise")
HOST = ("table_row_wise", "table_column_wise")


@dataclass(frozen=True)
class Topo:
    """What TorchRec's planner knows of the machine and the batch."""

    world: int
    local: int
    batch: int  # per rank
    hbm_bytes: float  # per device, before the reservation
    ddr_bytes: float


@dataclass(frozen=True, slots=True)
class TRShard:
    """One shard of an option: its block of the table (its perf and storage are the option's, by
    shard: ``Option.perf``, ``Option.hbm``, ``Option.ddr``)."""

    rows: int
    cols: int
    row_offset: int
    col_offset: int


@dataclass(eq=False)  # compared by identity: its arrays have no single truth value
class Option:
    """A ``ShardingOption``: one table, one scheme, one kernel, its shards."""

    table: str
    scheme: str
    kernel: str
    tier: str
    shards: list[TRShard] = field(default_factory=list)
    # The shards' perf (seconds) and storage (bytes), by shard, and what is made of them once
    # (``set_figures``, from ``estimate``): the storage the partitioner and the greedy proposer
    # sort by, the scores the proposers rank by.
    perf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hbm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ddr: np.ndarray = field(default_factory=lambda: np.zeros(0))
    total_storage: tuple[float, float] = (0.0, 0.0)
    storage_key: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    # What placing shard ``i`` on device ``i`` adds to the devices' (HBM, DDR, perf) figures side by
    # side: the storage negated, the perf (``_place_everywhere``).
    placement: np.ndarray = field(default_factory=lambda: np.zeros(0))
    depth_score: float = 0.0
    breadth_score: float = 0.0

    def set_figures(self, perf: Sequence[float], hbm: Sequence[float], ddr: Sequence[float]) -> None:
        """The shards' perf and storage, by shard, and the sort keys and scores made of them."""
        self.perf = np.array(perf, dtype=float)
        self.hbm = np.array(hbm, dtype=float)
        self.ddr = np.array(ddr, dtype=float)
        self.placement = np.concatenate((-self.hbm, -self.ddr, self.perf))
        # Sums of the figures as estimated (Python numbers), not of the float arrays.
        self.total_storage = (sum(hbm), sum(ddr))
        self.storage_key = (max(hbm), sum(hbm), max(ddr), sum(ddr))
        self.depth_score = max(perf)
        self.breadth_score = math.fsum(perf)

    def score(self, depth: bool) -> float:
        """``_sharding_option_score``: the largest shard's perf, or their sum."""
        return self.depth_score if depth else self.breadth_score


def row_blocks(rows: int, parts: int) -> list[tuple[int, int]]:
    """(offset, rows) of ``parts`` row shards: ``ceil(rows / parts)`` each, the last ones shorter or
    empty (``_calculate_rw_shard_sizes_and_offsets``: 10 rows on 4 -> 3, 3, 3, 1; 5 on 4 -> 2, 2, 1, 0)."""
    block = -(-rows // parts)
    out: list[tuple[int, int]] = []
    start = 0
    for _ in range(parts):
        size = max(0, min(block, rows - start))
        out.append((start, size))
        start += size
    return out


def column_blocks(dim: int) -> list[tuple[int, int]]:
    """(offset, width) of the column blocks: ``COLUMN_BLOCK`` wide, the last one taking the rest."""
    block = min(COLUMN_BLOCK, dim)
    count, rest = divmod(dim, block)
    return [(i * block, block + (rest if i == count - 1 else 0)) for i in range(count)]


def shard_blocks(scheme: str, rows: int, dim: int, topo: Topo) -> list[TRShard]:
    """``calculate_shard_sizes_and_offsets`` for ``scheme``."""
    if scheme == "data_parallel":
        return [TRShard(rows, dim, 0, 0)] * topo.world  # one replica a rank (a block is immutable)
    if scheme == "table_wise":
        return [TRShard(rows, dim, 0, 0)]
    if scheme in ("column_wise", "table_column_wise"):
        return [TRShard(rows, width, 0, off) for off, width in column_blocks(dim)]
    parts = topo.world if scheme == "row_wise" else topo.local
    return [TRShard(size, dim, off, 0) for off, size in row_blocks(rows, parts)]


def kernel_bw_bytes_per_s(kernel: str) -> float:
    """``kernel_bw_lookup`` on CUDA: the bandwidth a kernel's lookups and writes move at."""
    if kernel == "dense":
        return DENSE_KERNEL_BW_FRACTION * HBM_MEM_BW_BYTES_PER_S
    if kernel == "fused":
        return HBM_MEM_BW_BYTES_PER_S
    if kernel == "fused_uvm":
        return DDR_MEM_BW_BYTES_PER_S / UVM_KERNEL_BW_DIVISOR
    if kernel == "fused_uvm_caching":
        return (
            UVM_CACHING_RATIO * HBM_MEM_BW_BYTES_PER_S + (1 - UVM_CACHING_RATIO) * DDR_MEM_BW_BYTES_PER_S
        ) / UVM_KERNEL_BW_DIVISOR
    raise ValueError(f"unknown TorchRec kernel {kernel!r}")


def block_penalty(dim: int) -> float:
    """A table-wise or column shard's lookup slowdown for rows narrower than a full block."""
    if dim >= FULL_BLOCK_DIM:
        return 1.0
    return HALF_BLOCK_PENALTY if dim >= HALF_BLOCK_DIM else QUARTER_BLOCK_PENALTY


def shard_perf_s(scheme: str, kernel: str, shard: TRShard, lookups: float, esize: float, topo: Topo) -> float:
    """``perf_func_emb_wall_time`` of one shard of a pooled, unweighted table in training: forward
    compute (the ids read, the rows looked up, the pooled vectors written, at the kernel's
    bandwidth), backward compute (``BWD_COMPUTE_MULTIPLIER`` forwards), the pooled vectors' exchange
    forward and backward, a row split's batched copy; a replicated table's all-reduce and
    element-wise optimizer kernels instead of an exchange."""
    world, local, b = topo.world, topo.local, topo.batch
    bw = kernel_bw_bytes_per_s(kernel)
    d = shard.cols
    if scheme == "data_parallel":
        inputs = b * lookups
        # TorchRec passes the table's element size as the ids' size here (shard_estimators.py).
        read = math.ceil(inputs * esize)
        fwd = (read + inputs * d * esize + b * d * esize) / bw
        table_bytes = shard.rows * d * esize
        nodes = min(world / local, 2)
        # Ring all-reduce bytes, one NIC per GPU; twice as slow beyond two nodes.
        all_reduce = table_bytes * (2 * nodes - 1) / nodes / (CROSS_NODE_BW_BYTES_PER_S * local)
        if world > 2 * local:
            all_reduce *= 2
        optimizer = table_bytes * DP_ELEMENTWISE_FACTOR / bw
        return all_reduce + optimizer + (1 + BWD_COMPUTE_MULTIPLIER) * fwd
    cross = world > local
    if scheme in ("table_wise", "column_wise", "table_column_wise"):
        inputs = b * lookups
        read = math.ceil(inputs * world * ID_BYTES)
        lookup = inputs * world * max(d, MIN_LOOKUP_DIM) * esize
        out = b * world * d * esize
        comms = out / (CROSS_NODE_BW_BYTES_PER_S if cross else INTRA_NODE_BW_BYTES_PER_S)
        fwd = (read + lookup + out) * block_penalty(d) / bw
        return 2 * comms + (1 + BWD_COMPUTE_MULTIPLIER) * fwd
    split = world if scheme == "row_wise" else local
    inputs = b * lookups / split
    read = math.ceil(inputs * world * ID_BYTES)
    out = b * world * d * esize
    if scheme == "row_wise":
        comms = out / (CROSS_NODE_BW_BYTES_PER_S if cross else INTRA_NODE_BW_BYTES_PER_S)
    else:  # table_row_wise: reduced inside the node, a node's share of the batch across
        comms = out / INTRA_NODE_BW_BYTES_PER_S
        if cross:
            comms += out * (local / world) / CROSS_NODE_BW_BYTES_PER_S
    fwd = (read + inputs * world * d * esize + out) / bw
    copy = out * BATCHED_COPY_PERF_FACTOR / bw
    return 2 * comms + copy + (1 + BWD_COMPUTE_MULTIPLIER) * fwd


def io_bytes(scheme: str, shard: TRShard, lookups: float, esize: float, topo: Topo) -> tuple[int, int]:
    """``_calculate_shard_io_sizes``: the ids a shard reads and the pooled vectors it writes (HBM)."""
    world, b = topo.world, topo.batch
    if scheme == "data_parallel":
        return math.ceil(b * lookups * ID_BYTES), math.ceil(b * shard.cols * esize)
    if scheme in ("row_wise", "table_row_wise") and shard.rows == 0:
        return 0, 0
    split = {"row_wise": world, "table_row_wise": topo.local}.get(scheme, 1)
    return (
        math.ceil(b * lookups / split * world * ID_BYTES),
        math.ceil(b * world * shard.cols * esize),
    )


def optimizer_multiplier(optimizer: str, dim: int) -> float:
    """``_get_optimizer_multipler`` for recsim's embedding optimizer."""
    if optimizer == "rowwise_adagrad":
        return 1.0 / dim
    return OPTIMIZER_MULTIPLIER.get(optimizer, 1.0)


def estimate(
    option: Option, rows: int, dim: int, lookups: float, esize: float, mult: float, topo: Topo
) -> None:
    """Each shard's perf (``shard_perf_s``) and storage (``calculate_shard_storages``): its share of
    the table's weights in the kernel's memory (all of it, replicated), with ``mult`` times as much
    optimizer state, and in HBM its ids and pooled vectors."""
    table_bytes = rows * dim * esize
    if option.kernel in ("dense", "fused"):
        hbm_table, ddr_table = table_bytes, 0.0
    elif option.kernel == "fused_uvm":
        hbm_table, ddr_table = 0.0, table_bytes
    else:  # fused_uvm_caching: the rows in host memory, a cache of them in HBM
        # TorchRec 0.4/0.5 counts the cached rows' weights alone (and its optimizer multiplier on
        # them), not FBGEMM's cache bookkeeping (its slots' int64 row ids and LRU timesteps, an
        # int32 per row of the table: ``uvm_caching.cache_hbm_bytes``, which recsim's own storage
        # books). Later TorchRec adds it: ``calculate_shard_storages`` passes ``clf=caching_ratio``
        # for a cached table's HBM to ``_calculate_storage_specific_sizes``, which adds ``rows x
        # (4 + clf x 16)`` a shard (its comment: "4x of table hash size and 16x of cache slot
        # size", the same bytes, slots unrounded). Kept at 0.4/0.5's figure: this re-derives that
        # planner's decision, what it under-counts included; recsim's check of the plan
        # (``storage.shard_storage``) counts the bookkeeping.
        hbm_table, ddr_table = float(round(table_bytes * UVM_CACHING_RATIO)), table_bytes

    def specific(storage: float, shard: TRShard) -> float:
        share = (
            storage
            if option.scheme == "data_parallel"
            else math.ceil(storage * shard.rows * shard.cols / (rows * dim))
        )
        return share + math.ceil(share * mult)

    # A shard's figures depend on its block's size alone (not where it starts), and most of an
    # option's blocks are one size (a replica each rank, ``ceil(rows / n)``-row splits): each size
    # is estimated once.
    by_size: dict[tuple[int, int], tuple[float, float, float]] = {}
    perf: list[float] = []
    hbm: list[float] = []
    ddr: list[float] = []
    for shard in option.shards:
        size = (shard.rows, shard.cols)
        figures = by_size.get(size)
        if figures is None:
            ids, pooled = io_bytes(option.scheme, shard, lookups, esize, topo)
            figures = by_size[size] = (
                shard_perf_s(option.scheme, option.kernel, shard, lookups, esize, topo),
                ids + pooled + specific(hbm_table, shard),
                specific(ddr_table, shard),
            )
        perf.append(figures[0])
        hbm.append(figures[1])
        ddr.append(figures[2])
    option.set_figures(perf, hbm, ddr)


class PartitionError(Exception):
    """A proposal that does not fit (TorchRec's ``PlannerError`` from the partitioner)."""


@dataclass
class Devices:
    """Every device's free HBM and DDR and its perf so far (``DeviceHardware``), by rank."""

    hbm: np.ndarray
    ddr: np.ndarray
    perf: np.ndarray

    @classmethod
    def fresh(cls, world: int, hbm_bytes: float, ddr_bytes: float) -> Devices:
        return cls(np.full(world, float(hbm_bytes)), np.full(world, float(ddr_bytes)), np.zeros(world))


def fits(
    need_hbm: np.ndarray | float, need_ddr: np.ndarray | float, free_hbm: np.ndarray, free_ddr: np.ndarray
) -> np.ndarray:
    """TorchRec's ``free >= need`` on ``Storage`` (``dataclass(order=True)``: tuples compared
    lexicographically): more HBM free than needed, or as much and the DDR too."""
    return np.asarray((free_hbm > need_hbm) | ((free_hbm == need_hbm) & (free_ddr >= need_ddr)))


def _uniform_misfit(option: Option, devices: Devices, ranks: slice) -> str | None:
    """Why shard ``i`` cannot go on the ``i``-th device of ``ranks`` (each must hold its shard,
    ``fits``), or None where it can."""
    hbm, ddr = devices.hbm[ranks], devices.ddr[ranks]
    if len(option.shards) != len(hbm):
        return f"{option.table}: {len(option.shards)} shards for {len(hbm)} devices"
    if not fits(option.hbm, option.ddr, hbm, ddr).all():
        return f"{option.table} does not fit"
    return None


def _check_uniform(option: Option, devices: Devices, ranks: slice) -> None:
    """``_uniform_misfit`` as a ``PartitionError``."""
    misfit = _uniform_misfit(option, devices, ranks)
    if misfit is not None:
        raise PartitionError(misfit)


def _place_uniform(option: Option, devices: Devices, ranks: slice) -> list[int]:
    devices.hbm[ranks] -= option.hbm
    devices.ddr[ranks] -= option.ddr
    devices.perf[ranks] += option.perf
    return list(range(len(devices.hbm))[ranks])


def _place_everywhere(options: list[Option], devices: Devices) -> None:
    """``_place_uniform`` of each of ``options`` in turn on every device, as one running sum of the
    devices' (HBM, DDR, perf) with each option's ``placement`` (its storage negated: ``x + (-y)`` is
    ``x - y`` to the bit, IEEE 754), in the same order: the same figures, in one array operation an
    option rather than three on slices."""
    world = len(devices.perf)
    state = np.concatenate((devices.hbm, devices.ddr, devices.perf))
    for option in options:
        state += option.placement
    devices.hbm, devices.ddr, devices.perf = state[:world], state[world : 2 * world], state[2 * world :]


def _place_by_device(option: Option, devices: Devices, ranks: slice) -> list[int]:
    """Each shard on the device of ``ranks`` with the least perf so far that holds it (a stable sort
    keeps rank order on a tie)."""
    first = ranks.start or 0
    out: list[int] = []
    for j in range(len(option.shards)):
        perf = devices.perf[ranks]
        order = np.argsort(perf, kind="stable")
        holds = fits(option.hbm[j], option.ddr[j], devices.hbm[ranks][order], devices.ddr[ranks][order])
        if not holds.any():
            raise PartitionError(f"no device holds a shard of {option.table}")
        rank = first + int(order[int(holds.argmax())])
        devices.hbm[rank] -= option.hbm[j]
        devices.ddr[rank] -= option.ddr[j]
        devices.perf[rank] += option.perf[j]
        out.append(rank)
    return out


def partition(
    proposal: list[Option],
    devices: Devices,
    local: int,
    bound_s: float = math.inf,
    *,
    uniform_checked: bool = False,
) -> list[Sequence[int]] | None:
    """``GreedyPerfPartitioner.partition``: each option's shards' ranks, ``devices`` updated; None
    as soon as a device's perf reaches ``bound_s`` (the best rating so far: perfs only grow, so the
    proposal could not rate lower; TorchRec places it all and then drops it, the same choice).
    ``PartitionError`` if it does not fit. ``uniform_checked``: the caller has found that every
    replicated and row-wise option of the proposal fits ``devices`` as they are (``_uniform_misfit``:
    on empty devices that holds of the option whatever the proposal, so ``best_options`` checks each
    once rather than once per proposal)."""
    world = len(devices.perf)
    ranks: list[Sequence[int]] = [() for _ in proposal]
    everyone = slice(0, world)
    uniform = [i for i, o in enumerate(proposal) if o.scheme in UNIFORM]
    if uniform:
        if not uniform_checked:
            # Every option checked against the storage before any is placed (TorchRec's order).
            for i in uniform:
                _check_uniform(proposal[i], devices, everyone)
        _place_everywhere([proposal[i] for i in uniform], devices)
        every_rank = tuple(range(world))
        for i in uniform:
            ranks[i] = every_rank
        if devices.perf.max() >= bound_s:
            return None
    rest = sorted(
        (i for i, o in enumerate(proposal) if o.scheme not in UNIFORM),
        key=lambda i: proposal[i].total_storage,
        reverse=True,
    )
    hosts = [slice(h * local, (h + 1) * local) for h in range(world // local)]
    for i in rest:
        option = proposal[i]
        if option.scheme not in HOST:
            placed = _place_by_device(option, devices, everyone)
        else:
            placed = _place_on_a_host(option, devices, hosts)
        ranks[i] = placed
        if devices.perf[placed].max() >= bound_s:
            return None
    return ranks


def _place_on_a_host(option: Option, devices: Devices, hosts: list[slice]) -> list[int]:
    """The host with the least perf summed that holds the option: table_row_wise shard ``i`` on its
    ``i``-th device, table_column_wise shards device by device."""
    need_hbm, need_ddr = option.total_storage
    for host in sorted(hosts, key=lambda h: sum(devices.perf[h].tolist())):
        if not fits(need_hbm, need_ddr, devices.hbm[host].sum(), devices.ddr[host].sum()):
            continue
        trial = Devices(devices.hbm.copy(), devices.ddr.copy(), devices.perf.copy())
        try:
            if option.scheme == "table_row_wise":
                _check_uniform(option, trial, host)
                placed = _place_uniform(option, trial, host)
            else:
                placed = _place_by_device(option, trial, host)
        except PartitionError:
            continue
        devices.hbm, devices.ddr, devices.perf = trial.hbm, trial.ddr, trial.perf
        return placed
    raise PartitionError(f"no host holds {option.table}")


def by_score(options: list[Option], depth: bool) -> list[int]:
    """Indices of ``options`` by score, lowest first; a stable sort keeps enumeration order on a tie
    (table_wise before the column schemes of one block, the same shard)."""
    return sorted(range(len(options)), key=lambda i: options[i].score(depth))


def greedy_proposals(by_table: list[list[Option]], depth: bool) -> Iterator[list[int]]:
    """``GreedyProposer``: each table's options by score; from the best of each, step by step the
    table whose current option takes the most storage (max, then sum, of its shards' HBM, then DDR;
    the first such table on a tie) moves to its next option, until none has one left (or none
    takes any storage: TorchRec's search starts from a zero key and takes only a larger one).

    The tables with a next option wait in a heap by their current option's key negated, then table
    index: its top is the largest key, the first table on a tie, found in ``log(tables)`` steps
    rather than by a scan of every table a step (model-a: 1000 tables, ~15,000 steps)."""
    orders = [by_score(opts, depth) for opts in by_table]
    current = [0] * len(by_table)
    picks = [order[0] for order in orders]
    waiting = [
        (_negated(opts[orders[t][0]].storage_key), t) for t, opts in enumerate(by_table) if len(opts) > 1
    ]
    heapq.heapify(waiting)
    while True:
        yield list(picks)
        if not waiting or not waiting[0][0] < _NO_STORAGE:
            return
        chosen = waiting[0][1]
        current[chosen] += 1
        picks[chosen] = orders[chosen][current[chosen]]
        opts = by_table[chosen]
        if current[chosen] + 1 < len(opts):
            heapq.heapreplace(waiting, (_negated(opts[picks[chosen]].storage_key), chosen))
        else:
            heapq.heappop(waiting)


#: A storage key negated (``greedy_proposals``' heap order: the largest key first).
_NegatedKey = tuple[float, float, float, float]
#: The key no option's exceeds (negated): the greedy proposer moves only a table that takes storage.
_NO_STORAGE: _NegatedKey = (-0.0, -0.0, -0.0, -0.0)


def _negated(key: tuple[float, float, float, float]) -> _NegatedKey:
    return (-key[0], -key[1], -key[2], -key[3])


def uniform_proposals(by_table: list[list[Option]]) -> Iterator[list[int]]:
    """``UniformProposer``: for each scheme every table has, each table's best option of it."""
    for scheme in SCHEMES:
        picks: list[int] = []
        for opts in by_table:
            of = [i for i, o in enumerate(opts) if o.scheme == scheme]
            if not of:
                break
            picks.append(min(of, key=lambda i: opts[i].score(True)))
        else:
            yield picks


def grid_proposals(by_table: list[list[Option]]) -> Iterator[list[int]]:
    """``GridSearchProposer``: every combination, none beyond ``MAX_GRID_PROPOSALS``."""
    if math.prod(len(opts) for opts in by_table) > MAX_GRID_PROPOSALS:
        return
    orders = [by_score(opts, True) for opts in by_table]
    for combo in itertools.product(*orders):
        yield list(combo)


def topology(ctx: PlanningContext) -> Topo:
    """TorchRec's view of the machine: dlrm_main's ``Topology`` (world and local size), its default
    capacities capped by the real ones (module docstring), the per-rank batch. The world, local size
    and per-rank batch are the estimator's (which refuses a batch that does not split); the real
    capacities ``storage.capacity``'s raw device figures, without recsim's reserves (TorchRec takes
    its own, ``reserved_bytes``)."""
    est = ctx.estimator
    cap = capacity(ctx.system)
    hbm = min(HBM_CAP_BYTES, cap.hbm_bytes_per_rank)
    ddr = min(DDR_CAP_BYTES, cap.ddr_bytes_per_node / est.per_node)
    return Topo(est.world, est.per_node, est.local_batch, hbm, ddr)


def reserved_bytes(ctx: PlanningContext, topo: Topo) -> tuple[int, int]:
    """Each device's HBM and DDR after ``HeuristicalStorageReservation``: dlrm_main's 5 % off the
    capacity first (``_reserve_storage_percentage``, truncated to whole bytes), then the dense
    parameters' 6 copies and the ids' 20 off the HBM (``reserve`` calls them in that order)."""
    w = ctx.workload
    dense = DENSE_PARAMETER_COPIES * 4 * sum(layer.params for layer in trained_dense_layers(w))
    ids = math.ceil(topo.batch * w.lookups_per_sample * ID_BYTES) * ID_BUFFER_COPIES
    hbm = int((1 - RESERVE_FRACTION) * topo.hbm_bytes) - dense - ids
    return hbm, int((1 - RESERVE_FRACTION) * topo.ddr_bytes)


def enumerate_options(ctx: PlanningContext, topo: Topo) -> list[list[Option]]:
    """Each table's options within the user's limits (``EmbeddingEnumerator``), estimated."""
    w = ctx.workload
    cfg = ctx.config
    tiers = allowed_tiers(ctx)
    # ``fused_uvm_caching`` caches TorchRec's fixed share of the rows: a tier the user allows only
    # where ``planner.cache_ratios`` lists that ratio (``Estimator.tiers`` names it so).
    caching = UVM_CACHING_TIER in ctx.estimator.tiers()
    out: list[list[Option]] = []
    for table in w.tables:
        dim = w.table_dim(table)
        dtype = ctx.estimator.start_dtype(table)
        esize = DTYPE_BYTES[dtype]
        lookups = w.table_lookups(table)
        mult = optimizer_multiplier(w.training.embedding_optimizer, dim)
        options: list[Option] = []
        for scheme in SCHEMES:
            if scheme not in cfg.sharding_types:
                continue
            kernels = (("dense", "hbm"),) if scheme == "data_parallel" else SHARDED_KERNELS
            for kernel, tier in kernels:
                if tier not in tiers or (tier == "uvm_caching" and not caching):
                    continue
                name = UVM_CACHING_TIER if tier == "uvm_caching" else tier
                option = Option(table.name, scheme, kernel, name, shard_blocks(scheme, table.rows, dim, topo))
                estimate(option, table.rows, dim, lookups, esize, mult, topo)
                options.append(option)
        if not options:
            raise InfeasibleError(
                f"torchrec: no option for table {table.name!r}: planner.sharding_types "
                f"({', '.join(cfg.sharding_types)}), planner.tiers ({', '.join(cfg.tiers)}) and "
                f"planner.cache_ratios ({', '.join(f'{r:g}' for r in cfg.cache_ratios)}) leave none of "
                f"TorchRec's ({', '.join(SCHEMES)} on hbm, uvm or {UVM_CACHING_TIER}, the last only "
                f"where planner.cache_ratios lists {UVM_CACHING_RATIO:g}; data_parallel in hbm only)"
            )
        out.append(options)
    return out


def best_options(ctx: PlanningContext) -> list[tuple[Option, Sequence[int]]]:
    """The options of the plan TorchRec's planner returns (``EmbeddingShardingPlanner.plan``), each
    with its shards' ranks."""
    topo = topology(ctx)
    by_table = enumerate_options(ctx, topo)
    proposals = itertools.chain(
        grid_proposals(by_table),
        greedy_proposals(by_table, depth=True),
        greedy_proposals(by_table, depth=False),
        uniform_proposals(by_table),
    )
    hbm, ddr = reserved_bytes(ctx, topo)
    # A proposal seen before (another proposer's) is not partitioned again; kept as a digest of its
    # picks (16 B, not a thousand indices, for model-a's tens of thousands of proposals).
    seen: set[bytes] = set()
    best: tuple[float, list[Option], list[Sequence[int]]] | None = None
    least: tuple[float, float] = (math.inf, math.inf)  # the smallest proposal that fits not
    # The partitioner checks the replicated and row-wise options against the devices before it
    # places any: empty devices, so whether one fits depends on the option alone, found once here.
    empty = Devices.fresh(topo.world, hbm, ddr)
    everyone = slice(0, topo.world)
    misfits = {
        o for opts in by_table for o in opts if o.scheme in UNIFORM and _uniform_misfit(o, empty, everyone)
    }
    for picks in proposals:
        key = hashlib.blake2b(np.asarray(picks, dtype=np.int32).tobytes(), digest_size=16).digest()
        if key in seen:
            continue
        seen.add(key)
        proposal = list(map(list.__getitem__, by_table, picks))
        devices = Devices.fresh(topo.world, hbm, ddr)
        try:
            if not misfits.isdisjoint(proposal):
                raise PartitionError("a replicated or row-wise option does not fit")
            ranks = partition(
                proposal, devices, topo.local, best[0] if best else math.inf, uniform_checked=True
            )
        except PartitionError:
            if best is None:  # only said where none fits (``best`` stays set once set)
                need = (
                    math.fsum(o.total_storage[0] for o in proposal),
                    math.fsum(o.total_storage[1] for o in proposal),
                )
                least = min(least, need)
            continue
        if ranks is None:
            continue  # rates no lower than the best so far
        rating = float(devices.perf.max())  # ``NoopPerfModel.rate``: the busiest device's perf
        if best is None or rating < best[0]:
            best = (rating, proposal, ranks)
    if best is None:
        raise InfeasibleError(
            f"torchrec: none of TorchRec's {len(seen)} proposals fits: the smallest needs "
            f"{least[0] / _GIB:.1f} GiB of HBM and {least[1] / _GIB:.1f} GiB of host memory in all, "
            f"{topo.world} devices offer {hbm / _GIB:.1f} and {ddr / _GIB:.1f} GiB each (TorchRec's "
            f"HBM_CAP {HBM_CAP_BYTES / _GIB:.0f} GiB and DDR_CAP {DDR_CAP_BYTES / _GIB:.0f} GiB or the "
            "machine's, less its reservation)"
        )
    return list(zip(best[1], best[2], strict=True))


def to_plan(ctx: PlanningContext, placed: list[tuple[Option, Sequence[int]]], name: str) -> Plan:
    """recsim's plan of TorchRec's placed options (empty row shards dropped)."""
    w = ctx.workload
    world = ctx.world_size
    shards: list[Shard] = []
    for option, ranks in placed:
        dtype = ctx.estimator.start_dtype(w.table(option.table))
        # A replicated table is one shard of recsim's on every rank (TorchRec's shard per rank is
        # the whole table each); any other option one a non-empty block, on the block's rank.
        blocks = (
            [(option.shards[0], tuple(range(world)))]
            if option.scheme == "data_parallel"
            else [(s, (rank,)) for s, rank in zip(option.shards, ranks, strict=True) if s.rows > 0]
        )
        for s, on in blocks:
            shards.append(
                Shard(
                    option.table,
                    option.scheme,
                    s.row_offset,
                    s.row_offset + s.rows,
                    s.col_offset,
                    s.col_offset + s.cols,
                    on,
                    option.tier,
                    dtype,
                )
            )
    return Plan(world, tuple(shards), strategy=name, comm_dtype=comm_dtypes_for(ctx.config, w)[0])


@register_proposer
class TorchRecPlanner(Proposer):
    name = "torchrec"
    description = (
        "the plan TorchRec's EmbeddingShardingPlanner picks (dlrm_main's settings, TorchRec 0.4/0.5; "
        "its 5 % storage reservation in place of planner.hbm_reserve and planner.ddr_reserve)"
    )
    # What TorchRec would do, asked for by name; not one of auto's candidates (its schemes are the
    # searching proposers' too), so auto's choice stays what it was.
    in_auto = False

    def propose(self, ctx: PlanningContext) -> Plan:
        return to_plan(ctx, best_options(ctx), self.name)
