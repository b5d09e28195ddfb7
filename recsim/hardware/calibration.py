"""Calibrated constants of the cost models, stored with the device they describe.

A device YAML may carry a ``calibration:`` block: the fitted parameters of a cost model and the
measured data they were fitted on (``source``, a path under ``../shared/reference/`` or
``tests/data/``), so every constant that is not a datasheet value says where it comes from. The
fitting code lives next to the cost model (``recsim.cost``); the fitted values are written here by
hand from its output, and tests refit and compare.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Final, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from recsim.config.types import Fraction, PositiveInt, Ratio, Seconds, Spec

# ------------------------------------------------------------------------------------------ socket
# NCCL's socket transport (a NIC without RDMA; ``recsim.cost.collectives.base.socket_calibration``
# turns RDMA constants into socket ones). Its throughput bound is here so that a NIC's
# ``transport: socket`` block can be checked against it when it loads.

#: Fraction of the NIC's line rate that NCCL's socket transport moves, per byte on the wire. Fitted
#: on NVIDIA/nccl issue 398 (AWS p3dn.24xlarge, 2 nodes x 8 V100-SXM2, one 100 Gb/s ENA NIC each,
#: NCCL 2.4.8 over NET/Socket, ring all-reduce forced with NCCL_TREE_THRESHOLD=0): "around 6GB/s"
#: bus bandwidth with 8 processes per node, of 12.5 GB/s, so 0.48. Checks, not fitted:
#: NVIDIA/nccl-tests issue 83 (Azure, 2 nodes x 4 V100, 25 Gb/s TCP, NCCL 2.9.6, Ring/Simple) at
#: most 1.7 GB/s of 3.125 (0.54); NVIDIA/nccl issue 209 (GCP 32 GbE, 2 nodes x 8 GPUs, NCCL
#: 2.4.7ms0) 14.5-14.9 Gb/s of 32 (0.45-0.47); NVIDIA/nccl issue 450 (4 nodes x 8 V100, 100 Gb/s
#: TCP) 4-6 GB/s at 8-128 MB (0.32-0.48). One GPU per node on 32 GbE reached 0.96-0.98 (issue 209):
#: the figure is for multi-GPU nodes sharing the NIC, recsim's training nodes. The checks are tests
#: (tests/unit/test_socket_transport.py: the model's bus bandwidth against each measured figure).
SOCKET_LINE_FRACTION: Final[float] = 0.48

#: Payload share of the bytes each protocol puts on the wire: LL sends 8-byte lines of 4 data bytes
#: and a 4-byte flag, LL128 128-byte lines of 120 data bytes (NCCL src/device/prims_ll128.h,
#: NCCL_LL128_DATAELEMS / NCCL_LL128_LINEELEMS = 15/16), Simple only data. Over RDMA the flags
#: cost GPU time, already in each protocol's efficiency; over sockets the TCP stack's rate applies
#: to every wire byte, flags included.
WIRE_PAYLOAD_FRACTION: Mapping[str, float] = {"ll": 0.5, "ll128": 120 / 128, "simple": 1.0}


class GemmCalibration(Spec):
    """GEMM time ``t = overhead + max(2mnk / (peak x eff_c), bytes / (hbm_bw x memory_efficiency))``.

    ``eff_c = max_efficiency x wave_efficiency(m, n) x k / (k + k_half)``: tiles of
    ``tile_m x tile_n`` outputs fill the SMs in waves (the last wave partly idle, and a tile that
    sticks out of the matrix computes its full size anyway), so
    ``wave_efficiency = m n / (waves x sms x tile_m x tile_n)`` with
    ``waves = ceil(ceil(m / tile_m) ceil(n / tile_n) / sms)``; short K loops cannot hide the
    pipeline fill (``k_half``). ``bytes = (mk + kn + mn) x dtype bytes``. ``overhead`` is the fixed
    GPU-side time of one kernel, without the launch gap in front of it (``recsim.cost.compute`` adds
    ``kernel_launch``, ``recsim.cost.launch``).

    ``peak`` is the accelerator's peak for the GEMM's dtype: efficiencies fitted on ``dtype`` carry
    over to other dtypes in proportion to their peaks. The train/test split and the fit are
    ``recsim.cost.compute.fit_gemm``; ``*_median_abs_error`` are the median absolute relative errors
    on its training and held-out points. ``transferred_from`` names the accelerator whose fit this
    block reuses when the device itself was never measured (then the point counts and errors are
    that fit's, not a validation on this device); a value the YAML adjusts on the way, with a
    measurement of both boards, says so in its comment (H200's ``memory_efficiency``).
    """

    source: str
    dtype: str = "fp16"
    max_efficiency: Fraction
    tile_m: PositiveInt
    tile_n: PositiveInt
    k_half: Ratio
    memory_efficiency: Fraction
    overhead_s: Seconds = Field(alias="overhead")
    train_points: PositiveInt
    test_points: PositiveInt
    train_median_abs_error: Ratio | None = None
    test_median_abs_error: Ratio | None = None
    transferred_from: str | None = None


class GatherCalibration(Spec):
    """Embedding gather-reduce (TBE) efficiency: bytes moved over HBM bandwidth, by row size.

    ``efficiency(row) = max_efficiency x row / (row + row_bytes_half)``: short rows waste most of
    each memory sector and issue slot; ``overhead`` is the fixed kernel time. The same efficiency
    applies to the bytes a gather serves from L2 (at the L2 bandwidth) and from HBM; the fused
    backward's per-lookup gradient gather reaches ``backward_efficiency`` times it (FBGEMM's
    segment-per-CTA accumulation serialises rows that repeat often). The model and the fit are
    ``recsim.cost.embedding`` (``gpu`` and ``calibration``): ``fit_points`` and
    ``median_abs_error`` are the training measurements and their median absolute relative error,
    ``test_points`` and ``test_median_abs_error`` the held-out ones. ``transferred_from`` names the
    accelerator whose fit this block copies when the device itself was never measured.
    """

    source: str
    max_efficiency: Fraction
    row_bytes_half: Ratio
    overhead_s: Seconds = Field(alias="overhead")
    backward_efficiency: Fraction = 1.0
    fit_points: PositiveInt
    median_abs_error: Ratio | None = None
    test_points: PositiveInt | None = None
    test_median_abs_error: Ratio | None = None
    transferred_from: str | None = None


class StreamCalibration(Spec):
    """What one STREAM kernel was measured to move through the accelerator's HBM, as a share of its
    datasheet bandwidth (``efficiency``): the best of STREAM's read-and-write kernels (Add and Triad
    read two arrays and write one; Dot, which only reads, is left out, as no kernel sharing the HBM
    does). A share, not a rate, so that a what-if of the bandwidth (``--set``) scales it. The DES
    HBM link delivers at least this to the ops of a rank together (``recsim.engine.hbm``); a device
    without the block keeps its GEMM fit's ``memory_efficiency``. Not inherited through ``extends:``
    by a device that changes what the share depends on (``Accelerator.inherit``): a share measured
    on one part says nothing certain about another's memory system, and the fit is the fallback."""

    source: str
    efficiency: Fraction


