"""The dashboard's History page (filters on status, tool, approver and dates) and a
request's detail page with its timeline."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from approvals import errors, lifecycle
from approvals.api.deps import EngineDep
from approvals.dashboard import history
from approvals.dashboard.present import STATUS_LABELS, view
from approvals.dashboard.routes import PersonDep, _page
from approvals.dashboard.timeline import timeline
from approvals.db import read_session
from approvals.models import RequestStatus

router = APIRouter(include_in_schema=False)


@router.get("/history")
def history_page(
    request: Request,
    engine: EngineDep,
    person: PersonDep,
    status: str = "",
    tool: str = "",
    approver: str = "",
    since: str = "",
    until: str = "",
    cursor: str = "",
) -> Response:
    error = None
    try:
        since_day, until_day = history.parse_day(since), history.parse_day(until)
    except ValueError:
        since_day = until_day = None
        error = "Dates must look like 2026-01-31."
    filters = history.Filters(
        status=status if status in STATUS_LABELS else None,
        tool=tool.strip()[:255] or None,
        approver=approver.strip()[:255] or None,
        since=since_day,
        until=until_day,
    )
    with read_session(engine) as session:
        rows, next_cursor = history.search(session, filters, cursor=cursor or None)
        items = [view(session, r, person) for r in rows]
    next_url = None
    if next_cursor:
        next_url = "/history?" + urlencode({**filters.query_string(), "cursor": next_cursor})
    return _page(
        request,
        "history.html",
        {
            "person": person,
            "page": "history",
            "items": items,
            "filters": filters,
            "statuses": list(STATUS_LABELS.items()),
            "next_url": next_url,
            "error": error,
        },
    )


@router.get("/requests/{request_id}")
def detail_page(
    request: Request, request_id: str, engine: EngineDep, person: PersonDep
) -> Response:
    with read_session(engine) as session:
        try:
            item = view(session, lifecycle.get_request(session, request_id), person)
        except errors.NotFound:
            return _page(
                request,
                "error.html",
                {"person": person, "page": "error", "title": "Not found",
                 "message": f"There is no request {request_id}.", "back": "/history"},
                status_code=404,
            )  # fmt: skip
        entries = timeline(session, item.r)
    return _page(
        request,
        "detail.html",
        {
            "person": person,
            "page": "detail",
            "item": item,
            "timeline": entries,
            "pending": item.r.status == RequestStatus.PENDING,
        },
    )
