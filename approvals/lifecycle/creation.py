"""A held call becomes a pending request, or continues the one already open for it.

A gateway retrying the identical call (or resending an Idempotency-Key) gets the
request it made before instead of a second one, as long as that request still
stands on the policy's current terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from approvals import request_store as store
from approvals.audit import record as audit
from approvals.db import WriteScope
from approvals.errors import Conflict
from approvals.lifecycle.changes import fact, public, queue_event, record_facts, usable
from approvals.lifecycle.expiry import expire
from approvals.lifecycle.terms import (
    ApprovalTerms,
    approval_terms,
    binding_hash,
    new_request_id,
    same_terms,
    shown_preview,
)
from approvals.models import RequestStatus, utcnow
from approvals.request_store import RequestRecord
from approvals.schemas import RequestCreate, RequestPublic
from gateway_plugin.policy import Policy


@dataclass(frozen=True)
class Created:
    # As stored after the call: a new row, or the request that was reused.
    request: RequestRecord
    # False when an identical open request (or the same Idempotency-Key) was reused.
    created: bool
    # The request as the API shows it, read in the same transaction.
    view: RequestPublic


def create_request(
    session: WriteScope,
    data: RequestCreate,
    *,
    policy: Policy | None,
    created_by: str,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> Created:
    """Queue a suspended call on the terms of the service's `policy`, or attach to the open
    request the same gateway made for the identical call."""
    now = now or utcnow()
    terms = approval_terms(policy, data)
    binding = binding_hash(data.caller, data.server, data.tool, terms.arguments_hash)
    if idempotency_key is not None:
        existing = store.by_idempotency_key(session.connection(), created_by, idempotency_key)
        if existing is not None:
            if existing.binding_hash != binding:
                raise Conflict(
                    "Idempotency-Key was already used for a different call",
                    code="idempotency_conflict",
                )
            return Created(existing, created=False, view=public(session, existing))

    open_request = _open_request_for(session, binding, created_by, terms, now)
    if open_request is not None:
        return Created(open_request, created=False, view=public(session, open_request))

    remind = terms.remind_every_seconds
    first_step = terms.escalations[0]["after_seconds"] if terms.escalations else None
    request = RequestRecord(
        id=new_request_id(),
        status=RequestStatus.PENDING,
        tool=data.tool,
        server=data.server,
        caller=data.caller,
        session_id=data.session_id,
        arguments=terms.shown_arguments,
        arguments_hash=terms.arguments_hash,
        binding_hash=binding,
        policy_key=terms.policy_key,
        reason=terms.reason,
        approver_group=terms.approver_group,
        approvers=terms.approvers,
        quorum=terms.quorum,
        approvals_count=0,
        on_timeout=terms.on_timeout,
        editable=terms.editable,
        created_by=created_by,
        idempotency_key=idempotency_key,
        created_at=now,
        expires_at=now + timedelta(seconds=terms.timeout_seconds),
        preview=shown_preview(data, terms),
        escalations=list(terms.escalations),
        remind_every_seconds=remind,
        next_reminder_at=None if remind is None else now + timedelta(seconds=remind),
        next_escalation_at=None if first_step is None else now + timedelta(seconds=first_step),
    )
    try:
        # Not kept from the start: a commit above (an expiry) releases it.
        store.insert_request(session.connection(), request)
    except IntegrityError:
        # A concurrent retry with the same Idempotency-Key won; hand back its request.
        session.rollback()
        return create_request(
            session,
            data,
            policy=policy,
            created_by=created_by,
            idempotency_key=idempotency_key,
            now=now,
        )
    view = queue_event(session, "request.created", request, votes=[])
    record_facts(
        session,
        fact(
            audit.REQUEST_CREATED,
            request,
            actor=created_by,
            channel="gateway",
            now=now,
            outcome="pending",
            comment=request.reason,
            with_arguments=True,
        ),
    )
    session.commit()
    return Created(request, created=True, view=view)


def _open_request_for(
    session: WriteScope, binding: str, gateway: str, terms: ApprovalTerms, now: datetime
) -> RequestRecord | None:
    """The request a retry of the identical call through the same gateway should continue.

    Another gateway's request never counts: a token cannot queue a call for someone
    else's gateway to attach to. Nor does one made on other terms (the policy changed
    since: who approved then may not be who the policy names now), nor an approval
    past its use-by time (`usable`)."""
    for request in store.open_for_binding(session.connection(), binding, gateway):
        if request.status == RequestStatus.PENDING and request.expires_at <= now:
            try:
                request = expire(session, request, now)
                session.commit()
            except Conflict:  # decided or expired elsewhere meanwhile: take it as it is now
                fresh = store.load(session.connection(), request.id)
                if fresh is None:
                    continue
                request = fresh
        if not same_terms(request, terms):
            continue
        if request.status == RequestStatus.PENDING:
            return request
        if request.allows_call() and usable(request, now):
            return request
    return None
