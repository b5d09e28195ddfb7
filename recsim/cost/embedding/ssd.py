"""Tier ``ssd[:fraction]``: the shard on the node's NVMe SSDs behind the OS page cache in host DRAM
(``fraction`` of host memory, default ``DEFAULT_PAGE_CACHE_FRACTION``); the CPU pools (the
conventional-SSD baseline of RecSSD, Wilkening et al., ASPLOS 2021).

**Page cache.** One per node, ``fraction`` of its host memory, as the planner books it
(``planner.storage.plan_usage``: the largest fraction of the node's ssd shards); the OS page cache
is shared by the node's processes, so no ``rank_share`` of it: all the node's ssd shards, on all
its ranks, split it by their bytes (``Embedding.cache_share``, set by the graph builder, which also
costs a shard asking a smaller fraction against the booked one; ssd lookups are never fused, so
each used to assume the whole cache: two 82 GB tables on skylake-2s each hit 1.0 in a cache that
holds one). A lookup with no share (the planner's estimator on one shard) gets the whole cache.
The OS caches whole pages: a miss brings a row's page with its neighbours, so the hit rate is the
LRU hit rate (Che) of the op's share of the cache in *pages*, over the popularity of pages
(``page_popularity``): with ids hashed over the table a page of ``k = page / row`` rows holds ``k``
rows drawn from the whole table, and page popularity is flatter than row popularity (a reviewer's
exact count: 2^22 rows of 128 B, Zipf 1.05, a cache of 10 % of the table, hits 0.68 by pages where
per-row capacity gave 0.86, 2.3x the misses). Rows of a page or more: pages of one row (as before).

**Misses.** Each distinct row the page cache lacks (``Lookup.missed_unique_rows``) reads
``ceil(row / page)`` whole pages (read amplification ``page / row``); rows that share a page share
its read (``base.pages_touched``). Pages are spread over the node's drives.
Per drive the slowest of:

* IOPS: ``pages / random_read`` (the datasheet's 4 KiB random-read rate);
* flash channels: ``pages x page / (channels x channel_bandwidth)``;
* host interface: ``pages x page / min(sequential read, link)``;
* latency with queue depth (Little's law): ``read_latency x max(1 - exp(-pages), per_drive /
  (QUEUE_DEPTH x share))`` (a rank sharing the drives gets ``share`` of its queue slots; a batch
  waits one read latency times the chance it reads at all, ``1 - hit^lookups``: ``drive_time_s``).

**Host side**: every lookup reads its row lines as the ``ddr`` tier does (``ddr.row_reads``: the
hot rows from the CPU's last-level cache, the rest as random DRAM lines, a page-cache hit from the
cached page, a miss from the page just DMA'd in), the missed pages are written into DRAM, the CPU
reads the indices and offsets and writes the pooled vectors (``ddr.host_streamed_bytes``) and pools,
on as many cores as the lookup has bags (``ddr.cpu_threads``); the host and the drives overlap, so
``t = max(ssd, host)``. On a GPU node the node's drives, DRAM and cores serve every local rank at
once, so a rank gets ``ddr.rank_share`` of them, as the ``ddr`` tier's lookups do (a tester found a
fully cached ``ssd`` shard 4x faster than the same shard on ``ddr`` without it).

**Backward** is not modelled (``InfeasibleError``): SSD tiers serve inference in recsim, and the
drive specs have no write figures for the read-modify-write of pages.
"""

from __future__ import annotations

import math
from typing import ClassVar, Final

import numpy as np

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
from recsim.cost.embedding.ddr import (
    cpu_pool_s,
    cpu_threads,
    dram_share,
    host_streamed_bytes,
    pcie_transfer_s,
    rank_share,
    row_reads,
)
from recsim.cost.embedding.uvm import host_ddr_bandwidth_bytes_per_s
from recsim.errors import InfeasibleError
from recsim.hardware.devices import Ssd
from recsim.hardware.system import System
from recsim.workload.access.popularity import GroupedPopularity

__all__ = [
    "DEFAULT_PAGE_CACHE_FRACTION",
    "QUEUE_DEPTH",
    "SsdTier",
    "cache_share",
    "drive_time_s",
    "page_popularity",
]

DEFAULT_PAGE_CACHE_FRACTION: Final[float] = 0.1
"""ASSUMPTION: the OS page cache left for embedding pages, as a fraction of host memory (the rest
holds the model's DRAM-resident tables, the serving process and its batches)."""

QUEUE_DEPTH: Final[int] = 128
"""ASSUMPTION: reads the host keeps in flight per drive: 4 submission threads x QD 32, the setting
at which datasheet 4 KiB random-read IOPS are usually rated (e.g. fio numjobs=4, iodepth=32)."""


