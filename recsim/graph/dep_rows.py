"""A built step graph's dependency column as compressed rows, worked out from what the builder knows.

The chained graph's index reads every step node's dependencies as one flat array and each node's
count of them (``recsim.graph.index.rows``, ``recsim.graph.steps``). Read off the column of tuples,
that is two passes in C over every node (``np.fromiter``), some 4 % of an analytic evaluation at
128 GPUs. Nine in ten step nodes there are the ranks' dense chains, which the builder lays down in
bulk from one template (``recsim.graph.build._dense_chain``): every rank's chain node ``k`` waits
for the template's offsets shifted by the rank's first id, except the node that joins the
exchanged embeddings (``joined_at``), whose dependencies are the rank's own. So the chains' part of
the arrays is the template's, tiled and shifted in a few array calls, with each rank's joined
dependencies set in; only the nodes before and after the chains are read one by one.

``DenseChainRegion`` is what the builder records of the chains; ``dep_arrays`` gives the arrays,
the same ints as reading the column (``tests/unit/test_dep_rows.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TypeVar

import numpy as np
import numpy.typing as npt

V = TypeVar("V")
T = TypeVar("T", bound=np.generic)

# (every dependency in node order, how many each node has)
DepArrays = tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]


def tiled(values: npt.NDArray[T], times: int) -> npt.NDArray[T]:
    """``np.tile(values, times)`` of a one-dimensional array: ``times`` copies one after the
    other (a new array). ``np.tile`` is Python over ``repeat`` and reshapes; one ``concatenate``
    makes the same array in about two thirds of the machine instructions (callgrind, 2,466
    float64: 68,000 against 48,000), and the analytic engine tiles a step's arrays over the
    chained steps several times an evaluation."""
    if times <= 0:
        return values[:0].copy()
    return np.concatenate((values,) * times)


@dataclass(frozen=True)
class DenseChainRegion:
    """The ranks' dense chains in a builder's columns: ``len(bases)`` chains of ``len(template)``
    nodes each, one after the other from position ``bases[0]`` (a chain's first id is its first
    position, as the builder numbers nodes). ``template[k]``: node ``k``'s dependencies as offsets
    from its chain's first id, but node ``joined_at`` (when it is a node of the chain), whose
    dependencies are ``joined[i]`` in the ``i``-th chain, as they are (ids)."""

    template: Sequence[tuple[int, ...]]
    joined_at: int
    bases: Sequence[int]
    joined: Sequence[tuple[int, ...]]
    # Each chain's rank, the stream every chain node runs on and each template node's lane: the
    # chains' queues (``GraphIndex.of``, ``region_queues``).
    ranks: Sequence[int] = ()
    stream: object = None
    lanes: Sequence[int] = ()

    @property
    def span(self) -> tuple[int, int]:
        """The positions of the chains' nodes: ``start`` to ``stop - 1``."""
        start = self.bases[0] if self.bases else 0
        return start, start + len(self.template) * len(self.bases)


def fill_chain_deps(deps: list[tuple[int, ...] | None], region: DenseChainRegion) -> None:
    """Set the chains' entries of ``deps`` (a builder's column that left them out: None each,
    ``NodeColumns.pending_deps``) to the tuples the builder would have laid down: chain ``i``'s
    node ``k`` waits for the template's offsets plus the chain's first id, its joined node for
    ``joined[i]``. Made only when something reads the column node by node (the nodes made, a
    timeline): an analytic evaluation reads the chains' dependencies in arrays (``dep_arrays``),
    and making a tuple per chain node was about 3 % of one at 128 GPUs."""
    template, joined_at = region.template, region.joined_at
    size = len(template)
    inside = 0 <= joined_at < size
    for i, base in enumerate(region.bases):
        # ``base + d`` for every offset (a tuple per node, as the builder's: ``()`` for none).
        made = [tuple([base + d for d in offsets]) for offsets in template]
        if inside:
            made[joined_at] = region.joined[i]
        deps[base : base + size] = made


def dep_arrays(deps: Sequence[tuple[int, ...]], region: DenseChainRegion | None) -> DepArrays:
    """``deps`` (a builder's column, with the chains of ``region`` in it) as one flat array of
    every dependency in order and each node's count: ``np.fromiter`` over the nodes outside the
    region, the template's arrays tiled and shifted inside it."""
    size = len(region.template) if region is not None else 0
    if region is None or not region.bases or not size:
        return _read(deps)
    start = region.bases[0]
    stop = start + size * len(region.bases)
    before, after = _read(deps[:start]), _read(deps[stop:])
    flat, counts = _region(region)
    return np.concatenate((before[0], flat, after[0])), np.concatenate((before[1], counts, after[1]))


