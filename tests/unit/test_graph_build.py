"""The step builder on a model small enough to check every node by hand."""

from collections import defaultdict
from itertools import pairwise

import pytest

from recsim.errors import InfeasibleError
from recsim.graph.build import (
    OPTIMIZER_STATE,
    BuildOptions,
    build_inference_batch,
    build_training_step,
    total_flops,
    trained_dense_layers,
)
from recsim.graph.ir import Collective, CollectiveOp, Compute, Embedding, Stream
from recsim.graph.runtime import apply_runtime, runtime
from recsim.planner import Plan, Shard, table_wise_round_robin
from recsim.planner.storage import dense_weight_bytes
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import DTYPE_BYTES
from tests.conftest import FIXTURES

LIB = WorkloadLibrary([FIXTURES / "workloads"])


@pytest.fixture
def tiny():
    return LIB.workload("tiny-dlrm")


def named(graph, rank, name):
    return next(n for n in graph.rank_nodes(rank) if n.name == name)


UNFUSED = BuildOptions(fuse_tables=False)

#: tiny's dense parameters as HugeCTR (fused, tiny's runtime) and DLE train them: 131, and the 6
#: weights top0 (6 outputs) has for the zero column their dot interactions write after its 7 values
#: (``Runtime.dot_output_padding``, ``graph.build.trained_dense_layers``). TorchRec's (eager): 131.
PADDED_PARAMS = 131 + 6


def test_training_step_by_hand(tiny):
    g = build_training_step(tiny, table_wise_round_robin(tiny, 2), UNFUSED)
    g.validate()
    # table a on rank 0, b on rank 1; global batch 8, local batch 4
    fwd_a = named(g, 0, "emb_forward:a").op
    assert isinstance(fwd_a, Embedding)
    assert (fwd_a.batch, fwd_a.lookups, fwd_a.rows, fwd_a.dim) == (8, 16, 100, 4)
    bwd_b = named(g, 1, "emb_backward:b").op
    assert isinstance(bwd_b, Embedding)
    assert bwd_b.lookups == 24
    assert bwd_b.optimizer == "rowwise_adagrad"
    # pooled all-to-all: each rank owns one dim-4 table; 4 samples x 4 floats x 4 B to each peer
    a2a = named(g, 0, "a2a_fwd").op
    assert isinstance(a2a, Collective)
    assert a2a.send_bytes == (64.0, 64.0)
    assert a2a.recv_bytes == (64.0, 64.0)
    # input distribution: indices (8 B) and lengths (4 B) of the 4 local samples, per owner
    inp = named(g, 0, "input_dist").op
    assert isinstance(inp, Collective)
    assert inp.send_bytes == (2 * 4 * 8 + 4 * 4, 3 * 4 * 8 + 4 * 4)
    # first bottom layer: 4 x 4 @ 4 x 8 in fp32
    b0 = named(g, 0, "bottom0_fwd").op
    assert isinstance(b0, Compute)
    assert b0.flops == 2 * 4 * 4 * 8
    assert b0.bytes_read == (4 * 4 + 4 * 8) * 4
    assert b0.bytes_written == 4 * 8 * 4
    # Its backward computes the weights' gradient only: the dense features need none (a workload
    # auditor's find: both GEMMs were charged). dW = X^T dY reads X (4 x 4) and dY (4 x 8); tiny
    # runs HugeCTR's (fused) backward, whose wgrad GEMM adds into dW (beta = 1: reads its 4 x 8
    # too), a node of its own (``test_hugectr_runs_the_mlp_weight_gradients_on_the_wgrad_lane``).
    b0_bwd = named(g, 0, "bottom0_wgrad_bwd").op
    assert b0_bwd.op == "linear_wgrad" and b0_bwd.flops == b0.flops and b0_bwd.accumulates
    assert b0_bwd.bytes_read == (4 * 4 + 4 * 8 + 4 * 8) * 4 and b0_bwd.bytes_written == 4 * 8 * 4
    # one DDP bucket with every dense gradient (131 params x 4 B, and the 6 weights top0 has for the
    # zero column HugeCTR's dot interaction writes: ``Runtime.dot_output_padding``)
    bucket = named(g, 0, "allreduce_bucket0").op
    assert isinstance(bucket, Collective)
    assert bucket.op is CollectiveOp.ALL_REDUCE
    assert bucket.bytes == PADDED_PARAMS * 4
    # forward + backward FLOPs over both ranks: 3 x dense forward x global batch, less the first
    # bottom layer's input gradient (64 per sample) and one of the dot interaction's two backward
    # products (72 per sample: the fused kernel runs one, ``_dot_interaction_op``), plus top0's
    # GEMMs over the zero column HugeCTR's interaction writes after its 4 + 3 outputs (its next
    # layer reads 8 -> 6: 2 x 1 x 6 = 12 per sample each, three GEMMs) (+ the loss's 11 FLOPs a
    # sample, ``BCE_FLOPS_PER_SAMPLE``), and the optimizer's 7 FLOPs a parameter (Adagrad,
    # ``OPTIMIZER_FLOPS_PER_PARAM``) on each rank, top0's 6 padding-column weights too
    # (``PADDED_PARAMS``). History: 7738 while the loss counted 8 and Adagrad 5 (both recounted from
    # their sources by a constants audit, 2026-12-07).
    assert total_flops(g) == pytest.approx(
        (3 * 296 + 3 * 12 - 64 - 72) * 8 + 2 * 11 * 4 + 7.0 * PADDED_PARAMS * 2
    )


def test_the_fused_dot_interaction_moves_what_nvidias_kernels_read_and_write(tiny):
    # HugeCTR's dotBasedInteractFwdKernel / BwdKernel (src/layers/interaction_layer.cu), local
    # batch 4, f = 3 vectors of d = 4 (the bottom MLP's output and two tables), 3 pairs, fp32.
    # Forward: reads 3 x 4, writes the bottom MLP's vector beside the pairs (4 + 3). Backward:
    # reads the upstream gradient (4 + 3) and the input (3 x 4), writes the input's gradient
    # (3 x 4). A reviewer's find: the backward was charged the forward's bytes twice over,
    # reading the input twice and writing the pairs twice, and two products where it runs one.
    g = build_training_step(tiny, table_wise_round_robin(tiny, 2), UNFUSED)
    fwd, bwd = named(g, 0, "interaction_fwd").op, named(g, 0, "interaction_bwd").op
    assert fwd.shapes == bwd.shapes == ((4, 3, 4),)
    assert (fwd.bytes_read, fwd.bytes_written) == (4 * 12 * 4, 4 * (4 + 3) * 4)
    assert (bwd.bytes_read, bwd.bytes_written) == (4 * (4 + 3 + 12) * 4, 4 * 12 * 4)
    assert fwd.flops == bwd.flops == 4 * 2 * 3 * 3 * 4


def test_step_dependencies_follow_torchrec(tiny):
    g = build_training_step(tiny, table_wise_round_robin(tiny, 2), UNFUSED)
    by_id = g.by_id
    inter = named(g, 0, "interaction_fwd")
    dep_names = {by_id[d].name for d in inter.deps}
    assert dep_names == {"a2a_fwd", "bottom1_fwd"}
    assert named(g, 0, "bottom0_fwd").deps == ()  # overlaps the embedding lookups
    assert named(g, 0, "input_dist").stream is Stream.COMM
    emb_bwd = named(g, 0, "emb_backward:a")
    # tiny runs on the fused runtime: HugeCTR's backward also waits for its index calculation
    # (``Runtime.backward_index_overlap``).
    assert {by_id[d].name for d in emb_bwd.deps} == {"a2a_bwd", "emb_index_sort:a"}
    opt = named(g, 0, "dense_optimizer")
    assert "allreduce_bucket0" in {by_id[d].name for d in opt.deps}


def test_buckets_split_at_the_cap(tiny):
    g = build_training_step(tiny, table_wise_round_robin(tiny, 2), BuildOptions(bucket_bytes=100))
    buckets = [n for n in g.rank_nodes(0) if n.name.startswith("allreduce_bucket")]
    assert len(buckets) > 1
    assert sum(b.op.bytes for b in buckets) == PADDED_PARAMS * 4


def test_row_wise_and_data_parallel_patterns(tiny):
    plan = Plan(
        2,
        (
            Shard("a", "row_wise", 0, 60, 0, 4, (0,)),
            Shard("a", "row_wise", 60, 100, 0, 4, (1,)),
            Shard("b", "data_parallel", 0, 50, 0, 4, (0, 1)),
        ),
        strategy="test",
    )
    g = build_training_step(tiny, plan, UNFUSED)
    g.validate()
    rs = named(g, 0, "rw_fwd:all").op
    assert rs.op is CollectiveOp.REDUCE_SCATTER
    assert rs.group == (0, 1)
    assert rs.bytes == 8 * 4 * 4  # partial pools of all 8 samples x dim 4 x fp32
    assert named(g, 1, "rw_bwd:all").op.op is CollectiveOp.ALL_GATHER
    assert named(g, 0, "emb_forward:a[0:60]").op.lookups == pytest.approx(8 * 2 * 0.6)
    dp = named(g, 1, "emb_forward:b").op
    assert dp.batch == 4  # the local batch only
    assert named(g, 0, "dp_allreduce_bucket0").op.bytes == 50 * 4 * 4


def test_a_row_split_reduces_in_what_torchrec_qcomm_can_sum(tiny):
    # TorchRec's qcomm falls back from an fp8 wire to fp16 for the reduce-scatter and bf16 for its
    # backward all-gather; an int8 one cannot reduce-scatter at all (FBGEMM's int8 codec needs a
    # context TorchRec's reduce-scatter never makes, and row-quantised values do not sum).
    plan = Plan(
        2,
        (
            Shard("a", "row_wise", 0, 60, 0, 4, (0,)),
            Shard("a", "row_wise", 60, 100, 0, 4, (1,)),
            Shard("b", "data_parallel", 0, 50, 0, 4, (0, 1)),
        ),
        strategy="test",
    )
    eager = tiny.model_copy(update={"training": tiny.training.model_copy(update={"runtime": "eager"})})
    g = build_training_step(eager, plan, BuildOptions(fuse_tables=False, comm_dtype="fp8"))
    rs, ag = named(g, 0, "rw_fwd:all").op, named(g, 0, "rw_bwd:all").op
    assert (rs.dtype, rs.bytes) == ("fp16", 8 * 4 * 2)  # 8 samples x dim 4 x 2 B
    assert (ag.dtype, ag.bytes) == ("bf16", 4 * 4 * 2)  # the local 4 samples x dim 4 x 2 B
    with pytest.raises(InfeasibleError, match="int8 wire cannot reduce-scatter"):
        build_training_step(eager, plan, BuildOptions(fuse_tables=False, comm_dtype="int8"))


