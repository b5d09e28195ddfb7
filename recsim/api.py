"""The library API that the CLI and notebooks call.

Everything the command line can do is a function here taking plain arguments and returning values
(specs, dicts), so a notebook gets exactly what ``recsim ... --json`` prints.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from recsim.config.hashing import config_hash
from recsim.config.loader import Override
from recsim.cost.memo import CostMemo
from recsim.cost.platform import platform_summary
from recsim.cost.provenance import calibration_defaults
from recsim.engine import DEFAULT_STEPS, ENGINES, MAX_STEPS
from recsim.errors import ConfigError, InfeasibleError, NoPlanError, RuntimeRefusal, TraceError, first_few
from recsim.graph.ir import ExecutionGraph, Transfer
from recsim.graph.native import write_graph
from recsim.graph.readers import read_trace_as as _read_trace_as
from recsim.graph.writers.chrome import write_chrome_trace
from recsim.hardware.devices import Accelerator
from recsim.hardware.library import HardwareLibrary
from recsim.hardware.system import System, capped_rates
from recsim.hardware.topology import Topology, build_topology
from recsim.output import OutputError, check_output_path, same_file
from recsim.paths import user_path
from recsim.planner.config import PlannerConfig, planner_config, stamp_exchange
from recsim.planner.types import COMM_DTYPES, Plan
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import Workload

if TYPE_CHECKING:
    # The simulation stack (cost models, engines) is imported when a simulation runs, so the
    # hardware, workload and trace commands stay quick to start.
    from recsim.engine.replay import ReplayResult
    from recsim.engine.simulate import Simulation, SimulationOptions
    from recsim.explore.spec import SweepSpec
    from recsim.metrics.result import Result
    from recsim.planner.stats import PlanStats
    from recsim.validation import CaseResult


def texts(value: object, name: str) -> list[str]:
    """``value`` as a list of strings: a list or tuple of them, or one string as a list of one (a
    notebook's ``overrides="cluster.nodes=2"`` is one override, not one per character); None is
    none."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{name}: expected a list of strings, got {value!r}")


def system_overrides(nodes: int | None = None, overrides: Sequence[str] = ()) -> list[Override]:
    """``--set`` texts (and ``--nodes``, a shorthand for ``--set cluster.nodes=N``) as overrides."""
    parsed = [Override.parse(text) for text in texts(overrides, "overrides")]
    if nodes is not None:
        # Two answers to one question: refuse rather than let one silently win.
        clash = [o.text for o in parsed if o.path == ("cluster", "nodes")]
        if clash:
            raise ConfigError(
                f"--nodes {nodes} and --set {clash[0]} both set cluster.nodes; give one of them"
            )
        parsed.append(Override(("cluster", "nodes"), nodes, f"cluster.nodes={nodes} (--nodes)"))
    return parsed


def load_system(
    system: str | Path,
    *,
    nodes: int | None = None,
    overrides: Sequence[str] = (),
    library: HardwareLibrary | None = None,
) -> System:
    """A validated system by library name or path, with ``--nodes`` and ``--set`` applied."""
    lib = _library(library, HardwareLibrary, "library")
    return lib.system(system, system_overrides(nodes, overrides))


_L = TypeVar("_L")


def _library(given: object, kind: type[_L], name: str) -> _L:
    """``given`` (a library of ``kind``), or the default one for None."""
    if given is None:
        return kind()
    if not isinstance(given, kind):
        raise ConfigError(f"{name}: expected a {kind.__name__} or None, got {given!r}")
    return given


def system_topology(system: System | str | Path) -> Topology:
    """The cluster graph of ``system`` (a ``System``, or a library name or file to load)."""
    return build_topology(_system(system))


def _system(system: object) -> System:
    """``system`` as a ``System``: loaded from a library name or file if it is one."""
    if isinstance(system, System):
        return system
    if isinstance(system, (str, Path)):
        return load_system(system)
    raise ConfigError(f"system: expected a System, a library name or a file, got {system!r}")


def hardware_summary(system: System | str | Path, topology: Topology | None = None) -> dict[str, Any]:
    """The derived figures of a system, SI units, as ``recsim hw show --json`` prints them."""
    system = _system(system)
    topo = topology or build_topology(system)
    node = system.node
    acc = system.accelerator
    so = system.cluster.scale_out
    nic_group = node.scale_out_nics
    return {
        "name": system.name,
        "description": system.description,
        "num_nodes": system.num_nodes,
        "accelerators_per_node": node.num_accelerators,
        "num_accelerators": system.num_accelerators,
        "accelerator": acc.name if acc else None,
        "hbm_capacity_bytes_per_accelerator": acc.hbm.capacity_bytes if acc else 0.0,
        "hbm_bandwidth_bytes_per_s_per_accelerator": acc.hbm.bandwidth_bytes_per_s if acc else 0.0,
        "hbm_capacity_bytes_total": system.hbm_capacity_bytes_total,
        "cpu": node.cpus.device.name,
        "cpu_sockets_per_node": node.cpus.count,
        "cpu_fp32_flop_per_s_per_node": node.cpus.count * node.cpus.device.fp32_flop_per_s,
        "host_memory": node.host_memory.device.name,
        "host_memory_capacity_bytes_per_node": node.host_memory_capacity_bytes,
        "host_memory_bandwidth_bytes_per_s_per_node": node.host_memory_bandwidth_bytes_per_s,
        "host_memory_capacity_bytes_total": system.host_memory_capacity_bytes_total,
        "nmp": node.host_memory.nmp.name if node.host_memory.nmp else None,
        "ssds_per_node": node.ssds.count if node.ssds else 0,
        "ssd": node.ssds.device.name if node.ssds else None,
        "host_bandwidth_bytes_per_s_per_accelerator": node.host_bandwidth_bytes_per_s_per_accelerator,
        "scale_up_fabric": node.scale_up.fabric if node.scale_up else None,
        "scale_up_bandwidth_bytes_per_s_per_accelerator": node.scale_up_bandwidth_bytes_per_s_per_accelerator,
        "nic": nic_group.device.name if nic_group else None,
        "nics_per_node": node.nic_count(nic_group),
        "scale_out_topology": so.topology if so else None,
        "scale_out_bandwidth_bytes_per_s_per_node": system.scale_out_bandwidth_bytes_per_s_per_node,
        "scale_out_bandwidth_bytes_per_s_per_accelerator": (
            system.scale_out_bandwidth_bytes_per_s_per_accelerator
        ),
        "bisection_bandwidth_bytes_per_s": topo.bisection_bandwidth_bytes_per_s,
        "topology_vertices": topo.summary(),
        # Its supplies and fans (``recsim.cost.platform``): its own, or the generic default.
        "platform": platform_summary(node),
        # Parts that move less than they are rated for, what they plug into being slower: the
        # notes its runs carry (an own node's 800G NIC on 400G switch ports showed 400 Gb/s here
        # without a word why).
        "capped_rates": capped_rates(system),
        # The calibrations its runs read that were not measured on its hardware (DESIGN §6).
        "calibrations_not_measured": calibration_defaults(system),
        "resolved_config_hash": config_hash(system),
    }


