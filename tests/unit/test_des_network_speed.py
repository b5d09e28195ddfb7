"""The DES engine's fast paths give what the plain formulations give.

* ``_fill`` (progressive filling) against a transcription of the plain sparse formulation, on whole
  flow sets and on subsets of their flows (``live``): the same arrays, bit for bit;
* link ids composed from route segments against the topology's own path lists;
* ``matrix_flows`` against ``FlowList`` over every matrix entry;
* the allocation memo and the idle-network time of a collective against a fresh filling;
* the engine's event counter.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.api import load_system
from recsim.cost.collectives import Flow
from recsim.cost.collectives.base import FlowList, matrix_flows
from recsim.cost.model import CostModel
from recsim.engine.des import DesCounters, FluidNetwork, run_des
from recsim.engine.network import _SATURATED, _edge_index, _EdgeIndex, _fill, _FlowSet, simulate_flows
from recsim.graph.ir import Collective, CollectiveOp, ExecutionGraph, Node, Stream
from recsim.hardware.topology import Topology, build_topology


def topo(system: str, nodes: int, *overrides: str) -> Topology:
    return build_topology(load_system(system, nodes=nodes, overrides=overrides))


H2 = topo("dgx-h100", 2)
H4 = topo("dgx-h100", 4)


def plain_fill(fs: _FlowSet, capacity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted progressive filling as first written: every round over every growing entry."""
    n_sub = len(fs.sub_len)
    weight = 1.0 / np.repeat(fs.n_paths, fs.n_paths).astype(float)
    rows = np.repeat(np.arange(n_sub), fs.sub_len)
    cols = fs.cols
    rate = np.zeros(n_sub)
    residual = capacity.copy()
    active = np.ones(n_sub, dtype=bool)
    while active.any():
        demand = np.bincount(cols, weights=weight[rows], minlength=len(capacity))
        used = demand > 0
        step = float(np.min(residual[used] / demand[used]))
        rate[active] += weight[active] * step
        residual -= demand * step
        full = used & (residual <= _SATURATED * capacity)
        residual[full] = 0.0
        hit = full[cols]
        active[rows[hit]] = False
        keep = active[rows]
        rows, cols = rows[keep], cols[keep]
    flow_of = np.repeat(np.arange(len(fs.n_paths)), fs.n_paths)
    return np.bincount(flow_of, weights=rate, minlength=len(fs.n_paths)), rate, residual


def all_to_all_flows(t: Topology, rng: np.random.Generator) -> list[Flow]:
    gpus = t.accelerators
    out = []
    for a in gpus:
        for b in gpus:
            if a != b and rng.random() < 0.5:
                out.append(Flow(a, b, float(rng.integers(1, 100)) * 1e6))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fill_is_the_plain_formulation_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    flows = all_to_all_flows(H4, rng)
    fs = _FlowSet.of(flows, H4)
    capacity = _edge_index(H4).capacity()
    wire, rate, residual = plain_fill(fs, capacity)
    got = _fill(fs, H4, capacity)
    assert np.array_equal(got.wire, wire)
    assert np.array_equal(got.rate, rate)
    assert np.array_equal(got.residual, residual)
    for fraction in (0.95, 0.5, 0.05):
        keep = rng.random(fs.n_flows) < fraction
        wire, _, residual = plain_fill(fs.subset(keep), capacity)
        got = _fill(fs, H4, capacity, live=np.flatnonzero(keep))
        assert np.array_equal(got.wire[keep], wire)
        assert np.all(got.wire[~keep] == 0.0)
        assert np.array_equal(got.residual, residual)


@pytest.mark.parametrize(
    ("system", "nodes", "overrides"),
    [
        ("dgx-h100", 3, ()),
        ("dgx-h100", 4, ("cluster.scale_out.topology=rail_optimized",)),
        ("dgx-h100", 4, ("cluster.scale_out.topology=rail_optimized", "cluster.scale_out.tiers=1")),
        ("dgx-a100", 3, ()),
        ("zionex", 2, ()),
        ("dgx-1-v100", 2, ()),
    ],
)
def test_composed_link_ids_are_the_topology_paths(system, nodes, overrides):
    t = topo(system, nodes, *overrides)
    index = _EdgeIndex(t)
    gpus = t.accelerators
    composed = 0
    for a in gpus[::3]:
        for b in gpus:
            if a == b:
                continue
            cols, lens = index.pair(a, b)
            paths = t.edge_paths(a, b)
            assert cols.tolist() == [index.ids[e] for p in paths for e in p]
            assert lens.tolist() == [len(p) for p in paths]
            composed += index._composed(a, b) is not None
    assert composed > 0  # the fast path is taken between nodes


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from([0.0, -1.0, 1.0, 2.5, 1e9, float("nan")]),
        min_size=16,
        max_size=16,
    ),
    st.integers(0, 3),
)
def test_matrix_flows_are_flowlist_over_every_entry(values, phase):
    vertices = ("a", "b", "c", "d")
    m = np.array(values, dtype=float).reshape(4, 4)
    out = FlowList()
    for i, src in enumerate(vertices):
        for j, dst in enumerate(vertices):
            out.add(src, dst, float(m[i, j]), phase)
    want = out.flows()
    got = matrix_flows(vertices, m, phase)
    assert [(f.src, f.dst, f.phase) for f in got] == [(f.src, f.dst, f.phase) for f in want]
    assert np.array_equal([f.bytes for f in got], [f.bytes for f in want], equal_nan=True)


