"""Point-to-point send/recv: ``group = (sender, receiver)``, ``bytes`` sent.

One transfer over the route between the two accelerators: inside a node the pair's own route
(``pair_bandwidth``: its direct NVLinks on a mesh, one relaying GPU where it has none, the GPU's
whole NVLink through NVSwitch, or PCIe); across nodes one NIC at each end (NCCL's p2p does not
stripe over NICs, nccl-tests issue 267): the receiver's own, and the sender's node's NIC on the
receiver's rail, which a PXN relay's flows reach over NVLink first (``Topology.p2p_first_hop``;
every NIC of a node has the same rate). One step, in LL up to 16 KiB and in Simple above
(``base.p2p_protocols``). A ring of send/recv pairs (nccl-tests ``sendrecv``) is an all-to-all
whose splits send to the next rank only (``recsim.graph.readers`` maps it so).
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


def pair_bandwidth(layout: GroupLayout) -> float:
    """What a send from member 0 to member 1 of one node moves per second: the pair's route, at most
    either end's scale-up port (``GroupLayout.port_bandwidth``), the per-pair bound the direct
    all-to-all takes (``alltoall._intra_cost``), and what the pair's lone flow gets.

    Not the rings' sum (``intra_bandwidth``, the same figure for a group of two, but 300 GB/s for a
    4-GPU H100 mesh where one pair's six direct links carry 150 GB/s): NCCL keeps one path per GPU
    pair, the direct link (parallel NVLinks merged into one link of their summed rate,
    ``ncclTopoConnectNodes``, src/graph/topo.cc), and its path search replaces a path only by a
    shorter one (``ncclTopoSetPaths``, src/graph/paths.cc), so a pair with a direct link never takes
    a second route through a third GPU; one without takes one relaying GPU (NVB,
    ``Topology._nvb_relays``). Every p2p channel of the pair runs over that one path."""
    locals_ = layout.locals
    route = float(layout.topology.local_pair_bandwidth()[locals_[0], locals_[1]])
    return min(route, float(layout.port_bandwidth.min()))


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
            return [Stage("p2p", levels(LevelCost(1, size, pair_bandwidth(layout)), None), 1)]
        bw = float(min(layout.own_nic_bandwidth))
        return [Stage("p2p", levels(None, LevelCost(1, size, bw)), 1)]

    def flows(self, op: Collective | Sequence[Collective], layout: GroupLayout) -> list[Flow]:
        size = first(op).bytes
        if size <= 0:
            return []
        return [Flow(layout.vertices[0], layout.vertices[1], size, 0)]
