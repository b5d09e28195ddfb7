"""Where sweep points run: a local process pool or a Dask distributed cluster, by name.

An executor runs ``evaluate_point`` over a batch of tasks and hands each ``PointRecord`` to a
callback as soon as it finishes (so the sweep commits it to the store at once), then returns the
records in the order of the tasks. Both executors run the same function on the same arguments, so
they give identical records (up to ``wall_s``) for the same spec and seed.

- ``local``: ``concurrent.futures.ProcessPoolExecutor`` with up to ``workers`` processes (default:
  the CPUs this process may run on), started from a forkserver that has recsim imported, so
  workers start warm and never inherit the parent's threads; ``workers=1`` evaluates in this
  process. A rich progress bar with the ETA goes to stderr when it is a terminal (or when
  ``progress=True``).
- ``dask``: ``distributed.Client(scheduler)`` when a scheduler address is given (``workers`` is then
  refused: that cluster has its own), else a ``LocalCluster`` of up to ``workers`` single-threaded
  worker processes started for the sweep. Its workers ignore Ctrl-C, as the local executor's do;
  Ctrl-C or SIGTERM first turns Dask's logging off in this process, then this process cancels the
  tasks and closes the cluster, so an interrupted sweep says one line.

``workers`` is a ceiling, not a count to start: a batch of ``n`` tasks starts at most ``n`` processes
(``--workers 100000`` on a 4-point sweep starts 4; a process with no point to run only costs its
start and its memory, and the fork fallback and Dask's LocalCluster started every one of them up
front). More processes than the CPUs this process may use are allowed, with a note: they share the
CPUs, so each point runs slower and the sweep gains nothing (points are CPU-bound simulations).

If the callback raises (the sweep was told to stop, or the store failed), the executor cancels the
tasks not yet started and re-raises; points in flight are lost, never half-written.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from recsim.errors import ConfigError, RecsimError
from recsim.explore.evaluate import evaluate_point
from recsim.explore.points import Point
from recsim.explore.records import PointRecord
from recsim.explore.spec import Stage, SweepSpec

if TYPE_CHECKING:
    from rich.progress import Progress

Callback = Callable[[PointRecord], None]
Note = Callable[[str], object]

#: Environment variables that choose the hardware and workload libraries; a task carries the
#: submitting process's values so that every worker resolves names exactly as it would.
LIBRARY_ENV = ("RECSIM_HARDWARE_PATH", "RECSIM_WORKLOAD_PATH")


@dataclass(frozen=True)
class Task:
    """One evaluation: a point of a spec at a stage, with the library search path to use."""

    spec: SweepSpec
    point: Point
    stage: Stage
    env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def make(cls, spec: SweepSpec, point: Point, stage: Stage) -> Task:
        env = tuple((k, os.environ[k]) for k in LIBRARY_ENV if k in os.environ)
        return cls(spec, point, stage, env)


def run_task(task: Task) -> PointRecord:
    """Evaluate one task (top level: picklable for process pools and Dask)."""
    given = dict(task.env)
    for name in LIBRARY_ENV:
        if name in given:
            os.environ[name] = given[name]
        else:
            os.environ.pop(name, None)
    return evaluate_point(task.spec, task.point, task.stage)


class _ProgressBar(AbstractContextManager["_ProgressBar"]):
    """A rich progress bar with the ETA on stderr, or nothing."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total = total
        self.label = label
        self.enabled = enabled and total > 0
        self.progress: Progress | None = None
        self.task_id: Any = None

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("elapsed"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self.progress.start()
            self.task_id = self.progress.add_task(self.label, total=self.total)
        return self

    def advance(self) -> None:
        if self.progress is not None:
            self.progress.advance(self.task_id)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which a container or ``taskset`` may
    narrow below ``os.cpu_count()``, the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1  # pragma: no cover - platforms without affinity masks


#: What ``workers`` (``--workers``) takes, as both its checks say it (``check_workers``, the CLI's).
WORKERS_EXPECTED = "a whole number of at least 1 (the most worker processes)"


def check_workers(workers: object) -> int | None:
    """``workers`` as given (None: the default), or a ``ConfigError`` naming ``--workers``: a whole
    number of at least 1 (a bool, a float or a text is refused, not rounded or read)."""
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers (workers=): expected {WORKERS_EXPECTED}, got {workers!r}")
    return workers


class Executor:
    """Runs tasks and reports each record as it finishes (see the module docstring).

    ``workers`` is the most worker processes to start; ``started`` is the most that one batch has
    started so far (``min(workers, tasks)``: see the module docstring). ``note`` gets one-line
    notes for the user (a ceiling above the CPUs)."""

    name: ClassVar[str] = ""

    def __init__(
        self,
        workers: int | None = None,
        scheduler: str | None = None,
        progress: bool | None = None,
        note: Note | None = None,
    ) -> None:
        given = check_workers(workers)
        self.workers = given if given is not None else available_cpus()
        self.started = 0
        self.scheduler = scheduler
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.note = note
        self._noted_cpus = False

    def _size_for(self, tasks: int) -> int:
        """How many processes a batch of ``tasks`` needs: no more than the tasks (an idle process
        only costs), nor than ``workers``; notes once when that is more than the CPUs."""
        size = max(1, min(self.workers, tasks))
        cpus = available_cpus()
        if size > cpus and self.note is not None and not self._noted_cpus:
            self._noted_cpus = True
            self.note(
                f"--workers {self.workers}: starting {size} worker processes on the {cpus} CPU"
                f"{'s' if cpus != 1 else ''} this process may use; they share them, so each point "
                f"runs slower and the sweep is no faster than with --workers {cpus}"
            )
        return size

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release workers (the executor may be reused until then)."""

    def describe(self) -> str:
        """The executor and the worker processes it started (its ceiling before any batch ran)."""
        shown = self.started or self.workers
        return f"{self.name} ({_workers_text(shown)})"

    def run(self, tasks: Sequence[Task], on_result: Callback, label: str = "sweep") -> list[PointRecord]:
        """Evaluate ``tasks``; ``on_result`` gets each record as it finishes; records in task order."""
        raise NotImplementedError


def _workers_text(count: int) -> str:
    return f"{count} worker{'s' if count != 1 else ''}"


#: The most bytes of a Unix socket's path, its terminating NUL aside (``sockaddr_un.sun_path``:
#: 108 bytes on Linux, unix(7); 104 on macOS and the BSDs, unix(4)).
UNIX_SOCKET_PATH_MAX = (108 if sys.platform.startswith("linux") else 104) - 1

#: The forkserver's listening socket in multiprocessing's temporary folder: "listener-" and the 8
#: random characters of ``tempfile.mktemp`` (``multiprocessing.connection.arbitrary_address``).
FORKSERVER_SOCKET_NAME = "listener-" + "x" * 8


def forkserver_socket_fits() -> bool:
    """Whether the forkserver's socket path fits a Unix socket: it lies in multiprocessing's
    temporary folder, under ``$TMPDIR``, and Python 3.11 does not shorten it. A tester's sweep with
    a 99-character TMPDIR ended in "OSError: AF_UNIX path too long" and a traceback (exit 1) at
    its first point. The folder is the one the forkserver would make (made here, once a process,
    removed at exit)."""
    import multiprocessing.util

    path = os.path.join(multiprocessing.util.get_temp_dir(), FORKSERVER_SOCKET_NAME)
    return len(os.fsencode(path)) <= UNIX_SOCKET_PATH_MAX


def _pool_context(note: Note | None = None) -> multiprocessing.context.BaseContext:
    """forkserver (warm, thread-safe workers) where it works; fork when ``__main__`` cannot be
    re-imported by a fresh process (a script read from stdin) or the forkserver's socket path
    would be too long (``forkserver_socket_fits``: said in a ``note``); spawn where neither exists."""
    methods = multiprocessing.get_all_start_methods()
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    importable_main = main_file is None or os.path.isfile(main_file)
    socket_fits = "forkserver" not in methods or forkserver_socket_fits()
    if not socket_fits and note is not None and "fork" in methods:
        note(
            f"the temporary folder ({os.environ.get('TMPDIR') or 'TMPDIR'}) is too long a path for the "
            f"socket of the worker processes' server (at most {UNIX_SOCKET_PATH_MAX} bytes with its "
            "name): the workers are forked from this process instead (a shorter TMPDIR starts them "
            "from a server)"
        )
    if "forkserver" in methods and importable_main and socket_fits:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(
            ["recsim.explore.executors", "recsim.api", "recsim.engine.simulate", "recsim.planner.proposers"]
        )
        return context
    if "fork" in methods:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _worker_init(parent: int) -> None:
    """Pool workers leave Ctrl-C to the parent: it reaches the whole process group, and each worker
    would print its own KeyboardInterrupt traceback; the parent cancels the pending points and
    shuts the pool down. And they end when the sweep's process ``parent`` is gone: killed outright
    (SIGKILL, an out-of-memory kill), it cannot stop them, and they ran on for good, each holding
    its memory (a tester found two workers and the forkserver alive after every such kill)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # ``_terminate`` stops a worker with SIGTERM: one forked from the CLI's process inherits its
    # SIGTERM-as-Ctrl-C handler (``recsim.cli_common``), which would raise in the point it runs.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_exit_with, args=(parent,), name="recsim-parent-watch", daemon=True).start()


#: How often a worker checks that the sweep's process is still there (seconds).
PARENT_POLL_S = 1.0


def _exit_with(parent: int) -> None:
    """End this worker once process ``parent`` no longer exists."""
    while True:
        time.sleep(PARENT_POLL_S)
        try:
            os.kill(parent, 0)  # signal 0: only whether the process exists
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # exists, owned by another user (a reused pid): keep waiting
            pass


class _TermAsInterrupt(AbstractContextManager[None]):
    """SIGTERM (a scheduler's or ``kill``'s stop) handled as Ctrl-C while a pool runs: the
    executor then stops its workers and keeps the stored points, where the default action ended
    the parent at once and left them running. Only in the main thread (where Python runs handlers)."""

    def __enter__(self) -> None:
        self._installed = threading.current_thread() is threading.main_thread()
        self._previous: Any = signal.signal(signal.SIGTERM, _raise_interrupt) if self._installed else None

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            # A handler set from C reads as None and cannot be put back: the default action then
            # (a reviewer found ours left installed after the sweep).
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _broken_pool_message() -> str:
    """Why a sweep's process pool broke: a worker died (killed, out of memory, crashed), or a
    script without a main guard (each worker imports the script, and runs its sweep again)."""
    return (
        "a sweep worker process died (killed, out of memory or crashed); the points stored so far "
        "are kept (--resume continues); if the sweep was started from a script, call it under `if "
        '__name__ == "__main__":`, since each worker process imports the script (or use workers=1)'
    )


class LocalExecutor(Executor):
    """A process pool on this machine (``workers=1``: in this process)."""

    name: ClassVar[str] = "local"

    def __init__(
        self,
        workers: int | None = None,
        scheduler: str | None = None,
        progress: bool | None = None,
        note: Note | None = None,
    ) -> None:
        super().__init__(workers, None, progress, note)
        if scheduler:
            raise ConfigError("--scheduler is for --executor dask")
        self._pool: ProcessPoolExecutor | None = None
        self._pool_size = 0

    def _get_pool(self, size: int) -> ProcessPoolExecutor:
        """A pool of at most ``size`` processes: this executor's, or a larger one in its place when
        a batch has more tasks than the pool has processes (a later stage, a resumed sweep's)."""
        if self._pool is not None and self._pool_size < size:
            self._pool.shutdown(wait=True)  # between batches: nothing is in flight
            self._pool = None
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=size,
                mp_context=_pool_context(self.note),
                initializer=_worker_init,
                initargs=(os.getpid(),),
            )
            self._pool_size = size
            self.started = max(self.started, size)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _terminate(self) -> None:
        """Stop the workers now (their points in flight are lost; stored ones stay for --resume)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # ProcessPoolExecutor has no public way to stop running work: terminate its processes.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)

    def run(self, tasks: Sequence[Task], on_result: Callback, label: str = "sweep") -> list[PointRecord]:
        results: list[PointRecord | None] = [None] * len(tasks)
        if not tasks:
            return []
        if self.workers == 1:
            self.started = 1
            with _ProgressBar(len(tasks), label, self.progress) as bar:
                for i, task in enumerate(tasks):
                    results[i] = run_task(task)
                    on_result(results[i])  # type: ignore[arg-type]
                    bar.advance()
            return [r for r in results if r is not None]
        with _TermAsInterrupt():
            return self._run_pool(tasks, on_result, label, results)

    def _run_pool(
        self, tasks: Sequence[Task], on_result: Callback, label: str, results: list[PointRecord | None]
    ) -> list[PointRecord]:
        pool = self._get_pool(self._size_for(len(tasks)))
        try:
            futures: dict[Future[PointRecord], int] = {
                pool.submit(run_task, t): i for i, t in enumerate(tasks)
            }
        except (BrokenProcessPool, EOFError, ConnectionError) as exc:
            # The pool's process server died before a worker started (killed, out of memory).
            self._terminate()
            raise RecsimError(f"{_broken_pool_message()} ({type(exc).__name__})") from None
        pending = set(futures)
        try:
            with _ProgressBar(len(tasks), label, self.progress) as bar:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in sorted(done, key=lambda f: futures[f]):
                        try:
                            record = future.result()
                        except BrokenProcessPool:
                            raise RecsimError(_broken_pool_message()) from None
                        results[futures[future]] = record
                        on_result(record)
                        bar.advance()
        except BaseException as exc:
            for future in pending:
                future.cancel()
            if isinstance(exc, KeyboardInterrupt):
                self._terminate()  # the workers ignore Ctrl-C: stop them rather than wait
            raise
        return [r for r in results if r is not None]


class DaskExecutor(Executor):
    """A Dask distributed cluster: ``scheduler`` address, or a LocalCluster of ``workers`` processes."""

    name: ClassVar[str] = "dask"

    def __init__(
        self,
        workers: int | None = None,
        scheduler: str | None = None,
        progress: bool | None = None,
        note: Note | None = None,
    ) -> None:
        if scheduler and workers is not None:
            # The scheduler's cluster has the workers it has; the option was ignored silently.
            raise ConfigError(
                "--workers sizes the local cluster that --executor dask starts; with --scheduler, "
                "the cluster's own workers run the points (leave --workers out)"
            )
        super().__init__(workers, scheduler, progress, note)
        self._client: Any = None
        self._cluster: Any = None

    def describe(self) -> str:
        if self.scheduler:
            return f"dask (scheduler {self.scheduler})"
        return f"dask (local cluster, {_workers_text(self.started or self.workers)})"

    def _get_client(self, size: int) -> Any:
        """The client; a local cluster of ``size`` workers, grown to ``size`` when it has fewer."""
        if self._client is not None and self._cluster is not None and self.started < size:
            # Waited for with SIGINT ignored, as the cluster's first workers start (below).
            with _sigint_ignored():
                self._cluster.scale(size)
                self._client.wait_for_workers(size)
            self.started = size
        if self._client is None:
            try:
                from distributed import Client, LocalCluster
            except ImportError:  # pragma: no cover - a dependency of recsim
                raise ConfigError("--executor dask needs the 'distributed' package") from None
            if self.scheduler:
                try:
                    self._client = Client(self.scheduler, timeout="30s")
                except (OSError, TimeoutError) as exc:
                    raise ConfigError(f"--scheduler {self.scheduler}: cannot connect ({exc})") from None
                except ValueError as exc:  # distributed's parse of the address
                    raise ConfigError(
                        f"--scheduler {self.scheduler!r}: not a scheduler address ({exc}); "
                        "e.g. tcp://10.0.0.5:8786"
                    ) from None
            else:
                # The worker processes ignore Ctrl-C, as the local executor's do: a terminal's
                # SIGINT reaches the whole process group, and a worker that took it printed its
                # KeyboardInterrupt traceback, and its nanny an error, about 46 lines (a tester's
                # find); this process stops the sweep and closes the cluster. A process spawned
                # while SIGINT is ignored starts with it ignored.
                with _sigint_ignored():
                    self._cluster = LocalCluster(
                        n_workers=size,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        # The scheduler's HTTP server (health routes) on any free port: its
                        # default 8787, taken by another cluster, printed a warning.
                        scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
                        silence_logs=40,
                    )
                self._client = Client(self._cluster)
                self.started = size
        return self._client

    def close(self, *, quiet: bool = False) -> None:
        """Close the client and the local cluster; ``quiet``: with Dask's logging off (an
        interrupted sweep: the scheduler and nannies log the tasks and connections cut short)."""
        with _dask_logs_off() if quiet else contextlib.nullcontext():
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None

    def run(self, tasks: Sequence[Task], on_result: Callback, label: str = "sweep") -> list[PointRecord]:
        if not tasks:
            return []
        from distributed import as_completed

        client = self._get_client(self._size_for(len(tasks)) if not self.scheduler else 0)
        results: list[PointRecord | None] = [None] * len(tasks)
        futures = [client.submit(run_task, task, pure=False) for task in tasks]
        position = {f.key: i for i, f in enumerate(futures)}
        with _InterruptQuietsDask():
            try:
                with _ProgressBar(len(tasks), label, self.progress) as bar:
                    for future in as_completed(futures):
                        record = future.result()
                        results[position[future.key]] = record
                        on_result(record)
                        bar.advance()
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    with _dask_logs_off():
                        client.cancel(futures)
                        if self._cluster is not None:
                            # This sweep's own workers log too (a heartbeat to the scheduler that
                            # closes first): quiet them, then stop them now rather than at the end.
                            with contextlib.suppress(Exception):
                                client.run(_silence_dask_logs, on_error="ignore")
                        self.close(quiet=True)
                else:
                    client.cancel(futures)
                raise
        return [r for r in results if r is not None]


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored in this process while the block runs (only in the main thread, where a
    handler can be set; elsewhere the block runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


#: The loggers of Dask's machinery.
_DASK_LOGGERS = ("distributed", "tornado", "asyncio")


def _dask_loggers() -> list[logging.Logger]:
    """Dask's loggers and every logger under them that exists. A parent's level does not quiet a
    child with a level of its own, and distributed's logging config gives ``tornado.application``
    ERROR (under ``tornado``'s CRITICAL): an interrupted sweep printed its traceback of
    distributed's ``sync`` cancel callback (a CI run's find)."""
    names = set(_DASK_LOGGERS)
    names.update(name for name in logging.root.manager.loggerDict if name.split(".")[0] in _DASK_LOGGERS)
    return [logging.getLogger(name) for name in sorted(names)]


@contextlib.contextmanager
def _dask_logs_off() -> Iterator[None]:
    """Dask's loggers silent in this process while the block runs (an interrupted shutdown)."""
    levels = _silence(_dask_loggers())
    try:
        yield
    finally:
        _restore(levels)


