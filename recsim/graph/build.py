"""Build the execution graph of one DLRM training step (or one inference batch) from workload + plan.

The step is TorchRec's pipelined training step, per rank, with local batch ``b = B / world``:

1. **input pipeline** (for the *next* batch, so it overlaps this one): host data loading, the H2D
   copy of its dense features and indices, and the sparse input distribution (an all-to-all of
   indices and lengths to the ranks that own each table), or none where each rank's loader reads
   its own tables' features for the global batch (``Runtime.per_rank_feature_input``: NVIDIA DLE);
2. **embedding forward** per shard: a table-wise / column-wise shard gathers and pools for the
   global batch ``B`` of its table; a row-wise shard for the lookups that fall in its rows; a
   data-parallel (replicated) table for the local batch only;
3. **forward output distribution**: the all-to-all of pooled embeddings back to the ranks that own
   the samples (uneven per-peer bytes; it waits only for the lookups whose vectors it sends, the
   replicated ones feed the interaction directly), a reduce-scatter per row-wise table;
4. the dense **forward**: bottom MLP (independent of the embeddings, so it overlaps them), sequence
   layers (DIN attention / DIEN GRU), interaction, top MLP, task heads, loss;
5. **backward** in reverse: each fully connected layer is two GEMMs (input and weight gradient) in
   one node; the **dense gradient all-reduce** runs in buckets (``Runtime.gradient_bucket_caps``:
   torch DDP's 1 MiB first bucket, then 25 MiB; apex's 10M elements; filled in backward order) on
   the comm stream as soon as the last layer of a bucket has its gradient;
6. the **backward all-to-all** of embedding gradients (the forward matrix transposed; an
   all-gather per row-wise table), then per shard the **fused backward + optimizer update** (FBGEMM
   TBE style; atomic adds where the framework uses them, ``Runtime.atomic_embedding_update``);
   replicated (data-parallel) tables only accumulate their gradient, which is all-reduced whole;
7. after the all-reduces, each rank's replicated tables' **dense update** (every row stepped:
   ``planner.types.dense_gradient``), then the dense **optimizer** after the last bucket.

A framework that runs the next batch's routed lookups inside the step
(``Runtime.prefetches_routed_forward``: HugeCTR's inter-iteration overlap, hybrid-embedding plans)
moves steps 2 and 3 of its routed shards to the end of 6: the next batch's lookups after this
step's routed backward (their rows updated), their exchange beside this step's all-reduce and
updates. This step's interaction then waits for the previous step's exchange
(``metadata["carried_dependencies"]``, ``recsim.graph.steps``), and those nodes are listed in
``metadata["next_batch_nodes"]``: the step ends with its own batch's work
(``recsim.engine.timeline.step_window``).

FLOPs and bytes of every node come from shapes (``Workload.dense_layers`` per sample, times the
batch). Byte counts of GEMMs are the compulsory traffic: inputs + weights read, outputs written.
The graph carries no times: the cost layer turns ops into durations on a given system.

The analytic engine builds a step per evaluation (10^4 nodes at 128 ranks), so the builder is
written for speed where the work is per rank: every rank's dense chain (forward, loss, backward)
is worked out once (``_dense_chain``) and laid down at each rank's first id, nodes are made through
their slots (``ir.make_node``) and appended to the graph's list directly, and ops that are equal on
every rank (the input pipeline's copies, a reduce-scatter's or all-gather's members, the gradient
all-reduces, the optimizer step, a replicated TBE's sums) are made once and shared, which also lets
the cost model find them by identity. The graph is node for node the one the plain per-rank code
makes (kept as the reference in ``tests/unit/test_analytic_speed_paths.py``).

**Folded ranks** (``BuildOptions.fold_ranks``). Ranks that hold no shard of their own (only the
tables replicated on every rank, in HBM) run the same nodes with the same ops and the same
dependencies: the same dense chain, the same replicated lookups, the same parts in every
collective. At scale most ranks of a table-wise plan are such ranks (102 of 128 for DLRM-DCNv2's 26
tables). With the option, the graph holds the lowest of them only (``metadata["rank_classes"]``:
``{representative: all of them}``), and the all-to-all parts of the others are kept beside it
(``metadata["folded_parts"]``: ``{key: {rank: part}}``), so the cost model still reads the whole
traffic matrix. Its schedule is theirs, node for node; whoever sums over ranks (busy time, bytes,
power) counts the representative once per member (``recsim.engine.simulate``). A rank the caller
names in ``keep_ranks`` (a straggler, a slow NIC) is never folded.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import operator
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import is_
from typing import TYPE_CHECKING, Any, NamedTuple

from recsim.errors import InfeasibleError, batch_split_error
from recsim.graph.dep_rows import DenseChainRegion
from recsim.graph.ir import (
    Collective,
    CollectiveOp,
    ColumnarGraph,
    Compute,
    Embedding,
    ExecutionGraph,
    Host,
    NodeColumns,
    Op,
    Stream,
    Transfer,
    fused_group,
    fused_tier,
    is_uneven_all_to_all,
    sorts_ahead,
)
from recsim.graph.shard_ops import (
    LENGTH_BYTES,
    ExchangeEntry,
    InputEntry,
    ShardOps,
    exchange_sums,
    pooled_exchange,
)
from recsim.planner.types import Plan, Shard
from recsim.workload.spec import DTYPE_BYTES, INDEX_DTYPE_BYTES, Layer, Table, Workload, wire_bytes_per_value

if TYPE_CHECKING:
    from recsim.graph.runtime import Runtime

# The ids of the input all-to-all and the H2D copy are ``workload.training.index_dtype`` wide
# (``INDEX_DTYPE_BYTES``), except under DLE's loader (``per_rank_feature_input``), which makes
# every categorical feature ``.to(torch.long)`` on the host before the copy, whatever width the
# split binary dataset stores it in (DeepLearningExamples PyTorch/Recommendation/DLRM
# dlrm/data/datasets.py, ``_get_categorical_features``).
DLE_INDEX_BYTES = 8.0
DENSE_INPUT_BYTES = 4.0  # dense features arrive as fp32
# HugeCTR's raw binary sample (its RawAsync format, read whole by the AsyncReader): an int32 label,
# int32 dense features and a uint32 key per lookup (i64_input_key is off in the MLPerf configs).
RAW_RECORD_ITEM_BYTES = 4.0
# NVIDIA DeepLearningExamples' split binary dataset (dlrm/data/datasets.py): numerical features
# stored and copied as fp16 (cast to fp32 on the GPU by collate_split_tensors), labels read as bool
# and made fp32 on the host, categorical features made int64 on the host, one per sample and feature
# (a ``[batch, features]`` tensor: no lengths).
SPLIT_NUMERICAL_BYTES = 2.0
SPLIT_LABEL_BYTES = 4.0
DDP_BUCKET_BYTES = 25 * 2**20  # torch DistributedDataParallel bucket_cap_mb default (25 MiB)
# torch DDP's cap on each dtype's first bucket in gradient-ready order (dist._DEFAULT_FIRST_BUCKET_
# BYTES, kDefaultFirstBucketBytes = 1024 * 1024 in c10d/reducer.hpp): Reducer::rebuild_buckets
# assigns the buckets after the first iteration with the limits {first_bucket_bytes_cap_,
# bucket_bytes_cap_} (c10d/reducer.cpp), the first per dtype and device, unless
# DDP_SET_LAST_BUCKET_CAP=1 moves the small one to the end.
DDP_FIRST_BUCKET_BYTES = float(2**20)
# Optimizer traffic per parameter, in units of the parameter size: read param + grad + states,
# write param + states (SGD: p, g -> p; Adagrad: p, g, h -> p, h; Adam: p, g, m, v -> p, m, v).
OPTIMIZER_STATE: dict[str, int] = {"sgd": 0, "adagrad": 1, "rowwise_adagrad": 1, "adam": 2}
# FLOPs per parameter, counted from torch.optim's single-tensor steps (torch/optim/{sgd,adagrad,
# adam}.py, weight decay off; each add, multiply, divide or square root one, a scalar factor of 1
# none, as ``recsim.cost.embedding.base.optimizer_update_flops`` counts FBGEMM's): SGD
# ``param.add_(grad, alpha=-lr)`` (mul, add): 2; Adagrad ``state_sum.addcmul_(grad, grad, value=1)``
# (mul, add), ``std = state_sum.sqrt().add_(eps)`` (sqrt, add), ``param.addcdiv_(grad, std,
# value=-clr)`` (div, mul, add): 7; Adam ``exp_avg.lerp_(grad, 1 - beta1)`` (sub, mul, add),
# ``exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)`` (mul; mul, mul, add),
# ``denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)`` (sqrt, div, add),
# ``param.addcdiv_(exp_avg, denom, value=-step_size)`` (div, mul, add): 13 (the bias corrections are
# scalars). Row-wise Adagrad (no torch.optim step; FBGEMM's): 5 per element, its 5 per row left out
# (``optimizer_update_flops``). History: Adagrad was 5 and Adam 12 (an undercount: the comment's own
# list made Adagrad 7, as FBGEMM's count of the same rule does); the step is memory-bound (20 B an
# Adagrad parameter against 7 FLOPs, far below any GPU's or CPU's ridge point), so only energy moves.
# FLOPs a sample of the binary cross-entropy loss and its gradient, counted from HugeCTR's
# BinaryCrossEntropy_Kernel (HugeCTR/src/loss.cu @ 33d3577a; an exp or log counted one): exp;
# 1 - y, x (1 - y), 1 + e, log and the loss's two adds; e / (1 + e), the subtraction, the scaler
# and the division by the batch size: 11. History: 8 (unsourced, since ebb29ba) until a constants
# audit counted the kernel; the op is memory-bound, so the step is unchanged (validate JSON
# byte-identical; dgx-h100 DCNv2 samples/J -1e-7).
BCE_FLOPS_PER_SAMPLE = 11.0
OPTIMIZER_FLOPS_PER_PARAM: dict[str, float] = {
    "sgd": 2.0,
    "adagrad": 7.0,
    "rowwise_adagrad": 5.0,
    "adam": 13.0,
}


ByRank = dict[int, list[int]]  # node ids by rank
_FIRST, _SECOND, _THIRD = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)
_SHARDING = operator.attrgetter("sharding")
# A fused lookup's group key (rank, dtype, replicated, tier, width): its replication; its rank and
# replication (``_Builder.embedding_pass``).
_GROUP_REPLICATED, _GROUP_RANK_REPLICATED = operator.itemgetter(2), operator.itemgetter(0, 2)
_IS_NONE_OFFSET = (-1).__eq__  # a dense chain's dependency offset -1: none (``_DenseChain.deps``)
_interleave = itertools.chain.from_iterable  # of a zip: a[0], b[0], a[1], b[1], ...

# The streams as module constants: ``Stream.COMPUTE`` is a class attribute of an enum, and
# CPython 3.11's ``EnumType`` defines ``__getattr__``, which takes every attribute read of its
# classes through the slow hook (``slot_tp_getattr_hook``: 90-160 ns a read against 35 ns for a
# plain class's, timeit), while the builder named a stream for every node it added (some 300 reads
# an evaluation at 128 GPUs, about 0.27 M machine instructions, callgrind). The members themselves.
_HOST, _COPY, _COMM, _COMPUTE = Stream.HOST, Stream.COPY, Stream.COMM, Stream.COMPUTE


# Communication lanes (in-order queues of a rank's comm stream) of a framework that runs the input
# distribution, the embedding exchanges and the gradient all-reduce on streams of their own, so that
# one never queues behind another (HugeCTR 3.x's hybrid embedding: its IbComm all-to-all and one-shot
# all-reduce). A framework whose collectives share one process group, hence one NCCL stream (TorchRec,
# DLE: ``Runtime.shared_comm_queue``), puts them all on ``LANE_EMBEDDING``, in issue order. HugeCTR's
# embedding collection (the DCNv2 runs) issues its backward all-to-all and its all-reduces on streams
# of their own, but through the GPU's one NCCL communicator, which runs them one at a time in issue
# order: its all-reduces keep ``LANE_DENSE`` and wait for the backward exchange
# (``Runtime.all_reduces_after_exchange``), while its intra-node exchange parts, copy kernels rather
# than NCCL, keep theirs on ``LANE_EMBEDDING``.
LANE_EMBEDDING = 0
LANE_DENSE = 1
LANE_INPUT = 2

# Compute lanes beside the default one (0), for a framework that runs kernels on side streams of
# its own: the embedding backward's index calculation (``Runtime.backward_index_overlap``: HugeCTR's
# "dp" stream). Each is an in-order queue that runs beside lane 0; the engines do not share the SMs
# between them, as they do not between compute and the copy stream (DES shares their HBM:
# ``recsim.engine.hbm``), unless asked to (``SimulationOptions.sm_sharing``: the slowdowns of
# overlapping kernels of two streams measured on the A100 trace, ``recsim.cost.sm_sharing``, off
# by default as they worsened the validation).
LANE_INDEX = 1
# The weight-gradient GEMMs of DCNv2 cross layers (``Runtime.async_cross_wgrad``: HugeCTR's
# "cross_layer_wgrad" stream) and of MLP linear layers (``Runtime.async_mlp_wgrad``: its
# comp_overlap_stream). One in-order lane for both, though HugeCTR's are two streams: the builder
# never has a cross layer's and an MLP layer's ready at once (a cross stack's first dH GEMM waits
# for the top MLP's last wgrad, the bottom MLP's first dgrad for the stack's last).
LANE_WGRAD = 2


@dataclass(frozen=True)
class BuildOptions:
    """Knobs of the step graph; the defaults are TorchRec's and DDP's."""

    comm_dtype: str | None = None  # wire dtype of pooled embeddings; None: the plan's choice
    fuse_tables: bool = True  # one table-batched lookup (TBE) node per rank, dtype and pass
    # Gradient bucket caps (bytes): None, the framework's own (``Runtime.gradient_bucket_caps``).
    bucket_bytes: float | None = None
    first_bucket_bytes: float | None = None  # the first bucket of each dtype, in ready order
    include_input_pipeline: bool = True
    validate_plan: bool = True  # False when the caller has just validated it (simulate_training)
    # Ranks per node, for a framework and plan whose row splits over several nodes reduce inside
    # each node (``Runtime.row_split_node_size``); None: every split reduces over all its ranks.
    ranks_per_node: int | None = None
    # Build one rank of the ranks that hold no shard of their own (module docstring); the analytic
    # engine's option (the DES engine moves every rank's flows). ``keep_ranks``: never folded.
    fold_ranks: bool = False
    keep_ranks: frozenset[int] = frozenset()


def interchangeable_ranks(plan: Plan, keep: frozenset[int] = frozenset()) -> tuple[int, ...]:
    """The ranks of ``plan`` that hold no shard of their own, in order: only data-parallel shards
    in HBM on every rank, not the model-parallel bottom MLP's rank, none of ``keep``. They run the
    same step (module docstring, "Folded ranks")."""
    world = plan.world_size
    held = set(keep)
    for shard in plan.shards:
        if shard.sharding == "data_parallel" and shard.tier == "hbm" and len(set(shard.ranks)) == world:
            continue
        held.update(shard.ranks)
    if plan.bottom_rank is not None:
        held.add(plan.bottom_rank)
    # (Filtered in C: a generator over the world cost about 12 bytecodes a rank.)
    return tuple(itertools.filterfalse(held.__contains__, range(world)))


def global_batch_record_bytes(workload: Workload, batch: float) -> float:
    """Bytes of ``batch`` raw records as HugeCTR's AsyncReader uploads them (``RAW_RECORD_ITEM_BYTES``
    an item: the label, the dense features and a key per lookup): what every rank receives under
    ``Runtime.global_batch_input`` (``_Builder.global_batch_input``) and then holds in HBM, in each
    of its reader's buffers (``planner.reader_buffers.one_hot_reader_bytes``)."""
    items = 1 + workload.dense_features + sum(workload.table_lookups(t) for t in workload.tables)
    return batch * items * RAW_RECORD_ITEM_BYTES


