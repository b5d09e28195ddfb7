"""The embedding cost models: the TBE calibration on the A100 trace, hand cases per tier on a tiny
system with round numbers, the registry and tier strings, and the RecNMP / RecSSD comparisons."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from recsim.api import load_system
from recsim.cost.compute import CPU_GEMM_EFFICIENCY, CPU_MEMORY_EFFICIENCY
from recsim.cost.embedding import (
    UNCALIBRATED_GATHER,
    EmbeddingCost,
    embedding_cost,
    fit_gather,
    gather_calibration,
    load_tbe_measurements,
    parse_tier,
    registered_tiers,
)
from recsim.cost.embedding.base import DDR, HBM, PCIE, optimizer_update_flops, pages_touched
from recsim.cost.embedding.calibration import (
    fit_sort_efficiency,
    is_test_measurement,
    median_abs_error,
    predict_tbe_s,
    relative_errors,
)
from recsim.cost.embedding.ddr import llc_capacity_bytes, rank_share
from recsim.cost.embedding.gpu import (
    SORT_EFFICIENCY,
    SORT_KERNELS_BASE,
    gather_efficiency,
    radix_passes,
    row_visit_efficiency,
    sort_stage,
    update_stage,
)
from recsim.cost.embedding.ssd import page_popularity
from recsim.cost.embedding.uvm import pcie_wire_bytes, rank_host_ddr_bandwidth_bytes_per_s
from recsim.cost.embedding.uvm_caching import cache_hbm_bytes, cache_rows
from recsim.cost.provenance import device_defaults
from recsim.errors import ConfigError, InfeasibleError
from recsim.graph.ir import Embedding
from recsim.hardware.calibration import Calibration, GatherCalibration
from recsim.hardware.devices import DEFAULT_LINE_FILL_BUFFERS, Accelerator, Ssd
from recsim.hardware.library import HardwareLibrary, shipped_root
from recsim.hardware.system import System
from recsim.workload.access import access_model
from recsim.workload.access.popularity import GroupedPopularity
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import UniformAccess, ZipfAccess
from tests.conftest import FIXTURES, tiny_nmp_dimm

BAND = 0.25  # the band: median absolute error of the TBE kernels
LIB = HardwareLibrary([shipped_root()])
A100_40 = LIB.device("accelerator", "a100-sxm4-40gb")
assert isinstance(A100_40, Accelerator)


# ------------------------------------------------------------------------------ calibration


@pytest.fixture(scope="module")
def tbe() -> list[Any]:
    return load_tbe_measurements()


def test_trace_yields_the_tbe_calls_it_holds(tbe):
    assert len(tbe) == 24
    assert sum(m.pass_ == "forward" for m in tbe) == 12
    assert sum(is_test_measurement(m) for m in tbe) == 12
    small = {m for m in tbe if m.tables == 1}
    large = {m for m in tbe if m.tables == 122}
    assert all(m.rows == 1000 and m.row_bytes == 384.0 and m.batch == 8192 and m.weighted for m in small)
    assert all(m.rows == 90837 and m.row_bytes == pytest.approx(4 * 8720 / 122) for m in large)
    assert all(15.7e6 < m.lookups < 15.9e6 and not m.weighted for m in large)
    # The backward launches 14 + P kernels, as the model counts them (P radix passes: 2 and 3 here).
    for m in tbe:
        assert m.kernels == (1 if m.pass_ == "forward" else 14 + radix_passes(m.rows))


def test_a100_gather_calibration_is_in_the_band(tbe):
    cal = gather_calibration(A100_40)
    train = [m for m in tbe if not is_test_measurement(m)]
    test = [m for m in tbe if is_test_measurement(m)]
    assert median_abs_error(train, A100_40, cal) <= BAND
    assert median_abs_error(test, A100_40, cal) <= BAND
    assert median_abs_error(tbe, A100_40, cal) <= BAND
    # Every single TBE measurement within 30 % (the forward/backward split is the largest residual).
    assert max(abs(e) for e in relative_errors(tbe, A100_40, cal)) < 0.30


def test_refit_reproduces_the_yaml(tbe):
    fitted = fit_gather(tbe, A100_40)
    stored = gather_calibration(A100_40)
    assert stored.transferred_from is None
    assert fitted.max_efficiency == pytest.approx(stored.max_efficiency, rel=2e-3)
    assert fitted.overhead_s == pytest.approx(stored.overhead_s, rel=2e-3)
    assert fitted.backward_efficiency == pytest.approx(stored.backward_efficiency, rel=2e-3)
    assert fitted.row_bytes_half == stored.row_bytes_half
    assert (fitted.fit_points, fitted.test_points) == (stored.fit_points, stored.test_points)
    assert fitted.median_abs_error == pytest.approx(stored.median_abs_error, abs=2e-3)
    assert fitted.test_median_abs_error == pytest.approx(stored.test_median_abs_error, abs=2e-3)


def test_sort_stage_kernels_are_the_ones_priced(tbe):
    # The name split (all but find_long_segments / cta_per_row / warp_per_row) finds as many sort
    # kernels as sort_stage charges: 11 + 3 passes for the 90,837-row TBE, 11 + 2 for 1,000 rows.
    for m in (m for m in tbe if m.pass_ == "backward"):
        assert m.sort_kernels == SORT_KERNELS_BASE + radix_passes(m.rows)
        assert 0.0 < m.sort_time_s < m.time_s


def test_sort_efficiency_refit_reproduces_the_constant(tbe):
    assert fit_sort_efficiency(tbe, A100_40, gather_calibration(A100_40)) == pytest.approx(
        SORT_EFFICIENCY, rel=2e-3
    )


def test_sort_and_update_stages_each_match_the_trace(tbe):
    # Each stage on its own, not only their sum: the 122-table TBE's sort (15.8M lookups, HBM
    # streams) and the remainder of its backward (the update kernels), train and test steps alike.
    # At the gather's max_efficiency (before) the sort came out +29 to +67 %, the update -16 to -25 %;
    # now -16 to +9 % and -10 to +1 %.
    cal = gather_calibration(A100_40)
    for m in (m for m in tbe if m.pass_ == "backward" and not m.weighted):
        unique = m.rows * -math.expm1(m.lookups * math.log1p(-1.0 / m.rows))
        sort = sort_stage(A100_40, cal, rows=m.rows, lookups=m.lookups, unique=unique).time_s
        update = predict_tbe_s(m, A100_40, cal) - sort
        assert sort / m.sort_time_s - 1.0 == pytest.approx(0.0, abs=0.20), m.step
        assert update / (m.time_s - m.sort_time_s) - 1.0 == pytest.approx(0.0, abs=0.15), m.step


def test_transferred_blocks_copy_the_a100_fit():
    stored = gather_calibration(A100_40)
    fields = ("max_efficiency", "row_bytes_half", "overhead_s", "backward_efficiency", "source")
    for name in LIB.device_names("accelerator"):
        device = LIB.device("accelerator", name)
        assert isinstance(device, Accelerator)
        cal = gather_calibration(device)
        assert all(getattr(cal, f) == getattr(stored, f) for f in fields), name
        assert cal.transferred_from in (None, "a100-sxm4-40gb"), name
    for f in fields:
        assert getattr(UNCALIBRATED_GATHER, f) == getattr(stored, f)
    assert UNCALIBRATED_GATHER.transferred_from == "a100-sxm4-40gb"


# ------------------------------------------------------------------------------ a tiny system

# Round numbers: HBM 1200 GB/s (architecture "test": no L2 table entry, so L2 hits cost HBM
# bandwidth), 40 MiB L2, 4 us launch, PCIe 32 GB/s with 500 ns latency; 2 CPUs x 10 cores x 2 GHz x
# 32 FLOP/cycle; 8 DDR channels x 25.6 GB/s, 90 ns, 64 B lines, 2 DIMMs per channel (512 GB).
GATHER = GatherCalibration.model_validate(
    {
        "source": "hand",
        "max_efficiency": 0.5,
        "row_bytes_half": 64.0,
        "overhead": "10 us",
        "backward_efficiency": 0.5,
        "fit_points": 1,
    }
)
HBM_BW = 1200e9
EFF_128 = 0.5 * 128 / (128 + 64)  # gather efficiency of 128 B rows
DDR_BW = 8 * 25.6e9 * CPU_MEMORY_EFFICIENCY
CPU_FLOPS = 2 * 10 * 2e9 * 32 * CPU_GEMM_EFFICIENCY
MLP = 2 * 10 * 10  # sockets x cores x line fill buffers


def _tiny() -> System:
    base = HardwareLibrary([FIXTURES / "minilib"]).system("tiny")
    node = base.node
    assert node.accelerators is not None
    acc = node.accelerators.device.model_copy(update={"calibration": Calibration(gather=GATHER)})
    ssd = Ssd.model_validate(
        {
            "kind": "ssd",
            "name": "tiny-ssd",
            "interface": acc.host_interface,
            "capacity": "1 TB",
            "page_size": "4096 B",
            "flash_page_size": "16384 B",
            "channels": 8,
            "dies_per_channel": 4,
            "channel_bandwidth": "1 GB/s",
            "sequential_read": "4 GB/s",
            "random_read": "400 kIOPS",
            "read_latency": "100 us",
            "dram_cache": "1 GiB",
            "power": {"idle": "1 W", "max": "10 W"},
            "ndp": {
                "engine": "test",
                "cores": 1,
                "clock": "1 GHz",
                "flop_per_cycle_per_core": 1,
                "sram": "1 MiB",
                "power": {"idle": "0 W", "max": "1 W"},
            },
        }
    )
    nmp = tiny_nmp_dimm(node.host_memory.device)
    from recsim.hardware.system import SsdGroup

    new_node = node.model_copy(
        update={
            "accelerators": node.accelerators.model_copy(update={"device": acc}),
            "host_memory": node.host_memory.model_copy(update={"nmp": nmp}),
            "ssds": SsdGroup(device=ssd, count=1),
        }
    )
    return base.model_copy(update={"node": new_node})


TINY = _tiny()


def op(tier: str, pass_: str = "forward", **kw: Any) -> Embedding:
    args: dict[str, Any] = {
        "table": "t",
        "pass_": pass_,
        "rows": 1000,
        "dim": 32,
        "dtype": "fp32",
        "batch": 100,
        "lookups": 1000.0,
        "unique_rows": 500.0,
        "tier": tier,
        "optimizer": "sgd" if pass_ == "backward" else "none",
    }
    args.update(kw)
    return Embedding(**args)


# A tiny GPU's host traffic: its 32 GB/s link, at most half of its PCIe switch's 32 GB/s uplink
# (4 GPUs on 2 switches), every GPU of the node streaming at once.
PCIE_SHARE = 16e9


def cost(e: Embedding, system: System = TINY, access: Any = None, **kw: Any) -> EmbeddingCost:
    return embedding_cost(e, system, access, **kw)


# Bytes every GPU forward of the default op streams besides the rows: indices, offsets, output.
STREAMED = 1000 * 8 + 101 * 8 + 100 * 128
SORT_KERNELS = 11 + 2  # rows = 1000: 10 hash bits, 2 radix passes
SORT_BYTES = 1000 * (44 + 24 * 2) + 500 * 12


def test_hbm_forward_by_hand():
    c = cost(op("hbm"))
    # 1000 rows x 128 B fit in L2 (hit rate 1, served at HBM speed on this architecture), gathered
    # at 128 B rows' efficiency; indices, offsets and output streamed at the best one (0.5).
    memory = 1000 * 128 / (HBM_BW * EFF_128) + STREAMED / (HBM_BW * 0.5)
    assert c.time_s == pytest.approx(10e-6 + memory + 4e-6, rel=1e-12)
    assert c.bytes_by_resource == {"hbm": pytest.approx(STREAMED)}
    assert c.details["l2_hit_rate"] == 1.0
    assert cost(op("hbm"), include_launch=False).time_s == pytest.approx(10e-6 + memory, rel=1e-12)


def test_hbm_backward_by_hand():
    c = cost(op("hbm", "backward"))
    # The sort stage streams at its own efficiency, not the fixture's gather max_efficiency (0.5).
    sort = SORT_KERNELS * 10e-6 + SORT_BYTES / (HBM_BW * SORT_EFFICIENCY)
    # Gradients: 1000 x 128 B, the batch's slice (100 x 128 B) read once from HBM, the rest from L2,
    # at the gradient row's efficiency times backward_efficiency (0.5). The sorted infos (4 B per
    # lookup) and per unique row 16 B of sorted ids, runs and offsets, streamed (0.5); SGD's read
    # and write of the row: one coalesced visit, at the row's gather efficiency scaled from the
    # gather fit's best (0.5) to the element-wise one (``gpu.row_visit_efficiency``; at EFF_128
    # before).
    from recsim.cost.compute import gemm_calibration

    accelerator = TINY.accelerator
    assert accelerator is not None
    visit_eff = EFF_128 * gemm_calibration(accelerator).memory_efficiency / 0.5
    per_lookup = 100 * 128
    listed = 1000 * 4 + 500 * 16
    visits = 500 * 2 * 128
    hbm = per_lookup + listed + visits
    l2 = 900 * 128
    update = (
        3 * 10e-6
        + (per_lookup + l2) / (HBM_BW * EFF_128 * 0.5)
        + listed / (HBM_BW * 0.5)
        + visits / (HBM_BW * visit_eff)
    )
    # Every one of the 16 kernels pays the 4 us launch gap.
    assert c.time_s == pytest.approx(sort + update + 16 * 4e-6, rel=1e-12)
    assert c.bytes_on("hbm") == pytest.approx(SORT_BYTES + hbm)
    assert c.details["kernels"] == 16.0
    adam = cost(op("hbm", "backward", optimizer="adam"))
    extra = 500 * 2 * (8 * 32)  # two fp32 states per element, read and written
    assert adam.bytes_on("hbm") - c.bytes_on("hbm") == pytest.approx(extra)


def _visit_rate_bytes_per_s(accelerator: Accelerator, visit_bytes: float) -> float:
    """HBM bytes a second of the update stage's visits to unique rows of ``visit_bytes`` (row and
    state), on the engine's path: the stage's memory time with and without the visits' bytes."""
    shape = {"row_bytes": visit_bytes, "grad_row_bytes": visit_bytes, "lookups": 1e6, "batch": 1e4}
    shape |= {"bags": 1e4, "unique": 1e6}
    cal = gather_calibration(accelerator)
    visits = 2.0 * 1e6 * visit_bytes
    with_visits = update_stage(accelerator, cal, row_update_hbm_bytes=visits, **shape)
    without = update_stage(accelerator, cal, row_update_hbm_bytes=0.0, **shape)
    return visits / (with_visits.memory_s - without.memory_s)


