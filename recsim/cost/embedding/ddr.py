"""Tier ``ddr``: the table shard in host DRAM, looked up by the CPU cores (CPU inference servers,
host-side embeddings): Caffe2/PyTorch ``SparseLengthsSum`` / ``EmbeddingBag`` on all cores of the
node's sockets.

**Forward.** A row costs ``lines = ceil(row_bytes / access_granularity)`` random reads (64 B
cache lines for DDR4/DDR5; rows assumed line-aligned), each served by the CPU's last-level cache
or by DRAM (**LLC**, below). Three limits, the slowest wins:

* bandwidth: ``DRAM lines x granularity / (host_memory_bandwidth x CPU_MEMORY_EFFICIENCY)`` (the
  LLC's misses only), every channel of every socket (``Node.host_memory_bandwidth_bytes_per_s``),
  at the STREAM efficiency ``recsim.cost.compute.CPU_MEMORY_EFFICIENCY`` (an upper bound for
  random lines);
* latency (memory-level parallelism, Little's law): a core keeps at most ``Cpu.fill_buffers``
  L1D misses in flight (its line fill buffers: 10 on Intel's Skylake-class cores, 16 on Golden
  Cove), whether the LLC or DRAM answers them, so ``(DRAM lines x DRAM latency + LLC lines x
  Cpu.llc_latency) / (threads x Cpu.fill_buffers)``, and never less than one DRAM
  latency when a line misses the LLC (one LLC latency when none does);
* compute: one add per element, ``lookups x dim / (threads x a core's fp32 peak x
  CPU_GEMM_EFFICIENCY)``.

**LLC.** The share of the row reads the LLC serves is the LRU hit rate (Che's approximation,
``AccessModel.lru_hit_rate``, as the ``hbm`` tier's L2 and ``uvm_caching``'s HBM cache) of a cache
of ``llc_capacity_bytes / (lines x granularity)`` rows under the shard's access model: the hot
rows of a skewed table stay there, a uniform one over a large table gains little. The capacity a
lookup holds (``llc_capacity_bytes``): one LLC domain (a socket's ``llc``, or an AMD core
complex's share of it, ``Cpu.llc_domains``), not the sum over sockets, because the bags run on the
cores of every socket and each LLC caches the hot rows its own cores read, the same rows; on a GPU
node the ranks' host lookups run at once (``rank_share``), so a rank holds its share of the
node's LLC domains, at most one whole. The LLC is cold when the lookup starts (ASSUMPTION: the
node's other tables and the dense layers have gone through it since this table's last batch), so
each distinct row of the batch that a warm cache would hold misses once first (``unique_rows x (1
- AccessModel.missed_unique_share)`` more misses): a lookup of few rows reads them all from DRAM,
however skewed the table. What else crosses the LLC (indices, pooled vectors) is left out of its
capacity. The LLC's bandwidth is not a separate limit (ASSUMPTION: it serves what the fill buffers
ask at its latency, 10 x 64 B / 26 ns = 25 GB/s a core on Skylake-SP). None of the
tier's other constants was fitted on lookup times (their sources are the hardware manuals, STREAM
and MLC), so the LLC is added to the model, not into a fit.

``threads``: the cores that work on the lookup, ``min(bags, cores)`` (``cpu_threads``): PyTorch's
``EmbeddingBag`` and FBGEMM's CPU kernels parallelise over the output bags (``at::parallel_for``
over them), so a batch of fewer bags than cores leaves cores idle; a single bag is one thread's
dependent walk through its rows (FBGEMM PR 322: batch 10 of 898 lookups into 4M x 64 int8 rows
took 46.4 us on one Xeon Gold 6138 core).

Index reads and the pooled output are streamed and added to the bandwidth term.

**On a GPU system** (the shard belongs to an accelerator rank: host-side embeddings in training)
two things change. The node's cores and DRAM serve every local rank's host shards at once, so a
rank gets ``1 / accelerators per node`` of the bandwidth, memory parallelism and FLOP/s (ASSUMPTION:
the plan gives every rank host shards, as the planner's symmetric schemes do; a lone host shard
would run faster). And the indices cross PCIe to the host and the pooled vectors back (forward),
the pooled gradients to the host (backward), each one transfer over the accelerator's host
interface: its latency plus bytes at its bandwidth, after the CPU work (the pooled results exist
only once the lookups finish).

**Backward** (host-side training, as FBGEMM's CPU TBE): a CPU radix sort of the lookups' row ids
(``gpu.radix_passes`` 8-bit passes over the table's row-id bits, ``CPU_SORT_BYTES_PER_PASS`` a
lookup each), the gradient rows read per lookup (streamed from the dense gradient), and per unique
row the row and its optimizer state read and written as random lines; latency-bound like the
forward on the unique rows' lines. Each unique row is visited once, so a cold LLC serves none of
them. Compute: one add per gradient element accumulated, and the optimizer's step on each unique
row (``base.optimizer_update_flops``, counted from FBGEMM's update formulas).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from recsim.cost.compute import CPU_GEMM_EFFICIENCY
from recsim.cost.embedding.base import (
    DDR,
    INDEX_BYTES,
    OFFSET_BYTES,
    PCIE,
    EmbeddingCost,
    Lookup,
    TierModel,
    optimizer_update_flops,
    register_tier,
)
from recsim.cost.embedding.gpu import radix_passes
from recsim.cost.embedding.uvm import host_ddr_bandwidth_bytes_per_s
from recsim.cost.launch import MEMCPY_CALL_S
from recsim.hardware.system import System

__all__ = [
    "CPU_SORT_BYTES_PER_PASS",
    "DdrTier",
    "RowReads",
    "cpu_pool_s",
    "cpu_threads",
    "fill_buffers",
    "llc_capacity_bytes",
    "memory_parallelism",
    "node_cores",
    "row_reads",
]

CPU_SORT_BYTES_PER_PASS: Final[float] = 20.0
"""Bytes one pass of FBGEMM's CPU radix sort moves per lookup: FBGEMM's CPU TBE backward
(``csr2csc`` in ``fbgemm_gpu/codegen/training/forward/embedding_forward_split_cpu.cpp``) sorts
int32 row ids (keys) with an int32 (feature x batch + sample) value by ``fbgemm::radix_sort_parallel``
(``src/Utils.cc``), whose pass reads each key for the histogram (4 B), reads the key and value again
to scatter them (8 B) and writes both (8 B). Its passes are ``ceil(bits(num_embeddings) / 8)``, the
same count as the GPU's ``gpu.radix_passes``. (An int32 value: sum pooling without per-sample
weights; weighted or mean pooling carries an (int, float) pair, 28 B a pass.)"""


def node_cores(system: System) -> float:
    """The cores of all the node's CPU sockets."""
    cpus = system.node.cpus
    return float(cpus.count * cpus.device.cores)


