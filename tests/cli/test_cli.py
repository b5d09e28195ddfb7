"""The command line: output contracts, global options, and one clean line for every user mistake."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import recsim
from recsim import __version__
from recsim.cli import _paths_title, cli
from recsim.cli_common import EXIT_BROKEN_PIPE
from recsim.hardware.library import HardwareLibrary
from tests.conftest import FIXTURES, TINY_2_RANKS, TINY_ENV

MINI = FIXTURES / "minilib"


def run(*args, env=None, input=None):
    result = CliRunner().invoke(cli, list(args), env=env, input=input)
    return result


@pytest.fixture
def mini_env():
    return {"RECSIM_HARDWARE_PATH": str(MINI)}


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


def test_hw_show_json_contract(mini_env):
    result = run("hw", "show", "tiny", "--json", env=mini_env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for key in (
        "name",
        "num_nodes",
        "num_accelerators",
        "accelerator",
        "hbm_capacity_bytes_total",
        "scale_out_bandwidth_bytes_per_s_per_accelerator",
        "bisection_bandwidth_bytes_per_s",
    ):
        assert key in data
    assert data["num_accelerators"] == 16
    assert data["scale_out_bandwidth_bytes_per_s_per_accelerator"] == 25e9


def test_nodes_and_set_on_command_and_globally(mini_env):
    local = json.loads(run("hw", "show", "tiny", "--json", "--nodes", "2", env=mini_env).output)
    glob = json.loads(run("--nodes", "2", "hw", "show", "tiny", "--json", env=mini_env).output)
    assert local["num_accelerators"] == glob["num_accelerators"] == 8
    sets = run(
        "--set",
        "node.accelerators.count=2",
        "hw",
        "show",
        "tiny",
        "--json",
        "--set",
        "cluster.nodes=3",
        env=mini_env,
    )
    assert json.loads(sets.output)["num_accelerators"] == 6


def test_hw_show_human_and_resolved(mini_env):
    human = run("hw", "show", "tiny", env=mini_env)
    assert human.exit_code == 0
    assert "num accelerators" in human.output
    assert "200 GB/s" in human.output  # bisection, formatted with units
    resolved = run("hw", "show", "tiny", "--resolved", env=mini_env)
    assert resolved.exit_code == 0
    assert "boost_clock: 1.5 GHz" in resolved.output  # the device inlined, as written
    as_json = json.loads(run("hw", "show", "tiny", "--resolved", "--json", env=mini_env).output)
    assert as_json["kind"] == "system" and "num_accelerators" not in as_json  # the document, not the summary
    # Its quantities as the files write them, not in SI units as the summary's; the help said "SI
    # units" for --json whatever else was given.
    assert as_json["node"]["accelerators"]["device"]["boost_clock"] == "1.5 GHz"
    shown_help = " ".join(run("hw", "show", "--help").output.split())  # as wrapped to the terminal
    assert "with --resolved, the config as its files write it" in shown_help
    device = run("hw", "show", "tiny-gpu", env=mini_env)
    assert device.exit_code == 0
    assert "1.2 TB/s" in device.output
    a100 = run("hw", "show", "a100-sxm4-40gb").output
    assert "624 TOP/s" in a100 and "312 TFLOP/s" in a100  # int8 in operations, as its YAML


def test_hw_list(mini_env):
    result = run("hw", "list", "--json", env=mini_env)
    rows = json.loads(result.output)
    assert any(r["name"] == "tiny" and r["kind"] == "system" for r in rows)
    assert any(r["name"] == "tiny-gpu" and r["kind"] == "accelerator" for r in rows)


def test_one_unreadable_user_hardware_file_is_a_row_of_hw_list_not_its_failure(tmp_path):
    # A tester's find: a YAML syntax error in one file under RECSIM_HARDWARE_PATH made `hw list`
    # fail (exit 2) and list nothing, where `workload list` lists a broken file among the rest.
    (tmp_path / "systems").mkdir()
    (tmp_path / "devices").mkdir()
    broken = tmp_path / "systems" / "broken.yaml"
    broken.write_text("kind: system\nname: broken\nnode: [\n")
    env = {"RECSIM_HARDWARE_PATH": str(tmp_path)}
    result = run("hw", "list", "--json", env=env)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert any(r["name"] == "dgx-h100" and "error" not in r for r in rows)
    row = next(r for r in rows if r["name"] == "broken")
    assert row["kind"] == "system" and row["error"].startswith(f"{broken}:4: invalid YAML")
    human = run("hw", "list", env=env)
    assert human.exit_code == 0
    assert "dgx-h100" in human.stdout and "does not load" in human.stdout
    assert "recsim: warning: 1 hardware file(s) do not load: broken" in human.stderr


def test_hw_validate_warns_of_a_name_that_is_not_the_file_name(tmp_path):
    # A tester's copy of a system file kept the name it was copied from: the library finds the
    # file by its file name, and every result then said the other name (one `--system` refused).
    path = tmp_path / "mine.yaml"
    path.write_text("kind: system\nextends: dgx-h100\nname: dgx-h100\n")
    result = run("hw", "validate", str(path))
    assert result.exit_code == 0, result.output
    assert (
        f"recsim: warning: {path}: name 'dgx-h100' is not the file's name 'mine': a library finds it "
        "as 'mine', and its results say 'dgx-h100'"
    ) in result.stderr
    same = tmp_path / "dgx-h100.yaml"
    same.write_text(path.read_text())
    assert "warning" not in run("hw", "validate", str(same)).stderr


def test_hw_validate_ok_and_bad(tmp_path, mini_env):
    good = run("hw", "validate", str(MINI / "systems/tiny.yaml"), env=mini_env)
    assert good.exit_code == 0
    assert "ok:" in good.output
    bad = tmp_path / "bad.yaml"
    bad.write_text((MINI / "devices/tiny-hbm.yaml").read_text().replace("capacity: 8 GB", "capacty: 8 GB"))
    result = run("hw", "validate", str(MINI / "systems/tiny.yaml"), str(bad), env=mini_env)
    assert result.exit_code == 2
    assert "did you mean 'capacity'" in result.output


def test_schema_is_valid_json_schema_and_accepts_library_files(mini_env):
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json.loads(run("hw", "schema").output)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted(MINI.rglob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        errors = list(validator.iter_errors(data))
        assert not errors, f"{path}: {errors[0].message}"
    assert list(validator.iter_errors({"kind": "memory", "capacity": 8}))
    system = json.loads(run("hw", "schema", "--kind", "system").output)
    assert "node" in system["properties"]


BAD_INPUTS = {
    "malformed.yaml": ("kind: system\nnode: [1, 2\n", "invalid YAML"),
    "tabs.yaml": ("kind: system\nnode:\n\tcpus: 1\n", "tabs"),
    "nounit.yaml": (None, "has no unit"),
    "wrongtype.yaml": (None, "expected an integer"),
    "negative.yaml": (None, "must be > 0"),
    "unknowndevice.yaml": (None, "unknown accelerator 'tiny-gpx'; did you mean 'tiny-gpu'"),
    "cycle.yaml": ("kind: system\nextends: cycle.yaml\nname: c\n", "extends cycle"),
    "typo.yaml": (None, "did you mean 'bandwidth'"),
}


def _bad_file(tmp_path: Path, name: str) -> Path:
    text, _ = BAD_INPUTS[name]
    tiny = (MINI / "systems/tiny.yaml").read_text()
    gpu = (MINI / "devices/tiny-gpu.yaml").read_text()
    if text is None:
        text = {
            "nounit.yaml": tiny.replace("dimms_per_channel: 2}", "dimms_per_channel: 2, dimm_capacity: 64}"),
            "wrongtype.yaml": tiny.replace("nodes: 4", "nodes: four"),
            "negative.yaml": tiny.replace("nodes: 4", "nodes: -4"),
            "unknowndevice.yaml": tiny.replace("device: tiny-gpu", "device: tiny-gpx"),
            "typo.yaml": gpu.replace("bandwidth: 1200 GB/s", "bandwith: 1 TB/s"),
        }[name]
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_one_line_exit_2(tmp_path, mini_env, name):
    path = _bad_file(tmp_path, name)
    result = run("hw", "show", str(path), env=mini_env)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("recsim: error: ")
    assert BAD_INPUTS[name][1] in lines[0]
    assert "Traceback" not in result.output
    if name not in ("unknowndevice.yaml",):
        assert str(path) in lines[0] or "cycle" in lines[0]


def test_typo_reports_file_and_line(tmp_path, mini_env):
    path = _bad_file(tmp_path, "typo.yaml")
    result = run("hw", "show", str(path), env=mini_env)
    assert f"{path}:7: hbm.bandwith: unknown key 'bandwith'; did you mean 'bandwidth'?" in result.output


def test_huge_file(tmp_path, mini_env):
    path = tmp_path / "huge.yaml"
    path.write_text("kind: system\n" + "# padding\n" * 5_000_000)  # ~50 MB
    result = run("hw", "show", str(path), env=mini_env)
    assert result.exit_code == 2
    assert "larger than the 4 MiB limit" in result.output
    assert "Traceback" not in result.output


def test_unknown_system_name(mini_env):
    result = run("hw", "show", "tinny", env=mini_env)
    assert result.exit_code == 2
    assert "did you mean 'tiny'" in result.output


def test_bad_set_syntax(mini_env):
    result = run("hw", "show", "tiny", "--set", "cluster.nodes", env=mini_env)
    assert result.exit_code == 2
    assert "expected PATH=VALUE" in result.output


def test_console_script_no_traceback(tmp_path):
    """The installed entry point, in a real process: exit 2, one line on stderr."""
    bad = _bad_file(tmp_path, "typo.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "recsim.cli", "hw", "show", str(bad)],
        capture_output=True,
        text=True,
        env={"RECSIM_HARDWARE_PATH": str(MINI), "PATH": ""},
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "did you mean 'bandwidth'" in proc.stderr


def test_workload_show_json_dcnv2():
    result = run("workload", "show", "dlrm-dcnv2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["num_tables"] == 26
    assert data["total_rows"] == 204_184_588
    assert data["embedding_parameters"] == pytest.approx(26.14e9, rel=1e-3)
    assert data["lookups_per_sample"] == 214
    assert len(data["tables"]) == 26


def test_workload_list_and_human_show():
    rows = json.loads(run("workload", "list", "--json").output)
    assert any(r["name"] == "dlrm-dcnv2" for r in rows)
    human = run("workload", "show", "dlrm-dcnv2", "--tables")
    assert human.exit_code == 0
    assert "204,184,588" in human.output
    assert "zipf" in human.output


def test_one_broken_user_workload_is_a_row_of_workload_list_not_its_failure(tmp_path):
    # A tester's find: one bad file under RECSIM_WORKLOAD_PATH made `workload list` fail (exit 2)
    # while `hw list` lists a broken system among the rest.
    (tmp_path / "broken.yaml").write_text("kind: dlrm\nname: broken\ntables: nope\n")
    env = {"RECSIM_WORKLOAD_PATH": str(tmp_path)}
    result = run("workload", "list", "--json", env=env)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert any(r["name"] == "dlrm-dcnv2" and "error" not in r for r in rows)
    broken = next(r for r in rows if r["name"] == "broken")
    assert broken["error"].startswith(f"{tmp_path / 'broken.yaml'}:1: ")
    human = run("workload", "list", env=env)
    assert human.exit_code == 0
    assert "recsim: warning: 1 workload(s) do not load: broken" in human.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("workload", "show", "dgx-h100"), "unknown workload 'dgx-h100' (see `recsim workload list`"),
        (("run", "--workload", "dlrm-dcnv"), "unknown workload 'dlrm-dcnv'; did you mean 'dlrm-dcnv2'"),
        (("workload", "show", "./nope.yaml"), "./nope.yaml: no such workload file"),
    ],
)
def test_an_unknown_workload_is_called_a_workload(args, said):
    # It was "unknown dlrm 'dgx-h100'": dlrm is the documents' kind, not a word the user typed.
    result = run(*args)
    assert result.exit_code == 2
    assert said in result.output and "dlrm '" not in result.output


def test_workload_bad_override():
    result = run("workload", "show", "dlrm-dcnv2", "--set", "interaction.layerz=2")
    assert result.exit_code == 2
    assert "did you mean 'layers'" in result.output


def test_trace_convert_round_trip(tmp_path):
    from recsim.graph.build import build_training_step
    from recsim.graph.native import write_graph
    from recsim.planner import table_wise_round_robin
    from recsim.workload.library import WorkloadLibrary

    w = WorkloadLibrary([FIXTURES / "workloads"]).workload("tiny-dlrm")
    src = tmp_path / "step.json.gz"
    write_graph(build_training_step(w, table_wise_round_robin(w, 2)), src)
    out = tmp_path / "step.trace.json"
    result = run("trace", "convert", str(src), str(out))
    assert result.exit_code == 0, result.output
    assert "chrome" in result.output
    assert json.loads(out.read_text())["traceEvents"]
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(src.read_bytes()[:100])
    result = run("trace", "convert", str(bad), str(tmp_path / "x.json"))
    assert result.exit_code == 2
    assert "corrupted or truncated gzip" in result.output
    assert not (tmp_path / "x.json").exists()


def test_run_json_is_exactly_the_result(tmp_path, monkeypatch):
    for key, value in TINY_ENV.items():
        monkeypatch.setenv(key, value)
    timeline = tmp_path / "t.trace.json"
    result = run("run", *TINY_2_RANKS, "--json", "--timeline", str(timeline), env=TINY_ENV)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    from recsim.api import simulate

    expected = simulate("tiny", "tiny-dlrm", nodes=1, overrides=["node.accelerators.count=2"]).to_dict()
    assert data == json.loads(json.dumps(expected))
    assert data["status"] == "ok"
    assert json.loads(timeline.read_text())["traceEvents"]
    human = run("run", *TINY_2_RANKS, env=TINY_ENV)
    assert "throughput" in human.output


@pytest.mark.parametrize("fidelity", ["analytic", "des"])
def test_a_runs_timeline_reports_each_collectives_algorithm_and_protocol(tmp_path, fidelity):
    timeline = tmp_path / "t.trace.json"
    result = run("run", *TINY_2_RANKS, "--fidelity", fidelity, "--timeline", str(timeline), env=TINY_ENV)
    assert result.exit_code == 0, result.output
    events = json.loads(timeline.read_text())["traceEvents"]
    collectives = [e["args"] for e in events if e["ph"] == "X" and e["cat"] == "collective"]
    assert collectives
    for args in collectives:
        assert args["algorithm"] and args["protocol"] in {"ll", "ll128", "simple", "nvls"}


def test_run_reports_what_fills_hbm_and_each_socket_s_memory():
    # tiny-dlrm table-wise on two ranks: rank 0 holds table a (100 rows x (16 B + 4 B of row-wise
    # Adagrad state)), the dense weights (137 parameters x 4 B x 3: 131 and the 6 of top0's column
    # for HugeCTR's dot padding, ``graph.build.trained_dense_layers``), the activations of its 4
    # samples (4 x 4 B x (22 layer outputs + 8 pooled values)) and, as a's owner, its pooled vectors
    # for the global batch (8 x 4 x 4 B) and its inputs: its ids (8 x (2 x 8 B + a 4 B length)) and
    # its loader's buffers, 2,856 B (HugeCTR's multi-hot reader: ``test_planner_stats.READER_2``;
    # 2026-12-07: inputs 160 B and 4,412 B in all before they were counted).
    args = ("run", *TINY_2_RANKS, "--plan", "table_wise")
    data = json.loads(run(*args, "--json", env=TINY_ENV).output)
    kinds = ("tables", "dense", "activations", "pooled", "inputs")
    parts = {k: data[f"memory_peak_bytes.hbm_{k}"] for k in kinds}
    assert parts == {
        "tables": 2000.0,
        "dense": 1644.0,
        "activations": 480.0,
        "pooled": 128.0,
        "inputs": 160.0 + 2856.0,
    }
    assert data["memory_peak_bytes.hbm"] == 7268.0
    # One GPU on each of the node's two sockets, each moving the same bytes: each socket carries
    # half the node's bytes at half its channels, at CPU_MEMORY_EFFICIENCY of their pin rate.
    from recsim.cost.compute import CPU_MEMORY_EFFICIENCY

    socket = data["utilisation_max.host_memory_socket"]
    assert socket > 0 and data["utilisation.host_memory_socket"] == socket
    assert socket == pytest.approx(data["utilisation.host_memory"] / CPU_MEMORY_EFFICIENCY, rel=1e-12)
    human = run(*args, env=TINY_ENV).output
    for row in (
        "peak hbm per rank",
        "tables (rows, state, caches)",
        "pooled vectors (owner)",
        "inputs (ids,",
    ):
        assert row in human, row
    assert "CPU socket memory use" in human and "n0.cpu0" in human
    # Out of HBM: the table shows what fills the rank that does not fit.
    small = run(*args, "--set", "node.accelerators.device.hbm.capacity=4 KB", env=TINY_ENV)
    assert small.exit_code == 2 and "infeasible" in small.output
    assert "pooled vectors (owner)" in small.output and "128 B" in small.output


def test_run_infeasible_exits_2():
    env = {"RECSIM_HARDWARE_PATH": str(MINI), "RECSIM_WORKLOAD_PATH": str(FIXTURES / "workloads")}
    result = run(
        "run",
        "--system",
        "tiny",
        "--workload",
        "tiny-dlrm",
        "--nodes",
        "1",
        "--set",
        "node.accelerators.count=2",
        "--set",
        "workload.tables[0].rows=4000000000",
        "--plan",
        "table_wise",
        env=env,
    )
    assert result.exit_code == 2
    assert "infeasible" in result.output
    assert "Traceback" not in result.output
    # The planner puts the huge table in host memory (UVM) when it may ...
    sets = ["--set", "node.accelerators.count=2", "--set", "workload.tables[0].rows=4000000000"]
    ok = run("run", "--system", "tiny", "--workload", "tiny-dlrm", "--nodes", "1", *sets, "--json", env=env)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["status"] == "ok"
    # ... and says which table does not fit when only HBM at fp32 is allowed.
    hbm_only = ["--set", "planner.tiers=[hbm]", "--set", "planner.embedding_dtypes=[fp32]"]
    bad = run("run", "--system", "tiny", "--workload", "tiny-dlrm", "--nodes", "1", *sets, *hbm_only, env=env)
    assert bad.exit_code == 2
    assert "'a'" in bad.output and "fits nowhere" in bad.output
    assert "Traceback" not in bad.output


def test_a_fixed_scheme_outside_the_allowed_tiers_is_refused_not_run_in_hbm():
    # ``--plan table_wise`` puts every table in HBM; with HBM left out of planner.tiers it had run
    # the all-HBM plan anyway, as fast as with [hbm] (a tester's find). A searching strategy obeys.
    base = ["run", *TINY_2_RANKS, "--set", "planner.tiers=[ddr]", "--set", "planner.auto_tiers=false"]
    bad = run(*base, "--plan", "table_wise", "--json", env=TINY_ENV)
    assert bad.exit_code == 2
    data = json.loads(bad.stdout)
    assert data["status"] == "infeasible"
    assert "places tables in hbm, which planner.tiers (ddr) leaves out" in data["reason"]
    assert "places tables in hbm" in bad.stderr
    assert "Traceback" not in bad.output
    ok = run(*base, "--plan", "greedy", "--json", env=TINY_ENV)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["status"] == "ok"


def test_run_takes_torchrec_s_plan_by_name():
    # tiny-dlrm's 4-wide tables on two ranks: TorchRec's estimator charges whole narrow tables its
    # block penalty (1.75 below 64 columns) and 32-column reads, row splits neither, so it splits
    # both tables by rows (``recsim.planner.proposers.torchrec``).
    result = run("plan", *TINY_2_RANKS, "--strategy", "torchrec", "--json", env=TINY_ENV)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["strategy"], data["fits"]) == ("torchrec", True)
    assert (data["tables_by_sharding"]["row_wise"], data["shards_by_sharding"]["row_wise"]) == (2, 4)
    ran = run("run", *TINY_2_RANKS, "--plan", "torchrec", "--json", env=TINY_ENV)
    assert ran.exit_code == 0, ran.output
    out = json.loads(ran.output)
    assert (out["status"], out["plan"]) == ("ok", "torchrec")


def test_replay_and_validate_cli():
    trace = str(FIXTURES.parent / "data" / "traces" / "recsys_a100_8rank_rank3_control.json.gz")
    data = json.loads(run("replay", trace, "--json").output)
    assert data["steps"] == 6
    assert abs(data["error"]) < 0.02  # as test_engines.test_replay_of_the_real_a100_trace
    bad = run("replay", trace, "--re-estimate")
    assert bad.exit_code == 2
    assert "needs --system" in bad.output
    # --system alone asks for the what-if (DESIGN's example; it had been refused), labelled as one.
    what_if = run("replay", trace, "--system", "dgx-h100")
    assert what_if.exit_code == 0, what_if.output
    assert "replay (re-estimate)" in what_if.output and "│ vs recorded" in what_if.output
    assert json.loads(run("replay", trace, "--system", "dgx-h100", "--json").output)["mode"] == "re-estimate"
    ok = run("validate", "gemm-a100")
    assert ok.exit_code == 0, ok.output
    assert "pass" in ok.output
    # --fidelity picks the engine of the end-to-end cases; a fit is the same under either.
    des = run("validate", "gemm-a100-heldout", "--fidelity", "des", "--json")
    assert des.exit_code == 0, des.output
    assert json.loads(des.output) == json.loads(run("validate", "gemm-a100-heldout", "--json").output)
    # Each end-to-end result names its engine (saved outputs of either stay comparable); a fit none.
    both = ["dle-dlrm-dgxa100-8gpu-amp", "gemm-a100-heldout"]
    for fidelity in ("analytic", "des"):
        result = run("validate", *both, "--fidelity", fidelity, "--json")
        assert result.exit_code == 0, result.output
        fit, e2e = json.loads(result.output)
        assert (fit["id"], fit["fidelity"]) == ("gemm-a100-heldout", None)
        assert (e2e["id"], e2e["kind"], e2e["fidelity"]) == (both[0], "end_to_end", fidelity)
        keys = ["id", "kind", "description", "unit", "predicted", "measured", "error", "band", "status"]
        assert list(e2e) == [*keys, "note", "fidelity"]  # the keys before it as they were
    table = run("validate", *both, "--fidelity", "des")
    assert "end-to-end cases on the des engine" in table.output
    assert "engine" not in run("validate", "gemm-a100-heldout").output  # no engine ran
    bad = run("validate", "gemm-a100", "--fidelity", "fast")
    assert bad.exit_code == 2
    assert "'fast' is not one of 'analytic', 'des'" in bad.output
    assert "Traceback" not in bad.output


def test_run_on_a_cpu_server_is_a_clear_error():
    result = run("run", "--system", "skylake-2s", "--workload", "rmc1")
    assert result.exit_code == 2
    assert "has no accelerators" in result.output
    # --json prints the infeasible result, as for a plan that does not fit: one shape for scripts.
    result = run("run", "--system", "skylake-2s", "--workload", "rmc1", "--json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["status"] == "infeasible" and "has no accelerators" in data["reason"]
    assert data["num_accelerators"] == 0


def _tiny_run(monkeypatch) -> tuple[dict[str, str], list[str]]:
    """The fixture libraries on the path (both ways: ``run``'s env and the in-process API) and the
    arguments of a JSON run of tiny-dlrm on two tiny accelerators."""
    env = {"RECSIM_HARDWARE_PATH": str(MINI), "RECSIM_WORKLOAD_PATH": str(FIXTURES / "workloads")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    base = [
        "run",
        "--system",
        "tiny",
        "--workload",
        "tiny-dlrm",
        "--set",
        "node.accelerators.count=2",
        "--json",
    ]
    return env, base


def test_run_runtime_option_sets_the_workload_runtime(monkeypatch):
    env, base = _tiny_run(monkeypatch)
    eager = run(*base, "--runtime", "eager", env=env)
    assert eager.exit_code == 0, eager.output
    from recsim.api import simulate

    expected = simulate(
        "tiny", "tiny-dlrm", overrides=["node.accelerators.count=2", "workload.training.runtime=eager"]
    ).to_dict()
    assert json.loads(eager.output) == json.loads(json.dumps(expected))
    fused = json.loads(run(*base, env=env).output)
    assert json.loads(eager.output)["breakdown_s.host"] > 0 == fused["breakdown_s.host"]
    bad = run(*base, "--runtime", "jit", env=env)
    assert bad.exit_code == 2 and "jit" in bad.output


def test_run_can_turn_the_comm_interference_off(monkeypatch):
    env, base = _tiny_run(monkeypatch)
    on = run(*base, env=env)
    off = run(*base, "--no-comm-interference", env=env)
    assert on.exit_code == 0 == off.exit_code, (on.output, off.output)
    from recsim.api import simulate

    expected = simulate(
        "tiny", "tiny-dlrm", overrides=["node.accelerators.count=2"], comm_interference=False
    ).to_dict()
    assert json.loads(off.output) == json.loads(json.dumps(expected))
    # Overlapping for free is never slower than with the kernels slowed beside the collectives.
    assert json.loads(off.output)["iteration_time_s"] <= json.loads(on.output)["iteration_time_s"]


def test_run_can_share_the_sms_between_compute_streams(monkeypatch):
    env, base = _tiny_run(monkeypatch)
    off = run(*base, env=env)
    on = run(*base, "--sm-sharing", env=env)
    assert on.exit_code == 0 == off.exit_code, (on.output, off.output)
    from recsim.api import simulate

    expected = simulate(
        "tiny", "tiny-dlrm", overrides=["node.accelerators.count=2"], sm_sharing=True
    ).to_dict()
    assert json.loads(on.output) == json.loads(json.dumps(expected))
    # HugeCTR's weight gradients on their own stream overlap other kernels: sharing the SMs makes
    # the step longer, and the run says it was asked for.
    assert json.loads(on.output)["iteration_time_s"] > json.loads(off.output)["iteration_time_s"]
    assert "share its SMs" in json.dumps(json.loads(on.output)["notes"])


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_timeline_that_cannot_be_written_keeps_the_printed_result():
    # A full disk under --timeline had failed the run before its JSON was printed, losing the
    # simulation's figures (a CLI tester's find); the command still fails.
    result = CliRunner().invoke(
        cli, ["run", *TINY_2_RANKS, "--timeline", "/dev/full", "--json"], env=TINY_ENV
    )
    assert result.exit_code == 2
    assert json.loads(result.stdout)["status"] == "ok"
    assert "recsim: error:" in result.stderr and "Traceback" not in result.output


def test_trace_info_labels_carry_no_unit_suffix_beside_values_with_units():
    # The values are printed with their units ("77.49 ms"): a label "step time mean s" beside a
    # figure in ms read as seconds (a README tester's find).
    trace = Path(__file__).parents[1] / "data" / "traces" / "simple_add_kineto.json.gz"
    result = run("trace", "info", str(trace))
    assert result.exit_code == 0, result.output
    assert "step time mean" in result.output or "time by category" in result.output
    assert "mean s " not in result.output and "category s " not in result.output


def test_trace_info_prints_the_collectives_bytes_with_their_unit():
    # A tester's find: the table printed the collectives' bytes as a bare float ("bytes=19882016.0"
    # for the V100 DLRM's all-reduces) beside figures that carry units. The 2-rank all_gather
    # trace's ten gathers of one fp32 each send 40 B.
    trace = (
        Path(__file__).parents[1]
        / "data"
        / "traces"
        / "pytorch_et_1.0.2-chakra.0.0.4_allgather_2rank.json.gz"
    )
    result = run("trace", "info", str(trace))
    assert result.exit_code == 0, result.output
    assert "op=all_gather, count=10, bytes=40 B," in result.output
    assert "bytes=40.0" not in result.output
    data = json.loads(run("trace", "info", str(trace), "--json").output)
    assert data["collectives"] == [{"op": "all_gather", "count": 10, "bytes": 40.0, "time_s": 0.0}]


def test_trace_info_titles_a_long_list_of_traces_by_whole_names():
    # A tester's find: two reference traces titled the table "trace .../simple_add_pytorch_et.json.gz,
    # /work/shared/refere" (cut at 80 characters inside the second name).
    folder = Path(__file__).parents[1] / "data" / "traces"
    et, kineto = folder / "simple_add_pytorch_et.json.gz", folder / "simple_add_kineto.json.gz"
    assert len(f"{et}, {kineto}") > 80
    assert _paths_title([et, kineto]) == f"{et} and 1 more"
    assert _paths_title([Path("a.json"), Path("b.json")]) == "a.json, b.json"
    assert _paths_title([Path("x" * 100)]) == "x" * 100  # one name is shown whole
    assert _paths_title([Path("a" * 50), Path("b" * 50), Path("c")]) == "a" * 50 + " and 2 more"
    result = run("trace", "info", str(et), str(kineto))
    assert result.exit_code == 0, result.output
    # The table wraps a title wider than the console (80 columns here) onto more lines, at a
    # place that depends on where the checkout lives: compare with the line breaks taken out.
    assert f"{et.name} and 1 more" in " ".join(result.output.split())


def test_an_over_capacity_link_s_note_reaches_the_table_and_the_api():
    # A tester's find: the resource figures' note (a NIC asked for more than it carries in an
    # analytic step) was only in --json; the table and ``Result.notes`` never showed it.
    # Four nodes: at two, HugeCTR's side lanes (the DCNv2 cross-layer split) lengthen the step
    # enough that the NICs carry 0.98x their capacity, no longer more. DLRM v1 (1.24x): since
    # HugeCTR's DCNv2 all-reduces wait for the backward all-to-all (its one NCCL communicator,
    # ``Runtime.all_reduces_after_exchange``), the DCNv2 step's collectives no longer ask more than the
    # NICs carry (checked at 2, 4, 8 and 16 nodes).
    args = [
        "--system",
        "zionex",
        "--workload",
        "dlrm-mlperf",
        "--nodes",
        "4",
        "--set",
        "node.nics.device=eth-25g",
    ]
    out = run("run", *args)
    assert out.exit_code == 0, out.output
    (line,) = [ln for ln in out.output.splitlines() if ln.startswith("note: analytic: the collectives ask")]
    assert "--fidelity des" in line
    data = json.loads(run("run", *args, "--json").output)
    assert line.removeprefix("note: ") in data["notes"]
    result = recsim.simulate(
        system="zionex", workload="dlrm-mlperf", nodes=4, overrides=["node.nics.device=eth-25g"]
    )
    assert line.removeprefix("note: ") in result.all_notes
    assert list(result.all_notes) == data["notes"]


def test_steps_chains_that_many_training_steps_and_reports_the_last(monkeypatch):
    # A DES tester's find: ``steps`` was API-only. One step is the cold first one (no next batch's
    # input to overlap); from the third the reported step is steady.
    def step_s(*extra: str) -> float:
        out = run("run", *TINY_2_RANKS, "--json", *extra, env=TINY_ENV)
        assert out.exit_code == 0, out.output
        return json.loads(out.output)["iteration_time_s"]

    default = step_s()
    assert step_s("--steps", "3") == default
    assert step_s("--steps", "6") == pytest.approx(default, rel=1e-9)
    for key, value in TINY_ENV.items():
        monkeypatch.setenv(key, value)
    api_steps = recsim.api.simulate_run(
        "tiny", "tiny-dlrm", nodes=1, overrides=["node.accelerators.count=2"], steps=1
    ).result.iteration_time_s
    assert step_s("--steps", "1") == api_steps
    bad = run("run", *TINY_2_RANKS, "--steps", "0", env=TINY_ENV)
    assert bad.exit_code == 2 and "--steps" in bad.output


def test_run_refuses_a_quantised_comm_dtype_for_a_runtime_without_one():
    # HugeCTR (fused) and DLE (cuda_graphs) have no int8 comm codec: the run is refused naming the
    # runtime and the dtype, not by TorchRec's qcomm reduce-scatter rule; eager (TorchRec) runs it.
    base = ["run", *TINY_2_RANKS, "--plan", "row_wise", "--comm-dtype", "int8", "--json"]
    for name in ("fused", "cuda_graphs"):
        bad = run(*base, "--runtime", name, env=TINY_ENV)
        assert bad.exit_code == 2, bad.output
        reason = json.loads(bad.stdout)["reason"]
        assert f"training.runtime '{name}' cannot send pooled embeddings as int8" in reason
        assert "TorchRec's qcomm reduce-scatter" not in reason
    eager = run(*base, "--runtime", "eager", env=TINY_ENV)
    assert eager.exit_code == 2
    assert "TorchRec's qcomm reduce-scatter" in json.loads(eager.stdout)["reason"]
    ok = run(
        "run",
        *TINY_2_RANKS,
        "--plan",
        "table_wise",
        "--comm-dtype",
        "int8",
        "--runtime",
        "eager",
        env=TINY_ENV,
    )
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    "args",
    [
        ("workload", "show", "dlrm-dcnv2", "--tables"),  # rich's table
        ("workload", "show", "dlrm-dcnv2", "--tables", "--json"),  # click.echo
        ("hw", "show", "tiny"),
    ],
)
def test_output_to_a_closed_pipe_exits_quietly(args):
    """``recsim ... | head -1``: a reader that has gone ends the command with no traceback and the
    shells' SIGPIPE status (it had exited 1, as a failure). The pipe's read end is closed before the
    command starts, so its first write fails every time."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "recsim.cli", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env={"RECSIM_HARDWARE_PATH": str(MINI), "PATH": ""},
            cwd=Path(__file__).parents[2],
            check=False,
        )
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode == EXIT_BROKEN_PIPE == 141


