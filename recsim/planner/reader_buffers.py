"""HBM the data loader's own buffers take on each rank: the raw records it uploads, the tensors it
splits them into and the batches it holds ahead, beside the ids an owner reads for its lookups
(``storage.input_buffer_bytes``). ``storage.input_by_rank`` adds them to a rank's ``inputs``
(``memory_peak_bytes.hbm_inputs``), the planners reserve them beside the dense side
(``rank_reader_bytes``: ``Estimator.reader_hbm_bytes``), so that a plan they make fits
``check_fits``.

**HugeCTR** (``fused``: ``Runtime.hugectr_async_reader``) reads NVIDIA's MLPerf raw binary data
(``DataReaderType_t.RawAsync``) with one of two readers, which allocate all their device buffers up
front (``cudaMalloc`` in their constructors) and keep them for the run:

- the **multi-hot AsyncDataReader** (``AsyncParam(multi_hot_reader=True)``, the embedding
  collection of MLPerf DLRM-DCNv2), for a plan without routed rows. Its ``DataReaderImpl``
  (HugeCTR/src/data_readers/multi_hot/detail/data_reader_impl.cpp) keeps ``num_inflight_batches =
  std::min(num_reader_threads_per_device * num_batches_per_thread, num_batches_)`` batches and, for
  each and every local GPU, ``cudaMalloc(&ptr, local_batch_size_bytes)`` with
  ``local_batch_size_bytes = (batch_size / global_gpu_count) * source.sample_size_bytes``: the GPU's
  own samples' records, ``sample_size_items_ = label_dim + dense_dim + total_nnz * (sizeof(
  SparseType) / sizeof(InputType))`` 4-byte items a sample (multi_hot/async_data_reader.cpp).
  ``add_input`` (HugeCTR/src/pybind/add_input.cpp) passes it ``async_param.num_threads`` and
  ``num_batches_per_thread``, which NVIDIA's DCNv2 train.py (HugeCTR samples/dlrm/train.py, the
  MLPerf v5.0 submission's dlrm_dcnv2/implementations/hugectr/train.py) sets to
  ``hugectr.AsyncParam(num_threads=1, num_batches_per_thread=16, shuffle=False,
  multi_hot_reader=True, is_dense_float=True)`` (``DCNV2_READER_BATCHES``: 16). The reader then
  splits a batch (``split_3_way_feat_major``) into ``set_tensor_buffering(1)`` set of batch tensors
  a GPU (``init_batch_tensors``: one label and dense tensor of ``batch_size_per_dev_ x (label_dim x
  sizeof(float) + dense_dim x (mixed_precision ? sizeof(__half) : sizeof(float)))`` bytes, and for
  each feature a ``SparseTensor23`` of ``batch_size_per_dev_ x hotness`` keys with
  ``batch_size_per_dev_ + 1`` row offsets, and ``sparse_dim`` uint64 value pointers), whose label
  and dense values it copies into the model's input tensors (the constructor's ``label_tensors_``
  and ``dense_tensors_``, one more label and dense tensor: ``assign_dense_and_label_tensors``).
  The dense dimension is not padded (its ``dense_dim_align8 = dense_dim``).
- the **one-hot AsyncReader** (HugeCTR/src/data_readers/async_reader/), which every GPU's hybrid
  embedding needs the whole batch of (``Runtime.global_batch_input``, a plan with routed rows:
  MLPerf DLRM v1). Its ``AsyncReaderImpl`` (async_reader.cpp) makes ``buffers_.resize(std::min(
  (size_t)num_threads_ * num_batches_per_thread, num_batches_))`` buffers and, for each, a
  ``cudaMalloc(&buf->dev_data[id], batch_size_bytes_)`` on every local device, where ``AsyncReader``
  (async_reader_adapter.cpp) passes ``batch_size_bytes = sample_size_items_ * sizeof(InputType) *
  batch_size``: the *global* batch's records (``graph.build.global_batch_record_bytes``).
  NVIDIA's MLPerf DLRM v1 configs pass ``hugectr.AsyncParam(32, 4, ..., hugectr.Alignment_t.Auto)``
  (num_threads 32, num_batches_per_thread 4: training_results_v2.0 NVIDIA/benchmarks/dlrm/
  implementations/hugectr/dgx_a100.py, training_results_v2.1 .../hugectr-preview/dgx_h100.py;
  ``DLRM_V1_READER_BATCHES``: 128). The hybrid embedding asks ``set_tensor_buffering(2)`` ("Double
  buffering for overlapping indices calculation between iterations": ``HybridSparseEmbedding::
  setup_buffered_indices`` with ``use_train_precompute_indices``), two sets of batch tensors a GPU,
  each a label and dense tensor of the local batch and a ``sparse_buffer_`` of ``batch_size_ x
  sparse_dim_ x sizeof(SparseType)``: the global batch's keys; plus the model's label and dense
  tensors (the constructor's). ``Alignment_t::Auto`` pads the dense dimension to a multiple of 8
  (``dense_dim_align8 = (dense_dim + 7) / 8 * 8``) in those tensors, not in the records.

Keys are 4 B (``SparseType`` uint32: ``i64_input_key`` is off in those configs, as the records'
``RAW_RECORD_ITEM_BYTES``), labels fp32 (``LabelType`` float), dense values fp16 under mixed
precision (a half ``training.precision``), else fp32.

**DLE** (``cuda_graphs``: ``Runtime.prefetches_next_batch``) iterates its loader through
``prefetcher(load_iterator, prefetch_stream)`` (DeepLearningExamples PyTorch/Recommendation/DLRM
dlrm/data/utils.py; dlrm/scripts/main.py: ``batch_iter = prefetcher(iter(data_loader_train),
data_stream)``), which loads the next batch onto the device (``next_data_batch = _prefetch()``)
before it yields this one: two batches of what its loader copies on every rank
(``storage.held_input_batches``): the ids of its tables (``storage.input_by_rank``) and here the
numerical features (fp16, ``graph.build.SPLIT_NUMERICAL_BYTES``, for the rows it runs the bottom
MLP on) and the batch's labels (``SPLIT_LABEL_BYTES``), as ``graph.build._Builder.
per_rank_feature_input`` copies them.

HugeCTR's **evaluation reader** (``training.eval_batch_size``; none counted without it): ``add_input``
(HugeCTR/src/pybind/add_input.cpp) builds it at model construction beside the training one, of the
same kind (a multi-hot ``AsyncDataReader`` or a one-hot ``AsyncReader``) with the solver's
``batch_size_eval`` (``CreateSolver(batchsize_eval=...)``) as its batch, the training reader's
``num_threads`` and ``eval_num_batches_per_thread = num_batches_per_thread``, raised to
``ceil(cache_eval_data / num_threads)`` where ``cache_eval_data`` exceeds ``num_threads x
num_batches_per_thread``; like the training reader it allocates its buffers in its constructor and
keeps them for the run (MLPerf evaluates every ``eval_interval``). Both readers hold no more
buffers than their file has batches: the multi-hot ``DataReaderImpl``'s queue depth, the one-hot
``AsyncReaderImpl``'s ``buffers_.resize(std::min((size_t)num_threads_ * num_batches_per_thread,
num_batches_))`` with ``num_batches_ = ceil(file size / batch bytes)``, here MLPerf's Criteo
evaluation set (``CRITEO_EVAL_SAMPLES``). So:

- multi-hot (DCNv2 train.py: ``cache_eval_data=1``): ``min(16, ceil(CRITEO_EVAL_SAMPLES /
  eval batch))`` buffers of the GPU's share of the evaluation batch's records, and its one set of
  split tensors and label and dense tensors (its constructor's ``set_tensor_buffering(1)``; the
  embedding collection asks nothing more of it, as far as read): for the 1 x DGX H100 config
  (``BATCHSIZE_EVAL=262144``, HugeCTR samples/dlrm/config_DGXH100_1x8x6912.sh) 16 buffers of
  32,768 x 912 B, 0.51 GB a GPU with its tensors; at the v4.0 DGX H200 config's 1,048,576
  (training_results_v4.0 NVIDIA/benchmarks/dlrm_dcnv2/implementations/merlin_hugectr/
  config_DGXH200_1x8x6912.sh) 2.0 GB.
- one-hot (MLPerf DLRM v1: ``batchsize_eval = 1769472``, ``cache_eval_data = 51``, below 32 x 4
  so 4 batches a thread): ``min(128, ceil(89,137,319 / 1,769,472) = 51)`` = 51 buffers of the
  global evaluation batch's records (the whole evaluation set, resident), 14.4 GB a GPU; and as
  the hybrid embedding's ``use_eval_precompute_indices`` (the second ``True`` of the configs'
  ``HybridEmbeddingParam(2, -1, 0.03, 1.3e11, 1.9e11, 1.0, True, True, ...)``) asks
  ``eval_data_reader->set_tensor_buffering(eval_data_reader->get_max_batches_inflight())``
  (``HybridSparseEmbedding::setup_buffered_indices``; ``AsyncReader::get_max_batches_inflight``
  returns ``reader_impl_->get_num_buffers()``), 51 sets of split tensors, each with the global
  evaluation batch's keys (9.8 GB), and the label and dense tensors: 24.2 GB a GPU.

HugeCTR's evaluation network, the dense layers built again on the evaluation reader's tensors and
the embeddings' evaluation outputs, is counted with the activations (``recsim.planner.
eval_network``, ``storage.dense_hbm_parts``), not here.

Left out, with what they would take: the hybrid embedding's evaluation-side precomputed indices
(``create_buffered_indices`` for each cached evaluation batch: not sized from its sources here).
A routed plan of a multi-hot workload,
which HugeCTR's hybrid embedding does not run (``Runtime`` refuses it), is charged the one-hot
evaluation reader too: at dlrm-dcnv2's 262,144 samples its 128 buffers of 912 B records and as many
sets of keys, 59.5 GB (55.4 GiB) a GPU, more than such a plan's HBM holds; the runtime's refusal is
checked first (``recsim.errors.RuntimeRefusal``: ``recsim run``, ``recsim plan`` and ``auto`` give it,
not the memory). The one-hot reader's
``init_data_reader`` (one buffer of
``num_iterations_statistics x batch_size`` samples; whether it is freed after the hybrid
embedding's statistics is not read), the hybrid embedding's buffered frequent/infrequent indices
(per batch held, not sized from its sources here), the readers' per-config constants (bucket maps,
a few KiB), DLE's fp32 cast of the numerical features and any static input copy of its CUDA graph,
and TorchRec's (``eager``) dense inputs and labels. Also DLE's ids of the local batch for each
replicated (``data_parallel``) table a rank holds no model-parallel shard of, which its loader copies
too (``graph.build._Builder.per_rank_feature_input``) and ``storage.input_by_rank`` leaves out:
``held_input_batches`` x ``feature_index_bytes`` of the local batch, 2 x 8,192 x 8 B = 128 KiB a
one-hot table at local batch 8,192. Counting them would need the estimator's once-a-table ids
(``Block.input_once_bytes``) to let a table's global-batch ids on a rank replace its local ones
whichever block is placed first, for the planners to agree with the memory report.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from recsim.cost.memo import VALUES_KEPT, let_go_when_full
from recsim.graph.build import (
    RAW_RECORD_ITEM_BYTES,
    SPLIT_LABEL_BYTES,
    SPLIT_NUMERICAL_BYTES,
    global_batch_record_bytes,
)
from recsim.planner.types import Plan
from recsim.workload.spec import Workload

if TYPE_CHECKING:
    from recsim.graph.runtime import Runtime

#: Record buffers a GPU holds under HugeCTR's multi-hot AsyncDataReader: ``num_threads x
#: num_batches_per_thread`` of NVIDIA's DCNv2 train.py, ``hugectr.AsyncParam(num_threads=1,
#: num_batches_per_thread=16, shuffle=False, multi_hot_reader=True, is_dense_float=True)``
#: (NVIDIA-Merlin/HugeCTR samples/dlrm/train.py; the MLPerf training v5.0 submission's
#: NVIDIA/benchmarks/dlrm_dcnv2/implementations/hugectr/train.py passes the same).
DCNV2_READER_BATCHES = 1 * 16
#: Global-batch buffers a GPU holds under HugeCTR's one-hot AsyncReader: ``num_threads x
#: num_batches_per_thread`` of NVIDIA's MLPerf DLRM v1 configs, ``hugectr.AsyncParam(32, 4, ...)``
#: (mlcommons training_results_v2.0 NVIDIA/benchmarks/dlrm/implementations/hugectr/dgx_a100.py,
#: training_results_v2.1 .../hugectr-preview/dgx_h100.py and dgx_h100_4x8x2240.py).
DLRM_V1_READER_BATCHES = 32 * 4
#: Sets of split batch tensors a GPU holds: the multi-hot reader's constructor's
#: ``set_tensor_buffering(1)``; the hybrid embedding's ``set_tensor_buffering(2)`` on the one-hot one.
MULTI_HOT_TENSOR_SETS = 1
ONE_HOT_TENSOR_SETS = 2
LABEL_BYTES = 4.0  # HugeCTR's LabelType: float
POINTER_BYTES = 8.0  # the multi-hot reader's per-feature value pointers (UInt64)
#: A row offset of the multi-hot reader's ``SparseTensor23``: its ``init_batch_tensors`` builds each
#: with ``core23::ToScalarType<SparseType>::value`` as both the value and the offset type and fills
#: ``std::vector<SparseType> row_offsets(batch_size_per_dev_ + 1)`` (HugeCTR/src/data_readers/
#: multi_hot/async_data_reader.cpp): the key type, uint32 (``i64_input_key`` off, module docstring).
ROW_OFFSET_BYTES = 4.0
#: ``Alignment_t::Auto`` of the MLPerf DLRM v1 configs: the one-hot reader's dense tensors padded to
#: a multiple of 8 values (``dense_dim_align8 = (dense_dim + 7) / 8 * 8``).
ONE_HOT_DENSE_ALIGN = 8
#: Samples of MLPerf's Criteo 1TB evaluation set, which bounds the evaluation readers' buffers (no
#: more than the file's batches): ``EVAL_NUM_SAMPLES = 89137319`` of NVIDIA's DCNv2 train.py
#: (HugeCTR samples/dlrm/train.py), ``eval_num_samples = 89137319`` of the DLRM v1 configs
#: (training_results_v2.0 NVIDIA/benchmarks/dlrm/implementations/hugectr/dgx_a100.py).
CRITEO_EVAL_SAMPLES = 89_137_319


def mixed_precision_value_bytes(workload: Workload) -> float:
    """Bytes of a value HugeCTR keeps in its compute type (a dense input value in its split tensors,
    a dense layer's or an embedding's output: ``recsim.planner.eval_network``): ``__half`` under
    mixed precision (``use_mixed_precision``: a half-precision ``training.precision``), else
    ``float`` (fp32, and tf32, which HugeCTR runs as fp32 storage with ``enable_tf32_compute``)."""
    return 4.0 if workload.training.precision in ("fp32", "tf32") else 2.0


def _lookups(workload: Workload) -> float:
    return math.fsum(workload.table_lookups(t) for t in workload.tables)


def _multi_hot_bytes(workload: Workload, world_size: int, batch: float, buffers: int) -> float:
    """HBM of a multi-hot AsyncDataReader of global batch ``batch`` on each GPU: its ``buffers``
    record buffers of the GPU's samples, one set of split tensors and its label and dense tensors."""
    w = workload
    b = batch / world_size
    keys = _lookups(w)
    records = buffers * global_batch_record_bytes(w, b)  # of the GPU's b samples
    label_dense = b * (LABEL_BYTES + w.dense_features * mixed_precision_value_bytes(w))
    offsets = w.num_tables * ((b + 1) * ROW_OFFSET_BYTES + POINTER_BYTES)
    sparse = b * keys * RAW_RECORD_ITEM_BYTES + offsets
    return records + MULTI_HOT_TENSOR_SETS * (label_dense + sparse) + label_dense


