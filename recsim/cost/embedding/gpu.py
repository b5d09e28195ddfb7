"""The GPU side of embedding lookups: FBGEMM TBE kernels as bytes over L2 and HBM at a calibrated
gather efficiency. Used by the ``hbm``, ``uvm`` and ``uvm_caching`` tiers and by the fit.

**Forward** (``split_embedding_codegen_forward_*_kernel``, one kernel)::

    t = overhead + (hbm_bytes / hbm_bw + l2_bytes / l2_bw) / eff(row)
    eff(row) = max_efficiency x row / (row + row_bytes_half)                  (GatherCalibration)

``lookups x row`` bytes of rows are read; the share ``h`` that hits in L2 (``h`` = LRU hit rate of
an L2 of ``l2_bytes / row`` rows, from the access model: hot rows of a skewed table and whole small
tables stay in L2) is served at the L2 bandwidth, the rest from HBM. HBM also carries the indices
(int64), one offset and one pooled vector per bag (``bags x dim``: ``B x T`` bags for ``T`` tables
of batch ``B``, as FBGEMM pools them; fewer for a part that pools only the bags it serves,
``Embedding.bags``; the vector in ``Embedding.output_dtype`` where the framework writes it narrow).
One efficiency covers both levels: a gather kernel is limited by the row requests it keeps in
flight, and the fit (``recsim.cost.embedding.calibration``) cannot tell the two levels apart
because every table of the calibration trace is L2-resident. The whole ``l2_bytes`` counts as
cache: A100's L2 is two partitions that may each keep a copy of data all SMs read (A100
whitepaper), but taking half of it as usable fits the trace worse (held-out median error 0.22
against 0.12), so recsim does not.
ASSUMPTION, untested by the trace: if gathers from HBM are latency-bound like those from L2, their
speed follows the levels' latency ratio (~2x: 200 vs 400 cycles, PMC10448217 Table 3) rather than
their bandwidth ratio (4.6x on A100), and this form overstates HBM-resident gather time by up to
~2.3x. Across GPUs it is the other way: measured pointer-chase latencies (markdewing/AI_kernels,
latency/README.md: L2 / DRAM 210 / 550 cycles on A100 SXM, 291 / 700 on H100 SXM, 281 / 690 on
GH200) put DRAM at ~390 ns on A100 and ~350 ns on H100 and GH200, so a faster HBM comes at the same
latency, and a gather bound by the bytes it keeps in flight would gain less from H200's HBM3e than
this form credits it (MLPerf DLRM-DCNv2 on one node: H200 / H100 measured 1.08-1.11; recsim 1.16 at
the H100 run's sharding, MEM_COMM_BW_RATIO 7, and 1.20 at each run's own, 11 on H200; 1.05 if the
gathers did not speed up at all. Of recsim's 3.90 ms DGX H100 step, the busiest rank's default
stream holds 1.87 ms of TBE kernels, 0.62 ms of cross-layer element-wise kernels and 0.15 ms of
optimizer steps, all priced by HBM bandwidth, against 1.14 ms of GEMMs: if everything priced by
HBM bandwidth scaled as STREAM does (4.01 / 2.90 TB/s), the measured 1.08 would leave about 0.95 ms
of it on that stream. Were the TBE kernels' HBM bytes to move on H200 at H100's 3.35 TB/s, the H200
case would go +0.9 -> -8.4 % beside the H100 one's -9.6 %, the ratio 1.09: the split would go and a
common offset stay). No bound is applied: the bytes in flight per
SM of FBGEMM's or HugeCTR's gather kernels are not published, and streaming reads need about twice
A100's to saturate H200 (te42kyfo/gpu-benches gpu-stream: 16 KB per SM reaches 96 % of A100-40GB's
HBM bandwidth, 57 % of H200's), which says nothing direct about random rows. A kernel-level
measurement of an HBM-resident TBE on H100 and H200 would settle it.
Public kernel-level figures for gathers from beyond L2 (none on H200; not in shared/; used only to
cross-check the rate of the update stage's row visits, **Update** below): on H100 SXM5, FBGEMM's MoE
``gather_along_first_dim`` (bf16 rows of 5120, 10 KB, permuted) 2.65 TB/s = 79 % of 3.35,
``scatter_add_along_first_dim`` 2.54 (pytorch/FBGEMM PR 3993; shapes in its
``gen_ai/bench/gather_scatter_bench.py``); FBGEMM's ``batch_index_select_dim0`` (TBE nobag kernels,
FBGEMM PR 1897) over ~10 GB of inputs, uniform fp16 rows of 128 (256 B) above 82 % of the 2.40 TB/s
the PR takes as its H100's peak, rows of 1024 forward + backward 1.78 TB/s (meta-pytorch/torchrec PR
4688); FBGEMM's TBE forward on a production-derived weighted workload 2.53 TB/s = 64.7 % of a 3.90
TB/s part, its backward 26.5 % (torchrec PR 4757; shapes not public). This form charges the
forward's and the accumulation's gathers 0.29-0.36 of peak. A gather of scalar 2-byte loads reaches
22-27 % on H100 (pegainfer-project/pegainfer issue 484, which blames too few loads in flight): the
share is the kernel's, not the GPU's alone. Tried as a what-if: HBM bytes of all the gather kernels
(the forward's included) at ``eff(row)`` x the element-wise efficiency / ``max_efficiency``
(0.55-0.82 on H100 for rows of 128 B-10 KB) takes the DGX H100 DCNv2 case -9.6 -> +8.1 % and 16
passing cases out of their bands (A100 DLRMv1 +10 -> +26 %), so either this low efficiency offsets
something the step model underprices or HugeCTR's embedding kernels (the MLPerf cases) gather more
slowly than these; adding a cap of 2.5 TB/s per 132 SMs (the 3.90 TB/s part's TBE rate) gives H200
+9.9 % beside H100 +7.7 % and still moves 9 cases out. A cap at the measured H100 rates (>= 2 TB/s)
does not bind under this form (H200, 512 B rows: 1.54 TB/s), so it cannot explain the H100/H200
split as calibrated.

**Backward with the fused optimizer** (FBGEMM ``split_embedding_backward_codegen_*``): a sort stage
then an update stage.

* Sort/dedup over the lookups: ``linearize_index_kernel`` (reads the index, writes a linear index
  and a (sample, table) info: 8 + 8 + 4 B), a CUB onesweep radix sort (histogram pass reading the
  keys, 8 B, then ``P`` passes that read and write key and value, 24 B each, ``P = ceil(bits / 8)``
  with FBGEMM's ``total_hash_size_bits = floor(log2(rows)) + 1``), a reduce-by-key that finds the
  unique rows and their run lengths (reads the keys, 8 B; writes 12 B per unique row) and a scan
  over the lookup-sized run-length buffer (4 + 4 B): ``44 + 24 P`` bytes per lookup, streamed at
  ``SORT_EFFICIENCY`` of HBM (fitted on the trace's sort-stage kernels: these are streams, not
  gathers). Kernels: those ``7 + P`` plus 4 buffer fills, ``11 + P``, as in the trace, each with
  the fitted ``overhead``.
  HugeCTR's embedding collection (the MLPerf DCNv2 runs) prices the same way; its index
  calculation is other code with about the same bytes. ``LocalReduceIndexCalculation::
  cal_for_sparse_input`` (NVIDIA-Merlin/HugeCTR HugeCTR/embedding/operators/index_calculation.cu
  at 1aa3cc38; its ``IndicesSort`` checks an ``end_bit`` but sorts all bits, a FIXME): per key it writes
  the source id, table id and vector size (12 B), shifts the key by its table's offset and back
  (``local_indices_to_global_indices_kernel``, 2 x 8 B), radix-sorts (key, source id) pairs with
  ``cub::DeviceRadixSort::SortPairs`` over ``begin_bit 0, end_bit sizeof(key_t) x 8``, then
  ``SegmentdUnique`` flags the first of each run (reads key and table id, writes a uint64 flag,
  16 B), scans the flags (``cub::DeviceScan::InclusiveSum``, 16 B) and writes each key's
  destination id (12 B). NVIDIA's DCNv2 train.py (HugeCTR samples/dlrm) sets
  ``EmbeddingCollectionConfig(use_exclusive_keys=True)``, which picks this radix sort
  (``SortStrategy::Radix``; ``Segmented`` otherwise), and leaves ``i64_input_key`` at False: 4 B
  keys and 4 B source ids over all 32 bits, 4 passes of 16 B, with the 4 B histogram read 140 B
  per key, as the FBGEMM form charges a table of 2^24-2^32 rows (the 40M-row tables: 44 + 4 x 24);
  for the replicated small tables (2 passes here) HugeCTR moves 48 B per key more, about 4 us
  for a DGX H100 rank's 159k keys, beside ~200 us of kernel and launch fixed time. Not modelled:
  its kernels (about 17-21 by the code above, not counted in a trace) against ``11 + P``.
* Update (``find_long_segments``, ``cta_per_row``, ``warp_per_row``: 3 kernels): for every lookup
  the sorted info (4 B) and the gradient row of its bag (``grad_row`` bytes; the batch's gradient
  slice of this table is read from HBM once and then from L2 if it fits there); for every unique
  row its id, run length and offset (16 B) and the read and write of the row and its optimizer
  state. The per-lookup bytes go at ``eff(gradient row) x backward_efficiency``: FBGEMM accumulates
  a row's gradients segment by segment, and rows that repeat often (the trace's rows repeat ~170
  times per batch) serialise in one CTA each; ``backward_efficiency`` is fitted. The per-row bytes,
  one coalesced visit to each unique row and its state once its gradient is summed, go at
  the visit's own rate (``row_visit_efficiency``, below): the serialisation is the
  accumulation's, not the visit's.
  HugeCTR's embedding collection (the MLPerf DCNv2 runs) updates with other kernels: its local
  reduce (HugeCTR/embedding/operators/model_backward.cu ``LocalReduce::local_reduce``,
  multi_to_one_reduce_v2.cuh) gives each warp 32 consecutive sorted lookups, so no run serialises,
  but writes each unique key's summed gradient to an fp16 buffer (``wgrad_type`` = ``emb_type``)
  that ``update4_kernel`` (embedding_storage/ragged_static_embedding.cu) reads back with the fp32
  row and Adagrad accumulator. Priced that way from the existing fits (gradient rows without
  ``backward_efficiency``, the buffer streamed), the 1 x DGX H100 step did not move (3.9807 ->
  3.9806 ms: the buffer's round trip costs what the balance saves) while the multi-node DGX H100,
  H200 and B200/GB200 cases went 2-9 points faster (the 43 end-to-end cases 6.33 -> 7.37 % mean
  |error|, Cisco's 8 nodes out of band). Without a HugeCTR kernel trace neither the balanced
  reduce's rate nor the buffer's is measured, so FBGEMM's calibrated form stays for both
  frameworks (NOT ADOPTED, an audit's finding: branch ``hugectr-update-280``).
  **The visit's rate** (``row_visit_efficiency``): ``eff(row + state) x elementwise /
  max_efficiency``, the gather fit's shape in row size scaled from its best (0.36 of peak, the
  fit's) to the element-wise ops' best (``recsim.cost.compute.elementwise_memory_efficiency``, the
  GEMM fit's streaming share: 0.81 on H100, 0.78 on A100-80GB). The visit is a coalesced
  read-modify-write of whole rows, one per unique row once its gradient is summed, not the
  bag-serialised accumulation the gather fit was fitted on; the A100 TBE trace does not pin its rate
  (its rows repeat ~170 times a batch, so few visits: tbe-a100-heldout moves 0.123 -> 0.126 with
  this rate at the old fit, and the refit on it, 0.1226, barely moves: ``overhead`` 7.683 -> 7.709
  us, ``backward_efficiency`` 0.3865 -> 0.3829, ``max_efficiency`` 0.3605 -> 0.3606). The form's
  rates on H100 (3.35 TB/s: 2.18 TB/s for 256 B rows, 2.71 for 10 KB, 2.57 for the MLPerf DCNv2
  tables' 1 KB visits: fp32 rows of 128 and their Adagrad state, read and written) agree with the
  measured H100 rates of coalesced row gathers cited above: FBGEMM's ``batch_index_select_dim0`` >=
  1.97 TB/s for 256 B rows (FBGEMM PR 1897, 82 % of 2.40, torchrec PR 4688) and
  ``gather_along_first_dim`` 2.65 TB/s for 10 KB rows (FBGEMM PR 3993); a test pins both
  within 15 %. None of them is an optimizer's own read-modify-write nor HugeCTR's ``update4_kernel``, which
  the MLPerf cases run: the rate is a transfer of the closest measured kernels, not a fit. It
  matters where rows are seldom repeated: MLPerf's fixed multi-hot rows
  (``recsim.workload.access.multi_hot``: 0.43 of a 40M-row table's lookups distinct at batch 55,296,
  against 0.22-0.28 for independent lookups) raise the busiest DGX H100 rank's distinct rows 412k ->
  650k a step. Priced at the gather fit's ``eff(1 KB)`` (0.34 of 3.35 TB/s, 1.14 TB/s, the previous
  form) those visits took the one-node H100 DCNv2 cases to -15 to -22 % and the 43 end-to-end cases
  to 11.64 % mean |error| (-6.40 % signed); at this rate (and the gather fit refitted on it) the 43
  cases are at 5.97 % (+1.25 % signed, 41 in band; the one-node H100 cases -0.4 to -9.1 %, the
  headline DGX H100 one -8.4 %; HPE's two nodes +15.9 %), against 6.37 % (+0.52 %) with independent
  Zipf lookups and the old rate. So the combination was checked on the end-to-end cases too, and
  they moved it: the rate was first tried as a what-if because of them, and is adopted for the
  mechanism and the kernel figures.

**Atomic backward** (``atomic_update_stage``, HugeCTR's hybrid embedding): one kernel, no sort; each
lookup's gradient added into its row (or its gradient accumulator) in L2, at the forward's gather
efficiency. **Dense update** (``dense_update_stage``): a replicated table's optimizer step over all
its rows after the all-reduce, streamed at the GEMM fit's element-wise efficiency.

**L2 bandwidth** is not a device field; it is ``L2_BYTES_PER_CLOCK[architecture] x boost_clock``.
An architecture not in the table gets no L2 speed-up (L2 hits cost HBM bandwidth).

The fitted constants live in the accelerator YAMLs (``calibration.gather``); an accelerator without
one uses ``UNCALIBRATED_GATHER``, the a100-sxm4-40gb fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from recsim.cost.compute import elementwise_memory_efficiency
from recsim.cost.embedding.base import INDEX_BYTES, OFFSET_BYTES, Lookup, accumulator_dtype
from recsim.hardware.calibration import GatherCalibration
from recsim.hardware.devices import Accelerator

__all__ = [
    "DENSE_UPDATE_KERNELS",
    "L2_BYTES_PER_CLOCK",
    "SORT_BYTES_PER_LOOKUP",
    "SORT_BYTES_PER_PASS",
    "SORT_BYTES_PER_UNIQUE",
    "SORT_EFFICIENCY",
    "SORT_KERNELS_BASE",
    "SPARSE_SGD_KERNELS",
    "UNCALIBRATED_GATHER",
    "UPDATE_BYTES_PER_LOOKUP",
    "UPDATE_BYTES_PER_UNIQUE",
    "UPDATE_KERNELS",
    "KernelCost",
    "atomic_update_stage",
    "dense_update_stage",
    "forward_kernel",
    "gather_calibration",
    "gather_efficiency",
    "l2_bandwidth_bytes_per_s",
    "radix_passes",
    "row_visit_efficiency",
    "sort_stage",
    "sparse_sgd_stage",
    "update_stage",
]

L2_BYTES_PER_CLOCK: Final[dict[str, float]] = {
    # NVIDIA A100 whitepaper (2020), SM/L2 comparison: L2 read bandwidth 5120 B/clk on A100, 2048 B/clk
    # on V100. Hopper: PMC10448217 (Ultrasonics Sonochemistry 99, 2023), Table 3, lists L2 bandwidth
    # 3133 / 7219 / 8986 GB/s for V100 / A100 / H100 at 1530 / 1410 / 1755 MHz, i.e. 2048 / 5120 /
    # 5120 B/clk.
    "volta": 2048.0,
    "ampere": 5120.0,
    "hopper": 5120.0,
    # ASSUMPTION: no published Blackwell (B200) L2 bandwidth; Hopper's bytes per clock carried over,
    # rather than no L2 speed-up at all (L2 hits at HBM speed), which no GPU has.
    "blackwell": 5120.0,
}

SORT_BYTES_PER_LOOKUP: Final[float] = 44.0
"""Linearize (8 + 8 + 4) + radix histogram (8) + reduce-by-key read (8) + run-length scan (4 + 4)."""
SORT_BYTES_PER_PASS: Final[float] = 24.0
"""One radix onesweep pass reads and writes an int64 key and an int32 value per lookup."""
SORT_BYTES_PER_UNIQUE: Final[float] = 12.0
"""Reduce-by-key output: the unique key (int64) and its run length (int32)."""
SORT_KERNELS_BASE: Final[int] = 11
"""Kernels of the sort stage besides the ``P`` onesweep passes, as launched in the A100 trace:
linearize, histogram, exclusive sum, compact init, reduce-by-key, scan init, scan and 4 buffer fills."""
SORT_EFFICIENCY: Final[float] = 0.5620
"""Share of HBM bandwidth the sort stage's bytes stream at. Fitted by
``calibration.fit_sort_efficiency`` on the sort-stage kernels (all but the 3 update kernels) of the
A100 trace's training backwards, with the gather fit's per-kernel ``overhead``; a test refits it.
The stage was priced at the gather's ``max_efficiency`` (0.36) before: 3.38 ms predicted against
2.02-2.62 ms measured for the 122-table TBE's 15.8M lookups (+29 to +67 %), the update stage
-16 to -25 % (the joint fit's ``backward_efficiency``, 0.47, made up for it). Now 2.20-2.21 ms
(-16 to +9 %), the update -10 to +1 % (``backward_efficiency`` refitted to 0.39). Cross-checks:
the trace's onesweep passes alone move 0.60-0.68 of A100-40GB's 1555 GB/s (24 B per lookup and
pass); Onesweep (Adinets & Merrill 2022, arXiv 2206.01784) sorts 256M 32-bit keys at 29.4 Gkey/s
on an A100 (variant not given in the abstract), ~36 B per key (4 passes x 8 B + the 4 B histogram
read): 1.06 TB/s, 0.68 of 1555 GB/s or 0.52 of an 80 GB part's 2039. The stage's reduce-by-key
and scans run slower than the onesweep passes in the trace, hence 0.56 for the whole stage. One
A100's figure: every other GPU takes the same share of its own HBM bandwidth (an UN-CALIBRATED
TRANSFER, as its gather block is: no other GPU's TBE sort is measured)."""
UPDATE_KERNELS: Final[int] = 3
"""find_long_segments, cta_per_row, warp_per_row."""
UPDATE_BYTES_PER_LOOKUP: Final[float] = 4.0
"""The sorted (sample, table) info of each lookup (int32), read by the update kernels."""
UPDATE_BYTES_PER_UNIQUE: Final[float] = 16.0
"""Per unique row: sorted id (int64), run length and its cumulative offset (int32 each)."""

UNCALIBRATED_GATHER: Final[GatherCalibration] = GatherCalibration.model_validate(
    {
        # An UN-CALIBRATED TRANSFER: the a100-sxm4-40gb fit (hardware/devices/accelerators/
        # a100-sxm4-40gb.yaml), for accelerators whose YAML has no gather block. A test keeps these
        # numbers equal to that YAML.
        "source": "tests/data/traces/recsys_a100_8rank_rank3_control.json.gz",
        "max_efficiency": 0.3606,
        "row_bytes_half": 64.0,
        "overhead": "7.709 us",
        "backward_efficiency": 0.3829,
        "fit_points": 12,
        "median_abs_error": 0.1068,
        "test_points": 12,
        "test_median_abs_error": 0.1226,
        "transferred_from": "a100-sxm4-40gb",
    }
)


def gather_calibration(accelerator: Accelerator) -> GatherCalibration:
    """The accelerator's gather calibration, or ``UNCALIBRATED_GATHER``."""
    cal = accelerator.calibration
    if cal is not None and cal.gather is not None:
        return cal.gather
    return UNCALIBRATED_GATHER


def gather_efficiency(cal: GatherCalibration, row_bytes: float) -> float:
    """Fraction of the memory level's bandwidth a gather of ``row_bytes`` rows reaches."""
    if row_bytes <= 0:
        return cal.max_efficiency
    return cal.max_efficiency * row_bytes / (row_bytes + cal.row_bytes_half)


def row_visit_efficiency(accelerator: Accelerator, cal: GatherCalibration, visit_bytes: float) -> float:
    """Fraction of HBM bandwidth the update stage's visit to a unique row reaches: one coalesced
    read and write of ``visit_bytes`` (the row and its optimizer state). The gather fit's shape in
    row size, ``gather_efficiency(cal, visit_bytes) / cal.max_efficiency`` (1 for long rows), times
    the accelerator's streaming share, ``elementwise_memory_efficiency``: a long row's visit streams
    like an element-wise kernel, a short one wastes the same share of its sectors as a gather does.
    Why, and the measured row-gather rates it agrees with: the module docstring (Update)."""
    return (
        gather_efficiency(cal, visit_bytes) * elementwise_memory_efficiency(accelerator) / cal.max_efficiency
    )


def l2_bandwidth_bytes_per_s(accelerator: Accelerator) -> float:
    """L2 read bandwidth: bytes per clock of the architecture x boost clock (else the HBM's)."""
    per_clock = L2_BYTES_PER_CLOCK.get(accelerator.architecture)
    if per_clock is None:
        return accelerator.hbm.bandwidth_bytes_per_s
    return max(per_clock * accelerator.boost_clock_hz, accelerator.hbm.bandwidth_bytes_per_s)


def radix_passes(rows: float) -> int:
    """Onesweep passes of 8 bits over FBGEMM's ``total_hash_size_bits = int(log2(rows) + 1)``."""
    bits = int(math.log2(max(1.0, rows)) + 1)
    return max(1, math.ceil(bits / 8))


@dataclass(frozen=True, slots=True)
class KernelCost:
    """Fixed time (kernel overheads), memory time, and the bytes on HBM and L2 of some kernels."""

    fixed_s: float
    memory_s: float
    hbm_bytes: float
    l2_bytes: float
    kernels: int

    @property
    def time_s(self) -> float:
        return self.fixed_s + self.memory_s


def _memory_s(accelerator: Accelerator, hbm: float, l2: float, efficiency: float) -> float:
    return (
        hbm / accelerator.hbm.bandwidth_bytes_per_s + l2 / l2_bandwidth_bytes_per_s(accelerator)
    ) / efficiency


def forward_kernel(
    accelerator: Accelerator,
    cal: GatherCalibration,
    *,
    row_bytes: float,
    lookups: float,
    bags: float,
    l2_hit: float,
    pooled_bytes: float | None = None,
    extra_hbm_bytes: float = 0.0,
    rows_elsewhere: bool = False,
    gathered: float | None = None,
) -> KernelCost:
    """One TBE forward kernel pooling ``lookups`` rows into ``bags`` bags (one offset and one
    pooled vector each: ``B x T`` for ``T`` tables of batch ``B``). ``rows_elsewhere``: the rows
    come over another link (UVM), so only indices, offsets and the output touch HBM here;
    ``gathered``: how many of the lookups read their row in HBM (default all; a cache's lookups
    of rows it could not hold read them over PCIe). ``extra_hbm_bytes``: per-sample weights etc."""
    pooled = row_bytes if pooled_bytes is None else pooled_bytes
    rows = 0.0 if rows_elsewhere else (lookups if gathered is None else gathered) * row_bytes
    l2 = rows * l2_hit
    # The rows are gathered at their size's efficiency; the indices, offsets and pooled output are
    # streamed, at the gather's best (a tester found a table of 4-element rows slower than one of
    # 8: its indices and output went at a 16 B row's efficiency).
    streamed = lookups * INDEX_BYTES + (bags + 1.0) * OFFSET_BYTES + bags * pooled + extra_hbm_bytes
    hbm = rows - l2 + streamed
    memory = _memory_s(accelerator, rows - l2, l2, gather_efficiency(cal, row_bytes)) + _memory_s(
        accelerator, streamed, 0.0, cal.max_efficiency
    )
    return KernelCost(cal.overhead_s, memory, hbm, l2, 1)


def sort_stage(
    accelerator: Accelerator,
    cal: GatherCalibration,
    *,
    rows: float,
    lookups: float,
    unique: float,
    efficiency: float = SORT_EFFICIENCY,
) -> KernelCost:
    """Linearize, radix-sort and deduplicate the indices: streamed at ``efficiency`` of HBM (the
    sort stage's own, ``SORT_EFFICIENCY``), ``overhead`` per kernel."""
    passes = radix_passes(rows)
    hbm = lookups * (SORT_BYTES_PER_LOOKUP + SORT_BYTES_PER_PASS * passes) + unique * SORT_BYTES_PER_UNIQUE
    kernels = SORT_KERNELS_BASE + passes
    memory = hbm / (accelerator.hbm.bandwidth_bytes_per_s * efficiency)
    return KernelCost(kernels * cal.overhead_s, memory, hbm, 0.0, kernels)


def update_stage(
    accelerator: Accelerator,
    cal: GatherCalibration,
    *,
    row_bytes: float,
    grad_row_bytes: float,
    lookups: float,
    batch: float,
    bags: float,
    unique: float,
    row_update_hbm_bytes: float,
    state_row_bytes: float = 0.0,
) -> KernelCost:
    """Accumulate each unique row's gradients and apply the optimizer.

    ``row_update_hbm_bytes``: the rows and optimizer state read and written in HBM (0 when they
    live elsewhere, as with UVM, whose tier adds their PCIe time itself). ``bags``: the pooled
    gradients (one per bag: ``batch x tables`` for tables fused in one call); the tables' gradient
    slices, ``batch x grad_row`` each, are processed one after the other (the sort orders rows
    table by table), so L2 reuse is per slice.

    The per-lookup gradient rows (the bag's) go at the gradient row's gather efficiency, times
    ``backward_efficiency`` (the accumulation of a row's gradients serialises);
    the sorted per-lookup info and the unique rows' ids, runs and offsets stream at the best
    efficiency; the visit to each
    unique row at the visit's rate in HBM (``row_visit_efficiency``): the row and its
    optimizer state when that is in HBM too (``state_row_bytes``, 0 otherwise: Adam's two moments,
    Adagrad's one, row-wise Adagrad's one float), which the same warp reads and writes beside it.
    An int8 row with fp32 Adam state is a large visit, not a small row's.
    """
    grads = lookups * grad_row_bytes
    first = min(lookups, bags) * grad_row_bytes  # each gradient row read once from HBM
    slice_bytes = min(batch, bags) * grad_row_bytes  # one table's gradients (a part's: its bags)
    reuse_hit = 1.0 if slice_bytes <= 0 else min(1.0, accelerator.l2_bytes / slice_bytes)
    l2 = (grads - first) * reuse_hit
    # Per lookup: its bag's gradient row and its sorted info, gathered at the gradient row's size;
    # per unique row: its id, run and offset and the visit to the row and its state, at the
    # visit's rate for its size. (One efficiency for both let a larger optimizer state speed up the gradient
    # reads: a tester found Adam's backward faster than SGD's under skew.)
    per_lookup = grads - l2
    # The sorted (sample, table) info is read in sorted order, streamed: charged at the gradient
    # row's gather efficiency it made a table of 4-byte rows slower than one of 8 (two testers).
    listed = lookups * UPDATE_BYTES_PER_LOOKUP + unique * UPDATE_BYTES_PER_UNIQUE
    memory = (
        _memory_s(
            accelerator, per_lookup, l2, gather_efficiency(cal, grad_row_bytes) * cal.backward_efficiency
        )
        + _memory_s(accelerator, listed, 0.0, cal.max_efficiency)
        + _memory_s(
            accelerator,
            row_update_hbm_bytes,
            0.0,
            row_visit_efficiency(accelerator, cal, row_bytes + state_row_bytes),
        )
    )
    hbm = per_lookup + listed + row_update_hbm_bytes
    return KernelCost(UPDATE_KERNELS * cal.overhead_s, memory, hbm, l2, UPDATE_KERNELS)


#: Kernels of PyTorch's sparse embedding backward + ``torch.optim.SGD`` on its COO gradient:
#: ``embedding_bag_backward`` (sparse), ``mul`` (by the learning rate) and ``index_add_``.
SPARSE_SGD_KERNELS: Final[int] = 3


def sparse_sgd_stage(lookup: Lookup) -> KernelCost:
    """``nn.EmbeddingBag(sparse=True)`` + ``torch.optim.SGD`` (NVIDIA DLE's DLRM, the reference
    ``dlrm_s_pytorch``): the backward writes a COO gradient with one row per lookup (no dedup, no
    coalesce) and its indices, SGD scales it (read + write) and ``index_add_`` adds it into the table.

    Streamed bytes (the pooled gradients read, the COO rows and indices written, ``mul``'s read and
    write, ``index_add_``'s read of the gradient) move at the element-wise memory efficiency of the
    accelerator's GEMM fit (``recsim.cost.compute``); the table rows ``index_add_`` reads and writes,
    one per lookup at random, at the TBE's forward gather efficiency for rows of this size.
    """
    acc = lookup.accelerator()
    cal = gather_calibration(acc)
    rows = lookup.lookups * lookup.row_bytes
    streamed = (
        min(lookup.lookups, lookup.bags) * lookup.pooled_bytes  # pooled gradients, read once
        + rows
        + lookup.lookups * INDEX_BYTES  # the COO gradient
        + 2 * rows  # mul
        + rows  # index_add_ reads the gradient
    )
    scattered = 2 * rows  # index_add_ reads and writes the rows
    memory = _memory_s(acc, streamed, 0.0, elementwise_memory_efficiency(acc)) + _memory_s(
        acc, scattered, 0.0, gather_efficiency(cal, lookup.row_bytes)
    )
    kernels = SPARSE_SGD_KERNELS
    # The backward and ``index_add_`` index rows (the TBE's fixed time); ``mul`` is element-wise
    # (the accelerator's element-wise floor).
    fixed = (kernels - 1) * cal.overhead_s + acc.elementwise_kernel_s
    return KernelCost(fixed, memory, streamed + scattered, 0.0, kernels)


#: Kernels of a replicated table's dense update: the optimizer step over every row and the reset
#: of the gradient accumulator; a third converts the accumulator into a gradient reduced in
#: another dtype.
DENSE_UPDATE_KERNELS: Final[int] = 2


def dense_update_stage(lookup: Lookup) -> KernelCost:
    """The ``update`` pass of a replicated table trained as a dense parameter (``ShardOps.op``):
    every element of its ``rows x dim`` is stepped once its gradient has been all-reduced.

    Streamed bytes per row: the row and its optimizer state read and written, the reduced gradient
    (``output_dtype``) read; the accumulator (``base.accumulator_dtype``: the table's float dtype)
    reset for the next step (HugeCTR's ``reset_all_gradients``, PyTorch's ``zero_grad``) and, when
    the gradient was reduced in another dtype (HugeCTR's fp16 ``emtype`` of fp32 rows), converted
    into it (read the accumulator, write the copy; HugeCTR runs it before the all-reduce, recsim
    charges it here, on the same stream). All at the accelerator's element-wise memory efficiency
    and its element-wise kernel floor, as element-wise ops are costed (``recsim.cost.compute``).
    """
    acc = lookup.accelerator()
    rows = max(0.0, float(lookup.op.rows))
    grad = lookup.pooled_bytes  # one row of the reduced gradient
    accumulator = lookup.accumulator_row_bytes
    per_row = 2.0 * (lookup.row_bytes + lookup.state_bytes) + grad + accumulator
    kernels = DENSE_UPDATE_KERNELS
    reduced = lookup.op.output_dtype or lookup.op.dtype
    if reduced != accumulator_dtype(lookup.op.dtype):
        per_row += accumulator + grad
        kernels += 1
    streamed = rows * per_row
    memory = _memory_s(acc, streamed, 0.0, elementwise_memory_efficiency(acc))
    # Element-wise kernels: the accelerator's element-wise floor (``recsim.cost.compute``), not the
    # TBE's fixed time (a gather kernel's covers its index set-up).
    return KernelCost(kernels * acc.elementwise_kernel_s, memory, streamed, 0.0, kernels)


def atomic_update_stage(lookup: Lookup) -> KernelCost:
    """An ``atomic`` backward (``Embedding.atomic``, HugeCTR's hybrid embedding): one kernel reads
    each lookup's index and the pooled gradient of its bag and adds the gradient into its target
    with atomics: the row itself under SGD (``lr x g``), the gradient accumulator
    (``base.accumulator_dtype``) under optimizer ``none`` (a replicated table's local reduce).
    Nothing is sorted or deduplicated.

    The L2 performs the atomics: a target found there (its LRU hit rate under the op's access
    model, as the forward's rows) is read and written in L2, the others in HBM. A bag's gradient is
    read from HBM once and then from L2 (several lookups of a bag). At the TBE forward's gather
    efficiency for the target's size: each lookup touches one row at random, as a gather does.
    ASSUMPTION: an atomic read-modify-write of a row runs at that rate (no atomic kernel was
    measured; a gather also holds its row requests in flight).
    """
    acc = lookup.accelerator()
    cal = gather_calibration(acc)
    lookups = lookup.lookups
    target = lookup.accumulator_row_bytes if lookup.op.optimizer == "none" else lookup.row_bytes
    hit = lookup.hit_rate(acc.l2_bytes / target) if target > 0 else 0.0
    rmw = 2.0 * lookups * target
    first = min(lookups, lookup.bags) * lookup.pooled_bytes
    l2 = rmw * hit + (lookups * lookup.pooled_bytes - first)
    hbm = rmw * (1.0 - hit) + first + lookups * INDEX_BYTES
    memory = _memory_s(acc, hbm, l2, gather_efficiency(cal, target))
    return KernelCost(cal.overhead_s, memory, hbm, l2, 1)


def lookup_forward(
    lookup: Lookup, *, l2_hit: float, rows_elsewhere: bool = False, gathered: float | None = None
) -> KernelCost:
    """The TBE forward kernel of ``lookup`` on its accelerator (the shapes come from the lookup;
    ``gathered`` as for ``forward_kernel``)."""
    acc = lookup.accelerator()
    return forward_kernel(
        acc,
        gather_calibration(acc),
        row_bytes=lookup.row_bytes,
        lookups=lookup.lookups,
        bags=lookup.bags,
        l2_hit=l2_hit,
        pooled_bytes=lookup.pooled_bytes,
        rows_elsewhere=rows_elsewhere,
        gathered=gathered,
    )


def lookup_sort(lookup: Lookup) -> KernelCost:
    """The sort/dedup stage of ``lookup``'s TBE backward on its accelerator."""
    acc = lookup.accelerator()
    return sort_stage(
        acc, gather_calibration(acc), rows=lookup.op.rows, lookups=lookup.lookups, unique=lookup.unique_rows
    )


def lookup_update(lookup: Lookup, *, row_update_hbm_bytes: float, state_in_hbm: bool) -> KernelCost:
    """The fused update stage of ``lookup``'s TBE backward on its accelerator; ``state_in_hbm``:
    whether the rows' optimizer state is read and written in HBM beside them (``hbm``), or lives
    in host memory (``uvm``, ``uvm_caching``: FBGEMM keeps it in managed memory)."""
    acc = lookup.accelerator()
    return update_stage(
        acc,
        gather_calibration(acc),
        row_bytes=lookup.row_bytes,
        grad_row_bytes=lookup.pooled_bytes,
        lookups=lookup.lookups,
        batch=lookup.batch,
        bags=lookup.bags,
        unique=lookup.unique_rows,
        row_update_hbm_bytes=row_update_hbm_bytes,
        state_row_bytes=lookup.state_bytes if state_in_hbm else 0.0,
    )


def lookup_backward(
    lookup: Lookup, *, row_update_hbm_bytes: float, state_in_hbm: bool
) -> tuple[KernelCost, KernelCost]:
    """The sort and the fused update stages of ``lookup``'s TBE backward on its accelerator."""
    update = lookup_update(lookup, row_update_hbm_bytes=row_update_hbm_bytes, state_in_hbm=state_in_hbm)
    return lookup_sort(lookup), update