@pytest.mark.parametrize(
    "options", [("--nodes", "2"), ("--set", "cluster.nodes=2"), ("--set", "name=x")], ids=str
)
def test_hw_validate_refuses_system_options_for_a_device_as_hw_show_does(mini_env, options):
    # A tester's find: `hw validate DEVICE --nodes 2` said "ok", where `hw show` refuses it.
    device = str(MINI / "devices" / "tiny-gpu.yaml")
    system = str(MINI / "systems" / "tiny.yaml")
    shown = run("hw", "show", device, *options, env=mini_env)
    for args in ((device,), (system, device)):
        checked = run("hw", "validate", *args, *options, env=mini_env)
        assert checked.exit_code == shown.exit_code == 2, checked.output
        assert "Error: --nodes and --set apply to systems, not devices" in checked.output
        assert "ok:" not in checked.output
    assert "Error: --nodes and --set apply to systems, not devices" in shown.output
    assert run("hw", "validate", system, *options, env=mini_env).exit_code == 0
    assert run("hw", "validate", device, env=mini_env).exit_code == 0


def test_a_broken_pipe_that_is_not_the_outputs_is_no_quiet_exit(tmp_path):
    """A reviewer's find: every ``BrokenPipeError`` ended the command with 141 and not a word, one
    from a socket or a pool's pipe (a Dask scheduler gone, say) too, while standard output and
    error were a file and a live pipe. Neither can raise it then, so it is the command's own
    failure, not a reader gone, and it says so (here from the hardware listing, made to raise)."""
    code = (
        "import recsim.cli as c\n"
        "def boom(*a, **k):\n"
        "    raise BrokenPipeError(32, 'Broken pipe (the scheduler went away)')\n"
        "c._list_row = boom\n"
        "c.main(['hw', 'list'])\n"
    )
    out = tmp_path / "out.txt"
    with out.open("w") as stdout:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            env={"RECSIM_HARDWARE_PATH": str(MINI), "PATH": "", "PYTHONPATH": str(Path(__file__).parents[2])},
            cwd=Path(__file__).parents[2],
            check=False,
        )
    assert proc.returncode not in (0, EXIT_BROKEN_PIPE)
    assert "the scheduler went away" in proc.stderr


