"""``recsim replay`` on traces a tester broke: step windows, notes, errors, partial rank sets."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import example, given, settings
from hypothesis import strategies as st

from recsim import __version__ as recsim_version
from recsim.cli import cli
from recsim.cost.model import CATEGORIES, PCIE_COPY_EFFICIENCY
from recsim.cost.power import COMPONENTS, step_energy
from recsim.engine.replay import REPLAY_CLASSES, ReplayResult, replay_keep, replay_reestimate
from recsim.errors import ConfigError, TraceError
from recsim.graph.ir import Compute, ExecutionGraph, Host, Node, Stream
from recsim.graph.readers import read_trace
from recsim.hardware.topology import build_topology
from recsim.metrics.result import RESOURCE_CLASSES
from tests.conftest import error_line

TRACES = Path(__file__).parents[1] / "data" / "traces"
RECSYS = TRACES / "recsys_a100_8rank_rank3_control.json.gz"


def _recsys_events() -> dict[str, Any]:
    with gzip.open(RECSYS, "rt") as f:
        data: dict[str, Any] = json.load(f)
    return data


def _host(i: int, start: float, length: float, deps: tuple[int, ...] = ()) -> Node:
    return Node(i, 0, f"h{i}", Stream.HOST, Host(op=f"h{i}"), deps, duration_s=length, start_s=start)


# -- step windows ----------------------------------------------------------------------------------


def test_the_step_is_the_marked_steps_span_not_the_whole_trace() -> None:
    # 10 s of warm-up, a marked step of 10 s, 30 s of unmarked work after it: a step of 10 s, not 50.
    nodes = [_host(0, 0.0, 10.0), _host(1, 10.0, 10.0, (0,)), _host(2, 20.0, 30.0, (1,))]
    steps = [{"name": "ProfilerStep#1", "rank": 0, "start_s": 10.0, "duration_s": 10.0}]
    graph = ExecutionGraph(1, nodes, {"steps": steps})
    result = replay_keep(graph)
    assert (result.steps, result.predicted_step_s, result.predicted_total_s) == (1, 10.0, 50.0)
    # Without markers the whole trace is the step, as before.
    assert replay_keep(ExecutionGraph(1, nodes)).predicted_step_s == 50.0


def test_a_step_marker_of_no_length_leaves_the_whole_trace_as_the_step() -> None:
    # A single marker of zero duration is no window: "predicted step 0 s" before (a reviewer's find).
    nodes = [_host(0, 0.0, 10.0), _host(1, 10.0, 10.0, (0,))]
    steps = [{"name": "ProfilerStep#1", "rank": 0, "start_s": 10.0, "duration_s": 0.0}]
    assert replay_keep(ExecutionGraph(1, nodes, {"steps": steps})).predicted_step_s == 20.0


def test_a_step_edge_inside_a_node_is_placed_by_its_share_of_the_node() -> None:
    # The step runs from 5 s into the first 10 s host node to 5 s into the last: 14 s, a kernel of
    # 4 s between them. The nodes cut by the edges count for the part of them inside the step.
    gpu = Node(1, 0, "k", Stream.COMPUTE, Compute(op="k", category="elementwise"), (0,), 0, 4.0, 10.0)
    nodes = [_host(0, 0.0, 10.0), gpu, _host(2, 14.0, 10.0, (1,))]
    steps = [{"name": "ProfilerStep#1", "rank": 0, "start_s": 5.0, "duration_s": 14.0}]
    graph = ExecutionGraph(1, nodes, {"steps": steps})
    assert replay_keep(graph).predicted_step_s == pytest.approx(14.0)


def test_unmarked_work_before_the_marked_steps_is_not_spread_over_them(tmp_path: Path) -> None:
    # The reference trace with its first three of six ProfilerStep markers removed (a tester's
    # find: +93.6 %, the whole trace divided by three): the three marked steps replay as the six do.
    from recsim.api import load_system

    data = _recsys_events()
    marks = sorted(
        (e for e in data["traceEvents"] if str(e.get("name", "")).startswith("ProfilerStep#")),
        key=lambda e: e["ts"],
    )
    dropped = {id(e) for e in marks[:3]}
    data["traceEvents"] = [e for e in data["traceEvents"] if id(e) not in dropped]
    path = tmp_path / "last3.json"
    path.write_text(json.dumps(data))
    graph = read_trace([path])
    keep = replay_keep(graph)
    assert keep.steps == 3
    assert keep.error is not None and abs(keep.error) < 0.02
    assert keep.predicted_total_s > 1.9 * keep.predicted_step_s * keep.steps  # the whole trace
    p4d = load_system("p4d-24xlarge")
    assert p4d.accelerator is not None
    again = replay_reestimate(graph, p4d, p4d.accelerator)
    whole = replay_reestimate(read_trace([RECSYS]), p4d, p4d.accelerator)
    assert again.predicted_step_s == pytest.approx(whole.predicted_step_s, rel=0.03)


# -- notes -----------------------------------------------------------------------------------------

SIMPLE = TRACES / "simple_add_kineto.json.gz"
PARAM = sorted((TRACES / "param_dlrm_kineto").glob("*.json.gz"))


def _simple(tmp_path: Path, name: str, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> Path:
    """The small Kineto trace with its events as ``edit`` leaves them."""
    with gzip.open(SIMPLE, "rt") as f:
        data = json.load(f)
    data["traceEvents"] = edit(data["traceEvents"])
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _replay_cli(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["replay", *map(str, args)])


def test_the_readers_notes_reach_the_replay(tmp_path: Path) -> None:
    # A kernel without its 'dur' is read as 0 long: said by the reader, and now by the replay too.
    def first_kernel_without_dur(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        del next(e for e in events if e.get("cat") == "kernel")["dur"]
        return events

    path = _simple(tmp_path, "nodur.json", first_kernel_without_dur)
    said = "rank 0: 1 complete ('X') events without a 'dur', taken as 0 long"
    data = json.loads(_replay_cli(path, "--json").output)
    assert said in data["notes"]
    human = _replay_cli(path)
    assert human.exit_code == 0 and f"note: {said}" in human.output
    from recsim.api import load_system

    a100 = load_system("p4d-24xlarge")
    assert a100.accelerator is not None
    assert said in replay_reestimate(read_trace([path]), a100, a100.accelerator).notes


def test_a_trace_without_gpu_work_is_said_to_be_one(tmp_path: Path) -> None:
    gpu = ("kernel", "gpu_memcpy", "gpu_memset")
    path = _simple(tmp_path, "cpu.json", lambda events: [e for e in events if e.get("cat") not in gpu])
    notes = replay_keep(read_trace([path])).notes
    assert any("records no GPU work" in n for n in notes)
    assert not any("no GPU work" in n for n in replay_keep(read_trace([SIMPLE])).notes)


def test_collectives_missing_ranks_are_said_to_be_partial() -> None:
    # Ranks 1-7 of the eight-rank PARAM DLRM step: every collective lacks rank 0.
    notes = replay_keep(read_trace(PARAM[1:])).notes
    partial = [n for n in notes if "miss members whose traces were not given" in n]
    assert len(partial) == 1 and "8 of 8 collectives" in partial[0] and "(rank 0)" in partial[0]
    assert not any("miss members" in n for n in replay_keep(read_trace(PARAM)).notes)


def test_a_single_chakra_file_re_estimated_says_its_collectives_keep_their_time() -> None:
    # One Chakra file: its collectives' groups are that one rank, so re-estimating kept all 7 at
    # their recorded time without a word (a single Kineto rank gets the "miss members" note).
    chakra = TRACES / "chakra.0.et.gz"
    result = _replay_cli(chakra, "--re-estimate", "--system", "dgx-h100", "--json")
    assert result.exit_code == 0, result.output
    lone = [n for n in json.loads(result.output)["notes"] if "have a single member" in n]
    assert len(lone) == 1 and lone[0].startswith("7 of 7 collectives") and "Chakra" in lone[0]
    assert "keep their recorded durations" in lone[0]
    # Keeping every recorded time is what the keep mode does anyway: no note there.
    assert not any("single member" in n for n in replay_keep(read_trace([chakra])).notes)
    # Collectives of a full group are re-costed: no note.
    from recsim.api import load_system

    h100 = load_system("dgx-h100")
    assert h100.accelerator is not None
    notes = replay_reestimate(read_trace(PARAM), h100, h100.accelerator).notes
    assert not any("single member" in n for n in notes)


def test_recorded_on_help_says_the_trace_s_own_gpu_comes_first() -> None:
    # The help said "(default: a100-sxm4-40gb)": the GPU of the trace's deviceProperties is taken
    # first (``api.recorded_accelerator``), the A100 only for a trace that names none.
    text = " ".join(CliRunner().invoke(cli, ["replay", "--help"]).output.split())
    assert "(default: the GPU the trace names in its deviceProperties, else a100-sxm4-40gb)" in text


def test_the_ranks_that_say_the_same_are_said_once() -> None:
    # Two ranks' files of the PARAM DLRM step miss the same launches: one note for both.
    notes = replay_keep(read_trace(PARAM)).notes
    # (then why a replay with the recorded durations has no power)
    assert notes[:-1] == (
        "ranks 1, 3: 64 GPU events without a recorded launch (no correlation or flow): each waits only "
        "for the work before it on its CUDA stream, so the replay may run it earlier than recorded "
        "(the idle time before it is not kept)",
    )
    assert notes[-1].startswith("no power or energy")
    from recsim.engine.replay import _by_ranks

    said = ["rank 0: a", "x", "rank 1: a", "rank 3: b", "rank 2: a", "a", "rank 0: b"]
    assert _by_ranks(said) == ["ranks 0-2: a", "x", "ranks 0, 3: b", "a"]


# -- errors name the files -------------------------------------------------------------------------


def test_ranks_with_different_step_counts_are_named_in_both_modes(tmp_path: Path) -> None:
    # Rank 1 of two marks one more ProfilerStep than rank 0: the keep mode named the files, the
    # re-estimate did not (a tester's find).
    paths = []
    for i, source in enumerate(PARAM[:2]):
        with gzip.open(source, "rt") as f:
            data = json.load(f)
        if i == 1:
            mark = next(e for e in data["traceEvents"] if str(e.get("name", "")).startswith("ProfilerStep#"))
            data["traceEvents"].append({**mark, "name": "ProfilerStep#99", "ts": mark["ts"] + mark["dur"]})
        paths.append(tmp_path / f"rank{i}.json")
        paths[-1].write_text(json.dumps(data))
    for mode in (["--keep-durations"], ["--re-estimate", "--system", "dgx-1-v100"]):
        line = error_line(_replay_cli(*paths, *mode))
        assert f"{paths[0]}, {paths[1]}: the ranks recorded different numbers of profiler steps" in line


def test_a_join_of_one_kind_of_file_names_it() -> None:
    line = error_line(_replay_cli(SIMPLE, "--format", "et_kineto"))
    assert line.startswith(f"recsim: error: {SIMPLE}: joining execution traces (ET) with Kineto traces")
    assert "(got 0 ET, 1 Kineto)" in line


# -- partial rank sets -----------------------------------------------------------------------------


def test_a_partial_rank_set_counts_each_collective_wait_once() -> None:
    # Ranks 1-7 of the eight-rank PARAM DLRM step: every collective lacks rank 0. Each present
    # member kept its own recorded duration (its wait for the others included) and the replay
    # started them together and gave them the longest: 21.4 ms, longer than any rank's recorded
    # step (19.9 ms at most) and than all eight ranks' replay (14.05 ms).
    whole = replay_keep(read_trace(PARAM))
    part = replay_keep(read_trace(PARAM[1:]))
    assert part.predicted_step_s == pytest.approx(whole.predicted_step_s, rel=0.05)
    assert part.predicted_total_s < 19.9e-3
    assert any("the last of its present members to arrive" in n for n in part.notes)


def test_a_partial_collective_takes_its_last_present_arrivals_duration() -> None:
    # By hand: ranks 1 and 2 of a three-rank all-reduce, rank 0's trace not given. Rank 1 got to
    # it at 0 s and waited; rank 2 at 4 s; both ended at 6 s. Replayed, the collective starts when
    # rank 2 is ready (4 s) and lasts rank 2's 2 s: it ends at 6 s, as recorded (not 4 + 6 = 10).
    from recsim.graph.ir import Collective, CollectiveOp
    from recsim.graph.readers._common import Pending, PendingGraph

    pending = PendingGraph()
    pending.add(Pending(("h", 2), 2, "work", Stream.HOST, Host(op="work"), duration_s=4.0, start_s=0.0))
    for rank, start in ((1, 0.0), (2, 4.0)):
        op = Collective(CollectiveOp.ALL_REDUCE, "ar", (0, 1, 2), 1e6)
        deps: list[Any] = [("h", 2)] if rank == 2 else []
        pending.add(
            Pending(("ar", rank), rank, "ar", Stream.COMM, op, deps, duration_s=6.0 - start, start_s=start)
        )
    graph = pending.build(3, {"partial_collectives": True})
    assert sorted(n.duration_s or 0.0 for n in graph.nodes if n.stream is Stream.COMM) == [2.0, 2.0]
    assert replay_keep(graph).predicted_total_s == 6.0


def test_a_re_estimate_says_which_gpu_its_recorded_durations_are_read_as(
    a100_replays: tuple[ReplayResult, ReplayResult],
) -> None:
    # The figures scale from the recorded GPU: the trace's own (Kineto's deviceProperties), the
    # one given, or the default for a trace that names none, and the output had said none of it.
    import recsim

    traces = Path(__file__).parents[1] / "data" / "traces"
    # The reference A100 trace re-estimated on DGX H100: the module's replay of it (read only),
    # not a second one (7 s).
    a100 = a100_replays[1]
    assert a100.notes[0] == (
        "recorded on a100-sxm4-40gb (the trace names 'NVIDIA A100-PG509-200': the library's accelerator "
        "of its architecture with the nearest memory size, --recorded-on to choose another); "
        "re-estimated on h100-sxm5-80gb (dgx-h100)"
    )
    chakra = recsim.replay([traces / "chakra.0.et.gz"], keep=False, system="dgx-h100")
    assert chakra.notes[0].startswith("recorded on a100-sxm4-40gb (the trace names no GPU: the default")
    given = recsim.replay(
        [traces / "chakra.0.et.gz"], keep=False, system="dgx-h100", recorded_on="v100-sxm2-32gb"
    )
    assert given.notes[0].startswith("recorded on v100-sxm2-32gb (--recorded-on)")
    assert not any(n.startswith("recorded on") for n in recsim.replay([traces / "chakra.0.et.gz"]).notes)
    # A system alone asks for the what-if, in the API as in the CLI (a reviewer found them apart).
    assert recsim.replay([traces / "chakra.0.et.gz"], system="dgx-h100").mode == "re-estimate"


def _kineto_edited(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    data = json.loads(gzip.decompress((TRACES / "simple_add_kineto.json.gz").read_bytes()))
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path


def test_a_job_without_collectives_has_the_ranks_its_trace_declares(tmp_path: Path) -> None:
    """Rank 3 of an 8-rank job whose trace records no collective: the job has 8 ranks (its
    ``distributedInfo`` world size), 7 of them untraced and as busy as rank 3. It was taken as
    ranks 0-3 (the highest rank seen + 1), the other 4 GPUs of the DGX at idle power (a tester's
    find)."""
    import recsim

    path = _kineto_edited(
        tmp_path, lambda d: d.__setitem__("distributedInfo", {"backend": "nccl", "rank": 3, "world_size": 8})
    )
    result = recsim.replay([path], keep=False, system="dgx-h100")
    assert any(
        n.startswith("power: ranks 0-2, 4-7 of the job's 8 are not in the trace") for n in result.notes
    )
    assert not any("no-program idle power" in n for n in result.notes)
    # A job larger than the system is refused, as one whose collectives name more ranks.
    with pytest.raises(ConfigError, match="the trace has 8 ranks and hgx-h100-4gpu 4 accelerators"):
        recsim.replay([path], keep=False, system="hgx-h100-4gpu")


def test_a_gpu_named_without_its_compute_capability_is_said_to_be_unknown(tmp_path: Path) -> None:
    """``deviceProperties: [{"name": "Foo GPU 9000"}]`` was noted as "the trace names no GPU"."""
    import recsim

    path = _kineto_edited(tmp_path, lambda d: d.__setitem__("deviceProperties", [{"name": "Foo GPU 9000"}]))
    result = recsim.replay([path], keep=False, system="dgx-h100")
    assert result.notes[0].startswith(
        "recorded on a100-sxm4-40gb (the trace names an unknown GPU, 'Foo GPU 9000', without its "
        "compute capability: taken as the default, --recorded-on to change it)"
    )


def test_a_gpu_the_library_lacks_is_substituted_by_name_and_one_of_no_kind_names_the_file(
    tmp_path: Path,
) -> None:
    """An A30 (compute capability 8.0, 24 GB) is read as the nearest Ampere part, an A100-40GB, and
    the note had said "the GPU the trace names" without the A30 (a tester's find); a GPU of no
    library architecture failed without naming the file."""
    import recsim
    from recsim.errors import ConfigError

    def gpu(name: str, major: int) -> Callable[[dict[str, Any]], None]:
        props = {"name": name, "totalGlobalMem": 25_000_000_000, "computeMajor": major, "computeMinor": 0}
        return lambda d: d.__setitem__("deviceProperties", [props])

    v100 = _kineto_edited(
        tmp_path,
        lambda d: (
            gpu("Tesla V100-SXM2-32GB", 7)(d)
            or d["deviceProperties"][0].update(totalGlobalMem=34_089_730_048)
        ),
    )
    # The library's own GPU is named as such, not as a stand-in (a reviewer's find).
    note = recsim.replay([v100], keep=False, system="dgx-h100").notes[0]
    assert note.startswith("recorded on v100-sxm2-32gb (the trace names 'Tesla V100-SXM2-32GB');")
    a30 = _kineto_edited(tmp_path, gpu("NVIDIA A30", 8))
    note = recsim.replay([a30], keep=False, system="dgx-h100").notes[0]
    assert note.startswith("recorded on a100-sxm4-40gb (the trace names 'NVIDIA A30': the library's")
    other = _kineto_edited(tmp_path, gpu("Some GPU", 12))
    with pytest.raises(ConfigError, match=f"^{re.escape(str(other))}: the trace was recorded on 'Some GPU'"):
        recsim.replay([other], keep=False, system="dgx-h100")


def test_a_trace_of_more_ranks_than_the_system_has_gpus_names_the_nodes_it_needs() -> None:
    # It had failed at its first collective: "rank 4 is outside hgx-a100-4gpu (4 accelerators)".
    import recsim
    from recsim.errors import ConfigError

    traces = Path(__file__).parents[1] / "data" / "traces"
    trace = traces / "recsys_a100_8rank_rank3_control.json.gz"
    with pytest.raises(
        ConfigError, match=r"the trace has 8 ranks and dgx-a100 4 accelerators \(1 node\): --nodes 2"
    ):
        recsim.replay([trace], keep=False, system="dgx-a100", overrides=["node.accelerators.count=4"])
    assert recsim.replay([trace], keep=False, system="dgx-a100").predicted_step_s > 0


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        for event in data["traceEvents"]:
            event.pop(key, None)

    return edit


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("ph", "events of a known category without a 'ph' (phase), skipped"),
        ("cat", "complete ('X') events without a 'cat' (category), skipped"),
    ],
)
def test_a_trace_left_empty_by_skipped_events_says_why(tmp_path: Path, key: str, why: str) -> None:
    """Events without ``ph`` or ``cat`` are skipped: "the trace holds no operations" alone left the
    user guessing."""
    path = _kineto_edited(tmp_path, _drop(key))
    line = error_line(CliRunner().invoke(cli, ["trace", "info", str(path)]))
    assert line.startswith(f"recsim: error: {path}: the trace holds no operations (rank 0: ")
    assert line.endswith(f" {why})")


def test_events_without_a_name_are_named_and_noted(tmp_path: Path) -> None:
    """Nameless events were read silently, and the top kernel showed an empty name."""
    path = _kineto_edited(tmp_path, _drop("name"))
    graph = read_trace([path])
    assert graph.nodes and {n.name for n in graph.nodes} == {"<unnamed>"}
    assert any(
        n.startswith("rank 0: ") and n.endswith(" events without a 'name', named '<unnamed>'")
        for n in graph.metadata["notes"]
    )


# -- a run's figures: breakdown, power -------------------------------------------------------------


@pytest.fixture(scope="module")
def a100_replays() -> tuple[ReplayResult, ReplayResult]:
    """The reference A100 trace replayed with its recorded durations and re-estimated on DGX H100."""
    import recsim

    return recsim.replay([RECSYS]), recsim.replay([RECSYS], keep=False, system="dgx-h100")


def _breakdown_of(data: dict[str, Any]) -> dict[str, float]:
    return {k.removeprefix("breakdown_s."): v for k, v in data.items() if k.startswith("breakdown_s.")}


@pytest.mark.parametrize("mode", [0, 1], ids=["keep", "re-estimate"])
def test_the_real_trace_s_breakdown_sums_to_its_predicted_step(
    a100_replays: tuple[ReplayResult, ReplayResult], mode: int
) -> None:
    # A tester could not check "the breakdown sums to the step time" on a replay: it had none.
    data = a100_replays[mode].to_dict()
    breakdown = _breakdown_of(data)
    assert tuple(breakdown) == CATEGORIES  # a run's categories, in a run's order
    assert all(v >= 0 for v in breakdown.values())
    predicted = data["predicted_step_s"]
    assert isinstance(predicted, float)
    assert math.isclose(math.fsum(breakdown.values()), predicted, rel_tol=1e-9)
    # The trace's CPU time and its lookups (TBE kernels) are on its critical path.
    assert breakdown["host"] > 0 and breakdown["embedding"] > 0 and breakdown["compute"] > 0
    # Each stream class's busy share of the steps, as a run's.
    streams = tuple(s.value for s in Stream)
    busy = {k: data[f"utilisation.{k}"] for k in streams}
    assert all(isinstance(v, float) and 0 < v <= 1 for v in busy.values())
    # The resource classes: a re-estimate knows the links only collectives load (the trace's
    # collectives on DGX H100's NVLink; one node, no NICs: 0), the recorded durations none.
    for name in RESOURCE_CLASSES:
        for head in ("utilisation", "utilisation_max"):
            value = data[f"{head}.{name}"]
            if mode == 1 and name in REPLAY_CLASSES:
                assert isinstance(value, float) and 0 <= value <= 1
            else:
                assert value is None
    if mode == 1:
        assert data["utilisation_max.scale_up"] > 0 and data["utilisation.network"] == 0.0
    assert data["recsim_version"] == recsim_version


def test_a_re_estimate_s_power_by_component_sums_to_its_average_between_idle_and_max(
    a100_replays: tuple[ReplayResult, ReplayResult],
) -> None:
    from recsim.api import load_system

    result = a100_replays[1]
    data = result.to_dict()
    power = {k.removeprefix("power_by_component_w."): v for k, v in data.items() if k.startswith("power_by")}
    assert tuple(power) == COMPONENTS
    average = data["avg_power_w"]
    assert isinstance(average, float)
    assert math.isclose(math.fsum(v for v in power.values() if v is not None), average, rel_tol=1e-9)
    # The power model's bounds for DGX H100: nothing busy, and everything busy all step (every
    # stream of every rank, every NIC, host memory at its full bandwidth).
    system = load_system("dgx-h100")
    topology = build_topology(system)
    idle = step_energy(system, topology, 1.0, {}).avg_power_w
    ranks = range(system.num_accelerators)
    everything = {(r, s.value): 1.0 for r in ranks for s in Stream}
    full = step_energy(
        system,
        topology,
        1.0,
        everything,
        host_bytes=system.node.host_memory_bandwidth_bytes_per_s * system.num_nodes,
        network_busy_s=dict.fromkeys(ranks, 1.0),
    ).avg_power_w
    assert idle < average < full
    # Energy per step over the predicted step; per sample needs the batch, which the trace lacks.
    assert result.energy_per_step_j == pytest.approx(average * result.predicted_step_s)
    assert result.energy_per_sample_j is None
    assert any(n.startswith("the trace does not record its batch size") for n in result.notes)
    # The trace is rank 3's of eight: the other seven ran too, as busy as it (said so).
    assert any(
        n.startswith("power: ranks 0-2, 4-7 of the job's 8 are not in the trace") for n in result.notes
    )
    # The accelerators' rule is said (a reviewer's find: the busy-share rule priced them silently).
    assert any(
        n.startswith("power: the accelerators are priced by their compute streams' busy share")
        for n in result.notes
    )


def test_a_replay_with_the_recorded_durations_has_no_power_and_says_why(
    a100_replays: tuple[ReplayResult, ReplayResult],
) -> None:
    result = a100_replays[0]
    assert result.avg_power_w is None and result.power_by_component_w is None
    assert result.energy_per_step_j is None and result.energy_per_sample_j is None
    data = result.to_dict()
    # The same keys as a re-estimate's, power unknown (as a failed run's figures).
    assert list(data) == list(a100_replays[1].to_dict())
    assert data["avg_power_w"] is None
    assert all(data[f"power_by_component_w.{c}"] is None for c in COMPONENTS)
    assert result.notes[-1].startswith(
        "no power or energy: a replay with the recorded durations has no target"
    )


def _stepped(*markers: tuple[float, float]) -> ExecutionGraph:
    """Rank 0 on the host 0-2 s, then a 3 s GEMM and a 1 s embedding kernel, then the host 6-10 s;
    ``markers``: its ProfilerSteps' (start, length)."""
    nodes = [
        _host(0, 0.0, 2.0),
        Node(1, 0, "k", Stream.COMPUTE, Compute(op="k", category="gemm"), (0,), 0, 3.0, 2.0),
        Node(2, 0, "e", Stream.COMPUTE, Compute(op="e", category="embedding"), (1,), 0, 1.0, 5.0),
        _host(3, 6.0, 4.0, (2,)),
    ]
    steps = [
        {"name": f"ProfilerStep#{i}", "rank": 0, "start_s": start, "duration_s": length}
        for i, (start, length) in enumerate(markers)
    ]
    return ExecutionGraph(1, nodes, {"steps": steps})


def test_the_breakdown_is_the_critical_path_of_the_marked_steps_by_hand() -> None:
    # Two steps marked from 1 s to 8 s: they cut the first host segment (1 s of it inside) and the
    # last (2 s inside). The critical path back from 8 s: host 2 s, the lookup 1 s, the GEMM 3 s,
    # host 1 s: 7 s, 3.5 s a step. (Before, a replay had no breakdown.)
    result = replay_keep(_stepped((1.0, 3.5), (4.5, 3.5)))
    assert (result.steps, result.predicted_step_s) == (2, 3.5)
    expected = dict.fromkeys(CATEGORIES, 0.0) | {"host": 1.5, "embedding": 0.5, "compute": 1.5}
    assert dict(result.breakdown_s) == pytest.approx(expected, abs=1e-12)
    # The host is busy 1 + 2 s of the 7, the GPU 3 + 1 s: the parts inside the steps.
    assert dict(result.utilisation) == pytest.approx({"host": 3 / 7, "compute": 4 / 7})
    # Unmarked, the whole trace is the step: 10 s, the host's 2 + 4 s on it whole.
    whole = replay_keep(_stepped()).breakdown_s
    assert dict(whole) == pytest.approx(
        dict.fromkeys(CATEGORIES, 0.0) | {"host": 6.0, "embedding": 1.0, "compute": 3.0}
    )


def test_a_re_estimate_s_breakdown_and_energy_per_sample_by_hand() -> None:
    # Host work keeps its recorded time on any system; a trace that records its batch gets an
    # energy per sample. One rank on an 8-GPU system: the other seven idle, said so.
    from recsim.api import load_system

    graph = _stepped((1.0, 7.0))
    graph.metadata["global_batch_size"] = 1000
    system = load_system("dgx-h100")
    result = replay_reestimate(graph, system, system.accelerator)  # type: ignore[arg-type]
    assert result.breakdown_s["host"] == pytest.approx(3.0)
    assert math.isclose(math.fsum(result.breakdown_s.values()), result.predicted_step_s, rel_tol=1e-9)
    assert result.energy_per_step_j is not None and result.avg_power_w is not None
    assert result.energy_per_sample_j == pytest.approx(result.energy_per_step_j / 1000)
    assert result.energy_per_step_j == pytest.approx(result.avg_power_w * result.predicted_step_s)
    assert (
        "power: dgx-h100 has 8 accelerators and the job 1 rank: the other 7 are counted at their "
        "no-program idle power" in result.notes
    )
    # Those seven hold no program: 70 W each, the H100's no-program idle, not its 135 W floor in a job.
    alone = step_energy(system, build_topology(system), 1.0, {}, job_ranks=1).by_component_j["accelerators"]
    assert alone == pytest.approx(135.0 + 7 * 70.0)


def test_the_replay_table_shows_the_breakdown_and_power_as_a_run_s() -> None:
    keep = _replay_cli(RECSYS).output
    assert re.search(r"│   host +│ [\d.]+ ms \(\d+%\)", keep)
    assert re.search(r"│ average power +│ n/a", keep)
    assert re.search(r"│ compute busy +│ \d+%", keep)
    what_if = _replay_cli(RECSYS, "--system", "dgx-h100").output
    assert re.search(r"│ average power +│ [\d.]+ kW", what_if)
    assert re.search(r"│ energy per step +│ [\d.]+ J", what_if)


# -- copies re-estimated ---------------------------------------------------------------------------


def _copy_reestimate(
    name: str, src: str, dst: str, nbytes: float, recorded_s: float, recorded_in: str, target_in: str
) -> float:
    """A recorded copy of ``nbytes`` re-estimated from ``recorded_in``'s node on ``target_in``'s."""
    from recsim.api import load_system
    from recsim.cost.model import CostModel
    from recsim.engine.replay import reestimate_duration
    from recsim.graph.ir import Transfer

    node = Node(0, 0, name, Stream.COPY, Transfer(src=src, dst=dst, bytes=nbytes), duration_s=recorded_s)
    was, now = load_system(recorded_in), load_system(target_in)
    assert was.accelerator is not None and now.accelerator is not None
    return reestimate_duration(node, CostModel(now), was.accelerator, now.accelerator, CostModel(was))


@pytest.mark.parametrize(
    ("src", "dst", "rate"),
    [
        # Each node's share of its PCIe switch's uplink at the measured copy efficiency; within
        # the GPU half its HBM (a copy reads and writes each byte); to a peer its scale-up
        # bandwidth.
        ("host", "hbm", lambda s: s.node.host_bandwidth_bytes_per_s_per_accelerator * PCIE_COPY_EFFICIENCY),
        ("hbm", "host", lambda s: s.node.host_bandwidth_bytes_per_s_per_accelerator * PCIE_COPY_EFFICIENCY),
        ("hbm", "hbm", lambda s: s.accelerator.hbm.bandwidth_bytes_per_s / 2),
        ("hbm", "peer", lambda s: s.node.scale_up_bandwidth_bytes_per_s_per_accelerator),
    ],
)
def test_a_recorded_copy_moves_its_bytes_at_the_nodes_rates_and_keeps_its_time_on_its_own_node(
    src: str, dst: str, rate: Callable[[Any], float]
) -> None:
    # A copy kept its recorded time on any system (a tester's find: 1 GB over V100's PCIe Gen3 in
    # the 50 ms an A100 took). Now its bytes' part moves at the target node's rate.
    from recsim.api import load_system

    own = _copy_reestimate("Memcpy", src, dst, 1e8, 0.05, "p4d-24xlarge", "p4d-24xlarge")
    assert own == 0.05
    other = _copy_reestimate("Memcpy", src, dst, 1e8, 0.05, "p4d-24xlarge", "dgx-1-v100")
    was, now = rate(load_system("p4d-24xlarge")), rate(load_system("dgx-1-v100"))
    assert other == pytest.approx(0.05 - 1e8 / was + 1e8 / now, rel=1e-9)
    assert other != pytest.approx(0.05)


def test_a_copy_to_gb200_s_c2c_host_link_drops_the_pcie_efficiency() -> None:
    # GB200's host link is NVLink-C2C, priced at its rate as given (``CostModel.transfer_s``); an
    # A100's PCIe at the measured copy efficiency.
    from recsim.api import load_system
    from recsim.cost.model import PCIE_COPY_EFFICIENCY

    a100, gb200 = load_system("p4d-24xlarge"), load_system("gb200-nvl72")
    was = a100.node.host_bandwidth_bytes_per_s_per_accelerator * PCIE_COPY_EFFICIENCY
    now = gb200.node.host_bandwidth_bytes_per_s_per_accelerator
    got = _copy_reestimate("Memcpy HtoD", "host", "hbm", 1e8, 0.05, "p4d-24xlarge", "gb200-nvl72")
    assert got == pytest.approx(0.05 - 1e8 / was + 1e8 / now, rel=1e-9)


def test_a_peer_copy_re_estimated_on_a_pcie_node_goes_over_pcie() -> None:
    # A reviewer's find: h100-pcie-server's GPUs have NVLink ports but its node no NVLink
    # (``scale_up: {fabric: pcie}``); a recorded A100 peer copy kept its NVLink time there, where
    # ``transfer_s`` prices it over PCIe (staged through the host for pairs across the CPUs).
    from recsim.api import load_system
    from recsim.cost.model import CostModel
    from recsim.graph.ir import Transfer

    pcie = CostModel(load_system("h100-pcie-server"))
    op = Transfer(src="peer", dst="hbm", bytes=1e9)
    rate = pcie.copy_bytes_per_s(op)
    assert rate is not None and rate < 0.9 * load_system("h100-pcie-server").node.accelerator_link_bytes_per_s
    # The one rate rule: the modelled copy and the re-estimated one agree.
    assert pcie.transfer_s(op) == pytest.approx(
        load_system("h100-pcie-server").accelerator.host_interface.latency_s + 1e9 / rate
    )
    was = load_system("p4d-24xlarge").node.scale_up_bandwidth_bytes_per_s_per_accelerator
    got = _copy_reestimate("Memcpy PtoP", "peer", "hbm", 1e9, 0.05, "p4d-24xlarge", "h100-pcie-server")
    assert got == pytest.approx(0.05 - 1e9 / was + 1e9 / rate, rel=1e-9)
    assert got > 0.08  # it had kept its 50 ms


def test_a_host_copy_moves_at_the_node_s_share_of_the_uplink() -> None:
    # A reviewer's find: the GPU's own PCIe link was used, the same A100 link on both; p4d's GPUs
    # share each switch uplink by two, hgx-a100-4gpu's have theirs alone.
    from recsim.api import load_system
    from recsim.cost.model import PCIE_COPY_EFFICIENCY

    p4d, hgx = load_system("p4d-24xlarge"), load_system("hgx-a100-4gpu")
    was = p4d.node.host_bandwidth_bytes_per_s_per_accelerator * PCIE_COPY_EFFICIENCY
    now = hgx.node.host_bandwidth_bytes_per_s_per_accelerator * PCIE_COPY_EFFICIENCY
    assert now == pytest.approx(2 * was, rel=1e-3)
    got = _copy_reestimate("Memcpy HtoD", "host", "hbm", 1e9, 0.1, "p4d-24xlarge", "hgx-a100-4gpu")
    assert got == pytest.approx(0.1 - 1e9 / was + 1e9 / now, rel=1e-9)


def test_a_small_copy_keeps_its_latency() -> None:
    # A reviewer's find: a V100 trace's 1 us copy of 24 B became 0.06 us on GB200, the whole time
    # scaled by the bandwidth ratio; only its bytes' part moves.
    got = _copy_reestimate("Memcpy HtoD", "host", "hbm", 24.0, 1e-6, "dgx-1-v100", "gb200-nvl72")
    assert 0.99e-6 < got < 1e-6


def test_a_copy_on_its_own_node_keeps_its_recorded_time_exactly() -> None:
    # A reviewer's find: ``recorded * was / now`` with equal rates is 1 ulp off for this duration.
    from recsim.api import load_system
    from recsim.cost.model import CostModel
    from recsim.graph.ir import Transfer

    recorded = 0.006516278134254908
    rate = CostModel(load_system("hgx-a100-4gpu")).copy_bytes_per_s(
        Transfer(src="host", dst="hbm", bytes=1e6)
    )
    assert rate is not None and recorded * rate / rate != recorded  # it does not round-trip
    got = _copy_reestimate("Memcpy HtoD", "host", "hbm", 1e6, recorded, "hgx-a100-4gpu", "hgx-a100-4gpu")
    assert got == recorded


def test_a_pageable_copy_keeps_its_recorded_time() -> None:
    # The driver stages it through a pinned buffer with a CPU copy: the link does not set its pace.
    got = _copy_reestimate(
        "Memcpy HtoD (Pageable -> Device)", "host", "hbm", 1e8, 0.05, "dgx-1-v100", "gb200-nvl72"
    )
    assert got == 0.05


def test_a_gpu_internal_copy_is_priced_at_hbm() -> None:
    # A reviewer's find: ``transfer_s`` priced a copy within the GPU at the host link's rate.
    from recsim.api import load_system
    from recsim.cost.model import CostModel
    from recsim.graph.ir import Transfer

    system = load_system("dgx-h100")
    assert system.accelerator is not None
    got = CostModel(system).transfer_s(Transfer(src="hbm", dst="hbm", bytes=1e9))
    assert got == 2e9 / system.accelerator.hbm.bandwidth_bytes_per_s


def test_a_host_to_host_copy_keeps_its_recorded_time() -> None:
    from recsim.api import load_system
    from recsim.cost.model import CostModel
    from recsim.engine.replay import reestimate_duration
    from recsim.graph.ir import Transfer

    copy = Transfer(src="host", dst="host", bytes=1e9)
    node = Node(0, 0, "Memcpy HtoH", Stream.COPY, copy, duration_s=0.05)
    a100, v100 = load_system("p4d-24xlarge"), load_system("dgx-1-v100")
    assert a100.accelerator is not None and v100.accelerator is not None
    got = reestimate_duration(node, CostModel(v100), a100.accelerator, v100.accelerator, CostModel(a100))
    assert got == 0.05


def test_a_copy_faster_than_the_recorded_rate_scales_without_a_jump() -> None:
    # A reviewer's find: 8 MB recorded in 400 us (20 GB/s, faster than p4d's modelled 12.96 GB/s)
    # became 616.7 us at a rate 0.1 % above 12.96 GB/s. All of it is bytes: 400 us * was / now.
    from recsim.engine.replay import rescaled_copy_s

    was = 12.96e9
    assert rescaled_copy_s(400e-6, 8e6, was, was) == 400e-6
    assert rescaled_copy_s(400e-6, 8e6, was, 1.001 * was) == pytest.approx(399.6004e-6, rel=1e-6)
    assert rescaled_copy_s(400e-6, 8e6, was, 2 * was) == pytest.approx(200e-6, rel=1e-12)
    # 1 ms of which 8 MB at 16 GB/s is 500 us: those halve at 32 GB/s, the other 500 us stay.
    assert rescaled_copy_s(1e-3, 8e6, 16e9, 32e9) == pytest.approx(750e-6, rel=1e-12)


@settings(max_examples=300, deadline=None)
@given(
    recorded=st.floats(1e-7, 1.0),
    nbytes=st.floats(1.0, 1e10),
    was=st.floats(1e8, 1e12),
    a=st.floats(1e8, 1e12),
    b=st.floats(1e8, 1e12),
)
@example(recorded=400e-6, nbytes=8e6, was=12.96e9, a=12.96e9, b=12.96e9 * 1.001)
def test_a_rescaled_copy_never_grows_as_the_target_rate_does(
    recorded: float, nbytes: float, was: float, a: float, b: float
) -> None:
    from recsim.engine.replay import rescaled_copy_s

    slow, fast = min(a, b), max(a, b)
    for now in (slow, fast):
        assert rescaled_copy_s(recorded, nbytes, was, now) >= 0.0
    assert rescaled_copy_s(recorded, nbytes, was, fast) <= rescaled_copy_s(recorded, nbytes, was, slow)
    assert rescaled_copy_s(recorded, nbytes, was, was) == recorded
    # Around the recorded rate too (the equal-rate guard must not break the order).
    assert rescaled_copy_s(recorded, nbytes, was, min(was, slow)) >= recorded
    assert rescaled_copy_s(recorded, nbytes, was, max(was, fast)) <= recorded


def test_recorded_system_is_the_target_where_it_holds_the_gpu() -> None:
    from recsim.api import infer_recorded_system, load_system
    from recsim.hardware.library import HardwareLibrary

    target = load_system("hgx-a100-4gpu")
    assert infer_recorded_system(HardwareLibrary(), target, "a100-sxm4-80gb") is target


def test_recorded_system_is_else_the_first_library_system_by_name_holding_it() -> None:
    from recsim.api import infer_recorded_system, load_system
    from recsim.hardware.library import HardwareLibrary

    got = infer_recorded_system(HardwareLibrary(), load_system("dgx-h100"), "a100-sxm4-80gb")
    assert got is not None and got.name == "dgx-a100"  # before hgx-a100-4gpu


def test_recorded_system_is_none_where_no_library_system_holds_the_gpu() -> None:
    from recsim.api import infer_recorded_system, load_system
    from recsim.hardware.library import HardwareLibrary

    assert infer_recorded_system(HardwareLibrary(), load_system("dgx-h100"), "no-such-gpu") is None


def test_the_recorded_system_note_names_the_node_how_and_the_others_with_other_rates() -> None:
    # A reviewer's find: the replay never said which node's rates the recorded copies were read
    # at, and the A100 80GB is in dgx-a100 (12.96 GB/s host copies) and hgx-a100-4gpu (25.92).
    from recsim.api import infer_recorded_system, load_system, recorded_system_note
    from recsim.hardware.library import HardwareLibrary

    library = HardwareLibrary()
    target = load_system("dgx-h100")
    chosen = infer_recorded_system(library, target, "a100-sxm4-80gb")
    said = recorded_system_note(library, target, "a100-sxm4-80gb", chosen)
    assert said.startswith("recorded copies read at dgx-a100's copy rates (the first library system by name")
    assert "host 12.96 GB/s" in said and "hgx-a100-4gpu (host 25.92 GB/s" in said
    hgx = load_system("hgx-a100-4gpu")
    said = recorded_system_note(library, hgx, "a100-sxm4-80gb", hgx)
    assert "hgx-a100-4gpu's copy rates (the target system" in said and "dgx-a100 (host 12.96 GB/s" in said
    own = load_system("dgx-h100")
    assert "other library systems" not in recorded_system_note(library, own, "h100-sxm5-80gb", own)
    assert "no library system holds no-such-gpu" in recorded_system_note(library, own, "no-such-gpu", None)


@pytest.mark.parametrize("nbytes", [4096.0, 65536.0, 12345678.0, 2.5e9, 1e9, 777.0])
def test_a_peer_copy_over_pcie_is_priced_to_the_last_digit_as_before(nbytes: float) -> None:
    # A reviewer's find: ``b / (link / s)`` replaced the old ``b / link * s``, one ulp off for about
    # a quarter of sizes on h100-pcie-server. The old formula, written out:
    from recsim.api import load_system
    from recsim.cost.model import CostModel
    from recsim.graph.ir import Transfer

    system = load_system("h100-pcie-server")
    assert system.accelerator is not None
    cost = CostModel(system)
    old = (
        system.accelerator.host_interface.latency_s
        + nbytes / system.node.accelerator_link_bytes_per_s * cost._peer_copy_s_per_line_byte
    )
    assert cost.transfer_s(Transfer(src="peer", dst="hbm", bytes=nbytes)) == old


def test_a_python_caller_without_a_recorded_system_is_told_the_node_is_unknown() -> None:
    # A reviewer's find: the note said "no library system holds a100-sxm4-80gb" where one does and
    # the caller only left ``recorded_system`` out.
    from recsim.api import load_system
    from recsim.graph.ir import Transfer

    copy = Node(
        0,
        0,
        "Memcpy HtoD",
        Stream.COPY,
        Transfer(src="host", dst="hbm", bytes=1e6),
        duration_s=1e-3,
        start_s=0.0,
    )
    target, a100 = load_system("dgx-h100"), load_system("dgx-a100")
    assert a100.accelerator is not None
    notes = replay_reestimate(ExecutionGraph(1, [copy]), target, a100.accelerator).notes
    assert any("1 copies keep their recorded times: recorded node unknown" in n for n in notes), notes
    assert not any("no library system holds" in n for n in notes)


# -- the recorded node given (--recorded-system) -----------------------------------------------------


def _a100_80gb_copy(tmp_path: Path) -> Path:
    """A trace of one 1 GB pinned host-to-device copy of 100 ms on an A100 80GB: a GPU that
    dgx-a100 (12.96 GB/s host copies) and hgx-a100-4gpu (25.92 GB/s) both hold."""
    props = {"id": 0, "name": "NVIDIA A100-SXM4-80GB", "totalGlobalMem": 85_899_345_920}
    copy = {
        "ph": "X",
        "cat": "gpu_memcpy",
        "name": "Memcpy HtoD (Pinned -> Device)",
        "pid": 0,
        "tid": 7,
        "ts": 1000,
        "dur": 100_000,
        "args": {"device": 0, "stream": 7, "correlation": 1, "bytes": 1_000_000_000},
    }
    path = tmp_path / "a100_80gb_copy.json"
    path.write_text(
        json.dumps(
            {"deviceProperties": [{**props, "computeMajor": 8, "computeMinor": 0}], "traceEvents": [copy]}
        )
    )
    return path


def test_the_recorded_system_given_sets_the_rate_a_recorded_host_copy_is_read_at(tmp_path: Path) -> None:
    # A trace names its GPU, not its node: its A100 80GB copy was read at dgx-a100's rates (the
    # first by name) though it may have run on an hgx-a100-4gpu, at twice the rate.
    import recsim
    from recsim.api import load_system
    from recsim.cost.model import CostModel
    from recsim.graph.ir import Transfer

    path = _a100_80gb_copy(tmp_path)

    def rate(system: str) -> float:
        got = CostModel(load_system(system)).copy_bytes_per_s(Transfer(src="host", dst="hbm", bytes=1.0))
        assert got is not None
        return got

    assert rate("hgx-a100-4gpu") == pytest.approx(2 * rate("dgx-a100"), rel=1e-3)
    for node in ("dgx-a100", "hgx-a100-4gpu"):
        result = recsim.replay([path], system="dgx-h100", recorded_system=node)
        want = 0.1 - 1e9 / rate(node) + 1e9 / rate("dgx-h100")
        assert result.predicted_step_s == pytest.approx(want, rel=1e-9)
        assert f"recorded copies read at {node}'s copy rates (given: --recorded-system)" in result.notes[1]
    inferred = recsim.replay([path], system="dgx-h100")
    assert "(the first library system by name holding a100-sxm4-80gb" in inferred.notes[1]
    # The CLI passes it on.
    data = json.loads(
        _replay_cli(path, "--system", "dgx-h100", "--recorded-system", "hgx-a100-4gpu", "--json").output
    )
    assert data["predicted_step_s"] == pytest.approx(
        0.1 - 1e9 / rate("hgx-a100-4gpu") + 1e9 / rate("dgx-h100")
    )


def test_a_trace_naming_no_gpu_is_read_as_the_given_node_s() -> None:
    # The default GPU only stands in for one the trace does not name; the node given says which.
    import recsim

    result = recsim.replay([TRACES / "chakra.0.et.gz"], system="dgx-h100", recorded_system="dgx-a100")
    assert result.notes[0].startswith(
        "recorded on a100-sxm4-80gb (the accelerator of --recorded-system dgx-a100, the trace naming no GPU)"
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--recorded-system", "dgx-a10"],
            "--recorded-system: unknown system 'dgx-a10'; did you mean 'dgx-a100'",
        ),
        # An unknown --recorded-on names its option too.
        (
            ["--recorded-on", "a100-sxm4-4gb"],
            "--recorded-on: unknown accelerator 'a100-sxm4-4gb'; did you mean 'a100-sxm4-40gb'",
        ),
        # A node of another GPU than the trace's: refused, not read as overriding the trace's GPU.
        (
            ["--recorded-system", "p4d-24xlarge"],
            "--recorded-system p4d-24xlarge: p4d-24xlarge holds a100-sxm4-40gb, not a100-sxm4-80gb "
            "(the trace names 'NVIDIA A100-SXM4-80GB'); expected a node holding a100-sxm4-80gb, or "
            "--recorded-on a100-sxm4-40gb",
        ),
        (
            ["--recorded-on", "a100-sxm4-40gb", "--recorded-system", "dgx-a100"],
            "--recorded-system dgx-a100: dgx-a100 holds a100-sxm4-80gb, not a100-sxm4-40gb (--recorded-on)",
        ),
    ],
)
def test_a_recorded_system_unknown_or_without_the_recorded_gpu_is_refused(
    tmp_path: Path, args: list[str], said: str
) -> None:
    line = error_line(_replay_cli(_a100_80gb_copy(tmp_path), "--system", "dgx-h100", *args))
    assert said in line