@pytest.mark.parametrize("runtime_name", ["fused", "cuda_graphs"])
def test_the_nvidia_runtimes_send_no_quantised_wire_and_reduce_a_half_one_as_it_is(tiny, runtime_name):
    # HugeCTR and DLE send pooled embeddings as the model holds them (fp32, or fp16 under mixed
    # precision): no int8 or fp8 codec, so such a wire is refused naming the runtime and the dtype
    # (not TorchRec's reduce-scatter rule); fp16 is a plain cast and reduce-scatters as fp16.
    framework = {"fused": "HugeCTR", "cuda_graphs": "NVIDIA DLE's DLRM"}[runtime_name]
    wl = tiny.model_copy(update={"training": tiny.training.model_copy(update={"runtime": runtime_name})})
    plan = Plan(
        2,
        (
            Shard("a", "row_wise", 0, 60, 0, 4, (0,)),
            Shard("a", "row_wise", 60, 100, 0, 4, (1,)),
            Shard("b", "data_parallel", 0, 50, 0, 4, (0, 1)),
        ),
        strategy="test",
    )
    for dtype in ("int8", "fp8"):
        with pytest.raises(InfeasibleError) as err:
            build_training_step(wl, plan, BuildOptions(fuse_tables=False, comm_dtype=dtype))
        assert str(err.value) == (
            f"training.runtime {runtime_name!r} cannot send pooled embeddings as {dtype}: {framework} has "
            "no quantised communication (it sends them as fp32, fp16, bf16); choose one of those, or the "
            "eager runtime (TorchRec's qcomm codecs)"
        )
    g = build_training_step(wl, plan, BuildOptions(fuse_tables=False, comm_dtype="fp16"))
    rs, ag = named(g, 0, "rw_fwd:all").op, named(g, 0, "rw_bwd:all").op
    assert (rs.dtype, rs.bytes) == ("fp16", 8 * 4 * 2)  # 2 B a value, no scale or bias
    assert (ag.dtype, ag.bytes) == ("fp16", 4 * 4 * 2)
    for dtype in ("fp32", "bf16"):
        build_training_step(wl, plan, BuildOptions(fuse_tables=False, comm_dtype=dtype)).validate()


def test_inference_batch(tiny):
    g = build_inference_batch(tiny, table_wise_round_robin(tiny, 2))
    g.validate()
    assert not [n for n in g.nodes if "bwd" in n.name or "backward" in n.name]
    b0 = named(g, 0, "bottom0_fwd").op
    assert b0.dtype == "fp16"
    assert b0.flops == 2 * 2 * 4 * 8  # batch 2 per rank


def test_inference_lookups_read_the_inference_tbes_rows(tiny):
    # An inference batch's lookups are marked so: their int8 rows carry FBGEMM's inference TBE's
    # fp16 scale and bias (4 B), a training step's its training TBE's fp32 pair (8 B).
    plan = table_wise_round_robin(tiny, 2)
    served = [n.op for n in build_inference_batch(tiny, plan).nodes if isinstance(n.op, Embedding)]
    trained = [n.op for n in build_training_step(tiny, plan).nodes if isinstance(n.op, Embedding)]
    assert served and all(o.inference for o in served)
    assert trained and not any(o.inference for o in trained)


def test_bad_batch_and_plans(tiny):
    with pytest.raises(InfeasibleError, match="not divisible by 3 ranks"):
        build_training_step(tiny, table_wise_round_robin(tiny, 3))
    partial = Plan(2, (Shard("a", "table_wise", 0, 100, 0, 4, (0,)),), strategy="partial")
    with pytest.raises(InfeasibleError, match="places no shard of table 'b'"):
        build_training_step(tiny, partial)
    short = Plan(
        2,
        (Shard("a", "row_wise", 0, 60, 0, 4, (0,)), Shard("b", "table_wise", 0, 50, 0, 4, (1,))),
        strategy="short",
    )
    with pytest.raises(InfeasibleError, match="cover 240 of 400 cells"):
        build_training_step(tiny, short)


def test_shipped_dcnv2_on_128_ranks_is_consistent():
    w = WorkloadLibrary().workload("dlrm-dcnv2")
    g = build_training_step(w, table_wise_round_robin(w, 128))
    g.validate()  # includes the all-to-all send/recv agreement across 128 ranks
    assert g.ranks == 128
    per_sample = total_flops(g) / w.training.global_batch_size
    assert per_sample == pytest.approx(3 * w.dense_forward_flops_per_sample, rel=0.01)


def test_fused_tbe_sums_its_tables(tiny):
    plan = Plan(
        1,
        (Shard("a", "table_wise", 0, 100, 0, 4, (0,)), Shard("b", "table_wise", 0, 50, 0, 4, (0,))),
        strategy="one rank",
    )
    g = build_training_step(tiny, plan)
    fwd = named(g, 0, "emb_forward:tbe[2 tables]").op
    assert isinstance(fwd, Embedding)
    assert (fwd.rows, fwd.dim, fwd.lookups) == (150, 4, 8 * 2 + 8 * 3)
    # unique rows: each table's expected distinct rows for its own lookups, summed
    assert fwd.unique_rows is not None
    assert 0 < fwd.unique_rows <= 16 + 24
    assert g.metadata["fused_tables"] == {"tbe:0:fp32": [["a", 16.0], ["b", 24.0]]}
    # One bag per sample and table, as FBGEMM's TBE pools B x T of them (the batch is one table's).
    assert (fwd.batch, fwd.bags) == (8, 16)
    assert fwd.output_dtype is None  # tiny trains in fp32: nothing narrower to write


def test_fused_tbe_of_unequal_dims_writes_its_tables_vectors(tiny):
    # a: dim 4, pooling 2; b: dim 8, pooling 3; both on rank 0, batch 8. The TBE's dim is the
    # lookup-weighted mean (16 x 4 + 24 x 8) / 40 = 6.4 -> 6, so its rows read are the tables'
    # within the rounding; its bags, counted in vectors of that width, make its pooled output the
    # tables' own 8 x 4 + 8 x 8 = 96 values.
    tables = [tiny.tables[0], tiny.tables[1].model_copy(update={"dim": 8})]
    wl = tiny.model_copy(update={"tables": tables})
    plan = Plan(
        1,
        (Shard("a", "table_wise", 0, 100, 0, 4, (0,)), Shard("b", "table_wise", 0, 50, 0, 8, (0,))),
        strategy="one rank",
    )
    fwd = named(build_training_step(wl, plan), 0, "emb_forward:tbe[2 tables]").op
    assert (fwd.dim, fwd.lookups) == (6, 40)
    assert fwd.bags is not None and fwd.bags * fwd.dim == pytest.approx(8 * 4 + 8 * 8)


def test_parts_pool_only_the_bags_that_drew_their_rows(tiny):
    plan = _flex_plan()
    assert tiny.training.runtime == "fused"  # HugeCTR's kernels walk the lookups
    g = build_training_step(tiny, plan, UNFUSED)
    # a is uniform, pooling 2: the hot 10 % of rows are drawn by 1 - 0.9^2 of the bags, the cold
    # 90 % by 1 - 0.1^2; a whole table (b) pools every sample's bag (``bags`` None: the batch).
    hot = named(g, 1, "emb_forward:a[0:10]").op
    assert hot.bags == pytest.approx(4 * (1 - 0.9**2))
    cold = named(g, 0, "emb_forward:a[10:100]").op
    assert cold.bags == pytest.approx(8 * (1 - 0.1**2))
    assert named(g, 1, "emb_forward:b").op.bags is None
    # FBGEMM's TBE (TorchRec, eager) pools every sample's bag, empty ones included.
    eager = tiny.model_copy(update={"training": tiny.training.model_copy(update={"runtime": "eager"})})
    g = build_training_step(eager, plan, UNFUSED)
    assert named(g, 0, "emb_forward:a[10:100]").op.bags is None


def test_hugectr_lookups_write_their_vectors_in_fp16(tiny):
    # HugeCTR (fused) under mixed precision writes pooled vectors in its fp16 emtype; TorchRec
    # (eager) writes them at the table's fp32 and casts them for the wire in a kernel of its own.
    def outputs(precision: str, runtime: str, wire: str) -> set[str | None]:
        training = tiny.training.model_copy(update={"precision": precision, "runtime": runtime})
        wl = tiny.model_copy(update={"training": training})
        g = build_training_step(wl, table_wise_round_robin(wl, 2), BuildOptions(comm_dtype=wire))
        lookups = [n.op for n in g.nodes if isinstance(n.op, Embedding)]
        assert lookups and {op.dtype for op in lookups} == {"fp32"}
        return {op.output_dtype for op in lookups}

    assert outputs("fp16", "fused", "fp16") == {"fp16"}
    assert outputs("fp16", "eager", "fp16") == {None}
    # emtype follows the training precision, not the wire: an fp32 or a bf16 wire leaves it fp16,
    # and fp32 training writes fp32 (HugeCTR sends no int8 wire: Runtime.wire_dtypes).
    assert outputs("fp16", "fused", "fp32") == {"fp16"}
    assert outputs("fp16", "fused", "bf16") == {"fp16"}
    assert outputs("fp32", "fused", "fp16") == {None}


def test_quantised_tables_pool_in_float(tiny):
    # An int8 or int4 table's rows are dequantised and summed in float: the sum is written in the
    # half precision where the framework writes narrow (HugeCTR), else in fp32 (FBGEMM's TBE
    # default output_dtype), never at the storage width.
    def outputs(precision: str, runtime: str, dtype: str) -> set[str | None]:
        training = tiny.training.model_copy(update={"precision": precision, "runtime": runtime})
        embedding = tiny.embedding.model_copy(update={"dtype": dtype})
        wl = tiny.model_copy(update={"training": training, "embedding": embedding})
        g = build_training_step(wl, table_wise_round_robin(wl, 2), BuildOptions())
        lookups = [n.op for n in g.nodes if isinstance(n.op, Embedding)]
        assert lookups and {op.dtype for op in lookups} == {dtype}
        return {op.output_dtype for op in lookups}

    for dtype in ("int8", "int4", "fp8"):
        assert outputs("fp16", "fused", dtype) == {"fp16"}
        assert outputs("fp16", "eager", dtype) == {"fp32"}
        assert outputs("fp32", "fused", dtype) == {"fp32"}
    # Float tables as before: an fp16 table under fp32 training pools at fp16.
    assert outputs("fp32", "eager", "fp16") == {None}


