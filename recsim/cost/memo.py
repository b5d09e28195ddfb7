"""What the costs of one system and workload have in common across evaluations.

``auto`` simulates a dozen plans of one workload on one system, a sweep many batch sizes or plans;
each evaluation builds a ``CostModel`` that would otherwise rebuild the topology and recost the
collectives, kernels and lookups every plan shares (the dense all-reduce, the MLP GEMMs, a table
shard placed alike). A ``CostMemo`` made for a (system, workload) pair and handed to each
evaluation (``SimulationOptions.costs``; the planner's ``PlanningContext.costs``) keeps them: the
topology, built once, the workload's access models with what they have worked out
(``shard_ops``), and every cost the ``CostModel`` keys by value (an op's fields, a
collective's kind, sizes, group and splits, an embedding's access-model parts), so a value is the
same function of the same key whichever evaluation asks first; durations and kernel energies are
kept by op identity too (``durations_by_id``, ``energies_by_id``: the ops ``shard_ops`` makes recur
in every evaluation). Results are bit-for-bit those without it (``tests/unit/test_cost_memo.py``).
What it keeps is bounded (``VALUES_KEPT``, ``TRAFFIC_KEPT``, ``MIXTURES_KEPT``,
``OPS_BY_ID_KEPT``, ``WHOLE_KEYS_KEPT``; its ``ShardOps``' ``SHARD_OPS_KEPT``, ``PLANS_KEPT``,
``SLICES_KEPT``): a search or sweep over ever more distinct plans adds their ops and costs
(``benchmarks/bench_memo_growth.py``), let go at the bound and worked out again if asked for, the
same values. ``canonical_tuples`` (one per distinct group, split vector or all-to-all part) is
bounded too (``TUPLE_ELEMENTS_KEPT``), but only where no key can outlive its tuples: the costs
keyed by those tuples' ids (``collectives``, ``traffic``, ``whole_keys``) are let go with them, at
the start of an evaluation (``fresh_tuples``), and the memo takes new dicts rather than clearing
the old ones, so a cost model still alive keeps its own. Kept whole: ``ShardOps``' slice names (a
few bytes per distinct row range, which a graph's metadata reads for the ops made before).

Every key is a value, the identity of a canonical tuple the memo keeps (one per distinct
collective group or split vector: the first evaluation's own copy of it; let go only with the keys
that name it), or the identity of an
object its entry keeps alive with it (the parts of ``whole_keys``, the ops of ``durations_by_id``
and ``energies_by_id``: at most ``WHOLE_KEYS_KEPT`` and ``OPS_BY_ID_KEPT`` entries), and the
mixtures hold the access models of the evaluation that made them; no graph stays alive, and no op
but those entries'. DES runs also
leave their schedules here, the last ``DES_SCHEDULES`` of them, by plan and run options
(``recsim.engine.simulate``): the same plan simulated with the same options is the same schedule,
so the DES finalist ``auto`` picks is not simulated again by the run that follows. Analytic
evaluations leave the Kahn rounds of their graphs' structure (``kahn_rounds``), the last
``KAHN_ROUNDS`` of them: a sweep's points and a benchmark's repeats build the same graph again, and
its rounds, a function of the dependency arrays alone, are found by comparing those arrays. The
memo is bound to its system and workload objects: a ``CostModel`` for another pair refuses it
(``ValueError``), since its costs would not be those of the other system. It is a plain cache
owned by its caller, not shared state: nothing else reaches it.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import numpy.typing as npt

from recsim.config.hashing import config_hash
from recsim.errors import ConfigError
from recsim.hardware.topology import Topology, build_topology

if TYPE_CHECKING:
    from recsim.graph.index import GraphIndex, KahnRounds
    from recsim.graph.schedule import Schedule
    from recsim.graph.shard_ops import ShardOps
    from recsim.hardware.system import System
    from recsim.workload.access.model import AccessModel
    from recsim.workload.spec import Workload


K = TypeVar("K")
V = TypeVar("V")

#: DES schedules a ``CostMemo`` keeps: ``auto``'s DES finalists (``planner.finalists``, 3 by
#: default) and one more. A design choice: each is a start and a finish per node of the chained
#: graph (~10 MB at 512 GPUs), and a finalist let go is only simulated again if it wins.
DES_SCHEDULES = 4

#: Graph structures whose Kahn rounds a ``CostMemo`` keeps (``CostMemo.kahn_rounds``), and the most
#: nodes they may have in all. A design choice: the evaluations that repeat a graph (a sweep's
#: points of one plan, a benchmark's repeats) repeat the last one, and the planner's candidates,
#: each a graph of its own, would not hit however many were kept; each kept structure is its four
#: dependency arrays and its rounds (about 80 bytes a node), so the node bound keeps them under
#: ~100 MB whatever the graph's size (a graph above it is not kept).
KAHN_ROUNDS = 4
KAHN_ROUNDS_NODES = 1 << 20

#: Ops whose durations and kernel energies a ``CostMemo`` keeps by identity, in each of
#: ``CostMemo.durations_by_id`` and ``energies_by_id``. A design choice: an evaluation at 128 GPUs
#: has ~150 distinct ops, most of them made once by ``shard_ops`` and laid down again by every
#: later evaluation, so a few hundred entries serve a sweep; the ops an evaluation makes afresh (a
#: few) pile up, and at this many every entry is let go (a cost found again is the same), which
#: bounds the ops kept alive: ~4 kB for an uneven all-to-all part with its splits at 128 ranks,
#: ~16 MB at the worst for each.
OPS_BY_ID_KEPT = 1 << 12

#: Costs a ``CostMemo`` keeps by value, in each of ``collectives``, ``by_op``,
#: ``energy_by_op`` and ``storage`` (``let_go_when_full``). A design choice: every distinct plan of a
#: search or sweep adds its new ops' and collectives' keys (``benchmarks/bench_memo_growth.py``:
#: ~570 ops and 70 collectives after ``greedy``, ``recshard`` and ``auto`` on 16 H100s, ~3 and 3
#: more per distinct plan after that, with no end), so at this many every entry is let go, as at
#: ``OPS_BY_ID_KEPT``: a cost found again is worked out again, the same function of the same key.
#: The keys' ids are those of ``canonical_tuples``' copies, let go only with the keys naming them
#: (``CostMemo.fresh_tuples``), so an id stays its tuple's while a key holds it.
VALUES_KEPT = 1 << 14

#: What ops and collectives move through each resource that a ``CostMemo`` keeps (``traffic``, the
#: DES engine's), let go at this many as at ``VALUES_KEPT``. A design choice: an entry is its edges'
#: arrays, ~2 kB at 128 GPUs (a DES step of dlrm-dcnv2 on 16 DGX H100 nodes keeps 118 entries,
#: 240 kB), so a quarter as many as ``VALUES_KEPT``: ~8 MB there, a few tens at 1,024 GPUs.
TRAFFIC_KEPT = 1 << 12

#: Fused (TBE) tables' mixture access models a ``CostMemo`` keeps (``mixtures``), let go at this
#: many as at ``VALUES_KEPT``. A design choice: each keeps its union popularity and its figures
#: (~30-60 kB for dlrm-dcnv2's tables on 8 ZionEX GPUs, ``bench_memo_growth.py`` under
#: tracemalloc), one more per distinct plan (174 after ``greedy``, ``recshard`` and ``auto`` on 16
#: H100s), so ~60 MB at the most.
MIXTURES_KEPT = 1 << 10

#: Whole all-to-alls whose value keys a ``CostMemo`` keeps by their parts' ids
#: (``CostMemo.whole_keys``). A design choice: a step graph has three or four (the input dist, the
#: pooled exchange both ways, a pipelined one), so this holds those of a sweep's or planner's
#: recent graphs; each entry is two tuples of one item per rank (~16 kB at 1,024 ranks).
WHOLE_KEYS_KEPT = 64

#: Elements of the canonical tuples a ``CostMemo`` keeps (``canonical_tuples``, ``fresh_tuples``),
#: counted as the memo's system's ranks per tuple (a group or split vector has at most one element
#: per rank; an all-to-all part's interned fields, 7). A design choice: each element is a pointer
#: and, for a split vector, an int (~40 bytes), so ~80 MB at the most; at 1,024 ranks (a split
#: tuple ~33 kB, ~11 new per distinct plan) that is 2,048 tuples, ~190 distinct plans, and on 16
#: GPUs 131,072 tuples, ~5,400 distinct plans (``bench_memo_growth.py``: 722 after ``greedy``,
#: ``recshard`` and ``auto`` on 16 H100s, ~24 more per distinct plan).
TUPLE_ELEMENTS_KEPT = 1 << 21


def let_go_when_full(kept: dict[K, V], cap: int) -> dict[K, V]:
    """``kept``, emptied first when it holds ``cap`` entries (the bound on a memo's caches:
    ``VALUES_KEPT``, ``TRAFFIC_KEPT``, ``MIXTURES_KEPT``, ``OPS_BY_ID_KEPT``, and its ``ShardOps``'
    ``SHARD_OPS_KEPT``, ``SLICES_KEPT``): for a caller about to add an entry."""
    if len(kept) >= cap:
        kept.clear()
    return kept


class TupleInterner:
    """One canonical tuple per value of the sequences it is shown (collective groups and split
    vectors, up to 1024 elements each): ``canonical(t) == tuple(t)`` always, and ``canonical(a) is
    canonical(b)`` exactly when ``tuple(a) == tuple(b)`` (a sequence is read once, when first seen:
    the IR's are immutable tuples).

    Hashing such a tuple visits every element, every time (CPython caches no tuple hash), and the
    ranks' ops carry their own, equal, split tuples: a tuple object is resolved once by value (one
    hash and, on a hit, one comparison), then by its identity. Every tuple seen is kept, so an id is
    never reused while this holds it. ``by_value`` (the canonical copies) may be a ``CostMemo``'s,
    kept across evaluations (up to ``CostMemo.fresh_tuples``, which hands later interners a new
    one and leaves this one's as it is): it holds one tuple per distinct value, where the identity
    layer, which holds every rank's own tuple, lives as long as this interner (one evaluation's cost
    model).
    """

    def __init__(self, by_value: dict[tuple[object, ...], tuple[object, ...]] | None = None) -> None:
        self._by_id: dict[int, tuple[object, object]] = {}  # id -> (the tuple, its canonical copy)
        self._by_value: dict[tuple[object, ...], tuple[object, ...]] = {} if by_value is None else by_value

    def canonical(self, t: object) -> object:
        if t is None:
            return None
        hit = self._by_id.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1]
        # A group or split list (the IR's fields are tuples, a caller's may not be) is interned as
        # the tuple of its values: a canonical copy is always a tuple the interner keeps, so a
        # key's ids never name an object that can die and have its id reused.
        value = t if type(t) is tuple else tuple(t)  # type: ignore[call-overload]
        found = self._by_value.setdefault(value, value)
        self._by_id[id(t)] = (t, found)
        return found


class CostMemo:
    """The topology and the value-keyed costs of ``system`` and ``workload`` (see the module)."""

    def __init__(self, system: System, workload: Workload | None = None) -> None:
        self.system = system
        self.workload = workload
        # Collective costs by (op, canonical group id, bytes, dtype, canonical splits' ids,
        # algorithm); the ids are those of the canonical copies kept here (one per distinct value).
        self.canonical_tuples: dict[tuple[object, ...], tuple[object, ...]] = {}
        # How many canonical tuples are kept before they are let go (``fresh_tuples``).
        self.tuples_kept = max(1, TUPLE_ELEMENTS_KEPT // max(1, system.num_accelerators))
        self.collectives: dict[tuple[object, ...], float] = {}
        # The algorithm each all-reduce runs with, by the same keys less the splits
        # (``CostModel.collective_algorithm``, for its kernels' footprint).
        self.algorithms: dict[tuple[object, ...], str] = {}
        # Other ops' costs by their value key (``CostModel._op_duration``).
        self.by_op: dict[object, float] = {}
        # Ops' kernel energies by the same keys (``CostModel.kernel_j``).
        self.energy_by_op: dict[object, float] = {}
        # The same durations and energies by op identity: id -> (the op, kept so that its id
        # stays its own; what else the cost depends on, a lookup's access key, or None; the cost).
        # The builder takes most ops from ``shard_ops`` (146 of 150 at 128 GPUs), so the next
        # evaluation's are the same objects, found without making and hashing their value keys
        # or summing a collective's splits again (``CostModel._op_duration``, ``kernel_j``).
        self.durations_by_id: dict[int, tuple[object, object, float]] = {}
        self.energies_by_id: dict[int, tuple[object, object, float]] = {}
        # A fused (TBE) table's parts -> its mixture access model (None: a part has no model).
        self.mixtures: dict[object, AccessModel | None] = {}
        # The bytes each op or collective moves through each resource (``CostModel.traffic``).
        self.traffic: dict[object, object] = {}
        # Whole all-to-alls' value keys (``CostModel._whole_key``) by the ids of their parts, in
        # order -> (the parts, kept so that their ids stay theirs; the key): the builder lays down
        # a plan's parts from ``ShardOps`` in every graph, so the next evaluation's key is found
        # without resolving its parts one by one. Oldest first, at most ``WHOLE_KEYS_KEPT``.
        self.whole_keys: dict[tuple[int, ...], tuple[tuple[object, ...], tuple[object, ...]]] = {}
        # The workload's memory figures (``recsim.planner.storage.plan_usage``): the dense model's
        # bytes by world size, and each distinct shard's storage by its fields and world size.
        self.storage: dict[object, object] = {}
        # DES schedules by (plan, run options), oldest first (``des_schedule``).
        self._des_schedules: dict[object, Schedule] = {}
        # Kahn rounds by graph structure, oldest first (``kahn_rounds``): each entry is the
        # structure's sizes and dtypes (compared first, for nothing), its dependency arrays (copies:
        # the index's own may be its caller's) and its rounds.
        self._kahn_rounds: list[tuple[tuple[object, ...], tuple[npt.NDArray[np.intp], ...], KahnRounds]] = []

    def fresh_tuples(self) -> None:
        """Let go of ``canonical_tuples`` when it holds ``tuples_kept``, with every cost keyed by
        their ids (``collectives``, ``algorithms``, ``traffic``, ``whole_keys``'s keys): a
        ``CostModel`` calls this as it is made, before it takes those dicts. The memo takes new,
        empty dicts rather than clearing these: a cost model made before keeps the old ones, whose
        tuples stay alive with it, so no key's id can name a tuple let go and then another object
        given that id, and the new dicts hold no key of the old tuples. A cost let go is worked out
        again, the same."""
        if len(self.canonical_tuples) < self.tuples_kept:
            return
        self.canonical_tuples = {}
        self.collectives = {}
        self.algorithms = {}
        self.traffic = {}
        self.whole_keys = {}

    def des_schedule(self, key: object) -> Schedule | None:
        """The DES schedule kept under ``key`` (``recsim.engine.simulate``), or None."""
        return self._des_schedules.get(key)

    def keep_des_schedule(self, key: object, schedule: Schedule) -> None:
        """Keep ``schedule`` under ``key``: the newest ``DES_SCHEDULES``, the oldest let go."""
        kept = self._des_schedules
        kept.pop(key, None)
        while len(kept) >= DES_SCHEDULES:
            del kept[next(iter(kept))]
        kept[key] = schedule

    def kahn_rounds(self, index: GraphIndex) -> KahnRounds:
        """``index.kahn_rounds``, kept on ``index`` too: those of an earlier index of the same
        structure where this memo keeps them, else worked out and kept (the newest
        ``KAHN_ROUNDS``). The rounds are a function of the arrays ``GraphIndex.kahn_rounds`` reads
        alone (the vertices, the queues' previous nodes, the dependencies), compared whole, so a
        hit is exactly the rounds a fresh build gives; they are only read (``asap_timing``), so one
        object may serve every evaluation."""
        known: KahnRounds | None = index.__dict__.get("kahn_rounds")
        if known is not None:
            return known
        arrays = (index.vertex_array, index.prev_in_queue_array, index.dep_flat_array, index.dep_end_array)
        shape = (index.vertices, *[(a.dtype.str, a.shape) for a in arrays])
        kept = self._kahn_rounds
        for at, (kept_shape, kept_arrays, rounds) in enumerate(kept):
            if kept_shape == shape and all(map(np.array_equal, kept_arrays, arrays)):
                if at != len(kept) - 1:  # the newest now: the last to be let go
                    kept.append(kept.pop(at))
                index._keep(kahn_rounds=rounds)
                return rounds
        rounds = index.kahn_rounds
        if len(arrays[0]) <= KAHN_ROUNDS_NODES:
            total = len(arrays[0])
            for _, kept_arrays, _ in kept:
                total += len(kept_arrays[0])
            while kept and (len(kept) >= KAHN_ROUNDS or total > KAHN_ROUNDS_NODES):
                total -= len(kept.pop(0)[1][0])
            kept.append((shape, tuple(a.copy() for a in arrays), rounds))
        return rounds

    @cached_property
    def topology(self) -> Topology:
        return build_topology(self.system)

    @cached_property
    def config_hash(self) -> str:
        """``recsim.engine.simulate.resolved_config_hash`` of the memo's system and workload (the
        configs are frozen models: their hash cannot change), "" for a memo without a workload."""
        if self.workload is None:
            return ""
        return config_hash(self.system)[:8] + config_hash(self.workload)[:8]

    @cached_property
    def system_notes(self) -> tuple[str | None, str | None, str | None]:
        """The notes of a run's result that the memo's system alone decides: its calibration
        defaults, its capped rates (NICs behind a slower host interface, DIMMs faster than the CPU runs
        them: ``capped_rates_note``) and its platform's power note
        (``recsim.engine.simulate.run_notes``, which asks for them twice an evaluation). Each walks
        the system's devices and formats its line anew: about 2 % of an analytic evaluation at 128
        GPUs, the same text every time (the system is a frozen model)."""
        # Imported here: the cost and hardware modules below import this package's siblings.
        from recsim.cost.platform import platform_note
        from recsim.cost.provenance import calibration_note
        from recsim.hardware.system import capped_rates_note

        system = self.system
        return calibration_note(system), capped_rates_note(system), platform_note(system)

    @cached_property
    def shard_ops(self) -> ShardOps:
        """The workload's shard figures and access models (``recsim.graph.shard_ops``), shared by
        every evaluation and by the planner's estimator: a table's popularity, its expected unique
        rows and its cache hit rates are worked out once, not once per plan. ``ValueError`` for a
        memo made without a workload."""
        # Imported here: the graph package imports the planner's types, which import this module.
        from recsim.graph.shard_ops import ShardOps

        if self.workload is None:
            raise ValueError(f"a CostMemo for {self.system.name!r} without a workload has no shard figures")
        return ShardOps(self.workload)

    def check(self, system: System, workload: Workload | None) -> None:
        """``MemoMismatchError`` (a ``ValueError``) unless this memo is for ``system`` and
        ``workload``: the same objects, or equal ones (the same files loaded twice)."""
        same_system = system is self.system or system == self.system
        same_workload = workload is self.workload or workload == self.workload
        if same_system and same_workload:
            return
        mine = (self.system.name, getattr(self.workload, "name", None))
        theirs = (system.name, getattr(workload, "name", None))
        differs = " (the same names, other settings: nodes, --set ...)" if mine == theirs else ""
        raise MemoMismatchError(
            f"a CostMemo made for {mine[0]!r} and {mine[1]!r} was given to a cost model of "
            f"{theirs[0]!r} and {theirs[1]!r}{differs}: make one CostMemo per system and workload"
        )


class MemoMismatchError(ConfigError, ValueError):
    """A ``CostMemo`` handed to the costs of another system or workload (a caller's mistake)."""
