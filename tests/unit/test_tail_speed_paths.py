"""The evaluation's tail: ``_window_ops`` worked out once for ``_host_bytes`` and
``_tier_activity``, and ``_host_bytes`` summing a list of repeated values. Each against the
previous code, to the bit."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from recsim.api import make_plan, prepare
from recsim.engine import simulate as sim
from recsim.engine.simulate import SimulationOptions, simulate_training
from recsim.engine.timeline import Window
from recsim.graph.index import GraphIndex
from recsim.graph.ir import Compute, Host, Node, Stream, Transfer, make_node


def _old_host_bytes(nodes: Sequence[Node], counts: Sequence[int]) -> float:
    """``_host_bytes`` before: a nested generator over the window's ops (with today's rule that a
    copy counts only where one end is host memory)."""
    ops = (node.op for node in nodes)
    return math.fsum(
        op.bytes
        for op, count in zip(ops, counts, strict=True)
        if isinstance(op, Host)
        or (isinstance(op, Transfer) and "host" in (op.src.partition(":")[0], op.dst.partition(":")[0]))
        for _ in range(count)
    )


def test_copies_between_gpus_move_no_host_memory_bytes() -> None:
    # A peer upload and a traced device-to-device copy never reach the host's DRAM channels (a
    # reviewer found them charged as host DRAM energy); host <-> HBM copies and host work do.
    ops: list = [
        Transfer("peer", "hbm", 7.0),
        Transfer("hbm", "hbm", 11.0),
        Transfer("hbm", "peer:3", 13.0),
        Transfer("host", "hbm", 2.0),
        Transfer("hbm", "host", 3.0),
        Host("data_loading", 5.0),
    ]
    assert sim._host_bytes((ops, [1, 1, 1, 2, 1, 1])) == 2.0 * 2 + 3.0 + 5.0


def test_host_bytes_sums_the_same_values_to_the_bit() -> None:
    rng = random.Random(7)
    for trial in range(200):
        nodes: list[Node] = []
        counts: list[int] = []
        for k in range(rng.randrange(0, 60)):
            size = rng.choice([0.0, -0.0, 1e-300, 1e300, 3.0, 0.1]) * rng.random() ** rng.choice([1, 8])
            size *= rng.choice([1.0, 1e16, -1.0])
            kind = rng.randrange(4)
            # Copies between GPUs too (a peer upload, a traced device-to-device copy), which move no
            # host memory bytes.
            ends = rng.choice(
                [("host", "hbm"), ("hbm", "host"), ("peer", "hbm"), ("hbm", "hbm"), ("hbm", "peer:3")]
            )
            op = (
                Host("data_loading", size)
                if kind == 0
                else Transfer(*ends, size)
                if kind in (1, 2)
                else Compute("x", flops=1.0, bytes_read=size)
            )
            nodes.append(make_node(k, 0, f"n{k}", Stream.COPY, op, (), 0, "input"))
            counts.append(rng.choice([0, 1, 2, 3, 27, 101]))
        # The same values in the same order: the same sum, or the same overflow.
        window_ops = ([n.op for n in nodes], counts)
        new = _outcome(lambda ops=window_ops: sim._host_bytes(ops))  # type: ignore[misc]
        old = _outcome(lambda given=(nodes, counts): _old_host_bytes(*given))  # type: ignore[misc]
        assert new == old, trial


def _old_window_ops(
    index: GraphIndex, window: Window, classes: Mapping[int, Sequence[int]]
) -> tuple[list[Node], list[int]]:
    """``_window_ops`` before the step graph's columns: the window's step nodes (made)."""
    positions = window.positions_in(index)
    if positions is None or index.copies is None:
        position, source = index.position, index.source
        nodes = [source(position[i]) for i in window.node_ids]
        counts = [1] * len(nodes)
    else:
        nodes = list(index.copies[0])
        counts = np.bincount(positions % len(nodes), minlength=len(nodes)).tolist()
    if classes:
        counts = [
            c * len(classes[n.rank]) if n.rank in classes else c for n, c in zip(nodes, counts, strict=True)
        ]
    return nodes, counts


def _outcome(fn: Callable[[], float]) -> str:
    try:
        return repr(fn())
    except OverflowError as exc:
        return f"OverflowError: {exc}"


CASES: list[tuple[str, str, int, str, dict[str, Any]]] = [
    ("dgx-h100", "dlrm-dcnv2", 16, "table_wise", {"fold_ranks": True}),
    ("dgx-h100", "dlrm-dcnv2", 4, "table_wise", {}),
    ("dgx-h100", "dlrm-dcnv2", 4, "table_wise", {"fidelity": "des", "steps": 1}),
    ("dgx-a100", "rmc1", 2, "data_parallel", {"fold_ranks": True}),
    # Lookups the CPUs run (``ddr``) and UVM ones: ``_tier_activity``'s whole path.
    ("dgx-a100", "rmc1", 1, "table_wise", {"tier": "ddr"}),
    ("dgx-a100", "rmc1", 2, "table_wise", {"tier": "uvm_caching:0.2", "fold_ranks": True}),
]


@pytest.mark.parametrize(("system_name", "workload_name", "nodes", "strategy", "extra"), CASES)
def test_the_window_ops_are_shared_and_the_tail_is_the_previous_one(
    monkeypatch: pytest.MonkeyPatch,
    system_name: str,
    workload_name: str,
    nodes: int,
    strategy: str,
    extra: dict[str, Any],
) -> None:
    system, workload = prepare(system_name, workload_name, nodes=nodes)
    plan = make_plan(strategy, workload, system)
    extra = dict(extra)
    tier = extra.pop("tier", None)
    if tier is not None:
        plan = replace(plan, shards=tuple(replace(s, tier=tier) for s in plan.shards))
    seen: list[tuple[str, Any, Any]] = []
    host_bytes, tier_activity, window_ops_of = sim._host_bytes, sim._tier_activity, sim._window_ops
    # What the evaluation works the window's ops out of (the spies check against the old path).
    asked: list[tuple[Any, Any, Mapping[int, Sequence[int]]]] = []

    def spy_window_ops(index: Any, window: Any, classes: Mapping[int, Sequence[int]]) -> Any:
        asked.append((index, window, classes))
        return window_ops_of(index, window, classes)

    def spy_host(window_ops: Any) -> float:
        out = host_bytes(window_ops)
        # The previous code: its own ``_window_ops`` (of nodes) and the nested generator.
        assert window_ops is not None
        index, window, classes = asked[-1]
        fresh = window_ops_of(index, window, classes)
        assert fresh[0] == window_ops[0] and fresh[1] == window_ops[1]
        nodes, counts = _old_window_ops(index, window, classes)
        assert all(a is n.op for a, n in zip(window_ops[0], nodes, strict=True)) and counts == window_ops[1]
        assert repr(out) == repr(_old_host_bytes(nodes, counts))
        seen.append(("host", out, None))
        return out

    def spy_tiers(timing: Any, window: Any, cost: Any, system: Any, window_ops: Any) -> Any:
        assert timing.index is not None
        out = tier_activity(timing, window, cost, system, window_ops)
        own = window_ops_of(*asked[-1])  # its own window ops
        assert out == tier_activity(timing, window, cost, system, own)
        seen.append(("tiers", out, None))
        return out

    monkeypatch.setattr(sim, "_window_ops", spy_window_ops)
    monkeypatch.setattr(sim, "_host_bytes", spy_host)
    monkeypatch.setattr(sim, "_tier_activity", spy_tiers)
    result = simulate_training(system, workload, plan, SimulationOptions(**extra)).result
    assert result.status == "ok"
    assert [kind for kind, _, _ in seen] == ["host", "tiers"]
