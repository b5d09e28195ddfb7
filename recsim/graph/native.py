"""The native graph format: JSON (optionally gzip), versioned, exact round trip.

``{"schema": "recsim.execution_graph", "version": "1.2", "ranks": N, "metadata": {...},
"nodes": [{"id", "rank", "name", "stream", "deps", "lane", "duration_s", "start_s", "phase",
"op": {"kind": ..., fields of the op}}]}``. Floats are written with Python's shortest round-trip
repr, so reading a written graph gives back an equal graph. Another minor version is read with a
warning (the op fields a newer one adds are left out and named; an older one's missing fields take
their defaults); another major version is an error; the version is a ``"major.minor"`` string.
1.1 added ``Embedding.bags`` and ``Embedding.output_dtype``, 1.2 ``Embedding.atomic`` and the
``update`` lookup pass, 1.3 ``Embedding.cache_share``, 1.4 ``Embedding.inference``; the added
fields are written only when set.
From 1.2 a replicated table over several ranks carries a backward with optimizer ``none``
(gradient only) and an ``update`` node; a 1.1 reader of such a file refuses the unknown pass when it costs it.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import re
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from recsim.errors import TraceError, first_few
from recsim.graph.ir import (
    OP_TYPES,
    SCHEMA,
    SCHEMA_VERSION,
    Collective,
    CollectiveOp,
    Compute,
    ExecutionGraph,
    Node,
    Op,
    Stream,
)
from recsim.output import write_text

#: Op fields added after 1.0, written only when set: a reader of an older minor version (which
#: reads a newer file with a warning) then meets them only where they matter.
_LATER_FIELDS = frozenset({"bags", "output_dtype", "atomic", "cache_share", "inference", "accumulates"})
#: Later fields whose unset value is not None or False: written only when they differ from it.
_LATER_DEFAULTS: dict[str, object] = {"kernels": 1}


def _op_to_dict(op: Op) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": op.kind}
    for f in dataclasses.fields(op):
        value = getattr(op, f.name)
        if f.name in _LATER_FIELDS and (value is None or value is False):
            continue
        if f.name in _LATER_DEFAULTS and value == _LATER_DEFAULTS[f.name]:
            continue
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        data[f.name] = value.value if isinstance(value, CollectiveOp) else value
    return data


def _op_from_dict(data: dict[str, Any], where: str, dropped: set[str] | None = None) -> Op:
    """The op of ``data`` (checked by ``_check_op``); fields this version does not know are an
    error, or, given ``dropped`` (a newer minor version's file), left out and collected there."""
    kind = data["kind"]
    cls = OP_TYPES[kind]
    args = {k: v for k, v in data.items() if k != "kind"}
    if dropped is not None:
        args = {k: v for k, v in args.items() if k in _OP_SCHEMAS[kind]}
    if cls is Compute and "shapes" in args:
        args["shapes"] = tuple(tuple(s) for s in args["shapes"])
    if cls is Collective:
        args["op"] = CollectiveOp(args["op"])
        args["group"] = tuple(args["group"])
        for key in ("send_bytes", "recv_bytes"):
            if args.get(key) is not None:
                args[key] = tuple(args[key])
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:  # pragma: no cover - _check_op let through what it should not
        raise TraceError(f"{where}: bad {kind} op: {exc}") from None


# -- checking a document on read ------------------------------------------------------------------
#
# Each field of the document has a check: a predicate and what it expects, in words. A value that
# fails it is a ``TraceError`` naming the file, the key path and both (``FILE: nodes[1].duration_s:
# expected a number of seconds >= 0, got 'abc'``), never an exception from deep inside a command.


class _Check(NamedTuple):
    ok: Callable[[Any], bool]
    expected: str


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_number(v: Any) -> bool:
    return (type(v) is float and math.isfinite(v)) or type(v) is int


def _list_of(item: _Check, expected: str) -> _Check:
    return _Check(lambda v: type(v) is list and all(item.ok(x) for x in v), expected)


def _optional(check: _Check) -> _Check:
    return _Check(lambda v: v is None or check.ok(v), f"{check.expected}, or null")


_STR = _Check(lambda v: type(v) is str, "a string")
_BOOL = _Check(lambda v: type(v) is bool, "true or false")
_INDEX = _Check(lambda v: type(v) is int and v >= 0, "an integer >= 0")
# NaN fails every comparison.
_COUNT = _Check(
    lambda v: (type(v) is float and 0 <= v < math.inf) or (type(v) is int and v >= 0), "a number >= 0"
)
_BYTES = _Check(_COUNT.ok, "a number of bytes >= 0")
_SECONDS = _Check(_COUNT.ok, "a number of seconds >= 0")
_TIME = _Check(_is_number, "a number of seconds")
#: 2^53 us (285 years), the bound of a Kineto reader's timestamps (``readers.kineto``): past it a
#: double cannot hold a microsecond, and no recorded step lasts that long. A node's 1e300 s was
#: replayed as a step of 2.8e290 h without a word (a helper's find).
_MAX_RECORDED_S = 2.0**53 * 1e-6
_RECORDED_S = _Check(
    lambda v: _COUNT.ok(v) and v < _MAX_RECORDED_S, "a number of seconds >= 0 and below 2^53 us (285 years)"
)
_INDICES = _Check(
    lambda v: type(v) is list and all(type(x) is int and x >= 0 for x in v), "a list of integers >= 0"
)
_STRINGS = _list_of(_STR, "a list of strings")
_BYTE_LIST = _list_of(_BYTES, "a list of numbers of bytes >= 0")
_SHAPES = _Check(
    lambda v: type(v) is list and all(type(s) is list and all(type(d) is int for d in s) for s in v),
    "a list of shapes (lists of integers)",
)
_OBJECT = _Check(lambda v: type(v) is dict, "an object")
_STREAM = _Check(
    lambda v: type(v) is str and v in _STREAMS, "one of " + ", ".join(repr(s.value) for s in Stream)
)
_COLLECTIVE_OP = _Check(
    lambda v: type(v) is str and v in _COLLECTIVE_OPS,
    "one of " + ", ".join(repr(c.value) for c in CollectiveOp),
)
_STREAMS = frozenset(s.value for s in Stream)
_COLLECTIVE_OPS = frozenset(c.value for c in CollectiveOp)
_PASSES = ("forward", "backward", "sort", "update")
_PASS = _Check(lambda v: type(v) is str and v in _PASSES, "one of " + ", ".join(repr(p) for p in _PASSES))
#: More ranks than this is no job recsim simulates (and would make it allocate per rank).
_MAX_RANKS = 1 << 20
_RANKS = _Check(lambda v: _is_int(v) and 1 <= v <= _MAX_RANKS, f"an integer from 1 to {_MAX_RANKS}")

#: Every field of every op kind (``_OP_FIELDS_CHECKED`` keeps it in step with the dataclasses).
_OP_SCHEMAS: dict[str, dict[str, _Check]] = {
    "compute": {
        "op": _STR,
        "flops": _COUNT,
        "bytes_read": _BYTES,
        "bytes_written": _BYTES,
        "dtype": _STR,
        "shapes": _SHAPES,
        "category": _STR,
        "kernels": _Check(lambda v: type(v) is int and v >= 1, "an integer >= 1"),
        "accumulates": _BOOL,
    },
    "embedding": {
        "table": _STR,
        "pass_": _PASS,
        "rows": _INDEX,
        "dim": _INDEX,
        "dtype": _STR,
        "batch": _INDEX,
        "lookups": _COUNT,
        "unique_rows": _optional(_COUNT),
        "tier": _STR,
        "optimizer": _STR,
        "presorted": _BOOL,
        "bags": _optional(_COUNT),
        "output_dtype": _optional(_STR),
        "atomic": _BOOL,
        "cache_share": _optional(_COUNT),
        "inference": _BOOL,
    },
    "collective": {
        "op": _COLLECTIVE_OP,
        "key": _STR,
        "group": _INDICES,
        "bytes": _BYTES,
        "dtype": _STR,
        "send_bytes": _optional(_BYTE_LIST),
        "recv_bytes": _optional(_BYTE_LIST),
        "algorithm": _optional(_STR),
    },
    "transfer": {"src": _STR, "dst": _STR, "bytes": _BYTES},
    "host": {"op": _STR, "bytes": _BYTES, "cpu_s": _SECONDS},
}
#: The fields an op must have (those without a default).
_OP_REQUIRED = {
    kind: frozenset(f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING)
    for kind, cls in OP_TYPES.items()
}
_OP_FIELDS_CHECKED = all(
    set(_OP_SCHEMAS[kind]) == {f.name for f in dataclasses.fields(cls)} for kind, cls in OP_TYPES.items()
)
if not _OP_FIELDS_CHECKED:  # pragma: no cover - keep the checks in step with recsim.graph.ir
    raise ImportError("recsim.graph.native._OP_SCHEMAS: every op field needs a check")

_NODE_SCHEMA: dict[str, _Check] = {
    "id": _INDEX,
    "rank": _INDEX,
    "name": _STR,
    "stream": _STREAM,
    "op": _OBJECT,
    "deps": _INDICES,
    "lane": _INDEX,
    "duration_s": _optional(_RECORDED_S),
    "start_s": _optional(_RECORDED_S),
    "phase": _STR,
}
_NODE_REQUIRED = ("id", "rank", "name", "stream", "op")

#: The metadata the readers write and recsim's commands read; other keys are kept as they are.
_METADATA_SCHEMA: dict[str, _Check] = {
    "format": _STR,
    "source": _STR,
    "source_files": _STRINGS,
    "trace_ranks": _INDICES,
    "partial_collectives": _BOOL,
    "schema_versions": _STRINGS,
    "steps": _Check(lambda v: type(v) is list, "a list of profiler steps (objects)"),
    "waits": _Check(
        lambda v: type(v) is dict and all(_COUNT.ok(x) for x in v.values()),
        "an object of counts and seconds (numbers >= 0)",
    ),
    "device": _optional(_OBJECT),
    "notes": _STRINGS,
    "step_stride": _INDEX,
    "fused_tables": _OBJECT,
    "table_slices": _OBJECT,
}
_STEP_SCHEMA: dict[str, _Check] = {
    "name": _STR,
    "rank": _optional(_INDEX),
    "start_s": _TIME,
    "duration_s": _SECONDS,
}
_DEVICE_SCHEMA: dict[str, _Check] = {
    "name": _optional(_STR),
    "memory_bytes": _optional(_BYTES),
    "compute_capability": _optional(_STR),
}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(source: str, path: str, expected: str, value: Any) -> TraceError:
    return TraceError(f"{source}: {path}: expected {expected}, got {_shown(value)}")


def _check_fields(source: str, path: str, data: dict[str, Any], schema: dict[str, _Check]) -> None:
    for key, value in data.items():
        check = schema.get(key)
        if check is not None and not check.ok(value):
            raise _bad(source, f"{path}.{key}" if path else key, check.expected, value)


def _check_metadata(source: str, meta: Any) -> None:
    if type(meta) is not dict:
        raise _bad(source, "metadata", "an object", meta)
    _check_fields(source, "metadata", meta, _METADATA_SCHEMA)
    for i, step in enumerate(meta.get("steps") or ()):
        if type(step) is not dict:
            raise _bad(source, f"metadata.steps[{i}]", "an object", step)
        _check_fields(source, f"metadata.steps[{i}]", step, _STEP_SCHEMA)
    if meta.get("device") is not None:
        _check_fields(source, "metadata.device", meta["device"], _DEVICE_SCHEMA)


def _check_op(source: str, where: str, op: dict[str, Any], dropped: set[str] | None) -> None:
    kind = op.get("kind")
    if type(kind) is not str or kind not in _OP_SCHEMAS:
        if "kind" not in op:
            raise TraceError(f"{source}: {where}: missing 'kind' (one of {', '.join(_OP_SCHEMAS)})")
        raise TraceError(
            f"{source}: {where}.kind: unknown op kind {_shown(kind)} (one of {', '.join(_OP_SCHEMAS)})"
        )
    schema = _OP_SCHEMAS[kind]
    unknown = [k for k in op if k != "kind" and k not in schema]
    if unknown and dropped is None:
        raise TraceError(f"{source}: {where}: unknown {kind} field(s) {sorted(unknown)}")
    if unknown and dropped is not None:
        dropped.update(f"{kind}.{name}" for name in unknown)
    missing = sorted(_OP_REQUIRED[kind] - set(op))
    if missing:
        raise TraceError(f"{source}: {where}: {kind} op without {', '.join(missing)}")
    _check_fields(source, where, op, schema)
    if kind == "collective":
        size = len(op["group"])
        for key in ("send_bytes", "recv_bytes"):
            if op.get(key) is not None and len(op[key]) != size:
                raise TraceError(
                    f"{source}: {where}.{key}: expected one number per member of its group ({size}), "
                    f"got {len(op[key])}"
                )


def _check_node(source: str, i: int, raw: Any, dropped: set[str] | None) -> None:
    if type(raw) is not dict:
        raise _bad(source, f"nodes[{i}]", "an object (a node)", raw)
    where = f"nodes[{i}]"
    for key in _NODE_REQUIRED:
        if key not in raw:
            raise TraceError(f"{source}: {where}: missing {key!r}")
    unknown = [k for k in raw if k not in _NODE_SCHEMA]
    if unknown and dropped is None:
        raise TraceError(f"{source}: {where}: unknown node field(s) {sorted(unknown)}")
    if unknown and dropped is not None:
        dropped.update(f"node.{name}" for name in unknown)
    _check_fields(source, where, raw, _NODE_SCHEMA)
    _check_op(source, f"{where}.op", raw["op"], dropped)


def graph_to_dict(graph: ExecutionGraph) -> dict[str, Any]:
    if graph.metadata.get("rank_classes"):
        # A folded graph (``recsim.graph.build``, "Folded ranks") holds one rank for several: it
        # is no graph of the whole job to save or replay.
        raise ValueError(
            "a graph built with folded ranks (fold_ranks=True) lacks the ranks it folded: "
            "simulate with fold_ranks=False to save it"
        )
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "ranks": graph.ranks,
        "metadata": graph.metadata,
        "nodes": [
            {
                "id": n.id,
                "rank": n.rank,
                "name": n.name,
                "stream": n.stream.value,
                "deps": list(n.deps),
                "lane": n.lane,
                "duration_s": n.duration_s,
                "start_s": n.start_s,
                "phase": n.phase,
                "op": _op_to_dict(n.op),
            }
            for n in graph.nodes
        ],
    }


