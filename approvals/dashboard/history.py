"""The history view's query: filters on status, tool, approver and a time range."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, exists, or_
from sqlmodel import Session, col, select

from approvals.errors import ServiceError
from approvals.models import ApprovalRequest, RequestStatus, Vote
from approvals.queries import page_newest_first
from approvals.request_store import RequestRecord


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    tool: str | None = None
    approver: str | None = None
    since: date | None = None
    until: date | None = None

    def query_string(self) -> dict[str, str]:
        """The filters as URL parameters (for the next-page link)."""
        pairs = {
            "status": self.status,
            "tool": self.tool,
            "approver": self.approver,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }
        return {k: v for k, v in pairs.items() if v}


def parse_day(text: str | None) -> date | None:
    """A YYYY-MM-DD day, or None when empty; ValueError when malformed."""
    return date.fromisoformat(text) if text else None


def search(
    session: Session, filters: Filters, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[RequestRecord], str | None]:
    """Requests matching `filters`, newest first, and the cursor of the next page."""
    query = select(ApprovalRequest)
    if filters.status in {s.value for s in RequestStatus}:
        query = query.where(ApprovalRequest.status == filters.status)
    if filters.tool:
        query = query.where(col(ApprovalRequest.tool).contains(filters.tool, autoescape=True))
    if filters.approver:
        voted = exists().where(
            and_(
                col(Vote.request_id) == col(ApprovalRequest.id),
                col(Vote.approver) == filters.approver,
            )
        )
        query = query.where(or_(voted, col(ApprovalRequest.decided_by) == filters.approver))
    if filters.since:
        start = datetime.combine(filters.since, time.min, tzinfo=UTC)
        query = query.where(col(ApprovalRequest.created_at) >= start)
    if filters.until:
        end = datetime.combine(filters.until + timedelta(days=1), time.min, tzinfo=UTC)
        query = query.where(col(ApprovalRequest.created_at) < end)
    try:
        return page_newest_first(session, query, limit=limit, cursor=cursor)
    except ServiceError:
        # A mangled link: start from the newest rather than show an error page.
        return page_newest_first(session, query, limit=limit, cursor=None)
