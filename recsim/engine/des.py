"""The discrete-event engine (simpy): streams, collective synchronisation, flows sharing the network.

Every node is a simpy process that waits for its predecessors (its dependencies and the previous
node of its in-order queue), then runs. Compute and host nodes take their modelled duration (or the
one the caller gives: the kernels slowed beside collectives, ``durations``); so do copies and
lookups, plus what sharing links cost them (below). A collective waits until every member of its
group has arrived, then runs once for the group:

* its alpha-beta cost ``T`` (``recsim.cost.collectives``) is what it takes on an idle network;
* its flows (``collective_flows``, the algorithm's traffic), summed per (source, destination) over
  the algorithm's phases, are put on a shared fluid network: every link's capacity is divided
  max-min fairly among all the flows in flight (``recsim.engine.network.max_min_rates``), the rates
  recomputed whenever a flow starts or ends;
* the collective finishes ``T + (t_shared - t_alone)`` after it starts, ``t_shared`` being how long
  its flows took among the others and ``t_alone`` how long they take on an idle network. With no
  other traffic this is exactly ``T``, so the DES and analytic engines agree when nothing is shared;
  concurrent collectives (the embedding all-to-all against DDP's all-reduce, jobs on an
  oversubscribed spine, a slow NIC) slow each other down.

Copies (``Transfer``) and lookups (``Embedding``) whose bytes cross topology links put them on the
same network (``_host_traffic``), routed as the utilisation report routes them
(``recsim.engine.resources.op_host_flows``): host <-> HBM over the rank's host link (GPU -> PCIe
switch -> CPU, or GPU -> CPU), a lookup's ``pcie`` bytes likewise, a peer copy as flows from (to)
the node's other accelerators; in the wire bytes their cost models charge (a PCIe copy
``bytes / PCIE_COPY_EFFICIENCY``, a UVM lookup its TLP overhead included). A host-link flow also
crosses a link of the rank's own (``FluidNetwork.share_link``), one per direction, of capacity
``Node.host_bandwidth_bytes_per_s_per_accelerator``: the rate the copy and lookup models charge,
which already prices the node's accelerators streaming together over their PCIe switch's uplink,
so copies of GPUs under one switch do not slow each other a second time, while a rank's copy, its
UVM reads and the NIC traffic of its collectives (GPUDirect RDMA: GPU -> PCIe switch -> NIC) share
its link to the switch. Links are full duplex (a directed edge each way): a host-to-device copy
meets the collective's traffic into the GPU, a device-to-host copy the traffic out of it. Such an op
finishes as a collective does: ``duration + (t_shared - t_alone)``, so alone on its links it takes
exactly its modelled time and DES equals the analytic engine where nothing shares a link. A lookup
whose cost overlaps its transfer with a slower limit (``uvm``: ``max(hbm, pcie, ddr)``) has slack:
its flows are paced to the time they may take (``CostModel.link_window_s``, a link of the op's own
of capacity ``wire / window``), so they take only the rate they use, and the op is delayed by what
sharing adds past that window, ``max(0, t_shared - window)``. The
delay is counted only above the fluid model's resolution (``_delay``). The fairness unit is the
flow, as between collectives: a copy is one flow against each of a collective's on a link.

A flow is one (source, destination) pair of a collective, NCCL's connection between two ranks (its
channels not counted, for any collective). A PXN relay's network hop is one such pair, the relay to
the remote rank, whichever local GPUs it carries bytes for: NCCL's point-to-point sends share one
network connection per (NIC, remote rank, channel) among all the local ranks that use that NIC
(src/transport/net.cc ``sendProxyConnect``: shared buffers for the p2p connections,
``NCCL_NET_SHARED_COMMS`` default 1, "let only one localrank connect to a tpRemoteRank"; the IB
plugin's multi-receive of ``NCCL_NET_IB_MAX_RECVS`` = 8), and the NIC serves its connections' queue
pairs in turn (an ASSUMPTION: the InfiniBand specification leaves the arbitration among one virtual
lane's queue pairs to the adapter). So on a rail-optimized fabric, where every byte for rail ``k``
leaves by GPU ``k``'s NIC, an all-to-all is one flow per NIC and remote rank with PXN and eight
without, and a collective beside it on the NIC (the CollNet all-reduce, one flow per NIC) gets half
the NIC with PXN where it got a ninth: on 2 rail-optimized DGX H100 nodes, dlrm-dcnv2 at batch 16384
(no interference), the backward all-to-all, issued with DDP's first bucket, took 86.5 us of flow time
alone and 168.3 us shared with PXN (the all-reduce's 4.09 MB per NIC / 50 GB/s = 81.8 us more: both
collectives' NIC bytes, one after the other at the NIC's rate) against 97.3 us without (its eight
0.54 MB flows per NIC at 8/9 of the NIC, 10.8 us more), and the step 2.597 ms against 2.526 (the
analytic engine, which charges each NIC its bytes either way, 2.515 both). (Since the DCNv2 stack's
concat, the bucket starts 12.9 us ahead and the all-to-all is 68.9 us late with PXN:
``tests/unit/test_alltoall_pxn.py`` works the figures out from the bytes.) The NIC does as much work
either way; PXN hands more of it to the all-reduce first. How many channels each collective opens
per NIC (``NCCL_NCHANNELS_PER_NET_PEER``, the CollNet channels) would weight the split and is not
modelled. The NVLink hand-over to the relay is summed with the sender's own all-to-all part to that
GPU (same pair, same efficiency); NVLink does not bind here (kept apart, the step is the same to the
float).

Summing a ring's phases into one flow per pair keeps the fluid model's cost to one allocation per
event rather than per phase; for the homogeneous phases of rings and all-to-alls it gives the same
transfer time. Speed (10^5 flows per all-to-all at 1024 GPUs): a collective's flows and their link
ids are built once per distinct collective (``Traffic``; chained steps repeat them), allocations
are memoised by the set of flows in flight, and ``t_alone`` is only simulated for a collective that
did share the network (alone all along, ``t_shared`` is ``t_alone``). A caller-owned
``DesCounters`` passed to ``run_des`` sums the events processed, for the engine benchmark.

The ops of one rank that run at the same time on different queues (a kernel on the default lane
beside one on a side lane, ``recsim.graph.build.LANE_INDEX`` or ``LANE_WGRAD``; a lookup or a copy
beside a kernel) share its HBM (``recsim.engine.hbm``): a link of the rank's own whose capacity is
the rate the cost model prices memory traffic at (HBM bandwidth x the fitted memory efficiency),
each op's HBM bytes a flow paced to its duration (as a lookup's link bytes are to their window),
shared max-min. They slow each other only while their summed demand exceeds the capacity; an op
whose flow always had its whole pace ends at its modelled time exactly, a slowed one when its bytes
are in. Only the ops that may be slowed go on a link (``_hbm_demands``: a queue runs one op at a
time, so an op whose demand and the most the rank's other queues can ask together fit is never
slowed, and leaving it off changes nothing), so most ranks, one kernel at a time, get none. Under
``sm_sharing`` (``run_des``'s ``sm_shared``) the kernels of a rank's compute lanes already hold
their measured slowdown beside each other, the HBM they take from each other included
(``recsim.cost.sm_sharing``): the link takes them as one flow (``recsim.engine.hbm.grouped_fill``)
and the filter as one group of queues, so they are slowed only for the copies and host transfers
beside them, which neither that stretch nor the collectives' (``recsim.cost.interference``) covers. The
SMs are not shared: a compute-bound GEMM asks little of HBM and is barely slowed beside a
streaming kernel, as it would not be on a GPU whose SMs the other kernel holds. What the
collectives' own kernels take from the kernels beside them (their SMs and HBM) is in the durations
(``recsim.cost.interference``, applied by ``recsim.engine.simulate`` from the contention-free
schedule, so a collective that DES slows down does not slow its neighbours further); collectives
put no flow on the HBM links, which would count it twice.

The ranks whose accelerators hang off one CPU socket share its DRAM (``recsim.engine.host_dram``)
the same way: a link per socket (the node's, for a rank with no socket) of the capacity the cost
models price host DRAM at (the node's channels at ``CPU_MEMORY_EFFICIENCY`` of their pin rate,
over its sockets), reads and writes together; each op's host DRAM bytes (``op_dram_bytes``: a
lookup's ``ddr`` bytes, ``uvm`` rows and ``uvm_caching`` misses included, a copy's bytes at each
``host`` end, a host op's bytes) a flow paced to its link window where it has one (a ``uvm``
lookup's rows stream over it), else to its duration; only the ops that may be slowed go on a link
(``_dram_demands``, the queues being every rank's of the socket). An op whose flow had its whole
pace ends at its modelled time; a slowed one is late by what its bytes took past their window,
or by what its links cost it, whichever is more (the rows stream through DRAM and PCIe at once).
The cost models already give each rank its share of the node's DRAM, so the lookups of ranks
spread evenly over the sockets fit; what binds is what those shares leave out: a copy or the next
batch's loading beside them, a socket with more than its share of the GPUs.

**What DES charges on one node that the analytic engine does not** (a session's audit, 2026-12-07,
``recsim validate --fidelity des``: every single-node MLPerf DCNv2 case slower than analytic, by
1.6 (B200) to 12.8 points (the PCIe server); the DLRM v1, DLE and TorchRec cases identical). Two
resources, split by running the validation again with ``_hbm_demands`` returning nothing:

* HBM, between the dense lane's memory-bound cross-layer kernels (``fused_mul_fma3``, asking
  0.93-0.97 of the link alone) and the side lanes beside them: the 40M-row table's index sort on
  ``LANE_INDEX`` beside the forward (217 MB in 261 us, 0.30 of the link, dgx-h100 at batch
  55,296) and the weight-gradient GEMMs on ``LANE_WGRAD`` beside the backward (62-76 MB each,
  0.32-0.47). 1.2 (the PCIe server) to 3.8 (HGX H100 4-GPU) points of each single-node DCNv2
  case; all of the gap on the dgx-h100 cases run on NVIDIA's plan (the headline 3.851 -> 4.006
  ms: +42 us in the forward, +112 in the backward; 3.964 ms, +26 and +86 us, since the link's
  capacity is the measured STREAM rate, below; ``tests/unit/test_des_hbm.py``). It is not
  counted twice: no other stretch covers these pairs (``recsim.cost.interference`` covers kernels
  beside collectives, and these kernels' durations are the analytic ones; ``sm_sharing`` is off),
  and both sides' costs were fitted stand-alone (the GEMM fit's microbenchmarks;
  ``gpu.SORT_EFFICIENCY`` on the A100 trace, where 1.9 of 276 ms of kernel time overlaps another
  stream). It is the bytes' own conservation: cross2_bwd's 287 MB and top0_wgrad's 76 MB cannot
  pass the link in less than 122 us (133 at the fit's rate, DES then 135); DES gives 127. If
  anything it is low: the SMs are not shared, and the A100 trace's overlapping kernels lost more
  (``recsim.cost.sm_sharing``: two side by side do 1.51 x one's work; here the sort and a cross
  kernel do 1.75 x). The link's capacity was one streaming kernel's fitted rate (0.814 of H100's
  HBM), under what one STREAM kernel was measured to get (Triad 0.887, ../shared/reference/
  microbench): a link cannot deliver less to two kernels than to one, so it is now the measured
  rate where there is one (the device's ``calibration.stream``, ``recsim.engine.hbm``; the second
  audit, below).
  What could lower it further, unmeasured: a sort of 1.5M keys (24 MB with its double buffer) may
  partly stay in H100's 50 MB L2, though the cross kernel beside it streams 191 MB through it.
* Links, between the backward all-to-all and the dense all-reduce, which recsim's fused runtime
  runs on a lane of its own (``LANE_DENSE``) beside it: NVSwitch ports where the a2a_bwd is on the
  critical path (HGX H200, DGX H100 on Dell's plan, DGX A100: about 1.2 points; HPE's H200 node
  3.712 -> 3.756 ms with HBM left out, its a2a_bwd 139 -> 188 us), the 4-GPU NVLink mesh (0.5-3.1
  points), and the PCIe server's switch uplinks and host-staged (SHM) routes (-9.1 -> -20.8 %
  with HBM left out: the ring all-reduce's 8 flows wait behind the all-to-all's 56 until it is
  done, so it ends about when the two would, run one after the other). Sharing links is physical;
  two collectives at full speed each over the same links, as the analytic engine has them, are
  not. But neither engine runs HugeCTR's order: its collectives go through one NCCL communicator,
  which runs them one at a time in issue order, the a2a_bwd first
  (``tests/unit/test_validation.py``, the SHARP-off note), so there the a2a_bwd runs alone and
  the all-reduce after it; a model of that order, tried in the analytic engine, was not adopted
  (same note). On the PCIe server the analytic pass (-9.1 %) rests on that free overlap;
  serialised (-18.3 %, that note) or shared (DES) the case is out of band, so something on its
  path is priced too slow, most likely its collectives over PCIe and host memory (9.4 ms of DES's
  13.3 ms critical path, the analytic's 6.1 of 11.4; 10.4 ms measured):
  ``hardware.topology.SHM_EFFICIENCY`` charges every link of a route the staged rate measured for
  one pair, whose source says the staging, not the link, was the limit (a suspect, not changed:
  whether several pairs' staged transfers share a link's rate or each keep the one pair's is not
  measured in ../shared/reference). Since 2026-12-07 both engines run HugeCTR's order (``Runtime.
  all_reduces_after_exchange``: the all-reduces wait for the a2a_bwd) and a staged pair is capped
  at its staged rate, its links charged its plain bytes (the second audit's SHM item, below): the
  links part between the a2a_bwd and the all-reduce is gone (HPE's H200 node: DES without HBM is
  the analytic step, 3.849 ms), and the PCIe server is in band in both engines (-1.2 % analytic,
  -3.0 % DES on NCCL's intra-node ring, ``DoubleBinaryTreeAllReduce.auto_for``; +9.5 / +7.3 % while
  the automatic choice could take recsim's chain there; tests/unit/test_validation.py, where
  KNOWN_GAPS is defined, has every figure).

**A second audit** (2026-12-07: both engines on the settings of the headline, the PCIe server,
HPE's n1/n2/n4, Cisco's n8, HGX H100 4-GPU, HGX H200; every op of the reported step compared) found
nothing else: the step is (a) HBM and (b) links, as above, and
* no op is both stretched beside a collective (``recsim.cost.interference``) and slowed on an HBM
  link (headline, PCIe server, HPE n2: none), so the two do not count one thing twice;
* the reported step is steady (chained steps equal to 0.1 us under both engines): no warm-up in it;
* a collective that shares nothing takes its analytic time; those that share end as the bytes on
  the shared links allow: on the PCIe server the a2a_bwd (2614 us alone) and the ring all-reduce
  (2356 us) each fill the switch uplinks at the SHM charge, and DES ends the all-reduce 3033 us late
  (the a2a_bwd 217, the row-wise reduce-scatter of ranks 1-4 433), about one after the other, as
  HugeCTR's one NCCL communicator would run them anyway: +1.68 ms a step from links, +0.19 from
  HBM. Across nodes (max-min between one NIC flow each): HPE n2 a2a_bwd and all-reduce +116 us
  each, HPE n4 +45 / +56, Cisco n8 +106 / +189, the NIC sharing the analytic engine leaves out.
Verdicts: HBM sharing is real (bytes conservation), but the link's capacity was one kernel shape's
fitted rate, under what one STREAM kernel was measured to get on A100, H100 and H200: now the
measured rate there (the device's ``calibration.stream``, ``recsim.engine.hbm``; ``validate --fidelity
des``: 45 cases 6.50 -> 6.25 % mean |error|, the DCNv2 ones -3.77 -> -3.30 % signed, the headline -11.9 ->
-11.0 %, HPE n2 +7.7 -> +8.2 %; the analytic engine does not read it). Link sharing is real given
the links' charges; two suspects in those charges, which the analytic engine's collective costs
share, are not changed:
* SHM: a staged byte takes ``1 / SHM_EFFICIENCY`` of every link of its route, so one staged ring
  flow fills a Gen5 uplink with 24.5 of its 63 GB/s, though ``SHM_EFFICIENCY``'s own source puts
  the limit in the staging (55.3 GB/s host-to-device on that host). A what-if charging the links
  the plain bytes (both engines; not a proposal: the ring all-reduce then runs a hop at 39.7 GB/s,
  above the measured pair's 24.5, so it bounds the change from above): the PCIe server 9.042 ms
  analytic (+14.6 %), 9.678 DES (+7.1 %), against 11.405 (-9.1 %) and 13.281 (-21.9 %). A model
  with the pair capped and the links charged their bytes needs several staged pairs measured at
  once. Since adopted as that model (2026-12-07, branch s34-order): a staged pair's flow is capped
  at its route's staged rate (``Flow.cap_bytes_per_s``, here a link of the flow's own), its links
  carry its plain bytes, and a PCIe rank's port is its link's rate, not the staged ring's
  (``GroupLayout.unstaged_intra_bandwidth``). The PCIe server: 8.693 ms analytic (+19.3 %, out
  of band), DES +12.4 % (in band); its all-to-all 5.23 -> 2.65 ms of the analytic critical path,
  bound by its switches' uplinks, which carry 12 staged pairs' plain bytes. Faster than the
  what-if because that left the port at the staged ring's rate. That each of a GPU's staged pairs
  keeps the one measured pair's rate is the assumption the data cannot check.
* A flow's wire bytes are its bytes over the protocol's efficiency (0.77 on NVLink and PCIe), so
  two collectives on one link together get what one alone gets; where that efficiency is NCCL's
  pipelining rather than the wire's overhead they would get more. Nothing in ../shared/reference
  runs two collectives at once.
The HBM link splits max-min: a side lane's kernel asking less than half keeps its whole pace and
the default lane's kernel takes the slowdown; if the memory system shares by outstanding requests
(Little's law), both slow by one factor. Where the critical kernel outlasts the side one (the
backward's cross kernels beside their wgrad GEMMs) the bytes decide either way; where the side one
outlasts (the index sort beside the forward's cross kernels: 26 us of the headline) it moves a part
of that. A what-if with every flow of a full link slowed by one factor (``water_fill`` replaced):
headline 3.964 -> 3.948 ms, HGX H100 4-GPU (Dell) 4.340 -> 4.330, HGX H200 3.376 -> 3.387, the
PCIe server -2.5 us: +-16 us a step either way, so the policy is left as it is.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from collections.abc import Callable, Generator, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy
from numpy.typing import NDArray
from simpy.core import EmptySchedule

from recsim.cost.collectives import Flow, collective_cost, collective_flows
from recsim.cost.model import CostModel
from recsim.engine.hbm import HbmFlow, HbmLink, hbm_capacity_bytes_per_s
from recsim.engine.host_dram import dram_of_rank
from recsim.engine.network import Scratch, _edge_index, _fill, _FlowSet, with_own_links
from recsim.engine.resources import HOST_LINK_KINDS, op_dram_bytes, op_hbm_bytes, op_host_flows
from recsim.engine.timeline import predecessors
from recsim.errors import TraceError
from recsim.graph.ir import (
    Collective,
    Compute,
    Embedding,
    ExecutionGraph,
    Host,
    Node,
    Op,
    Stream,
    Transfer,
    is_uneven_all_to_all,
)
from recsim.graph.schedule import Schedule
from recsim.hardware.topology import Topology

_DONE = 1e-9  # relative remaining bytes below which a flow counts as finished
_MEMO_FLOATS = 1 << 25  # allocations kept (wire rates and keys, in floats): 256 MiB
# Concatenated flow sets kept (``FluidNetwork._flow_set``): at most ``_SETS`` of them and
# ``_SET_ENTRIES`` (subflow, link) entries in all, the newest always. With the arrays a filling
# derives from a set (link ids, weights, offsets) an entry costs ~20 bytes, so ~80 MiB. A design
# choice: at 64 ZionEX nodes a mix of collectives with the all-to-all in it has 1.6 x 10^7 entries,
# and 16 sets kept whatever their size (the bound by count alone) took the run to 8.5 GB; keeping
# only the newest such set ran as fast (the mix in flight is the one filled again as its flows end).
_SET_ENTRIES = 1 << 22
_SETS = 16


@dataclass(eq=False)
class Traffic:
    """A collective's flows as the network moves them, built once and shared by every instance of
    the collective (a step's collectives repeat in every chained step).

    ``wire_bytes[i]`` goes from ``srcs[i]`` to ``dsts[i]``; ``paths`` holds the subflows' link ids.
    ``alone_s`` (filled in when first needed) is how long the flows take on an idle network.
    """

    uid: int
    srcs: list[str]
    dsts: list[str]
    wire_bytes: NDArray[np.float64]
    paths: _FlowSet
    alone_s: float | None = None


@dataclass(eq=False)
class _Job:
    traffic: Traffic
    live: NDArray[np.int64] | None  # indices of the flows still in flight (None: all of them)
    remaining: NDArray[np.float64]  # wire bytes left, per live flow
    done: simpy.Event
    shared: bool = False  # ever sharing the network with another job

    def live_key(self) -> bytes | None:
        """The live flows, compactly (a key of the allocation memo)."""
        if self.live is None:
            return None
        mask = np.zeros(self.traffic.paths.n_flows, dtype=bool)
        mask[self.live] = True
        return np.packbits(mask).tobytes()

    def wire_bytes(self) -> NDArray[np.float64]:
        wire = self.traffic.wire_bytes
        return wire if self.live is None else wire[self.live]


@dataclass
class FluidNetwork:
    """Flows of all collectives, copies and lookups in flight, sharing the topology's links (and the
    ``share_link`` bounds) max-min fairly.

    Allocations are memoised by the set of flows in flight (which collectives' traffic, which of
    their flows still live): the same collectives meet in the same way in every chained step, and
    a collective's idle-network time (``alone_s``) retraces the rounds it ran alone in. A memoised
    allocation is the very array the filling computed, so memoisation changes no result.
    """

    env: simpy.Environment
    topology: Topology
    jobs: list[_Job] = field(default_factory=list)
    wake: simpy.Event | None = None
    allocations: int = 0  # rounds (rates recomputed because a flow started or ended)
    fills: int = 0  # progressive fillings actually computed (allocations not found in the memo)
    capacity: np.ndarray | None = None  # per link id (``recsim.engine.network._EdgeIndex``)
    _uids: Iterator[int] = field(default_factory=itertools.count)
    _memo: dict[tuple[tuple[int, bytes | None], ...], NDArray[np.float64]] = field(default_factory=dict)
    _memo_floats: int = 0
    _sets: dict[tuple[int, ...], _FlowSet] = field(default_factory=dict)  # oldest first
    _set_entries: int = 0
    _scratch: Scratch = field(default_factory=Scratch)  # the fillings' copy of a set's weights
    # Links that are no edge of the topology (``share_link``): ids after the topology's edges.
    _shares: dict[object, int] = field(default_factory=dict)
    _share_capacity: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.wake = self.env.event()
        self.env.process(self._run())

    def traffic(self, flows: Sequence[Flow]) -> Traffic | None:
        """``flows`` ready to submit (those with bytes between two vertices); None if none has any.

        A flow from a vertex to itself crosses no link and costs nothing here (the collectives
        drop them before they get here; ``transfer`` is public). Bytes that are negative or not
        finite are refused, as ``simulate_flows_detailed`` refuses them, rather than dropped."""
        for f in flows:
            if f.bytes < 0 or not math.isfinite(f.bytes):
                raise ValueError(f"bad flow {f}: bytes must be finite and >= 0")
        live = [f for f in flows if f.bytes > 0 and f.src != f.dst]
        caps = np.array([f.cap_bytes_per_s for f in live], dtype=float)
        return self.traffic_of_arrays(
            [f.src for f in live],
            [f.dst for f in live],
            np.array([f.wire_bytes for f in live], dtype=float),
            caps if np.isfinite(caps).any() else None,
        )

    def traffic_of_arrays(
        self,
        srcs: list[str],
        dsts: list[str],
        wire_bytes: NDArray[np.float64],
        caps: NDArray[np.float64] | None = None,
    ) -> Traffic | None:
        """Flows given as arrays (all with bytes), ready to submit; None if there are none.
        ``caps[i]``: flow ``i``'s rate limit of its own (``Flow.cap_bytes_per_s``, inf: none), a
        link of the flow's own of that capacity (``share_link``, ``with_own_links``); None: none has
        one. The link is the traffic's: one traffic submitted twice at once would share it."""
        if not srcs:
            return None
        uid = next(self._uids)
        paths = _FlowSet.of_pairs(srcs, dsts, self.topology)
        if caps is not None:
            own = np.full(len(srcs), -1, dtype=np.int64)
            for i in np.flatnonzero(np.isfinite(caps)).tolist():
                own[i] = self.share_link(("own", uid, i), float(caps[i]))
            paths = with_own_links(paths, own)
        return Traffic(uid, srcs, dsts, wire_bytes, paths)

    def traffic_of_paths(self, paths: _FlowSet, wire_bytes: NDArray[np.float64]) -> Traffic:
        """Flows already routed (``paths``: their subflows' link ids, which may name ``share_link``
        links), ``wire_bytes[i]`` on flow ``i``, ready to submit."""
        return Traffic(next(self._uids), [], [], wire_bytes, paths)

    def share_link(self, key: object, capacity_bytes_per_s: float) -> int:
        """The id of a link that is no edge of the topology, ``key``'s (made with
        ``capacity_bytes_per_s`` on first use): a bound that every flow through it shares max-min
        fairly with the others, as it shares a real link (``run_des``: a rank's share of its PCIe
        switch's uplink)."""
        found = self._shares.get(key)
        if found is None:
            if not capacity_bytes_per_s > 0 or not math.isfinite(capacity_bytes_per_s):
                raise ValueError(f"bad capacity {capacity_bytes_per_s!r} for {key!r}")
            found = self._shares[key] = len(_edge_index(self.topology).edges) + len(self._share_capacity)
            self._share_capacity.append(capacity_bytes_per_s)
            self.capacity = None  # read again, with the new link, at the next filling
        return found

    def transfer(self, flows: Sequence[Flow]) -> simpy.Event:
        """An event that fires when ``flows`` (started now) have all been delivered."""
        traffic = self.traffic(flows)
        if traffic is None:
            done = self.env.event()
            done.succeed()
            return done
        return self.submit(traffic).done

    def submit(self, traffic: Traffic) -> _Job:
        """Start ``traffic`` now; its job's ``done`` fires when every flow has been delivered."""
        job = _Job(traffic, None, traffic.wire_bytes.copy(), self.env.event())
        self.jobs.append(job)
        assert self.wake is not None
        if not self.wake.triggered:
            self.wake.succeed()
        return job

    def _flow_set(self, traffics: Sequence[Traffic]) -> _FlowSet:
        """The flows of ``traffics`` one after the other, kept for the next fillings of that mix
        (``_SETS``, ``_SET_ENTRIES``: the newest sets, and the newest always, since the mix in
        flight is filled again as its flows finish)."""
        if len(traffics) == 1:
            return traffics[0].paths
        key = tuple(t.uid for t in traffics)
        found = self._sets.get(key)
        if found is None:
            size = sum(len(t.paths.cols) for t in traffics)
            sets = self._sets
            # Room made first, so that the sets let go are freed before the new one is made.
            while sets and (len(sets) >= _SETS or self._set_entries + size > _SET_ENTRIES):
                oldest = next(iter(sets))
                self._set_entries -= len(sets.pop(oldest).cols)
            found = sets[key] = _FlowSet.concat([t.paths for t in traffics])
            self._set_entries += size
        return found

    def _rates(self, jobs: Sequence[_Job]) -> NDArray[np.float64]:
        """Wire rate of every live flow of ``jobs``, in job then flow order."""
        key = tuple((job.traffic.uid, job.live_key()) for job in jobs)
        found = self._memo.get(key)
        if found is not None:
            return found
        if self.capacity is None:  # read when traffic first flows: the topology is fixed by then
            self.capacity = np.concatenate([_edge_index(self.topology).capacity(), self._share_capacity])
        fs = self._flow_set([job.traffic for job in jobs])
        live: NDArray[np.int64] | None = None
        if any(job.live is not None for job in jobs):
            parts = []
            offset = 0
            for job in jobs:
                n = job.traffic.paths.n_flows
                parts.append(np.arange(offset, offset + n) if job.live is None else job.live + offset)
                offset += n
            live = np.concatenate(parts)
        wire = _fill(fs, self.topology, self.capacity, live, self._scratch).wire
        if live is not None:
            wire = wire[live]
        self.fills += 1
        # The key's masks count too (a bit per flow of each job): late in an all-to-all of 10^5
        # flows a handful are live, and the key then outweighs the rates it finds.
        size = len(wire) + sum(len(mask) for _, mask in key if mask is not None) // 8
        if self._memo_floats + size > _MEMO_FLOATS:
            self._memo.clear()
            self._memo_floats = 0
        self._memo[key] = wire
        self._memo_floats += size
        return wire

    def alone_s(self, traffic: Traffic) -> float:
        """How long ``traffic`` takes with nothing else on the network (memoised on it)."""
        if traffic.alone_s is None:
            job = _Job(traffic, None, traffic.wire_bytes.copy(), self.env.event())
            elapsed = 0.0
            while job.remaining.size:
                wire = self._rates([job])
                dt = float(np.min(job.remaining / wire))
                elapsed += dt
                job.remaining = job.remaining - wire * dt
                keep = job.remaining > _DONE * job.wire_bytes()
                if not keep.all():
                    job.live = np.flatnonzero(keep) if job.live is None else job.live[keep]
                    job.remaining = job.remaining[keep]
            traffic.alone_s = elapsed
        return traffic.alone_s

    def _run(self) -> Generator[simpy.Event, Any, None]:
        while True:
            if not self.jobs:
                self.wake = self.env.event()
                yield self.wake
                continue
            running = list(self.jobs)  # jobs submitted while we wait join at the next round
            if len(running) > 1:
                for job in running:
                    job.shared = True
            wire = self._rates(running)
            self.allocations += 1
            remaining = np.concatenate([job.remaining for job in running])
            dt = float(np.min(remaining / wire))
            self.wake = self.env.event()
            start = self.env.now
            timer = self.env.timeout(dt)
            fired = yield timer | self.wake
            # A round whose timer fired moved ``dt`` of every flow's bytes, which finishes its
            # first flow, even where the clock cannot tell ``start + dt`` from ``start``: a few
            # bytes left late in a run (``dt`` under half a float step of ``now``) would else move
            # nothing and repeat the round for ever (a tester's hang: a 1,000x straggler).
            elapsed = dt if timer in fired else self.env.now - start
            offset = 0
            still: list[_Job] = []
            for job in running:
                n = len(job.remaining)
                job.remaining = np.maximum(0.0, job.remaining - wire[offset : offset + n] * elapsed)
                offset += n
                finished = job.remaining <= _DONE * job.wire_bytes()
                if finished.all():
                    job.done.succeed()
                    continue
                if finished.any():
                    keep = ~finished
                    job.live = np.flatnonzero(keep) if job.live is None else job.live[keep]
                    job.remaining = job.remaining[keep]
                still.append(job)
            self.jobs = still + self.jobs[len(running) :]


def _aggregate(
    flows: Sequence[Flow],
) -> tuple[list[str], list[str], NDArray[np.float64], NDArray[np.float64] | None]:
    """One flow per (source, destination, efficiency, rate limit), the bytes of every phase summed,
    as (sources, destinations, wire bytes, each flow's ``Flow.cap_bytes_per_s``: None where none
    has one); flows without bytes left out.

    A PXN relay's network hops from every local sender to one remote rank are one flow, as they are
    one NCCL connection (the module docstring: fairness on the relay's NIC is per connection). A
    pair through host memory (NCCL's SHM) is one flow too, its phases' bytes at its staging's rate
    at most, as its one connection moves them."""
    sums: dict[tuple[str, str, float, float], float] = {}
    get = sums.get
    for f in flows:
        key = (f.src, f.dst, f.efficiency, f.cap_bytes_per_s)
        sums[key] = get(key, 0.0) + f.bytes
    srcs: list[str] = []
    dsts: list[str] = []
    wire: list[float] = []
    caps: list[float] = []
    for (src, dst, eff, cap), nbytes in sums.items():
        if not math.isfinite(nbytes) or nbytes < 0 or not 0 < eff <= 1 or not cap > 0:
            # A bug in an algorithm's flows (a NaN share once dropped a tree's traffic silently).
            raise AssertionError(
                f"bad flows {src} -> {dst}: {nbytes!r} bytes at efficiency {eff!r}, cap {cap!r}"
            )
        if nbytes > 0:
            srcs.append(src)
            dsts.append(dst)
            wire.append(nbytes / eff)  # ``Flow.wire_bytes``
            caps.append(cap)
    limited = any(math.isfinite(c) for c in caps)
    return srcs, dsts, np.array(wire, dtype=float), np.array(caps, dtype=float) if limited else None


def _delay(shared_s: float, alone_s: float) -> float:
    """What sharing the network cost a job: ``shared_s - alone_s``, 0 where that is within the fluid
    model's resolution (``_DONE`` of ``alone_s``: a flow counts as delivered with that share of its
    bytes left). A job whose flows met others only on other links took its rounds as the others'
    flows started and ended, and the pieces of its time sum to ``alone_s`` but for rounding: its
    finish would else move by a few ulps (a 2-node DES step did, beside copies on other links)."""
    extra = shared_s - alone_s
    return extra if extra > _DONE * alone_s else 0.0


#: The ops whose bytes cross topology links besides the collectives: copies and lookups.
_MOVERS = (Transfer, Embedding)


def _host_traffic(
    node: Node, cost: CostModel, network: FluidNetwork, host_share: float, window_s: float | None
) -> Traffic | None:
    """The flows of a copy or a lookup of ``node.rank`` on the network, None if it moves nothing
    over a link: routed as the utilisation report routes them (``op_host_flows``), in the wire
    bytes its cost model charges (a PCIe copy ``bytes / PCIE_COPY_EFFICIENCY``, a lookup its
    ``pcie`` bytes, TLP overhead included). A flow over the rank's host link also crosses the
    rank's share of it in that direction (``FluidNetwork.share_link``, capacity ``host_share``:
    ``Node.host_bandwidth_bytes_per_s_per_accelerator``, the rate the copy and lookup models charge,
    which already prices the node's accelerators streaming together over their PCIe switch's
    uplink): without that bound a copy alone would move at the full x16 rate and two GPUs under
    one switch, copying together as the cost model assumes, would be slowed a second time.

    ``window_s`` (``CostModel.link_window_s``): how long the op's link bytes may take, where its
    cost overlaps them with a slower limit (a UVM lookup bound by host DRAM streams its rows at
    DRAM speed). Such a flow also crosses a link of the op's own of capacity ``wire / window_s``:
    it asks the host link only for the rate it uses, leaving the rest to the flows beside it."""
    flows = op_host_flows(node.op, node.rank, cost)
    cols: list[NDArray[np.int64]] = []
    lens: list[NDArray[np.int64]] = []
    paths: list[int] = []
    wire: list[float] = []
    for f in flows:
        c = np.asarray(f.cols, dtype=np.int64)
        n = np.asarray(f.lens, dtype=np.int64)
        if f.kind in HOST_LINK_KINDS and host_share > 0:
            share = network.share_link((node.rank, f.kind), host_share)
            c, n = np.append(c, share), n + 1  # one path: the share is its last link
            if window_s is not None and f.wire_bytes / window_s < host_share:
                pace = network.share_link((node.rank, f.kind, id(node.op), window_s), f.wire_bytes / window_s)
                c, n = np.append(c, pace), n + 1
        cols.append(c)
        lens.append(n)
        paths.append(len(n))
        wire.append(f.wire_bytes)
    if not wire:
        return None
    flow_set = _FlowSet(np.concatenate(cols), np.concatenate(lens), np.array(paths, dtype=np.int64))
    return network.traffic_of_paths(flow_set, np.array(wire, dtype=float))


