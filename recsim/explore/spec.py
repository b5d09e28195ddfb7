"""Sweep specs: a ``kind: sweep`` YAML document that describes a design-space exploration.

A spec is loaded like every other recsim config (``recsim.config``): strict YAML with line numbers,
``extends:`` another sweep file, ``--set`` overrides, a pydantic schema that rejects unknown keys
with a did-you-mean, and every error one line ``file:line: key.path: problem``. On top of the schema
the loader checks what only recsim can: every axis path resolves against the base system, workload
or planner (a dry resolution of the base point with that axis's first value), every name is a known
system, workload or plan strategy, and every metric named in constraints and objectives exists.

The shape::

    kind: sweep
    name: zionex-sharding
    description: Sharding strategies and cluster sizes on ZionEX
    base:                      # the point every axis varies (keys as `recsim run` options)
      system: zionex           # library name or YAML path (relative to this file)
      workload: dlrm-dcnv2
      mode: training           # the only mode simulated so far
      nodes: 16                # optional: cluster.nodes
      batch_size: 65536        # optional: the global batch size
      precision: fp16          # optional: dense precision (fp32, tf32, fp16, bf16)
      plan: auto               # a planner strategy or a saved plan file
      comm_dtype: fp16         # optional: wire dtype of pooled embeddings
      fidelity: analytic       # the first stage's engine when `stages` is not given
      steps: 3                 # optional: chained steps per simulation
      overrides: ["planner.finalists=2"]   # --set texts: system paths, workload.*, planner.*
    axes:                      # the cartesian product of these (first axis varies slowest)
      plan: [table_wise, row_wise, greedy]
      nodes: [2, 4, 8, 16]
      node.nics.device: [roce-100g, roce-200g]   # any --set path of the system, workload.*, planner.*
    zip:                       # optional groups whose axes vary together (equal lengths)
      - {nodes: [1, 2], batch_size: [8192, 16384]}
    filters:                   # validity: a point failing one is not run and not stored
      - {path: nodes, op: "<=", value: 8}
    constraints:               # a point violating one is stored as "infeasible" with the reason
      - memory_fits                                  # a metric that must be true
      - "iteration_time_s <= 0.05"                   # or "metric op value"
      - {metric: avg_power_w, op: "<=", value: 50000}
    objectives: {throughput_samples_per_s: max, avg_power_w: min}   # the first two are plotted
    search: {method: grid}     # or {method: random, samples: 50, seed: 1}
                               # or {method: nsga2, population: 16, generations: 4, seed: 1}
    stages:                    # optional: screen at one fidelity, re-run the best at a costlier one
      - {fidelity: analytic}
      - {fidelity: des, top: 5}    # the 5 best-ranked points of the previous stage (no top: its front);
                                   # then any other point of the final front, so it is one stage's figures
    seed: 0                    # default seed of random and nsga2 searches

Special axis and base keys are ``system``, ``workload``, ``nodes``, ``batch_size``, ``precision``,
``plan`` and ``comm_dtype``; every other axis key is a dotted ``--set`` path (``workload.`` paths edit
the workload, ``planner.`` paths the planner's search space, the rest the system). ``fidelity`` is
varied with ``stages``, not as an axis; a label (a ``name``, a ``description``, ``kind``) is no
axis, nor is a true-or-false metric (``memory_fits``) an objective: it is a constraint.

``--set`` on a sweep (``load_sweep(path, overrides)``, ``recsim sweep SPEC --set ...``) edits the spec
when the path starts with one of its top-level keys (``search.samples=10``, ``base.nodes=4``,
``axes.node.nics.device=[a,b]``); any other path is appended to ``base.overrides`` (a system,
``workload.*`` or ``planner.*`` edit applied to every point).

``SweepSpec.spec_key`` is a 16-hex hash of the canonical resolved spec, the order of the axes
included (a point's grid index and a search's draws follow it), and the order of the objectives
where they pick points (an NSGA-II search, a stage's ``top``): a store remembers it, and a resume
with a different spec is refused, saying what differs (``spec_changes``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import operator
import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from recsim.config.loader import Override, apply_overrides, is_path_ref, load_document
from recsim.config.tree import KeyPath, Location, Tree, format_path
from recsim.config.types import Spec
from recsim.config.validate import number_hint, validate_tree
from recsim.engine import MAX_STEPS
from recsim.errors import ConfigError, RecsimError
from recsim.metrics.result import MAPPING_FIELDS, PEAK_UTILISATION, mapping_keys
from recsim.paths import user_path
from recsim.planner.types import COMM_DTYPES
from recsim.units import quantity_of

#: The engines a stage may use, cheapest first: a later stage re-runs points at a costlier one.
FIDELITY_ORDER = ("analytic", "des")
#: The last keys of a setting that only labels (a system's or table's name, a description): an axis
#: over one would give identical points under different keys.
LABEL_KEYS = ("name", "description")
SPECIAL_KEYS = ("system", "workload", "nodes", "batch_size", "precision", "plan", "comm_dtype")
#: Keys whose values are a library name or a file path (the others' files are ``file_value``).
NAMED_KEYS = ("system", "workload", "plan")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
TOP_LEVEL_KEYS = (
    "kind",
    "name",
    "description",
    "base",
    "axes",
    "zip",
    "filters",
    "constraints",
    "objectives",
    "search",
    "stages",
    "seed",
)

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    ">": operator.gt,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
}
Op = Literal["<", "<=", "==", "!=", ">=", ">", "in", "not_in"]
# The operator is every comparison character in a row, so that a mistyped one ("<<=", "=>") is
# named as such rather than read as "<" followed by the value "<= 3".
_CONSTRAINT_TEXT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*([<>=!]+)\s*(.+?)\s*$")
_CONSTRAINT_OPERATORS = ("<", "<=", ">", ">=", "==", "!=")

# Metrics a constraint or objective may name: the fields of ``Result.to_dict()`` (mappings flatten
# to ``name.key``) plus the sweep-derived ones added by ``recsim.explore.evaluate``.
SCALAR_METRICS = (
    "num_accelerators",
    "global_batch_size",
    "iteration_time_s",
    "throughput_samples_per_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "achieved_qps",
    "memory_fits",
    "energy_per_sample_j",
    "avg_power_w",
    "samples_per_joule",
    "throughput_per_accelerator",
)
MAPPING_METRICS = (*MAPPING_FIELDS[:2], PEAK_UTILISATION, *MAPPING_FIELDS[2:])


def _distinct_values(values: list[Any]) -> list[Any]:
    """An axis's values, each once: a repeated one would make the same points twice, and the sweep
    keeps each point once, so the grid would silently hold fewer points than it says."""
    seen: dict[str, Any] = {}
    for value in values:
        # Values equal as settings are one value: 1 and 1.0, "2 TB/s" and "2000 GB/s" (a tester's
        # find: both were run, under two keys, and stood twice on the front).
        key = json.dumps(_setting(value), sort_keys=True, default=repr)
        if key in seen:
            first = seen[key]
            again = (
                "twice" if first == value and type(first) is type(value) else f"twice ({first!r} is the same)"
            )
            raise ValueError(f"the value {value!r} is given {again}")
        seen[key] = value
    return values


def _setting(value: Any) -> Any:
    """``value`` as the setting it makes (``comparable``), through lists."""
    if isinstance(value, list):
        return [_setting(v) for v in value]
    return comparable(value)


AxisValues = Annotated[list[Any], Field(min_length=1), AfterValidator(_distinct_values)]
# A zipped axis pairs its values with the other axes of its group: one value may come again in
# another pair (the pairs themselves must differ: ``_zip_group``).
ZipValues = Annotated[list[Any], Field(min_length=1)]


def _zip_group(group: dict[str, list[Any]]) -> dict[str, list[Any]]:
    if not group:
        raise ValueError("a zip group needs at least one axis")
    lengths = {path: len(vals) for path, vals in group.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{p}: {n}" for p, n in lengths.items())
        raise ValueError(f"the axes of a zip group must have the same number of values ({shown})")
    _distinct_values([list(pair) for pair in zip(*group.values(), strict=True)])
    return group


ZipGroup = Annotated[dict[str, ZipValues], AfterValidator(_zip_group)]


class Base(Spec):
    """The point every axis varies; keys as the options of ``recsim run``."""

    system: str
    workload: str
    mode: Literal["training"] = "training"
    nodes: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    precision: Literal["fp32", "tf32", "fp16", "bf16"] | None = None
    plan: str = "auto"
    comm_dtype: Literal["fp32", "fp16", "bf16", "fp8", "int8"] | None = None
    fidelity: Literal["analytic", "des"] | None = None
    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    overrides: list[str] = Field(default_factory=list)

    @field_validator("overrides")
    @classmethod
    def _parse_overrides(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                Override.parse(text)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value


class Filter(Spec):
    """A validity filter on a point's values: ``path op value`` (``in``/``not_in`` take a list)."""

    path: str
    op: Op
    value: Any

    def accepts(self, values: dict[str, Any]) -> bool:
        """Whether the point with ``values`` passes (quantities compare by value, in SI units:
        ``"900 GB/s" <= "2 TB/s"``; ``check_spec`` has made sure the two sides compare)."""
        here = comparable(values.get(self.path))
        if self.op in ("in", "not_in"):
            inside = here in [comparable(v) for v in self.value]
            return inside if self.op == "in" else not inside
        try:
            return bool(OPS[self.op](here, comparable(self.value)))
        except TypeError:
            return False

    def __str__(self) -> str:
        return f"{self.path} {self.op} {self.value!r}"


