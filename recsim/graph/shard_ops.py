"""What one shard of an embedding table does in a step: its share of the lookups, its distinct rows,
the bags it serves and the ``Embedding`` ops of its forward and backward pass.

The graph builder and the planner's estimator both ask this, so a plan is estimated with exactly
the ops the engines will run. Row ranges in ``popularity`` order (hottest first, after a frequency
remap) get the slice of the table's popularity (``SliceModel``) and an op table name
``table@[start:end]``; partial id ranges (row-wise blocks) a uniform subset of the rows
(``SubsetModel``) and the name ``table#[start:end]``. The cost layer resolves those names to the
same models (graph metadata ``table_slices``), so caches and reuse see the part, not the table.

``pooled_exchange`` is the output distribution of a plan (who sends whom which pooled bytes): the
builder emits its collectives, the planner's estimator and stats cost and count them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from recsim.cost.memo import let_go_when_full
from recsim.graph.ir import Collective, Compute, Embedding, Host, Transfer
from recsim.planner.types import Plan, Shard, dense_gradient
from recsim.workload.access import FixedRowsModel, shared_access_model
from recsim.workload.access.model import AccessModel
from recsim.workload.access.slice import SliceModel
from recsim.workload.spec import Layer, Workload

K = TypeVar("K")
V = TypeVar("V")

#: Bytes of one length in the input distribution's jagged batch: TorchRec's KeyedJaggedTensor keeps
#: an int32 length per sample and feature (``KJTAllToAll`` sends them beside the ids).
LENGTH_BYTES = 4.0

#: Shards' ops and figures a ``ShardOps`` keeps (``_ops``, ``_figures``), and the builder's fused
#: (TBE) and presorted lookups (``fused_ops``, ``sorted_ops``), in each. A design choice: every
#: plan of a planner search or sweep adds the ops of its new shards (``benchmarks/
#: bench_memo_growth.py``: ~3,800 ops after ``greedy``, ``recshard`` and ``auto`` on 16 H100s,
#: ~10 more per distinct plan after that, with no end), so at this many every entry is let go, as
#: ``recsim.cost.memo.OPS_BY_ID_KEPT`` does: an op asked again is made again, an equal value, and
#: costed by value to the same figure; the ops a graph holds stay alive with it (and each entry
#: keyed by ids keeps the objects it names), so no id is taken for another's. An ``Embedding`` with
#: its key is ~1 kB: ~16 MB at the worst for each.
SHARD_OPS_KEPT = 1 << 14

#: Plans whose pooled exchange and input ops a ``ShardOps`` keeps (``exchanges``, ``inputs``),
#: oldest first. A design choice: ``auto`` scores a dozen plans and then runs its winner, a sweep
#: runs each plan's points in turn, so the last 16 serve both; each exchange holds its
#: ``world x world`` matrix (8 MB at 1,024 ranks) and its all-to-all parts, so this bounds them
#: to ~200 MB at that size where every plan ever run would pile up (``bench_memo_growth.py``).
PLANS_KEPT = 16

#: Popularity slices whose models a ``ShardOps`` keeps (``_slices``), let go at this many as at
#: ``SHARD_OPS_KEPT``. A design choice: each keeps its derived popularity and figures (~10 kB for
#: dlrm-dcnv2's tables, ``bench_memo_growth.py`` under tracemalloc), and a plan splitting tables by
#: popularity adds a slice or two per table (~1,700 for model-a's 856 tables split hot and cold),
#: so this holds a plan's or a search's worth (~50 MB at the most). A slice asked again is made
#: again from its table's model (``derive``), the same figures; its op table name stays
#: (``slices``: a graph's metadata names the slices of the ops made before, a few bytes each).
SLICES_KEPT = 1 << 12


class ShardOps:
    """Lookup figures of shards of ``workload``'s tables (access models cached per table/slice)."""

    def __init__(self, workload: Workload) -> None:
        self.w = workload
        self.tables = workload.table_index
        self._models: dict[str, AccessModel] = {}
        # The model of each distinct (access spec, rows): a model is a function of those alone, so
        # tables alike (dlrm-dcnv2's five 40M-row Zipf tables) share one, and its popularity and
        # the figures it keeps (a Che search, expected unique rows) are worked out once.
        self._by_value: dict[tuple[object, int], AccessModel] = {}
        self._slices: dict[tuple[str, int, int], SliceModel] = {}
        # op table name -> (table, start, end, order): what the cost layer needs to rebuild the
        # part's access model (graph metadata "table_slices").
        self.slices: dict[str, tuple[str, int, int, str]] = {}
        # (shard, global batch, world size) -> (served, lookups, unique rows, bags or None) of one
        # rank's part: the same for the forward and the backward op of a shard (``op``).
        self._figures: dict[tuple[Shard, int, int], tuple[int, float, float, float | None]] = {}
        # ``op``'s arguments -> the op: a frozen value of them (and of the workload) alone, so an
        # equal shard asked again (every evaluation of a plan sharing a ``CostMemo``'s ops, a
        # planner's candidates) gets the op made the first time rather than an equal new one (an
        # ``Embedding`` of 14 frozen fields costs 3 us to make).
        self._ops: dict[tuple[Shard, str, int, int, str | None, bool, bool], Embedding] = {}
        # The same ops by the shard's id in place of the shard -> (the shard, kept so that its id
        # stays its own; the op): a key hashed in C, where a ``Shard``'s dataclass ``__hash__`` is
        # a Python call hashing its dozen fields (the builder asks twice a shard a graph, ~2,500
        # machine instructions each, callgrind). Let go as ``_ops`` is.
        self._ops_by_id: dict[
            tuple[int, str, int, int, str | None, bool, bool, bool], tuple[Shard, Embedding]
        ] = {}
        # The graph builder's table-batched (TBE) lookups, by (group, pass, ids of the ops it
        # fuses) -> (those ops, kept so that their ids stay theirs; the fused op; its tables'
        # lookups; its node's name): the ops are this object's (``op``), so the next graph of the
        # same plan fuses the same ones (``recsim.graph.build._Builder.embedding_pass``).
        self.fused_ops: dict[tuple[object, ...], FusedEntry] = {}
        # The builder's dense layer ops of this workload's layers, by (the layer's id, local batch,
        # bytes per value, precision, backward, input gradient, closes a cross stack, async weight
        # gradient, opens a cross stack, the dot interaction's padding it reads) -> (the
        # layer, kept so that its id stays its own; its (name suffix, op) pairs): frozen values of
        # those alone, made once for every graph (``recsim.graph.build._Builder.layer_ops``; a
        # ``Compute`` costs a microsecond to make).
        self.layer_ops: dict[
            tuple[int, int, float, str, bool, bool, bool, bool, bool, int],
            tuple[Layer, tuple[tuple[str, Compute], ...]],
        ] = {}
        # A backward lookup op's id -> (that op, kept so that its id stays its own; its presorted
        # copy; its index sort): made once for every graph (``recsim.graph.build._Builder.lookup``),
        # so that the cost model finds them by identity the next time too.
        self.sorted_ops: dict[int, tuple[Embedding, Embedding, Embedding]] = {}
        # The builder's pooled exchanges, by (the plan's id, global batch, wire bytes per value,
        # node size) -> (the plan, kept so that its id stays its own (a frozen value); its
        # ``pooled_exchange``; the ``sum`` of each of its rows and columns): a function of those
        # alone, so every graph of the plan reads the one worked out first instead of redoing the
        # matrix, its shared tuples and their sums; and the builder's all-to-all parts of it
        # (``recsim.graph.build._Builder.pooled_exchange``).
        self.exchanges: dict[tuple[int, int, float, int | None], ExchangeEntry] = {}
        # The builder's input pipeline ops, by (the plan's id, local batch, folded ranks) -> the
        # plan (kept so that its id stays its own) and its ops (``InputEntry``): values of those and
        # of this workload alone (``recsim.graph.build._Builder.input_pipeline``).
        self.inputs: dict[tuple[int, int, frozenset[int]], InputEntry] = {}

    def keep_fused(self, key: tuple[object, ...], entry: FusedEntry) -> None:
        """Keep the builder's fused lookup ``entry`` under ``key`` (``fused_ops``), every entry let
        go first at ``SHARD_OPS_KEPT``."""
        let_go_when_full(self.fused_ops, SHARD_OPS_KEPT)[key] = entry

    def keep_sorted(self, op: Embedding, presorted: Embedding, sort: Embedding) -> None:
        """Keep a backward lookup's presorted copy and index sort (``sorted_ops``), every entry
        let go first at ``SHARD_OPS_KEPT``."""
        let_go_when_full(self.sorted_ops, SHARD_OPS_KEPT)[id(op)] = (op, presorted, sort)

    def keep_exchange(self, key: tuple[int, int, float, int | None], entry: ExchangeEntry) -> None:
        """Keep a plan's pooled exchange (``exchanges``): the newest ``PLANS_KEPT``."""
        _keep_newest(self.exchanges, key, entry)

    def keep_inputs(self, key: tuple[int, int, frozenset[int]], entry: InputEntry) -> None:
        """Keep a plan's input pipeline ops (``inputs``): the newest ``PLANS_KEPT``."""
        _keep_newest(self.inputs, key, entry)

    def table_model(self, name: str) -> AccessModel:
        model = self._models.get(name)
        if model is None:
            table = self.tables[name]
            spec = self.w.table_row_access(table)
            key = (spec, table.rows)
            model = self._by_value.get(key)
            if model is None:
                model = self._by_value[key] = shared_access_model(spec, table.rows)
            self._models[name] = model
        return model

    def slice_model(self, table: str, start: int, end: int) -> SliceModel:
        key = (table, start, end)
        model = self._slices.get(key)
        if model is None:
            model = SliceModel(self.table_model(table), start, end)
            # A bound: each plan's row splits add theirs.
            let_go_when_full(self._slices, SLICES_KEPT)[key] = model
        return model

    def access_models(self) -> dict[str, AccessModel]:
        """The access models made so far, by the op table name that names them in a graph: whole
        tables by their name, popularity slices as ``table@[a:b]`` (``op_table``). They are the
        models the cost layer makes for those names (``CostModel``), with what they have worked
        out already (a popularity, say) kept."""
        out: dict[str, AccessModel] = dict(self._models)
        for (table, start, end), model in self._slices.items():
            out[slice_name(table, start, end, "popularity")] = model
        return out

    def is_slice(self, shard: Shard) -> bool:
        return shard.order == "popularity" and shard.rows < self.tables[shard.table].rows

    def lookup_share(self, shard: Shard) -> float:
        """Share of its table's lookups that land in the shard's rows.

        Popularity-ordered rows get their share of the popularity mass; id-ordered rows their row
        share (the access models spread hot rows over the id space).
        """
        table = self.tables[shard.table]
        if shard.rows == table.rows:
            return 1.0
        if shard.order == "popularity":
            return self.slice_model(shard.table, shard.row_start, shard.row_end).share
        return shard.rows / table.rows

    def op_table(self, shard: Shard) -> str:
        """``Embedding.table`` of the shard's ops: the table if the shard has all its rows, else
        ``table@[a:b]`` (popularity ranks a..b) or ``table#[a:b]`` (ids a..b)."""
        if shard.rows == self.tables[shard.table].rows:
            return shard.table
        name = slice_name(shard.table, shard.row_start, shard.row_end, shard.order)
        self.slices[name] = (shard.table, shard.row_start, shard.row_end, shard.order)
        return name

    def unique_rows(self, shard: Shard, lookups: float) -> float:
        """Expected distinct rows of the shard among ``lookups`` lookups that land in it."""
        table = self.tables[shard.table]
        if self.is_slice(shard):
            return self.slice_model(shard.table, shard.row_start, shard.row_end).expected_unique(lookups)
        share = self.lookup_share(shard)
        table_lookups = lookups / share if share > 0 else 0.0
        return self.table_model(shard.table).expected_unique(table_lookups) * (shard.rows / table.rows)

    def bag_share(self, block: Sequence[Shard]) -> float:
        """Share of bags (sample x table) with at least one lookup in ``block``'s rows.

        A block holding every row of its columns serves every bag. With a table's hottest rows
        replicated (FlexShard, HugeCTR's hybrid embedding) the cold owner only returns bags that
        drew a cold row: with ``P`` lookups per bag drawn independently, ``1 - (1 - s)^P`` of them
        for a block receiving a share ``s`` of the lookups; with MLPerf's fixed multi-hot rows
        (``FixedRowsModel``) a popularity block's share of the ids whose rows meet it.
        """
        share = min(1.0, sum(self.lookup_share(s) for s in block))
        if share < 1.0 - 1e-12 and all(self.is_slice(s) for s in block):
            model = self.table_model(block[0].table)
            if isinstance(model, FixedRowsModel) and model.hotness > 1:
                # A sample's lookups are its id's fixed row, not independent draws: a hot id's
                # bag lies wholly in the hottest ranks (``FixedRowsModel.rank_bag_share``).
                return model.rank_bag_share([(s.row_start, s.row_end) for s in block])
        return self.bags_hit(block[0].table, share)

    def part_bag_share(self, shard: Shard) -> float:
        """Share of bags with at least one lookup in the rows one rank of ``shard`` serves: a
        member's of a routed (``distributed``) shard, a popularity slice's. ``bags_hit`` of its
        lookup share (``member_share``) for independent lookups; with MLPerf's fixed multi-hot rows
        (``FixedRowsModel``) and popularity-ordered rows, the share of the ids whose row meets the
        part's ranks (``FixedRowsModel.rank_bag_share``; a distributed shard's ranks dealt to its
        members in turn), so a slice's is ``bag_share`` of it alone. The one figure the lookup
        pools (``op``'s ``bags``), the exchange sends (``pooled_exchange``) and the planner keeps
        room for (``planner.storage.pooled_output_bytes``)."""
        model = self.table_model(shard.table)
        if shard.order == "popularity" and isinstance(model, FixedRowsModel) and model.hotness > 1:
            members = len(shard.ranks) if shard.sharding == "distributed" else 1
            if members > 1 or self.is_slice(shard):
                return model.rank_bag_share([(shard.row_start, shard.row_end)], max(1, members))
        return self.bags_hit(shard.table, self.member_share(shard))

    def bags_hit(self, table: str, share: float) -> float:
        """Share of ``table``'s bags with at least one of their ``P`` lookups in rows that receive a
        share ``share`` of the table's lookups: ``1 - (1 - share)^P``."""
        if share >= 1.0 - 1e-12:
            return 1.0
        pooling = self.w.table_lookups(self.tables[table])
        return -math.expm1(pooling * math.log1p(-share))

    def member_share(self, shard: Shard) -> float:
        """Share of its table's lookups one rank of the shard serves (a distributed shard's rank
        gets ``1/n`` of the shard's: its rows are every ``n``-th of them)."""
        share = self.lookup_share(shard)
        return share / len(shard.ranks) if shard.sharding == "distributed" else share

    def input_dist_bytes(self, shard: Shard, samples: float, index_bytes: float) -> float:
        """Bytes of ``samples`` samples' ids and lengths that the input distribution delivers to
        each rank of ``shard`` (TorchRec's ``KJTAllToAll``): the rank's share of the table's
        lookups (``member_share``: a row split's member the ids of its rows, a column block all
        of them) at ``index_bytes`` each, and one length (``LENGTH_BYTES``) a sample. Nothing for a
        replicated (``data_parallel``) shard, which serves the local batch's own ids.

        The one figure the input all-to-all moves (``graph.build``, per sender and owner for the
        local batch) and an owner then holds for the global batch in HBM (``planner.storage.
        input_buffer_bytes``, once per batch it holds: ``held_input_batches``), so that traffic
        and memory agree."""
        if shard.sharding == "data_parallel":
            return 0.0
        lookups = self.w.table_lookups(self.tables[shard.table]) * samples * self.member_share(shard)
        return lookups * index_bytes + samples * LENGTH_BYTES

    def served(self, shard: Shard, global_batch: int, world_size: int) -> int:
        """Samples whose lookups the shard serves: the local batch when replicated, else all."""
        return global_batch // world_size if shard.sharding == "data_parallel" else global_batch

    def op(
        self,
        shard: Shard,
        pass_: str,
        global_batch: int,
        world_size: int,
        output_dtype: str | None = None,
        hit_bags_only: bool = False,
        atomic: bool = False,
        inference: bool = False,
    ) -> Embedding:
        """The shard's ``Embedding`` op of ``pass_``: forward, backward with the fused update, or
        ``update``.

        A replicated (``data_parallel``) shard over several ranks is trained as a dense parameter
        (HugeCTR's frequent rows, TorchRec's data-parallel tables under DDP): its backward only
        accumulates the local gradient (optimizer ``none``), the gradient is all-reduced whole
        (``rows x dim``), and then its ``update`` pass steps every row with the workload's
        optimizer. ``output_dtype`` is then the dtype of that reduced gradient.

        ``output_dtype``: the framework writes its pooled vectors narrower than the table
        (``Runtime.lookup_output_dtype``). ``hit_bags_only``: the framework's lookup of a part of a
        table (a rank's share of routed rows, a popularity slice) pools only the bags that drew
        one of its rows (``Runtime.pools_hit_bags_only``); otherwise every sample's bag.
        ``atomic``: the framework's backward adds gradients with atomics
        (``Runtime.atomic_embedding_update``; set on the backward op only). ``inference``: the
        lookup of an inference batch (``Embedding.inference``)."""
        id_key = (id(shard), pass_, global_batch, world_size, output_dtype, hit_bags_only, atomic, inference)
        found = self._ops_by_id.get(id_key)
        if found is not None and found[0] is shard:
            return found[1]
        op_key = (shard, pass_, global_batch, world_size, output_dtype, hit_bags_only, atomic, inference)
        made = self._ops.get(op_key)
        if made is not None:
            let_go_when_full(self._ops_by_id, SHARD_OPS_KEPT)[id_key] = (shard, made)
            return made
        table = self.tables[shard.table]
        key = (shard, global_batch, world_size)
        figures = self._figures.get(key)
        if figures is None:
            served = self.served(shard, global_batch, world_size)
            lookups = served * self.w.table_lookups(table) * self.lookup_share(shard)
            unique = self.unique_rows(shard, lookups)
            if shard.sharding == "distributed":
                # One rank's part: every n-th row of the shard, so 1/n of its lookups and distinct
                # rows. ASSUMPTION: its cache behaviour is the shard's access model at 1/n of the
                # lookups.
                n = len(shard.ranks)
                lookups, unique = lookups / n, unique / n
            # The bags that drew one of the part's rows (a rank's share of routed rows, a popularity
            # slice), which the exchange sends (``pooled_exchange``); a whole table or an id range
            # (a row-wise block, whose partial pools are all reduce-scattered) serves every bag.
            hit = None
            if shard.sharding == "distributed" or self.is_slice(shard):
                hit = served * self.part_bag_share(shard)
            figures = let_go_when_full(self._figures, SHARD_OPS_KEPT)[key] = (served, lookups, unique, hit)
        served, lookups, unique, hit = figures
        if pass_ == "update":  # no lookups: a sweep over the rows
            lookups, unique, hit = 0.0, 0.0, None
        optimizer = "none"
        if pass_ == "update" or (pass_ == "backward" and not dense_gradient(shard, world_size)):
            optimizer = self.w.training.embedding_optimizer
        # A bound: every plan's new shards add theirs. The ops by id go with them, so that an op
        # asked again after is made again whichever way it is asked.
        if len(self._ops) >= SHARD_OPS_KEPT:
            self._ops_by_id.clear()
        made = let_go_when_full(self._ops, SHARD_OPS_KEPT)[op_key] = Embedding(
            table=self.op_table(shard),
            pass_=pass_,
            rows=shard.rows_per_rank,
            dim=shard.dim,
            dtype=shard.dtype or self.w.table_dtype(table),
            batch=served,
            lookups=lookups,
            unique_rows=unique,
            tier=shard.tier,
            optimizer=optimizer,
            bags=hit if hit_bags_only else None,
            output_dtype=output_dtype,
            atomic=atomic and pass_ == "backward",
            inference=inference,
        )
        let_go_when_full(self._ops_by_id, SHARD_OPS_KEPT)[id_key] = (shard, made)
        return made


