"""Reading one request and changing it: the steps every rule of the lifecycle is made of.

A change is a compare-and-set on `version` that hands back a new record, so exactly
one writer wins a race; its event is queued for after the commit and its audit
facts join the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from approvals import request_store as store
from approvals.audit import record as audit
from approvals.db import WriteScope
from approvals.errors import Conflict, NotFound
from approvals.live_events import LiveEvent, emit
from approvals.models import RequestStatus
from approvals.request_store import RequestRecord, VoteRecord
from approvals.schemas import RequestPublic, printable


def public(
    session: WriteScope, request: RequestRecord, votes: Sequence[VoteRecord] | None = None
) -> RequestPublic:
    """The public view of `request` with its votes (read unless the caller knows them)."""
    if votes is None:
        votes = store.votes_of(session.connection(), request.id)
    return RequestPublic.build(request, votes)


def readable(session: WriteScope, request: RequestRecord) -> RequestPublic:
    """The public view for readers (API reads, dashboard, Slack): never fails on one bad row."""
    return printable(public(session, request))


def queue_event(
    session: WriteScope,
    event_type: str,
    request: RequestRecord,
    votes: Sequence[VoteRecord] | None = None,
) -> RequestPublic:
    """Queue the event for after the commit; the public view it carries is returned."""
    view = public(session, request, votes)
    emit(session, LiveEvent(type=event_type, request_id=request.id, request=view))
    return view


def fact(
    event_type: str,
    request: RequestRecord,
    *,
    actor: str,
    channel: str,
    now: datetime,
    outcome: str | None = None,
    comment: str | None = None,
    with_arguments: bool = False,
    arguments: dict[str, Any] | None = None,
    arguments_hash: str | None = None,
) -> audit.AuditEventDraft:
    """An audit event about `request` (see approvals/audit/record.py for the types)."""
    edited = request.approved_arguments_hash
    return audit.AuditEventDraft(
        type=event_type,
        actor=actor,
        channel=channel,
        request_id=request.id,
        tool=request.tool,
        server=request.server,
        caller=request.caller,
        outcome=outcome,
        comment=comment,
        arguments=arguments
        if arguments is not None
        else (request.arguments if with_arguments else None),
        policy_key=request.policy_key,
        time=now,
        # Every fact about an edited request names both the call asked and the call approved.
        arguments_hash=arguments_hash or (request.arguments_hash if edited else None),
        approved_arguments_hash=edited,
    )


def record_facts(session: WriteScope, *facts: audit.AuditEventDraft) -> None:
    """Append audit events to this transaction; every caller commits right after."""
    audit.append_rows(session, facts)


def get_request(session: WriteScope | Session, request_id: str) -> RequestRecord:
    """The request with this id as stored now, or NotFound."""
    request = store.load(session.connection(), request_id)
    if request is None:
        raise NotFound(f"no request with id {request_id!r}")
    return request


def transition(session: WriteScope, request: RequestRecord, **changes: object) -> RequestRecord:
    """Compare-and-set: apply `changes` only if nobody changed the request since we read it.

    Returns the request as now stored, at its new version."""
    if not store.compare_and_set(session.connection(), request.id, request.version, changes):
        session.rollback()
        raise Conflict("the request was changed by someone else at the same time; reload it")
    return request.changed({**changes, "version": request.version + 1})


def require_pending(request: RequestRecord) -> None:
    if request.status != RequestStatus.PENDING:
        who = f" by {request.decided_by}" if request.decided_by else ""
        raise Conflict(
            f"request {request.id} is already {request.status}{who}", code="already_decided"
        )


def require_gateway(request: RequestRecord, gateway: str) -> None:
    """Only the gateway that created a request may wait on, claim or report on it; to any
    other token it does not exist."""
    if request.created_by != gateway:
        raise NotFound(f"no request with id {request.id!r}")


def usable(request: RequestRecord, now: datetime) -> bool:
    """An approval (or an on_timeout allow) may be used for one timeout period after it was
    given: a call retried days later asks again."""
    if request.decided_at is None:
        return False
    return now < request.decided_at + (request.expires_at - request.created_at)


def effective_hash(request: RequestRecord) -> str:
    """The hash of the arguments the call would run with: the approved ones once edited."""
    return request.approved_arguments_hash or request.arguments_hash
