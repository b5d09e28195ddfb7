"""User-defined hardware: a part the library does not ship is costed as its role says, and the
result says which borrowed constants it was costed with (a tester's findings on an MI300X node)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import recsim
from recsim.api import load_system
from recsim.cli import cli
from recsim.cost.collectives.base import facts
from recsim.engine.hbm import hbm_capacity_bytes_per_s
from recsim.errors import ConfigError
from recsim.hardware.devices import Accelerator
from recsim.hardware.library import HardwareLibrary, shipped_root
from recsim.hardware.topology import build_topology
from tests.conftest import FIXTURES

XGMI = "node.accelerators.device.nvlink.link.family=xgmi"


def _differences(a: dict[str, object], b: dict[str, object]) -> dict[str, tuple[object, object]]:
    """The figures that differ (the hash and the notes aside)."""
    return {k: (a[k], b[k]) for k in a if a[k] != b[k] and k not in ("resolved_config_hash", "notes")}


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
    assert _differences(a, b) == {}
    assert b["utilisation.scale_up"] > 0
    # What differs is said: NCCL's NVLink constants on a link that is not NVLink.
    assert "on nvlink2 (family xgmi)" in b["notes"][0]
    assert "(family" not in a["notes"][0]


@pytest.mark.parametrize("family", ["pcie", "cxl", "upi", "sata"])
def test_a_link_that_cannot_join_gpus_is_refused_as_a_scale_up_link(family):
    with pytest.raises(ConfigError, match=rf"nvlink\.link 'nvlink2' is a {family} link.*nvlink or xgmi"):
        load_system("dgx-1-v100", overrides=[f"node.accelerators.device.nvlink.link.family={family}"])


# ------------------------------------------------------------------------------ calibration notes


def test_a_run_names_every_default_calibration_it_was_costed_with():
    # DGX-1 with its V100 blocks removed: the A100 fits stand in (UNCALIBRATED_GEMM and _GATHER),
    # NCCL's NVLink model the mesh (no scale_up.calibration), its NIC's network model across nodes.
    bare = ["node.accelerators.device.calibration=null"]
    one = recsim.simulate(system="dgx-1-v100", workload="dlrm-dcnv2", overrides=bare)
    note = one.notes[0]
    # One compact item each (the note repeats on every run and sweep row); ``hw show``'s summary
    # keeps each one's source.
    assert note == (
        "calibrations not measured on this hardware: gemm: a100-sxm4-80gb fit (UNCALIBRATED_GEMM); "
        "gather: a100-sxm4-40gb fit (UNCALIBRATED_GATHER); scale-up: DEFAULT_NVLINK"
    )
    two = recsim.simulate(system="dgx-1-v100", workload="dlrm-dcnv2", nodes=2, overrides=bare)
    assert two.notes[0].endswith("; scale-out: DEFAULT_NETWORK")
    # Calibrated parts say nothing: DGX H100's NVSwitch and NDR NICs carry their fits, its H100
    # its own GEMM fit; only its gather fit is the A100's (its YAML's transferred_from).
    h100 = recsim.simulate(system="dgx-h100", workload="dlrm-dcnv2", nodes=2).notes[0]
    assert h100 == "calibrations not measured on this hardware: gather: a100-sxm4-40gb fit"
    full = recsim.hardware_summary(load_system("dgx-1-v100", overrides=bare))["calibrations_not_measured"]
    assert len(full) == 3
    assert full[0].startswith("GEMM with the a100-sxm4-80gb fit (UNCALIBRATED_GEMM")
    assert "v100-sxm2-32gb has no calibration.gemm" in full[0]
    assert full[1].startswith("embedding gather with the a100-sxm4-40gb fit (UNCALIBRATED_GATHER")
    assert full[2].startswith("scale-up collectives with DEFAULT_NVLINK")


def _accelerator(tmp_path: Path, text: str) -> Accelerator:
    path = tmp_path / "acc.yaml"
    path.write_text(text)
    spec: Accelerator = HardwareLibrary().load("accelerator", str(path)).spec
    return spec


@pytest.mark.parametrize(
    ("body", "transferred"),
    [
        # Another part: its HBM, its peaks and SMs, or its maker differ from the H100's.
        ('hbm: {memory: hbm3e, stacks: 6, bandwidth: "6.7 TB/s"}', "h100-sxm5-80gb"),
        ("sms: 304\nvendor: amd\narchitecture: cdna3", "h100-sxm5-80gb"),
        ('peak: {fp32: "100 TFLOP/s"}', "h100-sxm5-80gb"),
        # The same silicon in another box: the fit is its own.
        ('power: {idle: "80 W", max: "650 W"}', None),
        ('hbm: {bandwidth: "3.35 TB/s"}', None),
    ],
)
def test_an_extended_accelerator_inherits_a_transferred_fit_where_it_is_another_part(
    tmp_path, body, transferred
):
    acc = _accelerator(tmp_path, f"extends: h100-sxm5-80gb\nname: x\n{body}\n")
    assert acc.calibration is not None and acc.calibration.gemm is not None
    assert acc.calibration.gemm.transferred_from == transferred
    # The gather fit was the A100's already and stays so.
    assert acc.calibration.gather is not None and acc.calibration.gather.transferred_from == "a100-sxm4-40gb"


@pytest.mark.parametrize(
    ("body", "kept"),
    [
        # Another memory system: the H100's measured STREAM share says nothing about it.
        ('hbm: {memory: hbm3e, stacks: 6, bandwidth: "6.7 TB/s"}', False),
        ("sms: 304\nvendor: amd\narchitecture: cdna3", False),
        # Its own measurement, or the same silicon in another box: kept.
        ("sms: 304\ncalibration: {stream: {source: mine.md, efficiency: 0.9}}", True),
        ('power: {idle: "80 W", max: "650 W"}', True),
    ],
)
def test_an_extended_accelerator_keeps_a_stream_share_only_where_it_is_the_same_part(tmp_path, body, kept):
    acc = _accelerator(tmp_path, f"extends: h100-sxm5-80gb\nname: x\n{body}\n")
    assert acc.calibration is not None
    assert (acc.calibration.stream is not None) == kept
    if acc.calibration.stream is None:
        # The DES HBM link falls back to the part's GEMM fit (recsim.engine.hbm).
        assert (
            hbm_capacity_bytes_per_s(acc)
            == acc.hbm.bandwidth_bytes_per_s * acc.calibration.gemm.memory_efficiency
        )
    elif "mine.md" in body:
        assert acc.calibration.stream.efficiency == 0.9
        assert hbm_capacity_bytes_per_s(acc) == 0.9 * acc.hbm.bandwidth_bytes_per_s


def test_an_extended_accelerator_with_its_own_fit_keeps_it(tmp_path):
    h100 = HardwareLibrary().device("accelerator", "h100-sxm5-80gb")
    assert h100.calibration is not None and h100.calibration.gemm is not None
    own = h100.calibration.gemm.model_dump(by_alias=True, exclude_none=True)
    own["overhead"] = f"{own['overhead']} s"
    acc = _accelerator(
        tmp_path, f"extends: h100-sxm5-80gb\nname: x\nsms: 200\ncalibration:\n  gemm: {json.dumps(own)}\n"
    )
    assert acc.calibration is not None and acc.calibration.gemm is not None
    assert acc.calibration.gemm.transferred_from is None


def test_hw_show_names_the_default_a_device_without_a_block_gets():
    runner = CliRunner()
    env = {"RECSIM_HARDWARE_PATH": str(FIXTURES / "minilib"), "COLUMNS": "300"}
    shown = runner.invoke(cli, ["hw", "show", "tiny-gpu"], env=env)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "calibration.gemm │ none: costed with the a100-sxm4-80gb fit (UNCALIBRATED_GEMM" in text
    assert "calibration.gather │ none: costed with the a100-sxm4-40gb fit" in text
    nic = runner.invoke(cli, ["hw", "show", "tiny-nic"], env=env)
    assert "none: collectives costed with DEFAULT_NETWORK" in " ".join(nic.output.split())
    h100 = runner.invoke(cli, ["hw", "show", "h100-sxm5-80gb"])
    assert "none: costed" not in h100.output


# ------------------------------------------------------------------------------ host memory


@pytest.mark.parametrize(
    ("dimm", "technology"), [("hbm3", "hbm3"), ("ddr4-3200", "ddr4"), ("cxl-expander", "cxl")]
)
def test_host_dimms_of_another_technology_than_the_cpus_are_refused(dimm, technology):
    # Sapphire Rapids takes DDR5 only: HBM3 "DIMMs" had run at 563 GB/s, DDR4 on it at DDR4 speed.
    with pytest.raises(ConfigError) as err:
        load_system("dgx-h100", overrides=[f"node.host_memory.device={dimm}"])
    assert (
        f"host_memory.device: {dimm!r} is {technology} memory, but xeon-platinum-8480c's memory "
        "channels take ddr5 DIMMs" in str(err.value)
    )
    assert "dgx-h100.yaml" in str(err.value)
    # A DIMM of the CPU's technology, faster or slower than its rating, is a choice the model takes.
    assert load_system("dgx-h100", overrides=["node.host_memory.device=ddr5-5600"]) is not None


def test_host_dimms_of_another_technology_name_the_line_that_chose_them(tmp_path):
    # A tester's system file chose DDR4 for Sapphire Rapids: the error named the DIMM's own library
    # file (ddr4-2400.yaml:4), which is right as it is, not the line of the user's file to fix.
    system = tmp_path / "mine.yaml"
    system.write_text(
        "kind: system\nextends: dgx-h100\nname: mine\nnode:\n"
        "  host_memory: {device: ddr4-2400, dimms_per_channel: 2}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_system(str(system))
    assert str(err.value).startswith(f"{system}:5: node.host_memory.device: 'ddr4-2400' is ddr4 memory")
    result = CliRunner().invoke(cli, ["hw", "validate", str(system)])
    assert result.exit_code == 2
    assert f"{system}:5: node.host_memory.device: " in result.output
    assert "ddr4-2400.yaml" not in result.output


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        ("cluster:\n  scale_out: {switch: tomahawk3-64x200g}\n", "cluster.scale_out.switch"),
        ("node:\n  nics: {device: roce-200g}\n", "node.nics.device"),
    ],
)
def test_a_nic_on_a_switch_of_another_fabric_names_the_line_of_the_file_that_chose_it(tmp_path, edit, key):
    # A tester's system file put dgx-h100's InfiniBand NICs on an Ethernet switch: the error was
    # "mine.yaml:1: <top level>: ...", the first line and no key.
    system = tmp_path / "mine.yaml"
    system.write_text(f"kind: system\nextends: dgx-h100\nname: mine\n{edit}")
    with pytest.raises(ConfigError) as err:
        load_system(str(system))
    assert str(err.value).startswith(f"{system}:5: {key}: "), str(err.value)
    assert "NIC needs an" in str(err.value) and "<top level>" not in str(err.value)


# ------------------------------------------------------------------------------ extends targets


@pytest.mark.parametrize(
    ("extends", "said"),
    [
        ("h100-sxm5-8gb", "extends: unknown name 'h100-sxm5-8gb'; did you mean 'h100-sxm5-80gb'"),
        ("./nope.yaml", "extends: {folder}/nope.yaml: no such file"),
    ],
)
@pytest.mark.parametrize("command", ["show", "validate"])
def test_an_unknown_extends_target_names_the_file_and_key_that_extend_it(tmp_path, extends, said, command):
    # A file with no kind: is told its kind by its parent; a parent not found was reported alone.
    child = tmp_path / "child.yaml"
    child.write_text(f"name: x\nextends: {extends}\n")
    result = CliRunner().invoke(cli, ["hw", command, str(child)])
    assert result.exit_code == 2
    assert f"{child}:2: " + said.format(folder=tmp_path) in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["show", "validate"])
def test_a_partial_device_over_an_inherited_name_says_to_extend_it(tmp_path, command):
    # A child of dgx-h100 that edits one key of the accelerator its parent names: the mapping
    # replaces the name whole (a YAML child does not merge into a reference, unlike --set), and
    # the schema's "missing required key 'kind' (and 15 more problems)" did not say so or how.
    child = tmp_path / "fast.yaml"
    device = "node:\n  accelerators:\n    device:\n{extends}      hbm: {{bandwidth: 4 TB/s}}\n"
    child.write_text("kind: system\nextends: dgx-h100\nname: fast\n" + device.format(extends=""))
    result = CliRunner().invoke(cli, ["hw", command, str(child)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert f"{child}:6: node.accelerators.device: " in result.output
    assert "replaces 'h100-sxm5-80gb'" in result.output
    assert "write 'extends: h100-sxm5-80gb' in it" in result.output
    # What it says to write works, and edits only that key.
    child.write_text(
        "kind: system\nextends: dgx-h100\nname: fast\n"
        + device.format(extends="      extends: h100-sxm5-80gb\n")
    )
    acc = load_system(child).node.accelerators.device
    assert acc.hbm.bandwidth_bytes_per_s == 4e12
    assert acc.hbm.capacity_bytes == load_system("dgx-h100").node.accelerators.device.hbm.capacity_bytes


def test_an_inline_device_without_kind_says_what_it_needs(tmp_path):
    # No inherited name to point at: a CPU file whose DIMM mapping lost its extends: line. The
    # message says what a device written in place needs, and how to start from a library one.
    text = (shipped_root() / "devices/cpus/xeon-gold-6138.yaml").read_text()
    assert "  extends: ddr4-2933" in text
    cpu = tmp_path / "cpu.yaml"
    cpu.write_text(text.replace("  extends: ddr4-2933", "  # extends: ddr4-2933"))
    with pytest.raises(ConfigError) as caught:
        HardwareLibrary().device("cpu", cpu)
    said = str(caught.value)
    assert re.match(r".*cpu\.yaml:\d+: memory: a memory written in place needs 'kind: memory'", said)
    assert said.endswith("write 'extends: NAME' in it")


# ------------------------------------------------------------------------------ PCIe lanes, NIC links


def test_devices_wired_straight_onto_the_cpus_must_fit_their_pcie_lanes():
    # H100 PCIe server without its 4 PCIe switches: 8 GPUs and 4 NICs x16 + 4 NVMe x4 on 2 x 80 lanes.
    with pytest.raises(ConfigError) as err:
        load_system("h100-pcie-server", overrides=["node.pcie_switches=null"])
    said = str(err.value)
    assert (
        "h100-pcie-server.yaml" in said and "node: cpus: 2 x xeon-platinum-8480c have 160 PCIe lanes" in said
    )
    assert "take 208: accelerators 8 x 16 (pcie5-x16), nics 4 x 16 (pcie5-x16), ssds 4 x 4 (pcie4-x4)" in said
    # Behind the switches only their uplinks count: 4 x 16 + 4 x 4 = 80.
    node = load_system("h100-pcie-server").node
    assert sum(count * lanes for count, lanes, _ in node.pcie_lanes_needed().values()) == 80
    # Within the lanes, without switches: 4 GPUs and 4 NICs x16, 4 NVMe x4 (144 lanes).
    assert (
        load_system("h100-pcie-server", overrides=["node.pcie_switches=null", "node.accelerators.count=4"])
        is not None
    )


@pytest.mark.parametrize("name", HardwareLibrary().names("systems"))
def test_every_shipped_system_fits_its_cpus_pcie_lanes(name):
    node = load_system(name).node
    needed = sum(count * lanes for count, lanes, _ in node.pcie_lanes_needed().values())
    assert 0 < needed <= node.pcie_lanes_available()[0]


def test_a_two_socket_epyc_has_the_lanes_its_xgmi_links_leave():
    # 2P Rome: 4 x16 xGMI links take 64 lanes of each socket, 128 PCIe lanes in all, not 256.
    # dgx-a100 uses them all (4 switch uplinks x16, 2 front-end NICs x16, 8 NVMe x4); one more NVMe
    # had passed against 2 x 128.
    node = load_system("dgx-a100").node
    assert node.pcie_lanes_available()[0] == 128
    assert sum(count * lanes for count, lanes, _ in node.pcie_lanes_needed().values()) == 128
    with pytest.raises(ConfigError) as err:
        load_system("dgx-a100", overrides=["node.ssds.count=9"])
    said = str(err.value)
    assert "node: cpus: 2 x epyc-7742 have 128 PCIe lanes (128 in a 2-socket epyc-7742 system" in said
    assert "take 132" in said and "put the accelerators and NICs behind pcie_switches" in said
    # One socket has its own 128; Intel's UPI takes none of a Xeon's lanes (2 x 80 on dgx-h100).
    assert load_system("dgx-a100", overrides=["node.cpus.count=1"]).node.pcie_lanes_available()[0] == 128
    assert load_system("dgx-h100").node.pcie_lanes_available()[0] == 160
    # The lanes left are known of two sockets only.
    with pytest.raises(ConfigError) as err:
        load_system("dgx-a100", overrides=["node.cpus.count=4"])
    assert "cpus.count: 4 x epyc-7742" in str(err.value) and "expected 1 or 2 sockets" in str(err.value)


def test_the_xe8545_wires_what_dells_mlperf_system_description_lists():
    # 4 GPUs x16, 2 HDR NICs x16, 4 NVMe x4 on the EPYCs' own lanes (no switches): 112 of 128.
    node = load_system("hgx-a100-4gpu").node
    assert node.pcie_switches is None and node.frontend_nics is None
    assert node.pcie_lanes_needed() == {
        "accelerators": (4, 16, "pcie4-x16"),
        "nics": (2, 16, "pcie4-x16"),
        "ssds": (4, 4, "pcie4-x4"),
    }


def test_lanes_advice_when_the_accelerators_are_not_on_pcie():
    # GB200: the Blackwells are on Grace's NVLink-C2C; no PCIe switch frees a lane for them.
    with pytest.raises(ConfigError) as err:
        load_system("gb200-nvl72", overrides=["node.ssds.count=160"])
    said = str(err.value)
    assert "the accelerators are not on PCIe" in said and "attach fewer front-end NICs or SSDs" in said
    assert "pcie_switches" not in said


def test_a_nic_faster_than_its_host_link_is_said_not_refused():
    # An 800G NIC on a PCIe 5 x16 slot is real and moves what the slot does; the result says so.
    fast = recsim.simulate(
        system="dgx-h100",
        workload="dlrm-dcnv2",
        nodes=2,
        overrides=["node.nics.device.port_bandwidth=800 Gb/s"],
    )
    assert fast.status == "ok"
    # History: the host interface's note was the whole of it, as if the NIC moved 63 GB/s; the
    # 400G switch ports it plugs into carry 50, which the next note now says
    # (test_a_nic_faster_than_its_switch_ports_is_said).
    assert (
        "node.nics 'ib-ndr-400g': its ports move 800 Gb/s (100 GB/s) but its host interface pcie5-x16 "
        "63.02 GB/s, so it moves the latter (check the ports' unit if that is not meant); "
        "node.nics 'ib-ndr-400g': each moves 504.1 Gb/s but the quantum2-qm9700 port it plugs into "
        "400 Gb/s, so it moves the latter on the scale-out network (raise "
        "cluster.scale_out.switch.port_bandwidth with it)" in fast.notes
    )
    assert not any("host interface" in n for n in recsim.simulate(system="dgx-h100", nodes=2).notes)


def test_a_nic_faster_than_its_switch_ports_is_said():
    # A tester's what-if: 800G NICs on 2 DGX H100 moved no figure (the 400G QM9700 ports carry
    # 50 GB/s, below the NIC's PCIe 5 x16 link), and the one note said the NIC moved 63 GB/s. The
    # mechanism stands (each NIC moves its switch port's rate); the result and `hw show` say why.
    from recsim.api import hardware_summary
    from recsim.hardware.library import HardwareLibrary
    from recsim.hardware.system import nic_switch_cap_note

    options = {"system": "dgx-h100", "workload": "dlrm-dcnv2", "nodes": 2, "batch_size": 8192}
    stock = recsim.simulate(**options).to_dict()
    fast = recsim.simulate(**options, overrides=["node.nics.device.port_bandwidth=800 Gb/s"]).to_dict()
    assert _differences(stock, fast) == {}
    switch_note = (
        "node.nics 'ib-ndr-400g': each moves 504.1 Gb/s but the quantum2-qm9700 port it plugs into "
        "400 Gb/s, so it moves the latter on the scale-out network (raise "
        "cluster.scale_out.switch.port_bandwidth with it)"
    )
    assert fast["notes"][1].endswith("; " + switch_note)
    # A NIC at its host link's rate (no host note) on a slower switch: 200G ports of a QM8700.
    slow_switch = load_system("dgx-h100", overrides=["cluster.scale_out.switch=quantum-qm8700"])
    assert nic_switch_cap_note(slow_switch) == (
        "node.nics 'ib-ndr-400g': each moves 400 Gb/s but the quantum-qm8700 port it plugs into "
        "200 Gb/s, so it moves the latter on the scale-out network (raise "
        "cluster.scale_out.switch.port_bandwidth with it)"
    )
    assert slow_switch.scale_out_bandwidth_bytes_per_s_per_accelerator == 25e9
    assert hardware_summary(slow_switch)["capped_rates"] == [nic_switch_cap_note(slow_switch)]
    # Faster ports with the NICs: moved, and nothing said of the switch.
    both = ["node.nics.device.port_bandwidth=800 Gb/s", "cluster.scale_out.switch.port_bandwidth=800 Gb/s"]
    assert nic_switch_cap_note(load_system("dgx-h100", overrides=both)) is None
    assert hardware_summary(load_system("dgx-h100"))["capped_rates"] == []
    for name in HardwareLibrary().names("systems"):
        assert nic_switch_cap_note(load_system(name)) is None, name


def test_host_memory_faster_than_its_cpu_runs_is_said():
    # A tester's what-if: DDR5-7200 DIMMs on a DGX H100 (Sapphire Rapids runs DDR5-4800 at one DIMM
    # a channel, 4400 at two) moved no figure and said nothing. The channels run at the CPU's rate
    # (the mechanism stands: every figure but the config hash and the notes is the stock run's);
    # the result now says why. Exact figures: 8 channels x 2 sockets x 4.4 GT/s x 8 B = 563 GB/s.
    options = {"system": "dgx-h100", "workload": "dlrm-dcnv2", "batch_size": 8192, "plan": "table_wise"}
    stock = recsim.simulate(**options).to_dict()
    fast = recsim.simulate(**options, overrides=["node.host_memory.device.pin_rate=7.2 Gb/s"]).to_dict()
    assert {k: v for k, v in fast.items() if k not in ("notes", "resolved_config_hash")} == {
        k: v for k, v in stock.items() if k not in ("notes", "resolved_config_hash")
    }
    assert (
        "node.host_memory 'ddr5-4800': rated 57.6 GB/s a channel, but xeon-platinum-8480c runs it at "
        "35.2 GB/s (2 a channel), so the host memory moves 563 GB/s a node (faster memory needs a CPU "
        "that runs it: node.cpus.device.memory)" in fast["notes"]
    )
    # The stock DIMMs at two a channel run below their rating too, as the platform is built: not said.
    assert not any("host_memory" in n for n in stock["notes"])
    # A GB200's LPDDR5X, doubled, the same (Grace runs 32 GB/s a channel); the 36 Graces of the
    # NVL72 rack, 16 channels each: 18,432 GB/s.
    from recsim.hardware.system import host_memory_cap_note

    grace = load_system("gb200-nvl72", overrides=["node.host_memory.device.bandwidth=64 GB/s"])
    assert "runs it at 32 GB/s (1 a channel), so the host memory moves 18,432 GB/s" in str(
        host_memory_cap_note(grace)
    )
    assert host_memory_cap_note(load_system("gb200-nvl72")) is None


def test_nvlinks_faster_than_their_switch_ports_are_said():
    # A tester's what-if: 50 GB/s NVLinks on a DGX H100 end in 25 GB/s NVSwitch gen3 ports and
    # moved nothing, silently; the link keeps moving its slower end's rate, and the result says so.
    from recsim.hardware.system import nvlink_switch_cap_note

    fast = load_system("dgx-h100", overrides=["node.accelerators.device.nvlink.link.bandwidth=50 GB/s"])
    assert fast.node.scale_up_bandwidth_bytes_per_s_per_accelerator == 18 * 25e9
    assert nvlink_switch_cap_note(fast) == (
        "node.accelerators 'h100-sxm5-80gb': its NVLinks (nvlink4) move 50 GB/s but the nvswitch-gen3 "
        "ports they end in 25 GB/s, so they move the latter (raise node.scale_up.switch.port_bandwidth "
        "with them)"
    )
    both = [
        "node.accelerators.device.nvlink.link.bandwidth=50 GB/s",
        "node.scale_up.switch.port_bandwidth=50 GB/s",
    ]
    assert nvlink_switch_cap_note(load_system("dgx-h100", overrides=both)) is None
    for name in ("dgx-a100", "dgx-b200", "dgx-h100", "gb200-nvl72", "hgx-h200", "zionex", "hgx-h100-4gpu"):
        assert nvlink_switch_cap_note(load_system(name)) is None, name


def test_transferred_collective_fits_are_reported_and_the_note_is_compact():
    """A collective block copied from another fabric (``transferred_from``) is reported as the
    accelerators' are: nvswitch-gen4 and the 4-GPU NVLink meshes copy a gen3/gen2 NVSwitch fit and
    said so only in comments. The run's note (on every run and sweep row) keeps a few words an item;
    ``calibration_defaults`` (``hw show``) keeps the sources."""
    from recsim.cost.provenance import calibration_defaults, calibration_note

    for name, parent in (
        ("dgx-b200", "nvswitch-gen3"),
        ("hgx-h100-4gpu", "nvswitch-gen3"),
        ("hgx-a100-4gpu", "nvswitch-gen2"),
    ):
        system = load_system(name)
        assert any(f"the {parent} fit" in d and "network_" in d for d in calibration_defaults(system)), name
        note = calibration_note(system)
        assert note is not None and f"scale-up: {parent} fit" in note, name
        assert "tests/data" not in note and len(note) < 200, name


def test_a_users_system_without_supplies_gets_the_generic_platform_and_can_name_its_own(tmp_path):
    # A system file that names no platform is priced at the wall as the shipped ones are (the
    # generic default, which the summary and a run's notes name); one may name its own supplies
    # (rated left out: sized by the generic rule), or choose not to model them ('none').
    from recsim.api import hardware_summary
    from recsim.hardware.platform import GENERIC_PLATFORM

    base = "kind: system\nname: mine\nnode:\n  cpus: {device: xeon-gold-6138, count: 2}\n"
    base += "  host_memory: {device: ddr4-2400, dimms_per_channel: 1}\n"
    plain = tmp_path / "plain.yaml"
    plain.write_text(base)
    system = load_system(str(plain))
    assert system.node.platform == GENERIC_PLATFORM
    assert hardware_summary(system)["platform"].startswith("generic default (ASSUMPTION): 2 x ")
    own = tmp_path / "own.yaml"
    own.write_text(
        base + "  platform: {psus: {count: 2, rated: 800 W, efficiency: 80plus-titanium-230v-redundant},"
        " fan_fraction: 0.05}\n"
    )
    assert hardware_summary(load_system(str(own)))["platform"] == (
        "2 x 800 W 80plus-titanium-230v-redundant, fans 5% of the DC"
    )
    none = tmp_path / "none.yaml"
    none.write_text(base + "  platform: none\n")
    assert hardware_summary(load_system(str(none)))["platform"] == "not modelled (node.platform: none)"
    # An extends: child that sets 'generic' drops its parent's supplies for the default.
    child = tmp_path / "child.yaml"
    child.write_text("kind: system\nextends: dgx-h100\nname: child\nnode:\n  platform: generic\n")
    assert load_system(str(child)).node.platform == GENERIC_PLATFORM