def test_quantised_tables_are_cast_for_a_narrower_wire_and_reduce_their_gradients_in_float(tiny):
    # Their lookups write fp32 (eager, cuda_graphs): an fp16 wire needs the same casts as an fp32
    # table's, and a replicated quantised table's gradient is all-reduced at fp32, not at its
    # storage width (a reviewer's finds).
    for runtime_name in ("eager", "cuda_graphs"):
        training = tiny.training.model_copy(update={"precision": "fp16", "runtime": runtime_name})
        casts = {}
        for dtype in ("fp32", "int8", "int4"):
            embedding = tiny.embedding.model_copy(update={"dtype": dtype})
            wl = tiny.model_copy(update={"training": training, "embedding": embedding})
            g = build_training_step(wl, table_wise_round_robin(wl, 2), BuildOptions(comm_dtype="fp16"))
            rewritten = apply_runtime(g, wl)
            casts[dtype] = sorted(
                (n.op.bytes_read, n.op.bytes_written)
                for n in rewritten.nodes
                if n.name.startswith(("quantise", "dequantise")) and isinstance(n.op, Compute)
            )
        assert casts["fp32"] and casts["int8"] == casts["fp32"] == casts["int4"]
        embedding = tiny.embedding.model_copy(update={"dtype": "int8"})
        wl = tiny.model_copy(update={"training": training, "embedding": embedding})
        dims = {t.name: wl.table_dim(t) for t in wl.tables}
        shards = tuple(
            Shard(t.name, "data_parallel", 0, t.rows, 0, dims[t.name], (0, 1), "hbm") for t in wl.tables
        )
        g = build_training_step(wl, Plan(2, shards, strategy="dp", comm_dtype="fp16"), BuildOptions())
        buckets = [n for n in g.nodes if n.rank == 0 and n.name.startswith("dp_allreduce")]
        (bucket,) = {n.op for n in buckets if isinstance(n.op, Collective)}
        assert bucket.dtype == "fp32"
        assert bucket.bytes == sum(t.rows * wl.table_dim(t) * 4.0 for t in wl.tables)


def test_only_a_rank_whose_own_lookups_are_wider_than_the_wire_casts(tiny):
    # An fp16 table and an int8 one (fp32 lookups) under fp16 training and an fp16 wire: the rank
    # holding the fp16 table sends fp16 already and casts nothing of its own (a reviewer's find: it
    # was charged the other rank's widest vectors). Both decode what they receive into fp32 and
    # encode its gradient (FBGEMM's codec decodes into fp32 whatever the dense precision).
    training = tiny.training.model_copy(update={"precision": "fp16", "runtime": "eager"})
    tables = [
        tiny.tables[0].model_copy(update={"dtype": "fp16"}),
        tiny.tables[1].model_copy(update={"dtype": "int8"}),
    ]
    wl = tiny.model_copy(update={"training": training, "tables": tables})
    g = build_training_step(wl, table_wise_round_robin(wl, 2), BuildOptions(comm_dtype="fp16"))
    nodes = apply_runtime(g, wl).nodes
    owners = {n.rank for n in nodes if n.name.startswith(("quantise:a2a_fwd", "dequantise:a2a_bwd"))}
    assert owners == {1}
    users = {n.rank for n in nodes if n.name.startswith(("dequantise:a2a_fwd", "quantise:a2a_bwd"))}
    assert users == {0, 1}


def test_table_row_wise_reduces_in_the_group_then_sends_on(tiny):
    # Four ranks; "nodes" of two: a split over ranks 0-1, b over ranks 2-3.
    plan = Plan(
        4,
        (
            Shard("a", "table_row_wise", 0, 50, 0, 4, (0,)),
            Shard("a", "table_row_wise", 50, 100, 0, 4, (1,)),
            Shard("b", "table_row_wise", 0, 25, 0, 4, (2,)),
            Shard("b", "table_row_wise", 25, 50, 0, 4, (3,)),
        ),
        strategy="twrw",
    )
    g = build_training_step(tiny, plan, UNFUSED)
    g.validate()
    rs = named(g, 0, "rw_fwd:ranks 0-1").op
    assert rs.group == (0, 1) and rs.bytes == 8 * 4 * 4
    # Rank 0 keeps the samples of ranks q with q mod 2 = 0 (itself and rank 2) and sends rank 2
    # its 2 samples x 4 floats; rank 1 sends rank 3 likewise.
    a2a = named(g, 0, "a2a_fwd").op
    assert a2a.send_bytes == (0.0, 0.0, 32.0, 0.0)
    assert named(g, 1, "a2a_fwd").op.send_bytes == (0.0, 0.0, 0.0, 32.0)
    assert named(g, 2, "a2a_fwd").op.send_bytes == (32.0, 0.0, 0.0, 0.0)
    # backward: the transpose, then an all-gather of the group's B / 2 samples' gradients
    assert named(g, 0, "a2a_bwd").op.recv_bytes == (0.0, 0.0, 32.0, 0.0)
    ag = named(g, 0, "rw_bwd:ranks 0-1").op
    assert ag.op is CollectiveOp.ALL_GATHER and ag.bytes == 4 * 4 * 4


def _flex_plan() -> Plan:
    """FlexShard: the 10 hottest rows of a on both ranks, its 90 cold rows on rank 0; b on rank 1."""
    return Plan(
        2,
        (
            Shard("a", "data_parallel", 0, 10, 0, 4, (0, 1), order="popularity"),
            Shard("a", "table_wise", 10, 100, 0, 4, (0,), order="popularity"),
            Shard("b", "table_wise", 0, 50, 0, 4, (1,)),
        ),
        strategy="flex",
    )


def test_hot_rows_replicated_shrink_the_cold_exchange(tiny):
    plan = _flex_plan()
    g = build_training_step(tiny, plan, UNFUSED)
    g.validate()
    # tiny's tables are uniform: the cold rows get 90 % of a's lookups (pooling 2), so a bag
    # needs the cold owner with probability 1 - 0.1^2 = 0.99.
    hot = named(g, 1, "emb_forward:a[0:10]").op
    assert hot.batch == 4 and hot.lookups == pytest.approx(4 * 2 * 0.1)
    cold = named(g, 0, "emb_forward:a[10:100]").op
    assert cold.lookups == pytest.approx(8 * 2 * 0.9)
    assert cold.table == "a@[10:100]" and g.metadata["table_slices"]["a@[10:100]"] == [
        "a",
        10,
        100,
        "popularity",
    ]
    a2a = named(g, 0, "a2a_fwd").op
    assert a2a.send_bytes == pytest.approx((4 * 4 * 4 * 0.99, 4 * 4 * 4 * 0.99))
    assert named(g, 0, "dp_allreduce_bucket0").op.bytes == 10 * 4 * 4


def test_grid_column_groups_reduce_in_their_own_group(tiny):
    # a: two column halves, each split by rows over its "node" (ranks 0-1, ranks 2-3); b whole on 3.
    shards = [
        Shard("a", "grid", r0, r1, c0, c1, (rank,))
        for (c0, c1, base) in ((0, 2, 0), (2, 4, 2))
        for (r0, r1, rank) in ((0, 50, base), (50, 100, base + 1))
    ]
    plan = Plan(4, (*shards, Shard("b", "table_wise", 0, 50, 0, 4, (3,))), strategy="grid")
    g = build_training_step(tiny, plan, UNFUSED)
    g.validate()
    assert named(g, 0, "rw_fwd:ranks 0-1").op.bytes == 8 * 2 * 4
    assert named(g, 2, "rw_fwd:ranks 2-3").op.bytes == 8 * 2 * 4


def test_ssd_shards_split_their_nodes_cache_by_bytes(tiny):
    """The OS page cache is one per node and the planner books one per node, at the largest fraction
    its ssd shards ask: the node's ssd lookups, on all its ranks, split it by their shards' bytes
    (``Embedding.cache_share``; each was costed against the whole cache at first, then against its
    rank's 1/ranks of it split among the rank's own shards)."""
    plan = Plan(
        1,
        (
            Shard("a", "table_wise", 0, 100, 0, 4, (0,), tier="ssd"),
            Shard("b", "table_wise", 0, 50, 0, 4, (0,), tier="ssd:0.2"),
        ),
    )
    g = build_inference_batch(tiny, plan)
    a, b = named(g, 0, "emb_forward:a").op, named(g, 0, "emb_forward:b").op
    assert a.cache_share == pytest.approx(100 / 150) and b.cache_share == pytest.approx(50 / 150)
    # Mixed fractions: the node's cache is the booked (largest) one; ``a`` is costed against it.
    assert a.tier == "ssd:0.2" and b.tier == "ssd:0.2"
    # On two ranks of one node the shards still split the node's one cache ...
    apart = Plan(2, (plan.shards[0], Shard("b", "table_wise", 0, 50, 0, 4, (1,), tier="ssd")))
    g = build_inference_batch(
        tiny, apart, options=BuildOptions(include_input_pipeline=False, ranks_per_node=2)
    )
    assert named(g, 0, "emb_forward:a").op.cache_share == pytest.approx(100 / 150)
    assert named(g, 1, "emb_forward:b").op.cache_share == pytest.approx(50 / 150)
    assert named(g, 0, "emb_forward:a").op.tier == "ssd"
    # ... on two nodes each has its node's whole cache (None); so has a shard beside another tier.
    g = build_inference_batch(
        tiny, apart, options=BuildOptions(include_input_pipeline=False, ranks_per_node=1)
    )
    assert named(g, 0, "emb_forward:a").op.cache_share is None
    assert named(g, 1, "emb_forward:b").op.cache_share is None
    mixed = Plan(1, (plan.shards[0], Shard("b", "table_wise", 0, 50, 0, 4, (0,), tier="ddr")))
    assert named(build_inference_batch(tiny, mixed), 0, "emb_forward:a").op.cache_share is None


