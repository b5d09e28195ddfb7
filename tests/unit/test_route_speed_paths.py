"""The fast paths of in-node routes and of the collective cost keys give what the implementations
they replaced gave, bit for bit.

Each ``Old*`` / ``old_*`` below is the replaced implementation, copied verbatim (only renamed, and
made a subclass or a free function where it was a method) as the oracle:

* ``Topology.local_pair_bandwidth`` searched each pair of node 0's accelerators on its own (a
  breadth-first search and a walk back per pair; ``_all_shortest_paths`` had the walk inline); now
  one search per source serves every destination (``_find_local_paths``), for the first pair
  asked too (``_find_paths``). ``_route_from_paths`` and ``_paths_max_flow`` read edges and
  vertices through networkx's views, now its dicts;
* ``Topology._find_paths`` searched networkx subgraph views for the routes it cannot compose
  (an accelerator to its host memory, NICs through a relay); now the same vertex filters over its
  adjacency lists (``_all_shortest_paths``);
* ``CostModel.collective_s`` keyed its cache by the group and split tuples themselves (hashing
  and comparing up to 1024 elements per op); now by the ids of their interned copies.
"""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest

import recsim.cost.model as cost_model
from recsim.api import load_system
from recsim.cost.memo import TupleInterner
from recsim.cost.model import CostModel
from recsim.errors import ConfigError
from recsim.graph.ir import Collective, CollectiveOp
from recsim.hardware.system import System
from recsim.hardware.topology import (
    ACCELERATOR,
    Route,
    Topology,
    _all_shortest_paths,
    build_topology,
    gpu_id,
)

# ------------------------------------------------------------------------------------------ oracles


def old_all_shortest_paths(
    adjacency: dict[str, list[str]], src: str, dst: str, ok: Any
) -> tuple[tuple[str, ...], ...]:
    """``nx.all_shortest_paths(view, src, dst)`` in the same order, ``view`` keeping the vertices
    ``ok`` accepts: the same breadth-first predecessor lists (stopped once ``dst``'s level is done,
    which completes every list a shortest path uses), then the same depth-first walk back."""
    seen = {src: 0}
    pred: dict[str, list[str]] = {src: []}
    level = 0
    nextlevel = [src]
    while nextlevel and dst not in seen:
        level += 1
        thislevel, nextlevel = nextlevel, []
        for v in thislevel:
            for w in adjacency[v]:
                if w not in seen:
                    if not ok(w):
                        continue
                    pred[w] = [v]
                    seen[w] = level
                    nextlevel.append(w)
                elif seen[w] == level:
                    pred[w].append(v)
    if dst not in pred:
        return ()
    out = []
    on_path = {dst}
    stack = [[dst, 0]]
    top = 0
    while top >= 0:
        node, i = stack[top]
        if node == src:
            out.append(tuple(p for p, _ in reversed(stack[: top + 1])))
        if len(pred[node]) > i:
            stack[top][1] = i + 1
            nxt = pred[node][i]
            if nxt in on_path:
                continue
            on_path.add(nxt)
            top += 1
            if top == len(stack):
                stack.append([nxt, 0])
            else:
                stack[top][:] = [nxt, 0]
        else:
            on_path.discard(node)
            top -= 1
    return tuple(out)


