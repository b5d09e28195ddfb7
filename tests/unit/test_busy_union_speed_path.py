"""``busy_time``'s union of each (rank, stream) class's intervals worked out in arrays (running
maxima and totals along the rows of a padded table) gives exactly what the walk it replaced gave
(kept below as the reference), keys in the same order: on random intervals with ties, zeros of
both signs, subnormal lengths, infinities and NaN (never busy), on random graphs and on chained
steps of real configurations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsim.engine.timeline import Window, _union_lengths, busy_time, step_window, timing_of
from recsim.graph.build import build_training_step
from recsim.graph.index import GraphIndex
from recsim.graph.schedule import Schedule, Timing, asap_timing
from recsim.graph.steps import ChainedGraph
from tests.unit.test_analytic_speed_paths import random_graph
from tests.unit.test_shared_memo_speed_paths import CONFIGS, _setup


def previous_busy_time(graph, schedule: Schedule, window: Window, timing: Timing | None = None):
    """``recsim.engine.timeline.busy_time`` before (verbatim)."""
    timing = timing_of(graph, schedule, timing)
    index = timing.index
    positions = window.positions_in(index)
    if positions is None:
        ids = np.fromiter(window.node_ids, dtype=np.int64, count=len(window.node_ids))
        positions = np.flatnonzero(np.isin(index.ids_array, ids))
    s, f = timing.start[positions], timing.finish[positions]
    taken = np.flatnonzero(f > s)
    busy = positions[taken]
    if busy.size == 0:
        return {}
    classes, class_of_queue = index.stream_classes
    cls = np.asarray(class_of_queue, dtype=np.intp)[index.queue_array[busy]]
    s, f = s[taken], f[taken]
    order = np.lexsort((f, s, cls))
    totals: dict[int, float] = {}
    current = -1
    total = cur_s = cur_f = 0.0
    for c, a, b in zip(cls[order].tolist(), s[order].tolist(), f[order].tolist(), strict=True):
        if c != current:
            if current >= 0:
                totals[current] = total + (cur_f - cur_s)
            current, total, cur_s, cur_f = c, 0.0, a, b
        elif a > cur_f:
            total += cur_f - cur_s
            cur_s, cur_f = a, b
        elif b > cur_f:
            cur_f = b
    totals[current] = total + (cur_f - cur_s)
    return {classes[c]: totals[c] for c in dict.fromkeys(cls.tolist())}


def _previous_union(cls: list[int], a: list[float], b: list[float]) -> dict[int, float]:
    """The walk alone, on sorted intervals."""
    totals: dict[int, float] = {}
    current = -1
    total = cur_s = cur_f = 0.0
    for c, x, y in zip(cls, a, b, strict=True):
        if c != current:
            if current >= 0:
                totals[current] = total + (cur_f - cur_s)
            current, total, cur_s, cur_f = c, 0.0, x, y
        elif x > cur_f:
            total += cur_f - cur_s
            cur_s, cur_f = x, y
        elif y > cur_f:
            cur_f = y
    if current >= 0:
        totals[current] = total + (cur_f - cur_s)
    return totals


def _same(x: float, y: float) -> bool:
    return np.float64(x).tobytes() == np.float64(y).tobytes()


@pytest.mark.parametrize("seed", range(40))
def test_union_lengths_match_the_walk_on_random_intervals(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 9))
    n = int(rng.integers(1, 80))
    grid = np.array([-1.0, -0.0, 0.0, 0.1, 0.3, 1e-3, 0.7, 1.0, 1e308, -math.inf, math.inf, 5e-324])
    starts = rng.choice(grid, n) if seed % 2 else np.round(rng.random(n), 2)
    ends = starts + (rng.choice(grid[3:8], n) if seed % 3 else rng.random(n))
    if seed % 5 == 0:
        ends = np.nextafter(starts, math.inf)  # the shortest lengths (subnormal near 0)
    cls = rng.integers(0, count, n)
    keep = ends > starts
    cls, starts, ends = cls[keep], starts[keep], ends[keep]
    order = np.lexsort((ends, starts, cls))
    cls, starts, ends = cls[order], starts[order], ends[order]
    got = _union_lengths(cls, starts, ends, count)
    want = _previous_union(cls.tolist(), starts.tolist(), ends.tolist())
    for c, value in want.items():
        assert _same(got[c], value), (c, got[c], value)


def test_union_lengths_of_nothing():
    empty = np.zeros(0)
    assert _union_lengths(np.zeros(0, dtype=np.intp), empty, empty, 3) == [0.0, 0.0, 0.0]


def _check(graph, index: GraphIndex, timing: Timing) -> None:
    schedule = timing.schedule()
    window = step_window(graph, schedule, timing)
    for given in (window, Window(window.start_s, window.end_s, window.node_ids)):
        got = busy_time(graph, schedule, given, timing)
        want = previous_busy_time(graph, schedule, given, timing)
        assert list(got) == list(want)
        assert all(_same(got[k], want[k]) for k in want)


@pytest.mark.parametrize("seed", range(10))
def test_busy_time_matches_the_previous_code_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    graph = random_graph(seed, ranks=2 + seed % 4)
    index = GraphIndex.of(graph)
    choices = np.array([0.0, -0.0, 1.0, 0.5, 1e-3, math.inf, math.nan, 2.5e-4])
    for durations in (rng.random(index.size), rng.choice(choices, index.size)):
        with np.errstate(invalid="ignore"):
            timing = asap_timing(index, durations)
        _check(graph, index, timing)


@pytest.mark.parametrize(("name", "nodes", "plan_name", "runtime", "fold"), CONFIGS)
def test_busy_time_matches_the_previous_code_on_chained_steps(name, nodes, plan_name, runtime, fold):
    _, workload, plan, memo, options = _setup(name, nodes, plan_name, runtime, fold)
    step = build_training_step(workload, plan, options, memo.shard_ops)
    chained = ChainedGraph.lazy(step, 3)
    index = chained.index()
    rng = np.random.default_rng(nodes)
    for durations in (rng.random(index.size) * 1e-3, np.round(rng.random(index.size), 1)):
        _check(chained, index, asap_timing(index, durations))
