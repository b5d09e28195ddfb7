"""Invariants of whole training steps, both engines, on small random setups of the tiny fixture
(2 nodes x 4 GPUs, tests/fixtures/minilib) with a DLRM wide enough that its HBM, compute, NVLink,
NIC and (for UVM shards) PCIe and host-memory terms show in the step:

* faster hardware (HBM, peak FLOP/s, NVLink, the scale-out network, PCIe, host memory) is never
  slower, analytic or DES; with the collectives' interference off (``recsim.cost.interference``,
  "Not monotone in the hardware": a faster link can move a collective under a kernel, which then
  runs slower beside it); each of those terms is shown to bind in these setups, so the property
  is not vacuous;
* DES, which only adds contention (the durations are the analytic engine's), is never faster, and
  gives the analytic result where nothing shares a link; PXN's relays included;
* no resource class, no link class and no in-order queue (a side lane included: HugeCTR's backward
  index sort and async cross-layer weight gradients) is more than 100 % busy, and the step is at
  least each queue's busy time;
* energy: average power is the sum of the components' and ``energy_per_sample x throughput``; each
  component's lies between its idle and its maximum;
* the same configuration twice gives the same ``Result.to_dict()``, DES included, in this
  process and in others (another string hash seed);
* a narrower wire dtype puts proportionally fewer bytes on the pooled all-to-all.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recsim.engine.des as des_module
from recsim.config import Override
from recsim.cost.power import job_floor_w
from recsim.engine.simulate import Simulation, SimulationOptions, simulate_training
from recsim.engine.timeline import step_window
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.library import HardwareLibrary
from recsim.hardware.system import System
from recsim.planner import table_wise_round_robin
from recsim.planner.types import Plan
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import Workload, wire_bytes_per_value
from tests.conftest import FIXTURES, rail_pxn_step

SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLACK = 1e-9  # float rounding only
HW = HardwareLibrary([FIXTURES / "minilib"])
WL = WorkloadLibrary([FIXTURES / "workloads"])

# The tiny fixture's rates (tests/fixtures/minilib/devices), each scaled by a factor.
KNOBS: dict[str, tuple[tuple[str, float, str], ...]] = {
    "hbm": (("node.accelerators.device.hbm.bandwidth", 1200.0, "GB/s"),),
    "peak": (
        ("node.accelerators.device.peak.fp32", 20.0, "TFLOP/s"),
        ("node.accelerators.device.peak.fp16", 300.0, "TFLOP/s"),
        ("node.accelerators.device.peak.bf16", 300.0, "TFLOP/s"),
    ),
    "nvlink": (("node.accelerators.device.nvlink.link.bandwidth", 25.0, "GB/s"),),
    # The NIC and the scale-out switches' ports together (either alone leaves the other binding).
    "network": (
        ("node.nics.device.port_bandwidth", 200.0, "Gb/s"),
        ("cluster.scale_out.switch.port_bandwidth", 200.0, "Gb/s"),
    ),
    # Every PCIe link and switch port: the GPUs', the NICs' (GPUDirect) and the switches'.
    "pcie": (
        ("node.accelerators.device.host_interface.lane_rate", 16.0, "Gb/s"),
        ("node.nics.device.host_interface.lane_rate", 16.0, "Gb/s"),
        ("node.pcie_switches.device.port_bandwidth", 32.0, "GB/s"),
    ),
    "host_memory": (("node.host_memory.device.pin_rate", 3.2, "Gb/s"),),
}


@functools.cache
def tiny(knob: str = "", factor: float = 1.0) -> System:
    sets = ["cluster.nodes=2", "node.accelerators.device.hbm.stacks=50"]  # room for a faster HBM
    sets += [f"{path}={base * factor} {unit}" for path, base, unit in KNOBS.get(knob, ())]
    return HW.system("tiny", [Override.parse(s) for s in sets])


@functools.cache
def wide(batch: int, runtime: str = "fused") -> Workload:
    sets = [
        f"training.global_batch_size={batch}",
        f"training.runtime={runtime}",
        "embedding.dim=64",
        "bottom_mlp=[128,64]",
        "top_mlp=[256,1]",
        "tables[0].rows=100000",
        "tables[1].rows=100000",
    ]
    return WL.workload("tiny-dlrm", [Override.parse(s) for s in sets])


def plan_on(workload: Workload, tier: str) -> Plan:
    plan = table_wise_round_robin(workload, 8)
    return dataclasses.replace(plan, shards=tuple(dataclasses.replace(s, tier=tier) for s in plan.shards))


def sim(system: System, batch: int, tier: str, fidelity: str, **options: object) -> Simulation:
    workload = wide(batch)
    opts = SimulationOptions(fidelity=fidelity, **options)  # type: ignore[arg-type]  # keyword options
    return simulate_training(system, workload, plan_on(workload, tier), opts)


def step_s(system: System, batch: int, tier: str, fidelity: str, interference: bool = False) -> float:
    result = sim(system, batch, tier, fidelity, comm_interference=interference).result
    assert result.status == "ok", result.reason
    return result.iteration_time_s


BATCHES = st.sampled_from([4096, 32768])
TIERS = st.sampled_from(["hbm", "uvm"])
FIDELITIES = st.sampled_from(["analytic", "des"])


# ------------------------------------------------------------------------------ monotonicity


@pytest.mark.parametrize("knob", sorted(KNOBS))
@pytest.mark.parametrize("fidelity", ["analytic", "des"])
@settings(SETTINGS, max_examples=8)
@given(
    factors=st.lists(st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]), min_size=2, max_size=2, unique=True),
    batch=BATCHES,
    tier=TIERS,
)
def test_faster_hardware_is_never_slower_in_either_engine(knob, fidelity, factors, batch, tier):
    slow, fast = sorted(factors)
    slow_s = step_s(tiny(knob, slow), batch, tier, fidelity)
    fast_s = step_s(tiny(knob, fast), batch, tier, fidelity)
    assert fast_s <= slow_s * (1 + SLACK), (knob, slow, fast)


@pytest.mark.parametrize(
    ("knob", "tier"),
    [
        ("hbm", "hbm"),
        ("peak", "hbm"),
        ("nvlink", "hbm"),
        ("network", "hbm"),
        ("pcie", "uvm"),
        ("host_memory", "uvm"),
    ],
)
@pytest.mark.parametrize("fidelity", ["analytic", "des"])
def test_each_rate_binds_somewhere_in_the_monotonicity_setups(knob, tier, fidelity):
    # Not vacuous: a quarter of each rate makes the step at least 1 % slower in a setup the
    # property above draws, so a cost that ignored it (or grew with it) would show there.
    assert step_s(tiny(knob, 0.25), 32768, tier, fidelity) > 1.01 * step_s(tiny(), 32768, tier, fidelity)


# ------------------------------------------------------------------------------ engines


@SETTINGS
@given(batch=BATCHES, tier=TIERS, interference=st.booleans(), knob=st.sampled_from(["", "network", "pcie"]))
def test_des_only_adds_contention(batch, tier, interference, knob):
    """The engines run the same durations (interference from the contention-free schedule in both):
    DES's shared links can only slow the step."""
    system = tiny(knob, 0.5) if knob else tiny()
    analytic = step_s(system, batch, tier, "analytic", interference)
    assert step_s(system, batch, tier, "des", interference) >= analytic * (1 - SLACK)


