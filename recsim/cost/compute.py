"""Compute cost model: how long a ``Compute`` op takes on an accelerator or on CPU sockets.

GEMMs (``GemmCalibration``, fitted on measured fp16 GEMMs)::

    t = overhead + max(2mnk / (peak x eff_c), (mk + kn + mn) x dtype_bytes / (hbm_bw x memory_efficiency))
    eff_c = max_efficiency x m n / (waves x sms x tile_m x tile_n) x k / (k + k_half)
    waves = ceil(ceil(m / tile_m) x ceil(n / tile_n) / sms)

The second factor of ``eff_c`` is wave quantisation: the output is cut into ``tile_m x tile_n``
tiles, one per SM at a time, so a tile that sticks out of the matrix still costs a whole tile and the
last wave leaves SMs idle; the third is the K-loop fill (a short K loop cannot hide the pipeline
prologue). Small GEMMs are bound by their bytes (the weights) over HBM bandwidth; ``overhead`` is
the fixed GPU-side time of one kernel. When the tiles cannot fill the SMs (``tiles < sms``: weight
gradients, whose K is the batch), the K loop may be split into ``s`` slices that run side by side,
each with its own K-loop fill, and whose fp32 partial tiles are written, then read back by a second
kernel that writes C (cuBLAS's ``splitKreduce_kernel``): it runs after the product, at the
accelerator's element-wise floor (``elementwise_kernel``) plus its reads, and takes its own launch
gap. The time is the best over ``s`` from 1 to ``sms`` (``_gemm_kernel``), in the fit as in the
simulator. ``recsim.cost.gemm_trace`` checks the model on a real trace's recommendation-sized GEMMs.

Unaligned operands (``narrow_loads``): a tensor-core kernel loads its operands 16 B at a time only
where every row it reads or writes is a multiple of 16 B long (``VECTOR_ACCESS_BYTES``: a linear
layer's input and output widths); else cuBLAS runs its ``align1`` kernels, one element a load, and
the product keeps ``NARROW_LOAD_EFFICIENCY`` of its compute ceiling (fitted on half the A100
recommendation trace's unaligned TF32 products, tested on the other half:
``recsim.cost.gemm_trace.fit_narrow_efficiency``). The fit's LLM shapes are all aligned, and
``gemm_time_s`` prices an aligned product unless told otherwise.

Data: ``../shared/reference/gemm/`` (vidur's Llama-2-7B ``mlp.csv`` on A100-80GB and H100-80GB,
see its SOURCE.md). Every row gives four GEMMs (QKV, attention output, gated up, down projections)
for ``M = num_tokens`` and a tensor-parallel degree; times are medians in ms. vidur's default
``record_function`` profiling sums the durations of the CUDA kernels launched inside each op
(Kineto/CUPTI events), so the times are GPU-side kernel time **without** the host launch. Hence:

* ``GemmCalibration.overhead`` is GPU-side only, and ``compute_time_s`` adds
  ``accelerator.kernel_launch_s`` (the GPU-side gap between back-to-back queued kernels, measured on
  Kineto traces: ``recsim.cost.launch``; the host's ``cudaLaunchKernel`` call is host time) once
  per kernel: once for a forward GEMM or any other op, twice for a backward GEMM node (its dX and
  dW GEMMs are two kernels), once more for each split-K reduction kernel. ``gemm_time_s`` and
  ``kernel_time_s`` are kernel time only.

Fit (``fit_gemm``): points whose ``crc32("MxNxK") % 5 == 0`` are held out (about 20 %; repeated
measurements of one shape stay on one side), the rest are fitted by least squares on
``log(predicted) - log(measured)`` (``scipy.optimize.least_squares``, two fixed starts) over
``max_efficiency, k_half, memory_efficiency, overhead`` for every ``tile_m, tile_n`` in
{64, 128, 256}^2; the lowest training cost wins. The median absolute relative error on the held-out
points is the figure quoted in the device YAMLs and checked by the tests.

Dtypes: the efficiencies were fitted on fp16; another dtype uses its own peak with the same
efficiencies (time scales with the ratio of peaks) and its own element size for the bytes, except
that a product in fp32 or fp64 runs on the CUDA cores (SIMT), not the tensor cores, and reaches
more of its peak: ``SIMT_GEMM_EFFICIENCY`` replaces the fit's ``max_efficiency`` there, and
``SIMT_K_HALF`` its K-loop fill (calibrated on half the A100 recommendation trace's SGEMMs, tested
on the other half: ``recsim.cost.gemm_trace``). A dtype
the hardware has no peak for runs as the next wider one that it has (fp8 on A100 and V100 or int8
on V100 -> fp16, bf16 on V100 -> fp32), element size included.

Other ops (elementwise, optimizer, loss, memory, interaction, sequence, ...) are a roofline with the
same calibration: ``kernels x fixed + max(flops / (peak x max_efficiency), bytes / (hbm_bw x
memory_efficiency))`` (``Compute.kernels``: the kernels one node stands for, each with its floor and
its ``kernel_launch``), where ``fixed`` is the GEMM fit's ``overhead`` for the matrix products
(interaction, sequence) and the accelerator's measured ``elementwise_kernel`` floor for the others
(``recsim.cost.launch``: 3 us on A100, against the GEMM fit's 5.4 us). Element-wise kernels run
on the CUDA cores, so their FLOP ceiling is the
vector fp32 peak (fp64 for fp64); ``interaction`` and ``sequence`` ops are batched matrix products
(dot interaction, DCN cross layers, attention units, GRU gates) and use the dtype's tensor peak.

CPUs (``cpu_compute_time_s``, inference servers): ``max(flops / (sockets x fp32 peak x
CPU_GEMM_EFFICIENCY), bytes / (sockets x DRAM bandwidth x CPU_MEMORY_EFFICIENCY))``; the two
constants are sourced where they are defined.
"""

from __future__ import annotations

import csv
import functools
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, cast

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

from recsim.errors import InfeasibleError
from recsim.graph.ir import Compute
from recsim.hardware.calibration import GemmCalibration
from recsim.hardware.devices import Accelerator, Cpu, Dtype
from recsim.workload.spec import DTYPE_BYTES

