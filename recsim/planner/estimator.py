"""Estimated time and memory of sharding options, from the cost layer.

The estimator turns one way of sharding one table (a ``ShardingOption``: scheme, tier, dtype,
column blocks, hot rows) into *blocks* -- the shards that land together on one rank -- and gives
each block its ``Perf`` and ``Storage``:

- **compute**: the ``Embedding`` ops the graph builder will emit for the block (``ShardOps``),
  costed by the tier models of ``recsim.cost.embedding`` (forward gather-reduce; backward with the
  fused optimizer update, or the framework's atomic adds; a replicated shard's gradient
  accumulation and dense ``update``, ``update_s``, its fixed part once per rank as the builder fuses
  it). So a plan's estimated lookup time per rank is, op for op, what the engines charge when
  tables are not fused (a test checks it). A candidate block's update takes the gradient in the
  table's dtype; ``plan_perf``, which knows the plan, in the dtype the framework reduces it in.
- **communication**: the bytes the block makes its rank send, times the marginal seconds per byte
  of the collective that carries them, taken from the collective cost model on this topology
  (``marginal_s_per_byte``: the slope of the collective's time between two sizes, so the fixed
  latency of a collective, paid once per step whatever the plan, is left out):
  whole blocks (TW/CW/TWCW) send ``B x dim`` pooled values (times the bag share when hot rows are
  replicated) in the all-to-all; row splits reduce-scatter ``B x dim`` over their reduce group of
  ``g`` ranks (the split, or its ranks on one node where the plans reduce row splits per node:
  ``storage.reduce_group_size``, as ``pooled_exchange``) and send their ``B / g`` samples' sums on
  to the owners other than themselves in the all-to-all (none where the group is the world);
  replicated (data-parallel) rows all-reduce their gradient whole. Backward mirrors forward.
- **storage**: ``recsim.planner.storage.shard_storage`` of the block's shards plus, in HBM, the
  owner side of its pooled exchange (``pooled_block_bytes``: its global batch's pooled vectors,
  wherever its rows are) and a row split's reduce-scatter output over its reduce group (per node
  where the plans reduce row splits so: ``storage.reduce_scatter_output_bytes``), and the ids its
  lookups read for the global batch (``storage.input_block_bytes``: each column block all the
  table's ids, a row split's member those of its rows; two batches of them under TorchRec's
  pipeline, ``storage.held_input_batches``), as ``plan_usage`` charges a placed plan:
  what the block takes on its rank, known before placement, as TorchRec's planner adds a shard's
  ``input_sizes`` and ``output_sizes`` to its storage. Where a rank reads a table's ids once
  however many of its blocks it holds (DLE's per-rank loader), a block keeps that part apart
  (``Block.input_once_bytes``), so the blocks a rank ends up with count it once (the
  partitioner's ``hbm_take``: ``repeated_input_bytes``), as ``plan_usage`` does: summed block by
  block, two column blocks of one table on one rank counted it twice. The data loader's own
  buffers, which no block carries, are the same on every rank (``reader_hbm_bytes``:
  ``storage.rank_reader_bytes``); the partitioner starts every rank with them beside the dense side.

A tier that cannot serve a training step here (SSD tiers model inference only; NMP needs NMP
DIMMs) makes the option unavailable, with the cost layer's reason kept for error messages.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from recsim.cost.collectives import collective_time_s
from recsim.cost.embedding import embedding_cost
from recsim.cost.embedding.gpu import radix_passes
from recsim.cost.model import CostModel
from recsim.errors import ConfigError, InfeasibleError, batch_split_error
from recsim.graph.build import dense_layer_op, fused_embedding, replicated_gradient, row_split_wire_dtypes
from recsim.graph.ir import Collective, CollectiveOp, Embedding, fused_group, fused_tier, sorts_ahead
from recsim.graph.runtime import runtime
from recsim.graph.shard_ops import ShardOps, exchange_sums, pooled_exchange
from recsim.hardware.system import System
from recsim.hardware.topology import Topology, build_topology
from recsim.planner.config import PlannerConfig, comm_dtypes_for
from recsim.planner.limits import dtypes_for
from recsim.planner.storage import (
    input_block_parts,
    pooled_block_bytes,
    rank_reader_bytes,
    reduce_group_size,
    reduce_scatter_output_bytes,
    shard_storage,
)
from recsim.planner.types import ROW_SPLIT, Perf, Plan, Shard, ShardingOption, Storage, dense_gradient
from recsim.workload.access.mixture import fused_access_model
from recsim.workload.access.model import AccessModel
from recsim.workload.access.slice import SubsetModel
from recsim.workload.spec import DTYPE_BYTES, Table, Workload, gradient_dtype, wire_bytes_per_value

# ``Estimator.shared_cache_s``'s memo entries (shard, op, id of the op's canonical object): getters.
_FIRST = operator.itemgetter(0)
_THIRD = operator.itemgetter(2)


@dataclass(frozen=True)
class Block:
    """Shards that live together on one rank (``ranks`` left empty until placed).

    ``storage``: all the block takes on its rank, ``pooled_hbm_bytes`` (its pooled vectors for the
    global batch, ``storage.pooled_block_bytes``, with a row split's reduce-scatter output) and
    ``input_hbm_bytes`` (the ids its lookups read, ``storage.input_block_bytes``) included in its
    HBM. ``input_once_bytes``: the part of ``input_hbm_bytes`` its rank reads once a table however
    many blocks of the table it holds (DLE's per-rank loader: ``storage.input_block_parts``), by
    table; a rank holding two blocks of one table holds those ids once (``repeated_input_bytes``)."""

    shards: tuple[Shard, ...]
    perf: Perf
    storage: Storage
    pooled_hbm_bytes: float = 0.0
    input_hbm_bytes: float = 0.0
    input_once_bytes: tuple[tuple[str, float], ...] = ()
    # Whether a shard of the block shares its rank's cache (``shares_cache``), so what it adds to a
    # rank depends on the rank (``Partitioner.load_on``): set by ``Estimator.block``, once per
    # memoised block, as the planner asks it of every block it tries.
    joins_cache: bool = False

    @property
    def io_hbm_bytes(self) -> float:
        """HBM the block takes wherever its rows are: its pooled vectors and the ids it reads (TorchRec's
        planner's ``output_sizes`` and ``input_sizes``)."""
        return self.pooled_hbm_bytes + self.input_hbm_bytes


def repeated_input_bytes(held: Collection[str], block: Block) -> float:
    """The ids ``block`` would read that a rank already holding blocks of the tables ``held`` reads
    already: its once-a-table ids of those tables (``Block.input_once_bytes``; DLE's loader reads a
    table's feature once a rank). What placing ``block`` there adds is its HBM less these."""
    return math.fsum(size for table, size in block.input_once_bytes if table in held)


@dataclass(frozen=True)
class Candidate:
    """A ``ShardingOption`` with its blocks and where they may go."""

    option: ShardingOption
    blocks: tuple[Block, ...]
    # Where the blocks may go (``Partitioner``): ``any`` each on any rank; ``node`` on distinct
    # ranks of one node; ``all`` block ``i`` on rank ``i``; ``every`` one block on every rank;
    # ``grid`` column groups of ``ranks_per_node`` row blocks, each group on its own node.
    placement: str
    column_groups: int = 1  # grid: number of column groups (each on its own node)
    replicated: tuple[Block, ...] = field(default=())  # blocks on every rank besides ``blocks``

    @property
    def table(self) -> str:
        return self.option.table

    @property
    def max_block_perf_s(self) -> float:
        return max(b.perf.total_s for b in (*self.blocks, *self.replicated))


class Estimator:
    """Per-block time and memory of sharding options of ``workload`` on ``system``."""

    def __init__(
        self,
        system: System,
        workload: Workload,
        config: PlannerConfig | None = None,
        topology: Topology | None = None,
        ops: ShardOps | None = None,
    ) -> None:
        """``ops``: the workload's ``ShardOps`` to read shard figures from (a cost memo's, shared
        with the simulations of the plans; a fresh one if None)."""
        if system.accelerator is None:
            raise InfeasibleError(f"system {system.name!r} has no accelerators to shard embeddings over")
        self.system = system
        self.w = workload
        self.cfg = config or PlannerConfig()
        # ``dtypes_for``'s answers by table name (the config and workload are fixed).
        self._dtypes_by_table: dict[str, tuple[str, ...]] = {}
        # The wire dtype the plans of this planner use (``auto``: the framework's own).
        self.comm_dtype = comm_dtypes_for(self.cfg, workload)[0]
        self.topology = topology or build_topology(system)
        self.world = system.num_accelerators
        self.per_node = max(1, system.node.num_accelerators)
        self.nodes = system.num_nodes
        self.batch = workload.training.global_batch_size
        if self.batch % self.world:
            raise InfeasibleError(batch_split_error(self.batch, self.world))
        self.local_batch = self.batch // self.world
        self.ops = ops if ops is not None else ShardOps(workload)
        # The workload's framework writes pooled vectors narrow, or not (as the graph builder asks).
        self.framework = runtime(workload.training.runtime)
        # HBM of the loader's own buffers on every rank (``storage.rank_reader_bytes``: HugeCTR's
        # reader records and tensors, DLE's dense inputs), which no block carries: the planners
        # keep it beside the dense side.
        self.reader_hbm_bytes = rank_reader_bytes(workload, self.world, self.framework)
        # How the plans of this planner reduce their row splits: per node where the framework can
        # and ``planner.row_split_exchange`` asks it (``config.stamp_exchange`` stamps every plan so;
        # no proposer that places blocks is one whose name the framework's default reads).
        probe = Plan(self.world, (), row_split_exchange=self.cfg.row_split_exchange)
        self.reduce_node_size = self.framework.row_split_node_size(self.per_node, probe)
        self._marginal: dict[tuple[str, int, str, str | None], float] = {}
        self._compute: dict[tuple[object, ...], float] = {}
        self._updates: dict[tuple[object, ...], tuple[float, float]] = {}
        self._blocks: dict[tuple[object, ...], Block] = {}
        self._shared_ops: dict[tuple[Shard, str, bool, bool], Embedding] = {}  # ``shared_cache_s``'s
        # ``shared_cache_s``'s per-member memos by the shard's identity (``_shared_member``), each
        # entry holding its shard so that the id cannot be reused while the entry is kept.
        self._member_ops: dict[tuple[str, bool, bool], dict[int, tuple[Shard, Embedding, int]]] = {}
        self._member_access: dict[int, tuple[Shard, AccessModel]] = {}
        # One object per distinct op (equal ops share it): a group keyed by its ops' identities
        # then matches exactly the groups whose ops are equal, hashed without hashing each op.
        self._canonical_ops: dict[Embedding, Embedding] = {}
        self._shared_s: dict[tuple[str, tuple[int, ...]], float] = {}
        # ``shared_cache_s``'s last group (the shards object, held, and its members' lookups) and
        # the access model it mixed: one entry, for the other pass of the same group.
        self._last_access: tuple[Sequence[Shard], list[float], AccessModel] | None = None
        # Memos a proposer keeps of its own questions to this estimator, whose config and workload
        # are fixed, by the proposer's name for them (recshard's HBM ladder asks the same again).
        # Held here, not in a module-level table, so they live and die with the planning context.
        self.proposer_memos: dict[str, dict[Any, Any]] = {}
        self.table_costs: dict[str, float] = {}  # proposers' per-table size memo
        self.table_pooled: dict[str, float] = {}  # proposers' per-table least pooled and id bytes memo
        self.unavailable: dict[str, str] = {}  # tier -> why the cost layer refused it

    # -- communication -------------------------------------------------------------------------

    def marginal_s_per_byte(
        self, kind: str, group_size: int, dtype: str, algorithm: str | None = None
    ) -> float:
        """Seconds per extra byte of a collective on the first ``group_size`` ranks.

        ``kind``: ``all_to_all`` (bytes a rank sends), ``reduce_scatter`` (a rank's input) or
        ``all_reduce`` (a rank's buffer). The slope between 16 MiB and 64 MiB per rank, sizes at
        which every calibrated protocol is in its bandwidth regime. ``algorithm``: the framework's
        preference (taken where it can run, as the engines do).
        """
        key = (kind, group_size, dtype, algorithm)
        cached = self._marginal.get(key)
        if cached is not None:
            return cached
        if group_size <= 1:
            self._marginal[key] = 0.0
            return 0.0
        group = tuple(range(group_size))
        small, large = 16.0 * 2**20, 64.0 * 2**20
        op_kind = CollectiveOp(kind)

        def time_at(size: float) -> float:
            if op_kind is CollectiveOp.ALL_TO_ALL:
                per_peer = size / group_size
                send = tuple(per_peer for _ in group)
                op = Collective(op_kind, "estimate", group, size, dtype, send, send, algorithm)
            else:
                op = Collective(op_kind, "estimate", group, size, dtype, algorithm=algorithm)
            return collective_time_s(op, self.topology)

        value = max(0.0, (time_at(large) - time_at(small)) / (large - small))
        self._marginal[key] = value
        return value

    # -- compute -------------------------------------------------------------------------------

    def fused_group_of(self, shard: Shard) -> tuple[str, str, int]:
        """The fused lookup ``shard`` joins on its ranks (``graph.ir.fused_group``: its tier, its
        dtype, the table's where the shard names none, and its width)."""
        dtype = shard.dtype or self.w.table_dtype(self.ops.tables[shard.table])
        return fused_group(shard.tier, dtype, shard.dim)

    def access_of(self, shard: Shard) -> AccessModel:
        """The access model the cost layer will use for the shard's ops (see ``ShardOps``)."""
        table = self.ops.tables[shard.table]
        if shard.rows == table.rows:
            return self.ops.table_model(shard.table)
        if shard.order == "popularity":
            return self.ops.slice_model(shard.table, shard.row_start, shard.row_end)
        return SubsetModel(self.ops.table_model(shard.table), shard.rows)

    def lookup_s(self, shard: Shard, pass_: str, presorted: bool = False, atomic: bool = False) -> float:
        """Seconds of the shard's ``pass_`` lookup op (what the engines charge, unfused); a
        ``presorted`` backward skips its index sort (the framework sorts ahead); an ``atomic`` one
        adds its gradients with atomics (``Runtime.atomic_embedding_update``)."""
        # Id-ordered blocks of equal size cost the same wherever their rows start (a row-wise
        # table's blocks differ by at most one row): key them by size, not position.
        where = (shard.row_start, shard.row_end) if shard.order == "popularity" else (shard.rows,)
        key = (shard.table, *where, shard.dim, shard.tier, shard.dtype, shard.order)
        spread = len(shard.ranks) if shard.sharding == "distributed" else 0
        key += (shard.sharding == "data_parallel", spread, pass_, presorted, atomic)
        cached = self._compute.get(key)
        if cached is not None:
            return cached
        op = self.lookup_op(shard, pass_, presorted, atomic)
        try:
            value = embedding_cost(op, self.system, self.access_of(shard)).time_s
        except (InfeasibleError, ConfigError) as exc:
            self.unavailable.setdefault(shard.tier, str(exc))
            value = math.inf
        self._compute[key] = value
        return value

    def lookup_op(self, shard: Shard, pass_: str, presorted: bool = False, atomic: bool = False) -> Embedding:
        """The shard's ``pass_`` lookup op as the graph builder emits it (``lookup_s``)."""
        table_dtype = shard.dtype or self.w.table_dtype(self.ops.tables[shard.table])
        output = self.framework.lookup_output_dtype(self.w.training.precision, table_dtype)
        op = self.ops.op(
            shard, pass_, self.batch, self.world, output, self.framework.pools_hit_bags_only, atomic
        )
        # As the builder decides it (``_Builder.lookup``): by the op's own optimizer (a replicated
        # shard's backward accumulates, optimizer none).
        if presorted and sorts_ahead(pass_, shard.tier, op.optimizer, op.atomic):
            op = dataclasses.replace(op, presorted=True)
        return op

    def shared_cache_s(
        self, shards: Sequence[Shard], pass_: str, presorted: bool = False, atomic: bool = False
    ) -> float:
        """Seconds of one rank's fused ``uvm_caching`` lookup of ``shards`` (one fused group,
        ``fused_group``): the op the graph builder fuses them into (``graph.build.fused_embedding``)
        with their mixed access (``fused_access_model``), as the engines cost it, so the shards
        share one cache of ``ratio x`` their summed rows, as FBGEMM's one cache per TBE module does.
        A shard priced alone (``lookup_s``) has a cache of its own rows: small hot tables then
        looked colder than they run beside a big one (a tester's find: more skew, a slower plan)."""
        # The partitioner prices a rank's group again with each block it tries there, a group of
        # dozens of shards: its members' ops are kept rather than built again, found by the shard's
        # identity (hashing a ``Shard``, and then a tuple of ``Embedding``s, per member and call
        # took more time than the cost model), and the figure is kept by the ops' identities.
        known = self._member_ops.setdefault((pass_, presorted, atomic), {})
        # Found and checked in C (``map``): a Python loop per member was most of what is left.
        found = list(map(known.get, map(id, shards)))
        if None in found or not all(map(operator.is_, map(_FIRST, found), shards)):
            for s in shards:
                entry = known.get(id(s))
                if entry is None or entry[0] is not s:
                    known[id(s)] = self._shared_member(s, pass_, presorted, atomic)
            found = list(map(known.get, map(id, shards)))
        members: list[tuple[Shard, Embedding, int]] = found  # type: ignore[assignment]
        key = (pass_, tuple(map(_THIRD, members)))
        cached = self._shared_s.get(key)
        if cached is not None:
            return cached
        ops = [m[1] for m in members]
        tier = shards[0].tier
        fused = fused_embedding(ops, f"tbe:{tier}", tier)
        if any(op.presorted for op in ops):
            fused = dataclasses.replace(fused, presorted=True)
        lookups = [op.lookups for op in ops]
        last = self._last_access
        if last is not None and last[0] is shards and last[1] == lookups:
            # The other pass of the group just priced (``Partitioner._price_s`` asks for both in
            # turn): the same members and lookups mix into the same model, so it is that object,
            # with the popularity and figures it keeps, rather than an equal one made again.
            access = last[2]
        else:
            access = fused_access_model([self._member_access_of(s) for s in shards], lookups)
            self._last_access = (shards, lookups, access)
        try:
            value = embedding_cost(fused, self.system, access).time_s
        except (InfeasibleError, ConfigError) as exc:
            self.unavailable.setdefault(tier, str(exc))
            value = math.inf
        self._shared_s[key] = value
        return value

    def _shared_member(
        self, shard: Shard, pass_: str, presorted: bool, atomic: bool
    ) -> tuple[Shard, Embedding, int]:
        """``shard``'s ``pass_`` op in a shared cache (``lookup_op``, made once per equal shard) and
        the identity of the one object kept for ops equal to it (``_canonical_ops``)."""
        op_key = (shard, pass_, presorted, atomic)
        op = self._shared_ops.get(op_key)
        if op is None:
            op = self._shared_ops[op_key] = self.lookup_op(shard, pass_, presorted, atomic)
        return (shard, op, id(self._canonical_ops.setdefault(op, op)))

    def _member_access_of(self, shard: Shard) -> AccessModel:
        """``access_of(shard)``, made once per shard object: a slice or subset model keeps its
        popularity, so a group priced again does not make its members' models again."""
        found = self._member_access.get(id(shard))
        if found is not None and found[0] is shard:
            return found[1]
        model = self.access_of(shard)
        self._member_access[id(shard)] = (shard, model)
        return model

    def fixed_s(self, shard: Shard, pass_: str, presorted: bool = False, atomic: bool = False) -> float:
        """The part of ``lookup_s`` that does not scale with lookups (kernel overheads, the launch,
        the sort's radix passes, a cache's management): the cost of an op with no lookups. 0 for a
        tier whose shards run one node each (``recsim.graph.ir.fused_tier``).

        Keyed by what it depends on -- the pass, the radix passes of the row count, replication --
        and costed on a canonical empty op (fp32, 128 columns: with no lookups the row size only
        moves the offsets' bytes, below 1e-9 of the figure), so the value does not depend on which
        shard asked first."""
        if not fused_tier(shard.tier):
            return 0.0
        replicated = shard.sharding == "data_parallel"
        key = ("fixed", pass_, radix_passes(shard.rows_per_rank), replicated, presorted, atomic, shard.tier)
        cached = self._compute.get(key)
        if cached is not None:
            return cached
        op = self.ops.op(shard, pass_, self.batch, self.world, atomic=atomic)
        presorted = presorted and sorts_ahead(pass_, shard.tier, op.optimizer, op.atomic)
        empty = dataclasses.replace(
            op, lookups=0.0, unique_rows=0.0, batch=0, bags=None, dim=128, dtype="fp32", presorted=presorted
        )
        value = embedding_cost(empty, self.system, self.access_of(shard)).time_s
        self._compute[key] = value
        return value

    def marginal_lookup_s(
        self, shard: Shard, pass_: str, presorted: bool = False, atomic: bool = False
    ) -> float:
        """What the shard adds to its rank's fused lookup kernel: ``lookup_s`` less the fixed part for
        shards of a fused tier, which the graph builder fuses into one table-batched kernel per
        rank, tier and pass (so the fixed part is paid once per rank and tier whatever the plan;
        ``plan_perf`` adds it back)."""
        full = self.lookup_s(shard, pass_, presorted, atomic)
        if not math.isfinite(full):
            return full
        return max(0.0, full - self.fixed_s(shard, pass_, presorted, atomic))

    def update_s(self, shard: Shard, reduced_dtype: str | None = None) -> tuple[float, float]:
        """(marginal, fixed) seconds of a replicated shard's dense ``update`` pass
        (``planner.types.dense_gradient``) with its gradient reduced in ``reduced_dtype`` (None: the
        table's): the builder fuses a rank's replicated updates as it fuses their lookups, so the
        fixed part (kernel overheads and launches) is paid once per rank. (0, 0) for other shards."""
        if not dense_gradient(shard, self.world):
            return 0.0, 0.0
        key = ("update", shard.table, shard.rows, shard.dim, shard.tier, shard.dtype, reduced_dtype)
        cached = self._updates.get(key)
        if cached is not None:
            return cached
        op = self.ops.op(shard, "update", self.batch, self.world, reduced_dtype)
        try:
            full = embedding_cost(op, self.system, self.access_of(shard)).time_s
            fixed = embedding_cost(dataclasses.replace(op, rows=0), self.system, self.access_of(shard)).time_s
            value = (max(0.0, full - fixed), fixed)
        except (InfeasibleError, ConfigError):
            # Only HBM runs the update, and plans keep replicated shards there (Plan.validate):
            # the tier stays available for the other shardings.
            value = (math.inf, 0.0)
        self._updates[key] = value
        return value

    # -- blocks --------------------------------------------------------------------------------

    def block(self, shards: Sequence[Shard], *, comm_out_bytes: float, split_group: int = 1) -> Block:
        """A block of ``shards`` (one rank) that sends ``comm_out_bytes`` in the all-to-all and, for
        a row split over ``split_group`` ranks, reduce-scatters its partial pools."""
        # Id-ordered single-shard blocks of one size cost the same (a row split's blocks): memo.
        memo_key: tuple[object, ...] | None = None
        if len(shards) == 1 and shards[0].order == "id":
            s0 = shards[0]
            memo_key = (
                s0.table,
                s0.sharding,
                s0.rows,
                s0.dim,
                s0.tier,
                s0.dtype,
                comm_out_bytes,
                split_group,
            )
            hit = self._blocks.get(memo_key)
            if hit is not None:
                return dataclasses.replace(hit, shards=tuple(shards))
        comm = self.comm_dtype
        fwd = sum(self.marginal_lookup_s(s, "forward") for s in shards)
        bwd = sum(self.marginal_lookup_s(s, "backward") for s in shards)
        a2a = comm_out_bytes * self.marginal_s_per_byte("all_to_all", self.world, comm)
        rs = 0.0
        # The split reduces its partial pools over its reduce group: the whole split, or the
        # members on this rank's node where the plans reduce per node, as ``pooled_exchange``
        # groups the placed split (``graph.shard_ops.reduce_groups``).
        group = reduce_group_size(split_group, self.reduce_node_size)
        if group > 1:
            dim = shards[0].dim
            scatter, _ = row_split_wire_dtypes(comm)
            size = self.batch * dim * wire_bytes_per_value(scatter)
            rs = size * self.marginal_s_per_byte("reduce_scatter", group, scatter)
        dp = 0.0
        for s in shards:
            if dense_gradient(s, self.world):
                # Its gradient as the builder reduces it without a plan's grouping (a quantised
                # table's in fp32: ``workload.spec.gradient_dtype``), as ``plan_perf`` sizes it.
                table_dtype = s.dtype or self.w.table_dtype(self.ops.tables[s.table])
                grad_dtype = gradient_dtype(table_dtype)
                size = s.rows * s.dim * DTYPE_BYTES[grad_dtype]
                dp += size * self.marginal_s_per_byte("all_reduce", self.world, "fp32")
                bwd += self.update_s(s, None if grad_dtype == table_dtype else grad_dtype)[0]
        # What the block takes on its rank: its rows (and their state, a cache) and the pooled
        # vectors it writes for the global batch (``storage`` module docstring), as ``plan_usage``.
        pooled = pooled_block_bytes(shards, self.w, self.world, self.ops)
        if split_group > 1:
            # The reduce-scatter's output: the B / |G| samples' sums a member of the split's reduce
            # group (per node where the plans reduce so) holds until the all-to-all sends them on,
            # as ``storage.reduce_scatter_by_rank`` charges the placed plan.
            pooled += reduce_scatter_output_bytes(self.batch, shards[0].dim, comm, group, self.world)
        # ... and the ids its lookups read (``storage.input_block_bytes``), as ``plan_usage``.
        own, once = input_block_parts(shards, self.w, self.world, self.ops, self.framework)
        inputs = own + math.fsum(once.values())
        storage = Storage(hbm_bytes=pooled + inputs)
        for s in shards:
            storage = storage + shard_storage(s, self.w, self.world)
        perf = Perf(fwd, a2a + rs, bwd, a2a + rs + dp)
        joins = any(map(shares_cache, shards))
        block = Block(tuple(shards), perf, storage, pooled, inputs, tuple(sorted(once.items())), joins)
        if memo_key is not None:
            self._blocks[memo_key] = block
        return block

    def dtypes_for(self, table: Table) -> list[str]:
        """Storage dtypes to try for ``table``, most precise first (see ``PlannerConfig``).

        Kept per table name: ``limits.dtypes_for`` reads every table's dtype (``allowed_dtypes``),
        and the proposers ask it of each table for each candidate, so on model-a's 856 tables it
        took 39M ``table_dtype`` calls in ``auto`` (benchmarks/bench_planner.py).
        The estimator's config and workload are fixed, so the answer is too."""
        found = self._dtypes_by_table.get(table.name)
        if found is None:
            found = self._dtypes_by_table[table.name] = tuple(dtypes_for(self.cfg, self.w, table))
        return list(found)

    def start_dtype(self, table: Table) -> str:
        """``limits.start_dtype`` of ``table`` under this estimator's config (``dtypes_for``)."""
        return self.dtypes_for(table)[0]

    def tiers(self) -> list[str]:
        """Tier strings to try: each listed tier, ``uvm_caching`` once per cache ratio; ``nmp`` and
        ``smartssd`` added where the system has them and ``planner.tiers`` is the default (a list the
        user gives is a limit: ``tiers=[ddr]`` on a node with NMP DIMMs had put tables on ``nmp``
        unless ``auto_tiers`` was false too, a tester's find)."""
        out: list[str] = []
        listed = list(self.cfg.tiers)
        if self.cfg.auto_tiers and "tiers" not in self.cfg.model_fields_set:
            node = self.system.node
            if node.host_memory.nmp is not None and "nmp" not in listed:
                listed.append("nmp")
            if node.ssds is not None and node.ssds.device.ndp is not None and "smartssd" not in listed:
                listed.append("smartssd")
        for tier in listed:
            if tier == "uvm_caching":
                out += [f"uvm_caching:{r:g}" for r in self.cfg.cache_ratios]
            else:
                out.append(tier)
        return out

    def column_splits(self, dim: int) -> list[int]:
        """Column block counts for column-wise schemes: halves and quarters of at least 32 columns
        (TorchRec's CW shards are multiples of 32 columns for its kernels' alignment)."""
        return [k for k in (2, 4) if dim % k == 0 and dim // k >= 32]

    def candidate(
        self,
        table: Table,
        sharding: str,
        tier: str,
        dtype: str,
        *,
        column_blocks: int = 1,
        hot_rows: int = 0,
        hot_placement: str = "",
        cold_tier: str | None = None,
    ) -> Candidate | None:
        """The blocks of one option, or None if it cannot be built here (too few rows or nodes)."""
        rows, dim = table.rows, self.w.table_dim(table)
        name = table.name
        b = self.local_batch
        wire = wire_bytes_per_value(self.comm_dtype)
        blocks: list[Block] = []
        placement = "any"
        groups = 1
        if hot_rows and hot_placement == "replicate":
            # FlexShard: the hottest rows on every rank; the cold rows whole on one rank.
            if not 0 < hot_rows < rows or self.world == 1:
                return None
            hot = Shard(name, "data_parallel", 0, hot_rows, 0, dim, (), "hbm", dtype, "popularity")
            cold = Shard(name, "table_wise", hot_rows, rows, 0, dim, (), tier, dtype, "popularity")
            bags = self.ops.bag_share([cold])
            replicated = self.block([hot], comm_out_bytes=0.0)
            owner = self.block([cold], comm_out_bytes=self.batch * dim * wire * bags)
            option = ShardingOption(name, "table_wise", tier, dtype, 1, hot_rows, "replicate")
            return Candidate(
                _with_estimates(option, [replicated, owner]), (owner,), "any", replicated=(replicated,)
            )
        if hot_rows and hot_placement == "hbm" and sharding == "column_wise":
            # RecShard's split of each column block: its hot rows in HBM and its cold rows on the
            # slow tier, each block on one rank. The table's lookups and hot set spread over the
            # blocks' ranks, where one rank would hold them all (a hot set larger than a rank, or
            # a rank that carries a whole big table's slow lookups).
            if not 0 < hot_rows < rows:
                return None
            if column_blocks < 2 or dim % column_blocks or column_blocks > self.world:
                return None
            slow = cold_tier or tier
            width = dim // column_blocks
            for c in range(column_blocks):
                cols = (c * width, (c + 1) * width)
                hot = Shard(name, "column_wise", 0, hot_rows, *cols, (), "hbm", dtype, "popularity")
                cold = Shard(name, "column_wise", hot_rows, rows, *cols, (), slow, dtype, "popularity")
                blocks.append(self.block([hot, cold], comm_out_bytes=self.batch * width * wire))
            option = ShardingOption(name, "column_wise", slow, dtype, column_blocks, hot_rows, "hbm")
            return Candidate(_with_estimates(option, blocks), tuple(blocks), "any")
        if hot_rows and hot_placement == "hbm":
            # RecShard: the hottest rows in HBM, the rest on the slow tier, both on one rank.
            if not 0 < hot_rows < rows:
                return None
            slow = cold_tier or tier
            hot = Shard(name, "table_wise", 0, hot_rows, 0, dim, (), "hbm", dtype, "popularity")
            cold = Shard(name, "table_wise", hot_rows, rows, 0, dim, (), slow, dtype, "popularity")
            blk = self.block([hot, cold], comm_out_bytes=self.batch * dim * wire)
            option = ShardingOption(name, "table_wise", slow, dtype, 1, hot_rows, "hbm")
            return Candidate(_with_estimates(option, [blk]), (blk,), "any")
        if sharding == "table_wise":
            shard = Shard(name, sharding, 0, rows, 0, dim, (), tier, dtype)
            blocks = [self.block([shard], comm_out_bytes=self.batch * dim * wire)]
        elif sharding in ("column_wise", "table_column_wise"):
            if column_blocks < 2 or dim % column_blocks or column_blocks > self.world:
                return None
            if sharding == "table_column_wise" and column_blocks > self.per_node:
                return None
            width = dim // column_blocks
            for c in range(column_blocks):
                shard = Shard(name, sharding, 0, rows, c * width, (c + 1) * width, (), tier, dtype)
                blocks.append(self.block([shard], comm_out_bytes=self.batch * width * wire))
            placement = "node" if sharding == "table_column_wise" else "any"
        elif sharding in ROW_SPLIT:
            if sharding == "row_wise":
                parts, placement = self.world, "all"
            elif sharding == "table_row_wise":
                parts, placement = self.per_node, "node"
            else:
                parts, placement = self.per_node, "grid"
                groups = column_blocks
                if groups < 2 or dim % groups or groups > self.nodes:
                    return None
            if parts < 2 or rows < parts:
                return None
            try:  # a row split reduce-scatters its partial pools, which an int8 wire cannot
                row_split_wire_dtypes(self.comm_dtype)
            except InfeasibleError:
                return None
            width = dim // groups
            # Each member of a reduce group (``reduce_group_size``: the split, or its ranks on one
            # node where the plans reduce per node) sends the sums of its B / |G| samples on to
            # their owners but the one it is itself (ranks are placed node by node, so member ``i``
            # of a group is owner ``i`` mod ``|G|``), as ``pooled_exchange`` does: nothing where the
            # group is the world.
            reduce_group = reduce_group_size(parts, self.reduce_node_size)
            onward = b * (self.world // reduce_group - 1) * width * wire
            bounds = [rows * r // parts for r in range(parts + 1)]
            for c in range(groups):
                for r in range(parts):
                    shard = Shard(
                        name, sharding, bounds[r], bounds[r + 1], c * width, (c + 1) * width, (), tier, dtype
                    )
                    blocks.append(self.block([shard], comm_out_bytes=onward, split_group=parts))
        elif sharding == "data_parallel":
            if self.world == 1:
                return None
            shard = Shard(name, sharding, 0, rows, 0, dim, (), tier, dtype)
            blocks = [self.block([shard], comm_out_bytes=0.0)]
            placement = "every"
        else:
            raise ConfigError(f"unknown sharding {sharding!r}")
        option = ShardingOption(name, sharding, tier, dtype, len(blocks))
        return Candidate(_with_estimates(option, blocks), tuple(blocks), placement, groups)

    def candidates(self, table: Table, dtype: str, tiers: Sequence[str] | None = None) -> list[Candidate]:
        """Every statistics-free option of ``table`` at ``dtype`` on ``tiers`` (default: all the
        config allows), fastest block first."""
        out: list[Candidate] = []
        dim = self.w.table_dim(table)
        for sharding in self.cfg.sharding_types:
            for tier in tiers if tiers is not None else self.tiers():
                if sharding == "data_parallel" and tier != "hbm":
                    continue  # replicated tables are small and hot: HBM only, as TorchRec
                if sharding in ("column_wise", "table_column_wise", "grid"):
                    for k in self.column_splits(dim):
                        c = self.candidate(table, sharding, tier, dtype, column_blocks=k)
                        if c is not None:
                            out.append(c)
                    continue
                c = self.candidate(table, sharding, tier, dtype)
                if c is not None:
                    out.append(c)
        usable = [c for c in out if math.isfinite(c.max_block_perf_s)]
        usable.sort(key=lambda c: (c.max_block_perf_s, c.option.perf.total_s))
        return usable

    def hot_rows_options(self, table: Table) -> list[int]:
        """Hot-set sizes to try for ``table`` (config ``hot_fractions`` of its rows, at least 1)."""
        return sorted(
            {max(1, round(f * table.rows)) for f in self.cfg.hot_fractions if f * table.rows < table.rows}
        )


def _with_estimates(option: ShardingOption, blocks: Sequence[Block]) -> ShardingOption:
    perf = Perf()
    storage = Storage()
    for b in blocks:
        perf = perf + b.perf
        storage = storage + b.storage
    worst = max(blocks, key=lambda b: b.perf.total_s)
    return ShardingOption(
        option.table,
        option.sharding,
        option.tier,
        option.dtype,
        option.shards,
        option.hot_rows,
        option.hot_placement,
        perf,
        storage,
        worst.perf,
        worst.storage,
    )


def plan_perf(est: Estimator, plan: Plan) -> dict[int, Perf]:
    """Estimated ``Perf`` per rank of a whole plan (the same per-block model as the options).

    A rank's shards share one fused lookup kernel per pass and group (``fused_group``: its tier and
    dtype, and in a UVM tier its width; replicated shards apart), as the graph builder fuses them;
    each kernel's fixed part is counted once. A rank's ``uvm_caching`` shards of one group are
    priced as that one kernel (``Estimator.shared_cache_s``): one cache of ``ratio x`` their summed
    rows over their mixed traffic, as the engines cost it, where a candidate's block (placed
    nowhere yet) has a cache of its own. Communication is the plan's ``pooled_exchange`` --
    the bytes each rank sends in the all-to-all and the reduce-scatter of each row-split group --
    at the marginal seconds per byte of those collectives, forward and backward alike; replicated
    rows add their gradient all-reduce.
    """
    comm = plan.comm_dtype
    wire = wire_bytes_per_value(comm)
    world = plan.world_size
    # What the workload's framework does with this plan (``recsim.graph.runtime``), as the builder.
    framework = est.framework
    presorted = framework.presorts_indices(plan)
    atomic = framework.atomic_embedding_update(plan, est.w.training.embedding_optimizer)
    gradients = framework.gradient_all_reduce
    per_rank: dict[int, Perf] = {r: Perf() for r in range(world)}
    node_size = framework.row_split_node_size(est.per_node, plan)
    exchange = pooled_exchange(est.ops, plan, est.batch, wire, node_size)
    a2a = est.marginal_s_per_byte("all_to_all", world, comm, framework.pooled_all_to_all(plan))
    # A rank's part of the exchange lasts as long as the larger of what it sends and what it
    # receives (its links are full duplex): forward it sends its row and receives its column,
    # backward the transpose, so both directions cost the same.
    sent, received = exchange_sums(exchange.rows), exchange_sums(exchange.columns)
    for r in range(world):
        t = max(sent[r], received[r]) * a2a
        per_rank[r] = per_rank[r] + Perf(0.0, t, 0.0, t)
    for ranks, dim in exchange.reduce_groups.items():
        scatter, _ = row_split_wire_dtypes(comm)
        size = est.batch * dim * wire_bytes_per_value(scatter)
        t = size * est.marginal_s_per_byte("reduce_scatter", len(ranks), scatter)
        for r in ranks:
            per_rank[r] = per_rank[r] + Perf(0.0, t, 0.0, t)
    # (rank, replicated, fused_group) -> the fused kernel's fixed part
    fixed: dict[tuple[int, bool, tuple[str, str, int]], tuple[float, float]] = {}
    # (rank, fused_group) -> the rank's uvm_caching shards of that group, priced together below
    shared: dict[tuple[int, tuple[str, str, int]], list[Shard]] = defaultdict(list)
    for s in plan.shards:
        if shares_cache(s):
            group = est.fused_group_of(s)
            for r in s.ranks:
                shared[(r, group)].append(s)
            continue
        fwd = est.marginal_lookup_s(s, "forward")
        bwd = est.marginal_lookup_s(s, "backward", presorted, atomic)
        dp = fixed_update = 0.0
        if dense_gradient(s, plan.world_size):
            dtype, size = replicated_gradient(framework, plan, est.w, s, est.ops.tables[s.table])
            dp = size * est.marginal_s_per_byte("all_reduce", plan.world_size, "fp32", gradients)
            marginal, fixed_update = est.update_s(s, dtype)
            bwd += marginal
        if fused_tier(s.tier):
            fixed_fwd = est.fixed_s(s, "forward")
            # The update's fixed part joins the backward's: both once per rank (fused).
            fixed_bwd = est.fixed_s(s, "backward", presorted, atomic) + fixed_update
            # The builder's fused lookups (``fused_group``): per rank, tier and dtype, and in a UVM
            # tier per width.
            group = est.fused_group_of(s)
            for r in s.ranks:
                key = (r, s.sharding == "data_parallel", group)
                f0, b0 = fixed.get(key, (0.0, 0.0))
                fixed[key] = (max(f0, fixed_fwd), max(b0, fixed_bwd))
        for r in s.ranks:
            per_rank[r] = per_rank[r] + Perf(fwd, 0.0, bwd, dp)
    for (r, _replicated, _group), (f, b) in fixed.items():
        per_rank[r] = per_rank[r] + Perf(f, 0.0, b, 0.0)
    for (r, _group), shards in shared.items():
        fwd = est.shared_cache_s(shards, "forward")
        bwd = est.shared_cache_s(shards, "backward", presorted, atomic)
        per_rank[r] = per_rank[r] + Perf(fwd, 0.0, bwd, 0.0)
    if plan.bottom_rank is not None and world > 1:
        r = plan.bottom_rank
        per_rank[r] = per_rank[r] + mp_bottom_perf(est, world)
    return per_rank


def shares_cache(shard: Shard) -> bool:
    """Whether ``shard`` shares its rank's cache with the rank's other shards of its fused group:
    a sharded (not replicated) ``uvm_caching`` shard, which FBGEMM's TBE module of the rank's
    ``FUSED_UVM_CACHING`` tables caches in one cache (``graph.build``'s fused lookup)."""
    tier = shard.tier
    # (``tier_name``'s test without the split: the planner asks it of every block it tries.)
    cached = tier == "uvm_caching" or tier.startswith("uvm_caching:")
    return cached and shard.sharding != "data_parallel"


def mp_bottom_perf(est: Estimator, world: int) -> Perf:
    """The compute a model-parallel bottom MLP (``Plan.bottom_rank``) adds to its rank: the bottom
    layers' forward and backward for the global batch less the local batch a data-parallel bottom
    MLP runs on every rank (which ``plan_perf`` leaves out, as the rest of the dense model: equal
    on every rank of every plan, it cannot rank plans). The ops are the builder's (``graph.build``:
    forward, then both backward GEMMs but the first layer's input gradient) at the training
    precision, priced by the cost model the engines use. The other ranks skip their local bottom
    MLP and its gradient all-reduce; that saving is not subtracted (a rank's seconds stay work
    done), so where such a rank is the busiest the estimate is high by one local bottom pass."""
    bottom = [layer for layer in est.w.dense_layers if layer.part == "bottom"]
    if not bottom:
        return Perf()
    precision = est.w.training.precision
    size = DTYPE_BYTES[precision]
    costs = CostModel(est.system)

    def seconds(batch: int) -> tuple[float, float]:
        fwd = [dense_layer_op(x, batch, size, precision, backward=False) for x in bottom]
        bwd = [
            dense_layer_op(x, batch, size, precision, backward=True, input_grad=x is not bottom[0])
            for x in bottom
        ]
        return math.fsum(map(costs.compute_s, fwd)), math.fsum(map(costs.compute_s, bwd))

    whole_fwd, whole_bwd = seconds(est.batch)
    local_fwd, local_bwd = seconds(est.batch // world)
    return Perf(whole_fwd - local_fwd, 0.0, whole_bwd - local_bwd, 0.0)


def plan_makespan_s(est: Estimator, plan: Plan) -> float:
    """The largest estimated per-rank load of ``plan`` (the score proposers rank plans by)."""
    return max(p.total_s for p in plan_perf(est, plan).values())
