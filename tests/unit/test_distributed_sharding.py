"""``distributed`` shards (HugeCTR's infrequent embedding): rows spread over ranks, routed exchange."""

from __future__ import annotations

from dataclasses import replace as dc_replace
from pathlib import Path

import pytest

from recsim.api import load_workload, make_plan, prepare
from recsim.cost.model import CostModel
from recsim.errors import InfeasibleError
from recsim.graph.build import BuildOptions, build_training_step, trained_dense_layers
from recsim.graph.ir import Collective, Embedding, Stream
from recsim.graph.runtime import apply_runtime, runtime
from recsim.graph.shard_ops import ShardOps, pooled_exchange
from recsim.graph.steps import chain_steps
from recsim.planner.estimator import Estimator, plan_perf
from recsim.planner.storage import shard_storage
from recsim.planner.types import Plan, Shard
from recsim.workload.spec import Workload

FIXTURES = Path(__file__).parent.parent / "fixtures"
WORLD = 4
EVERYONE = tuple(range(WORLD))


def workload():
    # Table a: 100 rows, pooling 2, uniform access; b: 50 rows, pooling 3, zipf. Batch 8 (2 per rank).
    return load_workload(FIXTURES / "workloads" / "tiny-dlrm.yaml")


def hybrid() -> Plan:
    """a: rows 0-9 replicated, 10-99 distributed (by popularity); b: whole on rank 1."""
    return Plan(
        WORLD,
        (
            Shard("a", "data_parallel", 0, 10, 0, 4, EVERYONE, "hbm", "fp32", "popularity"),
            Shard("a", "distributed", 10, 100, 0, 4, EVERYONE, "hbm", "fp32", "popularity"),
            Shard("b", "table_wise", 0, 50, 0, 4, (1,), "hbm", "fp32", "id"),
        ),
        strategy="test",
    )


def test_a_distributed_rank_serves_its_share_of_every_samples_lookups():
    w = workload()
    plan = hybrid()
    plan.validate(w)
    ops = ShardOps(w)
    cold = plan.shards[1]
    assert cold.rows_per_rank == 23  # ceil(90 / 4)
    share = ops.lookup_share(cold)
    assert share == pytest.approx(0.9)  # uniform access: 90 of 100 rows
    assert ops.member_share(cold) == pytest.approx(0.9 / 4)
    op = ops.op(cold, "forward", 8, WORLD)
    # All 8 samples x 2 lookups x 0.9 of them land in the shard; each rank serves a quarter.
    assert op.lookups == pytest.approx(8 * 2 * 0.9 / 4)
    assert (op.batch, op.rows) == (8, 23)
    # Storage: one rank keeps its 23 rows (fp32 row of 4 + one row-wise Adagrad value).
    assert shard_storage(cold, w).hbm_bytes == pytest.approx(23 * (4 * 4 + 4))


def test_the_exchange_routes_only_the_bags_a_rank_touched():
    w = workload()
    plan = hybrid()
    ops = ShardOps(w)
    ex = pooled_exchange(ops, plan, 8, 4.0)
    # Each rank of a's distributed shard: member share s = 0.225, pooling 2: bags hit 1-(1-s)^2;
    # it sends every sample owner b=2 samples x dim 4 x 4 bytes x that share. No reduce-scatter.
    hit = 1 - (1 - 0.225) ** 2
    for k in EVERYONE:
        expected = 2 * 4 * 4.0 * hit + (2 * 4 * 4.0 if k == 1 else 0.0)
        assert ex.send[k] == pytest.approx([expected] * WORLD)
    assert ex.reduce_groups == {}


def test_the_graph_runs_the_distributed_part_on_every_rank():
    w = workload()
    graph = build_training_step(w, hybrid())
    for r in EVERYONE:
        fwd = [n.op for n in graph.nodes if n.rank == r and isinstance(n.op, Embedding)]
        served = sum(op.lookups for op in fwd if op.pass_ == "forward")
        replicated_local = 2 * 2 * 0.1  # 2 local samples x pooling 2 x 10 % of a's lookups
        routed = 8 * 2 * 0.9 / 4
        own_b = 8 * 3 if r == 1 else 0.0
        assert served == pytest.approx(replicated_local + routed + own_b)
        (a2a,) = (n for n in graph.nodes if n.rank == r and n.name == "a2a_fwd")
        assert isinstance(a2a.op, Collective)
    # The replicated rows' gradient (10 rows x 4 x fp32) is all-reduced with the dense gradients (fp32
    # here), in one buffer under the default fused (HugeCTR) runtime.
    reduces = [n.op for n in graph.nodes if n.rank == 0 and isinstance(n.op, Collective)]
    total = sum(op.bytes for op in reduces if op.op.value == "all_reduce")
    # (The dense parameters as HugeCTR trains them: the top MLP's padded layer's weights too.)
    assert total == pytest.approx(_trained_params(w) * 4.0 + 10 * 4 * 4.0)