__all__ = [
    "CPU_GEMM_EFFICIENCY",
    "CPU_MEMORY_EFFICIENCY",
    "NARROW_LOAD_EFFICIENCY",
    "SIMT_GEMM_EFFICIENCY",
    "SIMT_K_HALF",
    "TILE_GRID",
    "UNCALIBRATED_GEMM",
    "VECTOR_ACCESS_BYTES",
    "VIDUR_GEMMS",
    "GemmKernelTime",
    "GemmPoint",
    "GemmShape",
    "compute_time_s",
    "cpu_compute_time_s",
    "fit_gemm",
    "gemm_calibration",
    "gemm_kernel_times",
    "gemm_kernels",
    "gemm_time_s",
    "hbm_bytes",
    "is_test_point",
    "kernel_time_s",
    "load_gemm_points",
    "median_abs_error",
    "narrow_loads",
    "product_kernel_time_s",
    "run_dtype",
    "simt_calibration",
    "split_points",
]

VIDUR_GEMMS: Final[tuple[str, ...]] = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
"""The four plain GEMMs of each row of vidur's ``mlp.csv`` (SOURCE.md)."""

TILE_GRID: Final[tuple[int, ...]] = (64, 128, 256)
"""Candidate tile sizes (per side) of the fit: the CTA tile edges cuBLAS/CUTLASS kernels use."""

TEST_EVERY: Final[int] = 5
"""A point is held out when ``crc32("MxNxK") % TEST_EVERY == 0``."""

# Next wider dtype with (usually) a hardware peak, for dtypes a device has no fast path for.
_WIDER: Final[dict[str, str]] = {
    "int4": "int8",
    "int8": "fp16",
    "fp8": "fp16",
    "fp16": "fp32",
    "bf16": "fp32",
    "tf32": "fp32",
}

# Categories whose FLOPs are matrix products (tensor-core work), not element-wise arithmetic.
_MATMUL_CATEGORIES: Final[frozenset[str]] = frozenset({"interaction", "sequence"})

# Relative tolerance when matching an op's FLOPs to 2mnk (forward) or 4mnk (backward) of its shapes.
_FLOPS_RTOL: Final[float] = 0.01

CPU_GEMM_EFFICIENCY: Final[float] = 0.85
"""Sustained fraction of ``Cpu.fp32_flop_per_s`` (base-clock vector peak) a large SGEMM reaches.

DERIVED, Skylake-SP: 0.93 x 0.91. 0.93: MKL 2019 SGEMM at 89-90 GFLOPS of 96 theoretical on one
Skylake-X core at a fixed 3.0 GHz (github.com/carlushuang/cpu_gemm_opt issue #1, wjc404, 2020).
0.91: all cores of a dual Xeon Gold 6140 sustain 2405 GFLOPS of AVX-512 FMA (github.com/Mysticial/
Flops issue #18, 2017) against 2 x 18 x 2.3 GHz x 32 = 2650 at base clock: AVX-512 all-core
frequency (2.1 GHz) is below base. Applied to every CPU of the library (no per-SKU data); small
inference batches are memory-bound anyway.
"""

CPU_MEMORY_EFFICIENCY: Final[float] = 0.78
"""Sustained fraction of ``Cpu.memory_bandwidth_bytes_per_s`` (all channels at the pin rate).

MEASURED (vendor), Skylake-SP: Intel's AVX-512-tuned STREAM Triad reaches 199 GB/s on two Xeon
Platinum 8176 with 6 x DDR4-2666 each, of 256 GB/s theoretical (0.78), as reported in AnandTech,
"Sizing Up Servers: Intel's Skylake-SP Xeon versus AMD's EPYC 7000" (2017), "Memory Subsystem:
Bandwidth". An upper bound: untuned binaries reach less.
"""


# ------------------------------------------------------------------------------------------ data


@dataclass(frozen=True, slots=True)
class GemmPoint:
    """One measured GEMM ``C[m, n] = A[m, k] B[k, n]`` and its kernel time in seconds."""

    m: int
    n: int
    k: int
    time_s: float
    dtype: str = "fp16"
    op: str = ""


def _exact_div(a: int, b: int, what: str) -> int:
    if a % b:
        raise ValueError(f"{what}: {a} is not divisible by {b}")
    return a // b


