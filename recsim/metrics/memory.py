"""Memory accounting of a training step: what each rank keeps in HBM (and in host memory).

Per rank: the embedding shards it holds in HBM (rows x dim x dtype) with their optimizer state
(row-wise Adagrad: one fp32 per row; Adagrad: a state as large as the table in fp32; Adam: two),
the dense model in fp32 with its gradient and optimizer state (mixed precision keeps fp32 master
weights), and the activations the backward pass needs: every dense layer's output and the pooled
embeddings for the local batch, in the training precision. Shards in ``uvm``/``ddr``/``ssd`` tiers
count against host memory or SSDs instead; ``uvm_caching`` keeps its cache in HBM.
"""

from __future__ import annotations

from collections import defaultdict

from recsim.planner.types import Plan
from recsim.workload.spec import DTYPE_BYTES, Workload

EMB_STATE_BYTES = {"sgd": 0.0, "rowwise_adagrad": 4.0, "adagrad": 4.0, "adam": 8.0}
DENSE_STATE_FACTOR = {"sgd": 0, "adagrad": 1, "adam": 2}


def rank_memory_bytes(workload: Workload, plan: Plan) -> tuple[dict[int, float], dict[int, float]]:
    """(HBM bytes, host bytes) per rank."""
    tables = {t.name: t for t in workload.tables}
    hbm: dict[int, float] = defaultdict(float)
    host: dict[int, float] = defaultdict(float)
    opt = workload.training.embedding_optimizer
    for shard in plan.shards:
        table = tables[shard.table]
        dtype = shard.dtype or workload.table_dtype(table)
        row_bytes = shard.dim * DTYPE_BYTES[dtype]
        state = EMB_STATE_BYTES[opt] if opt == "rowwise_adagrad" else EMB_STATE_BYTES[opt] * shard.dim
        size = shard.rows * (row_bytes + state)
        for rank in shard.ranks:
            if shard.tier in ("hbm",):
                hbm[rank] += size
            else:
                host[rank] += size
    b = workload.training.global_batch_size / plan.world_size
    s = DTYPE_BYTES[workload.training.precision]
    dense = workload.dense_parameters * 4.0 * (2 + DENSE_STATE_FACTOR[workload.training.optimizer])
    activations = b * s * sum(layer.out_features for layer in workload.dense_layers)
    pooled = b * 4.0 * sum(workload.table_dim(t) for t in workload.tables)
    for rank in range(plan.world_size):
        hbm[rank] += dense + activations + pooled
    return dict(hbm), dict(host)
