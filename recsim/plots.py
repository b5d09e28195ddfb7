"""Plots of sweep results for notebooks: ``recsim.plots.pareto(df, x=..., y=...)`` and friends.

A short alias of ``recsim.explore.plots`` (the implementation and its conventions: units in the
axis labels, the front over the dominated cloud, infeasible points marked, PNG and SVG output).
"""

from recsim.explore.plots import breakdown, pareto, scaling

__all__ = ["breakdown", "pareto", "scaling"]
