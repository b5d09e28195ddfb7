"""The GEMM model on the real recommendation trace's GEMM kernels (A100, recorded shapes).

The trace's GEMMs multiply fp32 tensors on TF32 tensor-core kernels (``cutlass_80_tensorop_s1688gemm``,
PyTorch's default before 1.12); a few are CUDA-core SGEMMs (``ampere_sgemm``). The Kineto reader
reads the math dtype off the kernel name (``readers._common.gemm_math_dtype``). These shapes are
recommendation-sized (K and N of 32-2048), unlike the fit's LLM GEMMs, so the figure is a check
out of the fit's range: median |error| 23 % over the 145 distinct kernels and shapes (the model is
17 % fast on them), where reading them as fp32 CUDA-core GEMMs would be +154 %.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import pytest

from recsim.cost.compute import gemm_kernels, kernel_time_s
from recsim.cost.gemm_trace import TraceGemm, load_trace_gemms
from recsim.graph.ir import Compute
from recsim.graph.readers import read_trace
from recsim.graph.readers._common import gemm_math_dtype
from recsim.hardware.devices import Accelerator
from recsim.hardware.library import HardwareLibrary

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
    errors = [kernel_time_s(ops[k], a100) / statistics.median(v) - 1 for k, v in recorded.items()]
    assert len(errors) == 145
    assert statistics.median(abs(e) for e in errors) < 0.30
    assert -0.30 < statistics.median(errors) < 0.0


@pytest.fixture(scope="module")
def trace_gemms() -> list[TraceGemm]:
    return load_trace_gemms(TRACE)


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
