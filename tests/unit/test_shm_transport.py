"""GPUs whose PCIe route crosses an Intel or Arm root complex talk through host memory (NCCL's SHM)."""

from __future__ import annotations

import numpy as np
import pytest

from recsim.api import load_system
from recsim.cost.collectives.model import collective_cost, collective_flows
from recsim.engine.network import collective_time_flows_s
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.topology import SHM_EFFICIENCY, build_topology, gpu_id


def _server(*overrides: str):
    return build_topology(load_system("h100-pcie-server", overrides=list(overrides)))


def test_peers_under_one_pcie_switch_talk_directly_the_others_through_host_memory():
    topology = _server()
    shm = topology.local_shm_pairs()
    # Two GPUs per PCIe switch: 0-1, 2-3, 4-5, 6-7 are peers (NCCL's PATH_PXB); the rest cross a CPU.
    expected = np.ones((8, 8), dtype=bool)
    for i in range(0, 8, 2):
        expected[i : i + 2, i : i + 2] = False
    assert (shm == expected).all()
    bw = topology.local_pair_bandwidth()
    assert bw[0, 1] == pytest.approx(63e9)
    assert bw[0, 2] == pytest.approx(63e9 * SHM_EFFICIENCY)
    assert bw[0, 7] == pytest.approx(63e9 * SHM_EFFICIENCY)
    # Not a GPU pair, or not in one node: no SHM.
    assert not topology.shm_pair(gpu_id(0, 0), "n0.cpu0")


def test_an_amd_host_lets_peer_traffic_through_its_root_complex():
    topology = _server("node.cpus.device=epyc-7742")
    assert not topology.local_shm_pairs().any()
    assert topology.local_pair_bandwidth()[0, 2] == pytest.approx(63e9)


def test_nvlink_systems_have_no_shm_pairs():
    for name in ("dgx-h100", "dgx-1-v100", "dgx-a100"):
        assert not build_topology(load_system(name)).local_shm_pairs().any(), name


@pytest.mark.parametrize("op", ["all_to_all", "all_reduce", "all_gather"])
def test_shm_slows_the_collectives_and_the_flows_agree(op):
    # The flows carry the same fraction of each link as the analytic stage charges.
    slow, fast = _server(), _server("node.cpus.device=epyc-7742")
    coll = Collective(CollectiveOp(op), "x", tuple(range(8)), 64 * 2**20, "fp16")
    t_slow, t_fast = collective_cost(coll, slow).time_s, collective_cost(coll, fast).time_s
    assert t_slow > 1.4 * t_fast
    assert collective_time_flows_s(coll, slow) == pytest.approx(t_slow, rel=1e-6)
    flows = collective_flows(coll, slow)
    eff = {(f.src, f.dst): f.efficiency for f in flows}
    base = max(eff.values())
    for (src, dst), e in eff.items():
        expected = base * SHM_EFFICIENCY if slow.shm_pair(src, dst) else base
        assert e == pytest.approx(expected), (src, dst)
