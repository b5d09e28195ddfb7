"""Sweep specs: strict one-line errors, exact grid enumeration, seeded random and NSGA-II searches."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from recsim.errors import ConfigError
from recsim.explore.points import (
    config_key,
    enumerate_points,
    grid_points,
    non_dominated_sort,
    nsga2,
    point_config,
    set_text,
)
from recsim.explore.records import PointRecord
from recsim.explore.spec import SweepSpec, load_sweep
from tests.conftest import FIXTURES

BASE = """\
kind: sweep
name: t
base: {system: tiny, workload: tiny-dlrm, nodes: 1}
objectives: {throughput_samples_per_s: max, avg_power_w: min}
"""
#: The base with a batch that 4 nodes of 4 GPUs can share (tiny-dlrm's 8 is for 1 or 2 nodes).
BASE16 = BASE.replace("nodes: 1}", "nodes: 1, batch_size: 16}")


@pytest.fixture(autouse=True)
def _libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSIM_HARDWARE_PATH", str(FIXTURES / "minilib"))
    monkeypatch.setenv("RECSIM_WORKLOAD_PATH", str(FIXTURES / "workloads"))


def spec_of(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> SweepSpec:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return load_sweep(path, overrides)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        spec_of(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("extra", "line", "expected"),
    [
        ("axez: {plan: [a]}\n", 5, "axez: unknown key 'axez'; did you mean 'axes'?"),
        ("axes:\n  plan: [table_wise]\n  node.accelerators.cont: [1]\n", 7, "axes.node.accelerators.cont:"),
        ("axes:\n  node.nics.device: [nope-nic]\n", 6, "axes.node.nics.device: unknown nic 'nope-nic'"),
        ("axes:\n  plan: [table_wise, row_wize]\n", 6, "axes.plan[1]: unknown plan strategy 'row_wize'"),
        ("axes:\n  workload.tables[0].rowz: [1]\n", 6, "did you mean 'rows'?"),
        ("axes:\n  planner.finalist: [1]\n", 6, "did you mean 'finalists'?"),
        ("zip:\n  - {nodes: [1, 2], batch_size: [8]}\n", 6, "zip[0]: the axes of a zip group must have"),
        ("search: {method: random}\n", 5, "search.samples: missing required key 'samples'"),
        ("search: {method: bayes}\n", 5, "search.method: expected one of grid, random, nsga2, got 'bayes'"),
        ("search: {samples: 3}\n", 5, "search.method: missing required key 'method'"),
        ("constraints: [memory_fits, 'iteration_time <= 1']\n", 5, "did you mean 'iteration_time_s'?"),
        ("constraints: ['iteration_time_s =< 1']\n", 5, "constraints[0]: constraint"),
        ("axes: {nodes: [1]}\nfilters: [{path: node, op: '<=', value: 2}]\n", 6, "did you mean 'nodes'?"),
        ("axes: {fidelity: [analytic, des]}\n", 5, "axes.fidelity: fidelity is varied with 'stages:'"),
        ("stages: [{fidelity: analytic, top: 3}]\n", 5, "'top' applies to later stages"),
        ("axes: {precision: [fp16, fp17]}\n", 5, "unknown precision 'fp17'"),
        ("axes: {nodes: [1, 0]}\n", 5, "expected positive integers, got 0"),
        ("axes: {nodes: []}\n", 5, "axes.nodes:"),
        # Filters compare like with like (a tester's finds): text against numbers dropped every point.
        ("axes: {nodes: [1, 2]}\nfilters: [{path: nodes, op: '<=', value: '4'}]\n", 6, "'4' (text) does not"),
        (
            "axes: {plan: [table_wise, row_wise]}\nfilters: [{path: plan, op: '<', value: row_wise}]\n",
            6,
            "orders",
        ),
        ("axes: {plan: [table_wise]}\nfilters: [{path: nodes, op: '<=', value: 2}]\n", 6, "not varied by an"),
        ("axes: {nodes: [1, 2]}\nfilters: [{path: nodes, op: '>', value: 8}]\n", 6, "no point of the grid"),
        ("axes: {cluster.scale_out.oversubscription: [1, 1.0]}\n", 5, "given twice (1 is the same)"),
        # A batch the base's ranks cannot share is a user error, as for `recsim run` (a tester's
        # find: the point was an infeasible row and the sweep exited 0).
        ("axes: {batch_size: [8, 6]}\n", 5, "axes.batch_size[1]: global batch 6 is not divisible by 4 ranks"),
        ("axes: {nodes: [1, 3]}\n", 5, "axes.nodes[1]: global batch 8 is not divisible by 12 ranks"),
        # Accepted nonsense (a tester's finds): stages from the costlier engine to the cheaper, an
        # axis that only labels, a boolean objective.
        (
            "stages: [{fidelity: des}, {fidelity: analytic, top: 2}]\n",
            5,
            "stages: stages go from the cheaper fidelity to the costlier (analytic then des), got des then",
        ),
        ("axes: {name: [a, b]}\n", 5, "axes.name: 'name' is a label, not a setting"),
        ("axes:\n  workload.tables[0].name: [a, b]\n", 6, "is a label, not a setting"),
        ("axes: {node.accelerators.device.description: [a, b]}\n", 5, "is a label, not a setting"),
        ("axes: {kind: [system]}\n", 5, "axes.kind: 'kind' is a label"),
    ],
)
def test_strict_errors_name_file_line_and_key(tmp_path, extra, line, expected):
    message = error_of(tmp_path, BASE + extra)
    assert message.startswith(f"{tmp_path / 'sweep.yaml'}:{line}: "), message
    assert expected in message, message


def test_a_base_batch_an_axis_replaces_need_not_divide(tmp_path):
    text = BASE.replace("nodes: 1}", "nodes: 1, batch_size: 6}")
    assert spec_of(tmp_path, text + "axes: {batch_size: [8, 16]}\n").axes == {"batch_size": [8, 16]}
    message = error_of(tmp_path, text)
    assert ":3: base: global batch 6 is not divisible by 4 ranks" in message, message


def test_a_boolean_objective_is_refused(tmp_path):
    text = BASE.replace("{throughput_samples_per_s: max, avg_power_w: min}", "{memory_fits: max}")
    message = error_of(tmp_path, text)
    assert ":4: objectives.memory_fits: memory_fits is true or false, not a figure to maximise" in message
    assert "make it a constraint" in message, message


def test_objective_and_base_errors(tmp_path):
    text = "kind: sweep\nname: t\nbase: {system: tiny, workload: tiny-dlrm}\nobjectives: {throughput: max}\n"
    assert ":4: objectives.throughput: unknown metric 'throughput'" in error_of(tmp_path, text)
    text = (
        "kind: sweep\nname: t\nbase: {system: tinyy, workload: tiny-dlrm}\nobjectives: {avg_power_w: min}\n"
    )
    assert ":3: base: unknown system 'tinyy'; did you mean 'tiny'" in error_of(tmp_path, text)
    assert "kind: expected 'sweep'" in error_of(tmp_path, BASE.replace("kind: sweep", "kind: sweeep"))
    assert "missing required key 'objectives'" in error_of(
        tmp_path, "kind: sweep\nname: t\nbase: {system: a, workload: b}\n"
    )


def test_overrides_edit_the_spec_or_every_point(tmp_path):
    spec = spec_of(
        tmp_path,
        BASE,
        (
            "axes.node.accelerators.count=[1,2]",
            "workload.training.optimizer=sgd",
            "search.method=random",
            "search.samples=1",
        ),
    )
    assert spec.axes == {"node.accelerators.count": [1, 2]}
    assert spec.base.overrides == ["workload.training.optimizer=sgd"]
    assert spec.search.method == "random"
    with pytest.raises(ConfigError, match=r"--set search.samples=0: search.samples: must be >= 1"):
        spec_of(tmp_path, BASE, ("search.method=random", "search.samples=0"))
    # A tag (the union's ``method``) that is unknown or removed is the --set's, at the tag's key.
    with pytest.raises(
        ConfigError, match=r"^--set search.method=bayes: search.method: expected one of grid, random"
    ):
        spec_of(tmp_path, BASE, ("search.method=bayes",))
    with pytest.raises(ConfigError, match=r"^--set search.method=null: search.method: missing required key"):
        spec_of(tmp_path, BASE + "search: {method: grid}\n", ("search.method=null",))


def test_spec_key_is_stable_and_tracks_changes(tmp_path):
    a = spec_of(tmp_path, BASE + "axes: {nodes: [1, 2]}\n")
    b = spec_of(tmp_path, BASE + "axes:\n  nodes: [1, 2]\n")
    c = spec_of(tmp_path, BASE + "axes: {nodes: [2, 1]}\n")
    assert a.spec_key == b.spec_key != c.spec_key
    assert len(a.spec_key) == 16
    assert SweepSpec.model_validate(a.canonical()).spec_key == a.spec_key


def test_spec_key_keeps_the_axis_order_and_the_objective_order_where_it_picks_points(tmp_path):
    # A tester's find: the key hashed JSON with sorted keys, so a spec with its axes swapped had the
    # same key, and a resume with it was accepted though every grid index (and a random or NSGA-II
    # search's draws) now named other points.
    xy = "axes:\n  plan: [table_wise, row_wise]\n  node.accelerators.count: [1, 2]\n"
    yx = "axes:\n  node.accelerators.count: [1, 2]\n  plan: [table_wise, row_wise]\n"
    assert spec_of(tmp_path, BASE + xy).spec_key == spec_of(tmp_path, BASE + xy).spec_key
    assert spec_of(tmp_path, BASE + xy).spec_key != spec_of(tmp_path, BASE + yx).spec_key
    swapped = BASE.replace(
        "{throughput_samples_per_s: max, avg_power_w: min}",
        "{avg_power_w: min, throughput_samples_per_s: max}",
    )
    assert swapped != BASE
    # A grid evaluates the same points whichever objective comes first: the same store.
    assert spec_of(tmp_path, BASE + xy).spec_key == spec_of(tmp_path, swapped + xy).spec_key
    # An NSGA-II search (or a stage's top) picks points by them: another store.
    nsga = "search: {method: nsga2, population: 4, generations: 1}\n"
    assert spec_of(tmp_path, BASE + xy + nsga).spec_key != spec_of(tmp_path, swapped + xy + nsga).spec_key


def test_spec_changes_say_what_differs(tmp_path):
    from recsim.explore.spec import spec_changes

    xy = spec_of(
        tmp_path, BASE + "axes:\n  plan: [table_wise, row_wise]\n  node.accelerators.count: [1, 2]\n"
    )
    yx = spec_of(
        tmp_path, BASE + "axes:\n  node.accelerators.count: [1, 2]\n  plan: [table_wise, row_wise]\n"
    )
    assert spec_changes(xy.to_text(), xy) == []
    assert spec_changes(xy.to_text(), yx) == [
        "axes: in another order (stored: plan, node.accelerators.count; "
        "this spec: node.accelerators.count, plan)"
    ]
    other = spec_of(tmp_path, BASE + "axes:\n  plan: [table_wise]\n", ("base.nodes=2",))
    assert spec_changes(xy.to_text(), other) == [
        "base.nodes: 1 -> 2",
        'axes.plan: ["table_wise", "row_wise"] -> ["table_wise"]',
        "axes.node.accelerators.count: removed (stored: [1, 2])",
    ]
    assert spec_changes("not: [valid", xy) == []


def test_a_point_key_does_not_depend_on_the_order_of_its_set_texts(tmp_path):
    # The same point reached through axes in another order is the same point (one key); texts of
    # one setting, or of a setting inside another, keep their order (it decides what they make).
    from recsim.explore.points import canonical_overrides

    xy = spec_of(
        tmp_path,
        BASE + "axes:\n  node.accelerators.count: [1, 2]\n  cluster.scale_out.oversubscription: [1.0, 2.0]\n",
    )
    yx = spec_of(
        tmp_path,
        BASE + "axes:\n  cluster.scale_out.oversubscription: [1.0, 2.0]\n  node.accelerators.count: [1, 2]\n",
    )
    keys = {
        (p.values["node.accelerators.count"], p.values["cluster.scale_out.oversubscription"]): p.key
        for p in grid_points(xy)
    }
    again = {
        (p.values["node.accelerators.count"], p.values["cluster.scale_out.oversubscription"]): p.key
        for p in grid_points(yx)
    }
    assert keys == again and len(set(keys.values())) == 4
    assert canonical_overrides(["b=1", "a=2", "b=3"]) == ["a=2", "b=1", "b=3"]
    assert canonical_overrides(["system.b=1", "a=2"]) == ["a=2", "system.b=1"]
    assert canonical_overrides(["a.b=1", "a={b: 2}"]) == ["a.b=1", "a={b: 2}"]
    assert canonical_overrides(["tables[0].rows=1", "tables.0={rows: 2}"]) == [
        "tables[0].rows=1",
        "tables.0={rows: 2}",
    ]


GRID = (
    BASE
    + """\
