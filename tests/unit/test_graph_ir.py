"""The graph IR: invariants, exact JSON round trip, Chrome trace export, bad input."""

import gzip
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.errors import TraceError
from recsim.graph.build import build_training_step
from recsim.graph.ir import (
    SCHEMA_VERSION,
    Collective,
    CollectiveOp,
    Compute,
    Embedding,
    ExecutionGraph,
    Host,
    Node,
    Stream,
)
from recsim.graph.native import graph_from_dict, graph_to_dict, read_graph, write_graph
from recsim.graph.schedule import Schedule, asap_schedule
from recsim.graph.writers.chrome import chrome_trace, write_chrome_trace
from recsim.planner import table_wise_round_robin
from recsim.workload.library import WorkloadLibrary
from tests.conftest import FIXTURES


def step():
    w = WorkloadLibrary([FIXTURES / "workloads"]).workload("tiny-dlrm")
    return build_training_step(w, table_wise_round_robin(w, 2))


def compute(i, deps=(), rank=0, stream=Stream.COMPUTE, dur=None):
    return Node(i, rank, f"k{i}", stream, Compute("gemm", flops=1.0), tuple(deps), duration_s=dur)


def test_cycle_is_named():
    g = ExecutionGraph(1, [compute(0, [2]), compute(1, [0]), compute(2, [1])])
    with pytest.raises(TraceError, match=r"dependency cycle: .*k\d#\d -> k\d#\d -> k\d#\d -> k\d#\d"):
        g.validate()


def test_dangling_and_duplicate_and_rank():
    with pytest.raises(TraceError, match="depends on missing node 7"):
        ExecutionGraph(1, [compute(0, [7])]).validate()
    with pytest.raises(TraceError, match="duplicate node id 0"):
        ExecutionGraph(1, [compute(0), compute(0)]).validate()
    with pytest.raises(TraceError, match=r"rank 3 outside 0\.\.1"):
        ExecutionGraph(2, [compute(0, rank=3)]).validate()
    with pytest.raises(TraceError, match="bad recorded duration"):
        ExecutionGraph(1, [compute(0, dur=-1.0)]).validate()


def coll(i, rank, key, group, send=None, recv=None, op=CollectiveOp.ALL_TO_ALL):
    return Node(i, rank, key, Stream.COMM, Collective(op, key, group, 8.0, send_bytes=send, recv_bytes=recv))


def test_collectives_must_agree():
    ok = ExecutionGraph(2, [coll(0, 0, "x", (0, 1), (1, 2), (1, 3)), coll(1, 1, "x", (0, 1), (3, 4), (2, 4))])
    ok.validate()
    bad = ExecutionGraph(
        2, [coll(0, 0, "x", (0, 1), (1, 2), (1, 3)), coll(1, 1, "x", (0, 1), (5, 4), (2, 4))]
    )
    with pytest.raises(TraceError, match="rank 1 sends 5 B to rank 0, which expects 3 B"):
        bad.validate()
    missing = ExecutionGraph(2, [coll(0, 0, "x", (0, 1))])
    with pytest.raises(TraceError, match=r"ranks \[1\] of group"):
        missing.validate()
    mixed = ExecutionGraph(2, [coll(0, 0, "x", (0, 1)), coll(1, 1, "x", (0, 1), op=CollectiveOp.ALL_REDUCE)])
    with pytest.raises(TraceError, match="has all_reduce over"):
        mixed.validate()


def test_native_round_trip_is_exact(tmp_path):
    g = step()
    for name in ("g.json", "g.json.gz"):
        path = tmp_path / name
        write_graph(g, path)
        back = read_graph(path)
        assert back.nodes == g.nodes
        assert back.metadata == g.metadata
        assert back.ranks == g.ranks
    raw = gzip.decompress((tmp_path / "g.json.gz").read_bytes())
    assert json.loads(raw)["version"] == SCHEMA_VERSION == "1.6"


@settings(max_examples=30, deadline=None)
@given(
    durations=st.lists(st.floats(min_value=0, max_value=1e3, allow_nan=False), min_size=1, max_size=20),
    flops=st.floats(min_value=0, max_value=1e18, allow_nan=False),
)
def test_round_trip_property(durations, flops):
    nodes = [
        Node(
            i,
            0,
            f"n{i}",
            Stream.HOST if i % 2 else Stream.COMPUTE,
            Compute("x", flops=flops),
            (i - 1,) if i else (),
            duration_s=d,
        )
        for i, d in enumerate(durations)
    ]
    g = ExecutionGraph(1, nodes, {"note": "ü"})
    assert graph_from_dict(json.loads(json.dumps(graph_to_dict(g)))).nodes == g.nodes


