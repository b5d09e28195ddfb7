"""NVLS all-reduce: the reduction happens in the NVSwitch (NVLink SHARP, Hopper's NVSwitch gen3).

Each rank owns ``1/n`` of the buffer. For its shard it issues ``multimem.ld_reduce``: the switches
read that shard from all ``n`` GPUs, add, and return the sum (the GPU sends ``S`` in total, one
shard to each owner, and receives ``S/n``); then ``multimem.st`` writes the result once and the
switch multicasts it to all ``n`` GPUs (the GPU sends ``S/n`` and receives ``S``). So every GPU moves
``S (n+1)/n`` each way over its NVLink ports, against the ring's ``2 (n-1)/n x S``, in a constant
number of steps. Only inside one node on a switch with ``in_network_reduction: true``; the data are
striped over the NVSwitch chips in proportion to the GPU's links to each (5-4-4-5 on DGX H100).
Constants: ``calibration.nvls`` of the switch (fitted with the other protocols, see
``recsim.cost.collectives.calibrate``).

Flows: one phase, GPU -> each NVSwitch and NVSwitch -> GPU, ``S (n+1)/n`` times the chip's share.
"""

from __future__ import annotations

from collections.abc import Sequence

from recsim.cost.collectives.base import (
    Algorithm,
    Flow,
    FlowList,
    GroupLayout,
    Level,
    LevelCost,
    Stage,
    first,
    register,
)
from recsim.cost.collectives.ring import _payload
from recsim.graph.ir import Collective, CollectiveOp


@register
class NvlsAllReduce(Algorithm):
    name = "nvls"
    ops = frozenset({CollectiveOp.ALL_REDUCE})
    protocols = ("nvls",)

    def unavailable(self, op: Collective, layout: GroupLayout) -> str | None:
        if not layout.in_switch_reduction:
            return (
                "NVLS needs one node of more than two GPUs on an NVSwitch with in_network_reduction: "
                f"true (the group has {layout.n} GPUs on {layout.num_nodes} node(s); NCCL's "
                "ncclNvlsInit turns NVLS off on two GPUs or fewer)"
            )
        return None

    def stages(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Stage]:
        n = layout.n
        if n < 2:
            return []
        size = _payload(first(op))
        return [Stage("nvls", {Level.INTRA: LevelCost(1, size * (n + 1) / n, layout.intra_bandwidth)}, 1)]

    def flows(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Flow]:
        n = layout.n
        if n < 2:
            return []
        each_way = _payload(first(op)) * (n + 1) / n
        out = FlowList()
        for v in layout.vertices:
            for chip, share in layout.nvswitch_shares(v):
                out.add(v, chip, each_way * share, 0)
                out.add(chip, v, each_way * share, 0)
        return out.flows()
