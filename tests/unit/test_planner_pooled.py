"""The owner side of the pooled exchange in HBM: its bytes per shard and rank, how the simulator's
memory report (``plan_usage``) charges them, and how the planner's partitioner places by them."""

from __future__ import annotations

import pytest

from recsim.config.loader import Override
from recsim.hardware.library import HardwareLibrary
from recsim.hardware.system import System
from recsim.planner.config import planner_config
from recsim.planner.estimator import Estimator
from recsim.planner.partitioners import Partitioner
from recsim.planner.storage import (
    Capacity,
    dense_hbm_bytes,
    ids_by_rank,
    plan_usage,
    pooled_by_rank,
    pooled_output_bytes,
    rank_reader_bytes,
    shard_storage,
)
from recsim.planner.types import Plan, Shard
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import Workload
from tests.conftest import FIXTURES

WL = WorkloadLibrary([FIXTURES / "workloads"])
HW = HardwareLibrary([FIXTURES / "minilib"])

# tiny-dlrm: global batch 8, dim 4, fp32 tables and training (no narrow output): table a pooled for
# the whole batch is 8 x 4 x 4 B.
A_POOLED = 8 * 4 * 4
# ... and the ids its owner reads for the whole batch (``storage.input_buffer_bytes``): 2 int64 ids
# a sample (pooling 2; tiny's index dtype, int64) and an int32 length, 8 x (2 x 8 + 4) B; b's,
# pooling 3, 8 x (3 x 8 + 4) B. A table's blocks take these besides their rows wherever the rows
# are (``Block.io_hbm_bytes``).
A_IDS = 8 * (2 * 8 + 4)
B_IDS = 8 * (3 * 8 + 4)
A_IO = A_POOLED + A_IDS
B_IO = A_POOLED + B_IDS


@pytest.fixture(scope="module")
def tiny() -> Workload:
    return WL.workload("tiny-dlrm")


@pytest.fixture(scope="module")
def tiny_sgd(tiny: Workload) -> Workload:
    """tiny-dlrm with SGD tables (no optimizer state: 16 B a row): a table on ``uvm`` then keeps
    nothing in HBM but its vectors and ids. Under tiny's row-wise Adagrad it also keeps the state,
    4 B a row, in HBM (FBGEMM places a row-wise state on the device: ``storage.shard_storage``)."""
    training = tiny.training.model_copy(update={"embedding_optimizer": "sgd"})
    return tiny.model_copy(update={"training": training})


def two_gpus() -> System:
    return HW.system("tiny", [Override.parse("cluster.nodes=1"), Override.parse("node.accelerators.count=2")])


def fixed(workload: Workload, world: int) -> float:
    """HBM every rank takes whatever its tables: the dense side and the loader's own buffers
    (``storage.rank_reader_bytes``: tiny's fused runtime, HugeCTR's multi-hot reader)."""
    return dense_hbm_bytes(workload, world) + rank_reader_bytes(workload, world)


def two_gpus_with_free(workload: Workload, free: float) -> System:
    """``two_gpus`` with ``free`` bytes of HBM a GPU beside ``workload``'s dense side and loader."""
    hbm = f"node.accelerators.device.hbm.capacity={fixed(workload, 2) + free:.0f} B"
    return HW.system(
        "tiny",
        [Override.parse("cluster.nodes=1"), Override.parse("node.accelerators.count=2"), Override.parse(hbm)],
    )


def test_a_table_owner_holds_its_global_batch_of_pooled_vectors(tiny):
    whole = Shard("a", "table_wise", 0, 100, 0, 4, (0,))
    assert pooled_output_bytes(whole, tiny, 2) == A_POOLED
    # whatever tier holds the rows: the lookups write the vectors in HBM
    assert pooled_output_bytes(Shard("a", "table_wise", 0, 100, 0, 4, (0,), tier="uvm"), tiny, 2) == A_POOLED
    # a column block its columns; each member of a row split its partial pools for every sample
    assert pooled_output_bytes(Shard("a", "column_wise", 0, 100, 0, 2, (1,)), tiny, 2) == 8 * 2 * 4
    assert pooled_output_bytes(Shard("a", "row_wise", 0, 50, 0, 4, (0,)), tiny, 2) == A_POOLED
    # no exchange: replicated rows serve the local batch, and a world of one sends nothing
    assert pooled_output_bytes(Shard("a", "data_parallel", 0, 100, 0, 4, (0, 1)), tiny, 2) == 0.0
    assert pooled_output_bytes(whole, tiny, 1) == 0.0


