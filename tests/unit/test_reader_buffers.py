"""The data loader's own buffers in HBM (``recsim.planner.reader_buffers``): their bytes by hand on
the tiny workload for HugeCTR's two AsyncReaders and DLE's prefetcher, that the memory report, the
estimator and the planners' partitioner charge the same bytes, and the headline DCNv2 run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.cli import cli
from recsim.config.loader import Override
from recsim.errors import InfeasibleError
from recsim.hardware.library import HardwareLibrary
from recsim.hardware.system import System
from recsim.planner import reader_buffers
from recsim.planner.config import planner_config
from recsim.planner.estimator import Estimator
from recsim.planner.partitioners import Partitioner
from recsim.planner.reader_buffers import (
    DCNV2_READER_BATCHES,
    DLRM_V1_READER_BATCHES,
    eval_reader_bytes,
    multi_hot_reader_bytes,
    one_hot_reader_bytes,
)
from recsim.planner.stats import capacity_shortfall
from recsim.planner.storage import (
    Capacity,
    dense_hbm_bytes,
    ids_by_rank,
    input_by_rank,
    plan_usage,
    rank_reader_bytes,
)
from recsim.planner.types import Plan, Shard
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import Workload
from tests.conftest import FIXTURES

WL = WorkloadLibrary([FIXTURES / "workloads"])
HW = HardwareLibrary([FIXTURES / "minilib"])

# tiny-dlrm: global batch 8, a label, 4 dense features, tables a (pooling 2) and b (pooling 3):
# 1 + 4 + 5 = 10 items of 4 B a raw record.
RECORD_ITEMS = 10


def tiny(*overrides: str) -> Workload:
    return WL.workload("tiny-dlrm", [Override.parse(o) for o in overrides])


def gpus(count: int, *extra: str) -> System:
    sets = ["cluster.nodes=1", f"node.accelerators.count={count}", *extra]
    return HW.system("tiny", [Override.parse(o) for o in sets])


def test_each_reader_buffer_more_holds_one_more_batch_of_records(monkeypatch: pytest.MonkeyPatch) -> None:
    # The record buffers are the readers' num_threads x num_batches_per_thread: one more holds one
    # more batch of records on every GPU, the local batch's (4 samples x 10 items x 4 B on 2 ranks)
    # under the multi-hot reader, the global batch's (8 x 10 x 4 B) under the one-hot one; the split
    # tensors do not change.
    w = tiny()
    multi, one = multi_hot_reader_bytes(w, 2), one_hot_reader_bytes(w, 2)
    monkeypatch.setattr(reader_buffers, "DCNV2_READER_BATCHES", DCNV2_READER_BATCHES + 1)
    monkeypatch.setattr(reader_buffers, "DLRM_V1_READER_BATCHES", DLRM_V1_READER_BATCHES + 1)
    assert multi_hot_reader_bytes(w, 2) - multi == 4 * RECORD_ITEMS * 4 == 160
    assert one_hot_reader_bytes(w, 2) - one == 8 * RECORD_ITEMS * 4 == 320


def test_hugectr_s_multi_hot_reader_by_hand() -> None:
    # 2 ranks, local batch 4: 16 buffers of the local batch's records; one set of split tensors (a
    # 4 B label and 4 dense values a sample, the 5 keys of 4 B, and each of the 2 tables 4 + 1 row
    # offsets of 4 B and an 8-byte pointer); the model's label and dense tensors.
    records = 16 * 4 * RECORD_ITEMS * 4
    sparse = 4 * 5 * 4 + 2 * (5 * 4 + 8)
    fp32 = 4 * (4 + 4 * 4)
    assert multi_hot_reader_bytes(tiny(), 2) == records + (fp32 + sparse) + fp32 == 2856
    # mixed precision: the dense values as __half (tf32 keeps fp32 storage)
    fp16 = 4 * (4 + 4 * 2)
    assert (
        multi_hot_reader_bytes(tiny("training.precision=fp16"), 2) == records + (fp16 + sparse) + fp16 == 2792
    )
    assert multi_hot_reader_bytes(tiny("training.precision=tf32"), 2) == 2856
    # the local batch: twice the ranks, about half the bytes (the row offsets' + 1 and pointers stay)
    assert multi_hot_reader_bytes(tiny(), 4) == 16 * 2 * 40 + (2 * 20 + 2 * 5 * 4 + 2 * (3 * 4 + 8)) + 2 * 20


def test_hugectr_s_one_hot_reader_by_hand() -> None:
    # 128 buffers of the global batch's records; two sets of split tensors (the local batch's label
    # and its dense values padded to 8 by Alignment_t::Auto, the global batch's 5 keys of 4 B); the
    # model's label and dense tensors.
    records = 128 * 8 * RECORD_ITEMS * 4
    keys = 8 * 5 * 4
    fp32 = 4 * (4 + 8 * 4)
    assert one_hot_reader_bytes(tiny(), 2) == records + 2 * (fp32 + keys) + fp32 == 41712
    fp16 = 4 * (4 + 8 * 2)
    assert one_hot_reader_bytes(tiny("training.precision=fp16"), 2) == records + 2 * (fp16 + keys) + fp16


def test_dle_holds_two_batches_of_dense_features_and_labels() -> None:
    # DLE's prefetcher: two batches of fp16 numerical features for the rows a rank runs the bottom
    # MLP on and the global batch's fp32 labels, on every rank, beside two batches of its ids.
    w = tiny("training.runtime=cuda_graphs")
    shards = (Shard("a", "table_wise", 0, 100, 0, 4, (0,)), Shard("b", "table_wise", 0, 50, 0, 4, (1,)))
    local = 2 * (4 * 4 * 2 + 8 * 4)  # local batch 4 x 4 values x 2 B, 8 labels x 4 B
    ids = {0: 2 * 8 * 2 * 8, 1: 2 * 8 * 3 * 8}
    assert ids_by_rank(Plan(2, shards), w) == ids
    assert input_by_rank(Plan(2, shards), w) == {0: ids[0] + local, 1: ids[1] + local}
    assert rank_reader_bytes(w, 2) == local == 128
    # a model-parallel bottom MLP on rank 1: its dense features for the global batch, none on rank 0
    mp = Plan(2, shards, bottom_rank=1)
    labels = 2 * 8 * 4
    assert input_by_rank(mp, w) == {0: ids[0] + labels, 1: ids[1] + 2 * 8 * 4 * 2 + labels}


def test_torchrec_s_loader_buffers_are_left_out() -> None:
    w = tiny("training.runtime=eager")
    assert rank_reader_bytes(w, 2) == 0.0
    plan = Plan(2, (Shard("a", "table_wise", 0, 100, 0, 4, (0,)),))
    assert input_by_rank(plan, w) == ids_by_rank(plan, w)


@settings(max_examples=30, deadline=None)
@given(
    framework=st.sampled_from(["eager", "fused", "cuda_graphs"]),
    world=st.sampled_from([1, 2, 4]),
    precision=st.sampled_from(["fp32", "fp16"]),
    tables=st.lists(st.sampled_from(["a", "b"]), max_size=4),
)
def test_every_consumer_charges_the_one_figure(
    framework: str, world: int, precision: str, tables: list[str]
) -> None:
    # The memory report's inputs of a plan without routed rows or a model-parallel bottom MLP are
    # its ids and, on every rank, ``rank_reader_bytes``: the figure the estimator keeps and the
    # partitioner starts every rank with beside the dense side.
    w = tiny(f"training.runtime={framework}", f"training.precision={precision}")
    system = gpus(world)
    rows = {"a": 100, "b": 50}
    shards = tuple(Shard(t, "table_wise", 0, rows[t], 0, 4, (k % world,)) for k, t in enumerate(tables))
    plan = Plan(world, shards)
    reader = rank_reader_bytes(w, world)
    ids = ids_by_rank(plan, w)
    usage = plan_usage(plan, w, system)
    for rank in range(world):
        assert usage.input_by_rank.get(rank, 0.0) == ids.get(rank, 0.0) + reader
    est = Estimator(system, w, planner_config([]))
    assert est.reader_hbm_bytes == reader
    part = Partitioner(est, "lpt")
    assert part.hbm == [dense_hbm_bytes(w, world) + reader] * world
    assert (reader > 0.0) == (framework != "eager")


@pytest.mark.parametrize("batch", [55296])
def test_the_headline_dcnv2_run_fits_with_its_reader_s_buffers(batch: int) -> None:
    # 1 x DGX H100, batch 55,296, fp16: each GPU holds 16 buffers of its 6,912 samples' records
    # (1 + 13 + 214 items of 4 B: 100,859,904 B), one set of split tensors (6,912 x (4 + 13 x 2) B
    # of label and dense values, 6,912 x 214 keys of 4 B and 26 x (6,913 x 4 + 8) B of row offsets
    # and pointers) and the model's label and dense tensors: 107,910,456 B, besides its ids. And its
    # evaluation reader, the same at the evaluation batch of 262,144 (the workload's
    # ``training.eval_batch_size``): 32,768 samples a GPU, 511,574,328 B (2026-12-07: counted; the
    # inputs were 113,661,240 B before, 625,235,568 B since).
    b = batch // 8
    train = 16 * b * 228 * 4 + (b * 30 + b * 214 * 4 + 26 * ((b + 1) * 4 + 8)) + b * 30
    assert train == 107_910_456
    e = 262144 // 8
    evaluation = 16 * e * 228 * 4 + (e * 30 + e * 214 * 4 + 26 * ((e + 1) * 4 + 8)) + e * 30
    assert evaluation == 511_574_328
    reader = train + evaluation
    args = ["run", "--system", "dgx-h100", "--workload", "dlrm-dcnv2", "--batch-size", str(batch)]
    result = CliRunner().invoke(cli, [*args, "--precision", "fp16", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["status"] == "ok" and data["memory_fits"] is True
    inputs = data["memory_peak_bytes.hbm_inputs"]
    # the fullest rank's inputs: the reader's buffers and the ids of its tables (a few MB)
    assert reader < inputs < reader + 20e6


def test_a_rank_the_dense_side_and_the_reader_overfill_is_named_as_such() -> None:
    # HugeCTR's multi-hot reader on 2 ranks: 2,856 B a rank beside the dense side. HBM between the
    # dense side and both: the partitioner says so at once, rather than every table "fitting
    # nowhere" on ranks already full (2026-12-07: it started them over the capacity, silently).
    w = tiny()
    est = Estimator(gpus(2), w, planner_config([]))
    dense = dense_hbm_bytes(w, 2)
    assert est.reader_hbm_bytes == 2856.0
    Partitioner(est, "lpt", cap=Capacity(dense + 2856.0, 0.0, 0.0, 2))  # just fits
    with pytest.raises(InfeasibleError) as err:
        Partitioner(est, "lpt", cap=Capacity(dense + 2855.0, 0.0, 0.0, 2))
    assert "the data loader's own buffers (2.789 KiB)" in str(err.value)
    assert "smaller global batch" in str(err.value)


def test_a_plan_of_routed_rows_is_charged_hugectr_s_one_hot_reader() -> None:
    # The hybrid embedding's plans route rows (distributed shards), which HugeCTR reads with its
    # one-hot reader of the global batch: 41,712 B a rank on 2 ranks against the multi-hot reader's
    # 2,856 B, as the memory report charges such a plan.
    w = tiny()
    assert rank_reader_bytes(w, 2) == 2856.0
    assert rank_reader_bytes(w, 2, routed_rows=True) == one_hot_reader_bytes(w, 2) == 41712.0
    routed = Plan(2, (Shard("a", "distributed", 0, 100, 0, 4, (0, 1)),))
    assert input_by_rank(routed, w) == {0: 41712.0, 1: 41712.0}
    # No runtime but HugeCTR's gives such a plan another reader (DLE's is the same either way).
    dle = tiny("training.runtime=cuda_graphs")
    assert rank_reader_bytes(dle, 2, routed_rows=True) == rank_reader_bytes(dle, 2) == 128.0


def test_capacity_shortfall_charges_the_hybrid_embedding_its_reader() -> None:
    # 45,000 B of HBM a rank, no reserve: less the dense side (2,124 B) and the multi-hot reader
    # (2,856 B) 2 x 40,020 B hold the tables' 3,000 B at fp32; less the one-hot reader (41,712 B)
    # 2 x 1,164 B = 2,328 B do not: 672 B short (what ``recsim plan`` asks of the hybrid embedding).
    w = tiny()
    system = gpus(2, "node.accelerators.device.hbm.capacity=45000 B")
    assert dense_hbm_bytes(w, 2) == 2124.0
    cfg = planner_config(["planner.tiers=[hbm]", "planner.embedding_dtypes=[fp32]", "planner.hbm_reserve=0"])
    assert capacity_shortfall(system, w, cfg) is None
    msg = capacity_shortfall(system, w, cfg, routed_rows=True)
    assert msg is not None and msg.endswith(
        "hold 2.273 KiB HBM on 1 node(s) less the planner's reserves: 672 B short"
    )


def test_hugectr_s_evaluation_readers_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    # Evaluation batch 16 on 2 ranks. Multi-hot: 16 buffers of the GPU's 8 samples' records, one set
    # of split tensors (8 x (4 + 4 x 4) B of label and dense values, 8 x 5 keys of 4 B, 2 x (9 x 4 +
    # 8) B of row offsets and pointers) and its label and dense tensors.
    w = tiny("training.eval_batch_size=16")
    multi = 16 * 8 * RECORD_ITEMS * 4 + (160 + (160 + 88)) + 160
    assert eval_reader_bytes(w, 2, global_batch_input=False) == multi == 5688
    # One-hot: 128 buffers of the global 16 samples' records and, for the hybrid embedding's
    # precomputed evaluation indices, as many sets of split tensors (8 x (4 + 8 x 4) B of label and
    # padded dense values, 16 x 5 keys of 4 B), and its label and dense tensors.
    one = 128 * 16 * RECORD_ITEMS * 4 + 128 * (288 + 320) + 288
    assert eval_reader_bytes(w, 2, global_batch_input=True) == one == 160032
    # No more buffers (nor, one-hot, tensor sets) than the evaluation set has batches: 40 samples,
    # 3 batches of 16.
    monkeypatch.setattr(reader_buffers, "CRITEO_EVAL_SAMPLES", 40)
    assert eval_reader_bytes(w, 2, global_batch_input=False) == 3 * 320 + 408 + 160 == 1528
    assert eval_reader_bytes(w, 2, global_batch_input=True) == 3 * 640 + 3 * 608 + 288 == 4032
    # Without an evaluation batch, none.
    assert eval_reader_bytes(tiny(), 2, global_batch_input=True) == 0.0


def test_every_consumer_charges_the_evaluation_reader() -> None:
    # HugeCTR's readers, training (2,856 B) and evaluation (5,688 B), on every rank of the memory
    # report and in the estimator; the one-hot pair for a plan of routed rows. TorchRec and DLE
    # allocate no evaluation reader up front: nothing for them.
    w = tiny("training.eval_batch_size=16")
    assert rank_reader_bytes(w, 2) == 2856.0 + 5688.0
    assert rank_reader_bytes(w, 2, routed_rows=True) == 41712.0 + 160032.0
    plan = Plan(2, (Shard("a", "table_wise", 0, 100, 0, 4, (0,)),))
    ids = ids_by_rank(plan, w)
    assert input_by_rank(plan, w) == {r: ids.get(r, 0.0) + 8544.0 for r in range(2)}
    assert Estimator(gpus(2), w, planner_config([])).reader_hbm_bytes == 8544.0
    for runtime in ("eager", "cuda_graphs"):
        other = f"training.runtime={runtime}"
        assert rank_reader_bytes(tiny(other, "training.eval_batch_size=16"), 2) == rank_reader_bytes(
            tiny(other), 2
        )


def test_a_plan_that_fits_beside_the_training_reader_does_not_beside_the_evaluation_one_too() -> None:
    # HBM of the dense side and the training reader a rank: the tables fit without an evaluation
    # batch; with one, the partitioner says at once that the loader's buffers (8,544 B) overfill.
    cap = None
    for eval_batch, fits in ((None, True), (16, False)):
        w = tiny() if eval_batch is None else tiny(f"training.eval_batch_size={eval_batch}")
        est = Estimator(gpus(2), w, planner_config([]))
        cap = cap or Capacity(dense_hbm_bytes(w, 2) + 2856.0 + 2000.0, 0.0, 0.0, 2)
        if fits:
            Partitioner(est, "lpt", cap=cap)
        else:
            with pytest.raises(InfeasibleError) as err:
                Partitioner(est, "lpt", cap=cap)
            assert "the data loader's own buffers (8.344 KiB)" in str(err.value)


@pytest.mark.parametrize(
    ("value", "message"), [("-4", "must be > 0, got -4"), ("2.5", "expected an integer")]
)
def test_a_bad_evaluation_batch_names_the_file_and_the_key(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "bad-eval.yaml"
    base = FIXTURES / "workloads" / "tiny-dlrm.yaml"
    path.write_text(
        f"kind: dlrm\nname: bad-eval\nextends: {base}\n"
        f"training: {{global_batch_size: 8, eval_batch_size: {value}}}\n"
    )
    result = CliRunner().invoke(cli, ["workload", "show", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:4: training.eval_batch_size: {message}" in result.output
    assert "Traceback" not in result.output


def test_mlperf_dlrm_v1_s_evaluation_reader_holds_the_whole_evaluation_set() -> None:
    # dlrm-mlperf's evaluation batch 1,769,472 (NVIDIA's batchsize_eval) on 8 GPUs: the 89,137,319
    # evaluation samples in 51 batches, each a buffer of 160 B records (1 + 13 + 26 items of 4 B),
    # and 51 sets of split tensors (221,184 x (4 + 16 x 2) B of label and padded fp16 dense values,
    # 1,769,472 x 26 keys of 4 B), and its label and dense tensors: 24.2 GB a GPU.
    from recsim.api import load_workload

    w = load_workload("dlrm-mlperf")
    assert w.training.eval_batch_size == 1_769_472
    b, batch = 1_769_472 // 8, 1_769_472
    expected = 51 * batch * 160 + 51 * (b * 36 + batch * 26 * 4) + b * 36
    assert eval_reader_bytes(w, 8, global_batch_input=True) == expected == 24_238_227_456
