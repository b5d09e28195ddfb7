"""User mistakes on the command line: one clear line, exit 2, no traceback, nothing half-written.

Each case here was found by feeding the CLI bad input: outputs that cannot be written, options that
were silently ignored, a failed command that left files behind, errors that blamed the wrong file.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from recsim.cli import cli
from recsim.graph.ir import SCHEMA_VERSION
from tests.conftest import FIXTURES, error_line

ENV = {"RECSIM_HARDWARE_PATH": str(FIXTURES / "minilib"), "RECSIM_WORKLOAD_PATH": str(FIXTURES / "workloads")}
TINY = ["--system", "tiny", "--workload", "tiny-dlrm", "--nodes", "1", "--set", "node.accelerators.count=2"]
KINETO = FIXTURES.parent / "data" / "traces" / "simple_add_kineto.json.gz"
DATA = FIXTURES.parent / "data"
SWEEP = """\
kind: sweep
name: t
base: {system: tiny, workload: tiny-dlrm, nodes: 1, plan: table_wise, overrides: [node.accelerators.count=2]}
axes:
  plan: [table_wise, row_wise]
objectives: {throughput_samples_per_s: max}
"""


@pytest.fixture(autouse=True)
def _library_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------------------------- outputs


def test_a_chrome_timeline_of_a_trace_without_times_is_refused(tmp_path: Path) -> None:
    # An ET alone has no durations: every event sat at 0 with no length (a tester's find).
    et = DATA / "traces" / "pytorch_et_1.0.2-chakra.0.0.4_allgather_2rank.json.gz"
    line = error_line(run("trace", "convert", et, tmp_path / "ag.trace.json"))
    assert "records no times" in line and "Kineto" in line
    assert tree(tmp_path) == []
    assert run("trace", "convert", et, tmp_path / "ag.json").exit_code == 0  # a native graph is fine


@pytest.mark.parametrize(
    "args",
    [
        ("run", *TINY, "--timeline", "{}/missing/"),
        ("replay", str(KINETO), "--timeline", "{}/missing/"),
        ("plan", *TINY, "--out", "{}/missing/"),
        ("trace", "convert", str(KINETO), "{}/missing/"),
    ],
)
def test_an_output_ending_in_a_slash_is_a_folder_not_a_file(tmp_path: Path, args: tuple[str, ...]) -> None:
    # ``Path`` drops the slash: "--timeline out/" wrote a file called "out" (a reviewer's find).
    result = run(*(a.format(tmp_path) for a in args))
    assert result.exit_code == 2 and "names a folder, which does not exist" in result.output, result.output
    assert tree(tmp_path) == []
    # "-" made a file called "-": it is refused with the way to standard output.
    dash = [("-" if a == "{}/missing/" else a) for a in args]
    result = CliRunner().invoke(cli, dash, env=ENV)
    assert result.exit_code == 2 and "/dev/stdout for standard output" in result.output, result.output


def test_timeline_that_cannot_be_written_fails_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    line = error_line(run("run", *TINY, "--timeline", tmp_path / "adir"))
    assert "is a directory" in line
    line = error_line(run("run", *TINY, "--timeline", tmp_path / "missing" / "t.json"))
    assert f"the folder {tmp_path / 'missing'} does not exist" in line
    (tmp_path / "afile").write_text("x")
    line = error_line(run("run", *TINY, "--timeline", tmp_path / "afile" / "t.json"))
    assert "is not a folder" in line
    assert tree(tmp_path) == ["adir", "afile"]  # nothing written, no temporary file left


def test_a_timeline_replaces_only_a_timeline(tmp_path: Path) -> None:
    # A tester's --timeline pointed at the run's own plan file replaced it with a Chrome trace.
    plan = tmp_path / "in.plan.json"
    assert run("plan", *TINY, "--strategy", "table_wise", "--out", plan).exit_code == 0
    before = plan.read_text()
    line = error_line(run("run", *TINY, "--plan", plan, "--timeline", plan))
    assert "exists and is not a timeline recsim wrote" in line
    assert plan.read_text() == before
    timeline = tmp_path / "t.json"
    for _ in range(2):  # a timeline recsim wrote is replaced
        assert run("run", *TINY, "--timeline", timeline).exit_code == 0
    assert json.loads(timeline.read_text())["otherData"]["recsim"]


def test_a_typo_in_a_device_count_fails_at_once() -> None:
    # 10^6 NICs per GPU built a topology of millions of vertices: minutes and gigabytes before.
    line = error_line(run("run", *TINY, "--set", "node.nics.per_accelerator=1000000"))
    assert "nics.per_accelerator" in line and "at most 1,024 per node" in line


def test_a_field_set_on_a_platform_that_is_none_names_the_path_and_what_it_expects() -> None:
    # 'none' is the explicit choice not to model the platform: it has no fields to set.
    line = error_line(
        run("run", *TINY, "--set", "node.platform=none", "--set", "node.platform.fan_fraction=0.15")
    )
    assert "node.platform.fan_fraction=0.15" in line and "node.platform: 'none'" in line
    assert "expected a platform mapping or 'generic'" in line


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_an_output_on_a_device_is_written_in_place_not_replaced() -> None:
    result = run("plan", *TINY, "--strategy", "table_wise", "--out", "/dev/null")
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # still the device, not a plain file


def test_an_infeasible_plan_is_not_saved(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    sets = ["--set", "workload.tables[0].rows=4000000000", "--set", "planner.tiers=[hbm]"]
    sets += ["--set", "planner.embedding_dtypes=[fp32]"]
    line = error_line(run("plan", *TINY, *sets, "--out", out))
    assert "short" in line
    assert not out.exists()


def test_trace_convert_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    trace = tmp_path / "k.json.gz"
    trace.write_bytes(KINETO.read_bytes())
    line = error_line(run("trace", "convert", trace, trace))
    assert "is also an input" in line
    assert trace.read_bytes() == KINETO.read_bytes()
    ok = run("trace", "convert", trace, tmp_path / "k.native.json")
    assert ok.exit_code == 0, ok.output


# -------------------------------------------------------------------------------------- sweeps


def test_sweep_out_must_be_a_new_empty_or_sweep_folder(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP)
    (tmp_path / "afile").write_text("x")
    line = error_line(run("sweep", spec, "--out", tmp_path / "afile" / "sub", "--workers", "1"))
    assert "is a file, not a folder" in line
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    line = error_line(run("sweep", spec, "--out", mine, "--workers", "1"))
    assert "holds other files (notes.txt) and no sweep store" in line
    assert tree(mine) == ["notes.txt"]


def test_a_sweep_that_fails_before_any_point_leaves_no_folder(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP)
    out = tmp_path / "out"
    line = error_line(run("sweep", spec, "--out", out, "--scheduler", "tcp://127.0.0.1:1"))
    assert "--scheduler is for --executor dask" in line
    assert not out.exists()


def test_every_axis_value_is_checked_before_the_sweep_runs(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP.replace("plan: [table_wise, row_wise]", "workload.tables[0].rows: [100, -5]"))
    out = tmp_path / "out"
    line = error_line(run("sweep", spec, "--out", out, "--workers", "1"))
    assert line.endswith("axes.workload.tables[0].rows[1]: must be > 0, got -5"), line
    assert not out.exists()
    spec.write_text(SWEEP.replace("row_wise]", "./missing.plan.json]"))
    line = error_line(run("sweep", spec, "--out", out, "--workers", "1"))
    assert "axes.plan[1]: no such plan file" in line
    # A batch the GPUs cannot share is refused as `recsim run --batch-size` refuses it (a tester's
    # find: it was an infeasible row).
    spec.write_text(SWEEP.replace("plan: [table_wise, row_wise]", "batch_size: [8, 1001]"))
    line = error_line(run("sweep", spec, "--out", out, "--workers", "1"))
    assert "axes.batch_size[1]: global batch 1001 is not divisible by 2 ranks" in line, line
    assert not out.exists()


def test_a_sweep_where_no_point_succeeds_says_why_and_fails(tmp_path: Path) -> None:
    # A tester's sweep where no point succeeded ended "0 ok" with exit 0 and an empty front.
    spec = tmp_path / "s.yaml"
    # Exit 1, not 2 (a user mistake, with nothing written): the store and exports are the result.
    spec.write_text(SWEEP + "constraints: ['avg_power_w <= 1']\n")
    out = tmp_path / "out"
    result = run("sweep", spec, "--out", out, "--workers", "1")
    assert result.exit_code == 1
    assert "no point succeeded: constraint avg_power_w <= 1 violated" in " ".join(result.output.split())
    assert {"results.sqlite", "results.parquet", "pareto.csv"} <= {p.name for p in out.iterdir()}
    # One line, not an empty table whose title wrapped ("Pareto front (0 / points)").
    assert "Pareto front: no point (none is ok and meets every constraint)" in result.output
    assert "Pareto front (" not in result.output
    as_json = run("sweep", spec, "--out", out, "--workers", "1", "--resume", "--json")
    assert as_json.exit_code == 1 and "recsim: no point succeeded" in as_json.output


def test_results_reject_a_stage_the_store_does_not_have(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP)
    out = tmp_path / "out"
    assert run("sweep", spec, "--out", out, "--workers", "1", "--no-progress").exit_code == 0
    line = error_line(run("results", "show", out, "--stage", "bogus"))
    assert "no points at that stage (stages: analytic)" in line
    error_line(run("results", "export", out, "--to", tmp_path / "x.csv", "--stage", "bogus"))
    assert not (tmp_path / "x.csv").exists()


# ------------------------------------------------------------------------- options ignored before


def test_nodes_and_set_cluster_nodes_together_are_refused() -> None:
    line = error_line(run("run", *TINY, "--set", "cluster.nodes=2"))
    assert "both set cluster.nodes" in line


def test_unknown_validation_ids_are_refused() -> None:
    line = error_line(run("validate", "gemm-a100", "bogus"))
    assert "no validation case id starts with 'bogus'" in line


def test_replay_with_recorded_durations_refuses_the_re_estimate_options() -> None:
    line = error_line(run("replay", KINETO, "--keep-durations", "--system", "tiny"))
    assert "--system: only for --re-estimate" in line
    line = error_line(run("replay", KINETO, "--recorded-on", "nosuch-gpu"))
    assert "--recorded-on: only for --re-estimate" in line


def test_an_empty_trace_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"traceEvents": []}))
    line = error_line(run("replay", empty))
    assert "holds no operations" in line


def test_a_library_path_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    env = {**ENV, "RECSIM_HARDWARE_PATH": str(tmp_path / "nope")}
    line = error_line(run("run", *TINY, env=env))
    assert "$RECSIM_HARDWARE_PATH" in line and "is not a folder" in line
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "my-gpu.yaml").write_text("kind: accelerator\n")
    env = {**ENV, "RECSIM_HARDWARE_PATH": str(tmp_path / "flat")}
    line = error_line(run("hw", "list", env=env))
    assert "holds no devices/ or systems/ folder" in line


def test_too_many_nodes_fail_at_once_naming_the_option() -> None:
    line = error_line(run("run", "--system", "tiny", "--workload", "tiny-dlrm", "--nodes", "100000000"))
    assert "--nodes" in line and "at most 16,384" in line


def test_rdma_constants_labelled_socket_are_refused() -> None:
    # A reviewer's find: setting rdma=false and the block's transport to socket ran, costing the
    # ConnectX-7's RDMA constants (Simple at 0.97 of the line rate) as NCCL's socket transport.
    sets = ("--set", "node.nics.device.rdma=false", "--set", "node.nics.device.calibration.transport=socket")
    line = error_line(run("run", "--system", "dgx-h100", "--nodes", "2", *sets))
    assert "node.nics.device.calibration" in line and "ib-ndr-400g.yaml" in line
    assert "simple 0.97 > 0.48" in line and "socket transport" in line
    # The shipped socket NIC's block is within the bound, and so is no block at all.
    ok = run(
        "run",
        "--system",
        "dgx-h100",
        "--nodes",
        "2",
        "--set",
        "node.nics.device=eth-100g",
        "--set",
        "cluster.scale_out.switch=tomahawk-32x100g",
    )
    assert ok.exit_code == 0, ok.output


# -------------------------------------------------------------------------- errors in the right file


def test_a_set_typo_is_blamed_on_the_set_not_the_library_file() -> None:
    line = error_line(run("run", *TINY, "--set", "node.acelerators.count=4"))
    assert "--set node.acelerators.count=4: node.acelerators: unknown key 'acelerators'" in line
    line = error_line(run("run", *TINY, "--set", "workload.tables[x].rows=5"))
    assert "a list index is a whole number >= 0" in line


def test_a_missing_reference_names_the_file_and_key_that_points_to_it(tmp_path: Path) -> None:
    system = tmp_path / "s.yaml"
    system.write_text("kind: system\nextends: ./does-not-exist.yaml\nname: s\n")
    line = error_line(run("run", "--system", system, "--workload", "tiny-dlrm"))
    assert f"{system}:2: extends: ./does-not-exist.yaml: no such system file" in line
    system.write_text("kind: system\nextends: tiny\nname: s\nnode:\n  nics: {device: nope-nic}\n")
    line = error_line(run("run", "--system", system, "--workload", "tiny-dlrm"))
    assert f"{system}:5: node.nics.device: unknown nic 'nope-nic'" in line


def test_switching_an_inherited_variant_replaces_it(tmp_path: Path) -> None:
    workload = tmp_path / "w.yaml"
    workload.write_text(
        "kind: dlrm\nextends: tiny-dlrm\nname: w\nembedding: {access: {dist: empirical, stats: ./no.txt}}\n"
    )
    line = error_line(run("run", *TINY[:2], "--workload", workload, *TINY[4:]))
    # The inherited zipf keys are gone: the error is the user's missing file, nothing about 'alpha'.
    assert f"{workload}:4: embedding.access.stats: no such locality stats file" in line
    assert "alpha" not in line


def test_a_stats_file_or_section_a_workload_cannot_use_is_the_workloads_error(tmp_path: Path) -> None:
    # A tester found these accepted by `workload show` and reported by `run` against the stats
    # file alone: the workload file and key are named, when the workload loads.
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    workload = tmp_path / "w.yaml"
    head = "kind: dlrm\nextends: tiny-dlrm\nname: w\n"
    workload.write_text(head + "embedding: {access: {dist: empirical, stats: ./empty.txt}}\n")
    line = error_line(run("workload", "show", workload))
    assert f"{workload}:4: embedding.access.stats: {empty}: no locality-stats sections in the file" in line
    workload.write_text(
        head + "embedding:\n  access: {dist: empirical, stats: 2021-locality, section: 999}\n"
    )
    line = error_line(run("workload", "show", workload))
    assert f"{workload}:5: embedding.access.section: " in line
    assert "section 999 out of range (the file has 17)" in line
    line = error_line(
        run(
            "run",
            *TINY[:2],
            "--workload",
            "tiny-dlrm",
            *TINY[4:],
            "--set",
            "workload.embedding.access={dist: empirical, stats: 2021-locality, section: nope}",
        )
    )
    assert "embedding.access.section" in line and "no section named 'nope'" in line, line


# ---------------------------------------------------------------------------------------- golden


def test_golden_refuses_to_record_or_check_a_malformed_case(tmp_path: Path) -> None:
    case = tmp_path / "gold" / "bad"
    case.mkdir(parents=True)
    (case / "config.yaml").write_text("system: nosuch\nworkload: tiny-dlrm\nnodes: 1\n")
    expected = '{"metrics": {"status": "ok"}}\n'
    (case / "expected.json").write_text(expected)
    line = error_line(run("golden", "update", tmp_path / "gold"))
    assert "unknown system 'nosuch'" in line
    assert (case / "expected.json").read_text() == expected
    error_line(run("golden", "check", tmp_path / "gold"))


# ------------------------------------------------------------------------------ second round


def test_replay_counts_profiler_steps_per_rank() -> None:
    traces = sorted((FIXTURES.parent / "data" / "traces" / "param_dlrm_kineto").glob("*.json.gz"))
    result = run("replay", *traces, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["steps"] == 1  # eight ranks, one profiler step each: not eight steps
    # The one step is the span of the ranks' marked steps: the whole trace but what lies outside.
    assert 0.99 * data["predicted_total_s"] < data["predicted_step_s"] <= data["predicted_total_s"]


def test_replay_takes_folders_of_traces(tmp_path: Path) -> None:
    folders = [DATA / "traces" / "param_dlrm_et", DATA / "traces" / "param_dlrm_kineto"]
    files = [p for folder in folders for p in sorted(folder.iterdir())]
    by_folder = run("replay", *folders, "--json")
    assert by_folder.exit_code == 0, by_folder.output
    assert json.loads(by_folder.output) == json.loads(run("replay", *files, "--json").output)
    (tmp_path / "empty").mkdir()
    assert "a folder without trace files" in error_line(run("replay", tmp_path / "empty"))


def test_replay_of_ranks_that_disagree_names_the_files(tmp_path: Path) -> None:
    def rank(r: int, name: str) -> Path:
        args = {
            "correlation": 1,
            "stream": 21,
            "Collective name": name,
            "In msg nelems": 256,
            "Out msg nelems": 256,
            "Group size": 2,
            "dtype": "Float",
        }
        events = [
            {
                "ph": "X",
                "cat": "cuda_runtime",
                "name": "cudaLaunchKernel",
                "pid": 1,
                "tid": 1,
                "ts": 0,
                "dur": 2,
                "args": {"correlation": 1},
            },
            {
                "ph": "X",
                "cat": "kernel",
                "name": "ncclKernel",
                "pid": 0,
                "tid": 21,
                "ts": 5,
                "dur": 10,
                "args": args,
            },
        ]
        path = tmp_path / f"r{r}.json"
        path.write_text(json.dumps({"traceEvents": events, "distributedInfo": {"rank": r, "world_size": 2}}))
        return path

    line = error_line(run("replay", rank(0, "allreduce"), rank(1, "allgather")))
    assert "r0.json, " in line and "r1.json: collective" in line


def test_replay_refuses_ranks_with_different_step_counts(tmp_path: Path) -> None:
    from recsim.engine.replay import _recorded_steps
    from recsim.errors import TraceError
    from recsim.graph.ir import ExecutionGraph

    graph = ExecutionGraph(
        2, [], {"steps": [{"rank": 0, "duration_s": 1.0}] * 2 + [{"rank": 1, "duration_s": 1.0}]}
    )
    with pytest.raises(TraceError, match=r"rank 0: 2, rank 1: 1"):
        _recorded_steps(graph)


def test_a_recursive_yaml_alias_is_one_line(tmp_path: Path) -> None:
    system = tmp_path / "s.yaml"
    system.write_text("kind: system\nname: s\nextends: tiny\ncluster: &a {nodes: *a}\n")
    line = error_line(run("hw", "validate", system))
    assert f"{system}:4: a YAML alias refers to a collection that contains it" in line


def test_a_three_tier_clos_of_small_switches_is_refused() -> None:
    sets = ["--set", "cluster.scale_out.tiers=3", "--set", "cluster.scale_out.switch.ports=2"]
    line = error_line(run("run", "--system", "tiny", "--workload", "tiny-dlrm", *sets))
    assert "core radix" in line and "3-tier Clos" in line


def test_api_arguments_of_the_wrong_kind_are_config_errors() -> None:
    import recsim
    from recsim.errors import ConfigError

    with pytest.raises(ConfigError, match="comm_dtype 'banana'"):
        recsim.simulate("tiny", "tiny-dlrm", nodes=1, comm_dtype="banana")
    with pytest.raises(ConfigError, match="plan: expected a strategy name"):
        recsim.simulate("tiny", "tiny-dlrm", nodes=1, plan=None)
    with pytest.raises(ConfigError, match="steps: expected a whole number"):
        recsim.simulate("tiny", "tiny-dlrm", nodes=1, steps=0)
    with pytest.raises(ConfigError, match="expected a library name or the path"):
        recsim.load_system({"name": "tiny"})
    with pytest.raises(ConfigError, match="expected the path of a sweep spec"):
        recsim.sweep(None)
    assert len(recsim.read_trace(str(KINETO)).nodes) > 0  # one path, not a list of characters
    # A notebook's habits: one override or one validation id as a plain string is one, not one
    # per character; a typo of an engine is a ConfigError (not an infeasible point of a sweep).
    one = recsim.simulate("tiny", "tiny-dlrm", overrides="cluster.nodes=2")
    assert (
        one.status == "ok"
        and one.num_accelerators == recsim.simulate("tiny", "tiny-dlrm", nodes=2).num_accelerators
    )
    with pytest.raises(ConfigError, match="did you mean 'des'"):
        recsim.simulate("tiny", "tiny-dlrm", nodes=1, fidelity="dse")
    with pytest.raises(ConfigError, match="comm_interference: expected True or False"):
        recsim.simulate("tiny", "tiny-dlrm", nodes=1, comm_interference="no")
    with pytest.raises(ConfigError, match="overrides: expected a list of strings"):
        recsim.simulate("tiny", "tiny-dlrm", nodes=1, overrides=[1, 2])
    with pytest.raises(ConfigError, match="no validation case id starts with 'nope'"):
        recsim.validate("nope")


def test_make_plan_arguments_are_checked() -> None:
    from recsim import api
    from recsim.errors import ConfigError

    system, workload = api.prepare("tiny", "tiny-dlrm", nodes=1)
    for world in (0, -3, True):
        with pytest.raises(ConfigError, match=r"world size|expected a System"):
            api.make_plan("row_wise", workload, world)
    with pytest.raises(ConfigError, match=r"expected a System .* got 'tiny'"):
        api.make_plan("auto", workload, "tiny")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="workload: expected a Workload"):
        api.make_plan("auto", system, workload)  # type: ignore[arg-type]
    assert api.make_plan("row_wise", workload, 2).world_size == 2


def test_replay_errors_are_one_line() -> None:
    # An execution trace alone records no durations: a replay of it would be a step of 0.
    ets = sorted(str(p) for p in (DATA / "traces" / "param_dlrm_et").iterdir())
    line = error_line(run("replay", *ets))
    assert "records no durations" in line and "Kineto" in line
    assert line.startswith(f"recsim: error: {ets[0]}, {ets[1]}, {ets[2]}, ...: ")  # the files named
    # Re-estimating on a system without GPUs is infeasible, not a traceback.
    result = run("replay", KINETO, "--re-estimate", "--system", "broadwell-2s")
    assert result.exit_code == 2 and "no accelerator to replay GPU work on" in error_line(result)


def test_a_hardware_file_error_in_a_replay_names_that_file_only(tmp_path: Path) -> None:
    # A malformed accelerator file met while the replay looks for the trace's GPU was prefixed
    # with the trace's name, as if the trace were at fault (a tester's find).
    folder = tmp_path / "hw" / "devices"
    folder.mkdir(parents=True)
    broken = folder / "zz-broken.yaml"
    broken.write_text('kind: accelerator\nname: zz-broken\npeak:\n  x: "1 TFLOP/s"\n')
    env = {**ENV, "RECSIM_HARDWARE_PATH": f"{tmp_path / 'hw'}{os.pathsep}{ENV['RECSIM_HARDWARE_PATH']}"}
    line = error_line(run("replay", KINETO, "--system", "dgx-h100", env=env))
    assert line.startswith(f"recsim: error: {broken}:"), line
    assert str(KINETO) not in line


def test_replay_reads_the_recording_gpu_from_the_trace() -> None:
    from recsim import api

    # The PARAM DLRM Kineto traces were recorded on V100s ("Tesla V100-SXM2-32GB"), the recsys one
    # on A100s ("NVIDIA A100-PG509-200", 40 GB): the library's accelerators of that architecture
    # with the nearest memory.
    kineto = sorted(str(p) for p in (DATA / "traces" / "param_dlrm_kineto").iterdir())
    v100 = api.read_trace(kineto)
    assert v100.metadata["device"]["compute_capability"] == "7.0"
    assert api.recorded_accelerator(v100) == "v100-sxm2-32gb"
    recsys = api.read_trace(str(DATA / "traces" / "recsys_a100_8rank_rank3_control.json.gz"))
    assert api.recorded_accelerator(recsys) == "a100-sxm4-40gb"
    from recsim.errors import ConfigError
    from recsim.graph.ir import ExecutionGraph

    def on(name: str, cc: str, memory: float) -> ExecutionGraph:
        device = {"name": name, "memory_bytes": memory, "compute_capability": cc}
        return ExecutionGraph(1, metadata={"device": device})

    # Same memory, two form factors: the name says which.
    assert api.recorded_accelerator(on("NVIDIA H100 80GB HBM3", "9.0", 85e9)) == "h100-sxm5-80gb"
    assert api.recorded_accelerator(on("NVIDIA H100 PCIe", "9.0", 85e9)) == "h100-pcie-80gb"
    assert api.recorded_accelerator(on("NVIDIA B200", "10.0", 190e9)) == "b200-sxm-180gb"
    # An Ada or consumer Ampere GPU (8.9, 8.6) is not an A100: say so rather than guess.
    for cc in ("8.9", "8.6", "7.5"):
        with pytest.raises(ConfigError, match="--recorded-on"):
            api.recorded_accelerator(on("NVIDIA GeForce RTX 4090", cc, 24e9))
    assert api.recorded_accelerator(ExecutionGraph(1, metadata={})) is None
    # On its own GPU, a re-estimate keeps the memory-bound kernels' recorded times; told it ran on
    # an H100, they would be stretched by the H100/A100 bandwidth ratio, past the CPU time that
    # bounds the recorded step (a faster recording GPU would not show: the step stays CPU-bound).
    trace = str(DATA / "traces" / "recsys_a100_8rank_rank3_control.json.gz")
    own = api.replay([trace], keep=False, system="p4d-24xlarge")
    told = api.replay([trace], keep=False, system="p4d-24xlarge", recorded_on="h100-sxm5-80gb")
    named = api.replay([trace], keep=False, system="p4d-24xlarge", recorded_on="a100-sxm4-40gb")
    assert own.predicted_step_s == named.predicted_step_s != told.predicted_step_s


def test_a_zip_group_is_checked_row_by_row(tmp_path: Path) -> None:
    # Two GPUs only with their own mesh: each value alone would not resolve, the rows do.
    spec = tmp_path / "s.yaml"
    spec.write_text(
        SWEEP.replace(
            "axes:\n  plan: [table_wise, row_wise]\n",
            "zip:\n  - node.accelerators.count: [2, 3]\n    batch_size: [64, 96]\n",
        )
    )
    result = run("sweep", spec, "--out", tmp_path / "out", "--workers", "1", "--no-progress")
    assert result.exit_code == 0, result.output


def test_golden_update_keeps_a_case_that_expects_an_error(tmp_path: Path) -> None:
    case = tmp_path / "gold" / "cpu"
    case.mkdir(parents=True)
    # A plan for 4 ranks on 2 GPUs: the run fails (status error), which this case expects.
    four = [*TINY[:-1], "node.accelerators.count=4"]
    plan = run("plan", *four, "--strategy", "table_wise", "--out", case / "p.json")
    assert plan.exit_code == 0, plan.output
    (case / "config.yaml").write_text(
        "system: tiny\nworkload: tiny-dlrm\nnodes: 1\nplan: p.json\noverrides: [node.accelerators.count=2]\n"
    )
    (case / "expected.json").write_text('{"metrics": {"status": "error"}}\n')
    assert run("golden", "check", tmp_path / "gold").exit_code == 0
    assert run("golden", "update", tmp_path / "gold").exit_code == 0


def test_a_tier_the_system_lacks_names_the_file_and_shard(tmp_path: Path) -> None:
    plan = tmp_path / "p.json"
    assert run("plan", *TINY, "--strategy", "table_wise", "--out", plan).exit_code == 0
    data = json.loads(plan.read_text())
    data["shards"][0]["tier"] = "nmp"
    plan.write_text(json.dumps(data))
    line = error_line(run("run", *TINY, "--plan", plan))
    assert f"{plan}: shards[0].tier: tier 'nmp'" in line and "no NMP DIMMs" in line


def test_auto_groups_the_reasons_nothing_fits() -> None:
    sets = ["--set", "workload.tables[0].rows=4000000000", "--set", "planner.tiers=[hbm]"]
    sets += ["--set", "planner.embedding_dtypes=[fp32]"]
    line = error_line(run("run", *TINY, *sets))
    assert line.startswith("recsim: error: no strategy fits: greedy, memory_balanced, recshard: table 'a'"), (
        line
    )
    assert len(line) < 1500


def test_hidden_files_do_not_make_a_folder_unusable_for_a_sweep(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".gitkeep").write_text("")
    result = run("sweep", spec, "--out", out, "--workers", "1", "--no-progress")
    assert result.exit_code == 0, result.output


def test_replay_steps_without_a_usable_rank_are_no_traceback() -> None:
    from recsim.engine.replay import _recorded_steps
    from recsim.graph.ir import ExecutionGraph

    steps = [{"rank": None, "duration_s": 1.0}, {"rank": "x", "duration_s": 3.0}]
    assert _recorded_steps(ExecutionGraph(1, [], {"steps": steps})) == (2, 2.0)


def test_golden_treats_a_planner_override_typo_as_a_malformed_case(tmp_path: Path) -> None:
    case = tmp_path / "gold" / "typo"
    case.mkdir(parents=True)
    (case / "config.yaml").write_text(
        "system: tiny\nworkload: tiny-dlrm\nnodes: 1\nplan: table_wise\n"
        "overrides: [node.accelerators.count=2, planner.finalistz=2]\n"
    )
    (case / "expected.json").write_text('{"metrics": {"status": "ok"}}\n')
    line = error_line(run("golden", "check", tmp_path / "gold"))
    assert "finalistz" in line


# -------------------------------------------------------------------------------- third round


def test_results_front_is_the_sweeps_front_and_objectives_are_checked(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    stages = "stages: [{fidelity: analytic}, {fidelity: des, top: 1}]\n"
    spec.write_text(SWEEP.replace("objectives:", stages + "objectives:"))
    out = tmp_path / "out"
    assert run("sweep", spec, "--out", out, "--workers", "1", "--no-progress").exit_code == 0
    shown = json.loads(run("results", "show", out, "--front", "--json").output)
    pareto = (out / "pareto.csv").read_text().strip().splitlines()
    assert len(shown) == len(pareto) - 1  # the same front as the sweep wrote (header line aside)
    line = error_line(run("results", "show", out, "--objective", "bogus=max"))
    assert "no metric 'bogus'" in line


def test_a_set_on_an_axis_path_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP.replace("plan: [table_wise, row_wise]", "workload.tables[0].rows: [100, 200]"))
    line = error_line(run("sweep", spec, "--out", tmp_path / "out", "--set", "workload.tables[0].rows=5"))
    assert "is also varied at axes.workload.tables[0].rows" in line


def test_recsims_own_timeline_is_not_read_as_a_profile(tmp_path: Path) -> None:
    timeline = tmp_path / "t.json"
    assert run("run", *TINY, "--timeline", timeline).exit_code == 0
    line = error_line(run("trace", "info", timeline))
    assert "a Chrome timeline written by recsim" in line


def test_results_show_a_store_whose_points_all_failed(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    huge = "workload.tables[0].rows: [100000000000000, 200000000000000]"
    text = SWEEP.replace("plan: [table_wise, row_wise]", huge).replace("plan: table_wise", "plan: auto")
    spec.write_text(text)
    out = tmp_path / "out"
    # No point succeeded: the sweep says so and exits 1, its store kept for `results show`.
    assert run("sweep", spec, "--out", out, "--workers", "1", "--no-progress").exit_code == 1
    shown = run("results", "show", out)
    assert shown.exit_code == 0, shown.output  # the failed points and their reasons, not an error
    assert "infeasible" in shown.output


# --------------------------------------------------------------- a tester's round (2026-12-05)


def test_two_node_counts_before_and_after_the_command_are_refused() -> None:
    # `recsim --nodes 2 run --nodes 4` ran 4 nodes without a word, where --nodes with a --set of
    # cluster.nodes is refused as two settings of one thing.
    line = error_line(run("--nodes", "2", "run", *TINY, "--nodes", "4"))
    assert line == (
        "recsim: error: --nodes 2 (before the command) and --nodes 4 both set cluster.nodes; give one of them"
    ), line
    assert run("--nodes", "2", "run", *TINY, "--nodes", "2").exit_code == 0  # the same count twice


def test_an_infinite_float_setting_is_refused_where_it_is_written() -> None:
    for value in (".inf", ".nan"):
        line = error_line(run("run", *TINY, "--set", f"cluster.scale_out.oversubscription={value}"))
        assert "cluster.scale_out.oversubscription" in line and "finite" in line, line


def test_a_required_key_removed_by_a_null_set_names_the_set_not_the_file() -> None:
    line = error_line(run("run", *TINY, "--set", "node.accelerators.count=null"))
    assert line.startswith("recsim: error: --set node.accelerators.count=null:"), line
    assert "missing required key 'count'" in line


@pytest.mark.parametrize(("value", "spelled"), [("1e6", "1000000"), ("2e+3", "2000"), ("1.5e3", "1500")])
def test_a_number_yaml_reads_as_text_says_how_to_write_it(value: str, spelled: str) -> None:
    line = error_line(run("run", *TINY, "--set", f"workload.tables[0].rows={value}"))
    assert f"expected an integer, got str '{value}' (YAML reads {value} as text: write {spelled})" in line


def test_a_float_yaml_reads_as_text_is_spelled_with_a_dot_and_a_signed_exponent() -> None:
    line = error_line(run("run", *TINY, "--set", "cluster.scale_out.oversubscription=1e300"))
    assert "write 1.0e+300" in line, line


@pytest.mark.parametrize(
    "key", ["cluster..nodes", ".cluster.nodes", "cluster.nodes.", "workload.tables.[0].rows"]
)
def test_an_empty_key_in_a_set_path_is_refused(key: str) -> None:
    line = error_line(run("run", *TINY, "--set", f"{key}=2"))
    assert "an empty key in the path" in line, line


@pytest.mark.parametrize("plan", ["greedy", "torchrec"])
def test_a_batch_the_ranks_cannot_share_suggests_ones_they_can(plan: str) -> None:
    line = error_line(run("run", *TINY, "--batch-size", "7", "--plan", plan))
    assert "global batch 7 is not divisible by 2 ranks" in line, line
    assert "--batch-size" in line and "e.g. 6 or 8" in line


def test_a_dense_side_larger_than_hbm_is_named_not_a_table() -> None:
    line = error_line(run("run", *TINY, "--batch-size", "2000000000"))
    assert "the dense side alone" in line and "smaller global batch" in line, line
    assert "fits nowhere" not in line


def test_a_folder_given_as_a_system_file_says_so(tmp_path: Path) -> None:
    line = error_line(run("run", "--system", tmp_path, "--workload", "tiny-dlrm"))
    assert "a folder, not a system file" in line, line


def test_straggler_messages_name_the_option() -> None:
    line = error_line(run("run", *TINY, "--straggler", "0=0"))
    assert "(--straggler)" in line, line
    line = error_line(run("run", *TINY, "--slow-nic", "9=0.5"))
    assert "(--slow-nic)" in line, line


def test_replay_says_what_a_tar_an_empty_file_and_a_folder_of_notes_are(tmp_path: Path) -> None:
    import io
    import tarfile

    archive = tmp_path / "traces.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = KINETO.read_bytes()
        info = tarfile.TarInfo("rank0.json.gz")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert "a tar archive, not a trace: extract it" in error_line(run("replay", archive))
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert error_line(run("replay", empty)).endswith("empty.json: an empty file")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "README.md").write_text("the traces of ...\n")
    assert "a folder without trace files" in error_line(run("replay", notes))
    # Beside a trace, the notes are skipped.
    (notes / "rank0.json.gz").write_bytes(KINETO.read_bytes())
    assert run("replay", notes).exit_code == 0


# ---------------------------------------------------- a tester's round on sweeps (2026-12-05)


def test_results_commands_do_not_turn_a_file_into_a_store(tmp_path: Path) -> None:
    empty = tmp_path / "f.txt"
    empty.write_text("")
    for args in (["list", empty], ["show", empty], ["export", empty, "--to", tmp_path / "e.csv"]):
        line = error_line(run("results", *args))
        assert "not a recsim results store (an empty file)" in line, line
        assert empty.stat().st_size == 0
    assert not (tmp_path / "e.csv").exists()


def test_a_scheduler_that_is_not_an_address_names_the_option(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP)
    args = ("--executor", "dask", "--scheduler", "notanaddress")
    line = error_line(run("sweep", spec, "--out", tmp_path / "o", *args))
    assert "--scheduler 'notanaddress': not a scheduler address" in line, line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("constraint", "says"),
    [
        ('"iteration_time_s <= abc"', "needs a number"),
        ('"iteration_time_s <<= 3"', "unknown operator '<<='"),
        ('"iteration_time_s <= 50 ms"', "no units: 50 ms is 0.05"),
        ('"iteration_time_s <= 1e-3"', "YAML reads 1e-3 as text: write 0.001"),
        ('{metric: iteration_time_s, op: "<=", value: [1]}', "needs a number"),
        ("iteration_time_s", "alone is not a condition"),
        ('"breakdown_s.bogus <= 1"', "unknown metric 'breakdown_s.bogus'"),
        ('"latency_p50_s <= 1.0"', "an inference metric"),
    ],
)
def test_a_constraint_no_point_could_meet_is_refused_before_the_sweep(
    tmp_path: Path, constraint: str, says: str
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP + f"constraints: [{constraint}]\n")
    line = error_line(run("sweep", spec, "--out", tmp_path / "o"))
    assert "constraints[0]" in line and says in line, line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("objective", "says"),
    [("breakdown_s.bogus", "did you mean 'breakdown_s.host'"), ("latency_p50_s", "an inference metric")],
)
def test_an_objective_no_point_has_is_refused(tmp_path: Path, objective: str, says: str) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP.replace("throughput_samples_per_s: max", f"{objective}: min"))
    line = error_line(run("sweep", spec, "--out", tmp_path / "o"))
    assert says in line, line


def test_a_sweep_of_known_mapping_metrics_runs_and_an_idle_stream_reads_zero(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    text = SWEEP.replace("throughput_samples_per_s: max", "power_by_component_w.accelerators: min")
    # Nothing runs on the copy or host streams of this plan, and the tiny system has no SSDs: those
    # figures are zero at every point, not missing.
    constraints = (
        '"utilisation.compute >= 0.0", "utilisation.copy <= 0.9", "power_by_component_w.ssds <= 1.0"'
    )
    spec.write_text(text + f"constraints: [memory_fits, {constraints}]\n")
    result = run("sweep", spec, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "(2 ok, 0 infeasible" in result.output, result.output


def test_an_axis_value_given_twice_is_refused_but_a_zipped_one_may_repeat(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP.replace("plan: [table_wise, row_wise]", "plan: [greedy, greedy]"))
    line = error_line(run("sweep", spec, "--out", tmp_path / "o"))
    assert "axes.plan: the value 'greedy' is given twice" in line, line
    zipped = "zip:\n  - {plan: [table_wise, table_wise], batch_size: [8, 16]}\n"
    spec.write_text(SWEEP.replace("axes:\n  plan: [table_wise, row_wise]\n", "axes: {}\n" + zipped))
    result = run("sweep", spec, "--out", tmp_path / "z")
    assert result.exit_code == 0, result.output
    same = "zip:\n  - {plan: [table_wise, table_wise], batch_size: [8, 8]}\n"
    spec.write_text(SWEEP.replace("axes:\n  plan: [table_wise, row_wise]\n", "axes: {}\n" + same))
    assert "is given twice" in error_line(run("sweep", spec, "--out", tmp_path / "w"))


def test_a_search_key_of_another_method_says_which(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP + "search: {method: grid}\n")
    line = error_line(run("sweep", spec, "--out", tmp_path / "o", "--set", "search.samples=3"))
    assert "'samples' goes with method: random" in line, line


def test_a_device_of_another_kind_is_blamed_on_the_reference(tmp_path: Path) -> None:
    system = tmp_path / "s.yaml"
    text = (FIXTURES / "minilib" / "systems" / "tiny.yaml").read_text()
    system.write_text(text.replace("device: tiny-gpu", "device: tiny-nic"))
    line = error_line(run("hw", "validate", system))
    assert line.startswith(f"recsim: error: {system}:5: node.accelerators.device: 'tiny-nic' is a nic"), line
    assert "not an accelerator" in line
    line = error_line(run("run", *TINY, "--set", "node.nics.device=tiny-gpu"))
    assert "node.nics.device: 'tiny-gpu' is an accelerator (" in line and "not a nic" in line


def test_a_trace_given_twice_and_a_file_as_golden_folder_say_so(tmp_path: Path) -> None:
    line = error_line(run("replay", KINETO, KINETO))
    assert "given twice; give each rank's file once" in line, line
    spec = tmp_path / "base.yaml"
    spec.write_text("x: 1\n")
    assert "a file, not a golden folder" in error_line(run("golden", "check", spec))


@pytest.mark.parametrize("key", ["cluster.\u00b2", "workload.tables[0]rows"])
def test_odd_set_paths_are_one_line_errors(key: str) -> None:
    error_line(run("run", *TINY, "--set", f"{key}=1"))


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ('"2"', "remove the quotes"),
        ('"1.5"', None),
        ("1e-5", None),
        ("1e23", "write 1" + "0" * 23),
        ('"128.0"', "write 128"),
        ('"010"', "write 10"),
    ],
)
def test_the_number_hint_never_suggests_what_would_fail_again(value: str, hint: str | None) -> None:
    line = error_line(run("run", *TINY, "--set", f"workload.tables[0].rows={value}"))
    assert "expected an integer" in line, line
    if hint is None:
        assert "(" not in line.rsplit("expected an integer", 1)[1], line
    else:
        assert hint in line, line


def test_trace_folders_read_every_file_but_documents(tmp_path: Path) -> None:
    import gzip

    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "rank0.JSON").write_bytes(gzip.decompress(KINETO.read_bytes()))
    (folder / "NOTES.md").write_text("notes\n")
    assert run("replay", folder).exit_code == 0
    # By suffix: a bare README or licence beside the traces is not one (a trace named on its own
    # is read whatever its name).
    (folder / "README").write_text("notes\n")
    (folder / "LICENSE").write_text("licence\n")
    assert run("replay", folder).exit_code == 0
    bare = tmp_path / "b"
    bare.mkdir()
    (bare / "rank0_trace").write_bytes(KINETO.read_bytes())
    assert "a folder without trace files" in error_line(run("replay", bare))
    assert run("replay", bare / "rank0_trace").exit_code == 0
    empty = tmp_path / "e.json.gz"
    empty.write_bytes(gzip.compress(b""))
    assert error_line(run("replay", empty)).endswith("e.json.gz: an empty file")


def test_json_with_ustar_where_a_tar_has_it_is_not_taken_for_a_tar(tmp_path: Path) -> None:
    text = '{"traceEvents": [], "pad": "' + "x" * 228 + 'custard"}'
    assert text.index("ustar") == 257
    path = tmp_path / "custard.json"
    path.write_text(text)
    line = error_line(run("replay", path))
    assert "tar archive" not in line, line


def test_json_run_prints_an_infeasible_result_when_no_plan_fits() -> None:
    sets = ["--set", "workload.tables[0].rows=4000000000", "--set", "planner.tiers=[hbm]"]
    sets += ["--set", "planner.embedding_dtypes=[fp32]"]
    result = CliRunner().invoke(cli, ["run", *TINY, *sets, "--json"])
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["status"] == "infeasible" and data["reason"].startswith("no strategy fits")
    assert data["system"] == "tiny" and data["plan"] == "auto" and data["memory_fits"] is False
    assert data["num_accelerators"] == 2 and data["global_batch_size"] > 0 and data["recsim_version"]
    assert "recsim: infeasible: no strategy fits" in result.stderr
    # The same keys as an ok run's, so that runs' JSON lines make one table.
    ok = CliRunner().invoke(cli, ["run", *TINY, "--json"])
    assert ok.exit_code == 0, ok.output
    assert list(json.loads(ok.stdout)) == list(data)


def test_a_batch_axis_and_its_path_axis_together_are_refused(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    axes = "axes:\n  batch_size: [8, 16]\n  workload.training.global_batch_size: [4, 32]\n"
    spec.write_text(SWEEP.replace("axes:\n  plan: [table_wise, row_wise]\n", axes))
    line = error_line(run("sweep", spec, "--out", tmp_path / "o"))
    assert "varies the same setting as 'batch_size'" in line, line


def test_trace_convert_keeps_a_recording_in_the_output_place(tmp_path: Path) -> None:
    # ``recsim trace convert traces/*``: the glob's last trace lands where the output goes.
    recording = tmp_path / "rank1.json.gz"
    shutil.copy(DATA / "traces" / "simple_add_pytorch_et.json.gz", recording)
    before = recording.read_bytes()
    line = error_line(run("trace", "convert", KINETO, recording))
    assert "exists and is not a conversion recsim wrote" in line, line
    assert recording.read_bytes() == before
    # A truncated recording (no format recognised) is kept as well.
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(before[: len(before) // 2])
    assert "is not a conversion recsim wrote" in error_line(run("trace", "convert", KINETO, cut))
    assert cut.read_bytes() == before[: len(before) // 2]
    # Its own conversions it replaces, native and Chrome alike, and an empty file.
    (tmp_path / "empty.json").write_text("")
    for name in ("graph.json", "view.trace.json", "empty.json"):
        for _ in range(2):
            assert run("trace", "convert", KINETO, tmp_path / name).exit_code == 0


def test_trace_convert_with_one_argument_asks_for_the_output() -> None:
    result = run("trace", "convert", KINETO)
    assert result.exit_code == 2
    assert (
        "give the output file after the trace(s)" in result.output
        and "Missing argument 'INPUTS" not in result.output
    )


def test_a_set_without_its_prefix_says_which_prefix() -> None:
    # A tester's --set training.precision=fp61 was told the system's keys only.
    line = error_line(run("run", *TINY, "--set", "training.precision=fp16"))
    assert "'training' is a workload key; write workload.training.precision=fp16" in line
    line = error_line(run("run", *TINY, "--set", "plannr.tiers=[hbm]"))
    assert "did you mean planner.tiers=[hbm]?" in line
    line = error_line(run("run", *TINY, "--set", "finalists=2"))
    assert "'finalists' is a planner key; write planner.finalists=2" in line


def _no_python_warning(output: str) -> None:
    assert "UserWarning" not in output and ".py:" not in output, output


def test_a_readers_warning_is_one_clean_line(tmp_path: Path) -> None:
    """An unknown ET schema, or a native graph of another minor version, printed Python's warning:
    ``/.../pytorch_et.py:944: UserWarning: ...`` and the source line that warned."""
    import gzip

    et = json.loads(gzip.decompress((DATA / "traces" / "simple_add_pytorch_et.json.gz").read_bytes()))
    et["schema"] = "9.9.9"
    path = tmp_path / "et.json"
    path.write_text(json.dumps(et))
    result = CliRunner().invoke(cli, ["trace", "info", str(path)])
    assert result.exit_code == 0, result.output
    _no_python_warning(result.output)
    assert f"recsim: warning: {path}: unknown PyTorch ET schema version '9.9.9'" in result.output

    native = tmp_path / "g.json"
    assert CliRunner().invoke(cli, ["trace", "convert", str(KINETO), str(native)]).exit_code == 0
    doc = json.loads(native.read_text())
    # The next minor version of the graph schema: a newer file this recsim reads with a warning.
    major, minor = SCHEMA_VERSION.split(".")
    newer = f"{major}.{int(minor) + 1}"
    doc["version"] = newer
    doc["nodes"][0]["op"]["newfield"] = 1
    native.write_text(json.dumps(doc))
    result = CliRunner().invoke(cli, ["trace", "info", str(native)])
    assert result.exit_code == 0, result.output
    _no_python_warning(result.output)
    assert (
        f"recsim: warning: {native}: graph schema version {newer}, reading as {SCHEMA_VERSION}\n"
        in result.output
    )
    assert (
        f"recsim: warning: {native}: fields of schema version {newer} this recsim does not know"
        in result.output
    )

    doc["version"] = "9.0"
    native.write_text(json.dumps(doc))
    line = error_line(CliRunner().invoke(cli, ["trace", "info", str(native)]))
    assert (
        "graph schema version '9.0' is not supported: newer than this recsim's "
        f"(1.x, its own {SCHEMA_VERSION})" in line
    )


def test_resume_of_a_folder_with_no_store_starts_a_new_sweep_and_says_so(tmp_path: Path) -> None:
    # A tester's find: --resume on a mistyped --out silently started afresh.
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP)
    out = tmp_path / "out"
    first = run("sweep", spec, "--out", out, "--workers", "1", "--resume", "--no-progress")
    assert first.exit_code == 0, first.output
    assert f"recsim: note: no store in {out}: starting a new sweep" in first.stderr
    again = run("sweep", spec, "--out", out, "--workers", "1", "--resume", "--no-progress")
    assert again.exit_code == 0 and "no store" not in again.output
    fresh = run("sweep", spec, "--out", tmp_path / "other", "--workers", "1", "--no-progress")
    assert fresh.exit_code == 0 and "no store" not in fresh.output


def test_sweep_cosmetics(tmp_path: Path) -> None:
    """A tester's finds: more samples than the grid ran it whole silently; `results show` listed the
    axes alphabetically, not in the spec's order; --json rows gave lists as JSON text."""
    spec = tmp_path / "s.yaml"
    axes = "plan: [table_wise, row_wise]\n  cluster.scale_out.oversubscription: [1, 2]"
    spec.write_text(
        SWEEP.replace("plan: [table_wise, row_wise]", axes) + "search: {method: random, samples: 9}\n"
    )
    out = tmp_path / "out"
    result = run("sweep", spec, "--out", out, "--workers", "1", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "recsim: note: search.samples 9 is more than the 4 points of the grid: running every one" in (
        result.stderr
    )
    shown = run("results", "show", out)
    header = next(line for line in shown.output.splitlines() if "status" in line)
    assert header.index("plan") < header.index("cluster.scale_out.oversubs"), header
    rows = json.loads(run("results", "show", out, "--json").stdout)
    # Lists as JSON lists: the tiny GPU's note on the default fits it is costed with.
    assert isinstance(rows[0]["notes"], list) and isinstance(rows[0]["config"], str)
    # (the tiny fixture's calibration defaults and its generic platform)
    assert [n.split(":")[0] for n in rows[0]["notes"]] == [
        "calibrations not measured on this hardware",
        "platform",
    ]


@pytest.mark.parametrize(
    ("command", "path"),
    [
        (["workload", "show", "tiny-dlrm"], "workload show"),
        (["hw", "list"], "hw list"),
        (["trace", "info", str(KINETO)], "trace info"),
        (["validate", "gemm-a100"], "validate"),
    ],
)
def test_global_system_options_before_a_command_that_takes_none_are_refused(
    command: list[str], path: str
) -> None:
    # They had been ignored silently (`recsim --nodes 4 workload show ...`, a README tester's find).
    for given in (["--nodes", "4"], ["--set", "node.accelerators.count=2"]):
        line = error_line(run(*given, *command))
        assert f"--nodes and --set before the command apply to a system; '{path}' takes none" in line


def test_global_system_options_still_reach_the_commands_that_take_them() -> None:
    shown = run("--nodes", "2", "hw", "show", "tiny", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["num_nodes"] == 2


# Calls the CLI in a fresh process that sends itself SIGTERM once the output's temporary file is
# written, before the rename: deterministic, where a kill from outside races the writer.
_TERM_WHILE_WRITING = """
import os, signal, sys
import recsim.output as output
from recsim.cli import main

real = output._give_mode

def term_then_go_on(tmp, path):
    assert tmp.stat().st_size > 0  # the bytes are in the temporary file
    os.kill(os.getpid(), signal.SIGTERM)
    real(tmp, path)

output._give_mode = term_then_go_on
main(sys.argv[1:])
"""


def test_sigterm_while_writing_leaves_no_temporary_file(tmp_path: Path) -> None:
    # SIGTERM (kill) during `trace convert` left ".x.trace.json.XXXX.tmp" where Ctrl-C was clean (a
    # tester's find): it now takes Ctrl-C's way, the writer's clean-up included.
    import subprocess
    import sys

    import recsim

    out = tmp_path / "out"
    out.mkdir()
    root = Path(recsim.__file__).resolve().parents[1]
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _TERM_WHILE_WRITING,
            "trace",
            "convert",
            str(KINETO),
            str(out / "x.trace.json"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **ENV, "PYTHONPATH": str(root)},
        check=False,
        timeout=120,
    )
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "recsim: interrupted"
    assert tree(out) == []  # neither the output nor its temporary file


def test_the_sigterm_handler_is_put_back_after_a_command() -> None:
    import signal

    from recsim.cli_common import _term_as_interrupt

    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with _term_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    # A handler the host process set is kept.
    def mine(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with _term_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert run("hw", "list").exit_code == 0
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# --------------------------------------------------- a tester's round on trace replay (2026-12-06)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than the JSON reader can follow"),
        ('{"traceEvents": [{"ph": "X", "ts": ' + "1" * 5000 + "}]}", "Exceeds the limit (4300 digits)"),
    ],
    ids=["deeply-nested", "5000-digit-number"],
)
def test_json_the_parser_cannot_take_is_one_line(tmp_path: Path, text: str, says: str) -> None:
    # Both were tracebacks (RecursionError, ValueError: neither is a JSONDecodeError), and the
    # timeline asked for was not written.
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    line = error_line(run("replay", bad, "--timeline", tmp_path / "t.trace.json"))
    assert "bad.json: invalid JSON" in line and says in line, line
    assert tree(tmp_path) == ["bad.json"]


