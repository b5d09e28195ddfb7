"""The model fingerprint: a hash of everything that makes recsim's figures for a given input.

Two runs of the same configuration give the same figures only if the same code and the same shipped
data (the hardware and workload libraries, their calibrations) made them. ``__version__`` does not
say that: it moves at releases, while a checkout changes between them. The fingerprint hashes the
files themselves, so a results store can tell whether the points it holds came from this recsim
(``recsim.explore.sweep`` refuses to resume one that did not: its old and new points would mix two
models' figures without a trace).

What it hashes: every file of the ``recsim`` package (Python sources and the data beside them, not
bytecode caches) and of the shipped ``hardware`` and ``workloads`` folders, by their path relative
to their root and their bytes, in sorted order. A user's own system or workload file is not in it:
a sweep's points record the hash of their resolved configuration (``resolved_config_hash``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from recsim.config.library import shipped_data

#: Folders of the package that are not recsim's own content.
_SKIPPED = ("__pycache__",)


def model_fingerprint() -> str:
    """16 hex digits of the SHA-256 of recsim's sources and shipped data (see the module docstring)."""
    digest = hashlib.sha256()
    for label, path in _model_files():
        data = path.read_bytes()
        # Name and length first: two files' bytes can never be read as one file's.
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def _model_files() -> Iterator[tuple[str, Path]]:
    """(label, path) of every file the fingerprint covers, in a fixed order."""
    package = Path(__file__).resolve().parent
    roots = [("recsim", package)]
    for folder in ("hardware", "workloads"):
        root = shipped_data(folder)
        # Installed, the shipped data lives inside the package and is hashed with it.
        if package not in root.parents:
            roots.append((folder, root))
    for name, root in roots:
        files = (p for p in root.rglob("*") if p.is_file() and not _skipped(p.relative_to(root)))
        for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
            yield f"{name}/{path.relative_to(root).as_posix()}", path


def _skipped(relative: Path) -> bool:
    return any(part in _SKIPPED for part in relative.parts) or relative.suffix in (".pyc", ".pyo")
