"""A sealed requestState comes back only as it was issued, for its call, once, in time."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway_plugin.resume_state import InvalidResumeState, StateSeal

CALL: dict[str, Any] = {
    "tool": "deploy",
    "server": "",
    "caller": "ci-bot",
    "arguments_hash": "ab" * 32,
}


def issue(seal: StateSeal, **changes: Any) -> str:
    terms = {**CALL, "request_id": "r1", "expires": time.time() + 60, **changes}
    return seal.issue("held", **terms)


def test_a_state_is_good_once_for_its_own_call() -> None:
    seal = StateSeal("gateway-token-1")
    token = issue(seal)
    state = seal.redeem(token, kind="held", **CALL)
    assert (state.request_id, state.caller, state.prompted) == ("r1", "ci-bot", False)
    with pytest.raises(InvalidResumeState, match="already used"):
        seal.redeem(token, kind="held", **CALL)


@pytest.mark.parametrize(
    "field, value",
    [
        ("tool", "drop_db"),
        ("server", "other"),
        ("caller", "mallory"),
        ("arguments_hash", "cd" * 32),
    ],
)
def test_a_state_for_another_call_or_caller_is_refused(field: str, value: str) -> None:
    seal = StateSeal("gateway-token-1")
    with pytest.raises(InvalidResumeState, match="another call"):
        seal.redeem(issue(seal), kind="held", **{**CALL, field: value})


def test_altered_foreign_expired_and_mistyped_states_are_refused() -> None:
    seal = StateSeal("gateway-token-1")
    token = issue(seal)
    payload, _, signature = token.rpartition(".")
    tampered = payload + "." + signature[::-1]
    other_gateway = issue(StateSeal("gateway-token-2"))
    expired = issue(seal, expires=time.time() - 1)
    for bad in (tampered, other_gateway, "", "x" * 5000, 42, None, payload):
        with pytest.raises(InvalidResumeState):
            seal.redeem(bad, kind="held", **CALL)
    with pytest.raises(InvalidResumeState, match="expired"):
        seal.redeem(expired, kind="held", **CALL)
    with pytest.raises(InvalidResumeState, match="confirm round"):
        seal.redeem(token, kind="confirm", **CALL)
    # None of that spent the genuine state.
    assert seal.redeem(token, kind="held", **CALL).request_id == "r1"
