"""The native graph reader checks the document: a field of the wrong type or out of range is a
one-line ``TraceError`` naming the file and the key path, never another exception from deep inside
a command (a tester's fuzzing of a converted trace found ~80 one-field mutations that crashed)."""

import copy
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from recsim.cli import cli
from recsim.errors import TraceError
from recsim.graph.ir import (
    Collective,
    CollectiveOp,
    Compute,
    Embedding,
    ExecutionGraph,
    Host,
    Node,
    Stream,
    Transfer,
)
from recsim.graph.native import graph_from_dict, graph_to_dict
from recsim.graph.summary import trace_info

#: The shipped test traces, wherever pytest runs from (the tests named them from the checkout's
#: root, and failed when run from another folder).
TRACES = Path(__file__).parents[1] / "data" / "traces"


def _graph() -> ExecutionGraph:
    """Two ranks, one node of every op kind, with recorded times and reader metadata."""
    nodes = [
        Node(
            0,
            0,
            "load",
            Stream.HOST,
            Host("data_loading", bytes=8.0, cpu_s=1e-5),
            duration_s=1e-4,
            start_s=0.0,
        ),
        Node(
            1,
            0,
            "gemm",
            Stream.COMPUTE,
            Compute("addmm", 2e9, 1e6, 1e6, "fp16", ((4, 8), (8, 2)), "gemm"),
            (0,),
        ),
        Node(
            2,
            0,
            "lookup",
            Stream.COMPUTE,
            Embedding("t0", "forward", 100, 16, "fp32", 4, 40.0, unique_rows=20.0),
        ),
        Node(3, 0, "h2d", Stream.COPY, Transfer("host", "hbm", 64.0), (1,), duration_s=2e-6, start_s=1e-4),
        Node(
            4,
            0,
            "a2a",
            Stream.COMM,
            Collective(
                CollectiveOp.ALL_TO_ALL, "a2a#0", (0, 1), 16.0, "fp32", (8.0, 8.0), (8.0, 8.0), "ring"
            ),
            (2,),
        ),
        Node(
            5,
            1,
            "a2a",
            Stream.COMM,
            Collective(
                CollectiveOp.ALL_TO_ALL, "a2a#0", (0, 1), 16.0, "fp32", (8.0, 8.0), (8.0, 8.0), "ring"
            ),
        ),
    ]
    metadata = {
        "format": "kineto",
        "source_files": ["a.json", "b.json"],
        "trace_ranks": [0, 1],
        "partial_collectives": False,
        "steps": [{"name": "ProfilerStep#1", "rank": 0, "start_s": 0.0, "duration_s": 1e-3}],
        "waits": {"cpu_waits_on_gpu": 2, "cpu_blocked_s": 0.001},
        "device": {"name": "NVIDIA A100", "memory_bytes": 4.2e10, "compute_capability": "8.0"},
        "notes": ["a note"],
    }
    return ExecutionGraph(2, nodes, metadata)


BASE = json.loads(json.dumps(graph_to_dict(_graph())))
BAD_VALUES = {
    "str": "abc",
    "list": [1],
    "dict": {"a": 1},
    "null": None,
    "bool": True,
    "neg": -3,
    "frac": 1.5,
    "nan": math.nan,
    "huge": 10**30,
}


