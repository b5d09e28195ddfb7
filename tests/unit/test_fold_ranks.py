"""Folded ranks (``recsim.graph.build``, "Folded ranks"): the analytic engine builds one of the
ranks that hold no shard of their own for all of them, and its result is the whole graph's."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from recsim.api import make_plan, prepare, simulate_run
from recsim.engine.simulate import SimulationOptions, simulate_training
from recsim.graph.build import BuildOptions, build_training_step, interchangeable_ranks
from recsim.graph.ir import Collective, CollectiveOp
from recsim.graph.native import write_graph
from recsim.planner.plan import table_wise_mp_bottom

BATCH = 8192


def _same(a: Any, b: Any, path: str = "") -> None:
    """``a`` and ``b`` (a ``Result.to_dict()``) equal, floats to 1e-9 relative: the interference
    model reads each rank's overlaps on one shifted time line (``recsim.cost.interference``),
    which rounds a rank's figures differently by its number (about 1e-12 at 32 ranks, growing
    with the rank number)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{k}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9), (path, a, b)
    else:
        assert a == b, (path, a, b)


def _both(system, workload, plan, **options: Any):
    folded = simulate_training(system, workload, plan, SimulationOptions(fold_ranks=True, **options))
    whole = simulate_training(system, workload, plan, SimulationOptions(**options))
    assert folded.result.status == whole.result.status == "ok"
    _same(folded.result.to_dict(), whole.result.to_dict())
    return folded, whole


def _dcnv2(nodes: int = 4, **kwargs: Any):
    return prepare("dgx-h100", "dlrm-dcnv2", nodes=nodes, batch_size=BATCH, precision="fp16", **kwargs)


def test_table_wise_at_scale_builds_one_free_rank_and_gives_the_whole_result():
    system, workload = _dcnv2()
    plan = make_plan("table_wise", workload, system)
    free = interchangeable_ranks(plan)
    assert len(free) == 32 - len(workload.tables) == 6  # 26 tables on 32 ranks
    folded, whole = _both(system, workload, plan)
    assert folded.graph is not None and whole.graph is not None
    assert folded.graph.metadata["rank_classes"] == {free[0]: free}
    ranks = Counter(n.rank for n in folded.graph.nodes)
    assert set(ranks) == set(range(32)) - set(free[1:])
    # The representative runs the nodes the whole graph gives each free rank.
    every = Counter(n.rank for n in whole.graph.nodes)
    assert ranks[free[0]] == every[free[0]] == every[free[-1]]
    # The all-to-all parts of the folded ranks are kept for the traffic matrix: without them the
    # matrix would lack its members (input_dist, a2a_fwd, a2a_bwd).
    parts = folded.graph.metadata["folded_parts"]
    assert set(parts) == {"input_dist", "a2a_fwd", "a2a_bwd"}
    assert all(set(by_rank) == set(free[1:]) for by_rank in parts.values())


def test_folding_keeps_the_schedule_of_the_representative():
    system, workload = _dcnv2()
    plan = make_plan("table_wise", workload, system)
    rep = interchangeable_ranks(plan)[0]
    folded, whole = _both(system, workload, plan, steps=1)
    assert folded.schedule is not None and whole.schedule is not None

    def times(sim) -> list[tuple[str, float, float]]:
        return sorted(
            (n.name, sim.schedule.start_s[n.id], sim.schedule.finish_s[n.id])
            for n in sim.graph.nodes
            if n.rank == rep
        )

    for (name, s1, f1), (other, s2, f2) in zip(times(folded), times(whole), strict=True):
        assert name == other
        assert s1 == pytest.approx(s2, rel=1e-9, abs=1e-15) and f1 == pytest.approx(f2, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    ("label", "options"),
    [
        ("straggler on a free rank", {"speed_factors": {31: 0.5}}),
        ("straggler on a table's rank", {"speed_factors": {0: 0.5}}),
        ("slow NIC on a free rank", {"nic_speed_factors": {30: 0.25}}),
        ("no interference", {"comm_interference": False}),
        ("one step", {"steps": 1}),
        ("fp8 on the wire", {"comm_dtype": "fp8"}),
    ],
)
def test_folding_gives_the_whole_result_under_every_option(label: str, options: dict[str, Any]):
    # An fp8 wire is TorchRec's (eager): HugeCTR, the default runtime, sends none.
    system, workload = _dcnv2(runtime="eager") if options.get("comm_dtype") == "fp8" else _dcnv2()
    plan = make_plan("table_wise", workload, system)
    folded, _ = _both(system, workload, plan, **options)
    kept = {*options.get("speed_factors", {}), *options.get("nic_speed_factors", {})}
    classes = folded.graph.metadata.get("rank_classes", {})  # type: ignore[union-attr]
    assert classes and not kept & {r for members in classes.values() for r in members}, label


