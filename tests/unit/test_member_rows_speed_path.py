"""The chained index's collective members laid down in arrays (``GraphIndex.repeated``) give
exactly what the previous code gave: the members read off the plain index of the chained nodes."""

from __future__ import annotations

import numpy as np
import pytest

from recsim.api import make_plan, prepare
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