def load_gemm_points(csv_path: str | Path) -> list[GemmPoint]:
    """The four GEMMs of every row of a vidur ``mlp.csv``, with (M, N, K) from SOURCE.md's formulas.

    With ``h = n_embd``, ``f = n_expanded_embd``, ``q = n_head``, ``kv = n_kv_head``, ``d = h / q``
    and ``TP = num_tensor_parallel_workers``: QKV ``[M, h] x [h, (q + 2 kv) d / TP]``, attention
    output ``[M, q d / TP] x [q d / TP, h]``, up ``[M, h] x [h, 2f / TP]`` (``f / TP`` ungated),
    down ``[M, f / TP] x [f / TP, h]``. Time is the median, ms -> s; the data type is fp16.
    """
    points: list[GemmPoint] = []
    with Path(csv_path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            m = int(row["num_tokens"])
            tp = int(row["num_tensor_parallel_workers"])
            h, f = int(row["n_embd"]), int(row["n_expanded_embd"])
            q, kv = int(row["n_head"]), int(row["n_kv_head"])
            d = _exact_div(h, q, "n_embd / n_head")
            gated = row["use_gated_mlp"].strip().lower() == "true"
            shapes = {  # op -> (n, k)
                "attn_pre_proj": (_exact_div((q + 2 * kv) * d, tp, "qkv width / TP"), h),
                "attn_post_proj": (h, _exact_div(q * d, tp, "q d / TP")),
                "mlp_up_proj": (_exact_div(2 * f if gated else f, tp, "up width / TP"), h),
                "mlp_down_proj": (h, _exact_div(f, tp, "f / TP")),
            }
            for op in VIDUR_GEMMS:
                n, k = shapes[op]
                time_s = float(row[f"time_stats.{op}.median"]) * 1e-3
                points.append(GemmPoint(m, n, k, time_s, "fp16", op))
    return points


def is_test_point(point: GemmPoint) -> bool:
    """Whether ``point`` is held out of the fit: a hash of its shape, so stable across runs and files."""
    return zlib.crc32(f"{point.m}x{point.n}x{point.k}".encode()) % TEST_EVERY == 0


def split_points(points: Sequence[GemmPoint]) -> tuple[list[GemmPoint], list[GemmPoint]]:
    """(train, test) by ``is_test_point``."""
    test = [p for p in points if is_test_point(p)]
    train = [p for p in points if not is_test_point(p)]
    return train, test


# ------------------------------------------------------------------------------------------ peaks


def run_dtype(dtype: str, accelerator: Accelerator) -> str:
    """The dtype a matrix product of ``dtype`` runs in on ``accelerator``.

    ``dtype`` itself if the hardware has a peak for it, else the next wider dtype it has (fp8 on
    A100 -> fp16); a dtype recsim does not know (int64, bool) counts as fp32.
    """
    current = dtype if dtype in DTYPE_BYTES else "fp32"
    while accelerator.peak.flop_per_s(cast(Dtype, current)) is None:
        if current not in _WIDER:
            raise InfeasibleError(f"accelerator {accelerator.name!r} has no {dtype} peak nor a wider one")
        current = _WIDER[current]
    return current


def run_dtype_note(dtype: str, accelerator: Accelerator) -> str | None:
    """What a result says when ``accelerator`` runs ``dtype``'s matrix products as a wider dtype
    (``run_dtype``), or None when it runs them as they are."""
    used = run_dtype(dtype, accelerator)
    if used == dtype:
        return None
    why = {"fp8": " (fp8 tensor cores came with Hopper)", "bf16": " (bf16 ones with Ampere)"}.get(dtype, "")
    return (
        f"{accelerator.name} has no {dtype} peak: its {dtype} matrix products run at {used}'s peak "
        f"with {used} operands{why}"
    )


#: The best fraction of its fp32 (or fp64) peak a large SIMT GEMM reaches (cuBLAS SGEMM on CUDA
#: cores, no tensor cores): the mean of two measurements, each divided by the wave and K-loop factors
#: the model gives its shape (64 x 64 tiles, k_half 27.5): V100-SXM2, torch.matmul fp32 10240^3 at
#: 14.51 of 15.7 TFLOP/s (zzc0721/torch-performance-test-data issue 140, torch 2.7, CUDA 12.8:
#: 0.927) and A100 80GB PCIe, cuBLAS SGEMM 5120 x 4096 x 4096 at 18.88 of 19.49 TFLOP/s
#: (Yinghan-Li/YHs_Sample issue 4: 0.987). The tensor-core fit's ``max_efficiency`` (0.74 on A100)
#: made fp32 GEMMs 1.3x too slow: V100 FP32 DLRM runs came out 17-25 % under their throughput.
SIMT_GEMM_EFFICIENCY: Final[float] = (0.927 + 0.987) / 2
_SIMT_DTYPES = ("fp32", "fp64")

#: The K-loop fill (``k_half``, in K elements) of a SIMT product (fp32, fp64 on the CUDA cores,
#: cuBLAS's ``ampere_sgemm_*``) in place of the tensor-core fit's (27.5 on A100). CALIBRATED
#: (``recsim.cost.gemm_trace.fit_simt_k_half``): log least squares on the half of the A100
#: recommendation trace's SGEMM shapes whose ``crc32`` is even (GEMVs, a dimension of 1, left out:
#: cuBLAS runs them on its ``gemv`` kernels). Those SGEMMs reduce over K = 8-64 (embedding widths),
#: where the fill is most of the loop: with the fp16 fit's 27.5 they were 29-33 % slow; the 8
#: held-out shapes went from a median error of +29 % to -2 % (median |error| 29 % to 5 %). An
#: UN-CALIBRATED TRANSFER to the other GPUs (V100's fp32 DLRM runs among them). ``SIMT_GEMM_EFFICIENCY``
#: was derived at the fit's 27.5; at this fill its two large-K measurements would give 0.926 and
#: 0.983 instead of 0.927 and 0.987 (0.3 %), left as derived.
SIMT_K_HALF: Final[float] = 11.64

# TF32 tensor-core products keep the fp16 fit's K-loop fill (27.5). The A100 trace's aligned TF32
# products are ~17 % fast with it (signed median; 1-wave shapes at M = 1024 with K of 96-1440 the
# most), and a fill of its own fitted per wave on half of them (229 K elements) brought the other
# half to -2 % -- but made the trace's multi-wave short-K products 13-41 % slow and moved the DLE
# DLRM TF32 case from +3.6 % to -6.3 %; fitted per kernel instead (352) it gave +4.2 % there. The
# trace cannot tell the two apart, and charging the fill per kernel means refitting the fp16 fits,
# so neither is adopted (an investigation's finding, branch ``gemm-tf32-279``).

#: The width in bytes of the vectorised (128-bit) global loads a tensor-core GEMM kernel issues when
#: every operand's leading dimension is a multiple of it (CUTLASS's ``align4`` fp32/TF32, ``align8``
#: fp16 kernels). NVIDIA's CUTLASS maintainers: "most kernels targeting Tensor Cores require 128b
#: aligned memory accesses. This enables vectorized memory accesses, fewer address instructions,
#: and greater efficiency" (github.com/NVIDIA/cutlass issue 75, pointing to the cuBLAS guide's
#: tensor-op restrictions); NVIDIA's "Matrix Multiplication Background" user guide asks for fp16
#: dimensions that are multiples of 8 and TF32 ones that are multiples of 4 (16 B) for that reason.
VECTOR_ACCESS_BYTES: Final[int] = 16

#: The share of its compute ceiling (``max_efficiency x`` the tensor peak) a tensor-core GEMM keeps
#: when an operand's leading dimension is not a multiple of ``VECTOR_ACCESS_BYTES``: cuBLAS then runs
#: an ``align1`` kernel, one element per load (4 B for TF32: four times the load instructions of the
#: 16 B path, so at most a quarter of the speed where the kernel is bound by issuing them).
#: CALIBRATED (``recsim.cost.gemm_trace.fit_narrow_efficiency``): log least squares on the half of
#: the A100 recommendation trace's TF32 products with an unaligned leading dimension (11 shapes,
#: ``crc32`` of the shapes even; ../shared/reference/traces/recsys_a100_8rank_rank3_control.json.gz).
#: The other 11 went from a median error of -44 % to -8 % (median |error| 44 % to 17 %). The trace
#: is one A100's, with 4-byte (TF32) operands only: other GPUs, and fp16 and narrower types, take the
#: same share (an UN-CALIBRATED TRANSFER: their narrow paths, 2-8 B for fp16, are not measured).
NARROW_LOAD_EFFICIENCY: Final[float] = 0.3185


def _matmul_calibration(dtype: str, accelerator: Accelerator) -> GemmCalibration:
    """The GEMM calibration for a matrix product of ``dtype``: the fit's, with ``SIMT_GEMM_EFFICIENCY``
    and ``SIMT_K_HALF`` where the product runs on the CUDA cores (fp32, fp64)."""
    cal = gemm_calibration(accelerator)
    used = run_dtype(dtype, accelerator)
    if used in _SIMT_DTYPES:
        return simt_calibration(cal)
    return cal


@functools.lru_cache(maxsize=64)
def simt_calibration(cal: GemmCalibration, k_half: float = SIMT_K_HALF) -> GemmCalibration:
    """``cal`` for a SIMT product: ``SIMT_GEMM_EFFICIENCY`` and a K-loop fill of ``k_half`` (another
    value than ``SIMT_K_HALF`` only to fit that constant)."""
    return cal.model_copy(update={"max_efficiency": SIMT_GEMM_EFFICIENCY, "k_half": k_half})


def _tensor_peak(dtype: str, accelerator: Accelerator) -> tuple[float, float]:
    """(peak FLOP/s, bytes per element) of a matrix product of ``dtype`` on ``accelerator``."""
    used = run_dtype(dtype, accelerator)
    peak = accelerator.peak.flop_per_s(cast(Dtype, used))
    assert peak is not None
    return peak, DTYPE_BYTES[used]


def _vector_peak(dtype: str, accelerator: Accelerator) -> float:
    """The CUDA-core peak that element-wise kernels of ``dtype`` are held to (fp64: the CUDA cores'
    rate, ``fp64_vector``, where the datasheet's FP64 figure is the tensor cores')."""
    peak = accelerator.peak
    fp64 = peak.fp64_vector_flop_per_s or peak.fp64_flop_per_s
    if dtype == "fp64" and fp64 is not None:
        return fp64
    return accelerator.peak.fp32_flop_per_s


def gemm_calibration(accelerator: Accelerator) -> GemmCalibration:
    """The accelerator's GEMM calibration, or ``UNCALIBRATED_GEMM`` if its YAML has none."""
    calibration = accelerator.calibration
    if calibration is not None and calibration.gemm is not None:
        return calibration.gemm
    return UNCALIBRATED_GEMM


def elementwise_memory_efficiency(accelerator: Accelerator) -> float:
    """The share of HBM bandwidth a streaming kernel reaches on ``accelerator``: element-wise ops,
    optimizer updates and the casts of reduced-precision communication alike (one definition: a
    reviewer found the casts at a constant of their own, 0.83, beside the others' fit). It is the
    GEMM fit's ``memory_efficiency``, fitted on the memory-bound GEMM shapes of
    ../shared/reference/gemm/. Cross-check, the STREAM copy over the datasheet bandwidth
    (../shared/reference/microbench/ND_*_results.md): A100 1.61 / 2.039 = 0.79 (fit 0.780), H100
    2.90 / 3.35 = 0.87 (fit 0.814), H200 4.01 / 4.8 = 0.84 (fit 0.785), within 1-7 %."""
    return gemm_calibration(accelerator).memory_efficiency


UNCALIBRATED_GEMM: Final[GemmCalibration] = GemmCalibration.model_validate(
    {
        # An UN-CALIBRATED TRANSFER: the a100-sxm4-80gb fit (hardware/devices/accelerators/
        # a100-sxm4-80gb.yaml), used for accelerators whose YAML has no calibration block. A test
        # keeps these numbers equal to that YAML.
        "source": "tests/data/gemm/compute_a100_llama2-7b_mlp.csv",
        "dtype": "fp16",
        "max_efficiency": 0.7412,
        "tile_m": 64,
        "tile_n": 64,
        "k_half": 27.47,
        "memory_efficiency": 0.7804,
        "overhead": "5.369 us",
        "train_points": 3381,
        "test_points": 795,
        "transferred_from": "a100-sxm4-80gb",
    }
)


# ------------------------------------------------------------------------------------------ GEMMs


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, slots=True)
class GemmKernelTime:
    """One GEMM's GPU time under the calibrated roofline: ``total_s`` in all, of which ``reduce_s`` is
    split-K's reduction kernel (0 when the product runs unsplit); ``splits`` K slices (1: unsplit);
    ``partial_bytes``: the fp32 partials split-K moves through HBM besides the operands and the
    result (each slice's written by the product and read by the reduction; 0 when unsplit)."""

    total_s: float
    reduce_s: float
    splits: int
    partial_bytes: float = 0.0

    @property
    def kernels(self) -> int:
        """Kernels launched: the product's, and split-K's reduction when it splits."""
        return 2 if self.splits > 1 else 1


