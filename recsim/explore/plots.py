"""Plots of sweep results: the Pareto front, scaling curves, stacked step-time breakdowns.

Each function takes a results frame (``Store.frame()``, ``SweepResult.frame``) and returns a
matplotlib ``Figure``; with ``path`` it also writes ``<path>.png`` and ``<path>.svg`` (a ``.png`` or
``.svg`` suffix on ``path`` is replaced). Figures are built on the Agg canvas directly, never through
``pyplot``: nothing depends on (or changes) the interactive backend, plotting is safe in worker
threads and headless machines, and notebooks still display the returned figure.

Output is reproducible: fixed size and resolution, no timestamps in the files, and a fixed
``svg.hashsalt`` so SVG element ids are the same on every run.

Axes are labelled with the metric's unit, read from its name (recsim keeps SI units in names:
``_s`` seconds, ``_w`` watts, ``_j`` joules, ``_bytes`` bytes, ``_samples_per_s`` samples/s, ...);
the values are scaled to a readable prefix and the label says which (``step time (ms)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from recsim.errors import ConfigError
from recsim.explore.pareto import knee_point, pareto_mask
from recsim.output import check_output_path, replacing
from recsim.units import Dimension, format_quantity, parse_quantity, quantity_of

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["axis_label", "breakdown", "pareto", "save", "scaling", "unit_of"]

FIGSIZE: Final[tuple[float, float]] = (7.0, 4.5)
DPI: Final[int] = 120
SVG_HASHSALT: Final[str] = "recsim"
FRONT_COLOR: Final[str] = "#d62728"
CLOUD_COLOR: Final[str] = "#9e9e9e"

#: Unit suffixes of metric names, longest first: suffix -> (unit text, Dimension for SI prefixes).
_SUFFIXES: Final[tuple[tuple[str, str, Dimension | None], ...]] = (
    ("_samples_per_s", "samples/s", None),
    ("samples_per_joule", "samples/J", None),
    # A whole name like the one above: the sweep's ``throughput_samples_per_s / num_accelerators``
    # (``recsim.explore.evaluate.derived_metrics``), a stored metric name kept for existing specs.
    ("throughput_per_accelerator", "samples/s", None),
    ("_bytes_per_s", "B/s", Dimension.BYTES_PER_S),
    ("_flop_per_s", "FLOP/s", Dimension.FLOP_PER_S),
    ("_qps", "queries/s", None),
    ("_bytes", "B", Dimension.BYTES),
    ("_hz", "Hz", Dimension.HERTZ),
    ("_s", "s", Dimension.SECONDS),
    ("_w", "W", Dimension.WATTS),
    ("_j", "J", Dimension.JOULES),
)
_COUNT_PREFIXES: Final[tuple[tuple[float, str], ...]] = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def unit_of(name: str) -> tuple[str, str, Dimension | None] | None:
    """``(suffix, unit, dimension)`` of a metric or column name, or None for a plain number.

    The unit is in the metric's own name, before any ``.part`` (``breakdown_s.compute`` is seconds);
    ``values.<path>`` axis columns carry no unit in their name.
    """
    if name.startswith("values."):
        return None
    base = name.split(".", 1)[0]
    for suffix, unit, dim in _SUFFIXES:
        if base.endswith(suffix) or base == suffix.lstrip("_"):
            return suffix, unit, dim
    return None


def _scale(name: str, values: np.ndarray, dimension: Dimension | None = None) -> tuple[float, str]:
    """(divisor, unit text) that puts the largest finite |value| of ``name`` in a readable range;
    ``dimension``: the quantity a ``values.*`` column's texts hold (``_axis``)."""
    found = unit_of(name)
    if found is None and dimension is not None:
        found = ("", "", dimension)
    finite = np.abs(values[np.isfinite(values)])
    peak = float(finite.max()) if finite.size else 0.0
    if found is None:
        return 1.0, ""
    _suffix, unit, dim = found
    if dim is not None:
        if peak <= 0:
            return 1.0, unit if dim is not Dimension.BYTES else "bytes"
        binary = dim is Dimension.BYTES
        text = format_quantity(peak, dim, binary=binary)
        scaled_unit = text.split(" ", 1)[1]
        factor = parse_quantity(f"1 {scaled_unit}", dim)
        return factor, scaled_unit
    for factor, prefix in _COUNT_PREFIXES:
        if peak >= factor:
            return factor, f"{prefix} {unit}" if " " not in unit else f"{prefix}{unit}"
    return 1.0, unit


