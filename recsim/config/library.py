"""A library of YAML documents found by name over a list of roots, resolved and validated.

Each root holds the documents of the library in fixed folders (``sections``); a document's file
name (without ``.yaml``) is its name. Roots are searched in order: those in the library's
environment variable (``os.pathsep``-separated) first, so users can shadow or add documents, then
the data shipped with recsim. A reference with a ``/`` or a ``.yaml`` suffix is a path (relative to
the file that contains it, or to the working directory on the command line) instead of a name.

``HardwareLibrary`` and ``WorkloadLibrary`` are the two libraries; both resolve a document the same
way (``extends:``, inlined references, ``--set`` overrides, schema validation, hash).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from recsim.config.hashing import config_hash
from recsim.config.loader import (
    Override,
    Referable,
    apply_overrides,
    inline_references,
    is_path_ref,
    load_document,
)
from recsim.config.tree import KeyPath, Tree
from recsim.config.validate import validate_tree
from recsim.config.yamlio import load_yaml_file
from recsim.errors import ConfigError
from recsim.paths import user_path

R = TypeVar("R", bound=Referable)


def shipped_data(folder: str) -> Path:
    """A data folder that ships with recsim: in the wheel (``recsim/_data``) or the source checkout."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_data" / folder
    return packaged if packaged.is_dir() else package.parent / folder


@dataclass(frozen=True)
class Resolved(Generic[R]):
    """A validated document with the tree it came from and its config hash."""

    spec: R
    tree: Tree
    hash: str = field(default="")