def load_workload(
    workload: str | Path, *, overrides: Sequence[str] = (), library: WorkloadLibrary | None = None
) -> Workload:
    """A validated workload by library name or path, with ``--set`` overrides (paths inside the
    workload; a ``workload.`` prefix, as the CLI takes them, is dropped, and kept in messages)."""
    lib = _library(library, WorkloadLibrary, "library")
    return lib.workload(workload, [_workload_override(text) for text in texts(overrides, "overrides")])


def _workload_override(text: str) -> Override:
    key = text.strip()
    if not key.startswith("workload."):
        return Override.parse(text)
    return Override.parse(key[len("workload.") :], shown=key)


def workload_rows(library: WorkloadLibrary | None = None) -> list[dict[str, Any]]:
    """One summary row per library workload (``recsim workload list``). A file that does not load
    (one of the user's, under ``$RECSIM_WORKLOAD_PATH``) is a row with its ``error`` and no
    figures, so one broken file does not hide the others (``recsim hw list`` lists them all too)."""
    lib = library or WorkloadLibrary()
    rows: list[dict[str, Any]] = []
    for name in lib.names("."):
        try:
            spec = lib.workload(name)
        except ConfigError as exc:
            rows.append({"name": name, "description": "", "error": str(exc)})
            continue
        rows.append(
            {
                "name": name,
                "description": spec.description,
                "num_tables": spec.num_tables,
                "parameters": spec.parameters,
                "lookups_per_sample": spec.lookups_per_sample,
                "forward_flops_per_sample": spec.forward_flops_per_sample,
            }
        )
    return rows


def read_trace(paths: Sequence[str | Path] | str | Path, fmt: str | None = None) -> ExecutionGraph:
    """The execution graph of real trace files (format detected unless ``fmt`` is given), validated.
    ``paths``: a list of files (one per rank, say), or one file."""
    return _read_validated(paths, fmt)[0]


def _read_validated(paths: Sequence[str | Path] | str | Path, fmt: str | None) -> tuple[ExecutionGraph, str]:
    """``read_trace``'s graph and the reader that read it."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not isinstance(paths, (list, tuple)) or not all(isinstance(p, (str, Path)) for p in paths):
        raise TraceError(f"paths: expected a trace file or folder, or a list of them, got {paths!r}")
    files = trace_files(paths)
    graph, reader = _read_trace_as(files, fmt)
    try:
        graph.validate()
    except TraceError as exc:
        # The graph's checks name ranks and collectives; say which files they were read from.
        raise TraceError(f"{first_few(files)}: {exc}") from None
    return graph, reader


#: The files a trace folder is read for, by suffix in any case (Kineto ``.pt.trace.json[.gz]``,
#: PyTorch ET ``.json``, Chakra ``.et[.gz]``); a README, a licence or an archive beside them is not.
TRACE_SUFFIXES = (".json", ".gz", ".et")


def trace_files(paths: Sequence[str | Path]) -> list[Path]:
    """``paths`` with each folder replaced by the trace files in it (``TRACE_SUFFIXES``), by name (a
    profiler writes one file per rank into a folder); hidden files and others are skipped. A folder
    with none is a ``TraceError``. A file named on its own is read whatever its name."""
    out: list[Path] = []
    for given in paths:
        path = user_path(given, "trace", TraceError)
        if path.is_dir():
            files = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in TRACE_SUFFIXES
            )
            if not files:
                kinds = ", ".join(TRACE_SUFFIXES)
                raise TraceError(f"{path}: a folder without trace files ({kinds}, in any case)")
            out.extend(files)
        else:
            out.append(path)
    # One file given twice (or by a folder and by name) would read as two ranks of the same trace.
    seen: dict[Path, Path] = {}
    for path in out:
        try:
            real = path.resolve()
        except OSError:
            real = path
        if real in seen:
            also = f" (also as {seen[real]})" if str(seen[real]) != str(path) else ""
            raise TraceError(f"{path}: given twice{also}; give each rank's file once")
        seen[real] = path
    return out


def trace_info(paths: Sequence[str | Path], fmt: str | None = None) -> dict[str, Any]:
    """``recsim trace info``: ranks, steps, time by category, collectives, critical path."""
    from recsim.graph.summary import trace_info as summarise

    return summarise(*_read_validated(paths, fmt))


def check_recsim_output(
    path: str | Path,
    what: str,
    inputs: Sequence[str | Path] = (),
    *,
    hint: str = "",
    own: Callable[[Path], bool] | None = None,
) -> Path:
    """``path`` for a file recsim writes that may replace only one of its own (or an empty file):
    not one of ``inputs``, nor another existing file. ``own`` tells recsim's files of this kind
    (default: a native graph or a Chrome timeline). A shell glob puts its last file in the output's
    place, and a ``--timeline`` pointed at a plan or a system file would replace it (a tester's
    find); ``OutputError`` says so and keeps the file."""
    out = check_output_path(path, what)
    for source in inputs:
        if same_file(source, out):
            raise OutputError(f"{out}: is also an input; write the {what} to another file")
    # A stream (/dev/stdout, even redirected into a file) is written in place, whatever is there.
    stream = str(out).startswith(("/dev/", "/proc/"))
    if not stream and out.is_file() and out.stat().st_size > 0:
        from recsim.graph.readers import recsim_output

        if not (own or recsim_output)(out):
            raise OutputError(
                f"{out}: exists and is not a {what} recsim wrote (a recording, or another file), so it "
                f"is kept; remove it or write elsewhere{hint}"
            )
    return out


def convert_trace(
    inputs: Sequence[str | Path], output: str | Path, to: str = "native", fmt: str | None = None
) -> ExecutionGraph:
    """Read ``inputs`` and write ``output`` as a native graph or a Chrome trace.

    ``output`` is checked first (``recsim.output.check_output_path``), and may be neither one of the
    inputs nor an existing file recsim did not write (a native graph or Chrome timeline of its own is
    replaced; an empty file too): converting onto a recording would lose it.
    """
    out = check_recsim_output(
        output,
        "conversion",
        inputs,
        hint=" (a glob like traces/* may have put a trace in the output's place)",
    )
    graph = read_trace(inputs, fmt)
    if to == "chrome":
        recorded = graph.metadata.get("source") != "recsim.graph.build"  # a trace, not a built step
        if recorded and graph.nodes and all(n.duration_s is None and n.start_s is None for n in graph.nodes):
            # Every event would sit at 0 with no length (a tester's find): nothing to look at.
            first = Path(inputs[0]) if inputs else out
            raise TraceError(
                f"{first}: records no times (an execution trace without its Kineto profile?): a Chrome "
                "timeline of it would be empty; give the Kineto traces too, or convert to a native graph"
            )
        write_chrome_trace(graph, out)
    else:
        write_graph(graph, out)
    return graph


# ---------------------------------------------------------------------------------- simulation


def _split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """``--set`` texts for the system (an optional ``system.`` prefix removed); for the workload
    (``workload.`` prefix removed); and for the planner (``planner.`` kept: ``PlannerConfig`` errors
    name it)."""
    system_sets, workload_sets, planner_sets = [], [], []
    for text in texts(overrides, "overrides"):
        key = text.strip()
        if key.startswith("workload."):
            workload_sets.append(key)  # load_workload drops the prefix, and names it in errors
        elif key.startswith("planner."):
            planner_sets.append(key)
        elif key.startswith("system."):
            system_sets.append(key[len("system.") :])
        else:
            _check_system_key(key)
            system_sets.append(text)
    return system_sets, workload_sets, planner_sets


#: What a ``--set`` path that is only a prefix should be instead.
_SET_PREFIXES = {
    "workload": "a path goes on into the workload, e.g. workload.tables[0].rows=1000 (another "
    "workload: --workload)",
    "planner": "a path goes on into the planner's settings, e.g. planner.finalists=2",
    "system": "a path goes on into the system, e.g. system.cluster.nodes=2 (another system: --system)",
}


def _check_system_key(text: str) -> None:
    """A ``--set`` with no prefix is the system's: one whose first key is a workload's or the
    planner's says which prefix it needs (a tester's ``training.precision=fp16`` was told the
    system's keys only); a near miss of a prefix (``plannr.``) is named."""
    import difflib

    from recsim.planner.config import PlannerConfig

    path = text.split("=", 1)[0].strip()
    head = path.split(".", 1)[0].split("[", 1)[0]
    if not head or head in System.model_fields:
        return
    if head in _SET_PREFIXES and "." not in path:
        # A tester's "--set workload=null" was asked "did you mean workload.workload=null?".
        raise ConfigError(f"--set {text}: {head!r} alone is no key: {_SET_PREFIXES[head]}")
    if head in Workload.model_fields:
        raise ConfigError(f"--set {text}: {head!r} is a workload key; write workload.{text}")
    if head in PlannerConfig.model_fields:
        raise ConfigError(f"--set {text}: {head!r} is a planner key; write planner.{text}")
    close = difflib.get_close_matches(head, list(_SET_PREFIXES), n=1, cutoff=0.75)
    if close and "." in path:  # "plannr=2" is no near miss of a path into the planner
        rest = text.split(".", 1)[1] if "." in text.split("=", 1)[0] else text
        raise ConfigError(f"--set {text}: unknown key {head!r}; did you mean {close[0]}.{rest}?")


