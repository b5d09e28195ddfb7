"""Run a sweep: enumerate or search its points, evaluate them, store each, export the results.

``run_sweep(spec, out)`` writes into the folder ``out``:

- ``results.sqlite``: the store (``recsim.explore.store``), a row committed as each point finishes,
  so a sweep killed at any moment (even ``kill -9``) loses only the points in flight; run again with
  ``resume=True`` it skips every stored point and runs the rest, each exactly once;
- ``results.parquet``: every record of every stage (``PointRecord.to_row()`` columns);
- ``pareto.csv``: the Pareto front by the spec's objectives among the points that are ok and meet
  every constraint, best first by the first objective;
- ``pareto.png`` / ``pareto.svg``: the front of the first two objectives over the dominated cloud.

Stages: the first stage evaluates the points of the search at its fidelity; each later stage
re-evaluates the previous stage's best points at its own fidelity: its ``top`` best-ranked (by
non-dominated front, then crowding distance), or its whole Pareto front when ``top`` is not given.
The front and the exports use, for each point, its record from the last stage that evaluated it
(so the DES figures replace the analytic ones of the points re-run at DES); every point of the
front is then re-run at the last stage until the front holds the last stage's figures only (a
front of mixed fidelities would rank an optimistic analytic figure beside DES ones).

A store belongs to one spec (its ``spec_key``): ``run_sweep`` refuses to write into a folder whose
store holds results unless ``resume=True``, and refuses to resume with a different spec, or a store
whose points another recsim made (its code or shipped data: ``recsim.fingerprint``).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsim.errors import ConfigError
from recsim.explore.executors import Executor, Task, make_executor
from recsim.explore.points import (
    Point,
    best_order,
    enumerate_points,
    fitness_matrix,
    non_dominated_sort,
    point_from_values,
    record_fitness,
    spec_nsga2,
)
from recsim.explore.records import PointRecord
from recsim.explore.spec import Stage, SweepSpec, load_sweep, spec_changes
from recsim.fingerprint import model_fingerprint
from recsim.output import OutputError
from recsim.paths import user_path

if TYPE_CHECKING:
    import pandas as pd

    from recsim.explore.store import Store


class _Stop(Exception):
    """Raised inside the result callback once ``max_points`` new points are stored."""


@dataclass
class SweepResult:
    """What a sweep produced (the files are under ``out``; see the module docstring)."""

    spec: SweepSpec
    out: Path
    frame: pd.DataFrame  # every record of every stage
    final: pd.DataFrame  # one row per point: its record at the last stage that evaluated it
    front: pd.DataFrame  # the Pareto rows of ``final``, best first by the first objective
    paths: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    complete: bool = True
    executor: str = ""

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (``recsim sweep --json``)."""
        objectives = list(self.spec.objectives)
        axis_cols = [f"values.{p}" for p in self.spec.axis_paths]
        cols = [c for c in ["index", "key", "stage", *axis_cols, *objectives] if c in self.front.columns]
        front = self.front[cols].astype(object).where(self.front[cols].notna(), None)
        return {
            "name": self.spec.name,
            "spec_key": self.spec.spec_key,
            "out": str(self.out),
            "executor": self.executor,
            "complete": self.complete,
            "counts": dict(self.counts),
            "objectives": dict(self.spec.objectives),
            "front": front.to_dict(orient="records"),
            "paths": {k: str(v) for k, v in self.paths.items()},
        }


