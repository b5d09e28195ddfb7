"""``Result``: what one simulated configuration gives, as a frozen value with a flat ``to_dict()``.

The fields follow DESIGN §4.5. Times are seconds, energies joules, powers watts, sizes bytes.
``breakdown_s`` splits the critical path of the steady step by what was on it (compute, embedding,
all_to_all, all_reduce, other communication, data loading, idle waits) so its values sum to
``iteration_time_s``. ``memory_peak_bytes`` gives the fullest rank's HBM, the fullest node's host
DRAM and SSDs, and what fills that rank's HBM by kind (``MEMORY_HBM_PARTS``, the pooled vectors it
owns among them), so a plan that runs out of HBM shows what took it. ``to_dict()`` flattens nested
mappings with dotted keys, so a sweep store or a DataFrame gets one column per figure; ``recsim run
--json`` prints exactly that dict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NoReturn

if TYPE_CHECKING:
    from recsim.metrics.resources import ResourceFigures, ResourceUse

Status = Literal["ok", "infeasible", "error"]

#: The fields of a ``Result`` that are mappings of figures (``mapping_keys`` gives their keys).
MAPPING_FIELDS = ("breakdown_s", "utilisation", "memory_peak_bytes", "power_by_component_w")

#: The resource classes whose utilisation a result reports beside its streams'
#: (``recsim.metrics.resources``): ``utilisation.<class>`` the mean over the class's devices or
#: links, ``utilisation_max.<class>`` the busiest one's.
RESOURCE_CLASSES = (
    "hbm",
    "host_link",
    "scale_up",
    "network",
    "network_uplinks",
    "host_memory",
    "host_memory_socket",
)

#: The flat mapping of the busiest instance of each resource class (``Result.to_dict``).
PEAK_UTILISATION = "utilisation_max"


@dataclass(frozen=True)
class Result:
    """One simulated (system, workload, plan, settings) point."""

    status: Status
    reason: str = ""
    mode: str = "training"
    fidelity: str = "analytic"
    system: str = ""
    workload: str = ""
    plan: str = ""
    num_accelerators: int = 0
    global_batch_size: int = 0
    iteration_time_s: float = math.nan
    throughput_samples_per_s: float = math.nan
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    achieved_qps: float | None = None
    breakdown_s: Mapping[str, float] = field(default_factory=dict)
    utilisation: Mapping[str, float] = field(default_factory=dict)
    memory_peak_bytes: Mapping[str, float] = field(default_factory=dict)
    memory_fits: bool = True
    energy_per_sample_j: float = math.nan
    avg_power_w: float = math.nan
    power_by_component_w: Mapping[str, float] = field(default_factory=dict)
    resolved_config_hash: str = ""
    recsim_version: str = ""
    notes: tuple[str, ...] = ()
    # Utilisation per resource class (``recsim.metrics.resources``), worked out when first read;
    # None where nothing ran (a failed result) or nothing measured it.
    resources: ResourceUse | None = None

    def __post_init__(self) -> None:
        # Frozen all through: a caller cannot change a result's figures through its mappings.
        for name in MAPPING_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, FrozenMap):
                object.__setattr__(self, name, FrozenMap(value))
        if isinstance(self.notes, str):
            object.__setattr__(self, "notes", (self.notes,))
        elif not isinstance(self.notes, tuple):
            object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def samples_per_joule(self) -> float:
        return 1.0 / self.energy_per_sample_j if self.energy_per_sample_j > 0 else math.nan

    @property
    def all_notes(self) -> tuple[str, ...]:
        """``notes`` and then the resource figures' own (a link asked for more than its capacity
        in an analytic step, a class the engines do not share): what ``to_dict()["notes"]`` lists
        and the CLI prints. The resource notes come with the figures, which an analytic run works
        out when first read, so ``notes`` alone cannot hold them."""
        return with_resource_notes(self.notes, self.resources)

    def to_dict(self) -> dict[str, Any]:
        """Flat dict: nested mappings become ``breakdown_s.compute`` style keys; NaN becomes None.

        Every result has the same keys, whatever its status and system: each mapping lists all of
        ``mapping_keys()`` (then any other key it holds). A key an ok result's mapping lacks is a
        stream no node ran on or a component the system does not have, so 0.0; a failed result's
        unknown figures are None. A table of results (a sweep store, a DataFrame of ``--json``
        lines) then has one set of columns. The resource classes (``resources``) flatten beside
        the streams, ``utilisation.<class>`` and ``utilisation_max.<class>`` (None where not
        known), and their notes follow the result's own."""
        out: dict[str, Any] = {}
        canonical = mapping_keys()
        absent = 0.0 if self.status == "ok" else None
        figures = self.resources.figures if self.resources is not None else None
        for name in self.__dataclass_fields__:
            if name == "resources":
                continue
            value = getattr(self, name)
            if isinstance(value, Mapping):
                if name == "utilisation":
                    out.update(resource_mappings(value, figures, absent))
                else:
                    out.update(flat_mapping(name, value, canonical.get(name, ()), absent))
            elif isinstance(value, tuple):
                out[name] = list(self.all_notes if name == "notes" else value)
            else:
                out[name] = _clean(value)
        out["samples_per_joule"] = _clean(self.samples_per_joule)
        return out

    @classmethod
    def failed(cls, status: Status, reason: str, **context: Any) -> Result:
        """An infeasible or failed point, with whatever context is known."""
        return cls(status=status, reason=reason, **context)