def test_row_visit_rate_matches_measured_h100_row_gathers():
    # Published H100 SXM5 (3.35 TB/s) rates of coalesced row gathers (recsim.cost.embedding.gpu's
    # docstring; not in shared/): FBGEMM's batch_index_select_dim0, fp16 rows of 128 (256 B), above
    # 82 % of 2.40 TB/s = 1.97 TB/s (pytorch/FBGEMM PR 1897, meta-pytorch/torchrec PR 4688), and
    # FBGEMM's gather_along_first_dim, bf16 rows of 5120 (10 KB), 2.65 TB/s (FBGEMM PR 3993). The
    # visit's rate, eff(row) x elementwise / max_efficiency, gives 2.18 and 2.71 TB/s; the gather
    # fit's eff(row), which priced the visit before, 0.97 and 1.20 (-51 % and -55 %).
    h100 = LIB.device("accelerator", "h100-sxm5-80gb")
    assert isinstance(h100, Accelerator)
    for visit_bytes, measured in ((256.0, 1.97e12), (10240.0, 2.65e12)):
        rate = _visit_rate_bytes_per_s(h100, visit_bytes)
        assert rate == pytest.approx(measured, rel=0.15), visit_bytes
    # Exact on the figures: 3.35 TB/s x eff(256 B) = 0.3606 x 256 / 320, x 0.8139 / 0.3606 (the
    # H100 GEMM fit's element-wise share over the gather fit's best).
    assert _visit_rate_bytes_per_s(h100, 256.0) == pytest.approx(3.35e12 * 0.8 * 0.8139, rel=1e-4)


@settings(max_examples=50, deadline=None)
@given(small=st.floats(1.0, 1e5), more=st.floats(0.0, 1e5))
def test_row_visit_rate_is_bounded_and_monotone_on_every_shipped_accelerator(small, more):
    # The visit's rate never beats the accelerator's element-wise streaming share, grows with the
    # visit's size, and is never below the gather fit's eff(row) it replaced (the streaming share is
    # above every shipped gather fit's max_efficiency).
    from recsim.cost.compute import elementwise_memory_efficiency

    for name in LIB.device_names("accelerator"):
        acc = LIB.device("accelerator", name)
        assert isinstance(acc, Accelerator)
        cal = gather_calibration(acc)
        streaming = elementwise_memory_efficiency(acc)
        rate = row_visit_efficiency(acc, cal, small)
        assert 0.0 < rate <= streaming
        assert row_visit_efficiency(acc, cal, small + more) >= rate
        assert rate >= gather_efficiency(cal, small) * (1 - 1e-12), name


def test_hbm_sparse_sgd_by_hand():
    from recsim.cost.compute import gemm_calibration

    sparse = cost(op("hbm", "backward", optimizer="sparse_sgd"))
    # Streamed: pooled gradients (100 x 128 B), COO rows (1000 x 128 B) and indices (8 B), mul's
    # read + write, index_add_'s gradient read; scattered: every lookup's row read and written.
    streamed = 100 * 128 + 1000 * 128 + 1000 * 8 + 2 * 1000 * 128 + 1000 * 128
    scattered = 2 * 1000 * 128
    accelerator = TINY.accelerator
    assert accelerator is not None
    mem_eff = gemm_calibration(accelerator).memory_efficiency
    # Three kernels with their launch gaps: the backward and index_add_ at the TBE's fixed 10 us,
    # mul at the element-wise floor (3 us).
    expected = 2 * 10e-6 + 3e-6 + 3 * 4e-6 + streamed / (HBM_BW * mem_eff) + scattered / (HBM_BW * EFF_128)
    assert sparse.time_s == pytest.approx(expected, rel=1e-12)
    assert sparse.bytes_on("hbm") == pytest.approx(streamed + scattered)
    # No dedup, no fusion: more bytes than FBGEMM's fused SGD for the same op, and never faster.
    fused = cost(op("hbm", "backward"))
    assert sparse.bytes_on("hbm") > fused.bytes_on("hbm")


def test_hbm_dense_update_by_hand():
    """A replicated table's ``update`` pass: every row stepped once its gradient is all-reduced."""
    from recsim.cost.compute import gemm_calibration

    accelerator = TINY.accelerator
    assert accelerator is not None
    gemm = gemm_calibration(accelerator)
    stream = HBM_BW * gemm.memory_efficiency
    fixed = accelerator.elementwise_kernel_s  # element-wise kernels: their floor, not a GEMM's
    assert fixed == 3e-6
    # fp32 gradient: per row the row read and written (2 x 128 B), the gradient read (128 B) and the
    # fp32 accumulator reset (128 B); two kernels (step, reset).
    plain = cost(op("hbm", "update", optimizer="sgd", lookups=0.0, unique_rows=0.0))
    assert plain.time_s == pytest.approx(2 * (fixed + 4e-6) + 1000 * 512 / stream, rel=1e-12)
    assert plain.bytes_on("hbm") == pytest.approx(1000 * 512)
    # Reduced in fp16 (HugeCTR's emtype): a 64 B gradient, and the accumulator converted into it
    # (read 128 B, write 64 B) by a third kernel.
    half = cost(op("hbm", "update", optimizer="sgd", lookups=0.0, unique_rows=0.0, output_dtype="fp16"))
    per_row = 2 * 128 + 64 + 128 + (128 + 64)
    assert half.time_s == pytest.approx(3 * (fixed + 4e-6) + 1000 * per_row / stream, rel=1e-12)
    # Adagrad reads and writes its fp32 state too.
    adagrad = cost(op("hbm", "update", optimizer="adagrad", lookups=0.0, unique_rows=0.0))
    assert adagrad.bytes_on("hbm") - plain.bytes_on("hbm") == pytest.approx(1000 * 2 * 128)
    # Nothing to step: only the kernels' fixed cost.
    empty = cost(op("hbm", "update", optimizer="sgd", rows=0, lookups=0.0, unique_rows=0.0))
    assert empty.time_s == pytest.approx(2 * (fixed + 4e-6), rel=1e-12)


def test_hbm_atomic_backward_by_hand():
    """HugeCTR's atomic backward: one kernel, each lookup's gradient added into its row in L2."""
    c = cost(op("hbm", "backward", atomic=True))
    # 1000 rows x 128 B fit in L2 (hit rate 1): the read-modify-writes (2 x 1000 x 128 B) and the
    # bags' repeated gradient reads (900 x 128 B) in L2; each bag's gradient once (100 x 128 B) and
    # the indices (8 B) from HBM; L2 served at HBM speed on this architecture.
    l2 = 2 * 1000 * 128 + 900 * 128
    hbm = 100 * 128 + 1000 * 8
    assert c.time_s == pytest.approx(10e-6 + (hbm + l2) / (HBM_BW * EFF_128) + 4e-6, rel=1e-12)
    assert c.bytes_on("hbm") == pytest.approx(hbm)
    assert c.details["kernels"] == 1.0 and c.details["l2_bytes"] == pytest.approx(l2)
    # No sort, no dedup: cheaper than FBGEMM's sorted backward of the same op.
    assert c.time_s < cost(op("hbm", "backward")).time_s
    # Optimizer none (a replicated table's local reduce): into the fp32 accumulator, same bytes here.
    assert cost(op("hbm", "backward", atomic=True, optimizer="none")).time_s == pytest.approx(c.time_s)