def drive_time_s(
    ssd: Ssd,
    drives: int,
    pages: float,
    page_bytes: float,
    parallel: float,
    share: float,
    read_chance: float,
) -> dict[str, float]:
    """The limits of reading ``pages`` pages of ``page_bytes`` spread over ``drives`` drives, of
    which the lookup gets ``share`` (the node's other ranks read them at once).

    Sharing a drive divides its throughput (IOPS, channels, interface, the queue's slots), not one
    read's latency: the latency is ``read_latency x max(read_chance, per_drive / (parallel x
    share))``, ``read_chance`` the chance that the batch reads at least once (the caller's
    ``base.any_miss_chance`` of its lookups): a whole read latency once a few pages are read,
    however many drives they spread over or ranks share them, and a vanishing fraction of one as the
    cache comes to hold every row (no step at full caching). Past the rank's share of the queue,
    Little's law. (It was ``read_latency x max(min(1, per_drive), ...) / share``: one read on a
    2-GPU node cost half the datasheet latency; then a full latency whenever ``pages > 0``, even at
    5e-6 pages; then the Poisson chance of the expected pages, ``1 - exp(-pages)``, 63 % of a read
    for one lookup the cache lacks.)"""
    per_drive = pages / drives
    nbytes = per_drive * page_bytes
    return {
        "iops_s": per_drive / ssd.random_read_iops / share,
        "channels_s": nbytes / ssd.internal_bandwidth_bytes_per_s / share,
        "interface_s": nbytes / ssd.external_bandwidth_bytes_per_s / share,
        "latency_s": ssd.read_latency_s * max(read_chance, per_drive / (parallel * share)),
    }


def page_popularity(rows: GroupedPopularity, per_page: int) -> GroupedPopularity:
    """The popularity of the pages of ``per_page`` rows a table of popularity ``rows`` is stored in,
    row ids hashed over the table (the access models permute hot rows over the id space).

    A page's probability is the sum of its ``k = per_page`` rows' probabilities, the rows drawn
    independently from the table. Hot rows are sparse, so each of the hottest rows lies in a page of
    its own beside ``k - 1`` ordinary rows, whose sum concentrates at ``k - 1`` times the mean row
    (their sum is over many independent small terms). The construction: the ``R / k`` pages are led
    by the ``R / k`` hottest rows, each with ``k - 1`` rows of the mean probability of the other
    rows, ``m = (1 - top(R / k)) / (R - R / k)`` (``~ 1 / R``, the reviewer's ``p_row + (k - 1) / R``).
    It keeps the page count and the total probability exactly, is exact for uniform access (every
    page ``k / R``: hit as by rows of byte-equivalent capacity) and for ``k = 1`` (the rows), and
    gives the head pages the hot row's own traffic, which a mean over all pages would dilute ``k``
    times. It is a little pessimistic: the mean leaves out the spread of the ``k - 1`` rows' sum
    (pages where warm rows happen to gather, which LRU keeps), so it gives 0-4 points less hit
    than exact random pages (Monte Carlo over permutations, 4096 to 2^22 rows, Zipf 0.8-1.2, caches
    of 1-30 % of the table), where per-row capacity gave 5-30 points more (``tests``)."""
    if per_page <= 1 or rows.rows <= per_page:
        return rows
    return rows.derive(("pages", per_page), lambda: _pages(rows, per_page))


def _pages(rows: GroupedPopularity, per_page: int) -> GroupedPopularity:
    pages = rows.rows / per_page
    cum = np.concatenate([[0.0], np.cumsum(rows.weights)])
    lead = np.minimum(rows.weights, np.maximum(0.0, pages - cum[:-1]))
    keep = lead > 0
    weights, probs = lead[keep], rows.probs[keep]
    rest = max(0.0, 1.0 - float(np.dot(weights, probs)))
    mean = rest / (rows.rows - pages)
    return GroupedPopularity(weights, np.minimum(1.0, probs + (per_page - 1) * mean))


def cache_share(lookup: Lookup) -> float:
    """The share of the node's SSD-tier cache (the ssd tier's page cache, the smartssd tier's drive
    DRAM) the lookup's rows get: ``Embedding.cache_share``, the graph builder's split of the node's
    one cache by the bytes of all its shards on that tier, on all its ranks. None (one shard, as
    the planner's estimator costs it): the whole cache, as the planner books one per node, whoever
    shares it."""
    share = lookup.op.cache_share
    return 1.0 if share is None else min(1.0, max(0.0, float(share)))


