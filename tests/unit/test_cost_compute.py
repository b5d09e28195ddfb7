"""The compute cost model: GEMM fit on measured data, hand cases, op dispatch, properties, CPU variant."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.cost.compute import (
    CPU_GEMM_EFFICIENCY,
    CPU_MEMORY_EFFICIENCY,
    NARROW_LOAD_EFFICIENCY,
    SIMT_GEMM_EFFICIENCY,
    SIMT_K_HALF,
    UNCALIBRATED_GEMM,
    GemmPoint,
    compute_time_s,
    cpu_compute_time_s,
    fit_gemm,
    gemm_calibration,
    gemm_kernel_times,
    gemm_kernels,
    gemm_time_s,
    hbm_bytes,
    is_test_point,
    kernel_time_s,
    load_gemm_points,
    median_abs_error,
    narrow_loads,
    product_kernel_time_s,
    run_dtype,
    split_points,
)
from recsim.graph.build import build_training_step
from recsim.graph.ir import Compute
from recsim.hardware.calibration import Calibration, GemmCalibration
from recsim.hardware.devices import Accelerator
from recsim.hardware.library import HardwareLibrary, shipped_root
from recsim.planner import table_wise_round_robin
from recsim.workload.library import WorkloadLibrary
from tests.conftest import FIXTURES

REPO = Path(__file__).resolve().parents[2]
# Copied from ../shared/reference/gemm/ with its SOURCE.md (MIT, microsoft/vidur), so CI never skips.
GEMM_DATA = REPO / "tests" / "data" / "gemm"
ACCURACY_BAND = 0.10  # held-out median absolute error the issue asks for
MEASURED = {
    "a100-sxm4-80gb": "compute_a100_llama2-7b_mlp.csv",
    "h100-sxm5-80gb": "compute_h100_llama2-7b_mlp.csv",
}

LIB = HardwareLibrary([shipped_root()])
ACCELERATORS = {name: LIB.device("accelerator", name) for name in LIB.device_names("accelerator")}

needs_data = pytest.mark.skipif(not GEMM_DATA.is_dir(), reason="tests/data/gemm is missing")


def acc(name: str) -> Accelerator:
    device = ACCELERATORS[name]
    assert isinstance(device, Accelerator)
    return device


def stored(name: str) -> GemmCalibration:
    device = acc(name)
    assert device.calibration is not None and device.calibration.gemm is not None, name
    return device.calibration.gemm


def params(cal: GemmCalibration) -> tuple[object, ...]:
    return (
        cal.dtype,
        cal.max_efficiency,
        cal.tile_m,
        cal.tile_n,
        cal.k_half,
        cal.memory_efficiency,
        cal.overhead_s,
    )


@pytest.fixture(scope="module")
def points() -> dict[str, list[GemmPoint]]:
    return {name: load_gemm_points(GEMM_DATA / f) for name, f in MEASURED.items()}


@pytest.fixture(scope="module")
def refits(points) -> dict[str, GemmCalibration]:
    return {name: fit_gemm(points[name], acc(name)) for name in MEASURED}


# ------------------------------------------------------------------------------- data and split


@needs_data
def test_points_follow_source_formulas(points):
    a100 = points["a100-sxm4-80gb"]
    assert len(a100) == 4 * 1044  # 1044 rows x 4 GEMMs
    # first row: 4096 tokens, TP 1, Llama-2-7B (h 4096, f 11008, 32 heads, gated)
    qkv, out, up, down = a100[:4]
    assert (qkv.m, qkv.n, qkv.k, qkv.op) == (4096, 3 * 4096, 4096, "attn_pre_proj")
    assert (out.m, out.n, out.k) == (4096, 4096, 4096)
    assert (up.m, up.n, up.k) == (4096, 2 * 11008, 4096)
    assert (down.m, down.n, down.k) == (4096, 4096, 11008)
    assert qkv.time_s == pytest.approx(1.911e-3)  # median 1.911 ms
    assert {p.k for p in a100 if p.op == "mlp_down_proj"} == {11008, 5504, 2752, 1376}  # f / TP
    assert all(p.dtype == "fp16" for p in a100)


@needs_data
def test_split_is_by_shape_and_about_a_fifth(points):
    train, test = split_points(points["a100-sxm4-80gb"])
    assert 0.15 < len(test) / (len(train) + len(test)) < 0.25
    assert not {(p.m, p.n, p.k) for p in train} & {(p.m, p.n, p.k) for p in test}
    assert all(is_test_point(p) for p in test)


# ------------------------------------------------------------------------------- fit accuracy


@needs_data
@pytest.mark.parametrize("name", sorted(MEASURED))
def test_refit_is_within_the_accuracy_band(refits, name):
    fit = refits[name]
    assert fit.test_median_abs_error is not None and fit.train_median_abs_error is not None
    assert fit.test_median_abs_error <= ACCURACY_BAND
    assert fit.train_median_abs_error <= ACCURACY_BAND
    assert fit.train_points + fit.test_points == 4 * 1044


@needs_data
@pytest.mark.parametrize("name", sorted(MEASURED))
def test_stored_calibration_matches_the_refit(points, refits, name):
    """The YAML numbers are the refit's, rounded: same tiles and point counts, same held-out error."""
    fit, yaml = refits[name], stored(name)
    assert (REPO / yaml.source).resolve() == (GEMM_DATA / MEASURED[name]).resolve()
    assert yaml.transferred_from is None
    assert (yaml.tile_m, yaml.tile_n, yaml.train_points, yaml.test_points) == (
        fit.tile_m,
        fit.tile_n,
        fit.train_points,
        fit.test_points,
    )
    for field in ("max_efficiency", "k_half", "memory_efficiency", "overhead_s"):
        assert getattr(yaml, field) == pytest.approx(getattr(fit, field), rel=0.02), field
    train, test = split_points(points[name])
    assert median_abs_error(test, acc(name), yaml) == pytest.approx(fit.test_median_abs_error, abs=0.003)
    assert yaml.test_median_abs_error == pytest.approx(median_abs_error(test, acc(name), yaml), abs=0.001)
    assert yaml.train_median_abs_error == pytest.approx(median_abs_error(train, acc(name), yaml), abs=0.001)