def check_run(
    system: str | Path,
    workload: str | Path,
    *,
    plan: str | Path = "auto",
    nodes: int | None = None,
    batch_size: int | None = None,
    precision: str | None = None,
    overrides: Sequence[str] = (),
) -> tuple[System, Workload]:
    """A ``ConfigError`` if a run's inputs do not resolve, without running it: the system, the
    workload, the ``planner.*`` overrides (``prepare`` leaves those to ``make_plan``) and the plan, a
    strategy name or an existing plan file. Sweeps check their points with it before the first
    runs, golden tests their cases. Returns the resolved system and workload (``prepare``'s), for
    a caller with more to check of them."""
    from recsim.planner.io import is_plan_path

    resolved = prepare(
        system, workload, nodes=nodes, batch_size=batch_size, precision=precision, overrides=overrides
    )
    planner_config(_split_overrides(overrides)[2])
    name = str(plan)
    if is_plan_path(name):
        if not Path(name).expanduser().is_file():
            raise ConfigError(f"no such plan file {name}")
        return resolved
    check_strategy(name)
    return resolved


def _check_strategy_value(strategy: object) -> None:
    """A ``ConfigError`` unless ``strategy`` is a name or path (``None`` was an AttributeError)."""
    if not isinstance(strategy, (str, Path)) or not str(strategy).strip():
        # '' read as the path '.' was "plan : a folder, not a plan file".
        raise ConfigError(f"strategy: expected a strategy name or a plan file path, got {strategy!r}")


def _check_not_folder(name: str) -> None:
    """A ``ConfigError`` where a strategy that is no strategy's name is a folder (``--plan /tmp`` was
    an unknown strategy '/tmp')."""
    try:
        folder = Path(name).expanduser().is_dir()
    except (OSError, ValueError):  # a name too long for a path, or with a NUL byte
        return
    if folder:
        raise ConfigError(
            f"plan {name}: a folder, not a plan file: give a plan file (.json or .json.gz) or a strategy name"
        )


def check_strategy(name: str) -> None:
    """A ``ConfigError`` with a did-you-mean unless ``name`` is a plan strategy (``plan_strategies``,
    or ``table_wise_round_robin``, ``table_wise``'s other name)."""
    _check_strategy_value(name)
    known = plan_strategies()
    if name not in known and name != "table_wise_round_robin":
        _check_not_folder(name)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown plan strategy {name!r}{hint} (available: {', '.join(known)}, or a plan file)"
        )


def plan_strategies() -> list[str]:
    """Names ``--plan`` / ``--strategy`` accept (besides a saved plan file)."""
    from recsim.planner.proposers import registered_proposers

    return registered_proposers()


def check_fidelity(fidelity: object) -> None:
    """``ConfigError`` unless ``fidelity`` names an engine (``recsim.engine.ENGINES``)."""
    if fidelity not in ENGINES:
        close = difflib.get_close_matches(str(fidelity), ENGINES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"fidelity {fidelity!r}: expected one of {', '.join(ENGINES)}{hint}")


