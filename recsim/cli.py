"""The ``recsim`` command line: parse arguments, call ``recsim.api``, print. Nothing else.

A user mistake (any ``RecsimError``) prints one line, ``recsim: error: <file:line: key: problem>``,
on stderr and exits with code 2; a traceback means a bug in recsim.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import yaml
from rich import box
from rich.table import Table
from rich.text import Text

from recsim import __version__, api
from recsim.cli_common import EXIT_USER_ERROR, Console, OutputFile, RecsimGroup
from recsim.cost.provenance import device_defaults
from recsim.engine import DEFAULT_STEPS
from recsim.engine.replay_fields import replay_fields_help
from recsim.errors import ConfigError, NoPlanError, RecsimError
from recsim.graph.runtime import RUNTIMES
from recsim.hardware.devices import Device
from recsim.hardware.library import SCHEMAS, HardwareLibrary
from recsim.hardware.schema import document_schema
from recsim.planner.types import COMM_DTYPES
from recsim.units import Dimension, format_quantity

if TYPE_CHECKING:
    from recsim.engine.replay import ReplayResult
    from recsim.graph.ir import ExecutionGraph
    from recsim.metrics.resources import ResourceUse
    from recsim.planner.stats import PlanStats

F = TypeVar("F", bound=Callable[..., Any])


def system_options(func: F) -> F:
    """``--set PATH=VALUE`` (repeatable) and ``--nodes N`` on a command that takes a system."""
    func = click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="PATH=VALUE",
        help="Override a dotted path of the resolved config, e.g. cluster.nodes=8 or "
        "node.accelerators.device.hbm.bandwidth='2 TB/s'. Repeatable.",
    )(func)
    func = click.option(
        "--nodes", type=click.IntRange(min=1), default=None, help="Number of nodes (= --set cluster.nodes=N)."
    )(func)
    return func


def _system_args(
    ctx: click.Context, nodes: int | None, overrides: Sequence[str]
) -> tuple[int | None, list[str]]:
    """Merge the group-level (global) --nodes/--set with the command's own."""
    obj = ctx.find_root().obj or {}
    merged = [*obj.get("overrides", ()), *overrides]
    before = obj.get("nodes")
    if nodes is not None and before is not None and nodes != before:
        # ``recsim --nodes 2 run --nodes 4`` ran 4 nodes without a word (a tester's find).
        raise ConfigError(
            f"--nodes {before} (before the command) and --nodes {nodes} both set cluster.nodes; "
            "give one of them"
        )
    return (nodes if nodes is not None else before), merged


@click.group(cls=RecsimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="recsim")
@system_options
@click.pass_context
def cli(ctx: click.Context, nodes: int | None, overrides: tuple[str, ...]) -> None:
    """recsim: simulate and explore DLRM training and inference systems."""
    ctx.obj = {"nodes": nodes, "overrides": overrides}


@cli.group(cls=RecsimGroup)
def hw() -> None:
    """The hardware library: list, show, validate, schema."""


def _lib() -> HardwareLibrary:
    return HardwareLibrary()


@hw.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def hw_list(as_json: bool) -> None:
    """List the shipped (and $RECSIM_HARDWARE_PATH) systems and devices."""
    lib = _lib()
    rows: list[dict[str, str]] = []
    for name in lib.names("systems"):
        rows.append(_list_row(lib, "systems", name))
    for name in lib.names("devices"):
        rows.append(_list_row(lib, "devices", name))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        table = Table(title="recsim hardware library", show_lines=False)
        for col in ("kind", "name", "description"):
            table.add_column(col, overflow="fold")
        for row in sorted(rows, key=lambda r: (r["kind"] != "system", r["kind"], r["name"])):
            shown = (
                Text.assemble(("does not load:", "red"), " ", row["error"])
                if "error" in row
                else row["description"]
            )
            table.add_row(row["kind"], row["name"], shown)
        Console().print(table)
    broken = [row["name"] for row in rows if "error" in row]
    if broken:
        click.echo(
            f"recsim: warning: {len(broken)} hardware file(s) do not load: {', '.join(broken)}", err=True
        )


def _list_row(lib: HardwareLibrary, section: str, name: str) -> dict[str, str]:
    """A library file's row; one that is not YAML is a row with its ``error`` (a tester's syntax
    error in one file under $RECSIM_HARDWARE_PATH made ``hw list`` list nothing), as in ``workload
    list``."""
    from recsim.config.yamlio import load_yaml_file

    guess = "system" if section == "systems" else "device"
    try:
        data = load_yaml_file(lib.index[section][name]).data
    except ConfigError as exc:
        return {"kind": guess, "name": name, "description": "", "error": str(exc)}
    kind = str(data.get("kind", "system" if section == "systems" else "?"))
    return {"kind": kind, "name": name, "description": str(data.get("description", "")).strip()}


@hw.command("show")
@click.argument("name")
@click.option("--resolved", is_flag=True, help="Print the resolved config (extends merged, devices inlined).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON (SI units; with --resolved, the config as its files write it: '80 GB').",
)
@system_options
@click.pass_context
def hw_show(
    ctx: click.Context,
    name: str,
    resolved: bool,
    as_json: bool,
    nodes: int | None,
    overrides: tuple[str, ...],
) -> None:
    """Show a system's derived figures (or a device's spec); NAME is a library name or a path."""
    lib = _lib()
    kind = lib.kind_of(name)
    nodes, sets = _system_args(ctx, nodes, overrides)
    if kind != "system":
        _refuse_system_options(nodes, sets)
        doc = lib.load(kind, name)
        if resolved or as_json:
            _print_data(doc.tree.data if resolved else doc.spec.model_dump(mode="json"), as_json)
        else:
            _print_device(doc.spec)
        return
    doc = lib.load("system", name, api.system_overrides(nodes, sets))
    system = doc.spec
    if resolved:
        # The resolved document, as a device's --resolved prints it (the summary JSON had carried
        # it under a last "resolved" key, which a tester read as --resolved ignored).
        _print_data(doc.tree.data, as_json)
        return
    summary = api.hardware_summary(system)
    if as_json:
        # A derived total past a float's range is null: strict JSON has no Infinity.
        clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in summary.items()}
        click.echo(json.dumps(clean, indent=2, default=str))
        return
    _print_summary(summary)


