"""The sweep results store: one SQLite file, a row written as each point finishes.

Schema (``format`` = ``recsim-sweep-store``, ``version`` = 1 in ``meta``)::

    meta(name TEXT PRIMARY KEY, value TEXT)            -- marks the file as a recsim store, and
                                                       -- 'model': the recsim that made its points
    spec(id INTEGER PRIMARY KEY CHECK (id = 1),        -- the sweep spec the store belongs to
         spec_key TEXT, spec_text TEXT, created_at TEXT)
    records(key TEXT, stage TEXT, idx INTEGER,         -- one evaluated point at one stage
            status TEXT, reason TEXT, wall_s REAL,
            values_json TEXT, metrics_json TEXT, config_json TEXT, finished_at TEXT,
            UNIQUE (key, stage))

Crash safety. The database runs in WAL mode with ``synchronous=FULL`` and each ``write`` is one
transaction holding one row, so when ``write`` returns the row is on disk (the WAL is fsync'ed at
commit). A point gets its row only once it has finished; a process killed at any moment (``kill
-9``, power loss) therefore loses only the points still in flight: a transaction cut short is never
committed and SQLite rolls it back when the file is next opened, leaving every earlier row intact.
Resuming re-runs exactly the points without a row (``done_keys``). A point is never stored twice:
``UNIQUE (key, stage)`` with ``INSERT OR IGNORE`` turns a second write of the same point (a resumed
run racing an old one, two processes writing at once, a retried task) into a no-op that reports
``False``. Several processes may share a store: each opens its own connection (reopened after a
fork), writers wait on SQLite's lock (busy timeout) instead of failing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from recsim.errors import ConfigError
from recsim.explore.records import PointRecord
from recsim.output import OutputError, check_output_path, replacing

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FORMAT", "STORE_NAME", "VERSION", "Store", "find_store"]

FORMAT: Final[str] = "recsim-sweep-store"
VERSION: Final[int] = 1
#: The store's file name inside a sweep's output folder.
STORE_NAME: Final[str] = "results.sqlite"
#: Seconds a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT_S: Final[float] = 60.0

_SCHEMA: Final[str] = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spec (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    spec_key TEXT NOT NULL,
    spec_text TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    key TEXT NOT NULL,
    stage TEXT NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    wall_s REAL NOT NULL,
    values_json TEXT NOT NULL,
    metrics_json TEXT NOT NULL,
    config_json TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    UNIQUE (key, stage)
);
CREATE INDEX IF NOT EXISTS records_idx ON records (idx);
"""

_COLUMNS: Final[str] = "key, stage, idx, status, reason, wall_s, values_json, metrics_json, config_json"


def _reach_failure(path: Path, exc: sqlite3.OperationalError, doing: str) -> OutputError | None:
    """The one-line error of SQLite failing to reach the file, to ``doing`` (read or write) it: a
    lock another process held past the busy timeout, a full disk, a read-only file or folder, an
    I/O error; None for any other failure (a file that is not a store, a bug)."""
    text = str(exc).lower()
    if "locked" in text:
        return OutputError(
            f"{path}: the results store stayed locked by another process for {BUSY_TIMEOUT_S:g} s "
            f"({exc}); run again when it is done"
        )
    causes = ("disk is full", "readonly", "read-only", "disk i/o error", "unable to open")
    if any(cause in text for cause in causes):
        return OutputError(f"{path}: cannot {doing} the results store ({exc})")
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def find_store(path: Path) -> Path:
    """The store file for ``path``: the file itself, or ``results.sqlite`` (or the one ``*.sqlite``
    file) in a sweep's output folder; ``ConfigError`` if there is none."""
    path = Path(path)
    if path.is_dir():
        default = path / STORE_NAME
        if default.is_file():
            return default
        found = sorted(p for p in path.iterdir() if p.suffix in (".sqlite", ".db") and p.is_file())
        if len(found) == 1:
            return found[0]
        if not found:
            raise ConfigError(f"{path}: no results store ({STORE_NAME}) in this folder")
        raise ConfigError(f"{path}: several stores ({', '.join(p.name for p in found)}); name one")
    if not path.is_file():
        raise ConfigError(f"{path}: no such results store")
    return path


