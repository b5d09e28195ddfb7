"""What every embedding tier model shares: the result type, the tier registry, the tier string and
the per-op quantities (row bytes, unique rows, optimizer state, cache hit rates).

**Result.** ``EmbeddingCost(time_s, bytes_by_resource, details)``. ``bytes_by_resource`` names the
shared resources an engine must charge, with the bytes the op moves over each:

* ``hbm``: the accelerator's DRAM (L2 hits are not HBM traffic; they are in ``details["l2_bytes"]``);
* ``pcie``: the accelerator's host link (UVM reads, cache fills, write-backs);
* ``ddr``: the host's DRAM channels (CPU lookups, UVM rows, page-cache hits and fills);
* ``ssd``: the drives' host interfaces; ``flash``: the NAND channels inside the drives;
* ``nmp_rank``: DRAM reads inside RecNMP DIMMs (rank-local, they do not cross the channel);
  ``nmp_channel``: what RecNMP sends over the DDR channels (instructions, partial sums).

Every result's ``details`` carries ``table_bytes_read`` (useful bytes the op reads, from any level of
the tier, caches included, amplification excluded: the rows of its lookups, forward; the gradient rows
of its lookups and each unique row with its optimizer state, backward) and ``bytes_returned`` (what it
hands back: the pooled vectors of the bags with at least one lookup, forward; the updated rows and
optimizer state, backward), so ``table_bytes_read >= bytes_returned`` is a checkable invariant; amplified
traffic (pages, 64 B requests) is in ``bytes_by_resource``. A result with ``pcie`` bytes that go from
the accelerator to the host (write-backs, indices for the CPUs, gradients) gives them in
``details["pcie_to_host_bytes"]``; the rest go to the accelerator (``recsim.engine.resources`` loads
each direction of the link with its own). A tier whose transfer overlaps other limits (a max()) gives
the time the transfer may take in ``link_window_s`` (the DES engine's pacing of its flows).

**Tiers.** ``Embedding.tier`` names a registered ``TierModel``; adding a tier is one subclass with
``@register_tier``. A tier may take one numeric parameter after a colon, ``"uvm_caching:0.1"`` (the
cached fraction of the rows) or ``"ssd:0.05"`` (the host page cache as a fraction of host memory).
This keeps the parameter inside the one string that already travels from the planner's ``Shard`` to
the graph's ``Embedding`` and through the native JSON format, so no schema changes; a tier without a
parameter uses its documented default (``TierModel.default``).

**Access.** ``access`` describes the rows this op touches (for a row-wise shard, a model of the
shard's rows); without one, lookups are uniform over ``op.rows`` (``UniformModel``). Unique rows are
``op.unique_rows`` when the graph gives them, else ``access.expected_unique(lookups)``.

**Passes.** ``forward`` is the gather-reduce (sum pooling); ``backward`` is the fused backward +
optimizer update of FBGEMM's TBE (the tables are updated inside the backward), or with optimizer
``none`` the gradient accumulation alone (``accumulator_dtype``); ``sort`` is a backward's index
sort run ahead; ``update`` is a replicated table's dense optimizer step over all its rows, after its
gradient all-reduce (``recsim.planner.types.dense_gradient``; HBM only).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Final, TypeVar

from recsim.errors import ConfigError, InfeasibleError
from recsim.graph.ir import Embedding
from recsim.hardware.devices import Accelerator
from recsim.hardware.system import System
from recsim.workload.access import AccessModel, UniformModel
from recsim.workload.access.model import cached_attribute
from recsim.workload.spec import (
    DTYPE_BYTES,
    INT8_TRAINING_ROW_OVERHEAD_BYTES,
    QUANT_ROW_OVERHEAD_BYTES,
    gradient_dtype,
    quant_row_overhead_bytes,
)

__all__ = [
    "DDR",
    "FLASH",
    "HBM",
    "INDEX_BYTES",
    "INFERENCE_GPU_ROW_ALIGNMENT_BYTES",
    "INT8_TRAINING_ROW_OVERHEAD_BYTES",
    "NMP_CHANNEL",
    "NMP_RANK",
    "OFFSET_BYTES",
    "OPTIMIZERS",
    "PCIE",
    "QUANT_ROW_OVERHEAD_BYTES",
    "RESOURCES",
    "SSD",
    "EmbeddingCost",
    "Lookup",
    "TierModel",
    "accumulator_dtype",
    "ceil_to",
    "embedding_cost",
    "managed_state_in_hbm",
    "optimizer_update_flops",
    "pages_touched",
    "parse_tier",
    "quant_row_overhead_bytes",
    "register_tier",
    "registered_tiers",
    "tier_model",
]

# ------------------------------------------------------------------------------ resources

HBM: Final = "hbm"
PCIE: Final = "pcie"
DDR: Final = "ddr"
SSD: Final = "ssd"
FLASH: Final = "flash"
NMP_RANK: Final = "nmp_rank"
NMP_CHANNEL: Final = "nmp_channel"
RESOURCES: Final[tuple[str, ...]] = (HBM, PCIE, DDR, SSD, FLASH, NMP_RANK, NMP_CHANNEL)

# ------------------------------------------------------------------------------ formats

INDEX_BYTES: Final[float] = 8.0
"""Bytes per index: int64, as in the A100 trace's TBE calls (``Input type`` long) and TorchRec's KJT."""

OFFSET_BYTES: Final[float] = 8.0
"""Bytes per bag offset (int64 in the same trace: ``offsets`` of ``T x B + 1`` longs)."""

INFERENCE_GPU_ROW_ALIGNMENT_BYTES: Final[float] = 16.0
"""FBGEMM's inference TBE (``IntNBitTableBatchedEmbeddingBagsCodegen``) stores each row padded to
``row_alignment`` bytes, ``1 if self.use_cpu else 16`` by default
(``nbit::padded_row_size_in_bytes``: the unpadded row rounded up, so its kernels and its UVM cache's
``lru_cache_insert_byte_kernel`` move rows as whole ``uint4``s): an int8 row of dim 128 is
128 + 4 = 132 B unpadded and 144 B stored on a GPU. The training TBE pads nothing."""

OPTIMIZERS: Final[tuple[str, ...]] = ("none", "sgd", "sparse_sgd", "rowwise_adagrad", "adagrad", "adam")


def optimizer_update_flops(optimizer: str, dim: int) -> float:
    """FP32 operations of one row's optimizer step, its gradient already accumulated (each add,
    multiply, divide or square root one operation, a fused multiply-add two, as the CPUs' peaks
    count them; per-step scalars such as Adam's bias corrections are left out). Counted from
    FBGEMM's update formulas (``fbgemm_gpu/codegen/genscript/optimizers.py``, the
    ``split_weight_update_cpu`` of its CPU TBE, weight decay off), D = ``dim``:

    * ``sgd`` (and PyTorch's ``sparse_sgd``, the same step): ``w -= lr * g``, 2 D;
    * ``rowwise_adagrad``: ``sum += g * g`` (2 D), ``/ D``, ``momentum + ...``, ``sqrt``, ``+ eps``,
      ``lr / ...`` (5 per row), then ``w = correction * w - g * multiplier`` (3 D): 5 D + 5;
    * ``adagrad``: ``m += g * g`` (2 D), ``w -= lr * g / (sqrt(m) + eps)`` (5 D): 7 D;
    * ``adam`` (FBGEMM has no CPU kernel for it; its GPU ``split_weight_update``): ``m = beta1 m +
      (1 - beta1) g`` (3 D), ``v = beta2 v + (1 - beta2) g^2`` (4 D), ``w -= lr * (m / bc1 /
      (sqrt(v / bc2) + eps) + wd * w)`` (9 D): 16 D;
    * ``none``: no step, 0.

    The GPU tiers do not count these: FBGEMM's fused backward is bound by its row and state bytes
    (``gpu.update_stage``), which the host tiers count as well."""
    per_element = {
        "none": 0.0,
        "sgd": 2.0,
        "sparse_sgd": 2.0,
        "rowwise_adagrad": 5.0,
        "adagrad": 7.0,
        "adam": 16.0,
    }
    per_row = {"rowwise_adagrad": 5.0}
    if optimizer not in per_element:
        raise ConfigError(f"unknown embedding optimizer {optimizer!r} (known: {', '.join(OPTIMIZERS)})")
    return per_element[optimizer] * dim + per_row.get(optimizer, 0.0)


def optimizer_state_bytes(optimizer: str, dim: int) -> float:
    """Optimizer state per row, in bytes. FBGEMM keeps it in fp32 whatever the table's dtype
    (``momentum1``/``momentum2`` are ``torch.float32`` in ``SplitTableBatchedEmbeddingBagsCodegen``):
    SGD none, row-wise Adagrad one fp32 per row, Adagrad one fp32 per element, Adam two.
    ``sparse_sgd`` (PyTorch's unfused sparse-gradient SGD) keeps none either."""
    states = {
        "none": 0.0,
        "sgd": 0.0,
        "sparse_sgd": 0.0,
        "rowwise_adagrad": 4.0,
        "adagrad": 4.0 * dim,
        "adam": 8.0 * dim,
    }
    if optimizer not in states:
        raise ConfigError(f"unknown embedding optimizer {optimizer!r} (known: {', '.join(OPTIMIZERS)})")
    return states[optimizer]


def managed_state_in_hbm(optimizer: str) -> bool:
    """Whether FBGEMM keeps ``optimizer``'s state in HBM for a table whose weights are in managed
    memory (``uvm``: ``EmbeddingLocation.MANAGED``; ``uvm_caching``: ``MANAGED_CACHING``).

    FBGEMM places each optimizer state with ``construct_split_state(embedding_specs, rowwise,
    cacheable, ...)`` (pytorch/FBGEMM fbgemm_gpu/fbgemm_gpu/
    split_table_batched_embeddings_ops_training.py, commits 0009e242 and e1a56109)::

        # If table is on device, then opimtizer is on device.
        # If table is managed, then if optimizer state is rowwise, optimizer is on device,
        # otherwise optimizer is managed.        [one comment line in FBGEMM, wrapped here]
        elif location == EmbeddingLocation.DEVICE or rowwise:
            placements.append(EmbeddingLocation.DEVICE)

    A row-wise state (one value per row: row-wise Adagrad's ``momentum1``, built with
    ``rowwise=True``) is therefore a device tensor whatever the weights' location; an
    element-wise state (Adagrad's ``momentum1``, Adam's two moments) follows the weights into
    managed memory (the ``else`` branch). Optimizers without state answer False (nothing to place).

    FBGEMM's ``uvm_non_rowwise_momentum`` flag (default False; read in the same file of pytorch/
    FBGEMM's later TBE, which passes ``placement=EmbeddingLocation.MANAGED if ((not rowwise) and
    uvm_non_rowwise_momentum) else None`` to ``construct_split_state`` for ``momentum1`` and
    ``momentum2``) changes none of this at its default: with ``placement=None`` each state takes its
    table's location as above. Set, it would move an element-wise state of a *device* table into
    managed memory too; recsim models the default. The non-rowwise state of a ``MANAGED_CACHING``
    table is built with ``cacheable=False``, so it is plain managed memory, not cached: the
    ``uvm_caching`` backward moves it over PCIe even when the row hits."""
    return optimizer == "rowwise_adagrad"


#: Float dtypes a gradient accumulates in as it is (PyTorch's ``.grad`` takes its parameter's
#: dtype; HugeCTR accumulates its fp32 frequent rows in fp32); other tables accumulate in fp32.
def accumulator_dtype(table_dtype: str) -> str:
    """The dtype a table's dense gradient accumulates in (``recsim.workload.spec.gradient_dtype``:
    the table's own float dtype, fp32 for quantised ones)."""
    return gradient_dtype(table_dtype)


def pages_touched(rows_read: float, row_bytes: float, table_rows: float, page_bytes: float) -> float:
    """Distinct pages of ``page_bytes`` that ``rows_read`` distinct rows of a table fall on.

    A row larger than a page takes ``ceil(row / page)`` pages of its own. Smaller rows share pages,
    ``k = floor(page / row)`` to a page: with row ids spread over the table (the access models permute
    hot rows over the id space), a page escapes ``n`` distinct rows of ``R`` with probability
    ``(1 - n / R)^k``, so ``R / k x (1 - (1 - n / R)^k)`` pages are read (exact for ``k = 1`` and
    ``n = R``).
    """
    if rows_read <= 0:
        return 0.0
    if row_bytes > page_bytes or table_rows <= 1:
        return rows_read * max(1, math.ceil(row_bytes / page_bytes - 1e-12))
    per_page = max(1, math.floor(page_bytes / row_bytes + 1e-12))
    pages = table_rows / per_page
    if rows_read >= table_rows:
        return pages
    return min(rows_read, pages * -math.expm1(per_page * math.log1p(-rows_read / table_rows)))


def any_miss_chance(hit_rate: float, lookups: float) -> float:
    """The chance that a batch of ``lookups`` lookups misses its cache at least once, each served by
    it with probability ``hit_rate`` independently (the independent-reference model Che's hit rate
    rests on): ``1 - hit_rate ** lookups``. One lookup of a row the cache lacks reads for sure; a
    Poisson chance of the expected reads, ``1 - exp(-reads)``, gave it 63 % of a read (a tester's
    find: one uncached SSD lookup waited 53.7 of the drive's 85 us)."""
    if lookups <= 0 or hit_rate >= 1.0:
        return 0.0
    if hit_rate <= 0.0:
        return 1.0
    return -math.expm1(lookups * math.log1p(-(1.0 - hit_rate)))


def ceil_to(value: float, granule: float) -> float:
    """``value`` rounded up to a whole number of ``granule``s (0 stays 0)."""
    if value <= 0:
        return 0.0
    return math.ceil(value / granule - 1e-12) * granule


# ------------------------------------------------------------------------------ result


@dataclass(frozen=True, slots=True)
class EmbeddingCost:
    """Time of one ``Embedding`` op on one tier, the bytes it moves per shared resource, and how."""

    time_s: float
    bytes_by_resource: dict[str, float]
    details: dict[str, float | str] = field(default_factory=dict)
    # How long the op's ``pcie`` bytes may take on the link without lengthening the op: where the
    # tier composes the transfer with other limits in a max() (``uvm``: PCIe, host DDR and HBM
    # pipelined), that max term less the fixed overheads inside it; None where the transfer is in
    # series with the rest (``uvm_caching``'s fill, a CPU tier's results), its own time being its
    # window. The DES engine paces the op's flows to it and delays the op only past it.
    link_window_s: float | None = None

    def bytes_on(self, resource: str) -> float:
        return self.bytes_by_resource.get(resource, 0.0)


# ------------------------------------------------------------------------------ the op


@dataclass(frozen=True)
class Lookup:
    """An ``Embedding`` op with what every tier derives from it, computed once."""

    op: Embedding
    system: System
    access: AccessModel
    param: float | None
    include_launch: bool = True

    @cached_attribute
    def lookups(self) -> float:
        # Kept (``cached_attribute``): a pass's cost asks for it a dozen times.
        return max(0.0, float(self.op.lookups))

    def launch_s(self, kernels: int) -> float:
        """The GPU-side launch gaps in front of ``kernels`` queued kernels (``recsim.cost.launch``);
        0 when the caller leaves launches out. The TBE calibration times kernels alone, without them."""
        return kernels * self.accelerator().kernel_launch_s if self.include_launch else 0.0

    @property
    def batch(self) -> float:
        return max(0.0, float(self.op.batch))

    @property
    def bags(self) -> float:
        """(sample, table) bags the pass pools into (``Embedding.bags``; one table: ``batch``)."""
        bags = self.op.bags
        return self.batch if bags is None else max(0.0, float(bags))

    @cached_attribute
    def row_bytes(self) -> float:
        """Stored bytes of one row (int8/int4 rows carry a scale and bias, of the training TBE's
        layout or, for an ``inference`` op, the inference TBE's: ``quant_row_overhead_bytes``); an
        ``inference`` op of a tier looked up by FBGEMM's GPU TBE (``TierModel.gpu_tbe``) has its
        rows padded to ``INFERENCE_GPU_ROW_ALIGNMENT_BYTES``, as that TBE stores them."""
        if self.op.dtype not in DTYPE_BYTES:
            raise ConfigError(f"unknown embedding dtype {self.op.dtype!r}")
        extra = quant_row_overhead_bytes(self.op.dtype, self.op.inference)
        row = self.op.dim * DTYPE_BYTES[self.op.dtype] + extra
        if self.op.inference and tier_model(self.op.tier).gpu_tbe:
            return ceil_to(row, INFERENCE_GPU_ROW_ALIGNMENT_BYTES)
        return row

    @cached_attribute
    def pooled_bytes(self) -> float:
        """One pooled output vector (or its gradient): at the op's ``output_dtype`` where the
        framework writes it narrow, else at the table's dtype (a PyTorch runtime casts it for the
        wire in a kernel of its own, ``recsim.graph.runtime``)."""
        dtype = self.op.output_dtype or self.op.dtype
        if dtype not in DTYPE_BYTES:
            raise ConfigError(f"unknown embedding output dtype {dtype!r}")
        return self.op.dim * DTYPE_BYTES[dtype]

    @cached_attribute
    def unique_rows(self) -> float:
        """Distinct rows among the lookups: the graph's figure, else the access model's."""
        if self.op.unique_rows is not None:
            unique = float(self.op.unique_rows)
        else:
            unique = self.access.expected_unique(self.lookups)
        return max(0.0, min(unique, self.lookups, float(self.op.rows)))

    @cached_attribute
    def state_bytes(self) -> float:
        return optimizer_state_bytes(self.op.optimizer, self.op.dim)

    @property
    def update_read_bytes(self) -> float:
        """Bytes read per unique row by the fused update: the row and its state (none: nothing)."""
        return 0.0 if self.op.optimizer == "none" else self.row_bytes + self.state_bytes

    @property
    def update_write_bytes(self) -> float:
        """Bytes written per unique row: the row and its state (none: the row's gradient, in the
        accumulator's dtype)."""
        if self.op.optimizer == "none":
            return self.accumulator_row_bytes
        return self.row_bytes + self.state_bytes

    @property
    def accumulator_row_bytes(self) -> float:
        """One row of the dense gradient accumulator (``accumulator_dtype``)."""
        return self.op.dim * DTYPE_BYTES[accumulator_dtype(self.op.dtype)]

    @property
    def bags_returned(self) -> float:
        """Bags with at least one lookup: at most ``bags``, at most ``lookups``."""
        return min(self.bags, self.lookups)

    def hit_rate(self, cache_rows: float) -> float:
        """LRU hit rate (Che's approximation, ``AccessModel.lru_hit_rate``) of a cache of rows."""
        if cache_rows <= 0 or self.lookups <= 0:
            return 0.0
        return min(1.0, max(0.0, self.access.lru_hit_rate(cache_rows)))

    def missed_unique_rows(self, cache_rows: float) -> float:
        """Distinct rows of the batch an LRU cache of ``cache_rows`` rows lacks, each fetched once
        however often the batch reads it: the batch's distinct rows times their missed share
        (``AccessModel.missed_unique_share``), at most the missed lookups."""
        share = self.access.missed_unique_share(self.lookups, cache_rows)
        return min(self.unique_rows * share, self.lookups * (1.0 - self.hit_rate(cache_rows)))

    def accelerator(self) -> Accelerator:
        acc = self.system.accelerator
        if acc is None:
            raise InfeasibleError(
                f"tier {self.op.tier!r} needs an accelerator; system {self.system.name!r} has none"
            )
        return acc

    def base_details(self) -> dict[str, float | str]:
        return {
            "tier": self.op.tier,
            "pass": self.op.pass_,
            "row_bytes": self.row_bytes,
            "unique_rows": self.unique_rows,
        }

    def forward_accounting(self) -> dict[str, float]:
        """``table_bytes_read`` and ``bytes_returned`` of a forward gather-reduce."""
        return {
            "table_bytes_read": self.lookups * self.row_bytes,
            "bytes_returned": self.bags_returned * self.pooled_bytes,
        }

    def backward_accounting(self) -> dict[str, float]:
        """``table_bytes_read`` (the gradient rows of every lookup, then each unique row and its state)
        and ``bytes_returned`` (each unique row and its state, written back) of a fused backward."""
        return {
            "table_bytes_read": self.lookups * self.row_bytes + self.unique_rows * self.update_read_bytes,
            "bytes_returned": self.unique_rows * self.update_write_bytes,
        }


# ------------------------------------------------------------------------------ tiers


class TierModel(ABC):
    """The cost of an ``Embedding`` op whose rows live on one memory tier.

    Subclasses set ``name`` (the tier string), ``parameter`` (what ``"<name>:<x>"`` means, or None
    if the tier takes none) with ``default`` and the accepted range, and implement ``forward`` and
    ``backward``.
    """

    name: ClassVar[str]
    # Whether the tier's lookups run in FBGEMM's GPU TBE (``hbm``, ``uvm``, ``uvm_caching``), whose
    # inference layout pads rows (``INFERENCE_GPU_ROW_ALIGNMENT_BYTES``); the host tiers' are not.
    gpu_tbe: ClassVar[bool] = False
    parameter: ClassVar[str | None] = None
    default: ClassVar[float | None] = None
    param_min: ClassVar[float] = 0.0
    param_max: ClassVar[float] = 1.0

    def unavailable(self, system: System, training: bool) -> str | None:
        """Why a table on this tier cannot be costed on ``system`` (``training``: with a backward
        and an update), or None. The cost methods raise the same reasons; a plan file is checked
        with this before anything runs, so its error names the shard."""
        return None

    def resolve_param(self, value: float | None) -> float | None:
        """The tier's parameter: ``value`` checked against the range, or the default."""
        if self.parameter is None:
            if value is not None:
                raise ConfigError(f"tier {self.name!r} takes no parameter, got {value!r}")
            return None
        if value is None:
            return self.default
        if not (self.param_min <= value <= self.param_max):
            raise ConfigError(
                f"tier {self.name!r}: {self.parameter} must be in "
                f"[{self.param_min}, {self.param_max}], got {value}"
            )
        return value

    def cost(self, lookup: Lookup) -> EmbeddingCost:
        """The op's cost by pass; resources it does not touch are left out of ``bytes_by_resource``."""
        passes = {
            "forward": self.forward,
            "backward": self.backward,
            "sort": self.sort,
            "update": self.update,
        }
        run = passes.get(lookup.op.pass_)
        if run is None:
            raise ConfigError(
                f"embedding pass {lookup.op.pass_!r}: recsim costs 'forward', 'backward' (with the fused "
                "optimizer update, as FBGEMM's TBE does), 'sort' (a backward's indices, sorted ahead) "
                "and 'update' (a replicated table's dense optimizer step)"
            )
        cost = run(lookup)
        moved = {k: v for k, v in cost.bytes_by_resource.items() if v > 0}
        return EmbeddingCost(cost.time_s, moved, cost.details, cost.link_window_s)

    @abstractmethod
    def forward(self, lookup: Lookup) -> EmbeddingCost:
        """Gather the rows of ``lookup.lookups`` indices and sum-pool them into ``lookup.bags`` bags."""

    @abstractmethod
    def backward(self, lookup: Lookup) -> EmbeddingCost:
        """Sort/deduplicate the indices, accumulate gradients per unique row and update rows + state."""

    def sort(self, lookup: Lookup) -> EmbeddingCost:
        """The backward's index sort/dedup run ahead of it (``Embedding.presorted``); only tiers
        whose lookups run on the accelerator have one."""
        raise ConfigError(f"tier {self.name!r} has no separate index sort (only 'hbm' does)")

    def update(self, lookup: Lookup) -> EmbeddingCost:
        """A replicated table's dense optimizer step over all its rows (``ShardOps.op``); recsim
        keeps replicated tables in HBM, as TorchRec's data-parallel sharding does."""
        raise ConfigError(
            f"tier {self.name!r}: a replicated (data_parallel) table's dense update runs in HBM only; "
            "place replicated shards on tier 'hbm'"
        )


T = TypeVar("T", bound=type[TierModel])

_TIERS: dict[str, TierModel] = {}


def register_tier(cls: T) -> T:
    """Class decorator: make ``cls`` the model of ``Embedding.tier == cls.name``."""
    name = cls.name
    if name in _TIERS and type(_TIERS[name]) is not cls:
        raise ValueError(f"embedding tier {name!r} is already registered to {type(_TIERS[name]).__name__}")
    _TIERS[name] = cls()
    return cls


def registered_tiers() -> list[str]:
    """Every tier name that has a model, sorted."""
    return sorted(_TIERS)


def parse_tier(tier: str) -> tuple[str, float | None]:
    """``"uvm_caching:0.1"`` -> ``("uvm_caching", 0.1)``; ``"hbm"`` -> ``("hbm", None)``."""
    name, sep, raw = tier.partition(":")
    name = name.strip()
    if not sep:
        return name, None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"tier {tier!r}: the part after ':' must be a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"tier {tier!r}: the parameter must be finite")
    return name, value


def tier_model(tier: str) -> TierModel:
    """The registered model of a tier string (its parameter, if any, is ignored here)."""
    name, _ = parse_tier(tier)
    model = _TIERS.get(name)
    if model is None:
        raise ConfigError(
            f"embedding tier {name!r} has no cost model (known: {', '.join(registered_tiers())})"
        )
    return model


def embedding_cost(
    op: Embedding,
    system: System,
    access: AccessModel | None = None,
    *,
    include_launch: bool = True,
) -> EmbeddingCost:
    """Time and traffic of ``op`` on ``system``, its rows on ``op.tier``.

    ``access`` is the access model of the rows the op touches (None: uniform over ``op.rows``).
    ``include_launch`` adds the GPU-side launch gap (``accelerator.kernel_launch``,
    ``recsim.cost.launch``) in front of every kernel of a GPU tier's pass, as
    ``recsim.cost.compute.compute_time_s`` does for compute ops.
    """
    name, raw = parse_tier(op.tier)
    model = tier_model(name)
    param = model.resolve_param(raw)
    model_access = access if access is not None else UniformModel(max(1, int(op.rows)))
    try:
        return model.cost(Lookup(op, system, model_access, param, include_launch))
    except InfeasibleError as exc:
        # Name the table: the tier's reason alone does not say which shard of the plan asks it.
        raise InfeasibleError(f"table {op.table!r} ({op.pass_} pass): {exc}") from None