def fill_buffers(system: System) -> float:
    """L1D misses one of the node's cores keeps in flight (``Cpu.fill_buffers``: its CPU's line
    fill buffers); the L2's superqueue and the hardware prefetchers do not help dependent random
    rows."""
    return float(system.node.cpus.device.fill_buffers)


def memory_parallelism(system: System) -> float:
    """Cache lines the node's cores keep in flight: sockets x cores x line fill buffers."""
    return node_cores(system) * fill_buffers(system)


def cpu_pool_s(system: System, flops: float, threads: float | None = None) -> float:
    """Time of ``flops`` element-wise FP32 operations on ``threads`` cores (None: all of the
    node's), at the vector peak x efficiency."""
    cpus = system.node.cpus
    all_cores_s = flops / (cpus.count * cpus.device.fp32_flop_per_s * CPU_GEMM_EFFICIENCY)
    return all_cores_s if threads is None else all_cores_s * node_cores(system) / threads


def random_lines_s(system: System, lines: float, share: float = 1.0, threads: float | None = None) -> float:
    """Latency-bound time of ``lines`` independent random DRAM reads (Little's law) with a
    ``share`` of the node's memory parallelism, or ``threads`` cores' worth of it where given."""
    if lines <= 0:
        return 0.0
    latency = system.node.host_memory.dimm_memory.latency_s
    parallel = memory_parallelism(system) * share if threads is None else threads * fill_buffers(system)
    return latency * max(min(1.0, lines), lines / parallel)