@needs_data
def test_scalar_model_agrees_with_the_fitted_one(points):
    """``gemm_time_s`` (what the simulator calls) is the model ``median_abs_error`` scores."""
    name = "h100-sxm5-80gb"
    _, test = split_points(points[name])
    errors = sorted(abs(gemm_time_s(p.m, p.n, p.k, p.dtype, acc(name)) / p.time_s - 1) for p in test)
    middle = len(errors) // 2
    median = errors[middle] if len(errors) % 2 else (errors[middle - 1] + errors[middle]) / 2
    assert median == pytest.approx(median_abs_error(test, acc(name), stored(name)), rel=1e-9)


@pytest.mark.parametrize(
    ("name", "origin"),
    [
        ("a100-sxm4-40gb", "a100-sxm4-80gb"),
        ("v100-sxm2-32gb", "a100-sxm4-80gb"),
        ("h200-sxm5-141gb", "h100-sxm5-80gb"),
        ("h100-pcie-80gb", "h100-sxm5-80gb"),
        ("b200-sxm-180gb", "h100-sxm5-80gb"),
        ("gb200-186gb", "h100-sxm5-80gb"),
    ],
)
def test_transferred_blocks_copy_their_origin(name, origin):
    copy = stored(name)
    assert copy.transferred_from == origin
    assert copy.source == stored(origin).source
    scale = STREAM_SCALED.get(name)
    if scale is None:
        assert params(copy) == params(stored(origin))
    else:  # the memory efficiency carries the boards' measured STREAM ratio
        assert params(copy)[:5] + params(copy)[6:] == params(stored(origin))[:5] + params(stored(origin))[6:]
        assert copy.memory_efficiency == pytest.approx(stored(origin).memory_efficiency * scale, abs=6e-5)
    assert copy.test_median_abs_error is None  # never validated on this device


# Transferred memory efficiencies scaled by the ratio of the two boards' STREAM copy efficiencies
# (Azure ND H200 v5 4.01 TB/s of 4.8, ND H100 v5 2.90 TB/s of 3.35: ../shared/reference/microbench/).
STREAM_SCALED = {"h200-sxm5-141gb": (4.01 / 4.8) / (2.90 / 3.35)}


def test_uncalibrated_fallback_is_the_a100_fit():
    assert params(UNCALIBRATED_GEMM) == params(stored("a100-sxm4-80gb"))
    assert UNCALIBRATED_GEMM.transferred_from == "a100-sxm4-80gb"


# ------------------------------------------------------------------------------- Azure cross-check

# Azure AI-benchmarking-guide cuBLASLt GEMM TFLOPS (../shared/reference/microbench/), m, n, k, TFLOPS.
AZURE_A100_FP16 = [
    (1024, 1024, 1024, 119.4),
    (2048, 2048, 2048, 221.8),
    (4096, 4096, 4096, 228.0),
    (8192, 8192, 8192, 253.7),
    (16384, 16384, 16384, 256.5),
    (1024, 2145, 1024, 132.8),
    (6144, 12288, 12288, 250.8),
    (802816, 192, 768, 157.8),
]
AZURE_H100_FP8 = [
    (1024, 1024, 1024, 274.1),
    (2048, 2048, 2048, 1011.3),
    (4096, 4096, 4096, 1216.9),
    (8192, 8192, 8192, 1290.1),
    (16384, 16384, 16384, 1377.3),
    (32768, 32768, 32768, 1382.2),
    (1024, 2145, 1024, 410.7),
    (6144, 12288, 12288, 1351.4),
]
AZURE_H200_FP8 = [
    (1024, 1024, 1024, 290.8),
    (2048, 2048, 2048, 1013.4),
    (4096, 4096, 4096, 1249.1),
    (8192, 8192, 8192, 1300.6),
    (16384, 16384, 16384, 1366.3),
    (32768, 32768, 32768, 1349.5),
    (1024, 2145, 1024, 407.9),
    (6144, 12288, 12288, 1318.0),
]