class Store:
    """A sweep's results in one SQLite file (see the module docstring for schema and guarantees)."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        # A store to read (``recsim results``) is checked before anything is written to the file:
        # any file, empty or not a store, stays as it was.
        self._create = create
        if not create and not self.path.is_file():
            raise ConfigError(f"{self.path}: no such results store")
        if not create and self.path.stat().st_size == 0:
            raise ConfigError(f"{self.path}: not a recsim results store (an empty file)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connect()

    # -- connection ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """This process's connection (a fork or unpickle opens a new one); creates or checks tables."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ConfigError(f"{self.path}: cannot open the results store ({exc})") from None
        try:
            if not self._create:
                # A store to read: checked, and read as it is (WAL already, a property of the file),
                # with no write lock, which a running sweep may hold.
                self._check(conn)
                conn.execute("PRAGMA synchronous=FULL")
                self._conn = conn
                self._pid = os.getpid()
                return conn
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")  # serialises two processes creating the same new store
            try:
                if conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
                    conn.execute("INSERT INTO meta VALUES ('version', ?)", (str(VERSION),))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # a failed COMMIT (a full disk) has rolled back already
                    conn.execute("ROLLBACK")
                raise
            self._check(conn)
        except sqlite3.OperationalError as exc:
            conn.close()
            failure = _reach_failure(self.path, exc, "write" if self._create else "read")
            raise failure or ConfigError(f"{self.path}: not a recsim results store ({exc})") from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ConfigError(f"{self.path}: not a recsim results store ({exc})") from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._pid = os.getpid()
        return conn

    def _check(self, conn: sqlite3.Connection) -> None:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"meta", "spec", "records"} <= tables:
            raise ConfigError(f"{self.path}: not a recsim results store (an SQLite file without its tables)")
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            raise ConfigError(f"{self.path}: not a recsim results store (format {meta.get('format')!r})")
        if int(meta.get("version", "0")) > VERSION:
            raise ConfigError(
                f"{self.path}: results store version {meta['version']} is newer than this recsim "
                f"reads ({VERSION}); upgrade recsim"
            )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                failure = _reach_failure(self.path, exc, "write")
                if failure is None:
                    raise
                # A lock held too long, a full disk, a store made read-only meanwhile: the row is
                # not stored (a resumed sweep runs the point again), and the user gets one line.
                if conn.in_transaction:  # a COMMIT that found the store locked is still open
                    conn.execute("ROLLBACK")
                raise failure from None

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connect().execute(sql, params).fetchall()

    def close(self) -> None:
        """Close this process's connection (the store reopens on the next call)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "create": self._create}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._create = state.get("create", True)
        self._lock = threading.Lock()
        self._conn = None
        self._pid = -1

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- spec ----------------------------------------------------------------------------------

    def set_spec(self, spec_text: str, spec_key: str) -> None:
        """Record the sweep spec; an existing store made by another spec (key) is a ``ConfigError``."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO spec (id, spec_key, spec_text, created_at) VALUES (1, ?, ?, ?)",
                (spec_key, spec_text, _now()),
            )
            (stored,) = conn.execute("SELECT spec_key FROM spec WHERE id = 1").fetchone()
        if stored != spec_key:
            raise ConfigError(
                f"{self.path}: this store holds the results of another sweep spec (key {stored}, this "
                f"spec {spec_key}); use a new output folder, or the original spec to resume"
            )

    def claim_model(self, fingerprint: str) -> str | None:
        """Record ``fingerprint`` (``recsim.fingerprint``: the code and data that make the points)
        as the store's model while it holds no points (whatever made it before: an empty store is
        anyone's); return the model the store now has (None: points made before stores recorded
        their model)."""
        with self._transaction() as conn:
            (points,) = conn.execute("SELECT COUNT(*) FROM records").fetchone()
            if points == 0:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('model', ?)", (fingerprint,))
            row = conn.execute("SELECT value FROM meta WHERE name = 'model'").fetchone()
        return str(row[0]) if row else None

    def model(self) -> str | None:
        """The fingerprint of the recsim that made the store's points (``claim_model``), or None."""
        rows = self._query("SELECT value FROM meta WHERE name = 'model'")
        return str(rows[0][0]) if rows else None

    def spec(self) -> tuple[str, str] | None:
        """``(spec_text, spec_key)`` of the sweep, or None before ``set_spec``."""
        rows = self._query("SELECT spec_text, spec_key FROM spec WHERE id = 1")
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def created_at(self) -> str | None:
        rows = self._query("SELECT created_at FROM spec WHERE id = 1")
        return str(rows[0][0]) if rows else None

    # -- records -------------------------------------------------------------------------------

    def write(self, rec: PointRecord) -> bool:
        """Store ``rec`` in its own transaction; False (and nothing written) if its (key, stage) is
        already stored. In a store with a model (``claim_model``), a record of another model or of
        none (``config["model"]``) is a ``ConfigError``."""
        data = json.loads(rec.to_json())  # strict JSON: NaN/inf as null, tuples as lists
        params = (
            rec.key,
            rec.stage,
            int(rec.index),
            rec.status,
            rec.reason,
            float(rec.wall_s),
            json.dumps(data["values"], sort_keys=True),
            json.dumps(data["metrics"], sort_keys=True),
            json.dumps(data["config"], sort_keys=True),
            _now(),
        )
        made_by = rec.config.get("model")
        with self._transaction() as conn:
            # In the write's own transaction: another process may have claimed the empty store
            # for its model since this one checked (``claim_model``). A store with a model takes
            # only points that say they are its.
            row = conn.execute("SELECT value FROM meta WHERE name = 'model'").fetchone()
            if row is not None and row[0] != made_by:
                made = f"by recsim model {made_by}" if made_by is not None else "with no recsim model"
                raise ConfigError(
                    f"{self.path}: point {rec.key} was made {made}, but the store holds model "
                    f"{row[0]}'s points: a worker runs other code (a Dask worker on another install, "
                    "a stale process) or another recsim writes into the store; run them all on one recsim"
                )
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO records ({_COLUMNS}, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                params,
            )
            return cursor.rowcount == 1

    def done_keys(self, stage: str | None = None) -> set[str]:
        """Keys with a stored row (any status), at ``stage`` or any stage."""
        if stage is None:
            rows = self._query("SELECT DISTINCT key FROM records")
        else:
            rows = self._query("SELECT key FROM records WHERE stage = ?", (stage,))
        return {str(r[0]) for r in rows}

    def count(self, stage: str | None = None) -> int:
        if stage is None:
            return int(self._query("SELECT COUNT(*) FROM records")[0][0])
        return int(self._query("SELECT COUNT(*) FROM records WHERE stage = ?", (stage,))[0][0])

    def summary(self) -> dict[str, Any]:
        """Counts by stage and status, and the spec's name (``recsim results list``)."""
        by: dict[str, dict[str, int]] = {}
        for stage, status, n in self._query(
            "SELECT stage, status, COUNT(*) FROM records GROUP BY stage, status ORDER BY stage, status"
        ):
            by.setdefault(str(stage), {})[str(status)] = int(n)
        spec = self.spec()
        return {
            "path": str(self.path),
            "spec_key": spec[1] if spec else None,
            "name": _spec_name(spec[0]) if spec else None,
            "created_at": self.created_at(),
            "model": self.model(),
            "points": self.count(),
            "stages": by,
        }

    def records(self, stage: str | None = None) -> list[PointRecord]:
        """Every stored record (at ``stage``, or all), ordered by enumeration index then stage."""
        sql = f"SELECT {_COLUMNS} FROM records"
        params: tuple[Any, ...] = ()
        if stage is not None:
            sql += " WHERE stage = ?"
            params = (stage,)
        sql += " ORDER BY idx, stage, key"
        return [_record(row, self.path) for row in self._query(sql, params)]

    def frame(self, stage: str | None = None) -> pd.DataFrame:
        """One row per record with ``PointRecord.to_row()`` columns (``values.*``, metrics, ...)."""
        return records_frame(self.records(stage))

    def export(self, path: Path, stage: str | None = None) -> Path:
        """Write ``frame()`` to ``path`` (``.parquet`` or ``.csv``), atomically; returns the path."""
        return export_frame(self.frame(stage), path)


