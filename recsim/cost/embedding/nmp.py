"""Tier ``nmp``: the shard in RecNMP DIMMs that gather and pool next to the DRAM (Ke et al., "RecNMP:
Accelerating Personalized Recommendation with Near-Memory Processing", ISCA 2020).

**Placement.** RecNMP's reduction happens inside a channel: the host's memory controller sends a
channel's DIMMs their NMP-Inst packets, each DIMM-NMP dispatches them to its rank-NMPs by rank
address and sums their partial sums in its adder tree, and the DIMM returns one partial sum per
pooling over the channel; the host adds the DIMMs' partial sums. The paper's rank-level
parallelism (throughput rising with the ranks of a channel, "4 DIMMs x 2 ranks/DIMM gives 8x
internal bandwidth", 8 ranks a channel) holds when a pooling's rows share a channel. ASSUMPTION
(the paper's text was not retrieved; its summaries give the scaling within a channel, and FAFNIR,
Asgari et al., HPCA 2021, faults RecNMP for relying on a query's vectors sharing a channel): an
NMP table lives in one channel's DIMMs, its rows interleaved over that channel's ranks
(``dimms_per_channel x NmpDimm.ranks``). Rows interleaved over every channel instead return about
a partial sum per row once the node has more DIMMs than a pooling has rows: a tester found
recsim's speedup falling from 4 to 8 ranks a channel under that interleaving, the opposite of the
paper. ASSUMPTION: the node's NMP tables are spread evenly over its channels and looked up
together, so a lookup is charged the node's DIMMs and channels with its bags shared among them as
the tables are, every channel carrying its own tables' traffic at once (a lone table would use one
channel); the RankCaches holding a table are its channel's.

Each rank's processing unit reads its own rows at the rank's full data rate, all ranks at once
(rank-level parallelism: the DIMM's internal bandwidth is ``ranks`` times what its channel carries,
``NmpDimm.internal_bandwidth_bytes_per_s``), keeps hot rows in its RankCache, and sum-pools; of the
rows, only partial sums cross the channel (beside the NMP instructions and what the host streams
itself). The slowest of:

* rank DRAM: the missing rows' lines over ``dimms x internal_bandwidth x CPU_MEMORY_EFFICIENCY``
  (the ``ddr`` tier's DRAM efficiency, for a like-for-like comparison);
* rank DRAM latency: ``latency x lines / (ranks x BANKS_PER_RANK)``: a rank-NMP issues DRAM commands
  itself, so its parallelism is the rank's banks (the ``ddr`` tier's is the cores' fill buffers);
  the latency is the DIMM's platform load-to-use figure, an upper bound inside the DIMM (so a single
  bag costs one DRAM latency on both tiers: recsim credits RecNMP with bandwidth, not latency);
* RankCache: hit rate = LRU hit rate (Che) of ``ranks per channel x rank_cache / row_bytes`` rows
  (the table's channel's ranks hold disjoint rows of it; for an IRM stream with rows spread at
  random, per-rank LRUs behave like one LRU of the summed size); one line per
  ``rank_cache_latency`` per rank. The node's nmp tables share the RankCaches: a lookup gets its
  shard's share of the node's by bytes (``Embedding.cache_share``, set by the graph builder as for
  the SSD tiers' caches: ASSUMPTION, a static split by size, not the shares a shared LRU would
  settle at), at most its channel's; with no share (one shard, as the planner's estimator costs
  it), its channel's. (Each table had its channel's whole RankCaches at first, however many
  tables the channel held: a tester's find, 64 like tables on a channel each hit 8x the rows.)
* processing units: a multiply and an add per element (RecNMP computes weighted sums) at
  ``clock x flop_per_cycle`` per rank;
* channels: ``NMP_INST_BYTES`` per lookup to the DIMMs, and back one fp32 partial sum per bag from
  each DIMM of the bag's channel holding one of its rows (``d x (1 - (1 - 1/d)^pooling)`` of the
  channel's ``d`` DIMMs), plus what the host streams as in the ``ddr`` tier
  (``ddr.host_streamed_bytes``: it reads the indices and offsets to build the instructions and
  writes the pooled vectors), over the node's channels at the host's bandwidth (the bags are spread
  over the channels as the tables are, so every channel carries its share at its share of the
  bandwidth: the node's bytes over the node's bandwidth); the CPU adds the partial sums. At
  pooling 1 there is nothing to reduce and the channels carry about what the ``ddr`` tier's do.

On a GPU node (host-side embeddings in training), as for the ``ddr`` tier: the node's NMP DIMMs and
channels serve every local rank's shards at once. A rank gets its socket's DIMMs and channels,
shared by the ranks on that socket (``ddr.dram_share``, ``Node.host_dram_ranks``: a rank's host
memory is its socket's, as for the ``ddr`` and ``uvm`` tiers: ``1 / accelerators per node`` of the
node's where every socket holds as many), and its share of the node's cores for the host's sum of
the partial sums (``ddr.rank_share``); ASSUMPTION: every rank has NMP shards, as symmetric plans
give them. The indices cross PCIe to the host and the pooled vectors back, one transfer after the
pooling.

Backward: RecNMP is an inference design; the host updates rows through the ordinary channels, so
the backward is the ``ddr`` tier's.

**Against the paper.** RecNMP's abstract (ai.meta.com publication page; shared/reference
published.yaml) gives "up to 9.8x memory latency speedup" with its memory-side caching, table-aware
packet scheduling and hot-entry profiling, and "overall" 4.2x throughput; it does not tie 4.2x to
SparseLengthsSum at 8 ranks per channel, and the per-rank figures of its evaluation were not
retrieved. The rank-level parallelism it builds on (a summary of it, [SUM1] in
recnmp-ddr4-2400.yaml: "4 DIMM x 2 ranks/DIMM gives 8x internal bandwidth") is the ceiling of the
gain. recsim, on an RMC1-like op (uniform rows, batch 165, ``tests/unit/test_cost_embedding.py``):
1.8x, 3.6x, 5.7x at 2, 4, 8 ranks per channel. At 2 and 4 the ranks' banks bind
(``rank_latency_s``); at 8 the channels do: per lookup 8 B of instruction against 128 B of row, a
128 B partial sum per DIMM of a bag's channel (4 a bag) and what the host streams. The ``ddr``
baseline is not slow: it is bound by the host's bandwidth at the STREAM efficiency (random lines get
no more), and its LLC serves none of a uniform 4M-row table. Limits looked for and not binding at 8
ranks: the rank-NMPs' adders (0.9 us against the channels' 1.8 us), the host's sum of the partial
sums (4 ns), DDR4's activate limits inside a rank (x4 DDR4-2400, JESD79-4 as recalled, not re-read:
tRRD_S 4 nCK and tFAW 16 nCK allow an activate per 3.3 ns, one per 128 B row against 6.7 ns of data
bursts), and the RankCache (no hits on uniform rows). Not modelled, for want of a source: the
NMP-Inst's real encoding and whether it travels on the command/address pins rather than the data bus
(``NMP_INST_BYTES`` is an ASSUMPTION), and any wait of a channel's ranks for the slowest of them on
each packet (rank-level NDP's load imbalance, which TRiM, Kim et al., IEEE CAL 2021, answers with
hot-vector replication). Either would lower the 8-rank gain.

The abstract's two figures are of different things: 9.8x is a *memory latency* speed-up (the
embedding operators' memory side, with every co-optimisation), 4.2x the *overall* throughput (the
whole inference, whose other operators, the MLPs, RecNMP does not speed up: by Amdahl's law below
the speed-up of its embedding operators). recsim's 5.7x is one SparseLengthsSum op, so the figure
to hold it to is the 9.8x ceiling (``tests``), not 4.2x. (A strict xfail had expected 4.2x of the
op at 8 ranks, a reading the abstract does not support; the paper's per-rank figures were still not
retrieved, and they would be the test to add.)
"""

