"""Requests and votes as stored: frozen records, read and written with SQLAlchemy Core.

Creating a request and deciding it are the service's hot paths: every held call
pays for both. Loading and flushing ORM objects cost several times more than
the SQL itself, and on SQLite that time is spent holding the database's only
write lock. So every channel works on `RequestRecord`s read here: statements are
built once, nothing is tracked by a session, and a change is a new record
(approvals.lifecycle's compare-and-set). The ORM models stay the schema.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Executable, Row, Table, and_, bindparam, insert, or_, select, update
from sqlalchemy.engine import Connection

from approvals.models import ApprovalRequest, RequestStatus, Vote

REQUESTS: Table = ApprovalRequest.__table__  # type: ignore[attr-defined]
VOTES: Table = Vote.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RequestRecord:
    """A stored request, named as the columns of `ApprovalRequest` (see it for meanings)."""

    id: str
    status: str
    tool: str
    server: str
    caller: str
    session_id: str | None
    arguments: dict[str, Any]
    arguments_hash: str
    binding_hash: str
    policy_key: str | None
    reason: str | None
    approver_group: str | None
    approvers: list[str]
    quorum: int
    approvals_count: int
    on_timeout: str
    created_by: str
    idempotency_key: str | None
    created_at: datetime
    expires_at: datetime
    editable: bool
    preview: dict[str, Any] | None
    escalations: list[dict[str, Any]]
    next_escalation_at: datetime | None
    remind_every_seconds: float | None
    next_reminder_at: datetime | None
    # Filled in by what happens to the request after it is made.
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_comment: str | None = None
    decision_channel: str | None = None
    claimed_at: datetime | None = None
    outcome_is_error: bool | None = None
    outcome_summary: str | None = None
    outcome_at: datetime | None = None
    approved_arguments: dict[str, Any] | None = None
    approved_arguments_hash: str | None = None
    edited_by: str | None = None
    version: int = 0
    escalated: int = 0

    @classmethod
    def of(cls, columns: Mapping[Any, Any]) -> RequestRecord:
        """The record of a row that holds every column. Not through `__init__`: a frozen
        dataclass's sets its 40 fields one `object.__setattr__` at a time, ten times the
        cost of a dict update on the hot paths (load, create, every state change)."""
        record = object.__new__(cls)
        record.__dict__.update(columns)
        return record

    def changed(self, changes: Mapping[str, object]) -> RequestRecord:
        """This record with `changes` applied (see `compare_and_set`)."""
        return RequestRecord.of({**self.__dict__, **changes})

    def allows_call(self) -> bool:
        """True when the suspended call may run: approved, or timed out with on_timeout allow."""
        return self.status == RequestStatus.APPROVED or (
            self.status == RequestStatus.EXPIRED and self.on_timeout == "allow"
        )


@dataclass(frozen=True, slots=True)
class VoteRecord:
    """One approver's vote as the public view shows it."""

    approver: str
    decision: str
    comment: str | None
    channel: str
    created_at: datetime


_BY_ID = select(REQUESTS).where(REQUESTS.c.id == bindparam("request_id"))
_BY_IDEMPOTENCY_KEY = select(REQUESTS).where(
    REQUESTS.c.created_by == bindparam("created_by"),
    REQUESTS.c.idempotency_key == bindparam("idempotency_key"),
)
_MAY_CONTINUE = (RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.EXPIRED)
# A retry of the identical call continues one of these (see lifecycle.creation).
_OPEN_FOR_BINDING = (
    select(REQUESTS)
    .where(
        REQUESTS.c.binding_hash == bindparam("binding"),
        REQUESTS.c.created_by == bindparam("created_by"),
        REQUESTS.c.claimed_at.is_(None),
        # Not `in_()`: its expanding parameter is re-rendered on every execution.
        or_(*(REQUESTS.c.status == s for s in _MAY_CONTINUE)),
    )
    .order_by(REQUESTS.c.created_at.desc())
)
_INSERT_REQUEST = insert(REQUESTS)
_INSERT_VOTE = insert(VOTES)
_VOTES_OF = (
    select(
        VOTES.c.approver,
        VOTES.c.decision,
        VOTES.c.comment,
        VOTES.c.channel,
        VOTES.c.created_at,
    )
    .where(VOTES.c.request_id == bindparam("request_id"))
    .order_by(VOTES.c.id)
)