def test_nmp_shards_split_their_nodes_rank_caches_by_bytes(tiny):
    """RecNMP's RankCaches are in the node's DIMMs, which hold all its nmp tables: the node's nmp
    lookups, forward and backward, on all its ranks, split them by their shards' bytes
    (``Embedding.cache_share``), as the SSD tiers' caches. Each was costed against its channel's
    whole RankCaches at first, however many tables shared them (a tester's find)."""
    plan = Plan(
        2,
        (
            Shard("a", "table_wise", 0, 100, 0, 4, (0,), tier="nmp"),
            Shard("b", "table_wise", 0, 50, 0, 4, (1,), tier="nmp"),
        ),
    )
    g = build_training_step(tiny, plan, BuildOptions(fuse_tables=False, ranks_per_node=2))
    a, b = named(g, 0, "emb_forward:a").op, named(g, 1, "emb_forward:b").op
    assert a.cache_share == pytest.approx(100 / 150) and b.cache_share == pytest.approx(50 / 150)
    assert a.tier == "nmp" and b.tier == "nmp"
    # On two nodes each has its node's RankCaches (None), as a shard beside another tier has.
    g = build_training_step(tiny, plan, BuildOptions(fuse_tables=False, ranks_per_node=1))
    assert named(g, 0, "emb_forward:a").op.cache_share is None
    mixed = Plan(2, (plan.shards[0], Shard("b", "table_wise", 0, 50, 0, 4, (1,), tier="ddr")))
    g = build_training_step(tiny, mixed, BuildOptions(fuse_tables=False, ranks_per_node=2))
    assert named(g, 0, "emb_forward:a").op.cache_share is None


def test_pytorch_amp_all_reduces_fp32_gradients_and_hugectr_fp16(tiny):
    # PyTorch's mixed precision keeps fp32 parameters and .grad, which DDP reduces; HugeCTR's
    # keeps an fp16 weight-gradient buffer (Runtime.dense_gradient_dtype). The all-reduce's size,
    # its dtype and the bucket split all follow the gradient's dtype.
    for runtime_name, dtype in (("eager", "fp32"), ("cuda_graphs", "fp32"), ("fused", "fp16")):
        training = tiny.training.model_copy(update={"precision": "fp16", "runtime": runtime_name})
        wl = tiny.model_copy(update={"training": training})
        g = build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED)
        bucket = named(g, 0, "allreduce_bucket0").op
        # HugeCTR's and DLE's top0 has 6 weights more, for the dot's padding (``PADDED_PARAMS``).
        params = 131 if runtime_name == "eager" else PADDED_PARAMS
        assert (bucket.dtype, bucket.bytes) == (dtype, params * DTYPE_BYTES[dtype]), runtime_name
        # A cap of 300 B: one bucket of 274 fp16 bytes, but the 524 or 548 fp32 bytes split.
        caps = BuildOptions(bucket_bytes=300, first_bucket_bytes=300)
        capped = build_training_step(wl, table_wise_round_robin(wl, 2), caps)
        buckets = [n.op for n in capped.rank_nodes(0) if n.name.startswith("allreduce_bucket")]
        assert (len(buckets) > 1) == (dtype == "fp32"), runtime_name
        assert sum(b.bytes for b in buckets) == params * DTYPE_BYTES[dtype]


def test_pytorch_fp8_and_int8_training_all_reduce_fp32_gradients(tiny):
    # A tester's find: under PyTorch, precision fp8 or int8 all-reduced the dense gradients in fp8
    # or int8 (1 B each, a quarter of the fp32 bytes). torchao's float8 and int8 training quantise
    # only the linears' GEMM operands; the weights and their gradients stay in the model's dtype
    # (https://docs.pytorch.org/ao/stable/workflows/training.html), fp32 here, as under AMP. HugeCTR
    # (fused) has no fp8 or int8 mode: read the same way.
    for runtime_name in ("eager", "cuda_graphs", "fused"):
        for precision in ("fp8", "int8"):
            training = tiny.training.model_copy(update={"precision": precision, "runtime": runtime_name})
            wl = tiny.model_copy(update={"training": training})
            g = build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED)
            bucket = named(g, 0, "allreduce_bucket0").op
            params = 131 if runtime_name == "eager" else PADDED_PARAMS
            assert (bucket.dtype, bucket.bytes) == ("fp32", params * 4.0), (runtime_name, precision)


def test_data_parallel_buckets_are_labelled_in_the_dtype_of_their_size(tiny):
    # fp16 tables replicated under DDP: their .grad is fp16, so is the all-reduce (its label used to
    # say fp32 over a size counted in fp16).
    embedding = tiny.embedding.model_copy(update={"dtype": "fp16"})
    training = tiny.training.model_copy(update={"runtime": "eager"})
    wl = tiny.model_copy(update={"training": training, "embedding": embedding})
    dims = {t.name: wl.table_dim(t) for t in wl.tables}
    shards = tuple(
        Shard(t.name, "data_parallel", 0, t.rows, 0, dims[t.name], (0, 1), "hbm") for t in wl.tables
    )
    g = build_training_step(wl, Plan(2, shards, strategy="dp"), BuildOptions())
    (bucket,) = {n.op for n in g.nodes if n.rank == 0 and n.name.startswith("dp_allreduce")}
    assert bucket.dtype == "fp16"
    assert bucket.bytes == sum(t.rows * dims[t.name] * 2.0 for t in wl.tables)


def test_dle_loads_its_own_features_for_the_global_batch_and_exchanges_no_index(tiny):
    # NVIDIA DLE's loader gives each rank, for the global batch, the categorical features of the
    # tables it holds and, on the bottom MLP's rank, the numerical ones (fp16); every rank the labels
    # (Runtime.per_rank_feature_input): no input_dist collective. TorchRec (eager) keeps its
    # KJTAllToAll of the local batch's indices.
    from recsim.planner.plan import table_wise_mp_bottom

    for runtime_name in ("cuda_graphs", "eager"):
        training = tiny.training.model_copy(update={"runtime": runtime_name})
        wl = tiny.model_copy(update={"training": training})
        plan = table_wise_mp_bottom(wl, 2)
        g = build_training_step(wl, plan, UNFUSED)
        g.validate()
        has_dist = any(n.name == "input_dist" for r in range(2) for n in g.rank_nodes(r))
        assert has_dist == (runtime_name == "eager"), runtime_name
        if runtime_name != "cuda_graphs":
            continue
        held = {r: {s.table for s in plan.shards if r in s.ranks} for r in range(2)}
        bottom = plan.bottom_rank
        assert bottom is not None
        for r in range(2):
            idx = sum({"a": 2, "b": 3}[t] for t in held[r]) * 8 * 8.0  # lookups x global batch x int64
            dense = 8 * 4 * 2.0 if r == bottom else 0.0  # global batch x 4 features x fp16
            h2d = named(g, r, "h2d_next_batch").op
            assert h2d.bytes == idx + dense + 8 * 4.0, r  # + the batch's fp32 labels


def test_torch_ddp_caps_its_first_bucket_at_1_mib_and_apex_and_hugectr_do_not(tiny):
    # torch DDP's Reducer::rebuild_buckets fills buckets in ready order with the limits {1 MiB
    # (dist._DEFAULT_FIRST_BUCKET_BYTES), bucket_cap_mb}; apex's DDP (DLE) ships a bucket at
    # message_size = 10M elements; the fused frameworks keep 25 MiB (Runtime.gradient_bucket_caps).
    from recsim.graph.build import _buckets

    assert runtime("eager").gradient_bucket_caps("fp32") == (2**20, 25 * 2**20)
    assert runtime("cuda_graphs").gradient_bucket_caps("fp32") == (None, 4e7)
    assert runtime("cuda_graphs").gradient_bucket_caps("fp16") == (None, 2e7)
    assert runtime("fused").gradient_bucket_caps("fp32") == (None, 25 * 2**20)
    grads = [("l3", 0.6e6, 3), ("l2", 0.6e6, 2), ("l1", 20e6, 1), ("l0", 10e6, 0)]
    assert _buckets(grads, 2**20, 25 * 2**20) == [(1.2e6, 2), (30e6, 0)]
    assert _buckets(grads, 25 * 2**20, 25 * 2**20) == [(31.2e6, 0)]
    # Over the graph: a 100 B cap splits tiny's 524 B of fp32 gradients (548 with the padding
    # column's weights, fused: ``PADDED_PARAMS``), after a first bucket that
    # takes torch DDP's 1 MiB under eager, the cap itself under fused.
    for runtime_name, first_alone in (("eager", True), ("fused", False)):
        training = tiny.training.model_copy(update={"runtime": runtime_name})
        wl = tiny.model_copy(update={"training": training})
        g = build_training_step(wl, table_wise_round_robin(wl, 2), BuildOptions(bucket_bytes=100))
        buckets = [n.op for n in g.rank_nodes(0) if n.name.startswith("allreduce_bucket")]
        assert sum(b.bytes for b in buckets) == (131 if runtime_name == "eager" else PADDED_PARAMS) * 4
        assert (len(buckets) == 1) == first_alone, runtime_name


def _tiny_dcnv2(tiny, runtime_name="fused"):
    """tiny with two rank-3 DCNv2 cross layers on its 12-wide concatenation (4 + 2 x 4)."""
    data = tiny.model_dump()
    data["interaction"] = {"type": "dcnv2", "layers": 2, "low_rank": 3}
    data["training"]["runtime"] = runtime_name
    return type(tiny).model_validate(data)