def make_plan(
    strategy: str | Path,
    workload: Workload,
    system: System | int,
    *,
    planner: PlannerConfig | Sequence[str] = (),
    costs: CostMemo | None = None,
    fidelity: str = "analytic",
    simulation: SimulationOptions | None = None,
) -> Plan:
    """A sharding plan by strategy name (a registered proposer) or a saved plan file.

    ``system`` may be a world size for the statistics-free strategies and plan files; the
    proposers that estimate costs (greedy, auto, ...) need the ``System``. ``planner`` is a
    ``PlannerConfig`` or ``planner.<key>=<value>`` overrides. ``costs``: a ``CostMemo`` of this
    system and workload for the planner to fill and the caller to reuse (``recsim.cost.memo``).
    ``fidelity``: the run's engine; under DES, ``auto`` re-scores the analytic engine's best
    ``planner.finalists`` with DES (a plan the analytic ranking puts first may be the slower one
    under contention). ``simulation``: the run's ``SimulationOptions``; ``auto`` simulates its
    candidates under their settings that change a step's time (comm_interference, sm_sharing,
    speed_factors, nic_speed_factors, comm_dtype; not steps), so its pick is the best for that run.
    """
    from recsim.planner import plan as simple
    from recsim.planner.limits import limit_violations
    from recsim.planner.plan import plain_plan
    from recsim.planner.proposers import PlanningContext, proposer, registered_proposers

    if not isinstance(workload, Workload):
        raise ConfigError(
            f"workload: expected a Workload (recsim.api.load_workload), got {type(workload).__name__}"
        )
    if isinstance(system, bool) or not isinstance(system, (System, int)):
        raise ConfigError(
            f"system: expected a System (recsim.api.load_system) or a world size, got {system!r}"
        )
    if isinstance(system, int) and system < 1:
        raise ConfigError(f"system: a world size must be a whole number >= 1, got {system}")
    _check_strategy_value(strategy)
    if costs is not None and not isinstance(costs, CostMemo):
        raise ConfigError(f"costs: expected a CostMemo (recsim.cost.memo) or None, got {costs!r}")
    if simulation is not None:
        # Imported only when given: ``recsim plan`` stays clear of the simulation stack.
        from recsim.engine.simulate import SimulationOptions

        if not isinstance(simulation, SimulationOptions):
            raise ConfigError(
                f"simulation: expected SimulationOptions (recsim.engine.simulate) or None, got {simulation!r}"
            )
    name = str(strategy)
    world = system if isinstance(system, int) else system.num_accelerators
    if _names_plan_file(strategy):
        return load_plan_file(strategy, workload, world, system if isinstance(system, System) else None)
    if name == "table_wise_round_robin":
        name = "table_wise"
    elif name not in registered_proposers():
        # The did-you-mean `recsim plan --strategy` gives (`recsim run --plan gredy` listed the
        # strategies without one).
        check_strategy(name)
    # One text is one override, and anything but texts a ConfigError (a notebook's planner=[5] was
    # an AttributeError, planner="planner.finalists=2" one override per character).
    config = planner if isinstance(planner, PlannerConfig) else planner_config(texts(planner, "planner"))
    if isinstance(system, int):
        if name not in simple.PLAIN_STRATEGIES:
            raise ConfigError(f"plan strategy {name!r} needs the system (its costs), not only a world size")
        chosen = plain_plan(name, workload, world, config)
        allowed = set(config.tiers)  # no system: no NMP or SmartSSD tiers to add
    else:
        check_fidelity(fidelity)
        ctx = PlanningContext(system, workload, config, memo=costs, fidelity=fidelity, simulation=simulation)
        chosen = proposer(name).propose(ctx)
        allowed = {tier.split(":", 1)[0] for tier in ctx.estimator.tiers()}
    # The final guard behind every strategy asked for by name: a plan outside the user's limits
    # (planner.sharding_types, tiers, embedding_dtypes, comm_dtypes) is refused, never run as if
    # the limits held (tester's finds: a fixed scheme ran all in HBM with HBM left out of
    # planner.tiers; hier_auto returned data-parallel fp32 tables under sharding_types=[table_wise]
    # and embedding_dtypes=[fp16]). A fixed scheme's fit within the planner's reserves is reported
    # by ``recsim plan`` rather than enforced: asked for by name, it is a what-if.
    broken = limit_violations(chosen, workload, config, allowed)
    if broken:
        how = " (a fixed scheme: every table in HBM, one way)" if proposer(name).fixed else ""
        raise InfeasibleError(
            f"plan {name!r}{how} " + "; ".join(broken) + "; choose a strategy that searches within "
            "the limits (greedy, auto, recshard), a plan file, or widen them"
        )
    return stamp_exchange(config, chosen)


def _names_plan_file(strategy: str | Path) -> bool:
    """Whether ``strategy`` is a saved plan file rather than a strategy's name (a name wins)."""
    from recsim.planner.io import is_plan_path
    from recsim.planner.proposers import registered_proposers

    name = str(strategy)
    return name not in registered_proposers() and name != "table_wise_round_robin" and is_plan_path(strategy)


def plan(
    system: str | Path = "zionex",
    workload: str | Path = "dlrm-dcnv2",
    *,
    strategy: str | Path = "auto",
    nodes: int | None = None,
    batch_size: int | None = None,
    precision: str | None = None,
    overrides: Sequence[str] = (),
) -> PlanStats:
    """``recsim plan``: a sharding plan of ``workload`` on ``system`` and its figures.

    ``strategy`` is a registered proposer (``plan_strategies()``) or a saved plan file; ``overrides``
    as for ``simulate_run`` (``workload.*`` edits the workload, ``planner.*`` the planner's search
    space, the rest the system). Returns ``PlanStats`` (``.plan`` is the plan; ``.to_dict()`` what
    ``--json`` prints). A plan the strategy cannot fit raises ``InfeasibleError``, as does one the
    workload's runtime cannot run (``runtime_refusal``, the check ``recsim run`` makes: ``hybrid_embedding``
    or ``table_wise_mp_bottom`` of multi-hot tables under the fused runtime), the refusal said ahead of
    any memory shortfall (``RuntimeRefusal``); a fixed scheme that places blindly comes back with
    ``status == "infeasible"`` and the shortfall in ``reason``.
    """
    from recsim.planner.io import is_plan_path
    from recsim.planner.proposers import proposer
    from recsim.planner.stats import capacity_shortfall, plan_stats

    _check_strategy_value(strategy)
    if not is_plan_path(strategy):
        check_strategy(str(strategy))
    sys_spec, wl_spec = prepare(
        system, workload, nodes=nodes, batch_size=batch_size, precision=precision, overrides=overrides
    )
    if sys_spec.num_accelerators == 0:
        raise InfeasibleError(f"system {sys_spec.name!r} has no accelerators to shard embeddings over")
    config = planner_config(_split_overrides(overrides)[2])
    try:
        sharding = make_plan(strategy, wl_spec, sys_spec, planner=config)
    except RuntimeRefusal as exc:
        # The runtime's refusal, ahead of any memory check (a proposer's fit or the shortfall).
        raise InfeasibleError(_refusal_reason(str(exc), strategy)) from None
    except InfeasibleError as exc:
        # Say first when no plan can fit at all (the bytes exceed the allowed tiers' capacity).
        # A strategy that plans routed rows alone (the hybrid embedding), which HugeCTR reads with
        # its one-hot reader of the global batch (``capacity_shortfall``).
        named = str(strategy) in plan_strategies()  # not a plan file, nor an alias
        routed = named and proposer(str(strategy)).routes_rows
        short = capacity_shortfall(sys_spec, wl_spec, config, routed_rows=routed)
        if short is None:
            raise
        raise InfeasibleError(f"{short}; {exc}") from None
    # The check ``recsim run`` makes: a plan saved here that the run then refuses (a tester's find:
    # hybrid_embedding and table_wise_mp_bottom of multi-hot tables under the fused runtime).
    reason = runtime_refusal(sharding, wl_spec, strategy)
    if reason is not None:
        raise InfeasibleError(reason)
    return plan_stats(sharding, sys_spec, wl_spec, config=config)


