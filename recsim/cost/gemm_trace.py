"""The GEMMs of a real Kineto trace as a held-out check of the GEMM model at recommendation shapes.

The GEMM fit (``recsim.cost.compute``) is trained on LLM shapes (vidur's Llama-2-7B MLPs: K and N
of 4096-11008). A recommendation model's GEMMs are small and skinny (the batch as M, layer widths
of 1-2048 as N and K) and their weight gradients reduce over the batch (K = batch), where split-K
and its reduction kernel matter. ``../shared/reference/traces/recsys_a100_8rank_rank3_control.json.gz``
(an A100 recommendation-model training trace, recorded with shapes) holds ~1,750 such products:
nothing is fitted on them, so every one is a held-out point.

One measurement is one PyTorch matrix-product op (``aten::mm``, ``aten::addmm``, ``aten::bmm``) with
every kernel it launched: the product's and, where cuBLAS split K, its ``splitKreduce_kernel``
(the model prices both, ``compute.gemm_kernel_times``). Its time is the sum of their CUPTI
durations (GPU time, no launch gap), as vidur's profiles the fit is trained on sum an op's kernels.
An op is left out when any of its kernels ran beside a kernel of another stream (NCCL, copies of
the input pipeline): those durations include contention that ``recsim.cost.interference`` models
separately, and they run up to 1.9x the same shape's quiet durations in this trace. The shapes
are the CPU op's ``Input Dims``; the math dtype is the kernel's (``gemm_math_dtype``: TF32
tensor-core kernels for fp32 tensors, as PyTorch before 1.12 ran them).

The trace also calibrates two constants, each on the half of its shapes whose ``crc32`` is even
(``is_train_shape``), the other half held out: ``compute.SIMT_K_HALF`` (the K-loop fill of an fp32
SGEMM on the CUDA cores, ``fit_simt_k_half``, GEMVs left out) and ``compute.NARROW_LOAD_EFFICIENCY``
(the compute share a tensor-core GEMM keeps when a row it reads or writes is not a multiple of 16 B,
which cuBLAS runs on its ``align1`` kernels, ``fit_narrow_efficiency``). ``held_out_errors`` leaves
the two train halves out.
"""

from __future__ import annotations

import bisect
import math
import statistics
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from scipy.optimize import minimize_scalar

from recsim.cost.compute import (
    gemm_calibration,
    gemm_kernel_times,
    gemm_kernels,
    kernel_time_s,
    narrow_loads,
    run_dtype,
    simt_calibration,
)
from recsim.graph.ir import Compute
from recsim.graph.native import load_json
from recsim.graph.readers._common import dtype_name, gemm_flops, gemm_math_dtype, kernel_category
from recsim.hardware.calibration import GemmCalibration
from recsim.hardware.devices import Accelerator
from recsim.workload.spec import DTYPE_BYTES

__all__ = [
    "GEMM_OPS",
    "NarrowFit",
    "SimtFit",
    "TraceGemm",
    "calibrated_errors",
    "fit_narrow_efficiency",
    "fit_simt_k_half",
    "held_out_errors",
    "is_train_shape",
    "load_trace_gemms",
    "narrow_errors",
    "narrow_gemms",
    "shape_errors",
    "simt_gemms",
]

GEMM_OPS: Final[frozenset[str]] = frozenset({"aten::mm", "aten::addmm", "aten::bmm"})
"""The CPU ops whose kernels are one matrix product (``aten::linear`` and ``aten::matmul`` wrap these)."""


@dataclass(frozen=True, slots=True)
class TraceGemm:
    """One matrix-product op of a trace: its shapes, math dtype, kernels and their summed time."""

    op: str
    shapes: tuple[tuple[int, ...], ...]
    dtype: str
    kernels: tuple[str, ...]
    time_s: float
    contended: bool  # a kernel of it overlapped a kernel of another stream

    def compute(self) -> Compute:
        """The op as the simulator prices it: its forward FLOPs and shapes."""
        flops = gemm_flops(self.op.removeprefix("aten::"), self.shapes)
        return Compute(self.op, flops=flops, shapes=self.shapes, dtype=self.dtype, category="gemm")


