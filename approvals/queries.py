"""Read-side queries: listing requests newest first with an opaque cursor."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from approvals.lifecycle import LifecycleError
from approvals.models import ApprovalRequest, RequestStatus


def _encode_cursor(request: ApprovalRequest) -> str:
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
        raise LifecycleError("cursor is not valid", code="invalid_cursor") from exc


def list_requests(
    session: Session,
    *,
    status: str | None = None,
    tool: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[ApprovalRequest], str | None]:
    """Requests newest first, filtered, with the cursor of the next page (None on the last)."""
    query = select(ApprovalRequest)
    if status is not None:
        if status not in {s.value for s in RequestStatus}:
            allowed = ", ".join(s.value for s in RequestStatus)
            raise LifecycleError(f"status must be one of {allowed}", code="invalid_status")
        query = query.where(ApprovalRequest.status == status)
    if tool is not None:
        query = query.where(ApprovalRequest.tool == tool)
    return page_newest_first(session, query, limit=limit, cursor=cursor)


def page_newest_first(
    session: Session,
    query: SelectOfScalar[ApprovalRequest],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[ApprovalRequest], str | None]:
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
    rows = list(session.exec(query.limit(limit + 1)).all())
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor
