"""Device specs: the parts a system is built from, one YAML document each in ``hardware/devices/``.

Each class is the schema of one ``kind:`` of device. YAML keys are short (``capacity``); attributes
carry their unit (``capacity_bytes``) and hold SI floats. Only datasheet-level facts are fields;
everything that follows from them (a DIMM's bandwidth from its pin rate and bus width, a link's
bandwidth from its lanes, a CPU's vector peak from cores x clock x FLOP/cycle) is a property, so it
is never typed twice and never disagrees with its inputs.

Conventions: bandwidths are per direction; ``power.max`` is the board/TDP limit and ``power.idle``
the measured or specified idle draw.
"""

from __future__ import annotations

import difflib
from typing import Any, Final, Literal, Self

from pydantic import Field, field_validator, model_validator

from recsim.config.loader import Referable
from recsim.config.types import (
    Bytes,
    BytesPerS,
    FlopPerS,
    Fraction,
    Hertz,
    IoPerS,
    Joules,
    JoulesPerBit,
    PositiveInt,
    PositiveSeconds,
    Seconds,
    Spec,
    Watts,
)
from recsim.hardware.calibration import Calibration, CollectiveCalibration

Dtype = Literal["fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4"]

#: Accelerator architectures the cost models know by name: the L2 read bandwidth per clock
#: (``recsim.cost.embedding.gpu.L2_BYTES_PER_CLOCK``) and a trace's compute capability
#: (``recsim.api.recorded_accelerator``). Another name is a part recsim has no figures for, which
#: then gets the documented fallbacks (no L2 speed-up, never matched to a trace's GPU).
KNOWN_ACCELERATOR_ARCHITECTURES: tuple[str, ...] = ("volta", "ampere", "hopper", "blackwell")
#: Vendors the models read: NCCL's peer-to-peer rule through a CPU's root complex
#: (``recsim.hardware.topology``: Intel, Zhaoxin) and the library's parts.
KNOWN_VENDORS: tuple[str, ...] = ("nvidia", "amd", "intel", "arm", "zhaoxin", "ampere computing", "aws")
#: How close (``difflib`` ratio) an unknown name must be to a known one to be read as its typo:
#: "hoper" (0.91 to hopper), "nvidai" (0.83 to nvidia), "intle" (0.8 to intel) are; "zen3" (0.75 to
#: zen2), "rubin", or a known name with more after it ("hopper2", "intel64") is a name of its own.
NEAR_MISS_RATIO = 0.8


def check_known_name(what: str, value: str, known: tuple[str, ...]) -> str:
    """``value``, unless it is a near miss of a name in ``known`` (a ``ValueError`` naming it): a
    misspelt architecture or vendor would otherwise silently lose the figures tied to the name."""
    lowered = value.strip().lower()
    # A known name with more after it ("hopper2", "intel64") names a part of its own, not a typo.
    if lowered in known or any(lowered.startswith(name) for name in known):
        return value
    close = difflib.get_close_matches(lowered, known, n=1, cutoff=NEAR_MISS_RATIO)
    if close:
        raise ValueError(
            f"unknown {what} {value!r}; did you mean {close[0]!r}? (recsim knows {', '.join(known)}; "
            f"a name far from all of them is taken as a part it has no figures for)"
        )
    return value


class Power(Spec):
    """Idle and maximum power of a component."""

    idle_w: Watts = Field(alias="idle")
    max_w: Watts = Field(alias="max")

    @model_validator(mode="after")
    def _idle_below_max(self) -> Self:
        if self.idle_w > self.max_w:
            raise ValueError(f"idle power {self.idle_w} W is above max power {self.max_w} W")
        return self


