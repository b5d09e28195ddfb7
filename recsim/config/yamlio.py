"""Strict, safe YAML reading with line numbers.

PyYAML's ``safe_load`` silently keeps the last of two duplicate keys and forgets where values were
written. We compose the node graph ourselves instead: safe constructors only, duplicate keys and
merge keys rejected, a size limit and a node-count limit (against alias "billion laughs" bombs), and
the line of every key recorded in the returned ``Tree``. Every failure is a ``ConfigError`` that
names the file and the line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import yaml

from recsim.config.tree import KeyPath, Location, Tree, format_path
from recsim.errors import ConfigError

# Hardware, workload and sweep files are a few kB; generated table groups keep even the largest
# model spec far below this. Anything bigger is a mistake (a trace passed as a config, say).
MAX_CONFIG_BYTES: Final[int] = 4 * 1024 * 1024
# Bounds the work of expanding YAML aliases (each alias reference is walked again).
MAX_NODES: Final[int] = 200_000


def _constructor() -> yaml.SafeLoader:
    return yaml.SafeLoader("")


#: libyaml's parser where PyYAML was built with it: the same node graph (the tags are resolved by
#: the same Python resolver, the marks carry the same lines) several times faster. A sweep reads
#: every point's system and workload files afresh, and parsing them in pure Python took longer
#: than simulating the point.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", None)

#: What the two parsers read differently (two reviews' differential fuzzing, 50,000 documents):
#: libyaml takes tabs as separators where PyYAML refuses them, a bare ``!`` tag as an empty
#: string, tag handles PyYAML refuses (``!=!x``), a byte order mark inside the text as nothing,
#: a comment straight after a block scalar's ``|``/``>``, the Unicode line breaks (NEL, LS, PS)
#: as line breaks in more places, a ``?`` inside a plain scalar of a flow collection
#: (``[http://h/p?q=1]``) as part of it, a tag ended by a comma (``[!!str, x]``) as a tag;
#: and it raises ``UnicodeEncodeError`` on a lone
#: surrogate. A document with any of these (a ``?`` is sent on when it follows a character, or
#: when the document has a flow collection at all; a tag when libyaml's graph has any node tagged
#: outside YAML's own tags) is read by the pure-Python parser only, and so is one whose top level
#: is not a mapping (an error either way, whose line the parsers give differently for an empty
#: document), so that what a file means, or why it is refused, never depends on how PyYAML was
#: built.
_PURE_ONLY = re.compile(r"[\t\ufeff\x85\u2028\u2029\ud800-\udfff]|!(?=[\s,\]}]|$)|!\S*,|[|>][0-9+-]*#|\S\?")
#: The tags both parsers resolve alike: YAML's own (``!!str``, and every untagged node's).
_CORE_TAG = "tag:yaml.org,2002:"


def _compose(text: str) -> yaml.Node | None:
    flow_question = "?" in text and ("[" in text or "{" in text)
    if _FAST_LOADER is not None and not flow_question and _PURE_ONLY.search(text) is None:
        try:
            node = yaml.compose(text, Loader=_FAST_LOADER)
        except Exception:  # any refusal: the pure-Python parser's word is final
            node = None
        if isinstance(node, yaml.MappingNode) and _core_tags_only(node):
            return node
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _core_tags_only(root: yaml.Node) -> bool:
    """Every node of ``root``'s graph has one of YAML's own tags (an alias's node is walked once)."""
    stack: list[yaml.Node] = [root]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if not node.tag.startswith(_CORE_TAG):
            return False
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append(key)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return True


def load_yaml_text(text: str, source: str) -> Tree:
    """Parse YAML ``text`` (named ``source`` in errors) into a ``Tree`` whose top level is a mapping."""
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "malformed YAML"
        if ("\t" in text and "tab" in problem.lower()) or (mark is not None and _tab_near(text, mark.line)):
            problem += " (YAML does not allow tabs for indentation; use spaces)"
        raise ConfigError(f"{Location(source, line)}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: collections nested too deeply") from None
    if node is None:
        raise ConfigError(f"{source}: the file is empty; expected a mapping of keys")
    tree = Tree({}, {})
    builder = _Builder(source, tree)
    try:
        data = builder.build(node, ())
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: collections nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{Location(source, node.start_mark.line + 1)}: expected a mapping of keys at the top "
            f"level, got {type(data).__name__}"
        )
    tree.data = data
    return tree


