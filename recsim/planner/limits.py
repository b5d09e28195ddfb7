"""The user's limits on a plan, and the one check every plan the planner returns passes.

``--set planner.<key>=...`` narrows what the planner may choose (``recsim.planner.config``):

- ``planner.sharding_types``: the schemes a shard may have. A ``distributed`` shard (HugeCTR's
  infrequent rows, spread row by row over every rank: ``proposers.hybrid_embedding``) counts as
  ``row_wise``, TorchRec's scheme that spreads a table's rows over every rank; a table's hot rows
  replicated on every rank (FlexShard, HugeCTR's frequent rows) are ``data_parallel``;
- ``planner.tiers``: the memory tiers a shard may live in (with the ``nmp`` and ``smartssd`` tiers
  the estimator adds where the system has them, unless ``planner.auto_tiers`` is false or
  ``planner.tiers`` is given);
- ``planner.embedding_dtypes``: the storage precisions a shard may take;
- ``planner.comm_dtypes``: the wire precisions the plan's pooled embeddings may travel in;
- ``planner.hbm_reserve`` / ``planner.ddr_reserve``: the memory a plan may not use (checked where
  a capacity is given: ``auto`` holds every candidate to it; a fixed scheme asked for by name is
  a what-if whose fit ``recsim plan`` reports, within the reserves or not).

Each proposer keeps to the limits itself where its method allows (a search restricts itself to
the allowed schemes, tiers and precisions; a fixed scheme takes the allowed precision the planner
starts at) and refuses with ``InfeasibleError`` where its method cannot be expressed within them
(HugeCTR's hybrid embedding without replicated rows). ``check_limits`` is the guard behind them:
``auto`` drops any candidate that breaks a limit, and ``recsim.api.make_plan`` refuses such a plan
from any strategy asked for by name, so a proposer that forgets a limit cannot break it silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping

from recsim.cost.embedding.base import parse_tier, tier_model
from recsim.cost.embedding.uvm_caching import DEFAULT_CACHE_RATIO
from recsim.errors import InfeasibleError
from recsim.hardware.system import System
from recsim.planner.config import PlannerConfig, comm_dtypes_for
from recsim.planner.storage import capacity, check_fits, plan_usage
from recsim.planner.types import Plan, Shard
from recsim.units import Dimension, format_quantity
from recsim.workload.spec import Table, Workload

#: Storage precisions, most precise first: the planner lowers a table's precision in this order.
PRECISION_ORDER = ("fp32", "bf16", "fp16", "fp8", "int8", "int4")
#: Tables a message names before it says how many more there are.
SHOWN_TABLES = 3


def limit_scheme(shard: Shard) -> str:
    """The ``planner.sharding_types`` entry ``shard``'s scheme counts as (module docstring)."""
    return "row_wise" if shard.sharding == "distributed" else shard.sharding


def allowed_dtypes(config: PlannerConfig, workload: Workload) -> list[str]:
    """The storage dtypes ``planner.embedding_dtypes`` allows, most precise first. While the user
    has not set it, the workload's own table dtypes are allowed too: a bf16, fp8 or int4 workload
    is planned in its dtype, where the default list (fp32, fp16, int8) had promoted its tables to
    fp32 (a reviewer's find; a dtype sweep's axis then changed nothing)."""
    listed = set(config.embedding_dtypes)
    if "embedding_dtypes" not in config.model_fields_set:
        listed.update(workload.table_dtype(t) for t in workload.tables)
    return [d for d in PRECISION_ORDER if d in listed]


def dtypes_for(
    config: PlannerConfig, workload: Workload, table: Table, allowed: list[str] | None = None
) -> list[str]:
    """Storage dtypes the planner may give ``table``, most precise first: from the table's own
    dtype down where it is allowed (``allowed_dtypes``), else every allowed one (precision is a
    capacity tool: the planner starts as precise as it may and goes lower only to fit).
    ``allowed``: ``allowed_dtypes(config, workload)`` where the caller has it (it reads every
    table's dtype: asked once a table, it is quadratic in the tables)."""
    if allowed is None:
        allowed = allowed_dtypes(config, workload)
    own = workload.table_dtype(table)
    if own in allowed:
        return allowed[allowed.index(own) :]
    return allowed


def start_dtype(config: PlannerConfig, workload: Workload, table: Table) -> str:
    """The dtype a plan that does not search precisions gives ``table``: its own where allowed,
    else the most precise allowed one."""
    return dtypes_for(config, workload, table)[0]


