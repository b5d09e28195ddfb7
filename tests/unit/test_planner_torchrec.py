"""``torchrec``: TorchRec's planner's decision (recsim.planner.proposers.torchrec)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.api import load_system, load_workload, make_plan
from recsim.errors import InfeasibleError
from recsim.hardware.library import HardwareLibrary
from recsim.hardware.system import System
from recsim.planner.config import planner_config
from recsim.planner.proposers import PlanningContext, proposer
from recsim.planner.proposers import torchrec as tr
from recsim.planner.types import Plan
from recsim.workload.spec import Workload
from tests.conftest import FIXTURES

GIB = 1024**3
HBM_BW = 897 * GIB
INTRA_BW = 600 * GIB


def two_gpus() -> System:
    """One tiny node of two GPUs (40 GB of HBM each: TorchRec's 32 GiB cap rules)."""
    return load_system(
        "tiny",
        nodes=1,
        overrides=["node.accelerators.count=2"],
        library=HardwareLibrary([FIXTURES / "minilib"]),
    )


def three_tables(optimizer: str = "sgd", big_rows: int = 80_000_000) -> Workload:
    """tiny-dlrm with three 128-wide fp32 tables, a (1000 rows, 2 lookups a sample), b (500, 3) and
    big (80M rows, 41 GB: over TorchRec's HBM_CAP), a global batch of 8 (4 a rank)."""
    tables = (
        f"tables=[{{name: a, rows: 1000, pooling: 2}}, {{name: b, rows: 500, pooling: 3}}, "
        f"{{name: big, rows: {big_rows}, pooling: 1}}]"
    )
    return load_workload(
        FIXTURES / "workloads" / "tiny-dlrm.yaml",
        overrides=[
            "embedding.dim=128",
            "bottom_mlp=[8, 128]",
            tables,
            "training.global_batch_size=8",
            f"training.embedding_optimizer={optimizer}",
        ],
    )


def options(ctx: PlanningContext) -> dict[tuple[str, str, str], tr.Option]:
    topo = tr.topology(ctx)
    return {(o.table, o.scheme, o.kernel): o for opts in tr.enumerate_options(ctx, topo) for o in opts}


def test_shard_perf_and_storage_by_hand() -> None:
    ctx = PlanningContext(two_gpus(), three_tables())
    found = options(ctx)
    # Table-wise a: 4 samples a rank x 2 ranks x 2 lookups = 16 ids read (8 B each, 128 B), 16 rows
    # looked up (512 B each, 8,192 B), 8 pooled vectors written (4,096 B); forward compute those
    # bytes at 897 GiB/s, backward twice that, the pooled vectors exchanged at 600 GiB/s both ways.
    tw = found[("a", "table_wise", "fused")]
    assert tw.perf[0] == pytest.approx(2 * 4096 / INTRA_BW + 3 * (128 + 8192 + 4096) / HBM_BW, rel=1e-12)
    # Its HBM: the ids and pooled vectors of the global batch and 1000 rows x 512 B, no SGD state.
    assert (tw.hbm[0], tw.ddr[0]) == (128 + 4096 + 512_000, 0)
    # Row-wise a: each of 2 shards reads half the ids and rows but writes every pooled vector, and
    # pays a batched copy of them (2.455 passes).
    rw = found[("a", "row_wise", "fused")]
    assert [s.rows for s in rw.shards] == [500, 500]
    each = 2 * 4096 / INTRA_BW + 2.455 * 4096 / HBM_BW + 3 * (64 + 4096 + 4096) / HBM_BW
    assert list(rw.perf) == pytest.approx([each, each], rel=1e-12)
    assert rw.hbm[0] == 64 + 4096 + 256_000
    # Host memory over UVM: the rows in DDR, at a tenth of its 51 GiB/s; the cache keeps 20 % in HBM.
    uvm = found[("a", "table_wise", "fused_uvm")]
    assert (uvm.hbm[0], uvm.ddr[0]) == (128 + 4096, 512_000)
    cached = found[("a", "table_wise", "fused_uvm_caching")]
    assert (cached.hbm[0], cached.ddr[0]) == (128 + 4096 + 102_400, 512_000)


def test_row_shards_of_two_sizes_each_get_their_own_storage() -> None:
    # 1001 rows on 2 GPUs: blocks of 501 and 500 rows (``row_blocks``), each its share of the
    # 512,512 B table, rounded up (256,512 and 256,000 B), beside 32 B of ids (4 samples x 1 lookup
    # / 2 shards x 2 ranks x 8 B) and 4,096 B of pooled vectors.
    rw = options(PlanningContext(two_gpus(), three_tables(big_rows=1001)))[("big", "row_wise", "fused")]
    assert [s.rows for s in rw.shards] == [501, 500]
    assert list(rw.hbm) == [32 + 4096 + 256_512, 32 + 4096 + 256_000]


def test_adagrad_counts_the_table_again_and_rowwise_adagrad_a_column() -> None:
    for optimizer, state in (
        ("sgd", 0),
        ("adagrad", 512_000),
        ("rowwise_adagrad", 4000),
        ("adam", 1_024_000),
    ):
        found = options(PlanningContext(two_gpus(), three_tables(optimizer)))
        assert found[("a", "table_wise", "fused")].hbm[0] == 128 + 4096 + 512_000 + state


def test_reservation_by_hand() -> None:
    w = load_workload(FIXTURES / "workloads" / "tiny-dlrm.yaml")  # global batch 8, 5 lookups a sample
    ctx = PlanningContext(two_gpus(), w)
    topo = tr.topology(ctx)
    assert (topo.world, topo.local, topo.batch) == (2, 2, 4)
    # tiny-dlrm's dense layers: 137 parameters (131 and the 6 of the dot's padded column), 6 x 4 B
    # each; the ids of 4 samples x 5 lookups x 8 B, 20 times; both taken off after TorchRec's 5 %
    # of the 32 GiB cap (HeuristicalStorageReservation.reserve: the percentage first), not 5 % of
    # what they leave (that would be 324 B more).
    dense = 6 * 4 * 137
    ids = 4 * 5 * 8 * 20
    assert tr.reserved_bytes(ctx, topo)[0] == int(0.95 * 32 * GIB) - dense - ids


def test_a_table_over_hbm_cap_is_split_by_rows_the_others_stay_whole() -> None:
    # big (41 GB) fits no device whole: row-wise, 20.5 GB a device. Whole tables rate lower than
    # row splits on two ranks (each shard halves only the lookups: every shard writes the pooled
    # vectors of the batch, and copies them), so a and b stay whole, one on each device: a first
    # (the larger) on rank 0, where the load is equal, then b on the other.
    plan = make_plan("torchrec", three_tables(), two_gpus())
    got = sorted((s.table, s.sharding, s.row_start, s.row_end, s.ranks, s.tier) for s in plan.shards)
    assert got == [
        ("a", "table_wise", 0, 1000, (0,), "hbm"),
        ("b", "table_wise", 0, 500, (1,), "hbm"),
        ("big", "row_wise", 0, 40_000_000, (0,), "hbm"),
        ("big", "row_wise", 40_000_000, 80_000_000, (1,), "hbm"),
    ]
    assert plan.strategy == "torchrec"


def test_a_table_that_fits_whole_stays_whole() -> None:
    # 50M rows: 25.6 GB, within the cap less the reservation: all three whole. Placed largest first
    # on the device with the least perf so far: big on rank 0, a on rank 1, then b where the perf
    # is lower, rank 0 (big's 3 x 8,256 B-equivalents of compute against a's 3 x 12,416). Not the
    # best balance (a beside big would be): TorchRec's greedy placement, kept.
    plan = make_plan("torchrec", three_tables(big_rows=50_000_000), two_gpus())
    got = sorted((s.table, s.sharding, s.ranks) for s in plan.shards)
    assert got == [("a", "table_wise", (1,)), ("b", "table_wise", (0,)), ("big", "table_wise", (0,))]


def p4d(optimizer: str) -> tuple[System, Workload]:
    """The validation's TorchRec p4d case: DLRM-DCNv2's Criteo 1TB tables one-hot, fp32, batch 65536."""
    sets = [
        *(f"tables[{i}].pooling=1" for i in range(26)),
        f"training.embedding_optimizer={optimizer}",
        "training.runtime=eager",
        "training.global_batch_size=65536",
    ]
    return load_system("p4d-24xlarge"), load_workload("dlrm-dcnv2", overrides=sets)


def test_criteo_sgd_keeps_every_table_whole_adagrad_splits_the_40m_row_tables() -> None:
    system, sgd = p4d("sgd")
    plan = make_plan("torchrec", sgd, system)
    assert {s.sharding for s in plan.shards} == {"table_wise"}
    # One-hot 128-wide tables rate alike: 26 whole tables balanced 4, 4, 3, 3, 3, 3, 3, 3.
    assert sorted(Counter(s.ranks[0] for s in plan.shards).values()) == [3, 3, 3, 3, 3, 3, 4, 4]
    # The 40M-row tables (20.5 GB) each on its own rank.
    big = [s.ranks[0] for s in plan.shards if sgd.table(s.table).rows == 40_000_000]
    assert len(big) == len(set(big)) == 5
    system, adagrad = p4d("adagrad")
    plan = make_plan("torchrec", adagrad, system)
    split = {s.table for s in plan.shards if s.sharding == "row_wise"}
    assert split == {t.name for t in adagrad.tables if t.rows == 40_000_000}
    assert {s.sharding for s in plan.shards if s.table not in split} == {"table_wise"}
    # Row-wise: ceil(40M / 8) rows on each rank in order.
    t0 = sorted((s.row_start, s.ranks[0]) for s in plan.shards if s.table == "t0")
    assert t0 == [(r * 5_000_000, r) for r in range(8)]


def test_limits_narrow_its_options() -> None:
    # Without row_wise: table_row_wise (the node's 2 ranks) takes its place for big.
    cfg = planner_config(["planner.sharding_types=[table_wise,table_row_wise]"])
    plan = make_plan("torchrec", three_tables(), two_gpus(), planner=cfg)
    assert {s.sharding for s in plan.shards if s.table == "big"} == {"table_row_wise"}
    # Nothing but whole tables in HBM: big fits nowhere.
    cfg = planner_config(
        ["planner.sharding_types=[table_wise]", "planner.tiers=[hbm]", "planner.auto_tiers=false"]
    )
    with pytest.raises(InfeasibleError, match=r"torchrec: none of TorchRec's \d+ proposals fits"):
        make_plan("torchrec", three_tables(), two_gpus(), planner=cfg)


def test_uvm_caching_only_at_a_cache_ratio_the_user_lists() -> None:
    # TorchRec caches 20 % of a fused_uvm_caching table's rows: recsim's uvm_caching:0.2, which
    # planner.cache_ratios=[0.05] rules out. With hbm beside it the plan keeps to hbm...
    limit = ["planner.cache_ratios=[0.05]", "planner.auto_tiers=false"]
    cfg = planner_config([*limit, "planner.tiers=[uvm_caching,hbm]"])
    ctx = PlanningContext(two_gpus(), three_tables(), cfg)
    assert {o.tier for opts in tr.enumerate_options(ctx, tr.topology(ctx)) for o in opts} == {"hbm"}
    plan = make_plan("torchrec", three_tables(), two_gpus(), planner=cfg)
    assert {s.tier for s in plan.shards} == {"hbm"}
    # ...and with uvm_caching alone it refuses, naming the limit.
    cfg = planner_config([*limit, "planner.tiers=[uvm_caching]"])
    with pytest.raises(InfeasibleError, match=r"no option for table 'a': .*planner\.cache_ratios \(0\.05\)"):
        make_plan("torchrec", three_tables(), two_gpus(), planner=cfg)
    # Listed, the ratio is enumerated as before.
    cfg = planner_config(
        ["planner.cache_ratios=[0.2]", "planner.tiers=[uvm_caching]", "planner.auto_tiers=false"]
    )
    ctx = PlanningContext(two_gpus(), three_tables(), cfg)
    tiers = {o.tier for opts in tr.enumerate_options(ctx, tr.topology(ctx)) for o in opts}
    assert tiers == {"uvm_caching:0.2"}


def test_host_memory_decides_a_fit_only_on_equal_hbm() -> None:
    # TorchRec's Storage is a dataclass(order=True): ``device.storage >= shard.storage`` compares
    # (hbm, ddr) as tuples, so a UVM table (a few KiB of HBM) fits a device with more HBM free
    # whatever its DDR: big, 1e9 rows x 512 B = 476.8 GiB of host memory, goes whole on one GPU that
    # offers 121.6 GiB (a check of both would find no proposal that fits).
    cfg = planner_config(["planner.tiers=[uvm]", "planner.auto_tiers=false"])
    ctx = PlanningContext(two_gpus(), three_tables(big_rows=1_000_000_000), cfg)
    assert tr.reserved_bytes(ctx, tr.topology(ctx))[1] < 512 * 10**9 / 2
    plan = proposer("torchrec").propose(ctx)
    got = sorted((s.table, s.sharding, s.row_end, s.tier) for s in plan.shards)
    assert got == [
        ("a", "table_wise", 1000, "uvm"),
        ("b", "table_wise", 500, "uvm"),
        ("big", "table_wise", 1_000_000_000, "uvm"),
    ]
    # The comparison itself: more HBM free wins; on equal HBM the DDR decides.
    free_hbm, free_ddr = np.array([10.0, 10.0, 9.0]), np.array([0.0, 5.0, 100.0])
    assert tr.fits(9.0, 150.0, free_hbm, free_ddr).tolist() == [True, True, False]
    assert tr.fits(9.0, 50.0, free_hbm, free_ddr).tolist() == [True, True, True]
    assert tr.fits(10.0, 5.0, free_hbm, free_ddr).tolist() == [False, True, False]


def test_bad_inputs_are_one_line_errors() -> None:
    with pytest.raises(InfeasibleError, match="global batch 6 is not divisible by 4 ranks"):
        w = load_workload(
            FIXTURES / "workloads" / "tiny-dlrm.yaml", overrides=["training.global_batch_size=6"]
        )
        system = load_system(
            "tiny",
            nodes=1,
            overrides=["node.accelerators.count=4"],
            library=HardwareLibrary([FIXTURES / "minilib"]),
        )
        make_plan("torchrec", w, system)
    cfg = planner_config(["planner.sharding_types=[grid]"])
    with pytest.raises(
        InfeasibleError, match=r"torchrec: no option for table 'a': planner.sharding_types \(grid\)"
    ):
        proposer("torchrec").propose(PlanningContext(two_gpus(), three_tables(), cfg))


def test_not_one_of_autos_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    assert proposer("torchrec").in_auto is False
    assert all(proposer(name).in_auto for name in ("greedy", "recshard", "table_wise"))

    # auto plans without ever asking it (a call would fail the plan's search loudly).
    def never(self: tr.TorchRecPlanner, ctx: PlanningContext) -> Plan:
        raise AssertionError("auto asked the torchrec proposer")

    monkeypatch.setattr(tr.TorchRecPlanner, "propose", never)
    plan = make_plan("auto", three_tables(), two_gpus())
    assert plan.strategy.startswith("auto:") and plan.strategy != "auto:torchrec"


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(min_value=1, max_value=10_000), parts=st.integers(min_value=1, max_value=16))
def test_row_blocks_cover_the_table_in_ceil_blocks(rows: int, parts: int) -> None:
    blocks = tr.row_blocks(rows, parts)
    assert len(blocks) == parts
    assert sum(size for _, size in blocks) == rows
    block = math.ceil(rows / parts)
    assert all(size <= block for _, size in blocks)
    assert all(start == sum(size for _, size in blocks[:i]) for i, (start, _) in enumerate(blocks))
    # Full blocks first, then at most one shorter one, then empty ones.
    sizes = [size for _, size in blocks]
    assert sizes == sorted(sizes, reverse=True)
    assert sum(1 for s in sizes if 0 < s < block) <= 1


