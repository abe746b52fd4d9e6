"""Reading policy files (JSON or YAML) and turning every failure into a `PolicyError`."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from gateway_plugin.policy.compiler import compile_policy
from gateway_plugin.policy.engine import Policy
from gateway_plugin.policy.errors import PolicyError, describe_value, json_path
from gateway_plugin.policy.schema import PolicyFileModel

_YAML_SUFFIXES = (".yaml", ".yml")


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read, validate and compile a policy file (.json, .yaml/.yml; otherwise JSON, then YAML)."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(source, "$", f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(source, "$", f"the file is not UTF-8 text: {exc.reason}") from None
    suffix = Path(source).suffix.lower()
    if suffix == ".json":
        data = parse_json_text(text, source)
    elif suffix in _YAML_SUFFIXES:
        data = parse_yaml_text(text, source)
    else:
        try:
            data = parse_json_text(text, source)
        except PolicyError as json_error:
            if text.lstrip()[:1] in ("{", "["):
                raise json_error from None
            data = parse_yaml_text(text, source)
    return parse_policy(data, source)


def parse_policy(data: Mapping[str, Any], source: str = "<string>") -> Policy:
    """Validate and compile an already-parsed policy document."""
    if not isinstance(data, Mapping):
        raise PolicyError(
            source, "$", f"expected an object at the top level, got {describe_value(data)}"
        )
    document = _plain(data)
    try:
        model = PolicyFileModel.model_validate(document)
    except ValidationError as exc:
        location, reason = explain_validation_error(exc.errors()[0])
        raise PolicyError(source, location, reason) from None
    return compile_policy(model, source, document)


def parse_json_text(text: str, source: str = "<string>") -> Any:
    """Parse JSON, refusing duplicate keys; errors carry line and column."""
    duplicates: list[tuple[dict[str, Any], str]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                duplicates.append((result, key))
            result[key] = value
        return result

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise PolicyError(source, where, f"invalid JSON: {exc.msg}") from None
    if duplicates:
        holder, key = duplicates[0]
        found = _find(data, holder, ())
        raise PolicyError(
            source,
            json_path((*(found or ()), key)),
            f"duplicate key {key!r}; each key may appear once",
        )
    if data is None:
        raise PolicyError(source, "$", "the policy is empty")
    return data


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys, which PyYAML would silently overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key if isinstance(key, str) else id(key_node))
        return super().construct_mapping(node, deep=deep)


def parse_yaml_text(text: str, source: str = "<string>") -> Any:
    """Parse YAML safely, refusing duplicate keys; errors carry line and column."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "$"
        problem = exc.problem or exc.context or "unparsable"
        raise PolicyError(source, where, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(source, "$", f"invalid YAML: {exc}") from None
    if data is None:
        raise PolicyError(source, "$", "the policy is empty")
    return data


def _find(node: Any, target: object, path: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    """The path from `node` down to the object `target` (identity), if it is there."""
    if node is target:
        return path
    children: list[tuple[str | int, Any]] = []
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    for key, value in children:
        found = _find(value, target, (*path, key))
        if found is not None:
            return found
    return None


def _plain(value: Any) -> Any:
    """Plain dicts and lists, as the strict models expect (callers may pass any Mapping)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "a list",
    "tuple_type": "a list",
}


def explain_validation_error(error: ErrorDetails) -> tuple[str, str]:
    """The JSON path and a human reason for one pydantic error."""
    loc: list[str | int] = list(error["loc"])
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    if loc and loc[-1] == "[key]":
        loc.pop()
        if kind == "string_type":
            return json_path(loc[:-1]), f"keys must be strings, got {describe_value(loc[-1])}"
        reason = str(ctx["error"]) if "error" in ctx else error["msg"]
        return json_path(loc), reason if reason.startswith("invalid") else f"key {reason}"
    if kind == "unknown_key":
        key = str(ctx["key"])
        allowed: list[str] = ctx["allowed"]
        reason = f"unknown {ctx['noun']} {key!r}"
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            reason += f" (did you mean {close[0]!r}?)"
        reason += f"; allowed: {', '.join(allowed)}"
        return json_path([*loc, key]), reason
    if kind == "key_error":
        return json_path([*loc, ctx["key"]]), str(ctx["reason"])
    if kind == "missing":
        return json_path(loc), f"missing required key {loc[-1]!r}"
    if kind in _TYPE_NAMES:
        return json_path(loc), f"expected {_TYPE_NAMES[kind]}, got {describe_value(value)}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return json_path(loc), f"invalid value {value!r}; allowed: {expected}"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        sign = ">=" if kind == "greater_than_equal" else ">"
        return json_path(loc), f"must be {sign} {bound}, got {describe_value(value)}"
    if kind == "too_short":
        return json_path(loc), "must not be empty"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return json_path(loc), str(ctx["error"])
    return json_path(loc), error["msg"]
