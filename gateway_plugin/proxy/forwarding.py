"""Transport-neutral bridge between an upstream MCP client session and the agent-facing server.

`build_proxy_server` turns an initialized upstream `ClientSession` into a
lowlevel `Server` that mirrors it; `relay.UpstreamRelay` carries what the
upstream sends on its own (notifications, `roots/list`) to the agent. The stdio host
(`gateway_plugin.proxy.stdio`) wires the two to stdio. `build_routed_proxy_server`
is the same server with one upstream session per agent connection, chosen per
request by an `UpstreamRouter`; the streamable-HTTP host (`proxy.http`) uses it.

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

import importlib.metadata
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any, Protocol, TypeVar, runtime_checkable

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, compose_tool_call_handler
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    INTERNAL_ERROR,
    PROTOCOL_VERSION_META_KEY,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from gateway_plugin.preview_call import SIDE_CALL
from gateway_plugin.proxy.context import ProxyRunState, progress_reporter
from gateway_plugin.proxy.relay import UpstreamRelay

__all__ = [
    "ProxyServer",
    "ToolFilter",
    "UpstreamRouter",
    "build_proxy_server",
    "build_routed_proxy_server",
    "gateway_version",
]

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


class ProxyServer(Server[ProxyRunState]):
    """Lowlevel server whose default initialization options mirror the upstream's `listChanged`.

    Hosts that never pass options explicitly (the streamable-HTTP session
    manager) still advertise the upstream's notification capabilities.
    """

    def __init__(
        self,
        name: str,
        *,
        version: str,
        instructions: str | None,
        notification_options: NotificationOptions,
        run_state: ProxyRunState | None = None,
    ) -> None:
        @asynccontextmanager
        async def lifespan(_: Server[ProxyRunState]) -> AsyncIterator[ProxyRunState]:
            yield run_state or ProxyRunState()

        super().__init__(name, version=version, instructions=instructions, lifespan=lifespan)
        self.notification_options = notification_options
        # Extensions advertised to 2026-07-28 clients only (`server/discover`).
        self.modern_extensions: dict[str, dict[str, Any]] = {}

    def get_capabilities(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
        *,
        protocol_version: str | None = None,
    ) -> types.ServerCapabilities:
        """The server's capabilities, plus `modern_extensions` for a 2026-07-28 client."""
        caps = super().get_capabilities(
            notification_options,
            experimental_capabilities,
            extensions,
            protocol_version=protocol_version,
        )
        if protocol_version in MODERN_PROTOCOL_VERSIONS and self.modern_extensions:
            merged = {**(caps.extensions or {}), **self.modern_extensions}
            caps = caps.model_copy(update={"extensions": merged})
        return caps

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        """Initialization options, defaulting notification flags to the upstream's."""
        return super().create_initialization_options(
            notification_options or self.notification_options, experimental_capabilities, extensions
        )


def build_proxy_server(
    upstream_session: ClientSession,
    extensions: Sequence[Extension],
    *,
    name: str = "signoff-gateway",
    visible_tool_filter: ToolFilter | None = None,
    relay: UpstreamRelay | None = None,
    version: str | None = None,
    run_state: ProxyRunState | None = None,
) -> ProxyServer:
    """Build the agent-facing server that forwards to an already-initialized upstream session.

    `relay` (the one wired into `upstream_session`) attaches each agent
    connection for upstream notifications; `version` defaults to Signoff's;
    `run_state` fixes the lifespan state (a host that serves one connection
    shares it with code outside the server, such as the fast path).
    """
    caps = upstream_session.server_capabilities
    if caps is None:
        raise RuntimeError("the upstream session must be initialized before building the proxy")

    async def fixed(ctx: ServerRequestContext[Any, Any]) -> ClientSession:
        return upstream_session

    return _build(
        caps,
        upstream_session.instructions,
        _Forwarder(fixed, visible_tool_filter),
        extensions,
        name=name,
        version=version,
        run_state=run_state,
        on_agent_ready=relay.attach_agent if relay is not None else None,
        forward_roots_changed=relay is not None and relay.forward_roots,
    )


@runtime_checkable
class ModernExtensions(Protocol):
    """An extension that advertises protocol extensions to 2026-07-28 clients."""

    def modern_extensions(self) -> dict[str, dict[str, Any]]:
        """Extension identifier -> settings, for `server/discover`."""
        ...


class UpstreamRouter(Protocol):
    """Where each agent connection's requests go, for hosts with one upstream session per agent.

    The streamable-HTTP host implements it (`gateway_plugin.proxy.sessions`).
    """

    async def upstream_for(self, ctx: ServerRequestContext[Any, Any]) -> ClientSession:
        """The upstream session serving the agent connection `ctx` belongs to."""
        ...

    def in_flight(self, ctx: ServerRequestContext[Any, Any]) -> AbstractContextManager[None]:
        """Mark the agent request `ctx` as being forwarded (routes upstream-initiated traffic)."""
        ...

    def agent_ready(self, ctx: ServerRequestContext[Any, Any]) -> None:
        """The agent connection of `ctx` completed its handshake."""
        ...


def build_routed_proxy_server(
    router: UpstreamRouter,
    handshake: types.InitializeResult,
    extensions: Sequence[Extension],
    *,
    name: str = "signoff-gateway",
    visible_tool_filter: ToolFilter | None = None,
    version: str | None = None,
) -> ProxyServer:
    """Build a proxy server whose every agent connection has its own upstream session.

    `handshake` is the upstream's `initialize` result (from a probe session):
    the capabilities and instructions every agent connection is offered. Roots
    list changes are always passed on: the router only asks the agent for roots
    when the agent declared them.
    """
    return _build(
        handshake.capabilities,
        handshake.instructions,
        _Forwarder(router.upstream_for, visible_tool_filter, router.in_flight),
        extensions,
        name=name,
        version=version,
        run_state=None,
        on_agent_ready=router.agent_ready,
        forward_roots_changed=True,
    )


