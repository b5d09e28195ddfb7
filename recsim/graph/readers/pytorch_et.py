"""Reader for PyTorch execution traces (ET), both schema generations, one file per rank.

The format (``torch.profiler.ExecutionTraceObserver``): ``{"schema", "pid", "time", "start_ts",
"finish_ts", "nodes": [...]}``; every record-function scope is a node with an ``id`` and a parent.

* **old schema (1.0.1)**: node fields ``name, id, rf_id, parent, fw_parent, seq_id, scope, tid,
  fw_tid, op_schema, inputs, input_shapes, input_types, outputs, output_shapes, output_types``;
* **new schema (1.0.2-chakra.0.0.4 ... 1.1.x-chakra.0.0.4)**: ``id, name, ctrl_deps`` (the parent),
  ``inputs``/``outputs`` as ``{values, shapes, types, strides}`` and the rest in ``attrs``
  (``[{name, type, value}]``: rf_id, tid, op_schema, ...).

A tensor value is ``[tensor_id, storage_id, offset, numel, elem_bytes, device]``. An unknown schema
version is read with a warning, guessing the layout from the node fields.

Choices (what a node of the graph is):

* **Top-level operators only.** An *operator* is a node with an ``op_schema`` or an operator
  namespace (``aten::``, ``fbgemm::``, ``c10d::``, ``nccl:``, ``record_param_comms``, ...); the
  rest are labels (``## forward ##``, ``autograd::engine::evaluate_function: ...``, the
  thread/process roots). A top-level operator is one with no operator among its ancestors; its
  children (``aten::linear`` -> ``aten::t``, ``aten::addmm``) are *folded into it*: they are part
  of its work, their tensors count as its tensors, and they do not become nodes. This is what
  PyTorch dispatched as one call, so durations joined from Kineto are not double counted.
* **Pure metadata ops are dropped** (views, ``empty``, ``detach``, ``record_stream`` ... when
  nothing under them does work): they launch nothing and cost microseconds of CPU at most.
* **Where an op runs**: a collective (recognised from the op name, its ``record_param_comms`` or
  ``nccl:*`` child) runs on the ``comm`` stream; a copy between host and device memory
  (``aten::to``, ``copy_``, ``item`` ...) is a ``Transfer`` on ``copy``; an op touching a CUDA
  tensor is GPU work (``Compute`` on ``compute``); anything else is ``Host`` on the ``host`` stream,
  one lane per CPU thread.
* **Dependencies**: *data* (an op that reads a tensor depends on the last op that wrote it, within
  the rank; tensors are tracked by storage id, so reading a view depends on whoever wrote the base);
  *control* (an op depends on the previous host op of its CPU thread, which is also how a GPU op
  depends on its launch); *stream order* per (stream, lane); and a ``record_param_comms`` "wait"
  makes the next GPU op of that thread depend on the collective it waits for. Every edge points
  to an op that started earlier (``rf_id`` order), so the graph is a DAG by construction.
* **Collectives**: bytes are this rank's input tensor bytes (numel x element size); an all-to-all
  with ``input_split_sizes`` / ``output_split_sizes`` gets per-peer ``send_bytes`` / ``recv_bytes``
  (splits count equal-sized rows, so a peer's share is proportional). The group is all ranks of the
  job unless ``record_param_comms`` gives the group's first rank, stride and size. The key that
  matches one collective across ranks is the process group plus c10d's sequence number when the
  trace has it, else the collective's ordinal within its group.
* **Ranks**: the file's distributed metadata (a ``distributedInfo`` / ``rank`` field, else the rank
  recorded by ``record_param_comms``), else ``rank<N>`` in the file name, else the order given.

Not handled: recorded durations (an ET has none; join it with Kineto, see ``et_kineto``),
``fw_parent`` links, CUDA graph replays, and sub-groups without rank information (guessed as blocks
of consecutive ranks).
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from recsim.errors import TraceError, first_few
from recsim.graph.ir import (
    SCHEMA,
    Collective,
    CollectiveOp,
    Compute,
    ExecutionGraph,
    Host,
    Op,
    Stream,
    Transfer,
)
from recsim.graph.readers import register
from recsim.graph.readers._common import (
    MAX_ELEMENTS,
    Pending,
    PendingGraph,
    assign_ranks,
    bad_extent,
    check_world,
    collective_from_label,
    collective_op,
    contiguous_group,
    distributed_info,
    dtype_name,
    gemm_flops,
    op_category,
    parse_int_list,
    split_bytes,
    world_metadata,
)

_OLD_SCHEMA = re.compile(r"^1\.0\.[01]$")
_NEW_SCHEMA = re.compile(r"^1\.(0\.[2-9]|1\.\d+)-chakra\.0\.0\.\d+$")

_OPERATOR_PREFIXES = (
    "aten::",
    "fbgemm::",
    "c10d::",
    "_c10d_functional::",
    "c10d_functional::",
    "nccl:",
    "record_param_comms",
    "torchrec::",
    "prims::",
    "cuda::",
    "quantized::",
    "_quantized::",
)

# Ops that only make a new view or bookkeeping entry of existing memory: no kernel, no copy.
_METADATA_OPS = frozenset(
    {
        "as_strided",
        "view",
        "_unsafe_view",
        "_reshape_alias",
        "reshape",
        "view_as",
        "reshape_as",
        "slice",
        "select",
        "narrow",
        "t",
        "transpose",
        "permute",
        "numpy_T",
        "expand",
        "expand_as",
        "squeeze",
        "unsqueeze",
        "flatten",
        "unflatten",
        "unfold",
        "diagonal",
        "movedim",
        "split",
        "split_with_sizes",
        "chunk",
        "unbind",
        "detach",
        "detach_",
        "alias",
        "lift_fresh",
        "record_stream",
        "empty",
        "empty_like",
        "empty_strided",
        "new_empty",
        "new_empty_strided",
        "resize_",
        "set_",
        "to",
        "contiguous",
        "type_as",
        "resolve_conj",
        "resolve_neg",
        "is_same_size",
        "is_pinned",
        "is_nonzero",
        "size",
        "stride",
        "dim",
        "numel",
        "_has_compatible_shallow_copy_type",
    }
)
_COPY_OPS = frozenset({"to", "_to_copy", "copy_", "item", "_local_scalar_dense", "cpu", "cuda"})


def _base(name: str) -> str:
    return name.rsplit("::", 1)[-1]


# -- parsing ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TensorRef:
    """One tensor argument: ids, size and where it lives."""

    tensor_id: int
    storage_id: int
    numel: int
    elem_bytes: int
    device: str
    shape: tuple[int, ...]
    dtype: str
    # The trace's spelling of a dtype recsim does not know (``dtype`` is then a guess), else "".
    unknown_dtype: str = ""

    @property
    def bytes(self) -> float:
        return float(self.numel * self.elem_bytes)

    @property
    def key(self) -> int:
        # The storage, so a view and its base are one thing to the dependency tracker; tensors
        # without a storage id (0) are keyed by their own id, negated to keep the spaces apart.
        return self.storage_id if self.storage_id > 0 else -self.tensor_id - 1

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


@dataclass(slots=True)
class EtNode:
    """One ET node in a schema-independent form."""

    id: int
    name: str
    parent: int | None
    rf_id: int | None
    tid: int
    op_schema: str
    inputs: list[Any]
    input_shapes: list[Any]
    input_types: list[Any]
    outputs: list[Any]
    output_shapes: list[Any]
    output_types: list[Any]
    children: list[int] = field(default_factory=list)
    # Parsed tensor arguments, computed once (an op's tensors are looked at several times).
    _ins: list[TensorRef] | None = field(default=None, repr=False, compare=False)
    _outs: list[TensorRef] | None = field(default=None, repr=False, compare=False)

    @property
    def is_operator(self) -> bool:
        return bool(self.op_schema) or self.name.startswith(_OPERATOR_PREFIXES)

    def input_tensors(self) -> list[TensorRef]:
        if self._ins is None:
            self._ins = _tensors(self.inputs, self.input_shapes, self.input_types)
        return list(self._ins)

    def output_tensors(self) -> list[TensorRef]:
        if self._outs is None:
            self._outs = _tensors(self.outputs, self.output_shapes, self.output_types)
        return list(self._outs)


@dataclass
class EtTrace:
    """A parsed ET file."""

    path: Path
    schema: str
    nodes: dict[int, EtNode]
    declared_rank: int | None
    declared_world: int | None
    pg_ranks: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # What the reader guessed at in this file (said in the graph's notes).
    notes: list[str] = field(default_factory=list)


def _split_types(text: str) -> list[str]:
    """Top-level comma split of a type list, respecting () and [] nesting."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return parts


