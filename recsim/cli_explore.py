"""``recsim sweep``: run a design-space exploration from a sweep spec (``recsim.explore``).

The command is a ``click.Command`` named ``sweep`` that ``recsim.cli`` registers with
``cli.add_command(sweep)``; it also runs on its own (``python -m recsim.cli_explore SPEC --out DIR``).
A user mistake (a bad spec, a store made by another spec, an unreachable scheduler) prints one line,
``recsim: error: ...``, on stderr and exits with code 2. A sweep that ran to the end with no point
that succeeded (every one infeasible, outside a constraint, or failed) exits with code 1
(``EXIT_NO_POINT``): it is a result, kept whole in the store and its exports, not a user mistake.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table
from rich.text import Text

from recsim.cli_common import Console, RecsimCommand

#: The exit code of a sweep that ran to the end but where no point succeeded.
EXIT_NO_POINT = 1


def _root_overrides(ctx: click.Context) -> list[str]:
    """The global ``recsim --set`` / ``--nodes`` (when run under the ``recsim`` group)."""
    obj = ctx.find_root().obj or {}
    sets = list(obj.get("overrides", ()) or ())
    if obj.get("nodes") is not None:
        sets.append(f"base.nodes={obj['nodes']}")
    return sets


class WorkerCount(click.ParamType):
    """``--workers``: a whole number of at least 1; click's ``IntRange`` called ``2.5`` "not a valid
    integer range". The library checks the same (``executors.check_workers``, with the same words);
    what it is a ceiling of: ``recsim.explore.executors``."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            count = value if isinstance(value, int) and not isinstance(value, bool) else int(str(value), 10)
        except ValueError:
            count = 0
        if count < 1:
            from recsim.explore.executors import WORKERS_EXPECTED  # lazily: the CLI starts light

            self.fail(f"expected {WORKERS_EXPECTED}, got {value!r}", param, ctx)
        return count


@click.command("sweep", cls=RecsimCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("spec", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Output folder, made with its parents: results.sqlite (the store), results.parquet, pareto.csv, "
    "pareto.png/.svg.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="local: a process pool on this machine. dask: a Dask distributed cluster.",
)
@click.option(
    "--scheduler", default=None, metavar="ADDR", help="Dask scheduler address (default: a local cluster)."
)
@click.option(
    "--workers",
    type=WorkerCount(),
    default=None,
    help="Most worker processes (default: the CPUs this process may use); no more start than there "
    "are points to run, and more than the CPUs only share them (a note says so). 1 runs in this process.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the sweep stored in --out, skipping finished points (refused if another recsim, "
    "with other code or data, made them). With no store in --out, a new sweep starts, and says so.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="PATH=VALUE",
    help="Edit the spec (search.samples=10, base.nodes=4) or, for any other path, every point "
    "(a system path, workload.*, planner.*). Repeatable.",
)
@click.option(
    "--progress/--no-progress", default=None, help="Progress bar on stderr (default: on a terminal)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def sweep(
    ctx: click.Context,
    spec: Path,
    out: Path,
    executor: str,
    scheduler: str | None,
    workers: int | None,
    resume: bool,
    overrides: tuple[str, ...],
    progress: bool | None,
    as_json: bool,
) -> None:
    """Run the sweep SPEC (a `kind: sweep` YAML file) and write its results to --out.

    Exit 0 when some point succeeded; 1 when the sweep ran to the end but no point did (every one
    infeasible, outside a constraint, or failed: the store and exports hold each point's reason);
    2 on a user mistake (a bad spec or option, a store of another spec).
    """
    from recsim.explore.sweep import run_sweep

    result = run_sweep(
        spec,
        out,
        executor=executor,
        workers=workers,
        scheduler=scheduler,
        resume=resume,
        overrides=[*_root_overrides(ctx), *overrides],
        progress=progress,
        note=lambda text: click.echo(f"recsim: note: {text}", err=True),
    )
    if as_json:
        click.echo(json.dumps(result.summary(), indent=2))
    else:
        _print_summary(result)
    counts = result.counts
    if result.complete and counts.get("points", 0) and not counts.get("ok", 0):
        if as_json:  # the reasons are in the JSON; say on stderr why the exit code is not 0
            click.echo("recsim: no point succeeded", err=True)
        # No point succeeded: a script should not read an empty front as a result, nor mistake a
        # valid, stored result for a user mistake (exit 2; a tester's find).
        ctx.exit(EXIT_NO_POINT)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def _print_summary(result: Any) -> None:
    from recsim.cli_results import format_metric

    counts = result.counts
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 140))  # piped: room for the front table
    spec = result.spec
    console.print(
        Text.assemble(
            (spec.name, "bold"),
            f": {counts.get('points', 0)} points "
            f"({counts.get('ok', 0)} ok, {counts.get('infeasible', 0)} infeasible, "
            f"{counts.get('error', 0)} error); "
            f"this run: {counts.get('run', 0)} run, {counts.get('skipped', 0)} skipped (already stored), "
            f"{counts.get('failed', 0)} failed; {result.executor}",
        )
    )
    if not result.complete:
        console.print("stopped early: run again with --resume to finish")
    if result.complete and counts.get("points", 0) and not counts.get("ok", 0):
        # No point succeeded: the front is empty; say why rather than print an empty table (a
        # tester's sweep of batch sizes no rank count divides ended "0 ok" and exit 0, silently).
        final = result.final
        reasons = final["reason"].dropna().astype(str) if "reason" in final.columns else []
        shown = list(dict.fromkeys(r for r in reasons if r))[:3]
        said = ": " + " | ".join(shown) if shown else ""
        console.print(Text.assemble(("no point succeeded", "bold red"), said))
    if result.front.empty:
        # No table of no rows: its title wrapped in the narrow empty table (a tester's find).
        console.print("Pareto front: no point (none is ok and meets every constraint)")
        _print_paths(console, result)
        return
    axis_cols = [p for p in spec.axis_paths if f"values.{p}" in result.front.columns]
    objectives = [o for o in spec.objectives if o in result.front.columns]
    table = Table(
        title=f"Pareto front ({len(result.front)} point{'' if len(result.front) == 1 else 's'})",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    table.add_column("#", justify="right")
    for path in axis_cols:
        table.add_column(path)
    for name in objectives:
        arrow = console.glyph("↑", "(max)") if spec.objectives[name] == "max" else console.glyph("↓", "(min)")
        table.add_column(f"{name} {arrow}", justify="right", overflow="fold")
    for _, row in result.front.iterrows():
        cells = [str(row["index"])]
        cells += [_cell(row[f"values.{p}"]) for p in axis_cols]
        # With their units, as `recsim results show --front` shows them (a tester read 0.0003851
        # here and 385.1 uJ there for one point's energy_per_sample_j).
        cells += [format_metric(o, row[o]) for o in objectives]
        table.add_row(*cells)
    console.print(table)
    _print_paths(console, result)


def _print_paths(console: Console, result: Any) -> None:
    for key in ("pareto_png", "pareto_csv", "results", "store"):
        if key in result.paths:
            # One line whatever the path's length (a path wrapped inside cannot be copied whole).
            console.print(f"{key.replace('_', ' ')}: {result.paths[key]}", soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m recsim.cli_explore SPEC --out DIR ...``."""
    sweep.main(args=argv if argv is not None else sys.argv[1:], prog_name="recsim sweep")


if __name__ == "__main__":  # pragma: no cover
    main()