def _gemm_kernel(
    batch: int,
    m: int,
    n: int,
    k: int,
    peak: float,
    bandwidth: float,
    sms: int,
    elem_bytes: float,
    cal: GemmCalibration,
    reduce_fixed_s: float,
    reads_c: bool = False,
    narrow_efficiency: float = 1.0,
) -> GemmKernelTime:
    """One GEMM (``batch`` independent products) under the calibrated roofline; ``reads_c``: it adds
    into its output (``beta = 1``), reading ``m x n`` more; ``reduce_fixed_s``: the fixed time of a
    split-K reduction kernel (the accelerator's element-wise floor); ``narrow_efficiency``: the share of
    the fit's compute ceiling it keeps (below 1 when its operands are not ``VECTOR_ACCESS_BYTES``-
    aligned: ``NARROW_LOAD_EFFICIENCY``, ``narrow_loads``)."""
    if min(batch, m, n, k) <= 0:
        return GemmKernelTime(cal.overhead_s, 0.0, 1)
    tiles = batch * _ceil_div(m, cal.tile_m) * _ceil_div(n, cal.tile_n)
    waves = _ceil_div(tiles, sms)
    per_wave = sms * cal.tile_m * cal.tile_n / (peak * cal.max_efficiency * narrow_efficiency)
    # 2 b m n k / (peak x eff_c) with eff_c expanded: b m n and k cancel, leaving the time of
    # ``waves`` full waves of K + k_half. Exactly monotone in m, n, k (no rounding in the cancel).
    compute = 2.0 * (k + cal.k_half) * waves * per_wave
    bandwidth_eff = bandwidth * cal.memory_efficiency
    # The fit's points are beta = 0 products (A, B read, C written once); a kernel that adds into
    # its output reads C as well, at the same effective bandwidth.
    c_reads = m * n if reads_c else 0
    memory = batch * (m * k + k * n + m * n + c_reads) * elem_bytes / bandwidth_eff
    plain = max(compute, memory)
    if tiles >= sms:
        return GemmKernelTime(cal.overhead_s + plain, 0.0, 1)
    # Split-K (cuBLAS/CUTLASS pick it when the output tiles cannot fill the SMs, e.g. weight
    # gradients C[15, 50] with K = 98,304 in the A100 recsys trace, or C[512, 256] with K = the
    # batch in a DLRM bottom MLP): the K loop is cut into ``s`` slices that run as separate tiles,
    # each with its own K-loop fill (``k_half``), and each slice writes an fp32 partial tile. A
    # second kernel then reads the ``s`` partials back and writes C (cuBLAS's
    # ``splitKreduce_kernel``, CUTLASS's parallel split-K reduction), after the first on the same
    # stream: its element-wise floor and its reads add to the product's time, they do not overlap
    # it. More slices fill more SMs but move more partials; the library's choice is taken as the
    # best ``s`` up to one slice per SM (``s = 1`` is the plain kernel).
    # MEASURED: in the A100 recsys trace (../shared/reference/traces/, the GEMM shapes that ran
    # without another stream's kernel beside them: ``recsim.cost.gemm_trace``) cuBLAS ran all 30
    # shapes this rule splits with a K grid dimension over 1, 23 of them followed by a
    # ``splitKreduce_kernel`` of 4-6 us (the element-wise floor, 3 us, and the partials); pricing
    # that kernel took the split ops from 31 % to 15 % fast. cuBLAS also splits 26 shapes the rule
    # prices whole.
    # ASSUMPTION: cuBLAS's split heuristic is not published, and it sometimes reduces in the product
    # kernel itself (CUTLASS's serial split-K: 7 of the 30): priced as the parallel kind. The fit
    # (``_gemm_kernel_array``) uses the same rule. Every candidate is non-decreasing in m, n and k
    # and the candidates do not depend on them, so their minimum is too; past ``tiles >= sms`` the
    # plain kernel is taken, which is never below the minimum.
    slice_bytes = batch * m * n * 4.0  # one slice's fp32 partials, written or read once
    slice_s = slice_bytes / bandwidth_eff
    best, best_splits, best_reduce = plain, 1, 0.0
    for splits in range(2, sms + 1):
        split_waves = _ceil_div(tiles * splits, sms)
        moved = memory + splits * slice_s
        reduce_s = reduce_fixed_s + splits * slice_s
        # Every term has a floor that never falls as ``splits`` grows (the partials, the reduction,
        # the K-loop fill of every wave with slices of at least one step): past it nothing is faster.
        if max(moved, 2.0 * (1 + cal.k_half) * split_waves * per_wave) + reduce_s >= best:
            break
        split_compute = 2.0 * (_ceil_div(k, splits) + cal.k_half) * split_waves * per_wave
        candidate = max(split_compute, moved) + reduce_s
        if candidate < best:
            best, best_splits, best_reduce = candidate, splits, reduce_s
    partial_bytes = 2.0 * best_splits * slice_bytes if best_splits > 1 else 0.0
    return GemmKernelTime(cal.overhead_s + best, best_reduce, best_splits, partial_bytes)