class AcceleratorPower(Power):
    """An accelerator's powers: ``idle`` is its draw with no program on it (nvidia-smi at 0 MiB
    used), ``job_idle`` its floor while a job runs on it: a process holds a context and its
    memory, and the GPU stays in P0 at its job clocks between kernels. Given where measured;
    where not, the energy model derives it from ``max`` as loaded, overrides included
    (``recsim.cost.power.job_floor_w``: to sweep a power cap, which does not lower the floor, set
    ``job_idle`` too)."""

    job_idle_w: Watts | None = Field(default=None, alias="job_idle")

    @model_validator(mode="after")
    def _job_idle_between(self) -> Self:
        job = self.job_idle_w
        if job is not None and not self.idle_w <= job <= self.max_w:
            raise ValueError(f"job_idle power {job} W is outside idle {self.idle_w} W .. max {self.max_w} W")
        return self


class Device(Referable):
    """Common fields of every device document."""

    kind: str
    name: str = Field(min_length=1)
    description: str = ""


# --------------------------------------------------------------------------- memory


class Memory(Device):
    """A memory device: an HBM stack, a DDR DIMM, or a CXL memory expander.

    Bandwidth is given either as ``pin_rate`` x ``bus_width_bits`` (DRAM: the interface defines it)
    or directly as ``bandwidth`` (a CXL expander, limited by its link): never both.
    """

    ref_kind = "memory"
    kind: Literal["memory"]
    technology: Literal["hbm2", "hbm2e", "hbm3", "hbm3e", "ddr4", "ddr5", "lpddr5", "cxl"]
    capacity_bytes: Bytes = Field(alias="capacity")
    pin_rate_bytes_per_s: BytesPerS | None = Field(default=None, alias="pin_rate")
    bus_width_bits: PositiveInt | None = None
    given_bandwidth_bytes_per_s: BytesPerS | None = Field(default=None, alias="bandwidth")
    channels: PositiveInt = 1
    ranks: PositiveInt | None = None
    latency_s: PositiveSeconds = Field(alias="latency")
    access_granularity_bytes: Bytes = Field(alias="access_granularity")
    energy_per_bit_j: JoulesPerBit = Field(alias="energy_per_bit")
    idle_power_w: Watts | None = Field(default=None, alias="idle_power")

    @model_validator(mode="after")
    def _one_bandwidth(self) -> Self:
        pins = self.pin_rate_bytes_per_s is not None or self.bus_width_bits is not None
        if pins and self.given_bandwidth_bytes_per_s is not None:
            raise ValueError("give either 'pin_rate' and 'bus_width_bits' or 'bandwidth', not both")
        if pins and (self.pin_rate_bytes_per_s is None or self.bus_width_bits is None):
            raise ValueError("'pin_rate' and 'bus_width_bits' go together")
        if not pins and self.given_bandwidth_bytes_per_s is None:
            raise ValueError("missing 'bandwidth' (or 'pin_rate' and 'bus_width_bits')")
        return self

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """Peak bandwidth of one device (stack, DIMM, expander)."""
        if self.given_bandwidth_bytes_per_s is not None:
            return self.given_bandwidth_bytes_per_s
        assert self.pin_rate_bytes_per_s is not None and self.bus_width_bits is not None
        return self.pin_rate_bytes_per_s * self.bus_width_bits


# --------------------------------------------------------------------------- links


