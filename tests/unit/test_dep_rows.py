"""The dependency arrays of a built step graph from its dense chains' template
(``recsim.graph.dep_rows``): the same ints, in the same order, as reading the column node by node."""

from __future__ import annotations

from itertools import chain

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.api import make_plan, prepare
from recsim.graph.build import BuildOptions, build_training_step
from recsim.graph.dep_rows import (
    DenseChainRegion,
    dep_arrays,
    fill_chain_deps,
    region_queues,
    region_short,
    region_spread,
    tiled,
)
from recsim.graph.index import OpTable
from recsim.graph.ir import NodeColumns


def _read(deps: list[tuple[int, ...]]) -> tuple[list[int], list[int]]:
    """The arrays as the column reads, plainly."""
    return list(chain.from_iterable(deps)), [len(d) for d in deps]


def _column(
    before: list[tuple[int, ...]],
    template: list[tuple[int, ...]],
    joined_at: int,
    joined: list[tuple[int, ...]],
    after: list[tuple[int, ...]],
) -> tuple[list[tuple[int, ...]], DenseChainRegion]:
    """A column with ``len(joined)`` chains of ``template`` after ``before``, then ``after``: the
    chains laid down as the builder lays them (offsets shifted by the chain's first id)."""
    deps = list(before)
    bases = []
    for own in joined:
        base = len(deps)
        bases.append(base)
        made = [tuple(base + d for d in t) for t in template]
        if 0 <= joined_at < len(template):
            made[joined_at] = own
        deps += made
    return deps + list(after), DenseChainRegion(template, joined_at, bases, joined)


def test_two_chains_of_three_nodes() -> None:
    # Node 1 of each chain joins; node 2 waits for nodes 1 and 0 of its chain.
    deps, region = _column([(), (0,), ()], [(), (0,), (1, 0)], 1, [(0,), (1, 2)], [(3, 6)])
    assert deps == [(), (0,), (), (), (0,), (4, 3), (), (1, 2), (7, 6), (3, 6)]
    flat, counts = dep_arrays(deps, region)
    assert flat.tolist() == [0, 0, 4, 3, 1, 2, 7, 6, 3, 6]
    assert counts.tolist() == [0, 1, 0, 0, 1, 2, 0, 2, 2, 2]
    assert flat.dtype == counts.dtype == np.intp


def test_two_chains_whose_joined_nodes_have_as_many_dependencies() -> None:
    # (``_region``'s table of chains.) Node 1 of each chain joins two nodes; node 2 waits for
    # nodes 1 and 0 of its chain.
    deps, region = _column([(), (0,)], [(), (0,), (1, 0)], 1, [(0, 1), (1, 2)], [(3, 6)])
    assert deps == [(), (0,), (), (0, 1), (3, 2), (), (1, 2), (6, 5), (3, 6)]
    flat, counts = dep_arrays(deps, region)
    assert flat.tolist() == [0, 0, 1, 3, 2, 1, 2, 6, 5, 3, 6]
    assert counts.tolist() == [0, 1, 0, 2, 2, 0, 2, 2, 2]
    assert flat.dtype == counts.dtype == np.intp


def test_no_joined_node_and_no_region_read_the_column() -> None:
    deps, region = _column([(), (0,)], [(), (0,)], -1, [(), ()], [(1,)])
    assert [list(a) for a in dep_arrays(deps, region)] == [list(x) for x in _read(deps)]
    assert [list(a) for a in dep_arrays(deps, None)] == [list(x) for x in _read(deps)]


small = st.lists(st.integers(0, 5), max_size=3).map(tuple)


@st.composite
def columns(draw: st.DrawFn) -> tuple[list[tuple[int, ...]], DenseChainRegion]:
    """A column (``_column``): nodes before the chains, the chains of a drawn template with their
    joined node, and nodes after."""
    return _column(
        draw(st.lists(small, max_size=4)),
        draw(st.lists(small, min_size=1, max_size=5)),
        draw(st.integers(-1, 5)),
        draw(st.lists(small, max_size=4)),
        draw(st.lists(small, max_size=4)),
    )