# ------------------------------------------------- a helper's round on paths and specs (2026-12-07)

LONG = "x" * 300  # past the 255 bytes a name between slashes may hold on Linux's file systems


@pytest.mark.parametrize(
    "args",
    [
        ("plan", *TINY, "--out", "{}/" + LONG + ".json"),
        ("run", *TINY, "--timeline", "{}/" + LONG + ".json"),
        ("run", "--system", "{}/" + LONG + ".yaml", "--workload", "tiny-dlrm"),
        ("run", *TINY, "--set", "workload.embedding.access={dist: empirical, stats: {}/" + LONG + ".txt}"),
        ("replay", "{}/" + LONG + ".json"),
        ("trace", "convert", str(KINETO), "{}/" + LONG + ".json"),
        ("results", "show", "{}/" + LONG),
        ("golden", "check", "{}/" + LONG),
        ("workload", "show", "{}/" + LONG + ".yaml"),
    ],
    ids=["plan-out", "timeline", "system", "stats", "replay", "convert", "results", "golden", "workload"],
)
def test_a_path_too_long_for_the_file_system_is_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    # pathlib's is_file()/is_dir() raise OSError (ENAMETOOLONG) rather than answer False: each of
    # these was a traceback.
    line = error_line(run(*(a.replace("{}", str(tmp_path)) for a in args)))
    assert "a file name longer than the file system allows" in line and "give a shorter path" in line
    assert "xxx...xxx" in line  # the name is shown by its ends, not in full
    assert tree(tmp_path) == []


def test_a_sweep_out_too_long_for_the_file_system_is_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP)
    line = error_line(run("sweep", spec, "--out", tmp_path / LONG, "--workers", "1"))
    assert "a file name longer than the file system allows" in line
    assert tree(tmp_path) == ["s.yaml"]


def test_a_nul_character_in_a_yaml_text_is_refused_where_it_is_written(tmp_path: Path) -> None:
    # YAML's "\0" escape put a NUL byte into a path: a ValueError traceback from resolve() for a
    # sweep's plan or system and a --set stats file (elsewhere a "no such file" with the NUL printed).
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP.replace("row_wise]", '"./a\\0b.json"]'))
    line = error_line(run("sweep", spec, "--out", tmp_path / "out", "--workers", "1"))
    assert f"{spec}:5: axes.plan[1]: a NUL character (\\0) in a text" in line, line
    assert tree(tmp_path) == ["s.yaml"]
    access = 'workload.embedding.access={dist: zipf, alpha: 1, x: "a\\0"}'
    line = error_line(run("run", *TINY, "--set", access))
    assert "--set 'workload.embedding.access=" in line and "a NUL character (\\0) in a text" in line
    system = tmp_path / "sys.yaml"
    system.write_text('kind: system\nextends: tiny\nname: s\nnode: {nics: {device: "nic\\0"}}\n')
    line = error_line(run("run", "--system", system, "--workload", "tiny-dlrm"))
    assert f"{system}:4: node.nics.device: a NUL character" in line and "'nic\\x00'" in line


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        (
            "workload=null",
            "'workload' alone is no key: a path goes on into the workload, e.g. workload.tables",
        ),
        ("planner=5", "'planner' alone is no key: a path goes on into the planner's settings"),
        ("system=tiny", "'system' alone is no key: a path goes on into the system, e.g. system.cluster"),
        ("plannr=5", "plannr: unknown key 'plannr'; allowed keys: cluster"),
        (
            "workload.tables.rows=3",
            "tables.rows: tables is a list of 2, not a mapping: give an index, e.g. tables[0].rows",
        ),
        (
            "node.accelerators[0]=1",
            "node.accelerators is a mapping, not a list: no index [0]; keys here: count, device",
        ),
    ],
)
def test_a_set_path_that_stops_at_a_prefix_or_mistakes_a_list_says_how_to_write_it(
    setting: str, says: str
) -> None:
    # "--set workload=null" was asked "did you mean workload.workload=null?", "plannr=5" "did you
    # mean planner.plannr=5?", and "tables.rows" was "index 'rows' out of range".
    line = error_line(run("run", *TINY, "--set", setting))
    assert f"--set {setting}: " in line and says in line, line
    assert "did you mean" not in line