def test_native_bad_input(tmp_path):
    bad_gz = tmp_path / "t.json.gz"
    bad_gz.write_bytes(gzip.compress(b'{"schema": "recsim.execution_graph"')[:20])
    with pytest.raises(TraceError, match="corrupted or truncated gzip"):
        read_graph(bad_gz)
    truncated = tmp_path / "t.json"
    truncated.write_text('{"schema": "recsim.execution_graph", "nodes": [')
    with pytest.raises(TraceError, match="invalid or truncated JSON"):
        read_graph(truncated)
    future = tmp_path / "f.json"
    future.write_text(
        json.dumps({"schema": "recsim.execution_graph", "version": "2.0", "ranks": 1, "nodes": []})
    )
    with pytest.raises(TraceError, match=r"version '2\.0' is not supported"):
        read_graph(future)
    minor = tmp_path / "m.json"
    minor.write_text(
        json.dumps({"schema": "recsim.execution_graph", "version": "1.7", "ranks": 1, "nodes": []})
    )
    with pytest.warns(UserWarning, match="reading as 1.6"):
        assert len(read_graph(minor)) == 0
    # A newer minor version's op fields are left out, and named; an older one's lookups take the
    # defaults of the fields it lacks (one bag per sample, the table's dtype), and the warning says so.
    lookup = {"kind": "embedding", "table": "t", "pass_": "forward", "rows": 10, "dim": 4}
    lookup |= {"dtype": "fp32", "batch": 8, "lookups": 8.0}
    newer = {"id": 0, "rank": 0, "name": "e", "stream": "compute", "op": lookup | {"heat": 3}}
    ahead = tmp_path / "ahead.json"
    ahead.write_text(
        json.dumps({"schema": "recsim.execution_graph", "version": "1.9", "ranks": 1, "nodes": [newer]})
    )
    with (
        pytest.warns(UserWarning, match="reading as 1.6"),
        pytest.warns(UserWarning, match="left out: embedding.heat"),
    ):
        (node,) = read_graph(ahead).nodes
    assert isinstance(node.op, Embedding) and node.op.bags is None
    older = {"id": 0, "rank": 0, "name": "e", "stream": "compute", "op": lookup}
    behind = tmp_path / "behind.json"
    behind.write_text(
        json.dumps({"schema": "recsim.execution_graph", "version": "1.0", "ranks": 1, "nodes": [older]})
    )
    with pytest.warns(UserWarning, match="no bag counts"):
        (node,) = read_graph(behind).nodes
    assert node.op.bags is None and node.op.output_dtype is None
    # Versions are "major" or "major.minor" strings of ASCII digits; anything else is refused.
    for bad in ("1.\u00b2", "1.x", "x", "", "01.1.2", 1.1, None):
        with pytest.raises(TraceError, match="schema version"):
            graph_from_dict({"schema": "recsim.execution_graph", "version": bad, "ranks": 1, "nodes": []})
    with pytest.warns(UserWarning, match="reading as 1.6"):  # 1.10 is newer than 1.6
        graph_from_dict({"schema": "recsim.execution_graph", "version": "1.10", "ranks": 1, "nodes": []})
    # Unset fields added after 1.0 are not written (an older minor reader then meets none of them).
    written = graph_to_dict(
        ExecutionGraph(
            1,
            [Node(0, 0, "e", Stream.COMPUTE, Embedding(**{k: v for k, v in lookup.items() if k != "kind"}))],
        )
    )
    assert not {"bags", "output_dtype", "atomic"} & set(written["nodes"][0]["op"])
    atomic = graph_to_dict(
        ExecutionGraph(
            1,
            [
                Node(
                    0,
                    0,
                    "e",
                    Stream.COMPUTE,
                    Embedding(**{k: v for k, v in lookup.items() if k != "kind"}, atomic=True),
                )
            ],
        )
    )
    assert atomic["nodes"][0]["op"]["atomic"] is True
    assert graph_from_dict(atomic).nodes[0].op.atomic is True
    # This version's own files name an unknown field as an error.
    with pytest.raises(TraceError, match=r"unknown embedding field\(s\) \['heat'\]"):
        graph_from_dict(
            {"schema": "recsim.execution_graph", "version": SCHEMA_VERSION, "ranks": 1, "nodes": [newer]}
        )
    node = {"id": 0, "rank": 0, "name": "x", "stream": "compute", "op": {"kind": "warp", "a": 1}}
    weird = tmp_path / "w.json"
    weird.write_text(
        json.dumps(
            {"schema": "recsim.execution_graph", "version": SCHEMA_VERSION, "ranks": 1, "nodes": [node]}
        )
    )
    with pytest.raises(TraceError, match="unknown op kind 'warp'"):
        read_graph(weird)


def test_asap_schedule_by_hand():
    g = ExecutionGraph(
        1,
        [
            compute(0, dur=1.0),
            compute(1, dur=2.0),  # same stream: waits for 0
            Node(2, 0, "h", Stream.HOST, Host("x"), (0,), duration_s=0.5),  # other stream, after 0
            compute(3, [2], dur=1.0),
        ],
    )
    s = asap_schedule(g)
    assert s.start_s == {0: 0.0, 1: 1.0, 2: 1.0, 3: 3.0}
    assert s.makespan_s == 4.0