@settings(max_examples=60, deadline=None)
@given(columns())
def test_the_arrays_are_the_columns_read_node_by_node(
    column: tuple[list[tuple[int, ...]], DenseChainRegion],
) -> None:
    deps, region = column
    flat, counts = dep_arrays(deps, region)
    assert (flat.tolist(), counts.tolist()) == _read(deps)


def test_chains_left_out_are_made_as_the_builder_laid_them_down() -> None:
    deps, region = _column([(), (0,), ()], [(), (0,), (1, 0)], 1, [(0,), (1, 2)], [(3, 6)])
    pending: list[tuple[int, ...] | None] = [(), (0,), (), None, None, None, None, None, None, (3, 6)]
    fill_chain_deps(pending, region)
    assert pending == [(), (0,), (), (), (0,), (4, 3), (), (1, 2), (7, 6), (3, 6)] == deps


@settings(max_examples=60, deadline=None)
@given(columns())
def test_filling_the_chains_gives_the_column_laid_down(
    column: tuple[list[tuple[int, ...]], DenseChainRegion],
) -> None:
    deps, region = column
    start, stop = region.span
    pending: list[tuple[int, ...] | None] = [*deps[:start], *[None] * (stop - start), *deps[stop:]]
    fill_chain_deps(pending, region)
    assert pending == deps


@pytest.mark.parametrize(
    ("system_name", "workload_name", "nodes", "strategy", "fold"),
    [
        ("dgx-h100", "dlrm-dcnv2", 16, "table_wise", True),
        ("dgx-h100", "dlrm-dcnv2", 2, "row_wise", False),
        ("dgx-a100", "dlrm-mlperf", 2, "hybrid_embedding", False),
        ("dgx-a100", "rmc1", 2, "data_parallel", True),
    ],
)
def test_a_built_graphs_arrays_are_its_columns(
    system_name: str, workload_name: str, nodes: int, strategy: str, fold: bool
) -> None:
    system, workload = prepare(system_name, workload_name, nodes=nodes)
    plan = make_plan(strategy, workload, system)
    graph = build_training_step(
        workload, plan, BuildOptions(ranks_per_node=8, validate_plan=False, fold_ranks=fold)
    )
    columns = graph.columns
    assert columns is not None and columns.chain_region is not None
    # The builder leaves the chains' tuples out of the column (None each), the arrays read from
    # the template; the column read as ``deps`` has them made.
    start, stop = columns.chain_region.span
    pending = columns.pending_deps
    assert all(d is None for d in pending[start:stop])
    assert None not in pending[:start] and None not in pending[stop:]
    flat, counts = dep_arrays(pending, columns.chain_region)  # type: ignore[arg-type]
    assert (flat.tolist(), counts.tolist()) == _read(columns.deps)
    assert columns.pending_deps is columns.deps and None not in columns.deps
    # The nodes, made from the column, carry the same dependencies.
    assert [n.deps for n in graph.nodes] == columns.deps


@settings(max_examples=60, deadline=None)
@given(
    known=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), max_size=5),
    ranks=st.lists(st.integers(0, 3), max_size=4),
    lanes=st.lists(st.integers(0, 2), min_size=1, max_size=6),
)
def test_the_chains_queues_are_numbered_as_a_walk_over_their_nodes(
    known: list[tuple[int, int]], ranks: list[int], lanes: list[int]
) -> None:
    # Queues met before the chains (a rank's lookups on its compute stream), then the chains.
    walked: dict[tuple[int, object, int], int] = {}
    for rank, lane in known:
        walked.setdefault((rank, "compute", lane), len(walked))
    numbers = dict(walked)
    want = [walked.setdefault((rank, "compute", lane), len(walked)) for rank in ranks for lane in lanes]
    region = DenseChainRegion([()] * len(lanes), -1, list(range(len(ranks))), [], ranks, "compute", lanes)
    assert region_queues(region, numbers).tolist() == want
    assert numbers == walked and list(numbers) == list(walked)  # the same numbers, in the same order


