"""Helpers shared by the trace readers: names to categories, dtypes, ranks, and graph assembly.

Not a reader (nothing here is ``@register``-ed). The tables below are the one place that decides
what a kernel or operator name *is*:

* ``kernel_category`` classifies GPU kernel names (Kineto, Chakra) and ``op_category`` PyTorch
  operator names (ET) into gemm / embedding / elementwise / memory / communication / other;
* ``collective_op`` recognises a collective from any of the spellings traces use (``c10d::
  alltoall_base_``, ``all_to_allv``, ``nccl:all_reduce``, ``ncclDevKernel_ReduceScatter_...``);
* ``dtype_name`` / ``dtype_bytes`` normalise the dtype spellings of ETs (``Tensor(c10::BFloat16)``),
  Kineto (``long int``) and NCCL metadata (``Float``);
* ``PendingGraph`` collects a reader's nodes under the reader's own keys, then numbers them, maps the
  dependencies, and chains each in-order queue (a CPU thread, a CUDA stream), so every reader gets
  stream order and a DAG by construction: dependencies only ever point to earlier nodes.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from recsim.errors import TraceError, first_few
from recsim.graph.ir import Collective, CollectiveOp, ExecutionGraph, Node, Op, Stream

# -- categories ------------------------------------------------------------------------------------

CATEGORIES = ("gemm", "embedding", "communication", "elementwise", "memory", "other")

_KERNEL_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("communication", ("nccl",)),
    # fbgemm_gpu's permute kernels reorder sparse lengths/indices/weights between the feature and
    # the rank layout: data movement, as ``op_category`` calls their ops (permute_*_sparse_data).
    ("memory", ("memcpy", "memset", "fbgemm_gpu::permute")),
    # fbgemm TBE kernels are named split_embedding_*; bounds_check_indices and linearize_index run
    # only as part of a TBE lookup/backward, so their time is embedding time too.
    ("embedding", ("embedding", "bounds_check_indices", "linearize_index")),
    # cuBLAS/cutlass GEMMs: sm80_xmma_gemm_*, ampere_sgemm_*, cutlass::Kernel<..gemm..>, the
    # split-K reduction cuBLAS launches after a split-K GEMM, and cuBLASLt's Hopper/Blackwell
    # kernels, named nvjet_tst_* / nvjet_hsh_* (no "gemm" in them: a tester's H100 trace had its
    # GEMMs costed as "other", by the HBM bandwidth ratio alone).
    ("gemm", ("gemm", "xmma", "cutlass", "cublas", "splitkreduce", "gemv", "nvjet")),
    ("elementwise", ("elementwise", "vectorized")),
)

#: The matrix-multiply ops of a TorchInductor template kernel's name (``triton_tem_fused_mm_0``,
#: ``triton_tem_fused_addmm_relu_1``): Inductor names a template kernel after the ops it fuses.
_TRITON_GEMM_TOKENS = frozenset({"mm", "addmm", "bmm", "baddbmm", "addbmm"})


@lru_cache(maxsize=8192)
def kernel_category(name: str) -> str:
    """The category of a GPU kernel (or memcpy/memset) name."""
    lower = name.lower()
    if lower.startswith("triton_tem_") and not _TRITON_GEMM_TOKENS.isdisjoint(lower.split("_")):
        return "gemm"
    for category, needles in _KERNEL_RULES:
        # "fbgemm" (the library, whose fbgemm_gpu:: kernels are embedding lookups, permutes,
        # offsets...) contains "gemm": the GEMM rule looks at the name without it, so a real GEMM
        # kernel of that namespace still matches on its own "gemm"/"cutlass".
        haystack = lower.replace("fbgemm", "") if category == "gemm" else lower
        if any(n in haystack for n in needles):
            return category
    return "other"


_GEMM_OPS = frozenset(
    {"mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "linear", "_scaled_mm", "mv", "addmv", "dot"}
)
_MEMORY_OPS = frozenset(
    {
        "copy_",
        "_to_copy",
        "to",
        "clone",
        "contiguous",
        "cat",
        "stack",
        "fill_",
        "zero_",
        "zeros",
        "zeros_like",
        "ones",
        "ones_like",
        "full",
        "index",
        "index_put_",
        "_index_put_impl_",
        "index_select",
        "gather",
        "scatter",
        "scatter_add_",
        "_pin_memory",
        "pin_memory",
        "item",
        "_local_scalar_dense",
        "permute_2D_sparse_data",
        "permute_1D_sparse_data",
        "slice_backward",
    }
)
_ELEMENTWISE_OPS = frozenset(
    {
        "add",
        "add_",
        "sub",
        "sub_",
        "mul",
        "mul_",
        "div",
        "div_",
        "divide_",
        "relu",
        "relu_",
        "sigmoid",
        "tanh",
        "gelu",
        "silu",
        "threshold_backward",
        "sigmoid_backward",
        "tanh_backward",
        "clamp",
        "clamp_min",
        "clamp_min_",
        "clamp_max",
        "sqrt",
        "rsqrt",
        "exp",
        "exp_",
        "log",
        "log_",
        "neg",
        "abs",
        "pow",
        "addcmul_",
        "addcdiv_",
        "lerp_",
        "where",
        "remainder",
        "uniform_",
        "normal_",
        "dropout",
        "native_dropout",
    }
)


def op_category(name: str) -> str:
    """The category of a PyTorch operator name (``aten::addmm``, ``fbgemm::split_embedding_...``)."""
    lower = name.lower()
    if collective_op(name) is not None or lower.startswith(("nccl", "record_param_comms")):
        return "communication"
    if "embedding" in lower or "bounds_check_indices" in lower:
        return "embedding"
    base = name.rsplit("::", 1)[-1]
    if base in _GEMM_OPS:
        return "gemm"
    if base in _MEMORY_OPS or "memcpy" in lower or "memset" in lower:
        return "memory"
    if base in _ELEMENTWISE_OPS or "_foreach_" in base:
        return "elementwise"
    return "other"


def gemm_flops(name: str, shapes: Sequence[Sequence[int]]) -> float:
    """FLOPs of a GEMM-like op from its input shapes (0 when the shapes do not say).

    ``mm(A[M,K], B[K,N])`` and ``addmm(bias, A, B)`` are ``2MKN``, ``bmm`` / ``baddbmm`` ``2BMKN``,
    ``linear(x[..., K], W[N, K])`` ``2 * prod(x[:-1]) * K * N``.
    """
    base = name.rsplit("::", 1)[-1]
    dims = [tuple(s) for s in shapes if len(s) >= 2]
    try:
        if base == "mm" and len(dims) >= 2:
            (m, k), (_, n) = dims[0][-2:], dims[1][-2:]
            return 2.0 * m * k * n
        if base == "addmm" and len(dims) >= 2:
            (m, k), (_, n) = dims[-2][-2:], dims[-1][-2:]
            return 2.0 * m * k * n
        if base in ("bmm", "baddbmm") and len(dims) >= 2 and len(dims[-2]) == 3:
            (b, m, k), (_, _, n) = dims[-2], dims[-1]
            return 2.0 * b * m * k * n
        if base == "linear" and dims and len(shapes) >= 2 and len(shapes[1]) == 2:
            x, w = shapes[0], shapes[1]
            return 2.0 * math.prod(x[:-1]) * x[-1] * w[0]
    except (ValueError, TypeError):
        return 0.0
    return 0.0


# -- collectives -----------------------------------------------------------------------------------

# Checked in order: the longer spellings that contain a shorter one ("reduce_scatter" contains
# "reduce", "allreduce" contains "reduce") come first.
_COLLECTIVE_RULES: tuple[tuple[tuple[str, ...], CollectiveOp], ...] = (
    (("reduce_scatter", "reducescatter"), CollectiveOp.REDUCE_SCATTER),
    (("all_to_all", "alltoall"), CollectiveOp.ALL_TO_ALL),
    # NCCL implements all_to_all as grouped send/recv: a SendRecv kernel is the all-to-all of a
    # DLRM step (p2p send/recv shows as separate Send / Recv kernels in NCCL >= 2.19).
    (("sendrecv",), CollectiveOp.ALL_TO_ALL),
    (("all_reduce", "allreduce"), CollectiveOp.ALL_REDUCE),
    (("all_gather", "allgather"), CollectiveOp.ALL_GATHER),
    (("broadcast",), CollectiveOp.BROADCAST),
    (("barrier",), CollectiveOp.BARRIER),
    (("reduce",), CollectiveOp.REDUCE),
    (("send",), CollectiveOp.SEND),
    (("recv",), CollectiveOp.RECV),
)


# Namespaces whose op and kernel names spell a collective (an aten op named "..._reduce" is not one).
_COMM_NAMESPACES = ("c10d", "_c10d", "c10d_functional", "torch_c10d", "nccl")


def collective_op(name: str) -> CollectiveOp | None:
    """The collective an op or kernel name denotes (``c10d::alltoall_base_``, ``nccl:all_reduce``,
    ``ncclDevKernel_ReduceScatter_...``), or None; ``gather``/``scatter`` alone are not collectives here."""
    lower = name.lower()
    if not lower.startswith(_COMM_NAMESPACES):
        return None
    return collective_from_label(lower)


def collective_from_label(label: str) -> CollectiveOp | None:
    """A collective from a bare label (``all_to_allv``, ``allreduce``; ``Float`` -> None)."""
    lower = label.lower()
    for needles, op in _COLLECTIVE_RULES:
        if any(n in lower for n in needles):
            return op
    return None


def parse_int_list(text: Any) -> list[int] | None:
    """``"[1, 2]"`` or ``[1, 2]`` -> ``[1, 2]``; empty or unparsable -> None (an unterminated
    ``"[0, 1, 2"`` too: a cut-off list, whose end is not known, is not the list it starts)."""
    if isinstance(text, list):
        values = text
    elif isinstance(text, str):
        stripped = text.strip()
        if stripped.startswith("[") != stripped.endswith("]"):
            return None
        inner = stripped.removeprefix("[").removesuffix("]").strip()
        if not inner:
            return None
        try:
            values = [int(v) for v in inner.split(",")]
        except ValueError:
            return None
    else:
        return None
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    return [int(v) for v in values]


#: The most elements a tensor or a collective's message can have: 2^48, 256 TiB of single bytes,
#: more than any one host or GPU holds (the largest hosts hold tens of TiB). A trace naming more
#: is corrupt; costing it gave predictions of 10^13 s.
MAX_ELEMENTS = 2**48


def bad_extent(dims: Sequence[int]) -> str | None:
    """Why a tensor's dimensions cannot be a real tensor's (a negative dimension, more than
    ``MAX_ELEMENTS`` elements), or None when they can."""
    if any(d < 0 for d in dims):
        return "a negative dimension"
    if math.prod(dims) > MAX_ELEMENTS:
        return f"{math.prod(dims):.3g} elements, past the 2^48 any memory holds"
    return None


def split_bytes(total: float, splits: Sequence[int] | None, group_size: int) -> tuple[float, ...] | None:
    """Per-peer bytes of an all-to-all from its split sizes.

    Split sizes count rows (or elements) of the flattened tensor; every row has the same size, so a
    peer's share of ``total`` bytes is proportional to its split. None when there are no splits (an
    even all-to-all) or they do not match the group.
    """
    if not splits or len(splits) != group_size:
        return None
    units = sum(splits)
    if units <= 0:
        return tuple(0.0 for _ in splits)
    return tuple(total * s / units for s in splits)


# -- dtypes ----------------------------------------------------------------------------------------

_DTYPES: dict[str, tuple[str, int]] = {
    "float": ("fp32", 4),
    "float32": ("fp32", 4),
    "double": ("fp64", 8),
    "float64": ("fp64", 8),
    "half": ("fp16", 2),
    "float16": ("fp16", 2),
    "bfloat16": ("bf16", 2),
    "longint": ("int64", 8),
    "long": ("int64", 8),
    "int64": ("int64", 8),
    "int": ("int32", 4),
    "int32": ("int32", 4),
    "shortint": ("int16", 2),
    "short": ("int16", 2),
    "int16": ("int16", 2),
    "signedchar": ("int8", 1),
    "char": ("int8", 1),
    "int8": ("int8", 1),
    "unsignedchar": ("uint8", 1),
    "byte": ("uint8", 1),
    "uint8": ("uint8", 1),
    "bool": ("bool", 1),
    "float8_e4m3fn": ("fp8", 1),
    "float8_e5m2": ("fp8", 1),
    "float8_e4m3fnuz": ("fp8", 1),
    "float8_e5m2fnuz": ("fp8", 1),
    "complex<float>": ("complex64", 8),
    "complex<double>": ("complex128", 16),
    # The rest of c10's ScalarType names (c10/core/ScalarType.h, AT_FORALL_SCALAR_TYPES_WITH_COMPLEX
    # _AND_QINTS and the unsigned/fp8 additions), with their C++ types' sizes, and the C++ spellings
    # a Kineto "Input type" gives them (gcc's demangled names). A NCCL kernel's "dtype" is one of
    # these names: one missing here gave its collective 0 bytes (ComplexFloat, UInt32, ...), so it
    # was not re-costed (a tester's find).
    "complexhalf": ("complex32", 4),
    "complex<half>": ("complex32", 4),
    "complexfloat": ("complex64", 8),
    "complexdouble": ("complex128", 16),
    "uint16": ("uint16", 2),
    "unsignedshort": ("uint16", 2),
    "uint32": ("uint32", 4),
    "unsignedint": ("uint32", 4),
    "uint64": ("uint64", 8),
    "unsignedlong": ("uint64", 8),
    "longlong": ("int64", 8),
    "qint8": ("int8", 1),
    "quint8": ("uint8", 1),
    "qint32": ("int32", 4),
    "float8_e8m0fnu": ("fp8", 1),
}


def _dtype_key(text: str) -> str:
    inner = text.strip()
    if inner.startswith("Tensor(") and inner.endswith(")"):
        inner = inner[7:-1]
    return inner.replace("c10::", "").replace(" ", "").lower()


@lru_cache(maxsize=1024)
def dtype_name(text: str | None, default: str = "fp32") -> str:
    """recsim's dtype name (fp32, bf16, int64, ...) for a trace's spelling; ``default`` if unknown."""
    if not text:
        return default
    return _DTYPES.get(_dtype_key(text), (default, 0))[0]


# Tensor-core kernels that multiply fp32 tensors in TF32: the Ampere/Hopper TF32 MMA shape of
# cutlass and cuBLAS kernel names (``cutlass_80_tensorop_s1688gemm_*``, ``ampere_s1688gemm_*``) or
# an explicit ``tf32`` (cuBLASLt/xmma: ``sm80_xmma_gemm_f32f32_tf32f32_*``). ``ampere_sgemm_*`` is
# the CUDA-core fp32 SGEMM.
_TF32_KERNEL_NEEDLES = ("s1688", "tf32")


def gemm_math_dtype(kernel: str, dtype: str) -> str:
    """The dtype a GEMM kernel computes in: ``tf32`` for fp32 tensors on a TF32 tensor-core kernel
    (PyTorch before 1.12 allowed TF32 matmuls by default; the tensors stay fp32 in the trace), else
    the tensors' ``dtype``."""
    if dtype == "fp32" and any(n in kernel.lower() for n in _TF32_KERNEL_NEEDLES):
        return "tf32"
    return dtype


