"""Tier ``uvm``: the table shard in host DDR, read by the GPU over PCIe (FBGEMM ``EmbeddingLocation.
MANAGED``: ``new_managed_tensor`` advises the pages to stay on the CPU and be accessed by the GPU, so
the TBE kernels load rows with zero-copy accesses, no page migration).

**Forward.** The GPU requests each row in ``PCIE_REQUEST_BYTES`` chunks (row bytes rounded up to
64 B); every request's completion carries ``PCIE_TLP_OVERHEAD_BYTES`` of TLP/DLLP/framing overhead,
so a zero-copy gather reaches ``64 / (64 + 24) = 0.73`` of the bandwidth the GPU has to host memory
(its link, at most its share of its PCIe switch's uplink while every GPU of the node streams:
``Node.host_bandwidth_bytes_per_s_per_accelerator``; the link's post-encoding rate)
(EMOGI, Min et al., VLDB 2021, show that aligned cache-line-sized zero-copy requests can keep PCIe
close to saturated, so the loss is the per-request overhead, not idle link time). The same bytes are
read from host DDR (at ``host_memory_bandwidth x CPU_MEMORY_EFFICIENCY``, one accelerator's share
of its socket's channels: ``rank_host_ddr_bandwidth_bytes_per_s``). Pooling happens on the
GPU: indices, offsets and the output are HBM traffic of the same kernel (``gpu.forward_kernel`` with
``rows_elsewhere``). ``t = overhead + max(pcie, ddr, gpu) + one PCIe round trip + launch``.

**Backward.** The GPU sorts the indices and accumulates gradients in HBM (``gpu.sort_stage``,
``gpu.update_stage`` without row traffic); each unique row and its optimizer state (also managed
memory in FBGEMM) are read over PCIe and written back (full duplex: reads and writes use opposite
directions), bounded below by host DDR for both. A row-wise state (row-wise Adagrad's one fp32 a
row) is the exception: FBGEMM keeps it on the device (``base.managed_state_in_hbm``), so the update
reads and writes it in HBM and only the rows cross the link.

``bytes_by_resource["pcie"]`` counts wire bytes (payload + TLP overhead): an engine charging them at
that bandwidth reproduces the time above.
"""

from __future__ import annotations

from typing import Final

from recsim.cost.compute import CPU_MEMORY_EFFICIENCY
from recsim.cost.embedding.base import (
    DDR,
    HBM,
    PCIE,
    EmbeddingCost,
    Lookup,
    TierModel,
    ceil_to,
    managed_state_in_hbm,
    register_tier,
)
from recsim.cost.embedding.gpu import lookup_backward, lookup_forward, lookup_update
from recsim.hardware.system import System

__all__ = [
    "PCIE_REQUEST_BYTES",
    "PCIE_TLP_OVERHEAD_BYTES",
    "UvmTier",
    "host_ddr_bandwidth_bytes_per_s",
    "pcie_payload_bytes",
    "pcie_wire_bytes",
    "rank_host_ddr_bandwidth_bytes_per_s",
]

PCIE_REQUEST_BYTES: Final[float] = 64.0
"""Granule of a GPU zero-copy read of host memory: a row is fetched as 64 B requests (row bytes
rounded up to 64 B). ASSUMPTION, unsourced: "the issue's figure" is the task statement the tier was
written to (commit 64c886a); no measurement or document behind it is in the repository or
../shared/reference. GPUs fetch host memory in 32 B sectors merged per 128 B line, so 64 B is the
middle of that range. No validation case reads a UVM row, so nothing checks it."""

PCIE_TLP_OVERHEAD_BYTES: Final[float] = 24.0
"""Per-TLP overhead on the wire: 12-16 B header, 2 B sequence number, 4 B LCRC and framing, 20-26 B
in Neugebauer et al., "Understanding PCIe performance for end host networking", SIGCOMM 2018 (their
PCIe model, Sec. 3); 24 B taken."""


def pcie_payload_bytes(nbytes: float) -> float:
    """Payload of reading ``nbytes`` contiguous bytes with 64 B zero-copy requests."""
    return ceil_to(nbytes, PCIE_REQUEST_BYTES)


def pcie_wire_bytes(payload: float) -> float:
    """Wire bytes of ``payload`` moved in 64 B TLPs (payload + per-TLP overhead)."""
    return payload * (1.0 + PCIE_TLP_OVERHEAD_BYTES / PCIE_REQUEST_BYTES)


def host_ddr_bandwidth_bytes_per_s(system: System) -> float:
    """What the node's DRAM sustains (all channels, ``CPU_MEMORY_EFFICIENCY`` of the pin rate)."""
    return system.node.host_memory_bandwidth_bytes_per_s * CPU_MEMORY_EFFICIENCY