class Calibration(Spec):
    """The calibration block of an accelerator."""

    gemm: GemmCalibration | None = None
    gather: GatherCalibration | None = None
    stream: StreamCalibration | None = None


class KernelKind(StrEnum):
    """Which NCCL kernel path a collective algorithm runs: the ring/tree (and in-switch) collective
    kernels, or the point-to-point kernel of send/recv and all-to-all (``CollectiveProtocol``)."""

    COLLECTIVE = "collective"
    P2P = "p2p"


class CollectiveProtocol(Spec):
    """One NCCL-style protocol (or in-switch algorithm) on one fabric level.

    A stage of ``k`` steps moving ``X`` bytes through a resource of bandwidth ``B`` takes
    ``k x step_latency + (sqrt(k x pipeline_latency) + sqrt(X / (B x efficiency)))^2``, plus
    ``base_latency`` once per collective: ``step_latency`` is paid per step in full,
    ``pipeline_latency`` is the per-step cost of a chunked pipeline whose chunk size grows with the
    message (the classic optimum ``(sqrt(k a) + sqrt(X/B))^2``: latency and transfer overlap except
    for the pipeline fill). ``efficiency`` is the achieved fraction of the link rate (protocol
    overhead such as LL's flag words, gaps between chunks, SM-limited copy rate).

    ``p2p_base_latency`` is the per-call latency of the point-to-point kernel (send/recv, each
    peer's part of an all-to-all: NCCL's p2p path, no ring or tree pipeline) where it differs from
    the ring/tree kernels' ``base_latency`` (NCCL's tuning model gives a base per algorithm,
    src/graph/tuning.cc baseLat); absent, it is ``base_latency``. Read through
    ``base_latency_for``.
    """

    base_latency_s: Seconds = Field(alias="base_latency")
    step_latency_s: Seconds = Field(alias="step_latency")
    pipeline_latency_s: Seconds = Field(default=0.0, alias="pipeline_latency")
    efficiency: Fraction
    p2p_base_latency_s: Seconds | None = Field(default=None, alias="p2p_base_latency")

    def base_latency_for(self, kernel: KernelKind) -> float:
        """The per-call latency of a ``kernel`` kind of collective under this protocol."""
        if kernel is KernelKind.P2P and self.p2p_base_latency_s is not None:
            return self.p2p_base_latency_s
        return self.base_latency_s


