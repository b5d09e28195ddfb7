"""Trace readers (PyTorch ET, Kineto, ET+Kineto, Chakra) and ``trace_info`` on real and hand-made traces.

The real traces live in ``tests/data/traces`` (origin and licence in its SOURCE.md). Expected
numbers marked "by hand" are computed here from the raw files (or read off them once and noted),
independently of the readers. Big files are read once per module.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import pytest

from recsim.errors import TraceError
from recsim.graph.ir import (
    Collective,
    CollectiveOp,
    Compute,
    ExecutionGraph,
    Host,
    Node,
    Stream,
    Transfer,
)
from recsim.graph.readers import READERS, read_trace
from recsim.graph.readers.chakra import ChakraReader, decode_chakra
from recsim.graph.readers.et_kineto import ETKinetoReader
from recsim.graph.readers.kineto import KinetoReader
from recsim.graph.readers.pytorch_et import PyTorchETReader
from recsim.graph.summary import critical_path, short_kernel_name, trace_info

DATA = Path(__file__).resolve().parents[1] / "data" / "traces"
RECSYS = DATA / "recsys_a100_8rank_rank3_control.json.gz"
RESNET = DATA / "resnet_a100_2rank_nccl_metadata.json.gz"
SIMPLE_ET = DATA / "simple_add_pytorch_et.json.gz"
SIMPLE_KINETO = DATA / "simple_add_kineto.json.gz"
ALLGATHER_ET = DATA / "pytorch_et_1.0.2-chakra.0.0.4_allgather_2rank.json.gz"
CHAKRA = DATA / "chakra.0.et.gz"
PARAM_ET = sorted((DATA / "param_dlrm_et").glob("*.json.gz"))
PARAM_KINETO = sorted((DATA / "param_dlrm_kineto").glob("*.json.gz"))
GEN_ET = DATA / "generated" / "dlrm_tiny_et.json.gz"
GEN_KINETO = DATA / "generated" / "dlrm_tiny_kineto.json.gz"


def raw(path: Path) -> Any:
    with gzip.open(path, "rt") if path.suffix == ".gz" else path.open() as handle:
        return json.load(handle)


def xev(cat: str, name: str, pid: int, ts: float, dur: float, args: dict | None = None, tid: int = 1) -> dict:
    """A complete ("X") Kineto event."""
    return {
        "ph": "X",
        "cat": cat,
        "name": name,
        "pid": pid,
        "tid": tid,
        "ts": ts,
        "dur": dur,
        "args": args or {},
    }


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


# -- fixtures: every big trace read once ------------------------------------------------------------


@pytest.fixture(scope="module")
def recsys() -> ExecutionGraph:
    graph = KinetoReader().read([RECSYS])
    graph.validate()
    return graph


@pytest.fixture(scope="module")
def recsys_info(recsys: ExecutionGraph) -> dict[str, Any]:
    return trace_info(recsys)


@pytest.fixture(scope="module")
def recsys_events() -> list[dict[str, Any]]:
    return raw(RECSYS)["traceEvents"]


@pytest.fixture(scope="module")
def param_et() -> ExecutionGraph:
    graph = PyTorchETReader().read(PARAM_ET)
    graph.validate()
    return graph


@pytest.fixture(scope="module")
def chakra() -> ExecutionGraph:
    graph = ChakraReader().read([CHAKRA])
    graph.validate()
    return graph


# -- every real trace: reads, validates, sensible counts -------------------------------------------


# Small traces, read through format detection; the big ones (recsys, resnet, the 8-rank param
# set, chakra) are read and validated once by their own tests below.
REAL = [
    pytest.param([SIMPLE_ET], "pytorch_et", 1, id="simple-add-et"),
    pytest.param([SIMPLE_KINETO], "kineto", 1, id="simple-add-kineto"),
    pytest.param([SIMPLE_ET, SIMPLE_KINETO], "et_kineto", 1, id="simple-add-joined"),
    pytest.param([ALLGATHER_ET], "pytorch_et", 2, id="chakra-allgather-et"),
    pytest.param([GEN_ET], "pytorch_et", 1, id="generated-et"),
    pytest.param([GEN_KINETO], "kineto", 1, id="generated-kineto"),
    pytest.param([GEN_ET, GEN_KINETO], "et_kineto", 1, id="generated-joined"),
]


@pytest.mark.parametrize(("paths", "fmt", "ranks"), REAL)
def test_real_trace_reads_and_validates(paths: list[Path], fmt: str, ranks: int) -> None:
    graph = read_trace(paths)  # format detected
    graph.validate()
    assert graph.metadata["format"] == fmt
    assert graph.ranks == ranks
    assert len(graph) > 0
    assert all(0 <= n.rank < ranks for n in graph)
    # Every node's dependencies come before it: the readers build the DAG in execution order.
    assert all(d < n.id for n in graph for d in n.deps) or fmt == "chakra"
    info = trace_info(graph)
    assert info["nodes"] == len(graph)
    assert info["critical_path_nodes"] >= 1


def test_all_test_traces_are_covered() -> None:
    covered = {
        RECSYS,
        RESNET,
        CHAKRA,
        *PARAM_ET,
        *PARAM_KINETO,
        *(p for param in REAL for p in param.values[0]),
    }
    on_disk = {p for p in DATA.rglob("*") if p.is_file() and p.name != "SOURCE.md"}
    assert on_disk == covered


def test_total_test_data_is_small() -> None:
    assert sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file()) < 8e6


# -- Kineto: the HTA A100 recsys trace -------------------------------------------------------------


def test_recsys_steps(recsys_info: dict[str, Any]) -> None:
    steps = recsys_info["steps"]
    assert [s["name"] for s in steps] == [f"ProfilerStep#{i}" for i in range(1009, 1015)]
    # By hand: the ProfilerStep#N user_annotation "dur" fields, in microseconds.
    assert [round(s["duration_s"] * 1e6) for s in steps] == [75473, 76940, 76212, 76727, 78473, 81120]
    assert all(0.075 <= s["duration_s"] < 0.0815 for s in steps)  # "75-81 ms"
    assert all(s["rank"] == 3 for s in steps)


def test_recsys_time_by_category(
    recsys: ExecutionGraph, recsys_info: dict[str, Any], recsys_events: list[dict[str, Any]]
) -> None:
    by_cat = recsys_info["time_by_category_s"]
    for category in ("embedding", "gemm", "communication", "elementwise", "memory", "host"):
        assert by_cat[category] > 0, category
    events = recsys_events
    kernels = [e for e in events if e.get("cat") == "kernel"]
    # By hand: NCCL kernels total (us) and TBE (split_embedding*) kernel time.
    nccl_us = sum(e["dur"] for e in kernels if e["name"].startswith("ncclKernel"))
    assert by_cat["communication"] == pytest.approx(nccl_us * 1e-6)
    tbe_us = sum(e["dur"] for e in kernels if "split_embedding" in e["name"])
    assert by_cat["embedding"] >= tbe_us * 1e-6 > 0.05
    # GPU nodes: one per kernel, memset and memcpy of the file.
    gpu = sum(1 for e in events if e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy"))
    assert sum(1 for n in recsys if n.stream is not Stream.HOST) == gpu == 9450


def test_fbgemm_kernels_are_not_gemms(recsys: ExecutionGraph, recsys_events: list[dict[str, Any]]) -> None:
    from recsim.graph.readers._common import kernel_category

    # "fbgemm" contains "gemm": every fbgemm_gpu:: kernel was a GEMM (5.25 ms of this trace).
    assert kernel_category("void fbgemm_gpu::permute_2D_lengths_kernel<int>(int, int)") == "memory"
    assert kernel_category("void fbgemm_gpu::_offsets_range_cuda_kernel<long>(long, long)") == "other"
    assert kernel_category("fbgemm_gpu::split_embedding_codegen_forward_kernel<float>") == "embedding"
    # Real GEMMs still are, fbgemm's own among them.
    # cuBLASLt's Hopper kernels and TorchInductor's matmul templates name no "gemm" (a tester's find).
    for name in ("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NTN", "triton_tem_fused_addmm_relu_1"):
        assert kernel_category(name) == "gemm", name
    assert kernel_category("triton_poi_fused_add_mm_0") != "gemm"  # pointwise, not a template
    assert kernel_category("triton_tem_fused_convolution_0") != "gemm"
    for name in ("ampere_sgemm_128x64_nn", "sm80_xmma_gemm_f32f32", "fbgemm_gpu::f8f8bf16_rowwise_gemm"):
        assert kernel_category(name) == "gemm", name
    # By hand on the A100 trace: its GEMM time is the kernels with "gemm"/"xmma"/... in their names,
    # less the fbgemm_gpu ones.
    gemm_us = sum(
        e["dur"]
        for e in recsys_events
        if e.get("cat") == "kernel"
        and "fbgemm" not in e["name"].lower()
        and any(n in e["name"].lower() for n in ("gemm", "xmma", "cutlass", "cublas", "splitkreduce", "gemv"))
        and "embedding" not in e["name"].lower()
    )
    gemm_nodes = [n for n in recsys if isinstance(n.op, Compute) and n.op.category == "gemm"]
    assert not any("fbgemm" in n.name for n in gemm_nodes)
    assert math.fsum(n.duration_s or 0.0 for n in gemm_nodes) == pytest.approx(gemm_us * 1e-6)


def test_recsys_collectives(recsys: ExecutionGraph, recsys_info: dict[str, Any]) -> None:
    by_op = {c["op"]: c for c in recsys_info["collectives"]}
    assert by_op["all_to_all"]["count"] == 42  # ncclKernel_SendRecv kernels
    assert by_op["all_reduce"]["count"] == 18
    assert by_op["all_to_all"]["time_s"] == pytest.approx(0.130655)
    assert by_op["all_reduce"]["time_s"] == pytest.approx(0.032880)
    coll = [n for n in recsys if isinstance(n.op, Collective)]
    assert all(n.stream is Stream.COMM and n.op.group == tuple(range(8)) and n.rank == 3 for n in coll)
    # The first all-to-all's bytes come from its nccl:all_to_all annotation:
    # Input Dims [[8, 1024, 8816]], Input type float.
    first = min((n for n in coll if n.op.op is CollectiveOp.ALL_TO_ALL), key=lambda n: n.start_s or 0)
    assert first.op.bytes == 8 * 1024 * 8816 * 4
    assert recsys.metadata["partial_collectives"] is True
    assert recsys.metadata["trace_ranks"] == [3]


def test_recsys_kernels_depend_on_their_launch(recsys: ExecutionGraph) -> None:
    by_id = recsys.by_id
    kernels = [n for n in recsys if n.stream is Stream.COMPUTE]
    launched = [n for n in kernels if any(by_id[d].stream is Stream.HOST for d in n.deps)]
    assert len(launched) == len(kernels)  # every kernel of this trace has a recorded launch
    # The host node a kernel depends on ends with its launch call, which began before the kernel ran
    # (a kernel may start before cudaLaunchKernel returns, so the node may end a little later).
    for n in launched:
        host = next(by_id[d] for d in n.deps if by_id[d].stream is Stream.HOST)
        assert host.start_s is not None and n.start_s is not None
        assert host.start_s <= n.start_s
    gemm = [n for n in kernels if isinstance(n.op, Compute) and n.op.category == "gemm"]
    assert gemm and any(n.op.shapes for n in gemm)  # shapes from the launching op's Input Dims


def test_recsys_critical_path(recsys_info: dict[str, Any]) -> None:
    steps_total = sum(s["duration_s"] for s in recsys_info["steps"])
    assert 0.4 * steps_total < recsys_info["critical_path_s"] <= 1.05 * steps_total
    assert recsys_info["critical_path_nodes"] > 100


def test_resnet_nccl_metadata() -> None:
    graph = KinetoReader().read([RESNET])
    graph.validate()
    coll = [n for n in graph if isinstance(n.op, Collective)]
    kernels = sorted(
        (e for e in raw(RESNET)["traceEvents"] if e.get("cat") == "kernel" and "nccl" in e["name"]),
        key=lambda e: e["ts"],
    )
    size = {"Float": 4, "Long": 8}
    assert len(coll) == len(kernels) == 21
    for node, event in zip(sorted(coll, key=lambda n: n.start_s or 0), kernels, strict=True):
        args = event["args"]
        assert node.op.bytes == args["In msg nelems"] * size[args["dtype"]]
        assert node.op.group == (0, 1)
        assert (
            node.op.op.value == {"allreduce": "all_reduce", "broadcast": "broadcast"}[args["Collective name"]]
        )
    assert graph.metadata["trace_ranks"] == [0]


def test_kineto_multi_rank_keys_agree() -> None:
    graph = read_trace(PARAM_KINETO)
    graph.validate()  # every collective present on all 8 ranks, same op
    assert graph.metadata["format"] == "kineto" and graph.ranks == 8
    per_key = graph.collectives()
    assert len(per_key) == 8 and all(len(m) == 8 for m in per_key.values())
    assert len(graph.metadata["steps"]) == 8


def test_kineto_host_segments_by_hand(tmp_path: Path) -> None:
    # One CPU op [0, 100] us launching a kernel at [10, 20]; the kernel runs [30, 50] on stream 7;
    # a second op [200, 260] launches nothing. Expected host nodes: [0, 20] (up to the launch's end),
    # [20, 100] (the rest of the op), [200, 260].
    dims = {"Input Dims": [[4, 8], [8, 2]], "Input type": ["float", "float"]}
    events = [
        xev("cpu_op", "aten::mm", 1, 1000, 100, dims),
        xev("cuda_runtime", "cudaLaunchKernel", 1, 1010, 10, {"correlation": 7}),
        xev("kernel", "ampere_sgemm_32x32_nn", 0, 1030, 20, {"correlation": 7, "stream": 7}, tid=7),
        xev("cpu_op", "aten::add", 1, 1200, 60),
        xev("user_annotation", "ProfilerStep#3", 1, 1000, 300),
    ]
    path = write_json(tmp_path / "t_rank0.json", {"traceEvents": events})
    graph = KinetoReader().read([path])
    graph.validate()
    host = [n for n in graph if n.stream is Stream.HOST]
    # The ProfilerStep annotation makes [0, 300] one busy period: cut at 20, then the rest.
    assert [(round(n.start_s * 1e6), round(n.duration_s * 1e6)) for n in host] == [(0, 20), (20, 280)]
    assert [n.name for n in host] == ["aten::mm", "ProfilerStep#3"]
    (kernel,) = [n for n in graph if n.stream is Stream.COMPUTE]
    assert kernel.deps == (host[0].id,)
    assert kernel.duration_s == pytest.approx(20e-6) and kernel.start_s == pytest.approx(30e-6)
    assert isinstance(kernel.op, Compute) and kernel.op.category == "gemm"
    assert kernel.op.shapes == ((4, 8), (8, 2)) and kernel.op.flops == 2 * 4 * 8 * 2
    assert graph.metadata["steps"] == [
        {"name": "ProfilerStep#3", "rank": 0, "start_s": 0.0, "duration_s": pytest.approx(300e-6)}
    ]
    # Without the annotation the idle gap [100, 200] is not host work.
    path = write_json(tmp_path / "u_rank0.json", {"traceEvents": events[:4]})
    host = [n for n in KinetoReader().read([path]) if n.stream is Stream.HOST]
    assert [(round(n.start_s * 1e6), round(n.duration_s * 1e6)) for n in host] == [
        (0, 20),
        (20, 80),
        (200, 60),
    ]
    assert critical_path(KinetoReader().read([path]))[0] == pytest.approx(160e-6)  # 20 + 80 + 60 on the host


def _spans(graph: ExecutionGraph, stream: Stream) -> list[tuple[int, int]]:
    return [(round(n.start_s * 1e6), round(n.duration_s * 1e6)) for n in graph if n.stream is stream]


def test_kineto_blocking_copy_is_a_wait_not_cpu_time(tmp_path: Path) -> None:
    # mm launches an 80 us kernel [6, 86]; copy_ calls cudaMemcpyAsync [12, 95] to pageable memory,
    # whose copy runs [86, 88] after the kernel: the call blocked 76 us on it. add launches at 106.
    events = [
        xev("cpu_op", "aten::mm", 1, 0, 6),
        xev("cuda_runtime", "cudaLaunchKernel", 1, 1, 4, {"correlation": 1}),
        xev("kernel", "ampere_sgemm_64x64_nn", 0, 6, 80, {"correlation": 1, "stream": 7}, tid=7),
        xev("cpu_op", "aten::copy_", 1, 10, 90),
        xev("cuda_runtime", "cudaMemcpyAsync", 1, 12, 83, {"correlation": 2}),
        xev(
            "gpu_memcpy", "Memcpy DtoH (Device -> Pageable)", 0, 86, 2, {"correlation": 2, "stream": 7}, tid=7
        ),
        xev("cpu_op", "aten::add", 1, 100, 10),
        xev("cuda_runtime", "cudaLaunchKernel", 1, 102, 4, {"correlation": 3}),
        xev("kernel", "vectorized_elementwise_kernel", 0, 110, 5, {"correlation": 3, "stream": 7}, tid=7),
    ]
    graph = KinetoReader().read([write_json(tmp_path / "copy.json", {"traceEvents": events})])
    graph.validate()
    # CPU: [0, 5] up to mm's launch, [5, 12] up to the copy's issue; the 76 us blocked in it are left
    # out; [88, 106] up to add's launch, [106, 110]: 7 + 18 + 4 + 5 = 34 us of the 110 busy.
    assert _spans(graph, Stream.HOST) == [(0, 5), (5, 7), (88, 18), (106, 4)]
    host = [n for n in graph if n.stream is Stream.HOST]
    copy = next(n for n in graph if n.stream is Stream.COPY)
    assert copy.id in host[2].deps  # the CPU goes on once the copy is done
    waits = graph.metadata["waits"]
    assert (waits["cpu_waits_on_gpu"], waits["stream_waits"], waits["thread_wakeups"]) == (1, 0, 0)
    assert waits["cpu_blocked_s"] == pytest.approx(76e-6)
    # Replayed: the kernel from 5 to 85, the copy to 87, the CPU [87, 105], add's kernel [105, 110].
    assert critical_path(graph)[0] == pytest.approx(110e-6)
    # A kernel half as long moves the CPU's later work with it: 40 us sooner.
    faster = {n.id: (n.duration_s or 0.0) / (2 if n.name.startswith("ampere") else 1) for n in graph}
    from recsim.graph.schedule import asap_schedule

    assert asap_schedule(graph, faster).makespan_s == pytest.approx(70e-6)


def test_kineto_stream_and_thread_waits_by_hand(tmp_path: Path) -> None:
    # Stream 7's kernel runs [10, 50]; stream 21's, launched at 4, starts at 55: it waited for it.
    # Thread 2 sleeps until 60, when thread 1 is inside an op [0, 100]: thread 1 woke it.
    events = [
        xev("cpu_op", "aten::mm", 1, 0, 100),
        xev("cuda_runtime", "cudaLaunchKernel", 1, 1, 2, {"correlation": 1}),
        xev("cuda_runtime", "cudaLaunchKernel", 1, 3, 1, {"correlation": 2}),
        xev("kernel", "ampere_sgemm_64x64_nn", 0, 10, 40, {"correlation": 1, "stream": 7}, tid=7),
        xev("kernel", "ncclKernel_AllReduce_RING_LL_Sum_float", 0, 55, 5, {"correlation": 2, "stream": 21}),
        xev("cpu_op", "autograd::engine::evaluate_function: MmBackward0", 1, 60, 20, tid=2),
    ]
    graph = KinetoReader().read([write_json(tmp_path / "waits.json", {"traceEvents": events})])
    graph.validate()
    by_name = {n.name: n for n in graph}
    gemm, nccl = by_name["ampere_sgemm_64x64_nn"], by_name["ncclKernel_AllReduce_RING_LL_Sum_float"]
    assert gemm.id in nccl.deps
    # Thread 1: [0, 3], [3, 4] (the launches), [4, 60] cut where thread 2 woke, [60, 100].
    main = [n for n in graph if n.stream is Stream.HOST and n.lane == 0]
    assert [(round(n.start_s * 1e6), round(n.duration_s * 1e6)) for n in main] == [
        (0, 3),
        (3, 1),
        (4, 56),
        (60, 40),
    ]
    (woken,) = (n for n in graph if n.stream is Stream.HOST and n.lane == 1)
    assert woken.deps == (main[2].id,)


def test_kineto_annotated_gap_is_work_or_a_wait_by_the_other_threads(tmp_path: Path) -> None:
    # The main thread (tid 1) calls at [0, 10] and [900, 910] inside "## backward ##" [0, 1000];
    # the autograd thread (tid 2) works [100, 880] meanwhile: the main thread waited for it.
    events = [
        xev("user_annotation", "## backward ##", 1, 0, 1000),
        xev("cpu_op", "aten::ones_like", 1, 0, 10),
        xev("cpu_op", "Optimizer.step#SGD.step", 1, 900, 10),
        xev("cpu_op", "autograd::engine::evaluate_function: MmBackward0", 1, 100, 780, tid=2),
    ]
    graph = KinetoReader().read([write_json(tmp_path / "bwd.json", {"traceEvents": events})])
    main = [n for n in graph if n.stream is Stream.HOST and n.lane == 0]
    # [0, 10] (the annotation's time from 910 to 1000, no other thread at work, is its own).
    assert [(round(n.start_s * 1e6), round(n.duration_s * 1e6)) for n in main] == [(0, 10), (900, 100)]
    (autograd,) = (n for n in graph if n.stream is Stream.HOST and n.lane == 1)
    assert autograd.deps == (main[0].id,) and main[1].deps == (main[0].id, autograd.id)
    assert critical_path(graph)[0] == pytest.approx(890e-6)  # 10 + 780 + 100: no time waiting
    # Alone, the same gap is the main thread's own (Python) work inside its annotation.
    alone = KinetoReader().read([write_json(tmp_path / "alone.json", {"traceEvents": events[:3]})])
    assert [(round(n.start_s * 1e6), round(n.duration_s * 1e6)) for n in alone] == [(0, 1000)]


def test_join_hands_out_host_segments_per_thread_as_late_as_possible() -> None:
    from types import SimpleNamespace

    from recsim.graph.readers._common import Pending
    from recsim.graph.readers.et_kineto import _HostTime
    from recsim.graph.readers.pytorch_et import Placement

    def seg(thread: str, i: int, start: float, deps: tuple = ()) -> Pending:
        key = ("host", 0, thread, i)
        return Pending(key, 0, f"{thread}{i}", Stream.HOST, Host(op="x"), list(deps), start_s=start)

    # Thread X launches op A's kernel from X0 and op G's from X1; ET thread 2 (Kineto thread Y) runs
    # a CPU-only op H at 15, before G in ET order. Y1 woke after X2.
    host = _HostTime.__new__(_HostTime)
    host._queues = {
        0: {
            "X": [seg("X", 0, 0), seg("X", 1, 10), seg("X", 2, 40)],
            "Y": [seg("Y", 0, 12), seg("Y", 1, 50, (("host", 0, "X", 2),))],
        }
    }
    host._next = {0: {"X": 0, "Y": 0}}
    host._emitted = {0: set()}
    host._thread_of = {0: {2: "Y"}}
    h = Placement(Stream.HOST, 1, ("thread", 2), duration_s=3.0, start_s=15.0)
    assert [p.name for p in host.before(0, SimpleNamespace(tid=2), h)] == ["Y0"]  # its thread only
    g = Placement(Stream.COMPUTE, 0, ("cuda", 0, 7), start_s=31.0, deps=(("host", 0, "X", 1),))
    assert [p.name for p in host.before(0, SimpleNamespace(tid=1), g)] == ["X0", "X1"]
    assert [p.name for p in host.before(0, SimpleNamespace(tid=1), g)] == []  # already out
    assert [p.name for p in host.rest(0)] == ["X2", "Y1"]  # by start; Y1's waker first


def test_kineto_asynchronous_copy_done_before_its_call_returned_is_no_wait(tmp_path: Path) -> None:
    # A device-to-device copy [5, 8] whose cudaMemcpyAsync [1, 10] returned after it: not blocking.
    copy = {"correlation": 1, "stream": 7}
    events = [
        xev("cpu_op", "aten::copy_", 1, 0, 12),
        xev("cuda_runtime", "cudaMemcpyAsync", 1, 1, 9, {"correlation": 1}),
        xev("gpu_memcpy", "Memcpy DtoD (Device -> Device)", 0, 5, 3, copy, tid=7),
    ]
    graph = KinetoReader().read([write_json(tmp_path / "dtod.json", {"traceEvents": events})])
    assert _spans(graph, Stream.HOST) == [(0, 10), (10, 2)]  # CPU time, cut at the call's end


def test_kineto_sync_records_name_the_waits_exactly(tmp_path: Path) -> None:
    # Stream 7: A [5, 100], recorded in an event at 3; stream 21 waits on it (cudaStreamWaitEvent at
    # 4) before B [106, 116]; stream 20: C [10, 105] and E [110, 125]. The CPU then synchronises
    # with stream 21 [20, 130]. By the timing alone, B waited for C (which ended last before it)
    # and the CPU for E; the sync records say A and B.
    def launch(ts: float, corr: int) -> dict:
        return xev("cuda_runtime", "cudaLaunchKernel", 1, ts, 1, {"correlation": corr})

    def kernel(name: str, stream: int, ts: float, dur: float, corr: int) -> dict:
        return xev("kernel", name, 0, ts, dur, {"correlation": corr, "stream": stream}, tid=stream)

    def sync(kind: str, stream: int, ts: float, dur: float, **args: int) -> dict:
        return xev(
            "cuda_sync", kind, 0, ts, dur, {"cuda_sync_kind": kind, "stream": stream, **args}, tid=stream
        )

    events = [
        xev("cpu_op", "step", 1, 0, 140),
        launch(0, 1),
        kernel("A_kernel", 7, 5, 95, 1),
        xev("cuda_runtime", "cudaEventRecord", 1, 2.5, 0.5, {"correlation": 2}),
        xev("cuda_runtime", "cudaStreamWaitEvent", 1, 4, 0.5, {"correlation": 3}),
        launch(6, 4),
        kernel("B_kernel", 21, 106, 10, 4),
        launch(8, 5),
        kernel("C_kernel", 20, 10, 95, 5),
        launch(12, 7),
        kernel("E_kernel", 20, 110, 15, 7),
        xev("cuda_runtime", "cudaStreamSynchronize", 1, 20, 110, {"correlation": 6}),
    ]
    records = [
        sync(
            "Stream Wait Event",
            21,
            4,
            0,
            wait_on_stream=7,
            wait_on_cuda_event_record_corr_id=2,
            correlation=3,
        ),
        sync("Stream Sync", 21, 20, 110, correlation=6),
    ]

    def read(name: str, evs: list[dict]) -> tuple[dict[str, Node], Node]:
        graph = KinetoReader().read([write_json(tmp_path / name, {"traceEvents": evs})])
        graph.validate()
        after = next(n for n in graph if n.stream is Stream.HOST and round(n.start_s * 1e6) > 20)
        return {n.name: n for n in graph}, after

    nodes, after_sync = read("synced.json", events + records)
    assert nodes["A_kernel"].id in nodes["B_kernel"].deps
    assert nodes["C_kernel"].id not in nodes["B_kernel"].deps
    assert nodes["B_kernel"].id in after_sync.deps and nodes["E_kernel"].id not in after_sync.deps
    nodes, after_sync = read("timed.json", events)
    assert nodes["C_kernel"].id in nodes["B_kernel"].deps
    assert nodes["E_kernel"].id in after_sync.deps


def test_uneven_all_to_all_members_take_the_last_arrival(tmp_path: Path) -> None:
    # Rank 0 sends 3 MB to rank 1 and 1 MB to itself; rank 1 sends 1 MB to rank 0 and 1 MB to
    # itself: the totals differ, the splits agree. Rank 0 arrived 600 us early.
    def rank(r: int, start: float, dur: float, sends: list[int], recvs: list[int]) -> Path:
        args = {
            "correlation": 1,
            "stream": 21,
            "Collective name": "all_to_allv",
            "In msg nelems": sum(sends),
            "Out msg nelems": sum(recvs),
            "Group size": 2,
            "dtype": "Byte",
            "In split size": sends,
            "Out split size": recvs,
        }
        events = [
            xev("cuda_runtime", "cudaLaunchKernel", 1, start - 5, 2, {"correlation": 1}),
            xev("kernel", "ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t", 0, start, dur, args),
        ]
        info = {"rank": r, "world_size": 2}
        return write_json(tmp_path / f"a{r}.json", {"traceEvents": events, "distributedInfo": info})

    mb = 1_000_000
    graph = KinetoReader().read(
        [rank(0, 5, 900, [mb, 3 * mb], [mb, mb]), rank(1, 605, 300, [mb, mb], [3 * mb, mb])]
    )
    assert sorted(round(n.duration_s * 1e6) for n in graph if isinstance(n.op, Collective)) == [300, 300]
    assert "notes" not in graph.metadata or not any("disagree" in x for x in graph.metadata["notes"])
    # Splits that do not agree (rank 1 says it got 2 MB from rank 0) are no trace to replay.
    odd = read_trace([rank(0, 5, 900, [mb, 3 * mb], [mb, mb]), rank(1, 605, 300, [mb, mb], [2 * mb, mb])])
    with pytest.raises(TraceError, match="expects"):
        odd.validate()


def test_kineto_identifiers_must_be_numbers_or_strings(tmp_path: Path) -> None:
    events = [xev("kernel", "k", 0, 0, 5, {"correlation": [1, 2], "stream": 7}, tid=7)]
    path = write_json(tmp_path / "ids.json", {"traceEvents": events})
    with pytest.raises(TraceError, match=r"ids.json: traceEvents\[0\] \('k'\): args.correlation is not"):
        KinetoReader().read([path])


@pytest.mark.parametrize("cat", [["kernel"], {"kernel": 1}, 7])
def test_kineto_category_must_be_a_string(tmp_path: Path, cat: Any) -> None:
    # A list or an object as 'cat' raised a TypeError (unhashable) out of the reader.
    events = [xev("kernel", "k", 0, 0, 5, {"stream": 7}, tid=7), {**xev("kernel", "k2", 0, 9, 5), "cat": cat}]
    path = write_json(tmp_path / "cat.json", {"traceEvents": events})
    with pytest.raises(TraceError, match=r"cat.json: traceEvents\[1\] \('k2'\): 'cat' is not a string"):
        KinetoReader().read([path])


def test_kineto_event_without_dur_is_taken_as_zero_and_said_so(tmp_path: Path) -> None:
    event = xev("kernel", "k", 0, 0, 5, {"stream": 7}, tid=7)
    del event["dur"]
    graph = KinetoReader().read([write_json(tmp_path / "nodur.json", {"traceEvents": [event]})])
    assert [n.duration_s for n in graph] == [0.0]
    assert graph.metadata["notes"][-1] == "rank 0: 1 complete ('X') events without a 'dur', taken as 0 long"


def test_unresolved_sync_record_leaves_the_call_to_the_timing(tmp_path: Path) -> None:
    # A Stream Sync record whose call is not in the trace: the cudaStreamSynchronize [10, 110] is
    # judged by the timing (it waited for the kernel [5, 100]), not counted as CPU time.
    events = [
        xev("cpu_op", "aten::mm", 1, 0, 120),
        xev("cuda_runtime", "cudaLaunchKernel", 1, 1, 2, {"correlation": 1}),
        xev("kernel", "ampere_sgemm_64x64_nn", 0, 5, 95, {"correlation": 1, "stream": 7}, tid=7),
        xev("cuda_runtime", "cudaStreamSynchronize", 1, 10, 100, {"correlation": 2}),
        xev(
            "cuda_sync",
            "Stream Sync",
            0,
            10,
            100,
            {"cuda_sync_kind": "Stream Sync", "stream": 7, "correlation": 99},
        ),
    ]
    graph = KinetoReader().read([write_json(tmp_path / "s.json", {"traceEvents": events})])
    assert _spans(graph, Stream.HOST) == [(0, 3), (3, 7), (100, 20)]


def test_reestimate_of_an_execution_trace_alone_costs_what_it_can_and_says_what_not() -> None:
    from recsim.api import replay

    # The ET records tensors, not times: its GPU ops are costed from their bytes and FLOPs, its
    # CPU work and embedding lookups have no model and a note says so.
    result = replay([PARAM_ET[0]], keep=False, system="dgx-1-v100")
    assert result.predicted_step_s > 0.5e-3
    assert "no recorded duration and no cost model" in result.notes[-1]
    # After the GPU the recorded durations are read as, the reader's own notes: ops it dropped,
    # collectives lacking the other ranks.
    assert result.notes[0].startswith("recorded on ")
    assert result.notes[1] == "rank 0: 364 metadata-only ops (views, empty, detach, ...) dropped"
    assert not any("no cost model" in n for n in replay(PARAM_KINETO, keep=False, system="dgx-1-v100").notes)


def _host(events: list[dict], tmp_path: Path, holes: dict | None = None) -> list:
    from recsim.graph.readers.kineto import host_segments, parse_kineto
    from recsim.graph.readers.waits import host_waits

    path = write_json(tmp_path / "h.json", {"traceEvents": events})
    trace = parse_kineto(path, raw(path))
    return host_segments(trace, holes, host_waits(trace))


def test_a_thread_blocked_on_the_gpu_is_not_at_work_for_another_threads_gap(tmp_path: Path) -> None:
    # The main thread's Python [20, 1500] inside its step annotation, while thread 2 sits in a
    # cudaStreamSynchronize [30, 1405] on a kernel [15, 1400]: thread 2 waited, it did not work,
    # so the gap is the main thread's own work.
    events = [
        xev("user_annotation", "ProfilerStep#1", 1, 0, 2000),
        xev("cpu_op", "aten::mm", 1, 0, 20),
        xev("cuda_runtime", "cudaLaunchKernel", 1, 5, 5, {"correlation": 1}),
        xev("cpu_op", "aten::add", 1, 1500, 20),
        xev("cuda_runtime", "cudaStreamSynchronize", 1, 30, 1375, {"correlation": 2}, tid=2),
        xev("kernel", "k", 0, 15, 1385, {"stream": 7, "correlation": 1}, tid=7),
    ]
    main = _host(events, tmp_path)[0]
    assert math.fsum(seg.end - seg.start for seg in main.segments) == pytest.approx(2000)


def test_a_block_that_opens_with_a_cpu_only_op_carries_what_woke_it(tmp_path: Path) -> None:
    # The main thread waits in "## backward ##" [0, 1000] while the autograd thread works [20, 920],
    # then resumes with a CPU-only op [1000, 1100] (a hole: the ET join's own node). A segment of
    # no length at 1000 carries the wake, so the op after it waits for the backward too.
    events = [
        xev("user_annotation", "## backward ##", 1, 0, 1000),
        xev("cpu_op", "autograd::engine::evaluate_function", 1, 0, 10),
        xev("cpu_op", "AddmmBackward0", 1, 20, 900, tid=2),
        xev("cpu_op", "aten::zero_", 1, 1000, 100),
        xev("cpu_op", "aten::mul", 1, 1100, 20),
    ]
    main, autograd = _host(events, tmp_path, {(1, 1): [(1000.0, 1100.0)]})
    (i,) = main.after
    assert (main.segments[i].start, main.segments[i].end) == (1000.0, 1000.0)
    assert main.after[i] == [(autograd.thread, 0)]


def test_an_event_sync_record_without_the_events_stream_is_left_to_the_timing(tmp_path: Path) -> None:
    from recsim.graph.readers.kineto import parse_kineto
    from recsim.graph.readers.waits import host_waits

    # k1 [10, 530] on stream 7, k2 [12, 17] on stream 20, an event recorded after both, and a
    # cudaEventSynchronize [40, 535]: a record naming stream 7 says k1; one naming none (-1) says
    # too little, and the timing finds k1 too.
    def events(stream: int) -> list[dict]:
        sync = {"cuda_sync_kind": "Event Sync", "stream": -1, "correlation": 4}
        sync |= {"wait_on_stream": stream, "wait_on_cuda_event_record_corr_id": 3}
        return [
            xev("cuda_runtime", "cudaLaunchKernel", 1, 1, 2, {"correlation": 1}),
            xev("kernel", "k1", 0, 10, 520, {"stream": 7, "correlation": 1}, tid=7),
            xev("cuda_runtime", "cudaLaunchKernel", 1, 4, 2, {"correlation": 2}),
            xev("kernel", "k2", 0, 12, 5, {"stream": 20, "correlation": 2}, tid=20),
            xev("cuda_runtime", "cudaEventRecord", 1, 7, 1, {"correlation": 3}),
            xev("cuda_runtime", "cudaEventSynchronize", 1, 40, 495, {"correlation": 4}),
            xev("cuda_sync", "Event Sync", 0, 40, 495, sync, tid=-1),
        ]

    for stream in (7, -1):
        path = write_json(tmp_path / f"e{stream}.json", {"traceEvents": events(stream)})
        trace = parse_kineto(path, raw(path))
        assert [e.name for e in host_waits(trace).values()] == ["k1"]


def test_collective_recorded_on_all_ranks_takes_the_last_arrival(tmp_path: Path) -> None:
    # Rank 0 enters the all-reduce at 0 and waits for rank 1 (enters at 70): 100 us against 30 us.
    def rank(r: int, start: float, dur: float) -> Path:
        events = [
            xev("cuda_runtime", "cudaLaunchKernel", 1, start - 5, 2, {"correlation": 1}),
            xev(
                "kernel",
                "ncclKernel_AllReduce_RING_LL_Sum_float",
                0,
                start,
                dur,
                {
                    "correlation": 1,
                    "stream": 21,
                    "Collective name": "allreduce",
                    "In msg nelems": 1024,
                    "Out msg nelems": 1024,
                    "Group size": 2,
                    "dtype": "Float",
                },
            ),
        ]
        info = {"rank": r, "world_size": 2}
        return write_json(tmp_path / f"r{r}.json", {"traceEvents": events, "distributedInfo": info})

    graph = KinetoReader().read([rank(0, 5, 100), rank(1, 75, 30)])
    assert sorted(round(n.duration_s * 1e6) for n in graph if isinstance(n.op, Collective)) == [30, 30]
    # Members that disagree on the collective (here its size) are not one: recorded times stay.
    other = json.loads(rank(1, 75, 30).read_text())
    other["traceEvents"][1]["args"]["In msg nelems"] = 2048
    other["traceEvents"][1]["args"]["Out msg nelems"] = 2048
    odd = write_json(tmp_path / "r1b.json", other)
    mixed = read_trace([rank(0, 5, 100), odd])
    mixed.validate()  # a size that differs is no invalid graph: the note is what says so
    assert sorted(round(n.duration_s * 1e6) for n in mixed if isinstance(n.op, Collective)) == [30, 100]
    assert any("disagree" in note for note in mixed.metadata["notes"])
    # One rank alone: the other's arrival is not in the trace, so the recorded time stays.
    alone = KinetoReader().read([rank(0, 5, 100)])
    assert [round(n.duration_s * 1e6) for n in alone if isinstance(n.op, Collective)] == [100]


@pytest.mark.parametrize("label", ["gather", "scatter"])
def test_a_kernel_named_a_gather_or_scatter_is_no_all_to_all(tmp_path: Path, label: str) -> None:
    # NCCL runs c10d's gather and scatter as grouped send/recv: a SendRecv kernel, which alone
    # reads as an all-to-all. Its "Collective name" says otherwise: recsim has no op for it, so
    # it stays a communication kernel with its recorded time (it was re-costed as an all-to-all).
    events = [
        xev("cuda_runtime", "cudaLaunchKernel", 1, 0, 2, {"correlation": 1}),
        xev(
            "kernel",
            "ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)",
            0,
            5,
            40,
            {
                "correlation": 1,
                "stream": 21,
                "Collective name": label,
                "In msg nelems": 1024,
                "Out msg nelems": 4096,
                "Group size": 4,
                "dtype": "Float",
            },
        ),
    ]
    info = {"rank": 0, "world_size": 4}
    graph = KinetoReader().read(
        [write_json(tmp_path / "r0.json", {"traceEvents": events, "distributedInfo": info})]
    )
    (kernel,) = (n for n in graph if n.stream is Stream.COMM)
    assert kernel.op == Compute(op=kernel.name, category="communication")
    assert kernel.duration_s == pytest.approx(40e-6)


@pytest.mark.parametrize(
    ("dtype", "elem_bytes"),
    [("ComplexFloat", 8), ("ComplexHalf", 4), ("UInt32", 4), ("UInt64", 8), ("QInt8", 1), ("Float", 4)],
)
def test_nccl_kernel_dtypes_of_every_c10_scalar_type_give_its_bytes(
    tmp_path: Path, dtype: str, elem_bytes: int
) -> None:
    # A NCCL kernel's "dtype" is c10's ScalarType name; the ones the table lacked gave the
    # collective 0 bytes, so a re-estimate kept its recorded time instead of re-costing it.
    events = [
        xev("cuda_runtime", "cudaLaunchKernel", 1, 0, 2, {"correlation": 1}),
        xev(
            "kernel",
            "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)",
            0,
            5,
            40,
            {
                "correlation": 1,
                "stream": 21,
                "Collective name": "allreduce",
                "In msg nelems": 1024,
                "Out msg nelems": 1024,
                "Group size": 2,
                "dtype": dtype,
            },
        ),
    ]
    info = {"rank": 0, "world_size": 2}
    graph = KinetoReader().read(
        [write_json(tmp_path / "r0.json", {"traceEvents": events, "distributedInfo": info})]
    )
    (kernel,) = (n for n in graph if n.stream is Stream.COMM)
    assert isinstance(kernel.op, Collective) and kernel.op.bytes == 1024 * elem_bytes


def test_kineto_launch_from_ac2g_flow(tmp_path: Path) -> None:
    # No "correlation" on the kernel: the ac2g flow (s at the runtime call, f at the kernel) links them.
    events = [
        xev("cpu_op", "aten::relu", 1, 0, 50),
        xev("cuda_runtime", "cudaLaunchKernel", 1, 5, 5),
        {"ph": "s", "cat": "ac2g", "id": 3, "pid": 1, "tid": 1, "ts": 5, "name": "ac2g"},
        {"ph": "f", "cat": "ac2g", "id": 3, "pid": 0, "tid": 7, "ts": 60, "name": "ac2g", "bp": "e"},
        xev("kernel", "vectorized_elementwise_kernel", 0, 60, 4, {"stream": 7}, tid=7),
        xev("gpu_memcpy", "Memcpy DtoH (Device -> Pinned)", 0, 70, 2, {"stream": 7, "bytes": 64}, tid=7),
    ]
    graph = KinetoReader().read([write_json(tmp_path / "flow.json", {"traceEvents": events})])
    graph.validate()
    host = [n for n in graph if n.stream is Stream.HOST]
    kernel, copy = (n for n in graph if n.stream is not Stream.HOST)
    assert kernel.deps == (host[0].id,) and kernel.op.category == "elementwise"
    assert copy.stream is Stream.COPY and copy.op == Transfer(src="hbm", dst="host", bytes=64.0)
    assert copy.deps == (kernel.id,)  # same CUDA stream: in order, though a different stream class
    assert graph.metadata["notes"] == [
        "rank 0: 1 GPU events without a recorded launch (no correlation or flow): each waits only for "
        "the work before it on its CUDA stream, so the replay may run it earlier than recorded (the "
        "idle time before it is not kept)"
    ]


# -- PyTorch ET ------------------------------------------------------------------------------------


def test_param_dlrm_et_ranks_and_collectives(param_et: ExecutionGraph) -> None:
    assert param_et.ranks == 8
    assert param_et.metadata["trace_ranks"] == list(range(8))
    assert param_et.metadata["partial_collectives"] is False
    per_key = param_et.collectives()
    assert len(per_key) == 8  # 5 alltoall_base_ + 3 allreduce_ per rank, c10d seq 147..154
    assert sorted(per_key) == [f"world/seq{s}" for s in range(147, 155)]
    ops = sorted(m[0].op.op.value for m in per_key.values())
    assert ops == ["all_reduce"] * 3 + ["all_to_all"] * 5
    assert all(sorted(n.rank for n in m) == list(range(8)) for m in per_key.values())


def test_param_dlrm_all_to_all_splits(param_et: ExecutionGraph) -> None:
    # By hand (dlrm_eg_*.json, record_param_comms seq 150 "all_to_allv"): int32 values, input
    # splits [96, 224, 288, 1664, 592, 96, 192, 240] on every rank; rank r receives
    # input_split[r] elements from each peer (its output splits are 8 x that).
    members = {n.rank: n.op for n in param_et.collectives()["world/seq150"]}
    splits = [96, 224, 288, 1664, 592, 96, 192, 240]
    for rank, op in members.items():
        assert isinstance(op, Collective)
        assert op.send_bytes == tuple(4.0 * s for s in splits)
        assert op.recv_bytes == tuple(4.0 * splits[rank] for _ in range(8))
        assert op.bytes == 4 * sum(splits)
    # Agreement: what rank i sends to j is what j expects from i (validate() checks this too).
    for i, op_i in members.items():
        for j, op_j in members.items():
            assert op_i.send_bytes[j] == op_j.recv_bytes[i]
    even = param_et.collectives()["world/seq147"][0].op
    assert even.send_bytes == tuple([3072.0] * 8)  # 6144 floats split 768 each


def test_param_dlrm_split_disagreement_is_caught(tmp_path: Path) -> None:
    data = raw(PARAM_ET[1])
    for node in data["nodes"]:  # rank 1 claims to receive 100 values from rank 0 and 92 from rank 1
        if node["name"] == "c10d::alltoall_base_" and node["inputs"][3] == [224] * 8:
            node["inputs"][3] = [100, 348, 224, 224, 224, 224, 224, 224]
    # Two of the eight ranks are enough: validate() checks the pairs that are present.
    graph = PyTorchETReader().read([PARAM_ET[0], write_json(tmp_path / "dlrm_eg_1.json", data)])
    assert graph.metadata["partial_collectives"] is True
    with pytest.raises(TraceError, match=r"all_to_all 'world/seq150': rank 0 sends 896 B to rank 1"):
        graph.validate()


def test_param_dlrm_et_structure(param_et: ExecutionGraph) -> None:
    rank0 = param_et.rank_nodes(0)
    kinds = {k: sum(1 for n in rank0 if n.kind == k) for k in ("host", "compute", "transfer", "collective")}
    assert kinds == {"host": 84, "compute": 178, "transfer": 11, "collective": 8}
    # aten::linear is the top-level op (its aten::t / aten::addmm children are folded into it).
    linear = [n for n in rank0 if n.name == "aten::linear"]
    assert len(linear) == 7 and not any(n.name == "aten::addmm" for n in rank0)
    assert all(n.stream is Stream.COMPUTE for n in linear)
    assert all(isinstance(n.op, Compute) and n.op.category == "gemm" and n.op.flops > 0 for n in linear)
    tbe = [n for n in rank0 if n.name.startswith("fbgemm::split_embedding_codegen_lookup")]
    assert len(tbe) == 1 and tbe[0].op.category == "embedding"
    # Backward ops (autograd thread) are on their own host lane and tagged as backward.
    assert {n.phase for n in rank0 if n.name == "aten::threshold_backward"} == {"backward"}
    # The allreduce of a gradient bucket depends on the op that wrote the gradient (data dependency).
    by_id = param_et.by_id
    ar = next(n for n in rank0 if n.name == "c10d::allreduce_")
    assert any(by_id[d].stream is Stream.COMPUTE for d in ar.deps)


def _synthetic_et(
    new_schema: bool, schema: str | None = None, parent_of: dict[int, int] | None = None
) -> dict:
    """A tiny ET: fill_ a CUDA tensor, mul it into another, add, a CPU op, in both layouts."""
    t100 = [10, 100, 0, 6, 4, "cuda:0"]
    t101 = [11, 101, 0, 6, 4, "cuda:0"]
    t102 = [12, 102, 0, 6, 4, "cuda:0"]
    rows = [
        # id, name, parent, rf_id, tid, op_schema, inputs, input_shapes, input_types,
        # outputs, output_shapes, output_types
        (1, "[pytorch|profiler|execution_trace|process]", 1, 0, 0, "", [], [], [], [], [], []),
        (2, "[pytorch|profiler|execution_trace|thread]", 1, 0, 1, "", [], [], [], [], [], []),
        (3, "## forward ##", 2, 1, 1, "", [], [], [], [], [], []),
        (4, "aten::empty", 3, 2, 1, "aten::empty(...) -> Tensor", [[2, 3]], [[[], []]],
         ["GenericList[Int,Int]"], [t100], [[2, 3]], ["Tensor(float)"]),
        (5, "aten::fill_", 3, 3, 1, "aten::fill_(Tensor(a!) self, Scalar value) -> Tensor(a!)", [t100, 1.0],
         [[2, 3], []], ["Tensor(float)", "Double"], [t100], [[2, 3]], ["Tensor(float)"]),
        (6, "aten::mul", 3, 4, 1, "aten::mul.Tensor(Tensor self, Tensor other) -> Tensor", [t100, t100],
         [[2, 3], [2, 3]], ["Tensor(float)", "Tensor(float)"], [t101], [[2, 3]], ["Tensor(float)"]),
        (7, "aten::item", 3, 5, 1, "aten::item(Tensor self) -> Scalar", [[13, 103, 0, 1, 8, "cpu"]], [[]],
         ["Tensor(long int)"], [3], [[]], ["Int"]),
        (8, "aten::add", 3, 6, 1, "aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor",
         [t101, t100, 1], [[2, 3], [2, 3], []], ["Tensor(float)", "Tensor(float)", "Int"], [t102], [[2, 3]],
         ["Tensor(float)"]),
        (9, "aten::view", 8, 7, 1, "aten::view(Tensor(a) self, SymInt[] size) -> Tensor(a)", [t101, [6]],
         [[2, 3], [[]]], ["Tensor(float)", "GenericList[Int]"], [[14, 101, 0, 6, 4, "cuda:0"]], [[6]],
         ["Tensor(float)"]),
    ]  # fmt: skip
    nodes = []
    for row in rows:
        nid, name, parent, rf, tid, op_schema, ins, ishapes, itypes, outs, oshapes, otypes = row
        parent = (parent_of or {}).get(nid, parent)
        if new_schema:
            attrs = [
                {"name": "rf_id", "type": "uint64", "value": rf},
                {"name": "tid", "type": "uint64", "value": tid},
                {"name": "op_schema", "type": "string", "value": op_schema},
            ]
            node = {"id": nid, "name": name, "ctrl_deps": parent, "attrs": attrs}
            node["inputs"] = {"values": ins, "shapes": ishapes, "types": itypes, "strides": []}
            node["outputs"] = {"values": outs, "shapes": oshapes, "types": otypes, "strides": []}
        else:
            node = {
                "id": nid,
                "name": name,
                "parent": parent,
                "rf_id": rf,
                "tid": tid,
                "op_schema": op_schema,
            }
            node.update(inputs=ins, input_shapes=ishapes, input_types=itypes)
            node.update(outputs=outs, output_shapes=oshapes, output_types=otypes)
        nodes.append(node)
    version = schema or ("1.1.1-chakra.0.0.4" if new_schema else "1.0.1")
    return {"schema": version, "pid": 1, "time": "", "start_ts": 0, "finish_ts": 1, "nodes": nodes}


@pytest.mark.parametrize("new_schema", [False, True], ids=["schema-1.0.1", "schema-1.1.1"])
def test_et_data_dependencies_by_hand(tmp_path: Path, new_schema: bool) -> None:
    path = write_json(tmp_path / "et.json", _synthetic_et(new_schema))
    graph = PyTorchETReader().read([path])
    graph.validate()
    by_name = {n.name: n for n in graph}
    # empty (metadata only) is dropped; view is folded into add; the rest are nodes.
    assert list(by_name) == ["aten::fill_", "aten::mul", "aten::item", "aten::add"]
    fill, mul, item, add = (by_name[k] for k in ("aten::fill_", "aten::mul", "aten::item", "aten::add"))
    assert fill.deps == ()
    assert mul.deps == (fill.id,)  # reads storage 100, last written by fill_
    assert item.stream is Stream.HOST and isinstance(item.op, Host) and item.deps == ()
    # add reads 101 (mul) and 100 (fill_), follows mul on the compute stream, and was launched after
    # the host op item on the same thread.
    assert set(add.deps) == {mul.id, fill.id, item.id}
    assert {fill.stream, mul.stream, add.stream} == {Stream.COMPUTE}
    assert isinstance(mul.op, Compute) and mul.op.bytes_read == 2 * 24 and mul.op.bytes_written == 24
    assert mul.op.shapes == ((2, 3), (2, 3)) and mul.op.category == "elementwise"
    assert graph.metadata["notes"] == ["rank 0: 1 metadata-only ops (views, empty, detach, ...) dropped"]


def test_et_both_schemas_give_the_same_graph(tmp_path: Path) -> None:
    old = PyTorchETReader().read([write_json(tmp_path / "old.json", _synthetic_et(False))])
    new = PyTorchETReader().read([write_json(tmp_path / "new.json", _synthetic_et(True))])
    assert old.nodes == new.nodes


def test_allgather_et_new_schema() -> None:
    graph = PyTorchETReader().read([ALLGATHER_ET])
    graph.validate()
    coll = [n for n in graph if isinstance(n.op, Collective)]
    # By hand: ten c10d::allgather_ of one float each (seq 12..21) over a 2-rank group (record_param_comms
    # group size 2); this file is rank 0, so the group's other half is missing.
    assert len(coll) == 10
    assert all(n.op.op is CollectiveOp.ALL_GATHER and n.op.bytes == 4 and n.op.group == (0, 1) for n in coll)
    assert [n.op.key for n in coll] == [f"world/seq{s}" for s in range(12, 22)]
    assert graph.ranks == 2 and graph.metadata["partial_collectives"] is True
    assert graph.metadata["schema_versions"] == ["1.0.2-chakra.0.0.4"]


def test_et_rank_from_file_name(tmp_path: Path) -> None:
    path = write_json(tmp_path / "trace-rank3.json", _synthetic_et(True))
    graph = PyTorchETReader().read([path])
    assert {n.rank for n in graph} == {3} and graph.ranks == 4


# -- ET + Kineto -----------------------------------------------------------------------------------


def test_generated_pair_joins_by_rf_id() -> None:
    graph = PyTorchETReader().read([GEN_ET, GEN_KINETO])  # the ET reader hands over to the join
    graph.validate()
    assert graph.metadata["format"] == "et_kineto"
    assert graph.metadata["schema_versions"] == ["1.1.1-chakra.0.0.4"]
    assert any("matched by rf_id" in note for note in graph.metadata["notes"])
    assert graph.metadata["join"]["ops_without_kineto_match"] == 0
    assert all(n.duration_s is not None and n.stream is Stream.HOST for n in graph)  # CPU-only run
    kineto = raw(GEN_KINETO)["traceEvents"]
    steps = [e for e in kineto if e.get("name", "").startswith("ProfilerStep#")]
    assert [(s["name"], s["duration_s"]) for s in graph.metadata["steps"]] == [
        (e["name"], pytest.approx(e["dur"] * 1e-6)) for e in steps
    ]
    names = {n.name for n in graph}
    assert {"aten::embedding_bag", "aten::bmm", "aten::linear", "aten::mm"} <= names
    # By hand: every top-level op's duration is its Kineto cpu_op "dur" (matched via rf_id).
    by_rf = {e["args"]["Record function id"]: e for e in kineto if e.get("cat") == "cpu_op"}
    et_nodes = raw(GEN_ET)["nodes"]
    first_bmm = min(
        (n for n in et_nodes if n["name"] == "aten::bmm"),
        key=lambda n: next(a["value"] for a in n["attrs"] if a["name"] == "rf_id"),
    )
    rf = next(a["value"] for a in first_bmm["attrs"] if a["name"] == "rf_id")
    bmm = min((n for n in graph if n.name == "aten::bmm"), key=lambda n: n.start_s or 0)
    assert bmm.duration_s == pytest.approx(by_rf[rf]["dur"] * 1e-6)


def test_generated_et_alone() -> None:
    graph = PyTorchETReader().read([GEN_ET])
    graph.validate()
    bmm = [n for n in graph if n.name == "aten::bmm"]
    # Two steps: the interaction's bmm forward, and two bmm in its backward (BmmBackward0), each step.
    assert len(bmm) == 6 and sum(n.phase == "backward" for n in bmm) == 4
    assert all(isinstance(n.op, Host) for n in bmm)
    assert all(n.stream is Stream.HOST for n in graph)  # a CPU trace: everything is host work


def _three_step_kineto(tmp_path: Path) -> Path:
    """Kineto: 3 profiler steps of 520 us, each an aten::mm (rf_id 10+s) launching a 500 us GEMM."""
    events = []
    for s in range(3):
        t = 520.0 * s
        mm = {"Input Dims": [[1024, 1024], [1024, 1024]], "Input type": ["float", "float"]}
        events += [
            xev("user_annotation", f"ProfilerStep#{s}", 1, t, 520),
            xev("cpu_op", "aten::mm", 1, t + 1, 20, {**mm, "Record function id": 10 + s}),
            xev("cuda_runtime", "cudaLaunchKernel", 1, t + 5, 5, {"correlation": s + 1}),
            xev("kernel", "ampere_sgemm_128x64_nn", 0, t + 12, 500, {"stream": 7, "correlation": s + 1}, 7),
            xev("cuda_runtime", "cudaDeviceSynchronize", 1, t + 25, 490, {"correlation": 50 + s}),
        ]
    info = {"rank": 0, "world_size": 1, "backend": "nccl"}
    return write_json(tmp_path / "kineto.json", {"traceEvents": events, "distributedInfo": info})


def _et_of_step(rf_ids: list[int]) -> dict:
    """An ET (schema 1.0.1) holding one aten::mm per rf_id."""
    root = {"tid": 1, "op_schema": "", "inputs": [], "input_shapes": [], "input_types": []}
    root.update(outputs=[], output_shapes=[], output_types=[])
    nodes = [
        {**root, "id": 1, "name": "[pytorch|profiler|execution_trace|process]", "parent": 1, "rf_id": 0},
        {**root, "id": 2, "name": "[pytorch|profiler|execution_trace|thread]", "parent": 1, "rf_id": 0},
    ]
    for i, rf in enumerate(rf_ids):
        tensor = lambda k: [k, k, 0, 1048576, 4, "cuda:0"]  # noqa: E731
        nodes.append(
            {
                **root,
                "id": 3 + i,
                "name": "aten::mm",
                "parent": 2,
                "rf_id": rf,
                "op_schema": "aten::mm(Tensor self, Tensor mat2) -> Tensor",
                "inputs": [tensor(10 * i + 1), tensor(10 * i + 2)],
                "input_shapes": [[1024, 1024], [1024, 1024]],
                "input_types": ["Tensor(float)", "Tensor(float)"],
                "outputs": [tensor(10 * i + 3)],
                "output_shapes": [[1024, 1024]],
                "output_types": ["Tensor(float)"],
            }
        )
    return {"schema": "1.0.1", "pid": 1, "time": "", "start_ts": 0, "finish_ts": 1, "nodes": nodes}


def test_join_counts_only_the_steps_the_et_covers(tmp_path: Path) -> None:
    from recsim.engine.replay import replay_keep

    kineto = _three_step_kineto(tmp_path)
    # The ET holds step 1's aten::mm only: its 500 us of work is one step's, not a third of three.
    graph = read_trace([write_json(tmp_path / "et.json", _et_of_step([11])), kineto])
    assert [s["name"] for s in graph.metadata["steps"]] == ["ProfilerStep#1"]
    assert any("the ET covers 1 of the 3 profiler steps" in n for n in graph.metadata["notes"])
    result = replay_keep(graph)
    assert result.steps == 1 and result.recorded_step_s == pytest.approx(520e-6)
    assert result.predicted_step_s == pytest.approx(520e-6, rel=0.02)  # was 195 us: -62 %
    # An ET of all three steps keeps all three, without a note.
    full = read_trace([write_json(tmp_path / "et3.json", _et_of_step([10, 11, 12])), kineto])
    assert len(full.metadata["steps"]) == 3
    assert not any("profiler steps" in n for n in full.metadata["notes"])


def _two_device_events() -> list[dict]:
    """One thread launches a 1000 us kernel on GPU 0 and one on GPU 1, both on CUDA stream 7."""
    mm = {"Input Dims": [[1024, 1024], [1024, 1024]], "Input type": ["float", "float"]}
    events = [xev("user_annotation", "ProfilerStep#1", 9, 0, 1100)]
    for device in (0, 1):
        t = 10.0 * device
        events += [
            xev("cpu_op", "aten::mm", 9, t + 1, 8, {**mm, "Record function id": 10 + device}),
            xev("cuda_runtime", "cudaLaunchKernel", 9, t + 2, 5, {"correlation": device + 1}),
            xev("kernel", "ampere_sgemm_128x64_nn", device, t + 10, 1000,
                {"stream": 7, "correlation": device + 1, "device": device}, 7),
        ]  # fmt: skip
    return [*events, xev("cuda_runtime", "cudaDeviceSynchronize", 9, 30, 1000, {"correlation": 3})]


def test_a_chrome_trace_in_array_form_is_detected_as_kineto(tmp_path: Path) -> None:
    # ``--format kineto`` read a top-level event list; detection refused it ("not a trace format").
    events = _two_device_events()
    bare = write_json(tmp_path / "array.json", events)
    told = read_trace([bare], "kineto")
    sniffed = read_trace([bare])
    assert sniffed.metadata["format"] == "kineto" and sniffed.nodes == told.nodes
    assert sniffed.nodes == read_trace([write_json(tmp_path / "obj.json", {"traceEvents": events})]).nodes
    # A list of something else is still no trace.
    with pytest.raises(TraceError, match="not a trace format recsim knows"):
        read_trace([write_json(tmp_path / "numbers.json", [1, 2, 3])])


def test_kineto_same_stream_id_on_two_devices_is_two_queues(tmp_path: Path) -> None:
    from recsim.engine.replay import replay_keep

    graph = read_trace([write_json(tmp_path / "twodev.json", {"traceEvents": _two_device_events()})])
    kernels = [n for n in graph if n.stream is Stream.COMPUTE]
    assert len(kernels) == 2 and kernels[0].lane != kernels[1].lane
    # The kernels overlapped on their two GPUs: a step of 1.1 ms, not 2.1 ms (one queue).
    assert replay_keep(graph).predicted_step_s == pytest.approx(1.1e-3, rel=0.02)


def test_join_same_stream_id_on_two_devices_is_two_queues(tmp_path: Path) -> None:
    kineto = write_json(tmp_path / "twodev.json", {"traceEvents": _two_device_events()})
    graph = read_trace([write_json(tmp_path / "et.json", _et_of_step([10, 11])), kineto])
    assert graph.metadata["format"] == "et_kineto"
    mms = [n for n in graph if n.name == "aten::mm" and n.stream is Stream.COMPUTE]
    assert len(mms) == 2 and mms[0].lane != mms[1].lane


def test_an_empty_et_beside_a_kineto_trace_is_refused_as_an_empty_et_alone(tmp_path: Path) -> None:
    et = write_json(tmp_path / "et.json", _et_of_step([]) | {"nodes": []})
    with pytest.raises(TraceError, match=r"et\.json: the trace holds no operations") as alone:
        read_trace([et])
    with pytest.raises(TraceError, match=r"et\.json: the trace holds no operations") as joined:
        read_trace([et, _three_step_kineto(tmp_path)])
    assert str(joined.value) == str(alone.value)


def test_simple_add_joins_by_name_and_order() -> None:
    graph = ETKinetoReader().read([SIMPLE_KINETO, SIMPLE_ET])  # order does not matter
    graph.validate()
    notes = graph.metadata["notes"]
    assert any("no 'Record function id'" in note and "(36 of 36, 100%)" in note for note in notes)
    gpu = [n for n in graph if n.stream is Stream.COMPUTE]
    # By hand: aten::rand x2 (uniform kernel 5 us each) and aten::add x2 (add kernel 3 us each).
    assert [(n.name, round(n.duration_s * 1e6)) for n in gpu] == [
        ("aten::rand", 5),
        ("aten::rand", 5),
        ("aten::add", 3),
        ("aten::add", 3),
    ]
    mul = [n for n in graph if n.name == "aten::mul"]
    assert [round(n.duration_s * 1e6) for n in mul] == [23555, 22411]  # cpu_op dur, CPU tensors
    assert all(n.stream is Stream.HOST for n in mul)


def test_param_dlrm_joined(param_et: ExecutionGraph) -> None:
    graph = read_trace(PARAM_ET + PARAM_KINETO)
    graph.validate()
    assert graph.metadata["format"] == "et_kineto"
    assert len(graph) > len(param_et)  # the ET's operators, and the CPU time between them
    assert sum(1 for n in graph if n.duration_s is not None) > 0.95 * len(graph)
    a2a = [n for n in graph if isinstance(n.op, Collective) and n.op.op is CollectiveOp.ALL_TO_ALL]
    assert len(a2a) == 40 and all(n.stream is Stream.COMM and n.duration_s for n in a2a)
    assert len(graph.metadata["steps"]) == 8
    assert any("matched ET nodes by name and order" in note for note in graph.metadata["notes"])


@pytest.fixture(scope="module")
def param_pair() -> tuple[ExecutionGraph, ExecutionGraph]:
    """(the ET + Kineto join, the Kineto traces alone) of the PARAM DLRM step."""
    return read_trace(PARAM_ET + PARAM_KINETO), read_trace(PARAM_KINETO)


def test_param_dlrm_join_keeps_the_host_time(param_pair: tuple[ExecutionGraph, ExecutionGraph]) -> None:
    joined, kineto = param_pair

    def host_s(graph: ExecutionGraph, rank: int) -> float:
        return math.fsum(n.duration_s or 0.0 for n in graph if n.rank == rank and n.stream is Stream.HOST)

    # Segments and CPU-only operators cover each rank's CPU busy time once, as the Kineto reader's
    # host nodes do (the ET's ops without a Kineto match add nothing: they have no duration).
    for rank in range(8):
        assert host_s(joined, rank) == pytest.approx(host_s(kineto, rank), rel=1e-9)
    # The same waits read from both (what `trace info` shows).
    assert joined.metadata["waits"] == kineto.metadata["waits"]
    assert joined.metadata["waits"]["cpu_waits_on_gpu"] == 80
    # Every GPU op whose kernels a matched operator launched waits for the CPU up to that launch.
    gpu = [n for n in joined if n.stream is not Stream.HOST and n.duration_s is not None]
    by_id = {n.id: n for n in joined}
    launched = [n for n in gpu if any(by_id[d].stream is Stream.HOST for d in n.deps)]
    assert len(launched) == len(gpu)


def test_param_dlrm_join_replays_like_its_kineto_traces(
    param_pair: tuple[ExecutionGraph, ExecutionGraph],
) -> None:
    from recsim.api import load_system
    from recsim.engine.replay import replay_keep, replay_reestimate

    joined, kineto = param_pair
    keep = replay_keep(kineto)
    # Both readings of the step replay alike (the join's GPU ops are its operators' kernels summed).
    assert replay_keep(joined).predicted_step_s == pytest.approx(keep.predicted_step_s, rel=0.01)
    # The ranks started their step up to 7.5 ms apart (ProfilerStep starts), so the recorded steps
    # (14.5-20.8 ms, mean 16.0) hold waits for the late ones in their collectives and syncs.
    # Replayed, the ranks start together: the waits are dependencies, not time, and the step lies
    # between the last rank's own (12.5 ms, it waited for no one) and the recorded mean.
    assert keep.recorded_step_s == pytest.approx(16.008e-3, rel=1e-3)
    assert 12.5e-3 < keep.predicted_step_s < 16.0e-3
    # Re-costing its GPU work on the V100 it ran on keeps it there (it had replayed to 1.3 ms,
    # -92 %, when the join dropped the CPU time of the operators that launched kernels).
    v100 = load_system("dgx-1-v100")
    assert v100.accelerator is not None
    again = replay_reestimate(joined, v100, v100.accelerator)
    assert again.predicted_step_s == pytest.approx(keep.predicted_step_s, rel=0.02)


# -- Chakra ----------------------------------------------------------------------------------------


def test_chakra_decodes(chakra: ExecutionGraph) -> None:
    assert len(chakra) == 3664  # SOURCE.md: 3,664 Node messages
    kinds = {k: sum(1 for n in chakra if n.kind == k) for k in ("host", "compute", "collective")}
    assert kinds == {"host": 2448, "compute": 1209, "collective": 7}
    coll = [n.op for n in chakra if isinstance(n.op, Collective)]
    # By hand (comm_type / comm_size attributes of the 7 GPU COMM_COLL nodes): 5 ALL_REDUCE, 2 BROADCAST.
    assert sorted(c.bytes for c in coll if c.op is CollectiveOp.ALL_REDUCE) == [
        8196000,
        9724160,
        26255360,
        26550272,
        31502336,
    ]
    assert sorted(c.bytes for c in coll if c.op is CollectiveOp.BROADCAST) == [424, 212480]
    assert all(n.duration_s is not None for n in chakra)
    assert chakra.metadata["chakra"]["schema"] == "1.0.1"


def test_chakra_durations_by_hand(chakra: ExecutionGraph) -> None:
    allreduce = [n for n in chakra if isinstance(n.op, Collective) and n.op.op is CollectiveOp.ALL_REDUCE]
    assert sorted(round(n.duration_s * 1e6) for n in allreduce) == [5327, 5572, 8178, 8512, 9093]


def test_chakra_plain_and_gzip_agree(tmp_path: Path, chakra: ExecutionGraph) -> None:
    plain = tmp_path / "chakra.0.et"
    plain.write_bytes(gzip.decompress(CHAKRA.read_bytes()))
    graph = read_trace([plain])  # sniffed by extension
    assert graph.nodes == chakra.nodes


# A minimal protobuf encoder for hand-made Chakra files.
def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes | int) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        assert isinstance(payload, int)
        return key + _varint(payload)
    assert isinstance(payload, bytes)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def _attr(name: str, number: int, wire: int, value: bytes | int) -> bytes:
    return _field(10, 2, _field(1, 2, name.encode()) + _field(number, wire, value))


def _chakra_node(
    nid: int, name: str, ntype: int, deps: list[int], dur: int, attrs: bytes = b"", packed=True
) -> bytes:
    body = _field(1, 0, nid) + _field(2, 2, name.encode()) + _field(3, 0, ntype)
    if deps and packed:
        body += _field(5, 2, b"".join(_varint(d) for d in deps))
    else:
        body += b"".join(_field(5, 0, d) for d in deps)
    body += _field(7, 0, dur) + attrs
    return _varint(len(body)) + body


def _chakra_file(*nodes: bytes) -> bytes:
    meta = _field(1, 2, b"0.0.4") + _field(2, 2, _field(1, 2, b"schema") + _field(29, 2, b"1.1.1"))
    return _varint(len(meta)) + meta + b"".join(nodes)


def test_chakra_hand_made_wire_format(tmp_path: Path) -> None:
    cpu = _attr("is_cpu_op", 27, 0, 1)
    gpu = _attr("is_cpu_op", 27, 0, 0) + _attr("tid", 9, 0, 7)
    coll = gpu + _attr("comm_type", 9, 0, 6) + _attr("comm_size", 9, 0, 4096)
    extras = (
        _attr("neg", 9, 0, -5)  # int64 -5: two's complement in a 10-byte varint
        + _attr("zig", 17, 0, 9)  # sint64 zigzag 9 -> -5
        + _attr("pi", 3, 1, struct_double(3.5))
        + _attr("dims", 10, 2, _field(1, 2, _varint(1) + _varint(300) + _varint(2)))  # packed int64 list
        + _attr("names", 30, 2, _field(1, 2, b"a") + _field(1, 2, b"bc"))  # string list
    )
    data = _chakra_file(
        _chakra_node(10, "aten::mm", 4, [], 12, cpu),
        _chakra_node(11, "meta", 1, [10], 0),  # METADATA: not a node; 13 inherits its dependency
        _chakra_node(12, "sm80_xmma_gemm", 4, [10], 30, gpu + extras, packed=False),
        _chakra_node(13, "ncclDevKernel_SendRecv", 7, [12, 11, 999], 50, coll),
    )
    path = tmp_path / "hand.1.et"  # rank 1 from the name
    path.write_bytes(data)
    meta, nodes = decode_chakra(path, data)
    assert meta == {"version": "0.0.4", "schema": "1.1.1"}
    assert nodes[2].attrs["neg"] == -5 and nodes[2].attrs["zig"] == -5 and nodes[2].attrs["pi"] == 3.5
    assert nodes[2].attrs["dims"] == [1, 300, 2] and nodes[2].attrs["names"] == ["a", "bc"]
    assert nodes[3].data_deps == [12, 11, 999]
    graph = ChakraReader().read([path])
    assert graph.ranks == 2 and graph.metadata["partial_collectives"] is True
    graph.validate()
    mm, gemm, a2a = graph.nodes
    assert (mm.stream, gemm.stream, a2a.stream) == (Stream.HOST, Stream.COMPUTE, Stream.COMM)
    assert gemm.deps == (mm.id,) and set(a2a.deps) == {gemm.id, mm.id}
    assert isinstance(a2a.op, Collective) and a2a.op.op is CollectiveOp.ALL_TO_ALL and a2a.op.bytes == 4096
    assert a2a.op.group == (0, 1) and a2a.duration_s == pytest.approx(50e-6)
    assert graph.metadata["notes"] == ["rank 1: 1 dependencies on nodes absent from hand.1.et dropped"]


def struct_double(value: float) -> bytes:
    import struct

    return struct.pack("<d", value)


# -- bad input -------------------------------------------------------------------------------------


def test_truncated_gzip(tmp_path: Path) -> None:
    data = SIMPLE_KINETO.read_bytes()
    path = tmp_path / "cut.json.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceError, match=r"cut\.json\.gz: corrupted or truncated gzip"):
        read_trace([path])


def test_truncated_json(tmp_path: Path) -> None:
    text = gzip.decompress(ALLGATHER_ET.read_bytes()).decode()
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(TraceError, match=r"cut\.json: invalid or truncated JSON: .+: line \d+ column \d+$"):
        read_trace([path])


def test_truncated_json_message_is_whole(tmp_path: Path) -> None:
    # json's ``msg`` alone ends mid-sentence ("Unterminated string starting at"): the position
    # follows it (a tester's find).
    path = tmp_path / "cut.json"
    path.write_text('{"traceEvents": [{"name": "ab')
    with pytest.raises(TraceError) as info:
        read_trace([path])
    assert str(info.value) == (
        f"{path}: invalid or truncated JSON: Unterminated string starting at: line 1 column 27"
    )


def test_not_a_trace(tmp_path: Path) -> None:
    path = write_json(tmp_path / "x.json", {"hello": 1})
    with pytest.raises(TraceError, match=r"x\.json: not a trace format recsim knows"):
        read_trace([path])
    with pytest.raises(TraceError, match=r"x\.json: not a PyTorch execution trace \(no 'nodes' list\)"):
        read_trace([path], "pytorch_et")
    with pytest.raises(TraceError, match=r"x\.json: not a Kineto/Chrome trace"):
        read_trace([path], "kineto")


def test_et_parent_cycle(tmp_path: Path) -> None:
    path = write_json(tmp_path / "cyc.json", _synthetic_et(False, parent_of={5: 6, 6: 5}))
    with pytest.raises(
        TraceError, match=r"cyc\.json: parent cycle: aten::fill_#5 -> aten::mul#6 -> aten::fill_#5"
    ):
        PyTorchETReader().read([path])


def test_chakra_dependency_cycle(tmp_path: Path) -> None:
    path = tmp_path / "cyc.0.et"
    path.write_bytes(_chakra_file(_chakra_node(1, "a", 4, [2], 1), _chakra_node(2, "b", 4, [1], 1)))
    with pytest.raises(TraceError, match=r"cyc\.0\.et: dependency cycle: a#0 -> b#1 -> a#0"):
        read_trace([path])


def test_graph_cycle_and_dangling_dependency() -> None:
    op = Host(op="x")
    cyclic = ExecutionGraph(
        1, [Node(0, 0, "a", Stream.HOST, op, deps=(1,)), Node(1, 0, "b", Stream.HOST, op, deps=(0,))]
    )
    with pytest.raises(TraceError, match=r"dependency cycle: .*a#0"):
        cyclic.validate()
    dangling = ExecutionGraph(1, [Node(0, 0, "a", Stream.HOST, op, deps=(7,))])
    with pytest.raises(TraceError, match=r"node a#0 depends on missing node 7"):
        dangling.validate()


def test_et_dangling_parent(tmp_path: Path) -> None:
    path = write_json(tmp_path / "dang.json", _synthetic_et(True, parent_of={6: 999}))
    with pytest.raises(
        TraceError, match=r"dang\.json: node 6 \('aten::mul'\) has parent 999, which is not in the trace"
    ):
        PyTorchETReader().read([path])


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_chakra_cut_in_the_middle(tmp_path: Path, cut: float) -> None:
    data = gzip.decompress(CHAKRA.read_bytes())
    path = tmp_path / "cut.0.et"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(TraceError, match=r"cut\.0\.et: corrupted Chakra trace at byte \d+: .*truncated"):
        ChakraReader().read([path])


def test_chakra_asked_of_a_json_trace_says_it_is_json_and_names_its_format(tmp_path: Path) -> None:
    # A tester's find: --format chakra on a Kineto file said "corrupted Chakra trace at byte 1".
    kineto = next((DATA / "param_dlrm_kineto").glob("worker0_*.json.gz"))
    with pytest.raises(TraceError) as info:
        read_trace([kineto], "chakra")
    assert str(info.value) == (
        f"{kineto}: not a Chakra protobuf trace (.et): JSON text of a kineto trace; give --format kineto, "
        "or leave --format out to detect it"
    )
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    with pytest.raises(
        TraceError, match=r"other\.json: not a Chakra protobuf trace \(\.et\): JSON text of no "
    ):
        read_trace([other], "chakra")


def test_chakra_garbage(tmp_path: Path) -> None:
    path = tmp_path / "bad.0.et"
    path.write_bytes(b"\x05\x0f\xff\xff\xff\xff")  # a 5-byte message whose key has wire type 7
    with pytest.raises(
        TraceError, match=r"bad\.0\.et: corrupted Chakra trace at byte 1: unsupported wire type 7"
    ):
        ChakraReader().read([path])
    path.write_bytes(b"")
    with pytest.raises(TraceError, match=r"bad\.0\.et: empty Chakra trace"):
        ChakraReader().read([path])


def test_unknown_et_schema_warns_then_reads(tmp_path: Path) -> None:
    path = write_json(tmp_path / "future.json", _synthetic_et(True, schema="2.0.0-chakra.9"))
    with pytest.warns(UserWarning, match=r"future\.json: unknown PyTorch ET schema version '2.0.0-chakra.9'"):
        graph = read_trace([path])
    graph.validate()
    assert [n.name for n in graph] == ["aten::fill_", "aten::mul", "aten::item", "aten::add"]


def test_mismatched_pairs(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"one Kineto trace per ET file \(got 2 ET, 1 Kineto\)"):
        ETKinetoReader().read([SIMPLE_ET, GEN_ET, SIMPLE_KINETO])


def test_two_files_one_rank(tmp_path: Path) -> None:
    a = write_json(tmp_path / "a_rank0.json", _synthetic_et(True))
    b = write_json(tmp_path / "b_rank0.json", _synthetic_et(True))
    with pytest.raises(TraceError, match=r"b_rank0\.json: rank 0 is also the rank of .*a_rank0\.json"):
        PyTorchETReader().read([a, b])


# -- registry and summary --------------------------------------------------------------------------


def test_registry_has_every_reader() -> None:
    read_trace([SIMPLE_ET])  # loads the built-in readers
    assert {"pytorch_et", "kineto", "et_kineto", "chakra", "native"} <= set(READERS)
    assert all(READERS[name].description for name in READERS)


def test_critical_path_and_summary_by_hand() -> None:
    def node(i: int, stream: Stream, op: Any, deps: tuple[int, ...], dur: float | None) -> Node:
        return Node(i, 0, f"n{i}", stream, op, deps=deps, duration_s=dur)

    mm = Compute(op="mm", category="gemm")
    coll = Collective(op=CollectiveOp.ALL_REDUCE, key="k", group=(0,), bytes=1000.0)
    graph = ExecutionGraph(
        1,
        [
            node(0, Stream.HOST, Host(op="launch"), (), 1.0),
            node(1, Stream.COMPUTE, mm, (0,), 5.0),
            node(2, Stream.COMM, coll, (0,), 2.0),
            node(3, Stream.COMPUTE, mm, (1, 2), None),  # no duration: weighs 0
            node(4, Stream.COPY, Transfer(src="hbm", dst="host", bytes=8), (3,), 0.5),
        ],
    )
    length, path = critical_path(graph)
    assert length == 6.5 and path == [0, 1, 3, 4]
    info = trace_info(graph)
    assert info["critical_path_s"] == 6.5 and info["critical_path_nodes"] == 4
    assert info["time_by_category_s"] == {"gemm": 5.0, "communication": 2.0, "host": 1.0, "memory": 0.5}
    assert info["time_by_stream_s"] == {"compute": 5.0, "comm": 2.0, "host": 1.0, "copy": 0.5}
    assert info["collectives"] == [{"op": "all_reduce", "count": 1, "bytes": 1000.0, "time_s": 2.0}]
    assert info["top_kernels"][0] == {"name": "n1", "count": 1, "total_s": 5.0}
    assert "steps" not in info and info["nodes_with_duration"] == 4


def test_critical_path_follows_the_streams_order() -> None:
    # Two kernels on one stream and no edge between them (as a Chakra trace records them): the
    # stream runs them one after the other, so the path holds both.
    mm = Compute(op="mm", category="gemm")
    graph = ExecutionGraph(
        1,
        [
            Node(0, 0, "a", Stream.COMPUTE, mm, duration_s=3.0),
            Node(1, 0, "b", Stream.COMPUTE, mm, duration_s=4.0),
            Node(2, 0, "h", Stream.HOST, Host(op="x"), duration_s=5.0),
        ],
    )
    assert critical_path(graph) == (7.0, [0, 1])
    # A dependency on a node queued later on the same stream can never be met: named, not hung.
    stuck = ExecutionGraph(
        1,
        [
            Node(0, 0, "a", Stream.COMPUTE, mm, deps=(1,), duration_s=1.0),
            Node(1, 0, "b", Stream.COMPUTE, mm, duration_s=1.0),
        ],
    )
    with pytest.raises(TraceError, match=r"form a cycle: a \(id 0, rank 0, compute\), b \(id 1"):
        critical_path(stuck)


def test_chakra_critical_path_covers_its_compute_stream(chakra: ExecutionGraph) -> None:
    from recsim.engine.replay import replay_keep

    info = trace_info(chakra)
    assert info["critical_path_s"] >= info["time_by_stream_s"]["compute"]
    assert info["critical_path_s"] == pytest.approx(replay_keep(chakra).predicted_step_s, rel=0.02)


def test_short_kernel_name() -> None:
    assert short_kernel_name("void at::native::(anonymous namespace)::k<float, 2>(int, float*)") == (
        "at::native::(anonymous namespace)::k<float, 2>"
    )
    assert short_kernel_name("ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t(ncclWorkElem)") == (
        "ncclKernel_SendRecv_RING_SIMPLE_Sum_int8_t"
    )
    assert short_kernel_name("Memcpy HtoD (Pinned -> Device)") == "Memcpy HtoD (Pinned -> Device)"
    assert len(short_kernel_name("x" * 300)) == 100


def test_summary_of_the_param_set_names_its_ranks_and_critical_path(param_et: ExecutionGraph) -> None:
    # No time bound here (speed belongs in benchmarks/, not in tests on shared machines).
    info = trace_info(param_et)
    assert info["ranks"] == 8 and math.isfinite(info["critical_path_s"])


@pytest.mark.parametrize(
    "paths", [[ALLGATHER_ET], [SIMPLE_ET, SIMPLE_KINETO], [CHAKRA]], ids=["et", "joined", "chakra"]
)
def test_read_graphs_round_trip_through_the_native_format(tmp_path: Path, paths: list[Path]) -> None:
    from recsim.graph.native import write_graph

    graph = read_trace(paths)
    out = tmp_path / "graph.json.gz"
    write_graph(graph, out)
    back = read_trace([out])  # sniffed as native, not as a PyTorch ET (both have "schema" and "nodes")
    assert back.nodes == graph.nodes and back.ranks == graph.ranks
    assert back.metadata == json.loads(json.dumps(graph.metadata))


# ------------------------------------------------------------------ files that are not one run's


PARAM_ET0 = DATA / "param_dlrm_et" / "dlrm_eg_0.json.gz"


def _kineto_worker(rank: int) -> Path:
    return next((DATA / "param_dlrm_kineto").glob(f"worker{rank}_*"))


def test_an_et_beside_another_programs_kineto_trace_is_refused() -> None:
    # 14 of the DLRM ET's 1672 operators are in the add program's trace: it replayed at 19.8 s.
    with pytest.raises(TraceError, match=r"holds 14 of the 1672 operators of .*dlrm_eg_0.*not the same run"):
        read_trace([PARAM_ET0, DATA / "simple_add_kineto.json.gz"])


def test_an_et_beside_another_ranks_kineto_trace_is_refused() -> None:
    # Both files say their rank (0 and 3): pairing them would replay rank 3's durations as rank 0's.
    with pytest.raises(
        TraceError, match=r"different ranks .*dlrm_eg_0.json.gz is rank 0.*worker3_.* is rank 3"
    ):
        read_trace([PARAM_ET0, _kineto_worker(3)])


def _with_info(tmp_path: Path, rank: int, world: int) -> Path:
    data = json.loads(gzip.decompress(_kineto_worker(1).read_bytes()))
    data["distributedInfo"].update(rank=rank, world_size=world)
    path = tmp_path / f"worker{rank}_edited.pt.trace.json"
    path.write_text(json.dumps(data))
    return path


def test_a_rank_outside_its_declared_job_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="rank 9 is outside its job of 8 ranks"):
        read_trace([_kineto_worker(0), _with_info(tmp_path, 9, 8)])
    with pytest.raises(TraceError, match=r"declares a job of 4 ranks, .* one of 8"):
        read_trace([_kineto_worker(0), _with_info(tmp_path, 1, 4)])


def test_a_recsim_timeline_among_the_traces_is_refused_wherever_it_is(tmp_path: Path) -> None:
    timeline = tmp_path / "sim.trace.json"
    timeline.write_text(json.dumps({"traceEvents": [], "otherData": {"recsim": "0.1.0"}}))
    with pytest.raises(TraceError, match="a Chrome timeline written by recsim"):
        read_trace([_kineto_worker(0), timeline])


# -- garbage refused, odd input noted (a tester's finds) ---------------------------------------------


def _kineto_step(
    op_args: dict | None = None,
    kernel_args: dict | None = None,
    ts: float = 1000.0,
    extra: list | None = None,
) -> dict:
    """One ProfilerStep of rank 0 of a two-rank job: an addmm launching a GEMM, and an all_reduce."""
    addmm = {"Input Dims": [[256], [512, 1024], [1024, 256]], "Input type": ["float"] * 3, **(op_args or {})}
    nccl = {
        "stream": 20,
        "correlation": 2,
        "Collective name": "all_reduce",
        "In msg nelems": 1024,
        "Out msg nelems": 1024,
        "Group size": 2,
        "dtype": "Float",
        "Process Group Name": "0",
        "Process Group Ranks": "[0, 1]",
        **(kernel_args or {}),
    }
    events = [
        xev("user_annotation", "ProfilerStep#0", 1, ts, 100),
        xev("cpu_op", "aten::addmm", 1, ts + 5, 20, addmm),
        xev("cuda_runtime", "cudaLaunchKernel", 1, ts + 10, 5, {"correlation": 1}),
        xev("kernel", "ampere_sgemm_128x64_tn", 0, ts + 20, 50, {"stream": 7, "correlation": 1}, tid=7),
        xev("cuda_runtime", "cudaLaunchKernel", 1, ts + 80, 3, {"correlation": 2}),
        xev("kernel", "ncclKernel_AllReduce_RING_LL_Sum_float", 0, ts + 85, 10, nccl, tid=20),
        *(extra or []),
    ]
    return {"traceEvents": events, "distributedInfo": {"rank": 0, "world_size": 2}}


def test_an_et_operator_that_is_its_own_parent_is_a_parent_cycle(tmp_path: Path) -> None:
    # The process root (node 1) is its own parent in PyTorch's ETs, and stays a root; an operator
    # that is its own parent had been read as a root too, where a two-node cycle is refused.
    for new_schema in (False, True):
        path = write_json(tmp_path / "et.json", _synthetic_et(new_schema, parent_of={6: 6}))
        with pytest.raises(TraceError, match=r"et.json: node 6 \('aten::mul'\) is its own parent"):
            PyTorchETReader().read([path])


def test_a_cut_off_or_contradicting_process_group_is_refused(tmp_path: Path) -> None:
    from recsim.graph.readers._common import parse_int_list

    assert parse_int_list("[0, 1, 2") is None and parse_int_list("[0, 1]") == [0, 1]
    cut = write_json(tmp_path / "cut.json", _kineto_step(kernel_args={"Process Group Ranks": "[0, 1, 2"}))
    with pytest.raises(
        TraceError, match=r"cut.json: traceEvents\[5\] .*args.Process Group Ranks '\[0, 1, 2'"
    ):
        KinetoReader().read([cut])
    three = write_json(
        tmp_path / "three.json", _kineto_step(kernel_args={"Process Group Ranks": "[0, 1, 2]"})
    )
    with pytest.raises(TraceError, match=r"names 3 ranks, its Group size is 2"):
        KinetoReader().read([three])
    # A list PyTorch cut short itself ("...") and an empty one are not known: no error.
    KinetoReader().read(
        [write_json(tmp_path / "ok.json", _kineto_step(kernel_args={"Process Group Ranks": "[]"}))]
    )


@pytest.mark.parametrize(
    ("op_args", "kernel_args", "message"),
    [
        (
            {"Input Dims": [[256], [10**12, 10**12], [10**12, 256]]},
            {},
            r"args.Input Dims\[1\] .* 1e\+24 elements",
        ),
        ({"Input Dims": [[-1, 5], [5, 3]]}, {}, r"args.Input Dims\[0\] \[-1, 5\] .*a negative dimension"),
        ({}, {"In msg nelems": 10**18}, r"args.In msg nelems 1000000000000000000: expected a count"),
        ({}, {"Out msg nelems": -5}, r"args.Out msg nelems -5: expected a count"),
    ],
    ids=["huge-dims", "negative-dims", "huge-message", "negative-message"],
)
def test_kineto_sizes_no_memory_holds_are_refused(
    tmp_path: Path, op_args: dict, kernel_args: dict, message: str
) -> None:
    # Costed as they were, they gave steps of 10^13 s (2.7e13 s, 4.4e6 s) without a word.
    path = write_json(tmp_path / "t.json", _kineto_step(op_args, kernel_args))
    with pytest.raises(TraceError, match=r"t.json: traceEvents\[\d\] \('[^']+'\): " + message):
        KinetoReader().read([path])


def test_timestamps_that_cannot_hold_microseconds_are_refused(tmp_path: Path) -> None:
    path = write_json(tmp_path / "ts.json", _kineto_step(ts=1e300))
    with pytest.raises(
        TraceError, match=r"ts.json: traceEvents\[0\] \('ProfilerStep#0'\): 'ts' 1e\+300 is past"
    ):
        KinetoReader().read([path])
    # Microseconds since the epoch (1.7e15, a double's spacing 0.25 us) are read as before.
    graph = KinetoReader().read([write_json(tmp_path / "epoch.json", _kineto_step(ts=1.7e15))])
    assert graph.metadata["steps"][0]["duration_s"] == pytest.approx(100e-6)


def test_profiler_steps_of_one_thread_outside_each_other_and_with_a_length_count(tmp_path: Path) -> None:
    from recsim.engine.replay import replay_keep

    # A second thread's ProfilerStep (here one across the main thread's two) counted the steps again.
    two = _kineto_step(extra=[xev("user_annotation", "ProfilerStep#1", 1, 1110, 100)])
    two["traceEvents"].append(xev("user_annotation", "ProfilerStep#0", 1, 1000, 300, tid=2))
    graph = KinetoReader().read([write_json(tmp_path / "two.json", two)])
    assert [s["name"] for s in graph.metadata["steps"]] == ["ProfilerStep#0", "ProfilerStep#1"]
    assert (
        "ProfilerStep markers on 2 threads: thread 1's (pid 1) 2 are the steps" in graph.metadata["notes"][0]
    )
    # A step marked inside another is part of it.
    nested = _kineto_step(extra=[xev("user_annotation", "ProfilerStep#99", 1, 1010, 10)])
    graph = KinetoReader().read([write_json(tmp_path / "nested.json", nested)])
    assert [s["name"] for s in graph.metadata["steps"]] == ["ProfilerStep#0"]
    assert graph.metadata["notes"][0].endswith(
        "1 ProfilerStep marker inside another step's, left out: part of that step"
    )
    # A marker of no length times no step: its recorded step had read 0 s, the error n/a, unsaid.
    zero = _kineto_step()
    zero["traceEvents"][0]["dur"] = 0
    graph = KinetoReader().read([write_json(tmp_path / "zero.json", zero)])
    assert graph.metadata["steps"] == []
    assert "1 ProfilerStep marker of no length, left out" in graph.metadata["notes"][0]
    result = replay_keep(graph)
    assert result.recorded_step_s is None and any("of no length" in n for n in result.notes)


def _et_mm(shapes: Any, types: list[str] | None = None) -> dict:
    """A new-schema ET of one bf16 4096^3 aten::mm on the GPU."""
    types = types or ["Tensor(c10::BFloat16)"] * 2
    values = [[103, 103, 0, 4096 * 4096, 2, "cuda:0"], [203, 203, 0, 4096 * 4096, 2, "cuda:0"]]
    out = {"values": [[303, 303, 0, 4096 * 4096, 2, "cuda:0"]], "shapes": [[4096, 4096]], "types": types[:1]}
    node = {
        "id": 3,
        "name": "aten::mm",
        "ctrl_deps": 1,
        "attrs": [{"name": "rf_id", "type": "uint64", "value": 1}],
        "inputs": {"values": values, "shapes": shapes, "types": types},
        "outputs": out,
    }
    root = {"id": 1, "name": "[pytorch|profiler|execution_trace|process]", "ctrl_deps": 1, "attrs": []}
    return {
        "schema": "1.1.1-chakra.0.0.4",
        "pid": 1,
        "time": "",
        "start_ts": 0,
        "finish_ts": 1,
        "nodes": [root, node],
    }


def test_et_shapes_no_tensor_has_are_refused_unreadable_ones_noted(tmp_path: Path) -> None:
    for name, shapes, message in (
        ("neg", [[-4096, 4096], [4096, 4096]], r"a negative dimension"),
        ("huge", [[10**9, 10**9], [4096, 4096]], r"1e\+18 elements"),
    ):
        path = write_json(tmp_path / f"{name}.json", _et_mm(shapes))
        with pytest.raises(
            TraceError, match=rf"{name}.json: nodes\[1\] \(id 3, 'aten::mm'\): inputs.shapes\[0\] .*{message}"
        ):
            PyTorchETReader().read([path])
    # Shapes that are not a list: costed from the bytes (no FLOPs), and said so; it had been silent.
    graph = PyTorchETReader().read([write_json(tmp_path / "str.json", _et_mm("bad"))])
    (mm,) = graph.nodes
    assert isinstance(mm.op, Compute) and mm.op.flops == 0 and mm.op.bytes_read == 2 * 4096 * 4096 * 2
    assert graph.metadata["notes"][0].startswith("rank 0: 1 node with unreadable tensor shapes (nodes[1]")


def test_an_unknown_et_dtype_is_taken_by_its_element_size_and_said(tmp_path: Path) -> None:
    # 'Tensor(weird)' of 2-byte elements had been costed as fp32, ~6x slower than the bf16 it is.
    shapes = [[4096, 4096], [4096, 4096]]
    graph = PyTorchETReader().read([write_json(tmp_path / "w.json", _et_mm(shapes, ["Tensor(weird)"] * 2))])
    (mm,) = graph.nodes
    assert isinstance(mm.op, Compute) and mm.op.dtype == "bf16"
    assert graph.metadata["notes"] == [
        "rank 0: tensors of an unknown dtype 'weird' (3): taken as the float type of their element size "
        "(bf16 for 2 bytes, fp32 for 4, fp64 for 8; else fp32)"
    ]
    # An undefined tensor (an optional argument not given) is no unknown dtype.
    graph = PyTorchETReader().read(
        [
            write_json(
                tmp_path / "u.json",
                _et_mm(shapes, ["Tensor(c10::BFloat16)", "Tensor(nullptr (uninitialized))"]),
            )
        ]
    )
    assert "notes" not in graph.metadata


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"rank": 0, "world_size": 0}, "distributedInfo.world_size: expected a positive integer, got 0"),
        (
            {"rank": 0, "world_size": "eight"},
            "distributedInfo.world_size: expected a positive integer, got 'eight'",
        ),
        ({"rank": "0", "world_size": 8}, "distributedInfo.rank: expected a non-negative integer, got '0'"),
        ({"rank": -1, "world_size": 8}, "distributedInfo.rank: expected a non-negative integer, got -1"),
        ({"rank": True, "world_size": 8}, "distributedInfo.rank: expected a non-negative integer, got True"),
        ([0, 8], "distributedInfo: expected an object (rank, world_size), got a list"),
    ],
)
@pytest.mark.parametrize("kind", ["kineto", "pytorch_et"])
def test_a_malformed_distributed_info_names_its_key(
    tmp_path: Path, info: Any, expected: str, kind: str
) -> None:
    # Ignored, it moved the rank and the job's size (8 ranks read as 4, the power 24 % lower: a
    # tester's find). A trace without one is read as before.
    path = _three_step_kineto(tmp_path)
    data = json.loads(path.read_text())
    if kind == "pytorch_et":
        path, data = tmp_path / "et.json", _et_of_step([10])
    data["distributedInfo"] = info
    write_json(path, data)
    with pytest.raises(TraceError) as error:
        read_trace([path], kind)
    assert str(error.value) == f"{path}: {expected}"
    del data["distributedInfo"]
    write_json(path, data)
    assert read_trace([path], kind).nodes


# -- mixed inputs (a tester's finds) ----------------------------------------------------------------


PARAM_PAIR_FILES = [
    *sorted((DATA / "param_dlrm_et").iterdir()),
    *sorted((DATA / "param_dlrm_kineto").iterdir()),
]


@pytest.mark.parametrize(("fmt", "alone"), [("kineto", "Kineto"), ("pytorch_et", "execution-trace")])
def test_a_single_format_named_for_an_et_and_kineto_pair_is_refused(fmt: str, alone: str) -> None:
    # --format kineto / pytorch_et was ignored: the pair was read joined all the same.
    with pytest.raises(TraceError) as info:
        read_trace(PARAM_PAIR_FILES, fmt)
    assert str(info.value) == (
        f"--format {fmt}: the files hold PyTorch execution traces and Kineto traces, which are read "
        f"joined: give --format et_kineto, or leave --format out (or give only the {alone} files)"
    )


def test_the_join_s_own_format_named_for_an_et_and_kineto_pair_reads_them_joined() -> None:
    # The format the refusals above ask for (once: the join of the PARAM step reads in 5-15 s; it
    # was the last line of each of them).
    assert read_trace(PARAM_PAIR_FILES, "et_kineto").metadata["format"] == "et_kineto"


@pytest.mark.parametrize("chakra_first", [True, False])
def test_a_chakra_file_beside_a_kineto_file_is_a_mixed_formats_error(chakra_first: bool) -> None:
    # It was "not UTF-8 JSON text" from the Kineto reader reading the protobuf.
    chakra, kineto = DATA / "chakra.0.et.gz", DATA / "simple_add_kineto.json.gz"
    paths = [chakra, kineto] if chakra_first else [kineto, chakra]
    with pytest.raises(
        TraceError, match=rf"^mixed formats: {chakra} is a Chakra execution trace \(\.et\) and {kineto}"
    ):
        read_trace(paths)


def _rank_file(tmp_path: Path, rank: int, gpu: str, steps: bool = True) -> Path:
    events = [
        xev("cpu_op", "aten::mm", 1, 10, 20),
        xev("cuda_runtime", "cudaLaunchKernel", 1, 12, 5, {"correlation": 1}),
        xev("kernel", "ampere_sgemm_128x64_nn", 0, 20, 100, {"stream": 7, "correlation": 1}, 7),
    ]
    if steps:
        events.insert(0, xev("user_annotation", "ProfilerStep#0", 1, 0, 200))
    device = [{"id": 0, "name": gpu, "totalGlobalMem": 85198045184, "computeMajor": 8, "computeMinor": 0}]
    data = {
        "traceEvents": events,
        "distributedInfo": {"rank": rank, "world_size": 2},
        "deviceProperties": device,
    }
    return write_json(tmp_path / f"r{rank}.json", data)


def test_rank_files_of_two_gpu_models_are_refused_naming_both(tmp_path: Path) -> None:
    # The second file's durations were read as the first file's GPU's.
    a100 = _rank_file(tmp_path, 0, "NVIDIA A100-SXM4-80GB")
    h100 = _rank_file(tmp_path, 1, "NVIDIA H100 80GB HBM3")
    with pytest.raises(TraceError) as info:
        read_trace([a100, h100])
    assert str(info.value) == (
        f"{h100}: recorded on 'NVIDIA H100 80GB HBM3', {a100} on 'NVIDIA A100-SXM4-80GB': a replay "
        "reads all ranks' durations as one GPU's; give the traces of one GPU model"
    )


def test_a_rank_file_without_profiler_steps_is_named_in_a_note(tmp_path: Path) -> None:
    # It dropped out of the recorded step's mean without a word.
    marked = _rank_file(tmp_path, 0, "NVIDIA A100-SXM4-80GB")
    unmarked = _rank_file(tmp_path, 1, "NVIDIA A100-SXM4-80GB", steps=False)
    notes = read_trace([marked, unmarked]).metadata["notes"]
    assert (
        f"rank 1: {unmarked} marks no profiler steps (ProfilerStep#N): the step times are the other ranks'"
    ) in notes
    assert not any("marks no profiler steps" in n for n in read_trace([marked]).metadata.get("notes", []))


def test_an_et_kineto_rank_whose_kineto_marks_no_steps_is_noted(tmp_path: Path) -> None:
    # The joined reader says which rank's Kineto file marks no profiler steps (``unmarked_notes``),
    # as the Kineto reader does: its steps count in neither the recorded nor the predicted step.
    kineto = []
    for path in PARAM_KINETO:
        copy = tmp_path / path.name
        data = json.loads(gzip.decompress(path.read_bytes()))
        if path == PARAM_KINETO[1]:
            data["traceEvents"] = [
                e for e in data["traceEvents"] if not str(e.get("name", "")).startswith("ProfilerStep#")
            ]
        copy.write_bytes(gzip.compress(json.dumps(data).encode()))
        kineto.append(copy)
    graph = read_trace(PARAM_ET + kineto)
    assert graph.metadata["format"] == "et_kineto"
    unmarked = [n for n in graph.metadata["notes"] if "marks no profiler steps" in n]
    assert len(unmarked) == 1 and unmarked[0].endswith(": the step times are the other ranks'"), unmarked
    assert str(kineto[1]) in unmarked[0]


@pytest.mark.parametrize(
    "paths",
    [[SIMPLE_KINETO], [SIMPLE_ET], [SIMPLE_ET, SIMPLE_KINETO], [SIMPLE_KINETO, SIMPLE_ET]],
    ids=["kineto", "et", "et+kineto", "kineto+et"],
)
def test_each_file_is_parsed_once(paths: list[Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The format detection's document is handed to the reader: a recsys trace was parsed twice
    # (2-3 s each of a 10 s replay, a tester's find), and both copies were held at once.
    import recsim.graph.native as native

    real = native.load_json
    calls: list[Path] = []

    def counting(path: Path, **kwargs: Any) -> Any:
        calls.append(path)
        return real(path, **kwargs)

    expected = read_trace(paths)
    monkeypatch.setattr(native, "load_json", counting)
    graph = read_trace(paths)
    assert sorted(calls) == sorted(paths)
    assert len(graph.nodes) == len(expected.nodes)
    assert [n.name for n in graph.nodes] == [n.name for n in expected.nodes]


def test_a_native_graph_is_parsed_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import recsim.graph.native as native

    path = tmp_path / "g.json"
    native.write_graph(read_trace([SIMPLE_KINETO]), path)
    real = native.load_json
    calls: list[Path] = []

    def counting(p: Path, **kwargs: Any) -> Any:
        calls.append(p)
        return real(p, **kwargs)

    monkeypatch.setattr(native, "load_json", counting)
    graph = read_trace([path])
    assert calls == [path]
    assert len(graph.nodes) == len(read_trace([SIMPLE_KINETO]).nodes)
