"""Trace readers: a registry keyed by format name; each turns trace files into an ``ExecutionGraph``.

Adding a format is one class in one module, decorated with ``@register``: ``name``, ``sniff(path,
data)`` (is this file mine? ``data`` is the parsed JSON, or None for binary files) and
``read(paths)``. ``read_trace(paths, fmt=None)`` picks the reader by ``fmt`` or by sniffing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from recsim.errors import TraceError
from recsim.graph.ir import ExecutionGraph


class TraceReader(Protocol):
    """What a reader provides."""

    name: ClassVar[str]
    description: ClassVar[str]

    @classmethod
    def sniff(cls, path: Path, data: Any) -> bool:
        """True if ``path`` (parsed JSON ``data``, or None if not JSON) is in this format."""
        ...

    def read(self, paths: Sequence[Path], parsed: dict[Path, Any] | None = None) -> ExecutionGraph:
        """The graph of ``paths`` (one file per rank, or pairs the reader knows how to join).
        ``parsed``: JSON documents of some of them already parsed (the format detection's), which
        the reader takes out of it instead of parsing the files again (``load_documents``)."""
        ...


READERS: dict[str, type[TraceReader]] = {}

T = TypeVar("T", bound=type)


def register(cls: T) -> T:
    """Class decorator adding a reader to ``READERS`` under its ``name``."""
    name = cls.name  # type: ignore[attr-defined]
    if name in READERS:
        raise ValueError(f"reader {name!r} registered twice")
    READERS[name] = cls  # type: ignore[assignment]
    return cls


def _load_builtin_readers() -> None:
    # Imported for their @register side effect; kept here so the registry is complete on import.
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def read_trace(
    paths: Sequence[Path], fmt: str | None = None, *, sniffer: Callable[[Path], Any] | None = None
) -> ExecutionGraph:
    """Read ``paths`` with the reader ``fmt`` or the one whose ``sniff`` accepts the first file.

    A trace with no operation to replay (``{"traceEvents": []}``, a profile of nothing) is a
    ``TraceError``: a replay of it would report a step of 0 s."""
    return read_trace_as(paths, fmt, sniffer=sniffer)[0]


def read_trace_as(
    paths: Sequence[Path], fmt: str | None = None, *, sniffer: Callable[[Path], Any] | None = None
) -> tuple[ExecutionGraph, str]:
    """``read_trace``, and the name of the reader that read it (``native`` for a converted graph,
    whose ``metadata["format"]`` names the format it was converted from)."""
    graph, name = _read(paths, fmt, sniffer)
    if len(graph.nodes) == 0:
        names = ", ".join(str(p) for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        # The reader's notes say why where it skipped events ("... without a 'ph', skipped").
        notes = [str(n) for n in graph.metadata.get("notes") or () if "skipped" in str(n)]
        why = "; ".join(notes) if notes else "a profile of no work"
        raise TraceError(f"{names}: the trace holds no operations ({why})")
    return graph, name


def _read(
    paths: Sequence[Path], fmt: str | None, sniffer: Callable[[Path], Any] | None
) -> tuple[ExecutionGraph, str]:
    _load_builtin_readers()
    if not paths:
        raise TraceError("no trace files given")
    _check_not_mixed_with_chakra(paths)
    if fmt is not None:
        if fmt not in READERS:
            raise TraceError(f"unknown trace format {fmt!r}; known: {', '.join(sorted(READERS))}")
        graph = READERS[fmt]().read(paths)
        joined = graph.metadata.get("format")
        if fmt in _JOINED_BY and joined == "et_kineto":
            # The ET and the Kineto reader join a pair of the two among their files: asked for one
            # format by name, the user would get the other's reading silently (a tester's find).
            raise TraceError(
                f"--format {fmt}: the files hold PyTorch execution traces and Kineto traces, which "
                "are read joined: give --format et_kineto, or leave --format out (or give only "
                f"the {_JOINED_BY[fmt]} files)"
            )
        return graph, fmt
    first = paths[0]
    data = _parsed(first, sniffer)
    if recsim_timeline(data):
        # recsim's own Chrome timeline looks like a Kineto file but holds a simulated schedule.
        raise TraceError(
            f"{first}: a Chrome timeline written by recsim (a simulated schedule, not a profile); "
            "read the trace it came from, or keep a native copy (`recsim trace convert IN OUT.json`)"
        )
    name = _sniffed(first, data)
    if name is not None:
        # The reader takes the document the detection parsed rather than parsing the file again
        # (a recsys trace's 2-3 s); handed over, not kept here, so no second copy is held.
        parsed = {first: data} if data is not None else None
        del data
        return READERS[name]().read(paths, parsed), name
    raise TraceError(f"{first}: not a trace format recsim knows ({', '.join(sorted(READERS))})")


#: The readers that join ET and Kineto files given together, and the files each reads alone.
_JOINED_BY = {"kineto": "Kineto", "pytorch_et": "execution-trace"}


def _chakra(path: Path) -> bool:
    """Whether ``path`` is named as a Chakra protobuf file (``.et``, ``.et.gz``): binary, not JSON."""
    return path.name.endswith((".et", ".et.gz"))


def _check_not_mixed_with_chakra(paths: Sequence[Path]) -> None:
    """Refuse Chakra files beside JSON traces: no reader takes both, and the JSON reader's error on
    the binary file ("not UTF-8 JSON text") did not say why (a tester's find)."""
    chakra = [p for p in paths if _chakra(p)]
    others = [p for p in paths if not _chakra(p)]
    if chakra and others:
        raise TraceError(
            f"mixed formats: {chakra[0]} is a Chakra execution trace (.et) and {others[0]} is not; "
            "give the Chakra files alone, or the JSON traces (Kineto, PyTorch ET) alone"
        )


def _parsed(path: Path, sniffer: Callable[[Path], Any] | None = None) -> Any:
    """``path``'s JSON for the readers' ``sniff``, or None for a binary (Chakra protobuf) file."""
    from recsim.graph.native import load_json

    if _chakra(path):
        return None
    return (sniffer or load_json)(path)


def load_documents(paths: Sequence[Path], parsed: dict[Path, Any] | None = None) -> list[Any]:
    """The parsed JSON of each of ``paths``: a document in ``parsed`` (taken out of it, so that the
    caller holds no second reference) or the file's (``load_json``)."""
    from recsim.graph.native import load_json

    given = parsed if parsed is not None else {}
    return [given.pop(p) if p in given else load_json(p) for p in paths]


def recsim_timeline(data: Any) -> bool:
    """Whether parsed ``data`` is a Chrome timeline recsim wrote (``otherData.recsim``)."""
    other = data.get("otherData") if isinstance(data, dict) else None
    return isinstance(other, dict) and "recsim" in other


def _sniffed(path: Path, data: Any) -> str | None:
    """The first reader (by name) whose ``sniff`` takes ``path``, or None."""
    _load_builtin_readers()
    return next((name for name in sorted(READERS) if READERS[name].sniff(path, data)), None)


def recsim_output(path: Path) -> bool:
    """Whether ``path`` is a file recsim writes: a native graph or a Chrome timeline of its own (a
    file ``recsim trace convert`` may replace), as opposed to a recording or anything else."""
    try:
        data = _parsed(path)
        return recsim_timeline(data) or _sniffed(path, data) == "native"
    except (TraceError, OSError, ValueError):
        return False