def test_an_nsga2_population_larger_than_the_grid_runs_the_grid_once_and_says_so(tmp_path: Path) -> None:
    # A population of 10^8 over the 2 points of the grid ran for hours, drawing children all seen.
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP + "search: {method: nsga2, population: 100000000, generations: 100000000}\n")
    result = run("sweep", spec, "--out", tmp_path / "out", "--workers", "1", "--no-progress")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "search.population 100000000 is more than the 2 points of the grid" in said, said
    assert "t: 2 points (2 ok" in said


def test_a_recorded_duration_past_2_to_the_53_us_is_a_corrupt_trace(tmp_path: Path) -> None:
    # A Kineto 'dur' of 1e300 us (and a native graph's 1e300 s) replayed as a step of 2.8e290 h
    # without a word, where a 'ts' as large was refused.
    import gzip

    trace = json.loads(gzip.decompress(KINETO.read_bytes()))
    trace["traceEvents"][3]["dur"] = 1e300
    bad = tmp_path / "k.json"
    bad.write_text(json.dumps(trace))
    line = error_line(run("replay", bad, "--timeline", tmp_path / "t.trace.json"))
    assert "k.json: traceEvents[3] ('aten::uniform_'): 'dur' 1e+300 is past 2^53 us (285 years)" in line
    native = tmp_path / "n.json"
    assert run("trace", "convert", KINETO, native).exit_code == 0
    graph = json.loads(native.read_text())
    graph["nodes"][0]["duration_s"] = 1e300
    native.write_text(json.dumps(graph))
    line = error_line(run("replay", native, "--timeline", tmp_path / "t.trace.json"))
    assert "n.json: nodes[0].duration_s: expected a number of seconds >= 0 and below 2^53 us" in line
    assert tree(tmp_path) == ["k.json", "n.json"]


