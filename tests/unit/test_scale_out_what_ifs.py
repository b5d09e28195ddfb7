"""What a buyer's scale-out what-ifs must and must not move, on a shipped system (dgx-h100: 8 NDR
NICs a node behind PCIe Gen5 switches, a 2-tier Clos of 64-port Quantum-2 switches, NCCL's PXN).

The property tests (``tests/property/test_step_props.py``) show faster hardware is never slower on
the tiny fixture; these pin the cross-configuration physics a sweep of the real system relies on
(a tester's sweep of ``recsim run --system dgx-h100 --nodes N --set ...``):

* one node: nothing leaves the node, so no figure of the result (step, breakdown, utilisation,
  power, energy) depends on the scale-out network: its NICs' port rate and latency, the switch
  model, the oversubscription, the tiers. The NICs still draw their idle power (the node has them).
* a link moves at the slower of its two ends: NICs faster than the switch ports they plug into
  (800 Gb/s into 400 Gb/s Quantum-2 ports) change nothing; the two together do.
* at a fixed plan on two nodes, a faster network (NICs and switch ports together) shortens the
  step and the exposed all-to-all, a slower one lengthens both, in either engine; DES, which adds
  contention to the same durations, is never faster than the analytic engine.
* weak scaling (a fixed batch per node): more nodes never lower the throughput; the drives and the
  in-node switches are paid once a node, the scale-out switches by the ports the run takes.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

import recsim

#: A small batch keeps a dgx-h100 step well under a second to simulate; a fixed strategy keeps the
#: plan from changing with the hardware (``auto`` may choose another plan on other hardware, which
#: is the planner's business, not the physics under test).
BATCH_PER_NODE = 8192
PLAN = "table_wise"
#: Keys of ``Result.to_dict()`` that name the configuration rather than describe the step.
NAMING = ("resolved_config_hash", "notes")


@functools.cache
def _run(nodes: int, fidelity: str, overrides: tuple[str, ...]) -> dict[str, Any]:
    result = recsim.simulate(
        "dgx-h100",
        "dlrm-dcnv2",
        nodes=nodes,
        batch_size=BATCH_PER_NODE * nodes,
        plan=PLAN,
        fidelity=fidelity,
        overrides=list(overrides),
    )
    out = result.to_dict()
    assert out["status"] == "ok", out["reason"]
    return out


def _figures(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in out.items() if k not in NAMING}


def _network(port: str) -> tuple[str, ...]:
    return (f"node.nics.device.port_bandwidth={port}", f"cluster.scale_out.switch.port_bandwidth={port}")


@pytest.mark.parametrize(
    "overrides",
    [
        ("node.nics.device.port_bandwidth=100 Gb/s",),
        _network("800 Gb/s"),
        ("node.nics.device.latency=10 us",),
        ("cluster.scale_out.oversubscription=4",),
        ("cluster.scale_out.tiers=3",),
        ("cluster.scale_out.switch=quantum-qm8700",),
    ],
)
def test_one_node_does_not_depend_on_the_scale_out_network(overrides):
    base = _run(1, "analytic", ())
    assert _figures(_run(1, "analytic", overrides)) == _figures(base)
    # Not vacuous: the back-end NICs are there and draw their idle power (8 + 2 front-end
    # ConnectX-7 at 24.9 W, hardware/devices/nics/ib-ndr-400g.yaml), busy with nothing.
    assert base["power_by_component_w.nics"] == pytest.approx(10 * 24.9)
    assert base["utilisation.network"] == 0.0


@pytest.mark.parametrize("fidelity", ["analytic", "des"])
def test_nics_faster_than_the_switch_ports_move_nothing(fidelity):
    base = _run(2, fidelity, ())
    faster_nics = _run(2, fidelity, ("node.nics.device.port_bandwidth=800 Gb/s",))
    assert _figures(faster_nics) == _figures(base)
    # The switch ports raised too, the links do move faster (the NICs then move what their PCIe
    # Gen5 x16 host interface does, 63 GB/s, not 100: the run's note says so).
    both = _run(2, fidelity, _network("800 Gb/s"))
    assert both["iteration_time_s"] < base["iteration_time_s"]
    assert any("host interface" in note for note in both["notes"])


@pytest.mark.parametrize("fidelity", ["analytic", "des"])
def test_the_scale_out_rate_moves_the_step_and_its_exchange_the_right_way(fidelity):
    slow, base, fast = (_run(2, fidelity, _network(port)) for port in ("200 Gb/s", "400 Gb/s", "800 Gb/s"))
    assert slow["iteration_time_s"] > base["iteration_time_s"] > fast["iteration_time_s"]
    assert slow["breakdown_s.all_to_all"] > base["breakdown_s.all_to_all"] > fast["breakdown_s.all_to_all"]
    # The ports carry the same bytes: busier the slower they are.
    assert slow["utilisation.network"] > base["utilisation.network"] > fast["utilisation.network"]


@pytest.mark.parametrize("port", ["200 Gb/s", "400 Gb/s", "800 Gb/s"])
def test_des_is_never_faster_than_the_analytic_engine_across_nodes(port):
    analytic = _run(2, "analytic", _network(port))
    des = _run(2, "des", _network(port))
    assert des["iteration_time_s"] >= analytic["iteration_time_s"] * (1 - 1e-12)


@pytest.mark.parametrize("fidelity", ["analytic", "des"])
def test_weak_scaling_throughput_grows_and_power_is_paid_per_node_and_per_port(fidelity):
    runs = {nodes: _run(nodes, fidelity, ()) for nodes in (1, 2, 4)}
    throughput = [runs[n]["throughput_samples_per_s"] for n in (1, 2, 4)]
    assert throughput == sorted(throughput) and len(set(throughput)) == 3
    for nodes, out in runs.items():
        # 8 NVMe drives a node at their 5 W idle (nvme-gen4.yaml): a training step reads none.
        assert out["power_by_component_w.ssds"] == pytest.approx(nodes * 8 * 5.0)
        # In the node: 4 NVSwitch gen3 chips at 100 W and 4 PEX89144 at 54 W, whole. Across nodes:
        # the 8 NICs a node take 8 of a 64-port Quantum-2 leaf's ports (747 W typical), one leaf
        # holding up to 32 NICs: no spine is cabled for 4 nodes (quantum2-qm9700.yaml).
        in_node = nodes * (4 * 100.0 + 4 * 54.0)
        fabric = 0.0 if nodes == 1 else 747.0 * 8 * nodes / 64
        assert out["power_by_component_w.switches"] == pytest.approx(in_node + fabric)
