"""Fit ``GatherCalibration`` on FBGEMM TBE kernels of a real Kineto trace.

**Data.** ``tests/data/traces/recsys_a100_8rank_rank3_control.json.gz`` (= ``../shared/reference/
traces/``, from HolisticTraceAnalysis): rank 3 of 8 of a recommendation model on A100-PG509-200 (the
A100 SXM4 40 GB), record_shapes on, 6 profiler steps. Each step runs two fp32 split TBEs with fused
row-wise Adagrad: a weighted one (T = 1 table, 1000 rows x 96) and an unweighted one (T = 122
tables, 90,837 rows, total D = 8720). From the launching ``cpu_op``
``fbgemm::split_embedding_codegen_lookup_rowwise_adagrad_function`` (its ``Input Dims``, FBGEMM's
argument order): ``dev_weights`` [1] (elements), ``D_offsets`` [6] (T + 1), ``indices`` [11] (the
lookups), ``offsets`` [12] (T x B + 1), ``indice_weights`` [14] (non-empty when weighted),
``momentum1_dev`` [20] (one fp32 per row for row-wise Adagrad: the rows). The backward
``CppNode<SplitLookupFunction_rowwise_adagrad_Op>`` has the gradient's shape ``[B, total_D]``, so the
mean row is ``4 total_D / T`` bytes (each table weighted equally: the per-table pooling is not in the
trace). Kernels are joined to their ``cpu_op`` by the ``cudaLaunchKernel`` runtime event (same
``correlation``) that lies inside the op on the op's thread.

**Measurements.** The forward kernel of each TBE call, and the sum of the kernels of each backward
call, without the two things recsim's ``Embedding`` op has no field for: the per-sample-weight
gradient (``grad_indice_weights``) and the second radix sort that carries the weights
(``DeviceRadixSortPolicy<long, float``) of the weighted TBE. 6 steps x 2 TBEs x 2 passes = 24.
The tables are tiny (30 MB in all): they stay in the 40 MB L2, and all 24 measurements come from
two shapes; what the fit says about HBM-resident tables is an extrapolation (see ``gpu``).

**Split and fit.** Even steps train, odd steps test (12 and 12: a repeatability check on the same
two shapes, not a test on new shapes). The predictions are ``gpu.forward_kernel`` and
``gpu.sort_stage`` + ``gpu.update_stage`` with an access model uniform over the TBE's rows (the
trace's indices are synthetic); ``scipy.optimize.least_squares`` on log(predicted / measured) over
``max_efficiency``, ``overhead`` and ``backward_efficiency``. ``row_bytes_half`` cannot be fitted
(286 B and 384 B rows only) and is fixed at ``ROW_BYTES_HALF_PRIOR``.

**The sort stage's own efficiency.** A backward's kernels other than the update stage's
(``UPDATE_KERNEL_NAMES``) are its sort stage; their time (``TbeMeasurement.sort_time_s``) fits
``gpu.SORT_EFFICIENCY`` (``fit_sort_efficiency``, one parameter, the same training steps, with the
gather fit's ``overhead``). The two fits depend on each other through ``overhead`` and the backward
total; they were iterated to a fixed point (a second round moves neither by 0.1 %).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

from recsim.cost.embedding.gpu import (
    SORT_EFFICIENCY,
    KernelCost,
    forward_kernel,
    sort_stage,
    update_stage,
)
from recsim.errors import TraceError
from recsim.graph.native import load_json
from recsim.hardware.calibration import GatherCalibration
from recsim.hardware.devices import Accelerator

__all__ = [
    "ROW_BYTES_HALF_PRIOR",
    "TRACE",
    "TbeMeasurement",
    "fit_gather",
    "fit_sort_efficiency",
    "is_test_measurement",
    "load_tbe_measurements",
    "median_abs_error",
    "predict_tbe_s",
    "relative_errors",
]

TRACE: Final[str] = "tests/data/traces/recsys_a100_8rank_rank3_control.json.gz"

ROW_BYTES_HALF_PRIOR: Final[float] = 64.0
"""Row size at which a gather reaches half its best efficiency. Not identifiable from the trace; taken
from TorchRec PR #2365 (SplitTBE benchmark sweeping the embedding dim at B = 131072, T = 16, L = 10,
100k-row fp32 tables, GPU not stated): 64 B rows reach 0.55 and 128 B rows 0.88 of the throughput of
256 B rows, which the hyperbola matches with 96 B and 41 B; their geometric mean, sqrt(96 x 41) =
62.7 B, rounded to 64 B."""

_FORWARD_OP = "fbgemm::split_embedding_codegen_lookup_"
_BACKWARD_OP = "CppNode<SplitLookupFunction_"
_WEIGHT_ONLY_KERNELS: Final[tuple[str, ...]] = ("grad_indice_weights", "DeviceRadixSortPolicy<long, float")
_FP32_BYTES: Final[float] = 4.0


@dataclass(frozen=True, slots=True)
class TbeMeasurement:
    """One TBE pass of the trace: its shape and its measured GPU time."""

    pass_: str
    step: int
    tables: int
    rows: int
    row_bytes: float
    lookups: int
    batch: int
    weighted: bool
    kernels: int
    time_s: float
    sort_kernels: int = 0
    """Of a backward: its sort-stage kernels (all but ``UPDATE_KERNEL_NAMES``) and their time."""
    sort_time_s: float = 0.0


#: The update-stage kernels of FBGEMM's TBE backward (``gpu.UPDATE_KERNELS``); the others of a
#: backward are its sort stage (linearize, CUB radix sort, reduce-by-key, scan and their fills).
UPDATE_KERNEL_NAMES: Final[tuple[str, ...]] = ("find_long_segments", "cta_per_row", "warp_per_row")


def _dims(op: dict[str, Any]) -> list[list[int]]:
    dims = op.get("args", {}).get("Input Dims")
    if not isinstance(dims, list):
        raise TraceError(f"{op.get('name')}: no 'Input Dims' (record_shapes off?)")
    return dims


def load_tbe_measurements(path: str | Path = TRACE) -> list[TbeMeasurement]:
    """Every TBE forward and backward pass of a Kineto trace recorded with shapes."""
    data = load_json(Path(path))
    events = [e for e in data.get("traceEvents", []) if e.get("ph") == "X"]
    kernels = {
        e["args"]["correlation"]: e
        for e in events
        if e.get("cat") == "kernel" and "correlation" in e.get("args", {})
    }
    launches: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "cuda_runtime" and "correlation" in e.get("args", {}):
            launches[e["tid"]].append(e)
    for seq in launches.values():
        seq.sort(key=lambda e: e["ts"])
    starts = {tid: [e["ts"] for e in seq] for tid, seq in launches.items()}
    steps = sorted(
        (e["ts"], e["ts"] + e["dur"], int(e["name"].split("#")[1]))
        for e in events
        if e.get("name", "").startswith("ProfilerStep#")
    )

    def kernels_of(op: dict[str, Any]) -> list[dict[str, Any]]:
        seq, ts = launches.get(op["tid"], []), starts.get(op["tid"], [])
        out = []
        i = bisect.bisect_left(ts, op["ts"])
        while i < len(seq) and seq[i]["ts"] <= op["ts"] + op["dur"]:
            kernel = kernels.get(seq[i]["args"]["correlation"])
            if kernel is not None:
                out.append(kernel)
            i += 1
        return out

    def step_of(ts: float) -> int:
        for start, end, number in steps:
            if start <= ts <= end:
                return number
        return -1

    ops = sorted(
        (
            e
            for e in events
            if e.get("cat") == "cpu_op"
            and (
                e["name"].startswith(_FORWARD_OP)
                or (_BACKWARD_OP in e["name"] and "evaluate_function" not in e["name"])
            )
        ),
        key=lambda e: e["ts"],
    )
    forwards: list[dict[str, Any]] = []
    out: list[TbeMeasurement] = []
    for op in ops:
        dims = _dims(op)
        if op["name"].startswith(_FORWARD_OP):
            tables = dims[6][0] - 1
            weighted = bool(dims[14]) and dims[14][0] > 0
            ks = kernels_of(op)
            forwards.append(
                {
                    "tables": tables,
                    "weights": dims[1][0],
                    "rows": dims[20][0],
                    "lookups": dims[11][0],
                    "batch": (dims[12][0] - 1) // tables,
                    "weighted": weighted,
                    "step": step_of(op["ts"]),
                    "kernels": ks,
                    "matched": False,
                }
            )
            continue
        batch, total_d = dims[0]
        candidates = [
            f
            for f in forwards
            if not f["matched"]
            and f["batch"] == batch
            and (f["tables"] > 1 or f["weights"] == total_d * f["rows"])  # one table: D x rows = weights
        ]
        if not candidates:
            raise TraceError(f"backward TBE with gradient [{batch}, {total_d}] matches no forward call")
        fwd = candidates[-1]
        fwd["matched"] = True
        row_bytes = _FP32_BYTES * total_d / fwd["tables"]
        common = {
            "step": fwd["step"],
            "tables": fwd["tables"],
            "rows": fwd["rows"],
            "row_bytes": row_bytes,
            "lookups": fwd["lookups"],
            "batch": fwd["batch"],
            "weighted": fwd["weighted"],
        }
        fk = fwd["kernels"]
        out.append(
            TbeMeasurement("forward", kernels=len(fk), time_s=sum(k["dur"] for k in fk) * 1e-6, **common)
        )
        bk = [k for k in kernels_of(op) if not any(s in k["name"] for s in _WEIGHT_ONLY_KERNELS)]
        sk = [k for k in bk if not any(s in k["name"] for s in UPDATE_KERNEL_NAMES)]
        out.append(
            TbeMeasurement(
                "backward",
                kernels=len(bk),
                time_s=sum(k["dur"] for k in bk) * 1e-6,
                sort_kernels=len(sk),
                sort_time_s=sum(k["dur"] for k in sk) * 1e-6,
                **common,
            )
        )
    if not out:
        raise TraceError(f"{path}: no FBGEMM TBE calls found")
    return sorted(out, key=lambda m: (m.step, m.tables, m.pass_))


def is_test_measurement(m: TbeMeasurement) -> bool:
    """Odd profiler steps are held out."""
    return m.step % 2 == 1


def _unique(m: TbeMeasurement) -> float:
    """Distinct rows among ``m``'s lookups, uniform over its rows (the trace's indices are synthetic)."""
    unique = m.rows * -math.expm1(m.lookups * math.log1p(-1.0 / m.rows)) if m.rows > 1 else 1.0
    return min(unique, m.lookups)


def _predict_sort(
    m: TbeMeasurement, accelerator: Accelerator, cal: GatherCalibration, efficiency: float = SORT_EFFICIENCY
) -> KernelCost:
    return sort_stage(
        accelerator, cal, rows=m.rows, lookups=m.lookups, unique=_unique(m), efficiency=efficiency
    )


def predict_tbe_s(m: TbeMeasurement, accelerator: Accelerator, cal: GatherCalibration) -> float:
    """GPU time of a measured TBE pass under ``cal`` (no host launch: the trace times kernels)."""
    unique = _unique(m)
    if m.pass_ == "forward":
        l2_hit = min(1.0, accelerator.l2_bytes / (m.rows * m.row_bytes))  # uniform: LRU hit = C / N
        extra = m.lookups * _FP32_BYTES if m.weighted else 0.0
        return forward_kernel(
            accelerator,
            cal,
            row_bytes=m.row_bytes,
            lookups=m.lookups,
            bags=m.batch * m.tables,
            l2_hit=l2_hit,
            extra_hbm_bytes=extra,
        ).time_s
    sort = _predict_sort(m, accelerator, cal)
    state = _FP32_BYTES  # row-wise Adagrad
    update = update_stage(
        accelerator,
        cal,
        row_bytes=m.row_bytes,
        grad_row_bytes=m.row_bytes,
        lookups=m.lookups,
        batch=m.batch,
        bags=m.batch * m.tables,
        unique=unique,
        row_update_hbm_bytes=2.0 * unique * (m.row_bytes + state),
        state_row_bytes=state,
    )
    return sort.time_s + update.time_s


def relative_errors(
    measurements: Sequence[TbeMeasurement], accelerator: Accelerator, cal: GatherCalibration
) -> NDArray[np.float64]:
    """``predicted / measured - 1`` for every measurement."""
    return np.array(
        [predict_tbe_s(m, accelerator, cal) / m.time_s - 1.0 for m in measurements], dtype=np.float64
    )


def median_abs_error(
    measurements: Sequence[TbeMeasurement], accelerator: Accelerator, cal: GatherCalibration
) -> float:
    return float(np.median(np.abs(relative_errors(measurements, accelerator, cal))))


def _calibration(
    x: Sequence[float], row_bytes_half: float, source: str, train: int, test: int | None = None
) -> GatherCalibration:
    return GatherCalibration.model_validate(
        {
            "source": source,
            "max_efficiency": float(x[0]),
            "row_bytes_half": row_bytes_half,
            "overhead": f"{float(x[1]) * 1e-6!r} s",
            "backward_efficiency": float(x[2]),
            "fit_points": train,
            "test_points": test,
        }
    )


def fit_gather(
    measurements: Sequence[TbeMeasurement],
    accelerator: Accelerator,
    *,
    row_bytes_half: float = ROW_BYTES_HALF_PRIOR,
    source: str = TRACE,
) -> GatherCalibration:
    """Fit ``max_efficiency``, ``overhead`` and ``backward_efficiency`` on the training measurements."""
    train = [m for m in measurements if not is_test_measurement(m)]
    test = [m for m in measurements if is_test_measurement(m)]
    if not train or not test:
        raise ValueError(f"need measurements on both sides of the split, got {len(train)} and {len(test)}")
    measured = np.log([m.time_s for m in train])

    def residuals(x: NDArray[np.float64]) -> NDArray[np.float64]:
        cal = _calibration(x, row_bytes_half, source, len(train))
        predicted = np.log([predict_tbe_s(m, accelerator, cal) for m in train])
        result: NDArray[np.float64] = predicted - measured
        return result

    # max_efficiency, overhead in microseconds, backward_efficiency: all of order one. Start and
    # bounds are search settings, not model constants: efficiencies in their admissible (0, 1] (a
    # 0.02 floor keeps the division finite), the overhead 0-100 us; the A100 fit (0.3606, 7.709 us,
    # 0.3829: hardware/devices/accelerators/a100-sxm4-40gb.yaml) binds none of them.
    fit = least_squares(residuals, [0.6, 5.0, 0.6], bounds=([0.02, 0.0, 0.02], [1.0, 100.0, 1.0]))
    cal = _calibration(fit.x, row_bytes_half, source, len(train), len(test))
    return cal.model_copy(
        update={
            "median_abs_error": median_abs_error(train, accelerator, cal),
            "test_median_abs_error": median_abs_error(test, accelerator, cal),
        }
    )


def fit_sort_efficiency(
    measurements: Sequence[TbeMeasurement], accelerator: Accelerator, cal: GatherCalibration
) -> float:
    """The HBM efficiency ``gpu.sort_stage`` streams at, fitted on the sort-stage kernels of the
    training backwards (``sort_time_s``) with ``cal``'s per-kernel ``overhead``: least squares on
    log(predicted / measured)."""
    train = [m for m in measurements if m.pass_ == "backward" and not is_test_measurement(m)]
    if not train:
        raise ValueError("no training backward measurements")
    measured = np.log([m.sort_time_s for m in train])

    def residuals(x: NDArray[np.float64]) -> NDArray[np.float64]:
        predicted = np.log([_predict_sort(m, accelerator, cal, float(x[0])).time_s for m in train])
        result: NDArray[np.float64] = predicted - measured
        return result

    # A share of HBM bandwidth: bounded to its admissible (0, 1] (a search setting; the fit, 0.562,
    # ``gpu.SORT_EFFICIENCY``, binds neither end).
    fit = least_squares(residuals, [0.5], bounds=([0.02], [1.0]))
    return float(fit.x[0])