@pytest.mark.parametrize(
    ("name", "dtype", "table"),
    [
        ("a100-sxm4-80gb", "fp16", AZURE_A100_FP16),
        # FP8 tables: the fp16 efficiencies carried to the fp8 peak (an extrapolation in dtype).
        ("h100-sxm5-80gb", "fp8", AZURE_H100_FP8),
        ("h200-sxm5-141gb", "fp8", AZURE_H200_FP8),
    ],
)
def test_azure_gemm_tflops_cross_check(name, dtype, table):
    """Independent data, never fitted: median error <= 15 %, every shape within 0.67x-1.5x.

    Found (ratios predicted / measured): A100 fp16 0.90-1.15 except the tall-skinny 802816x192x768
    at 1.40 (measured 1.03 TB/s effective, below the 1.57 TB/s the fit found); H100/H200 fp8 0.97-1.15:
    fp8 reaches ~70 % of its peak where fp16 reaches ~76 %, so scaling by the peak ratio is ~10 % fast.
    """
    ratios = []
    for m, n, k, tflops in table:
        predicted = 2.0 * m * n * k / gemm_time_s(m, n, k, dtype, acc(name)) / 1e12
        ratios.append(predicted / tflops)
    errors = sorted(abs(r - 1) for r in ratios)
    assert (errors[3] + errors[4]) / 2 <= 0.15, ratios
    assert all(0.67 <= r <= 1.5 for r in ratios), ratios


# ------------------------------------------------------------------------------- hand cases

HAND = GemmCalibration.model_validate(
    {
        "source": "hand",
        "max_efficiency": 0.5,
        "tile_m": 128,
        "tile_n": 128,
        "k_half": 64.0,
        "memory_efficiency": 0.8,
        "overhead": "2 us",
        "train_points": 1,
        "test_points": 1,
    }
)


@pytest.fixture(scope="module")
def tiny() -> Accelerator:
    """tiny-gpu: fp16/bf16 300 TFLOP/s, fp32 20 TFLOP/s, no fp8, 1200 GB/s, 100 SMs, 4 us launch."""
    device = HardwareLibrary([FIXTURES / "minilib"]).device("accelerator", "tiny-gpu")
    assert isinstance(device, Accelerator)
    return device.model_copy(update={"calibration": Calibration(gemm=HAND)})


# One full wave on tiny-gpu with HAND: 100 SMs x 128 x 128 outputs, K = 1024 plus k_half 64.
ONE_WAVE = 2 * (1024 + 64) * 100 * 128 * 128 / (300e12 * 0.5)  # 23.7677 us


def test_gemm_by_hand(tiny):
    # 1280 x 1280 outputs = 10 x 10 tiles = one full wave; efficiency 0.5 x 1 x 1024 / 1088.
    compute = 2 * 1280 * 1280 * 1024 / (300e12 * 0.5 * 1024 / 1088)
    memory = (1280 * 1024 + 1024 * 1280 + 1280 * 1280) * 2 / (1200e9 * 0.8)  # 8.87 us
    assert compute == pytest.approx(ONE_WAVE, rel=1e-12) and memory < compute
    assert pytest.approx(23.76772e-6, rel=1e-6) == ONE_WAVE
    assert gemm_time_s(1280, 1280, 1024, "fp16", tiny) == pytest.approx(2e-6 + ONE_WAVE, rel=1e-12)
    # m = 1290: 11 x 10 = 110 tiles -> 2 waves, each as long as a full one.
    assert gemm_time_s(1290, 1280, 1024, "fp16", tiny) == pytest.approx(2e-6 + 2 * ONE_WAVE, rel=1e-12)
    # m = 1 (100 tiles, one wave of compute) is bound by the 26.2 MB it moves: 27.34 us.
    memory = (1 * 1024 + 1024 * 12800 + 1 * 12800) * 2 / (1200e9 * 0.8)
    assert memory == pytest.approx(27.33547e-6, rel=1e-6) and memory > ONE_WAVE
    assert gemm_time_s(1, 12800, 1024, "fp16", tiny) == pytest.approx(2e-6 + memory, rel=1e-12)


def test_dtype_fallback_and_scaling(tiny):
    fp16 = gemm_time_s(1280, 1280, 1024, "fp16", tiny)
    assert run_dtype("fp8", tiny) == "fp16" and run_dtype("int4", tiny) == "fp16"
    assert gemm_time_s(1280, 1280, 1024, "fp8", tiny) == fp16  # no fp8 path: runs as fp16
    assert gemm_time_s(1280, 1280, 1024, "bf16", tiny) == fp16  # same peak
    # fp32 (20 TFLOP/s, 4-byte elements): compute scales by the peak ratio 300 / 20, and by the
    # CUDA cores' efficiency instead of the tensor-core fit's 0.5 (SIMT_GEMM_EFFICIENCY), and by
    # their K-loop fill instead of the fit's 64 (SIMT_K_HALF).
    simt = 15 * ONE_WAVE * 0.5 / SIMT_GEMM_EFFICIENCY * (1024 + SIMT_K_HALF) / (1024 + 64)
    assert gemm_time_s(1280, 1280, 1024, "fp32", tiny) == pytest.approx(2e-6 + simt, rel=1e-12)
    assert run_dtype("fp8", acc("h100-sxm5-80gb")) == "fp8"
    assert run_dtype("fp8", acc("a100-sxm4-80gb")) == "fp16"
    assert run_dtype("bf16", acc("v100-sxm2-32gb")) == "fp32"