def _is_tensor_value(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 6
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value[:5])
        and isinstance(value[5], str)
    )


def _tensors(values: Any, shapes: Any, types: Any) -> list[TensorRef]:
    """The tensors among ``values`` (flattening lists of tensors), guided by the type strings."""
    out: list[TensorRef] = []
    if not isinstance(values, list):
        return out
    shapes = shapes if isinstance(shapes, list) else []
    types = types if isinstance(types, list) else []
    for i, value in enumerate(values):
        shape = shapes[i] if i < len(shapes) else None
        typ = types[i] if i < len(types) and isinstance(types[i], str) else ""
        _collect(value, shape, typ, out)
    return out


def _collect(value: Any, shape: Any, typ: str, out: list[TensorRef]) -> None:
    if typ.startswith("Tensor") or (not typ and _is_tensor_value(value)):
        if _is_tensor_value(value):
            dims = (
                tuple(int(d) for d in shape)
                if isinstance(shape, list) and all(isinstance(d, int) for d in shape)
                else ()
            )
            inner = typ[7:-1] if typ.startswith("Tensor(") else ""
            dtype, unknown = _tensor_dtype(inner, value[4])
            out.append(TensorRef(value[0], value[1], value[3], value[4], value[5], dims, dtype, unknown))
        return
    if typ.startswith("GenericList[") and isinstance(value, list):
        elem_types = _split_types(typ[len("GenericList[") : -1])
        shapes = shape if isinstance(shape, list) else []
        for j, item in enumerate(value):
            if len(elem_types) == len(value):
                elem = elem_types[j]
            elif len(elem_types) == 1:
                elem = elem_types[0]
            else:
                elem = ""
            _collect(item, shapes[j] if j < len(shapes) else None, elem, out)


