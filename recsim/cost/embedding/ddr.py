"""Tier ``ddr``: the table shard in host DRAM, looked up by the CPU cores (CPU inference servers,
host-side embeddings): Caffe2/PyTorch ``SparseLengthsSum`` / ``EmbeddingBag`` on all cores of the
node's sockets.

**Forward.** A row costs ``lines = ceil(row_bytes / access_granularity)`` random DRAM reads (64 B
cache lines for DDR4/DDR5; rows assumed line-aligned). Three limits, the slowest wins:

* bandwidth: ``lookups x lines x granularity / (host_memory_bandwidth x CPU_MEMORY_EFFICIENCY)``,
  every channel of every socket (``Node.host_memory_bandwidth_bytes_per_s``), at the STREAM
  efficiency ``recsim.cost.compute.CPU_MEMORY_EFFICIENCY`` (an upper bound for random lines);
* latency (memory-level parallelism, Little's law): a core keeps at most ``LINE_FILL_BUFFERS``
  L1D misses in flight, so ``lookups x lines x latency / (threads x LINE_FILL_BUFFERS)``, and never
  less than one memory latency when there is a lookup;
* compute: one add per element, ``lookups x dim / (threads x a core's fp32 peak x
  CPU_GEMM_EFFICIENCY)``.

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

**Backward** (host-side training): a CPU radix sort of the indices (``CPU_SORT_PASSES`` passes that
read and write a 16 B key-value pair per lookup), the gradient rows read per lookup (streamed from
the dense gradient), and per unique row the row and its optimizer state read and written as random
lines; latency-bound like the forward on the unique rows' lines.
"""

from __future__ import annotations

import math
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
    register_tier,
)
from recsim.cost.embedding.uvm import host_ddr_bandwidth_bytes_per_s
from recsim.cost.launch import MEMCPY_CALL_S
from recsim.hardware.system import System

__all__ = [
    "CPU_SORT_PASSES",
    "LINE_FILL_BUFFERS",
    "DdrTier",
    "cpu_pool_s",
    "cpu_threads",
    "memory_parallelism",
    "node_cores",
]

LINE_FILL_BUFFERS: Final[int] = 10
"""Outstanding L1D misses per core: 10 line fill buffers (Intel 64 and IA-32 Architectures
Optimization Reference Manual, Sandy Bridge to Skylake client cores: "10 L1D fill buffers"); the
L2's superqueue (16) and hardware prefetchers do not help dependent random rows. Used for every CPU
of the library, AMD included (ASSUMPTION: Zen 2 tracks more, ~22 misses, so this is conservative)."""

CPU_SORT_PASSES: Final[int] = 4
"""Passes of an LSD radix sort of 32-bit row ids with 8-bit digits (ASSUMPTION: host-side backward
sorts as FBGEMM's CPU TBE does with its radix sort; ids above 2^32 rows would need 8 passes)."""

_SORT_PAIR_BYTES: Final[float] = 16.0  # an int64 key and an int64 position, read and written per pass


def node_cores(system: System) -> float:
    """The cores of all the node's CPU sockets."""
    cpus = system.node.cpus
    return float(cpus.count * cpus.device.cores)


def memory_parallelism(system: System) -> float:
    """Cache lines the node's cores keep in flight: sockets x cores x line fill buffers."""
    return node_cores(system) * LINE_FILL_BUFFERS


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
    latency = system.node.host_memory.device.latency_s
    parallel = memory_parallelism(system) * share if threads is None else threads * LINE_FILL_BUFFERS
    return latency * max(min(1.0, lines), lines / parallel)


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
        granule = system.node.host_memory.device.access_granularity_bytes
        lines = lookup.lookups * math.ceil(lookup.row_bytes / granule)
        rows = lines * granule
        streamed = host_streamed_bytes(lookup)
        share = rank_share(system)
        # Bags that receive no lookup (pooling below one) give a core nothing to walk.
        threads = cpu_threads(system, lookup.bags_returned, share)
        bandwidth_s = (rows + streamed) / host_ddr_bandwidth_bytes_per_s(system) / share
        latency_s = random_lines_s(system, lines, share, threads)
        compute_s = cpu_pool_s(system, lookup.lookups * lookup.op.dim, threads)
        moved = lookup.lookups * INDEX_BYTES + lookup.bags_returned * lookup.pooled_bytes
        pcie_s = pcie_transfer_s(system, moved, copies=2)  # the indices down, the pooled vectors up
        details = lookup.base_details() | lookup.forward_accounting()
        details |= {
            "bandwidth_s": bandwidth_s,
            "latency_s": latency_s,
            "compute_s": compute_s,
            "pcie_s": pcie_s,
            "memory_parallelism": threads * LINE_FILL_BUFFERS,
            "threads": threads,
        }
        used = {DDR: rows + streamed} | ({PCIE: moved} if pcie_s else {})
        return EmbeddingCost(max(bandwidth_s, latency_s, compute_s) + pcie_s, used, details)

    def backward(self, lookup: Lookup) -> EmbeddingCost:
        system = lookup.system
        granule = system.node.host_memory.device.access_granularity_bytes
        unique = lookup.unique_rows
        row_lines = math.ceil(lookup.row_bytes / granule)
        state_lines = math.ceil(lookup.state_bytes / granule) if lookup.state_bytes > 0 else 0
        reads = row_lines + state_lines if lookup.op.optimizer != "none" else 0
        writes = row_lines + state_lines
        random = unique * (reads + writes) * granule
        sort = lookup.lookups * CPU_SORT_PASSES * 2 * _SORT_PAIR_BYTES
        grads = lookup.lookups * lookup.pooled_bytes
        total = random + sort + grads
        share = rank_share(system)
        threads = cpu_threads(system, unique, share)  # the update parallelises over the rows
        bandwidth_s = total / host_ddr_bandwidth_bytes_per_s(system) / share
        latency_s = random_lines_s(system, unique * reads, share, threads)
        # Accumulation: one add per gradient element; the optimizer: a few ops per element of each row.
        flops = lookup.lookups * lookup.op.dim + 4.0 * unique * lookup.op.dim
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
        }
        used = {DDR: total} | ({PCIE: moved} if pcie_s else {})
        return EmbeddingCost(max(bandwidth_s, latency_s, compute_s) + pcie_s, used, details)
