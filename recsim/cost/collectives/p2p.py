"""Point-to-point send/recv: ``group = (sender, receiver)``, ``bytes`` sent.

One transfer over the route between the two accelerators: NVLink (or PCIe) inside a node, the
sender's and receiver's own NICs across nodes (one NIC: NCCL's p2p does not stripe over NICs,
nccl-tests issue 267). One step, in LL up to 16 KiB and in Simple above (``base.p2p_protocols``).
A ring of send/recv pairs (nccl-tests ``sendrecv``) is an all-to-all whose splits send to the next
rank only (``recsim.graph.readers`` maps it so).
"""

from __future__ import annotations

from collections.abc import Sequence

from recsim.cost.collectives.base import (
    P2P_PROTOCOLS,
    Algorithm,
    Flow,
    GroupLayout,
    LevelCost,
    Stage,
    first,
    levels,
    p2p_protocols,
    register,
)
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.calibration import KernelKind


@register
class SendRecv(Algorithm):
    name = "p2p"
    ops = frozenset({CollectiveOp.SEND, CollectiveOp.RECV})
    protocols = P2P_PROTOCOLS
    kernel = KernelKind.P2P

    def protocol_names(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> tuple[str, ...]:
        return p2p_protocols(first(op).bytes)

    def unavailable(self, op: Collective, layout: GroupLayout) -> str | None:
        if layout.n != 2:
            return f"send/recv needs a group of (sender, receiver), got {op.group}"
        return None

    def stages(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Stage]:
        size = first(op).bytes
        if layout.num_nodes == 1:
            return [Stage("p2p", levels(LevelCost(1, size, layout.intra_bandwidth), None), 1)]
        bw = float(min(layout.own_nic_bandwidth))
        return [Stage("p2p", levels(None, LevelCost(1, size, bw)), 1)]

    def flows(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Flow]:
        size = first(op).bytes
        if size <= 0:
            return []
        return [Flow(layout.vertices[0], layout.vertices[1], size, 0)]
