"""Read-side queries: listing and searching requests newest first with an opaque cursor."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Text, and_, cast, func, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from approvals import request_store as store
from approvals.errors import BadRequest
from approvals.models import ApprovalRequest, RequestStatus
from approvals.request_store import RequestRecord


def _encode_cursor(request: RequestRecord) -> str:
    raw = json.dumps([request.created_at.isoformat(), request.id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position a cursor names; anything but a cursor this module made is a 400."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_text, rid = json.loads(base64.urlsafe_b64decode(padded))
        # The query binds both values, and the driver would fail on a naive or
        # out-of-range time, a lone surrogate or a NUL: a 500 instead of this 400.
        if not isinstance(rid, str) or "\x00" in rid:
            raise ValueError("the id is not a request id")
        rid.encode()
        created = datetime.fromisoformat(created_text)
        if created.tzinfo is None:
            raise ValueError("the time has no time zone")
        return created.astimezone(UTC), rid
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise BadRequest("cursor is not valid", code="invalid_cursor") from exc


def search_clause(q: str) -> ColumnElement[bool]:
    """Requests whose tool, caller or arguments text contains `q` (any case).

    Arguments are searched as stored, so masked values (`***`) never match what they
    hide: a search cannot be used to guess a secret. They are stored as JSON, where
    quotes, backslashes and non-ASCII characters are escaped; both forms are tried."""
    escaped = json.dumps(q)[1:-1]
    arguments = cast(col(ApprovalRequest.arguments), Text)
    options = [
        col(ApprovalRequest.tool).icontains(q, autoescape=True),
        col(ApprovalRequest.caller).icontains(q, autoescape=True),
        arguments.icontains(q, autoescape=True),
    ]
    if escaped != q:
        options.append(arguments.icontains(escaped, autoescape=True))
    return or_(*options)


def _conditions(status: str | None, tool: str | None, q: str | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if status is not None:
        if status not in {s.value for s in RequestStatus}:
            allowed = ", ".join(s.value for s in RequestStatus)
            raise BadRequest(f"status must be one of {allowed}", code="invalid_status")
        conditions.append(col(ApprovalRequest.status) == status)
    if tool is not None:
        conditions.append(col(ApprovalRequest.tool) == tool)
    if q:
        conditions.append(search_clause(q))
    return conditions


def list_requests(
    session: Session,
    *,
    status: str | None = None,
    tool: str | None = None,
    q: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[RequestRecord], str | None]:
    """Requests newest first, filtered, with the cursor of the next page (None on the last)."""
    query = select(ApprovalRequest).where(*_conditions(status, tool, q))
    return page_newest_first(session, query, limit=limit, cursor=cursor)


def count_requests(session: Session, *, status: str | None = None, q: str | None = None) -> int:
    """How many requests `list_requests` would page through with these filters."""
    query = select(func.count()).select_from(ApprovalRequest).where(*_conditions(status, None, q))
    return int(session.exec(query).one())


def matches(session: Session, request_id: str, q: str) -> bool:
    """Whether the request with this id is one a search for `q` finds."""
    query = select(ApprovalRequest.id).where(
        col(ApprovalRequest.id) == request_id, search_clause(q)
    )
    return session.exec(query).first() is not None


def page_newest_first(
    session: Session,
    query: SelectOfScalar[ApprovalRequest],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[RequestRecord], str | None]:
    """One page of `query` newest first, and the cursor of the next page (None on the last)."""
    if cursor is not None:
        created, rid = _decode_cursor(cursor)
        query = query.where(
            or_(
                col(ApprovalRequest.created_at) < created,
                and_(col(ApprovalRequest.created_at) == created, col(ApprovalRequest.id) < rid),
            )
        )
    query = query.order_by(col(ApprovalRequest.created_at).desc(), col(ApprovalRequest.id).desc())
    rows = store.records(session.connection(), query.limit(limit + 1))
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor
