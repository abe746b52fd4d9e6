"""A pending request past its timeout ends as expired, and its on_timeout applies."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from approvals import request_store as store
from approvals.audit import record as audit
from approvals.db import WriteScope
from approvals.errors import Conflict
from approvals.lifecycle.changes import fact, queue_event, record_facts, transition
from approvals.models import RequestStatus, utcnow
from approvals.request_store import REQUESTS, RequestRecord


def expire(session: WriteScope, request: RequestRecord, now: datetime) -> RequestRecord:
    """End `request` as expired (the caller commits); returns it as now stored."""
    outcome = "allowed" if request.on_timeout == "allow" else "denied"
    request = transition(
        session,
        request,
        status=RequestStatus.EXPIRED,
        decided_at=now,
        decided_by="system",
        decision_comment=f"no decision before the timeout; {outcome} per on_timeout",
        decision_channel="sweeper",
    )
    queue_event(session, "request.expired", request)
    record_facts(
        session,
        fact(
            audit.REQUEST_EXPIRED,
            request,
            actor="system",
            channel="sweeper",
            now=now,
            outcome=outcome,
            comment=request.decision_comment,
        ),
    )
    return request


def expire_due(session: Session, *, now: datetime | None = None, batch: int = 200) -> list[str]:
    """Expire pending requests past their timeout, applying on_timeout; returns their ids."""
    now = now or utcnow()
    due = store.records(
        session.connection(),
        select(REQUESTS)
        .where(REQUESTS.c.status == RequestStatus.PENDING, REQUESTS.c.expires_at <= now)
        .limit(batch),
    )
    expired: list[str] = []
    for request in due:
        # Each compare-and-sets on the version read above: one decided or expired since
        # (another replica's sweeper, a vote) is a Conflict and left alone.
        try:
            expire(session, request, now)
            session.commit()
        except Conflict:
            continue
        expired.append(request.id)
    return expired