def test_hbm_bags_and_narrow_output_by_hand():
    # A TBE over 3 tables of batch 100 pools 300 bags: 300 offsets and pooled vectors, not 100.
    fused = cost(op("hbm", bags=300.0))
    streamed = 1000 * 8 + 301 * 8 + 300 * 128
    memory = 1000 * 128 / (HBM_BW * EFF_128) + streamed / (HBM_BW * 0.5)
    assert fused.time_s == pytest.approx(10e-6 + memory + 4e-6, rel=1e-12)
    assert fused.bytes_on("hbm") == pytest.approx(streamed)
    assert fused.details["bytes_returned"] == pytest.approx(300 * 128)
    # A framework that writes the pooled vectors in fp16 (HugeCTR's emtype) writes half the bytes
    # and reads half-width gradients in the backward; the rows keep the table's fp32.
    narrow = cost(op("hbm", output_dtype="fp16"))
    half = 1000 * 8 + 101 * 8 + 100 * 64
    assert narrow.bytes_on("hbm") == pytest.approx(half)
    assert narrow.details["row_bytes"] == 128.0
    wide_bwd, narrow_bwd = cost(op("hbm", "backward")), cost(op("hbm", "backward", output_dtype="fp16"))
    # Gradients: the batch's slice (100 x 64 B) from HBM; the other 900 reads from L2 are halved too.
    assert wide_bwd.bytes_on("hbm") - narrow_bwd.bytes_on("hbm") == pytest.approx(100 * 64)
    assert narrow_bwd.time_s < wide_bwd.time_s
    # A part that pools only some bags (routed rows: 1000 lookups into 800 bags) reads each bag's
    # gradient once from HBM: min(lookups, bags) of them.
    routed = cost(op("hbm", "backward", bags=800.0))
    assert routed.bytes_on("hbm") - wide_bwd.bytes_on("hbm") == pytest.approx(700 * 128)
    with pytest.raises(ConfigError, match="output dtype"):
        cost(op("hbm", output_dtype="fp12"))


def test_uvm_forward_by_hand():
    c = cost(op("uvm"))
    payload = 1000 * 128  # two 64 B requests per 128 B row
    wire = payload * (64 + 24) / 64
    pcie = wire / PCIE_SHARE
    assert pcie > payload / DDR_BW and pcie > STREAMED / (HBM_BW * EFF_128)
    assert c.time_s == pytest.approx(10e-6 + pcie + 2 * 500e-9 + 4e-6, rel=1e-12)
    assert c.bytes_by_resource == pytest.approx({"hbm": STREAMED, "pcie": wire, "ddr": payload})
    # A 100 B row still costs two 64 B requests.
    odd = cost(op("uvm", dim=25))
    assert odd.bytes_on("ddr") == pytest.approx(1000 * 128)


def test_uvm_shares_the_node_dram_between_its_accelerators():
    # The node's DRAM serves every accelerator's UVM rows at once: one rank reads at its share. On
    # the tiny node's four GPUs PCIe binds first; on eight, each on its own root port (no PCIe
    # switch to share), the share (DDR_BW / 8) is below the link's payload rate (32 GB/s x 64 / 88)
    # and binds, for the forward gather and for the cache fills of uvm_caching alike.
    node = TINY.node
    assert node.accelerators is not None
    eight = TINY.model_copy(
        update={
            "node": node.model_copy(
                update={
                    "accelerators": node.accelerators.model_copy(update={"count": 8}),
                    "pcie_switches": None,
                }
            )
        }
    )
    payload = 1000 * 128
    assert payload / (DDR_BW / 8) > payload * (64 + 24) / 64 / 32e9
    c = cost(op("uvm"), eight)
    assert c.time_s == pytest.approx(10e-6 + payload / (DDR_BW / 8) + 2 * 500e-9 + 4e-6, rel=1e-12)
    assert c.bytes_on("ddr") == pytest.approx(payload)
    four = TINY.model_copy(update={"node": node.model_copy(update={"pcie_switches": None})})
    assert cost(op("uvm"), eight).time_s > cost(op("uvm"), four).time_s
    assert cost(op("uvm_caching:0.1"), eight).time_s > cost(op("uvm_caching:0.1"), four).time_s


def test_uvm_shares_the_pcie_switch_uplink():
    # Two tiny GPUs under each PCIe switch share its 32 GB/s uplink: each moves 16 GB/s. Without
    # the switches each has its own 32 GB/s link, twice as fast on the link-bound gather.
    node = TINY.node
    assert node.host_bandwidth_bytes_per_s_per_accelerator == PCIE_SHARE
    direct = TINY.model_copy(update={"node": node.model_copy(update={"pcie_switches": None})})
    assert direct.node.host_bandwidth_bytes_per_s_per_accelerator == 32e9
    shared, own = cost(op("uvm"), TINY), cost(op("uvm"), direct)
    assert shared.details["pcie_s"] == pytest.approx(2 * own.details["pcie_s"], rel=1e-12)
    # A faster switch port stops binding at the GPU's own link, and is never slower.
    assert shared.time_s > own.time_s


def test_uvm_caching_forward_by_hand():
    c = cost(op("uvm_caching:0.5"))
    hit = 0.512  # uniform: 500 rows asked, 16 whole 32-way sets allocated, 512 cached rows of 1000
    # The batch's 500 distinct rows, each absent from the cache with the miss rate (uniform): 244
    # fetched once each; not the 488 missed lookups, which repeat rows.
    filled = 500 * (1 - hit)
    assert c.details["filled_rows"] == pytest.approx(filled)
    tags = (1000 + 500) * 32 * 8 + filled * 8
    # The sort and the three cache kernels each pay the 4 us launch gap, the gather one more.
    # The sort/unique at its own efficiency (SORT_EFFICIENCY), the tags at the gather's best (0.5).
    manage = (
        (SORT_KERNELS + 3) * (10e-6 + 4e-6) + SORT_BYTES / (HBM_BW * SORT_EFFICIENCY) + tags / (HBM_BW * 0.5)
    )
    fill = filled * 128 * 88 / 64 / PCIE_SHARE + 2 * 500e-9
    gather = 10e-6 + 1000 * 128 / (HBM_BW * EFF_128) + STREAMED / (HBM_BW * 0.5)
    assert c.details["cache_hit_rate"] == pytest.approx(hit)
    assert c.time_s == pytest.approx(manage + fill + gather + 4e-6, rel=1e-12)
    # The evicted rows' pass through host DRAM, at the rank's share of it.
    writeback_ddr = filled * 128 / rank_host_ddr_bandwidth_bytes_per_s(TINY)
    assert c.details["cache_overhead_s"] == pytest.approx(manage + gather + writeback_ddr, rel=1e-12)
    # Each filled row evicts a dirty one, written back the other way over PCIe at the same time:
    # twice the bytes, one way's time.
    assert c.details["evicted_rows"] == pytest.approx(filled)
    assert c.bytes_on("pcie") == pytest.approx(2 * filled * 128 * 88 / 64)
    # A bigger cache misses fewer rows, down to none when it holds the table; it fills those that
    # fit beside the batch's own cached rows (here all from 0.5 up).
    costs = [cost(op(f"uvm_caching:{r}")) for r in (0.01, 0.1, 0.2, 0.5, 0.9, 1.0)]
    missed = [c.details["filled_rows"] + c.details["unfit_rows"] for c in costs]
    assert missed == sorted(missed, reverse=True) and missed[-1] == 0.0 and missed[0] < 500
    for c in costs:
        held = 500 - c.details["filled_rows"] - c.details["unfit_rows"]
        assert c.details["filled_rows"] <= max(0.0, c.details["cache_rows"] - held) + 1e-9
    assert [c.details["unfit_rows"] for c in costs[3:]] == [0.0, 0.0, 0.0]
    # The default ratio is FBGEMM's cache_load_factor, 0.2: 200 rows asked, 7 sets of 32 allocated.
    assert cost(op("uvm_caching")).details["cache_rows"] == pytest.approx(224)


def test_uvm_caching_allocates_whole_sets():
    # FBGEMM: cache_sets = (int(rows x cache_load_factor) + 31) // 32, at least one set. A reviewer
    # found a 100-row table at 0.2 given 20 cached rows where FBGEMM gives it 32.
    assert [cache_rows(100, r) for r in (0.0, 0.001, 0.2, 0.32, 0.33, 1.0)] == [0, 32, 32, 32, 64, 128]
    assert cache_rows(10**6, 0.2) == 200_000  # 6250 sets exactly
    small = op("uvm_caching:0.2", rows=100, lookups=20.0, batch=20)
    assert cost(small).details["cache_rows"] == 32
    assert cost(small).details["cache_hit_rate"] == pytest.approx(0.32)  # uniform


def test_uvm_caching_hbm_books_fbgemm_cache_bookkeeping():
    # FBGEMM _apply_cache_state: lxu_cache_weights (the rows), lxu_cache_state and lxu_state
    # (int64 per slot each, LRU), cache_index_table_map (int32 per row of the whole table). A tester
    # found the cache booked as its rows alone, about 7 % short at 512 B rows and 0.2.
    # 100 rows at 0.2: one set of 32 slots of 16 B rows, + 16 B a slot, + 4 B a row of the table.
    assert cache_hbm_bytes(100, 0.2, 16.0) == 32 * (16 + 8 + 8) + 100 * 4 == 1424
    # 10^6 rows of 512 B at 0.2: 200 000 slots; the bookkeeping is 7.03 % of the cached rows.
    big = cache_hbm_bytes(10**6, 0.2, 512.0)
    assert big == 200_000 * (512 + 16) + 10**6 * 4 == 109_600_000
    assert big / (200_000 * 512) == pytest.approx(1 + 36 / 512)
    # no cache (ratio 0, recsim's uvm plus the management): FBGEMM allocates none of it
    assert cache_hbm_bytes(100, 0.0, 16.0) == 0.0
    assert cache_hbm_bytes(0, 0.2, 16.0) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 10**7),
    ratio=st.floats(1e-4, 1.0),
    row_bytes=st.sampled_from([8.0, 16.0, 256.0, 512.0]),
)
def test_uvm_caching_hbm_exceeds_the_cached_rows_by_exact_bookkeeping(rows, ratio, row_bytes):
    slots = cache_rows(rows, ratio)
    got = cache_hbm_bytes(rows, ratio, row_bytes)
    assert got - slots * row_bytes == 16 * slots + 4 * rows
    # more rows cost at least as much (a table map entry each, sets only grow)
    assert cache_hbm_bytes(rows + 1, ratio, row_bytes) >= got + 4


def test_a_cache_too_small_for_the_batch():
    # The rows that do not fit are read from host memory by every lookup of them, as uvm reads
    # them (FBGEMM's conflict misses): a cache of no rows is uvm plus the cache's management. A
    # tester found it 2-4x faster than uvm, every missed row "filled" into a cache of none.
    forward = cost(op("uvm_caching:0"))
    plain = cost(op("uvm"))
    assert forward.details["filled_rows"] == 0.0 and forward.details["unfit_rows"] == 500.0
    assert forward.details["evicted_rows"] == 0.0
    assert plain.time_s < forward.time_s <= plain.time_s + forward.details["cache_overhead_s"]
    assert forward.bytes_on("pcie") == pytest.approx(plain.bytes_on("pcie"))
    # The backward updates the rows where they are, in host memory, as uvm does (its stages
    # overlap a little differently: within 1 %).
    backward = cost(op("uvm_caching:0", "backward"))
    assert backward.time_s == pytest.approx(cost(op("uvm", "backward")).time_s, rel=0.01)