def _paths(value, prefix=()):
    """Every key path of ``value`` (into objects, and the first item of lists)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list) and value:
        yield (*prefix, 0)
        yield from _paths(value[0], (*prefix, 0))


def _mutated(path, value):
    doc = copy.deepcopy(BASE)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


PATHS = [p for p in _paths(BASE) if p[0] not in ("schema", "version")]
# Every node of BASE (one per op kind) is mutated, not only the first.
PATHS += [p for i in range(1, len(BASE["nodes"])) for p in _paths(BASE["nodes"][i], ("nodes", i))]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: ".".join(map(str, p)))
def test_a_mutated_field_is_read_or_refused_cleanly(path):
    """Whatever one field holds, reading and summarising the graph either works or says what is
    wrong in a ``TraceError``: no ``TypeError``, ``AttributeError``, ``OverflowError`` ..."""
    for value in BAD_VALUES.values():
        doc = _mutated(path, value)
        try:
            graph = graph_from_dict(doc, "g.json")
        except TraceError as exc:
            assert str(exc).startswith("g.json: "), exc
            continue
        try:  # the graph's invariants (the reader of the CLI names the file)
            graph.validate()
        except TraceError:
            continue
        trace_info(graph)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("nodes", 1, "duration_s"), "abc", "nodes[1].duration_s: expected a number of seconds >= 0"),
        (("nodes", 0, "start_s"), [1], "nodes[0].start_s: expected a number of seconds >= 0"),
        (("nodes", 0, "start_s"), -3, "nodes[0].start_s: expected a number of seconds >= 0"),
        (("nodes", 1, "id"), 1.5, "nodes[1].id: expected an integer >= 0, got 1.5"),
        (("nodes", 1, "op"), "abc", "nodes[1].op: expected an object, got 'abc'"),
        (("ranks",), "abc", "ranks: expected an integer from 1 to"),
        (("ranks",), 10**30, "ranks: expected an integer from 1 to"),
        (("ranks",), None, "ranks: expected an integer"),
        (("nodes",), 3, "nodes: expected a list of nodes"),
        (("nodes",), None, "nodes: expected a list of nodes"),
        (("metadata",), "abc", "metadata: expected an object"),
        (("metadata",), None, "metadata: expected an object"),
        (("metadata", "steps"), 3, "metadata.steps: expected a list"),
        (("metadata", "steps", 0, "duration_s"), "x", "metadata.steps[0].duration_s: expected a number"),
        (("metadata", "waits"), [1], "metadata.waits: expected an object"),
        (("metadata", "device"), "abc", "metadata.device: expected an object"),
        (("nodes", 1, "op", "flops"), math.nan, "nodes[1].op.flops: expected a number >= 0, got nan"),
        (("nodes", 1, "op", "flops"), -3, "nodes[1].op.flops: expected a number >= 0"),
        (("nodes", 1, "op", "flops"), "abc", "nodes[1].op.flops: expected a number >= 0"),
        (("nodes", 1, "op", "op"), None, "nodes[1].op.op: expected a string, got None"),
        (("nodes", 1, "op", "category"), [1], "nodes[1].op.category: expected a string"),
        (("nodes", 1, "op", "dtype"), [1], "nodes[1].op.dtype: expected a string"),
        (("nodes", 4, "op", "key"), [1], "nodes[4].op.key: expected a string"),
        (("nodes", 4, "op", "bytes"), None, "nodes[4].op.bytes: expected a number of bytes >= 0"),
        (("nodes", 4, "op", "bytes"), -3, "nodes[4].op.bytes: expected a number of bytes >= 0"),
        (("nodes", 4, "op", "algorithm"), 5, "nodes[4].op.algorithm: expected a string, or null"),
        (("nodes", 4, "op", "dtype"), [1], "nodes[4].op.dtype: expected a string"),
        (("nodes", 4, "op", "op"), [1], "nodes[4].op.op: expected one of 'all_to_all'"),
        (("nodes", 4, "op", "send_bytes"), [1.0], "nodes[4].op.send_bytes: expected one number per member"),
        (("nodes", 3, "op", "bytes"), math.nan, "nodes[3].op.bytes: expected a number of bytes >= 0"),
        (("nodes", 0, "op", "cpu_s"), -1.0, "nodes[0].op.cpu_s: expected a number of seconds >= 0"),
        (("nodes", 0, "op", "bytes"), {"a": 1}, "nodes[0].op.bytes: expected a number of bytes >= 0"),
        (("nodes", 0, "stream"), [1], "nodes[0].stream: expected one of 'compute'"),
        (("nodes", 0, "op", "kind"), [1], "nodes[0].op.kind: unknown op kind [1]"),
        (("nodes", 2, "op", "pass_"), "sideways", "nodes[2].op.pass_: expected one of 'forward'"),
    ],
)
def test_a_bad_field_is_named_with_what_was_expected(path, value, message):
    with pytest.raises(TraceError) as info:
        graph_from_dict(_mutated(path, value), "g.json")
    assert str(info.value).startswith(f"g.json: {message}"), info.value


def test_missing_and_unknown_fields_are_named():
    doc = copy.deepcopy(BASE)
    del doc["nodes"][1]["op"]["op"]
    with pytest.raises(TraceError, match=r"^g\.json: nodes\[1\]\.op: compute op without op$"):
        graph_from_dict(doc, "g.json")
    doc = copy.deepcopy(BASE)
    doc["nodes"][1]["colour"] = "red"
    with pytest.raises(TraceError, match=r"nodes\[1\]: unknown node field\(s\) \['colour'\]"):
        graph_from_dict(doc, "g.json")
    doc = copy.deepcopy(BASE)
    del doc["ranks"]
    with pytest.raises(TraceError, match="missing 'ranks'"):
        graph_from_dict(doc, "g.json")


def test_the_base_document_reads_back_equal():
    graph = graph_from_dict(copy.deepcopy(BASE), "g.json")
    graph.validate()
    assert graph.nodes == _graph().nodes
    assert graph.metadata == _graph().metadata


def test_cli_says_which_field_of_a_converted_trace_is_bad(tmp_path):
    """The tester's reproducer: a converted Kineto trace with a string duration gave a TypeError
    traceback from ``recsim trace info``."""
    runner = CliRunner()
    native = tmp_path / "out.native.json"
    result = runner.invoke(cli, ["trace", "convert", str(TRACES / "simple_add_kineto.json.gz"), str(native)])
    assert result.exit_code == 0, result.output
    doc = json.loads(native.read_text())
    doc["nodes"][1]["duration_s"] = "abc"
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps(doc))
    for args in (["trace", "info", str(bad)], ["replay", "--re-estimate", "--system", "dgx-a100", str(bad)]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert (
            f"recsim: error: {bad}: nodes[1].duration_s: expected a number of seconds >= 0" in result.output
        )
        assert "Traceback" not in result.output


def test_a_step_of_a_rank_the_graph_does_not_have_is_refused():
    doc = copy.deepcopy(BASE)
    doc["metadata"]["steps"][0]["rank"] = 9
    with pytest.raises(
        TraceError,
        match=r"g.json: metadata.steps\[0\].rank: expected a rank of the graph's 2 \(0..1\), got 9",
    ):
        graph_from_dict(doc, "g.json")


def test_ranks_disagreeing_on_a_collectives_size_are_noted():
    doc = copy.deepcopy(BASE)
    for node in doc["nodes"][4:6]:
        node["op"].update(op="all_reduce", send_bytes=None, recv_bytes=None)
    doc["nodes"][5]["op"]["bytes"] = 8.0
    graph = graph_from_dict(doc, "g.json")
    assert graph.metadata["notes"] == [
        "a note",
        "collectives 'a2a#0' (rank 0: 16 B, rank 1: 8 B): the ranks' parts disagree (size), so each "
        "rank's part keeps its own size and recorded duration",
    ]
    # Where a reader said so already (it writes such graphs: ranks' windows that begin at different
    # collectives), it is not said twice.
    doc["metadata"]["notes"] = ["collectives 'a2a#0': the ranks' parts disagree (size), so ..."]
    assert len(graph_from_dict(doc, "g.json").metadata["notes"]) == 1


def test_convert_says_which_ranks_of_the_job_it_wrote_and_info_both_formats(tmp_path):
    runner = CliRunner()
    one = tmp_path / "one.json"
    result = runner.invoke(cli, ["trace", "convert", str(TRACES / "simple_add_kineto.json.gz"), str(one)])
    assert result.exit_code == 0, result.output
    assert "(native, 1 rank, " in result.output  # had read "1 ranks"
    # One rank's file of an eight-rank job: it had said "8 ranks".
    part = tmp_path / "part.json"
    recsys = str(TRACES / "recsys_a100_8rank_rank3_control.json.gz")
    result = runner.invoke(cli, ["trace", "convert", recsys, str(part)])
    assert result.exit_code == 0, result.output
    assert "(native, rank 3 of a job of 8 ranks, " in result.output
    # trace info on the native file: its own format and the one it was converted from.
    result = runner.invoke(cli, ["trace", "info", "--json", str(one)])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert (info["format"], info["converted_from"]) == ("native", "kineto")
    result = runner.invoke(cli, ["trace", "info", "--json", str(TRACES / "simple_add_kineto.json.gz")])
    assert json.loads(result.output)["format"] == "kineto" and "converted_from" not in json.loads(
        result.output
    )


def test_a_compute_of_several_kernels_round_trips_and_one_kernel_is_not_written():
    several = Compute("interaction_torch_bwd", 1e6, 2e6, 1e6, "fp32", (), "elementwise", kernels=7)
    graph = ExecutionGraph(1, [Node(0, 0, "dot", Stream.COMPUTE, several)])
    doc = graph_to_dict(graph)
    assert doc["nodes"][0]["op"]["kernels"] == 7
    assert graph_from_dict(copy.deepcopy(doc), "g.json").nodes == graph.nodes
    # The default (one kernel) stays out of the file, as a 1.2 writer left it.
    single = graph_to_dict(
        ExecutionGraph(1, [Node(0, 0, "dot", Stream.COMPUTE, replace(several, kernels=1))])
    )
    assert "kernels" not in single["nodes"][0]["op"]
    doc["nodes"][0]["op"]["kernels"] = 0
    with pytest.raises(TraceError, match="kernels"):
        graph_from_dict(doc, "g.json")


def test_an_accumulating_gemm_round_trips_and_an_overwriting_one_is_not_written():
    added = Compute("cross0_v_dgrad", 1e6, 2e6, 1e6, "fp16", ((4, 3), (3, 12)), "gemm", accumulates=True)
    graph = ExecutionGraph(1, [Node(0, 0, "dgrad", Stream.COMPUTE, added)])
    doc = graph_to_dict(graph)
    assert doc["nodes"][0]["op"]["accumulates"] is True
    assert graph_from_dict(copy.deepcopy(doc), "g.json").nodes == graph.nodes
    # The default (beta = 0) stays out of the file, as a 1.5 writer left it.
    plain = graph_to_dict(
        ExecutionGraph(1, [Node(0, 0, "dgrad", Stream.COMPUTE, replace(added, accumulates=False))])
    )
    assert "accumulates" not in plain["nodes"][0]["op"]
    doc["nodes"][0]["op"]["accumulates"] = 1
    with pytest.raises(TraceError, match="accumulates"):
        graph_from_dict(doc, "g.json")