def _refuse_system_options(nodes: int | None, sets: Sequence[str]) -> None:
    """``hw show`` and ``hw validate`` of a device: ``--nodes`` and ``--set`` edit a system."""
    if nodes is not None or sets:
        raise click.UsageError("--nodes and --set apply to systems, not devices")


# Field-name unit suffixes (DESIGN: SI units, the unit in the name), longest first.
_SUFFIXES: tuple[tuple[str, Dimension], ...] = (
    ("_bytes_per_s", Dimension.BYTES_PER_S),
    ("_flop_per_s", Dimension.FLOP_PER_S),
    ("_per_bit_j", Dimension.JOULES_PER_BIT),
    ("_bytes", Dimension.BYTES),
    ("_iops", Dimension.IO_PER_S),
    ("_hz", Dimension.HERTZ),
    ("_j", Dimension.JOULES),
    ("_w", Dimension.WATTS),
    ("_s", Dimension.SECONDS),
)


def _unit(key: str) -> tuple[str, Dimension] | None:
    """The unit suffix in ``key`` (at the end, or before ``_per_<thing>`` in summary keys)."""
    for suffix, dim in _SUFFIXES:
        if key.endswith(suffix) or f"{suffix}_per_" in key or f"{suffix}_total" in key:
            return suffix, dim
    return None


def _label(key: str) -> str:
    """``hbm_capacity_bytes_per_accelerator`` -> ``hbm capacity per accelerator`` (unit in the value)."""
    found = _unit(key)
    if found is not None:
        key = key.replace(found[0], "", 1)
    return key.replace("_", " ")


def _human(key: str, value: Any) -> str:
    found = _unit(key)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # a derived total past a float's range (huge values in the YAML)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and found is not None:
        dim = found[1]
        # Memory sizes are binary in practice (an "80 GB" GPU has 80 GiB); networks count bits.
        binary = dim is Dimension.BYTES and any(
            w in key for w in ("capacity", "l2", "llc", "sram", "cache", "page")
        )
        bits = dim is Dimension.BYTES_PER_S and any(w in key for w in ("scale_out", "port"))
        shown = format_quantity(float(value), dim, binary=binary, bits=bits)
        if dim is Dimension.FLOP_PER_S and key.startswith("int"):
            shown = shown.replace("FLOP/s", "OP/s")  # integer operations, as the YAML writes them
        return shown
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)


def _figures(title: str) -> Table:
    """A two-column (name, value) table without a header: how every ``show`` command prints."""
    table = Table(title=title, show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", overflow="fold")
    return table


def _print_summary(summary: dict[str, Any]) -> None:
    table = _figures(f"{summary['name']}: {summary['description']}")
    for key, value in summary.items():
        if key in ("name", "description"):
            continue
        table.add_row(_label(key), _human(key, value))
    Console().print(table)


def _print_device(device: Device) -> None:
    table = _figures(f"{device.kind} {device.name}: {device.description.strip()}")

    def rows(prefix: str, data: dict[str, Any]) -> None:
        for key, value in data.items():
            if key in ("kind", "name", "description") and not prefix:
                continue
            if isinstance(value, dict) and "kind" in value and "name" in value:
                table.add_row(prefix + _label(key), f"{value['kind']} {value['name']}")
            elif isinstance(value, dict):
                rows(f"{prefix}{_label(key)}.", value)
            elif value is not None:
                table.add_row(prefix + _label(key), _human(key, value))

    rows("", device.model_dump(mode="python"))
    # A calibration the device lacks is costed with a default: say which, not nothing.
    for label, value in device_defaults(device):
        table.add_row(label, value)
    Console().print(table)


def _print_data(data: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, width=100), nl=False)


@hw.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@system_options
@click.pass_context
def hw_validate(
    ctx: click.Context, paths: tuple[Path, ...], nodes: int | None, overrides: tuple[str, ...]
) -> None:
    """Check hardware YAML files; one line per file, exit 2 if any is invalid."""
    lib = _lib()
    nodes, sets = _system_args(ctx, nodes, overrides)
    texts = [str(p) if "/" in str(p) or str(p).endswith((".yaml", ".yml")) else f"./{p}" for p in paths]
    if nodes is not None or sets:
        # Refused before any file's line, as ``hw show`` refuses them: a device's checks had run
        # without them and said "ok" (a tester's find). A file that does not load is its own line.
        for text in texts:
            with contextlib.suppress(RecsimError):
                if lib.kind_of(text) != "system":
                    _refuse_system_options(nodes, sets)
    failed = 0
    for path, text in zip(paths, texts, strict=True):
        try:
            kind = lib.kind_of(text)
            extra = api.system_overrides(nodes, sets) if kind == "system" else []
            doc = lib.load(kind, text, extra)
            if kind == "system":
                api.system_topology(doc.spec)  # wiring errors (too few switch ports) count too
            click.echo(f"ok: {path} ({kind} {doc.spec.name}, hash {doc.hash})")
            stem = Path(path).stem
            if doc.spec.name != stem:
                # A copied file that kept its original's name: a library indexes files by their
                # file name, results carry ``name`` (a tester's results named a system that
                # `--system` then refused).
                click.echo(
                    f"recsim: warning: {path}: name {doc.spec.name!r} is not the file's name {stem!r}: "
                    f"a library finds it as {stem!r}, and its results say {doc.spec.name!r}",
                    err=True,
                )
        except RecsimError as exc:
            failed += 1
            click.echo(f"recsim: error: {exc}", err=True)
    if failed:
        ctx.exit(EXIT_USER_ERROR)