from __future__ import annotations

import math
from typing import Final

from recsim.cost.compute import CPU_MEMORY_EFFICIENCY
from recsim.cost.embedding.base import (
    INDEX_BYTES,
    NMP_CHANNEL,
    NMP_RANK,
    PCIE,
    EmbeddingCost,
    Lookup,
    TierModel,
    register_tier,
)
from recsim.cost.embedding.ddr import (
    DdrTier,
    cpu_pool_s,
    dram_share,
    host_streamed_bytes,
    pcie_transfer_s,
    rank_share,
)
from recsim.cost.embedding.uvm import host_ddr_bandwidth_bytes_per_s
from recsim.errors import InfeasibleError
from recsim.hardware.system import System
from recsim.workload.spec import DTYPE_BYTES

__all__ = ["BANKS_PER_RANK", "NMP_FLOPS_PER_ELEMENT", "NMP_INST_BYTES", "NmpTier"]

BANKS_PER_RANK: Final[int] = 16
"""DDR4 x4/x8 devices have 16 banks in 4 bank groups (JEDEC JESD79-4): the accesses a rank can
overlap. DDR5 has 32; recsim uses 16 for every NMP DIMM (the library's is DDR4)."""

NMP_INST_BYTES: Final[float] = 8.0
"""ASSUMPTION: bytes of channel traffic per lookup for its NMP instruction (a DRAM address, a bag
tag and a weight, packed by the DIMM-NMP's decoder); RecNMP's exact encoding was not retrieved."""

