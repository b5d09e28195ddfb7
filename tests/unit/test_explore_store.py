"""The sweep store: round trips, never a duplicate row, resume keys, exports, concurrent writers."""

import math
import multiprocessing
import sqlite3

import pandas as pd
import pytest

from recsim.errors import ConfigError
from recsim.explore.records import PointRecord
from recsim.explore.store import STORE_NAME, Store, find_store
from recsim.output import OutputError


def record(i, stage="analytic", status="ok", **metrics):
    base = {
        "throughput_samples_per_s": 1000.0 * (i + 1),
        "avg_power_w": 300.0 + i,
        "breakdown_s.compute": 0.001,
        "memory_fits": True,
        "notes": ["a note"],
        "latency_p50_s": None,
    }
    base.update(metrics)
    return PointRecord(
        index=i,
        key=f"{i:016x}",
        values={"nodes": i + 1, "plan": "table_wise" if i % 2 else "row_wise"},
        stage=stage,
        status=status,
        reason="" if status == "ok" else "does not fit",
        metrics=base if status == "ok" else {},
        config={"system": "tiny", "nodes": i + 1, "overrides": ["a=1"]},
        wall_s=0.25,
    )


def test_write_read_round_trip(tmp_path):
    store = Store(tmp_path / STORE_NAME)
    recs = [record(2), record(0), record(1, status="infeasible")]
    assert all(store.write(r) for r in recs)
    back = store.records()
    assert [r.index for r in back] == [0, 1, 2]
    assert back == sorted(recs, key=lambda r: r.index)
    # a fresh Store on the same file reads the same rows
    assert Store(tmp_path / STORE_NAME).records() == back