def test_a_cross_layer_is_its_two_gemms_and_an_elementwise_kernel(tiny):
    # A reviewer's find: a cross layer was one op priced at the matrix calibration's best
    # efficiency, without the GEMM model. TorchRec's LowRankCrossNet and HugeCTR's
    # MultiCrossForwardFunctorv2 run x_l V ([b, W] x [W, r]), then (x_l V) U + bias
    # ([b, r] x [r, W]), then x0 * h + x_l; b = 4 local samples, W = 12, r = 3, fp32.
    from recsim.cost.compute import GemmShape, gemm_kernels

    wl = _tiny_dcnv2(tiny)
    (layer,) = {x for x in wl.dense_layers if x.name == "cross0"}
    assert (layer.flops, layer.params) == (2 * 12 * 3 * 2 + 3 * 12, 2 * 12 * 3 + 12)  # unchanged
    g = build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED)
    g.validate()
    names = [n.name for n in g.rank_nodes(0) if isinstance(n.op, Compute)]
    cross = [x for x in names if x.startswith("cross")]
    # HugeCTR's backward: each GEMM a node of its own (async weight gradients, the wiring in
    # ``test_hugectr_runs_the_cross_weight_gradients_on_a_lane_of_their_own``).
    bwd = ("_bwd", "_u_dgrad_bwd", "_v_dgrad_bwd", "_u_wgrad_bwd", "_v_wgrad_bwd")
    assert cross == [
        "cross0_concat_fwd",
        *("cross0_v_fwd", "cross0_u_fwd", "cross0_fwd", "cross1_v_fwd", "cross1_u_fwd", "cross1_fwd"),
        *(f"cross1{x}" for x in bwd),
        *(f"cross0{x}" for x in bwd),
        "cross0_concat_bwd",
    ]
    for a, b in pairwise(cross[:7]):  # a chain forward: each waits for the one before
        assert named(g, 0, a).id in named(g, 0, b).deps
    v, u, e = (named(g, 0, f"cross0{s}_fwd").op for s in ("_v", "_u", ""))
    assert (v.flops, v.bytes_read, v.bytes_written, v.shapes) == (
        288,
        (48 + 36) * 4,
        12 * 4,
        ((4, 12), (12, 3)),
    )
    assert (u.flops, u.bytes_read, u.bytes_written, u.shapes) == (
        288,
        (12 + 36) * 4,
        48 * 4,
        ((4, 3), (3, 12)),
    )
    assert gemm_kernels(v) == (GemmShape(1, 4, 3, 12),) and gemm_kernels(u) == (GemmShape(1, 4, 12, 3),)
    # x0 * h + x_l: reads three 4 x 12 tensors, writes one; 3 FLOPs per element with the bias add
    assert (e.category, e.flops, e.bytes_read, e.bytes_written) == ("elementwise", 144, 3 * 192, 192)
    assert v.flops + u.flops + e.flops == 4 * layer.flops  # the layer's forward, all of it
    # Backward: dX and dW of each projection (4 b W r FLOPs each pair) and HugeCTR's fused_mul_fma3
    # (reads dY, x0, h and x0's accumulated gradient; writes S0 and that gradient); the stack's
    # first layer also zeroes that accumulator and adds it to the residual chain's gradient.
    ud, vd, uw, vw = (named(g, 0, f"cross1_{x}_bwd").op for x in ("u_dgrad", "v_dgrad", "u_wgrad", "v_wgrad"))
    assert gemm_kernels(ud) == (GemmShape(1, 4, 3, 12),)  # dH = dY U: [4, 12] x [12, 3]
    assert gemm_kernels(uw) == (GemmShape(1, 3, 12, 4, True),)  # dU += H^T dY
    assert gemm_kernels(vd) == (GemmShape(1, 4, 12, 3, True),)  # dX = dH V^T + dY: [4, 3] x [3, 12]
    assert gemm_kernels(vw) == (GemmShape(1, 12, 3, 4, True),)  # dV += X^T dH
    # an input gradient reads the output's gradient and the weights, writes the input's; the V
    # projection's adds the residual's gradient as its C operand (HugeCTR's beta = 1: reads the
    # 4 x 12 output too), and the weight gradients add into their buffers (3 x 12 each); dH
    # overwrites its output.
    assert (ud.bytes_read, ud.bytes_written, ud.accumulates) == ((48 + 36) * 4, 12 * 4, False)
    assert (vd.bytes_read, vd.bytes_written, vd.accumulates) == ((12 + 36 + 48) * 4, 48 * 4, True)
    assert uw.bytes_read == ((4 * 3 + 4 * 12) + 36) * 4 and vw.bytes_read == ((4 * 12 + 4 * 3) + 36) * 4
    e1, e0 = named(g, 0, "cross1_bwd").op, named(g, 0, "cross0_bwd").op
    assert (e1.flops, e1.bytes_read, e1.bytes_written) == (144, 4 * 192, 2 * 192)
    assert (e0.flops, e0.bytes_read, e0.bytes_written) == (144 + 48, 6 * 192, 4 * 192)
    assert ud.flops + vd.flops + uw.flops + vw.flops + e1.flops == 2 * 4 * layer.flops - 144
    # The gradients: bottom 76, cross 2 x 84, top 12 x 6 + 6 + 7 = 85 parameters, each cross
    # layer's ready after its V projection's weight gradient (its lane's last node).
    (bucket,) = [n for n in g.rank_nodes(0) if n.name.startswith("allreduce_bucket")]
    assert bucket.op.bytes == (76 + 2 * 84 + 85) * 4
    g = build_training_step(
        wl, table_wise_round_robin(wl, 2), BuildOptions(fuse_tables=False, bucket_bytes=84 * 4)
    )
    ready = [
        g.by_id[d].name for n in g.rank_nodes(0) if n.name.startswith("allreduce_bucket") for d in n.deps
    ]
    # The first bucket also waits for the backward all-to-all: HugeCTR's one NCCL communicator runs
    # the exchange before the all-reduces (``Runtime.all_reduces_after_exchange``).
    assert ready[:4] == ["top0_wgrad_bwd", "a2a_bwd", "cross1_v_wgrad_bwd", "cross0_v_wgrad_bwd"]


def test_hugectr_runs_the_cross_weight_gradients_on_a_lane_of_their_own(tiny):
    # HugeCTR's MultiCrossBackwardFunctorv2 with async_wgrad: fused_mul_fma3, dH and dX GEMMs on
    # the dgrad stream, the weight gradients on "cross_layer_wgrad", joined at the stack's end.
    # Contended: a layer's weight gradients follow its input gradients and the next layer's
    # input-gradient GEMM waits for them, so they overlap only that layer's fma3.
    from recsim.graph.build import LANE_WGRAD

    wl = _tiny_dcnv2(tiny)
    g = build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED)
    g.validate()

    def deps(name):
        return sorted(g.by_id[d].name for d in named(g, 0, name).deps)

    assert deps("cross1_bwd") == ["top0_dgrad_bwd"]  # beside the top MLP's last weight gradient
    # the stack's first waits for that one (HugeCTR's MLP weight gradients are async too)
    assert deps("cross1_u_dgrad_bwd") == ["cross1_bwd", "top0_wgrad_bwd"]
    assert deps("cross1_v_dgrad_bwd") == ["cross1_u_dgrad_bwd"]
    assert deps("cross1_u_wgrad_bwd") == deps("cross1_v_wgrad_bwd") == ["cross1_v_dgrad_bwd"]
    assert deps("cross0_bwd") == ["cross1_v_dgrad_bwd"]  # beside cross1's weight gradients
    assert deps("cross0_u_dgrad_bwd") == ["cross0_bwd", "cross1_v_wgrad_bwd"]
    assert deps("cross0_v_dgrad_bwd") == ["cross0_u_dgrad_bwd"]
    assert deps("cross0_u_wgrad_bwd") == deps("cross0_v_wgrad_bwd") == ["cross0_v_dgrad_bwd"]
    # The stack's end joins the wgrad lane, then HugeCTR's Concat layer slices the input gradient
    # back (``test_hugectr_concatenates_the_cross_stacks_input``): the embeddings' gradients and
    # the bottom MLP wait for it.
    assert deps("cross0_concat_bwd") == ["cross0_v_dgrad_bwd", "cross0_v_wgrad_bwd"]
    assert deps("bottom1_dgrad_bwd") == ["cross0_concat_bwd"]
    lanes = {n.name: n.lane for n in g.rank_nodes(0) if n.stream is Stream.COMPUTE and n.lane}
    wgrads = [
        "top1_wgrad_bwd",
        "top0_wgrad_bwd",
        *(f"cross{k}_{p}_wgrad_bwd" for k in (1, 0) for p in ("u", "v")),
        "bottom1_wgrad_bwd",
        "bottom0_wgrad_bwd",
    ]
    assert {x: lane for x, lane in lanes.items() if not x.startswith("emb_index_sort")} == dict.fromkeys(
        wgrads, LANE_WGRAD
    )
    # The PyTorch runtimes keep each projection's backward as one node, on lane 0.
    wl = _tiny_dcnv2(tiny, "cuda_graphs")
    g = build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED)
    cross = [n for n in g.rank_nodes(0) if n.name.startswith("cross") and n.name.endswith("_bwd")]
    names = [n.name for n in cross]
    assert names == [
        "cross1_bwd",
        "cross1_u_bwd",
        "cross1_v_bwd",
        "cross0_bwd",
        "cross0_u_bwd",
        "cross0_v_bwd",
        "cross0_concat_bwd",
    ]
    for a, b in pairwise(cross):
        assert b.deps == (a.id,) and a.lane == b.lane == 0
    # PyTorch's mm overwrites its output (beta = 0): autograd adds the residual's gradient itself.
    assert not any(n.op.accumulates for n in cross)


