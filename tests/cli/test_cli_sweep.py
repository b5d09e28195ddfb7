"""``recsim sweep``: a tiny spec end to end through click, and one clean line for a bad spec."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from recsim.cli_explore import sweep
from tests.conftest import FIXTURES

ENV = {
    "RECSIM_HARDWARE_PATH": str(FIXTURES / "minilib"),
    "RECSIM_WORKLOAD_PATH": str(FIXTURES / "workloads"),
}

SPEC = """\
kind: sweep
name: tiny-cli
base: {system: tiny, workload: tiny-dlrm, nodes: 1}
axes:
  plan: [table_wise, row_wise]
  node.accelerators.count: [1, 2]
objectives: {throughput_samples_per_s: max, avg_power_w: min}
"""


def invoke(*args: str):
    return CliRunner().invoke(sweep, list(args), env=ENV)


def test_the_sweeps_front_shows_its_figures_with_units_as_results_show_does(tmp_path: Path):
    # A tester read "0.0003851" for energy_per_sample_j in the sweep's front and "385.1 uJ" for the
    # same point in `recsim results show --front`, which the README calls "the Pareto front again".
    from recsim.cli_results import format_metric

    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.replace("avg_power_w: min", "energy_per_sample_j: min"))
    out = tmp_path / "out"
    result = invoke(str(spec), "--out", str(out), "--workers", "1")
    assert result.exit_code == 0, result.output
    front = json.loads(invoke(str(spec), "--out", str(out), "--resume", "--json").output)["front"]
    assert front
    assert f"Pareto front ({len(front)} points)" in result.output
    one = tmp_path / "one.yaml"  # one objective: one best point
    one.write_text(SPEC.replace(", avg_power_w: min", "").replace("  plan: [table_wise, row_wise]\n", ""))
    single = invoke(str(one), "--out", str(tmp_path / "one"), "--workers", "1")
    assert single.exit_code == 0, single.output
    assert "Pareto front (1 point)" in single.output and "(1 points)" not in single.output
    for row in front:
        for metric in ("throughput_samples_per_s", "energy_per_sample_j"):
            shown = format_metric(metric, row[metric])
            assert shown.endswith(("samples/s", "J")), shown
            assert shown in result.output, (shown, result.output)


def test_sweep_writes_the_results_and_prints_the_front(tmp_path: Path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    result = invoke(str(spec), "--out", str(out), "--workers", "1")
    assert result.exit_code == 0, result.output
    for name in ("results.sqlite", "results.parquet", "pareto.csv", "pareto.png", "pareto.svg"):
        assert (out / name).is_file(), name
    assert "Pareto front" in result.output
    assert "4 run, 0 skipped" in result.output
    assert str(out / "pareto.png") in result.output
    again = invoke(str(spec), "--out", str(out), "--resume", "--json")
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert data["counts"]["run"] == 0 and data["counts"]["skipped"] == 4
    assert data["front"] and set(data["objectives"]) == {"throughput_samples_per_s", "avg_power_w"}
    refused = invoke(str(spec), "--out", str(out))
    assert refused.exit_code == 2
    assert "--resume" in refused.output


def test_bad_spec_is_one_line_exit_2(tmp_path: Path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.replace("node.accelerators.count", "node.accelerators.cont"))
    result = invoke(str(spec), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"recsim: error: {spec}:6: axes.node.accelerators.cont:")
    assert "did you mean 'count'?" in lines[0]
    assert "Traceback" not in result.output
    bad_set = invoke(str(spec.with_name("missing.yaml")), "--out", str(tmp_path / "out"))
    assert bad_set.exit_code == 2 and "no such file" in bad_set.output


INTERRUPT_SPEC = """\
kind: sweep
name: tiny-interrupt
base: {system: tiny, workload: tiny-dlrm, nodes: 1, steps: 400}
axes:
  plan: [table_wise, row_wise, greedy]
  node.accelerators.count: [1, 2]
  batch_size: [8, 16, 32, 64]
