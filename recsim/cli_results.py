"""``recsim results`` (sweep stores: list, show, export) and ``recsim golden`` (check, update).

Registered on the main group by ``recsim.cli`` (``cli.add_command(results)``,
``cli.add_command(golden)``). Like every recsim command, a user mistake prints one line
``recsim: error: ...`` and exits with code 2; ``golden check`` exits 1 when a case fails.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from recsim.cli_common import Console, OutputFile, RecsimGroup
from recsim.errors import ConfigError
from recsim.output import check_output_path

if TYPE_CHECKING:
    import pandas as pd

    from recsim.explore.store import Store

EXIT_FAILED = 1
STAGE_ORDER = ("analytic", "des")
STATUSES = ("ok", "infeasible", "error")


def _open(path: Path) -> Store:
    from recsim.explore.store import Store, find_store

    return Store(find_store(path), create=False)


def _stores_under(path: Path) -> list[Path]:
    from recsim.explore.store import STORE_NAME, find_store

    if path.is_file() or (path.is_dir() and (path / STORE_NAME).is_file()):
        return [find_store(path)]
    if not path.is_dir():
        raise ConfigError(f"{path}: no such folder or results store")
    found = sorted(path.rglob(STORE_NAME))
    if not found:
        try:
            return [find_store(path)]
        except ConfigError:
            raise ConfigError(f"{path}: no results stores ({STORE_NAME}) in or under this folder") from None
    return found


def _spec_data(store: Store) -> dict[str, Any]:
    """The stored sweep spec as data (name, objectives, ...); empty if none or unreadable."""
    import yaml

    spec = store.spec()
    if spec is None:
        return {}
    try:
        data = yaml.safe_load(spec[0])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _objectives(store: Store, given: tuple[str, ...]) -> dict[str, str]:
    if given:
        out: dict[str, str] = {}
        for text in given:
            name, sep, sense = text.partition("=")
            if not sep or sense not in ("max", "min") or not name:
                raise click.BadParameter(
                    f"{text!r}: expected METRIC=max or METRIC=min", param_hint="--objective"
                )
            out[name] = sense
        return out
    found = _spec_data(store).get("objectives")
    if isinstance(found, Mapping) and all(v in ("max", "min") for v in found.values()):
        return {str(k): str(v) for k, v in found.items()}
    return {}


# ---------------------------------------------------------------------------------- results


@click.group(cls=RecsimGroup)
def results() -> None:
    """Sweep results stores: list, show, export."""


@results.command("list")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def results_list(path: Path, as_json: bool) -> None:
    """Summarise the sweep store(s) in PATH: spec name, points by stage and status."""
    rows: list[dict[str, Any]] = []
    broken: list[dict[str, Any]] = []
    stores = _stores_under(path)
    for found in stores:
        try:
            with _open(found) as store:
                rows.append(store.summary())
        except ConfigError as exc:
            if len(stores) == 1:
                raise  # the store named, or the only one: its error, exit 2
            # One store under a folder of them that does not open is a warning, not the end of
            # the listing (a tester's folder listed nothing for one stray results.sqlite).
            broken.append({"path": str(found), "error": str(exc)})
    if broken:
        paths = ", ".join(row["path"] for row in broken)
        click.echo(f"recsim: warning: {len(broken)} store(s) do not open: {paths}", err=True)
    if as_json:
        click.echo(json.dumps(rows + broken, indent=2))
        return
    table = Table(title=f"recsim results in {path}")
    for col in ("store", "sweep", "stage", "ok", "infeasible", "error", "created"):
        table.add_column(col, overflow="fold", justify="right" if col in STATUSES else "left")
    for row in rows:
        where = _relative(Path(row["path"]), path)
        stages = sorted(row["stages"].items(), key=lambda kv: _stage_rank(kv[0])) or [("-", {})]
        for stage, counts in stages:
            table.add_row(
                where,
                row["name"] or "-",
                stage,
                *(str(counts.get(status, 0)) for status in STATUSES),
                row["created_at"] or "-",
            )
    _console().print(table)


def _relative(found: Path, given: Path) -> str:
    base = given if given.is_dir() else given.parent
    try:
        return str(found.relative_to(base)) if found != given else str(found)
    except ValueError:
        return str(found)


def _console() -> Console:
    """Rich console; piped output gets room for wide tables instead of 80 columns."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 140))


