"""Golden regression cases: reference configs with expected metrics and tolerances, for CI.

A golden folder ``DIR`` holds one sub-folder per case (or is itself one case)::

    DIR/<case>/config.yaml     what to simulate: the keyword arguments of ``recsim.api.simulate``
    DIR/<case>/expected.json   {"metrics": {name: value}, "tolerances": {name: rel. tolerance},
                                "default_tolerance": 0.02}

``config.yaml`` keys: ``system`` and ``workload`` (library names, or paths relative to the case
folder), ``nodes``, ``batch_size``, ``precision``, ``plan`` (a strategy, or a plan file relative to
the case folder), ``fidelity``, ``comm_dtype``, ``steps``, ``overrides`` (``--set`` strings), and
optionally ``description``, ``hardware_path`` / ``workload_path`` (extra library folders, relative
to the case folder, searched before ``$RECSIM_HARDWARE_PATH`` / ``$RECSIM_WORKLOAD_PATH``). Any other
key is an error naming the file, line and key.

``check`` simulates every case and compares each expected metric with the fresh ``Result.to_dict()``:
floats by relative error (``|actual - expected| / |expected|``) against the metric's tolerance or the
file's ``default_tolerance``; integers, strings (``status`` above all), booleans and nulls must match
exactly unless the metric has its own tolerance. An ``expected.json`` that expects no metric, or
names one ``Result.to_dict()`` does not have, or gives one a value of the wrong kind (text for a
time, a NaN), is malformed (``ConfigError``, exit 2), not a pass or a failure.

An expected 0 has no scale of its own (an absolute difference would be 0.02 s, longer than a step,
for a time, and 0.02 bytes for a memory peak). A component of a whole is then measured against the
whole (``relative_to``): ``breakdown_s.*`` against ``iteration_time_s``, ``power_by_component_w.*``
against ``avg_power_w``, ``memory_peak_bytes.*`` against the largest memory peak, ``utilisation.*``
and ``utilisation_max.*`` against 1 (the expected file's whole, else the fresh result's); so an
all-to-all expected to take no time fails once it takes more than the tolerance times the step. Any
other metric expected to be 0 (or a component whose whole is 0 or absent) must stay 0: its error is
``|actual| / |actual|``, 100 % unless it is still 0.

A plan that does not fit (the planner finds none, the memory check fails) is a result with status
``infeasible`` and its reason, as a sweep stores it: a case may expect it (``check`` fails once it
runs, and a case expected to run fails once it no longer fits). ``update`` rewrites
``expected.json`` from the fresh results, keeping the tolerances and, when the file lists only some
metrics, that selection (``all_metrics=True`` records every one; the status, and the reason of a
run that is not ok, always); it records an infeasible result, and refuses to record a failed
simulation (status ``error``) unless the case expects exactly that.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from recsim.config.loader import is_path_ref
from recsim.config.validate import validate_tree
from recsim.config.yamlio import load_yaml_file
from recsim.engine import MAX_STEPS
from recsim.errors import ConfigError, InfeasibleError, NoPlanError, RecsimError

__all__ = [
    "DEFAULT_TOLERANCE",
    "GoldenConfig",
    "GoldenResult",
    "MetricCheck",
    "case_dirs",
    "check",
    "check_case",
    "load_case",
    "update",
]

CONFIG_NAME: Final[str] = "config.yaml"
EXPECTED_NAME: Final[str] = "expected.json"
DEFAULT_TOLERANCE: Final[float] = 0.02
#: Metrics ``update`` does not record by default: they change with every release, not with results.
VOLATILE: Final[frozenset[str]] = frozenset({"recsim_version", "notes", "resolved_config_hash"})

_ENV_LOCK = threading.Lock()


class GoldenConfig(BaseModel):
    """``config.yaml`` of a golden case."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    description: str = ""
    system: str
    workload: str
    nodes: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    precision: Literal["fp32", "tf32", "fp16", "bf16"] | None = None
    plan: str = "auto"
    fidelity: Literal["analytic", "des"] = "analytic"
    comm_dtype: Literal["fp32", "fp16", "bf16", "fp8", "int8"] | None = None
    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    overrides: list[str] = Field(default_factory=list)
    hardware_path: list[str] = Field(default_factory=list)
    workload_path: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Expected:
    """``expected.json`` of a golden case."""

    metrics: dict[str, Any]
    tolerances: dict[str, float] = field(default_factory=dict)
    default_tolerance: float = DEFAULT_TOLERANCE
    extra: dict[str, Any] = field(default_factory=dict)  # "description", kept by update

    def tolerance(self, name: str) -> float:
        return self.tolerances.get(name, self.default_tolerance)


