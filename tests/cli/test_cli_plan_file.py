"""``recsim run --plan plan.json`` runs a saved plan; a broken plan file is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from recsim.cli import cli
from recsim.planner.io import save_plan
from recsim.planner.plan import table_wise_round_robin
from recsim.workload.library import WorkloadLibrary
from tests.conftest import FIXTURES, TINY_2_RANKS, TINY_ENV

ENV = TINY_ENV


@pytest.fixture(autouse=True)
def _library_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=ENV)


def test_run_with_a_saved_plan(tmp_path: Path) -> None:
    tiny = WorkloadLibrary([FIXTURES / "workloads"]).workload("tiny-dlrm")
    path = tmp_path / "plan.json"
    save_plan(table_wise_round_robin(tiny, 2), path)
    result = run("run", *TINY_2_RANKS, "--plan", str(path), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["status"] == "ok"
    named = json.loads(run("run", *TINY_2_RANKS, "--plan", "table_wise", "--json").output)
    assert data["throughput_samples_per_s"] == named["throughput_samples_per_s"]


def test_run_with_a_corrupt_plan_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.json"
    path.write_text('{"format": "recsim-plan", "version": 1, "shards": [')
    result = run("run", *TINY_2_RANKS, "--plan", str(path), "--json")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("recsim: error:")
    assert str(path) in lines[0]
    assert "Traceback" not in result.output


def test_run_with_a_plan_file_warns_that_planner_settings_are_ignored(tmp_path: Path) -> None:
    # A plan file fixes the placement: planner.tiers=[uvm] had run the file's all-HBM plan silently.
    tiny = WorkloadLibrary([FIXTURES / "workloads"]).workload("tiny-dlrm")
    path = tmp_path / "plan.json"
    save_plan(table_wise_round_robin(tiny, 2), path)
    sets = ["--set", "planner.tiers=[uvm]", "--set", "planner.hbm_reserve=0.2"]
    result = run("run", *TINY_2_RANKS, "--plan", str(path), *sets, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "ok"  # the warning is not in the JSON
    assert "recsim: warning: planner.tiers, planner.hbm_reserve ignored: the plan file" in result.stderr
    named = run("run", *TINY_2_RANKS, "--plan", "table_wise", "--set", "planner.hbm_reserve=0.2", "--json")
    assert named.exit_code == 0, named.output
    assert "warning" not in named.stderr
