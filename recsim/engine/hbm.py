"""HBM as a shared resource of the DES engine: one link per rank, shared by the ops of that rank
that run at the same time on different queues (``recsim.engine.des``).

**Capacity.** What the part's HBM delivers to its ops together (``hbm_capacity_bytes_per_s``): the
rate the cost model prices one kernel's memory traffic at (the accelerator's HBM bandwidth x the
GEMM fit's ``memory_efficiency``; ``recsim.cost.compute``: the memory term of every kernel's
roofline, and the element-wise, optimizer and dense-update kernels' streaming rate), or the rate one
STREAM kernel was measured to get on the part where ../shared/reference has it (the device's
``calibration.stream``: A100-80GB, H100, H200), whichever is more. The fit is a kernel shape's rate,
5-10 % under those STREAM rates; a link of the fit's rate would deliver less to two kernels than one
was measured to get. A memory-bound kernel alone moves its bytes at the fit's rate, so 0.88-0.94 of
the capacity on the measured parts (nearly all of it elsewhere); the TBE gathers
(``recsim.cost.embedding.gpu``) at their calibrated fraction of the bandwidth, well under it.

**Demand.** An op's HBM bytes (``recsim.engine.resources.op_hbm_bytes``: a kernel's roofline bytes,
a lookup's ``hbm`` bytes, a copy's bytes at each of its ``hbm`` ends on this rank) are one flow paced
to the op's duration ``d`` (the ``link_window_s`` pattern of the network): it asks the link for
``bytes / d``, no more, so it takes only the rate it uses. An op whose model moves its bytes faster
than the capacity (a copy within the GPU is priced at the full HBM bandwidth, ``copy_bytes_per_s``)
asks for the whole capacity over its duration. The link's capacity is divided max-min fairly among
the flows in flight (water-filling: a flow asking less than an equal share gets what it asks, the
others split the rest equally), recomputed whenever a flow starts or ends. So the ops of one rank
slow each other only while their summed demand exceeds the capacity, and an op alone, or beside ops
whose demand fits, takes exactly its modelled time.

**Finish.** A flow that always got its whole pace (never ``slowed``) ends with its op, at ``begin +
d`` exactly (``settle``: the rounding of the rounds' byte counts moves no op). A slowed one ends
when its bytes are delivered, after ``begin + d``: the op ends then.

**Kernels of two compute lanes under ``sm_sharing``.** With ``SimulationOptions.sm_sharing`` on,
a kernel on a compute lane of a rank that overlaps a kernel on another compute lane already takes
its measured slowdown beside it (``recsim.cost.sm_sharing``): measured as the time a kernel lost
beside the other stream's kernels, it holds all they took from it, the HBM bandwidth included. The
link then does not slow those kernels for each other again: their flows (``grouped``) share it as
one flow that asks their summed pace, at most the whole capacity (``grouped_fill``), so beside each
other alone they keep their (stretched) time, and what else shares the rank's HBM -- a copy, a
lookup's host transfer on the copy stream, which ``sm_sharing`` does not cover -- slows them as it
would slow one kernel asking that much. Their summed rates may then pass the capacity (``peak_use``
above 1): the part of their traffic that did not fit is in their stretched durations. Off (the
default), every flow is its own.

What is not modelled, without ``sm_sharing``: the SMs. Two kernels on two streams of one GPU are
taken to run side by side at their own speed but for HBM; a compute-bound GEMM asks little of HBM
and is then barely slowed, though in a GPU its thread blocks would wait for SMs the other kernel
holds. The collectives' own
kernels' HBM traffic is in their interference stretch (``recsim.cost.interference``), so a
collective puts no flow on this link.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import simpy

from recsim.cost.compute import elementwise_memory_efficiency
from recsim.hardware.devices import Accelerator

_DONE = 1e-9  # relative paced time left below which a flow counts as delivered (as the network's)


def hbm_capacity_bytes_per_s(accelerator: Accelerator) -> float:
    """What the rank's HBM delivers to all its ops together: at least the rate the cost model prices
    one kernel's HBM traffic at (its bandwidth x the fitted memory efficiency,
    ``elementwise_memory_efficiency``, the GEMM fit's ``memory_efficiency``), and at least what one
    STREAM kernel was measured to get from the part (its ``calibration.stream``, from Microsoft's
    Azure ND v4/v5 STREAM runs in ../shared/reference/microbench on A100-80GB, H100 and H200),
    whichever is more.
    A shared resource cannot deliver less to two ops than it was measured to deliver to one: the fit
    (0.780 of A100's bandwidth, 0.814 of H100's, 0.785 of H200's) is one kernel shape's rate, and it
    sits 5-10 % under the measured STREAM rates (0.834, 0.887, 0.865)."""
    bandwidth = accelerator.hbm.bandwidth_bytes_per_s
    fitted = bandwidth * elementwise_memory_efficiency(accelerator)
    calibration = accelerator.calibration
    stream = calibration.stream if calibration is not None else None
    return max(fitted, bandwidth * stream.efficiency) if stream is not None else fitted


def water_fill(paces: Sequence[float], capacity: float) -> list[float]:
    """The share of its pace each flow gets on one link of ``capacity`` (max-min fair: in order of
    pace, a flow gets its whole pace while that is no more than an equal share of what is left;
    the rest split it equally). Exactly 1.0 for a flow that gets its pace, as for one whose pace
    exceeds its equal share by no more than the flows' resolution (``_DONE``): the host DRAM link
    (``recsim.engine.host_dram``) gets paces that sum to its capacity but for rounding (four GPUs'
    shares of a socket), which are not slowed for it."""
    order = sorted(range(len(paces)), key=paces.__getitem__)  # stable: ties in submission order
    speeds = [1.0] * len(paces)
    left = capacity
    for k, i in enumerate(order):
        fair = left / (len(order) - k)
        if paces[i] <= fair * (1.0 + _DONE):
            left -= paces[i]
            continue
        for j in order[k:]:
            speeds[j] = fair / paces[j]
        break
    return speeds


def grouped_fill(flows: Sequence[HbmFlow], capacity: float) -> list[float]:
    """``water_fill`` of ``flows`` on a link of ``capacity``, the grouped ones (at least two in
    flight) taken as one flow (module docstring): it asks their summed pace, no more than the
    capacity, and each of them gets the share of its own pace that one flow gets. Without two
    grouped flows, ``water_fill`` of them all."""
    grouped = [i for i, f in enumerate(flows) if f.grouped]
    if len(grouped) < 2:
        return water_fill([f.pace for f in flows], capacity)
    others = [i for i, f in enumerate(flows) if not f.grouped]
    together = min(math.fsum(flows[i].pace for i in grouped), capacity)
    shares = water_fill([together] + [flows[i].pace for i in others], capacity)
    speeds = [shares[0]] * len(flows)
    for i, share in zip(others, shares[1:], strict=True):
        speeds[i] = share
    return speeds


@dataclass(eq=False)
class HbmFlow:
    """One op's HBM bytes on its rank's link: ``work_s`` is the time left at its whole pace."""

    pace: float  # bytes/s it asks for
    window_s: float  # the op's duration: its work at the whole pace
    work_s: float
    done: simpy.Event
    slowed: bool = False  # ever given less than its pace, for a while
    speed: float = 1.0  # the share of its pace it gets in the current round
    delivered_s: float = math.nan  # when its bytes were in (or its op ended it, ``settle``)
    #: a kernel on a compute lane whose slowdown beside the other compute lanes' kernels is in its
    #: duration (``recsim.cost.sm_sharing``): the grouped flows share the link as one (module docstring)
    grouped: bool = False


@dataclass
class HbmLink:
    """A rank's HBM: the flows of its ops in flight share ``capacity`` max-min fairly.

    Driven by callbacks rather than a process of its own: a flow's start or end recomputes the
    rates at once, and one timer stands for the next flow to be delivered (a timer that a later
    change of the rates made stale does nothing). That is a simpy event per change, where a process
    waking on an event would take three."""

    env: simpy.Environment
    capacity: float
    flows: list[HbmFlow] = field(default_factory=list)
    rounds: int = 0  # allocations (rates recomputed because a flow started or ended)
    peak_use: float = 0.0  # the most of the capacity the flows in flight were ever given
    _round_start: float = 0.0
    _round_dt: float = 0.0
    _timer: simpy.Event | None = None

    def submit(self, hbm_bytes: float, window_s: float, grouped: bool = False) -> HbmFlow:
        """Start a flow of ``hbm_bytes`` paced to ``window_s`` (> 0) now (``grouped``: one of the
        compute lanes' kernels that share the link as one, module docstring)."""
        self._advance(self.env.now - self._round_start)
        pace = min(hbm_bytes / window_s, self.capacity)
        flow = HbmFlow(pace, window_s, window_s, self.env.event(), grouped=grouped)
        self.flows.append(flow)
        self._allocate()
        return flow

    def unslowed(self, flow: HbmFlow) -> bool:
        """Whether ``flow`` has had its whole pace all along, until now."""
        return not flow.slowed and (flow.speed == 1.0 or self.env.now == self._round_start)

    def settle(self, flow: HbmFlow) -> None:
        """End ``flow`` now, with its op, which ran its modelled time (the flow was never slowed,
        ``unslowed``), whatever the rounding of the rounds' progress left of its bytes."""
        assert self.unslowed(flow)
        if flow.done.triggered:
            return
        self._advance(self.env.now - self._round_start)
        if not flow.done.triggered:  # else delivered just now
            self.flows.remove(flow)
            flow.delivered_s = self.env.now
            flow.done.succeed()
        self._allocate()

    def _advance(self, elapsed: float) -> None:
        """Move every flow on by ``elapsed`` at its current rate; deliver those that are done."""
        still: list[HbmFlow] = []
        for flow in self.flows:
            if elapsed > 0:
                if flow.speed < 1.0:
                    flow.slowed = True
                flow.work_s = max(0.0, flow.work_s - flow.speed * elapsed)
            if flow.work_s <= _DONE * flow.window_s:
                flow.delivered_s = self.env.now
                flow.done.succeed()
                continue
            still.append(flow)
        self.flows = still
        self._round_start = self.env.now

    def _allocate(self) -> None:
        """New rates for the flows in flight, and a timer for the first of them to be delivered."""
        self._timer = None
        if not self.flows:
            return
        flows = self.flows
        speeds = grouped_fill(flows, self.capacity)
        self.rounds += 1
        use = 0.0
        dt = math.inf
        for flow, speed in zip(flows, speeds, strict=True):
            flow.speed = speed
            use += flow.pace * speed
            dt = min(dt, flow.work_s / speed)
        self.peak_use = max(self.peak_use, use)
        self._round_dt = dt
        timer = self._timer = self.env.timeout(dt)
        timer.callbacks.append(self._on_timer)

    def _on_timer(self, timer: simpy.Event) -> None:
        if timer is not self._timer:
            return  # the rates changed since it was set
        # As the network's rounds: the timer's round delivered its first flow, even where the
        # clock cannot tell ``start + dt`` from ``start``.
        self._advance(self._round_dt)
        self._allocate()


__all__ = ["HbmFlow", "HbmLink", "grouped_fill", "hbm_capacity_bytes_per_s", "water_fill"]
