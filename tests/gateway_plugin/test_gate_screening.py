"""The gate's shortcut for calls it forwards untouched, as the stdio fast path uses it."""

from __future__ import annotations

from typing import Any

from gateway_plugin.extension import SignoffExtension
from gateway_plugin.gate import ApprovalGate
from gateway_plugin.policy import parse_policy
from gateway_plugin.verdict import Allow, Deny


def gate_for(policy: dict[str, Any], **options: Any) -> ApprovalGate:
    # Screening never reaches the service, so none is needed.
    return ApprovalGate(parse_policy(policy), None, **options)  # type: ignore[arg-type]


ALLOW_ALL = {"version": "1", "default": "allow", "tools": {}}


def test_a_plain_allow_is_forwarded_without_screening_each_call() -> None:
    gate = gate_for(ALLOW_ALL)
    assert gate.allows_outright("echo")
    assert SignoffExtension(gate).screen_tool_call("echo", {"x": 1}, "s") == Allow()


def test_rules_limits_and_auditing_each_need_the_full_screen() -> None:
    policy = {
        "version": "1",
        "default": "allow",
        "tools": {
            "write_file": {
                "action": "allow",
                "rules": [{"if": {"path": {"glob": "/etc/*"}}, "action": "deny"}],
            },
            "search": {"limits": [{"counter": "c", "window": "minute", "max": 1}]},
            "audited": {"action": "allow", "audit": True},
        },
    }
    gate = gate_for(policy)
    assert not gate.allows_outright("write_file")
    assert not gate.allows_outright("search")
    assert not gate.allows_outright("audited")
    assert gate.allows_outright("anything_else")
    assert not gate_for(ALLOW_ALL, audit_allowed=True).allows_outright("echo")

    extension = SignoffExtension(gate)
    assert isinstance(extension.screen_tool_call("write_file", {"path": "/etc/passwd"}, "s"), Deny)
    assert extension.screen_tool_call("search", {}, "s") == Allow()
    assert isinstance(extension.screen_tool_call("search", {}, "s"), Deny)  # over the limit


def test_a_reloaded_policy_is_asked_again() -> None:
    # The gate asks its feed on every call, as hosts that reload the policy rely on.
    current = [parse_policy(ALLOW_ALL)]
    gate = ApprovalGate(lambda: current[0], None)  # type: ignore[arg-type]
    assert gate.allows_outright("echo")
    current[0] = parse_policy({"version": "1", "default": "deny", "tools": {}})
    assert not gate.allows_outright("echo")
    assert isinstance(SignoffExtension(gate).screen_tool_call("echo", {}, "s"), Deny)
