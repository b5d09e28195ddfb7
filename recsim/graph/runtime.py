"""Framework runtimes: who issues the GPU work of a training step, and what that costs the host.

``training.runtime`` of a workload names one (a registry keyed by name, like the other extension
points):

* ``fused`` (the default): kernels are issued ahead of the GPU at no modelled CPU cost, as with CUDA
  graphs or a fused C++ training loop (HugeCTR, NVIDIA's MLPerf DLRM submissions); each kernel still
  pays ``accelerator.kernel_launch`` on the GPU side (``recsim.cost.compute``). The graph is left as
  it is.
* ``eager``: eager PyTorch with TorchRec's ``TrainPipelineSparseDist``. One host thread per rank
  dispatches every operator in program order, so a GPU node cannot start before the CPU has
  dispatched it, and the GPU idles whenever dispatch is slower than the kernels (small batches).
  ``apply_runtime`` adds, per rank and step, a chain of ``Host`` nodes on the rank's host stream:

  1. the loop's fixed CPU work (zero_grad, the data loader's ``__next__``, the H2D copies);
  2. one dispatch node in front of every forward node (a dense layer: ``linear_forward_s``; a DCNv2
     cross layer: two of them; the other nodes share ``forward_rest_s`` by ``FORWARD_PIECES``);
  3. with a ``dot`` interaction, a **sync** before the interaction forward and another before its
     backward: TorchRec's ``InteractionArch`` keeps its ``triu_indices`` on the CPU (a plain
     attribute, not a buffer), so ``aten::index`` (forward) and ``index_put_`` (backward, on the
     autograd thread) copy it to the GPU and wait in ``cudaStreamSynchronize`` until the GPU has
     finished everything the interaction reads (the trace shows 1-6.6 ms of it inside
     ``## forward ##``);
  4. the next batch's ``sparse_data_dist`` (``input_dist_s``) and a **sync** on its splits
     all-to-all, which NCCL runs after this step's forward all-to-all on the same communicator (the
     input-dist collective is moved after the forward nodes in its queue accordingly);
  5. one dispatch node in front of every backward node (``linear_backward_s`` per dense layer, two
     per cross layer; the other nodes share ``backward_rest_s`` by ``BACKWARD_PIECES``);
  6. the dense optimizer: ``optimizer_op_s`` per aten op, ``OPTIMIZER_OPS_PER_TENSOR`` ops per
     parameter tensor (a weight and a bias per dense layer, three tensors per cross layer).

  The CPU seconds are measured on real TorchRec traces (``recsim.graph.eager_calibration``).

The pass runs on the chained graph (``recsim.graph.steps``): nodes are renumbered so that each
step keeps a contiguous id block (``metadata["step_stride"]`` is updated), and the host chain of
step ``s + 1`` follows that of step ``s`` in the same in-order queue, so the host runs ahead of the
GPU across steps until a sync stops it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import replace
from typing import ClassVar

from recsim.errors import ConfigError
from recsim.graph.eager_calibration import OPTIMIZER_OPS_PER_TENSOR, TORCHREC_V100, EagerCosts
from recsim.graph.ir import Collective, CollectiveOp, Compute, Embedding, ExecutionGraph, Host, Node, Stream
from recsim.workload.spec import Workload

#: The pieces of the forward (and backward) CPU time that are not dense layers in the calibration
#: trace, each a quarter of ``forward_rest_s`` (``backward_rest_s``): the embedding lookups, the
#: pooled-embedding exchange, the interaction, and the loss (backward: the gradient all-reduce). A
#: piece's share is split over its nodes on the rank, so the host cost of a step follows the model,
#: not how many groups a plan cuts the tables into; a piece the step does not have (no exchange on
#: one GPU) costs nothing.
FORWARD_PIECES = ("embedding", "exchange", "interaction", "other")
BACKWARD_PIECES = ("embedding", "exchange", "interaction", "gradients")


def _piece(node: Node) -> str:
    op = node.op
    if isinstance(op, Embedding):
        return "embedding"
    if isinstance(op, Collective):
        return "gradients" if op.op is CollectiveOp.ALL_REDUCE and node.phase == "backward" else "exchange"
    if isinstance(op, Compute) and (op.category in ("interaction", "sequence") or node.phase == "backward"):
        return "interaction"
    return "other"


class Runtime(ABC):
    """A framework runtime: transforms a chained training graph to add its host-side work."""

    name: ClassVar[str]

    @abstractmethod
    def apply(self, graph: ExecutionGraph, workload: Workload) -> ExecutionGraph:
        """``graph`` with this runtime's host work (the same graph when there is none)."""


RUNTIMES: dict[str, type[Runtime]] = {}


def register(cls: type[Runtime]) -> type[Runtime]:
    RUNTIMES[cls.name] = cls
    return cls


def runtime(name: str) -> Runtime:
    """The runtime called ``name``."""
    try:
        return RUNTIMES[name]()
    except KeyError:
        raise ConfigError(f"unknown runtime {name!r}; known: {', '.join(sorted(RUNTIMES))}") from None


def apply_runtime(graph: ExecutionGraph, workload: Workload) -> ExecutionGraph:
    """``graph`` with the host work of the workload's ``training.runtime``."""
    return runtime(workload.training.runtime).apply(graph, workload)


@register
class Fused(Runtime):
    """Kernels issued ahead at no modelled CPU cost (CUDA graphs, fused C++ loops)."""

    name = "fused"

    def apply(self, graph: ExecutionGraph, workload: Workload) -> ExecutionGraph:
        return graph