def _gemm_kernel_array(
    m: NDArray[np.float64],
    n: NDArray[np.float64],
    k: NDArray[np.float64],
    peak: float,
    bandwidth: float,
    sms: int,
    elem_bytes: float,
    params: Sequence[float],
    tile_m: int,
    tile_n: int,
    reduce_fixed_s: float,
) -> NDArray[np.float64]:
    """``_gemm_kernel``'s total time over arrays (batch 1), for fitting. ``params``: max_eff,
    k_half, mem_eff, ovh."""
    max_efficiency, k_half, memory_efficiency, overhead_s = params
    tiles = np.ceil(m / tile_m) * np.ceil(n / tile_n)
    per_wave = sms * tile_m * tile_n / (peak * max_efficiency)
    compute = 2.0 * (k + k_half) * np.ceil(tiles / sms) * per_wave
    bandwidth_eff = bandwidth * memory_efficiency
    memory = (m * k + k * n + m * n) * elem_bytes / bandwidth_eff
    best = np.maximum(compute, memory)
    few = tiles < sms  # split-K candidates, as in ``_gemm_kernel``
    if np.any(few):
        t, kk, mem = tiles[few], k[few], memory[few]
        slice_s = m[few] * n[few] * 4.0 / bandwidth_eff
        split = best[few]
        for splits in range(2, sms + 1):
            waves = np.ceil(t * splits / sms)
            candidate = np.maximum(
                2.0 * (np.ceil(kk / splits) + k_half) * waves * per_wave, mem + splits * slice_s
            ) + (reduce_fixed_s + splits * slice_s)
            split = np.minimum(split, candidate)
        best[few] = split
    result: NDArray[np.float64] = overhead_s + best
    return result


def gemm_time_s(
    m: int, n: int, k: int, dtype: str, accelerator: Accelerator, *, batch: int = 1, narrow: bool = False
) -> float:
    """Kernel time (no host launch) of ``C[m, n] = A[m, k] B[k, n]`` (``batch`` of them for bmm);
    ``narrow``: the caller's layout leaves a leading dimension unaligned (``narrow_loads``: the
    leading dimensions depend on the layout, which ``m, n, k`` alone do not give)."""
    peak, elem_bytes = _tensor_peak(dtype, accelerator)
    return _gemm_kernel(
        batch,
        m,
        n,
        k,
        peak,
        accelerator.hbm.bandwidth_bytes_per_s,
        accelerator.sms,
        elem_bytes,
        _matmul_calibration(dtype, accelerator),
        accelerator.elementwise_kernel_s,
        narrow_efficiency=NARROW_LOAD_EFFICIENCY
        if narrow and _narrow_path(dtype, accelerator, m, n, k)
        else 1.0,
    ).total_s


