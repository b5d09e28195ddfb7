"""``recsim replay`` on traces a tester broke: step windows, notes, errors, partial rank sets."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from recsim.engine.replay import replay_keep, replay_reestimate
from recsim.graph.ir import Compute, ExecutionGraph, Host, Node, Stream
from recsim.graph.readers import read_trace

TRACES = Path(__file__).parents[1] / "data" / "traces"
RECSYS = TRACES / "recsys_a100_8rank_rank3_control.json.gz"


def _recsys_events() -> dict[str, Any]:
    with gzip.open(RECSYS, "rt") as f:
        data: dict[str, Any] = json.load(f)
    return data


def _host(i: int, start: float, length: float, deps: tuple[int, ...] = ()) -> Node:
    return Node(i, 0, f"h{i}", Stream.HOST, Host(op=f"h{i}"), deps, duration_s=length, start_s=start)


# -- step windows ----------------------------------------------------------------------------------


def test_the_step_is_the_marked_steps_span_not_the_whole_trace() -> None:
    # 10 s of warm-up, a marked step of 10 s, 30 s of unmarked work after it: a step of 10 s, not 50.
    nodes = [_host(0, 0.0, 10.0), _host(1, 10.0, 10.0, (0,)), _host(2, 20.0, 30.0, (1,))]
    steps = [{"name": "ProfilerStep#1", "rank": 0, "start_s": 10.0, "duration_s": 10.0}]
    graph = ExecutionGraph(1, nodes, {"steps": steps})
    result = replay_keep(graph)
    assert (result.steps, result.predicted_step_s, result.predicted_total_s) == (1, 10.0, 50.0)
    # Without markers the whole trace is the step, as before.
    assert replay_keep(ExecutionGraph(1, nodes)).predicted_step_s == 50.0


def test_a_step_edge_inside_a_node_is_placed_by_its_share_of_the_node() -> None:
    # The step runs from 5 s into the first 10 s host node to 5 s into the last: 14 s, a kernel of
    # 4 s between them. The nodes cut by the edges count for the part of them inside the step.
    gpu = Node(1, 0, "k", Stream.COMPUTE, Compute(op="k", category="elementwise"), (0,), 0, 4.0, 10.0)
    nodes = [_host(0, 0.0, 10.0), gpu, _host(2, 14.0, 10.0, (1,))]
    steps = [{"name": "ProfilerStep#1", "rank": 0, "start_s": 5.0, "duration_s": 14.0}]
    graph = ExecutionGraph(1, nodes, {"steps": steps})
    assert replay_keep(graph).predicted_step_s == pytest.approx(14.0)


def test_unmarked_work_before_the_marked_steps_is_not_spread_over_them(tmp_path: Path) -> None:
    # The reference trace with its first three of six ProfilerStep markers removed (a tester's
    # find: +93.6 %, the whole trace divided by three): the three marked steps replay as the six do.
    from recsim.api import load_system

    data = _recsys_events()
    marks = sorted(
        (e for e in data["traceEvents"] if str(e.get("name", "")).startswith("ProfilerStep#")),
        key=lambda e: e["ts"],
    )
    dropped = {id(e) for e in marks[:3]}
    data["traceEvents"] = [e for e in data["traceEvents"] if id(e) not in dropped]
    path = tmp_path / "last3.json"
    path.write_text(json.dumps(data))
    graph = read_trace([path])
    keep = replay_keep(graph)
    assert keep.steps == 3
    assert keep.error is not None and abs(keep.error) < 0.02
    assert keep.predicted_total_s > 1.9 * keep.predicted_step_s * keep.steps  # the whole trace
    p4d = load_system("p4d-24xlarge")
    assert p4d.accelerator is not None
    again = replay_reestimate(graph, p4d, p4d.accelerator)
    whole = replay_reestimate(read_trace([RECSYS]), p4d, p4d.accelerator)
    assert again.predicted_step_s == pytest.approx(whole.predicted_step_s, rel=0.03)
