"""Evaluate one sweep point at one fidelity: simulate it, check the constraints, make a record.

``evaluate_point`` is a top-level function of picklable arguments, so a process pool or a Dask worker
can run it. It never raises for a problem of the point: a ``RecsimError`` (an infeasible plan, a bad
combination of values) becomes a record with status ``infeasible`` or ``error`` and the one-line
reason; any other exception (a bug) a record with status ``error`` naming the exception type. A
point whose simulation is ok but that violates a constraint is ``infeasible``, with the constraint
in the reason and its metrics kept (a plot marks it).
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

from recsim.errors import InfeasibleError, RecsimError
from recsim.explore.points import Point, point_from_values
from recsim.explore.records import PointRecord
from recsim.explore.spec import Stage, SweepSpec
from recsim.fingerprint import model_fingerprint

# Result fields that are record fields (status, reason) or not a figure (notes).
# A result's notes are kept with its metrics (a list: a precision run at a wider dtype's peak, say),
# so a sweep's rows say what they say in ``recsim run``.
_NOT_METRICS = ("status", "reason")


def evaluate_point(
    spec: SweepSpec, values: dict[str, Any] | Point, stage: Stage | str, index: int | None = None
) -> PointRecord:
    """Simulate the point with ``values`` (or a ``Point``) at ``stage``'s fidelity; a ``PointRecord``."""
    point = values if isinstance(values, Point) else point_from_values(spec, values)
    fidelity = stage.fidelity if isinstance(stage, Stage) else str(stage)
    # The model that made the point (``recsim.fingerprint``): the sweep refuses a worker's point
    # made by other code than its own (a stale notebook kernel, a Dask worker on another install).
    config = {**point.config, "fidelity": fidelity, "model": model_fingerprint()}
    start = time.perf_counter()
    status, reason, metrics = _simulate(spec, config)
    # What the point's files resolved to (``point_inputs``): a resumed sweep checks it against
    # what they resolve to then, so an edited system or workload file is not mixed in unseen.
    config["inputs"] = point_inputs(config, metrics.get("resolved_config_hash"))
    return PointRecord(
        index=point.index if index is None else index,
        key=point.key,
        values=dict(point.values),
        stage=fidelity,
        status=status,
        reason=reason,
        metrics=metrics,
        config=config,
        wall_s=time.perf_counter() - start,
    )


def _simulate(spec: SweepSpec, config: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    from recsim import api

    kwargs: dict[str, Any] = {
        "nodes": config["nodes"],
        "batch_size": config["batch_size"],
        "precision": config["precision"],
        "plan": config["plan"],
        "fidelity": config["fidelity"],
        "overrides": list(config["overrides"]),
        "comm_dtype": config["comm_dtype"],
    }
    if config.get("steps") is not None:
        kwargs["steps"] = config["steps"]
    try:
        result = api.simulate(config["system"], config["workload"], **kwargs)
    except InfeasibleError as exc:
        return "infeasible", _one_line(str(exc)), {}
    except RecsimError as exc:
        return "error", _one_line(str(exc)), {}
    except Exception as exc:
        return "error", _one_line(f"{type(exc).__name__}: {exc}"), {}
    full = result.to_dict()
    metrics = {k: v for k, v in full.items() if k not in _NOT_METRICS}
    metrics.update(derived_metrics(metrics))
    if result.status != "ok":
        return result.status, _one_line(result.reason), metrics
    violated = [why for c in spec.constraint_list if (why := c.check(metrics))]
    if violated:
        return "infeasible", "; ".join(violated), metrics
    return "ok", "", metrics


def point_inputs(config: dict[str, Any], resolved: str | None = None) -> str:
    """16 hex digits naming what a point's inputs resolve to: its system's and workload's resolved
    configs (``Result.resolved_config_hash``: every file they read, extends and referenced devices
    included, with the point's ``--set`` texts; ``resolved`` when the simulation gave it, else
    resolved here) and the bytes of its plan file. The model fingerprint covers the shipped
    library; a user's own files change without recsim changing (a tester resumed a sweep after
    editing a system file: the old points stayed, and the front ranked two NICs' figures together)."""
    from recsim import api
    from recsim.config.loader import is_path_ref
    from recsim.engine.simulate import resolved_config_hash

    if resolved is None:
        try:
            system, workload = api.prepare(
                config["system"],
                config["workload"],
                nodes=config["nodes"],
                batch_size=config["batch_size"],
                precision=config["precision"],
                overrides=list(config["overrides"]),
            )
            resolved = resolved_config_hash(system, workload)
        except RecsimError as exc:
            resolved = "unresolved: " + _one_line(str(exc))
    parts = [resolved]
    plan = config.get("plan")
    if isinstance(plan, str) and is_path_ref(plan):
        try:
            parts.append(hashlib.sha256(Path(plan).expanduser().read_bytes()).hexdigest())
        except OSError as exc:
            parts.append(f"plan file unreadable: {exc.strerror or exc}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def derived_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Sweep-derived figures: accelerators, nodes, throughput per accelerator."""
    out: dict[str, Any] = {}
    accelerators = metrics.get("num_accelerators") or 0
    out["num_accelerators"] = int(accelerators)
    throughput = metrics.get("throughput_samples_per_s")
    per_acc = throughput / accelerators if throughput is not None and accelerators else None
    out["throughput_per_accelerator"] = per_acc if per_acc is None or math.isfinite(per_acc) else None
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())