# ------------------------------------------------------------------------------------------ fit


def _arrays(points: Sequence[GemmPoint]) -> tuple[NDArray[np.float64], ...]:
    data = np.array([(p.m, p.n, p.k, p.time_s) for p in points], dtype=np.float64).reshape(-1, 4)
    return data[:, 0], data[:, 1], data[:, 2], data[:, 3]


def _only_dtype(points: Sequence[GemmPoint]) -> str:
    dtypes = {p.dtype for p in points}
    if len(dtypes) != 1:
        raise ValueError(f"points must share one dtype, got {sorted(dtypes)}")
    return dtypes.pop()


def _errors(
    points: Sequence[GemmPoint], accelerator: Accelerator, params: Sequence[float], tile_m: int, tile_n: int
) -> NDArray[np.float64]:
    """Relative errors ``predicted / measured - 1`` of the points under a parameter set."""
    m, n, k, measured = _arrays(points)
    peak, elem_bytes = _tensor_peak(_only_dtype(points), accelerator)
    predicted = _gemm_kernel_array(
        m,
        n,
        k,
        peak,
        accelerator.hbm.bandwidth_bytes_per_s,
        accelerator.sms,
        elem_bytes,
        params,
        tile_m,
        tile_n,
        accelerator.elementwise_kernel_s,
    )
    result: NDArray[np.float64] = predicted / measured - 1.0
    return result


def _params(cal: GemmCalibration) -> tuple[float, float, float, float]:
    return cal.max_efficiency, cal.k_half, cal.memory_efficiency, cal.overhead_s


def median_abs_error(points: Sequence[GemmPoint], accelerator: Accelerator, cal: GemmCalibration) -> float:
    """Median of ``|predicted / measured - 1|`` over ``points`` with calibration ``cal``."""
    errors = _errors(points, accelerator, _params(cal), cal.tile_m, cal.tile_n)
    return float(np.median(np.abs(errors)))


# Starting points (max_efficiency, k_half, memory_efficiency, overhead in us) and bounds of the fit;
# the overhead is fitted in microseconds so that all four parameters are of order one to a hundred.
# Search settings, not model constants: the efficiencies' bounds are their admissible (0, 1], k_half
# and the overhead get ranges far beyond the fits in hardware/devices/accelerators/ (k_half 27.47 and
# 74.71, overhead 5.369 and 5.483 us), which bind none of them.
_STARTS: Final[tuple[tuple[float, float, float, float], ...]] = (
    (0.8, 100.0, 0.8, 5.0),
    (0.6, 500.0, 0.6, 2.0),
)
_LOWER: Final[tuple[float, ...]] = (0.05, 1.0, 0.05, 0.0)
_UPPER: Final[tuple[float, ...]] = (1.0, 1e5, 1.0, 100.0)
_SCALE: Final[tuple[float, ...]] = (0.1, 100.0, 0.1, 1.0)


def fit_gemm(
    points: Sequence[GemmPoint], accelerator: Accelerator, *, source: str = "fit_gemm"
) -> GemmCalibration:
    """Fit ``GemmCalibration`` to measured GEMMs on ``accelerator`` (see the module docstring).

    Deterministic: a hash split, fixed starts, a fixed tile grid, ties go to the first candidate.
    """
    dtype = _only_dtype(points)
    train, test = split_points(points)
    if not train or not test:
        raise ValueError(f"need points on both sides of the split, got {len(train)} train, {len(test)} test")
    m, n, k, measured = _arrays(train)
    peak, elem_bytes = _tensor_peak(dtype, accelerator)
    bandwidth, sms = accelerator.hbm.bandwidth_bytes_per_s, accelerator.sms
    reduce_fixed_s = accelerator.elementwise_kernel_s
    log_measured = np.log(measured)

    best: tuple[float, int, int, NDArray[np.float64]] | None = None
    for tile_m in TILE_GRID:
        for tile_n in TILE_GRID:

            def residuals(
                x: NDArray[np.float64], tile_m: int = tile_m, tile_n: int = tile_n
            ) -> NDArray[np.float64]:
                params = (x[0], x[1], x[2], x[3] * 1e-6)
                predicted = _gemm_kernel_array(
                    m, n, k, peak, bandwidth, sms, elem_bytes, params, tile_m, tile_n, reduce_fixed_s
                )
                result: NDArray[np.float64] = np.log(predicted) - log_measured
                return result

            for start in _STARTS:
                fit = least_squares(residuals, start, bounds=(_LOWER, _UPPER), x_scale=_SCALE)
                if best is None or fit.cost < best[0]:
                    best = (float(fit.cost), tile_m, tile_n, fit.x)
    assert best is not None
    _, tile_m, tile_n, x = best
    params = (float(x[0]), float(x[1]), float(x[2]), float(x[3]) * 1e-6)
    train_error = float(np.median(np.abs(_errors(train, accelerator, params, tile_m, tile_n))))
    test_error = float(np.median(np.abs(_errors(test, accelerator, params, tile_m, tile_n))))
    return GemmCalibration.model_validate(
        {
            "source": source,
            "dtype": dtype,
            "max_efficiency": params[0],
            "tile_m": tile_m,
            "tile_n": tile_n,
            "k_half": params[1],
            "memory_efficiency": params[2],
            "overhead": f"{params[3]!r} s",
            "train_points": len(train),
            "test_points": len(test),
            "train_median_abs_error": train_error,
            "test_median_abs_error": test_error,
        }
    )


# ------------------------------------------------------------------------------------------ ops


@dataclass(frozen=True, slots=True)
class GemmShape:
    """One GEMM kernel: ``batch`` products ``[m, k] x [k, n]``; ``reads_c``: each adds into its
    ``[m, n]`` output (``D = A B + C``, ``beta = 1``), which it then reads as well."""

    batch: int
    m: int
    n: int
    k: int
    reads_c: bool = False

    @property
    def flops(self) -> float:
        return 2.0 * self.batch * self.m * self.n * self.k

    def bytes(self, elem_bytes: float) -> float:
        out = self.m * self.n * (2 if self.reads_c else 1)
        return self.batch * (self.m * self.k + self.k * self.n + out) * elem_bytes