class Link(Device):
    """A point-to-point link type: one NVLink link, a PCIe x16 slot, a CXL port.

    Bandwidth per direction is ``lanes`` x ``lane_rate`` x ``encoding_efficiency`` (PCIe) or given
    as ``bandwidth`` (NVLink, whose datasheets quote the payload rate per link).
    """

    ref_kind = "link"
    kind: Literal["link"]
    family: Literal["nvlink", "pcie", "cxl", "qpi", "upi", "xgmi", "sata"]
    generation: PositiveInt
    lanes: PositiveInt | None = None
    lane_rate_bytes_per_s: BytesPerS | None = Field(default=None, alias="lane_rate")
    encoding_efficiency: Fraction | None = None
    given_bandwidth_bytes_per_s: BytesPerS | None = Field(default=None, alias="bandwidth")
    latency_s: Seconds = Field(alias="latency")
    energy_per_bit_j: JoulesPerBit | None = Field(default=None, alias="energy_per_bit")

    @model_validator(mode="after")
    def _one_bandwidth(self) -> Self:
        lanes = (self.lanes, self.lane_rate_bytes_per_s, self.encoding_efficiency)
        if any(x is not None for x in lanes) and self.given_bandwidth_bytes_per_s is not None:
            raise ValueError("give either 'lanes', 'lane_rate', 'encoding_efficiency' or 'bandwidth'")
        if self.given_bandwidth_bytes_per_s is None and any(x is None for x in lanes):
            raise ValueError("missing 'bandwidth' (or all of 'lanes', 'lane_rate', 'encoding_efficiency')")
        return self

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """Payload bandwidth per direction."""
        if self.given_bandwidth_bytes_per_s is not None:
            return self.given_bandwidth_bytes_per_s
        assert self.lanes and self.lane_rate_bytes_per_s and self.encoding_efficiency
        return self.lanes * self.lane_rate_bytes_per_s * self.encoding_efficiency


# --------------------------------------------------------------------------- accelerators


class PeakCompute(Spec):
    """Dense (no sparsity) peak throughput per data type; absent = not supported in hardware."""

    fp64_flop_per_s: FlopPerS | None = Field(default=None, alias="fp64")
    # The CUDA-core fp64 rate where it differs from ``fp64`` (Ampere and Hopper: FP64 tensor cores
    # run DGEMM at twice the rate the CUDA cores give element-wise kernels); absent = ``fp64``.
    fp64_vector_flop_per_s: FlopPerS | None = Field(default=None, alias="fp64_vector")
    fp32_flop_per_s: FlopPerS = Field(alias="fp32")
    tf32_flop_per_s: FlopPerS | None = Field(default=None, alias="tf32")
    bf16_flop_per_s: FlopPerS | None = Field(default=None, alias="bf16")
    fp16_flop_per_s: FlopPerS | None = Field(default=None, alias="fp16")
    fp8_flop_per_s: FlopPerS | None = Field(default=None, alias="fp8")
    int8_flop_per_s: FlopPerS | None = Field(default=None, alias="int8")
    int4_flop_per_s: FlopPerS | None = Field(default=None, alias="int4")

    def flop_per_s(self, dtype: Dtype) -> float | None:
        """The peak for ``dtype``, or None if the hardware has no fast path for it."""
        value: float | None = getattr(self, f"{dtype}_flop_per_s")
        return value


class Hbm(Spec):
    """The accelerator's on-package memory as shipped (datasheet capacity and bandwidth)."""

    memory: Memory
    stacks: PositiveInt
    capacity_bytes: Bytes = Field(alias="capacity")
    bandwidth_bytes_per_s: BytesPerS = Field(alias="bandwidth")

    @model_validator(mode="after")
    def _within_stacks(self) -> Self:
        # A product may run its stacks below the technology's peak, never above it.
        limit = self.stacks * self.memory.bandwidth_bytes_per_s
        if self.bandwidth_bytes_per_s > limit * 1.0001:
            raise ValueError(
                f"bandwidth {self.bandwidth_bytes_per_s:.4g} B/s exceeds {self.stacks} stacks of "
                f"{self.memory.name} ({limit:.4g} B/s)"
            )
        return self


#: Link families that can be an accelerator's scale-up link (its ``nvlink`` ports under an
#: ``nvswitch`` or ``nvlink_mesh`` fabric): NVIDIA's NVLink and AMD's Infinity Fabric (xGMI), the
#: GPU-to-GPU links of MI250X and MI300X. The topology takes either as a scale-up edge
#: (``recsim.hardware.topology.SCALE_UP``); the others are host (PCIe, CXL), socket (QPI, UPI) or
#: storage (SATA) links, which no GPU wires to its peers.
SCALE_UP_LINK_FAMILIES: tuple[str, ...] = ("nvlink", "xgmi")