@dataclass(frozen=True)
class MetricCheck:
    """One expected metric against the fresh value."""

    name: str
    expected: Any
    actual: Any
    tolerance: float | None  # None: exact match
    error: float | None  # relative error (see the module docstring); None for exact checks
    passed: bool
    relative_to: str | None = None  # the whole an expected 0 is measured against, e.g. "iteration_time_s"

    def describe(self) -> str:
        if self.tolerance is None or self.error is None:
            return f"{self.name}: expected {self.expected!r}, got {self.actual!r}"
        of = f" of {self.relative_to}" if self.relative_to else ""
        return (
            f"{self.name}: expected {self.expected:.6g}, got {self.actual:.6g} "
            f"(error {self.error:.2%}{of} > {self.tolerance:.2%})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expected": self.expected,
            "actual": self.actual,
            "tolerance": self.tolerance,
            "error": self.error,
            "relative_to": self.relative_to,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class GoldenResult:
    """The outcome of one golden case."""

    case: str
    path: Path
    status: str  # the simulated Result's status ("error" if the simulation raised)
    reason: str
    checks: tuple[MetricCheck, ...]
    wall_s: float

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[MetricCheck]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "path": str(self.path),
            "passed": self.passed,
            "status": self.status,
            "reason": self.reason,
            "wall_s": self.wall_s,
            "checks": [c.to_dict() for c in self.checks],
        }


# ---------------------------------------------------------------------------------- files


def case_dirs(root: Path, cases: Sequence[str] | None = None) -> list[Path]:
    """The case folders under ``root`` (sorted), or ``root`` itself if it holds a ``config.yaml``;
    ``cases`` picks some by folder name."""
    root = Path(root)
    if root.is_file():
        raise ConfigError(
            f"{root}: a file, not a golden folder: give the folder of cases, or a case folder holding "
            f"{CONFIG_NAME}"
        )
    if not root.is_dir():
        raise ConfigError(f"{root}: no such golden folder")
    if (root / CONFIG_NAME).is_file():
        found = [root]
    else:
        found = sorted(p for p in root.iterdir() if p.is_dir() and (p / CONFIG_NAME).is_file())
    if not found:
        raise ConfigError(f"{root}: no golden cases (folders with a {CONFIG_NAME})")
    if cases:
        by_name = {p.name: p for p in found}
        unknown = [c for c in cases if c not in by_name]
        if unknown:
            raise ConfigError(f"{root}: no golden case {unknown[0]!r} (cases: {', '.join(sorted(by_name))})")
        found = [by_name[c] for c in dict.fromkeys(cases)]  # a case named twice runs once
    return found


def load_case(case: Path) -> GoldenConfig:
    """The validated ``config.yaml`` of a case folder."""
    tree = load_yaml_file(Path(case) / CONFIG_NAME)
    config = validate_tree(GoldenConfig, tree)
    # A library folder that is not there, named at its line and key (a tester's case said only
    # "config.yaml: no such library folder ..."), before any case of the folder runs.
    for key in ("hardware_path", "workload_path"):
        for index, folder in enumerate(getattr(config, key)):
            full = (Path(case) / folder).resolve()
            if not full.is_dir():
                where = tree.location((key, index))
                raise ConfigError(f"{where}: {key}[{index}]: no such folder {full}")
    return config