def test_a_distributed_shard_needs_distinct_ranks_and_a_row_each():
    w = workload()
    bad = Plan(
        WORLD,
        (
            Shard("a", "distributed", 0, 100, 0, 4, (0, 0), "hbm", "fp32"),
            Shard("b", "table_wise", 0, 50, 0, 4, (1,), "hbm", "fp32"),
        ),
    )
    with pytest.raises(InfeasibleError, match="distinct ranks"):
        bad.validate(w)


def test_hugectr_sorts_the_hybrid_embeddings_indices_ahead():
    # Under the fused (HugeCTR) runtime a hybrid-embedding plan trained with SGD adds its gradients
    # with atomics (sgd_atomic_update, frequent_local_reduce): no backward sorts anything. With
    # another optimizer its backward lookups find their indices sorted: each skips its sort stage,
    # which runs as a 'sort' node behind the next batch's H2D copy
    # (HybridSparseEmbeddingParams.use_train_precompute_indices). Other runtimes sort in the step.
    system, w = prepare("dgx-a100", "dlrm-mlperf", nodes=2, batch_size=16384)
    assert w.training.embedding_optimizer == "sgd"
    plan = make_plan("hybrid_embedding", w, system)
    graph = build_training_step(w, plan)
    backward = [n for n in graph.nodes if isinstance(n.op, Embedding) and n.op.pass_ == "backward"]
    assert backward and all(n.op.atomic and not n.op.presorted for n in backward)
    assert not any(isinstance(n.op, Embedding) and n.op.pass_ == "sort" for n in graph.nodes)
    cost = CostModel(system, w, fused_tables=graph.metadata["fused_tables"])
    for n in backward:  # one kernel of atomics: no sort, cheaper than sorting and deduplicating
        assert cost.embedding_s(n.op) < cost.embedding_s(dc_replace(n.op, atomic=False))

    adagrad = w.model_copy(
        update={"training": w.training.model_copy(update={"embedding_optimizer": "rowwise_adagrad"})}
    )
    graph = build_training_step(adagrad, plan)
    ids = {n.id: n for n in graph.nodes}
    backward = [n for n in graph.nodes if isinstance(n.op, Embedding) and n.op.pass_ == "backward"]
    sorts = [n for n in graph.nodes if isinstance(n.op, Embedding) and n.op.pass_ == "sort"]
    assert backward and len(sorts) == len(backward)
    assert all(n.op.presorted and not n.op.atomic for n in backward)
    for n in sorts:
        assert n.stream is Stream.COPY and n.phase == "input"
        (h2d,) = (ids[d] for d in n.deps)
        assert h2d.name in ("h2d_next_batch", "d2d_next_batch") and h2d.rank == n.rank
    cost = CostModel(system, adagrad, fused_tables=graph.metadata["fused_tables"])
    for n in backward:
        whole = cost.embedding_s(dc_replace(n.op, presorted=False))
        sort = cost.embedding_s(dc_replace(n.op, pass_="sort", presorted=False))
        assert cost.embedding_s(n.op) < whole
        # Every kernel pays its launch gap: the sort stage moves from one node to the other whole.
        assert cost.embedding_s(n.op) + sort == pytest.approx(whole)
    eager = w.model_copy(update={"training": w.training.model_copy(update={"runtime": "eager"})})
    graph = build_training_step(eager, plan)
    assert not any(
        isinstance(n.op, Embedding) and (n.op.presorted or n.op.atomic or n.op.pass_ == "sort")
        for n in graph.nodes
    )