def test_narrow_lookups_write_half_precision_vectors():
    # fp16 training under the fused runtime (HugeCTR writes its lookups in the half precision,
    # ``Runtime.lookup_output_dtype``): 2 B a value; the eager runtime (TorchRec's TBE output
    # in the table's fp32) 4 B.
    fused = WL.workload("tiny-dlrm", [Override.parse("training.precision=fp16")])
    eager = WL.workload(
        "tiny-dlrm", [Override.parse("training.precision=fp16"), Override.parse("training.runtime=eager")]
    )
    whole = Shard("a", "table_wise", 0, 100, 0, 4, (0,))
    assert pooled_output_bytes(whole, fused, 2) == 8 * 4 * 2
    assert pooled_output_bytes(whole, eager, 2) == 8 * 4 * 4


def test_plan_usage_charges_the_owner_once_per_table_and_column_range(tiny):
    system = two_gpus()
    plan = Plan(
        2,
        (
            # a's hot rows replicated (no owner side), its cold rows owned by rank 0
            Shard("a", "data_parallel", 0, 10, 0, 4, (0, 1), order="popularity"),
            Shard("a", "table_wise", 10, 100, 0, 4, (0,), tier="uvm", order="popularity"),
            # b split by rows: each member pools every sample
            Shard("b", "row_wise", 0, 25, 0, 4, (0,)),
            Shard("b", "row_wise", 25, 50, 0, 4, (1,)),
        ),
    )
    # a's cold slice (rows 10-100 of a uniform table, 2 lookups a bag) under tiny's fused runtime
    # pools only the bags that drew one of its rows, 1 - 0.1^2 of them
    # (``test_a_part_of_a_table_pools_the_bags_the_graph_pools``)
    cold = A_POOLED * (1 - 0.1**2)
    assert pooled_by_rank(plan, tiny) == pytest.approx({0: cold + A_POOLED, 1: A_POOLED}, rel=1e-12)
    usage = plan_usage(plan, tiny, system)
    assert usage.pooled_by_rank == pooled_by_rank(plan, tiny)
    # The ids: a's cold slice reads its 90 % of a's (uniform) lookups, each half of b its half of
    # b's (by id), every shard a length a sample; the replicated hot rows none.
    b_half = 8 * (3 * 0.5 * 8 + 4)
    ids = {0: 8 * (2 * 0.9 * 8 + 4) + b_half, 1: b_half}
    assert ids_by_rank(plan, tiny) == pytest.approx(ids, rel=1e-12)
    # the rank's inputs: its ids and the loader's own buffers (``storage.rank_reader_bytes``)
    reader = rank_reader_bytes(tiny, 2)
    assert usage.input_by_rank == pytest.approx({r: v + reader for r, v in ids.items()}, rel=1e-12)
    dense = fixed(tiny, 2)
    for rank in (0, 1):
        rows = sum(shard_storage(s, tiny, 2).hbm_bytes for s in plan.shards if rank in s.ranks)
        held = dense + rows + pooled_by_rank(plan, tiny)[rank] + ids[rank]
        assert usage.hbm_by_rank[rank] == pytest.approx(held, rel=1e-12)