def _title_of(name: str) -> str:
    """``throughput_samples_per_s`` -> ``throughput``; ``values.cluster.nodes`` -> ``cluster.nodes``."""
    if name.startswith("values."):
        return name[len("values.") :]
    found = unit_of(name)
    base, _, part = name.partition(".")
    if found is not None and base.endswith(found[0]) and base != found[0]:
        base = base[: -len(found[0])]
    words = base.replace("_", " ").strip()
    if part:
        words = f"{words} {part.replace('_', ' ')}".strip()
    return words or name


def axis_label(name: str, values: Sequence[float] | np.ndarray | None = None) -> str:
    """The axis label of ``name``: words and the (scaled) unit, e.g. ``iteration time (ms)``."""
    arr = np.asarray(values if values is not None else [], dtype=float)
    _factor, unit = _scale(name, arr) if arr.size else (1.0, (unit_of(name) or ("", "", None))[1])
    title = _title_of(name)
    return f"{title} ({unit})" if unit else title


def _check_frame(df: object) -> None:
    """``df`` must be a DataFrame of results: a ``SweepResult`` passed whole (a notebook's easy slip,
    which had raised AttributeError: no attribute 'columns') is told which of its frames to give."""
    import pandas as pd

    if isinstance(df, pd.DataFrame):
        return
    if all(hasattr(df, name) for name in ("final", "frame", "front")):
        raise ConfigError(
            "a SweepResult, not a DataFrame: give result.final (each point at its last stage), "
            "result.frame (every stage's rows) or result.front"
        )
    raise ConfigError(f"expected a pandas DataFrame of results, got {type(df).__name__}")


def _axis(df: pd.DataFrame, name: str) -> tuple[np.ndarray, Dimension | None]:
    """The values of column ``name`` as floats, and the dimension of its quantity texts (None for a
    column of numbers)."""
    import pandas as pd

    if name not in df.columns:
        close = [c for c in df.columns if name in str(c)][:3]
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"no column {name!r} in the results{hint}")
    column = df[name]
    # An axis swept over quantity texts ("1 TB/s", "80 GB") is stored as the spec wrote it: read
    # it in SI, as the config does (a tester's scaling plot over HBM bandwidths came out empty).
    quantities = [quantity_of(v) for v in column]
    texts = [v for v in column if isinstance(v, str)]
    if texts and all(q is not None for q, v in zip(quantities, column, strict=True) if isinstance(v, str)):
        dimensions = {q[0] for q in quantities if q is not None}
        if len(dimensions) > 1:
            raise ConfigError(f"column {name!r} mixes quantities of {sorted(map(str, dimensions))}")
        values = np.array([q[1] if q is not None else np.nan for q in quantities], dtype=float)
        return values, dimensions.pop()
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    if texts and not np.isfinite(values).any():
        raise ConfigError(f"column {name!r} holds no numbers or quantities (e.g. {texts[0]!r}) to plot")
    return values, None


def _new_figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.grid(True, color="#e0e0e0", linewidth=0.6)
    ax.set_axisbelow(True)
    return fig, ax


def save(fig: Figure, path: Path | str) -> list[Path]:
    """Write ``fig`` as PNG and SVG next to each other (``path`` with or without a suffix). Their
    folder must exist, as every output file's the user names (``check_output_path``; a sweep's
    Pareto plot goes in its ``--out`` folder, which the sweep made); both are checked before either
    is written."""
    import matplotlib

    path = Path(path)
    base = path.with_suffix("") if path.suffix.lower() in (".png", ".svg") else path
    formats = ((".png", {"Software": None}), (".svg", {"Date": None, "Creator": None}))
    targets = [check_output_path(base.with_name(base.name + suffix), "plot") for suffix, _ in formats]
    written = []
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASHSALT, "svg.fonttype": "path"}):
        for target, (suffix, metadata) in zip(targets, formats, strict=True):
            with replacing(target, "plot") as tmp:
                fig.savefig(tmp, format=suffix[1:], dpi=DPI, metadata=metadata)
            written.append(target)
    return written


#: Metrics where more is better; every other metric (times, latency, power, energy, bytes) is
#: minimised when a plot is given no senses.
_MAXIMISED = ("throughput", "samples_per_joule", "achieved_qps", "utilisation", "per_accelerator")


def default_sense(metric: str) -> str:
    """``max`` for throughput-like metrics, ``min`` for the rest (see ``_MAXIMISED``)."""
    return "max" if any(word in metric for word in _MAXIMISED) else "min"


def _senses(senses: Sequence[str] | Mapping[str, str] | None, x: str, y: str) -> list[str]:
    if senses is None:
        return [default_sense(x), default_sense(y)]
    if isinstance(senses, Mapping):
        missing = [c for c in (x, y) if c not in senses]
        if missing:
            raise ConfigError(f"no objective sense for {missing[0]!r}")
        return [senses[x], senses[y]]
    out = list(senses)
    if len(out) != 2:
        raise ConfigError(f"a Pareto plot needs 2 senses (x, y), not {len(out)}")
    return out


