"""``CostMemo``: costs kept across evaluations of one system and workload give the same results."""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import replace

import pytest

import recsim.graph.shard_ops as shard_ops_module
import recsim.hardware.topology as topology_module
from recsim.api import make_plan, prepare, simulate_run
from recsim.cost.memo import DES_SCHEDULES, KAHN_ROUNDS, CostMemo
from recsim.cost.model import CostModel
from recsim.engine.des import DesCounters
from recsim.engine.simulate import SimulationOptions, simulate_training
from recsim.graph.index import GraphIndex, KahnRounds, _kahn_rounds
from recsim.graph.ir import Collective, CollectiveOp
from recsim.graph.schedule import Schedule
from recsim.graph.steps import ChainedGraph
from recsim.planner.plan import table_wise_round_robin
from recsim.planner.types import Plan
from recsim.workload.spec import Workload

PLANS = ("table_wise", "row_wise", "memory_balanced", "table_wise")


def test_shared_memo_gives_the_fresh_results() -> None:
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    memo = CostMemo(system, workload)
    for name in PLANS:
        plan = make_plan(name, workload, system)
        fresh = simulate_training(system, workload, plan, SimulationOptions()).result.to_dict()
        kept = simulate_training(system, workload, plan, SimulationOptions(costs=memo)).result.to_dict()
        assert kept == fresh, name
    # DES reads the same costs.
    plan = make_plan("row_wise", workload, system)
    fresh = simulate_training(system, workload, plan, SimulationOptions(fidelity="des")).result.to_dict()
    kept = simulate_training(system, workload, plan, SimulationOptions(fidelity="des", costs=memo))
    assert kept.result.to_dict() == fresh


def test_plans_sharing_the_memos_shard_figures_keep_their_own_graphs() -> None:
    """The memo's ``ShardOps`` (access models and shard figures) serves every plan, and the
    planner's estimator; each graph still names only the parts of tables its own ops use."""
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    memo = CostMemo(system, workload)
    names = ("flexshard", "recshard", "row_wise", "flexshard")
    slices = []
    for name in names:
        plan = make_plan(name, workload, system)
        fresh = simulate_training(system, workload, plan, SimulationOptions())
        kept = simulate_training(system, workload, plan, SimulationOptions(costs=memo))
        assert kept.result.to_dict() == fresh.result.to_dict(), name
        assert kept.graph.metadata == fresh.graph.metadata, name
        # In the same order too (a timeline writes the metadata out): by name, whatever ran before.
        assert list(kept.graph.metadata["table_slices"]) == list(fresh.graph.metadata["table_slices"])
        assert list(kept.graph.metadata["table_slices"]) == sorted(kept.graph.metadata["table_slices"])
        slices.append(set(kept.graph.metadata["table_slices"]))
    assert slices[0] and slices[1] and slices[2] and len({frozenset(x) for x in slices[:3]}) == 3
    # The first plan again, after the others left their parts in the shared ShardOps: its own only.
    assert slices[3] == slices[0]
    assert slices[0] | slices[1] | slices[2] <= set(memo.shard_ops.slices)


def test_memo_holds_one_tuple_per_distinct_value() -> None:
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    memo = CostMemo(system, workload)
    plan = make_plan("row_wise", workload, system)
    simulate_training(system, workload, plan, SimulationOptions(costs=memo))
    sizes = (len(memo.canonical_tuples), len(memo.collectives), len(memo.by_op))
    assert all(sizes)
    # The same evaluation again adds nothing: the memo grows with distinct costs, not evaluations.
    simulate_training(system, workload, plan, SimulationOptions(costs=memo))
    assert (len(memo.canonical_tuples), len(memo.collectives), len(memo.by_op)) == sizes


def test_memo_is_bound_to_its_system_and_workload() -> None:
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", batch_size=16384)
    other_system, other_workload = prepare("dgx-a100", "dlrm-dcnv2", batch_size=32768)
    memo = CostMemo(system, workload)
    CostModel(system, workload, memo=memo)
    with pytest.raises(ValueError, match="CostMemo made for 'dgx-h100'"):
        CostModel(other_system, workload, memo=memo)
    with pytest.raises(ValueError, match="CostMemo"):
        CostModel(system, other_workload, memo=memo)
    with pytest.raises(ValueError, match="memo's topology"):
        CostModel(system, workload, topology=CostMemo(system, workload).topology, memo=memo)


