"""Durations in policy files and where they end up."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_plugin.policy import parse_duration, parse_policy


def policy_with(**sections: Any) -> dict[str, Any]:
    return {"version": "1", **sections}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1h30m", 5400.0),
        ("90", 90.0),
        (45, 45.0),
        (2.5, 2.5),
        ("500ms", 0.5),
        ("1h 30m", 5400.0),
    ],
)
def test_durations_parse_to_seconds(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15 minutes", "m", "1x", "-5", "1h-3m", "inf", True])
def test_nonsense_durations_are_refused(text: str | bool) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_entry_durations_reach_the_approval_spec() -> None:
    policy = parse_policy(
        policy_with(
            tools={
                "t": {
                    "action": "require_approval",
                    "timeout": "1h30m",
                    "hold": "20s",
                    "on_timeout": "allow",
                }
            }
        )
    )

    approval = policy.evaluate("t", {}).approval

    assert approval is not None
    assert approval.timeout_seconds == 5400.0
    assert approval.hold_seconds == 20.0
    assert approval.on_timeout == "allow"
    assert approval.approvers == ()
