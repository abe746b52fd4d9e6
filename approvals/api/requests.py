"""REST routes for approval requests (prefix /api/v1)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from approvals import activity, errors, lifecycle, queries
from approvals.api.deps import (
    AnyPrincipalDep,
    ApproverDep,
    CancellerDep,
    EngineDep,
    GatewayDep,
    HubDep,
    ListerDep,
    MetricsDep,
    Principal,
    ReaderDep,
    ReadSessionDep,
    SettingsDep,
    StoreDep,
)
from approvals.db import WriteScope, read_session
from approvals.live_events import LiveEvent
from approvals.models import RequestStatus, Role
from approvals.schemas import (
    CancelCreate,
    DecisionCreate,
    OutcomeCreate,
    RequestCreate,
    RequestPage,
    RequestPublic,
    TokenIdentity,
    printable,
)

router = APIRouter(prefix="/api/v1")


def _json(view: RequestPublic, status: int = 200) -> Response:
    """The view as the JSON body, encoded once by pydantic (the hot write routes' answer)."""
    return Response(view.model_dump_json(), status_code=status, media_type="application/json")


@router.get("/whoami")
def whoami(principal: AnyPrincipalDep) -> TokenIdentity:
    """The name and role of the presented token."""
    return TokenIdentity(name=principal.name, role=principal.role)


@router.post("/requests", status_code=201, response_model=RequestPublic)
async def create_request(
    request: Request,
    body: RequestCreate,
    store: StoreDep,
    principal: GatewayDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    """Queue a suspended tool call (or return the open one for the identical call)."""
    policy = request.app.state.policy  # read once: a reload mid-request changes nothing
    result = await store.run(
        lambda session: lifecycle.create_request(
            session,
            body,
            policy=policy,
            created_by=principal.name,
            idempotency_key=idempotency_key,
        )
    )
    return _json(result.view, 201 if result.created else 200)


@router.get("/requests")
def list_requests(
    session: ReadSessionDep,
    _: ListerDep,
    status: RequestStatus | None = None,
    tool: Annotated[str | None, Query(max_length=255)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> RequestPage:
    """Requests newest first, filtered by status, tool and a search (`q`: text in the tool,
    caller or arguments, any case), one page at a time."""
    rows, next_cursor = queries.list_requests(
        session, status=status, tool=tool, q=q or None, limit=limit, cursor=cursor
    )
    return RequestPage(
        items=[lifecycle.readable(session, r) for r in rows], next_cursor=next_cursor
    )


def _readable(session: Session, request_id: str, principal: Principal) -> RequestPublic:
    """The request as `principal` may see it; another gateway's request is not found."""
    found = lifecycle.get_request(session, request_id)
    if not lifecycle.may_read(found, principal.name, principal.role):
        raise errors.NotFound(f"no request with id {request_id!r}")
    return lifecycle.readable(session, found)


@router.get("/requests/{request_id}")
def get_request(request_id: str, session: ReadSessionDep, principal: ReaderDep) -> RequestPublic:
    """One request with its decisions (a gateway sees only the requests it created)."""
    return _readable(session, request_id, principal)


@router.get("/requests/{request_id}/wait")
async def wait_for_decision(
    request_id: str,
    engine: EngineDep,
    hub: HubDep,
    settings: SettingsDep,
    principal: GatewayDep,
    metrics: MetricsDep,
    timeout: Annotated[float, Query(ge=0, le=3600)] = 30.0,
) -> RequestPublic:
    """Long-poll: answer as soon as the request leaves `pending`, or after `timeout` seconds.

    Only the gateway that created the request may wait on it. The request is read
    once; then the waiter hears every change of it through the hub (changes made
    on other replicas arrive through approvals.fanout), so a waiter costs no
    database read, thread or task while nothing changes. When it times out the
    hub keeps the view, and the gateway's next ask starts from it unread."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(timeout, settings.max_wait_seconds)

    def load() -> RequestPublic:
        metrics.wait_reads.inc()
        with read_session(engine) as session:
            return _readable(session, request_id, principal)

    # Watch before reading: a change committed during the read is heard, not lost.
    watch = hub.watch(request_id)
    try:
        known = hub.recall(request_id)
        if isinstance(known, RequestPublic) and known.gateway == principal.name:
            view = known  # as this gateway's last ask left it, and nothing happened since
        else:
            view = await run_in_threadpool(load)
        while view.status == RequestStatus.PENDING:
            heard = await watch.next(deadline - loop.time())
            if heard is None:
                # The watch heard everything until now: the next ask may start from here.
                hub.remember(request_id, view)
                break
            if isinstance(heard, LiveEvent):
                view = _view_of(heard)
            else:  # events may have gone by unheard
                view = await run_in_threadpool(load)
        return view
    finally:
        hub.unwatch(watch)


def _view_of(evt: LiveEvent) -> RequestPublic:
    """The request as an event carries it (made here, or JSON from another replica)."""
    request = evt.request
    view = request if isinstance(request, RequestPublic) else RequestPublic.model_validate(request)
    return printable(view)


@router.post("/requests/{request_id}/decisions", response_model=RequestPublic)
async def decide(
    request: Request,
    request_id: str,
    body: DecisionCreate,
    store: StoreDep,
    principal: ApproverDep,
    x_signoff_channel: Annotated[Literal["api", "cli"], Header()] = "api",
) -> Response:
    """Approve or reject; the first settling decision wins, later ones get 409.

    With `arguments`, approve the call with these arguments instead of the agent's
    (quorum > 1: earlier approvals are void, this one counts for the new arguments)."""
    policy = request.app.state.policy
    result = await store.run(
        lambda session: lifecycle.decide(
            session,
            request_id,
            approver=principal.name,
            decision=body.decision,
            comment=body.comment,
            channel=x_signoff_channel,
            role=principal.role,
            arguments=body.arguments,
            seen_hash=body.arguments_hash,
            policy=policy,
        )
    )
    return _json(result.view)


@router.post("/requests/{request_id}/cancel")
async def cancel(
    request_id: str,
    store: StoreDep,
    principal: CancellerDep,
    body: CancelCreate | None = None,
) -> RequestPublic:
    """The agent went away before a decision (the creating gateway, or an admin)."""
    by_caller = body is not None and body.by_caller

    def work(session: WriteScope) -> RequestPublic:
        request = lifecycle.cancel(
            session,
            request_id,
            by=principal.name,
            admin=principal.role == Role.ADMIN,
            by_caller=by_caller,
        )
        return lifecycle.public(session, request)

    return await store.run(work)


@router.post("/requests/{request_id}/claim")
async def claim(
    request_id: str, store: StoreDep, principal: GatewayDep, metrics: MetricsDep
) -> RequestPublic:
    """Use the approval for its one execution; 409 if it was already used or is not approved."""

    def work(session: WriteScope) -> RequestPublic:
        return lifecycle.public(session, lifecycle.claim(session, request_id, by=principal.name))

    view = await store.run(work)
    # A claim publishes no event, so it is counted and logged here, once committed.
    metrics.claims.inc()
    activity.log_claimed(view, principal.name)
    return view


@router.post("/requests/{request_id}/outcome")
async def record_outcome(
    request_id: str,
    body: OutcomeCreate,
    store: StoreDep,
    principal: GatewayDep,
    metrics: MetricsDep,
) -> RequestPublic:
    """Store the result of the forwarded call."""

    def work(session: WriteScope) -> RequestPublic:
        request = lifecycle.record_outcome(
            session, request_id, is_error=body.is_error, summary=body.summary, by=principal.name
        )
        return lifecycle.public(session, request)

    view = await store.run(work)
    metrics.gateway_outcomes.labels("error" if body.is_error else "ok").inc()
    return view
