"""The DLRM workload spec: embedding tables, dense MLPs, interaction, training and inference settings.

One ``kind: dlrm`` YAML document per model (``workloads/``). Tables are listed one by one or
generated from ``table_groups`` (production models have hundreds) with a seeded draw, so the same
file always yields the same tables. Everything else a simulator needs is computed here, once, from
shapes: parameters, embedding bytes, lookups and bytes gathered per sample, and the dense layers
(``dense_layers()``) whose FLOPs the graph builder and ``flops_per_sample`` share.

FLOP conventions: a multiply-add is 2 FLOP; training = forward + backward, where the backward of a
GEMM is two GEMMs of the same size (gradient of the input and of the weight), so 3x forward for the
dense part; embedding pooling is ``pooling x dim`` adds forward and the same backward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Final, Literal, Self

import numpy as np
from annotated_types import Gt, Le
from pydantic import Field, field_validator, model_validator

from recsim.config.loader import Referable
from recsim.config.types import PositiveInt, Ratio, Spec

Precision = Literal["fp32", "tf32", "fp16", "bf16", "fp8", "int8"]
EmbeddingDtype = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]

DTYPE_BYTES: dict[str, float] = {
    "fp64": 8.0,
    "fp32": 4.0,
    "tf32": 4.0,  # stored as fp32; TF32 is a tensor-core math mode
    "fp16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}

#: Bytes of a sparse id by ``Training.index_dtype``.
INDEX_DTYPE_BYTES: dict[str, float] = {"int32": 4.0, "int64": 8.0}
#: Rows an id of each ``Training.index_dtype`` can address: ids 0 .. 2^31 - 1 in a signed int32 (the
#: MLPerf reference loader's ``np.int32`` ids, ``torch.int32`` in TorchRec's KeyedJaggedTensor).
INDEX_DTYPE_MAX_ROWS: dict[str, int] = {"int32": 2**31, "int64": 2**63}

#: Dtypes that hold values as they are; the others (fp8, int8, int4) are quantised storage, whose
#: sums and gradients are taken in a float dtype.
FLOAT_DTYPES: tuple[str, ...] = ("fp64", "fp32", "tf32", "fp16", "bf16")


#: An int8 wire is FBGEMM's row-wise quantised comm format (fbgemm_gpu/quantize_comm.py, the codec
#: TorchRec's qcomm sends pooled embeddings with): ``_quantize_tensor`` views the flattened tensor as
#: rows of ``ROW_DIM_DEFAULT = 32`` values -- not the embedding dim -- and
#: ``FloatToFused8BitRowwiseQuantized`` writes each row's bytes padded to 4 B then its fp32 scale and
#: bias (``calc_quantized_size``: ``(row_dim + 3) // 4 * 4 + 2 * 4`` = 40 B per 32 values).
QCOMM_INT8_ROW_VALUES = 32
QCOMM_INT8_ROW_BYTES = (QCOMM_INT8_ROW_VALUES + 3) // 4 * 4 + 2 * 4


# The stored format of a quantised table's row: its values, then its scale and bias. The spec owns
# it (as the wire format above) so that a workload's own figures (``Workload.table_row_bytes``)
# and the cost models and planner (``recsim.cost.embedding.base``) read one rule.

QUANT_ROW_OVERHEAD_BYTES: Final[float] = 4.0
"""Per-row scale and bias of int8/int4 rows in FBGEMM's inference TBE,
``IntNBitTableBatchedEmbeddingBagsCodegen``: ``scale_bias_size_in_bytes=4`` (two fp16;
``unpadded_row_size_in_bytes`` in ``split_embeddings_cache_cuda.cu``: int8 ``dim + 4``, int4
``dim / 2 + 4``). fp8 rows carry none (FBGEMM v0.2.0 release notes)."""

INT8_TRAINING_ROW_OVERHEAD_BYTES: Final[float] = 8.0
"""Per-row scale and bias of int8 rows in FBGEMM's training TBE
(``SplitTableBatchedEmbeddingBagsCodegen``, ``weights_precision=INT8``): two fp32 appended to each
row (``fbgemm_cuda_utils.cuh``: "two quantization parameters (qparams) will be stored at the end
of each row in FP32 formats, appending a total of 8 bytes", ``kINT8QparamsBytes = 8``;
``split_table_batched_embeddings_ops_training.py``: ``INT8_EMB_ROW_DIM_OFFSET = 8``). That TBE
stores no int4 rows: recsim prices int4 in the inference layout in either mode."""

QUANTIZED_DTYPES: Final[frozenset[str]] = frozenset({"int8", "int4"})


def quant_row_overhead_bytes(dtype: str, inference: bool = False) -> float:
    """The bytes a row of ``dtype`` carries on top of its ``dim x dtype`` values: the scale and bias
    of a quantised row, in the layout of FBGEMM's training TBE (int8: two fp32) or, with
    ``inference``, of its inference TBE (two fp16); 0 for the other dtypes."""
    if dtype == "int8" and not inference:
        return INT8_TRAINING_ROW_OVERHEAD_BYTES
    return QUANT_ROW_OVERHEAD_BYTES if dtype in QUANTIZED_DTYPES else 0.0


def wire_bytes_per_value(dtype: str) -> float:
    """Bytes a pooled embedding value takes on the wire in ``dtype``: its ``DTYPE_BYTES``, but an
    int8 wire carries each 32-value row's scale and bias (``QCOMM_INT8_ROW_BYTES``: 1.25 B a value).
    An fp8 wire is FBGEMM's default hfp8 (``FloatToHFP8Quantized``, 1 B a value, no scale): its
    row-wise fp8 format runs only where TorchRec's ``QCommsConfig.fp8_quantize_dim`` is set."""
    if dtype == "int8":
        return QCOMM_INT8_ROW_BYTES / QCOMM_INT8_ROW_VALUES
    return DTYPE_BYTES[dtype]