def dtype_bytes(text: str | None) -> int | None:
    """Bytes per element for a trace's dtype spelling, or None if unknown."""
    if not text:
        return None
    found = _DTYPES.get(_dtype_key(text))
    return found[1] if found else None


# -- ranks -----------------------------------------------------------------------------------------

_RANK_PATTERNS = (
    re.compile(r"rank[-_]?(\d+)", re.IGNORECASE),
    re.compile(r"worker[-_]?(\d+)", re.IGNORECASE),
    re.compile(r"\.(\d+)\.et(?:\.gz)?$"),  # chakra.<rank>.et, the Chakra converter's naming
)


def rank_from_filename(path: Path) -> int | None:
    """A rank spelled in the file name (``trace_rank3.json``, ``-rank3``, ``worker3_...``, ``x.3.et``)."""
    for pattern in _RANK_PATTERNS:
        match = pattern.search(path.name)
        if match:
            return int(match.group(1))
    return None


def distributed_info(path: Path, info: Any) -> tuple[int | None, int | None]:
    """The (rank, world_size) a trace's ``distributedInfo`` declares, each None where it is not
    given (a trace without one is read as now: ranks from the file names or the order given). One
    that is there but malformed (not an object, a rank or size that is not a whole number in range)
    is a ``TraceError`` naming the key: ignored, it moved the rank and the job's size, and so the
    collectives' costs and the power of the idle accelerators (a tester's find)."""
    if info is None:
        return None, None
    if not isinstance(info, dict):
        raise TraceError(
            f"{path}: distributedInfo: expected an object (rank, world_size), got {_json_type(info)}"
        )
    rank = _declared_int(path, info, "rank", 0, "a non-negative integer")
    world = _declared_int(path, info, "world_size", 1, "a positive integer")
    return rank, world