def _page_cache(lookup: Lookup, cache_bytes: float, page_bytes: float) -> tuple[float, float]:
    """The hit rate of the page cache of ``cache_bytes`` and the batch's distinct rows it lacks: Che
    over ``page_popularity`` in pages (rows of a page or more: over rows, in rows)."""
    per_page = max(1, math.floor(page_bytes / lookup.row_bytes + 1e-12))
    table_rows = float(lookup.op.rows)
    if per_page == 1 or table_rows <= per_page:
        cache_rows = cache_bytes / lookup.row_bytes
        return lookup.hit_rate(cache_rows), lookup.missed_unique_rows(cache_rows)
    if cache_bytes <= 0 or lookup.lookups <= 0:
        hit, share = 0.0, 1.0
    elif cache_bytes / page_bytes * per_page >= table_rows:
        hit, share = 1.0, 0.0
    else:
        pages = page_popularity(lookup.access.popularity, per_page)
        cache_pages = cache_bytes / page_bytes
        hit = min(1.0, max(0.0, pages.lru_hit_rate(cache_pages)))
        share = pages.missed_unique_share(lookup.lookups, cache_pages)
    # A missed row is one whose page the cache lacks (its page's share, taken for the row's).
    return hit, min(lookup.unique_rows * share, lookup.lookups * (1.0 - hit))


_SSD_TRAINING = (
    "tier 'ssd' models inference lookups only: the drives have no write figures for the "
    "page read-modify-write of a backward"
)


@register_tier
class SsdTier(TierModel):
    name = "ssd"
    parameter: ClassVar[str | None] = "page cache as a fraction of host memory"
    default: ClassVar[float | None] = DEFAULT_PAGE_CACHE_FRACTION

    def unavailable(self, system: System, training: bool) -> str | None:
        if system.node.ssds is None:
            return f"tier 'ssd': system {system.name!r} has no SSDs"
        if training:
            return _SSD_TRAINING
        return None

    def forward(self, lookup: Lookup) -> EmbeddingCost:
        system = lookup.system
        group = system.node.ssds
        if group is None:
            raise InfeasibleError(f"tier 'ssd': system {system.name!r} has no SSDs")
        ssd = group.device
        fraction = lookup.param if lookup.param is not None else DEFAULT_PAGE_CACHE_FRACTION
        share = rank_share(system)
        # One OS page cache per node, shared by its ranks (the planner books one): no ``rank_share``.
        cache_bytes = fraction * system.node.host_memory_capacity_bytes * cache_share(lookup)
        hit, missed_rows = _page_cache(lookup, cache_bytes, ssd.page_bytes)
        pages = pages_touched(missed_rows, lookup.row_bytes, lookup.op.rows, ssd.page_bytes)
        page_bytes = pages * ssd.page_bytes
        # The batch reads at all unless every lookup finds its page cached.
        chance = any_miss_chance(hit, lookup.lookups) if pages > 0 else 0.0
        limits = drive_time_s(ssd, group.count, pages, ssd.page_bytes, QUEUE_DEPTH, share, chance)
        ssd_s = max(limits.values())

        granule = system.node.host_memory.dimm_memory.access_granularity_bytes
        threads = cpu_threads(system, lookup.bags_returned, share)
        # Hits read their row from the cached page, misses from the new page; the hot rows of
        # either from the CPU's LLC, as the ddr tier's.
        reads = row_reads(lookup, share, threads)
        # + the DMA of the missed pages into DRAM, and what the CPU streams (indices, offsets, output)
        host_bytes = reads.dram_lines * granule + page_bytes + host_streamed_bytes(lookup)
        host_s = max(
            # its socket's DRAM share, as the ddr tier's (``ddr.dram_share``)
            host_bytes / host_ddr_bandwidth_bytes_per_s(system) / dram_share(system),
            reads.latency_s,
            cpu_pool_s(system, lookup.lookups * lookup.op.dim, threads),
        )
        details = lookup.base_details() | lookup.forward_accounting()
        details |= {
            "page_cache_hit_rate": hit,
            "pages_read": pages,
            "read_amplification": page_bytes / (missed_rows * lookup.row_bytes) if missed_rows > 0 else 0.0,
            "ssd_s": ssd_s,
            "host_s": host_s,
            "llc_hit_rate": reads.llc_hit_rate,
            **limits,
        }
        # On a GPU node the indices come down and the pooled vectors go up, as for ``ddr``.
        moved = lookup.lookups * INDEX_BYTES + lookup.bags_returned * lookup.pooled_bytes
        pcie_s = pcie_transfer_s(system, moved, copies=2)
        details["pcie_s"] = pcie_s
        resources = {SSD: page_bytes, FLASH: page_bytes, DDR: host_bytes} | ({PCIE: moved} if pcie_s else {})
        return EmbeddingCost(max(ssd_s, host_s) + pcie_s, resources, details)

    def backward(self, lookup: Lookup) -> EmbeddingCost:
        raise InfeasibleError(_SSD_TRAINING)
