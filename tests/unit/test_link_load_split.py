"""The link loads the utilisation reports (``recsim.engine.network.edge_loads``) split each flow
over its equal-cost paths as the cost model (``route_edge_shares``) and the DES filling do: in
proportion to each path's weakest link, not evenly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.typing import NDArray

from recsim.api import load_system, prepare
from recsim.cost.collectives.base import Flow, route_edge_shares
from recsim.engine.network import _edge_index, edge_loads, path_split, simulate_flows
from recsim.hardware.topology import Topology, build_topology

MiB = 2**20


def test_dgx_h100_uniform_all_to_all_by_hand() -> None:
    """dgx-h100, 64 MiB from every GPU to each of its 7 peers. An H100's 18 NVLink4 links (25 GB/s
    each) reach the 4 NVSwitch chips in groups of 5, 4, 4, 5, so a pair's four paths are 125, 100,
    100 and 125 GB/s wide and carry 5/18, 4/18, 4/18, 5/18 of its bytes. GPU 0's link to chip 0
    then carries 7 x 64 MiB x 5/18 (130.5 MB) and to chip 1 7 x 64 MiB x 4/18 (104.4 MB): both full
    after 7 x 64 MiB / 450 GB/s = 1043.9 us, which the DES takes too. An even split put
    7 x 64 MiB / 4 on the 100 GB/s links: 1174.4 us, 12.5 % more."""
    topology = build_topology(load_system("dgx-h100"))
    index = _edge_index(topology)
    pairs = list(itertools.permutations(range(8), 2))
    srcs = [f"n0.gpu{i}" for i, _ in pairs]
    dsts = [f"n0.gpu{j}" for _, j in pairs]
    loads = edge_loads(srcs, dsts, np.full(len(pairs), 64.0 * MiB), topology)
    to_chip = [loads[index.ids[("n0.gpu0", f"n0.nvsw{k}")]] for k in range(4)]
    assert to_chip == pytest.approx([7 * 64 * MiB * n / 18 for n in (5, 4, 4, 5)], rel=1e-12)
    from_chip = [loads[index.ids[(f"n0.nvsw{k}", "n0.gpu5")]] for k in range(4)]
    assert from_chip == pytest.approx(to_chip, rel=1e-12)
    capacity = index.capacity()
    busiest_s = float((loads / capacity).max())
    assert busiest_s == pytest.approx(7 * 64 * MiB / 450e9, rel=1e-12)
    assert busiest_s == pytest.approx(1043.9e-6, abs=0.05e-6)
    flows = [Flow(s, d, 64.0 * MiB) for s, d in zip(srcs, dsts, strict=True)]
    assert simulate_flows(flows, topology) == pytest.approx(busiest_s, rel=1e-9)


@pytest.mark.parametrize(
    ("system", "pair"), [("dgx-h100", (0, 3)), ("dgx-1-v100", (0, 5)), ("big-basin", (0, 7))]
)
def test_a_lone_flow_s_busiest_link_is_its_des_time(system: str, pair: tuple[int, int]) -> None:
    """One flow alone: its busiest link's load over its rate is the time the DES gives it."""
    topology = build_topology(load_system(system))
    src, dst = f"n0.gpu{pair[0]}", f"n0.gpu{pair[1]}"
    loads = edge_loads([src], [dst], np.array([256.0 * MiB]), topology)
    busiest_s = float((loads / _edge_index(topology).capacity()).max())
    assert busiest_s == pytest.approx(simulate_flows([Flow(src, dst, 256.0 * MiB)], topology), rel=1e-9)


def test_path_split_is_by_weakest_link() -> None:
    """Two paths of 2 links each: the first's weakest is 50, the second's 150: 1/4 and 3/4."""
    capacity = np.array([100.0, 50.0, 150.0, 200.0])
    shares = path_split(np.array([0, 1, 2, 3]), np.array([2, 2]), capacity)
    assert shares.tolist() == [0.25, 0.75]


def _by_route_edge_shares(topology: Topology, src: str, dst: str, size: float) -> NDArray[np.float64]:
    index = _edge_index(topology)
    out = np.zeros(len(index.edges))
    for edge, share in route_edge_shares(topology, src, dst):
        out[index.ids[edge]] += size * share
    return out


def test_a_relayed_route_splits_by_its_narrowest_part_and_follows_a_lowered_link() -> None:
    """dgx-h100 on rails: GPU 0's bytes for GPU 1 of another node go over NVSwitch to GPU 1, then
    its PCIe link and NIC (PXN). Each of the four combined paths is as narrow as the NIC, so they
    split evenly, not 5-4-4-5 as the NVSwitch part alone would; once GPU 0's link to chip 1 is
    lowered in place to 10 GB/s, below the NIC, that path takes less (the split is read afresh)."""
    system, _ = prepare(
        "dgx-h100",
        "dlrm-dcnv2",
        nodes=4,
        overrides=("cluster.scale_out.topology=rail_optimized", "cluster.scale_out.tiers=2"),
    )
    topology = build_topology(system)  # its own: a link is lowered below
    index = _edge_index(topology)
    src, dst, size = "n0.gpu0", "n1.gpu1", 64.0 * MiB
    to_chip = [index.ids[("n0.gpu0", f"n0.nvsw{k}")] for k in range(4)]
    loads = edge_loads([src], [dst], np.array([size]), topology)
    assert loads[to_chip].tolist() == pytest.approx([size / 4] * 4, rel=1e-12)
    assert loads.tolist() == pytest.approx(
        _by_route_edge_shares(topology, src, dst, size).tolist(), rel=1e-12
    )
    topology.graph.edges["n0.gpu0", "n0.nvsw1"]["bandwidth_bytes_per_s"] = 10e9
    loads = edge_loads([src], [dst], np.array([size]), topology)
    nic = 50e9  # the 400 Gb/s NIC's link to its leaf, the narrowest part of the other paths
    assert topology.graph.edges["n0.nic1", "rail1.leaf0"]["bandwidth_bytes_per_s"] == nic
    assert loads[to_chip].tolist() == pytest.approx(
        [size * w / (3 * nic + 10e9) for w in (nic, 10e9, nic, nic)], rel=1e-12
    )
    assert loads.tolist() == pytest.approx(
        _by_route_edge_shares(topology, src, dst, size).tolist(), rel=1e-12
    )
