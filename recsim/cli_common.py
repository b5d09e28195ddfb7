"""What every recsim command shares: a ``RecsimError`` becomes one line on stderr and exit code 2,
a warning one line on stderr (``recsim: warning: ...``); output cut short by its reader
(``recsim ... | head``) ends the command quietly with exit code 141, as a pipeline's other programs end.

The command modules (``cli``, ``cli_explore``, ``cli_results``) import these classes from here, so
none of them needs another to load.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import stat
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import rich.console

from recsim.errors import ConfigError, RecsimError
from recsim.paths import name_too_long

EXIT_USER_ERROR = 2
#: The command failed of itself (not the user's input): a pipe or socket it uses broke.
EXIT_FAILURE = 1
#: Ctrl-C, as shells report a process killed by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130
#: The reader of the output went away (``| head``), as shells report a process killed by SIGPIPE
#: (128 + 13): what ``seq``, ``cat`` or ``git log`` exit with there, where 1 read as a failure of
#: the command itself (a tester's ``recsim workload show NAME --tables | head -1``).
EXIT_BROKEN_PIPE = 141


class _OneLineErrors:
    """Mixin for click commands and groups: a ``RecsimError`` (a user mistake or an infeasible
    request) is printed as ``recsim: error: ...`` and exits 2, never a traceback. SIGTERM is
    Ctrl-C while a command runs (``_term_as_interrupt``)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings(), _term_as_interrupt():
                # A reader's warning (an unknown schema version read as a known one) is one line
                # like an error's, not Python's "FILE:LINE: UserWarning: ..." and the code line.
                warnings.showwarning = _one_line_warning
                return super().invoke(ctx)  # type: ignore[misc]
        except RecsimError as exc:
            click.echo(f"recsim: error: {exc}", err=True)
            ctx.exit(EXIT_USER_ERROR)
        except BrokenPipeError as exc:
            # Caught here rather than by signal (SIGPIPE's default action): a killed sweep would
            # leave its workers and an output's temporary file behind, as SIGTERM's default did.
            if not _output_may_be_broken():
                # A socket's or a pool's pipe: the command's own failure, not a reader gone (click
                # itself would end it with 1 and not a word, as for any EPIPE).
                click.echo(f"recsim: error: {exc}", err=True)
                ctx.exit(EXIT_FAILURE)
            _silence_broken_streams()
            ctx.exit(EXIT_BROKEN_PIPE)
        except OSError as exc:  # after BrokenPipeError, one of its kind
            if exc.errno != errno.ENAMETOOLONG:
                raise  # any other failure of the system is no user mistake: its traceback stays
            # pathlib's is_file() and is_dir() raise this rather than answer False (Python 3.11),
            # wherever a path the user gave is looked at (an option, an extends:, a --set): a
            # tester's 300-character --out was a traceback from each of a dozen places. recsim
            # makes no file name but from the user's own, so the name is the user's.
            click.echo(f"recsim: error: {name_too_long(str(exc.filename or ''))}", err=True)
            ctx.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            # One line and the conventional status instead of click's "Aborted!" and exit 1; a
            # sweep keeps what it stored (`--resume` continues it).
            click.echo("recsim: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


class Console(rich.console.Console):
    """rich's console, whose broken pipe is a ``BrokenPipeError`` for ``_OneLineErrors`` to end the
    command with, as ``click.echo``'s is (rich exits 1 itself); and which reads no console markup
    in what it prints: the tables hold the user's paths, names and reasons, and rich took a
    bracketed word in them for a style (a tester's sweep in "runs [v2]/out[red]" printed its store
    as "runs /out/results.sqlite"). A style is given as a ``rich.text.Text``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        super().__init__(*args, **kwargs)

    def print_unbroken(self, table: Any) -> None:
        """Print ``table``, whose cells do not wrap, whole: on a console narrower than it (an
        80-column terminal) at its own width, which the terminal wraps, where rich cut every cell
        to "…" (``recsim plan``'s rank table). A table whose cells wrap needs none of this: give
        its columns ``overflow="fold"`` so a header longer than its column folds, not cut."""
        needed = self.measure(table, options=self.options.update_width(10_000)).maximum
        if self.width >= needed:
            self.print(table)
            return
        wide = Console(file=self.file, width=needed, markup=self._markup, color_system=self.color_system)
        wide.print(table)

    def glyph(self, text: str, fallback: str) -> str:
        """``text`` where the output's encoding has its characters, else ``fallback`` (ASCII).
        Output to an ASCII or Latin-1 stream (``PYTHONIOENCODING``, a non-UTF-8 locale, a
        redirected Windows console) ended a finished sweep in a ``UnicodeEncodeError`` traceback
        at its front's "↑" (rich draws its boxes in ASCII there itself)."""
        try:
            text.encode(self.encoding)
        except (UnicodeEncodeError, LookupError):
            return fallback
        return text

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def _output_may_be_broken() -> bool:
    """Whether a ``BrokenPipeError`` can be standard output's or error's: one of them is a pipe or
    a socket whose reader has gone, or cannot be asked (no descriptor, a test's stream; no
    ``poll``, or not Linux, where a closed reader shows as ``POLLERR``). A terminal, a file or a
    live pipe never raises it, so with both on those it came from elsewhere (a socket to a Dask
    scheduler, a pool's pipe) and is no reader gone (a reviewer's find: it ended the command
    with 141 and not a word)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
            mode = os.fstat(fd).st_mode
        except (OSError, ValueError, AttributeError):
            return True
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            continue
        if not sys.platform.startswith("linux") or not hasattr(select, "poll"):
            return True
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if any(events & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, events in poller.poll(0)):
            return True
    return False


def _silence_broken_streams() -> None:
    """Point standard output and error, where their reader has gone, at /dev/null: the
    interpreter's last flush of what they buffer would otherwise print "Exception ignored ...
    BrokenPipeError" on the way out. A stream without a file descriptor (a test's) is left."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass


@contextmanager
def _term_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's stop) raised as ``KeyboardInterrupt`` while the block runs,
    as Ctrl-C is: the default action ended the process at once, and an output being written
    (``recsim.output.replacing``) left its hidden temporary file behind (a tester's find), where
    Ctrl-C's exception runs its clean-up. A sweep's pool does the same (``recsim.explore.executors``,
    "interrupted", exit 130). Only in the main thread (where Python runs handlers) and only over
    the default action: a handler the host process set (an application embedding the CLI) is
    kept, and a command inside a group's block finds this one set already. Put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: Any = None,
) -> None:
    click.echo(f"recsim: warning: {message}", err=True)


class RecsimCommand(_OneLineErrors, click.Command):
    """A click command with recsim's one-line errors. One that does not read the global
    ``recsim --nodes N --set PATH=VALUE`` (a command without ``--nodes`` of its own, other than
    ``sweep``, which takes them as ``base.`` edits) refuses them: they had been ignored silently
    (``recsim --nodes 4 workload show ...``, a README tester's find)."""

    #: Commands without a ``--nodes`` option of their own that read the global ones all the same.
    READS_GLOBAL_OPTIONS: frozenset[str] = frozenset({"sweep"})

    def invoke(self, ctx: click.Context) -> Any:
        root = ctx.find_root()
        given = root.obj or {}
        reads = self.name in self.READS_GLOBAL_OPTIONS or any(p.name == "nodes" for p in self.params)
        if root is not ctx and not reads and (given.get("nodes") is not None or given.get("overrides")):
            path = ctx.command_path.removeprefix(root.command_path).strip()
            raise ConfigError(f"--nodes and --set before the command apply to a system; '{path}' takes none")
        return super().invoke(ctx)


class RecsimGroup(_OneLineErrors, click.Group):
    """A click group with recsim's one-line errors; its commands are ``RecsimCommand``s."""

    command_class = RecsimCommand


class OutputFile(click.Path):
    """A file the command writes, as a ``Path``: a name ending in a slash is a folder, refused
    where it does not exist (``Path`` drops the slash, and ``--timeline out/`` wrote a file called
    ``out``); an existing folder is refused when the output is checked (``recsim.output``)."""

    def __init__(self) -> None:
        super().__init__(path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.endswith(("/", os.sep)) and not os.path.isdir(value):
            self.fail(f"{value}: names a folder, which does not exist; give a file name", param, ctx)
        if value == "-":
            # Not standard output by convention here (it made a file called "-"): say how.
            self.fail("'-': give a file name, or /dev/stdout for standard output", param, ctx)
        return super().convert(value, param, ctx)