NMP_FLOPS_PER_ELEMENT: Final[float] = 2.0
"""A weighted sum step, multiply + add (the rank-NMP datapath of recnmp-ddr4-2400.yaml)."""


@register_tier
class NmpTier(TierModel):
    name = "nmp"

    def unavailable(self, system: System, training: bool) -> str | None:
        if system.node.host_memory.nmp is None:
            return f"tier 'nmp': system {system.name!r} has no NMP DIMMs (host_memory.nmp)"
        return None

    def forward(self, lookup: Lookup) -> EmbeddingCost:
        system = lookup.system
        node = system.node
        nmp = node.host_memory.nmp
        if nmp is None:
            raise InfeasibleError(f"tier 'nmp': system {system.name!r} has no NMP DIMMs (host_memory.nmp)")
        channels = node.memory_channels
        per_channel = node.host_memory.dimms_per_channel  # the DIMMs a table's rows are spread over
        dimms = channels * per_channel
        ranks = dimms * nmp.ranks
        # On a GPU node a rank's NMP tables are in its socket's DIMMs and channels, shared with the
        # other ranks on that socket (``dram_share``, as the ``ddr`` tier's DRAM and
        # ``uvm.rank_host_ddr_bandwidth_bytes_per_s``); the host's sum of the partial sums runs on
        # its share of the node's cores (``rank_share``, as the ``ddr`` tier's pooling).
        dram = dram_share(system)
        cores = rank_share(system)
        granule = nmp.memory.access_granularity_bytes
        lines_per_row = math.ceil(lookup.row_bytes / granule)
        # The table's rows sit in one channel's ranks: their RankCaches are the ones that hold it,
        # shared with the node's other nmp tables (``cache_share``: its share of the node's
        # RankCaches by bytes, at most its channel's; none, one table: the channel's).
        channel_cache = per_channel * nmp.ranks * nmp.rank_cache_bytes
        share = lookup.op.cache_share
        if share is not None:
            channel_cache = min(channel_cache, ranks * nmp.rank_cache_bytes * max(0.0, float(share)))
        cache_rows = channel_cache / lookup.row_bytes
        hit = lookup.hit_rate(cache_rows)

        dram_lines = lookup.lookups * (1.0 - hit) * lines_per_row
        dram_bytes = dram_lines * granule
        internal = dimms * nmp.internal_bandwidth_bytes_per_s * CPU_MEMORY_EFFICIENCY
        dram_s = dram_bytes / internal
        latency = nmp.memory.latency_s
        latency_s = (
            latency * max(min(1.0, dram_lines), dram_lines / (ranks * BANKS_PER_RANK))
            if dram_lines > 0
            else 0.0
        )
        cache_s = lookup.lookups * hit * lines_per_row * nmp.rank_cache_latency_s / ranks
        unit = nmp.processing_unit
        pu_s = (
            lookup.lookups
            * lookup.op.dim
            * NMP_FLOPS_PER_ELEMENT
            / (ranks * unit.clock_hz * unit.flop_per_cycle)
        )

        pooling = lookup.lookups / lookup.bags if lookup.bags > 0 else 0.0
        # A bag's rows are in its channel's DIMMs: each of them holding one returns a partial sum
        # (a bag's rows over every DIMM of the node returned ~40 partial sums at 4 DIMMs per channel).
        dimms_per_bag = (
            per_channel * -math.expm1(pooling * math.log1p(-1.0 / per_channel))
            if per_channel > 1
            else min(1.0, pooling)
        )
        partials = lookup.bags_returned * max(1.0, dimms_per_bag) if lookup.lookups > 0 else 0.0
        # Besides the instructions down and the partial sums up, the host still reads the indices
        # and offsets and writes the pooled vectors, over the same channels (as the ddr tier).
        # A partial sum leaves its DIMM at the processing units' fp32 (RecNMP's datapath sums fp32
        # vectors; a quantised or half row is widened to add it): only the host's final sum is
        # written at the lookup's output dtype.
        partial_bytes = max(lookup.pooled_bytes, lookup.op.dim * DTYPE_BYTES["fp32"])
        channel_bytes = (
            lookup.lookups * NMP_INST_BYTES + partials * partial_bytes + host_streamed_bytes(lookup)
        )
        # Every channel carries its tables' share of these bytes at its share of the bandwidth, all
        # at once: the node's bytes over the node's bandwidth (no channel is modelled apart).
        channel_s = channel_bytes / host_ddr_bandwidth_bytes_per_s(system)
        host_s = cpu_pool_s(system, max(0.0, partials - lookup.bags_returned) * lookup.op.dim)

        whole_node = {
            "rank_dram_s": dram_s,
            "rank_latency_s": latency_s,
            "rank_cache_s": cache_s,
            "processing_s": pu_s,
            "channel_s": channel_s,
            "host_s": host_s,
        }
        limits = {
            name: seconds / (cores if name == "host_s" else dram) for name, seconds in whole_node.items()
        }
        moved = lookup.lookups * INDEX_BYTES + lookup.bags_returned * lookup.pooled_bytes
        pcie_s = pcie_transfer_s(system, moved, copies=2)  # the indices down, the pooled vectors up
        details = lookup.base_details() | lookup.forward_accounting()
        details |= {
            "rank_cache_hit_rate": hit,
            "ranks": float(ranks),
            "ranks_per_channel": float(per_channel * nmp.ranks),
            "partial_sums": partials,
            **limits,
        }
        # The time the node's DIMMs spend reading these rows at their ranks' full rate: what their
        # active power is charged for (``recsim.cost.power``), however long the lookup waits.
        details["dimm_read_s"] = dram_bytes / (dimms * nmp.internal_bandwidth_bytes_per_s)
        details["pcie_s"] = pcie_s
        details["pcie_to_host_bytes"] = lookup.lookups * INDEX_BYTES if pcie_s else 0.0  # the indices
        resources = {NMP_RANK: dram_bytes, NMP_CHANNEL: channel_bytes} | ({PCIE: moved} if pcie_s else {})
        return EmbeddingCost(max(limits.values()) + pcie_s, resources, details)

    def backward(self, lookup: Lookup) -> EmbeddingCost:
        cost = DdrTier().backward(lookup)
        return EmbeddingCost(cost.time_s, cost.bytes_by_resource, cost.details | {"via": "ddr"})
