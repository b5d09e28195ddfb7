"""``recsim results`` (list, show, export) and ``recsim golden`` (check, update)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from recsim.cli_results import golden, results
from recsim.explore.records import PointRecord
from recsim.explore.store import STORE_NAME, Store

GOLDEN = Path(__file__).parent.parent / "golden"

SPEC = """kind: sweep
name: demo-sweep
base: {system: tiny, workload: tiny-dlrm}
axes: {nodes: [1, 2, 4]}
objectives: {throughput_samples_per_s: max, avg_power_w: min}
"""


def invoke(group, *args):
    return CliRunner().invoke(group, [str(a) for a in args])


@pytest.fixture
def sweep_dir(tmp_path):
    out = tmp_path / "sweep"
    store = Store(out / STORE_NAME)
    store.set_spec(SPEC, "0123456789abcdef")
    points = [  # (nodes, throughput, power, status)
        (1, 1.0e6, 3000.0, "ok"),
        (2, 1.9e6, 6500.0, "ok"),
        (4, 1.5e6, 9000.0, "ok"),  # dominated by the 2-node point
        (8, None, None, "infeasible"),
    ]
    for i, (nodes, thr, power, status) in enumerate(points):
        metrics = {} if status != "ok" else {"throughput_samples_per_s": thr, "avg_power_w": power}
        store.write(
            PointRecord(
                index=i,
                key=f"{i:016x}",
                values={"nodes": nodes},
                stage="analytic",
                status=status,
                reason="" if status == "ok" else "memory_fits is false",
                metrics=metrics,
                config={"nodes": nodes},
                wall_s=0.1,
            )
        )
    store.close()
    return out


def test_results_list(sweep_dir):
    result = invoke(results, "list", sweep_dir.parent)
    assert result.exit_code == 0, result.output
    assert "demo-sweep" in result.output
    assert "sweep/results.sqlite" in result.output
    assert "analytic" in result.output
    data = json.loads(invoke(results, "list", sweep_dir, "--json").output)
    assert data[0]["name"] == "demo-sweep"
    assert data[0]["points"] == 4
    assert data[0]["stages"] == {"analytic": {"infeasible": 1, "ok": 3}}


def test_results_list_of_a_folder_lists_its_stores_beside_one_that_does_not_open(sweep_dir):
    # A tester's `results list` of a folder of sweeps failed (exit 2) and listed nothing because one
    # results.sqlite under it was not a store.
    fake = sweep_dir.parent / "other" / STORE_NAME
    fake.parent.mkdir()
    fake.write_text("not a database\n")
    result = invoke(results, "list", sweep_dir.parent)
    assert result.exit_code == 0, result.output
    assert "demo-sweep" in result.stdout
    assert f"recsim: warning: 1 store(s) do not open: {fake}" in result.stderr
    rows = json.loads(invoke(results, "list", sweep_dir.parent, "--json").stdout)
    assert [r["name"] for r in rows if "error" not in r] == ["demo-sweep"]
    broken = next(r for r in rows if "error" in r)
    assert broken["path"] == str(fake) and "not a recsim results store" in broken["error"]
    alone = invoke(results, "list", fake.parent)  # the store named: its error, as before
    assert alone.exit_code == 2 and "not a recsim results store" in alone.output


def test_results_show_table_json_and_front(sweep_dir):
    result = invoke(results, "show", sweep_dir)
    assert result.exit_code == 0, result.output
    assert "throughput_samples_per_s (max)" in result.output
    assert "1.9M samples/s" in result.output
    assert "6.5 kW" in result.output
    assert "memory_fits is false" in result.output
    rows = json.loads(invoke(results, "show", sweep_dir, "--json").output)
    assert [r["values.nodes"] for r in rows] == [1, 2, 4, 8]
    assert rows[3]["throughput_samples_per_s"] is None
    front = json.loads(invoke(results, "show", sweep_dir, "--front", "--json").output)
    assert [r["values.nodes"] for r in front] == [2, 1]  # sorted by the first objective, best first
    limited = invoke(results, "show", sweep_dir, "--limit", "1")
    assert "3 more" in limited.output
    only_power = json.loads(
        invoke(results, "show", sweep_dir, "--front", "--json", "--objective", "avg_power_w=min").output
    )
    assert [r["values.nodes"] for r in only_power] == [1]


def test_results_show_on_an_80_column_terminal_cuts_no_header():
    # A tester's find: on an 80-column terminal (piped output gets 140), a store of four axes and
    # three objectives headed its figures "throu…", "energy…" and "avg_p…", and printed
    # "23.45M sampl…": which metric a column holds was lost. The headers fold, the figures wrap.
    import io

    from recsim.cli_common import Console
    from recsim.cli_results import _points_table

    rows = [
        {
            "index": i,
            "stage": "analytic",
            "status": "ok",
            "reason": None,
            "values.node.accelerators.device": "h100-sxm5-80gb",
            "values.planner.tiers": "[hbm, uvm_caching]",
            "values.cluster.scale_out.oversubscription": 2.0,
            "values.nodes": 16,
            "throughput_samples_per_s": 2.345e7,
            "energy_per_sample_j": 3.5e-4,
            "avg_power_w": 91234.0,
        }
        for i in range(2)
    ]
    senses = {"throughput_samples_per_s": "max", "energy_per_sample_j": "min", "avg_power_w": "min"}
    shown = io.StringIO()
    Console(file=shown, width=80).print(_points_table(pd.DataFrame(rows), senses, "x: points"))
    text = shown.getvalue()
    assert "…" not in text
    assert "23.45M" in text and "350 uJ" in text and "91.23" in text


def test_results_front_takes_each_point_at_the_last_stage_of_the_stored_spec(tmp_path):
    # A tester's find: stages [des, then analytic top 3] were read in a fixed analytic-then-des
    # order, so `show --front` ranked the DES figures while pareto.csv ranked the analytic ones.
    out = tmp_path / "sweep"
    spec = SPEC + "stages:\n- {fidelity: des}\n- {fidelity: analytic, top: 3}\n"
    with Store(out / STORE_NAME) as store:
        store.set_spec(spec, "0123456789abcdef")
        rows = [  # (index, stage, throughput): point 0 re-run at analytic, point 1 only at des
            (0, "des", 1.0e6),
            (1, "des", 1.5e6),
            (0, "analytic", 2.0e6),
        ]
        for index, stage, thr in rows:
            store.write(
                PointRecord(
                    index=index,
                    key=f"{index:016x}",
                    values={"nodes": index + 1},
                    stage=stage,
                    status="ok",
                    reason="",
                    metrics={"throughput_samples_per_s": thr, "avg_power_w": 3000.0},
                    config={},
                    wall_s=0.1,
                )
            )
    front = json.loads(invoke(results, "show", out, "--front", "--json").output)
    assert [(r["index"], r["stage"]) for r in front] == [(0, "analytic")]
    # --stage des is still the DES records alone.
    des = json.loads(invoke(results, "show", out, "--front", "--stage", "des", "--json").output)
    assert [(r["index"], r["stage"]) for r in des] == [(1, "des")]


def test_results_export(sweep_dir, tmp_path):
    target = tmp_path / "exp" / "points.parquet"
    # Into a folder that exists, as every output file: a missing one is said, not made (a tester
    # found only exports and sweeps made theirs).
    refused = invoke(results, "export", sweep_dir, "--to", target)
    assert refused.exit_code == 2
    assert f"{target}: the folder {target.parent} does not exist (create it first)" in refused.output
    assert not target.parent.exists()
    target.parent.mkdir()
    result = invoke(results, "export", sweep_dir, "--to", target)
    assert result.exit_code == 0, result.output
    assert "4 rows" in result.output
    assert list(pd.read_parquet(target)["values.nodes"]) == [1, 2, 4, 8]
    csv = tmp_path / "points.csv"
    assert invoke(results, "export", sweep_dir / STORE_NAME, "--to", csv).exit_code == 0
    assert len(pd.read_csv(csv)) == 4


def test_results_errors_are_one_line(tmp_path):
    (tmp_path / "bogus.sqlite").write_text("this is not a database, it is a text file " * 10)
    result = invoke(results, "show", tmp_path / "bogus.sqlite")
    assert result.exit_code == 2
    assert result.output.startswith("recsim: error: ") and "bogus.sqlite" in result.output
    assert "not a recsim results store" in result.output
    missing = invoke(results, "list", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "recsim: error:" in missing.output
    bad = invoke(results, "export", tmp_path / "bogus.sqlite", "--to", tmp_path / "x.xlsx")
    assert bad.exit_code == 2


def test_results_front_needs_objectives(tmp_path):
    store = Store(tmp_path / STORE_NAME)
    store.close()
    result = invoke(results, "show", tmp_path, "--front")
    assert result.exit_code == 2
    assert "--objective" in result.output


@pytest.fixture
def golden_copy(tmp_path):
    root = tmp_path / "golden"
    shutil.copytree(GOLDEN / "tiny-analytic", root / "tiny-analytic")
    config = root / "tiny-analytic" / "config.yaml"
    # the copy lives elsewhere: point its library folders back at the test fixtures
    fixtures = (GOLDEN.parent / "fixtures").resolve()
    text = config.read_text().replace("../../fixtures", str(fixtures))
    config.write_text(text)
    return root


def test_golden_check_passes_and_fails(golden_copy):
    result = invoke(golden, "check", golden_copy)
    assert result.exit_code == 0, result.output
    assert "1 passed, 0 failed" in result.output
    expected_path = golden_copy / "tiny-analytic" / "expected.json"
    expected = json.loads(expected_path.read_text())
    expected["metrics"]["throughput_samples_per_s"] *= 1.10  # 10% off, tolerance 1%
    expected["tolerances"]["throughput_samples_per_s"] = 0.01
    expected_path.write_text(json.dumps(expected))
    failed = invoke(golden, "check", golden_copy, "--json")
    assert failed.exit_code == 1
    data = json.loads(failed.output)
    assert data[0]["passed"] is False
    bad = [c for c in data[0]["checks"] if not c["passed"]]
    assert [c["name"] for c in bad] == ["throughput_samples_per_s"]
    assert 0.09 < bad[0]["error"] < 0.1
    human = invoke(golden, "check", golden_copy)
    assert human.exit_code == 1 and "FAIL" in human.output


def test_golden_measures_a_metric_expected_to_be_zero_against_its_whole(golden_copy):
    # A tester's find: an expected 0 was compared by absolute difference against the tolerance
    # (0.02: 20 ms for a time, longer than a step), so a breakdown that moved away from 0 passed.
    expected_path = golden_copy / "tiny-analytic" / "expected.json"
    expected = json.loads(expected_path.read_text())
    compute = expected["metrics"]["breakdown_s.compute"]
    step = expected["metrics"]["iteration_time_s"]
    assert 0.02 * step < compute < 0.02  # within the old absolute 0.02, far beyond 2 % of the step
    assert expected["metrics"]["breakdown_s.all_to_all"] == 0.0  # stays 0: passes
    expected["metrics"]["breakdown_s.compute"] = 0.0
    expected_path.write_text(json.dumps(expected))
    failed = invoke(golden, "check", golden_copy, "--json")
    assert failed.exit_code == 1, failed.output
    checks = {c["name"]: c for c in json.loads(failed.output)[0]["checks"]}
    assert [n for n, c in checks.items() if not c["passed"]] == ["breakdown_s.compute"]
    assert checks["breakdown_s.compute"]["relative_to"] == "iteration_time_s"
    assert checks["breakdown_s.compute"]["error"] == pytest.approx(compute / step)
    assert checks["breakdown_s.all_to_all"]["passed"] and checks["breakdown_s.all_to_all"]["error"] == 0.0
    human = invoke(golden, "check", golden_copy)
    assert "of iteration_time_s" in human.output


def test_golden_scales_of_an_expected_zero():
    from recsim.explore.golden import Expected, compare

    actual = {
        "status": "ok",
        "iteration_time_s": 0.01,
        "breakdown_s.all_to_all": 0.0001,  # 1 % of the step
        "avg_power_w": 1000.0,
        "power_by_component_w.ssds": 40.0,  # 4 % of the power
        "memory_peak_bytes.hbm": 1e9,
        "memory_peak_bytes.ddr": 1e6,  # 0.1 % of the largest peak
        "utilisation.comm": 0.05,
        "energy_per_sample_j": 1e-9,  # no whole: must stay 0
    }
    zeros = {name: 0.0 for name in actual if name not in ("status", "iteration_time_s", "avg_power_w")}
    zeros["memory_peak_bytes.hbm"] = 1e9
    checks = {c.name: c for c in compare(Expected({**zeros, "iteration_time_s": 0.01}), actual)}
    assert checks["breakdown_s.all_to_all"].passed and checks[
        "breakdown_s.all_to_all"
    ].error == pytest.approx(0.01)
    # The whole from the fresh result where the file does not list it.
    assert not checks["power_by_component_w.ssds"].passed
    assert checks["power_by_component_w.ssds"].relative_to == "avg_power_w"
    assert checks["memory_peak_bytes.ddr"].passed and checks["memory_peak_bytes.ddr"].error == pytest.approx(
        1e-3
    )
    assert not checks["utilisation.comm"].passed and checks["utilisation.comm"].error == pytest.approx(0.05)
    assert not checks["energy_per_sample_j"].passed and checks["energy_per_sample_j"].error == 1.0
    still = compare(Expected({"energy_per_sample_j": 0.0}), {"status": "ok", "energy_per_sample_j": 0.0})
    assert all(c.passed for c in still)


def test_golden_update_keeps_tolerances(golden_copy):
    expected_path = golden_copy / "tiny-analytic" / "expected.json"
    expected = json.loads(expected_path.read_text())
    expected["metrics"] = {"status": "ok", "iteration_time_s": 1.0}  # wrong, and only two metrics
    expected["tolerances"] = {"iteration_time_s": 0.005}
    expected_path.write_text(json.dumps(expected))
    assert invoke(golden, "check", golden_copy).exit_code == 1
    result = invoke(golden, "update", golden_copy, "tiny-analytic")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    updated = json.loads(expected_path.read_text())
    assert list(updated["metrics"]) == ["status", "iteration_time_s"]  # the selection is kept
    assert updated["tolerances"] == {"iteration_time_s": 0.005}
    assert updated["metrics"]["iteration_time_s"] != 1.0
    assert invoke(golden, "check", golden_copy).exit_code == 0
    invoke(golden, "update", golden_copy, "--all")
    assert "throughput_samples_per_s" in json.loads(expected_path.read_text())["metrics"]


NO_PLAN = '"workload.tables[0].rows=4000000000", "planner.tiers=[hbm]", "planner.embedding_dtypes=[fp32]"'


def test_golden_records_and_checks_a_plan_that_does_not_fit_as_infeasible(golden_copy):
    # A tester's find: a sweep stores a plan that fits nowhere as infeasible, golden called it an
    # error, so `golden update` refused to record it and one such case blocked the whole folder.
    case = golden_copy / "no-plan"
    case.mkdir()
    fixtures = (GOLDEN.parent / "fixtures").resolve()
    config = (
        f"hardware_path: [{fixtures / 'minilib'}]\nworkload_path: [{fixtures / 'workloads'}]\n"
        "system: tiny\nworkload: tiny-dlrm\nnodes: 1\nplan: greedy\n"
        f"overrides: [node.accelerators.count=2, {NO_PLAN}]\n"
    )
    (case / "config.yaml").write_text(config)
    result = invoke(golden, "update", golden_copy)  # the folder, the ok case beside it included
    assert result.exit_code == 0, result.output
    assert "no-plan/expected.json" in result.output and "tiny-analytic/expected.json" in result.output
    metrics = json.loads((case / "expected.json").read_text())["metrics"]
    assert metrics["status"] == "infeasible"
    assert "table 'a' (4000000000 rows) fits nowhere" in metrics["reason"]
    checked = invoke(golden, "check", golden_copy)
    assert checked.exit_code == 0 and "2 passed, 0 failed" in checked.output
    assert "infeasible: table 'a'" in checked.output
    # A selection of figures without the status still records the status and the reason.
    (case / "expected.json").write_text('{"metrics": {"num_accelerators": 2}}')
    assert invoke(golden, "update", golden_copy, "no-plan").exit_code == 0
    assert list(json.loads((case / "expected.json").read_text())["metrics"]) == [
        "status",
        "reason",
        "num_accelerators",
    ]
    # It fits again: the case fails.
    (case / "config.yaml").write_text(config.replace(f", {NO_PLAN}", ""))
    fits = invoke(golden, "check", golden_copy, "no-plan", "--json")
    assert fits.exit_code == 1
    bad = [c for c in json.loads(fits.output)[0]["checks"] if not c["passed"]]
    assert bad[0] == {**bad[0], "name": "status", "expected": "infeasible", "actual": "ok"}
    # And the other way: a case expected to run fails once no plan fits.
    ok_config = golden_copy / "tiny-analytic" / "config.yaml"
    ok_config.write_text(
        ok_config.read_text().replace(
            "[node.accelerators.count=2]", f"[node.accelerators.count=2, {NO_PLAN}]"
        )
    )
    broken = invoke(golden, "check", golden_copy, "tiny-analytic", "--json")
    assert broken.exit_code == 1, broken.output
    data = json.loads(broken.output)[0]
    assert data["status"] == "infeasible"
    assert {"name": "status", "expected": "ok", "actual": "infeasible"}.items() <= data["checks"][0].items()


def test_golden_strict_config(golden_copy):
    config = golden_copy / "tiny-analytic" / "config.yaml"
    config.write_text(config.read_text() + "fidelty: des\n")
    result = invoke(golden, "check", golden_copy)
    assert result.exit_code == 2
    assert "config.yaml:" in result.output and "fidelty" in result.output
    assert "fidelity" in result.output  # did you mean
    unknown = invoke(golden, "check", golden_copy, "no-such-case")
    assert unknown.exit_code == 2 and "no golden case 'no-such-case'" in unknown.output


@pytest.mark.parametrize("command", ["check", "update"])
def test_golden_refuses_a_malformed_case_before_simulating_any(golden_copy, monkeypatch, command):
    # A tester's folder ran (and waited for) its good cases before the typo in the last one was said.
    from recsim.explore import golden as gold

    bad = golden_copy / "zz-typo"
    shutil.copytree(golden_copy / "tiny-analytic", bad)
    (bad / "config.yaml").write_text((bad / "config.yaml").read_text() + "fidelty: des\n")
    simulated: list[Path] = []
    real = gold.simulate_case
    monkeypatch.setattr(gold, "simulate_case", lambda case: simulated.append(case) or real(case))
    result = invoke(golden, command, golden_copy)
    assert result.exit_code == 2
    assert "zz-typo/config.yaml:" in result.output and "fidelty" in result.output
    assert simulated == []


@pytest.mark.parametrize("key", ["hardware_path", "workload_path"])
@pytest.mark.parametrize("command", ["check", "update"])
def test_golden_library_folder_that_is_not_there_names_its_line_and_key(golden_copy, key, command):
    # A tester's case said only "config.yaml: no such library folder ..." with no line or key.
    config = golden_copy / "tiny-analytic" / "config.yaml"
    lines = config.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
    lines[at] = lines[at].replace("]", ", nowhere]")  # the fixture folder, then one not there
    config.write_text("\n".join(lines) + "\n")
    before = (golden_copy / "tiny-analytic" / "expected.json").read_text()
    result = invoke(golden, command, golden_copy, "tiny-analytic")
    assert result.exit_code == 2
    folder = (golden_copy / "tiny-analytic" / "nowhere").resolve()
    assert f"config.yaml:{at + 1}: {key}[1]: no such folder {folder}" in result.output
    assert "Traceback" not in result.output
    assert (golden_copy / "tiny-analytic" / "expected.json").read_text() == before


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # A file that expects nothing passed whatever the result (a tester's find).
        (lambda e: e.pop("metrics"), "metrics: missing; expected an object of metric name -> value"),
        (lambda e: e.__setitem__("metrics", {}), "metrics: an empty object; expected an object"),
        (lambda e: e["metrics"].__setitem__("bogus_metric", 1.0), "metrics.bogus_metric: unknown metric"),
        (lambda e: e["metrics"].__setitem__("avg_power", 1.0), "did you mean 'avg_power_w'?"),
        (
            lambda e: e["metrics"].__setitem__("iteration_time_s", "fast"),
            "metrics.iteration_time_s: expected a finite number or null, got 'fast'",
        ),
        (
            lambda e: e["metrics"].__setitem__("iteration_time_s", float("nan")),
            "metrics.iteration_time_s: expected a finite number or null, got nan",
        ),
        (lambda e: e["metrics"].__setitem__("status", "great"), "metrics.status: expected one of ok"),
        (lambda e: e["metrics"].__setitem__("memory_fits", 1), "metrics.memory_fits: expected true or false"),
    ],
)
def test_golden_malformed_expected_metrics_are_a_user_error(golden_copy, edit, expected):
    """Exit 2 (a malformed case), not a pass of a file that checks nothing nor a FAIL (exit 1)."""
    path = golden_copy / "tiny-analytic" / "expected.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    result = invoke(golden, "check", golden_copy)
    assert result.exit_code == 2, result.output
    assert f"{path}: " in result.output and expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_golden_update_records_the_metrics_of_a_file_that_has_none(golden_copy):
    path = golden_copy / "tiny-analytic" / "expected.json"
    data = json.loads(path.read_text())
    data["metrics"], data["tolerances"] = {}, {}
    path.write_text(json.dumps(data))
    assert invoke(golden, "update", golden_copy).exit_code == 0
    assert "iteration_time_s" in json.loads(path.read_text())["metrics"]
    assert invoke(golden, "check", golden_copy).exit_code == 0


def test_results_export_replaces_only_an_export_of_recsims(sweep_dir, tmp_path):
    # `--to` had replaced any CSV (a CLI tester's find); an export of recsim's is replaced.
    foreign = tmp_path / "data.csv"
    foreign.write_text("a,b\n1,2\n")
    refused = invoke(results, "export", sweep_dir, "--to", foreign)
    assert refused.exit_code == 2 and "is not a results export recsim wrote" in refused.output
    assert foreign.read_text() == "a,b\n1,2\n"
    for name in ("mine.csv", "mine.parquet"):
        assert invoke(results, "export", sweep_dir, "--to", tmp_path / name).exit_code == 0
        again = invoke(results, "export", sweep_dir, "--to", tmp_path / name)
        assert again.exit_code == 0, again.output


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("throughput_samples_per_s", 4_420_000.0, "4.42M samples/s"),
        ("throughput_samples_per_s", 999_940.0, "999.9k samples/s"),
        # Rounded up to the next prefix: "1000k samples/s" before, as format_quantity's "1000 us".
        ("throughput_samples_per_s", 999_960.0, "1M samples/s"),
        ("throughput_samples_per_s", 999.96, "1k samples/s"),
        # Past the last prefix: "1e+04T samples/s" before.
        ("throughput_samples_per_s", 1e16, "10000T samples/s"),
        # The sweep-derived per-accelerator throughput is samples/s too: "216329" before.
        ("throughput_per_accelerator", 216_328.8, "216.3k samples/s"),
    ],
)
def test_a_metric_picks_its_prefix_by_the_value_as_printed(name: str, value: float, text: str) -> None:
    from recsim.cli_results import format_metric

    assert format_metric(name, value) == text
