"""Deciding several queue items at once: one comment, each item its own vote.

Every item goes through `lifecycle.decide_each`, so each vote is checked against
the same rules as a single one (listed approver, not the caller, still pending);
those a rule refuses are listed back to the person with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlmodel import Session

from approvals import lifecycle
from approvals.api.deps import EngineDep
from approvals.api.errors import error_body
from approvals.dashboard.auth import CSRF_HEADER, load_session
from approvals.dashboard.routes import (
    SignInRequired,
    _csrf_refused,
    _page,
    _safe_next,
    _signer,
)
from approvals.db import session_scope
from approvals.events import attach_hub

router = APIRouter(include_in_schema=False)

_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


@router.post("/queue/decisions")
async def decide_selected(request: Request, engine: EngineDep) -> Response:
    """Approve or reject several requests with one comment (CSRF-checked). Each is its own
    vote under the lifecycle's rules; the ones a rule refuses are listed back with why."""
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
    decision = form.get("decision")
    comment = form.get("comment")
    comment_text = comment.strip()[:4000] if isinstance(comment, str) else ""
    ids = [i for i in form.getlist("ids") if isinstance(i, str)]
    # Each card sends the hash of the arguments it showed: a vote on a call someone
    # edited since counts for nothing (409 arguments_changed), as for a single decision.
    seen = {
        i: h
        for i in ids[: lifecycle.MAX_BATCH + 1]
        if isinstance(h := form.get(f"seen-{i}"), str) and h
    }
    next_value = form.get("next")
    next_path = _safe_next(next_value if isinstance(next_value, str) else None)

    def run() -> list[lifecycle.Decided | lifecycle.Refused]:
        if not person.may_decide_at_all:
            raise lifecycle.Forbidden(
                f"a token with role {person.role} cannot decide requests", code="forbidden"
            )
        if not ids:
            raise lifecycle.Unprocessable("select at least one request", code="nothing_selected")

        @contextmanager
        def sessions() -> Iterator[Session]:
            with session_scope(engine) as session:
                attach_hub(session, request.app.state.hub)
                yield session

        valid = [i for i in ids if _REQUEST_ID.match(i)]
        outcomes = lifecycle.decide_each(
            sessions,
            valid,
            approver=person.name,
            decision=str(decision),
            comment=comment_text or None,
            channel="dashboard",
            role=person.role,
            seen_hashes=seen,
        )
        # Never looked up: no request has such an id.
        outcomes += [
            lifecycle.Refused(i[:64], "not_found", "no request has this id", 404)
            for i in dict.fromkeys(ids)
            if not _REQUEST_ID.match(i)
        ]
        return outcomes

    try:
        outcomes = await run_in_threadpool(run)
    except lifecycle.LifecycleError as exc:
        if wants_json:
            return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)
        return _page(
            request,
            "error.html",
            {"person": person, "page": "error", "title": "Not recorded", "message": exc.message,
             "back": next_path},
            status_code=exc.status,
        )  # fmt: skip
    results = [_batch_result(o) for o in outcomes]
    if wants_json:
        return JSONResponse({"results": results})
    return _page(
        request,
        "batch.html",
        {"person": person, "page": "batch", "results": results, "back": next_path},
    )


def _batch_result(outcome: lifecycle.Decided | lifecycle.Refused) -> dict[str, Any]:
    if isinstance(outcome, lifecycle.Refused):
        return {
            "id": outcome.request_id,
            "ok": False,
            "code": outcome.code,
            "message": outcome.message,
        }
    return {"id": outcome.view.id, "ok": True, "request": outcome.view.model_dump(mode="json")}
