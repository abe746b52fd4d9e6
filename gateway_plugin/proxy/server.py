"""The agent-facing MCP server of the proxy, mirroring an upstream session.

`build_proxy_server` turns an initialized upstream `ClientSession` into a
lowlevel `Server` that mirrors it; `relay.UpstreamRelay` carries what the
upstream sends on its own (notifications, `roots/list`) to the agent. The stdio host
(`gateway_plugin.proxy.stdio`) wires the two to stdio. `build_routed_proxy_server`
is the same server with one upstream session per agent connection, chosen per
request by an `UpstreamRouter`; the streamable-HTTP host (`proxy.http`) uses it.

Each request is re-sent upstream by `forwarding.Forwarder`; its docstring says
what passes through (MCP SDK 2.3.0) and what does not.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any, Protocol, runtime_checkable

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.server.context import ServerRequestContext
from mcp.server.extension import Extension
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway_plugin.proxy.context import ProxyRunState
from gateway_plugin.proxy.forwarding import Forwarder, ToolFilter, with_side_calls
from gateway_plugin.proxy.relay import UpstreamRelay

__all__ = [
    "ProxyServer",
    "ToolFilter",
    "UpstreamRouter",
    "build_proxy_server",
    "build_routed_proxy_server",
    "gateway_version",
]


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
        Forwarder(fixed, visible_tool_filter),
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
        Forwarder(router.upstream_for, visible_tool_filter, router.in_flight),
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
    fwd: Forwarder,
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
            "tools/call", types.CallToolRequestParams, with_side_calls(fwd, extensions)
        )
    if caps.resources is not None:
        server.add_request_handler(
            "resources/list",
            types.PaginatedRequestParams,
            fwd.relay(types.ListResourcesRequest, types.ListResourcesResult),
        )
        server.add_request_handler(
            "resources/templates/list",
            types.PaginatedRequestParams,
            fwd.relay(types.ListResourceTemplatesRequest, types.ListResourceTemplatesResult),
        )
        server.add_request_handler(
            "resources/read",
            types.ReadResourceRequestParams,
            fwd.relay(types.ReadResourceRequest, types.ReadResourceResult),
        )
        if caps.resources.subscribe:
            server.add_request_handler(
                "resources/subscribe",
                types.SubscribeRequestParams,
                fwd.relay(types.SubscribeRequest, types.EmptyResult),
            )
            server.add_request_handler(
                "resources/unsubscribe",
                types.UnsubscribeRequestParams,
                fwd.relay(types.UnsubscribeRequest, types.EmptyResult),
            )
    if caps.prompts is not None:
        server.add_request_handler(
            "prompts/list",
            types.PaginatedRequestParams,
            fwd.relay(types.ListPromptsRequest, types.ListPromptsResult),
        )
        server.add_request_handler(
            "prompts/get",
            types.GetPromptRequestParams,
            fwd.relay(types.GetPromptRequest, types.GetPromptResult),
        )
    if caps.completions is not None:
        server.add_request_handler(
            "completion/complete",
            types.CompleteRequestParams,
            fwd.relay(types.CompleteRequest, types.CompleteResult),
        )
    if caps.logging is not None:
        # add_request_handler, not on_set_logging_level=: same capability, no deprecation warning.
        server.add_request_handler(
            "logging/setLevel",
            types.SetLevelRequestParams,
            fwd.relay(types.SetLevelRequest, types.EmptyResult),
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


def gateway_version() -> str:
    """The installed Signoff version, reported as the proxy's `serverInfo.version`."""
    try:
        return importlib.metadata.version("signoff")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