@dataclass
class DesCounters:
    """Work of the DES engine, summed over the runs it is passed to: benchmarks read it (events per
    second of wall time); the model never does."""

    runs: int = 0
    events: int = 0  # simpy events processed
    allocations: int = 0  # network rounds (rates recomputed)
    fills: int = 0  # max-min fillings computed (the other rounds found theirs in the memo)
    hbm_flows: int = 0  # ops put on their rank's HBM link
    hbm_rounds: int = 0  # HBM rounds (a link's rates recomputed)
    # the most of a link's capacity its flows were ever given (<= 1; more under ``sm_sharing``,
    # whose compute lanes' kernels share a link as one flow: ``recsim.engine.hbm``)
    hbm_peak_use: float = 0.0
    dram_flows: int = 0  # ops put on their socket's host DRAM link
    dram_rounds: int = 0  # host DRAM rounds (a link's rates recomputed)
    dram_peak_use: float = 0.0  # the most of a DRAM link's capacity its flows were ever given (<= 1)
    wall_s: float = 0.0  # wall time spent in ``run_des``


# A rate demand on a shared link: (node id, link, the queue that runs the op, its pace).
_Demand = tuple[int, Hashable, Hashable, float]


def _link_loads(
    graph: ExecutionGraph,
    skipped: tuple[type[Op], type[Op]],
    bytes_of: Callable[[Op, CostModel], float],
    cost: CostModel,
    duration_of: Callable[[Node], float],
) -> Iterator[tuple[Node, float, float]]:
    """The nodes that load a memory link (``_hbm_demands``' HBM, ``_dram_demands``' host DRAM), each
    with its op's bytes on the link (``bytes_of``) and its duration: every node but those whose op is
    of a ``skipped`` type, with both figures positive (no bytes or no time asks nothing of the link).
    Ops are shared between nodes, so their bytes are found once per op."""
    first, second = skipped
    by_op: dict[int, float] = {}
    for node in graph.nodes:
        op = node.op
        if type(op) is first or type(op) is second:
            continue
        nbytes = by_op.get(id(op))
        if nbytes is None:
            nbytes = by_op[id(op)] = bytes_of(op, cost)
        if nbytes <= 0:
            continue
        duration = duration_of(node)
        if duration <= 0:
            continue
        yield node, nbytes, duration