def test_ops_by_hand(tiny):
    forward = Compute(
        "linear",
        flops=2.0 * 1280 * 1024 * 1280,
        dtype="fp16",
        shapes=((1280, 1024), (1024, 1280)),
        category="gemm",
    )
    assert compute_time_s(forward, tiny) == pytest.approx(2e-6 + ONE_WAVE + 4e-6, rel=1e-12)
    assert compute_time_s(forward, tiny, include_launch=False) == kernel_time_s(forward, tiny)
    # Backward (2x the FLOPs): dX [1280, 1024] and dW [1024, 1280], K = 1280, one wave each (80 tiles).
    backward = Compute(
        "linear_bwd",
        flops=2 * forward.flops,
        dtype="fp16",
        shapes=((1280, 1024), (1024, 1280)),
        category="gemm",
    )
    dx, dw = gemm_kernels(backward)
    assert (dx.m, dx.n, dx.k) == (1280, 1024, 1280) and (dw.m, dw.n, dw.k) == (1024, 1280, 1280)
    one = 2 * (1280 + 64) * 100 * 128 * 128 / (300e12 * 0.5)  # one full wave, K = 1280: 29.36 us
    assert compute_time_s(backward, tiny) == pytest.approx(2 * (2e-6 + one) + 2 * 4e-6, rel=1e-9)
    # Element-wise: CUDA-core fp32 peak and bytes over bandwidth; memory-bound here. Its fixed time
    # is tiny-gpu's element-wise floor (3 us), not the GEMM fit's overhead (2 us).
    assert tiny.elementwise_kernel_s == 3e-6
    relu = Compute("relu", flops=1e6, bytes_read=8e6, bytes_written=8e6, dtype="fp16", category="elementwise")
    assert compute_time_s(relu, tiny) == pytest.approx(3e-6 + 16e6 / (1200e9 * 0.8) + 4e-6, rel=1e-9)
    busy = Compute("exp", flops=1e10, bytes_read=8e6, dtype="fp32", category="elementwise")
    assert kernel_time_s(busy, tiny) == pytest.approx(3e-6 + 1e10 / (20e12 * 0.5), rel=1e-9)
    # Interaction (batched products) runs on the tensor peak of its dtype, with a GEMM's fixed time.
    dot = Compute("interaction", flops=1e10, dtype="fp16", shapes=((8, 64),), category="interaction")
    assert kernel_time_s(dot, tiny) == pytest.approx(2e-6 + 1e10 / (300e12 * 0.5), rel=1e-9)


def test_gemm_shapes_from_trace_conventions():
    # addmm(bias, A, B), linear(x[..., K], W[N, K], bias), bmm(A[b, m, k], B[b, k, n])
    addmm = Compute(
        "aten::addmm", flops=2.0 * 8 * 16 * 32, shapes=((32,), (8, 16), (16, 32)), category="gemm"
    )
    linear = Compute(
        "aten::linear", flops=2.0 * 6 * 16 * 32, shapes=((2, 3, 16), (32, 16), (32,)), category="gemm"
    )
    bmm = Compute("aten::bmm", flops=2.0 * 4 * 8 * 16 * 32, shapes=((4, 8, 16), (4, 16, 32)), category="gemm")
    assert [(g.batch, g.m, g.n, g.k) for g in gemm_kernels(addmm)] == [(1, 8, 32, 16)]
    assert [(g.batch, g.m, g.n, g.k) for g in gemm_kernels(linear)] == [(1, 6, 32, 16)]
    assert [(g.batch, g.m, g.n, g.k) for g in gemm_kernels(bmm)] == [(4, 8, 32, 16)]
    # A GEMM kernel whose FLOPs were booked on another kernel of its op (split-K reduce): roofline only.
    reduce = Compute("splitKreduce", flops=0.0, shapes=((8, 16), (16, 32)), category="gemm")
    assert gemm_kernels(reduce) == ()
    assert compute_time_s(reduce, acc("a100-sxm4-80gb")) > 0


def test_every_built_node_is_priced():
    workloads = WorkloadLibrary([FIXTURES / "workloads"])
    tiny = workloads.workload("tiny-dlrm")
    graph = build_training_step(tiny, table_wise_round_robin(tiny, 2))
    a100 = acc("a100-sxm4-80gb")
    for node in graph:
        if isinstance(node.op, Compute):
            t = compute_time_s(node.op, a100)
            assert math.isfinite(t) and t >= a100.kernel_launch_s, node.name
            if node.op.category == "gemm":
                # A backward is two GEMMs (dX, dW), but the first bottom layer's: its input, the
                # dense features, needs no gradient; its one GEMM is dW = X^T dY, reducing over
                # the batch. HugeCTR's (tiny's fused runtime) runs them as a node each
                # (``Runtime.async_mlp_wgrad``: ``_dgrad_bwd``, ``_wgrad_bwd``), one GEMM a node.
                split = node.name.endswith(("_dgrad_bwd", "_wgrad_bwd"))
                backward = node.name.endswith("_bwd") and node.name != "bottom0_bwd" and not split
                kernels = gemm_kernels(node.op)
                assert len(kernels) == (2 if backward else 1), node.name
                if node.name in ("bottom0_bwd", "bottom0_wgrad_bwd"):
                    (dw,) = kernels
                    (m, k), (_, n) = node.op.shapes
                    assert (dw.m, dw.n, dw.k) == (k, n, m)


