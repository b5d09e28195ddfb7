"""Tier ``hbm``: the table shard in the accelerator's HBM, looked up by FBGEMM's TBE kernels.

Forward: one gather-reduce kernel (``gpu.forward_kernel``); the rows' L2 hit rate is the LRU hit rate
of an L2 of ``l2_bytes / row_bytes`` rows under the op's access model. Backward: the sort/dedup stage
and the update stage (``gpu.sort_stage``, ``gpu.update_stage``); per unique row the row and its
optimizer state are read and written in HBM (SGD: the row; row-wise Adagrad: + one fp32; Adagrad:
+ an fp32 row; Adam: + two). ``sparse_sgd`` is PyTorch's unfused path instead (a COO gradient row
per lookup, then ``mul`` and ``index_add_``: ``gpu.sparse_sgd_stage``). Every kernel of a pass adds
the GPU-side launch gap (``recsim.cost.launch``) when ``include_launch``. A ``presorted`` backward
skips its sort stage, which the ``sort`` pass charges instead (HugeCTR precomputes the indices in
its input pipeline). ``update`` is a replicated table's dense optimizer step over all its rows
after its gradient all-reduce (``gpu.dense_update_stage``); its backward then has optimizer
``none`` and only writes each unique row's gradient. An ``atomic`` backward (HugeCTR's hybrid
embedding) is one kernel of atomic adds, no sort (``gpu.atomic_update_stage``).
"""

from __future__ import annotations

from recsim.cost.embedding.base import HBM, EmbeddingCost, Lookup, TierModel, register_tier
from recsim.cost.embedding.gpu import (
    KernelCost,
    atomic_update_stage,
    dense_update_stage,
    lookup_forward,
    lookup_sort,
    lookup_update,
    sparse_sgd_stage,
)

__all__ = ["HbmTier"]


@register_tier
class HbmTier(TierModel):
    name = "hbm"
    gpu_tbe = True

    def forward(self, lookup: Lookup) -> EmbeddingCost:
        acc = lookup.accelerator()
        l2_hit = lookup.hit_rate(acc.l2_bytes / lookup.row_bytes)
        kernel = lookup_forward(lookup, l2_hit=l2_hit)
        launch = lookup.launch_s(kernel.kernels)
        details = lookup.base_details() | lookup.forward_accounting()
        details |= {
            "l2_hit_rate": l2_hit,
            "l2_bytes": kernel.l2_bytes,
            "kernel_s": kernel.time_s,
            "launch_s": launch,
        }
        return EmbeddingCost(kernel.time_s + launch, {HBM: kernel.hbm_bytes}, details)

    def backward(self, lookup: Lookup) -> EmbeddingCost:
        if lookup.op.optimizer == "sparse_sgd":
            return _one_stage(lookup, sparse_sgd_stage(lookup), lookup.backward_accounting())
        if lookup.op.atomic:
            stage = atomic_update_stage(lookup)
            return _one_stage(lookup, stage, lookup.backward_accounting() | {"l2_bytes": stage.l2_bytes})
        unique = lookup.unique_rows
        rows_hbm = unique * (lookup.update_read_bytes + lookup.update_write_bytes)
        update = lookup_update(lookup, row_update_hbm_bytes=rows_hbm, state_in_hbm=True)
        # A presorted backward's sort ran ahead, in the ``sort`` pass.
        sort = None if lookup.op.presorted else lookup_sort(lookup)
        sort_s, sort_hbm, sort_kernels = (
            (sort.time_s, sort.hbm_bytes, sort.kernels) if sort else (0.0, 0.0, 0)
        )
        launch = lookup.launch_s(sort_kernels + update.kernels)
        details = lookup.base_details() | lookup.backward_accounting()
        details |= {
            "sort_s": sort_s,
            "update_s": update.time_s,
            "kernels": float(sort_kernels + update.kernels),
            "l2_bytes": update.l2_bytes,
            "launch_s": launch,
        }
        return EmbeddingCost(sort_s + update.time_s + launch, {HBM: sort_hbm + update.hbm_bytes}, details)

    def update(self, lookup: Lookup) -> EmbeddingCost:
        stepped = lookup.op.rows * (lookup.row_bytes + lookup.state_bytes)  # every row and its state
        accounting = {"table_bytes_read": stepped, "bytes_returned": stepped}
        return _one_stage(lookup, dense_update_stage(lookup), accounting)

    def sort(self, lookup: Lookup) -> EmbeddingCost:
        sort = lookup_sort(lookup)
        launch = lookup.launch_s(sort.kernels)
        details = lookup.base_details() | {
            "sort_s": sort.time_s,
            "kernels": float(sort.kernels),
            "launch_s": launch,
        }
        return EmbeddingCost(sort.time_s + launch, {HBM: sort.hbm_bytes}, details)


def _one_stage(lookup: Lookup, stage: KernelCost, accounting: dict[str, float]) -> EmbeddingCost:
    """The cost of a pass that is one stage (its kernels' launch gaps added), with its details."""
    launch = lookup.launch_s(stage.kernels)
    details = lookup.base_details() | accounting
    details |= {"update_s": stage.time_s, "kernels": float(stage.kernels), "launch_s": launch}
    return EmbeddingCost(stage.time_s + launch, {HBM: stage.hbm_bytes}, details)
