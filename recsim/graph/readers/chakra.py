"""Reader for Chakra execution traces (``.et``, protobuf), decoded here without the protobuf package.

The format (MLCommons Chakra, ``package ChakraProtoMsg``, proto3): a file is a sequence of
messages, each prefixed by its length as a varint: one ``GlobalMetadata`` first, then ``Node``
messages, one file per rank (``<name>.<rank>.et``; gzip-compressed ``.et.gz`` is read too). Field
numbers used here:

* ``GlobalMetadata {string version = 1; repeated AttributeProto attr = 2}``
* ``Node {uint64 id = 1; string name = 2; NodeType type = 3; repeated uint64 ctrl_deps = 4;
  repeated uint64 data_deps = 5; uint64 start_time_micros = 6; uint64 duration_micros = 7;
  IOInfo inputs = 8; IOInfo outputs = 9; repeated AttributeProto attr = 10}``
* ``IOInfo {string values = 1; string shapes = 2; string types = 3}``
* ``AttributeProto {string name = 1; string doc_string = 2; oneof value}``: scalars at the odd
  numbers 3..31 (double, float, int32, int64, uint32, uint64, sint32, sint64, fixed32, fixed64,
  sfixed32, sfixed64, bool, string, bytes) and each one's list at the next even number, a message
  ``{repeated <type> values = 1}``.
* ``NodeType``: INVALID 0, METADATA 1, MEM_LOAD 2, MEM_STORE 3, COMP 4, COMM_SEND 5, COMM_RECV 6,
  COMM_COLL 7. ``CollectiveCommType``: ALL_REDUCE 0, REDUCE 1, ALL_GATHER 2, GATHER 3, SCATTER 4,
  BROADCAST 5, ALL_TO_ALL 6, REDUCE_SCATTER 7, REDUCE_SCATTER_BLOCK 8, BARRIER 9.

The wire format: a key varint ``field << 3 | wire type``; wire types 0 (varint), 1 (8 bytes,
little-endian), 2 (length-delimited: strings, bytes, messages and packed repeated scalars), 5 (4
bytes). Repeated uint64 fields (the dependencies) may come packed or one by one; both are read.
Signed ``int32``/``int64`` are two's complement in 10-byte varints, ``sint*`` are zigzag. A
truncated or corrupted file is a ``TraceError`` naming the byte offset.

Mapping: ``COMP_NODE`` -> ``Compute`` on ``compute`` (lane per recorded stream ``tid``), or
``Host`` on ``host`` when its ``is_cpu_op`` attribute is true (as the ET reader does for CPU ops);
``COMM_COLL_NODE`` -> ``Collective`` on ``comm`` with ``comm_type`` and ``comm_size`` (bytes); the
CPU-side ``c10d::*`` calls the converter also marks COMM_COLL (``is_cpu_op`` true, no
``comm_type``) are ``Host`` ops, so a collective is not counted twice. ``COMM_SEND``/``RECV`` ->
``Collective`` send/recv with the peer from ``comm_src``/``comm_dst``; ``MEM_LOAD``/``STORE`` ->
``Transfer``. METADATA/INVALID nodes are not nodes of the graph: whoever depends on them depends on
their dependencies instead. Durations come from ``duration_micros``. Dependencies are the
``data_deps``, as in Chakra's reference feeder (``ETFeeder``, which ASTRA-sim uses): the
converter's ``ctrl_deps`` carry PyTorch's parent/ordering links and, in real converter output, point
both ways between a CPU op and its kernel (the 3,664-node test trace has 653 such two-node loops),
so they are decoded but not followed. Chakra already is a dependency graph, so no stream order is
added. Dependencies on ids absent from the file (the converter leaves some) are dropped and counted in
``metadata["notes"]``; a dependency cycle is a ``TraceError`` naming it. The collective group is
every rank of the job (the files given), as Chakra does not record group membership.
GATHER and SCATTER, which recsim has no collective for, become ``Compute`` ops of category
``communication`` on the ``comm`` stream.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from recsim.errors import TraceError
from recsim.graph.ir import (
    Collective,
    CollectiveOp,
    Compute,
    ExecutionGraph,
    Host,
    Node,
    Op,
    Stream,
    Transfer,
)
from recsim.graph.readers import register
from recsim.graph.readers._common import (
    LaneMap,
    assign_ranks,
    collective_op,
    kernel_category,
    rank_from_filename,
    world_metadata,
)

NODE_TYPES = {
    0: "INVALID_NODE",
    1: "METADATA_NODE",
    2: "MEM_LOAD_NODE",
    3: "MEM_STORE_NODE",
    4: "COMP_NODE",
    5: "COMM_SEND_NODE",
    6: "COMM_RECV_NODE",
    7: "COMM_COLL_NODE",
}
COMM_TYPES: dict[int, CollectiveOp | None] = {
    0: CollectiveOp.ALL_REDUCE,
    1: CollectiveOp.REDUCE,
    2: CollectiveOp.ALL_GATHER,
    3: None,  # GATHER
    4: None,  # SCATTER
    5: CollectiveOp.BROADCAST,
    6: CollectiveOp.ALL_TO_ALL,
    7: CollectiveOp.REDUCE_SCATTER,
    8: CollectiveOp.REDUCE_SCATTER,  # REDUCE_SCATTER_BLOCK: same traffic, equal blocks
    9: CollectiveOp.BARRIER,
}
COMM_TYPE_NAMES = {
    0: "ALL_REDUCE",
    1: "REDUCE",
    2: "ALL_GATHER",
    3: "GATHER",
    4: "SCATTER",
    5: "BROADCAST",
    6: "ALL_TO_ALL",
    7: "REDUCE_SCATTER",
    8: "REDUCE_SCATTER_BLOCK",
    9: "BARRIER",
}

# -- wire format -----------------------------------------------------------------------------------

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _Corrupt(Exception):
    """Internal: a decoding failure at an absolute byte offset (turned into a TraceError)."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise _Corrupt(start, "truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Corrupt(start, "varint longer than 10 bytes")