def _ok(df: pd.DataFrame) -> np.ndarray:
    if "status" in df.columns:
        return (df["status"] == "ok").to_numpy(dtype=bool)
    return np.ones(len(df), dtype=bool)


def pareto(
    df: pd.DataFrame,
    x: str,
    y: str,
    senses: Sequence[str] | Mapping[str, str] | None = None,
    *,
    path: Path | str | None = None,
    title: str | None = None,
    front: np.ndarray | Sequence[bool] | None = None,
    knee: bool = True,
) -> Figure:
    """The Pareto front of ``y`` against ``x`` over the dominated cloud, infeasible points as 'x'.

    ``senses`` gives ``"max"``/``"min"`` for (x, y) or maps the two names to senses (default: max
    for throughput-like metrics, min for the rest, ``default_sense``); ``front``
    overrides the computed mask (e.g. a front over more than these two objectives). Infeasible or
    failed points are drawn where they have values; those with no ``y`` sit on the bottom edge.
    """
    _check_frame(df)
    (xs, xd), (ys, yd) = _axis(df, x), _axis(df, y)
    sense = _senses(senses, x, y)
    ok = _ok(df) & np.isfinite(xs) & np.isfinite(ys)
    mask = (
        np.asarray(front, dtype=bool) if front is not None else pareto_mask(np.c_[xs, ys], sense, ok)
    ) & ok
    xf, xu = _scale(x, xs, xd)
    yf, yu = _scale(y, ys, yd)
    fig, ax = _new_figure()
    cloud = ok & ~mask
    ax.scatter(xs[cloud] / xf, ys[cloud] / yf, s=14, color=CLOUD_COLOR, alpha=0.6, label="dominated")
    order = np.argsort(xs[mask], kind="stable")
    ax.plot(
        xs[mask][order] / xf,
        ys[mask][order] / yf,
        "-o",
        color=FRONT_COLOR,
        markersize=5,
        linewidth=1.5,
        label="Pareto front",
    )
    bad = ~_ok(df) | (~np.isfinite(ys) & np.isfinite(xs))
    bad &= np.isfinite(xs)
    labelled = False
    for sel, on_edge in ((bad & np.isfinite(ys), False), (bad & ~np.isfinite(ys), True)):
        if not sel.any():
            continue
        ax.scatter(
            xs[sel] / xf,
            np.full(int(sel.sum()), 0.02) if on_edge else ys[sel] / yf,
            marker="x",
            s=22,
            color="black",
            transform=ax.get_xaxis_transform() if on_edge else ax.transData,
            label=None if labelled else f"infeasible ({int(bad.sum())})",
        )
        labelled = True
    if knee and mask.sum() >= 3:
        frame = _two(xs, ys, x, y)
        label = knee_point(frame, {x: sense[0], y: sense[1]}, feasible=mask)
        if label is not None:
            i = int(label)
            ax.scatter(
                [xs[i] / xf], [ys[i] / yf], marker="*", s=160, color="#ffbf00", edgecolor="black", zorder=5
            )
            ax.annotate("knee", (xs[i] / xf, ys[i] / yf), textcoords="offset points", xytext=(6, -12))
    _widen_x(ax, xs / xf, bad & ~np.isfinite(ys), ok | (bad & np.isfinite(ys)))
    ax.set_xlabel(f"{_title_of(x)} ({xu})" if xu else _title_of(x))
    ax.set_ylabel(f"{_title_of(y)} ({yu})" if yu else _title_of(y))
    arrows = {"max": "higher is better", "min": "lower is better"}
    ax.set_title(title or f"Pareto front: {_title_of(y)} ({arrows[sense[1]]}) vs {_title_of(x)}")
    ax.legend(loc="best", fontsize=8)
    if path is not None:
        save(fig, path)
    return fig


def _widen_x(ax: Axes, xs: np.ndarray, edge: np.ndarray, drawn: np.ndarray) -> None:
    """Widen the x range to the points drawn on the bottom edge (``edge``: no y): drawn in axes
    coordinates for y, they do not take part in autoscaling, so one outside the other points' x
    range was invisible, and with no other point (``drawn``) the range stayed matplotlib's empty
    default of about +-0.05 (a tester's find: every point at 17.8-25.3M, none shown)."""
    if not edge.any():
        return
    lo, hi = float(np.min(xs[edge])), float(np.max(xs[edge]))
    if drawn.any():
        shown = xs[drawn]
        lo, hi = min(lo, float(np.min(shown))), max(hi, float(np.max(shown)))
    span = hi - lo
    margin = 0.05 * span if span > 0 else (0.05 * abs(hi) if hi != 0 else 1.0)
    if drawn.any():
        now_lo, now_hi = ax.get_xlim()
        ax.set_xlim(min(now_lo, lo - margin), max(now_hi, hi + margin))
    else:
        ax.set_xlim(lo - margin, hi + margin)