# An undefined tensor (an optional argument not given): no data, so its dtype does not matter.
_UNDEFINED = "nullptr (uninitialized)"
# The dtype an unknown spelling is taken as, by its element size (the ET records it): a 2-byte
# tensor costed as fp32 ran ~6x slower than as bf16.
_BY_SIZE = {2: "bf16", 4: "fp32", 8: "fp64"}


def _tensor_dtype(inner: str, elem_bytes: int) -> tuple[str, str]:
    """(recsim's dtype, the spelling when unknown else "") of a tensor typed ``Tensor(inner)``."""
    if not inner or inner == _UNDEFINED:
        return "fp32", ""
    known = dtype_name(inner, "")
    if known:
        return known, ""
    return _BY_SIZE.get(elem_bytes, "fp32"), inner


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def parse_et(path: Path, data: Any) -> EtTrace:
    """Normalise an ET document (either schema) into ``EtNode``s; one-line ``TraceError`` on bad input."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise TraceError(f"{path}: not a PyTorch execution trace (no 'nodes' list)")
    schema = str(data.get("schema", ""))
    raw_nodes: list[Any] = data["nodes"]
    if _OLD_SCHEMA.match(schema):
        new_layout = False
    elif _NEW_SCHEMA.match(schema):
        new_layout = True
    else:
        first = next((n for n in raw_nodes if isinstance(n, dict)), {})
        new_layout = "ctrl_deps" in first or isinstance(first.get("inputs"), dict)
        warnings.warn(
            f"{path}: unknown PyTorch ET schema version {schema!r}; reading it as the "
            f"{'new (ctrl_deps/attrs)' if new_layout else 'old (parent/input_shapes)'} layout",
            stacklevel=3,
        )
    nodes: dict[int, EtNode] = {}
    unreadable: list[str] = []
    unknown: dict[str, int] = defaultdict(int)
    for index, raw in enumerate(raw_nodes):
        node = _parse_node(path, index, raw, new_layout, unreadable)
        if node.id in nodes:
            raise TraceError(
                f"{path}: node id {node.id} appears twice ({nodes[node.id].name!r} and {node.name!r})"
            )
        nodes[node.id] = node
        for t in (*node.input_tensors(), *node.output_tensors()):
            if not 0 <= t.numel <= MAX_ELEMENTS:
                raise TraceError(
                    f"{path}: nodes[{index}] (id {node.id}, {node.name!r}): a tensor of {t.numel} "
                    "elements: expected a count from 0 to 2^48"
                )
            if t.unknown_dtype:
                unknown[t.unknown_dtype] += 1
    rank, world = _declared_rank(path, data)
    trace = EtTrace(path, schema, nodes, rank, world)
    if unreadable:
        trace.notes.append(
            f"{len(unreadable)} node{'s' if len(unreadable) > 1 else ''} with unreadable tensor shapes "
            f"({first_few(unreadable, 2)}): their FLOPs are not known, so they are costed from their bytes"
        )
    if unknown:
        spelled = first_few([f"{k!r} ({n})" for k, n in unknown.items()])
        trace.notes.append(
            f"tensors of an unknown dtype {spelled}: taken as the float type of their element size "
            "(bf16 for 2 bytes, fp32 for 4, fp64 for 8; else fp32)"
        )
    _link(trace)
    return trace


def _check_shapes(where: str, label: str, shapes: Any, unreadable: list[str]) -> list[Any]:
    """``shapes`` as a list; a one-line ``TraceError`` for a shape no tensor has (a negative
    dimension, more elements than memory holds: costed, one gave a step of 10^13 s). Shapes that
    are not a list are unreadable: said in ``unreadable``, and the node costed without them."""
    if shapes is None:
        return []
    if not isinstance(shapes, list):
        unreadable.append(f"{where.split(': ', 1)[-1]}: {label} {shapes!r}")
        return []

    def walk(value: Any, at: str) -> None:
        if not isinstance(value, list):
            return
        if value and all(isinstance(d, int) and not isinstance(d, bool) for d in value):
            why = bad_extent(value)
            if why is not None:
                raise TraceError(f"{where}: {at} {value} is not a tensor's shape: {why}")
            return
        for j, item in enumerate(value):
            walk(item, f"{at}[{j}]")

    for i, shape in enumerate(shapes):
        walk(shape, f"{label}[{i}]")
    return shapes


def _parse_node(path: Path, index: int, raw: Any, new_layout: bool, unreadable: list[str]) -> EtNode:
    where = f"{path}: nodes[{index}]"
    if not isinstance(raw, dict):
        raise TraceError(f"{where}: not an object")
    node_id = _int_or_none(raw.get("id"))
    if node_id is None:
        raise TraceError(f"{where}: missing or non-integer 'id'")
    name = raw.get("name")
    if not isinstance(name, str):
        raise TraceError(f"{where} (id {node_id}): missing 'name'")
    at = f"{where} (id {node_id}, {name!r})"
    if new_layout:
        attrs: dict[str, Any] = {}
        for attr in _as_list(raw.get("attrs")):
            if isinstance(attr, dict) and isinstance(attr.get("name"), str):
                attrs[attr["name"]] = attr.get("value")
        parent_raw = raw.get("ctrl_deps")
        if isinstance(parent_raw, list):  # some converters write a list; the first is the parent
            parent_raw = parent_raw[0] if parent_raw else None
        ins = raw.get("inputs") if isinstance(raw.get("inputs"), dict) else {}
        outs = raw.get("outputs") if isinstance(raw.get("outputs"), dict) else {}
        if not isinstance(raw.get("inputs", {}), dict) or not isinstance(raw.get("outputs", {}), dict):
            raise TraceError(f"{where} (id {node_id}): 'inputs'/'outputs' must be objects in schema 1.0.2+")
        return EtNode(
            id=node_id,
            name=name,
            parent=_int_or_none(parent_raw),
            rf_id=_int_or_none(attrs.get("rf_id")),
            tid=_int_or_none(attrs.get("tid")) or 0,
            op_schema=str(attrs.get("op_schema") or ""),
            inputs=_as_list(ins.get("values")),
            input_shapes=_check_shapes(at, "inputs.shapes", ins.get("shapes"), unreadable),
            input_types=_as_list(ins.get("types")),
            outputs=_as_list(outs.get("values")),
            output_shapes=_check_shapes(at, "outputs.shapes", outs.get("shapes"), unreadable),
            output_types=_as_list(outs.get("types")),
        )
    if "inputs" in raw and not isinstance(raw["inputs"], list):
        raise TraceError(f"{where} (id {node_id}): 'inputs' must be a list in schema 1.0.1")
    return EtNode(
        id=node_id,
        name=name,
        parent=_int_or_none(raw.get("parent")),
        rf_id=_int_or_none(raw.get("rf_id")),
        tid=_int_or_none(raw.get("tid")) or 0,
        op_schema=str(raw.get("op_schema") or ""),
        inputs=_as_list(raw.get("inputs")),
        input_shapes=_check_shapes(at, "input_shapes", raw.get("input_shapes"), unreadable),
        input_types=_as_list(raw.get("input_types")),
        outputs=_as_list(raw.get("outputs")),
        output_shapes=_check_shapes(at, "output_shapes", raw.get("output_shapes"), unreadable),
        output_types=_as_list(raw.get("output_types")),
    )


def _declared_rank(path: Path, data: dict[str, Any]) -> tuple[int | None, int | None]:
    if data.get("distributedInfo") is not None:
        return distributed_info(path, data["distributedInfo"])
    return _int_or_none(data.get("rank")), _int_or_none(data.get("world_size"))


def _link(trace: EtTrace) -> None:
    """Fill ``children``; a parent that is missing, or a parent loop, is a ``TraceError``."""
    nodes = trace.nodes
    for node in nodes.values():
        parent = node.parent
        if parent == node.id and node.is_operator:
            # The process root is its own parent in PyTorch's ETs; an operator that is its own
            # parent is a one-node parent cycle (read as a root, it was accepted where a two-node
            # cycle is refused).
            raise TraceError(
                f"{trace.path}: node {node.id} ({node.name!r}) is its own parent: a parent cycle "
                "(only the trace's root label may be)"
            )
        if parent is None or parent == node.id or (parent == 0 and 0 not in nodes):
            continue
        if parent not in nodes:
            raise TraceError(
                f"{trace.path}: node {node.id} ({node.name!r}) has parent {parent}, which is not in the trace"
            )
        nodes[parent].children.append(node.id)
    reached = 0
    stack = [n.id for n in nodes.values() if n.parent is None or n.parent == n.id or n.parent not in nodes]
    while stack:
        node_id = stack.pop()
        reached += 1
        stack.extend(nodes[node_id].children)
    if reached != len(nodes):
        raise TraceError(f"{trace.path}: parent cycle: {_describe_parent_cycle(trace, reached)}")


def _describe_parent_cycle(trace: EtTrace, _reached: int) -> str:
    nodes = trace.nodes
    rooted: set[int] = set()
    stack = [n.id for n in nodes.values() if n.parent is None or n.parent == n.id or n.parent not in nodes]
    while stack:
        node_id = stack.pop()
        rooted.add(node_id)
        stack.extend(nodes[node_id].children)
    start = min(set(nodes) - rooted)
    seen: dict[int, int] = {}
    path: list[int] = []
    node_id = start
    while node_id not in seen:
        seen[node_id] = len(path)
        path.append(node_id)
        parent = nodes[node_id].parent
        assert parent is not None
        node_id = parent
    cycle = [*path[seen[node_id] :], node_id]
    return " -> ".join(f"{nodes[i].name}#{i}" for i in cycle)


# -- top-level operators ---------------------------------------------------------------------------


@dataclass(slots=True)
class CollectiveInfo:
    """What an ET says about one collective call, before the job's size is known."""

    op: CollectiveOp
    in_bytes: float
    out_bytes: float
    dtype: str
    in_split: list[int] | None
    out_split: list[int] | None
    seq: int | None
    pg: str | None
    rank_field: int | None
    group: tuple[int, ...] | None
    group_size: int | None


