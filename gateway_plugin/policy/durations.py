"""Durations in policy files: `30s`, `15m`, `1h`, `2d`, `1h30m`, or a number of seconds."""

from __future__ import annotations

import math
import re

_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_HINT = "use a number of seconds or a duration like 30s, 15m, 1h, 2d, 1h30m"


def parse_duration(value: str | int | float) -> float:
    """Return the duration in seconds; raise ValueError with a readable message otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: {_HINT}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise ValueError(f"invalid duration of type {type(value).__name__}: {_HINT}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must be a finite, non-negative length")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds compactly for humans: 900 -> `15m`, 5400 -> `1h30m`, 2.5 -> `2.5s`."""
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    remaining = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _parse_text(text: str) -> float:
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"invalid duration {text!r}: {_HINT}")
    try:
        return float(stripped)
    except ValueError:
        pass
    total = 0.0
    position = 0
    for match in _PART.finditer(stripped):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(stripped) or position == 0:
        raise ValueError(f"invalid duration {text!r}: {_HINT}")
    return total