def load_expected(case: Path, *, recorded: bool = True) -> Expected:
    """The validated ``expected.json`` of a case folder: each metric a figure of ``Result.to_dict()``
    with a value of its kind (a finite number or null, a string, a boolean). ``recorded``: the file
    must expect at least one metric (``check`` of a file with none would pass whatever the result:
    a tester's find); ``update``, which records them, reads one with none."""
    path = Path(case) / EXPECTED_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (record the expected metrics with `recsim golden update {case}`)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object with 'metrics' and 'tolerances'")
    allowed = {"metrics", "tolerances", "default_tolerance", "description"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        raise ConfigError(f"{path}: metrics: expected an object of metric name -> value")
    if recorded and not metrics:
        missing = "an empty object" if "metrics" in data else "missing"
        raise ConfigError(
            f"{path}: metrics: {missing}; expected an object of metric name -> value, at least one "
            f"(record them with `recsim golden update {case}`)"
        )
    for name, value in metrics.items():
        problem = _metric_problem(name, value)
        if problem:
            raise ConfigError(f"{path}: metrics.{name}: {problem}")
    tolerances = data.get("tolerances", {})
    if not isinstance(tolerances, dict):
        raise ConfigError(f"{path}: tolerances: expected an object of metric name -> relative tolerance")
    for name, tol in tolerances.items():
        if name not in metrics:
            raise ConfigError(f"{path}: tolerances.{name}: not one of the expected metrics")
        if not _is_number(tol) or not math.isfinite(tol) or tol < 0:
            raise ConfigError(f"{path}: tolerances.{name}: expected a number >= 0, got {tol!r}")
    default = data.get("default_tolerance", DEFAULT_TOLERANCE)
    if not _is_number(default) or not math.isfinite(default) or default < 0:
        raise ConfigError(f"{path}: default_tolerance: expected a number >= 0, got {default!r}")
    extra = {"description": data["description"]} if "description" in data else {}
    return Expected(dict(metrics), {k: float(v) for k, v in tolerances.items()}, float(default), extra)


#: The figures of ``Result.to_dict()`` that are text, and the one that is true or false; the others
#: are numbers (null where a result has none: an infeasible run's times, a training run's latencies).
_TEXT_METRICS: Final = (
    "status",
    "reason",
    "mode",
    "fidelity",
    "system",
    "workload",
    "plan",
    "resolved_config_hash",
    "recsim_version",
)
_BOOL_METRICS: Final = ("memory_fits",)
_STATUSES: Final = ("ok", "infeasible", "error")


def _metric_names() -> list[str]:
    """Every figure of ``Result.to_dict()`` an ``expected.json`` may expect (``notes``, a list, not):
    every result has the same keys, whatever its status, so a failed one's are all of them."""
    from recsim.metrics.result import Result

    return [name for name in Result.failed("error", "").to_dict() if name != "notes"]


def _metric_problem(name: str, value: Any) -> str:
    """What is wrong with an expected ``name: value`` (an unknown figure, a value of the wrong kind,
    a NaN), or ``""``."""
    import difflib

    names = _metric_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "see `recsim run --json` for the figures"
        return f"unknown metric; {hint}"
    if name in _TEXT_METRICS:
        if not isinstance(value, str):
            return f"expected text, got {value!r}"
        if name == "status" and value not in _STATUSES:
            return f"expected one of {', '.join(_STATUSES)}, got {value!r}"
        return ""
    if name in _BOOL_METRICS:
        return "" if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if value is None:
        return ""
    if not _is_number(value) or not math.isfinite(value):
        return f"expected a finite number or null, got {value!r}"
    return ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _write_json_atomic(path: Path, data: Any) -> None:
    from recsim.output import write_text

    write_text(path, json.dumps(data, indent=2) + "\n", "expected results")


# ---------------------------------------------------------------------------------- running


@contextmanager
def _library_paths(case: Path, config: GoldenConfig) -> Iterator[None]:
    """Prepend the case's ``hardware_path`` / ``workload_path`` folders to the library search."""
    changes = {
        "RECSIM_HARDWARE_PATH": [str((case / p).resolve()) for p in config.hardware_path],
        "RECSIM_WORKLOAD_PATH": [str((case / p).resolve()) for p in config.workload_path],
    }
    changes = {k: v for k, v in changes.items() if v}
    if not changes:
        yield
        return
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in changes}
        try:
            for key, folders in changes.items():
                for folder in folders:
                    if not Path(folder).is_dir():
                        raise ConfigError(f"{case / CONFIG_NAME}: no such library folder {folder}")
                os.environ[key] = os.pathsep.join([*folders, *filter(None, [saved[key]])])
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _ref(case: Path, ref: str) -> str:
    """A path reference made relative to the case folder; a library name as is."""
    if is_path_ref(ref) and not Path(ref).expanduser().is_absolute():
        return str(case / ref)
    return ref