def test_managed_tiers_keep_a_row_wise_state_in_hbm():
    # FBGEMM's construct_split_state puts a row-wise state (row-wise Adagrad's fp32 a row) on the
    # device whatever the weights' location, an element-wise one (Adagrad's fp32 a value) with the
    # weights in managed memory. The default backward: 500 unique rows of 128 B (fp32 x 32).
    hbm_sgd = cost(op("uvm", "backward", optimizer="sgd")).bytes_by_resource[HBM]
    rowwise = cost(op("uvm", "backward", optimizer="rowwise_adagrad")).bytes_by_resource
    elementwise = cost(op("uvm", "backward", optimizer="adagrad")).bytes_by_resource
    # uvm, row-wise: only the rows cross the link, 500 x 128 B each way (64 B requests, +24 B a
    # TLP); the 4 B states are read and written in HBM. Before: 500 x (128 + 64) B each way over
    # PCIe (the 4 B state as one 64 B request), 264,000 wire bytes, 192,000 DDR bytes, HBM as SGD's.
    assert rowwise[PCIE] == 2 * 500 * 128 * 88 / 64 == 176_000
    assert rowwise[DDR] == 2 * 500 * 128
    assert rowwise[HBM] == hbm_sgd + 2 * 500 * 4
    # uvm, element-wise: the 128 B state crosses the link beside its row, none in HBM.
    assert elementwise[PCIE] == 2 * 500 * (128 + 128) * 88 / 64 == 352_000
    assert elementwise[DDR] == 2 * 500 * (128 + 128)
    assert elementwise[HBM] == hbm_sgd
    # uvm_caching, every unique row cached: the row-wise update moves nothing over PCIe (before:
    # its states, 500 x 64 B each way, 88,000 wire bytes); the element-wise one moves its states.
    cached_sgd = cost(op("uvm_caching:0.5", "backward", optimizer="sgd")).bytes_by_resource
    cached = cost(op("uvm_caching:0.5", "backward", optimizer="rowwise_adagrad")).bytes_by_resource
    assert PCIE not in cached and DDR not in cached
    assert cached[HBM] == cached_sgd[HBM] + 2 * 500 * 4
    cached_elementwise = cost(op("uvm_caching:0.5", "backward", optimizer="adagrad")).bytes_by_resource
    assert cached_elementwise[PCIE] == 2 * 500 * 128 * 88 / 64
    assert cached_elementwise[HBM] == cached_sgd[HBM]


def test_ddr_forward_by_hand():
    # On a CPU server the shard has the node's cores and channels to itself. The 128 kB table fits
    # in the 20 MiB LLC, which starts cold: each of the 500 distinct rows is read once from DRAM
    # (2 lines each), the other 500 lookups hit the LLC (20 ns a line).
    server = TINY.model_copy(update={"node": TINY.node.model_copy(update={"accelerators": None})})
    c = cost(op("ddr"), server)
    dram_lines, llc_lines = 500 * 2, 500 * 2
    bandwidth = (dram_lines * 64 + STREAMED) / DDR_BW
    latency = (90e-9 * dram_lines + 20e-9 * llc_lines) / MLP
    compute = 1000 * 32 / CPU_FLOPS
    assert latency > bandwidth > compute
    assert c.time_s == pytest.approx(latency, rel=1e-12)
    assert c.details["llc_hit_rate"] == pytest.approx(0.5, rel=1e-12)
    assert c.bytes_on("ddr") == pytest.approx(dram_lines * 64 + STREAMED)
    # One lookup is latency-bound: a single DRAM access, not a share of the parallelism.
    single = cost(op("ddr", lookups=1.0, batch=1, unique_rows=1.0), server)
    assert single.time_s == pytest.approx(90e-9, rel=1e-12)
    # On a GPU node a rank gets its share of the host, and the indices and pooled vectors cross
    # PCIe: 1000 int64 indices down, 100 pooled 128 B vectors up, two copies, each the host's
    # measured copy call (8 us) and the link's latency (500 ns), the bytes at the GPU's PCIE_SHARE.
    gpus = TINY.node.num_accelerators
    on_gpu = cost(op("ddr"))
    moved = 1000 * 8 + 100 * 128
    copies = 2 * (8e-6 + 500e-9)
    # The rank's quarter of the cores (5 of them), its share of the 2 sockets' LLCs still holds the table.
    rank_latency = (90e-9 * dram_lines + 20e-9 * llc_lines) / (5 * DEFAULT_LINE_FILL_BUFFERS)
    assert rank_latency > bandwidth * gpus
    assert on_gpu.time_s == pytest.approx(rank_latency + copies + moved / PCIE_SHARE, rel=1e-12)
    assert on_gpu.bytes_on("pcie") == moved


def test_optimizer_update_flops_per_row_from_fbgemms_formulas():
    # D = 128: SGD 2 D, row-wise Adagrad 5 D + 5, Adagrad 7 D, Adam 16 D, no step 0.
    assert optimizer_update_flops("sgd", 128) == 256.0
    assert optimizer_update_flops("sparse_sgd", 128) == 256.0
    assert optimizer_update_flops("rowwise_adagrad", 128) == 645.0
    assert optimizer_update_flops("adagrad", 128) == 896.0
    assert optimizer_update_flops("adam", 128) == 2048.0
    assert optimizer_update_flops("none", 128) == 0.0
    with pytest.raises(ConfigError, match="unknown embedding optimizer"):
        optimizer_update_flops("lamb", 128)


@pytest.mark.parametrize(("optimizer", "state_lines"), [("sgd", 0), ("rowwise_adagrad", 1), ("adam", 4)])
def test_ddr_backward_by_hand(optimizer, state_lines):
    # A CPU server's backward of the default op (1000 lookups of 500 unique 128 B rows of a
    # 1000-row table): FBGEMM's CPU radix sort makes 2 passes over 10-bit row ids, 20 B a lookup
    # each; the 1000 gradient rows streamed; each unique row's 2 lines and its state's read and
    # written. Compute: 1000 x 32 accumulating adds and 500 optimizer steps on the 20 cores.
    server = TINY.model_copy(update={"node": TINY.node.model_copy(update={"accelerators": None})})
    c = cost(op("ddr", "backward", optimizer=optimizer), server)
    sort = 1000 * 2 * 20.0
    grads = 1000 * 128.0
    random = 500 * 2 * (2 + state_lines) * 64.0
    assert c.bytes_on("ddr") == pytest.approx(sort + grads + random, rel=1e-12)
    flops = 1000 * 32 + 500 * optimizer_update_flops(optimizer, 32)
    assert c.details["compute_s"] == pytest.approx(flops / CPU_FLOPS, rel=1e-12)
    assert c.details["bandwidth_s"] == pytest.approx((sort + grads + random) / DDR_BW, rel=1e-12)


def test_ssd_forward_by_hand():
    # 4 KiB rows: one page each, no sharing; no page cache (ssd:0). The node's drives serve its four
    # GPUs' shards at once: a rank gets a quarter of them (``rank_share``, as the ddr tier's host).
    c = cost(op("ssd:0", dim=1024))
    pages = 500
    limits = {
        "iops_s": pages / 400e3 * 4,
        "channels_s": pages * 4096 / 8e9 * 4,
        "interface_s": pages * 4096 / 4e9 * 4,
        "latency_s": 100e-6 * pages / 128 * 4,
    }
    for key, value in limits.items():
        assert c.details[key] == pytest.approx(value, rel=1e-12), key
    # + on this GPU node the indices down and the pooled vectors up (two copies, as for ddr)
    copies = 2 * (8e-6 + 500e-9) + (1000 * 8 + 100 * 4096) / PCIE_SHARE
    assert c.details["pcie_s"] == pytest.approx(copies, rel=1e-12)
    assert c.time_s == pytest.approx(pages / 400e3 * 4 + copies, rel=1e-12)
    assert c.bytes_on("ssd") == pytest.approx(pages * 4096)
    assert c.details["read_amplification"] == pytest.approx(1.0)
    # With the page cache holding the table (0.1 x 512 GB), nothing reaches the drive.
    cached = cost(op("ssd", dim=1024))
    assert cached.details["page_cache_hit_rate"] == 1.0 and cached.bytes_on("ssd") == 0.0
    # 128 B rows: 32 to a page, so the 500 rows read share pages (read amplification < 32).
    small = cost(op("ssd:0"))
    assert small.details["pages_read"] == pytest.approx(pages_touched(500, 128, 1000, 4096))
    assert small.details["pages_read"] == pytest.approx(1000 / 32)  # every page of the table


def test_a_few_ssd_reads_wait_one_read_latency_however_the_drives_are_shared():
    """Sharing the drives divides a rank's throughput and queue slots, not one read's latency: a
    batch that reads a few pages waits the datasheet latency at least. It was ``latency x per_drive
    / share`` below the queue depth: 4 reads on zionex's 2 drives (8 GPUs) waited 8 latencies, one
    read on gb200's 144 drives (72 GPUs) half of one. ``pages_read`` is an expected count, so below
    a few reads the floor is the chance of reading at all, ``1 - hit^lookups``: with no page cache,
    one lookup reads for sure and waits a whole read (the Poisson chance of its expected pages,
    ``1 - exp(-pages)``, gave it 63 % of one: a tester's find)."""
    uniform = access_model(UniformAccess(dist="uniform"), 10**9)
    for name in ("skylake-2s", "zionex", "dgx-a100", "gb200-nvl72"):
        system = load_system(name)
        latency = system.node.ssds.device.read_latency_s
        for lookups in (1.0, 20.0):
            shard = op("ssd:0", rows=10**9, dim=64, batch=1, lookups=lookups, unique_rows=None)
            c = cost(shard, system, uniform)
            assert c.details["page_cache_hit_rate"] == 0.0
            assert c.details["latency_s"] == latency, (name, lookups)
    # With a page cache, the chance that some lookup misses it: 1 - hit^lookups.
    system = load_system("skylake-2s")
    hot = access_model(ZipfAccess(dist="zipf", alpha=1.2), 10**9)
    for lookups in (1.0, 3.0):
        c = cost(op("ssd:0.1", rows=10**9, dim=64, batch=1, lookups=lookups, unique_rows=None), system, hot)
        hit = c.details["page_cache_hit_rate"]
        assert 0.5 < hit < 1.0
        want = system.node.ssds.device.read_latency_s * (1.0 - hit**lookups)
        assert c.details["latency_s"] == pytest.approx(want, rel=1e-12), lookups
    # Past the rank's share of the queue, Little's law: read_latency x reads / (QD x share).
    system = load_system("zionex")
    many = cost(op("ssd:0", rows=10**9, dim=1024, batch=64, lookups=2e4, unique_rows=None), system, uniform)
    per_drive = many.details["pages_read"] / system.node.ssds.count
    want = system.node.ssds.device.read_latency_s * per_drive / (128 / system.node.num_accelerators)
    assert many.details["latency_s"] == pytest.approx(want, rel=1e-9)


def test_a_smartssd_read_waits_one_flash_latency_at_least():
    # A lookup the drive's row cache mostly serves: its expected flash reads are a fraction of one,
    # and it waits the latency x the chance of one read (it cost ``latency x reads`` at first, then
    # a whole latency however few the expected reads); a batch of many reads waits a whole one.
    system = load_system("skylake-2s-recssd")
    latency = system.node.ssds.device.read_latency_s
    hot = access_model(ZipfAccess(dist="zipf", alpha=1.2), 10**7)
    one = cost(op("smartssd:1", rows=10**7, dim=64, batch=1, lookups=1.0, unique_rows=None), system, hot)
    assert 0 < one.details["flash_reads"] < 0.5
    want = latency * (1.0 - one.details["ssd_cache_hit_rate"])  # the chance its one lookup misses
    assert one.details["flash_latency_s"] == pytest.approx(want, rel=1e-12)
    uniform = access_model(UniformAccess(dist="uniform"), 10**9)
    few = cost(op("smartssd", rows=10**9, dim=64, batch=1, lookups=20.0, unique_rows=None), system, uniform)
    assert few.details["flash_latency_s"] == pytest.approx(latency, rel=1e-8)


