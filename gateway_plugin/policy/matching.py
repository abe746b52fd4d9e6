"""Tool keys: exact names, fnmatch-style globs and `server/tool` forms, and their precedence.

Most specific wins: exact `server/tool`, then exact `tool`, then globs ordered
by their number of literal (non-wildcard) characters, longest first; on a tie
a server-qualified glob beats an unqualified one, then file order decides. A
key containing `/` is server-qualified (split at the first `/`) and only ever
matches calls that name their server. Matching is case-sensitive.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

_WILDCARDS = frozenset("*?[")


def is_glob(text: str) -> bool:
    """Whether `text` contains an fnmatch wildcard."""
    return any(char in _WILDCARDS for char in text)


def literal_count(pattern: str) -> int:
    """Characters of `pattern` that must match literally (fnmatch's `[...]` parsing mirrored)."""
    count = 0
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        i += 1
        if char in "*?":
            continue
        if char == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                count += 1  # an unclosed bracket is a literal '['
            else:
                i = j + 1
            continue
        count += 1
    return count


@dataclass(frozen=True, slots=True)
class KeyPattern:
    """One key of `tools` (or one entry of `hide`), parsed."""

    key: str
    order: int
    server: str | None
    tool: str
    glob: bool
    literals: int
    server_re: re.Pattern[str] | None
    tool_re: re.Pattern[str] | None

    @property
    def kind(self) -> str:
        """Human description of the key's form, used in traces."""
        if not self.glob:
            return "exact server/tool name" if self.server is not None else "exact tool name"
        form = "server/tool glob" if self.server is not None else "glob"
        return f"{form}, {self.literals} literal characters"

    def matches(self, server: str | None, tool: str) -> bool:
        """Whether this key applies to `tool` on `server`."""
        if self.server is not None:
            if server is None:
                return False
            if self.server_re is None:
                if server != self.server:
                    return False
            elif self.server_re.match(server) is None:
                return False
        if self.tool_re is None:
            return tool == self.tool
        return self.tool_re.match(tool) is not None

    def precedence(self) -> tuple[int, int, int, int]:
        """Sort key: smaller is more specific."""
        if not self.glob:
            return (0 if self.server is not None else 1, 0, 0, self.order)
        return (2, -self.literals, 0 if self.server is not None else 1, self.order)


def _compile(part: str) -> re.Pattern[str] | None:
    return re.compile(fnmatch.translate(part)) if is_glob(part) else None


def parse_key(key: str, order: int) -> KeyPattern:
    """Parse a key; ValueError if a `server/tool` key lacks either side."""
    server: str | None = None
    tool = key
    if "/" in key:
        server, tool = key.split("/", 1)
        if not server or not tool:
            raise ValueError(f"invalid key {key!r}: a server/tool key needs both names")
    glob = is_glob(key)
    literals = literal_count(tool) + (literal_count(server) if server is not None else 0)
    return KeyPattern(
        key=key,
        order=order,
        server=server,
        tool=tool,
        glob=glob,
        literals=literals,
        server_re=_compile(server) if server is not None else None,
        tool_re=_compile(tool),
    )


class KeyIndex:
    """Finds the most specific key for a call: dict look-ups for exact keys, ordered globs."""

    __slots__ = ("_exact", "_exact_server", "_globs", "patterns")

    def __init__(self, keys: Sequence[str]) -> None:
        self.patterns: tuple[KeyPattern, ...] = tuple(
            parse_key(key, order) for order, key in enumerate(keys)
        )
        self._exact: dict[str, KeyPattern] = {}
        self._exact_server: dict[tuple[str, str], KeyPattern] = {}
        globs: list[KeyPattern] = []
        for pattern in self.patterns:
            if pattern.glob:
                globs.append(pattern)
            elif pattern.server is not None:
                self._exact_server[(pattern.server, pattern.tool)] = pattern
            else:
                self._exact[pattern.tool] = pattern
        self._globs = tuple(sorted(globs, key=KeyPattern.precedence))

    def best(self, server: str | None, tool: str) -> KeyPattern | None:
        """The winning key, or None when no key applies."""
        if server is not None:
            found = self._exact_server.get((server, tool))
            if found is not None:
                return found
        found = self._exact.get(tool)
        if found is not None:
            return found
        for pattern in self._globs:
            if pattern.matches(server, tool):
                return pattern
        return None

    def all_matching(self, server: str | None, tool: str) -> list[KeyPattern]:
        """Every key that applies, most specific first (for explanations)."""
        matching = [p for p in self.patterns if p.matches(server, tool)]
        return sorted(matching, key=KeyPattern.precedence)