def test_a_null_that_removes_a_misspelt_key_is_refused(tmp_path: Path) -> None:
    # A null removes an inherited key; one under a misspelt key removed nothing, silently: the
    # user's "drop the front-end NICs" ran with them.
    line = error_line(run("run", *TINY, "--set", "node.frontend_nic=null"))
    assert "--set node.frontend_nic=null: node.frontend_nic: unknown key 'frontend_nic'" in line
    assert "(a null removes a key; it removed nothing); did you mean 'frontend_nics'?" in line
    line = error_line(run("run", *TINY, "--set", "workload.tables[0].bogus=null"))
    assert "tables[0].bogus: unknown key 'bogus'" in line
    line = error_line(run("plan", *TINY, "--set", "planner.finalist=null"))
    assert "planner.finalist: unknown key 'finalist'" in line and "did you mean 'finalists'?" in line
    system = tmp_path / "s.yaml"
    system.write_text("kind: system\nextends: tiny\nname: s\nnode:\n  scale_upp: null\n")
    line = error_line(run("run", "--system", system, "--workload", "tiny-dlrm"))
    assert f"{system}:5: node.scale_upp: unknown key 'scale_upp'" in line and "'scale_up'?" in line
    # A key that is there, or that the schema has, is removed as before; so is a free key (a
    # sweep's objective).
    assert run("run", *TINY, "--set", "node.frontend_nics=null").exit_code == 0
    spec = tmp_path / "sweep.yaml"
    spec.write_text(SWEEP)
    child = tmp_path / "child.yaml"
    child.write_text("extends: ./sweep.yaml\nobjectives: {avg_power_w: min, nothing_s: null}\n")
    result = run("sweep", child, "--out", tmp_path / "out", "--workers", "1", "--no-progress")
    assert result.exit_code == 0, result.output