def run_sweep(
    spec: SweepSpec | str | Path,
    out: str | Path,
    *,
    executor: str | Executor = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    overrides: Sequence[str] = (),
    progress: bool | None = None,
    max_points: int | None = None,
    note: Callable[[str], object] | None = None,
) -> SweepResult:
    """Run the sweep ``spec`` (a ``SweepSpec`` or a spec file) into the folder ``out``.

    ``executor`` is ``"local"`` (a process pool of up to ``workers``, default the CPUs this process
    may use; 1 runs in this process) or ``"dask"`` (``scheduler`` address, or a local cluster of up
    to ``workers``), or an ``Executor`` instance; ``workers`` is a whole number of at least 1, and
    a batch of points starts no more processes than it has points (``recsim.explore.executors``).
    ``overrides`` are ``--set`` texts for a spec file (see ``recsim.explore.spec``). ``max_points``
    stops after that many newly stored points (the sweep stays resumable; ``complete`` is then
    False). ``note`` is called with a one-line note for the user: ``resume=True`` on a folder with
    no store starts a new sweep, and says so (a sweep killed before its first point left none; a
    script may always pass ``--resume``; a mistyped ``--out`` should not go unnoticed); more worker
    processes than CPUs are noted too.
    """
    from recsim.explore.store import STORE_NAME, Store

    if isinstance(spec, SweepSpec):
        if overrides:
            raise ConfigError("--set overrides apply to a sweep spec file, not to a loaded SweepSpec")
    elif not isinstance(spec, (str, Path)):
        raise ConfigError(f"sweep: expected a spec file path or a SweepSpec, got {type(spec).__name__}")
    else:
        spec = load_sweep(spec, overrides)
    out = user_path(out, "--out")
    # The folder as the file system finds it: ``x/..`` in ``--out`` is not taken for a missing
    # folder (a reviewer's find: ``x/../userdir/new`` took the user's ``userdir`` for one this
    # sweep made, and a failure removed it).
    folder = out.resolve()
    _check_out_folder(folder, STORE_NAME, resume)
    # What the points say comes before the folder: a spec whose points cannot be drawn fails
    # without leaving a store behind (a tester's find: a store made first blocked the re-run).
    small_grid: list[str] = []
    _note_small_grid(spec, small_grid.append)
    # The executor comes before the folder: a scheduler that cannot be reached (or options that do
    # not go together) fail the command without leaving an empty store behind.
    owned = not isinstance(executor, Executor)
    ex = (
        make_executor(executor, workers=workers, scheduler=scheduler, progress=progress, note=note)
        if owned
        else executor
    )  # type: ignore[arg-type]
    try:
        created = _make_out_folder(folder)
        fresh = not (folder / STORE_NAME).exists()
        try:
            store = Store(folder / STORE_NAME)
        except BaseException:
            # A store that could not be made (a full disk): the folder this call made goes again.
            _remove_if_only_store(folder, STORE_NAME, created)
            raise
        try:
            stored = store.spec()
            if (stored is not None or store.count() > 0) and not resume:
                raise ConfigError(
                    f"{store.path}: this folder holds a sweep already; run with --resume "
                    "(resume=True in Python) to continue it, or choose another --out"
                )
            if stored is not None and stored[1] != spec.spec_key:
                changes = spec_changes(stored[0], spec)
                what = "; ".join(changes) if changes else f"key {stored[1]}, this spec {spec.spec_key}"
                raise ConfigError(
                    f"{store.path}: cannot resume: the store was made by another sweep spec ({what}); "
                    f"resume with the spec it was made by, or start afresh with another --out (or "
                    f"after removing {out})"
                )
            store.set_spec(spec.to_text(), spec.spec_key)
            _check_model(store)
            _check_inputs(spec, store)
            if resume and fresh and note is not None:
                note(f"no store in {out}: starting a new sweep")
            for said in small_grid if note is not None else ():
                note(said)
            runner = _Runner(spec, store, max_points)
            complete = True
            try:
                runner.run(ex)
            except _Stop:
                complete = False
            result = export(spec, store, folder)
            result.counts = {**runner.counts, **_status_counts(result.final)}
            result.complete = complete
            result.executor = ex.describe()
            return result
        except BaseException:
            # Nothing stored yet (a check of the store, or the run, failed): the folder this call
            # made goes again (nothing half-made is left); once a point is stored the store stays,
            # resumable with --resume. Only a folder that holds nothing but this store's files is
            # removed: another process may have joined the sweep meanwhile (several may share one
            # store).
            if created and store.count() == 0:
                store.close()
                _remove_if_only_store(folder, STORE_NAME, created)
            raise
        finally:
            store.close()
    finally:
        if owned:
            ex.close()


def _note_small_grid(spec: SweepSpec, note: Callable[[str], object]) -> None:
    """A random search of more samples than the (filtered) grid holds runs the whole grid: say so
    (a tester's find: it did so silently); so does an NSGA-II search of a larger population."""
    from recsim.explore.points import enumerate_points

    population = getattr(spec.search, "population", None)
    if spec.search.method == "nsga2" and population is not None and population > spec.grid_size:
        note(
            f"search.population {population} is more than the {spec.grid_size} points of the grid: "
            "the first generation runs every one, and no later one has a point left"
        )
        return
    samples = getattr(spec.search, "samples", None)
    if spec.search.method != "random" or samples is None or samples <= 0:
        return
    if samples > spec.grid_size:
        held = spec.grid_size
    else:
        held = len(enumerate_points(spec))
        if held >= samples:
            return
    note(f"search.samples {samples} is more than the {held} points of the grid: running every one")


