"""Saved sharding plans: a ``Plan`` as a JSON file (optionally gzip), exact round trip, strict reading.

A plan file is one JSON object::

    {
     "format": "recsim-plan",
     "version": 1,
     "world_size": 2,
     "strategy": "table_wise_round_robin",
     "comm_dtype": "fp32",
     "notes": [],
     "shards": [
      {"table": "a", "sharding": "table_wise", "rows": [0, 100], "columns": [0, 4], "ranks": [0],
       "tier": "hbm", "dtype": "fp32", "order": "id"},
      ...
     ]
    }

``rows`` and ``columns`` are half-open ranges ``[start, end)`` of the table; ``ranks`` the ranks that
hold the block (every rank for ``data_parallel``, one rank otherwise); ``tier`` a memory tier with
its optional parameter (``hbm``, ``uvm_caching:0.1``); ``dtype`` the storage dtype, or ``null`` for
the workload's; ``order`` ``id`` or ``popularity`` (see ``recsim.planner.types``). An optional
``"bottom_rank": R`` runs the bottom MLP model-parallel on rank ``R`` (``Plan.bottom_rank``), an
optional ``"row_split_exchange": "node" | "flat"`` says how row splits over several nodes are reduced
(``Plan.row_split_exchange``). ``save_plan``
writes one shard per line, so plans diff well; a path ending in ``.gz`` is gzip-compressed.

Reading is strict: a missing or unknown key, a wrong type, another format or version, an unknown
sharding, order, dtype or tier, or an empty range is a ``ConfigError`` of one line naming the file,
the key path and what was expected, e.g. ``plan.json: shards[3].rows: expected [start, end] with
0 <= start < end, got [5, 5]``. Whether the plan fits a workload (every table covered once) is
``Plan.validate``'s check, done when the plan is used.

``load_plan`` also reads the output of ``recsim plan --json``: the plan object under its ``plan``
key, as strictly (errors then name ``FILE: plan``), if its ``status`` is ``feasible``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsim.errors import ConfigError, TraceError
from recsim.graph.native import load_json
from recsim.output import write_text
from recsim.paths import user_path
from recsim.planner.types import (
    COMM_DTYPES,
    EMBEDDING_DTYPES,
    ROW_ORDERS,
    ROW_SPLIT_EXCHANGES,
    SHARDING_TYPES,
    Plan,
    Shard,
)

PLAN_FORMAT = "recsim-plan"
PLAN_VERSION = 1
PLAN_KEYS = ("format", "version", "world_size", "strategy", "comm_dtype", "notes", "shards")
#: Keys a plan file may leave out (files written before they existed), with their default.
OPTIONAL_PLAN_KEYS: dict[str, Any] = {"bottom_rank": None, "row_split_exchange": None}
SHARD_KEYS = ("table", "sharding", "rows", "columns", "ranks", "tier", "dtype", "order")


# ------------------------------------------------------------------------------------- writing


def _shard_to_dict(shard: Shard) -> dict[str, Any]:
    return {
        "table": shard.table,
        "sharding": shard.sharding,
        "rows": [shard.row_start, shard.row_end],
        "columns": [shard.col_start, shard.col_end],
        "ranks": list(shard.ranks),
        "tier": shard.tier,
        "dtype": shard.dtype,
        "order": shard.order,
    }


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The JSON object of ``plan`` (plain lists and dicts; ``plan_from_dict`` reads it back equal)."""
    return {
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "world_size": plan.world_size,
        "strategy": plan.strategy,
        "comm_dtype": plan.comm_dtype,
        **({"bottom_rank": plan.bottom_rank} if plan.bottom_rank is not None else {}),
        **({"row_split_exchange": plan.row_split_exchange} if plan.row_split_exchange is not None else {}),
        "notes": list(plan.notes),
        "shards": [_shard_to_dict(s) for s in plan.shards],
    }


def plan_to_json(plan: Plan) -> str:
    """``plan`` as JSON text: the header keys one per line, then one shard per line."""
    data = plan_to_dict(plan)
    shards = data.pop("shards")
    lines = [f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}," for key, value in data.items()]
    body = ",\n".join(f"  {json.dumps(s, ensure_ascii=False)}" for s in shards)
    lines.append(' "shards": [' + (f"\n{body}\n ]" if shards else "]"))
    return "{\n" + "\n".join(lines) + "\n}\n"