def feature_index_bytes(workload: Workload, table: Table, samples: float) -> float:
    """Bytes of ``table``'s ids of ``samples`` samples as DLE's loader reads and copies them (int64,
    ``DLE_INDEX_BYTES``; no lengths): what a rank reads for each table it holds under
    ``Runtime.per_rank_feature_input`` (``_Builder.per_rank_feature_input``) and then holds in HBM
    (``planner.storage.input_by_rank``)."""
    return workload.table_lookups(table) * samples * DLE_INDEX_BYTES


class _Builder:
    def __init__(
        self, workload: Workload, plan: Plan, options: BuildOptions, ops: ShardOps | None = None
    ) -> None:
        self.w = workload
        self.plan = plan
        self.opt = options
        # Bytes of a sparse id in the input all-to-all and the H2D copy (``Training.index_dtype``).
        self.index_bytes = INDEX_DTYPE_BYTES[workload.training.index_dtype]
        self.world = plan.world_size
        self.comm_dtype = options.comm_dtype or plan.comm_dtype
        # Lookups of an inference batch (``build_inference_batch``): ``Embedding.inference``.
        self.inference = False
        # The graph's nodes go into columns (``ColumnarGraph``): an analytic evaluation reads
        # them there and never makes the ``Node`` objects; reading ``nodes`` makes them.
        # ``add`` deduplicates (the chain's are too) and numbers the nodes 0, 1, 2 ... (``next_id``).
        self.columns = NodeColumns(unique_deps=True, positional_ids=True)
        # The dependency column, appended to here (the chains may leave theirs out of it:
        # ``NodeColumns.leave_chain_deps``, after which ``columns.deps`` would make them).
        self.deps: list[tuple[int, ...] | None] = self.columns.deps  # type: ignore[assignment]
        self.graph = ColumnarGraph.of_columns(self.world, self.columns, {})
        self.next_id = 0
        # Nodes ``add`` has made and not yet written into the columns (``lay_staged``): (rank,
        # name, stream, op, dependencies, lane, phase) each, ids ``next_id - len(staged)`` on.
        self.staged: list[tuple[int, str, Stream, Op, tuple[int, ...], int, str]] = []
        self.tables = {t.name: t for t in workload.tables}
        self.ops = ops if ops is not None else ShardOps(workload)
        # The plan's exchange, its rows' and columns' sums and its all-to-all parts, as kept in
        # ``ShardOps.exchanges`` (the first ``pooled_exchange`` reads or makes it).
        self._exchange: ExchangeEntry | None = None
        self.fused: dict[str, list[tuple[str, float]]] = {}  # fused node table -> (table, lookups)
        # The tables the graph's unfused lookups and updates name (a fused one's are in ``fused``):
        # its metadata lists the parts of tables among them, not every part ``ops`` has made, as
        # ``ops`` may be a cost memo's, shared with the other plans of a planner or sweep.
        self.named: set[str] = set()
        # (rank, data-parallel shard's ``shard_number``) -> node; ``_shards[number]`` is the shard.
        self.replicated: dict[tuple[int, int], int] = {}
        self._shard_numbers: dict[Shard, int] = {}
        self._shards: list[Shard] = []
        # The framework sorts the next batch's indices in its input pipeline (``runtime``'s
        # ``presorts_indices``): backward lookups skip their sort, which runs behind the H2D copy.
        self.presort = False
        # The framework sorts each backward's indices on a compute lane of its own once the
        # embedding forward is done (``Runtime.backward_index_overlap``), beside the dense layers;
        # the rank's forward lookups (``forward_lookups``) are what that sort waits for.
        self.index_overlap = False
        self.forward_lookups: ByRank = {}
        # The framework's backwards add gradients with atomics (``Runtime.atomic_embedding_update``).
        self.atomic = False
        self.a2a_algorithm: str | None = None  # the framework's pooled all-to-all (``runtime``)
        # The comm lanes of the input dist and the gradient all-reduces (``Runtime.shared_comm_queue``:
        # the exchanges' lane, else lanes of their own).
        self.input_lane = LANE_INPUT
        self.dense_lane = LANE_DENSE
        # The framework, where it shapes the lookups (``Runtime.lookup_output_dtype``).
        self.runtime: Runtime | None = None
        self.node_size: int | None = None  # ranks per node where row splits reduce per node
        # The last ``pooled_exchange``'s parts that go through the framework's NCCL communicator,
        # by rank: its all-to-all and a flat row split's collectives, not a row split reduced per
        # node (``node_size``: HugeCTR's Hierarchical strategy copies those between the node's GPUs
        # with kernels of its own; ``Runtime.all_reduces_after_exchange`` orders NCCL's only).
        self.communicator_parts: dict[int, list[int]] = {}
        self.global_input = False  # every rank gets the whole batch (Runtime.global_batch_input)
        self.per_rank_input = False  # each rank reads its own features (Runtime.per_rank_feature_input)
        self.h2d: dict[int, int] = {}  # rank -> its next-batch H2D copy node
        # The input dist waits for the previous step's copy (``Runtime.
        # input_dist_follows_previous_copy``): its node -> that copy, a carried dependency.
        self.lagged_input = False
        self.carried_input: dict[int, tuple[int, ...]] = {}
        # SSD-tier shards' shares of their node's cache (``cache_shares``), and the ops carrying
        # them by (the shard op's id, share, tier) -> (that op, kept so its id stays its own; the op).
        self._cache_shares: dict[Shard, dict[int, tuple[float, str | None]]] | None = None
        self._shared_ops: dict[tuple[int, float, str | None], tuple[Embedding, Embedding]] = {}
        self.input_ready: dict[int, int] = {}  # rank -> the node after which its next batch is there
        self._reduced_dtypes: dict[str, str] = {}  # table dtype -> ``reduced_dtype``
        self._output_dtypes: dict[str, str | None] = {}  # table dtype -> ``output_dtype``
        # The linear layer reading the dot interaction's output, by id -> the framework's padding
        # columns it reads (``_dot_padding``), made on first use (``runtime`` is set after this).
        self._dot_pads: dict[int, int] | None = None
        # Every rank runs the same dense layers on the same local batch: their ops are equal values,
        # so each is made once and shared (the cost model then finds it by identity). Keyed by the
        # layer's identity (the layer is kept in the entry, so its id stays its own) and the
        # arguments of ``_layer_op``. The layers of ``ops``'s own workload (a cost memo's, shared
        # by the evaluations of a planner or sweep) are made once for all its graphs, as its
        # lookups are (``ShardOps.layer_ops``); another workload object's, once per graph.
        self._layer_ops: dict[
            tuple[int, int, float, str, bool, bool, bool, bool, bool, int], tuple[Layer, LayerOps]
        ] = self.ops.layer_ops if self.ops.w is workload else {}
        # Folded ranks (module docstring): the ranks whose nodes are not made, their
        # representative's class, and the all-to-all parts they would have had.
        self.skip: frozenset[int] = frozenset()
        self.folded: tuple[int, ...] = ()  # ``skip`` in rank order
        self.rank_classes: dict[int, tuple[int, ...]] = {}
        self.folded_parts: dict[str, dict[int, Collective]] = {}
        if options.fold_ranks:
            free = interchangeable_ranks(plan, options.keep_ranks)
            if len(free) > 1:
                self.folded = free[1:]
                self.skip = frozenset(self.folded)
                self.rank_classes = {free[0]: free}
        # The ranks that get nodes, in order: the per-rank passes visit these alone (at 128 GPUs
        # 27 of the 128 of a folded table-wise plan), not every rank to skip the folded ones.
        # (Filtered in C, as ``interchangeable_ranks``.)
        self.built: tuple[int, ...] = tuple(itertools.filterfalse(self.skip.__contains__, range(self.world)))

    def add(
        self,
        rank: int,
        name: str,
        stream: Stream,
        op: Op,
        deps: Sequence[int] = (),
        phase: str = "",
        lane: int = 0,
    ) -> int:
        if rank in self.skip:
            # A folded rank (module docstring): no node, but its all-to-all part for the matrix.
            # Its ids are never read: a folded rank's nodes depend on its own nodes only.
            if is_uneven_all_to_all(op):
                self.folded_parts.setdefault(op.key, {})[rank] = op
            return -1
        # Most nodes have at most one dependency, which needs no de-duplication, and two distinct
        # ones need none either: a ``dict.fromkeys`` costs some 2,000 machine instructions (the
        # dict, and its share of the cyclic collector's rounds; callgrind), about 100 a graph.
        unique = _without_repeats(deps)
        nid = self.next_id
        # Staged as one tuple (one append, not eight: ``lay_staged`` writes the columns).
        self.staged.append((rank, name, stream, op, unique, lane, phase))
        self.next_id = nid + 1
        return nid

    def lay_staged(self) -> None:
        """Writes the nodes ``add`` has staged into the columns, a column at a time (``zip``, in
        C), and forgets them. Whatever else writes the columns (``add_each``, the dense chains)
        lays the staged nodes down first, and the graph is returned after, so the columns hold
        the nodes in id order, as when ``add`` wrote each node's eight fields itself (about 90
        bytecodes a node; the embedding passes' lookups and sorts add some 80 nodes an
        evaluation at 128 GPUs)."""
        staged = self.staged
        if not staged:
            return
        ranks, names, streams, ops, deps, lanes, phases = zip(*staged, strict=True)
        columns = self.columns
        columns.ids.extend(range(self.next_id - len(staged), self.next_id))
        columns.ranks.extend(ranks)
        columns.names.extend(names)
        columns.streams.extend(streams)
        columns.ops.extend(ops)
        self.deps.extend(deps)
        columns.lanes.extend(lanes)
        columns.phases.extend(phases)
        staged.clear()

    def add_each(
        self,
        ranks: Sequence[int],
        name: str | list[str],
        stream: Stream | list[Stream],
        ops: Sequence[Op],
        deps: Sequence[Sequence[int]],
        phase: str,
        lane: int = 0,
        *,
        unique: bool = False,
    ) -> range:
        """One node per entry of ``ranks`` (ranks that get nodes: none folded), in that order, named
        ``name`` (or ``name[i]``, a list) on ``stream`` (or ``stream[i]``) and ``lane``, the ``i``-th
        with ``ops[i]`` and ``deps[i]``; returns their ids. ``unique``: every ``deps[i]`` is a tuple
        without repeats, taken as it is (else each is made a tuple and de-duplicated, as ``add``
        does). The nodes ``add`` makes one call at a time, laid down a column at a time: the
        per-rank passes (the input pipeline, the exchanges, the gradient all-reduces, the
        optimizer) add some 200 nodes an evaluation at 128 GPUs, each call of ``add`` a function
        call and eight appends (about 2 M machine instructions together, callgrind)."""
        self.lay_staged()  # the nodes before these
        n = len(ranks)
        base = self.next_id
        columns = self.columns
        columns.ids.extend(range(base, base + n))
        columns.ranks.extend(ranks)
        columns.names.extend([name] * n if isinstance(name, str) else name)
        columns.streams.extend([stream] * n if isinstance(stream, Stream) else stream)
        columns.ops.extend(ops)
        if unique:  # the caller's tuples, each without repeats (``unique``)
            self.deps.extend(deps)  # type: ignore[arg-type]
        else:  # as ``add``: at most one dependency needs no de-duplication
            self.deps.extend(map(_without_repeats, deps))
        columns.lanes.extend([lane] * n)
        columns.phases.extend([phase] * n)
        self.next_id = base + n
        return range(base, base + n)

    def _record_folded(self, key: str, parts: dict[int, Collective]) -> None:
        """Records the folded ranks' all-to-all ``parts`` (rank -> part, in rank order) of the
        collective ``key`` at once: the entries one ``add`` per folded rank would have made, in the
        same order (a rank already there keeps its place and takes the new part)."""
        if parts:
            self.folded_parts.setdefault(key, {}).update(parts)

    def layer_ops(
        self,
        layer: Layer,
        b: int,
        s: float,
        precision: str,
        *,
        backward: bool,
        input_grad: bool = True,
        closes_stack: bool = False,
        async_wgrad: bool = False,
        opens_stack: bool = False,
    ) -> LayerOps:
        """``dense_layer_ops(layer, b, s, precision, ...)``, made once per layer and arguments; none
        for a concatenation's backward where the framework's is views (``Runtime.cat_backward_is_view``:
        the layers on either side share the gradient's memory, so the chain goes straight through)."""
        if backward and layer.op == "cat" and self.runtime is not None and self.runtime.cat_backward_is_view:
            return ()
        pad = self._dot_padding(layer)
        key = (id(layer), b, s, precision, backward, input_grad, closes_stack, async_wgrad, opens_stack, pad)
        hit = self._layer_ops.get(key)
        if hit is not None and hit[0] is layer:
            return hit[1]
        ops = dense_layer_ops(
            _padded(layer, pad),
            b,
            s,
            precision,
            backward=backward,
            input_grad=input_grad,
            closes_stack=closes_stack,
            async_wgrad=async_wgrad,
            opens_stack=opens_stack,
        )
        self._layer_ops[key] = (layer, ops)
        return ops

    def _dot_padding(self, layer: Layer) -> int:
        """The zero columns the framework's dot interaction writes beside its output
        (``Runtime.dot_output_padding``) when ``layer`` is the linear layer that reads that output
        (the top MLP's first), else 0."""
        if self.runtime is None or layer.op != "linear":
            return 0
        if self._dot_pads is None:  # once a graph: the builder asks for every layer op it makes
            self._dot_pads = dot_paddings(self.w.dense_layers, self.runtime)
        return self._dot_pads.get(id(layer), 0)

    def layer_params(self, layer: Layer) -> int:
        """``layer``'s parameters as the framework trains them: a padded layer's (``_padded``) with
        its zero-input columns' weights, which its gradient and optimizer step carry too."""
        return _padded(layer, self._dot_padding(layer)).params

    def _names_used(self) -> set[str]:
        """The op table names of the graph's lookups and updates, fused ones' parts included."""
        return self.named.union(map(_FIRST, itertools.chain.from_iterable(self.fused.values())))

    def metadata(self, mode: str) -> dict[str, Any]:
        """What every built graph records: its source, mode, workload and plan, and what the cost
        layer needs to resolve fused (TBE) and partial-table op names."""
        used = self._names_used()
        slices = self.ops.slices
        return {
            "source": "recsim.graph.build",
            # Each (table, lookups) pair as a list (``map``: in C).
            "fused_tables": {k: list(map(list, v)) for k, v in self.fused.items()},
            # By name: ``ops`` may be shared, and the order it met the parts in is its history's.
            "table_slices": {k: list(slices[k]) for k in sorted(used.intersection(slices))},
            "mode": mode,
            "workload": self.w.name,
            "plan": self.plan.strategy,
            # How many sharding types route ids to their owners: TorchRec runs an input dist, a
            # lookup and an output dist for each (``recsim.graph.runtime``, eager host costs).
            "routed_sharding_types": len(set(map(_SHARDING, self.plan.shards)) - {"data_parallel"}),
            # A folded graph's collectives lack the folded ranks' members (``ExecutionGraph.validate``).
            **(
                {
                    "rank_classes": self.rank_classes,
                    "folded_parts": self.folded_parts,
                    "partial_collectives": True,
                }
                if self.rank_classes
                else {}
            ),
        }

    # -- sizes ---------------------------------------------------------------------------------

    def local_batch(self, batch: int) -> int:
        if batch % self.world:
            raise InfeasibleError(batch_split_error(batch, self.world))
        return batch // self.world

    def dense_bytes(self, precision: str) -> float:
        return DTYPE_BYTES[precision]

    # -- the pieces ----------------------------------------------------------------------------

    def input_pipeline(self, batch: int) -> None:
        """Data loading, H2D copy and index all-to-all of the next batch (overlaps this step)."""
        if self.global_input:
            self.global_batch_input(batch)
            return
        if self.per_rank_input:
            self.per_rank_feature_input(batch)
            return
        b = self.local_batch(batch)
        skip = self.skip  # folded ranks: no nodes, only their exchange parts (``add``)
        # The ops are kept in ``ShardOps.inputs`` for every graph of the plan (a cost memo's
        # ``ShardOps``, of this workload: the figures read its tables), not worked out again.
        shared = self.ops.w is self.w
        key = (id(self.plan), b, skip)
        kept = self.ops.inputs.get(key) if shared else None
        if kept is None or kept[0] is not self.plan:
            kept = self._input_ops(b)
            if shared:
                self.ops.keep_inputs(key, kept)
        _, load_op, h2d_op, laid, folded = kept
        # Each built rank's loading, then its copy after it, interleaved (``add_each``); the
        # interleaved columns are made in C (``chain``, ``zip``), not by Python loops over the ranks.
        built = self.built
        n = len(built)
        base = self.next_id  # the first loading's id: a rank's copy follows its loading
        loads = zip(range(base, base + 2 * n, 2))  # each copy's dependency: its loading, (id,)
        made = self.add_each(
            list(_interleave(zip(built, built, strict=True))),
            ["data_loading", "h2d_next_batch"] * n,
            [_HOST, _COPY] * n,
            [load_op, h2d_op] * n,
            list(_interleave(zip(itertools.repeat(()), loads))),
            "input",
            unique=True,
        )
        copy_ids = made[1::2]
        self.h2d.update(zip(built, copy_ids, strict=True))
        # ``laid`` holds every rank in rank order, a folded one (``skip``) with None: the built
        # ranks' parts are theirs by index. A folded rank's part is in ``folded`` (what ``add``
        # would have kept), and -1 is the id nothing reads; folded ranks come first in
        # ``input_ready``, in rank order, as when they were set from ``laid``.
        self.input_ready.update(dict.fromkeys(self.folded, -1))
        copies = list(zip(copy_ids))
        made = self.add_each(
            built,
            "input_dist",
            _COMM,
            list(map(_SECOND, map(laid.__getitem__, built))),
            [()] * n if self.lagged_input else copies,
            "input",
            self.input_lane,
            unique=True,
        )
        self.input_ready.update(zip(built, made, strict=True))
        if self.lagged_input:
            self.carried_input.update(zip(made, copies, strict=True))
        self._record_folded("input_dist", folded)

    def _input_ops(self, b: int) -> InputEntry:
        """The input pipeline's ops for the local batch ``b`` (``ShardOps.inputs``): the loading
        and the H2D copy of every rank, and each rank's input-dist part in rank order (None for a
        folded rank) with the folded ranks' uneven parts (``_record_folded``)."""
        # Every sender sends each owner the same bytes (its local batch's indices for the owner's
        # shards), so one row of the sender-by-owner table serves all of them: the same sums, in the
        # same order, as a row per sender. The ranks then share their ops and split tuples (equal
        # values; the cost model finds equal collectives on shared tuples by identity).
        row = self._lookup_bytes_row(b)
        # Every rank reads and copies its local batch's indices and lengths once per table, however
        # the table is split (the exchange's row is per owner: it left out replicated tables and
        # counted a column-split table once per block; a tester's and a reviewer's finds).
        idx_bytes = self._local_lookup_bytes(b)
        dense = b * self.w.dense_features * DENSE_INPUT_BYTES
        load_op = Host("data_loading", dense + idx_bytes)
        h2d_op = Transfer("host", "hbm", dense + idx_bytes)
        skip = self.skip
        group = tuple(range(self.world))
        send = tuple([row.get(q, 0.0) for q in group])
        total = sum(send)
        # Rank ``r`` receives ``send[r]`` from every sender: one part per distinct value (the sign
        # in the key keeps -0.0 apart from 0.0), shared by the ranks that receive it.
        # Each part with whether it is uneven (``is_uneven_all_to_all``, asked once per part rather
        # than once per folded rank: an op is frozen, and the answer reads only its fields).
        parts: dict[tuple[float, float], tuple[Collective, bool]] = {}
        laid: list[tuple[int, Collective | None]] = []
        folded: dict[int, Collective] = {}
        for r in range(self.world):
            value = send[r]
            key = (value, math.copysign(1.0, value))
            found = parts.get(key)
            if found is None:
                recv = (value,) * self.world
                made = Collective(CollectiveOp.ALL_TO_ALL, "input_dist", group, total, "int64", send, recv)
                found = parts[key] = (made, is_uneven_all_to_all(made))
            part, uneven = found
            if r in skip:
                # These parts carry splits, so every folded rank's is kept.
                if uneven:
                    folded[r] = part
                laid.append((r, None))
                continue
            laid.append((r, part))
        return self.plan, load_op, h2d_op, tuple(laid), folded

    def global_batch_input(self, batch: int) -> None:
        """The whole batch to every rank (``Runtime.global_batch_input``): each node reads its raw
        records once and uploads them to one GPU, which copies them to the node's others over
        NVLink. The uploading GPU takes turns from batch to batch, so each rank's step carries
        1/n of the reading and the upload and (n-1)/n of a copy from a peer, n its node's ranks."""
        n = max(1, min(self.opt.ranks_per_node or self.world, self.world))
        record = global_batch_record_bytes(self.w, batch)
        load_op = Host("data_loading", record / n)
        h2d_op = Transfer("host", "hbm", record / n)
        peer_op = Transfer("peer", "hbm", record * (n - 1) / n) if n > 1 else None
        for r in range(self.world):
            load = self.add(r, "data_loading", _HOST, load_op, phase="input")
            last = self.add(r, "h2d_next_batch", _COPY, h2d_op, [load], "input")
            if peer_op is not None:
                last = self.add(r, "d2d_next_batch", _COPY, peer_op, [last], "input")
            self.h2d[r] = self.input_ready[r] = last

    def per_rank_feature_input(self, batch: int) -> None:
        """Each rank reads and copies its own features (``Runtime.per_rank_feature_input``): for the
        whole batch, the indices of the tables it holds a model-parallel shard of (once per table,
        however many blocks of it the rank holds) and, on the bottom MLP's rank, the dense features;
        the local batch's indices of its replicated tables (and its dense features, where every rank
        runs the bottom MLP); every rank the batch's labels. No input-dist collective."""
        b = self.local_batch(batch)
        global_tables: dict[int, set[str]] = defaultdict(set)
        local_tables: dict[int, set[str]] = defaultdict(set)
        for shard in self.plan.shards:
            held = local_tables if shard.sharding == "data_parallel" else global_tables
            for r in shard.ranks:
                held[r].add(shard.table)
        dense_rows = {self.plan.bottom_rank: batch} if self.plan.bottom_rank is not None else {}
        ops: dict[float, tuple[Host, Transfer]] = {}
        for r in range(self.world):
            rows = dense_rows.get(r, 0 if dense_rows else b)
            idx = math.fsum(
                feature_index_bytes(self.w, self.tables[t], batch) for t in sorted(global_tables[r])
            ) + math.fsum(
                feature_index_bytes(self.w, self.tables[t], b)
                for t in sorted(local_tables[r] - global_tables[r])
            )
            size = idx + rows * self.w.dense_features * SPLIT_NUMERICAL_BYTES + batch * SPLIT_LABEL_BYTES
            pair = ops.get(size)
            if pair is None:
                pair = ops[size] = (Host("data_loading", size), Transfer("host", "hbm", size))
            load = self.add(r, "data_loading", _HOST, pair[0], phase="input")
            self.h2d[r] = self.input_ready[r] = self.add(r, "h2d_next_batch", _COPY, pair[1], [load], "input")

    def _local_lookup_bytes(self, b: int) -> float:
        """Index and length bytes of the local batch ``b``: every table's lookups once."""
        idx = self.index_bytes
        return math.fsum(self.w.table_lookups(t) * b * idx + b * LENGTH_BYTES for t in self.w.tables)

    def _lookup_bytes_row(self, b: int) -> dict[int, float]:
        """owner -> index + length bytes of any sender's local samples for the owner's shards (the
        same for every sender), summed in shard order."""
        out: dict[int, float] = defaultdict(float)
        for shard in self.plan.shards:
            if shard.sharding == "data_parallel":
                continue
            # A distributed shard's ranks each receive the ids of their own rows; the bytes an
            # owner then holds for each global batch are the planner's (``storage.input_buffer_bytes``,
            # two batches of them under TorchRec's pipeline: ``storage.held_input_batches``).
            sent = self.ops.input_dist_bytes(shard, b, self.index_bytes)
            for owner in shard.ranks:
                out[owner] += sent
        return out

    # -- embedding passes ------------------------------------------------------------------------

    def cache_shares(self) -> dict[Shard, dict[int, tuple[float, str | None]]]:
        """Each SSD-tier shard's share of its node's cache of that tier, by rank
        (``Embedding.cache_share``), with the ``ssd`` tier the node's page cache is booked at where
        it differs from the shard's own (else None); and each ``nmp`` shard's share of its node's
        RankCaches (in the DIMMs that hold all its nmp tables, ``recsim.cost.embedding.nmp``), by
        its host bytes.

        The OS page cache is one per node and shared by its processes, and the planner books one per
        node, at the largest fraction its ``ssd`` shards ask (``planner.storage.plan_usage``); the
        drives' DRAM is the node's drives'. ssd lookups are never fused, so without a share each of
        N tables, on each rank of a node, costed its lookups against the whole cache (two 82 GB
        tables on a skylake-2s each hit 1.0 in a page cache that holds one). The node's cache is
        split by bytes over all its shards on that tier, on every rank of the node (the planner's
        ``shard_storage``; ranks fill nodes in order, ``BuildOptions.ranks_per_node``, None: one
        node): ASSUMPTION, a static split by size, not the shares a shared LRU would settle at
        (which follow each table's traffic). An ``ssd`` shard asking a smaller fraction than the
        node's booked one is costed against the booked cache (its op's tier names that fraction)."""
        if self._cache_shares is not None:
            return self._cache_shares
        # Local imports: ``planner.storage`` imports this module.
        from recsim.cost.embedding.base import parse_tier
        from recsim.planner.storage import SSD_TIERS, page_cache_fraction, shard_storage

        per_node = self.opt.ranks_per_node or self.world
        sizes: dict[tuple[int, str], float] = defaultdict(float)
        booked: dict[int, float] = defaultdict(float)  # node -> the ssd page cache's fraction
        held: list[tuple[Shard, str, float, float]] = []
        for shard in self.plan.shards:
            tier, _ = parse_tier(shard.tier)
            if tier not in SSD_TIERS and tier != "nmp":
                continue
            storage = shard_storage(shard, self.w, self.world)
            size = storage.ddr_bytes if tier == "nmp" else storage.ssd_bytes
            fraction = page_cache_fraction(shard.tier)
            held.append((shard, tier, size, fraction))
            for rank in shard.ranks:
                sizes[(rank // per_node, tier)] += size
                if tier == "ssd":
                    booked[rank // per_node] = max(booked[rank // per_node], fraction)
        shares: dict[Shard, dict[int, tuple[float, str | None]]] = {}
        for shard, tier, size, fraction in held:
            by_rank: dict[int, tuple[float, str | None]] = {}
            for r in shard.ranks:
                total = sizes[(r // per_node, tier)]
                node_fraction = booked[r // per_node] if tier == "ssd" else fraction
                retier = f"ssd:{node_fraction!r}" if node_fraction != fraction else None
                by_rank[r] = (size / total if total > 0 else 1.0, retier)
            shares[shard] = by_rank
        self._cache_shares = shares
        return shares

    def with_cache_share(self, op: Embedding, share: float, tier: str | None = None) -> Embedding:
        """``op`` with its ``cache_share`` (one op per share: a node's equal shards share it), and on
        ``tier`` (the node's booked page cache) where given."""
        if share >= 1.0 and tier is None:
            return op
        key = (id(op), share, tier)
        found = self._shared_ops.get(key)
        if found is None:
            changed = dataclasses.replace(op, cache_share=share if share < 1.0 else None)
            if tier is not None:
                changed = dataclasses.replace(changed, tier=tier)
            found = self._shared_ops[key] = (op, changed)
        return found[1]

    def embedding_pass(
        self,
        batch: int,
        pass_: str,
        deps_by_rank: dict[int, list[int]],
        replicated_deps: dict[int, list[int]] | None = None,
        select: Callable[[Shard], bool] | None = None,
    ) -> dict[int, list[int]]:
        """The lookup nodes of ``pass_`` (forward or backward) on every rank; returns ids by rank.

        With ``fuse_tables`` (TorchRec's default), a rank's HBM shards of one dtype form one
        table-batched (TBE) node, as FBGEMM runs them in one kernel launch: its rows, lookups and
        unique rows are the sums over the shards and its dim the lookup-weighted mean, so the rows it
        reads are those of the shards; its bags (one per sample and table) are the shards' summed in
        vectors of that dim, so the pooled vectors it writes are the shards' too (tables of unequal
        dims make its bag count, and so its offsets, a little off). Replicated (data-parallel) HBM
        shards form a TBE of their own. Shards in host memory behind UVM (``uvm``, and ``uvm_caching``
        with one cache ratio) form a TBE per tier too, as TorchRec groups a rank's tables by compute
        kernel (``FUSED_UVM``, ``FUSED_UVM_CACHING``) into one FBGEMM module: one launch, one sort, one
        cache of ``ratio x`` the module's rows, shared by its tables (its hit rate is the mixture's).
        recsim costs a TBE's PCIe reads at one row width, so a UVM TBE holds tables of one width and
        tables of another form their own (a cache per width: ASSUMPTION, FBGEMM's is one per module);
        a tier the CPUs or an SSD serves stays one node per shard. Forward, the replicated TBE is
        queued after the others (the exchange waits only for those); backward, before them.
        Replicated (data-parallel) lookups wait for ``replicated_deps`` when given (their backward
        needs no exchange). ``select``: only the shards it accepts (default all).
        """
        self.local_batch(batch)  # checks divisibility
        out: dict[int, list[int]] = defaultdict(list)
        groups: dict[tuple[int, str, bool, str, int], list[tuple[int, Embedding]]] = defaultdict(list)
        skip = self.skip  # folded ranks: their lookups are their representative's
        hit_bags_only = self.hit_bags_only  # (a property: read once a pass, not once a shard)
        # What every shard's op asks, read once a pass rather than once a shard.
        shard_op, world, atomic, inference = self.ops.op, self.world, self.atomic, self.inference
        fuse = self.opt.fuse_tables
        fusing: dict[str, bool] = {}  # tier -> ``fused_tier`` of it
        for shard in self.plan.shards:
            if select is not None and not select(shard):
                continue
            op = shard_op(
                shard, pass_, batch, world, self.output_dtype(shard), hit_bags_only, atomic, inference
            )
            replicated = shard.sharding == "data_parallel"
            # A replicated shard is on every rank: its number (``shard_number``) hashes it once.
            number = self.shard_number(shard) if replicated else -1
            fused_here = fusing.get(shard.tier)
            if fused_here is None:
                fused_here = fusing[shard.tier] = fuse and fused_tier(shard.tier)
            if fused_here:
                entry, dtype = (number, op), op.dtype
                # UVM tiers fuse tables of one width: their rows cross PCIe in whole requests of
                # their own size, which a fused op's one (mean) width would misprice by 25-35 % (a
                # reviewer's find: a dim-32 row beside dim-64 ones charged as 256 B, not 128 B).
                tier, _, width = fused_group(shard.tier, dtype, op.dim)
                for rank in shard.ranks:
                    if rank not in skip:
                        groups[(rank, dtype, replicated, tier, width)].append(entry)
                continue
            table = self.tables[shard.table]
            shares = self.cache_shares().get(shard)
            for rank in shard.ranks:
                if rank in skip:
                    continue
                rank_op = op if shares is None else self.with_cache_share(op, *shares[rank])
                name = f"emb_{pass_}:{shard.table}"
                if shard.rows < table.rows:
                    name += f"[{shard.row_start}:{shard.row_end}]"
                if shard.dim < self.w.table_dim(table):
                    name += f"[:,{shard.col_start}:{shard.col_end}]"
                deps = deps_by_rank if replicated_deps is None or not replicated else replicated_deps
                nid = self.lookup(rank, name, rank_op, deps.get(rank, []), pass_)
                out[rank].append(nid)
                if shard.sharding == "data_parallel":
                    self.replicated[(rank, number)] = nid
        # By group key (rank, dtype, replicated, tier, width), then, stably, by rank and
        # replication: sorted with keys read in C (``itemgetter``) rather than a Python key
        # function per group, in stable passes from the last criterion to the first.
        keys = sorted(groups)
        if replicated_deps is not None:  # replicated first: they need not wait for the exchange
            keys.sort(key=_GROUP_REPLICATED, reverse=True)  # (``reverse`` keeps ties in order)
            keys.sort(key=_FIRST)
        elif pass_ == "forward":  # replicated last: the exchange waits only for the others
            keys.sort(key=_GROUP_RANK_REPLICATED)
        # The ranks' groups often hold the same ops (the replicated tables, on every rank): their
        # sums are worked out once per list of ops (by identity; ``groups`` keeps the ops alive).
        sums: dict[tuple[int, ...], FusedSums] = {}
        made = self.ops.fused_ops
        for group_key in keys:
            members = groups[group_key]
            rank, dtype, replicated, tier, tier_width = group_key
            ops = list(map(_SECOND, members))
            same = tuple(map(id, ops))
            # The fused op of the same ops (``ShardOps.op`` gives a shard's op it made before), made
            # by an earlier graph of ``self.ops``: the same value, kept with the ops it was made of.
            hit = made.get((group_key, pass_, same))
            # (The identity check in C: a generator per group cost more than the check.)
            if hit is not None and len(hit[0]) == len(ops) and all(map(is_, hit[0], ops)):
                _, fused, parts, name = hit
            else:
                found = sums.get(same)
                if found is None:
                    found = sums[same] = fused_sums(ops)
                parts = found.parts
                table = (
                    f"tbe:{rank}:{dtype}"
                    + ("" if tier == "hbm" else f":{tier}:dim{tier_width}")
                    + (":replicated" if replicated else "")
                )
                fused = fused_embedding(ops, table, tier, found)
                label = f"{len(ops)} tables" + ("" if tier == "hbm" else f", {tier}, dim {tier_width}")
                name = f"emb_{pass_}:tbe[{label}" + (", replicated]" if replicated else "]")
                self.ops.keep_fused((group_key, pass_, same), (tuple(ops), fused, parts, name))
            self.fused[fused.table] = list(parts)
            deps = deps_by_rank if replicated_deps is None or not replicated else replicated_deps
            nid = self.lookup(rank, name, fused, deps.get(rank, []), pass_)
            out[rank].append(nid)
            if replicated:
                for number, _ in members:
                    self.replicated[(rank, number)] = nid
        return out

    def replicated_updates(self, batch: int, reduced: dict[int, list[int]]) -> None:
        """The dense update of every rank's replicated shards (``planner.types.dense_gradient``), after
        the all-reduces ``reduced[rank]`` that carry their gradients: one node per replicated TBE
        (the rank's HBM shards of one dtype, fused as their lookups are: HugeCTR's one
        ``sgd_global_update`` over the frequent rows), else one per shard. The gradient arrives in
        the dtype it was reduced in (``reduced_dtype``)."""
        groups: dict[tuple[int, str], list[Embedding]] = defaultdict(list)
        for rank, number in sorted(self.replicated):
            shard = self._shards[number]
            dtype = shard.dtype or self.w.table_dtype(self.tables[shard.table])
            op = self.ops.op(shard, "update", batch, self.world, self.reduced_dtype(shard))
            fused = self.opt.fuse_tables and shard.tier == "hbm"
            groups[(rank, f"tbe:{rank}:{dtype}:replicated" if fused else op.table)].append(op)
            self.named.add(op.table)
        for (rank, table), ops in groups.items():
            if len(ops) == 1 and ops[0].table == table:
                op, name = ops[0], f"emb_update:{table}"
            else:
                # The tables' elements, in rows of one width (as a fused lookup counts its bags).
                elements = sum(o.rows * o.dim for o in ops)
                dims = {o.dim for o in ops}
                width = dims.pop() if len(dims) == 1 else max(1, round(elements / sum(o.rows for o in ops)))
                rows, batch = math.ceil(elements / width), max(o.batch for o in ops)
                op = dataclasses.replace(ops[0], table=table, rows=rows, dim=width, batch=batch)
                name = f"emb_update:tbe[{len(ops)} tables, replicated]"
            self.add(rank, name, _COMPUTE, op, reduced.get(rank, []), "optimizer")

    def reduced_dtype(self, shard: Shard) -> str:
        """The dtype a replicated shard's gradient is all-reduced in
        (``Runtime.replicated_gradient_dtype``)."""
        dtype = shard.dtype or self.w.table_dtype(self.tables[shard.table])
        if self.runtime is None:
            return dtype
        # Asked once per replicated shard and rank, and the answer reads the whole plan
        # (``plan_features``): worked out once per table dtype (it depends on nothing else).
        reduced = self._reduced_dtypes.get(dtype)
        if reduced is None:
            reduced = self.runtime.replicated_gradient_dtype(self.plan, self.w.training.precision, dtype)
            self._reduced_dtypes[dtype] = reduced
        return reduced

    def split_replicated(self, ids: ByRank) -> tuple[ByRank, ByRank]:
        """``ids`` (a forward pass's lookups by rank) as (the ones whose vectors the exchange sends,
        the replicated ones, which feed the dense part directly)."""
        # (Filtered in C: a comprehension per rank is a Python call of its own.)
        replicated = set(self.replicated.values()).__contains__
        exchanged = {r: list(itertools.filterfalse(replicated, nodes)) for r, nodes in ids.items()}
        local = {r: list(filter(replicated, nodes)) for r, nodes in ids.items()}
        return exchanged, local

    def output_dtype(self, shard: Shard) -> str | None:
        """The dtype the framework's lookups of ``shard`` write their pooled vectors in, when it is
        not the table's (``Runtime.lookup_output_dtype``: the half precision of mixed-precision
        training, for a framework that writes them narrow directly)."""
        if self.runtime is None:
            return None
        dtype = shard.dtype or self.w.table_dtype(self.tables[shard.table])
        # Asked once per shard and pass, and the answer depends on the table dtype alone (the
        # precision is the workload's): worked out once per dtype, as ``reduced_dtype`` is.
        if dtype in self._output_dtypes:
            return self._output_dtypes[dtype]
        out = self._output_dtypes[dtype] = self.runtime.lookup_output_dtype(self.w.training.precision, dtype)
        return out

    @property
    def hit_bags_only(self) -> bool:
        """Whether the framework's lookups of parts of tables pool only the bags they serve."""
        return self.runtime is not None and self.runtime.pools_hit_bags_only

    def shard_number(self, shard: Shard) -> int:
        """A number per distinct shard of the plan (equal shards share one), which ``replicated``
        keys by: a plain int hashes in C, a shard through its dataclass ``__hash__``."""
        number = self._shard_numbers.get(shard)
        if number is None:
            number = self._shard_numbers[shard] = len(self._shards)
            self._shards.append(shard)
        return number

    def lookup(self, rank: int, name: str, op: Embedding, deps: list[int], pass_: str) -> int:
        """A lookup node; a presorted backward (``self.presort``, HBM, a sorting optimizer) gets its
        index sort as a ``sort`` node behind the rank's next-batch H2D copy (off the step's path).
        With ``self.index_overlap`` instead, the sort is a ``sort`` node on the compute lane
        ``LANE_INDEX`` after the rank's forward lookups, and the backward waits for it."""
        sorted_ahead = (self.presort or self.index_overlap) and sorts_ahead(
            pass_, op.tier, op.optimizer, op.atomic
        )
        if sorted_ahead:
            made = self.ops.sorted_ops.get(id(op))
            if made is None or made[0] is not op:
                made = (op, dataclasses.replace(op, presorted=True), dataclasses.replace(op, pass_="sort"))
                self.ops.keep_sorted(*made)
            _, op, sort = made
            sort_name = name.replace("emb_backward", "emb_index_sort", 1)
            if self.presort:
                after = [self.h2d[rank]] if rank in self.h2d else []
                self.add(rank, sort_name, _COPY, sort, after, "input")
            else:
                after = self.forward_lookups.get(rank, [])
                sort_id = self.add(rank, sort_name, _COMPUTE, sort, after, pass_, lane=LANE_INDEX)
                deps = [*deps, sort_id]
        self.named.add(op.table)
        return self.add(rank, name, _COMPUTE, op, deps, pass_)

    def pooled_exchange(
        self, batch: int, forward: bool, deps_by_rank: dict[int, list[int]]
    ) -> dict[int, list[int]]:
        """Forward: pooled embeddings to the sample owners; backward: their gradients back.

        A block on one rank (table-, column- or table-column-wise) sends each sample owner its
        vectors in one all-to-all. A block split by rows over ranks ``G`` (row-wise, table-row-wise,
        grid) first reduce-scatters its partial pools over ``G``, member ``i`` keeping the samples of
        the ranks ``q`` with ``q mod |G| = i`` (for row-wise over the world that is ``q`` itself;
        inside a node, the ranks of the same local index), which it then sends on in the same
        all-to-all (``shard_ops.pooled_exchange``, computed once per plan: ``ShardOps.exchanges``).
        Backward runs the transpose: the all-to-all, then an all-gather per rank group.
        """
        b = self.local_batch(batch)
        comm = wire_bytes_per_value(self.comm_dtype)
        phase = "forward" if forward else "backward"
        if self._exchange is None:
            # Kept in ``ShardOps.exchanges`` (a cost memo's, shared by the evaluations of a plan):
            # the matrix and its rows' and columns' sums are worked out once for all its graphs.
            found_key = (id(self.plan), batch, comm, self.node_size)
            found = self.ops.exchanges.get(found_key)
            if found is None or found[0] is not self.plan:
                made = pooled_exchange(self.ops, self.plan, batch, comm, self.node_size)
                found = (self.plan, made, [], [], {})
                if made.any_all_to_all:
                    rows, columns = exchange_sums(made.rows, sum), exchange_sums(made.columns, sum)
                    found = (self.plan, made, rows, columns, {})
                self.ops.keep_exchange(found_key, found)
            self._exchange = found
        _, exchange, row_sums, column_sums, _ = self._exchange
        # TorchRec batches the output dist of every table sharded over the same ranks into one
        # collective (its RW/TWRW dists concatenate the tables' partial pools): one
        # reduce-scatter (forward) and one all-gather (backward) per rank group, of the summed dims.
        groups = exchange.reduce_groups
        if groups:
            scatter_dtype, gather_dtype = row_split_wire_dtypes(self.comm_dtype)
        out: dict[int, list[int]] = defaultdict(list)
        reduce_ids: dict[int, list[int]] = defaultdict(list)
        # Per node (``node_size``), a row split's reduce-scatter and all-gather are HugeCTR's
        # peer-memory copy kernels (hier_model_parallel_embedding.cpp, ``backward_per_gpu``: the
        # NCCL all-to-all ``hier_communicate``, then ``intra_model_backward``), not NCCL calls.
        copies = self.node_size is not None
        nccl: dict[int, list[int]] = defaultdict(list)
        self.communicator_parts = nccl
        if forward:
            for ranks, dim in groups.items():
                key = f"rw_fwd:{_group_label(ranks, self.world)}"
                # Each member holds partial sums for all B samples and keeps B / |G| of them: the
                # same op on every member, made once.
                size = batch * dim * wire_bytes_per_value(scatter_dtype)
                op = Collective(CollectiveOp.REDUCE_SCATTER, key, ranks, size, scatter_dtype)
                for r in ranks:
                    nid = self.add(r, key, _COMM, op, deps_by_rank.get(r, []), phase)
                    out[r].append(nid)
                    reduce_ids[r].append(nid)
                    if not copies:
                        nccl[r].append(nid)
        a2a: dict[int, int] = {}
        if exchange.any_all_to_all:
            key = "a2a_fwd" if forward else "a2a_bwd"
            # The matrix's rows and columns as tuples, equal ones shared (``PooledExchange``), and
            # the sum of each distinct one worked out once (``sum``, as the op's bytes always were,
            # not the exact sum the planner reads).
            sends, recvs = (exchange.rows, exchange.columns) if forward else (exchange.columns, exchange.rows)
            totals = row_sums if forward else column_sums
            # The ranks' parts and the folded ranks' ones, worked out once per direction, wire dtype,
            # algorithm and set of folded ranks, and kept with the exchange (``ShardOps.exchanges``):
            # every graph of the plan lays down the same ops (frozen values) without redoing them.
            part_key = (forward, self.comm_dtype, self.a2a_algorithm, self.skip)
            laid = self._exchange[4].get(part_key)
            if laid is None:
                laid = self._exchange[4][part_key] = self._a2a_parts(key, sends, recvs, totals)
            placed, placed_ops, folded = laid
            made = self.add_each(
                placed,
                key,
                _COMM,
                placed_ops,
                [[*deps_by_rank.get(r, []), *reduce_ids.get(r, [])] for r in placed],
                phase,
            )
            a2a.update(zip(placed, made, strict=True))
            for r, nid in a2a.items():
                out[r].append(nid)
                nccl[r].append(nid)
            self._record_folded(key, folded)
        if not forward:
            for ranks, dim in groups.items():
                key = f"rw_bwd:{_group_label(ranks, self.world)}"
                size = b * dim * wire_bytes_per_value(gather_dtype) * (self.world / len(ranks))
                op = Collective(CollectiveOp.ALL_GATHER, key, ranks, size, gather_dtype)
                for r in ranks:
                    deps = [a2a[r]] if r in a2a else deps_by_rank.get(r, [])
                    nid = self.add(r, key, _COMM, op, deps, phase)
                    out[r].append(nid)
                    if not copies:
                        nccl[r].append(nid)
        return out

    def _a2a_parts(
        self,
        key: str,
        sends: Sequence[tuple[float, ...]],
        recvs: Sequence[tuple[float, ...]],
        totals: Sequence[float],
    ) -> tuple[tuple[int, ...], tuple[Collective, ...], dict[int, Collective]]:
        """The pooled all-to-all ``key``'s part of each rank: the ranks that get a node, in rank
        order, and their parts, and the folded ranks' uneven parts, for the matrix (what ``add``
        keeps of a folded rank; ``_record_folded``)."""
        group = tuple(range(self.world))
        # One part per distinct (row, column) pair of shared tuples, shared by its ranks (a
        # table-wise plan's ranks without tables all send nothing and receive alike).
        # Each with whether it is uneven (``is_uneven_all_to_all``, asked once per part rather
        # than once per folded rank: an op is frozen, and the answer reads only its fields).
        parts: dict[tuple[int, int], tuple[Collective, bool]] = {}
        skip = self.skip
        placed: list[int] = []
        placed_ops: list[Collective] = []
        folded: dict[int, Collective] = {}
        for r in group:
            send, recv = sends[r], recvs[r]
            part = parts.get((id(send), id(recv)))
            if part is None:
                made = Collective(
                    CollectiveOp.ALL_TO_ALL,
                    key,
                    group,
                    totals[r],
                    self.comm_dtype,
                    send,
                    recv,
                    self.a2a_algorithm,
                )
                part = parts[(id(send), id(recv))] = (made, is_uneven_all_to_all(made))
            op, uneven = part
            if r in skip:
                if uneven:
                    folded[r] = op
                continue
            placed.append(r)
            placed_ops.append(op)
        return tuple(placed), tuple(placed_ops), folded

    def dense_forward(
        self,
        rank: int,
        batch: int,
        layers: Sequence[Layer],
        deps: list[int],
        precision: str,
        *,
        whole_batch: bool = False,
    ) -> dict[str, int]:
        """Forward nodes of ``layers`` for ``rank`` (its local batch, or the global one for a
        model-parallel layer); returns layer name -> node id."""
        b = batch if whole_batch else self.local_batch(batch)
        s = self.dense_bytes(precision)
        ids: dict[str, int] = {}
        prev = deps
        first_cross = next((x for x in layers if x.op == "dcnv2"), None)
        for layer in layers:
            opens = layer is first_cross
            for suffix, op in self.layer_ops(layer, b, s, precision, backward=False, opens_stack=opens):
                nid = self.add(rank, f"{layer.name}{suffix}_fwd", _COMPUTE, op, prev, "forward")
                prev = [nid]
            ids[layer.name] = nid  # the layer's output: its last node
        return ids


def replicated_gradient(
    framework: Runtime, plan: Plan, workload: Workload, shard: Shard, table: Table
) -> tuple[str, float]:
    """A replicated shard's gradient all-reduce (``planner.types.dense_gradient`` shards): the dtype
    ``framework`` reduces it in (``Runtime.replicated_gradient_dtype`` of the shard's storage dtype)
    and its bytes, ``rows x dim`` of it. The estimator and ``recsim plan`` count it as the builder's
    all-reduces carry it (``_Builder.reduced_dtype``, which keeps the dtype per table dtype)."""
    table_dtype = shard.dtype or workload.table_dtype(table)
    dtype = framework.replicated_gradient_dtype(plan, workload.training.precision, table_dtype)
    return dtype, shard.rows * shard.dim * DTYPE_BYTES[dtype]


def row_split_wire_dtypes(comm_dtype: str) -> tuple[str, str]:
    """The dtypes a row split's reduce-scatter (forward) and all-gather (backward) of pooled
    embeddings travel in when the all-to-all's wire is ``comm_dtype``. Only TorchRec (``eager``)
    sends fp8 or int8 wires (``Runtime.wire_dtypes``: the other runtimes refuse them first), so the
    rules below are its; fp32 and the half precisions reduce as they are in every framework.

    TorchRec's qcomm cannot reduce every wire. ``get_qcomm_codecs_registry``
    (torchrec/distributed/fbgemm_qcomm_codec.py) falls back, for
    ``POOLED_EMBEDDINGS_REDUCE_SCATTER``, from an fp8 forward to fp16 and an fp8 backward to bf16.
    An int8 wire it leaves alone, and that fails: ``ReduceScatter_Req`` (comm_ops.py) calls
    ``codecs.forward.encode(input)`` without a ``QuantizationContext``, which FBGEMM's int8
    quantiser requires (quantize_comm.py, ``none_throws(ctx)``); NCCL could not sum row-quantised
    values with their per-row scales and biases anyway. Raises ``InfeasibleError`` for int8."""
    if comm_dtype == "int8":
        raise InfeasibleError(
            "an int8 wire cannot reduce-scatter row-split pooled embeddings (TorchRec's qcomm "
            "reduce-scatter has no int8 codec context, and a sum of row-quantised values is "
            "meaningless): use fp16, bf16 or fp8 (which reduces in fp16), or no row split"
        )
    if comm_dtype == "fp8":
        return "fp16", "bf16"
    return comm_dtype, comm_dtype


def _group_label(ranks: tuple[int, ...], world: int) -> str:
    """``all`` for the whole world, else ``ranks a-b`` (contiguous) or the list."""
    if len(ranks) == world:
        return "all"
    if ranks == tuple(range(ranks[0], ranks[-1] + 1)):
        return f"ranks {ranks[0]}-{ranks[-1]}"
    return "ranks " + ",".join(map(str, ranks))


def _layer_op(
    layer: Layer, b: int, s: float, precision: str, *, backward: bool, input_grad: bool = True
) -> Compute:
    """A dense layer for a batch of ``b`` as a Compute op (forward, or both backward GEMMs; the
    weight gradient's alone without ``input_grad``: autograd computes no gradient for an input that
    needs none, the dense features the first bottom layer reads)."""
    factor = 2.0 if backward else 1.0
    if layer.op == "linear":
        m, k, n = b, layer.in_features, layer.out_features
        if backward and not input_grad:
            # dW = X^T dY: reads the input and the output's gradient, writes the weights' gradient.
            return Compute(
                op=f"{layer.op}_wgrad",  # one GEMM, dW (``recsim.cost.compute.gemm_kernels``)
                flops=layer.flops * b,
                bytes_read=(m * k + m * n) * s,
                bytes_written=k * n * s,
                dtype=precision,
                shapes=((m, k), (k, n)),
                category="gemm",
            )
        read = (m * k + k * n) * s + (m * n * s if backward else 0.0)
        written = (m * k + k * n) * s if backward else m * n * s
        shapes = ((m, k), (k, n))
        category = "gemm"
    elif layer.op == "dot":
        return _dot_interaction_op(layer, b, s, precision, backward=backward)
    elif layer.op == "cat":
        # A concatenation copies its inputs into its output; its backward slices the output's
        # gradient back into the inputs' (HugeCTR's ``concat_kernel(forward=false)``, src/layers/
        # concat_layer.cu: reads the output's size, writes the inputs'): the forward's bytes the
        # other way, not twice them both ways. (PyTorch's is ``narrow`` views: the builder emits no
        # node for it, ``_Builder.layer_ops``.)
        inputs, outputs = b * layer.in_features * s, b * layer.out_features * s
        return Compute(
            "cat_bwd" if backward else "cat",
            0.0,
            outputs if backward else inputs,
            inputs if backward else outputs,
            precision,
            ((b, layer.in_features),),
            "interaction",
        )
    else:
        read = b * layer.in_features * s * factor + layer.params * s
        written = b * layer.out_features * s * factor
        shapes = ((b, layer.in_features),)
        category = "interaction" if layer.part == "interaction" else "sequence"
    return Compute(
        op=f"{layer.op}_bwd" if backward else layer.op,
        flops=factor * layer.flops * b,
        bytes_read=read,
        bytes_written=written,
        dtype=precision,
        shapes=shapes,
        category=category,
    )


def _dot_interaction_op(layer: Layer, b: int, s: float, precision: str, *, backward: bool) -> Compute:
    """The dot interaction as the fused runtimes run it: one kernel each way, NVIDIA's
    ``dotBasedInteractFwdKernel`` / ``dotBasedInteractBwdKernel`` (HugeCTR/src/layers/
    interaction_layer.cu, the fp16 path its mixed-precision DLRM runs; DLE's ``cuda_dot``
    interaction is the same kernel pair, dlrm/cuda_ext). Per sample, with ``f`` vectors of ``d``:

    * forward: reads the bottom MLP's output and the pooled embeddings (``f x d``), writes the
      output row the top MLP reads, the bottom MLP's vector copied beside the pairs
      (``output_size = num_cols + num_rows (num_rows - 1) / 2 + kPaddingSize``); ``2 f^2 d`` FLOPs;
    * backward: reads the upstream gradient (the pairs, and the bottom MLP's slice that it adds to
      that vector's gradient) and the input ``f x d`` (the in/out buffers), writes the input's
      gradient ``f x d``; one product of the symmetrised ``f x f`` gradient with the input:
      ``2 f^2 d`` FLOPs, as the forward.

    The padding column (one element a row) is left out. PyTorch's runtimes without this kernel
    run their own (``recsim.graph.runtime._torch_dot_interaction``)."""
    inputs = b * layer.in_features * s
    outputs = b * (layer.passthrough + layer.out_features) * s
    f = layer.features
    shapes = ((b, f, layer.in_features // f),) if f else ((b, layer.in_features),)
    if backward:
        return Compute("dot_bwd", layer.flops * b, outputs + inputs, inputs, precision, shapes, "interaction")
    return Compute("dot", layer.flops * b, inputs, outputs, precision, shapes, "interaction")


# The compute categories whose kernels are matrix products on the tensor cores, as the cost layer
# prices them (``recsim.cost.compute``'s tensor peak; ``recsim.cost.interference`` slows them as
# GEMMs beside a collective): GEMMs, the dot interaction, cross layers and sequence units.
_MATMUL_CATEGORIES = frozenset({"gemm", "interaction", "sequence"})


def _fills_sms(op: Compute) -> bool:
    """Whether ``op`` is a matrix product that fills the SMs as a GEMM does, so that a weight
    gradient GEMM on ``LANE_WGRAD`` does not run beside it (``_dense_chain``: the engines give each
    lane the whole GPU). The dot interaction's backward is one: HugeCTR's fp16 InteractionLayer::
    bprop (src/layers/interaction_layer.cu) runs ``dotBasedInteractBwdKernel`` (fewer than
    ``n_ins_knob`` = 32 vectors; else cuBLAS's strided-batched GEMM, CUBLAS_GEMM_DEFAULT_TENSOR_OP),
    WMMA ``mma_sync`` tiles of 16 x 16 x 16 on the tensor cores, a warp a sample, 4 warps and, for
    DLRM v1's 27 vectors of 128, 44 KiB of shared memory a block (``dotBasedInteractBwd``), batch / 4
    blocks: it holds every SM's shared memory for its whole run, which leaves a GEMM's tiles little room
    beside it, however low its FLOPs per byte (the cost model prices it on HBM bandwidth). A
    concatenation's copy (no FLOPs) and the element-wise kernels are not."""
    return op.category in _MATMUL_CATEGORIES and op.flops > 0


def _accumulating(op: Compute, c_bytes: float) -> Compute:
    """The GEMM ``op`` called with ``beta = 1``: it adds its product into its output, reading that
    (``c_bytes``) as well (``Compute.accumulates``)."""
    return dataclasses.replace(op, bytes_read=op.bytes_read + c_bytes, accumulates=True)


def _input_grad_op(layer: Layer, b: int, s: float, precision: str) -> Compute:
    """A linear layer's input gradient alone, ``dX[b, in] = dY[b, out] W^T``: one GEMM (its shapes
    are the product's, ``recsim.cost.compute.gemm_kernels``), reading the output's gradient and the
    weights, writing the input's gradient. The weight gradient is then a node of its own
    (``_layer_op`` without ``input_grad``)."""
    m, k, n = b, layer.in_features, layer.out_features
    return Compute(
        op=f"{layer.op}_dgrad",
        flops=layer.flops * b,
        bytes_read=(m * n + k * n) * s,
        bytes_written=m * k * s,
        dtype=precision,
        shapes=((m, n), (n, k)),
        category="gemm",
    )


def dot_paddings(layers: Sequence[Layer], framework: Runtime) -> dict[int, int]:
    """id of the linear layer that reads a dot interaction's output -> the zero columns the
    framework writes beside that output (``Runtime.dot_output_padding``), for ``layers``."""
    return {
        id(after): framework.dot_output_padding(after.in_features)
        for before, after in itertools.pairwise(layers)
        if before.op == "dot" and after.op == "linear"
    }


def trained_dense_layers(workload: Workload) -> list[Layer]:
    """The workload's dense layers as its framework (``training.runtime``) trains them: the top
    MLP's first layer widened by the dot interaction's padding (``_padded``), whose extra weights
    the gradient all-reduce, the optimizer and the planner's dense memory count as the GEMMs do."""
    layers = workload.dense_layers
    pads = dot_paddings(layers, _framework(workload))
    return [_padded(layer, pads.get(id(layer), 0)) for layer in layers]


def _padded(layer: Layer, pad: int) -> Layer:
    """A linear ``layer`` that reads ``pad`` more (zero) input columns: its weight has a column for
    each (DLE zero-initialises that column's weights, dlrm/nn/parts.py ``DlrmTop``), so its GEMMs
    multiply them too, with the row length that decides their alignment
    (``recsim.cost.compute.narrow_loads``). ``layer`` itself when ``pad`` is 0."""
    if not pad:
        return layer
    width = layer.in_features + pad
    out = layer.out_features
    return dataclasses.replace(layer, in_features=width, flops=2.0 * width * out, params=width * out + out)


#: One dense layer's op as the builder emits it (the planner prices a model-parallel bottom MLP's).
dense_layer_op = _layer_op

#: A dense layer's nodes in execution order: (node-name suffix after the layer's name, op).
LayerOps = tuple[tuple[str, Compute], ...]


def dense_layer_ops(
    layer: Layer,
    b: int,
    s: float,
    precision: str,
    *,
    backward: bool,
    input_grad: bool = True,
    closes_stack: bool = False,
    async_wgrad: bool = False,
    opens_stack: bool = False,
) -> LayerOps:
    """The nodes of a dense layer for a batch of ``b``: one (``_layer_op``), or a DCNv2 cross
    layer's GEMMs and element-wise kernel (``_cross_layer_ops``; ``closes_stack``: the stack's
    first layer, whose backward ends the stack's and slices its input's gradient back
    (``opens_stack``: its forward, which first concatenates the stack's input); ``async_wgrad``:
    its backward's input- and weight-gradient GEMMs as nodes of their own, for a cross layer or a
    linear one: ``_async_linear_ops``)."""
    if backward and async_wgrad and layer.op == "linear":
        return _async_linear_ops(layer, b, s, precision, input_grad=input_grad)
    if layer.op == "dcnv2":
        return _cross_layer_ops(
            layer,
            b,
            s,
            precision,
            backward=backward,
            closes_stack=closes_stack,
            async_wgrad=async_wgrad,
            opens_stack=opens_stack,
        )
    return (("", _layer_op(layer, b, s, precision, backward=backward, input_grad=input_grad)),)


def _async_linear_ops(layer: Layer, b: int, s: float, precision: str, *, input_grad: bool) -> LayerOps:
    """A linear layer's backward as HugeCTR runs it with async weight gradients
    (``Runtime.async_mlp_wgrad``): the input gradient ``_dgrad`` (``_input_grad_op``, beta = 0),
    then the weight gradient ``_wgrad``, a node of its own for the graph builder to put on
    ``LANE_WGRAD`` (``_dense_chain``); without ``input_grad`` (the first dense layer, whose dgrad
    HugeCTR skips) the weight gradient alone.

    FusedFCLayerFunctors::bprop (HugeCTR src/layers/functors/fused_fc_layer_functors.cu, the MLP
    layer's) calls the wgrad GEMM with beta = 1 (``gemm_functor_(1.0f, bottom, grad_top, 1.0f,
    kernel_grad, ...)``), the dgrad with beta = 0; FusedReluBiasFullyConnectedLayer::bprop
    (src/layers/fused_relu_bias_fully_connected_layer.cu) likewise (``beta_k``, ``beta_x``). So the
    weight gradient adds into its buffer and reads it: ``in x out`` elements of C
    (``Compute.accumulates``). The bias gradient rides in a GEMM epilogue (fuse_wb=False: the dgrad
    GEMM's, DRELU_BGRAD; the MLP's last layer's in its wgrad), an ``out``-element vector left out as
    the undivided node leaves it out."""
    wgrad = _layer_op(layer, b, s, precision, backward=True, input_grad=False)
    accumulated = _accumulating(wgrad, layer.in_features * layer.out_features * s)
    if not input_grad:
        return (("_wgrad", accumulated),)
    return (("_dgrad", _input_grad_op(layer, b, s, precision)), ("_wgrad", accumulated))


def _cross_layer_ops(
    layer: Layer,
    b: int,
    s: float,
    precision: str,
    *,
    backward: bool,
    closes_stack: bool,
    async_wgrad: bool = False,
    opens_stack: bool = False,
) -> LayerOps:
    """A DCNv2 cross layer ``x_{l+1} = x0 * (U (V x_l) + bias) + x_l`` on ``b x W`` inputs with
    rank ``r``, as the kernels both runtimes run for it: two GEMMs and element-wise work.

    TorchRec's ``LowRankCrossNet`` (torchrec/modules/crossnet.py) runs ``F.linear(x_l, V)``
    (``[b, W] x [W, r]``), ``F.linear(x_l_v, W)`` (``[b, r] x [r, W]``), both without bias, then
    ``x_0 * (x_l_w + bias) + x_l``. HugeCTR's ``MultiCrossForwardFunctorv2`` (DCNv2, a non-zero
    ``projection_dim``; HugeCTR/src/layers/multi_cross_layer.cu) runs the same two cuBLASLt GEMMs,
    the second with the bias in its epilogue, then ``fused_matrix_elementwise_dot_add``
    (``x0 .* h + x_l``, one kernel: reads three ``b x W`` tensors, writes one). Its backward
    (``MultiCrossBackwardFunctorv2``) runs ``fused_mul_fma3`` (``S0 = dY .* x0`` and
    ``dX0 += dY .* h``: reads four, writes two), then the U projection's weight gradient (with the
    bias gradient in its epilogue) and input gradient, then the V projection's, the last adding the
    residual's gradient as its ``C`` operand; after the stack, one ``matrix_add`` of x0's
    accumulated gradient and the residual chain's, whose buffer it zeroed before the stack
    (``cudaMemsetAsync``): charged to ``closes_stack``'s layer.

    The GEMMs are linear layers (``_layer_op``: forward, or dgrad and wgrad); the element-wise node
    (op ``dcnv2``/``dcnv2_bwd``) is HugeCTR's fused kernel, which the PyTorch runtimes replace by
    their unfused kernels (``recsim.graph.runtime._cross_epilogue``). Forward FLOPs sum to the
    layer's (``4 W r + 3 W`` per sample: the bias add is counted with the element-wise kernel);
    backward, the two GEMM pairs' ``8 W r`` plus the element-wise ``3 W`` (``+ W`` for the stack's
    closing add).

    ``async_wgrad`` (HugeCTR's ``async_wgrad``, ``Runtime.async_cross_wgrad``): the backward as
    ``fused_mul_fma3``, then the U and V projections' input gradients (``_u_dgrad``, ``_v_dgrad``),
    then their weight gradients (``_u_wgrad``, ``_v_wgrad``), each GEMM a node of its own, for the
    graph builder to put the weight gradients on a lane of their own (``_dense_chain``); the V
    projection's input gradient and both weight gradients read their output as well (HugeCTR's
    ``beta = 1``, ``Compute.accumulates``). PyTorch's ``mm`` overwrites (``beta = 0``): autograd
    adds the residual's gradient in a kernel of its own (``recsim.graph.runtime._cross_epilogue``).

    The stack's input is the bottom MLP's output and the pooled embeddings side by side, which
    HugeCTR concatenates into a buffer of its own: NVIDIA's MLPerf DLRM-DCNv2 (HugeCTR
    samples/dlrm/train.py) adds a ``Layer_t::Concat`` of ``sparse_embedding`` and ``mlp1`` in front
    of its ``MultiCross``, whose ``concat_kernel`` (src/layers/concat_layer.cu) copies both into the
    output forward and, with ``forward=false``, the output's gradient back into theirs: the
    ``cat`` layer's op (``_layer_op``), a node ``_concat`` before the stack's first layer's forward
    (``opens_stack``) and after its backward (``closes_stack``). (TorchRec's ``torch.cat`` runs
    other kernels: ``recsim.graph.runtime._torch_dcn_concat``.)"""
    w, r = layer.in_features, layer.low_rank
    concat = Layer(f"{layer.name}_concat", layer.part, "cat", w, w, 0.0, 0)
    v = Layer(f"{layer.name}_v", layer.part, "linear", w, r, 2.0 * w * r, w * r)
    u = Layer(f"{layer.name}_u", layer.part, "linear", r, w, 2.0 * r * w, r * w + w)
    size = b * w * s
    if not backward:
        elementwise = Compute("dcnv2", 3.0 * b * w, 3 * size, size, precision, ((b, w),), "elementwise")
        opened: LayerOps = (
            (("_concat", _layer_op(concat, b, s, precision, backward=False)),) if opens_stack else ()
        )
        return (
            *opened,
            ("_v", _layer_op(v, b, s, precision, backward=False)),
            ("_u", _layer_op(u, b, s, precision, backward=False)),
            ("", elementwise),
        )
    # The stack's input gradient, sliced back into the bottom MLP's and the embeddings' (last).
    closed: LayerOps = (
        (("_concat", _layer_op(concat, b, s, precision, backward=True)),) if closes_stack else ()
    )
    flops, read, written = 3.0 * b * w, 4 * size, 2 * size
    if closes_stack:  # the zeroed accumulator (a write) and the closing add (reads 2, writes 1)
        flops, read, written = flops + b * w, read + 2 * size, written + 2 * size
    elementwise = Compute("dcnv2_bwd", flops, read, written, precision, ((b, w),), "elementwise")
    if async_wgrad:
        # MultiCrossBackwardFunctorv2 calls three of the four GEMMs with beta = 1 (``D = A B + C``,
        # C read): the weight gradients add into their buffers (``dV += XU^T S0``, ``dU += X^T
        # S1`` in HugeCTR's names, recsim's U and V), and the V projection's input gradient adds
        # the residual's gradient (``dY_{i-1} = S1 U^T + dY_i``, C = dY_i, ``b x W``); ``dH = S0
        # V^T`` overwrites (beta = 0).
        v_wgrad = _layer_op(v, b, s, precision, backward=True, input_grad=False)
        u_wgrad = _layer_op(u, b, s, precision, backward=True, input_grad=False)
        return (
            ("", elementwise),
            ("_u_dgrad", _input_grad_op(u, b, s, precision)),
            ("_v_dgrad", _accumulating(_input_grad_op(v, b, s, precision), size)),
            ("_u_wgrad", _accumulating(u_wgrad, r * w * s)),
            ("_v_wgrad", _accumulating(v_wgrad, w * r * s)),
            *closed,
        )
    return (
        ("", elementwise),
        ("_u", _layer_op(u, b, s, precision, backward=True)),
        ("_v", _layer_op(v, b, s, precision, backward=True)),
        *closed,
    )


def build_training_step(
    workload: Workload, plan: Plan, options: BuildOptions | None = None, ops: ShardOps | None = None
) -> ExecutionGraph:
    """The execution graph of one steady-state training step (see the module docstring).

    ``ops``: the ``ShardOps`` of ``workload`` to work the shards' figures out with (a fresh one if
    None); a caller that costs the graph next passes one and hands its access models on to the
    cost model (``ShardOps.access_models``), which then need not make them again."""
    opt = options or BuildOptions()
    if opt.validate_plan:
        plan.validate(workload)
    bld = _Builder(workload, plan, opt, ops)
    framework = _framework(workload)
    framework.check_wire_dtype(bld.comm_dtype)  # the plan's wire, or the one the run asks for
    bld.runtime = framework
    bld.presort = framework.presorts_indices(plan)
    bld.index_overlap = not bld.presort and framework.backward_index_overlap(plan)
    bld.atomic = framework.atomic_embedding_update(plan, workload.training.embedding_optimizer)
    bld.a2a_algorithm = framework.pooled_all_to_all(plan)
    bld.node_size = framework.row_split_node_size(opt.ranks_per_node, plan)
    bld.global_input = framework.global_batch_input(plan)
    bld.per_rank_input = framework.per_rank_feature_input(plan)
    bld.lagged_input = framework.input_dist_follows_previous_copy
    if framework.shared_comm_queue:
        bld.input_lane = bld.dense_lane = LANE_EMBEDDING
    batch = workload.training.global_batch_size
    precision = workload.training.precision
    b = bld.local_batch(batch)
    s = DTYPE_BYTES[precision]
    if opt.include_input_pipeline:
        bld.input_pipeline(batch)
    layers = workload.dense_layers
    bottom = [layer for layer in layers if layer.part == "bottom"]
    after = [layer for layer in layers if layer.part != "bottom"]
    # A framework that runs the next batch's routed lookups and their exchange inside this step
    # (``Runtime.prefetches_routed_forward``: HugeCTR's inter-iteration overlap) gets them after
    # this step's routed backward; this step's interaction waits for the previous step's exchange
    # (``metadata["carried_dependencies"]``, ``recsim.graph.steps``). Only where every exchanged
    # shard is routed (the hybrid embedding's infrequent part) and a top part joins them.
    pipelined = (
        bld.world > 1
        and bool(after)
        and (plan.bottom_rank is None or not bottom)
        and framework.prefetches_routed_forward(plan)
        and all(sh.sharding in ("data_parallel", "distributed") for sh in plan.shards)
    )
    emb_fwd = bld.embedding_pass(batch, "forward", {}, select=_replicated if pipelined else None)
    bld.forward_lookups = emb_fwd
    # Replicated lookups feed the interaction directly: the exchange waits only for the others
    # (HugeCTR's infrequent network forward waits for its model forward, not the frequent one).
    exchanged, local_fwd = bld.split_replicated(emb_fwd)
    # Model-parallel bottom MLP (Plan.bottom_rank): one rank runs it for the global batch and its
    # output joins the pooled all-to-all; the other ranks start from the exchanged vectors.
    mp_rank = plan.bottom_rank if bottom else None
    if mp_rank is not None:
        mp_ids = bld.dense_forward(mp_rank, batch, bottom, [], precision, whole_batch=True)
        exchanged.setdefault(mp_rank, []).append(list(mp_ids.values())[-1])
    a2a_fwd = {} if pipelined else bld.pooled_exchange(batch, True, exchanged)
    # What each rank's interaction waits for besides its bottom MLP: the exchanged vectors and its
    # replicated lookups (a rank's own lookups are ahead of it on its compute stream anyway).
    joins = {r: [*a2a_fwd.get(r, []), *local_fwd.get(r, [])] for r in bld.built}

    last_bwd: dict[int, list[int]] = {}
    emb_grad_ready: dict[int, list[int]] = {}
    data_parallel = bottom if mp_rank is None else []
    # The same loss on every rank: one op, shared (as the layers' ops are). It reads the logit and
    # the label and writes the logit's gradient in place, per sample, as HugeCTR's
    # BinaryCrossEntropy_Kernel does (HugeCTR/src/loss.cu @ 33d3577a): ``BCE_FLOPS_PER_SAMPLE``.
    loss_op = Compute(
        "bce_loss",
        flops=BCE_FLOPS_PER_SAMPLE * b,
        bytes_read=2 * b * s,
        bytes_written=b * s,
        dtype=precision,
        category="elementwise",
    )
    # Every rank runs the same chain of dense nodes (forward, loss, backward) on its local batch:
    # worked out once (``_dense_chain``) and laid down per rank at the rank's first id.
    # The dense gradients' dtype (``Runtime.dense_gradient_dtype``: fp32 ``.grad`` under PyTorch's
    # mixed precision): the all-reduces' size, their DDP bucket split and their dtype.
    grad_dtype = framework.dense_gradient_dtype(precision)
    chain = _dense_chain(bld, batch, data_parallel, after, loss_op, precision, grad_dtype)
    entries, chain_deps, joined_at = chain.entries, chain.deps, chain.joined_at
    # The chain's columns, laid down per rank in bulk (``add`` per node, without its calls).
    # (Each column in C, ``map``; the lanes set where not 0.)
    chain_names = list(map(_FIRST, entries))
    chain_ops = list(map(_SECOND, entries))
    chain_phases = list(map(_THIRD, entries))
    chain_size = len(entries)
    chain_lanes = [0] * chain_size
    for k, lane in chain.lanes.items():
        chain_lanes[k] = lane
    columns = bld.columns
    # Each rank's first id: its chain's gradients are the chain's (``chain.grads``) at that offset.
    chain_base: dict[int, int] = {}
    joined_ids: dict[int, int] = {}  # rank -> its node that waits for the exchanged vectors
    joined_deps: list[tuple[int, ...]] = []  # each chain's joined node's dependencies, in order
    # Each chain node's dependencies as offsets from its rank's first id: the one ``chain.deps``
    # names (-1: none), then ``chain.extra_deps``'s. Most nodes wait for the node before them
    # alone: a rank's are made in C (``zip`` over a ``range``: one-tuples) and the others set after
    # (by their length, as tuple displays), rather than a tuple per node in a Python loop.
    # The template is made in C where it can be: each offset as a one-tuple (``zip``), then the
    # nodes without one (-1) and those with more (``extra``) set one by one; and the nodes that
    # do not wait for the node before them alone found by comparing it with ``(k - 1,)`` in C.
    extra = chain.extra_deps
    template: list[tuple[int, ...]] = list(zip(chain_deps))
    for k in itertools.compress(range(chain_size), map(_IS_NONE_OFFSET, chain_deps)):
        template[k] = ()
    for k, more in extra.items():
        template[k] = template[k] + tuple(more)
    before = zip(range(-1, chain_size - 1))  # (k - 1,) of each k
    odd = [
        (k, template[k])
        for k in itertools.compress(range(chain_size), map(operator.ne, template, before))
        if k != joined_at
    ]
    empties = [k for k, t in odd if not t]
    singles = [(k, t[0]) for k, t in odd if len(t) == 1]
    pairs = [(k, t[0], t[1]) for k, t in odd if len(t) == 2]
    longer = [(k, t) for k, t in odd if len(t) > 2]
    # The chains as one template (``recsim.graph.dep_rows``): the chained graph's index reads their
    # dependencies in arrays, tiled, rather than node by node, and the column of tuples leaves
    # them out (None each) until something reads it (``NodeColumns.leave_chain_deps``), as
    # nothing in an analytic evaluation does. Not where the joined node has dependencies of its
    # own after the joined ones (never: backward nodes have them): then the tuples, as before.
    region = bool(bld.built) and joined_at not in extra
    bld.lay_staged()  # the nodes before the chains
    # The chains follow one another, rank after rank: the columns every chain fills alike are
    # written once for all of them, after the loop (a call per column, not one per rank and column).
    first = bld.next_id
    for i, r in enumerate(bld.built):  # (a folded rank: its representative's chain stands for it)
        base = first + i * chain_size
        joined_ids[r] = base + joined_at
        if region:
            if 0 <= joined_at < chain_size:  # -1: no layer after the exchange (``_dense_chain``)
                # After the exchanged embeddings (and the rank's bottom MLP): ``add``'s dedup.
                joined = [*joins[r], *map(base.__add__, chain.joined_extra)]
                joined_deps.append(_without_repeats(joined))
        else:
            # The chain's ids as int objects made once, which its dependencies then share.
            made = list(range(base - 1, base + chain_size))
            chain_ids = made[1:]
            deps = list(zip(made[:-1]))
            for k in empties:
                deps[k] = ()
            for k, a in singles:
                deps[k] = (chain_ids[a],)
            for k, a, b2 in pairs:
                deps[k] = (chain_ids[a], chain_ids[b2])
            for k, t in longer:
                deps[k] = tuple([base + d for d in t])
            if 0 <= joined_at < chain_size:
                joined = [*joins[r], *[base + d for d in chain.joined_extra]]
                deps[joined_at] = _without_repeats(joined)
                joined_deps.append(deps[joined_at])
                if joined_at in extra:  # after its own, as others'
                    deps[joined_at] = (*deps[joined_at], *[base + d for d in extra[joined_at]])
            bld.deps.extend(deps)
            columns.ids.extend(chain_ids)
        # (Offsets made ids in C, ``map``: a comprehension is a Python call of its own.)
        emb_grad_ready[r] = list(map(base.__add__, chain.emb_grad_ready))
        last_bwd[r] = [base + chain.last, *map(base.__add__, chain.last_extra)]
        chain_base[r] = base
    chains = len(bld.built)
    if region:
        bld.deps.extend([None] * (chain_size * chains))
        columns.ids.extend(range(first, first + chain_size * chains))
    columns.ranks.extend(_interleave(map(itertools.repeat, bld.built, itertools.repeat(chain_size, chains))))
    columns.names.extend(chain_names * chains)
    columns.streams.extend([_COMPUTE] * (chain_size * chains))
    columns.ops.extend(chain_ops * chains)
    columns.lanes.extend(chain_lanes * chains)
    columns.phases.extend(chain_phases * chains)
    bld.next_id = first + chain_size * chains
    if region:
        columns.chain_region = DenseChainRegion(
            template,
            joined_at,
            list(chain_base.values()),
            joined_deps,
            list(chain_base),
            _COMPUTE,
            chain_lanes,
        )
        columns.leave_chain_deps()

    # Dense gradient all-reduce, in DDP buckets filled in backward order. A framework that groups
    # the replicated rows' gradients with the dense ones (HugeCTR's hybrid embedding: one all-reduce
    # of the grouped weight-gradient buffer) all-reduces them after the replicated backward instead.
    grouped = bld.world > 1 and framework.groups_replicated_gradients(plan)
    gradient_algorithm = framework.gradient_all_reduce
    bucket_ids: dict[int, list[int]] = defaultdict(list)
    # One group tuple for every rank's all-reduces: the cost model finds equal collectives on
    # shared tuples by identity instead of hashing the whole group each time.
    world_group = tuple(range(bld.world))
    # The ranks' all-reduces of a bucket are equal values (same name, size and group): one op each,
    # shared (a float size keyed with its sign, so that 0.0 and -0.0 stay apart).
    all_reduces: dict[tuple[str, float, float, str], Collective] = {}

    def all_reduce(key: str, size: float, dtype: str) -> Collective:
        found = all_reduces.get((key, size, math.copysign(1.0, size), dtype))
        if found is None or found.bytes != size:  # a NaN size finds nothing: a fresh op
            found = Collective(
                CollectiveOp.ALL_REDUCE, key, world_group, size, dtype, algorithm=gradient_algorithm
            )
            all_reduces[(key, size, math.copysign(1.0, size), dtype)] = found
        return found

    # The DDP buckets of the chain's gradients (sizes, and the chain node after which each is
    # ready), the same on every rank: worked out once, each rank's at its chain's offset (the same
    # sums in the same order as over the rank's own gradients), with their names.
    dense_caps = _bucket_caps(framework, opt, grad_dtype)
    chain_buckets = _buckets(chain.grads, *dense_caps)
    bucket_names = [f"allreduce_bucket{k}" for k in range(len(chain_buckets) + 1)]

    # A framework whose one NCCL communicator runs the backward exchange before the gradient
    # all-reduces (``Runtime.all_reduces_after_exchange``: HugeCTR's embedding collection): the
    # first all-reduce of a rank waits for its exchange, the others follow on their lane.
    after_exchange = bld.world > 1 and framework.all_reduces_after_exchange(plan)
    exchanged_by: dict[int, list[int]] = {}

    def dense_buckets(r: int, extra_bytes: float = 0.0, extra_deps: Sequence[int] = ()) -> None:
        """Rank ``r``'s gradient all-reduces; ``extra_bytes`` (grouped replicated rows, ready after
        ``extra_deps``) join the last bucket, or form one of their own on a rank without dense ones."""
        base = chain_base.get(r)
        buckets = [] if base is None else [(size, [base + last]) for size, last in chain_buckets]
        if extra_bytes:
            size, deps = buckets.pop() if buckets else (0.0, [])
            buckets.append((size + extra_bytes, [*deps, *extra_deps]))
        for k, (size, deps) in enumerate(buckets):
            name = bucket_names[k]
            op = all_reduce(name, size, grad_dtype)
            if k == 0 and exchanged_by.get(r):
                deps = [*deps, *exchanged_by[r]]
            bucket_ids[r].append(bld.add(r, name, _COMM, op, deps, "backward", lane=bld.dense_lane))

    def all_dense_buckets() -> None:
        """Every built rank's buckets, rank after rank: ``dense_buckets`` of each, laid down at once
        (``add_each``). A folded rank has no all-reduce part to keep (not an all-to-all)."""
        built = bld.built
        count = len(chain_buckets)
        names = bucket_names[:count]
        # ``all_reduce`` per node, as ``dense_buckets`` asks: the same op for every rank, but a NaN
        # size finds none, so that each rank's is its own then.
        shared = [all_reduce(names[k], size, grad_dtype) for k, (size, _) in enumerate(chain_buckets)]
        reuse = all(size == size for size, _ in chain_buckets)  # no NaN size
        made = bld.add_each(
            list(_interleave(map(itertools.repeat, built, itertools.repeat(count, len(built))))),
            names * len(built),
            _COMM,
            [
                op
                for i in range(len(built))
                for op in (
                    shared
                    if reuse or i == 0
                    else [all_reduce(names[k], size, grad_dtype) for k, (size, _) in enumerate(chain_buckets)]
                )
            ],
            [
                (chain_base[r] + last, *(exchanged_by.get(r, ()) if k == 0 else ()))
                for r in built
                for k, (_, last) in enumerate(chain_buckets)
            ],
            "backward",
            bld.dense_lane,
        )
        for i, r in enumerate(built):
            bucket_ids[r].extend(made[i * count : (i + 1) * count])

    if not grouped and bld.world > 1 and not after_exchange:
        all_dense_buckets()

    a2a_bwd = bld.pooled_exchange(batch, False, emb_grad_ready)
    if after_exchange:
        # The exchange's NCCL parts (``communicator_parts``): not a node-level row split's gathers,
        # copy kernels the all-reduce does not queue behind (until 2026-12-07 it waited for them).
        exchanged_by.update((r, list(ids)) for r, ids in bld.communicator_parts.items() if ids)
        if not grouped:
            all_dense_buckets()
    if mp_rank is not None:
        # The bottom MLP's output gradients come back in the backward all-to-all; its weights live
        # on one rank only, so they are not all-reduced.
        prev = a2a_bwd.get(mp_rank, []) or emb_grad_ready[mp_rank]
        for layer in reversed(bottom):
            op = _layer_op(layer, batch, s, precision, backward=True, input_grad=layer is not bottom[0])
            prev = [bld.add(mp_rank, f"{layer.name}_bwd", _COMPUTE, op, prev, "backward")]
        last_bwd[mp_rank] = [*last_bwd[mp_rank], *prev]
    # (The ranks with nodes: a folded rank's are neither made nor read.)
    emb_deps = {r: a2a_bwd.get(r, []) or emb_grad_ready[r] for r in bld.built}
    # Replicated lookups' gradients come straight from the interaction: no exchange to wait for.
    emb_bwd = bld.embedding_pass(batch, "backward", emb_deps, replicated_deps=emb_grad_ready)
    carried: dict[int, tuple[int, ...]] = {}
    ahead_ids: list[int] = []
    if pipelined:
        # The next batch's routed lookups read the rows this step's routed backward has just
        # updated (atomically, in place) and the indices this step's input pipeline brought; their
        # exchange then overlaps this step's gradient all-reduce and updates.
        routed_bwd, _ = bld.split_replicated(emb_bwd)
        deps = {
            r: [*routed_bwd.get(r, []), *([bld.input_ready[r]] if r in bld.input_ready else [])]
            for r in range(bld.world)
        }
        ahead = bld.embedding_pass(batch, "forward", deps, select=_routed)
        a2a_next = bld.pooled_exchange(batch, True, ahead)
        carried = {
            joined_ids[r]: tuple(a2a_next[r]) for r in range(bld.world) if a2a_next.get(r) and r in joined_ids
        }
        ahead_ids = sorted(
            {*(i for ids in ahead.values() for i in ids), *(i for ids in a2a_next.values() for i in ids)}
        )
    # Data-parallel shards (whole tables or replicated hot rows): their gradients are all-reduced
    # (dense, in the storage dtype) after the backward lookup, before the update, in DDP buckets as
    # TorchRec's data-parallel sharding does (it wraps those tables in DDP), or grouped with the
    # dense gradients (``grouped``, in the lookups' output dtype: HugeCTR's emtype).
    if bld.world > 1:
        by_rank: dict[int, list[tuple[int, str, float, str]]] = defaultdict(list)
        for (rank, number), nid in bld.replicated.items():
            shard = bld._shards[number]
            dtype = bld.reduced_dtype(shard)
            by_rank[rank].append((nid, shard.table, shard.rows * shard.dim * DTYPE_BYTES[dtype], dtype))
        reduced: dict[int, list[int]] = {}  # rank -> the all-reduces carrying its replicated gradients
        # (A folded rank's replicated gradients are its representative's. Without replicated
        # gradients and not grouped, a rank has no all-reduce to add here: none visited.)
        for r in bld.built if grouped or by_rank else ():
            if grouped:
                mine = by_rank.get(r, [])
                dense_buckets(r, sum(size for _, _, size, _ in mine), sorted({nid for nid, _, _, _ in mine}))
                if mine:
                    reduced[r] = bucket_ids[r][-1:]
                continue
            # DDP buckets tensors of one dtype together (its bucket assignment groups them by dtype
            # and device), so each bucket is all-reduced in the dtype its size was counted in.
            by_dtype: dict[str, list[tuple[str, float, int]]] = defaultdict(list)
            for nid, table, size, dtype in sorted(by_rank.get(r, [])):
                by_dtype[dtype].append((table, size, nid))
            k = 0
            for dtype, grads in by_dtype.items():
                # The dense gradients' dtype has had its first bucket (the dense chain's, ready
                # first); another dtype starts its own limits (the reducer keeps one per dtype).
                first, cap = _bucket_caps(framework, opt, dtype)
                for size, last_node in _buckets(grads, cap if dtype == grad_dtype else first, cap):
                    key = f"dp_allreduce_bucket{k}"
                    k += 1
                    op = all_reduce(key, size, dtype)
                    deps = [last_node]
                    if not bucket_ids[r] and exchanged_by.get(r):  # the rank's first all-reduce
                        deps.extend(exchanged_by[r])
                    nid = bld.add(r, key, _COMM, op, deps, "backward", lane=bld.dense_lane)
                    bucket_ids[r].append(nid)
                    reduced.setdefault(r, []).append(nid)
        bld.replicated_updates(batch, reduced)

    optimizer = workload.training.optimizer
    bottom_params = sum(layer.params for layer in bottom)
    optimizer_ops: dict[int, Compute] = {}  # by parameter count: one op shared by the ranks
    # The dense parameters as the framework trains them (a padded layer's extra weights too): once.
    all_dense_params = sum(bld.layer_params(layer) for layer in workload.dense_layers)
    step_ops: list[Compute] = []  # each built rank's, in order (a folded rank: no node to add)
    for r in bld.built:
        # A model-parallel bottom MLP's weights are updated on its rank only.
        dense_params = all_dense_params - (bottom_params if mp_rank not in (None, r) else 0)
        state = OPTIMIZER_STATE[optimizer]
        step_op = optimizer_ops.get(dense_params)
        if step_op is None:
            # Priced in fp32, 4 B an element, for the weights, gradients and states alike whatever
            # the training precision (``dtype``): the read (2 + state) and written (1 + state)
            # tensors of OPTIMIZER_STATE's count.
            step_op = optimizer_ops[dense_params] = Compute(
                f"{optimizer}_step",
                flops=OPTIMIZER_FLOPS_PER_PARAM[optimizer] * dense_params,
                bytes_read=(2 + state) * dense_params * 4.0,
                bytes_written=(1 + state) * dense_params * 4.0,
                dtype="fp32",
                category="optimizer",
            )
        step_ops.append(step_op)
    after_bwd = [[*last_bwd[r], *bucket_ids[r]] for r in bld.built]
    bld.add_each(bld.built, "dense_optimizer", _COMPUTE, step_ops, after_bwd, "optimizer")
    bld.graph.metadata = {
        **bld.metadata("training"),
        "global_batch_size": batch,
        "local_batch_size": b,
        "precision": precision,
        "comm_dtype": bld.comm_dtype,
        "bottom_rank": mp_rank,
        # How far ahead of the GPU the next batch's input pipeline may run (``recsim.graph.steps``).
        "input_prefetch": "host_order" if framework.host_orders_input else "one_batch",
    }
    if carried or bld.carried_input:
        # node -> the nodes of the previous step it waits for (``recsim.graph.steps``): the
        # routed exchange's, and the input dists' copies.
        bld.graph.metadata["carried_dependencies"] = {**bld.carried_input, **carried}
    if carried:
        # The nodes that work for the next batch: a step ends with its own batch's last node
        # (``recsim.engine.timeline.step_window``), not with the next one's exchange.
        bld.graph.metadata["next_batch_nodes"] = tuple(ahead_ids)
    bld.lay_staged()
    return bld.graph


def _without_repeats(deps: Sequence[int]) -> tuple[int, ...]:
    """``deps`` as a tuple, repeats left out (``add``'s de-duplication: no dict for two or fewer)."""
    n = len(deps)
    return tuple(deps) if n < 2 or (n == 2 and deps[0] != deps[1]) else tuple(dict.fromkeys(deps))


def _replicated(shard: Shard) -> bool:
    return shard.sharding == "data_parallel"


def _routed(shard: Shard) -> bool:
    return shard.sharding != "data_parallel"


@dataclass(frozen=True)
class _DenseChain:
    """One rank's dense nodes, as offsets from the rank's first id (the same on every rank).

    ``entries``: (name, op, phase) of each node in order; ``deps[k]``: the offset node ``k`` waits
    for (-1: none), except node ``joined_at``, which waits for the rank's exchanged embeddings and
    ``joined_extra`` (the last bottom layer's forward); ``emb_grad_ready``: the node(s) after which
    the embedding gradients exist; ``last``: the last backward node; ``grads``: (layer, bytes,
    node) of each layer with parameters, in backward order; ``lanes``: the compute lane of each
    node not on lane 0 (``LANE_WGRAD``); ``extra_deps``: the nodes some nodes wait for besides
    ``deps``'s; ``last_extra``: those the backward's end waits for besides ``last``.
    """

    entries: list[tuple[str, Compute, str]]
    deps: list[int]
    joined_at: int
    joined_extra: list[int]
    emb_grad_ready: list[int]
    last: int
    grads: list[tuple[str, float, int]]
    lanes: dict[int, int] = dataclasses.field(default_factory=dict)
    extra_deps: dict[int, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    last_extra: list[int] = dataclasses.field(default_factory=list)


def _dense_chain(
    bld: _Builder,
    batch: int,
    bottom: Sequence[Layer],
    after: Sequence[Layer],
    loss_op: Compute,
    precision: str,
    grad_dtype: str,
) -> _DenseChain:
    """The dense chain of every rank: what ``dense_forward`` for ``bottom`` (no dependencies) then
    ``after`` (behind the exchange and the bottom's last node), the loss and the backward in
    reverse order add for one rank, with ids counted from 0 (the same layer-name maps, so a layer
    name used twice resolves as there)."""
    b = bld.local_batch(batch)
    s = bld.dense_bytes(precision)
    entries: list[tuple[str, Compute, str]] = []
    deps: list[int] = []
    bottom_ids: dict[str, int] = {}
    for layer in bottom:
        for suffix, op in bld.layer_ops(layer, b, s, precision, backward=False):
            deps.append(len(entries) - 1 if entries else -1)
            bottom_ids[layer.name] = len(entries)  # the layer's output: its last node
            entries.append((f"{layer.name}{suffix}_fwd", op, "forward"))
    joined_at = len(entries) if after else -1
    rest_ids: dict[str, int] = {}
    # The first cross layer's forward opens its stack's, backward closes it (``_cross_layer_ops``).
    first_cross = next((x for x in after if x.op == "dcnv2"), None)
    for layer in after:
        opens = layer is first_cross
        for suffix, op in bld.layer_ops(layer, b, s, precision, backward=False, opens_stack=opens):
            deps.append(-1 if len(entries) == joined_at else len(entries) - 1)
            rest_ids[layer.name] = len(entries)
            entries.append((f"{layer.name}{suffix}_fwd", op, "forward"))
    last = list(rest_ids.values())[-1]
    deps.append(last)
    entries.append(("loss", loss_op, "forward"))
    prev = len(entries) - 1
    emb_grad_ready: list[int] = []
    grads: list[tuple[str, float, int]] = []
    lanes: dict[int, int] = {}
    extra: dict[int, tuple[int, ...]] = {}

    def push(name: str, op: Compute, dep: int, more: Sequence[int] = ()) -> int:
        deps.append(dep)
        if more:
            extra[len(entries)] = tuple(more)
        entries.append((name, op, "backward"))
        return len(entries) - 1

    # HugeCTR's async weight gradients of the cross layers (``Runtime.async_cross_wgrad``): each
    # layer's two weight-gradient GEMMs on ``LANE_WGRAD``, after its input-gradient GEMMs. Both kinds
    # of GEMM fill the SMs, so one does not run beside another for free: the next cross layer's
    # input-gradient GEMMs wait for them (``wgrad_done``), and they overlap only that layer's
    # memory-bound ``fused_mul_fma3``. The stack's end waits for the last layer's (``join``: HugeCTR
    # joins the wgrad stream after the closing ``matrix_add``), which then hide nothing.
    async_wgrad = bld.runtime is not None and bld.runtime.async_cross_wgrad
    # HugeCTR's async weight gradients of the MLP layers (``Runtime.async_mlp_wgrad``), contended
    # the same way: each linear layer's wgrad GEMM on ``LANE_WGRAD`` after its dgrad GEMM, the next
    # matrix product on lane 0 (a linear dgrad, a cross layer's dH, the dot interaction's backward:
    # ``_fills_sms``) waiting for it (``wgrad_done``), so it overlaps only the memory-bound kernels
    # in between (a cross layer's element-wise ``fused_mul_fma3``, the concatenation's slices) and,
    # after the first dense layer's (which has no dgrad), the rest of the step up to the all-reduce
    # and the optimizer (the embedding backward, the collectives). In HugeCTR the
    # wgrad waits only for the layer's upstream gradient and the next dgrad only for this dgrad
    # (MLPLayer::bprop, src/layers/mlp_layer.cu): both GEMMs fill the SMs, and the engines give
    # each lane the whole GPU, so running them side by side would count the GPU twice.
    async_mlp = bld.runtime is not None and bld.runtime.async_mlp_wgrad
    wgrad_done: list[int] = []
    join: list[int] = []
    for layer in reversed([*bottom, *after]):
        if layer.part == "bottom" and not emb_grad_ready:
            # the interaction's backward made the embedding grads
            emb_grad_ready = [prev, *join]
        # The first bottom layer reads the dense features, which need no gradient.
        first = bool(bottom) and layer is bottom[0]
        crossed = async_wgrad and layer.op == "dcnv2"
        split = async_mlp and layer.op == "linear"
        ops = bld.layer_ops(
            layer,
            b,
            s,
            precision,
            backward=True,
            input_grad=not first,
            closes_stack=layer is first_cross,
            async_wgrad=crossed or split,
        )
        if split:
            *dgrad, (_, wgrad) = ops
            if dgrad:  # behind the previous layer's weight gradient (contended, above)
                prev = push(f"{layer.name}_dgrad_bwd", dgrad[0][1], prev, [*join, *wgrad_done])
                join = []
            # After the layer's dgrad (or, without one, its upstream gradient's): the lane runs in
            # order, so its last node is every weight gradient so far done.
            last_wgrad = push(f"{layer.name}_wgrad_bwd", wgrad, prev)
            lanes[last_wgrad] = LANE_WGRAD
            wgrad_done = [last_wgrad]
            if layer.params:
                grads.append((layer.name, bld.layer_params(layer) * DTYPE_BYTES[grad_dtype], last_wgrad))
            continue
        if crossed:
            (_, fma3), (_, u_dgrad), (_, v_dgrad), (_, u_wgrad), (_, v_wgrad), *closed = ops
            k = push(f"{layer.name}_bwd", fma3, prev, join)
            k = push(f"{layer.name}_u_dgrad_bwd", u_dgrad, k, wgrad_done)
            prev = push(f"{layer.name}_v_dgrad_bwd", v_dgrad, k)
            lanes[push(f"{layer.name}_u_wgrad_bwd", u_wgrad, prev)] = LANE_WGRAD
            last_wgrad = push(f"{layer.name}_v_wgrad_bwd", v_wgrad, prev)
            lanes[last_wgrad] = LANE_WGRAD
            # The lane runs in order: its last node is both weight gradients done.
            wgrad_done, join = [last_wgrad], []
            if layer is first_cross:
                wgrad_done, join = [], [last_wgrad]
            for suffix, op in closed:  # the stack's input gradient, after the stack's end
                prev = push(f"{layer.name}{suffix}_bwd", op, prev, join)
                join = []
            if layer.params:
                grads.append((layer.name, bld.layer_params(layer) * DTYPE_BYTES[grad_dtype], last_wgrad))
            continue
        ready = prev
        for suffix, op in ops:
            # A matrix product on the tensor cores (the dot interaction's backward) fills the SMs
            # as a GEMM does (``_fills_sms``): it waits for the weight gradient still pending, as a
            # dgrad would, not the other way round: HugeCTR's DLRM v1 launches the top MLP's first
            # wgrad on the overlap stream before that layer's dgrad (FusedReluBiasFullyConnected-
            # Layer::bprop, src/layers/fused_relu_bias_fully_connected_layer.cu) and the interaction
            # after the dgrad, so the wgrad's blocks are queued ahead of the interaction's.
            more = join
            if wgrad_done and _fills_sms(op):
                more, wgrad_done = [*join, *wgrad_done], []
            prev = push(f"{layer.name}{suffix}_bwd", op, prev, more)
            join = []
            if suffix != "_concat":  # the stack's input gradient is no weight's
                ready = prev
        # A layer's gradients are ready after its last backward node that makes one.
        if layer.params:
            grads.append((layer.name, bld.layer_params(layer) * DTYPE_BYTES[grad_dtype], ready))
    # The backward's end (the dense optimizer) also waits for the weight gradients still on their
    # lane: HugeCTR's main stream joins the overlap stream after the MLP's first layer (MLPLayer::
    # bprop, ``set_wgrad_event_sync`` at i == 0).
    return _DenseChain(
        entries,
        deps,
        joined_at,
        list(bottom_ids.values())[-1:],
        emb_grad_ready or [prev, *join],
        prev,
        grads,
        lanes,
        extra,
        [*join, *(wgrad_done if async_mlp else [])],
    )


def _framework(workload: Workload) -> Runtime:
    """The workload's framework runtime (``training.runtime``): what it does to the graph's shape."""
    from recsim.graph.runtime import runtime  # runtime imports this module

    return runtime(workload.training.runtime)


def _bucket_caps(framework: Runtime, opt: BuildOptions, dtype: str) -> tuple[float, float]:
    """(first bucket's cap, the others') of gradients in ``dtype``: ``opt``'s where it sets them,
    else the framework's (``Runtime.gradient_bucket_caps``); a framework without a first cap of its
    own fills the first bucket to the others' cap."""
    own_first, own_cap = framework.gradient_bucket_caps(dtype)
    cap = own_cap if opt.bucket_bytes is None else opt.bucket_bytes
    if opt.first_bucket_bytes is not None:
        return opt.first_bucket_bytes, cap
    return (cap if own_first is None else own_first), cap


def _buckets(grads: Sequence[tuple[str, float, int]], first: float, cap: float) -> list[tuple[float, int]]:
    """DDP bucketing in backward (ready) order: (bucket bytes, node after which it is ready). A
    bucket closes once it holds ``first`` bytes (the first) or ``cap`` (the others); the remainder
    forms the last."""
    out: list[tuple[float, int]] = []
    size = 0.0
    last = -1
    limit = first
    for _, nbytes, nid in grads:
        size += nbytes
        last = nid
        if size >= limit:
            out.append((size, last))
            size = 0.0
            limit = cap
    if size > 0:
        out.append((size, last))
    return out


def build_inference_batch(
    workload: Workload, plan: Plan, batch: int | None = None, options: BuildOptions | None = None
) -> ExecutionGraph:
    """One inference batch: lookups, output all-to-all, dense forward (no input pipeline overlap)."""
    if workload.inference is None and batch is None:
        raise InfeasibleError(f"workload {workload.name!r} has no 'inference' settings; give a batch size")
    opt = options or BuildOptions(include_input_pipeline=False)
    plan.validate(workload)
    bld = _Builder(workload, plan, opt)
    bld.inference = True  # its tables in FBGEMM's inference TBE (``Embedding.inference``)
    size = batch or (workload.inference.batch_size if workload.inference else 1)
    global_batch = size * bld.world
    precision = workload.inference.precision if workload.inference else "fp32"
    emb = bld.embedding_pass(global_batch, "forward", {})
    # As in training: the exchange waits for the lookups it sends, the dense part also for the
    # replicated ones.
    exchanged, local = bld.split_replicated(emb)
    a2a = bld.pooled_exchange(global_batch, True, exchanged)
    layers = workload.dense_layers
    bottom = [layer for layer in layers if layer.part == "bottom"]
    after = [layer for layer in layers if layer.part != "bottom"]
    for r in range(bld.world):
        bottom_ids = bld.dense_forward(r, global_batch, bottom, [], precision)
        joined = [*a2a.get(r, []), *local.get(r, []), *(list(bottom_ids.values())[-1:])]
        bld.dense_forward(r, global_batch, after, joined, precision)
    bld.graph.metadata = {
        **bld.metadata("inference"),
        "batch_size_per_rank": size,
        "precision": precision,
    }
    bld.lay_staged()
    return bld.graph


def total_flops(graph: ExecutionGraph) -> float:
    """Sum of Compute FLOPs over every rank (embedding pooling not included)."""
    return math.fsum(n.op.flops for n in graph.nodes if isinstance(n.op, Compute))


class FusedSums(NamedTuple):
    """A fused lookup's sums (``fused_sums``): rows, width, largest batch, lookups, unique rows, its
    parts (each op's table and lookups) and bags."""

    rows: float
    width: int
    largest_batch: int
    lookups: float
    unique_rows: float
    parts: list[tuple[str, float]]
    bags: float


def fused_sums(ops: Sequence[Embedding]) -> FusedSums:
    """What a table-batched (TBE) lookup of ``ops`` is made of (``_Builder.embedding_pass``): the
    summed rows, lookups and unique rows, the lookup-weighted mean width, the largest batch, the
    parts (each op's table and lookups, which its access model mixes: ``CostModel.access``) and its
    bags, one per sample and table (FBGEMM's B x T) or the part's share of them, counted in vectors
    of the op's width, so the pooled bytes are the tables' own."""
    lookups = sum(o.lookups for o in ops)
    dim = sum(o.lookups * o.dim for o in ops) / lookups if lookups else ops[0].dim
    width = max(1, round(dim))
    return FusedSums(
        sum(o.rows for o in ops),
        width,
        max(o.batch for o in ops),
        lookups,
        sum(o.unique_rows or 0.0 for o in ops),
        [(o.table, o.lookups) for o in ops],
        sum((o.batch if o.bags is None else o.bags) * o.dim for o in ops) / width,
    )


def fused_embedding(
    ops: Sequence[Embedding], table: str, tier: str, sums: FusedSums | None = None
) -> Embedding:
    """The one lookup op (named ``table``, on ``tier``) FBGEMM runs for ``ops`` of one rank, pass and
    fused group (``recsim.graph.ir.fused_group``), from their ``fused_sums`` (worked out if None).
    The graph builder's fused node, and the planner's estimate of a rank's shared cache."""
    rows, width, largest_batch, lookups, unique, _, bags = sums if sums is not None else fused_sums(ops)
    first = ops[0]
    return Embedding(
        table=table,
        pass_=first.pass_,
        rows=rows,
        dim=width,
        dtype=first.dtype,
        batch=largest_batch,
        lookups=lookups,
        unique_rows=unique,
        tier=tier,
        optimizer=first.optimizer,
        bags=bags,
        output_dtype=first.output_dtype,
        atomic=first.atomic,
        inference=first.inference,
    )
