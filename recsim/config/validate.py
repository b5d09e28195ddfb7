"""Validate a config ``Tree`` against a schema and turn schema errors into one clear line.

pydantic finds every problem; this module decides how a user reads it: the file and line where the
bad value (or the parent of a missing key) was written, the dotted key path, what was expected, and
for a misspelt key the closest allowed keys ("did you mean 'bandwidth'?").
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from recsim.config.tree import MISSING, KeyPath, Location, Tree, child, format_path
from recsim.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def validate_tree(model: type[M], tree: Tree, *, context: dict[str, Any] | None = None) -> M:
    """``model`` validated from ``tree.data``; a ``ConfigError`` naming file, line and key if not."""
    _check_removed_keys(model, tree)
    try:
        return model.model_validate(tree.data, context=context)
    except ValidationError as exc:
        raise ConfigError(describe_errors(model, tree, exc)) from None


def _check_removed_keys(model: type[BaseModel], tree: Tree) -> None:
    """A ``ConfigError`` where a ``null`` removed a key the schema does not have (``Tree.removed``):
    a misspelt key then removed nothing, silently. A mapping of free keys (a sweep's
    ``objectives``) has no schema of its keys, and any of them may be removed."""
    for path, where in tree.removed.items():
        key = path[-1]
        if not isinstance(key, str) or not _models_at(model, path[:-1]):
            continue
        allowed = sorted(allowed_keys(model, path[:-1]))
        if key in allowed:
            continue
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
        raise ConfigError(
            f"{where}: {format_path(path)}: unknown key {key!r} (a null removes a key; it removed "
            f"nothing); {hint}"
        )


def describe_errors(model: type[BaseModel], tree: Tree, exc: ValidationError) -> str:
    """The first error as ``file:line: key.path: problem``, with a count of the others."""
    errors = exc.errors(include_url=False)
    # A misspelt key also makes the right one "missing": report the misspelling, drop the echo.
    suggested: set[KeyPath] = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            path = data_path(tree.data, tuple(error["loc"]))
            close = difflib.get_close_matches(
                str(path[-1]), sorted(allowed_keys(model, path[:-1])), n=1, cutoff=0.6
            )
            suggested.update((*path[:-1], c) for c in close)
    errors = [
        e
        for e in errors
        if not (e["type"] == "missing" and data_path(tree.data, tuple(e["loc"])) in suggested)
    ]
    # Then, of a union's members, the one the value was meant for: a mapping given where either a
    # number or a mapping may go fails the number member as "expected an integer, got a mapping",
    # which would hide what is wrong inside the mapping (a tester's uniform draw with low > high).
    several = len(errors) > 1  # (a list being sorted reads as empty to the key)
    errors.sort(
        key=lambda e: (
            e["type"] != "extra_forbidden",
            several and e["type"].endswith("_type") and isinstance(e.get("input"), (Mapping, list, tuple)),
        )
    )
    first = _describe(model, tree, errors[0])
    rest = len(errors) - 1
    return first if rest == 0 else f"{first} (and {rest} more problem{'s' if rest > 1 else ''})"


def data_path(data: Any, loc: tuple[str | int, ...], *, key_last: bool = True) -> KeyPath:
    """The part of a pydantic ``loc`` that indexes the data (drops union-member labels).

    ``key_last``: the last part, absent from the data, is a key (of a ``missing`` error); else it
    is kept only as a plain word (a tagged union's member, ``rows.uniform: low 10.0 > high 5.0``),
    not as pydantic's label of the union (``tagged-union[function-after[_ordered(), ...], ...]``,
    where its tag is wrong or missing), which must not show in the key path."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if child(node, part) is not MISSING:
            path.append(part)
            node = child(node, part)
        elif (
            isinstance(node, dict)
            and isinstance(part, str)
            and part == loc[-1]
            and (key_last or part.isidentifier())
        ):
            path.append(part)  # a missing or unknown key: keep it, nothing below it
            break
    return tuple(path)


