"""Utilisation per resource class (DESIGN §4.5): how much of what each resource could move in the
step it moved, as a value a ``Result`` carries (``ResourceUse``) and flattens.

A run's ``utilisation`` mapping gives each stream class's busy share (compute, comm, copy, host).
The resource classes say which piece of hardware the step loads, in bytes:

* ``hbm``: each accelerator's HBM, against its bandwidth;
* ``host_link``: each accelerator's link to its CPU (PCIe, or NVLink-C2C on Grace hosts) and, where
  it sits under a PCIe switch, the switch's uplink that it shares, per direction;
* ``scale_up``: each accelerator's NVLink ports (to its NVSwitch chips or, in a mesh, to its peers),
  all of them together, per direction;
* ``network``: each scale-out NIC's port to its switch, per direction;
* ``network_uplinks``: each switch's links to other switches (a leaf's uplinks, a spine's downlinks),
  all of them together, per direction;
* ``host_memory``: each node's host DRAM (all its channels; reads and writes share them);
* ``host_memory_socket``: each CPU socket's DRAM, the bytes over its channels' bus (a lookup's
  ``ddr`` bytes, a copy's host end, host work: not RecNMP DIMMs' in-DIMM reads) of the ranks that
  hang off it, against the rate DES shares it at (the node's channels at ``CPU_MEMORY_EFFICIENCY``
  of their pin rate, over its sockets: ``recsim.engine.host_dram``), in both engines. A socket that
  holds the lookups of a two-socket node is then seen full where the node's figure reads under
  half. Capped at 1: DES never carries more; where the analytic engine's bytes ask more, the
  figure reads 1 and a note says how much more.

An instance's utilisation is ``bytes / (capacity x step time)``, the busier direction's for a
duplex link; a class reports the mean over its instances (``utilisation.<class>`` in ``to_dict``)
and the busiest one (``utilisation_max.<class>``). How the bytes are counted is
``recsim.engine.resources``'s docstring. A class the system does not have (no NICs on one node,
no NVLink on a PCIe server) reads 0.0, as a power component the system lacks; a class a replay
cannot know the bytes of reads None.

The figures are not clamped (but ``host_memory_socket``'s, above): where the analytic engine, which
does not share links, lets the collectives ask more of a link than it carries in the step, the value
exceeds 1 and a note says that the step is optimistic there. The DES engine shares links among
collectives, copies and the lookups that read over PCIe, so the collectives' bytes alone never
exceed a link's capacity (an invariant, ``check_links``), and it shares each rank's HBM among the
ops that run at once on its queues (``recsim.engine.hbm``, at the bandwidth x the fitted memory
efficiency) and each CPU socket's DRAM among the copies, lookups and host work of its ranks
(``recsim.engine.host_dram``, at ``CPU_MEMORY_EFFICIENCY`` of the channels' pin rate, so a node's
``host_memory`` figure stays under that share but where RecNMP DIMMs' channel bytes, which DES does
not share, or nodes counted whole past the window add to it); the analytic engine shares no link,
HBM nor DRAM, which a note says where it shows.

``ResourceUse`` is worked out on first read: an analytic evaluation of a sweep or the planner
(which keep only the step time) does not pay for it; ``to_dict``, the CLI's table, equality,
hashing and pickling read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from recsim.metrics.result import RESOURCE_CLASSES, FrozenMap

__all__ = ["LABELS", "RESOURCE_CLASSES", "ResourceFigures", "ResourceUse"]

#: How the classes read in notes and in the CLI's table.
LABELS = {
    "hbm": "HBM",
    "host_link": "host link",
    "scale_up": "scale-up link",
    "network": "NIC port",
    "network_uplinks": "switch uplink",
    "host_memory": "host memory",
    "host_memory_socket": "CPU socket memory",
}


@dataclass(frozen=True)
class ResourceFigures:
    """Utilisation per resource class: the mean over its instances and the busiest instance's
    (``peak``) with its name (``busiest``), for each class the system has; ``classes`` the
    classes whose bytes are known (all of them for a run; a replay knows only the collectives'),
    ``notes`` what a reader of the figures should know (an optimistic analytic link)."""

    mean: Mapping[str, float] = field(default_factory=dict)
    peak: Mapping[str, float] = field(default_factory=dict)
    busiest: Mapping[str, str] = field(default_factory=dict)
    classes: tuple[str, ...] = RESOURCE_CLASSES
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("mean", "peak", "busiest"):
            value = getattr(self, name)
            if not isinstance(value, FrozenMap):
                object.__setattr__(self, name, FrozenMap(value))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "notes", tuple(self.notes))

    def value(self, name: str, which: str = "mean") -> float | None:
        """``which`` (mean or peak) of class ``name``: 0.0 for a class whose bytes are known but
        that the system lacks, None for one whose bytes are not known."""
        if name not in self.classes:
            return None
        figures = self.mean if which == "mean" else self.peak
        return figures.get(name, 0.0)


class ResourceUse:
    """``ResourceFigures`` given, or worked out by ``work`` when first read (then ``work`` and what
    it holds, the step's graph index and costs, are let go). Compares, hashes and pickles as its
    figures."""

    __slots__ = ("_figures", "_work")

    def __init__(self, figures: ResourceFigures | Callable[[], ResourceFigures]) -> None:
        self._figures: ResourceFigures | None = None
        self._work: Callable[[], ResourceFigures] | None = None
        if isinstance(figures, ResourceFigures):
            self._figures = figures
        else:
            self._work = figures

    @property
    def figures(self) -> ResourceFigures:
        if self._figures is None:
            assert self._work is not None
            self._figures = self._work()
            self._work = None
        return self._figures

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResourceUse):
            return NotImplemented
        return self.figures == other.figures

    def __hash__(self) -> int:
        f = self.figures
        return hash((f.mean, f.peak, f.busiest, f.classes, f.notes))

    def __reduce__(self) -> tuple[type[ResourceUse], tuple[ResourceFigures]]:
        return (ResourceUse, (self.figures,))

    def __repr__(self) -> str:
        if self._figures is None:
            return "ResourceUse(<not yet worked out>)"
        return f"ResourceUse({self._figures!r})"
