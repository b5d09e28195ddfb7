"""The DLRM spec: derived figures by hand, shipped workloads, generated table groups, strictness."""

import pytest

from recsim.config import Override
from recsim.errors import ConfigError
from recsim.workload.library import WorkloadLibrary
from tests.conftest import FIXTURES

LIB = WorkloadLibrary([FIXTURES / "workloads"])


def tiny():
    return LIB.workload("tiny-dlrm")


def test_tiny_by_hand():
    w = tiny()
    assert w.num_tables == 2
    assert w.total_rows == 150
    assert w.embedding_parameters == 600
    assert w.embedding_bytes == 2400
    assert w.lookups_per_sample == 5
    assert w.bytes_gathered_per_sample == 5 * 4 * 4
    # bottom 4->8->4 (64 + 64 FLOP), dot over 3 features of dim 4 (2 x 9 x 4 = 72, 3 pairs),
    # top (4 + 3)->6->1 (84 + 12 FLOP)
    assert [(layer.name, layer.flops) for layer in w.dense_layers] == [
        ("bottom0", 64.0),
        ("bottom1", 64.0),
        ("interaction", 72.0),
        ("top0", 84.0),
        ("top1", 12.0),
    ]
    assert w.dense_parameters == (4 * 8 + 8) + (8 * 4 + 4) + (7 * 6 + 6) + (6 + 1)
    assert w.dense_forward_flops_per_sample == 296
    assert w.forward_flops_per_sample == 296 + 5 * 4
    # 3x the dense forward less the first bottom layer's input gradient (64: the dense features
    # need none), 2x the pooling adds
    assert w.training_flops_per_sample == 3 * 296 - 64 + 2 * 5 * 4
    assert w.table_access(w.tables[0]).dist == "uniform"
    assert w.table_access(w.tables[1]).dist == "zipf"


def test_quantised_tables_count_their_scale_and_bias():
    """An int8 or int4 table's rows carry FBGEMM's scale and bias beside the values (the training
    TBE's two fp32 for int8, an fp16 pair for int4), so its bytes and the bytes a lookup gathers
    are the planner's, not ``dim x dtype`` alone: ``workload show`` gave 97.76 MB for a model the
    planner stored in 146.64 MB (int8, dim 16: a third short; a tester's find)."""
    base = tiny()
    for dtype, row in (("int8", 4 * 1 + 8), ("int4", 4 * 0.5 + 4), ("fp8", 4 * 1), ("fp16", 4 * 2)):
        w = LIB.workload("tiny-dlrm", [Override.parse(f"embedding.dtype={dtype}")])
        assert w.embedding_bytes == base.total_rows * row, dtype
        assert w.bytes_gathered_per_sample == 5 * row, dtype
        assert w.embedding_parameters == base.embedding_parameters


def test_dlrm_dcnv2_published_figures():
    w = WorkloadLibrary().workload("dlrm-dcnv2")
    assert w.num_tables == 26
    assert w.total_rows == 204_184_588
    assert w.embedding_parameters == pytest.approx(26.14e9, rel=1e-3)
    assert w.lookups_per_sample == 214
    # DCNv2 width: 128 (bottom) + 26 x 128 = 3456; three rank-512 layers.
    cross = [layer for layer in w.dense_layers if layer.op == "dcnv2"]
    assert len(cross) == 3
    assert cross[0].in_features == 3456


def test_table_groups_are_seeded_and_bounded():
    a = LIB.workload("tiny-groups")
    b = LIB.workload("tiny-groups")
    assert [(t.rows, t.dim, t.pooling) for t in a.tables] == [(t.rows, t.dim, t.pooling) for t in b.tables]
    assert a.num_tables == 20
    assert all(10 <= t.rows <= 100_000 for t in a.tables)
    assert {t.dim for t in a.tables} <= {16, 32}
    assert all(1 <= t.pooling <= 10 for t in a.tables)
    other = LIB.workload("tiny-groups", [Override.parse("table_groups[0].seed=8")])
    assert [t.rows for t in other.tables] != [t.rows for t in a.tables]
    # cat interaction: top input is the sum of the table dims (no dense features)
    assert a.dense_layers[1].in_features == sum(a.table_dim(t) for t in a.tables)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("interaction.type=dcnv2", "needs 'layers' and 'low_rank'"),
        # Keys that change nothing are refused (a tester's cat with self_interaction ran as cat).
        ("interaction={type: cat, self_interaction: true}", "interaction 'cat' takes no 'self_interaction'"),
        ("interaction.bypass_op=sum", "'bypass_op' combines the 'bypass_tables', and none are given"),
        ("tables[1].dim=8", "'dot' interaction needs one dim"),
        ("tables[1].name=a", "duplicate table names: a"),
        ("tables[0].pooling=0", "must be > 0"),
        (
            "tables[1].access.dist=pareto",
            "tables[1].access.dist: expected one of uniform, zipf, empirical, got 'pareto'",
        ),
        ("training.optimizer=lamb", "input should be"),
        ("bottom_mlp=[]", "'dot' interaction needs a 'bottom_mlp'"),
        ("tables[0].rowz=5", "did you mean 'rows'"),
        # A tester's finds: rows past 2^53 had overflowed, a negative seed named no key, and a
        # draw's own problem was hidden behind "expected an integer, got a mapping".
        ("tables[0].rows=100000000000000000000", "tables[0].rows: must be <= 9007199254740992"),
    ],
)
def test_strict_errors(override, fragment):
    with pytest.raises(ConfigError) as info:
        LIB.workload("tiny-dlrm", [Override.parse(override)])
    assert fragment in str(info.value).lower() or fragment in str(info.value)


