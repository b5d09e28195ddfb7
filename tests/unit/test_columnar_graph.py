"""The built step graph held as columns (``ColumnarGraph``): the same nodes as the builder made
before, made only when read, and an analytic evaluation that reads the columns and never makes
them, with the same result to the bit as one that reads the nodes."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from recsim.api import make_plan, prepare
from recsim.engine.simulate import SimulationOptions, simulate_training
from recsim.graph import ir
from recsim.graph.build import BuildOptions, build_training_step
from recsim.graph.index import GraphIndex
from recsim.graph.ir import ColumnarGraph, ExecutionGraph
from recsim.graph.steps import ChainedGraph, _Templates

# (system, workload, nodes, plan, runtime, fold_ranks) -> (node count, sha256 of
# ``repr((graph.ranks, graph.nodes))``, first 32 digits), recorded with the builder of e24f771,
# which made ``Node`` objects as it went. The hybrid-embedding plan's frequent rows follow the
# collectives' costs (HugeCTR's threshold): re-recorded when the NVSwitch gen2 refit moved them
# (t0's 702 -> 708 rows), and again with the point-to-point protocol rule; and when ``Embedding`` gained
# ``cache_share`` (its repr's ``cache_share=None``: the digests without it were the recorded ones);
# and when the PyTorch runtimes' dense gradients became fp32 under AMP (``Runtime.
# dense_gradient_dtype``: the eager and cuda_graphs cases; with the compute precision in its place
# the builder gives the digests recorded before, checked by script); and when their collectives
# moved to one comm lane (``Runtime.shared_comm_queue``; checked by script the same way); and when
# DLE's loader read each rank's own features (``Runtime.per_rank_feature_input``: the cuda_graphs
# case, its 16 input dists gone; switched off, the builder gives the recorded digest, by script); and
# when torch DDP's first bucket became 1 MiB (``Runtime.gradient_bucket_caps``: the eager case, 16
# more buckets; with 25 MiB first buckets the builder gives the recorded digests, by script); and
# when TorchRec's input dist waited for the previous step's copy (``Runtime.
# input_dist_follows_previous_copy``: the eager case; switched off, the recorded digest, by script);
# and when ``Embedding`` gained ``inference`` (its repr's ``inference=False``: the digests without it
# were the recorded ones, by script); and when the collective calibration was refitted on the
# held-out split's training size blocks (2ba0c2b: the A100 fit's LL and Simple constants move
# HugeCTR's frequent-row threshold, the hybrid case; bisected: 15c6c61 gives the recorded digest);
# and when a DCNv2 cross layer became its two GEMMs and an
# element-wise node (``recsim.graph.build._cross_layer_ops``: the dlrm-dcnv2 cases, two more nodes a
# layer and pass; with the one-op layer patched back in, the recorded digests, by script); and when
# dlrm-dcnv2's ids became int32 (``Training.index_dtype``: its input dists and H2D copies; with 8-byte
# ids, the digests recorded before, by script); and when HugeCTR's backward index sort went to a
# side lane after the embedding forward (``Runtime.backward_index_overlap``: a sort node per backward
# lookup, the fused non-hybrid cases) and its cross layers' weight gradients to a lane of their own
# (``Runtime.async_cross_wgrad``: two more nodes a cross layer, the fused dlrm-dcnv2 cases); with
# both switched off, the recorded digests, by script; and when ``Compute`` gained ``kernels`` (its
# repr's ``kernels=1``: the digests without it were the recorded ones, by script); and when the dot
# interaction took its fused kernels' bytes and FLOPs (``recsim.graph.build._dot_interaction_op``: the
# dlrm-mlperf cases; with the previous op patched back in, the recorded digests, by script); and when
# a concatenation's backward took HugeCTR's concat_kernel bytes (the rmc1 case, its one cat layer;
# the only node whose op changed); and when a DCNv2 stack's input got its concatenation (a
# ``_concat`` node before the first cross layer's forward and after its backward, ``recsim.graph.
# build._cross_layer_ops``: the dlrm-dcnv2 cases; with those nodes filtered out, the recorded
# digests, by script); and when ``Compute`` gained ``accumulates`` (its repr's ``accumulates=False``)
# and HugeCTR's cross-layer V input gradient and weight gradients took it with their C reads (the
# fused dlrm-dcnv2 cases, those nodes only): with the field left out of the repr, node for node the
# previous builder's but for those nodes, by script; and when HugeCTR's MLP linear layers' backward
# became a dgrad and a wgrad node, the wgrad on the wgrad lane (``Runtime.async_mlp_wgrad``: the
# fused cases, one more node a linear layer with an input gradient and rank); with it switched off,
# the recorded digests, by script; and when the dot interaction's backward (a tensor-core kernel)
# waited for the pending MLP weight gradient (``recsim.graph.build._fills_sms``: the fused
# dlrm-mlperf case, a rank's top0 wgrad dependency moved from the bottom MLP's last dgrad to the
# interaction's backward; with ``_fills_sms`` patched to False, the recorded digest, by script); and
# when GEMM split-K's reduction became a kernel of its own and the GEMM curves were refitted (the
# hybrid case's frequent rows, which follow the costs: 16,971 -> 17,081 replicated rows, and the
# lookups and exchanges that follow from them; node names and order as before, by script); and
# when the top MLP's first layer came to read the framework's padding of the dot interaction's
# output (``Runtime.dot_output_padding``: HugeCTR's one column and DLE's multiple of 8, the two
# dlrm-mlperf cases; with every runtime's padding patched to 0, the recorded digests, by script); and
# when that padded layer's extra weights joined the dense gradient all-reduce and the optimizer step
# (``_Builder.layer_params``: the two dlrm-mlperf cases, 1,024 weights; with the builder's gradient
# and optimizer counts patched back to ``layer.params``, the recorded digests, by script); and when
# dlrm-dcnv2's tables took MLPerf's fixed multi-hot rows (``multi_hot: fixed_rows``: the embedding
# ops' ``unique_rows``; with ``multi_hot: independent``, the recorded digests, by script); and when
# HugeCTR's embedding collection's first gradient all-reduce came to wait for the backward exchange
# (``Runtime.all_reduces_after_exchange``: its one NCCL communicator's order; the two fused dlrm-dcnv2
# cases, their first bucket's dependencies and the buckets made after the exchange; with it switched
# off, the recorded digests 2e02fca128b29eb0fe4073da5d09ce59 and 868e292d2301133c7537ed6719210178,
# by script); and when the BCE loss's and the dense optimizers' FLOPs were counted from their sources
# (``BCE_FLOPS_PER_SAMPLE`` 8 -> 11, ``OPTIMIZER_FLOPS_PER_PARAM`` Adagrad 5 -> 7, Adam 12 -> 13: every
# case's loss and optimizer ops; with the three patched back, the recorded digests, by script:
# de63ea69ffbf7ceae6ec623735249989, c7a944d62fcf597eb4798da6c0ff5da6, 84cf0c0a2317a38277bbeee46598df89,
# cbee8709859f22eb6e93c7673b39f66b, f4394e170585958f473819d55defaf9a, 9412d39cb342db1cb9d7aca8bd608d3d).
BUILT = {
    ("dgx-h100", "dlrm-dcnv2", 16, "table_wise", "fused", True): (1644, "c567255cdc8f11ff9a6f4a9839ddab06"),
    ("dgx-h100", "dlrm-dcnv2", 4, "table_wise", "fused", False): (1934, "085c8d0183545c664a35603dcc576bcc"),
    ("dgx-h100", "dlrm-dcnv2", 2, "row_wise", "eager", False): (816, "18dc116e0597fc4ae7fac3e15d79b8aa"),
    ("dgx-a100", "rmc1", 2, "data_parallel", "fused", True): (34, "4aeeb6170e9c69ab442dac22dfededb6"),
    ("dgx-a100", "dlrm-mlperf", 2, "hybrid_embedding", "fused", False): (
        608,
        "bffa33afb12c4d187137a766f8a7cbfe",  # its frequent rows follow the collectives' costs
    ),
    ("dgx-a100", "dlrm-mlperf", 2, "table_wise", "cuda_graphs", True): (
        432,
        "9fbcb1106de10171633955bbe8fd385a",  # no input dist (Runtime.per_rank_feature_input)
    ),
}


def _setup(system_name: str, workload_name: str, nodes: int, strategy: str, runtime: str) -> Any:
    system, workload = prepare(
        system_name, workload_name, nodes=nodes, overrides=[f"workload.training.runtime={runtime}"]
    )
    return system, workload, make_plan(strategy, workload, system)


@pytest.mark.parametrize("case", list(BUILT))
def test_the_built_nodes_are_the_previous_builders(case: tuple[Any, ...]) -> None:
    *names, fold = case
    _, workload, plan = _setup(*names)
    options = BuildOptions(ranks_per_node=8, validate_plan=False, fold_ranks=fold)
    graph = build_training_step(workload, plan, options)
    assert isinstance(graph, ColumnarGraph) and graph.columns is not None
    columns = graph.columns
    # One node at a time from the columns, and the graph's length, before the nodes are made.
    some = [graph.node_at(i) for i in range(0, len(columns), 7)]
    assert len(graph) == len(columns) and graph.columns is not None
    count, digest = BUILT[case]
    assert len(graph.nodes) == count and graph.columns is None  # made, and an ordinary graph now
    assert hashlib.sha256(repr((graph.ranks, graph.nodes)).encode()).hexdigest()[:32] == digest
    assert some == graph.nodes[::7]
    assert graph == ExecutionGraph(graph.ranks, list(graph.nodes), dict(graph.metadata))
    assert ExecutionGraph(graph.ranks, list(graph.nodes), dict(graph.metadata)) == graph
    graph.validate()


def _plain(graph: ColumnarGraph) -> ExecutionGraph:
    """The same graph as an ordinary one, its nodes made from a copy of the columns."""
    assert graph.columns is not None
    nodes = dataclasses.replace(graph.columns).nodes()
    return ExecutionGraph(graph.ranks, nodes, dict(graph.metadata))


@pytest.mark.parametrize("case", list(BUILT))
@pytest.mark.parametrize("lazy_deps", [False, True])
def test_the_index_and_templates_of_the_columns_are_those_of_the_nodes(
    case: tuple[Any, ...], lazy_deps: bool
) -> None:
    *names, fold = case
    _, workload, plan = _setup(*names)
    graph = build_training_step(
        workload, plan, BuildOptions(ranks_per_node=8, validate_plan=False, fold_ranks=fold)
    )
    assert isinstance(graph, ColumnarGraph)
    plain = _plain(graph)
    mine, theirs = GraphIndex.of(graph, lazy_deps=lazy_deps), GraphIndex.of(plain, lazy_deps=lazy_deps)
    fields = ("ids", "queue", "queue_keys", "prev_in_queue", "dep_end", "dep_flat", "vertex", "vertex_head")
    for name in (*fields, "members", "copies", "source_ranks"):
        assert getattr(mine, name) == getattr(theirs, name), name
    assert all(a is b.op for a, b in zip(mine.source_ops, plain.nodes, strict=True))
    assert mine.source_ops == theirs.source_ops
    a, b = _Templates.of(graph), _Templates.of(plain)
    assert (a.stride, a.cross, a.first, a.plain, a.later) == (b.stride, b.cross, b.first, b.plain, b.later)
    # Chained: the same index and copies.
    chained, other = ChainedGraph.lazy(graph, 3), ChainedGraph.lazy(plain, 3)
    ci, oi = chained.index(), other.index()
    for name in (*fields, "members", "source_ranks"):
        assert getattr(ci, name) == getattr(oi, name), name
    assert [ci.nodes[p] for p in range(0, len(ci.nodes), 11)] == [
        oi.nodes[p] for p in range(0, len(oi.nodes), 11)
    ]
    assert graph.columns is not None  # nothing above made the built graph's nodes
    assert chained.nodes == other.nodes


EVALUATIONS: list[tuple[str, str, int, str, str, dict[str, Any]]] = [
    ("dgx-h100", "dlrm-dcnv2", 16, "table_wise", "fused", {}),
    ("dgx-h100", "dlrm-dcnv2", 4, "table_wise", "fused", {"fold_ranks": False}),
    ("dgx-h100", "dlrm-dcnv2", 4, "table_wise", "fused", {"steps": 1}),
    ("dgx-h100", "dlrm-dcnv2", 4, "row_wise", "fused", {"comm_interference": False}),
    ("dgx-h100", "dlrm-dcnv2", 4, "table_wise", "fused", {"speed_factors": {3: 0.5}}),
    ("dgx-a100", "dlrm-mlperf", 2, "hybrid_embedding", "fused", {}),
    ("dgx-a100", "rmc1", 2, "data_parallel", "fused", {}),
    ("dgx-a100", "rmc1", 1, "table_wise", "fused", {"tier": "ddr"}),
    # A straggler beside lookups the CPUs run (``_slowed`` leaves those at their time).
    ("dgx-a100", "rmc1", 1, "table_wise", "fused", {"tier": "ddr", "speed_factors": {2: 0.5}}),
    ("dgx-a100", "rmc1", 2, "table_wise", "fused", {"tier": "uvm_caching:0.2"}),
    ("dgx-h100", "dlrm-dcnv2", 2, "table_wise", "eager", {}),
]


@pytest.mark.parametrize(
    ("system_name", "workload_name", "nodes", "strategy", "runtime", "extra"), EVALUATIONS
)
def test_an_analytic_evaluation_never_makes_the_step_nodes_and_gives_the_node_path_result(
    monkeypatch: pytest.MonkeyPatch,
    system_name: str,
    workload_name: str,
    nodes: int,
    strategy: str,
    runtime: str,
    extra: dict[str, Any],
) -> None:
    system, workload, plan = _setup(system_name, workload_name, nodes, strategy, runtime)
    extra = {"fold_ranks": True, **extra}  # as api.simulate does
    tier = extra.pop("tier", None)
    if tier is not None:
        plan = dataclasses.replace(plan, shards=tuple(dataclasses.replace(s, tier=tier) for s in plan.shards))
    made: list[int] = []
    nodes_of = ir.NodeColumns.nodes

    def counted(self: ir.NodeColumns) -> list[ir.Node]:
        made.append(len(self))
        return nodes_of(self)

    monkeypatch.setattr(ir.NodeColumns, "nodes", counted)
    options = SimulationOptions(**extra)
    sim = simulate_training(system, workload, plan, options)
    assert sim.result.status == "ok"
    if runtime == "fused":
        assert made == []  # the step graph's nodes were never made
        assert isinstance(sim.graph, ChainedGraph) and not sim.graph.made
    # The node path: every reader of the step graph reads its nodes (no graph has columns).
    monkeypatch.setattr(ir, "node_columns", lambda graph: None)
    monkeypatch.setattr("recsim.graph.index.node_columns", lambda graph: None)
    monkeypatch.setattr("recsim.graph.steps.node_columns", lambda graph: None)
    other = simulate_training(system, workload, plan, options)
    assert repr(sim.result.to_dict()) == repr(other.result.to_dict())
    assert sim.schedule is not None and other.schedule is not None
    assert sim.schedule.start_s == other.schedule.start_s and sim.schedule.finish_s == other.schedule.finish_s
    # The returned graph still gives every node, equal to the node path's.
    assert sim.graph is not None and other.graph is not None and sim.graph.nodes == other.graph.nodes