def _a2a(i: int, rank: int, key: str, sends: tuple[float, ...], lane: int, deps: tuple[int, ...]) -> Node:
    op = Collective(CollectiveOp.ALL_TO_ALL, key, tuple(range(16)), sum(sends), "fp16", send_bytes=sends)
    return Node(i, rank, key, Stream.COMM, op, deps, lane=lane)


def test_overlapping_collectives_count_events_and_reuse_allocations():
    """Two all-to-alls share the network; a second pair, started when both are done, repeats them
    (from the allocation memo: the same durations)."""
    rng = np.random.default_rng(3)
    sends = [tuple(float(x) for x in rng.integers(1, 64, size=16) * 2**20) for _ in range(16)]
    nodes: list[Node] = []
    for round_ in range(2):
        for lane, key in enumerate(("x", "y")):
            for r in range(16):
                deps = () if round_ == 0 else (r, 16 + r)
                row = sends[r] if key == "x" else sends[r][::-1]
                nodes.append(_a2a(len(nodes), r, f"{key}{round_}", row, lane, deps))
    graph = ExecutionGraph(16, nodes)
    # Without PXN's NVLink hand-overs (``cluster.scale_out.pxn``), whose extra flows give the
    # idle-network times more rounds of their own (fillings that are no step's allocation).
    cost = CostModel(load_system("dgx-h100", nodes=2, overrides=["cluster.scale_out.pxn=false"]))
    counters = DesCounters()
    schedule = run_des(graph, cost, counters)
    runs, events, allocations, fills = counters.runs, counters.events, counters.allocations, counters.fills
    assert runs == 1 and events > len(graph.nodes)
    # Each round of the second pair finds its allocation in the memo; every distinct one was
    # filled once (the idle-network times of the two traffics take rounds of their own).
    assert 0 < fills <= allocations
    first = [schedule.finish_s[n.id] - schedule.start_s[n.id] for n in nodes[:32]]
    second = [schedule.finish_s[n.id] - schedule.start_s[n.id] for n in nodes[32:]]
    assert second == pytest.approx(first, rel=1e-12)


def test_idle_network_time_is_simulate_flows():
    """The engine's own idle-network time of a traffic (rounds over its flow set) is the flow
    simulation's, which orders the flows otherwise: equal up to rounding."""
    rng = np.random.default_rng(5)
    flows = all_to_all_flows(H2, rng)
    network = FluidNetwork(simpy.Environment(), H2)
    traffic = network.traffic(flows)
    assert traffic is not None
    assert network.alone_s(traffic) == pytest.approx(simulate_flows(flows, H2), rel=1e-12)


@pytest.mark.parametrize("late_s", [1e-3, 1.0, 1e3])
def test_a_few_bytes_late_in_a_run_still_finish(late_s: float):
    """Flows of a few bytes submitted late in a run: a round's time (bytes over rate) can fall
    under half a float step of the clock, so ``now`` does not move when its timer fires. The
    round still moved its bytes: the flows finish in about their idle-network time (the engine
    had repeated the same round for ever: a tester's hang under a 1,000x straggler)."""
    accelerators = H2.accelerators
    env = simpy.Environment()
    network = FluidNetwork(env, H2)
    took: list[float] = []

    def late() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(late_s)
        traffic = network.traffic_of_arrays(
            [accelerators[0], accelerators[1], accelerators[0]],
            [accelerators[8], accelerators[9], accelerators[9]],
            np.array([1.0, 3.3, 1e6]),
        )
        assert traffic is not None
        alone = network.alone_s(traffic)
        job = network.submit(traffic)
        yield job.done
        took.append((env.now - late_s) / alone)

    env.process(late())
    steps = 0
    while env.peek() < math.inf and steps < 10_000:
        env.step()
        steps += 1
    assert took and took[0] == pytest.approx(1.0, rel=1e-6), steps
