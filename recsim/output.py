"""Files the user names as outputs: written whole or not at all, or refused with a clear error.

Every command that writes a file the user names (``run --timeline``, ``plan --out``, ``trace
convert``, ``results export``, plots, golden expectations) goes through here, so they all behave
alike:

* ``check_output_path`` says, before any work is done, whether a path can take the output: not a
  directory, in a folder that exists (recsim does not invent folders for a single file), writable.
  A command checks its outputs first, so a mistyped path fails in a second, not after a long
  simulation whose result it then could not keep.
* ``write_text`` / ``write_bytes`` / ``replacing`` write a regular file through a temporary file in
  the same folder and an atomic rename: a failure (disk full, killed process) never leaves a
  half-written file, and a reader never sees one. The temporary name is unique (``mkstemp``), so a
  file the user happens to have called ``X.tmp`` is never touched.
* A path that exists and is not a regular file (``/dev/null``, a named pipe), or that names a
  stream (``/dev/stdout``, ``/proc/self/fd/N``, a link to one), is written in place: renaming over
  it would replace the device or the link with a plain file. A link to a regular file is replaced
  at its target, and stays a link.

Every failure is an ``OutputError`` naming the path and the reason, which the CLI prints as one
line (``recsim.cli_common``), never a traceback.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recsim.errors import RecsimError
from recsim.paths import user_path

__all__ = [
    "OutputError",
    "check_output_path",
    "replacing",
    "same_file",
    "write_bytes",
    "write_text",
]


class OutputError(RecsimError):
    """An output path cannot take the file the user asked for."""


def _special(path: Path) -> bool:
    """``path`` exists and is neither a regular file nor a directory (a device, a pipe, a socket)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


#: Paths that name a process's open descriptors: ``/dev/stdout``, ``/dev/fd/1``, ``/proc/self/fd/1``.
_DESCRIPTOR = re.compile(r"^/dev/(stdin|stdout|stderr|fd/\d+)$|^/proc/[^/]+/fd/\d+$")


def _descriptor(path: Path) -> bool:
    """``path`` names an open descriptor rather than a file (``/dev/stdout``, ``/dev/fd/N``,
    ``/proc/self/fd/N``), or is a symbolic link that leads to one. With standard output redirected
    to a file it resolves to that regular file, and a rename over it would replace the link (a
    tester's run replaced ``/dev/stdout`` with a plain file). Other files under ``/dev`` or
    ``/proc`` (``/dev/shm/x.json``) are files like any other."""
    seen = 0
    while seen < 40:  # the kernel's own limit on a chain of links
        if _DESCRIPTOR.match(str(path)):
            return True
        if not path.is_symlink():
            return False
        path = path.parent / os.readlink(path)
        seen += 1
    return False


def _in_place(path: Path) -> bool:
    """Whether ``path`` is written as it is, not through a temporary file and a rename."""
    return _special(path) or _descriptor(path)


def _target(path: Path) -> Path:
    """The file a rename must replace: a symbolic link's target (the link stays a link)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def check_output_path(path: Path | str, what: str = "output") -> Path:
    """``path`` as a ``Path`` if a file can be written there, else an ``OutputError`` saying why."""
    raw = str(path)
    path = user_path(path, f"the {what}", OutputError)
    if raw.endswith(("/", os.sep)) and not path.is_dir():
        # ``Path`` drops the slash: "out/" would become a file called "out".
        raise OutputError(f"{raw}: names a folder, which does not exist; the {what} needs a file name")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; the {what} needs a file name")
    if _in_place(path):
        if not os.access(path, os.W_OK):
            raise OutputError(f"{path}: cannot write the {what} there (permission denied)")
        return path
    folder = path.parent
    if not folder.exists():
        raise OutputError(f"{path}: the folder {folder} does not exist (create it first)")
    if not folder.is_dir():
        raise OutputError(f"{path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write the {what} in {folder} (permission denied)")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{path}: cannot overwrite it (permission denied)")
    return path


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether ``a`` and ``b`` name one existing file (through links or relative paths)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


@contextmanager
def replacing(path: Path | str, what: str = "output") -> Iterator[Path]:
    """A temporary path to write the output to; on success it replaces ``path`` in one rename.

    For writers that take a path (pandas, matplotlib). On any exception the temporary file is
    removed and ``path`` is left as it was; ``OSError`` becomes an ``OutputError``. A ``path`` that
    is a device or a pipe is handed over as it is (see the module docstring).
    """
    path = check_output_path(path, what)
    if _in_place(path):
        try:
            yield path
        except OSError as exc:
            raise OutputError(f"{path}: cannot write the {what}: {_reason(exc)}") from None
        return
    path = _target(path)
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot write the {what}: cannot create a file in {path.parent} ({_reason(exc)})"
        ) from None
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        _give_mode(tmp, path)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the {what}: {_reason(exc)}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _give_mode(tmp: Path, path: Path) -> None:
    """Give the written temporary file the mode a plain ``open()`` would have given the output (the
    umask's), or the mode of the file it replaces: ``mkstemp`` makes it 0600. Set once the bytes
    are in (a umask without the owner's write bit would otherwise lock the writer out), and best
    effort: a filesystem that refuses modes (vfat, some network mounts) still gets the file."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)


def _umask() -> int:
    """The process's umask: from ``/proc`` where there is one (reading it by setting it would
    change it, for a moment, for every thread of the process), else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path: Path | str, data: bytes, what: str = "output") -> Path:
    """Write ``data`` to ``path`` whole or not at all; returns the path."""
    path = Path(path)
    with replacing(path, what) as target, open(target, "wb") as handle:
        handle.write(data)
    return path


def write_text(path: Path | str, text: str, what: str = "output") -> Path:
    """Write ``text`` (UTF-8; gzip-compressed when the name ends in ``.gz``) whole or not at all."""
    path = Path(path)
    data = text.encode("utf-8")
    if path.suffix == ".gz":
        # mtime 0: the same text gives the same bytes (the files are compared and hashed).
        data = gzip.compress(data, mtime=0)
    return write_bytes(path, data, what)