def _make_out_folder(folder: Path) -> list[Path]:
    """Make ``folder`` (a resolved, absolute path) and its missing parents, one at a time; the
    folders this call's own ``mkdir`` made, outermost first (none where ``folder`` was there). A
    folder that is there already, or that another process makes meanwhile (``FileExistsError``),
    is not this call's, and a failed sweep leaves it alone. An ``OutputError`` when a folder cannot
    be made (a read-only or special location)."""
    made: list[Path] = []
    for path in (*reversed(folder.parents), folder):
        try:
            path.mkdir()
        except FileExistsError:
            continue  # there before, or made meanwhile by another process sharing the sweep
        except OSError as exc:
            if path.is_dir():
                continue  # there already (a location where mkdir says so otherwise)
            raise OutputError(f"{folder}: cannot make the --out folder: {exc.strerror or exc}") from None
        made.append(path)
    return made


def _remove_if_only_store(folder: Path, store_name: str, made: list[Path]) -> None:
    """Remove ``folder`` if this sweep made it (it is ``made``'s last) and it holds only the files
    of an empty store (SQLite's journal among them), then the parents of it this sweep made that
    are empty, deepest first (a tester found ``a/b`` of an ``--out a/b/c`` left behind). Only
    folders this process's own ``mkdir`` made are removed: never one the user had."""
    if not made or made[-1] != folder:
        return
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return
    if not all(name.startswith(store_name) for name in names):
        return
    shutil.rmtree(folder, ignore_errors=True)
    for parent in reversed(made[:-1]):
        try:
            parent.rmdir()  # only while empty: another process may have put something there
        except OSError:
            return


