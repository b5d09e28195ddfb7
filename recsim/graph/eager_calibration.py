"""Host (CPU) cost of an eager PyTorch/TorchRec training step, measured on real Kineto traces.

An eager step is driven by one Python thread (and PyTorch's autograd thread during backward) that
dispatches every operator: the GPU only gets a kernel once the CPU has got through the Python,
the dispatcher and ``cudaLaunchKernel`` before it. ``EagerCosts`` holds that CPU time per piece of
a TorchRec DLRM step, and ``measure_eager_costs`` derives it from Kineto traces of such a step
(``TrainPipelineSparseDist``, which annotates its phases ``## copy_batch_to_gpu ##``,
``## forward ##``, ``## sparse_data_dist ##``, ``## backward ##``, ``## optimizer ##``).

Per rank (the figure is the median over the ranks of the traces):

* ``step_fixed_s``: the step outside its forward, sparse_data_dist, backward and optimizer phases:
  ``zero_grad``, ``copy_batch_to_gpu`` (the single-process data loader's ``__next__`` and the
  host-to-device copies it issues), ``wait_for_batch`` and the Python between them;
* ``input_dist_s``: ``sparse_data_dist`` of the next batch without the time it blocks in
  ``SplitsAllToAllAwaitable wait()`` (the host waiting for the splits all-to-all is the sync that
  ``recsim.graph.runtime`` models as a dependency, not as CPU time);
* ``linear_forward_s``: ``aten::linear`` + ``aten::relu`` of a dense layer (CPU op time, median);
  ``forward_rest_s``: the rest of ``## forward ##`` (sparse arch, KJT handling, interaction, loss,
  and the Python between modules), with its ``cudaStreamSynchronize`` waits removed;
* ``linear_backward_s``: the autograd thread's ``AddmmBackward0 + ReluBackward0 + TBackward0 + 2 x
  AccumulateGrad`` of a dense layer; ``backward_rest_s``: the rest of ``## backward ##``, during
  which the main thread waits in ``backward()`` for the autograd thread (its busy time plus the
  hand-offs between the threads: the serial host time of the backward);
* ``optimizer_op_s``: ``## optimizer ##`` divided by the aten update ops it issues (torch.optim
  Adagrad, for-loop implementation: ``add_`` (step), ``item``, ``addcmul_``, ``sqrt``, ``add_``,
  ``addcdiv_`` per parameter tensor, counted through its ``addcdiv_`` calls);
* ``group_forward_s``, ``group_backward_s``: what one routed sharding type's output side costs the
  host, inside ``forward_rest_s`` and ``backward_rest_s``: the forward's ``KJTAllToAllTensorsAwaitable
  wait()`` (the ids' arrival and their ``recat``), ``alltoall_fwd_single`` (the pooled exchange's
  dispatch) and ``PooledEmbeddingsAwaitable wait()``, without their syncs; the backward's
  ``alltoall_bwd_single`` (on the autograd thread). TorchRec's ``ShardedEmbeddingBagCollection``
  builds one input dist, one lookup and one output dist per sharding type of its plan
  (torchrec/distributed/embeddingbag.py: ``_create_input_dist``, ``_create_lookups``,
  ``_create_output_dist`` loop over ``sharding_type_to_sharding``); the traced plan has one routed
  sharding type (one ``kjt splits`` / ``lengths`` / ``values`` all-to-all triple, one
  ``alltoall_fwd_single``, one ``alltoall_bwd_single`` a step) besides its data-parallel tables, so
  ``input_dist_s`` and these two are one routed sharding type's worth (``recsim.graph.runtime``
  charges them per routed sharding type).

Source: ``../shared/reference/traces/dlrm_kineto.tar.gz`` (one step of an 8-rank TorchRec DLRM on
8 x V100-SXM2-32GB, from facebookresearch/param, MIT), copied to ``tests/data/traces/param_dlrm_kineto``.
The host CPU of that machine is not recorded; the constants are used as they are on every host
(an assumption: a faster CPU dispatches faster).
"""

from __future__ import annotations

import gzip
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: aten ops per parameter tensor of the for-loop torch.optim implementations: SGD without momentum
#: ``add_``; Adagrad ``add_`` (step), ``item``, ``addcmul_``, ``sqrt``, ``add_``, ``addcdiv_``; Adam
#: ``add_`` (step), ``item``, ``lerp_``, ``mul_``, ``addcmul_``, ``sqrt``, ``div_``, ``add_``,
#: ``addcdiv_`` (torch/optim/{sgd,adagrad,adam}.py, ``_single_tensor_*``).
OPTIMIZER_OPS_PER_TENSOR: dict[str, int] = {"sgd": 1, "adagrad": 6, "adam": 9}


@dataclass(frozen=True)
class EagerCosts:
    """CPU seconds per piece of an eager TorchRec DLRM step (see the module docstring)."""

    step_fixed_s: float
    input_dist_s: float
    linear_forward_s: float
    forward_rest_s: float
    linear_backward_s: float
    backward_rest_s: float
    optimizer_op_s: float
    group_forward_s: float
    group_backward_s: float


#: Measured by ``measure_eager_costs`` on the 8 traces of ``param_dlrm_kineto`` (the tests re-measure
#: them): medians over the ranks, to the microsecond (0.1 us for the per-op figure).
TORCHREC_V100: EagerCosts = EagerCosts(
    step_fixed_s=1.78e-3,
    input_dist_s=1.42e-3,
    linear_forward_s=0.072e-3,
    forward_rest_s=2.88e-3,
    linear_backward_s=0.230e-3,
    backward_rest_s=2.84e-3,
    optimizer_op_s=0.0148e-3,
    group_forward_s=0.688e-3,
    group_backward_s=0.130e-3,
)