def _forward_shape(shapes: Sequence[Sequence[int]]) -> GemmShape | None:
    """The product the input shapes describe: ``mm``/``addmm``/``bmm`` (the last two matrices chain)
    or ``linear(x[..., K], W[N, K])``; None if they describe neither."""
    mats = [tuple(int(v) for v in s) for s in shapes if len(s) >= 2]
    if len(mats) >= 2:
        a, b = mats[-2], mats[-1]
        if len(a) == len(b) == 2 and a[1] == b[0]:
            return GemmShape(1, a[0], b[1], a[1])
        if len(a) == len(b) == 3 and a[0] == b[0] and a[2] == b[1]:
            return GemmShape(a[0], a[1], b[2], a[2])
    if len(shapes) >= 2 and len(shapes[0]) >= 1 and len(shapes[1]) == 2 and shapes[0][-1] == shapes[1][1]:
        x, w = shapes[0], shapes[1]
        return GemmShape(1, math.prod(int(v) for v in x[:-1]), int(w[0]), int(x[-1]))
    return None


def gemm_kernels(op: Compute) -> tuple[GemmShape, ...]:
    """The GEMM kernels of a ``gemm`` op: one forward product, or dX and dW of a backward node.

    The shapes give the forward product; the op's FLOPs say which: ``2mnk`` is the forward GEMM
    (or, for an op named ``*_wgrad``, the weight gradient ``dW[k, n]`` alone),
    ``4mnk`` (a backward node carries twice the forward FLOPs) is ``dX[m, k] = dY[m, n] W^T`` and
    ``dW[k, n] = X^T dY``. Empty when the shapes do not describe a product or the FLOPs match
    neither (then ``compute_time_s`` falls back to the plain roofline). An op that
    ``accumulates`` has every kernel read its output too (``GemmShape.reads_c``).
    """
    forward = _forward_shape(op.shapes)
    if forward is None or op.flops <= 0 or forward.flops <= 0:
        return ()
    ratio = op.flops / forward.flops
    b, m, n, k = forward.batch, forward.m, forward.n, forward.k
    c = op.accumulates
    if abs(ratio - 1.0) <= _FLOPS_RTOL:
        # A weight gradient alone (``*_wgrad``: the first bottom layer, whose input needs none) is
        # ``dW[k, n] = X^T dY``, a product reducing over the batch, not the forward's.
        return (GemmShape(b, k, n, m, c),) if op.op.endswith("_wgrad") else (replace(forward, reads_c=c),)
    if abs(ratio - 2.0) <= 2 * _FLOPS_RTOL:
        return (GemmShape(b, m, k, n, c), GemmShape(b, k, n, m, c))
    return ()


def gemm_kernel_times(
    op: Compute,
    accelerator: Accelerator,
    *,
    narrow_efficiency: float = NARROW_LOAD_EFFICIENCY,
    calibration: GemmCalibration | None = None,
) -> tuple[GemmKernelTime, ...]:
    """The GPU time of each GEMM of a ``gemm`` op (``gemm_kernels``), split-K's reduction kernel
    included where it splits; empty when its shapes do not describe a product. ``narrow_efficiency``:
    the compute share its kernels keep when its operands are unaligned (``narrow_loads``; another
    value than ``NARROW_LOAD_EFFICIENCY`` only to fit that constant); ``calibration``: the matrix-product
    calibration to price it with instead of ``_matmul_calibration``'s (only to fit the SIMT constant)."""
    kernels = gemm_kernels(op) if op.category == "gemm" else ()
    if not kernels:
        return ()
    peak, elem_bytes = _tensor_peak(op.dtype, accelerator)
    mm = calibration or _matmul_calibration(op.dtype, accelerator)
    bandwidth, sms = accelerator.hbm.bandwidth_bytes_per_s, accelerator.sms
    reduce_fixed_s = accelerator.elementwise_kernel_s
    unaligned = narrow_loads(op, elem_bytes)
    return tuple(
        _gemm_kernel(
            g.batch,
            g.m,
            g.n,
            g.k,
            peak,
            bandwidth,
            sms,
            elem_bytes,
            mm,
            reduce_fixed_s,
            g.reads_c,
            narrow_efficiency if unaligned and _narrow_path(op.dtype, accelerator, g.m, g.n, g.k) else 1.0,
        )
        for g in kernels
    )


def narrow_loads(op: Compute, elem_bytes: float) -> bool:
    """Whether a ``gemm`` op's operands miss the 16-byte alignment of vectorised loads
    (``VECTOR_ACCESS_BYTES``) with elements of ``elem_bytes``.

    The leading dimensions are taken as its forward product's ``n`` and ``k``: a linear layer's
    ``X[m, k]``, ``W[n, k]`` and ``Y[m, n]`` are stored with rows of ``k`` and ``n`` elements, and its
    input gradient ``dX = dY W`` and weight gradient ``dW = dY^T X`` read and write the same
    tensors, so one layer's three GEMMs share them; ``m`` (the batch) is a row count, never a row
    length. (A product recorded on a transposed view, the weight gradient ``X^T dY`` a trace records
    as ``mm([k, b], [b, n])``, has its ``m`` as a row length too: 3 of the 24 ``align1`` products of
    the A100 recommendation trace, priced aligned here.)
    """
    forward = _forward_shape(op.shapes)
    if forward is None:
        return False
    return any((d * elem_bytes) % VECTOR_ACCESS_BYTES for d in (forward.n, forward.k))


def _narrow_path(dtype: str, accelerator: Accelerator, m: int, n: int, k: int) -> bool:
    """Whether an unaligned product takes the narrow-load kernels ``NARROW_LOAD_EFFICIENCY`` prices:
    a tensor-core product whose dimensions all exceed 1. The SIMT kernels (fp32, fp64) come in no
    alignment variants (the trace's ``ampere_sgemm_*``), and a product with a dimension of 1 is a
    matrix-vector product, which cuBLAS runs on its GEMV kernels (``gemvx``, ``gemv2N``, ``gemv2T``,
    ``gemmk1`` in the trace), not a tile loop."""
    return min(m, n, k) > 1 and run_dtype(dtype, accelerator) not in _SIMT_DTYPES