def simulate_case(case: Path) -> tuple[dict[str, Any], str, str, float]:
    """(``Result.to_dict()``, status, reason, wall seconds) of a case; a plan that does not fit
    (``InfeasibleError``, as a sweep stores it) is a result with status ``infeasible``, any other
    ``RecsimError`` raised by the simulation one with status ``error`` (a case may expect either:
    ``update`` records an infeasible one). A case whose system,
    workload, overrides or plan name do not resolve is malformed instead: that raises
    (``ConfigError``, exit 2), as do problems of its own files."""
    from recsim import api
    from recsim.planner.io import is_plan_path

    case = Path(case)
    config = load_case(case)
    kwargs: dict[str, Any] = {
        "nodes": config.nodes,
        "batch_size": config.batch_size,
        "precision": config.precision,
        "plan": str(case / config.plan) if _is_plan_file(config.plan, is_plan_path) else config.plan,
        "fidelity": config.fidelity,
        "comm_dtype": config.comm_dtype,
        "overrides": list(config.overrides),
    }
    if config.steps is not None:
        kwargs["steps"] = config.steps
    start = time.perf_counter()
    with _library_paths(case, config):
        try:
            api.check_run(
                _ref(case, config.system),
                _ref(case, config.workload),
                plan=kwargs["plan"],
                nodes=kwargs["nodes"],
                batch_size=kwargs["batch_size"],
                precision=kwargs["precision"],
                overrides=kwargs["overrides"],
            )
        except ConfigError as exc:
            raise ConfigError(f"{case / CONFIG_NAME}: {exc}") from None
        try:
            result = api.simulate(_ref(case, config.system), _ref(case, config.workload), **kwargs)
        except NoPlanError as exc:
            # No plan fits: infeasible, as a sweep stores it, with the run's context (what
            # `recsim run --json` prints then).
            data = json.loads(json.dumps(exc.result.to_dict()))
            return data, "infeasible", str(exc), time.perf_counter() - start
        except InfeasibleError as exc:
            data = {"status": "infeasible", "reason": str(exc)}
            return data, "infeasible", str(exc), time.perf_counter() - start
        except RecsimError as exc:
            return {"status": "error", "reason": str(exc)}, "error", str(exc), time.perf_counter() - start
    data = json.loads(json.dumps(result.to_dict()))  # exactly what `recsim run --json` prints
    return data, result.status, result.reason, time.perf_counter() - start


def _is_plan_file(plan: str, is_plan_path: Any) -> bool:
    from recsim.planner.proposers import registered_proposers

    if plan in registered_proposers() or plan == "table_wise_round_robin":
        return False
    return bool(is_plan_path(plan)) and not Path(plan).expanduser().is_absolute()


def compare(expected: Expected, actual: dict[str, Any]) -> tuple[MetricCheck, ...]:
    """Each expected metric against ``actual`` (``status`` always checked, exactly)."""
    names = list(expected.metrics)
    if "status" not in expected.metrics:
        names.insert(0, "status")
    checks = []
    for name in names:
        want = expected.metrics.get(name, "ok")
        got = actual.get(name, _MISSING)
        own = name in expected.tolerances
        if got is _MISSING:
            checks.append(MetricCheck(name, want, None, None, None, False))
        elif _is_number(want) and _is_number(got) and (isinstance(want, float) or own):
            tol = expected.tolerance(name)
            diff = abs(float(got) - float(want))
            whole: tuple[float, str] | None = None
            if want != 0:
                error = diff / abs(float(want))
            else:
                whole = _whole(name, expected.metrics, actual)
                # No whole to be a part of: it must stay 0.
                error = diff / whole[0] if whole is not None else float(diff > 0)
            relative_to = whole[1] if whole is not None else None
            checks.append(MetricCheck(name, want, got, tol, error, bool(error <= tol), relative_to))
        else:
            same = want == got and isinstance(want, bool) == isinstance(got, bool)
            checks.append(MetricCheck(name, want, got, None, None, bool(same)))
    return tuple(checks)


