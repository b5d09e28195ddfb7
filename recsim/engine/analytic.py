"""The analytic engine: earliest-start list scheduling with modelled durations, no contention.

Each node takes ``CostModel.duration_s`` (``recsim.engine.simulate`` then stretches the kernels
that overlap their rank's collectives and schedules again: ``recsim.cost.interference``); streams
are in-order queues; collectives start together
on their group (``recsim.graph.schedule``). A collective's duration is its stand-alone time, so two
collectives sharing links do not slow each other down here: that is the DES engine's job. An
uneven all-to-all is costed from all its parts, the whole traffic matrix
(``CostModel.whole_all_to_alls``), as the DES engine moves it: one member's splits alone cannot
show a member that receives more than it sends.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recsim.cost.model import CostModel
from recsim.graph.dep_rows import tiled
from recsim.graph.index import GraphIndex
from recsim.graph.ir import ExecutionGraph
from recsim.graph.schedule import Schedule, Timing, asap_timing


def graph_durations(index: GraphIndex, cost: CostModel) -> list[float]:
    """The duration of every node of ``index`` under ``cost``, by position."""
    out: list[float] = graph_lengths(index, cost).tolist()
    return out


def graph_lengths(index: GraphIndex, cost: CostModel) -> npt.NDArray[np.float64]:
    """``graph_durations`` as a float64 array (what the schedule and the stretch read), costed
    per distinct op of the index (``GraphIndex.op_table``)."""
    if index.copies is not None:
        # Copies of a step graph (``recsim.graph.steps.ChainedGraph``): each copy's op is the step
        # node's, but for a collective's key, which no cost depends on. The ops are the index's
        # (a built step graph's columns): no step node is made but the uneven all-to-alls'
        # members, each on its own.
        step_nodes, steps = index.copies
        lengths = cost.graph_lengths_of(
            index.op_table, index.source_ops, step_nodes.__getitem__, index.kept_ranks
        )
        return tiled(lengths, steps)
    return cost.graph_lengths_of(index.op_table, index.source_ops, index.nodes.__getitem__, index.kept_ranks)


def analytic_timing(index: GraphIndex, cost: CostModel) -> Timing:
    """The schedule of the graph of ``index`` with the durations of ``cost``, by node position."""
    return asap_timing(index, graph_durations(index, cost))


def run_analytic(graph: ExecutionGraph, cost: CostModel) -> Schedule:
    """The schedule of ``graph`` with the durations of ``cost``."""
    return analytic_timing(GraphIndex.of(graph), cost).schedule()