axes:
  plan: [table_wise, row_wise]
  node.accelerators.count: [1, 2, 4]
zip:
  - {nodes: [1, 2], batch_size: [8, 16]}
filters:
  - {path: node.accelerators.count, op: "!=", value: 4}
  - {path: plan, op: in, value: [table_wise, row_wise]}
"""
)


def test_grid_is_product_times_zip_in_order_minus_filtered(tmp_path):
    spec = spec_of(tmp_path, GRID)
    assert spec.grid_size == 2 * 3 * 2
    points = grid_points(spec)
    expected = [
        (i, {"plan": p, "node.accelerators.count": c, "nodes": n, "batch_size": b})
        for i, (p, c, (n, b)) in enumerate(
            itertools.product(["table_wise", "row_wise"], [1, 2, 4], [(1, 8), (2, 16)])
        )
        if c != 4
    ]
    assert [(p.index, p.values) for p in points] == expected
    assert len({p.key for p in points}) == len(points) == 8
    first = points[0]
    assert first.config["overrides"] == ["node.accelerators.count=1"]
    assert first.config["plan"] == "table_wise" and first.config["batch_size"] == 8
    assert first.key == config_key(point_config(spec, first.values))


def test_set_text_round_trips_values():
    from recsim.config.loader import Override

    for value in ["roce-100g", "2 TB/s", "8", "true", "a,b", 3, 2.5, True, ["hbm", "uvm"]]:
        assert Override.parse(set_text("x.y", value)).value == value


def test_random_is_seeded_without_replacement(tmp_path):
    spec = spec_of(tmp_path, GRID + "search: {method: random, samples: 5, seed: 3}\n")
    a = enumerate_points(spec)
    b = enumerate_points(spec)
    assert [p.key for p in a] == [p.key for p in b]
    assert len({p.key for p in a}) == 5
    grid = {p.key for p in grid_points(spec)}
    assert {p.key for p in a} <= grid  # filters respected
    other = enumerate_points(spec_of(tmp_path, GRID + "search: {method: random, samples: 5, seed: 4}\n"))
    assert [p.key for p in other] != [p.key for p in a]
    everything = enumerate_points(spec_of(tmp_path, GRID + "search: {method: random, samples: 50}\n"))
    assert {p.key for p in everything} == grid


def test_random_sampling_of_a_huge_grid(tmp_path):
    # A 10^7-point grid (not resolved: only enumeration is tested) is sampled axis by axis.
    spec = spec_of(tmp_path, BASE + "axes: {nodes: [1, 2]}\nsearch: {method: random, samples: 3, seed: 1}\n")
    big = spec.model_copy(update={"axes": {f"workload.x{i}": list(range(10)) for i in range(7)}})
    assert big.grid_size == 10**7
    points = enumerate_points(big)
    assert len(points) == 3 == len({p.key for p in points})
    assert [p.index for p in points] == sorted(p.index for p in points)


def _toy(genomes):
    # Two objectives on a 30 x 30 grid (both minimised): the front is y == 15.
    return [(float(x), float(29 - x) + abs(y - 15) * 2.0) for x, y in genomes]


def _hypervolume(points, ref=(30.0, 60.0)):
    pts = sorted(p for p in points)
    volume, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            volume += (ref[0] - x) * (best_y - y)
            best_y = y
    return volume


def test_nsga2_is_deterministic_and_improves_the_front():
    calls: list[list[tuple[int, ...]]] = []

    def evaluate(genomes):
        calls.append(list(genomes))
        return _toy(genomes)

    seen = nsga2([30, 30], evaluate, population=8, generations=8, rng=np.random.default_rng(7))
    again = nsga2([30, 30], _toy, population=8, generations=8, rng=np.random.default_rng(7))
    assert list(seen) == list(again) and seen == again
    evaluated = [g for batch in calls for g in batch]
    assert len(evaluated) == len(set(evaluated))  # never evaluates a genome twice
    initial = np.array(_toy(calls[0]))
    final = np.array(list(seen.values()))
    front0 = initial[non_dominated_sort(initial)[0]]
    front = final[non_dominated_sort(final)[0]]
    assert _hypervolume(map(tuple, front)) > _hypervolume(map(tuple, front0))
    # The returned front is non-dominated.
    for a, b in itertools.permutations(front, 2):
        assert not (np.all(a <= b) and np.any(a < b))
    # It has found points on the true front (y == 15).
    assert any(g[1] == 15 for g, fit in seen.items() if fit is not None)


def test_nsga2_treats_infeasible_points_as_worst():
    def evaluate(genomes):
        return [None if x < 10 else (float(x), float(-y)) for x, y in genomes]

    seen = nsga2([20, 5], evaluate, population=6, generations=4, rng=np.random.default_rng(0))
    assert any(fit is None for fit in seen.values())
    assert any(fit is not None for fit in seen.values())


def test_nsga2_with_a_population_larger_than_the_space_evaluates_it_once_and_stops():
    # A population of 10^8 over 2 x 3 genomes drew 20 x 10^8 children per generation, each seen
    # before: a sweep that never ended. Now the first generation is the whole space, and it stops.
    calls: list[list[tuple[int, ...]]] = []

    def evaluate(genomes):
        calls.append(list(genomes))
        return [(float(x), float(y)) for x, y in genomes]

    seen = nsga2([2, 3], evaluate, population=10**8, generations=10**8, rng=np.random.default_rng(0))
    assert len(calls) == 1 and sorted(seen) == [(x, y) for x in range(2) for y in range(3)]


def test_record_fitness(tmp_path):
    from recsim.explore.points import record_fitness

    rec = PointRecord(0, "k", {}, "analytic", "ok", "", {"a": 2.0, "b": 3.0}, {}, 0.0)
    assert record_fitness(rec, {"a": "max", "b": "min"}) == (-2.0, 3.0)
    assert record_fitness(rec, {"c": "max"}) is None
    bad = PointRecord(0, "k", {}, "analytic", "infeasible", "x", {"a": 2.0}, {}, 0.0)
    assert record_fitness(bad, {"a": "max"}) is None


def test_record_round_trip():
    rec = PointRecord(
        3, "abc", {"nodes": 2, "x.y": "z"}, "des", "ok", "", {"m": float("nan"), "n": 1}, {"plan": "p"}, 0.5
    )
    back = PointRecord.from_json(rec.to_json())
    assert back.metrics == {"m": None, "n": 1}
    assert back.same_outcome(PointRecord.from_json(rec.to_json()))
    row = rec.to_row()
    assert row["values.x.y"] == "z" and row["n"] == 1 and row["stage"] == "des"
    assert isinstance(row["config"], str)


def test_filters_compare_quantities_by_value_and_read_an_axis_under_either_name(tmp_path):
    """A tester's finds: "900 GB/s" <= "2 TB/s" compared as text (900 dropped, 1200 kept), and a
    filter on ``nodes`` under a ``cluster.nodes`` axis read the base's value."""
    spec = spec_of(
        tmp_path,
        BASE
        + "axes: {node.accelerators.device.hbm.bandwidth: ['900 GB/s', '1.25 TB/s', '1000 GB/s']}\n"
        + "filters: [{path: node.accelerators.device.hbm.bandwidth, op: '<=', value: '1.1 TB/s'}]\n",
    )
    assert [p.values["node.accelerators.device.hbm.bandwidth"] for p in grid_points(spec)] == [
        "900 GB/s",
        "1000 GB/s",
    ]
    spec = spec_of(
        tmp_path, BASE16 + "axes: {cluster.nodes: [1, 2, 4]}\nfilters: [{path: nodes, op: '<=', value: 2}]\n"
    )
    assert [p.values["cluster.nodes"] for p in grid_points(spec)] == [1, 2]
    spec = spec_of(
        tmp_path, BASE16 + "axes: {nodes: [1, 2, 4]}\nfilters: [{path: nodes, op: in, value: [1.0, 4]}]\n"
    )
    assert [p.values["nodes"] for p in grid_points(spec)] == [1, 4]