_MISSING: Final[object] = object()

#: The whole each mapping figure's components are parts of (``_whole``).
_WHOLES: Final[dict[str, str]] = {"breakdown_s": "iteration_time_s", "power_by_component_w": "avg_power_w"}


def _whole(name: str, expected: dict[str, Any], actual: dict[str, Any]) -> tuple[float, str] | None:
    """``(value, label)`` of the whole that metric ``name`` (expected to be 0) is a part of, from
    the expected metrics or else the fresh result's; None when it is no part of one, or the whole
    is 0 or unknown (see the module docstring)."""
    head = name.partition(".")[0]
    if head in ("utilisation", "utilisation_max"):
        return 1.0, "1 (full utilisation)"
    if head in _WHOLES:
        total = _WHOLES[head]
        for source in (expected, actual):
            value = source.get(total)
            if _is_number(value) and math.isfinite(value) and value != 0:
                return abs(float(value)), total
        return None
    if head == "memory_peak_bytes":
        for source in (expected, actual):
            peaks = [
                abs(float(v))
                for k, v in source.items()
                if k.startswith("memory_peak_bytes.") and _is_number(v) and math.isfinite(v)
            ]
            if peaks and max(peaks) > 0:
                return max(peaks), "the largest memory peak"
        return None
    return None


def check_case(case: Path) -> GoldenResult:
    """Simulate one case and compare it with its ``expected.json``."""
    case = Path(case)
    expected = load_expected(case)
    load_case(case)  # config errors before the (slower) simulation
    actual, status, reason, wall = simulate_case(case)
    return GoldenResult(case.name, case, status, reason, compare(expected, actual), wall)


def check(root: Path, cases: Sequence[str] | None = None) -> list[GoldenResult]:
    """Run every golden case under ``root`` (or those named in ``cases``)."""
    found = case_dirs(root, cases)
    for case in found:  # every case's files before the first (slower) simulation
        load_expected(case)
        load_case(case)
    return [check_case(case) for case in found]


def update(root: Path, cases: Sequence[str] | None = None, *, all_metrics: bool = False) -> list[Path]:
    """Rewrite ``expected.json`` of each case from a fresh simulation, keeping its tolerances (and
    its selection of metrics unless ``all_metrics``); returns the files written.

    Every case is simulated before any file is written, and a simulation that fails (status
    ``error``) is refused rather than recorded as the expectation: one bad case leaves every file as
    it was. An infeasible one (a plan that does not fit) is recorded, with its status and reason.
    """
    pending: list[tuple[Path, dict[str, Any]]] = []
    found = case_dirs(root, cases)
    for case in found:  # every case's files before the first (slower) simulation
        load_case(case)
        if (case / EXPECTED_NAME).exists():
            load_expected(case, recorded=False)
    for case in found:
        path = case / EXPECTED_NAME
        old = load_expected(case, recorded=False) if path.exists() else Expected({})
        actual, status, reason, _wall = simulate_case(case)
        if status == "error" and old.metrics.get("status") != "error":
            # A failed run is not an expectation, unless the case expects exactly that.
            raise ConfigError(f"{case / CONFIG_NAME}: the simulation failed ({reason}); nothing was recorded")
        if old.metrics and not all_metrics:
            names = [n for n in old.metrics if n in actual]
        else:
            names = [n for n in actual if n not in VOLATILE]
        if status != "ok":
            # What a run that is not ok expects above all: its status, and why (a selection of
            # figures made while it ran may hold neither).
            names = [*(n for n in ("status", "reason") if n not in names and n in actual), *names]
        metrics = {n: actual[n] for n in names}
        tolerances = {n: t for n, t in old.tolerances.items() if n in metrics}
        data: dict[str, Any] = {
            **old.extra,
            "metrics": metrics,
            "tolerances": tolerances,
            "default_tolerance": old.default_tolerance,
        }
        pending.append((path, data))
    for path, data in pending:
        _write_json_atomic(path, data)
    return [path for path, _ in pending]