@pytest.mark.parametrize("tier", ["ssd", "smartssd"])
def test_ssd_read_latency_falls_smoothly_as_the_cache_grows(tier):
    """The expected reads of a batch fall toward 0 as the cache comes to hold every row; the read
    latency charged must fall with them, with no step: it was a whole read latency (85 us) at 5e-6
    expected pages and 0 once the cache held the table (a ~500x drop in the lookup's time)."""
    system = load_system("skylake-2s" if tier == "ssd" else "skylake-2s-recssd")
    group = system.node.ssds
    dram = group.device.dram_cache_bytes * group.count
    cache = system.node.host_memory_capacity_bytes if tier == "ssd" else dram
    rows = min(10**7, int(0.5 * cache / 256))
    hot = access_model(ZipfAccess(dist="zipf", alpha=1.2), rows)
    full = rows * 256 / cache
    key = "latency_s" if tier == "ssd" else "flash_latency_s"
    latencies = []
    for f in [0.0, *(full * x for x in (0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999, 1.0, 1.01))]:
        shard = op(f"{tier}:{f!r}", rows=rows, dim=64, batch=64, lookups=64.0, unique_rows=None)
        latencies.append(cost(shard, system, hot).details[key])
    assert latencies[0] == pytest.approx(system.node.ssds.device.read_latency_s)
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(latencies))
    # continuity: the step into full caching is no bigger than the last expected fraction of a read
    assert latencies[-3] < 1e-3 * latencies[0] and latencies[-1] == 0.0


def test_the_gen4_drive_reads_at_its_capacity_class_latency():
    # nvme-gen4 is a 3.84 TB drive: the Lenovo P4500 guide's 4.0 TB figure (115 us), not the
    # 1.0/2.0 TB drives' 85 us. A one-row lookup from no page cache waits for its expected page
    # reads (about one; ``drive_time_s``) at that latency.
    system = load_system("dgx-h100")
    assert system.node.ssds is not None
    assert system.node.ssds.device.read_latency_s == pytest.approx(115e-6, rel=1e-12)
    one = cost(op("ssd:0", rows=10**8, dim=64, batch=1, lookups=1.0, unique_rows=1.0), system)
    pages = one.details["pages_read"]
    assert 0.99 < pages <= 1.0
    # It misses for sure, so it waits a whole read (it was 115 us x (1 - exp(-pages)), 73 us).
    assert one.details["latency_s"] == pytest.approx(115e-6, rel=1e-12)


def test_an_ssd_lookup_gets_its_share_of_the_nodes_page_cache():
    """One OS page cache per node, shared by its ranks, as the planner books it: the node's ssd
    shards, on all its ranks, split it by bytes (``cache_share``), and a shard with no share gets
    the whole of it. Two tables each as big as skylake-2s's page cache each hit 1.0 (30.8 us)
    before; sharing it, each hits 0.5 and waits for its misses."""
    cpu = load_system("skylake-2s")
    cache = 0.1 * cpu.node.host_memory_capacity_bytes
    rows = int(cache / 256)
    uniform = access_model(UniformAccess(dist="uniform"), rows)
    shard = op("ssd", rows=rows, dim=64, batch=512, lookups=512 * 40.0, unique_rows=None)
    alone = cost(shard, cpu, uniform)
    assert alone.details["page_cache_hit_rate"] == pytest.approx(1.0, abs=1e-6)
    halved = cost(replace(shard, cache_share=0.5), cpu, uniform)
    assert halved.details["page_cache_hit_rate"] == pytest.approx(0.5, rel=1e-6)
    assert halved.time_s > 100 * alone.time_s
    # A GPU node's one page cache is not cut to a rank's share: the node's only ssd shard, as big
    # as the booked cache, hits 1.0 on dgx-a100 (it hit 1/8, ``rank_share``, a reviewer's find).
    gpu = load_system("dgx-a100")
    rows = int(0.1 * gpu.node.host_memory_capacity_bytes / 256)
    uniform = access_model(UniformAccess(dist="uniform"), rows)
    c = cost(replace(shard, rows=rows), gpu, uniform)
    assert c.details["page_cache_hit_rate"] == pytest.approx(1.0, abs=1e-6)
    quarter = cost(replace(shard, rows=rows, cache_share=0.25), gpu, uniform)
    assert quarter.details["page_cache_hit_rate"] == pytest.approx(0.25, rel=1e-6)


def test_a_fully_cached_ssd_shard_costs_at_least_its_ddr_lookup():
    # With the whole table in the page cache, an ssd lookup is a ddr lookup plus the cache's
    # bookkeeping: it skipped the rank's share of a GPU node's host and the streamed indices,
    # offsets and pooled vectors, and came out 4x faster than ddr on dgx-a100 (a tester's find).
    for name in ("dgx-a100", "skylake-2s"):
        system = load_system(name)
        shard = replace(rmc1_op("ddr", 1024), rows=4_000)
        ddr = cost(shard, system, RMC1_UNIFORM).time_s
        cached = cost(replace(shard, tier="ssd:1"), system, RMC1_UNIFORM)
        assert cached.details["page_cache_hit_rate"] == pytest.approx(1.0)
        assert cached.time_s >= ddr * (1 - 1e-9), name


def test_smartssd_forward_by_hand():
    # The node's 4 GPUs read its drive at once: a rank gets a quarter of its flash channels, dies,
    # NDP engine and interface (``rank_share``, as the ssd tier's drives).
    c = cost(op("smartssd", dim=1024))
    reads = 1000 / 4 * (1 - 0.5**4)  # 500 of 1000 rows, 4 to a 16 KiB flash page
    assert c.details["flash_reads"] == pytest.approx(reads)
    assert c.details["flash_s"] == pytest.approx(reads * 16384 / 8e9 * 4, rel=1e-12)
    assert c.details["flash_latency_s"] == pytest.approx(100e-6 * reads / 32 * 4, rel=1e-12)
    assert c.details["ndp_s"] == pytest.approx(1000 * 1024 / 1e9 * 4, rel=1e-12)
    assert c.details["interface_s"] == pytest.approx((1000 * 8 + 100 * 4096) / 4e9 * 4, rel=1e-12)
    # The 1 GFLOP/s engine, then on this GPU node the transfer on to the GPU (two copies).
    copies = 2 * (8e-6 + 500e-9) + (1000 * 8 + 100 * 4096) / PCIE_SHARE
    assert c.time_s == pytest.approx(1000 * 1024 / 1e9 * 4 + copies, rel=1e-12)
    assert c.bytes_on("ssd") == pytest.approx(1000 * 8 + 100 * 4096)
    # Half the drive's 1 GiB DRAM as a row cache holds the whole 4 MB table.
    assert cost(op("smartssd:0.5", dim=1024)).details["flash_reads"] == 0.0


_NMP_LIMITS = ("rank_dram_s", "rank_latency_s", "rank_cache_s", "processing_s", "channel_s", "host_s")


def test_nmp_forward_by_hand():
    # 16 DIMMs x 2 ranks, 2 DIMMs a channel; the table's channel's RankCaches (4 x 64 KiB) hold the
    # whole table: no DRAM reads. The node's
    # 4 GPUs share the DIMMs and channels (a quarter each), and the indices and pooled vectors
    # cross PCIe (32 GB/s, 0.5 us).
    c = cost(op("nmp", lookups=100.0, unique_rows=100.0))
    assert c.details["rank_cache_hit_rate"] == 1.0
    assert c.bytes_on("nmp_rank") == 0.0
    # Pooling 1: one partial sum per bag up, the instructions down, and what the host streams as
    # for the ddr tier (indices, offsets, pooled vectors: 100 bags).
    channel = 100 * 8 + 100 * 128 + (100 * 8 + 101 * 8 + 100 * 128)
    assert c.details["channel_s"] == pytest.approx(4 * channel / DDR_BW, rel=1e-12)
    assert c.details["processing_s"] == pytest.approx(4 * 100 * 32 * 2 / (32 * 1e9 * 8), rel=1e-12)
    assert c.details["rank_cache_s"] == pytest.approx(4 * 100 * 2 * 1e-9 / 32, rel=1e-12)
    # int64 indices there, the pooled rows back: two copies, each a copy call (8 us) and a latency
    pcie = 2 * (8e-6 + 0.5e-6) + (100 * 8 + 100 * 128) / PCIE_SHARE
    assert c.details["pcie_s"] == pytest.approx(pcie, rel=1e-12)
    assert c.time_s == pytest.approx(4 * channel / DDR_BW + pcie, rel=1e-12)
    # On a CPU server the lookups have the node to themselves and nothing crosses PCIe.
    server = load_system("skylake-2s-recnmp")
    alone = cost(op("nmp", lookups=100.0, unique_rows=100.0), server)
    assert alone.details["pcie_s"] == 0.0
    assert alone.time_s == pytest.approx(max(v for k, v in alone.details.items() if k in _NMP_LIMITS))
    # A table 1000 x larger: it lives in one channel's 2 DIMMs x 2 ranks, whose RankCaches hold
    # 2048 of its rows (hit rate 2048 / 1e6); misses stream at 16 x 2 ranks x 25.6 GB/s.
    big = cost(op("nmp", rows=1_000_000, unique_rows=None))
    hit = 4 * 65536 / 128 / 1e6
    assert big.details["rank_cache_hit_rate"] == pytest.approx(hit)
    dram = 1000 * (1 - hit) * 2 * 64
    assert big.details["rank_dram_s"] == pytest.approx(4 * dram / (16 * 51.2e9 * CPU_MEMORY_EFFICIENCY))
    # The backward goes through the host, as the ddr tier's.
    back = cost(op("nmp", "backward"))
    assert back.time_s == cost(op("ddr", "backward")).time_s


def test_an_nmp_lookup_gets_its_share_of_the_nodes_rank_caches():
    """The node's nmp tables share its DIMMs' RankCaches: a shard with ``cache_share`` gets that
    share of the node's (32 DIMM ranks x 64 KiB = 2 MiB), at most its channel's (4 x 64 KiB, the
    ranks its rows are in); none, the channel's. Each table held its channel's whole RankCaches
    before, however many shared them: 64 tables of one size on TINY each hit 2048 / 1e6 rather
    than 256 / 1e6 (a tester's find)."""
    big = op("nmp", rows=1_000_000, unique_rows=None)
    alone = cost(big)
    assert alone.details["rank_cache_hit_rate"] == pytest.approx(4 * 65536 / 128 / 1e6)
    shared = cost(replace(big, cache_share=1 / 64))
    assert shared.details["rank_cache_hit_rate"] == pytest.approx(32 * 65536 / 64 / 128 / 1e6)
    assert shared.bytes_on("nmp_rank") > alone.bytes_on("nmp_rank")
    # A share past the channel's RankCaches is held to them: the table's rows are in its channel.
    assert cost(replace(big, cache_share=0.25)).details["rank_cache_hit_rate"] == pytest.approx(
        alone.details["rank_cache_hit_rate"]
    )