def test_int32_ids_address_at_most_2_to_the_31_rows():
    """A table taller than int32 ids can name is refused at training.index_dtype (a tester's
    4e9-row table extending dlrm-dcnv2 kept its int32 ids: half the input bytes, and no step)."""
    int32 = Override.parse("training.index_dtype=int32")
    assert (
        LIB.workload("tiny-dlrm", [int32, Override.parse(f"tables[0].rows={2**31}")]).tables[0].rows == 2**31
    )
    with pytest.raises(ConfigError) as info:
        LIB.workload("tiny-dlrm", [int32, Override.parse(f"tables[0].rows={2**31 + 1}")])
    assert "training.index_dtype: int32 ids address at most 2,147,483,648 rows, and table 'a' has " in str(
        info.value
    )
    assert (
        LIB.workload("tiny-dlrm", [Override.parse(f"tables[0].rows={2**31 + 1}")]).tables[0].rows == 2**31 + 1
    )


def test_a_bad_access_dist_names_its_set_and_key():
    # pydantic puts a tagged union's error at the mapping (``access``), in the file that wrote it.
    with pytest.raises(ConfigError) as info:
        LIB.workload("tiny-dlrm", [Override.parse("tables[1].access.dist=pareto")])
    assert str(info.value).startswith("--set tables[1].access.dist=pareto: tables[1].access.dist: "), (
        info.value
    )


def test_unknown_workload_suggests():
    with pytest.raises(ConfigError, match="did you mean 'tiny-dlrm'"):
        LIB.workload("tiny-dlr")


def test_raw_dense_features_and_bypass_branch():
    # Wide & Deep: 4 raw dense features straight into the concatenation with the two tables.
    wnd = LIB.workload("tiny-dlrm", [Override.parse("interaction.type=cat"), Override.parse("bottom_mlp=[]")])
    assert wnd.dense_layers[0].name == "interaction"
    assert wnd.dense_layers[1].in_features == 4 + 4 + 4
    # NCF: table a bypasses the MLP (GMF branch) and joins the top output before a final layer.
    ncf = LIB.workload(
        "tiny-dlrm",
        [
            Override.parse("interaction.type=cat"),
            Override.parse("interaction.bypass_tables=[a]"),
            Override.parse("final_mlp=[3]"),
        ],
    )
    names = [(layer.name, layer.in_features, layer.out_features) for layer in ncf.dense_layers]
    assert ("interaction", 4 + 4, 4 + 4) in names  # bottom output + table b only
    assert ("bypass", 4, 4) in names
    assert ("final0", 1 + 4, 3) in names
    with pytest.raises(ConfigError, match="need a 'final_mlp'"):
        LIB.workload(
            "tiny-dlrm",
            [Override.parse("interaction.type=cat"), Override.parse("interaction.bypass_tables=[a]")],
        )


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("table_groups[0].seed=-1", "table_groups[0].seed: must be >= 0, got -1"),
        (
            "table_groups[0].rows={dist: uniform, low: 10, high: 5}",
            "table_groups[0].rows.uniform: low 10.0 > high 5.0",
        ),
        (
            "table_groups[0].rows={dist: lognormal, median: 100, sigma: 1, min: 5000, max: 10}",
            "table_groups[0].rows.lognormal: min 5000.0 > max 10.0",
        ),
        # A tester's find: a median past max drew nearly every table at max, without a word.
        (
            "table_groups[0].rows={dist: lognormal, median: 1000000, sigma: 1, min: 10, max: 100000}",
            "table_groups[0].rows.lognormal: median 1000000.0 > max 100000.0: most draws would be clipped",
        ),
        (
            "table_groups[0].pooling={dist: lognormal, median: 0.5, sigma: 1, min: 1}",
            "table_groups[0].pooling.lognormal: median 0.5 < min 1.0: most draws would be clipped to min",
        ),
        ("table_groups[0].rows=100000000000000000000", "table_groups[0].rows: must be <= 9007199254740992"),
        ("table_groups[0].count=100000000", "table_groups[0].count: must be <= 100000"),
        # Pydantic's label of the union was in the key path: "rows.tagged-union[function-after[
        # _ordered(), LogNormal],...].dist".
        (
            "table_groups[0].rows={dist: normal}",
            "table_groups[0].rows={dist: normal}: table_groups[0].rows.dist: expected one of lognormal, "
            "uniform, choice, got 'normal'",
        ),
        (
            "table_groups[0].rows={median: 5}",
            "table_groups[0].rows.dist: missing required key 'dist' (one of lognormal, uniform, choice)",
        ),
    ],
)
def test_table_group_errors_name_the_key_and_the_real_problem(override, fragment):
    with pytest.raises(ConfigError) as info:
        LIB.workload("tiny-groups", [Override.parse(override)])
    assert fragment in str(info.value), info.value
    assert "tagged-union" not in str(info.value) and "function-after" not in str(info.value)


