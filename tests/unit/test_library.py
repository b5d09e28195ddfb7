"""The shipped hardware library: every file loads, is sourced, and matches a hand calculation."""

from pathlib import Path

import pytest

from recsim.api import hardware_summary
from recsim.config import Override
from recsim.config.yamlio import load_yaml_file
from recsim.errors import ConfigError
from recsim.hardware.library import HardwareLibrary, shipped_root
from recsim.hardware.topology import build_topology
from tests.conftest import unsourced_lines

ROOT = shipped_root()
FILES = sorted(ROOT.rglob("*.yaml"))
SYSTEMS = sorted(p.stem for p in (ROOT / "systems").glob("*.yaml"))

REQUIRED_SYSTEMS = {
    "zionex",
    "zion",
    "big-basin",
    "dgx-1-v100",
    "dgx-a100",
    "dgx-h100",
    "hgx-h200",
    "dgx-b200",
    "gb200-nvl72",
    "h100-pcie-server",
    "p4d-24xlarge",
    *(f"{cpu}-2s{v}" for cpu in ("skylake", "broadwell", "haswell") for v in ("", "-recnmp", "-recssd")),
}
REQUIRED_ACCELERATORS = {
    "v100-sxm2-32gb",
    "a100-sxm4-40gb",
    "a100-sxm4-80gb",
    "h100-sxm5-80gb",
    "h100-pcie-80gb",
    "h200-sxm5-141gb",
    "b200-sxm-180gb",
    "gb200-186gb",
}


def test_library_has_what_was_promised(shipped):
    assert set(SYSTEMS) >= REQUIRED_SYSTEMS
    assert set(shipped.device_names("accelerator")) >= REQUIRED_ACCELERATORS
    for kind in ("cpu", "memory", "link", "nic", "switch", "ssd", "nmp"):
        assert shipped.device_names(kind), kind


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_loads_and_is_named_after_itself(shipped, path):
    data = load_yaml_file(path).data
    assert data["name"] == path.stem
    kind = shipped.kind_of(str(path))
    doc = shipped.load(kind, str(path))
    assert doc.spec.name == path.stem
    if kind == "system":
        build_topology(doc.spec)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_number_names_its_source(path):
    unsourced = unsourced_lines(path)
    assert not unsourced, "\n".join(unsourced)


def summary(lib: HardwareLibrary, name: str, **kwargs):
    from recsim.api import load_system

    return hardware_summary(load_system(name, library=lib, **kwargs))


def test_zionex_by_hand(shipped):
    s = summary(shipped, "zionex")
    assert s["num_nodes"] == 16
    assert s["num_accelerators"] == 128
    assert s["nics_per_node"] == 8
    assert s["scale_out_bandwidth_bytes_per_s_per_accelerator"] == 200e9 / 8
    assert s["hbm_capacity_bytes_total"] == 128 * 40 * 2**30  # 5 HBM2 stacks of 8 GiB
    assert s["host_memory_capacity_bytes_per_node"] == 4 * 6 * 64 * 2**30  # "1.5 TB": 24 RDIMMs of 64 GiB
    assert s["scale_up_bandwidth_bytes_per_s_per_accelerator"] == 12 * 25e9
    # 8 nodes x 8 NICs x 25 GB/s cross a non-blocking Clos.
    assert s["bisection_bandwidth_bytes_per_s"] == pytest.approx(64 * 25e9)
    assert summary(shipped, "zionex", nodes=4)["num_accelerators"] == 32


def test_zion_scales_out_through_cpu_nics(shipped):
    s = summary(shipped, "zion")
    assert s["nics_per_node"] == 4
    assert s["scale_out_bandwidth_bytes_per_s_per_accelerator"] == 4 * 100e9 / 8 / 8
    assert s["bisection_bandwidth_bytes_per_s"] == pytest.approx(8 * 4 * 12.5e9)


