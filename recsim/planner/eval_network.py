"""HBM of a framework's evaluation network: the weights and activations of a second, forward-only copy of the
model that the framework builds at model construction for its evaluation batch and keeps for the
whole run beside the training network's (``Runtime.separate_eval_network``; none without a
``training.eval_batch_size``).

**HugeCTR** (``fused``) builds every dense layer twice. Its ``Model::add_dense_layers``
(NVIDIA-Merlin/HugeCTR HugeCTR/src/pybind/add_dense_layer.cpp, the core23 network, the default
unless ``HUGECTR_CORE23_NETWORK=0``) runs ``add_dense_layer_impl`` once on the training tensors
(``train_tensor_entities_list_``) and once on the evaluation tensors
(``evaluate_tensor_entities_list_``), the evaluation layers after switching the network's buffer
channels to their own (``EVAL_BLOBS``, ``EVAL_WEIGHT``, ``EVAL_WEIGHT_HALF``, ``EVAL_WGRAD``,
``EVAL_WGRAD_HALF``): their outputs are buffers of their own, not the training layers' reused;
``Model::compile`` (HugeCTR/src/pybind/model.cpp) then allocates every buffer on the device
(``core23::AllocateBuffers``) once for the run. The evaluation tensors are sized by the evaluation
batch: ``add_input`` (HugeCTR/src/pybind/add_input.cpp) builds the evaluation reader's label and
dense tensors with ``batchsize_eval`` (``recsim.planner.reader_buffers``), and the embeddings write
an evaluation output of ``batchsize_eval / global GPU count`` samples beside the training one: the
embedding collection's ``allocate_ebc_output_helper_for_feature_major`` / ``_batch_major`` with
``eval_batch_size_per_gpu = solver_.batchsize_eval / num_total_gpus`` into
``evaluate_tensor_entities_list_`` in ``emb_type`` (``__half`` under mixed precision;
``Model::add(const EmbeddingCollectionConfig&)``, model.cpp: MLPerf DLRM-DCNv2), and the hybrid
embedding's ``evaluate_output_tensors_``, ``{get_batch_size_per_gpu(false), slot_num,
embedding_vec_size}`` of ``emtype`` reserved beside ``train_output_tensors_`` in the same
``GeneralBuffer2`` (HugeCTR/src/embeddings/hybrid_sparse_embedding.cu: MLPerf DLRM v1). The older
network that MLPerf DLRM v1's HugeCTR ran (``Model::add_dense_layer`` of the v3 releases) did the
same: the evaluation layers' outputs reserved in the GPU's one ``blobs_buff_list_[i]``
(``GeneralBuffer2``, whose reservations do not overlap) beside the training layers', their weights
in ``evaluate_weight_buff_list_``. The evaluation forward (``Core23TempNetwork::eval``:
``prop_layers(evaluate_layers_ptr, true, false)``, core23_network.cpp) keeps no gradients.

So on each GPU, at ``eval_batch_size / world_size`` samples: every dense layer's output (the
layers as the framework trains them, ``graph.build.trained_dense_layers``, as the training
activations count them) and each table's embedding output (``Workload.table_dim`` values a
sample), all in HugeCTR's compute type (``reader_buffers.mixed_precision_value_bytes``: 2 B under
mixed precision). For the 1 x DGX H100 DCNv2 config (``BATCHSIZE_EVAL=262144``: 32,768 samples a
GPU) that is 32,768 x 2 B x (14,081 dense outputs + 26 x 128) = 1,140,916,224 B a GPU; for MLPerf
DLRM v1 on 8 GPUs (``batchsize_eval = 1769472``: 221,184 samples a GPU) 221,184 x 2 B x (4,064 +
26 x 128) = 3,269,984,256 B.

The evaluation layers have weights of their own too: ``Network::copy_weights_from_train_layers_
to_evaluate_layers`` (HugeCTR/src/network.cpp; ``Core23TempNetwork``'s in core23_network.cpp alike)
copies ``train_weight_tensor_`` into ``evaluate_weight_tensor_`` (fp32, the same size) with a
``cudaMemcpyAsync`` before each evaluation, and under mixed precision converts it into
``evaluate_weight_tensor_half_`` (``conv_weight_``): 4 B a dense parameter, 6 B under mixed
precision (``eval_weight_bytes``; DCNv2's 16.0 M parameters of ``trained_dense_layers``, 96 MB a
GPU).

Left out: whatever weight-gradient tensors the evaluation layers reserve in the ``EVAL_WGRAD``
channels (not read layer by layer here; an evaluation forward never writes them), the layers'
internal tensors
beyond their outputs (as the training activations leave them out: a fused layer's ReLU mask, the
interaction's and the cross layers' intermediates), the embedding collection's evaluation-side
embedding (``EmbeddingCollection`` built with ``eval_ebc_param``, its model-parallel buffers of the
global evaluation batch) and its data distributor's evaluation outputs
(``evaluate_ddl_output_``), and the hybrid embedding's communication buffers, which a multi-node
``IB_NVLink`` plan sizes by ``max(training, evaluation batch)``. DLE (``cuda_graphs``) and TorchRec
(``eager``) build no second network up front that has been read here: nothing is counted for them
(whatever their evaluation forward leaves reserved in PyTorch's caching allocator is not sized).
"""

from __future__ import annotations

from recsim.graph.build import trained_dense_layers
from recsim.planner.reader_buffers import mixed_precision_value_bytes
from recsim.workload.spec import Workload


def eval_network_parts(workload: Workload, world_size: int) -> tuple[float, float]:
    """HBM of the framework's evaluation network on each of ``world_size`` GPUs (module docstring), in
    two parts: the evaluation layers' own copy of the dense weights (``eval_weight_bytes`` a
    parameter), and, at the GPU's share of the evaluation batch, every dense layer's output and each
    table's embedding output in HugeCTR's compute type. Both 0 without a
    ``training.eval_batch_size`` or where the framework builds no such network
    (``Runtime.separate_eval_network``)."""
    from recsim.graph.runtime import runtime  # the runtime module reads the plan types

    w = workload
    eval_batch = w.training.eval_batch_size
    if eval_batch is None or not runtime(w.training.runtime).separate_eval_network:
        return 0.0, 0.0
    b = eval_batch / world_size
    layers = trained_dense_layers(w)
    outputs = sum(layer.out_features for layer in layers)
    embeddings = sum(w.table_dim(t) for t in w.tables)
    activations = b * mixed_precision_value_bytes(w) * (outputs + embeddings)
    return eval_weight_bytes(w) * sum(layer.params for layer in layers), activations


def eval_weight_bytes(workload: Workload) -> float:
    """Bytes of the evaluation network's copy of one dense parameter (module docstring): the fp32
    ``evaluate_weight_tensor_``, and its ``evaluate_weight_tensor_half_`` under mixed precision."""
    value = mixed_precision_value_bytes(workload)
    return 4.0 + (value if value < 4.0 else 0.0)
