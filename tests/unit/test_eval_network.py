"""HugeCTR's evaluation network in HBM (``recsim.planner.eval_network``): its activations by hand on
the tiny workload, nothing without an evaluation batch or under a framework that builds none, the
same bytes in the memory report, the estimator's dense side and the partitioner, and the figures of
the MLPerf workloads' evaluation batches."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.api import load_workload, prepare
from recsim.config.loader import Override
from recsim.graph.runtime import Fused
from recsim.hardware.library import HardwareLibrary
from recsim.hardware.system import System
from recsim.planner.config import planner_config
from recsim.planner.estimator import Estimator
from recsim.planner.eval_network import eval_network_parts
from recsim.planner.partitioners import Partitioner
from recsim.planner.storage import dense_hbm_bytes, dense_hbm_parts, plan_usage
from recsim.planner.types import Plan, Shard
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import Workload
from tests.conftest import FIXTURES

WL = WorkloadLibrary([FIXTURES / "workloads"])
HW = HardwareLibrary([FIXTURES / "minilib"])

# tiny-dlrm's dense layers as trained: bottom 8 and 4, the dot interaction's 3, top 6 and 1 outputs
# (22 values a sample); tables a and b of dim 4 (8 values a sample); 137 dense parameters, whose
# evaluation copy is fp32 (4 B a parameter), with an fp16 one beside it under mixed precision.
OUTPUTS = 8 + 4 + 3 + 6 + 1
EMBEDDINGS = 4 + 4
PARAMS = 137


def tiny(*overrides: str) -> Workload:
    return WL.workload("tiny-dlrm", [Override.parse(o) for o in overrides])


def gpus(count: int) -> System:
    sets = ["cluster.nodes=1", f"node.accelerators.count={count}"]
    return HW.system("tiny", [Override.parse(o) for o in sets])


def test_the_evaluation_network_by_hand() -> None:
    # Evaluation batch 16 on 2 GPUs: 8 samples a GPU, each 22 dense outputs and 8 embedding values
    # of fp32 (the tiny workload trains in fp32): 8 x 4 x 30 = 960 B, and the evaluation layers'
    # fp32 weights, 137 x 4 = 548 B; fp16 (mixed precision) halves the outputs and adds an fp16
    # copy of the weights (137 x 6 = 822 B); bf16 is half too, tf32 fp32 storage.
    w = tiny("training.eval_batch_size=16")
    assert eval_network_parts(w, 2) == (PARAMS * 4, 8 * 4 * (OUTPUTS + EMBEDDINGS)) == (548, 960)
    assert sum(eval_network_parts(w, 2)) == 1508
    for precision, value, weight in (("fp16", 2, 6), ("bf16", 2, 6), ("tf32", 4, 4)):
        w = tiny("training.eval_batch_size=16", f"training.precision={precision}")
        assert eval_network_parts(w, 2) == (PARAMS * weight, 8 * value * 30)
    # On 4 GPUs 4 samples a GPU; every GPU holds the whole weights.
    assert eval_network_parts(tiny("training.eval_batch_size=16"), 4) == (548, 480)


def test_the_activations_carry_it_beside_the_training_network_s() -> None:
    # The training activations of batch 8 on 2 ranks: 4 samples x 4 B x 22 outputs and the pooled
    # 4 x 4 B x 8: 480 B; with the evaluation network 960 B more, and its copy of the weights 548 B
    # more beside the training network's 1,644 B (weights, gradients and Adagrad's state).
    assert dense_hbm_parts(tiny(), 2) == (1644.0, 480.0)
    assert dense_hbm_parts(tiny("training.eval_batch_size=16"), 2) == (1644.0 + 548.0, 480.0 + 960.0)


def test_nothing_without_an_evaluation_batch_or_a_second_network(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tiny().training.eval_batch_size is None
    assert sum(eval_network_parts(tiny(), 2)) == 0.0
    # DLE and TorchRec build no second network: nothing, evaluation batch or not.
    for runtime in ("eager", "cuda_graphs"):
        w = tiny(f"training.runtime={runtime}", "training.eval_batch_size=16")
        assert sum(eval_network_parts(w, 2)) == 0.0
        assert dense_hbm_parts(w, 2) == dense_hbm_parts(tiny(f"training.runtime={runtime}"), 2)
    # The runtime's flag decides it: HugeCTR without it counts none either.
    monkeypatch.setattr(Fused, "separate_eval_network", False)
    assert sum(eval_network_parts(tiny("training.eval_batch_size=16"), 2)) == 0.0


def test_every_consumer_charges_the_evaluation_network() -> None:
    # The memory report's activations on every rank, the dense side the partitioner starts every rank
    # with, and the estimator's (through dense_hbm_bytes): 960 B more activations each, 548 B more
    # dense weights.
    w, base = tiny("training.eval_batch_size=16"), tiny()
    plan = Plan(
        2, (Shard("a", "table_wise", 0, 100, 0, 4, (0,)), Shard("b", "table_wise", 0, 50, 0, 4, (1,)))
    )
    system = gpus(2)
    with_eval, without = plan_usage(plan, w, system), plan_usage(plan, base, system)
    for rank in range(2):
        assert with_eval.activations_by_rank[rank] - without.activations_by_rank[rank] == 960.0
        assert with_eval.dense_by_rank[rank] - without.dense_by_rank[rank] == 548.0
    assert dense_hbm_bytes(w, 2) - dense_hbm_bytes(base, 2) == 1508.0
    est = Estimator(system, w, planner_config([]))
    assert Partitioner(est, "lpt").hbm == [dense_hbm_bytes(w, 2) + est.reader_hbm_bytes] * 2


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=1 << 20), st.sampled_from([1, 2, 4, 8, 16]))
def test_it_grows_with_the_evaluation_batch_and_shrinks_with_the_gpus(eval_batch: int, world: int) -> None:
    w = tiny(f"training.eval_batch_size={eval_batch}")
    weights, one = eval_network_parts(w, world)
    assert weights == PARAMS * 4  # whatever the batch and the GPUs
    assert one == pytest.approx(eval_batch / world * 4 * 30, rel=1e-12)
    twice = eval_network_parts(tiny(f"training.eval_batch_size={2 * eval_batch}"), world)
    assert twice == (weights, pytest.approx(2 * one, rel=1e-12))
    assert eval_network_parts(w, 1) == (weights, pytest.approx(world * one, rel=1e-12))
    assert sum(eval_network_parts(w, world)) == weights + one


def test_the_mlperf_evaluation_networks() -> None:
    # DLRM-DCNv2, NVIDIA's 1 x DGX H100 config (BATCHSIZE_EVAL=262144) in fp16: 32,768 samples a GPU,
    # 14,081 dense outputs (bottom 512 + 256 + 128, three cross layers of 3,456, top 1,024 + 1,024 +
    # 512 + 256 + 1) and 26 tables of 128: 1,140,916,224 B a GPU; and 16,044,545 dense parameters
    # in fp32 and fp16: 96,267,270 B.
    _, dcnv2 = prepare("dgx-h100", "dlrm-dcnv2", batch_size=55296, precision="fp16")
    assert dcnv2.training.eval_batch_size == 262_144
    assert eval_network_parts(dcnv2, 8) == (16_044_545 * 6, 32_768 * 2 * (14_081 + 26 * 128))
    assert sum(eval_network_parts(dcnv2, 8)) == 96_267_270 + 1_140_916_224
    # MLPerf DLRM v1 (batchsize_eval 1,769,472) on 8 GPUs in fp16: 221,184 samples a GPU, 4,064 dense
    # outputs (the dot interaction's 351 among them) and 26 tables of 128: 3,269,984,256 B a GPU;
    # 2,369,921 dense parameters: 14,219,526 B.
    v1 = load_workload("dlrm-mlperf")
    assert v1.training.precision == "fp16"
    assert v1.training.eval_batch_size == 1_769_472
    assert eval_network_parts(v1, 8) == (2_369_921 * 6, 221_184 * 2 * (4_064 + 26 * 128))
    assert sum(eval_network_parts(v1, 8)) == 14_219_526 + 3_269_984_256