def _fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, Any, int]]:
    """(field number, wire type, value, offset) of each field in ``buf[pos:end]``.

    The value is an int for varint and fixed-width fields (raw bits), or a ``(start, end)`` slice
    for length-delimited ones, so nested messages are decoded only when needed.
    """
    while pos < end:
        offset = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Corrupt(offset, "field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
        elif wire == _I64:
            if pos + 8 > end:
                raise _Corrupt(offset, f"truncated 64-bit field {number}")
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == _LEN:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _Corrupt(offset, f"field {number} announces {length} bytes, {end - pos} left")
            value = (pos, pos + length)
            pos += length
        elif wire == _I32:
            if pos + 4 > end:
                raise _Corrupt(offset, f"truncated 32-bit field {number}")
            value = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise _Corrupt(offset, f"unsupported wire type {wire} (field {number})")
        yield number, wire, value, offset


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _zigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def _text(buf: bytes, span: tuple[int, int], offset: int) -> str:
    try:
        return buf[span[0] : span[1]].decode("utf-8")
    except UnicodeDecodeError:
        raise _Corrupt(offset, "string is not UTF-8") from None


# Scalar kinds of AttributeProto's oneof, by field number; the list of each kind is number + 1.
_SCALAR_KINDS = {
    3: "double",
    5: "float",
    7: "int32",
    9: "int64",
    11: "uint32",
    13: "uint64",
    15: "sint32",
    17: "sint64",
    19: "fixed32",
    21: "fixed64",
    23: "sfixed32",
    25: "sfixed64",
    27: "bool",
    29: "string",
    31: "bytes",
}
_WIRE_OF = {
    "double": _I64,
    "fixed64": _I64,
    "sfixed64": _I64,
    "float": _I32,
    "fixed32": _I32,
    "sfixed32": _I32,
    "string": _LEN,
    "bytes": _LEN,
}


def _scalar(kind: str, wire: int, value: Any, buf: bytes, offset: int) -> Any:
    expected = _WIRE_OF.get(kind, _VARINT)
    if wire != expected:
        raise _Corrupt(offset, f"{kind} attribute has wire type {wire}, expected {expected}")
    if kind == "double":
        return struct.unpack("<d", value.to_bytes(8, "little"))[0]
    if kind == "float":
        return struct.unpack("<f", value.to_bytes(4, "little"))[0]
    if kind == "int32":
        return _signed(value, 32)
    if kind in ("int64",):
        return _signed(value, 64)
    if kind in ("sint32", "sint64"):
        return _zigzag(value)
    if kind == "sfixed32":
        return _signed(value, 32)
    if kind == "sfixed64":
        return _signed(value, 64)
    if kind == "bool":
        return bool(value)
    if kind == "string":
        return _text(buf, value, offset)
    if kind == "bytes":
        return buf[value[0] : value[1]].hex()
    return value  # uint32, uint64, fixed32, fixed64


def _list(kind: str, buf: bytes, span: tuple[int, int]) -> list[Any]:
    out: list[Any] = []
    for number, wire, value, offset in _fields(buf, span[0], span[1]):
        if number != 1:
            continue
        expected = _WIRE_OF.get(kind, _VARINT)
        if wire == _LEN and expected != _LEN:
            # packed: a run of varints or fixed-width values
            pos, end = value
            while pos < end:
                if expected == _VARINT:
                    raw, pos = _varint(buf, pos, end)
                else:
                    width = 8 if expected == _I64 else 4
                    if pos + width > end:
                        raise _Corrupt(pos, f"truncated packed {kind} list")
                    raw = int.from_bytes(buf[pos : pos + width], "little")
                    pos += width
                out.append(_scalar(kind, expected, raw, buf, offset))
        else:
            out.append(_scalar(kind, wire, value, buf, offset))
    return out


def _attribute(buf: bytes, span: tuple[int, int]) -> tuple[str, Any]:
    name = ""
    value: Any = None
    for number, wire, raw, offset in _fields(buf, span[0], span[1]):
        if number == 1 and wire == _LEN:
            name = _text(buf, raw, offset)
        elif number in _SCALAR_KINDS:
            value = _scalar(_SCALAR_KINDS[number], wire, raw, buf, offset)
        elif number - 1 in _SCALAR_KINDS and 4 <= number <= 32:
            if wire != _LEN:
                raise _Corrupt(offset, f"list attribute (field {number}) is not length-delimited")
            value = _list(_SCALAR_KINDS[number - 1], buf, raw)
    return name, value


def _uint64s(buf: bytes, wire: int, value: Any, offset: int) -> list[int]:
    if wire == _VARINT:
        return [value]
    if wire != _LEN:
        raise _Corrupt(offset, "dependency list has an unexpected wire type")
    out = []
    pos, end = value
    while pos < end:
        dep, pos = _varint(buf, pos, end)
        out.append(dep)
    return out


@dataclass(slots=True)
class ChakraNode:
    id: int
    name: str = ""
    type: int = 0
    ctrl_deps: list[int] = field(default_factory=list)
    data_deps: list[int] = field(default_factory=list)
    start_time_micros: int = 0
    duration_micros: int = 0
    input_shapes: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)


