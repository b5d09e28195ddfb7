"""The fast paths of the analytic engine give exactly what the straightforward code gives.

``asap_schedule`` and ``chain_steps`` were rewritten for speed (the scheduler now a level at a time
in numpy over a ``GraphIndex``, the chained graph made lazily), the collective cost layer memoises
group layouts and local routes, and the topology shares max-flows between routes of the same shape
and computes the bisection in integers; the invariant checks and the timeline metrics (window,
critical path, busy times, network time) run vectorised over the index, and durations are asked for
in bulk. The step builder lays every rank's dense chain from one template, makes nodes through their
slots and shares the ranks' equal ops; the cost model takes the builder's access models and costs
equal table-batched lookups once; the schedule's maps are made when first read; the chained index
is made from arrays (its lists made only when read) and its readers (critical path, network time,
vertex lengths) read the arrays; the timing holds its schedule weakly. Each is compared
here, bit for bit, with the plain version (kept below as the reference) on built, chained and random
graphs, on real configurations (both DGX generations, one and two nodes, plain and planned sharding,
the three runtimes) and on shipped systems.
"""

from __future__ import annotations

import gc
import itertools
import math
import pickle
import random
import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import accumulate, chain

import networkx as nx
import numpy as np
import pytest

from recsim.api import load_system, load_workload, make_plan, prepare
from recsim.cost.collectives import collective_time_s
from recsim.cost.collectives.base import GroupLayout, group_layout
from recsim.cost.model import _OP_FIELDS, CATEGORIES, CostModel, category_of
from recsim.cost.power import KernelEnergy, step_energy
from recsim.engine.gc_pause import paused_gc
from recsim.engine.simulate import SimulationOptions, _network_busy, _utilisation, simulate_training
from recsim.engine.timeline import Window, busy_time, critical_path, step_window, timing_of
from recsim.errors import InfeasibleError, SimulationError, TraceError
from recsim.graph.build import (
    DENSE_INPUT_BYTES,
    LANE_EMBEDDING,
    LANE_WGRAD,
    OPTIMIZER_FLOPS_PER_PARAM,
    OPTIMIZER_STATE,
    BuildOptions,
    _bucket_caps,
    _buckets,
    _Builder,
    _framework,
    _group_label,
    _layer_op,
    _padded,
    build_inference_batch,
    build_training_step,
)
from recsim.graph.index import GraphIndex, rows
from recsim.graph.ir import (
    Collective,
    CollectiveOp,
    Compute,
    Embedding,
    ExecutionGraph,
    GraphNodes,
    Host,
    Node,
    Op,
    Stream,
    Transfer,
    fused_tier,
)
from recsim.graph.runtime import apply_runtime
from recsim.graph.schedule import Schedule, Timing, _vertex_lengths, asap_schedule, asap_timing, queue_of
from recsim.graph.shard_ops import ShardOps, pooled_exchange
from recsim.graph.steps import ChainedGraph, _later_rows, _Templates, chain_steps
from recsim.hardware.topology import SHM_EFFICIENCY, build_topology, gpu_id
from recsim.metrics.invariants import check_schedule
from recsim.planner import table_wise_round_robin
from recsim.planner.types import Plan, Shard
from recsim.workload.access import MixtureModel, access_model
from recsim.workload.access.model import AccessModel
from recsim.workload.access.slice import SliceModel, SubsetModel
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import DTYPE_BYTES, Workload
from tests.conftest import FIXTURES

TINY = WorkloadLibrary([FIXTURES / "workloads"]).workload("tiny-dlrm")

# ------------------------------------------------------------------------------- the references


def reference_schedule(
    graph: ExecutionGraph, durations: Callable[[Node], float]
) -> tuple[dict[int, float], dict[int, float]]:
    """The scheduler as first written: Kahn's algorithm over dicts and sets."""
    vertex_of: dict[int, int] = {}
    members: dict[int, list[Node]] = {}
    by_key: dict[str, int] = {}
    for n in graph.nodes:
        if isinstance(n.op, Collective):
            v = by_key.setdefault(n.op.key, n.id)
            vertex_of[n.id] = v
            members.setdefault(v, []).append(n)
        else:
            vertex_of[n.id] = n.id
            members[n.id] = [n]
    deps: dict[int, set[int]] = defaultdict(set)
    last: dict[tuple[int, str, int], int] = {}
    for n in graph.nodes:
        v = vertex_of[n.id]
        for d in n.deps:
            if vertex_of[d] != v:
                deps[v].add(vertex_of[d])
        q = (n.rank, n.stream.value, n.lane)
        if q in last and vertex_of[last[q]] != v:
            deps[v].add(vertex_of[last[q]])
        last[q] = n.id
    children: dict[int, list[int]] = defaultdict(list)
    indegree = {v: 0 for v in members}
    for v, ds in deps.items():
        indegree[v] = len(ds)
        for d in ds:
            children[d].append(v)
    ready = deque(v for v in members if indegree[v] == 0)
    start: dict[int, float] = {}
    finish: dict[int, float] = {}
    vertex_finish: dict[int, float] = {}
    while ready:
        v = ready.popleft()
        begin = max((vertex_finish[d] for d in deps.get(v, ())), default=0.0)
        length = max(durations(n) for n in members[v])
        for n in members[v]:
            start[n.id] = begin
            finish[n.id] = begin + length
        vertex_finish[v] = begin + length
        for c in children[v]:
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    assert len(vertex_finish) == len(members), "the reference found a cycle"
    return start, finish


def reference_chain(graph: ExecutionGraph, steps: int) -> ExecutionGraph:
    """``chain_steps`` as first written, with ``dataclasses.replace`` on every node."""
    stride = max((n.id for n in graph.nodes), default=-1) + 1
    inputs: dict[int, list[int]] = defaultdict(list)
    optimizer: dict[int, list[int]] = defaultdict(list)
    emb_update: dict[tuple[int, str], list[int]] = defaultdict(list)
    for n in graph.nodes:
        if n.phase == "input":
            inputs[n.rank].append(n.id)
        elif n.phase == "optimizer":
            optimizer[n.rank].append(n.id)
        if isinstance(n.op, Embedding) and n.op.pass_ in ("backward", "update"):
            emb_update[(n.rank, n.op.table)].append(n.id)
    bounded_input = graph.metadata.get("input_prefetch", "one_batch") == "one_batch"
    carried = graph.metadata.get("carried_dependencies") or {}
    first_copy: dict[int, int] = {}
    for n in graph.nodes:
        if n.phase == "input" and n.stream is Stream.COPY:
            first_copy.setdefault(n.rank, n.id)
    nodes: list[Node] = []
    for s in range(steps):
        offset = s * stride
        prev = (s - 1) * stride
        for n in graph.nodes:
            deps = [d + offset for d in n.deps]
            if s > 0 and bounded_input and first_copy.get(n.rank) == n.id:
                deps += [i + prev for i in optimizer[n.rank]]
            if s > 0 and n.phase == "forward":
                if isinstance(n.op, Embedding):
                    deps += [i + prev for i in inputs[n.rank]]
                    deps += [i + prev for i in emb_update[(n.rank, n.op.table)]]
                elif not n.deps:
                    deps += [i + prev for i in inputs[n.rank]]
                    deps += [i + prev for i in optimizer[n.rank]]
            if s > 0:
                deps += [i + prev for i in carried.get(n.id, ())]
            op = n.op
            if isinstance(op, Collective):
                op = replace(op, key=f"{op.key}#{s}")
            nodes.append(
                replace(n, id=n.id + offset, name=f"{n.name}#{s}", deps=tuple(dict.fromkeys(deps)), op=op)
            )
    metadata = dict(graph.metadata)
    metadata["steps"] = steps
    metadata["step_stride"] = stride
    return ExecutionGraph(graph.ranks, nodes, metadata)


# ------------------------------------------------------------------------------- graphs


def random_graph(seed: int, ranks: int = 4, per_rank: int = 30) -> ExecutionGraph:
    """Every rank runs the same collectives in the same order (so no deadlock), with random
    kernels, streams, lanes and dependencies (on earlier nodes of the rank, some repeated) around
    them; ids are shuffled so that graph order is not id order."""
    rng = random.Random(seed)
    ids = list(range(ranks * per_rank))
    rng.shuffle(ids)
    ids_iter = iter(ids)
    collective_slots = sorted(rng.sample(range(per_rank), 6))
    groups = [tuple(range(ranks)), tuple(range(0, ranks, 2)), tuple(range(1, ranks, 2))]
    per: list[list[Node]] = []
    for r in range(ranks):
        nodes: list[Node] = []
        mine: list[int] = []
        for i in range(per_rank):
            nid = next(ids_iter)
            deps = tuple(rng.choice(mine) for _ in range(rng.randint(0, 3))) if mine else ()
            if i in collective_slots:
                group = groups[collective_slots.index(i) % len(groups)]
                if r not in group:
                    group = groups[0]
                key = f"c{collective_slots.index(i)}:{group}"
                op = Collective(CollectiveOp.ALL_REDUCE, key, group, 8.0)
                node = Node(nid, r, key, Stream.COMM, op, deps, lane=rng.randint(0, 1))
            else:
                stream = rng.choice([Stream.COMPUTE, Stream.COPY, Stream.HOST])
                lane = rng.randint(0, 1)
                node = Node(nid, r, f"k{i}", stream, Compute("x"), deps, lane=lane, phase="forward")
            nodes.append(node)
            mine.append(nid)
        per.append(nodes)
    # Interleave the ranks at random, each rank's own order kept (that is what its queues see).
    merged: list[Node] = []
    while any(per):
        merged.append(rng.choice([q for q in per if q]).pop(0))
    return ExecutionGraph(ranks, merged)


def random_durations(seed: int) -> Callable[[Node], float]:
    rng = random.Random(seed)
    table: dict[int, float] = {}

    def duration(n: Node) -> float:
        if n.id not in table:
            table[n.id] = rng.choice([0.0, 1.0, 0.5, rng.random(), rng.random() * 1e-3])
        return table[n.id]

    return duration


# ------------------------------------------------------------------------------- scheduler


@pytest.mark.parametrize("seed", range(12))
def test_scheduler_matches_the_reference_on_random_graphs(seed):
    g = random_graph(seed, ranks=2 + seed % 5)
    durations = random_durations(seed)
    start, finish = reference_schedule(g, durations)
    s = asap_schedule(g, durations)
    assert s.start_s == start
    assert s.finish_s == finish


@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_scheduler_and_chain_match_the_references_on_a_built_step(ranks):
    step = build_training_step(TINY, table_wise_round_robin(TINY, ranks))
    chained = chain_steps(step, 3)
    expected = reference_chain(step, 3)
    assert chained.nodes == expected.nodes
    assert chained.metadata == expected.metadata
    assert chained.ranks == expected.ranks
    durations = random_durations(ranks)
    start, finish = reference_schedule(expected, durations)
    s = asap_schedule(chained, durations)
    assert (s.start_s, s.finish_s) == (start, finish)


def test_scheduler_matches_the_reference_with_modelled_durations():
    system = load_system("dgx-h100", nodes=2)
    workload = load_workload("dlrm-dcnv2")
    step = build_training_step(workload, table_wise_round_robin(workload, system.num_accelerators))
    chained = chain_steps(step, 3)
    assert chained.nodes == reference_chain(step, 3).nodes
    cost = CostModel(system, workload, fused_tables=chained.metadata.get("fused_tables"))
    start, finish = reference_schedule(chained, cost.duration_s)
    s = asap_schedule(chained, cost.duration_s)
    assert (s.start_s, s.finish_s) == (start, finish)


def test_chain_keeps_duplicate_dependencies_out_and_a_single_step_renamed():
    nodes = [
        Node(0, 0, "in", Stream.HOST, Host("data_loading"), phase="input"),
        Node(5, 0, "a", Stream.COMPUTE, Compute("x"), (0, 0), phase="forward"),
        Node(7, 0, "b", Stream.COMPUTE, Compute("x"), (), phase="forward"),
        Node(9, 0, "opt", Stream.COMPUTE, Compute("x"), (5, 7, 5), phase="optimizer"),
    ]
    g = ExecutionGraph(1, nodes, {"x": 1})
    for steps in (1, 2, 4):
        assert chain_steps(g, steps).nodes == reference_chain(g, steps).nodes
    with pytest.raises(ValueError):
        chain_steps(g, 0)


def test_scheduler_durations_forms_and_zero_roots():
    g = random_graph(3)
    table = {n.id: 0.25 for n in g.nodes}
    by_map = asap_schedule(g, table)
    by_fn = asap_schedule(g, lambda n: 0.25)
    assert by_map == by_fn
    recorded = ExecutionGraph(1, [Node(0, 0, "a", Stream.COMPUTE, Compute("x"), duration_s=None)])
    assert asap_schedule(recorded).finish_s == {0: 0.0}


def test_deadlock_is_reported_with_the_waiting_collectives():
    def c(i, rank, key):
        return Node(i, rank, key, Stream.COMM, Collective(CollectiveOp.ALL_REDUCE, key, (0, 1), 8.0))

    g = ExecutionGraph(2, [c(0, 0, "a"), c(1, 0, "b"), c(2, 1, "b"), c(3, 1, "a")])
    with pytest.raises(TraceError, match=r"waiting: a@rank0, b@rank0"):
        asap_schedule(g)


def test_queue_of_reads_the_stream_value():
    n = Node(3, 2, "a", Stream.COPY, Compute("x"), lane=1)
    assert queue_of(n) == (2, "copy", 1)
    assert type(queue_of(n)[1]) is str


# ------------------------------------------------------------------------------- topology, collectives