def _declared_int(path: Path, info: dict[str, Any], key: str, least: int, expected: str) -> int | None:
    """``info[key]``: None where absent, else a whole number of at least ``least``."""
    if key not in info:
        return None
    value = info[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise TraceError(f"{path}: distributedInfo.{key}: expected {expected}, got {value!r}")
    return value


def _json_type(value: Any) -> str:
    """What a JSON value is, in words (an error's 'got ...')."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"text {value!r}"
    return repr(value)


def assign_ranks(paths: Sequence[Path], declared: Sequence[int | None]) -> list[int]:
    """One rank per file: the trace's own rank, else the file name's, else the order given.

    Two files claiming one rank is an error naming both.
    """
    ranks: list[int | None] = [
        d if d is not None else rank_from_filename(p) for p, d in zip(paths, declared, strict=True)
    ]
    if any(r is None for r in ranks):
        # Without a rank in every file, the order given is the only consistent answer.
        if all(r is None for r in ranks) or len(paths) == 1:
            ranks = [r if r is not None else i for i, r in enumerate(ranks)]
        else:
            missing = [str(p) for p, r in zip(paths, ranks, strict=True) if r is None]
            raise TraceError(
                f"{missing[0]}: cannot tell which rank this trace is (no rank in it or its name)"
            )
    owner: dict[int, Path] = {}
    for path, rank in zip(paths, ranks, strict=True):
        assert rank is not None
        if rank in owner:
            raise TraceError(f"{path}: rank {rank} is also the rank of {owner[rank]}")
        owner[rank] = path
    return [int(r) for r in ranks if r is not None]


def check_world(paths: Sequence[Path], ranks: Sequence[int], declared: Sequence[int | None]) -> None:
    """Every file's rank inside the job size the files declare, and one size among them: a rank
    past it, or files of jobs of two sizes, are files of different runs (the world was silently
    enlarged, and collectives priced for a job that never ran)."""
    sized = [(path, size) for path, size in zip(paths, declared, strict=True) if size]
    if sized:
        first_path, first = sized[0]
        for path, size in sized[1:]:
            if size != first:
                raise TraceError(
                    f"{path}: declares a job of {size} ranks, {first_path} one of {first}: "
                    "not one run's traces"
                )
    for path, rank, size in zip(paths, ranks, declared, strict=True):
        if size and rank >= size:
            raise TraceError(f"{path}: rank {rank} is outside its job of {size} ranks (its world_size)")


def contiguous_group(rank: int, size: int, world: int) -> tuple[int, ...]:
    """The group of ``size`` ranks holding ``rank`` when a trace gives only the group's size.

    A guess (documented where it is used): intra-node groups of consecutive ranks are the usual
    layout. ``size >= world`` (or unknown) is the whole job.
    """
    if size <= 0 or size >= world:
        return tuple(range(world))
    start = (rank // size) * size
    return tuple(range(start, start + size))


# -- assembly --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Pending:
    """A node before numbering: ``key`` is the reader's own identifier, ``deps`` are keys too.

    ``queue`` names the in-order queue the node runs on (a CPU thread, a CUDA stream): consecutive
    nodes of one rank with the same queue are chained in the order they were added. None: no queue.
    """

    key: Hashable
    rank: int
    name: str
    stream: Stream
    op: Op
    deps: list[Hashable] = field(default_factory=list)
    lane: int = 0
    queue: Hashable | None = None
    duration_s: float | None = None
    start_s: float | None = None
    phase: str = ""


class PendingGraph:
    """Nodes added in execution order; ``build`` numbers them and keeps every edge pointing back."""

    def __init__(self) -> None:
        self.nodes: list[Pending] = []
        self._keys: set[Hashable] = set()

    def add(self, pending: Pending) -> Pending:
        if pending.key in self._keys:
            raise ValueError(f"duplicate pending key {pending.key!r}")
        self._keys.add(pending.key)
        self.nodes.append(pending)
        return pending

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def build(self, ranks: int, metadata: dict[str, Any]) -> ExecutionGraph:
        """The graph: ids in insertion order, dependencies on keys added *earlier* only.

        A dependency on a key that is unknown or comes later is dropped: readers add nodes in the
        order they ran, so such an edge comes from a clock or id anomaly in the trace, or from a
        wait the ET join could not place after its op; keeping it could make a cycle. Stream order
        is added per (rank, queue).
        """
        recorded, odd = _last_arrivals(self.nodes)
        if odd:
            metadata.setdefault("notes", []).append(
                f"collectives {first_few([repr(k) for k in odd])}: the ranks' parts disagree (size), "
                "so their recorded durations, waits for the other ranks included, are kept"
            )
        ids: dict[Hashable, int] = {}
        last_in_queue: dict[tuple[int, Hashable], int] = {}
        nodes: list[Node] = []
        for index, p in enumerate(self.nodes):
            deps: dict[int, None] = {}
            if p.queue is not None:
                prev = last_in_queue.get((p.rank, p.queue))
                if prev is not None:
                    deps[prev] = None
                last_in_queue[(p.rank, p.queue)] = index
            for key in p.deps:
                dep = ids.get(key)
                if dep is not None and dep != index:
                    deps[dep] = None
            ids[p.key] = index
            nodes.append(
                Node(
                    id=index,
                    rank=p.rank,
                    name=p.name,
                    stream=p.stream,
                    op=p.op,
                    deps=tuple(deps),
                    lane=p.lane,
                    duration_s=recorded.get(index, p.duration_s),
                    start_s=p.start_s,
                    phase=p.phase,
                )
            )
        return ExecutionGraph(ranks, nodes, metadata)


def _one_collective(head: Collective, parts: Sequence[Op]) -> bool:
    """Whether ``parts`` (every member's, ``head`` among them) are parts of one collective: the same
    kind and group, and the same size, but for an all-to-all with splits, whose members' totals
    may differ (its splits are checked across the members by ``ExecutionGraph.validate``)."""
    if any(not isinstance(o, Collective) or (o.op, o.group) != (head.op, head.group) for o in parts):
        return False
    if head.op is CollectiveOp.ALL_TO_ALL and all(
        isinstance(o, Collective) and o.send_bytes is not None for o in parts
    ):
        return True
    return all(isinstance(o, Collective) and o.bytes == head.bytes for o in parts)


def _last_arrivals(nodes: Sequence[Pending]) -> tuple[dict[int, float], list[Hashable]]:
    """Position -> duration for the members of the collectives recorded with a duration: the
    shortest member's recorded duration.

    A collective kernel starts on each rank when that rank gets to it and ends on all of them
    together, once the last has arrived, so a member's recorded duration includes its wait for the
    others; the last to arrive waited for no one, and its duration (the shortest) is the
    collective's own. Replayed, the members start together (``recsim.graph.schedule``) and take
    that, so the waits are not counted twice. A collective with members missing from the trace (a
    partial trace, or a rank that recorded no duration) takes the duration of the last of the
    present members to arrive, the shortest of theirs too: it holds the wait for the missing
    members as recorded (the trace does not show when they arrived), and started when the last of
    the present ones arrived, where the replay starts them, so each present member ends when it
    did. Keeping each member's own duration counted the waits of the early ones a second time (a
    tester's find: ranks 1-7 of the eight-rank PARAM DLRM step replayed to 21.4 ms, longer than
    any rank's recorded step, 19.9 ms at most). (A partial trace is known as such from the group
    its collectives name, or the world size its files declare: two files of an eight-rank job
    that record neither read as a two-rank job.) The members of a key that disagree on the
    collective's size keep their recorded durations, waits included, with a note: the ranks'
    windows may have begun at different collectives. (Members that disagree on its kind, group or
    all-to-all splits fail the graph's validation, ``ExecutionGraph.validate``.)
    """
    members: dict[Hashable, list[int]] = defaultdict(list)
    for index, p in enumerate(nodes):
        if isinstance(p.op, Collective) and p.duration_s is not None:
            members[p.op.key].append(index)
    out: dict[int, float] = {}
    odd: list[Hashable] = []
    for key, positions in members.items():
        head = nodes[positions[0]].op
        assert isinstance(head, Collective)
        if not _one_collective(head, [nodes[i].op for i in positions]):
            odd.append(key)  # the members disagree (windows that start at different collectives)
            continue
        shortest = min(nodes[i].duration_s or 0.0 for i in positions)
        out.update((i, shortest) for i in positions)
    return out, odd


class LaneMap:
    """Small lane numbers per (rank, stream class) for the reader's own queue names, in first-seen order."""

    def __init__(self) -> None:
        self._lanes: dict[tuple[int, Stream, Hashable], int] = {}
        self._count: dict[tuple[int, Stream], int] = {}

    def lane(self, rank: int, stream: Stream, queue: Hashable) -> int:
        key = (rank, stream, queue)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._count.get((rank, stream), 0)
            self._count[(rank, stream)] = lane + 1
            self._lanes[key] = lane
        return lane


def world_metadata(world: int, present: Iterable[int], fmt: str, files: Sequence[Path]) -> dict[str, Any]:
    """The metadata every reader sets: format, files, ranks present, and whether collectives are partial."""
    ranks = sorted(set(present))
    return {
        "format": fmt,
        "source_files": [p.name for p in files],
        "trace_ranks": ranks,
        # Collectives span ranks whose files were not given: validate() must not require them.
        "partial_collectives": ranks != list(range(world)),
    }