def save_plan(plan: Plan, path: str | Path) -> None:
    """Write ``plan`` to ``path`` (gzip if it ends in ``.gz``), atomically."""
    write_text(Path(path), plan_to_json(plan), "plan")


def is_plan_file(path: str | Path) -> bool:
    """Whether ``path`` holds a plan recsim wrote (JSON, gzip or not, of ``format: recsim-plan``):
    a file ``recsim plan --out`` may replace."""
    import gzip

    try:
        raw = Path(path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        data = json.loads(raw)
    except (OSError, ValueError, EOFError):
        return False
    return isinstance(data, dict) and data.get("format") == PLAN_FORMAT


# ------------------------------------------------------------------------------------- reading


def _show(value: Any) -> str:
    """``value`` as it appears in the file, shortened to keep the error on one line."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Reader:
    """Typed access to one plan object; every failure is one ``ConfigError`` line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: expected {expected}, got {_show(value)}")

    def keys(self, data: Any, where: str, keys: Sequence[str]) -> dict[str, Any]:
        label = where or "top level"
        if not isinstance(data, dict):
            raise self.fail(label, "a JSON object", data)
        unknown = [k for k in data if k not in keys]
        if unknown:
            raise ConfigError(
                f"{self.source}: {label}: unknown key {unknown[0]!r} (expected keys: {', '.join(keys)})"
            )
        missing = [k for k in keys if k not in data]
        if missing:
            raise ConfigError(f"{self.source}: {label}: missing key {missing[0]!r}")
        return data

    def int_(self, value: Any, where: str, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(where, f"an integer >= {minimum}", value)
        return value

    def str_(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, "a string", value)
        return value

    def choice(self, value: Any, where: str, choices: Sequence[str]) -> str:
        if not isinstance(value, str) or value not in choices:
            raise self.fail(where, f"one of {', '.join(choices)}", value)
        return value

    def range_(self, value: Any, where: str) -> tuple[int, int]:
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and 0 <= value[0] < value[1]
        )
        if not ok:
            raise self.fail(where, "[start, end] with 0 <= start < end", value)
        return value[0], value[1]

    def ranks(self, value: Any, where: str, world_size: int) -> tuple[int, ...]:
        ok = (
            isinstance(value, list)
            and len(value) > 0
            and all(isinstance(r, int) and not isinstance(r, bool) and 0 <= r < world_size for r in value)
            and len(set(value)) == len(value)
        )
        if not ok:
            raise self.fail(
                where, f"a non-empty list of distinct integer ranks in 0..{world_size - 1}", value
            )
        return tuple(value)

    def tier(self, value: Any, where: str) -> str:
        tier = self.str_(value, where)
        from recsim.cost.embedding import parse_tier, registered_tiers, tier_model

        try:
            name, param = parse_tier(tier)
            tier_model(name).resolve_param(param)
        except ConfigError as exc:
            raise ConfigError(
                f"{self.source}: {where}: expected a tier ({', '.join(registered_tiers())}) with an "
                f"optional ':parameter', got {_show(value)} ({exc})"
            ) from None
        return tier

    def shard(self, data: Any, where: str, world_size: int) -> Shard:
        data = self.keys(data, where, SHARD_KEYS)
        row_start, row_end = self.range_(data["rows"], f"{where}.rows")
        col_start, col_end = self.range_(data["columns"], f"{where}.columns")
        dtype = data["dtype"]
        if dtype is not None:
            dtype = self.choice(dtype, f"{where}.dtype", EMBEDDING_DTYPES)
        return Shard(
            table=self.str_(data["table"], f"{where}.table"),
            sharding=self.choice(data["sharding"], f"{where}.sharding", SHARDING_TYPES),
            row_start=row_start,
            row_end=row_end,
            col_start=col_start,
            col_end=col_end,
            ranks=self.ranks(data["ranks"], f"{where}.ranks", world_size),
            tier=self.tier(data["tier"], f"{where}.tier"),
            dtype=dtype,
            order=self.choice(data["order"], f"{where}.order", ROW_ORDERS),
        )


def plan_from_dict(data: Any, source: str = "<plan>") -> Plan:
    """The ``Plan`` of a plan object; ``source`` (the file) starts every error message."""
    read = _Reader(source)
    if isinstance(data, dict) and "format" in data and data["format"] != PLAN_FORMAT:
        raise read.fail("format", repr(PLAN_FORMAT), data["format"])
    optional = {k: data.get(k, v) for k, v in OPTIONAL_PLAN_KEYS.items()} if isinstance(data, dict) else {}
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in OPTIONAL_PLAN_KEYS}
    data = read.keys(data, "", PLAN_KEYS)
    version = data["version"]
    if type(version) is not int or version != PLAN_VERSION:
        raise read.fail("version", f"{PLAN_VERSION} (the plan format version this recsim reads)", version)
    world_size = read.int_(data["world_size"], "world_size", minimum=1)
    notes = data["notes"]
    if not isinstance(notes, list):
        raise read.fail("notes", "a list of strings", notes)
    shards = data["shards"]
    if not isinstance(shards, list):
        raise read.fail("shards", "a list of shard objects", shards)
    return Plan(
        world_size=world_size,
        shards=tuple(read.shard(s, f"shards[{i}]", world_size) for i, s in enumerate(shards)),
        strategy=read.str_(data["strategy"], "strategy"),
        notes=tuple(read.str_(n, f"notes[{i}]") for i, n in enumerate(notes)),
        comm_dtype=read.choice(data["comm_dtype"], "comm_dtype", COMM_DTYPES),
        bottom_rank=None
        if optional["bottom_rank"] is None
        else read.int_(optional["bottom_rank"], "bottom_rank", minimum=0),
        row_split_exchange=None
        if optional["row_split_exchange"] is None
        else read.choice(optional["row_split_exchange"], "row_split_exchange", ROW_SPLIT_EXCHANGES[1:]),
    )


