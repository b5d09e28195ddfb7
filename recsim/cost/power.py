"""Power and energy of a simulated step, per component, from what the timeline's work does.

Accelerators: what their kernels do, not how long they are "busy"
------------------------------------------------------------------
A GPU's utilisation counter (and a stream's busy time) says a kernel is resident, not that it
switches transistors: a kernel on one SM, or one stalled on a slow link, reads 100 % busy (NCCL's
maintainer: "if you run a CUDA kernel on just one SM and the kernel is active 100% of the time,
you'll see the GPU is at 100% in nvidia-smi. Of course it's not using a lot of power", NVIDIA/nccl
issue 689). Charging ``idle + (max - idle) x busy`` put a step of UVM lookups, waiting on PCIe at
31.5 GB/s, at 691 W per H100 (a tester's find). Instead each accelerator draws its floor in a job
all step (below), plus the dynamic energy of the work its kernels do (an activity model, as AccelWattch,
Kandiah et al., MICRO 2021, and GPUWattch, Leng et al., ISCA 2013, build per component; here only
the two components the cost model counts):

* **compute**: ``flops x (max - floor) / ceiling`` (``floor``: ``job_floor_w``, below),
  ``ceiling`` being the best FLOP rate the cost model lets the op reach
  (``recsim.cost.compute.compute_ceiling_flop_per_s``: the dtype's tensor
  peak x the fitted GEMM ``max_efficiency`` for matrix products, the vector peak for the rest). An
  op at its ceiling draws the board's limit: a dense GEMM on an H100 runs at its power limit (an
  FP32 SGEMM burn held 8 H100 SXM at 580-650 W of 700 W, and tensor-core BF16 burns are used to
  reach the maximum, huggingface/gpu-fryer issue 4; random-data GEMMs draw the most, Microsoft
  Research, "Input-Dependent Power Usage in GPUs", 2024); the GEMM fit's ``max_efficiency`` is
  of measured kernels, which ran at the clocks that limit let them (ASSUMPTION: the fit's large
  GEMMs were power-limited, as those burns are). A GEMM at half
  its ceiling draws half the compute power: ASSUMPTION (dynamic energy per FLOP constant, as the
  per-instruction energies of AccelWattch and Wattchmen, Tran et al., ICS 2026).
* **memory**: every byte the op moves through HBM costs the DRAM's access energy
  (``Memory.energy_per_bit`` of the HBM device: 3.9 pJ/bit, O'Connor et al., MICRO 2017) plus the
  on-chip path's (``ON_CHIP_ENERGY_PER_BIT_J``: L2, crossbar, SM load/store, derived below from a
  measured memory-bound draw); a byte that crosses the chip but not the DRAM (a row that hits in
  L2, a UVM row or the pooled result of a lookup the host runs, over the host link) costs the
  on-chip part only. Bytes: a compute op's HBM bytes as its roofline moves them
  (``recsim.cost.compute.hbm_bytes``, as the utilisation figures count them); a lookup's ``hbm`` and
  ``pcie`` bytes and L2 hits (its tier's ``EmbeddingCost``); a collective's input read and output
  written (``_collective_hbm_bytes``: a lower bound for a ring all-reduce, whose chunks pass
  through HBM 2(n-1)/n times each way, and fewer than the utilisation figures count, which follow
  every phase's flows); a copy its bytes at each HBM end (twice within the GPU or between two
GPUs, a peer end being the peer's HBM). NVLink and PCIe
  PHY power on the GPU is not modelled.

An op's dynamic energy is at most ``(max - floor) x`` its cost-model duration
(``KernelEnergy.span_w``: no kernel draws more than the board limit), and a rank's per step at most
``(max - floor) x step`` (kernels of its compute and communication streams overlap). Per step
every rank runs its step's ops once (the last
step's nodes), so the energy does not depend on the engine's interleaving: analytic and DES give
the same where their step times agree. So a GPU waiting on PCIe or on the network draws about its
floor, one streaming HBM at its measured bandwidth ``floor + 5.3 pJ/bit x bandwidth`` (H100:
135 + 123 W), one running large GEMMs its limit.

The floor is what a GPU in a job draws with no kernel doing work (``job_floor_w``): a process holds
a CUDA context and its memory, and the GPU stays in P0 at its job clocks between kernels. That is
not the no-program idle (``power.idle``, nvidia-smi at 0 MiB used: 70 W on an H100 SXM5): H100s a
job held at 73-75 GB used and 0 % utilisation read 109-145 W (NVIDIA/nccl issue 1550, wilicc/gpu-burn
issue 114), an A40 30 W with no process and about 110 W once a process held memory, staying in P0
(NVIDIA/open-gpu-kernel-modules issue 874); a held context alone, no kernel ever run, measured
+26-50 W over bare idle on H100 and A100 (arXiv 2605.23918: a lower DVFS state than a job's,
between kernels of which the clocks stay up). Where a device has a measured ``power.job_idle``
that is the floor, else ``JOB_IDLE_MAX_FRACTION`` of its max. A simulated job runs on every GPU
of its system; a replayed trace's job may hold fewer (``step_energy``'s ``job_ranks``), and the
GPUs outside it draw their no-program idle, the one place that figure prices anything. The on-chip
energy per bit is derived on the same floor (below), so the two move together.
Coarse as its sources: the on-chip figure is one measurement on one GPU (H200) carried to every
accelerator, the compute one rests on GEMMs reaching the board limit. ``step_energy`` without
``kernel_j`` (a replayed trace's recorded durations carry no FLOPs or bytes) keeps the linear
utilisation rule below for the accelerators.

The other components: linear utilisation
----------------------------------------
Fan, Weber and Barroso, "Power provisioning for a warehouse-sized computer", ISCA 2007: a component
draws its idle power all the time and ``(max - idle) x u`` more, ``u`` being the fraction of the
step it is busy (an accelerator's idle being its floor in a job, as above). The idle and max
powers are the devices' (datasheet or measured, sourced in their YAML):

* accelerators without ``kernel_j`` (replay): busy = their compute stream (GEMMs, lookups), less the
  lookups it waits on that the CPUs or RecNMP DIMMs run (tiers ``ddr``, ``nmp``); communication
  kernels ride in the idle baseline (they keep few SMs busy);
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
  load because SerDes and fans dominate (noted in the switch YAMLs), so there is no traffic term.
  A scale-out switch is charged by the share of its ports the run's links take (NICs and the
  links between tiers, ``Topology.scale_out_ports_used``): MLPerf Training's power rules weight
  an interconnect's power "by the provisioning to a run" (mlcommons/training_policies
  power_measurement.adoc, Measure or Estimate Interconnects), and the rest of a shared fabric's
  ports serve other jobs (two DGX H100 nodes on a 2-tier rail-optimised fabric take 48 ports of
  nine 64-port Quantum-2 switches: 560 W, not 6,723 W). ``cluster.scale_out.switch_power: whole``
  charges whole switches instead. NVSwitch and PCIe switch chips inside a node serve only it:
  whole;
* SSDs: idle. Their reads belong to the ``ssd`` and ``smartssd`` tiers, which serve inference only
  (``TierModel.unavailable`` refuses them for training), so a training step keeps its drives idle.

The platform: supplies, fans, baseboard
--------------------------------------
The figures above are the components' DC draw. Every node's ``platform`` (its system's
``node.platform``: power supplies, fans' share, baseboard; ``recsim.hardware.platform``; a system
that names none gets the generic default, ``GENERIC_PLATFORM``) adds a ``platform`` component: its
wall (AC) power less those components, the supplies' conversion loss at their load fraction (an 80
PLUS efficiency curve), the fans (in proportion to the air-cooled components' heat) and the
baseboard (``recsim.cost.platform.node_power``). Priced on each node's mean draw of everything
inside it (not the scale-out switches, boxes with their own supplies whose datasheet figures are
their own input power), so the other components' figures are unchanged. ASSUMPTION: the nodes draw
alike (the mean node's load prices every node's supplies; a node with more tables than another
draws more, and the curve's bend between them is not priced). Only ``platform: none`` (the user's
choice, which the result's notes say) adds nothing.

Everything is energy over the steady step; average power = energy / step time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from recsim.cost.compute import compute_ceiling_flop_per_s, compute_time_s, hbm_bytes
from recsim.cost.embedding.base import HBM, PCIE, EmbeddingCost
from recsim.cost.embedding.ddr import rank_share
from recsim.cost.platform import air_cooled_w, node_power, sized_platform
from recsim.graph.ir import Collective, CollectiveOp, Compute, Embedding, Op, Transfer
from recsim.hardware.devices import Accelerator
from recsim.hardware.system import System
from recsim.hardware.topology import Topology

#: The floor of an accelerator in a job as a share of its board limit, for an accelerator without
#: a measured ``power.job_idle``: the mean of the two measured ones, H100 SXM5 135 W of 700 W
#: (0.193) and V100 SXM2 53 W of 300 W (0.177) (their YAMLs: nvidia-smi of GPUs a job holds, P0,
#: 0 % utilisation; tests/unit/test_power.py checks these figures against them). A share of the
#: limit rather than of the no-program idle: the two GPUs' ratios to that idle differ (1.93, 1.29),
#: their shares of the limit agree within 9 %. What it stands for: the static and clock power of
#: a chip held at its job clocks and voltage, which the board limit is sized around. Coarse: two
#: devices; a held CUDA context alone measured +26-50 W over bare idle on H100 and A100 80 GB
#: (Vadari, "The Model Parking Tax", arXiv 2605.23918, 2026), which for the A100 is above what
#: this share gives (74 W, +12 W).
#: It scales with ``power.max`` as loaded, overrides included: ``--set ...power.max=700`` on a B200
#: (1000 W) takes its floor from 185 W to 129 W. The config keeps no rated max beside an overridden
#: one, and an override of ``max`` may as well be another board of the chip (an H100 PCIe at 350 W
#: against the SXM5's 700 W, whose floor is lower) as a power cap of this one, which does not lower
#: the static floor; so a power-cap sweep of a GPU with no measured ``job_idle`` should pin it:
#: ``--set ...power.job_idle=<the floor at the rated max>`` (``job_floor_w`` of the unmodified device).
JOB_IDLE_MAX_FRACTION: Final[float] = (135.0 / 700.0 + 53.0 / 300.0) / 2.0


def job_floor_w(accelerator: Accelerator) -> float:
    """The accelerator's draw in a job with no kernel doing work (W): its measured
    ``power.job_idle``, else ``JOB_IDLE_MAX_FRACTION`` x its max, never below its no-program idle.
    The max is the loaded one: an override of ``power.max`` moves the derived floor with it (read as
    another board; a power cap does not lower the static floor: pin ``power.job_idle`` to sweep one,
    ``JOB_IDLE_MAX_FRACTION``)."""
    power = accelerator.power
    if power.job_idle_w is not None:
        return power.job_idle_w
    return min(power.max_w, max(power.idle_w, JOB_IDLE_MAX_FRACTION * power.max_w))


#: The measured draw of a memory-bound kernel that saturates HBM, its GPU's floor in a job and its
#: bandwidth, from which ``ON_CHIP_ENERGY_PER_BIT_J`` is derived. Ma, Afzal, Eitzinger, Wellein,
#: "The Illusion of Power Capping in LLM Decode" (arXiv 2605.11999, 2026): on an H200 SXM "decode
#: draws only 137-300 W on a 700 W GPU ... because memory-bound decode saturates HBM bandwidth";
#: the top of the range is taken as the saturating draw (decode's matrix-vector products also
#: compute a little: an upper bound on the memory path's share).
MEMORY_BOUND_DRAW_W: Final[float] = 300.0
#: The H200's floor in a job, which the decode draw stands on (a decoding GPU is a GPU in a job,
#: not one with no program): ``JOB_IDLE_MAX_FRACTION`` x its 700 W limit
#: (hardware/devices/accelerators/h200-sxm5-141gb.yaml), 129 W; the bottom of the decode range,
#: 137 W, sits just above it, as a floor must. (Its no-program idle, 75 W, was used before: the
#: floor and this figure move together.)
MEMORY_BOUND_IDLE_W: Final[float] = JOB_IDLE_MAX_FRACTION * 700.0
#: The bandwidth a saturating streaming kernel reaches on an H200: STREAM copy on ND H200 v5,
#: 4.01 TB/s (../shared/reference/microbench/ND_H200_v5_results.md).
MEMORY_BOUND_BYTES_PER_S: Final[float] = 4.01e12
#: The H200's HBM3E access energy (hardware/devices/memory/hbm3e.yaml: O'Connor et al., MICRO 2017,
#: 3.9 pJ/bit, carried over).
MEMORY_BOUND_DRAM_J_PER_BIT: Final[float] = 3.9e-12
#: Energy per bit a byte costs on the chip between HBM and the SMs (memory controllers, L2,
#: crossbar, load/store units, registers), beside the DRAM's own: DERIVED, the dynamic draw of the
#: saturating kernel above the job floor per bit it moves less the DRAM's part:
#: (300 - 129.3) W / (4.01 TB/s x 8) = 5.32 pJ/bit, less 3.9 = 1.42 pJ/bit. Order check: moving
#: 64 bits 10 mm across a chip costs about 64 pJ, 1 pJ/bit, at 28 nm (Keckler, Dally et al., "GPUs
#: and the Future of Parallel Computing", IEEE Micro 2011), and a byte crosses the chip and
#: several SRAMs on its way. ASSUMPTION: the same on every accelerator (one Hopper measurement; no
#: per-generation figure).
ON_CHIP_ENERGY_PER_BIT_J: Final[float] = (MEMORY_BOUND_DRAW_W - MEMORY_BOUND_IDLE_W) / (
    MEMORY_BOUND_BYTES_PER_S * 8.0
) - MEMORY_BOUND_DRAM_J_PER_BIT


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


@dataclass(frozen=True)
class KernelEnergy:
    """The dynamic energy of the work an accelerator's kernels do (the module's activity model):
    ``op_j(op)`` per op, to add up per rank and hand to ``step_energy`` as ``kernel_j``."""

    accelerator: Accelerator
    #: ``max - floor``: the most an op draws above the accelerator's floor in a job.
    span_w: float
    #: A byte read or written in HBM: the DRAM's access energy and the on-chip path's.
    hbm_j_per_byte: float
    #: A byte that crosses the chip but not the DRAM (an L2 hit, a row that comes over the host
    #: link into the SMs): the on-chip path only.
    on_chip_j_per_byte: float

    @classmethod
    def of(cls, accelerator: Accelerator) -> KernelEnergy:
        on_chip = ON_CHIP_ENERGY_PER_BIT_J * 8.0
        return cls(
            accelerator,
            accelerator.power.max_w - job_floor_w(accelerator),
            accelerator.hbm.memory.energy_per_bit_j * 8.0 + on_chip,
            on_chip,
        )

    def op_j(
        self,
        op: Op,
        embedding_cost: Callable[[Embedding], EmbeddingCost],
        compute_s: Callable[[Compute], float] | None = None,
        compute_hbm_bytes: Callable[[Compute], float] | None = None,
    ) -> float:
        """Dynamic energy of ``op`` on the accelerator (J), at most ``span_w`` x its duration; 0
        for host work. ``embedding_cost``: the run's lookup costs (``CostModel.embedding_cost``);
        ``compute_s``: the run's compute durations, ``compute_time_s`` on this accelerator (a
        cost model's, worked out already for the schedule), else computed here; ``compute_hbm_bytes``
        the same for ``hbm_bytes`` on this accelerator."""
        kind = type(op)
        if kind is Compute:
            assert isinstance(op, Compute)
            acc = self.accelerator
            flops = max(0.0, op.flops)
            compute_j = self.span_w * flops / compute_ceiling_flop_per_s(op, acc) if flops else 0.0
            moved = hbm_bytes(op, acc) if compute_hbm_bytes is None else compute_hbm_bytes(op)
            memory_j = self.hbm_j_per_byte * max(0.0, moved)
            duration_s = compute_time_s(op, acc) if compute_s is None else compute_s(op)
            return min(compute_j + memory_j, self.span_w * duration_s)
        if kind is Embedding:
            assert isinstance(op, Embedding)
            cost = embedding_cost(op)
            # Rows that hit in L2 (the ``hbm`` tier's ``l2_bytes``) cross the chip only, as do those
            # that come over the host link.
            l2 = cost.details.get("l2_bytes", 0.0)
            on_chip = cost.bytes_on(PCIE) + (l2 if isinstance(l2, float | int) else 0.0)
            moved_j = self.hbm_j_per_byte * cost.bytes_on(HBM) + self.on_chip_j_per_byte * on_chip
            return min(moved_j, self.span_w * cost.time_s)
        # Copies and collectives move bytes at a link's rate: far below the limit (450 GB/s of
        # NVLink each way, 900 GB/s through HBM, is 38 W at 5.3 pJ/bit), so no cap is needed.
        if kind is Collective:
            assert isinstance(op, Collective)
            return self.hbm_j_per_byte * _collective_hbm_bytes(op)
        if kind is Transfer:
            assert isinstance(op, Transfer)
            # Each HBM end reads or writes the bytes once: a copy within the GPU (``hbm`` -> ``hbm``)
            # twice, as the utilisation figures count it (``recsim.engine.resources``); a copy from
            # or to a peer GPU twice too, the peer's end being its HBM (the graph carries the copy
            # on one rank only, so its energy is charged there; the utilisation figures count the
            # local end only, the other rank's HBM not being this rank's bandwidth).
            ends = (op.src.split(":", 1)[0], op.dst.split(":", 1)[0])
            return self.hbm_j_per_byte * max(0.0, op.bytes) * (ends.count("hbm") + ends.count("peer"))
        return 0.0


def _collective_hbm_bytes(op: Collective) -> float:
    """The bytes a rank's part of a collective reads and writes in its HBM: its input once and its
    output once (an all-gather's output is the group's inputs, a reduce-scatter's its share; an
    uneven all-to-all's what it sends and receives)."""
    if op.send_bytes is not None or op.recv_bytes is not None:
        return sum(op.send_bytes or ()) + sum(op.recv_bytes or ())
    size = max(0.0, op.bytes)
    members = max(1, len(op.group))
    if op.op is CollectiveOp.ALL_GATHER:
        return size + size * members
    if op.op is CollectiveOp.REDUCE_SCATTER:
        return size + size / members
    if op.op is CollectiveOp.BARRIER:
        return 0.0
    return 2.0 * size


#: The components ``step_energy`` charges (the keys of ``Energy.by_component_j``; a system
#: without one leaves it out).
COMPONENTS = ("accelerators", "cpus", "dram", "nmp", "nics", "ssds", "switches", "platform")


def _at_most(value: float, cap: float) -> float:
    """``min(cap, value)`` exactly (``cap`` unless ``value`` is less: a NaN value gives ``cap``, as
    ``min`` does), without the builtin's call."""
    return value if value < cap else cap


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
    kernel_j: Mapping[int, float] | None = None,
    job_ranks: int | None = None,
) -> Energy:
    """Energy of one step of ``step_s`` seconds given per (rank, stream) busy times; ``cpu_busy_s``
    (by rank) is CPU work done for a rank off its host stream (its ``ddr`` lookups), ``nmp_busy_s``
    (by node) the time the node's RecNMP DIMMs spend reading rows (their bytes at the ranks' full
    rate), ``off_gpu_s`` (by rank) the part of a
    rank's compute stream busy time that is such work, not the accelerator's. ``kernel_j`` (by
    rank): the dynamic energy of each rank's kernels over the step (``KernelEnergy``); given, an
    accelerator draws its floor in a job plus that, at most its max power, and ``busy_s``'s
    compute times and ``off_gpu_s`` no longer price it (the linear utilisation rule, without it).
    ``job_ranks``: how many of the system's accelerators the job runs on (a replayed trace's job
    may be smaller than the system); the others hold no program and draw their no-program idle.
    All of them without it."""
    node = system.node
    nodes = system.num_nodes
    out: dict[str, float] = defaultdict(float)
    ranks = system.num_accelerators
    acc = system.accelerator
    in_job = ranks if job_ranks is None else max(0, min(ranks, job_ranks))
    # The per-rank and per-NIC loops run 10^2-10^4 times an evaluation: the device's powers are
    # read once (the same values, so the same sums in the same order).
    if acc is not None and ranks > 0 and kernel_j is not None:
        # Idle all step, and the kernels' work, the board limit at most over the step.
        idle_w = job_floor_w(acc)
        span_j = (acc.power.max_w - idle_w) * max(0.0, step_s)
        total = out["accelerators"]
        for rank in range(in_job):
            # ``min(span_j, max(0.0, joules))``, the same values, without the builtins' calls
            # (a few percent of an analytic evaluation at 128 GPUs, over this loop and the next).
            joules = kernel_j.get(rank, 0.0)
            joules = joules if joules > 0.0 else 0.0
            total += idle_w * step_s + (joules if joules < span_j else span_j)
        out["accelerators"] = total + (ranks - in_job) * acc.power.idle_w * step_s
    elif acc is not None and ranks > 0:  # (a key only where the loop adds to it, as before)
        waiting = off_gpu_s or {}
        idle_w, max_w = job_floor_w(acc), acc.power.max_w
        # The same terms, their invariants (the dynamic range, whether the step has a length)
        # worked out once rather than per rank.
        span_w, timed = max_w - idle_w, step_s > 0
        total = out["accelerators"]
        for rank in range(in_job):
            busy = max(0.0, busy_s.get((rank, "compute"), 0.0) - waiting.get(rank, 0.0))
            u = min(1.0, busy / step_s) if timed else 0.0
            total += (idle_w + span_w * u) * step_s
        out["accelerators"] = total + (ranks - in_job) * acc.power.idle_w * step_s
    cpu = node.cpus.device
    per_node_ranks = max(1, node.num_accelerators)
    extra = cpu_busy_s or {}
    # Busy cores, as Fan et al.'s CPU utilisation counts them: a rank's host stream is one thread
    # (its framework's dispatch, and the batch's load on the critical path: ASSUMPTION, a data
    # loader's worker processes that prefetch off that path are not modelled), its ``ddr`` lookups
    # run on its share of every core of the node (``rank_share``, as their cost assumes).
    cores = node.cpus.count * cpu.cores
    lookup_cores = cores * rank_share(system)
    # Each rank's term with ``min(step_s, x)`` as a conditional (``_at_most``, inline), summed by
    # ``sum`` over a list of them: the same terms in the same order as ``sum`` over a generator of
    # ``_at_most`` calls, without two calls and a generator step per rank (10^2-10^4 ranks an
    # evaluation).
    host_of, extra_of = busy_s.get, extra.get
    for n in range(nodes):
        terms: list[float] = []
        for r in range(n * per_node_ranks, (n + 1) * per_node_ranks):
            host = host_of((r, "host"), 0.0)
            lookups = extra_of(r, 0.0)
            terms.append(
                (host if host < step_s else step_s) + lookup_cores * (lookups if lookups < step_s else step_s)
            )
        core_s = sum(terms)
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
                    u = _at_most(busy / step_s, 1.0) if timed else 0.0
                    total += (idle_w + span_w * u) * step_s
            out["nics"] = total
    if node.frontend_nics is not None and group is not node.frontend_nics:
        # Front-end NICs beside a back-end network (data ingestion, checkpoints, management):
        # powered all step, their traffic not modelled, so at idle.
        front = node.frontend_nics
        out["nics"] += node.nic_count(front) * nodes * front.device.power.idle_w * step_s
    # Each switch's idle power (a vertex per switch, counted once per topology: a walk over the
    # vertices of a 1024-GPU cluster's graph took a tenth of an analytic evaluation); a scale-out
    # switch's by the share of its ports the run's links take, unless the config asks for whole
    # switches (``ScaleOut.switch_power``).
    so = system.cluster.scale_out
    shared = so is not None and so.switch_power == "ports_used"
    # The scale-out switches' energy: boxes of their own, outside the nodes' power supplies.
    outside_j = 0.0
    for name, count in topology.switch_devices.items():
        if shared and so is not None and name == so.switch.name:
            used = topology.scale_out_ports_used.get(name, 0)
            switch_j = so.switch.power.idle_w * used / so.switch.ports * step_s
        else:
            switch_j = count * _switch_idle_w(system, topology, name) * step_s
        out["switches"] += switch_j
        if so is not None and name == so.switch.name:
            outside_j += switch_j
    if node.ssds is not None:
        ssd = node.ssds.device
        count = node.ssds.count * nodes
        out["ssds"] += count * ssd.power.idle_w * step_s
    platform = sized_platform(node)
    if platform is not None and nodes > 0 and step_s > 0:
        # Every component above but the scale-out switches is inside a node, behind its supplies;
        # the nodes are taken to draw alike (the mean node's load prices each one's supplies).
        inside_j = dict(out)
        inside_j["switches"] = inside_j.get("switches", 0.0) - outside_j
        per_node_s = nodes * step_s
        per_node = node_power(
            platform,
            sum(inside_j.values()) / per_node_s,
            air_cooled_w(platform, inside_j) / per_node_s,
        )
        out["platform"] += nodes * per_node.platform_w * step_s
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