@dataclass(frozen=True)
class _Event:
    name: str
    cat: str
    tid: str
    ts: float
    dur: float

    @property
    def end(self) -> float:
        return self.ts + self.dur


def _load(path: Path) -> list[_Event]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        data = json.load(f)
    return [
        _Event(e["name"], e.get("cat", ""), str(e.get("tid", "")), float(e["ts"]), float(e.get("dur", 0.0)))
        for e in data["traceEvents"]
        if e.get("ph") == "X" and "ts" in e
    ]


def _within(events: Iterable[_Event], outer: _Event) -> list[_Event]:
    return [e for e in events if outer.ts <= e.ts and e.end <= outer.end + 1e-6]


def _rank_costs(path: Path) -> dict[str, float]:
    events = _load(path)
    step = next(e for e in events if e.name.startswith("ProfilerStep"))
    main = step.tid
    events = _within(events, step)
    mine = [e for e in events if e.tid == main]

    def phase(name: str) -> _Event:
        return next(e for e in mine if e.cat == "user_annotation" and e.name == f"## {name} ##")

    def total_us(name: str) -> float:
        return sum(e.dur for e in mine if e.cat == "user_annotation" and e.name == f"## {name} ##")

    forward = phase("forward")
    syncs = sum(e.dur for e in _within(mine, forward) if e.cat == "cuda_runtime" and "Synchronize" in e.name)
    top_ops = [e for e in _within(mine, forward) if e.cat == "cpu_op"]
    linears = [e for e in top_ops if e.name == "aten::linear"]
    relus = [e for e in top_ops if e.name == "aten::relu"]
    layers = len(linears)
    linear_fwd = (sum(e.dur for e in linears) + sum(e.dur for e in relus)) / layers
    sdd = phase("sparse_data_dist")
    blocked = sum(
        e.dur
        for e in _within(mine, sdd)
        if e.cat == "user_annotation" and e.name == "## SplitsAllToAllAwaitable wait() ##"
    )
    others = [e for e in events if e.tid != main and e.cat in ("cpu_op", "cuda_runtime")]
    fn = {
        k: sum(e.dur for e in others if e.name == f"autograd::engine::evaluate_function: {k}")
        for k in ("AddmmBackward0", "ReluBackward0", "TBackward0", "torch::autograd::AccumulateGrad")
    }
    grads = sum(
        1 for e in others if e.name == "autograd::engine::evaluate_function: torch::autograd::AccumulateGrad"
    )
    linear_bwd = (fn["AddmmBackward0"] + fn["ReluBackward0"] + fn["TBackward0"]) / layers + 2 * fn[
        "torch::autograd::AccumulateGrad"
    ] / grads
    optimizer = phase("optimizer")
    tensors = sum(1 for e in _within(mine, optimizer) if e.name == "aten::addcdiv_")
    backward = phase("backward")
    phases_us = forward.dur + sdd.dur + backward.dur + optimizer.dur

    def annotated_us(name: str, thread: list[_Event]) -> float:
        """The ``## name ##`` spans of ``thread`` without the stream syncs inside them."""
        spans = [e for e in thread if e.cat == "user_annotation" and e.name == f"## {name} ##"]
        waits = sum(
            e.dur
            for span in spans
            for e in _within(thread, span)
            if e.cat == "cuda_runtime" and "Synchronize" in e.name
        )
        return sum(e.dur for e in spans) - waits

    output_side = (
        "KJTAllToAllTensorsAwaitable wait()",
        "alltoall_fwd_single",
        "PooledEmbeddingsAwaitable wait()",
    )
    group_forward = sum(annotated_us(name, mine) for name in output_side)
    autograd = [e for e in events if e.tid != main]
    group_backward = annotated_us("alltoall_bwd_single", autograd)
    return {
        "step_without_waits_s": (step.dur - syncs - blocked) * 1e-6,
        "step_fixed_s": (step.dur - phases_us) * 1e-6,
        "input_dist_s": (sdd.dur - blocked) * 1e-6,
        "linear_forward_s": linear_fwd * 1e-6,
        "forward_rest_s": (forward.dur - syncs - layers * linear_fwd) * 1e-6,
        "linear_backward_s": linear_bwd * 1e-6,
        "backward_rest_s": (backward.dur - layers * linear_bwd) * 1e-6,
        "optimizer_op_s": optimizer.dur / (tensors * OPTIMIZER_OPS_PER_TENSOR["adagrad"]) * 1e-6,
        "group_forward_s": group_forward * 1e-6,
        "group_backward_s": group_backward * 1e-6,
    }


def measure_eager_costs(paths: Sequence[Path]) -> EagerCosts:
    """``EagerCosts`` from Kineto traces of TorchRec DLRM steps: medians over the traces (ranks)."""
    per_rank = [_rank_costs(p) for p in paths]
    fields = EagerCosts.__dataclass_fields__
    return EagerCosts(**{k: statistics.median(r[k] for r in per_rank) for k in fields})


def host_bound_step_s(paths: Sequence[Path]) -> float:
    """The traced step without the time ranks block on each other: the median over the ranks of
    ``ProfilerStep`` minus its forward syncs and its splits wait (the ranks that wait were ahead)."""
    return statistics.median(_rank_costs(p)["step_without_waits_s"] for p in paths)