def test_cpu_by_hand():
    cpu = HardwareLibrary([FIXTURES / "minilib"]).device("cpu", "tiny-cpu")  # 640 GFLOP/s, 102.4 GB/s
    gemm = Compute("linear", flops=2.0 * 1024**3, shapes=((1024, 1024), (1024, 1024)), category="gemm")
    expected = 2.0 * 1024**3 / (640e9 * CPU_GEMM_EFFICIENCY)
    assert cpu_compute_time_s(gemm, cpu) == pytest.approx(expected, rel=1e-9)
    assert cpu_compute_time_s(gemm, cpu, sockets=2) == pytest.approx(expected / 2, rel=1e-9)
    copy = Compute("copy_", bytes_read=1e9, bytes_written=1e9, category="memory")
    assert cpu_compute_time_s(copy, cpu) == pytest.approx(2e9 / (102.4e9 * CPU_MEMORY_EFFICIENCY), rel=1e-9)
    with pytest.raises(ValueError):
        cpu_compute_time_s(copy, cpu, sockets=0)


# ------------------------------------------------------------------------------- properties

dims = st.integers(min_value=1, max_value=1 << 16)
names = st.sampled_from(sorted(ACCELERATORS))
dtypes = st.sampled_from(["fp16", "bf16", "fp32", "fp8", "int8"])
factors = st.floats(min_value=1.0, max_value=8.0)


def faster(device: Accelerator, flops: float = 1.0, bandwidth: float = 1.0) -> Accelerator:
    peak = device.peak.model_copy(
        update={
            f: (v * flops if v is not None else None)
            for f, v in device.peak.model_dump().items()
            if f.endswith("_flop_per_s")
        }
    )
    hbm = device.hbm.model_copy(
        update={"bandwidth_bytes_per_s": device.hbm.bandwidth_bytes_per_s * bandwidth}
    )
    return device.model_copy(update={"peak": peak, "hbm": hbm})


@settings(max_examples=150, deadline=None)
@given(name=names, dtype=dtypes, m=dims, n=dims, k=dims, s=factors)
def test_more_flops_or_bandwidth_is_never_slower(name, dtype, m, n, k, s):
    device = acc(name)
    base = gemm_time_s(m, n, k, dtype, device)
    assert gemm_time_s(m, n, k, dtype, faster(device, flops=s)) <= base * (1 + 1e-12)
    assert gemm_time_s(m, n, k, dtype, faster(device, bandwidth=s)) <= base * (1 + 1e-12)
    op = Compute("x", flops=float(m * n), bytes_read=float(n * k), dtype=dtype, category="elementwise")
    assert compute_time_s(op, faster(device, flops=s, bandwidth=s)) <= compute_time_s(op, device) * (
        1 + 1e-12
    )


@settings(max_examples=150, deadline=None)
@given(name=names, dtype=dtypes, m=dims, n=dims, k=dims, d=st.integers(min_value=1, max_value=4096))
def test_time_grows_with_every_dimension(name, dtype, m, n, k, d):
    device = acc(name)
    base = gemm_time_s(m, n, k, dtype, device)
    assert gemm_time_s(m + d, n, k, dtype, device) >= base
    assert gemm_time_s(m, n + d, k, dtype, device) >= base
    # non-decreasing, not strictly: split-K and wave quantisation make plateaus, as on the GPU
    assert gemm_time_s(m, n, k + d, dtype, device) >= base