def test_hugectr_runs_the_mlp_weight_gradients_on_the_wgrad_lane(tiny):
    # HugeCTR's MLP layers with async wgrad (DCNv2 train.py's DenseLayerComputeConfig(async_wgrad=
    # True), DLRM v1's CreateSolver(async_mlp_wgrad=True)): FusedFCLayerFunctors::bprop (src/layers/
    # functors/fused_fc_layer_functors.cu) runs each layer's wgrad GEMM, beta = 1, on the overlap
    # stream and its dgrad GEMM, beta = 0, on the main one; the first dense layer skips its dgrad.
    # Contended as the cross layers' (``_dense_chain``): a wgrad follows its layer's dgrad and the
    # next matrix product (dgrad, dot interaction) waits for it, so it hides only behind the
    # memory-bound kernels in between.
    # tiny: local batch 4, fp32; bottom 4 -> 8 -> 4, dot interaction (7 wide out), top 7 -> 6 -> 1.
    from recsim.cost.compute import GemmShape, gemm_kernels
    from recsim.graph.build import LANE_WGRAD

    g = build_training_step(tiny, table_wise_round_robin(tiny, 2), UNFUSED)
    g.validate()
    dense = [n for n in g.rank_nodes(0) if n.phase == "backward" and n.stream is Stream.COMPUTE]
    dense = [n for n in dense if not n.name.startswith("emb_")]
    assert [(n.name, n.lane) for n in dense] == [
        ("top1_dgrad_bwd", 0),
        ("top1_wgrad_bwd", LANE_WGRAD),
        ("top0_dgrad_bwd", 0),
        ("top0_wgrad_bwd", LANE_WGRAD),
        ("interaction_bwd", 0),
        ("bottom1_dgrad_bwd", 0),
        ("bottom1_wgrad_bwd", LANE_WGRAD),
        ("bottom0_wgrad_bwd", LANE_WGRAD),  # no dgrad: the dense features need no gradient
    ]

    def deps(name):
        return [g.by_id[d].name for d in named(g, 0, name).deps]

    assert deps("top1_dgrad_bwd") == ["loss"]
    assert deps("top1_wgrad_bwd") == ["top1_dgrad_bwd"]
    assert deps("top0_dgrad_bwd") == ["top1_dgrad_bwd", "top1_wgrad_bwd"]  # contended
    assert deps("top0_wgrad_bwd") == ["top0_dgrad_bwd"]
    # The dot interaction's backward is a tensor-core kernel (HugeCTR's dotBasedInteractBwdKernel,
    # WMMA): a matrix product that fills the SMs, so it waits for top0's weight gradient as a dgrad
    # would, and the bottom MLP's dgrad after it has nothing more to wait for.
    assert deps("interaction_bwd") == ["top0_dgrad_bwd", "top0_wgrad_bwd"]
    assert deps("bottom1_dgrad_bwd") == ["interaction_bwd"]
    assert deps("bottom0_wgrad_bwd") == ["bottom1_dgrad_bwd"]
    # The bucket waits for the lane's last node and (HugeCTR's one NCCL communicator:
    # ``Runtime.all_reduces_after_exchange``) the backward all-to-all, the optimizer for it and the
    # chain's end.
    assert deps("allreduce_bucket0") == ["bottom0_wgrad_bwd", "a2a_bwd"]
    assert deps("dense_optimizer") == ["bottom1_dgrad_bwd", "bottom0_wgrad_bwd", "allreduce_bucket0"]
    # top0 (7 -> 6, reading the 7 outputs of HugeCTR's interaction and the zero column it writes
    # after them: 8 -> 6, ``Fused.dot_output_padding``): dX[4, 8] = dY[4, 6] W^T reads dY and W,
    # writes dX; dW[8, 6] += X^T dY reads X, dY and dW (beta = 1), writes dW: 2 x 4 x 8 x 6 = 384
    # FLOPs each, the undivided node's 768.
    d, w = named(g, 0, "top0_dgrad_bwd").op, named(g, 0, "top0_wgrad_bwd").op
    assert (d.op, d.flops, d.bytes_read, d.bytes_written, d.accumulates) == (
        "linear_dgrad",
        384,
        (24 + 48) * 4,
        32 * 4,
        False,
    )
    assert (w.op, w.flops, w.bytes_read, w.bytes_written, w.accumulates) == (
        "linear_wgrad",
        384,
        (32 + 24 + 48) * 4,
        48 * 4,
        True,
    )
    assert gemm_kernels(d) == (GemmShape(1, 4, 8, 6),) and gemm_kernels(w) == (GemmShape(1, 8, 6, 4, True),)
    b0 = named(g, 0, "bottom0_wgrad_bwd").op  # dW[4, 8] += X^T dY
    assert (b0.flops, b0.bytes_read, b0.accumulates) == (64 * 4, (16 + 32 + 32) * 4, True)
    # Every layer's gradient is ready after its weight gradient, in backward order.
    g = build_training_step(
        tiny, table_wise_round_robin(tiny, 2), BuildOptions(fuse_tables=False, bucket_bytes=1)
    )
    ready = [
        g.by_id[d].name for n in g.rank_nodes(0) if n.name.startswith("allreduce_bucket") for d in n.deps
    ]
    # The first bucket also waits for the backward all-to-all (HugeCTR's one NCCL communicator:
    # ``Runtime.all_reduces_after_exchange``).
    wgrads = [f"{x}_wgrad_bwd" for x in ("top1", "top0", "bottom1", "bottom0")]
    assert ready == [wgrads[0], "a2a_bwd", *wgrads[1:]]
    # The PyTorch runtimes keep a linear layer's backward one node on lane 0 (autograd's two GEMMs
    # on one stream, beta = 0).
    for runtime_name in ("eager", "cuda_graphs"):
        wl = tiny.model_copy(update={"training": tiny.training.model_copy(update={"runtime": runtime_name})})
        g = build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED)
        linear = [
            n for n in g.rank_nodes(0) if n.name in {"top1_bwd", "top0_bwd", "bottom1_bwd", "bottom0_bwd"}
        ]
        assert len(linear) == 4 and all(n.lane == 0 and not n.op.accumulates for n in linear)
        assert not any("_dgrad_bwd" in n.name or "_wgrad_bwd" in n.name for n in g.rank_nodes(0))


def test_only_matrix_products_wait_for_a_pending_weight_gradient(tiny):
    # What a weight gradient on LANE_WGRAD may run beside (``_dense_chain``): kernels that do not
    # fill the SMs with tensor-core tiles. A GEMM does, and so does the dot interaction's backward
    # (HugeCTR's dotBasedInteractBwdKernel: WMMA mma_sync, src/layers/interaction_layer.cu); a
    # concatenation's slices (no FLOPs) and a cross layer's fused_mul_fma3 (element-wise) do not.
    from recsim.graph.build import _fills_sms

    g = build_training_step(tiny, table_wise_round_robin(tiny, 2), UNFUSED)
    ops = {n.name: n.op for n in g.rank_nodes(0)}
    assert _fills_sms(ops["top0_dgrad_bwd"]) and _fills_sms(ops["top0_wgrad_bwd"])
    dot = ops["interaction_bwd"]
    assert (dot.op, dot.category) == ("dot_bwd", "interaction") and _fills_sms(dot)
    cat = Compute("cat_bwd", 0.0, 64.0, 64.0, "fp16", ((4, 8),), "interaction")
    fma3 = Compute("dcnv2_bwd", 96.0, 192.0, 64.0, "fp16", ((4, 8),), "elementwise")
    assert not _fills_sms(cat) and not _fills_sms(fma3)
    assert not _fills_sms(ops["loss"])


@pytest.mark.parametrize("runtime_name", ["fused", "eager"])
def test_the_cross_stacks_input_is_concatenated_by_the_framework(tiny, runtime_name):
    # A colleague's find: nothing concatenated the bottom MLP's output with the pooled embeddings
    # in front of the cross layers. HugeCTR (NVIDIA's MLPerf DLRM-DCNv2, samples/dlrm/train.py)
    # adds a Concat layer: concat_kernel copies both into one buffer forward and slices the
    # gradient back into theirs backward. TorchRec (torchrec/models/dlrm.py) runs SparseArch's
    # torch.cat of the tables' vectors and InteractionDCNArch's torch.cat with the bottom vector;
    # backward, cat's gradient is views, and split's backward (KeyedTensor.to_dict) a cat of the
    # tables' part. tiny: local batch 4, fp32 (16 B a sample and element), W = 12 = D 4 + F d 8.
    from recsim.graph.steps import chain_steps

    wl = _tiny_dcnv2(tiny, runtime_name)
    g = apply_runtime(chain_steps(build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED), 1), wl)
    nodes = {n.name.split("#")[0]: n for n in g.rank_nodes(0)}
    fwd, bwd = nodes["cross0_concat_fwd"].op, nodes["cross0_concat_bwd"].op
    assert (fwd.op, bwd.op) == ("cat", "cat_bwd")
    # The stack's first GEMM reads the concatenation; the embeddings' backward exchange waits for
    # the slices.
    assert nodes["cross0_concat_fwd"].id in nodes["cross0_v_fwd"].deps
    a2a_bwd = next(n for name, n in nodes.items() if name.startswith("a2a_bwd"))
    assert nodes["cross0_concat_bwd"].id in a2a_bwd.deps, [g.by_id[d].name for d in a2a_bwd.deps]
    if runtime_name == "fused":
        assert (fwd.kernels, fwd.bytes_read, fwd.bytes_written) == (1, 12 * 16, 12 * 16)
        assert (bwd.kernels, bwd.bytes_read, bwd.bytes_written) == (1, 12 * 16, 12 * 16)
    else:
        assert (fwd.kernels, fwd.bytes_read, fwd.bytes_written) == (2, 20 * 16, 20 * 16)
        assert (bwd.kernels, bwd.bytes_read, bwd.bytes_written) == (1, 8 * 16, 8 * 16)
        # The cross layer's gradients are ready before the slices: a bucket of its own (84
        # parameters) waits for its V projection's backward.
        one = BuildOptions(fuse_tables=False, bucket_bytes=84 * 4, first_bucket_bytes=84 * 4)
        g1 = build_training_step(wl, table_wise_round_robin(wl, 2), one)
        ready = [g1.by_id[d].name for n in g1.rank_nodes(0) if n.name.startswith("allreduce") for d in n.deps]
        assert ready == ["top0_bwd", "cross1_v_bwd", "cross0_v_bwd", "bottom0_bwd"]
        # Dispatched as part of the cross stack's units (the calibration's interaction piece is
        # the dot interaction's).
        host = [n.op.cpu_s for n in g.rank_nodes(0) if n.name.startswith("dispatch:cross0_concat")]
        assert host == [0.0, 0.0]


def test_pytorch_replaces_the_fused_cross_kernel_by_its_own_and_dispatches_two_gemms(tiny):
    # The eager runtime runs x0 * (x_l_w + bias) + x_l as separate kernels (``_cross_epilogue``:
    # 8 tensors forward, 13 backward) in place of HugeCTR's fused one, and dispatches each cross
    # layer as two Linears (one unit per GEMM node, none for the element-wise node).
    from recsim.graph.runtime import Eager
    from recsim.graph.steps import chain_steps

    wl = _tiny_dcnv2(tiny, "eager")
    g = apply_runtime(chain_steps(build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED), 1), wl)
    ops = {n.name.split("#")[0]: n.op for n in g.rank_nodes(0)}
    assert (ops["cross1_fwd"].op, ops["cross1_bwd"].op) == ("cross_elementwise", "cross_elementwise_bwd")
    assert ops["cross1_fwd"].bytes_read + ops["cross1_fwd"].bytes_written == 8 * 192
    assert ops["cross0_bwd"].bytes_read + ops["cross0_bwd"].bytes_written == 13 * 192
    # Each pass is a kernel of its own (a reviewer's find: they were priced as one kernel): add,
    # mul, add forward; two muls, the bias gradient's sum and two adds backward. A Linear's
    # backward epilogue is threshold_backward and the bias gradient's sum.
    assert (ops["cross1_fwd"].kernels, ops["cross1_bwd"].kernels) == (3, 5)
    assert ops["top0_epilogue_bwd"].kernels == 2 and ops["top0_epilogue_fwd"].kernels == 1
    host = defaultdict(list)  # forward, then backward
    for n in g.rank_nodes(0):
        if n.name.startswith("dispatch:cross0"):
            host[n.name.split("#")[0]].append(n.op.cpu_s)
    costs = Eager.costs
    assert (
        host["dispatch:cross0_v"]
        == host["dispatch:cross0_u"]
        == [costs.linear_forward_s, costs.linear_backward_s]
    )
    assert host["dispatch:cross0"] == [0.0, 0.0]


