"""Dashboard pages: sign-in, the live queue and single decisions.

Server-rendered HTML (Jinja2) with a little plain JavaScript (static/app.js)
that keeps the queue live over `WS /api/v1/events`. Decisions go through
`lifecycle.decide(..., channel="dashboard")`: the same rules as every channel.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine
from starlette.datastructures import FormData

from approvals import errors, lifecycle, queries
from approvals.api.deps import EngineDep, StoreDep
from approvals.api.errors import ApiError, error_body
from approvals.dashboard import decisions
from approvals.dashboard.auth import (
    CSRF_HEADER,
    DASHBOARD_ROLES,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    DashboardSession,
    Signer,
    load_session,
)
from approvals.dashboard.present import (
    age,
    countdown,
    stamp,
    view,
)
from approvals.dashboard.queue import (
    MAX_RESYNC,
    PAGE_SIZE,
    QueuePage,
    pending_page,
    search_text,
)
from approvals.db import read_session
from approvals.models import utcnow
from approvals.schemas import RequestPublic
from approvals.tokens import authenticate

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(age=age, countdown=countdown, stamp=stamp)

router = APIRouter(include_in_schema=False)

T = TypeVar("T")

# Pages allow only our own scripts, styles and same-origin connections (the websocket).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SignInRequired(Exception):
    """Raised by page dependencies; answered with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def signin_redirect(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    target = "/login"
    if exc.next_path not in ("", "/"):
        target += "?" + urlencode({"next": exc.next_path})
    return RedirectResponse(target, status_code=303)


def _signer(request: Request) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


def _optional_person(request: Request, engine: EngineDep) -> DashboardSession | None:
    return load_session(request, engine, _signer(request))


def _person(
    request: Request, person: Annotated[DashboardSession | None, Depends(_optional_person)]
) -> DashboardSession:
    if person is None:
        path = request.url.path
        if request.url.query:
            path += "?" + request.url.query
        raise SignInRequired(path)
    return person


def _fragment_person(
    person: Annotated[DashboardSession | None, Depends(_optional_person)],
) -> DashboardSession:
    if person is None:
        raise ApiError(401, "signed_out", "sign in again")
    return person


PersonDep = Annotated[DashboardSession, Depends(_person)]
FragmentPersonDep = Annotated[DashboardSession, Depends(_fragment_person)]
MaybePersonDep = Annotated[DashboardSession | None, Depends(_optional_person)]


def _page(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _safe_next(value: str | None) -> str:
    """Only same-site paths: never an open redirect."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


# --- sign in / out -----------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, person: MaybePersonDep, next: str = "/") -> Response:
    if person is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_form(request, next_path=_safe_next(next))


def _login_form(
    request: Request, *, next_path: str, error: str | None = None, status_code: int = 200
) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
    response = _page(
        request,
        "login.html",
        {
            "person": None,
            "page": "login",
            "csrf": _signer(request).login_csrf_for(nonce),
            "next_path": next_path,
            "error": error,
        },
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict",
        secure=_secure(request), path="/login",
    )  # fmt: skip
    return response


@router.post("/login")
def login(
    request: Request,
    engine: EngineDep,
    token: Annotated[str, Form(max_length=512)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    signer = _signer(request)
    next_path = _safe_next(next)
    if not signer.check_login_csrf(request.cookies.get(LOGIN_COOKIE), csrf_token):
        return _login_form(
            request,
            next_path=next_path,
            error="The sign-in form expired. Please try again.",
            status_code=403,
        )
    with read_session(engine) as session:
        row = authenticate(session, token.strip())
    if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
        return _login_form(
            request, next_path=next_path, error="That token is not valid.", status_code=401
        )
    if row.role not in DASHBOARD_ROLES:
        return _login_form(
            request,
            next_path=next_path,
            error=f"A {row.role} token cannot sign in to the dashboard; use an approver, "
            "auditor or admin token.",
            status_code=403,
        )
    assert row.id is not None
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(
        SESSION_COOKIE, signer.issue(row.id), max_age=int(signer.lifetime_seconds),
        httponly=True, samesite="strict", secure=_secure(request), path="/",
    )  # fmt: skip
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(
    request: Request,
    person: MaybePersonDep,
    csrf_token: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    if person is not None and not _signer(request).check_csrf(person.nonce, csrf_token):
        return _csrf_refused(request, wants_json=False)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _csrf_refused(request: Request, *, wants_json: bool) -> Response:
    message = "the request did not carry this page's CSRF token; reload the page and try again"
    if wants_json:
        return JSONResponse(error_body("csrf_failed", message), status_code=403)
    return _page(
        request,
        "error.html",
        {"person": None, "page": "error", "title": "Refused", "message": message},
        status_code=403,
    )


# --- the queue -----------------------------------------------------------------------------


def _page_headers(response: Response, page: QueuePage) -> Response:
    response.headers["X-Queue-Total"] = str(page.total)
    response.headers["X-Next-Cursor"] = page.next_cursor or ""
    return response


@router.get("/")
def queue_page(
    request: Request, engine: EngineDep, person: PersonDep, q: str = "", cursor: str = ""
) -> Response:
    """The first page of pending requests matching the search `q` (or the page at `cursor`)."""
    q = search_text(q)
    page = pending_page(engine, person, q=q, limit=PAGE_SIZE, cursor=cursor[:512] or None)
    next_url = None
    if page.next_cursor:
        next_url = "/?" + urlencode({**({"q": q} if q else {}), "cursor": page.next_cursor})
    context = {
        "person": person,
        "page": "queue",
        "items": page.items,
        "total": page.total,
        "q": q,
        "next_cursor": page.next_cursor or "",
        "next_url": next_url,
        "paged": bool(cursor),
        "max_batch": lifecycle.MAX_BATCH,
    }
    return _page(request, "queue.html", context)


@router.get("/partials/queue")
def queue_fragment(
    request: Request,
    engine: EngineDep,
    person: FragmentPersonDep,
    q: str = "",
    cursor: str = "",
    limit: int = PAGE_SIZE,
) -> Response:
    """A page of the queue's items: the next page (`cursor`), or the first `limit` for a
    client resyncing after (re)connecting. Total and next cursor ride in headers."""
    q = search_text(q)
    page = pending_page(
        engine, person, q=q, limit=max(1, min(limit, MAX_RESYNC)), cursor=cursor[:512] or None
    )
    response = _page(request, "_queue_items.html", {"person": person, "items": page.items})
    return _page_headers(response, page)


@router.get("/partials/requests/{request_id}")
def item_fragment(
    request: Request, request_id: str, engine: EngineDep, person: FragmentPersonDep, q: str = ""
) -> Response:
    """One queue item, for a client told about a new or changed request; `data-match`
    says whether the client's search `q` finds it."""
    q = search_text(q)
    with read_session(engine) as session:
        try:
            item = view(session, lifecycle.get_request(session, request_id), person)
        except errors.NotFound:
            return JSONResponse(error_body("not_found", "no such request"), status_code=404)
        match = not q or queries.matches(session, request_id, q)
    return _page(request, "_item.html", {"person": person, "item": item, "match": match})


@dataclass(frozen=True)
class DecisionPost:
    """A decision form from a signed-in person whose CSRF token matched."""

    person: DashboardSession
    form: FormData
    wants_json: bool
    # Where the page goes back to (same-site paths only).
    next_path: str


async def decide_from_form(
    request: Request,
    engine: Engine,
    record: Callable[[DecisionPost], Awaitable[T]],
    answer: Callable[[DecisionPost, T], Response],
) -> Response:
    """A decision form, single or several at once: checks who sent it and its CSRF token,
    `record`s it through the store, and answers a rule's refusal as JSON (for a fetch)
    or as a page."""
    wants_json = "application/json" in request.headers.get("accept", "")
    signer = _signer(request)
    form = await request.form()
    person = await run_in_threadpool(load_session, request, engine, signer)
    if person is None:
        if wants_json:
            return JSONResponse(error_body("signed_out", "sign in again"), status_code=401)
        raise SignInRequired("/")
    presented = request.headers.get(CSRF_HEADER) or form.get("csrf_token")
    if not signer.check_csrf(person.nonce, presented if isinstance(presented, str) else None):
        return _csrf_refused(request, wants_json=wants_json)
    post = DecisionPost(person, form, wants_json, _safe_next(_text(form.get("next")) or None))
    try:
        outcome = await record(post)
    except errors.ServiceError as exc:
        if wants_json:
            return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)
        return _page(
            request,
            "error.html",
            {"person": person, "page": "error", "title": "Not recorded", "message": exc.message,
             "back": post.next_path},
            status_code=exc.status,
        )  # fmt: skip
    return answer(post, outcome)


@router.post("/requests/{request_id}/decide")
async def decide(request: Request, request_id: str, engine: EngineDep, store: StoreDep) -> Response:
    """Approve or reject from the dashboard (CSRF-checked; same rules as the API)."""
    policy = request.app.state.policy

    async def record(post: DecisionPost) -> RequestPublic:
        form = post.form
        comment = _text(form.get("comment")).strip()
        choice = decisions.DecisionForm(
            decision=_text(form.get("decision")),
            comment=comment[:4000] or None,
            arguments=_text(form.get("arguments")) or None,
            seen_hash=_text(form.get("arguments_hash")) or None,
        )
        return await store.run(
            lambda scope: decisions.run(
                scope, choice, request_id=request_id, person=post.person, policy=policy
            )
        )

    def answer(post: DecisionPost, public: RequestPublic) -> Response:
        if post.wants_json:
            return JSONResponse({"request": public.model_dump(mode="json")})
        return RedirectResponse(post.next_path, status_code=303)

    return await decide_from_form(request, engine, record, answer)


def _text(value: object) -> str:
    """A form field's text (an upload, or nothing, is empty)."""
    return value if isinstance(value, str) else ""