def _base_name(node: Node) -> str:
    name = node.name.split("#", 1)[0]
    for suffix in ("_fwd", "_bwd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@register
class Eager(Runtime):
    """Eager PyTorch/TorchRec: a host thread per rank dispatches every node (module docstring)."""

    name = "eager"
    costs: ClassVar[EagerCosts] = TORCHREC_V100

    def apply(self, graph: ExecutionGraph, workload: Workload) -> ExecutionGraph:
        c = self.costs
        layers = {layer.name: layer for layer in workload.dense_layers}
        # Dense layers in units of one Linear (+ activation): a DCNv2 cross layer is two GEMMs.
        linear_units = {
            name: 2 if layer.op == "dcnv2" else 1 for name, layer in layers.items() if layer.params
        }
        tensors = sum(3 if layer.op == "dcnv2" else 2 for layer in layers.values() if layer.params)
        optimizer_s = tensors * OPTIMIZER_OPS_PER_TENSOR[workload.training.optimizer] * c.optimizer_op_s
        dot = workload.interaction.type == "dot"

        steps = int(graph.metadata.get("steps", 1))
        old_stride = int(graph.metadata.get("step_stride", 0)) or (
            max((n.id for n in graph.nodes), default=-1) + 1
        )
        by_key: dict[tuple[int, int], list[Node]] = defaultdict(list)  # (step, rank) -> nodes in order
        for n in graph.nodes:
            by_key[(n.id // old_stride, n.rank)].append(n)
        # Every node keeps its offset in its step; host nodes take ids after the step's nodes.
        stride = 2 * old_stride + 8 * graph.ranks
        counters: dict[int, int] = defaultdict(int)

        def new_id(old: int) -> int:
            return (old // old_stride) * stride + old % old_stride

        def host_id(step: int) -> int:
            counters[step] += 1
            return step * stride + old_stride + counters[step] - 1

        out: list[Node] = []
        for s in range(steps):
            for r in range(graph.ranks):
                nodes = by_key.get((s, r), [])
                if not nodes:
                    continue
                program: list[Node] = []  # GPU and host nodes of this rank and step, in issue order
                inputs = [n for n in nodes if n.phase == "input"]
                dists = [n for n in inputs if isinstance(n.op, Collective)]
                loads = [n for n in inputs if not isinstance(n.op, Collective)]
                forward = [n for n in nodes if n.phase == "forward"]
                backward = [n for n in nodes if n.phase == "backward"]
                optimizer = [n for n in nodes if n.phase == "optimizer"]
                others = [n for n in nodes if n.phase not in ("input", "forward", "backward", "optimizer")]

                def host(
                    name: str, cpu_s: float, deps: tuple[int, ...] = (), step: int = s, rank: int = r
                ) -> Node:
                    return Node(
                        host_id(step),
                        rank,
                        f"{name}#{step}",
                        Stream.HOST,
                        Host(name, cpu_s=cpu_s),
                        deps,
                        phase="host",
                    )

                def dispatched(n: Node, cpu_s: float, program: list[Node] = program) -> None:
                    launch = host(f"dispatch:{_base_name(n)}", cpu_s)
                    program.append(launch)
                    program.append(replace(n, id=new_id(n.id), deps=(*map(new_id, n.deps), launch.id)))

                def shares(
                    nodes: list[Node], pieces: tuple[str, ...], linear_s: float, rest_s: float
                ) -> dict[int, float]:
                    """CPU seconds to dispatch each of ``nodes`` (one pass of one rank and step)."""
                    count: dict[str, int] = defaultdict(int)
                    for n in nodes:
                        if _base_name(n) not in linear_units:
                            count[_piece(n)] += 1
                    out: dict[int, float] = {}
                    for n in nodes:
                        units = linear_units.get(_base_name(n))
                        if units:
                            out[n.id] = units * linear_s
                        else:
                            piece = _piece(n)
                            out[n.id] = rest_s / len(pieces) / count[piece] if piece in pieces else 0.0
                    return out

                program.append(host("loop", c.step_fixed_s))
                program.extend(replace(n, id=new_id(n.id), deps=tuple(map(new_id, n.deps))) for n in loads)
                cost = shares(forward, FORWARD_PIECES, c.linear_forward_s, c.forward_rest_s)
                for n in forward:
                    if dot and isinstance(n.op, Compute) and n.op.category == "interaction" and n.deps:
                        program.append(host("sync:interaction_index", 0.0, tuple(map(new_id, n.deps))))
                    dispatched(n, cost[n.id])
                for n in dists:
                    dispatched(n, c.input_dist_s / len(dists))
                if dists:
                    program.append(host("sync:input_dist_splits", 0.0, tuple(new_id(n.id) for n in dists)))
                cost = shares(backward, BACKWARD_PIECES, c.linear_backward_s, c.backward_rest_s)
                for n in backward:
                    if dot and isinstance(n.op, Compute) and n.op.category == "interaction" and n.deps:
                        # IndexBackward0 -> index_put_ copies the same CPU index tensor: a second sync.
                        program.append(host("sync:interaction_index", 0.0, tuple(map(new_id, n.deps))))
                    dispatched(n, cost[n.id])
                for n in optimizer:
                    is_dense = isinstance(n.op, Compute) and n.op.category == "optimizer"
                    dispatched(n, optimizer_s if is_dense else 0.0)
                program.extend(replace(n, id=new_id(n.id), deps=tuple(map(new_id, n.deps))) for n in others)
                out.extend(program)
        metadata = dict(graph.metadata)
        metadata["step_stride"] = stride
        metadata["runtime"] = self.name
        return ExecutionGraph(graph.ranks, out, metadata)