def test_dgx_h100_by_hand(shipped):
    s = summary(shipped, "dgx-h100")
    assert s["num_accelerators"] == 8
    assert s["scale_up_bandwidth_bytes_per_s_per_accelerator"] == 18 * 25e9
    assert s["scale_out_bandwidth_bytes_per_s_per_accelerator"] == 400e9 / 8
    assert s["host_memory_capacity_bytes_per_node"] == 2 * 8 * 2 * 64 * 2**30
    # one node: GPUs 0-3 to 4-7 over NVSwitch, 4 x 450 GB/s
    assert s["bisection_bandwidth_bytes_per_s"] == pytest.approx(4 * 450e9)
    topo = build_topology(shipped.system("dgx-h100"))
    links = sorted(topo.graph.edges["n0.gpu0", f"n0.nvsw{k}"]["links"] for k in range(4))
    assert links == [4, 4, 5, 5]


def test_dgx_a100_and_hgx_h200(shipped):
    a = summary(shipped, "dgx-a100")
    assert a["hbm_capacity_bytes_per_accelerator"] == 80 * 2**30
    assert a["host_memory_capacity_bytes_per_node"] == 2 * 8 * 2 * 64 * 2**30
    assert a["scale_out_bandwidth_bytes_per_s_per_accelerator"] == 25e9
    # An NDR NIC behind DGX A100's PCIe 4 switches moves what a switch port does, as in the
    # topology (a tester found hier_auto planning for 50 GB/s, and a faster NIC giving a slower plan).
    ndr = shipped.system(
        "dgx-a100",
        [
            Override.parse("node.nics.device=ib-ndr-400g"),
            Override.parse("cluster.scale_out.switch=quantum2-qm9700"),  # NDR ports: the PCIe port binds
        ],
    )
    port = ndr.node.pcie_switches.device.port_bandwidth_bytes_per_s
    assert ndr.scale_out_bandwidth_bytes_per_s_per_accelerator == min(50e9, port) < 50e9
    # And at most what the scale-out switch's ports take: Zion's Tomahawk ports are 100G, so a
    # 200G NIC moves what its own 100G NIC does there (a tester found hier_auto planning for more,
    # and a faster NIC giving a slower plan under auto).
    zion = shipped.system("zion", [Override.parse("node.nics.device=roce-200g")])
    assert zion.scale_out_bandwidth_bytes_per_s_per_node == pytest.approx(4 * 12.5e9)
    assert shipped.system("zion").scale_out_bandwidth_bytes_per_s_per_node == pytest.approx(4 * 12.5e9)
    # An InfiniBand NIC on an Ethernet switch is a configuration mistake, named as such.
    with pytest.raises(ConfigError, match=r"'ib-ndr-400g' is an infiniband NIC, but cluster\.scale_out"):
        shipped.system("zionex", [Override.parse("node.nics.device=ib-ndr-400g")])
    h = summary(shipped, "hgx-h200")
    assert h["accelerator"] == "h200-sxm5-141gb"
    assert h["hbm_capacity_bytes_total"] == 8 * 141 * 2**30


def test_dgx_b200(shipped):
    b = summary(shipped, "dgx-b200")
    assert b["accelerator"] == "b200-sxm-180gb"
    assert b["hbm_capacity_bytes_total"] == 8 * 180 * 2**30
    assert b["scale_out_bandwidth_bytes_per_s_per_accelerator"] == 50e9
    # 18 NVLink5 links of 50 GB/s per direction: 900 GB/s per GPU, twice DGX H100's.
    assert b["scale_up_bandwidth_bytes_per_s_per_accelerator"] == 18 * 50e9


def test_gb200_nvl72_is_one_nvlink_domain(shipped):
    # The rack's 72 GPUs are one recsim node: every pair talks over NVLink through the 18 switch
    # chips (one NVLink5 link from each GPU to each chip), none over the InfiniBand NICs.
    system = shipped.system("gb200-nvl72")
    g = summary(shipped, "gb200-nvl72")
    assert g["accelerator"] == "gb200-186gb" and system.node.num_accelerators == 72
    assert g["scale_up_bandwidth_bytes_per_s_per_accelerator"] == 18 * 50e9
    topo = build_topology(system)
    far = topo.route("n0.gpu0", "n0.gpu71")
    assert far.bandwidth_bytes_per_s == pytest.approx(18 * 50e9)
    assert not any("nic" in v for p in far.paths for v in p)
    # Part of the rack (MLPerf's 8- and 64-GPU runs): fewer GPUs, 2 per Grace, the same fabric.
    from recsim.api import load_system

    part = load_system(
        "gb200-nvl72",
        library=shipped,
        overrides=[
            "node.accelerators.count=8",
            "node.cpus.count=4",
            "node.frontend_nics.count=4",
            "node.ssds.count=16",
        ],
    )
    assert part.num_accelerators == 8 and part.node.cpus.count == 4
    topo = build_topology(part)
    assert topo.route("n0.gpu0", "n0.gpu7").bandwidth_bytes_per_s == pytest.approx(18 * 50e9)