def test_row_blocks_as_torchrec_documents() -> None:
    assert [s for _, s in tr.row_blocks(10, 4)] == [3, 3, 3, 1]
    assert [s for _, s in tr.row_blocks(5, 4)] == [2, 2, 1, 0]
    assert tr.column_blocks(128) == [(0, 128)]
    assert tr.column_blocks(320) == [(0, 128), (128, 192)]


def test_plan_is_valid_and_deterministic() -> None:
    system, workload = two_gpus(), three_tables("adagrad")
    plan = make_plan("torchrec", workload, system)
    assert isinstance(plan, Plan)
    plan.validate(workload)
    assert plan == make_plan("torchrec", workload, system)


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_early_stop_and_dedupe_do_not_change_the_pick(optimizer: str) -> None:
    # Only the proposer's early stop (a proposal no longer placed once it cannot rate lower) and its
    # dedupe of proposals seen: every grid proposal placed in full (no bound, no dedupe), the pick
    # is still the first with the lowest busiest-device perf.
    ctx = PlanningContext(two_gpus(), three_tables(optimizer))
    topo = tr.topology(ctx)
    by_table = tr.enumerate_options(ctx, topo)
    hbm, ddr = tr.reserved_bytes(ctx, topo)
    rated: list[tuple[float, list[tr.Option], list[list[int]]]] = []
    for picks in tr.grid_proposals(by_table):
        proposal = [opts[i] for opts, i in zip(by_table, picks, strict=True)]
        devices = tr.Devices.fresh(topo.world, hbm, ddr)
        try:
            ranks = tr.partition(proposal, devices, topo.local)
        except tr.PartitionError:
            continue
        assert ranks is not None
        rated.append((float(devices.perf.max()), proposal, ranks))
    assert len(rated) > 100  # the grid (16 options a table, 4096 proposals) decides here
    lowest = min(r[0] for r in rated)
    first = next(r for r in rated if r[0] == lowest)
    # The same option objects (the proposer enumerates them afresh: compared by what they are).
    got = [(o.table, o.scheme, o.kernel, ranks) for o, ranks in tr.best_options(ctx)]
    assert got == [(o.table, o.scheme, o.kernel, ranks) for o, ranks in zip(first[1], first[2], strict=True)]