@dataclass(slots=True)
class EtOp:
    """One top-level operator of one rank, with what it is and what it depends on (ET ids)."""

    et_id: int
    name: str
    tid: int
    kind: str  # compute | host | transfer | collective
    op: Op | None  # None for collectives until the group is known
    collective: CollectiveInfo | None
    deps: list[int]
    subtree: list[int]
    phase: str


@dataclass
class EtRank:
    """The top-level operators of one ET file, in the order they started."""

    trace: EtTrace
    ops: list[EtOp]
    notes: list[str]
    dropped: int

    @property
    def path(self) -> Path:
        return self.trace.path

    def world_hint(self) -> int:
        hint = self.trace.declared_world or 0
        for op in self.ops:
            info = op.collective
            if info is None:
                continue
            for value in (info.group_size, len(info.in_split or ()), len(info.out_split or ())):
                hint = max(hint, value or 0)
            if info.group:
                hint = max(hint, max(info.group) + 1)
        return hint

    def rank_hint(self) -> int | None:
        if self.trace.declared_rank is not None:
            return self.trace.declared_rank
        for op in self.ops:
            if op.collective is not None and op.collective.rank_field is not None:
                return op.collective.rank_field
        return None


def _phase_of(name: str, inherited: str) -> str:
    if name.startswith("autograd::engine::evaluate_function"):
        return "backward"
    if name.startswith(("Optimizer.step", "## optimizer")):
        return "optimizer"
    return inherited


