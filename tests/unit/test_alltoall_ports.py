"""Direct all-to-all inside a node: a rank's bound is all its scale-up links at once (its port),
not the sum of the rings a ring collective would take, so the cost meets its flows on NVLink
meshes (4-GPU HGX boards, DGX-1's hybrid cube mesh) as on NVSwitch."""

from __future__ import annotations

import numpy as np
import pytest

from recsim.api import load_system
from recsim.cost.collectives import REGISTRY, Level, collective_cost, collective_flows
from recsim.cost.collectives.base import Flow, group_layout, route_edge_shares
from recsim.engine.network import simulate_flows
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.topology import build_topology
from tests.unit.test_alltoall_pxn import _parts

MiB = 2**20


@pytest.mark.parametrize(
    ("system", "port", "rings"),
    [
        # Each GPU's three peers over 6 (H100, NVLink4) or 4 (A100, NVLink3) links of 25 GB/s;
        # the two rings a ring collective takes sum to two thirds of that.
        ("hgx-h100-4gpu", 3 * 6 * 25e9, 300e9),
        ("hgx-a100-4gpu", 3 * 4 * 25e9, 200e9),
        # DGX-1's V100: 6 NVLink2 links of 25 GB/s, which its rings use in full.
        ("dgx-1-v100", 6 * 25e9, 150e9),
        # NVSwitch: the port is the rings' figure (18 x 25 GB/s on H100).
        ("dgx-h100", 18 * 25e9, 450e9),
    ],
)
def test_port_bandwidth_is_every_scale_up_link(system: str, port: float, rings: float) -> None:
    topology = build_topology(load_system(system))
    layout = group_layout(tuple(range(topology.system.node.num_accelerators)), topology)
    assert layout.port_bandwidth.tolist() == [port] * layout.n
    assert layout.intra_bandwidth == rings


def test_four_gpu_mesh_uniform_all_to_all() -> None:
    """256 MiB per rank on hgx-h100-4gpu: each rank sends 3 x 64 MiB at 450 GB/s (it was charged
    at the rings' 300 GB/s: 863 us where its flows take 575 us)."""
    topology = build_topology(load_system("hgx-h100-4gpu"))
    group = (0, 1, 2, 3)
    op = Collective(CollectiveOp.ALL_TO_ALL, "x", group, 256 * MiB, "fp16")
    (stage,) = REGISTRY["direct"].stages(op, group_layout(group, topology))
    intra = stage.levels[Level.INTRA]
    assert intra.bytes == 192 * MiB
    assert intra.bandwidth == 450e9
    cost = collective_cost(op, topology, "direct")
    flows = collective_flows(op, topology, "direct")
    alone = simulate_flows([Flow(f.src, f.dst, f.bytes / f.efficiency) for f in flows], topology)
    assert cost.bandwidth_s == pytest.approx(alone, rel=1e-12)


@pytest.mark.parametrize(
    ("system", "group"),
    [
        ("hgx-h100-4gpu", (0, 1, 2, 3)),
        ("hgx-h100-4gpu", (0, 1, 3)),
        ("hgx-a100-4gpu", (0, 1, 2, 3)),
        ("dgx-1-v100", tuple(range(8))),
        # Two pairs of DGX-1 GPUs, each GPU linked to all three others: charged at the group's
        # ring (one link of 25 GB/s between the pairs), 1.9-3x its flows' time.
        ("dgx-1-v100", (0, 1, 6, 7)),
        ("dgx-1-v100", (0, 5)),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bandwidth_term_is_the_flows_busiest_link(system: str, group: tuple[int, ...], seed: int) -> None:
    """The bandwidth term of a direct all-to-all inside a node is its flows' busiest link (wire
    bytes over rate), which the idle-network flow simulation takes too, for skewed matrices."""
    topology = build_topology(load_system(system))
    rng = np.random.default_rng(seed)
    n = len(group)
    m = rng.choice([0.0, 1.0], (n, n), p=[0.3, 0.7]) * rng.integers(1, 64, (n, n)) * MiB
    m[np.arange(n), (np.arange(n) + 1) % n] += MiB  # every rank sends something
    parts = _parts(group, m)
    cost = collective_cost(parts, topology, "direct")
    flows = collective_flows(parts, topology, "direct")
    loads: dict[tuple[str, str], float] = {}
    for f in flows:
        for edge, share in route_edge_shares(topology, f.src, f.dst):
            loads[edge] = loads.get(edge, 0.0) + f.bytes / f.efficiency * share
    succ = topology.graph.succ
    busiest = max(load / succ[a][b]["bandwidth_bytes_per_s"] for (a, b), load in loads.items())
    assert cost.bandwidth_s == pytest.approx(busiest, rel=1e-12)
    alone = simulate_flows([Flow(f.src, f.dst, f.bytes / f.efficiency) for f in flows], topology)
    assert alone == pytest.approx(busiest, rel=1e-9)