class DocumentLibrary:
    """Lookup and resolution of documents over a list of roots (see the module docstring)."""

    #: kind -> section folder; the section "." is the root itself (not searched recursively).
    sections: ClassVar[dict[str, str]] = {}
    #: kind -> schema of the resolved document
    schemas: ClassVar[dict[str, type[Referable]]] = {}
    env_var: ClassVar[str] = ""
    shipped: ClassVar[str] = ""
    list_command: ClassVar[str] = ""
    #: kind -> what messages call a document of it, where its ``kind:`` is no word a user reads
    #: (a workload is ``kind: dlrm``: "unknown dlrm 'dgx-h100'" puzzled a tester).
    kind_words: ClassVar[dict[str, str]] = {}

    def __init__(self, roots: Sequence[Path] | None = None) -> None:
        self.roots = [Path(r) for r in (roots if roots is not None else self.default_roots())]
        self._index: dict[str, dict[str, Path]] | None = None

    @classmethod
    def default_roots(cls) -> list[Path]:
        """``$env_var``'s folders, then the shipped library. A folder in the variable that does not
        exist is a ``ConfigError``: a mistyped path would otherwise hide the user's documents and
        fall back on the shipped ones without a word."""
        extra = [Path(p) for p in os.environ.get(cls.env_var, "").split(os.pathsep) if p]
        sections = sorted({s for s in cls.sections.values() if s != "."})
        for folder in extra:
            if not folder.is_dir():
                raise ConfigError(f"${cls.env_var}: {folder} is not a folder (expected library folders)")
            if sections and not any((folder / s).is_dir() for s in sections):
                # Documents straight in the folder would be skipped: the library looks in these.
                wanted = " or ".join(f"{s}/" for s in sections)
                raise ConfigError(f"${cls.env_var}: {folder} holds no {wanted} folder (a library root does)")
        return [*extra, shipped_data(cls.shipped)]

    # -- finding files -------------------------------------------------------------------------

    def _build_index(self) -> dict[str, dict[str, Path]]:
        index: dict[str, dict[str, Path]] = {section: {} for section in set(self.sections.values())}
        for root in reversed(self.roots):  # earlier roots win
            for section in index:
                folder = root / section
                if folder.is_dir():
                    found = folder.glob("*.yaml") if section == "." else folder.rglob("*.yaml")
                    for path in sorted(found):
                        index[section][path.stem] = path
        return index

    @property
    def index(self) -> dict[str, dict[str, Path]]:
        if self._index is None:
            self._index = self._build_index()
        return self._index

    def section_of(self, kind: str) -> str:
        return self.sections[kind]

    def names(self, section: str) -> list[str]:
        """Names in one section folder."""
        return sorted(self.index[section])

    def names_of_kind(self, kind: str) -> list[str]:
        """Names of the documents of ``kind`` (reads each file's ``kind:``)."""
        section = self.section_of(kind)
        return [
            n for n, p in sorted(self.index[section].items()) if load_yaml_file(p).data.get("kind") == kind
        ]

    def locate(self, kind: str, ref: str, relative_to: Path | None) -> Path:
        """The file of ``ref`` (a library name or a path); ``ConfigError`` if none."""
        word = self.kind_words.get(kind, kind)
        if is_path_ref(ref):
            path = Path(ref).expanduser()
            if not path.is_absolute() and relative_to is not None:
                path = relative_to / path
            user_path(path, f"{word} file")  # a name too long was an OSError from is_dir()
            if path.is_dir():
                raise ConfigError(f"{ref}: a folder, not a {word} file ({path}): name a YAML file in it")
            if not path.is_file():
                # /dev/null or a pipe exists: "no such file" sent the user looking for a typo.
                if path.exists():
                    raise ConfigError(f"{ref}: not a regular file ({path}): a {word} file is a YAML file")
                raise ConfigError(f"{ref}: no such {word} file ({path})")
            return path
        section = self.section_of(kind)
        found = self.index[section].get(ref)
        if found is None:
            # Names of this kind only (a devices folder holds every kind), those containing what was
            # typed first ('h100' -> 'h100-sxm5-80gb'), then the closest spellings.
            names = self.names_of_kind(kind) or list(self.index[section])
            typed = ref.lower()
            close = [n for n in names if len(typed) >= 3 and typed in n.lower()][:3]
            close += [c for c in difflib.get_close_matches(ref, names, n=3, cutoff=0.5) if c not in close]
            close = close[:3]
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"unknown {word} {ref!r}{hint} (see `{self.list_command}`; or give a path to a YAML file)"
            )
        return found

    # -- resolving -----------------------------------------------------------------------------

    def resolve_tree(self, kind: str, ref: str | Path, overrides: Iterable[Override] = ()) -> Tree:
        """The resolved config tree (extends merged, references inlined, overrides applied)."""
        schema = self.schemas[kind]
        path = self.locate(kind, str(ref), Path.cwd())
        tree = load_document(path, kind, self)
        tree = inline_references(schema, tree, self)
        # A setting before the settings inside it, whatever the order given: ``device.hbm.bandwidth``
        # then ``device=NAME`` dropped the bandwidth without a word. Settings of one path, and of
        # unrelated ones, keep their order (``sorted`` is stable; the last of one path wins).
        overrides = sorted(overrides, key=lambda override: len(override.path))
        start = 0
        for i, override in enumerate(overrides):
            if any(_inside_a_new_reference(override, earlier) for earlier in overrides[start:i]):
                # ``device=h200-sxm5-141gb`` then ``device.hbm.bandwidth=...``: the name becomes
                # its document before the later override edits it (a tester's pair was refused:
                # "'device' is a value, not a mapping").
                tree = inline_references(
                    schema, apply_overrides(tree, overrides[start:i], partial(self.expand, kind)), self
                )
                start = i
        if overrides[start:]:
            tree = apply_overrides(tree, overrides[start:], partial(self.expand, kind))
            tree = inline_references(schema, tree, self)
        return self.postprocess(kind, tree)

    def expand(self, kind: str, path: KeyPath, value: Any) -> dict[str, Any] | None:
        """The mapping a scalar (or absent key) at ``path`` of a ``kind`` document stands for, where
        an override sets a field inside it (``recsim.config.loader.Expander``); none by default."""
        return None

    def postprocess(self, kind: str, tree: Tree) -> Tree:
        """Hook for library-specific fix-ups of a resolved tree (none by default)."""
        return tree

    def load(self, kind: str, ref: str | Path, overrides: Iterable[Override] = ()) -> Resolved[Any]:
        """Resolve and validate a document of ``kind``."""
        if not isinstance(ref, (str, Path)) or (isinstance(ref, str) and not ref.strip()):
            word = self.kind_words.get(kind, kind)  # "workload", not the kind "dlrm" (--workload '')
            raise ConfigError(f"{word}: expected a library name or the path of a YAML file, got {ref!r}")
        tree = self.resolve_tree(kind, ref, overrides)
        spec = validate_tree(self.schemas[kind], tree)
        return Resolved(spec, tree, config_hash(spec))

    def kind_of(self, ref: str | Path, seen: tuple[Path, ...] = ()) -> str:
        """The ``kind:`` of a library name or a file (following ``extends:`` if it has none;
        ``seen``: the files already followed, to refuse a cycle)."""
        path = self._document_path(str(ref))
        tree = load_yaml_file(path)
        kind = tree.data.get("kind")
        if kind is None and "extends" in tree.data:
            here = path.resolve()
            where = tree.location(("extends",))
            if here in seen:
                cycle = " -> ".join(str(p) for p in [*seen, here])
                raise ConfigError(f"{where}: extends cycle: {cycle}")
            parent = str(tree.data["extends"])
            target = str(path.parent / parent) if is_path_ref(parent) else parent
            try:
                load_yaml_file(self._document_path(target))  # missing, a folder, not YAML
            except ConfigError as exc:
                # The mistake is this file's ``extends:``: say which file and key (a tester got
                # "unknown name 'mi300x-nope'" alone).
                raise ConfigError(f"{where}: extends: {exc}") from None
            return self.kind_of(target, (*seen, here))
        if kind not in self.schemas:
            allowed = ", ".join(sorted(self.schemas))
            raise ConfigError(f"{tree.location(('kind',))}: kind: expected one of {allowed}, got {kind!r}")
        return str(kind)

    def _document_path(self, text: str) -> Path:
        """The file of a library name or a path (``kind_of``), any kind; ``ConfigError`` if none."""
        if is_path_ref(text):
            return Path(text)  # ``load_yaml_file`` says if it is missing or not a file
        for section in sorted(self.index):
            if text in self.index[section]:
                return self.index[section][text]
        names = [n for section in self.index.values() for n in section]
        close = difflib.get_close_matches(text, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown name {text!r}{hint} (see `{self.list_command}`)")


def _inside_a_new_reference(override: Override, earlier: Override) -> bool:
    """Whether ``override`` edits below a name or a path that ``earlier`` set (a reference that is
    inlined only after the overrides): ``earlier``'s value itself, or one inside the mapping or
    list it set (``node.accelerators={device: NAME, count: 8}`` then ``...device.hbm.bandwidth``)."""
    n = len(earlier.path)
    if len(override.path) <= n or override.path[:n] != earlier.path:
        return False
    value = earlier.value
    for part in override.path[n:]:
        if isinstance(value, str):
            return True
        if isinstance(value, dict) and isinstance(part, str):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return False
    return False