def _io_shapes(buf: bytes, span: tuple[int, int]) -> str:
    for number, wire, value, offset in _fields(buf, span[0], span[1]):
        if number == 2 and wire == _LEN:
            return _text(buf, value, offset)
    return ""


# Wire type of each Node field (4 and 5 may be packed or not, so they are checked where decoded).
_NODE_WIRE = {1: _VARINT, 2: _LEN, 3: _VARINT, 6: _VARINT, 7: _VARINT, 8: _LEN, 9: _LEN, 10: _LEN}


def _node(buf: bytes, start: int, end: int) -> ChakraNode:
    node = ChakraNode(id=-1)
    for number, wire, value, offset in _fields(buf, start, end):
        if number == 1 and wire == _VARINT:
            node.id = value
        elif number == 2 and wire == _LEN:
            node.name = _text(buf, value, offset)
        elif number == 3 and wire == _VARINT:
            node.type = value
        elif number == 4:
            node.ctrl_deps.extend(_uint64s(buf, wire, value, offset))
        elif number == 5:
            node.data_deps.extend(_uint64s(buf, wire, value, offset))
        elif number == 6 and wire == _VARINT:
            node.start_time_micros = value
        elif number == 7 and wire == _VARINT:
            node.duration_micros = value
        elif number == 8 and wire == _LEN:
            node.input_shapes = _io_shapes(buf, value)
        elif number == 10 and wire == _LEN:
            name, attr = _attribute(buf, value)
            node.attrs[name] = attr
        elif number in _NODE_WIRE and wire != _NODE_WIRE[number]:
            raise _Corrupt(offset, f"Node field {number} has wire type {wire}, expected {_NODE_WIRE[number]}")
    if node.id < 0:
        raise _Corrupt(start, "Node without an id")
    return node


