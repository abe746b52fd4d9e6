"""Re-sends each agent request to the upstream session and returns its typed result.

`Forwarder` holds the per-method handlers that `server.build_proxy_server`
registers; `with_side_calls` wraps the `tools/call` chain.

What passes through (MCP SDK 2.3.0, handshake-era agents):

- Capabilities mirror the upstream's `initialize` result: tools, resources
  (templates, read, subscribe/unsubscribe when advertised), prompts,
  completion and logging/setLevel are served only if the upstream advertises
  them, with the same `listChanged`/`subscribe` flags. Upstream
  `instructions` are passed on; `serverInfo.name` is the proxy's own.
- Requests are re-sent upstream with the agent's params (pagination cursor
  and `_meta` included). Hop-by-hop `_meta` keys (the 2026 envelope and the
  progress token) are not forwarded verbatim: the SDK mints the upstream
  progress token and progress is re-addressed to the agent's token.
- Upstream JSON-RPC errors reach the agent with the same code, message and
  data; a `CallToolResult` with `isError` is returned unchanged.
- `tools/call` runs through the extensions' `intercept_tool_call` chain
  (first extension outermost); `visible_tool_filter` edits `tools/list` pages.
  Inside the chain `context.upstream_tool_call()` runs another tool on the same
  upstream session (a rule's preview call), without progress to the agent.
  The filter only hides: refusing calls to hidden tools is the interceptor's job.
- Progress for forwarded requests reaches the agent when it sent a progressToken.
- An agent's `notifications/cancelled` cancels the handler (the interceptor's
  wait or the upstream request); the SDK then sends `notifications/cancelled`
  upstream for an abandoned upstream request.
- Upstream tools/resources/prompts `list_changed`, `resources/updated` and
  `notifications/message` are relayed to every agent connection that has
  completed its handshake; the relay drops what arrives before that.
- With `forward_roots=True` the upstream `roots/list` is answered by the agent
  and the agent's `roots/list_changed` is passed upstream.

What does not (limitations in SDK 2.3.0 or deliberate):

- With one shared upstream session (`build_proxy_server`, the stdio host),
  server-to-client sampling and elicitation are not forwarded: the upstream
  handshake completes before any agent connects, so the proxy cannot advertise
  the agent's client capabilities; the upstream sees a client without them.
  For the same reason roots forwarding is opt-in. `build_routed_proxy_server`
  (the streamable-HTTP host) opens an upstream session per agent after its
  handshake and relays all three (`sessions.SessionUpstreams`).
- 2026-07-28 (modern era) agents get requests and progress, but no unsolicited
  notifications: at that era they are delivered on `subscriptions/listen`
  streams, which the proxy does not serve.
- The upstream's own tasks, `InputRequiredResult` rounds and extension result
  claims are not proxied; the upstream session is expected to speak the
  handshake era. (The gateway's own rounds and tasks for held calls are the
  extension's: `Extension.methods()` are served and `modern_extensions()` are
  advertised in `server/discover`.)
- Result fields unknown to the SDK's models are dropped, since results are
  parsed into typed models on the way through.
- Upstream `ping` is not forwarded; the proxy answers `ping` itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, compose_tool_call_handler
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    INTERNAL_ERROR,
    PROTOCOL_VERSION_META_KEY,
)
from pydantic import BaseModel, ValidationError

from gateway_plugin.preview_call import SIDE_CALL
from gateway_plugin.proxy.context import progress_reporter

__all__ = ["Forwarder", "ToolFilter", "UpstreamResolver", "with_side_calls"]

logger = logging.getLogger(__name__)

ToolFilter = Callable[[list[types.Tool]], list[types.Tool]]
"""Returns the tools the agent may see, given one upstream `tools/list` page."""

UpstreamResolver = Callable[[ServerRequestContext[Any, Any]], Awaitable[ClientSession]]
"""Returns the upstream session that serves the agent connection of a request."""

_ParamsT = TypeVar("_ParamsT", bound=types.RequestParams)
_ResultT = TypeVar("_ResultT", bound=BaseModel)

# `_meta` keys that describe the agent->proxy hop, not the request: the 2026
# envelope (the upstream session stamps its own) and the progress token (the
# SDK mints one per upstream request). `progress_token` is the parsed key.
_HOP_META_KEYS = frozenset(
    {
        PROTOCOL_VERSION_META_KEY,
        CLIENT_INFO_META_KEY,
        CLIENT_CAPABILITIES_META_KEY,
        "progress_token",
        "progressToken",
    }
)


def with_side_calls(
    fwd: Forwarder, extensions: Sequence[Extension]
) -> Callable[
    [ServerRequestContext[Any, Any], types.CallToolRequestParams], Awaitable[HandlerResult]
]:
    """The tools/call chain, with `preview_call.SIDE_CALL` set inside it."""
    chain = compose_tool_call_handler(extensions, fwd.call_tool)

    async def handler(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> HandlerResult:
        async def side_call(tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
            return await fwd.side_call(ctx, tool, arguments)

        token = SIDE_CALL.set(side_call)
        try:
            return await chain(ctx, params)
        finally:
            SIDE_CALL.reset(token)

    return handler


def _hop_params(params: _ParamsT) -> _ParamsT:
    """Return `params` without the hop-by-hop `_meta` keys."""
    if not params.meta or _HOP_META_KEYS.isdisjoint(params.meta):
        return params
    meta = {k: v for k, v in params.meta.items() if k not in _HOP_META_KEYS}
    return params.model_copy(update={"meta": meta or None})


def _progress_relay(ctx: ServerRequestContext[Any, Any]) -> ProgressFnT | None:
    report = progress_reporter(ctx)
    if report is None:
        return None

    async def relay(progress: float, total: float | None, message: str | None) -> None:
        await report(progress, total, message)

    return relay


class Forwarder:
    """The per-method handlers: re-send the agent's request upstream and return the typed result."""

    def __init__(
        self,
        upstream_for: UpstreamResolver,
        tool_filter: ToolFilter | None,
        in_flight: Callable[[ServerRequestContext[Any, Any]], AbstractContextManager[None]]
        | None = None,
    ) -> None:
        self._upstream_for = upstream_for
        self._tool_filter = tool_filter
        self._in_flight = in_flight or (lambda ctx: nullcontext())

    async def _send(
        self,
        ctx: ServerRequestContext[Any, Any],
        request: types.ClientRequest,
        result_type: type[_ResultT],
    ) -> _ResultT:
        upstream = await self._upstream_for(ctx)
        try:
            with self._in_flight(ctx):
                return await upstream.send_request(
                    request, result_type, progress_callback=_progress_relay(ctx)
                )
        except ValidationError:
            # Left alone this would reach the agent as INVALID_PARAMS, blaming its request.
            logger.exception("upstream returned an invalid %s result", request.method)
            raise MCPError(
                code=INTERNAL_ERROR, message=f"upstream returned an invalid {request.method} result"
            ) from None

    async def side_call(
        self, ctx: ServerRequestContext[Any, Any], tool: str, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        """Call `tool` on the upstream session of `ctx`'s agent connection, on Signoff's
        behalf (a preview): no progress goes to the agent."""
        upstream = await self._upstream_for(ctx)
        request = types.CallToolRequest(
            params=types.CallToolRequestParams(name=tool, arguments=arguments)
        )
        with self._in_flight(ctx):
            return await upstream.send_request(request, types.CallToolResult)

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> types.ListToolsResult:
        result = await self._send(
            ctx, types.ListToolsRequest(params=_hop_params(params)), types.ListToolsResult
        )
        if self._tool_filter is not None:
            result.tools = self._tool_filter(list(result.tools))
        return result

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if params.request_state is not None or params.input_responses is not None:
            # The agent's rounds with the gateway (a sealed state, its answers): not the
            # upstream's business, and the state is the gateway's own secret-signed token.
            params = params.model_copy(update={"request_state": None, "input_responses": None})
        return await self._send(
            ctx, types.CallToolRequest(params=_hop_params(params)), types.CallToolResult
        )

    def relay(
        self, request_type: Callable[..., types.ClientRequest], result_type: type[_ResultT]
    ) -> Callable[[ServerRequestContext[Any, Any], Any], Awaitable[_ResultT]]:
        """A handler that re-sends the agent's request as `request_type` and returns its result."""

        async def handler(ctx: ServerRequestContext[Any, Any], params: Any) -> _ResultT:
            return await self._send(ctx, request_type(params=_hop_params(params)), result_type)

        return handler

    async def roots_list_changed(
        self, ctx: ServerRequestContext[Any, Any], params: types.NotificationParams
    ) -> None:
        upstream = await self._upstream_for(ctx)
        await upstream.send_notification(types.RootsListChangedNotification())