def graph_from_dict(data: Any, source: str = "<graph>") -> ExecutionGraph:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise TraceError(f"{source}: not a recsim execution graph (schema {SCHEMA!r} expected)")
    raw_version = data.get("version")
    parsed = _VERSION.fullmatch(raw_version) if isinstance(raw_version, str) else None
    ours = _VERSION.fullmatch(SCHEMA_VERSION)
    assert ours is not None
    if parsed is not None and int(parsed.group(1)) > int(ours.group(1)):
        raise TraceError(
            f"{source}: graph schema version {raw_version!r} is not supported: newer than this "
            f"recsim's ({ours.group(1)}.x, its own {SCHEMA_VERSION}); written by a newer recsim"
        )
    if parsed is None or parsed.group(1) != ours.group(1):
        raise TraceError(
            f"{source}: graph schema version {raw_version!r} is not supported "
            f"(expected a string like {SCHEMA_VERSION!r})"
        )
    version = str(raw_version)
    minor = int(parsed.group(2) or 0)
    newer = minor > int(ours.group(2))
    dropped: set[str] | None = set() if newer else None
    if version != SCHEMA_VERSION:
        note = ""
        if minor < 1:
            note = " (its embedding lookups carry no bag counts: one bag per sample of their batch)"
        warnings.warn(
            f"{source}: graph schema version {version}, reading as {SCHEMA_VERSION}{note}", stacklevel=2
        )
    if "ranks" not in data:
        raise TraceError(f"{source}: missing 'ranks' (the number of ranks of the graph)")
    if not _RANKS.ok(data["ranks"]):
        raise _bad(source, "ranks", _RANKS.expected, data["ranks"])
    raw_nodes = data.get("nodes", [])
    if type(raw_nodes) is not list:
        raise _bad(source, "nodes", "a list of nodes", raw_nodes)
    metadata = data.get("metadata", {})
    _check_metadata(source, metadata)
    for i, step in enumerate(metadata.get("steps") or ()):
        rank = step.get("rank")
        if rank is not None and rank >= data["ranks"]:
            # A step of a rank the graph does not have times nothing it holds.
            expected = f"a rank of the graph's {data['ranks']} (0..{data['ranks'] - 1})"
            raise _bad(source, f"metadata.steps[{i}].rank", expected, rank)
    nodes = []
    for i, raw in enumerate(raw_nodes):
        _check_node(source, i, raw, dropped)
        nodes.append(
            Node(
                id=raw["id"],
                rank=raw["rank"],
                name=raw["name"],
                stream=Stream(raw["stream"]),
                op=_op_from_dict(raw["op"], f"{source}: nodes[{i}].op", dropped),
                deps=tuple(raw.get("deps", ())),
                lane=raw.get("lane", 0),
                duration_s=raw.get("duration_s"),
                start_s=raw.get("start_s"),
                phase=raw.get("phase", ""),
            )
        )
    if dropped:
        warnings.warn(
            f"{source}: fields of schema version {version} this recsim does not know, left out: "
            f"{', '.join(sorted(dropped))}",
            stacklevel=2,
        )
    metadata = dict(metadata)
    odd = _disagreeing_collectives(nodes)
    if odd and not any("parts disagree" in str(n) for n in metadata.get("notes", ())):
        # The readers write such graphs (ranks whose profiles begin at different collectives) with
        # this note; a graph without it was made or edited elsewhere, and is read as they are.
        metadata["notes"] = [
            *metadata.get("notes", ()),
            f"collectives {first_few(odd)}: the ranks' parts disagree (size), so each rank's part "
            "keeps its own size and recorded duration",
        ]
    return ExecutionGraph(data["ranks"], nodes, metadata)