def _keep_newest(kept: dict[K, V], key: K, value: V) -> None:
    """Keep ``value`` under ``key`` in ``kept`` (oldest first), the oldest let go at ``PLANS_KEPT``."""
    kept.pop(key, None)
    while len(kept) >= PLANS_KEPT:
        del kept[next(iter(kept))]
    kept[key] = value


def slice_name(table: str, start: int, end: int, order: str) -> str:
    """The op table name of rows ``[start, end)`` of ``table``: ``table@[a:b]`` (popularity ranks)
    or ``table#[a:b]`` (ids)."""
    return f"{table}{'@' if order == 'popularity' else '#'}[{start}:{end}]"


def pooled_blocks(plan: Plan) -> list[list[Shard]]:
    """Non-replicated shards grouped by (table, column range): each block is pooled as one (a
    table's hot and cold parts on one rank, or its row split over a group of ranks)."""
    out: dict[tuple[str, int, int, bool], list[Shard]] = defaultdict(list)
    for shard in plan.shards:
        if shard.sharding != "data_parallel":
            key = (shard.table, shard.col_start, shard.col_end, shard.sharding == "distributed")
            out[key].append(shard)
    return list(out.values())


@dataclass(frozen=True, eq=False)
class PooledExchange:
    """The forward output distribution of a plan's pooled embeddings (backward is its transpose).

    ``send[src, dst]``: bytes rank ``src`` sends rank ``dst`` in the all-to-all (an owner's chunk to
    itself included, as TorchRec's all-to-all copies it), a read-only ``world x world`` array;
    ``reduce_groups``: for each group of ranks a row split spans, the summed width (columns) of its
    blocks, reduce-scattered as one collective.

    A plan's matrix has few distinct rows and columns (every rank without a table sends nothing;
    every sample owner receives the same): ``rows`` and ``columns`` give each rank's as a tuple of
    floats, the equal ones one tuple, made once. At 1,024 ranks that is a few dozen tuples instead
    of 2,048 tuples of 10^6 float objects in all, which cost more to make, to convert back to
    arrays (``traffic_matrix``) and for the garbage collector to walk than the rest of an analytic
    evaluation. Two exchanges compare by identity (the matrix is an array).
    """

    send: npt.NDArray[np.float64]
    reduce_groups: dict[tuple[int, ...], int]

    @cached_property
    def any_all_to_all(self) -> bool:
        """Whether any rank sends another anything (the matrix is read-only: asked once)."""
        return bool(self.send.any())

    @cached_property
    def rows(self) -> list[tuple[float, ...]]:
        """Rank ``r``'s row (what it sends each rank forward), equal rows one tuple."""
        return _shared_tuples(self.send)

    @cached_property
    def columns(self) -> list[tuple[float, ...]]:
        """Rank ``r``'s column (what each rank sends it forward), equal columns one tuple."""
        # Every row is one of the distinct ones: two columns are equal where they are equal in
        # the distinct rows, a few of them, so the n x n matrix is never transposed.
        number: dict[int, int] = {}  # id of a distinct row -> its number
        firsts: list[int] = []  # the first rank of each distinct row
        which = []
        for r, row in enumerate(self.rows):
            k = number.get(id(row))
            if k is None:
                k = number[id(row)] = len(firsts)
                firsts.append(r)
            which.append(k)
        distinct = self.send[firsts]
        expand = np.asarray(which, dtype=np.intp)
        return _shared_tuples(np.ascontiguousarray(distinct.T), expand)


