"""The points of a sweep: grid enumeration, seeded random sampling, and an NSGA-II search.

The grid has one dimension per product axis and one per zip group (the axes of a group move
together), in the spec's order; a point is a *genome*, one value index per dimension, and its
``index`` is the genome read as a mixed-radix number (first dimension slowest), so it is stable for a
spec whatever the search. A point's ``config`` is what ``recsim run`` would be given (system,
workload, nodes, batch size, precision, plan, comm dtype, ``--set`` texts: the base's, then one per
set-path axis in axis order); its ``key`` is the first 16 hex digits of the SHA-256 of that config's
canonical JSON (the ``--set`` texts in ``canonical_overrides`` order), so two points that would run
the same thing share a key. The fidelity is not part
of the key: the store keys records by (key, stage).

Searches:

- ``grid``: every point in index order, minus those a filter rejects;
- ``random``: ``samples`` points drawn without replacement from the filtered grid with a seeded
  ``numpy`` generator (the grid is enumerated when it has at most ``ENUMERATE_LIMIT`` points; a larger
  one is sampled one dimension at a time, rejecting repeats and filtered points), in index order;
- ``nsga2``: ``nsga2()`` below, a small NSGA-II (Deb et al. 2002) over the discrete values:
  non-dominated sorting with constraint domination (feasible before infeasible), crowding distance,
  binary tournaments, uniform crossover and per-gene mutation to another value. It asks a callback
  to evaluate each generation's new genomes (never one it evaluated before), so a sweep can run a
  generation on its executor and a resumed sweep replays the same trajectory from the store.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from recsim.explore.spec import SPECIAL_KEYS, SweepSpec, config_path, filter_axis, special_key_of

if TYPE_CHECKING:
    from recsim.explore.records import PointRecord

ENUMERATE_LIMIT = 200_000

Genome = tuple[int, ...]


@dataclass(frozen=True)
class Point:
    """One point of a sweep: where it is in the grid, its axis values, resolved config and key."""

    index: int
    values: dict[str, Any]
    key: str
    config: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- one point


def set_text(path: str, value: Any) -> str:
    """``path=value`` as a ``--set`` text whose value parses back to ``value``."""
    if isinstance(value, str):
        try:
            plain = yaml.safe_load(value) == value
        except yaml.YAMLError:
            plain = False
        if plain and value.strip() == value and "," not in value:
            return f"{path}={value}"
    return f"{path}={json.dumps(value)}"


def point_config(spec: SweepSpec, values: dict[str, Any]) -> dict[str, Any]:
    """The resolved config of the point with ``values`` over the spec's base (JSON-able)."""
    base = spec.base
    config: dict[str, Any] = {
        "system": base.system,
        "workload": base.workload,
        "mode": base.mode,
        "nodes": base.nodes,
        "batch_size": base.batch_size,
        "precision": base.precision,
        "plan": base.plan,
        "comm_dtype": base.comm_dtype,
        "steps": base.steps,
    }
    overrides = list(base.overrides)
    for path, value in values.items():
        if path in SPECIAL_KEYS:
            config[path] = value
        else:
            overrides.append(set_text(path, value))
            # An axis over a special key's setting by its path (``cluster.nodes``, the batch, the
            # precision): the base's value is only a default (a run refuses both at once, as
            # ``--nodes`` with ``--set cluster.nodes``).
            shadowed = special_key_of(path)
            if shadowed is not None:
                config[shadowed] = None
    # A setting before the settings inside it (``node.accelerators.device`` before its
    # ``.hbm.bandwidth``), whatever the order of the axes and the base's overrides: applied in
    # order, a device swapped after its bandwidth was set dropped the bandwidth (a tester's sweep
    # showed one figure for 1 and 3 TB/s). Texts of one setting, and of unrelated ones, keep their
    # order (``sorted`` is stable).
    config["overrides"] = sorted(overrides, key=lambda text: len(_setting(text.partition("=")[0])))
    return config


