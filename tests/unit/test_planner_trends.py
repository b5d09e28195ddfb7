"""The planner's trends, with the engine in the loop: every figure is a simulated training step
(analytic fidelity), exact and deterministic. The figures are printed (``pytest -s``).

a. capacity-constrained, skewed model: ``recshard`` (hot rows in HBM, cold rows on a slow tier)
   against every table whole in UVM (RecShard, ASPLOS'22: more than 6x);
b. skewed one-hot tables: ``flexshard``'s hot-row replication cuts the forward all-to-all bytes
   (FlexShard, 2023: more than 85 % less all-to-all traffic);
c. one huge table: row-wise beats table-wise; many small tables: table-wise beats row-wise;
d. ``auto`` is never worse than the best single strategy.
"""

from __future__ import annotations

import math

import pytest

from recsim.api import make_plan, prepare
from recsim.engine.simulate import Simulation, SimulationOptions, simulate_training
from recsim.errors import InfeasibleError
from recsim.graph.runtime import runtime
from recsim.hardware.system import System
from recsim.planner.proposers import proposer, registered_proposers
from recsim.planner.storage import capacity, shard_storage
from recsim.planner.types import Plan, Shard
from recsim.workload.spec import Workload


def simulate(system: System, workload: Workload, plan: Plan) -> Simulation:
    return simulate_training(system, workload, plan, SimulationOptions(fidelity="analytic"))


def throughput(system: System, workload: Workload, plan: Plan) -> float:
    result = simulate(system, workload, plan).result
    assert result.status == "ok", result.message
    return result.throughput_samples_per_s


def all_in_uvm(workload: Workload, world: int) -> Plan:
    """Every table whole in UVM, table-wise, round robin over the ranks (the RecShard baseline)."""
    shards = tuple(
        Shard(t.name, "table_wise", 0, t.rows, 0, workload.table_dim(t), (i % world,), "uvm")
        for i, t in enumerate(workload.tables)
    )
    return Plan(world, shards, strategy="all_uvm")


def forward_all_to_all_bytes(sim: Simulation) -> float:
    """Bytes all ranks send in the forward all-to-all of pooled embeddings, per step."""
    assert sim.graph is not None
    sent = math.fsum(
        math.fsum(n.op.send_bytes or ())
        for n in sim.graph.nodes
        if n.name.split("#")[0] == "a2a_fwd"  # chained steps are named a2a_fwd#<step>
    )
    return sent / sim.graph.metadata["steps"]


# -- a. RecShard on a capacity-constrained model -------------------------------------------------

#: DLRM-DCNv2 (zipf 1.05 tables) at dim 256 on 2 A100-80GB: ~195 GiB of fp32 tables (plus row-wise
#: Adagrad state) for ~136 GiB of HBM after the 15 % reserve -- the tables cannot all be in HBM.
CONSTRAINED = ["node.accelerators.count=2", "workload.embedding.dim=256"]


def test_recshard_beats_every_table_in_uvm_on_a_capacity_constrained_model() -> None:
    system, workload = prepare("dgx-a100", "dlrm-dcnv2", overrides=CONSTRAINED)
    world = system.num_accelerators
    whole = [Shard(t.name, "table_wise", 0, t.rows, 0, workload.table_dim(t), (0,)) for t in workload.tables]
    table_hbm = math.fsum(shard_storage(s, workload).hbm_bytes for s in whole)
    assert table_hbm > world * capacity(system).hbm_bytes_per_rank  # capacity-constrained
    baseline = throughput(system, workload, all_in_uvm(workload, world))
    # RecShard's setting (HBM and UVM only), then every slow tier the default config allows.
    for label, planner in (("hbm+uvm", ["planner.tiers=[hbm,uvm]"]), ("default tiers", [])):
        plan = make_plan("recshard", workload, system, planner=planner)
        value = throughput(system, workload, plan)
        factor = value / baseline
        split = sorted({s.table for s in plan.shards if s.order == "popularity" and s.tier == "hbm"})
        greedy = throughput(system, workload, make_plan("greedy", workload, system, planner=planner))
        print(
            f"\n[a] recshard ({label}) {value:,.0f} samples/s vs all tables in UVM {baseline:,.0f}: "
            f"{factor:.2f}x (greedy, whole tables per tier: {greedy:,.0f}, {greedy / baseline:.2f}x); "
            f"tables split hot/cold: {split}"
        )
        # RecShard reports > 6x over UVM-placed tables; the simulated factor here is ~8.4x. The
        # floor of 3x keeps a margin for recalibrations of the UVM and HBM tier models while still
        # asserting the trend: hot rows in HBM recover most of the UVM penalty.
        assert factor >= 3.0
        assert split, "a constrained model keeps some tables' hottest rows in HBM"


# -- b. FlexShard's hot-row replication ------------------------------------------------------------