def test_split_k_takes_the_best_slice_count():
    # A DLRM bottom-MLP weight gradient: C[512, 256] = X^T dY over K = 65,536 samples. Its 8 x 4
    # output tiles of 64 x 64 cannot fill the A100's 108 SMs; split ten ways, the 320 tiles run in
    # three waves over K / 10 each (three ways, one wave over K / 3, is slower), the ten fp32
    # partial tiles are written, and a reduction kernel (the element-wise floor) reads them back.
    device = acc("a100-sxm4-80gb")
    cal = stored("a100-sxm4-80gb")
    assert (cal.tile_m, cal.tile_n) == (64, 64)
    peak = 312e12
    per_wave = 108 * 64 * 64 / (peak * cal.max_efficiency)
    bandwidth = device.hbm.bandwidth_bytes_per_s * cal.memory_efficiency
    memory = (512 * 65536 + 65536 * 256 + 512 * 256) * 2 / bandwidth

    partials = 512 * 256 * 4 / bandwidth  # one slice's fp32 partial tiles, written or read

    def slices(s: int) -> float:
        product = max(
            2 * (math.ceil(65536 / s) + cal.k_half) * math.ceil(32 * s / 108) * per_wave,
            memory + s * partials,
        )
        return product + (device.elementwise_kernel_s + s * partials if s > 1 else 0.0)

    best = min(range(1, 109), key=slices)
    assert best == 10
    assert slices(10) < slices(3) < slices(1)
    assert gemm_time_s(512, 256, 65536, "fp16", device) == pytest.approx(
        cal.overhead_s + slices(10), rel=1e-12
    )
    # Two kernels: the product and its reduction, each with its launch gap in front.
    wgrad = Compute("w", flops=2.0 * 512 * 256 * 65536, shapes=((512, 65536), (65536, 256)), category="gemm")
    (timed,) = gemm_kernel_times(replace(wgrad, dtype="fp16"), device)
    assert (timed.splits, timed.kernels) == (10, 2)
    assert timed.reduce_s == pytest.approx(device.elementwise_kernel_s + 10 * partials, rel=1e-12)
    assert compute_time_s(replace(wgrad, dtype="fp16"), device) == pytest.approx(
        timed.total_s + 2 * device.kernel_launch_s, rel=1e-12
    )
    assert product_kernel_time_s(replace(wgrad, dtype="fp16"), device) == pytest.approx(
        timed.total_s - timed.reduce_s, rel=1e-12
    )
    # The same shape with enough output tiles runs unsplit: C[8192, 256] is 512 tiles.
    plain = max(
        2 * (65536 + cal.k_half) * math.ceil(512 / 108) * per_wave,
        (8192 * 65536 + 65536 * 256 + 8192 * 256) * 2 / bandwidth,
    )
    assert gemm_time_s(8192, 256, 65536, "fp16", device) == pytest.approx(cal.overhead_s + plain, rel=1e-12)


def test_a_split_gemm_moves_its_partials_through_hbm():
    # The split-K product writes ten fp32 partial tiles of C[512, 256] and the reduction reads them
    # back (``test_split_k_takes_the_best_slice_count``): its time pays for those bytes, so the HBM
    # bytes the utilisation figures and the power model's memory energy count include them too.
    device = acc("a100-sxm4-80gb")
    wgrad = Compute(
        "w", flops=2.0 * 512 * 256 * 65536, dtype="fp16", shapes=((512, 65536), (65536, 256)), category="gemm"
    )
    (timed,) = gemm_kernel_times(wgrad, device)
    assert timed.splits == 10
    operands = (512 * 65536 + 65536 * 256 + 512 * 256) * 2.0
    partials = 2 * 10 * 512 * 256 * 4.0
    assert timed.partial_bytes == partials
    assert hbm_bytes(wgrad, device) == pytest.approx(operands + partials, rel=1e-12)
    # Unsplit (C[8192, 256] fills the SMs): the operands and the result only.
    plain = Compute(
        "w",
        flops=2.0 * 8192 * 256 * 65536,
        dtype="fp16",
        shapes=((8192, 65536), (65536, 256)),
        category="gemm",
    )
    (unsplit,) = gemm_kernel_times(plain, device)
    assert (unsplit.splits, unsplit.partial_bytes) == (1, 0.0)
    assert hbm_bytes(plain, device) == (8192 * 65536 + 65536 * 256 + 8192 * 256) * 2.0


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_the_fitted_array_model_is_the_scalar_one_split_k_included(name):
    from recsim.cost.compute import _gemm_kernel_array, _tensor_peak

    device = acc(name)
    cal = stored(name)
    shapes = [
        (512, 256, 65536),
        (15, 50, 98304),
        (1, 1, 130),
        (64, 4096, 4096),
        (4096, 4096, 4096),
        (100, 30, 7),
    ]
    m, n, k = (np.array([s[i] for s in shapes], dtype=np.float64) for i in range(3))
    peak, elem = _tensor_peak("fp16", device)
    params = (cal.max_efficiency, cal.k_half, cal.memory_efficiency, cal.overhead_s)
    bandwidth, sms, floor = device.hbm.bandwidth_bytes_per_s, device.sms, device.elementwise_kernel_s
    fitted = _gemm_kernel_array(m, n, k, peak, bandwidth, sms, elem, params, cal.tile_m, cal.tile_n, floor)
    for (mm, nn, kk), value in zip(shapes, fitted, strict=True):
        assert gemm_time_s(mm, nn, kk, "fp16", device) == pytest.approx(float(value), rel=1e-12)


def test_a_dtype_the_accelerator_lacks_is_named_in_the_result():
    import recsim
    from recsim.cost.compute import run_dtype_note

    library = HardwareLibrary()
    a100 = library.device("accelerator", "a100-sxm4-80gb")
    h100 = library.device("accelerator", "h100-sxm5-80gb")
    assert run_dtype_note("fp16", a100) is None and run_dtype_note("fp8", h100) is None
    note = run_dtype_note("fp8", a100)
    assert note is not None and "no fp8 peak" in note and "fp16's peak" in note
    # (The first note names the calibrations transferred to dgx-a100's A100-40GB.)
    calibrated = recsim.simulate("dgx-a100", "dlrm-dcnv2", plan="table_wise", precision="fp16").notes
    assert len(calibrated) == 1 and calibrated[0].startswith("calibrations not measured")
    result = recsim.simulate("dgx-a100", "dlrm-dcnv2", plan="table_wise", precision="fp8")
    assert result.status == "ok" and result.notes == (*calibrated, note)


