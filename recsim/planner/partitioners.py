"""Partitioners: put the blocks of chosen sharding options on ranks, within memory.

A ``Partitioner`` keeps, per rank, the estimated load (seconds of lookups and communication the
rank's blocks cost) and HBM in use, and per node the host DRAM and SSD bytes in use, against the
capacities less the planner's reserves. ``place(candidate)`` puts a candidate's blocks where its
placement allows (any rank, distinct ranks of one node, rank ``i`` for row-wise block ``i``, every
rank, or node groups for grid) and commits them, or returns None and changes nothing.

Two ways to choose among the ranks that fit (both are registered by name):

- ``lpt`` (greedy by estimated cost): the rank with the least load -- with blocks offered largest
  first this is Graham's longest-processing-time rule, within 4/3 of the optimal makespan;
- ``memory``: the rank with the least memory pressure (used share of its HBM plus its node's host
  DRAM and SSD; TorchRec's memory-balanced idea): for models that barely fit, it keeps room for the
  tables still to come.

**The pooled vectors.** Every table's pooled vectors for the global batch take HBM on the rank that
pools it, whatever tier holds its rows (``storage.pooled_output_bytes``; a block's ``storage``
counts its own), and so do the ids its lookups read (``storage.input_buffer_bytes``; a table's ids
that a rank reads once however many of its blocks it holds, DLE's, once a rank: ``hbm_take``):
"pooled bytes" below are both (``Block.io_hbm_bytes``, ``greedy.least_io_bytes``). Rows placed first
must leave that HBM to the tables whose rows go to a host tier, or such a table, late in the order,
fits no rank. A proposer states the tables' least pooled bytes once (``reserve``, per table); a
block that keeps rows or a cache in HBM must then leave ``(S - H) / ranks + L`` free on its rank,
where ``S`` sums them all, ``H`` those of the tables placed with every block in HBM (their vectors
are in their blocks already: counting them in the reserve too kept them twice, up to ``S / ranks`` a
rank) and ``L`` is the largest of the tables not placed yet. A block of pooled vectors alone (rows
off HBM) may take that reserve, but a table's such blocks together no more of it than the table's
own figure in ``S``: the part of a block's bytes that goes below the reserve of a rank that had free
HBM above it (all of them on a rank already below it) counts, and the blocks of a candidate that
would take more do not fit (``fits_block``). That is what holds where a table writes more vectors
than its least: each member of an off-HBM row split pools the whole batch (model-a on dgx-h100: a
split over 8 ranks on uvm 8 x 32 MiB against the 32 MiB reserved), or a lower precision whose
lookups write wider vectors; before, such splits spent the reserve and ``memory_balanced`` found 9
MiB free on the best rank against 32 MiB of a table's vectors ("fits nowhere"). The reserve after
the table being placed is the one its blocks keep. So the vectors of a table off HBM pooling its
least always find a rank whole: summed over the ranks, the HBM missing below the reserve is at most
the reserved bytes of the tables placed off HBM (rows keep the reserve; vectors alone take at most
their table's figure; the reserve only falls), so the ranks' free HBM totals at least ``ranks``
times the reserve less those, which is the unplaced tables' vectors plus ``ranks x L``, and not
every rank can have less than ``L`` free. One check per block and a sum and a largest updated per
table placed (an earlier try kept the rest's vectors free table by table on every rank, and planning
zionex model-a took 160 s instead of 4). The greedy proposers (greedy, memory_balanced, flexshard)
reserve for every table, not knowing which will end off HBM; RecShard for the tables its knapsack
put off HBM. None reserves where no allowed tier takes rows wholly out of HBM
(``greedy.rows_may_leave_hbm``: ``planner.tiers`` of ``hbm`` and cached ``uvm_caching`` only), since
every block then keeps the reserve and none could use it. The other proposers reserve nothing: their
blocks are still placed with their pooled vectors.

**A rank's one cache.** A rank's ``uvm_caching`` shards of one fused group (``graph.ir.fused_group``)
run as one FBGEMM TBE with one cache of ``ratio x`` their summed rows over their mixed traffic, as
the engines cost them (``graph.build``'s fused lookup; ``Estimator.shared_cache_s``). So a block
holding such a shard adds to a rank what the rank's fused lookup costs with it less without
(``load_on``), not its own figure (a cache of its own rows): hot small tables beside a big one hit
in the big one's cache, and alone a small table's cache is tiny. Under ``lpt`` such a block that may
go to any rank goes where it ends soonest (``earliest_finish``) rather than to the least loaded one
(the blocks of a row split or of one node keep their ranks' order). A tester's case,
DLRM MLPerf on a DGX A100 with every table on ``uvm_caching:0.05``: the greedy's plan at Zipf 0.9
access ran 5.79 ms simulated, slower than at uniform access (5.72 ms); priced so, 3.36 and 4.47 ms.
Other tiers cost the same on every rank, and their blocks are placed as before.

What it costs, measured (2-core machine shared with others, so +-20 %): nothing where no block
joins a cache (benchmarks/bench_planner.py, 856 tables on 128 GPUs all in HBM: the same plans, +0.3 %
function calls in ``auto``); but where the tables go to ``uvm_caching``, one fused lookup is priced
(Che's approximation over the mixture) per rank a block may go to, about three times the ranks per
table placed: model-a's first 856 tables on 16 GPUs (zionex, 2 nodes) with ``planner.tiers=
[uvm_caching]`` planned (greedy) in 168 to 180 s wall, a loaded machine, where it took 8.6 s (its
plan 388 ms simulated where it was 538 ms); DLRM MLPerf on a DGX A100 in 0.7 s where it took 0.16 s.
Then made faster without changing a figure (s33; CPU seconds, ``time.process_time``, one run each on
the loaded machine): 76 s CPU (347 s wall) -> 50 s by pricing a rank's group only when a block is
next tried beside it (``_join`` priced it at once, and most joins are candidates tried and rolled
back; a group's first block needs no fused lookup at all) and a block's groups and own seconds once
per block, not per rank (``_cache_parts``) -> 42 s by a Che search with one numpy pass fewer and
without scipy's Python wrapper (``popularity._find_root``) and the other pass's mixture reused
(``Estimator.shared_cache_s``); with the mixture's shares applied in one multiplication
(``mixture._union``) 42 to 49 s CPU (80 to 228 s wall, as loaded). DLRM MLPerf: 0.22 to 0.25 s CPU
where it was 0.37 to 0.40 (greedy). Fused lookups priced for model-a's first 200 tables: 39,132 ->
22,902 (Che's searches 21,167 both: the ones left out were of groups already priced). The plans are
the same to the byte (plan JSON of model-a; of DLRM MLPerf at Zipf 0.9 and uniform and of 12 drawn
small cached cases, each by greedy, memory_balanced, flexshard, recshard and auto), and so is
validate's JSON. What is left (a profile of model-a): Che's three searches per priced lookup (the
cache, and the L2's tags and rows) about a quarter, the mixture's union and the cost model's Python
the rest.

No rank can be left out unpriced (``earliest_finish``), and no candidate (``greedy.best_placement``):
a bound was looked for again (s33), not found. Even granting that a block can at best turn its
rank's misses into hits (not shown for the cost model), a rank's finish is then at least its load
less what its cache's misses cost now; but under ``lpt`` the ranks' loads differ by about a block,
far less than a 5 % cache's misses, so such a bound would skip no rank. Of the 2,306 candidates
``best_placement`` scored for model-a's first 200 tables, 1,504 lost, but only 255 by a makespan
above the best bound (which a placement stopped part way could show); the rest lost on the work
they add, which a cached block's delta, possibly below nothing, leaves unknown until every block
is priced. Nor was a block priced on every rank in one vectorised call: the ranks' unions differ
in length, and a sum over stacked or padded arrays need not be the bits of ``popularity.dot`` over
one rank's (numpy's SIMD sums group terms by length), which ties between ranks (settled to 12
digits) would then see; and Che's searches are only a quarter of the time.

``InfeasibleError`` from ``require`` names the table, the bytes and the tier that did not fit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from recsim.errors import InfeasibleError
from recsim.planner.estimator import Block, Candidate, Estimator, repeated_input_bytes, shares_cache
from recsim.planner.storage import Capacity, capacity, dense_hbm_bytes, dense_weight_bytes
from recsim.planner.types import Shard, Storage
from recsim.units import Dimension, format_quantity

Placed = tuple[Block, tuple[int, ...]]
#: A rank's fused lookup (``graph.ir.fused_group``: tier, dtype, width).
Group = tuple[str, str, int]

#: Relative slack when comparing a block's take of the reserve with its table's figure: the take is
#: a difference of float sums (``_reserve_taken``) of bytes that are no longer whole powers of two
#: once the ids count (``storage.input_buffer_bytes``), and equal bytes must compare equal.
_BYTES_RTOL = 1e-9


def least_load_s(block: Block) -> float | None:
    """A floor of the load ``block`` adds on any rank (``Partitioner.load_on``): its ``perf`` where
    none of its shards shares a rank's cache; None where one does, since such a shard can add less
    than nothing (``Partitioner.earliest_finish``)."""
    return None if block.joins_cache else block.perf.total_s


def _b(x: float) -> str:
    return format_quantity(x, Dimension.BYTES, binary=True)


@dataclass
class _Undo:
    rank_load: list[tuple[int, float]]
    rank_hbm: list[tuple[int, float]]
    node_ddr: list[tuple[int, float]]
    node_ssd: list[tuple[int, float]]
    allowance: list[float] = dataclasses.field(default_factory=list)
    # (rank, table) whose once-a-rank ids a block added to the rank (``Partitioner.ids_held``).
    ids_held: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    # (rank, group, its shards, their price, its version) before a block joined the rank's shared
    # cache (``Partitioner.cached``).
    cached: list[tuple[int, Group, tuple[Shard, ...], float | None, int]] = dataclasses.field(
        default_factory=list
    )


class Partitioner:
    """Rank loads and memory of a plan being built (see the module docstring)."""

    def __init__(self, estimator: Estimator, mode: str = "lpt", cap: Capacity | None = None) -> None:
        if mode not in PARTITIONERS:
            raise InfeasibleError(f"unknown partitioner {mode!r} (known: {', '.join(PARTITIONERS)})")
        self.est = estimator
        self.mode = mode
        cfg = estimator.cfg
        self.cap = cap or capacity(estimator.system).less(cfg.hbm_reserve, cfg.ddr_reserve)
        self.world = estimator.world
        self.per_node = estimator.per_node
        self.load = [0.0] * self.world
        dense = dense_hbm_bytes(estimator.w, self.world)
        if dense > self.cap.hbm_bytes_per_rank:
            # No table is to blame: the dense side alone overfills every rank, whatever the tiers.
            w = estimator.w
            weights = dense_weight_bytes(w)
            room = f"the {_b(self.cap.hbm_bytes_per_rank)} a rank has once planner.hbm_reserve is kept"
            if weights > self.cap.hbm_bytes_per_rank:
                raise InfeasibleError(
                    f"the dense model with its gradients and optimizer state needs {_b(weights)} of HBM "
                    f"on every rank, more than {room}: accelerators with more HBM, or a smaller model"
                )
            raise InfeasibleError(
                f"the dense side alone (the dense model, its optimizer state and the activations of "
                f"{w.training.global_batch_size / self.world:,.0f} samples a rank) needs {_b(dense)} of "
                f"HBM per rank, more than {room}: use a smaller global batch (--batch-size) or more "
                "accelerators"
            )
        # The loader's own buffers on every rank beside the dense side (``Estimator.reader_hbm_bytes``).
        reader = estimator.reader_hbm_bytes
        if dense + reader > self.cap.hbm_bytes_per_rank:
            # Still no table to blame: every table would "fit nowhere" on ranks already full.
            raise InfeasibleError(
                f"the dense side ({_b(dense)}) and the data loader's own buffers ({_b(reader)}) need "
                f"{_b(dense + reader)} of HBM per rank, more than the {_b(self.cap.hbm_bytes_per_rank)} "
                "a rank has once planner.hbm_reserve is kept: use a smaller global batch (--batch-size) "
                "or more accelerators"
            )
        self.hbm = [dense + reader] * self.world
        # HBM a block with rows in it leaves on its rank for the tables' pooled vectors (``reserve``),
        # now: ``(S - H) / ranks + L`` of the module docstring, with the state it is made of.
        self.reserved_rank_bytes = 0.0
        self._pooled_unplaced: dict[str, float] = {}  # table -> least pooled bytes, not placed yet
        self._pooled_largest: list[tuple[float, str]] = []  # the same, ascending: ``L`` is the last
        self._pooled_held_bytes = 0.0  # ``S - H``
        # Reserve the pooled-only blocks of the candidate being placed may still take: its table's
        # least pooled bytes, as counted in ``S - H`` (module docstring); set per candidate.
        self._allowance_bytes = 0.0
        self.ddr = [0.0] * estimator.nodes
        self.ssd = [0.0] * estimator.nodes
        self.shards: list[Shard] = []
        # Per rank, the tables whose once-a-rank ids (``Block.input_once_bytes``: DLE's loader) a
        # block placed there holds already: another block of such a table adds its HBM less them
        # (``hbm_take``), as ``plan_usage`` charges the rank.
        self.ids_held: list[set[str]] = [set() for _ in range(self.world)]
        # Per rank and fused group, the ``uvm_caching`` shards placed there (``estimator.shares_cache``),
        # which share one cache (``load_on``), with their priced seconds (None until a block tried
        # beside them needs it: ``cache_delta_s``) and a version that changes with them (the key of
        # ``_deltas``, which a rollback restores).
        self.cached: list[dict[Group, tuple[Shard, ...]]] = [{} for _ in range(self.world)]
        self._cached_s: list[dict[Group, float | None]] = [{} for _ in range(self.world)]
        self._versions: list[dict[Group, int]] = [{} for _ in range(self.world)]
        self._next_version = 1
        # (rank, group, version, shards added) -> what they add to the group's seconds.
        self._deltas: dict[tuple[int, Group, int, tuple[Shard, ...]], float] = {}
        # id(block) -> (block, its cached shards by group with their own seconds): ``_cache_parts``.
        self._parts: dict[int, tuple[Block, tuple[tuple[Group, tuple[Shard, ...], float], ...]]] = {}

    # -- bookkeeping ---------------------------------------------------------------------------

    def node_of(self, rank: int) -> int:
        return rank // self.per_node

    def reserve(self, pooled_bytes_by_table: Mapping[str, float]) -> None:
        """Keep, on every rank, HBM that rows and caches may not take for the pooled vectors of
        tables whose rows go elsewhere (module docstring): ``pooled_bytes_by_table``, the least
        pooled bytes of each table that may end off HBM."""
        self._pooled_unplaced = dict(pooled_bytes_by_table)
        self._pooled_largest = sorted((b, t) for t, b in self._pooled_unplaced.items())
        self._pooled_held_bytes = math.fsum(self._pooled_unplaced.values())
        self.reserved_rank_bytes = self._reserve_after(None, in_hbm=False)

    def _reserve_after(self, table: str | None, *, in_hbm: bool) -> float:
        """The reserve once ``table`` is placed (None: as it is now): its bytes leave ``L``'s
        tables, and ``S - H`` too where every block of it is ``in_hbm`` (module docstring)."""
        own = self._pooled_unplaced.get(table, 0.0) if table is not None else 0.0
        held = self._pooled_held_bytes - (own if in_hbm else 0.0)
        largest = 0.0
        for size, name in reversed(self._pooled_largest):
            if name != table:
                largest = size
                break
        return max(0.0, held) / self.world + largest

    def _release(self, table: str, *, in_hbm: bool) -> None:
        """Commit ``_reserve_after(table)``: ``table`` is placed."""
        own = self._pooled_unplaced.pop(table, None)
        if own is None:
            return
        self._pooled_largest.remove((own, table))
        if in_hbm:
            self._pooled_held_bytes -= own
        self.reserved_rank_bytes = self._reserve_after(None, in_hbm=False)

    @staticmethod
    def all_in_hbm(cand: Candidate) -> bool:
        """Whether every block of ``cand`` keeps rows or a cache in HBM, so its pooled vectors
        are in its blocks' bytes, none left to the reserve."""
        return all(Partitioner.holds_rows(b) for b in (*cand.blocks, *cand.replicated))

    def fits(self, rank: int, st: Storage, keep_reserve: bool = True) -> bool:
        """Whether ``st`` fits ``rank`` and its node, leaving the rank the HBM ``reserve`` keeps with
        ``keep_reserve``."""
        node = self.node_of(rank)
        left = self.cap.hbm_bytes_per_rank - self.hbm[rank] - st.hbm_bytes
        return (
            left >= (self.reserved_rank_bytes if keep_reserve else 0.0)
            and self.ddr[node] + st.ddr_bytes <= self.cap.ddr_bytes_per_node
            and self.ssd[node] + st.ssd_bytes <= self.cap.ssd_bytes_per_node
        )

    def hbm_take(self, rank: int, block: Block) -> float:
        """The HBM ``block`` adds on ``rank``: its own, less the once-a-rank ids of a table the rank
        reads already (``estimator.repeated_input_bytes``)."""
        held = self.ids_held[rank]
        if not held or not block.input_once_bytes:
            return block.storage.hbm_bytes
        return block.storage.hbm_bytes - repeated_input_bytes(held, block)

    def _storage_on(self, rank: int, block: Block) -> Storage:
        """``block``'s storage as placing it on ``rank`` adds it (``hbm_take``)."""
        take = self.hbm_take(rank, block)
        return (
            block.storage
            if take == block.storage.hbm_bytes
            else dataclasses.replace(block.storage, hbm_bytes=take)
        )

    def fits_block(self, rank: int, block: Block) -> bool:
        """``fits`` of ``block`` on ``rank``: keeping the reserve where it holds rows or a cache in
        HBM; where it holds only its pooled vectors (whose room the reserve is), taking no more of
        the reserve than its candidate may still take (``_reserve_taken``)."""
        storage = self._storage_on(rank, block)
        if self.holds_rows(block):
            return self.fits(rank, storage, True)
        taken = self._reserve_taken(rank, block)
        return self.fits(rank, storage, False) and taken <= self._allowance_bytes * (1 + _BYTES_RTOL)

    def _reserve_taken(self, rank: int, block: Block) -> float:
        """How much of ``rank``'s reserve a block of pooled vectors alone would take: the part of
        its HBM bytes below the reserve that was free above it (module docstring)."""
        free = self.cap.hbm_bytes_per_rank - self.hbm[rank]
        reserve = self.reserved_rank_bytes
        return max(0.0, reserve - (free - self.hbm_take(rank, block))) - max(0.0, reserve - free)

    @staticmethod
    def holds_rows(block: Block) -> bool:
        """Whether ``block`` keeps rows or a cache in HBM, not only its pooled vectors and the ids
        it reads (``Block.io_hbm_bytes``)."""
        return block.storage.hbm_bytes > block.io_hbm_bytes

    # -- a rank's shared cache -------------------------------------------------------------------

    def _cached_by_group(self, block: Block) -> dict[Group, tuple[Shard, ...]]:
        """``block``'s shards that share their rank's cache (``estimator.shares_cache``), by group."""
        out: dict[Group, tuple[Shard, ...]] = {}
        for s in block.shards:
            if shares_cache(s):
                group = self.est.fused_group_of(s)
                out[group] = (*out.get(group, ()), s)
        return out

    def _own_lookups_s(self, shards: tuple[Shard, ...]) -> float:
        """The lookup seconds ``shards`` count in their block's ``perf`` (``Estimator.block``): each
        priced alone, less the fused kernel's fixed part."""
        est = self.est
        return math.fsum(
            est.marginal_lookup_s(s, "forward") + est.marginal_lookup_s(s, "backward") for s in shards
        )

    def _price_s(self, shards: tuple[Shard, ...]) -> float:
        """Seconds of one rank's fused lookup of ``shards`` with their one cache, forward and backward
        (``Estimator.shared_cache_s``: the engines' op and access model)."""
        est = self.est
        return est.shared_cache_s(shards, "forward") + est.shared_cache_s(shards, "backward")

    def cache_delta_s(
        self, rank: int, group: Group, shards: tuple[Shard, ...], own_s: float | None = None
    ) -> float:
        """What ``shards`` (of ``group``) add to ``rank``'s fused cached lookup: its seconds with
        them less without (``_price_s``). Beside none of the group they add what their block counts
        (``_own_lookups_s``: the fixed part is paid once a rank, as for every fused tier); beside
        others, the difference of the two fused lookups, so hot rows that a big table's cache holds
        cost what they cost there, and a table whose rows enlarge the cache lowers the others'
        misses. ``own_s``: ``_own_lookups_s(shards)`` where the caller has it (``_cache_parts``)."""
        held = self.cached[rank].get(group, ())
        if not held:
            return self._own_lookups_s(shards) if own_s is None else own_s
        key = (rank, group, self._versions[rank][group], shards)
        found = self._deltas.get(key)
        if found is None:
            with_them = self._price_s((*held, *shards))
            without = self._cached_s[rank][group]
            if without is None:  # priced once its shards are tried beside (``_join``)
                without = self._cached_s[rank][group] = self._price_s(held)
            found = self._deltas[key] = with_them - without
        return found

    def load_on(self, rank: int, block: Block) -> float:
        """The load ``block`` adds on ``rank``: its ``perf``, its shards that share the rank's cache
        priced by ``cache_delta_s`` instead of alone (``plan_perf`` prices the placed plan so)."""
        out = block.perf.total_s
        if not block.joins_cache:
            return out
        for group, shards, own in self._cache_parts(block):
            out += self.cache_delta_s(rank, group, shards, own) - own
        return out

    def _cache_parts(self, block: Block) -> tuple[tuple[Group, tuple[Shard, ...], float], ...]:
        """``block``'s shards that share their rank's cache by group (``_cached_by_group``), each
        with its ``_own_lookups_s``: the same on every rank, so worked out once per block, not once
        per rank ``earliest_finish`` prices (worked out per rank, a few per cent of a cache-only plan).
        Kept by the block's identity, with the block (so the identity is not reused) until the
        next ``place``."""
        found = self._parts.get(id(block))
        if found is not None and found[0] is block:
            return found[1]
        parts = tuple(
            (group, shards, self._own_lookups_s(shards))
            for group, shards in self._cached_by_group(block).items()
        )
        self._parts[id(block)] = (block, parts)
        return parts

    def _join(self, rank: int, block: Block, undo: _Undo) -> None:
        """Add ``block``'s shared-cache shards to ``rank``'s groups (``cached``), undoably."""
        if not block.joins_cache:
            return
        for group, shards, _ in self._cache_parts(block):
            held = self.cached[rank].get(group, ())
            price = self._cached_s[rank].get(group)
            undo.cached.append((rank, group, held, price, self._versions[rank].get(group, 0)))
            self.cached[rank][group] = (*held, *shards)
            # Priced when a block is next tried beside them (``cache_delta_s``), not now: most
            # joins are a candidate tried and rolled back, and a group's first block, whose delta
            # is its own figure, needed no fused lookup priced at all (a fifth of a cache-only
            # plan's time was these).
            self._cached_s[rank][group] = None
            self._versions[rank][group] = self._next_version
            self._next_version += 1

    def _add(self, rank: int, block: Block, undo: _Undo) -> None:
        node = self.node_of(rank)
        if not self.holds_rows(block):
            undo.allowance.append(self._allowance_bytes)
            self._allowance_bytes = max(0.0, self._allowance_bytes - self._reserve_taken(rank, block))
        undo.rank_load.append((rank, self.load[rank]))
        undo.rank_hbm.append((rank, self.hbm[rank]))
        undo.node_ddr.append((node, self.ddr[node]))
        undo.node_ssd.append((node, self.ssd[node]))
        self.load[rank] += self.load_on(rank, block)
        self._join(rank, block, undo)
        self.hbm[rank] += self.hbm_take(rank, block)
        self.ddr[node] += block.storage.ddr_bytes
        self.ssd[node] += block.storage.ssd_bytes
        held = self.ids_held[rank]
        for table, _ in block.input_once_bytes:
            if table not in held:
                held.add(table)
                undo.ids_held.append((rank, table))

    def _rollback(self, undo: _Undo) -> None:
        for rank, v in reversed(undo.rank_load):
            self.load[rank] = v
        for rank, v in reversed(undo.rank_hbm):
            self.hbm[rank] = v
        for node, v in reversed(undo.node_ddr):
            self.ddr[node] = v
        for node, v in reversed(undo.node_ssd):
            self.ssd[node] = v
        for rank, table in undo.ids_held:
            self.ids_held[rank].discard(table)
        for rank, group, held, price, version in reversed(undo.cached):
            if held:
                self.cached[rank][group] = held
                self._cached_s[rank][group] = price
                self._versions[rank][group] = version
            else:
                self.cached[rank].pop(group, None)
                self._cached_s[rank].pop(group, None)
                self._versions[rank].pop(group, None)
        if undo.allowance:
            self._allowance_bytes = undo.allowance[0]

    def key(self, rank: int) -> tuple[float, int]:
        """Preference among fitting ranks: least load (lpt) or most free HBM (memory), settled
        (``settled``: equal to 12 digits is a tie, which the lower rank wins)."""
        return settled(PARTITIONERS[self.mode](self, rank)), rank

    def preferred(self, ranks: list[int]) -> int:
        """``min(ranks, key=self.key)``, settling only the ranks near the least figure (a figure
        more than 1e-10 above it settles above it too)."""
        figure = PARTITIONERS[self.mode]
        values = [figure(self, r) for r in ranks]
        least = min(values)
        if not math.isfinite(least):  # no window to narrow to (a NaN or infinite estimate)
            return min(ranks, key=self.key)
        near = [r for r, v in zip(ranks, values, strict=True) if v <= least + abs(least) * 1e-10]
        return min(near, key=self.key)

    def earliest_finish(self, ranks: list[int], block: Block) -> int:
        """The rank of ``ranks`` where ``block`` ends soonest (least ``load + load_on``), less work
        added then the lower rank on a tie (settled): LPT's rule where a block costs the same on
        every rank, and the list-scheduling rule for machines on which a job takes different times
        where it does not -- a block whose shards join a rank's one cache (``load_on``).

        Every rank is priced: a shard that joins a cache can add less than nothing (a big table's
        rows enlarge the cache its hot neighbours hit: of the shared-cache test's four tables on four
        ranks, the big one beside a hot one adds -0.57 ms), so no rank's load alone bounds its
        finish, and every rank costs one fused lookup priced (memoised per rank until it changes).

        Measured alternative, not taken: the rank by ``greedy.best_placement``'s own bound (least
        work added while the tables still to place keep the average above the makespan). On the
        shared-cache test's four tables on four ranks it found a better plan (1.525 against 1.665
        ms simulated; the best, 1.363 ms, puts both hot tables beside the big one), but on DLRM
        MLPerf on a DGX A100 with every table on ``uvm_caching:0.05`` a worse one for greedy (4.69
        against 4.47 ms at uniform access, 3.50 against 3.36 ms at Zipf 0.9).

        Still a greedy: on 50 drawn small cases (4 to 8 tables of 20,000 to 2M rows at pooling 1 to
        16, Zipf 0.9, table-wise on 2 or 4 tiny GPUs, all on ``uvm_caching:0.05``) its plans ran
        faster than the least-loaded rank's with a cache per table in 10, slower in 5 (by up to
        6.8 %: a placement that ends soonest now may leave a worse rank for a later table), 0.8 %
        faster on average."""
        best: tuple[float, float, int] | None = None
        for r in ranks:
            add = self.load_on(r, block)
            found = (settled(self.load[r] + add), settled(add), r)
            if best is None or found < best:
                best = found
        assert best is not None
        return best[2]

    def pressure(self, rank: int) -> float:
        """Used share of the rank's HBM plus its node's host DRAM and SSD (the memory key)."""
        node = self.node_of(rank)
        out = 0.0
        for used, cap in (
            (self.hbm[rank], self.cap.hbm_bytes_per_rank),
            (self.ddr[node], self.cap.ddr_bytes_per_node),
            (self.ssd[node], self.cap.ssd_bytes_per_node),
        ):
            out += used / cap if cap > 0 and math.isfinite(cap) else 0.0
        return out

    @property
    def makespan_s(self) -> float:
        return max(self.load) if self.load else 0.0

    # -- placing -------------------------------------------------------------------------------

    def score(self, cand: Candidate) -> tuple[float, float] | None:
        """(makespan, load added) if ``cand`` were placed now; None if it does not fit. Changes nothing."""
        before = sum(self.load)
        undo = _Undo([], [], [], [])
        placed: list[Placed] = []
        ok = self._place_all(cand, undo, placed)
        result = (self.makespan_s, sum(self.load) - before) if ok else None
        self._rollback(undo)
        return result

    def place(self, cand: Candidate) -> list[Shard] | None:
        """Put ``cand``'s blocks on ranks and commit them; None (nothing changed) if they do not fit."""
        undo = _Undo([], [], [], [])
        placed: list[Placed] = []
        if not self._place_all(cand, undo, placed):
            self._rollback(undo)
            return None
        out = [dataclasses.replace(s, ranks=ranks) for block, ranks in placed for s in block.shards]
        self.shards.extend(out)
        self._release(cand.table, in_hbm=self.all_in_hbm(cand))
        self._parts.clear()  # the next table's candidates are other blocks
        return out

    def _place_all(self, cand: Candidate, undo: _Undo, placed: list[Placed]) -> bool:
        """Add ``cand``'s blocks, which keep the reserve as it is once ``cand`` is placed."""
        now = self.reserved_rank_bytes
        self.reserved_rank_bytes = self._reserve_after(cand.table, in_hbm=self.all_in_hbm(cand))
        self._allowance_bytes = self._pooled_unplaced.get(cand.table, 0.0)
        try:
            return self._place_all_blocks(cand, undo, placed)
        finally:
            self.reserved_rank_bytes = now
            self._allowance_bytes = 0.0

    def _place_all_blocks(self, cand: Candidate, undo: _Undo, placed: list[Placed]) -> bool:
        if not self._place_blocks(cand, undo, placed):
            return False
        everyone = tuple(range(self.world))
        for block in cand.replicated:
            if not self._add_all(everyone, block, undo):
                return False
            placed.append((block, everyone))
        return True

    def _add_all(self, ranks: tuple[int, ...], block: Block, undo: _Undo) -> bool:
        """Add ``block`` on each of ``ranks`` in turn (so node totals accumulate); False at the
        first that does not fit (the caller rolls back)."""
        for r in ranks:
            if not self.fits_block(r, block):
                return False
            self._add(r, block, undo)
        return True

    def _place_blocks(
        self, cand: Candidate, undo: _Undo, placed: list[tuple[Block, tuple[int, ...]]]
    ) -> bool:
        blocks = cand.blocks
        if cand.placement == "any":
            used: set[int] = set()
            for block in sorted(blocks, key=lambda b: -b.perf.total_s):
                fitting = [r for r in range(self.world) if r not in used and self.fits_block(r, block)]
                if not fitting:
                    return False
                shared = self.mode == "lpt" and block.joins_cache
                rank = self.earliest_finish(fitting, block) if shared else self.preferred(fitting)
                self._add(rank, block, undo)
                used.add(rank)
                placed.append((block, (rank,)))
            return True
        if cand.placement == "all":
            if len(blocks) != self.world:
                return False
            for rank, block in enumerate(blocks):
                if not self.fits_block(rank, block):
                    return False
                self._add(rank, block, undo)
                placed.append((block, (rank,)))
            return True
        if cand.placement == "every":
            everyone = tuple(range(self.world))
            (block,) = blocks
            if not self._add_all(everyone, block, undo):
                return False
            placed.append((block, everyone))
            return True
        if cand.placement == "node":
            return self._place_in_node(blocks, self._nodes_by_preference(len(blocks)), undo, placed)
        if cand.placement == "grid":
            groups = cand.column_groups
            per_group = len(blocks) // groups
            nodes = self._nodes_by_preference(per_group)
            for c in range(groups):
                part = blocks[c * per_group : (c + 1) * per_group]
                if not self._place_in_node(part, nodes, undo, placed):
                    return False
                taken = self.node_of(placed[-1][1][0])
                nodes = [n for n in nodes if n != taken]
            return True
        raise InfeasibleError(f"unknown placement {cand.placement!r}")

    def _nodes_by_preference(self, blocks: int) -> list[int]:
        """The nodes to try ``blocks`` blocks of one table on, best first: least memory pressure
        (memory), else (lpt) the least load of the busiest rank the blocks would take, which is the
        ``blocks``-th least loaded rank of the node (``_place_in_node`` gives the blocks the node's
        least loaded ranks; a row split over the whole node takes its busiest rank).

        Not the node's busiest rank when the blocks take fewer ranks than it has: column blocks then
        went to a node whose idle ranks they would not use. A tester's table_column_wise of eight
        equal tables in two column blocks each on two 4-GPU nodes put three tables on ranks 0 and 1
        and one on ranks 6 and 7 (366 against 122 MiB of tables; dlrm-benchmark on two
        hgx-a100-4gpu nodes), where two per pair balance them (244 MiB each; its step 985 -> 926 us,
        on four nodes 846 -> 771 us)."""
        nodes = range(len(self.ddr))
        if self.mode == "memory":
            return sorted(nodes, key=lambda n: (settled(sum(self.pressure(r) for r in self._ranks(n))), n))
        used = max(1, min(blocks, self.per_node))

        def busiest_used(node: int) -> float:
            return sorted(self.load[r] for r in self._ranks(node))[used - 1]

        return sorted(nodes, key=lambda n: (settled(busiest_used(n)), n))

    def _ranks(self, node: int) -> range:
        return range(node * self.per_node, (node + 1) * self.per_node)

    def _place_in_node(
        self,
        blocks: tuple[Block, ...],
        nodes: list[int],
        undo: _Undo,
        placed: list[Placed],
    ) -> bool:
        """Blocks on distinct ranks of the first node (in ``nodes`` order) where they all fit.

        As many blocks as ranks (a row split over the node): block ``i`` on local rank ``i``.
        Fewer (column blocks): the preferred ranks of the node, largest block first.
        """
        for node in nodes:
            ranks = list(self._ranks(node))
            if len(blocks) == len(ranks):
                pairs = list(zip(blocks, ranks, strict=True))
            elif len(blocks) < len(ranks):
                order = sorted(ranks, key=self.key)
                pairs = list(zip(sorted(blocks, key=lambda b: -b.perf.total_s), order, strict=False))
            else:
                return False
            attempt = _Undo([], [], [], [])
            if not all(self._add_all((r,), b, attempt) for b, r in pairs):
                self._rollback(attempt)
                continue
            for field_ in (
                "rank_load",
                "rank_hbm",
                "node_ddr",
                "node_ssd",
                "allowance",
                "ids_held",
                "cached",
            ):
                getattr(undo, field_).extend(getattr(attempt, field_))
            placed.extend((b, (r,)) for b, r in pairs)
            return True
        return False

    def free_summary(self) -> str:
        """The largest free HBM, host DRAM and SSD of any rank/node, for error messages, with the HBM
        ``reserve`` keeps from rows and caches."""
        hbm = max(self.cap.hbm_bytes_per_rank - h for h in self.hbm)
        ddr = max(self.cap.ddr_bytes_per_node - d for d in self.ddr)
        ssd = max(self.cap.ssd_bytes_per_node - s for s in self.ssd)
        kept = (
            f"; a block with rows or a cache in HBM leaves {_b(self.reserved_rank_bytes)} of its rank's "
            "HBM to the pooled vectors and input ids of tables off HBM"
            if self.reserved_rank_bytes > 0
            else ""
        )
        return f"most free: HBM {_b(hbm)} on a rank, host DRAM {_b(ddr)} and SSD {_b(ssd)} on a node{kept}"


#: Significant digits a planner compares its estimates to (``settled``): the estimates themselves
#: are good to a few per cent, their sums' rounding is 1e-16 relative. A rank's load is a sum of
#: its blocks' estimates in the order they were placed, so two ranks holding equal blocks differ
#: in their last bits, and the rank with the lower index must win that tie, not the rounding.
SETTLED_DIGITS = 12


def settled(value: float) -> float:
    """``value`` to ``SETTLED_DIGITS`` significant digits (infinities and NaN as they are)."""
    if value == 0.0 or not math.isfinite(value):
        return value
    out = float(f"{value:.{SETTLED_DIGITS}g}")
    return out if math.isfinite(out) else value  # rounded past the largest float: as it is


#: Registered partitioners: name -> the figure that orders the ranks a block fits on (lowest
#: first, settled; ``Partitioner.key``).
PARTITIONERS: dict[str, Callable[[Partitioner, int], float]] = {
    "lpt": lambda p, r: p.load[r],
    "memory": lambda p, r: p.pressure(r),
}
