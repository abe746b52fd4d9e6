"""The dashboard's Grants page: the grants in force, and revoking one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from approvals import errors, grants
from approvals.api.deps import EngineDep, StoreDep
from approvals.dashboard.auth import CSRF_HEADER, load_session
from approvals.dashboard.routes import (
    FragmentPersonDep,
    PersonDep,
    SignInRequired,
    _csrf_refused,
    _page,
    _signer,
)
from approvals.db import WriteScope, read_session

router = APIRouter(include_in_schema=False)


@router.get("/grants")
def grants_page(request: Request, engine: EngineDep, person: PersonDep) -> Response:
    with read_session(engine) as session:
        items = grants.active(session)
    return _page(request, "grants.html", {"person": person, "page": "grants", "items": items})


@router.get("/partials/grants")
def grants_fragment(request: Request, engine: EngineDep, person: FragmentPersonDep) -> Response:
    """The list of grants in force, for a Grants page told that one changed; the count
    rides in a header."""
    with read_session(engine) as session:
        items = grants.active(session)
    response = _page(request, "_grants.html", {"person": person, "items": items})
    response.headers["X-Grants-Total"] = str(len(items))
    return response


@router.post("/grants/{grant_id}/revoke")
async def revoke(request: Request, grant_id: str, engine: EngineDep, store: StoreDep) -> Response:
    """Revoke a grant (CSRF-checked; the same rules as DELETE /api/v1/grants/{id})."""
    signer = _signer(request)
    form = await request.form()
    person = await run_in_threadpool(load_session, request, engine, signer)
    if person is None:
        raise SignInRequired("/grants")
    presented = request.headers.get(CSRF_HEADER) or form.get("csrf_token")
    if not signer.check_csrf(person.nonce, presented if isinstance(presented, str) else None):
        return _csrf_refused(request, wants_json=False)
    policy = request.app.state.policy

    def run(scope: WriteScope) -> None:
        if not person.may_decide_at_all:
            raise errors.Forbidden(f"a token with role {person.role} cannot revoke grants")
        grants.revoke(
            scope, grant_id, policy=policy, by=person.name, role=person.role, channel="dashboard"
        )

    try:
        await store.run(run)
    except errors.ServiceError as exc:
        return _page(
            request,
            "error.html",
            {"person": person, "page": "error", "title": "Not revoked", "message": exc.message,
             "back": "/grants"},
            status_code=exc.status,
        )  # fmt: skip
    return RedirectResponse("/grants", status_code=303)
