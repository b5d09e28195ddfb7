"""``recsim plan``: the JSON contract, saved plans that ``recsim run`` takes, errors, and model-f."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from recsim.cli import cli
from recsim.planner.io import load_plan, plan_from_dict, plan_to_dict, save_plan
from recsim.planner.storage import input_by_rank, pooled_by_rank, shard_storage
from recsim.planner.types import Plan, Shard
from recsim.workload.library import WorkloadLibrary
from tests.conftest import FIXTURES, TINY_2_RANKS, TINY_ENV

ENV = TINY_ENV
MODEL_F = ["--system", "zionex", "--workload", "model-f"]


@pytest.fixture(autouse=True)
def _library_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=ENV)


def plan_json(*args: str) -> dict[str, Any]:
    result = run("plan", *args, "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def one_error_line(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("recsim: error:")
    return lines[0]


def test_plan_json_contract_and_rows_sum_to_the_plan() -> None:
    data = plan_json(*TINY_2_RANKS, "--strategy", "greedy")
    assert data["status"] == "feasible" and data["fits"] is True and data["reason"] is None
    for key in (
        "strategy",
        "world_size",
        "est_makespan_s",
        "time_imbalance",
        "hbm_imbalance",
        "a2a_fwd_bytes_per_step",
        "slow_lookups_per_step",
        "parameters_placed",
        "bytes_by_tier",
        "bytes_by_dtype",
        "shards_by_sharding",
        "hbm_capacity_bytes_per_rank",
        "ddr_capacity_bytes_per_node",
        "ranks",
        "nodes",
        "plan",
    ):
        assert key in data, key
    assert data["strategy"] == "greedy" and data["world_size"] == 2
    assert [r["rank"] for r in data["ranks"]] == [0, 1]
    row = data["ranks"][0]
    for key in ("hbm_bytes", "ddr_bytes", "ssd_bytes", "shards", "lookups_per_step", "est_total_s"):
        assert isinstance(row[key], (int, float)), key
    # The rows add up to the plan's bytes: the dense side on every rank plus each shard copy ...
    plan = plan_from_dict(data["plan"])
    tiny = WorkloadLibrary([FIXTURES / "workloads"]).workload("tiny-dlrm")
    hbm = ddr = 0.0
    for shard in plan.shards:
        st = shard_storage(shard, tiny)
        hbm += st.hbm_bytes * len(shard.ranks)
        ddr += st.ddr_bytes * len(shard.ranks)
    # ... and the owner side of the pooled exchange (``pooled_by_rank``) and the ranks' inputs, the
    # ids the owners read and the loader's buffers (``input_by_rank``).
    hbm += sum(pooled_by_rank(plan, tiny).values()) + sum(input_by_rank(plan, tiny).values())
    ranks = data["ranks"]
    assert sum(r["hbm_bytes"] for r in ranks) == pytest.approx(2 * data["dense_hbm_bytes_per_rank"] + hbm)
    assert sum(r["ddr_bytes"] for r in ranks) == pytest.approx(ddr) == pytest.approx(data["ddr_bytes_total"])
    assert sum(r["lookups_per_step"] for r in ranks) == pytest.approx(data["lookups_per_step"]) == 40.0
    assert sum(r["shards"] for r in ranks) == sum(len(s.ranks) for s in plan.shards)
    assert data["parameters_placed"] == 600
    # Each row's HBM by kind adds up to it, and the pooled vectors are ``pooled_by_rank``'s, the ids
    # ``input_by_rank``'s.
    pooled = pooled_by_rank(plan, tiny)
    ids = input_by_rank(plan, tiny)
    for r in ranks:
        kinds = ("tables", "dense", "activations", "pooled", "inputs")
        assert sum(r[f"hbm_{k}_bytes"] for k in kinds) == pytest.approx(r["hbm_bytes"])
        assert r["hbm_pooled_bytes"] == pooled.get(r["rank"], 0.0)
        assert r["hbm_inputs_bytes"] == ids.get(r["rank"], 0.0)


def test_plan_human_output() -> None:
    result = run("plan", *TINY_2_RANKS, "--strategy", "greedy")
    assert result.exit_code == 0, result.output
    expected = (
        "greedy",
        "feasible",
        "embedding + comm estimate",
        "all-to-all",
        "slow-memory accesses",
        "per rank",
    )
    for text in expected:
        assert text in result.output, text
    assert "KiB" in result.output  # bytes with units


def test_the_rank_table_on_a_narrow_terminal_cuts_no_figure() -> None:
    # A tester's find: on an 80-column terminal (piped output had room), the rank table's cells,
    # which do not wrap, were each cut to "…": "40.4…" for a DGX H100 rank's HBM. On a 40-column
    # terminal (TTY_COMPATIBLE: rich takes the test's stream for one) the rows are the wide ones.
    ansi = re.compile(r"\x1b\[[0-9;]*m")

    def rank_rows(columns: str) -> list[str]:
        env = {**ENV, "COLUMNS": columns, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0"}
        result = CliRunner().invoke(cli, ["plan", *TINY_2_RANKS, "--strategy", "greedy"], env=env)
        assert result.exit_code == 0, result.output
        lines = ansi.sub("", result.output).splitlines()
        return [" ".join(line.split()) for line in lines if re.match(r"^\s+[01]\s+0\s+\d", line)]

    narrow, wide = rank_rows("40"), rank_rows("200")
    assert len(wide) == 2 and all("KiB" in row and "us" in row for row in wide), wide
    assert narrow == wide
    assert not any("…" in row for row in narrow)


def test_plan_out_then_run(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    result = run("plan", *TINY_2_RANKS, "--strategy", "greedy", "--out", str(path))
    assert result.exit_code == 0, result.output
    assert f"wrote {path}" in result.output
    saved = load_plan(path)
    data = plan_json(*TINY_2_RANKS, "--strategy", "greedy")
    assert plan_to_dict(saved) == data["plan"]
    ran = run("run", *TINY_2_RANKS, "--plan", str(path), "--json")
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output)["status"] == "ok"
    # plan reads a saved plan back too, with the same figures.
    again = plan_json(*TINY_2_RANKS, "--strategy", str(path))
    assert again["plan"] == data["plan"] and again["ranks"] == data["ranks"]


def test_plan_json_output_runs_as_a_plan_file(tmp_path: Path) -> None:
    # A tester's find: `recsim plan --json > plan.json` then `recsim run --plan plan.json` said
    # "unknown key 'status'": the plan sits under "plan" in that document. It is read from there.
    data = plan_json(*TINY_2_RANKS, "--strategy", "greedy")
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(data, indent=2))
    saved = tmp_path / "plan.json"
    assert run("plan", *TINY_2_RANKS, "--strategy", "greedy", "--out", str(saved)).exit_code == 0
    assert load_plan(path) == load_plan(saved)
    ran = run("run", *TINY_2_RANKS, "--plan", str(path), "--json")
    assert ran.exit_code == 0, ran.output
    same = run("run", *TINY_2_RANKS, "--plan", str(saved), "--json")
    assert (
        json.loads(ran.output)["throughput_samples_per_s"]
        == json.loads(same.output)["throughput_samples_per_s"]
    )
    # Its plan is read as strictly as a plan file, errors naming the member ...
    data["plan"]["shards"][0]["rows"] = [5, 5]
    path.write_text(json.dumps(data))
    line = one_error_line(run("run", *TINY_2_RANKS, "--plan", str(path)))
    assert f"{path}: plan: shards[0].rows: expected [start, end]" in line
    # ... and a plan that did not fit is refused, as `recsim plan --out` does not save one.
    data["status"], data["reason"] = "infeasible", "rank 0 needs 9 GiB of HBM"
    path.write_text(json.dumps(data))
    line = one_error_line(run("run", *TINY_2_RANKS, "--plan", str(path)))
    assert 'whose plan does not fit (status "infeasible": rank 0 needs 9 GiB of HBM)' in line


def test_plan_json_with_out_prints_only_json(tmp_path: Path) -> None:
    path = tmp_path / "plan.json.gz"
    result = run("plan", *TINY_2_RANKS, "--strategy", "table_wise", "--json", "--out", str(path))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["plan"] == plan_to_dict(load_plan(path))


def test_a_row_wise_plan_shows_its_reduce_scatter_bytes() -> None:
    """A row split's pooled vectors go through a reduce-scatter, not the all-to-all: the table
    shows those bytes (it read "all-to-all per step 0 B" alone, a tester's find) and --json has them."""
    result = run("plan", *TINY_2_RANKS, "--strategy", "row_wise")
    assert result.exit_code == 0, result.output
    assert "reduce-scatter per step" in result.output
    data = plan_json(*TINY_2_RANKS, "--strategy", "row_wise")
    assert data["a2a_fwd_bytes_per_step"] == 0.0
    # Each rank's partial pools of a and b (dim 4 each) for the global batch of 8, fp32.
    assert [r["reduce_scatter_bytes"] for r in data["ranks"]] == [256.0, 256.0]
    assert data["reduce_scatter_fwd_bytes_per_step"] == 512.0
    table_wise = run("plan", *TINY_2_RANKS, "--strategy", "table_wise")
    assert "reduce-scatter" not in table_wise.output
    assert "data-parallel all-reduce" not in table_wise.output
    # Both send the next batch's ids to the owners: a row split's members each the ids of its rows.
    assert "input all-to-all per step" in table_wise.output and "input all-to-all" in result.output


def test_a_data_parallel_plan_shows_its_gradient_all_reduce() -> None:
    """Replicated tables send no pooled vectors; their gradients are all-reduced whole: the table
    shows those bytes (a data_parallel plan read "all-to-all per step 0 B" alone, a tester's find)."""
    result = run("plan", *TINY_2_RANKS, "--strategy", "data_parallel")
    assert result.exit_code == 0, result.output
    assert "data-parallel all-reduce" in result.output
    data = plan_json(*TINY_2_RANKS, "--strategy", "data_parallel")
    assert data["a2a_fwd_bytes_per_step"] == 0.0
    # a (100 rows) and b (50 rows), dim 4, fp32 gradients, on each of the 2 ranks.
    assert [r["dp_all_reduce_bytes"] for r in data["ranks"]] == [2400.0, 2400.0]
    assert data["dp_all_reduce_bytes_per_step"] == 4800.0


def test_fixed_strategies() -> None:
    data = plan_json(*TINY_2_RANKS, "--strategy", "table_wise")
    assert data["strategy"] == "table_wise_round_robin"
    assert data["shards_by_sharding"]["table_wise"] == 2
    assert [r["lookups_per_step"] for r in data["ranks"]] == [16.0, 24.0]
    assert data["a2a_fwd_bytes_per_step"] == 256.0
    assert data["bytes_by_tier"]["hbm"] == 3000.0
    greedy = plan_json(*TINY_2_RANKS, "--strategy", "greedy")
    assert greedy["status"] == "feasible"
    assert sum(greedy["shards_by_sharding"].values()) >= 2


def test_unknown_strategy_is_one_line_with_the_choices() -> None:
    line = one_error_line(run("plan", *TINY_2_RANKS, "--strategy", "gredy"))
    assert "'gredy'" in line and "did you mean 'greedy'" in line
    assert "table_wise" in line and "auto" in line


@pytest.mark.parametrize("command", [("plan", "--strategy"), ("run", "--plan")], ids=lambda c: c[0])
def test_plan_and_run_name_an_unknown_strategy_alike(command: tuple[str, str]) -> None:
    # One helper for both: `run --plan gredy` had listed the strategies with no did-you-mean, and
    # a name close to none read "'foo'; (available: ...".
    line = one_error_line(run(command[0], *TINY_2_RANKS, command[1], "gredy"))
    assert line.startswith("recsim: error: unknown plan strategy 'gredy'; did you mean 'greedy'"), line
    assert line.endswith(", auto, or a plan file)"), line
    line = one_error_line(run(command[0], *TINY_2_RANKS, command[1], "foo"))
    assert line.startswith("recsim: error: unknown plan strategy 'foo' (available: "), line


def test_strategy_help_lists_the_proposers() -> None:
    result = run("plan", "--help")
    assert result.exit_code == 0
    flat = " ".join(result.output.split())
    for name in ("auto", "greedy", "table_wise", "row_wise"):
        assert name in flat


def test_misspelt_planner_key_is_named() -> None:
    line = one_error_line(run("plan", *TINY_2_RANKS, "--set", "planner.tierz=[hbm]"))
    assert "planner.tierz" in line and "tiers" in line


def test_a_fixed_plan_that_does_not_fit_exits_2_with_its_figures() -> None:
    small = ["--strategy", "table_wise", "--set", "node.accelerators.device.hbm.capacity=4 KB"]
    result = run("plan", *TINY_2_RANKS, *small)
    assert result.exit_code == 2
    assert "infeasible" in result.output and "short" in result.output
    # What fills the rank that does not fit (table a, the dense side, the pooled vectors it owns and
    # its inputs: the ids it reads, 8 samples x (2 x 8 + 4) B = 160 B, and HugeCTR's multi-hot
    # reader's buffers, 2,856 B: ``test_planner_stats.READER_2``; 2026-12-07: 4.309 KiB in all and
    # inputs 160 B before the reader's buffers were counted).
    # The dense weights: 137 parameters (131 and the 6 of top0's column for HugeCTR's dot padding,
    # ``graph.build.trained_dense_layers``) x 4 B x 3 = 1,644 B.
    assert "fullest rank's HBM" in result.output
    assert (
        "rank 0: 7.098 KiB = tables 1.953 KiB + dense weights 1.605 KiB + activations 480 B +"
        in result.output
    )
    assert "pooled vectors 128 B + inputs 2.945 KiB" in result.output
    json_run = run("plan", *TINY_2_RANKS, *small, "--json")
    assert json_run.exit_code == 2
    data = json.loads(json_run.output)
    assert data["status"] == "infeasible" and data["fits"] is False and "rank 0" in data["reason"]


def test_many_ranks_show_the_first_the_last_and_the_busiest(tmp_path: Path) -> None:
    # 8 nodes x 4 = 32 ranks; both tables on rank 20, which is then the busiest.
    tiny = WorkloadLibrary([FIXTURES / "workloads"]).workload("tiny-dlrm")
    shards = tuple(
        Shard(t.name, "table_wise", 0, t.rows, 0, tiny.table_dim(t), (20,), "hbm", "fp32")
        for t in tiny.tables
    )
    path = tmp_path / "r20.json"
    save_plan(Plan(32, shards, strategy="hand"), path)
    args = ["--system", "tiny", "--workload", "tiny-dlrm", "--nodes", "8", "--batch-size", "32"]
    result = run("plan", *args, "--strategy", str(path))
    assert result.exit_code == 0, result.output
    table = result.output.split("per rank", 1)[1]
    first = [line.split()[0] for line in table.splitlines() if line.strip()[:1].isdigit()]
    assert first == ["0", "1", "2", "3", "4", "5", "6", "7", "20", "28", "29", "30", "31"]
    assert "... 19 more ranks" in result.output


def test_many_ranks_show_the_fullest_rank_the_summary_names(tmp_path: Path) -> None:
    # Table a (100 rows) on rank 12, b (50 rows, more lookups) on rank 20: rank 12 has the most HBM
    # and the summary breaks its HBM down ("fullest rank's HBM: rank 12"), but the shortened rank
    # table kept the first 8, the last 4 and the busiest (20) only: the rank it named was not in it.
    tiny = WorkloadLibrary([FIXTURES / "workloads"]).workload("tiny-dlrm")
    where = {"a": 12, "b": 20}
    shards = tuple(
        Shard(t.name, "table_wise", 0, t.rows, 0, tiny.table_dim(t), (where[t.name],), "hbm", "fp32")
        for t in tiny.tables
    )
    path = tmp_path / "r12.json"
    save_plan(Plan(32, shards, strategy="hand"), path)
    args = ["--system", "tiny", "--workload", "tiny-dlrm", "--nodes", "8", "--batch-size", "32"]
    data = plan_json(*args, "--strategy", str(path))
    fullest = max(data["ranks"], key=lambda r: (r["hbm_bytes"], -r["rank"]))["rank"]
    busiest = max(data["ranks"], key=lambda r: (r["est_total_s"], -r["rank"]))["rank"]
    assert (fullest, busiest) == (12, 20)  # the case: two ranks, neither among the first or last
    result = run("plan", *args, "--strategy", str(path))
    assert result.exit_code == 0, result.output
    assert "fullest rank's HBM" in result.output and "rank 12: " in result.output
    table = result.output.split("per rank", 1)[1]
    first = [line.split()[0] for line in table.splitlines() if line.strip()[:1].isdigit()]
    assert first == ["0", "1", "2", "3", "4", "5", "6", "7", "12", "20", "28", "29", "30", "31"]
    assert "... 18 more ranks" in result.output


# ------------------------------------------------------------------------- model-f on ZionEX (done-when)


def test_model_f_auto_finds_a_feasible_plan() -> None:
    """12 T parameters on 16 ZionEX nodes: only with host DRAM and/or lower precision (~6 s)."""
    data = plan_json(*MODEL_F, "--strategy", "auto")
    assert data["status"] == "feasible" and data["fits"] is True
    assert data["world_size"] == 128 and data["num_nodes"] == 16
    model_f = WorkloadLibrary().workload("model-f")
    embedding = sum(t.rows * model_f.table_dim(t) for t in model_f.tables)
    assert data["parameters_placed"] == embedding
    assert 1.1e13 < data["parameters_placed"] < 1.3e13
    hbm_cap = data["hbm_capacity_bytes_per_rank"]
    assert all(r["hbm_bytes"] <= hbm_cap for r in data["ranks"])
    assert all(n["ddr_bytes"] <= data["ddr_capacity_bytes_per_node"] for n in data["nodes"])
    assert all(n["ssd_bytes"] <= data["ssd_capacity_bytes_per_node"] for n in data["nodes"])
    # It cannot all be HBM at full precision: 5 TiB of HBM against ~22 TiB of fp16 tables.
    by_tier, by_dtype = data["parameters_by_tier"], data["parameters_by_dtype"]
    assert by_tier["hbm"] < data["parameters_placed"] or by_dtype["fp32"] < data["parameters_placed"]
    assert sum(by_tier.values()) - by_tier["hbm"] > 0
    assert data["slow_lookups_per_step"] > 0
    # The rows agree with the totals; the saved plan is the one measured.
    assert sum(r["ddr_bytes"] for r in data["ranks"]) == pytest.approx(data["ddr_bytes_total"])
    assert data["plan"]["world_size"] == 128 and data["strategy"].startswith("auto:")


def test_model_f_without_low_precision_or_ssd_fails_naming_the_shortfall() -> None:
    result = run(
        "plan",
        *MODEL_F,
        "--strategy",
        "auto",
        "--json",
        "--set",
        "planner.embedding_dtypes=[fp32]",
        "--set",
        "planner.tiers=[hbm,uvm,uvm_caching,ddr]",
    )
    line = one_error_line(result)
    assert "short" in line and "fits nowhere" in line
    assert "model-f's embedding tables need at least" in line
    assert "table 't_" in line


def test_plan_out_replaces_only_a_plan_of_recsims(tmp_path: Path) -> None:
    # `--out` had replaced any file, the workload YAML given as --workload among them (a CLI
    # tester's find); like --timeline, it now keeps what recsim did not write.
    workload = tmp_path / "w.yaml"
    workload.write_text((FIXTURES / "workloads" / "tiny-dlrm.yaml").read_text())
    before = workload.read_text()
    args = [
        "plan",
        *TINY_2_RANKS[:2],
        "--workload",
        str(workload),
        *TINY_2_RANKS[4:],
        "--strategy",
        "table_wise",
    ]
    same = run(*args, "--out", str(workload))
    assert same.exit_code == 2 and "is also an input" in same.output
    assert workload.read_text() == before
    other = tmp_path / "notes.json"
    other.write_text('{"mine": true}')
    kept = run(*args, "--out", str(other))
    assert kept.exit_code == 2 and "is not a plan recsim wrote" in kept.output
    assert other.read_text() == '{"mine": true}'
    plan = tmp_path / "plan.json.gz"
    assert run(*args, "--out", str(plan)).exit_code == 0
    again = run(*args, "--out", str(plan))  # a plan of recsim's (gzipped) is replaced
    assert again.exit_code == 0, again.output


def _used(counts: dict[str, float]) -> set[str]:
    """The keys of a ``--json`` breakdown (``shards_by_sharding``, ``parameters_by_dtype``) in use."""
    return {key for key, value in counts.items() if value}


def test_auto_keeps_to_the_sharding_types_the_user_allows() -> None:
    # A tester's find: auto:hugectr_auto won with data-parallel and row-wise shards (only the tiers
    # limit was enforced).
    data = plan_json(
        "--system",
        "dgx-h100",
        "--workload",
        "dlrm-dcnv2",
        "--set",
        "planner.sharding_types=[table_wise,column_wise]",
    )
    assert data["strategy"].startswith("auto:")
    assert _used(data["shards_by_sharding"]) <= {"table_wise", "column_wise"}


def test_auto_keeps_to_the_sharding_types_and_dtypes_the_user_allows() -> None:
    # A tester's find: auto:hier_auto won with data-parallel, row-wise and table-row-wise fp32 shards.
    data = plan_json(
        "--system",
        "zionex",
        "--workload",
        "dlrm-dcnv2",
        "--set",
        "planner.sharding_types=[table_wise]",
        "--set",
        "planner.embedding_dtypes=[fp16]",
    )
    assert data["strategy"].startswith("auto:")
    assert _used(data["shards_by_sharding"]) == {"table_wise"}
    assert _used(data["parameters_by_dtype"]) == {"fp16"}


def test_a_strategy_whose_method_the_limits_forbid_is_one_line() -> None:
    # hier_auto keeps a table on one node's GPUs (table_row_wise) or splits it over several nodes
    # (row_wise): with neither allowed it had returned data-parallel and row-split tables silently.
    line = one_error_line(
        run(
            "plan",
            "--system",
            "zionex",
            "--workload",
            "dlrm-dcnv2",
            "--strategy",
            "hier_auto",
            "--set",
            "planner.sharding_types=[table_wise]",
        )
    )
    assert "planner.sharding_types (table_wise) leaves out" in line


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (4_420_000, "4.42M"),
        (999_400, "999k"),
        # Rounded up to the next suffix: "1e+03k" before (the rank table's lookups and slow-memory
        # accesses), as format_quantity printed "1000 us".
        (999_600, "1M"),
        (999.6, "1k"),
        (-999_600, "-1M"),
        (2.5e15, "2500T"),
        (0, "0"),
        (0.5, "0.5"),
    ],
)
def test_counts_in_the_rank_table_are_never_in_exponent_notation(value: float, text: str) -> None:
    from recsim.cli import _count

    assert _count(value) == text