class NvlinkPorts(Spec):
    """The scale-up ports of an accelerator: NVLink, or Infinity Fabric links on an AMD GPU (the
    key keeps the name of the fabric it was written for)."""

    link: Link
    count: PositiveInt

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """Total NVLink bandwidth per direction of one accelerator."""
        return self.count * self.link.bandwidth_bytes_per_s


#: The accelerator fields a GEMM or gather fit depends on: its peaks, its HBM, its SM count, and
#: the architecture and vendor whose kernels were measured. An accelerator that extends another
#: and changes one of them is costed with a transferred fit (``Accelerator.inherit``).
FIT_DEFINING_FIELDS: tuple[str, ...] = ("peak", "hbm", "sms", "architecture", "vendor")


class Accelerator(Device):
    """A GPU (or other accelerator) package."""

    ref_kind = "accelerator"
    kind: Literal["accelerator"]
    vendor: str
    architecture: str
    form_factor: Literal["sxm", "pcie", "oam"]
    peak: PeakCompute
    hbm: Hbm
    l2_bytes: Bytes = Field(alias="l2")
    sms: PositiveInt
    boost_clock_hz: Hertz = Field(alias="boost_clock")
    kernel_launch_s: PositiveSeconds = Field(alias="kernel_launch")
    # The least GPU time of an element-wise kernel (``recsim.cost.launch``): the fixed part of the
    # element-wise, optimizer and loss kernels (a GEMM's is its fit's ``overhead``).
    elementwise_kernel_s: PositiveSeconds = Field(alias="elementwise_kernel")
    nvlink: NvlinkPorts | None = None
    host_interface: Link
    power: AcceleratorPower
    calibration: Calibration | None = None

    @classmethod
    def inherit(cls, parent: dict[str, Any], child: dict[str, Any], merged: dict[str, Any]) -> None:
        """An accelerator that ``extends:`` another but differs in what its fits depend on
        (``FIT_DEFINING_FIELDS``) and gives no fit of its own inherits a transferred one: its
        ``calibration.gemm`` / ``gather`` get ``transferred_from: <parent>`` (unless already
        transferred from elsewhere), so ``recsim hw show`` and the run's note say so; its
        ``calibration.stream`` (optional) is dropped unless it gives its own. The NICs
        guard the analogous case with their block's ``transport``. A tester's MI300X written as
        ``extends: h100-sxm5-80gb`` showed H100's GEMM fit as its own."""
        changed = [key for key in FIT_DEFINING_FIELDS if merged.get(key) != parent.get(key)]
        calibration = merged.get("calibration")
        if not changed or not isinstance(calibration, dict):
            return
        own = child.get("calibration")
        for block in ("gemm", "gather"):
            fit = calibration.get(block)
            given = isinstance(own, dict) and own.get(block) is not None
            if isinstance(fit, dict) and not given and not fit.get("transferred_from"):
                fit["transferred_from"] = parent.get("name")
        # A measured STREAM share is optional (the GEMM fit stands in for it), so one measured on
        # the parent is dropped rather than carried to a part whose memory differs.
        if not (isinstance(own, dict) and own.get("stream") is not None):
            calibration.pop("stream", None)

    @field_validator("architecture")
    @classmethod
    def _known_architecture(cls, value: str) -> str:
        checked = check_known_name("accelerator architecture", value, KNOWN_ACCELERATOR_ARCHITECTURES)
        # The cost models look a known architecture up by its name ("Hopper" is hopper).
        canonical = checked.strip().lower()
        return canonical if canonical in KNOWN_ACCELERATOR_ARCHITECTURES else checked

    @field_validator("vendor")
    @classmethod
    def _known_vendor(cls, value: str) -> str:
        return check_known_name("vendor", value, KNOWN_VENDORS)