_FIGURE = st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    world=st.integers(min_value=1, max_value=6),
    count=st.integers(min_value=1, max_value=8),
    data=st.data(),
)
def test_placing_everywhere_at_once_is_placing_one_option_after_another(
    world: int, count: int, data: st.DataObject
) -> None:
    # ``_place_everywhere`` (one running sum of the storage negated and the perf) must give the
    # devices the figures ``_place_uniform`` gives them option by option, to the bit: the planner's
    # choice is the lowest busiest-device perf, and a plan may turn on its last digit.
    figures = st.lists(_FIGURE, min_size=world, max_size=world)
    options: list[tr.Option] = []
    for k in range(count):
        option = tr.Option(f"t{k}", "row_wise", "fused", "hbm")
        option.shards = [tr.TRShard(1, 1, r, 0) for r in range(world)]
        option.set_figures(data.draw(figures), data.draw(figures), data.draw(figures))
        options.append(option)
    start = [data.draw(figures) for _ in range(3)]
    one_by_one = tr.Devices(*(np.array(f) for f in start))
    for option in options:
        tr._place_uniform(option, one_by_one, slice(0, world))
    at_once = tr.Devices(*(np.array(f) for f in start))
    tr._place_everywhere(options, at_once)
    for got, want in zip(
        (at_once.hbm, at_once.ddr, at_once.perf),
        (one_by_one.hbm, one_by_one.ddr, one_by_one.perf),
        strict=True,
    ):
        assert got.tobytes() == want.tobytes()


