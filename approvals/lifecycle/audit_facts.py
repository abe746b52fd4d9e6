"""Facts the audit log keeps that change no request: notifications sent, and calls a
gateway settled without an approver."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from approvals.audit import record as audit
from approvals.audit.models import AuditEvent
from approvals.audit.schemas import GatewayFact
from approvals.db import WriteScope
from approvals.lifecycle.changes import get_request
from approvals.models import utcnow
from gateway_plugin.policy import redact_arguments


def record_notification(
    session: WriteScope,
    request_id: str,
    *,
    channel: str,
    recipients: Sequence[str],
    by: str = "system",
    now: datetime | None = None,
) -> AuditEvent:
    """Record that approvers were notified of a request (e.g. a Slack message was posted).

    Call it once the notification went out; `recipients` are approver names,
    user ids or a channel, as the notifier knows them.
    """
    now = now or utcnow()
    request = get_request(session, request_id)
    event = audit.record_event(
        session,
        audit.REQUEST_NOTIFIED,
        actor=by,
        channel=channel,
        request_id=request.id,
        tool=request.tool,
        server=request.server,
        caller=request.caller,
        outcome="sent",
        comment="notified " + (", ".join(recipients) or "nobody"),
        policy_key=request.policy_key,
        time=now,
    )
    session.commit()
    return event


_GATEWAY_OUTCOMES = {
    audit.POLICY_DENIED: "denied",
    audit.POLICY_RATE_LIMITED: "rate_limited",
    audit.CALL_ALLOWED: "allowed",
    audit.CALL_CONFIRMED: "confirmed",
    audit.CALL_DECLINED: "declined",
}


def record_gateway_facts(
    session: WriteScope,
    facts: Sequence[GatewayFact],
    *,
    gateway: str,
    now: datetime | None = None,
) -> list[AuditEvent]:
    """Record calls a gateway settled without an approver (denied, rate limited, allowed, or
    confirmed / declined by the person at the client)."""
    now = now or utcnow()
    drafts = []
    for fact in facts:
        at = fact.at or now
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        drafts.append(
            audit.AuditEventDraft(
                type=fact.type,
                actor=gateway,
                channel="gateway",
                tool=fact.tool,
                server=fact.server,
                caller=fact.caller or gateway,
                outcome=fact.outcome or _GATEWAY_OUTCOMES[fact.type],
                comment=fact.comment,
                # Masked again here, as for requests: secrets never reach the database.
                arguments=redact_arguments(fact.arguments),
                policy_key=fact.policy_key,
                # A gateway's clock may run ahead; the log never records the future.
                time=min(at, now),
                arguments_hash=fact.arguments_hash,
            )
        )
    events = audit.append_events(session, drafts)
    session.commit()
    return events