# --------------------------------------------------------------------------- CPUs


class SocketInterconnect(Spec):
    """The coherent links of one socket to the other sockets (QPI, UPI, AMD xGMI)."""

    link: Link
    links: PositiveInt


#: L1D misses one core keeps in flight where its CPU document gives no ``line_fill_buffers``: the 10
#: L1D fill buffers of Intel's Sandy Bridge to Skylake cores (Intel 64 and IA-32 Architectures
#: Optimization Reference Manual, Sandy Bridge, Haswell and Skylake microarchitecture sections: "10
#: L1D fill buffers"; Skylake-SP, Cascade Lake and Cooper Lake keep the Skylake core). A newer core
#: without a source of its own is costed with it (``recsim hw show`` says so).
DEFAULT_LINE_FILL_BUFFERS: Final[int] = 10


class Cpu(Device):
    """One CPU socket."""

    ref_kind = "cpu"
    kind: Literal["cpu"]
    vendor: str
    architecture: str
    cores: PositiveInt
    threads_per_core: PositiveInt = 1
    base_clock_hz: Hertz = Field(alias="base_clock")
    turbo_clock_hz: Hertz | None = Field(default=None, alias="turbo_clock")
    fp32_flop_per_cycle_per_core: PositiveInt
    memory: Memory
    # The fastest DIMMs the socket runs at two DIMMs per channel, where slower than ``memory``
    # (Intel ARK: "DDR5-4800 1DPC, DDR5-4400 2DPC"); None: the same as at one.
    memory_2dpc: Memory | None = None
    memory_channels: PositiveInt
    # The most DIMMs a channel takes (the platform's DIMMs per channel); None: not checked.
    max_dimms_per_channel: PositiveInt | None = None
    llc_bytes: Bytes = Field(alias="llc")
    # Load-to-use latency of a random read that hits the last-level cache (the ``ddr`` tier's
    # LLC hits, ``recsim.cost.embedding.ddr``), TLB misses included, as random embedding rows meet
    # them: every CPU of the library on the basis of LMBench's random loads (AnandTech, 2017), not
    # a structural figure with the TLB misses removed.
    llc_latency_s: PositiveSeconds = Field(alias="llc_latency")
    # Separate LLCs the socket's ``llc`` is split into, each shared only by its own cores (AMD's
    # core complexes: a Zen 2 core reaches its CCX's 16 MiB of L3, not the socket's 256); 1: one
    # LLC shared by every core of the socket (Intel's mesh or ring, NVIDIA's SCF).
    llc_domains: PositiveInt = 1
    # L1D misses one core keeps in flight (Intel's L1D fill buffers, AMD's miss address buffers,
    # Arm's linefill buffers): the memory-level parallelism of the host embedding tiers' random row
    # reads (``recsim.cost.embedding.ddr``). None: ``DEFAULT_LINE_FILL_BUFFERS`` (Skylake's 10).
    line_fill_buffers: PositiveInt | None = None
    pcie_lanes: PositiveInt
    # The PCIe lanes a 2-socket system of this CPU has in all, where its socket-to-socket links
    # are carved out of the same SerDes as its PCIe lanes (AMD EPYC's xGMI: a 2P Rome/Milan/Genoa
    # system has 128 with 4 xGMI links, up to 160 with 3, not 2 x 128); None: the socket links
    # have SerDes of their own (Intel QPI/UPI, whose 2S systems have 2 x ``pcie_lanes``).
    pcie_lanes_two_sockets: PositiveInt | None = None
    socket_interconnect: SocketInterconnect | None = None
    power: Power

    @model_validator(mode="after")
    def _two_socket_lanes_within_two_sockets(self) -> Self:
        both = self.pcie_lanes_two_sockets
        if both is not None and both > 2 * self.pcie_lanes:
            raise ValueError(
                f"pcie_lanes_two_sockets: {both} lanes in a 2-socket system, more than its 2 sockets' "
                f"2 x {self.pcie_lanes} (pcie_lanes); expected at most {2 * self.pcie_lanes}"
            )
        return self

    @field_validator("vendor")
    @classmethod
    def _known_vendor(cls, value: str) -> str:
        return check_known_name("vendor", value, KNOWN_VENDORS)

    @property
    def fp32_flop_per_s(self) -> float:
        """Vector FP32 peak of the socket at base clock (wide-vector code rarely sustains turbo)."""
        return self.cores * self.base_clock_hz * self.fp32_flop_per_cycle_per_core

    @property
    def memory_bandwidth_bytes_per_s(self) -> float:
        """Peak DRAM bandwidth of the socket with every channel populated."""
        return self.memory_channels * self.memory.bandwidth_bytes_per_s

    @property
    def llc_domain_bytes(self) -> float:
        """The LLC one core reaches: the socket's ``llc`` over its ``llc_domains``."""
        return self.llc_bytes / self.llc_domains

    @property
    def fill_buffers(self) -> int:
        """L1D misses one core keeps in flight: ``line_fill_buffers``, else the Skylake-class default."""
        return self.line_fill_buffers if self.line_fill_buffers is not None else DEFAULT_LINE_FILL_BUFFERS


