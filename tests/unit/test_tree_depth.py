"""Double binary tree: its network steps are NCCL's tuning model's, 2 x log2i(nodes) (floor)."""

from __future__ import annotations

import pytest

from recsim.api import load_system
from recsim.cost.collectives import REGISTRY, Level
from recsim.cost.collectives.base import group_layout
from recsim.cost.collectives.tree import binary_tree_edges
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.topology import build_topology


def _depth(count: int) -> int:
    """Hops from the root to the deepest leaf of ``binary_tree_edges(count)``, walked."""
    parent = {child: p for child, p in binary_tree_edges(count, mirror=False)}
    deepest = 0
    for v in range(count):
        hops = 0
        while v in parent:
            v, hops = parent[v], hops + 1
        deepest = max(deepest, hops)
    return deepest


@pytest.mark.parametrize(("nodes", "steps"), [(2, 2), (3, 2), (4, 4), (5, 4), (7, 4), (8, 6), (9, 6)])
def test_tree_network_steps_are_twice_the_floor_of_log2_nodes(nodes: int, steps: int) -> None:
    """src/graph/tuning.cc: ``2 * (... + log2i(nNodes) * interLat)``; 3 nodes are a root and two
    leaves, one hop up and one down (ceil(log2 3) had counted 4 steps)."""
    topology = build_topology(load_system("dgx-h100", nodes=nodes))
    group = tuple(range(topology.system.num_accelerators))
    op = Collective(CollectiveOp.ALL_REDUCE, "x", group, 2.0**26, "fp16")
    (stage,) = REGISTRY["tree"].stages(op, group_layout(group, topology))
    assert stage.levels[Level.INTER].steps == steps
    assert steps == 2 * _depth(nodes)  # the depth of the trees the flows build