def llc_capacity_bytes(system: System, share: float = 1.0) -> float:
    """The last-level cache a host lookup with ``share`` of the node's cores holds (see the module
    docstring): one LLC domain's bytes, times the share of a domain it gets when more lookups run at
    once than the node has domains (``share x sockets x Cpu.llc_domains`` below one)."""
    cpus = system.node.cpus
    domains = cpus.count * cpus.device.llc_domains
    return cpus.device.llc_domain_bytes * min(1.0, share * domains)


@dataclass(frozen=True, slots=True)
class RowReads:
    """A host lookup's row lines and where they come from: ``llc_lines`` from the last-level
    cache, ``dram_lines`` from DRAM; ``llc_hit_rate`` is the LLC's share of the lines, and
    ``latency_s`` the memory-level-parallelism bound of reading them all."""

    lines: float
    llc_lines: float
    dram_lines: float
    llc_hit_rate: float
    latency_s: float


def row_reads(lookup: Lookup, share: float, threads: float) -> RowReads:
    """The row lines of ``lookup``'s lookups read by ``threads`` cores holding ``share`` of the
    node, split between the LLC and DRAM (a cold LLC at the start, see the module docstring)."""
    system = lookup.system
    cpu = system.node.cpus.device
    granule = system.node.host_memory.dimm_memory.access_granularity_bytes
    per_row = math.ceil(lookup.row_bytes / granule)
    lookups = lookup.lookups
    cache_rows = llc_capacity_bytes(system, share) / (per_row * granule)
    hit = lookup.hit_rate(cache_rows)
    # A warm LLC would hold some of the batch's distinct rows when it starts; a cold one reads
    # each of those once from DRAM before it hits.
    warm = 0.0
    if hit > 0.0:
        warm = lookup.unique_rows * (1.0 - lookup.access.missed_unique_share(lookups, cache_rows))
    missed = min(lookups, lookups * (1.0 - hit) + warm)
    dram_lines = missed * per_row
    llc_lines = (lookups - missed) * per_row
    lines = lookups * per_row
    if lines <= 0:
        return RowReads(0.0, 0.0, 0.0, 0.0, 0.0)
    dram_latency = system.node.host_memory.dimm_memory.latency_s
    work = dram_lines * dram_latency + llc_lines * cpu.llc_latency_s
    floor = max(min(1.0, dram_lines) * dram_latency, min(1.0, lines) * cpu.llc_latency_s)
    latency_s = max(floor, work / (threads * fill_buffers(system)))
    return RowReads(lines, llc_lines, dram_lines, llc_lines / lines, latency_s)


def cpu_threads(system: System, items: float, share: float = 1.0) -> float:
    """The cores a host-side lookup keeps busy: its ``share`` of the node's cores, no more than
    the ``items`` it parallelises over (bags forward, unique rows backward), at least one."""
    return max(1.0, min(node_cores(system) * share, items))


def rank_share(system: System) -> float:
    """Share of the node's CPUs and DRAM one shard's lookups get: all of it on a CPU server, one
    accelerator's share on a GPU node (see the module docstring)."""
    if system.accelerator is None:
        return 1.0
    return 1.0 / max(1, system.node.num_accelerators)


def dram_share(system: System) -> float:
    """Share of the node's DRAM bandwidth one shard's host lookups get: all of it on a CPU server,
    one accelerator's share of its socket's channels on a GPU node (``Node.host_dram_ranks``, as
    ``uvm.rank_host_ddr_bandwidth_bytes_per_s``): ``rank_share`` where every socket holds as many
    accelerators."""
    return 1.0 / system.node.host_dram_ranks


def pcie_transfer_s(system: System, nbytes: float, copies: int = 1) -> float:
    """``copies`` host <-> accelerator copies of ``nbytes`` in all (0 on a CPU server or for nothing
    to move): each the host's copy call (``MEMCPY_CALL_S``, measured) and the link's latency, the
    bytes at the GPU's share of PCIe (``Node.host_bandwidth_bytes_per_s_per_accelerator``: its
    link, at most its share of its PCIe switch's uplink). (The call was left out: a tester found
    a one-row lookup on the host costing a GPU node 0.4 us.)"""
    acc = system.accelerator
    if acc is None or nbytes <= 0:
        return 0.0
    link = acc.host_interface
    rate = system.node.host_bandwidth_bytes_per_s_per_accelerator
    return copies * (MEMCPY_CALL_S + link.latency_s) + nbytes / rate


