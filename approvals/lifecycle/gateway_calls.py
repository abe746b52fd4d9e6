"""What the gateway that made a request does with it: withdraw it, use its approval once,
and report how the call went. No other token may (to any other, it does not exist)."""

from __future__ import annotations

from datetime import datetime

from approvals.audit import record as audit
from approvals.db import WriteScope
from approvals.errors import Conflict
from approvals.lifecycle.changes import (
    fact,
    get_request,
    queue_event,
    record_facts,
    require_gateway,
    require_pending,
    transition,
    usable,
)
from approvals.models import RequestStatus, utcnow
from approvals.request_store import RequestRecord


def cancel(
    session: WriteScope,
    request_id: str,
    *,
    by: str,
    admin: bool = False,
    by_caller: bool = False,
    now: datetime | None = None,
) -> RequestRecord:
    """The agent went away: a pending request ends as cancelled (by its gateway, or an admin).

    `by_caller`: the creating gateway says the agent withdrew the call itself (MCP
    tasks/cancel); the request's caller is then the actor."""
    now = now or utcnow()
    request = get_request(session, request_id)
    if not admin or by_caller:
        require_gateway(request, by)
    require_pending(request)
    actor = request.caller if by_caller else by
    request = transition(
        session,
        request,
        status=RequestStatus.CANCELLED,
        decided_at=now,
        decided_by=actor,
        decision_comment=(
            "the caller withdrew the call" if by_caller else "the caller cancelled the call"
        ),
        decision_channel="gateway",
    )
    queue_event(session, "request.cancelled", request)
    record_facts(
        session,
        fact(
            audit.REQUEST_CANCELLED,
            request,
            actor=actor,
            channel="gateway",
            now=now,
            outcome="cancelled",
            comment=request.decision_comment,
        ),
    )
    session.commit()
    return request


def claim(
    session: WriteScope, request_id: str, *, by: str, now: datetime | None = None
) -> RequestRecord:
    """Use an approval for its one execution; a second claim is refused. `by`: the gateway
    that created the request (no other may)."""
    now = now or utcnow()
    request = get_request(session, request_id)
    require_gateway(request, by)
    if not request.allows_call():
        raise Conflict(
            f"request {request.id} is {request.status}; the call may not run", code="not_approved"
        )
    if request.claimed_at is not None:
        raise Conflict(
            f"the approval of request {request.id} was already used", code="already_claimed"
        )
    if not usable(request, now):
        raise Conflict(
            f"the approval of request {request.id} is too old to use; call again to ask anew",
            code="approval_stale",
        )
    request = transition(session, request, claimed_at=now)
    edited = (
        f"arguments edited by {request.edited_by}; "
        f"approved_arguments_hash={request.approved_arguments_hash}"
        if request.approved_arguments is not None
        else None
    )
    record_facts(
        session,
        fact(
            audit.CALL_FORWARDED,
            request,
            actor=by,
            channel="gateway",
            now=now,
            outcome="forwarded",
            comment=edited,
            with_arguments=True,
            arguments=request.approved_arguments,
        ),
    )
    session.commit()
    return request


def record_outcome(
    session: WriteScope,
    request_id: str,
    *,
    is_error: bool,
    summary: str | None,
    by: str,
    now: datetime | None = None,
) -> RequestRecord:
    """Store what happened when the approved call ran (`by`: the gateway that created the
    request and ran it; no other may)."""
    now = now or utcnow()
    request = get_request(session, request_id)
    require_gateway(request, by)
    if request.claimed_at is None:
        raise Conflict(f"request {request.id} has not been run", code="not_claimed")
    if request.outcome_at is not None:
        raise Conflict(
            f"the outcome of request {request.id} is already recorded", code="outcome_recorded"
        )
    request = transition(
        session, request, outcome_is_error=is_error, outcome_summary=summary, outcome_at=now
    )
    record_facts(
        session,
        fact(
            audit.CALL_FAILED if is_error else audit.CALL_SUCCEEDED,
            request,
            actor=by,
            channel="gateway",
            now=now,
            outcome="error" if is_error else "ok",
            comment=summary,
        ),
    )
    session.commit()
    return request