def test_a_step_count_past_the_bound_is_refused_naming_the_option(tmp_path: Path) -> None:
    # 10^12 steps was a MemoryError traceback (7 TiB of step offsets), 10^6 ran for minutes.
    line = error_line(run("run", *TINY, "--steps", "1000000000000"))
    assert "steps (--steps): 1,000,000,000,000 chained steps: recsim chains at most 1,000" in line
    assert run("run", *TINY, "--steps", "1000").exit_code == 0
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP.replace("plan: table_wise,", "plan: table_wise, steps: 5000,"))
    line = error_line(run("sweep", spec, "--out", tmp_path / "out", "--workers", "1"))
    assert f"{spec}:3: base.steps: must be <= 1000, got 5000" in line
    assert tree(tmp_path) == ["s.yaml"]


def test_make_plan_takes_one_planner_text_as_one_and_refuses_other_kinds() -> None:
    # planner=[5] was an AttributeError, planner="planner.finalists=2" one override per character
    # ("--set 'planner.p': expected PATH=VALUE"), load_plan(None) a TypeError.
    from recsim import api
    from recsim.errors import ConfigError
    from recsim.planner.io import load_plan

    _, workload = api.prepare("tiny", "tiny-dlrm", nodes=1)
    one = api.make_plan("row_wise", workload, 2, planner="planner.embedding_dtypes=[fp16]")
    assert {shard.dtype for shard in one.shards} == {"fp16"}
    with pytest.raises(ConfigError, match=r"planner: expected a list of strings, got \[5\]"):
        api.make_plan("row_wise", workload, 2, planner=[5])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="plan file: expected the path of a plan file, got None"):
        load_plan(None)  # type: ignore[arg-type]