objectives: {throughput_samples_per_s: max, avg_power_w: min}
stages: [{fidelity: des}]
"""


def test_ctrl_c_on_a_dask_sweep_is_one_line(tmp_path: Path):
    # A tester's find: Ctrl-C (SIGINT to the terminal's process group) on a --executor dask sweep
    # printed about 46 lines of worker and nanny tracebacks; the local executor prints one line.
    spec = tmp_path / "slow.yaml"
    spec.write_text(INTERRUPT_SPEC)  # 24 points at DES, 400 steps each (about 0.4 s a point)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "recsim.cli", "sweep", str(spec), "--out", str(out)]
    command += ["--executor", "dask", "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(
        command,
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job
        # A terminal's job takes Ctrl-C (a child of a shell's background job starts ignoring it).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    def rows() -> int:
        try:
            with sqlite3.connect(out / "results.sqlite", timeout=5) as conn:
                return int(conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])
        except sqlite3.Error:
            return 0

    deadline = time.monotonic() + 120
    while rows() < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    if proc.returncode == 0:
        pytest.skip("the sweep finished before the interrupt landed")
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["recsim: interrupted"], err
    assert 1 <= rows() < 24


@pytest.mark.parametrize("value", ["0", "-3", "2.5", "many"])
def test_workers_below_one_or_not_a_whole_number_is_refused(tmp_path: Path, value: str):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    result = invoke(str(spec), "--out", str(out), "--workers", value)
    assert result.exit_code == 2, result.output
    assert (
        f"Invalid value for '--workers': expected a whole number of at least 1 (the most worker "
        f"processes), got '{value}'" in result.output
    )
    assert "Traceback" not in result.output
    assert not out.exists()


def test_workers_above_the_points_start_one_process_a_point(tmp_path: Path, monkeypatch):
    # `--workers 100000` asked for a pool of 100000 processes (the fork fallback and Dask's
    # LocalCluster start them all up front): a sweep starts no more than it has points to run, and
    # says, without failing, when those are more than its CPUs (one here, whatever the machine).
    import recsim.explore.executors as executors

    monkeypatch.setattr(executors, "available_cpus", lambda: 1)
    spec = tmp_path / "two.yaml"
    spec.write_text(SPEC.replace("  node.accelerators.count: [1, 2]\n", ""))
    result = invoke(str(spec), "--out", str(tmp_path / "out"), "--workers", "100000", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "2 points (2 ok" in result.stdout
    assert "local (2 workers)" in result.stdout
    # (A TMPDIR too long for the pool server's socket adds a note of its own: the next test.)
    notes = [line for line in result.stderr.splitlines() if "the temporary folder" not in line]
    assert notes == [
        "recsim: note: --workers 100000: starting 2 worker processes on the 1 CPU this process may "
        "use; they share them, so each point runs slower and the sweep is no faster than with "
        "--workers 1"
    ]


def test_workers_with_a_dask_scheduler_is_refused(tmp_path: Path):
    # The scheduler's cluster has its own workers: --workers was ignored without a word.
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    args = ["--executor", "dask", "--scheduler", "tcp://127.0.0.1:1", "--workers", "4"]
    result = invoke(str(spec), "--out", str(out), *args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "recsim: error: --workers sizes the local cluster that --executor dask starts; with "
        "--scheduler, the cluster's own workers run the points (leave --workers out)"
    ]
    assert not out.exists()


def test_a_temporary_folder_too_long_for_a_socket_forks_the_workers(tmp_path: Path):
    # A tester's find: under a TMPDIR of about 100 characters every sweep with worker processes
    # ended at its first point in a traceback, "OSError: AF_UNIX path too long" (exit 1): the
    # forkserver's listening socket lies under TMPDIR, and a Unix socket's path holds at most 107
    # bytes. The workers are forked instead, with a note; the points are the ones of --workers 1.
    from recsim.explore.executors import UNIX_SOCKET_PATH_MAX

    long_tmp = tmp_path / ("t" * max(1, UNIX_SOCKET_PATH_MAX - len(str(tmp_path)))) / "tmp dir"
    long_tmp.mkdir(parents=True)
    spec = tmp_path / "two.yaml"
    spec.write_text(SPEC.replace("  node.accelerators.count: [1, 2]\n", ""))
    rows = {}
    for workers in ("2", "1"):
        out = tmp_path / f"out{workers}"
        command = [sys.executable, "-m", "recsim.cli", "sweep", str(spec), "--out", str(out)]
        command += ["--workers", workers, "--no-progress", "--json"]
        env = {**os.environ, **ENV, "TMPDIR": str(long_tmp)}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        said = "is too long a path for the socket of the worker processes' server" in done.stderr
        assert said == (workers == "2"), done.stderr
        front = json.loads(done.stdout)["front"]
        rows[workers] = [{k: v for k, v in row.items() if k != "wall_s"} for row in front]
    assert rows["2"] == rows["1"] and rows["1"]


def test_the_printed_paths_are_the_paths_whole(tmp_path: Path):
    # Two testers' finds: rich read "[v2]" and "[red]" in an --out path as console markup and
    # printed the store as ".../runs /out/results.sqlite" (a folder that does not exist), in the
    # sweep's summary and in `recsim results list`; and a path longer than the console (a deep
    # TMPDIR) was wrapped inside, so no line of the output held it whole.
    from recsim.cli_results import results

    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    runs = tmp_path / "runs [v2]" / ("deep" * 30)
    out = runs / "out[red]"
    result = invoke(str(spec), "--out", str(out), "--workers", "1")
    assert result.exit_code == 0, result.output
    for name in ("pareto.png", "pareto.csv", "results.parquet", "results.sqlite"):
        assert any(line.endswith(f": {out / name}") for line in result.output.splitlines()), name
    listed = CliRunner().invoke(results, ["list", str(runs)], env=ENV)
    assert listed.exit_code == 0, listed.output
    assert "out[red]/results.sqlite" in listed.output


def test_a_sweep_printing_to_an_ascii_stream_names_its_senses_in_words(tmp_path: Path):
    # A tester's find: with output in ASCII (PYTHONIOENCODING=ascii; a non-UTF-8 locale, a
    # redirected Windows console alike) a finished sweep ended in a UnicodeEncodeError traceback
    # (exit 1) at the "↑" of its front's header; rich drew its boxes in ASCII there already.
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    command = [sys.executable, "-m", "recsim.cli", "sweep", str(spec), "--out", str(tmp_path / "out")]
    env = {**os.environ, **ENV, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([*command, "--workers", "1"], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    shown = done.stdout.decode("ascii")
    assert "throughput_samples_per_s (max)" in shown and "avg_power_w (min)" in shown