def _silence(loggers: list[logging.Logger]) -> dict[logging.Logger, int]:
    """Set ``loggers`` above CRITICAL; returns their levels before."""
    levels = {logger: logger.level for logger in loggers}
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    return levels


def _restore(levels: dict[logging.Logger, int]) -> None:
    for logger, level in levels.items():
        logger.setLevel(level)


def _silence_dask_logs() -> None:
    """Run on a local cluster's worker about to be closed (an interrupted sweep): Dask's loggers
    silent there."""
    _silence(_dask_loggers())


class _InterruptQuietsDask(AbstractContextManager[None]):
    """While a Dask sweep runs, Ctrl-C (and SIGTERM, as the local executor's ``_TermAsInterrupt``)
    silences Dask's loggers *before* it raises KeyboardInterrupt, and they get their levels back
    when the block ends. Silencing them in the handler of the interrupt is too late: the interrupt
    lands in distributed's ``sync`` wait, which schedules a cancel callback on the client's event
    loop thread as it re-raises, and that callback can fail and log (distributed 2024-2025: a
    NameError on its ``future``) before this thread reaches any ``except``. Handlers are set only
    in the main thread (where Python runs them), and SIGINT only where it has Python's default
    handler (a background job ignores it)."""

    def __enter__(self) -> None:
        self._levels: dict[logging.Logger, int] = {}
        self._previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._interrupt)
        self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._interrupt)

    def _interrupt(self, signum: int, frame: object) -> None:
        if not self._levels:
            self._levels = _silence(_dask_loggers())
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            # A handler set from C reads as None and cannot be put back: the default action then.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        _restore(self._levels)


EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor, "dask": DaskExecutor}


def make_executor(
    name: str = "local",
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
    note: Note | None = None,
) -> Executor:
    """The executor registered as ``name`` (``local`` or ``dask``)."""
    cls = EXECUTORS.get(name)
    if cls is None:
        raise ConfigError(f"unknown executor {name!r}; available: {', '.join(EXECUTORS)}")
    return cls(workers=workers, scheduler=scheduler, progress=progress, note=note)
