"""Upstream-initiated traffic for the proxy: notifications and `roots/list` towards the agent.

Unlike requests, which arrive with the agent request they answer, these come
from the upstream session on its own, so the relay keeps the agent
connections that completed their handshake and fans out to them. Agents on
the 2026-07-28 era never send `notifications/initialized` and are not
attached: at that era change notifications travel on `subscriptions/listen`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.client.session import ClientRequestContext, ClientSession, IncomingMessage
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST

from gateway_plugin.proxy.context import session_key

if TYPE_CHECKING:
    from mcp.client._transport import ReadStream, WriteStream
    from mcp.shared.message import SessionMessage

__all__ = ["RELAYED_NOTIFICATIONS", "UpstreamRelay", "open_upstream_session"]

logger = logging.getLogger(__name__)

RELAYED_NOTIFICATIONS = (
    types.ToolListChangedNotification,
    types.ResourceListChangedNotification,
    types.PromptListChangedNotification,
    types.ResourceUpdatedNotification,
    types.LoggingMessageNotification,
)


class UpstreamRelay:
    """Carries upstream-initiated traffic (notifications, `roots/list`) to the agent connections.

    Pass `on_upstream_message` (and `list_roots` when roots are forwarded) to
    the upstream `ClientSession`, and the relay to `build_proxy_server`, which
    attaches each agent connection once its handshake completes.
    """

    def __init__(self, *, forward_roots: bool = False, agent_wait_seconds: float = 30.0) -> None:
        self.forward_roots = forward_roots
        self._agent_wait_seconds = agent_wait_seconds
        self._agents: dict[str, ServerSession] = {}
        self._attached: anyio.Event | None = None

    def _attached_event(self) -> anyio.Event:
        # Created lazily: an anyio.Event needs a running event loop.
        if self._attached is None:
            self._attached = anyio.Event()
        return self._attached

    def attach_agent(self, ctx: ServerRequestContext[Any, Any]) -> None:
        """Start relaying to the agent connection `ctx` belongs to."""
        # Keeping the notification's ServerSession is enough: without a related
        # request id it sends on the connection's standalone channel.
        self._agents[session_key(ctx)] = ctx.session
        self._attached_event().set()

    async def on_upstream_message(self, message: IncomingMessage) -> None:
        """`ClientSession.message_handler`: relay one upstream notification to the agents."""
        if isinstance(message, Exception):
            logger.warning("upstream transport error: %r", message)
            return
        # Progress is re-addressed per request by the forwarding handlers, and
        # anything else has no meaning for the agent without the matching request.
        if not isinstance(message, RELAYED_NOTIFICATIONS):
            return
        if not self._agents:
            logger.debug("dropped upstream %s: no agent connected yet", message.method)
        for key, session in list(self._agents.items()):
            try:
                await session.send_notification(message)
            except Exception:
                logger.exception("relaying %s to %s failed", message.method, key)

    async def list_roots(
        self, context: ClientRequestContext
    ) -> types.ListRootsResult | types.ErrorData:
        """`ClientSession.list_roots_callback`: answer the upstream with the agent's roots."""
        with anyio.move_on_after(self._agent_wait_seconds):
            await self._attached_event().wait()
        for session in list(self._agents.values()):
            caps = session.client_capabilities
            if caps is None or caps.roots is None:
                continue
            try:
                return await session.send_request(types.ListRootsRequest(), types.ListRootsResult)
            except MCPError as exc:
                return exc.error
        return types.ErrorData(
            code=INVALID_REQUEST, message="the agent behind the gateway does not expose roots"
        )


@asynccontextmanager
async def open_upstream_session(
    read_stream: ReadStream[SessionMessage | Exception],
    write_stream: WriteStream[SessionMessage],
    relay: UpstreamRelay,
    *,
    client_name: str = "signoff-gateway",
    client_version: str = "",
) -> AsyncIterator[ClientSession]:
    """Open and initialize the upstream `ClientSession`, wired to `relay`."""
    session = ClientSession(
        read_stream,
        write_stream,
        message_handler=relay.on_upstream_message,
        list_roots_callback=relay.list_roots if relay.forward_roots else None,
        client_info=types.Implementation(name=client_name, version=client_version),
    )
    async with session:
        await session.initialize()
        yield session