def _check_out_folder(out: Path, store_name: str, resume: bool) -> None:
    """Refuse an ``--out`` that cannot hold a sweep, before anything is made: a file, a folder under
    a file, or a folder with other files and no sweep store in it (its files could be overwritten
    by the results, and the results mixed with them)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: --out must be a folder, and this is a file")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{out}: --out cannot be made: {parent} is a file, not a folder")
            break
    if out.is_dir() and not (out / store_name).exists():
        # Hidden files (.gitkeep, .DS_Store) are not the user's results.
        entries = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            what = "--resume needs" if resume else "a new sweep needs"
            raise ConfigError(
                f"{out}: this folder holds other files ({shown}) and no sweep store; {what} a new or "
                "empty folder, or the --out of an earlier sweep"
            )


class _Runner:
    """Evaluates the stages of one sweep against its store."""

    def __init__(self, spec: SweepSpec, store: Store, max_points: int | None) -> None:
        self.spec = spec
        self.store = store
        self.max_points = max_points
        self.counts: Counter[str] = Counter(run=0, skipped=0, failed=0)
        self.executor: Executor | None = None
        # (stage, point key) of every point this run asked for, run or recalled: ``settle`` counts
        # the stored front points no stage asked for again (a resume's earlier re-runs).
        self.asked: set[tuple[str, str]] = set()

    def run(self, executor: Executor) -> None:
        self.executor = executor
        stages = self.spec.stage_list
        first = stages[0]
        if self.spec.search.method == "nsga2":
            spec_nsga2(self.spec, lambda points: self.evaluate(points, first))
        else:
            self.evaluate(enumerate_points(self.spec), first)
        for previous, stage in itertools.pairwise(stages):
            self.evaluate(self.select(previous, stage), stage)
        if len(stages) > 1:
            self.settle(stages[-1])

    def settle(self, last: Stage) -> None:
        """Re-run at ``last`` every point of the front that only an earlier stage evaluated, until the
        front holds ``last``'s figures alone: a point kept at an optimistic analytic figure could sit
        on the front beside points a DES re-run slowed down, or keep a twin off it (a tester found
        both). A point the last stage ran that still makes the front stays; one that drops off it
        lets a dominated one on, which is re-run in turn."""
        while True:
            records = final_records(self.spec, self.store)
            objs, feas = self.fitness(records)
            if not feas.any():
                return
            fronts = non_dominated_sort(objs, feas)
            front = [records[i] for i in (fronts[0] if fronts else [])]
            # A front point already stored at the last stage (an earlier run's re-run, which this
            # run's ``select`` did not pick) is recalled, not run: a skipped point, as ``evaluate``
            # counts one (a resumed sweep had reported fewer skipped points than it stored).
            for record in front:
                if record.stage == last.fidelity and (record.stage, record.key) not in self.asked:
                    self.asked.add((record.stage, record.key))
                    self.counts["skipped"] += 1
            pending = [record for record in front if record.stage != last.fidelity]
            if not pending:
                return
            self.evaluate([point_from_values(self.spec, r.values, r.index) for r in pending], last)

    def evaluate(self, points: list[Point], stage: Stage) -> list[PointRecord]:
        """Records of ``points`` at ``stage``: stored ones recalled, the others run and stored."""
        assert self.executor is not None
        done = {r.key: r for r in self.store.records(stage.fidelity)}
        unique: dict[str, Point] = {}
        for point in points:
            unique.setdefault(point.key, point)
        todo = [p for p in unique.values() if p.key not in done]
        self.counts["skipped"] += len(unique) - len(todo)
        self.asked.update((stage.fidelity, key) for key in unique)
        fresh: dict[str, PointRecord] = {}

        def on_result(record: PointRecord) -> None:
            # The store refuses a point another recsim made (a worker running other code).
            if self.store.write(record):
                self.counts["run"] += 1
                if record.status == "error":
                    self.counts["failed"] += 1
            fresh[record.key] = record
            if self.max_points is not None and self.counts["run"] >= self.max_points:
                raise _Stop

        tasks = [Task.make(self.spec, p, stage) for p in todo]
        label = f"{self.spec.name} ({stage.fidelity})"
        if tasks:
            self.executor.run(tasks, on_result, label=label)
        return [done.get(p.key) or fresh[p.key] for p in points if p.key in done or p.key in fresh]

    def select(self, previous: Stage, stage: Stage) -> list[Point]:
        """The points of ``previous`` to re-run at ``stage``: its top ``stage.top`` or its front."""
        records = [r for r in self.store.records(previous.fidelity) if r.status == "ok"]
        if not records:
            return []
        objs, feas = self.fitness(records)
        order = [i for i in best_order(objs, feas) if feas[i]]
        if stage.top is not None:
            chosen = order[: stage.top]
        else:
            fronts = non_dominated_sort(objs, feas)
            chosen = [i for i in order if fronts and i in fronts[0]]
        picked = sorted((records[i] for i in chosen), key=lambda r: r.index)
        return [point_from_values(self.spec, r.values, r.index) for r in picked]

    def fitness(self, records: Sequence[PointRecord]) -> tuple[np.ndarray, np.ndarray]:
        """The objective values (minimised) of ``records``, one row each, and which are feasible."""
        objectives = dict(self.spec.objectives)
        return fitness_matrix([record_fitness(r, objectives) for r in records], len(objectives))


def final_records(spec: SweepSpec, store: Store) -> list[PointRecord]:
    """Per point, its record at the last stage that evaluated it, in index order."""
    return latest_records(store, [stage.fidelity for stage in spec.stage_list])


def latest_records(store: Store, stages: Sequence[str]) -> list[PointRecord]:
    """Per point, its record at the last of ``stages`` (in that order) that holds one, in index
    order (``recsim results show --front`` reads a store this way, without its spec)."""
    latest: dict[str, PointRecord] = {}
    for stage in stages:
        for record in store.records(stage):
            latest[record.key] = record
    return sorted(latest.values(), key=lambda r: (r.index, r.key))


def front_mask(spec: SweepSpec, frame: pd.DataFrame) -> np.ndarray:
    """The Pareto rows of ``frame`` by the spec's objectives, among ok points (constraints met)."""
    from recsim.explore.pareto import pareto_mask

    objectives = dict(spec.objectives)
    if frame.empty or any(c not in frame.columns for c in objectives):
        return np.zeros(len(frame), dtype=bool)
    values = frame[list(objectives)].apply(_numeric)
    feasible = (frame["status"] == "ok").to_numpy(dtype=bool)
    return np.asarray(pareto_mask(values, objectives, feasible), dtype=bool)