def _tiny_with_gpus(count: int) -> System:
    """TINY (2 sockets, 2 PCIe switches, NMP DIMMs) with ``count`` GPUs."""
    node = TINY.node
    accelerators = node.accelerators.model_copy(update={"count": count})
    return TINY.model_copy(update={"node": node.model_copy(update={"accelerators": accelerators})})


@pytest.mark.parametrize(("gpus", "dram_ranks"), [(1, 2), (3, 4)])
def test_nmp_gives_a_rank_its_sockets_dimms_and_its_share_of_the_cores(gpus: int, dram_ranks: int) -> None:
    # A rank's NMP tables are in its socket's DIMMs and channels, shared with the ranks on that
    # socket (``Node.host_dram_ranks``, as the ddr and uvm tiers' DRAM): a lone GPU of 2 sockets has
    # half the node's, 3 GPUs on 2 sockets (2 on socket 0) a quarter each; the host's sum of the
    # partial sums runs on the rank's share of the node's cores (1 / GPUs). With 4 GPUs both are a
    # quarter: a limit is the whole node's time over the share, the 4-GPU one x divisor / 4.
    four = cost(op("nmp"))
    assert four.details["host_s"] > 0.0 and four.details["channel_s"] > 0.0
    system = _tiny_with_gpus(gpus)
    assert system.node.host_dram_ranks == dram_ranks
    got = cost(op("nmp"), system)
    for name in _NMP_LIMITS:
        divisor = gpus if name == "host_s" else dram_ranks
        assert got.details[name] == pytest.approx(four.details[name] * divisor / 4, rel=1e-12), name


# ------------------------------------------------------------------------------ registry, errors


def test_registry_and_tier_strings():
    assert registered_tiers() == sorted(["hbm", "uvm", "uvm_caching", "ddr", "ssd", "nmp", "smartssd"])
    assert parse_tier("uvm_caching:0.1") == ("uvm_caching", 0.1)
    assert parse_tier("hbm") == ("hbm", None)
    for bad in ("tape", "uvm_caching:x", "uvm_caching:1.5", "hbm:0.1", "ssd:nan"):
        with pytest.raises(ConfigError):
            cost(op(bad))
    with pytest.raises(ConfigError, match="'update'"):
        cost(op("hbm", "scatter"))
    # A replicated table's dense update runs in HBM only.
    with pytest.raises(ConfigError, match="dense update runs in HBM only"):
        cost(op("uvm", "update"))
    with pytest.raises(ConfigError):
        cost(op("hbm", "backward", optimizer="lamb"))


def test_missing_hardware_is_infeasible():
    cpu_only = load_system("skylake-2s")
    for tier in ("hbm", "uvm", "uvm_caching", "nmp", "smartssd"):
        with pytest.raises(InfeasibleError):
            cost(op(tier), cpu_only)
    for tier in ("ssd", "smartssd"):
        with pytest.raises(InfeasibleError):
            cost(op(tier, "backward"))


def test_unique_rows_come_from_the_op_or_the_access_model():
    uniform = replace(op("hbm", "backward"), unique_rows=None)
    expected = 1000 * (1 - (1 - 1 / 1000) ** 1000)
    assert cost(uniform).details["unique_rows"] == pytest.approx(expected)
    skewed = access_model(ZipfAccess(dist="zipf", alpha=1.2), 1000)
    assert cost(uniform, access=skewed).details["unique_rows"] == pytest.approx(skewed.expected_unique(1000))
    assert cost(uniform, access=skewed).time_s < cost(uniform).time_s


# ------------------------------------------------------------------------------ representative ops

DCNV2 = load_system("dgx-a100")
ZIPF_40M = access_model(ZipfAccess(dist="zipf", alpha=1.05), 40_000_000)


def dcnv2_op(tier: str, pass_: str) -> Embedding:
    """Table t20 of dlrm-dcnv2 (40M rows x 128 fp32, pooling 100) table-wise at global batch 55,296."""
    return Embedding(
        table="t20",
        pass_=pass_,
        rows=40_000_000,
        dim=128,
        dtype="fp32",
        batch=55296,
        lookups=55296 * 100.0,
        tier=tier,
        optimizer="rowwise_adagrad" if pass_ == "backward" else "none",
    )


def test_dcnv2_like_op_orders_the_gpu_tiers():
    for pass_ in ("forward", "backward"):
        hbm, caching, uvm = (
            cost(dcnv2_op(t, pass_), DCNV2, ZIPF_40M).time_s for t in ("hbm", "uvm_caching", "uvm")
        )
        if pass_ == "forward":
            assert hbm < caching < uvm, pass_
        else:
            # Row-wise Adagrad's state is in HBM for every tier (FBGEMM ``construct_split_state``)
            # and every unique row fits the cache: the cached backward moves nothing over PCIe and
            # is the hbm tier's update. (Before the state was placed in HBM: hbm < caching.)
            assert hbm == caching < uvm, pass_
    fwd = cost(dcnv2_op("hbm", "forward"), DCNV2, ZIPF_40M)
    # 5.5M rows of 512 B: ~2.8 GB gathered in a few milliseconds, skew keeps 2/3 of them in L2.
    assert 1e-3 < fwd.time_s < 5e-3
    assert 0.5 < fwd.details["l2_hit_rate"] < 0.8


RMC1_UNIFORM = access_model(UniformAccess(dist="uniform"), 4_000_000)


def rmc1_op(tier: str, batch: int = 165) -> Embedding:
    """One RMC1 table (4M rows x 32 fp32, pooling 80, uniform) at DeepRecSys's mean query size."""
    return Embedding(
        table="t_0",
        pass_="forward",
        rows=4_000_000,
        dim=32,
        dtype="fp32",
        batch=batch,
        lookups=80.0 * batch,
        tier=tier,
    )


def test_recnmp_ratio_on_an_rmc1_like_op():
    """RecNMP (ISCA 2020) reports up to 9.8x SLS memory latency speedup with its co-optimisations
    and 4.2x throughput overall (its abstract); skylake-2s-recnmp has 4 ranks per channel (2 DIMMs x
    2). recsim: 3.6x once the lookups fill the ranks (rank-level parallelism, bound by the ranks'
    banks: a bag's partial sums, one per DIMM of its channel, and what the host streams leave the
    channels room). A few bags keep only as many cores busy on the host (it parallelises over bags),
    each with its 10 fill buffers, where the DIMMs' ranks all work on every bag: 16x for up to 4
    bags (one DRAM latency on the DIMMs), falling to 4.8x at 16 bags. (It was 2.5x while a bag's
    rows were spread over every DIMM of the node, 23 partial sums a bag; and 1.0x while one bag was
    given every core's fill buffers.) Not tuned."""
    system = load_system("skylake-2s-recnmp")

    def ratio(batch: int) -> float:
        ddr = cost(rmc1_op("ddr", batch), system, RMC1_UNIFORM).time_s
        return ddr / cost(rmc1_op("nmp", batch), system, RMC1_UNIFORM).time_s

    assert ratio(1) == pytest.approx(16.0, rel=0.02)
    assert ratio(4) == pytest.approx(16.0, rel=0.02)
    assert ratio(4) > ratio(16) > ratio(165)
    assert ratio(165) == pytest.approx(3.59, rel=0.02)
    assert ratio(1024) == pytest.approx(3.59, rel=0.02)


def _recnmp_with(dimms_per_channel: int) -> System:
    """skylake-2s-recnmp with ``dimms_per_channel`` RecNMP DIMMs a channel; 4 is RecNMP's simulated
    8-rank channel, which a Skylake-SP does not take (``model_copy`` skips that check)."""
    system = load_system("skylake-2s-recnmp")
    node = system.node
    cpu = node.cpus.device.model_copy(update={"max_dimms_per_channel": None})
    memory = node.host_memory.model_copy(update={"dimms_per_channel": dimms_per_channel})
    new_node = node.model_copy(
        update={"cpus": node.cpus.model_copy(update={"device": cpu}), "host_memory": memory}
    )
    return system.model_copy(update={"node": new_node})


def _recnmp_ratios() -> tuple[list[float], list[float]]:
    """DDR / NMP time of the RMC1-like op at 1, 2, 4 dual-rank DIMMs a channel, and its partial
    sums per bag."""
    ratios, partials = [], []
    for dimms in (1, 2, 4):
        system = _recnmp_with(dimms)
        ddr = cost(rmc1_op("ddr"), system, RMC1_UNIFORM)
        nmp = cost(rmc1_op("nmp"), system, RMC1_UNIFORM)
        ratios.append(ddr.time_s / nmp.time_s)
        partials.append(nmp.details["partial_sums"] / 165)
        assert nmp.details["ranks_per_channel"] == 2 * dimms
    return ratios, partials


def test_recnmp_gains_with_the_ranks_of_a_channel():
    """RecNMP's rank-level parallelism: its speedup rises from 2 to 4 to 8 ranks per channel (1, 2,
    4 dual-rank DIMMs). A tester found it falling at 8 (1.81x, 2.51x, 1.72x at batch 165): every
    bag's rows were interleaved over the node's 48 DIMMs and returned ~39 partial sums. A bag's
    rows share its channel (RecNMP's table allocation), so it returns one per DIMM of the channel
    holding one of them: at most 4 at 4 DIMMs. The band is the paper's rank-level parallelism:
    never above the ranks a channel has ("4 DIMM x 2 ranks/DIMM gives 8x internal bandwidth"),
    and at 8 ranks under its 9.8x with every optimisation (1.8x, 3.6x, 5.7x today; see the nmp
    module docstring, "Against the paper"). The abstract's other figure, 4.2x, is the overall
    throughput of whole inferences, whose MLPs RecNMP does not speed up: no bound on one op."""
    ratios, partials = _recnmp_ratios()
    assert 1.0 < ratios[0] < ratios[1] < ratios[2]
    for ranks, ratio in zip((2, 4, 8), ratios, strict=True):
        assert ratio < ranks, ranks
    assert ratios[2] < 9.8
    # 80 rows of a bag over the channel's d DIMMs: d x (1 - (1 - 1/d)^80) partial sums.
    assert partials == pytest.approx([1.0, 2.0, 4.0 * (1 - 0.75**80)], rel=1e-9)


def test_a_skewed_host_table_reads_its_hot_rows_from_the_llc():
    # A tester's find: a 40M-row table's host lookup on zionex cost the same under Zipf 1.05 as
    # uniform, though the hottest rows, a few tens of MB, take most lookups: the LLC was ignored.
    system = load_system("zionex")
    uniform = access_model(UniformAccess(dist="uniform"), 40_000_000)
    e = replace(dcnv2_op("ddr", "forward"), batch=6912, lookups=6912 * 100.0)
    flat, skewed = cost(e, system, uniform), cost(e, system, ZIPF_40M)
    assert flat.details["llc_hit_rate"] < 0.01
    # A rank holds half a socket's 38.5 MiB (8 GPUs on 4 sockets): 39,424 rows of 512 B, whose
    # LRU hit rate is 0.64; the cold start costs a few points of it.
    rows = llc_capacity_bytes(system, rank_share(system)) / 512
    assert rows == pytest.approx(38.5 * 2**20 / 2 / 512)
    hit = ZIPF_40M.lru_hit_rate(rows)
    assert 0.6 < hit < 0.7
    assert hit - 0.05 < skewed.details["llc_hit_rate"] < hit
    # Bandwidth-bound: the DRAM carries only the misses, so the skewed lookup is ~2x faster.
    assert skewed.bytes_on("ddr") < 0.5 * flat.bytes_on("ddr")
    assert 0.3 < skewed.time_s / flat.time_s < 0.55