# A plan's pooled exchange as the graph builder keeps it (``ShardOps.exchanges``): (the plan; its
# exchange; the ``sum`` of each row; of each column; by (forward, wire dtype, all-to-all algorithm,
# folded ranks) -> (the ranks with nodes; their all-to-all parts; the folded ranks' uneven parts)).
ExchangeEntry = tuple[
    Plan,
    PooledExchange,
    list[float],
    list[float],
    dict[
        tuple[bool, str, str | None, frozenset[int]],
        tuple[tuple[int, ...], tuple[Collective, ...], dict[int, Collective]],
    ],
]


# A fused (TBE) lookup as the graph builder keeps it (``ShardOps.fused_ops``): (the ops it fuses,
# kept so that their ids stay theirs; the fused op; its tables' lookups; its node's name).
FusedEntry = tuple[tuple[Embedding, ...], Embedding, list[tuple[str, float]], str]


# A plan's input pipeline ops as the graph builder keeps them (``ShardOps.inputs``): (the plan; every
# rank's data loading; its H2D copy; (rank, input-dist part, None for a folded rank) in rank order;
# the folded ranks' uneven parts).
InputEntry = tuple[Plan, Host, Transfer, tuple[tuple[int, Collective | None], ...], dict[int, Collective]]


def _shared_tuples(
    keys: npt.NDArray[np.float64], expand: npt.NDArray[np.intp] | None = None
) -> list[tuple[float, ...]]:
    """Each row of ``keys`` (``row[expand]`` where ``expand`` is given) as a tuple of Python floats,
    rows equal bit for bit sharing one."""
    made: dict[bytes, tuple[float, ...]] = {}
    out: list[tuple[float, ...]] = []
    # Neighbouring rows are often equal (the ranks of a table-wise plan that hold no table send
    # nothing; every sample owner receives alike): which rows equal the one before, bit for bit,
    # in one array call, so that only the first row of each such run is looked up by its bytes.
    bits = keys.view(np.uint64) if keys.dtype == np.float64 and keys.flags.c_contiguous else None
    repeats = (bits[1:] == bits[:-1]).all(axis=1).tolist() if bits is not None and bits.ndim == 2 else []
    for r, row in enumerate(keys):
        if r and repeats and repeats[r - 1]:
            out.append(out[-1])
            continue
        key = row.tobytes()
        found = made.get(key)
        if found is None:
            found = made[key] = tuple((row if expand is None else row[expand]).tolist())
        out.append(found)
    return out