def load_plan_file(
    path: str | Path, workload: Workload, world_size: int, system: System | None = None
) -> Plan:
    """A saved plan (``recsim.planner.io`` format), checked against the system's ranks and
    ``workload``, and each shard's tier against ``system`` when given (a tier the system lacks, or
    one that cannot train, named by its shard: the cost model's own error named neither the file
    nor the key; a tester's find)."""
    from recsim.cost.embedding import tier_model
    from recsim.planner.io import load_plan

    plan = load_plan(path)
    if system is not None:
        for i, shard in enumerate(plan.shards):
            why = tier_model(shard.tier).unavailable(system, training=True)
            if why is not None:
                # A mistake in the file, not a plan that does not fit (an infeasible result would
                # say memory_fits: false; a reviewer's find).
                raise ConfigError(f"{path}: shards[{i}].tier: {why}")
    if plan.world_size != world_size:
        raise ConfigError(
            f"{path}: plan is for {plan.world_size} ranks, the system has {world_size} accelerators"
        )
    try:
        plan.validate(workload)
    except InfeasibleError as exc:
        # A plan file that does not cover the workload's tables, or shards them in a way no
        # scheme does, is a mistake in the file, not a design point that does not fit (a tester
        # found such files stored as infeasible points, memory_fits false).
        raise ConfigError(f"{path}: {exc}") from None
    if system is not None:
        why = plan.node_violation(system.node.num_accelerators)
        if why is not None:
            raise ConfigError(f"{path}: {why} on {system.name}")
    return plan


def prepare(
    system: str | Path,
    workload: str | Path,
    *,
    nodes: int | None = None,
    batch_size: int | None = None,
    precision: str | None = None,
    overrides: Sequence[str] = (),
    runtime: str | None = None,
) -> tuple[System, Workload]:
    """Load and resolve the system and workload of a run (``--set workload.x=..`` goes to the workload;
    ``--set planner.x=..`` is for ``make_plan`` and ignored here; ``runtime`` sets
    ``training.runtime``, see ``recsim.graph.runtime``)."""
    system_sets, workload_sets, _planner_sets = _split_overrides(overrides)
    set_paths = {_workload_override(text).path: text for text in workload_sets}
    for option, key, value, kind in (
        ("batch_size (--batch-size)", "global_batch_size", batch_size, numbers.Integral),
        ("precision (--precision)", "precision", precision, str),
        ("runtime (--runtime)", "runtime", runtime, str),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kind):
            expected = "a whole number" if kind is numbers.Integral else "a name"
            raise ConfigError(f"{option}: expected {expected}, got {value!r}")
        if kind is numbers.Integral:
            value = int(value)  # type: ignore[call-overload]  # a numpy integer from a notebook's loop
        # Two answers to one question: refuse rather than let one silently win (as --nodes does).
        clash = set_paths.get(("training", key))
        if clash is not None:
            raise ConfigError(f"{option} {value} and --set {clash} both set training.{key}; give one of them")
        workload_sets.append(f"training.{key}={value}")
    return load_system(system, nodes=nodes, overrides=system_sets), load_workload(
        workload, overrides=workload_sets
    )


def simulate_run(
    system: str | Path = "zionex",
    workload: str | Path = "dlrm-dcnv2",
    *,
    nodes: int | None = None,
    batch_size: int | None = None,
    precision: str | None = None,
    plan: str | Path = "auto",
    fidelity: str = "analytic",
    overrides: Sequence[str] = (),
    steps: int = DEFAULT_STEPS,
    comm_dtype: str | None = None,
    runtime: str | None = None,
    comm_interference: bool = True,
    sm_sharing: bool = False,
    speed_factors: Mapping[int, float] | None = None,
    nic_speed_factors: Mapping[int, float] | None = None,
    fold_ranks: bool = False,
) -> Simulation:
    """Simulate a training step; the ``Simulation`` keeps the graph and schedule for timelines.

    ``fold_ranks``: an analytic run builds one of the ranks that hold no shard of their own for
    all of them (``SimulationOptions.fold_ranks``: the same result, faster at scale); the graph
    then lacks the others, so it is off here, where the graph is kept for a timeline.

    ``comm_interference=False`` lets computation and communication overlap for free (an ablation of
    ``recsim.cost.interference``); ``sm_sharing=True`` slows the kernels of two compute lanes of a
    GPU that overlap (``recsim.cost.sm_sharing``: measured, off by default). Stragglers:
    ``speed_factors`` ``{rank: speed}`` slows a rank's accelerator (0.5: its kernels take twice as
    long), ``nic_speed_factors`` its scale-out NICs."""
    if comm_dtype is not None and comm_dtype not in COMM_DTYPES:
        raise ConfigError(f"comm_dtype {comm_dtype!r}: expected one of {', '.join(COMM_DTYPES)}")
    check_fidelity(fidelity)
    if not isinstance(comm_interference, bool):
        raise ConfigError(f"comm_interference: expected True or False, got {comm_interference!r}")
    if not isinstance(sm_sharing, bool):
        raise ConfigError(f"sm_sharing: expected True or False, got {sm_sharing!r}")
    if not isinstance(plan, (str, Path)):
        raise ConfigError(f"plan: expected a strategy name or a plan file path, got {plan!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps: expected a whole number >= 1, got {steps!r}")
    if steps > MAX_STEPS:
        raise ConfigError(
            f"steps (--steps): {steps:,} chained steps: recsim chains at most {MAX_STEPS:,} (the "
            "reported step is steady by the third, and the graph grows with each step)"
        )
    if not isinstance(fold_ranks, bool):
        raise ConfigError(f"fold_ranks: expected True or False, got {fold_ranks!r}")
    sys_spec, wl_spec = prepare(
        system,
        workload,
        nodes=nodes,
        batch_size=batch_size,
        precision=precision,
        overrides=overrides,
        runtime=runtime,
    )
    from recsim.engine.simulate import SimulationOptions, simulate_training

    # The planner's candidate simulations and this run share one memo of costs (same results).
    costs = CostMemo(sys_spec, wl_spec)
    options = SimulationOptions(
        fidelity=fidelity,
        steps=steps,
        comm_dtype=comm_dtype,
        costs=costs,
        comm_interference=comm_interference,
        sm_sharing=sm_sharing,
        speed_factors=_factors(speed_factors, "speed_factors"),
        nic_speed_factors=_factors(nic_speed_factors, "nic_speed_factors"),
        fold_ranks=fold_ranks,
    )
    if sys_spec.num_accelerators == 0:
        # An infeasible result, as for a plan that does not fit: ``--json`` prints one shape.
        reason = (
            f"system {sys_spec.name!r} has no accelerators: `recsim run` simulates GPU training "
            "(CPU inference serving is a later feature)"
        )
        raise NoPlanError(reason, _unplanned(reason, sys_spec, wl_spec, str(plan), options))
    planner_sets = _split_overrides(overrides)[2]
    if planner_sets and _names_plan_file(plan):
        # A plan file fixes every shard's placement: the planner does not run, so its settings
        # change nothing (a tester's planner.tiers=[uvm] ran the file's all-HBM plan without a word).
        keys = [text.split("=", 1)[0].strip() for text in planner_sets]
        warnings.warn(
            f"{', '.join(dict.fromkeys(keys))} ignored: the plan file {plan} fixes the placement, "
            "and planner.* settings apply to a strategy the planner runs (--plan auto, greedy, ...)",
            stacklevel=2,
        )
    try:
        sharding = make_plan(
            plan, wl_spec, sys_spec, planner=planner_sets, costs=costs, fidelity=fidelity, simulation=options
        )
    except RuntimeRefusal as exc:
        # A plan the framework cannot run is refused before its memory is (``runtime_refusal``).
        reason = _refusal_reason(str(exc), plan)
        raise NoPlanError(reason, _unplanned(reason, sys_spec, wl_spec, str(plan), options)) from None
    except InfeasibleError as exc:
        raise NoPlanError(str(exc), _unplanned(str(exc), sys_spec, wl_spec, str(plan), options)) from None
    # A plan the framework cannot run is no result for it (a tester found HugeCTR's hybrid embedding
    # of multi-hot tables at the top of a sweep's front); ``auto`` leaves such plans out too.
    reason = runtime_refusal(sharding, wl_spec, plan)
    if reason is not None:
        raise NoPlanError(reason, _unplanned(reason, sys_spec, wl_spec, str(plan), options))
    sim = simulate_training(sys_spec, wl_spec, sharding, options)
    # What the figures assume that the user may not have asked for: tables stored in another dtype
    # than the workload's (another model), memory the planner's reserves would have kept free.
    from recsim.planner.limits import reserve_note, stored_dtype_note

    said = [stored_dtype_note(sharding, wl_spec)]
    if sim.result.status == "ok":
        said.append(reserve_note(sim.result.memory_peak_bytes, sys_spec, planner_config(planner_sets)))
    notes = tuple(note for note in said if note is not None)
    if not notes:
        return sim
    return dataclasses.replace(sim, result=dataclasses.replace(sim.result, notes=(*sim.result.notes, *notes)))