class OldRouteTopology(Topology):
    """``Topology`` with the per-pair in-node searches and the view-based route figures (method
    bodies verbatim; ``_find_paths`` calls ``old_all_shortest_paths`` and searches the views of
    ``_fabric_graph``)."""

    def _fabric_graph(self, src: str, dst: str) -> Any:
        """Graphs to route in, best first.

        Inside a node: NVLink (direct or through NVSwitch) first. Leaving a node: the home NICs of
        the two accelerators (their own, or those on their PCIe switch, as NCCL picks by PCI
        distance), then any NIC of the two end nodes, then relaying through a peer accelerator
        over NVLink (PXN). Vertices of a third node never carry the traffic.
        """
        g = self.graph
        src_node, dst_node = g.nodes[src]["node"], g.nodes[dst]["node"]
        if src_node == dst_node:
            # Direct NVLink or through NVSwitch.
            yield nx.subgraph_view(
                g,
                filter_node=lambda v: v in (src, dst) or g.nodes[v]["kind"] != ACCELERATOR,
                filter_edge=lambda a, b: g.edges[a, b]["kind"] == "nvlink",
            )
            # Else NVLink through one intermediate accelerator (NCCL's NVB paths).
            relays = self._nvb_relays(src, dst)
            yield nx.subgraph_view(
                g,
                filter_node=lambda v: v in (src, dst) or v in relays,
                filter_edge=lambda a, b: g.edges[a, b]["kind"] == "nvlink",
            )
        home = set(g.nodes[src].get("home_nics", ())) | set(g.nodes[dst].get("home_nics", ()))
        ends = (src_node, dst_node)

        def allowed(v: str, home_only: bool, relay: bool) -> bool:
            data = g.nodes[v]
            if v in (src, dst) or data["node"] is None:
                return True  # the endpoints and the network switches
            if data["node"] not in ends:
                return False  # a third node's NICs and PCIe never forward traffic
            if data["kind"] == ACCELERATOR:
                return relay
            if data["kind"] == "nic" and home_only and src_node != dst_node and home:
                return v in home
            return True

        for home_only, relay in ((True, False), (False, False), (False, True)):
            yield nx.subgraph_view(g, filter_node=lambda v, h=home_only, r=relay: allowed(v, h, r))

    def local_pair_bandwidth(self) -> np.ndarray:
        if self._local_pair_bw is None:
            g = max(1, self.system.node.num_accelerators)
            bw = np.full((g, g), np.inf)
            for i in range(g):
                for j in range(g):
                    if i != j:
                        bw[i, j] = self.route(gpu_id(0, i), gpu_id(0, j)).bandwidth_bytes_per_s
            self._local_pair_bw = bw
        return self._local_pair_bw

    def _find_paths(self, src: str, dst: str) -> tuple[tuple[str, ...], ...]:
        for name in (src, dst):
            if name not in self.graph:
                raise ConfigError(f"no device {name!r} in the topology of {self.system.name!r}")
        if src == dst:
            return ((src,),)
        split = self._split(src, dst)
        if split is not None:
            # (The composed route's first segment since PXN relays: ``source_segment``.)
            via, nic_a, nic_b = split
            first = self.source_segment(src, via, nic_a)
            fabric = self._fabric_segment(nic_a, nic_b)
            last = self._segment(nic_b, dst, "dst")
            if first and fabric and last:
                return tuple(s + f[1:] + d[1:] for d in last for f in fabric for s in first)
        g = self.graph
        if g.nodes[src]["node"] == g.nodes[dst]["node"]:

            def ok(v: str) -> bool:
                return v in (src, dst) or g.nodes[v]["kind"] != ACCELERATOR

            found = old_all_shortest_paths(self._lazy_nvlink_adjacency, src, dst, ok)
            if found:
                return found
        for view in self._fabric_graph(src, dst):
            if src in view and dst in view and nx.has_path(view, src, dst):
                return tuple(tuple(p) for p in nx.all_shortest_paths(view, src, dst))
        raise ConfigError(f"{self.system.name}: no path from {src} to {dst}")

    def _route_from_paths(
        self, src: str, dst: str, paths: tuple[tuple[str, ...], ...], flow: float | None = None
    ) -> Route:
        g = self.graph
        single = math.inf
        latency = 0.0
        for path in paths:
            path_bw = math.inf
            path_lat = 0.0
            for a, b in itertools.pairwise(path):
                edge = g.edges[a, b]
                path_bw = min(path_bw, edge["bandwidth_bytes_per_s"])
                path_lat += edge["latency_s"]
            path_lat += sum(g.nodes[v].get("latency_s", 0.0) for v in path[1:-1])
            single = min(single, path_bw)
            latency = max(latency, path_lat)
        if flow is None:
            flow = self._paths_max_flow(src, dst, paths) if len(paths[0]) > 2 else single
        return Route(src, dst, paths, float(flow), single, latency)

    def _paths_max_flow(self, src: str, dst: str, paths: tuple[tuple[str, ...], ...]) -> float:
        g = self.graph
        key: tuple[object, ...] | None = None
        if self._integral_capacities:
            number: dict[str, int] = {}
            edges: dict[tuple[int, int, float], None] = {}
            for path in paths:
                for a, b in itertools.pairwise(path):
                    ia = number.setdefault(a, len(number))
                    ib = number.setdefault(b, len(number))
                    edges[(ia, ib, g.edges[a, b]["bandwidth_bytes_per_s"])] = None
            key = (number[src], number[dst], *edges)
            cached = self._shape_flow.get(key)
            if cached is not None:
                return cached
        sub = nx.DiGraph()
        for path in paths:
            for a, b in itertools.pairwise(path):
                sub.add_edge(a, b, capacity=g.edges[a, b]["bandwidth_bytes_per_s"])
        flow = float(nx.maximum_flow_value(sub, src, dst))
        if key is not None:
            self._shape_flow[key] = flow
        return flow