def config_key(config: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the canonical JSON of a point config, its ``--set`` texts in
    ``canonical_overrides`` order (the same point is the same key whatever order its axes came in)."""
    canonical = {**config, "overrides": canonical_overrides(config.get("overrides") or [])}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def canonical_overrides(texts: Sequence[str]) -> list[str]:
    """``--set`` texts in an order that does not change what they make: sorted by the setting each
    one edits, where no setting is inside another's (``a.b`` and ``a``: then the order stays).
    Texts of the same setting keep their order (the last wins), and texts of independent settings
    commute: a point with axes ``x`` then ``y`` is the point with ``y`` then ``x`` (a tester's
    find: a resume with the axes swapped ran every point again under new keys)."""
    paths = [_setting(text.partition("=")[0]) for text in texts]
    distinct = set(paths)
    for path in distinct:
        if any(path[:n] in distinct for n in range(1, len(path))):
            return list(texts)
    order = sorted(range(len(texts)), key=lambda i: paths[i])
    return [texts[i] for i in order]


@functools.lru_cache(maxsize=4096)
def _setting(path: str) -> tuple[str, ...]:
    """The setting a ``--set`` path edits, as text parts (cached: every point of a sweep repeats
    its axes' paths, and a parse takes about 70 us)."""
    return tuple(str(part) for part in config_path(path))


def strides(sizes: Sequence[int]) -> list[int]:
    out = [1] * len(sizes)
    for i in range(len(sizes) - 2, -1, -1):
        out[i] = out[i + 1] * sizes[i + 1]
    return out


def genome_index(spec: SweepSpec, genome: Genome) -> int:
    return sum(g * s for g, s in zip(genome, strides(spec.dimension_sizes), strict=True))


def index_genome(spec: SweepSpec, index: int) -> Genome:
    sizes = spec.dimension_sizes
    return tuple((index // s) % n for s, n in zip(strides(sizes), sizes, strict=True))


def genome_values(spec: SweepSpec, genome: Genome) -> dict[str, Any]:
    """Axis path -> value of a genome, in the spec's axis order."""
    values: dict[str, Any] = {}
    for dim, choice in zip(spec.dimensions, genome, strict=True):
        for path in dim:
            source = spec.axes[path] if len(dim) == 1 and path in spec.axes else _zip_values(spec, path)
            values[path] = source[choice]
    return values


def _zip_values(spec: SweepSpec, path: str) -> list[Any]:
    for group in spec.zipped:
        if path in group:
            return group[path]
    raise KeyError(path)


def accepts(spec: SweepSpec, values: dict[str, Any]) -> bool:
    """Whether every validity filter accepts the point (a filter reads the axis varying its
    setting, under either name: ``nodes`` or ``cluster.nodes``; ``check_spec`` made sure one does)."""
    for f in spec.filters:
        axis = filter_axis(f.path, values)
        if axis is None or not f.accepts({f.path: values[axis]}):
            return False
    return True


def make_point(spec: SweepSpec, genome: Genome) -> Point:
    values = genome_values(spec, genome)
    config = point_config(spec, values)
    return Point(genome_index(spec, genome), values, config_key(config), config)


def point_from_values(spec: SweepSpec, values: dict[str, Any], index: int = -1) -> Point:
    ordered = {p: values[p] for p in spec.axis_paths if p in values}
    config = point_config(spec, ordered)
    return Point(index, ordered, config_key(config), config)


# ---------------------------------------------------------------------------------- grid / random


def all_genomes(spec: SweepSpec) -> Iterable[Genome]:
    return itertools.product(*(range(n) for n in spec.dimension_sizes))


def grid_points(spec: SweepSpec) -> list[Point]:
    """Every point the filters accept, in index order."""
    points = []
    for genome in all_genomes(spec):
        if accepts(spec, genome_values(spec, genome)):
            points.append(make_point(spec, genome))
    return points


def sample_genomes(
    spec: SweepSpec, count: int, rng: np.random.Generator, exclude: set[Genome] | None = None
) -> list[Genome]:
    """Up to ``count`` distinct valid genomes not in ``exclude``, drawn with ``rng``."""
    exclude = exclude or set()
    total = spec.grid_size
    if total <= ENUMERATE_LIMIT:
        valid = [g for g in all_genomes(spec) if g not in exclude and accepts(spec, genome_values(spec, g))]
        if len(valid) <= count:
            picked = [int(i) for i in rng.permutation(len(valid))]
        else:
            picked = [int(i) for i in rng.choice(len(valid), size=count, replace=False)]
        return [valid[i] for i in picked]
    sizes = spec.dimension_sizes
    out: list[Genome] = []
    seen = set(exclude)
    attempts = 0
    while len(out) < count and attempts < 100 * count + 1000:
        attempts += 1
        genome = tuple(int(rng.integers(n)) for n in sizes)
        if genome in seen:
            continue
        seen.add(genome)
        if accepts(spec, genome_values(spec, genome)):
            out.append(genome)
    return out


def random_points(spec: SweepSpec) -> list[Point]:
    """A seeded sample of the filtered grid without replacement, in index order."""
    samples = getattr(spec.search, "samples", spec.grid_size)
    rng = np.random.default_rng(spec.search_seed())
    genomes = sample_genomes(spec, samples, rng)
    return sorted((make_point(spec, g) for g in genomes), key=lambda p: p.index)


def enumerate_points(spec: SweepSpec) -> list[Point]:
    """The points of a grid or random search (an NSGA-II search asks for them generation by
    generation: ``spec_nsga2``)."""
    method = spec.search.method
    if method == "grid":
        return grid_points(spec)
    if method == "random":
        return random_points(spec)
    raise ValueError(f"search {method!r} is adaptive: use spec_nsga2()")


# ---------------------------------------------------------------------------------- NSGA-II


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` dominates ``b`` (minimisation): no worse in every objective, better in one."""
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated_sort(objectives: np.ndarray, feasible: np.ndarray | None = None) -> list[list[int]]:
    """Fronts (lists of row indices) of ``objectives`` (n x k, minimised); infeasible rows go after
    every feasible one, in one last front."""
    n = len(objectives)
    feasible = np.ones(n, dtype=bool) if feasible is None else np.asarray(feasible, dtype=bool)
    rows = [i for i in range(n) if feasible[i]]
    dominated_by: dict[int, list[int]] = {i: [] for i in rows}
    count = dict.fromkeys(rows, 0)
    for i, j in itertools.combinations(rows, 2):
        if dominates(objectives[i], objectives[j]):
            dominated_by[i].append(j)
            count[j] += 1
        elif dominates(objectives[j], objectives[i]):
            dominated_by[j].append(i)
            count[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in rows if count[i] == 0]
    while current:
        fronts.append(sorted(current))
        following = []
        for i in current:
            for j in dominated_by[i]:
                count[j] -= 1
                if count[j] == 0:
                    following.append(j)
        current = following
    rest = [i for i in range(n) if not feasible[i]]
    if rest:
        fronts.append(rest)
    return fronts


def crowding_distance(objectives: np.ndarray) -> np.ndarray:
    """Crowding distance of each row within one front (boundary rows infinite)."""
    n, k = objectives.shape if objectives.ndim == 2 else (len(objectives), 0)
    distance = np.zeros(n)
    if n <= 2:
        distance[:] = math.inf
        return distance
    for m in range(k):
        order = np.argsort(objectives[:, m], kind="stable")
        low, high = objectives[order[0], m], objectives[order[-1], m]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high > low:
            gaps = (objectives[order[2:], m] - objectives[order[:-2], m]) / (high - low)
            distance[order[1:-1]] += gaps
    return distance


def rank_and_crowding(objectives: np.ndarray, feasible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: its front number (0 best) and crowding distance within that front."""
    n = len(objectives)
    rank = np.zeros(n, dtype=int)
    crowd = np.zeros(n)
    for number, front in enumerate(non_dominated_sort(objectives, feasible)):
        rank[front] = number
        if feasible[front[0]]:
            crowd[front] = crowding_distance(objectives[front])
    return rank, crowd


def best_order(objectives: np.ndarray, feasible: np.ndarray) -> list[int]:
    """Rows ordered best first: by front, then by crowding distance (larger first), then row."""
    rank, crowd = rank_and_crowding(objectives, feasible)
    return sorted(range(len(objectives)), key=lambda i: (rank[i], -crowd[i], i))


Fitness = tuple[float, ...] | None  # minimised objectives; None: infeasible


def nsga2(
    sizes: Sequence[int],
    evaluate: Callable[[list[Genome]], list[Fitness]],
    *,
    population: int,
    generations: int,
    rng: np.random.Generator,
    crossover: float = 0.9,
    mutation: float | None = None,
    valid: Callable[[Genome], bool] = lambda g: True,
    initial: Callable[[int, set[Genome]], list[Genome]] | None = None,
) -> dict[Genome, Fitness]:
    """NSGA-II over genomes of ``sizes`` values per dimension (see the module docstring).

    ``evaluate`` gets each generation's new genomes and returns their fitness (minimised objective
    tuples, or None for an infeasible point), in order. Returns every evaluated genome and its
    fitness, in evaluation order.
    """
    dims = len(sizes)
    rate = mutation if mutation is not None else 1.0 / max(dims, 1)
    seen: dict[Genome, Fitness] = {}
    # A population larger than the space is the whole space: the first generation evaluates every
    # genome and none is left to breed. Uncapped, each generation drew 20 x population children
    # that were all seen before (a helper's population of 10^8 over 2 points ran for hours).
    space = math.prod(sizes)
    population = min(population, space)

    def sample(count: int, exclude: set[Genome]) -> list[Genome]:
        if initial is not None:
            return initial(count, exclude)
        out: list[Genome] = []
        tries = 0
        while len(out) < count and tries < 100 * count:
            tries += 1
            genome = tuple(int(rng.integers(n)) for n in sizes)
            if genome not in exclude and genome not in out and valid(genome):
                out.append(genome)
        return out

    def run(genomes: list[Genome]) -> None:
        if genomes:
            for genome, fit in zip(genomes, evaluate(genomes), strict=True):
                seen[genome] = fit

    parents = sample(population, set())
    run(parents)
    for _ in range(generations):
        if not parents or len(seen) >= space:  # nothing left to evaluate
            break
        objs, feas = fitness_matrix([seen[g] for g in parents])
        rank, crowd = rank_and_crowding(objs, feas)

        children: list[Genome] = []
        tries = 0
        while len(children) < population and tries < 20 * population:
            tries += 1
            mother, father = _tournament(parents, rank, crowd, rng), _tournament(parents, rank, crowd, rng)
            if rng.random() < crossover:
                mask = rng.random(dims) < 0.5
                child = tuple(int(f if m else g) for g, f, m in zip(mother, father, mask, strict=True))
            else:
                child = mother
            genes = list(child)
            for d in range(dims):
                if sizes[d] > 1 and rng.random() < rate:
                    other = int(rng.integers(sizes[d] - 1))
                    genes[d] = other if other < genes[d] else other + 1
            child = tuple(genes)
            if child in seen or child in children or not valid(child):
                continue
            children.append(child)
        if len(children) < population:  # a crowded space: top up with unseen random points
            children += sample(population - len(children), set(seen) | set(children))
        if not children:
            break
        run(children)
        pool = parents + children
        objs, feas = fitness_matrix([seen[g] for g in pool])
        order = best_order(objs, feas)
        parents = [pool[i] for i in order[:population]]
    return seen


def _tournament(
    parents: Sequence[Genome], rank: np.ndarray, crowd: np.ndarray, rng: np.random.Generator
) -> Genome:
    """Binary tournament: the better of two random parents (lower front, then larger crowding)."""
    a, b = (int(x) for x in rng.integers(len(parents), size=2))
    better = a if (rank[a], -crowd[a], a) <= (rank[b], -crowd[b], b) else b
    return parents[better]


def fitness_matrix(fits: Sequence[Fitness], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``fits`` as an n x ``width`` matrix (the fits' own width by default) and which rows are
    feasible; an infeasible row (None, or a non-finite value) holds infinities."""
    if width is None:
        width = max((len(f) for f in fits if f is not None), default=0)
    objs = np.full((len(fits), width), np.inf)
    feas = np.zeros(len(fits), dtype=bool)
    for i, fit in enumerate(fits):
        if fit is not None and all(math.isfinite(v) for v in fit):
            objs[i] = fit
            feas[i] = True
    return objs, feas


def record_fitness(record: PointRecord, objectives: dict[str, str]) -> Fitness:
    """A record's objectives as a minimised tuple (``max`` negated); None unless ok and all finite."""
    if record.status != "ok":
        return None
    out = []
    for metric, sense in objectives.items():
        value = record.metrics.get(metric)
        if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
            return None
        out.append(-float(value) if sense == "max" else float(value))
    return tuple(out)


def spec_nsga2(
    spec: SweepSpec, evaluate_points: Callable[[list[Point]], list[PointRecord]]
) -> list[PointRecord]:
    """Run the spec's NSGA-II search; ``evaluate_points`` evaluates (or recalls) a batch of points."""
    search = spec.search
    rng = np.random.default_rng(spec.search_seed())
    records: list[PointRecord] = []

    def evaluate(genomes: list[Genome]) -> list[Fitness]:
        batch = evaluate_points([make_point(spec, g) for g in genomes])
        records.extend(batch)
        return [record_fitness(r, dict(spec.objectives)) for r in batch]

    nsga2(
        spec.dimension_sizes,
        evaluate,
        population=int(getattr(search, "population", 16)),
        generations=int(getattr(search, "generations", 4)),
        crossover=float(getattr(search, "crossover", 0.9)),
        mutation=getattr(search, "mutation", None),
        rng=rng,
        valid=lambda g: accepts(spec, genome_values(spec, g)),
        initial=lambda count, exclude: sample_genomes(spec, count, rng, exclude),
    )
    return records
