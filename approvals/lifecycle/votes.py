"""An approver's vote: quorum approvals approve a request, one rejection rejects it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from approvals import request_store as store
from approvals.audit import record as audit
from approvals.db import WriteScope
from approvals.errors import BadRequest, Conflict, Forbidden, Unprocessable
from approvals.lifecycle.changes import (
    effective_hash,
    fact,
    get_request,
    queue_event,
    record_facts,
    require_pending,
    transition,
)
from approvals.lifecycle.editing import ArgumentEdit, edit_arguments
from approvals.lifecycle.eligibility import may_decide
from approvals.lifecycle.expiry import expire
from approvals.models import RequestStatus, Role, utcnow
from approvals.request_store import RequestRecord, VoteRecord
from approvals.schemas import RequestPublic
from gateway_plugin.policy import Policy


@dataclass(frozen=True)
class Decided:
    # As stored after the vote.
    request: RequestRecord
    # True when this vote settled the request (quorum reached, or a rejection).
    final: bool
    # The request as the API shows it after the vote, read in the same transaction.
    view: RequestPublic


def decide(
    session: WriteScope,
    request_id: str,
    *,
    approver: str,
    decision: str,
    comment: str | None = None,
    channel: str = "api",
    role: str = Role.APPROVER,
    arguments: dict[str, Any] | None = None,
    seen_hash: str | None = None,
    policy: Policy | None = None,
    now: datetime | None = None,
) -> Decided:
    """Record an approver's vote; quorum approvals approve, one rejection rejects.

    With `arguments` the approver changed the call before approving it (see `edit_arguments`;
    `policy` is the service's, which the changed call must still fall under). With
    `seen_hash` the vote counts only if the arguments that would run still hash to it:
    nobody changed them since the approver looked."""
    if decision not in ("approve", "reject"):
        raise BadRequest("decision must be 'approve' or 'reject'", code="invalid_decision")
    if arguments is not None and decision != "approve":
        raise Unprocessable(
            "arguments may be changed only with an approval", code="edit_needs_approve"
        )
    now = now or utcnow()
    request = get_request(session, request_id)
    if request.status == RequestStatus.PENDING and request.expires_at <= now:
        request = expire(session, request, now)
        session.commit()
    require_pending(request)
    refusal = may_decide(request, approver, role, now)
    if refusal is not None:
        raise Forbidden(refusal, code="not_allowed_to_decide")
    if seen_hash is not None and seen_hash != effective_hash(request):
        raise Conflict(
            f"the arguments of request {request.id} were changed by {request.edited_by} "
            "since you looked; reload it and decide again",
            code="arguments_changed",
        )
    edit: ArgumentEdit | None = None
    if arguments is not None:
        edit = edit_arguments(session, request, arguments, approver=approver, policy=policy)
    vote = VoteRecord(approver, decision, comment, channel, created_at=now)
    try:
        store.insert_vote(session.connection(), request.id, vote)
    except IntegrityError:  # the table allows one vote per approver and request
        session.rollback()
        raise Conflict(
            f"{approver} has already voted on request {request.id}", code="duplicate_vote"
        ) from None
    earlier_votes = 0 if edit is not None else request.approvals_count
    approvals = earlier_votes + (1 if decision == "approve" else 0)
    final = decision == "reject" or approvals >= request.quorum
    changes: dict[str, object] = {"approvals_count": approvals}
    if edit is not None:
        changes.update(
            approved_arguments=edit.arguments,
            approved_arguments_hash=edit.arguments_hash,
            edited_by=approver,
        )
    if final:
        changes.update(
            status=RequestStatus.APPROVED if decision == "approve" else RequestStatus.REJECTED,
            decided_at=now,
            decided_by=approver,
            decision_comment=comment,
            decision_channel=channel,
        )
    request = transition(session, request, **changes)
    # Votes before this one were approvals (a rejection settles the request), so
    # with none counted this vote is the only one and need not be read back.
    view = queue_event(session, "request.decided", request, None if earlier_votes else [vote])
    facts = []
    if edit is not None:
        facts.append(edit.draft(request, approver=approver, channel=channel, now=now))
    facts.append(
        fact(
            audit.DECISION_RECORDED,
            request,
            actor=approver,
            channel=channel,
            now=now,
            outcome=decision,
            comment=comment,
        )
    )
    if final and decision == "approve" and request.quorum > 1:
        facts.append(
            fact(
                audit.QUORUM_REACHED,
                request,
                actor="system",
                channel=channel,
                now=now,
                outcome="approved",
                comment=f"{approvals} of {request.quorum} approvals",
            )
        )
    if final:
        settled = "approved" if decision == "approve" else "rejected"
        facts.append(
            fact(
                audit.REQUEST_APPROVED if settled == "approved" else audit.REQUEST_REJECTED,
                request,
                actor=approver,
                channel=channel,
                now=now,
                outcome=settled,
                comment=comment,
            )
        )
    record_facts(session, *facts)
    session.commit()
    return Decided(request, final, view)