def _sm_shared(node: Node) -> bool:
    """Whether ``node`` is a kernel whose slowdown beside the kernels of its rank's other compute
    lanes ``recsim.cost.sm_sharing`` prices (a ``Compute`` or ``Embedding`` on the compute stream)."""
    return node.stream is Stream.COMPUTE and type(node.op) in (Compute, Embedding)


def _hbm_demands(
    graph: ExecutionGraph,
    cost: CostModel,
    duration_of: Callable[[Node], float],
    capacity: float,
    sm_shared: bool = False,
) -> dict[int, float]:
    """The HBM bytes of the ops that go on their rank's HBM link (``recsim.engine.hbm``), by node id:
    those that may get less than they ask for. One queue runs one op at a time, so the demand on a
    rank's link never exceeds the sum over its queues of the most any op of the queue asks for
    (its bytes over its duration, at most ``capacity``). An op asking ``pace`` on queue ``q`` can
    then be slowed only if ``pace`` + that sum over the other queues exceeds the capacity; an op
    that cannot be slowed leaves every flow beside it its whole pace too (the demand fits while it
    runs), so leaving it off changes nothing: its link never sees it. Most ranks run one kernel at a
    time on one queue and get no link at all; collectives put nothing on it (their kernels' HBM use
    is in the interference stretch). ``sm_shared`` (``sm_sharing`` on): the compute lanes' kernels
    (``_sm_shared``) share the link as one flow (``recsim.engine.hbm.grouped_fill``), so their
    queues are one group (``_may_be_slowed``), apart from the other ops of those lanes."""
    demands: list[_Demand] = []
    payload: dict[int, float] = {}
    for node, nbytes, duration in _link_loads(graph, (Collective, Host), op_hbm_bytes, cost, duration_of):
        # The queue is ``queue_of`` within the rank; under ``sm_shared`` a compute lane's kernels
        # count as a queue of their own in the group (a queue split in two only loosens the bound).
        queue: Hashable = (node.stream, node.lane)
        if sm_shared and _sm_shared(node):
            queue = (_SM_GROUP, node.lane)
        demands.append((node.id, node.rank, queue, min(nbytes / duration, capacity)))
        payload[node.id] = nbytes
    group_of = _sm_group if sm_shared else None
    return {i: payload[i] for i in _may_be_slowed(demands, lambda rank: capacity, group_of)}


