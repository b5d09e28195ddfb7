"""A configuration tree: plain YAML data plus where every value came from.

Configs are loaded into plain Python data (dicts, lists, scalars) so that ``extends:`` merging,
reference inlining and ``--set`` overrides are simple tree edits. Alongside the data we keep a map
from key path to ``Location`` (file and line, or the ``--set`` argument) so that any error found
later, by the schema, can still say exactly where the offending value was written.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Location:
    """Where a value was written: a file and line, or a command-line override."""

    source: str
    line: int | None = None

    def __str__(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"


def format_path(path: KeyPath) -> str:
    """``("node", "nics", 0, "device")`` -> ``node.nics[0].device``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


@dataclass
class Tree:
    """Config data with the location of each key path (``()`` is the whole document)."""

    data: dict[str, Any]
    locations: dict[KeyPath, Location] = field(default_factory=dict)
    #: The key paths ``--set`` overrides wrote, with the override: ``locations`` forgets one that
    #: named a reference (``node.nics.device=eth-100g``) when the referenced document is inlined
    #: there, and an error it causes must still name it, not the shipped file.
    overrides: dict[KeyPath, Location] = field(default_factory=dict)
    #: Where each inlined reference (``device: ddr4-2400``) was written: ``locations`` there are the
    #: referenced document's own after inlining, and a check that blames the choice of the device
    #: (a DIMM of another technology than the CPU's) must name the line that chose it.
    references: dict[KeyPath, Location] = field(default_factory=dict)
    #: Where a ``null`` (in a file that extends another, or a ``--set``) removed a key that was not
    #: there: ``validate_tree`` checks the schema has such a key, since a misspelt one (``scale_upp:
    #: null`` to drop the NVLink fabric) removed nothing without a word (a helper's find).
    removed: dict[KeyPath, Location] = field(default_factory=dict)
    #: The name (or path) a child's mapping replaced in an ``extends:`` merge (``device:
    #: h100-sxm5-80gb`` in the parent, ``device: {hbm: ...}`` in the child): a mapping does not
    #: merge into a name, so a partial one is no device, and the error must say which name to
    #: extend (``recsim.config.loader``; a tester got "missing required key 'kind'" alone).
    replaced: dict[KeyPath, str] = field(default_factory=dict)

    def location(self, path: KeyPath) -> Location:
        """The location of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            loc = self.locations.get(path[:end])
            if loc is not None:
                return loc
        return Location("<config>")

    def copy(self) -> Tree:
        return Tree(
            copy.deepcopy(self.data),
            dict(self.locations),
            dict(self.overrides),
            dict(self.references),
            dict(self.removed),
            dict(self.replaced),
        )


def walk(value: Any, prefix: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """Every (path, value) pair below and including ``value``."""
    yield prefix, value
    if isinstance(value, Mapping):
        for key, child in value.items():
            yield from walk(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, (*prefix, index))


MISSING: Any = object()


def child(node: Any, part: str | int) -> Any:
    """``node[part]`` for a mapping key or an in-range list index, else ``MISSING``."""
    if isinstance(node, dict) and isinstance(part, str) and part in node:
        return node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return MISSING


def _under(path: KeyPath, prefix: KeyPath) -> bool:
    return path[: len(prefix)] == prefix


def drop_locations(locations: dict[KeyPath, Location], prefix: KeyPath) -> None:
    """Forget the locations of ``prefix`` and everything under it."""
    for path in [p for p in locations if _under(p, prefix)]:
        del locations[path]


def graft(target: Tree, path: KeyPath, source: Tree) -> None:
    """Copy the locations of ``source`` (a whole document) under ``path`` of ``target``."""
    drop_locations(target.locations, path)
    for sub, loc in source.locations.items():
        target.locations[(*path, *sub)] = loc


#: Keys that choose the variant of a mapping (the discriminators of the schemas' unions: an access
#: model's ``dist``, a search's ``method``).
VARIANT_KEYS: tuple[str, ...] = ("dist", "method")


def _other_variant(inherited: Mapping[str, Any], value: Mapping[str, Any]) -> bool:
    """``value`` names another variant than ``inherited`` (a different ``dist``, say)."""
    return any(k in value and k in inherited and value[k] != inherited[k] for k in VARIANT_KEYS)


def deep_merge(base: Tree, child: Tree) -> Tree:
    """``child`` over ``base``: mappings merge key by key, anything else replaces.

    A ``null`` in the child deletes the inherited key, so a derived system can drop, say, the
    NVLink fabric of its parent. A mapping that switches to another variant (``VARIANT_KEYS``: a
    zipf access model made empirical) replaces the inherited one whole: the old variant's own keys
    (zipf's ``alpha``) do not belong to the new one.
    """
    result = base.copy()

    def merge(into: dict[str, Any], over: Mapping[str, Any], path: KeyPath) -> None:
        for key, value in over.items():
            sub = (*path, key)
            if value is None:
                if key not in into:
                    result.removed[sub] = child.location(sub)
                into.pop(key, None)
                drop_locations(result.locations, sub)
            elif (
                isinstance(value, Mapping)
                and isinstance(into.get(key), dict)
                and not _other_variant(into[key], value)
            ):
                result.locations[sub] = child.location(sub)
                merge(into[key], value, sub)
            else:
                if isinstance(value, Mapping) and isinstance(into.get(key), str):
                    result.replaced[sub] = into[key]
                into[key] = copy.deepcopy(value)
                drop_locations(result.locations, sub)
                for inner, _ in walk(value, sub):
                    if inner in child.locations:
                        result.locations[inner] = child.locations[inner]

    result.removed.update(child.removed)
    result.replaced.update(child.replaced)
    merge(result.data, child.data, ())
    result.locations[()] = child.location(())
    return result