def test_a_set_of_a_base_value_an_axis_varies_is_refused(tmp_path):
    """``--set base.nodes=4`` (or the global ``--nodes 4``) under a ``nodes`` axis: every point's
    value won, silently (a tester's find); a --set of the axis's own path was refused already."""
    with pytest.raises(ConfigError, match=r"'nodes' is also varied at axes\.cluster\.nodes"):
        spec_of(tmp_path, BASE + "axes: {cluster.nodes: [1, 2]}\n", ("base.nodes=4",))
    # In the spec file itself the base value is only a default: BASE sets nodes: 1.
    assert spec_of(tmp_path, BASE + "axes: {nodes: [1, 2]}\n").grid_size == 2


PAIR = """\
kind: sweep
name: pair
base: {system: dgx-h100, workload: dlrm-benchmark, batch_size: 2048, plan: table_wise}
axes:
  node.nics.device: [roce-200g, ib-ndr-400g]
  cluster.scale_out.switch: [tomahawk3-64x200g, quantum2-qm9700]
objectives: {throughput_samples_per_s: max, avg_power_w: min}
"""


def test_a_value_that_goes_with_another_axiss_value_is_kept(tmp_path):
    """A tester's find: a RoCE NIC axis beside a switch axis of an Ethernet and an InfiniBand switch
    was refused, as the base's switch is InfiniBand; the NIC goes with the Ethernet switch (the
    RoCE NIC on the InfiniBand switch is an ``error`` row, ``test_explore_sweep``)."""
    spec = spec_of(tmp_path, PAIR)
    assert spec.axes["node.nics.device"] == ["roce-200g", "ib-ndr-400g"]
    # A zip row too: (roce-200g, row_wise) fails with the base's switch, and goes with the other.
    zipped = (
        PAIR.replace("  node.nics.device: [roce-200g, ib-ndr-400g]\n", "")
        + "zip:\n  - {node.nics.device: [ib-ndr-400g, roce-200g], plan: [table_wise, row_wise]}\n"
    )
    assert len(spec_of(tmp_path, zipped).zipped) == 1
    # A value that goes with no value of the other axes is refused, with the base's reason.
    alone = PAIR.replace("[tomahawk3-64x200g, quantum2-qm9700]", "[quantum2-qm9700]")
    message = error_of(tmp_path, alone)
    assert ":5: axes.node.nics.device: " in message and "'roce-200g' is a roce NIC" in message, message


