"""`POST /api/v1/interceptors/docker`: Signoff as a Docker MCP gateway `before:http` interceptor.

Docker's gateway (`docker mcp gateway run --interceptor before:http:URL`)
POSTs each tools/call to URL as `{"method": "tools/call", "params": {"name": ...,
"arguments": {...}, "_meta": {...}}}` before running it, and reads the answer
body: empty means "run the call", anything else is parsed as the
`CallToolResult` the agent gets instead. It sends no credentials of its own,
so the URL carries the token: `?token=<gateway-role token>` (an
`Authorization: Bearer` header works too); its name is the caller. Optional
`?server=NAME` selects `server/tool` policy keys; `?hold=S` is the in-band
wait for policy entries without a `hold` of their own (default 50 s).

The policy is the service's own (`signoff serve --policy FILE`, reloaded on
change: `app.state.policy`, read afresh for every call), applied by the same
`GatewayRuntime` every host uses, talking to this service in-process. Each token
keeps one runtime, in a small pool closed when the service stops; all of them
count against one set of rate limits. Deny, hide and rate limits answer at
once; a call that needs approval is held, then either continues (approved:
empty body, the approval claimed for this one run) or is refused with the
pending, rejected or expired text. A retry of the identical call attaches to
the same request. Docker's `before` interceptor cannot change the arguments of
the call it lets through, so an approval of changed arguments is refused here
(and not claimed). Whatever goes wrong is a refusal, never an empty body: the
route fails closed.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from mcp_types import CallToolResult

from approvals.models import Role
from approvals.settings import Settings
from approvals.tokens import TokenCache
from gateway_plugin import messages
from gateway_plugin.gate import DEFAULT_HOLD_SECONDS, ToolCall
from gateway_plugin.policy import Policy
from gateway_plugin.policy_source import waiting_policy
from gateway_plugin.runtime import GatewayRuntime, RuntimePool
from gateway_plugin.verdict import Allow, Approved, Deny, Expired, Held, Rejected, refusal

_ROLES = {Role.GATEWAY.value, Role.ADMIN.value}
_MAX_HOLD_SECONDS = 600.0


def _pool(app: FastAPI) -> RuntimePool:
    pool: RuntimePool | None = getattr(app.state, "docker_interceptor_runtimes", None)
    if pool is None:
        pool = app.state.docker_interceptor_runtimes = RuntimePool()
    return pool


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    pool: RuntimePool | None = getattr(app.state, "docker_interceptor_runtimes", None)
    if pool is not None:
        await pool.aclose()


router = APIRouter(prefix="/api/v1/interceptors", lifespan=_lifespan)


def _refusal(text: str, status: int = 200) -> Response:
    return _answer(refusal(Deny(text)), status)


def _answer(result: CallToolResult, status: int = 200) -> Response:
    return Response(
        result.model_dump_json(by_alias=True, exclude_none=True),
        status_code=status,
        media_type="application/json",
    )


def _token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("token") or None


def _runtime(app: FastAPI, token: str, caller: str) -> GatewayRuntime:
    """The runtime of one token, talking to this app in-process and enforcing its policy."""
    base_url = cast(Settings, app.state.settings).base_url()

    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(_MAX_HOLD_SECONDS + 30),
        )

    def policy() -> Policy:
        # The service's own, as reloaded on change; the route refuses while it has none.
        current: Policy | None = app.state.policy
        return current or waiting_policy()

    return GatewayRuntime(
        base_url, token, policy_feed=policy, agent=caller, push=False, http=client
    )


@router.post("/docker", response_model=None)
async def docker_before(request: Request) -> Response:
    """Docker MCP gateway `before:http` interceptor: empty body to continue, else a refusal."""
    try:
        body: Any = await request.json()
    except ValueError:
        return _refusal("Signoff: the interceptor request body is not JSON.", 400)
    if not isinstance(body, dict):
        return _refusal("Signoff: the interceptor request body is not a JSON object.", 400)
    method = body.get("method", "tools/call")
    if not isinstance(method, str):  # malformed: refuse rather than let it through
        return _refusal("Signoff: the intercepted request's method is not a string.", 400)
    if method != "tools/call":
        return Response(status_code=200)  # only tools/call is Signoff's business
    params = body.get("params", body)
    name = params.get("name") if isinstance(params, dict) else None
    arguments = (params.get("arguments") if isinstance(params, dict) else None) or {}
    if not isinstance(name, str) or not name or not isinstance(arguments, dict):
        return _refusal("Signoff: the intercepted tools/call has no tool name or arguments.", 400)

    token = _token(request)
    if token is None:
        return _refusal(
            f"Signoff refused the call to {name}: the interceptor URL carries no token "
            "(add ?token=<a gateway-role Signoff token>).",
            401,
        )
    cache: TokenCache = request.app.state.token_cache
    found = await run_in_threadpool(cache.lookup, request.app.state.engine, token)
    if found is None or found[1] not in _ROLES:
        return _refusal(
            f"Signoff refused the call to {name}: the interceptor's token is not a valid "
            "gateway-role token.",
            401 if found is None else 403,
        )
    caller = found[0]
    policy = getattr(request.app.state, "policy", None)
    if policy is None:
        return _refusal(
            f"Signoff refused the call to {name}: the approval service has no policy "
            "(start it with `signoff serve --policy FILE`).",
            503,
        )
    try:
        hold = float(request.query_params.get("hold", DEFAULT_HOLD_SECONDS))
    except ValueError:
        hold = -1.0
    if not 0 <= hold <= _MAX_HOLD_SECONDS:
        return _refusal(f"Signoff: ?hold must be 0 to {_MAX_HOLD_SECONDS:g} seconds.", 400)

    call = ToolCall(
        tool=name,
        arguments=arguments,
        server=request.query_params.get("server", ""),
        caller=caller,
        # Docker's gateway passes no session: each interceptor token is one session.
        session=f"docker:{caller}",
    )
    identity = hashlib.sha256(token.encode()).hexdigest()
    app: FastAPI = request.app
    async with _pool(app).use(identity, lambda: _runtime(app, token, caller)) as runtime:
        # Docker's `before` interceptor cannot change a call's arguments: an approval of
        # changed arguments is refused before it is claimed.
        verdict = await runtime.gate.decide(call, hold=hold, can_edit=False)
    match verdict:
        case Allow() | Approved(change=None):
            return Response(status_code=200)  # empty: Docker's gateway runs the call
        case Approved(request=approved):  # not reached with can_edit=False; never run it
            return _answer(refusal(Deny(messages.edit_unsupported(approved))))
        case Deny() | Held() | Rejected() | Expired() as refused:
            return _answer(refusal(refused))