def _one_hot_bytes(workload: Workload, world_size: int, batch: float, buffers: int, sets: int) -> float:
    """HBM of a one-hot AsyncReader of global batch ``batch`` on each GPU: its ``buffers`` buffers of
    the global batch's records, ``sets`` sets of split tensors (the global batch's keys in each) and
    its label and dense tensors."""
    w = workload
    b = batch / world_size
    dense = -(-w.dense_features // ONE_HOT_DENSE_ALIGN) * ONE_HOT_DENSE_ALIGN
    records = buffers * global_batch_record_bytes(w, batch)
    label_dense = b * (LABEL_BYTES + dense * mixed_precision_value_bytes(w))
    keys = batch * _lookups(w) * RAW_RECORD_ITEM_BYTES
    return records + sets * (label_dense + keys) + label_dense


def multi_hot_reader_bytes(workload: Workload, world_size: int) -> float:
    """HBM of HugeCTR's multi-hot AsyncDataReader on each GPU (module docstring): its
    ``DCNV2_READER_BATCHES`` record buffers of the GPU's samples, one set of split tensors and the
    model's label and dense tensors."""
    batch = float(workload.training.global_batch_size)
    return _multi_hot_bytes(workload, world_size, batch, DCNV2_READER_BATCHES)


def one_hot_reader_bytes(workload: Workload, world_size: int) -> float:
    """HBM of HugeCTR's one-hot AsyncReader on each GPU (module docstring): its
    ``DLRM_V1_READER_BATCHES`` buffers of the global batch's records, the hybrid embedding's two sets
    of split tensors (the global batch's keys in each) and the model's label and dense tensors."""
    batch = float(workload.training.global_batch_size)
    return _one_hot_bytes(workload, world_size, batch, DLRM_V1_READER_BATCHES, ONE_HOT_TENSOR_SETS)


def eval_reader_buffers(reader_batches: int, eval_batch: int) -> int:
    """Record buffers of HugeCTR's evaluation reader (module docstring): the training reader's
    ``num_threads x num_batches_per_thread`` (``reader_batches``; the MLPerf configs'
    ``cache_eval_data`` does not raise it), no more than the evaluation set's batches."""
    return min(reader_batches, -(-CRITEO_EVAL_SAMPLES // eval_batch))


def eval_reader_bytes(workload: Workload, world_size: int, global_batch_input: bool) -> float:
    """HBM of HugeCTR's evaluation reader on each GPU (module docstring), 0 without a
    ``training.eval_batch_size``: the multi-hot reader's ``eval_reader_buffers`` of the GPU's share
    of the evaluation batch and one set of tensors, or (``global_batch_input``) the one-hot reader's
    buffers of the global evaluation batch with as many sets of split tensors (the hybrid
    embedding's ``use_eval_precompute_indices``)."""
    eval_batch = workload.training.eval_batch_size
    if eval_batch is None:
        return 0.0
    if global_batch_input:
        n = eval_reader_buffers(DLRM_V1_READER_BATCHES, eval_batch)
        return _one_hot_bytes(workload, world_size, float(eval_batch), n, n)
    n = eval_reader_buffers(DCNV2_READER_BATCHES, eval_batch)
    return _multi_hot_bytes(workload, world_size, float(eval_batch), n)


def dle_dense_input_bytes(workload: Workload, plan: Plan, rank: int, held_batches: int) -> float:
    """HBM of the dense features and labels DLE's loader copies to ``rank`` for each batch it holds
    (module docstring): the numerical features of the rows it runs the bottom MLP on (the global
    batch on a model-parallel bottom MLP's rank, none on the others; else its local batch) and the
    global batch's labels, as ``graph.build._Builder.per_rank_feature_input`` copies them."""
    w = workload
    batch = float(w.training.global_batch_size)
    if plan.bottom_rank is not None:
        rows = batch if rank == plan.bottom_rank else 0.0
    else:
        rows = batch / plan.world_size
    return held_batches * (rows * w.dense_features * SPLIT_NUMERICAL_BYTES + batch * SPLIT_LABEL_BYTES)


def reader_by_rank(
    plan: Plan,
    workload: Workload,
    framework: Runtime,
    path: str,
    held_batches: int,
    kept: dict[object, object] | None = None,
) -> dict[int, float]:
    """HBM of the loader's own buffers on each rank of ``plan`` (module docstring), by how
    ``framework`` delivers its input (``path``: ``storage.input_path``) and the batches it holds
    (``held_batches``: ``storage.held_input_batches``); ranks without any left out. ``kept``: a
    ``CostMemo.storage`` of ``workload`` (``storage.plan_usage``), which keeps HugeCTR's bytes a
    rank (a function of the workload, the world size and the path alone: a third of
    ``input_by_rank`` at 128 GPUs, each evaluation)."""
    world = plan.world_size
    if framework.hugectr_async_reader:
        one_hot = path == "global_batch"
        key = ("hugectr reader", world, one_hot)
        found = kept.get(key) if kept is not None else None
        if isinstance(found, float):
            each = found
        else:
            reader = one_hot_reader_bytes if one_hot else multi_hot_reader_bytes
            train = reader(workload, world)
            each = train + eval_reader_bytes(workload, world, one_hot)
            if kept is not None:
                let_go_when_full(kept, VALUES_KEPT)[key] = each
        return dict.fromkeys(range(world), each) if each else {}
    if framework.prefetches_next_batch and path == "features":
        out = {r: dle_dense_input_bytes(workload, plan, r, held_batches) for r in range(world)}
        return {r: v for r, v in out.items() if v}
    return {}
