"""Framework runtimes: the eager host model's constants, its graph pass and what it does to a step."""

from dataclasses import replace
from pathlib import Path

import pytest

from recsim.api import make_plan, prepare, simulate
from recsim.cost.model import CostModel
from recsim.engine.simulate import SimulationOptions, simulate_training
from recsim.errors import ConfigError
from recsim.graph.build import build_training_step, trained_dense_layers
from recsim.graph.eager_calibration import TORCHREC_V100, host_bound_step_s, measure_eager_costs
from recsim.graph.ir import Collective, Compute, Embedding, ExecutionGraph, Host, Node, Stream
from recsim.graph.runtime import RUNTIMES, _Rewriter, _Style, apply_runtime, runtime
from recsim.graph.schedule import asap_schedule
from recsim.graph.steps import chain_steps

TRACES = Path(__file__).resolve().parents[1] / "data" / "traces" / "param_dlrm_kineto"
DOT = [
    "workload.interaction.type=dot",
    "workload.interaction.layers=null",
    "workload.interaction.low_rank=null",
]


def _setup(runtime_name: str, batch: int, extra: list[str] | None = None):
    sets = [f"workload.training.runtime={runtime_name}", *(extra or [])]
    system, workload = prepare(
        "p4d-24xlarge", "dlrm-dcnv2", batch_size=batch, precision="fp32", overrides=sets
    )
    return system, workload, make_plan("table_wise", workload, system)


def test_shipped_constants_are_the_trace_measurement():
    measured = measure_eager_costs(sorted(TRACES.glob("*.json.gz")))
    for field, value in TORCHREC_V100.__dict__.items():
        assert value == pytest.approx(getattr(measured, field), rel=0.02, abs=1e-6), field


def test_the_traced_model_reproduces_its_host_bound_step():
    # In-sample check of the pass (the constants come from these traces): the traced TorchRec DLRM
    # (26 one-hot tables of dim 16, bottom 256-128-16, top 512-512-256-1, Adagrad, 16 samples per
    # V100) is host-bound, so its step is the dispatch chain plus what little the GPU adds.
    measured = host_bound_step_s(sorted(TRACES.glob("*.json.gz")))
    sets = [
        *(f"workload.tables[{i}].pooling=1" for i in range(26)),
        "workload.embedding.dim=16",
        "workload.bottom_mlp=[256,128,16]",
        "workload.top_mlp=[512,512,256,1]",
        *DOT,
        "workload.training.optimizer=adagrad",
        "workload.training.embedding_optimizer=rowwise_adagrad",
        "workload.training.runtime=eager",
    ]
    result = simulate(
        "dgx-1-v100", "dlrm-dcnv2", batch_size=128, precision="fp32", plan="table_wise", overrides=sets
    )
    assert measured == pytest.approx(12.6e-3, rel=0.02)
    assert result.iteration_time_s == pytest.approx(measured, rel=0.05)


def test_registry_and_unknown_runtime():
    assert {"fused", "eager"} <= set(RUNTIMES)
    with pytest.raises(ConfigError, match="unknown runtime 'jit'"):
        runtime("jit")
    with pytest.raises(ConfigError, match="runtime"):
        prepare("p4d-24xlarge", "dlrm-dcnv2", overrides=["workload.training.runtime=jit"])


def test_fused_leaves_the_graph_alone():
    _, workload, plan = _setup("fused", 2048)
    graph = chain_steps(build_training_step(workload, plan), 2)
    assert apply_runtime(graph, workload) is graph


