"""Deciding several queue items at once: one comment, each item its own vote.

Every item goes through `lifecycle.decide_each`, so each vote is checked against
the same rules as a single one (listed approver, not the caller, still pending);
those a rule refuses are listed back to the person with the reason. The form is
checked and answered by the same `routes.decide_from_form` as a single decision.
The votes are one unit of the store, each in its own savepoint: a refused one
undoes only itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from approvals import errors, lifecycle
from approvals.api.deps import EngineDep, StoreDep
from approvals.dashboard.routes import DecisionPost, _page, decide_from_form
from approvals.db import WriteScope

router = APIRouter(include_in_schema=False)

_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


@router.post("/queue/decisions")
async def decide_selected(request: Request, engine: EngineDep, store: StoreDep) -> Response:
    """Approve or reject several requests with one comment (CSRF-checked). Each is its own
    vote under the lifecycle's rules; the ones a rule refuses are listed back with why."""

    async def record(post: DecisionPost) -> list[lifecycle.Decided | lifecycle.Refused]:
        person, form = post.person, post.form
        if not person.may_decide_at_all:
            raise errors.Forbidden(
                f"a token with role {person.role} cannot decide requests", code="forbidden"
            )
        ids = [i for i in form.getlist("ids") if isinstance(i, str)]
        if not ids:
            raise errors.Unprocessable("select at least one request", code="nothing_selected")
        comment = form.get("comment")
        comment_text = comment.strip()[:4000] if isinstance(comment, str) else ""
        # Each card sends the hash of the arguments it showed: a vote on a call someone
        # edited since counts for nothing (409 arguments_changed), as for a single decision.
        seen = {
            i: h
            for i in ids[: lifecycle.MAX_BATCH + 1]
            if isinstance(h := form.get(f"seen-{i}"), str) and h
        }
        valid = [i for i in ids if _REQUEST_ID.match(i)]

        def decide_all(scope: WriteScope) -> list[lifecycle.Decided | lifecycle.Refused]:
            @contextmanager
            def each() -> Iterator[WriteScope]:
                try:
                    yield scope
                finally:  # what a refused vote left uncommitted is not the next one's
                    scope.rollback()

            return lifecycle.decide_each(
                each,
                valid,
                approver=person.name,
                decision=str(form.get("decision")),
                comment=comment_text or None,
                channel="dashboard",
                role=person.role,
                seen_hashes=seen,
            )

        # One unit, run in a worker thread: up to MAX_BATCH votes would hold the loop.
        outcomes = await run_in_threadpool(store.run_now, decide_all)
        # Never looked up: no request has such an id.
        outcomes += [
            lifecycle.Refused(i[:64], "not_found", "no request has this id", 404)
            for i in dict.fromkeys(ids)
            if not _REQUEST_ID.match(i)
        ]
        return outcomes

    def answer(
        post: DecisionPost, outcomes: list[lifecycle.Decided | lifecycle.Refused]
    ) -> Response:
        results = [_batch_result(o) for o in outcomes]
        if post.wants_json:
            return JSONResponse({"results": results})
        return _page(
            request,
            "batch.html",
            {"person": post.person, "page": "batch", "results": results, "back": post.next_path},
        )

    return await decide_from_form(request, engine, record, answer)


def _batch_result(outcome: lifecycle.Decided | lifecycle.Refused) -> dict[str, Any]:
    if isinstance(outcome, lifecycle.Refused):
        return {
            "id": outcome.request_id,
            "ok": False,
            "code": outcome.code,
            "message": outcome.message,
        }
    return {"id": outcome.view.id, "ok": True, "request": outcome.view.model_dump(mode="json")}