def with_start_dtypes(plan: Plan, config: PlannerConfig, workload: Workload) -> Plan:
    """``plan`` with every shard at its table's ``start_dtype`` (``plan`` itself where nothing
    changes: the default limits keep a workload's fp32/fp16 tables as they are)."""
    allowed = allowed_dtypes(config, workload)
    starts = {t.name: dtypes_for(config, workload, t, allowed)[0] for t in workload.tables}
    shards = tuple(
        s
        if (s.dtype or workload.table_dtype(workload.table(s.table))) == starts[s.table]
        else dataclasses.replace(s, dtype=starts[s.table])
        for s in plan.shards
    )
    return plan if shards == plan.shards else dataclasses.replace(plan, shards=shards)


def _tables(names: list[str]) -> str:
    """``names`` (distinct, in order) as a short list: the first few, then how many more."""
    shown = ", ".join(names[:SHOWN_TABLES])
    more = len(names) - SHOWN_TABLES
    return shown + (f" and {more} more" if more > 0 else "")


def _outside(
    plan: Plan, key: str, allowed: Collection[str], value_of: Callable[[Shard], str | None], verb: str
) -> str | None:
    """One clause naming what ``plan`` uses outside ``allowed`` (``planner.<key>``) and the tables
    that use it, or None. A shard whose ``value_of`` is None is not subject to the limit."""
    found: dict[str, list[str]] = {}
    for shard in plan.shards:
        value = value_of(shard)
        if value is not None and value not in allowed:
            tables = found.setdefault(value, [])
            if shard.table not in tables:
                tables.append(shard.table)
    if not found:
        return None
    values = sorted(found)
    if len(values) == 1:
        tables = _tables(found[values[0]])
    else:
        tables = "; ".join(f"{value}: {_tables(found[value])}" for value in values)
    return (
        f"{verb} {', '.join(values)}, which planner.{key} ({', '.join(allowed)}) leaves out (tables {tables})"
    )


def _cache_ratio(shard: Shard) -> str | None:
    """A ``uvm_caching`` shard's cache ratio as ``Estimator.tiers`` spells the ratios the config
    allows (``f"{r:g}"``), None for a shard of another tier."""
    if shard.tier_name != "uvm_caching":
        return None
    _, raw = parse_tier(shard.tier)
    ratio = tier_model("uvm_caching").resolve_param(raw)
    return f"{ratio if ratio is not None else DEFAULT_CACHE_RATIO:g}"


def limit_violations(
    plan: Plan, workload: Workload, config: PlannerConfig, tiers: Collection[str]
) -> list[str]:
    """What ``plan`` does that the user's limits forbid, one clause per limit (empty: nothing).

    ``tiers``: the tier names the planner may use (``planner.tiers`` with the tiers the estimator
    adds: ``Estimator.tiers``, parameters such as a cache ratio dropped; a ``uvm_caching`` shard's
    ratio is held to ``planner.cache_ratios`` apart)."""

    def dtype(shard: Shard) -> str:
        return shard.dtype or workload.table_dtype(workload.table(shard.table))

    found = [
        _outside(plan, "sharding_types", config.sharding_types, limit_scheme, "shards tables"),
        _outside(plan, "tiers", list(tiers), lambda s: s.tier_name, "places tables in"),
        # The cache ratio a uvm_caching tier takes (its parameter, which ``tiers`` drops).
        _outside(
            plan, "cache_ratios", [f"{r:g}" for r in config.cache_ratios], _cache_ratio, "caches tables at"
        ),
        _outside(plan, "embedding_dtypes", allowed_dtypes(config, workload), dtype, "stores tables in"),
    ]
    wires = comm_dtypes_for(config, workload)
    if plan.comm_dtype not in wires:
        found.append(
            f"sends pooled embeddings in {plan.comm_dtype}, which planner.comm_dtypes "
            f"({', '.join(wires)}) leaves out"
        )
    return [clause for clause in found if clause is not None]