@pytest.mark.parametrize(
    "override", ["table_groups[0].dim.weights=[1, 2, 3]", "table_groups[0].pooling.high=0.5"]
)
def test_a_check_of_a_drawn_setting_broken_by_a_set_names_the_set(override):
    # The check fails at the union member ("dim.choice", "pooling.uniform"), no key of the data:
    # the --set below it was not found and the shipped file was blamed ("tiny-groups.yaml:9: ...").
    with pytest.raises(ConfigError) as info:
        LIB.workload("tiny-groups", [Override.parse(override)])
    assert str(info.value).startswith(f"--set {override}: table_groups[0]."), info.value
    assert "tiny-groups.yaml" in str(info.value)  # the mapping the check read, named after it


def test_a_group_drawn_past_the_row_bound_is_clipped_not_wrapped():
    # A log-normal without a max can draw past 2^53: clipped there, where it had wrapped to a
    # negative int64 and failed as "rows: must be > 0" at the wrong key.
    huge = "table_groups[0].rows={dist: lognormal, median: 1.0e+17, sigma: 2}"
    workload = LIB.workload("tiny-groups", [Override.parse(huge)])
    assert all(1 <= t.rows <= 2**53 for t in workload.tables)


def test_a_bottom_mlp_without_dense_features_is_refused_at_its_line(tmp_path):
    # A tester's find: dense_features: 0 with a bottom MLP loaded, its first layer bias-only.
    text = (FIXTURES / "workloads" / "tiny-dlrm.yaml").read_text()
    path = tmp_path / "no-dense.yaml"
    path.write_text(text.replace("dense_features: 4", "dense_features: 0"))
    with pytest.raises(ConfigError) as info:
        WorkloadLibrary([tmp_path]).workload(str(path))
    line = text.splitlines().index("bottom_mlp: [8, 4]") + 1
    assert str(info.value).startswith(
        f"{path}:{line}: bottom_mlp: a bottom MLP takes the dense features, and dense_features is 0; "
    ), info.value
    # A model without dense features has no bottom MLP (NCF, DIN): that loads.
    fine = LIB.workload("tiny-dlrm", [Override.parse(o) for o in ("dense_features=0", "bottom_mlp=[]")])
    assert fine.dense_layers[0].name == "interaction"


@pytest.mark.parametrize(
    ("edit", "key", "fragment"),
    [
        (
            ("name: a, rows: 100, pooling: 2}", "name: a, rows: 100, pooling: 2, dim: 8}"),
            "interaction",
            "one dim",
        ),
        (("bottom_mlp: [8, 4]", "bottom_mlp: []"), "interaction", "needs a 'bottom_mlp'"),
        (
            ("interaction: {type: dot}", "interaction: {type: cat, bypass_tables: [a]}"),
            "interaction.bypass_tables",
            "need a 'final_mlp'",
        ),
        (
            ("inference:", "sequence: {table: c, length: 4, model: gru, hidden: [8]}\ninference:"),
            "sequence.table",
            "'c' is not a table",
        ),
    ],
)
def test_a_check_across_keys_is_reported_at_the_key_it_is_about(tmp_path, edit, key, fragment):
    # A tester's find: "tiny.yaml:2: <top level>: 'dot' interaction needs one dim for all features".
    text = (FIXTURES / "workloads" / "tiny-dlrm.yaml").read_text()
    assert edit[0] in text
    text = text.replace(edit[0], edit[1])
    path = tmp_path / "w.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        WorkloadLibrary([tmp_path]).workload(str(path))
    # Each key is written in a one-line flow mapping: its line is its top-level key's.
    top = key.split(".")[0]
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith(f"{top}:"))
    assert str(info.value).startswith(f"{path}:{line}: {key}: "), info.value
    assert fragment in str(info.value) and "<top level>" not in str(info.value)


def test_every_shipped_workload_survives_a_dump_and_validate_round_trip():
    # The fresh-clone CI's find: refusing ``bypass_op`` by ``model_fields_set`` refused every
    # dumped dot workload (the dump carries the default), so a workload edited by ``model_dump``
    # and ``model_validate`` no longer loaded.
    from recsim.config.library import shipped_data
    from recsim.workload.library import WorkloadLibrary

    library = WorkloadLibrary([shipped_data("workloads")])
    names = library.names_of_kind("dlrm")
    assert len(names) > 5
    for name in names:
        workload = library.workload(name)
        again = type(workload).model_validate(workload.model_dump())
        assert again == workload, name