def test_eager_dispatches_every_gpu_node_and_keeps_steps_contiguous():
    _, workload, plan = _setup("eager", 2048, DOT)
    chained = chain_steps(build_training_step(workload, plan), 3)
    graph = apply_runtime(chained, workload)
    gpu = [n for n in graph.nodes if n.stream is not Stream.HOST]
    epilogues = [n for n in gpu if "_epilogue_" in n.name]
    # TorchRec's dot interaction: its products in the builder's node, its copies in one more
    # (``_torch_dot_interaction``), forward and backward, per rank and step.
    copies = [n for n in gpu if n.name.startswith("interaction_copies_") and "_last_kernel" not in n.name]
    assert len(copies) == 2 * 3 * graph.ranks
    # The last kernel of a multi-kernel node that its dispatch launches runs after the last launch
    # (``_Rewriter._overlap_launches``): the interaction's copies, forward and backward, and the
    # dense optimizer's for-loop steps, per rank and step.
    last = [n for n in gpu if n.name.endswith(tuple(f"_last_kernel#{s}" for s in range(3)))]
    assert sorted({n.name.split("#")[0] for n in last}) == [
        "dense_optimizer_last_kernel",
        "interaction_copies_bwd_last_kernel",
        "interaction_copies_fwd_last_kernel",
    ]
    assert len(last) == 3 * 3 * graph.ranks
    # DDP's copies of each dense layer's gradients into their bucket (``_ddp_bucket_copy``): 8
    # Linears, per rank and step.
    buckets = [n for n in gpu if "_ddp_bucket_copy" in n.name]
    assert len(buckets) == 8 * 3 * graph.ranks
    assert len(gpu) - len(epilogues) - len(copies) - len(buckets) - len(last) == sum(
        1 for n in chained.nodes if n.stream is not Stream.HOST
    )
    # Eager PyTorch runs ReLU (and its backward with the bias gradient) as separate kernels: every
    # Linear but the last (bottom 3 + top 4 of 5) has one forward and one backward, per rank and step.
    assert len(epilogues) == 2 * 7 * 3 * graph.ranks
    ids = {n.id: n for n in graph.nodes}
    stride = graph.metadata["step_stride"]
    for n in gpu:
        # The dot interaction's copies follow its products as a forward epilogue follows its
        # GEMM: their CPU time is in the interaction's dispatch share (the calibration's piece).
        followers = ("_epilogue_fwd", "interaction_copies_", "_ddp_bucket_copy", "_last_kernel")
        if n.phase in ("forward", "backward") and not any(f in n.name for f in followers):
            launches = [
                ids[d] for d in n.deps if isinstance(ids[d].op, Host) and ids[d].op.op.startswith("dispatch:")
            ]
            # A layer's backward waits for its activation gradient, which waits for the dispatch.
            behind_epilogue = any("_epilogue_bwd" in ids[d].name for d in n.deps)
            assert len(launches) == (0 if behind_epilogue else 1), n.name
            assert all(x.id // stride == n.id // stride for x in launches)
        for d in n.deps:
            assert d // stride <= n.id // stride  # nothing depends on a later step
    # Each rank and step has two interaction syncs (dot: forward and backward) and an input-dist one.
    syncs = [n for n in graph.nodes if isinstance(n.op, Host) and n.op.op.startswith("sync:")]
    assert len(syncs) == 3 * 3 * graph.ranks
    system = prepare("p4d-24xlarge", "dlrm-dcnv2")[0]
    schedule = asap_schedule(graph, CostModel(system, workload).duration_s)  # schedulable: no cycle
    assert schedule.makespan_s > 0


def test_backward_is_dispatched_after_the_input_dist_sync():
    system, workload, plan = _setup("eager", 2048)
    sim = simulate_training(system, workload, plan, SimulationOptions(steps=2))
    assert sim.graph is not None and sim.schedule is not None
    finish, start = sim.schedule.finish_s, sim.schedule.start_s
    ids = {n.id: n for n in sim.graph.nodes}
    syncs = [n for n in sim.graph.nodes if isinstance(n.op, Host) and n.op.op == "sync:input_dist_splits"]
    assert syncs
    for sync in syncs:
        (dist,) = sync.deps
        assert start[sync.id] >= finish[dist] - 1e-15
    for n in sim.graph.nodes:
        if n.phase == "backward" and n.stream is not Stream.HOST:
            if any("_epilogue_bwd" in ids[d].name for d in n.deps):
                continue  # its activation-gradient kernel carries the dispatch
            if "_ddp_bucket_copy" in n.name:
                continue  # DDP's hook runs it after the layer's gradients, dispatched with them
            (launch,) = (
                ids[d] for d in n.deps if isinstance(ids[d].op, Host) and ids[d].op.op.startswith("dispatch")
            )
            sync = next(
                s
                for s in syncs
                if s.rank == n.rank
                and s.id // sim.graph.metadata["step_stride"] == n.id // sim.graph.metadata["step_stride"]
            )
            assert start[launch.id] >= finish[sync.id] - 1e-15
            assert start[n.id] >= finish[launch.id] - 1e-15


def test_small_batches_are_host_bound_and_eager_is_never_faster():
    # Without the DGX H100 config's evaluation batch (262,144), whose HugeCTR evaluation network
    # (fp32 here: 0.97 GB a GPU, recsim.planner.eval_network, 2026-12-07) no longer lets fused's
    # fixed table-wise plan (a 38.15 GiB table on a 40 GiB A100) fit at batch 16,384: the step's
    # timing is what this compares.
    no_eval = [*DOT, "workload.training.eval_batch_size=null"]
    for batch in (2048, 16384):
        eager = simulate(
            "p4d-24xlarge",
            "dlrm-dcnv2",
            batch_size=batch,
            precision="fp32",
            plan="table_wise",
            overrides=["workload.training.runtime=eager", *no_eval],
        )
        fused = simulate(
            "p4d-24xlarge",
            "dlrm-dcnv2",
            batch_size=batch,
            precision="fp32",
            plan="table_wise",
            overrides=no_eval,
        )
        assert eager.status == fused.status == "ok"
        assert eager.iteration_time_s > fused.iteration_time_s
        assert sum(eager.breakdown_s.values()) == pytest.approx(eager.iteration_time_s, rel=1e-9)
    # At 256 samples per GPU the host is the critical path: the step is at least its dispatch work.
    small = simulate(
        "p4d-24xlarge",
        "dlrm-dcnv2",
        batch_size=2048,
        precision="fp32",
        plan="table_wise",
        overrides=["workload.training.runtime=eager", *DOT],
    )
    assert small.breakdown_s["host"] > 0.9 * small.iteration_time_s
    c = TORCHREC_V100
    floor = c.step_fixed_s + c.input_dist_s + c.forward_rest_s + c.backward_rest_s
    assert small.iteration_time_s > floor


def test_eager_analytic_and_des_agree_when_host_bound():
    system, workload, plan = _setup("eager", 2048, DOT)
    a = simulate_training(system, workload, plan, SimulationOptions(fidelity="analytic")).result
    d = simulate_training(system, workload, plan, SimulationOptions(fidelity="des")).result
    # Host-bound: contention on the links barely matters, so the two engines land close together.
    assert d.iteration_time_s == pytest.approx(a.iteration_time_s, rel=0.05)
    assert d.iteration_time_s >= a.iteration_time_s * (1 - 1e-9)


def test_host_cost_follows_the_model_not_the_plan_grouping():
    # Row-wise shards exchange through reduce-scatters and all-gathers, table-wise ones through an
    # all-to-all, and the ranks hold different numbers of lookup groups: the host pays per piece of
    # the model and per sharding type, not per shard, so every rank's dispatch work per step is the
    # same within a plan. The row-wise scheme keeps the tables too small to split whole, so it runs
    # two sharding types to the table-wise plan's one: one more type's dists (the test below).
    from collections import defaultdict

    totals = []
    for strategy in ("table_wise", "row_wise"):
        system, workload, _ = _setup("eager", 2048, DOT)
        plan = make_plan(strategy, workload, system)
        graph = apply_runtime(chain_steps(build_training_step(workload, plan), 1), workload)
        per_rank: dict[int, float] = defaultdict(float)
        for n in graph.nodes:
            if isinstance(n.op, Host):
                per_rank[n.rank] += n.op.cpu_s
        totals.append(per_rank)
    for per_rank in totals:
        assert max(per_rank.values()) == pytest.approx(min(per_rank.values()), rel=1e-12)
    c = TORCHREC_V100
    one_type = c.input_dist_s + c.group_forward_s + c.group_backward_s
    assert totals[1][0] - totals[0][0] == pytest.approx(one_type, rel=1e-9)


def test_each_further_routed_sharding_type_costs_its_dists_once_more():
    # TorchRec builds an input dist, a lookup and an output dist per sharding type of the plan, and
    # the calibration trace has one routed type: a plan with the big tables row-wise and the rest
    # whole (two routed types) costs every rank one more input dist and output side a step than a
    # table-wise plan; data-parallel tables route nothing and count for none.
    from collections import defaultdict

    system, workload, _ = _setup("eager", 2048, DOT)
    totals = []
    for strategy in ("table_wise", "hybrid"):
        plan = make_plan(strategy, workload, system)
        built = build_training_step(workload, plan)
        totals.append((built.metadata["routed_sharding_types"], defaultdict(float)))
        for n in apply_runtime(chain_steps(built, 1), workload).nodes:
            if isinstance(n.op, Host):
                totals[-1][1][n.rank] += n.op.cpu_s
    (one, whole), (two, split) = totals
    assert (one, two) == (1, 2)
    c = TORCHREC_V100
    extra = c.input_dist_s + c.group_forward_s + c.group_backward_s
    assert extra == pytest.approx(2.238e-3, rel=1e-9)
    for rank in range(8):
        assert split[rank] - whole[rank] == pytest.approx(extra, rel=1e-9)
    dp = build_training_step(workload, make_plan("data_parallel", workload, system))
    assert dp.metadata["routed_sharding_types"] == 0


def test_pytorch_casts_pooled_embeddings_for_a_narrow_wire():
    # fp32 tables, fp16 all-to-all: the senders quantise before the forward exchange and dequantise
    # the gradients after the backward one (TorchRec qcomm; the receivers' casts are in the test
    # below); a fused loop writes fp16 directly and adds nothing.
    system, workload, plan = _setup("eager", 2048, DOT)
    opts = SimulationOptions(steps=1, comm_dtype="fp16")
    sim = simulate_training(system, workload, plan, opts)
    assert sim.graph is not None
    ids = {n.id: n for n in sim.graph.nodes}
    for n in sim.graph.nodes:
        if n.name.startswith("a2a_fwd") and n.rank == 0:
            (cast,) = (ids[d] for d in n.deps)
            assert isinstance(cast.op, Compute) and cast.op.op == "quantise"
            assert isinstance(n.op, Collective) and n.op.send_bytes is not None
            assert cast.op.bytes_written == pytest.approx(sum(n.op.send_bytes))
            assert cast.op.bytes_read == pytest.approx(2 * sum(n.op.send_bytes))
    dequant = [n for n in sim.graph.nodes if n.name.startswith("dequantise:a2a_bwd")]
    assert len(dequant) == sim.graph.ranks
    for n in sim.graph.nodes:
        if isinstance(n.op, Embedding) and n.op.pass_ == "backward":
            assert any(ids[d].name.startswith("dequantise:") for d in n.deps)
    fused = simulate_training(system, replace_runtime(workload, "fused"), plan, opts)
    assert fused.graph is not None
    assert not any(n.name.startswith(("quantise:", "dequantise:")) for n in fused.graph.nodes)
    full = simulate_training(system, workload, plan, SimulationOptions(steps=1, comm_dtype="fp32"))
    assert full.graph is not None
    assert not any(n.name.startswith(("quantise:", "dequantise:")) for n in full.graph.nodes)


def test_qcomm_casts_on_both_ends_of_each_exchange():
    # TorchRec's qcomm (comm_ops.py) runs four casts: the senders encode their pooled vectors before
    # the forward all-to-all, the receivers decode their local batch of every feature after it
    # (into fp32, FBGEMM's ``fp16_to_fp32``), encode its gradient before the backward all-to-all,
    # and the senders decode what comes back. Its fp16 encoder clamps into a tensor of its own first
    # (``torch.clamp(x, min, max).half()``). 8 ranks, 26 fp32 tables of dim 128, 2048 samples:
    # rank 0 holds 4 tables, so it sends 2048 x 4 x 128 fp16 values (2,097,152 B, 4,194,304 B as
    # the fp32 its lookups wrote) and receives 256 x 26 x 128 (1,703,936 B; 3,407,872 B decoded).
    system, workload, plan = _setup("eager", 2048, DOT)
    assert len(plan.shards_on(0)) == 4 and workload.training.precision == "fp32"
    sim = simulate_training(system, workload, plan, SimulationOptions(steps=1, comm_dtype="fp16"))
    assert sim.graph is not None
    ids = {n.id: n for n in sim.graph.nodes}
    rank0 = {n.name: n for n in sim.graph.nodes if n.rank == 0}
    expected = {
        "clamp:a2a_fwd#0": (4_194_304, 4_194_304),
        "quantise:a2a_fwd#0": (4_194_304, 2_097_152),
        "dequantise:a2a_fwd#0": (1_703_936, 3_407_872),
        "clamp:a2a_bwd#0": (3_407_872, 3_407_872),
        "quantise:a2a_bwd#0": (3_407_872, 1_703_936),
        "dequantise:a2a_bwd#0": (2_097_152, 4_194_304),
    }
    for name, (read, written) in expected.items():
        op = rank0[name].op
        assert isinstance(op, Compute) and (op.bytes_read, op.bytes_written) == (read, written), name
        assert rank0[name].stream is Stream.COMPUTE
    fwd, bwd = rank0["a2a_fwd#0"], rank0["a2a_bwd#0"]
    assert [ids[d].name for d in fwd.deps] == ["quantise:a2a_fwd#0"]
    assert [ids[d].name for d in rank0["quantise:a2a_fwd#0"].deps] == ["clamp:a2a_fwd#0"]
    assert [ids[d].name for d in rank0["dequantise:a2a_fwd#0"].deps] == ["a2a_fwd#0"]
    assert rank0["dequantise:a2a_fwd#0"].id in rank0["interaction_fwd#0"].deps
    assert [ids[d].name for d in bwd.deps] == ["quantise:a2a_bwd#0"]
    assert [ids[d].name for d in rank0["quantise:a2a_bwd#0"].deps] == ["clamp:a2a_bwd#0"]
    # (the gradient leaves TorchRec's dot interaction through its last copy, split's backward cat,
    # the copies' last kernel: ``_Rewriter._overlap_launches``)
    assert rank0["interaction_copies_bwd_last_kernel#0"].id in rank0["clamp:a2a_bwd#0"].deps
    assert [ids[d].name for d in rank0["dequantise:a2a_bwd#0"].deps] == ["a2a_bwd#0"]
    # DLE under AMP: the interaction reads the fp16 payload as it arrives, so only the owners cast
    # (``.half()``: no clamp).
    system, workload = prepare(
        "p4d-24xlarge",
        "dlrm-dcnv2",
        batch_size=2048,
        precision="fp16",
        overrides=["workload.training.runtime=cuda_graphs", *DOT],
    )
    dle = simulate_training(
        system, workload, make_plan("table_wise", workload, system), SimulationOptions(steps=1)
    )
    assert dle.graph is not None
    names = {n.name for n in dle.graph.nodes if n.rank == 0}
    assert {"quantise:a2a_fwd#0", "dequantise:a2a_bwd#0"} <= names
    assert not names & {"dequantise:a2a_fwd#0", "quantise:a2a_bwd#0", "clamp:a2a_fwd#0"}


def test_int8_wire_carries_fbgemm_row_scale_and_bias():
    # FBGEMM's int8 comm codec quantises rows of 32 values of the flattened tensor (not of the
    # embedding dim) and appends an fp32 scale and bias to each: 40 B per 32 values on the wire and
    # in what its casts write and read. Rank 0 of the 8-rank case above sends 2048 x 4 x 128 values
    # (1,310,720 B) and receives 256 x 26 x 128 (1,064,960 B).
    system, workload, plan = _setup("eager", 2048, DOT)
    sim = simulate_training(system, workload, plan, SimulationOptions(steps=1, comm_dtype="int8"))
    assert sim.graph is not None
    rank0 = {n.name: n for n in sim.graph.nodes if n.rank == 0}
    for name, send, recv in (("a2a_fwd#0", 1_310_720, 1_064_960), ("a2a_bwd#0", 1_064_960, 1_310_720)):
        op = rank0[name].op
        assert isinstance(op, Collective) and op.dtype == "int8"
        assert op.send_bytes is not None and op.recv_bytes is not None
        assert (sum(op.send_bytes), sum(op.recv_bytes)) == (send, recv)
    expected = {
        "quantise:a2a_fwd#0": (4_194_304, 1_310_720),
        "dequantise:a2a_fwd#0": (1_064_960, 3_407_872),
        "quantise:a2a_bwd#0": (3_407_872, 1_064_960),
        "dequantise:a2a_bwd#0": (1_310_720, 4_194_304),
    }
    for name, (read, written) in expected.items():
        op = rank0[name].op
        assert isinstance(op, Compute) and (op.bytes_read, op.bytes_written) == (read, written), name


def replace_runtime(workload, name):
    return workload.model_copy(update={"training": workload.training.model_copy(update={"runtime": name})})


def test_fp16_pytorch_runtimes_pay_gradscaler_unscale_and_found_inf_sync():
    # GradScaler: every dense gradient read and written once more before the optimizer, a host sync
    # on found_inf, and a materialised sparse embedding gradient (sparse_sgd) unscaled too. bf16 and
    # the fused loop add nothing.
    def graph(runtime_name: str, precision: str, emb_opt: str = "sparse_sgd"):
        sets = [
            f"workload.training.runtime={runtime_name}",
            f"workload.training.embedding_optimizer={emb_opt}",
            *DOT,
        ]
        system, workload = prepare(
            "p4d-24xlarge", "dlrm-dcnv2", batch_size=4096, precision=precision, overrides=sets
        )
        plan = make_plan("table_wise", workload, system)
        sim = simulate_training(system, workload, plan, SimulationOptions(steps=1))
        assert sim.graph is not None
        return workload, sim.graph

    workload, g = graph("cuda_graphs", "fp16")
    ids = {n.id: n for n in g.nodes}
    for n in g.nodes:
        if isinstance(n.op, Compute) and n.op.category == "optimizer":
            (sync,) = (ids[d] for d in n.deps)
            assert isinstance(sync.op, Host) and sync.op.op == "sync:found_inf"
            (unscale,) = (ids[d] for d in sync.deps)
            assert isinstance(unscale.op, Compute) and unscale.op.op == "amp_unscale"
            # sgd keeps no state: the optimizer writes the weights, the unscale reads and writes grads.
            # The dense gradients as DLE trains them: the top MLP's padded layer's extra weights too.
            params = sum(layer.params for layer in trained_dense_layers(workload))
            assert unscale.op.bytes_read == unscale.op.bytes_written == params * 4.0
    sparse = [n for n in g.nodes if n.name.startswith("amp_unscale:emb_backward")]
    assert len(sparse) == g.ranks
    for n in sparse:
        (emb,) = (ids[d] for d in n.deps)
        assert isinstance(emb.op, Embedding) and emb.op.pass_ == "backward"
        assert n.op.bytes_written == pytest.approx(emb.op.lookups * emb.op.dim * 4.0)
    for name, precision, emb_opt in (
        ("cuda_graphs", "bf16", "sparse_sgd"),
        ("fused", "fp16", "sparse_sgd"),
    ):
        _, other = graph(name, precision, emb_opt)
        assert not any(n.name.startswith("amp_unscale") for n in other.nodes)
    # Fused TBE optimizers never materialise the embedding gradient: only the dense unscale.
    _, tbe = graph("eager", "fp16", "sgd")
    names = [n.name for n in tbe.nodes]
    assert sum(x.startswith("amp_unscale:dense") for x in names) == tbe.ranks
    assert not any(x.startswith("amp_unscale:emb") for x in names)


def test_fused_runtime_asks_for_collnet_gradient_all_reduce():
    # NVIDIA's MLPerf recipes reduce gradients in the IB switches (SHARP): the fused runtime marks its
    # gradient all-reduces 'collnet' (a preference: on one node the automatic choice runs them).
    for name, expected in (("fused", "collnet"), ("eager", None)):
        system, workload = prepare(
            "dgx-a100", "dlrm-mlperf", nodes=2, overrides=[f"workload.training.runtime={name}"]
        )
        graph = build_training_step(workload, make_plan("table_wise", workload, system))
        reduces = [
            n.op for n in graph.nodes if isinstance(n.op, Collective) and n.name.startswith("allreduce")
        ]
        assert reduces and all(op.algorithm == expected for op in reduces)
    system, workload = prepare("dgx-a100", "dlrm-mlperf")
    sim = simulate_training(system, workload, make_plan("table_wise", workload, system), SimulationOptions())
    assert sim.result.status == "ok"


def test_a_plan_the_runtime_cannot_run_is_infeasible_in_a_run():
    # HugeCTR's hybrid embedding is one-hot only: on multi-hot DCNv2 the fused runtime cannot run
    # it. auto left it out, but a run or a sweep's plan axis simulated it, and it topped a front.
    from recsim.api import simulate_run
    from recsim.errors import NoPlanError

    # The shipped workload, its evaluation batch on: the hybrid plan's one-hot evaluation reader of
    # the global batch leaves it no HBM, and the runtime's refusal is still the reason given.
    with pytest.raises(NoPlanError, match="cannot run routed_rows of multi-hot tables") as caught:
        simulate_run("zionex", "dlrm-dcnv2", nodes=2, batch_size=65536, plan="hybrid_embedding")
    assert caught.value.result.status == "infeasible"
    assert "choose another plan" in caught.value.result.reason


@pytest.mark.parametrize("name", ["eager", "cuda_graphs"])
def test_pytorch_runs_a_cross_layers_elementwise_part_as_kernels_of_its_own(name):
    """TorchRec's LowRankCrossNet: two F.linear, then x0 * (x_l_w + bias) + x_l as three
    element-wise kernels forward (8 B x W tensors read or written) and five backward (13), in
    place of the builder's node for HugeCTR's fused kernel (4 tensors forward; 6 backward, 10 for
    the stack's first layer, which also zeroes and adds x0's accumulated gradient)."""
    _, workload, plan = _setup(name, 2048)
    graph = apply_runtime(chain_steps(build_training_step(workload, plan), 1), workload)
    ids = {n.id: n for n in graph.nodes}
    cross = [n for n in graph.nodes if isinstance(n.op, Compute) and n.op.op.startswith("cross_elementwise")]
    layers = workload.interaction.layers
    assert len(cross) == 2 * layers * graph.ranks
    b, w = 2048 // 8, 27 * 128
    r = workload.interaction.low_rank
    for n in cross:
        ((rows, width),) = n.op.shapes
        assert (rows, width) == (b, w)
        moved = (n.op.bytes_read + n.op.bytes_written) / (b * w * 4)
        assert moved == (13 if n.op.op.endswith("_bwd") else 8)
        if n.op.op.endswith("_bwd"):  # before the U projection's two backward GEMMs
            (after,) = [m for m in graph.nodes if n.id in m.deps and isinstance(m.op, Compute)]
            assert after.op.op == "linear_bwd" and after.op.shapes == ((b, r), (r, w))
        else:  # after the U projection's GEMM
            (before,) = [ids[d] for d in n.deps if isinstance(ids[d].op, Compute)]
            assert before.op.op == "linear" and before.op.shapes == ((b, r), (r, w))
    assert not any(isinstance(n.op, Compute) and n.op.op in ("dcnv2", "dcnv2_bwd") for n in graph.nodes)
    fused_workload = _setup("fused", 2048)[1]
    fused = chain_steps(build_training_step(fused_workload, plan), 1)
    assert not any(isinstance(n.op, Compute) and n.op.op.startswith("cross_elementwise") for n in fused.nodes)
    kernels = [n.op for n in fused.nodes if isinstance(n.op, Compute) and n.op.op in ("dcnv2", "dcnv2_bwd")]
    tensors = sorted((op.bytes_read + op.bytes_written) / (b * w * 4) for op in kernels)
    per_rank = [4.0] * layers + [6.0] * (layers - 1) + [10.0]
    assert tensors == sorted(per_rank * fused.ranks)


def test_hugectr_runs_the_next_batchs_routed_lookups_and_exchange_inside_the_step():
    # HugeCTR's inter-iteration overlap (train_inter_iteration_overlap=True in NVIDIA's MLPerf DLRM
    # configs): batch s + 1's infrequent lookups start once batch s's routed backward has updated
    # their rows, and their all-to-all overlaps batch s's gradient all-reduce and updates. They had
    # waited in stream order behind the dense optimizer (MLPerf v2.1 DLRM on 4 DGX H100: -17.9 %).
    system, workload = prepare(
        "dgx-h100", "dlrm-mlperf", nodes=2, precision="fp16", overrides=["workload.training.runtime=fused"]
    )
    plan = make_plan("hybrid_embedding", workload, system)
    step = build_training_step(workload, plan)
    carried = step.metadata["carried_dependencies"]
    by_id = step.by_id
    for rank in (0, system.num_accelerators - 1):
        nodes = [n for n in step.nodes if n.rank == rank]
        names = [n.name for n in nodes]
        routed_fwd = next(n for n in nodes if n.name.startswith("emb_forward") and "replicated" not in n.name)
        routed_bwd = next(
            n for n in nodes if n.name.startswith("emb_backward") and "replicated" not in n.name
        )
        # The next batch's routed forward comes after this step's routed backward, reads its rows and
        # the next batch's indices, and is queued before the replicated update and the optimizer.
        assert routed_bwd.id in routed_fwd.deps
        assert any(by_id[d].phase == "input" for d in routed_fwd.deps)
        assert names.index(routed_bwd.name) < names.index(routed_fwd.name) < names.index("dense_optimizer")
        interaction = next(n for n in nodes if n.name == "interaction_fwd")
        exchange = next(n for n in nodes if n.name == "a2a_fwd")
        assert exchange.id not in interaction.deps and carried[interaction.id] == (exchange.id,)
        assert routed_fwd.id in exchange.deps
    # Chained: step s + 1's interaction waits for step s's exchange, which overlaps step s's
    # gradient all-reduce (its first bucket, CollNet under Simple) and its replicated update and
    # dense optimizer (it had waited behind them all in stream order). The first step's
    # interaction waits for none.
    sim = simulate_training(system, workload, plan, SimulationOptions(fidelity="analytic", steps=3))
    start, finish, stride = sim.schedule.start_s, sim.schedule.finish_s, sim.graph.metadata["step_stride"]
    named = {(n.name, n.rank): n.id for n in sim.graph.nodes}
    for s in (1, 2):
        interaction = named[(f"interaction_fwd#{s}", 0)]
        exchange = named[(f"a2a_fwd#{s - 1}", 0)]
        assert exchange in sim.graph.node(interaction).deps
        assert start[interaction] >= finish[exchange]
        all_reduce = named[(f"allreduce_bucket0#{s - 1}", 0)]
        assert start[exchange] < finish[all_reduce]
        optimizer = named[(f"dense_optimizer#{s - 1}", 0)]
        update = next(
            n.id
            for n in sim.graph.nodes
            if n.rank == 0 and n.name.startswith("emb_update") and n.name.endswith(f"replicated]#{s - 1}")
        )
        assert start[exchange] < finish[update] <= finish[optimizer]
    first = sim.graph.node(named[("interaction_fwd#0", 0)])
    assert not any(sim.graph.node(d).name.startswith("a2a_fwd") for d in first.deps)
    assert stride > 0 and sim.result.status == "ok"


def test_a_step_ends_with_its_own_batchs_work_not_the_next_batchs_exchange():
    # The next batch's exchange may finish after this step's optimizer; the critical path had
    # started from it and charged 0.115 ms of all-to-all to a single-node step whose compute stream
    # is busy all the time (a reviewer's find).
    result = simulate("dgx-a100", "dlrm-mlperf", nodes=1, plan="hybrid_embedding")
    assert result.utilisation["compute"] == pytest.approx(1.0)
    assert result.breakdown_s["all_to_all"] == 0.0
    assert sum(result.breakdown_s.values()) == pytest.approx(result.iteration_time_s, rel=1e-12)
    system, workload = prepare("dgx-a100", "dlrm-mlperf", nodes=2, precision="fp16")
    plan = make_plan("hybrid_embedding", workload, system)
    sim = simulate_training(system, workload, plan, SimulationOptions(fidelity="analytic", steps=4))
    ahead = set(sim.graph.metadata["next_batch_nodes"])
    stride = sim.graph.metadata["step_stride"]
    from recsim.engine.timeline import critical_path, step_window

    window = step_window(sim.graph, sim.schedule)
    _, path = critical_path(sim.graph, sim.schedule, window, lambda n: "x")
    assert path[0] % stride not in ahead and sim.schedule.finish_s[path[0]] == window.end_s
    # One step alone too (steps=1, an API and sweep option): no all-to-all on a busy compute stream.
    single = simulate("dgx-a100", "dlrm-mlperf", nodes=1, plan="hybrid_embedding", steps=1)
    assert single.breakdown_s["all_to_all"] == 0.0


def test_a_single_step_counts_only_its_own_batchs_work():
    # One step alone (steps=1) ends with its own batch's last node, so its busy times leave the
    # next batch's exchange out too: a reviewer's hybrid plan, its routed rows on two ranks of two
    # PCIe nodes, had its comm stream busy 2.25 ms in a 1.81 ms step (an invariant error).
    from dataclasses import replace

    system, workload = prepare("h100-pcie-server", "dlrm-mlperf", nodes=2, batch_size=32768)
    plan = make_plan("hybrid_embedding", workload, system)
    routed = tuple(replace(s, ranks=(2, 9)) if s.sharding == "distributed" else s for s in plan.shards)
    single = simulate_training(system, workload, replace(plan, shards=routed), SimulationOptions(steps=1))
    assert single.result.status == "ok"
    assert all(v <= 1.0 for v in single.result.utilisation.values())
    assert single.graph is not None and single.schedule is not None
    ahead = set(single.graph.metadata["next_batch_nodes"])
    comm = [n for n in single.graph.nodes if n.rank == 0 and n.stream is Stream.COMM]
    assert any(n.id in ahead for n in comm)  # the next batch's exchange is in the graph
    own_busy = sum(
        single.schedule.finish_s[n.id] - single.schedule.start_s[n.id] for n in comm if n.id not in ahead
    )
    assert own_busy <= single.result.iteration_time_s * (1 + 1e-12)


@pytest.mark.parametrize(
    ("strategy", "feature"),
    [("hybrid_embedding", "routed_rows"), ("table_wise_mp_bottom", "model_parallel_bottom")],
)
def test_the_plan_command_refuses_a_plan_the_runtime_cannot_run_and_saves_nothing(
    tmp_path, strategy, feature
):
    # `recsim plan` said feasible and saved the plan, which `recsim run` then refused (a tester's
    # find): the same check, the same message, exit 2, no file.
    from click.testing import CliRunner

    from recsim.cli import cli

    out = tmp_path / "p.json"
    args = ["plan", "--system", "dgx-h100", "--strategy", strategy, "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert f"training.runtime 'fused' cannot run {feature}" in result.output
    assert "choose another plan" in result.output
    assert not out.exists()


def test_the_run_command_refuses_a_plan_the_runtime_cannot_run_for_that_not_for_memory():
    # The shipped dlrm-dcnv2 reads its evaluation batch (262,144 samples), and the hybrid plan of its
    # multi-hot tables is charged HugeCTR's one-hot evaluation reader of the global batch (59.5 GB a
    # GPU): it failed for memory, though HugeCTR cannot run it whatever the memory.
    from click.testing import CliRunner

    from recsim.api import load_workload
    from recsim.cli import cli

    assert load_workload("dlrm-dcnv2").training.eval_batch_size == 262144
    args = ["run", "--system", "dgx-h100", "--workload", "dlrm-dcnv2", "--runtime", "fused"]
    result = CliRunner().invoke(cli, [*args, "--plan", "hybrid_embedding"])
    assert result.exit_code == 2, result.output
    assert "training.runtime 'fused' cannot run routed_rows of multi-hot tables plans" in result.output
    assert "choose another plan" in result.output
    assert "HBM" not in result.output and "Traceback" not in result.output


def _host_labels(graph) -> list[str]:
    return [n.op.op for n in graph.nodes if isinstance(n.op, Host)]


def test_one_gpu_eager_dispatches_no_collective():
    # One rank has no process group: its "exchange" and input dist are group-of-one collectives
    # that the program never calls, so the host dispatches none and waits on no splits.
    system, workload = prepare(
        "dgx-a100", "rmc1", overrides=["node.accelerators.count=1", "workload.training.runtime=eager"]
    )
    plan = make_plan("table_wise", workload, system)
    graph = apply_runtime(chain_steps(build_training_step(workload, plan), 2), workload)
    labels = _host_labels(graph)
    assert not [x for x in labels if x.startswith(("dispatch:a2a", "dispatch:input_dist"))]
    assert "sync:input_dist_splits" not in labels
    assert [n for n in graph.nodes if isinstance(n.op, Collective)]  # still in the graph, at no cost
    # Against rank 0 of two GPUs, the step's host chain lacks exactly the pieces of the collectives:
    # the exchange's quarter of each pass, the gradients' quarter of the backward, the input dist.
    system2 = prepare("dgx-a100", "rmc1", overrides=["node.accelerators.count=2"], runtime="eager")[0]
    two = apply_runtime(
        chain_steps(build_training_step(workload, make_plan("table_wise", workload, system2)), 2), workload
    )

    def per_step(g) -> float:
        return sum(n.op.cpu_s for n in g.nodes if isinstance(n.op, Host) and n.rank == 0) / 2

    c = TORCHREC_V100
    missing = c.forward_rest_s / 4 + c.backward_rest_s / 2 + c.input_dist_s
    assert per_step(two) - per_step(graph) == pytest.approx(missing, rel=1e-9)


def test_an_all_data_parallel_plan_has_no_input_dist_to_dispatch():
    # Every table replicated: the input dist routes no index (TorchRec's DpSparseFeaturesDist is a
    # no-op), so no sparse_data_dist dispatch and no splits sync, on any rank.
    system, workload = prepare("dgx-a100", "rmc1", overrides=["node.accelerators.count=2"], runtime="eager")
    plan = make_plan("data_parallel", workload, system)
    graph = apply_runtime(chain_steps(build_training_step(workload, plan), 2), workload)
    labels = _host_labels(graph)
    assert [n for n in graph.nodes if isinstance(n.op, Collective) and n.name.startswith("input_dist#")]
    assert "dispatch:input_dist" not in labels and "sync:input_dist_splits" not in labels


def test_pytorch_collectives_share_one_queue_in_issue_order():
    # TorchRec and DLE issue every collective on one process group: one NCCL stream, where they run
    # in issue order (the Kineto trace: AllReduce, SendRecv, AllReduce on one stream in backward).
    # The top layers' all-reduces go before the backward all-to-all, the bottom MLP's after it;
    # the eager input dist after the forward all-to-all; DLE has none. HugeCTR keeps its lanes.
    orders = {
        "eager": [  # torch DDP's first bucket is capped at 1 MiB (Runtime.gradient_bucket_caps)
            "a2a_fwd",
            "input_dist",
            "allreduce_bucket0",
            "allreduce_bucket1",
            "allreduce_bucket2",
            "a2a_bwd",
            "allreduce_bucket3",
        ],
        "cuda_graphs": [  # DLE exchanges no index (Runtime.per_rank_feature_input); apex's DDP
            "a2a_fwd",  # ships a bucket at 10M elements (40 MB of fp32): the top layers in one
            "allreduce_bucket0",
            "a2a_bwd",
            "allreduce_bucket1",
        ],
    }
    for name in ("eager", "cuda_graphs", "fused"):
        system, workload = prepare(
            "dgx-a100", "dlrm-dcnv2", overrides=["node.accelerators.count=2"], runtime=name
        )
        plan = make_plan("table_wise", workload, system)
        graph = apply_runtime(chain_steps(build_training_step(workload, plan), 2), workload)
        comm = [n for n in graph.nodes if n.rank == 0 and n.stream is Stream.COMM and n.name.endswith("#1")]
        lanes = {n.name.split("#")[0].rstrip("0123456789"): n.lane for n in comm}
        if name == "fused":
            assert lanes["input_dist"] != lanes["a2a_fwd"] != lanes["allreduce_bucket"] != lanes["input_dist"]
            continue
        assert set(lanes.values()) == {0}
        assert [n.name.split("#")[0] for n in comm] == orders[name]
        # The bottom MLP's bucket waits for its last gradient, which comes after the exchange's
        # backward in the program: its dependency is the bottom MLP's first layer (under TorchRec,
        # DDP's copy of its gradients into the bucket, ``_ddp_bucket_copy``).
        ids = {n.id: n for n in graph.nodes}
        last = "bottom0_ddp_bucket_copy" if name == "eager" else "bottom0_bwd"
        assert any(ids[d].name.startswith(last) for d in comm[-1].deps)


def test_torchrec_input_dist_reads_the_previous_steps_copy():
    # TrainPipelineSparseDist is three batches deep: step i distributes batch i + 1 (copied by step
    # i - 1's enqueue_batch) while it copies batch i + 2 (Runtime.input_dist_follows_previous_copy).
    # DLE and HugeCTR have no such lag (DLE: no input dist at all).
    for name, lagged in (("eager", True), ("fused", False)):
        system, workload = prepare(
            "dgx-a100", "dlrm-dcnv2", overrides=["node.accelerators.count=2"], runtime=name
        )
        plan = make_plan("table_wise", workload, system)
        graph = chain_steps(build_training_step(workload, plan), 2)
        ids = {n.id: n for n in graph.nodes}
        dist = next(n for n in graph.nodes if n.rank == 0 and n.name == "input_dist#1")
        copies = {ids[d].name for d in dist.deps if ids[d].name.startswith("h2d_next_batch")}
        assert copies == ({"h2d_next_batch#0"} if lagged else {"h2d_next_batch#1"}), name
        first = next(n for n in graph.nodes if n.rank == 0 and n.name == "input_dist#0")
        assert any(ids[d].name.startswith("h2d") for d in first.deps) != lagged, name


def test_each_runtime_sends_the_wire_dtypes_its_framework_has():
    # TorchRec (eager) has FBGEMM's qcomm codecs for every wire; HugeCTR (fused) and DLE
    # (cuda_graphs) send the vectors as the model holds them, so an int8 or fp8 wire is refused,
    # naming the runtime and the dtype, in a plan (``unsupported``) or for a run (``check_wire_dtype``).
    from recsim.errors import InfeasibleError
    from recsim.planner.types import COMM_DTYPES, Plan

    _, workload, _ = _setup("eager", 2048)
    assert runtime("eager").wire_dtypes == frozenset(COMM_DTYPES)
    for dtype in COMM_DTYPES:
        runtime("eager").check_wire_dtype(dtype)
        assert runtime("eager").unsupported(Plan(2, (), comm_dtype=dtype), workload) == []
    for name, framework in (("fused", "HugeCTR"), ("cuda_graphs", "NVIDIA DLE's DLRM")):
        framework_runtime = runtime(name)
        for dtype in ("fp32", "fp16", "bf16"):
            framework_runtime.check_wire_dtype(dtype)
        for dtype in ("fp8", "int8"):
            with pytest.raises(InfeasibleError, match=f"training.runtime '{name}' cannot send pooled") as err:
                framework_runtime.check_wire_dtype(dtype)
            assert f"as {dtype}: {framework} has no quantised communication" in str(err.value)
            plan = Plan(2, (), comm_dtype=dtype)
            assert framework_runtime.unsupported(plan, workload) == [f"{dtype}-wire"]


@pytest.mark.parametrize(
    ("kernel_s", "finish_s"),
    [
        # Dispatch slower than the kernels (launch-bound, as the V100 trace's optimizer): the last
        # kernel runs after the last launch, 4 x 10 + 2 us; it used to wait for the whole dispatch
        # and then run all four, 40 + 4 x 2.
        (2e-6, 42e-6),
        # Kernels slower than the dispatch: the GPU starts after the first launch and runs the
        # four back to back, 10 + 4 x 25 us (was 40 + 4 x 25).
        (25e-6, 110e-6),
    ],
)
def test_a_multi_kernel_node_runs_while_the_host_launches_it(kernel_s: float, finish_s: float) -> None:
    # One node of four element-wise kernels behind a 40 us dispatch (10 us a launch), then a node
    # that waits for it, then the host's next work; durations given, not costed.
    _, workload, _ = _setup("eager", 2048)
    op = Compute("passes", 4e6, 8e6, 8e6, "fp32", (), "elementwise", kernels=4)
    node = Node(0, 0, "passes#0", Stream.COMPUTE, op, (), phase="forward")
    after = Node(1, 0, "after#0", Stream.COMPUTE, Compute("after", kernels=1), (0,), phase="forward")
    rw = _Rewriter(ExecutionGraph(1, [node, after], {"steps": 1}), workload, _Style(TORCHREC_V100, False))
    rw.emit(node, 40e-6)
    rw.emit(after, None)
    rw.host("next", 1e-6)  # the host's program after the node
    graph = ExecutionGraph(1, rw.program, {})

    def duration(n: Node) -> float:
        if isinstance(n.op, Host):
            return n.op.cpu_s
        assert isinstance(n.op, Compute)
        return n.op.kernels * kernel_s

    schedule = asap_schedule(graph, duration)
    gpu = [n for n in graph.nodes if n.stream is Stream.COMPUTE and n.name != "after#0"]
    # The parts carry the node's FLOPs, bytes and kernels between them.
    assert sum(n.op.kernels for n in gpu) == 4
    assert sum(n.op.bytes_read for n in gpu) == pytest.approx(8e6, rel=1e-12)
    assert sum(n.op.flops for n in gpu) == pytest.approx(4e6, rel=1e-12)
    (follower,) = (n for n in graph.nodes if n.name == "after#0")
    assert schedule.start_s[follower.id] == pytest.approx(finish_s, abs=1e-12)
    assert min(schedule.start_s[n.id] for n in gpu) == pytest.approx(10e-6, abs=1e-12)
    # The host goes on once it has launched all four, not before.
    (nxt,) = (n for n in graph.nodes if isinstance(n.op, Host) and n.op.op == "next")
    assert schedule.start_s[nxt.id] == pytest.approx(40e-6, abs=1e-12)


def test_the_split_parts_cost_what_the_node_did_and_gemm_dispatches_stay_whole():
    # ``_overlap_launches`` moves a node's last kernel into a node of its own: under the cost model
    # the two parts take the node's time (a roofline linear in kernels, FLOPs and bytes), so only
    # when they run changes. A dispatch that launches a GEMM (a Linear) is left whole: the wave
    # model is not linear in the kernels.
    from recsim.cost.compute import compute_time_s

    system, workload, plan = _setup("eager", 2048, DOT)
    graph = apply_runtime(chain_steps(build_training_step(workload, plan), 1), workload)
    by_name = {(n.rank, n.name): n for n in graph.nodes}
    tails = [n for n in graph.nodes if "_last_kernel#" in n.name]
    assert tails
    acc = system.accelerator
    for tail in tails:
        head = by_name[(tail.rank, tail.name.replace("_last_kernel#", "#"))]
        assert isinstance(head.op, Compute) and isinstance(tail.op, Compute)
        assert head.id in tail.deps
        whole = replace(
            head.op,
            flops=head.op.flops + tail.op.flops,
            bytes_read=head.op.bytes_read + tail.op.bytes_read,
            bytes_written=head.op.bytes_written + tail.op.bytes_written,
            kernels=head.op.kernels + tail.op.kernels,
        )
        parts = compute_time_s(head.op, acc) + compute_time_s(tail.op, acc)
        assert parts == pytest.approx(compute_time_s(whole, acc), rel=1e-12), tail.name
    launches = {n.op.op for n in graph.nodes if isinstance(n.op, Host) and n.op.op.startswith("launch:")}
    assert launches == {"launch:interaction", "launch:dense_optimizer"}
