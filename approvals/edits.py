"""Arguments an approver changed before approving: the checks they must pass.

Edited arguments are hostile input like any other: bounded in size and depth, a
JSON object, and never a way to smuggle a secret into the database or to reach a
call the policy puts under other terms (approvals/lifecycle `decide` checks
those against the service's policy). Secret-looking and `redact`ed values are
masked (`***`) wherever people see a request; an approver cannot see them, so
may not set them either: a masked key keeps `***` (the gateway then runs the
agent's own value) or is left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from approvals.errors import TooLarge, Unprocessable
from gateway_plugin.policy import MASK, canonical_json

# Far above any real tool call's arguments, far below the 1 MiB body limit.
MAX_EDIT_BYTES = 64 * 1024
MAX_EDIT_DEPTH = 32

Path = tuple[str | int, ...]


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value, without recursion (the input is hostile)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest


def check_shape(arguments: Any) -> None:
    """Refuse edited arguments that are not a bounded JSON object."""
    if not isinstance(arguments, dict):
        raise Unprocessable("edited arguments must be a JSON object", code="invalid_arguments")
    if _depth(arguments) > MAX_EDIT_DEPTH:
        raise Unprocessable(
            f"edited arguments may nest at most {MAX_EDIT_DEPTH} levels deep",
            code="arguments_too_deep",
        )
    try:
        size = len(canonical_json(arguments).encode("utf-8"))
    except (TypeError, ValueError, UnicodeEncodeError):
        raise Unprocessable(
            "edited arguments must be valid JSON text", code="invalid_arguments"
        ) from None
    if size > MAX_EDIT_BYTES:
        raise TooLarge(
            f"edited arguments are {size} bytes as JSON; at most {MAX_EDIT_BYTES} are taken",
            code="arguments_too_large",
        )


def parse_object(text: str | None) -> dict[str, Any]:
    """Edited arguments typed as JSON text (dashboard, Slack): bounded before parsing."""
    if not text or not text.strip():
        raise Unprocessable("the edited arguments are empty", code="invalid_arguments")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_EDIT_BYTES:
        raise TooLarge(
            f"the edited arguments are over {MAX_EDIT_BYTES} bytes", code="arguments_too_large"
        )
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise Unprocessable(
            "the edited arguments are not valid JSON", code="invalid_arguments"
        ) from None
    if not isinstance(value, dict):
        raise Unprocessable("the edited arguments must be a JSON object", code="invalid_arguments")
    check_shape(value)
    return value


def mask_paths(value: Any, path: Path = ()) -> Iterator[Path]:
    """The paths in `value` that hold the mask."""
    stack: list[tuple[Any, Path]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, Mapping):
            stack.extend((child, (*where, str(key))) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, (*where, index)) for index, child in enumerate(item))
        elif item == MASK:
            yield where


def check_masks(
    edited: Mapping[str, Any], shown: Mapping[str, Any], original: Mapping[str, Any]
) -> None:
    """`shown` is `edited` as the policy masks it, `original` the request's stored arguments.

    Every masked key must keep the mask, and only where the original call had a masked
    value at the same place."""
    if shown != edited:
        raise Unprocessable(
            "a masked (secret or redacted) value cannot be set by an approver: keep it as "
            f"{MASK!r} to run the caller's own value, or leave the key out",
            code="masked_value_edited",
        )
    allowed = set(mask_paths(original))
    stray = [p for p in mask_paths(edited) if p not in allowed]
    if stray:
        where = ".".join(str(part) for part in stray[0]) or "(top level)"
        raise Unprocessable(
            f"{MASK!r} at {where} stands for no masked value of the original call",
            code="masked_value_edited",
        )


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Top-level keys added, removed or given another value, sorted."""
    keys = set(before) | set(after)
    return sorted(
        k
        for k in keys
        if k not in before
        or k not in after
        or json.dumps(before[k], sort_keys=True) != json.dumps(after[k], sort_keys=True)
    )