def comparable(value: Any) -> Any:
    """What a filter compares of an axis value: a quantity text as ``(dimension, SI value)``, a
    number as a float (``1`` and ``1.0`` are one value), anything else as it is."""
    found = quantity_of(value)
    if found is not None:
        return found
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def value_kind(value: Any) -> str:
    """``a number``, ``a quantity of bytes/s`` (its dimension), ``text``, ``a bool`` or ``a list``."""
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, (int, float)):
        return "a number"
    found = quantity_of(value)
    if found is not None:
        return f"a quantity of {found[0].value}"
    return "text" if isinstance(value, str) else f"a {type(value).__name__}"


class Constraint(Spec):
    """A constraint on a result metric: ``metric op value``; ``memory_fits`` alone means true."""

    metric: str
    op: Op = "=="
    value: Any = True

    def check(self, metrics: dict[str, Any]) -> str:
        """``""`` when satisfied, else why not."""
        got = metrics.get(self.metric)
        if got is None or (isinstance(got, float) and math.isnan(got)):
            return f"constraint {self}: {self.metric} has no value"
        try:
            ok = bool(OPS[self.op](got, self.value))
        except TypeError:
            ok = False
        return "" if ok else f"constraint {self} violated ({self.metric} = {got!r})"

    def __str__(self) -> str:
        if self.op == "==" and self.value is True:
            return self.metric
        return f"{self.metric} {self.op} {self.value!r}"


