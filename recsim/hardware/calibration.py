"""Calibrated constants of the cost models, stored with the device they describe.

A device YAML may carry a ``calibration:`` block: the fitted parameters of a cost model and the
measured data they were fitted on (``source``, a path under ``../shared/reference/`` or
``tests/data/``), so every constant that is not a datasheet value says where it comes from. The
fitting code lives next to the cost model (``recsim.cost``); the fitted values are written here by
hand from its output, and tests refit and compare.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recsim.config.types import Fraction, PositiveInt, Ratio, Seconds, Spec


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


class Calibration(Spec):
    """The calibration block of an accelerator."""

    gemm: GemmCalibration | None = None
    gather: GatherCalibration | None = None


class CollectiveProtocol(Spec):
    """One NCCL-style protocol (or in-switch algorithm) on one fabric level.

    A stage of ``k`` steps moving ``X`` bytes through a resource of bandwidth ``B`` takes
    ``k x step_latency + (sqrt(k x pipeline_latency) + sqrt(X / (B x efficiency)))^2``, plus
    ``base_latency`` once per collective: ``step_latency`` is paid per step in full,
    ``pipeline_latency`` is the per-step cost of a chunked pipeline whose chunk size grows with the
    message (the classic optimum ``(sqrt(k a) + sqrt(X/B))^2``: latency and transfer overlap except
    for the pipeline fill). ``efficiency`` is the achieved fraction of the link rate (protocol
    overhead such as LL's flag words, gaps between chunks, SM-limited copy rate).
    """

    base_latency_s: Seconds = Field(alias="base_latency")
    step_latency_s: Seconds = Field(alias="step_latency")
    pipeline_latency_s: Seconds = Field(default=0.0, alias="pipeline_latency")
    efficiency: Fraction


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
    before the field existed (read as RDMA on a NIC).

    ``harness_issue`` maps a measuring harness (a dataset's tag, e.g. ``azure-a100``) to the time
    its host took to issue one call, fitted with the constants: a call issued back to back with
    others lasts at least that long in that harness's measurements (``Timing`` of
    ``recsim.cost.collectives.calibrate``). It describes how those datasets were measured, not the
    fabric: the cost model never reads it.
    """

    source: str
    fit: str = ""
    transport: Literal["rdma", "socket"] | None = None
    protocols: dict[str, CollectiveProtocol]
    nvls: CollectiveProtocol | None = None
    harness_issue_s: dict[str, Seconds] = Field(default_factory=dict, alias="harness_issue")
    train_points: PositiveInt | None = None
    test_points: PositiveInt | None = None
    test_median_abs_error: Ratio | None = None