def exchange_sums(
    vectors: Sequence[tuple[float, ...]], add: Callable[[tuple[float, ...]], float] = math.fsum
) -> list[float]:
    """The sum of each of ``vectors`` (a ``PooledExchange``'s rows or columns) by ``add`` (exact,
    ``math.fsum``, unless told), worked out once per tuple object: the rows and columns share a
    tuple where they are equal."""
    sums: dict[int, tuple[tuple[float, ...], float]] = {}  # id -> (the tuple, kept alive; its sum)
    out = []
    for vector in vectors:
        found = sums.get(id(vector))
        if found is None or found[0] is not vector:
            found = sums[id(vector)] = (vector, add(vector))
        out.append(found[1])
    return out


def pooled_exchange(
    ops: ShardOps, plan: Plan, global_batch: int, wire_bytes: float, node_size: int | None = None
) -> PooledExchange:
    """Who sends whom how many pooled bytes for ``plan`` (the rule of ``graph.build``'s exchange).

    A block on one rank sends each sample owner its ``b x dim`` vectors, times the block's bag share
    (``ShardOps.bag_share``: bags with no lookup in it send nothing when hot rows are replicated). A
    block split by rows over ranks ``G`` reduce-scatters its partial pools over ``G``, member ``i``
    keeping the samples of the ranks ``q`` with ``q mod |G| = i``, and sends them on to ``q``. A
    model-parallel bottom MLP (``Plan.bottom_rank``) sends its ``b x width`` output rows likewise. Each
    rank of a distributed shard sends every sample owner the partial pools of the bags its rows were
    drawn in (``b x dim`` times that bag share).

    ``node_size`` (ranks per node, given where the framework reduces row splits per node:
    ``Runtime.row_split_node_size``, HugeCTR's under a node-level plan):
    a row split over several nodes is one group per node instead, each reduce-scattering its
    node's partial pools and sending them on, so every sample owner receives one partial pool per
    node of the split and adds them (an addition of a few vectors per sample, not modelled).
    """
    world = plan.world_size
    b = global_batch // world
    # Each entry adds the same terms in the same (block) order as a list of lists would: the
    # array only spares 10^6 float objects at 1,024 ranks (``PooledExchange``).
    send = np.zeros((world, world))
    everyone = np.arange(world)
    groups: dict[tuple[int, ...], int] = defaultdict(int)
    for block in pooled_blocks(plan):
        ranks = tuple(sorted({r for s in block for r in s.ranks}))
        dim = block[0].dim
        if block[0].sharding == "distributed":
            # Routed: each member returns partial pools only for the bags that drew one of its rows.
            for shard in block:
                vector = b * dim * wire_bytes * ops.part_bag_share(shard)
                for member in shard.ranks:
                    send[member] += vector
            continue
        if len(ranks) == 1:
            send[ranks[0]] += b * dim * wire_bytes * ops.bag_share(block)
            continue
        for sub in reduce_groups(ranks, node_size):
            if len(sub) == 1:  # a node holding one rank of the split: its partials go out as they are
                send[sub[0]] += b * dim * wire_bytes
                continue
            groups[sub] += dim
            # Member ``sub[q mod |sub|]`` sends owner ``q`` its samples, unless it is ``q``: each
            # (member, owner) pair once, so one fancy-indexed addition.
            members = np.asarray(sub)[everyone % len(sub)]
            away = members != everyone
            send[members[away], everyone[away]] += b * dim * wire_bytes
    if plan.bottom_rank is not None and ops.w.bottom_mlp:
        # A model-parallel bottom MLP sends each sample owner its output rows, as a table would.
        send[plan.bottom_rank] += b * ops.w.bottom_mlp[-1] * wire_bytes
    send.flags.writeable = False
    return PooledExchange(send, dict(groups))


def reduce_groups(ranks: tuple[int, ...], node_size: int | None) -> list[tuple[int, ...]]:
    """The groups a row split over ``ranks`` reduces its partial pools in: all of them, or (with
    ``node_size``, hierarchical row splits) those of each node (ranks are numbered node by node)."""
    if not node_size or ranks[0] // node_size == ranks[-1] // node_size:
        return [ranks]
    by_node: dict[int, list[int]] = defaultdict(list)
    for r in ranks:
        by_node[r // node_size].append(r)
    return [tuple(members) for _, members in sorted(by_node.items())]