def _top_level(trace: EtTrace) -> Iterator[tuple[EtNode, list[EtNode], str]]:
    """Each top-level operator with its folded subtree (itself first) and phase."""
    nodes = trace.nodes
    roots = [n for n in nodes.values() if n.parent is None or n.parent == n.id or n.parent not in nodes]
    stack: list[tuple[EtNode, str]] = [(r, "") for r in roots]
    while stack:
        node, phase = stack.pop()
        phase = _phase_of(node.name, phase)
        if node.is_operator:
            subtree: list[EtNode] = []
            inner = [node]
            while inner:
                cur = inner.pop()
                subtree.append(cur)
                inner.extend(nodes[c] for c in cur.children)
            yield node, subtree, phase
            continue
        stack.extend((nodes[c], phase) for c in node.children)


def _schema_args(op_schema: str) -> list[str]:
    """Argument names of an operator schema ``ns::op(Tensor output, int[] splits, ...) -> ...``."""
    start = op_schema.find("(")
    if start < 0:
        return []
    depth = 0
    end = start
    for i in range(start, len(op_schema)):
        if op_schema[i] == "(":
            depth += 1
        elif op_schema[i] == ")":
            depth -= 1
            if depth == 0:
                end = i
                break
    names = []
    for part in _split_types(op_schema[start + 1 : end]):
        if part == "*":
            continue
        words = part.split("=")[0].split()
        names.append(words[-1] if words else "")
    return names


def _record_param_comms(node: EtNode) -> dict[str, Any] | None:
    """The fields of a ``record_param_comms`` node, robust to the versions' argument layouts.

    Layouts seen: ``[input, seq, pg, rank, coll_name, in_split, out_split(, group_size)]`` and
    ``[input, seq, pg_name, rank, coll_name, in_nelems, out_nelems, dtype, in_split, out_split,
    global_rank_start, global_rank_stride, group_size]``; a wait is ``[seq, 0, 0, "wait", ...]``.
    """
    values = node.inputs
    name_at = next(
        (
            i
            for i, v in enumerate(values)
            if isinstance(v, str) and (v == "wait" or collective_from_label(v) is not None) and i >= 3
        ),
        None,
    )
    if name_at is None:
        return None
    fields: dict[str, Any] = {
        "name": values[name_at],
        "seq": _int_or_none(values[name_at - 3]),
        "pg": values[name_at - 2],
        "rank": _int_or_none(values[name_at - 1]),
    }
    rest = values[name_at + 1 :]
    lists = [v for v in rest if isinstance(v, list)]
    fields["in_split"] = parse_int_list(lists[0]) if lists else None
    fields["out_split"] = parse_int_list(lists[1]) if len(lists) > 1 else None
    last_list = max((i for i, v in enumerate(rest) if isinstance(v, list)), default=-1)
    trailing = [v for v in rest[last_list + 1 :] if _int_or_none(v) is not None]
    fields["group"] = None
    fields["group_size"] = None
    if len(trailing) >= 3 and trailing[-1] > 0 and trailing[-2] > 0:
        start, stride, size = trailing[-3], trailing[-2], trailing[-1]
        fields["group"] = tuple(range(start, start + stride * size, stride))
        fields["group_size"] = size
    elif trailing:
        fields["group_size"] = trailing[-1] if trailing[-1] > 0 else None
    dtype = next((v for v in rest[: max(last_list, 0)] if isinstance(v, str)), None)
    fields["dtype"] = dtype
    return fields