@pytest.mark.parametrize("runtime", ["eager", "cuda_graphs"])
def test_folding_gives_the_whole_result_with_the_host_driven_runtimes(runtime: str):
    system, workload = _dcnv2(runtime=runtime)
    plan = make_plan("table_wise", workload, system)
    _both(system, workload, plan)


def test_data_parallel_plan_folds_every_rank_into_one():
    # Every table replicated in HBM on every rank: all ranks run the same step.
    system, workload = prepare("dgx-a100", "rmc1", nodes=2, batch_size=4096)
    plan = make_plan("data_parallel", workload, system)
    assert interchangeable_ranks(plan) == tuple(range(16))
    folded, whole = _both(system, workload, plan)
    assert {n.rank for n in folded.graph.nodes} == {0}  # type: ignore[union-attr]
    assert len(whole.graph.nodes) == 16 * len(folded.graph.nodes)  # type: ignore[union-attr]


def test_model_parallel_bottom_rank_and_tiered_shards_are_not_folded():
    system, workload = prepare("dgx-a100", "dlrm-mlperf", nodes=4, batch_size=BATCH, precision="fp16")
    plan = table_wise_mp_bottom(workload, 32)
    assert plan.bottom_rank == 0 and not plan.shards_on(0)
    free = interchangeable_ranks(plan)
    assert 0 not in free and len(free) > 1
    _both(system, workload, plan)
    # A replicated table outside HBM keeps its ranks apart (their lookups touch host memory).
    tiered = replace(plan, shards=tuple(replace(s, tier="uvm") for s in plan.shards))
    assert interchangeable_ranks(tiered) == free
    assert interchangeable_ranks(plan, frozenset(free[:1])) == free[1:]


def test_folded_parts_complete_the_all_to_all_matrix():
    # Built with folding, the graph lacks the free ranks' parts: the cost model reads them from
    # the metadata and costs the collective as the whole graph does.
    system, workload = _dcnv2()
    plan = make_plan("table_wise", workload, system)
    options = BuildOptions(ranks_per_node=8, validate_plan=False)
    whole = build_training_step(workload, plan, options)
    folded = build_training_step(workload, plan, replace(options, fold_ranks=True))
    for key in ("input_dist", "a2a_fwd"):
        whole_parts = [n for n in whole.nodes if isinstance(n.op, Collective) and n.op.key == key]
        present = [n for n in folded.nodes if isinstance(n.op, Collective) and n.op.key == key]
        assert all(n.op.op is CollectiveOp.ALL_TO_ALL for n in present)
        assert len(present) < len(whole_parts) == 32
        missing = folded.metadata["folded_parts"][key]
        rebuilt = {n.rank: n.op for n in present} | dict(missing)
        assert {n.rank: n.op for n in whole_parts} == rebuilt


def test_the_cli_and_simulate_run_keep_every_rank_for_a_timeline():
    # simulate_run keeps the whole graph (a timeline shows every rank) unless told to fold.
    whole = simulate_run("dgx-h100", "dlrm-dcnv2", nodes=4, batch_size=BATCH, plan="table_wise")
    assert "rank_classes" not in whole.graph.metadata  # type: ignore[union-attr]
    assert {n.rank for n in whole.graph.nodes} == set(range(32))  # type: ignore[union-attr]
    folded = simulate_run(
        "dgx-h100", "dlrm-dcnv2", nodes=4, batch_size=BATCH, plan="table_wise", fold_ranks=True
    )
    _same(folded.result.to_dict(), whole.result.to_dict())
    assert len(folded.graph.nodes) < len(whole.graph.nodes)  # type: ignore[union-attr]


def test_a_folded_graph_validates_and_is_not_saved_and_the_default_keeps_every_rank(tmp_path):
    system, workload = _dcnv2()
    plan = make_plan("table_wise", workload, system)
    # The default builds every rank: the graph is the job's, to check, save and replay.
    whole = simulate_training(system, workload, plan, SimulationOptions())
    assert whole.graph is not None and "rank_classes" not in whole.graph.metadata
    whole.graph.validate()
    folded = simulate_training(system, workload, plan, SimulationOptions(fold_ranks=True)).graph
    assert folded is not None and folded.metadata["partial_collectives"] is True
    folded.validate()  # its collectives lack the folded members, as its metadata says
    with pytest.raises(ValueError, match="folded ranks"):
        write_graph(folded, tmp_path / "folded.json")
    assert not (tmp_path / "folded.json").exists()