def test_replicated_backward_skips_the_exchange_and_hugectr_groups_its_all_reduce():
    # Replicated lookups' gradients come straight from the interaction: their backward is queued
    # first and waits for no all-to-all. HugeCTR (fused) all-reduces the frequent rows' gradients in
    # the dense gradient buffer; TorchRec (eager) all-reduces them on their own.
    system, w = prepare("dgx-a100", "dlrm-mlperf", nodes=2, batch_size=16384)
    plan = make_plan("hybrid_embedding", w, system)
    replicated_bytes = sum(s.rows * s.dim * 4.0 for s in plan.shards if s.sharding == "data_parallel")
    # fp16 gradients in HugeCTR's buffer; PyTorch's AMP keeps fp32 .grad (Runtime.dense_gradient_dtype).
    # HugeCTR's top MLP has 1,024 weights more, for its dot interaction's padding column.
    dense_bytes = {"fused": 2.0, "eager": 4.0}
    for runtime_name in ("fused", "eager"):
        wl = w.model_copy(update={"training": w.training.model_copy(update={"runtime": runtime_name})})
        dense_bytes[runtime_name] *= _trained_params(wl)
        graph = build_training_step(wl, plan)
        ids = {n.id: n for n in graph.nodes}
        mine = [n for n in graph.nodes if n.rank == 0]
        backward = [n for n in mine if isinstance(n.op, Embedding) and n.op.pass_ == "backward"]
        assert [n.name.endswith("replicated]") for n in backward] == [True, False]
        rep, routed = backward
        assert not any(ids[d].name.startswith("a2a_bwd") for d in rep.deps)
        assert any(ids[d].name.startswith("a2a_bwd") for d in routed.deps)
        reduces = {n.name: n for n in mine if isinstance(n.op, Collective) and n.op.op.value == "all_reduce"}
        if runtime_name == "fused":
            assert set(reduces) == {"allreduce_bucket0"}
            bucket = reduces["allreduce_bucket0"]
            # HugeCTR's grouped buffer holds the frequent rows' gradients in its fp16 emtype.
            assert bucket.op.bytes == pytest.approx(dense_bytes["fused"] + replicated_bytes / 2)
            assert rep.id in bucket.deps
        else:
            # torch DDP's buckets (a small first one, then 25 MiB): together the dense gradients.
            dense = [r.op.bytes for name, r in reduces.items() if name.startswith("allreduce_bucket")]
            assert len(dense) > 1
            assert sum(dense) == pytest.approx(dense_bytes["eager"])
            assert reduces["dp_allreduce_bucket0"].op.bytes == pytest.approx(replicated_bytes)


def test_replicated_rows_train_as_a_dense_parameter():
    # A replicated shard's backward only accumulates its gradient (optimizer none); after the
    # all-reduce that carries it, one update node per rank steps every replicated row (HugeCTR's
    # FrequentEmbedding::update_model, TorchRec's dense optimizer over its data-parallel tables),
    # and the next step's replicated lookups wait for it. The forward exchange waits only for the
    # lookups it sends; the interaction waits for the replicated ones directly.
    system, w = prepare("dgx-a100", "dlrm-mlperf", nodes=2, batch_size=16384)
    plan = make_plan("hybrid_embedding", w, system)
    replicated = [s for s in plan.shards if s.sharding == "data_parallel"]
    elements = sum(s.rows * s.dim for s in replicated)
    for runtime_name, reduced_dtype in (("fused", "fp16"), ("eager", "fp32")):
        wl = w.model_copy(update={"training": w.training.model_copy(update={"runtime": runtime_name})})
        graph = build_training_step(wl, plan)
        ids = {n.id: n for n in graph.nodes}
        mine = [n for n in graph.nodes if n.rank == 0]
        lookups = [n for n in mine if isinstance(n.op, Embedding)]
        rep_fwd, rep_bwd = (n for n in lookups if n.name.endswith("replicated]") and n.op.pass_ != "update")
        assert rep_fwd.op.pass_ == "forward" and rep_bwd.op.optimizer == "none"
        routed_bwd = next(n for n in lookups if n.op.pass_ == "backward" and n is not rep_bwd)
        assert routed_bwd.op.optimizer == "sgd"
        (update,) = (n for n in lookups if n.op.pass_ == "update")
        assert update.phase == "optimizer" and update.stream is Stream.COMPUTE
        assert update.op.optimizer == "sgd" and update.op.output_dtype == reduced_dtype
        assert update.op.rows * update.op.dim == elements and update.op.lookups == 0.0
        carriers = [ids[d] for d in update.deps]
        assert carriers and all(isinstance(c.op, Collective) for c in carriers)
        assert rep_bwd.id in {d for c in carriers for d in c.deps}
        optimizer = next(n for n in mine if n.name == "dense_optimizer")
        assert update.id < optimizer.id  # queued ahead of it on the compute stream
        (a2a,) = (n for n in mine if n.name == "a2a_fwd")
        assert rep_fwd.id not in a2a.deps and any(ids[d].op.pass_ == "forward" for d in a2a.deps)
        interaction = next(n for n in mine if n.name == "interaction_fwd")
        assert rep_fwd.id in interaction.deps
        if runtime_name == "fused":
            # HugeCTR's inter-iteration overlap: the step's exchange carries the next batch's
            # routed vectors, which the next step's interaction waits for.
            assert a2a.id not in interaction.deps
            assert graph.metadata["carried_dependencies"][interaction.id] == (a2a.id,)
        else:
            assert a2a.id in interaction.deps
    chained = chain_steps(build_training_step(w, plan), 2)
    by_name = {(n.rank, n.name): n for n in chained.nodes}
    later = by_name[(0, "emb_forward:tbe[26 tables, replicated]#1")]
    assert by_name[(0, "emb_update:tbe[26 tables, replicated]#0")].id in later.deps


