"""Policy fields that reach approvers: email, Teams webhooks, reminders and escalation.

An operator writes them in the policy; a mistake is refused at load with the path
and the reason, never half-applied.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway_plugin.policy import EscalationSpec, PolicyError, describe_approval, parse_policy


def reaching_policy() -> dict[str, Any]:
    return {
        "version": "1",
        "approvers": {
            "alice": {"slack_user": "U0ALICE", "email": "alice@example.com"},
            "bob": {},
            "carol": {"email": "carol@example.org"},
            "dave": {},
        },
        "approver_groups": {
            "qa-leads": {
                "members": ["alice", "bob"],
                "teams_webhook": "https://example.com/workflows/qa",
            },
            "oncall": {"members": ["carol", "dave"]},
            "managers": {"members": ["dave"]},
        },
        "tools": {
            "end_codegen_session": {
                "action": "require_approval",
                "approvers": "qa-leads",
                "timeout": "1h",
                "remind_every": "15m",
                "escalate": [{"after": "40m", "to": "managers"}, {"after": "30m", "to": "oncall"}],
            }
        },
    }


def error_of(change: Any) -> str:
    document = reaching_policy()
    change(document)
    with pytest.raises(PolicyError) as caught:
        parse_policy(document)
    return str(caught.value)


def test_an_approvers_email_and_a_groups_teams_webhook_load() -> None:
    policy = parse_policy(reaching_policy())

    assert policy.approvers["alice"].email == "alice@example.com"
    assert policy.approvers["bob"].email is None
    assert policy.groups["qa-leads"].teams_webhook == "https://example.com/workflows/qa"


def test_reminders_and_escalation_steps_compile_in_time_order() -> None:
    approval = parse_policy(reaching_policy()).evaluate("end_codegen_session", {}).approval

    assert approval is not None
    assert approval.remind_every_seconds == 900
    assert approval.escalations == (
        EscalationSpec(after_seconds=1800, group="oncall", members=("carol", "dave")),
        EscalationSpec(after_seconds=2400, group="managers", members=("dave",)),
    )
    assert "remind every 15m" in describe_approval(approval)
    assert "escalate to oncall after 30m" in describe_approval(approval)


def test_a_rule_overrides_its_entrys_reminders_and_escalation() -> None:
    document = reaching_policy()
    document["tools"]["end_codegen_session"]["rules"] = [
        {"if": {"urgent": {"eq": True}}, "action": "require_approval", "remind_every": "1m",
         "escalate": [{"after": "2m", "to": "managers"}]},
        {"action": "require_approval"},
    ]  # fmt: skip
    policy = parse_policy(document)

    urgent = policy.evaluate("end_codegen_session", {"urgent": True}).approval
    usual = policy.evaluate("end_codegen_session", {}).approval

    assert urgent is not None and usual is not None
    assert urgent.remind_every_seconds == 60
    assert [s.group for s in urgent.escalations] == ["managers"]
    assert usual.remind_every_seconds == 900
    assert [s.group for s in usual.escalations] == ["oncall", "managers"]


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.com\r\nBcc: mallory@evil.example",
        "alice@example.com\nX-Injected: yes",
        "Alice <alice@example.com>",
        "alice@example.com, mallory@evil.example",
        "not-an-address",
        "alice@",
        "a" * 250 + "@example.com",
    ],
)
def test_an_email_that_is_not_one_plain_address_is_refused(address: str) -> None:
    message = error_of(lambda d: d["approvers"]["alice"].update(email=address))

    assert "$.approvers.alice.email" in message
    assert "invalid email address" in message


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "https://", "not a url", "https://exa mple.com/x"]
)
def test_a_teams_webhook_that_is_not_an_http_url_is_refused(url: str) -> None:
    message = error_of(lambda d: d["approver_groups"]["qa-leads"].update(teams_webhook=url))

    assert "$.approver_groups.qa-leads.teams_webhook" in message


def _step(document: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = document["tools"]["end_codegen_session"]["escalate"][1]
    return step


@pytest.mark.parametrize(
    ("change", "where", "why"),
    [
        (lambda d: _step(d).update(to="nobody"), "escalate[1].to", "unknown group 'nobody'"),
        (lambda d: _step(d).update(to="qa-leads"), "escalate[1].to", "asked already"),
        (lambda d: _step(d).update(after="soon"), "escalate[1].after", "invalid duration"),
        (lambda d: _step(d).update(after="0s"), "escalate[1].after", "longer than zero"),
        (lambda d: _step(d).update(after="2h"), "escalate[1].after", "expire first"),
        (lambda d: _step(d).pop("to"), "escalate[1]", "missing"),
        (lambda d: _step(d).update(page=True), "escalate[1].page", "unknown key"),
        (
            lambda d: d["tools"]["end_codegen_session"].update(remind_every="fortnightly"),
            "remind_every",
            "invalid duration",
        ),
        (
            lambda d: d["tools"]["end_codegen_session"].update(remind_every="1h"),
            "remind_every",
            "no reminder would ever be sent",
        ),
        (
            lambda d: d["tools"]["end_codegen_session"].pop("approvers"),
            "escalate",
            "escalate needs approvers",
        ),
    ],
)
def test_a_bad_escalation_or_reminder_is_refused_with_path_and_reason(
    change: Any, where: str, why: str
) -> None:
    message = error_of(change)

    assert f"$.tools.end_codegen_session.{where}" in message
    assert why in message


def test_the_policy_without_the_new_fields_still_loads_as_before() -> None:
    document = copy.deepcopy(reaching_policy())
    entry = document["tools"]["end_codegen_session"]
    del entry["remind_every"], entry["escalate"]

    approval = parse_policy(document).evaluate("end_codegen_session", {}).approval

    assert approval is not None
    assert approval.remind_every_seconds is None
    assert approval.escalations == ()