def _collective_info(top: EtNode, subtree: Sequence[EtNode]) -> CollectiveInfo | None:
    rpc: dict[str, Any] | None = None
    rpc_node: EtNode | None = None
    nccl: EtNode | None = None
    for node in subtree:
        if node.name == "record_param_comms" and rpc is None:
            fields = _record_param_comms(node)
            if fields is not None and fields["name"] != "wait":
                rpc, rpc_node = fields, node
        elif node.name.startswith("nccl:") and nccl is None:
            nccl = node
    op = None
    if rpc is not None:
        op = collective_from_label(str(rpc["name"]))
    if op is None and nccl is not None:
        op = collective_op(nccl.name)
    if op is None:
        op = collective_op(top.name)
    if op is None:
        return None

    # Tensors: the schema's named arguments of the c10d op when there is one, else what
    # record_param_comms / nccl:* recorded.
    ins: list[TensorRef] = []
    outs: list[TensorRef] = []
    in_split = out_split = None
    if top.op_schema and top.name.startswith("c10d::"):
        for arg, value, shape, typ in zip(
            _schema_args(top.op_schema), top.inputs, top.input_shapes, top.input_types, strict=False
        ):
            typ = typ if isinstance(typ, str) else ""
            if arg in ("input", "input_tensors", "input_tensor", "tensors", "tensor", "inputTensors"):
                _collect(value, shape, typ, ins)
            elif arg in ("output", "output_tensors", "output_tensor", "outputTensors"):
                _collect(value, shape, typ, outs)
            elif arg == "input_split_sizes":
                in_split = parse_int_list(value)
            elif arg == "output_split_sizes":
                out_split = parse_int_list(value)
    if not ins and rpc_node is not None:
        ins = rpc_node.input_tensors()
        outs = rpc_node.output_tensors()
    if not ins and nccl is not None:
        ins = nccl.input_tensors()
    if not ins:
        ins = top.input_tensors()
    if not outs:
        outs = [t for n in subtree for t in n.output_tensors()]
    if rpc is not None:
        in_split = in_split or rpc["in_split"]
        out_split = out_split or rpc["out_split"]
    in_bytes = sum(t.bytes for t in ins)
    out_bytes = sum(t.bytes for t in outs) if op is CollectiveOp.ALL_TO_ALL else in_bytes
    pg = rpc["pg"] if rpc is not None else None
    return CollectiveInfo(
        op=op,
        in_bytes=in_bytes,
        out_bytes=out_bytes,
        dtype=ins[0].dtype if ins else dtype_name(rpc.get("dtype") if rpc else None),
        in_split=in_split,
        out_split=out_split,
        seq=rpc["seq"] if rpc is not None else None,
        # A process-group *name* is the same on every rank; an old trace's pointer is not.
        pg=pg if isinstance(pg, str) else (str(pg[0]) if isinstance(pg, list) and pg else None),
        rank_field=rpc["rank"] if rpc is not None else None,
        group=rpc["group"] if rpc is not None else None,
        group_size=rpc["group_size"] if rpc is not None else None,
    )


def _tier(device: str) -> str:
    if device.startswith("cuda"):
        return "hbm"
    if device == "cpu":
        return "host"
    return device


def _classify(top: EtNode, reads: list[TensorRef], writes: list[TensorRef]) -> tuple[str, Op]:
    base = _base(top.name)
    if base in _COPY_OPS:
        written = {t.key for t in writes}
        sources = [t for t in reads if t.key not in written] or reads
        if sources:
            src = _tier(sources[0].device)
            dst = (
                _tier(writes[0].device)
                if writes
                else ("host" if base in ("item", "_local_scalar_dense") else src)
            )
            if src != dst:
                return "transfer", Transfer(src=src, dst=dst, bytes=sources[0].bytes)
    if any(t.on_gpu for t in reads) or any(t.on_gpu for t in writes):
        shapes = tuple(t.shape for t in top.input_tensors())
        ins = top.input_tensors()
        return "compute", Compute(
            op=top.name,
            flops=gemm_flops(top.name, shapes),
            bytes_read=sum(t.bytes for t in ins),
            bytes_written=sum(t.bytes for t in top.output_tensors()),
            dtype=ins[0].dtype if ins else (writes[0].dtype if writes else "fp32"),
            shapes=shapes,
            category=op_category(top.name),
        )
    return "host", Host(op=top.name)


def _is_metadata_only(subtree: Sequence[EtNode]) -> bool:
    return all(not n.is_operator or _base(n.name) in _METADATA_OPS for n in subtree)