# --------------------------------------------------------------------------- network


class Nic(Device):
    """A network interface card (one port unless ``ports`` says otherwise).

    ``latency`` is the adapter's own one-way traversal; the host PCIe link and the switches are
    separate hops of the topology, so a NIC-to-NIC time is PCIe + NIC + wire/switches + NIC + PCIe.

    ``rdma``: whether collectives reach the NIC by RDMA (NCCL's IB verbs transport, GPUDirect) or,
    without it, through NCCL's socket transport (kernel TCP, staged in host memory): a NIC without
    RDMA is costed with the socket constants (its ``calibration`` of ``transport: socket``, else
    ``recsim.cost.collectives.base.DEFAULT_SOCKET``).
    """

    ref_kind = "nic"
    kind: Literal["nic"]
    protocol: Literal["roce", "infiniband", "ethernet", "efa"]
    rdma: bool
    ports: PositiveInt = 1
    port_bandwidth_bytes_per_s: BytesPerS = Field(alias="port_bandwidth")
    latency_s: Seconds = Field(alias="latency")
    host_interface: Link
    power: Power
    calibration: CollectiveCalibration | None = None

    @model_validator(mode="after")
    def _calibration_of_its_transport(self) -> Self:
        # A block without ``transport`` predates the socket model and was written for RDMA NICs.
        # A NIC without RDMA that extends an RDMA one would otherwise inherit its constants and be
        # costed as RDMA (a tester found eth-100g exactly as fast as roce-100g).
        if self.calibration is None:
            return self
        transport = self.calibration.transport or "rdma"
        wanted = "rdma" if self.rdma else "socket"
        if transport != wanted:
            raise ValueError(
                f"calibration.transport: {transport!r}, but the NIC has rdma: {str(self.rdma).lower()}, "
                f"so its collectives use the {wanted} transport: give a calibration block of "
                f"transport: {wanted} (or none, for the default {wanted} constants)"
            )
        return self

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """Total bandwidth per direction over all ports, capped by the host interface."""
        return min(self.ports * self.port_bandwidth_bytes_per_s, self.host_interface.bandwidth_bytes_per_s)


class Switch(Device):
    """A switch: Ethernet/InfiniBand for scale-out, NVSwitch or a PCIe switch inside a node."""

    ref_kind = "switch"
    kind: Literal["switch"]
    fabric: Literal["ethernet", "infiniband", "nvlink", "pcie"]
    ports: PositiveInt
    port_bandwidth_bytes_per_s: BytesPerS = Field(alias="port_bandwidth")
    latency_s: Seconds = Field(alias="latency")
    in_network_reduction: bool = False
    power: Power
    calibration: CollectiveCalibration | None = None

    @property
    def capacity_bytes_per_s(self) -> float:
        """Switching capacity per direction (all ports at line rate)."""
        return self.ports * self.port_bandwidth_bytes_per_s


