"""Evaluate one sweep point at one fidelity: simulate it, check the constraints, make a record.

``evaluate_point`` is a top-level function of picklable arguments, so a process pool or a Dask worker
can run it. It never raises for a problem of the point: a ``RecsimError`` (an infeasible plan, a bad
combination of values) becomes a record with status ``infeasible`` or ``error`` and the one-line
reason; any other exception (a bug) a record with status ``error`` naming the exception type. A
point whose simulation is ok but that violates a constraint is ``infeasible``, with the constraint
in the reason and its metrics kept (a plot marks it).
"""

from __future__ import annotations

import math
import time
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
