"""What a notification about a request says, whatever carries it (email, Teams).

A `Notice` is taken from the request's public view when the event is routed to
the outbox, inside the transaction of the change, and stored with the outbox
row; the channel renders it when it sends, so "time left" is counted then.
Arguments are the request's stored ones (secret-looking and `redact`ed values
already masked) masked again with the policy's current `redact` list, and cut
to a size any channel carries. Everything in a notice is hostile text as far
as rendering goes: channels escape it for their format.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Engine

from approvals import escalation, lifecycle
from approvals.models import utcnow
from approvals.schemas import RequestPublic
from approvals.store import Store
from gateway_plugin.policy import Policy, format_duration, redact_arguments

log = logging.getLogger(__name__)

# Why a notice is sent: a new request (or an escalation step that asks more people),
# a reminder while pending, or the request's end.
NoticeKind = Literal["request", "escalation", "reminder", "outcome"]

MAX_VALUE_CHARS = 500
MAX_ARGUMENTS_CHARS = 4000


class Step(BaseModel):
    """An escalation step as a notice tells it."""

    model_config = ConfigDict(frozen=True)

    group: str
    members: list[str]
    at: datetime
    announced: bool


class Notice(BaseModel):
    """The facts of one notification about one request."""

    model_config = ConfigDict(frozen=True)

    kind: NoticeKind
    request_id: str
    status: str
    tool: str
    server: str
    caller: str
    reason: str | None
    # Shown arguments as indented JSON: masked, long values and long listings cut.
    arguments: str
    approver_group: str | None
    asked: list[str]
    waiting_on: list[str]
    escalations: list[Step]
    created_at: datetime
    expires_at: datetime
    on_timeout: str
    decided_by: str | None
    comment: str | None
    # The request's dashboard page: it asks for sign-in and never decides on GET.
    url: str

    def time_left(self, now: datetime | None = None) -> str:
        """'14m32s', or 'none' once past the timeout."""
        left = (self.expires_at - (now or utcnow())).total_seconds()
        return format_duration(float(int(left))) if left >= 1 else "none"

    @property
    def subject(self) -> str:
        """A one-line summary: the mail subject, the card title."""
        where = f" on {self.server}" if self.server else ""
        if self.kind == "outcome":
            return f"{self.status.capitalize()}: {self.tool}{where} for {self.caller}"
        return f"Approval needed: {self.caller} wants to run {self.tool}{where}"

    @property
    def outcome_line(self) -> str:
        """Who ended the request and how (for the outcome notice)."""
        who = self.decided_by or "system"
        if self.status == "approved":
            line = f"Approved by {who}"
        elif self.status == "rejected":
            line = f"Rejected by {who}"
        elif self.status == "expired":
            then = "allowed" if self.on_timeout == "allow" else "denied"
            return f"Expired: nobody decided in time (the call was {then})"
        else:
            return f"Cancelled by {who}: the caller went away"
        # An approver's comment (a rejection's is what the agent reads).
        return line + (f": {self.comment}" if self.comment else "")


def _shorten(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[:MAX_VALUE_CHARS] + f"… ({len(value)} chars)"
    if isinstance(value, Mapping):
        return {str(k): _shorten(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_shorten(v) for v in value]
    return value


def arguments_text(arguments: Mapping[str, Any], redact: Sequence[str] = ()) -> str:
    """The arguments as indented JSON, masked and cut (the dashboard shows them all)."""
    if not arguments:
        return "(no arguments)"
    shown = _shorten(redact_arguments(dict(arguments), redact))
    text = json.dumps(shown, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    if len(text) > MAX_ARGUMENTS_CHARS:
        text = text[:MAX_ARGUMENTS_CHARS].rstrip() + "\n… (cut; the dashboard shows them all)"
    return text


def request_url(base_url: str, request_id: str) -> str:
    """The request's page on the dashboard."""
    return f"{base_url.rstrip('/')}/requests/{request_id}"


def notice_of(
    kind: NoticeKind, request: RequestPublic, *, policy: Policy | None, base_url: str
) -> Notice:
    """The notice of `kind` about `request` as it is in the event being routed."""
    redact = policy.redact if policy is not None else ()
    return Notice(
        kind=kind,
        request_id=request.id,
        status=str(request.status),
        tool=request.tool,
        server=request.server,
        caller=request.caller,
        reason=request.reason,
        arguments=arguments_text(request.arguments, redact),
        approver_group=request.approver_group,
        asked=escalation.asked(request),
        waiting_on=escalation.waiting_on(request),
        escalations=[
            Step(group=s.group, members=s.members, at=s.at, announced=s.announced)
            for s in request.escalations
        ],
        created_at=request.created_at,
        expires_at=request.expires_at,
        on_timeout=request.on_timeout,
        decided_by=request.decided_by,
        comment=request.comment,
        url=request_url(base_url, request.id),
    )


def record_sent(
    engine: Engine, request_id: str, *, channel: str, recipients: Sequence[str]
) -> None:
    """Audit `request.notified` once a message is out (email, Teams).

    The message is already out: failing to note it must not make the outbox send it
    again, so a failure here is logged, not raised."""
    try:
        Store(engine).run_now(
            lambda scope: lifecycle.record_notification(
                scope, request_id, channel=channel, recipients=recipients
            )
        )
    except Exception:
        log.exception("%s: could not record the notification in the audit log", channel)