def test_a_host_lookup_holds_one_llc_domain_at_most():
    # Every socket's LLC caches the same hot rows (the bags run on all of them): a CPU server's
    # lookup holds one socket's LLC, not the sum; a Zen 2 core reaches its CCX's 16 MiB only;
    # a GPU node's ranks share the node's LLCs.
    server = load_system("skylake-2s")
    assert llc_capacity_bytes(server, rank_share(server)) == pytest.approx(27.5 * 2**20)
    a100 = load_system("dgx-a100")  # 2 EPYC 7742 x 16 CCX for 8 ranks: a whole CCX each
    assert llc_capacity_bytes(a100, rank_share(a100)) == pytest.approx(16 * 2**20)
    h100 = load_system("dgx-h100")  # 2 x 105 MiB for 8 ranks
    assert llc_capacity_bytes(h100, rank_share(h100)) == pytest.approx(105 * 2**20 / 4)
    # A lookup of a handful of rows finds a cold LLC: DRAM latency, however hot its rows.
    one = replace(dcnv2_op("ddr", "forward"), batch=1, lookups=1.0)
    assert cost(one, server, ZIPF_40M).details["llc_hit_rate"] == pytest.approx(0.0, abs=1e-9)


def test_a_host_lookup_of_few_bags_keeps_as_few_cores_busy():
    # PyTorch's EmbeddingBag and FBGEMM parallelise a CPU lookup over its bags: one bag is one
    # core's walk, its rows' lines 10 at a time, Skylake's fill buffers (a tester's find: a single bag was
    # given every core of the node, 400 misses in flight, and cost one DRAM latency).
    system = load_system("skylake-2s")
    one = cost(rmc1_op("ddr", 1), system, RMC1_UNIFORM)
    lines = 80 * math.ceil(32 * 4 / system.node.host_memory.device.access_granularity_bytes)
    latency = system.node.host_memory.device.latency_s
    assert one.details["threads"] == 1.0
    assert one.details["latency_s"] == pytest.approx(lines * latency / 10)
    cores = system.node.cpus.count * system.node.cpus.device.cores
    assert cost(rmc1_op("ddr", 4 * cores), system, RMC1_UNIFORM).details["threads"] == cores


def _with_fill_buffers(system: System, buffers: int | None) -> System:
    """``system`` with its CPU's ``line_fill_buffers`` set to ``buffers``."""
    cpus = system.node.cpus
    cpu = cpus.device.model_copy(update={"line_fill_buffers": buffers})
    node = system.node.model_copy(update={"cpus": cpus.model_copy(update={"device": cpu})})
    return system.model_copy(update={"node": node})


def test_host_lookups_keep_their_cpus_fill_buffers_in_flight():
    # The library's CPUs say how many L1D misses a core keeps in flight: Skylake-class Intel cores
    # 10, Golden Cove (Sapphire Rapids) and Raptor Cove (Emerald Rapids) 16; a CPU without a
    # source (Zen 2, Neoverse V2) is costed with the Skylake-class default, and hw show says so.
    assert load_system("skylake-2s").node.cpus.device.fill_buffers == 10
    assert load_system("broadwell-2s").node.cpus.device.fill_buffers == 10
    assert load_system("dgx-h100").node.cpus.device.fill_buffers == 16
    assert load_system("dgx-b200").node.cpus.device.fill_buffers == 16
    epyc = load_system("dgx-a100").node.cpus.device
    assert epyc.line_fill_buffers is None and epyc.fill_buffers == DEFAULT_LINE_FILL_BUFFERS == 10
    assert [label for label, _ in device_defaults(epyc)] == ["line_fill_buffers"]
    assert device_defaults(load_system("dgx-h100").node.cpus.device) == []
    # One bag is one core's dependent walk through 80 uniform rows of 2 lines: latency-bound, so a
    # core with 16 fill buffers takes 10/16 of the time of one with 10, at the same DRAM latency.
    skylake = load_system("skylake-2s")
    golden_cove = _with_fill_buffers(skylake, 16)
    ten = cost(rmc1_op("ddr", 1), skylake, RMC1_UNIFORM)
    sixteen = cost(rmc1_op("ddr", 1), golden_cove, RMC1_UNIFORM)
    assert ten.details["threads"] == sixteen.details["threads"] == 1.0
    assert ten.details["memory_parallelism"] == 10.0 and sixteen.details["memory_parallelism"] == 16.0
    assert sixteen.details["latency_s"] == pytest.approx(ten.details["latency_s"] * 10 / 16, rel=1e-12)
    # The backward's random row reads (the update, the node's 40 cores over ~13k unique rows) as well.
    back = replace(rmc1_op("ddr"), pass_="backward", optimizer="sgd")
    ten_b = cost(back, skylake, RMC1_UNIFORM)
    sixteen_b = cost(back, golden_cove, RMC1_UNIFORM)
    assert sixteen_b.details["latency_s"] == pytest.approx(ten_b.details["latency_s"] * 10 / 16, rel=1e-12)


def test_recnmp_has_nothing_to_reduce_at_pooling_one():
    # One lookup per bag: the DIMMs return each row as its own partial sum, and the host still
    # streams the indices and pooled vectors, so the channels carry about what the ddr tier's do.
    # More rows per bag reduce more inside the DIMMs until the ranks, not the channels, bind: then
    # the gain is the ranks' parallelism, and the host's pooled vector per bag, a smaller share of
    # the ddr tier's traffic at pooling 80, takes it down a little (3.7x at 20, 3.6x at 80).
    system = load_system("skylake-2s-recnmp")
    ratios = []
    for pooling in (1.0, 4.0, 20.0, 80.0):
        e = replace(rmc1_op("ddr", 1024), lookups=pooling * 1024)
        ddr = cost(e, system, RMC1_UNIFORM).time_s
        ratios.append(ddr / cost(replace(e, tier="nmp"), system, RMC1_UNIFORM).time_s)
    assert 0.9 < ratios[0] < 1.2
    assert ratios[0] < ratios[1] < ratios[2]
    assert ratios[3] == pytest.approx(ratios[2], rel=0.05)


def test_recssd_ratio_on_an_rmc1_like_op():
    """RecSSD (ASPLOS 2021) reports ~2x lower end-to-end latency than a conventional SSD. recsim,
    page cache off (the table would otherwise sit in DRAM): ~1.16x, from flash-page sharing only, as
    the library's Cosmos+ drive is flash-page-bound on both paths and host I/O-stack time is not
    modelled. Not tuned."""
    system = load_system("skylake-2s-recssd")
    conventional = cost(rmc1_op("ssd:0"), system, RMC1_UNIFORM).time_s
    in_ssd = cost(rmc1_op("smartssd"), system, RMC1_UNIFORM).time_s
    assert conventional / in_ssd == pytest.approx(1.16, rel=0.05)
    # With the default page cache the 512 MB table lives in host DRAM: the conventional path wins.
    assert cost(rmc1_op("ssd"), system, RMC1_UNIFORM).time_s < in_ssd


def test_every_dcnv2_table_costs_on_every_gpu_tier():
    workload = WorkloadLibrary().workload("dlrm-dcnv2")
    for table in workload.tables:
        model = access_model(workload.table_access(table), table.rows)
        for tier in ("hbm", "uvm", "uvm_caching"):
            for pass_ in ("forward", "backward"):
                e = Embedding(
                    table=table.name,
                    pass_=pass_,
                    rows=table.rows,
                    dim=workload.table_dim(table),
                    dtype=workload.table_dtype(table),
                    batch=6912,
                    lookups=6912 * workload.table_lookups(table),
                    tier=tier,
                    optimizer="rowwise_adagrad" if pass_ == "backward" else "none",
                )
                c = cost(e, DCNV2, model)
                assert math.isfinite(c.time_s) and c.time_s > 0
                assert c.details["table_bytes_read"] >= c.details["bytes_returned"]


@settings(max_examples=60, deadline=None)
@given(
    tier=st.sampled_from(["hbm", "uvm", "uvm_caching", "ddr", "nmp", "smartssd"]),
    pass_=st.sampled_from(["forward", "backward"]),
    bags=st.floats(min_value=0.0, max_value=5000.0),
    more=st.floats(min_value=1.0, max_value=8.0),
    lookups=st.floats(min_value=1.0, max_value=20000.0),
)
def test_more_bags_or_wider_vectors_are_never_faster(tier, pass_, bags, more, lookups):
    # Pooling into more bags writes (forward) or reads (backward) more pooled vectors; an fp16
    # output is never slower than the table's fp32 one. Every tier, both passes.
    if tier == "smartssd" and pass_ == "backward":
        pass_ = "forward"  # RecSSD is an inference design: no backward (test_registry_and_tier_strings)
    if tier == "ddr" and pass_ == "forward":
        # A host lookup runs its bags on as many cores (``ddr.cpu_threads``): more bags may bring
        # more cores, which is faster. With every core of the rank's share busy either way, more
        # bags only mean more output.
        cores = TINY.node.cpus.count * TINY.node.cpus.device.cores * rank_share(TINY)
        assume(min(bags, lookups) >= cores)
    base = op(tier, pass_, lookups=lookups, unique_rows=min(500.0, lookups), bags=bags)
    wider = cost(replace(base, bags=bags * more)).time_s
    assert wider >= cost(base).time_s * (1 - 1e-12)
    narrow = replace(base, output_dtype="fp16")
    assert cost(narrow).time_s <= cost(base).time_s * (1 + 1e-12)


def test_int8_rows_carry_the_training_or_the_inference_tbes_scale_and_bias():
    # FBGEMM's training TBE appends two fp32 to an int8 row (kINT8QparamsBytes = 8), its inference
    # TBE (IntNBit) two fp16 (unpadded_row_size_in_bytes: dim + 4); int4 has only the latter. The
    # host tiers' lookups (no GPU TBE) store the inference rows unpadded.
    trained = cost(op("ddr", dtype="int8", dim=128), DCNV2)
    served = cost(op("ddr", dtype="int8", dim=128, inference=True), DCNV2)
    assert trained.details["row_bytes"] == 128 + 8
    assert served.details["row_bytes"] == 128 + 4
    assert cost(op("ddr", dtype="int4", dim=128), DCNV2).details["row_bytes"] == 64 + 4
    assert cost(op("ddr", dtype="int4", dim=128, inference=True), DCNV2).details["row_bytes"] == 64 + 4
    # Unquantised rows carry nothing in either.
    assert cost(op("hbm", dtype="fp16", dim=128, inference=True)).details["row_bytes"] == 256


def test_the_gpu_inference_tbe_pads_its_rows_to_16_bytes():
    # IntNBitTableBatchedEmbeddingBagsCodegen stores rows of padded_row_size_in_bytes(D, ty,
    # row_alignment), row_alignment 16 on a GPU: int8 dim 128 is 132 B unpadded, 144 B stored, more
    # than the training TBE's 136 B (a review found the unpadded 132 B priced for GPU lookups).
    trained = cost(op("hbm", dtype="int8", dim=128))
    served = cost(op("hbm", dtype="int8", dim=128, inference=True))
    assert trained.details["row_bytes"] == 128 + 8
    assert served.details["row_bytes"] == 144
    assert served.time_s > trained.time_s
    for tier in ("uvm", "uvm_caching"):
        assert cost(op(tier, dtype="int4", dim=64, inference=True)).details["row_bytes"] == 48  # 32 + 4
    assert cost(op("hbm", dtype="int4", dim=128, inference=True)).details["row_bytes"] == 80  # 64 + 4
    assert cost(op("hbm", dtype="fp16", dim=100, inference=True)).details["row_bytes"] == 208  # 200
    # Rows already a multiple of 16 B are as they were.
    assert cost(op("hbm", dtype="fp32", dim=32, inference=True)).details["row_bytes"] == 128