@pytest.mark.parametrize("runtime_name", ["eager", "cuda_graphs", "fused"])
def test_torch_ddp_copies_each_gradient_into_its_bucket_before_the_all_reduce(tiny, runtime_name):
    # A colleague's find: DDP's reducer copies each dense parameter's gradient into its bucket
    # (``at::mul_out(bucket_view, grad, 1 / world)``, c10d/reducer.cpp): TorchRec's
    # gradient_as_bucket_view=True saves only the copy back, and zero_grad's None gradients make the
    # copy run every step; the V100 TorchRec trace shows one aten::mul kernel per parameter tensor.
    # tiny, dcnv2: bottom 76 parameters (2 Linears), cross 2 x 84 (V, U, bias each), top 85; fp32.
    # DLE (apex DDP) and HugeCTR keep their own gradient buffers: no such node.
    from recsim.graph.steps import chain_steps

    wl = _tiny_dcnv2(tiny, runtime_name)
    one = BuildOptions(fuse_tables=False, bucket_bytes=84 * 4, first_bucket_bytes=84 * 4)
    g = apply_runtime(chain_steps(build_training_step(wl, table_wise_round_robin(wl, 2), one), 1), wl)
    nodes = {n.name.split("#")[0]: n for n in g.rank_nodes(0)}
    copies = {name: n for name, n in nodes.items() if name.endswith("_ddp_bucket_copy")}
    if runtime_name != "eager":
        assert not copies
        return
    assert sorted(copies) == sorted(
        f"{x}_ddp_bucket_copy" for x in ("top0", "top1", "cross1_v", "cross0_v", "bottom1", "bottom0")
    )
    cross = copies["cross0_v_ddp_bucket_copy"].op
    assert (cross.kernels, cross.bytes_read, cross.bytes_written, cross.dtype) == (3, 84 * 4, 84 * 4, "fp32")
    assert copies["bottom0_ddp_bucket_copy"].op.kernels == 2
    assert sum(n.op.bytes_read for n in copies.values()) == (76 + 2 * 84 + 85) * 4
    # Each copy follows its layer's gradient GEMMs, and the buckets' all-reduces wait for them.
    assert copies["cross0_v_ddp_bucket_copy"].deps == (nodes["cross0_v_bwd"].id,)
    ready = {
        g.by_id[d].name.split("#")[0]
        for n in g.rank_nodes(0)
        if n.name.startswith("allreduce")
        for d in n.deps
    }
    assert {"cross1_v_ddp_bucket_copy", "cross0_v_ddp_bucket_copy", "bottom0_ddp_bucket_copy"} <= ready


@pytest.mark.parametrize("fuse_tables", [True, False])
@pytest.mark.parametrize("runtime_name", ["eager", "cuda_graphs"])
def test_torch_ddp_copies_each_replicated_tables_gradient_into_its_bucket(tiny, runtime_name, fuse_tables):
    # A reviewer's find: only the dense layers' gradients got DDP's copy into their bucket, yet
    # TorchRec's DefaultDataParallelWrapper hands DDP every parameter not in
    # ``sharded_parameter_names``, which leaves out DATA_PARALLEL lookups: their dense TBE's weights
    # (one parameter per group of tables) get a fresh dense gradient (FBGEMM's ``zeros_like``) that
    # the reducer copies like the Linears'. fp16 tables (the copy is in the table's dtype, not the
    # fp32 dense gradients'), all replicated over 2 ranks: one copy of every table's elements when
    # fused, one per table unfused; the all-reduce waits for it. DLE (apex DDP): no such node.
    from recsim.graph.steps import chain_steps

    embedding = tiny.embedding.model_copy(update={"dtype": "fp16"})
    training = tiny.training.model_copy(update={"runtime": runtime_name})
    wl = tiny.model_copy(update={"training": training, "embedding": embedding})
    dims = {t.name: wl.table_dim(t) for t in wl.tables}
    shards = tuple(
        Shard(t.name, "data_parallel", 0, t.rows, 0, dims[t.name], (0, 1), "hbm") for t in wl.tables
    )
    step = build_training_step(wl, Plan(2, shards, strategy="dp"), BuildOptions(fuse_tables=fuse_tables))
    g = apply_runtime(chain_steps(step, 1), wl)
    copies = [n for n in g.rank_nodes(0) if n.name.startswith("emb_backward") and "_bucket_copy" in n.name]
    if runtime_name != "eager":
        assert not copies
        return
    assert len(copies) == (1 if fuse_tables else len(wl.tables))
    assert {(n.op.kernels, n.op.dtype) for n in copies} == {(1, "fp16")}
    elements = sum(t.rows * dims[t.name] for t in wl.tables)
    assert sum(n.op.bytes_read for n in copies) == sum(n.op.bytes_written for n in copies) == elements * 2.0
    lookups = {n.id for n in g.rank_nodes(0) if isinstance(n.op, Embedding) and n.op.pass_ == "backward"}
    for n in copies:
        (after,) = n.deps
        assert after in lookups
    waited = {d for n in g.rank_nodes(0) if n.name.startswith("dp_allreduce_bucket") for d in n.deps}
    assert waited & {n.id for n in copies}
    assert not waited & lookups  # the all-reduce no longer reads the gradient before its copy


@pytest.mark.parametrize("runtime_name", ["eager", "cuda_graphs"])
def test_torchrec_runs_the_dot_interaction_as_bmm_and_copies_and_dle_as_the_fused_kernel(tiny, runtime_name):
    # A reviewer's find: eager TorchRec was charged NVIDIA's one fused kernel each way. Its
    # InteractionArch (torchrec/models/dlrm.py) runs a bmm and four copies forward, two bmms and
    # ten element-wise kernels backward (``recsim.graph.runtime._torch_dot_interaction``). tiny,
    # local batch 4, fp32 (16 B a sample and element): f = 3 vectors of d = 4, 3 pairs, the bottom
    # MLP's D = 4, F = 2 tables. DLE's cuda_dot interaction keeps the fused pair.
    from recsim.graph.steps import chain_steps

    data = tiny.model_dump()
    data["training"]["runtime"] = runtime_name
    wl = type(tiny).model_validate(data)
    g = apply_runtime(chain_steps(build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED), 1), wl)
    ops = {n.name.split("#")[0]: n.op for n in g.rank_nodes(0)}
    if runtime_name == "cuda_graphs":
        assert (ops["interaction_fwd"].op, ops["interaction_bwd"].op) == ("dot", "dot_bwd")
        assert "interaction_copies_fwd" not in ops
        return

    def whole(name: str) -> tuple[int, float, float]:
        # The copies' last kernel is a node of its own (its launch comes last:
        # ``recsim.graph.runtime._Rewriter._overlap_launches``); together they are the copies.
        parts = [ops[name], ops[f"{name}_last_kernel"]]
        return (
            sum(o.kernels for o in parts),
            sum(o.bytes_read for o in parts),
            sum(o.bytes_written for o in parts),
        )

    bmm = ops["interaction_fwd"]
    assert (bmm.op, bmm.kernels, bmm.flops) == ("dot_bmm", 1, 4 * 2 * 3 * 3 * 4)
    assert (bmm.bytes_read, bmm.bytes_written) == (12 * 16, 9 * 16)  # f d in, the whole f x f out
    # SparseArch's cat (F d = 8), the cat with the bottom vector (12), the gather (3), the last cat (4 + 3).
    assert whole("interaction_copies_fwd") == pytest.approx((4, 30 * 16, 30 * 16), rel=1e-12)
    bmm = ops["interaction_bwd"]
    assert (bmm.kernels, bmm.flops) == (2, 2 * 4 * 2 * 3 * 3 * 4)
    assert (bmm.bytes_read, bmm.bytes_written) == (2 * (9 + 12) * 16, 2 * 12 * 16)
    # new_zeros (writes 9), contiguous (3 -> 3), index_put_'s scatter (reads 3 + 3, writes 3) and
    # four index kernels, the add of the bmm gradients (24 -> 12), the bottom vector's (8 -> 4),
    # split's backward cat (8 -> 8): cat's own backward is a view, no kernel.
    assert whole("interaction_copies_bwd") == pytest.approx((10, 49 * 16, 39 * 16), rel=1e-12)
    # The nodes after the interaction wait for its copies (their last kernel), forward and backward.
    ids = {n.name.split("#")[0]: n.id for n in g.rank_nodes(0)}
    deps = {n.name.split("#")[0]: n.deps for n in g.rank_nodes(0)}
    assert ids["interaction_copies_fwd_last_kernel"] in deps["top0_fwd"]
    assert deps["interaction_copies_bwd"] == (ids["interaction_bwd"],)
    assert ids["interaction_copies_bwd"] in deps["interaction_copies_bwd_last_kernel"]
    waiting = [name for name, d in deps.items() if ids["interaction_copies_bwd_last_kernel"] in d]
    assert waiting and all(ids["interaction_bwd"] not in deps[name] for name in waiting)
    assert [name for name, d in deps.items() if ids["interaction_bwd"] in d] == ["interaction_copies_bwd"]