def decode_chakra(path: Path, buf: bytes) -> tuple[dict[str, Any], list[ChakraNode]]:
    """The global metadata (version and attributes) and the nodes of a Chakra ``.et`` file."""
    if not buf:
        raise TraceError(f"{path}: empty Chakra trace")
    pos = 0
    end = len(buf)
    meta: dict[str, Any] = {}
    nodes: list[ChakraNode] = []
    try:
        while pos < end:
            start = pos
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _Corrupt(
                    start, f"message announces {length} bytes, only {end - pos} left (truncated file?)"
                )
            if start == 0:
                for number, wire, value, offset in _fields(buf, pos, pos + length):
                    if number == 1 and wire == _LEN:
                        meta["version"] = _text(buf, value, offset)
                    elif number == 2 and wire == _LEN:
                        name, attr = _attribute(buf, value)
                        meta[name] = attr
            else:
                nodes.append(_node(buf, pos, pos + length))
            pos += length
    except _Corrupt as exc:
        raise TraceError(f"{path}: corrupted Chakra trace at byte {exc.offset}: {exc.message}") from None
    return meta, nodes


# -- graph -----------------------------------------------------------------------------------------


def _shapes(text: str) -> tuple[tuple[int, ...], ...]:
    if not text:
        return ()
    try:
        data = json.loads(text)
    except ValueError:
        return ()
    out: list[tuple[int, ...]] = []
    if isinstance(data, list):
        for s in data:
            if isinstance(s, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in s):
                out.append(tuple(s))
    return tuple(out)


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, list)) or value is None else str(value)


@dataclass
class _Built:
    nodes: list[Node]
    dropped_deps: int
    unsupported: dict[str, int]