@hw.command("schema")
@click.option(
    "--kind",
    type=click.Choice(sorted(SCHEMAS)),
    default=None,
    help="Schema of one document kind (default: any hardware document, chosen by 'kind').",
)
def hw_schema(kind: str | None) -> None:
    """Print the JSON Schema of hardware YAML documents (for editor completion and checks)."""
    click.echo(json.dumps(document_schema(kind), indent=2))


# ---------------------------------------------------------------------------------- workloads


@cli.group(cls=RecsimGroup)
def workload() -> None:
    """The workload library: list, show."""


@workload.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workload_list(as_json: bool) -> None:
    """List the shipped (and $RECSIM_WORKLOAD_PATH) workloads."""
    rows = api.workload_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="recsim workloads")
    for col in ("name", "tables", "parameters", "lookups/sample", "description"):
        table.add_column(col, overflow="fold")
    for row in rows:
        if "error" in row:
            table.add_row(
                row["name"], "?", "?", "?", Text.assemble(("does not load:", "red"), " ", row["error"])
            )
            continue
        table.add_row(
            row["name"],
            str(row["num_tables"]),
            f"{row['parameters']:.4g}",
            f"{row['lookups_per_sample']:g}",
            row["description"],
        )
    Console().print(table)
    broken = [row["name"] for row in rows if "error" in row]
    if broken:
        click.echo(f"recsim: warning: {len(broken)} workload(s) do not load: {', '.join(broken)}", err=True)


@workload.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (SI units).")
@click.option("--tables", "show_tables", is_flag=True, help="Also list every table.")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override a dotted path.")
def workload_show(name: str, as_json: bool, show_tables: bool, overrides: tuple[str, ...]) -> None:
    """Show a workload's derived figures; NAME is a library name or a path."""
    spec = api.load_workload(name, overrides=overrides)
    summary = spec.summary()
    if show_tables or as_json:
        summary["tables"] = (
            [
                {
                    "name": t.name,
                    "rows": t.rows,
                    "dim": spec.table_dim(t),
                    "dtype": spec.table_dtype(t),
                    "pooling": spec.table_lookups(t),
                    "access": spec.table_access(t).model_dump(),
                }
                for t in spec.tables
            ]
            if show_tables or len(spec.tables) <= 64
            else f"{len(spec.tables)} tables (use --tables)"
        )
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    table = _figures(f"{spec.name}: {spec.description}")
    for key, value in summary.items():
        if key in ("name", "description", "tables"):
            continue
        table.add_row(key.replace("_", " "), _workload_value(key, value))
    Console().print(table)
    if show_tables:
        tables = Table(title="tables")
        for col in ("name", "rows", "dim", "dtype", "pooling", "access"):
            tables.add_column(col)
        for row in summary["tables"]:
            access = row["access"]
            tables.add_row(
                row["name"],
                str(row["rows"]),
                str(row["dim"]),
                row["dtype"],
                f"{row['pooling']:g}",
                " ".join(f"{k}={v}" for k, v in access.items()),
            )
        Console().print(tables)


def _workload_value(key: str, value: Any) -> str:
    if key.endswith("_bytes") or (key.endswith("_per_sample") and "bytes" in key):
        return format_quantity(float(value), Dimension.BYTES, binary=key == "embedding_bytes")
    if "flops" in key:
        return format_quantity(float(value), Dimension.FLOP)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value:,}"
    return str(value)


# ---------------------------------------------------------------------------------- traces


@cli.group(cls=RecsimGroup)
def trace() -> None:
    """Real traces: summarise and convert (PyTorch ET, Kineto, Chakra, native)."""


@trace.command("info")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", default=None, help="Reader to use (default: detect).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (SI units).")
def trace_info(paths: tuple[Path, ...], fmt: str | None, as_json: bool) -> None:
    """Ranks, steps and step times, time by op category, collectives, critical path.

    PATHS: trace files, or folders of them."""
    info = api.trace_info(list(paths), fmt)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    table = _figures(f"trace {_paths_title(paths)}")
    for key, value in info.items():
        # The values carry their units ("77.49 ms"): a key's unit suffix is not part of its label.
        table.add_row(key.removesuffix("_s").replace("_", " "), _trace_value(key, value))
    Console().print(table)


def _paths_title(paths: Sequence[Path], limit: int = 80) -> str:
    """The traces a table is of, in at most about ``limit`` characters: whole names, then how many
    more (the title had been cut at 80 characters mid-name, "…, /work/shared/refere")."""
    names = [str(p) for p in paths]
    shown: list[str] = []
    for name in names:
        if shown and len(", ".join([*shown, name])) > limit:
            break
        shown.append(name)
    rest = len(names) - len(shown)
    return ", ".join(shown) + (f" and {rest} more" if rest else "")


def _shown(key: str, value: Any) -> str:
    """A value with seconds formatted when its key ends in ``_s``, bytes when it is ``bytes`` or
    ends in ``_bytes`` (a collective's: a bare float had read "bytes=19882016.0")."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if key.endswith("_s"):
            return format_quantity(float(value), Dimension.SECONDS)
        if key == "bytes" or key.endswith("_bytes"):
            return format_quantity(float(value), Dimension.BYTES)
    return str(value)


def _trace_value(key: str, value: Any) -> str:
    if isinstance(value, dict):
        # A figure's unit is its own key's (cpu_blocked_s), else the table's (time_by_stream_s).
        return ", ".join(f"{k}: {_shown(k if str(k).endswith('_s') else key, v)}" for k, v in value.items())
    if isinstance(value, list):
        items = [
            ", ".join(f"{k}={_shown(k, v)}" for k, v in item.items()) if isinstance(item, dict) else str(item)
            for item in value[:12]
        ]
        more = f"; ... ({len(value)} in all)" if len(value) > 12 else ""
        return "; ".join(items) + more
    return _shown(key, value)


@trace.command("convert")
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.argument("output", type=OutputFile())
@click.option("--format", "fmt", default=None, help="Reader to use (default: detect).")
@click.option(
    "--to",
    "target",
    type=click.Choice(["native", "chrome"]),
    default=None,
    help="Output format (default: chrome if OUTPUT ends in .trace.json[.gz], else native).",
)
def trace_convert(inputs: tuple[Path, ...], output: Path, fmt: str | None, target: str | None) -> None:
    """Convert traces (one or more files, e.g. one per rank) to recsim's graph or a Chrome trace."""
    if not inputs:
        # Click fills OUTPUT first: a lone argument is the trace the user meant to convert.
        raise click.UsageError(
            f"give the output file after the trace(s): recsim trace convert {output} OUTPUT"
        )
    kind = target or ("chrome" if ".trace.json" in output.name else "native")
    graph = api.convert_trace(list(inputs), output, kind, fmt)
    click.echo(f"wrote {output} ({kind}, {_ranks_held(graph)}, {len(graph)} nodes)", err=True)


