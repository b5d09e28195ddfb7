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
from recsim.workload.access.stats import is_stats_path, resolve_stats
from recsim.workload.spec import Workload


class WorkloadLibrary(DocumentLibrary):
    """DLRM workload specs."""

    sections: ClassVar[dict[str, str]] = {"dlrm": "."}
    schemas: ClassVar[dict[str, type[Referable]]] = {"dlrm": Workload}
    env_var: ClassVar[str] = "RECSIM_WORKLOAD_PATH"
    shipped: ClassVar[str] = "workloads"
    list_command: ClassVar[str] = "recsim workload list"

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
        return tree

    def workload(self, ref: str | Path, overrides: Iterable[Override] = ()) -> Workload:
        """A validated workload by name or path, with overrides."""
        spec: Workload = self.load("dlrm", ref, overrides).spec
        return spec