def test_run_json_reports_the_platform_beside_the_components():
    # A node with a platform (supplies, fans) reports it as its own component, in the total; one
    # whose platform is 'none' (not modelled) reports 0 W for it and says so, its other components
    # unchanged.
    platform = (
        "node.platform={psus: {count: 2, rated: 1000 W, efficiency: 80plus-titanium-230v-redundant}, "
        "fan_fraction: 0.1}"
    )
    args = ("run", *TINY_2_RANKS, "--json")
    bare = json.loads(run(*args, "--set", "node.platform=none", env=TINY_ENV).output)
    assert any("platform not modelled" in note for note in bare["notes"])
    with_platform = json.loads(run(*args, "--set", platform, env=TINY_ENV).output)
    assert bare["power_by_component_w.platform"] == 0.0
    assert with_platform["power_by_component_w.platform"] > 0.0
    parts = {k: v for k, v in with_platform.items() if k.startswith("power_by_component_w.")}
    assert sum(parts.values()) == pytest.approx(with_platform["avg_power_w"])
    for key, watts in parts.items():
        if key != "power_by_component_w.platform":
            assert watts == pytest.approx(bare[key])


def _shipped_systems_with_accelerators() -> list[str]:
    library = HardwareLibrary()
    root = Path(recsim.__file__).resolve().parents[1] / "hardware" / "systems"
    names = sorted(p.stem for p in root.glob("*.yaml"))
    return [n for n in names if library.system(n, []).accelerator is not None]


