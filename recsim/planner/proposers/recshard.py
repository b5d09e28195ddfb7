"""``recshard``: statistics-driven tiering -- each table's hottest rows in HBM, its cold rows on a
slow tier, the hot-set sizes chosen by a knapsack over the HBM the dense side leaves.

Model (after RecShard: Sethi, Acun, Agarwal, Kozyrakis, Trippel and Wu, "RecShard: Statistical
Feature-Based Memory Optimization for Industry-Scale Neural Recommendation", ASPLOS 2022). RecShard
remaps every table's ids by access frequency (hottest first) and, from per-table statistics -- the
row-frequency CDF and the pooling factor -- splits each table at a popularity rank: rows above the
split in HBM, the rest in UVM, solved as a MILP over all tables against the GPUs' memory. It
reports more than 6x higher embedding training throughput than placing the tables of a
capacity-constrained model in UVM.

Here the statistics are the workload's access models (``SliceModel``: a popularity slice receives
its share of the table's lookup mass) and the costs the estimator's, so the knapsack sees what the
engines will charge:

1. **Options per table** (at the table's own precision): the whole table on each slow tier the
   config allows (``uvm``, ``uvm_caching:r``, ``ddr``, ...; a tier the cost layer refuses for
   training, such as ``ssd``, is skipped); each hot-set size of ``Estimator.hot_rows_options`` in
   HBM with the cold rows on each of those tiers (one block: hot and cold rows pool together on
   one rank; a hot set no rank holds may instead be split into 2 or 4 column blocks, each block's
   hot and cold rows on one rank: ``hot_cold_variants``); and the whole table in HBM. An option is
   a point (HBM bytes, cost), the cost being the estimated seconds per step with the lookups of ``nmp``
   counted once per rank of the node, since the node's ranks share its NMP DIMMs while that
   tier's model costs each block as if its rank had them to itself (the ``ddr`` tier already
   gives a rank its share of the host).
2. **Knapsack**. If every table fits whole in HBM, every table goes whole into HBM (slow tiers
   are a capacity tool, as in ``greedy``). Otherwise the LP relaxation of the multiple-choice
   knapsack, solved greedily (Sinha and Zoltners, Operations Research 1979): per table the lower
   convex hull of its points from its smallest HBM footprint; consecutive hull points are
   *increments* (HBM bytes added, seconds saved) of falling benefit density. Every table starts at
   its smallest option; increments are taken by falling density while the HBM budget -- every
   rank's capacity less the reserve and the dense side -- allows; a table's increments are taken
   in order, so its choice stays a hull point, and one that does not fit closes the table. The
   relaxation's fractional increments are then made whole: the tables stopped short of their next
   hull point take, densest increment first, the hot set the remaining budget (and one rank) can
   hold, when it is cheaper.
3. **Placement** with the partitioner, each table by ``greedy.best_placement`` (a whole table on
   one tier may take any scheme of that tier with no more HBM bytes: table-, row- or
   column-wise; a hot/cold split, on one rank or over column blocks, which spreads a big table's
   slow lookups: RecShard balances them per GPU in its MILP), in two orders -- largest estimated
   cost first (LPT) and the knapsack's (densest increment first, so that when the ranks' free
   fragments cannot hold every choice the marginal ones give way) -- keeping the lower estimated
   makespan. A choice that fits on no rank shrinks to the hot set the freest rank can hold, then
   falls back to its smaller hull points, then to ``greedy.place_table`` (any option, lower
   precisions), which raises ``InfeasibleError`` naming the table, its bytes and the tiers tried.
   The partitioner prices a ``uvm_caching`` block by what it adds to its rank's one cache
   (``Partitioner.load_on``); the knapsack's points price each table with a cache of its own rows,
   since no rank is chosen yet (a table's cost beside others depends on which: left as it is).

4. **HBM ladder** (monotone in HBM capacity). The knapsack minimises the *sum* of the tables'
   costs, the placement the *makespan*, so more HBM could buy a plan whose sum falls and whose
   busiest rank rises: a tester's rmc1 (Zipf 1.05) on hgx-a100-4gpu, tiers ``[hbm, uvm_caching]``,
   at 0.6 GB of HBM a GPU had every table's hot rows in HBM beside its cached cold rows, two tables
   a rank, 1.248 ms a step simulated; at 0.8 GB one table went whole into HBM, row-wise over the 4
   ranks, the 7 others 2, 2, 2 and 1 a rank, 1.304 ms (+4.5 %). A plan that fits a smaller HBM
   fits a larger one, so the proposer also runs steps 1-3 as if a rank had less free HBM (the
   HBM left after the dense side, the loader's buffers and ``planner.hbm_reserve``), at each size
   of a grid fixed in absolute bytes (``ladder_bytes``: 1 MiB x 2^(k/2), two rungs an octave)
   below its own, down to the HBM every table's smallest option takes, and keeps the plan of
   lowest estimated makespan (``estimator.plan_makespan_s``, as ``auto`` ranks plans; ties keep
   the larger HBM). As the grid does not move with the capacity, the rungs below a smaller HBM
   are rungs of every larger one: over capacities whose free HBM is a grid size the estimate
   never rises with HBM (exactly; the tester's 0.8 GB now takes the plan for 362 MiB free, 1.163
   ms estimated as at 0.6 GB). A capacity off the grid also keeps its own plan, which no larger
   capacity tries: that plan may beat every rung of a larger one (rmc1: 0.6 GB by 15 ns, 1.3e-5;
   1.0 GB's 1.005 ms against 1.032 ms from 1.05 to 1.275 GB, +2.7 %). Snapping every capacity
   down to the grid would make it exact but leave up to 29 % of the HBM unplanned; a finer grid
   costs a rung more per step (4 an octave did not remove the 1.05 GB case). Cost: one search a
   rung, ~2 log2(free / floor) rungs, with ``hot_cold_variants`` and ``tier_candidates`` now
   memoised: DLRM-DCNv2 at dim 512 on 40 GB A100s, three slow tiers, 12 rungs, 1.2 -> 4.5 s
   (~3.8x; no rung wins there: the nearest, 22.6 GiB free, 3.7x slower); rmc1 0.07 -> 0.25 s. When every
   table fits whole in HBM there is no ladder (a smaller HBM's plans keep rows on a slower tier).
   Not done: a sound bound to stop the descent early (the estimated mean rank load is no bound:
   it fell from 1.52 to 1.24 ms between two rmc1 rungs as HBM shrank).

The plan's notes record each table's hot set and cold tier, and the ladder's rung when one won.

Within the user's limits (``recsim.planner.limits``): the slow tiers and precisions are the
config's; a table's one-rank options (whole, or hot and cold rows together) are table-wise, so where
``planner.sharding_types`` leaves ``table_wise`` out a whole table takes the fastest allowed scheme
that keeps each row once and a hot/cold split only its column blocks (``column_wise``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from recsim.errors import InfeasibleError
from recsim.planner.estimator import Candidate, Estimator, plan_makespan_s
from recsim.planner.partitioners import Partitioner
from recsim.planner.proposers.base import PlanningContext, Proposer, register_proposer
from recsim.planner.proposers.greedy import (
    best_placement,
    capacity_constrained,
    finished_plan,
    least_io_bytes,
    place_table,
    rows_may_leave_hbm,
)
from recsim.planner.storage import Capacity, shard_storage
from recsim.planner.types import Plan, Shard
from recsim.units import Dimension, format_quantity
from recsim.workload.spec import Table

#: Relative slack when comparing HBM bytes of alternatives (float sums of equal sizes).
_BYTES_RTOL = 1e-9

#: The HBM ladder's grid (``ladder_bytes``): free HBM a rank of ``LADDER_UNIT_BYTES`` times
#: 2 ** (k / ``LADDER_RUNGS_PER_OCTAVE``). A design choice, not a measured figure: the ladder
#: costs one search (knapsack and placement) a rung, ``LADDER_RUNGS_PER_OCTAVE`` x log2(free /
#: floor) rungs, and the finer the grid the closer an off-grid capacity's nearest rung lies below
#: it. The unit anchors the grid at 1 MiB (any fixed size would do, a capacity-scaled one would not).
LADDER_UNIT_BYTES = float(2**20)
LADDER_RUNGS_PER_OCTAVE = 2

#: Tiers whose lookups run on node-wide hardware (the NMP DIMMs) that every rank of the node shares
#: and whose cost model does not split it (``ddr`` does: ``recsim.cost.embedding.ddr.rank_share``).
HOST_EXECUTED = ("nmp",)


@dataclass(frozen=True)
class TierOption:
    """One point of a table's knapsack: ``hot_rows`` in HBM (``rows`` = the whole table), the rest
    on ``cold_tier`` (``hbm`` when whole), its HBM bytes and its knapsack cost (``time_s``: the
    estimated seconds per step, host-executed lookups weighted by the ranks sharing the host)."""

    table: str
    hot_rows: int
    cold_tier: str
    hbm_bytes: float
    time_s: float
    candidate: Candidate

    @property
    def whole_in_hbm(self) -> bool:
        return self.cold_tier == "hbm"

    def describe(self) -> str:
        if self.whole_in_hbm:
            return f"{self.table}: whole in HBM"
        if self.hot_rows == 0:
            return f"{self.table}: whole on {self.cold_tier}"
        return f"{self.table}: {self.hot_rows} hot rows in HBM, cold rows on {self.cold_tier}"


def knapsack_cost_s(est: Estimator, cand: Candidate) -> float:
    """The option's estimated seconds per step, its host-executed lookups counted once per rank of
    the node (``HOST_EXECUTED`` tiers run on the host that all of the node's ranks share, which the
    estimator's per-block figures leave out)."""
    host = math.fsum(
        est.lookup_s(s, "forward") + est.lookup_s(s, "backward")
        for b in cand.blocks
        for s in b.shards
        if s.tier_name in HOST_EXECUTED
    )
    return cand.option.perf.total_s + (est.per_node - 1) * host


def table_options(
    ctx: PlanningContext, table: Table, dtype: str, per_rank_free: float, *, whole_only: bool = False
) -> list[TierOption]:
    """Every tiering option of ``table`` at ``dtype`` the cost layer can run and one rank can hold
    (a whole table in HBM is kept even when larger than a rank: it may be split over ranks).
    ``whole_only``: just the whole table in HBM (when every table fits there, nothing is tiered)."""
    est = ctx.estimator
    allow_hbm = "hbm" in ctx.config.tiers
    slow = [] if whole_only else [t for t in est.tiers() if t != "hbm"]
    out: list[TierOption] = []

    def add(cand: Candidate | None, hot: int, cold: str, variants: list[Candidate] | None = None) -> None:
        if cand is None or not math.isfinite(cand.option.perf.total_s):
            return  # too few rows, or a tier the cost layer refuses for training
        if not _fits(cand, per_rank_free) and cold != "hbm":
            return
        cost = knapsack_cost_s(est, cand)
        hbm = cand.option.storage.hbm_bytes
        if cold == "hbm" and not _fits(cand, per_rank_free):
            hbm = _split_hbm_bytes(ctx, cand, per_rank_free)
        if variants:
            hbm = split_budget_bytes(cand, variants, per_rank_free)
        out.append(TierOption(table.name, hot, cold, hbm, cost, cand))

    for tier in slow:
        add(whole_table(ctx, table, tier, dtype), 0, tier)
        if allow_hbm:
            for k in est.hot_rows_options(table):
                variants = hot_cold_variants(ctx, table, dtype, k, tier)
                if not variants:
                    continue
                add(_first_fitting(variants, per_rank_free), k, tier, variants)
    if allow_hbm:
        add(whole_table(ctx, table, "hbm", dtype), table.rows, "hbm")
    return out


def _first_fitting(variants: list[Candidate], per_rank_free: float) -> Candidate | None:
    """The first of a hot set's ``hot_cold_variants`` whose every block fits the HBM one rank has
    free: the table on one rank where it fits, else (a hot set no rank holds whole) its column
    blocks, one per rank; None where none fits."""
    return next((c for c in variants if _fits(c, per_rank_free)), None)


def split_budget_bytes(cand: Candidate, variants: list[Candidate], per_rank_free: float) -> float:
    """HBM the knapsack budgets for a hot set chosen as ``cand``: the most that ``cand`` or any of
    its ``variants`` that fit a rank takes, since placement may put any of them in its place
    (``RecShard._alternatives``: the table on one rank, or its 2 or 4 column blocks). The blocks of a
    column split take more than the table on one rank: each reads every id of the global batch
    again (``storage.input_buffer_bytes``: TorchRec's ``_calculate_cw_shard_io_sizes`` charges
    each column shard the whole input) and keeps its own per-row state. Budgeted as the table on
    one rank, the chosen hot sets of DLRM-DCNv2 at dim 512 on 40 GB A100s fit no rank once the
    ids were charged (the split that had to stand in took a few MiB more than budgeted): estimated
    25.2 -> 114 ms."""
    sizes = [c.option.storage.hbm_bytes for c in variants if _fits(c, per_rank_free)]
    return max([cand.option.storage.hbm_bytes, *sizes])


def _split_hbm_bytes(ctx: PlanningContext, cand: Candidate, per_rank_free: float) -> float:
    """HBM a table whole on ``cand``'s tier, too big for one rank, takes once split so that every
    block fits a rank: the least of the schemes that do (column blocks pool the global batch once
    in all, each member of a row split all of it: ``storage.pooled_output_bytes``), so the knapsack
    budgets the pooled vectors of the split that will be placed (``_alternatives``); ``cand``'s own
    bytes where none fits."""
    option = cand.option
    splits = [
        c.option.storage.hbm_bytes
        for c in tier_candidates(ctx, ctx.workload.table(option.table), option.dtype, option.tier)
        if c.placement != "every" and not c.replicated and _fits(c, per_rank_free)
    ]
    return max(option.storage.hbm_bytes, min(splits)) if splits else option.storage.hbm_bytes


def whole_table(ctx: PlanningContext, table: Table, tier: str, dtype: str) -> Candidate | None:
    """The knapsack's point of ``table`` whole on ``tier``: table-wise, or, where
    ``planner.sharding_types`` leaves that out, the fastest allowed scheme that keeps every row
    once (no replication: the HBM bytes stay the table's); None where there is none."""
    est = ctx.estimator
    if "table_wise" in ctx.config.sharding_types:
        return est.candidate(table, "table_wise", tier, dtype)
    return next(
        (c for c in tier_candidates(ctx, table, dtype, tier) if c.placement != "every" and not c.replicated),
        None,
    )


def tier_candidates(ctx: PlanningContext, table: Table, dtype: str, tier: str) -> list[Candidate]:
    """``Estimator.candidates`` of ``table`` at ``dtype`` on ``tier``, memoised per estimator (the
    HBM ladder's rungs ask again)."""
    return _memoised(
        ctx,
        "recshard.tier_candidates",
        (table.name, dtype, tier),
        lambda: ctx.estimator.candidates(table, dtype, [tier]),
    )


def hot_cold_variants(
    ctx: PlanningContext, table: Table, dtype: str, hot_rows: int, cold: str
) -> list[Candidate]:
    """Memoised per estimator (the HBM ladder's rungs ask again): ``_hot_cold_variants``."""
    return _memoised(
        ctx,
        "recshard.hot_cold_variants",
        (table.name, dtype, hot_rows, cold),
        lambda: _hot_cold_variants(ctx, table, dtype, hot_rows, cold),
    )


def _memoised(
    ctx: PlanningContext, memo_name: str, key: tuple[object, ...], make: Callable[[], list[Candidate]]
) -> list[Candidate]:
    """``make()``, kept in the estimator's memo ``memo_name`` under ``key`` (``Estimator.
    proposer_memos``: its config and workload are fixed, so a key names one answer)."""
    memo: dict[tuple[object, ...], list[Candidate]] = ctx.estimator.proposer_memos.setdefault(memo_name, {})
    found = memo.get(key)
    if found is None:
        found = memo[key] = make()
    return found


def _hot_cold_variants(
    ctx: PlanningContext, table: Table, dtype: str, hot_rows: int, cold: str
) -> list[Candidate]:
    """``hot_rows`` of ``table`` in HBM and the rest on ``cold``: the table on one rank (where the
    config allows table-wise sharding), then (where it allows column-wise sharding) split into 2 and
    4 column blocks, each block's hot and cold rows on one rank. The splits spread the hot set and
    the slow lookups over ranks (RecShard balances them per GPU in its MILP), and take more HBM in
    all than the table on one rank: each block reads every id again (``storage.input_buffer_bytes``)
    and, under a row-wise optimizer, keeps its own state a row (``split_budget_bytes``, which the
    knapsack budgets)."""
    est = ctx.estimator
    out: list[Candidate] = []
    if "table_wise" in ctx.config.sharding_types:
        whole = est.candidate(
            table, "table_wise", "hbm", dtype, hot_rows=hot_rows, hot_placement="hbm", cold_tier=cold
        )
        if whole is None or not math.isfinite(whole.option.perf.total_s):
            return []
        out.append(whole)
    elif not 0 < hot_rows < table.rows:
        return []
    if "column_wise" in ctx.config.sharding_types:
        for k in est.column_splits(ctx.workload.table_dim(table)):
            cand = est.candidate(
                table,
                "column_wise",
                "hbm",
                dtype,
                column_blocks=k,
                hot_rows=hot_rows,
                hot_placement="hbm",
                cold_tier=cold,
            )
            if cand is not None and math.isfinite(cand.option.perf.total_s):
                out.append(cand)
    return out


def _fits(cand: Candidate, per_rank_free: float) -> bool:
    """Whether every block of ``cand`` fits the HBM one rank has free."""
    return max(b.storage.hbm_bytes for b in cand.blocks) <= per_rank_free * (1 + _BYTES_RTOL)


def convex_hull(options: list[TierOption]) -> list[TierOption]:
    """The lower convex hull of (HBM bytes, cost) from the smallest footprint, cost falling.

    Consecutive points give increments of falling benefit density (seconds saved per byte).
    """
    pts = sorted(options, key=lambda o: (o.hbm_bytes, o.time_s, o.hot_rows, o.cold_tier))
    pareto: list[TierOption] = []
    for o in pts:
        if pareto and o.hbm_bytes <= pareto[-1].hbm_bytes * (1 + _BYTES_RTOL):
            continue  # same footprint, no cheaper (sorted by cost within bytes)
        if pareto and o.time_s >= pareto[-1].time_s:
            continue  # more bytes, no cheaper
        pareto.append(o)
    hull: list[TierOption] = []
    for o in pareto:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b is off the hull if going from a straight to o saves at least as much per byte.
            via_o = (a.time_s - o.time_s) * (b.hbm_bytes - a.hbm_bytes)
            via_b = (a.time_s - b.time_s) * (o.hbm_bytes - a.hbm_bytes)
            if via_o >= via_b:
                hull.pop()
            else:
                break
        hull.append(o)
    return hull


def knapsack(hulls: dict[str, list[TierOption]], budget: float) -> dict[str, int]:
    """Index of each table's chosen hull point: every table starts at its smallest footprint, then
    increments are taken by falling density (seconds saved per byte; ties by table name) while
    ``budget`` allows. A table's increments are taken in order; one that does not fit closes it."""
    choice = {name: 0 for name in hulls}
    used = math.fsum(h[0].hbm_bytes for h in hulls.values())
    increments: list[tuple[float, str, int, float]] = []
    for name, hull in hulls.items():
        for i in range(1, len(hull)):
            added = hull[i].hbm_bytes - hull[i - 1].hbm_bytes
            saved = hull[i - 1].time_s - hull[i].time_s
            increments.append((-saved / added, name, i, added))
    increments.sort()
    closed: set[str] = set()
    for _density, name, i, added in increments:
        if name in closed or choice[name] != i - 1:
            continue
        if used + added > budget:
            closed.add(name)
            continue
        used += added
        choice[name] = i
    return choice


def hot_row_bytes(ctx: PlanningContext, table: Table, dtype: str) -> float:
    """HBM bytes of one hot row of ``table`` at ``dtype`` (row and optimizer state)."""
    one_row = Shard(table.name, "table_wise", 0, 1, 0, ctx.workload.table_dim(table), (), "hbm", dtype)
    return shard_storage(one_row, ctx.workload).hbm_bytes


def hot_option(
    ctx: PlanningContext,
    table: Table,
    dtype: str,
    hot_rows: int,
    per_rank_free: float,
    cold_tiers: tuple[str, ...] | None = None,
) -> TierOption | None:
    """The cheapest option with ``hot_rows`` in HBM and the cold rows on a slow tier (of
    ``cold_tiers`` when given; None if no such tier can hold them), as ``table_options`` makes
    its hot sets: the first variant that fits the ``per_rank_free`` bytes of a rank, budgeted at
    the most any variant that fits takes (``split_budget_bytes``)."""
    est = ctx.estimator
    if "hbm" not in ctx.config.tiers or not 0 < hot_rows < table.rows:
        return None
    best: TierOption | None = None
    for tier in (t for t in est.tiers() if t != "hbm" and (cold_tiers is None or t in cold_tiers)):
        variants = hot_cold_variants(ctx, table, dtype, hot_rows, tier)
        cand = _first_fitting(variants, per_rank_free)
        if cand is None or not math.isfinite(cand.option.perf.total_s):
            continue
        budget = split_budget_bytes(cand, variants, per_rank_free)
        opt = TierOption(table.name, hot_rows, tier, budget, knapsack_cost_s(est, cand), cand)
        if best is None or opt.time_s < best.time_s:
            best = opt
    return best


def fill(
    ctx: PlanningContext,
    hulls: dict[str, list[TierOption]],
    choice: dict[str, int],
    budget: float,
    per_rank_free: float,
    cold_tiers: tuple[str, ...] | None = None,
) -> dict[str, TierOption]:
    """The LP relaxation's fractional increments made whole: each table the knapsack stopped short
    of its next hull point (densest such increment first) takes the hot set, between its choice
    and that point, that the HBM the knapsack left (and one rank) can hold, if that is cheaper
    (its cold rows on one of ``cold_tiers`` when given). Returns the tables' new options."""
    left = budget - math.fsum(hulls[n][i].hbm_bytes for n, i in choice.items())
    open_ = [n for n, i in choice.items() if i + 1 < len(hulls[n])]
    open_.sort(key=lambda n: (-_density(hulls[n], choice[n] + 1), n))
    out: dict[str, TierOption] = {}
    for name in open_:
        if left <= 0:
            break
        here, there = hulls[name][choice[name]], hulls[name][choice[name] + 1]
        table = ctx.workload.table(name)
        dtype = here.candidate.option.dtype
        per_row = hot_row_bytes(ctx, table, dtype)
        room = min(left, per_rank_free - here.hbm_bytes)
        k = min(here.hot_rows + math.floor(room / per_row), there.hot_rows - 1)
        if k <= here.hot_rows:
            continue
        opt = hot_option(ctx, table, dtype, k, per_rank_free, cold_tiers)
        if opt is None or opt.time_s >= here.time_s:
            continue
        if opt.hbm_bytes - here.hbm_bytes <= left * (1 + _BYTES_RTOL):
            out[name] = opt
            left -= opt.hbm_bytes - here.hbm_bytes
    return out


def ladder_bytes(free_bytes: float, floor_bytes: float) -> list[float]:
    """The HBM ladder's rungs below ``free_bytes`` of free HBM a rank, largest first: the sizes
    ``LADDER_UNIT_BYTES x 2 ** (k / LADDER_RUNGS_PER_OCTAVE)`` (k = 0, 1, ...) in [``floor_bytes``,
    ``free_bytes``).

    The grid is fixed in absolute bytes, not scaled from ``free_bytes``, so that the rungs of a
    smaller HBM are rungs of every larger one (module docstring, step 4)."""
    if not free_bytes > LADDER_UNIT_BYTES:
        return []
    top = math.ceil(LADDER_RUNGS_PER_OCTAVE * math.log2(free_bytes / LADDER_UNIT_BYTES)) + 1
    out: list[float] = []
    for k in range(top, -1, -1):
        size = LADDER_UNIT_BYTES * 2.0 ** (k / LADDER_RUNGS_PER_OCTAVE)
        if size < free_bytes * (1 - _BYTES_RTOL) and size >= max(floor_bytes, LADDER_UNIT_BYTES):
            out.append(size)
    return out


def _b(x: float) -> str:
    return format_quantity(x, Dimension.BYTES, binary=True)


@register_proposer
class RecShard(Proposer):
    name = "recshard"
    description = "hot rows in HBM, cold rows on a slow tier; hot-set sizes by a knapsack over HBM"

    def propose(self, ctx: PlanningContext) -> Plan:
        est = ctx.estimator
        top = Partitioner(est, "lpt")
        # Every rank holds the same dense side and loader buffers before any table.
        fixed_bytes = max(top.hbm)
        free_bytes = top.cap.hbm_bytes_per_rank - fixed_bytes
        plan, notes, floor_bytes, tiered = self._propose_at(ctx, top.cap)
        if not tiered:
            # Every table fits whole in HBM: nothing is tiered, and a smaller HBM's plans would
            # keep some rows on a slower tier.
            return dataclasses.replace(plan, notes=tuple(notes))
        makespan = plan_makespan_s(est, plan)
        best = (makespan, free_bytes, plan, notes)
        # The HBM ladder (module docstring, step 4): the plans the same search makes for a rank
        # with less free HBM, on a grid fixed in absolute bytes, down to where the knapsack has
        # nothing to choose (the tables' smallest options, which fit a rank of every rung, so the
        # floor does not move with the capacity). A rung whose placement fails is skipped; the
        # rank's own capacity raises as before.
        for rung in ladder_bytes(free_bytes, floor_bytes):
            cap = dataclasses.replace(top.cap, hbm_bytes_per_rank=fixed_bytes + rung)
            try:
                rung_plan, rung_notes, _, _ = self._propose_at(ctx, cap)
            except InfeasibleError:
                continue  # too little HBM for this search's placement: the rungs above stand
            makespan = plan_makespan_s(est, rung_plan)
            if makespan < best[0]:
                best = (makespan, rung, rung_plan, rung_notes)
        makespan, rung, plan, notes = best
        if rung < free_bytes:
            notes = [
                f"HBM ladder: planned for {_b(rung)} of free HBM a rank of the {_b(free_bytes)} there is "
                f"(estimated makespan {makespan * 1e3:.3f} ms, below every larger rung's)",
                *notes,
            ]
        return dataclasses.replace(plan, notes=tuple(notes))

    def _propose_at(self, ctx: PlanningContext, cap: Capacity) -> tuple[Plan, list[str], float, bool]:
        """The knapsack and placement for ranks of capacity ``cap``: the plan, its notes, the free
        HBM a rank below which the knapsack has nothing to choose (every table at its smallest
        option), and whether anything could be tiered (False: every table fits whole in HBM)."""
        est = ctx.estimator
        part = Partitioner(est, "lpt", cap)
        # The options' HBM bytes count every table's pooled vectors, wherever its rows go (the
        # estimator's block storage), so the knapsack budgets them with the rows.
        per_rank_free = max(part.cap.hbm_bytes_per_rank - h for h in part.hbm)
        budget = math.fsum(max(0.0, part.cap.hbm_bytes_per_rank - h) for h in part.hbm)
        # When the tables fit in HBM at their precision, tiering has nothing to gain: cost only
        # the whole-table options (planning a 1000-table model stays quick).
        whole_only = "hbm" in ctx.config.tiers and not capacity_constrained(ctx, part)
        options = {
            t.name: table_options(ctx, t, est.dtypes_for(t)[0], per_rank_free, whole_only=whole_only)
            for t in ctx.workload.tables
        }
        floor_bytes = math.fsum(min((o.hbm_bytes for o in opts), default=0.0) for opts in options.values())
        floor_bytes /= ctx.world_size
        # The knapsack minimises the tables' summed cost, not the makespan the placement then
        # gets, so a slow tier more to choose from could give a worse plan: a tester's DLRM-DCNv2
        # (dim 512) on 40 GB A100s came out at an estimated 31.0 ms with [hbm, uvm_caching, ddr]
        # against 26.1 ms with [hbm, uvm_caching] (simulated 1.38M against 1.60M samples/s). With
        # several slow tiers the proposer also plans with each one alone and keeps the lowest
        # estimated makespan, so a tier added to the config never makes its estimate worse than
        # that tier's, or any other's, alone. The guarantee is the estimate's: the engines may
        # rank two close plans the other way (a reviewer's memory-tiers point at cache ratio 0.2:
        # 27.06 -> 26.57 ms estimated, 1.592M -> 1.577M samples/s simulated), and planning costs
        # one knapsack and placement more per slow tier (model-a on DGX H100: 16.3 -> 20.5 s).
        slow = sorted({o.cold_tier for opts in options.values() for o in opts if not o.whole_in_hbm})
        restrictions: list[tuple[str, ...] | None] = (
            [None, *((t,) for t in slow)] if len(slow) > 1 else [None]
        )
        best: tuple[float, Partitioner, list[str]] | None = None
        for cold_tiers in restrictions:
            kept = (
                options
                if cold_tiers is None
                else {
                    n: [o for o in opts if o.whole_in_hbm or o.cold_tier in cold_tiers]
                    for n, opts in options.items()
                }
            )
            makespan, placed, notes = self._plan(ctx, kept, budget, per_rank_free, cold_tiers, cap)
            if best is None or makespan < best[0]:
                best = (makespan, placed, notes)
        assert best is not None
        return finished_plan(ctx, best[1], self.name), best[2], floor_bytes, not whole_only

    def _plan(
        self,
        ctx: PlanningContext,
        options: dict[str, list[TierOption]],
        budget: float,
        per_rank_free: float,
        cold_tiers: tuple[str, ...] | None,
        cap: Capacity,
    ) -> tuple[float, Partitioner, list[str]]:
        """The knapsack and placement over ``options`` (cold rows on ``cold_tiers`` when given):
        the estimated makespan, the placed partitioner and the notes."""
        hulls = {name: convex_hull(opts) for name, opts in options.items()}
        whole = {name: [o for o in opts if o.whole_in_hbm] for name, opts in options.items()}
        notes = [f"HBM for tables: {_b(budget)} over {ctx.world_size} ranks"]
        if cold_tiers is not None:
            notes.append(f"slow tier: {', '.join(cold_tiers)} only (its plan beat every slow tier together)")
        if all(whole.values()) and math.fsum(w[0].hbm_bytes for w in whole.values()) <= budget:
            chosen = {name: w[0] for name, w in whole.items()}
            notes.append("every table fits whole in HBM: no tiering")
            orders = {"LPT": sorted(options, key=lambda n: (-_perf_s(chosen.get(n)), n))}
        else:
            picks = knapsack({n: h for n, h in hulls.items() if h}, budget)
            chosen = {name: hulls[name][i] for name, i in picks.items()}
            chosen.update(fill(ctx, hulls, picks, budget, per_rank_free, cold_tiers))
            density = {n: _density(hulls[n], i) for n, i in picks.items()}
            orders = {
                # Largest estimated cost first (LPT, for balance) ...
                "LPT": sorted(options, key=lambda n: (-_perf_s(chosen.get(n)), n)),
                # ... or the knapsack's order (most seconds saved per HBM byte first), so that
                # when the ranks' fragments cannot hold every choice, the marginal ones fall back.
                "density": sorted(options, key=lambda n: (-density.get(n, 0.0), -_perf_s(chosen.get(n)), n)),
            }
        best: tuple[float, str, Partitioner, list[str]] | None = None
        for label, order in orders.items():
            placed, placed_notes = self._place(ctx, order, chosen, hulls, cap, cold_tiers)
            if best is None or placed.makespan_s < best[0]:
                best = (placed.makespan_s, label, placed, placed_notes)
        assert best is not None
        notes.append(f"placement order: {best[1]} (estimated makespan {best[0] * 1e3:.3f} ms)")
        return best[0], best[2], notes + best[3]

    def _place(
        self,
        ctx: PlanningContext,
        order: list[str],
        chosen: dict[str, TierOption],
        hulls: dict[str, list[TierOption]],
        cap: Capacity,
        cold_tiers: tuple[str, ...] | None = None,
    ) -> tuple[Partitioner, list[str]]:
        """Place the tables in ``order`` on a fresh partitioner: each its chosen option, else the
        hot set the freest rank holds, else its smaller hull points, else the greedy's placement
        (``InfeasibleError`` if none fits)."""
        part = Partitioner(ctx.estimator, "lpt", cap)
        notes: list[str] = []
        remaining = math.fsum(_perf_s(chosen.get(n)) for n in order)
        # Rows leave their HBM to the pooled vectors of the tables the knapsack put off HBM, and of
        # those it chose nothing for (the greedy's placement, where a tier may take their rows out
        # of HBM: ``rows_may_leave_hbm``) (``Partitioner.reserve``).
        off: dict[str, float] = {}
        greedy_off = rows_may_leave_hbm(ctx.estimator)
        for name in order:
            opt = chosen.get(name)
            if opt is None:
                if greedy_off:
                    off[name] = least_io_bytes(ctx, ctx.workload.table(name))
            elif not any(Partitioner.holds_rows(b) for b in opt.candidate.blocks):
                off[name] = math.fsum(b.io_hbm_bytes for b in opt.candidate.blocks)
        part.reserve(off)
        for name in order:
            remaining -= _perf_s(chosen.get(name))
            rest = max(0.0, remaining)
            first = chosen.get(name)
            smaller = (
                [] if first is None else [h for h in reversed(hulls[name]) if h.hbm_bytes < first.hbm_bytes]
            )
            tries = [] if first is None else [first]
            if first is not None and first.hot_rows > (smaller[0].hot_rows if smaller else 0) + 1:
                floor_ = smaller[0].hot_rows if smaller else 0
                tries.append(self._shrunk(ctx, part, first, floor_, cold_tiers))
            for opt in [*tries, *smaller]:
                if opt is None:
                    continue
                placed = best_placement(part, self._alternatives(ctx, opt), rest)
                if placed is not None:
                    late = "" if opt is first else " (the chosen option fit no rank)"
                    blocks = len({(s.col_start, s.col_end) for s in placed})
                    split = (
                        f", in {blocks} column blocks"
                        if opt.hot_rows and not opt.whole_in_hbm and blocks > 1
                        else ""
                    )
                    notes.append(opt.describe() + split + late)
                    break
            else:
                # InfeasibleError here names the table, its bytes and the tiers tried.
                place_table(ctx, part, ctx.workload.table(name), rest)
                notes.append(f"{name}: greedy placement (no tiering option fit)")
        return part, notes

    @staticmethod
    def _shrunk(
        ctx: PlanningContext,
        part: Partitioner,
        opt: TierOption,
        floor_: int,
        cold_tiers: tuple[str, ...] | None = None,
    ) -> TierOption | None:
        """``opt`` cut to the hot set the freest rank can hold (more than ``floor_`` rows; its cold
        rows on one of ``cold_tiers`` when given), or None."""
        table = ctx.workload.table(opt.table)
        dtype = opt.candidate.option.dtype
        free = max(part.cap.hbm_bytes_per_rank - h for h in part.hbm)
        k = min(opt.hot_rows - 1, math.floor(free / hot_row_bytes(ctx, table, dtype)))
        return hot_option(ctx, table, dtype, k, free, cold_tiers) if k > floor_ else None

    @staticmethod
    def _alternatives(ctx: PlanningContext, opt: TierOption) -> list[Candidate]:
        """What may stand in for ``opt`` at placement: for a whole table on one tier, every scheme
        of that tier with no more HBM bytes of rows and state (so the knapsack's budget holds: no
        replication; a split's pooled vectors are the partitioner's to fit),
        fastest first; for a hot/cold split, the split on one rank or over column blocks (the same
        HBM bytes: ``hot_cold_variants``), so that a big table's slow lookups need not all land on
        one rank (a tester found a time imbalance of 3 across the ranks)."""
        table = ctx.workload.table(opt.table)
        limit = opt.hbm_bytes * (1 + _BYTES_RTOL)
        if opt.hot_rows and not opt.whole_in_hbm:
            variants = hot_cold_variants(ctx, table, opt.candidate.option.dtype, opt.hot_rows, opt.cold_tier)
            # No more HBM than the knapsack budgeted: per-row state (int8 scales, row-wise
            # optimizer state) is stored once per block, so a split may need a little more.
            return [
                opt.candidate,
                *(
                    c
                    for c in variants
                    if c.option != opt.candidate.option and c.option.storage.hbm_bytes <= limit
                ),
            ]
        # No replication is a bound on the rows (and their state) in HBM, not on the pooled vectors:
        # a row split pools the global batch on every member (``storage.pooled_output_bytes``), so
        # with those counted no split of a table that fits one rank would ever stand in for it
        # (DLRM-DCNv2 on 2 DGX H100s, 16,384 fp16: t20 went table-wise, estimated makespan 0.649 ->
        # 1.033 ms). The partitioner places a split with its vectors (``fits_block``).
        rows_limit = _rows_hbm_bytes(opt.candidate) * (1 + _BYTES_RTOL)
        alts = [
            c
            for c in tier_candidates(ctx, table, opt.candidate.option.dtype, opt.candidate.option.tier)
            if _rows_hbm_bytes(c) <= rows_limit and c.placement != "every" and not c.replicated
        ]
        if not any(c is opt.candidate for c in alts):
            alts.append(opt.candidate)
        return alts


def _rows_hbm_bytes(cand: Candidate) -> float:
    """HBM ``cand``'s blocks keep for rows, their state and caches: their storage less the pooled
    vectors they write and the ids they read (``Block.io_hbm_bytes``)."""
    blocks = (*cand.blocks, *cand.replicated)
    return cand.option.storage.hbm_bytes - math.fsum(b.io_hbm_bytes for b in blocks)


def _density(hull: list[TierOption], i: int) -> float:
    """Seconds saved per HBM byte by the last increment taken to hull point ``i`` (0 for none)."""
    if i == 0:
        return 0.0
    return (hull[i - 1].time_s - hull[i].time_s) / (hull[i].hbm_bytes - hull[i - 1].hbm_bytes)


def _perf_s(opt: TierOption | None) -> float:
    """The estimator's seconds of an option (the partitioner's load; LPT order)."""
    return 0.0 if opt is None else opt.candidate.option.perf.total_s


__all__ = [
    "HOST_EXECUTED",
    "RecShard",
    "TierOption",
    "convex_hull",
    "knapsack",
    "knapsack_cost_s",
    "table_options",
]
