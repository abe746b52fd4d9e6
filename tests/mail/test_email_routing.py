"""Which emails an event causes (the router runs inside the change's transaction)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mail_support import MAIL_POLICY

from approvals.live_events import LiveEvent
from approvals.mail.channel import EmailPayload, EmailRouter
from approvals.schemas import RequestPublic
from approvals.settings import Settings
from gateway_plugin.policy import Policy, parse_policy

NOW = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
POLICY = parse_policy(MAIL_POLICY)
SETTINGS = Settings(
    smtp_url="smtp://127.0.0.1:2525", smtp_from="Signoff <signoff@corp.local>",
    public_url="https://signoff.corp.local",
)  # fmt: skip


def view(**overrides: Any) -> RequestPublic:
    fields: dict[str, Any] = {
        "id": "3f2a9c0d1e7b4a55", "status": "pending", "allowed": False,
        "tool": "end_codegen_session", "server": "remind", "caller": "agent-7", "gateway": "gw",
        "session_id": None, "arguments": {"api_key": "sk-1"}, "arguments_hash": "0" * 64,
        "policy_key": None, "reason": "r", "approver_group": "qa-leads",
        "approvers": ["agent-7", "alice", "bob", "dave"], "quorum": 1, "approvals": 0,
        "on_timeout": "deny", "created_at": NOW, "expires_at": NOW + timedelta(minutes=1),
        "decided_at": None, "decided_by": None, "comment": None, "channel": None,
        "claimed_at": None, "outcome": None, "decisions": [],
        "escalations": [{"group": "oncall", "members": ["carol", "alice"], "after_seconds": 2.0,
                         "at": NOW + timedelta(seconds=2), "announced": False}],
    }  # fmt: skip
    fields.update(overrides)
    return RequestPublic.model_validate(fields)


def routed(event_type: str, request: RequestPublic, policy: Any = POLICY) -> list[EmailPayload]:
    router = EmailRouter(SETTINGS, lambda: policy)
    notifications = router(LiveEvent(type=event_type, request_id=request.id, request=request))
    payloads = [n.payload for n in notifications]
    assert all(isinstance(p, EmailPayload) for p in payloads)
    assert [n.target for n in notifications] == [p.address for p in payloads]  # type: ignore[attr-defined]
    return payloads  # type: ignore[return-value]


def test_a_new_request_mails_each_approver_with_an_address_but_never_the_caller() -> None:
    payloads = routed("request.created", view())

    assert [(p.approver, p.address) for p in payloads] == [
        ("alice", "alice@example.com"),
        ("bob", "bob@example.com"),
    ]
    assert all(p.thread_root is None for p in payloads)
    assert payloads[0].message_id != payloads[1].message_id
    assert payloads[0].notice.url == "https://signoff.corp.local/requests/3f2a9c0d1e7b4a55"
    assert "sk-1" not in payloads[0].notice.arguments


def test_a_reminder_replies_to_each_waiting_persons_first_message() -> None:
    [first] = [p for p in routed("request.created", view()) if p.approver == "bob"]
    voted = {"approver": "alice", "decision": "approve", "comment": None, "channel": "api",
             "created_at": NOW}  # fmt: skip

    [reminder] = routed("request.reminded", view(decisions=[voted], quorum=2))

    assert reminder.approver == "bob" and reminder.thread_root == first.message_id
    assert reminder.message_id != first.message_id
    assert reminder.notice.kind == "reminder" and reminder.notice.waiting_on == ["bob", "dave"]


def test_an_escalation_mails_only_the_people_it_adds() -> None:
    step = view().escalations[0].model_dump() | {"announced": True}

    payloads = routed("request.escalated", view(escalations=[step]))

    # Alice is in oncall too but was asked already: one first message per person.
    assert [(p.approver, p.notice.kind) for p in payloads] == [("carol", "escalation")]


@pytest.mark.parametrize("event_type", ["request.decided", "request.expired", "request.cancelled"])
def test_endings_send_no_mail(event_type: str) -> None:
    assert routed(event_type, view(status="approved")) == []


def test_without_smtp_nothing_is_enqueued_and_a_broken_policy_costs_only_the_mail() -> None:
    quiet = EmailRouter(Settings(), lambda: POLICY)
    assert quiet(LiveEvent(type="request.created", request_id="x", request=view())) == []

    def broken() -> Policy:
        raise RuntimeError("policy store unavailable")

    router = EmailRouter(SETTINGS, broken)
    assert router(LiveEvent(type="request.created", request_id="x", request=view())) == []