def test_narrower_rows_never_slow_a_stateful_update():
    # A large table (no L2 reuse) whose optimizer state, fp32 beside every row, outweighs an int8
    # row: the update's efficiency is that of a visit (row and state), so fewer bytes are never
    # slower (a tester found int8 + Adam slower than fp16 + Adam).
    for optimizer in ("sgd", "rowwise_adagrad", "adagrad", "adam"):
        times = [
            cost(
                op(
                    "hbm",
                    "backward",
                    dtype=d,
                    optimizer=optimizer,
                    rows=10**7,
                    dim=128,
                    lookups=1e6,
                    unique_rows=6e5,
                )
            ).time_s
            for d in ("fp32", "fp16", "int8")
        ]
        assert times[0] > times[1] > times[2], (optimizer, times)


def test_state_in_host_memory_is_no_part_of_an_hbm_visit():
    # uvm_caching keeps the optimizer state in managed (host) memory: its update kernel's HBM
    # visit is the row alone, as for SGD; in HBM (the hbm tier) the state is part of the visit.
    from recsim.cost.embedding.base import Lookup
    from recsim.cost.embedding.gpu import lookup_update

    e = op(
        "hbm", "backward", optimizer="adam", rows=10**7, dim=128, dtype="int8", lookups=1e6, unique_rows=6e5
    )
    lookup = Lookup(e, TINY, access_model(UniformAccess(dist="uniform"), e.rows), None)
    in_hbm = lookup_update(lookup, row_update_hbm_bytes=1e6, state_in_hbm=True)
    in_host = lookup_update(lookup, row_update_hbm_bytes=1e6, state_in_hbm=False)
    assert in_host.time_s > in_hbm.time_s  # the same bytes at a small row's efficiency


def test_bags_without_lookups_give_a_host_lookup_no_more_cores():
    # Pooling below one: 4 lookups spread over 4, 8 or 16 bags keep 4 cores busy, not 8 or 16
    # (a reviewer's find: the 8-bag lookup, the same rows and more output, came out 1.9x faster).
    system = load_system("skylake-2s")
    times = []
    for bags in (4.0, 8.0, 16.0):
        e = replace(rmc1_op("ddr", 4), lookups=4.0, dim=1024, bags=bags)
        c = cost(e, system, RMC1_UNIFORM)
        assert c.details["threads"] == 4.0
        times.append(c.time_s)
    assert times == sorted(times)


def test_a_cached_tables_fill_and_write_back_cross_pcie_both_ways_at_once():
    # FBGEMM's insert kernel evicts a dirty row and fills the new one slot by slot: the two go
    # opposite ways over PCIe together (they had been charged one after the other, the write-back
    # in the backward: about 1.8x too slow when most lookups miss, an embedding tester's find).
    system = load_system("dgx-h100")
    big = {"rows": 10**8, "dim": 128, "batch": 65536, "lookups": 65536 * 20.0, "unique_rows": 1.30e6}
    access = access_model(UniformAccess(dist="uniform"), 10**8)
    fwd = cost(op("uvm_caching:0.2", **big), system, access)
    bwd = cost(op("uvm_caching:0.2", "backward", **big), system, access)
    filled = fwd.details["filled_rows"]
    assert filled > 0 and fwd.details["evicted_rows"] == filled
    # The fill's time is one way's bytes over the GPU's share of PCIe, not both ways'.
    one_way = pcie_wire_bytes(filled * 512) / system.node.host_bandwidth_bytes_per_s_per_accelerator
    assert fwd.details["fill_s"] == pytest.approx(one_way, rel=1e-9)
    assert fwd.bytes_on("pcie") >= pcie_wire_bytes(2 * filled * 512)
    # The backward writes nothing of the evicted rows back any more.
    assert bwd.bytes_on("pcie") == pytest.approx(pcie_wire_bytes(bwd.details["unfit_rows"] * 512))
    # Neither pass is faster than the same pass on HBM.
    assert bwd.time_s >= cost(op("hbm", "backward", **big), system, access).time_s


def test_an_inference_cache_fill_writes_nothing_back():
    # FBGEMM's inference TBE fills its UVM cache with ``lru_cache_insert_byte_kernel``
    # (``split_embeddings_cache/lru_cache_populate_byte.cu``), which copies the new row into the
    # slot and writes nothing back: an inference batch never updates a row, so the evicted one is
    # clean. A review found the write-back of the training cache charged to inference lookups too.
    system = load_system("dgx-h100")
    big = {"rows": 10**8, "dim": 128, "batch": 65536, "lookups": 65536 * 20.0, "unique_rows": 1.30e6}
    access = access_model(UniformAccess(dist="uniform"), 10**8)
    train = cost(op("uvm_caching:0.2", **big), system, access)
    infer = cost(op("uvm_caching:0.2", inference=True, **big), system, access)
    filled = infer.details["filled_rows"]
    assert filled == train.details["filled_rows"] > 0
    assert infer.details["evicted_rows"] == 0.0
    assert infer.details["pcie_to_host_bytes"] == 0.0
    # Only the fill crosses PCIe and host DRAM: half the training lookup's bytes (fp32 rows carry
    # no quantisation overhead, so the two layouts' rows are the same 512 B).
    assert infer.bytes_on("pcie") == pytest.approx(pcie_wire_bytes(filled * 512), rel=1e-9)
    assert infer.bytes_on("ddr") == pytest.approx(filled * 512, rel=1e-9)
    assert infer.bytes_on("pcie") == pytest.approx(0.5 * train.bytes_on("pcie"), rel=1e-9)
    assert infer.time_s <= train.time_s


def test_a_cached_fused_sgd_backward_is_never_faster_than_the_hbm_one():
    # The unfit rows' updates still run on the SMs: a tester found uvm_caching:0.5 3.3 % faster
    # than hbm (5.0929 vs 5.2405 ms) on a DGX-1 V100 for this table.
    system = load_system("dgx-1-v100")
    shape = {"rows": 100_000, "dim": 128, "batch": 65536, "lookups": 65536 * 20.0}
    access = access_model(UniformAccess(dist="uniform"), 100_000)
    unique = 100_000 * (1.0 - math.exp(-65536 * 20.0 / 100_000))
    hbm = cost(op("hbm", "backward", unique_rows=unique, **shape), system, access)
    cached = cost(op("uvm_caching:0.5", "backward", unique_rows=unique, **shape), system, access)
    assert cached.time_s >= hbm.time_s


def test_a_cached_forward_stays_under_uvm_plus_its_overhead_where_host_dram_binds():
    # gb200-nvl72: 200 GB/s of host DRAM a rank against a 225 GB/s link, so the write-back's pass
    # through DRAM slows the fill; the overhead counts it (a reviewer found the bound broken).
    system = load_system("gb200-nvl72")
    shape = {"rows": 4 * 10**7, "dim": 128, "batch": 65536, "lookups": 65536.0, "unique_rows": 65480.0}
    access = access_model(UniformAccess(dist="uniform"), 4 * 10**7)
    caching = cost(op("uvm_caching:0.05", **shape), system, access)
    uvm = cost(op("uvm", **shape), system, access)
    assert caching.details["evicted_rows"] > 0
    assert caching.time_s <= uvm.time_s + caching.details["cache_overhead_s"]


def test_a_backward_of_wider_rows_is_never_faster():
    # The sorted per-lookup info is streamed: charged at the gradient row's gather efficiency it had
    # made dim 4 slower than dim 8 (rmc1 on dgx-h100 at dim 1 and 3 too; two testers' finds).
    times = [cost(op("hbm", "backward", dim=d, rows=1000)).time_s for d in (1, 2, 3, 4, 8, 16)]
    assert times == sorted(times)


def test_page_popularity_matches_exact_random_pages():
    # The OS caches 4 KiB pages: with hashed ids a page holds k rows drawn from the whole table, so
    # page popularity is flatter than row popularity. A reviewer found the per-row hit rate 0.86
    # where pages give 0.68 (2^22 rows of 128 B, Zipf 1.05, a cache of 10 % of the table).
    rows, k = 2**14, 8
    model = access_model(ZipfAccess(dist="zipf", alpha=1.05), rows)
    p = model.probabilities()
    rng = np.random.default_rng(0)
    pages = page_popularity(model.popularity, k)
    assert pages.rows == pytest.approx(rows / k)
    assert float(np.dot(pages.weights, pages.probs)) == pytest.approx(1.0)
    for frac in (0.01, 0.1, 0.3):
        exact = []
        for _ in range(3):
            sums = np.sort(rng.permutation(p).reshape(-1, k).sum(axis=1))[::-1]
            exact.append(GroupedPopularity(np.ones_like(sums), sums).lru_hit_rate(frac * rows / k))
        truth = float(np.mean(exact))
        assert pages.lru_hit_rate(frac * rows / k) == pytest.approx(truth, abs=0.04)
        assert model.lru_hit_rate(frac * rows) > truth + 0.1  # the per-row figure it replaces
    # Exact for uniform access (every page k / R) and for one row a page.
    uniform = access_model(UniformAccess(dist="uniform"), rows).popularity
    assert page_popularity(uniform, k).lru_hit_rate(100) == pytest.approx(uniform.lru_hit_rate(800))
    assert page_popularity(model.popularity, 1) is model.popularity


def test_ssd_page_cache_hits_by_pages_and_a_bigger_cache_never_hits_less():
    system = load_system("skylake-2s")
    rows = 2**22
    hot = access_model(ZipfAccess(dist="zipf", alpha=1.05), rows)
    table = rows * 128
    memory = system.node.host_memory_capacity_bytes
    hits = []
    for share in (0.0, 0.001, 0.01, 0.1, 0.3, 0.9, 0.999, 1.0):
        shard = op(f"ssd:{share * table / memory!r}", rows=rows, dim=32, unique_rows=None)
        hits.append(cost(shard, system, hot).details["page_cache_hit_rate"])
    assert all(b >= a for a, b in itertools.pairwise(hits)) and hits[0] == 0.0 and hits[-1] == 1.0
    # The reviewer's case: 10 % of the table cached, 0.68 by exact pages, 0.86 by rows.
    assert hits[3] == pytest.approx(0.68, abs=0.03)


def test_any_miss_chance_is_one_minus_the_chance_every_lookup_hits():
    from recsim.cost.embedding.base import any_miss_chance

    assert any_miss_chance(0.5, 2.0) == pytest.approx(0.75, rel=1e-15)
    assert any_miss_chance(0.0, 1.0) == 1.0  # one uncached lookup reads for sure (not 1 - 1/e)
    assert any_miss_chance(1.0, 5.0) == 0.0 and any_miss_chance(0.9, 0.0) == 0.0
    assert any_miss_chance(1 - 1e-9, 1e3) == pytest.approx(1e-6, rel=1e-5)  # ~ the expected misses