def test_des_slows_a_step_whose_uvm_rows_share_the_host_links_with_the_all_to_all():
    # Not vacuous: at batch 32,768 on UVM the lookups' PCIe reads meet the all-to-all's GPUDirect
    # traffic on the GPUs' links to their switches, which only DES shares.
    assert step_s(tiny(), 32768, "uvm", "des") > step_s(tiny(), 32768, "uvm", "analytic") * (1 + 1e-3)


@pytest.mark.parametrize("batch", [4096, 32768])
def test_des_equals_analytic_where_nothing_shares_a_link(batch, monkeypatch):
    """One GPU with its tables in HBM: no collective, and the input copy alone on the host link, so
    DES's shared network changes nothing and every figure but the fidelity is the analytic one's.

    One resource is shared: host DRAM, between the next batch's loading and this batch's copy to
    the GPU (``recsim.engine.host_dram``; the loader asks for all of it). That slows the host
    stream's work off the critical path (the step is the same); with it left out, DES is the
    analytic engine to the last figure."""
    one = HW.system("tiny", [Override.parse(s) for s in ("cluster.nodes=1", "node.accelerators.count=1")])
    workload = wide(batch)
    plan = table_wise_round_robin(workload, 1)
    analytic = simulate_training(one, workload, plan, SimulationOptions("analytic")).result.to_dict()
    shared = simulate_training(one, workload, plan, SimulationOptions("des")).result.to_dict()
    assert shared["throughput_samples_per_s"] == analytic["throughput_samples_per_s"]
    assert shared["utilisation.host"] > analytic["utilisation.host"]
    monkeypatch.setattr(des_module, "_dram_demands", lambda *args: {})
    des = simulate_training(one, workload, plan, SimulationOptions("des")).result.to_dict()
    assert analytic.pop("fidelity") == "analytic" and des.pop("fidelity") == "des"
    assert des == analytic