def _shapes(op: dict[str, Any]) -> tuple[tuple[int, ...], ...]:
    dims = op.get("args", {}).get("Input Dims")
    if not isinstance(dims, list):
        return ()
    return tuple(tuple(int(d) for d in s) for s in dims if isinstance(s, list) and len(s) >= 2)


def _busy(intervals: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The union of ``intervals`` as disjoint (starts, ends), sorted."""
    starts: list[float] = []
    ends: list[float] = []
    for begin, end in sorted(intervals):
        if ends and begin <= ends[-1]:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(begin)
            ends.append(end)
    return starts, ends


def _overlaps(begin: float, end: float, busy: tuple[list[float], list[float]]) -> bool:
    """Whether ``(begin, end)`` overlaps the disjoint sorted intervals ``busy`` (touching is not)."""
    starts, ends = busy
    i = bisect.bisect_left(starts, end) - 1  # the last interval starting before ``end``
    return i >= 0 and ends[i] > begin


def load_trace_gemms(path: str | Path) -> list[TraceGemm]:
    """Every matrix-product op of a Kineto trace recorded with shapes (see the module docstring)."""
    events = [e for e in load_json(Path(path)).get("traceEvents", []) if e.get("ph") == "X"]
    gpu = [e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    kernels = {e["args"]["correlation"]: e for e in gpu if "correlation" in e.get("args", {})}
    launches: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "cuda_runtime" and "correlation" in e.get("args", {}):
            launches[(e["pid"], e["tid"])].append(e)
    for seq in launches.values():
        seq.sort(key=lambda e: e["ts"])
    by_stream: dict[Any, list[tuple[float, float]]] = defaultdict(list)
    for e in gpu:
        by_stream[e["args"].get("stream")].append((e["ts"], e["ts"] + e["dur"]))
    busy = {stream: _busy(intervals) for stream, intervals in by_stream.items()}

    def contended(kernel: dict[str, Any]) -> bool:
        begin, end = kernel["ts"], kernel["ts"] + kernel["dur"]
        own = kernel["args"].get("stream")
        return any(_overlaps(begin, end, b) for stream, b in busy.items() if stream != own)

    out: list[TraceGemm] = []
    for op in events:
        if op.get("cat") != "cpu_op" or op.get("name") not in GEMM_OPS:
            continue
        seq = launches.get((op["pid"], op["tid"]), [])
        i = bisect.bisect_left([e["ts"] for e in seq], op["ts"])
        mine: list[dict[str, Any]] = []
        while i < len(seq) and seq[i]["ts"] <= op["ts"] + op["dur"]:
            kernel = kernels.get(seq[i]["args"]["correlation"])
            if kernel is not None and kernel_category(kernel["name"]) == "gemm":
                mine.append(kernel)
            i += 1
        shapes = _shapes(op)
        if not mine or not shapes:
            continue
        types = op.get("args", {}).get("Input type") or []
        tensor_dtype = dtype_name(next((t for t in types if t), None))
        out.append(
            TraceGemm(
                op=op["name"],
                shapes=shapes,
                dtype=gemm_math_dtype(mine[0]["name"], tensor_dtype),
                kernels=tuple(k["name"] for k in mine),
                time_s=sum(k["dur"] for k in mine) * 1e-6,
                contended=any(contended(k) for k in mine),
            )
        )
    return out


def _shapes_measured(gemms: Sequence[TraceGemm]) -> dict[TraceGemm, float]:
    """The median measured time per distinct (op, shapes, dtype) of the uncontended ops whose shapes
    describe a product the model reads, keyed by the shape's first measurement."""
    groups: dict[tuple[str, tuple[tuple[int, ...], ...], str], list[TraceGemm]] = defaultdict(list)
    for g in gemms:
        if not g.contended:
            groups[(g.op, g.shapes, g.dtype)].append(g)
    measured: dict[TraceGemm, float] = {}
    for members in groups.values():
        op = members[0].compute()
        if op.flops <= 0 or not gemm_kernels(op):
            continue
        measured[members[0]] = statistics.median(g.time_s for g in members)
    return measured


def shape_errors(gemms: Sequence[TraceGemm], accelerator: Accelerator) -> dict[TraceGemm, float]:
    """``predicted / measured - 1`` per distinct (op, shapes, dtype) of the uncontended ops: the
    model's kernel time against the median of that shape's measured times; each key is the
    shape's first measurement. Ops whose shapes describe no product the model reads are left out."""
    return {g: kernel_time_s(g.compute(), accelerator) / t - 1.0 for g, t in _shapes_measured(gemms).items()}


def held_out_errors(gemms: Sequence[TraceGemm], accelerator: Accelerator) -> dict[TraceGemm, float]:
    """``shape_errors`` less the shapes a constant is fitted on (``is_train_shape`` among
    ``narrow_gemms`` and ``simt_gemms``): the shapes nothing is fitted on."""
    fitted = {
        g
        for shapes in (narrow_gemms(gemms, accelerator), simt_gemms(gemms, accelerator))
        for g in shapes
        if is_train_shape(g)
    }
    return {g: e for g, e in shape_errors(gemms, accelerator).items() if g not in fitted}


def narrow_gemms(gemms: Sequence[TraceGemm], accelerator: Accelerator) -> dict[TraceGemm, float]:
    """The distinct shapes (keyed as by ``shape_errors``) of tensor-core products with an unaligned
    leading dimension (``compute.narrow_loads``) and every dimension over 1, with their median
    measured time: the shapes ``NARROW_LOAD_EFFICIENCY`` prices (a product with a dimension of 1 runs
    on cuBLAS's GEMV kernels, which ``compute.gemm_kernel_times`` prices aligned)."""
    out: dict[TraceGemm, float] = {}
    for g, t in _shapes_measured(gemms).items():
        op = g.compute()
        used = run_dtype(op.dtype, accelerator)
        if (
            used not in ("fp32", "fp64")
            and narrow_loads(op, DTYPE_BYTES[used])
            and all(min(k.m, k.n, k.k) > 1 for k in gemm_kernels(op))
        ):
            out[g] = t
    return out


def simt_gemms(gemms: Sequence[TraceGemm], accelerator: Accelerator) -> dict[TraceGemm, float]:
    """The distinct shapes of SIMT products (fp32, fp64 on the CUDA cores) with every dimension over 1,
    with their median measured time: cuBLAS runs a product with a dimension of 1 on its GEMV kernels
    (``gemvx``, ``gemv2N``, ``gemv2T``, ``gemmk1`` in the trace), not a tile loop."""
    out: dict[TraceGemm, float] = {}
    for g, t in _shapes_measured(gemms).items():
        op = g.compute()
        if run_dtype(op.dtype, accelerator) in ("fp32", "fp64") and all(
            min(k.m, k.n, k.k) > 1 for k in gemm_kernels(op)
        ):
            out[g] = t
    return out


def is_train_shape(g: TraceGemm) -> bool:
    """Whether a shape is one a fit here (``fit_narrow_efficiency``, ``fit_simt_k_half``) fits on
    (``crc32`` of its shapes even) rather than one it is tested on: a hash of the shape, so stable
    across runs."""
    return zlib.crc32(repr(g.shapes).encode()) % 2 == 0


def _halves(shapes: dict[TraceGemm, float]) -> tuple[dict[TraceGemm, float], dict[TraceGemm, float]]:
    train = {g: t for g, t in shapes.items() if is_train_shape(g)}
    test = {g: t for g, t in shapes.items() if not is_train_shape(g)}
    if not train or not test:
        raise ValueError(f"need shapes on both halves, got {len(train)} and {len(test)}")
    return train, test


def calibrated_errors(
    shapes: dict[TraceGemm, float], accelerator: Accelerator, calibration: GemmCalibration
) -> list[float]:
    """``predicted / measured - 1`` of each shape (its median measured time the value) when its
    products are priced with the matrix-product calibration ``calibration``."""
    out = []
    for g, t in shapes.items():
        times = gemm_kernel_times(g.compute(), accelerator, calibration=calibration)
        out.append(math.fsum(k.total_s for k in times) / t - 1.0)
    return out


@dataclass(frozen=True, slots=True)
class SimtFit:
    """``compute.SIMT_K_HALF`` as fitted, and the two halves of the SIMT shapes."""

    k_half: float
    train: dict[TraceGemm, float]
    test: dict[TraceGemm, float]


def fit_simt_k_half(gemms: Sequence[TraceGemm], accelerator: Accelerator) -> SimtFit:
    """Fit the K-loop fill of a SIMT product (``compute.SIMT_K_HALF``) on the train half
    (``is_train_shape``) of the trace's SIMT shapes (``simt_gemms``): least squares on
    ``log(predicted) - log(measured)`` over (0, 200) K elements, by a bounded Brent search."""
    train, test = _halves(simt_gemms(gemms, accelerator))
    base = gemm_calibration(accelerator)

    def cost(k_half: float) -> float:
        errors = calibrated_errors(train, accelerator, simt_calibration(base, k_half))
        return math.fsum(math.log1p(e) ** 2 for e in errors)

    # The search range, a setting: the fit (11.64, ``compute.SIMT_K_HALF``) lies well inside it.
    fit = minimize_scalar(cost, bounds=(0.0, 200.0), method="bounded", options={"xatol": 1e-4})
    return SimtFit(float(fit.x), train, test)


def narrow_errors(shapes: dict[TraceGemm, float], accelerator: Accelerator, efficiency: float) -> list[float]:
    """``predicted / measured - 1`` of each shape (its median measured time the value) when its
    unaligned kernels keep ``efficiency`` of the compute ceiling."""
    return [_time_s(g, accelerator, efficiency) / t - 1.0 for g, t in shapes.items()]


def _time_s(g: TraceGemm, accelerator: Accelerator, efficiency: float) -> float:
    times = gemm_kernel_times(g.compute(), accelerator, narrow_efficiency=efficiency)
    return math.fsum(t.total_s for t in times)


@dataclass(frozen=True, slots=True)
class NarrowFit:
    """``compute.NARROW_LOAD_EFFICIENCY`` as fitted, and the two halves of the unaligned shapes
    (each with its median measured time)."""

    efficiency: float
    train: dict[TraceGemm, float]
    test: dict[TraceGemm, float]


def fit_narrow_efficiency(gemms: Sequence[TraceGemm], accelerator: Accelerator) -> NarrowFit:
    """Fit the compute share a tensor-core GEMM keeps with unaligned operands
    (``compute.NARROW_LOAD_EFFICIENCY``) on the train half (``is_train_shape``) of the trace's
    unaligned shapes: least squares on ``log(predicted) - log(measured)`` over (0.05, 1), by a
    bounded Brent search (deterministic)."""
    shapes = narrow_gemms(gemms, accelerator)
    train = {g: t for g, t in shapes.items() if is_train_shape(g)}
    test = {g: t for g, t in shapes.items() if not is_train_shape(g)}
    if not train or not test:
        raise ValueError(f"need unaligned shapes on both halves, got {len(train)} and {len(test)}")

    def cost(efficiency: float) -> float:
        return math.fsum(math.log1p(e) ** 2 for e in narrow_errors(train, accelerator, efficiency))

    # The search range, a setting (an efficiency is at most 1): the fit (0.3185,
    # ``compute.NARROW_LOAD_EFFICIENCY``) lies well inside it.
    fit = minimize_scalar(cost, bounds=(0.05, 1.0), method="bounded", options={"xatol": 1e-6})
    return NarrowFit(float(fit.x), train, test)