class GridSearch(Spec):
    """Every point of the grid (product x zipped groups, minus filtered points)."""

    method: Literal["grid"]


class RandomSearch(Spec):
    """A seeded sample of the grid, without replacement."""

    method: Literal["random"]
    samples: int = Field(ge=1)
    seed: int | None = Field(default=None, ge=0)  # numpy's generators take non-negative seeds


class Nsga2Search(Spec):
    """NSGA-II over the discrete axis values: a population evolved for some generations."""

    method: Literal["nsga2"]
    population: int = Field(default=16, ge=4)
    generations: int = Field(default=4, ge=1)
    crossover: float = Field(default=0.9, ge=0.0, le=1.0)
    mutation: float | None = Field(default=None, gt=0.0, le=1.0)  # None: 1 / number of dimensions
    seed: int | None = Field(default=None, ge=0)  # numpy's generators take non-negative seeds


Search = Annotated[GridSearch | RandomSearch | Nsga2Search, Field(discriminator="method")]


def _coerce_constraint(value: Any) -> Any:
    """A constraint written as text (``memory_fits``, ``"latency_p99_s <= 0.02"``) as a mapping."""
    if isinstance(value, str):
        return parse_constraint(value).model_dump()
    return value


ConstraintItem = Annotated[Constraint, BeforeValidator(_coerce_constraint)]


class Stage(Spec):
    """A fidelity stage: the first evaluates every point, a later one the best of the one before."""

    fidelity: Literal["analytic", "des"]
    top: int | None = Field(default=None, ge=1)


