"""Rule conditions: argument paths and the operators tested on them, compiled once at load.

A path that is missing from the arguments fails every operator except
`exists: false`, `ne` and `not_in`: a missing value is not equal to anything,
so "not equal" and "not in" hold for it. Comparisons never coerce types: `gt`
compares numbers with numbers and strings with strings, `eq: 1` does not match
`true`, and `matches`/`glob` only match strings. Paths are dotted (`a.b.0.c`);
a digit segment indexes a list or names an object key, and an argument key
that itself contains a dot cannot be addressed.
"""

from __future__ import annotations

import fnmatch
import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway_plugin.policy.schema import ConditionModel


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()

Check = Callable[[Any], bool]
Segment = tuple[str, int | None]


def compile_path(path: str) -> tuple[Segment, ...]:
    """Split `a.b.0.c` into segments; digit segments also index lists."""
    return tuple((part, int(part) if part.isdigit() else None) for part in path.split("."))


def resolve_path(arguments: Any, segments: Sequence[Segment]) -> Any:
    """The value at a compiled path, or MISSING."""
    current = arguments
    for key, index in segments:
        if isinstance(current, Mapping):
            current = current.get(key, MISSING)
            if current is MISSING:
                return MISSING
        elif index is not None and isinstance(current, list | tuple):
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def json_equal(left: Any, right: Any) -> bool:
    """Equality as JSON sees it: booleans are not numbers, 1 == 1.0, containers compared deeply."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, list | tuple | Mapping) or isinstance(right, list | tuple | Mapping):
        return False
    return bool(left == right)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _eq(expected: Any) -> Check:
    if isinstance(expected, str):
        return lambda value: type(value) is str and value == expected
    if expected is None or isinstance(expected, bool):
        return lambda value: value is expected
    return lambda value: value is not MISSING and json_equal(value, expected)


def _in(options: list[Any]) -> Check:
    if all(type(option) is str for option in options):
        strings = frozenset(options)
        return lambda value: type(value) is str and value in strings
    return lambda value: value is not MISSING and any(json_equal(value, o) for o in options)


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _compare(op: str, expected: int | float | str) -> Check:
    compare = _COMPARISONS[op]
    if isinstance(expected, str):
        return lambda value: type(value) is str and compare(value, expected)
    return lambda value: _is_number(value) and compare(value, expected)


def _make_check(op: str, expected: Any) -> Check:
    if op == "eq":
        return _eq(expected)
    if op == "ne":
        equal = _eq(expected)
        return lambda value: not equal(value)
    if op == "in":
        return _in(expected)
    if op == "not_in":
        inside = _in(expected)
        return lambda value: not inside(value)
    if op == "matches":
        search = re.compile(expected).search
        return lambda value: type(value) is str and search(value) is not None
    if op == "glob":
        match = re.compile(fnmatch.translate(expected)).match
        return lambda value: type(value) is str and match(value) is not None
    if op in _COMPARISONS:
        return _compare(op, expected)
    if op == "exists":
        wanted = bool(expected)
        return lambda value: (value is not MISSING) is wanted
    raise ValueError(f"unknown operator {op!r}")


@dataclass(frozen=True, slots=True)
class OperatorCheck:
    """One operator with its expected value, compiled to a predicate on the resolved value."""

    op: str
    expected: Any
    check: Check

    def describe(self) -> str:
        """Human form such as `matches "^https?://"`."""
        return f"{self.op} {json.dumps(self.expected, ensure_ascii=False, default=str)}"


@dataclass(frozen=True, slots=True)
class Condition:
    """All operators written for one argument path."""

    path: str
    segments: tuple[Segment, ...]
    checks: tuple[OperatorCheck, ...]

    def test(self, arguments: Any) -> bool:
        """Whether every operator holds for the value at this path."""
        value = resolve_path(arguments, self.segments)
        # An explicit loop: all() with a generator costs more on this hot path.
        for item in self.checks:  # noqa: SIM110
            if not item.check(value):
                return False
        return True

    def describe(self) -> str:
        """Human form such as `url matches "^https?://"`."""
        return " and ".join(f"{self.path} {item.describe()}" for item in self.checks)

    def explain(self, arguments: Any, *, mask: Callable[[str], bool]) -> tuple[bool, str]:
        """Test and say why, showing the value found (masked when its key looks secret)."""
        value = resolve_path(arguments, self.segments)
        for item in self.checks:
            if not item.check(value):
                return False, f"{self.path} {item.describe()} is false ({_show(value, self, mask)})"
        return True, f"{self.describe()} is true ({_show(value, self, mask)})"


def _show(value: Any, condition: Condition, mask: Callable[[str], bool]) -> str:
    if value is MISSING:
        return "argument missing"
    if mask(condition.segments[-1][0]):
        return "value ***"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return "value " + (text if len(text) <= 80 else text[:77] + "...")


def compile_conditions(conditions: Mapping[str, ConditionModel] | None) -> tuple[Condition, ...]:
    """Compile a rule's `if` block; None (no `if`) compiles to no conditions, which always hold."""
    if not conditions:
        return ()
    return tuple(
        Condition(
            path=path,
            segments=compile_path(path),
            checks=tuple(
                OperatorCheck(op=op, expected=expected, check=_make_check(op, expected))
                for op, expected in model.operators()
            ),
        )
        for path, model in conditions.items()
    )
