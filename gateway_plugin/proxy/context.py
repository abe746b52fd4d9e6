"""Helpers for code running inside a tool-call interceptor (`Extension.intercept_tool_call`).

They only read the public surface of `ServerRequestContext`, so they work under
any host that serves the interceptor through the SDK's lowlevel server, not
just the built-in proxy.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

__all__ = [
    "TASKS_EXTENSION",
    "ClientFeatures",
    "ProgressReporter",
    "ProxyRunState",
    "caller_name",
    "client_features",
    "progress_reporter",
    "session_key",
]

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"

ProgressReporter = Callable[[float, float | None, str | None], Awaitable[None]]
"""`await report(progress, total, message)` sends one `notifications/progress` to the agent."""

# Identifies this process when nothing narrower is known; see `session_key`.
_PROCESS_KEY = f"process:{uuid.uuid4().hex}"


@dataclass(frozen=True)
class ProxyRunState:
    """Lifespan state of a proxy `Server`: one instance per `Server.run`.

    On stdio a run serves exactly one agent connection, so `run_id` doubles as
    a connection id there. Under streamable HTTP the lifespan is shared by all
    sessions, which is why `session_key` prefers the transport session id.
    """

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def progress_reporter(ctx: ServerRequestContext[Any, Any]) -> ProgressReporter | None:
    """Return a `notifications/progress` sender for this request; None without a progressToken."""
    if progress_token_from_params(ctx.params) is None:
        return None
    session = ctx.session

    async def report(
        progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        # The request-scoped channel stamps the agent's own token and routes
        # onto the request's stream (the originating POST under streamable HTTP).
        await session.report_progress(progress, total, message)

    return report


def session_key(ctx: ServerRequestContext[Any, Any]) -> str:
    """Return a stable id for the agent's MCP session: transport session id, else connection."""
    headers = getattr(ctx.request, "headers", None)
    if isinstance(headers, Mapping):
        session_id = headers.get(MCP_SESSION_ID_HEADER)
        if isinstance(session_id, str) and session_id:
            return f"mcp-session:{session_id}"
    state = ctx.lifespan_context
    if isinstance(state, ProxyRunState):
        return f"connection:{state.run_id}"
    # A host we do not know: stdio serves one connection per process, and
    # stateless HTTP has no session to tell callers apart anyway.
    return _PROCESS_KEY


def caller_name(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The authenticated agent behind an HTTP request (the bearer token's name), if any.

    Set by `gateway_plugin.agent_auth.AgentAuthMiddleware`, or by any host that
    puts the SDK's `AuthenticatedUser` on the request; None on stdio.
    """
    scope = getattr(ctx.request, "scope", None)
    user = scope.get("user") if isinstance(scope, Mapping) else None
    if isinstance(user, AuthenticatedUser):
        return user.access_token.client_id
    return None


@dataclass(frozen=True)
class ClientFeatures:
    """What the client of one request can do, as it declared it (for that very request on
    2026-07-28, where capabilities travel with each request, else at its handshake)."""

    # 2026-07-28 or later: held and confirm calls answer with InputRequiredResult rounds.
    rounds: bool = False
    form_elicitation: bool = False
    url_elicitation: bool = False
    tasks: bool = False


def client_features(ctx: ServerRequestContext[Any, Any]) -> ClientFeatures:
    """The `ClientFeatures` of the request `ctx`."""
    caps = ctx.session.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    # A bare `elicitation: {}` (the form of earlier revisions) means form mode.
    form = elicitation is not None and (elicitation.form is not None or elicitation.url is None)
    rounds = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
    extensions = (caps.extensions if caps is not None else None) or {}
    return ClientFeatures(
        rounds=rounds,
        form_elicitation=form,
        url_elicitation=elicitation is not None and elicitation.url is not None,
        # The tasks extension is a 2026-07-28 one; never hand a task to an older client.
        tasks=rounds and TASKS_EXTENSION in extensions,
    )