class SweepSpec(Spec):
    """A validated sweep (see the module docstring)."""

    kind: Literal["sweep"]
    name: str = Field(min_length=1)  # as a system's and a workload's: it heads the summary and the store
    description: str = ""
    base: Base
    axes: dict[str, AxisValues] = Field(default_factory=dict)
    zipped: list[ZipGroup] = Field(default_factory=list, alias="zip")
    filters: list[Filter] = Field(default_factory=list)
    constraints: list[ConstraintItem] = Field(default_factory=list)
    objectives: dict[str, Literal["max", "min"]] = Field(min_length=1)
    search: Search = Field(default_factory=lambda: GridSearch(method="grid"))
    stages: list[Stage] = Field(default_factory=list)
    seed: int = Field(default=0, ge=0)  # numpy's generators take non-negative seeds

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: list[Stage]) -> list[Stage]:
        if value and value[0].top is not None:
            raise ValueError("the first stage evaluates every point; 'top' applies to later stages")
        fidelities = [s.fidelity for s in value]
        if len(set(fidelities)) != len(fidelities):
            raise ValueError(f"each stage needs its own fidelity, got {fidelities}")
        costs = [FIDELITY_ORDER.index(f) for f in fidelities]
        if costs != sorted(costs):
            # A later stage re-runs the best points of the one before to check them with a costlier
            # engine; re-scoring DES figures with the analytic engine would put the cheaper
            # figures on the front (a tester's find: [des, analytic] was accepted).
            raise ValueError(
                f"stages go from the cheaper fidelity to the costlier ({' then '.join(FIDELITY_ORDER)}), "
                f"got {' then '.join(fidelities)}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        if self.stages and self.base.fidelity is not None and self.stages[0].fidelity != self.base.fidelity:
            raise ValueError(
                f"base.fidelity {self.base.fidelity!r} differs from the first stage's "
                f"{self.stages[0].fidelity!r}; give one of them"
            )
        return self

    # -- derived ------------------------------------------------------------------------------

    @property
    def constraint_list(self) -> list[Constraint]:
        return list(self.constraints)

    @property
    def stage_list(self) -> list[Stage]:
        """The stages, defaulting to one at ``base.fidelity`` (analytic)."""
        return list(self.stages) or [Stage(fidelity=self.base.fidelity or "analytic")]

    @property
    def dimensions(self) -> list[tuple[str, ...]]:
        """The grid's dimensions in order: one per product axis, one per zip group (its paths)."""
        return [(path,) for path in self.axes] + [tuple(group) for group in self.zipped]

    @property
    def dimension_sizes(self) -> list[int]:
        sizes = [len(v) for v in self.axes.values()]
        sizes += [len(next(iter(group.values()))) for group in self.zipped]
        return sizes

    @property
    def axis_paths(self) -> list[str]:
        return [*self.axes, *(path for group in self.zipped for path in group)]

    @property
    def grid_size(self) -> int:
        return math.prod(self.dimension_sizes)

    def search_seed(self) -> int:
        seed = getattr(self.search, "seed", None)
        return self.seed if seed is None else int(seed)

    def canonical(self) -> dict[str, Any]:
        """The spec as plain JSON-able data (YAML keys)."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return data

    def key_data(self) -> dict[str, Any]:
        """What ``spec_key`` hashes: the canonical spec, with the orders that change what a store
        holds written as ordered lists (JSON with sorted keys would lose them): the ``axes`` (a
        point's grid index, and the genomes a random or NSGA-II search draws, follow the axis
        order), and the ``objectives`` where they pick points (an NSGA-II search, a later stage's
        ``top``). A tester resumed a sweep with its two axes swapped: it was accepted, and the
        front listed every point twice."""
        data = self.canonical()
        data["axes"] = [[path, values] for path, values in self.axes.items()]
        if self.search.method == "nsga2" or len(self.stage_list) > 1:
            data["objectives"] = [[metric, sense] for metric, sense in self.objectives.items()]
        return data

    @property
    def spec_key(self) -> str:
        """16 hex digits of the SHA-256 of ``key_data()`` (what a store is tied to)."""
        text = json.dumps(self.key_data(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_text(self) -> str:
        """The resolved spec as YAML (stored with the results)."""
        return yaml.safe_dump(self.canonical(), sort_keys=False)


def spec_changes(stored_text: str, spec: SweepSpec) -> list[str]:
    """What differs between the spec a store holds (its ``to_text()``) and ``spec``, one short
    phrase each (``axes: in another order (stored: a, b; this spec: b, a)``, ``base.nodes: 2 ->
    4``); empty when the stored text cannot be read or nothing shown differs."""
    try:
        old = yaml.safe_load(stored_text)
    except yaml.YAMLError:
        return []
    if not isinstance(old, dict):
        return []
    new = spec.canonical()
    out: list[str] = []
    for key in dict.fromkeys([*new, *old]):
        before, after = old.get(key), new.get(key)
        if not (isinstance(before, dict) and isinstance(after, dict)):
            if before != after:
                out.append(f"{key}: {_shown(before)} -> {_shown(after)}")
        elif before == after:  # as mappings: the order may differ
            if list(before) != list(after) and key in ("axes", "objectives"):
                out.append(
                    f"{key}: in another order (stored: {', '.join(map(str, before))}; "
                    f"this spec: {', '.join(map(str, after))})"
                )
        else:
            for sub in dict.fromkeys([*before, *after]):
                if sub not in after:
                    out.append(f"{key}.{sub}: removed (stored: {_shown(before[sub])})")
                elif sub not in before:
                    out.append(f"{key}.{sub}: added ({_shown(after[sub])})")
                elif before[sub] != after[sub]:
                    out.append(f"{key}.{sub}: {_shown(before[sub])} -> {_shown(after[sub])}")
    return out


def _shown(value: Any, width: int = 60) -> str:
    text = json.dumps(value, separators=(", ", ": "), default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def parse_constraint(text: str) -> Constraint:
    """``"memory_fits"`` or ``"iteration_time_s <= 0.05"`` as a ``Constraint``."""
    text = text.strip()
    if re.fullmatch(r"[A-Za-z_][\w.]*", text):
        return Constraint(metric=text)
    match = _CONSTRAINT_TEXT.match(text)
    if not match:
        raise ValueError(f"constraint {text!r}: expected a metric name or 'metric op value' (op: <, <=, ...)")
    metric, op, raw = match.groups()
    if op not in _CONSTRAINT_OPERATORS:
        raise ValueError(
            f"constraint {text!r}: unknown operator {op!r} (use one of {', '.join(_CONSTRAINT_OPERATORS)})"
        )
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return Constraint(metric=metric, op=op, value=value)  # type: ignore[arg-type]


#: The metrics only an inference run has: a training sweep (``base.mode``) never gets a value.
INFERENCE_METRICS = ("latency_p50_s", "latency_p95_s", "latency_p99_s", "achieved_qps")
#: The metrics that are true or false: a constraint may name them alone (``memory_fits``).
BOOLEAN_METRICS = ("memory_fits",)


def all_metrics() -> list[str]:
    """Every metric a constraint or objective may name."""
    return [*SCALAR_METRICS, *(f"{m}.{k}" for m, keys in mapping_keys().items() for k in keys)]


def known_metric(name: str) -> bool:
    if name in SCALAR_METRICS:
        return True
    head, _, tail = name.partition(".")
    return tail in mapping_keys().get(head, ())


def _metric_hint(name: str) -> str:
    names = all_metrics()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    head = name.partition(".")[0]
    keys = mapping_keys().get(head)
    if keys is not None:
        return f"{head} has the keys {', '.join(keys)}"
    shown = [*SCALAR_METRICS, *(f"{m}.<key>" for m in MAPPING_METRICS)]
    return f"known metrics: {', '.join(shown)}"


def _constraint_problem(constraint: Constraint, mode: str) -> str | None:
    """What is wrong with a constraint no result could ever meet, or None."""
    if mode == "training" and constraint.metric in INFERENCE_METRICS:
        return f"{constraint.metric} is an inference metric: a training sweep has no value for it"
    if constraint.op == "==" and constraint.value is True and constraint.metric not in BOOLEAN_METRICS:
        return (
            f"{constraint.metric} alone is not a condition (only {' or '.join(BOOLEAN_METRICS)} is): "
            f"write '{constraint.metric} <= VALUE' or the like"
        )
    value = constraint.value
    number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if constraint.op in ("<", "<=", ">", ">=") and not number:
        return (
            f"'{constraint.op}' needs a number in SI units (seconds, bytes, watts, ...), "
            f"got {value!r}{_number_hint_text(value)}"
        )
    if constraint.op in ("in", "not_in") and not isinstance(value, list):
        return f"'{constraint.op}' needs a list of values, got {value!r}"
    return None


def _number_hint_text(value: object) -> str:
    """A hint for a number written with a unit (``50 ms``) or one YAML read as text (``1e-3``)."""
    with_unit = r"\s*[-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?\s*[A-Za-z/]+\s*"
    if isinstance(value, str) and re.fullmatch(with_unit, value):
        return " (no units: 50 ms is 0.05)"
    return number_hint("float_type", value)


# ---------------------------------------------------------------------------------- loading


class _SweepLocator:
    """``extends:`` of a sweep is a path (relative to the file that extends)."""

    def locate(self, kind: str, ref: str, relative_to: Path | None) -> Path:
        path = Path(ref).expanduser()
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        if path.is_dir():
            raise ConfigError(f"{ref}: a folder, not a {kind} file ({path}): name a YAML file in it")
        if not path.is_file():
            raise ConfigError(f"{ref}: no such {kind} file ({path})")
        return path


def _spec_override(text: str) -> Override | None:
    """A ``--set`` that edits the spec (path starts with a top-level key), else None."""
    parsed = Override.parse(text)
    head = parsed.path[0] if parsed.path else ""
    if head not in TOP_LEVEL_KEYS:
        return None
    if head == "axes" and len(parsed.path) > 2:
        # axis keys are dotted paths themselves: axes.node.nics.device=[a, b]
        joined = format_path(parsed.path[1:])  # an index stays one: workload.tables[0].rows
        return Override(("axes", joined), parsed.value, text)
    return parsed


def load_sweep(path: str | Path, overrides: Sequence[str] = (), *, home: Path | None = None) -> SweepSpec:
    """A validated sweep spec from ``path`` with ``--set`` overrides (see the module docstring);
    relative paths in it are relative to its folder (or ``home``)."""
    path = user_path(path, "sweep spec")
    tree = load_document(path, "sweep", _SweepLocator())
    spec_sets: list[Override] = []
    point_sets: list[str] = []
    for text in overrides:
        parsed = _spec_override(text)
        if parsed is None:
            point_sets.append(text)
        else:
            spec_sets.append(parsed)
    if spec_sets:
        tree = apply_overrides(tree, spec_sets)
    if point_sets:
        base = tree.data.get("base")
        if isinstance(base, dict):
            existing = base.get("overrides") or []
            base["overrides"] = [*existing, *point_sets] if isinstance(existing, list) else existing
            for i, text in enumerate(point_sets, start=len(existing) if isinstance(existing, list) else 0):
                tree.locations[("base", "overrides", i)] = Location(f"--set {text}")
    _absolutise_paths(tree, path, path.parent if home is None else home)
    spec = validate_tree(SweepSpec, tree)
    check_spec(spec, tree)
    return spec


def sweep_from_text(text: str, source: str = "<sweep>", overrides: Sequence[str] = ()) -> SweepSpec:
    """A validated sweep spec from YAML text (tests, notebooks); paths relative to the cwd."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / (Path(source).name if source.endswith((".yaml", ".yml")) else "sweep.yaml")
        file.write_text(text)
        return load_sweep(file, overrides, home=Path.cwd())


def _absolutise_paths(tree: Tree, spec_file: Path, home: Path) -> None:
    """Relative file paths become absolute: relative to the file that wrote them (``home`` for
    ``spec_file`` itself; a spec it extends, its own folder), or to the working folder for a
    ``--set``. Always, whether or not the file is there: a missing file is then named where it was
    looked for, and a file of the same name in the working folder is never taken instead (a tester's
    find: results depended on where the sweep was run from). The system, workload and plan values
    (a name or a path), and any other axis value or base ``overrides`` value that is a file
    (``file_value``: a device file for ``node.accelerators.device``, say)."""
    own = spec_file.resolve()

    def folder(where: KeyPath) -> Path:
        loc = tree.locations.get(where)
        if loc is None or loc.line is None:
            return Path.cwd()  # a --set (or a value with no place: the working folder)
        source = Path(loc.source).resolve()
        return home if source == own else source.parent

    def fix(value: Any, where: KeyPath, named: str | None) -> Any:
        """``value`` made absolute if it is a file: ``named`` is the key (system, workload, plan)
        whose values are a name or a path, None for any other value."""
        if isinstance(value, str) and (named_path(value, named) if named else file_value(value)):
            path = Path(value).expanduser()
            if not path.is_absolute():
                path = folder(where) / path
            return str(path.resolve())
        return value

    def named_path(value: str, key: str) -> bool:
        # A saved plan is a ``.json``/``.json.gz`` file, which ``is_path_ref`` (YAML suffixes or a
        # slash) does not take for a path: ``plan: g1.json`` was read from the working folder (a
        # tester's find). ``recsim run --plan`` takes those suffixes for a file too
        # (``recsim.planner.io.is_plan_path``).
        return is_path_ref(value) or (key == "plan" and value.endswith((".json", ".json.gz")))

    base = tree.data.get("base")
    if isinstance(base, dict):
        for key in NAMED_KEYS:
            if key in base:
                base[key] = fix(base[key], ("base", key), key)
        overrides = base.get("overrides")
        if isinstance(overrides, list):
            for k, text in enumerate(overrides):
                if isinstance(text, str) and "=" in text:
                    left = text.partition("=")[0]
                    try:
                        value = Override.parse(text).value  # the value as YAML reads it (quotes off)
                    except ConfigError:
                        continue  # the schema's check names it
                    fixed = fix(value, ("base", "overrides", k), None)
                    if fixed != value:
                        overrides[k] = f"{left}={fixed}"
    zipped = tree.data.get("zip")
    groups: list[tuple[KeyPath, Any]] = [(("axes",), tree.data.get("axes"))]
    if isinstance(zipped, list):
        groups += [(("zip", i), group) for i, group in enumerate(zipped)]
    for prefix, group in groups:
        if isinstance(group, dict):
            for key, values in group.items():
                if isinstance(values, list):
                    named = key if key in NAMED_KEYS else None
                    group[key] = [fix(v, (*prefix, key, j), named) for j, v in enumerate(values)]


def file_value(value: str) -> bool:
    """A value that names a file: a YAML file, a path from here (``./``, ``../``, ``~/``), or a
    word with a slash that is not a quantity (``devices/gpu``; ``2 TB/s`` is a quantity)."""
    if value.endswith((".yaml", ".yml")) or value.startswith(("./", "../", "~/")):
        return True
    return "/" in value and not any(c.isspace() for c in value) and quantity_of(value) is None


# ---------------------------------------------------------------------------------- checks


@dataclasses.dataclass(frozen=True)
class _Checker:
    spec: SweepSpec
    tree: Tree

    def fail(self, path: tuple[str | int, ...], problem: str, shown: str | None = None) -> ConfigError:
        return ConfigError(f"{self.tree.location(path)}: {shown or format_path(path)}: {problem}")


def check_spec(spec: SweepSpec, tree: Tree) -> None:
    """What the schema cannot check: axis paths and names resolve, metrics exist, filters name axes."""
    check = _Checker(spec, tree)
    seen: dict[str, tuple[str | int, ...]] = {}
    places: list[tuple[tuple[str | int, ...], str, list[Any]]] = [
        (("axes", p), p, v) for p, v in spec.axes.items()
    ]
    for i, group in enumerate(spec.zipped):
        places += [(("zip", i, p), p, v) for p, v in group.items()]
    for where, axis, values in places:
        if axis in seen:
            raise check.fail(where, f"axis {axis!r} is varied twice (also at {format_path(seen[axis])})")
        seen[axis] = where
        if axis == "fidelity":
            raise check.fail(where, "fidelity is varied with 'stages:' (e.g. [{fidelity: analytic}, ...])")
        if axis == "mode":
            raise check.fail(where, "mode is fixed by base.mode (only training is simulated so far)")
        last = config_path(axis)[-1]
        if axis in ("kind", "workload.kind") or last in LABEL_KEYS:
            # A tester's find: `name: [a, b]` ran the same point twice, under two keys.
            raise check.fail(
                where,
                f"{axis!r} is a label, not a setting: every value would simulate the same point "
                "under another key; vary a setting that changes what is simulated",
            )
        for j, value in enumerate(values):
            if not _jsonable_scalar(value):
                raise check.fail((*where, j), f"expected a scalar or a list of scalars, got {value!r}")
    varied: dict[tuple[str | int, ...], tuple[str, tuple[str | int, ...]]] = {}
    for axis, where in seen.items():
        # The same setting by two names (the ``batch_size`` axis and its path): one would win.
        path = config_path(axis)
        if path in varied:
            other, other_where = varied[path]
            raise check.fail(
                where,
                f"axis {axis!r} varies the same setting as {other!r} (at {format_path(other_where)}); "
                "keep one of them",
            )
        varied[path] = (axis, where)
    for i, text in enumerate(spec.base.overrides):
        # A --set of a path the sweep varies would be overridden in turn by every point's axis
        # value: refuse it rather than let it look applied (in the spec file itself, a base value
        # under an axis is only a default, and harmless). Paths compare parsed (``tables.0`` is
        # ``tables[0]``; the ``batch_size`` axis is ``workload.training.global_batch_size``).
        if not str(tree.location(("base", "overrides", i))).startswith("--set"):
            continue
        hit = varied.get(config_path(text.partition("=")[0]))
        if hit is not None:
            axis, where = hit
            raise check.fail(
                ("base", "overrides", i),
                f"{axis!r} is also varied at {format_path(where)}: every point's value there wins; "
                "change the axis values instead",
            )
    for key in SPECIAL_KEYS:
        # ``--set base.nodes=4`` (or the global ``--nodes``) under a ``nodes`` axis would be
        # overridden by every point, as a --set of the axis's path is refused below.
        here = tree.locations.get(("base", key))
        hit = varied.get(config_path(key))
        if here is not None and here.line is None and hit is not None and getattr(spec.base, key) is not None:
            raise check.fail(
                ("base", key),
                f"{key!r} is also varied at {format_path(hit[1])}: every point's value there wins; "
                "change the axis values instead",
            )
    for i, flt in enumerate(spec.filters):
        _check_filter(check, spec, i, flt, seen, places)
    if spec.filters and not _some_point_passes(spec):
        raise check.fail(("filters",), "no point of the grid passes the filters: the sweep would run nothing")
    for i, constraint in enumerate(spec.constraint_list):
        if not known_metric(constraint.metric):
            raise check.fail(
                ("constraints", i), f"unknown metric {constraint.metric!r}; {_metric_hint(constraint.metric)}"
            )
        problem = _constraint_problem(constraint, spec.base.mode)
        if problem is not None:
            raise check.fail(("constraints", i), problem)
    for name in spec.objectives:
        if not known_metric(name):
            raise check.fail(("objectives", name), f"unknown metric {name!r}; {_metric_hint(name)}")
        if name in BOOLEAN_METRICS:
            raise check.fail(
                ("objectives", name),
                f"{name} is true or false, not a figure to maximise or minimise: make it a constraint "
                f"(constraints: [{name}])",
            )
        if spec.base.mode == "training" and name in INFERENCE_METRICS:
            raise check.fail(
                ("objectives", name), f"{name} is an inference metric: a training sweep has no value for it"
            )
    _check_resolution(check, places)


#: Config paths of the special axes that are not written as paths.
_SPECIAL_PATHS = {
    "batch_size": "workload.training.global_batch_size",
    "precision": "workload.training.precision",
    "nodes": "cluster.nodes",
}


def _some_point_passes(spec: SweepSpec) -> bool:
    """Whether a point of the grid passes the filters (True, unchecked, past the points a grid
    sweep may enumerate: a search over a bigger space finds out as it samples)."""
    from recsim.explore.points import ENUMERATE_LIMIT, accepts, all_genomes, genome_values

    for count, genome in enumerate(all_genomes(spec)):
        if count >= ENUMERATE_LIMIT or accepts(spec, genome_values(spec, genome)):
            return True
    return False


def filter_axis(path: str, axes: Collection[str]) -> str | None:
    """The axis a filter on ``path`` reads: the axis of that name, or the one varying the same
    setting under its other name (``nodes`` and ``cluster.nodes``); None when no axis varies it."""
    if path in axes:
        return path
    target = config_path(path)
    return next((a for a in axes if config_path(a) == target), None)


def _check_filter(
    check: _Checker,
    spec: SweepSpec,
    i: int,
    flt: Filter,
    seen: dict[str, tuple[str | int, ...]],
    places: list[tuple[tuple[str | int, ...], str, list[Any]]],
) -> None:
    """A filter names a varied setting and compares with its values: of one kind (numbers with
    numbers, quantities of one dimension, texts with texts), ordered only where they have an order
    (a tester's finds: ``"900 GB/s" <= "2 TB/s"`` compared as text, ``"4"`` against whole numbers
    dropped every point, and a filter on ``nodes`` under a ``cluster.nodes`` axis saw the base's)."""
    axis = filter_axis(flt.path, seen)
    if axis is None:
        close = difflib.get_close_matches(flt.path, list(seen), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"axes: {', '.join(seen) or 'none'}"
        raise check.fail(
            ("filters", i, "path"),
            f"{flt.path!r} is not varied by an axis (a filter keeps all or none); {hint}",
        )
    if flt.op in ("in", "not_in") and not isinstance(flt.value, list):
        raise check.fail(("filters", i, "value"), f"'{flt.op}' needs a list of values")
    values = next(v for _, a, v in places if a == axis)
    kinds = {value_kind(v) for v in values}
    axis_kinds = " and ".join(sorted(kinds))
    given = flt.value if flt.op in ("in", "not_in") else [flt.value]
    for value in given:
        if kinds != {value_kind(value)}:
            raise check.fail(
                ("filters", i, "value"),
                f"{value!r} ({value_kind(value)}) does not compare with the values of axis {axis!r} "
                f"({axis_kinds})",
            )
    ordered = kinds == {"a number"} or axis_kinds.startswith("a quantity")
    if flt.op in ("<", "<=", ">=", ">") and not ordered:
        raise check.fail(
            ("filters", i, "op"),
            f"'{flt.op}' orders numbers and quantities; axis {axis!r} holds {axis_kinds} "
            "(use ==, !=, in or not_in)",
        )


@functools.lru_cache(maxsize=4096)
def special_key_of(text: str) -> str | None:
    """The special key (``nodes``, ``batch_size``, ``precision``) whose setting the path ``text``
    names, or None (cached: every point of a sweep asks it of each axis; see ``config_path``)."""
    path = config_path(text)
    return next((key for key, full in _SPECIAL_PATHS.items() if config_path(full) == path), None)


@functools.lru_cache(maxsize=4096)
def config_path(text: str) -> tuple[str | int, ...]:
    """The parsed key path an axis or ``--set`` names (the text itself when it does not parse).

    Cached (a pure function of the text; the path is an immutable tuple): building each point of
    a grid parsed every axis path again, with a YAML parse per part, about 150 us an axis, and
    ``special_key_of`` parses the special keys' paths too: a 100 x 2 x 100 grid took 27 s (1.4 ms
    a point, 95 % of it in these parses), so a million-point grid took tens of minutes to build
    its points before the first one ran."""
    from recsim.config.loader import Override

    key = _SPECIAL_PATHS.get(text.strip(), text.strip())
    if key.startswith("system."):
        key = key[len("system.") :]
    try:
        return Override.parse(f"{key}=0").path
    except ConfigError:
        return (key,)


def _jsonable_scalar(value: Any) -> bool:
    if isinstance(value, list):
        return all(_jsonable_scalar(v) for v in value if not isinstance(v, list))
    return isinstance(value, (str, int, float, bool)) and not (
        isinstance(value, float) and not math.isfinite(value)
    )


def _check_resolution(check: _Checker, places: list[tuple[tuple[str | int, ...], str, list[Any]]]) -> None:
    """Resolve the base point, then the base point with each value of each axis in turn: a value
    that cannot resolve (a unit of the wrong kind, a negative size, a missing plan file) fails the
    spec before any point runs, not as an ``error`` row after the sweep (about 40 ms a value). The
    values of a ``zip`` group go together (a GPU count with the NVLink mesh drawn for it): each row
    of the group is resolved whole, once.

    A value (or zip row) that fails with the base is tried with each value of each other axis (each
    row of each other group): one that resolves with some other axis's value is kept, and a point
    where the two cannot go together is an ``error`` row with its reason (a tester's find: a RoCE
    NIC axis beside a switch axis of an Ethernet and an InfiniBand switch was refused, as the base's
    switch is InfiniBand). A value that resolves with none is refused, with the base's reason."""
    from recsim.explore.points import point_config

    spec = check.spec
    try:
        _dry_resolve(point_config(spec, {}), whole=not places)
    except RecsimError as exc:
        raise check.fail(("base",), str(exc)) from None
    # The base's batch split is checked with the axes (one may change the batch or the ranks); where
    # it fails by itself, an axis none of whose values mends it is not at fault (``_base_at_fault``).
    base_split: str | None = None
    if places:
        try:
            _dry_resolve(point_config(spec, {}))
        except RecsimError as exc:
            base_split = str(exc)
    # The values each axis (or zip column) can take by itself, for every column first.
    for where, axis, values in places:
        shown = f"{where[0]}.{axis}" if where[0] == "axes" else format_path(where)
        if axis in ("precision", "comm_dtype"):
            allowed = PRECISIONS if axis == "precision" else COMM_DTYPES
            bad = [v for v in values if v not in allowed]
            if bad:
                raise check.fail(where, f"unknown {axis} {bad[0]!r}; allowed: {', '.join(allowed)}", shown)
        if axis in ("nodes", "batch_size"):
            bad = [v for v in values if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1)]
            if bad:
                raise check.fail(where, f"expected positive integers, got {bad[0]!r}", shown)
    # Then each value of a product axis with the base, and each row of a zip group whole.
    for where, axis, values in places:
        if where[0] == "zip":
            continue
        shown = f"{where[0]}.{axis}"
        for j, value in enumerate(values):
            try:
                _dry_resolve(point_config(spec, {axis: value}))
            except RecsimError as exc:
                if _resolves_with_another_axis(spec, {axis: value}, (axis,)):
                    continue
                if base_split is not None and _base_at_fault(spec, axis, values):
                    # A tester's find: base.batch_size 65537 on 8 GPUs a node was blamed on the
                    # first axis (``axes.nodes: global batch 65537 is not divisible by 8 ranks``).
                    at = ("base", "batch_size") if spec.base.batch_size is not None else ("base",)
                    raise check.fail(at, f"{base_split} (and with every value of {shown})") from None
                # The first value stands for the axis (an unknown path fails there); a later one
                # is named by its index. The spec's location and axis replace the loader's own
                # label of the override the axis became (``--set PATH=VALUE: PATH: ``).
                label = shown if j == 0 else f"{shown}[{j}]"
                message = re.sub(r"^--set [^=:]+=[^:]*: (?:[\w.\[\]]+: )?", "", str(exc))
                raise check.fail((*where, j), message, label) from None
    for i, group in enumerate(spec.zipped):
        rows = min((len(column) for column in group.values()), default=0)
        for j in range(rows):
            row = {path: column[j] for path, column in group.items()}
            try:
                _dry_resolve(point_config(spec, row))
            except RecsimError as exc:
                if _resolves_with_another_axis(spec, row, tuple(group)):
                    continue
                # A row's values go together: the message keeps the override label, which names
                # the path at fault among the row's.
                raise check.fail(("zip", i), str(exc), f"zip[{i}] row {j}") from None


def _base_at_fault(spec: SweepSpec, axis: str, values: list[Any]) -> bool:
    """Whether no value of the product ``axis`` resolves with the base (nor with another axis's
    value): the base point, which fails by itself, is then what to mend, not the axis. A value that
    fails without the batch split (a misspelt axis key, a value out of range) is the axis's fault
    whatever the base's batch (a reviewer's find: a misspelt axis beside base.batch_size 65537
    was reported as the batch)."""
    from recsim.explore.points import point_config

    for value in values:
        config = point_config(spec, {axis: value})
        try:
            _dry_resolve(config, whole=False)
        except RecsimError:
            return False
        try:
            _dry_resolve(config)
        except RecsimError:
            if _resolves_with_another_axis(spec, {axis: value}, (axis,)):
                return False
            continue
        return False
    return True


def _resolves_with_another_axis(spec: SweepSpec, values: dict[str, Any], own: tuple[str, ...]) -> bool:
    """Whether the point of ``values`` over the base resolves with some value of another axis (a
    row of another zip group) set too: the values that failed with the base then go with it."""
    from recsim.explore.points import point_config

    for dimension in spec.dimensions:
        if dimension == own:
            continue
        columns = [spec.axes[dimension[0]]] if len(dimension) == 1 and dimension[0] in spec.axes else None
        if columns is None:
            group = next(g for g in spec.zipped if tuple(g) == dimension)
            columns = list(group.values())
        for row in zip(*columns, strict=True):
            try:
                _dry_resolve(point_config(spec, {**values, **dict(zip(dimension, row, strict=True))}))
            except RecsimError:
                continue
            return True
    return False


def _dry_resolve(config: dict[str, Any], *, whole: bool = True) -> None:
    """``api.check_run`` on a point's configuration, and (``whole``: a point that runs, not the base
    alone, whose batch an axis may replace) the global batch divides among its ranks: ``recsim run
    --batch-size 2047`` on 8 GPUs is a user error, so is a sweep value that makes it (a tester's
    ``batch_size: [2048, 2047]`` ran, and the 2047 point was an ``infeasible`` row)."""
    from recsim import api
    from recsim.errors import batch_split_error

    system, workload = api.check_run(
        config["system"],
        config["workload"],
        plan=config["plan"],
        nodes=config["nodes"],
        batch_size=config["batch_size"],
        precision=config["precision"],
        overrides=config["overrides"],
    )
    if not whole:
        return
    ranks = system.num_accelerators
    batch = workload.training.global_batch_size
    if ranks > 0 and batch % ranks:
        raise ConfigError(batch_split_error(batch, ranks))
