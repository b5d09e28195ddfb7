"""Tier ``smartssd[:fraction]``: the shard on SSDs that gather and pool inside the drive (RecSSD,
Wilkening et al., "RecSSD: Near Data Processing for Solid State Drive Based Recommendation
Inference", ASPLOS 2021); ``fraction`` of the drive's DRAM (``Ssd.dram_cache``) caches rows (RecSSD's
firmware keeps an embedding cache in SSD DRAM), default 0: no cache.

The host sends the indices; for every unique row that misses the drive's cache
(``Lookup.missed_unique_rows``: the batch's distinct rows the LRU cache lacks) the firmware reads
``ceil(row / flash_page)`` flash pages (the Cosmos+ FTL reads whole flash pages; rows sharing a
flash page share its read, ``base.pages_touched``) over the flash channels, pools on the NDP
engine, and returns only the pooled vectors. The drives' DRAM is one cache for the node: all its
smartssd shards, on all its ranks, split it by their bytes (``Embedding.cache_share``, set by the
graph builder; none: the whole of it). The node's ranks read the drives at once, so a rank gets
``ddr.rank_share`` of each drive's throughput (flash channels, dies, NDP engine, interface), as the
``ssd`` tier's ``drive_time_s``. Per drive the slowest of (each over that share):

* flash channels: ``reads x flash_page / (channels x channel_bandwidth)``;
* flash latency: ``read_latency x reads / (channels x dies_per_channel)`` (die-level parallelism,
  Little's law), at least ``read_latency x (1 - exp(-reads))`` over the node's expected reads (the
  chance the batch reads flash at all: a whole latency once a few pages are read, a fraction of one
  as the row cache comes to hold the rows);
* NDP engine: one add per pooled element at ``Ssd.ndp.flop_per_s``;
* host interface: indices in and pooled vectors out, over ``min(sequential read, link)``.

No host page cache and no per-page PCIe transfer: that, and the page locality the firmware can
exploit, is the RecSSD argument. RecSSD reports about 2x lower end-to-end latency than a
conventional SSD; recsim's ratio against the ``ssd`` tier is checked (not tuned) in
``tests/unit/test_cost_embedding.py``. Not modelled: the host I/O stack's CPU time per request that
the conventional path pays and RecSSD avoids (no sourced figure in the library). Backward: not
modelled (an inference design; ``InfeasibleError``).
"""

from __future__ import annotations

from typing import ClassVar

from recsim.cost.embedding.base import (
    DDR,
    FLASH,
    INDEX_BYTES,
    PCIE,
    SSD,
    EmbeddingCost,
    Lookup,
    TierModel,
    any_miss_chance,
    pages_touched,
    register_tier,
)
from recsim.cost.embedding.ddr import pcie_transfer_s, rank_share
from recsim.cost.embedding.ssd import cache_share
from recsim.errors import InfeasibleError
from recsim.hardware.system import System

__all__ = ["SmartSsdTier"]


_SMARTSSD_TRAINING = "tier 'smartssd' models inference lookups only (RecSSD is an inference design)"


@register_tier
class SmartSsdTier(TierModel):
    name = "smartssd"
    parameter: ClassVar[str | None] = "row cache as a fraction of the drive's DRAM"
    default: ClassVar[float | None] = 0.0

    def unavailable(self, system: System, training: bool) -> str | None:
        group = system.node.ssds
        if group is None or group.device.ndp is None:
            return f"tier 'smartssd': system {system.name!r} has no SSD with an NDP engine"
        if training:
            return _SMARTSSD_TRAINING
        return None

    def forward(self, lookup: Lookup) -> EmbeddingCost:
        system = lookup.system
        group = system.node.ssds
        if group is None or group.device.ndp is None:
            raise InfeasibleError(f"tier 'smartssd': system {system.name!r} has no SSD with an NDP engine")
        ssd = group.device
        ndp = ssd.ndp
        assert ndp is not None
        drives = group.count
        fraction = lookup.param if lookup.param is not None else 0.0
        # The drives' DRAM is one cache for the node's smartssd shards (``ssd.cache_share``); their
        # throughput is shared by the node's ranks, which read them at once.
        dram = (ssd.dram_cache_bytes or 0.0) * drives * cache_share(lookup)
        share = rank_share(system)
        cache_rows = fraction * dram / lookup.row_bytes
        hit = lookup.hit_rate(cache_rows)
        missed = lookup.missed_unique_rows(cache_rows)
        reads = pages_touched(missed, lookup.row_bytes, lookup.op.rows, ssd.flash_page_bytes) / drives
        flash_bytes = reads * ssd.flash_page_bytes
        parallel = ssd.channels * ssd.dies_per_channel * share  # the rank's share of the dies
        chance = any_miss_chance(hit, lookup.lookups) if reads > 0 else 0.0
        transfer = lookup.lookups * INDEX_BYTES + lookup.bags_returned * lookup.pooled_bytes
        limits = {
            "flash_s": flash_bytes / ssd.internal_bandwidth_bytes_per_s / share,
            # A read's latency does not shrink with fewer reads, but ``reads`` is an expected count:
            # at least the latency x the chance of one read at all (some lookup misses the row cache,
            # ``any_miss_chance``).
            "flash_latency_s": ssd.read_latency_s * max(chance, reads / parallel),
            "ndp_s": lookup.lookups * lookup.op.dim / (drives * ndp.flop_per_s * share),
            "interface_s": transfer / (drives * ssd.external_bandwidth_bytes_per_s * share),
        }
        details = lookup.base_details() | lookup.forward_accounting()
        details |= {"ssd_cache_hit_rate": hit, "flash_reads": reads * drives, **limits}
        # On a GPU node the pooled vectors go on to it from host memory, as for ``ddr``.
        pcie_s = pcie_transfer_s(lookup.system, transfer, copies=2)
        details["pcie_s"] = pcie_s
        resources = {FLASH: flash_bytes * drives, SSD: transfer, DDR: transfer} | (
            {PCIE: transfer} if pcie_s else {}
        )
        return EmbeddingCost(max(limits.values()) + pcie_s, resources, details)

    def backward(self, lookup: Lookup) -> EmbeddingCost:
        raise InfeasibleError(_SMARTSSD_TRAINING)