class OldCostModel(CostModel):
    """``CostModel`` with the collective cache keyed by the tuples themselves (verbatim)."""

    def collective_s(self, op: Collective) -> float:
        group, send, recv = op.group, op.send_bytes, op.recv_bytes
        if len(group) <= 1:
            return 0.0
        fast = (op.op, op.bytes, op.dtype, op.algorithm, id(group), id(send), id(recv))
        hit = self._collectives_by_id.get(fast)
        if hit is not None:
            kept = hit[0]
            if kept[0] is group and kept[1] is send and kept[2] is recv:
                return hit[1]
        tuples = (group, send, recv)
        key = (op.op, op.group, op.bytes, op.dtype, op.send_bytes, op.recv_bytes, op.algorithm)
        value = self._collectives.get(key)
        if value is None:
            value = cost_model.collective_time_s(op, self.topology)
            self._collectives[key] = value
        self._collectives_by_id[fast] = (tuples, value)
        return value


# ------------------------------------------------------------------------------------------ routes

SYSTEM_DIR = Path(__file__).resolve().parents[2] / "hardware" / "systems"


#: Systems whose two nodes' in-node pairs the old per-pair search takes 10-12 s of CPU a test to route
#: (GB200 NVL72: 2 x 72 x 71 pairs): on 2 nodes behind the ``slow`` marker, and on one node (its
#: NVL72 domain's in-node pairs, half the cost) in the default run; the default run's routes across
#: nodes are the other systems' (``dgx-h100`` on 2 and 16 nodes among them).
BIG_NODES = ("gb200-nvl72",)


def _system_cases() -> list[Any]:
    cases: list[Any] = [("dgx-h100", 1), ("dgx-h100", 2), ("dgx-h100", 16), ("dgx-a100", 2)]
    cases += [("p4d-24xlarge", 2), ("zionex", 2)]
    for path in sorted(SYSTEM_DIR.glob("*.yaml")):
        if (path.stem, 2) in cases:
            continue
        if path.stem in BIG_NODES:
            cases.append((path.stem, 1))
            cases.append(pytest.param(path.stem, 2, marks=pytest.mark.slow))
        else:
            cases.append((path.stem, 2))
    return cases


def _load(name: str, nodes: int) -> System | None:
    try:
        return load_system(name, nodes=nodes)
    except Exception:  # a system that does not load (or not on several nodes) has no routes
        try:
            return load_system(name)
        except Exception:
            return None


