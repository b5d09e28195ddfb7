"""``PointRecord``: one evaluated point of a sweep, as the store keeps it.

A record is what an executor hands back for one (point, stage): the axis values that define the
point, its key (a 16-hex hash of the resolved point config, the store's unique key together with
the stage), the outcome (``ok``, ``infeasible`` with the violated constraint or the planner's reason,
``error`` with the exception), the flat metrics of ``Result.to_dict()`` plus sweep-derived keys, a
JSON-able summary of the resolved config, and how long the evaluation took.

``to_row()`` flattens a record for a DataFrame / Parquet (``values.<path>`` columns, metrics as-is,
``config`` as JSON text); ``to_json()`` / ``from_json()`` round-trip it exactly through the store.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("ok", "infeasible", "error")
STAGES = ("analytic", "des")

# Columns of ``to_row()`` that are not axis values or metrics.
ROW_FIELDS = ("index", "key", "stage", "status", "reason", "wall_s")


def _jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as None and tuples as lists, so JSON text is strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class PointRecord:
    """One evaluated point of a sweep at one fidelity stage."""

    index: int
    key: str
    values: dict[str, Any]
    stage: str
    status: str
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_row(self) -> dict[str, Any]:
        """Flat dict: the record fields, ``values.<path>`` per axis, metrics keys as-is, ``config``
        as JSON text (a metric never shadows a record field)."""
        row: dict[str, Any] = {
            "index": self.index,
            "key": self.key,
            "stage": self.stage,
            "status": self.status,
            "reason": self.reason,
            "wall_s": self.wall_s,
        }
        for path, value in self.values.items():
            row[f"values.{path}"] = value if not isinstance(value, (list, dict)) else json.dumps(value)
        for name, value in self.metrics.items():
            if name in row or name == "config":
                name = f"metrics.{name}"
            row[name] = json.dumps(value) if isinstance(value, (list, dict)) else value
        row["config"] = json.dumps(_jsonable(self.config), sort_keys=True)
        return row

    def to_json(self) -> str:
        """The record as strict JSON text (NaN/inf become null)."""
        return json.dumps(_jsonable(asdict(self)), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> PointRecord:
        data = json.loads(text)
        return cls(
            index=int(data["index"]),
            key=str(data["key"]),
            values=dict(data.get("values") or {}),
            stage=str(data["stage"]),
            status=str(data["status"]),
            reason=str(data.get("reason") or ""),
            metrics=dict(data.get("metrics") or {}),
            config=dict(data.get("config") or {}),
            wall_s=float(data.get("wall_s") or 0.0),
        )

    def same_outcome(self, other: PointRecord) -> bool:
        """Equal except for ``wall_s`` (what two executors must agree on)."""
        return self.to_json_without_wall() == other.to_json_without_wall()

    def to_json_without_wall(self) -> str:
        data = _jsonable(asdict(self))
        data.pop("wall_s", None)
        return json.dumps(data, sort_keys=True, allow_nan=False)
