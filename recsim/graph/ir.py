"""The execution graph: what every rank does in one step, and what waits for what.

One ``ExecutionGraph`` serves both the generated case (workload + plan + system) and the imported one
(PyTorch execution traces, Kineto, Chakra). It is a DAG over all ranks: each ``Node`` belongs to a
rank and a stream and lists the ids it depends on; what it does is its ``op``, one of:

* ``Compute``: a kernel or CPU op with FLOPs and bytes read/written (GEMM, elementwise, ...);
* ``Embedding``: a table-shard lookup pass (forward gather-reduce, backward with its fused update
  or with atomic adds, a replicated table's dense ``update``);
* ``Collective``: all_to_all, all_reduce, reduce_scatter, all_gather, ... over a group of ranks; the
  same ``key`` on every rank of the group names one collective; uneven all-to-all carries per-peer
  ``send_bytes``/``recv_bytes`` (indexed like ``group``);
* ``Transfer``: a copy between devices or memory tiers;
* ``Host``: CPU-side work (data loading, launches, Python).

Times are SI seconds; a node may carry a recorded ``duration_s`` (and ``start_s``) from a trace.
Nodes are plain frozen dataclasses with slots: graphs of 10^5-10^6 nodes must build and validate in
seconds, which pydantic per node would not allow. ``validate()`` checks the structural invariants
(unique ids, every dependency exists, acyclic, collectives consistent across their group) and
names the offending node.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, TypeGuard, overload

from recsim.errors import TraceError
from recsim.graph.dep_rows import DenseChainRegion, fill_chain_deps

SCHEMA = "recsim.execution_graph"
# 1.1: ``Embedding.bags`` and ``Embedding.output_dtype`` (a 1.0 graph's lookups pool one bag per
# sample of their batch, at the table's dtype). 1.2: ``Embedding.atomic`` and the ``update`` pass.
# 1.3: ``Embedding.cache_share`` (a 1.2 graph's SSD-tier lookups have their node's whole cache).
# 1.4: ``Embedding.inference`` (a 1.3 graph's int8 rows are priced in the training TBE's layout).
# 1.5: ``Compute.kernels`` (a 1.4 graph's compute nodes are one kernel each).
# 1.6: ``Compute.accumulates`` (a 1.5 graph's GEMMs overwrite their output).
SCHEMA_VERSION = "1.6"


class Stream(StrEnum):
    """The class of in-order queue a node runs on (one of each per rank, unless ``lane`` splits it)."""

    COMPUTE = "compute"
    COMM = "comm"
    COPY = "copy"
    HOST = "host"


class CollectiveOp(StrEnum):
    ALL_TO_ALL = "all_to_all"
    ALL_REDUCE = "all_reduce"
    REDUCE_SCATTER = "reduce_scatter"
    ALL_GATHER = "all_gather"
    BROADCAST = "broadcast"
    REDUCE = "reduce"
    SEND = "send"
    RECV = "recv"
    BARRIER = "barrier"


@dataclass(frozen=True, slots=True)
class Compute:
    """A compute kernel or CPU op. ``shapes`` are the input shapes as recorded or built."""

    op: str
    flops: float = 0.0
    bytes_read: float = 0.0
    bytes_written: float = 0.0
    dtype: str = "fp32"
    shapes: tuple[tuple[int, ...], ...] = ()
    category: str = "other"  # gemm, elementwise, interaction, embedding, optimizer, memory, other
    # Kernels the op launches, where one node stands for several that a framework runs back to back
    # (PyTorch's unfused element-wise passes): each pays its fixed GPU-side floor and its launch gap
    # (``recsim.cost.compute.kernel_time_s``). A GEMM node's come from its shapes instead.
    kernels: int = 1
    # A GEMM node whose kernels add their product into the output they write (BLAS ``beta = 1``:
    # ``D = A B + C``), so each also reads its ``C`` operand, the output's shape
    # (``recsim.cost.compute.GemmShape.reads_c``); False: they overwrite it (``beta = 0``).
    accumulates: bool = False

    kind = "compute"


@dataclass(frozen=True, slots=True)
class Embedding:
    """A lookup pass over one table shard for a batch.

    ``rows`` is the shard's row count, ``lookups`` the indices processed in this pass
    (batch x pooling for the shard), ``unique_rows`` the distinct rows among them when known
    (from the access distribution), ``pass_`` forward | backward | sort (a backward's index
    sort/dedup run ahead by the input pipeline) | update (a replicated table's optimizer step
    over all its rows, after its dense gradient has been all-reduced: ``rows`` then counts the
    table's elements in rows of ``dim``, and ``output_dtype`` is the reduced gradient's dtype).
    A backward with ``optimizer`` ``none`` only accumulates the gradient. ``presorted``: the
    backward finds its indices sorted and deduplicated already (HugeCTR's precomputed indices), so
    it runs only its update.
    ``bags``: the (sample, table) bags the pass pools into, when not ``batch``, counted in pooled
    vectors of ``dim``: a table-batched (TBE) op over several tables pools one bag per sample and
    table (FBGEMM's ``B x T``; over tables of unequal dims, ``sum(bags x dim) / dim``, so its pooled
    bytes are the tables' own), and a part of a table that receives only some of its lookups
    (HugeCTR's infrequent rows, hot rows) pools only the bags that drew one of its rows. None:
    ``batch`` (one table, every sample).
    ``output_dtype``: the dtype of the pooled vectors the forward writes and of the gradients the
    backward reads, when the framework's lookups write them narrower than the table (HugeCTR's
    embeddings output ``emtype``, fp16 under mixed precision). None: the table's ``dtype``.
    ``atomic``: the backward adds each lookup's gradient into its row with atomics, unsorted and
    undeduplicated (HugeCTR's hybrid embedding: ``sgd_atomic_update`` of the infrequent rows, the
    frequent rows' ``frequent_local_reduce`` into their gradient buffer), so it has no index sort.
    ``cache_share``: the share of its node's cache of an SSD tier (the host page cache of ``ssd``,
    which the planner books once per node; the drives' DRAM of ``smartssd``), or of its RankCaches
    for ``nmp``, the op's rows get: its shard's bytes over those of all the node's shards on that
    tier, on all its ranks (the graph builder sets it from the plan). None: the whole cache (one
    shard).
    ``inference``: the lookup of an inference batch, whose table FBGEMM holds in its inference TBE
    (``IntNBitTableBatchedEmbeddingBagsCodegen``: an int8 row's scale and bias are two fp16, 4 B),
    not its training TBE (two fp32, 8 B): ``recsim.cost.embedding.base.quant_row_overhead_bytes``.
    """

    table: str
    pass_: str
    rows: int
    dim: int
    dtype: str
    batch: int
    lookups: float
    unique_rows: float | None = None
    tier: str = "hbm"
    optimizer: str = "sgd"
    presorted: bool = False
    bags: float | None = None
    output_dtype: str | None = None
    atomic: bool = False
    cache_share: float | None = None
    inference: bool = False

    kind = "embedding"


def sorts_ahead(pass_: str, tier: str, optimizer: str, atomic: bool = False) -> bool:
    """Whether a lookup of a framework that presorts indices (``Runtime.presorts_indices``) finds
    them sorted: an HBM backward whose update sorts them (PyTorch's unfused ``sparse_sgd``
    materialises a COO gradient instead, and an ``atomic`` backward needs no order: no sort to move)."""
    return pass_ == "backward" and tier == "hbm" and optimizer != "sparse_sgd" and not atomic


@dataclass(frozen=True, slots=True)
class Collective:
    """One rank's part of a collective. ``bytes`` is this rank's input size.

    For all_to_all, ``send_bytes[i]``/``recv_bytes[i]`` are the bytes to/from ``group[i]``; the
    matrix must agree across the group (``validate``).
    """

    op: CollectiveOp
    key: str
    group: tuple[int, ...]
    bytes: float
    dtype: str = "fp32"
    send_bytes: tuple[float, ...] | None = None
    recv_bytes: tuple[float, ...] | None = None
    algorithm: str | None = None

    kind = "collective"


@dataclass(frozen=True, slots=True)
class Transfer:
    """A copy of ``bytes`` from ``src`` to ``dst`` (device or tier names: hbm, host, ssd, peer:3 ...)."""

    src: str
    dst: str
    bytes: float

    kind = "transfer"


@dataclass(frozen=True, slots=True)
class Host:
    """CPU work: ``op`` names it (data_loading, dispatch:..., sync:..., ...).

    Its time is ``bytes`` over the host memory bandwidth share plus ``cpu_s`` of fixed CPU time
    (framework dispatch measured on real traces, ``recsim.graph.runtime``).
    """

    op: str
    bytes: float = 0.0
    cpu_s: float = 0.0

    kind = "host"


Op = Compute | Embedding | Collective | Transfer | Host
OP_TYPES: dict[str, type[Op]] = {cls.kind: cls for cls in (Compute, Embedding, Collective, Transfer, Host)}


@dataclass(frozen=True, slots=True)
class Node:
    """One unit of work on one rank."""

    id: int
    rank: int
    name: str
    stream: Stream
    op: Op
    deps: tuple[int, ...] = ()
    lane: int = 0
    duration_s: float | None = None
    start_s: float | None = None
    phase: str = ""

    @property
    def kind(self) -> str:
        return self.op.kind


#: Node's fields in declaration order (``make_node`` and ``recsim.graph.steps`` set them one by one).
NODE_FIELDS = ("id", "rank", "name", "stream", "op", "deps", "lane", "duration_s", "start_s", "phase")
if tuple(f.name for f in fields(Node)) != NODE_FIELDS:  # pragma: no cover - keep ``make_node`` in step
    raise ImportError("recsim.graph.ir.make_node sets Node's fields one by one: update NODE_FIELDS")
(
    _SET_ID,
    _SET_RANK,
    _SET_NAME,
    _SET_STREAM,
    _SET_OP,
    _SET_DEPS,
    _SET_LANE,
    _SET_DURATION,
    _SET_START,
    _SET_PHASE,
) = (vars(Node)[name].__set__ for name in NODE_FIELDS)
_new = object.__new__


#: The tiers whose shards on a rank FBGEMM runs as one table-batched module (the graph builder's
#: ``embedding_pass``): HBM, and host memory behind UVM, plain or with an HBM cache (TorchRec's
#: ``FUSED``, ``FUSED_UVM`` and ``FUSED_UVM_CACHING`` compute kernels). The CPUs' and SSDs' are not.
FUSED_TIERS: tuple[str, ...] = ("hbm", "uvm", "uvm_caching")


def fused_tier(tier: str) -> bool:
    """Whether a shard in ``tier`` (``uvm_caching:0.1`` names its base) joins its rank's fused
    lookup of that tier."""
    return tier.split(":", 1)[0] in FUSED_TIERS


def fused_group(tier: str, dtype: str, dim: int) -> tuple[str, str, int]:
    """Which of its rank's fused lookups a shard of a fused tier joins (with its replication): one
    per tier and dtype, and in a UVM tier per row width too (0 for HBM, whose lookups fuse every
    width): recsim costs a lookup's PCIe reads at one row width (the graph builder's
    ``embedding_pass``; the planner's estimate pays each such lookup's fixed part once)."""
    return (tier, dtype, 0 if tier == "hbm" else dim)


def is_uneven_all_to_all(op: object) -> TypeGuard[Collective]:
    """An all-to-all part with per-member splits (``send_bytes``): its collective's time depends on
    every member's splits (``recsim.cost.model.CostModel.collective_members_s``)."""
    return type(op) is Collective and op.op is CollectiveOp.ALL_TO_ALL and op.send_bytes is not None


def make_node(
    id: int,
    rank: int,
    name: str,
    stream: Stream,
    op: Op,
    deps: tuple[int, ...],
    lane: int,
    phase: str,
) -> Node:
    """``Node(id, rank, name, stream, op, deps, lane, None, None, phase)``, made faster.

    The graph builder makes 10^4 nodes per evaluation. A frozen dataclass's ``__init__`` sets each
    field through ``object.__setattr__``, which looks the attribute up anew every time; setting the
    slots through their descriptors directly costs about two thirds as much. Every field is set,
    in the class's order (``NODE_FIELDS``, checked against the class at import), so the node is
    equal to, and indistinguishable from, one made by ``Node(...)``.
    """
    node = _new(Node)
    _SET_ID(node, id)
    _SET_RANK(node, rank)
    _SET_NAME(node, name)
    _SET_STREAM(node, stream)
    _SET_OP(node, op)
    _SET_DEPS(node, deps)
    _SET_LANE(node, lane)
    _SET_DURATION(node, None)
    _SET_START(node, None)
    _SET_PHASE(node, phase)
    return node


@dataclass
class ExecutionGraph:
    """Nodes of every rank of one step (or a trace window) and what they depend on."""

    ranks: int
    nodes: list[Node] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_id: dict[int, Node] | None = None

    # By content, whatever the class: a lazy graph (``ColumnarGraph``, ``ChainedGraph``) equals the
    # plain graph of the same nodes (the dataclass's own ``__eq__`` would require the same class).
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutionGraph):
            return NotImplemented
        return (self.ranks, self.nodes, self.metadata) == (other.ranks, other.nodes, other.metadata)

    __hash__ = None  # type: ignore[assignment]

    # -- access --------------------------------------------------------------------------------

    @property
    def by_id(self) -> dict[int, Node]:
        if self._by_id is None or len(self._by_id) != len(self.nodes):
            self._by_id = {n.id: n for n in self.nodes}
        return self._by_id

    def node(self, node_id: int) -> Node:
        return self.by_id[node_id]

    def node_at(self, position: int) -> Node:
        """The node at ``position`` of ``nodes`` (a ``ColumnarGraph`` or ``ChainedGraph`` whose
        nodes are not made makes it on its own)."""
        return self.nodes[position]

    @property
    def made(self) -> bool:
        """Whether ``nodes`` is a list already (a lazy graph's are made when first read)."""
        return True

    def rank_nodes(self, rank: int) -> list[Node]:
        return [n for n in self.nodes if n.rank == rank]

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        self._by_id = None
        return node

    def replaced(self, nodes: Iterable[Node]) -> ExecutionGraph:
        """A copy with ``nodes`` (same ids) swapped in."""
        swap = {n.id: n for n in nodes}
        return ExecutionGraph(self.ranks, [swap.get(n.id, n) for n in self.nodes], dict(self.metadata))

    # -- structure -----------------------------------------------------------------------------

    def topological_order(self) -> list[Node]:
        """Kahn's order (stable: ready nodes in insertion order); ``TraceError`` names a cycle."""
        by_id = self.by_id
        indegree = {n.id: 0 for n in self.nodes}
        children: dict[int, list[int]] = defaultdict(list)
        for n in self.nodes:
            for d in n.deps:
                indegree[n.id] += 1
                children[d].append(n.id)
        ready = deque(n.id for n in self.nodes if indegree[n.id] == 0)
        order: list[Node] = []
        while ready:
            nid = ready.popleft()
            order.append(by_id[nid])
            for c in children[nid]:
                indegree[c] -= 1
                if indegree[c] == 0:
                    ready.append(c)
        if len(order) != len(self.nodes):
            raise TraceError(f"dependency cycle: {self._describe_cycle(indegree)}")
        return order

    def _describe_cycle(self, indegree: dict[int, int]) -> str:
        by_id = self.by_id
        stuck = {nid for nid, deg in indegree.items() if deg > 0}
        start = min(stuck)
        seen: dict[int, int] = {}
        path: list[int] = []
        nid = start
        while nid not in seen:
            seen[nid] = len(path)
            path.append(nid)
            nid = next(d for d in by_id[nid].deps if d in stuck)
        cycle = [*path[seen[nid] :], nid]
        return " -> ".join(f"{by_id[i].name}#{i}" for i in reversed(cycle))

    def validate(self) -> None:
        """Check the invariants; ``TraceError`` naming the node on the first violation."""
        ids: set[int] = set()
        for n in self.nodes:
            if n.id in ids:
                raise TraceError(f"duplicate node id {n.id} ({n.name})")
            ids.add(n.id)
            if not 0 <= n.rank < self.ranks:
                raise TraceError(f"node {n.name}#{n.id}: rank {n.rank} outside 0..{self.ranks - 1}")
            if n.duration_s is not None and not (math.isfinite(n.duration_s) and n.duration_s >= 0):
                raise TraceError(f"node {n.name}#{n.id}: bad recorded duration {n.duration_s!r}")
            if n.start_s is not None and not math.isfinite(n.start_s):
                raise TraceError(f"node {n.name}#{n.id}: bad recorded start {n.start_s!r}")
        for n in self.nodes:
            for d in n.deps:
                if d not in ids:
                    raise TraceError(f"node {n.name}#{n.id} depends on missing node {d}")
        self.topological_order()
        self._validate_collectives()

    def collectives(self) -> dict[str, list[Node]]:
        """Collective nodes grouped by key."""
        out: dict[str, list[Node]] = defaultdict(list)
        for n in self.nodes:
            if isinstance(n.op, Collective):
                out[n.op.key].append(n)
        return dict(out)

    def _validate_collectives(self) -> None:
        for key, members in self.collectives().items():
            first = members[0].op
            assert isinstance(first, Collective)
            ranks = sorted(m.rank for m in members)
            if len(set(ranks)) != len(ranks):
                raise TraceError(f"collective {key!r}: rank {_first_dup(ranks)} appears twice")
            group = tuple(sorted(first.group))
            for m in members:
                op = m.op
                assert isinstance(op, Collective)
                if op.op != first.op or tuple(sorted(op.group)) != group:
                    raise TraceError(
                        f"collective {key!r}: rank {m.rank} has {op.op} over {op.group}, rank "
                        f"{members[0].rank} has {first.op} over {first.group}"
                    )
                if m.rank not in group:
                    raise TraceError(f"collective {key!r}: rank {m.rank} is not in its group {first.group}")
            if ranks != list(group) and self.metadata.get("partial_collectives") is not True:
                missing = sorted(set(group) - set(ranks))
                raise TraceError(f"collective {key!r}: ranks {missing} of group {first.group} are missing")
            if first.op is CollectiveOp.ALL_TO_ALL:
                _check_all_to_all(key, members)


def _first_dup(values: Sequence[int]) -> int:
    seen: set[int] = set()
    for v in values:
        if v in seen:
            return v
        seen.add(v)
    raise ValueError("no duplicate")


def _check_all_to_all(key: str, members: Sequence[Node]) -> None:
    ops = {m.rank: m.op for m in members}
    for rank, op in ops.items():
        assert isinstance(op, Collective)
        if op.send_bytes is None or op.recv_bytes is None:
            continue
        if len(op.send_bytes) != len(op.group) or len(op.recv_bytes) != len(op.group):
            raise TraceError(f"all_to_all {key!r}: rank {rank} splits do not match its group size")
        for j, peer in enumerate(op.group):
            other = ops.get(peer)
            if not isinstance(other, Collective) or other.recv_bytes is None:
                continue
            i = other.group.index(rank)
            if not math.isclose(op.send_bytes[j], other.recv_bytes[i], rel_tol=1e-9, abs_tol=0.5):
                raise TraceError(
                    f"all_to_all {key!r}: rank {rank} sends {op.send_bytes[j]:g} B to rank {peer}, "
                    f"which expects {other.recv_bytes[i]:g} B"
                )


def with_deps(node: Node, deps: Iterable[int]) -> Node:
    """``node`` with ``deps`` (deduplicated, order kept)."""
    return replace(node, deps=tuple(dict.fromkeys(deps)))


@dataclass(eq=False)
class NodeColumns:
    """The fields of a graph's nodes as one list per field (position ``i`` is node ``i``), for
    nodes with no recorded duration or start (a built graph's): what ``ColumnarGraph`` keeps."""

    ids: list[int] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    deps: list[tuple[int, ...]] = field(default_factory=list)
    lanes: list[int] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    # Every entry of ``deps`` is a tuple without repeats: the builder's columns, which
    # deduplicates a node's dependencies as it adds the node; the chained graph's templates then
    # take them as they are (``recsim.graph.steps``) rather than checking each node's again.
    unique_deps: bool = False
    # ``ids[i] == i`` for every node: the builder's columns, which number the nodes as it adds them;
    # the chained graph's templates and index then take each id as its position (``recsim.graph.steps``)
    # rather than finding the ids' extent or comparing them with a range.
    positional_ids: bool = False
    # The ranks' dense chains, laid down from one template (the builder's, with ``positional_ids``):
    # the chained graph's templates read the dependencies of these nodes in arrays from it
    # (``recsim.graph.dep_rows``). None: read from ``deps`` node by node.
    chain_region: DenseChainRegion | None = None

    def leave_chain_deps(self) -> list[tuple[int, ...] | None]:
        """Hand the builder the dependency column with the chains' entries left out (None each,
        from ``chain_region``), to be appended to as ``deps``: ``deps`` itself, when first read,
        is that list with the chains' tuples set in (``recsim.graph.dep_rows.fill_chain_deps``);
        ``pending_deps`` reads it as it is, for the readers that take the chains from the region
        (``recsim.graph.steps``: the chained graph's templates and index)."""
        pending: list[tuple[int, ...] | None] = self.__dict__.pop("deps")
        self.__dict__["_pending_deps"] = pending
        return pending

    @property
    def pending_deps(self) -> Sequence[tuple[int, ...] | None]:
        """``deps`` where it is made; else the column with the chains' entries None (their
        dependencies are ``chain_region``'s): what a reader that reads no chain node's entry
        takes, without making a tuple per chain node."""
        pending = self.__dict__.get("_pending_deps")
        return self.deps if pending is None else pending

    def __len__(self) -> int:
        return len(self.ids)

    def node(self, i: int) -> Node:
        """Node ``i``, made (equal to the one ``nodes`` makes)."""
        return make_node(
            self.ids[i],
            self.ranks[i],
            self.names[i],
            self.streams[i],
            self.ops[i],
            self.deps[i],
            self.lanes[i],
            self.phases[i],
        )

    def nodes(self) -> list[Node]:
        """Every node, in order."""
        fields = (self.ids, self.ranks, self.names, self.streams, self.ops, self.deps, self.lanes)
        return list(map(make_node, *fields, self.phases))


class _FilledDeps:
    """``NodeColumns.deps`` while the builder has left the chains' entries out
    (``NodeColumns.leave_chain_deps``): the column made on first read (the chains' tuples set in)
    and kept in the instance, where later reads find it without coming here.

    A non-data descriptor rather than a ``__getattr__`` on the class: a class with its own
    ``__getattr__`` takes every attribute read of its instances through the slow generic lookup
    (CPython 3.11 does not specialise ``LOAD_ATTR`` for it, ``Python/specialize.c``: "overridden"),
    and the builder reads ``columns.ids``, ``columns.ops`` ... once or more per node it adds
    (about 10^4 reads an evaluation at 128 GPUs, about 1.5 M machine instructions of 39 M,
    callgrind)."""

    def __get__(self, columns: NodeColumns | None, owner: type | None = None) -> Any:
        if columns is None:
            return self
        # Only reached while ``deps`` is not in the instance's dict: the chains' entries left out.
        pending = columns.__dict__.get("_pending_deps")
        if pending is None:
            raise AttributeError(f"{type(columns).__name__!r} object has no attribute 'deps'")
        if columns.chain_region is not None:
            fill_chain_deps(pending, columns.chain_region)
        del columns.__dict__["_pending_deps"]
        columns.__dict__["deps"] = pending
        return pending


# Set after the dataclass is made: the dataclass takes the field's default off the class, and its
# ``__init__`` stores the given column in the instance, which a non-data descriptor leaves alone.
NodeColumns.deps = _FilledDeps()  # type: ignore[assignment]


class ColumnarGraph(ExecutionGraph):
    """An ``ExecutionGraph`` held as ``NodeColumns`` until its ``nodes`` are read.

    The builder fills the columns (``recsim.graph.build``): an analytic evaluation reads the step
    graph's structure and ops, never its ``Node`` objects (``recsim.graph.steps``, the index, the
    cost model and the metrics read ``columns``), and making and freeing 10^3 nodes per
    evaluation was a sixth of its time. Reading ``nodes`` makes them, equal to the nodes the
    builder made before, and from then on the graph is an ordinary one: ``columns`` is None, as a
    caller may change the node list.
    """

    _nodes: list[Node] | None
    _columns: NodeColumns | None

    @classmethod
    def of_columns(
        cls, ranks: int, columns: NodeColumns, metadata: dict[str, Any] | None = None
    ) -> ColumnarGraph:
        """The graph of ``columns`` (kept, not copied: filled by the caller meanwhile)."""
        graph = cls(ranks, None, {} if metadata is None else metadata)
        graph._columns = columns
        return graph

    def __init__(
        self, ranks: int, nodes: list[Node] | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        # Also what ``dataclasses.replace`` calls: given nodes, the graph is an ordinary one.
        self._columns = None
        super().__init__(ranks, nodes, {} if metadata is None else metadata)  # type: ignore[arg-type]

    @property  # type: ignore[override]
    def nodes(self) -> list[Node]:
        if self._nodes is None:
            columns = self._columns
            self._nodes = [] if columns is None else columns.nodes()
            self._columns = None
        return self._nodes

    @nodes.setter
    def nodes(self, value: list[Node] | None) -> None:
        self._nodes = value
        if value is not None:
            self._columns = None

    @property
    def made(self) -> bool:
        return self._nodes is not None

    @property
    def columns(self) -> NodeColumns | None:
        """The node columns while the nodes are not made (None after)."""
        return self._columns if self._nodes is None else None

    def node_at(self, position: int) -> Node:
        columns = self.columns
        if columns is None:
            return self.nodes[position]
        if position < 0:
            position += len(columns)
        if not 0 <= position < len(columns):
            raise IndexError(f"node position {position} out of range")
        return columns.node(position)

    def __len__(self) -> int:
        columns = self.columns
        return len(columns) if columns is not None else len(self.nodes)


def node_columns(graph: ExecutionGraph) -> NodeColumns | None:
    """``graph``'s node columns, where it is a ``ColumnarGraph`` whose nodes are not made."""
    return graph.columns if isinstance(graph, ColumnarGraph) else None


class GraphNodes(Sequence[Node]):
    """A graph's nodes by position without making them all: while the graph's nodes are not made
    (a ``ColumnarGraph``'s, a ``ChainedGraph``'s), an item asked for is ``graph.node_at``, made on
    its own and kept, so asking twice gives the same node; a slice, a walk over all of them, or an
    item once they are made reads ``graph.nodes`` (and so makes them)."""

    def __init__(self, graph: ExecutionGraph) -> None:
        self._graph = graph
        self._made: dict[int, Node] = {}

    def __len__(self) -> int:
        return len(self._graph)

    @overload
    def __getitem__(self, position: int) -> Node: ...

    @overload
    def __getitem__(self, position: slice) -> Sequence[Node]: ...

    def __getitem__(self, position: int | slice) -> Node | Sequence[Node]:
        if isinstance(position, slice) or self._graph.made:
            return self._graph.nodes[position]
        node = self._made.get(position)
        if node is None:
            node = self._made[position] = self._graph.node_at(position)
        return node

    def __iter__(self) -> Iterator[Node]:
        return iter(self._graph.nodes)

    def __eq__(self, other: object) -> bool:
        # Equal to any sequence of the same nodes (the list it stands for), as that list is.
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]
