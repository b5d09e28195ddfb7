"""Pareto fronts and knee points over sweep results, for any mix of objective senses.

Definitions (every objective turned into "smaller is better" by negating the maximised ones):

* point ``a`` *dominates* ``b`` when ``a`` is no worse than ``b`` in every objective and strictly
  better in at least one;
* the *front* (the non-dominated set) is every feasible point that no feasible point dominates.
  A point with a NaN objective, or marked infeasible, is never on the front and never dominates
  anything. Two points with equal objectives do not dominate each other, so duplicates of a front
  point are all on the front;
* the *knee* of a front is the point with the best compromise: with two objectives, after min-max
  normalising each objective over the front, the point farthest from the straight line through the
  two extreme points, on the side of the utopia point (best value of every objective); with more
  objectives, the point closest to the utopia point. Ties go to the point closer to the utopia
  point, then to the better value of the first objective (then of the second, ...), so that the
  knee does not depend on the order of the rows; only rows with equal objectives go to the earlier.

``pareto_mask`` is vectorised numpy: each surviving point in turn removes every point it dominates,
O(n * f * k) for f points on the front (O(n^2 k) at worst) in O(n k) memory, so 10^4 points take
well under a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recsim.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SENSES", "knee_point", "pareto_mask"]

SENSES = ("max", "min")


def _signs(senses: Sequence[str]) -> np.ndarray:
    signs = []
    for sense in senses:
        if sense not in SENSES:
            raise ConfigError(f"objective sense must be 'max' or 'min', not {sense!r}")
        signs.append(-1.0 if sense == "max" else 1.0)
    return np.asarray(signs, dtype=float)


def _as_matrix(
    values: np.ndarray | pd.DataFrame | Sequence[Sequence[float]],
    senses: Sequence[str] | Mapping[str, str],
) -> tuple[np.ndarray, list[str]]:
    """The objective matrix (n x k, float, NaN for missing) and the sense of each column."""
    if isinstance(senses, Mapping):
        columns = list(senses)
        sense_list = [senses[c] for c in columns]
        if hasattr(values, "columns"):
            missing = [c for c in columns if c not in values.columns]  # type: ignore[union-attr]
            if missing:
                raise ConfigError(f"no column {missing[0]!r} among the results to rank")
            frame = values[columns]  # type: ignore[index]
            matrix = frame.apply(_to_float_series).to_numpy(dtype=float)
        else:
            raise ConfigError("objective senses given by column name need a DataFrame")
    else:
        sense_list = list(senses)
        if hasattr(values, "columns"):
            matrix = values.apply(_to_float_series).to_numpy(dtype=float)  # type: ignore[union-attr]
        else:
            matrix = np.asarray(values, dtype=float)
    if matrix.ndim == 1:
        matrix = matrix.reshape(-1, 1) if len(sense_list) == 1 else matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != len(sense_list):
        raise ConfigError(f"{len(sense_list)} objective senses for a {matrix.shape} value matrix")
    return matrix, sense_list


def _to_float_series(column: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_numeric(column, errors="coerce").astype(float)


def pareto_mask(
    values: np.ndarray | pd.DataFrame | Sequence[Sequence[float]],
    senses: Sequence[str] | Mapping[str, str],
    feasible: np.ndarray | Sequence[bool] | None = None,
) -> np.ndarray:
    """Boolean mask of the non-dominated feasible rows of ``values`` (see the module docstring).

    ``values`` is an n x k matrix (or a DataFrame); ``senses`` gives ``"max"``/``"min"`` per column,
    or maps column names of a DataFrame to senses (only those columns count). ``feasible`` marks
    the rows allowed on the front (default: all); a row with a NaN objective is infeasible.
    """
    matrix, sense_list = _as_matrix(values, senses)
    n = matrix.shape[0]
    ok = np.all(np.isfinite(matrix), axis=1)
    if feasible is not None:
        feasible_arr = np.asarray(feasible, dtype=bool).reshape(-1)
        if feasible_arr.shape[0] != n:
            raise ConfigError(f"feasible mask has {feasible_arr.shape[0]} rows for {n} points")
        ok &= feasible_arr
    mask = np.zeros(n, dtype=bool)
    if n == 0 or not ok.any():
        return mask
    costs = matrix[ok] * _signs(sense_list)  # smaller is better in every column
    # Cull: after processing point p, drop every point p dominates (keeping p's duplicates). What
    # survives all steps is dominated by no processed point, hence (transitivity) by no point.
    # Points with a small cost sum come first: they dominate the most, so the set shrinks fast.
    alive = np.argsort(costs.sum(axis=1), kind="stable")
    i = 0
    while i < alive.size:
        remaining = costs[alive]
        point = remaining[i]
        keep = np.any(remaining < point, axis=1) | np.all(remaining == point, axis=1)
        alive = alive[keep]
        i = int(np.count_nonzero(keep[:i])) + 1
    front = np.zeros(costs.shape[0], dtype=bool)
    front[alive] = True
    mask[np.flatnonzero(ok)] = front
    return mask


def knee_point(
    df: pd.DataFrame,
    objectives: Mapping[str, str],
    feasible: np.ndarray | Sequence[bool] | None = None,
) -> Any | None:
    """The index label (``df.index``) of the knee of the Pareto front of ``df``, or None if empty.

    ``objectives`` maps column names to ``"max"``/``"min"``. Rows whose ``status`` column (if any)
    is not ``"ok"`` are infeasible, as are rows outside ``feasible``.
    """
    if not objectives:
        raise ConfigError("a knee point needs at least one objective")
    feasible_arr = _feasible(df, feasible)
    front = pareto_mask(df, objectives, feasible_arr)
    if not front.any():
        return None
    matrix, sense_list = _as_matrix(df, objectives)
    positions = np.flatnonzero(front)
    costs = matrix[front] * _signs(sense_list)
    low, high = costs.min(axis=0), costs.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    norm = (costs - low) / span  # 0 = best on the front, 1 = worst
    to_utopia = np.sqrt(np.sum(norm**2, axis=1))
    # Last tie-break before the row: the objectives themselves, the first objective's best first
    # (np.lexsort's last key is its first). Ties are common (a two-point front, or a front bending
    # away from the utopia point: both extremes at distance 0 from their line and 1 from the
    # utopia point), and the earlier row alone had decided them: a re-ordered table moved the knee.
    by_value = [costs[:, j] for j in reversed(range(costs.shape[1]))]
    if norm.shape[1] == 2 and len(positions) > 2:
        a = norm[np.lexsort((norm[:, 1], norm[:, 0]))[0]]  # best in objective 0
        b = norm[np.lexsort((norm[:, 0], norm[:, 1]))[0]]  # best in objective 1
        direction = b - a
        length = float(np.hypot(*direction))
        if length > 0:
            # Signed distance to the line a-b, positive towards the utopia point (the origin).
            cross = direction[0] * (norm[:, 1] - a[1]) - direction[1] * (norm[:, 0] - a[0])
            origin = direction[0] * (0.0 - a[1]) - direction[1] * (0.0 - a[0])
            side = 1.0 if origin >= 0 else -1.0
            distance = side * cross / length
            order = np.lexsort((positions, *by_value, np.round(to_utopia, 12), -np.round(distance, 12)))
            return df.index[positions[order[0]]]
    order = np.lexsort((positions, *by_value, np.round(to_utopia, 12)))
    return df.index[positions[order[0]]]


def _feasible(df: pd.DataFrame, feasible: np.ndarray | Sequence[bool] | None) -> np.ndarray:
    mask = np.ones(len(df), dtype=bool)
    if "status" in df.columns:
        mask &= (df["status"] == "ok").to_numpy(dtype=bool)
    if feasible is not None:
        mask &= np.asarray(feasible, dtype=bool).reshape(-1)
    return mask