@pytest.mark.parametrize("text", ["iteration_time_s <<= 3", "iteration_time_s => 3", "avg_power_w =< 5e3"])
def test_a_mistyped_constraint_operator_is_named(text):
    # A tester's find: "<<= 3" was read as "<" and the value "<= 3" ("'<' needs a number").
    from recsim.explore.spec import parse_constraint

    with pytest.raises(ValueError, match=r"unknown operator '[<>=!]+' \(use one of <, <=, >, >=, ==, !=\)"):
        parse_constraint(text)


@pytest.mark.parametrize(
    ("extra", "overrides", "expected"),
    [
        ("seed: -1\nsearch: {method: random, samples: 2}\n", (), "sweep.yaml:6: seed: must be >= 0, got -1"),
        ("search: {method: random, samples: 2, seed: -3}\n", (), "sweep.yaml:6: search.seed: must be >= 0"),
        ("search: {method: nsga2, seed: -5}\n", (), "sweep.yaml:6: search.seed: must be >= 0, got -5"),
        ("search: {method: random, samples: 2}\n", ("seed=-2",), "--set seed=-2: seed: must be >= 0"),
    ],
)
def test_a_negative_seed_is_refused_at_its_key(
    tmp_path: Path, extra: str, overrides: tuple[str, ...], expected: str
) -> None:
    # numpy's generators refuse a negative seed: it crashed the sweep with a traceback after
    # making its store (a tester's find).
    with pytest.raises(ConfigError) as info:
        spec_of(tmp_path, BASE + "axes: {nodes: [1, 2]}\n" + extra, overrides)
    assert expected in str(info.value)


