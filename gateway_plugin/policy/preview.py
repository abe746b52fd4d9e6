"""Preview calls: a read-only call a rule names, whose output approvers see next to the call.

A rule's `preview` names a tool and its arguments; `{path}` placeholders take
values from the held call's arguments (`{sessionId}`, `{options.outputPath}`).
A string that is exactly one placeholder takes the value with its JSON type;
a placeholder inside a longer string is replaced by the value's text.

The preview's text is for display only: it is capped, masked like arguments, and
never part of what an approval is bound to (the arguments hash).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from gateway_plugin.policy.redaction import MASK, redact_arguments, redacted_key

# What approvers read is at most this much UTF-8, plus the truncation mark.
PREVIEW_TEXT_MAX_BYTES = 64 * 1024
PREVIEW_ERROR_MAX_CHARS = 2000
DEFAULT_PREVIEW_TIMEOUT_SECONDS = 5.0
MAX_PREVIEW_TIMEOUT_SECONDS = 30.0
# Shorter secrets are not searched for in a preview's text: masking every "a" or
# "42" would shred the text and protect nothing.
_MIN_SECRET_CHARS = 4

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*)\}")


class PreviewTemplateError(ValueError):
    """The held call lacks a value a placeholder names."""


def _lookup(arguments: Mapping[str, Any], path: str) -> Any:
    value: Any = arguments
    for segment in path.split("."):
        if isinstance(value, Mapping) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            raise PreviewTemplateError(f"the call has no argument {path!r} for the preview")
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def fill(template: Any, arguments: Mapping[str, Any]) -> Any:
    """The preview's arguments with every placeholder replaced from the call's `arguments`."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole is not None:
            return _lookup(arguments, whole.group(1))
        return _PLACEHOLDER.sub(lambda m: _as_text(_lookup(arguments, m.group(1))), template)
    if isinstance(template, Mapping):
        return {key: fill(value, arguments) for key, value in template.items()}
    if isinstance(template, list | tuple):
        return [fill(value, arguments) for value in template]
    return template


def cap_text(text: str, limit: int = PREVIEW_TEXT_MAX_BYTES) -> str:
    """`text` cut to `limit` bytes of UTF-8 (on a character boundary) with a visible mark."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", "ignore")
    more = len(data) - len(kept.encode("utf-8"))
    return f"{kept}\n… [preview truncated: {more} more bytes]"


def _secret_values(arguments: Any, patterns: Sequence[str], inside: bool = False) -> Iterator[str]:
    """The text of every value the arguments' masking hides."""
    if isinstance(arguments, Mapping):
        for key, value in arguments.items():
            yield from _secret_values(value, patterns, inside or redacted_key(str(key), patterns))
    elif isinstance(arguments, list | tuple):
        for value in arguments:
            yield from _secret_values(value, patterns, inside)
    elif inside and arguments is not None and not isinstance(arguments, bool):
        text = str(arguments)
        if len(text) >= _MIN_SECRET_CHARS:
            yield text


def mask_text(text: str, arguments: Mapping[str, Any], patterns: Sequence[str] = ()) -> str:
    """A preview's text as approvers may see it.

    JSON output has its secret-looking and `redact`ed keys masked as arguments are;
    and any value the call's own masking hides (a token the preview echoes back) is
    replaced wherever it appears."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            pass
        else:
            text = json.dumps(redact_arguments(parsed, patterns), indent=2, ensure_ascii=False)
    for secret in sorted(set(_secret_values(arguments, patterns)), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