def records_frame(records: Sequence[PointRecord]) -> pd.DataFrame:
    """One row per record (``PointRecord.to_row()``); the columns alone when there is none."""
    import pandas as pd

    from recsim.explore.records import ROW_FIELDS

    rows = [rec.to_row() for rec in records]
    if not rows:
        return pd.DataFrame(columns=[*ROW_FIELDS, "config"])
    return pd.DataFrame.from_records(rows)


def is_results_export(path: str | Path) -> bool:
    """Whether ``path`` is a results export recsim wrote (``export_frame``: its first columns are
    ``ROW_FIELDS``): a file ``recsim results export --to`` may replace."""
    from recsim.explore.records import ROW_FIELDS

    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            names = list(pq.read_schema(path).names)
        else:
            with path.open(encoding="utf-8") as f:
                names = f.readline().strip().split(",")
    except (OSError, ValueError, UnicodeDecodeError):  # pyarrow's ArrowInvalid is a ValueError
        return False
    return tuple(names[: len(ROW_FIELDS)]) == ROW_FIELDS


def export_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write a results frame to ``.parquet`` or ``.csv`` via a temporary file and a rename."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ConfigError(f"{path}: export to a .parquet or .csv file (not {path.suffix or 'no suffix'!r})")
    frame = _portable(frame)
    # Into an existing folder, as every output file the user names (``recsim.output``): a
    # mistyped folder is said, not made (a tester's find: only exports made theirs).
    check_output_path(path, "export")
    with replacing(path, "export") as tmp:
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
    return path