def _pairs(topology: Topology) -> list[tuple[str, str]]:
    """Every in-node pair of node 0, 1 and the last node, and a sample of pairs across nodes."""
    g = topology.graph
    accs = topology.accelerators
    nodes = sorted({g.nodes[a]["node"] for a in accs})
    pairs: list[tuple[str, str]] = []
    for n in {nodes[0], nodes[min(1, len(nodes) - 1)], nodes[-1]} if nodes else ():
        mine = [a for a in accs if g.nodes[a]["node"] == n]
        pairs += list(itertools.permutations(mine, 2))
    rng = random.Random(11)
    drawn = [rng.sample(accs, 2) for _ in range(60)] if len(accs) >= 2 else []
    across = [(a, b) for a, b in drawn]
    pairs += [(a, b) for a, b in across if g.nodes[a]["node"] != g.nodes[b]["node"]]
    # Routes that take the general search (not NVLink, not composed through two home NICs): an
    # accelerator and its node's other devices (host memory, CPUs, NICs, SSDs: the DES's copies),
    # both ways, and a sample of any two vertices of the cluster.
    if accs:
        first = accs[0]
        others = [v for v, d in g.nodes(data=True) if d["kind"] != ACCELERATOR and d["node"] == 0]
        pairs += [(first, v) for v in others] + [(v, first) for v in others]
    vertices = list(g.nodes)
    pairs += [tuple(rng.sample(vertices, 2)) for _ in range(40)] if len(vertices) >= 2 else []
    return pairs


def _route_or_error(topology: Topology, src: str, dst: str) -> object:
    try:
        return topology.route(src, dst)
    except ConfigError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize(("name", "nodes"), _system_cases())
def test_routes_match_the_per_pair_search(name: str, nodes: int) -> None:
    system = _load(name, nodes)
    if system is None:
        pytest.skip(f"{name} does not load")
    new = build_topology(system)
    old = OldRouteTopology(system, build_topology(system).graph)
    if system.node.num_accelerators:
        new_bw, old_bw = new.local_pair_bandwidth(), old.local_pair_bandwidth()
        assert new_bw.dtype == old_bw.dtype and np.array_equal(new_bw, old_bw)
    for src, dst in _pairs(new):
        a, b = _route_or_error(new, src, dst), _route_or_error(old, src, dst)
        assert a == b, (src, dst)
        if isinstance(a, Route) and isinstance(b, Route):
            assert repr(a) == repr(b)  # the same floats, paths in the same order
            assert new.paths(src, dst) == old.paths(src, dst)


@pytest.mark.parametrize(("name", "nodes"), _system_cases())
def test_in_node_paths_found_at_once_match_the_per_pair_search(name: str, nodes: int) -> None:
    """The first of node 0's accelerator pairs asked for finds every such pair's paths
    (``_find_paths`` -> ``_find_local_paths``): each is what its own search finds, whichever pair
    comes first and whatever is asked in between (a shuffled order, other pairs among them)."""
    system = _load(name, nodes)
    if system is None:
        pytest.skip(f"{name} does not load")
    new = build_topology(system)
    old = OldRouteTopology(system, build_topology(system).graph)
    pairs = _pairs(new)
    random.Random(5).shuffle(pairs)
    for src, dst in pairs:
        a, b = _route_or_error(new, src, dst), _route_or_error(old, src, dst)
        assert a == b and repr(a) == repr(b), (src, dst)
    if system.node.num_accelerators:
        assert np.array_equal(new.local_pair_bandwidth(), old.local_pair_bandwidth())


@pytest.mark.parametrize(
    ("name", "nodes"), [("dgx-h100", 2), ("dgx-a100", 2), ("zionex", 2), ("dgx-1-v100", 1)]
)
def test_all_shortest_paths_matches_the_inline_walk(name: str, nodes: int) -> None:
    """The walk back, now a function of its own, over the filters the searches use."""
    system = _load(name, nodes)
    assert system is not None
    topology = build_topology(system)
    g = topology.graph
    vertices = list(g.nodes)
    rng = random.Random(3)
    filters = [
        lambda v: True,
        lambda v: g.nodes[v]["kind"] != ACCELERATOR,
        lambda v: g.nodes[v]["node"] in (0, None),
    ]
    for adjacency in (topology._lazy_adjacency, topology._lazy_nvlink_adjacency):
        for _ in range(150):
            src, dst = rng.sample(vertices, 2)
            for ok in filters:
                keep = lambda v, ok=ok, src=src, dst=dst: v in (src, dst) or ok(v)  # noqa: E731
                assert _all_shortest_paths(adjacency, src, dst, keep) == old_all_shortest_paths(
                    adjacency, src, dst, keep
                )