def _tab_near(text: str, line_index: int) -> bool:
    lines = text.splitlines()
    return any("\t" in lines[i] for i in range(max(0, line_index - 1), min(len(lines), line_index + 2)))


def load_yaml_file(path: Path) -> Tree:
    """Read and parse one YAML config file, with the checks described in the module docstring."""
    source = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    if path.is_dir():
        raise ConfigError(f"{source}: is a directory, expected a YAML file")
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{source}: file is {size / 1e6:.1f} MB, larger than the {MAX_CONFIG_BYTES // 2**20} MiB "
            "limit for a config file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    return load_yaml_text(text, source)


#: What PyYAML's safe constructors raise, besides ``YAMLError``, on a value their tag cannot read
#: (``!!int ""`` is an IndexError, ``!!bool ""`` a KeyError, ``!!timestamp ""`` an AttributeError).
_CONSTRUCTOR_SLIPS = (ValueError, KeyError, IndexError, AttributeError, TypeError, OverflowError)


_INT_TAG = _CORE_TAG + "int"
_FLOAT_TAG = _CORE_TAG + "float"
#: YAML 1.1 numbers that read as another number than they show: octal integers (``020`` is 16;
#: ``07`` is 7 either way) and base-60 integers and floats (``1:20`` is 80, ``1:30.5`` is 90.5).
#: ``0x``/``0b`` forms read as written.
_OCTAL = re.compile(r"[-+]?0[0-7_]+")
_BASE60 = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?")


def yaml11_surprise(node: yaml.Node) -> bool:
    """Whether scalar ``node`` is a YAML 1.1 number that reads as another number than it shows."""
    if not isinstance(node, yaml.ScalarNode) or node.tag not in (_INT_TAG, _FLOAT_TAG):
        return False
    text = str(node.value)
    if _BASE60.fullmatch(text):
        return True
    if node.tag == _INT_TAG and _OCTAL.fullmatch(text):
        digits = text.replace("_", "")
        return int(digits, 8) != int(digits, 10)
    return False


def surprise_message(text: str) -> str:
    """Why ``text`` (a ``yaml11_surprise``) is refused, and what to write instead."""
    ratio = "; a ratio such as 2:1 is written as its value, 2" if ":" in text else ""
    return (
        f"{text!r} is a number in YAML 1.1's octal or base-60 form, which reads as another number "
        f"than it shows; write it without leading zeros or colons (or quote it for a text){ratio}"
    )


#: A NUL character (YAML's "\\0") ends a path at the system's interface: a plan file, a stats file,
#: a system named by one was a ``ValueError`` traceback (a helper's find), and no name holds one.
_NUL_MESSAGE = "a NUL character (\\0) in a text: no name or path may hold one"


def load_value(raw: str) -> Any:
    """A scalar or flow value as ``--set`` and sweep overrides give it (``yaml.safe_load``), with the
    same refusals as a file's values (``ValueError``): YAML 1.1's octal and base-60 numbers, and an
    alias that refers to a collection containing it (``&a [1, *a]`` had ended in a RecursionError)."""
    node = yaml.compose(raw, Loader=yaml.SafeLoader)
    if node is None:
        return None
    done: set[int] = set()  # a shared alias is checked once
    # (node, leaving): a collection is open from its entry until its exit, as in ``_Builder``.
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    open_: set[int] = set()
    while stack:
        current, leaving = stack.pop()
        if leaving:
            open_.discard(id(current))
            done.add(id(current))
            continue
        if id(current) in open_:
            raise ValueError("a YAML alias refers to a collection that contains it")
        if id(current) in done:
            continue
        if isinstance(current, (yaml.MappingNode, yaml.SequenceNode)):
            open_.add(id(current))
            stack.append((current, True))
            children = (
                [n for pair in current.value for n in pair]
                if isinstance(current, yaml.MappingNode)
                else current.value
            )
            stack += [(child, False) for child in reversed(children)]
        else:
            if isinstance(current.value, str) and "\0" in current.value:
                raise ValueError(f"{_NUL_MESSAGE}, got {current.value!r}")
            if yaml11_surprise(current):
                raise ValueError(surprise_message(str(current.value)))
            done.add(id(current))
    return _constructor().construct_document(node)


def _tag_name(tag: str) -> str:
    """``int`` for ``tag:yaml.org,2002:int``, else the tag itself."""
    return tag.removeprefix(_CORE_TAG)


class _Builder:
    def __init__(self, source: str, tree: Tree) -> None:
        self.source = source
        self.tree = tree
        self.count = 0
        self.loader = _constructor()
        # The collection nodes being built, by identity: an alias that leads back into one of
        # them (``a: &x [1, *x]``) is a structure without end.
        self.open: set[int] = set()

    def _loc(self, node: yaml.Node) -> Location:
        return Location(self.source, node.start_mark.line + 1)

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise ConfigError(
                f"{self._loc(node)}: more than {MAX_NODES} YAML nodes (are aliases expanding recursively?)"
            )
        self.tree.locations[path] = self._loc(node)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if id(node) in self.open:
                raise ConfigError(f"{self._loc(node)}: a YAML alias refers to a collection that contains it")
            self.open.add(id(node))
            try:
                return self._collection(node, path)
            finally:
                self.open.discard(id(node))
        if isinstance(node.value, str) and "\0" in node.value:
            raise ConfigError(f"{self._loc(node)}: {format_path(path)}: {_NUL_MESSAGE}, got {node.value!r}")
        if yaml11_surprise(node):
            # YAML 1.1 reads 020 as octal 16 and 1:20 as base 60 (80): a user who wrote
            # ``nodes: 020`` got 16 nodes without a word (a tester's find).
            raise ConfigError(f"{self._loc(node)}: {surprise_message(str(node.value))}")
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{self._loc(node)}: invalid value: {_one_line(exc)}") from None
        except _CONSTRUCTOR_SLIPS as exc:
            raise ConfigError(
                f"{self._loc(node)}: invalid value: {node.value!r} is not a valid {_tag_name(node.tag)}"
            ) from exc

    def _collection(self, node: yaml.Node, path: KeyPath) -> Any:
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise ConfigError(
                        f"{self._loc(key_node)}: YAML merge keys '<<' are not supported; use "
                        "'extends:' to inherit from another file"
                    )
                try:
                    key = self.loader.construct_object(key_node, deep=True)
                except yaml.YAMLError as exc:
                    raise ConfigError(f"{self._loc(key_node)}: invalid key: {_one_line(exc)}") from None
                except _CONSTRUCTOR_SLIPS as exc:
                    raise ConfigError(
                        f"{self._loc(key_node)}: invalid key: {key_node.value!r} is not a valid "
                        f"{_tag_name(key_node.tag)}"
                    ) from exc
                except RecursionError:
                    raise ConfigError(
                        f"{self._loc(key_node)}: a YAML alias refers to a collection that contains it"
                    ) from None
                if not isinstance(key, str):
                    raise ConfigError(
                        f"{self._loc(key_node)}: keys must be strings, got {type(key).__name__} {key!r}"
                    )
                if key in out:
                    raise ConfigError(f"{self._loc(key_node)}: duplicate key {key!r}")
                out[key] = self.build(value_node, (*path, key))
                # Point errors about a key at the key's own line.
                self.tree.locations[(*path, key)] = self._loc(key_node)
            return out
        return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]


def _one_line(exc: yaml.YAMLError) -> str:
    """A YAML error's problem, without the multi-line excerpt PyYAML appends (the location is
    given already)."""
    problem = getattr(exc, "problem", None)
    return str(problem) if problem else str(exc).splitlines()[0]