def runtime_refusal(sharding: Plan, workload: Workload, plan: str | Path) -> str | None:
    """Why the workload's framework (``training.runtime``) cannot run ``sharding``, or None if it
    can: ``recsim run`` refuses such a plan, and ``recsim plan`` must not save one for it."""
    from recsim.graph.runtime import runtime as get_runtime

    refused = get_runtime(workload.training.runtime).refusal(sharding, workload)
    return None if refused is None else _refusal_reason(refused, sharding.strategy or plan)


def _refusal_reason(refused: str, plan: str | Path) -> str:
    """The message of a run or ``recsim plan`` that the runtime refuses (``Runtime.refusal``)."""
    return f"{refused} (plan {str(plan)!r}); choose another plan, or a runtime that runs it"


def _unplanned(reason: str, system: System, workload: Workload, plan: str, options: Any) -> Result:
    """The infeasible ``Result`` of a run no plan fits, with the context a simulated run has.
    ``memory_fits`` is False unless the batch did not divide among the ranks: a planner that
    gets that far refuses only plans that do not fit."""
    from recsim.engine.simulate import run_context
    from recsim.metrics.result import Result
    from recsim.planner.types import Plan

    world = system.num_accelerators
    context = run_context(system, workload, Plan(world, (), strategy=plan), options)
    # With no accelerators nothing fits (memory_fits False), as for a plan no rank can hold.
    divides = world > 0 and workload.training.global_batch_size % world == 0
    fits = world > 0 and not divides
    return Result.failed("infeasible", reason, memory_fits=fits, **context)  # type: ignore[arg-type]


