"""The one exception the policy engine raises for a bad policy, and JSON-path formatting."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


class PolicyError(Exception):
    """An invalid policy: where it is (`source`, `location`) and what is wrong (`reason`)."""

    def __init__(self, source: str, location: str, reason: str) -> None:
        super().__init__(f"{source}: {location}: {reason}")
        self.source = source
        self.location = location
        self.reason = reason

    def __reduce__(self) -> tuple[type[PolicyError], tuple[str, str, str]]:
        # Exception pickling replays `args`, which here is the joined message only.
        return (PolicyError, (self.source, self.location, self.reason))


def json_path(parts: Iterable[str | int]) -> str:
    """Render a location like `$.tools["playwright_*"].limits[0].window`."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _PLAIN_KEY.match(part):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out)


def describe_value(value: object) -> str:
    """Name a parsed JSON/YAML value the way a policy author thinks of it, e.g. `number 5`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"string {shown!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__