def top_level_ops(trace: EtTrace) -> EtRank:
    """The rank's top-level operators with data, control and wait dependencies (ET ids)."""
    found = list(_top_level(trace))
    # rf_id is the start order of record functions across the process's threads; ids are assigned
    # in the same order by older observers, so they are the fallback.
    use_rf = all(top.rf_id is not None for top, _, _ in found)
    found.sort(key=lambda item: (item[0].rf_id if use_rf else item[0].id, item[0].id))
    last_writer: dict[int, int] = {}
    last_host: dict[int, int] = {}
    by_seq: dict[tuple[str | None, int], int] = {}
    waiting: dict[int, list[int]] = defaultdict(list)
    ops: list[EtOp] = []
    dropped = 0
    for top, subtree, phase in found:
        if top.name == "record_param_comms":
            fields = _record_param_comms(top)
            if fields is not None and fields["name"] == "wait":
                target = by_seq.get((None, fields["seq"])) if fields["seq"] is not None else None
                if target is not None:
                    waiting[top.tid].append(target)
                continue
        if _is_metadata_only(subtree):
            dropped += 1
            continue
        writes: list[TensorRef] = []
        for node in subtree:
            writes.extend(node.output_tensors())
        if top.name.startswith("c10d::") and top.op_schema:
            # c10d ops return a Work object; what they write is their output argument.
            for arg, value, shape, typ in zip(
                _schema_args(top.op_schema), top.inputs, top.input_shapes, top.input_types, strict=False
            ):
                if arg.startswith("output") or arg == "tensors":
                    _collect(value, shape, typ if isinstance(typ, str) else "", writes)
        written = {t.key for t in writes}
        reads = top.input_tensors()
        seen_reads = {t.key for t in reads}
        for node in subtree[1:]:
            for t in node.input_tensors():
                if t.key not in written and t.key not in seen_reads:
                    reads.append(t)
                    seen_reads.add(t.key)
        deps: dict[int, None] = {}
        for t in reads:
            writer = last_writer.get(t.key)
            if writer is not None:
                deps[writer] = None
        info = _collective_info(top, subtree)
        if info is not None:
            kind, op = "collective", None
        else:
            kind, op = _classify(top, reads, writes)
        prev_host = last_host.get(top.tid)
        if prev_host is not None:
            deps[prev_host] = None  # program order on the CPU thread that issued it
        if kind != "host" and waiting.get(top.tid):
            deps.update(dict.fromkeys(waiting.pop(top.tid)))
        # A wait folded inside this op (e.g. a c10d op that waits internally) depends on its target.
        for node in subtree[1:]:
            if node.name == "record_param_comms":
                fields = _record_param_comms(node)
                if fields is not None and fields["name"] == "wait" and fields["seq"] is not None:
                    target = by_seq.get((None, fields["seq"]))
                    if target is not None:
                        deps[target] = None
        deps.pop(top.id, None)
        ops.append(
            EtOp(top.id, top.name, top.tid, kind, op, info, list(deps), [n.id for n in subtree], phase)
        )
        if info is not None and info.seq is not None:
            by_seq[(None, info.seq)] = top.id
        if kind == "host":
            last_host[top.tid] = top.id
        for t in writes:
            last_writer[t.key] = top.id
    notes = [*trace.notes]
    if dropped:
        notes.append(f"{dropped} metadata-only ops (views, empty, detach, ...) dropped")
    return EtRank(trace, ops, notes, dropped)


# -- assembly --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Placement:
    """Where and how long one op runs (what a Kineto join can override)."""

    stream: Stream
    lane: int
    queue: Any
    duration_s: float | None = None
    start_s: float | None = None
    op: Op | None = None
    # Keys of other nodes (``Interleave``'s) it depends on besides its ET dependencies.
    deps: tuple[Hashable, ...] = ()


# (rank, op, default placement, the lane of the op's CPU thread) -> placement
Placer = Callable[[int, EtOp, Placement, int], Placement]


class Interleave(Protocol):
    """Nodes a join adds between the ET's own, in execution order (e.g. Kineto's host time)."""

    def before(self, rank: int, op: EtOp, place: Placement) -> list[Pending]:
        """The nodes that ran before ``op`` (placed as ``place``) and are not added yet."""
        ...

    def rest(self, rank: int) -> list[Pending]:
        """The nodes of ``rank`` still not added after its last ET op."""
        ...


def default_placement(op: EtOp, thread_lane: int) -> Placement:
    if op.kind == "host":
        return Placement(Stream.HOST, thread_lane, ("thread", op.tid))
    if op.kind == "transfer":
        return Placement(Stream.COPY, 0, ("copy", 0))
    if op.kind == "collective":
        return Placement(Stream.COMM, 0, ("comm", 0))
    return Placement(Stream.COMPUTE, 0, ("compute", 0))