def _portable(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns Parquet can hold: lists/dicts as JSON text, mixed scalar types as text."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if column.dtype != object:
            continue
        values = [v for v in column if v is not None and not (isinstance(v, float) and v != v)]
        kinds = {_kind(v) for v in values}
        if "json" in kinds:
            out[name] = [
                json.dumps(v) if isinstance(v, (list, dict, tuple)) else (None if v is None else str(v))
                for v in column
            ]
        elif len(kinds) > 1 or "other" in kinds:
            out[name] = [None if v is None else str(v) for v in column]
    return out


def _kind(value: Any) -> str:
    if isinstance(value, (list, dict, tuple)):
        return "json"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "str" if isinstance(value, str) else "other"


def _record(row: tuple[Any, ...], path: Path) -> PointRecord:
    """The record of a stored row; a row recsim did not write (edited, damaged) is a
    ``ConfigError`` naming the store, the point and the column (a tester's hand-broken
    ``metrics_json`` had given tracebacks from show, export and --resume)."""
    key, stage, idx, status, reason, wall_s, values_json, metrics_json, config_json = row
    where = f"{path}: point {key!r} at stage {stage!r}"
    columns = {}
    for name, text in (
        ("values_json", values_json),
        ("metrics_json", metrics_json),
        ("config_json", config_json),
    ):
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {name} is not JSON; the store is damaged") from None
        if not isinstance(value, dict):
            raise ConfigError(
                f"{where}: {name} holds {type(value).__name__} JSON, expected an object; the store is damaged"
            )
        columns[name] = value
    try:
        return PointRecord(
            index=int(idx),
            key=str(key),
            values=columns["values_json"],
            stage=str(stage),
            status=str(status),
            reason=str(reason),
            metrics=columns["metrics_json"],
            config=columns["config_json"],
            wall_s=float(wall_s),
        )
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: its index or wall_s is not a number; the store is damaged") from None


def _spec_name(spec_text: str) -> str | None:
    """The ``name:`` of a sweep spec's YAML text, if it has one."""
    import yaml

    try:
        data = yaml.safe_load(spec_text)
    except yaml.YAMLError:
        return None
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        return data["name"]
    return None