def _build(
    caps: types.ServerCapabilities,
    instructions: str | None,
    fwd: _Forwarder,
    extensions: Sequence[Extension],
    *,
    name: str,
    version: str | None,
    run_state: ProxyRunState | None,
    on_agent_ready: Callable[[ServerRequestContext[Any, Any]], None] | None,
    forward_roots_changed: bool,
) -> ProxyServer:
    server = ProxyServer(
        name,
        version=version if version is not None else gateway_version(),
        instructions=instructions,
        notification_options=NotificationOptions(
            prompts_changed=bool(caps.prompts and caps.prompts.list_changed),
            resources_changed=bool(caps.resources and caps.resources.list_changed),
            tools_changed=bool(caps.tools and caps.tools.list_changed),
        ),
        run_state=run_state,
    )
    if caps.tools is not None:
        for extension in extensions:
            # Methods an extension adds (the tasks extension's tasks/get, tasks/cancel).
            for binding in extension.methods():
                server.add_request_handler(binding.method, binding.params_type, binding.handler)
            if isinstance(extension, ModernExtensions):
                server.modern_extensions.update(extension.modern_extensions())
        server.add_request_handler("tools/list", types.PaginatedRequestParams, fwd.list_tools)
        server.add_request_handler(
            "tools/call", types.CallToolRequestParams, _with_side_calls(fwd, extensions)
        )
    if caps.resources is not None:
        server.add_request_handler(
            "resources/list", types.PaginatedRequestParams, fwd.list_resources
        )
        server.add_request_handler(
            "resources/templates/list", types.PaginatedRequestParams, fwd.list_resource_templates
        )
        server.add_request_handler(
            "resources/read", types.ReadResourceRequestParams, fwd.read_resource
        )
        if caps.resources.subscribe:
            server.add_request_handler(
                "resources/subscribe", types.SubscribeRequestParams, fwd.subscribe
            )
            server.add_request_handler(
                "resources/unsubscribe", types.UnsubscribeRequestParams, fwd.unsubscribe
            )
    if caps.prompts is not None:
        server.add_request_handler("prompts/list", types.PaginatedRequestParams, fwd.list_prompts)
        server.add_request_handler("prompts/get", types.GetPromptRequestParams, fwd.get_prompt)
    if caps.completions is not None:
        server.add_request_handler("completion/complete", types.CompleteRequestParams, fwd.complete)
    if caps.logging is not None:
        # add_request_handler, not on_set_logging_level=: same capability, no deprecation warning.
        server.add_request_handler(
            "logging/setLevel", types.SetLevelRequestParams, fwd.set_logging_level
        )
    if on_agent_ready is not None:
        ready = on_agent_ready

        async def on_initialized(
            ctx: ServerRequestContext[Any, Any], params: types.NotificationParams
        ) -> None:
            ready(ctx)

        server.add_notification_handler(
            "notifications/initialized", types.NotificationParams, on_initialized
        )
    if forward_roots_changed:
        server.add_notification_handler(
            "notifications/roots/list_changed", types.NotificationParams, fwd.roots_list_changed
        )
    return server


def _with_side_calls(
    fwd: _Forwarder, extensions: Sequence[Extension]
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


def gateway_version() -> str:
    """The installed Signoff version, reported as the proxy's `serverInfo.version`."""
    try:
        return importlib.metadata.version("signoff")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


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


class _Forwarder:
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

    async def list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> types.ListResourcesResult:
        request = types.ListResourcesRequest(params=_hop_params(params))
        return await self._send(ctx, request, types.ListResourcesResult)

    async def list_resource_templates(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> types.ListResourceTemplatesResult:
        request = types.ListResourceTemplatesRequest(params=_hop_params(params))
        return await self._send(ctx, request, types.ListResourceTemplatesResult)

    async def read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        request = types.ReadResourceRequest(params=_hop_params(params))
        return await self._send(ctx, request, types.ReadResourceResult)

    async def subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        return await self._send(
            ctx, types.SubscribeRequest(params=_hop_params(params)), types.EmptyResult
        )

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        return await self._send(
            ctx, types.UnsubscribeRequest(params=_hop_params(params)), types.EmptyResult
        )

    async def list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> types.ListPromptsResult:
        request = types.ListPromptsRequest(params=_hop_params(params))
        return await self._send(ctx, request, types.ListPromptsResult)

    async def get_prompt(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        return await self._send(
            ctx, types.GetPromptRequest(params=_hop_params(params)), types.GetPromptResult
        )

    async def complete(
        self, ctx: ServerRequestContext[Any, Any], params: types.CompleteRequestParams
    ) -> types.CompleteResult:
        return await self._send(
            ctx, types.CompleteRequest(params=_hop_params(params)), types.CompleteResult
        )

    async def set_logging_level(
        self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        return await self._send(
            ctx, types.SetLevelRequest(params=_hop_params(params)), types.EmptyResult
        )

    async def roots_list_changed(
        self, ctx: ServerRequestContext[Any, Any], params: types.NotificationParams
    ) -> None:
        upstream = await self._upstream_for(ctx)
        await upstream.send_notification(types.RootsListChangedNotification())
