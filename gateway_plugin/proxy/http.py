"""Streamable-HTTP host of the MCP proxy: agents connect to `http://HOST:PORT/mcp`.

The SDK's `StreamableHTTPSessionManager` serves the agent side (stateful
sessions, SSE streams, resumable GET streams) under uvicorn. Every agent
session gets its own upstream session (`sessions.SessionUpstreams`), opened
through the same `UpstreamTransport` as the probe session that learned the
upstream's capabilities at start-up.

Agents identify themselves with a bearer token (`agent_auth`); without an
authenticator every agent is the gateway's own identity (`--agent`, else the
gateway token's name), which suits a single trusted agent on loopback.
The stdio fast path does not apply here: every tools/call goes through the
extensions' `intercept_tool_call` chain.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import anyio
import mcp_types as types
import uvicorn
from mcp.client.session import ClientSession
from mcp.server.extension import Extension
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway_plugin.agent_auth import AgentAuthMiddleware, ServiceAgentAuth
from gateway_plugin.proxy.server import ToolFilter, build_routed_proxy_server, gateway_version
from gateway_plugin.proxy.sessions import SessionUpstreams, UpstreamTransport, describe
from gateway_plugin.proxy.upstream import UpstreamStartError

__all__ = [
    "DEFAULT_IDLE_TIMEOUT_SECONDS",
    "ListenError",
    "build_http_app",
    "probe_upstream",
    "run_http_proxy",
]

logger = logging.getLogger(__name__)

# An agent session (and its upstream session) with no request for this long is closed.
DEFAULT_IDLE_TIMEOUT_SECONDS = 30 * 60.0
PROBE_TIMEOUT_SECONDS = 30.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


async def probe_upstream(
    connect: UpstreamTransport, *, what: str, name: str = "signoff-gateway"
) -> types.InitializeResult:
    """Open one upstream session to learn its `initialize` result (UpstreamStartError if not)."""
    info = types.Implementation(name=name, version=gateway_version())
    try:
        async with connect() as (read, write), ClientSession(read, write, client_info=info) as s:
            with anyio.fail_after(PROBE_TIMEOUT_SECONDS):
                return await s.initialize()
    except UpstreamStartError:
        raise
    except Exception as exc:
        raise UpstreamStartError(
            f"could not open an MCP session with the upstream server {what} ({describe(exc)})"
        ) from exc


class ListenError(UpstreamStartError):
    """The gateway could not listen for agents."""


class _SessionTracker:
    """Tells the upstream sessions when an agent session is busy, idle or gone."""

    def __init__(self, app: ASGIApp, upstreams: SessionUpstreams) -> None:
        self.app = app
        self.upstreams = upstreams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        header = MCP_SESSION_ID_HEADER.encode()
        session_id = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k == header), None
        )
        if session_id is None:
            await self.app(scope, receive, send)
            return
        status: int | None = None

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.upstreams.request_started(session_id)
        try:
            await self.app(scope, receive, watch)
        finally:
            self.upstreams.request_finished(session_id)
            # A DELETE only succeeds for the session's owner; a 404 may be someone else's guess.
            if scope.get("method") == "DELETE" and status is not None and status < 300:
                self.upstreams.close(session_id)


def _security(host: str) -> TransportSecuritySettings | None:
    """DNS-rebinding protection when serving on loopback, as the SDK's own apps do."""
    if host not in _LOOPBACK:
        return None
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )


def build_http_app(
    handshake: types.InitializeResult,
    upstreams: SessionUpstreams,
    extensions: Sequence[Extension],
    *,
    host: str = "127.0.0.1",
    path: str = "/mcp",
    name: str = "signoff-gateway",
    visible_tool_filter: ToolFilter | None = None,
    auth: ServiceAgentAuth | None = None,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_SECONDS,
) -> Starlette:
    """The ASGI app serving agents at `path`; its lifespan runs the sessions."""
    server = build_routed_proxy_server(
        upstreams, handshake, extensions, name=name, visible_tool_filter=visible_tool_filter
    )
    manager = StreamableHTTPSessionManager(
        server, session_idle_timeout=idle_timeout, security_settings=_security(host)
    )
    endpoint: ASGIApp = _SessionTracker(manager.handle_request, upstreams)
    if auth is not None:
        endpoint = AgentAuthMiddleware(endpoint, auth)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with upstreams.run(), manager.run():
            yield

    return Starlette(routes=[Route(path, endpoint=endpoint)], lifespan=lifespan)


async def run_http_proxy(
    connect: UpstreamTransport,
    extensions: Sequence[Extension],
    *,
    what: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    path: str = "/mcp",
    name: str = "signoff-gateway",
    visible_tool_filter: ToolFilter | None = None,
    auth: ServiceAgentAuth | None = None,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_SECONDS,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve agents over streamable HTTP until interrupted (SIGINT/SIGTERM)."""
    handshake = await probe_upstream(connect, what=what, name=name)
    upstreams = SessionUpstreams(
        connect, client_name=name, client_version=gateway_version(), idle_timeout=idle_timeout
    )
    app = build_http_app(
        handshake,
        upstreams,
        extensions,
        host=host,
        path=path,
        name=name,
        visible_tool_filter=visible_tool_filter,
        auth=auth,
        idle_timeout=idle_timeout,
    )
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}{path}"

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await anyio.sleep(0.05)
        if on_ready is not None:
            on_ready(url)

    async with anyio.create_task_group() as tg:
        tg.start_soon(announce)
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn exits when it cannot bind
            raise ListenError(f"could not serve MCP at {url} (is the port in use?)") from exc
        tg.cancel_scope.cancel()
