"""HugeCTR's own collectives: the hybrid embedding's exchange and its one-shot all-reduce.

HugeCTR 3.x (NVIDIA's MLPerf DLRM v1 submissions, v1.0-v2.1) does not call NCCL for the hybrid
embedding's collectives. Its release notes (v3.1: "Optimized communication collectives -
Hierarchical multi-node all-to-all for NVLINK aggregation and oneshot algorithm for All-reduce")
and its code (``HierAll2Allv_Multi_IB`` and ``AllReduceInPlaceComm`` over its ``IbComm``, with CUDA
IPC peers inside a node) run them as its own kernels, captured in the iteration's CUDA graph. The
traffic is that of the NCCL algorithms they mirror, ``hierarchical`` all-to-all and ``collnet``
(SHARP) all-reduce, at the same fitted bandwidths and step latencies; what differs is the fixed
time of a call.

NCCL's measured fixed time is large: 43-45 us for a 1 KB-256 KB all-reduce on 8 x A100, both in
vidur's profiles and in Azure's nccl-tests (``microbench/ND_A100_v4_results.md``), which is what
``calibrate`` fits (51.8 us Simple, 37.8 us LL on NVSwitch gen2; 27.9 us on gen3). The kernels
themselves take far less: NCCL's own tuning model of its kernels (``tuning.cc`` ``baseLat``: 8.4 us
Simple, 3.6 us LL) matches the last-arriving NCCL kernels of the PARAM DLRM V100 trace (7-10 us for
its small all-to-alls against a modelled 7-8 us), and a custom one-shot all-reduce on 8 x H100
takes 5.9 us at 512 B (sglang-project/sglang pull request 2904). ASSUMPTION: a call of HugeCTR's
own collectives takes NCCL's kernel-level fixed time, ``base.DEFAULT_NVLINK``'s per
protocol (or the calibrated one where that is lower), not NCCL's measured per-call time.
"""

from __future__ import annotations

from typing import ClassVar

from recsim.cost.collectives.alltoall import HierarchicalAllToAll
from recsim.cost.collectives.base import DEFAULT_NVLINK, register
from recsim.cost.collectives.collnet import CollNetAllReduce


def _kernel_base_latency_s(calibrated_s: float, protocol: str) -> float:
    kernel = DEFAULT_NVLINK.protocols.get(protocol)
    return min(calibrated_s, kernel.base_latency_s) if kernel is not None else calibrated_s


@register
class HugeCTRHierarchicalAllToAll(HierarchicalAllToAll):
    """The hybrid embedding's exchange: gathered over NVLink, one IB exchange per rail."""

    name: ClassVar[str] = "hugectr_hierarchical"

    def base_latency_s(self, calibrated_s: float, protocol: str) -> float:
        return _kernel_base_latency_s(calibrated_s, protocol)


@register
class HugeCTROneShotAllReduce(CollNetAllReduce):
    """The one-shot all-reduce of the grouped weight gradients, reduced across nodes by SHARP."""

    name: ClassVar[str] = "hugectr_collnet"

    def base_latency_s(self, calibrated_s: float, protocol: str) -> float:
        return _kernel_base_latency_s(calibrated_s, protocol)