def _final_frame(store: Store) -> Any:
    """One row per point: its record at the last stage that evaluated it, the stages in the stored
    spec's order (``_stage_order``), as ``sweep.final_records`` reads them for pareto.csv."""
    from recsim.explore.store import records_frame
    from recsim.explore.sweep import latest_records

    return records_frame(latest_records(store, _stage_order(store)))


def _stage_order(store: Store) -> list[str]:
    """The stages the store holds records of, in the stored spec's ``stages`` order (its last stage
    is the final one: ``[{fidelity: des}, {fidelity: analytic, top: 3}]`` ends at analytic; a
    tester's find: a fixed analytic-then-des order had made ``show --front`` disagree with
    pareto.csv). Stages the spec does not name (a store without a spec) come first, in
    ``STAGE_ORDER``."""
    held = {r.stage for r in store.records()}
    stages = _spec_data(store).get("stages")
    named = [s.get("fidelity") for s in stages if isinstance(s, Mapping)] if isinstance(stages, list) else []
    order = [str(f) for f in dict.fromkeys(named) if f in held]
    rest = sorted(held - set(order), key=_stage_rank)
    return [*rest, *order]


def _check_stage(store: Store, stage: str | None) -> None:
    """A ``--stage`` the store has no records of is a mistake (a typo would show an empty table)."""
    if stage is None:
        return
    stored = _stage_order(store)
    if stage not in stored:
        known = ", ".join(stored) if stored else "none: the store holds no points"
        raise ConfigError(f"{store.path}: --stage {stage!r}: no points at that stage (stages: {known})")