def _build_rank(
    path: Path, nodes: list[ChakraNode], rank: int, world: int, first_id: int, lanes: LaneMap
) -> _Built:
    by_id: dict[int, ChakraNode] = {}
    for n in nodes:
        if n.id in by_id:
            raise TraceError(f"{path}: node id {n.id} appears twice ({by_id[n.id].name!r} and {n.name!r})")
        by_id[n.id] = n
    skipped = {n.id for n in nodes if n.type in (0, 1) or n.type not in NODE_TYPES}
    ids = {n.id: first_id + i for i, n in enumerate(x for x in nodes if x.id not in skipped)}
    dropped = 0
    unsupported: dict[str, int] = defaultdict(int)
    resolved_skipped: dict[int, list[int]] = {}

    def resolve(dep: int, trail: tuple[int, ...] = ()) -> list[int]:
        nonlocal dropped
        if dep in ids:
            return [ids[dep]]
        if dep in skipped:
            if dep in resolved_skipped:
                return resolved_skipped[dep]
            if dep in trail:
                raise TraceError(
                    f"{path}: dependency cycle through metadata nodes {' -> '.join(map(str, trail))}"
                )
            out: list[int] = []
            meta_node = by_id[dep]
            for d in meta_node.data_deps:
                out.extend(resolve(d, (*trail, dep)))
            resolved_skipped[dep] = out
            return out
        dropped += 1
        return []

    ordinal: dict[str, int] = defaultdict(int)
    built: list[Node] = []
    for n in nodes:
        if n.id in skipped:
            if n.type not in NODE_TYPES:
                unsupported[f"NodeType {n.type}"] += 1
            continue
        deps: dict[int, None] = {}
        for d in n.data_deps:
            for r in resolve(d):
                deps[r] = None
        attrs = n.attrs
        tid = attrs.get("tid", 0)
        is_cpu = bool(attrs.get("is_cpu_op", False))
        op: Op
        if n.type == 4 or (n.type == 7 and is_cpu and "comm_type" not in attrs):
            if is_cpu:
                stream, op = Stream.HOST, Host(op=n.name)
            else:
                stream = Stream.COMPUTE
                num_ops = attrs.get("num_ops")
                op = Compute(
                    op=n.name,
                    flops=float(num_ops) if isinstance(num_ops, (int, float)) else 0.0,
                    shapes=_shapes(n.input_shapes),
                    category=kernel_category(n.name),
                )
        elif n.type == 7:
            stream = Stream.COMM
            comm_type = attrs.get("comm_type")
            coll = COMM_TYPES.get(comm_type) if isinstance(comm_type, int) else collective_op(n.name)
            size = float(attrs.get("comm_size", 0) or 0)
            if coll is None:
                label = (
                    COMM_TYPE_NAMES.get(comm_type, str(comm_type)) if isinstance(comm_type, int) else n.name
                )
                unsupported[f"collective {label}"] += 1
                op = Compute(op=n.name, bytes_read=size, category="communication")
            else:
                pg = str(attrs.get("pg_name", "") or "world")
                ordinal[pg] += 1
                op = Collective(op=coll, key=f"{pg}/#{ordinal[pg]}", group=tuple(range(world)), bytes=size)
        elif n.type in (5, 6):
            stream = Stream.COMM
            peer_key = "comm_dst" if n.type == 5 else "comm_src"
            peer = attrs.get(peer_key)
            size = float(attrs.get("comm_size", 0) or 0)
            if not isinstance(peer, int) or not 0 <= peer < world:
                raise TraceError(
                    f"{path}: node {n.id} ({n.name!r}): {NODE_TYPES[n.type]} without a valid {peer_key}"
                )
            src, dst = (rank, peer) if n.type == 5 else (peer, rank)
            tag = attrs.get("comm_tag", "")
            ordinal[f"p2p{src}-{dst}-{tag}"] += 1
            op = Collective(
                op=CollectiveOp.SEND if n.type == 5 else CollectiveOp.RECV,
                key=f"p2p:{src}->{dst}:{tag}#{ordinal[f'p2p{src}-{dst}-{tag}']}",
                group=(src, dst) if src != dst else (src,),
                bytes=size,
            )
        else:  # MEM_LOAD_NODE, MEM_STORE_NODE
            stream = Stream.COPY
            size = float(attrs.get("tensor_size", 0) or 0)
            op = (
                Transfer(src="host", dst="hbm", bytes=size)
                if n.type == 2
                else Transfer(src="hbm", dst="host", bytes=size)
            )
        built.append(
            Node(
                id=ids[n.id],
                rank=rank,
                name=n.name,
                stream=stream,
                op=op,
                deps=tuple(deps),
                lane=lanes.lane(rank, stream, tid),
                duration_s=n.duration_micros * 1e-6,
                start_s=n.start_time_micros * 1e-6 if n.start_time_micros else None,
            )
        )
    return _Built(built, dropped, dict(unsupported))