def rank_host_ddr_bandwidth_bytes_per_s(system: System) -> float:
    """One accelerator's share of ``host_ddr_bandwidth_bytes_per_s``: its socket's channels (the
    node's over its sockets, as the topology's memory edges and the DES's host DRAM links,
    ``recsim.engine.host_dram``, split them), shared by the accelerators on that socket, which read
    their host-resident rows at once (ASSUMPTION, as the ``ddr`` tier's ``rank_share``: every rank
    has such shards, as the planner's symmetric schemes give them): ``Node.host_dram_ranks``.

    Why a socket's, not the node's: a rank's host memory lives in its own socket's DRAM
    (ASSUMPTION, the DES's and the utilisation report's, ``recsim.engine.host_dram``): Linux's
    default policy allocates a page on the NUMA node of the CPU that first touches it
    (set_mempolicy(2), ``MPOL_DEFAULT``: local allocation), so FBGEMM's managed tables
    (``new_managed_tensor``, filled by the rank's process) and its pinned buffers land in the
    memory of the socket the process runs on, its GPU's where the launcher binds ranks to their
    GPUs' NUMA nodes (``numactl --cpunodebind --membind``; an unbound or interleaved run spreads
    them, which is not modelled). So a lone
    GPU on a two-socket node has one socket's channels (the node's before, which the DES then
    halved), and a socket holding more GPUs than another gives each less. An op's cost does not
    know its rank: where sockets hold unequal numbers of GPUs, every rank gets the share of the
    fullest socket (those of the others read slower than they could; the DES then never finds a
    socket's lookups over its channels). All of the node's DRAM on a node without accelerators."""
    return host_ddr_bandwidth_bytes_per_s(system) / system.node.host_dram_ranks


@register_tier
class UvmTier(TierModel):
    name = "uvm"
    gpu_tbe = True

    def forward(self, lookup: Lookup) -> EmbeddingCost:
        acc = lookup.accelerator()
        link = acc.host_interface
        payload = lookup.lookups * pcie_payload_bytes(lookup.row_bytes)
        wire = pcie_wire_bytes(payload)
        pcie_s = wire / lookup.system.node.host_bandwidth_bytes_per_s_per_accelerator
        ddr_s = payload / rank_host_ddr_bandwidth_bytes_per_s(lookup.system)
        kernel = lookup_forward(lookup, l2_hit=0.0, rows_elsewhere=True)
        round_trip = 2.0 * link.latency_s if lookup.lookups > 0 else 0.0
        launch = lookup.launch_s(kernel.kernels)
        window = max(kernel.memory_s, pcie_s, ddr_s)  # the rows stream through DDR, PCIe and HBM at once
        time = kernel.fixed_s + window + round_trip + launch
        details = lookup.base_details() | lookup.forward_accounting()
        details |= {"pcie_s": pcie_s, "ddr_s": ddr_s, "gpu_s": kernel.memory_s, "launch_s": launch}
        return EmbeddingCost(time, {HBM: kernel.hbm_bytes, PCIE: wire, DDR: payload}, details, window)

    def backward(self, lookup: Lookup) -> EmbeddingCost:
        acc = lookup.accelerator()
        link = acc.host_interface
        unique = lookup.unique_rows
        # A row-wise state lives in HBM (FBGEMM's ``construct_split_state``): the update reads and
        # writes it there, beside the gradients; an element-wise one crosses the link with its row.
        state_in_hbm = managed_state_in_hbm(lookup.op.optimizer)
        state_hbm = unique * 2.0 * lookup.state_bytes if state_in_hbm else 0.0  # read, then written
        sort, update = lookup_backward(lookup, row_update_hbm_bytes=state_hbm, state_in_hbm=state_in_hbm)
        state = 0.0 if state_in_hbm else lookup.state_bytes
        read = unique * (pcie_payload_bytes(lookup.row_bytes) + pcie_payload_bytes(state))
        if lookup.op.optimizer == "none":
            read = 0.0
        write = unique * (pcie_payload_bytes(lookup.row_bytes) + pcie_payload_bytes(state))
        pcie_s = (
            pcie_wire_bytes(max(read, write)) / lookup.system.node.host_bandwidth_bytes_per_s_per_accelerator
        )
        ddr_s = (read + write) / rank_host_ddr_bandwidth_bytes_per_s(lookup.system)
        round_trip = 2.0 * link.latency_s if unique > 0 else 0.0
        launch = lookup.launch_s(sort.kernels + update.kernels)
        # The SMs handle the rows' bytes as they would in HBM, then wait for the link too: the
        # update takes at least what the ``hbm`` tier's does (a tester found uvm's backward 2 %
        # faster than hbm's under heavy skew, the row traffic's GPU side taken as free).
        in_hbm = lookup_update(
            lookup,
            row_update_hbm_bytes=unique * (lookup.update_read_bytes + lookup.update_write_bytes),
            state_in_hbm=True,
        )
        window = max(update.memory_s, in_hbm.memory_s, pcie_s, ddr_s)
        update_s = update.fixed_s + window + round_trip
        details = lookup.base_details() | lookup.backward_accounting()
        details |= {"sort_s": sort.time_s, "update_s": update_s, "pcie_s": pcie_s, "launch_s": launch}
        details["pcie_to_host_bytes"] = pcie_wire_bytes(write)  # the updated rows go back
        resources = {
            HBM: sort.hbm_bytes + update.hbm_bytes,
            PCIE: pcie_wire_bytes(read + write),
            DDR: read + write,
        }
        return EmbeddingCost(sort.time_s + update_s + launch, resources, details, window)