def load_plan(path: str | Path) -> Plan:
    """Read a plan written by ``save_plan`` (plain or gzip JSON), or the plan of a ``recsim plan
    --json`` document (``stats_plan``); errors are one ``ConfigError`` line."""
    if not isinstance(path, (str, Path)):  # a notebook's None was a TypeError from Path()
        raise ConfigError(f"plan file: expected the path of a plan file, got {path!r}")
    path = user_path(path, "plan file")
    try:
        data = load_json(path, unique_keys=True)
    except TraceError as exc:
        raise ConfigError(str(exc)) from None
    found = stats_plan(data, str(path))
    if found is not None:
        return plan_from_dict(found, f"{path}: plan")
    return plan_from_dict(data, str(path))


def stats_plan(data: Any, source: str) -> Any | None:
    """The ``plan`` member of a ``recsim plan --json`` document (``PlanStats.to_dict()``: no
    ``format`` key, a ``status`` and the plan object under ``plan``), None for anything else (read
    as a plan file). A tester saved ``recsim plan --json > plan.json`` and ``recsim run --plan
    plan.json`` answered "unknown key 'status'". A plan that does not fit is refused, as ``recsim
    plan --out`` does not save one."""
    if not isinstance(data, dict) or "format" in data or "status" not in data:
        return None
    plan = data.get("plan")
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        return None
    if data["status"] != "feasible":
        reason = data.get("reason")
        raise ConfigError(
            f"{source}: a `recsim plan --json` document whose plan does not fit (status "
            f"{_show(data['status'])}" + (f": {reason}" if isinstance(reason, str) else "") + ")"
        )
    return plan


def is_plan_path(strategy: str | Path) -> bool:
    """Whether a ``--plan`` value looks like a plan file: a ``Path``, a ``.json``/``.json.gz`` name or an
    existing file (callers check their strategy names first)."""
    if isinstance(strategy, Path):
        return True
    if strategy.endswith((".json", ".json.gz")):
        return True
    try:
        return Path(strategy).is_file()
    except (OSError, ValueError):  # a name too long for a path, or with a NUL byte
        return False