def _read(deps: Sequence[tuple[int, ...]]) -> DepArrays:
    counts = np.fromiter(map(len, deps), dtype=np.intp, count=len(deps))
    flat = np.fromiter(chain.from_iterable(deps), dtype=np.intp, count=int(counts.sum()))
    return flat, counts


def _region(region: DenseChainRegion) -> DepArrays:
    """The chains' part of ``dep_arrays``: each chain's template dependencies before its joined
    node, shifted by its first id; the joined node's own; the template's after it, shifted."""
    template, joined_at, joined = region.template, region.joined_at, region.joined
    size, chains = len(template), len(region.bases)
    bases = np.asarray(region.bases, dtype=np.intp)
    inside = 0 <= joined_at < size
    if inside:  # the template's entry for the joined node is not read: its chain's own are
        template = [*template[:joined_at], (), *template[joined_at + 1 :]]
    t_counts = np.fromiter(map(len, template), dtype=np.intp, count=size)
    t_flat = np.fromiter(chain.from_iterable(template), dtype=np.intp, count=int(t_counts.sum()))
    head = int(t_counts[:joined_at].sum()) if inside else t_flat.size
    own = np.fromiter(map(len, joined), dtype=np.intp, count=chains) if inside else np.zeros(chains, np.intp)
    counts = tiled(t_counts, chains)
    if inside:
        counts[joined_at::size] = own
    if chains and int(own.min()) == int(own.max()):
        # Every chain's joined node has as many dependencies (a rank's exchanged embeddings), or
        # there is none: the chains' entries are a table, a chain a row (the template shifted by
        # the chain's first id, its joined ones set in), made in a few array calls rather than
        # placed entry by entry (callgrind, 128 GPUs: 0.41 -> 0.27 M machine instructions).
        shifted = t_flat[None, :] + bases[:, None]
        if not inside:
            return shifted.ravel(), counts
        each = int(own[0])
        mine = np.fromiter(chain.from_iterable(joined), dtype=np.intp, count=each * chains)
        parts = (shifted[:, :head], mine.reshape(chains, each), shifted[:, head:])
        return np.concatenate(parts, axis=1).ravel(), counts
    # Chain ``i``'s entries: the shifted template's first ``head``, its own ``own[i]``, the rest.
    width = t_flat.size
    sizes = width + own
    first = sizes.cumsum() - sizes
    flat = np.empty(int(sizes.sum()), dtype=np.intp)
    shifted = t_flat[None, :] + bases[:, None]
    flat[(first[:, None] + np.arange(head)).ravel()] = shifted[:, :head].ravel()
    rest = np.arange(width - head)
    flat[(first[:, None] + head + own[:, None] + rest).ravel()] = shifted[:, head:].ravel()
    if inside and own.sum():
        total = int(own.sum())
        at = (first + head).repeat(own) + np.arange(total) - (own.cumsum() - own).repeat(own)
        flat[at] = np.fromiter(chain.from_iterable(joined), dtype=np.intp, count=total)
    return flat, counts


def region_queues(
    region: DenseChainRegion, numbers: dict[tuple[int, object, int], int]
) -> npt.NDArray[np.intp]:
    """The chains' queue numbers, numbering the queues not in ``numbers`` yet as a walk over the
    chains' nodes in order would (``numbers.setdefault(key, len(numbers))``, ``GraphIndex.of``):
    a chain's queues first appear at the template's first node of each lane, in the template's
    order, and the chains come one after the other, so each chain's are numbered in the order of
    the template's lanes; every node of a chain then takes its lane's."""
    lanes = list(dict.fromkeys(region.lanes))  # in the order of their first node in the template
    place = {lane: j for j, lane in enumerate(lanes)}
    at = np.fromiter(map(place.__getitem__, region.lanes), dtype=np.intp, count=len(region.lanes))
    stream = region.stream
    table = np.array(
        [[numbers.setdefault((rank, stream, lane), len(numbers)) for lane in lanes] for rank in region.ranks],
        dtype=np.intp,
    ).reshape(len(region.ranks), len(lanes))
    out: npt.NDArray[np.intp] = table[:, at].ravel()
    return out


def region_short(values: Sequence[V], region: DenseChainRegion) -> list[V]:
    """A column of a builder's graph (its ops, its phases) with its chains but the first left out:
    the chains hold the same values chain after chain (the builder lays one list down for each),
    so a numbering of the values by first appearance, or a function of each value, is the same on
    this shorter column, and ``region_spread`` spreads it back over every chain."""
    start, stop = region.span
    return [*values[:start], *values[start : start + len(region.template)], *values[stop:]]


def region_spread(short: npt.NDArray[T], region: DenseChainRegion) -> npt.NDArray[T]:
    """An array over ``region_short``'s column, over the whole column: the first chain's part
    repeated for every chain."""
    start, size = region.span[0], len(region.template)
    chains = tiled(short[start : start + size], len(region.bases))
    return np.concatenate((short[:start], chains, short[start + size :]))