def gradient_dtype(dtype: str) -> str:
    """The dtype a gradient of values stored in ``dtype`` accumulates in: ``dtype`` itself where it
    is a float dtype (DDP's ``.grad``, HugeCTR's ``float_frequent_gradients_`` of its fp32 rows),
    fp32 for quantised storage."""
    return dtype if dtype in FLOAT_DTYPES else "fp32"


# ------------------------------------------------------------------------------ access


#: How a sample's several lookups in one table relate (every access spec's ``multi_hot``):
#: ``independent``: each lookup draws its row from the distribution on its own;
#: ``fixed_rows``: the distribution draws one id per sample, and the sample looks up that id's fixed
#: row of ``pooling`` ids, the id itself and ``pooling - 1`` ids drawn once, uniformly, for the whole
#: run (MLPerf DLRM-DCNv2's synthetic multi-hot Criteo: ``recsim.workload.access.multi_hot``).
MultiHot = Literal["independent", "fixed_rows"]


class UniformAccess(Spec):
    """Every row equally likely."""

    dist: Literal["uniform"]
    multi_hot: MultiHot = "independent"


class ZipfAccess(Spec):
    """Row of popularity rank ``k`` has probability proportional to ``k ** -alpha``."""

    dist: Literal["zipf"]
    alpha: Ratio
    multi_hot: MultiHot = "independent"


class EmpiricalAccess(Spec):
    """Per-batch reuse histogram in the format of dlrm_datasets' ``locality_stats.txt``.

    ``stats``: a shipped name (``2021-locality``, in ``workloads/access/``) or a path relative to the
    workload file; ``section``: which data file of the stats to use (index or file name).
    """

    dist: Literal["empirical"]
    stats: str
    section: int | str = 0
    multi_hot: MultiHot = "independent"


AccessSpec = Annotated[UniformAccess | ZipfAccess | EmpiricalAccess, Field(discriminator="dist")]


class FixedRowsAccess(Spec):
    """A table's access with ``multi_hot: fixed_rows``, resolved with the table's lookups per sample
    (``Workload.table_row_access``; not written in a workload file): ``base`` draws the one-hot ids,
    each expanded to its fixed row of ``hotness`` ids (``recsim.workload.access.multi_hot``)."""

    dist: Literal["fixed_rows"]
    base: UniformAccess | ZipfAccess | EmpiricalAccess
    hotness: PositiveInt


