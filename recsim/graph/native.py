"""The native graph format: JSON (optionally gzip), versioned, exact round trip.

``{"schema": "recsim.execution_graph", "version": "1.2", "ranks": N, "metadata": {...},
"nodes": [{"id", "rank", "name", "stream", "deps", "lane", "duration_s", "start_s", "phase",
"op": {"kind": ..., fields of the op}}]}``. Floats are written with Python's shortest round-trip
repr, so reading a written graph gives back an equal graph. Another minor version is read with a
warning (the op fields a newer one adds are left out and named; an older one's missing fields take
their defaults); another major version is an error; the version is a ``"major.minor"`` string.
1.1 added ``Embedding.bags`` and ``Embedding.output_dtype``, 1.2 ``Embedding.atomic`` and the
``update`` lookup pass; the added fields are written only when set. From 1.2 a replicated table
over several ranks carries a backward with optimizer ``none`` (gradient only) and an ``update``
node; a 1.1 reader of such a file refuses the unknown pass when it costs it.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import warnings
import zlib
from pathlib import Path
from typing import Any

from recsim.errors import TraceError
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
_LATER_FIELDS = frozenset({"bags", "output_dtype", "atomic"})


def _op_to_dict(op: Op) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": op.kind}
    for f in dataclasses.fields(op):
        value = getattr(op, f.name)
        if f.name in _LATER_FIELDS and (value is None or value is False):
            continue
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        data[f.name] = value.value if isinstance(value, CollectiveOp) else value
    return data


def _op_from_dict(data: dict[str, Any], where: str, dropped: set[str] | None = None) -> Op:
    """The op of ``data``; fields this version does not know are an error, or, given ``dropped``
    (a newer minor version's file), left out and collected there."""
    kind = data.get("kind")
    cls = OP_TYPES.get(str(kind))
    if cls is None:
        raise TraceError(f"{where}: unknown op kind {kind!r}")
    fields = {f.name for f in dataclasses.fields(cls)}
    args = {k: v for k, v in data.items() if k != "kind"}
    unknown = set(args) - fields
    if unknown and dropped is None:
        raise TraceError(f"{where}: unknown {kind} field(s) {sorted(unknown)}")
    if unknown and dropped is not None:
        dropped.update(f"{kind}.{name}" for name in unknown)
        args = {k: v for k, v in args.items() if k in fields}
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
    except (TypeError, ValueError) as exc:
        raise TraceError(f"{where}: bad {kind} op: {exc}") from None


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
    nodes = []
    for i, raw in enumerate(data.get("nodes", [])):
        where = f"{source}: nodes[{i}]"
        try:
            nodes.append(
                Node(
                    id=int(raw["id"]),
                    rank=int(raw["rank"]),
                    name=str(raw["name"]),
                    stream=Stream(raw["stream"]),
                    op=_op_from_dict(raw["op"], where, dropped),
                    deps=tuple(int(d) for d in raw.get("deps", ())),
                    lane=int(raw.get("lane", 0)),
                    duration_s=raw.get("duration_s"),
                    start_s=raw.get("start_s"),
                    phase=str(raw.get("phase", "")),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TraceError(f"{where}: malformed node ({exc})") from None
    if dropped:
        warnings.warn(
            f"{source}: fields of schema version {version} this recsim does not know, left out: "
            f"{', '.join(sorted(dropped))}",
            stacklevel=2,
        )
    return ExecutionGraph(int(data["ranks"]), nodes, dict(data.get("metadata", {})))


def write_graph(graph: ExecutionGraph, path: Path) -> None:
    """Write ``graph`` to ``path`` (gzip if it ends in ``.gz``), whole or not at all (``recsim.output``)."""
    write_text(path, json.dumps(graph_to_dict(graph), separators=(",", ":")), "graph")


def load_json(path: Path) -> Any:
    """JSON from a plain or gzip file; corrupted or truncated input is a one-line ``TraceError``."""
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
        return json.loads(raw)
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not UTF-8 JSON text") from None
    except json.JSONDecodeError as exc:
        raise TraceError(
            f"{path}: invalid or truncated JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None


def read_graph(path: Path) -> ExecutionGraph:
    """Read a native graph written by ``write_graph``."""
    return graph_from_dict(load_json(path), str(path))


#: ``major`` or ``major.minor``, ASCII digits.
_VERSION = re.compile(r"([0-9]+)(?:\.([0-9]+))?", re.ASCII)