def _numeric(column: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_numeric(column, errors="coerce").astype(float)


def export(spec: SweepSpec, store: Store, out: Path) -> SweepResult:
    """Write results.parquet, pareto.csv and the Pareto plot from ``store``; the ``SweepResult``."""
    from recsim.explore.store import export_frame, records_frame

    paths: dict[str, Path] = {"store": store.path}
    frame = store.frame()
    paths["results"] = store.export(out / "results.parquet")
    final = records_frame(final_records(spec, store))
    mask = front_mask(spec, final)
    front = final.loc[mask]
    first, sense = next(iter(spec.objectives.items()))
    if not front.empty:
        front = front.sort_values(first, ascending=sense == "min", kind="stable")
    paths["pareto_csv"] = export_frame(front.reset_index(drop=True), out / "pareto.csv")
    if len(spec.objectives) >= 2 and not final.empty:
        x, y = list(spec.objectives)[:2]
        if x in final.columns and y in final.columns:
            from recsim.explore import plots

            plot_frame = final.reset_index(drop=True)
            plots.pareto(
                plot_frame,
                x,
                y,
                {x: spec.objectives[x], y: spec.objectives[y]},
                path=out / "pareto",
                title=f"{spec.name}: Pareto front",
                front=mask,
            )
            paths["pareto_png"] = out / "pareto.png"
            paths["pareto_svg"] = out / "pareto.svg"
    return SweepResult(
        spec=spec, out=out, frame=frame, final=final, front=front.reset_index(drop=True), paths=paths
    )


def _check_model(store: Store) -> None:
    """``ConfigError`` if ``store`` holds points another recsim made (``recsim.fingerprint``):
    resuming would mix two models' figures in one front, with nothing in the rows to tell them
    apart. A new store, or one with no points yet, takes this recsim's fingerprint."""
    mine = model_fingerprint()
    theirs = store.claim_model(mine)
    if theirs == mine:
        return
    made_by = (
        "a recsim from before stores recorded their model"
        if theirs is None
        else f"another recsim (model {theirs}; this one is {mine}: its code or shipped data differ)"
    )
    raise ConfigError(
        f"{store.path}: cannot resume: its points were made by {made_by}, so old and new points "
        "would mix two models' figures; run the sweep into a new --out"
    )


def _check_inputs(spec: SweepSpec, store: Store) -> None:
    """``ConfigError`` if a stored point's files resolve differently now than when it ran
    (``evaluate.point_inputs``): resuming would keep its old figures beside new points made from the
    edited file. Only where a point reads a user's file (a path in the spec, or a library folder
    added by ``$RECSIM_HARDWARE_PATH`` / ``$RECSIM_WORKLOAD_PATH``): the model fingerprint covers
    the shipped library, and re-resolving every point takes about 10 ms each."""
    from recsim.explore.evaluate import point_inputs

    if not _reads_user_files(spec):
        return
    seen: set[str] = set()
    # Points that differ only in what no file is read for (the fidelity, a plan strategy's name)
    # resolve alike: each distinct set of inputs is resolved once.
    resolved: dict[str, str] = {}
    for record in store.records():
        if record.key in seen or "inputs" not in record.config:
            continue
        seen.add(record.key)
        config = record.config
        signature = json.dumps(
            [
                config.get(k)
                for k in ("system", "workload", "nodes", "batch_size", "precision", "overrides", "plan")
            ],
            sort_keys=True,
            default=str,
        )
        now = resolved.get(signature)
        if now is None:
            now = resolved[signature] = point_inputs(config)
        if now != config["inputs"]:
            values = ", ".join(f"{k}={v!r}" for k, v in record.values.items()) or "the base point"
            raise ConfigError(
                f"{store.path}: cannot resume: point {record.index} ({values}) was made from inputs "
                "that resolve differently now (its system, workload or plan file, or a file they "
                "name, changed since); restore the file, or run the sweep into a new --out"
            )


def _reads_user_files(spec: SweepSpec) -> bool:
    """Whether a point of ``spec`` may read a file outside recsim's shipped library."""
    from recsim.config.loader import Override, is_path_ref
    from recsim.explore.spec import NAMED_KEYS, file_value
    from recsim.hardware.library import HardwareLibrary
    from recsim.workload.library import WorkloadLibrary

    if any(os.environ.get(lib.env_var) for lib in (HardwareLibrary, WorkloadLibrary)):
        return True

    def user(value: Any, named: bool = False) -> bool:
        # A file as the spec's loading made it absolute (``spec.file_value``): "2 TB/s" is none.
        if isinstance(value, str):
            return is_path_ref(value) if named else file_value(value)
        if isinstance(value, (list, tuple)):
            return any(user(v, named) for v in value)
        if isinstance(value, dict):
            return any(user(v) for v in value.values())
        return False

    base = spec.base
    if user([base.system, base.workload, base.plan], named=True):
        return True
    if any(user(Override.parse(text).value) for text in base.overrides):
        return True
    groups = [spec.axes, *spec.zipped]
    return any(user(column, key in NAMED_KEYS) for group in groups for key, column in group.items())


def _status_counts(final: pd.DataFrame) -> dict[str, int]:
    if final.empty:
        return {"points": 0, "ok": 0, "infeasible": 0, "error": 0}
    status = final["status"].value_counts()
    return {
        "points": len(final),
        "ok": int(status.get("ok", 0)),
        "infeasible": int(status.get("infeasible", 0)),
        "error": int(status.get("error", 0)),
    }