@pytest.mark.parametrize(
    ("optimizer", "kernels", "read", "written"), [("adagrad", 4, 7, 4), ("sgd", 1, 2, 1)]
)
def test_torchrec_steps_the_dense_parameters_with_torch_optims_for_loop(
    tiny, optimizer, kernels, read, written
):
    # A reviewer's find: eager TorchRec's dense Adagrad was one fused kernel reading 3 and writing 2
    # fp32 tensors. torch.optim's for-loop (the implementation the eager host costs are measured
    # on) runs addcmul_, sqrt, add_ and addcdiv_ per tensor: reads 7, writes 4. tiny: 131 dense
    # parameters in 8 tensors (a weight and a bias per Linear). The fused runtime keeps one kernel.
    from recsim.graph.steps import chain_steps

    for runtime_name in ("eager", "fused"):
        data = tiny.model_dump()
        data["training"].update(runtime=runtime_name, optimizer=optimizer)
        wl = type(tiny).model_validate(data)
        g = apply_runtime(chain_steps(build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED), 1), wl)
        # Eager: the step's last kernel is a node of its own (its launch comes last:
        # ``recsim.graph.runtime._Rewriter._overlap_launches``); together they are the step.
        parts = [n.op for n in g.rank_nodes(0) if n.name.startswith("dense_optimizer")]
        assert len(parts) == (2 if runtime_name == "eager" else 1)
        step = tuple(sum(getattr(op, f) for op in parts) for f in ("kernels", "bytes_read", "bytes_written"))
        state = {"adagrad": 1, "sgd": 0}[optimizer]
        if runtime_name == "fused":  # with the padding column's weights (``PADDED_PARAMS``)
            assert step == (1, (2 + state) * PADDED_PARAMS * 4, (1 + state) * PADDED_PARAMS * 4)
        else:
            assert step == pytest.approx((8 * kernels, read * 524, written * 524), rel=1e-12)


def test_hugectr_sorts_the_backward_indices_on_a_side_lane_after_the_embedding_forward(tiny):
    # HugeCTR's embedding collection with intra-iteration overlap runs the backward's index
    # calculation on its "dp" stream after the embedding forward, beside the dense forward and
    # backward; the embedding backward (mp_local_reduce) waits for it (model_pipeline.cpp). tiny's
    # tables are HBM with a sorting optimizer: each backward lookup gets one sort on LANE_INDEX.
    from recsim.graph.build import LANE_INDEX
    from recsim.graph.ir import Stream

    wl = _tiny_dcnv2(tiny)
    g = build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED)
    g.validate()
    for rank in (0, 1):
        nodes = list(g.rank_nodes(rank))
        forward = [n.id for n in nodes if n.name.startswith("emb_forward")]
        backward = [n for n in nodes if n.name.startswith("emb_backward")]
        sorts = [n for n in nodes if n.name.startswith("emb_index_sort")]
        assert forward and len(sorts) == len(backward) == 1
        (sort,), (bwd,) = sorts, backward
        assert sort.name == bwd.name.replace("emb_backward", "emb_index_sort")
        assert (sort.stream, sort.lane, sort.phase) == (Stream.COMPUTE, LANE_INDEX, "backward")
        assert sorted(sort.deps) == sorted(forward)  # the embedding forward only, not the dense part
        assert (sort.op.pass_, sort.op.presorted, bwd.op.presorted) == ("sort", False, True)
        assert sort.id in bwd.deps
        # Nothing else of the rank runs on that lane.
        assert [n.id for n in nodes if n.lane == LANE_INDEX and n.stream is Stream.COMPUTE] == [sort.id]
    # PyTorch's runtimes sort inside the backward lookup, on the compute stream's one lane.
    wl = _tiny_dcnv2(tiny, "eager")
    g = build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED)
    assert not [n for n in g.nodes if n.name.startswith("emb_index_sort")]
    assert {n.lane for n in g.nodes if n.stream is Stream.COMPUTE} == {0}
    assert all(not n.op.presorted for n in g.nodes if n.name.startswith("emb_backward"))


def test_the_input_all_to_all_and_h2d_copy_carry_ids_of_the_workloads_index_dtype(tiny):
    # A reviewer's find: ids were always 8 B (int64), but the MLPerf DLRM-DCNv2 reference's loader
    # carries int32 ids (multi_hot_criteo.py) and HugeCTR's raw format uint32 ones. tiny: local
    # batch 4; table a (pooling 2) on rank 0, b (pooling 3) on rank 1; int32 lengths, one per sample
    # and table; 4 fp32 dense features.
    for dtype, width in (("int64", 8), ("int32", 4)):
        data = tiny.model_dump()
        data["training"]["index_dtype"] = dtype
        wl = type(tiny).model_validate(data)
        g = build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED)
        inp = named(g, 0, "input_dist").op
        assert inp.send_bytes == (2 * 4 * width + 4 * 4, 3 * 4 * width + 4 * 4), dtype
        h2d = named(g, 0, "h2d_next_batch").op
        assert h2d.bytes == 4 * 4 * 4 + (2 + 3) * 4 * width + 2 * 4 * 4, dtype


def test_an_unknown_index_dtype_is_refused_with_the_choices(tiny):
    data = tiny.model_dump()
    data["training"]["index_dtype"] = "int16"
    with pytest.raises(ValueError, match="index_dtype must be int32 or int64"):
        type(tiny).model_validate(data)


def test_the_mlperf_workloads_carry_int32_ids_and_the_others_int64():
    lib = WorkloadLibrary()
    assert lib.workload("dlrm-dcnv2").training.index_dtype == "int32"
    assert lib.workload("dlrm-mlperf").training.index_dtype == "int32"
    assert lib.workload("dlrm-benchmark").training.index_dtype == "int64"


def test_a_concatenations_backward_slices_its_gradient_back_once(tiny):
    # HugeCTR's concat_kernel(forward=false) (src/layers/concat_layer.cu): ``in[i] = out[o]``, the
    # forward's copy the other way. A reviewer's find: it was charged twice the forward's bytes both
    # ways. tiny as a cat model: bottom output 4 + two tables of 4 = 12 wide, local batch 4, fp32.
    data = tiny.model_dump()
    data["interaction"] = {"type": "cat"}
    wl = type(tiny).model_validate(data)
    g = build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED)
    fwd, bwd = named(g, 0, "interaction_fwd").op, named(g, 0, "interaction_bwd").op
    size = 4 * 12 * 4
    assert (fwd.bytes_read, fwd.bytes_written) == (size, size)
    assert (bwd.bytes_read, bwd.bytes_written) == (size, size) and bwd.flops == 0.0


@pytest.mark.parametrize("runtime_name", ["fused", "eager", "cuda_graphs"])
def test_a_pytorch_concatenations_backward_launches_no_kernel(tiny, runtime_name):
    # torch.cat's backward is ``cat_tensors_backward`` (torch/csrc/autograd/FunctionsManual.cpp,
    # tools/autograd/derivatives.yaml): ``narrow`` views of the output's gradient, no kernel; the
    # bottom MLP's last layer and the exchange read their slices of it where the top MLP's first
    # layer wrote it. HugeCTR's concat layer copies them out (``concat_kernel(forward=false)``).
    # A reviewer's find: every runtime was charged HugeCTR's kernel.
    data = tiny.model_dump()
    data["interaction"] = {"type": "cat"}
    data["training"]["runtime"] = runtime_name
    wl = type(tiny).model_validate(data)
    g = build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED)
    names = {n.name: n for n in g.rank_nodes(0)}
    top_first = next(x.name for x in wl.dense_layers if x.part == "top")
    bottom_last = [x.name for x in wl.dense_layers if x.part == "bottom"][-1]
    # HugeCTR's linear backward is its dgrad then its async wgrad (``_async_linear_ops``)
    fused = runtime_name == "fused"
    after_top = names[f"{top_first}_dgrad_bwd" if fused else f"{top_first}_bwd"].id
    assert named(g, 0, "interaction_fwd").op.op == "cat"  # the forward copies either way
    if fused:
        cat = named(g, 0, "interaction_bwd")
        assert cat.op.op == "cat_bwd" and cat.deps == (after_top,)
        # the bottom MLP's dgrad GEMM also waits for the top MLP's last weight gradient
        assert names[f"{bottom_last}_dgrad_bwd"].deps == (cat.id, names[f"{top_first}_wgrad_bwd"].id)
    else:
        assert "interaction_bwd" not in names
        assert names[f"{bottom_last}_bwd"].deps == (after_top,)
        a2a = [n for n in g.rank_nodes(0) if n.name.startswith("a2a_bwd")]
        assert a2a and all(after_top in n.deps for n in a2a)
    from recsim.graph.steps import chain_steps

    ran = apply_runtime(chain_steps(g, 1), wl)
    cats = [n for n in ran.nodes if isinstance(n.op, Compute) and n.op.op == "cat_bwd"]
    assert len(cats) == (ran.ranks if runtime_name == "fused" else 0)


@pytest.mark.parametrize(("runtime_name", "width"), [("fused", 8), ("cuda_graphs", 8), ("eager", 7)])
def test_the_top_mlp_reads_the_zero_columns_its_dot_interaction_writes(tiny, runtime_name, width):
    # tiny's dot interaction writes the bottom MLP's 4 values and 3 pairs. HugeCTR's writes one zero
    # column after them (interaction_layer.cu: ``in_w + concat_len + 1``) and DLE's pads to a
    # multiple of 8 (dlrm/nn/interactions.py ``padding_size``), and their top MLPs are built on
    # that width; TorchRec's over-arch reads the 7 values as they are. The padding decides whether
    # the top MLP's GEMMs are aligned (DLRM v1: 479 -> 480, ``compute.narrow_loads``).
    wl = tiny.model_copy(update={"training": tiny.training.model_copy(update={"runtime": runtime_name})})
    g = build_training_step(wl, table_wise_round_robin(wl, 2), UNFUSED)
    top0 = named(g, 0, "top0_fwd").op
    assert top0.shapes == ((4, width), (width, 6)) and top0.flops == 2 * 4 * width * 6
    assert named(g, 0, "top1_fwd").op.shapes == ((4, 6), (6, 1))  # only the layer after the dot
    # Its weight has a column per zero input (DLE zero-initialises them, HugeCTR's layer is built on
    # the padded width): the gradient all-reduce, the optimizer and the planner's dense memory
    # count those weights as the GEMMs do.
    params = wl.dense_parameters + (width - 7) * 6
    assert sum(x.params for x in trained_dense_layers(wl)) == params
    buckets = [n.op for n in g.rank_nodes(0) if n.name.startswith("allreduce_bucket")]
    assert sum(op.bytes for op in buckets) == params * DTYPE_BYTES[buckets[0].dtype]
    state = OPTIMIZER_STATE[wl.training.optimizer]
    assert named(g, 0, "dense_optimizer").op.bytes_read == (2 + state) * params * 4.0
    assert dense_weight_bytes(wl) == params * 4.0 * (2 + state)
    assert runtime("fused").dot_output_padding(479) == runtime("cuda_graphs").dot_output_padding(479) == 1
    assert (
        runtime("fused").dot_output_padding(473) == 1 and runtime("cuda_graphs").dot_output_padding(473) == 7
    )
    assert runtime("eager").dot_output_padding(479) == 0