#: The queue tag of the compute lanes' kernels that share a link as one flow (``_hbm_demands``).
_SM_GROUP = "sm_shared"


def _sm_group(queue: Hashable) -> bool:
    """Whether ``queue`` (a queue key of ``_hbm_demands``) is a compute lane's kernels under
    ``sm_sharing``."""
    return isinstance(queue, tuple) and queue[0] == _SM_GROUP


def _dram_demands(
    graph: ExecutionGraph,
    cost: CostModel,
    duration_of: Callable[[Node], float],
    window_of: Callable[[Node, float], float | None],
    dram_of: Callable[[int], tuple[str, float]],
) -> dict[int, tuple[float, float]]:
    """The host DRAM bytes and pacing window of the ops that go on their socket's DRAM link
    (``recsim.engine.host_dram``), by node id: those that may get less than they ask for, as
    ``_hbm_demands`` finds them, the queues being every (rank, stream, lane) of the ranks on one
    DRAM (``dram_of``: a rank's DRAM and its capacity). An op's window is its link window where it
    has one (``window_of``: a ``uvm`` lookup streams its rows over it), else its duration."""
    demands: list[_Demand] = []
    payload: dict[int, tuple[float, float]] = {}
    capacity_of: dict[Hashable, float] = {}
    for node, nbytes, duration in _link_loads(graph, (Collective, Compute), op_dram_bytes, cost, duration_of):
        window = window_of(node, duration) if type(node.op) is Embedding else None
        window = duration if window is None else window
        dram, capacity = dram_of(node.rank)
        capacity_of[dram] = capacity
        queue = (node.rank, node.stream, node.lane)
        demands.append((node.id, dram, queue, min(nbytes / window, capacity)))
        payload[node.id] = (nbytes, window)
    return {i: payload[i] for i in _may_be_slowed(demands, capacity_of.__getitem__)}