@pytest.mark.parametrize("system", _shipped_systems_with_accelerators())
def test_run_json_reports_a_platform_on_every_shipped_system(system):
    # Every shipped system is priced at the wall, by its own sourced supplies or the generic
    # default (a sweep across them compares like with like); the default says so in the notes.
    env = {"RECSIM_WORKLOAD_PATH": TINY_ENV["RECSIM_WORKLOAD_PATH"]}
    args = ("run", "--system", system, "--workload", "tiny-dlrm", "--nodes", "1")
    result = run(*args, "--batch-size", "576", "--json", env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["status"] == "ok", data["reason"]
    assert data["power_by_component_w.platform"] > 0.0
    parts = {k: v for k, v in data.items() if k.startswith("power_by_component_w.")}
    assert sum(parts.values()) == pytest.approx(data["avg_power_w"])
    generic = any("platform: the generic default" in note for note in data["notes"])
    assert generic == (system not in {"dgx-a100", "dgx-b200", "dgx-h100", "gb200-nvl72", "hgx-h200"})


def test_run_title_counts_one_accelerator_in_the_singular(tmp_path):
    # "tiny-dlrm on tiny (1 accelerators, analytic)" before; `recsim plan`'s title already said "1 node".
    env = {"RECSIM_HARDWARE_PATH": str(MINI), "RECSIM_WORKLOAD_PATH": str(FIXTURES / "workloads")}
    args = ["--system", "tiny", "--workload", "tiny-dlrm", "--nodes", "1"]
    one = run("run", *args, "--set", "node.accelerators.count=1", env=env)
    assert one.exit_code == 0, one.output
    assert "(1 accelerator, analytic)" in one.output
    two = run("run", *args, "--set", "node.accelerators.count=2", env=env)
    assert two.exit_code == 0, two.output
    assert "(2 accelerators, analytic)" in two.output