def test_empty_names_are_refused_as_empty(tmp_path: Path) -> None:
    # An unset shell variable: `validate ""` ran all 53 cases (every id starts with ''), `--plan ""`
    # was "plan : a folder, not a plan file" (the path '.'), `--workload ""` was called a "dlrm".
    line = error_line(run("validate", ""))
    assert "an empty validation case id" in line
    for option in ("--plan", "--strategy"):
        command = "run" if option == "--plan" else "plan"
        line = error_line(run(command, *TINY, option, ""))
        assert "strategy: expected a strategy name or a plan file path, got ''" in line
    line = error_line(run("run", "--system", "tiny", "--workload", ""))
    assert "workload: expected a library name or the path of a YAML file, got ''" in line
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP.replace("row_wise]", "'']"))
    line = error_line(run("sweep", spec, "--out", tmp_path / "out", "--workers", "1"))
    assert f"{spec}:5: axes.plan[1]: strategy: expected a strategy name" in line
    assert tree(tmp_path) == ["s.yaml"]


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_a_system_file_that_is_a_device_is_not_called_missing() -> None:
    # "/dev/null: no such system file" sent the user looking for a typo in a path that exists.
    line = error_line(run("run", "--system", "/dev/null", "--workload", "tiny-dlrm"))
    assert "/dev/null: not a regular file (/dev/null): a system file is a YAML file" in line