def test_the_estimator_counts_what_hugectr_does_with_the_plan():
    # Same hybrid plan: under HugeCTR (fused) the backward lookups skip their sort and the exchange
    # and gradients use its collectives; TorchRec (eager) would sort in the step.
    system, w = prepare("dgx-a100", "dlrm-mlperf", nodes=2, batch_size=16384)
    plan = make_plan("hybrid_embedding", w, system)
    eager = w.model_copy(update={"training": w.training.model_copy(update={"runtime": "eager"})})
    fused_perf = plan_perf(Estimator(system, w), plan)
    eager_perf = plan_perf(Estimator(system, eager), plan)
    narrow = runtime("fused").lookup_output_dtype(w.training.precision, "fp32") is not None
    for r in range(plan.world_size):
        assert fused_perf[r].bwd_compute_s < eager_perf[r].bwd_compute_s
        if narrow:  # HugeCTR writes the pooled vectors in its fp16 emtype: fewer bytes
            assert fused_perf[r].fwd_compute_s < eager_perf[r].fwd_compute_s
        else:
            assert fused_perf[r].fwd_compute_s == pytest.approx(eager_perf[r].fwd_compute_s)


def test_replicated_shards_keep_their_gradient_and_live_in_hbm():
    # A planner's candidate (ranks not yet given) and the placed shard keep the same HBM: the rows,
    # and on several ranks their gradient accumulator (in the table's float dtype).
    system, w = prepare("dgx-a100", "dlrm-mlperf", nodes=2, batch_size=16384)
    world = system.num_accelerators
    table = w.tables[0]
    dim = w.table_dim(table)
    candidate = Shard(table.name, "data_parallel", 0, 1000, 0, dim, ())
    placed = dc_replace(candidate, ranks=tuple(range(world)))
    est = Estimator(system, w)
    block = est.block([candidate], comm_out_bytes=0.0)
    assert block.storage.hbm_bytes == shard_storage(placed, w, world).hbm_bytes
    assert shard_storage(placed, w).hbm_bytes == shard_storage(placed, w, world).hbm_bytes
    alone = shard_storage(dc_replace(placed, ranks=(0,)), w, 1).hbm_bytes  # one rank: no dense gradient
    assert shard_storage(placed, w, world).hbm_bytes == pytest.approx(alone + 1000 * dim * 4.0)
    # Off HBM over several ranks: refused when the plan is checked, naming the shard and the tier.
    others = [Shard(t.name, "table_wise", 0, t.rows, 0, w.table_dim(t), (0,)) for t in w.tables[1:]]
    rest = Shard(table.name, "table_wise", 1000, table.rows, 0, dim, (1,))
    for tier, ok in (("hbm", True), ("uvm", False)):
        plan = Plan(world, (dc_replace(placed, tier=tier), rest, *others))
        if ok:
            plan.validate(w)
        else:
            with pytest.raises(InfeasibleError, match="data-parallel shard over several ranks lives in HBM"):
                plan.validate(w)


