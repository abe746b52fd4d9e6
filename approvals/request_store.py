"""Rows of requests and votes read and written with SQLAlchemy Core.

Creating a request and deciding it are the service's hot paths: every held call
pays for both. Loading and flushing ORM objects cost several times more than
the SQL itself, and on SQLite that time is spent holding the database's only
write lock. So the rules in `approvals.lifecycle` work on plain rows here:
statements are built once, rows come back as `RequestRow`s with the same
attribute names as `ApprovalRequest`, and nothing is tracked by a session.
The ORM models stay the schema and serve every path that is not hot.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Row, Table, and_, bindparam, insert, or_, select, update
from sqlalchemy.engine import Connection

from approvals.models import ApprovalRequest, Decision, RequestStatus, call_allowed

REQUESTS: Table = ApprovalRequest.__table__  # type: ignore[attr-defined]
DECISIONS: Table = Decision.__table__  # type: ignore[attr-defined]


class RequestRow(SimpleNamespace):
    """A stored request as plain attributes, named as on `ApprovalRequest`."""

    def allows_call(self) -> bool:
        """True when the suspended call may run (see `ApprovalRequest.allows_call`)."""
        return call_allowed(self.status, self.on_timeout)


_BY_ID = select(REQUESTS).where(REQUESTS.c.id == bindparam("request_id"))
_BY_IDEMPOTENCY_KEY = select(REQUESTS).where(
    REQUESTS.c.created_by == bindparam("created_by"),
    REQUESTS.c.idempotency_key == bindparam("idempotency_key"),
)
_MAY_CONTINUE = (RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.EXPIRED)
# A retry of the identical call continues one of these (see lifecycle._open_request_for).
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
_INSERT_VOTE = insert(DECISIONS)
_DECISIONS_OF = (
    select(
        DECISIONS.c.approver,
        DECISIONS.c.decision,
        DECISIONS.c.comment,
        DECISIONS.c.channel,
        DECISIONS.c.created_at,
    )
    .where(DECISIONS.c.request_id == bindparam("request_id"))
    .order_by(DECISIONS.c.id)
)


def _row(row: Row[Any] | None) -> RequestRow | None:
    return None if row is None else RequestRow(**row._mapping)


def load(conn: Connection, request_id: str) -> RequestRow | None:
    """The request with this id as stored now, or None."""
    return _row(conn.execute(_BY_ID, {"request_id": request_id}).first())


def by_idempotency_key(conn: Connection, created_by: str, key: str) -> RequestRow | None:
    """The request this caller created with this Idempotency-Key, if any."""
    params = {"created_by": created_by, "idempotency_key": key}
    return _row(conn.execute(_BY_IDEMPOTENCY_KEY, params).first())


def open_for_binding(conn: Connection, binding: str, created_by: str) -> list[RequestRow]:
    """Unclaimed pending, approved or expired requests one gateway made for one exact call,
    newest first."""
    rows = conn.execute(_OPEN_FOR_BINDING, {"binding": binding, "created_by": created_by}).all()
    return [RequestRow(**row._mapping) for row in rows]


def insert_request(conn: Connection, values: Mapping[str, Any]) -> RequestRow:
    """Insert a new request; `values` names every column. Returns it as a row."""
    conn.execute(_INSERT_REQUEST, dict(values))
    return RequestRow(**values)


def insert_vote(conn: Connection, values: Mapping[str, Any]) -> SimpleNamespace:
    """Insert a vote (IntegrityError if this approver already voted). Returns it as a row."""
    conn.execute(_INSERT_VOTE, dict(values))
    return SimpleNamespace(**values)


def void_approvals(conn: Connection, request_id: str) -> list[str]:
    """Delete the approvals given so far on a request (its arguments were changed since):
    those approvers may vote again. Returns their names. The audit log keeps the votes."""
    rows = conn.execute(
        select(DECISIONS.c.approver).where(
            DECISIONS.c.request_id == request_id, DECISIONS.c.decision == "approve"
        )
    ).all()
    if rows:
        conn.execute(
            DECISIONS.delete().where(
                DECISIONS.c.request_id == request_id, DECISIONS.c.decision == "approve"
            )
        )
    return sorted(str(row[0]) for row in rows)


def decisions_of(conn: Connection, request_id: str) -> Sequence[Any]:
    """The votes on a request, oldest first (attributes as on `Decision`)."""
    return conn.execute(_DECISIONS_OF, {"request_id": request_id}).all()


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
