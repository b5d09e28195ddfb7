"""Paths a caller gives recsim (a notebook's argument, an option, a name in a YAML file) that can
name no file at all: one with a NUL character, and one longer than the file system allows.

Python's own answers are no message for a user: ``ValueError: embedded null byte`` from ``open``
or ``resolve``, and ``OSError: [Errno 36] File name too long`` from ``pathlib``'s ``is_file()`` and
``is_dir()``, which raise it rather than answer False (Python 3.11). The command line cannot pass a
NUL (an argument ends at one), a notebook can; YAML texts are checked where they are read
(``recsim.config.yamlio``). The CLI turns a too-long name met anywhere else into the same line
(``recsim.cli_common``).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from recsim.errors import ConfigError, RecsimError


def user_path(value: str | Path, what: str, error: type[RecsimError] = ConfigError) -> Path:
    """``value`` as a ``Path``; ``error`` naming ``what`` where it holds a NUL character or a name
    longer than the file system allows (whether or not the file exists)."""
    text = str(value)
    if "\0" in text:
        raise error(f"{what} {text!r}: a NUL character (\\0) in a path: no file name holds one")
    path = Path(value)
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise error(f"{what} {name_too_long(text)}") from None
        # Absent, unreadable, not a folder on the way: for the caller's own checks to say.
    return path


def name_too_long(path: str) -> str:
    """Why ``path`` names no file: too long, each long name in it shortened to its ends (a name of
    thousands of characters filled the terminal)."""
    parts = path.split(os.sep)
    shown = os.sep.join(p if len(p) <= 40 else f"{p[:16]}...{p[-16:]}" for p in parts)
    longest = max((len(p) for p in parts), default=0)
    return (
        f"{shown}: a file name longer than the file system allows (the longest name between "
        f"slashes has {longest:,} characters, the whole path {len(path):,}): give a shorter path"
    )
