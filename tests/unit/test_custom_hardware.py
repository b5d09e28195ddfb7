"""User-defined hardware: a part the library does not ship is costed as its role says, and the
result says which borrowed constants it was costed with (a tester's findings on an MI300X node)."""

from __future__ import annotations

import pytest

import recsim
from recsim.api import load_system
from recsim.cost.collectives.base import facts
from recsim.errors import ConfigError
from recsim.hardware.topology import build_topology

XGMI = "node.accelerators.device.nvlink.link.family=xgmi"


def _same_but_hash(a: dict[str, object], b: dict[str, object]) -> dict[str, tuple[object, object]]:
    return {k: (a[k], b[k]) for k in a if a[k] != b[k] and k != "resolved_config_hash"}


def test_an_infinity_fabric_mesh_is_a_scale_up_fabric_as_nvlink_is():
    # DGX-1's NVLink mesh with its links relabelled Infinity Fabric (family xgmi): the same
    # wiring in the same role, so the same routes, bisection and run (no xgmi-specific constant is
    # sourced yet). Keyed on the family, the mesh was wired as PCIe edges.
    nv = build_topology(load_system("dgx-1-v100"))
    xg = build_topology(load_system("dgx-1-v100", overrides=[XGMI]))
    for t in (nv, xg):
        assert {d["kind"] for a, b, d in t.graph.edges(data=True) if a.endswith("gpu0") and "gpu" in b} == {
            "nvlink"
        }
    assert xg.bisection_bandwidth_bytes_per_s == pytest.approx(nv.bisection_bandwidth_bytes_per_s)
    assert xg.route("n0.gpu0", "n0.gpu1").paths == nv.route("n0.gpu0", "n0.gpu1").paths
    # The host link is the PCIe link alone, not PCIe plus the mesh.
    assert facts(xg).host_link_bandwidth(0) == pytest.approx(facts(nv).host_link_bandwidth(0))
    a = recsim.simulate(system="dgx-1-v100", workload="dlrm-dcnv2").to_dict()
    b = recsim.simulate(system="dgx-1-v100", workload="dlrm-dcnv2", overrides=[XGMI]).to_dict()
    assert _same_but_hash(a, b) == {}
    assert b["utilisation.scale_up"] > 0


@pytest.mark.parametrize("family", ["pcie", "cxl", "upi", "sata"])
def test_a_link_that_cannot_join_gpus_is_refused_as_a_scale_up_link(family):
    with pytest.raises(ConfigError, match=rf"nvlink\.link 'nvlink2' is a {family} link.*nvlink or xgmi"):
        load_system("dgx-1-v100", overrides=[f"node.accelerators.device.nvlink.link.family={family}"])
