"""Masking argument values for display and audit, and the canonical hash that binds approvals."""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

MASK = "***"

# Compared after lower-casing and dropping `_` and `-`, so `API-Key` and `api_key` both hit.
_SECRET_WORDS: tuple[str, ...] = (
    "password",
    "passwd",
    "token",
    "secret",
    "apikey",
    "authorization",
    "cookie",
    "privatekey",
    "credential",
)


def looks_secret(key: str) -> bool:
    """Whether an argument key names something that is always masked (password, token, ...)."""
    normalized = key.lower().replace("_", "").replace("-", "")
    return any(word in normalized for word in _SECRET_WORDS)


@lru_cache(maxsize=256)
def _matcher(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    alternatives = "|".join(f"(?:{fnmatch.translate(p.lower())})" for p in patterns)
    return re.compile(alternatives)


def redacted_key(key: str, patterns: Sequence[str] = ()) -> bool:
    """Whether the value under `key` is masked, by the glob `patterns` or by looking secret."""
    matcher = _matcher(tuple(patterns))
    if matcher is not None and matcher.match(key.lower()) is not None:
        return True
    return looks_secret(key)


def redact_arguments(arguments: Any, patterns: Sequence[str] = ()) -> Any:
    """A deep copy with the values of redacted keys (globs or secret-looking) replaced by `***`.

    Globs match keys at any depth, case-insensitively; dicts and lists are walked.
    """
    matcher = _matcher(tuple(patterns))

    def masked(key: str) -> bool:
        if matcher is not None and matcher.match(key.lower()) is not None:
            return True
        return looks_secret(key)

    def walk(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: MASK if masked(str(key)) else walk(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [walk(item) for item in value]
        if value is None or isinstance(value, str | int | float | bool):
            return value
        return copy.deepcopy(value)

    return walk(arguments)


def canonical_json(arguments: Mapping[str, Any] | None) -> str:
    """The canonical JSON text of a call's arguments (None is the empty object)."""
    return json.dumps(
        {} if arguments is None else arguments,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def canonical_arguments_hash(arguments: Mapping[str, Any] | None) -> str:
    """SHA-256 hex digest of the canonical JSON of the arguments; binds an approval to a call."""
    return hashlib.sha256(canonical_json(arguments).encode("utf-8")).hexdigest()
