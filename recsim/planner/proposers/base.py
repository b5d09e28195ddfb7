"""The proposer registry: a proposer turns (system, workload, planner config) into a ``Plan``.

Adding a proposer is one class in one file: subclass ``Proposer``, set ``name`` and
``description``, implement ``propose(ctx)``, decorate with ``@register_proposer`` and import the
module in ``recsim.planner.proposers``. A proposer that cannot find a plan within memory raises
``InfeasibleError`` naming the table, the bytes and the tier that did not fit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, TypeVar

from recsim.cost.memo import CostMemo
from recsim.errors import ConfigError
from recsim.hardware.system import System
from recsim.planner.config import PlannerConfig
from recsim.planner.estimator import Estimator
from recsim.planner.types import Plan
from recsim.workload.spec import Workload

if TYPE_CHECKING:  # the engine imports the planner's types: no import cycle at run time
    from recsim.engine.simulate import SimulationOptions


@dataclass
class PlanningContext:
    """What every proposer sees; the estimator (and its caches) is shared between proposers."""

    system: System
    workload: Workload
    config: PlannerConfig = field(default_factory=PlannerConfig)
    # The caller's cost memo for this system and workload (``recsim.cost.memo``), if it keeps one
    # beyond the planning (``recsim.api.simulate_run`` simulates the chosen plan with it).
    memo: CostMemo | None = None
    # The run's engine (``recsim.api.make_plan``): under DES, ``auto`` simulates its analytic
    # engine's best ``config.finalists`` again with DES.
    fidelity: str = "analytic"
    # The run's settings that change a step's time (``recsim.api.make_plan``'s ``simulation``):
    # ``auto`` simulates its candidates under them, so the plan it picks is the best for the run
    # asked for (a reviewer's find: candidates were ranked under the defaults, with no straggler,
    # with interference, whatever the run's). None: the defaults.
    simulation: SimulationOptions | None = None

    @cached_property
    def costs(self) -> CostMemo:
        """The memo the estimator and the simulated candidates (``auto``) share."""
        if self.memo is None:
            return CostMemo(self.system, self.workload)
        self.memo.check(self.system, self.workload)  # a memo of another system plans on its fabric
        return self.memo

    @cached_property
    def estimator(self) -> Estimator:
        costs = self.costs
        return Estimator(
            self.system, self.workload, self.config, topology=costs.topology, ops=costs.shard_ops
        )

    @property
    def world_size(self) -> int:
        return self.system.num_accelerators


class Proposer(ABC):
    """A way to choose a plan (see the module docstring)."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: A fixed scheme (statistics-free, one way for every table) rather than a search.
    fixed: ClassVar[bool] = False
    #: Whether ``auto`` plans with it too: not a proposer that reproduces another planner's
    #: decision for comparison (``torchrec``), whose candidates the search proposers cover.
    in_auto: ClassVar[bool] = True
    #: Whether every plan it makes routes rows (``distributed`` shards: the hybrid embedding's), so
    #: that a framework reads its inputs as it reads such plans' (HugeCTR's one-hot reader of the
    #: global batch; ``stats.capacity_shortfall``'s ``routed_rows``).
    routes_rows: ClassVar[bool] = False

    @abstractmethod
    def propose(self, ctx: PlanningContext) -> Plan:
        """A plan for ``ctx`` (``InfeasibleError`` if none fits)."""


def allowed_tiers(ctx: PlanningContext) -> set[str]:
    """The tier names ``ctx``'s planner may use: ``planner.tiers`` and the ones the estimator adds
    (``Estimator.tiers``), without parameters (``uvm_caching:0.2`` -> ``uvm_caching``)."""
    return {tier.split(":", 1)[0] for tier in ctx.estimator.tiers()}


P = TypeVar("P", bound=type[Proposer])
_REGISTRY: dict[str, Proposer] = {}


def register_proposer(cls: P) -> P:
    """Class decorator: register ``cls`` under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"proposer {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def registered_proposers() -> list[str]:
    return list(_REGISTRY)


def proposer(name: str) -> Proposer:
    found = _REGISTRY.get(name)
    if found is None:
        raise ConfigError(f"unknown plan strategy {name!r}; available: {', '.join(registered_proposers())}")
    return found
