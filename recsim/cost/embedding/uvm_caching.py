"""Tier ``uvm_caching[:ratio]``: the shard in host DDR (UVM) behind an HBM cache of ``ratio x rows``
rows (FBGEMM ``EmbeddingLocation.MANAGED_CACHING``; ``ratio`` is its ``cache_load_factor``, default
``DEFAULT_CACHE_RATIO``).

**Cache model.** FBGEMM's cache is set-associative, ``DEFAULT_ASSOC = 32`` ways on NVIDIA GPUs, with
LRU (the default ``cache_algorithm``) or LFU replacement, sized in whole sets rounded up
(``cache_rows``: a 100-row table at 0.2 caches 32 rows, not 20). recsim models a fully associative
LRU cache of the same number of rows, hit rate from Che's approximation
(``AccessModel.lru_hit_rate``): with 32 ways conflict misses are a small correction (ASSUMPTION;
not measured here). LFU would be the access model's ``lfu_hit_rate`` (top-k share), an upper bound of this.

**Forward** = cache management + fill + gather, in that order (FBGEMM prefetches, then looks up):

* management (``prefetch``: linearize, unique, ``lru_cache_find_uncached``, ``lru_cache_insert``,
  ``lxu_cache_lookup``): the sort/dedup stage of ``gpu.sort_stage`` plus ``CACHE_KERNELS`` kernels
  that read a 32-way set of int64 tags per lookup and per unique row (a warp compares the 32 ways),
  streamed at ``max_efficiency``; the sets of hot rows stay in L2 (LRU hit rate of an L2 of
  ``l2_bytes / 256 B`` sets);
* fill: the distinct rows of the batch the cache lacks (``Lookup.missed_unique_rows``: the distinct
  rows times the share of them an LRU cache does not hold, each fetched once however often the
  batch reads it), come over PCIe as in ``uvm`` and are written into HBM;
* gather: the ``hbm`` forward kernel over the cache (same rows, same popularity, same L2 hit rate).

Room: a batch's rows already in the cache hold their slots, so it fills at most the rest of the
cache (FBGEMM's insert evicts rows of earlier batches only); the missed rows that do not fit stay
in host memory and every lookup of them reads them there, over PCIe after the gather, as ``uvm``
does (FBGEMM's conflict misses, cache location -1); the backward updates them there. A cache of no
rows is then ``uvm`` plus the management.

``details["cache_overhead_s"]`` is management + gather + the evicted rows' write-back through host
DRAM, the work a plain ``uvm`` lookup does not do: ``uvm_caching <= uvm + cache_overhead_s`` and
``uvm_caching >= hbm`` hold by construction.

An inference lookup (``Embedding.inference``) evicts clean rows: its fill writes nothing back
(FBGEMM's inference TBE inserts with ``lru_cache_insert_byte_kernel``, a copy in, no write-back).

**Backward**: the ``hbm`` backward on the cached rows (at least the ``hbm`` tier's update of every
unique row); their optimizer state stays in managed memory (FBGEMM places non-cacheable state of a
caching table in UVM), so it is read and written over PCIe, unless it is row-wise (row-wise
Adagrad's one fp32 a row), which FBGEMM keeps on the device (``base.managed_state_in_hbm``): the
update then reads and writes every unique row's state in HBM, cached or not. Every filled row
evicts one dirty row, written back over PCIe by the forward's insert kernel, the other way from the
fill at the same time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Final

from recsim.cost.embedding.base import (
    DDR,
    HBM,
    PCIE,
    EmbeddingCost,
    Lookup,
    TierModel,
    managed_state_in_hbm,
    register_tier,
)
from recsim.cost.embedding.gpu import (
    gather_calibration,
    l2_bandwidth_bytes_per_s,
    lookup_backward,
    lookup_forward,
    lookup_update,
    sort_stage,
)
from recsim.cost.embedding.uvm import pcie_payload_bytes, pcie_wire_bytes, rank_host_ddr_bandwidth_bytes_per_s

__all__ = [
    "CACHE_ASSOCIATIVITY",
    "CACHE_INDEX_MAP_BYTES",
    "CACHE_KERNELS",
    "DEFAULT_CACHE_RATIO",
    "LXU_STATE_BYTES",
    "TAG_BYTES",
    "UvmCachingTier",
    "cache_hbm_bytes",
    "cache_rows",
]

DEFAULT_CACHE_RATIO: Final[float] = 0.2
"""FBGEMM ``SplitTableBatchedEmbeddingBagsCodegen(cache_load_factor=0.2)``: the default cached share."""

CACHE_ASSOCIATIVITY: Final[int] = 32
"""FBGEMM ``DEFAULT_ASSOC = 32`` (NVIDIA; 64 on ROCm): ways per cache set."""

TAG_BYTES: Final[float] = 8.0
"""FBGEMM ``lxu_cache_state`` holds one int64 row id per way."""

LXU_STATE_BYTES: Final[float] = 8.0
"""FBGEMM ``lxu_state``: one int64 per cache slot under LRU, the slot's last-use timestep
(``_apply_cache_state``: ``torch.zeros((cache_sets, DEFAULT_ASSOC), dtype=torch.int64)``; LFU,
which recsim does not model, keeps one count per *row* of the cached tables instead)."""

CACHE_INDEX_MAP_BYTES: Final[float] = 4.0
"""FBGEMM ``cache_index_table_map``: one int32 per row of every cached table (linear cache index ->
table), all of the table's rows, not only those cached (``construct_cache_state``:
``[-1] * total_cache_hash_size``; ``_apply_cache_state`` copies it to the GPU as ``torch.int32``)."""

CACHE_KERNELS: Final[int] = 3
"""find_uncached, insert and lookup, beyond the sort/unique kernels (``gpu.sort_stage``)."""


def cache_rows(rows: float, ratio: float) -> float:
    """Rows of the cache FBGEMM allocates for a table of ``rows`` rows at ``cache_load_factor =
    ratio``: whole sets of ``CACHE_ASSOCIATIVITY`` ways, rounded up, at least one set
    (``SplitTableBatchedEmbeddingBagsCodegen._apply_cache_state``: ``cache_sets =
    (int(total_cache_hash_size * cache_load_factor) + cache_assoc - 1) // cache_assoc``, then
    ``1 if cache_sets == 0``). A ratio of 0 is no cache (FBGEMM asserts a positive factor; recsim
    keeps ``uvm_caching:0`` as ``uvm`` plus the management)."""
    if ratio <= 0 or rows <= 0:
        return 0.0
    sets = max(1, -(-math.floor(rows * ratio) // CACHE_ASSOCIATIVITY))
    return float(sets * CACHE_ASSOCIATIVITY)


def cache_hbm_bytes(rows: float, ratio: float, row_bytes: float) -> float:
    """HBM a ``uvm_caching`` shard of ``rows`` rows takes at ``cache_load_factor = ratio``: the
    cache's slots (``cache_rows``), each a row of ``row_bytes`` plus its bookkeeping, and a table
    map over all ``rows``. FBGEMM's ``SplitTableBatchedEmbeddingBagsCodegen._apply_cache_state``
    (fbgemm_gpu/fbgemm_gpu/split_table_batched_embeddings_ops_training.py, pytorch/FBGEMM, read at
    commits 0009e242 and e1a56109, the same buffers in both) registers on the GPU:

    - ``lxu_cache_weights`` ``[cache_sets x ASSOC, max_D_cache]``: the cached rows (``row_bytes``);
    - ``lxu_cache_state`` ``[cache_sets, ASSOC]`` int64: each slot's row id (``TAG_BYTES``);
    - ``lxu_state`` ``[cache_sets, ASSOC]`` int64 under LRU: each slot's timestep
      (``LXU_STATE_BYTES``);
    - ``cache_index_table_map`` ``[total_cache_hash_size]`` int32: 4 B for every row of the cached
      tables (``CACHE_INDEX_MAP_BYTES``) -- FBGEMM's own comment: "4x total embedding hash size
      with uvm cache";
    - ``cache_hash_size_cumsum`` (int64, one per feature and one more) and ``cache_miss_counter``
      (two int64): bytes per TBE, not per row, left out.

    Left out as well: ``lxu_cache_locking_counter`` (int32 per slot) is allocated only with
    ``prefetch_pipeline=True`` (``_init_uvm_cache_counter``; an empty tensor otherwise), which
    TorchRec's ``TrainPipelineSparseDist`` does not set; and the per-batch buffers (the prefetch's
    int64 ``linear_cache_indices`` and int32 ``lxu_cache_locations`` per lookup), which scale with
    the batch, not the table. A cache of no slots (ratio 0, recsim's ``uvm`` plus the management)
    allocates none of these: 0. At 512 B rows and ``ratio = 0.2`` the bookkeeping adds
    ``(16 + 4 / 0.2) / 512 = 7 %`` to the cached rows' bytes."""
    slots = cache_rows(rows, ratio)
    if slots <= 0:
        return 0.0
    return slots * (row_bytes + TAG_BYTES + LXU_STATE_BYTES) + rows * CACHE_INDEX_MAP_BYTES


@dataclass(frozen=True)
class _Cache:
    """One batch's use of the cache: its ``rows``, the lookups' ``hit_rate``, the distinct missed
    rows ``filled`` into it, those ``unfit`` (no room beside the batch's own cached rows) and the
    ``direct_lookups`` of those, each read from host memory."""

    rows: float
    hit_rate: float
    filled: float
    unfit: float
    direct_lookups: float


def _zero_copy_s(lookup: Lookup, payload: float) -> float:
    """Time of ``payload`` bytes read from host memory in 64 B zero-copy requests, as ``uvm``: the
    GPU's share of PCIe (``Node.host_bandwidth_bytes_per_s_per_accelerator``, with the per-request
    overhead) or the rank's share of host DRAM (the round trip apart)."""
    if payload <= 0:
        return 0.0
    return max(
        pcie_wire_bytes(payload) / lookup.system.node.host_bandwidth_bytes_per_s_per_accelerator,
        payload / rank_host_ddr_bandwidth_bytes_per_s(lookup.system),
    )


@register_tier
class UvmCachingTier(TierModel):
    name = "uvm_caching"
    gpu_tbe = True
    parameter: ClassVar[str | None] = "cached fraction of the rows"
    default: ClassVar[float | None] = DEFAULT_CACHE_RATIO

    @staticmethod
    def _cache(lookup: Lookup) -> _Cache:
        """What the cache does for one batch (``_Cache``)."""
        ratio = lookup.param if lookup.param is not None else DEFAULT_CACHE_RATIO
        rows = cache_rows(lookup.op.rows, ratio)
        hit = lookup.hit_rate(rows)
        # Each distinct row the cache lacks is fetched once per batch, however often the batch
        # reads it: not the missed lookups, which repeat rows.
        missed = lookup.missed_unique_rows(rows)
        # But only into room: the batch's own cached rows hold their slots (FBGEMM's insert evicts
        # only rows of earlier batches), so what does not fit is read over PCIe by every lookup
        # of it (cache location -1, FBGEMM's conflict misses). A tester found a cache of no rows
        # 2-4x faster than uvm: every missed row was "filled" into it.
        held = max(0.0, lookup.unique_rows - missed)
        filled = min(missed, max(0.0, rows - held))
        unfit = missed - filled
        missed_lookups = lookup.lookups * (1.0 - hit)
        direct = missed_lookups * unfit / missed if missed > 0 else 0.0
        return _Cache(rows, hit, filled, unfit, direct)

    def forward(self, lookup: Lookup) -> EmbeddingCost:
        acc = lookup.accelerator()
        cal = gather_calibration(acc)
        hbm_bw = acc.hbm.bandwidth_bytes_per_s
        cache = self._cache(lookup)
        hit, filled = cache.hit_rate, cache.filled
        unique = lookup.unique_rows

        sort = sort_stage(acc, cal, rows=lookup.op.rows, lookups=lookup.lookups, unique=unique)
        set_bytes = CACHE_ASSOCIATIVITY * TAG_BYTES
        tags = (lookup.lookups + unique) * set_bytes + filled * TAG_BYTES
        tags_l2 = tags * lookup.hit_rate(acc.l2_bytes / set_bytes)  # hot rows' sets stay in L2
        tags_s = ((tags - tags_l2) / hbm_bw + tags_l2 / l2_bandwidth_bytes_per_s(acc)) / cal.max_efficiency
        # The management kernels (sort, cache lookup, insert) each pay their launch gap too.
        manage_launch_s = lookup.launch_s(sort.kernels + CACHE_KERNELS)
        manage_s = sort.time_s + CACHE_KERNELS * cal.overhead_s + tags_s + manage_launch_s
        sort_hbm = sort.hbm_bytes

        payload = filled * pcie_payload_bytes(lookup.row_bytes)
        # Each filled row takes the slot of a row of an earlier batch, which training has updated
        # (dirty): FBGEMM's insert kernel (lru_cache_insert_kernel) writes the old row back to host
        # memory and copies the new one in, slot by slot in the same kernel, so the two go opposite
        # ways over PCIe at once and each way takes its own bytes; host DRAM and HBM see both.
        # An inference batch (``Embedding.inference``) updates no row, and the inference TBE's
        # insert (``lru_cache_insert_byte_kernel``, ``lru_cache_populate_byte.cu``) only copies the
        # new row in: nothing goes back, and HBM sees the new row's write alone.
        evicted = 0.0 if lookup.op.inference else payload
        fill_hbm = (1.0 if lookup.op.inference else 2.0) * filled * lookup.row_bytes
        fill_s = max(
            pcie_wire_bytes(payload) / lookup.system.node.host_bandwidth_bytes_per_s_per_accelerator,
            (payload + evicted) / rank_host_ddr_bandwidth_bytes_per_s(lookup.system),
            fill_hbm / (hbm_bw * cal.max_efficiency),
        )

        l2_hit = lookup.hit_rate(acc.l2_bytes / lookup.row_bytes)
        gather = lookup_forward(
            lookup, l2_hit=l2_hit, gathered=max(0.0, lookup.lookups - cache.direct_lookups)
        )
        # Rows that did not fit are read from host memory by the gather itself, as ``uvm`` reads
        # them; charged after the cached rows' HBM reads (see below).
        direct = cache.direct_lookups * pcie_payload_bytes(lookup.row_bytes)
        direct_s = _zero_copy_s(lookup, direct)
        # The host's rows, filled or read directly, come after one round trip; the direct reads are
        # charged beside the cached rows' gather rather than hidden under it (a fill's round trip
        # charged apart made a batch with more lookups faster). A row the batch reads more than once
        # is cheaper filled than read directly each time, so more skew or fewer lookups never cost
        # more. A row read once crosses PCIe either way and, filled, is also written to HBM and read
        # back: with no reuse (uniform access at pooling 1) a small cache costs a little more than
        # none (1.6 % on a 40M-row uniform table, a tester's find), as FBGEMM's prefetch-then-gather
        # does: that is the cache's own overhead, not a modelling artefact.
        round_trip = 2.0 * acc.host_interface.latency_s if filled + cache.direct_lookups > 0 else 0.0
        gather_s = gather.time_s + direct_s + round_trip
        launch = lookup.launch_s(gather.kernels)
        # What a plain uvm forward does not do: the management, the gather from the cache, and
        # the write-back's pass through host DRAM (where DRAM, not PCIe, bounds the fill, it pays
        # for both ways: gb200-nvl72's 200 GB/s of DRAM a rank against a 225 GB/s link).
        overhead_s = manage_s + gather.time_s + evicted / rank_host_ddr_bandwidth_bytes_per_s(lookup.system)
        details = lookup.base_details() | lookup.forward_accounting()
        details |= {
            "cache_rows": cache.rows,
            "cache_hit_rate": hit,
            "filled_rows": filled,
            "evicted_rows": 0.0 if lookup.op.inference else filled,
            "unfit_rows": cache.unfit,
            "management_s": manage_s,
            "fill_s": fill_s,
            "gather_s": gather_s,
            "cache_overhead_s": overhead_s,
            "l2_bytes": gather.l2_bytes + tags_l2,
            "launch_s": manage_launch_s + launch,  # all the pass's kernels, as the other tiers report
            "pcie_to_host_bytes": pcie_wire_bytes(evicted),  # the write-backs
        }
        resources = {
            HBM: sort_hbm + tags - tags_l2 + fill_hbm + gather.hbm_bytes,
            PCIE: pcie_wire_bytes(payload + evicted + direct),
            DDR: payload + evicted + direct,
        }
        return EmbeddingCost(manage_s + gather_s + fill_s + launch, resources, details)

    def backward(self, lookup: Lookup) -> EmbeddingCost:
        acc = lookup.accelerator()
        cache = self._cache(lookup)
        hit = cache.hit_rate
        unique = lookup.unique_rows
        reads_row = lookup.op.optimizer != "none"
        # Rows that did not fit are updated where they live, in host memory, as ``uvm`` does.
        cached = max(0.0, unique - cache.unfit)
        rows_hbm = cached * lookup.row_bytes * (2.0 if reads_row else 1.0)
        # A row-wise state lives in HBM (FBGEMM's ``construct_split_state``), every unique row's,
        # read and written there; an element-wise one stays in managed memory, over PCIe.
        state_in_hbm = managed_state_in_hbm(lookup.op.optimizer)
        if state_in_hbm:
            rows_hbm += unique * 2.0 * lookup.state_bytes
        sort, update = lookup_backward(lookup, row_update_hbm_bytes=rows_hbm, state_in_hbm=state_in_hbm)
        state = 0.0 if state_in_hbm else unique * pcie_payload_bytes(lookup.state_bytes)
        unfit = cache.unfit * pcie_payload_bytes(lookup.row_bytes)
        # The rows the fill evicted were written back by the forward's insert (``forward``).
        read, write = state + (unfit if reads_row else 0.0), state + unfit
        link = acc.host_interface
        pcie_s = (
            pcie_wire_bytes(max(read, write)) / lookup.system.node.host_bandwidth_bytes_per_s_per_accelerator
        )
        ddr_s = (read + write) / rank_host_ddr_bandwidth_bytes_per_s(lookup.system)
        round_trip = 2.0 * link.latency_s if read + write > 0 else 0.0
        pcie_s += round_trip
        launch = lookup.launch_s(sort.kernels + update.kernels)
        # The SMs handle every unique row's update as they would in HBM whether the row is cached
        # or not, then wait for the link too (as ``uvm``): at least the ``hbm`` tier's update (a
        # tester found this backward 3.3 % faster than hbm's, the unfit rows' GPU side taken as free).
        in_hbm = lookup_update(
            lookup,
            row_update_hbm_bytes=unique * (lookup.update_read_bytes + lookup.update_write_bytes),
            state_in_hbm=True,
        )
        update_s = update.fixed_s + max(update.memory_s, in_hbm.memory_s, pcie_s, ddr_s)
        # The rows' transfer overlaps the update (a max()): it may take the max term less the
        # round trip that ends it (``link_window_s``).
        window = update_s - update.fixed_s - round_trip
        details = lookup.base_details() | lookup.backward_accounting()
        details |= {
            "cache_hit_rate": hit,
            "unfit_rows": cache.unfit,
            "sort_s": sort.time_s,
            "update_s": update_s,
            "pcie_s": pcie_s,
            "launch_s": launch,
            "pcie_to_host_bytes": pcie_wire_bytes(write),
        }
        resources = {
            HBM: sort.hbm_bytes + update.hbm_bytes,
            PCIE: pcie_wire_bytes(read + write),
            DDR: read + write,
        }
        return EmbeddingCost(sort.time_s + update_s + launch, resources, details, window)