def _refuse_json(path: Path, buf: bytes) -> None:
    """A ``TraceError`` saying that ``path``, which does not decode as Chakra, is JSON text, and the
    format that reads it: ``--format chakra`` on a Kineto file had said "corrupted Chakra trace at
    byte 1" (a tester's find). Returns where ``buf`` is not JSON (a Chakra file that is corrupt)."""
    if buf.lstrip()[:1] not in (b"{", b"["):
        return
    try:
        data = json.loads(buf)
    except ValueError:  # UnicodeDecodeError included
        return
    from recsim.graph.readers import READERS, _sniffed

    name = _sniffed(path, data)
    if name is None:
        known = ", ".join(sorted(READERS))
        raise TraceError(f"{path}: not a Chakra protobuf trace (.et): JSON text of no trace format ({known})")
    raise TraceError(
        f"{path}: not a Chakra protobuf trace (.et): JSON text of a {name} trace; give --format {name}, "
        "or leave --format out to detect it"
    )


def read_chakra_files(paths: Sequence[Path], fmt: str) -> ExecutionGraph:
    decoded = []
    for path in paths:
        try:
            buf = path.read_bytes()
        except FileNotFoundError:
            raise TraceError(f"{path}: no such file") from None
        except OSError as exc:
            raise TraceError(f"{path}: cannot read: {exc.strerror}") from None
        if buf[:2] == b"\x1f\x8b":  # a gzip-compressed .et (.et.gz)
            try:
                buf = gzip.decompress(buf)
            except (OSError, EOFError, zlib.error) as exc:
                raise TraceError(f"{path}: corrupted or truncated gzip ({exc})") from None
        try:
            decoded.append(decode_chakra(path, buf))
        except TraceError:
            _refuse_json(path, buf)
            raise
    ranks = assign_ranks(list(paths), [rank_from_filename(p) for p in paths])
    world = max([len(paths), *(r + 1 for r in ranks)])
    lanes = LaneMap()
    nodes: list[Node] = []
    notes: list[str] = []
    for rank, path, (_, chakra_nodes) in sorted(zip(ranks, paths, decoded, strict=True), key=lambda t: t[0]):
        built = _build_rank(path, chakra_nodes, rank, world, len(nodes), lanes)
        nodes.extend(built.nodes)
        if built.dropped_deps:
            notes.append(
                f"rank {rank}: {built.dropped_deps} dependencies on nodes absent from {path.name} dropped"
            )
        for what, count in built.unsupported.items():
            notes.append(
                f"rank {rank}: {count} nodes of {what} (no recsim equivalent) read as communication compute"
            )
    metadata = world_metadata(world, ranks, fmt, paths)
    metadata["chakra"] = {k: _plain(v) for k, v in decoded[0][0].items()} if decoded else {}
    if notes:
        metadata["notes"] = notes
    graph = ExecutionGraph(world, nodes, metadata)
    try:
        graph.topological_order()
    except TraceError as exc:
        raise TraceError(f"{', '.join(p.name for p in paths)}: {exc}") from None
    return graph


@register
class ChakraReader:
    name: ClassVar[str] = "chakra"
    description: ClassVar[str] = "Chakra execution trace protobuf (.et), one file per rank"

    @classmethod
    def sniff(cls, path: Path, data: Any) -> bool:
        return data is None and path.name.endswith((".et", ".et.gz"))

    def read(self, paths: Sequence[Path], parsed: dict[Path, Any] | None = None) -> ExecutionGraph:
        # ``parsed`` is JSON's: a Chakra file is protobuf, which the detection does not parse.
        if not paths:
            raise TraceError("no trace files given")
        return read_chakra_files(paths, self.name)
