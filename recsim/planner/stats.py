"""Figures of a sharding plan on a system: memory per rank and node, lookups, estimated time, traffic.

``plan_stats(plan, system, workload)`` is what ``recsim plan`` prints. Every figure is per training
step of the workload's global batch ``B`` and, like the rest of recsim, in SI units:

- **memory** (``recsim.planner.storage.plan_usage``): per rank the HBM it holds (the dense side, its
  shards, the caches of its ``uvm_caching`` shards, and the pooled vectors it writes for the global
  batch of every table it pools, whatever tier holds the rows: ``pooled_output_bytes``, and its
  inputs, the ids its lookups read, ``input_buffer_bytes``, and its data loader's own buffers,
  ``reader_buffers``; ``bytes_by_tier`` counts the shards' stored bytes only),
  and those bytes by kind (``RankStats.hbm_tables_bytes``, ``hbm_dense_bytes``,
  ``hbm_activations_bytes``, ``hbm_pooled_bytes``, ``hbm_inputs_bytes``: ``Usage.hbm_parts``, which
  add up to ``hbm_bytes``); per node the host DRAM
  (``uvm``, ``ddr``, ``nmp`` and ``uvm_caching`` rows, the ``ssd`` tier's page cache) and SSD bytes.
  Host DRAM and SSDs belong to a node, not a rank: a rank's row shows its **node's bytes divided by
  the ranks per node** (``RankStats.ddr_bytes``/``ssd_bytes``); the node rows (``NodeStats``) hold
  the real figures the capacities apply to. Stored bytes include the embedding optimizer's state.
- **capacity**: the accelerator's HBM per rank, the node's host DRAM and SSDs (``capacity``);
  ``fits`` compares the usage with them as ``recsim run`` does, ``fits_within_reserve`` with them
  less the planner's reserves (``planner.hbm_reserve`` / ``planner.ddr_reserve``), which is what
  the searching proposers plan against;
- **lookups** per rank: the forward ``Embedding`` ops' lookups of the rank's shards
  (``ShardOps.op``: ``B x pooling x lookup share``, the local batch for data-parallel shards);
- **estimated time** per rank (``recsim.planner.estimator.plan_perf``): forward and backward lookup
  compute, and communication (all-to-all, reduce-scatter, data-parallel all-reduce; forward plus
  backward) as the marginal seconds of the bytes the rank adds; ``est_makespan_s`` is the largest
  rank total, the score the proposers rank plans by. These are the planner's estimates, not a
  simulation (``recsim run --plan`` simulates);
- **imbalance**: max / mean over ranks of the estimated total and of the HBM bytes (1.0 is even);
- **all-to-all bytes**: the forward pooled-embedding all-to-all, summed over ranks, by the graph
  builder's rule (``recsim.graph.build`` ``pooled_exchange``): a block on one rank sends
  ``B x dim x wire x bag share`` (its own chunk included, as TorchRec's all-to-all copies it), a
  block split by rows over ranks ``G`` sends each sample owner ``q`` outside ``G`` its ``B / world``
  vectors from member ``G[q mod |G|]``. The backward all-to-all is its transpose (the same bytes);
- **reduce-scatter bytes**: a row split's partial pools never enter that all-to-all: each member
  of ``G`` reduce-scatters ``B x (summed dims of the blocks split over G) x wire`` over ``G`` first
  (``graph.build``'s ``rw_fwd`` collectives, whose inputs these bytes are; the backward all-gather
  gathers as many). Summed over ranks, ``reduce_scatter_fwd_bytes_per_step``: a row-wise plan on
  one node sends nothing through the all-to-all and all its pooled vectors through these (a
  tester's row_wise plan read "all-to-all per step 0 B" beside table_wise's 4 MiB, while its
  ranks reduce-scattered 16 MiB);
- **input all-to-all bytes**: the next batch's ids and lengths, which every rank sends each
  owner of a model-parallel shard for its local batch (``ShardOps.input_dist_bytes``: a row
  split's member the ids of its rows, each column block all of them; the owner's own chunk
  included), as ``graph.build``'s ``input_dist`` lays them down; summed over ranks in
  ``input_a2a_bytes_per_step``. None where the framework moves no ids (``Runtime.global_batch_input``,
  ``per_rank_feature_input``). Multi-hot ids can outweigh the pooled vectors (dlrm-benchmark:
  6.6 MB of ids against 4 MiB of vectors), and column blocks each take all of a table's ids;
- **data-parallel all-reduce bytes**: a replicated shard's (``data_parallel``: a whole table or
  hot rows) gradient is all-reduced whole, ``rows x dim`` in the dtype its framework reduces it in
  (``Runtime.replicated_gradient_dtype``), on every rank holding it: ``RankStats.dp_all_reduce_bytes``
  (the input of the all-reduces ``graph.build`` lays down for them, beside the dense layers' own),
  summed over ranks in ``dp_all_reduce_bytes_per_step``. A data_parallel plan sends nothing else
  (a tester's data_parallel plan read "all-to-all per step 0 B" for 2 GB of gradients a rank);
- **slow-memory accesses**: forward lookups that reach a tier other than HBM. For ``uvm_caching``
  only the misses of its HBM cache, ``lookups x (1 - LRU hit rate)`` of a cache of ``ratio x rows``
  rows in whole 32-way sets, rounded up (``uvm_caching.cache_rows``), under the shard's access model
  (the cost layer's Che approximation); every lookup of the other non-HBM tiers counts (their own
  caches -- page cache, NMP rank cache, SmartSSD DRAM -- sit
  behind the slow tier's interface).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recsim.cost.embedding.base import parse_tier, tier_model
from recsim.cost.embedding.uvm_caching import DEFAULT_CACHE_RATIO, cache_rows
from recsim.errors import InfeasibleError
from recsim.graph.build import replicated_gradient, row_split_wire_dtypes
from recsim.graph.runtime import runtime
from recsim.graph.shard_ops import PooledExchange, exchange_sums, pooled_exchange
from recsim.hardware.system import System
from recsim.planner.config import PlannerConfig
from recsim.planner.estimator import Estimator, plan_perf
from recsim.planner.limits import allowed_dtypes
from recsim.planner.storage import (
    HOST_TIERS,
    SSD_TIERS,
    capacity,
    check_fits,
    dense_hbm_bytes,
    plan_usage,
    rank_reader_bytes,
    shard_storage,
    stored_row_bytes,
)
from recsim.planner.types import EMBEDDING_DTYPES, SHARDING_TYPES, Plan, Shard, dense_gradient
from recsim.units import Dimension, format_quantity
from recsim.workload.spec import INDEX_DTYPE_BYTES, Workload, wire_bytes_per_value

#: Every tier a plan may use, in the order the figures list them.
TIERS = ("hbm", "uvm", "uvm_caching", "ddr", "ssd", "nmp", "smartssd")


@dataclass(frozen=True)
class RankStats:
    """One rank's figures per step (``ddr_bytes``/``ssd_bytes``: its node's bytes / ranks per node)."""

    rank: int
    node: int
    hbm_bytes: float
    ddr_bytes: float
    ssd_bytes: float
    shards: int
    lookups_per_step: float
    slow_lookups_per_step: float
    a2a_send_bytes: float
    est_fwd_compute_s: float
    est_bwd_compute_s: float
    est_comm_s: float
    est_total_s: float
    # What fills ``hbm_bytes``, by kind (``Usage.hbm_parts``).
    hbm_tables_bytes: float = 0.0
    hbm_dense_bytes: float = 0.0
    hbm_activations_bytes: float = 0.0
    hbm_pooled_bytes: float = 0.0
    hbm_inputs_bytes: float = 0.0
    # The inputs of the row splits' forward reduce-scatters it takes part in (module docstring).
    reduce_scatter_bytes: float = 0.0
    # Its replicated shards' gradients, all-reduced (module docstring).
    dp_all_reduce_bytes: float = 0.0
    # What it sends in the next batch's input all-to-all (module docstring).
    input_a2a_send_bytes: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "node": self.node,
            "hbm_bytes": self.hbm_bytes,
            "hbm_tables_bytes": self.hbm_tables_bytes,
            "hbm_dense_bytes": self.hbm_dense_bytes,
            "hbm_activations_bytes": self.hbm_activations_bytes,
            "hbm_pooled_bytes": self.hbm_pooled_bytes,
            "hbm_inputs_bytes": self.hbm_inputs_bytes,
            "ddr_bytes": self.ddr_bytes,
            "ssd_bytes": self.ssd_bytes,
            "shards": self.shards,
            "lookups_per_step": self.lookups_per_step,
            "slow_lookups_per_step": self.slow_lookups_per_step,
            "a2a_send_bytes": self.a2a_send_bytes,
            "reduce_scatter_bytes": self.reduce_scatter_bytes,
            "dp_all_reduce_bytes": self.dp_all_reduce_bytes,
            "input_a2a_send_bytes": self.input_a2a_send_bytes,
            "est_fwd_compute_s": _finite(self.est_fwd_compute_s),
            "est_bwd_compute_s": _finite(self.est_bwd_compute_s),
            "est_comm_s": _finite(self.est_comm_s),
            "est_total_s": _finite(self.est_total_s),
        }


@dataclass(frozen=True)
class NodeStats:
    """One node's host DRAM and SSD bytes (what the node capacities apply to)."""

    node: int
    ddr_bytes: float
    ssd_bytes: float

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "ddr_bytes": self.ddr_bytes, "ssd_bytes": self.ssd_bytes}


