"""The review queue's query: a page of pending requests matching a search, and how many.

A busy day's queue is paged on the server (newest first, by cursor), never rendered
whole: the first page is in the browser at once however many calls wait.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from approvals import errors, queries
from approvals.dashboard.auth import DashboardSession
from approvals.dashboard.present import RequestView, view
from approvals.db import read_session
from approvals.models import RequestStatus

# Cards per page.
PAGE_SIZE = 25
# A resync re-reads at most this many (what a person has paged into view).
MAX_RESYNC = 500
MAX_SEARCH_CHARS = 200


@dataclass(frozen=True)
class QueuePage:
    items: list[RequestView]
    # Where the next page starts (None on the last).
    next_cursor: str | None
    # Every pending request the search finds, shown or not.
    total: int


def search_text(q: str) -> str:
    """A search as typed, bounded."""
    return q.strip()[:MAX_SEARCH_CHARS]


def pending_page(
    engine: Engine, person: DashboardSession, *, q: str, limit: int, cursor: str | None
) -> QueuePage:
    """One page of pending requests matching `q` (tool, caller or argument text)."""
    with read_session(engine) as session:
        try:
            rows, next_cursor = queries.list_requests(
                session, status=RequestStatus.PENDING, q=q or None, limit=limit, cursor=cursor
            )
        except errors.ServiceError:  # a mangled link: start from the newest
            rows, next_cursor = queries.list_requests(
                session, status=RequestStatus.PENDING, q=q or None, limit=limit
            )
        total = queries.count_requests(session, status=RequestStatus.PENDING, q=q or None)
        return QueuePage([view(session, r, person) for r in rows], next_cursor, total)