@pytest.mark.parametrize("pxn", [True, False])
def test_pxn_relays_keep_des_within_its_links_and_never_faster(pxn):
    """NCCL's PXN (``cluster.scale_out.pxn``) on a rail-optimized fabric: its NVLink hand-overs
    and its relays' NIC traffic are flows of DES's network like the others; DES is never faster
    than the analytic engine, keeps every link class within capacity (``check_links`` in the run,
    and the figures here), and gives the same result twice."""
    system, workload, plan = rail_pxn_step(pxn)

    def run(fidelity: str) -> Simulation:
        options = SimulationOptions(fidelity=fidelity, comm_interference=False)
        return simulate_training(system, workload, plan, options)

    analytic, des = run("analytic").result, run("des").result
    assert analytic.status == des.status == "ok"
    assert des.iteration_time_s >= analytic.iteration_time_s * (1 - SLACK)
    peaks = des.resources.figures.peak
    assert peaks["scale_up"] > 0 and peaks["network"] > 0
    assert (peaks["network_uplinks"] == 0.0) is pxn  # PXN keeps cross-rail bytes off the spine
    for name in ("host_link", "network", "network_uplinks", "scale_up"):
        assert peaks[name] <= 1.01, (name, peaks)
    assert run("des").result.to_dict() == des.to_dict()


@SETTINGS
@given(batch=BATCHES, tier=TIERS, fidelity=FIDELITIES, interference=st.booleans())
def test_nothing_is_over_full_and_the_step_holds_every_queue(batch, tier, fidelity, interference):
    run = sim(tiny(), batch, tier, fidelity, comm_interference=interference)
    result = run.result
    assert result.status == "ok", result.reason
    step = result.iteration_time_s
    assert all(0.0 <= u <= 1.0 + SLACK for u in result.utilisation.values())
    figures = result.resources.figures
    # A CPU socket's DRAM figure is capped in both engines (an analytic excess is a note): the
    # mean and the busiest socket's are shares, and the UVM rows make them more than 0.
    socket = (figures.mean["host_memory_socket"], figures.peak["host_memory_socket"])
    assert all(0.0 < u <= 1.0 for u in socket), socket
    if fidelity == "des":
        # Every byte on a link is a flow of DES's network (the collectives', the copies' and the
        # UVM lookups'), which never runs a link past its rate: over the step (chained steps
        # only near the steady state: 1 %, as ``check_links``) no link class is over full.
        for name in ("host_link", "network", "network_uplinks", "scale_up"):
            assert figures.peak.get(name, 0.0) <= 1.01, (name, figures.peak)
    _each_queue_fits_the_step(run, step)