def _ranks_held(graph: ExecutionGraph) -> str:
    """The ranks a graph holds, of the job's: ``8 ranks``, ``1 rank``, or ``rank 3 of a job of 8
    ranks`` (``graph.ranks`` is the job's size the trace names; one rank's file of an eight-rank
    job had read as "8 ranks")."""
    present = graph.metadata.get("trace_ranks")
    world = graph.ranks
    if not isinstance(present, list) or sorted(present) == list(range(world)):
        return f"{world} rank{'s' if world != 1 else ''}"
    runs: list[list[int]] = []
    for r in sorted(present):
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    held = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    job = f"{world} rank{'s' if world != 1 else ''}"
    return f"rank{'s' if len(present) != 1 else ''} {held} of a job of {job}"


# ---------------------------------------------------------------------------------- run


@cli.command("run")
@click.option("--system", "system", default="zionex", show_default=True, help="System name or YAML path.")
@click.option(
    "--workload", "workload", default="dlrm-dcnv2", show_default=True, help="Workload name or path."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Global batch size.")
@click.option(
    "--precision", type=click.Choice(["fp32", "tf32", "fp16", "bf16"]), default=None, help="Dense precision."
)
@click.option(
    "--plan",
    "plan",
    default="auto",
    show_default=True,
    help="Sharding strategy (a planner proposer: auto, greedy, table_wise, row_wise, ...; see `recsim plan "
    "--help`) or a saved plan file (plan.json).",
)
@click.option(
    "--fidelity",
    type=click.Choice(["analytic", "des"]),
    default="analytic",
    show_default=True,
    help="analytic: critical path, no contention (fast). des: discrete events, network contention.",
)
@click.option(
    "--comm-dtype",
    type=click.Choice(list(COMM_DTYPES)),
    default=None,
    help=(
        "Wire dtype of pooled embeddings (default: the plan's choice; for a fixed strategy the "
        "runtime's: the dense half precision under fused or cuda_graphs, else fp32)."
    ),
)
@click.option(
    "--runtime",
    type=click.Choice(sorted(RUNTIMES)),
    default=None,
    help="Who issues the kernels (default: the workload's training.runtime, fused): fused (HugeCTR/MLPerf "
    "loops), eager (PyTorch/TorchRec, measured host dispatch), cuda_graphs (PyTorch in CUDA graphs).",
)
@click.option(
    "--comm-interference/--no-comm-interference",
    default=True,
    show_default=True,
    help="Slow the kernels that run beside their rank's collectives, as measured on the A100 trace; "
    "--no-comm-interference lets computation and communication overlap for free (an ablation).",
)
@click.option(
    "--sm-sharing/--no-sm-sharing",
    default=False,
    show_default=True,
    help="Slow the kernels of two compute streams of a GPU while they overlap, as measured on the A100 "
    "trace (HugeCTR's weight-gradient and index-sort streams); off, each stream has the whole GPU. "
    "A what-if: on, it worsened the validation cases.",
)
@click.option(
    "--straggler",
    "stragglers",
    multiple=True,
    metavar="RANK=SPEED",
    help="A straggling accelerator: rank RANK's kernels run at SPEED x nominal (0.5: twice as long). "
    "Repeatable.",
)
@click.option(
    "--slow-nic",
    "slow_nics",
    multiple=True,
    metavar="RANK=SPEED",
    help="A degraded network port: rank RANK's scale-out NICs carry SPEED x their bandwidth (a NIC shared "
    "with other GPUs slows for them too). Repeatable.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=DEFAULT_STEPS,
    show_default=True,
    help="Training steps chained in one simulation; the last is reported (the first starts cold, by "
    "the third the next batch's input overlaps). More to check the reported step is steady.",
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly Result.to_dict() as JSON.")
@click.option("--timeline", type=OutputFile(), default=None, help="Write a Chrome trace of the steps.")
@system_options
@click.pass_context
def run_cmd(
    ctx: click.Context,
    system: str,
    workload: str,
    batch_size: int | None,
    precision: str | None,
    plan: str,
    fidelity: str,
    comm_dtype: str | None,
    runtime: str | None,
    comm_interference: bool,
    sm_sharing: bool,
    stragglers: tuple[str, ...],
    slow_nics: tuple[str, ...],
    steps: int,
    as_json: bool,
    timeline: Path | None,
    nodes: int | None,
    overrides: tuple[str, ...],
) -> None:
    """Simulate a training step of WORKLOAD on SYSTEM (``--set workload.x=..`` edits the workload)."""
    nodes, sets = _system_args(ctx, nodes, overrides)
    speed_factors = _rank_speeds(stragglers, "--straggler")
    nic_speed_factors = _rank_speeds(slow_nics, "--slow-nic")
    if timeline is not None:
        # Before the run, not after it; and never over a file recsim did not write (a plan, a system).
        api.check_recsim_output(timeline, "timeline")
    try:
        # A line on a terminal while it works: a run of thousands of GPUs plans and simulates for
        # minutes (a tester's 16,384-GPU run showed nothing for 4). Nothing when stderr is a file
        # or a pipe, so scripts and --json readers see no difference.
        with _working(f"simulating {workload} on {system} ({fidelity})"):
            sim = api.simulate_run(
                system,
                workload,
                nodes=nodes,
                batch_size=batch_size,
                precision=precision,
                plan=plan,
                fidelity=fidelity,
                overrides=sets,
                comm_dtype=comm_dtype,
                runtime=runtime,
                comm_interference=comm_interference,
                sm_sharing=sm_sharing,
                speed_factors=speed_factors,
                nic_speed_factors=nic_speed_factors,
                steps=steps,
                # A timeline shows every rank; without one, the interchangeable ranks are built once.
                fold_ranks=timeline is None,
            )
    except NoPlanError as exc:
        if not as_json:
            raise
        # No plan fits: --json still prints a Result (status infeasible), as a plan that does
        # not fit the memory check does, so a script reads one shape whatever went wrong.
        click.echo(json.dumps(exc.result.to_dict(), indent=2))
        click.echo(f"recsim: infeasible: {exc}", err=True)
        ctx.exit(EXIT_USER_ERROR)
    result = sim.result
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_result(result)
    if timeline is not None and sim.graph is not None and sim.schedule is not None:
        # After the result is out: a timeline that cannot be written (a full disk) fails the
        # command, but not the simulation's figures with it (a tester lost the JSON to /dev/full).
        from recsim.graph.writers.chrome import write_chrome_trace

        write_chrome_trace(sim.graph, timeline, sim.schedule, sim.topology)
    if result.status != "ok":
        if not as_json:
            click.echo(f"recsim: {result.status}: {result.reason}", err=True)
        ctx.exit(EXIT_USER_ERROR)


def _working(message: str) -> contextlib.AbstractContextManager[object]:
    """A spinner with ``message`` on stderr while the block runs, only on a terminal."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    return Console(stderr=True).status(message)


def _rank_speeds(texts: tuple[str, ...], option: str) -> dict[int, float]:
    """``RANK=SPEED`` texts as ``{rank: speed}``; a ``ConfigError`` naming the option otherwise (the
    engine checks the ranks and speeds against the system)."""
    out: dict[int, float] = {}
    for text in texts:
        rank, sep, speed = text.partition("=")
        try:
            if not sep:
                raise ValueError
            key, value = int(rank), float(speed)
        except ValueError:
            raise ConfigError(f"{option} {text!r}: expected RANK=SPEED, e.g. 3=0.5") from None
        if key in out:
            raise ConfigError(f"{option}: rank {key} is given twice ({out[key]:g} and {value:g})")
        out[key] = value
    return out


def _print_result(result: Any) -> None:
    title = (
        f"{result.workload} on {result.system} ({result.num_accelerators} "
        f"accelerator{'s' if result.num_accelerators != 1 else ''}, {result.fidelity})"
    )
    table = _figures(title)
    table.add_row("status", result.status + (f": {result.reason}" if result.reason else ""))
    table.add_row("plan", result.plan)
    if result.status == "ok":
        table.add_row("throughput", f"{result.throughput_samples_per_s:,.0f} samples/s")
        table.add_row("step time", format_quantity(result.iteration_time_s, Dimension.SECONDS))
        table.add_row("global batch", f"{result.global_batch_size:,}")
        _breakdown_rows(table, result.breakdown_s, result.iteration_time_s)
        _busy_rows(table, result.utilisation)
        _resource_rows(table, result.resources)
    if result.status == "ok" or not result.memory_fits:
        # A plan that does not fit in memory: its peaks, and what fills the fullest rank's HBM.
        _memory_rows(table, result.memory_peak_bytes)
    if result.status == "ok":
        _power_rows(table, result.avg_power_w, result.energy_per_sample_j)
    Console().print(table)
    for note in result.all_notes:
        click.echo(f"note: {note}")


#: How the kinds of a rank's HBM (``MEMORY_HBM_PARTS``) read in the table.
HBM_PART_LABELS = {
    "hbm_tables": "tables (rows, state, caches)",
    "hbm_dense": "dense weights (grads, state)",
    "hbm_activations": "activations",
    "hbm_pooled": "pooled vectors (owner)",
    "hbm_inputs": "inputs (ids, reader buffers)",
}


def _memory_rows(table: Table, peaks: Mapping[str, float]) -> None:
    """The memory peaks: the fullest rank's HBM and what fills it by kind (indented under it), then
    the fullest node's host DRAM and SSDs (``simulate`` takes their peaks so)."""

    def b(value: float) -> str:
        return format_quantity(value, Dimension.BYTES, binary=True)

    for key, value in peaks.items():
        if key in HBM_PART_LABELS:
            continue
        where = "rank" if key == "hbm" else "node"
        table.add_row(f"peak {key} per {where}", b(value))
        if key == "hbm":
            for part, label in HBM_PART_LABELS.items():
                if part in peaks:
                    table.add_row(f"  {label}", b(peaks[part]))


def _breakdown_rows(table: Table, breakdown_s: Mapping[str, float], step_s: float) -> None:
    """The step's critical path by category, under its step time: each category it has, with its
    share of the step (a run's and a replay's table)."""
    for key, value in breakdown_s.items():
        if value > 0:
            share = value / step_s
            table.add_row(
                f"  {key.replace('_', ' ')}", f"{format_quantity(value, Dimension.SECONDS)} ({share:.0%})"
            )


def _busy_rows(table: Table, utilisation: Mapping[str, float]) -> None:
    """Each stream class's busy share of the step (a run's and a replay's table)."""
    for key, value in utilisation.items():
        table.add_row(f"{key} busy", f"{value:.0%}")


def _resource_rows(table: Table, resources: ResourceUse | None) -> None:
    """Each resource class the system has and the figures know: its mean use over the step and its
    busiest device or link (a run's and a replay's table; ``recsim.metrics.resources``)."""
    from recsim.metrics.resources import LABELS

    if resources is None:
        return
    figures = resources.figures
    for key, mean in figures.mean.items():
        peak, where = figures.peak[key], figures.busiest[key]
        table.add_row(f"{LABELS[key]} use", f"{mean:.0%} (busiest {peak:.0%}: {where})")


def _power_rows(table: Table, avg_power_w: float | None, energy_per_sample_j: float | None) -> None:
    """Average power and energy per sample (a run's and a replay's table; n/a where not known: a
    replay without a target system, or of a trace that does not record its batch)."""
    for label, value, dim in (
        ("average power", avg_power_w, Dimension.WATTS),
        ("energy per sample", energy_per_sample_j, Dimension.JOULES),
    ):
        table.add_row(label, "n/a" if value is None else format_quantity(value, dim))


# ---------------------------------------------------------------------------------- plan


class _StrategyOption(click.Option):
    """``--strategy``, whose help lists the registered proposers (imported only when help is shown)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = (
            f"Sharding strategy: {', '.join(api.plan_strategies())}; or a saved plan file (plan.json)."
        )
        return super().get_help_record(ctx)


#: Above this many ranks the human table shows the first 8, the last 4 and the busiest rank.
PLAN_TABLE_ALL_RANKS = 16


@cli.command("plan")
@click.option("--system", "system", default="zionex", show_default=True, help="System name or YAML path.")
@click.option(
    "--workload", "workload", default="dlrm-dcnv2", show_default=True, help="Workload name or path."
)
@click.option(
    "--strategy",
    "strategy",
    cls=_StrategyOption,
    default="auto",
    show_default=True,
    help="Sharding strategy.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Global batch size.")
@click.option(
    "--precision", type=click.Choice(["fp32", "tf32", "fp16", "bf16"]), default=None, help="Dense precision."
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly PlanStats.to_dict() as JSON.")
@click.option(
    "--out",
    type=OutputFile(),
    default=None,
    help="Save the plan (JSON; .gz compresses) for `recsim run --plan FILE`.",
)
@system_options
@click.pass_context
def plan_cmd(
    ctx: click.Context,
    system: str,
    workload: str,
    strategy: str,
    batch_size: int | None,
    precision: str | None,
    as_json: bool,
    out: Path | None,
    nodes: int | None,
    overrides: tuple[str, ...],
) -> None:
    """Shard WORKLOAD's embedding tables over SYSTEM and show where they go and what it costs.

    ``--set planner.x=..`` edits the planner's search space (tiers, embedding_dtypes,
    sharding_types, reserves, ...), ``--set workload.x=..`` the workload, the rest the system.
    """
    nodes, sets = _system_args(ctx, nodes, overrides)
    if out is not None:
        # Before the planning, not after it; and only over a plan of recsim's (a tester found a
        # workload YAML given as both --workload and --out replaced by the plan).
        from recsim.planner.io import is_plan_file

        inputs = [p for p in (system, workload, strategy) if Path(p).is_file()]
        api.check_recsim_output(out, "plan", inputs, own=is_plan_file)
    stats = api.plan(
        system,
        workload,
        strategy=strategy,
        nodes=nodes,
        batch_size=batch_size,
        precision=precision,
        overrides=sets,
    )
    # An infeasible plan is shown but not saved: the command fails, and a failed command leaves no
    # file behind (`recsim run --plan FILE` would only refuse it again).
    feasible = stats.status == "feasible"
    if out is not None and feasible:
        from recsim.planner.io import save_plan

        save_plan(stats.plan, out)
    if as_json:
        click.echo(json.dumps(stats.to_dict(), indent=2))
    else:
        _print_plan(stats)
        if out is not None and feasible:
            click.echo(f"wrote {out}", err=True)
    if not feasible:
        if not as_json:
            not_saved = f" ({out} not written)" if out is not None else ""
            click.echo(f"recsim: {stats.status}: {stats.reason}{not_saved}", err=True)
        ctx.exit(EXIT_USER_ERROR)


def _bytes(value: float, digits: int = 4) -> str:
    return format_quantity(value, Dimension.BYTES, binary=True, digits=digits)


def _seconds(value: float, digits: int = 4) -> str:
    return format_quantity(value, Dimension.SECONDS, digits=digits) if math.isfinite(value) else "n/a"


def _count(value: float) -> str:
    """``4_420_000`` -> ``4.42M`` (three significant digits, k/M/G/T)."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        text = f"{value / factor:.3g}"
        # The suffix by the value as printed (999,600 is "1M", not "1e+03k"), as format_quantity.
        if abs(float(text)) >= 1.0:
            return (f"{value / factor:.0f}" if "e+" in text else text) + suffix
    return f"{value:.3g}"


def _print_plan(stats: PlanStats) -> None:
    title = (
        f"plan of {stats.workload} on {stats.system} ({stats.world_size} ranks, "
        f"{stats.num_nodes} node{'s' if stats.num_nodes != 1 else ''} x {stats.ranks_per_node})"
    )
    table = _figures(title)
    table.add_row("strategy", stats.plan.strategy)
    table.add_row("status", stats.status + (f": {stats.reason}" if stats.reason else ""))
    # The planner's score: the busiest rank's embedding lookups and communication, no dense
    # compute (a tester read it as the step time); `recsim run --plan` simulates the step.
    table.add_row(
        "embedding + comm estimate", f"{_seconds(stats.est_makespan_s)} on the busiest rank (not a step time)"
    )
    table.add_row("imbalance (max/mean)", f"time {stats.time_imbalance:.3g}, HBM {stats.hbm_imbalance:.3g}")
    table.add_row("all-to-all per step", f"{_bytes(stats.a2a_fwd_bytes_per_step)} forward (as much backward)")
    if stats.reduce_scatter_fwd_bytes_per_step > 0:
        # A row split's partial pools go through a reduce-scatter, not the all-to-all: without this
        # row a row-wise plan read "0 B" of communication beside table-wise's bytes.
        table.add_row(
            "reduce-scatter per step",
            f"{_bytes(stats.reduce_scatter_fwd_bytes_per_step)} forward, the row splits' partial pools "
            "(all-gathered as much backward)",
        )
    if stats.input_a2a_bytes_per_step > 0:
        # The ids the owners look up travel too, in their own all-to-all (multi-hot ids can outweigh
        # the pooled vectors; column blocks each take all of a table's ids).
        table.add_row(
            "input all-to-all per step",
            f"{_bytes(stats.input_a2a_bytes_per_step)}, the next batch's ids and lengths to their "
            "shards' owners",
        )
    if stats.dp_all_reduce_bytes_per_step > 0:
        # Replicated tables send no pooled vectors: their gradients are all-reduced whole instead.
        busiest = max(r.dp_all_reduce_bytes for r in stats.ranks)
        table.add_row(
            "data-parallel all-reduce",
            f"{_bytes(busiest)} a rank per step, the replicated tables' gradients "
            f"({_bytes(stats.dp_all_reduce_bytes_per_step)} over all ranks)",
        )
    table.add_row("lookups per step", f"{stats.lookups_per_step:,.0f}")
    share = stats.slow_lookups_per_step / stats.lookups_per_step if stats.lookups_per_step else 0.0
    table.add_row("slow-memory accesses", f"{stats.slow_lookups_per_step:,.0f} per step ({share:.1%})")
    table.add_row("parameters placed", f"{stats.parameters_placed:.4g}")
    used = [f"{tier} {_bytes(b)}" for tier, b in stats.bytes_by_tier.items() if b > 0]
    table.add_row("bytes by tier", ", ".join(used) or "-")
    dtypes = [f"{d} {_bytes(b)}" for d, b in stats.bytes_by_dtype.items() if b > 0]
    table.add_row("bytes by dtype", ", ".join(dtypes) or "-")
    kinds = [f"{k} {n}" for k, n in stats.shards_by_sharding.items() if n > 0]
    table.add_row("shards by sharding", ", ".join(kinds) or "-")
    table.add_row(
        "capacity",
        f"HBM {_bytes(stats.hbm_capacity_bytes_per_rank)} per rank, host DRAM "
        f"{_bytes(stats.ddr_capacity_bytes_per_node)} and SSD {_bytes(stats.ssd_capacity_bytes_per_node)} "
        "per node",
    )
    table.add_row(
        "fits",
        f"{'yes' if stats.fits else 'no'} ({'within' if stats.fits_within_reserve else 'not within'} the "
        f"planner's reserves: HBM {stats.hbm_reserve:.0%}, DRAM {stats.ddr_reserve:.0%})",
    )
    if stats.ranks:
        # What fills the fullest rank's HBM (the first of them, as the fit check names it).
        full = max(stats.ranks, key=lambda r: (r.hbm_bytes, -r.rank))
        table.add_row(
            "fullest rank's HBM",
            f"rank {full.rank}: {_bytes(full.hbm_bytes)} = tables {_bytes(full.hbm_tables_bytes)} + dense "
            f"weights {_bytes(full.hbm_dense_bytes)} + activations {_bytes(full.hbm_activations_bytes)} + "
            f"pooled vectors {_bytes(full.hbm_pooled_bytes)} + inputs {_bytes(full.hbm_inputs_bytes)}",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))  # piped: room for the rank table
    console.print(table)

    ranks = list(stats.ranks)
    shown = ranks
    if len(ranks) > PLAN_TABLE_ALL_RANKS:
        busiest = max(ranks, key=lambda r: (r.est_total_s, -r.rank))
        # And the fullest, whose HBM the summary above breaks down (it named a rank not listed).
        fullest = max(ranks, key=lambda r: (r.hbm_bytes, -r.rank))
        keep = {r.rank for r in ranks[:8]} | {r.rank for r in ranks[-4:]} | {busiest.rank, fullest.rank}
        shown = [r for r in ranks if r.rank in keep]
    rows = Table(
        title=(
            "per rank, per step (pooled: what its pooled vectors take of its HBM; DDR, SSD: the "
            "node's bytes / ranks per node; times estimated)"
        ),
        box=box.SIMPLE_HEAD,
    )
    for col in ("rank", "node", "HBM", "pooled", "DDR", "SSD", "shards", "lookups", "slow"):
        rows.add_column(col, justify="right", no_wrap=True)
    for col in ("fwd", "bwd", "comm", "total"):
        rows.add_column(col, justify="right", no_wrap=True)
    previous = -1
    for r in shown:
        if r.rank != previous + 1:
            rows.add_row("...", *[""] * 12)
        previous = r.rank
        rows.add_row(
            str(r.rank),
            str(r.node),
            _bytes(r.hbm_bytes, 3),
            _bytes(r.hbm_pooled_bytes, 3),
            _bytes(r.ddr_bytes, 3),
            _bytes(r.ssd_bytes, 3),
            str(r.shards),
            _count(r.lookups_per_step),
            _count(r.slow_lookups_per_step),
            _seconds(r.est_fwd_compute_s, 3),
            _seconds(r.est_bwd_compute_s, 3),
            _seconds(r.est_comm_s, 3),
            _seconds(r.est_total_s, 3),
        )
    # Its cells do not wrap (a figure folded inside its digits misreads), so a console narrower
    # than the table, an 80-column terminal's, cut every figure to "…" (a tester's DGX H100 plan
    # read "40.4…" for each rank's HBM). Printed whole: a terminal wraps the lines.
    console.print_unbroken(rows)
    if len(shown) < len(ranks):
        click.echo(f"... {len(ranks) - len(shown)} more ranks (--json lists every rank)")