def _describe(model: type[BaseModel], tree: Tree, error: ErrorDetails) -> str:
    kind = error["type"]
    path = data_path(tree.data, tuple(error["loc"]), key_last=kind in ("missing", "extra_forbidden"))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _describe_tag(model, tree, path, error)
    # A missing key is placed at its parent, unless the key itself has a location: a ``--set
    # KEY=null`` that removed it is what to name, not the file that had it.
    missing_here = kind == "missing" and path in tree.locations
    where = tree.location(path if kind != "missing" or missing_here else path[:-1])
    key = format_path(path)
    if kind == "extra_forbidden":
        unknown = str(path[-1]) if path else "?"
        other = _variant_with(model, path[:-1], unknown)
        if other:
            # A key of another member of a union (``samples`` under ``search: {method: grid}``).
            return f"{where}: {key}: {unknown!r} goes with {other}, not with the other keys here"
        allowed = sorted(allowed_keys(model, path[:-1]))
        close = difflib.get_close_matches(unknown, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
        return f"{where}: {key}: unknown key {unknown!r}; {hint}"
    if kind == "missing":
        return f"{where}: {key}: missing required key {str(path[-1])!r}"
    if kind in ("value_error", "assertion_error") and where.line is not None:
        # A check across the keys of a mapping (a model validator) fails at the mapping, which a
        # file wrote. A --set (no line) below it whose key the message names is the likelier
        # cause (a shipped file passes its own checks); one the message does not name is only
        # mentioned (a reviewer found an unrelated --set blamed).
        message = _message(error)
        words = set(re.findall(r"[A-Za-z_]+", message))
        # The mapping the check read: a tagged union's member ends the path as a word of no key
        # (``dim.choice``), and a --set below the mapping was not found past it (a tester's
        # ``--set table_groups[0].dim.weights=[1, 2]`` was blamed on the shipped file).
        read = path
        while read and _at(tree.data, read) is MISSING:
            read = read[:-1]
        edits = {
            str(loc): at for at, loc in tree.locations.items() if at[: len(read)] == read and loc.line is None
        }
        # An override of a reference (``node.nics.device=eth-100g``) whose document was inlined
        # in its place: ``locations`` there are the document's own.
        edits.update((str(loc), at) for at, loc in tree.overrides.items() if at[: len(read)] == read)
        named = [label for label, at in edits.items() if at and str(at[-1]) in words]
        if named:
            # The mapping is the whole document: its "<top level>" would only be noise.
            return f"{', '.join(named)}: {key + ': ' if path else ''}{message} (with {where})"
        if edits:
            return f"{where}: {key}: {message} (the mapping also has {', '.join(edits)})"
        # A check across keys that names the key it blames first (``host_memory.dimms_per_channel:
        # 4 DIMMs per channel, ...``): that key's own line and full path, not the mapping's (a
        # tester found the ``node:`` line cited for a value written three lines below it).
        blamed = _blamed_key(tree, path, message)
        if blamed is not None:
            full, at, rest = blamed
            if at.source != where.source:
                # Written in another file (the base this one extends): the fix goes in this one,
                # and the message says where the value came from (a tester's single_switch over
                # dgx-h100 was told "has one tier" with no word of the base's tiers: 2).
                return f"{where}: {format_path(full)}: {rest} ({format_path(full)} comes from {at})"
            return f"{at}: {format_path(full)}: {rest}"
        mentioned = _mentioned_key(tree, path, where, message)
        if mentioned is not None:
            full, at = mentioned
            return f"{at}: {format_path(full)}: {message}"
    return f"{where}: {key}: {_message(error)}"


def _at(data: Any, path: KeyPath) -> Any:
    """The value at ``path`` of ``data``, or ``MISSING``."""
    for part in path:
        data = child(data, part)
        if data is MISSING:
            return MISSING
    return data


_LEADING_KEY = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*): ")