# ------------------------------------------------------------------------------- collective keys


def _ops(rng: random.Random) -> list[Collective]:
    """Collectives whose tuples are equal in value but distinct objects, or differ in one place,
    in a sign of zero, in int against float, by a NaN (equal only as the same object), or in one
    element of many."""
    nan = float("nan")
    group = tuple(range(64))
    base = [float(rng.choice([648, 1080, 1512, 2808])) for _ in range(64)]
    variants: list[tuple[float, ...] | None] = [None, tuple(base)]
    for k in range(12):  # equal but for one element each
        v = list(base)
        v[1 + 4 * k] += 1.0
        variants.append(tuple(v))
    v = list(base)
    v[0] = 0.0
    variants.append(tuple(v))
    v[0] = -0.0
    variants.append(tuple(v))
    v[5] = nan
    variants.append(tuple(v))
    variants.append(tuple(v))  # the same NaN object: equal
    w = list(v)
    w[5] = float("nan")
    variants.append(tuple(w))  # another NaN object: not equal
    variants.append(tuple(int(x) for x in base))  # ints equal to the floats
    variants.append(tuple(base[:32]))
    variants.append(())
    groups = [group, tuple(range(64)), tuple(range(1, 65)), tuple(float(r) for r in range(64)), (0,)]
    ops = []
    for i in range(600):
        send = rng.choice(variants)
        recv = rng.choice(variants)
        copy = rng.random() < 0.5
        ops.append(
            Collective(
                rng.choice([CollectiveOp.ALL_TO_ALL, CollectiveOp.ALL_REDUCE]),
                f"c{i}",
                tuple(rng.choice(groups)) if copy else rng.choice(groups),
                rng.choice([1024.0, 2048.0, 0.0, -0.0]),
                rng.choice(["fp16", "fp32"]),
                None if send is None else (tuple(send) if copy else send),
                None if recv is None else (tuple(recv) if copy else recv),
                rng.choice([None, "ring"]),
            )
        )
    return ops


def test_collective_keys_match_the_tuple_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """A counting stand-in for the collective model: each new value key costs a new number, so the
    sequence of values says which ops each cache took for the same."""
    system = load_system("dgx-h100", nodes=8)
    topology = build_topology(system)
    calls = [0]

    def fake(op: Collective, topo: Topology) -> float:
        calls[0] += 1
        return float(calls[0])

    monkeypatch.setattr(cost_model, "collective_time_s", fake)
    rng = random.Random(7)
    ops = _ops(rng)
    ops += [ops[rng.randrange(len(ops))] for _ in range(200)]  # the same op objects again
    calls[0] = 0
    old = OldCostModel(system, topology=topology)
    old_values = [old.collective_s(op) for op in ops]
    old_calls = calls[0]
    calls[0] = 0
    new = CostModel(system, topology=topology)
    new_values = [new.collective_s(op) for op in ops]
    assert new_values == old_values and calls[0] == old_calls


def test_interner_classes_are_equality_classes() -> None:
    rng = random.Random(9)
    interner = TupleInterner()
    values = [tuple(float(rng.randrange(3)) for _ in range(rng.choice([0, 1, 5, 40]))) for _ in range(400)]
    canon = [interner.canonical(tuple(v)) for v in values]
    for a, ca in zip(values, canon, strict=True):
        assert ca == a
    for (a, ca), (b, cb) in itertools.combinations(list(zip(values, canon, strict=True))[:150], 2):
        assert (ca is cb) == (a == b)
    assert interner.canonical(None) is None
