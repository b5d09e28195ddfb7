"""The ids an owner reads in HBM (``storage.input_buffer_bytes``): their bytes by scheme and
framework, and that the memory check, the estimator's blocks, the planners and the graph's input
all-to-all count the same bytes. (The loader's own buffers, which a rank's inputs add to its ids:
``test_reader_buffers``.)"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.config.loader import Override
from recsim.graph.build import build_training_step
from recsim.graph.ir import Collective
from recsim.hardware.library import HardwareLibrary
from recsim.hardware.system import System
from recsim.planner.config import planner_config
from recsim.planner.estimator import Block, Estimator, repeated_input_bytes
from recsim.planner.partitioners import Partitioner
from recsim.planner.proposers.base import PlanningContext
from recsim.planner.proposers.greedy import least_io_bytes
from recsim.planner.storage import (
    Capacity,
    ids_by_rank,
    input_block_bytes,
    input_buffer_bytes,
    input_by_rank,
    plan_usage,
    rank_reader_bytes,
)
from recsim.planner.types import Plan, Shard
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import Workload
from tests.conftest import FIXTURES

WL = WorkloadLibrary([FIXTURES / "workloads"])
HW = HardwareLibrary([FIXTURES / "minilib"])

# tiny-dlrm: global batch 8, table a pooling 2, b pooling 3, int64 ids, int32 lengths.
A_IDS = 8 * (2 * 8 + 4)  # 160
B_IDS = 8 * (3 * 8 + 4)  # 224


def rank_input_bytes(blocks: Iterable[Block]) -> float:
    """The ids ``blocks`` read on one rank placed there in turn, as the partitioner adds them
    (``Partitioner.hbm_take``): each block's own less the once-a-rank ids of a table the rank
    already reads (``repeated_input_bytes``)."""
    held: set[str] = set()
    total = 0.0
    for b in blocks:
        total += b.input_hbm_bytes - repeated_input_bytes(held, b)
        held.update(table for table, _ in b.input_once_bytes)
    return total


def tiny(*overrides: str) -> Workload:
    return WL.workload("tiny-dlrm", [Override.parse(o) for o in overrides])


def gpus(count: int, nodes: int = 1) -> System:
    return HW.system(
        "tiny", [Override.parse(f"cluster.nodes={nodes}"), Override.parse(f"node.accelerators.count={count}")]
    )


def test_the_ids_of_each_scheme() -> None:
    w = tiny()
    whole = Shard("a", "table_wise", 0, 100, 0, 4, (0,))
    assert input_buffer_bytes(whole, w, 2) == A_IDS
    # whatever tier holds the rows: the TBE reads the ids in HBM
    assert input_buffer_bytes(dataclasses.replace(whole, tier="uvm"), w, 2) == A_IDS
    # a column block every id of the table again (TorchRec's _calculate_cw_shard_io_sizes)
    assert input_buffer_bytes(Shard("a", "column_wise", 0, 100, 0, 2, (1,)), w, 2) == A_IDS
    # a row split's member the ids of its rows, and a length for every sample
    assert input_buffer_bytes(Shard("a", "row_wise", 0, 25, 0, 4, (0,)), w, 2) == 8 * (2 * 0.25 * 8 + 4)
    # replicated rows read the local batch's own ids: no input distribution
    assert input_buffer_bytes(Shard("a", "data_parallel", 0, 100, 0, 4, (0, 1)), w, 2) == 0.0
    # the workload's index dtype
    assert input_buffer_bytes(whole, tiny("training.index_dtype=int32"), 2) == 8 * (2 * 4 + 4)


def test_each_framework_charges_what_it_holds() -> None:
    plan = Plan(
        2,
        (
            Shard("a", "column_wise", 0, 100, 0, 2, (0,)),
            Shard("a", "column_wise", 0, 100, 2, 4, (0,)),
            Shard("b", "table_wise", 0, 50, 0, 4, (1,)),
        ),
    )
    # TorchRec's KJTAllToAll (eager): each column block its own copy of a's ids, two batches of
    # them (TrainPipelineSparseDist; 2026-12-07, {0: 2 x A_IDS, 1: B_IDS} while one batch was
    # counted).
    assert ids_by_rank(plan, tiny("training.runtime=eager")) == {0: 2 * 2 * A_IDS, 1: 2 * B_IDS}
    # DLE's per-rank loader (cuda_graphs): a table's int64 ids for the global batch once a rank,
    # no lengths (graph.build.feature_index_bytes), two batches of them (its ``prefetcher`` holds the
    # next; 2026-12-07, {0: 128, 1: 192} while one batch was counted).
    assert ids_by_rank(plan, tiny("training.runtime=cuda_graphs")) == {0: 2 * 8 * 2 * 8, 1: 2 * 8 * 3 * 8}
    # HugeCTR's hybrid embedding (fused, routed rows): every rank holds the global batch's raw
    # records, which are its reader's buffers (reader_buffers.one_hot_reader_bytes), no ids of their
    # own (2026-12-07: one batch of records, 8 x (1 + 4 + 2 + 3) x 4 B, was counted as its ids).
    routed = Plan(
        2,
        (
            Shard("a", "data_parallel", 0, 10, 0, 4, (0, 1), order="popularity"),
            Shard("a", "distributed", 10, 100, 0, 4, (0, 1), order="popularity"),
            Shard("b", "table_wise", 0, 50, 0, 4, (1,)),
        ),
    )
    fused = tiny("training.runtime=fused")
    assert ids_by_rank(routed, fused) == {}
    # 128 buffers of the global batch's records (a label, 4 dense values and 5 keys of 4 B a
    # sample), two sets of split tensors (the local batch's label and 8 padded fp32 dense values, the
    # global batch's keys) and the model's label and dense tensors.
    reader = 128 * 8 * 10 * 4 + 2 * (4 * (4 + 8 * 4) + 8 * 5 * 4) + 4 * (4 + 8 * 4)
    assert input_by_rank(routed, fused) == {0: reader, 1: reader} == {0: 41712, 1: 41712}
    assert input_buffer_bytes(routed.shards[1], fused, 2) == 0.0


@pytest.mark.parametrize("framework", ["eager", "fused"])
def test_an_owner_holds_what_the_input_all_to_all_delivers(framework: str) -> None:
    # The bytes the graph's input all-to-all delivers to each owner (the local batch of every
    # sender) are the ids and lengths ``input_by_rank`` charges it for each global batch it holds:
    # two under TorchRec's pipeline (eager), one under fused.
    w = tiny(f"training.runtime={framework}")
    plan = Plan(
        4,
        (
            Shard("a", "row_wise", 0, 37, 0, 4, (0,)),
            Shard("a", "row_wise", 37, 100, 0, 4, (1,)),
            Shard("b", "column_wise", 0, 50, 0, 2, (2,)),
            Shard("b", "column_wise", 0, 50, 2, 4, (2,)),
        ),
    )
    graph = build_training_step(w, plan)
    received = {}
    for rank in range(4):
        (op,) = [n.op for n in graph.rank_nodes(rank) if n.name == "input_dist"]
        assert isinstance(op, Collective) and op.recv_bytes is not None
        received[rank] = sum(op.recv_bytes)
    batches = {"eager": 2, "fused": 1}[framework]
    held = ids_by_rank(plan, w)
    assert {r: batches * v for r, v in received.items() if v} == pytest.approx(held, rel=1e-12)
    assert held[2] == batches * 2 * B_IDS


SCHEMES = [
    ("table_wise", "hbm", {}),
    ("table_wise", "uvm", {}),
    ("column_wise", "hbm", {"column_blocks": 2}),
    ("row_wise", "hbm", {}),
    ("row_wise", "ddr", {}),
    ("table_wise", "hbm", {"hot_rows": 30, "hot_placement": "hbm", "cold_tier": "uvm"}),
    ("column_wise", "hbm", {"column_blocks": 2, "hot_rows": 30, "hot_placement": "hbm", "cold_tier": "uvm"}),
]


@settings(max_examples=25, deadline=None)
@given(
    scheme=st.sampled_from(SCHEMES),
    table=st.sampled_from(["a", "b"]),
    framework=st.sampled_from(["eager", "fused", "cuda_graphs"]),
    index_dtype=st.sampled_from(["int32", "int64"]),
)
def test_the_estimators_blocks_hold_what_plan_usage_charges(
    scheme: tuple[str, str, dict[str, object]], table: str, framework: str, index_dtype: str
) -> None:
    # Every block of a candidate, placed one a rank, takes on its rank what ``plan_usage`` charges
    # the placed plan besides the dense side and the loader's own buffers, which the estimator keeps
    # on every rank (``Estimator.reader_hbm_bytes``), its ids (``Block.input_hbm_bytes``) to the byte.
    sharding, tier, extra = scheme
    w = tiny(f"training.runtime={framework}", f"training.index_dtype={index_dtype}")
    system = gpus(2, 2)
    est = Estimator(system, w, planner_config([]))
    cand = est.candidate(w.table(table), sharding, tier, "fp32", **extra)  # type: ignore[arg-type]
    assert cand is not None
    shards = tuple(
        dataclasses.replace(s, ranks=(rank,)) for rank, block in enumerate(cand.blocks) for s in block.shards
    )
    plan = Plan(4, shards)
    usage = plan_usage(plan, w, system)
    reader = est.reader_hbm_bytes
    assert reader == rank_reader_bytes(w, 4)
    for rank, block in enumerate(cand.blocks):
        assert block.input_hbm_bytes == ids_by_rank(plan, w).get(rank, 0.0)
        assert usage.input_by_rank.get(rank, 0.0) == block.input_hbm_bytes + reader
        assert block.storage.hbm_bytes == pytest.approx(
            usage.hbm_by_rank[rank] - usage.dense_hbm_bytes - reader, rel=1e-12
        )


def test_torchrec_s_pipeline_and_dle_s_prefetcher_hold_two_batches_of_ids_hugectr_one() -> None:
    # TrainPipelineSparseDist (eager: Runtime.input_dist_follows_previous_copy) distributes batch
    # i + 1's ids while batch i's backward reads its own: an owner holds two batches, as TorchRec's
    # planner counts (calculate_pipeline_io_cost, 2 x input_size); DLE's prefetcher (cuda_graphs:
    # Runtime.prefetches_next_batch) copies the next batch before this step (2026-12-07: one was
    # counted); fused's all-to-all one. Every consumer charges the one figure, the ranks' inputs the
    # loader's own buffers besides (``rank_reader_bytes``: none under eager).
    whole = Shard("a", "table_wise", 0, 100, 0, 4, (0,))
    plan = Plan(2, (whole,))
    system = gpus(2)
    fp32 = planner_config([Override.parse("planner.embedding_dtypes=[fp32]")])
    for framework, ids in (("eager", 2 * A_IDS), ("fused", A_IDS), ("cuda_graphs", 2 * 8 * 2 * 8)):
        w = tiny(f"training.runtime={framework}")
        assert input_buffer_bytes(whole, w, 2) == ids
        assert ids_by_rank(plan, w) == {0: ids}
        reader = rank_reader_bytes(w, 2)
        assert (reader == 0.0) == (framework == "eager")
        expected = {0: ids + reader, 1: reader} if reader else {0: ids}
        assert plan_usage(plan, w, system).input_by_rank == expected
        cand = Estimator(system, w, fp32).candidate(w.table("a"), "table_wise", "hbm", "fp32")
        assert cand is not None and [b.input_hbm_bytes for b in cand.blocks] == [ids]
        assert least_io_bytes(PlanningContext(system, w, fp32), w.table("a")) == 8 * 4 * 4 + ids
    assert 2 * A_IDS == 320


def test_the_greedy_reserves_a_table_s_vectors_and_ids() -> None:
    # ``least_io_bytes``: a table whole (its least): 128 B of fp32 vectors and a's 160 B of ids.
    w = tiny()
    ctx = PlanningContext(gpus(2), w, planner_config([Override.parse("planner.embedding_dtypes=[fp32]")]))
    assert least_io_bytes(ctx, w.table("a")) == 8 * 4 * 4 + A_IDS
    assert least_io_bytes(ctx, w.table("b")) == 8 * 4 * 4 + B_IDS


@settings(max_examples=40, deadline=None)
@given(
    placed=st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from(["table_wise", "column_wise", "row_wise", "data_parallel"]),
            st.sets(st.integers(0, 3), min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=6,
    ),
    framework=st.sampled_from(["eager", "cuda_graphs"]),
)
def test_a_rank_holds_the_input_block_bytes_of_its_shards(
    placed: list[tuple[str, str, set[int]]], framework: str
) -> None:
    # ``input_by_rank`` sums a rank's ids at once (for speed); it is ``input_block_bytes`` of the
    # shards the rank holds, to the bit: DLE's ids once a table however many of its shards a rank
    # holds, TorchRec's every shard its own.
    w = tiny(f"training.runtime={framework}")
    rows = {"a": 100, "b": 50}
    shards = tuple(
        Shard(t, kind, 0, rows[t] // 2 if kind == "row_wise" else rows[t], 0, 4, tuple(sorted(ranks)))
        for t, kind, ranks in placed
    )
    plan = Plan(4, shards)
    expected = {}
    for rank in range(4):
        held = input_block_bytes([s for s in shards if rank in s.ranks], w, 4)
        if held:
            expected[rank] = held
    assert ids_by_rank(plan, w) == expected


def test_blocks_of_one_table_on_one_rank_hold_dle_s_ids_once_as_plan_usage() -> None:
    # Two column blocks of a on one rank: each block alone charges a's ids (``input_hbm_bytes``),
    # and the rank holds them once under DLE's loader (its feature read once a rank), each block its
    # own copy under TorchRec's all-to-all (two batches of them: 2026-12-07, A_IDS a block and
    # 2 x A_IDS the rank while one was counted; DLE's two batches too, its prefetcher's: 8 x 2 x 8
    # while one was counted). The partitioner's take of the rank's blocks (``rank_input_bytes``) is
    # ``plan_usage``'s ids (``ids_by_rank``; 2026-12-07: the blocks' sum, 2 x 128 B under DLE, was
    # pinned as an over-count, never an under-count; now equal).
    for framework, block_ids, rank_ids in (
        ("cuda_graphs", 2 * 8 * 2 * 8, 2 * 8 * 2 * 8),
        ("eager", 2 * A_IDS, 2 * 2 * A_IDS),
    ):
        w = tiny(f"training.runtime={framework}")
        system = gpus(2)
        est = Estimator(system, w, planner_config([]))
        cand = est.candidate(w.table("a"), "column_wise", "hbm", "fp32", column_blocks=2)
        assert cand is not None and len(cand.blocks) == 2
        assert [b.input_hbm_bytes for b in cand.blocks] == [block_ids, block_ids]
        assert rank_input_bytes(cand.blocks) == rank_ids
        placed = tuple(dataclasses.replace(s, ranks=(0,)) for b in cand.blocks for s in b.shards)
        assert ids_by_rank(Plan(2, placed), w) == {0: rank_ids}


SHARED_RANK_SCHEMES = [
    ("table_wise", {}),
    ("column_wise", {"column_blocks": 2}),
    ("column_wise", {"column_blocks": 4}),
    ("row_wise", {}),
    ("table_wise", {"hot_rows": 30, "hot_placement": "hbm", "cold_tier": "uvm"}),
    ("column_wise", {"column_blocks": 2, "hot_rows": 30, "hot_placement": "hbm", "cold_tier": "uvm"}),
    ("data_parallel", {}),
]


@settings(max_examples=40, deadline=None)
@given(
    chosen=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(SHARED_RANK_SCHEMES)), min_size=1, max_size=4
    ),
    seats=st.lists(st.integers(0, 3), min_size=16, max_size=16),
    framework=st.sampled_from(["eager", "fused", "cuda_graphs"]),
)
def test_the_estimator_counts_a_rank_s_ids_as_plan_usage_wherever_blocks_land(
    chosen: list[tuple[str, tuple[str, dict[str, object]]]], seats: list[int], framework: str
) -> None:
    # Blocks of candidates put on ranks freely (several blocks of one table on one rank, a table
    # chosen twice): per rank, the partitioner's take of the rank's blocks (``rank_input_bytes``) is the ids
    # ``plan_usage`` charges it (``ids_by_rank``; its inputs add the loader's own buffers, which the
    # estimator keeps on every rank: ``Estimator.reader_hbm_bytes``), and, where the blocks make a
    # plan (each table once, whole tables and column blocks), their HBM (rows, pooled vectors, ids)
    # its HBM but the dense side and the loader's buffers. The contract: the estimator, the planners
    # and the memory check count the same bytes.
    w = tiny(f"training.runtime={framework}")
    system = gpus(4)
    est = Estimator(system, w, planner_config([]))
    reader = est.reader_hbm_bytes
    on_rank: dict[int, list[Block]] = {r: [] for r in range(4)}
    shards: list[Shard] = []
    seat = iter(seats)
    for table, (sharding, extra) in chosen:
        cand = est.candidate(w.table(table), sharding, "hbm", "fp32", **extra)  # type: ignore[arg-type]
        assert cand is not None
        for block in (*cand.blocks, *cand.replicated):
            rank = next(seat)
            on_rank[rank].append(block)
            shards += [dataclasses.replace(s, ranks=(rank,)) for s in block.shards]
    plan = Plan(4, tuple(shards))
    usage = plan_usage(plan, w, system)
    held = ids_by_rank(plan, w)
    for rank, blocks in on_rank.items():
        ids = rank_input_bytes(blocks)
        assert ids == pytest.approx(held.get(rank, 0.0), rel=1e-12, abs=0.0)
        assert usage.input_by_rank.get(rank, 0.0) == pytest.approx(ids + reader, rel=1e-12, abs=0.0)
        if len({table for table, _ in chosen}) < len(chosen) or any(
            scheme[0] in ("row_wise", "data_parallel") for _, scheme in chosen
        ):
            # No plan: a table placed twice over (its rows and vectors twice), a row split's members
            # on one rank (one reduce group), replicated rows on one rank; their ids still count.
            continue
        repeated = ids - math.fsum(b.input_hbm_bytes for b in blocks)
        hbm = math.fsum(b.storage.hbm_bytes for b in blocks) + repeated
        rest = usage.hbm_by_rank[rank] - usage.dense_hbm_bytes - reader
        assert hbm == pytest.approx(rest, rel=1e-12, abs=1e-6)


def test_the_partitioner_charges_a_table_s_dle_ids_once_a_rank() -> None:
    # A table placed twice (a's two column blocks, then a whole on one of their ranks): under DLE's
    # loader the partitioner's HBM of each rank is what ``plan_usage`` charges the placed plan (the
    # loader's own buffers, which it starts every rank with, included), the second block of a on a
    # rank adding its rows and pooled vectors but not a's ids again.
    w = tiny("training.runtime=cuda_graphs")
    system = gpus(2)
    est = Estimator(system, w, planner_config([]))
    part = Partitioner(est, "lpt", cap=Capacity.unlimited(est.per_node))
    columns = est.candidate(w.table("a"), "column_wise", "hbm", "fp32", column_blocks=2)
    whole = est.candidate(w.table("a"), "table_wise", "hbm", "fp32")
    assert columns is not None and whole is not None
    assert part.place(columns) is not None and part.place(whole) is not None
    (block,) = whole.blocks
    plan = Plan(2, tuple(part.shards))
    usage = plan_usage(plan, w, system)
    # two batches of a's ids (DLE's prefetcher; 2026-12-07: 8 x 2 x 8 while one was counted)
    assert ids_by_rank(plan, w) == {0: 2 * 8 * 2 * 8, 1: 2 * 8 * 2 * 8}
    reader = est.reader_hbm_bytes
    assert reader > 0.0
    assert usage.input_by_rank == {0: 2 * 8 * 2 * 8 + reader, 1: 2 * 8 * 2 * 8 + reader}
    assert part.hbm == pytest.approx([usage.hbm_by_rank[0], usage.hbm_by_rank[1]], rel=1e-12)
    # the whole table's rank took its block's HBM less a's 256 B of ids (2026-12-07: 128 B, one batch)
    rank = part.shards[-1].ranks[0]
    before = Partitioner(est, "lpt", cap=Capacity.unlimited(est.per_node))
    before.place(columns)
    assert part.hbm[rank] - before.hbm[rank] == block.storage.hbm_bytes - 2 * 8 * 2 * 8