def _row(row: Row[Any] | None) -> RequestRecord | None:
    return None if row is None else RequestRecord.of(row._mapping)


def records(conn: Connection, query: Executable) -> list[RequestRecord]:
    """The requests a query of `REQUESTS` (or of `ApprovalRequest`) finds, in its order."""
    return [RequestRecord.of(row._mapping) for row in conn.execute(query)]


def load(conn: Connection, request_id: str) -> RequestRecord | None:
    """The request with this id as stored now, or None."""
    return _row(conn.execute(_BY_ID, {"request_id": request_id}).first())


def by_idempotency_key(conn: Connection, created_by: str, key: str) -> RequestRecord | None:
    """The request this caller created with this Idempotency-Key, if any."""
    params = {"created_by": created_by, "idempotency_key": key}
    return _row(conn.execute(_BY_IDEMPOTENCY_KEY, params).first())


def open_for_binding(conn: Connection, binding: str, created_by: str) -> list[RequestRecord]:
    """Unclaimed pending, approved or expired requests one gateway made for one exact call,
    newest first."""
    rows = conn.execute(_OPEN_FOR_BINDING, {"binding": binding, "created_by": created_by}).all()
    return [RequestRecord.of(row._mapping) for row in rows]


def insert_request(conn: Connection, request: RequestRecord) -> None:
    """Insert a new request."""
    conn.execute(_INSERT_REQUEST, dict(request.__dict__))


def insert_vote(conn: Connection, request_id: str, vote: VoteRecord) -> None:
    """Insert a vote (IntegrityError if this approver already voted)."""
    conn.execute(
        _INSERT_VOTE,
        {
            "request_id": request_id,
            "approver": vote.approver,
            "decision": vote.decision,
            "comment": vote.comment,
            "channel": vote.channel,
            "created_at": vote.created_at,
        },
    )


def void_approvals(conn: Connection, request_id: str) -> list[str]:
    """Delete the approvals given so far on a request (its arguments were changed since):
    those approvers may vote again. Returns their names. The audit log keeps the votes."""
    rows = conn.execute(
        select(VOTES.c.approver).where(
            VOTES.c.request_id == request_id, VOTES.c.decision == "approve"
        )
    ).all()
    if rows:
        conn.execute(
            VOTES.delete().where(VOTES.c.request_id == request_id, VOTES.c.decision == "approve")
        )
    return sorted(str(row[0]) for row in rows)


def votes_of(conn: Connection, request_id: str) -> list[VoteRecord]:
    """The votes on a request, oldest first."""
    rows = conn.execute(_VOTES_OF, {"request_id": request_id})
    return [VoteRecord(**row._mapping) for row in rows]


@functools.cache
def _compare_and_set(columns: tuple[str, ...]) -> Any:
    """The UPDATE for one set of changed columns, built once per set."""
    return (
        update(REQUESTS)
        .where(
            and_(
                REQUESTS.c.id == bindparam("cas_id"),
                REQUESTS.c.version == bindparam("cas_version"),
            )
        )
        .values(version=bindparam("cas_next"), **{c: bindparam(f"set_{c}") for c in columns})
    )


def compare_and_set(
    conn: Connection, request_id: str, version: int, changes: Mapping[str, object]
) -> bool:
    """Apply `changes` (and bump `version`) only if the row is still at `version`."""
    params: dict[str, object] = {f"set_{column}": value for column, value in changes.items()}
    params.update(cas_id=request_id, cas_version=version, cas_next=version + 1)
    result = conn.execute(_compare_and_set(tuple(changes)), params)
    return bool(result.rowcount == 1)
