"""The chained index's step index without its dependency lists, the interference stretch's masks
from the index, and the step energy's loops with the powers read once, give exactly what the
previous code gave (kept below as the oracle)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest

from recsim.api import make_plan, prepare
from recsim.cost.embedding.ddr import rank_share
from recsim.cost.interference import _slowdown_of, interfered_durations
from recsim.cost.memo import CostMemo
from recsim.cost.model import CostModel
from recsim.cost.power import Energy, _switch_idle_w, job_floor_w
from recsim.engine.analytic import analytic_timing, graph_durations
from recsim.graph.build import BuildOptions, build_training_step
from recsim.graph.index import GraphIndex
from recsim.graph.ir import Collective, Compute, ExecutionGraph, Host, Node, Stream
from recsim.graph.steps import ChainedGraph, chain_steps
from recsim.hardware.system import System
from recsim.hardware.topology import Topology
from tests.unit.test_analytic_speed_paths import assert_index_matches, random_graph

INDEX_LISTS = ("ids", "queue", "queue_keys", "prev_in_queue", "dep_end", "dep_flat", "vertex", "vertex_head")
INDEX_ARRAYS = ("ids_array", "queue_array", "prev_in_queue_array", "vertex_array", "dep_end_array")


def _step(nodes: int = 2, runtime: str = "fused", fold: bool = True) -> tuple[object, object, ExecutionGraph]:
    system, workload = prepare(
        "dgx-h100", "dlrm-dcnv2", nodes=nodes, batch_size=16384 * nodes, precision="fp16", runtime=runtime
    )
    plan = make_plan("table_wise", workload, system)
    options = BuildOptions(validate_plan=False, ranks_per_node=8, fold_ranks=fold)
    return system, workload, build_training_step(workload, plan, options)


def _assert_same_index(got: GraphIndex, expected: GraphIndex) -> None:
    for name in INDEX_LISTS:
        assert getattr(got, name) == getattr(expected, name), name
    assert got.members == expected.members and got.position == expected.position
    assert (got.size, got.vertices, got.unique_ids, got.copies) == (
        expected.size,
        expected.vertices,
        expected.unique_ids,
        expected.copies,
    )
    for name in INDEX_ARRAYS:
        a, b = getattr(got, name), getattr(expected, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name


@pytest.mark.parametrize("seed", range(8))
def test_step_index_with_lazy_dependencies_equals_the_full_one(seed):
    g = random_graph(seed, ranks=2 + seed % 4)
    if seed % 2:
        g = ExecutionGraph(g.ranks, [replace(n, stream=n.stream.value) for n in g.nodes])
    lazy = GraphIndex.of(g, lazy_deps=True)
    assert not {"dep_end", "dep_flat", "position"} & vars(lazy).keys()  # not made until read
    _assert_same_index(lazy, GraphIndex.of(g))
    assert_index_matches(GraphIndex.of(g, lazy_deps=True), g)


def test_step_index_with_lazy_dependencies_on_a_built_step():
    _, _, step = _step()
    _assert_same_index(GraphIndex.of(step, lazy_deps=True), GraphIndex.of(step))


def test_a_missing_dependency_still_raises_key_error():
    nodes = [
        Node(0, 0, "in", Stream.HOST, Host("data_loading"), phase="input"),
        Node(1, 0, "a", Stream.COMPUTE, Compute("x"), (0, 7), phase="forward"),
    ]
    graph = ExecutionGraph(1, nodes)
    with pytest.raises(KeyError):
        GraphIndex.of(graph)
    with pytest.raises(KeyError):
        GraphIndex.of(graph, lazy_deps=True).dep_flat  # noqa: B018
    # The chained index, ids positions or not, raises it as the full step index did.
    odd = ExecutionGraph(1, [replace(nodes[0], id=3), replace(nodes[1], deps=(3, 7))])
    negative = ExecutionGraph(1, [nodes[0], replace(nodes[1], deps=(0, -1))])
    for g in (graph, odd, negative):
        with pytest.raises(KeyError):
            ChainedGraph.lazy(g, 3).index()


@pytest.mark.parametrize(
    ("nodes", "runtime", "fold"), [(1, "fused", False), (2, "fused", True), (2, "eager", True)]
)
def test_chained_index_from_the_lazy_step_index_is_the_chained_graphs(nodes, runtime, fold):
    _, _, step = _step(nodes, runtime, fold)
    for steps in (1, 3):
        lazy = ChainedGraph.lazy(step, steps)
        index = lazy.index()
        assert not lazy.made
        assert_index_matches(index, chain_steps(step, steps))


# ------------------------------------------------------------------------------------ interference


def previous_interfered_durations(
    index: GraphIndex,
    durations: Sequence[float],
    start: npt.NDArray[np.float64],
    finish: npt.NDArray[np.float64],
) -> list[float]:
    """``interfered_durations`` before its masks came from the index (its ops' slowdowns and
    collectives read node by node)."""
    nodes = index.copies[0] if index.copies is not None else index.nodes
    steps = index.copies[1] if index.copies is not None else 1
    slow = np.array(
        [_slowdown_of(n.op) if n.stream == Stream.COMPUTE else 1.0 for n in nodes], dtype=np.float64
    )
    collective = np.array([type(n.op) is Collective for n in nodes], dtype=bool)
    if not collective.any() or not (slow > 1.0).any():
        return list(durations)
    slow, collective = np.tile(slow, steps), np.tile(collective, steps)
    keys = index.queue_keys
    rank_of_queue = np.array([key[0] for key in keys], dtype=np.int64)
    rank = rank_of_queue[index.queue_array]
    finite = np.isfinite(start) & np.isfinite(finish)
    if not finite.all():
        collective &= finite
        slow = np.where(finite, slow, 1.0)
    if not collective.any():
        return list(durations)
    low = float(min(start[finite].min(), 0.0))
    span = 2.0 * (float(finish[finite].max()) - low) + 1e-9
    shift = np.where(finite, (rank - rank.min()).astype(np.float64) * span - low, 0.0)
    a = start[collective] + shift[collective]
    b = finish[collective] + shift[collective]
    order = np.argsort(a, kind="stable")
    a, b = a[order], b[order]
    reach = np.maximum.accumulate(b)
    fresh = np.ones(a.size, dtype=bool)
    fresh[1:] = a[1:] > reach[:-1]
    first = np.flatnonzero(fresh)
    merged_a = a[first]
    merged_b = np.maximum.reduceat(b, first) if first.size else b[:0]
    covered = np.concatenate(([0.0], np.cumsum(merged_b - merged_a)))

    def covered_before(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        i = np.searchsorted(merged_a, t, side="right")
        inside = np.clip(t - merged_a[np.maximum(i - 1, 0)], 0.0, None)
        inside = np.minimum(inside, (merged_b - merged_a)[np.maximum(i - 1, 0)])
        return np.where(i > 0, covered[np.maximum(i - 1, 0)] + inside, 0.0)

    base = np.asarray(durations, dtype=np.float64)
    kernel = np.flatnonzero((slow > 1.0) & (finish > start))
    s = start[kernel] + shift[kernel]
    e = finish[kernel] + shift[kernel]
    length = finish[kernel] - start[kernel]
    share = np.clip((covered_before(e) - covered_before(s)) / length, 0.0, 1.0)
    out = base.copy()
    out[kernel] = base[kernel] * (1.0 + (slow[kernel] - 1.0) * share)
    result: list[float] = out.tolist()
    return result


def _assert_same_stretch(index: GraphIndex, durations: list[float], start, finish) -> None:
    got = interfered_durations(index, durations, start, finish)
    expected = previous_interfered_durations(index, durations, start, finish)
    assert repr(got) == repr(expected)


@pytest.mark.parametrize(("nodes", "runtime"), [(1, "fused"), (2, "fused"), (2, "eager")])
def test_interference_masks_from_the_index_match_the_previous_code(nodes, runtime):
    system, workload, step = _step(nodes, runtime)
    memo = CostMemo(system, workload)
    lazy = ChainedGraph.lazy(step, 3)
    rng = random.Random(nodes)
    for index in (lazy.index(), GraphIndex.of(chain_steps(step, 3)), GraphIndex.of(step)):
        cost = CostModel(
            system,
            workload,
            fused_tables=step.metadata.get("fused_tables"),
            table_slices=step.metadata.get("table_slices"),
            memo=memo,
            folded_parts=step.metadata.get("folded_parts"),
        )
        durations = graph_durations(index, cost)
        timing = analytic_timing(index, cost)
        _assert_same_stretch(index, durations, timing.start, timing.finish)
        # Random times, some of them broken: the same stretch.
        start = np.array([rng.random() for _ in durations])
        finish = start + np.array([rng.choice([0.0, rng.random(), 1e-6]) for _ in durations])
        _assert_same_stretch(index, durations, start, finish)
        finish[::17] = np.inf
        start[5::23] = np.nan
        _assert_same_stretch(index, durations, start, finish)


@pytest.mark.parametrize("seed", range(6))
def test_interference_masks_on_random_graphs(seed):
    g = random_graph(seed, ranks=2 + seed % 3)
    if seed % 2:  # plain-string streams: the same compute queues as the enum's
        g = ExecutionGraph(g.ranks, [replace(n, stream=n.stream.value) for n in g.nodes])
    rng = random.Random(seed)
    index = GraphIndex.of(g)
    durations = [rng.random() for _ in g.nodes]
    start = np.array([rng.random() * 3 for _ in g.nodes])
    _assert_same_stretch(index, durations, start, start + np.array(durations))
    # No collective, or no kernel: the durations as given.
    alone = ExecutionGraph(
        g.ranks, [replace(n, deps=()) for n in g.nodes if not isinstance(n.op, Collective)]
    )
    index = GraphIndex.of(alone)
    d = durations[: len(alone.nodes)]
    _assert_same_stretch(index, d, start[: len(d)], start[: len(d)] + np.array(d))


# ------------------------------------------------------------------------------------ step energy


def previous_step_energy(
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
    """``step_energy`` before its loops read the devices' powers once (with the rules it has
    gained since: an accelerator's floor in a job, a scale-out switch by its ports used)."""
    node = system.node
    nodes = system.num_nodes
    out: dict[str, float] = defaultdict(float)
    ranks = system.num_accelerators
    acc = system.accelerator
    if acc is not None:
        waiting = off_gpu_s or {}
        for rank in range(ranks):
            busy = max(0.0, busy_s.get((rank, "compute"), 0.0) - waiting.get(rank, 0.0))
            u = min(1.0, busy / step_s) if step_s > 0 else 0.0
            floor_w = job_floor_w(acc)
            out["accelerators"] += (floor_w + (acc.power.max_w - floor_w) * u) * step_s
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
        for n in range(nodes):
            for j in range(count):
                rank = n * per_node_ranks + (j * per_node_ranks // max(1, count))
                busy = (network_busy_s or {}).get(rank, 0.0)
                u = min(1.0, busy / step_s) if step_s > 0 else 0.0
                out["nics"] += (nic.power.idle_w + (nic.power.max_w - nic.power.idle_w) * u) * step_s
    if node.frontend_nics is not None and group is not node.frontend_nics:
        # Front-end NICs beside a back-end network (data ingestion, checkpoints, management):
        # powered all step, their traffic not modelled, so at idle.
        front = node.frontend_nics
        out["nics"] += node.nic_count(front) * nodes * front.device.power.idle_w * step_s
    # Each switch's idle power (a vertex per switch, counted once per topology: a walk over the
    # vertices of a 1024-GPU cluster's graph took a tenth of an analytic evaluation).
    so = system.cluster.scale_out
    for name, count in topology.switch_devices.items():
        if so is not None and so.switch_power == "ports_used" and name == so.switch.name:
            used = topology.scale_out_ports_used.get(name, 0)
            out["switches"] += so.switch.power.idle_w * used / so.switch.ports * step_s
        else:
            out["switches"] += count * _switch_idle_w(system, topology, name) * step_s
    if node.ssds is not None:
        ssd = node.ssds.device
        count = node.ssds.count * nodes
        out["ssds"] += count * ssd.power.idle_w * step_s
    return Energy(dict(out), step_s)


def _energy_cases():
    from recsim.config import Override
    from recsim.hardware.library import HardwareLibrary
    from tests.conftest import FIXTURES

    hw = HardwareLibrary([FIXTURES / "minilib"])
    yield hw.system("tiny", [Override.parse("cluster.nodes=1"), Override.parse("node.accelerators.count=2")])
    yield hw.system(
        "tiny",
        [
            Override.parse("cluster.nodes=1"),
            Override.parse("node.accelerators.count=2"),
            Override.parse("node.frontend_nics={device: tiny-nic, count: 3}"),
        ],
    )
    for nodes in (1, 16):
        yield prepare("dgx-h100", "dlrm-dcnv2", nodes=nodes, batch_size=55296, precision="fp16")[0]


def test_step_energy_matches_the_previous_code(monkeypatch: pytest.MonkeyPatch) -> None:
    from recsim.cost import power
    from recsim.cost.power import step_energy

    # The components the previous code priced; the node's platform (supplies, fans), which came
    # after it and prices their sum, has tests of its own (tests/unit/test_power_platform.py).
    monkeypatch.setattr(power, "sized_platform", lambda node: None)
    from recsim.hardware.topology import build_topology

    rng = random.Random(5)
    for system in _energy_cases():
        topology = build_topology(system)
        ranks, per_node = system.num_accelerators, max(1, system.node.num_accelerators)
        for step_s in (0.0, 0.01, 0.0173):
            busy = {
                (r, s): rng.random() * 0.02
                for r in range(ranks)
                for s in ("compute", "host")
                if rng.random() < 0.8
            }
            network = {r: rng.random() * 0.01 for r in range(ranks) if rng.random() < 0.5}
            off = {r: rng.random() * 0.005 for r in range(ranks) if rng.random() < 0.3}
            cpu = {r: rng.random() * 0.005 for r in range(ranks) if rng.random() < 0.3}
            nmp = {n: rng.random() * 0.005 for n in range(ranks // per_node)}
            for kwargs in (
                {},
                {
                    "host_bytes": 3e9,
                    "network_busy_s": network,
                    "off_gpu_s": off,
                    "cpu_busy_s": cpu,
                    "nmp_busy_s": nmp,
                },
            ):
                got = step_energy(system, topology, step_s, busy, **kwargs)
                expected = previous_step_energy(system, topology, step_s, busy, **kwargs)
                assert repr(got) == repr(expected)
                assert list(got.by_component_j) == list(expected.by_component_j)


# ------------------------------------------------------------------------------- the paused collector


def test_paused_gc_leaves_the_young_collection_to_the_callers_next_allocation():
    """Switching the collector back on allocates nothing, so the collection the block's
    allocations are due waits for the caller's next allocation (after it has dropped what it does
    not keep), as it did not with the generator-based context manager."""
    import gc
    from contextlib import contextmanager

    from recsim.engine.gc_pause import paused_gc

    @contextmanager
    def previous_paused_gc():
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if was_enabled:
                gc.enable()

    events: list[str] = []

    def record(phase: str, info: dict[str, int]) -> None:
        events.append(phase)

    was = gc.isenabled()
    gc.callbacks.append(record)
    try:
        gc.enable()
        many = gc.get_threshold()[0] * 3
        with previous_paused_gc():
            kept = [[] for _ in range(many)]
        before = len(events)  # the generator's exit has collected already
        del kept
        events.clear()
        with paused_gc():
            kept = [[] for _ in range(many)]
        after = len(events)  # no collection yet
        del kept
        assert before > 0 and after == 0
        assert gc.isenabled()
        [[] for _ in range(many)]
        assert events  # the next allocations collect
    finally:
        gc.callbacks.remove(record)
        if not was:
            gc.disable()
