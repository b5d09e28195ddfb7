"""Saved sharding plans: exact round trip, strict one-line errors, and ``make_plan`` on a file."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from recsim.api import make_plan
from recsim.errors import ConfigError
from recsim.planner.io import load_plan, plan_from_dict, plan_to_dict, save_plan
from recsim.planner.plan import table_wise_round_robin
from recsim.planner.types import Plan, Shard
from recsim.workload.library import WorkloadLibrary
from recsim.workload.spec import Workload
from tests.conftest import FIXTURES

LIB = WorkloadLibrary([FIXTURES / "workloads"])


@pytest.fixture
def tiny() -> Workload:
    return LIB.workload("tiny-dlrm")


def rich_plan() -> Plan:
    """Every field away from its default: popularity order, a data-parallel block, uvm caching, int8."""
    return Plan(
        world_size=2,
        shards=(
            Shard("a", "data_parallel", 0, 10, 0, 4, (0, 1), "hbm", "fp16", "popularity"),
            Shard("a", "row_wise", 10, 60, 0, 4, (0,), "uvm_caching:0.1", "int8", "popularity"),
            Shard("a", "row_wise", 60, 100, 0, 4, (1,), "uvm_caching:0.1", "int8", "popularity"),
            Shard("b", "column_wise", 0, 50, 0, 2, (1,), "ddr", None, "id"),
            Shard("b", "column_wise", 0, 50, 2, 4, (0,), "hbm", "bf16", "id"),
        ),
        strategy="hand-made",
        notes=("hot rows of a replicated", "b split by columns"),
        comm_dtype="fp16",
    )


def test_round_trip_is_exact(tiny: Workload) -> None:
    plan = rich_plan()
    plan.validate(tiny)
    data = plan_to_dict(plan)
    assert data["format"] == "recsim-plan" and data["version"] == 1
    assert data["shards"][1]["rows"] == [10, 60]
    back = plan_from_dict(json.loads(json.dumps(data)))
    assert back == plan
    assert isinstance(back.shards, tuple) and isinstance(back.notes, tuple)
    assert isinstance(back.shards[0].ranks, tuple)


@pytest.mark.parametrize("name", ["plan.json", "plan.json.gz"])
def test_saved_file_loads_back(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    save_plan(rich_plan(), path)
    assert load_plan(path) == rich_plan()
    assert not list(tmp_path.glob("*.tmp"))
    text = gzip.decompress(path.read_bytes()).decode() if name.endswith(".gz") else path.read_text()
    # one shard per line
    assert sum('"table":' in line for line in text.splitlines()) == len(rich_plan().shards)


def test_empty_plan_round_trips(tmp_path: Path) -> None:
    plan = Plan(1, ())
    save_plan(plan, tmp_path / "p.json")
    assert load_plan(tmp_path / "p.json") == plan


def _edit(data: dict[str, Any], edit: str) -> None:
    shard = data["shards"][0]
    if edit == "format":
        data["format"] = "recsim-graph"
    elif edit == "version":
        data["version"] = 2
    elif edit == "version_float":
        data["version"] = 1.0
    elif edit == "world_size":
        data["world_size"] = "two"
    elif edit == "unknown":
        data["colour"] = "blue"
    elif edit == "missing":
        del data["comm_dtype"]
    elif edit == "rows":
        shard["rows"] = [5, 5]
    elif edit == "columns":
        shard["columns"] = [0]
    elif edit == "ranks":
        shard["ranks"] = [0, "1"]
    elif edit == "sharding":
        shard["sharding"] = "diagonal"
    elif edit == "order":
        shard["order"] = "random"
    elif edit == "dtype":
        shard["dtype"] = "fp12"
    elif edit == "tier":
        shard["tier"] = "tape"
    elif edit == "shard_key":
        shard["rank"] = 0
    elif edit == "notes":
        data["notes"] = ["ok", 3]
    elif edit == "comm_dtype":
        data["comm_dtype"] = "fp7"


BAD = [
    ("format", "format: expected 'recsim-plan'"),
    ("version", "version: expected 1"),
    ("version_float", "version: expected 1"),
    ("world_size", "world_size: expected an integer >= 1"),
    ("unknown", "top level: unknown key 'colour'"),
    ("missing", "top level: missing key 'comm_dtype'"),
    ("rows", "shards[0].rows: expected [start, end] with 0 <= start < end, got [5, 5]"),
    ("columns", "shards[0].columns: expected [start, end]"),
    ("ranks", "shards[0].ranks: expected a non-empty list of distinct integer ranks in 0..1"),
    ("sharding", "shards[0].sharding: expected one of data_parallel"),
    ("order", "shards[0].order: expected one of id, popularity"),
    ("dtype", "shards[0].dtype: expected one of fp32"),
    ("tier", "shards[0].tier: expected a tier"),
    ("shard_key", "shards[0]: unknown key 'rank'"),
    ("notes", "notes[1]: expected a string, got 3"),
    ("comm_dtype", "comm_dtype: expected one of"),
]


@pytest.mark.parametrize(("edit", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_plan_is_one_line_naming_file_and_key(tmp_path: Path, edit: str, message: str) -> None:
    data = plan_to_dict(rich_plan())
    _edit(data, edit)
    path = tmp_path / "bad-plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        load_plan(path)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert message in text


@pytest.mark.parametrize(
    ("content", "message"),
    [(b'{"format": "recsim-plan", ', "invalid or truncated JSON"), (b"\x1f\x8b\x08garbage", "gzip")],
)
def test_unreadable_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"broken\.json") as err:
        load_plan(path)
    assert message in str(err.value)
    with pytest.raises(ConfigError, match="no such file"):
        load_plan(tmp_path / "absent.json")


def test_top_level_not_an_object() -> None:
    with pytest.raises(ConfigError, match=r"^p\.json: top level: expected a JSON object, got \[\]$"):
        plan_from_dict([], "p.json")


def test_make_plan_loads_a_saved_plan(tmp_path: Path, tiny: Workload) -> None:
    plan = table_wise_round_robin(tiny, 2)
    path = tmp_path / "tw.json"
    save_plan(plan, path)
    assert make_plan(path, tiny, 2) == plan
    assert make_plan(str(path), tiny, 2) == plan
    gz = tmp_path / "tw.json.gz"
    save_plan(plan, gz)
    assert make_plan(str(gz), tiny, 2) == plan
    # a named strategy is still a strategy
    assert make_plan("table_wise", tiny, 2) == plan


def test_make_plan_world_size_mismatch(tmp_path: Path, tiny: Workload) -> None:
    path = tmp_path / "tw.json"
    save_plan(table_wise_round_robin(tiny, 2), path)
    with pytest.raises(ConfigError, match="plan is for 2 ranks, the system has 4 accelerators") as err:
        make_plan(path, tiny, 4)
    assert str(err.value).startswith(str(path))


def test_make_plan_checks_the_workload(tmp_path: Path, tiny: Workload) -> None:
    plan = table_wise_round_robin(tiny, 2)
    path = tmp_path / "half.json"
    save_plan(Plan(2, plan.shards[:1], strategy="half"), path)
    # A mistake in the file: a ConfigError naming it, not an infeasible design point.
    with pytest.raises(ConfigError, match="places no shard of table 'b'") as err:
        make_plan(path, tiny, 2)
    assert str(path) in str(err.value)
    # A misspelt table is named as such, not as the table it left without a shard.
    renamed = Plan(2, (replace(plan.shards[0], table="ax"), *plan.shards[1:]), strategy="typo")
    save_plan(renamed, path)
    with pytest.raises(ConfigError, match="has a shard of unknown table 'ax'"):
        make_plan(path, tiny, 2)
    with pytest.raises(ConfigError, match="no such file"):
        make_plan(tmp_path / "missing.json", tiny, 2)


@pytest.mark.parametrize(
    ("tier", "message"),
    [
        ("nmp", "has no NMP DIMMs"),
        ("ssd", "models inference lookups only"),
        ("smartssd", "no SSD with an NDP"),
    ],
)
def test_a_plan_files_tier_the_system_cannot_train_on_is_named_by_its_shard(
    tmp_path: Path, tier: str, message: str
) -> None:
    """The cost model's own error named the table, not the file or the key (a tester's find)."""
    from recsim.api import prepare

    system, workload = prepare("dgx-a100", "dlrm-dcnv2")
    plan = make_plan("table_wise", workload, system)
    data = plan_to_dict(plan)
    data["shards"][3]["tier"] = tier
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=rf"^{path}: shards\[3\]\.tier: tier '{tier}'.*{message}"):
        make_plan(path, workload, system)


def test_a_key_given_twice_is_refused_naming_file_and_key(tmp_path: Path, tiny: Workload) -> None:
    """JSON keeps the last of two equal keys silently (``"world_size": 8, "world_size": 4``); a plan
    file's are refused, as YAML's duplicate keys are."""
    text = json.dumps(plan_to_dict(table_wise_round_robin(tiny, 2)))
    assert '"world_size": 2' in text and '"table": "a"' in text
    path = tmp_path / "dup.json"
    path.write_text(text.replace('"world_size": 2', '"world_size": 2, "world_size": 4'))
    with pytest.raises(ConfigError, match=rf"^{path}: duplicate key 'world_size'"):
        load_plan(path)
    gz = tmp_path / "dup.json.gz"
    gz.write_bytes(gzip.compress(text.replace('"table": "a"', '"table": "a", "table": "b"').encode()))
    with pytest.raises(ConfigError, match=rf"^{gz}: duplicate key 'table'"):
        load_plan(gz)


def test_a_folder_is_not_a_strategy(tmp_path: Path, tiny: Workload) -> None:
    """``--plan /tmp`` said "unknown plan strategy '/tmp'"."""
    with pytest.raises(ConfigError, match=rf"^plan {tmp_path}: a folder, not a plan file"):
        make_plan(str(tmp_path), tiny, 2)
    from recsim.api import check_strategy

    with pytest.raises(ConfigError, match=rf"^plan {tmp_path}: a folder, not a plan file"):
        check_strategy(str(tmp_path))


def test_table_row_wise_shards_across_two_nodes_are_refused_naming_the_table_and_ranks(
    tmp_path: Path,
) -> None:
    # table_row_wise splits rows over the ranks of ONE node; a hand-written plan over ranks 6-9 of
    # 8-GPU nodes was accepted (a tester's find).
    from recsim.api import prepare

    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2)
    plan = make_plan("table_row_wise", workload, system)
    data = plan_to_dict(plan)
    t0 = [s for s in data["shards"] if s["table"] == "t0"]
    for shard, rank in zip(t0, (6, 7, 8, 9, 10, 11, 12, 13), strict=True):
        shard["ranks"] = [rank]
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        make_plan(path, workload, system)
    assert str(info.value) == (
        f"{path}: table 't0': table_row_wise splits rows over the ranks of one node, but its shards are "
        "on ranks 6, 7, 8, 9, 10, 11, 12, 13, of nodes 0, 1 (8 ranks a node) on dgx-h100"
    )


@pytest.mark.parametrize(
    ("strategy", "refused"),
    [
        # A hier_auto plan of two 8-GPU nodes is 16 ranks on four 4-GPU nodes too: its
        # table_row_wise tables would have been reduced across nodes, not inside one.
        ("hier_auto", r"table_row_wise splits rows over the ranks of one node.*\(4 ranks a node\)"),
        # A grid table's column blocks split their rows inside one node: a grid plan of two 8-GPU
        # nodes would have reduced each block across nodes on four 4-GPU ones (``Plan.node_violation``).
        ("grid", r"\(columns \d+:\d+\): grid splits rows over the ranks of one node.*\(4 ranks a node\)"),
    ],
)
def test_a_saved_plan_on_another_node_shape_is_refused(tmp_path: Path, strategy: str, refused: str) -> None:
    from recsim.api import prepare

    system, workload = prepare("dgx-h100", "dlrm-dcnv2", nodes=2)
    path = tmp_path / f"{strategy}.json"
    save_plan(make_plan(strategy, workload, system), path)
    assert make_plan(path, workload, system).strategy == strategy  # its own shape: accepted
    other, _ = prepare("dgx-h100", "dlrm-dcnv2", nodes=4, overrides=["node.accelerators.count=4"])
    assert other.num_accelerators == system.num_accelerators
    with pytest.raises(ConfigError, match=refused):
        make_plan(path, workload, other)
