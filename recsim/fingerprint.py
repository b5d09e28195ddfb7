"""The model fingerprint: a hash of everything that makes recsim's figures for a given input.

Two runs of the same configuration give the same figures only if the same code and the same shipped
data (the hardware and workload libraries, their calibrations) made them. ``__version__`` does not
say that: it moves at releases, while a checkout changes between them. The fingerprint hashes the
files themselves, so a results store can tell whether the points it holds came from this recsim
(``recsim.explore.sweep`` refuses to resume one that did not, and a point a worker running other
code returns: old and new points would mix two models' figures without a trace).

What it hashes: the ``recsim`` package's Python sources and data files (``.py``, ``.yaml``,
``.txt``; not bytecode caches, editor swap or backup files, notebook
checkpoints or any dot-file), and those of the shipped ``hardware`` and ``workloads`` folders, each
labelled by its path under its root (``recsim/...``, ``hardware/...``, ``workloads/...``, the same
in a source checkout and an installed wheel), in sorted order. A user's own system or workload file
is not in it: a sweep's points record the hash of their resolved configuration
(``resolved_config_hash``).

It is the code this process loaded: computed once, when ``recsim`` is imported, and kept
(``functools.cache``). A file edited afterwards does not change what the process runs, so it does
not change its fingerprint either; another process started after the edit has another.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from recsim.config.library import shipped_data
from recsim.errors import ConfigError

#: The files that make recsim's figures: its sources and data (the shipped data is YAML and text
#: tables; a trace or result a user leaves in a checkout's folders is neither).
HASHED_SUFFIXES = (".py", ".yaml", ".yml", ".txt")
#: Bytes read at a time: a large file is hashed without being held whole in memory.
CHUNK_BYTES = 1 << 20
#: The shipped data folders, hashed under their own label wherever they are installed.
DATA_FOLDERS = ("hardware", "workloads")


@functools.cache
def model_fingerprint() -> str:
    """16 hex digits of the SHA-256 of recsim's sources and shipped data (see the module docstring)."""
    return fingerprint_of(_model_files())


def fingerprint_of(files: Iterable[tuple[str, Path]]) -> str:
    """16 hex digits of the SHA-256 of ``(label, path)`` files' labels and bytes, in their order."""
    digest = hashlib.sha256()
    for label, path in files:
        try:
            _hash_file(digest, label, path)
        except OSError as exc:
            raise ConfigError(
                f"{path}: recsim cannot read its own file to fingerprint its code and data "
                f"({exc.strerror or exc}); a sweep store needs the fingerprint"
            ) from None
    return digest.hexdigest()[:16]


def _hash_file(digest: Any, label: str, path: Path) -> None:
    """Add ``label`` and ``path``'s bytes to ``digest``, in chunks."""
    with path.open("rb") as handle:
        # Name and length first: two files' bytes can never be read as one file's.
        size = os.fstat(handle.fileno()).st_size
        digest.update(f"{label}\0{size}\0".encode())
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)


def _model_files() -> Iterator[tuple[str, Path]]:
    """(label, path) of every file the fingerprint covers, sorted by label."""
    package = Path(__file__).resolve().parent
    roots = [(folder, shipped_data(folder).resolve()) for folder in DATA_FOLDERS]
    found: dict[str, Path] = {}
    for path in _files(package):
        # Installed, the shipped data lives inside the package (``recsim/_data``): it is labelled
        # as the data folder it is, not as package files.
        if not any(root == path or root in path.parents for _, root in roots):
            found[f"recsim/{path.relative_to(package).as_posix()}"] = path
    for folder, root in roots:
        for path in _files(root):
            found[f"{folder}/{path.relative_to(root).as_posix()}"] = path
    for label in sorted(found):
        yield label, found[label]


def _files(root: Path) -> Iterator[Path]:
    """The hashed files under ``root``: known suffixes, no dot-file or dot-folder, no cache."""
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if any(part.startswith(".") or part == "__pycache__" for part in parts):
            continue
        if path.suffix in HASHED_SUFFIXES and path.is_file():
            yield path