def _blamed_key(tree: Tree, path: KeyPath, message: str) -> tuple[KeyPath, Location, str] | None:
    """The key below ``path`` a model validator's ``message`` starts with (``a.b: ...``), where it
    was written and the rest of the message, when the tree knows that place; else None."""
    found = _LEADING_KEY.match(message)
    if found is None:
        return None
    full: KeyPath = (*path, *found.group(1).split("."))
    # An inlined reference is blamed where it was written, not in the referenced document.
    where = tree.references.get(full) or tree.locations.get(full)
    if where is None or where.line is None:
        return None
    return full, where, message[found.end() :]


_DOTTED_KEY = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?![\w.])")


def _mentioned_key(
    tree: Tree, path: KeyPath, where: Location, message: str
) -> tuple[KeyPath, Location] | None:
    """The first dotted key below ``path`` a check across keys names in its ``message`` that was
    written in the same file as the mapping checked (``where``), and that place; else None.

    Such a check of a whole document (an InfiniBand NIC on an Ethernet switch) failed at the
    document, "mine.yaml:1: <top level>", when the file's own line of one of the keys it names is
    the one to fix (a tester's find); a key the file inherited is not blamed on it."""
    for found in _DOTTED_KEY.finditer(message):
        full: KeyPath = (*path, *found.group(1).split("."))
        at = tree.references.get(full) or tree.locations.get(full)
        if at is not None and at.line is not None and at.source == where.source:
            return full, at
    return None


def _describe_tag(model: type[BaseModel], tree: Tree, path: KeyPath, error: ErrorDetails) -> str:
    """A tagged union's tag (``dist``, ``method``) that is unknown or missing, named at the tag's
    own key: pydantic places the error at the mapping that holds it, which would blame the file
    for a ``--set ...dist=pareto`` and name the mapping, not the key to fix."""
    ctx = error.get("ctx", {})
    tag_key = str(ctx.get("discriminator", "?")).strip("'")
    tag_path = (*path, tag_key)
    if error["type"] == "union_tag_not_found":
        # Placed at the mapping, unless the tag itself has a location (a ``--set KEY=null``).
        where = tree.location(tag_path if tag_path in tree.locations else path)
        choices = [
            str(value)
            for cls in _models_at(model, path)
            for name, info in cls.model_fields.items()
            if tag_key in (name, info.alias) and typing.get_origin(info.annotation) is typing.Literal
            for value in typing.get_args(info.annotation)
        ]
        known = f" (one of {', '.join(dict.fromkeys(choices))})" if choices else ""
        return f"{where}: {format_path(tag_path)}: missing required key {tag_key!r}{known}"
    tags = str(ctx.get("expected_tags", "")).replace("'", "")
    # The value as written (pydantic's ``tag`` is its text: ``3`` would show as ``'3'``).
    mapping = error.get("input")
    value = mapping.get(tag_key, ctx.get("tag")) if isinstance(mapping, dict) else ctx.get("tag")
    return f"{tree.location(tag_path)}: {format_path(tag_path)}: expected one of {tags}, got {value!r}"


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    value = error.get("input")
    got = f"got {type(value).__name__} {value!r}" if not isinstance(value, dict) else "got a mapping"
    if kind == "value_error":
        msg = error["msg"].removeprefix("Value error, ")
        return msg
    if kind == "assertion_error":
        return error["msg"].removeprefix("Assertion failed, ")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        ctx = error.get("ctx", {})
        bound = next(iter(ctx.values()), "?")
        sign = {
            "greater_than": ">",
            "greater_than_equal": ">=",
            "less_than": "<",
            "less_than_equal": "<=",
        }[kind]
        shown = value if not isinstance(value, str) else repr(value)
        return f"must be {sign} {bound}, got {shown}"
    expected = {
        "finite_number": "a finite number",
        "int_type": "an integer",
        "float_type": "a number",
        "string_type": "a string",
        "bool_type": "true or false",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
        "list_type": "a list",
        "literal_error": None,
    }.get(kind)
    if kind == "literal_error":
        return f"{error['msg'].lower()}, {got}"
    if expected is not None:
        return f"expected {expected}, {got}{number_hint(kind, value)}"
    return f"{error['msg']} ({got})"