def test_dgx1_hybrid_cube_mesh(shipped):
    topo = build_topology(shipped.system("dgx-1-v100"))
    assert topo.system.node.scale_up_bandwidth_bytes_per_s_per_accelerator == 6 * 25e9
    assert topo.route("n0.gpu0", "n0.gpu3").bandwidth_bytes_per_s == pytest.approx(50e9)  # NV2
    assert topo.route("n0.gpu0", "n0.gpu1").bandwidth_bytes_per_s == pytest.approx(25e9)  # NV1
    far = topo.route("n0.gpu0", "n0.gpu5")  # no NVLink of their own: through GPU 1 over NVLink (NVB)
    assert far.paths == (("n0.gpu0", "n0.gpu1", "n0.gpu5"),)
    assert far.bandwidth_bytes_per_s == pytest.approx(25e9)


def test_pcie_only_and_shared_nic_systems(shipped):
    pcie = summary(shipped, "h100-pcie-server")
    assert pcie["scale_up_fabric"] == "pcie"
    assert pcie["scale_out_bandwidth_bytes_per_s_per_accelerator"] == 4 * 50e9 / 8
    p4d = summary(shipped, "p4d-24xlarge")
    assert p4d["scale_out_bandwidth_bytes_per_s_per_accelerator"] == 4 * 12.5e9 / 8
    assert p4d["host_memory_capacity_bytes_per_node"] == 1152 * 2**30


def test_cpu_inference_servers(shipped):
    s = summary(shipped, "skylake-2s")
    assert s["num_accelerators"] == 0
    assert s["bisection_bandwidth_bytes_per_s"] == 0.0
    assert s["host_memory_capacity_bytes_per_node"] == 2 * 6 * 2 * 32 * 2**30
    nmp = summary(shipped, "skylake-2s-recnmp")
    assert nmp["nmp"] == "recnmp-ddr4-2400"
    ssd = summary(shipped, "skylake-2s-recssd")
    assert ssd["ssd"] == "smartssd"
    assert shipped.system("skylake-2s-recssd").node.ssds.device.ndp is not None


def test_more_nodes_more_bisection(shipped):
    small = summary(shipped, "dgx-h100", nodes=2)["bisection_bandwidth_bytes_per_s"]
    large = summary(shipped, "dgx-h100", nodes=8)["bisection_bandwidth_bytes_per_s"]
    assert small == pytest.approx(8 * 50e9)
    assert large == pytest.approx(4 * small)


def test_library_root_is_a_directory():
    assert Path(ROOT, "devices").is_dir()
    assert Path(ROOT, "systems").is_dir()


def test_three_tier_clos_stays_non_blocking(shipped):
    # 100 ZionEX nodes = 800 NICs: 25 leaves of 32 fit two tiers; at three tiers (pods of 32
    # leaves, aggregation and core switches) a non-blocking fabric must still carry everything.
    s = summary(shipped, "zionex", nodes=100, overrides=["cluster.scale_out.tiers=3"])
    assert s["bisection_bandwidth_bytes_per_s"] == pytest.approx(50 * 8 * 25e9)
    assert s["topology_vertices"]["switch"] > 25


def test_two_dimms_per_channel_run_at_the_cpus_2dpc_rate(shipped):
    """Intel ARK: Sapphire Rapids runs DDR5-4800 at one DIMM per channel, 4400 at two (a reviewer's
    find: DGX H100's 32 DIMMs on 16 channels were taken at 4800)."""
    h100 = shipped.system("dgx-h100").node
    assert h100.host_memory.dimms_per_channel == 2
    assert h100.host_memory_bandwidth_bytes_per_s == pytest.approx(16 * 8 * 4.4e9)
    zionex = shipped.system("zionex").node  # one DIMM per channel: the CPU's full rate
    assert zionex.host_memory_bandwidth_bytes_per_s == pytest.approx(4 * 6 * 8 * 3.2e9)