def _disagreeing_collectives(nodes: list[Node]) -> list[str]:
    """The keys whose members name different sizes, each said as ``'key' (rank r: B, ...)`` (an
    all-to-all with per-peer splits may: its splits are checked by ``ExecutionGraph.validate``)."""
    sizes: dict[str, dict[int, float]] = {}
    uneven: set[str] = set()
    for n in nodes:
        if isinstance(n.op, Collective):
            sizes.setdefault(n.op.key, {})[n.rank] = n.op.bytes
            if n.op.send_bytes is not None:
                uneven.add(n.op.key)
    return [
        f"{key!r} ({', '.join(f'rank {r}: {b:g} B' for r, b in sorted(by_rank.items()))})"
        for key, by_rank in sizes.items()
        if key not in uneven and len(set(by_rank.values())) > 1
    ]


def write_graph(graph: ExecutionGraph, path: Path) -> None:
    """Write ``graph`` to ``path`` (gzip if it ends in ``.gz``), whole or not at all (``recsim.output``)."""
    write_text(path, json.dumps(graph_to_dict(graph), separators=(",", ":")), "graph")


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json``'s ``object_pairs_hook`` refusing a key given twice in one object (``json`` keeps the
    last silently)."""
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return data


def load_json(path: Path, *, unique_keys: bool = False) -> Any:
    """JSON from a plain or gzip file; corrupted or truncated input is a one-line ``TraceError``.
    ``unique_keys``: a key given twice in one object is one too (YAML's duplicate keys are refused,
    ``recsim.config.yamlio``; a plan file's must be as well)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise TraceError(f"{path}: corrupted or truncated gzip ({exc})") from None
    if not raw.strip():
        raise TraceError(f"{path}: an empty file")
    # The magic of a POSIX tar header, in a file that does not open as JSON does.
    if raw[257:262] == b"ustar" and raw.lstrip()[:1] not in (b"{", b"["):
        raise TraceError(
            f"{path}: a tar archive, not a trace: extract it (tar -xf) and give its files or folder"
        )
    try:
        return json.loads(raw, object_pairs_hook=_unique_keys if unique_keys else None)
    except _DuplicateKey as exc:
        raise TraceError(f"{path}: duplicate key {exc.args[0]!r} (in one object)") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not UTF-8 JSON text") from None
    except json.JSONDecodeError as exc:
        # ``msg`` alone ends mid-sentence ("Unterminated string starting at"): the position
        # completes it, as ``str(exc)`` does (less its character offset).
        raise TraceError(
            f"{path}: invalid or truncated JSON: {exc.msg}: line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        # The decoder recurses once per nested array or object: a corrupt file of thousands of
        # "[" gave a traceback (a tester's find). No trace nests that deep (Kineto's events are
        # 3 levels down, an ET's tensor lists a few more).
        raise TraceError(f"{path}: invalid JSON: nested deeper than the JSON reader can follow") from None
    except ValueError as exc:
        # A number of more than 4,300 digits (Python's int-conversion limit, CVE-2020-10735) is a
        # plain ValueError, not a JSONDecodeError: a corrupt file gave a traceback (a tester's find).
        raise TraceError(f"{path}: invalid JSON: {exc}") from None


def read_graph(path: Path) -> ExecutionGraph:
    """Read a native graph written by ``write_graph``."""
    return graph_from_dict(load_json(path), str(path))


#: ``major`` or ``major.minor``, ASCII digits.
_VERSION = re.compile(r"([0-9]+)(?:\.([0-9]+))?", re.ASCII)