def _each_queue_fits_the_step(run: Simulation, step: float) -> None:
    """Every in-order queue (rank, stream, lane) runs its step's nodes one at a time within the
    step (1 %: the chain's last step only nears the steady state, as ``check_busy``)."""
    window = set(step_window(run.graph, run.schedule).node_ids)
    busy: dict[tuple[int, str, int], float] = defaultdict(float)
    for n in run.graph.nodes:
        if n.id in window:
            busy[(n.rank, n.stream.value, n.lane)] += run.schedule.finish_s[n.id] - run.schedule.start_s[n.id]
    assert busy
    for queue, seconds in busy.items():
        assert seconds <= step * 1.01, (queue, seconds, step)


@pytest.mark.parametrize("fidelity", ["analytic", "des"])
def test_side_lanes_are_never_over_full(fidelity):
    """The fused runtime's side lanes (``Runtime.backward_index_overlap``: the backward index sort;
    ``Runtime.async_cross_wgrad``: DCNv2 weight gradients) beside the main compute queue: each lane
    one node at a time, within the step, as the main one."""
    from recsim.api import make_plan, prepare

    # Without the DGX H100 config's evaluation batch, whose HugeCTR evaluation network (1.14 GB a
    # GPU in fp16, recsim.planner.eval_network, 2026-12-07) no longer lets the table-wise plan (a
    # 38.15 GiB table on a 40 GiB A100) fit: the lanes are what this checks.
    system, workload = prepare(
        "p4d-24xlarge",
        "dlrm-dcnv2",
        nodes=1,
        overrides=[
            "workload.training.global_batch_size=16384",
            "workload.training.runtime=fused",
            "workload.training.eval_batch_size=null",
        ],
    )
    run = simulate_training(
        system, workload, make_plan("table_wise", workload, system), SimulationOptions(fidelity)
    )
    assert run.result.status == "ok", run.result.reason
    lanes = {n.lane for n in run.graph.nodes if n.stream.value == "compute"}
    assert len(lanes) >= 3  # the sort's lane and the weight gradients' are there
    _each_queue_fits_the_step(run, run.result.iteration_time_s)
    # No lane's nodes overlap each other (the schedule's invariant, checked here once more).
    by_queue = defaultdict(list)
    for n in run.graph.nodes:
        by_queue[(n.rank, n.stream.value, n.lane)].append(
            (run.schedule.start_s[n.id], run.schedule.finish_s[n.id])
        )
    for spans in by_queue.values():
        spans.sort()
        for (_, f), (s, _) in itertools.pairwise(spans):
            assert s >= f - 1e-12 * max(1.0, s)


# ------------------------------------------------------------------------------ energy


@SETTINGS
@given(batch=BATCHES, tier=TIERS, fidelity=FIDELITIES)
def test_power_adds_up_and_each_component_lies_between_idle_and_max(batch, tier, fidelity):
    system = tiny()
    result = sim(system, batch, tier, fidelity).result
    assert result.status == "ok", result.reason
    parts = result.power_by_component_w
    assert math.fsum(parts.values()) == pytest.approx(result.avg_power_w, rel=1e-12)
    assert result.energy_per_sample_j * result.throughput_samples_per_s == pytest.approx(
        result.avg_power_w, rel=1e-12
    )
    acc = system.accelerator
    assert acc is not None
    gpus = system.num_accelerators
    assert (
        gpus * job_floor_w(acc) * (1 - SLACK) <= parts["accelerators"] <= gpus * acc.power.max_w * (1 + SLACK)
    )
    assert parts["accelerators"] > gpus * job_floor_w(acc)  # kernels do work
    node = system.node
    sockets = node.cpus.count * system.num_nodes
    cpu = node.cpus.device.power
    assert sockets * cpu.idle_w * (1 - SLACK) <= parts["cpus"] <= sockets * cpu.max_w * (1 + SLACK)
    group = node.scale_out_nics
    assert group is not None
    nics = node.nic_count(group) * system.num_nodes
    nic = group.device.power
    assert nics * nic.idle_w * (1 - SLACK) <= parts["nics"] <= nics * nic.max_w * (1 + SLACK)
    assert parts["dram"] >= 0.0 and parts["switches"] > 0.0