def test_a_block_takes_its_rows_and_its_pooled_vectors(tiny):
    est = Estimator(two_gpus(), tiny, planner_config([]))
    cand = est.candidate(tiny.table("a"), "table_wise", "hbm", "fp32")
    assert cand is not None
    (block,) = cand.blocks
    assert block.pooled_hbm_bytes == A_POOLED
    assert block.input_hbm_bytes == A_IDS
    assert block.storage.hbm_bytes == 100 * 20 + A_IO  # fp32 dim 4 + row-wise Adagrad, 20 B a row
    slow = est.candidate(tiny.table("a"), "table_wise", "uvm", "fp32")
    assert slow is not None
    # its vectors and ids, and its row-wise Adagrad state, 100 x 4 B, which FBGEMM keeps on the
    # device (before the state was placed there: A_IO alone)
    assert slow.blocks[0].storage.hbm_bytes == A_IO + 100 * 4


def test_a_table_that_fits_without_its_pooled_vectors_but_not_with_them(tiny):
    est = Estimator(two_gpus(), tiny, planner_config([]))
    cand = est.candidate(tiny.table("a"), "table_wise", "hbm", "fp32")
    assert cand is not None
    dense = fixed(tiny, 2)
    rows = 100 * 20
    short = Partitioner(est, "lpt", cap=Capacity(dense + rows + A_IO - 1, 1e12, 1e12, 2))
    assert short.place(cand) is None  # the rows alone would fit
    enough = Partitioner(est, "lpt", cap=Capacity(dense + rows + A_IO, 1e12, 1e12, 2))
    assert enough.place(cand) is not None


