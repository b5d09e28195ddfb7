"""A NIC without RDMA (NCCL's socket transport) is never faster than the same NIC with RDMA: for any
collective, size and group, in the analytic model and in the flow simulation, and for any
calibration the socket constants are derived from."""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsim.config import Override
from recsim.cost.collectives.base import socket_calibration
from recsim.cost.collectives.model import collective_cost
from recsim.engine.network import collective_time_flows_s
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.calibration import CollectiveCalibration, CollectiveProtocol
from recsim.hardware.library import HardwareLibrary
from recsim.hardware.topology import Topology, build_topology
from tests.conftest import FIXTURES

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPS = ["all_reduce", "all_to_all", "all_gather", "reduce_scatter", "broadcast"]


@cache
def _tiny(rdma: bool) -> Topology:
    lib = HardwareLibrary([FIXTURES / "minilib"])
    return build_topology(lib.system("tiny", [Override.parse(f"node.nics.device.rdma={str(rdma).lower()}")]))


@SETTINGS
@given(
    op=st.sampled_from(OPS),
    log_bytes=st.integers(min_value=3, max_value=30),
    members=st.sets(st.integers(min_value=0, max_value=15), min_size=2, max_size=16),
)
def test_socket_is_never_faster_than_rdma(op, log_bytes, members):
    coll = Collective(CollectiveOp(op), "x", tuple(sorted(members)), float(2**log_bytes), "fp32")
    rdma, sock = _tiny(True), _tiny(False)
    assert collective_cost(coll, sock).time_s >= collective_cost(coll, rdma).time_s * (1 - 1e-12)
    assert collective_time_flows_s(coll, sock) >= collective_time_flows_s(coll, rdma) * (1 - 1e-12)


_protocol = st.builds(
    lambda base, step, pipe, eff: CollectiveProtocol.model_validate(
        {
            "base_latency": f"{base} us",
            "step_latency": f"{step} us",
            "pipeline_latency": f"{pipe} us",
            "efficiency": eff,
        }
    ),
    st.floats(0, 50),
    st.floats(0, 50),
    st.floats(0, 10),
    st.floats(0.01, 1.0),
)


@SETTINGS
@given(protocols=st.dictionaries(st.sampled_from(["ll", "ll128", "simple"]), _protocol, min_size=1))
def test_the_socket_constants_only_slow_a_protocol_down(protocols):
    rdma = CollectiveCalibration(source="random", protocols=protocols)
    sock = socket_calibration(rdma)
    assert sock.transport == "socket"
    for name, p in rdma.protocols.items():
        s = sock.protocols[name]
        assert s.base_latency_s == p.base_latency_s
        assert s.pipeline_latency_s == p.pipeline_latency_s
        assert s.step_latency_s > p.step_latency_s
        assert s.efficiency <= p.efficiency
