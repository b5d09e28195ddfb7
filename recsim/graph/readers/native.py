"""Reader for recsim's own graph format (so ``trace info`` and ``replay`` take it too)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from recsim.errors import TraceError
from recsim.graph.ir import SCHEMA, ExecutionGraph
from recsim.graph.native import graph_from_dict, read_graph
from recsim.graph.readers import register


@register
class NativeReader:
    name: ClassVar[str] = "native"
    description: ClassVar[str] = "recsim execution graph JSON (.json / .json.gz)"

    @classmethod
    def sniff(cls, path: Path, data: Any) -> bool:
        return isinstance(data, dict) and data.get("schema") == SCHEMA

    def read(self, paths: Sequence[Path], parsed: dict[Path, Any] | None = None) -> ExecutionGraph:
        if len(paths) != 1:
            raise TraceError("a native graph is one file holding every rank")
        if parsed and paths[0] in parsed:
            return graph_from_dict(parsed.pop(paths[0]), str(paths[0]))
        return read_graph(paths[0])