def test_rows_leave_every_rank_room_for_the_pooled_vectors_of_tables_off_hbm(tiny_sgd):
    # Tables a and b (128 B of pooled vectors each, and 160 and 224 B of ids: 288 and 352 B) on
    # 2 ranks: a's rows in HBM may not take a rank's even share of the vectors and ids of the
    # tables not placed with rows in HBM once a is (b's: 176 B) plus the largest of the tables
    # still to place (b's 352 B); a's vectors and ids alone, its rows on a host tier, may (SGD:
    # no state in HBM, ``tiny_sgd``; 16 B a row, 20 B under row-wise Adagrad before the move).
    tiny = tiny_sgd
    est = Estimator(two_gpus(), tiny, planner_config([]))
    hbm = est.candidate(tiny.table("a"), "table_wise", "hbm", "fp32")
    uvm = est.candidate(tiny.table("a"), "table_wise", "uvm", "fp32")
    assert hbm is not None and uvm is not None
    dense = fixed(tiny, 2)
    held = 100 * 16 + A_IO
    for slack, fits in ((B_IO // 2 + B_IO - 1, False), (B_IO // 2 + B_IO, True)):
        part = Partitioner(est, "lpt", cap=Capacity(dense + held + slack, 1e12, 1e12, 2))
        part.reserve({"a": A_IO, "b": B_IO})
        assert part.reserved_rank_bytes == (A_IO + B_IO) / 2 + B_IO
        assert (part.place(hbm) is not None) is fits
    part = Partitioner(est, "lpt", cap=Capacity(dense + B_IO, 1e12, 1e12, 2))
    part.reserve({"a": A_IO, "b": B_IO})
    b_uvm = est.candidate(tiny.table("b"), "table_wise", "uvm", "fp32")
    assert b_uvm is not None
    assert part.place(uvm) is not None
    assert part.place(b_uvm) is not None  # the other rank
    assert part.place(uvm) is None  # full


def test_the_reserve_counts_the_vectors_of_a_table_placed_in_hbm_once(tiny_sgd):
    # Once a's rows and vectors are in HBM its vectors are in its block, not in the reserve any
    # more: the reserve falls from 128 + 128 B (a's and b's even share, the largest) to b's share
    # and b's 128 B. Placed off HBM, a's vectors took from the reserve: its share stays, and only
    # the largest of the tables still to place (b's) is kept on top. Before, the reserve stayed
    # 256 B whatever was placed: a's vectors were counted in its block and again in the reserve.
    # (SGD, ``tiny_sgd``: a on uvm keeps no state in HBM.)
    tiny = tiny_sgd
    est = Estimator(two_gpus(), tiny, planner_config([]))
    hbm = est.candidate(tiny.table("a"), "table_wise", "hbm", "fp32")
    uvm = est.candidate(tiny.table("a"), "table_wise", "uvm", "fp32")
    assert hbm is not None and uvm is not None
    for cand, left in ((hbm, A_POOLED / 2 + A_POOLED), (uvm, A_POOLED + A_POOLED)):
        part = Partitioner(est, "lpt", cap=Capacity(1e12, 1e12, 1e12, 2))
        part.reserve({"a": A_POOLED, "b": A_POOLED})
        assert part.score(cand) is not None
        assert part.reserved_rank_bytes == 2 * A_POOLED  # scoring changes nothing
        assert part.place(cand) is not None
        assert part.reserved_rank_bytes == left


def test_the_greedy_keeps_a_table_in_hbm_that_fits_beside_the_reserve_counted_once(tiny):
    # HBM and uvm allowed, table-wise, fp32, no planner reserve, 2 ranks with 2,320 B free beside
    # the dense side: a's rows and vectors (2,128 B) leave 192 B, the reserve once a is in HBM
    # (b's 64 B share and its 128 B), so a stays in HBM, and b beside it on the other rank. With
    # a's vectors counted in the reserve too (256 B) a went to uvm.
    from recsim.api import make_plan

    dense = fixed(tiny, 2)
    free = 100 * 20 + A_POOLED + A_POOLED // 2 + A_POOLED
    system = two_gpus_with_free(tiny, free)
    planner = [
        "planner.hbm_reserve=0",
        "planner.embedding_dtypes=[fp32]",
        "planner.sharding_types=[table_wise]",
        "planner.tiers=[hbm,uvm]",
    ]
    plan = make_plan("greedy", tiny, system, planner=planner)
    assert {s.table: s.tier for s in plan.shards} == {"a": "hbm", "b": "hbm"}
    usage = plan_usage(plan, tiny, system)
    assert max(usage.hbm_by_rank.values()) <= dense + free


def test_the_greedy_plans_only_where_the_pooled_vectors_fit_too(tiny):
    # HBM only, fp32 only, table-wise, no planner reserve, on 2 ranks: a's rows (2,000 B) fit a
    # rank with 2,100 B free, but not with its 128 B of pooled vectors and 160 B of ids; on ranks
    # with room for a's rows, its vectors and ids, the greedy plans (no table can leave HBM: no reserve,
    # ``test_with_every_table_in_hbm_the_greedy_keeps_no_reserve``).
    from recsim.api import make_plan
    from recsim.errors import InfeasibleError

    dense = fixed(tiny, 2)
    planner = [
        "planner.hbm_reserve=0",
        "planner.tiers=[hbm]",
        "planner.embedding_dtypes=[fp32]",
        "planner.sharding_types=[table_wise]",
    ]

    with pytest.raises(InfeasibleError, match=r"table 'a' .* fits nowhere"):
        make_plan("greedy", tiny, two_gpus_with_free(tiny, 2100), planner=planner)
    roomy = two_gpus_with_free(tiny, 100 * 20 + A_IO)
    plan = make_plan("greedy", tiny, roomy, planner=planner)
    usage = plan_usage(plan, tiny, roomy)
    assert max(usage.hbm_by_rank.values()) == pytest.approx(dense + 100 * 20 + A_IO, rel=1e-12)


def test_with_every_table_in_hbm_the_greedy_keeps_no_reserve(tiny):
    # The reserve is room for the pooled vectors of tables whose rows leave HBM: with only HBM (or
    # a cache in HBM, whose blocks keep the reserve themselves) to put rows on, no table's do, and
    # a plan that fits by rows and vectors alone is found; with uvm allowed the reserve is kept.
    from recsim.api import make_plan
    from recsim.planner.proposers.greedy import rows_may_leave_hbm

    dense = fixed(tiny, 2)
    planner = [
        "planner.hbm_reserve=0",
        "planner.embedding_dtypes=[fp32]",
        "planner.sharding_types=[table_wise]",
    ]
    hbm = f"node.accelerators.device.hbm.capacity={dense + 100 * 20 + A_IO:.0f} B"
    tight = HW.system(
        "tiny",
        [Override.parse("cluster.nodes=1"), Override.parse("node.accelerators.count=2"), Override.parse(hbm)],
    )
    for tiers, off in (("[hbm]", False), ("[hbm,uvm_caching]", False), ("[hbm,uvm]", True)):
        est = Estimator(tight, tiny, planner_config([Override.parse(f"planner.tiers={tiers}")]))
        assert rows_may_leave_hbm(est) is off
    plan = make_plan("greedy", tiny, tight, planner=[*planner, "planner.tiers=[hbm]"])
    usage = plan_usage(plan, tiny, tight)
    assert {s.tier for s in plan.shards} == {"hbm"}
    assert max(usage.hbm_by_rank.values()) == pytest.approx(dense + 100 * 20 + A_IO, rel=1e-12)
    # With uvm allowed, rows keep the reserve, each table's vectors and ids counted once: b (the
    # costlier, placed first) leaves a rank 432 B (its share, 144 B, of a's 288 B, and a's 288 B);
    # a, last, has no table to leave room for and fits the other rank whole.
    plan = make_plan("greedy", tiny, tight, planner=[*planner, "planner.tiers=[hbm,uvm]"])
    assert {s.table: s.tier for s in plan.shards} == {"a": "hbm", "b": "hbm"}
    # With 1,400 B free, b's rows, vectors and ids (1,000 + 352 B) fit a rank, but not beside the
    # 432 B (b first), nor beside its 144 B share of a's once a is on uvm (b last): b goes to uvm
    # (and a, whose rows fit no rank). (1,150 B and 192 B before the ids were charged.) That was
    # before a row-wise state of a managed shard was placed in HBM (FBGEMM construct_split_state):
    # a on uvm now keeps its 400 B of state in HBM, holds HBM as a cache does, and b's rows,
    # vectors and ids (1,352 B) fit the other rank: b goes to hbm (before: uvm).
    small = f"node.accelerators.device.hbm.capacity={dense + 1400:.0f} B"
    one_node = [Override.parse("cluster.nodes=1"), Override.parse("node.accelerators.count=2")]
    roomless = HW.system("tiny", [*one_node, Override.parse(small)])
    plan = make_plan("greedy", tiny, roomless, planner=[*planner, "planner.tiers=[hbm,uvm]"])
    assert {s.table: s.tier for s in plan.shards} == {"a": "uvm", "b": "hbm"}


def test_fits_nowhere_names_the_pooled_vectors_and_the_reserve(tiny):
    # The message's free HBM must be read against the table's rows *and* its pooled vectors, and
    # against the reserve rows leave: without them, "1.953 KiB ... most free: HBM 2.051 KiB" reads
    # as a table that fits.
    from recsim.api import make_plan
    from recsim.errors import InfeasibleError

    planner = [
        "planner.hbm_reserve=0",
        "planner.embedding_dtypes=[fp32]",
        "planner.sharding_types=[table_wise]",
    ]

    with pytest.raises(InfeasibleError) as err:
        make_plan("greedy", tiny, two_gpus_with_free(tiny, 2100), planner=[*planner, "planner.tiers=[hbm]"])
    assert "and 128 B of pooled vectors and 160 B of input ids in HBM" in str(err.value)
    assert "leaves" not in str(err.value)  # no reserve with every table in HBM
    with pytest.raises(InfeasibleError) as err:
        make_plan(
            "greedy", tiny, two_gpus_with_free(tiny, 100), planner=[*planner, "planner.tiers=[hbm,uvm]"]
        )
    # (a's and b's vectors and ids, 288 and 352 B: (288 + 352) / 2 + 352 B)
    assert "a block with rows or a cache in HBM leaves 672 B of its rank's HBM" in str(err.value)


@pytest.mark.parametrize("framework", ["fused", "eager"])
def test_a_part_of_a_table_pools_the_bags_the_graph_pools(framework):
    # The owner side is what the graph's forward lookups write: HugeCTR's (fused) lookups of a part
    # of a table (a popularity slice, a rank's share of routed rows) pool only the bags that drew
    # one of its rows (``Runtime.pools_hit_bags_only``); FBGEMM's TBE (eager) writes every sample's
    # bag, empty ones included. Before, a slice was charged every bag under fused, and a routed
    # share only its hit bags under eager.
    from recsim.graph.build import build_training_step
    from recsim.graph.ir import Embedding

    w = WL.workload("tiny-dlrm", [Override.parse(f"training.runtime={framework}")])
    plans = (
        Plan(
            2,
            (
                Shard("a", "data_parallel", 0, 10, 0, 4, (0, 1), order="popularity"),
                Shard("a", "table_wise", 10, 100, 0, 4, (0,), order="popularity"),
                Shard("b", "table_wise", 0, 50, 0, 4, (1,)),
            ),
        ),
        Plan(
            2,
            (
                Shard("a", "data_parallel", 0, 10, 0, 4, (0, 1), order="popularity"),
                Shard("a", "distributed", 10, 100, 0, 4, (0, 1), order="popularity"),
                Shard("b", "table_wise", 0, 50, 0, 4, (1,)),
            ),
        ),
    )
    for plan in plans:
        graph = build_training_step(w, plan)
        for rank in (0, 1):
            written = sum(
                (n.op.bags if n.op.bags is not None else n.op.batch) * n.op.dim * 4
                for n in graph.rank_nodes(rank)
                if isinstance(n.op, Embedding)
                and n.op.pass_ == "forward"
                and n.phase == "forward"
                and n.op.batch == 8  # the global batch: the owner side, not a replicated lookup
            )
            assert pooled_by_rank(plan, w).get(rank, 0.0) == pytest.approx(written, rel=1e-12), (plan, rank)
    slice_ = plans[0].shards[1]
    full = pooled_output_bytes(slice_, w, 2)
    assert full == (pytest.approx(A_POOLED * (1 - 0.1**2)) if framework == "fused" else A_POOLED)


def test_a_row_split_over_part_of_the_world_holds_its_reduce_scatter_output(tiny):
    # On 4 ranks a split over ranks 0-1 reduce-scatters its partial pools over those 2 and sends
    # each rank its samples from there: each member holds the sums of half the global batch
    # (4 samples x 4 x 4 B) besides its partial pools. Over all 4 ranks the output is each rank's
    # own samples, the receive side the dense activations count: nothing more. An int8 wire
    # cannot reduce-scatter (the plan is refused): nothing.
    import dataclasses

    from recsim.planner.storage import reduce_scatter_by_rank

    part = Plan(4, (Shard("a", "row_wise", 0, 50, 0, 4, (0,)), Shard("a", "row_wise", 50, 100, 0, 4, (1,))))
    assert reduce_scatter_by_rank(part, tiny, 2) == {0: 4 * 4 * 4, 1: 4 * 4 * 4}
    four = HW.system("tiny", [Override.parse("cluster.nodes=2"), Override.parse("node.accelerators.count=2")])
    usage = plan_usage(part, tiny, four)
    assert usage.pooled_by_rank == {0: A_POOLED + 64, 1: A_POOLED + 64}
    whole = Plan(4, tuple(Shard("a", "row_wise", 25 * i, 25 * (i + 1), 0, 4, (i,)) for i in range(4)))
    assert reduce_scatter_by_rank(whole, tiny, 2) == {}
    assert reduce_scatter_by_rank(dataclasses.replace(part, comm_dtype="int8"), tiny, 2) == {}
    # The estimator's block of a split over 2 of 4 ranks holds it too.
    est = Estimator(four, tiny, planner_config([]))
    block = est.block(part.shards[:1], comm_out_bytes=0.0, split_group=2)
    assert block.pooled_hbm_bytes == A_POOLED + 64


def test_a_row_split_off_hbm_takes_no_more_of_the_reserve_than_its_least_vectors(tiny_sgd):
    # Each member of a row split pools every sample: a's split over 2 ranks on uvm writes 2 x 128 B
    # of vectors and reads 2 x 96 B of ids (half of a's ids and a length a sample each), while the
    # reserve counts a's least, 288 B (a whole). Reserve for a, b and a third table like a: (288 +
    # 352 + 288) / 2 + 352 = 816 B a rank. With 816 B free on each rank the split may take 288 B of
    # the reserve, its members would take 2 x 224 B; with 816 + 80 B free it takes 2 x 144 B of it
    # and fits; a whole on uvm takes its 288 B and fits either way. (Before the ids were charged:
    # 128 B a member, 320 B of reserve, 64 B more.) SGD (``tiny_sgd``): no state in HBM.
    tiny = tiny_sgd
    est = Estimator(two_gpus(), tiny, planner_config([]))
    split = est.candidate(tiny.table("a"), "row_wise", "uvm", "fp32")
    whole = est.candidate(tiny.table("a"), "table_wise", "uvm", "fp32")
    assert split is not None and whole is not None
    member = A_POOLED + 8 * (2 * 0.5 * 8 + 4)
    assert [b.storage.hbm_bytes for b in split.blocks] == [member, member]
    dense = fixed(tiny, 2)
    reserve = (2 * A_IO + B_IO) / 2 + B_IO
    over = member - A_IO / 2  # the free HBM above the reserve from which the split fits
    for free, fits in ((reserve, False), (reserve + over - 2, False), (reserve + over, True)):
        part = Partitioner(est, "lpt", cap=Capacity(dense + free, 1e12, 1e12, 2))
        part.reserve({"a": A_IO, "b": B_IO, "c": A_IO})
        assert part.reserved_rank_bytes == reserve
        assert (part.score(split) is not None) is fits
        assert (part.place(split) is not None) is fits
        if not fits:
            assert part.hbm == [dense, dense]  # refused whole: nothing left behind
            assert part.place(whole) is not None
    # Placed with a budget per candidate: a refused split leaves the next its whole budget.
    part = Partitioner(est, "lpt", cap=Capacity(dense + reserve, 1e12, 1e12, 2))
    part.reserve({"a": A_IO, "b": B_IO, "c": A_IO})
    assert part.place(split) is None
    assert part.place(whole) is not None
    b_whole = est.candidate(tiny.table("b"), "table_wise", "uvm", "fp32")
    assert b_whole is not None and part.place(b_whole) is not None
    # the third table's 288 B still fit a rank
    assert max(part.cap.hbm_bytes_per_rank - h for h in part.hbm) >= A_IO


def test_a_row_split_reduced_per_node_holds_what_plan_usage_charges(tiny):
    # On 2 nodes of 2 ranks with row splits reduced per node (``planner.row_split_exchange=node``
    # under tiny's fused runtime, which can), a row split over all 4 ranks reduce-scatters over each
    # node's 2: each member holds the sums of half the global batch (4 samples x 4 x 4 B = 64 B)
    # until the all-to-all sends them on. The estimator's blocks charge what ``plan_usage`` charges
    # the placed plan (its group was the world, and it charged nothing); flat, neither charges it.
    import dataclasses

    four = HW.system("tiny", [Override.parse("cluster.nodes=2"), Override.parse("node.accelerators.count=2")])
    for exchange, held in (("node", 64), ("flat", 0)):
        est = Estimator(
            four, tiny, planner_config([Override.parse(f"planner.row_split_exchange={exchange}")])
        )
        cand = est.candidate(tiny.table("a"), "row_wise", "hbm", "fp32")
        assert cand is not None and len(cand.blocks) == 4
        shards = tuple(dataclasses.replace(b.shards[0], ranks=(r,)) for r, b in enumerate(cand.blocks))
        plan = Plan(4, shards, row_split_exchange=exchange)
        usage = plan_usage(plan, tiny, four)
        for rank, block in enumerate(cand.blocks):
            assert block.pooled_hbm_bytes == usage.pooled_by_rank[rank] == A_POOLED + held, exchange
            rest = usage.hbm_by_rank[rank] - usage.dense_hbm_bytes - est.reader_hbm_bytes
            assert block.storage.hbm_bytes == rest, exchange