def networkx_bisection(topology) -> float:
    """The bisection as ``Topology.bisection_bandwidth_bytes_per_s`` computes it with networkx."""
    g = topology.graph
    accs = topology.accelerators
    nodes = topology.system.num_nodes
    if nodes > 1:
        left = [a for a in accs if g.nodes[a]["node"] < nodes // 2]
        right = [a for a in accs if g.nodes[a]["node"] >= nodes // 2]
        view = g
    else:
        left, right = accs[: len(accs) // 2], accs[len(accs) // 2 :]
        up = topology.system.node.scale_up
        kinds = {"pcie", "socket"} if up and up.fabric == "pcie" else {"nvlink"}
        view = nx.subgraph_view(g, filter_edge=lambda a, b: g.edges[a, b]["kind"] in kinds)
    flow = nx.DiGraph()
    for a, b, data in view.edges(data=True):
        flow.add_edge(a, b, capacity=data["bandwidth_bytes_per_s"])
    for a in left:
        flow.add_edge("s", a)
    for b in right:
        flow.add_edge(b, "t")
    return float(nx.maximum_flow_value(flow, "s", "t"))


@pytest.mark.parametrize(
    ("name", "nodes"),
    [("dgx-h100", 1), ("dgx-h100", 5), ("dgx-1-v100", 1), ("dgx-1-v100", 4), ("h100-pcie-server", 1),
     ("h100-pcie-server", 3), ("zionex", 6), ("p4d-24xlarge", 2)],
)  # fmt: skip
def test_integer_bisection_equals_networkx(name, nodes):
    topology = build_topology(load_system(name, nodes=nodes))
    assert topology.bisection_bandwidth_bytes_per_s == networkx_bisection(topology)


@pytest.mark.parametrize(("name", "nodes"), [("dgx-h100", 2), ("dgx-1-v100", 2), ("h100-pcie-server", 2)])
def test_memoised_routes_and_rings_equal_fresh_ones(name, nodes):
    system = load_system(name, nodes=nodes)
    shared = build_topology(system)
    per = system.node.num_accelerators
    for node in range(nodes):
        for i, j in itertools.permutations(range(per), 2):
            a, b = gpu_id(node, i), gpu_id(node, j)
            fresh = build_topology(system)  # nothing memoised: its own max-flow
            assert shared.route(a, b) == fresh.route(a, b)
    group = tuple(range(system.num_accelerators))
    layout = group_layout(group, shared)
    assert group_layout(list(group), shared) is layout
    fresh = GroupLayout(group, build_topology(system))
    for node in layout.by_node:
        assert layout.node_rings(node) == fresh.node_rings(node)
    assert layout.intra_bandwidth == fresh.intra_bandwidth
    if nodes > 1:
        assert list(layout.own_nic_bandwidth) == list(fresh.own_nic_bandwidth)
        assert layout.node_nic_bandwidth == fresh.node_nic_bandwidth
        assert not layout.own_nic_bandwidth.flags.writeable  # shared: read-only


def test_collective_costs_do_not_depend_on_what_was_costed_before():
    system = load_system("dgx-h100", nodes=2)
    ops = [
        Collective(CollectiveOp.ALL_TO_ALL, "a", tuple(range(16)), 1e6, "fp16"),
        Collective(CollectiveOp.ALL_REDUCE, "b", tuple(range(16)), 3e7, "fp16"),
        Collective(CollectiveOp.ALL_REDUCE, "c", (0, 3, 9), 3e5, "fp32"),
        Collective(CollectiveOp.ALL_GATHER, "d", tuple(range(8)), 1e5, "fp32"),
    ]
    shared = build_topology(system)
    warm = [collective_time_s(op, shared) for op in ops]
    cold = [collective_time_s(op, build_topology(system)) for op in ops]
    assert warm == cold
    assert [collective_time_s(op, shared) for op in reversed(ops)] == warm[::-1]


def test_chain_steps_copies_every_field_positionally():
    # chain_steps builds Node and Collective copies positionally for speed: a field added to either
    # class must be added there too.
    from dataclasses import fields

    assert [f.name for f in fields(Node)] == [
        "id",
        "rank",
        "name",
        "stream",
        "op",
        "deps",
        "lane",
        "duration_s",
        "start_s",
        "phase",
    ]
    assert [f.name for f in fields(Collective)] == [
        "op",
        "key",
        "group",
        "bytes",
        "dtype",
        "send_bytes",
        "recv_bytes",
        "algorithm",
    ]


# ------------------------------------------------------------------------------- the metrics' references


def reference_step_window(graph: ExecutionGraph, schedule: Schedule) -> Window:
    """``step_window`` as first written, over the nodes."""
    steps = int(graph.metadata.get("steps", 1))
    stride = int(graph.metadata.get("step_stride", 0))
    if steps <= 1 or stride <= 0:
        ahead1 = set(graph.metadata.get("next_batch_nodes") or ())
        own = [n.id for n in graph.nodes if (n.id % stride if stride > 0 else n.id) not in ahead1]
        end1 = max((schedule.finish_s[i] for i in own), default=schedule.makespan_s) if ahead1 else None
        return Window(
            0.0, schedule.makespan_s if end1 is None else end1, frozenset(n.id for n in graph.nodes)
        )
    last = steps - 1
    ids = frozenset(n.id for n in graph.nodes if n.id // stride == last)
    ahead = set(graph.metadata.get("next_batch_nodes") or ())  # the next batch's: not the step's end
    prev_end = max(
        schedule.finish_s[n.id]
        for n in graph.nodes
        if n.id // stride == last - 1 and n.id % stride not in ahead
    )
    end = max(schedule.finish_s[i] for i in ids if i % stride not in ahead)
    return Window(prev_end, end, ids)


def reference_critical_path(
    graph: ExecutionGraph, schedule: Schedule, window: Window, category: Callable[[Node], str]
) -> tuple[dict[str, float], list[int]]:
    """``critical_path`` as first written: predecessors and collective members by id."""
    preds: dict[int, list[int]] = defaultdict(list)
    last: dict[tuple[int, str, int], int] = {}
    for n in graph.nodes:
        preds[n.id].extend(n.deps)
        q = queue_of(n)
        if q in last:
            preds[n.id].append(last[q])
        last[q] = n.id
    members: dict[str, list[int]] = defaultdict(list)
    for n in graph.nodes:
        if isinstance(n.op, Collective):
            members[n.op.key].append(n.id)
    by_id = graph.by_id
    start, finish = schedule.start_s, schedule.finish_s
    closing = [i for i in window.node_ids if finish[i] <= window.end_s] or list(window.node_ids)
    current = max(closing, key=lambda i: (finish[i], i))
    totals: dict[str, float] = defaultdict(float)
    path: list[int] = []
    time = finish[current]
    while True:
        node = by_id[current]
        path.append(current)
        begin = max(start[current], window.start_s)
        totals[category(node)] += max(0.0, time - begin)
        if start[current] <= window.start_s:
            break
        candidates = list(preds[current])
        if isinstance(node.op, Collective):
            for m in members[node.op.key]:
                candidates.extend(preds[m])
        if not candidates:
            totals["exposed_wait"] += start[current] - window.start_s
            break
        best = max(candidates, key=lambda i: (finish[i], i))
        gap = start[current] - max(finish[best], window.start_s)
        if gap > 0:
            totals["exposed_wait"] += gap
        if finish[best] <= window.start_s:
            break
        time = finish[best]
        current = best
    return dict(totals), path


def reference_busy_time(
    graph: ExecutionGraph, schedule: Schedule, window: Window
) -> dict[tuple[int, str], float]:
    """``busy_time`` written plainly: the window's nodes' intervals per (rank, stream), merged."""
    intervals: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    for n in graph.nodes:
        if n.id not in window.node_ids:
            continue
        s, f = schedule.start_s[n.id], schedule.finish_s[n.id]
        if f > s:
            intervals[(n.rank, n.stream.value)].append((s, f))
    return {key: _reference_union(spans) for key, spans in intervals.items()}


def _reference_union(spans: list[tuple[float, float]]) -> float:
    """The length of the union of ``spans``, sorted and merged plainly."""
    spans = sorted(spans)
    total = 0.0
    cur_s, cur_f = spans[0]
    for s, f in spans[1:]:
        if s > cur_f:
            total += cur_f - cur_s
            cur_s, cur_f = s, f
        else:
            cur_f = max(cur_f, f)
    return total + (cur_f - cur_s)


def reference_check_schedule(graph: ExecutionGraph, schedule: Schedule) -> None:
    """``check_schedule`` as first written (the per-node walk the fast check falls back to)."""
    tolerance = 1e-12
    ids = {n.id for n in graph.nodes}
    if set(schedule.start_s) != ids or set(schedule.finish_s) != ids:
        missing = sorted(ids - set(schedule.finish_s))[:3]
        raise SimulationError(f"nodes not scheduled exactly once (e.g. {missing})")
    by_id = graph.by_id
    last_finish: dict[tuple[int, str, int], tuple[float, int]] = {}
    for n in graph.nodes:
        s, f = schedule.start_s[n.id], schedule.finish_s[n.id]
        if not (math.isfinite(s) and math.isfinite(f)) or f < s - tolerance:
            raise SimulationError(f"node {n.name}#{n.id} on rank {n.rank}: time runs backwards ({s} -> {f})")
        for d in n.deps:
            if schedule.finish_s[d] > s + tolerance * max(1.0, s):
                raise SimulationError(
                    f"node {n.name}#{n.id} starts at {s} before its dependency {by_id[d].name}#{d} "
                    f"finishes at {schedule.finish_s[d]}"
                )
        q = queue_of(n)
        if q in last_finish:
            prev_f, prev_id = last_finish[q]
            if s < prev_f - tolerance * max(1.0, s):
                raise SimulationError(
                    f"queue rank {q[0]} {q[1]} lane {q[2]} runs {by_id[prev_id].name} and {n.name} at once"
                )
        last_finish[q] = (f, n.id)


def reference_network_busy(
    graph: ExecutionGraph, schedule: Schedule, window: Window, per_node: int
) -> dict[int, float]:
    """``simulate._network_busy`` written plainly: per rank, the union of the window's collectives
    across nodes."""
    spans: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for n in graph.nodes:
        if n.id not in window.node_ids or not isinstance(n.op, Collective):
            continue
        s, f = schedule.start_s[n.id], schedule.finish_s[n.id]
        if len({r // per_node for r in n.op.group}) > 1 and f > s:
            spans[n.rank].append((s, f))
    return {rank: _reference_union(intervals) for rank, intervals in spans.items()}


def reference_index(graph: ExecutionGraph) -> dict[str, object]:
    """What ``GraphIndex.of`` reads, node by node in one loop."""
    position = {n.id: i for i, n in enumerate(graph.nodes)}
    queue_number: dict[tuple[int, str, int], int] = {}
    last: dict[int, int] = {}
    out: dict[str, list[int]] = defaultdict(list)
    by_key: dict[str, int] = {}
    members: dict[int, list[int]] = {}
    flat: list[int] = []
    for i, n in enumerate(graph.nodes):
        flat.extend(position[d] for d in n.deps)
        out["dep_end"].append(len(flat))
        q = queue_number.setdefault(queue_of(n), len(queue_number))
        out["queue"].append(q)
        out["prev_in_queue"].append(last.get(q, -1))
        last[q] = i
        if isinstance(n.op, Collective) and n.op.key in by_key:
            v = by_key[n.op.key]
            members[v].append(i)
        else:
            v = len(out["vertex_head"])
            out["vertex_head"].append(i)
            if isinstance(n.op, Collective):
                by_key[n.op.key] = v
                members[v] = [i]
        out["vertex"].append(v)
    return {
        **out,
        "ids": [n.id for n in graph.nodes],
        "position": position,
        "dep_flat": flat,
        "queue_keys": list(queue_number),
        "members": members,
    }


def assert_index_matches(index: GraphIndex, graph: ExecutionGraph) -> None:
    expected = reference_index(graph)
    for name, value in expected.items():
        assert getattr(index, name) == value, name


# ------------------------------------------------------------------------------- real configurations

# (system, nodes, plan, runtime): both DGX generations, one and two nodes, the plain and the planned
# sharding, the three runtimes (fused keeps the chained graph; eager and cuda_graphs rewrite it).
CONFIGS = [
    ("dgx-h100", 1, "table_wise", "fused"),
    ("dgx-h100", 1, "auto", "eager"),
    ("dgx-h100", 2, "table_wise", "cuda_graphs"),
    ("dgx-h100", 2, "auto", "fused"),
    ("dgx-a100", 1, "auto", "cuda_graphs"),
    ("dgx-a100", 2, "table_wise", "eager"),
    ("dgx-a100", 2, "auto", "fused"),
]


def _prepared(name: str, nodes: int, plan_name: str, runtime: str):
    system, workload = prepare(
        name, "dlrm-dcnv2", nodes=nodes, precision="fp16", overrides=[f"workload.training.runtime={runtime}"]
    )
    return system, workload, make_plan(plan_name, workload, system)


def cost_model(system, workload, graph: ExecutionGraph) -> CostModel:
    """The cost model ``simulate_training`` makes for ``graph``."""
    metadata = graph.metadata
    return CostModel(
        system, workload, fused_tables=metadata.get("fused_tables"), table_slices=metadata.get("table_slices")
    )


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime"), CONFIGS)
def test_simulation_matches_the_reference_pipeline(name, nodes, plan_name, runtime):
    """Every figure of an analytic simulation, recomputed with the plain implementations."""
    system, workload, plan = _prepared(name, nodes, plan_name, runtime)
    # The reference pipeline has no interference pass (``recsim.cost.interference``, checked
    # against its own scalar reference in tests/unit/test_cost_interference.py).
    sim = simulate_training(
        system, workload, plan, SimulationOptions(fidelity="analytic", comm_interference=False)
    )
    step = build_training_step(workload, plan, BuildOptions(validate_plan=False))
    graph = apply_runtime(reference_chain(step, 3), workload)
    assert sim.graph is not None and sim.schedule is not None
    assert sim.graph.nodes == graph.nodes and sim.graph.metadata == graph.metadata
    cost = cost_model(system, workload, graph)
    # Each node's modelled duration; an uneven all-to-all's parts all take the whole collective's,
    # the matrix of its parts in group order (worked out here, not by the cost model's grouping).
    by_id = {n.id: cost.duration_s(n) for n in graph.nodes}
    parts_of: dict[str, list[Node]] = defaultdict(list)
    for n in graph.nodes:
        if isinstance(n.op, Collective) and n.op.op is CollectiveOp.ALL_TO_ALL:
            parts_of[n.op.key].append(n)
    for members in parts_of.values():
        if any(m.op.send_bytes is not None for m in members):
            ordered = sorted(members, key=lambda m: m.op.group.index(m.rank))
            whole = collective_time_s([m.op for m in ordered], cost.topology)
            by_id.update((m.id, whole) for m in members)
    start, finish = reference_schedule(graph, lambda n: by_id[n.id])
    schedule = Schedule(start, finish)
    assert (sim.schedule.start_s, sim.schedule.finish_s) == (start, finish)
    reference_check_schedule(graph, schedule)
    window = reference_step_window(graph, schedule)
    breakdown, _ = reference_critical_path(graph, schedule, window, category_of)
    result = sim.result
    assert result.iteration_time_s == window.length_s
    assert dict(result.breakdown_s) == {k: breakdown.get(k, 0.0) for k in CATEGORIES}
    busy = reference_busy_time(graph, schedule, window)
    assert dict(result.utilisation) == _utilisation(busy, plan.world_size, window.length_s)
    per_node = system.node.num_accelerators
    network = reference_network_busy(graph, schedule, window, per_node)
    # Host work and the copies with a host end (a copy between GPUs moves no host memory bytes).
    host_bytes = math.fsum(
        n.op.bytes
        for n in graph.nodes
        if n.id in window.node_ids
        and (isinstance(n.op, Host) or (isinstance(n.op, Transfer) and "host" in (n.op.src, n.op.dst)))
    )
    # The accelerators: each window node's kernel energy, added up exactly by rank.
    assert system.accelerator is not None
    kernels = KernelEnergy.of(system.accelerator)
    by_rank: dict[int, list[float]] = defaultdict(list)
    for n in graph.nodes:
        if n.id in window.node_ids:
            by_rank[n.rank].append(kernels.op_j(n.op, cost.embedding_cost))
    kernel_j = {rank: math.fsum(values) for rank, values in by_rank.items()}
    energy = step_energy(
        system,
        cost.topology,
        window.length_s,
        busy,
        host_bytes=host_bytes,
        network_busy_s=network,
        kernel_j=kernel_j,
    )
    assert result.avg_power_w == energy.avg_power_w
    assert result.energy_per_sample_j == energy.total_j / workload.training.global_batch_size


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime"), CONFIGS)
def test_metrics_match_the_references(name, nodes, plan_name, runtime):
    system, workload, plan = _prepared(name, nodes, plan_name, runtime)
    step = build_training_step(workload, plan, BuildOptions(validate_plan=False))
    graph = apply_runtime(chain_steps(step, 3), workload)
    index = GraphIndex.of(graph)
    assert_index_matches(index, graph)
    cost = cost_model(system, workload, graph)
    schedule = asap_schedule(graph, cost.duration_s)
    # With and without the timing given, with the schedule's times or deliberately uneven ones
    # (random durations: gaps, idle streams, ties).
    rng = random.Random(nodes)
    jitter = {n.id: rng.choice([0.0, 1e-4, rng.random() * 1e-3]) for n in graph.nodes}
    uneven = asap_schedule(graph, jitter)
    for sched in (schedule, uneven):
        timing = Timing.of(index, sched)
        for given in (timing, None):
            window = step_window(graph, sched, given)
            assert window == reference_step_window(graph, sched)
            got = critical_path(graph, sched, window, category_of, given)
            assert got == reference_critical_path(graph, sched, window, category_of)
            busy = busy_time(graph, sched, window, given)
            expected = reference_busy_time(graph, sched, window)
            assert busy == expected and list(busy) == list(expected)  # the order sums take
        network = _network_busy(timing, window, system)
        assert network == reference_network_busy(graph, sched, window, system.node.num_accelerators)


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime"), CONFIGS[:3])
def test_des_schedule_metrics_match_the_references(name, nodes, plan_name, runtime):
    # The DES engine's schedule has contention gaps: exposed waits on the critical path.
    system, workload, plan = _prepared(name, nodes, plan_name, runtime)
    sim = simulate_training(system, workload, plan, SimulationOptions(fidelity="des"))
    graph, sched = sim.graph, sim.schedule
    assert graph is not None and sched is not None
    plain = ExecutionGraph(graph.ranks, list(graph.nodes), dict(graph.metadata))
    window = reference_step_window(plain, sched)
    breakdown, _ = reference_critical_path(plain, sched, window, category_of)
    assert dict(sim.result.breakdown_s) == {k: breakdown.get(k, 0.0) for k in CATEGORIES}
    busy = reference_busy_time(plain, sched, window)
    assert dict(sim.result.utilisation) == _utilisation(busy, plan.world_size, window.length_s)


def test_schedule_checks_name_the_same_first_violation():
    system, workload, plan = _prepared("dgx-h100", 1, "table_wise", "eager")
    step = build_training_step(workload, plan, BuildOptions(validate_plan=False))
    graph = apply_runtime(chain_steps(step, 2), workload)
    cost = CostModel(system, workload)
    good = asap_schedule(graph, cost.duration_s)
    index = GraphIndex.of(graph)
    rng = random.Random(5)
    ids = [n.id for n in graph.nodes]
    cases = [good]
    for _ in range(40):
        start, finish = dict(good.start_s), dict(good.finish_s)
        for i in rng.sample(ids, rng.randint(1, 3)):
            how = rng.choice(["early", "late", "backwards", "nan", "inf", "tiny"])
            if how == "early":
                start[i] = max(0.0, start[i] - rng.random() * 1e-3)
            elif how == "late":
                start[i] += rng.random() * 1e-3
                finish[i] += rng.random() * 1e-3
            elif how == "backwards":
                finish[i] = start[i] - 1e-6
            elif how == "nan":
                finish[i] = math.nan
            elif how == "inf":
                start[i] = math.inf
            else:  # within the tolerance: no violation
                start[i] -= 1e-13
        cases.append(Schedule(start, finish))
    cases.append(Schedule({i: good.start_s[i] for i in ids[1:]}, dict(good.finish_s)))
    for sched in cases:
        try:
            reference_check_schedule(graph, sched)
            expected = None
        except SimulationError as exc:
            expected = str(exc)
        for timing in (None, Timing.of(index, sched) if sched.start_s.keys() == set(ids) else None):
            try:
                check_schedule(graph, sched, timing)
                got = None
            except SimulationError as exc:
                got = str(exc)
            assert got == expected


def test_metrics_with_non_finite_times_match_the_references():
    g = ExecutionGraph(
        1,
        [
            Node(0, 0, "a", Stream.COMPUTE, Compute("x")),
            Node(1, 0, "b", Stream.COMPUTE, Compute("x"), (0,)),
            Node(2, 0, "c", Stream.HOST, Compute("x")),
            Node(3, 0, "d", Stream.COMPUTE, Compute("x"), (1, 2)),
        ],
    )
    for start, finish in (
        ({0: 0.0, 1: 1.0, 2: 0.0, 3: 2.0}, {0: 1.0, 1: math.nan, 2: 0.5, 3: 3.0}),
        ({0: 0.0, 1: 1.0, 2: 0.0, 3: 2.0}, {0: 1.0, 1: 2.0, 2: math.inf, 3: 3.0}),
        ({0: 0.0, 1: math.nan, 2: 0.0, 3: 2.0}, {0: 1.0, 1: 2.0, 2: 0.5, 3: 3.0}),
    ):
        sched = Schedule(start, finish)
        window = step_window(g, sched)
        assert repr(window) == repr(reference_step_window(g, sched))
        got = critical_path(g, sched, window, lambda n: n.name)
        assert repr(got) == repr(reference_critical_path(g, sched, window, lambda n: n.name))
        assert repr(busy_time(g, sched, window)) == repr(reference_busy_time(g, sched, window))


@pytest.mark.parametrize("seed", range(8))
def test_index_matches_the_reference_on_random_graphs(seed):
    g = random_graph(seed, ranks=2 + seed % 4)
    if seed % 2:  # some readers give plain-string streams: the same queues as the enum's
        g = ExecutionGraph(g.ranks, [replace(n, stream=n.stream.value) for n in g.nodes])
    assert_index_matches(GraphIndex.of(g), g)


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime"), CONFIGS[:4])
def test_lazily_chained_graph_is_the_chained_graph(name, nodes, plan_name, runtime):
    system, workload, plan = _prepared(name, nodes, plan_name, runtime)
    step = build_training_step(workload, plan, BuildOptions(validate_plan=False))
    for steps in (1, 2, 3):
        expected = reference_chain(step, steps)
        lazy = ChainedGraph.lazy(step, steps)
        index = lazy.index()
        assert not lazy.made and len(lazy) == len(expected.nodes)
        assert_index_matches(index, expected)
        # A few nodes made on their own, then all of them.
        picks = [0, 1, len(expected.nodes) // 2, len(expected.nodes) - 1, -1]
        assert [index.nodes[i] for i in picks] == [expected.nodes[i] for i in picks]
        assert [lazy.copy_at(i) for i in picks] == [expected.nodes[i] for i in picks]
        assert not lazy.made
        cost = cost_model(system, workload, expected)
        assert index.copies is not None
        step_nodes, copies = index.copies
        assert cost.durations_s(step_nodes) * copies == [cost.duration_s(n) for n in expected.nodes]
        for i in picks[:-1]:
            source, node = index.source(i), expected.nodes[i]
            assert (source.rank, source.stream, source.lane, source.phase) == (
                node.rank,
                node.stream,
                node.lane,
                node.phase,
            )
            if not isinstance(node.op, Collective):
                assert source.op is step.nodes[i % len(step.nodes)].op
        assert lazy == expected and expected == lazy
        assert lazy.made and lazy.nodes == expected.nodes and lazy.metadata == expected.metadata
        assert lazy.index().ids == index.ids  # now from the nodes
        assert ChainedGraph(lazy.ranks, list(expected.nodes), dict(expected.metadata)) == expected
    with pytest.raises(ValueError):
        ChainedGraph.lazy(step, 0)


def test_lazily_chained_graph_with_odd_ids():
    # Negative or duplicate ids: the chained graph is still chain_steps', its index read from it.
    nodes = [
        Node(-2, 0, "in", Stream.HOST, Host("data_loading"), phase="input"),
        Node(5, 0, "a", Stream.COMPUTE, Compute("x"), (-2, -2), phase="forward"),
        Node(7, 0, "b", Stream.COMPUTE, Compute("x"), (), phase="forward"),
        Node(9, 0, "opt", Stream.COMPUTE, Compute("x"), (5, 7, 5), phase="optimizer"),
    ]
    dup = [
        Node(0, 0, "in", Stream.HOST, Host("data_loading"), phase="input"),
        *nodes[1:],
        Node(7, 0, "c", Stream.COPY, Compute("y"), (5,), phase="forward"),
    ]
    dup[1] = replace(dup[1], deps=(0, 0))
    for graph in (ExecutionGraph(1, nodes), ExecutionGraph(1, dup)):
        for steps in (1, 3):
            expected = reference_chain(graph, steps)
            assert chain_steps(graph, steps).nodes == expected.nodes
            lazy = ChainedGraph.lazy(graph, steps)
            assert [lazy.copy_at(i) for i in range(len(expected.nodes))] == expected.nodes
            index = lazy.index()
            assert index.copies is None
            assert_index_matches(index, expected)


def test_durations_in_bulk_equal_one_by_one():
    system, workload, plan = _prepared("dgx-a100", 2, "auto", "eager")
    step = build_training_step(workload, plan, BuildOptions(validate_plan=False))
    graph = apply_runtime(chain_steps(step, 3), workload)
    one = cost_model(system, workload, graph)
    bulk = cost_model(system, workload, graph)
    assert bulk.durations_s(graph.nodes) == [one.duration_s(n) for n in graph.nodes]
    # Equal ops that are different objects share a cost, as equal values (by the dataclasses' eq).
    a, b = (
        Compute("gemm", 1e9, 1e6, 1e6, "fp16", ((64, 64),)),
        Compute("gemm", 1e9, 1e6, 1e6, "fp16", ((64, 64),)),
    )
    assert a is not b and a == b
    assert bulk.durations_s([Node(0, 0, "a", Stream.COMPUTE, a)]) == bulk.durations_s(
        [Node(1, 0, "b", Stream.COMPUTE, b)]
    )
    assert len(bulk._by_op) == len(set(bulk._by_op))


def test_paused_gc_restores_the_collector():
    was = gc.isenabled()
    try:
        gc.enable()
        with paused_gc():
            assert not gc.isenabled()
        assert gc.isenabled()
        with pytest.raises(RuntimeError), paused_gc():
            raise RuntimeError("boom")
        assert gc.isenabled()
        gc.disable()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # a caller that switched it off keeps it off
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()


# ------------------------------------------------------------------------------- builder, topology and
# all-to-all fast paths: the plain versions they replaced, kept as the references


def _built(name: str, workload_name: str, nodes: int, plan_name: str, runtime: str):
    system, workload = prepare(
        name, workload_name, nodes=nodes, precision="fp16", overrides=[f"workload.training.runtime={runtime}"]
    )
    plan = make_plan(plan_name, workload, system)
    return system, workload, plan, build_training_step(workload, plan, BuildOptions(validate_plan=False))


def reference_lookup_bytes_by_owner(bld, b: int) -> list[dict[int, float]]:
    """[sender][owner] -> index + length bytes of the sender's local samples for owner's shards
    (``_Builder._lookup_bytes_by_owner`` as it was: a row per sender, now one row for all)."""
    from recsim.graph.build import LENGTH_BYTES

    out: list[dict[int, float]] = [defaultdict(float) for _ in range(bld.world)]
    for shard in bld.plan.shards:
        if shard.sharding == "data_parallel":
            continue
        table = bld.tables[shard.table]
        # A distributed shard's ranks each receive the ids of their own rows.
        lookups = bld.w.table_lookups(table) * b * bld.ops.member_share(shard)
        for owner in shard.ranks:
            per_sender = lookups * bld.index_bytes + b * LENGTH_BYTES
            for sender in range(bld.world):
                out[sender][owner] += per_sender
    return out


BUILD_CONFIGS = [
    ("dgx-h100", "dlrm-dcnv2", 1, "table_wise", "fused"),
    ("dgx-h100", "dlrm-dcnv2", 2, "row_wise", "eager"),
    ("dgx-a100", "dlrm-dcnv2", 2, "auto", "cuda_graphs"),
    ("dgx-a100", "dlrm-mlperf", 2, "hybrid_embedding", "fused"),
]


@pytest.mark.parametrize(("name", "workload_name", "nodes", "plan_name", "runtime"), BUILD_CONFIGS)
def test_builder_exchange_splits_and_shared_ops_match_the_references(
    name, workload_name, nodes, plan_name, runtime
):
    from recsim.graph.build import _Builder, dense_layer_ops
    from recsim.graph.runtime import runtime as framework_named
    from recsim.graph.shard_ops import ShardOps, pooled_exchange
    from recsim.workload.spec import DTYPE_BYTES

    _, workload, plan, step = _built(name, workload_name, nodes, plan_name, runtime)
    world = plan.world_size
    group = tuple(range(world))
    batch = workload.training.global_batch_size
    b = batch // world
    # The input all-to-all's splits, as first written: a generator per rank over the owner table.
    by_rank = reference_lookup_bytes_by_owner(_Builder(workload, plan, BuildOptions()), b)
    # The pooled all-to-all's, from the exchange matrix read entry by entry.
    comm_dtype = step.metadata["comm_dtype"]
    matrix = pooled_exchange(ShardOps(workload), plan, batch, DTYPE_BYTES[comm_dtype]).send.tolist()
    seen = {"input_dist": 0, "a2a_fwd": 0, "a2a_bwd": 0}
    for n in step.nodes:
        op = n.op
        if not isinstance(op, Collective) or op.key not in seen:
            continue
        r = n.rank
        if op.key == "input_dist":
            send = tuple(by_rank[r].get(q, 0.0) for q in group)
            recv = tuple(by_rank[q].get(r, 0.0) for q in group)
        elif op.key == "a2a_fwd":
            send, recv = tuple(matrix[r]), tuple(matrix[q][r] for q in group)
        else:
            send, recv = tuple(matrix[q][r] for q in group), tuple(matrix[r])
        assert op.send_bytes == send and op.recv_bytes == recv
        assert [type(x) for x in op.send_bytes + op.recv_bytes] == [type(x) for x in send + recv]
        assert op.bytes == sum(send)
        seen[op.key] += 1
    # HugeCTR's hybrid embedding hands every rank the whole batch, DLE's loader each rank its own
    # features: no index all-to-all.
    assert seen["input_dist"] == (0 if plan_name == "hybrid_embedding" or runtime == "cuda_graphs" else world)
    # Every dense layer's op is what ``dense_layer_ops`` makes afresh (a cross layer's GEMMs and
    # element-wise node by their names), one object shared by the ranks.
    precision = workload.training.precision
    s = DTYPE_BYTES[precision]
    bottom = [layer for layer in workload.dense_layers if layer.part == "bottom"]
    first_cross = next((x for x in workload.dense_layers if x.op == "dcnv2"), None)
    expected: dict[str, object] = {}
    # The top MLP's first layer reads the framework's padding of the dot interaction's output.
    pads = {
        id(after): framework_named(runtime).dot_output_padding(after.in_features)
        for before, after in itertools.pairwise(workload.dense_layers)
        if before.op == "dot" and after.op == "linear"
    }
    for layer in workload.dense_layers:
        for tag, backward in (("_fwd", False), ("_bwd", True)):
            first = backward and bool(bottom) and layer is bottom[0]
            made = dense_layer_ops(
                _padded(layer, pads.get(id(layer), 0)),
                b,
                s,
                precision,
                backward=backward,
                input_grad=not first,
                closes_stack=backward and layer is first_cross,
                async_wgrad=backward
                and (
                    (layer.op == "dcnv2" and framework_named(runtime).async_cross_wgrad)
                    or (layer.op == "linear" and framework_named(runtime).async_mlp_wgrad)
                ),
            )
            for suffix, op in made:
                expected[f"{layer.name}{suffix}{tag}"] = op
    shared: dict[str, object] = {}
    for n in step.nodes:
        if n.name in expected and n.rank != step.metadata["bottom_rank"]:
            assert n.op == expected[n.name]
            assert shared.setdefault(n.name, n.op) is n.op
    assert shared
    # Dependencies: de-duplicated in first-seen order, as ``tuple(dict.fromkeys(deps))`` gives.
    for n in step.nodes:
        assert n.deps == tuple(dict.fromkeys(n.deps))


def reference_find_paths(topology, src: str, dst: str) -> tuple[tuple[str, ...], ...]:
    """The search of ``Topology._find_paths`` inside a node as first written: networkx over views."""
    for view in topology._fabric_graph(src, dst):
        if src in view and dst in view and nx.has_path(view, src, dst):
            return tuple(tuple(p) for p in nx.all_shortest_paths(view, src, dst))
    raise AssertionError(f"no path from {src} to {dst}")


SHIPPED = [
    ("dgx-h100", 2),
    ("dgx-a100", 1),
    ("dgx-1-v100", 2),
    ("h100-pcie-server", 1),
    ("zionex", 2),
    ("p4d-24xlarge", 2),
    ("hgx-h200", 1),
    ("big-basin", 1),
]


@pytest.mark.parametrize(("name", "nodes"), SHIPPED)
def test_intra_node_paths_equal_the_networkx_search(name, nodes):
    system = load_system(name, nodes=nodes)
    topology = build_topology(system)
    g = topology.graph
    for node in range(nodes):
        inside = [v for v, d in g.nodes(data=True) if d["node"] == node]
        for a, b in itertools.permutations(inside, 2):
            expected = reference_find_paths(build_topology(system), a, b)
            assert topology.paths(a, b) == expected, (a, b)
    if topology.system.node.num_accelerators >= 2:
        bw = topology.local_pair_bandwidth()
        fresh = build_topology(system)
        for i, j in itertools.permutations(range(system.node.num_accelerators), 2):
            a, c = gpu_id(0, i), gpu_id(0, j)
            paths = reference_find_paths(fresh, a, c)
            expected_bw = fresh._route_from_paths(a, c, paths).bandwidth_bytes_per_s
            if fresh.shm_pair(a, c):  # through host memory (NCCL's SHM transport)
                expected_bw *= SHM_EFFICIENCY
            assert bw[i, j] == expected_bw


def reference_integral_max_flow(edges, sources, sinks) -> float | None:
    """``_integral_max_flow`` as first written: Python integers edge by edge."""
    import numpy as np
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import maximum_flow

    if not edges:
        return None
    ints: list[int] = []
    for _, _, capacity in edges:
        if not (float(capacity).is_integer() and 0 <= capacity < 2**52):
            return None
        ints.append(int(capacity))
    scale = 0
    for c in ints:
        scale = math.gcd(scale, c)
    if scale == 0:
        return 0.0
    index: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    out_cap: dict[str, int] = {}
    in_cap: dict[str, int] = {}
    for (a, b, _), c in zip(edges, ints, strict=True):
        rows.append(index.setdefault(a, len(index)))
        cols.append(index.setdefault(b, len(index)))
        out_cap[a] = out_cap.get(a, 0) + c
        in_cap[b] = in_cap.get(b, 0) + c
    vals = [c // scale for c in ints]
    source, sink = len(index), len(index) + 1
    total = 0
    for a in sources:
        if out_cap.get(a, 0) > 0:
            rows.append(source)
            cols.append(index[a])
            vals.append(out_cap[a] // scale)
            total += vals[-1]
    for b in sinks:
        if in_cap.get(b, 0) > 0:
            rows.append(index[b])
            cols.append(sink)
            vals.append(in_cap[b] // scale)
    limit = 2**31 - 1
    if max(vals) > limit or total > limit:
        return None
    size = len(index) + 2
    matrix = csr_array(
        (np.asarray(vals, dtype=np.int32), (np.asarray(rows), np.asarray(cols))), shape=(size, size)
    )
    return float(int(maximum_flow(matrix, source, sink).flow_value) * scale)


def test_integral_max_flow_matches_the_reference():
    # The edge-list version the vectorised one replaced (an oracle in the topology speed tests).
    from tests.unit.test_topology_speed_paths import _integral_max_flow

    cases = []
    for name, nodes in (("dgx-h100", 4), ("dgx-1-v100", 2), ("zionex", 3), ("h100-pcie-server", 1)):
        topology = build_topology(load_system(name, nodes=nodes))
        g = topology.graph
        edges = [(a, b, d["bandwidth_bytes_per_s"]) for a, b, d in g.edges(data=True)]
        accs = topology.accelerators
        cases.append((edges, accs[: len(accs) // 2], accs[len(accs) // 2 :]))
    rng = random.Random(11)
    names = [f"v{i}" for i in range(12)]
    for k in range(60):
        scale = rng.choice([1, 7, 25_000_000_000, 2**20])
        edges = []
        for _ in range(rng.randint(0, 30)):
            a, b = rng.sample(names, 2)
            cap: float = float(rng.randint(0, 40) * scale)
            if k % 9 == 1:
                cap = rng.choice([cap + 0.5, math.inf, math.nan, -1.0, 2.0**52, 2.0**40 + 1, float(2**31)])
            edges.append((a, b, cap))
        sources = rng.sample([*names, "isolated"], 4)
        sinks = rng.sample([*names, "alone"], 4)
        cases.append((edges, sources, sinks))
    cases.append(([("a", "b", 0.0), ("b", "c", 0.0)], ["a"], ["c"]))
    for edges, sources, sinks in cases:
        expected = reference_integral_max_flow(edges, sources, sinks)
        got = _integral_max_flow(edges, sources, sinks)
        assert repr(got) == repr(expected)


@pytest.mark.parametrize(("name", "nodes"), SHIPPED)
def test_topology_facts_read_from_the_adjacency_match_the_edge_views(name, nodes):
    from recsim.cost.collectives.base import _TopologyFacts

    topology = build_topology(load_system(name, nodes=nodes))
    g = topology.graph
    expected_integral = all(
        float(d["bandwidth_bytes_per_s"]).is_integer() and d["bandwidth_bytes_per_s"] < 2**52
        for _, _, d in g.edges(data=True)
    )
    assert topology._integral_capacities == expected_integral
    expected_nics: dict[str, float] = {}
    for v, data in g.nodes(data=True):
        if data["kind"] != "nic":
            continue
        up = sum(
            d["bandwidth_bytes_per_s"] for _, _, d in g.out_edges(v, data=True) if d["kind"] == "network"
        )
        down = sum(
            d["bandwidth_bytes_per_s"] for _, _, d in g.in_edges(v, data=True) if d["kind"] == "network"
        )
        if min(up, down) > 0:
            expected_nics[v] = min(up, down)
    got = _TopologyFacts(topology).nic_bandwidth
    assert list(got.items()) == list(expected_nics.items())
    assert {v: topology._lazy_nvlink_adjacency[v] for v in g.nodes} == {
        v: [w for w in g.successors(v) if g.edges[v, w]["kind"] == "nvlink"] for v in g.nodes
    }


def reference_level_costs(layout, matrix):
    """``alltoall._level_costs`` as first written (node equality and nonzeros made per call)."""
    import numpy as np

    from recsim.cost.collectives.alltoall import p2p_rounds
    from recsim.cost.collectives.base import LevelCost

    m = matrix.copy()
    np.fill_diagonal(m, 0.0)
    nodes = np.asarray(layout.nodes)
    same = nodes[:, None] == nodes[None, :]
    intra = inter = None
    local_m = np.where(same, m, 0.0)
    if layout.local >= 2 and local_m.any():
        load = np.maximum(local_m.sum(axis=1), local_m.sum(axis=0))
        seconds = load / layout.port_bandwidth
        locals_ = np.asarray(layout.locals)
        rows, cols = np.nonzero(local_m)
        pair_bw = layout.topology.local_pair_bandwidth()
        bw = pair_bw[locals_[rows], locals_[cols]]
        per_pair = local_m[rows, cols] / bw
        np.maximum.at(seconds, rows, per_pair)
        np.maximum.at(seconds, cols, per_pair)
        worst = int(np.argmax(seconds))
        peers = np.maximum((local_m > 0).sum(axis=1), (local_m > 0).sum(axis=0))
        rate = load[worst] / seconds[worst] if seconds[worst] > 0 else layout.port_bandwidth[worst]
        intra = LevelCost(float(p2p_rounds(int(peers.max()), layout.n)), float(load[worst]), float(rate))
    remote_m = np.where(same, 0.0, m)
    if layout.num_nodes >= 2 and remote_m.any():
        load = np.maximum(remote_m.sum(axis=1), remote_m.sum(axis=0))
        bw = layout.own_nic_bandwidth
        worst = int(np.argmax(load / bw))
        peers = np.maximum((remote_m > 0).sum(axis=1), (remote_m > 0).sum(axis=0))
        inter = LevelCost(float(p2p_rounds(int(peers.max()), layout.n)), float(load[worst]), float(bw[worst]))
    return intra, inter


@pytest.mark.parametrize(("name", "nodes"), [("dgx-h100", 2), ("dgx-1-v100", 2), ("h100-pcie-server", 2)])
def test_all_to_all_level_costs_match_the_reference(name, nodes):
    import numpy as np

    from recsim.cost.collectives.alltoall import _level_costs

    topology = build_topology(load_system(name, nodes=nodes))
    world = topology.system.num_accelerators
    rng = np.random.default_rng(3)
    groups = [tuple(range(world)), tuple(range(0, world, 2)), (0, 1, world - 1), (1, 2)]
    for group in groups:
        layout = group_layout(group, topology)
        n = len(group)
        for k in range(6):
            m = rng.random((n, n)) * 1e6
            if k % 2:
                m[rng.random((n, n)) < 0.5] = 0.0  # sparse: some pairs send nothing
            if k == 4:
                m[:] = 0.0
            if k == 5:
                m *= 1e-320  # times that underflow to 0 s
            got = _level_costs(layout, m)
            assert repr(got) == repr(reference_level_costs(layout, m))
        assert not layout.same_node.flags.writeable


# ------------------------------------------------------------------------------- the step builder,
# before its dense chain was laid per rank from one template, its nodes made through their slots, the
# input table kept as one row, the ranks' equal ops shared and a shard's figures worked out once for
# both passes: the plain versions, kept verbatim as the references


class _ReferenceShardOps(ShardOps):
    def op(
        self,
        shard: Shard,
        pass_: str,
        global_batch: int,
        world_size: int,
        output_dtype: str | None = None,
        hit_bags_only: bool = False,
        atomic: bool = False,
        inference: bool = False,
    ) -> Embedding:
        """The shard's ``Embedding`` op of ``pass_`` (forward, backward with the fused update, or a
        replicated shard's dense update)."""
        table = self.tables[shard.table]
        served = self.served(shard, global_batch, world_size)
        lookups = served * self.w.table_lookups(table) * self.lookup_share(shard)
        unique = self.unique_rows(shard, lookups)
        if shard.sharding == "distributed":
            # One rank's part: every n-th row of the shard, so 1/n of its lookups and distinct rows.
            # ASSUMPTION: its cache behaviour is the shard's access model at 1/n of the lookups.
            n = len(shard.ranks)
            lookups, unique = lookups / n, unique / n
        bags = None
        if hit_bags_only and (shard.sharding == "distributed" or self.is_slice(shard)):
            bags = served * self.bags_hit(shard.table, self.member_share(shard))
        replicated = shard.sharding == "data_parallel" and world_size > 1
        optimizer = "none"
        if pass_ == "update":
            lookups, unique, bags = 0.0, 0.0, None
            optimizer = self.w.training.embedding_optimizer
        elif pass_ == "backward" and not replicated:
            optimizer = self.w.training.embedding_optimizer
        return Embedding(
            table=self.op_table(shard),
            pass_=pass_,
            rows=shard.rows_per_rank,
            dim=shard.dim,
            dtype=shard.dtype or self.w.table_dtype(table),
            batch=served,
            lookups=lookups,
            unique_rows=unique,
            tier=shard.tier,
            optimizer=optimizer,
            bags=bags,
            output_dtype=output_dtype,
            atomic=atomic and pass_ == "backward",
            inference=inference,
        )


class _ReferenceBuilder(_Builder):
    """``_Builder`` with its node-making and pass methods as they were."""

    def add(
        self,
        rank: int,
        name: str,
        stream: Stream,
        op: Op,
        deps: Sequence[int] = (),
        phase: str = "",
        lane: int = 0,
    ) -> int:
        # Most nodes have at most one dependency, which needs no de-duplication.
        unique = tuple(deps) if len(deps) < 2 else tuple(dict.fromkeys(deps))
        nid = self.next_id
        self.graph.add(Node(nid, rank, name, stream, op, unique, lane, None, None, phase))
        self.next_id = nid + 1
        return nid

    def input_pipeline(self, batch: int) -> None:
        """Data loading, H2D copy and index all-to-all of the next batch (overlaps this step)."""
        if self.global_input:  # the whole batch to every rank: the builder's own (no speed path)
            self.global_batch_input(batch)
            return
        if self.per_rank_input:  # each rank its own features (DLE): the builder's own (no speed path)
            self.per_rank_feature_input(batch)
            return
        b = self.local_batch(batch)
        by_rank = self._lookup_bytes_by_owner(b)
        ids = []
        for r in range(self.world):
            idx_bytes = self._local_lookup_bytes(b)
            dense = b * self.w.dense_features * DENSE_INPUT_BYTES
            load = self.add(
                r, "data_loading", Stream.HOST, Host("data_loading", dense + idx_bytes), phase="input"
            )
            h2d = self.add(
                r, "h2d_next_batch", Stream.COPY, Transfer("host", "hbm", dense + idx_bytes), [load], "input"
            )
            ids.append(h2d)
            self.h2d[r] = h2d
        group = tuple(range(self.world))
        # ``recv`` is a column of the sender-by-owner table: read each column once (the rows are
        # dicts with absent entries meaning 0.0) rather than one generator per rank.
        rows = [[row.get(q, 0.0) for q in group] for row in by_rank]
        columns = list(zip(*rows, strict=True))
        for r in range(self.world):
            send = tuple(rows[r])
            recv = columns[r]
            self.input_ready[r] = self.add(
                r,
                "input_dist",
                Stream.COMM,
                Collective(CollectiveOp.ALL_TO_ALL, "input_dist", group, sum(send), "int64", send, recv),
                [] if self.lagged_input else [ids[r]],  # lagged: the previous step's copy, carried
                "input",
                lane=self.input_lane,
            )
            if self.lagged_input:
                self.carried_input[self.input_ready[r]] = (ids[r],)

    def _lookup_bytes_by_owner(self, b: int) -> list[dict[int, float]]:
        return reference_lookup_bytes_by_owner(self, b)

    def embedding_pass(
        self,
        batch: int,
        pass_: str,
        deps_by_rank: dict[int, list[int]],
        replicated_deps: dict[int, list[int]] | None = None,
        select: Callable[[Shard], bool] | None = None,
    ) -> dict[int, list[int]]:
        """The lookup nodes of ``pass_`` (forward or backward) on every rank; returns ids by rank.

        With ``fuse_tables`` (TorchRec's default), a rank's HBM shards of one dtype form one
        table-batched (TBE) node, as FBGEMM runs them in one kernel launch: its rows, lookups and
        unique rows are the sums over the shards and its dim the lookup-weighted mean, so the bytes
        it moves are those of the shards. Other tiers and data-parallel shards stay one node per
        shard (their caches and gradient all-reduce are per table). Replicated (data-parallel)
        lookups wait for ``replicated_deps`` when given (their backward needs no exchange).
        """
        self.local_batch(batch)  # checks divisibility
        out: dict[int, list[int]] = defaultdict(list)
        groups: dict[tuple[int, str, bool], list[tuple[Shard, Embedding]]] = defaultdict(list)
        for shard in self.plan.shards:
            if select is not None and not select(shard):
                continue
            table = self.tables[shard.table]
            op = self.ops.op(
                shard,
                pass_,
                batch,
                self.world,
                self.output_dtype(shard),
                self.hit_bags_only,
                self.atomic,
                self.inference,
            )
            replicated = shard.sharding == "data_parallel"
            for rank in shard.ranks:
                if self.opt.fuse_tables and fused_tier(shard.tier):
                    width = 0 if shard.tier == "hbm" else op.dim
                    groups[(rank, op.dtype, replicated, shard.tier, width)].append((shard, op))
                    continue
                name = f"emb_{pass_}:{shard.table}"
                if shard.rows < table.rows:
                    name += f"[{shard.row_start}:{shard.row_end}]"
                if shard.dim < self.w.table_dim(table):
                    name += f"[:,{shard.col_start}:{shard.col_end}]"
                deps = deps_by_rank if replicated_deps is None or not replicated else replicated_deps
                nid = self.lookup(rank, name, op, deps.get(rank, []), pass_)
                out[rank].append(nid)
                if shard.sharding == "data_parallel":
                    self.replicated[(rank, shard)] = nid
        order = sorted(groups.items())
        if replicated_deps is not None:  # replicated first: they need not wait for the exchange
            order.sort(key=lambda kv: (kv[0][0], not kv[0][2]))
        elif pass_ == "forward":  # replicated last: the exchange waits only for the others
            order.sort(key=lambda kv: (kv[0][0], kv[0][2]))
        for (rank, dtype, replicated, tier, tier_width), members in order:
            ops = [op for _, op in members]
            lookups = sum(o.lookups for o in ops)
            dim = sum(o.lookups * o.dim for o in ops) / lookups if lookups else ops[0].dim
            fused = Embedding(
                table=f"tbe:{rank}:{dtype}"
                + ("" if tier == "hbm" else f":{tier}:dim{tier_width}")
                + (":replicated" if replicated else ""),
                pass_=pass_,
                rows=sum(o.rows for o in ops),
                dim=max(1, round(dim)),
                dtype=dtype,
                batch=max(o.batch for o in ops),
                lookups=lookups,
                unique_rows=sum(o.unique_rows or 0.0 for o in ops),
                tier=tier,
                optimizer=ops[0].optimizer,
                bags=sum((o.batch if o.bags is None else o.bags) * o.dim for o in ops) / max(1, round(dim)),
                output_dtype=ops[0].output_dtype,
                atomic=ops[0].atomic,
                inference=ops[0].inference,
            )
            self.fused[fused.table] = [(o.table, o.lookups) for o in ops]
            label = f"{len(ops)} tables" + ("" if tier == "hbm" else f", {tier}, dim {tier_width}")
            name = f"emb_{pass_}:tbe[{label}" + (", replicated]" if replicated else "]")
            deps = deps_by_rank if replicated_deps is None or not replicated else replicated_deps
            nid = self.lookup(rank, name, fused, deps.get(rank, []), pass_)
            out[rank].append(nid)
            if replicated:
                for shard, _ in members:
                    self.replicated[(rank, shard)] = nid
        return out

    def pooled_exchange(
        self, batch: int, forward: bool, deps_by_rank: dict[int, list[int]]
    ) -> dict[int, list[int]]:
        """Forward: pooled embeddings to the sample owners; backward: their gradients back.

        A block on one rank (table-, column- or table-column-wise) sends each sample owner its
        vectors in one all-to-all. A block split by rows over ranks ``G`` (row-wise, table-row-wise,
        grid) first reduce-scatters its partial pools over ``G``, member ``i`` keeping the samples of
        the ranks ``q`` with ``q mod |G| = i`` (for row-wise over the world that is ``q`` itself;
        inside a node, the ranks of the same local index), which it then sends on in the same
        all-to-all (``shard_ops.pooled_exchange``, computed once per graph). Backward runs the
        transpose: the all-to-all, then an all-gather per rank group.
        """
        b = self.local_batch(batch)
        comm = DTYPE_BYTES[self.comm_dtype]
        phase = "forward" if forward else "backward"
        group = tuple(range(self.world))
        if self._exchange is None:
            self._exchange = pooled_exchange(self.ops, self.plan, batch, comm)
        exchange = self._exchange
        matrix = exchange.send.tolist()  # forward direction: [src][dst]
        # TorchRec batches the output dist of every table sharded over the same ranks into one
        # collective (its RW/TWRW dists concatenate the tables' partial pools): one
        # reduce-scatter (forward) and one all-gather (backward) per rank group, of the summed dims.
        groups = exchange.reduce_groups
        out: dict[int, list[int]] = defaultdict(list)
        reduce_ids: dict[int, list[int]] = defaultdict(list)
        if forward:
            for ranks, dim in groups.items():
                key = f"rw_fwd:{_group_label(ranks, self.world)}"
                for r in ranks:
                    # Each member holds partial sums for all B samples and keeps B / |G| of them.
                    op = Collective(
                        CollectiveOp.REDUCE_SCATTER, key, ranks, batch * dim * comm, self.comm_dtype
                    )
                    nid = self.add(r, key, Stream.COMM, op, deps_by_rank.get(r, []), phase)
                    out[r].append(nid)
                    reduce_ids[r].append(nid)
        a2a: dict[int, int] = {}
        if exchange.any_all_to_all:
            key = "a2a_fwd" if forward else "a2a_bwd"
            # The matrix's columns, each read once (``matrix[q][r]`` over ``q``), not per rank.
            columns = list(zip(*matrix, strict=True))
            for r in group:
                send = tuple(matrix[r]) if forward else columns[r]
                recv = columns[r] if forward else tuple(matrix[r])
                op = Collective(
                    CollectiveOp.ALL_TO_ALL,
                    key,
                    group,
                    sum(send),
                    self.comm_dtype,
                    send,
                    recv,
                    self.a2a_algorithm,
                )
                deps = [*deps_by_rank.get(r, []), *reduce_ids.get(r, [])]
                a2a[r] = self.add(r, key, Stream.COMM, op, deps, phase)
                out[r].append(a2a[r])
        if not forward:
            for ranks, dim in groups.items():
                key = f"rw_bwd:{_group_label(ranks, self.world)}"
                for r in ranks:
                    size = b * dim * comm * (self.world / len(ranks))
                    op = Collective(CollectiveOp.ALL_GATHER, key, ranks, size, self.comm_dtype)
                    deps = [a2a[r]] if r in a2a else deps_by_rank.get(r, [])
                    out[r].append(self.add(r, key, Stream.COMM, op, deps, phase))
        return out


def reference_build_training_step(
    workload: Workload, plan: Plan, options: BuildOptions | None = None
) -> ExecutionGraph:
    """The execution graph of one steady-state training step (see the module docstring)."""
    opt = options or BuildOptions()
    if opt.validate_plan:
        plan.validate(workload)
    bld = _ReferenceBuilder(workload, plan, opt, _ReferenceShardOps(workload))  # (was: _Builder)
    framework = _framework(workload)
    bld.runtime = framework
    bld.presort = framework.presorts_indices(plan)
    # (Since: HugeCTR's backward index calculation on a side lane after the embedding forward.)
    bld.index_overlap = not bld.presort and framework.backward_index_overlap(plan)
    bld.atomic = framework.atomic_embedding_update(plan, workload.training.embedding_optimizer)
    bld.a2a_algorithm = framework.pooled_all_to_all(plan)
    bld.global_input = framework.global_batch_input(plan)
    bld.per_rank_input = framework.per_rank_feature_input(plan)
    bld.lagged_input = framework.input_dist_follows_previous_copy
    if framework.shared_comm_queue:  # one NCCL stream: every collective on the exchanges' lane
        bld.input_lane = bld.dense_lane = LANE_EMBEDDING
    batch = workload.training.global_batch_size
    precision = workload.training.precision
    b = bld.local_batch(batch)
    s = DTYPE_BYTES[precision]
    if opt.include_input_pipeline:
        bld.input_pipeline(batch)
    # HugeCTR's inter-iteration overlap: the next batch's routed lookups and exchange at the end.
    pipelined = (
        bld.world > 1
        and any(layer.part != "bottom" for layer in workload.dense_layers)
        and (plan.bottom_rank is None or not any(layer.part == "bottom" for layer in workload.dense_layers))
        and framework.prefetches_routed_forward(plan)
        and all(sh.sharding in ("data_parallel", "distributed") for sh in plan.shards)
    )
    if pipelined:
        emb_fwd = bld.embedding_pass(batch, "forward", {}, select=lambda sh: sh.sharding == "data_parallel")
    else:
        emb_fwd = bld.embedding_pass(batch, "forward", {})
    bld.forward_lookups = emb_fwd
    replicated_fwd = set(bld.replicated.values())
    exchanged = {r: [n for n in ids if n not in replicated_fwd] for r, ids in emb_fwd.items()}
    local_fwd = {r: [n for n in ids if n in replicated_fwd] for r, ids in emb_fwd.items()}
    layers = workload.dense_layers
    bottom = [layer for layer in layers if layer.part == "bottom"]
    after = [layer for layer in layers if layer.part != "bottom"]
    # Model-parallel bottom MLP (Plan.bottom_rank): one rank runs it for the global batch and its
    # output joins the pooled all-to-all; the other ranks start from the exchanged vectors.
    mp_rank = plan.bottom_rank if bottom else None
    if mp_rank is not None:
        mp_ids = bld.dense_forward(mp_rank, batch, bottom, [], precision, whole_batch=True)
        exchanged.setdefault(mp_rank, []).append(list(mp_ids.values())[-1])
    a2a_fwd = {} if pipelined else bld.pooled_exchange(batch, True, exchanged)

    grads: list[tuple[str, float, int, int]] = []  # (layer, bytes, rank, node) in backward order
    grad_dtype = framework.dense_gradient_dtype(precision)  # fp32 .grad under PyTorch AMP
    last_bwd: dict[int, list[int]] = {}
    emb_grad_ready: dict[int, list[int]] = {}
    data_parallel = bottom if mp_rank is None else []
    # The same loss on every rank: one op, shared (as the layers' ops are).
    loss_op = Compute(
        "bce_loss",
        flops=11.0 * b,  # build.BCE_FLOPS_PER_SAMPLE
        bytes_read=2 * b * s,
        bytes_written=b * s,
        dtype=precision,
        category="elementwise",
    )
    joined_ids: dict[int, int] = {}
    for r in range(bld.world):
        bottom_ids = bld.dense_forward(r, batch, data_parallel, [], precision)
        joined = [*a2a_fwd.get(r, []), *local_fwd.get(r, []), *(list(bottom_ids.values())[-1:])]
        rest_ids = bld.dense_forward(r, batch, after, joined, precision)
        joined_ids[r] = next(iter(rest_ids.values()))
        last = list(rest_ids.values())[-1]
        loss = bld.add(r, "loss", Stream.COMPUTE, loss_op, [last], "forward")
        prev = [loss]
        emb_grad_ready[r] = []
        # (Since: a DCNv2 cross layer is its GEMMs and element-wise node, the first one's closing
        # its stack's backward.)
        first_cross = next((x for x in after if x.op == "dcnv2"), None)
        # (Since: HugeCTR's async cross-layer weight gradients on LANE_WGRAD, contended: the next
        # layer's dH GEMM waits for them, the stack's end joins them.)
        wgrad_done: list[int] = []
        join: list[int] = []
        for layer in reversed(data_parallel + after):
            if layer.part == "bottom" and not emb_grad_ready[r]:
                # the interaction's backward made the embedding grads
                emb_grad_ready[r] = [*prev, *join]
            crossed = framework.async_cross_wgrad and layer.op == "dcnv2"
            # (Since: HugeCTR's async MLP weight gradients on LANE_WGRAD, contended as the cross
            # layers': a linear layer's dgrad waits for the previous weight gradient, its wgrad
            # for its dgrad; the backward's end for the last one.)
            split = framework.async_mlp_wgrad and layer.op == "linear"
            # (Since: the first bottom layer's backward computes the weights' gradient only.)
            ops = bld.layer_ops(
                layer,
                b,
                s,
                precision,
                backward=True,
                input_grad=not (data_parallel and layer is data_parallel[0]),
                closes_stack=layer is first_cross,
                async_wgrad=crossed or split,
            )
            if split:
                *dgrad, (_, wgrad) = ops
                name = layer.name
                if dgrad:
                    d = bld.add(
                        r,
                        f"{name}_dgrad_bwd",
                        Stream.COMPUTE,
                        dgrad[0][1],
                        [*prev, *join, *wgrad_done],
                        "backward",
                    )
                    prev, join = [d], []
                ready = bld.add(
                    r, f"{name}_wgrad_bwd", Stream.COMPUTE, wgrad, prev, "backward", lane=LANE_WGRAD
                )
                wgrad_done = [ready]
            elif crossed:
                # (Since: the stack's first layer's backward ends with the concatenation's slices.)
                (_, fma3), (_, u_dgrad), (_, v_dgrad), (_, u_wgrad), (_, v_wgrad), *closed = ops
                name = layer.name
                k = bld.add(r, f"{name}_bwd", Stream.COMPUTE, fma3, [*prev, *join], "backward")
                k = bld.add(r, f"{name}_u_dgrad_bwd", Stream.COMPUTE, u_dgrad, [k, *wgrad_done], "backward")
                d = bld.add(r, f"{name}_v_dgrad_bwd", Stream.COMPUTE, v_dgrad, [k], "backward")
                bld.add(r, f"{name}_u_wgrad_bwd", Stream.COMPUTE, u_wgrad, [d], "backward", lane=LANE_WGRAD)
                nid = bld.add(
                    r, f"{name}_v_wgrad_bwd", Stream.COMPUTE, v_wgrad, [d], "backward", lane=LANE_WGRAD
                )
                prev = [d]
                wgrad_done, join = ([], [nid]) if layer is first_cross else ([nid], [])
                ready = nid
                for suffix, op in closed:
                    c = bld.add(r, f"{name}{suffix}_bwd", Stream.COMPUTE, op, [*prev, *join], "backward")
                    prev, join = [c], []
            else:
                for suffix, op in ops:
                    # (Since: a matrix product with FLOPs, the dot interaction's backward, waits for
                    # the pending MLP weight gradient as a dgrad does.)
                    pending = []
                    if op.category in ("gemm", "interaction", "sequence") and op.flops > 0:
                        pending, wgrad_done = wgrad_done, []
                    nid = bld.add(
                        r,
                        f"{layer.name}{suffix}_bwd",
                        Stream.COMPUTE,
                        op,
                        [*prev, *join, *pending],
                        "backward",
                    )
                    prev, join = [nid], []
                    if suffix != "_concat":  # (Since: the slices make no weight's gradient.)
                        ready = nid
            if layer.params:
                # A padded layer's extra weights too (``_Builder.layer_params``), as the builder.
                grads.append((layer.name, bld.layer_params(layer) * DTYPE_BYTES[grad_dtype], r, ready))
        if not emb_grad_ready[r]:
            emb_grad_ready[r] = [*prev, *join]
        last_bwd[r] = [*prev, *join, *(wgrad_done if framework.async_mlp_wgrad else [])]

    # Dense gradient all-reduce, in DDP buckets filled in backward order. A framework that groups
    # the replicated rows' gradients with the dense ones (HugeCTR's hybrid embedding: one all-reduce
    # of the grouped weight-gradient buffer) all-reduces them after the replicated backward instead.
    grouped = bld.world > 1 and framework.groups_replicated_gradients(plan)
    gradient_algorithm = framework.gradient_all_reduce
    bucket_ids: dict[int, list[int]] = defaultdict(list)
    # One group tuple for every rank's all-reduces: the cost model finds equal collectives on
    # shared tuples by identity instead of hashing the whole group each time.
    world_group = tuple(range(bld.world))

    grads_by_rank: dict[int, list[tuple[str, float, int]]] = defaultdict(list)
    for name, size, rank, nid in grads:
        grads_by_rank[rank].append((name, size, nid))
    # (Since: HugeCTR's embedding collection's first gradient all-reduce waits for the backward
    # exchange, its one NCCL communicator's order: ``Runtime.all_reduces_after_exchange``.)
    after_exchange = bld.world > 1 and framework.all_reduces_after_exchange(plan)
    exchanged_by: dict[int, list[int]] = {}

    def dense_buckets(r: int, extra_bytes: float = 0.0, extra_deps: Sequence[int] = ()) -> None:
        """Rank ``r``'s gradient all-reduces; ``extra_bytes`` (grouped replicated rows, ready after
        ``extra_deps``) join the last bucket, or form one of their own on a rank without dense ones."""
        caps = _bucket_caps(framework, opt, grad_dtype)
        buckets = [(size, [last]) for size, last in _buckets(grads_by_rank.get(r, []), *caps)]
        if extra_bytes:
            size, deps = buckets.pop() if buckets else (0.0, [])
            buckets.append((size + extra_bytes, [*deps, *extra_deps]))
        for k, (size, deps) in enumerate(buckets):
            op = Collective(
                CollectiveOp.ALL_REDUCE,
                f"allreduce_bucket{k}",
                world_group,
                size,
                grad_dtype,
                algorithm=gradient_algorithm,
            )
            if k == 0 and exchanged_by.get(r):
                deps = [*deps, *exchanged_by[r]]
            bucket_ids[r].append(
                bld.add(r, f"allreduce_bucket{k}", Stream.COMM, op, deps, "backward", lane=bld.dense_lane)
            )

    if not grouped and bld.world > 1 and not after_exchange:
        for r in range(bld.world):
            dense_buckets(r)

    a2a_bwd = bld.pooled_exchange(batch, False, emb_grad_ready)
    if after_exchange:
        exchanged_by.update((r, list(ids)) for r, ids in a2a_bwd.items() if ids)
        if not grouped:
            for r in range(bld.world):
                dense_buckets(r)
    if mp_rank is not None:
        # The bottom MLP's output gradients come back in the backward all-to-all; its weights live
        # on one rank only, so they are not all-reduced.
        prev = a2a_bwd.get(mp_rank, []) or emb_grad_ready[mp_rank]
        for layer in reversed(bottom):
            op = _layer_op(layer, batch, s, precision, backward=True, input_grad=layer is not bottom[0])
            prev = [bld.add(mp_rank, f"{layer.name}_bwd", Stream.COMPUTE, op, prev, "backward")]
        last_bwd[mp_rank] = [*last_bwd[mp_rank], *prev]
    emb_deps = {r: a2a_bwd.get(r, []) or emb_grad_ready[r] for r in range(bld.world)}
    # Replicated lookups' gradients come straight from the interaction: no exchange to wait for.
    emb_bwd = bld.embedding_pass(batch, "backward", emb_deps, replicated_deps=emb_grad_ready)
    carried = {}
    if pipelined:
        replicated_bwd = set(bld.replicated.values())
        deps = {
            r: [n for n in emb_bwd.get(r, []) if n not in replicated_bwd]
            + ([bld.input_ready[r]] if r in bld.input_ready else [])
            for r in range(bld.world)
        }
        ahead = bld.embedding_pass(batch, "forward", deps, select=lambda sh: sh.sharding != "data_parallel")
        a2a_next = bld.pooled_exchange(batch, True, ahead)
        carried = {joined_ids[r]: tuple(a2a_next[r]) for r in range(bld.world) if a2a_next.get(r)}
        ahead_ids = sorted({i for ids in [*ahead.values(), *a2a_next.values()] for i in ids})
    # Data-parallel shards (whole tables or replicated hot rows): their gradients are all-reduced
    # (dense, in the storage dtype) after the backward lookup, before the update, in DDP buckets as
    # TorchRec's data-parallel sharding does (it wraps those tables in DDP), or grouped with the
    # dense gradients (``grouped``).
    if bld.world > 1:
        by_rank: dict[int, list[tuple[int, str, float, str]]] = defaultdict(list)
        for (rank, shard), nid in bld.replicated.items():
            dtype = shard.dtype or workload.table_dtype(bld.tables[shard.table])
            if grouped:
                dtype = bld.output_dtype(shard) or dtype
            by_rank[rank].append((nid, shard.table, shard.rows * shard.dim * DTYPE_BYTES[dtype], dtype))
        reduced: dict[int, list[int]] = defaultdict(list)
        for r in range(bld.world):
            if grouped:
                mine = by_rank.get(r, [])
                dense_buckets(r, sum(size for _, _, size, _ in mine), sorted({nid for nid, _, _, _ in mine}))
                if mine:
                    reduced[r].append(bucket_ids[r][-1])
                continue
            # One dtype per DDP bucket, labelled in the dtype its size is counted in.
            by_dtype: dict[str, list[tuple[str, float, int]]] = defaultdict(list)
            for nid, table, size, dtype in sorted(by_rank.get(r, [])):
                by_dtype[dtype].append((table, size, nid))
            dp_buckets = []
            for d, grads in by_dtype.items():  # a dtype other than the dense one: its own first cap
                first, cap = _bucket_caps(framework, opt, d)
                dp_buckets += [(d, b) for b in _buckets(grads, cap if d == grad_dtype else first, cap)]
            for k, (dtype, (size, last_node)) in enumerate(dp_buckets):
                key = f"dp_allreduce_bucket{k}"
                op = Collective(
                    CollectiveOp.ALL_REDUCE,
                    key,
                    world_group,
                    size,
                    dtype,
                    algorithm=gradient_algorithm,
                )
                deps = [last_node]
                if not bucket_ids[r] and exchanged_by.get(r):  # the rank's first all-reduce
                    deps.extend(exchanged_by[r])
                nid = bld.add(r, key, Stream.COMM, op, deps, "backward", lane=bld.dense_lane)
                bucket_ids[r].append(nid)
                reduced[r].append(nid)
        # Each rank's replicated shards, stepped whole after their all-reduces: one node per fused
        # replicated table (the rank's HBM shards of a dtype), else one per shard.
        updates: dict[tuple[int, str], list[Embedding]] = defaultdict(list)
        for (rank, shard), _nid in sorted(
            bld.replicated.items(), key=lambda kv: (kv[0][0], bld.plan.shards.index(kv[0][1]))
        ):
            dtype = shard.dtype or workload.table_dtype(bld.tables[shard.table])
            reduced_dtype = (bld.output_dtype(shard) or dtype) if grouped else dtype
            op = bld.ops.op(shard, "update", batch, bld.world, reduced_dtype)
            fused = opt.fuse_tables and shard.tier == "hbm"
            updates[(rank, f"tbe:{rank}:{dtype}:replicated" if fused else op.table)].append(op)
        for (rank, table), ops in updates.items():
            if len(ops) == 1 and ops[0].table == table:
                bld.add(rank, f"emb_update:{table}", Stream.COMPUTE, ops[0], reduced[rank], "optimizer")
                continue
            elements = sum(o.rows * o.dim for o in ops)
            width = (
                ops[0].dim
                if len({o.dim for o in ops}) == 1
                else max(1, round(elements / sum(o.rows for o in ops)))
            )
            op = replace(
                ops[0],
                table=table,
                rows=math.ceil(elements / width),
                dim=width,
                batch=max(o.batch for o in ops),
            )
            name = f"emb_update:tbe[{len(ops)} tables, replicated]"
            bld.add(rank, name, Stream.COMPUTE, op, reduced[rank], "optimizer")

    optimizer = workload.training.optimizer
    bottom_params = sum(layer.params for layer in bottom)
    for r in range(bld.world):
        # A model-parallel bottom MLP's weights are updated on its rank only.
        trained = sum(bld.layer_params(layer) for layer in workload.dense_layers)  # padded, as the builder
        dense_params = trained - (bottom_params if mp_rank not in (None, r) else 0)
        state = OPTIMIZER_STATE[optimizer]
        bld.add(
            r,
            "dense_optimizer",
            Stream.COMPUTE,
            Compute(
                f"{optimizer}_step",
                flops=OPTIMIZER_FLOPS_PER_PARAM[optimizer] * dense_params,
                bytes_read=(2 + state) * dense_params * 4.0,
                bytes_written=(1 + state) * dense_params * 4.0,
                dtype="fp32",
                category="optimizer",
            ),
            [*last_bwd[r], *bucket_ids[r]],
            "optimizer",
        )
    bld.graph.metadata = {
        **bld.metadata("training"),
        "global_batch_size": batch,
        "local_batch_size": b,
        "precision": precision,
        "comm_dtype": bld.comm_dtype,
        "bottom_rank": mp_rank,
        "input_prefetch": "host_order" if framework.host_orders_input else "one_batch",
    }
    if carried or bld.carried_input:
        bld.graph.metadata["carried_dependencies"] = {**bld.carried_input, **carried}
    if carried:
        bld.graph.metadata["next_batch_nodes"] = tuple(ahead_ids)
    return bld.graph


class _ReferenceCostModel(CostModel):
    """``CostModel`` with an access model per fused table and embedding costs keyed by the op's
    table, as they were (and no models handed over by the builder)."""

    def access(self, table: str) -> AccessModel | None:
        """The access model of a workload table (None for traces without a workload)."""
        if table in self._fused and table not in self._access:
            parts = [(self.access(t), n) for t, n in self._fused[table]]
            if all(m is not None for m, _ in parts):
                self._access[table] = MixtureModel([m for m, _ in parts if m], [n for _, n in parts])
            return self._access.get(table)
        if table in self._slices and table not in self._access:
            base_name, start, end, order = self._slices[table]
            base = self.access(base_name)
            if base is not None:
                self._access[table] = (
                    SliceModel(base, start, end) if order == "popularity" else SubsetModel(base, end - start)
                )
            return self._access.get(table)
        if self.workload is None or table not in self._tables:
            return self._access.get(table)
        if table not in self._access:
            spec = self._tables[table]
            self._access[table] = access_model(self.workload.table_row_access(spec), spec.rows)
        return self._access[table]

    def _op_duration(self, op: object) -> float:
        if isinstance(op, Collective):
            return self.collective_s(op)
        # The same op recurs on every rank and step (ops are frozen values): cost it once. The key
        # is the op's kind and fields as a plain tuple, equal exactly when the ops are equal.
        getter = _OP_FIELDS.get(type(op))
        key = (type(op), getter(op)) if getter is not None else op
        by_op = self._by_op.get(key)
        if by_op is not None:
            return by_op
        if isinstance(op, Compute):
            value = self.compute_s(op)
        elif isinstance(op, Embedding):
            value = self.embedding_s(op)
        elif isinstance(op, Transfer):
            value = self.transfer_s(op)
        elif isinstance(op, Host):
            value = self.host_s(op)
        else:  # pragma: no cover - the IR has no other op kinds
            raise InfeasibleError(f"no cost model for {type(op).__name__}")
        self._by_op[key] = value
        return value


GRAPH_CONFIGS = [
    ("dgx-h100", "dlrm-dcnv2", 1, "table_wise", "fused"),
    ("dgx-h100", "dlrm-dcnv2", 2, "row_wise", "eager"),
    ("dgx-a100", "dlrm-dcnv2", 2, "column_wise", "cuda_graphs"),
    ("dgx-a100", "dlrm-mlperf", 2, "hybrid_embedding", "fused"),
    ("dgx-a100", "dlrm-mlperf", 1, "table_wise_mp_bottom", "cuda_graphs"),
    ("dgx-a100", "dlrm-mlperf", 2, "table_wise_mp_bottom", "fused"),
    ("dgx-h100", "din", 1, "table_wise", "fused"),
    ("dgx-h100", "dien", 2, "row_wise", "eager"),
    ("dgx-h100", "dlrm-dcnv2", 4, "data_parallel", "fused"),
    ("dgx-h100", "dlrm-dcnv2", 4, "memory_balanced", "fused"),
]


@pytest.mark.parametrize(("name", "workload_name", "nodes", "plan_name", "runtime"), GRAPH_CONFIGS)
def test_builder_matches_the_reference_builder(name, workload_name, nodes, plan_name, runtime):
    """The same nodes (ids, names, ops, dependencies, streams, lanes, phases), in the same order, and
    the same metadata; and the cost model, handed the builder's access models, the same durations
    as the plain one (a mixture per fused table, embedding costs keyed by the table)."""
    system, workload = prepare(
        name, workload_name, nodes=nodes, precision="fp16", overrides=[f"workload.training.runtime={runtime}"]
    )
    plan = make_plan(plan_name, workload, system)
    ops = ShardOps(workload)
    step = build_training_step(workload, plan, BuildOptions(validate_plan=False), ops)
    reference = reference_build_training_step(workload, plan, BuildOptions(validate_plan=False))
    assert step.ranks == reference.ranks and step.metadata == reference.metadata
    assert len(step.nodes) == len(reference.nodes)
    for got, want in zip(step.nodes, reference.nodes, strict=True):
        assert got == want
        assert type(got.op) is type(want.op) and type(got.deps) is tuple
        if isinstance(got.op, Collective) and got.op.send_bytes is not None:
            types = [type(x) for x in got.op.send_bytes + (got.op.recv_bytes or ())]
            assert types == [type(x) for x in want.op.send_bytes + (want.op.recv_bytes or ())]
    # Inference batches share the builder's pieces.
    if workload.inference is not None:
        assert build_inference_batch(workload, plan).nodes == reference_inference(workload, plan).nodes
    metadata = step.metadata
    fused, slices = metadata.get("fused_tables"), metadata.get("table_slices")
    plain = _ReferenceCostModel(system, workload, fused_tables=fused, table_slices=slices)
    expected = [plain.duration_s(n) for n in step.nodes]
    handed = CostModel(
        system, workload, fused_tables=fused, table_slices=slices, access_models=ops.access_models()
    )
    assert handed.durations_s(step.nodes) == expected
    fresh = CostModel(system, workload, fused_tables=fused, table_slices=slices)
    assert [fresh.duration_s(n) for n in step.nodes] == expected


def reference_inference(workload: Workload, plan: Plan) -> ExecutionGraph:
    """``build_inference_batch`` on the reference builder."""
    opt = BuildOptions(include_input_pipeline=False)
    bld = _ReferenceBuilder(workload, plan, opt, _ReferenceShardOps(workload))
    bld.inference = True
    size = workload.inference.batch_size if workload.inference else 1
    global_batch = size * bld.world
    precision = workload.inference.precision if workload.inference else "fp32"
    emb = bld.embedding_pass(global_batch, "forward", {})
    replicated = set(bld.replicated.values())
    exchanged = {r: [n for n in ids if n not in replicated] for r, ids in emb.items()}
    a2a = bld.pooled_exchange(global_batch, True, exchanged)
    layers = workload.dense_layers
    bottom = [layer for layer in layers if layer.part == "bottom"]
    after = [layer for layer in layers if layer.part != "bottom"]
    for r in range(bld.world):
        bottom_ids = bld.dense_forward(r, global_batch, bottom, [], precision)
        local = [n for n in emb.get(r, []) if n in replicated]
        joined = [*a2a.get(r, []), *local, *(list(bottom_ids.values())[-1:])]
        bld.dense_forward(r, global_batch, after, joined, precision)
    return bld.graph


def test_timing_schedule_is_made_once_and_its_check_skips_the_id_sets():
    system, workload, plan = _prepared("dgx-h100", 1, "table_wise", "fused")
    sim = simulate_training(system, workload, plan, SimulationOptions(fidelity="analytic"))
    graph = sim.graph
    assert graph is not None and sim.schedule is not None
    index = GraphIndex.of(graph)
    timing = Timing.of(index, sim.schedule)
    made = timing.schedule()
    assert made is timing.schedule() and timing.made(made) and not timing.made(sim.schedule)
    # Its maps are made when first read: equal to the plain schedule's, pickled with them.
    assert "start_s" not in vars(made)
    plain = Schedule(dict(sim.schedule.start_s), dict(sim.schedule.finish_s))
    assert pickle.loads(pickle.dumps(made)) == plain and vars(made).keys() == {"start_s", "finish_s"}
    assert made == sim.schedule == plain and made.makespan_s == plain.makespan_s
    with pytest.raises(AttributeError):
        _ = made.start  # type: ignore[attr-defined]
    check_schedule(graph, made, timing)
    # A schedule not made from the timing still has its nodes checked.
    short = Schedule(dict(list(made.start_s.items())[1:]), dict(list(made.finish_s.items())[1:]))
    with pytest.raises(SimulationError, match="not scheduled exactly once"):
        check_schedule(graph, short, timing)


@pytest.mark.parametrize("lazy", [True, False])
def test_index_arrays_kept_from_the_making_equal_the_lists(lazy):
    """``GraphIndex.of`` and ``repeated`` keep the arrays they made the lists from: the same
    values and dtypes as converting the lists afresh."""
    _, _, _, step = _built("dgx-h100", "dlrm-dcnv2", 2, "row_wise", "fused")
    chained = ChainedGraph.lazy(step, 3)
    index = chained.index() if lazy else GraphIndex.of(chain_steps(step, 3))
    lists = {
        "ids_array": (index.ids, np.int64),
        "prev_in_queue_array": (index.prev_in_queue, np.intp),
        "dep_flat_array": (index.dep_flat, np.intp),
        "vertex_array": (index.vertex, np.intp),
        "queue_array": (index.queue, np.intp),
    }
    kept = {name for name in lists if name in vars(index)}
    assert kept == (set(lists) if lazy else {"prev_in_queue_array", "vertex_array", "queue_array"})
    for name, (values, dtype) in lists.items():
        array = getattr(index, name)
        fresh = np.asarray(values, dtype=dtype)
        assert array.dtype == fresh.dtype and array.shape == fresh.shape and (array == fresh).all()


# ------------------------------------------------------------------------------- round 5: arrays, no cycle


def previous_vertex_lengths(index: GraphIndex, durations: Sequence[float]) -> np.ndarray:
    """``asap_timing``'s vertex lengths before round 5 (verbatim): from the ``vertex_head`` list."""
    lengths = [durations[h] for h in index.vertex_head]
    for v, positions in index.members.items():
        best = lengths[v]
        for p in positions:
            d = durations[p]
            if d > best:
                best = d
        lengths[v] = best
    length = np.asarray(lengths, dtype=np.float64)
    return length


def previous_critical_path(
    graph: ExecutionGraph,
    schedule: Schedule,
    window: Window,
    category: Callable[[Node], str],
    timing: Timing | None = None,
) -> tuple[dict[str, float], list[int]]:
    """``critical_path`` before round 5 (verbatim): reads the index's lists and the timing's
    Python floats."""
    timing = timing_of(graph, schedule, timing)
    index = timing.index
    ids, nodes, members, vertex = index.ids, index.nodes, index.members, index.vertex
    # Python floats (not numpy scalars): the totals are sums of them.
    start, finish = timing.start_list, timing.finish_list
    window_start = window.start_s
    known = window.positions_in(index)
    if timing.finite and known is not None and known.size:
        # The same nodes (ids are unique); the choice below does not depend on their order.
        in_window: list[int] = []
        at = known
    else:
        position = index.position
        in_window = [position[i] for i in window.node_ids]
        at = np.asarray(in_window, dtype=np.intp)
    if timing.finite and at.size:
        # The latest finish, the largest id among equal ones: as ``max`` by (finish, id).
        ends = timing.finish[at]
        last = at[ends == ends.max()]
        current = int(last[np.argmax(timing.index.ids_array[last])])
    else:
        current = max(in_window, key=lambda p: (finish[p], ids[p]))
    totals: dict[str, float] = defaultdict(float)
    path: list[int] = []
    time = finish[current]
    while True:
        node = nodes[current]
        path.append(ids[current])
        begin = max(start[current], window_start)
        totals[category(node)] += max(0.0, time - begin)
        if start[current] <= window_start:
            break
        candidates = index.predecessors_of(current)
        group = members.get(vertex[current])
        if group is not None:  # a collective: any member's predecessor
            for m in group:
                candidates.extend(index.predecessors_of(m))
        if not candidates:
            totals["exposed_wait"] += start[current] - window_start
            break
        best = max(candidates, key=lambda p: (finish[p], ids[p]))
        gap = start[current] - max(finish[best], window_start)
        if gap > 0:
            totals["exposed_wait"] += gap
        if finish[best] <= window_start:
            break
        time = finish[best]
        current = best
    return dict(totals), path


def previous_repeated(
    self: GraphIndex,
    nodes: Sequence[Node],
    steps: int,
    stride: int,
    first: Sequence[Sequence[int]],
    later: Sequence[Sequence[int]],
) -> GraphIndex:
    """``GraphIndex.repeated`` before round 5 (verbatim): every list made from its array.

    ``nodes`` are the copies: step ``s``'s copy of node ``i`` at position ``s * n + i``, its id
    offset by ``s * stride``, a collective's key made unique to its step (so that a copy's
    members make one vertex, as the original's do). The copies' dependencies replace the
    original's: ``first[i]`` (first step) and ``later[i]`` (the others) are node ``i``'s, as
    positions relative to the start of its step (negative ones reach into the previous step).
    Equal to ``GraphIndex.of`` the chained graph, without reading its nodes.
    """
    n, vertices = self.size, self.vertices
    # Everything but the dependencies repeats with an offset per step: the step's first
    # position (``shift``), id (``stride``) or vertex; as (steps, n) arrays, raveled.
    shift = (np.arange(steps, dtype=np.intp) * n)[:, None]
    ids = self.ids_array[None, :] + (np.arange(steps, dtype=np.int64) * stride)[:, None]
    vertex = self.vertex_array[None, :] + (np.arange(steps, dtype=np.intp) * vertices)[:, None]
    heads = np.asarray(self.vertex_head, dtype=np.intp)[None, :] + shift
    # A copy's first node in a queue follows the previous copy's last node of that queue.
    prev = self.prev_in_queue_array
    last_of_queue = np.full(len(self.queue_keys), -1, dtype=np.intp)
    np.maximum.at(last_of_queue, self.queue_array, np.arange(n, dtype=np.intp))
    later_prev = np.where(prev >= 0, prev, last_of_queue[self.queue_array] - n)
    prev_all = np.concatenate((prev, (later_prev[None, :] + shift[1:]).ravel()))
    # Dependencies: the first step's template, then the later steps' shifted.
    first_flat = np.fromiter(chain.from_iterable(first), dtype=np.intp)
    later_flat = np.fromiter(chain.from_iterable(later), dtype=np.intp)
    first_end = np.fromiter(accumulate(map(len, first)), dtype=np.intp, count=n)
    later_end = np.fromiter(accumulate(map(len, later)), dtype=np.intp, count=n)
    later_steps = np.arange(steps - 1, dtype=np.intp)[:, None]
    dep_flat = np.concatenate((first_flat, (later_flat[None, :] + shift[1:]).ravel()))
    dep_end = np.concatenate(
        (first_end, (later_end[None, :] + first_flat.size + later_steps * later_flat.size).ravel())
    )
    members = {
        v + s * vertices: [p + s * n for p in positions]
        for s in range(steps)
        for v, positions in self.members.items()
    }
    id_list: list[int] = ids.ravel().tolist()
    index = GraphIndex(
        nodes,
        id_list,
        self.queue * steps,
        list(self.queue_keys),
        prev_all.tolist(),
        dep_end.tolist(),
        dep_flat.tolist(),
        vertex.ravel().tolist(),
        heads.ravel().tolist(),
        members,
        (self.nodes, steps),
    )
    index._keep(
        ids_array=ids.ravel(),
        prev_in_queue_array=prev_all,
        dep_flat_array=dep_flat,
        vertex_array=vertex.ravel(),
        queue_array=np.tile(self.queue_array, steps),
    )
    if n and self.unique_ids and stride > int(self.ids_array.max()) - int(self.ids_array.min()):
        # The copies' ids are unique too: each step's lie in a range of their own.
        index._keep(unique_ids=True)
    return index


def _previous_index(lazy: ChainedGraph) -> GraphIndex:
    """The index ``ChainedGraph.index`` made before round 5 (built graphs: ids are positions)."""
    step, templates = lazy._step, lazy._templates
    assert step is not None and templates is not None
    step_index = GraphIndex.of(step)
    assert step_index.ids == list(range(step_index.size)) == list(range(templates.stride))
    return previous_repeated(
        step_index, GraphNodes(lazy), lazy._steps, templates.stride, templates.first, templates.later
    )


INDEX_FIELDS = ("ids", "queue", "queue_keys", "prev_in_queue", "dep_end", "dep_flat", "vertex", "vertex_head")
INDEX_ARRAYS = (
    "ids_array",
    "queue_array",
    "prev_in_queue_array",
    "dep_end_array",
    "dep_flat_array",
    "dep_child_array",
    "vertex_array",
    "vertex_head_array",
)


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime"), CONFIGS[:4])
def test_array_index_and_its_readers_match_the_previous_code(name, nodes, plan_name, runtime):
    """The chained index made from arrays (its lists made only when read) equals the one made with
    every list; the critical path, network time and vertex lengths read off its arrays equal the
    previous code's, on the schedule's times and on uneven ones."""
    system, workload, plan = _prepared(name, nodes, plan_name, runtime)
    step = build_training_step(workload, plan, BuildOptions(validate_plan=False))
    lazy = ChainedGraph.lazy(step, 3)
    index = lazy.index()
    before = _previous_index(lazy)
    assert not lazy.made and index.copies is not None and index.copies == before.copies
    # Nothing list-like is made until read; sizes come from the arrays.
    assert not set(INDEX_FIELDS) - {"queue_keys"} & vars(index).keys()
    assert (index.size, index.vertices, index.unique_ids) == (before.size, before.vertices, before.unique_ids)
    for i in range(index.size):
        assert index.predecessors_of(i) == before.predecessors_of(i) and index.deps_of(i) == before.deps_of(i)
    for array in INDEX_ARRAYS:
        got, expected = getattr(index, array), getattr(before, array)
        assert got.dtype == expected.dtype and np.array_equal(got, expected), array
    for field_name in (*INDEX_FIELDS, "members"):
        assert getattr(index, field_name) == getattr(before, field_name), field_name
    expected_graph = chain_steps(step, 3)
    assert_index_matches(index, expected_graph)
    cost = cost_model(system, workload, expected_graph)
    durations = cost.durations_s(step.nodes) * 3
    rng = random.Random(nodes)
    uneven = [rng.choice([0.0, 1e-4, rng.random() * 1e-3, 3]) for _ in durations]
    for lengths in (durations, uneven):
        for idx in (lazy.index(), before):
            got_lengths = _vertex_lengths(idx, lengths)
            expected_lengths = previous_vertex_lengths(before, lengths)
            assert got_lengths.dtype == expected_lengths.dtype
            assert got_lengths.tolist() == expected_lengths.tolist()
            timing = asap_timing(idx, lengths)
            sched = timing.schedule()
            window = step_window(lazy, sched, timing)
            got = critical_path(lazy, sched, window, category_of, timing)
            assert repr(got) == repr(previous_critical_path(lazy, sched, window, category_of, timing))
            assert got == reference_critical_path(expected_graph, sched, window, category_of)
            network = _network_busy(timing, window, system)
            per_node = system.node.num_accelerators
            assert network == reference_network_busy(expected_graph, sched, window, per_node)
            plain = Window(window.start_s, window.end_s, window.node_ids)  # positions unknown
            assert repr(_network_busy(timing, plain, system)) == repr(network)
            assert repr(critical_path(lazy, sched, plain, category_of, timing)) == repr(got)
    assert not lazy.made or runtime != "fused"


def test_vertex_lengths_keep_max_semantics():
    """Ties, NaN and ints in the durations: the same lengths as the list-based loop."""
    nodes = [
        Node(i, i % 2, f"n{i}", Stream.COMM, Collective(CollectiveOp.ALL_REDUCE, f"k{i // 2}", (0, 1), 8.0))
        for i in range(8)
    ]
    index = GraphIndex.of(ExecutionGraph(2, nodes))
    for durations in (
        [1.0, 2.0, 2.0, 1.0, math.nan, 3.0, 3.0, math.nan],
        [1, 1.0, 0.0, -0.0, -0.0, 0.0, 2, 2.0],
        [math.inf, 1.0, 1.0, math.inf, 0.5, 0.25, 0.25, 0.5],
    ):
        got, expected = _vertex_lengths(index, durations), previous_vertex_lengths(index, durations)
        assert repr(got.tolist()) == repr(expected.tolist())
        assert np.signbit(got).tolist() == np.signbit(expected).tolist()


def test_an_analytic_evaluation_is_freed_by_reference_counting():
    """The timing holds its schedule weakly: dropping a simulation frees its graph, index and
    timing at once (no reference cycle left for the collector), and makes none of the index's
    lists nor the timing's Python floats."""
    system, workload, plan = _prepared("dgx-h100", 1, "table_wise", "fused")
    with paused_gc():
        sim = simulate_training(system, workload, plan, SimulationOptions(fidelity="analytic"))
        assert sim.schedule is not None
        timing = vars(sim.schedule)["_timing"]
        index = timing.index
        assert not set(INDEX_FIELDS) - {"queue_keys"} & vars(index).keys()
        assert not {"start_list", "finish_list"} & vars(timing).keys()
        assert timing.made(sim.schedule) and timing.schedule() is sim.schedule
        refs = [weakref.ref(x) for x in (timing, index, sim.graph)]
        del sim, timing, index
        assert [r() for r in refs] == [None, None, None]
    # A timing copies and pickles without its schedule, and makes a new one when asked.
    graph = build_training_step(workload, plan, BuildOptions(validate_plan=False))
    timing = asap_timing(GraphIndex.of(graph), [1.0] * len(graph.nodes))
    made = timing.schedule()
    assert timing.made(made) and timing.schedule() is made
    copied = pickle.loads(pickle.dumps(timing))
    assert np.array_equal(copied.finish, timing.finish) and copied.schedule() == made
    assert not copied.made(made) and copied.made(copied.schedule())
    del made
    assert timing.schedule().finish_s == copied.schedule().finish_s


def previous_later(templates: _Templates) -> list[tuple[int, ...]]:
    """``_Templates.later`` as ``_Templates.of`` made it before round 5 (verbatim)."""
    first, cross, stride = templates.first, templates.cross, templates.stride
    later = [
        own if extra is None else (*own, *[i - stride for i in extra])
        for own, extra in zip(first, cross, strict=True)
    ]
    return later


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime"), CONFIGS[:4])
def test_later_dependencies_in_arrays_equal_the_templates(name, nodes, plan_name, runtime):
    """The later steps' dependencies, worked out in arrays for the chained index, equal the
    templates' (made only when the copies are), on built graphs and on random ones."""
    _, workload, plan = _prepared(name, nodes, plan_name, runtime)
    graphs = [build_training_step(workload, plan, BuildOptions(validate_plan=False))]
    graphs += [random_graph(seed, ranks=2 + seed % 3) for seed in range(4)]
    graphs.append(ExecutionGraph(1, []))
    for graph in graphs:
        templates = _Templates.of(graph)
        assert "later" not in vars(templates)
        expected = previous_later(templates)
        first = rows(templates.first)
        flat, end = _later_rows(first, templates.cross, templates.stride)
        got_flat, got_end = rows(expected)
        assert flat.dtype == got_flat.dtype and end.dtype == got_end.dtype
        assert flat.tolist() == got_flat.tolist() and end.tolist() == got_end.tolist()
        assert templates.later == expected
