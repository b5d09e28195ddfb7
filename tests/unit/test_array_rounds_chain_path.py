"""Kahn's rounds in numpy (``recsim.graph.index._array_rounds``, for large graphs) take a chain
round (every vertex of the round hands on to one successor that has no other predecessor) in one
gather: the same vertices in the same order, round by round, as the rounds in Python
(``_python_rounds``), on random graphs of chains, joins and forks, with and without a cycle."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from recsim.graph import index as index_module


def _rows(
    vertices: int, src: npt.NDArray[np.int64], dst: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """The edges as ``_kahn_rounds`` hands them on: each once, by source then target."""
    keep = src != dst
    keys = np.unique(src[keep] * vertices + dst[keep])
    src, dst = keys // vertices, keys % vertices
    out_count = np.bincount(src, minlength=vertices)
    return dst, out_count, np.cumsum(out_count), np.bincount(dst, minlength=vertices)


@st.composite
def graphs(draw: st.DrawFn) -> tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Chains of a few vertices each (ranks' layers), random edges forward between them (joins and
    forks: collectives, dependencies across ranks), and sometimes one edge backward (a cycle)."""
    chains = draw(st.integers(1, 12))
    length = draw(st.integers(1, 12))
    vertices = chains * length
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Vertex numbers shuffled, so that the release order is not the numbering's.
    name = rng.permutation(vertices).astype(np.int64)
    grid = name.reshape(chains, length)
    src = [grid[:, :-1].ravel()]
    dst = [grid[:, 1:].ravel()]
    extra = draw(st.integers(0, 3 * vertices))
    a = rng.integers(0, vertices, extra)
    b = rng.integers(0, vertices, extra)
    src.append(name[np.minimum(a, b)])
    dst.append(name[np.maximum(a, b)])  # forward in the shuffled order: no cycle
    if draw(st.booleans()) and vertices > 1:
        src.append(name[[vertices - 1]])
        dst.append(name[[0]])
    return vertices, np.concatenate(src), np.concatenate(dst)


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_array_rounds_match_python_rounds(
    graph: tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64]],
) -> None:
    vertices, src, dst = graph
    rows = _rows(vertices, src, dst)
    order, ends, _ = index_module._python_rounds(*rows)
    array_order, array_ends = index_module._array_rounds(*rows)
    assert array_order.tolist() == order
    assert array_ends == ends