def host_streamed_bytes(lookup: Lookup) -> float:
    """The bytes a host-side lookup streams through host memory besides the rows: the CPU reads
    the indices and offsets and writes the pooled vectors (the ``ddr`` tier's, and the host's
    share of an ``nmp`` gather, which the DIMMs do not spare it)."""
    return lookup.lookups * INDEX_BYTES + (lookup.bags + 1) * OFFSET_BYTES + lookup.bags * lookup.pooled_bytes


@register_tier
class DdrTier(TierModel):
    name = "ddr"

    def forward(self, lookup: Lookup) -> EmbeddingCost:
        system = lookup.system
        granule = system.node.host_memory.dimm_memory.access_granularity_bytes
        streamed = host_streamed_bytes(lookup)
        share = rank_share(system)
        # Bags that receive no lookup (pooling below one) give a core nothing to walk.
        threads = cpu_threads(system, lookup.bags_returned, share)
        reads = row_reads(lookup, share, threads)
        rows = reads.dram_lines * granule  # the LLC's hits do not reach the channels
        # Its DRAM share is its socket's (``uvm.rank_host_ddr_bandwidth_bytes_per_s``), its cores
        # and LLC the node's share.
        bandwidth_s = (rows + streamed) / host_ddr_bandwidth_bytes_per_s(system) / dram_share(system)
        latency_s = reads.latency_s
        compute_s = cpu_pool_s(system, lookup.lookups * lookup.op.dim, threads)
        moved = lookup.lookups * INDEX_BYTES + lookup.bags_returned * lookup.pooled_bytes
        pcie_s = pcie_transfer_s(system, moved, copies=2)  # the indices down, the pooled vectors up
        details = lookup.base_details() | lookup.forward_accounting()
        details |= {
            "bandwidth_s": bandwidth_s,
            "latency_s": latency_s,
            "compute_s": compute_s,
            "pcie_s": pcie_s,
            "memory_parallelism": threads * fill_buffers(system),
            "threads": threads,
            "llc_hit_rate": reads.llc_hit_rate,
            "llc_bytes": reads.llc_lines * granule,
            "pcie_to_host_bytes": lookup.lookups * INDEX_BYTES if pcie_s else 0.0,  # the indices
        }
        used = {DDR: rows + streamed} | ({PCIE: moved} if pcie_s else {})
        return EmbeddingCost(max(bandwidth_s, latency_s, compute_s) + pcie_s, used, details)

    def backward(self, lookup: Lookup) -> EmbeddingCost:
        system = lookup.system
        granule = system.node.host_memory.dimm_memory.access_granularity_bytes
        unique = lookup.unique_rows
        row_lines = math.ceil(lookup.row_bytes / granule)
        state_lines = math.ceil(lookup.state_bytes / granule) if lookup.state_bytes > 0 else 0
        reads = row_lines + state_lines if lookup.op.optimizer != "none" else 0
        writes = row_lines + state_lines
        random = unique * (reads + writes) * granule
        sort = lookup.lookups * radix_passes(lookup.op.rows) * CPU_SORT_BYTES_PER_PASS
        grads = lookup.lookups * lookup.pooled_bytes
        total = random + sort + grads
        share = rank_share(system)
        threads = cpu_threads(system, unique, share)  # the update parallelises over the rows
        bandwidth_s = total / host_ddr_bandwidth_bytes_per_s(system) / dram_share(system)
        latency_s = random_lines_s(system, unique * reads, share, threads)
        # Accumulation: one add per gradient element; the optimizer's step on each unique row.
        flops = lookup.lookups * lookup.op.dim + unique * optimizer_update_flops(
            lookup.op.optimizer, lookup.op.dim
        )
        compute_s = cpu_pool_s(system, flops, threads)
        moved = lookup.bags_returned * lookup.pooled_bytes
        pcie_s = pcie_transfer_s(system, moved)
        details = lookup.base_details() | lookup.backward_accounting()
        details |= {
            "bandwidth_s": bandwidth_s,
            "latency_s": latency_s,
            "compute_s": compute_s,
            "pcie_s": pcie_s,
            "threads": threads,
            "pcie_to_host_bytes": moved if pcie_s else 0.0,  # the gradients
        }
        used = {DDR: total} | ({PCIE: moved} if pcie_s else {})
        return EmbeddingCost(max(bandwidth_s, latency_s, compute_s) + pcie_s, used, details)