def test_fp32_gemms_run_on_the_cuda_cores_at_their_measured_efficiency():
    # A large SGEMM reaches about 93-99 % of the fp32 peak on V100 and A100 (cuBLAS, SIMT), not
    # the tensor-core fit's 74 %: V100-SXM2 measured 14.51 TFLOP/s at 10240^3 (torch.matmul fp32).
    v100 = acc("v100-sxm2-32gb")
    n = 10240
    achieved = 2.0 * n**3 / gemm_time_s(n, n, n, "fp32", v100)
    assert achieved == pytest.approx(14.51e12, rel=0.05)
    # fp16 keeps the tensor-core fit: a product in fp16 is held to its own max_efficiency.
    fp16 = 2.0 * n**3 / gemm_time_s(n, n, n, "fp16", v100)
    assert fp16 < 0.75 * v100.peak.flop_per_s("fp16")
    assert gemm_calibration(v100).max_efficiency < SIMT_GEMM_EFFICIENCY


def test_fp64_elementwise_runs_on_the_cuda_cores():
    """A100/H100/H200's FP64 figure is the tensor cores' (DGEMM); element-wise fp64 kernels get the
    CUDA cores' half of it (datasheets: 19.5 vs 9.7, 67 vs 34 TFLOP/s), DGEMM the full figure."""
    h100 = acc("h100-sxm5-80gb")
    assert h100.peak.fp64_flop_per_s == 67e12 and h100.peak.fp64_vector_flop_per_s == 34e12
    busy = Compute("exp", flops=1e12, bytes_read=8.0, dtype="fp64", category="elementwise")
    rate = 34e12 * gemm_calibration(h100).max_efficiency
    assert kernel_time_s(busy, h100) == pytest.approx(h100.elementwise_kernel_s + 1e12 / rate)
    # Volta has no FP64 tensor cores: one figure serves both.
    v100 = acc("v100-sxm2-32gb")
    assert v100.peak.fp64_vector_flop_per_s is None
    rate = 7.8e12 * gemm_calibration(v100).max_efficiency
    assert kernel_time_s(busy, v100) == pytest.approx(v100.elementwise_kernel_s + 1e12 / rate)


def test_a_node_of_several_kernels_pays_each_ones_floor_and_launch(tiny):
    # PyTorch's unfused passes as one node (``Compute.kernels``): the same bytes in three kernels
    # cost two more element-wise floors (3 us) and two more launch gaps (4 us) than in one.
    one = Compute("pass", flops=1e6, bytes_read=8e6, bytes_written=8e6, dtype="fp16", category="elementwise")
    three = replace(one, kernels=3)
    assert kernel_time_s(three, tiny) == pytest.approx(kernel_time_s(one, tiny) + 2 * 3e-6, rel=1e-12)
    assert compute_time_s(three, tiny) == pytest.approx(
        compute_time_s(one, tiny) + 2 * (3e-6 + 4e-6), rel=1e-12
    )
    # A GEMM node's kernels come from its shapes, whatever the field says.
    gemm = Compute(
        "linear", flops=2.0 * 64 * 64 * 64, dtype="fp16", shapes=((64, 64), (64, 64)), category="gemm"
    )
    assert compute_time_s(replace(gemm, kernels=5), tiny) == compute_time_s(gemm, tiny)


def test_a_shapeless_gemm_of_several_kernels_pays_a_launch_for_each_floor(tiny):
    # A GEMM without usable shapes (a graph file's, or a trace's) has no kernels of its own from
    # them: ``Compute.kernels`` says how many, and each pays its floor and its launch gap alike.
    one = Compute("mm", flops=1e9, dtype="fp16", category="gemm")
    three = replace(one, kernels=3)
    floors = kernel_time_s(three, tiny) - kernel_time_s(one, tiny)
    assert floors > 0
    assert compute_time_s(three, tiny) == pytest.approx(
        compute_time_s(one, tiny) + floors + 2 * 4e-6, rel=1e-12
    )


def test_a_gemm_that_adds_into_its_output_reads_it_too(tiny):
    # BLAS beta = 1 (``D = A B + C``, HugeCTR's cross-layer backward GEMMs, ``Compute.accumulates``):
    # each kernel reads its m x n output besides A and B. A memory-bound product (k = 8, 4096 x 4096
    # fp16 output, enough tiles to fill the SMs: no split-K) pays exactly those bytes more.
    gemm = Compute(
        "x_dgrad", flops=2.0 * 4096 * 4096 * 8, dtype="fp16", shapes=((4096, 8), (8, 4096)), category="gemm"
    )
    added = replace(gemm, accumulates=True)
    (plain,), (reading,) = gemm_kernels(gemm), gemm_kernels(added)
    assert (plain.reads_c, reading.reads_c) == (False, True)
    c_bytes = 4096 * 4096 * 2.0
    assert hbm_bytes(added, tiny) - hbm_bytes(gemm, tiny) == c_bytes
    bandwidth = tiny.hbm.bandwidth_bytes_per_s * gemm_calibration(tiny).memory_efficiency
    assert kernel_time_s(added, tiny) - kernel_time_s(gemm, tiny) == pytest.approx(
        c_bytes / bandwidth, rel=1e-9
    )
    # A backward node's two kernels (dX and dW) both add into theirs.
    backward = replace(added, flops=2 * gemm.flops)
    assert all(g.reads_c for g in gemm_kernels(backward)) and len(gemm_kernels(backward)) == 2