def test_a_run_builds_its_topology_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # ``auto``'s estimator, its simulated candidates and the final run share one memo: one
    # topology is built (counted where every builder makes one, whoever imported the function).
    built: list[str] = []
    real = topology_module._Builder.__init__

    def counting(self, system):  # type: ignore[no-untyped-def]
        built.append(system.name)
        real(self, system)

    monkeypatch.setattr(topology_module._Builder, "__init__", counting)
    result = simulate_run("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, plan="auto").result
    assert result.status == "ok" and result.plan.startswith("auto:")
    assert built == ["dgx-h100"]


def test_a_planner_refuses_a_memo_of_another_system() -> None:
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", batch_size=16384)
    other, _ = prepare("dgx-a100", "dlrm-dcnv2", batch_size=16384)
    with pytest.raises(ValueError, match="CostMemo made for 'dgx-a100'"):
        make_plan("greedy", workload, system, costs=CostMemo(other, workload))


def test_list_groups_are_interned_by_value() -> None:
    # Groups and splits given as lists (the IR's are tuples) are interned as tuples the memo keeps:
    # a later cost model cannot find another collective's cost under a reused id.
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384)
    memo = CostMemo(system, workload)
    for _ in range(50):
        for group in ([0, 1], [0, 8]):
            op = Collective(CollectiveOp.ALL_REDUCE, "ar", group, 64e6)  # type: ignore[arg-type]
            kept = CostModel(system, workload, memo=memo).collective_s(op)
            fresh = CostModel(system, workload).collective_s(op)
            assert kept == fresh
    assert len(memo.collectives) == 2


def test_a_memo_of_another_workload_is_refused_with_slow_nics_too() -> None:
    """Slow NICs keep the memo's costs out (their topology is the run's own), but not its shard
    figures: a memo of another workload must be refused there as everywhere."""
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    _, other = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=8192, precision="fp16")
    memo = CostMemo(system, other)
    plan = make_plan("table_wise", workload, system)
    for nics in ({}, {0: 0.5}):
        options = SimulationOptions(costs=memo, nic_speed_factors=nics)
        with pytest.raises(ValueError, match="CostMemo"):
            simulate_training(system, workload, plan, options)
    # Whatever the plan: one that does not fit is refused for the memo, not reported infeasible.
    tiny = prepare(
        "dgx-h100",
        "dlrm-dcnv2",
        nodes=2,
        batch_size=16384,
        precision="fp16",
        overrides=["node.accelerators.device.hbm.capacity=1 GB"],
    )[0]
    tiny_plan = make_plan("table_wise", workload, system)
    assert simulate_training(tiny, workload, tiny_plan, SimulationOptions()).result.status == "infeasible"
    with pytest.raises(ValueError, match="CostMemo"):
        simulate_training(tiny, workload, tiny_plan, SimulationOptions(costs=CostMemo(system, workload)))


def test_the_memo_keeps_the_runs_config_hash() -> None:
    # Hashed once per memo (the configs are frozen), and the hash of a fresh run: a memo must never
    # name a result with another config's hash.
    system, workload = prepare("zionex", "dlrm-benchmark", nodes=1)
    other_system, other_workload = prepare("zionex", "dlrm-benchmark", nodes=2)
    plan = make_plan("table_wise", workload, system)
    memo = CostMemo(system, workload)
    fresh = simulate_training(system, workload, plan, SimulationOptions()).result
    shared = simulate_training(system, workload, plan, SimulationOptions(costs=memo)).result
    assert shared.resolved_config_hash == fresh.resolved_config_hash == memo.config_hash
    assert CostMemo(other_system, other_workload).config_hash != memo.config_hash
    assert CostMemo(system).config_hash == ""


