"""Kernels on two compute lanes of a GPU share its SMs: the slowdowns re-measured on the A100
trace, the added seconds by hand, and both engines given the same durations."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from recsim.cost.sm_sharing import (
    SM_SHARING_SLOWDOWN,
    has_side_lanes,
    lane_sharing_slowdowns,
    shared_sm_seconds,
)
from recsim.graph.index import GraphIndex
from recsim.graph.ir import Compute, ExecutionGraph, Host, Node, Stream, Transfer
from recsim.graph.readers.kineto import parse_kineto

TRACE = Path(__file__).parents[1] / "data" / "traces" / "recsys_a100_8rank_rank3_control.json.gz"


def test_slowdowns_are_the_traces():
    with gzip.open(TRACE, "rt") as handle:
        trace = parse_kineto(TRACE, json.load(handle))
    measured = lane_sharing_slowdowns(trace)
    resident, newcomer = measured["resident"], measured["newcomer"]
    # (slowdown, kernels, overlap in microseconds): module docstring
    assert resident[1:] == (19, pytest.approx(289.0))
    assert newcomer[1:] == (37, pytest.approx(476.0))
    assert resident[0] == pytest.approx(SM_SHARING_SLOWDOWN["resident"], abs=0.005)
    assert newcomer[0] == pytest.approx(SM_SHARING_SLOWDOWN["newcomer"], abs=0.005)
    # Two kernels side by side do about 1.5 times the work of one: neither free nor serialized.
    assert 1.0 / resident[0] + 1.0 / newcomer[0] == pytest.approx(1.51, abs=0.01)


def _node(i: int, lane: int, op: object, stream: Stream = Stream.COMPUTE, rank: int = 0) -> Node:
    return Node(i, rank, f"n{i}", stream, op, (), lane)  # type: ignore[arg-type]


def test_added_seconds_by_hand():
    gemm = Compute("mm", 1.0, category="gemm", shapes=((4, 4), (4, 4)))
    add = Compute("add", 1.0, category="elementwise")
    copy = Transfer("h2d", 1e6, "h2d")
    nodes = [
        _node(0, 0, gemm),  # [0, 4): resident beside node 1, newcomer beside nothing
        _node(1, 2, add),  # [1, 3): a newcomer inside node 0
        _node(2, 0, add),  # [4, 6): starts with node 3 (a tie)
        _node(3, 1, gemm),  # [4, 5)
        _node(4, 0, copy, Stream.COPY),  # [0, 9): a copy shares no SMs
        _node(5, 0, Host("python", cpu_s=1.0), Stream.HOST),
        _node(6, 0, add, rank=1),  # rank 1's kernel beside rank 0's: another GPU
    ]
    index = GraphIndex.of(ExecutionGraph(2, nodes))
    assert has_side_lanes(index)
    start = np.array([0.0, 1.0, 4.0, 4.0, 0.0, 0.0, 0.0])
    finish = np.array([4.0, 3.0, 6.0, 5.0, 9.0, 1.0, 9.0])
    out = shared_sm_seconds(index, start, finish)
    assert out is not None
    r, n = SM_SHARING_SLOWDOWN["resident"] - 1.0, SM_SHARING_SLOWDOWN["newcomer"] - 1.0
    tie = (r + n) / 2.0
    assert out.tolist() == pytest.approx([2.0 * r, 2.0 * n, tie, tie, 0.0, 0.0, 0.0])


def test_one_lane_or_no_overlap_adds_nothing():
    add = Compute("add", 1.0, category="elementwise")
    one = GraphIndex.of(ExecutionGraph(1, [_node(0, 0, add), _node(1, 0, add)]))
    assert not has_side_lanes(one)
    assert shared_sm_seconds(one, np.array([0.0, 1.0]), np.array([1.0, 2.0])) is None
    two = GraphIndex.of(ExecutionGraph(1, [_node(0, 0, add), _node(1, 2, add)]))
    assert shared_sm_seconds(two, np.array([0.0, 1.0]), np.array([1.0, 2.0])) is None  # back to back


def test_both_engines_take_the_shared_durations_when_asked():
    # HugeCTR's first bottom-MLP weight gradients run on their lane beside the embedding backward
    # (``recsim.graph.build._dense_chain``): asked, both engines slow them and it by the same
    # seconds (``recsim.engine.simulate`` hands DES the stretched durations); the top MLP's, which
    # run between two matrix products on lane 0, overlap nothing and keep their time. Off (the
    # default) the lanes overlap for free.
    from recsim.api import simulate_run

    def run(fidelity: str, on: bool) -> tuple[float, dict[str, float]]:
        sim = simulate_run(
            "zionex",
            "dlrm-mlperf",
            nodes=1,
            precision="fp16",
            fidelity=fidelity,
            sm_sharing=on,
            # Without the workload's evaluation batch: HugeCTR's evaluation reader (24.2 GB a GPU,
            # counted since 2026-12-07) changes the plan on ZionEX's 40 GB A100s; the point is SM sharing.
            overrides=["workload.training.runtime=fused", "workload.training.eval_batch_size=null"],
        )
        assert sim.graph is not None and sim.schedule is not None
        s = sim.schedule
        last = {
            n.name[:-2]: s.finish_s[n.id] - s.start_s[n.id]
            for n in sim.graph.rank_nodes(0)
            if n.name.endswith("#2")
        }
        return sim.result.iteration_time_s, last

    off, off_d = run("analytic", False)
    for fidelity in ("analytic", "des"):
        step, d = run(fidelity, True)
        assert step > off
        assert step == pytest.approx(run("analytic", True)[0], rel=1e-9)
        for name in ("bottom0_wgrad_bwd", "bottom1_wgrad_bwd", "emb_backward:tbe[26 tables, replicated]"):
            assert d[name] > off_d[name] * 1.05, name
        for name in ("top0_wgrad_bwd", "top1_wgrad_bwd", "bottom2_wgrad_bwd"):
            assert d[name] == pytest.approx(off_d[name], rel=1e-12), name
    assert run("des", False)[0] == pytest.approx(off, rel=1e-9)