def test_non_finite_metrics_become_null(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.write(record(0, energy_per_sample_j=math.nan))
    assert store.records()[0].metrics["energy_per_sample_j"] is None


def test_insert_or_ignore_never_duplicates(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    assert store.write(record(0)) is True
    assert store.write(record(0)) is False
    assert store.write(record(0, throughput_samples_per_s=5.0)) is False  # first write wins
    assert store.write(record(0, stage="des")) is True  # another stage is another row
    assert store.count() == 2
    assert store.records("analytic")[0].metrics["throughput_samples_per_s"] == 1000.0
    rows = sqlite3.connect(tmp_path / "s.sqlite").execute("SELECT COUNT(*) FROM records").fetchone()
    assert rows == (2,)


def test_done_keys_by_stage(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.write(record(0))
    store.write(record(1, status="error"))
    store.write(record(0, stage="des"))
    assert store.done_keys() == {f"{0:016x}", f"{1:016x}"}
    assert store.done_keys("analytic") == {f"{0:016x}", f"{1:016x}"}
    assert store.done_keys("des") == {f"{0:016x}"}


def test_spec_set_once_and_checked(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    assert store.spec() is None
    store.set_spec("name: demo\nobjectives: {a: max}\n", "k" * 16)
    store.set_spec("name: demo\nobjectives: {a: max}\n", "k" * 16)  # the same spec resumes
    assert store.spec() == ("name: demo\nobjectives: {a: max}\n", "k" * 16)
    with pytest.raises(ConfigError, match="another sweep spec"):
        Store(tmp_path / "s.sqlite").set_spec("name: other\n", "j" * 16)
    assert store.summary()["name"] == "demo"


def test_frame_flattens_values_and_metrics(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    for i in range(3):
        store.write(record(i))
    frame = store.frame()
    assert list(frame["index"]) == [0, 1, 2]
    for col in ("values.nodes", "values.plan", "throughput_samples_per_s", "breakdown_s.compute", "config"):
        assert col in frame.columns
    assert list(frame["values.nodes"]) == [1, 2, 3]
    assert Store(tmp_path / "empty.sqlite").frame().empty


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_round_trip(tmp_path, suffix):
    store = Store(tmp_path / "s.sqlite")
    for i in range(4):
        store.write(record(i, status="ok" if i != 2 else "infeasible"))
    target = tmp_path / "out" / f"results{suffix}"
    with pytest.raises(OutputError, match=r"the folder .*out does not exist \(create it first\)"):
        store.export(target)  # a missing folder is said, not made, as for every output file
    target.parent.mkdir()
    assert store.export(target) == target
    back = pd.read_parquet(target) if suffix == ".parquet" else pd.read_csv(target, dtype={"key": str})
    frame = store.frame()
    assert list(back.columns) == list(frame.columns)
    assert list(back["key"]) == list(frame["key"])
    assert list(back["status"]) == ["ok", "ok", "infeasible", "ok"]
    assert back["throughput_samples_per_s"].tolist()[:2] == [1000.0, 2000.0]
    assert math.isnan(back["throughput_samples_per_s"][2])
    assert not [p for p in target.parent.iterdir() if p != target]  # no temporary left behind


def test_export_needs_known_suffix(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(ConfigError, match=r"\.parquet or \.csv"):
        store.export(tmp_path / "x.xlsx")


def test_non_store_files_are_config_errors(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database at all, just some text " * 20)
    with pytest.raises(ConfigError, match=r"notes\.sqlite: not a recsim results store"):
        Store(text)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match=r"other\.db: not a recsim results store"):
        Store(other)
    with pytest.raises(ConfigError, match="no such results store"):
        Store(tmp_path / "missing.sqlite", create=False)


def test_find_store(tmp_path):
    with pytest.raises(ConfigError, match="no results store"):
        find_store(tmp_path)
    Store(tmp_path / STORE_NAME)
    assert find_store(tmp_path) == tmp_path / STORE_NAME
    assert find_store(tmp_path / STORE_NAME) == tmp_path / STORE_NAME


def _writer(path, start, count):
    store = Store(path)
    for i in range(start, start + count):
        store.write(record(i))


def test_concurrent_writers_never_duplicate(tmp_path):
    """Two processes write overlapping points (0..59 and 30..89) at once: 90 rows, none twice."""
    path = tmp_path / "s.sqlite"
    Store(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(path, 0, 60)),
        ctx.Process(target=_writer, args=(path, 30, 60)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = Store(path)
    assert store.count() == 90
    assert sorted(r.index for r in store.records()) == list(range(90))


def test_store_survives_fork_and_pickle(tmp_path):
    import pickle

    store = Store(tmp_path / "s.sqlite")
    store.write(record(0))
    clone = pickle.loads(pickle.dumps(store))
    clone.write(record(1))
    assert store.count() == 2


def test_reading_a_file_that_is_not_a_store_leaves_it_as_it_was(tmp_path):
    for name, content in (("empty.sqlite", b""), ("text.sqlite", b"hello\n")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ConfigError, match="not a recsim results store"):
            Store(path, create=False)
        assert path.read_bytes() == content
    # An SQLite file without the store's tables is refused before anything is written to it.
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    before = other.read_bytes()
    with pytest.raises(ConfigError, match="without its tables"):
        Store(other, create=False)
    assert other.read_bytes() == before


class _FullDisk:
    """A connection whose commits fail as on a full disk (everything else goes through)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, *args):
        if sql == "COMMIT":
            self.conn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def close(self) -> None:
        self.conn.close()


def test_a_full_disk_is_one_output_error_and_the_row_is_not_stored(tmp_path):
    from recsim.output import OutputError

    store = Store(tmp_path / "s.sqlite")
    store.write(record(0))
    store._conn = _FullDisk(store._conn)  # type: ignore[assignment]
    with pytest.raises(OutputError, match=r"cannot write the results store \(database or disk is full"):
        store.write(record(1))
    store._conn = store._conn.conn  # type: ignore[union-attr]
    assert store.count() == 1 and store.write(record(1))


def test_reading_a_store_needs_no_write_lock(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.write(record(0))
    store.close()
    writer = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a sweep in the middle of a write
    try:
        reader = Store(tmp_path / "s.sqlite", create=False)
        assert reader.count() == 1
        reader.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


@pytest.mark.parametrize(
    ("column", "text", "expected"),
    [
        ("metrics_json", "{not json", "metrics_json is not JSON"),
        ("values_json", "[]", "values_json holds list JSON, expected an object"),
        ("wall_s", "'slow'", "its index or wall_s is not a number"),
    ],
)
def test_a_damaged_row_is_a_config_error_naming_the_point(tmp_path, column, text, expected):
    # A row edited or damaged outside recsim had given JSONDecodeError and AttributeError tracebacks
    # from results show, export and sweep --resume (a CLI tester's find).
    path = tmp_path / STORE_NAME
    Store(path).write(record(0))
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE records SET {column} = {text if column == 'wall_s' else repr(text)}")
    with pytest.raises(ConfigError, match=rf"point '0000000000000000' at stage 'analytic': {expected}"):
        Store(path).records()
