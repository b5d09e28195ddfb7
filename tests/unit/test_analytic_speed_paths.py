"""The fast paths of the analytic engine give exactly what the straightforward code gives.

``asap_schedule`` and ``chain_steps`` were rewritten for speed, the collective cost layer memoises
group layouts and local routes, and the topology shares max-flows between routes of the same shape
and computes the bisection in integers. Each is compared here, bit for bit, with the plain version
(kept below as the reference) on built, chained and random graphs and on shipped systems.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import replace

import networkx as nx
import pytest

from recsim.api import load_system, load_workload
from recsim.cost.collectives import collective_time_s
from recsim.cost.collectives.base import GroupLayout, group_layout
from recsim.cost.model import CostModel
from recsim.errors import TraceError
from recsim.graph.build import build_training_step
from recsim.graph.ir import (
    Collective,
    CollectiveOp,
    Compute,
    Embedding,
    ExecutionGraph,
    Host,
    Node,
    Stream,
)
from recsim.graph.schedule import asap_schedule, queue_of
from recsim.graph.steps import chain_steps
from recsim.hardware.topology import build_topology, gpu_id
from recsim.planner import table_wise_round_robin
from recsim.workload.library import WorkloadLibrary
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
        if isinstance(n.op, Embedding) and n.op.pass_ == "backward":
            emb_update[(n.rank, n.op.table)].append(n.id)
    nodes: list[Node] = []
    for s in range(steps):
        offset = s * stride
        prev = (s - 1) * stride
        for n in graph.nodes:
            deps = [d + offset for d in n.deps]
            if s > 0 and n.phase == "forward":
                if isinstance(n.op, Embedding):
                    deps += [i + prev for i in inputs[n.rank]]
                    deps += [i + prev for i in emb_update[(n.rank, n.op.table)]]
                elif not n.deps:
                    deps += [i + prev for i in inputs[n.rank]]
                    deps += [i + prev for i in optimizer[n.rank]]
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
