"""Model-parallel bottom MLP (Plan.bottom_rank) and the cuda_graphs runtime (NVIDIA DLE's DLRM)."""

from dataclasses import replace

import pytest

from recsim.api import make_plan, prepare
from recsim.engine.simulate import SimulationOptions, simulate_training
from recsim.errors import ConfigError, InfeasibleError
from recsim.graph.build import BuildOptions, build_training_step, trained_dense_layers
from recsim.graph.ir import Collective, Compute, Host, Stream
from recsim.graph.runtime import apply_runtime
from recsim.graph.steps import chain_steps
from recsim.planner.io import plan_from_dict, plan_to_dict
from recsim.planner.plan import dle_buckets, table_wise_mp_bottom
from recsim.planner.storage import plan_usage

BATCH = 8192


def _setup(runtime: str = "fused"):
    system, workload = prepare(
        "dgx-a100",
        "dlrm-mlperf",
        batch_size=BATCH,
        precision="fp16",
        overrides=[f"workload.training.runtime={runtime}"],
    )
    return system, workload, make_plan("table_wise_mp_bottom", workload, system)


def test_dle_buckets_close_small_buckets_first():
    # Largest first into the open bucket with the fewest rows; a bucket closes at ceil(T / K)
    # tables and takes the next rank number, the ones still open come last.
    assert dle_buckets([100, 1, 2, 3, 50], 2) == [[4, 3, 2], [0, 1]]
    assert dle_buckets([5, 5, 5, 5], 4) == [[0], [1], [2], [3]]
    sizes = [7, 300, 12, 1, 90, 44, 2, 2, 6000]
    buckets = dle_buckets(sizes, 3)
    assert sorted(i for b in buckets for i in b) == list(range(len(sizes)))
    assert max(len(b) for b in buckets) == 3


def test_plan_puts_the_bottom_on_rank_zero_and_the_tables_on_the_others_like_dle():
    _, workload, plan = _setup()
    assert plan.bottom_rank == 0
    # DLE's get_device_mapping on more than four GPUs: the tables in dle_buckets over the other
    # seven, rank 0 holding the bottom MLP alone.
    assert not plan.shards_on(0)
    assert {r for s in plan.shards for r in s.ranks} == set(range(1, 8))
    expected = dle_buckets([t.rows for t in workload.tables], 7)
    for rank, bucket in enumerate(expected, start=1):
        assert sorted(s.table for s in plan.shards_on(rank)) == sorted(
            workload.tables[i].name for i in bucket
        )
    plan.validate(workload)
    with pytest.raises(InfeasibleError, match="bottom-MLP rank 8"):
        replace(plan, bottom_rank=8).validate(workload)
    # On four GPUs or fewer every rank holds tables, rank 0 the first bucket to fill; from five
    # on rank 0 holds none.
    small = table_wise_mp_bottom(workload, 4)
    assert small.bottom_rank == 0 and small.shards_on(0)
    assert {r for s in small.shards for r in s.ranks} == set(range(4))
    five = table_wise_mp_bottom(workload, 5)
    assert five.bottom_rank == 0 and not five.shards_on(0)
    assert {r for s in five.shards for r in s.ranks} == set(range(1, 5))
    # A model without a bottom MLP has no rank to keep free.
    flat = table_wise_mp_bottom(workload.model_copy(update={"bottom_mlp": []}), 8)
    assert flat.bottom_rank is None and flat.shards_on(0)


def test_plan_files_carry_the_bottom_rank_and_old_files_still_load():
    _, _, plan = _setup()
    data = plan_to_dict(plan)
    assert data["bottom_rank"] == 0
    assert plan_from_dict(data) == plan
    del data["bottom_rank"]
    assert plan_from_dict(data).bottom_rank is None
    with pytest.raises(ConfigError, match="bottom_rank"):
        plan_from_dict({**plan_to_dict(plan), "bottom_rank": -1}, "p.json")