def test_recnmp_dimms_run_the_channels_at_their_own_rate(shipped):
    """RecNMP DIMMs are the node's DIMMs (``host_memory.nmp``): its channels run at their DRAM's
    rate, at most the CPU's. A tester's ``--set node.host_memory.nmp=recnmp-ddr4-2400`` on a
    DGX A100 (DDR4-3200 DIMMs, EPYC 7742 at 3200) kept its channels at 3200 MT/s (409.6 GB/s)
    while the DIMMs it had put in, their capacity, ranks and power, were DDR4-2400 ones."""
    plain = shipped.system("dgx-a100").node
    assert plain.host_memory_bandwidth_bytes_per_s == pytest.approx(16 * 8 * 3.2e9)
    nmp = shipped.system("dgx-a100", [Override.parse("node.host_memory.nmp=recnmp-ddr4-2400")]).node
    assert nmp.host_memory_bandwidth_bytes_per_s == pytest.approx(16 * 8 * 2.4e9)
    # The shipped RecNMP servers put them on DDR4-2400 channels already: unchanged.
    server = shipped.system("skylake-2s-recnmp").node
    assert server.host_memory_bandwidth_bytes_per_s == pytest.approx(12 * 8 * 2.4e9)


def test_a_channel_takes_no_more_dimms_than_the_cpu_allows(shipped):
    """A tester's RecNMP sweep ran 4 DIMMs per channel on skylake-2s-recnmp, which a Skylake-SP
    channel cannot hold (2 at most), without a word: one line now names the key and the limit."""
    with pytest.raises(
        ConfigError, match=r"dimms_per_channel: 4 DIMMs per channel.*xeon-gold-6138.*at most 2"
    ):
        shipped.system("skylake-2s-recnmp", [Override.parse("node.host_memory.dimms_per_channel=4")])
    assert shipped.system("skylake-2s-recnmp", [Override.parse("node.host_memory.dimms_per_channel=1")])
    # Broadwell-EP takes three; every shipped system is within its CPU's limit.
    assert shipped.system("broadwell-2s", [Override.parse("node.host_memory.dimms_per_channel=3")])
    for name in SYSTEMS:
        node = shipped.system(name).node
        most = node.cpus.device.max_dimms_per_channel
        assert most is not None and node.host_memory.dimms_per_channel <= most, name


def test_a_check_across_keys_names_the_line_of_the_key_it_blames(tmp_path):
    # A tester's find: 4 DIMMs per channel written on line 7 of a system file was reported at line 4,
    # the ``node:`` mapping whose validator checks it; the message names the key, so its line is known.
    (tmp_path / "systems").mkdir()
    (tmp_path / "systems" / "bad-dpc.yaml").write_text(
        "kind: system\nextends: dgx-h100\nname: bad-dpc\nnode:\n  host_memory:\n"
        "    device: ddr5-4800\n    dimms_per_channel: 4\n"
    )
    with pytest.raises(ConfigError) as info:
        HardwareLibrary([tmp_path, shipped_root()]).system("bad-dpc")
    message = str(info.value)
    assert "bad-dpc.yaml:7: node.host_memory.dimms_per_channel: 4 DIMMs per channel" in message
    assert "\n" not in message


def test_llc_latencies_are_random_loads_with_their_tlb_misses(shipped):
    """A reviewer's find: the EPYC 7742 took AnandTech's structural L3 latency (~34 cycles, 10.3 ns,
    TLB misses removed) beside the Intel parts' LMBench random loads (TLB misses included), so a
    Rome LLC hit looked 2.5x cheaper than a Skylake-SP one. On LMBench's basis (AnandTech 2017),
    Zen's CCX L3 is 34-47 cycles; Rome's 16 MB CCX reaches past its TLB at least as often: 47
    cycles at 3.4 GHz. Every CPU's figure sits in LMBench's range for an L3 hit."""
    rome = shipped.device("cpu", "epyc-7742")
    assert rome.llc_latency_s == pytest.approx(47 / 3.4e9, rel=0.01)
    assert rome.llc_latency_s > 34 / 3.4e9
    for name in ("xeon-gold-6138", "xeon-e5-2680v4", "xeon-e5-2698v4", "epyc-7742"):
        assert 13e-9 < shipped.device("cpu", name).llc_latency_s <= 42e-9, name