def _may_be_slowed(
    demands: list[_Demand],
    capacity_of: Callable[[Hashable], float],
    grouped: Callable[[Hashable], bool] | None = None,
) -> list[int]:
    """The node ids among ``demands`` that may get less than their pace on their link. One queue
    runs one op at a time, so a link's demand never exceeds the sum over its queues of the most any
    op of the queue asks; an op can be slowed only if its pace plus that sum over the link's other
    queues exceeds the capacity (a link with one queue slows nothing). Paces that fit but for
    rounding are not slowed, as ``water_fill`` gives them their whole pace.

    ``grouped``: the queues whose ops share the link as one flow (``hbm.grouped_fill``), asking at
    most the capacity. Their sum ``G`` counts as ``min(G, capacity)`` beside the other queues, and
    they are not slowed for each other: a grouped op may be slowed only if ``min(G, capacity)``
    and the other queues' sum pass the capacity (then all the link's grouped ops go on it, the
    group's pace being theirs together), an other op if its pace, ``min(G, capacity)`` and the
    rest do."""
    most: dict[Hashable, dict[Hashable, float]] = defaultdict(dict)
    for _, link, queue, pace in demands:
        queues = most[link]
        if pace > queues.get(queue, 0.0):
            queues[queue] = pace
    if grouped is not None:
        return _may_be_slowed_grouped(demands, capacity_of, grouped, most)
    totals = {link: math.fsum(queues.values()) for link, queues in most.items() if len(queues) > 1}
    out: list[int] = []
    for node_id, link, queue, pace in demands:
        total = totals.get(link)
        if total is not None and pace + (total - most[link][queue]) > capacity_of(link) * (1.0 + _DONE):
            out.append(node_id)
    return out


def _may_be_slowed_grouped(
    demands: list[_Demand],
    capacity_of: Callable[[Hashable], float],
    grouped: Callable[[Hashable], bool],
    most: dict[Hashable, dict[Hashable, float]],
) -> list[int]:
    """``_may_be_slowed`` with ``grouped`` queues (its docstring), from the most each queue asks."""
    group_sum: dict[Hashable, float] = {}
    other_sum: dict[Hashable, float] = {}
    for link, queues in most.items():
        group_sum[link] = math.fsum(p for q, p in queues.items() if grouped(q))
        other_sum[link] = math.fsum(p for q, p in queues.items() if not grouped(q))
    out: list[int] = []
    for node_id, link, queue, pace in demands:
        capacity = capacity_of(link)
        together = min(group_sum[link], capacity)
        if grouped(queue):
            ask = together + other_sum[link] if other_sum[link] > 0 else 0.0
        else:
            ask = pace + together + (other_sum[link] - most[link][queue])
        if ask > capacity * (1.0 + _DONE):
            out.append(node_id)
    return out


def _run_counting(env: simpy.Environment) -> int:
    """``env.run()`` (until no event is left), returning how many events it processed."""
    step = env.step
    events = 0
    try:
        while True:
            step()
            events += 1
    except EmptySchedule:
        return events


def _signature(parts: Sequence[Collective]) -> tuple[object, ...]:
    """Everything of a collective's parts the flows depend on: all fields but the key."""
    return tuple((p.op, p.group, p.bytes, p.dtype, p.send_bytes, p.recv_bytes, p.algorithm) for p in parts)


def _identity(parts: Sequence[Collective]) -> tuple[object, ...]:
    """``_signature`` with the tuples by identity: cheap, and equal only if the signatures are
    (chained steps share their collectives' group and split tuples). Only valid while ``parts``
    are alive, which the graph guarantees during a run."""
    return tuple(
        (p.op, id(p.group), p.bytes, p.dtype, id(p.send_bytes), id(p.recv_bytes), p.algorithm) for p in parts
    )