def _collective(info: CollectiveInfo, rank: int, world: int, key: str) -> Collective:
    if info.group is not None and rank in info.group:
        group = info.group
    else:
        # Without explicit ranks the group is the whole job, or (a guess) the block of consecutive
        # ranks of the recorded size holding this rank.
        group = contiguous_group(rank, info.group_size or world, world)
    send = recv = None
    if info.op is CollectiveOp.ALL_TO_ALL:
        send = split_bytes(info.in_bytes, info.in_split, len(group))
        recv = split_bytes(info.out_bytes, info.out_split, len(group))
        if (send is None) != (recv is None):
            # One side uneven, the other even: spell the even side out so both are per-peer.
            n = len(group)
            send = send or tuple(info.in_bytes / n for _ in group)
            recv = recv or tuple(info.out_bytes / n for _ in group)
    return Collective(
        op=info.op,
        key=key,
        group=group,
        bytes=info.in_bytes,
        dtype=info.dtype,
        send_bytes=send,
        recv_bytes=recv,
    )


def assemble(
    ranks: Sequence[tuple[int, EtRank]],
    world: int,
    metadata: dict[str, Any],
    placer: Placer | None = None,
    interleave: Interleave | None = None,
) -> ExecutionGraph:
    """Number the ops of every rank into one graph; ``placer`` may change each op's placement and
    ``interleave`` add nodes between them."""
    pending = PendingGraph()
    for rank, et_rank in ranks:
        thread_lanes: dict[int, int] = {}
        ordinal: dict[str, int] = defaultdict(int)
        used: set[str] = set()
        for op in et_rank.ops:
            lane = thread_lanes.setdefault(op.tid, len(thread_lanes))
            place = default_placement(op, lane)
            if placer is not None:
                place = placer(rank, op, place, lane)
            if interleave is not None:
                for extra in interleave.before(rank, op, place):
                    pending.add(extra)
            node_op = place.op or op.op
            if op.collective is not None and place.op is None:
                info = op.collective
                group_label = info.pg if info.pg is not None else "world"
                if info.seq is not None:
                    key = f"{group_label}/seq{info.seq}"
                else:
                    ordinal[group_label] += 1
                    key = f"{group_label}/#{ordinal[group_label]}"
                while key in used:
                    key += "'"
                used.add(key)
                node_op = _collective(info, rank, world, key)
            assert node_op is not None
            pending.add(
                Pending(
                    key=(rank, op.et_id),
                    rank=rank,
                    name=op.name,
                    stream=place.stream,
                    op=node_op,
                    deps=[*((rank, d) for d in op.deps), *place.deps],
                    lane=place.lane,
                    queue=place.queue,
                    duration_s=place.duration_s,
                    start_s=place.start_s,
                    phase=op.phase,
                )
            )
        if interleave is not None:
            for extra in interleave.rest(rank):
                pending.add(extra)
    return pending.build(world, metadata)


def read_et_ranks(paths: Sequence[Path], datas: Sequence[Any]) -> tuple[list[tuple[int, EtRank]], int]:
    """Parse ET files into (rank, ops) pairs sorted by rank, and the job's size."""
    parsed = [top_level_ops(parse_et(p, d)) for p, d in zip(paths, datas, strict=True)]
    ranks = assign_ranks(list(paths), [r.rank_hint() for r in parsed])
    check_world(list(paths), ranks, [r.trace.declared_world for r in parsed])
    world = max([len(paths), *(r + 1 for r in ranks), *(r.world_hint() for r in parsed)])
    return sorted(zip(ranks, parsed, strict=True), key=lambda item: item[0]), world


def et_metadata(
    ranked: Sequence[tuple[int, EtRank]], world: int, paths: Sequence[Path], fmt: str
) -> dict[str, Any]:
    metadata = world_metadata(world, (r for r, _ in ranked), fmt, paths)
    metadata["schema_versions"] = sorted({r.trace.schema for _, r in ranked})
    notes = [f"rank {rank}: {note}" for rank, r in ranked for note in r.notes]
    if notes:
        metadata["notes"] = notes
    return metadata


def is_et_document(data: Any) -> bool:
    """A PyTorch ET: a ``schema`` and a ``nodes`` list (recsim's own graphs have both too)."""
    return (
        isinstance(data, dict)
        and isinstance(data.get("nodes"), list)
        and "schema" in data
        and data.get("schema") != SCHEMA
        and "traceEvents" not in data
    )


@register
class PyTorchETReader:
    name: ClassVar[str] = "pytorch_et"
    description: ClassVar[str] = (
        "PyTorch execution trace JSON (schema 1.0.1 and 1.0.2+/1.1.x-chakra), one file per rank; "
        "with Kineto traces among the files it joins them (see et_kineto)"
    )

    @classmethod
    def sniff(cls, path: Path, data: Any) -> bool:
        return is_et_document(data)

    def read(self, paths: Sequence[Path], parsed: dict[Path, Any] | None = None) -> ExecutionGraph:
        from recsim.graph.readers.et_kineto import load_or_join

        datas, joined = load_or_join(paths, parsed)
        if joined is not None:
            return joined
        ranked, world = read_et_ranks(paths, datas)
        return assemble(ranked, world, et_metadata(ranked, world, paths, self.name))
