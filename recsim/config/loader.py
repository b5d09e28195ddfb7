"""Resolve a config document: ``extends:`` inheritance, references to other documents, ``--set``.

The steps, in order, each on the plain ``Tree``:

1. read the file; follow ``extends:`` (a library name or a path relative to the file) and deep-merge
   the child over its parent, detecting cycles;
2. inline every reference the schema marks as one (a ``Referable`` field given as a name, a path, or
   a mapping with its own ``extends:``), recursively, so the *resolved config* is self-contained:
   ``--set node.accelerators.device.hbm.bandwidth=2TB/s`` reaches into a device, and the config hash
   changes when a referenced device file changes;
3. apply ``--set dotted.path=value`` overrides (values parsed as YAML scalars, so ``8`` is a number
   and ``2 TB/s`` a string for the unit parser), then inline again in case an override replaced a
   reference by another name.

Validation against the schema happens after this, in ``recsim.config.validate``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import yaml
from pydantic import BaseModel

from recsim.config.tree import KeyPath, Location, Tree, child, deep_merge, format_path, graft, walk
from recsim.config.types import Spec
from recsim.config.validate import _unwrap
from recsim.config.yamlio import load_value, load_yaml_file
from recsim.errors import ConfigError


class Referable(Spec):
    """A schema that lives in its own document and can be referenced by name or path."""

    ref_kind: ClassVar[str] = ""

    @classmethod
    def inherit(cls, parent: dict[str, Any], child: dict[str, Any], merged: dict[str, Any]) -> None:
        """Adjust ``merged`` (``child`` deep-merged over ``parent``, the raw trees of an
        ``extends:``) where a value the child inherits means something else in the child; by
        default nothing does. ``Accelerator`` marks an inherited fit as transferred."""


class Locator(Protocol):
    """Finds the file of a named document of a given kind (the hardware library is one)."""

    def locate(self, kind: str, ref: str, relative_to: Path | None) -> Path:
        """The file for ``ref``; raises ``ConfigError`` if there is none."""
        ...


def is_path_ref(ref: str) -> bool:
    """A reference is a path if it has a directory part or a YAML suffix, else a library name."""
    return "/" in ref or "\\" in ref or ref.endswith((".yaml", ".yml"))


@dataclass(frozen=True)
class Override:
    """One ``--set dotted.path=value``."""

    path: KeyPath
    value: Any
    text: str

    @classmethod
    def parse(cls, text: str, shown: str | None = None) -> Override:
        """``text`` as an override; ``shown`` is how the user wrote it (``workload.`` + ``text``
        for a workload path), which messages quote."""
        shown = text if shown is None else shown
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {shown!r}: expected PATH=VALUE, e.g. cluster.nodes=8")
        if re.search(r"^\.|\.\.|\.$|\.\[|^\[|\][^.\[]", key):
            # The split below would skip the empty key silently: ``cluster..nodes`` is a typo.
            raise ConfigError(
                f"--set {shown!r}: an empty key in the path, or a key right after a list index; "
                "keys are joined by single dots, "
                "e.g. cluster.nodes=8 or workload.tables[0].rows=1000"
            )
        parts: list[str | int] = []
        for piece in re.split(r"\.|\[(\d+)\]", key):
            if piece is None or piece == "":
                continue
            if "[" in piece or "]" in piece:
                # What is left of a bracket is not a list index (``tables[x]``, ``tables[-1]``).
                raise ConfigError(
                    f"--set {shown!r}: {piece}: a list index is a whole number >= 0 in brackets, "
                    "e.g. workload.tables[0].rows=1000"
                )
            # ``isdecimal``: ``isdigit`` takes a superscript two, which ``int`` refuses.
            parts.append(int(piece) if piece.isdecimal() else piece)
        try:
            value = load_value(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw.strip()
        except ValueError as exc:  # a YAML 1.1 octal or base-60 number (``yamlio.load_value``)
            raise ConfigError(f"--set {shown!r}: {exc}") from None
        if not isinstance(value, (str, int, float, bool, dict, list, type(None))):
            value = raw.strip()  # dates and the like stay the text the user typed
        return cls(tuple(parts), value, shown)


def load_document(path: Path, kind: str, locator: Locator, chain: Sequence[Path] = ()) -> Tree:
    """Read ``path`` and resolve its ``extends:`` chain into one merged tree of ``kind``."""
    tree = load_yaml_file(path)
    return _resolve_extends(tree, path, kind, locator, chain)


def _check_kind(tree: Tree, kind: str) -> None:
    got = tree.data.get("kind")
    if got is None:
        raise ConfigError(f"{tree.location(())}: missing required key 'kind' (expected 'kind: {kind}')")
    if got != kind:
        raise ConfigError(f"{tree.location(('kind',))}: kind: expected {kind!r}, got {got!r}")


def _resolve_extends(
    tree: Tree, path: Path | None, kind: str, locator: Locator, chain: Sequence[Path]
) -> Tree:
    if "extends" not in tree.data:
        _check_kind(tree, kind)
        return tree
    got = tree.data.get("kind")
    if got is not None and got != kind:
        # The document's own kind first: a device file given as a system is that, not a bad parent.
        raise ConfigError(f"{tree.location(('kind',))}: kind: expected {kind!r}, got {got!r}")
    parent_ref = tree.data.pop("extends")
    where = tree.location(("extends",))
    if not isinstance(parent_ref, str) or not parent_ref:
        raise ConfigError(f"{where}: extends: expected the name or path of a {kind} document")
    if path is not None:
        base_dir = path.parent
    else:
        # A mapping written in a file resolves next to that file; one given by a --set (no line)
        # next to where the command runs, as a --set's file reference does.
        base_dir = Path(where.source).parent if where.line is not None else Path.cwd()
    try:
        parent_path = locator.locate(kind, parent_ref, base_dir).resolve()
    except ConfigError as exc:
        raise ConfigError(f"{where}: extends: {exc}") from None
    visited = [p.resolve() for p in chain] + ([path.resolve()] if path is not None else [])
    if parent_path in visited:
        cycle = " -> ".join(str(p) for p in [*visited, parent_path])
        raise ConfigError(f"{where}: extends cycle: {cycle}")
    parent_tree = load_yaml_file(parent_path)
    got = parent_tree.data.get("kind")
    if got is not None and got != kind:
        # The mistake is this file's ``extends:``, not the parent's ``kind:`` (right for it).
        raise ConfigError(
            f"{where}: extends: {parent_ref!r} is of kind {got!r} ({parent_path}); a document of "
            f"kind {kind!r} extends one of its own kind"
        )
    parent = _resolve_extends(parent_tree, parent_path, kind, locator, visited)
    if "kind" not in tree.data:
        tree.data["kind"] = kind
    merged = deep_merge(parent, tree)
    _check_kind(merged, kind)
    schema = _schemas(locator).get(kind)
    if schema is not None:
        schema.inherit(parent.data, tree.data, merged.data)
    return merged


def _schemas(locator: Locator) -> dict[str, type[Referable]]:
    """The document schemas a locator resolves (a library's ``schemas``; none for another one)."""
    found: dict[str, type[Referable]] = getattr(locator, "schemas", {})
    return found


def _subtree(tree: Tree, path: KeyPath) -> Tree:
    node: Any = tree.data
    for part in path:
        node = node[part]
    sub = Tree(node, {})
    for p, loc in tree.locations.items():
        if p[: len(path)] == path:
            sub.locations[p[len(path) :]] = loc
    return sub


def inline_references(model: type[BaseModel], tree: Tree, locator: Locator) -> Tree:
    """Replace every reference field of ``model`` in ``tree`` by the referenced document."""
    result = tree.copy()
    _inline(model, result, (), locator, depth=0)
    return result


def _inline(model: type[BaseModel], tree: Tree, path: KeyPath, locator: Locator, depth: int) -> None:
    if depth > 32:
        raise ConfigError(f"{tree.location(path)}: references nested too deeply (a cycle?)")
    node: Any = tree.data
    for part in path:
        node = node[part]
    if not isinstance(node, dict):
        return
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in node:
            continue
        targets = [t for t in _unwrap(info.annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
        value = node[key]
        items: list[KeyPath] = (
            [(*path, key, i) for i in range(len(value))] if isinstance(value, list) else [(*path, key)]
        )
        for item_path in items:
            for target in targets:
                item = _get(tree.data, item_path)
                if issubclass(target, Referable) and isinstance(item, dict):
                    _check_inline_document(target, tree, item_path, item)
                if issubclass(target, Referable) and (
                    isinstance(item, str) or (isinstance(item, dict) and "extends" in item)
                ):
                    _replace_reference(target, tree, item_path, locator)
                    _inline(target, tree, item_path, locator, depth + 1)
                elif isinstance(item, dict):
                    _inline(target, tree, item_path, locator, depth + 1)


def _check_inline_document(target: type[Referable], tree: Tree, path: KeyPath, item: dict[str, Any]) -> None:
    """A document written in place (a mapping where a name may stand) is whole: it needs its
    ``kind:`` (and every other key), or an ``extends:`` to start from a library document. Without
    either it fails the schema on every key it lacks; say why and how instead, naming what an
    ``extends:`` merge replaced with it (``Tree.replaced``)."""
    if "kind" in item or "extends" in item:
        return
    kind = target.ref_kind
    article = "an" if kind[:1] in "aeiou" else "a"
    inherited = tree.replaced.get(path)
    if inherited is not None:
        raise ConfigError(
            f"{tree.location(path)}: {format_path(path)}: this mapping replaces {inherited!r}, which "
            f"the file it extends names, whole (a mapping is not merged into a name) and is not "
            f"{article} {kind} of its own (no 'kind: {kind}'); to change some of its keys, "
            f"write 'extends: {inherited}' in it"
        )
    raise ConfigError(
        f"{tree.location(path)}: {format_path(path)}: {article} {kind} written in place needs "
        f"'kind: {kind}' and all its keys; to start from a library {kind} and change some of its "
        f"keys, write 'extends: NAME' in it"
    )


def _get(data: Any, path: KeyPath) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(data: Any, path: KeyPath, value: Any) -> None:
    parent = _get(data, path[:-1])
    parent[path[-1]] = value


def _replace_reference(target: type[Referable], tree: Tree, path: KeyPath, locator: Locator) -> None:
    item = _get(tree.data, path)
    where = tree.location(path)
    base_dir = Path(where.source).parent if where.line is not None else Path.cwd()
    kind = target.ref_kind
    if isinstance(item, str):
        try:
            found = locator.locate(kind, item, base_dir)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {format_path(path)}: {exc}") from None
        # A library name of another kind of device (a NIC named as an accelerator): the mistake is
        # at the reference, not in the device's own file.
        loaded = load_yaml_file(found)
        found_kind = loaded.data.get("kind")
        if isinstance(found_kind, str) and found_kind != kind:
            article = "an" if kind[:1] in "aeiou" else "a"
            found_article = "an" if found_kind[:1] in "aeiou" else "a"  # "is a accelerator" before
            raise ConfigError(
                f"{where}: {format_path(path)}: {item!r} is {found_article} {found_kind} ({found}), "
                f"not {article} {kind}"
            )
        doc = _resolve_extends(loaded, found, kind, locator, ())  # as ``load_document`` would
    else:
        sub = _subtree(tree, path)
        doc = _resolve_extends(sub.copy(), None, kind, locator, ())
    if path in tree.locations:
        tree.references[path] = tree.locations[path]
    _set(tree.data, path, doc.data)
    graft(tree, path, doc)


#: The mapping a scalar (or an absent key) stands for, where an override sets a field inside it:
#: called with the key path and its value (None where the key is absent); returns the mapping, None
#: where the value stands for none (the override is then refused as before), or raises a
#: ``ConfigError`` saying what the path expects. ``node.platform: generic`` is the generic
#: platform's mapping, so ``--set node.platform.fan_fraction=0.15`` changes the default's fans.
Expander = Callable[[KeyPath, Any], dict[str, Any] | None]


def _no_expansion(path: KeyPath, value: Any) -> dict[str, Any] | None:
    return None


def apply_overrides(tree: Tree, overrides: Sequence[Override], expand: Expander = _no_expansion) -> Tree:
    """``tree`` with each override applied in order; a bad path is a ``ConfigError``. An override
    that descends through a scalar or an absent key first asks ``expand`` what mapping it stands
    for (``Expander``)."""
    result = tree.copy()
    for override in overrides:
        node: Any = result.data
        label = f"--set {override.text}"
        if not override.path:
            raise ConfigError(f"{label}: empty key path")
        for depth, part in enumerate(override.path[:-1]):
            here = format_path(override.path[: depth + 1])
            if (
                isinstance(node, dict)
                and isinstance(part, str)
                and not isinstance(node.get(part), (dict, list))
            ):
                try:
                    expanded = expand(override.path[: depth + 1], node.get(part))
                except ConfigError as exc:
                    raise ConfigError(f"{label}: {here}: {exc}") from None
                if expanded is not None:
                    node[part] = expanded
                    for sub, _ in walk(expanded, override.path[: depth + 1]):
                        result.locations[sub] = Location(label)
                    node = expanded
                    continue
            if isinstance(node, dict) and isinstance(part, str) and part not in node:
                # A new optional section (e.g. cluster.nodes on a single-node system); a misspelt
                # one is then rejected by the schema, naming this --set (its location).
                node[part] = {}
                node = node[part]
                result.locations[override.path[: depth + 1]] = Location(label)
            elif isinstance(child(node, part), (dict, list)):
                node = child(node, part)
            else:
                raise ConfigError(f"{label}: {here}: {_no_such(node, part, override.path[:depth])}")
        last = override.path[-1]
        if isinstance(node, dict) and isinstance(last, str):
            if override.value is None:
                if last not in node:
                    result.removed[override.path] = Location(label)
                node.pop(last, None)
            else:
                node[last] = override.value
        elif isinstance(node, list) and isinstance(last, int) and 0 <= last < len(node):
            node[last] = override.value
        else:
            raise ConfigError(
                f"{label}: {format_path(override.path)}: {_no_such(node, last, override.path[:-1])}"
            )
        result.overrides[override.path] = Location(label)
        for sub, _ in walk(override.value, override.path):
            result.locations[sub] = Location(label)
        for p in [p for p in result.locations if p[: len(override.path)] == override.path]:
            result.locations[p] = Location(label)
    return result


def _no_such(node: Any, part: str | int, at: KeyPath) -> str:
    """Why ``part`` cannot be taken from ``node``, the value at key path ``at``."""
    if isinstance(node, dict):
        keys = sorted(str(k) for k in node)
        close = difflib.get_close_matches(str(part), keys, n=1, cutoff=0.6)
        if part in node:
            return f"{part!r} is a value, not a mapping"
        hint = f"did you mean {close[0]!r}?" if close else f"keys here: {', '.join(keys)}"
        if isinstance(part, int):  # "no key 0" read as if a key could be 0
            return (
                f"{format_path(at)} is a mapping, not a list: no index [{part}]; keys here: {', '.join(keys)}"
            )
        return f"no key {part!r}; {hint}"
    if isinstance(node, list) and isinstance(part, str):
        # "workload.tables.rows=5" was "index 'rows' out of range", as if 'rows' were an index.
        example = format_path((*at, 0, part))
        return f"{format_path(at)} is a list of {len(node)}, not a mapping: give an index, e.g. {example}"
    if isinstance(node, list):
        return f"index {part!r} out of range for a list of {len(node)}"
    return f"cannot descend into a {type(node).__name__}"
