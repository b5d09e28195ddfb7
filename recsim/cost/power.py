"""Power and energy of a simulated step, per component, from the timeline's busy times.

The model is the linear utilisation model of server power (Fan, Weber and Barroso, "Power
provisioning for a warehouse-sized computer", ISCA 2007): a component draws its idle power all
the time and ``(max - idle) x u`` more, ``u`` being the fraction of the step it is busy. The
idle and max powers are the devices' (datasheet or measured, sourced in their YAML):

* accelerators: busy = their compute stream (GEMMs, lookups), less the lookups it waits on that
  the CPUs or RecNMP DIMMs run (tiers ``ddr``, ``nmp``); communication kernels ride in the idle
  baseline (they keep few SMs busy);
* CPU sockets: busy = the share of the node's cores at work: one per rank while its host stream
  runs (data loading, launches: one thread each), and the rank's share of all of them while the
  CPUs run its lookups (tier ``ddr``);
* DRAM: energy per bit (``Memory.energy_per_bit``, I/O included) for the bytes the step moves
  through host memory's channels (data loading and copies, and the rows the lookups outside HBM
  read and write there: ``uvm``, ``uvm_caching`` misses, ``ddr``; for ``nmp`` the instructions and
  partial sums), plus the DIMMs' idle power where the device gives one; RecNMP DIMMs, where the
  node has them, draw their own idle power and (max - idle) for the time their ranks read rows at
  full rate instead, which is the energy of the rows they read inside (their ``max`` is built from
  the DRAM's read current), so those rows are not charged per bit as well;
* NICs: busy = the share of the step the rank's communication stream spends in collectives that
  leave the node (the union of their intervals); front-end NICs beside a back-end network at
  their idle power (their traffic, data ingestion and checkpoints, is not modelled);
* switches (scale-out, NVSwitch, PCIe): their idle (typical) power; switch power hardly follows
  load because SerDes and fans dominate (noted in the switch YAMLs);
* SSDs: idle. Their reads belong to the ``ssd`` and ``smartssd`` tiers, which serve inference only
  (``TierModel.unavailable`` refuses them for training), so a training step keeps its drives idle.

Everything is energy over the steady step; average power = energy / step time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from recsim.cost.embedding.ddr import rank_share
from recsim.hardware.system import System
from recsim.hardware.topology import Topology


@dataclass(frozen=True)
class Energy:
    """Energy of one step by component (J) and the step time it was spread over."""

    by_component_j: Mapping[str, float]
    step_s: float

    @property
    def total_j(self) -> float:
        return sum(self.by_component_j.values())

    @property
    def avg_power_w(self) -> float:
        return self.total_j / self.step_s if self.step_s > 0 else 0.0

    def power_by_component_w(self) -> dict[str, float]:
        return {k: v / self.step_s for k, v in self.by_component_j.items()} if self.step_s > 0 else {}


#: The components ``step_energy`` charges (the keys of ``Energy.by_component_j``; a system
#: without one leaves it out).
COMPONENTS = ("accelerators", "cpus", "dram", "nmp", "nics", "ssds", "switches")


def step_energy(
    system: System,
    topology: Topology,
    step_s: float,
    busy_s: Mapping[tuple[int, str], float],
    *,
    host_bytes: float = 0.0,
    network_busy_s: Mapping[int, float] | None = None,
    cpu_busy_s: Mapping[int, float] | None = None,
    nmp_busy_s: Mapping[int, float] | None = None,
    off_gpu_s: Mapping[int, float] | None = None,
) -> Energy:
    """Energy of one step of ``step_s`` seconds given per (rank, stream) busy times; ``cpu_busy_s``
    (by rank) is CPU work done for a rank off its host stream (its ``ddr`` lookups), ``nmp_busy_s``
    (by node) the time the node's RecNMP DIMMs spend reading rows (their bytes at the ranks' full
    rate), ``off_gpu_s`` (by rank) the part of a
    rank's compute stream busy time that is such work, not the accelerator's."""
    node = system.node
    nodes = system.num_nodes
    out: dict[str, float] = defaultdict(float)
    ranks = system.num_accelerators
    acc = system.accelerator
    # The per-rank and per-NIC loops run 10^2-10^4 times an evaluation: the device's powers are
    # read once (the same values, so the same sums in the same order).
    if acc is not None and ranks > 0:  # (a key only where the loop adds to it, as before)
        waiting = off_gpu_s or {}
        idle_w, max_w = acc.power.idle_w, acc.power.max_w
        # The same terms, their invariants (the dynamic range, whether the step has a length)
        # worked out once rather than per rank.
        span_w, timed = max_w - idle_w, step_s > 0
        total = out["accelerators"]
        for rank in range(ranks):
            busy = max(0.0, busy_s.get((rank, "compute"), 0.0) - waiting.get(rank, 0.0))
            u = min(1.0, busy / step_s) if timed else 0.0
            total += (idle_w + span_w * u) * step_s
        out["accelerators"] = total
    cpu = node.cpus.device
    per_node_ranks = max(1, node.num_accelerators)
    extra = cpu_busy_s or {}
    # Busy cores, as Fan et al.'s CPU utilisation counts them: a rank's host stream is one thread
    # (its framework's dispatch, and the batch's load on the critical path: ASSUMPTION, a data
    # loader's worker processes that prefetch off that path are not modelled), its ``ddr`` lookups
    # run on its share of every core of the node (``rank_share``, as their cost assumes).
    cores = node.cpus.count * cpu.cores
    lookup_cores = cores * rank_share(system)
    for n in range(nodes):
        ranks_of_node = range(n * per_node_ranks, (n + 1) * per_node_ranks)
        core_s = sum(
            min(step_s, busy_s.get((r, "host"), 0.0)) + lookup_cores * min(step_s, extra.get(r, 0.0))
            for r in ranks_of_node
        )
        u = min(1.0, core_s / (cores * step_s)) if step_s > 0 else 0.0
        socket_w = cpu.power.idle_w + (cpu.power.max_w - cpu.power.idle_w) * u
        out["cpus"] += node.cpus.count * socket_w * step_s
    mem = node.host_memory
    dimms_per_node = node.memory_channels * mem.dimms_per_channel
    nmp = mem.nmp
    if nmp is None:
        dimm_idle = mem.device.idle_power_w or 0.0
        out["dram"] += dimms_per_node * nodes * dimm_idle * step_s
        out["dram"] += host_bytes * 8.0 * mem.device.energy_per_bit_j
    else:
        # The node's DIMMs are RecNMP DIMMs: their own idle power, and the rest while they read
        # (all of a node's DIMMs work on every gather: the rows are interleaved over them).
        out["dram"] += host_bytes * 8.0 * nmp.memory.energy_per_bit_j
        gathering = nmp_busy_s or {}
        for n in range(nodes):
            busy = gathering.get(n, 0.0)
            u = min(1.0, busy / step_s) if step_s > 0 else 0.0
            dimm_w = nmp.power.idle_w + (nmp.power.max_w - nmp.power.idle_w) * u
            out["nmp"] += dimms_per_node * dimm_w * step_s
    group = node.scale_out_nics
    if group is not None:
        nic = group.device
        count = node.nic_count(group)
        if nodes > 0 and count > 0:  # (a key only where the loop adds to it, as before)
            nic_busy = network_busy_s or {}
            idle_w, max_w = nic.power.idle_w, nic.power.max_w
            span_w, timed = max_w - idle_w, step_s > 0
            # Each NIC's rank offset in its node (the same for every node).
            offsets = [j * per_node_ranks // max(1, count) for j in range(count)]
            total = out["nics"]
            for n in range(nodes):
                first = n * per_node_ranks
                for offset in offsets:
                    busy = nic_busy.get(first + offset, 0.0)
                    u = min(1.0, busy / step_s) if timed else 0.0
                    total += (idle_w + span_w * u) * step_s
            out["nics"] = total
    if node.frontend_nics is not None and group is not node.frontend_nics:
        # Front-end NICs beside a back-end network (data ingestion, checkpoints, management):
        # powered all step, their traffic not modelled, so at idle.
        front = node.frontend_nics
        out["nics"] += node.nic_count(front) * nodes * front.device.power.idle_w * step_s
    # Each switch's idle power (a vertex per switch, counted once per topology: a walk over the
    # vertices of a 1024-GPU cluster's graph took a tenth of an analytic evaluation).
    for name, count in topology.switch_devices.items():
        out["switches"] += count * _switch_idle_w(system, topology, name) * step_s
    if node.ssds is not None:
        ssd = node.ssds.device
        count = node.ssds.count * nodes
        out["ssds"] += count * ssd.power.idle_w * step_s
    return Energy(dict(out), step_s)


def _switch_idle_w(system: System, topology: Topology, name: str) -> float:
    node = system.node
    candidates = []
    if system.cluster.scale_out is not None:
        candidates.append(system.cluster.scale_out.switch)
    if node.scale_up is not None and node.scale_up.switch is not None:
        candidates.append(node.scale_up.switch)
    if node.pcie_switches is not None:
        candidates.append(node.pcie_switches.device)
    for sw in candidates:
        if sw.name == name:
            return sw.power.idle_w
    return 0.0
