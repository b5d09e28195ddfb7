"""Plots: PNG and SVG written, reproducible, axes labelled with units read from metric names."""

import numpy as np
import pandas as pd
import pytest

from recsim.errors import ConfigError
from recsim.explore import plots


@pytest.fixture
def frame():
    rng = np.random.default_rng(1)
    n = 24
    nodes = np.tile([1, 2, 4, 8], n // 4)
    status = np.where(np.arange(n) % 7 == 3, "infeasible", "ok")
    thr = np.where(status == "ok", nodes * 1.2e6 * rng.uniform(0.5, 1.0, n), np.nan)
    return pd.DataFrame(
        {
            "index": np.arange(n),
            "status": status,
            "values.nodes": nodes,
            "values.plan": np.repeat(["table_wise", "row_wise"], n // 2),
            "throughput_samples_per_s": thr,
            "avg_power_w": nodes * 3500.0 * rng.uniform(0.9, 1.1, n),
            "iteration_time_s": np.where(status == "ok", 0.004 / nodes, np.nan),
            "breakdown_s.compute": 0.002 / nodes,
            "breakdown_s.embedding": 0.0015 / nodes,
            "breakdown_s.all_to_all": 0.0005 / nodes,
            "breakdown_s.all_reduce": 0.0,
        }
    )


def test_units_from_metric_names():
    assert plots.axis_label("throughput_samples_per_s", [2e6]) == "throughput (M samples/s)"
    assert plots.axis_label("iteration_time_s", [0.004]) == "iteration time (ms)"
    assert plots.axis_label("avg_power_w", [35_000.0]) == "avg power (kW)"
    assert plots.axis_label("energy_per_sample_j", [2e-4]) == "energy per sample (uJ)"
    assert plots.axis_label("memory_peak_bytes.hbm", [40 * 2**30]) == "memory peak hbm (GiB)"
    assert plots.axis_label("samples_per_joule", [50.0]) == "samples per joule (samples/J)"
    assert plots.axis_label("breakdown_s.compute") == "breakdown compute (s)"
    assert plots.axis_label("values.cluster.nodes", [4]) == "cluster.nodes"
    assert plots.axis_label("num_accelerators", [8]) == "num accelerators"
    # The sweep's derived throughput per accelerator (``explore.evaluate.derived_metrics``) is in
    # samples/s too, though its name has no unit suffix: it had no unit on the axis, in the
    # front table and in `results show` ("216329" beside "3.461M samples/s").
    per_accelerator = plots.axis_label("throughput_per_accelerator", [2.2e5])
    assert per_accelerator == "throughput per accelerator (k samples/s)"


def test_pareto_writes_png_and_svg(tmp_path, frame):
    fig = plots.pareto(
        frame,
        "avg_power_w",
        "throughput_samples_per_s",
        {"avg_power_w": "min", "throughput_samples_per_s": "max"},
        path=tmp_path / "front.png",
    )
    ax = fig.axes[0]
    assert ax.get_xlabel() == "avg power (kW)"
    assert ax.get_ylabel() == "throughput (M samples/s)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["dominated", "Pareto front"]
    assert any(label.startswith("infeasible") for label in labels)
    png, svg = tmp_path / "front.png", tmp_path / "front.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in svg.read_text()[:2000]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["front.png", "front.svg"]


def test_output_is_reproducible(tmp_path, frame):
    for name in ("a", "b"):
        plots.pareto(frame, "avg_power_w", "throughput_samples_per_s", ["min", "max"], path=tmp_path / name)
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_scaling_and_breakdown(tmp_path, frame):
    fig = plots.scaling(
        frame, "values.nodes", "throughput_samples_per_s", hue="values.plan", path=tmp_path / "s"
    )
    ax = fig.axes[0]
    assert ax.get_xlabel() == "nodes"
    assert ax.get_ylabel() == "throughput (M samples/s)"
    assert ax.get_xscale() == "log"  # 1..8 spans a factor of 8
    assert len(ax.get_lines()) == 2  # one line per plan
    fig = plots.breakdown(frame.head(4), "values.nodes", path=tmp_path / "b.svg")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "time per step (ms)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["compute", "embedding", "all to all"]  # all_reduce is zero everywhere
    for name in ("s.png", "s.svg", "b.png", "b.svg"):
        assert (tmp_path / name).stat().st_size > 1000
    share = plots.breakdown(frame, "values.nodes", share=True)
    assert share.axes[0].get_ylabel() == "time per step (share of the step)"


def test_unknown_columns_are_config_errors(frame):
    with pytest.raises(ConfigError, match="no column 'throughput'"):
        plots.pareto(frame, "avg_power_w", "throughput", ["min", "max"])
    with pytest.raises(ConfigError, match="2 senses"):
        plots.pareto(frame, "avg_power_w", "throughput_samples_per_s", ["min"])
    with pytest.raises(ConfigError, match="no breakdown_s"):
        plots.breakdown(frame[["values.nodes", "status"]], "values.nodes")


def test_a_sweep_result_or_other_non_frame_is_a_config_error_naming_its_frames(frame):
    # A tester's find: a notebook's ``recsim.plots.pareto(result, ...)`` (the SweepResult, not its
    # ``.final``) raised AttributeError: 'SweepResult' object has no attribute 'columns'.
    from recsim.explore.sweep import SweepResult

    result = SweepResult(spec=None, out=None, frame=frame, final=frame, front=frame)  # type: ignore[arg-type]
    calls = (
        lambda df: plots.pareto(df, "throughput_samples_per_s", "avg_power_w"),
        lambda df: plots.scaling(df, "values.nodes", "throughput_samples_per_s"),
        lambda df: plots.breakdown(df, "values.nodes"),
    )
    for call in calls:
        with pytest.raises(ConfigError, match=r"a SweepResult, not a DataFrame: give result\.final"):
            call(result)
        with pytest.raises(ConfigError, match="expected a pandas DataFrame of results, got list"):
            call([1, 2])
        call(frame)  # a frame still plots


def test_default_senses_follow_the_metric_names() -> None:
    assert plots.default_sense("throughput_samples_per_s") == "max"
    assert plots.default_sense("samples_per_joule") == "max"
    for metric in ("avg_power_w", "iteration_time_s", "energy_per_sample_j", "latency_p99_s"):
        assert plots.default_sense(metric) == "min"


def test_an_axis_of_quantity_texts_is_plotted_in_si():
    # A sweep over node.accelerators.device.hbm.bandwidth stores "1 TB/s", "2 TB/s" as written;
    # the scaling plot had read them as NaN and drawn nothing (a tester's find).
    frame = pd.DataFrame(
        {
            "values.hbm": ["1 TB/s", "2 TB/s", "4000 GB/s"],
            "throughput_samples_per_s": [1e6, 1.5e6, 1.8e6],
        }
    )
    fig = plots.scaling(frame, "values.hbm", "throughput_samples_per_s")
    (line,) = fig.axes[0].get_lines()
    # In SI, shown in the unit that suits the largest (and labelled with it, a reviewer's note).
    assert list(line.get_xdata()) == [1.0, 2.0, 4.0]
    assert fig.axes[0].get_xlabel() == "hbm (TB/s)"
    pareto = plots.pareto(frame.assign(status="ok"), "values.hbm", "throughput_samples_per_s", ["max", "max"])
    assert pareto.axes[0].get_xlabel() == "hbm (TB/s)"
    with pytest.raises(ConfigError, match="no numbers or quantities"):
        plots.scaling(frame.assign(plan=["a", "b", "c"]), "plan", "throughput_samples_per_s")
    with pytest.raises(ConfigError, match="mixes quantities"):
        plots.scaling(frame.assign(mixed=["1 TB/s", "80 GB", "2 TB/s"]), "mixed", "throughput_samples_per_s")


def test_points_with_no_y_widen_the_x_range():
    # A tester's find: points with no y sit on the bottom edge in axes coordinates for y, which
    # autoscaling ignores: one outside the ok points' x range was invisible, and with every y
    # missing the x range stayed about +-0.05 while the points sat at 17.8-25.3M.
    none = pd.DataFrame(
        {
            "status": ["infeasible"] * 3,
            "throughput_samples_per_s": [17.8e6, 21.0e6, 25.3e6],
            "avg_power_w": [np.nan] * 3,
        }
    )
    fig = plots.pareto(none, "throughput_samples_per_s", "avg_power_w", ["max", "min"])
    lo, hi = fig.axes[0].get_xlim()
    assert lo < 17.8 and hi > 25.3 and hi - lo < 2 * (25.3 - 17.8)  # M samples/s
    some = pd.DataFrame(
        {
            "status": ["ok", "ok", "ok", "infeasible"],
            "throughput_samples_per_s": [1.0e6, 1.5e6, 2.0e6, 5.0e6],
            "avg_power_w": [1000.0, 1500.0, 2500.0, np.nan],
        }
    )
    fig = plots.pareto(some, "throughput_samples_per_s", "avg_power_w", ["max", "min"])
    lo, hi = fig.axes[0].get_xlim()
    assert lo < 1.0 and hi > 5.0
    one = pd.DataFrame({"status": ["error"], "throughput_samples_per_s": [3.0e6], "avg_power_w": [np.nan]})
    lo, hi = plots.pareto(one, "throughput_samples_per_s", "avg_power_w", ["max", "min"]).axes[0].get_xlim()
    assert lo < 3.0 < hi and hi - lo < 1.0


def test_a_plot_into_a_missing_folder_is_refused(tmp_path, frame):
    # Every output file the user names needs its folder to exist (results export refuses a
    # missing one); a plot made it, parents and all.
    from recsim.output import OutputError

    target = tmp_path / "no" / "such" / "front"
    with pytest.raises(OutputError, match=r"the folder .*such does not exist \(create it first\)"):
        plots.pareto(frame, "avg_power_w", "throughput_samples_per_s", ["min", "max"], path=target)
    assert not (tmp_path / "no").exists()
