"""The workload library: ``kind: dlrm`` documents in ``workloads/*.yaml`` (plus ``$RECSIM_WORKLOAD_PATH``).

Resolution is the same as for hardware (``extends:``, ``--set``); in addition, a relative
``access.stats`` path is made absolute against the file it was written in, so a workload can sit
next to its own locality statistics.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from recsim.config.library import DocumentLibrary
from recsim.config.loader import Override, Referable
from recsim.config.tree import Tree, format_path, walk
from recsim.errors import ConfigError
from recsim.workload.access.stats import is_stats_path, load_section, resolve_stats
from recsim.workload.spec import Workload


class WorkloadLibrary(DocumentLibrary):
    """DLRM workload specs."""

    sections: ClassVar[dict[str, str]] = {"dlrm": "."}
    schemas: ClassVar[dict[str, type[Referable]]] = {"dlrm": Workload}
    env_var: ClassVar[str] = "RECSIM_WORKLOAD_PATH"
    shipped: ClassVar[str] = "workloads"
    list_command: ClassVar[str] = "recsim workload list"
    kind_words: ClassVar[dict[str, str]] = {"dlrm": "workload"}

    def postprocess(self, kind: str, tree: Tree) -> Tree:
        for path, value in list(walk(tree.data)):
            if not (path and path[-1] == "stats" and isinstance(value, str)):
                continue
            where = tree.location(path)
            if not is_stats_path(value):
                try:
                    resolve_stats(value)  # a shipped name: checked here, where the key is known
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {format_path(path)}: {exc}") from None
                continue
            base = Path(where.source).parent if where.line is not None else Path.cwd()
            resolved = (base / value).resolve() if not Path(value).is_absolute() else Path(value)
            if not resolved.is_file():
                raise ConfigError(f"{where}: {format_path(path)}: no such locality stats file {resolved}")
            parent = tree.data
            for part in path[:-1]:
                parent = parent[part]
            parent["stats"] = str(resolved)
        for path, value in list(walk(tree.data)):
            if path and path[-1] == "stats" and isinstance(value, str):
                _check_section(tree, path, value)
        return tree

    def workload(self, ref: str | Path, overrides: Iterable[Override] = ()) -> Workload:
        """A validated workload by name or path, with overrides."""
        spec: Workload = self.load("dlrm", ref, overrides).spec
        return spec


def _check_section(tree: Tree, path: tuple[str | int, ...], stats: str) -> None:
    """Read the section of the stats file that ``path`` names (``section`` beside it, 0 by default)
    now, so that a file that is empty or malformed, or a section it lacks, is the workload's error,
    with its key, when the workload loads, not a bare stats-file error when a run first reads it.
    The parse is kept (``recsim.workload.access.stats``), so the run reads it for nothing."""
    parent = tree.data
    for part in path[:-1]:
        parent = parent[part]
    section = parent.get("section", 0) if isinstance(parent, dict) else 0
    if isinstance(section, bool) or not isinstance(section, (int, str)):
        return  # the schema's own check names the wrong type
    key = (*path[:-1], "section") if isinstance(parent, dict) and "section" in parent else path
    try:
        load_section(stats, section)
    except ConfigError as exc:
        raise ConfigError(f"{tree.location(key)}: {format_path(key)}: {exc}") from None