def test_flexshard_cuts_the_forward_all_to_all_on_skewed_one_hot_tables() -> None:
    # MLPerf DLRM (26 one-hot tables) with zipf 1.2 tables on 2 p4d.24xlarge nodes (16 A100s, 400 Gb/s
    # of EFA per node: the all-to-all is expensive). Hot sets of 0.01-1 % of the rows: the
    # default's smallest, 0.1 % of a 40M-row table, costs a 20 MB gradient all-reduce per step, more
    # than the all-to-all it saves (HugeCTR's hybrid embedding sizes its frequent set by the same
    # balance).
    system, workload = prepare(
        "p4d-24xlarge", "dlrm-mlperf", nodes=2, overrides=["workload.embedding.access.alpha=1.2"]
    )
    planner = ["planner.hot_fractions=[0.0001,0.001,0.01]"]
    figures = {}
    for name in ("table_wise_greedy", "greedy", "flexshard"):
        plan = make_plan(name, workload, system, planner=planner)
        sim = simulate(system, workload, plan)
        assert sim.result.status == "ok", sim.result.message
        figures[name] = (forward_all_to_all_bytes(sim), sim.result.throughput_samples_per_s, plan)
    flex_bytes, flex_tput, flex_plan = figures["flexshard"]
    hot = [s for s in flex_plan.shards if s.sharding == "data_parallel" and s.order == "popularity"]
    drop = {name: 1.0 - flex_bytes / figures[name][0] for name in ("table_wise_greedy", "greedy")}
    twg_mb, greedy_mb = figures["table_wise_greedy"][0] / 1e6, figures["greedy"][0] / 1e6
    print(
        f"\n[b] forward all-to-all per step: table_wise_greedy {twg_mb:.1f} MB, "
        f"greedy {greedy_mb:.1f} MB, flexshard {flex_bytes / 1e6:.1f} MB "
        f"({drop['table_wise_greedy']:.1%} less than table_wise_greedy, {drop['greedy']:.1%} less than "
        f"greedy; {len(hot)} tables with replicated hot rows); throughput "
        f"{figures['table_wise_greedy'][1]:,.0f} / {figures['greedy'][1]:,.0f} / {flex_tput:,.0f} samples/s"
    )
    assert hot, "flexshard replicates the hottest rows of some tables"
    assert drop["table_wise_greedy"] >= 0.5  # FlexShard reports > 85 %; simulated here ~90 %
    assert flex_tput > figures["table_wise_greedy"][1]


# -- c. row-wise for one huge table, table-wise for many small ones --------------------------------


def _one_table_system_and_workload(tables: str) -> tuple[System, Workload]:
    return prepare("dgx-a100", "dlrm-dcnv2", overrides=[f"workload.tables=[{tables}]"])


def test_one_huge_table_is_faster_row_wise_than_table_wise() -> None:
    system, workload = _one_table_system_and_workload("{name: huge, rows: 80000000, pooling: 50}")
    tw = throughput(system, workload, make_plan("table_wise", workload, system))
    rw = throughput(system, workload, make_plan("row_wise", workload, system))
    print(f"\n[c] one 80M-row table, pooling 50: row_wise {rw:,.0f} vs table_wise {tw:,.0f} ({rw / tw:.2f}x)")
    assert rw > tw


def test_many_small_tables_are_faster_table_wise_than_row_wise() -> None:
    tables = ", ".join(f"{{name: s{i}, rows: 10000, pooling: 1}}" for i in range(64))
    system, workload = _one_table_system_and_workload(tables)
    tw = throughput(system, workload, make_plan("table_wise_greedy", workload, system))
    rw = throughput(system, workload, make_plan("row_wise", workload, system))
    print(f"\n[c] 64 tables x 10k rows: table_wise_greedy {tw:,.0f} vs row_wise {rw:,.0f} ({tw / rw:.2f}x)")
    assert tw > rw


# -- d. auto against every single strategy ---------------------------------------------------------

PAIRS = [
    ("dgx-h100", "dlrm-dcnv2", {"batch_size": 55296, "precision": "fp16"}),
    ("dgx-a100", "dlrm-mlperf", {}),
    ("dgx-a100", "rmc2", {}),
    ("dgx-a100", "dlrm-benchmark", {}),
]


@pytest.mark.parametrize(
    ("system_name", "workload_name", "kwargs"), PAIRS, ids=[f"{w}@{s}" for s, w, _ in PAIRS]
)
def test_auto_is_never_worse_than_the_best_single_strategy(
    system_name: str, workload_name: str, kwargs: dict[str, object]
) -> None:
    system, workload = prepare(system_name, workload_name, **kwargs)  # type: ignore[arg-type]
    auto = make_plan("auto", workload, system)
    auto_tput = throughput(system, workload, auto)
    best_name, best = "", 0.0
    for name in registered_proposers():
        if name == "auto" or not proposer(name).in_auto:
            continue  # torchrec: TorchRec's decision, not one of auto's candidates
        try:
            plan = make_plan(name, workload, system)
        except InfeasibleError:
            continue  # e.g. exhaustive past its limit: auto skips it too
        if runtime(workload.training.runtime).unsupported(plan, workload):
            continue  # a plan the framework cannot run (a what-if): auto skips it too
        result = simulate(system, workload, plan).result
        if result.status == "ok" and result.throughput_samples_per_s > best:
            best_name, best = name, result.throughput_samples_per_s
    print(
        f"\n[d] {workload_name} on {system_name}: auto ({auto.strategy}) {auto_tput:,.0f} samples/s, "
        f"best single {best_name} {best:,.0f}"
    )
    assert auto_tput >= best * (1 - 1e-9)