def test_a_base_batch_that_no_axis_value_splits_is_the_base_s_fault(tmp_path: Path) -> None:
    # A tester's find: base.batch_size 65537 was blamed on the first axis ("axes.nodes: global batch
    # 65537 is not divisible by 8 ranks"). The base's key and line are named now.
    text = (
        "kind: sweep\nname: t\nbase:\n  system: tiny\n  workload: tiny-dlrm\n  batch_size: 17\n"
        "axes: {nodes: [1, 2], plan: [table_wise, row_wise]}\n"
        "objectives: {throughput_samples_per_s: max}\n"
    )
    message = error_of(tmp_path, text)
    assert message.startswith(
        f"{tmp_path / 'sweep.yaml'}:6: base.batch_size: global batch 17 is not divisible"
    )
    assert message.endswith("(and with every value of axes.nodes)")
    # An axis value that splits it is kept; the one that does not is the axis's, as before.
    message = error_of(tmp_path, text.replace("batch_size: 17", "batch_size: 4").replace("[1, 2]", "[1, 3]"))
    assert "axes.nodes[1]: global batch 4 is not divisible" in message


def test_a_misspelt_axis_beside_an_unsplittable_base_batch_is_the_axis_s_fault(tmp_path: Path) -> None:
    # A reviewer's find: with base.batch_size 17 (no axis value splits it) a misspelt axis key was
    # reported as the base's batch; the typo is what to mend first.
    text = (
        "kind: sweep\nname: t\nbase:\n  system: tiny\n  workload: tiny-dlrm\n  batch_size: 17\n"
        "axes: {node.acelerators.count: [4, 8]}\n"
        "objectives: {throughput_samples_per_s: max}\n"
    )
    message = error_of(tmp_path, text)
    assert (
        "axes.node.acelerators.count: unknown key 'acelerators'; did you mean 'accelerators'?" in message
    ), message
    assert "base.batch_size" not in message