def test_a_sweep_set_names_an_axis_with_an_index_as_the_spec_writes_it(tmp_path: Path) -> None:
    # "--set axes.workload.tables[0].rows=[10, 20]" made the axis "workload.tables.0.rows", and
    # "--set name=" ran a sweep with no name (its summary began ": 2 points").
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP)
    out = tmp_path / "out"
    result = run(
        "sweep",
        spec,
        "--out",
        out,
        "--workers",
        "1",
        "--no-progress",
        "--json",
        "--set",
        "axes.workload.tables[0].rows=[10, 20]",
    )
    assert result.exit_code == 0, result.output
    shown = run("results", "show", out, "--json")
    assert '"values.workload.tables[0].rows": 10' in shown.output and "tables.0.rows" not in shown.output
    line = error_line(run("sweep", spec, "--out", tmp_path / "o2", "--workers", "1", "--set", "name="))
    assert "--set name=: name: String should have at least 1 character" in line
    assert not (tmp_path / "o2").exists()


def test_a_notebooks_path_with_a_nul_character_or_too_long_is_a_recsim_error(tmp_path: Path) -> None:
    # The command line cannot pass a NUL byte, a notebook can: each was "ValueError: embedded null
    # byte" from deep inside (open, resolve).
    import recsim
    from recsim import api
    from recsim.errors import RecsimError

    nul = str(tmp_path / "a\0b.json")
    calls = [
        lambda: recsim.replay(nul),
        lambda: recsim.sweep(nul),
        lambda: recsim.simulate("tiny", "tiny-dlrm", nodes=1, plan=nul),
        lambda: api.convert_trace([str(KINETO)], nul),
    ]
    for call in calls:
        with pytest.raises(RecsimError, match=r"a NUL character \(\\0\) in a path"):
            call()
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP)
    with pytest.raises(RecsimError, match=r"--out '.*a\\x00b': a NUL character"):
        recsim.sweep(spec, out=tmp_path / "a\0b")
    # A name too long is the same RecsimError from the API as the one line of the CLI.
    long = tmp_path / ("x" * 300)
    for call in (
        lambda: recsim.simulate(f"{long}.yaml", "tiny-dlrm"),
        lambda: recsim.replay(f"{long}.json"),
        lambda: recsim.sweep(spec, out=long),
    ):
        with pytest.raises(RecsimError, match="a file name longer than the file system allows"):
            call()
    assert tree(tmp_path) == ["s.yaml"]
