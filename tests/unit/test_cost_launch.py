"""The GPU-side launch gap (``recsim.cost.launch``) re-measured on the shipped traces, and the device
YAMLs that quote it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from recsim.cost.launch import (
    elementwise_durations_us,
    elementwise_floor_s,
    median_queued_gap_s,
    queued_gaps_s,
)
from recsim.graph.readers.kineto import KinetoTrace, parse_kineto
from recsim.hardware.devices import Accelerator
from recsim.hardware.library import HardwareLibrary

DATA = Path(__file__).resolve().parents[1] / "data" / "traces"


def _launch_s(name: str) -> float:
    device = HardwareLibrary().device("accelerator", name)
    assert isinstance(device, Accelerator)
    return device.kernel_launch_s


def _parse(path: Path) -> KinetoTrace:
    with gzip.open(path, "rt") as handle:
        return parse_kineto(path, json.load(handle))


def _event(name: str, cat: str, ts: float, dur: float, correlation: int, tid: int) -> dict[str, object]:
    return {
        "ph": "X",
        "name": name,
        "cat": cat,
        "pid": 0,
        "tid": tid,
        "ts": ts,
        "dur": dur,
        "args": {"correlation": correlation},
    }


def test_only_queued_pairs_count() -> None:
    # Kernel b was launched (call ends at 3 us) long before a ended (20 us): queued, gap 2 us.
    # Kernel c's launch returned at 30 us, after b ended (25 us): the GPU waited for the host.
    events = [
        _event("cudaLaunchKernel", "cuda_runtime", 0, 1, 1, tid=9),
        _event("cudaLaunchKernel", "cuda_runtime", 2, 1, 2, tid=9),
        _event("cudaLaunchKernel", "cuda_runtime", 28, 2, 3, tid=9),
        _event("a", "kernel", 5, 15, 1, tid=7),
        _event("b", "kernel", 22, 3, 2, tid=7),
        _event("c", "kernel", 33, 1, 3, tid=7),
    ]
    trace = parse_kineto(Path("t.json"), {"traceEvents": events})
    assert queued_gaps_s(trace) == pytest.approx([2e-6])


def test_a100_trace_gap_is_the_yaml_figure() -> None:
    trace = _parse(DATA / "recsys_a100_8rank_rank3_control.json.gz")
    gaps = queued_gaps_s(trace)
    assert len(gaps) == 6018
    assert median_queued_gap_s([trace]) == pytest.approx(2e-6)
    for name in ("a100-sxm4-40gb", "a100-sxm4-80gb", "h100-sxm5-80gb", "h100-pcie-80gb", "h200-sxm5-141gb"):
        assert _launch_s(name) == pytest.approx(2e-6), name


def test_v100_traces_gap_is_the_yaml_figure() -> None:
    traces = [_parse(p) for p in sorted((DATA / "param_dlrm_kineto").glob("*.json.gz"))]
    assert sum(len(queued_gaps_s(t)) for t in traces) == 246
    assert median_queued_gap_s(traces) == pytest.approx(1e-6)
    assert _launch_s("v100-sxm2-32gb") == pytest.approx(1e-6)


def test_the_host_call_is_longer_than_the_gap() -> None:
    # The figure replaced: the host's cudaLaunchKernel call (median 6 us) is not GPU time.
    trace = _parse(DATA / "recsys_a100_8rank_rank3_control.json.gz")
    calls = sorted(e.dur for events in trace.threads.values() for e in events if e.name == "cudaLaunchKernel")
    assert calls[len(calls) // 2] == pytest.approx(6.0)
    assert median_queued_gap_s([trace]) * 1e6 < calls[len(calls) // 2] / 2


def test_elementwise_floor_is_the_yaml_figure() -> None:
    a100 = _parse(DATA / "recsys_a100_8rank_rank3_control.json.gz")
    durations = elementwise_durations_us(a100)
    assert len(durations) == 5676
    assert sum(round(d) == 3 for d in durations) == 1175 and sum(round(d) == 4 for d in durations) == 1055
    assert elementwise_floor_s([a100]) == pytest.approx(3e-6)
    v100 = [_parse(p) for p in sorted((DATA / "param_dlrm_kineto").glob("*.json.gz"))]
    assert sum(len(elementwise_durations_us(t)) for t in v100) == 1462
    assert elementwise_floor_s(v100) == pytest.approx(3e-6)
    library = HardwareLibrary()
    for name in library.names_of_kind("accelerator"):
        device = library.device("accelerator", name)
        assert isinstance(device, Accelerator)
        assert device.elementwise_kernel_s == pytest.approx(3e-6), name


def test_elementwise_floor_takes_the_most_frequent_duration() -> None:
    events = [
        _event(f"at::native::vectorized_elementwise_kernel<{k}>", "kernel", 10 * k, d, k, tid=7)
        for k, d in enumerate([2, 3, 3, 40, 9])
    ]
    events += [_event("ampere_sgemm_128x64_nn", "kernel", 200 + k, 2, 50 + k, tid=7) for k in range(5)]
    trace = parse_kineto(Path("t.json"), {"traceEvents": events})
    # The GEMMs' 2 us do not count: PyTorch's element-wise and reduction kernels only.
    assert elementwise_floor_s([trace]) == pytest.approx(3e-6)
    with pytest.raises(ValueError, match="no element-wise kernels"):
        elementwise_floor_s([parse_kineto(Path("t.json"), {"traceEvents": events[5:]})])


def test_an_elementwise_kernel_pays_its_floor_not_the_gemm_fit() -> None:
    from recsim.cost.compute import compute_time_s, gemm_calibration
    from recsim.graph.ir import Compute

    a100 = HardwareLibrary().device("accelerator", "a100-sxm4-80gb")
    assert isinstance(a100, Accelerator)
    tiny = Compute("relu", flops=1e3, bytes_read=4e3, bytes_written=4e3, dtype="fp16", category="elementwise")
    moved = 8e3 / (a100.hbm.bandwidth_bytes_per_s * gemm_calibration(a100).memory_efficiency)
    assert compute_time_s(tiny, a100) == pytest.approx(3e-6 + moved + a100.kernel_launch_s, rel=1e-12)
    # Newer GPUs are no slower on it (the GEMM fits' fixed times differ: 5.4 and 5.5 us).
    h100 = HardwareLibrary().device("accelerator", "h100-sxm5-80gb")
    assert compute_time_s(tiny, h100) <= compute_time_s(tiny, a100)


def test_the_host_copy_call_is_measured_on_the_a100_trace() -> None:
    from recsim.cost.launch import MEMCPY_CALL_S, memcpy_call_s

    trace = _parse(DATA / "recsys_a100_8rank_rank3_control.json.gz")
    assert memcpy_call_s([trace]) == pytest.approx(MEMCPY_CALL_S)
    with pytest.raises(ValueError, match="no cudaMemcpyAsync"):
        memcpy_call_s([parse_kineto(Path("t.json"), {"traceEvents": []})])
