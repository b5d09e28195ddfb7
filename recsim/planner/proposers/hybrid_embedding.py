"""``hybrid_embedding``: HugeCTR's hybrid embedding (NVIDIA's MLPerf DLRM submissions, HugeCTR 3.1
"distributed hybrid embedding": a model/data-parallel split of every table by access frequency).

Every table's rows are split by popularity (after a frequency remap, as HugeCTR's statistics pass
does) into

- **frequent** rows, replicated on every rank (a ``data_parallel`` shard of the hottest ``K``): a
  sample's lookups into them stay on its own rank, and their gradient is all-reduced each step;
- **infrequent** rows, spread over all ranks (a ``distributed`` shard: row ``i`` on rank
  ``i mod n``): each rank serves the lookups of every sample into its rows and returns only the
  vectors that were drawn (a routed all-to-all; no reduce-scatter of empty partial pools).

Which rows are frequent is a cost balance, per row: a row drawn with probability ``p`` per lookup
appears ``p B P`` times in a step of global batch ``B`` and pooling ``P``; infrequent, each
appearance moves a ``dim``-wide vector through the all-to-all forward and its gradient backward,
spread over the ``W`` ranks (``2 p B P dim wire / W`` bytes a rank sends, at the all-to-all's
marginal seconds per byte ``m_a2a``); frequent, its gradient (``dim x dtype`` bytes, in the
dtype the framework reduces it in: HugeCTR's fp16 ``emtype`` under mixed precision) joins the
all-reduce (marginal ``m_ar``) and the row is stepped by the replicated rows' dense update
(``u`` seconds per value: ``Estimator.update_s``). The row is frequent when the first costs more:

    p >= p* = (dtype_bytes x m_ar + u) x W / (2 B P wire x m_a2a)

so ``K`` is the number of rows whose probability reaches ``p*`` (``AccessModel.top_k_share``).
Both slopes come from the collective cost model on this topology (``Estimator``), for the
algorithms the framework runs (HugeCTR: its hierarchical all-to-all, SHARP all-reduce), so the split
follows the network: more frequent rows where the all-to-all is dear (across nodes), fewer where the
all-reduce is. If the replicated rows do not fit in HBM (less the planner's reserve), ``p*`` is
doubled until they do. On one rank there is nothing to split: ``InfeasibleError``.

The scheme is HugeCTR's: only a runtime that can route infrequent lookups runs it
(``Runtime.plan_features``: the ``fused`` HugeCTR/MLPerf loop; and only on one-hot tables), so
``auto`` leaves it out for the others, and ``recsim run`` and ``recsim plan`` refuse it
(``recsim.api.runtime_refusal``). A split that does not fit and that the runtime cannot run raises
``RuntimeRefusal`` rather than the memory's shortfall: the refusal holds whatever the memory, and
every split tried after it routes at least its tables (a higher threshold replicates fewer rows), so
none would be run either.

Within the user's limits (``recsim.planner.limits``): the tables at the precision the planner
starts them at (the workload's, unless ``planner.embedding_dtypes`` leaves it out); refused where
``planner.sharding_types`` leaves out ``data_parallel`` or ``row_wise`` (the ``distributed`` rows
count as row-wise) or ``planner.tiers`` leaves out HBM: the split is the method.
"""

from __future__ import annotations

import math

from recsim.errors import InfeasibleError, RuntimeRefusal
from recsim.planner.proposers.base import PlanningContext, Proposer, allowed_tiers, register_proposer
from recsim.planner.storage import capacity, check_fits, plan_usage
from recsim.planner.types import Plan, Shard
from recsim.workload.spec import DTYPE_BYTES, Table, wire_bytes_per_value

#: Doublings of the frequency threshold tried when the replicated rows do not fit.
MAX_THRESHOLD_DOUBLINGS = 40


def frequent_rows(ctx: PlanningContext, table: Table, threshold: float) -> int:
    """Rows of ``table`` drawn with probability >= ``threshold`` per lookup (hottest first)."""
    model = ctx.estimator.ops.table_model(table.name)
    rows = table.rows

    def p(k: int) -> float:  # probability of the row of popularity rank k (1-based)
        return model.top_k_share(k) - model.top_k_share(k - 1)

    if p(1) < threshold:
        return 0
    lo, hi = 1, rows  # p(lo) >= threshold; find the last such rank
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if p(mid) >= threshold:
            lo = mid
        else:
            hi = mid - 1
    return lo