def _greedy_by_scan(by_table: list[list[tr.Option]], depth: bool) -> list[list[int]]:
    """``GreedyProposer`` as TorchRec writes it: each step scans every table for the largest storage
    key above zero (the first table on a tie) among those with a next option."""
    orders = [tr.by_score(opts, depth) for opts in by_table]
    current = [0] * len(by_table)
    out: list[list[int]] = []
    while True:
        out.append([orders[t][current[t]] for t in range(len(by_table))])
        largest: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
        chosen: int | None = None
        for t, opts in enumerate(by_table):
            if current[t] + 1 < len(opts):
                key = opts[orders[t][current[t]]].storage_key
                if key > largest:
                    chosen, largest = t, key
        if chosen is None:
            return out
        current[chosen] += 1


@settings(max_examples=80, deadline=None)
@given(
    tables=st.lists(
        # Each table's options: (perf, HBM, DDR) of one shard from small sets, so that scores and
        # storage keys tie often (and a key of zero comes up).
        st.lists(
            st.tuples(st.sampled_from([1.0, 2.0, 3.0]), st.sampled_from([0, 5, 7]), st.sampled_from([0, 4])),
            min_size=1,
            max_size=5,
        ),
        min_size=1,
        max_size=6,
    ),
    depth=st.booleans(),
)
def test_greedy_proposals_step_as_the_scan_of_every_table(
    tables: list[list[tuple[float, int, int]]], depth: bool
) -> None:
    by_table: list[list[tr.Option]] = []
    for t, figures in enumerate(tables):
        opts = []
        for perf, hbm, ddr in figures:
            option = tr.Option(f"t{t}", "table_wise", "fused", "hbm", [tr.TRShard(1, 1, 0, 0)])
            option.set_figures([perf], [hbm], [ddr])
            opts.append(option)
        by_table.append(opts)
    assert list(tr.greedy_proposals(by_table, depth)) == _greedy_by_scan(by_table, depth)