# ---------------------------------------------------------------------------------- replay / validate


@cli.command("replay", epilog=replay_fields_help())
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--system", "system", default=None, help="Target system for --re-estimate (name or path).")
@click.option(
    "--recorded-on",
    default=None,
    help=(
        "Accelerator the trace ran on, for --re-estimate (default: the GPU the trace names in its "
        f"deviceProperties, else {api.RECORDED_ON})."
    ),
)
@click.option(
    "--recorded-system",
    default=None,
    metavar="NAME",
    help=(
        "Node the trace was recorded on (a library system or a file), for --re-estimate: its copy "
        "rates are those the recorded copies ran at. It must hold the recorded accelerator "
        "(--recorded-on, else the trace's GPU; a trace that names none is read as its GPU). "
        "Default: the target where it holds that GPU, else the first library system by name that "
        "does (a trace names its GPU, not its node)."
    ),
)
@click.option(
    "--keep-durations/--re-estimate",
    "keep",
    default=None,
    help="Recorded durations, or re-cost on --system (default: --re-estimate with --system, else keep).",
)
@click.option("--format", "fmt", default=None, help="Reader to use (default: detect).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--timeline",
    type=OutputFile(),
    default=None,
    help="Write a Chrome trace of the replayed schedule (keep: the recorded durations rescheduled; "
    "re-estimate: the predicted schedule), as run --timeline does.",
)
@system_options
@click.pass_context
def replay_cmd(
    ctx: click.Context,
    paths: tuple[Path, ...],
    system: str | None,
    recorded_on: str | None,
    recorded_system: str | None,
    keep: bool | None,
    fmt: str | None,
    as_json: bool,
    timeline: Path | None,
    nodes: int | None,
    overrides: tuple[str, ...],
) -> None:
    """Predicted step time of a real trace, as recorded or re-estimated on another system.

    PATHS: trace files (one per rank; an execution trace with its Kineto trace for a join), or
    folders of them."""
    nodes, sets = _system_args(ctx, nodes, overrides)
    if timeline is not None:
        # Before the replay; never over one of the traces, nor a file recsim did not write.
        api.check_recsim_output(timeline, "timeline", paths)
    result = api.replay(
        list(paths),
        system=system,
        recorded_on=recorded_on,
        recorded_system=recorded_system,
        keep=keep,
        fmt=fmt,
        nodes=nodes,
        overrides=sets,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_replay(result)
    if timeline is not None:
        # After the figures are out, as run's: a timeline that cannot be written fails the
        # command, not the figures with it.
        result.write_timeline(timeline)


def _print_replay(result: ReplayResult) -> None:
    """A replay's figures as a table, then its notes."""
    table = _figures(f"replay ({result.mode})")
    table.add_row("mode", result.mode)
    table.add_row("steps", str(result.steps))
    recorded = result.recorded_step_s
    table.add_row(
        "recorded step", format_quantity(recorded, Dimension.SECONDS) if recorded is not None else "n/a"
    )
    table.add_row("predicted step", format_quantity(result.predicted_step_s, Dimension.SECONDS))
    # The predicted step's critical path, as a run's table shows its step's.
    _breakdown_rows(table, result.breakdown_s, result.predicted_step_s)
    table.add_row("predicted total", format_quantity(result.predicted_total_s, Dimension.SECONDS))
    # Re-estimated on other hardware, the difference is the what-if, not an error.
    error = result.error
    table.add_row(
        "error vs recorded" if result.mode == "keep" else "vs recorded",
        f"{error:+.1%}" if error is not None else "n/a",
    )
    _busy_rows(table, result.utilisation)
    _resource_rows(table, result.resources)
    _power_rows(table, result.avg_power_w, result.energy_per_sample_j)
    if result.energy_per_step_j is not None:
        table.add_row("energy per step", format_quantity(result.energy_per_step_j, Dimension.JOULES))
    Console().print(table)
    for note in result.all_notes:
        click.echo(f"note: {note}")


@cli.command("validate")
@click.argument("ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--fidelity",
    type=click.Choice(["analytic", "des"]),
    default="analytic",
    show_default=True,
    help="Engine of the end-to-end cases: analytic (the bands are set for it) or des (collectives "
    "that overlap share links, kernels HBM: a comparison, not the reference).",
)
@click.pass_context
def validate_cmd(ctx: click.Context, ids: tuple[str, ...], as_json: bool, fidelity: str) -> None:
    """Every calibration and reference case: predicted vs measured, error and band (exit 1 if out)."""
    results = api.validate(list(ids) or None, fidelity=fidelity)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        # The engine is named where it ran: the end-to-end figures depend on it, a fit's do not.
        engine = f"end-to-end cases on the {fidelity} engine"
        on_engine = any(r.fidelity is not None for r in results)
        console = Console()
        plus_minus = console.glyph("±", "+/-")
        table = Table(title="recsim validate", caption=engine if on_engine else None)
        for col in ("case", "predicted", "measured", "error", "band", "status"):
            table.add_column(col, overflow="fold")
        for r in results:
            predicted = f"{r.predicted:,.0f}" if r.predicted is not None else "-"
            # A fit has no one measured figure: its figure is the error over its held-out points.
            measured = f"({r.unit})" if r.measured is None else f"{r.measured:,.0f} {r.unit}"
            if r.error is None:
                error = r.note[:60]
            else:
                error = f"{r.error:.1%}" if r.kind == "fit" else f"{r.error:+.1%}"
            table.add_row(r.id, predicted, measured, error, f"{plus_minus}{r.band:.0%}", r.status)
        console.print(table)
    if any(r.status != "pass" for r in results):
        ctx.exit(1)


# Exploration commands live in their own modules (they import nothing from here).
from recsim.cli_explore import sweep  # noqa: E402
from recsim.cli_results import golden, results  # noqa: E402

cli.add_command(sweep)
cli.add_command(results)
cli.add_command(golden)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="recsim")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