# ------------------------------------------------------------------------------ tables


#: The most rows a table may have: 2^53, the largest count a float holds exactly (the access models
#: and costs work in floats). A larger one had overflowed into a traceback or, drawn in a table
#: group, wrapped to a negative int64 (a tester's finds); real tables have 10^10 or fewer.
MAX_TABLE_ROWS = 2**53
TableRows = Annotated[int, Gt(0), Le(MAX_TABLE_ROWS)]


class Table(Spec):
    """One embedding table. ``pooling`` is the mean number of lookups per sample (multi-hot size)."""

    name: str = Field(min_length=1)
    rows: TableRows
    dim: PositiveInt | None = None
    dtype: EmbeddingDtype | None = None
    pooling: Ratio
    access: AccessSpec | None = None


class EmbeddingDefaults(Spec):
    """Defaults for every table that does not say otherwise."""

    dim: PositiveInt
    dtype: EmbeddingDtype = "fp32"
    access: AccessSpec | None = None


class LogNormal(Spec):
    """A log-normal draw: ``exp(N(log(median), sigma))``, clipped to [min, max], rounded for ints."""

    dist: Literal["lognormal"]
    median: Annotated[float, Gt(0)]
    sigma: Annotated[float, Gt(0)]
    min: Annotated[float, Gt(0)] | None = None
    max: Annotated[float, Gt(0)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        # Half the draws fall beyond the median: past a bound, most tables would get the bound
        # itself, not the spread the distribution describes (a tester's median above max).
        if self.max is not None and self.median > self.max:
            raise ValueError(
                f"median {self.median} > max {self.max}: most draws would be clipped to max; "
                "give a median within [min, max]"
            )
        if self.min is not None and self.median < self.min:
            raise ValueError(
                f"median {self.median} < min {self.min}: most draws would be clipped to min; "
                "give a median within [min, max]"
            )
        return self


class UniformDraw(Spec):
    dist: Literal["uniform"]
    low: Annotated[float, Gt(0)]
    high: Annotated[float, Gt(0)]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        return self


class Choice(Spec):
    dist: Literal["choice"]
    values: list[Annotated[float, Gt(0)]] = Field(min_length=1)
    weights: list[Annotated[float, Gt(0)]] | None = None

    @model_validator(mode="after")
    def _same_length(self) -> Self:
        if self.weights is not None and len(self.weights) != len(self.values):
            raise ValueError(f"{len(self.weights)} weights for {len(self.values)} values")
        return self


Draw = Annotated[LogNormal | UniformDraw | Choice, Field(discriminator="dist")]


def _draw(
    spec: float | int | LogNormal | UniformDraw | Choice, count: int, rng: np.random.Generator
) -> np.ndarray:
    if isinstance(spec, (int, float)):
        return np.full(count, float(spec))
    if isinstance(spec, LogNormal):
        values = rng.lognormal(math.log(spec.median), spec.sigma, count)
        return np.clip(values, spec.min or 0.0, spec.max or np.inf)
    if isinstance(spec, UniformDraw):
        return rng.uniform(spec.low, spec.high, count)
    weights = np.asarray(spec.weights or [1.0] * len(spec.values), dtype=float)
    return rng.choice(np.asarray(spec.values, dtype=float), size=count, p=weights / weights.sum())


class TableGroup(Spec):
    """``count`` tables named ``<name>_<i>`` with rows, dim and pooling drawn from distributions."""

    name: str = Field(min_length=1)
    # recsim makes ops and shards per table: 10^5 tables, 100 times model-a's 1,000 (the largest
    # shipped, Neo's production-scale model), is a bound a user mistake meets at once, where 10^8
    # had run for minutes without a word (a tester's find).
    count: PositiveInt = Field(le=100_000)
    rows: TableRows | Draw
    dim: PositiveInt | Draw | None = None
    dtype: EmbeddingDtype | None = None
    pooling: Ratio | Draw
    access: AccessSpec | None = None
    seed: int = Field(default=0, ge=0)

    def tables(self) -> list[Table]:
        """The generated tables (the same ones for the same spec and seed)."""
        rng = np.random.default_rng(self.seed)
        rows = np.clip(np.rint(_draw(self.rows, self.count, rng)), 1, MAX_TABLE_ROWS).astype(np.int64)
        dims = (
            np.maximum(1, np.rint(_draw(self.dim, self.count, rng))).astype(np.int64)
            if self.dim is not None
            else None
        )
        pooling = _draw(self.pooling, self.count, rng)
        return [
            Table(
                name=f"{self.name}_{i}",
                rows=int(rows[i]),
                dim=int(dims[i]) if dims is not None else None,
                dtype=self.dtype,
                pooling=float(pooling[i]),
                access=self.access,
            )
            for i in range(self.count)
        ]


# ------------------------------------------------------------------------------ dense part


class Interaction(Spec):
    """Feature interaction: ``dot`` (pairwise dot products), ``cat`` (concatenation), ``dcnv2``."""

    type: Literal["dot", "cat", "dcnv2"]
    layers: PositiveInt | None = None
    low_rank: PositiveInt | None = None
    self_interaction: bool = False
    #: Tables that skip the interaction and the top MLP: combined element-wise (NCF's GMF branch),
    #: then concatenated with the top MLP's output in front of ``final_mlp``.
    bypass_tables: list[str] = Field(default_factory=list)
    bypass_op: Literal["product", "sum"] = "product"

    @model_validator(mode="after")
    def _dcn_fields(self) -> Self:
        if self.type == "dcnv2" and (self.layers is None or self.low_rank is None):
            raise ValueError("interaction 'dcnv2' needs 'layers' and 'low_rank'")
        if self.type != "dcnv2" and (self.layers is not None or self.low_rank is not None):
            raise ValueError(f"interaction {self.type!r} takes no 'layers'/'low_rank'")
        # Keys that would change nothing are refused, as 'layers' is above (a tester's
        # {type: cat, self_interaction: true} ran as plain cat without a word).
        if self.self_interaction and self.type != "dot":
            raise ValueError(
                f"interaction {self.type!r} takes no 'self_interaction': it adds each feature's dot "
                "product with itself to a 'dot' interaction's pairs"
            )
        # Not by ``model_fields_set``: a dumped workload carries the default ``product`` and must
        # validate again (``model_dump`` then ``model_validate``, as tests and ``--set`` do).
        if self.bypass_op != "product" and not self.bypass_tables:
            raise ValueError("interaction 'bypass_op' combines the 'bypass_tables', and none are given")
        return self


class TaskHeads(Spec):
    """Multi-task towers on top of the shared top MLP (MT-WnD): ``count`` MLPs of ``layers``."""

    count: PositiveInt
    layers: list[PositiveInt] = Field(min_length=1)


class BehaviourSequence(Spec):
    """A user-behaviour sequence (DIN: attention pooling; DIEN: GRU interest evolution).

    ``table`` names the embedding table the behaviour items are looked up in; ``length`` items per
    sample; ``hidden`` the attention MLP (DIN's local activation unit) or the GRU hidden size.
    """

    table: str
    length: PositiveInt
    model: Literal["attention", "gru"]
    hidden: list[PositiveInt] = Field(min_length=1)


class Training(Spec):
    global_batch_size: PositiveInt
    #: The global batch the framework evaluates with, samples; ``None``: no evaluation reader
    #: counted. HugeCTR builds its evaluation reader with it beside the training one at model
    #: construction and keeps it for the run (``recsim.planner.reader_buffers``); the MLPerf
    #: submissions fix it (``batchsize_eval``, ``BATCHSIZE_EVAL``).
    eval_batch_size: PositiveInt | None = None
    optimizer: Literal["sgd", "adagrad", "adam"] = "sgd"
    #: ``sparse_sgd``: PyTorch's ``EmbeddingBag(sparse=True)`` + ``torch.optim.SGD`` (unfused; NVIDIA
    #: DLE, the reference dlrm_s_pytorch); the others are FBGEMM's fused TBE updates.
    embedding_optimizer: Literal["sgd", "sparse_sgd", "adagrad", "rowwise_adagrad", "adam"] = "sgd"
    precision: Precision = "fp32"
    #: Who issues the step's kernels: ``fused`` (CUDA graphs, fused C++ loops: no host cost) or
    #: ``eager`` (eager PyTorch/TorchRec: measured CPU dispatch per op); see recsim.graph.runtime.
    runtime: str = "fused"
    #: The width of the sparse ids the data loader hands the step: what the input all-to-all sends
    #: and the H2D copy carries (``recsim.graph.build``). ``int64``: TorchRec's KeyedJaggedTensor
    #: as the reference loaders fill it (facebookresearch/dlrm dlrm_data_pytorch.py casts the
    #: categorical features to ``torch.long``); ``int32`` where the dataset stores 4-byte ids.
    index_dtype: Literal["int32", "int64"] = "int64"

    @field_validator("index_dtype", mode="before")
    @classmethod
    def _known_index_dtype(cls, value: object) -> object:
        if value not in INDEX_DTYPE_BYTES:
            raise ValueError(
                f"index_dtype must be int32 or int64 (the width of the sparse ids the loader hands "
                f"the step), got {value!r}"
            )
        return value

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        from recsim.graph.runtime import RUNTIMES  # the registry imports this module

        if value not in RUNTIMES:
            raise ValueError(f"unknown runtime {value!r}; known: {', '.join(sorted(RUNTIMES))}")
        return value


class Inference(Spec):
    batch_size: PositiveInt
    precision: Precision = "fp32"


@dataclass(frozen=True)
class Layer:
    """One dense operation of the forward pass, per sample: a GEMM (``m=1`` row per sample) or not.

    ``in_features``/``out_features`` shape a fully connected layer; ``flops`` and ``params`` are
    per sample and total respectively; ``part`` is bottom, interaction, top, head or sequence;
    ``low_rank`` is a DCNv2 cross layer's projection rank ``r`` (0 for every other op);
    ``features`` the dot interaction's vector count ``f`` (the bottom MLP's output and the pooled
    embeddings, each ``in_features / f`` wide) and ``passthrough`` the width of the vector it
    writes beside its ``out_features`` pairs (the bottom MLP's output, which the top MLP reads
    with them; 0 without one); both 0 for every other op.
    """

    name: str
    part: str
    op: str
    in_features: int
    out_features: int
    flops: float
    params: int
    low_rank: int = 0
    features: int = 0
    passthrough: int = 0


def _mlp(prefix: str, part: str, widths: Sequence[int], inputs: int) -> list[Layer]:
    layers = []
    for i, out in enumerate(widths):
        layers.append(
            Layer(f"{prefix}{i}", part, "linear", inputs, out, 2.0 * inputs * out, inputs * out + out)
        )
        inputs = out
    return layers


class Workload(Referable):
    """A DLRM-family model (``kind: dlrm``)."""

    ref_kind = "dlrm"
    kind: Literal["dlrm"]
    name: str = Field(min_length=1)
    description: str = ""
    dense_features: Annotated[int, Field(ge=0)]
    embedding: EmbeddingDefaults
    tables_: list[Table] = Field(default_factory=list, alias="tables")
    table_groups: list[TableGroup] = Field(default_factory=list)
    bottom_mlp: list[PositiveInt] = Field(default_factory=list)
    interaction: Interaction
    top_mlp: list[PositiveInt] = Field(min_length=1)
    final_mlp: list[PositiveInt] = Field(default_factory=list)
    task_heads: TaskHeads | None = None
    sequence: BehaviourSequence | None = None
    training: Training
    inference: Inference | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # A message led by the key it is about (``interaction: ...``) is reported at that key's
        # line (``recsim.config.validate``), not at the document's "<top level>".
        if not self.tables_ and not self.table_groups:
            raise ValueError("a workload needs 'tables' or 'table_groups'")
        if not self.dense_features and self.bottom_mlp:
            # The bottom MLP's first layer would take no inputs, its bias only (a tester's find);
            # a model without dense features (NCF, DIN) has no bottom MLP.
            raise ValueError(
                "bottom_mlp: a bottom MLP takes the dense features, and dense_features is 0; "
                "give dense_features, or bottom_mlp: [] for a model without dense features"
            )
        if self.dense_features and not self.bottom_mlp and self.interaction.type == "dot":
            raise ValueError("interaction: 'dot' interaction needs a 'bottom_mlp' for the dense features")
        names = [t.name for t in self.tables]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate table names: {', '.join(dup[:5])}")
        if self.interaction.type == "dot":
            dims = {self.table_dim(t) for t in self.tables}
            if self.bottom_mlp:
                dims.add(self.bottom_mlp[-1])
            if len(dims) > 1:
                raise ValueError(
                    f"interaction: 'dot' interaction needs one dim for all features (the tables' and the "
                    f"bottom MLP's output), got {sorted(dims)}"
                )
        for table in self.tables:
            lookups = self.table_lookups(table)
            if self.table_access(table).multi_hot == "fixed_rows" and lookups != round(lookups):
                raise ValueError(
                    f"tables: table {table.name!r}: access multi_hot 'fixed_rows' maps each one-hot id "
                    f"to a fixed row of 'pooling' ids, so the pooling must be a whole number, got {lookups:g}"
                )
        ids = self.training.index_dtype
        tallest = max(self.tables, key=lambda t: t.rows)
        if tallest.rows > INDEX_DTYPE_MAX_ROWS[ids]:
            # An id past the dtype's range cannot name its row: the step would not run, and the
            # input bytes would be half an int64 id's (a tester's 4e9-row table extending
            # dlrm-dcnv2 inherited its int32 ids without a word).
            raise ValueError(
                f"training.index_dtype: {ids} ids address at most {INDEX_DTYPE_MAX_ROWS[ids]:,} rows, and "
                f"table {tallest.name!r} has {tallest.rows:,}; give index_dtype: int64"
            )
        if self.sequence is not None and self.sequence.table not in names:
            raise ValueError(f"sequence.table: {self.sequence.table!r} is not a table")
        bypass = self.interaction.bypass_tables
        unknown = [b for b in bypass if b not in names]
        if unknown:
            raise ValueError(f"interaction.bypass_tables: {unknown[0]!r} is not a table")
        if bypass and len({self.table_dim(self._table(b)) for b in bypass}) > 1:
            raise ValueError("interaction.bypass_tables: must share one dim to combine element-wise")
        if bypass and not self.final_mlp:
            raise ValueError("interaction.bypass_tables: need a 'final_mlp' to join the two branches")
        return self

    # -- tables --------------------------------------------------------------------------------

    @cached_property
    def tables(self) -> list[Table]:
        """Explicit tables, then every generated group's tables."""
        out = list(self.tables_)
        for group in self.table_groups:
            out.extend(group.tables())
        return out

    @cached_property
    def table_index(self) -> dict[str, Table]:
        """Tables by name."""
        return {t.name: t for t in self.tables}

    def table(self, name: str) -> Table:
        """The table called ``name`` (KeyError if there is none)."""
        return self.table_index[name]

    def table_dim(self, table: Table) -> int:
        return table.dim if table.dim is not None else self.embedding.dim

    def table_dtype(self, table: Table) -> str:
        return table.dtype if table.dtype is not None else self.embedding.dtype

    def table_access(self, table: Table) -> UniformAccess | ZipfAccess | EmpiricalAccess:
        access = table.access or self.embedding.access
        return access if access is not None else UniformAccess(dist="uniform")

    def table_row_access(
        self, table: Table
    ) -> UniformAccess | ZipfAccess | EmpiricalAccess | FixedRowsAccess:
        """The access spec the table's access model is made of (``recsim.workload.access``): its
        ``table_access``, with the table's lookups per sample joined to it where its ``multi_hot``
        is ``fixed_rows`` (the model needs the row length; ``_consistent`` checked it is whole)."""
        access = self.table_access(table)
        if access.multi_hot != "fixed_rows":
            return access
        if self.table_lookups(table) == 1:
            # A row of one id is the id: the base's spec, one model shared with independent tables.
            return access.model_copy(update={"multi_hot": "independent"})
        return FixedRowsAccess(
            dist="fixed_rows",
            base=access.model_copy(update={"multi_hot": "independent"}),
            hotness=round(self.table_lookups(table)),
        )

    def table_lookups(self, table: Table) -> float:
        """Lookups per sample in ``table`` (its pooling, or the sequence length for the behaviour table)."""
        if self.sequence is not None and table.name == self.sequence.table:
            return table.pooling * self.sequence.length
        return table.pooling

    @property
    def num_tables(self) -> int:
        return len(self.tables)

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def embedding_parameters(self) -> int:
        return sum(t.rows * self.table_dim(t) for t in self.tables)

    def table_row_bytes(self, table: Table) -> float:
        """Stored bytes of one of ``table``'s rows as a training step holds and gathers it: its
        values, and an int8 or int4 row's scale and bias (``quant_row_overhead_bytes``, FBGEMM's
        training TBE layout, as the planner stores it)."""
        dtype = self.table_dtype(table)
        return self.table_dim(table) * DTYPE_BYTES[dtype] + quant_row_overhead_bytes(dtype)

    @property
    def embedding_bytes(self) -> float:
        """The tables' stored bytes, without optimizer state (``table_row_bytes`` a row)."""
        return sum(t.rows * self.table_row_bytes(t) for t in self.tables)

    @property
    def lookups_per_sample(self) -> float:
        return sum(self.table_lookups(t) for t in self.tables)

    @property
    def bytes_gathered_per_sample(self) -> float:
        """Row bytes the forward lookups read per sample (``table_row_bytes`` a lookup)."""
        return sum(self.table_lookups(t) * self.table_row_bytes(t) for t in self.tables)

    # -- dense layers --------------------------------------------------------------------------

    @cached_property
    def dense_layers(self) -> list[Layer]:
        """Every dense operation of the forward pass, in order, with per-sample FLOPs."""
        layers = _mlp("bottom", "bottom", self.bottom_mlp, self.dense_features) if self.bottom_mlp else []
        # Without a bottom MLP the raw dense features join the concatenation (Wide & Deep).
        bottom_out = self.bottom_mlp[-1] if self.bottom_mlp else self.dense_features
        bypass = set(self.interaction.bypass_tables)
        skip = bypass | ({self.sequence.table} if self.sequence is not None else set())
        pooled = [self.table_dim(t) for t in self.tables if t.name not in skip]
        if self.sequence is not None:
            seq_layers = self._sequence_layers()
            layers += seq_layers
            pooled.append(seq_layers[-1].out_features)
        inter = self.interaction
        if inter.type == "dot":
            f = len(pooled) + (1 if bottom_out else 0)
            d = pooled[0]
            pairs = f * (f + 1) // 2 if inter.self_interaction else f * (f - 1) // 2
            layers.append(
                Layer(
                    "interaction",
                    "interaction",
                    "dot",
                    f * d,
                    pairs,
                    2.0 * f * f * d,
                    0,
                    features=f,
                    passthrough=bottom_out,
                )
            )
            top_in = bottom_out + pairs
        elif inter.type == "cat":
            top_in = bottom_out + sum(pooled)
            layers.append(Layer("interaction", "interaction", "cat", top_in, top_in, 0.0, 0))
        else:
            assert inter.layers is not None and inter.low_rank is not None
            width = bottom_out + sum(pooled)
            r = inter.low_rank
            for i in range(inter.layers):
                # x_{l+1} = x0 * (U (V x_l) + b) + x_l: two low-rank GEMMs and three elementwise ops.
                flops = 2.0 * width * r * 2 + 3.0 * width
                layers.append(
                    Layer(f"cross{i}", "interaction", "dcnv2", width, width, flops, 2 * width * r + width, r)
                )
            top_in = width
        layers += _mlp("top", "top", self.top_mlp, top_in)
        tower_in = self.top_mlp[-1]
        if bypass:
            d = self.table_dim(self._table(next(iter(bypass))))
            k = len(bypass)
            op = f"elementwise_{self.interaction.bypass_op}"
            layers.append(Layer("bypass", "interaction", op, k * d, d, float((k - 1) * d), 0))
            tower_in += d
        if self.final_mlp:
            layers += _mlp("final", "top", self.final_mlp, tower_in)
            tower_in = self.final_mlp[-1]
        if self.task_heads is not None:
            for h in range(self.task_heads.count):
                layers += _mlp(f"head{h}_", "head", self.task_heads.layers, tower_in)
        return layers

    def _table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)

    def _sequence_layers(self) -> list[Layer]:
        seq = self.sequence
        assert seq is not None
        d = self.table_dim(self._table(seq.table))
        n = seq.length
        if seq.model == "attention":
            # DIN local activation unit per behaviour item: MLP on [item, target, item-target,
            # item*target] (4d) -> hidden -> 1, then a weighted sum of the items.
            unit = _mlp("att", "sequence", [*seq.hidden, 1], 4 * d)
            flops = n * (sum(layer.flops for layer in unit) + 3.0 * d) + 2.0 * n * d
            params = sum(layer.params for layer in unit)
            return [Layer("attention", "sequence", "attention", n * d, d, flops, params)]
        # GRU over the sequence: 3 gates, each W x + U h, per step.
        h = seq.hidden[0]
        per_step = 3 * (2.0 * d * h + 2.0 * h * h) + 10.0 * h
        params = 3 * (d * h + h * h + h)
        return [Layer("gru", "sequence", "gru", n * d, h, n * per_step, params)]

    @property
    def dense_parameters(self) -> int:
        return sum(layer.params for layer in self.dense_layers)

    @property
    def parameters(self) -> int:
        return self.embedding_parameters + self.dense_parameters

    @property
    def dense_forward_flops_per_sample(self) -> float:
        return sum(layer.flops for layer in self.dense_layers)

    @property
    def embedding_forward_flops_per_sample(self) -> float:
        """Pooling adds: ``(lookups - 1) x dim`` per table and sample, taken as ``lookups x dim``."""
        return sum(self.table_lookups(t) * self.table_dim(t) for t in self.tables)

    @property
    def forward_flops_per_sample(self) -> float:
        return self.dense_forward_flops_per_sample + self.embedding_forward_flops_per_sample

    @property
    def training_flops_per_sample(self) -> float:
        """Forward + backward: 3x the dense forward, less the input gradient of the first bottom layer
        (the dense features need none), and 2x the pooling adds (scatter of gradients)."""
        bottom = [layer for layer in self.dense_layers if layer.part == "bottom"]
        skipped = bottom[0].flops if bottom and bottom[0].op == "linear" else 0.0
        return (
            3.0 * self.dense_forward_flops_per_sample
            - skipped
            + 2.0 * self.embedding_forward_flops_per_sample
        )

    def summary(self) -> dict[str, object]:
        """Derived figures, SI units, as ``recsim workload show --json`` prints them."""
        return {
            "name": self.name,
            "description": self.description,
            "num_tables": self.num_tables,
            "total_rows": self.total_rows,
            "embedding_parameters": self.embedding_parameters,
            "embedding_bytes": self.embedding_bytes,
            "dense_parameters": self.dense_parameters,
            "parameters": self.parameters,
            "lookups_per_sample": self.lookups_per_sample,
            "bytes_gathered_per_sample": self.bytes_gathered_per_sample,
            "forward_flops_per_sample": self.forward_flops_per_sample,
            "training_flops_per_sample": self.training_flops_per_sample,
            "dense_forward_flops_per_sample": self.dense_forward_flops_per_sample,
            "interaction": self.interaction.type,
            "global_batch_size": self.training.global_batch_size,
            "precision": self.training.precision,
        }
