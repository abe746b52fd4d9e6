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
`ApprovalGate` the proxy uses, talking to this service in-process. Each token
(and ?hold=) keeps one gate, in a small pool closed when the service stops; all
of them count against one set of rate limits, so no ?hold= value resets a
token's counters: deny, hide and rate limits answer at once; a call that
needs approval is held, then either continues (approved: empty body, the
approval claimed for this one run) or is refused with the pending, rejected or
expired text. A retry of the identical call attaches to the same request.
Whatever goes wrong is a refusal, never an empty body: the route fails closed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from mcp_types import CallToolResult, TextContent

from approvals.models import Role
from approvals.settings import Settings
from approvals.tokens import TokenCache
from gateway_plugin.audit_reporter import AuditReporter
from gateway_plugin.gate import DEFAULT_HOLD_SECONDS, ToolCall
from gateway_plugin.handback import HandBackGate
from gateway_plugin.policy import RateLimiter
from gateway_plugin.service_client import ServiceClient

_ROLES = {Role.GATEWAY.value, Role.ADMIN.value}
_MAX_HOLD_SECONDS = 600.0
# Gates kept at once; the least recently used idle one is closed beyond this.
_MAX_GATES = 64

GateKey = tuple[str, float]


class GatePool:
    """The interceptor's gates, one per (token digest, hold), sharing one rate limiter."""

    def __init__(self, limit: int = _MAX_GATES) -> None:
        self._gates: OrderedDict[GateKey, HandBackGate] = OrderedDict()
        self._busy: Counter[GateKey] = Counter()
        self._limit = limit
        self._closing: set[asyncio.Task[None]] = set()
        # One limiter for every gate: counters follow the caller, not the gate object.
        self.limiter = RateLimiter()

    def __len__(self) -> int:
        return len(self._gates)

    @asynccontextmanager
    async def use(
        self, key: GateKey, build: Callable[[], HandBackGate]
    ) -> AsyncIterator[HandBackGate]:
        """The gate for `key` (built on first use); it is not closed while in use."""
        gate = self._gates.get(key)
        if gate is None:
            gate = build()
            gate.limiter = self.limiter
            self._gates[key] = gate
        self._gates.move_to_end(key)
        self._busy[key] += 1
        self._evict()
        try:
            yield gate
        finally:
            self._busy[key] -= 1
            if self._busy[key] <= 0:
                del self._busy[key]

    def _evict(self) -> None:
        for key in list(self._gates):  # least recently used first
            if len(self._gates) <= self._limit:
                return
            if self._busy[key] == 0:
                task = asyncio.get_running_loop().create_task(_close(self._gates.pop(key)))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        gates = list(self._gates.values())
        self._gates.clear()
        await asyncio.gather(*(_close(gate) for gate in gates), *self._closing)


async def _close(gate: HandBackGate) -> None:
    """Send what the gate still has queued (briefly) and close its connections."""
    await gate.drain(timeout=2)
    if gate.audit is not None:
        await gate.audit.aclose(timeout=2)
    await gate.service.aclose()


def _pool(app: FastAPI) -> GatePool:
    pool: GatePool | None = getattr(app.state, "docker_interceptor_gates", None)
    if pool is None:
        pool = app.state.docker_interceptor_gates = GatePool()
    return pool


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    pool: GatePool | None = getattr(app.state, "docker_interceptor_gates", None)
    if pool is not None:
        await pool.aclose()


router = APIRouter(prefix="/api/v1/interceptors", lifespan=_lifespan)


def _refusal(text: str, status: int = 200) -> Response:
    result = CallToolResult(content=[TextContent(text=text)], is_error=True)
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


def _new_gate(app: FastAPI, token: str, caller: str, hold: float) -> HandBackGate:
    """A gate for one token and hold, talking to this app in-process."""
    settings: Settings = app.state.settings
    base_url = settings.base_url()

    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(_MAX_HOLD_SECONDS + 30),
        )

    return HandBackGate(
        app.state.policy,
        ServiceClient(base_url, token, http=client()),
        agent=caller,
        token=token,
        hold_seconds=hold,
        audit=AuditReporter(base_url, token, http=client()),
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
    key = (hashlib.sha256(token.encode()).hexdigest(), hold)
    app: FastAPI = request.app
    async with _pool(app).use(key, lambda: _new_gate(app, token, caller, hold)) as gate:
        gate.replace_policy(policy)  # the service's, as reloaded on change
        refusal = await gate.decide(call)
    if refusal is None:
        return Response(status_code=200)
    return Response(
        refusal.model_dump_json(by_alias=True, exclude_none=True),
        media_type="application/json",
    )
