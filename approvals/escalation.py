"""Reminders and escalation of pending requests, driven by the sweeper.

A require_approval rule may say `remind_every` (notify the approvers again while
the request is pending) and `escalate: [{"after", "to"}]` (that long after
creation with no decision, the group `to` may decide too and is notified). The
request keeps both from the policy when it is made, like its approvers.

Who may decide when is `lifecycle.may_decide`'s business alone: it looks at the
clock, so an escalation group's member may decide from the step's time on even
if no sweeper has run yet. What the sweeper adds is the announcement, once per
step and per reminder across replicas: the audit event (request.reminded,
request.escalated) and the hub event that the outbox routes to email, Teams and
webhooks, in the same transaction.

An escalation is a state change (the request's version moves, so cards are
redrawn); a reminder is not: it only moves `next_reminder_at` with a
compare-and-set of its own, so it never makes a concurrent vote fail.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, select, update
from sqlmodel import Session

from approvals import errors
from approvals import request_store as store
from approvals.audit import record as audit
from approvals.lifecycle.changes import fact, queue_event, record_facts, transition
from approvals.models import RequestStatus, utcnow
from approvals.request_store import REQUESTS, RequestRecord
from approvals.schemas import RequestPublic

_MOVE_REMINDER = (
    update(REQUESTS)
    .where(
        and_(
            REQUESTS.c.id == bindparam("request_id"),
            REQUESTS.c.status == RequestStatus.PENDING,
            REQUESTS.c.next_reminder_at == bindparam("was"),
        )
    )
    .values(next_reminder_at=bindparam("next"))
)


def _due(session: Session, column: str, now: datetime, batch: int) -> list[str]:
    table_column = REQUESTS.c[column]
    rows = session.connection().execute(
        select(REQUESTS.c.id)
        .where(
            REQUESTS.c.status == RequestStatus.PENDING,
            table_column.is_not(None),
            table_column <= now,
            REQUESTS.c.expires_at > now,
        )
        .order_by(table_column)
        .limit(batch)
    )
    return [row.id for row in rows]


def _next_reminder(request: RequestRecord, now: datetime) -> datetime | None:
    """The reminder after this one, or None when the request expires first."""
    if request.remind_every_seconds is None or request.next_reminder_at is None:
        return None
    every = timedelta(seconds=request.remind_every_seconds)
    following = request.next_reminder_at + every
    # A sweeper that was down does not send the missed reminders in a burst.
    if following <= now:
        following = now + every
    return following if following < request.expires_at else None


def remind_due(session: Session, *, now: datetime | None = None, batch: int = 200) -> list[str]:
    """Remind the approvers of pending requests whose reminder is due; returns their ids."""
    now = now or utcnow()
    reminded: list[str] = []
    for request_id in _due(session, "next_reminder_at", now, batch):
        request = store.load(session.connection(), request_id)
        # Read again: another sweeper may have sent this reminder since the query above,
        # and the compare-and-set below would then match its new (future) time.
        if request is None or request.next_reminder_at is None or request.next_reminder_at > now:
            continue
        moved = session.connection().execute(
            _MOVE_REMINDER,
            {
                "request_id": request.id,
                "was": request.next_reminder_at,
                "next": _next_reminder(request, now),
            },
        )
        if moved.rowcount != 1:
            continue  # another replica reminded, or the request was decided meanwhile
        view = queue_event(session, "request.reminded", request)
        waiting = waiting_on(view)
        record_facts(
            session,
            fact(
                audit.REQUEST_REMINDED,
                request,
                actor="system",
                channel="sweeper",
                now=now,
                outcome="pending",
                comment="still waiting on " + (", ".join(waiting) or "any approver"),
            ),
        )
        session.commit()
        reminded.append(request.id)
    return reminded


def escalate_due(session: Session, *, now: datetime | None = None, batch: int = 200) -> list[str]:
    """Announce every escalation step whose time has come; returns the requests' ids."""
    now = now or utcnow()
    escalated: list[str] = []
    for request_id in _due(session, "next_escalation_at", now, batch):
        request = store.load(session.connection(), request_id)
        if request is None or request.status != RequestStatus.PENDING:
            continue
        steps = list(request.escalations or ())
        start = request.escalated
        # Every step already due is announced now (a sweeper may have been down).
        done = start
        while done < len(steps) and _step_time(request, done) <= now:
            done += 1
        if done == start:
            continue
        try:
            # One transition and one event per step, so each event's view shows the step
            # it announces as the last announced one (the notifiers ask its group).
            for index in range(start, done):
                following = _step_time(request, index + 1) if index + 1 < len(steps) else None
                request = transition(
                    session, request, escalated=index + 1, next_escalation_at=following
                )
                queue_event(session, "request.escalated", request)
        except errors.Conflict:
            continue  # decided or escalated elsewhere meanwhile (rolled back)
        record_facts(
            session,
            *(
                fact(
                    audit.REQUEST_ESCALATED,
                    request,
                    actor="system",
                    channel="sweeper",
                    now=now,
                    outcome="escalated",
                    comment=f"escalated to {step['group']} ("
                    + ", ".join(step["members"])
                    + ") after "
                    + f"{step['after_seconds']:g} s with no decision",
                )
                for step in steps[start:done]
            ),
        )
        session.commit()
        escalated.append(request.id)
    return escalated


def _step_time(request: RequestRecord, index: int) -> datetime:
    seconds = request.escalations[index]["after_seconds"]
    at: datetime = request.created_at + timedelta(seconds=seconds)
    return at


def asked(request: RequestPublic) -> list[str]:
    """Who has been asked about `request`, by name: its approvers, then the members of
    the escalation steps announced so far; never the caller. (Who may *decide* is
    `lifecycle.may_decide`, on the stored request; this is who gets notified.)"""
    names = list(request.approvers)
    for step in request.escalations:
        if step.announced:
            names += [m for m in step.members if m not in names]
    return [name for name in names if name != request.caller]


def newly_asked(request: RequestPublic) -> tuple[str | None, list[str]]:
    """For a request.escalated event: the group of the step it announces (the last one
    announced) and its members who had not been asked before."""
    announced = [step for step in request.escalations if step.announced]
    if not announced:
        return None, []
    step = announced[-1]
    before = set(request.approvers)
    for earlier in announced[:-1]:
        before.update(earlier.members)
    return step.group, [m for m in step.members if m not in before and m != request.caller]


def waiting_on(request: RequestPublic) -> list[str]:
    """The people asked who have not voted yet: a reminder is for them."""
    voted = {vote.approver for vote in request.decisions}
    return [name for name in asked(request) if name not in voted]
