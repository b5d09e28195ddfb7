"""The GEMM model on the real recommendation trace's GEMM kernels (A100, recorded shapes).

The trace's GEMMs multiply fp32 tensors on TF32 tensor-core kernels (``cutlass_80_tensorop_s1688gemm``,
PyTorch's default before 1.12); a few are CUDA-core SGEMMs (``ampere_sgemm``). The Kineto reader
reads the math dtype off the kernel name (``readers._common.gemm_math_dtype``). These shapes are
recommendation-sized (M = the batch, 1024, K and N of 1-2048, weight gradients with K = 1024 or
98,304), unlike the fit's LLM GEMMs, so the check is out of the fit's range: ``recsim.cost.gemm_trace``
prices each matrix-product op (its product kernel and, where cuBLAS split K, its reduction kernel)
on the 132 distinct shapes that ran without another stream's kernel beside them: median |error|
22.9 % (the model 17 % fast), 28.9 % (24 % fast) before split-K's reduction was priced as the kernel
it is; the split ops went from 31 % to 15 % fast. Reading them as fp32 CUDA-core GEMMs would be +154 %.
What is left: the ops that do not split stay ~19 % fast (at M = 1024 the library's tiles often fill
64 of the 108 SMs with one 4-warp CTA each, and a K or N that is not a multiple of 4 takes the
``align1`` kernels, 46 % fast against 24 % for the aligned ones, before this change), and the fp32
SGEMMs with N or K of 15-30 are 37 % slow.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import pytest

from recsim.cost.compute import gemm_kernel_times, gemm_kernels, product_kernel_time_s
from recsim.cost.gemm_trace import TraceGemm, load_trace_gemms, shape_errors
from recsim.graph.ir import Compute
from recsim.graph.readers import read_trace
from recsim.graph.readers._common import gemm_math_dtype
from recsim.hardware.devices import Accelerator
from recsim.hardware.library import HardwareLibrary
from recsim.validation import run_cases

TRACE = Path(__file__).resolve().parents[1] / "data" / "traces" / "recsys_a100_8rank_rank3_control.json.gz"


@pytest.mark.parametrize(
    ("kernel", "dtype", "math"),
    [
        ("void cutlass::Kernel<cutlass_80_tensorop_s1688gemm_64x64_32x6_tn_align4>", "fp32", "tf32"),
        ("ampere_s1688gemm_128x128_ldg8_stages_32x3_nn", "fp32", "tf32"),
        ("sm80_xmma_gemm_f32f32_tf32f32_f32_nn_n_tilesize128x128x16", "fp32", "tf32"),
        ("ampere_sgemm_128x64_nn", "fp32", "fp32"),
        ("ampere_fp16_s16816gemm_fp16_128x128_ldg8_f2f_stages_32x5_nn", "fp16", "fp16"),
    ],
)
def test_gemm_math_dtype(kernel: str, dtype: str, math: str) -> None:
    assert gemm_math_dtype(kernel, dtype) == math


def test_the_trace_gemms_against_the_model() -> None:
    a100 = HardwareLibrary().device("accelerator", "a100-sxm4-40gb")
    assert isinstance(a100, Accelerator)
    graph = read_trace([TRACE])
    recorded: dict[tuple[object, ...], list[float]] = defaultdict(list)
    ops: dict[tuple[object, ...], Compute] = {}
    dtypes: dict[str, int] = defaultdict(int)
    for node in graph.nodes:
        op = node.op
        if isinstance(op, Compute) and op.category == "gemm" and op.flops > 0 and gemm_kernels(op):
            key = (op.op, op.shapes, op.dtype)
            recorded[key].append(float(node.duration_s or 0.0))
            ops[key] = op
            dtypes[op.dtype] += 1
    assert dtypes["tf32"] > 10 * dtypes["fp32"] > 0  # mostly tensor-core TF32, a few SGEMMs
    # Per product kernel as the reader books it (split-K's reduction kernel apart, contended kernels
    # in): the op-level check below is the validation case.
    errors = [product_kernel_time_s(ops[k], a100) / statistics.median(v) - 1 for k, v in recorded.items()]
    assert len(errors) == 145
    assert statistics.median(abs(e) for e in errors) < 0.30
    assert -0.30 < statistics.median(errors) < 0.0


@pytest.fixture(scope="module")
def trace_gemms() -> list[TraceGemm]:
    return load_trace_gemms(TRACE)


@pytest.fixture(scope="module")
def a100() -> Accelerator:
    device = HardwareLibrary().device("accelerator", "a100-sxm4-40gb")
    assert isinstance(device, Accelerator)
    return device


def test_every_matrix_product_op_is_read_with_its_kernels(trace_gemms: list[TraceGemm]) -> None:
    assert len(trace_gemms) == 1776
    reduces = [g for g in trace_gemms if any("splitKreduce" in k for k in g.kernels)]
    # cuBLAS's split-K reduction is the op's second kernel, its time in the op's.
    assert len(reduces) == 606 and all(len(g.kernels) == 2 for g in reduces)
    others = [g for g in trace_gemms if g not in reduces and len(g.kernels) > 1]
    # and an SGEMM whose bias epilogue cuBLAS ran as a kernel of its own (addmm C[98304, 15]).
    assert len(others) == 6 and all("epilogue" in g.kernels[1] for g in others)
    # Ops beside an NCCL or input-pipeline kernel of another stream are marked, not priced.
    assert 500 < sum(g.contended for g in trace_gemms) < 700
    quiet = {(g.shapes, g.time_s) for g in trace_gemms if not g.contended}
    assert ((((96, 1024), (1024, 512)), 13e-6)) in quiet  # wgrad: 9 + 4 us, 24 us when contended


def test_held_out_recommendation_shapes_are_within_the_band(
    trace_gemms: list[TraceGemm], a100: Accelerator
) -> None:
    (case,) = run_cases(["gemm-a100-recsys-trace"])
    errors = shape_errors(trace_gemms, a100)
    assert len(errors) == 132
    median_abs = statistics.median(abs(e) for e in errors.values())
    assert case.error == pytest.approx(median_abs) and case.status == "pass"
    assert median_abs < 0.25
    # What remains is one-sided: recsim is fast on the TF32 kernels (kernel choice and occupancy at
    # M = 1024, unaligned K and N: see the module docstring), slow on the few fp32 SGEMMs.
    tf32 = [e for g, e in errors.items() if g.dtype == "tf32"]
    assert -0.25 < statistics.median(tf32) < -0.15


def test_split_k_products_pay_their_reduction_kernel(trace_gemms: list[TraceGemm], a100: Accelerator) -> None:
    """The ops cuBLAS split along K (a ``splitKreduce_kernel`` follows) are the ones the model splits,
    and pricing that kernel takes them from 31 % fast to within the other ops' error."""
    errors = shape_errors(trace_gemms, a100)
    split = [g for g in errors if len(g.kernels) == 2]
    assert len(split) == 35
    modelled = [gemm_kernel_times(g.compute(), a100)[0] for g in split]
    # The model splits 23 of them: the others it prices whole, the reduction kernel costing more
    # than the fuller waves save (they stay its worst: kernel choice and occupancy, see above).
    assert sum(t.splits > 1 for t in modelled) >= 0.6 * len(split)
    assert all(t.reduce_s >= a100.elementwise_kernel_s for t in modelled if t.splits > 1)
    assert -0.20 < statistics.median(errors[g] for g in split) < -0.10
