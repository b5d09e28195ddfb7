"""The planner's vocabulary, after TorchRec's: Shard, Plan, ShardingOption, Perf, Storage.

A ``Plan`` is a list of ``Shard``s over ``world_size`` ranks plus the plan-wide choices (the wire
precision of pooled embeddings). A ``Shard`` is a block of one table -- rows ``[row_start, row_end)``
and columns ``[col_start, col_end)`` -- on its ranks, in a memory tier and a storage dtype. Its
``sharding`` names the scheme it belongs to, which decides the communication the graph builder
emits:

- ``data_parallel``: the block is replicated on every rank; lookups stay local and the gradient
  is all-reduced;
- ``table_wise`` / ``column_wise`` / ``table_column_wise``: the block lives on one rank, which
  pools it for every sample and sends each sample owner its vector (all-to-all);
- ``row_wise``: rows over all ranks (or, in ``hier_auto``, over every GPU of a few nodes, in
  ``hugectr_auto`` over a few GPUs); partial pools are reduce-scattered over those ranks, which send
  each sample owner its vector;
- ``table_row_wise``: rows over the ranks of one node; partial pools are reduce-scattered inside
  the node, then the node's ranks send each sample owner its vector (all-to-all);
- ``grid``: column blocks on different nodes, each split by rows inside its node (TWRW per block);
- ``distributed``: the block's rows spread over its ranks (row ``i`` on ``ranks[i mod n]``, HugeCTR's
  infrequent embedding): each rank keeps ``1/n`` of the rows and serves the lookups that land in
  them for every sample, and sends each sample owner a partial pool only for the bags it touched
  (all-to-all, routed; no reduce-scatter of empty partial pools). Next to a ``data_parallel`` shard
  of the table's most frequent rows it is HugeCTR's hybrid embedding (MLPerf DLRM).

``order`` says how row ranges are counted: ``id`` (row ids; hot rows are spread over the id space,
so a range receives its row share of the lookups) or ``popularity`` (ranks hottest first, as after
RecShard's and FlexShard's frequency remap; a range receives its share of the popularity mass).
Hot-row replication is a ``data_parallel`` shard of the hottest rows next to sharded cold rows.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from recsim.errors import InfeasibleError
from recsim.workload.spec import DTYPE_BYTES, Workload

SHARDING_TYPES = (
    "data_parallel",
    "table_wise",
    "column_wise",
    "table_column_wise",
    "row_wise",
    "table_row_wise",
    "grid",
    "distributed",
)
#: Schemes a table can be sharded by on its own (the planner config's ``sharding_types``); a
#: ``distributed`` shard holds a table's infrequent rows next to replicated frequent ones
#: (``proposers.hybrid_embedding``), not a whole table.
TABLE_SCHEMES = tuple(s for s in SHARDING_TYPES if s != "distributed")
#: Schemes that split a block's rows over several ranks (partial pools are reduce-scattered).
ROW_SPLIT = ("row_wise", "table_row_wise", "grid")
ROW_ORDERS = ("id", "popularity")
#: ``Plan.row_split_exchange`` values (None: the framework's default).
ROW_SPLIT_EXCHANGES = (None, "node", "flat")
EMBEDDING_DTYPES = ("fp32", "fp16", "bf16", "fp8", "int8", "int4")
#: Wire dtypes of pooled embeddings (``Plan.comm_dtype``, ``--comm-dtype``): what the collectives
#: and their quantise/dequantise kernels model (TorchRec's qcomm codecs: fp32, fp16, bf16, fp8, int8).
COMM_DTYPES = ("fp32", "fp16", "bf16", "fp8", "int8")


@dataclass(frozen=True)
class Shard:
    """Rows ``[row_start, row_end)`` and columns ``[col_start, col_end)`` of ``table`` on ``ranks``."""

    table: str
    sharding: str
    row_start: int
    row_end: int
    col_start: int
    col_end: int
    ranks: tuple[int, ...]
    tier: str = "hbm"
    dtype: str | None = None
    order: str = "id"

    @property
    def rows(self) -> int:
        return self.row_end - self.row_start

    @property
    def dim(self) -> int:
        return self.col_end - self.col_start

    @property
    def rows_per_rank(self) -> int:
        """Rows one of the shard's ranks keeps: all of them, or its share of a distributed shard."""
        if self.sharding == "distributed":
            return -(-self.rows // max(1, len(self.ranks)))
        return self.rows

    @property
    def tier_name(self) -> str:
        """The tier without its parameter (``uvm_caching:0.2`` -> ``uvm_caching``)."""
        return self.tier.split(":", 1)[0]

    @property
    def columns(self) -> tuple[int, int]:
        return (self.col_start, self.col_end)


def dense_gradient(shard: Shard, world_size: int) -> bool:
    """Whether ``shard`` is trained as a dense parameter: replicated over several ranks, its
    gradient is all-reduced whole before one ``update`` pass steps every row
    (``recsim.graph.shard_ops.ShardOps.op``)."""
    return shard.sharding == "data_parallel" and world_size > 1


def _is_rank(value: object) -> bool:
    """An integer rank: a bool is an int to Python, but a rank ``True`` is a mistake, and an array
    index would read it as a mask (``shard_ops.pooled_exchange`` fills a numpy matrix)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


_INT_ONLY = frozenset((int,))


def _ranks_within(ranks: Sequence[object], world: int) -> bool:
    """Every one of ``ranks`` a rank (``_is_rank``) in ``0..world - 1``. Plain ints, as every plan
    holds, are checked by their extremes in C, not by ``_is_rank``'s ABC test per rank in a
    generator (a shard of a replicated table holds every rank: 128 tests at 128 GPUs); any other
    kind of value is checked one by one, as before."""
    if len(ranks) == 1 and type(ranks[0]) is int:
        # One plain int (a table-wise shard, most of a plan's): no set of its types to make.
        return 0 <= ranks[0] < world  # type: ignore[no-any-return]
    if ranks and set(map(type, ranks)) == _INT_ONLY:
        return min(ranks) >= 0 and max(ranks) < world  # type: ignore[type-var]
    return all(_is_rank(r) and 0 <= r < world for r in ranks)  # type: ignore[operator]


@dataclass(frozen=True)
class Plan:
    """Where every embedding table lives, and the wire precision of the pooled embeddings."""

    world_size: int
    shards: tuple[Shard, ...]
    strategy: str = ""
    notes: tuple[str, ...] = field(default=())
    comm_dtype: str = "fp32"
    #: Model-parallel bottom MLP: the rank that runs the bottom MLP for the whole global batch and
    #: sends its output to the sample owners in the pooled all-to-all, like a table's vectors
    #: (NVIDIA DeepLearningExamples' hybrid-parallel DLRM); None: data-parallel on every rank.
    bottom_rank: int | None = None
    #: How a table row-split over several nodes is reduced, where the framework can choose
    #: (``Runtime.row_split_node_size``): ``node`` inside each node, the all-to-all then carrying one
    #: partial pool per node (HugeCTR's hierarchical communication); ``flat`` over all the split's
    #: ranks; None: the framework's default for the plan.
    row_split_exchange: str | None = None

    def shards_on(self, rank: int) -> list[Shard]:
        """Shards whose ranks include ``rank`` (data-parallel shards are on every rank)."""
        return [s for s in self.shards if rank in s.ranks]

    def by_table(self) -> dict[str, list[Shard]]:
        out: dict[str, list[Shard]] = defaultdict(list)
        for s in self.shards:
            out[s.table].append(s)
        return dict(out)

    def validate(self, workload: Workload) -> None:
        """Every table covered exactly once (rows x columns), ranks and choices valid.

        Raises ``InfeasibleError`` naming the table and what is wrong.
        """
        if self.world_size < 1:
            raise InfeasibleError(f"plan {self.strategy!r}: world size must be >= 1")
        if self.row_split_exchange not in ROW_SPLIT_EXCHANGES:
            raise InfeasibleError(
                f"plan {self.strategy!r}: row_split_exchange must be one of {ROW_SPLIT_EXCHANGES}, "
                f"got {self.row_split_exchange!r}"
            )
        if self.comm_dtype not in DTYPE_BYTES:
            raise InfeasibleError(f"plan {self.strategy!r}: unknown communication dtype {self.comm_dtype!r}")
        if self.bottom_rank is not None:
            if not _is_rank(self.bottom_rank) or not 0 <= self.bottom_rank < self.world_size:
                raise InfeasibleError(
                    f"plan {self.strategy!r}: bottom-MLP rank {self.bottom_rank} "
                    f"outside 0..{self.world_size - 1}"
                )
            if not workload.bottom_mlp:
                raise InfeasibleError(f"plan {self.strategy!r} places a bottom MLP; {workload.name} has none")
        tables = {t.name: t for t in workload.tables}
        by_table = self.by_table()
        # A misspelt table first: it is why the table it meant has no shard.
        unknown = [name for name in by_table if name not in tables]
        if unknown:
            raise InfeasibleError(
                f"plan {self.strategy!r} has a shard of unknown table {unknown[0]!r} "
                f"(the workload's: {', '.join(list(tables)[:8])}{', ...' if len(tables) > 8 else ''})"
            )
        missing = [name for name in tables if name not in by_table]
        if missing:
            raise InfeasibleError(f"plan {self.strategy!r} places no shard of table {missing[0]!r}")
        everyone = tuple(range(self.world_size))
        for name, shards in by_table.items():
            if name not in tables:
                raise InfeasibleError(f"plan {self.strategy!r} has a shard of unknown table {name!r}")
            table = tables[name]
            dim = workload.table_dim(table)
            # One shard (every table of a table-wise plan): one order, and no two shards to overlap.
            # Tested so, the checks below make no call for it but ``_ranks_within``'s (a plan is
            # validated on every evaluation: a few Python calls a table added up to ~0.3 M
            # instructions at 26 tables).
            alone = len(shards) == 1
            orders = None if alone else {s.order for s in shards}
            if orders is not None and len(orders) > 1:
                raise InfeasibleError(f"shards of {name!r} mix row orders {sorted(orders)}")
            area = 0
            for s in shards:
                if s.sharding not in SHARDING_TYPES:
                    raise InfeasibleError(
                        f"{_where(name, s)}: unknown sharding {s.sharding!r} "
                        f"(known: {', '.join(SHARDING_TYPES)})"
                    )
                if s.order not in ROW_ORDERS:
                    raise InfeasibleError(
                        f"{_where(name, s)}: row order must be one of {ROW_ORDERS}, got {s.order!r}"
                    )
                if not (0 <= s.row_start < s.row_end <= table.rows and 0 <= s.col_start < s.col_end <= dim):
                    raise InfeasibleError(
                        f"{_where(name, s)}: outside the table ({table.rows} rows x {dim} columns)"
                    )
                if not s.ranks or not _ranks_within(s.ranks, self.world_size):
                    raise InfeasibleError(
                        f"{_where(name, s)}: ranks {s.ranks} outside 0..{self.world_size - 1}"
                    )
                if s.sharding == "data_parallel" and tuple(sorted(s.ranks)) != everyone:
                    raise InfeasibleError(f"{_where(name, s)}: a data-parallel shard is on every rank")
                if (
                    s.sharding == "data_parallel"
                    and dense_gradient(s, self.world_size)
                    and s.tier_name != "hbm"
                ):
                    # Its update sweeps every row after the all-reduce: recsim runs that in HBM.
                    raise InfeasibleError(
                        f"{_where(name, s)}: a data-parallel shard over several ranks lives in HBM "
                        f"(tier 'hbm'), got {s.tier!r}"
                    )
                if s.sharding == "distributed":
                    if len(set(s.ranks)) != len(s.ranks) or s.rows < len(s.ranks):
                        raise InfeasibleError(
                            f"{_where(name, s)}: a distributed shard needs distinct ranks and a row for each"
                        )
                elif s.sharding != "data_parallel" and len(s.ranks) != 1:
                    raise InfeasibleError(f"{_where(name, s)}: a {s.sharding} shard is on exactly one rank")
                if s.dtype is not None and s.dtype not in EMBEDDING_DTYPES:
                    raise InfeasibleError(f"{_where(name, s)}: unknown embedding dtype {s.dtype!r}")
                # ``s.rows * s.dim``, without the two properties' calls (the same ints, in turn).
                area += (s.row_end - s.row_start) * (s.col_end - s.col_start)
            overlap = not alone and _overlap(shards)
            if area != table.rows * dim or overlap:
                raise InfeasibleError(
                    f"plan {self.strategy!r}: shards of {name!r} cover {area} of {table.rows * dim} cells"
                    + (" and overlap" if overlap else "")
                )

    def node_violation(self, ranks_per_node: int) -> str | None:
        """Why a shard group that lives inside one node does not, on nodes of ``ranks_per_node``
        ranks (rank ``r`` on node ``r // ranks_per_node``, as the topology numbers them), or None:
        a table's ``table_row_wise`` shards (rows over the ranks of one node) and each column block of
        a ``grid`` table (its rows split inside its node). The plan alone does not know the nodes: a
        plan file is checked against the system it runs on (``api.load_plan_file``), so a plan saved
        on one node shape (a ``hier_auto`` plan of 8-GPU nodes) is refused on another rather than
        reduced over the network where it was made to reduce over NVLink."""
        if ranks_per_node < 1:
            return None
        groups: dict[tuple[str, str, tuple[int, int]], set[int]] = defaultdict(set)
        for s in self.shards:
            if s.sharding in ("table_row_wise", "grid"):
                columns = s.columns if s.sharding == "grid" else (0, 0)
                groups[(s.table, s.sharding, columns)].update(s.ranks)
        for (table, sharding, columns), ranks in groups.items():
            nodes = sorted({r // ranks_per_node for r in ranks})
            if len(nodes) > 1:
                block = f" (columns {columns[0]}:{columns[1]})" if sharding == "grid" else ""
                shown = ", ".join(str(r) for r in sorted(ranks))
                return (
                    f"table {table!r}{block}: {sharding} splits rows over the ranks of one node, but its "
                    f"shards are on ranks {shown}, of nodes {', '.join(map(str, nodes))} "
                    f"({ranks_per_node} ranks a node)"
                )
        return None


def _where(name: str, s: Shard) -> str:
    """A shard as ``Plan.validate``'s messages name it (made only for a message)."""
    return f"shard {name}[{s.row_start}:{s.row_end}, {s.col_start}:{s.col_end}]"


def _overlap(shards: list[Shard]) -> bool:
    """Whether two shards of one table share a cell.

    Every scheme cuts columns first, then rows, so column ranges are equal or disjoint, and the
    check is: inside one column range the row ranges do not intersect. ``n log n``: row-wise over a
    thousand ranks stays cheap. Two distinct column ranges that intersect (a hand-edited plan) share
    a cell only where their row ranges intersect too (a tester's find: ``[0, 64]`` beside
    ``[0, 128]`` on other rows was called an overlap). A table of one shard (every table of a
    table-wise plan) has no two to compare.
    """
    if len(shards) < 2:
        return False
    by_cols: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for s in shards:
        by_cols[s.columns].append((s.row_start, s.row_end))
    for rows in by_cols.values():
        rows.sort()
        if any(b[0] < a[1] for a, b in itertools.pairwise(rows)):
            return True
    cols = sorted(by_cols)
    for i, a in enumerate(cols):
        for b in cols[i + 1 :]:
            if b[0] >= a[1]:
                break  # sorted by start: no later range reaches into ``a``
            if _rows_meet(by_cols[a], by_cols[b]):
                return True
    return False


def _rows_meet(first: list[tuple[int, int]], second: list[tuple[int, int]]) -> bool:
    """Whether a row range of ``first`` intersects one of ``second`` (both sorted, each without
    overlaps of its own): a merge of the two lists."""
    i = j = 0
    while i < len(first) and j < len(second):
        (a0, a1), (b0, b1) = first[i], second[j]
        if a0 < b1 and b0 < a1:
            return True
        if a1 <= b1:
            i += 1
        else:
            j += 1
    return False


# ---------------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class Storage:
    """Bytes a shard (or a rank, or a plan) keeps per memory class."""

    hbm_bytes: float = 0.0
    ddr_bytes: float = 0.0
    ssd_bytes: float = 0.0

    def __add__(self, other: Storage) -> Storage:
        return Storage(
            self.hbm_bytes + other.hbm_bytes,
            self.ddr_bytes + other.ddr_bytes,
            self.ssd_bytes + other.ssd_bytes,
        )

    def scaled(self, factor: float) -> Storage:
        return Storage(self.hbm_bytes * factor, self.ddr_bytes * factor, self.ssd_bytes * factor)

    def as_dict(self) -> dict[str, float]:
        return {"hbm_bytes": self.hbm_bytes, "ddr_bytes": self.ddr_bytes, "ssd_bytes": self.ssd_bytes}


@dataclass(frozen=True)
class Perf:
    """Estimated seconds of a shard (or a rank) per training step, by phase."""

    fwd_compute_s: float = 0.0
    fwd_comm_s: float = 0.0
    bwd_compute_s: float = 0.0
    bwd_comm_s: float = 0.0

    @property
    def total_s(self) -> float:
        return math.fsum((self.fwd_compute_s, self.fwd_comm_s, self.bwd_compute_s, self.bwd_comm_s))

    @property
    def compute_s(self) -> float:
        return self.fwd_compute_s + self.bwd_compute_s

    @property
    def comm_s(self) -> float:
        return self.fwd_comm_s + self.bwd_comm_s

    def __add__(self, other: Perf) -> Perf:
        return Perf(
            self.fwd_compute_s + other.fwd_compute_s,
            self.fwd_comm_s + other.fwd_comm_s,
            self.bwd_compute_s + other.bwd_compute_s,
            self.bwd_comm_s + other.bwd_comm_s,
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "fwd_compute_s": self.fwd_compute_s,
            "fwd_comm_s": self.fwd_comm_s,
            "bwd_compute_s": self.bwd_compute_s,
            "bwd_comm_s": self.bwd_comm_s,
            "total_s": self.total_s,
        }


@dataclass(frozen=True)
class ShardingOption:
    """One way to shard one table: scheme, tier, dtype, how many blocks, and the hot-row split.

    ``shards`` is the number of blocks (ranks for row splits, column blocks for column splits);
    ``hot_rows`` > 0 puts the table's hottest rows (popularity order) either on every rank
    (``hot_placement == "replicate"``, FlexShard) or in HBM next to the cold rows on ``tier``
    (``hot_placement == "hbm"``, RecShard). ``perf`` and ``storage`` are the whole option's
    estimates (all its blocks); ``block_perf``/``block_storage`` those of one block.
    """

    table: str
    sharding: str
    tier: str
    dtype: str
    shards: int = 1
    hot_rows: int = 0
    hot_placement: str = ""
    perf: Perf = field(default_factory=Perf)
    storage: Storage = field(default_factory=Storage)
    block_perf: Perf = field(default_factory=Perf)
    block_storage: Storage = field(default_factory=Storage)

    def describe(self) -> str:
        hot = f", {self.hot_rows} hot rows {self.hot_placement}" if self.hot_rows else ""
        return f"{self.table}: {self.sharding} x{self.shards} on {self.tier} ({self.dtype}{hot})"
