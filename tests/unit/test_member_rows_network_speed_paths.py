"""The chained index's collective members laid down in arrays (``GraphIndex.repeated``) and the
network busy time's unions in arrays (``recsim.engine.simulate._network_busy``) give exactly what
the previous code gave: the members read off the plain index of the chained nodes, and the walk
over the window's collectives (``_network_busy_walk``)."""

from __future__ import annotations

import numpy as np
import pytest

from recsim.api import make_plan, prepare
from recsim.engine import simulate as sim
from recsim.engine.simulate import SimulationOptions, simulate_training
from recsim.graph.build import BuildOptions, build_training_step
from recsim.graph.index import GraphIndex
from recsim.graph.steps import ChainedGraph, chain_steps


@pytest.mark.parametrize(("plan_name", "fold", "steps"), [("table_wise", True, 3), ("row_wise", False, 2)])
def test_chained_members_equal_the_plain_index(plan_name: str, fold: bool, steps: int) -> None:
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2, batch_size=32768, precision="fp16")
    plan = make_plan(plan_name, workload, system)
    step = build_training_step(
        workload, plan, BuildOptions(validate_plan=False, ranks_per_node=8, fold_ranks=fold)
    )
    got = ChainedGraph.lazy(step, steps).index()
    expected = GraphIndex.of(chain_steps(step, steps))
    assert got.members == expected.members
    assert len(got.members) == steps * len(GraphIndex.of(step).members) > 0
    got_vertices, got_flat, got_bounds = got.member_rows
    vertices, flat, bounds = expected.member_rows
    assert (got_vertices, got_bounds) == (vertices, bounds)
    assert got_flat.dtype == flat.dtype and np.array_equal(got_flat, flat)
    positions = expected.collective_positions_array
    assert got.collective_positions_array.dtype == positions.dtype
    assert np.array_equal(got.collective_positions_array, positions)


@pytest.mark.parametrize(
    ("plan_name", "nodes", "fold", "fidelity"),
    [
        ("table_wise", 4, True, "analytic"),
        ("table_wise", 2, False, "analytic"),
        ("row_wise", 2, False, "analytic"),
        ("table_wise", 2, False, "des"),
    ],
)
def test_network_busy_in_arrays_equals_the_walk(
    plan_name: str, nodes: int, fold: bool, fidelity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    system, workload = prepare(
        "dgx-h100", "dlrm-dcnv2", nodes=nodes, batch_size=16384 * nodes, precision="fp16"
    )
    plan = make_plan(plan_name, workload, system)
    seen: list[dict[int, float]] = []
    arrays = sim._network_busy

    def both(timing, window, system_):  # type: ignore[no-untyped-def]
        got = arrays(timing, window, system_)
        index = timing.index
        at = index.collective_positions_array
        taken = at[sim._window_mask(index, window)[at]]
        walked = sim._network_busy_walk(timing, taken, system_.node.num_accelerators)
        # The same ranks in the same order, and the same floats.
        assert list(got.items()) == list(walked.items())
        seen.append(got)
        return got

    monkeypatch.setattr(sim, "_network_busy", both)
    result = simulate_training(
        system, workload, plan, SimulationOptions(fidelity=fidelity, fold_ranks=fold)
    ).result
    assert result.status == "ok" and seen and seen[0]  # the collectives span nodes: not empty