def with_resource_notes(notes: tuple[str, ...], resources: ResourceUse | None) -> tuple[str, ...]:
    """A result's ``notes`` and then its resource figures' own (worked out if not yet): what a
    result's ``all_notes`` gives, ``Result``'s and ``ReplayResult``'s alike."""
    return notes if resources is None else notes + tuple(resources.figures.notes)


class FrozenMap(dict[str, float]):
    """A read-only dict of a result's figures: it serialises (JSON, pandas) and compares as a dict
    does, pickles, and hashes; every method that would change it raises ``TypeError``."""

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a Result's figures are read-only: copy them with dict(...) to change them")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[type[FrozenMap], tuple[dict[str, float]]]:
        return (FrozenMap, (dict(self),))

    def __copy__(self) -> FrozenMap:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> FrozenMap:
        return self


def mapping_keys() -> dict[str, tuple[str, ...]]:
    """The keys of each mapping figure of a ``Result``, in ``to_dict()``'s order: the critical path's
    categories, the streams, the memory tiers and the power model's components."""
    # Imported here: the cost and graph layers are heavier than this value type, which the
    # explore layer and the CLI import alone.
    from recsim.cost.model import CATEGORIES
    from recsim.cost.power import COMPONENTS
    from recsim.graph.ir import Stream

    keys = {
        "breakdown_s": CATEGORIES,
        "utilisation": (*(s.value for s in Stream), *RESOURCE_CLASSES),
        PEAK_UTILISATION: RESOURCE_CLASSES,
        "memory_peak_bytes": (*MEMORY_TIERS, *MEMORY_HBM_PARTS),
        "power_by_component_w": COMPONENTS,
    }
    return {name: keys[name] for name in (*MAPPING_FIELDS[:2], PEAK_UTILISATION, *MAPPING_FIELDS[2:])}


#: The memory tiers ``memory_peak_bytes`` reports (a rank's HBM, a node's host DRAM and SSDs).
MEMORY_TIERS = ("hbm", "ddr", "ssd")

#: What fills the fullest rank's HBM (``memory_peak_bytes.hbm``), by kind, after the tiers: its
#: shards' rows with their optimizer state and caches, the dense weights with their gradients and
#: optimizer state, its batch's activations, the pooled vectors it writes as the owner of its
#: tables and its inputs, the ids its lookups read and its data loader's own buffers
#: (``recsim.planner.storage.Usage.hbm_parts``, ``recsim.planner.reader_buffers``); they add up to
#: ``hbm``.
MEMORY_HBM_PARTS = ("hbm_tables", "hbm_dense", "hbm_activations", "hbm_pooled", "hbm_inputs")


def flat_mapping(
    name: str, values: Mapping[str, float], keys: Sequence[str], absent: float | None
) -> dict[str, Any]:
    """``values`` as ``name.key`` entries: each of ``keys`` (``absent`` where ``values`` lacks
    it), then any other key it holds; NaN and infinities become None. How a result's mappings
    are flattened (``Result.to_dict``, a replay's ``to_dict``)."""
    out = {f"{name}.{key}": _clean(values.get(key, absent)) for key in keys}
    out.update({f"{name}.{key}": _clean(sub) for key, sub in values.items() if key not in keys})
    return out


def resource_mappings(
    streams: Mapping[str, float], figures: ResourceFigures | None, absent: float | None
) -> dict[str, Any]:
    """``utilisation.<key>`` for each stream (``absent`` where ``streams`` lacks it) and resource
    class, then ``utilisation_max.<class>``: a class's figures from ``figures`` (0.0 where the
    system lacks the class, None where its bytes are not known or there are no figures). How a run
    and a replay flatten their utilisation."""
    stream_keys = mapping_keys()["utilisation"][: -len(RESOURCE_CLASSES)]
    mean = {k: v for k, v in streams.items() if k not in RESOURCE_CLASSES}
    out = flat_mapping("utilisation", mean, stream_keys, absent)
    peak: dict[str, Any] = {}
    for name in RESOURCE_CLASSES:
        out[f"utilisation.{name}"] = _clean(figures.value(name)) if figures is not None else None
        peak[f"{PEAK_UTILISATION}.{name}"] = (
            _clean(figures.value(name, "peak")) if figures is not None else None
        )
    out.update(peak)
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