def test_a_recorded_system_is_refused_with_the_recorded_durations(tmp_path: Path) -> None:
    line = error_line(_replay_cli(_a100_80gb_copy(tmp_path), "--recorded-system", "dgx-a100"))
    assert line == (
        "recsim: error: --recorded-system: only for --re-estimate (a replay with the recorded "
        "durations uses no hardware)"
    )
    # With the GPU given, a node holding it is taken (the trace's own GPU then does not count).
    import recsim

    given = recsim.replay(
        [_a100_80gb_copy(tmp_path)],
        system="dgx-h100",
        recorded_on="a100-sxm4-40gb",
        recorded_system="p4d-24xlarge",
    )
    assert "p4d-24xlarge's copy rates (given: --recorded-system)" in given.notes[1]


# -- nothing to time ---------------------------------------------------------------------------------


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_a_re_estimate_of_nothing_costable_is_refused_naming_the_file() -> None:
    # An execution trace whose operations are all CPU work and lookups: no recorded duration, no
    # model. It re-estimated to a step of 0 s at 0 W, exit 0 (a tester's find).
    et = TRACES / "generated" / "dlrm_tiny_et.json.gz"
    line = error_line(_run("replay", et, "--system", "dgx-h100", "--json"))
    assert line.startswith(f"recsim: error: {et}: the trace records no durations")
    assert "none of its 108 operations has a cost model's estimate on dgx-h100" in line
    assert "Kineto trace files too" in line
    # With its Kineto trace it has a step.
    result = _run(
        "replay", et, TRACES / "generated" / "dlrm_tiny_kineto.json.gz", "--system", "dgx-h100", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["predicted_step_s"] > 0


@pytest.mark.parametrize("system", [None, "dgx-h100"], ids=["keep", "re-estimate"])
def test_a_trace_whose_events_have_no_length_is_refused(tmp_path: Path, system: str | None) -> None:
    # A kernel without a 'dur' is read as 0 long: the replay was a step of 0 s (a tester's find).
    path = tmp_path / "nodur.json"
    path.write_text(
        json.dumps({"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 10, "pid": 0, "tid": 7}]})
    )
    line = error_line(_run("replay", path, *(("--system", system) if system else ())))
    on = " on dgx-h100" if system else ""
    assert line.startswith(f"recsim: error: {path}: no operation of the trace takes any time{on}")
    assert "1 record a duration of 0 (complete events without a 'dur' are read as 0 long)" in line


def test_the_untimed_rule_counts_each_kind_of_operation() -> None:
    from recsim.api import load_system

    # Two CPU ops without a recorded duration and a kernel recorded at 0: refused in both modes;
    # one recorded microsecond anywhere makes a step.
    kernel = Node(2, 0, "k", Stream.COMPUTE, Compute(op="k", category="elementwise"), (), 0, 0.0, 0.0)
    cpu = [Node(i, 0, f"h{i}", Stream.HOST, Host(op=f"h{i}"), ()) for i in (0, 1)]
    graph = ExecutionGraph(1, [*cpu, kernel])
    with pytest.raises(
        TraceError, match=r"of its 3 operations, 2 have no recorded duration; 1 record a duration of 0"
    ):
        replay_keep(graph)
    system = load_system("dgx-h100")
    h100 = system.accelerator
    assert h100 is not None
    with pytest.raises(
        TraceError, match=r"on dgx-h100.*2 have no recorded duration and no cost model; 1 record"
    ):
        replay_reestimate(graph, system, h100)
    timed = ExecutionGraph(1, [*cpu, dataclasses.replace(kernel, duration_s=1e-6)])
    assert replay_keep(timed).predicted_step_s == pytest.approx(1e-6)
    assert replay_reestimate(timed, system, h100).predicted_step_s == pytest.approx(1e-6)


# -- timeline --------------------------------------------------------------------------------------


def _slices(path: Path) -> list[dict[str, Any]]:
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    data = json.loads(text)
    assert isinstance(data["traceEvents"], list) and "recsim" in data["otherData"]
    return [e for e in data["traceEvents"] if e["ph"] == "X"]


def _check_streams_in_order(slices: list[dict[str, Any]]) -> None:
    by_thread: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for e in slices:
        by_thread.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_thread.values():
        spans.sort()
        assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans)), "slices overlap"


@pytest.mark.parametrize(
    ("trace", "system"),
    [
        ("simple_add_kineto.json.gz", None),
        ("simple_add_kineto.json.gz", "dgx-h100"),
        ("resnet_a100_2rank_nccl_metadata.json.gz", None),
        ("resnet_a100_2rank_nccl_metadata.json.gz", "dgx-b200"),
    ],
)
def test_replay_timeline_is_the_replayed_schedule(tmp_path: Path, trace: str, system: str | None) -> None:
    # A replay had no --timeline: a predicted schedule could not be seen (a tester's find).
    out = tmp_path / "r.trace.json.gz"
    args = ["replay", TRACES / trace, "--timeline", out, "--json", *(("--system", system) if system else ())]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    slices = _slices(out)
    graph = read_trace([TRACES / trace])
    assert len(slices) == len(graph.nodes)
    _check_streams_in_order(slices)
    # The last slice ends at the predicted makespan; the steps' span lies within it.
    end_s = max(e["ts"] + e["dur"] for e in slices) * 1e-6
    assert end_s == pytest.approx(figures["predicted_total_s"], rel=1e-9)
    assert figures["predicted_step_s"] * figures["steps"] <= end_s * (1 + 1e-9)
    if trace.startswith("simple"):  # no step markers: the step is the trace
        assert figures["steps"] == 1
        assert end_s == pytest.approx(figures["predicted_step_s"], rel=1e-9)
    lengths = sorted(e["dur"] * 1e-6 for e in slices)
    recorded = sorted(n.duration_s or 0.0 for n in graph.nodes)
    if system is None:  # the recorded durations, as rescheduled
        assert lengths == pytest.approx(recorded, rel=1e-9, abs=1e-12)
    else:  # the re-estimated ones: the GPU's kernels change length on another GPU
        assert lengths != pytest.approx(recorded, rel=1e-9, abs=1e-12)


def test_replay_timeline_in_the_api_and_refusals(tmp_path: Path) -> None:
    from recsim.api import replay

    result = replay([TRACES / "simple_add_kineto.json.gz"], system="dgx-h100")
    written = result.write_timeline(tmp_path / "api.trace.json")
    assert _slices(written)
    # A result not made by a replay keeps no schedule: a clear error, nothing written.
    with pytest.raises(ConfigError, match="no timeline"):
        ReplayResult("keep", 1, None, 1.0, 1.0).write_timeline(tmp_path / "none.trace.json")
    assert not (tmp_path / "none.trace.json").exists()
    # A file recsim did not write is kept, checked before the replay; a failed replay writes nothing.
    kept = tmp_path / "notes.json"
    kept.write_text('{"mine": 1}')
    line = error_line(_run("replay", TRACES / "simple_add_kineto.json.gz", "--timeline", kept))
    assert "is not a timeline recsim wrote" in line and kept.read_text() == '{"mine": 1}'
    out = tmp_path / "t.trace.json"
    error_line(_run("replay", TRACES / "generated" / "dlrm_tiny_et.json.gz", "--timeline", out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["api.trace.json", "notes.json"]


# -- documented fields -----------------------------------------------------------------------------


def test_every_json_field_of_a_replay_is_documented_and_no_other(tmp_path: Path) -> None:
    # The --json fields were documented nowhere (a tester's find): REPLAY_FIELDS lists them for
    # --help; a key added to to_dict without its meaning, or a meaning left for a removed key, fails.
    from recsim.api import replay
    from recsim.engine.replay_fields import REPLAY_FIELDS
    from recsim.metrics.result import RESOURCE_CLASSES, mapping_keys

    keys = mapping_keys()
    streams = keys["utilisation"][: -len(RESOURCE_CLASSES)]
    expand = {
        "<category>": keys["breakdown_s"],
        "<stream>": streams,
        "<resource>": RESOURCE_CLASSES,
        "<component>": keys["power_by_component_w"],
    }
    documented: list[str] = []
    for key, meaning in REPLAY_FIELDS:
        assert meaning
        prefix, _, part = key.partition(".")
        documented += [f"{prefix}.{k}" for k in expand[part]] if part else [key]
    trace = TRACES / "simple_add_kineto.json.gz"
    for result in (replay([trace]), replay([trace], system="dgx-h100")):
        assert list(result.to_dict()) == documented
    text = CliRunner().invoke(cli, ["replay", "--help"]).output
    assert all(f"\n    {key}\n" in text for key, _ in REPLAY_FIELDS)


# -- GEMMs re-estimated: split-K's reduction kernel ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "with_reduction"),
    [
        # The ET+Kineto reader's node of an operator: its duration sums every kernel the op
        # launched, the product's and cuBLAS's splitKreduce_kernel.
        ("aten::mm", True),
        # The Kineto reader's node of a kernel: the product's alone (the reduction is a node of
        # its own, with no FLOPs, rescaled as the other kernels).
        ("ampere_fp16_s16816gemm_fp16_64x64_ldg8_f2f_stages_64x5_tn", False),
    ],
)
def test_a_split_gemm_is_reestimated_with_the_kernels_its_node_recorded(
    name: str, with_reduction: bool
) -> None:
    from recsim.api import load_system
    from recsim.cost.compute import gemm_kernel_times, kernel_time_s
    from recsim.cost.model import CostModel
    from recsim.engine.replay import reestimate_duration

    system = load_system("dgx-a100")
    acc = system.accelerator
    assert acc is not None
    # A DLRM bottom-MLP weight gradient C[512, 256] over K = 65,536: split ten ways on an A100.
    op = Compute(
        name,
        flops=2.0 * 512 * 256 * 65536,
        dtype="fp16",
        shapes=((512, 65536), (65536, 256)),
        category="gemm",
    )
    (timed,) = gemm_kernel_times(op, acc)
    assert timed.splits > 1 and timed.reduce_s > 0
    node = Node(0, 0, name, Stream.COMPUTE, op, duration_s=1e-3)
    got = reestimate_duration(node, CostModel(system), acc, acc, CostModel(system))
    expected = kernel_time_s(op, acc) - (0.0 if with_reduction else timed.reduce_s)
    assert got == pytest.approx(expected, rel=1e-12)
