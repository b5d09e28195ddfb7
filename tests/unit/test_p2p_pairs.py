"""Send/recv inside a node: one pair's route (its direct NVLinks on a mesh, one relaying GPU where
it has none, the whole NVLink port through NVSwitch, PCIe), the per-pair bound the direct
all-to-all takes, not the sum of the rings a ring collective of the node would use."""

from __future__ import annotations

import itertools

import pytest

from recsim.api import load_system
from recsim.cost.collectives import REGISTRY, Level, collective_cost, collective_flows
from recsim.cost.collectives.base import Flow, group_layout
from recsim.engine.network import simulate_flows
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.topology import build_topology

MiB = 2**20
GBps = 1e9


def _intra_bandwidth(system: str, pair: tuple[int, int]) -> float:
    topology = build_topology(load_system(system))
    op = Collective(CollectiveOp.SEND, "s", pair, 64 * MiB)
    (stage,) = REGISTRY["p2p"].stages(op, group_layout(pair, topology))
    return stage.levels[Level.INTRA].bandwidth


@pytest.mark.parametrize(
    ("system", "pair", "bandwidth"),
    [
        # 4-GPU HGX meshes: each pair has its own 6 (H100, NVLink4) or 4 (A100, NVLink3) links of
        # 25 GB/s; the node's two rings sum to twice that (300 / 200 GB/s).
        ("hgx-h100-4gpu", (0, 1), 6 * 25 * GBps),
        ("hgx-h100-4gpu", (3, 2), 6 * 25 * GBps),
        ("hgx-a100-4gpu", (0, 2), 4 * 25 * GBps),
        # DGX-1's hybrid cube mesh: one link (0-1), two links (0-3), none (0-5: NVB through GPU 1,
        # its one link to GPU 1 the limit; 0-7: through GPU 4, two links each way).
        ("dgx-1-v100", (0, 1), 25 * GBps),
        ("dgx-1-v100", (0, 3), 2 * 25 * GBps),
        ("dgx-1-v100", (0, 5), 25 * GBps),
        ("dgx-1-v100", (0, 7), 2 * 25 * GBps),
        # NVSwitch: the GPU's whole NVLink (18 x 25 GB/s on H100), as before.
        ("dgx-h100", (2, 6), 18 * 25 * GBps),
    ],
)
def test_a_pair_moves_at_its_route(system: str, pair: tuple[int, int], bandwidth: float) -> None:
    assert _intra_bandwidth(system, pair) == bandwidth


def test_a_pair_is_not_charged_the_node_rings() -> None:
    """The 4-GPU H100 mesh's rings sum to 300 GB/s per GPU; one pair's direct links carry half."""
    topology = build_topology(load_system("hgx-h100-4gpu"))
    assert group_layout((0, 1, 2, 3), topology).intra_bandwidth == 300 * GBps
    assert _intra_bandwidth("hgx-h100-4gpu", (0, 1)) == 150 * GBps


@pytest.mark.parametrize(
    "system", ["hgx-h100-4gpu", "hgx-a100-4gpu", "dgx-1-v100", "dgx-h100", "h100-pcie-server", "big-basin"]
)
def test_bandwidth_term_is_the_lone_flow(system: str) -> None:
    """Every ordered pair of a node: the cost's bandwidth term is what its flow takes on the idle
    network (wire bytes over the route's max-flow, or a staged pair's cap), as the all-to-all's is
    (test_alltoall_ports)."""
    topology = build_topology(load_system(system))
    local = topology.system.node.num_accelerators
    for pair in itertools.permutations(range(local), 2):
        op = Collective(CollectiveOp.SEND, "s", pair, 256 * MiB)
        cost = collective_cost(op, topology, "p2p")
        flows = collective_flows(op, topology, "p2p")
        # A pair through host memory (SHM) keeps its staging's cap, a wire rate as the links'.
        wire = [Flow(f.src, f.dst, f.bytes / f.efficiency, cap_bytes_per_s=f.cap_bytes_per_s) for f in flows]
        alone = simulate_flows(wire, topology)
        assert cost.bandwidth_s == pytest.approx(alone, rel=1e-12), pair