def kernel_time_s(op: Compute, accelerator: Accelerator) -> float:
    """GPU-side time of ``op`` (every kernel it launches), without the host launch."""
    cal = gemm_calibration(accelerator)
    bandwidth = accelerator.hbm.bandwidth_bytes_per_s
    times = gemm_kernel_times(op, accelerator)
    if times:
        return sum(t.total_s for t in times)
    if op.category == "gemm" or op.category in _MATMUL_CATEGORIES:
        # A product without usable shapes gets no wave model: the best efficiency the fit allows,
        # and a GEMM kernel's fixed time.
        peak, _ = _tensor_peak(op.dtype, accelerator)
        cal = _matmul_calibration(op.dtype, accelerator)
        fixed = cal.overhead_s
    else:
        # An element-wise kernel sets up no tiles nor K loop: its own, measured floor.
        peak = _vector_peak(op.dtype, accelerator)
        fixed = accelerator.elementwise_kernel_s
    compute = op.flops / (peak * cal.max_efficiency)
    memory = (op.bytes_read + op.bytes_written) / (bandwidth * cal.memory_efficiency)
    # A node that stands for several kernels run back to back (``Compute.kernels``) pays each one's
    # floor; its FLOPs and bytes are their sums.
    return fixed * op.kernels + max(compute, memory)


def product_kernel_time_s(op: Compute, accelerator: Accelerator) -> float:
    """``kernel_time_s`` less split-K's reduction kernels: the GPU time of the product kernels alone,
    as a Kineto trace times them (it records cuBLAS's ``splitKreduce_kernel`` as a kernel of its own,
    which a replay keeps)."""
    times = gemm_kernel_times(op, accelerator)
    if times:
        return sum(t.total_s - t.reduce_s for t in times)
    return kernel_time_s(op, accelerator)


def hbm_bytes(
    op: Compute, accelerator: Accelerator, times: tuple[GemmKernelTime, ...] | None = None
) -> float:
    """The bytes ``kernel_time_s``'s memory terms move through HBM for ``op``: each GEMM kernel's
    operands and result once, from its shapes (as its roofline reads them), and where it splits K
    the fp32 partials its product writes and its reduction reads (``GemmKernelTime.partial_bytes``,
    which its time pays for too); else the op's bytes read and written. ``times``:
    ``gemm_kernel_times(op, accelerator)`` where the caller has them already."""
    if op.category == "gemm":
        kernels = gemm_kernels(op)
        if kernels:
            _, elem_bytes = _tensor_peak(op.dtype, accelerator)
            if times is None:
                times = gemm_kernel_times(op, accelerator)
            return math.fsum(
                g.bytes(elem_bytes) + t.partial_bytes for g, t in zip(kernels, times, strict=True)
            )
    return op.bytes_read + op.bytes_written


def compute_ceiling_flop_per_s(op: Compute, accelerator: Accelerator) -> float:
    """The best FLOP rate ``kernel_time_s`` lets ``op`` reach on ``accelerator``: its dtype's tensor
    peak x the matrix-product calibration's ``max_efficiency`` for a matrix product (a GEMM's wave
    and K-loop factors only lower it), the vector peak x the fit's ``max_efficiency`` for the rest.
    The power model (``recsim.cost.power``) takes an op at this rate to draw the board's limit."""
    if op.category == "gemm" or op.category in _MATMUL_CATEGORIES:
        peak, _ = _tensor_peak(op.dtype, accelerator)
        return peak * _matmul_calibration(op.dtype, accelerator).max_efficiency
    return _vector_peak(op.dtype, accelerator) * gemm_calibration(accelerator).max_efficiency


def compute_time_s(
    op: Compute,
    accelerator: Accelerator,
    *,
    include_launch: bool = True,
    times: tuple[GemmKernelTime, ...] | None = None,
) -> float:
    """Time of ``op`` on ``accelerator``: its kernel time plus one ``kernel_launch`` per kernel.

    ``kernel_launch`` is the GPU-side dispatch gap in front of each kernel (``recsim.cost.launch``);
    ``include_launch=False`` leaves it out (kernel time only, as a CUPTI kernel event measures it).
    ``times``: ``gemm_kernel_times(op, accelerator)`` where the caller has them already.
    """
    if times is None:
        times = gemm_kernel_times(op, accelerator)
    if times:
        # A product with shapes: its kernels' times and count from one run of the wave model (the
        # split-K search is the costly part of an op's price), two kernels for a product split
        # along K (the product and its reduction).
        kernel_s = sum(t.total_s for t in times)
        count = sum(t.kernels for t in times)
    else:
        # Else, a GEMM without usable shapes included, ``Compute.kernels`` (as many as
        # ``kernel_time_s`` pays floors for).
        kernel_s, count = kernel_time_s(op, accelerator), op.kernels
    launches = max(count, 1) if include_launch else 0
    return kernel_s + launches * accelerator.kernel_launch_s


def cpu_compute_time_s(op: Compute, cpu: Cpu, sockets: int = 1) -> float:
    """Time of ``op`` on ``sockets`` CPU sockets (its cores and their local DRAM), inference servers.

    Roofline on the vector fp32 peak and the DRAM bandwidth with ``CPU_GEMM_EFFICIENCY`` and
    ``CPU_MEMORY_EFFICIENCY``; any dtype computes at the fp32 rate (Skylake-class CPUs convert
    fp16/bf16 to fp32). A GEMM's FLOPs and bytes come from its shapes when they parse (as on GPUs),
    else from the op. No fixed per-op cost: framework overhead belongs to the graph's host ops.
    """
    if sockets < 1:
        raise ValueError(f"sockets must be >= 1, got {sockets}")
    flops = op.flops
    moved = op.bytes_read + op.bytes_written
    kernels = gemm_kernels(op) if op.category == "gemm" else ()
    if kernels:
        elem_bytes = DTYPE_BYTES.get(op.dtype, 4.0)
        flops = sum(g.flops for g in kernels)
        moved = sum(g.bytes(elem_bytes) for g in kernels)
    compute = flops / (sockets * cpu.fp32_flop_per_s * CPU_GEMM_EFFICIENCY)
    memory = moved / (sockets * cpu.memory_bandwidth_bytes_per_s * CPU_MEMORY_EFFICIENCY)
    return max(compute, memory)