def test_two_ranks_chains_with_a_side_lane() -> None:
    numbers: dict[tuple[int, object, int], int] = {(5, "compute", 0): 0}
    region = DenseChainRegion([(), (), ()], -1, [1, 4], [], [5, 6], "compute", [0, 2, 0])
    assert region_queues(region, numbers).tolist() == [0, 1, 0, 2, 3, 2]
    assert list(numbers) == [(5, "compute", 0), (5, "compute", 2), (6, "compute", 0), (6, "compute", 2)]


@settings(max_examples=60, deadline=None)
@given(
    before=st.lists(st.integers(0, 6), max_size=5),
    template=st.lists(st.integers(0, 6), min_size=1, max_size=5),
    chains=st.integers(1, 4),
    after=st.lists(st.integers(0, 6), max_size=5),
)
def test_an_op_table_of_a_column_with_chains_is_the_columns(
    before: list[int], template: list[int], chains: int, after: list[int]
) -> None:
    # Ops as objects (a table tells them apart by identity): one per number, the chains' shared.
    made = [object() for _ in range(7)]
    ops = [made[k] for k in [*before, *template * chains, *after]]
    bases = [len(before) + i * len(template) for i in range(chains)]
    region = DenseChainRegion(
        [()] * len(template), -1, bases, [], list(range(chains)), "compute", [0] * len(template)
    )
    mine, theirs = OpTable.of_column(ops, region), OpTable.of(ops)  # type: ignore[arg-type]
    assert mine.ops == theirs.ops and mine.number.tolist() == theirs.number.tolist()
    short = [id(o) for o in region_short(ops, region)]
    assert region_spread(np.asarray(short, dtype=np.uint64), region).tolist() == [id(o) for o in ops]


def test_tiled_copies_one_after_the_other() -> None:
    assert tiled(np.array([3, 1, 2]), 2).tolist() == [3, 1, 2, 3, 1, 2]
    once = np.array([0.5, -0.0])
    made = tiled(once, 1)
    assert made.tolist() == [0.5, -0.0] and made is not once and not np.shares_memory(made, once)
    none = tiled(np.array([7, 8], dtype=np.int16), 0)
    assert none.size == 0 and none.dtype == np.int16


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(-(2**40), 2**40), max_size=8),
    times=st.integers(0, 5),
    dtype=st.sampled_from([np.int64, np.intp, np.float64, np.int8]),
)
def test_tiled_is_np_tile_of_a_row(values: list[int], times: int, dtype: type) -> None:
    row = np.asarray(values).astype(dtype)
    mine, numpys = tiled(row, times), np.tile(row, times)
    assert mine.dtype == numpys.dtype and mine.tolist() == numpys.tolist()


def test_a_columns_dependencies_left_out_are_made_once_when_read() -> None:
    # Two chains of a template of two nodes after one node: ``deps`` is made on first read (the
    # chains' tuples set in) and kept; a column with neither has no ``deps``.
    columns = NodeColumns(ids=[0, 1, 2, 3, 4], deps=[(), (0,), (1,), (0,), (3,)])
    region = DenseChainRegion([(), (0,)], -1, [1, 3], [], [0, 1], "compute", [0, 0])
    columns.chain_region = region
    pending = columns.leave_chain_deps()
    assert "deps" not in vars(columns)
    pending[1:] = [None, None, None, None]
    made = columns.deps
    assert made is pending and made == [(), (), (1,), (), (3,)]
    assert vars(columns)["deps"] is made and columns.deps is made
    del columns.deps
    with pytest.raises(AttributeError, match="deps"):
        columns.deps  # noqa: B018