def counting_des(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the DES engine's runs from now on (one entry per run)."""
    import recsim.engine.des as des

    calls: list[int] = []
    real = des.run_des

    def run_des(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(des, "run_des", run_des)
    return calls


def test_the_des_winner_of_auto_is_not_simulated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` under DES simulates its finalists with DES; the run that follows simulates the
    winner with the same options: the memo's schedule, the very result of a fresh run."""
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    memo = CostMemo(system, workload)
    calls = counting_des(monkeypatch)
    plan = make_plan("auto", workload, system, costs=memo, fidelity="des")
    finalists = len(calls)
    assert finalists >= 1 and plan.strategy.startswith("auto:")
    kept = simulate_training(system, workload, plan, SimulationOptions(fidelity="des", costs=memo))
    assert len(calls) == finalists  # not simulated again
    fresh = simulate_training(system, workload, plan, SimulationOptions(fidelity="des"))
    assert len(calls) == finalists + 1
    assert kept.result.to_dict() == fresh.result.to_dict()
    assert kept.schedule is not None and fresh.schedule is not None
    assert list(kept.schedule.start_s.items()) == list(fresh.schedule.start_s.items())
    assert list(kept.schedule.finish_s.items()) == list(fresh.schedule.finish_s.items())
    assert kept.graph is not None and kept.graph.metadata["plan"] == plan.strategy


def test_a_kept_des_schedule_serves_only_its_plan_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    memo = CostMemo(system, workload)
    plan = make_plan("row_wise", workload, system)
    calls = counting_des(monkeypatch)
    first = simulate_training(system, workload, plan, SimulationOptions(fidelity="des", costs=memo))
    assert first.schedule is not None
    first.schedule.start_s.clear()  # what a caller does to its own copy is no other run's
    again = simulate_training(system, workload, plan, SimulationOptions(fidelity="des", costs=memo))
    assert len(calls) == 1 and again.schedule is not None and again.schedule.start_s
    # Other options, another plan, or a run counting the engine's work: simulated.
    for options in (
        SimulationOptions(fidelity="des", costs=memo, comm_interference=False),
        SimulationOptions(fidelity="des", costs=memo, speed_factors={1: 0.5}),
        SimulationOptions(fidelity="des", costs=memo, steps=2),
        SimulationOptions(fidelity="des", costs=memo, des_counters=DesCounters()),
    ):
        before = len(calls)
        got = simulate_training(system, workload, plan, options).result.to_dict()
        assert len(calls) == before + 1
        fresh = simulate_training(system, workload, plan, replace(options, costs=None, des_counters=None))
        assert got == fresh.result.to_dict()
    other = dataclasses.replace(plan, comm_dtype="fp32" if plan.comm_dtype != "fp32" else "fp16")
    before = len(calls)
    simulate_training(system, workload, other, SimulationOptions(fidelity="des", costs=memo))
    assert len(calls) == before + 1


def test_the_memo_keeps_the_newest_des_schedules_only() -> None:
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=1, batch_size=16384)
    memo = CostMemo(system, workload)
    schedules = [Schedule({0: float(k)}, {0: float(k + 1)}) for k in range(DES_SCHEDULES + 2)]
    for k, schedule in enumerate(schedules):
        memo.keep_des_schedule(k, schedule)
    assert [memo.des_schedule(k) for k in range(len(schedules))] == [None, None, *schedules[2:]]


def _fresh_index(system: object, workload: object, plan_name: str) -> GraphIndex:
    """A new index of the plan's chained graph (each call its own object, rounds not worked out)."""
    plan = make_plan(plan_name, workload, system)  # type: ignore[arg-type]
    graph = simulate_training(system, workload, plan, SimulationOptions()).graph  # type: ignore[arg-type]
    assert isinstance(graph, ChainedGraph)
    return graph.index()


def _same_rounds(a: KahnRounds, b: KahnRounds) -> bool:
    arrays = ("order", "rank", "at", "waiting")
    return (
        all(getattr(a, name).tolist() == getattr(b, name).tolist() for name in arrays)
        and a.ends == b.ends
        and a.runs == b.runs
        and [x.tolist() for x in a.sources] == [x.tolist() for x in b.sources]
        and [x.tolist() for x in a.targets] == [x.tolist() for x in b.targets]
    )


def test_kept_kahn_rounds_are_those_of_a_fresh_build_and_serve_only_their_structure() -> None:
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    memo = CostMemo(system, workload)
    first = _fresh_index(system, workload, "table_wise")
    kept = memo.kahn_rounds(first)
    assert kept is first.kahn_rounds
    # Another index of an equal graph (built again, as the next evaluation does): a hit, kept on
    # the index for the scheduler, and the rounds a fresh build of its own gives.
    again = _fresh_index(system, workload, "table_wise")
    assert again is not first and "kahn_rounds" not in again.__dict__
    assert memo.kahn_rounds(again) is kept and again.kahn_rounds is kept
    assert _same_rounds(kept, _kahn_rounds(_fresh_index(system, workload, "table_wise")))
    # Another plan's graph: no hit, its own rounds.
    other = _fresh_index(system, workload, "row_wise")
    rounds = memo.kahn_rounds(other)
    assert rounds is not kept
    assert _same_rounds(rounds, _kahn_rounds(_fresh_index(system, workload, "row_wise")))
    # The same sizes, one dependency moved: the arrays are compared whole, so no hit either.
    moved = _fresh_index(system, workload, "table_wise")
    dep_flat = moved.dep_flat_array.copy()
    dep_flat[-1] = dep_flat[-1] - 1
    moved._keep(dep_flat_array=dep_flat)
    rounds = memo.kahn_rounds(moved)
    assert rounds is not kept and _same_rounds(rounds, _kahn_rounds(moved))
    assert not _same_rounds(rounds, kept)
    # The newest ``KAHN_ROUNDS`` structures are kept, the oldest let go.
    for k in range(KAHN_ROUNDS):
        shifted = _fresh_index(system, workload, "table_wise")
        dep_flat = shifted.dep_flat_array.copy()
        dep_flat[k] = dep_flat[k] - 1
        shifted._keep(dep_flat_array=dep_flat)
        memo.kahn_rounds(shifted)
    assert memo.kahn_rounds(_fresh_index(system, workload, "table_wise")) is not kept


def test_costs_kept_by_op_identity_are_those_by_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CostMemo.durations_by_id`` and ``energies_by_id``: the builder's ops recur across
    evaluations (``shard_ops``), so their durations and kernel energies are found by identity; each
    is the one a memo-less cost model works out, a lookup's only under the access key it was priced
    with (the same op object under another table grouping is priced again), and letting every
    entry go at the bound changes nothing."""
    import recsim.cost.model as model_module

    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    memo = CostMemo(system, workload)
    plan = make_plan("table_wise", workload, system)
    options = SimulationOptions(costs=memo, fold_ranks=True)
    first = simulate_training(system, workload, plan, options)
    durations, energies = dict(memo.durations_by_id), dict(memo.energies_by_id)
    assert durations and energies
    second = simulate_training(system, workload, plan, options)
    assert second.result.to_dict() == first.result.to_dict()
    ops = second.graph.index().op_table.ops
    for kept in (durations, energies):  # most are found again
        assert sum(id(op) in kept and kept[id(op)][0] is op for op in ops) > len(ops) // 2
    metadata = second.graph.metadata
    fused, slices = metadata.get("fused_tables"), metadata.get("table_slices")
    fresh = CostModel(system, workload, fused_tables=fused, table_slices=slices)
    shared = CostModel(system, workload, fused_tables=fused, table_slices=slices, memo=memo)
    assert [shared.kernel_j(op) for op in ops] == [fresh.kernel_j(op) for op in ops]
    assert [shared._op_duration(op) for op in ops] == [fresh._op_duration(op) for op in ops]
    # A lookup under another access key: not the kept entries' costs, but its own.
    lookup = next(op for op in ops if type(op).__name__ == "Embedding")
    alone = CostModel(system, workload, memo=memo)  # no fused tables: the table's own access key
    assert alone.access_key(lookup.table) != shared.access_key(lookup.table)
    plain = CostModel(system, workload)
    assert alone.kernel_j(lookup) == plain.kernel_j(lookup)
    assert alone._op_duration(lookup) == plain._op_duration(lookup)
    assert memo.energies_by_id[id(lookup)][1] == alone.access_key(lookup.table)
    assert memo.durations_by_id[id(lookup)][1] == alone.access_key(lookup.table)
    # At the bound every entry goes, and the figures stay.
    monkeypatch.setattr(model_module, "OPS_BY_ID_KEPT", 3)
    third = simulate_training(system, workload, plan, options)
    assert third.result.to_dict() == first.result.to_dict()
    assert len(memo.durations_by_id) <= 3 and len(memo.energies_by_id) <= 3


def _distinct_plans(workload: Workload, world: int, count: int) -> list[Plan]:
    """``count`` table-wise plans, plan ``k`` with its ranks turned by ``k`` and its table ``k``
    split in halves by popularity over two ranks (distinct shards, ops, slices, exchanges and
    input parts)."""
    base = table_wise_round_robin(workload, world)
    plans = []
    for k in range(count):
        shards = [replace(s, ranks=((s.ranks[0] + k) % world,)) for s in base.shards]
        whole = shards[k]
        half, other = whole.row_end // 2, (whole.ranks[0] + 1) % world
        split = replace(whole, sharding="row_wise", order="popularity")
        shards[k : k + 1] = [replace(split, row_end=half), replace(split, row_start=half, ranks=(other,))]
        plans.append(replace(base, shards=tuple(shards)))
    return plans


def _run_all(memo: CostMemo, plans: list[Plan], fidelity: str = "analytic") -> list[dict[str, object]]:
    system, workload = memo.system, memo.workload
    assert workload is not None
    options = SimulationOptions(costs=memo, fold_ranks=fidelity == "analytic", fidelity=fidelity)
    return [simulate_training(system, workload, plan, options).result.to_dict() for plan in plans]


def test_shard_ops_let_their_ops_go_at_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """``SHARD_OPS_KEPT`` and ``SLICES_KEPT``: past them a ``ShardOps`` lets its shards' ops and
    figures, its slices' models and the builder's fused and presorted lookups go; the ops made
    again are equal values, costed alike, and a graph built while its ops' entries went keeps its
    own (the results are bit for bit)."""
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    plans = _distinct_plans(workload, system.num_accelerators, 3)
    free = CostMemo(system, workload)
    expected = _run_all(free, plans)
    ops = free.shard_ops
    bound = 5
    grown = (ops._ops, ops._figures, ops.fused_ops, ops.sorted_ops, ops._slices)
    assert all(len(kept) > bound for kept in grown)  # without the bound, each holds more
    monkeypatch.setattr(shard_ops_module, "SHARD_OPS_KEPT", bound)
    monkeypatch.setattr(shard_ops_module, "SLICES_KEPT", bound)
    memo = CostMemo(system, workload)
    assert _run_all(memo, plans) == expected
    ops = memo.shard_ops
    kept = (ops._ops, ops._figures, ops.fused_ops, ops.sorted_ops, ops._slices)
    assert all(0 < len(entries) <= bound for entries in kept)


def test_shard_ops_keep_the_newest_plans_exchanges_and_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PLANS_KEPT``: a ``ShardOps`` keeps the pooled exchanges and input ops of the newest plans
    only, and the results are those of keeping every plan's."""
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    plans = _distinct_plans(workload, system.num_accelerators, 4)
    free = CostMemo(system, workload)
    expected = _run_all(free, plans)
    assert len(free.shard_ops.exchanges) == len(free.shard_ops.inputs) == 4
    monkeypatch.setattr(shard_ops_module, "PLANS_KEPT", 2)
    memo = CostMemo(system, workload)
    assert _run_all(memo, plans) == expected
    for kept in (memo.shard_ops.exchanges, memo.shard_ops.inputs):
        assert [entry[0] for entry in kept.values()] == plans[2:]  # the newest, oldest first
    # A plan let go is laid down again, to the same figures.
    assert _run_all(memo, plans[:1]) == expected[:1]


def test_the_memo_lets_its_value_keyed_costs_go_at_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """``VALUES_KEPT``, ``MIXTURES_KEPT`` and ``TRAFFIC_KEPT``: past them the memo's collectives,
    op durations and energies, mixtures and resource traffic are let go, each found again worked
    out again: the same results, analytic and DES."""
    import recsim.cost.model as model_module
    import recsim.engine.resources as resources_module

    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    plans = _distinct_plans(workload, system.num_accelerators, 2)
    free = CostMemo(system, workload)
    expected = _run_all(free, plans) + _run_all(free, plans[:1], "des")
    bound = 5
    grown = (free.collectives, free.by_op, free.energy_by_op, free.mixtures, free.traffic)
    assert all(len(kept) > bound for kept in grown)  # without the bound, each holds more
    monkeypatch.setattr(model_module, "VALUES_KEPT", bound)
    monkeypatch.setattr(model_module, "MIXTURES_KEPT", bound)
    monkeypatch.setattr(resources_module, "TRAFFIC_KEPT", bound)
    memo = CostMemo(system, workload)
    assert _run_all(memo, plans) + _run_all(memo, plans[:1], "des") == expected
    kept = (memo.collectives, memo.by_op, memo.energy_by_op, memo.mixtures, memo.traffic)
    assert all(0 < len(values) <= bound for values in kept)


def _interned_ids(key: object) -> tuple[int, ...]:
    """The canonical tuples' ids in a collective's value key (``CostModel.collective_key``, the
    DES traffic's ``(key, rank)``): a whole all-to-all's parts, one part's group and splits."""
    if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], tuple):
        key = key[0]  # a traffic key: (the collective's key, a rank or None)
    if not isinstance(key, tuple) or not key:
        return ()
    if key[0] == "whole":
        return tuple(key[1])
    if key[0] == "one":
        return (key[2], key[5], key[6])
    return ()


def test_the_memo_lets_its_tuples_go_with_the_costs_keyed_by_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """``TUPLE_ELEMENTS_KEPT``: past it a memo's canonical tuples are let go as the next cost model
    is made, with every cost keyed by their ids (new dicts: a model made before keeps its own); the
    results are those of keeping them all, analytic and DES, and every id a kept key names is that
    of a tuple the memo keeps."""
    import recsim.cost.memo as memo_module

    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384, precision="fp16")
    plans = _distinct_plans(workload, system.num_accelerators, 3)
    free = CostMemo(system, workload)
    expected = _run_all(free, plans) + _run_all(free, plans[:1], "des")
    alone = CostMemo(system, workload)
    _run_all(alone, plans[:1], "des")
    one_run = len(alone.canonical_tuples)  # what the last evaluation interns on its own
    bound = 2
    assert one_run > bound and len(free.canonical_tuples) > one_run  # uncapped, they pile up
    monkeypatch.setattr(memo_module, "TUPLE_ELEMENTS_KEPT", bound * system.num_accelerators)
    memo = CostMemo(system, workload)
    assert memo.tuples_kept == bound
    assert _run_all(memo, plans) + _run_all(memo, plans[:1], "des") == expected
    assert 0 < len(memo.canonical_tuples) <= one_run
    alive = {id(None), *map(id, memo.canonical_tuples.values())}  # None: a part without splits
    keys = [*memo.collectives, *memo.traffic, *(key for _, key in memo.whole_keys.values())]
    named = [i for key in keys for i in _interned_ids(key)]
    assert named and set(named) <= alive
    # The next model lets them go: it takes new dicts, and the old ones (a model made before may
    # still hold them) are left as they were, not cleared under that model.
    old = (memo.canonical_tuples, memo.collectives, memo.traffic, memo.whole_keys)
    sizes = [len(kept) for kept in old]
    model = CostModel(system, workload, memo=memo)
    new = (memo.canonical_tuples, memo.collectives, memo.traffic, memo.whole_keys)
    assert model.traffic is memo.traffic and not any(new) and all(sizes)
    assert [len(kept) for kept in old] == sizes and not any(map(operator.is_, old, new))


def test_models_made_before_the_tuples_went_cost_on_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cost models made before and after ``fresh_tuples`` costing interleaved (a planner may hold
    one while another evaluation runs), the oldest let die as they go, each cost as a model without
    a memo does: groups made afresh as lists, every one interned anew, find no other group's cost."""
    import recsim.cost.memo as memo_module

    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=16384)
    monkeypatch.setattr(memo_module, "TUPLE_ELEMENTS_KEPT", system.num_accelerators)  # 1 tuple
    memo = CostMemo(system, workload)
    fresh = CostModel(system, workload)
    models: list[CostModel] = []
    for _ in range(20):
        for group in ([0, 1], [0, 8], [1, 9], [2, 3]):
            # Each new model lets go of the tuples; the oldest of the last three dies.
            models = [*models[-2:], CostModel(system, workload, memo=memo)]
            for model in models:  # the older ones cost on after a newer one let go
                op = Collective(CollectiveOp.ALL_REDUCE, "ar", list(group), 64e6)  # type: ignore[arg-type]
                assert model.collective_s(op) == fresh.collective_s(op)
    assert len(memo.canonical_tuples) == 1
