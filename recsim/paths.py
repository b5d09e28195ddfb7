"""Paths a caller gives recsim (a notebook's argument, an option): one with a NUL character names
no file at all, and Python's own answer (``ValueError: embedded null byte`` from ``open`` or
``resolve``) is no message for a user. The command line cannot pass one (an argument ends at a NUL
byte); a notebook or a script can. YAML texts are checked where they are read
(``recsim.config.yamlio``)."""

from __future__ import annotations

from pathlib import Path

from recsim.errors import ConfigError, RecsimError


def user_path(value: str | Path, what: str, error: type[RecsimError] = ConfigError) -> Path:
    """``value`` as a ``Path``; ``error`` naming ``what`` where it holds a NUL character."""
    text = str(value)
    if "\0" in text:
        raise error(f"{what} {text!r}: a NUL character (\\0) in a path: no file name holds one")
    return Path(value)