def test_chrome_trace(tmp_path):
    g = step()
    trace = chrome_trace(g)
    events = trace["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert len(complete) == len(g)
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert names == {"rank 0", "rank 1"}
    starts = [e for e in events if e["ph"] == "s"]
    finishes = [e for e in events if e["ph"] == "f"]
    assert starts
    assert len(starts) == len(finishes)
    path = tmp_path / "t.trace.json.gz"
    write_chrome_trace(g, path)
    assert json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]


def test_chrome_trace_reports_each_collectives_algorithm_and_protocol():
    # Two H100s of a DGX H100: a 4 MiB all-reduce runs Simple on NVLink (the NVSwitch fit, LL128
    # dropped by its rare-protocol rule: calibrate.fit_level), a 4 KiB
    # all-to-all LL (point-to-point, at most 16 KiB per peer); the slices say so, as
    # ``collective_cost`` chose them. Without a topology (a converted trace) they do not.
    from recsim.api import load_system
    from recsim.cost.collectives import collective_cost
    from recsim.hardware.topology import build_topology

    topology = build_topology(load_system("dgx-h100"))
    mib = 1024.0 * 1024.0
    reduce = Collective(CollectiveOp.ALL_REDUCE, "ar", (0, 1), 4 * mib, "fp16", algorithm="collnet")
    exchange = Collective(CollectiveOp.ALL_TO_ALL, "a2a", (0, 1), 4096.0, "fp16")
    g = ExecutionGraph(
        2,
        [
            *(Node(r, r, "ar", Stream.COMM, reduce, (), duration_s=1e-5) for r in (0, 1)),
            *(Node(2 + r, r, "a2a", Stream.COMM, exchange, (r,), duration_s=1e-5) for r in (0, 1)),
        ],
    )
    slices = {
        (e["name"], e["pid"]): e["args"]
        for e in chrome_trace(g, None, topology)["traceEvents"]
        if e["ph"] == "X"
    }
    for r in (0, 1):
        assert slices[("ar", r)]["protocol"] == "simple"
        assert slices[("a2a", r)]["protocol"] == "ll"
        # The op's algorithm is a preference (CollNet cannot run on one node): the slice gives both.
        assert slices[("ar", r)]["requested_algorithm"] == "collnet"
        assert slices[("ar", r)]["algorithm"] == collective_cost(reduce, topology).algorithm != "collnet"
        assert slices[("a2a", r)]["algorithm"] == collective_cost(exchange, topology).algorithm
    bare = [e["args"] for e in chrome_trace(g)["traceEvents"] if e["ph"] == "X"]
    assert all("protocol" not in a for a in bare) and bare[0]["algorithm"] == "collnet"


def test_chrome_flow_events_sit_inside_their_slices():
    # Host work after kernel 0 on another stream, then kernel 3 after it: two arrows, each end in
    # the middle of its slice, not on a boundary the next slice of the thread shares (kernel 1
    # starts where kernel 0 ends).
    g = ExecutionGraph(
        1,
        [
            compute(0, dur=1.0),
            compute(1, dur=2.0),
            Node(2, 0, "h", Stream.HOST, Host("x"), (0,), duration_s=0.5),
            compute(3, [2], dur=1.0),
        ],
    )
    events = chrome_trace(g)["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    flows = [e for e in events if e["ph"] in ("s", "f")]
    assert len(flows) == 4
    for flow in flows:
        enclosing = [
            e["name"]
            for e in slices
            if (e["pid"], e["tid"]) == (flow["pid"], flow["tid"])
            and e["ts"] <= flow["ts"] <= e["ts"] + e["dur"]
        ]
        assert len(enclosing) == 1, (flow, enclosing)
    assert [e["ts"] for e in flows] == [0.5e6, 1.25e6, 1.25e6, 3.5e6]


def test_chrome_slices_that_touch_never_overlap_by_rounding():
    # Three kernels back to back on one thread, at times where scaling the duration on its own
    # (``(finish - start) * 1e6``) and even ``finish * 1e6 - start * 1e6`` put a slice's end one
    # step past the next slice's start.
    times = [0.0004993, 0.0018563, 0.0039701, 0.0066084]
    g = ExecutionGraph(1, [compute(i, [i - 1] if i else []) for i in range(3)])
    schedule = Schedule(dict(enumerate(times[:-1])), dict(enumerate(times[1:])))
    slices = sorted(
        (e for e in chrome_trace(g, schedule)["traceEvents"] if e["ph"] == "X"), key=lambda e: e["ts"]
    )
    assert [e["ts"] for e in slices] == [t * 1e6 for t in times[:-1]]
    for a, b in itertools.pairwise(slices):
        assert a["ts"] + a["dur"] <= b["ts"]
    assert slices[-1]["ts"] + slices[-1]["dur"] <= times[-1] * 1e6
    # Still the slice's length, to the last step or so.
    for e, (s, f) in zip(slices, itertools.pairwise(times), strict=True):
        assert e["dur"] == pytest.approx((f - s) * 1e6, rel=1e-12, abs=0)