def _linear(m: int, k: int, n: int, dtype: str) -> Compute:
    """A linear layer's forward ``Y[m, n] = X[m, k] W^T`` as the graph builder makes it."""
    return Compute("linear", flops=2.0 * m * k * n, dtype=dtype, shapes=((m, k), (k, n)), category="gemm")


@pytest.mark.parametrize(
    ("m", "k", "n", "elem_bytes", "narrow"),
    [
        (6912, 479, 1024, 2, True),  # DLRM v1's top MLP without its interaction's padding column
        (6912, 480, 1024, 2, False),  # with it (HugeCTR, DLE)
        (65536, 13, 512, 4, True),  # the 13 dense features under TF32 (DLE: no padding)
        (65536, 16, 512, 4, False),
        (65536, 12, 512, 4, False),  # 48 B rows: 16 B-aligned for 4 B elements, not for 2 B ones
        (65536, 12, 512, 2, True),
        (270, 480, 1024, 2, False),  # the batch is a row count, never a row length
        (1024, 1024, 19410, 4, True),  # 8 B-aligned rows still miss 16 B (the trace ran align1)
    ],
)
def test_narrow_loads_reads_the_row_lengths_in_bytes(m, k, n, elem_bytes, narrow):
    assert narrow_loads(_linear(m, k, n, "fp16"), elem_bytes) is narrow


def test_unaligned_tensor_core_products_keep_the_narrow_share_of_their_compute_ceiling():
    a100 = acc("a100-sxm4-80gb")
    # Compute-bound TF32 GEMMs one element apart: the unaligned one takes the narrow path, its
    # compute term 1 / NARROW_LOAD_EFFICIENCY longer (its bytes stay at the aligned rate).
    aligned, unaligned = (kernel_time_s(_linear(4096, k, 4096, "tf32"), a100) for k in (4096, 4095))
    assert unaligned > 0.9 / NARROW_LOAD_EFFICIENCY * aligned
    assert gemm_time_s(4096, 4096, 4095, "tf32", a100, narrow=True) == pytest.approx(unaligned, rel=1e-12)
    assert gemm_time_s(4096, 4096, 4095, "tf32", a100) < aligned  # the caller says what is narrow
    overhead = gemm_calibration(a100).overhead_s
    assert (unaligned - overhead) == pytest.approx((aligned - overhead) / NARROW_LOAD_EFFICIENCY, rel=0.01)
    # The layer's three GEMMs share its rows: dX and dW take the narrow path too.
    backward = replace(_linear(4096, 4095, 4096, "tf32"), flops=4.0 * 4096 * 4095 * 4096)
    assert [t.total_s for t in gemm_kernel_times(backward, a100)] == pytest.approx([unaligned] * 2, rel=0.01)
    # SIMT SGEMMs come in no alignment variants, and a product with a dimension of 1 runs cuBLAS's
    # GEMV kernels: neither takes the narrow path.
    simt = [kernel_time_s(_linear(4096, k, 4096, "fp32"), a100) for k in (4096, 4095)]
    assert simt[1] <= simt[0]
    gemv = [kernel_time_s(_linear(65536, k, 1, "tf32"), a100) for k in (1024, 1023)]
    assert gemv[1] <= gemv[0]


def test_a_cost_model_works_out_an_op_s_gemm_kernel_times_once(monkeypatch):
    # An op's duration, its HBM traffic and its kernel energy read the same GEMM kernel times
    # (``CostModel._gemm_times``): one run of the wave model per op value, an equal op included, and
    # the figures those of the functions that run it themselves.
    import recsim.cost.model as model_module
    from recsim.cost.model import CostModel
    from recsim.cost.power import KernelEnergy

    system = HardwareLibrary([FIXTURES / "minilib"]).system("tiny", [])
    acc = system.accelerator
    assert acc is not None
    op = Compute(
        "linear",
        flops=2.0 * 1280 * 1024 * 1280,
        dtype="fp16",
        shapes=((1280, 1024), (1024, 1280)),
        category="gemm",
    )
    calls: list[Compute] = []

    def counted(o: Compute, a: Accelerator) -> tuple[object, ...]:
        calls.append(o)
        return gemm_kernel_times(o, a)

    monkeypatch.setattr(model_module, "gemm_kernel_times", counted)
    cost = CostModel(system)
    assert cost.compute_s(op) == compute_time_s(op, acc)
    # X [1280, 1024], W [1024, 1280] and Y [1280, 1280] in fp16, once each (no split K here)
    assert cost.compute_hbm_bytes(replace(op)) == hbm_bytes(op, acc) == (2 * 1280 * 1024 + 1280 * 1280) * 2
    assert cost.kernel_j(replace(op)) == KernelEnergy.of(acc).op_j(op, cost.embedding_cost)
    assert len(calls) == 1
