"""The cost layer facade: the duration of any node of an execution graph on a given system.

``CostModel(system, workload)`` dispatches by op kind to the calibrated models
(``compute``, ``embedding``, ``collectives``) and to simple byte/bandwidth models for copies and
host work. Both engines call it, so they agree where nothing is shared. It also names the
breakdown category of a node (what the Result's ``breakdown_s`` adds up).

Ranks map to accelerators in order: rank ``r`` is GPU ``r % per_node`` of node ``r // per_node``.
A system without accelerators (a CPU inference server) runs compute on its CPU sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableSequence, Sequence
from dataclasses import fields
from functools import cached_property
from itertools import repeat
from operator import attrgetter, is_
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from recsim.cost.collectives import choose_algorithm, collective_time_s
from recsim.cost.compute import (
    CPU_MEMORY_EFFICIENCY,
    GemmKernelTime,
    compute_time_s,
    cpu_compute_time_s,
    gemm_kernel_times,
    hbm_bytes,
)
from recsim.cost.embedding import EmbeddingCost, embedding_cost
from recsim.cost.memo import (
    MIXTURES_KEPT,
    OPS_BY_ID_KEPT,
    VALUES_KEPT,
    WHOLE_KEYS_KEPT,
    CostMemo,
    TupleInterner,
    let_go_when_full,
)
from recsim.cost.power import KernelEnergy
from recsim.errors import InfeasibleError
from recsim.graph.index import OpTable
from recsim.graph.ir import (
    Collective,
    CollectiveOp,
    Compute,
    Embedding,
    Host,
    Node,
    Op,
    Transfer,
    is_uneven_all_to_all,
)
from recsim.graph.shard_ops import slice_name
from recsim.hardware.system import System
from recsim.hardware.topology import SHM_LINE_FRACTION, Topology, build_topology
from recsim.workload.access import shared_access_model
from recsim.workload.access.mixture import fused_access_model
from recsim.workload.access.slice import SliceModel, SubsetModel

if TYPE_CHECKING:
    from recsim.hardware.devices import Accelerator
    from recsim.workload.access.model import AccessModel
    from recsim.workload.spec import Workload

# A C-level getter of all the fields of each op kind but collectives (``CostModel._op_duration``):
# an op's value key is then a plain tuple, hashed and compared in C, where the dataclasses'
# generated ``__hash__`` and ``__eq__`` are Python functions that build the same tuple each call.
_OP_FIELDS: dict[type, attrgetter[Any]] = {
    cls: attrgetter(*(f.name for f in fields(cls))) for cls in (Compute, Embedding, Transfer, Host)
}
_COMPUTE_FIELDS = _OP_FIELDS[Compute]
# An embedding op's fields but its table: its cost reads the table only through the access model
# (``CostModel.embedding_s``), so ops whose tables resolve to the same model cost the same.
_EMBEDDING_REST = attrgetter(*(f.name for f in fields(Embedding) if f.name != "table"))

#: Fraction of a PCIe link's line rate (payload per direction after 128b/130b coding) that a bulk
#: DMA copy reaches: TLP headers and flow control on top of the payload. MEASURED, nvbandwidth's
#: host-to-device copy (../shared/reference/microbench/ND_*_results.md): ND A100 v4 26.28 GB/s of
#: PCIe Gen4 x16's 31.51 (0.834), ND H100 v5 51 and ND H200 v5 52 of Gen5 x16's 63.02 (0.809,
#: 0.825); their mean. Applied to host-to-GPU and peer-to-peer copies over PCIe (a reviewer found
#: them at the full line rate).
PCIE_COPY_EFFICIENCY: Final[float] = (26.28 / 31.51 + 51.0 / 63.02 + 52.0 / 63.02) / 3


def copy_efficiency(family: str) -> float:
    """The fraction of a host link of ``family`` that a bulk copy reaches: ``PCIE_COPY_EFFICIENCY``
    on PCIe; a link of another family (GB200's NVLink-C2C) has no such measurement, so its rate
    as given (a reviewer's find)."""
    return PCIE_COPY_EFFICIENCY if family == "pcie" else 1.0


def copy_ends(op: Transfer) -> set[str]:
    """The memories a copy joins (``host``, ``hbm``, ``peer``, ...), without their indices."""
    return {op.src.split(":")[0], op.dst.split(":")[0]}


#: Breakdown categories, in the order results list them.
CATEGORIES = (
    "compute",
    "embedding",
    "all_to_all",
    "all_reduce",
    "other_communication",
    "data_loading",
    "host",
    "transfer",
    "exposed_wait",
)


def category_of(node: Node) -> str:
    """The breakdown category of a node."""
    return category_of_op(node.op)


def category_of_op(op: Op) -> str:
    """The breakdown category of a node with ``op`` (it reads no collective's key)."""
    if isinstance(op, Compute):
        return "compute"
    if isinstance(op, Embedding):
        return "embedding"
    if isinstance(op, Collective):
        if op.op is CollectiveOp.ALL_TO_ALL:
            return "all_to_all"
        if op.op is CollectiveOp.ALL_REDUCE:
            return "all_reduce"
        return "other_communication"
    if isinstance(op, Host):
        if op.op == "data_loading":
            return "data_loading"
        # Framework dispatch and syncs (recsim.graph.runtime); a replayed trace's CPU time too.
        return "host"
    return "transfer"


class CostModel:
    """Durations of graph nodes on ``system`` (``workload`` supplies table access patterns)."""

    def __init__(
        self,
        system: System,
        workload: Workload | None = None,
        topology: Topology | None = None,
        fused_tables: Mapping[str, Sequence[Sequence[Any]]] | None = None,
        table_slices: Mapping[str, Sequence[Any]] | None = None,
        access_models: Mapping[str, AccessModel] | None = None,
        memo: CostMemo | None = None,
        folded_parts: Mapping[str, Mapping[int, Collective]] | None = None,
    ) -> None:
        self.system = system
        # The all-to-all parts of a graph's folded ranks (graph metadata "folded_parts",
        # ``recsim.graph.build``): the members of a collective that the graph does not hold.
        self._folded_parts = folded_parts or {}
        self.workload = workload
        if memo is not None:
            memo.check(system, workload)
            # Before the id-keyed dicts are taken below: this model's keys are then into them.
            memo.fresh_tuples()
        self.topology = topology or (memo.topology if memo is not None else build_topology(system))
        if memo is not None and self.topology is not memo.topology:
            raise ValueError("a CostModel given a CostMemo costs on the memo's topology, not another one")
        self._tables = {t.name: t for t in workload.tables} if workload is not None else {}
        self._access: dict[str, AccessModel] = {}
        # A table-batched (TBE) node's tables and their lookups (graph metadata "fused_tables").
        self._fused = {k: [(str(t), float(n)) for t, n in v] for k, v in (fused_tables or {}).items()}
        # A part's op table name -> (table, start, end, order) (graph metadata "table_slices"):
        # popularity ranks start..end of the table, or ids start..end (a uniform subset of rows).
        self._slices = {
            k: (str(v[0]), int(v[1]), int(v[2]), str(v[3]) if len(v) > 3 else "popularity")
            for k, v in (table_slices or {}).items()
        }
        # Models made already for some of those names (``ShardOps.access_models`` of the builder
        # that made the graph, same workload): each is the model ``access`` makes for its name, so
        # it is taken as is, with what it has worked out (a table's popularity) kept.
        for name, model in (access_models or {}).items() if workload is not None else ():
            if name in self._fused:
                continue
            if name in self._slices:
                base_name, start, end, order = self._slices[name]
                if order != "popularity" or name != slice_name(base_name, start, end, order):
                    continue
            elif name not in self._tables:
                continue
            self._access[name] = model
        self._durations: dict[int, float] = {}
        # Op object id -> (the op, its duration): the copies of a chained graph share their ops, and
        # an identity lookup spares hashing every field of a frozen op (the op is kept alive here,
        # so its id cannot be reused while the entry exists).
        self._by_op_id: dict[int, tuple[object, float]] = {}
        # The same for collectives, by the identity of their group and split tuples (which the
        # copies share although each copy is a new op with its own key); the tuples are kept.
        self._collectives_by_id: dict[tuple[object, ...], tuple[tuple[object, ...], float]] = {}
        # Value key -> cost, the group and split tuples stood for by their canonical (interned)
        # copies' ids: an op's key is then hashed and compared without visiting its 1024 ranks.
        # The value-keyed caches are the memo's when one is given (kept across evaluations).
        self._collectives: dict[tuple[object, ...], float] = memo.collectives if memo else {}
        self._interned = TupleInterner(memo.canonical_tuples if memo else None)
        # ``collective_algorithm``'s choices, by the value key of ``collective_s`` less the splits
        # (the footprint reads the algorithm of the reductions only); the memo's when one is given.
        self._algorithms: dict[tuple[object, ...], str] = memo.algorithms if memo else {}
        self._by_op: dict[object, float] = memo.by_op if memo else {}
        # Lookups' whole costs (``embedding_cost``), by op identity and by value key: this
        # evaluation's own (an ``EmbeddingCost`` is a few hundred bytes, one per distinct lookup).
        self._embedding_by_id: dict[int, tuple[Embedding, EmbeddingCost]] = {}
        self._embedding_costs: dict[object, EmbeddingCost] = {}
        # Compute ops' GEMM kernel times by their fields (``_gemm_times``): this model's own.
        self._gemm_kernel_times: dict[object, tuple[GemmKernelTime, ...]] = {}
        # Ops' kernel energies (``kernel_j``) by the same value keys.
        self._energy_by_op: dict[object, float] = memo.energy_by_op if memo else {}
        # With a memo, the durations and energies by op identity too, across its evaluations
        # (``CostMemo.durations_by_id``, ``energies_by_id``): found before a value key is made.
        self._durations_by_id = memo.durations_by_id if memo else None
        self._energies_by_id = memo.energies_by_id if memo else None
        # Whole uneven all-to-alls by the identity of their parts' fields (``all_to_all_s``).
        self._wholes: dict[tuple[object, ...], tuple[tuple[Collective, ...], float]] = {}
        # With a memo, whole all-to-alls are keyed by value instead (``_whole_key``), in the memo's
        # ``collectives``: an evaluation's parts are new objects, so identity finds nothing there.
        self._shared_wholes = memo is not None
        # ``_whole_key``'s keys by their parts' ids: the memo's when one is given.
        self._whole_keys: dict[tuple[int, ...], tuple[tuple[object, ...], tuple[object, ...]]] = (
            memo.whole_keys if memo else {}
        )
        # A fused (TBE) table -> what its access model is made of, and the mixture made of each:
        # the ranks' table-batched lookups of the same tables and lookups (the replicated tables of
        # a data-parallel sharding, on every rank) share one model and so one cost.
        self._access_keys: dict[str, object] = {}
        self._mixtures: dict[object, AccessModel | None] = memo.mixtures if memo else {}
        # What ops and collectives move through each resource, by ``value_key`` and
        # ``collective_key`` (``recsim.engine.resources``): the memo's when one is given.
        self.traffic: dict[object, object] = memo.traffic if memo else {}

    # -- per op kind ---------------------------------------------------------------------------

    def access(self, table: str) -> AccessModel | None:
        """The access model of a workload table (None for traces without a workload)."""
        if table in self._fused and table not in self._access:
            key = self.access_key(table)
            if key in self._mixtures:
                model = self._mixtures[key]
            else:
                parts = [(self.access(t), n) for t, n in self._fused[table]]
                model = None
                if all(m is not None for m, _ in parts):
                    model = fused_access_model([m for m, _ in parts if m], [n for _, n in parts])
                let_go_when_full(self._mixtures, MIXTURES_KEPT)[key] = model
            if model is not None:
                self._access[table] = model
            return self._access.get(table)
        if table in self._slices and table not in self._access:
            base_name, start, end, order = self._slices[table]
            base = self.access(base_name)
            if base is not None:
                self._access[table] = (
                    SliceModel(base, start, end) if order == "popularity" else SubsetModel(base, end - start)
                )
            return self._access.get(table)
        if self.workload is None or table not in self._tables:
            return self._access.get(table)
        if table not in self._access:
            spec = self._tables[table]
            self._access[table] = shared_access_model(self.workload.table_row_access(spec), spec.rows)
        return self._access[table]

    def access_key(self, table: str) -> object:
        """What the access model of ``table`` is made of: a fused (TBE) table's parts (its tables
        and their lookups, in order; equal parts make equal mixtures), else the table's name."""
        key = self._access_keys.get(table)
        if key is None:
            parts = self._fused.get(table)
            key = self._access_keys[table] = table if parts is None else ("fused", tuple(parts))
        return key

    def compute_s(self, op: Compute) -> float:
        acc = self.system.accelerator
        if acc is not None:
            return compute_time_s(op, acc, times=self._gemm_times(op, acc))
        cpus = self.system.node.cpus
        return cpu_compute_time_s(op, cpus.device, cpus.count)

    def compute_hbm_bytes(self, op: Compute) -> float:
        """``recsim.cost.compute.hbm_bytes`` of ``op`` on this system's accelerator (which it needs),
        from the same GEMM kernel times its duration reads (``_gemm_times``)."""
        acc = self.system.accelerator
        assert acc is not None
        return hbm_bytes(op, acc, self._gemm_times(op, acc))

    def _gemm_times(self, op: Compute, acc: Accelerator) -> tuple[GemmKernelTime, ...]:
        """``gemm_kernel_times(op, acc)`` (``acc``: this system's accelerator), worked out once per
        op value for this model: an evaluation reads them for an op's duration, its kernel energy
        and its HBM traffic (``compute_hbm_bytes``), and on a system seen for the first time (a
        sweep's point) each had run the wave model and its split-K search again."""
        key = _COMPUTE_FIELDS(op)
        found = self._gemm_kernel_times.get(key)
        if found is None:
            found = self._gemm_kernel_times[key] = gemm_kernel_times(op, acc)
        return found

    def embedding_s(self, op: Embedding) -> float:
        return self.embedding_cost(op).time_s

    def embedding_cost(self, op: Embedding) -> EmbeddingCost:
        """The whole cost of ``op`` on its tier: its time, the bytes it moves per resource and how
        (``recsim.cost.embedding``), with the table's access model.

        Worked out once per op value (``value_key``, as durations are): an evaluation asks for each
        lookup's cost three times (its duration, its kernel energy, its tier's activity), and on a
        system seen for the first time (a sweep's point) each asking had redone the tier's model.
        The op is looked up by identity first (the copies of a chained graph share theirs)."""
        hit = self._embedding_by_id.get(id(op))
        if hit is not None and hit[0] is op:
            return hit[1]
        key = self.value_key(op)
        found = self._embedding_costs.get(key)
        if found is None:
            found = self._embedding_costs[key] = embedding_cost(op, self.system, self.access(op.table))
        self._embedding_by_id[id(op)] = (op, found)  # the op kept: its id stays its own
        return found

    def link_window_s(self, op: Op, duration_s: float) -> float | None:
        """How long ``op``'s link bytes may take without lengthening it, when it runs for
        ``duration_s``: a lookup whose tier overlaps its transfer with other limits
        (``EmbeddingCost.link_window_s``) has its modelled window, stretched by what ``duration_s``
        adds to its modelled time (a kernel slowed beside collectives streams its rows more slowly;
        its fixed overheads do not grow). None where the transfer is in series with the rest of the
        op (copies: latency + bytes / rate; lookups of the other tiers): its own time is its window."""
        if not isinstance(op, Embedding):
            return None
        cost = self.embedding_cost(op)
        if cost.link_window_s is None:
            return None
        return max(0.0, duration_s - (cost.time_s - cost.link_window_s))

    def collective_s(self, op: Collective) -> float:
        """Seconds of ``op`` alone. An uneven all-to-all part stands here for every member sending
        its pattern shifted from ``group[0]``: the engines cost those from all their parts
        (``collective_members_s``)."""
        group, send, recv = op.group, op.send_bytes, op.recv_bytes
        if len(group) <= 1:
            return 0.0
        # Identical collectives (same op, group, sizes, dtype) recur on every rank and step:
        # cost them once. The key leaves out ``key`` (the instance name) on purpose.
        fast = (op.op, op.bytes, op.dtype, op.algorithm, id(group), id(send), id(recv))
        hit = self._collectives_by_id.get(fast)
        if hit is not None:
            kept = hit[0]
            if kept[0] is group and kept[1] is send and kept[2] is recv:
                return hit[1]
        tuples = (group, send, recv)
        # Equal tuples have one canonical copy (``TupleInterner``), so these ids are equal exactly
        # when the tuples are: the key matches exactly the ops that
        # ``(op.op, group, bytes, dtype, send, recv, algorithm)`` would, at the cost of an id.
        canonical = self._interned.canonical
        key = (
            op.op,
            id(canonical(group)),
            op.bytes,
            op.dtype,
            id(canonical(send)),
            id(canonical(recv)),
            op.algorithm,
        )
        value = self._collectives.get(key)
        if value is None:
            # ``op.algorithm`` is a preference: taken where it can run, else the automatic choice.
            value = collective_time_s(op, self.topology)
            let_go_when_full(self._collectives, VALUES_KEPT)[key] = value
        self._collectives_by_id[fast] = (tuples, value)
        return value

    def collective_algorithm(self, op: Collective) -> str:
        """The algorithm ``op`` runs with (``op.algorithm`` where it can run here, else the automatic
        choice: the one ``collective_s`` times), for the footprint of its kernels beside the
        computation (``recsim.cost.interference.collective_footprints``). Kept per value, as
        ``collective_s``'s times are."""
        canonical = self._interned.canonical
        key = (op.op, id(canonical(op.group)), op.bytes, op.dtype, op.algorithm)
        name = self._algorithms.get(key)
        if name is None:
            name = self._algorithms[key] = choose_algorithm(op, self.topology)[0]
        return name

    def all_to_all_s(self, parts: Sequence[Collective]) -> float:
        """Stand-alone seconds of an all-to-all from every member's part, in group order.

        The whole traffic matrix, row ``i`` being member ``i``'s ``send_bytes``: a member that
        receives more than it sends (a table's owner in a model-parallel backward, every rank's
        indices going to the owners in the input distribution) loads its links with what it
        receives. One part alone (``collective_s``) stands for a matrix in which every member sends
        that part's pattern shifted, which is exact only for such patterns.

        Cached for this model by the identity of the parts' fields (the copies of a chained graph
        share them; the parts are kept with the value, so the ids stay theirs); with a
        ``CostMemo``, by value in the memo instead (``_whole_key``), where the next evaluation of
        the same matrix finds it.
        """
        if self._shared_wholes:
            whole = self._whole_key(parts)
            value = self._collectives.get(whole)
            if value is None:
                value = collective_time_s(list(parts), self.topology)
                let_go_when_full(self._collectives, VALUES_KEPT)[whole] = value
            return value
        head = parts[0]
        key = (
            head.op,
            id(head.group),
            head.dtype,
            head.algorithm,
            tuple([(p.bytes, id(p.send_bytes), id(p.recv_bytes)) for p in parts]),
        )
        hit = self._wholes.get(key)
        if hit is not None and all(
            a.group is b.group and a.send_bytes is b.send_bytes and a.recv_bytes is b.recv_bytes
            for a, b in zip(hit[0], parts, strict=True)
        ):
            return hit[1]
        kept = tuple(parts)
        value = collective_time_s(list(kept), self.topology)
        self._wholes[key] = (kept, value)
        return value

    def _whole_key(self, parts: Sequence[Collective]) -> tuple[object, ...]:
        """A value key of a whole all-to-all (``all_to_all_s``): every part's fields but its
        ``key`` (as ``collective_s`` keys one part), each part's as the id of its interned copy.

        Hashing every member's splits, ``n^2`` numbers, would cost about what costing the matrix
        does; but the builder shares one part (and its split tuples) among the ranks that send and
        receive alike, so each distinct part object is resolved once (its tuples through the
        interner, by identity after their first sight), and the key is a tuple of ``n`` ints. Each
        id is that of a canonical tuple the interner keeps (a memo's: alive as long as the memo),
        so equal ids mean equal values."""
        # Parts laid down before (the same objects: ``ShardOps`` keeps a plan's) have their key kept
        # by their ids; the identity check, and the ids, in C rather than a loop over the members.
        part_ids = tuple(map(id, parts))
        hit = self._whole_keys.get(part_ids)
        if hit is not None and all(map(is_, hit[0], parts)):
            return hit[1]
        canonical = self._interned.canonical
        resolved: dict[int, int] = {}  # id of a part (alive in ``parts``) -> its interned key's id
        ids = []
        for part in parts:
            found = resolved.get(id(part))
            if found is None:
                found = resolved[id(part)] = id(canonical(self._part_fields(part)))
            ids.append(found)
        key = ("whole", tuple(ids))
        kept = self._whole_keys
        if len(kept) >= WHOLE_KEYS_KEPT:  # a bound: parts made afresh each time would only pile up
            del kept[next(iter(kept))]
        kept[part_ids] = (tuple(parts), key)
        return key

    def part_s(self, op: Collective, rank: int) -> float:
        """Seconds of one member's part of an uneven all-to-all when the other parts are not at
        hand (a one-rank trace): the matrix in which every member sends ``rank``'s pattern shifted
        by its distance to ``rank`` (``traffic_matrix``). Memoised by value and ``rank``'s place."""
        group = op.group
        me = group.index(rank) if rank in group else 0
        canonical = self._interned.canonical
        key = (
            "part",
            op.op,
            id(canonical(group)),
            op.bytes,
            op.dtype,
            id(canonical(op.send_bytes)),
            id(canonical(op.recv_bytes)),
            op.algorithm,
            me,
        )
        value = self._collectives.get(key)
        if value is None:
            value = collective_time_s(op, self.topology, rank=group[me])
            let_go_when_full(self._collectives, VALUES_KEPT)[key] = value
        return value

    def ordered_parts(self, nodes: Sequence[Node]) -> list[Collective] | None:
        """The parts of one collective's member ``nodes`` in group order, or None unless there is
        exactly one part per group member (a built graph's collectives have them all, the parts of
        its folded ranks kept beside it; a one-rank trace's do not)."""
        return self._ordered_parts([n.op for n in nodes], [n.rank for n in nodes])

    def _ordered_parts(self, ops: Sequence[Op], ranks: Sequence[int]) -> list[Collective] | None:
        """``ordered_parts`` of the member nodes with ``ops`` on ``ranks`` (what it reads of them)."""
        first = ops[0]
        if not isinstance(first, Collective):
            return None
        group = first.group
        # The parts by rank, checked and put in group order by dict, set and ``map`` calls in C,
        # each check a count where it can be (comparing two key sets of 128 ranks costs about what
        # a Python loop over the members had, ~0.2 M instructions per all-to-all of 128 ranks,
        # three an evaluation). A part for every member exactly: no op but a collective, no rank
        # twice (among the ops, or the ops' and the folded ranks': each a dict's keys, so the
        # union's size says), a group without a repeated rank and no rank outside it (as many
        # ranks as the group's, every member found).
        if not all(map(isinstance, ops, repeat(Collective))):
            return None
        by_rank: dict[object, Collective] = dict(zip(ranks, ops, strict=True))  # type: ignore[arg-type]
        given = len(ops)
        # A chained graph's copies carry the step's key with a ``#step`` suffix
        # (``recsim.graph.steps``); the folded ranks' parts are the step's.
        folded = self._folded_parts and (
            self._folded_parts.get(first.key) or self._folded_parts.get(first.key.rpartition("#")[0])
        )
        if folded:
            by_rank.update(folded)
            given += len(folded)
        if len(by_rank) != given or given != len(group) or len(set(group)) != given:
            return None
        try:
            return list(map(by_rank.__getitem__, group))
        except KeyError:  # a member without a part (so a part of a rank outside the group)
            return None

    def collective_members_s(self, nodes: Sequence[Node]) -> float:
        """Seconds of one collective from its member nodes (all members start and end together).

        An uneven all-to-all (a member with ``send_bytes``) with a part for every member is the
        whole matrix (``all_to_all_s``; a member without splits sends ``bytes / n`` to each); with
        some parts missing, the slowest of them read as its own rank's (``part_s``). Any other
        collective is the slowest member's ``duration_s`` (its parts cost alike).
        """
        if not any(is_uneven_all_to_all(n.op) for n in nodes):
            return max(self.duration_s(n) for n in nodes)
        first = nodes[0].op
        assert isinstance(first, Collective)  # an all-to-all's members are its parts
        if len(first.group) < 2:
            return 0.0
        parts = self.ordered_parts(nodes)
        if parts is not None:
            return self.all_to_all_s(parts)
        return max(
            self.part_s(n.op, n.rank) if is_uneven_all_to_all(n.op) else self.duration_s(n) for n in nodes
        )

    def whole_all_to_alls(
        self, nodes: Sequence[Node], durations: list[float], *, keep_idle: bool = False
    ) -> None:
        """Give every member of each uneven all-to-all of ``nodes`` (an all-to-all with a member
        that has ``send_bytes``) the collective's time (``collective_members_s``: from all its
        parts, the whole traffic matrix, where ``nodes`` hold them all, as a built step graph
        does). ``durations`` (by position) changes in place. ``keep_idle``: a collective of one
        member or of no bytes keeps the durations it has (a replay's recorded ones)."""
        self._whole_all_to_alls([node.op for node in nodes], nodes.__getitem__, durations, keep_idle)

    def _whole_all_to_alls(
        self,
        ops: Sequence[Op],
        node_at: Callable[[int], Node],
        durations: MutableSequence[float] | npt.NDArray[np.float64],
        keep_idle: bool,
        ranks: Sequence[int] | None = None,
        table: OpTable | None = None,
    ) -> None:
        """``whole_all_to_alls`` from the nodes' ``ops`` by position, making only the all-to-alls'
        member nodes (``node_at``: the node at a position), which the collective's cost reads.
        ``ranks``: the nodes' ranks by position, where the caller has them without making nodes (a
        built graph's columns); a collective with a part for every member is then costed from its
        ops and ranks (``collective_members_s`` reads no more of them), and only one without
        makes its member nodes. ``table``: ``ops`` as an ``OpTable``, where the caller has it: the
        all-to-alls' positions are then those of its all-to-all ops, without a test per node."""
        parts_of: dict[str, list[int]] = {}
        # Read once: an enum member's class attribute is a slow read (``recsim.graph.build._COMM``).
        all_to_all = CollectiveOp.ALL_TO_ALL
        if table is None:
            positions: Iterable[int] = range(len(ops))
        else:
            kinds = [type(op) is Collective and op.op is all_to_all for op in table.ops]
            positions = np.asarray(kinds, dtype=bool)[table.number].nonzero()[0].tolist()
        for position in positions:
            op = ops[position]
            if type(op) is Collective and op.op is all_to_all:
                parts_of.setdefault(op.key, []).append(position)
        for positions in parts_of.values():
            if not any(is_uneven_all_to_all(ops[p]) for p in positions):
                continue
            member_ops = [ops[p] for p in positions]
            if keep_idle and (
                len(member_ops[0].group) < 2  # type: ignore[union-attr]
                or not any(op.bytes > 0 for op in member_ops)  # type: ignore[union-attr]
            ):
                continue
            # ``collective_members_s`` of an uneven all-to-all: none for a group of one, else the
            # whole matrix when every member has its part.
            parts = None
            if ranks is not None and len(member_ops[0].group) >= 2:  # type: ignore[union-attr]
                parts = self._ordered_parts(member_ops, [ranks[p] for p in positions])
            if parts is not None:
                value = self.all_to_all_s(parts)
            else:
                value = self.collective_members_s([node_at(p) for p in positions])
            for position in positions:
                durations[position] = value

    def transfer_s(self, op: Transfer) -> float:
        acc = self.system.accelerator
        if acc is None:
            # A copy within host memory (a CPU-only node): read and written at the sustained
            # bandwidth the CPU tiers use.
            return op.bytes / self._host_memory_sustained_bytes_per_s
        ends = copy_ends(op)
        if "peer" in ends and not self._peer_over_nvlink:
            # Over PCIe: the rate ``copy_bytes_per_s`` gives, computed in the order it always was
            # (bytes over the line rate, times the mean time per line byte), so the times stay the
            # same to the last digit (``b / (link / s)`` differs from ``b / link * s`` by one ulp
            # for about a quarter of sizes; a reviewer's find).
            return (
                acc.host_interface.latency_s
                + op.bytes / self.system.node.accelerator_link_bytes_per_s * self._peer_copy_s_per_line_byte
            )
        rate = self.copy_bytes_per_s(op)
        if ends == {"hbm"}:
            # Within the GPU: no link, a copy kernel's HBM traffic (it had been priced at the host
            # link's rate, a reviewer's find).
            return op.bytes / rate if rate else 0.0
        if "peer" in ends:
            assert acc.nvlink is not None
            return acc.nvlink.link.latency_s + op.bytes / (rate or 0.0)
        if rate is None:
            # A copy no GPU link carries (host to host, to an SSD) is priced as a host one.
            rate = self.copy_bytes_per_s(Transfer(src="host", dst="hbm", bytes=op.bytes))
        # Over the host link.
        return acc.host_interface.latency_s + op.bytes / (rate or 0.0)

    def copy_bytes_per_s(self, op: Transfer) -> float | None:
        """The per-direction rate of a copy between ``op``'s ends on this system's node: the one
        rate rule of ``transfer_s`` and of a replay's re-estimated copies (``recsim.engine.replay``).

        * To a peer over an NVLink fabric: a GPU's scale-up bandwidth (``System``: all its links
          through an NVSwitch, at the ports' rate where slower; on a mesh, the most links any GPU
          has). ASSUMPTION: a mesh pair joined by fewer links (DGX-1's) gets no less.
        * To a peer without one (a PCIe node, though its GPUs have NVLink ports: h100-pcie-server):
          GPU to GPU over PCIe (peer to peer): under one switch it never climbs the uplink to the
          CPU, so the GPU's own link, at most a switch port, at ``copy_efficiency`` of it. A pair
          whose route crosses a CPU that blocks peer traffic (``Topology.shm_pair``: Intel, Arm
          hosts) is staged through host memory at ``SHM_LINE_FRACTION`` of the link, as CUDA's
          copies between GPUs without peer access are (the constant's measurement). The copy's
          source takes turns over the node's GPUs (``GraphBuilder.global_batch_input``): every
          ordered pair's time, averaged.
        * To or from the host: every rank copies its batch at about the same time, so its share of
          the PCIe switch's uplink (``Node.host_bandwidth_bytes_per_s_per_accelerator``), at
          ``copy_efficiency``.
        * Within the GPU: a copy kernel reads and writes each byte, half the HBM bandwidth.

        None for a copy that no GPU link carries (host to host, to an SSD) or on a node without
        GPUs."""
        acc = self.system.accelerator
        if acc is None:
            return None
        ends = copy_ends(op)
        node = self.system.node
        if "peer" in ends:
            if self._peer_over_nvlink:
                return node.scale_up_bandwidth_bytes_per_s_per_accelerator
            return node.accelerator_link_bytes_per_s / self._peer_copy_s_per_line_byte
        if ends == {"hbm"}:
            return acc.hbm.bandwidth_bytes_per_s / 2
        if ends == {"hbm", "host"}:
            return node.host_bandwidth_bytes_per_s_per_accelerator * copy_efficiency(
                acc.host_interface.family
            )
        return None

    @cached_property
    def _peer_over_nvlink(self) -> bool:
        """Whether a copy between two GPUs of a node goes over an NVLink fabric (else PCIe)."""
        acc = self.system.accelerator
        scale_up = self.system.node.scale_up
        return (
            acc is not None
            and acc.nvlink is not None
            and scale_up is not None
            and scale_up.fabric != "pcie"
            and self.system.node.scale_up_bandwidth_bytes_per_s_per_accelerator > 0
        )

    @cached_property
    def _peer_copy_s_per_line_byte(self) -> float:
        """Mean over a node's ordered GPU pairs of a byte's copy time in units of the link's line
        rate: 1 / ``PCIE_COPY_EFFICIENCY`` peer to peer, 1 / ``SHM_LINE_FRACTION`` for a pair
        that talks through host memory (``transfer_s``)."""
        shm = self.topology.local_shm_pairs()
        g = shm.shape[0]
        if g < 2:
            return 1.0 / PCIE_COPY_EFFICIENCY
        staged = int(shm.sum())  # the diagonal is never a pair
        pairs = g * (g - 1)
        return ((pairs - staged) / PCIE_COPY_EFFICIENCY + staged / SHM_LINE_FRACTION) / pairs

    @cached_property
    def _host_memory_sustained_bytes_per_s(self) -> float:
        """The node's host memory bandwidth at ``CPU_MEMORY_EFFICIENCY`` (STREAM's share of the
        pin rate), as the CPU-side embedding tiers read it."""
        return self.system.node.host_memory_bandwidth_bytes_per_s * CPU_MEMORY_EFFICIENCY

    def host_s(self, op: Host) -> float:
        # Data loading reads the batch from host memory once; each accelerator has its own loader
        # process, whose buffers are in its socket's memory: the sustained bandwidth of its socket's
        # channels over the accelerators on that socket (``Node.host_dram_ranks``, the rule of the
        # lookups' host tiers and of the DES's DRAM links, ``recsim.engine.host_dram``): the node's
        # over its accelerators where every socket holds as many, one socket's for a lone GPU.
        share = self._host_memory_sustained_bytes_per_s / self.system.node.host_dram_ranks
        return op.cpu_s + op.bytes / share

    # -- nodes ---------------------------------------------------------------------------------

    def duration_s(self, node: Node) -> float:
        """Modelled duration of ``node``'s op alone (cached per node id). The engines schedule
        ``graph_durations_s``, which costs an uneven all-to-all from all its parts."""
        cached = self._durations.get(node.id)
        if cached is not None:
            return cached
        op = node.op
        hit = self._by_op_id.get(id(op))
        if hit is not None and hit[0] is op:
            self._durations[node.id] = hit[1]
            return hit[1]
        value = self._op_duration(op)
        self._by_op_id[id(op)] = (op, value)
        self._durations[node.id] = value
        return value

    def durations_s(self, nodes: Iterable[Node], *, uneven_parts: bool = True) -> list[float]:
        """The modelled duration of each of ``nodes``, in order, without a method call per node
        (the analytic engine asks for every node of a graph at once). The values are cached by op
        (identity, then value), as ``duration_s`` caches them, but not by node id: this is the
        duration of each node's op, whatever another graph with the same ids held.
        ``uneven_parts=False`` does not cost the parts of uneven all-to-alls one by one (0.0, or a
        value cached before): for a caller that costs them whole (``graph_durations_s``)."""
        return self._op_durations([node.op for node in nodes], uneven_parts)

    def _op_durations(self, ops: Sequence[Op], uneven_parts: bool) -> list[float]:
        """``durations_s`` from the nodes' ops, in order."""
        keys = list(map(id, ops))
        # Each distinct op once, in the order of its first node (the ops are alive meanwhile, so
        # an id names one op); the per-node work is then two passes in C.
        distinct = dict(zip(keys, ops, strict=True))
        found = dict(zip(distinct, self._distinct_durations(distinct.values(), uneven_parts), strict=True))
        return list(map(found.__getitem__, keys))

    def _distinct_durations(self, ops: Iterable[Op], uneven_parts: bool) -> list[float]:
        """The duration of each of ``ops`` (distinct objects), in order, as ``_op_durations``
        gives it: cached by identity, then by value (``_op_duration``)."""
        by_op_id = self._by_op_id
        # ``_op_duration``'s identity layer (the memo's ``durations_by_id``) and ``access_key``'s
        # hit, written out here: a method call or two per distinct op (~150 an evaluation at 128
        # GPUs, found by identity nearly all) cost more than the lookups they make. The same
        # lookups, the same values.
        kept = self._durations_by_id
        access_keys = self._access_keys
        out: list[float] = []
        append = out.append
        for op in ops:
            key = id(op)
            hit = by_op_id.get(key)
            if hit is not None and hit[0] is op:
                append(hit[1])
                continue
            kind = type(op)
            if kind is Collective and not uneven_parts and is_uneven_all_to_all(op):
                append(0.0)
                continue
            if kept is None:
                value = self._op_duration_of(op)
            else:
                context = None
                if kind is Embedding:
                    context = access_keys.get(op.table)  # type: ignore[attr-defined]
                    if context is None:
                        context = self.access_key(op.table)  # type: ignore[attr-defined]
                found = kept.get(key)
                if found is not None and found[0] is op and found[1] == context:
                    value = found[2]
                else:
                    value = self._op_duration_of(op)
                    _keep_by_id(kept, op, context, value)
            by_op_id[key] = (op, value)
            append(value)
        return out

    def graph_durations_s(self, nodes: Sequence[Node]) -> list[float]:
        """What the engines schedule ``nodes`` (a whole graph) with: ``durations_s``, but every
        uneven all-to-all takes its whole collective's time (``whole_all_to_alls``) and its parts
        are not costed one by one first."""
        return self.graph_durations_of([node.op for node in nodes], nodes.__getitem__)

    def graph_durations_of(
        self, ops: Sequence[Op], node_at: Callable[[int], Node], ranks: Sequence[int] | None = None
    ) -> list[float]:
        """``graph_durations_s`` of a graph's nodes from their ``ops`` by position, making only
        the uneven all-to-alls' member nodes (``node_at``: the node at a position), as a
        ``ColumnarGraph`` makes them on their own; none of them given the nodes' ``ranks``
        (``_whole_all_to_alls``)."""
        durations = self._op_durations(ops, uneven_parts=False)
        self._whole_all_to_alls(ops, node_at, durations, False, ranks)
        return durations

    def value_key(self, op: object) -> object:
        """A key of ``op`` (not a collective) equal exactly when two ops cost alike: its kind and
        fields as a plain tuple; an embedding's table as what its access model is made of."""
        if type(op) is Embedding:
            return (Embedding, self.access_key(op.table), _EMBEDDING_REST(op))
        getter = _OP_FIELDS.get(type(op))
        return (type(op), getter(op)) if getter is not None else op

    def collective_key(self, parts: Collective | Sequence[Collective]) -> tuple[object, ...]:
        """A key of a collective, one part or every member's in group order, equal exactly when two
        collectives move the same bytes the same way (``collective_s``'s and ``all_to_all_s``'s
        value keys; the ids are of canonical tuples this model's interner keeps, a ``CostMemo``'s
        when it has one, so the key holds across the evaluations that share it)."""
        if not isinstance(parts, Collective):
            return self._whole_key(parts)
        return ("one", *self._part_fields(parts))

    def _part_fields(self, part: Collective) -> tuple[object, ...]:
        """A collective part's value fields but its ``key``, its tuples as the ids of their interned
        copies (``_whole_key``, ``collective_key``)."""
        canonical = self._interned.canonical
        return (
            part.op,
            id(canonical(part.group)),
            part.bytes,
            part.dtype,
            id(canonical(part.send_bytes)),
            id(canonical(part.recv_bytes)),
            part.algorithm,
        )

    def kernel_j(self, op: Op) -> float:
        """The dynamic energy of ``op``'s kernels on the accelerator (``recsim.cost.power``'s
        ``KernelEnergy``), worked out once per op value as durations are; 0 without accelerators."""
        return self.kernel_js((op,))[0]

    def kernel_js(self, ops: Iterable[Op]) -> list[float]:
        """``kernel_j`` of each of ``ops``, in order (``kernel_j`` is this for one op: the memo's
        identity layer, ``energies_by_id``, is written once). Its lookups and ``access_key``'s hit
        are written out in the loop, as in ``_distinct_durations``: a method call or two per op
        (~150 distinct ops an evaluation at 128 GPUs, found by identity nearly all) cost more than
        the lookups they make."""
        model = self._kernel_energy
        if model is None:
            return [0.0 for _ in ops]
        kept = self._energies_by_id
        if kept is None:
            return [self._kernel_j_of(op, model) for op in ops]
        access_keys = self._access_keys
        out: list[float] = []
        append = out.append
        for op in ops:
            context = None
            if type(op) is Embedding:
                context = access_keys.get(op.table)  # type: ignore[attr-defined]
                if context is None:
                    context = self.access_key(op.table)  # type: ignore[attr-defined]
            hit = kept.get(id(op))
            if hit is not None and hit[0] is op and hit[1] == context:
                append(hit[2])
                continue
            found = self._kernel_j_of(op, model)
            _keep_by_id(kept, op, context, found)
            append(found)
        return out

    def _kernel_j_of(self, op: Op, model: KernelEnergy) -> float:
        """``kernel_j`` without the memo's identity layer: by value key (a collective's a few sums,
        no key worth making)."""
        if type(op) is Collective:
            return model.op_j(op, self.embedding_cost)
        key = self.value_key(op)
        found = self._energy_by_op.get(key)
        if found is None:
            # A kernel's duration caps its energy: the one the schedule has (``_op_duration``; on
            # this model's accelerator, ``KernelEnergy.of`` it), not worked out a second time.
            found = model.op_j(op, self.embedding_cost, self._op_duration, self.compute_hbm_bytes)
            let_go_when_full(self._energy_by_op, VALUES_KEPT)[key] = found
        return found

    @cached_property
    def _kernel_energy(self) -> KernelEnergy | None:
        acc = self.system.accelerator
        return KernelEnergy.of(acc) if acc is not None else None

    def graph_lengths_of(
        self, table: OpTable, ops: Sequence[Op], node_at: Callable[[int], Node], ranks: Sequence[int] | None
    ) -> npt.NDArray[np.float64]:
        """``graph_durations_of`` as a float64 array, from the ops' ``table`` (``ops`` as an
        ``OpTable``): each distinct op costed once and spread by position in one array call, and
        the uneven all-to-alls found among the distinct ops. The same floats."""
        values = self._distinct_durations(table.ops, uneven_parts=False)
        lengths = np.asarray(values, dtype=np.float64)[table.number]
        self._whole_all_to_alls(ops, node_at, lengths, False, ranks, table)
        return lengths

    def _op_duration(self, op: object) -> float:
        kept = self._durations_by_id
        if kept is None:
            return self._op_duration_of(op)
        # Found by identity first (``CostMemo.durations_by_id``): a lookup's under its access key.
        context = self.access_key(op.table) if type(op) is Embedding else None
        hit = kept.get(id(op))
        if hit is not None and hit[0] is op and hit[1] == context:
            return hit[2]
        value = self._op_duration_of(op)
        _keep_by_id(kept, op, context, value)
        return value

    def _op_duration_of(self, op: object) -> float:
        """``_op_duration`` by value key (the memo's, when given)."""
        if isinstance(op, Collective):
            return self.collective_s(op)
        # The same op recurs on every rank and step (ops are frozen values): cost it once.
        key = self.value_key(op)
        by_op = self._by_op.get(key)
        if by_op is not None:
            return by_op
        if isinstance(op, Compute):
            value = self.compute_s(op)
        elif isinstance(op, Embedding):
            value = self.embedding_s(op)
        elif isinstance(op, Transfer):
            value = self.transfer_s(op)
        elif isinstance(op, Host):
            value = self.host_s(op)
        else:  # pragma: no cover - the IR has no other op kinds
            raise InfeasibleError(f"no cost model for {type(op).__name__}")
        let_go_when_full(self._by_op, VALUES_KEPT)[key] = value
        return value


def _keep_by_id(
    kept: dict[int, tuple[object, object, float]], op: object, context: object, value: float
) -> None:
    """Keep ``value`` under ``op``'s identity (the op kept too, so its id stays its own), letting
    every entry go first at ``OPS_BY_ID_KEPT`` (``recsim.cost.memo``): a cost found again is the
    same either way."""
    let_go_when_full(kept, OPS_BY_ID_KEPT)[id(op)] = (op, context, value)