def test_bottom_runs_once_on_the_whole_batch_and_travels_in_the_all_to_all():
    _, workload, plan = _setup()
    graph = build_training_step(workload, plan)
    bottom = [n for n in graph.nodes if n.name.startswith("bottom")]
    assert {n.rank for n in bottom} == {0}
    assert len(bottom) == 2 * len(workload.bottom_mlp)
    for n in bottom:
        assert isinstance(n.op, Compute) and n.op.shapes[0][0] == BATCH  # the global batch
    # Rank 0 sends each rank its samples' bottom outputs next to its tables' pooled vectors (fp16
    # wire: the fused runtime's default under mixed precision).
    assert plan.comm_dtype == "fp16"
    (a2a,) = (n for n in graph.nodes if n.rank == 0 and n.name == "a2a_fwd")
    assert isinstance(a2a.op, Collective) and a2a.op.send_bytes is not None
    width = workload.bottom_mlp[-1]
    vectors = sum(s.col_end - s.col_start for s in plan.shards_on(0)) + width
    assert a2a.op.send_bytes == tuple(BATCH // 8 * vectors * 2.0 for _ in range(8))
    # Its weights are not all-reduced: the buckets hold the other dense layers' gradients only.
    buckets = {n.op.key: n.op.bytes for n in graph.nodes if n.rank == 1 and n.name.startswith("allreduce")}
    bottom_params = sum(x.params for x in workload.dense_layers if x.part == "bottom")
    # (The dense parameters as HugeCTR trains them: the top MLP's padded layer's weights too.)
    trained = sum(x.params for x in trained_dense_layers(workload))
    assert sum(buckets.values()) == pytest.approx((trained - bottom_params) * 2.0)
    # The bottom backward waits for the gradients the backward all-to-all brings back.
    (a2a_bwd,) = (n for n in graph.nodes if n.rank == 0 and n.name == "a2a_bwd")
    first_bwd = next(
        n for n in graph.nodes if n.rank == 0 and n.name == f"bottom{len(workload.bottom_mlp) - 1}_bwd"
    )
    assert a2a_bwd.id in first_bwd.deps


def test_cuda_graphs_syncs_each_step_and_runs_unfused_epilogues():
    system, workload, plan = _setup("cuda_graphs")
    sim = simulate_training(system, workload, plan, SimulationOptions(steps=3))
    assert sim.graph is not None and sim.schedule is not None
    graph, schedule = sim.graph, sim.schedule
    stride = graph.metadata["step_stride"]
    assert not any(isinstance(n.op, Host) and n.op.op.startswith("dispatch") for n in graph.nodes)
    assert any("_epilogue_" in n.name for n in graph.nodes)
    syncs = [n for n in graph.nodes if isinstance(n.op, Host) and n.op.op == "sync:step"]
    assert len(syncs) == 2 * graph.ranks  # steps 1 and 2
    for sync in syncs:
        step, rank = sync.id // stride, sync.rank
        before = [
            n
            for n in graph.nodes
            if n.rank == rank and n.id // stride == step - 1 and n.stream is not Stream.HOST
        ]
        after = [
            n
            for n in graph.nodes
            if n.rank == rank and n.id // stride == step and n.stream is not Stream.HOST
        ]
        done = max(schedule.finish_s[n.id] for n in before)
        assert min(schedule.start_s[n.id] for n in after) >= done - 1e-15
    fused = simulate_training(system, replace_runtime(workload, "fused"), plan, SimulationOptions()).result
    assert sim.result.iteration_time_s > fused.iteration_time_s


def replace_runtime(workload, name):
    return workload.model_copy(update={"training": workload.training.model_copy(update={"runtime": name})})


def test_epilogues_follow_the_model_not_the_plan():
    _, workload, plan = _setup("eager")
    graph = apply_runtime(chain_steps(build_training_step(workload, plan), 1), workload)
    linears = [x for x in workload.dense_layers if x.op == "linear"]
    epilogues = [n for n in graph.nodes if "_epilogue_" in n.name]
    # Every Linear but the last has a ReLU pass forward and backward, wherever the layer runs.
    assert len(epilogues) == 2 * (
        len(workload.bottom_mlp) + 8 * (len(linears) - len(workload.bottom_mlp) - 1)
    )


def test_pytorch_casts_only_the_tables_vectors_not_the_fp16_bottom_output():
    # fp32 tables, fp16 dense and wire (DLE AMP): rank 0 quantises its tables' pooled vectors but
    # sends the bottom MLP's fp16 output as it is, and dequantises only the tables' gradients.
    # On four ranks rank 0 holds tables and the bottom MLP (DLE's get_device_mapping).
    _, workload, eight = _setup("cuda_graphs")
    plan = table_wise_mp_bottom(workload, 4)
    graph = apply_runtime(chain_steps(build_training_step(workload, plan), 1), workload)
    b = BATCH // 4
    tables = sum(s.col_end - s.col_start for s in plan.shards_on(0)) * b * 4 * 2.0
    (quant,) = (n for n in graph.nodes if n.rank == 0 and n.name.startswith("quantise:a2a_fwd"))
    (dequant,) = (n for n in graph.nodes if n.rank == 0 and n.name.startswith("dequantise:a2a_bwd"))
    assert isinstance(quant.op, Compute) and isinstance(dequant.op, Compute)
    assert quant.op.bytes_written == pytest.approx(tables)
    assert quant.op.bytes_read == pytest.approx(2 * tables)
    assert dequant.op.bytes_read == pytest.approx(tables)
    assert dequant.op.bytes_written == pytest.approx(2 * tables)
    # On eight, rank 0 sends only the fp16 bottom outputs: nothing to cast.
    graph = apply_runtime(chain_steps(build_training_step(workload, eight), 1), workload)
    assert not [n for n in graph.nodes if n.rank == 0 and "quantise:" in n.name]
    assert [n for n in graph.nodes if n.rank == 1 and n.name.startswith("quantise:a2a_fwd")]


@pytest.mark.parametrize(("precision", "wire_bytes"), [("fp16", 2.0), ("tf32", 4.0)])
def test_dle_copies_the_exchange_payload_around_its_all_to_alls(precision, wire_bytes):
    # DLE's BottomToTop: torch.cat of the receive buffers after the forward all-to-all and
    # .contiguous() of the gradient's slices before the backward one, on every rank, of what the
    # rank receives and sends; before that, autograd adds the bottom MLP slice's gradient (a zero
    # tensor of the whole payload with the slice in it) into the interaction's. The fused runtime
    # (HugeCTR) and TorchRec's eager one do none of it, nor do row-wise exchanges.
    system, workload = prepare(
        "dgx-a100",
        "dlrm-mlperf",
        batch_size=BATCH,
        precision=precision,
        overrides=["workload.training.runtime=cuda_graphs"],
    )
    plan = make_plan("table_wise_mp_bottom", workload, system)
    graph = apply_runtime(chain_steps(build_training_step(workload, plan), 1), workload)
    by_name = {(n.rank, n.name): n for n in graph.nodes}
    payload = BATCH // 8 * (26 + 1) * 128 * wire_bytes  # each rank's samples: 26 tables + bottom
    for rank in range(8):
        a2a_fwd, a2a_bwd = by_name[(rank, "a2a_fwd#0")], by_name[(rank, "a2a_bwd#0")]
        cat, contiguous = by_name[(rank, "cat:a2a_fwd#0")], by_name[(rank, "contiguous:a2a_bwd#0")]
        accumulate = by_name[(rank, "grad_accumulate:a2a_bwd#0")]
        assert {cat.stream, contiguous.stream, accumulate.stream} == {Stream.COMPUTE}
        assert cat.deps == (a2a_fwd.id,) and a2a_bwd.deps == (contiguous.id,)
        assert contiguous.deps == (accumulate.id,)
        assert any(n.name.startswith("interaction_bwd") for n in graph.nodes if n.id in accumulate.deps)
        assert a2a_fwd.op.dtype == a2a_bwd.op.dtype == ("fp16" if precision == "fp16" else "fp32")
        assert (
            cat.op.bytes_read == cat.op.bytes_written == sum(a2a_fwd.op.recv_bytes) == pytest.approx(payload)
        )
        assert contiguous.op.bytes_read == contiguous.op.bytes_written == pytest.approx(payload)
        assert accumulate.op.bytes_read == accumulate.op.bytes_written == pytest.approx(2 * payload)
        # What read the exchanged vectors now reads the concatenated copy.
        assert any(
            cat.id in n.deps for n in graph.nodes if n.rank == rank and n.name.startswith("interaction")
        )
        # A rank that casts its tables' gradients back to fp32 does so after the exchange.
        dequantise = by_name.get((rank, "dequantise:a2a_bwd#0"))
        assert (dequantise is not None) == (precision == "fp16" and rank > 0)
        if dequantise is not None:
            assert dequantise.deps == (a2a_bwd.id,)
    copies = ("cat:", "contiguous:", "grad_accumulate:")
    for name in ("fused", "eager"):
        other = replace_runtime(workload, name)
        rewritten = apply_runtime(chain_steps(build_training_step(other, plan), 1), other)
        assert not [n for n in rewritten.nodes if n.name.startswith(copies)]
    rows = make_plan("row_wise", workload, system)
    rewritten = apply_runtime(chain_steps(build_training_step(workload, rows), 1), workload)
    assert [n for n in rewritten.nodes if n.name.startswith("rw_")]
    assert not [n for n in rewritten.nodes if n.name.startswith(copies) and "rw_" in n.name]


def test_the_bottom_rank_holds_the_bottom_outputs_of_the_whole_batch():
    system, workload, plan = _setup()
    usage = plan_usage(plan, workload, system)
    base = plan_usage(replace(plan, bottom_rank=None), workload, system)
    b = BATCH // 8
    outputs = 2.0 * sum(x.out_features for x in workload.dense_layers if x.part == "bottom")  # fp16
    assert usage.hbm_by_rank[0] - base.hbm_by_rank[0] == pytest.approx((BATCH - b) * outputs)
    weights = sum(x.params for x in workload.dense_layers if x.part == "bottom") * 4.0 * 2  # sgd: w, g
    assert base.hbm_by_rank[1] - usage.hbm_by_rank[1] == pytest.approx(b * outputs + weights)


def test_a_single_gpu_runs_no_exchange_kernels():
    # One GPU has no process group (DLE builds none for one GPU): its one-rank "exchanges" move
    # nothing, so neither DLE's payload copies nor the wire casts run around them.
    system, workload = prepare(
        "dgx-a100",
        "dlrm-mlperf",
        batch_size=BATCH // 8,
        precision="fp16",
        overrides=["workload.training.runtime=cuda_graphs", "node.accelerators.count=1"],
    )
    plan = make_plan("table_wise", workload, system)
    graph = apply_runtime(
        chain_steps(build_training_step(workload, plan, BuildOptions(comm_dtype="fp16")), 1), workload
    )
    kernels = ("cat:", "contiguous:", "grad_accumulate:", "quantise:", "dequantise:")
    assert [n for n in graph.nodes if n.name.startswith("a2a_fwd")]
    assert not [n for n in graph.nodes if n.name.startswith(kernels)]