# --------------------------------------------------------------------------- storage and NMP


class NdpEngine(Spec):
    """A near-data processing engine inside an SSD (RecSSD-style gather-reduce)."""

    engine: str
    cores: PositiveInt
    clock_hz: Hertz = Field(alias="clock")
    flop_per_cycle_per_core: PositiveInt
    sram_bytes: Bytes = Field(alias="sram")
    power: Power

    @property
    def flop_per_s(self) -> float:
        """Peak reduction throughput of the engine."""
        return self.cores * self.clock_hz * self.flop_per_cycle_per_core


class Ssd(Device):
    """An NVMe SSD; with ``ndp`` it can gather and reduce embedding rows inside the drive."""

    ref_kind = "ssd"
    kind: Literal["ssd"]
    interface: Link
    capacity_bytes: Bytes = Field(alias="capacity")
    page_bytes: Bytes = Field(alias="page_size")
    flash_page_bytes: Bytes = Field(alias="flash_page_size")
    channels: PositiveInt
    dies_per_channel: PositiveInt
    channel_bandwidth_bytes_per_s: BytesPerS = Field(alias="channel_bandwidth")
    sequential_read_bytes_per_s: BytesPerS = Field(alias="sequential_read")
    random_read_iops: IoPerS = Field(alias="random_read")
    read_latency_s: PositiveSeconds = Field(alias="read_latency")
    dram_cache_bytes: Bytes | None = Field(default=None, alias="dram_cache")
    power: Power
    ndp: NdpEngine | None = None

    @property
    def internal_bandwidth_bytes_per_s(self) -> float:
        """Aggregate flash channel bandwidth (what in-SSD processing can use)."""
        return self.channels * self.channel_bandwidth_bytes_per_s

    @property
    def external_bandwidth_bytes_per_s(self) -> float:
        """What crosses the host interface: the lesser of the drive's read rate and its link."""
        return min(self.sequential_read_bytes_per_s, self.interface.bandwidth_bytes_per_s)


class NmpProcessingUnit(Spec):
    """The per-rank processing unit of a RecNMP DIMM (gather-reduce next to the DRAM chips)."""

    clock_hz: Hertz = Field(alias="clock")
    flop_per_cycle: PositiveInt
    energy_per_op_j: Joules | None = Field(default=None, alias="energy_per_op")


class NmpDimm(Device):
    """A near-memory-processing DIMM (RecNMP): one processing unit and RankCache per rank.

    Rank-level parallelism: every rank streams its own rows at the channel rate at the same time,
    so the internal bandwidth is ``ranks`` times what the channel could carry.
    """

    ref_kind = "nmp"
    kind: Literal["nmp"]
    memory: Memory
    ranks: PositiveInt
    rank_cache_bytes: Bytes = Field(alias="rank_cache")
    rank_cache_latency_s: PositiveSeconds = Field(alias="rank_cache_latency")
    rank_cache_energy_per_bit_j: JoulesPerBit = Field(alias="rank_cache_energy_per_bit")
    processing_unit: NmpProcessingUnit
    power: Power

    @property
    def capacity_bytes(self) -> float:
        return self.memory.capacity_bytes

    @property
    def internal_bandwidth_bytes_per_s(self) -> float:
        """Aggregate rank bandwidth inside the DIMM."""
        return self.ranks * self.memory.bandwidth_bytes_per_s


DEVICE_KINDS: dict[str, type[Device]] = {
    cls.ref_kind: cls for cls in (Accelerator, Cpu, Memory, Link, Nic, Switch, Ssd, NmpDimm)
}