def _stage_rank(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


@results.command("show")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--front", is_flag=True, help="Only the Pareto front of the spec's objectives.")
@click.option(
    "--objective",
    "objective",
    multiple=True,
    metavar="METRIC=max|min",
    help="Objective for --front and the shown columns (default: the spec's). Repeatable.",
)
@click.option(
    "--stage",
    default=None,
    help="Only this fidelity stage (default: all; --front: each point at its last stage).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help="At most N rows (0: all; default 50 in the table, all with --json).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON (every column).")
def results_show(
    path: Path, front: bool, objective: tuple[str, ...], stage: str | None, limit: int | None, as_json: bool
) -> None:
    """The points of a sweep store: status, axis values and objectives (or only the front)."""
    from recsim.explore.pareto import pareto_mask

    with _open(path) as store:
        objectives = _objectives(store, objective)
        name = _spec_data(store).get("name") or store.path.parent.name
        axis_order = _axis_order(_spec_data(store))
        _check_stage(store, stage)
        # --front alone is the sweep's own front (pareto.csv): each point at its last stage.
        frame = _final_frame(store) if front and stage is None else store.frame(stage)
    missing = [m for m in objectives if m not in frame.columns]
    # A metric the user typed must exist; the spec's own may be absent from a store whose points
    # all failed (their rows, with the reasons, are what the user needs to see then).
    typed = [m for m in missing if any(text.partition("=")[0].strip() == m for text in objective)]
    if typed and len(frame):
        raise ConfigError(f"{path}: no metric {typed[0]!r} in the results")
    if front:
        if not objectives:
            raise ConfigError(
                f"{path}: the store has no objectives; give them with --objective METRIC=max|min"
            )
        if missing and len(frame):
            raise ConfigError(f"{path}: no metric {missing[0]!r} in the results")
        if len(frame):
            ok = (frame["status"] == "ok").to_numpy(dtype=bool)
            mask = pareto_mask(frame, objectives, ok)
            frame = frame[mask]
            first, sense = next(iter(objectives.items()))
            frame = frame.sort_values(first, ascending=sense == "min", kind="stable")
    total = len(frame)
    if limit is None:
        # A script reading --json gets every row unless it asks for fewer (a tester lost 30 of 80
        # rows to the table's default, with nothing said).
        limit = 0 if as_json else 50
    shown = frame if limit == 0 else frame.head(limit)
    if as_json:
        click.echo(json.dumps([_clean_row(r) for r in shown.to_dict(orient="records")], indent=2))
        return
    title = f"{name}: {'Pareto front' if front else 'points'}" + (f" ({stage})" if stage else "")
    if front and stage is None:
        title += " (each point at its last stage)"
    _console().print(_points_table(shown, objectives, title, axis_order))
    if len(shown) < total:
        click.echo(f"... {total - len(shown)} more (--limit 0 shows all)")


def _clean_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif hasattr(value, "item") and not isinstance(value, (list, dict, str)):
            value = value.item()  # numpy scalar
        elif isinstance(value, str) and value.startswith("[") and _list_column(str(key)):
            # A list the frame holds as JSON text (a list axis value, a result's notes) is a JSON
            # list again (a tester's find: "notes": "[]").
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = None
            if isinstance(decoded, list):
                value = decoded
        out[str(key)] = value
    return out


def _list_column(name: str) -> bool:
    """A column whose lists ``PointRecord.to_row`` writes as JSON text: axis values and metrics
    (not the record's own text fields)."""
    return name not in ("key", "stage", "status", "reason", "config")


def _axis_order(spec: Mapping[str, Any]) -> list[str]:
    """The stored spec's axis paths in its order (product axes, then each zip group's)."""
    axes = spec.get("axes")
    order = [str(p) for p in axes] if isinstance(axes, Mapping) else []
    groups = spec.get("zip")
    if isinstance(groups, list):
        order += [str(p) for group in groups if isinstance(group, Mapping) for p in group]
    return order


def _points_table(
    frame: pd.DataFrame, objectives: Mapping[str, str], title: str, axis_order: Sequence[str] = ()
) -> Table:
    axes = [c for c in frame.columns if str(c).startswith("values.")]
    # The spec's order (the front of `recsim sweep` shows it), not the store's sorted keys.
    rank = {f"values.{path}": i for i, path in enumerate(axis_order)}
    axes.sort(key=lambda c: rank.get(str(c), len(rank)))
    table = Table(title=title)
    table.add_column("#", justify="right")
    stages = frame["stage"].nunique() > 1 if len(frame) else False
    if stages:
        table.add_column("stage")
    table.add_column("status")
    for col in axes:
        table.add_column(str(col)[len("values.") :], overflow="fold")
    for metric, sense in objectives.items():
        table.add_column(f"{metric} ({sense})", justify="right", overflow="fold")
    reasons = bool(len(frame)) and bool(frame["reason"].fillna("").astype(str).str.len().any())
    if reasons:
        table.add_column("reason", overflow="fold", max_width=60)
    for row in frame.to_dict(orient="records"):
        cells = [str(row["index"])]
        if stages:
            cells.append(str(row["stage"]))
        cells.append(str(row["status"]))
        cells.extend(_plain(row.get(col)) for col in axes)
        cells.extend(format_metric(metric, row.get(metric)) for metric in objectives)
        if reasons:
            cells.append(str(row.get("reason") or ""))
        table.add_row(*cells)
    return table


def _plain(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_metric(name: str, value: Any) -> str:
    """A metric value with its unit (from the name's suffix), e.g. ``4.2 ms``, ``1.25M samples/s``."""
    from recsim.explore.plots import unit_of
    from recsim.units import Dimension, format_quantity

    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return _plain(value)
    if not math.isfinite(value):
        return "-"
    found = unit_of(name)
    if found is None:
        return _plain(value)
    _suffix, unit, dim = found
    if dim is not None:
        return format_quantity(float(value), dim, binary=dim is Dimension.BYTES)
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        text = f"{value / factor:.4g}"
        # The prefix by the value as printed (999,960 is "1M", not "1000k"), as format_quantity.
        if abs(float(text)) >= 1.0:
            return (f"{value / factor:.0f}" if "e+" in text else text) + f"{prefix} {unit}"
    return f"{value:.4g} {unit}"


@results.command("export")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--to",
    "target",
    required=True,
    type=OutputFile(),
    help="Output file: .parquet or .csv.",
)
@click.option("--stage", default=None, help="Only this fidelity stage (default: all).")
def results_export(path: Path, target: Path, stage: str | None) -> None:
    """Write a sweep store's points to Parquet or CSV: one row per point and stage (a point re-run
    at DES has an analytic and a DES row; --stage picks one), values.* and metrics."""
    from recsim.api import check_recsim_output
    from recsim.explore.store import is_results_export

    # Only over an export of recsim's (a tester found any CSV replaced), and into a folder that
    # exists, as every output file (``recsim.output``), checked before the store is read.
    check_output_path(target, "results export")
    if target.exists():
        check_recsim_output(target, "results export", own=is_results_export)
    with _open(path) as store:
        _check_stage(store, stage)
        written = store.export(target, stage)
        n = store.count(stage)
    click.echo(f"wrote {written} ({n} rows)", err=True)


# ---------------------------------------------------------------------------------- golden


@click.group(cls=RecsimGroup)
def golden() -> None:
    """Golden regression cases (DIR/<case>/config.yaml + expected.json): check, update."""


@golden.command("check")
@click.argument("folder", type=click.Path(path_type=Path))
@click.argument("cases", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print every comparison as JSON.")
@click.pass_context
def golden_check(ctx: click.Context, folder: Path, cases: tuple[str, ...], as_json: bool) -> None:
    """Simulate each case in FOLDER (or only CASES) and compare with its expected metrics.

    Exit 1 if any metric is outside its tolerance (or a status differs), 2 on a malformed case.
    """
    from recsim.explore import golden as gold

    outcome = gold.check(folder, list(cases) or None)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in outcome], indent=2))
    else:
        table = Table(title=f"recsim golden check {folder}")
        for col in ("case", "result", "status", "metrics", "failures"):
            table.add_column(col, overflow="fold")
        for r in outcome:
            failures = r.failures
            shown = "; ".join(c.describe() for c in failures[:3])
            if len(failures) > 3:
                shown += f"; ... {len(failures) - 3} more"
            table.add_row(
                r.case,
                "pass" if r.passed else "FAIL",
                r.status + (f": {r.reason[:60]}" if r.status != "ok" and r.reason else ""),
                str(len(r.checks)),
                shown or "-",
            )
        _console().print(table)
        failed = sum(not r.passed for r in outcome)
        click.echo(f"{len(outcome) - failed} passed, {failed} failed")
    if any(not r.passed for r in outcome):
        ctx.exit(EXIT_FAILED)


@golden.command("update")
@click.argument("folder", type=click.Path(path_type=Path))
@click.argument("cases", nargs=-1)
@click.option(
    "--all", "all_metrics", is_flag=True, help="Record every metric, not only those the files already list."
)
def golden_update(folder: Path, cases: tuple[str, ...], all_metrics: bool) -> None:
    """Rewrite expected.json of each case in FOLDER (or only CASES) from the current results.

    Tolerances are kept; review the diff before committing it.
    """
    from recsim.explore import golden as gold

    for path in gold.update(folder, list(cases) or None, all_metrics=all_metrics):
        click.echo(f"wrote {path}", err=True)
