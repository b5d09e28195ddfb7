"""Framework runtimes: who issues the GPU work of a training step, and what that costs the host.

``training.runtime`` of a workload names one (a registry keyed by name, like the other extension
points):

* ``fused`` (the default): a fused training loop (HugeCTR, NVIDIA's MLPerf DLRM submissions):
  kernels are issued ahead of the GPU at no modelled CPU cost, bias and activation run inside the
  GEMMs (cuBLASLt epilogues, forward and backward; a DCNv2 cross layer's product with x0 and
  residual run as HugeCTR's fused element-wise kernels, ``recsim.graph.build._cross_layer_ops``);
  each kernel still pays
  ``accelerator.kernel_launch``, the GPU-side gap between queued kernels (``recsim.cost.launch``).
  The graph is left as it is.
* ``cuda_graphs``: PyTorch kernels captured in a CUDA graph and replayed every step, as NVIDIA
  DeepLearningExamples' DLRM does: no per-op host cost, but PyTorch's unfused kernels (below) and a
  ``torch.cuda.synchronize()`` before each step (a ``sync:step`` host node after every device node of
  the rank's previous step, which the step's first nodes wait for), so steps do not overlap.

``fused`` and ``cuda_graphs`` send pooled embeddings in the dense half precision under mixed
precision (``Runtime.wire_dtype``: HugeCTR's mixed precision emits fp16 embedding vectors, DLE casts
its all-to-all payload to fp16), which is the planner's default wire format (``comm_dtypes: [auto]``).
Neither has a quantised wire (``Runtime.wire_dtypes``): an int8 or fp8 one is refused for them
(a plan's or ``--comm-dtype``'s); ``eager`` sends those with TorchRec's qcomm codecs.
* ``eager``: eager PyTorch with TorchRec's ``TrainPipelineSparseDist`` (pooled embeddings travel
  in fp32 unless a plan or ``--comm-dtype`` says otherwise: TorchRec's default without qcomm
  codecs). One host thread per rank dispatches every operator in program order, so a GPU node
  cannot start before the CPU has dispatched it, and the GPU idles whenever dispatch is slower than
  the kernels (small batches).
  ``apply_runtime`` adds, per rank and step, a chain of ``Host`` nodes on the rank's host stream:

  1. the loop's fixed CPU work (zero_grad, the data loader's ``__next__``, the H2D copies);
  2. one dispatch node in front of every forward node (a dense layer: ``linear_forward_s``; each
     of a DCNv2 cross layer's two GEMMs too, its element-wise node nothing; the other nodes share
     ``forward_rest_s`` by ``FORWARD_PIECES``);
  3. with a ``dot`` interaction, a **sync** before the interaction forward and another before its
     backward: TorchRec's ``InteractionArch`` keeps its ``triu_indices`` on the CPU (a plain
     attribute, not a buffer), so ``aten::index`` (forward) and ``index_put_`` (backward, on the
     autograd thread) copy it to the GPU and wait in ``cudaStreamSynchronize`` until the GPU has
     finished everything the interaction reads (the trace shows 1-6.6 ms of it inside
     ``## forward ##``);
  4. the next batch's ``sparse_data_dist`` (``input_dist_s``) and a **sync** on its splits
     all-to-all, which NCCL runs after this step's forward all-to-all on the same communicator (the
     input-dist collective is moved after the forward nodes in its queue accordingly); neither
     where the input dist routes nothing (one GPU; every table data-parallel), and no collective
     of fewer than two ranks is dispatched (``_moves_nothing``);
  5. one dispatch node in front of every backward node (``linear_backward_s`` per dense layer, two
     per cross layer; the other nodes share ``backward_rest_s`` by ``BACKWARD_PIECES``);
  6. the dense optimizer: ``optimizer_op_s`` per aten op, ``OPTIMIZER_OPS_PER_TENSOR`` ops per
     parameter tensor (a weight and a bias per dense layer, three tensors per cross layer).

  The calibration trace's plan has one routed sharding type; TorchRec builds an input dist, a
  lookup and an output dist per sharding type (torchrec/distributed/embeddingbag.py), so each
  further routed type of the plan (graph metadata ``routed_sharding_types``: row-wise beside
  table-wise, say; data-parallel tables route nothing) adds ``input_dist_s`` to 4 and its output
  side to the exchange pieces of 2 and 5 (``group_forward_s``, ``group_backward_s``).

  Where a dispatch launches several element-wise or batched-product kernels (``Compute.kernels``:
  the dense optimizer's for-loop, the dot interaction's products and copies), the GPU starts them
  as they are launched: the first waits for the first launch's share of the dispatch only, the
  last for all of it (``_Rewriter._overlap_launches``).

  The CPU seconds are measured on real TorchRec traces (``recsim.graph.eager_calibration``).

PyTorch's unfused kernels (``eager`` and ``cuda_graphs``): ``nn.Linear`` is an ``addmm`` (bias in
the GEMM) followed by a separate ``relu`` kernel that reads and writes the layer's output, and its
backward runs ``threshold_backward`` and a bias-gradient ``sum`` besides the two GEMMs (both seen in
the TorchRec traces); ``apply_runtime`` adds these memory-bound epilogue kernels (``_epilogue``)
after every Linear's forward and before its backward, except for the model's last Linear (its logit
goes to the loss without an activation). A DCNv2 cross layer's element-wise part (bias, product with
x0, residual) runs as kernels of its own (``_cross_epilogue``), in place of the fused kernel the
graph has for it (HugeCTR's). Under ``eager``, TorchRec's dot interaction likewise runs as its
``bmm`` and copies (``_torch_dot_interaction``: two nodes each way, the second after the first,
dispatched with it); DLE's (``cuda_graphs``) is NVIDIA's fused kernel pair, as the graph has it.

What a framework can run and how it communicates shapes the graph when it is built
(``recsim.graph.build`` asks the runtime): ``plan_features`` are the plan features it supports
(``auto`` plans only with them: HugeCTR routes infrequent rows, one-hot tables only; DLE runs the
bottom MLP model-parallel; TorchRec neither); under HugeCTR's hybrid embedding the backwards add
their gradients with atomics under SGD, as the MLPerf configs train (``atomic_embedding_update``:
no index sort), and under another optimizer the data reader sorts the next batch's indices
(``presorts_indices``); the frequent rows' gradients join the dense gradient all-reduce
(``groups_replicated_gradients``) and the pooled exchange is its hierarchical all-to-all
(``pooled_all_to_all``); NVIDIA's MLPerf recipes reduce gradients with SHARP
(``gradient_all_reduce``: CollNet where the IB switches can).

Loss scaling (both PyTorch runtimes, ``precision: fp16``): ``torch.cuda.amp.GradScaler`` runs
outside the fused kernels. Before the dense optimizer, ``unscale_`` checks and rescales every dense
gradient (``_amp_foreach_non_finite_check_and_unscale_``: reads and writes the fp32 gradients), and
``scaler.step`` reads ``found_inf`` back to the host (``.item()``, a **sync**) before it calls the
optimizer. A materialised sparse embedding gradient (``sparse_sgd``; DLE calls
``scaler.unscale_(embedding_optimizer)``) is unscaled the same way: its COO values, one row per
lookup, are read and written once more. (DLE unscales it after the dense step and before the sparse
update, which ``sparse_sgd`` folds into the backward lookup node; on one stream the order does not
change the sum.) bf16 needs no scaling; the fused loop (HugeCTR) folds the scale into its optimizer
kernels.

The pass runs on the chained graph (``recsim.graph.steps``): nodes are renumbered so that each
step keeps a contiguous id block (``metadata["step_stride"]`` is updated), and the host chain of
step ``s + 1`` follows that of step ``s`` in the same in-order queue, so the host runs ahead of the
GPU across steps until a sync stops it.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from recsim.errors import ConfigError, InfeasibleError
from recsim.graph.build import DDP_BUCKET_BYTES, DDP_FIRST_BUCKET_BYTES, OPTIMIZER_STATE, trained_dense_layers
from recsim.graph.eager_calibration import OPTIMIZER_OPS_PER_TENSOR, TORCHREC_V100, EagerCosts
from recsim.graph.ir import Collective, CollectiveOp, Compute, Embedding, ExecutionGraph, Host, Node, Stream
from recsim.planner.types import COMM_DTYPES, Plan
from recsim.workload.spec import (
    DTYPE_BYTES,
    FLOAT_DTYPES,
    Layer,
    Workload,
    gradient_dtype,
    wire_bytes_per_value,
)

#: The pieces of the forward (and backward) CPU time that are not dense layers in the calibration
#: trace, each a quarter of ``forward_rest_s`` (``backward_rest_s``): the embedding lookups, the
#: pooled-embedding exchange, the interaction, and the loss (backward: the gradient all-reduce). A
#: piece's share is split over its nodes on the rank, so the host cost of a step follows the model,
#: not how many groups a plan cuts the tables into; a piece the step does not have (no exchange on
#: one GPU) costs nothing.
FORWARD_PIECES = ("embedding", "exchange", "interaction", "other")
BACKWARD_PIECES = ("embedding", "exchange", "interaction", "gradients")


def _moves_nothing(op: object) -> bool:
    """Whether ``op`` is a collective that does not run: a group of one (a single-GPU run has no
    process group: DLE's DLRM builds none for one GPU, TorchRec's exchange of a one-rank plan is a
    local copy) or an input dist that routes no index (every table data-parallel: TorchRec's
    ``DpSparseFeaturesDist`` returns its input, no splits all-to-all). The host dispatches nothing
    for it and waits on no splits."""
    if not isinstance(op, Collective):
        return False
    if len(op.group) < 2:
        return True
    # ``input_dist``'s ``bytes`` is the whole exchange (every part carries the same total); the
    # chained graph keys it ``input_dist#<step>``.
    return op.key.split("#", 1)[0] == "input_dist" and op.bytes == 0.0


def _piece(node: Node) -> str:
    op = node.op
    if isinstance(op, Embedding):
        return "embedding"
    if isinstance(op, Collective):
        return "gradients" if op.op is CollectiveOp.ALL_REDUCE and node.phase == "backward" else "exchange"
    if isinstance(op, Compute) and (op.category in ("interaction", "sequence") or node.phase == "backward"):
        return "interaction"
    return "other"


class Runtime(ABC):
    """A framework runtime: transforms a chained training graph to add its host-side work."""

    name: ClassVar[str]
    #: Whether the framework sends pooled embeddings in the dense half precision under mixed
    #: precision (its embedding outputs feed fp16/bf16 layers), or in fp32 unless told otherwise.
    half_precision_wire: ClassVar[bool] = False
    #: Whether the lookups write their pooled vectors (and read their gradients) in the half
    #: precision of mixed-precision training directly; False: at the tables' dtype, cast for the wire
    #: by kernels of their own.
    narrow_lookup_output: ClassVar[bool] = False
    #: Whether a lookup of a part of a table (routed rows, a popularity slice) writes only the bags
    #: that drew one of its rows; False: every sample's bag, empty ones included (FBGEMM's TBE takes
    #: ``B x T + 1`` offsets and writes a dense ``B x D`` output). The exchange sends only the hit
    #: bags either way (``shard_ops.pooled_exchange``): a hot/cold split that runs on FBGEMM
    #: (FlexShard's) compacts the cold owner's output before it sends it.
    pools_hit_bags_only: ClassVar[bool] = False
    #: Plan features beyond whole, column and row shards that the framework can run (``PLAN_FEATURES``);
    #: ``auto`` plans only with these (a plan named explicitly is simulated as a what-if).
    plan_features: ClassVar[frozenset[str]] = frozenset()
    #: Whether the host's own program order bounds how far ahead the input pipeline runs: a
    #: dispatch thread that loads each batch at the top of its step, after launching the previous
    #: step and waiting at its syncs (``eager``). False: the loader works ahead of the GPU on its
    #: own, into a double buffer, so the chained steps bound it one batch deep
    #: (``recsim.graph.steps``: graph metadata ``input_prefetch``).
    host_orders_input: ClassVar[bool] = False
    #: Whether the framework issues all its collectives (input dist, pooled exchanges, gradient
    #: all-reduces) on one process group, hence one NCCL communicator and stream per device, where
    #: they run strictly in issue order: one comm lane, in program order (``recsim.graph.build``
    #: puts them on it; the runtime pass orders them as the program issues them). False: each kind
    #: queues on a lane of its own.
    shared_comm_queue: ClassVar[bool] = False
    #: Whether the framework runs a DCNv2 cross layer's backward weight-gradient GEMMs on a stream
    #: of their own, beside the input-gradient chain (``recsim.graph.build._dense_chain``). The
    #: engines do not share the SMs between a rank's queues, and a GEMM beside a GEMM would run
    #: nearly as slowly as after it (each fills the SMs), so the builder lets the weight gradients
    #: overlap only the next layer's memory-bound element-wise kernel: contended, not free.
    async_cross_wgrad: ClassVar[bool] = False
    #: Whether the framework runs each MLP linear layer's backward weight-gradient GEMM on that
    #: side stream too, its input-gradient GEMM on the main one (``recsim.graph.build._dense_chain``,
    #: contended the same way: the next matrix product on the main lane, a layer's input gradient
    #: or the dot interaction's tensor-core backward, waits for it).
    async_mlp_wgrad: ClassVar[bool] = False
    #: Whether the next batch's input dist waits for the H2D copy of the previous step rather than
    #: this step's: a pipeline three batches deep, copying batch i + 2 while it distributes batch
    #: i + 1's indices (already on the device) and trains on batch i.
    input_dist_follows_previous_copy: ClassVar[bool] = False
    #: Whether the framework reads its input with HugeCTR's raw AsyncReaders, whose record buffers
    #: and split tensors stay on every GPU (``recsim.planner.reader_buffers``: memory only).
    hugectr_async_reader: ClassVar[bool] = False
    #: Whether the framework builds a second, forward-only copy of the network for evaluation at
    #: model construction, its activations sized by the evaluation batch and held for the run
    #: beside the training network's (``recsim.planner.eval_network``: memory only, and only with
    #: a ``training.eval_batch_size``).
    separate_eval_network: ClassVar[bool] = False
    #: Whether the framework's loader copies the next batch to the device before this step runs,
    #: so that every rank holds two batches of its input (``recsim.planner.reader_buffers``,
    #: ``planner.storage.held_input_batches``: memory only).
    prefetches_next_batch: ClassVar[bool] = False
    #: Whether a concatenation's backward is views of its output's gradient, no kernel: PyTorch's
    #: ``torch.cat`` backward is ``cat_tensors_backward`` (torch/csrc/autograd/FunctionsManual.cpp,
    #: named in tools/autograd/derivatives.yaml), ``narrow`` slices, so the layers before the cat
    #: read their gradients where the layer after it wrote them. False: HugeCTR's concat layer copies
    #: them out, ``concat_kernel(forward=false)`` (src/layers/concat_layer.cu). (A DCNv2 stack's
    #: concatenation under TorchRec keeps a backward kernel, split's: ``_torch_dcn_concat``.)
    cat_backward_is_view: ClassVar[bool] = False

    #: The wire dtypes the framework can send pooled embeddings in (``COMM_DTYPES``): all of them
    #: where it has codecs for the quantised ones (TorchRec's qcomm); the others send the vectors
    #: as the model holds them, in fp32 or a half precision, with no quantised communication.
    wire_dtypes: ClassVar[frozenset[str]] = frozenset(COMM_DTYPES)
    #: What the framework is, for its refusals ("HugeCTR").
    framework: ClassVar[str] = ""

    def dot_output_padding(self, width: int) -> int:
        """The zero columns the framework's dot interaction writes after its ``width`` outputs (the
        bottom MLP's vector and the pairs), which the top MLP's first layer reads as inputs of its
        own (``recsim.graph.build._padded``): none by default, as TorchRec's ``InteractionArch``
        writes ``D + F (F - 1) / 2`` values and its over-arch reads that many (torchrec/models/
        dlrm.py)."""
        return 0

    def unsupported(self, plan: Plan, workload: Workload) -> list[str]:
        """The features of ``plan`` this framework cannot run for ``workload`` (empty if it runs it);
        a wire dtype it cannot send (``wire_dtypes``) among them."""
        out = [f for f in plan_features(plan) if f not in self.plan_features]
        if plan.comm_dtype not in self.wire_dtypes:
            out.append(f"{plan.comm_dtype}-wire")
        return out

    def refusal(self, plan: Plan, workload: Workload) -> str | None:
        """Why this framework cannot run ``plan`` for ``workload`` (``unsupported``), or None."""
        missing = self.unsupported(plan, workload)
        if not missing:
            return None
        return f"training.runtime {self.name!r} cannot run {' or '.join(missing)} plans"

    def check_wire_dtype(self, dtype: str) -> None:
        """Raise ``InfeasibleError`` where the framework cannot send pooled embeddings in ``dtype``
        (a plan's or ``--comm-dtype``'s), naming the runtime, the dtype and what it can send."""
        if dtype in self.wire_dtypes:
            return
        can = ", ".join(d for d in COMM_DTYPES if d in self.wire_dtypes)
        raise InfeasibleError(
            f"training.runtime {self.name!r} cannot send pooled embeddings as {dtype}: {self.framework} "
            f"has no quantised communication (it sends them as {can}); choose one of those, or the "
            "eager runtime (TorchRec's qcomm codecs)"
        )

    #: The all-reduce algorithm the framework asks for its gradients (None: NCCL's automatic
    #: choice); taken where the topology allows it, else the automatic choice.
    gradient_all_reduce: ClassVar[str | None] = None

    #: The all-to-all algorithm the framework routes rows with (``routed_rows`` plans).
    routed_all_to_all: ClassVar[str | None] = None

    def pooled_all_to_all(self, plan: Plan) -> str | None:
        """The all-to-all algorithm the framework exchanges ``plan``'s pooled embeddings with (None:
        the collective model's default, NCCL's direct exchange)."""
        return self.routed_all_to_all if "routed_rows" in plan_features(plan) else None

    #: Whether the framework can reduce a row split over several nodes inside each node and send
    #: the node partials to the sample owners (which add them), rather than reduce-scattering them
    #: over all the split's ranks (TorchRec's row-wise output dist, the only way of the others).
    hierarchical_row_splits: ClassVar[bool] = False

    def row_split_node_size(self, ranks_per_node: int | None, plan: Plan) -> int | None:
        """The node size ``shard_ops.pooled_exchange`` reduces ``plan``'s row splits per node with
        (None: over all the split's ranks): per node where the framework can and the plan asks for
        it (``Plan.row_split_exchange`` ``node``, or the framework's default for the plan)."""
        if not self.hierarchical_row_splits:
            return None
        exchange = plan.row_split_exchange or self.default_row_split_exchange(plan)
        return ranks_per_node if exchange == "node" else None

    def default_row_split_exchange(self, plan: Plan) -> str:
        """How the framework reduces ``plan``'s row splits when the plan does not say."""
        return "flat"

    def groups_replicated_gradients(self, plan: Plan) -> bool:
        """Whether the framework all-reduces the replicated rows' gradients of ``plan`` together with
        the dense gradients (one collective over a grouped buffer) rather than on their own."""
        return False

    def replicated_gradient_dtype(self, plan: Plan, precision: str, table_dtype: str) -> str:
        """The dtype a replicated table's gradient is all-reduced in, and its dense update reads:
        the lookups' output dtype where the framework groups it with the dense gradients
        (HugeCTR's ``emtype``: FrequentEmbedding's ``frequent_gradients_``, "fp16 instead of fp32:
        input for all-reduce"), else the table's (DDP's ``.grad``), fp32 for a quantised table
        (its gradient accumulates in float: ``recsim.workload.spec.gradient_dtype``)."""
        if self.groups_replicated_gradients(plan):
            return self.lookup_output_dtype(precision, table_dtype) or table_dtype
        return gradient_dtype(table_dtype)

    def dense_gradient_dtype(self, precision: str) -> str:
        """The dtype the dense layers' gradients are kept and all-reduced in when training in
        ``precision``: fp32 under PyTorch's mixed precision (fp16/bf16), whose ``autocast`` runs the
        layers in half precision but keeps fp32 parameters and ``.grad``, and DDP reduces ``.grad``
        (torch.cuda.amp; NVIDIA DeepLearningExamples' DLRM main.py trains an fp32 model under
        ``autocast`` + ``GradScaler`` and wraps its top model in DDP; ``_unscale_dense`` reads them as
        fp32); likewise under fp8 or int8 training, which quantises only the linears' GEMM operands
        and keeps the weights and their gradients in the model's dtype (torchao's float8 and int8
        training, https://docs.pytorch.org/ao/stable/workflows/training.html: a tester found fp8 and
        int8 gradients all-reduced); else ``precision`` itself (fp32, tf32)."""
        return "fp32" if precision in (*_HALF, *_GEMM_ONLY) else precision

    def prefetches_routed_forward(self, plan: Plan) -> bool:
        """Whether the framework runs the next batch's routed lookups of ``plan`` (its ``distributed``
        shards) and their exchange inside this step, once this step's backward has updated those
        rows, rather than at the start of the next step behind this step's gradient all-reduce and
        updates (``recsim.graph.build.build_training_step``)."""
        return False

    def presorts_indices(self, plan: Plan) -> bool:
        """Whether the framework sorts and deduplicates the lookups' indices of ``plan`` in its input
        pipeline, ahead of the step (the graph builder then moves each backward's sort there)."""
        return False

    def backward_index_overlap(self, plan: Plan) -> bool:
        """Whether the framework sorts and deduplicates each embedding backward's indices (for its
        weight gradient) on a side stream once the embedding forward is done, so that the sort
        overlaps the dense forward and backward, and the backward waits for it (the graph builder
        puts the sort on a compute lane of its own, ``recsim.graph.build.LANE_INDEX``). The sort
        and the dense kernels beside it do not share the SMs in the model (DES shares only their
        HBM) unless ``SimulationOptions.sm_sharing`` asks for it (``recsim.cost.sm_sharing``: with
        it, the dense forward beside the sort makes the dgx-h100 DCNv2 step about 6 % longer)."""
        return False

    def all_reduces_after_exchange(self, plan: Plan) -> bool:
        """Whether the gradient all-reduces of ``plan`` wait for the backward all-to-all though the
        framework issues them on streams of their own: its collectives all go through one NCCL
        communicator, which runs them one at a time in issue order, and the exchange is issued
        first. The graph builder makes the first gradient all-reduce depend on the rank's backward
        exchange; the others follow it on their lane (``recsim.graph.build``). A framework whose
        collectives share one stream too (``shared_comm_queue``) has that order from its lane."""
        return False

    def global_batch_input(self, plan: Plan) -> bool:
        """Whether every rank of ``plan`` gets the whole global batch's input, read once per node
        and copied to its GPUs, rather than its own samples and an all-to-all of the indices."""
        return False

    def gradient_bucket_caps(self, dtype: str) -> tuple[float | None, float]:
        """The byte caps of the dense gradients' all-reduce buckets in ``dtype``, filled in ready
        (backward) order: (the first bucket's, None where it has none of its own; the others'); a
        bucket closes once it reaches its cap. By default 25 MiB each (torch DDP's
        ``bucket_cap_mb``; the fused frameworks', ASSUMPTION)."""
        return (None, DDP_BUCKET_BYTES)

    def per_rank_feature_input(self, plan: Plan) -> bool:
        """Whether each rank's data loader reads, for the whole global batch, the sparse features
        of the tables it holds (and the dense features where it runs the bottom MLP of a
        ``model_parallel_bottom`` plan), so that no index is exchanged between the ranks (no
        input-dist collective), rather than its local batch's features of every table and an
        all-to-all of the indices (TorchRec's KJTAllToAll)."""
        return False

    def atomic_embedding_update(self, plan: Plan, optimizer: str) -> bool:
        """Whether the framework's embedding backwards of ``plan`` add each lookup's gradient into
        its row with atomics (``Embedding.atomic``: no sort, no dedup) rather than sorting the
        indices and updating each distinct row once (FBGEMM's TBE)."""
        return False

    @abstractmethod
    def apply(self, graph: ExecutionGraph, workload: Workload) -> ExecutionGraph:
        """``graph`` with this runtime's host work (the same graph when there is none)."""

    def lookup_output_dtype(self, precision: str, table_dtype: str) -> str | None:
        """The dtype the lookups write pooled vectors in when it is not the table's (None): the
        half precision of mixed-precision training (``precision`` fp16 or bf16) for a framework
        that writes them narrow, where it is narrower than the table.

        A quantised table (int8, int4, fp8 rows) never pools in its storage dtype: its rows are
        dequantised and summed in float, and the sum is written in that half precision where the
        framework writes narrow, else in fp32 (FBGEMM's TBE, ``output_dtype=SparseType.FP32`` by
        default, with int8 or fp8 ``weights_precision`` as well; its inference TBE writes fp16)."""
        narrow = self.narrow_lookup_output and precision in _HALF
        if table_dtype not in FLOAT_DTYPES:
            return precision if narrow else "fp32"
        if narrow and DTYPE_BYTES[precision] < DTYPE_BYTES[table_dtype]:
            return precision
        return None

    def wire_dtype(self, workload: Workload) -> str:
        """The framework's default wire dtype of pooled embeddings for ``workload``."""
        precision = workload.training.precision
        return precision if self.half_precision_wire and precision in _HALF else "fp32"

    def received_pooled_dtype(self, workload: Workload) -> str:
        """The dtype a rank holds the pooled embeddings of its samples in once received, through
        the step (the interaction's input, which its backward reads): the half precision of mixed
        precision where the framework's dense side takes them as they travel (HugeCTR's ``emtype``
        interaction input; DLE's fp16 payload, ``torch.cat`` of the receive buffers, the buffers
        freed once concatenated since ``cat``'s backward keeps no input), else fp32 (TorchRec's
        codecs decode into fp32 whatever the wire: ``_Style.decoded_dtype``), whatever plan's
        ``comm_dtype`` a run picks (neither HugeCTR nor DLE re-encodes, their wire is this). So it
        is the framework's default wire dtype (``wire_dtype``): fp32 where that wire is not half."""
        return self.wire_dtype(workload)


#: The half precisions of mixed-precision training (the only narrow embedding outputs: HugeCTR's
#: ``emtype`` is fp16 or fp32).
_HALF = ("fp16", "bf16")
#: The training precisions of the GEMMs alone (torchao's float8 and int8 training): the weights,
#: their gradients and the other ops keep the model's dtype.
_GEMM_ONLY = ("fp8", "int8")


#: Plan features a framework may lack: rows routed to their owners (``distributed`` shards,
#: HugeCTR's hybrid embedding) and a model-parallel bottom MLP (``Plan.bottom_rank``, DLE's DLRM).
PLAN_FEATURES = ("routed_rows", "model_parallel_bottom")


_SHARDING = operator.attrgetter("sharding")


def plan_features(plan: Plan) -> list[str]:
    """The ``PLAN_FEATURES`` that ``plan`` uses."""
    out = []
    # The shards' shardings read and compared in C (``attrgetter``, ``in``: identity, then ``==``):
    # the builder asks a runtime about the plan some eight times a graph, and a generator over
    # the shards cost about 30 bytecodes a shard each time (callgrind: ~0.1 M machine
    # instructions a graph of 26 tables).
    if "distributed" in map(_SHARDING, plan.shards):
        out.append("routed_rows")
    if plan.bottom_rank is not None:
        out.append("model_parallel_bottom")
    return out


RUNTIMES: dict[str, type[Runtime]] = {}


def register(cls: type[Runtime]) -> type[Runtime]:
    RUNTIMES[cls.name] = cls
    return cls


def runtime(name: str) -> Runtime:
    """The runtime called ``name``."""
    try:
        return RUNTIMES[name]()
    except KeyError:
        raise ConfigError(f"unknown runtime {name!r}; known: {', '.join(sorted(RUNTIMES))}") from None


def default_wire_dtype(workload: Workload) -> str:
    """The wire dtype of pooled embeddings that the workload's runtime uses by default."""
    return runtime(workload.training.runtime).wire_dtype(workload)


def apply_runtime(graph: ExecutionGraph, workload: Workload) -> ExecutionGraph:
    """``graph`` with the host work of the workload's ``training.runtime``."""
    return runtime(workload.training.runtime).apply(graph, workload)


@register
class Fused(Runtime):
    """Kernels issued ahead at no modelled CPU cost (CUDA graphs, fused C++ loops)."""

    name = "fused"
    framework = "HugeCTR"
    # NVIDIA's MLPerf DLRM configs read the raw binary data with HugeCTR's AsyncReaders
    # (``DataReaderType_t.RawAsync``; ``recsim.planner.reader_buffers``).
    hugectr_async_reader = True
    # HugeCTR's Model builds every dense layer twice, for training and for evaluation, the
    # evaluation copy on the evaluation tensors (batchsize_eval) in buffers of its own, and its
    # embeddings an evaluation output beside the training one (``recsim.planner.eval_network``).
    separate_eval_network = True
    # HugeCTR's mixed precision runs the whole network, embedding outputs included, in fp16.
    half_precision_wire = True
    # Its embeddings' all-to-alls send the output tensors as they are, in ``emtype`` (fp32, or fp16
    # under mixed precision: HybridSparseEmbedding's ``Tensors2<emtype>``, the embedding
    # collection's ``emb_type``); HugeCTR has no quantised communication (no int8 or fp8 codec), so
    # such a wire is a plain cast of 2 B a value, no clamp (``_Style.clamps_half_wire``). bf16 is
    # kept as the half precision of a ``precision: bf16`` what-if (``wire_dtype``).
    wire_dtypes = frozenset({"fp32", "fp16", "bf16"})
    # HugeCTR's embeddings write their outputs and read their gradients in ``emtype``, the fp16 of
    # mixed precision (HybridSparseEmbedding's ``Tensors2<emtype>`` output tensors, the embedding
    # collection's ``emb_type``): no cast kernel, half the bytes of an fp32 vector.
    narrow_lookup_output = True

    def dot_output_padding(self, width: int) -> int:
        # HugeCTR's InteractionLayer reserves one more column than the bottom MLP's vector and the
        # pairs (src/layers/interaction_layer.cu: ``out_dims = {batch, in_w + concat_len + 1}``; the
        # fp16 kernel's ``kPaddingSize``), which its next fully connected layer reads: 479 + 1 = 480
        # for DLRM v1.
        return 1

    # Its hybrid embedding's kernels walk the lookups, not the batch: the infrequent model-parallel
    # forward writes one vector per routed lookup into its send buffer, the frequent forward one per
    # frequent lookup (InfrequentEmbedding::forward_model, FrequentEmbedding::forward_network).
    pools_hit_bags_only = True
    # HugeCTR's hybrid embedding routes infrequent lookups; its bottom MLP is data-parallel.
    plan_features = frozenset({"routed_rows"})
    # NVIDIA's MLPerf DLRM recipes reduce gradients across nodes in the InfiniBand switches (SHARP,
    # NCCL_COLLNET_ENABLE=1): CollNet where the cluster switches reduce in the network.
    gradient_all_reduce = "collnet"

    # HugeCTR's cross layers with async weight gradients: NVIDIA's MLPerf DLRM-DCNv2 train.py
    # (samples/dlrm/train.py, HugeCTR v24.04.00 in the v4.0 submission) builds MultiCross with
    # DenseLayerComputeConfig(async_wgrad=True); MultiCrossBackwardFunctorv2 (src/layers/
    # multi_cross_layer.cu; read in the ROCm port, chriscai-amd/training_results_v5.1
    # hugectr_rocm_port) runs fused_mul_fma3, the dH GEMM and the dY GEMM on the dgrad stream and
    # the two weight-gradient GEMMs on its "cross_layer_wgrad" stream, forked after the fma3 and
    # after the dH GEMM and joined after the stack's closing matrix_add. The graph builder lets
    # them overlap only the next layer's element-wise kernel (``_dense_chain``: two GEMMs would
    # share the SMs, which the engines do not model unless asked: ``recsim.cost.sm_sharing``).
    async_cross_wgrad = True
    # And its MLP layers: the same train.py passes that compute_config (async_wgrad=True, fuse_wb=
    # False) to the bottom and top MLPs (Layer_t.MLP), whose MLPLayer::bprop (src/layers/
    # mlp_layer.cu) calls FusedFCLayerFunctors::bprop (src/layers/functors/
    # fused_fc_layer_functors.cu) per layer: the wgrad GEMM (beta = 1) on the GPU's
    # comp_overlap_stream after an event on the main stream, the dgrad GEMM on the main stream
    # (skipped for the first dense layer: add_dense_layer.cpp's ``skip_dgrad = layers.size() ==
    # 0``), and after the first layer's (i == 0) records the overlap stream's event for the main
    # stream's later work to wait on (``set_wgrad_event_sync``). NVIDIA's
    # MLPerf DLRM (v1) configs ask for the same with CreateSolver(async_mlp_wgrad=True)
    # (training_results_v2.1 NVIDIA hugectr-preview dgx_h100.py), FusedReluBiasFullyConnectedLayer
    # putting its wgrad on that stream (src/layers/fused_relu_bias_fully_connected_layer.cu).
    async_mlp_wgrad = True

    def unsupported(self, plan: Plan, workload: Workload) -> list[str]:
        out = super().unsupported(plan, workload)
        # HugeCTR's hybrid embedding takes one category per slot and sample (its frequent/infrequent
        # index math is one-hot; MLPerf DLRM v1); multi-hot tables use its other embeddings.
        tables = workload.table_index
        routed = {s.table for s in plan.shards if s.sharding == "distributed"}
        if any(workload.table_lookups(tables[t]) != 1 for t in routed):
            out.append("routed_rows of multi-hot tables")
        return out

    # HugeCTR's hybrid embedding exchanges infrequent vectors with its own hierarchical all-to-all
    # (CommunicationType IB_NVLink_Hier: gathered over NVLink, one IB exchange per rail; on one node
    # it is the direct NVLink exchange).
    # Not modelled: on one node NVIDIA's MLPerf DLRM v1 configs run CommunicationType
    # NVLink_SingleNode (training_results_v2.0 NVIDIA/benchmarks/dlrm/implementations/hugectr/
    # dgx_a100.py, v2.1 hugectr-preview/dgx_h100.py), which has no collective at all
    # (HugeCTR src/embeddings/hybrid_sparse_embedding.cu, forward and backward_communications):
    # InfrequentEmbedding::forward_network_direct is one kernel that reads the owner's rows and
    # stores them into the peers' interaction inputs over NVLink, update_model_direct one that loads
    # the peers' gradients and adds them atomically; the frequent rows are not all-reduced
    # (grouped_all_reduce=False) but owned 1/n per GPU, pushed to the others' fp16 caches
    # (FrequentEmbedding::forward_model) and updated from the peers' partial gradients
    # (update_model_direct), with a GPU barrier in each pass; the split is HugeCTR's
    # p_dup_max rule (hybrid_embedding/calibration_data.cu, calculate_threshold), not
    # ``hybrid_embedding``'s cost balance. recsim lays a one-node run out as the multi-node one
    # (an all-to-all and a grouped all-reduce on comm lanes). Tried against the single-node
    # DLRM v1 cases (1 x DGX A100 +10.3 %, 1 x DGX H100 +8.5 %, 1 x HGX A100 4-GPU +14.1 %), not
    # kept: the all-to-alls on the compute stream, as if the exchange were SM work added to the
    # lookups, +4.6 / +2.9 / +9.3 %, but the exchange is fused into the lookup and update kernels,
    # whose NVLink bytes (10.6 MB a GPU each way on DGX A100: 35 us at NVLink3's 12 x 25 GB/s a
    # direction, 72 us as recsim's all-to-all) take less time than their HBM side (the lookup 82 us,
    # the atomic update 141 us), so the kernels' roofline is the max of the two, which
    # leaves the exchange hidden as it is now; HugeCTR's single-node split (35,080 frequent rows on
    # 8 GPUs, 63,102 on 4, against 5,907 and 8,625 under the zipf access ASSUMPTION)
    # +8.5 / +8.9 / +11.7 %.
    routed_all_to_all = "hierarchical"
    # HugeCTR's embedding collection can reduce a table row-split over several nodes over NVLink
    # inside each node, the inter-node all-to-all then carrying one partial pool per node to each
    # sample owner (CommunicationStrategy.Hierarchical). Which it does is a version matter: up to
    # MLPerf v4.1 its DLRM-DCNv2 train.py takes Hierarchical on every multi-node run (Dell's v3.0
    # train.py, NVIDIA's v4.1 b200_preview one); from v5.0 on only with the node-level planner
    # (``Hierarchical if num_nodes > 1 and args.sharding_plan == 'hier_auto' else Uniform``). The
    # ``hier_auto`` proposer stamps its plans ``node``; an unstamped plan follows the v5.0 rule by its
    # name; ``planner.row_split_exchange=node`` replays an older run (recsim.api.make_plan).
    hierarchical_row_splits = True

    def default_row_split_exchange(self, plan: Plan) -> str:
        return "node" if plan.strategy.rsplit(":", 1)[-1] == "hier_auto" else "flat"

    def dense_gradient_dtype(self, precision: str) -> str:
        # HugeCTR's mixed precision writes the weight gradients into an fp16 buffer and all-reduces
        # that (Session/Model: ``use_mixed_precision`` makes ``NetworkExchangeWgrad<__half>`` or
        # ``GroupedExchangeWgrad<__half>``, whose buffers are the layers' ``wgrad_buff_half``).
        # HugeCTR has no fp8 or int8 mode: those precisions are read as the GEMMs' alone
        # (``_GEMM_ONLY``), whose gradients stay in the model's fp32.
        return "fp32" if precision in _GEMM_ONLY else precision

    def groups_replicated_gradients(self, plan: Plan) -> bool:
        # HugeCTR's hybrid embedding keeps the frequent rows' gradients in the dense layers' grouped
        # weight-gradient buffer and all-reduces them in one call (HybridSparseEmbedding's
        # grouped_wgrad_buff).
        return "routed_rows" in plan_features(plan)

    def prefetches_routed_forward(self, plan: Plan) -> bool:
        # HugeCTR's inter-iteration overlap (CreateSolver's train_inter_iteration_overlap=True in
        # every NVIDIA MLPerf DLRM config that runs the hybrid embedding: training_results_v2.1
        # NVIDIA/benchmarks/dlrm/implementations/hugectr-preview/dgx_h100.py and
        # dgx_h100_4x8x2240.py): its hybrid embedding buffers the next batch's indices
        # (``setup_buffered_indices``) and runs the next iteration's infrequent model forward and
        # its all-to-all while this iteration's all-reduce and frequent update finish.
        return "routed_rows" in plan_features(plan)

    def presorts_indices(self, plan: Plan) -> bool:
        # HugeCTR's hybrid embedding computes the next batch's frequent/infrequent indices in its
        # data reader (HybridSparseEmbeddingParams.use_train_precompute_indices, as NVIDIA's MLPerf
        # DLRM configs run it); its other embeddings sort inside the step. An atomic backward
        # (``atomic_embedding_update``, SGD) has nothing to sort (``ir.sorts_ahead``).
        return "routed_rows" in plan_features(plan)

    def backward_index_overlap(self, plan: Plan) -> bool:
        # HugeCTR's embedding collection with intra-iteration overlap (NVIDIA's MLPerf DLRM-DCNv2
        # samples/dlrm/train.py, which the v4.0 submission's Dockerfile builds from HugeCTR
        # v24.04.00: CreateSolver(train_intra_iteration_overlap=True), use_embedding_collection=True)
        # runs ``ebc_mp_backward_index_calculation`` and ``ebc_dp_backward_index_calculation`` (the
        # key sort and dedup for the weight gradient) on its "dp" stream, waiting only for the
        # embedding forward, while ``network_graph`` (the dense forward and backward) runs on the
        # default stream; ``mp_local_reduce`` (the backward) waits for them
        # (HugeCTR/src/pybind/model_pipeline.cpp, ``create_train_pipeline_with_ebc``). The sort and
        # the dense layers do not share the SMs in the model (as compute and copies do not): the
        # sort is a fraction of the dense work. The hybrid embedding sorts in its data reader
        # (``presorts_indices``) instead.
        # Not modelled: the same pipeline also puts the model-parallel backward and update
        # (``ebc_mp_local_reduce``, ``ebc_mp_update``) on an "mp" stream and the replicated tables'
        # (``ebc_dp_local_reduce``, ``ebc_dp_update``) on "dp", beside the dense optimizer
        # (``update_params``) on the default stream; recsim queues all four on the default lane.
        # Tried as free overlap (those on lanes of their own): 1 x DGX H100 -9.6 -> -3.3 %, but
        # every DCNv2 case 3-11 points faster (H200 +6.5 to +11.4 %, B200 +6.6 to +12.9 %, DGX H100
        # on 8 and 16 nodes +9.5 to +13.2 %) and H200 / H100 at one sharding only 1.158 -> 1.145;
        # DLRM v1 on one DGX A100 and one HGX A100 4-GPU (+10.2 / +14.0 -> +17.7 / +21.9 %) left
        # their band, recsim's auto taking flexshard over the hybrid embedding. Free overlap of a
        # TBE backward with the optimizer's HBM stream and another gather overstates it (the
        # engines share no SMs between lanes, and the analytic engine no HBM either: DES shares
        # it, ``recsim.engine.hbm``), and how much the kernels slow each other is unmeasured.
        return "routed_rows" not in plan_features(plan)

    def all_reduces_after_exchange(self, plan: Plan) -> bool:
        # HugeCTR's embedding collection (the DCNv2 runs): HugeCTR/src/pybind/model_pipeline.cpp
        # (``create_train_pipeline_with_ebc``) runs the backward all-to-all on the "mp" stream once
        # the top network's backward is done, and on the default stream, after the whole network
        # backward, the dense weight-gradient all-reduce (one ncclAllReduce of the grouped fp16
        # wgrad buffer: src/exchange_wgrad.cpp, collectives/all_reduce_comm.cu) and then the
        # replicated tables' all-reduce (embedding/operators/communication.cpp). Every NCCL call
        # goes through the GPU's one communicator (GPUResource::get_nccl, include/gpu_resource.hpp;
        # the embedding's resource manager hands out the same one, core/hctr_impl/hctr_backend.hpp),
        # and NCCL runs a communicator's operations one after another whatever their streams (its
        # maintainer in https://github.com/NVIDIA/nccl/issues/574; the deviceStream dependencies
        # of enqueue.cc quoted in https://github.com/NVIDIA/nccl/issues/1476). So the all-reduces
        # run after the backward all-to-all, not beside it. The hierarchical exchange's intra-node
        # parts are peer-memory copy kernels (embedding/operators/hier_model_forward.cu), not NCCL:
        # they keep their places. Not modelled: the next step's forward all-to-all queued behind
        # this step's all-reduces. The hybrid embedding (DLRM v1) exchanges through its own IbComm,
        # not NCCL (``recsim.graph.build``'s lanes), so it keeps them apart.
        return "routed_rows" not in plan_features(plan)

    def global_batch_input(self, plan: Plan) -> bool:
        # HugeCTR's hybrid embedding works out on every GPU which samples of the global batch need
        # its infrequent rows (InfrequentEmbeddingSelection::calculate_model_indices runs over
        # batch_size x tables of hybrid_embedding::Data, the global batch), so its AsyncReader gives
        # every GPU the whole batch: each node reads it (every node the same, a replica-uniform
        # shuffle of its own copy of the data), uploads it to one of its GPUs and copies it from
        # there to the others over NVLink ("Broadcast to the other GPUs",
        # thread_async_reader.cpp); labels and dense values are then cut to the local batch
        # (split_3_way). No index crosses the network.
        return "routed_rows" in plan_features(plan)

    def atomic_embedding_update(self, plan: Plan, optimizer: str) -> bool:
        # HugeCTR's hybrid embedding (SGD only) updates the infrequent rows with atomic adds of each
        # received gradient (InfrequentEmbedding::hier_update_model / sgd_atomic_update) and
        # accumulates the frequent rows' local gradients with atomics too (FrequentEmbedding::
        # local_reduce, frequent_local_reduce kernel); NVIDIA's MLPerf DLRM v1 configs create the
        # SGD optimizer with atomic_update=True. No index is sorted.
        return "routed_rows" in plan_features(plan) and optimizer == "sgd"

    def apply(self, graph: ExecutionGraph, workload: Workload) -> ExecutionGraph:
        return graph


def _base_name(node: Node) -> str:
    name = node.name.split("#", 1)[0]
    for suffix in ("_fwd", "_bwd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_cross_layer(node: Node) -> bool:
    """Whether ``node`` is a DCNv2 cross layer's element-wise node (``recsim.graph.build``)."""
    return isinstance(node.op, Compute) and node.op.op in ("dcnv2", "dcnv2_bwd")


def _is_dcn_concat(node: Node) -> bool:
    """Whether ``node`` is a DCNv2 stack's input concatenation (``recsim.graph.build``'s
    ``_cross_layer_ops``: its first layer's ``_concat`` node)."""
    return (
        isinstance(node.op, Compute)
        and node.op.op in ("cat", "cat_bwd")
        and _base_name(node).endswith("_concat")
    )


def _torch_dcn_concat(op: Compute, workload: Workload, backward: bool) -> Compute:
    """A DCNv2 stack's input concatenation as TorchRec runs it (torchrec/models/dlrm.py), in place
    of the builder's node for HugeCTR's concat kernel, on ``B`` samples of the ``W``-wide input:
    the bottom MLP's ``D``-wide vector and ``F`` tables' pooled vectors, ``F d = W - D``.

    Forward: ``SparseArch`` concatenates the tables' pooled vectors (``torch.cat(sparse_values,
    dim=1)``: reads and writes ``F d``), then ``InteractionDCNArch`` puts the bottom MLP's vector
    in front (``torch.cat((dense_features.unsqueeze(1), sparse_features), dim=1)``, reshaped to
    ``[B, W]`` for ``crossnet``: reads and writes ``W``): two copy kernels. Backward: both ``cat``s'
    gradients are ``narrow`` views (tools/autograd/derivatives.yaml) and the reshapes views of
    them; the tables' gradients leave through ``split``'s backward (KeyedTensor.to_dict), a ``cat``
    of ``F d``, as in the dot interaction (``_torch_dot_interaction``, which the project's TorchRec
    trace shows)."""
    ((b, w),) = op.shapes[:1]
    bottom = workload.bottom_mlp[-1] if workload.bottom_mlp else workload.dense_features
    tables = w - bottom
    size = float(b) * DTYPE_BYTES[op.dtype]
    if backward:
        return replace(op, bytes_read=size * tables, bytes_written=size * tables, kernels=1)
    moved = size * (tables + w)
    return replace(op, bytes_read=moved, bytes_written=moved, kernels=2)


def _ddp_bucket_copy(tensors: int, params: int, dtype: str) -> Compute:
    """torch DDP's copy of ``tensors`` parameter gradients (``params`` values of ``dtype``) into
    their bucket as each becomes ready: ``Reducer::mark_variable_ready_dense`` (torch/csrc/
    distributed/c10d/reducer.cpp) runs ``at::mul_out(bucket_view, grad, 1 / div_factor)`` (divides
    while it copies: reads the gradient, writes the bucket) whenever the gradient is not already a
    view of the bucket. TorchRec wraps its dense modules with ``gradient_as_bucket_view=True``
    (``DefaultDataParallelWrapper``, torchrec/distributed/model_parallel.py), which saves the copy
    back after the all-reduce (``finalize_bucket_dense`` copies only without it) but not this one:
    the optimizer's ``zero_grad()`` sets ``.grad`` to None every step (torch.optim's default,
    ``set_to_none=True``), so autograd hands the hook a fresh tensor. The project's TorchRec trace
    (shared/reference/traces/dlrm_kineto, rank 0, step 12) shows one ``aten::mul`` kernel per
    dense parameter tensor right after its ``AccumulateGrad``, on the autograd thread, before its
    bucket's all-reduce, and no copy after it. One kernel per tensor (``Compute.kernels``)."""
    size = params * DTYPE_BYTES[dtype]
    return Compute("ddp_bucket_copy", float(params), size, size, dtype, (), "elementwise", kernels=tensors)


def _epilogue(node: Node, backward: bool) -> Compute:
    """The activation (and bias-gradient) pass of a dense layer that a fused GEMM epilogue would
    absorb: ``relu`` forward reads and writes the ``m x n`` output; backward, ``threshold_backward``
    reads the gradient and the output and writes the gradient, and the bias gradient (``sum`` over
    the batch) reads the gradient once more: two kernels (``aten::threshold_backward`` under
    ``ReluBackward0``, then ``aten::sum`` under ``AddmmBackward0``, in the project's TorchRec trace,
    shared/reference/traces/dlrm_kineto)."""
    op = node.op
    assert isinstance(op, Compute)
    (m, _k), (_k2, n) = op.shapes[:2]
    size = m * n * DTYPE_BYTES[op.dtype]
    if backward:
        return Compute(
            "relu_bwd_bias_grad", 2.0 * m * n, 3 * size, size, op.dtype, ((m, n),), "elementwise", kernels=2
        )
    return Compute("relu", float(m * n), size, size, op.dtype, ((m, n),), "elementwise")


def _cross_epilogue(op: Compute, backward: bool) -> Compute:
    """The element-wise kernels of a DCNv2 cross layer ``x_{l+1} = x0 * (U V x_l + b) + x_l`` in
    PyTorch (TorchRec's ``LowRankCrossNet`` writes it as two ``F.linear`` without bias, then
    ``x_0 * (x_l_w + bias) + x_l``), on ``B x W`` tensors, in place of the builder's node for
    HugeCTR's fused kernels (bias in the GEMM's epilogue, then one kernel forward and one backward):
    forward, the bias add (reads 1, writes 1), the multiply by x0 (reads 2,
    writes 1) and the residual add (reads 2, writes 1); backward, the two products of the multiply's
    gradient (each reads 2, writes 1), the bias gradient (a sum over the batch: reads 1), and the
    additions of x0's gradient across the layers and of the residual's (each reads 2, writes 1).
    Each is a kernel of its own (``Compute.kernels``): three forward (``add``, ``mul``, ``add``),
    five backward (``MulBackward0``'s two ``mul``, ``AddBackward0``'s ``sum`` to the bias's shape,
    and the two gradient accumulations' ``add``)."""
    ((b, w),) = op.shapes[:1]
    size = b * w * DTYPE_BYTES[op.dtype]
    if backward:
        return Compute(
            "cross_elementwise_bwd", 5.0 * b * w, 9 * size, 4 * size, op.dtype, ((b, w),), "elementwise", 5
        )
    return Compute(
        "cross_elementwise", 3.0 * b * w, 5 * size, 3 * size, op.dtype, ((b, w),), "elementwise", kernels=3
    )


def _torch_dot_interaction(op: Compute, layer: Layer, backward: bool) -> tuple[Compute, Compute]:
    """TorchRec's dot interaction as eager PyTorch runs it, in place of the builder's node for the
    fused kernel (``recsim.graph.build._dot_interaction_op``): its batched products, then the
    element-wise and copy kernels around them (``Compute.kernels``), on ``B`` samples of ``f``
    vectors of ``d`` (``P`` pairs, the bottom MLP's ``D``-wide output, ``F = f - 1`` tables).

    Forward (torchrec/models/dlrm.py): ``SparseArch`` concatenates the tables' pooled vectors
    (``torch.cat(sparse_values, dim=1)``: reads and writes ``F d``); ``InteractionArch`` puts the
    bottom MLP's vector in front (``torch.cat``: ``f d``), runs ``torch.bmm`` of that with its
    transpose (reads ``f d``, writes the whole ``f x f``), gathers the upper triangle
    (``interactions[:, triu_indices[0], triu_indices[1]]``, ``aten::index``: ``P``) and concatenates
    the bottom MLP's vector with it (``D + P``): one product and four copies.

    Backward (torch's autograd formulas, tools/autograd/derivatives.yaml): ``cat``'s is
    ``narrow`` views, no kernel; ``index``'s is ``index_backward``, a zero ``f x f`` tensor
    (``new_zeros``) into which ``_index_put_impl_(accumulate=True)`` adds the pairs' gradient, made
    contiguous first (a copy of ``P``: it is a slice of the top MLP's input gradient); its CUDA sort
    path (aten/src/ATen/native/cuda/Indexing.cu, ``index_put_with_sort_kernel``) runs four kernels
    on the ``P`` indices alone (linear index, divide, ``arange``, radix sort: their bytes are
    ``1 / B`` of the rest, left out) and ``indexing_backward_kernel`` (reads the values and the
    ``P`` places it adds to, writes them); ``bmm``'s is two products (``grad @ mat2^T``,
    ``self^T @ grad``), whose results autograd adds (``f d``); the bottom MLP's vector takes
    gradient from both concatenations, added (``D``); the tables' gradients leave through
    ``split``'s backward, a ``cat`` (``F d``, KeyedTensor.to_dict). The measured V100 trace of the
    project (shared/reference/traces/dlrm_kineto, rank 0) shows these kernels in this order."""
    ((b, f, d),) = op.shapes[:1]
    pairs, dense = layer.out_features, layer.passthrough
    tables = f * d - dense
    size = float(b) * DTYPE_BYTES[op.dtype]
    if backward:
        product = Compute(
            "dot_bmm_bwd",
            op.flops * 2.0,  # two products of the forward's size
            2 * size * (f * f + f * d),
            2 * size * f * d,
            op.dtype,
            ((b, f, f), (b, f, d)),
            "interaction",
            kernels=2,
        )
        read = 2 * pairs + 2 * f * d + 2 * dense + tables + pairs  # contiguous, scatter, adds, cat
        written = f * f + pairs + pairs + f * d + dense + tables
        flops = float(b) * (pairs + f * d + dense)  # the adds
        rest = Compute(
            "dot_torch_bwd", flops, size * read, size * written, op.dtype, op.shapes, "elementwise", 10
        )
        return product, rest
    product = Compute(
        "dot_bmm", op.flops, size * f * d, size * f * f, op.dtype, ((b, f, d), (b, d, f)), "interaction"
    )
    read = tables + f * d + pairs + dense + pairs
    rest = Compute("dot_torch", 0.0, size * read, size * read, op.dtype, op.shapes, "elementwise", kernels=4)
    return product, rest


#: The GPU kernels of one parameter tensor's step in torch.optim's for-loop implementations (the
#: ones ``recsim.graph.eager_calibration.OPTIMIZER_OPS_PER_TENSOR`` counts the host's ops of; the
#: step counters and learning-rate arithmetic stay on the CPU), and the tensors they read and write
#: per parameter (torch/optim/{sgd,adagrad,adam}.py, ``_single_tensor_*``). SGD without momentum:
#: ``param.add_(grad, alpha=-lr)``, reads 2, writes 1. Adagrad: ``state_sum.addcmul_(grad, grad)``
#: (reads the sum and the gradient, writes the sum), ``std = state_sum.sqrt()`` (1, 1),
#: ``.add_(eps)`` (1, 1), ``param.addcdiv_(grad, std)`` (3, 1): reads 7, writes 4 where a fused
#: kernel reads 3 and writes 2. Adam: ``exp_avg.lerp_(grad)`` (2, 1), ``exp_avg_sq.mul_`` (1, 1)
#: and ``.addcmul_(grad, grad)`` (2, 1), ``exp_avg_sq.sqrt()`` (1, 1), ``/ bias_correction2_sqrt``
#: (1, 1), ``.add_(eps)`` (1, 1), ``param.addcdiv_(exp_avg, denom)`` (3, 1): reads 11, writes 7.
#: The kernels of the project's TorchRec trace (shared/reference/traces/dlrm_kineto, rank 0) are
#: Adagrad's four per tensor, in this order.
TORCH_OPTIMIZER_KERNELS: dict[str, tuple[int, int, int]] = {
    "sgd": (1, 2, 1),
    "adagrad": (4, 7, 4),
    "adam": (7, 11, 7),
}


def _torch_optimizer_step(op: Compute, optimizer: str, tensors: int) -> Compute:
    """The dense optimizer node ``op`` (the builder's: one fused kernel over every parameter, fp32)
    as torch.optim's for-loop runs it over ``tensors`` parameter tensors: its kernels per tensor,
    and the bytes they move (``TORCH_OPTIMIZER_KERNELS``)."""
    params = op.bytes_written / (1 + OPTIMIZER_STATE[optimizer]) / DTYPE_BYTES[op.dtype]
    kernels, read, written = TORCH_OPTIMIZER_KERNELS[optimizer]
    size = params * DTYPE_BYTES[op.dtype]
    return replace(
        op, bytes_read=read * size, bytes_written=written * size, kernels=kernels * max(tensors, 1)
    )


@dataclass(frozen=True)
class _Style:
    """What a PyTorch runtime adds to the graph besides PyTorch's unfused kernels (activation
    epilogues, and the casts of pooled embeddings sent narrower than the lookups produce them:
    TorchRec's qcomm codecs, DLE's .half(); the fused loop writes them narrow directly)."""

    dispatch: EagerCosts | None  # host dispatch chain (eager); None: kernels issued ahead
    step_sync: bool  # the host synchronises with the device before every step
    # The pooled all-to-alls copy their payload once more on every rank (DLE's BottomToTop,
    # dlrm/model/distributed.py): forward, ``torch.cat`` of the per-source receive buffers into the
    # interaction's input; backward, ``.contiguous()`` of each destination's slice of the gradient,
    # after autograd has added the bottom MLP slice's gradient into it (``_exchange``).
    exchange_copies: bool = False
    # The dtype the receivers decode pooled vectors into after the forward exchange, whose gradient
    # they encode before the backward one (``_Rewriter._cast_exchange``); None: the dense precision
    # (DLE's interaction takes the fp16 payload as it arrives under AMP).
    decoded_dtype: str | None = None
    # The encoder of a half-precision wire clamps the values into its range in a kernel of its own
    # before it casts them (FBGEMM's codecs, ``_Rewriter._quantise``); False: a plain cast (DLE's
    # ``.half()``).
    clamps_half_wire: bool = False
    # The collectives share one in-order queue (``Runtime.shared_comm_queue``): each backward
    # collective is issued where the program issues it (``_issue_order``).
    issue_order: bool = False
    # The dot interaction runs as PyTorch's own kernels (TorchRec's InteractionArch:
    # ``_torch_dot_interaction``); False: NVIDIA's fused kernel pair, as the graph has it (DLE's
    # ``cuda_dot`` interaction).
    torch_dot: bool = False
    # The dense optimizer is torch.optim's for-loop step, a few kernels per parameter tensor
    # (``_torch_optimizer_step``); False: one fused kernel, as the graph has it (HugeCTR's).
    torch_optimizer: bool = False
    # A DCNv2 stack's input is concatenated by TorchRec's ``torch.cat``s (``_torch_dcn_concat``);
    # False: HugeCTR's concat kernel pair, as the graph has it.
    torch_dcn_concat: bool = False
    # The dtype of the dense gradients that torch DDP's reducer copies into its buckets, one kernel
    # per parameter tensor as each becomes ready (``_ddp_bucket_copy``; a replicated table's
    # gradient is copied in the table's dtype); None: no such copies.
    ddp_grad_dtype: str | None = None


#: Collectives that carry pooled embeddings (forward) or their gradients (backward).
_POOLED_FORWARD = ("a2a_fwd", "rw_fwd:")
_POOLED_BACKWARD = ("a2a_bwd", "rw_bwd:")
#: The pooled all-to-alls among them (``_Style.exchange_copies``).
_POOLED_ALL_TO_ALL = ("a2a_fwd", "a2a_bwd")


def _cast(name: str, read: float, written: float, dtype: str) -> Compute:
    """An element-wise dtype conversion: reads and writes its tensor once (memory-bound)."""
    return Compute(name, 0.0, read, written, dtype, (), "elementwise")


def _unscale(size_bytes: float) -> Compute:
    """GradScaler's in-place unscale of fp32 gradients: a non-finite check and a multiply per element
    (reads and writes the gradients once)."""
    return Compute("amp_unscale", 2.0 * size_bytes / 4.0, size_bytes, size_bytes, "fp32", (), "elementwise")


class _Rewriter:
    """Rebuilds a chained graph with a runtime's host nodes, syncs and epilogue kernels."""

    def __init__(self, graph: ExecutionGraph, workload: Workload, style: _Style) -> None:
        self.graph, self.workload, self.style = graph, workload, style
        # As the framework trains them: a padded layer's gradient holds its extra weights too.
        layers = trained_dense_layers(workload)
        # Dense layers' nodes in units of one Linear (+ activation): a DCNv2 cross layer is two
        # GEMM nodes (``recsim.graph.build._cross_layer_ops``), a unit each; its element-wise node
        # costs none of its own (the calibration's two units per cross layer cover its kernels).
        self.linear_units: dict[str, int] = {}
        for x in layers:
            if x.op == "dcnv2":
                # The stack's concatenation (its first layer's ``_concat`` node) is left out of the
                # pieces too: the calibration's interaction piece is the dot interaction's host work
                # (``recsim.graph.eager_calibration``), not two copies'.
                self.linear_units.update(
                    {f"{x.name}_v": 1, f"{x.name}_u": 1, x.name: 0, f"{x.name}_concat": 0}
                )
            elif x.params:
                self.linear_units[x.name] = 1
        self.tensors = sum(3 if x.op == "dcnv2" else 2 for x in layers if x.params)
        # The backward node after which a layer's parameter gradients are all ready (a Linear's
        # GEMM node; a cross layer's V projection's, its last): (tensors, parameters) it holds.
        self.grad_tensors: dict[str, tuple[int, int]] = {
            (f"{x.name}_v" if x.op == "dcnv2" else x.name): (3 if x.op == "dcnv2" else 2, x.params)
            for x in layers
            if x.params
        }
        self.dot_layer = next((x for x in layers if x.op == "dot"), None)
        # Every Linear is followed by a ReLU except the model's last one (its logit goes to the loss).
        linears = [x.name for x in layers if x.op == "linear"]
        self.activated = set(linears[:-1])
        bottom_rank = graph.metadata.get("bottom_rank")
        self.bottom_rank = int(bottom_rank) if bottom_rank is not None else None
        self.global_batch = int(graph.metadata.get("global_batch_size", 0))
        # fp16 autocast trains with torch.cuda.amp.GradScaler (module docstring).
        self.loss_scaling = workload.training.precision == "fp16"
        # Per rank, the widest vectors its own lookups write (their ``output_dtype``, the
        # runtime's rule, ``Runtime.lookup_output_dtype``): what it sends in the forward exchange
        # and gets back in the backward one (a rank holding only fp16 tables casts nothing for an
        # fp16 wire, whatever another rank's tables are); a rank without lookups sends no vectors.
        self.pooled_bytes_of_rank: dict[int, float] = {}
        for n in graph.nodes:
            if isinstance(n.op, Embedding) and n.op.pass_ == "forward":
                width = DTYPE_BYTES[n.op.output_dtype or n.op.dtype]
                self.pooled_bytes_of_rank[n.rank] = max(self.pooled_bytes_of_rank.get(n.rank, 0.0), width)
        self.steps = int(graph.metadata.get("steps", 1))
        self.old_stride = int(graph.metadata.get("step_stride", 0)) or (
            max((n.id for n in graph.nodes), default=-1) + 1
        )
        # Every node keeps its offset in its step; added nodes take ids after the step's nodes (at
        # most one host node and one epilogue or cast per node, plus a few per rank, and a
        # ``launch:`` node and a last kernel for each of the three multi-kernel dispatches of a
        # rank's step, ``_overlap_launches``: the dense optimizer, the dot interaction both ways).
        self.stride = 3 * self.old_stride + 14 * graph.ranks
        self.counters: dict[int, int] = defaultdict(int)
        self.redirect: dict[int, int] = {}  # old id of a forward layer -> new id of its epilogue
        # State of the (step, rank) being written.
        self.step = 0
        self.rank = 0
        self.program: list[Node] = []
        self.same_step: set[int] = set()
        self.barrier: list[int] = []
        # Bytes of the replicated tables' dense gradients on this rank and step (GradScaler unscales them).
        self.replicated_grad_bytes = 0.0
        # Elements of each replicated update's gradient on this rank and step, by op table.
        self.replicated_grad_elements: dict[str, int] = {}

    def new_id(self, old: int) -> int:
        return (old // self.old_stride) * self.stride + old % self.old_stride

    def dep(self, old: int) -> int:
        return self.redirect.get(old, self.new_id(old))

    def extra_id(self) -> int:
        self.counters[self.step] += 1
        # Added nodes must stay inside their step's id block (``stride``), or they would collide
        # with the next step's ids.
        if self.counters[self.step] > self.stride - self.old_stride:
            raise AssertionError(f"runtime pass added more nodes to step {self.step} than its id block holds")
        return self.step * self.stride + self.old_stride + self.counters[self.step] - 1

    def host(self, label: str, cpu_s: float, deps: tuple[int, ...] = ()) -> Node:
        node = Node(
            self.extra_id(),
            self.rank,
            f"{label}#{self.step}",
            Stream.HOST,
            Host(label, cpu_s=cpu_s),
            deps,
            phase="host",
        )
        self.program.append(node)
        return node

    def emit(self, n: Node, cpu_s: float | None) -> None:
        """``n`` (behind its dispatch node when ``cpu_s`` is given) and its epilogue, if it has one;
        after a layer's last gradient, or a replicated table's backward, DDP's copies of them into
        their bucket (``_ddp_bucket_copy``), which the bucket's all-reduce waits for."""
        start = len(self.program)
        self._emit(n, cpu_s)
        if cpu_s:
            self._overlap_launches(n, start)
        dtype = self.style.ddp_grad_dtype
        if dtype is None or n.phase != "backward":
            return
        if isinstance(n.op, Embedding):
            # A replicated table's backward (optimizer ``none``: it only writes the dense gradient,
            # ``recsim.graph.ir.Embedding``). TorchRec's DefaultDataParallelWrapper
            # (torchrec/distributed/model_parallel.py) has DDP ignore only the names of
            # ``sharded_parameter_names``, which skips DATA_PARALLEL lookups (ShardedEmbedding(Bag)
            # Collection, torchrec/distributed/embeddingbag.py and embedding.py), so DDP reduces
            # their weights: one ``nn.Parameter`` per group of tables, ``_emb_module.weights`` of
            # BatchedDenseEmbeddingBag (batched_embedding_kernel.py, the DENSE kernel DpPooled
            # EmbeddingSharding's lookup builds). FBGEMM's dense TBE backward returns a fresh dense
            # gradient of the weights' size and dtype (``grad_dev_weights =
            # zeros_like(dev_weights)``, embedding_backward_split_template.cu), which the reducer
            # copies into its bucket as the dense layers' (``_ddp_bucket_copy``): one tensor per
            # lookup node (the graph's replicated TBE is one such group; an unfused table its own).
            if n.op.pass_ != "backward" or n.op.optimizer != "none":
                return
            # The gradient's elements: the replicated update's sweep over the same tables (exact
            # over tables of unequal dims, where the fused lookup's ``rows x dim`` is in one mean
            # width), else the lookup's own.
            elements = self.replicated_grad_elements.get(n.op.table, n.op.rows * n.op.dim)
            held = (1, elements)
            dtype = n.op.dtype  # DDP's bucket holds the parameter's dtype (the table's)
        else:
            found = self.grad_tensors.get(_base_name(n))
            if found is None or not isinstance(n.op, Compute) or n.op.category != "gemm":
                return
            held = found
        after = self.redirect.get(n.id, self.new_id(n.id))
        node = Node(
            self.extra_id(),
            n.rank,
            f"{_base_name(n)}_ddp_bucket_copy#{self.step}",
            n.stream,
            _ddp_bucket_copy(*held, dtype),
            (after,),
            lane=n.lane,
            phase=n.phase,
        )
        self.program.append(node)
        self.redirect[n.id] = node.id

    def _overlap_launches(self, n: Node, start: int) -> None:
        """Let the kernels that ``n``'s dispatch launches (the device nodes ``_emit`` put in the
        program from ``start`` on, behind its ``dispatch:`` node) run while the host launches the
        rest of them: PyTorch runs each kernel as soon as it is launched and the stream is free, while
        the CPU goes on to the next (the V100 trace's for-loop Adagrad: 64 kernels launched over
        1.16 ms, the last ones starting 5-7 us after their launch, the last ending before the
        optimizer's host span does). The dispatch's CPU time is apportioned evenly over the ``K``
        kernels, as the calibration has no finer split (``recsim.graph.eager_calibration``):

        * the ``dispatch:`` node keeps the first launch's share, ``D / K``, which the first kernel
          waits for;
        * a ``launch:`` host node takes the other ``D (K - 1) / K``: the host's program goes on
          after it, while the GPU works;
        * the last kernel is a node of its own (``_last_kernel``), after the others and the
          ``launch:`` node, so the work cannot finish before the last launch plus one kernel.

        With ``K`` kernels of ``t`` each, launched every ``d = D / K``, this is PyTorch's finish
        ``max(start + K t, K d + t)`` exactly, ``start >= d`` being when the stream is free
        after the first launch (each kernel at ``max(k d, end of the previous)``: the latest of
        these bounds is the first's or the last's). Only a group of non-GEMM ``Compute`` nodes is
        split, as their time is linear in their kernels, FLOPs and bytes
        (``recsim.cost.compute.kernel_time_s``), so the parts sum to the whole; a GEMM's wave model
        is not, and a collective is one launch."""
        group = self.program[start:]
        at = next(
            (i for i, m in enumerate(group) if isinstance(m.op, Host) and m.op.op.startswith("dispatch:")),
            None,
        )
        if at is None:
            return
        dispatch, launched = group[at], group[at + 1 :]
        if not launched or not all(isinstance(m.op, Compute) and m.op.category != "gemm" for m in launched):
            return
        kernels = sum(m.op.kernels for m in launched if isinstance(m.op, Compute))
        assert isinstance(dispatch.op, Host)
        cpu_s = dispatch.op.cpu_s
        if kernels < 2 or cpu_s <= 0.0:
            return
        self.program[start + at] = replace(dispatch, op=replace(dispatch.op, cpu_s=cpu_s / kernels))
        launch = self.host(f"launch:{_base_name(n)}", cpu_s * (kernels - 1) / kernels)
        last = launched[-1]
        resolved = self.dep(n.id)
        position = self.program.index(last)
        assert isinstance(last.op, Compute)
        if last.op.kernels == 1:
            self.program[position] = replace(last, deps=(*last.deps, launch.id))
            return
        head, tail = _last_kernel(last.op)
        self.program[position] = replace(last, op=head)
        node = Node(
            self.extra_id(),
            last.rank,
            f"{last.name.split('#', 1)[0]}_last_kernel#{self.step}",
            last.stream,
            tail,
            (last.id, launch.id),
            lane=last.lane,
            phase=last.phase,
        )
        self.program.insert(position + 1, node)
        if resolved == last.id:
            self.redirect[n.id] = node.id

    def _emit(self, n: Node, cpu_s: float | None) -> None:
        deps = [self.dep(d) for d in n.deps]
        if self.barrier and not any(d in self.same_step for d in n.deps):
            deps += self.barrier
        if self.loss_scaling and isinstance(n.op, Compute) and n.op.category == "optimizer":
            deps = self._unscale_dense(n, deps)
        if cpu_s is not None:
            deps.append(self.host(f"dispatch:{_base_name(n)}", cpu_s).id)
        base = _base_name(n)
        if isinstance(n.op, Collective) and self._exchange(n, deps):
            return
        if _is_cross_layer(n):
            # The builder's node is HugeCTR's fused kernel; PyTorch runs its unfused kernels.
            assert isinstance(n.op, Compute)
            op = _cross_epilogue(n.op, n.phase == "backward")
            self.program.append(replace(n, id=self.new_id(n.id), deps=tuple(deps), op=op))
            return
        if (
            self.style.torch_dot
            and self.dot_layer is not None
            and isinstance(n.op, Compute)
            and n.op.op in ("dot", "dot_bwd")
        ):
            # The builder's node is the fused kernel; PyTorch runs its products, then its copies.
            backward = n.phase == "backward"
            product, rest = _torch_dot_interaction(n.op, self.dot_layer, backward)
            first = replace(n, id=self.new_id(n.id), deps=tuple(deps), op=product)
            second = Node(
                self.extra_id(),
                n.rank,
                f"{base}_copies_{'bwd' if backward else 'fwd'}#{self.step}",
                n.stream,
                rest,
                (first.id,),
                lane=n.lane,
                phase=n.phase,
            )
            self.program += [first, second]
            self.redirect[n.id] = second.id
            return
        if self.style.torch_dcn_concat and _is_dcn_concat(n):
            assert isinstance(n.op, Compute)
            op = _torch_dcn_concat(n.op, self.workload, n.phase == "backward")
            self.program.append(replace(n, id=self.new_id(n.id), deps=tuple(deps), op=op))
            return
        linear = base in self.activated and isinstance(n.op, Compute) and n.op.category == "gemm"
        if self.style.torch_optimizer and isinstance(n.op, Compute) and n.op.category == "optimizer":
            step = _torch_optimizer_step(n.op, self.workload.training.optimizer, self.tensors)
            self.program.append(replace(n, id=self.new_id(n.id), deps=tuple(deps), op=step))
            return
        if not linear:
            self.program.append(replace(n, id=self.new_id(n.id), deps=tuple(deps)))
            op = n.op
            # Only a materialised COO gradient is unscaled (fused TBE optimizers never write one).
            if (
                self.loss_scaling
                and isinstance(op, Embedding)
                and op.pass_ == "backward"
                and op.optimizer == "sparse_sgd"
            ):
                self._unscale_sparse(n, op)
            return
        backward = n.phase == "backward"
        epi = Node(
            self.extra_id(),
            n.rank,
            f"{base}_epilogue_{'bwd' if backward else 'fwd'}#{self.step}",
            n.stream,
            _epilogue(n, backward),
            (),
            lane=n.lane,
            phase=n.phase,
        )
        if backward:  # the activation's gradient comes first, then the layer's two GEMMs
            self.program.append(replace(epi, deps=tuple(deps)))
            self.program.append(replace(n, id=self.new_id(n.id), deps=(epi.id,)))
        else:
            self.program.append(replace(n, id=self.new_id(n.id), deps=tuple(deps)))
            self.program.append(replace(epi, deps=(self.new_id(n.id),)))
            self.redirect[n.id] = epi.id

    def bottom_wire_bytes(self, op: Collective) -> float:
        """Bytes of the model-parallel bottom MLP's output rows (all samples) in a pooled exchange
        of its rank: the forward sends them, the backward receives their gradients."""
        if not self.workload.bottom_mlp or op.op is not CollectiveOp.ALL_TO_ALL:
            return 0.0
        return self.global_batch * self.workload.bottom_mlp[-1] * wire_bytes_per_value(op.dtype)

    def _unscale_dense(self, n: Node, deps: list[int]) -> list[int]:
        """GradScaler before the dense optimizer ``n``: unscale its gradients, read ``found_inf``
        back (a host sync); the optimizer's new dependencies."""
        op = n.op
        assert isinstance(op, Compute)
        # The optimizer node writes the weights and their state: (1 + state) fp32 per parameter.
        # Replicated tables train as dense parameters (their ``update`` nodes): their gradients
        # are unscaled with the others.
        grads = op.bytes_written / (1 + OPTIMIZER_STATE[self.workload.training.optimizer])
        grads += self.replicated_grad_bytes
        node = Node(
            self.extra_id(),
            n.rank,
            f"amp_unscale:dense#{self.step}",
            n.stream,
            _unscale(grads),
            tuple(deps),
            lane=n.lane,
            phase=n.phase,
        )
        self.program.append(node)
        return [self.host("sync:found_inf", 0.0, (node.id,)).id]

    def _unscale_sparse(self, n: Node, op: Embedding) -> None:
        """GradScaler's unscale of a materialised COO embedding gradient (one row per lookup)."""
        node = Node(
            self.extra_id(),
            n.rank,
            f"amp_unscale:{_base_name(n)}#{self.step}",
            n.stream,
            _unscale(op.lookups * op.dim * DTYPE_BYTES[op.dtype]),
            (self.new_id(n.id),),
            lane=n.lane,
            phase=n.phase,
        )
        self.program.append(node)
        self.redirect[n.id] = node.id

    def _exchange(self, n: Node, deps: list[int]) -> bool:
        """Emit a pooled exchange with the kernels the runtime runs around it: the casts a narrower
        wire needs (a quantise before each exchange and a dequantise after it, on both ends:
        ``_cast_exchange``) and the framework's copies of an all-to-all's payload
        (``_Style.exchange_copies``: after the forward one, before the backward one); False when it
        needs none. The forward all-to-all after a row-wise reduce-scatter re-casts the reduced
        slices too, which the reduce-scatter's receivers decoded (TorchRec's ``ReduceScatter_Wait``
        decodes its output)."""
        op = n.op
        assert isinstance(op, Collective)
        base = n.name.split("#", 1)[0]
        forward = base.startswith(_POOLED_FORWARD)
        if not (forward or base.startswith(_POOLED_BACKWARD)) or len(op.group) < 2:
            # A one-rank "exchange" sends nothing: a single-GPU run has no process group (DLE's
            # DLRM builds none for one GPU), so no cast, copy or gradient slice around it.
            return False
        copies = self.style.exchange_copies and base.startswith(_POOLED_ALL_TO_ALL)
        if copies and not forward:
            sent = sum(op.send_bytes) if op.send_bytes is not None else op.bytes
            if self.workload.bottom_mlp:
                # DLE hands the interaction the bottom MLP's vector a second time, as a slice of
                # the exchanged payload (``from_bottom[:, 0, :]``), so autograd's select backward
                # writes a zero gradient of the whole payload with the slice's gradient in it and
                # adds it to the interaction's: write the zeros, read both, write the sum.
                elements = sent / wire_bytes_per_value(op.dtype)
                accumulate = Compute(
                    "grad_accumulate", elements, 2 * sent, 2 * sent, op.dtype, (), "elementwise"
                )
                deps = [self._exchange_kernel("grad_accumulate", n, accumulate, deps).id]
            # Each destination's slice of the gradient, made contiguous: what the rank sends.
            copy = self._exchange_kernel("contiguous", n, _cast("copy", sent, sent, op.dtype), deps)
            deps = [copy.id]
        if not self._cast_exchange(n, deps, forward):
            if not copies:
                return False
            self.program.append(replace(n, id=self.new_id(n.id), deps=tuple(deps)))
        if copies and forward:
            # The receive buffers (one per source), concatenated: what the rank received.
            received = sum(op.recv_bytes) if op.recv_bytes is not None else op.bytes
            after = self.redirect.get(n.id, self.new_id(n.id))
            cat = _cast("copy", received, received, op.dtype)
            self.redirect[n.id] = self._exchange_kernel("cat", n, cat, [after]).id
        return True

    def _exchange_kernel(self, label: str, n: Node, op: Compute, deps: Sequence[int]) -> Node:
        """The kernel ``op`` that the runtime runs beside the pooled exchange ``n``, on the rank's
        compute stream after ``deps``, named ``label:<exchange>#<step>``."""
        node = Node(
            self.extra_id(),
            n.rank,
            f"{label}:{n.name.split('#', 1)[0]}#{self.step}",
            Stream.COMPUTE,
            op,
            tuple(deps),
            phase=n.phase,
        )
        self.program.append(node)
        return node

    def _cast_exchange(self, n: Node, deps: list[int], forward: bool) -> bool:
        """Emit the pooled exchange ``n`` with the cast kernels a narrower wire needs; False (and
        nothing emitted) when it needs none.

        A codec casts on both ends of each exchange (TorchRec's qcomm, ``All2All_Pooled_Req`` /
        ``All2All_Pooled_Wait`` in torchrec/distributed/comm_ops.py, on the compute stream): forward,
        the senders encode their pooled vectors (``codecs.forward.encode``) and the receivers decode
        what they received, their local batch of every feature (``codecs.forward.decode``), into the
        dtype the interaction reads (``_Style.decoded_dtype``); backward, the receivers encode the
        gradient of that tensor (``codecs.backward.encode``) and the senders decode what comes back
        (``codecs.backward.decode``). Each cast runs only where its two dtypes differ in width."""
        op = n.op
        assert isinstance(op, Collective)
        wire = wire_bytes_per_value(op.dtype)
        # The bytes this rank puts in and takes out (``Collective.bytes`` is the rank's input).
        members = len(op.group)
        if op.op is CollectiveOp.ALL_TO_ALL:
            put = sum(op.send_bytes) if op.send_bytes is not None else op.bytes
            got = sum(op.recv_bytes) if op.recv_bytes is not None else op.bytes
        elif op.op is CollectiveOp.REDUCE_SCATTER:
            put, got = op.bytes, op.bytes / members
        elif op.op is CollectiveOp.ALL_GATHER:
            put, got = op.bytes, op.bytes * members
        else:
            put = got = op.bytes
        # The owners' side: what the lookups wrote (forward, sent) and their gradients (backward,
        # received). A model-parallel bottom MLP's output rows travel in the same exchange; they
        # leave the MLP in the dense precision, the table vectors in the tables' (each cast only if
        # wider).
        owned = put if forward else got
        bottom = self.bottom_wire_bytes(op) if n.rank == self.bottom_rank else 0.0
        widths = (
            (owned - bottom, self.pooled_bytes_of_rank.get(n.rank, 0.0)),
            (bottom, DTYPE_BYTES[self.workload.training.precision]),
        )
        parts = [(size, width / wire) for size, width in widths if size > 0 and width > wire]
        owner_narrow = sum(size for size, _ in parts)  # bytes on the wire
        owner_wide = sum(size * widen for size, widen in parts)  # the same values before the cast
        # The consumers' side: the interaction's input (forward, received) and its gradient
        # (backward, sent), in the dtype the receivers decode into.
        consumer = self.style.decoded_dtype or self.workload.training.precision
        widen = DTYPE_BYTES[consumer] / wire
        used = got if forward else put
        user_narrow = used if widen > 1.0 and used > 0 else 0.0
        if owner_narrow <= 0 and user_narrow <= 0:
            return False
        coll_id = self.new_id(n.id)
        if forward:
            if owner_narrow > 0:
                deps = [self._quantise(n, owner_wide, owner_narrow, deps)]
            self.program.append(replace(n, id=coll_id, deps=tuple(deps)))
            if user_narrow > 0:
                decode = _cast("dequantise", user_narrow, user_narrow * widen, consumer)
                self.redirect[n.id] = self._exchange_kernel("dequantise", n, decode, [coll_id]).id
            return True
        if user_narrow > 0:
            deps = [self._quantise(n, user_narrow * widen, user_narrow, deps)]
        self.program.append(replace(n, id=coll_id, deps=tuple(deps)))
        if owner_narrow > 0:
            decode = _cast("dequantise", owner_narrow, owner_wide, op.dtype)
            self.redirect[n.id] = self._exchange_kernel("dequantise", n, decode, [coll_id]).id
        return True

    def _quantise(self, n: Node, wide: float, narrow: float, deps: Sequence[int]) -> int:
        """Emit the cast of ``wide`` bytes into the ``narrow`` bytes the exchange ``n`` sends, after
        ``deps``; the id of its last kernel. FBGEMM's half-precision encoders clamp first, into a
        tensor of their own (quantize_comm.py, ``fp32_to_fp16_with_clamp``: ``torch.clamp(tensor,
        min, max).half()``, likewise bf16): a kernel reading and writing the wide values, then the
        cast (``_Style.clamps_half_wire``)."""
        op = n.op
        assert isinstance(op, Collective)
        if self.style.clamps_half_wire and op.dtype in _HALF:
            deps = [self._exchange_kernel("clamp", n, _cast("clamp", wide, wide, "fp32"), deps).id]
        return self._exchange_kernel("quantise", n, _cast("quantise", wide, narrow, op.dtype), deps).id

    def run(self, name: str) -> ExecutionGraph:
        by_key: dict[tuple[int, int], list[Node]] = defaultdict(list)  # (step, rank) -> nodes in order
        for n in self.graph.nodes:
            by_key[(n.id // self.old_stride, n.rank)].append(n)
        out: list[Node] = []
        last_device: dict[int, tuple[int, ...]] = {}  # rank -> its previous step's device nodes
        for step in range(self.steps):
            for rank in range(self.graph.ranks):
                nodes = by_key.get((step, rank), [])
                if not nodes:
                    continue
                if self.style.issue_order:
                    nodes = _issue_order(nodes)
                self.step, self.rank, self.program = step, rank, []
                self.same_step = {n.id for n in nodes}
                updates = [n.op for n in nodes if isinstance(n.op, Embedding) and n.op.pass_ == "update"]
                self.replicated_grad_bytes = sum(
                    op.rows * op.dim * DTYPE_BYTES[op.output_dtype or op.dtype] for op in updates
                )
                self.replicated_grad_elements = {op.table: op.rows * op.dim for op in updates}
                self.barrier = []
                if self.style.step_sync and rank in last_device:
                    self.barrier = [self.host("sync:step", 0.0, last_device[rank]).id]
                if self.style.dispatch is None:
                    for n in nodes:
                        self.emit(n, None)
                else:
                    _dispatch_program(self, nodes, self.style.dispatch)
                last_device[rank] = tuple(n.id for n in self.program if n.stream is not Stream.HOST)
                out.extend(self.program)
        metadata = dict(self.graph.metadata)
        metadata["step_stride"] = self.stride
        metadata["runtime"] = name
        return ExecutionGraph(self.graph.ranks, out, metadata)


def _issue_order(nodes: list[Node]) -> list[Node]:
    """One rank's step in the order its program issues the backward collectives: each right after
    the last node of the step it waits for (the graph lists every gradient all-reduce before the
    backward exchange). DDP's hook launches a bucket's all-reduce as the autograd thread accumulates
    the bucket's last gradient, and the pooled exchange's backward runs as soon as the interaction's
    backward has produced the embeddings' gradients (its autograd node is the later-created one in
    TorchRec's and DLE's forward, so it goes before the bottom MLP's): on one NCCL stream the
    all-reduces of the top layers go before the backward all-to-all and those of the bottom layers
    after it (the Kineto trace ``tests/data/traces/param_dlrm_kineto``: AllReduce, SendRecv,
    AllReduce, AllReduce on one stream). The rest keeps its order; a collective that waits on
    nothing of the step stays where it is."""
    position = {n.id: i for i, n in enumerate(nodes)}
    after: dict[int, list[Node]] = defaultdict(list)  # anchor id -> collectives issued right after it
    moved: set[int] = set()
    for n in nodes:
        if isinstance(n.op, Collective) and n.phase == "backward":
            own = [d for d in n.deps if d in position]
            if own:
                after[max(own, key=position.__getitem__)].append(n)
                moved.add(n.id)
    if not moved:
        return nodes
    out: list[Node] = []

    def put(n: Node) -> None:
        out.append(n)
        for m in after.get(n.id, ()):
            put(m)

    for n in nodes:
        if n.id not in moved:
            put(n)
    assert len(out) == len(nodes)
    return out


def _last_kernel(op: Compute) -> tuple[Compute, Compute]:
    """``op``'s kernels but its last, and its last (``_Rewriter._overlap_launches``): each kernel
    taken as an equal share of the node's FLOPs and bytes, as the node does not say how its kernels
    differ; the two parts' times sum to the node's (``recsim.cost.compute.kernel_time_s`` is linear
    in them)."""
    k = op.kernels
    head = replace(
        op,
        flops=op.flops * (k - 1) / k,
        bytes_read=op.bytes_read * (k - 1) / k,
        bytes_written=op.bytes_written * (k - 1) / k,
        kernels=k - 1,
    )
    tail = replace(
        op, flops=op.flops / k, bytes_read=op.bytes_read / k, bytes_written=op.bytes_written / k, kernels=1
    )
    return head, tail


def _dispatch_program(rw: _Rewriter, nodes: list[Node], c: EagerCosts) -> None:
    """The eager issue order of one rank and step: loop, loads, forward, input dist, backward,
    optimizer, each device node behind its dispatch, with the syncs of the module docstring."""
    inputs = [n for n in nodes if n.phase == "input"]
    dists = [n for n in inputs if isinstance(n.op, Collective)]
    loads = [n for n in inputs if not isinstance(n.op, Collective)]
    forward = [n for n in nodes if n.phase == "forward"]
    backward = [n for n in nodes if n.phase == "backward"]
    optimizer = [n for n in nodes if n.phase == "optimizer"]
    others = [n for n in nodes if n.phase not in ("input", "forward", "backward", "optimizer")]
    optimizer_s = rw.tensors * OPTIMIZER_OPS_PER_TENSOR[rw.workload.training.optimizer] * c.optimizer_op_s
    dot = rw.workload.interaction.type == "dot"
    # TorchRec dispatches an input dist, a lookup and an output dist per sharding type of the plan
    # (``EagerCosts.group_forward_s``); the calibration trace has one routed sharding type, so each
    # further one adds its input dist and its output side (in the exchange piece) once more.
    groups = max(1, int(rw.graph.metadata.get("routed_sharding_types", 1)))
    extra_groups = groups - 1

    def shares(
        part: list[Node], pieces: tuple[str, ...], linear_s: float, rest_s: float, exchange_s: float = 0.0
    ) -> dict[int, float | None]:
        """CPU seconds to dispatch each node of ``part`` (one pass of one rank and step); None for a
        collective that does not run (``_moves_nothing``): no dispatch, and its piece's share goes
        to nothing (the calibration's exchange piece is the 8-rank trace's all-to-alls).
        ``exchange_s``: CPU seconds added to the exchange piece (the further sharding types')."""
        count: dict[str, int] = defaultdict(int)
        for n in part:
            if _base_name(n) not in rw.linear_units and not _moves_nothing(n.op):
                count[_piece(n)] += 1
        cost: dict[int, float | None] = {}
        for n in part:
            units = rw.linear_units.get(_base_name(n))
            if units is not None:
                cost[n.id] = units * linear_s
            elif _moves_nothing(n.op):
                cost[n.id] = None
            else:
                piece = _piece(n)
                own = rest_s / len(pieces) + (exchange_s if piece == "exchange" else 0.0)
                cost[n.id] = own / count[piece] if piece in pieces else 0.0
        return cost

    def interaction_sync(n: Node) -> None:
        if dot and isinstance(n.op, Compute) and n.op.category == "interaction" and n.deps:
            rw.host("sync:interaction_index", 0.0, tuple(rw.dep(d) for d in n.deps))

    rw.host("loop", c.step_fixed_s)
    for n in loads:
        rw.emit(n, None)
    cost = shares(
        forward, FORWARD_PIECES, c.linear_forward_s, c.forward_rest_s, extra_groups * c.group_forward_s
    )
    for n in forward:
        interaction_sync(n)
        rw.emit(n, cost[n.id])
    # The next batch's sparse_data_dist (one per routed sharding type) and the wait on its splits,
    # where it routes anything.
    routed = [n for n in dists if not _moves_nothing(n.op)]
    for n in dists:
        rw.emit(n, groups * c.input_dist_s / len(routed) if n in routed else None)
    if routed:
        rw.host("sync:input_dist_splits", 0.0, tuple(rw.dep(n.id) for n in routed))
    cost = shares(
        backward, BACKWARD_PIECES, c.linear_backward_s, c.backward_rest_s, extra_groups * c.group_backward_s
    )
    for n in backward:
        # IndexBackward0 -> index_put_ copies the same CPU index tensor: a second sync.
        interaction_sync(n)
        rw.emit(n, cost[n.id])
    for n in optimizer:
        is_dense = isinstance(n.op, Compute) and n.op.category == "optimizer"
        rw.emit(n, optimizer_s if is_dense else 0.0)
    for n in others:
        rw.emit(n, None)


@register
class Eager(Runtime):
    """Eager PyTorch/TorchRec: a host thread per rank dispatches every node (module docstring)."""

    name = "eager"
    costs: ClassVar[EagerCosts] = TORCHREC_V100
    host_orders_input = True
    # TorchRec's sharded modules run their input and output dists on the ShardingEnv's process
    # group, and DefaultDataParallelWrapper.wrap builds DDP with ``pg = env.process_group``
    # (torchrec/distributed/model_parallel.py): one communicator, one NCCL stream. The project's
    # Kineto trace of an 8-rank TorchRec DLRM has every NCCL kernel on one stream, serialised.
    shared_comm_queue = True
    # TrainPipelineSparseDist.progress (torchrec/distributed/train_pipeline/train_pipelines.py)
    # runs, in step i, start_sparse_data_dist(self.batches[1]) on batch i + 1, copied to the device
    # by the previous step's enqueue_batch, then enqueue_batch copies batch i + 2: this step's
    # input dist reads the previous step's copy.
    input_dist_follows_previous_copy = True
    cat_backward_is_view = True

    def gradient_bucket_caps(self, dtype: str) -> tuple[float | None, float]:
        # torch DDP (TorchRec's DefaultDataParallelWrapper): after the first iteration
        # Reducer::rebuild_buckets (c10d/reducer.cpp) refills the buckets in gradient-ready order
        # with the limits {first_bucket_bytes_cap_ (dist._DEFAULT_FIRST_BUCKET_BYTES, 1 MiB),
        # bucket_bytes_cap_ (bucket_cap_mb, 25 MiB)}: the first-reduced bucket is capped at 1 MiB.
        return (DDP_FIRST_BUCKET_BYTES, DDP_BUCKET_BYTES)

    def apply(self, graph: ExecutionGraph, workload: Workload) -> ExecutionGraph:
        # FBGEMM's codecs decode into fp32 whatever the dense precision (quantize_comm.py,
        # ``_dequantize_tensor``: ``fp16_to_fp32``, ``bf16_to_fp32``, ``hfp8_to_fp32``,
        # ``Fused8BitRowwiseQuantizedToFloat``); an autocast interaction casts its input itself.
        style = _Style(
            self.costs,
            step_sync=False,
            issue_order=self.shared_comm_queue,
            decoded_dtype="fp32",
            clamps_half_wire=True,
            torch_dot=True,
            torch_optimizer=True,
            torch_dcn_concat=True,
            ddp_grad_dtype=self.dense_gradient_dtype(workload.training.precision),
        )
        return _Rewriter(graph, workload, style).run(self.name)


APEX_MESSAGE_SIZE = 10_000_000  # apex.parallel.DistributedDataParallel message_size (elements)


@register
class CudaGraphs(Runtime):
    """PyTorch kernels replayed from a CUDA graph each step (module docstring)."""

    name = "cuda_graphs"
    framework = "NVIDIA DLE's DLRM"
    # DLE's training loop iterates ``prefetcher(iter(data_loader_train), data_stream)``
    # (dlrm/data/utils.py), which loads the next batch onto the device before yielding this one.
    prefetches_next_batch = True
    # NVIDIA DLE casts the all-to-all payload to fp16 under AMP.
    half_precision_wire = True
    # DLE's BottomToTop (dlrm/model/distributed.py) all-to-alls the bottom model's output in its
    # dtype, fp32 or the fp16 the bottom model casts to (``DlrmBottom(..., fp16=...)``): no codec
    # for any narrower wire. bf16 is kept as ``Fused`` keeps it.
    wire_dtypes = frozenset({"fp32", "fp16", "bf16"})
    # DLE's hybrid parallelism runs the bottom MLP on one GPU for the whole batch.
    plan_features = frozenset({"model_parallel_bottom"})
    # DLE wraps its top model in DDP on the default process group, and its all-to-all
    # (``torch.distributed.all_to_all`` in dlrm/model/distributed.py) takes that group too.
    shared_comm_queue = True
    # DLE's CatInteraction (dlrm/nn/interactions.py) is a ``view`` of the vectors its model
    # concatenated with ``torch.cat``: autograd's backward of both, no kernel.
    cat_backward_is_view = True

    def dot_output_padding(self, width: int) -> int:
        # DLE's DotInteraction (dlrm/nn/interactions.py) pads its output with zeros to the next
        # multiple of 8 (``padding_size``; ``num_interactions``, which DlrmTop builds its MLP on;
        # its ``CudaDotInteraction`` keeps that width): 479 -> 480 for DLRM v1.
        return -width % 8

    def gradient_bucket_caps(self, dtype: str) -> tuple[float | None, float]:
        # DLE wraps its top model in apex's DDP (main.py: ``parallel.DistributedDataParallel(
        # model.top_model)``, default message_size=10000000): apex/parallel/distributed.py fills its
        # buckets in gradient-arrival order on the first iteration and ships one once it holds
        # ``message_size`` elements (``tmp_numels >= message_size``), the rest in the last; no
        # smaller first bucket.
        return (None, APEX_MESSAGE_SIZE * DTYPE_BYTES[dtype])

    def per_rank_feature_input(self, plan: Plan) -> bool:
        # DLE's loader reads per rank: create_dataset_factory (dlrm/data/factories.py) gives rank r
        # the categorical features of device_mapping["embedding"][r] (the tables it holds) and the
        # numerical features only where device_mapping["bottom_mlp"] == r, and ParametricDataset /
        # SplitCriteoDataset (dlrm/data/datasets.py) read them from their per-feature files for
        # ``flags.batch_size``, the global batch; collate_split_tensors copies them to the GPU as
        # they are. The model then needs only the pooled-embedding all-to-all
        # (dlrm/model/distributed.py); no index crosses the network.
        return True

    def apply(self, graph: ExecutionGraph, workload: Workload) -> ExecutionGraph:
        style = _Style(None, step_sync=True, exchange_copies=True, issue_order=self.shared_comm_queue)
        return _Rewriter(graph, workload, style).run(self.name)
