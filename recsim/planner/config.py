"""What the planner may choose: sharding schemes, tiers, precisions, reserves, search effort.

These are limits, not hints: every strategy keeps to them or refuses (``recsim.planner.limits``).
``PlannerConfig`` is a strict schema like every other config: ``--set planner.tiers=[hbm,uvm]`` on the
command line (or ``overrides=["planner.tiers=[hbm,uvm]"]`` in the API) edits it, and a misspelt key or
a bad value is a one-line error naming ``planner.<key>``. The defaults and where they come from:

- ``sharding_types``: all of TorchRec's (``data_parallel``, ``table_wise``, ``column_wise``,
  ``table_column_wise``, ``row_wise``, ``table_row_wise``, ``grid``);
- ``tiers``: every tier recsim models except ``nmp`` and ``smartssd``, which need that hardware
  (the estimator adds them when the system has NMP DIMMs or an SSD with an NDP engine, unless
  ``auto_tiers`` is false or ``tiers`` is given: a list given is the limit, name them in it);
- ``embedding_dtypes``: the storage precisions a table may take. The planner starts at the
  workload's dtype (or, if that is not listed, the most precise listed one) and goes lower only
  when the higher one does not fit: precision is a capacity tool, not a speed knob, since it
  changes the model. Default fp32, fp16 and int8 (int8 rows: FBGEMM's row-wise quantised TBE; the
  "mixed-precision embedding cache" paper trains int8 tables); int4 only if listed;
- ``comm_dtypes``: wire precisions for pooled embeddings, the first is the plan's; ``auto`` (the
  default) is the framework's own (``recsim.graph.runtime``: the dense half precision under mixed
  precision for the fused and cuda_graphs runtimes, fp32 otherwise); anything lower is a quality
  trade the user opts into by listing it first;
- ``hbm_reserve`` 0.15 and ``ddr_reserve`` 0.15: TorchRec's ``HeuristicalStorageReservation``
  default ``percentage=0.15`` of each device kept free for the framework and fragmentation;
- ``cache_ratios`` 0.05 and 0.2: the mixed-precision embedding cache paper's FP32 cache of 5 % of
  the rows, and FBGEMM's default ``cache_load_factor`` 0.2; ``hot_fractions``: the shares of a
  table's rows tried as its hot set (RecShard / FlexShard), from 0.01 % to 10 % (a decade apart;
  0.01 % of a 40M-row table is 4,000 rows, whose replicated gradient all-reduce is 2 MB);
- ``finalists`` 3: plans re-scored by the analytic engine in ``auto`` (and the best of them again by
  DES for a DES run); below ``simulate_all_below`` (ranks x tables, 4096) every distinct plan is
  simulated by the analytic engine, so ``auto`` is then never slower than any single strategy by it
  (a design choice: a small model's analytic runs cost milliseconds); above it, past the finalists,
  every plan whose estimate could still beat the best simulated one at the estimator's smallest
  error seen is simulated too (``recsim.planner.proposers.auto``);
- ``hier_dp_threshold_bytes`` 12.5 MB: ``hier_auto`` replicates tables whose weights and optimizer
  state are smaller (HugeCTR's ``--dp_sharding_threshold`` 0.0125 GB, as NVIDIA's MLPerf Training
  v4.0 multi-node DLRM-DCNv2 configs set it);
- ``gpu_dp_threshold_bytes`` 8 MB: the same for ``hugectr_auto`` (0.008 GB in NVIDIA's v4.0
  single-node DGX H100 and HGX H200 configs, ``config_DGXH200_1x8x6912.sh``);
- ``hugectr_mem_comm_bw_ratio`` (none): HugeCTR's ``--mem_comm_bw_ratio`` for ``hier_auto`` and
  ``hugectr_auto``; unset, recsim derives it from the system as NVIDIA's configs do (HBM bandwidth
  over the per-GPU bandwidth the pooled vectors leave by: 67 for hier_auto on DGX H100, 7 and 11
  for one DGX H100 and HGX H200). Set it to replay a run configured otherwise.
- ``row_split_exchange`` (none): stamps the plan's ``row_split_exchange`` (``node``: row splits over
  several nodes reduced inside each node; ``flat``: over all their ranks); unset, each proposer's
  own (``hier_auto``: ``node``) or the framework's default. Set ``node`` to replay a HugeCTR run from
  before MLPerf v5.0, whose train.py reduced per node on every multi-node run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from recsim.config.loader import Override, apply_overrides
from recsim.config.tree import Tree
from recsim.config.types import Spec
from recsim.config.validate import validate_tree
from recsim.planner.types import EMBEDDING_DTYPES, TABLE_SCHEMES, Plan
from recsim.workload.spec import Workload

Sharding = Literal[
    "data_parallel", "table_wise", "column_wise", "table_column_wise", "row_wise", "table_row_wise", "grid"
]
TierName = Literal["hbm", "uvm", "uvm_caching", "ddr", "ssd", "nmp", "smartssd"]
Dtype = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]
CommDtype = Literal["auto", "fp32", "fp16", "bf16", "fp8", "int8"]

assert set(Sharding.__args__) == set(TABLE_SCHEMES)  # type: ignore[attr-defined]
assert set(Dtype.__args__) == set(EMBEDDING_DTYPES)  # type: ignore[attr-defined]


Fraction = Annotated[float, Field(gt=0.0, le=1.0)]


class PlannerConfig(Spec):
    """The planner's search space and budgets (see the module docstring for the defaults' sources)."""

    sharding_types: list[Sharding] = Field(default_factory=lambda: list(TABLE_SCHEMES), min_length=1)
    tiers: list[TierName] = Field(
        default_factory=lambda: ["hbm", "uvm_caching", "uvm", "ddr", "ssd"], min_length=1
    )
    embedding_dtypes: list[Dtype] = Field(default_factory=lambda: ["fp32", "fp16", "int8"], min_length=1)
    comm_dtypes: list[CommDtype] = Field(default_factory=lambda: ["auto"], min_length=1)
    auto_tiers: bool = True
    hbm_reserve: float = Field(default=0.15, ge=0.0, lt=1.0)
    ddr_reserve: float = Field(default=0.15, ge=0.0, lt=1.0)
    cache_ratios: list[Fraction] = Field(default_factory=lambda: [0.05, 0.2])
    hot_fractions: list[Fraction] = Field(default_factory=lambda: [0.0001, 0.001, 0.01, 0.1])
    finalists: int = Field(default=3, ge=1, le=32)
    simulate_all_below: int = Field(default=4096, ge=0)
    exhaustive_limit: int = Field(default=4096, ge=1)
    hier_dp_threshold_bytes: float = Field(default=12.5e6, ge=0.0)
    gpu_dp_threshold_bytes: float = Field(default=8e6, ge=0.0)
    hugectr_mem_comm_bw_ratio: float | None = Field(default=None, gt=0.0)
    row_split_exchange: Literal["node", "flat"] | None = None


class _Document(Spec):
    planner: PlannerConfig = Field(default_factory=PlannerConfig)


def planner_config(overrides: Sequence[str | Override] = ()) -> PlannerConfig:
    """The default config with ``--set planner.<key>=<value>`` overrides applied (the ``planner.``
    prefix is optional here), validated: errors name ``planner.<key>``."""
    parsed = [
        o if isinstance(o, Override) else Override.parse(o if o.startswith("planner.") else f"planner.{o}")
        for o in overrides
    ]
    tree = apply_overrides(Tree({"planner": {}}), parsed)
    return validate_tree(_Document, tree).planner


def comm_dtypes_for(config: PlannerConfig, workload: Workload) -> list[str]:
    """``config.comm_dtypes`` with ``auto`` resolved for ``workload`` (duplicates dropped, order kept)."""
    from recsim.graph.runtime import default_wire_dtype

    resolved = [default_wire_dtype(workload) if d == "auto" else d for d in config.comm_dtypes]
    return list(dict.fromkeys(resolved))


def stamp_exchange(config: PlannerConfig, plan: Plan) -> Plan:
    """``plan`` with ``config``'s ``row_split_exchange`` where one is configured (else ``plan``)."""
    if config.row_split_exchange is None:
        return plan
    return dataclasses.replace(plan, row_split_exchange=config.row_split_exchange)