def run_des(
    graph: ExecutionGraph,
    cost: CostModel,
    counters: DesCounters | None = None,
    durations: Mapping[int, float] | None = None,
    sm_shared: bool = False,
) -> Schedule:
    """Simulate ``graph``; returns the start and finish of every node (``counters``, if given,
    accumulates the run's work). ``durations``: by node id, for every node, what a node other than a
    collective takes instead of its cost (the kernels slowed beside collectives,
    ``recsim.engine.simulate``); None: the costs. ``sm_shared``: the durations hold the kernels'
    slowdowns beside their rank's other compute lanes (``recsim.cost.sm_sharing``), so the HBM link
    does not slow those kernels for each other again (``recsim.engine.hbm``)."""
    wall = time.perf_counter()
    env = simpy.Environment()
    topology = cost.topology
    network = FluidNetwork(env, topology)
    preds = predecessors(graph)
    done: dict[int, simpy.Event] = {n.id: env.event() for n in graph.nodes}
    start: dict[int, float] = {}
    finish: dict[int, float] = {}
    members: dict[str, list[Node]] = defaultdict(list)
    for n in graph.nodes:
        if isinstance(n.op, Collective):
            members[n.op.key].append(n)
    arrived: dict[str, list[simpy.Event]] = {key: [] for key in members}
    # A collective's traffic, built once per distinct collective (see ``Traffic``).
    by_identity: dict[tuple[object, ...], Traffic | None] = {}
    by_value: dict[tuple[object, ...], Traffic | None] = {}
    keep_alive: list[list[Collective]] = []

    def traffic_of(parts: list[Collective]) -> Traffic | None:
        ident = _identity(parts)
        if ident in by_identity:
            return by_identity[ident]
        signature = _signature(parts)
        if signature in by_value:
            found = by_value[signature]
        else:
            ab = collective_cost(parts, topology)  # the parts' algorithm is a preference
            srcs, dsts, wire, caps = _aggregate(collective_flows(parts, topology, ab.algorithm))
            found = by_value[signature] = network.traffic_of_arrays(srcs, dsts, wire, caps)
        by_identity[ident] = found
        keep_alive.append(parts)
        return found

    # A copy's or a lookup's traffic, built once per (op, rank, window) (see ``_host_traffic``).
    host_traffic: dict[tuple[int, int, float | None], Traffic | None] = {}
    host_share = cost.system.node.host_bandwidth_bytes_per_s_per_accelerator

    # The lookups' link windows, by (op, duration): every step's instance of an op asks again.
    windows: dict[tuple[int, float], float | None] = {}

    def window_of(node: Node, duration: float) -> float | None:
        """The op's link window (``CostModel.link_window_s``), None where it is none or empty."""
        key = (id(node.op), duration)
        if key not in windows:
            window = cost.link_window_s(node.op, duration)
            windows[key] = window if window is not None and window > 0 else None
        return windows[key]

    def moved_by(node: Node, window: float | None) -> Traffic | None:
        key = (id(node.op), node.rank, window)
        if key not in host_traffic:
            host_traffic[key] = _host_traffic(node, cost, network, host_share, window)
        return host_traffic[key]

    def duration_of(node: Node) -> float:
        return cost.duration_s(node) if durations is None else durations[node.id]

    # HBM links: only for the ops that may be slowed on them (``_hbm_demands``), made on first use.
    accelerator = cost.system.accelerator
    hbm_capacity = hbm_capacity_bytes_per_s(accelerator) if accelerator is not None else 0.0
    hbm_demand = _hbm_demands(graph, cost, duration_of, hbm_capacity, sm_shared) if hbm_capacity > 0 else {}
    hbm_links: dict[int, HbmLink] = {}

    def hbm_link(rank: int) -> HbmLink:
        link = hbm_links.get(rank)
        if link is None:
            link = hbm_links[rank] = HbmLink(env, hbm_capacity)
        return link

    # Host DRAM links, one per socket (``recsim.engine.host_dram``): likewise only for the ops that
    # may be slowed on them, made on first use.
    drams: dict[int, tuple[str, float]] = {}

    def dram_of(rank: int) -> tuple[str, float]:
        found = drams.get(rank)
        if found is None:
            found = drams[rank] = dram_of_rank(topology, cost.system, rank)
        return found

    dram_demand = _dram_demands(graph, cost, duration_of, window_of, dram_of)
    dram_links: dict[str, HbmLink] = {}

    def dram_link(rank: int) -> HbmLink:
        name, capacity = dram_of(rank)
        link = dram_links.get(name)
        if link is None:
            link = dram_links[name] = HbmLink(env, capacity)
        return link

    def compute(node: Node) -> Generator[simpy.Event, Any, None]:
        yield simpy.AllOf(env, [done[p] for p in preds[node.id]])
        begin = start[node.id] = env.now
        duration = duration_of(node)
        hbm_bytes = hbm_demand.get(node.id)
        hbm: HbmFlow | None = None
        if hbm_bytes is not None:
            hbm = hbm_link(node.rank).submit(hbm_bytes, duration, sm_shared and _sm_shared(node))
        dram_bytes = dram_demand.get(node.id)
        dram: HbmFlow | None = None
        if dram_bytes is not None:
            dram = dram_link(node.rank).submit(*dram_bytes)
        mover = type(node.op) in _MOVERS and duration > 0
        window = window_of(node, duration) if mover else None
        traffic = moved_by(node, window) if mover else None
        if traffic is None:
            yield env.timeout(duration)
        else:
            # As a collective: its modelled time, and what sharing its links cost its flows past
            # the time they may take (their window, paced to it; else their idle-network time).
            timer = env.timeout(duration)
            job = network.submit(traffic)
            yield job.done
            extra = 0.0
            if job.shared:
                alone = network.alone_s(traffic)
                extra = _delay(env.now - begin, alone if window is None else max(window, alone))
            if extra > 0:
                end = begin + duration + extra
                if env.now < end:
                    yield env.timeout(end - env.now)
            elif not timer.processed:
                yield timer  # alone on its links: exactly its modelled time
        if dram is not None:
            # Its DRAM bytes, paced to their window: given their whole pace all along, they are in
            # (but for rounding) and cost nothing; slowed, the op is late by what they took past
            # the window (as its link bytes are), whichever of the two is later.
            link = dram_link(node.rank)
            late = 0.0
            if not dram.done.triggered and link.unslowed(dram):
                link.settle(dram)
            else:
                if not dram.done.triggered:
                    yield dram.done
                late = _delay(dram.delivered_s - begin, dram.window_s)
            end = begin + duration + late
            if env.now < end:
                yield env.timeout(end - env.now)
        if hbm is not None and not hbm.done.triggered:
            # Its modelled time is over (and what the network added): given its whole pace all
            # along, its bytes are in (but for rounding); slowed, it ends when they are.
            link = hbm_links[node.rank]
            if link.unslowed(hbm):
                link.settle(hbm)
            else:
                yield hbm.done
        finish[node.id] = env.now
        done[node.id].succeed()

    def member(node: Node, arrival: simpy.Event) -> Generator[simpy.Event, Any, None]:
        yield simpy.AllOf(env, [done[p] for p in preds[node.id]])
        arrival.succeed()

    def collective(key: str, nodes: list[Node]) -> Generator[simpy.Event, Any, None]:
        yield simpy.AllOf(env, arrived[key])
        begin = env.now
        parts: list[Collective] | None = [n.op for n in nodes if isinstance(n.op, Collective)]
        base = cost.collective_members_s(nodes)
        extra = 0.0
        if any(is_uneven_all_to_all(p) for p in parts or ()):
            # An uneven all-to-all's flows are its traffic matrix, rows in group order; with parts
            # missing (a one-rank trace) there is no matrix to move, only its base time.
            parts = cost.ordered_parts(nodes)
        if parts and len(parts[0].group) > 1 and base > 0:
            traffic = traffic_of(parts)
            if traffic is not None:
                t0 = env.now
                job = network.submit(traffic)
                yield job.done
                # Alone all along, the flows took their idle-network time: nothing to add (and
                # nothing to simulate again).
                if job.shared:
                    extra = _delay(env.now - t0, network.alone_s(traffic))
        end = begin + base + extra
        if env.now < end:
            yield env.timeout(end - env.now)
        for n in nodes:
            start[n.id] = begin
            finish[n.id] = env.now
            done[n.id].succeed()

    for key, nodes in members.items():
        for n in nodes:
            ev = env.event()
            arrived[key].append(ev)
            env.process(member(n, ev))
        env.process(collective(key, nodes))
    for n in graph.nodes:
        if not isinstance(n.op, Collective):
            env.process(compute(n))
    events = _run_counting(env)
    if counters is not None:
        counters.runs += 1
        counters.events += events
        counters.allocations += network.allocations
        counters.fills += network.fills
        counters.hbm_flows += len(hbm_demand)
        for link in hbm_links.values():
            counters.hbm_rounds += link.rounds
            counters.hbm_peak_use = max(counters.hbm_peak_use, link.peak_use / link.capacity)
        counters.dram_flows += len(dram_demand)
        for link in dram_links.values():
            counters.dram_rounds += link.rounds
            counters.dram_peak_use = max(counters.dram_peak_use, link.peak_use / link.capacity)
        counters.wall_s += time.perf_counter() - wall
    if len(finish) != len(graph.nodes):
        waiting = [n for n in graph.nodes if n.id not in finish][:4]
        names = ", ".join(f"{n.name}@rank{n.rank}" for n in waiting)
        raise TraceError(
            "the graph cannot be simulated: a dependency cycle or collectives issued in different "
            f"orders on different ranks (waiting: {names})"
        )
    return Schedule(start, finish)


def with_nic_speed(topology: Topology, vertex: str, factor: float) -> Topology:
    """A copy of ``topology`` whose NIC ``vertex`` runs ``factor`` times its speed (a straggler)."""
    graph = topology.graph.copy()
    for u, v in list(graph.in_edges(vertex)) + list(graph.out_edges(vertex)):
        data = dict(graph.edges[u, v])
        data["bandwidth_bytes_per_s"] *= factor
        graph.edges[u, v].update(data)
    return Topology(topology.system, graph)


__all__ = ["DesCounters", "FluidNetwork", "Traffic", "run_des", "with_nic_speed"]