def test_nic_latency_is_one_adapters_share_of_a_route(shipped):
    """A NIC's ``latency`` is what one adapter adds one way; a route between two nodes crosses two.

    An auditor found ConnectX-6/7 files charging NVIDIA's end-to-end "sub-600ns" (both adapters,
    back to back) to each adapter, a 2-node dgx-h100 route of 2.652 us against dgx-1-v100's 1.762."""
    edr = shipped.device("nic", "ib-edr-100g")
    # The measured back-to-back ib_send_lat the per-adapter figure comes from: 0.82 us one way over
    # host link, adapter, cable, adapter, host link (137 ns rounded to 140 ns: 826 ns).
    assert 2 * (edr.host_interface.latency_s + edr.latency_s) == pytest.approx(0.82e-6, abs=10e-9)
    # dgx-h100, two nodes on one leaf: GPU -> PCIe link -> PCIe switch -> PCIe link -> NIC -> leaf
    # -> NIC -> PCIe link -> PCIe switch -> PCIe link -> GPU.
    system = shipped.system("dgx-h100", [Override.parse("cluster.nodes=2")])
    topo = build_topology(system)
    route = topo.route("n0.gpu0", "n1.gpu0")
    path = route.paths[0]
    assert [topo.graph.nodes[v]["kind"] for v in path[1:-1]] == [
        "pcie_switch",
        "nic",
        "switch",
        "nic",
        "pcie_switch",
    ]
    node, scale_out = system.node, system.cluster.scale_out
    assert node.nics is not None and node.pcie_switches is not None and scale_out is not None
    nic = node.nics.device
    pcie = nic.host_interface.latency_s
    leaf = scale_out.switch.latency_s
    by_hand = 4 * pcie + 2 * node.pcie_switches.device.latency_s + 2 * nic.latency_s + leaf
    assert route.latency_s == pytest.approx(by_hand)
    # 4 x 273 ns (pcie5-x16) + 2 x 115 ns (PEX89144) + 2 x 140 ns (ConnectX-7) + 130 ns (QM9700).
    assert route.latency_s == pytest.approx(1.732e-6)
    # The same two-adapter rule on every shipped InfiniBand/RoCE generation: dgx-a100 (ConnectX-6,
    # PEX88096 105 ns, QM8700 130 ns) and dgx-1-v100 (ConnectX-4, PEX8796 150 ns, SB7800 90 ns).
    for name, expected in (("dgx-a100", 1.712e-6), ("dgx-1-v100", 1.762e-6)):
        two = build_topology(shipped.system(name, [Override.parse("cluster.nodes=2")]))
        assert two.route_latency_s("n0.gpu0", "n1.gpu0") == pytest.approx(expected), name


#: The shipped systems whose supplies are sourced (their YAML's platform block names the document).
SOURCED_PLATFORMS = {"dgx-h100", "hgx-h200", "dgx-a100", "dgx-b200", "gb200-nvl72"}


@pytest.mark.parametrize("name", SYSTEMS)
def test_every_shipped_system_has_a_platform(shipped, name):
    # No shipped system is priced on its components alone: its own sourced supplies, or the
    # generic default, named as such (an architect comparing them compares like with like).
    shown = summary(shipped, name)["platform"]
    assert not shown.startswith("not modelled")
    assert shown.startswith("generic default (ASSUMPTION)") == (name not in SOURCED_PLATFORMS)


def test_dgx_b200_platform_by_hand(shipped):
    # DGX B200 User Guide: six 3.3 kW supplies sharing the load (5+1); Titanium assumed.
    shown = summary(shipped, "dgx-b200")["platform"]
    assert shown == "6 x 3,300 W 80plus-titanium-230v-redundant, fans 10% of the DC"
