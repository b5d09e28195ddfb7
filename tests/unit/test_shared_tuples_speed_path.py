"""A pooled exchange's rows and columns as shared tuples (``shard_ops._shared_tuples``), a run of
rows equal to the one before found in one array call, give exactly what the code it replaced gave
(kept below as the reference): the same tuples of the same floats, and the same rows sharing one
tuple object, on random matrices with runs, zeros of both signs (apart: their bits differ), NaN,
infinities, with and without the columns' expansion, and on real plans' exchanges."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from recsim.api import make_plan, prepare
from recsim.cost.memo import CostMemo
from recsim.graph.shard_ops import _shared_tuples, pooled_exchange


def previous_shared_tuples(
    keys: npt.NDArray[np.float64], expand: npt.NDArray[np.intp] | None = None
) -> list[tuple[float, ...]]:
    """``_shared_tuples`` before (verbatim)."""
    made: dict[bytes, tuple[float, ...]] = {}
    out = []
    for row in keys:
        key = row.tobytes()
        found = made.get(key)
        if found is None:
            found = made[key] = tuple((row if expand is None else row[expand]).tolist())
        out.append(found)
    return out


def _assert_same(got: list[tuple[float, ...]], want: list[tuple[float, ...]]) -> None:
    """The same floats (bit for bit) and the same sharing: rows ``i`` and ``j`` hold one tuple
    object in one exactly where they do in the other."""
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert np.asarray(a, dtype=np.float64).tobytes() == np.asarray(b, dtype=np.float64).tobytes()
    first_got: dict[int, int] = {}
    first_want: dict[int, int] = {}
    assert [first_got.setdefault(id(t), i) for i, t in enumerate(got)] == [
        first_want.setdefault(id(t), i) for i, t in enumerate(want)
    ]


@pytest.mark.parametrize("seed", range(20))
def test_shared_tuples_match_the_previous_code_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    values = np.array([0.0, -0.0, 1.0, 2.5, math.inf, -math.inf, math.nan, 1e-300])
    rows, width = int(rng.integers(0, 40)), int(rng.integers(1, 9))
    distinct = rng.choice(values, size=(max(1, rows // 3), width))
    # Runs of equal rows (the ranks without a table), and rows equal to earlier ones apart.
    picks = np.repeat(rng.integers(0, distinct.shape[0], size=rows), rng.integers(1, 4, size=rows))[:rows]
    matrix = np.ascontiguousarray(distinct[picks]) if rows else np.zeros((0, width))
    _assert_same(_shared_tuples(matrix), previous_shared_tuples(matrix))
    expand = rng.integers(0, width, size=int(rng.integers(1, 12))).astype(np.intp)
    _assert_same(_shared_tuples(matrix, expand), previous_shared_tuples(matrix, expand))
    # Not contiguous (a transposed view) and not float64: every row looked up by its bytes.
    for other in (matrix.T, matrix.astype(np.float32)):
        _assert_same(_shared_tuples(other), previous_shared_tuples(other))


def test_zeros_of_both_signs_and_nan_payloads_stay_apart():
    """Rows equal as floats but not bit for bit are not shared, one after the other or not."""
    nan = np.float64(math.nan)
    other_nan = np.frombuffer((np.array([nan]).view(np.uint64) ^ np.uint64(1)).tobytes(), dtype=np.float64)[0]
    matrix = np.array(
        [[0.0, 1.0], [-0.0, 1.0], [-0.0, 1.0], [0.0, 1.0], [nan, 2.0], [other_nan, 2.0], [nan, 2.0]]
    )
    got = _shared_tuples(matrix)
    _assert_same(got, previous_shared_tuples(matrix))
    assert got[0] is not got[1] and got[1] is got[2] and got[3] is got[0] and got[4] is not got[5]


@pytest.mark.parametrize(
    ("nodes", "strategy"), [(16, "table_wise"), (2, "row_wise"), (2, "column_wise"), (4, "auto")]
)
def test_real_exchanges_rows_and_columns_match_the_previous_code(nodes, strategy):
    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=nodes, precision="fp16")
    plan = make_plan(strategy, workload, system)
    ops = CostMemo(system, workload).shard_ops
    exchange = pooled_exchange(ops, plan, workload.training.global_batch_size, 2.0, 8)
    _assert_same(exchange.rows, previous_shared_tuples(exchange.send))
    _assert_same(exchange.columns, previous_shared_tuples(np.ascontiguousarray(exchange.send.T)))