def stored_dtype_note(plan: Plan, workload: Workload) -> str | None:
    """A run's note naming the tables ``plan`` stores in a dtype other than the workload's own,
    or None where it keeps every table's. The planner lowers a table's precision to fit
    (``planner.embedding_dtypes``: fp32, fp16, int8 by default), and a fixed scheme takes the first
    allowed dtype, so a run of an fp32 model may time int8 tables: ``recsim plan`` shows it in its
    bytes by dtype, but ``recsim run`` said nothing of it (a tester's fp32 model of 4.7 TiB "fitted"
    one DGX A100 at int8 with 1.3 TiB of host memory, its note only about calibrations)."""
    own: dict[str, str] = {t.name: workload.table_dtype(t) for t in workload.tables}
    # Per table, the elements stored in each other dtype (a table may be split between dtypes).
    changed: dict[str, dict[str, float]] = {}
    for shard in plan.shards:
        if shard.dtype is None or shard.dtype == own.get(shard.table, shard.dtype):
            continue
        per = changed.setdefault(shard.table, {})
        per[shard.dtype] = per.get(shard.dtype, 0.0) + float(shard.rows) * shard.dim
    if not changed:
        return None
    said = []
    for name, dtypes in list(changed.items())[:SHOWN_TABLES]:
        table = workload.table(name)
        elements = float(table.rows) * workload.table_dim(table)
        parts = [
            dtype if stored >= elements else f"{dtype} ({stored / elements:.0%} of it)"
            for dtype, stored in dtypes.items()
        ]
        said.append(f"{name} ({own[name]}) in {', '.join(parts)}")
    more = len(changed) - SHOWN_TABLES
    tail = f" and {more} more" if more > 0 else ""
    kept = ",".join(d for d in PRECISION_ORDER if d in set(own.values()))
    return (
        f"{len(changed)} of {workload.num_tables} tables stored in another dtype than the workload "
        f"gives: {'; '.join(said)}{tail}. The planner lowers precision to fit (planner.embedding_dtypes); "
        f"--set planner.embedding_dtypes=[{kept}] keeps the workload's"
    )


def _bytes(value: float) -> str:
    return format_quantity(value, Dimension.BYTES, binary=True)


def reserve_note(peaks: Mapping[str, float], system: System, config: PlannerConfig) -> str | None:
    """A run's note where its plan uses more of a rank's HBM or a node's host memory than the
    planner would (``planner.hbm_reserve``, ``ddr_reserve``: TorchRec's reservation, kept for the
    framework's own buffers and fragmentation), or None. ``auto`` and the searches hold their plans
    to the reserves; a fixed scheme or a plan file is a what-if that runs up to the whole capacity,
    and ``recsim plan`` says "fits: ... not within the planner's reserves" where ``recsim run`` had
    said nothing (a tester's table-wise model at 71.5 GiB of an 80 GiB A100 ran "ok"). ``peaks``:
    ``Result.memory_peak_bytes``."""
    cap = capacity(system)
    allowed = cap.less(config.hbm_reserve, config.ddr_reserve)  # the planner's own rule
    said = []
    for key, what, total, limit, reserve, where in (
        ("hbm", "HBM", cap.hbm_bytes_per_rank, allowed.hbm_bytes_per_rank, config.hbm_reserve, "a rank"),
        (
            "ddr",
            "host memory",
            cap.ddr_bytes_per_node,
            allowed.ddr_bytes_per_node,
            config.ddr_reserve,
            "a node",
        ),
    ):
        used = peaks.get(key, 0.0)
        if total > 0 and used > limit:
            said.append(
                f"{what} {_bytes(used)} of {where}'s {_bytes(total)} ({used / total:.0%}), above the "
                f"{1 - reserve:.0%} a plan may use (planner.{key}_reserve {reserve:.0%})"
            )
    if not said:
        return None
    return (
        "memory: "
        + "; ".join(said)
        + ": the reserve is kept for the framework's own buffers and fragmentation, so the plan may not fit"
    )


def check_limits(
    plan: Plan,
    workload: Workload,
    config: PlannerConfig,
    tiers: Collection[str],
    *,
    what: str,
    system: System | None = None,
) -> None:
    """Raise ``InfeasibleError`` (``what: ...``, one line) where ``plan`` breaks a user limit:
    a scheme, tier, storage or wire precision the config leaves out, or, given ``system``, more
    memory than its capacity less the planner's reserves."""
    broken = limit_violations(plan, workload, config, tiers)
    if broken:
        raise InfeasibleError(f"{what}: " + "; ".join(broken))
    if system is not None:
        cap = capacity(system).less(config.hbm_reserve, config.ddr_reserve)
        check_fits(plan_usage(plan, workload, system), cap, what=what)
