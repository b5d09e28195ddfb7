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
collection. Results do not depend on the collector, so they are the same with or without it.
The switch is process-wide: a thread running meanwhile runs without the collector too, for that
time only; overlapping pauses from several threads at worst switch it back on early. Nothing
persists after the block.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off (restored to its state after it)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
