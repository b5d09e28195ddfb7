"""Fixed schemes: every table sharded one way, in HBM at the workload's dtype, statistics-free.

The baselines the searching proposers are measured against, and what a user asks for with
``--plan row_wise``. Whole-table and column schemes place blocks by LPT on estimated cost; row
splits are fixed by construction. A scheme that cannot apply to a table (too few rows for a row
split, a dim too narrow for column blocks, one node for grid) keeps that table whole (table-wise),
as TorchRec's planner does with sharding types a table does not support.

The user's limits (``recsim.planner.limits``): the dtype is the workload's where
``planner.embedding_dtypes`` lists it, else the most precise listed one (a fixed scheme does not
search precisions), and the wire dtype the first of ``planner.comm_dtypes``. A scheme the config's
``sharding_types`` leave out -- the strategy's own, or the table-wise fallback a table needs -- or
HBM left out of ``planner.tiers``, is refused (``InfeasibleError``): the scheme is the strategy.
"""

from __future__ import annotations

from recsim.errors import InfeasibleError
from recsim.planner import plan as simple
from recsim.planner.estimator import Candidate
from recsim.planner.limits import check_limits
from recsim.planner.partitioners import Partitioner
from recsim.planner.proposers.base import PlanningContext, Proposer, allowed_tiers, register_proposer
from recsim.planner.storage import Capacity
from recsim.planner.types import Plan
from recsim.workload.spec import Table


class _Scheme(Proposer):
    """One scheme for every table (``sharding``), blocks placed by LPT, all in HBM."""

    sharding: str
    description = ""
    fixed = True

    def propose(self, ctx: PlanningContext) -> Plan:
        allowed = ctx.config.sharding_types
        if self.sharding not in allowed:
            raise InfeasibleError(
                f"{self.name}: planner.sharding_types ({', '.join(allowed)}) leaves out {self.sharding}, "
                "the scheme of this strategy"
            )
        est = ctx.estimator
        part = Partitioner(est, "lpt", cap=Capacity.unlimited(est.per_node))
        chosen: list[Candidate] = []
        for table in ctx.workload.tables:
            chosen.append(self.candidate(ctx, table))
        # Largest first (LPT); capacity is checked by the simulation, which reports the shortfall.
        for cand in sorted(chosen, key=lambda c: -c.option.perf.total_s):
            if part.place(cand) is None:  # pragma: no cover - unlimited capacity always fits
                raise InfeasibleError(f"{self.name}: could not place {cand.option.describe()}")
        plan = Plan(
            ctx.world_size, tuple(part.shards), strategy=self.name, comm_dtype=ctx.estimator.comm_dtype
        )
        # Every table in HBM: refused where planner.tiers leaves HBM out.
        check_limits(plan, ctx.workload, ctx.config, allowed_tiers(ctx), what=self.name)
        return plan

    def candidate(self, ctx: PlanningContext, table: Table) -> Candidate:
        """``table`` by the scheme, at the precision the planner starts it at (a fixed scheme
        does not search precisions), or whole (table-wise) where the scheme cannot apply."""
        est = ctx.estimator
        dtype = est.dtypes_for(table)[0]
        cand = None
        if self.sharding in ("column_wise", "table_column_wise", "grid"):
            dim = ctx.workload.table_dim(table)
            for k in est.column_splits(dim):
                cand = est.candidate(table, self.sharding, "hbm", dtype, column_blocks=k)
                if cand is not None:
                    break
        else:
            cand = est.candidate(table, self.sharding, "hbm", dtype)
        if cand is None:
            if "table_wise" not in ctx.config.sharding_types:
                raise InfeasibleError(
                    f"{self.name}: table {table.name!r} cannot be {self.sharding} here (too few rows, "
                    "columns or nodes) and planner.sharding_types leaves out table_wise, which such a "
                    "table keeps"
                )
            cand = est.candidate(table, "table_wise", "hbm", dtype)
        assert cand is not None
        return cand


@register_proposer
class ColumnWise(_Scheme):
    name = "column_wise"
    sharding = "column_wise"
    description = "every table split into column blocks (halves, else quarters) on LPT-chosen ranks"


@register_proposer
class TableColumnWise(_Scheme):
    name = "table_column_wise"
    sharding = "table_column_wise"
    description = "column blocks of each table on ranks of one node"


@register_proposer
class TableRowWise(_Scheme):
    name = "table_row_wise"
    sharding = "table_row_wise"
    description = "every table split by rows over the GPUs of one node (LPT-chosen node)"


@register_proposer
class Grid(_Scheme):
    name = "grid"
    sharding = "grid"
    description = "column blocks on different nodes, each split by rows inside its node"


@register_proposer
class DataParallel(_Scheme):
    name = "data_parallel"
    sharding = "data_parallel"
    description = "every table replicated on every rank (gradients all-reduced)"


class _Simple(Proposer):
    """One of the statistics-free functions of ``recsim.planner.plan`` (``PLAIN_STRATEGIES``), at
    the precisions the config allows (``plan.plain_plan``); refused where its schemes or HBM are
    left out of the config."""

    fixed = True

    def propose(self, ctx: PlanningContext) -> Plan:
        plan = simple.plain_plan(self.name, ctx.workload, ctx.world_size, ctx.config)
        check_limits(plan, ctx.workload, ctx.config, allowed_tiers(ctx), what=self.name)
        return plan


@register_proposer
class TableWise(_Simple):
    name = "table_wise"
    description = "whole tables, rank by rank in table order (round robin)"


@register_proposer
class TableWiseGreedy(_Simple):
    name = "table_wise_greedy"
    description = "whole tables, largest lookup traffic first, on the least-loaded rank (LPT)"


@register_proposer
class RowWise(_Simple):
    name = "row_wise"
    description = "every table split by rows over every rank"


@register_proposer
class TableWiseMpBottom(_Simple):
    name = "table_wise_mp_bottom"
    description = (
        "bottom MLP model-parallel on rank 0, whole tables in DLE's size-balanced buckets on the others"
    )


@register_proposer
class Hybrid(_Simple):
    name = "hybrid"
    description = "row-wise for tables of >= 10M rows, LPT table-wise for the rest"
