"""Pause Python's cyclic garbage collector for the length of one simulation.

An evaluation allocates 10^4-10^5 objects that live until it ends (graph nodes, ops, the
topology's dictionaries) within a tenth of a second. Every allocation counts towards the cyclic
collector's thresholds, so the collector keeps running young collections, and once the survivors
exceed a quarter of the long-lived heap it runs a full collection that walks every object of the
process (the imported modules included): 30-50 ms on a 128-GPU graph, a third of the evaluation's
time, to find next to nothing, because an evaluation makes almost no reference cycles (about 150
objects, from networkx views and closures, in an analytic or DES run of dlrm-dcnv2 on 128 GPUs).
Reference counting frees everything else as soon as it is dropped, collector or not.

``paused_gc`` switches the collector off for a block and back on after it, if it was on (a
caller that switched it off keeps it off); the few cycles of the block wait for the next
collection. It is a class, not a ``contextlib.contextmanager``: a generator's exit raises (and
allocates) its ``StopIteration`` just after switching the collector back on, and that allocation
set off the young collection at once, while every object of the evaluation was still alive (the
graph being returned), a walk over 10^4 objects (about 0.2 ms of 6.5 at 128 GPUs). Its
``__exit__`` allocates nothing, so the collection comes with the caller's next allocation, after
the caller has dropped what it does not keep (a sweep keeps the result, not the graph) and
reference counting has freed it. Results do not depend on the collector, so they are the same
with or without it.
The switch is process-wide: a thread running meanwhile runs without the collector too, for that
time only; overlapping pauses from several threads at worst switch it back on early. Nothing
persists after the block.
"""

from __future__ import annotations

import gc
from types import TracebackType


class _PausedGc:
    """``paused_gc``'s context manager (one use)."""

    __slots__ = ("_was_enabled",)

    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    # Named parameters, not ``*exc``: packing them would allocate a tuple (module docstring).
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._was_enabled:
            gc.enable()


def paused_gc() -> _PausedGc:
    """Run the block with the cyclic garbage collector off (restored to its state after it)."""
    return _PausedGc()