#: The protocols a calibration block may give constants for: NCCL's LL, LL128 and Simple, by the
#: names the cost model looks them up by (``recsim.cost.collectives``); a block keyed otherwise
#: (``LL128``) would load and never be used.
PROTOCOL_NAMES: Final[tuple[str, ...]] = ("ll", "ll128", "simple")


def _protocol_name(name: str) -> str:
    if name not in PROTOCOL_NAMES:
        raise ValueError(f"unknown protocol {name!r}: expected one of {', '.join(PROTOCOL_NAMES)}")
    return name


# A ``str`` to the type checker (the cost model looks protocols up by any name), checked on load.
ProtocolName = Annotated[str, AfterValidator(_protocol_name)]


class CollectiveCalibration(Spec):
    """Collective cost constants of a fabric level: a scale-up switch (NVSwitch) or a NIC.

    ``protocols`` maps a protocol name (``ll``, ``ll128``, ``simple``) to its constants; the cost
    model takes the fastest protocol that both levels of a collective list (NCCL's tuner does the
    same). ``nvls`` is the in-switch reduction (NVLink SHARP) of an NVSwitch with
    ``in_network_reduction``. ``fit`` says how the constants were obtained, ``train_points`` /
    ``test_points`` how many measured points were fitted and held out, ``test_median_abs_error``
    the held-out median absolute relative error of the collective times.

    ``transport`` says which network transport a NIC's constants describe: ``rdma`` (NCCL's IB
    verbs path, GPUDirect RDMA) or ``socket`` (NCCL's NET/Socket: TCP through host memory,
    ``recsim.cost.collectives.base.socket_calibration``); a NIC checks it against its ``rdma``
    flag, so a NIC without RDMA cannot inherit an RDMA NIC's constants through ``extends``
    unnoticed. None on a scale-up switch's block (no network transport) and on blocks written
    before the field existed (read as RDMA on a NIC). A ``socket`` block's protocols may move at
    most ``SOCKET_LINE_FRACTION`` of the line rate in wire bytes (``WIRE_PAYLOAD_FRACTION`` of it in
    payload), so RDMA constants cannot be costed as socket under the label; the bound is the
    multi-GPU nodes' figure (one GPU per node on 32 GbE reached 0.96-0.98, nccl issue 209).

    ``harness_issue`` maps a measuring harness (a dataset's tag, e.g. ``azure-a100``) to the time
    its host took to issue one call, fitted with the constants: a call issued back to back with
    others lasts at least that long in that harness's measurements (``Timing`` of
    ``recsim.cost.collectives.calibrate``). It describes how those datasets were measured, not the
    fabric: the cost model never reads it.

    ``transferred_from`` names the fabric (a switch's, or a NIC's, name) whose fit this block
    copies, where it was not measured on its own (``recsim.cost.provenance`` reports it).
    """

    source: str
    fit: str = ""
    transferred_from: str | None = None
    transport: Literal["rdma", "socket"] | None = None
    protocols: dict[ProtocolName, CollectiveProtocol]
    nvls: CollectiveProtocol | None = None
    harness_issue_s: dict[str, Seconds] = Field(default_factory=dict, alias="harness_issue")
    train_points: PositiveInt | None = None
    test_points: PositiveInt | None = None
    test_median_abs_error: Ratio | None = None

    @model_validator(mode="after")
    def _socket_within_what_tcp_moves(self) -> Self:
        # A block that says ``transport: socket`` but carries RDMA constants (a reviewer set
        # rdma=false and transport=socket on ib-ndr-400g: its 0.97 was costed as socket) would
        # cost TCP at RDMA speed; the label alone cannot tell them apart, the efficiency can.
        if self.transport != "socket":
            return self
        over = [
            f"{name} {proto.efficiency:g} > {SOCKET_LINE_FRACTION * WIRE_PAYLOAD_FRACTION.get(name, 1.0):.4g}"
            for name, proto in self.protocols.items()
            if proto.efficiency > SOCKET_LINE_FRACTION * WIRE_PAYLOAD_FRACTION.get(name, 1.0) * (1.0 + 1e-9)
        ]
        if over:
            raise ValueError(
                f"protocols' efficiency above what NCCL's socket transport moves ({', '.join(over)}: "
                f"SOCKET_LINE_FRACTION {SOCKET_LINE_FRACTION} of the line rate x the protocol's payload "
                "per wire byte): RDMA constants under transport: socket; give socket constants (or no "
                "block, for the default socket constants)"
            )
        return self
