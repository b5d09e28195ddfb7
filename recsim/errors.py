"""The exceptions recsim raises for user-facing problems.

Every error a user can cause (bad YAML, a missing unit, an unknown device, an infeasible plan) is a
``RecsimError``; the CLI turns it into one line on stderr and exit code 2 instead of a traceback.
Anything else that escapes is a bug in recsim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recsim.metrics.result import Result


class RecsimError(Exception):
    """Base class of every error caused by the user's input or request."""


class ConfigError(RecsimError):
    """A configuration file or override is malformed, incomplete or inconsistent."""


class UnitError(ConfigError, ValueError):
    """A quantity string has no unit, an unknown unit, or the wrong kind of unit."""


class TraceError(RecsimError):
    """A trace file cannot be read or does not describe a consistent execution."""


class InfeasibleError(RecsimError):
    """The request cannot be satisfied (for example a plan does not fit in memory)."""


class RuntimeRefusal(InfeasibleError):
    """The workload's framework (``training.runtime``) cannot run a plan: raised ahead of any memory
    check of that plan, so the user hears the reason that holds whatever the memory."""


class NoPlanError(InfeasibleError):
    """No sharding plan fits a run; ``result`` is the run's infeasible ``Result``, with the run's
    context, for a caller that reports every outcome as a result (``recsim run --json``)."""

    def __init__(self, message: str, result: Result) -> None:
        super().__init__(message)
        self.result = result


class SimulationError(RecsimError):
    """An invariant of the simulation was violated; names the node and the resource."""


def first_few(items: Sequence[object], shown: int = 3) -> str:
    """The first ``shown`` of ``items`` for a message, and how many more there are."""
    head = ", ".join(str(item) for item in items[:shown])
    return head + (f" and {len(items) - shown} more" if len(items) > shown else "")


def batch_split_error(batch: int, ranks: int) -> str:
    """Why a global batch cannot be trained on ``ranks`` ranks, and the batch sizes that can."""
    below = batch // ranks * ranks
    sizes = [size for size in (below, below + ranks) if size > 0]
    options = " or ".join(str(size) for size in sizes)
    return (
        f"global batch {batch} is not divisible by {ranks} ranks (every rank trains an equal share): "
        f"give training.global_batch_size (--batch-size) a multiple of {ranks}, e.g. {options}"
    )