def _two(xs: np.ndarray, ys: np.ndarray, x: str, y: str) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({x: xs, y: ys}) if x != y else pd.DataFrame({x: xs})


def scaling(
    df: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    *,
    path: Path | str | None = None,
    title: str | None = None,
    logx: bool | None = None,
) -> Figure:
    """``y`` against ``x`` (e.g. throughput against accelerators), one line per ``hue`` value.

    Only ``ok`` points are drawn; repeated x in a group show their mean. ``logx`` defaults to a
    log-2 axis when x is positive and spans a factor of 8 or more.
    """
    _check_frame(df)
    (xs, xd), (ys, yd) = _axis(df, x), _axis(df, y)
    ok = _ok(df) & np.isfinite(xs) & np.isfinite(ys)
    if hue is not None and hue not in df.columns:
        raise ConfigError(f"no column {hue!r} in the results")
    groups = df[hue].astype(str).to_numpy() if hue is not None else np.full(len(df), "")
    xf, xu = _scale(x, xs[ok], xd)
    yf, yu = _scale(y, ys[ok], yd)
    fig, ax = _new_figure()
    for group in sorted(set(groups[ok].tolist())):
        sel = ok & (groups == group)
        points = sorted(set(xs[sel].tolist()))
        means = [float(np.mean(ys[sel & (xs == p)])) for p in points]
        label = f"{_title_of(hue)}={group}" if hue is not None else None
        ax.plot(np.asarray(points) / xf, np.asarray(means) / yf, "-o", markersize=4, label=label)
    positive = xs[ok][xs[ok] > 0]
    if logx is None:
        logx = bool(positive.size == ok.sum() and positive.size and positive.max() / positive.min() >= 8)
    if logx:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(f"{_title_of(x)} ({xu})" if xu else _title_of(x))
    ax.set_ylabel(f"{_title_of(y)} ({yu})" if yu else _title_of(y))
    ax.set_title(title or f"{_title_of(y)} vs {_title_of(x)}")
    if hue is not None:
        ax.legend(loc="best", fontsize=8)
    if path is not None:
        save(fig, path)
    return fig


def breakdown(
    df: pd.DataFrame,
    index_col: str,
    *,
    prefix: str = "breakdown_s.",
    path: Path | str | None = None,
    title: str | None = None,
    share: bool = False,
) -> Figure:
    """Stacked bars of the ``breakdown_s.*`` columns (step time by category) per ``index_col`` value.

    Only ``ok`` points, and only categories that are non-zero somewhere, are drawn; ``share`` plots
    fractions of the step instead of seconds.
    """
    import pandas as pd

    _check_frame(df)
    if index_col not in df.columns:
        raise ConfigError(f"no column {index_col!r} in the results")
    parts = [c for c in df.columns if str(c).startswith(prefix)]
    if not parts:
        raise ConfigError(f"no {prefix}* columns in the results")
    rows = df[_ok(df)]
    if pd.api.types.is_numeric_dtype(rows[index_col]):
        rows = rows.sort_values(index_col, kind="stable")
    values = rows[parts].apply(pd.to_numeric, errors="coerce").fillna(0.0)
    parts = [c for c in parts if (values[c] != 0).any()] or parts
    values = values[parts].to_numpy(dtype=float)
    if share:
        totals = values.sum(axis=1, keepdims=True)
        values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
        factor, unit = 1.0, "share of the step"
    else:
        factor, unit = _scale(prefix.rstrip("."), values.sum(axis=1) if values.size else values)
    labels = [str(v) for v in rows[index_col].tolist()]
    fig, ax = _new_figure()
    positions = np.arange(len(labels))
    bottom = np.zeros(len(labels))
    for j, name in enumerate(parts):
        height = values[:, j] / factor
        ax.bar(positions, height, bottom=bottom, width=0.7, label=name[len(prefix) :].replace("_", " "))
        bottom += height
    ax.set_xticks(
        positions, labels, rotation=45 if len(labels) > 8 else 0, ha="right" if len(labels) > 8 else "center"
    )
    ax.set_xlabel(_title_of(index_col))
    what = "time per step" if prefix == "breakdown_s." else _title_of(prefix.rstrip("."))
    ax.set_ylabel(f"{what} ({unit})" if unit else what)
    ax.set_title(title or f"step time breakdown by {_title_of(index_col)}")
    ax.legend(loc="best", fontsize=8)
    if path is not None:
        save(fig, path)
    return fig