def test_one_rank_keeps_the_fused_update_and_unfused_updates_are_per_shard():
    # On one rank a data-parallel table is a plain local table: its backward updates it, no update
    # node. Unfused, every replicated shard gets an update node of its own, and the next step's
    # lookup of that shard waits for it.
    system, w = prepare("dgx-a100", "dlrm-mlperf", nodes=1, batch_size=16384)
    one = Plan(1, tuple(Shard(t.name, "data_parallel", 0, t.rows, 0, w.table_dim(t), (0,)) for t in w.tables))
    graph = build_training_step(w, one)
    lookups = [n.op for n in graph.nodes if isinstance(n.op, Embedding)]
    assert not any(op.pass_ == "update" for op in lookups)
    assert all(op.optimizer == "sgd" for op in lookups if op.pass_ == "backward")
    system, w = prepare("dgx-a100", "dlrm-mlperf", nodes=2, batch_size=16384)
    plan = make_plan("hybrid_embedding", w, system)
    replicated = [s for s in plan.shards if s.sharding == "data_parallel"]
    step = build_training_step(w, plan, BuildOptions(fuse_tables=False))
    updates = [
        n for n in step.nodes if n.rank == 0 and isinstance(n.op, Embedding) and n.op.pass_ == "update"
    ]
    assert len(updates) == len(replicated)
    assert sorted(n.op.rows * n.op.dim for n in updates) == sorted(s.rows * s.dim for s in replicated)
    chained = chain_steps(step, 2)
    by_id = {n.id: n for n in chained.nodes}
    for u in updates:
        later = next(
            n
            for n in chained.nodes
            if n.rank == 0
            and n.name.endswith("#1")
            and isinstance(n.op, Embedding)
            and n.op.pass_ == "forward"
            and n.op.table == u.op.table
        )
        assert any(by_id[d].name == f"{u.name}#0" for d in later.deps)


def test_pytorch_runtimes_unscale_the_replicated_gradients():
    # Under fp16 GradScaler unscales every gradient of the optimizer's parameters: the replicated
    # tables' dense gradients (fp32, as their tables) with the dense ones.
    system, w = prepare("dgx-a100", "dlrm-mlperf", nodes=2, batch_size=16384, precision="fp16")
    plan = make_plan("hybrid_embedding", w, system)
    replicated = sum(s.rows * s.dim * 4.0 for s in plan.shards if s.sharding == "data_parallel")
    assert replicated > 0
    for name in ("eager", "cuda_graphs"):
        wl = w.model_copy(update={"training": w.training.model_copy(update={"runtime": name})})
        graph = apply_runtime(chain_steps(build_training_step(wl, plan), 1), wl)
        (node,) = (n for n in graph.nodes if n.rank == 0 and n.name.startswith("amp_unscale:dense"))
        assert node.op.bytes_read == pytest.approx(_trained_params(wl) * 4.0 + replicated)


def test_the_estimator_presorts_as_the_builder_does():
    # HugeCTR with an optimizer it does not update atomically (sparse_sgd): the routed rows' backward
    # finds its indices sorted, the replicated rows' (optimizer none: gradient only) too, and the
    # estimator charges exactly the ops the builder emits.
    system, w = prepare("dgx-a100", "dlrm-mlperf", nodes=2, batch_size=16384)
    w = w.model_copy(update={"training": w.training.model_copy(update={"embedding_optimizer": "sparse_sgd"})})
    plan = make_plan("hybrid_embedding", w, system)
    graph = build_training_step(w, plan, BuildOptions(fuse_tables=False))
    cost = CostModel(system, w, table_slices=graph.metadata["table_slices"])
    est = Estimator(system, w)
    presorted = runtime("fused").presorts_indices(plan)
    for shard in (s for s in plan.shards if 0 in s.ranks):
        (node,) = (
            n
            for n in graph.nodes
            if n.rank == 0
            and isinstance(n.op, Embedding)
            and n.op.pass_ == "backward"
            and n.op.table == ShardOps(w).op_table(shard)
        )
        assert est.lookup_s(shard, "backward", presorted) == pytest.approx(cost.duration_s(node), rel=1e-12)


def _trained_params(workload: Workload) -> int:
    """The workload's dense parameters as its framework trains them (a padded layer's extra weights
    too: ``graph.build.trained_dense_layers``)."""
    return sum(layer.params for layer in trained_dense_layers(workload))