def _factors(value: object, name: str) -> dict[int, float]:
    """A ``{rank: speed}`` mapping of ``simulate_run`` (None: none); its values are checked against
    the system by the engine (``recsim.engine.simulate.check_speed_factors``)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a mapping of rank to speed, e.g. {{3: 0.5}}, got {value!r}")
    return dict(value)


def simulate(system: str | Path = "zionex", workload: str | Path = "dlrm-dcnv2", **kwargs: Any) -> Result:
    """Simulate a training step and return its ``Result`` (keyword arguments as ``simulate_run``;
    the ranks that hold no shard of their own are folded unless ``fold_ranks=False``: only the
    ``Result`` is kept)."""
    kwargs.setdefault("fold_ranks", True)
    return simulate_run(system, workload, **kwargs).result


#: The accelerator a replayed trace ran on, unless told (the A100 trace of ``shared/reference``).
RECORDED_ON = "a100-sxm4-40gb"


def replay(
    paths: Sequence[str | Path],
    *,
    system: str | Path | None = None,
    recorded_on: str | None = None,
    recorded_system: str | Path | None = None,
    keep: bool | None = None,
    fmt: str | None = None,
    nodes: int | None = None,
    overrides: Sequence[str] = (),
) -> ReplayResult:
    """Replay a trace with its recorded durations, or re-estimated on ``system`` (what-if).
    ``keep`` None (the default): re-estimate when a ``system`` is given, else keep, as the CLI.
    ``recorded_system`` (a library name or file) is the node the trace was recorded on, whose copy
    rates its recorded copies are read at (else inferred: ``infer_recorded_system``); it
    must hold the recorded accelerator (``recorded_on``, else the GPU the trace names; a trace
    that names none is read as the node's)."""
    from recsim.engine.replay import recorded_copies, replay_keep, replay_reestimate

    if keep is None:
        keep = system is None
    if not isinstance(keep, bool):
        raise ConfigError(f"keep: expected True (recorded durations) or False (re-estimate), got {keep!r}")
    if keep:
        # Options of the re-estimate would be silently ignored: refuse them instead.
        given = [
            name
            for name, value in (
                ("--system", system),
                ("--recorded-on", recorded_on),
                ("--recorded-system", recorded_system),
                ("--nodes", nodes),
                ("--set", list(overrides) or None),
            )
            if value is not None
        ]
        if given:
            raise ConfigError(
                f"{', '.join(given)}: only for --re-estimate (a replay with the recorded durations "
                "uses no hardware)"
            )
        graph = read_trace(paths, fmt)  # its errors name their file
        with _naming(paths):
            return replay_keep(graph)
    if system is None:
        raise ConfigError("--re-estimate needs --system (the hardware to re-estimate on)")
    target = load_system(system, nodes=nodes, overrides=overrides)
    library = HardwareLibrary()
    graph = read_trace(paths, fmt)
    with _naming(paths):
        found = None if recorded_on else recorded_accelerator(graph, library)
    device = graph.metadata.get("device")
    named = device.get("name") if isinstance(device, dict) else None
    node = _given_node(library, recorded_system, recorded_on, found, named) if recorded_system else None
    # A trace that names no GPU (or one without its compute capability) is read as the given
    # node's rather than the default's: the default only stands in for a GPU nobody named.
    node_gpu = node.accelerator.name if node is not None and node.accelerator is not None else None
    name = recorded_on or found or node_gpu or RECORDED_ON
    try:
        recorded = library.device("accelerator", name)
    except ConfigError as exc:
        # Only a name the user gave can be unknown here: say which option gave it.
        if not recorded_on:
            raise
        raise ConfigError(f"--recorded-on: {exc}") from None
    with _naming(paths):
        copied_in = node or infer_recorded_system(library, target, name)
        result = replay_reestimate(graph, target, recorded, copied_in)  # type: ignore[arg-type]
    # Which GPU the recorded durations are read as: the figures scale from it, and a trace that
    # names none is taken to be the default's (a tester found neither said in the output). A GPU
    # the library lacks (an A30, an H20) is read as its architecture's nearest by memory: the note
    # gives the trace's own name, so a user sees the substitution (a tester's find).
    unknown = named if not found else None
    # The library's name within the trace's ("Tesla V100-SXM2-32GB" holds v100-sxm2-32gb): the
    # trace's own GPU; else a stand-in of its architecture (a reviewer found an exact match called
    # "the nearest memory size").
    exact = found is not None and found in re.sub(r"[\s_]+", "-", str(named).lower())
    source = (
        "--recorded-on"
        if recorded_on
        else f"the accelerator of --recorded-system {recorded_system}, the trace naming "
        + (f"an unknown GPU, {unknown!r}" if unknown else "no GPU")
        if node_gpu is not None and not found
        else f"the trace names {named!r}"
        if exact
        else f"the trace names {named!r}: the library's accelerator of its architecture with the "
        "nearest memory size, --recorded-on to choose another"
        if found
        else f"the trace names an unknown GPU, {unknown!r}, without its compute capability: taken as "
        "the default, --recorded-on to change it"
        if unknown
        else "the trace names no GPU: the default, --recorded-on to change it"
    )
    assert target.accelerator is not None  # replay_reestimate refuses a system without one
    said = f"recorded on {name} ({source}); re-estimated on {target.accelerator.name} ({target.name})"
    node_said = (
        (recorded_system_note(library, target, name, copied_in, given=node is not None),)
        if recorded_copies(graph.nodes)
        else ()
    )
    return dataclasses.replace(result, notes=(said, *node_said, *result.notes))


def _given_node(
    library: HardwareLibrary,
    ref: str | Path,
    recorded_on: str | None,
    found: str | None,
    named: object,
) -> System:
    """The node ``--recorded-system`` names, refused unless it holds the recorded accelerator:
    ``--recorded-on`` where given, else the trace's GPU (``found``). It names the node only, not
    the GPU: a node of another GPU than the trace's is refused, not read as overriding it (that is
    what ``--recorded-on`` is for, and the note then says so). ``named``: the GPU name the trace
    gives."""
    try:
        node = library.system(ref)
    except ConfigError as exc:
        raise ConfigError(f"--recorded-system: {exc}") from None
    held = node.accelerator.name if node.accelerator is not None else None
    if held is None:
        raise ConfigError(
            f"--recorded-system {ref}: {node.name} has no accelerator; expected the node the trace "
            "was recorded on, which holds its GPU"
        )
    if recorded_on and held != recorded_on:
        raise ConfigError(
            f"--recorded-system {ref}: {node.name} holds {held}, not {recorded_on} (--recorded-on); "
            f"expected a node holding {recorded_on}, or --recorded-on {held}"
        )
    if not recorded_on and found and held != found:
        raise ConfigError(
            f"--recorded-system {ref}: {node.name} holds {held}, not {found} (the trace names "
            f"{named!r}); expected a node holding {found}, or --recorded-on {held} to read the trace "
            f"as recorded on {held}"
        )
    return node


def _systems_holding(library: HardwareLibrary, accelerator: str) -> Iterator[System]:
    """The library's systems whose GPU is ``accelerator``, in name order."""
    with _hardware_files():
        names = library.names_of_kind("system")
    for name in names:
        with _hardware_files():
            system = library.system(name)
        if system.accelerator is not None and system.accelerator.name == accelerator:
            yield system


def infer_recorded_system(library: HardwareLibrary, target: System, accelerator: str) -> System | None:
    """The node a trace recorded on ``accelerator`` ran in, whose copy rates its recorded copies
    are read at: ``target`` where it holds that GPU (re-estimating on it keeps them), else the first
    library system in name order that holds it; None where none does. ASSUMPTION: a trace names its
    GPU, not its node: the A100 40GB's is read as p4d-24xlarge's (zion's and zionex's copy rates
    are the same), the A100 80GB's as dgx-a100's, whose two GPUs share each PCIe uplink (12.96 GB/s
    each), where hgx-a100-4gpu gives each GPU its own (25.92 GB/s): a trace from an hgx-a100-4gpu
    has its host copies read as twice as fast as they ran there. ``recorded_system_note`` says
    which node was taken, and names the other nodes of that GPU with other copy rates;
    ``replay(recorded_system=...)`` (``--recorded-system``) names the node instead."""
    held = target.accelerator
    if held is not None and held.name == accelerator:
        return target
    return next(_systems_holding(library, accelerator), None)


def recorded_system_note(
    library: HardwareLibrary,
    target: System,
    accelerator: str,
    chosen: System | None,
    *,
    given: bool = False,
) -> str:
    """The replay's note on the node whose copy rates the recorded copies are read at
    (``infer_recorded_system``'s ``chosen``): which, how it was chosen, and the other library systems
    holding ``accelerator`` whose copy rates differ from it (the choice matters there: a reviewer
    found it unsaid). ``given``: ``chosen`` was named by the caller (``--recorded-system``)."""
    if chosen is None:
        return (
            f"recorded copies: no library system holds {accelerator}, so the node the trace ran in "
            "(the rates its copies ran at) is unknown"
        )
    how = (
        "given: --recorded-system"
        if given
        else f"the target system, which holds {accelerator}"
        if chosen is target
        else f"the first library system by name holding {accelerator}: a trace names its GPU, not its node"
    )
    said = f"recorded copies read at {chosen.name}'s copy rates ({how})"
    mine = _copy_rates(chosen)
    others = []
    for system in _systems_holding(library, accelerator):
        theirs = _copy_rates(system) if system.name != chosen.name else mine
        if theirs != mine:
            others.append(f"{system.name} {_shown_rates(theirs)}")
    if others:
        said += (
            f"; other library systems holding {accelerator} copy at other rates than its "
            f"{_shown_rates(mine)}: {', '.join(others)}"
        )
    return said


def _copy_rates(system: System) -> tuple[float | None, float | None]:
    """A system's copy rates to and from the host and between two of its GPUs (bytes/s)."""
    from recsim.cost.model import CostModel

    cost = CostModel(system)
    return (
        cost.copy_bytes_per_s(Transfer(src="host", dst="hbm", bytes=1.0)),
        cost.copy_bytes_per_s(Transfer(src="peer", dst="hbm", bytes=1.0)),
    )


def _shown_rates(rates: tuple[float | None, float | None]) -> str:
    host, peer = (f"{r / 1e9:.4g} GB/s" if r else "none" for r in rates)
    return f"(host {host}, peer {peer})"


@contextmanager
def _naming(paths: Sequence[str | Path] | str | Path) -> Iterator[None]:
    """The replay's own errors (no durations, ranks with different step counts, a graph that
    cannot be scheduled, a GPU the library has nothing of, more ranks than the system has GPUs)
    with the files named, as the readers' are (a tester's find). A hardware document's own error
    (``_HardwareFileError``) names its file already, and the trace is not at fault: it is left as
    it is (a tester got "trace.json.gz: a100.yaml:12: peak.x: unknown key")."""
    try:
        yield
    except _HardwareFileError:
        raise
    except (TraceError, ConfigError) as exc:
        given = [paths] if isinstance(paths, (str, Path)) else list(paths)
        shown = ", ".join(str(p) for p in given[:3]) + (", ..." if len(given) > 3 else "")
        raise type(exc)(f"{shown}: {exc}") from None


class _HardwareFileError(ConfigError):
    """An error of a hardware library document (a malformed file: its message names the file and
    key) met while a replay looks at the library; ``_naming`` does not prefix it with the trace's."""


@contextmanager
def _hardware_files() -> Iterator[None]:
    """The hardware library's errors in the block raised as ``_HardwareFileError``."""
    try:
        yield
    except _HardwareFileError:
        raise
    except ConfigError as exc:
        raise _HardwareFileError(str(exc)) from None


#: CUDA compute capability -> the library's accelerator architecture: the data-centre parts only
#: (8.6 and 8.9 are Ampere and Ada workstation/consumer GPUs, not an A100; 10.0 is B200/GB200).
_ARCHITECTURES = {"7.0": "volta", "8.0": "ampere", "9.0": "hopper", "10.0": "blackwell"}


def recorded_accelerator(graph: ExecutionGraph, library: HardwareLibrary | None = None) -> str | None:
    """The library accelerator a trace was recorded on, from the GPU its reader found
    (``metadata["device"]``: Kineto's ``deviceProperties``): one of the library's accelerators of
    the GPU's architecture (compute capability), the one whose memory is the nearest to the GPU's
    (names differ between drivers and vendors: "Tesla V100-SXM2-32GB", "NVIDIA A100-PG509-200").
    None when the trace names no GPU or one without its compute capability; a ``ConfigError`` when
    the library has none of its kind."""
    device = graph.metadata.get("device")
    if not isinstance(device, dict) or device.get("compute_capability") is None:
        return None  # no GPU, or one named without its compute capability (``unknown_gpu``)
    lib = library or HardwareLibrary()
    memory = float(device.get("memory_bytes") or 0.0)
    architecture = _ARCHITECTURES.get(str(device.get("compute_capability", "")))
    candidates: list[tuple[float, bool, str]] = []
    with _hardware_files():
        accelerators = [(name, lib.device("accelerator", name)) for name in lib.device_names("accelerator")]
    for name, acc in accelerators:
        if architecture is not None and isinstance(acc, Accelerator) and acc.architecture == architecture:
            # Ties (an SXM and a PCIe card of one memory size) go by the form factor the name
            # gives: "NVIDIA H100 PCIe" is the PCIe card, "NVIDIA H100 80GB HBM3" the SXM module.
            other_form = ("pcie" in name) != ("pcie" in str(device.get("name", "")).lower())
            candidates.append((abs(acc.hbm.capacity_bytes - memory), other_form, name))
    if not candidates:
        raise ConfigError(
            f"the trace was recorded on {device.get('name')!r} (compute capability "
            f"{device.get('compute_capability')}), of which the hardware library has no accelerator: "
            "name the closest with --recorded-on (recsim hw list)"
        )
    return min(candidates)[2]


def validate(ids: Sequence[str] | None = None, fidelity: str = "analytic") -> list[CaseResult]:
    """Run the validation cases (``recsim validate``); ``fidelity``: the engine of the end-to-end
    cases (``recsim.validation.cases.run_cases``)."""
    from recsim.validation import run_cases

    return run_cases(texts(ids, "ids") if ids else None, fidelity=fidelity)


def sweep(
    spec: str | Path | SweepSpec,
    out: str | Path | None = None,
    *,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    overrides: Sequence[str] = (),
    progress: bool | None = None,
) -> Any:
    """Run a sweep spec into ``out`` (``recsim sweep``; default ``out/<spec name>``, resumed if it is
    there); returns the ``SweepResult`` (``.frame``, ``.final``, ``.front``, ``.paths``)."""
    from recsim.explore.spec import SweepSpec, load_sweep
    from recsim.explore.sweep import run_sweep

    if not isinstance(spec, (str, Path, SweepSpec)):
        raise ConfigError(f"sweep: expected the path of a sweep spec file, got {type(spec).__name__}")
    if not isinstance(resume, bool):
        raise ConfigError(f"resume: expected True or False, got {resume!r}")
    if isinstance(overrides, str) or not all(isinstance(text, str) for text in overrides):
        # A lone text would be taken a character at a time (a tester's find).
        raise ConfigError(f"overrides: expected a list of 'PATH=VALUE' texts, got {overrides!r}")
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, numbers.Integral):
            raise ConfigError(f"workers: expected a whole number of processes, got {workers!r}")
        workers = int(workers)
    if out is None:
        name = spec.name if isinstance(spec, SweepSpec) else load_sweep(spec, overrides).name
        out = Path("out") / name
        resume = True

    return run_sweep(
        spec,
        out,
        executor=executor,
        workers=workers,
        scheduler=scheduler,
        resume=resume,
        overrides=overrides,
        progress=progress,
    )
