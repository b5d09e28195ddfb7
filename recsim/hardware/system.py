"""System specs: a node (what is in one server) and a cluster (how many, and the scale-out network).

A system document (``kind: system`` in ``hardware/systems/``) references devices by name and says
how many of each a node has and how they are wired. Derived figures (accelerator count, total HBM,
host memory from channels x DIMMs, per-accelerator scale-up and scale-out bandwidth) are
properties; figures that need the wiring (bisection bandwidth, routes) come from
``recsim.hardware.topology``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Self

from annotated_types import Ge, Len
from pydantic import Field, field_validator, model_validator

from recsim.config.loader import Referable
from recsim.config.types import Bytes, PositiveInt, Spec
from recsim.hardware.calibration import CollectiveCalibration
from recsim.hardware.devices import (
    SCALE_UP_LINK_FAMILIES,
    Accelerator,
    Cpu,
    Link,
    Memory,
    Nic,
    NmpDimm,
    Ssd,
    Switch,
)
from recsim.hardware.platform import GENERIC, GENERIC_PLATFORM, Platform


class AcceleratorGroup(Spec):
    device: Accelerator
    count: PositiveInt


class CpuGroup(Spec):
    device: Cpu
    count: PositiveInt


class HostMemory(Spec):
    """DIMMs on every memory channel of every socket; optionally RecNMP-capable DIMMs."""

    device: Memory
    dimms_per_channel: PositiveInt = 1
    dimm_capacity_bytes: Bytes | None = Field(default=None, alias="dimm_capacity")
    nmp: NmpDimm | None = None

    @model_validator(mode="after")
    def _nmp_matches(self) -> Self:
        if self.nmp is not None and self.nmp.memory.technology != self.device.technology:
            raise ValueError(
                f"nmp DIMM {self.nmp.name!r} is {self.nmp.memory.technology}, host memory is "
                f"{self.device.technology}"
            )
        return self

    @property
    def dimm_memory(self) -> Memory:
        """The DRAM of the DIMMs in the slots: the RecNMP DIMMs' own where the node has them (they
        are its DIMMs, ``nmp.memory``), else ``device``. Its rate is the channels' (at most the
        CPU's, ``Node.host_memory_bandwidth_bytes_per_s``): ``--set node.host_memory.nmp=...`` on
        a DDR4-3200 node had kept its channels at 3200 MT/s with DDR4-2400 RecNMP DIMMs in them."""
        return self.nmp.memory if self.nmp is not None else self.device

    @property
    def capacity_per_dimm_bytes(self) -> float:
        if self.dimm_capacity_bytes is not None:
            return self.dimm_capacity_bytes
        if self.nmp is not None:
            return self.nmp.capacity_bytes
        return self.device.capacity_bytes


class SsdGroup(Spec):
    device: Ssd
    count: PositiveInt


class ScaleUp(Spec):
    """How the accelerators of a node talk to each other.

    ``nvswitch``: every NVLink port of every accelerator goes to one of ``switches`` NVSwitch chips
    (ports spread evenly); ``nvlink_mesh``: direct NVLink links, ``mesh`` lists ``[a, b, links]``;
    ``pcie``: no NVLink, peer traffic crosses PCIe (through the PCIe switches or the CPU).

    ``calibration``: the collective cost constants of an ``nvlink_mesh`` or ``pcie`` fabric, which
    has no switch device to carry them (an NVSwitch fabric's are its switch's); without it, the
    generic defaults of ``recsim.cost.collectives.base`` (NCCL's tuning model).
    """

    fabric: Literal["nvswitch", "nvlink_mesh", "pcie"]
    switch: Switch | None = None
    switches: PositiveInt | None = None
    mesh: list[Annotated[list[int], Len(3, 3)]] | None = None
    calibration: CollectiveCalibration | None = None

    @model_validator(mode="after")
    def _fabric_fields(self) -> Self:
        if self.fabric == "nvswitch" and (self.switch is None or self.switches is None):
            raise ValueError("fabric 'nvswitch' needs 'switch' and 'switches'")
        if self.fabric == "nvlink_mesh" and not self.mesh:
            raise ValueError("fabric 'nvlink_mesh' needs 'mesh' (a list of [a, b, links])")
        if self.fabric != "nvswitch" and (self.switch is not None or self.switches is not None):
            raise ValueError(f"fabric {self.fabric!r} takes no 'switch'/'switches'")
        if self.fabric != "nvlink_mesh" and self.mesh is not None:
            raise ValueError(f"fabric {self.fabric!r} takes no 'mesh'")
        if self.fabric == "nvswitch" and self.calibration is not None:
            raise ValueError(
                "fabric 'nvswitch' takes its collective calibration from its switch, not 'calibration'"
            )
        return self


class PcieSwitches(Spec):
    """PCIe switches between accelerators (and their NICs) and the CPUs."""

    device: Switch
    count: PositiveInt


class NicGroup(Spec):
    """NICs either one set per accelerator (``per_accelerator``) or shared by the node (``count``)."""

    device: Nic
    per_accelerator: PositiveInt | None = None
    count: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_count(self) -> Self:
        if (self.per_accelerator is None) == (self.count is None):
            raise ValueError("give exactly one of 'per_accelerator' and 'count'")
        return self


#: CPU PCIe lanes one PCIe switch's uplink takes: recsim models a switch port as an x16 port
#: (every switch of the library: ``ports`` = lanes // 16, ``port_bandwidth`` the x16 rate), and the
#: topology wires each switch to its CPU through one such port (``recsim.hardware.topology``).
PCIE_SWITCH_UPLINK_LANES = 16

#: The most devices of one kind a node may hold (accelerators, CPUs, NICs, SSDs, switch chips).
#: The largest shipped node has 72 accelerators and 18 NVSwitch chips (GB200 NVL72); 1024 leaves
#: room for larger NVLink domains, while a typo (10^6 NICs) fails at once instead of building a
#: topology of millions of vertices first (a tester's runs hung past 2 minutes and 4 GB).
MAX_DEVICES_PER_NODE = 1024


def _socket_of(index: int, accelerators: int, sockets: int, switches: int | None) -> int:
    """``Node.accelerator_socket``'s rule: through PCIe switch ``index x switches // accelerators``,
    on socket ``switch x sockets // switches``; without switches, socket ``index x sockets //
    accelerators``."""
    if switches is not None:
        return (index * switches // accelerators) * sockets // switches
    return index * sockets // accelerators


class Node(Spec):
    """One server."""

    accelerators: AcceleratorGroup | None = None
    cpus: CpuGroup
    host_memory: HostMemory
    ssds: SsdGroup | None = None
    scale_up: ScaleUp | None = None
    pcie_switches: PcieSwitches | None = None
    nics: NicGroup | None = None
    frontend_nics: NicGroup | None = None
    #: Power supplies, fans and baseboard (``recsim.hardware.platform``). Left out, null or
    #: ``generic``: ``GENERIC_PLATFORM``, so every node's wall power is priced the same way (a null
    #: is no value, as everywhere in a config: it drops an inherited key); ``none``: the user's
    #: choice not to model it, the node's power its components' DC (the result's notes say so).
    platform: Platform | Literal["none"] = GENERIC_PLATFORM

    @field_validator("platform", mode="before")
    @classmethod
    def _generic(cls, value: object) -> object:
        return GENERIC_PLATFORM if value is None or value == GENERIC else value

    @model_validator(mode="after")
    def _not_too_many_devices(self) -> Self:
        counts = {
            "accelerators.count": self.accelerators.count if self.accelerators else 0,
            "cpus.count": self.cpus.count,
            "ssds.count": self.ssds.count if self.ssds else 0,
            "scale_up.switches": (self.scale_up.switches or 0) if self.scale_up else 0,
            "pcie_switches.count": self.pcie_switches.count if self.pcie_switches else 0,
        }
        accelerators = counts["accelerators.count"]
        for label, group in (("nics", self.nics), ("frontend_nics", self.frontend_nics)):
            if group is not None:
                # per_accelerator NICs are counted for the node (per_accelerator x accelerators).
                key = (
                    f"{label}.per_accelerator (x {accelerators} accelerators)"
                    if group.per_accelerator is not None
                    else f"{label}.count"
                )
                counts[key] = (group.per_accelerator or 0) * accelerators + (group.count or 0)
        for key, count in counts.items():
            if count > MAX_DEVICES_PER_NODE:
                raise ValueError(
                    f"{key}: {count:,} devices of that kind in a node; recsim models at most "
                    f"{MAX_DEVICES_PER_NODE:,} per node (a larger figure is likely a typo, and would "
                    "build a topology of millions of vertices before failing)"
                )
        return self

    def pcie_lanes_needed(self) -> dict[str, tuple[int, int, str]]:
        """The CPU PCIe lanes the node's devices take, as ``recsim.hardware.topology`` wires them:
        {group: (devices on the CPUs, lanes each, their link)}. A PCIe switch's uplink counts
        (``PCIE_SWITCH_UPLINK_LANES``), the devices behind it do not: the accelerators and back-end
        NICs where the node has switches; front-end NICs and SSDs are always on the CPUs. A link
        of another family (NVLink-C2C, SATA) or without ``lanes`` takes no CPU PCIe lanes."""
        out: dict[str, tuple[int, int, str]] = {}

        def add(key: str, count: int, link: Link) -> None:
            if count and link.family == "pcie" and link.lanes is not None:
                out[key] = (count, link.lanes, link.name)

        if self.pcie_switches is not None:
            out["pcie_switches"] = (self.pcie_switches.count, PCIE_SWITCH_UPLINK_LANES, "uplink")
        else:
            if self.accelerators is not None:
                add("accelerators", self.accelerators.count, self.accelerators.device.host_interface)
            if self.nics is not None:
                add("nics", self.nic_count(self.nics), self.nics.device.host_interface)
        if self.frontend_nics is not None:
            add("frontend_nics", self.nic_count(self.frontend_nics), self.frontend_nics.device.host_interface)
        if self.ssds is not None:
            add("ssds", self.ssds.count, self.ssds.device.interface)
        return out

    def pcie_lanes_available(self) -> tuple[int, str]:
        """The CPU PCIe lanes the node has, and how they were counted: ``cpus.count`` x
        ``pcie_lanes``, except a 2-socket node of a CPU whose socket links take PCIe lanes (AMD
        xGMI), which has its ``pcie_lanes_two_sockets``."""
        cpu = self.cpus.device
        both = cpu.pcie_lanes_two_sockets
        if both is not None and self.cpus.count == 2:
            return both, (
                f"{both} in a 2-socket {cpu.name} system, its pcie_lanes_two_sockets: the socket "
                f"links take the rest of its 2 x {cpu.pcie_lanes}"
            )
        return self.cpus.count * cpu.pcie_lanes, f"{cpu.pcie_lanes} each, its pcie_lanes"

    @model_validator(mode="after")
    def _pcie_lanes_fit_the_cpus(self) -> Self:
        # Cpu.pcie_lanes was never read: a tester wired 8 GPUs x16, 8 NICs x16 and 8 SSDs straight
        # onto 2 x 80-lane CPUs (288 lanes on 160) and they ran at full bandwidth.
        cpu = self.cpus.device
        if cpu.pcie_lanes_two_sockets is not None and self.cpus.count > 2:
            raise ValueError(
                f"cpus.count: {self.cpus.count} x {cpu.name}, but its socket links take PCIe lanes "
                f"and recsim knows the lanes left only of a 2-socket system (its "
                f"pcie_lanes_two_sockets, {cpu.pcie_lanes_two_sockets}); expected 1 or 2 sockets"
            )
        needed = self.pcie_lanes_needed()
        total = sum(count * lanes for count, lanes, _ in needed.values())
        have, counted = self.pcie_lanes_available()
        if total > have:
            parts = ", ".join(
                f"{key} {count} x {lanes} ({link})" for key, (count, lanes, link) in needed.items()
            )
            acc = self.accelerators.device if self.accelerators is not None else None
            if acc is not None and acc.host_interface.family != "pcie":
                # GB200's Blackwells hang off Grace over NVLink-C2C: no switch frees CPU lanes.
                advice = (
                    f"the accelerators are not on PCIe (their host_interface {acc.host_interface.name} "
                    f"is a {acc.host_interface.family} link), so attach fewer front-end NICs or SSDs"
                )
            else:
                advice = "put the accelerators and NICs behind pcie_switches, or attach fewer devices"
            raise ValueError(
                f"cpus: {self.cpus.count} x {cpu.name} have {have} PCIe lanes ({counted}), but the "
                f"devices on them take {total}: {parts}; {advice}"
            )
        return self

    @model_validator(mode="after")
    def _dimms_of_the_cpus_technology(self) -> Self:
        # A socket's memory controllers speak one DRAM technology (``Cpu.memory``): HBM3 or a CXL
        # expander as DIMMs, or DDR4 on DDR5-only Sapphire Rapids, had loaded and run at the
        # typed bandwidth (a tester's find). The NMP DIMM is checked against these DIMMs.
        cpu = self.cpus.device
        dimm = self.host_memory.device
        if dimm.technology != cpu.memory.technology:
            raise ValueError(
                f"host_memory.device: {dimm.name!r} is {dimm.technology} memory, but {cpu.name}'s "
                f"memory channels take {cpu.memory.technology} DIMMs (its memory: {cpu.memory.name}); "
                f"choose a {cpu.memory.technology} DIMM"
            )
        return self

    @model_validator(mode="after")
    def _dimms_fit_the_channels(self) -> Self:
        # A tester's RecNMP sweep ran 4 DIMMs per channel on Skylake-SP (2 at most) without a word.
        cpu = self.cpus.device
        most = cpu.max_dimms_per_channel
        dimms = self.host_memory.dimms_per_channel
        if most is not None and dimms > most:
            raise ValueError(
                f"host_memory.dimms_per_channel: {dimms} DIMMs per channel, but a {cpu.name} channel "
                f"takes at most {most} (its max_dimms_per_channel)"
            )
        return self

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        n = self.accelerators.count if self.accelerators else 0
        if n > 1 and self.scale_up is None:
            raise ValueError(f"{n} accelerators need a 'scale_up' fabric (nvswitch, nvlink_mesh or pcie)")
        if self.scale_up is not None and self.scale_up.fabric != "pcie":
            acc = self.accelerators.device if self.accelerators else None
            if acc is None or acc.nvlink is None:
                raise ValueError(f"scale_up fabric {self.scale_up.fabric!r} needs accelerators with NVLink")
            family = acc.nvlink.link.family
            if family not in SCALE_UP_LINK_FAMILIES:
                raise ValueError(
                    f"accelerators.device {acc.name!r}: its nvlink.link {acc.nvlink.link.name!r} is "
                    f"a {family} link, but scale_up fabric {self.scale_up.fabric!r} wires it GPU to GPU, "
                    f"which only a link of family {' or '.join(SCALE_UP_LINK_FAMILIES)} is; give the "
                    "accelerator its NVLink or Infinity Fabric link, or use scale_up fabric 'pcie'"
                )
            ports = acc.nvlink.count
            if self.scale_up.mesh is not None:
                used = [0] * n
                for a, b, links in self.scale_up.mesh:
                    if max(a, b) >= n and min(a, b) >= 0 and a != b and links >= 1:
                        raise ValueError(
                            f"mesh entry {[a, b, links]} wires accelerator {max(a, b)}, but the node "
                            f"has {n}: an NVLink mesh is drawn for its accelerator count; change "
                            "scale_up.mesh with it (or use a system with NVSwitch)"
                        )
                    if not (0 <= a < n and 0 <= b < n) or a == b or links < 1:
                        raise ValueError(f"mesh entry {[a, b, links]} is not [a, b, links] with a != b < {n}")
                    used[a] += links
                    used[b] += links
                over = [i for i, u in enumerate(used) if u > ports]
                if over:
                    raise ValueError(f"mesh uses more than {ports} NVLink ports on accelerator {over[0]}")
            if self.scale_up.switch is not None and self.scale_up.switches is not None:
                needed = n * ports
                have = self.scale_up.switch.ports * self.scale_up.switches
                if needed > have:
                    raise ValueError(
                        f"{n} accelerators x {ports} NVLink ports = {needed} > {self.scale_up.switches} "
                        f"x {self.scale_up.switch.ports} switch ports"
                    )
        for label, group in (("nics", self.nics), ("frontend_nics", self.frontend_nics)):
            if group is not None and group.per_accelerator is not None and n == 0:
                raise ValueError(f"{label}: 'per_accelerator' needs accelerators; use 'count'")
        return self

    # -- derived figures -----------------------------------------------------------------------

    @property
    def num_accelerators(self) -> int:
        return self.accelerators.count if self.accelerators else 0

    def accelerator_socket(self, index: int) -> int:
        """The CPU socket accelerator ``index`` hangs off, by the rule ``recsim.hardware.topology``
        wires it with: through PCIe switch ``index x switches // accelerators``, itself on socket
        ``switch x sockets // switches``; without switches (a Grace's NVLink-C2C, a GPU on the
        root complex) on socket ``index x sockets // accelerators``. ``ValueError`` for an index
        outside ``[0, accelerators)`` (the rule would give a socket the node does not have, or a
        plausible one for an accelerator it does not have)."""
        if not 0 <= index < self.num_accelerators:
            raise ValueError(
                f"accelerator index {index} is outside this node's {self.num_accelerators} accelerators"
            )
        switches = self.pcie_switches.count if self.pcie_switches is not None else None
        return _socket_of(index, self.num_accelerators, self.cpus.count, switches)

    @property
    def host_dram_ranks(self) -> int:
        """What one accelerator's share of the node's host DRAM bandwidth divides it by: the
        sockets times the most accelerators any one socket holds (``accelerator_socket``), so a
        rank has its socket's channels shared with the accelerators on that socket; the number of
        accelerators where every socket holds as many, fewer for a lone GPU on a two-socket node,
        more where one socket holds more than its share. 1 without accelerators (the CPUs' own
        lookups have every socket's channels)."""
        count = self.num_accelerators
        if count < 1:
            return 1
        sockets = self.cpus.count
        switches = self.pcie_switches.count if self.pcie_switches is not None else None
        held = [0] * sockets
        # ``accelerator_socket``'s rule without its per-index check and look-ups (they took 5 % of
        # a planner's time where every priced cached lookup asks for this): the same sockets.
        for i in range(count):
            held[_socket_of(i, count, sockets, switches)] += 1
        return sockets * max(held)

    @property
    def hbm_capacity_bytes(self) -> float:
        acc = self.accelerators
        return acc.count * acc.device.hbm.capacity_bytes if acc else 0.0

    @property
    def memory_channels(self) -> int:
        return self.cpus.count * self.cpus.device.memory_channels

    @property
    def host_memory_capacity_bytes(self) -> float:
        mem = self.host_memory
        return self.memory_channels * mem.dimms_per_channel * mem.capacity_per_dimm_bytes

    @property
    def host_memory_bandwidth_bytes_per_s(self) -> float:
        """All channels at the slower of the DIMM's and the CPU's supported data rate (at two
        DIMMs per channel, the CPU's rate there: ``Cpu.memory_2dpc``)."""
        dimm = self.host_memory.dimm_memory.bandwidth_bytes_per_s
        device = self.cpus.device
        supported = device.memory
        if self.host_memory.dimms_per_channel >= 2 and device.memory_2dpc is not None:
            supported = device.memory_2dpc
        cpu = supported.bandwidth_bytes_per_s
        return self.memory_channels * min(dimm, cpu)

    def nic_count(self, group: NicGroup | None) -> int:
        if group is None:
            return 0
        if group.per_accelerator is not None:
            return group.per_accelerator * self.num_accelerators
        assert group.count is not None
        return group.count

    @property
    def scale_out_nics(self) -> NicGroup | None:
        """The NICs on the scale-out network: the back-end NICs, else the front-end ones."""
        return self.nics if self.nics is not None else self.frontend_nics

    @property
    def scale_out_bandwidth_bytes_per_s(self) -> float:
        """Scale-out bandwidth of the node per direction (all its scale-out NICs): each NIC's rate,
        at most its host link's and, for back-end NICs on the node's PCIe switches, a switch port's
        (as ``recsim.hardware.topology`` wires them: an NDR NIC behind DGX A100's PCIe 4 switches
        moves what the switch port does); for back-end NICs, at most what the accelerators' own
        PCIe links (each at most a switch port) carry to them."""
        group = self.scale_out_nics
        if group is None:
            return 0.0
        rate = group.device.bandwidth_bytes_per_s
        if group is self.nics and self.pcie_switches is not None:
            rate = min(rate, self.pcie_switches.device.port_bandwidth_bytes_per_s)
        total = self.nic_count(group) * rate
        acc = self.accelerators
        if group is self.nics and acc is not None:
            # The accelerators' data reaches the NICs through their own PCIe links (GPUDirect
            # RDMA): two 400G NICs per H100 move what its Gen5 x16 link does (a tester found
            # 100 GB/s per GPU shown where the network moves 63).
            total = min(total, acc.count * self.accelerator_link_bytes_per_s)
        return total

    @property
    def accelerator_link_bytes_per_s(self) -> float:
        """Per direction, one accelerator's own PCIe link, at most a port of the PCIe switch it
        sits on: what it moves to a NIC or a peer under the switch (0 without accelerators)."""
        acc = self.accelerators
        if acc is None:
            return 0.0
        rate = acc.device.host_interface.bandwidth_bytes_per_s
        if self.pcie_switches is not None:
            rate = min(rate, self.pcie_switches.device.port_bandwidth_bytes_per_s)
        return rate

    @property
    def host_bandwidth_bytes_per_s_per_accelerator(self) -> float:
        """Per direction, what one accelerator moves to and from host memory while every
        accelerator of the node does the same (its UVM rows, cache fills, H2D copies): its own
        host link, at most its share of its PCIe switch's uplink to the CPU, which the accelerators
        under the switch share (as ``recsim.hardware.topology`` wires them: DGX A100's 4 PCIe 4
        switches hold 2 GPUs each, so each moves half an x16 link). ASSUMPTION, as the host DRAM
        share of the embedding tiers: every accelerator streams at once, as the planner's symmetric
        schemes make them; a lone one would move more. 0 without accelerators."""
        acc = self.accelerators
        if acc is None or self.pcie_switches is None:
            return self.accelerator_link_bytes_per_s
        sharing = math.ceil(acc.count / self.pcie_switches.count)
        return min(
            self.accelerator_link_bytes_per_s, self.pcie_switches.device.port_bandwidth_bytes_per_s / sharing
        )

    @property
    def scale_up_bandwidth_bytes_per_s_per_accelerator(self) -> float:
        """Per-direction bandwidth one accelerator has to its peers inside the node."""
        acc = self.accelerators
        if acc is None or self.scale_up is None:
            return 0.0
        if self.scale_up.fabric == "pcie":
            return acc.device.host_interface.bandwidth_bytes_per_s
        assert acc.device.nvlink is not None
        link = acc.device.nvlink.link.bandwidth_bytes_per_s
        if self.scale_up.fabric == "nvlink_mesh":
            assert self.scale_up.mesh is not None
            used = max(
                sum(links for a, b, links in self.scale_up.mesh if i in (a, b)) for i in range(acc.count)
            )
            return used * link
        if self.scale_up.switch is not None:
            # Each NVLink ends in a switch port: the slower of the two (``recsim.hardware.topology``).
            link = min(link, self.scale_up.switch.port_bandwidth_bytes_per_s)
        return acc.device.nvlink.count * link


class ScaleOut(Spec):
    """The back-end network between nodes.

    ``single_switch``: every NIC on one switch. ``clos``: NICs on leaf switches, leaves joined by
    spines (``tiers: 2``) or by pods of aggregation switches under a core (``tiers: 3``);
    ``oversubscription`` is a leaf's downlink over uplink bandwidth (1.0 = full bisection).
    ``rail_optimized``: NIC *i* of every node goes to the leaves of rail *i*; with ``tiers: 2``
    rails meet in a spine tier, with ``tiers: 1`` cross-rail traffic hops over NVLink inside a
    node first. The construction is in ``recsim.hardware.topology``.

    ``switch_power``: how the energy model charges the fabric's switches. ``ports_used`` (the
    default): each switch's idle power times the share of its ports the run's links take, as
    MLPerf Training's power rules weight an interconnect "by the provisioning to a run"
    (mlcommons/training_policies power_measurement.adoc, Measure or Estimate Interconnects); the
    rest of a shared fabric serves other jobs. ``whole``: every switch the run touches, all its
    ports (a fabric built for this job alone).

    ``pxn``: whether NCCL's PXN relays leave a node by the NIC on the destination's rail (the
    sender hands its bytes over NVLink to the peer GPU that owns that NIC). NCCL has it on from
    2.12 (``NCCL_PXN_DISABLE`` default 0; ``NCCL_P2P_PXN_LEVEL`` default 2, "use PXN as much as
    possible", src/graph/search.cc ``ncclTopoGetNetDev``), and point-to-point sends (send/recv and
    the all-to-all's grouped sends) relay so on every fabric; ``false`` models
    ``NCCL_PXN_DISABLE=1`` (or a v4 net plugin, which NCCL runs without PXN: src/graph/paths.cc
    ``ncclPxnDisable``): every byte leaves by its sender's own NIC wherever a path from it exists.
    """

    topology: Literal["single_switch", "clos", "rail_optimized"]
    switch: Switch
    tiers: Literal[1, 2, 3] = 2
    # A field bound, not a check in ``_valid``: ``recsim hw schema`` then says it (the schema said
    # any number > 0 and an editor passed 0.5), and a mistake is named at its own line.
    oversubscription: Annotated[float, Ge(1.0)] = 1.0
    switch_power: Literal["ports_used", "whole"] = "ports_used"
    pxn: bool = True

    @model_validator(mode="after")
    def _valid(self) -> Self:
        if self.topology == "single_switch" and self.tiers != 1 and "tiers" in self.model_fields_set:
            # Led by the key, so that the error names the tiers' line, or the base file they came from.
            raise ValueError(f"tiers: topology 'single_switch' has one tier, not {self.tiers}; set tiers: 1")
        return self


#: The most nodes, and accelerators, a system may have. The engines hold per-rank nodes of the
#: step graph and each all-to-all as an ``n x n`` float64 traffic matrix (``n`` accelerators): 2 GiB
#: a matrix at 16,384, beyond what an evaluation can afford on a workstation; a larger request would
#: run out of memory minutes into building the topology instead of failing with a message.
MAX_NODES = 16_384
MAX_ACCELERATORS = 16_384


class Cluster(Spec):
    nodes: PositiveInt = 1
    scale_out: ScaleOut | None = None

    @field_validator("nodes")
    @classmethod
    def _not_too_many(cls, nodes: int) -> int:
        if nodes > MAX_NODES:
            raise ValueError(f"{nodes:,} nodes: recsim simulates at most {MAX_NODES:,}")
        return nodes

    @model_validator(mode="after")
    def _network(self) -> Self:
        if self.nodes > 1 and self.scale_out is None:
            raise ValueError(f"{self.nodes} nodes need a 'scale_out' network")
        return self


class System(Referable):
    """A cluster of identical nodes."""

    ref_kind = "system"
    kind: Literal["system"]
    name: str = Field(min_length=1)
    description: str = ""
    node: Node
    cluster: Cluster = Cluster()

    @model_validator(mode="after")
    def _nics_for_scale_out(self) -> Self:
        if self.num_accelerators > MAX_ACCELERATORS:
            raise ValueError(
                f"{self.cluster.nodes} nodes x {self.node.num_accelerators} accelerators = "
                f"{self.num_accelerators:,}: recsim simulates at most {MAX_ACCELERATORS:,} accelerators "
                "(one rank each in the step graph, an n x n traffic matrix per all-to-all)"
            )
        if self.cluster.nodes > 1 and self.node.nics is None and self.node.frontend_nics is None:
            # Led by the key, so that the error names its line rather than the document's top.
            raise ValueError(
                f"cluster.nodes: {self.cluster.nodes} nodes, but the node has no 'nics' to reach the network"
            )
        # A NIC talks to a switch of its own fabric: an InfiniBand adapter to an InfiniBand switch,
        # RoCE, Ethernet and EFA ones to an Ethernet switch. A mix would be costed with one NIC's
        # calibration over another fabric's switch (a tester's sweep paired ib-ndr-400g with
        # ZionEX's Tomahawk 3 and got 200 Gb/s at the 400G NIC's power).
        group, scale_out = self.node.scale_out_nics, self.cluster.scale_out
        if group is not None and scale_out is not None:
            nic, switch = group.device, scale_out.switch
            wanted = "infiniband" if nic.protocol == "infiniband" else "ethernet"
            if switch.fabric != wanted:
                where = "node.nics.device" if group is self.node.nics else "node.frontend_nics.device"
                raise ValueError(
                    f"{where} {nic.name!r} is {_a(nic.protocol)} NIC, but cluster.scale_out.switch "
                    f"{switch.name!r} is {_a(switch.fabric)} switch: {_a(nic.protocol)} NIC needs "
                    f"{_a(wanted)} switch (or choose a NIC of the switch's fabric)"
                )
        return self

    @property
    def num_nodes(self) -> int:
        return self.cluster.nodes

    @property
    def num_accelerators(self) -> int:
        return self.num_nodes * self.node.num_accelerators

    @property
    def accelerator(self) -> Accelerator | None:
        return self.node.accelerators.device if self.node.accelerators else None

    @property
    def hbm_capacity_bytes_total(self) -> float:
        return self.num_nodes * self.node.hbm_capacity_bytes

    @property
    def host_memory_capacity_bytes_total(self) -> float:
        return self.num_nodes * self.node.host_memory_capacity_bytes

    @property
    def scale_out_bandwidth_bytes_per_s_per_node(self) -> float:
        """What a node's scale-out NICs move per direction into the cluster's fabric: the node's
        figure (``NodeSpec.scale_out_bandwidth_bytes_per_s``), each NIC at most its switch ports'
        rate, as the topology cables them (400G NICs on ZionEX's 200G Tomahawk 3 ports move 200G)."""
        node = self.node
        rate = node.scale_out_bandwidth_bytes_per_s
        group = node.scale_out_nics
        scale_out = self.cluster.scale_out
        if group is not None and scale_out is not None:
            ports = node.nic_count(group) * group.device.ports
            rate = min(rate, ports * scale_out.switch.port_bandwidth_bytes_per_s)
        return rate

    @property
    def scale_out_bandwidth_bytes_per_s_per_accelerator(self) -> float:
        n = self.node.num_accelerators
        return self.scale_out_bandwidth_bytes_per_s_per_node / n if n else 0.0


def _a(word: str) -> str:
    """``word`` with its indefinite article."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def nic_host_cap_note(system: System) -> str | None:
    """What a result says when a NIC's ports are faster than its host interface: the NIC moves
    what its PCIe link does (``Nic.bandwidth_bytes_per_s``), which is real for an 800G NIC on a
    PCIe 5 x16 slot but, far above it, is likely a unit typo ("400 GB/s" for Gb/s) that was
    capped without a word (a tester's find). None where every NIC's link carries its ports."""
    said: list[str] = []
    for label, group in (("nics", system.node.nics), ("frontend_nics", system.node.frontend_nics)):
        if group is None:
            continue
        nic = group.device
        ports = nic.ports * nic.port_bandwidth_bytes_per_s
        link = nic.host_interface.bandwidth_bytes_per_s
        if ports > link * (1.0 + 1e-9):
            said.append(
                f"node.{label} {nic.name!r}: its ports move {ports * 8 / 1e9:g} Gb/s "
                f"({ports / 1e9:.4g} GB/s) but its host interface {nic.host_interface.name} "
                f"{link / 1e9:.4g} GB/s, so it moves "
                "the latter (check the ports' unit if that is not meant)"
            )
    return "; ".join(said) if said else None


def host_memory_cap_note(system: System) -> str | None:
    """What a result says when the host memory's DIMMs are rated faster than its CPU runs any DIMM
    (``Cpu.memory``: the fastest the socket takes, at one DIMM per channel): the channels run at the
    CPU's rate (``Node.host_memory_bandwidth_bytes_per_s`` takes the slower of the two, as a memory
    controller trains DIMMs down to the speed it supports), so a faster DIMM moves nothing. A
    tester's what-if, ``--set node.host_memory.device.pin_rate=7.2Gb/s`` on a DGX H100 (DDR5-7200
    on Sapphire Rapids, DDR5-4800 at most), left every figure as it was without a word, as did
    doubling a GB200's LPDDR5X. Not said of the derating at two DIMMs per channel of a DIMM the CPU
    runs at its rated speed at one (a stock DGX H100's DDR5-4800 at 4400: ``Cpu.memory_2dpc``):
    that is the platform as built, not a what-if. None where the DIMMs are no faster than the CPU's
    rate."""
    dimm = system.node.host_memory.dimm_memory
    cpu = system.node.cpus.device
    rated = dimm.bandwidth_bytes_per_s
    if rated <= cpu.memory.bandwidth_bytes_per_s * (1.0 + 1e-9):
        return None
    channels = system.node.memory_channels
    runs = system.node.host_memory_bandwidth_bytes_per_s / channels
    per_channel = system.node.host_memory.dimms_per_channel
    return (
        f"node.host_memory {dimm.name!r}: rated {rated / 1e9:.4g} GB/s a channel, but {cpu.name} "
        f"runs it at {runs / 1e9:.4g} GB/s ({per_channel} a channel), so the host memory moves "
        f"{runs * channels / 1e9:,.0f} GB/s a node (faster memory needs a CPU that runs it: "
        "node.cpus.device.memory)"
    )


def nvlink_switch_cap_note(system: System) -> str | None:
    """What a result says when the accelerators' NVLinks are faster than the NVSwitch ports they end
    in: each link moves the slower of its two ends (``Node.scale_up_bandwidth_bytes_per_s_per_accelerator``,
    ``recsim.hardware.topology``), so a faster NVLink alone moves nothing (a tester's what-if,
    ``--set node.accelerators.device.nvlink.link.bandwidth=50GB/s`` on a DGX H100, left every figure
    as it was without a word; raising ``node.scale_up.switch.port_bandwidth`` with it does move them).
    None where the ports carry the links (every shipped NVSwitch system: equal rates)."""
    acc = system.node.accelerators
    up = system.node.scale_up
    if acc is None or acc.device.nvlink is None or up is None or up.switch is None or up.fabric != "nvswitch":
        return None
    link = acc.device.nvlink.link.bandwidth_bytes_per_s
    port = up.switch.port_bandwidth_bytes_per_s
    if link <= port * (1.0 + 1e-9):
        return None
    return (
        f"node.accelerators {acc.device.name!r}: its NVLinks ({acc.device.nvlink.link.name}) move "
        f"{link / 1e9:.4g} GB/s but the {up.switch.name} ports they end in {port / 1e9:.4g} GB/s, so "
        "they move the latter (raise node.scale_up.switch.port_bandwidth with them)"
    )


def nic_switch_cap_note(system: System) -> str | None:
    """What a result says when the scale-out NICs are faster than the ports of the cluster's
    switches they plug into: each NIC moves its ports' rate at most (``System.
    scale_out_bandwidth_bytes_per_s_per_node``, ``recsim.hardware.topology``'s NIC-to-leaf links),
    so a faster NIC alone moves nothing. A tester's what-if, 800G NICs on a DGX H100
    (``--set node.nics.device.port_bandwidth=800Gb/s``), left the step as it was, and its one note
    said the NICs moved their PCIe 5 link's 63 GB/s where the 400G switch ports carry 50; so did an
    own node's 800G NIC under its ``hw show``. None where the switch ports carry the NICs (every
    shipped system: equal rates)."""
    group, scale_out = system.node.scale_out_nics, system.cluster.scale_out
    if group is None or scale_out is None:
        return None
    nic, switch = group.device, scale_out.switch
    rate = nic.bandwidth_bytes_per_s  # its ports' rate, at most its host interface's
    ports = nic.ports * switch.port_bandwidth_bytes_per_s
    if rate <= ports * (1.0 + 1e-9):
        return None
    label = "nics" if group is system.node.nics else "frontend_nics"
    return (
        f"node.{label} {nic.name!r}: each moves {rate * 8 / 1e9:.4g} Gb/s but the {switch.name} "
        f"{'port' if nic.ports == 1 else f'{nic.ports} ports'} it plugs into "
        f"{ports * 8 / 1e9:.4g} Gb/s, so it moves the latter on the scale-out network (raise "
        "cluster.scale_out.switch.port_bandwidth with it)"
    )


def capped_rates(system: System) -> list[str]:
    """The notes of the parts that move less than they are rated for because what they plug into
    is slower (``nic_host_cap_note``, ``nic_switch_cap_note``, ``host_memory_cap_note``,
    ``nvlink_switch_cap_note``), in that order; empty where none is. Not said: an accelerator's
    PCIe link faster than its PCIe switch's port, which every shipped PCIe Gen4/Gen5 system has by
    rounding (31.51 against 31.5 GB/s, the switch datasheets' figure), where a note would be noise."""
    notes = (
        nic_host_cap_note(system),
        nic_switch_cap_note(system),
        host_memory_cap_note(system),
        nvlink_switch_cap_note(system),
    )
    return [note for note in notes if note]


def capped_rates_note(system: System) -> str | None:
    """``capped_rates`` as the one line a result's notes carry; None where none is."""
    said = capped_rates(system)
    return "; ".join(said) if said else None
