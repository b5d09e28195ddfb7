"""``exhaustive``: every combination of each table's best few options, for small models.

Per table the ``TOP_K`` fastest statistics-free options in HBM at the table's precision (fastest
block first, as the estimator lists them); the product over tables is enumerated in a fixed order
(tables in workload order, options fastest first), each combination placed on a fresh
``Partitioner`` (LPT: largest estimated cost first, each block on the least-loaded rank that fits)
and scored by its makespan (the largest estimated per-rank load). The lowest makespan wins; ties
keep the first combination, so the plan is deterministic. Combinations that do not fit are
skipped.

It checks the greedy on models small enough to search: more combinations than
``planner.exhaustive_limit`` is an ``InfeasibleError`` (``auto`` skips it and keeps the rest).
"""

from __future__ import annotations

import itertools
import math

from recsim.errors import InfeasibleError
from recsim.planner.estimator import Candidate
from recsim.planner.partitioners import Partitioner
from recsim.planner.proposers.base import PlanningContext, Proposer, register_proposer
from recsim.planner.proposers.greedy import finished_plan
from recsim.planner.types import Plan

#: Options per table: the fastest few HBM options at the table's precision.
TOP_K = 3


def top_candidates(ctx: PlanningContext, k: int = TOP_K) -> list[list[Candidate]]:
    """Each table's ``k`` fastest HBM options at its precision (workload table order)."""
    est = ctx.estimator
    tiers = ["hbm"] if "hbm" in ctx.config.tiers else est.tiers()
    out: list[list[Candidate]] = []
    for table in ctx.workload.tables:
        cands = est.candidates(table, est.dtypes_for(table)[0], tiers)[:k]
        if not cands:
            raise InfeasibleError(
                f"exhaustive: table {table.name!r} has no usable option on {'/'.join(tiers)} "
                f"at {est.dtypes_for(table)[0]}"
            )
        out.append(cands)
    return out


def combinations(options: list[list[Candidate]]) -> int:
    return math.prod(len(o) for o in options)


@register_proposer
class Exhaustive(Proposer):
    name = "exhaustive"
    description = "every combination of each table's 3 fastest HBM options (small models only)"

    def propose(self, ctx: PlanningContext) -> Plan:
        limit = ctx.config.exhaustive_limit
        # Every table has at least one option, so if even one each over the cheapest bound (2 per
        # table beyond log2(limit) tables) exceeds the limit, refuse before costing any option.
        if ctx.workload.num_tables > math.log2(max(limit, 1)) + 1 and TOP_K > 1:
            options = [
                ctx.estimator.candidates(t, ctx.estimator.dtypes_for(t)[0], ["hbm"])[:TOP_K]
                for t in ctx.workload.tables[: int(math.log2(max(limit, 1))) + 2]
            ]
            if combinations(options) > limit:
                raise InfeasibleError(
                    f"exhaustive: more than {limit} combinations (already {combinations(options)} for the "
                    f"first {len(options)} of {ctx.workload.num_tables} tables) exceed "
                    f"planner.exhaustive_limit={limit}; use greedy or auto"
                )
        options = top_candidates(ctx)
        count = combinations(options)
        if count > limit:
            raise InfeasibleError(
                f"exhaustive: {count} combinations exceed planner.exhaustive_limit={limit}; "
                "use greedy or auto"
            )
        best: tuple[float, Partitioner] | None = None
        for combo in itertools.product(*options):
            part = Partitioner(ctx.estimator, "lpt")
            ordered = sorted(combo, key=lambda c: (-c.option.perf.total_s, c.table))
            if any(part.place(cand) is None for cand in ordered):
                continue
            if best is None or part.makespan_s < best[0]:
                best = (part.makespan_s, part)
        if best is None:
            raise InfeasibleError(
                f"exhaustive: none of the {count} combinations of the tables' {TOP_K} fastest options "
                "fits in HBM; use greedy or auto (they try slower tiers and lower precisions)"
            )
        return finished_plan(ctx, best[1], self.name)
