"""Invariants of the planner on random small models: every plan covers each table exactly, fits in
memory, and the graph it builds conserves bytes, which are the bytes its figures report; more HBM
never turns a feasible model infeasible."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsim.api import make_plan
from recsim.config.loader import Override
from recsim.errors import InfeasibleError
from recsim.graph.build import build_training_step
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.library import HardwareLibrary
from recsim.planner.stats import plan_stats
from recsim.planner.storage import capacity, check_fits, plan_usage
from recsim.workload.library import WorkloadLibrary
from tests.conftest import FIXTURES

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HW = HardwareLibrary([FIXTURES / "minilib"])
WL = WorkloadLibrary([FIXTURES / "workloads"])

tables = st.lists(
    st.tuples(
        st.integers(1, 2_000_000),  # rows
        st.sampled_from([1, 2, 7, 40]),  # pooling
        st.sampled_from([4, 32, 64]),  # dim
        st.sampled_from(["uniform", "zipf"]),
    ),
    min_size=1,
    max_size=6,
)


def workload(spec: list[tuple[int, int, int, str]]):  # type: ignore[no-untyped-def]
    rows = ", ".join(
        f"{{name: t{i}, rows: {r}, pooling: {p}, dim: {d}, access: "
        + ("{dist: uniform}" if a == "uniform" else "{dist: zipf, alpha: 1.1}")
        + "}"
        for i, (r, p, d, a) in enumerate(spec)
    )
    # concatenation: tables of different dims (dot needs one dim)
    return WL.workload(
        "tiny-dlrm", [Override.parse(f"tables=[{rows}]"), Override.parse("interaction.type=cat")]
    )


def system(gpus: int, hbm: str | None = None):  # type: ignore[no-untyped-def]
    sets = [Override.parse("cluster.nodes=1"), Override.parse(f"node.accelerators.count={gpus}")]
    if hbm is not None:
        sets.append(Override.parse(f"node.accelerators.device.hbm.capacity={hbm}"))
    return HW.system("tiny", sets)


@SETTINGS
@given(
    spec=tables,
    gpus=st.sampled_from([1, 2, 4]),
    strategy=st.sampled_from(["greedy", "recshard", "flexshard"]),
)
def test_plans_cover_fit_and_conserve_bytes(spec, gpus, strategy) -> None:  # type: ignore[no-untyped-def]
    wl = workload(spec)
    sys_ = system(gpus)
    plan = make_plan(strategy, wl, sys_)
    plan.validate(wl)  # every table covered exactly once, no overlap
    check_fits(plan_usage(plan, wl, sys_), capacity(sys_))
    graph = build_training_step(wl, plan)
    graph.validate()  # all-to-all send/recv matrices agree across the group: bytes are conserved


@SETTINGS
@given(spec=tables)
def test_more_hbm_never_makes_a_model_infeasible(spec) -> None:  # type: ignore[no-untyped-def]
    wl = workload(spec)
    outcomes = []
    # From a few MB, where a third of the drawn models cross from infeasible to feasible: at 1 GB
    # and above every one of them fits (60 draws), which left the property nothing to check.
    for hbm in ("4 MB", "16 MB", "64 MB", "256 MB", "1 GB", "64 GB"):
        try:
            make_plan("greedy", wl, system(2, hbm), planner=["planner.tiers=[hbm]"])
            outcomes.append(True)
        except InfeasibleError:
            outcomes.append(False)
    # once feasible, feasible with more HBM
    assert outcomes == sorted(outcomes)


def test_the_hbm_ladder_crosses_from_infeasible_to_feasible() -> None:
    # Not vacuous: one 1M-row table of dim 64 (248 MiB in fp32 with its optimizer state; the planner
    # may narrow or split it) fits nowhere in 16 MB a GPU and fits in 64 MB, so the property above
    # sees both outcomes.
    wl = workload([(1_000_000, 2, 64, "uniform")])
    outcomes = []
    for hbm in ("16 MB", "64 MB"):
        try:
            make_plan("greedy", wl, system(2, hbm), planner=["planner.tiers=[hbm]"])
            outcomes.append(True)
        except InfeasibleError:
            outcomes.append(False)
    assert outcomes == [False, True]


@SETTINGS
@given(
    spec=tables,
    layout=st.sampled_from([(1, 2), (1, 4), (2, 2)]),
    strategy=st.sampled_from(
        ["table_wise", "row_wise", "column_wise", "table_row_wise", "table_column_wise", "grid", "greedy"]
    ),
    replicate=st.booleans(),
)
def test_plan_figures_are_the_built_steps_bytes(spec, layout, strategy, replicate) -> None:  # type: ignore[no-untyped-def]
    """What ``recsim plan`` reports a rank sends is what the step ``recsim run`` builds sends: its
    pooled all-to-all, its row splits' reduce-scatters, the next batch's ids, and its replicated
    tables' gradients (the all-reduces beyond the dense layers', which are the same on every rank)."""
    nodes, per_node = layout
    wl = workload(spec)
    sets = [Override.parse(f"cluster.nodes={nodes}"), Override.parse(f"node.accelerators.count={per_node}")]
    sys_ = HW.system("tiny", sets)
    plan = make_plan("data_parallel" if replicate else strategy, wl, sys_)
    stats = plan_stats(plan, sys_, wl)
    world = plan.world_size
    a2a, scatter, reduced, ids = [0.0] * world, [0.0] * world, [0.0] * world, [0.0] * world
    for n in build_training_step(wl, plan):
        op = n.op
        if not isinstance(op, Collective):
            continue
        if op.key.startswith("input_dist"):
            ids[n.rank] += math.fsum(op.send_bytes or ())
        elif op.key.startswith("a2a_fwd"):
            a2a[n.rank] += math.fsum(op.send_bytes) if op.send_bytes is not None else op.bytes
        elif op.key.startswith("rw_fwd"):
            scatter[n.rank] += op.bytes
        elif op.op is CollectiveOp.ALL_REDUCE:
            reduced[n.rank] += op.bytes
    for r, rank in enumerate(stats.ranks):
        assert math.isclose(rank.a2a_send_bytes, a2a[r], rel_tol=1e-9, abs_tol=1e-6)
        assert math.isclose(rank.reduce_scatter_bytes, scatter[r], rel_tol=1e-9, abs_tol=1e-6)
        assert math.isclose(rank.input_a2a_send_bytes, ids[r], rel_tol=1e-9, abs_tol=1e-6)
    dense = {round(reduced[r] - rank.dp_all_reduce_bytes, 3) for r, rank in enumerate(stats.ranks)}
    assert len(dense) == 1
    if replicate:
        # Every table whole on every rank: the gradients of all of them.
        rows = sum(t.rows * wl.table_dim(t) for t in wl.tables)
        assert all(rank.dp_all_reduce_bytes >= rows for rank in stats.ranks)


@SETTINGS
@given(spec=tables, dtype=st.sampled_from(["fp32", "fp16", "bf16", "fp8", "int8", "int4"]))
def test_workload_show_bytes_are_the_bytes_a_plan_stores(spec, dtype) -> None:  # type: ignore[no-untyped-def]
    """``recsim workload show``'s embedding bytes are what a plan in the workload's dtype stores
    (``recsim plan``'s bytes by dtype): an int8 or int4 row's scale and bias counted on both sides
    (``workload show`` had left them out: a third short for int8 rows of 16)."""
    w = WL.workload(
        "tiny-dlrm",
        [
            Override.parse(
                "tables=["
                + ", ".join(
                    f"{{name: t{i}, rows: {r}, pooling: {p}, dim: {d}}}"
                    for i, (r, p, d, _) in enumerate(spec)
                )
                + "]"
            ),
            Override.parse("interaction.type=cat"),
            Override.parse(f"embedding.dtype={dtype}"),
            # No optimizer state: the plan's bytes by dtype count it, workload show's do not.
            Override.parse("training.embedding_optimizer=sgd"),
        ],
    )
    plan = make_plan("table_wise", w, system(2))
    stats = plan_stats(plan, system(2), w)
    assert math.isclose(stats.bytes_by_dtype[dtype], w.embedding_bytes, rel_tol=1e-12)
    assert sum(stats.bytes_by_dtype.values()) == stats.bytes_by_dtype[dtype]
