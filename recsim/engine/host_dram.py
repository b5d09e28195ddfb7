"""Host DRAM as a shared resource of the DES engine: one link per CPU socket, shared by the ops of
every rank whose host buffers are in that socket's memory (``recsim.engine.des``).

**Where.** An accelerator's host traffic goes to the DRAM of the CPU socket it hangs off (through
its PCIe switch, or directly: ``recsim.engine.resources._host_cpu``, the socket the topology wires
it to, ``recsim.hardware.topology``), as the utilisation report counts it (ASSUMPTION, the report's:
host buffers local to that CPU, as NCCL and the data loaders pin them). So the GPUs of one socket
share its channels, and a socket that holds more GPUs than another (three GPUs on two sockets, or
every PCIe switch on one) has less DRAM for each. A rank with no such socket (a CPU-only node) has
the node's DRAM, every socket's channels, as the CPU-side tiers price it.

**Capacity.** The rate the cost models price host DRAM at: the node's channels at
``CPU_MEMORY_EFFICIENCY`` of their pin rate (``recsim.cost.embedding.uvm.
host_ddr_bandwidth_bytes_per_s``, the ``uvm``, ``uvm_caching`` and ``ddr`` tiers' and the data
loader's rate), split evenly over the sockets (each socket has its own channels:
``Node.memory_channels`` is sockets x the CPU's channels, as the topology's memory edges are).
Reads and writes share it: a DRAM channel's bus carries one direction at a time.

**Demand.** An op's host DRAM bytes (``recsim.engine.resources.op_dram_bytes``: a lookup's ``ddr``
bytes, a copy's bytes at each ``host`` end, a host op's bytes) are one flow paced to the time the
op streams them: a lookup's link window where its cost overlaps the rows' transfer with slower
limits (``CostModel.link_window_s``: a ``uvm`` lookup bound by PCIe reads its rows at the PCIe
rate), else its duration. It asks for no more than it uses, so an op alone, or beside ops whose
demand fits, takes exactly its modelled time; the link is the water-filled paced link of
``recsim.engine.hbm`` (``HbmLink``). The cost models already charge each rank its share of its
socket's channels, by the same rule (``rank_host_ddr_bandwidth_bytes_per_s``, the ``ddr`` and
``ssd`` tiers' ``dram_share``, the data loader's ``CostModel.host_s``: ``Node.host_dram_ranks``, the
sockets times the most accelerators one holds, ``Node.accelerator_socket`` being the topology's
wiring), so the ranks of one socket
never exceed its channels with their lookups alone, however unevenly the GPUs sit on the sockets
(a lone GPU on a two-socket node is priced at one socket's channels, not the node's, in both
engines); what binds is what the shares leave out: copies and host work beside the lookups.

What is not modelled: a RecNMP DIMM's channel bytes (``nmp_channel``: read inside the DIMMs, not
over the channel's bus), cross-socket traffic (a buffer in the other socket's memory), and the
LLC: the ``ddr`` tier's LLC hits are not in its ``ddr`` bytes.
"""

from __future__ import annotations

from recsim.cost.embedding.uvm import host_ddr_bandwidth_bytes_per_s
from recsim.engine.resources import _host_cpu
from recsim.hardware.system import System
from recsim.hardware.topology import Topology


def socket_dram_bytes_per_s(system: System) -> float:
    """The rate one socket's DRAM sustains, as the cost models price it: the node's
    (``host_ddr_bandwidth_bytes_per_s``) over its sockets."""
    return host_ddr_bandwidth_bytes_per_s(system) / system.node.cpus.count


def dram_of_rank(topology: Topology, system: System, rank: int) -> tuple[str, float]:
    """The host DRAM ``rank`` reads and writes, as a name (the CPU vertex of its accelerator's
    socket) and its capacity (``socket_dram_bytes_per_s``); for a rank that hangs off no CPU, or
    that is no accelerator of the topology (a CPU-only node's), its node's DRAM (``n<k>.dram``,
    every socket's channels) at ``host_ddr_bandwidth_bytes_per_s``."""
    accelerators = topology.accelerators
    if rank < len(accelerators):
        acc = accelerators[rank]
        cpu = _host_cpu(topology, acc)
        if cpu is not None:
            return cpu, socket_dram_bytes_per_s(system)
        where = topology.graph.nodes[acc]["node"]
    else:
        where = rank // max(1, system.node.num_accelerators)
    return f"n{where}.dram", host_ddr_bandwidth_bytes_per_s(system)


__all__ = ["dram_of_rank", "socket_dram_bytes_per_s"]