# ------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("fidelity", ["analytic", "des"])
def test_the_same_run_twice_gives_the_same_dict(fidelity):
    # UVM rows and the all-to-all share host links in DES: its flows, memos and pacing run too.
    first = sim(tiny(), 32768, "uvm", fidelity).result.to_dict()
    again = simulate_training(
        tiny("pcie", 1.0), wide(32768), plan_on(wide(32768), "uvm"), SimulationOptions(fidelity)
    ).result.to_dict()
    assert first == again
    # A fresh system object (not the cached one) too.
    fresh = HW.system(
        "tiny", [Override.parse(s) for s in ("cluster.nodes=2", "node.accelerators.device.hbm.stacks=50")]
    )
    assert (
        simulate_training(
            fresh, wide(32768), plan_on(wide(32768), "uvm"), SimulationOptions(fidelity)
        ).result.to_dict()
        == first
    )


_ROOT = Path(__file__).resolve().parents[2]
_ONE_RUN = (
    "import json\n"
    "from tests.property.test_step_props import sim, tiny\n"
    "print(json.dumps(sim(tiny(), 32768, 'uvm', 'des').result.to_dict(), sort_keys=True))\n"
)


def test_the_same_run_in_other_processes_gives_the_same_dict():
    """Determinism across processes: string hashing differs between them (``PYTHONHASHSEED``), so a
    set or dict iterated in hash order (a sum's order, a tie broken by it) would show here."""
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(_ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", _ONE_RUN], env=env, cwd=_ROOT, capture_output=True, text=True, check=True
        )
        outs.append(done.stdout.strip())
    here = json.dumps(sim(tiny(), 32768, "uvm", "des").result.to_dict(), sort_keys=True)
    assert outs[0] == outs[1] == here


# ------------------------------------------------------------------------------ wire dtypes


@pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp8", "int8"])
def test_a_narrower_wire_moves_proportionally_fewer_pooled_bytes_and_casts_them(dtype):
    """TorchRec's qcomm (the eager runtime): the pooled all-to-alls carry ``wire_bytes_per_value``
    a value, and a quantise and a dequantise kernel run on both ends of each exchange."""
    workload = wide(4096, "eager")

    def pooled(comm: str) -> tuple[dict[str, float], dict[str, int]]:
        run = simulate_training(
            tiny(), workload, plan_on(workload, "hbm"), SimulationOptions(comm_dtype=comm)
        )
        assert run.result.status == "ok", run.result.reason
        moved: dict[str, float] = defaultdict(float)
        casts: dict[str, int] = defaultdict(int)
        for n in run.graph.nodes:
            op = n.op
            if isinstance(op, Collective) and op.op is CollectiveOp.ALL_TO_ALL and op.key.startswith("a2a_"):
                assert op.dtype == comm
                moved[op.key.split("#")[0]] += op.bytes
            label = n.name.split(":", 1)[0]
            if label in ("quantise", "dequantise") and n.name.split(":", 1)[1].startswith("a2a_"):
                casts[f"{label}:{n.name.split(':', 1)[1].split('#')[0]}"] += 1
        return moved, casts

    (fp32_bytes, fp32_casts), (narrow_bytes, narrow_casts) = pooled("fp32"), pooled(dtype)
    assert set(fp32_bytes) == {"a2a_fwd", "a2a_bwd"} == set(narrow_bytes)
    ratio = wire_bytes_per_value(dtype) / wire_bytes_per_value("fp32")
    for key, nbytes in fp32_bytes.items():
        assert narrow_bytes[key] == pytest.approx(nbytes * ratio, rel=1e-12), key
    assert not fp32_casts  # an fp32 wire of fp32 vectors casts nothing
    assert set(narrow_casts) == {
        f"{c}:{k}" for c in ("quantise", "dequantise") for k in ("a2a_fwd", "a2a_bwd")
    }