@dataclass(frozen=True)
class PlanStats:
    """A plan and its figures on a system (see the module docstring for every definition)."""

    plan: Plan
    system: str
    workload: str
    world_size: int
    num_nodes: int
    ranks_per_node: int
    global_batch_size: int
    ranks: tuple[RankStats, ...]
    nodes: tuple[NodeStats, ...]
    dense_hbm_bytes_per_rank: float
    parameters_placed: float
    parameters_by_tier: Mapping[str, float]
    parameters_by_dtype: Mapping[str, float]
    bytes_by_tier: Mapping[str, float]
    bytes_by_dtype: Mapping[str, float]
    shards_by_sharding: Mapping[str, int]
    tables_by_sharding: Mapping[str, int]
    hbm_capacity_bytes_per_rank: float
    ddr_capacity_bytes_per_node: float
    ssd_capacity_bytes_per_node: float
    hbm_reserve: float
    ddr_reserve: float
    fits: bool
    fits_within_reserve: bool
    reason: str | None
    est_makespan_s: float
    time_imbalance: float
    hbm_imbalance: float
    a2a_fwd_bytes_per_step: float
    lookups_per_step: float
    slow_lookups_per_step: float
    slow_lookups_by_tier: Mapping[str, float] = field(default_factory=dict)
    reduce_scatter_fwd_bytes_per_step: float = 0.0
    dp_all_reduce_bytes_per_step: float = 0.0
    input_a2a_bytes_per_step: float = 0.0

    @property
    def status(self) -> str:
        """``feasible`` when the plan fits in memory and every tier can serve it, else ``infeasible``."""
        return "feasible" if self.reason is None else "infeasible"

    @property
    def hbm_bytes_total(self) -> float:
        return math.fsum(r.hbm_bytes for r in self.ranks)

    @property
    def ddr_bytes_total(self) -> float:
        return math.fsum(n.ddr_bytes for n in self.nodes)

    @property
    def ssd_bytes_total(self) -> float:
        return math.fsum(n.ssd_bytes for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly figures (SI units, numbers not strings; a non-finite estimate is null),
        the per-rank and per-node rows, and the plan itself (``recsim.planner.io`` format)."""
        from recsim.planner.io import plan_to_dict

        return {
            "status": self.status,
            "reason": self.reason,
            "strategy": self.plan.strategy,
            "system": self.system,
            "workload": self.workload,
            "world_size": self.world_size,
            "num_nodes": self.num_nodes,
            "ranks_per_node": self.ranks_per_node,
            "global_batch_size": self.global_batch_size,
            "comm_dtype": self.plan.comm_dtype,
            "fits": self.fits,
            "fits_within_reserve": self.fits_within_reserve,
            "est_makespan_s": _finite(self.est_makespan_s),
            "time_imbalance": _finite(self.time_imbalance),
            "hbm_imbalance": self.hbm_imbalance,
            "a2a_fwd_bytes_per_step": self.a2a_fwd_bytes_per_step,
            "reduce_scatter_fwd_bytes_per_step": self.reduce_scatter_fwd_bytes_per_step,
            "dp_all_reduce_bytes_per_step": self.dp_all_reduce_bytes_per_step,
            "input_a2a_bytes_per_step": self.input_a2a_bytes_per_step,
            "lookups_per_step": self.lookups_per_step,
            "slow_lookups_per_step": self.slow_lookups_per_step,
            "slow_lookups_by_tier": dict(self.slow_lookups_by_tier),
            "parameters_placed": self.parameters_placed,
            "parameters_by_tier": dict(self.parameters_by_tier),
            "parameters_by_dtype": dict(self.parameters_by_dtype),
            "bytes_by_tier": dict(self.bytes_by_tier),
            "bytes_by_dtype": dict(self.bytes_by_dtype),
            "shards_by_sharding": dict(self.shards_by_sharding),
            "tables_by_sharding": dict(self.tables_by_sharding),
            "dense_hbm_bytes_per_rank": self.dense_hbm_bytes_per_rank,
            "hbm_bytes_total": self.hbm_bytes_total,
            "ddr_bytes_total": self.ddr_bytes_total,
            "ssd_bytes_total": self.ssd_bytes_total,
            "hbm_capacity_bytes_per_rank": self.hbm_capacity_bytes_per_rank,
            "ddr_capacity_bytes_per_node": self.ddr_capacity_bytes_per_node,
            "ssd_capacity_bytes_per_node": self.ssd_capacity_bytes_per_node,
            "hbm_reserve": self.hbm_reserve,
            "ddr_reserve": self.ddr_reserve,
            "ranks": [r.to_dict() for r in self.ranks],
            "nodes": [n.to_dict() for n in self.nodes],
            "plan": plan_to_dict(self.plan),
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _ratio(values: list[float]) -> float:
    """max / mean (1.0 for no values or all zero; inf if any value is)."""
    if not values:
        return 1.0
    if any(not math.isfinite(v) for v in values):
        return math.inf
    mean = math.fsum(values) / len(values)
    return max(values) / mean if mean > 0 else 1.0


def _exchange(plan: Plan, workload: Workload, estimator: Estimator) -> PooledExchange:
    """The plan's forward pooled-embedding exchange, as the graph builder lays it down."""
    wire = wire_bytes_per_value(plan.comm_dtype)
    node_size = runtime(workload.training.runtime).row_split_node_size(estimator.per_node, plan)
    return pooled_exchange(estimator.ops, plan, workload.training.global_batch_size, wire, node_size)


def a2a_send_bytes(
    plan: Plan, workload: Workload, estimator: Estimator, exchange: PooledExchange | None = None
) -> list[float]:
    """Bytes each rank sends in the forward pooled-embedding all-to-all (``pooled_exchange``)."""
    if exchange is None:
        exchange = _exchange(plan, workload, estimator)
    return exchange_sums(exchange.rows)


def reduce_scatter_bytes(
    plan: Plan, workload: Workload, estimator: Estimator, exchange: PooledExchange | None = None
) -> list[float]:
    """Each rank's input bytes to the forward reduce-scatters of its row splits (``graph.build``'s
    ``rw_fwd``: the global batch's partial pools of the summed dims split over the group, at the
    reduce-scatter's wire dtype, ``row_split_wire_dtypes``)."""
    if exchange is None:
        exchange = _exchange(plan, workload, estimator)
    groups = exchange.reduce_groups
    out = [0.0] * plan.world_size
    if not groups:
        return out
    scatter, _ = row_split_wire_dtypes(plan.comm_dtype)
    per_dim = workload.training.global_batch_size * wire_bytes_per_value(scatter)
    for ranks, dim in groups.items():
        for r in ranks:
            out[r] += per_dim * dim
    return out


def dp_all_reduce_bytes(plan: Plan, workload: Workload) -> list[float]:
    """Each rank's replicated-shard gradient bytes, all-reduced every step (``dense_gradient``
    shards, in ``Runtime.replicated_gradient_dtype``, as ``graph.build`` and the estimator)."""
    out = [0.0] * plan.world_size
    framework = runtime(workload.training.runtime)
    tables = workload.table_index
    for shard in plan.shards:
        if not dense_gradient(shard, plan.world_size):
            continue
        _, size = replicated_gradient(framework, plan, workload, shard, tables[shard.table])
        for r in shard.ranks:
            out[r] += size
    return out


def input_a2a_send_bytes(plan: Plan, workload: Workload, estimator: Estimator) -> list[float]:
    """Bytes each rank sends in the next batch's input all-to-all (``graph.build``'s ``input_dist``):
    its local batch's ids and lengths for every rank of each model-parallel shard, the same for
    every sender; nothing where the framework delivers the inputs otherwise."""
    framework = runtime(workload.training.runtime)
    world = plan.world_size
    if framework.global_batch_input(plan) or framework.per_rank_feature_input(plan):
        return [0.0] * world
    b = workload.training.global_batch_size // world
    index_bytes = INDEX_DTYPE_BYTES[workload.training.index_dtype]
    ops = estimator.ops
    sent = math.fsum(ops.input_dist_bytes(s, b, index_bytes) * len(s.ranks) for s in plan.shards)
    return [sent] * world


class _SlowLookups:
    """Forward lookups of a shard that reach a tier other than HBM (memoised hit rates)."""

    def __init__(self, estimator: Estimator) -> None:
        self.est = estimator
        self._hit: dict[tuple[object, ...], float] = {}

    def hit_rate(self, shard: Shard, lookups: float) -> float:
        """The LRU hit rate of a ``uvm_caching`` shard's HBM cache (0 for no cache or no lookups)."""
        _, raw = parse_tier(shard.tier)
        ratio = tier_model("uvm_caching").resolve_param(raw)
        rows = cache_rows(shard.rows, ratio if ratio is not None else DEFAULT_CACHE_RATIO)
        if rows <= 0 or lookups <= 0:
            return 0.0
        key = (shard.table, shard.row_start, shard.row_end, shard.order, rows)
        hit = self._hit.get(key)
        if hit is None:
            access = self.est.access_of(shard)
            hit = self._hit[key] = min(1.0, max(0.0, access.lru_hit_rate(rows)))
        return hit

    def __call__(self, shard: Shard, lookups: float) -> float:
        name = shard.tier_name
        if name == "hbm":
            return 0.0
        if name == "uvm_caching":
            return lookups * (1.0 - self.hit_rate(shard, lookups))
        return lookups


def shard_lookups(shard: Shard, workload: Workload, estimator: Estimator) -> float:
    """Forward lookups of one copy of ``shard`` per step (one rank's part of a distributed shard):
    ``ShardOps.op(shard, "forward", B, W).lookups``
    (the same product, without the op's distinct-row estimate, which these figures do not need)."""
    ops = estimator.ops
    table = ops.tables[shard.table]
    served = ops.served(shard, workload.training.global_batch_size, estimator.world)
    return served * workload.table_lookups(table) * ops.member_share(shard)


def plan_stats(
    plan: Plan,
    system: System,
    workload: Workload,
    estimator: Estimator | None = None,
    *,
    config: PlannerConfig | None = None,
) -> PlanStats:
    """The figures of ``plan`` for ``workload`` on ``system`` (see the module docstring).

    ``estimator`` (default: a new one with ``config``, default the planner defaults) gives the
    access models and time estimates; the plan must be for ``system``'s ranks.
    """
    est = estimator or Estimator(system, workload, config)
    cfg = est.cfg
    world = plan.world_size
    if world != system.num_accelerators:
        raise InfeasibleError(
            f"plan {plan.strategy!r} is for {world} ranks, system {system.name!r} has "
            f"{system.num_accelerators} accelerators"
        )
    plan.validate(workload)
    per_node = max(1, system.node.num_accelerators)
    num_nodes = system.num_nodes
    usage = plan_usage(plan, workload, system)
    perf = plan_perf(est, plan)
    exchange = _exchange(plan, workload, est)
    send = a2a_send_bytes(plan, workload, est, exchange)
    scatter = reduce_scatter_bytes(plan, workload, est, exchange)
    replicated = dp_all_reduce_bytes(plan, workload)
    ids_sent = input_a2a_send_bytes(plan, workload, est)
    slow_of = _SlowLookups(est)

    shards_on = [0] * world
    lookups_on = [0.0] * world
    slow_on = [0.0] * world
    params_tier: dict[str, float] = dict.fromkeys(TIERS, 0.0)
    params_dtype: dict[str, float] = dict.fromkeys(EMBEDDING_DTYPES, 0.0)
    bytes_tier: dict[str, float] = dict.fromkeys(TIERS, 0.0)
    bytes_dtype: dict[str, float] = dict.fromkeys(EMBEDDING_DTYPES, 0.0)
    slow_tier: dict[str, float] = dict.fromkeys(TIERS, 0.0)
    shards_kind: dict[str, int] = dict.fromkeys(SHARDING_TYPES, 0)
    tables_kind: dict[str, set[str]] = {k: set() for k in SHARDING_TYPES}
    parameters = 0.0
    tables = workload.table_index
    for shard in plan.shards:
        dtype = shard.dtype or workload.table_dtype(tables[shard.table])
        tier = shard.tier_name
        st = shard_storage(shard, workload, plan.world_size)
        copies = len(shard.ranks)
        cells = float(shard.rows * shard.dim)
        parameters += cells
        params_tier[tier] = params_tier.get(tier, 0.0) + cells
        params_dtype[dtype] = params_dtype.get(dtype, 0.0) + cells
        stored = (st.hbm_bytes + st.ddr_bytes + st.ssd_bytes) * copies
        bytes_tier[tier] = bytes_tier.get(tier, 0.0) + stored
        bytes_dtype[dtype] = bytes_dtype.get(dtype, 0.0) + stored
        shards_kind[shard.sharding] += 1
        tables_kind[shard.sharding].add(shard.table)
        lookups = shard_lookups(shard, workload, est)
        slow = slow_of(shard, lookups)
        slow_tier[tier] = slow_tier.get(tier, 0.0) + slow * copies
        for r in shard.ranks:
            shards_on[r] += 1
            lookups_on[r] += lookups
            slow_on[r] += slow

    ranks = []
    for r in range(world):
        node = r // per_node
        p = perf[r]
        parts = usage.hbm_parts(r)
        ranks.append(
            RankStats(
                rank=r,
                node=node,
                hbm_bytes=usage.hbm_by_rank.get(r, 0.0),
                ddr_bytes=usage.ddr_by_node.get(node, 0.0) / per_node,
                ssd_bytes=usage.ssd_by_node.get(node, 0.0) / per_node,
                shards=shards_on[r],
                lookups_per_step=lookups_on[r],
                slow_lookups_per_step=slow_on[r],
                a2a_send_bytes=send[r],
                est_fwd_compute_s=p.fwd_compute_s,
                est_bwd_compute_s=p.bwd_compute_s,
                est_comm_s=p.comm_s,
                est_total_s=p.total_s,
                hbm_tables_bytes=parts["tables"],
                hbm_dense_bytes=parts["dense"],
                hbm_activations_bytes=parts["activations"],
                hbm_pooled_bytes=parts["pooled"],
                hbm_inputs_bytes=parts["inputs"],
                reduce_scatter_bytes=scatter[r],
                dp_all_reduce_bytes=replicated[r],
                input_a2a_send_bytes=ids_sent[r],
            )
        )
    nodes = tuple(
        NodeStats(n, usage.ddr_by_node.get(n, 0.0), usage.ssd_by_node.get(n, 0.0)) for n in range(num_nodes)
    )

    cap = capacity(system)
    reason: str | None = None
    try:
        check_fits(usage, cap, what=plan.strategy or "plan")
        fits = True
    except InfeasibleError as exc:
        fits, reason = False, str(exc)
    try:
        check_fits(usage, cap.less(cfg.hbm_reserve, cfg.ddr_reserve))
        fits_reserved = True
    except InfeasibleError:
        fits_reserved = False
    totals = [r.est_total_s for r in ranks]
    if reason is None and not all(math.isfinite(t) for t in totals):
        why = "; ".join(f"{k}: {v}" for k, v in est.unavailable.items())
        reason = f"{plan.strategy or 'plan'}: a tier of the plan cannot serve a training step here" + (
            f" ({why})" if why else ""
        )

    return PlanStats(
        plan=plan,
        system=system.name,
        workload=workload.name,
        world_size=world,
        num_nodes=num_nodes,
        ranks_per_node=per_node,
        global_batch_size=workload.training.global_batch_size,
        ranks=tuple(ranks),
        nodes=nodes,
        dense_hbm_bytes_per_rank=usage.dense_hbm_bytes,
        parameters_placed=parameters,
        parameters_by_tier=params_tier,
        parameters_by_dtype=params_dtype,
        bytes_by_tier=bytes_tier,
        bytes_by_dtype=bytes_dtype,
        shards_by_sharding=shards_kind,
        tables_by_sharding={k: len(v) for k, v in tables_kind.items()},
        hbm_capacity_bytes_per_rank=cap.hbm_bytes_per_rank,
        ddr_capacity_bytes_per_node=cap.ddr_bytes_per_node,
        ssd_capacity_bytes_per_node=cap.ssd_bytes_per_node,
        hbm_reserve=cfg.hbm_reserve,
        ddr_reserve=cfg.ddr_reserve,
        fits=fits,
        fits_within_reserve=fits_reserved,
        reason=reason,
        est_makespan_s=max(totals) if totals else 0.0,
        time_imbalance=_ratio(totals),
        hbm_imbalance=_ratio([r.hbm_bytes for r in ranks]),
        a2a_fwd_bytes_per_step=math.fsum(send),
        lookups_per_step=math.fsum(lookups_on),
        slow_lookups_per_step=math.fsum(slow_on),
        slow_lookups_by_tier=slow_tier,
        reduce_scatter_fwd_bytes_per_step=math.fsum(scatter),
        dp_all_reduce_bytes_per_step=math.fsum(replicated),
        input_a2a_bytes_per_step=math.fsum(ids_sent),
    )


def capacity_shortfall(
    system: System, workload: Workload, config: PlannerConfig | None = None, routed_rows: bool = False
) -> str | None:
    """Why no plan can fit, counted in aggregate, or None if the bytes alone do not rule one out.

    The embedding tables at the least precise dtype ``config`` allows, with their optimizer state,
    against the capacity of the memory classes the allowed tiers use over the whole cluster (HBM
    less the dense side and the loader's buffers, ``storage.rank_reader_bytes``; host DRAM), less
    the planner's reserves. SSDs do not count: their tiers serve inference only (a training step's
    backward cannot run on them, ``recsim.cost.embedding.ssd``).

    The loader's buffers depend on the plan: HugeCTR reads a plan with routed rows (``distributed``
    shards) with its one-hot reader of the global batch, far larger than the multi-hot reader of
    any other plan (``reader_buffers``). ``routed_rows``: the strategy makes only such plans (the
    hybrid embedding), so they are charged that reader; otherwise the reader of a plan without
    routed rows, the smaller, since such a plan may be the one that fits and this is a bound on
    what no plan can do.
    """
    cfg = config or PlannerConfig()
    allowed = allowed_dtypes(cfg, workload)
    if not allowed:
        return None
    lowest = allowed[-1]
    optimizer = workload.training.embedding_optimizer
    need = 0.0
    for t in workload.tables:
        dim = workload.table_dim(t)
        need += t.rows * stored_row_bytes(dim, lowest, optimizer)
    cap = capacity(system).less(cfg.hbm_reserve, cfg.ddr_reserve)
    world, nodes = system.num_accelerators, system.num_nodes
    tiers = set(cfg.tiers)
    pools: list[tuple[str, float]] = []
    if "hbm" in tiers:
        ranks = max(1, world)
        reader = rank_reader_bytes(workload, ranks, routed_rows=routed_rows)
        free = cap.hbm_bytes_per_rank - dense_hbm_bytes(workload, ranks) - reader
        pools.append(("HBM", max(0.0, free) * world))
    if tiers & set(HOST_TIERS):
        pools.append(("host DRAM", cap.ddr_bytes_per_node * nodes))
    have = math.fsum(size for _, size in pools)
    if need <= have:
        return None

    def b(x: float) -> str:
        return format_quantity(x, Dimension.BYTES, binary=True)

    where = " + ".join(f"{b(size)} {name}" for name, size in pools) or "nothing"
    if tiers & set(SSD_TIERS):
        where += " (the SSD tiers serve inference only: no trainable table can live there)"
    return (
        f"{workload.name}'s embedding tables need at least {b(need)} at {lowest} (the lowest precision "
        f"planner.embedding_dtypes allows) with their {optimizer} state; the tiers planner.tiers allows "
        f"({', '.join(cfg.tiers)}) hold {where} on {nodes} node(s) less the planner's reserves: "
        f"{b(need - have)} short"
    )
