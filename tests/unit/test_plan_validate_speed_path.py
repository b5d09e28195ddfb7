"""``Plan.validate`` names a shard only for a message, and ``_overlap`` answers a table of one
shard at once: the same messages, and the same answers, as the code they replaced (the shard's
name as it was made before every check; ``_overlap`` kept below as the reference)."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recsim.api import make_plan, prepare
from recsim.errors import InfeasibleError
from recsim.planner.types import Plan, Shard, _is_rank, _overlap, _ranks_within


def cells_overlap(shards: list[Shard]) -> bool:
    """The definition, cell by cell (the shards below are a few cells wide)."""
    seen: set[tuple[int, int]] = set()
    for s in shards:
        cells = {(r, c) for r in range(s.row_start, s.row_end) for c in range(s.col_start, s.col_end)}
        if seen & cells:
            return True
        seen |= cells
    return False


@pytest.mark.parametrize("seed", range(20))
def test_overlap_is_a_shared_cell(seed):
    """Against the cell-by-cell definition; column ranges that intersect without being equal (a
    hand-edited plan) included, which the previous code called an overlap whatever their rows (a
    tester's find)."""
    rng = random.Random(seed)
    for _ in range(200):
        shards = []
        for _ in range(rng.randrange(0, 4)):
            r0, c0 = rng.randrange(0, 8), rng.choice([0, 4])
            r1, c1 = r0 + rng.randrange(1, 6), c0 + rng.choice([4, 8])
            shards.append(Shard("t", "row_wise", r0, r1, c0, c1, (0,)))
        assert _overlap(shards) == cells_overlap(shards)


def test_intersecting_column_ranges_on_disjoint_rows_do_not_overlap():
    shards = [
        Shard("t", "row_wise", 0, 5, 0, 64, (0,)),
        Shard("t", "row_wise", 5, 10, 0, 128, (0,)),
        Shard("t", "row_wise", 10, 12, 32, 96, (0,)),
    ]
    assert not _overlap(shards)
    assert _overlap([*shards, Shard("t", "row_wise", 4, 6, 100, 128, (0,))])


def _plan():
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=1, precision="fp16")
    return workload, make_plan("table_wise", workload, system)


def _name(s: Shard) -> str:
    """The shard as the previous code named it."""
    return f"shard {s.table}[{s.row_start}:{s.row_end}, {s.col_start}:{s.col_end}]"


BROKEN = [
    ({"sharding": "sideways"}, "unknown sharding 'sideways'"),
    ({"order": "shuffled"}, "row order must be one of"),
    ({"row_end": 10**12}, "outside the table"),
    ({"ranks": (99,)}, "ranks (99,) outside 0..7"),
    ({"sharding": "data_parallel", "ranks": (0,)}, "a data-parallel shard is on every rank"),
    ({"sharding": "data_parallel", "ranks": tuple(range(8)), "tier": "ddr"}, "lives in HBM"),
    ({"sharding": "distributed", "ranks": (0, 0)}, "a distributed shard needs distinct ranks"),
    ({"ranks": (0, 1)}, "shard is on exactly one rank"),
    ({"dtype": "fp3"}, "unknown embedding dtype 'fp3'"),
]


@pytest.mark.parametrize(("change", "says"), BROKEN)
def test_validate_names_a_broken_shard_as_before(change, says):
    workload, plan = _plan()
    valid = plan.validate(workload)
    assert valid is None
    broken = replace(plan.shards[3], **change)
    shards = [*plan.shards[:3], broken, *plan.shards[4:]]
    with pytest.raises(InfeasibleError) as raised:
        Plan(**{**plan.__dict__, "shards": shards}).validate(workload)
    message = str(raised.value)
    assert message.startswith(f"{_name(broken)}: ")
    assert says in message


def test_validate_still_finds_overlapping_and_missing_cells():
    workload, plan = _plan()
    s = plan.shards[0]
    half = s.row_start + s.rows // 2
    cut = [replace(s, row_end=half + 1), replace(s, row_start=half)]  # one row twice
    with pytest.raises(InfeasibleError, match="and overlap"):
        Plan(**{**plan.__dict__, "shards": [*cut, *plan.shards[1:]]}).validate(workload)
    short = replace(s, row_end=s.row_end - 1)
    with pytest.raises(InfeasibleError, match=r"cover \d+ of \d+ cells$"):
        Plan(**{**plan.__dict__, "shards": [short, *plan.shards[1:]]}).validate(workload)


_RANK_VALUES = st.one_of(
    st.integers(-3, 12),
    st.booleans(),
    st.integers(-3, 12).map(np.int64),
    st.floats(-3, 12),
    st.just("1"),
)


@given(ranks=st.lists(_RANK_VALUES, max_size=6).map(tuple), world=st.integers(1, 10))
def test_ranks_within_is_each_rank_checked(ranks, world):
    """``_ranks_within`` (plain ints by their extremes) is the per-rank check it replaced in
    ``Plan.validate``: a rank (not a bool, not a float) in ``0..world - 1``, every one."""
    want = not any(not _is_rank(r) or not 0 <= r < world for r in ranks)
    assert _ranks_within(ranks, world) == want