def number_hint(kind: str, value: object) -> str:
    """Why a number came as text, and how to write it: without quotes where YAML then reads the
    number meant, else the spelling it reads (YAML 1.1 floats have a dot and a signed exponent:
    ``1e6`` is text). ``""`` where no spelling would do (a fraction for an integer, a float that
    underflows). Every spelling offered is checked by reading it back. ``kind``: pydantic's error
    type, ``int_type`` or ``float_type``."""
    if kind not in ("int_type", "float_type") or not isinstance(value, str):
        return ""
    want: type = int if kind == "int_type" else float
    try:
        exact = Decimal(value.strip().replace("_", ""))
    except InvalidOperation:
        return ""
    if not exact.is_finite():
        return ""
    if want is int:
        if exact != exact.to_integral_value():
            return ""  # not a whole number: no spelling of it is an integer
        spelled = str(int(exact))
    else:
        number = float(exact)
        if not math.isfinite(number) or (number == 0.0 and exact != 0):
            return ""  # beyond what a float holds
        # Python writes 1e+300 or 1000000.0; YAML 1.1 wants the dot (and the exponent's sign).
        mantissa, e, exponent = repr(number).partition("e")
        spelled = (mantissa if "." in mantissa else f"{mantissa}.0") + (f"e{exponent}" if e else "")

    def reads_as_meant(text: str) -> bool:
        try:
            read = yaml.safe_load(text)
        except yaml.YAMLError:
            return False
        if isinstance(read, bool) or not isinstance(read, (int, float)):
            return False
        if want is int and not isinstance(read, int):
            return False
        return Decimal(read) == exact if want is int else read == float(exact)

    if reads_as_meant(value):
        return " (a number in quotes is text: remove the quotes)"
    if spelled != value and reads_as_meant(spelled):
        return f" (YAML reads {value} as text: write {spelled})"
    return ""


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional/Union/Annotated/list/dict annotations."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    if origin in (list, tuple, dict):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _models_at(model: type[BaseModel], path: KeyPath) -> list[type[BaseModel]]:
    current: list[type[BaseModel]] = [model]
    for part in path:
        if isinstance(part, int):
            continue
        following: list[type[BaseModel]] = []
        for cls in current:
            for name, info in cls.model_fields.items():
                if part in (name, info.alias):
                    following += [
                        t
                        for t in _unwrap(info.annotation)
                        if isinstance(t, type) and issubclass(t, BaseModel)
                    ]
        current = following
    return current


def _variant_with(model: type[BaseModel], path: KeyPath, key: str) -> str:
    """``method: random`` for the union member at ``path`` that has ``key`` (its fixed-value fields,
    the discriminator among them), or ``""`` if none has it or none can be named so."""
    variants = []
    for cls in _models_at(model, path):
        fields = {info.alias or name: info for name, info in cls.model_fields.items()}
        if key not in fields:
            continue
        fixed = [
            f"{name}: {typing.get_args(info.annotation)[0]}"
            for name, info in fields.items()
            if typing.get_origin(info.annotation) is typing.Literal
            and len(typing.get_args(info.annotation)) == 1
        ]
        if not fixed:
            return ""
        variants.append(", ".join(fixed))
    return " or ".join(variants)


def allowed_keys(model: type[BaseModel], path: KeyPath) -> set[str]:
    """The keys the schema allows in the mapping at ``path``."""
    keys: set[str] = set()
    for cls in _models_at(model, path):
        keys.update(info.alias or name for name, info in cls.model_fields.items())
    return keys