def base_threshold(ctx: PlanningContext, table: Table) -> float:
    """``p*`` of the module docstring for ``table``."""
    est = ctx.estimator
    w = ctx.workload
    world = ctx.world_size
    wire = wire_bytes_per_value(est.comm_dtype)
    # The collectives the framework will run them with (``recsim.graph.runtime``), and the dtype
    # it reduces the frequent rows' gradients in (HugeCTR: its embeddings' narrow output type).
    framework = est.framework
    table_dtype = ctx.estimator.start_dtype(table)
    narrow = framework.lookup_output_dtype(w.training.precision, table_dtype)
    grad = DTYPE_BYTES[narrow or table_dtype]
    m_a2a = est.marginal_s_per_byte("all_to_all", world, est.comm_dtype, framework.routed_all_to_all)
    m_ar = est.marginal_s_per_byte("all_reduce", world, "fp32", framework.gradient_all_reduce)
    appearances = 2.0 * est.batch * w.table_lookups(table) * wire * m_a2a
    if appearances <= 0.0:
        return float("inf")  # a free all-to-all: nothing is worth replicating
    # A frequent row is also stepped every step after the all-reduce (its dense update,
    # ``Estimator.update_s``): per row, the marginal seconds of the whole table replicated, per column.
    everyone, dim = tuple(range(world)), w.table_dim(table)
    probe = Shard(table.name, "data_parallel", 0, table.rows, 0, dim, everyone, "hbm", table_dtype)
    update_s, _ = est.update_s(probe, narrow or table_dtype)
    update_per_value = update_s / (table.rows * dim) if math.isfinite(update_s) else 0.0
    return (grad * m_ar + update_per_value) * world / appearances


def hybrid_plan(
    ctx: PlanningContext, scale: float, name: str, thresholds: dict[str, float] | None = None
) -> Plan:
    """Every table split at ``scale x p*`` into replicated frequent and distributed infrequent rows
    (``thresholds``: each table's ``p*``, worked out here if not given)."""
    w = ctx.workload
    world = ctx.world_size
    everyone = tuple(range(world))
    shards: list[Shard] = []
    for table in w.tables:
        dim = w.table_dim(table)
        dtype = ctx.estimator.start_dtype(table)
        base = thresholds[table.name] if thresholds is not None else base_threshold(ctx, table)
        k = frequent_rows(ctx, table, base * scale)
        if table.rows - k < world:  # too few infrequent rows to spread: replicate the table
            k = table.rows
        if k:
            shards.append(
                Shard(table.name, "data_parallel", 0, k, 0, dim, everyone, "hbm", dtype, "popularity")
            )
        if k < table.rows:
            shards.append(
                Shard(table.name, "distributed", k, table.rows, 0, dim, everyone, "hbm", dtype, "popularity")
            )
    return Plan(world, tuple(shards), strategy=name, comm_dtype=ctx.estimator.comm_dtype)


@register_proposer
class HybridEmbedding(Proposer):
    name = "hybrid_embedding"
    description = "HugeCTR hybrid embedding: frequent rows on every GPU, the rest spread over all GPUs"
    routes_rows = True

    def propose(self, ctx: PlanningContext) -> Plan:
        if ctx.world_size < 2:
            raise InfeasibleError("hybrid_embedding needs at least two ranks")
        cfg = ctx.config
        # Its method is the split itself: frequent rows replicated (data_parallel), infrequent ones
        # spread over every rank (``distributed``, which the limits count as row_wise), all in HBM.
        # Without either there is no hybrid embedding to plan.
        left_out = [s for s in ("data_parallel", "row_wise") if s not in cfg.sharding_types]
        if left_out:
            raise InfeasibleError(
                f"{self.name} replicates each table's frequent rows (data_parallel) and spreads the "
                f"others over every rank (row_wise); planner.sharding_types "
                f"({', '.join(cfg.sharding_types)}) leaves out {' and '.join(left_out)}"
            )
        if "hbm" not in allowed_tiers(ctx):
            raise InfeasibleError(
                f"{self.name} places every table in HBM, which planner.tiers ({', '.join(cfg.tiers)}) "
                "leaves out"
            )
        cap = capacity(ctx.system).less(cfg.hbm_reserve, cfg.ddr_reserve)
        thresholds = {t.name: base_threshold(ctx, t) for t in ctx.workload.tables}
        scale = 1.0
        last: InfeasibleError | None = None
        for _ in range(MAX_THRESHOLD_DOUBLINGS):
            plan = hybrid_plan(ctx, scale, self.name, thresholds)
            # The runtime's refusal first (module docstring): a one-hot reader of the global batch
            # charged to multi-hot tables HugeCTR cannot route made memory the reason given.
            refused = ctx.estimator.framework.refusal(plan, ctx.workload)
            try:
                check_fits(plan_usage(plan, ctx.workload, ctx.system), cap, what=self.name)
            except InfeasibleError as exc:
                if refused is not None:
                    raise RuntimeRefusal(refused) from None
                last = exc
                scale *= 2.0
                continue
            return plan
        assert last is not None
        raise last
