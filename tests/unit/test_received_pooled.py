"""The pooled embeddings a rank receives for its samples, held in HBM for the backward in the dtype
its framework's dense side reads them (``Runtime.received_pooled_dtype``, ``storage.dense_hbm_parts``):
HugeCTR's and DLE's half precision under mixed precision, fp32 under TorchRec and in fp32 training."""

from __future__ import annotations

import pytest

from recsim.config.loader import Override
from recsim.graph.runtime import runtime
from recsim.planner.storage import dense_hbm_parts
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import Workload
from tests.conftest import FIXTURES

WL = WorkloadLibrary([FIXTURES / "workloads"])

# tiny-dlrm's dense layers as trained output 22 values a sample (bottom 8 and 4, the dot
# interaction's 3, top 6 and 1), its tables a and b 8 pooled values (dim 4 each).
OUTPUTS = 8 + 4 + 3 + 6 + 1
EMBEDDINGS = 4 + 4


def tiny(*overrides: str) -> Workload:
    return WL.workload("tiny-dlrm", [Override.parse(o) for o in overrides])


@pytest.mark.parametrize(
    ("name", "precision", "received"),
    [
        ("fused", "fp16", "fp16"),  # HugeCTR's emtype under mixed precision
        ("fused", "bf16", "bf16"),
        ("fused", "fp32", "fp32"),
        ("fused", "tf32", "fp32"),
        ("cuda_graphs", "fp16", "fp16"),  # DLE's fp16 payload, concatenated as it is
        ("cuda_graphs", "fp32", "fp32"),
        ("eager", "fp16", "fp32"),  # TorchRec's codecs decode into fp32
        ("eager", "bf16", "fp32"),
        ("eager", "fp32", "fp32"),
    ],
)
def test_the_received_pooled_embeddings_by_hand(name: str, precision: str, received: str) -> None:
    w = tiny(f"training.runtime={name}", f"training.precision={precision}", "training.eval_batch_size=null")
    assert runtime(name).received_pooled_dtype(w) == received
    b = w.training.global_batch_size / 2
    value = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2}
    _, activations = dense_hbm_parts(w, 2)
    assert activations == b * value[precision] * OUTPUTS + b * value[received] * EMBEDDINGS
