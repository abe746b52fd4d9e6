"""One upstream MCP session per agent session, for hosts that serve many agents at once.

`SessionUpstreams` implements `server.UpstreamRouter`. The first request of
an agent session (or its `notifications/initialized`) opens an upstream
session of its own through `connect` (streamable HTTP or a child process), so
agents never share upstream state: a browser, a codegen session,
subscriptions. Because the upstream session opens after the agent's
handshake, it advertises what the agent itself supports, and the upstream's
server-to-client requests are relayed:

- `sampling/createMessage` and `elicitation/create` when the agent declared
  sampling or elicitation, `roots/list` when it declared roots;
- each goes to the agent on the stream of the agent request in flight (the
  most recent one when several are), else on the session's standalone stream.

Upstream `notifications/message` go the same way; list-changed and
resource-updated notifications go on the standalone stream.

An upstream session ends with its agent session: when the agent ends it
(`close`, called on `DELETE` or when the session manager no longer knows the
id), or after `idle_timeout` seconds without an agent request in flight. If
the upstream session fails, the next request of the agent opens a new one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import mcp_types as types
from mcp.client.session import ClientRequestContext, ClientSession, IncomingMessage
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST
from pydantic import BaseModel

from gateway_plugin.proxy.relay import RELAYED_NOTIFICATIONS

if TYPE_CHECKING:
    from mcp.client._transport import ReadStream, WriteStream
    from mcp.shared.message import SessionMessage

__all__ = ["SessionUpstreams", "UpstreamTransport", "agent_session_id", "describe"]

logger = logging.getLogger(__name__)

UpstreamTransport = Callable[
    [],
    AbstractAsyncContextManager[
        "tuple[ReadStream[SessionMessage | Exception], WriteStream[SessionMessage]]"
    ],
]
"""Opens one connection to the upstream server: `async with connect() as (read, write)`."""

_ResultT = TypeVar("_ResultT", bound=BaseModel)
_Ctx = ServerRequestContext[Any, Any]

DEFAULT_OPEN_TIMEOUT_SECONDS = 30.0


def agent_session_id(ctx: _Ctx) -> str | None:
    """The agent's `Mcp-Session-Id`, when the request came over stateful streamable HTTP."""
    headers = getattr(ctx.request, "headers", None)
    if isinstance(headers, Mapping):
        value = headers.get(MCP_SESSION_ID_HEADER)
        if isinstance(value, str) and value:
            return value
    return None


def describe(exc: BaseException) -> str:
    """What went wrong, from the one exception inside nested groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__


@dataclass(eq=False)
class _Upstream:
    """The upstream session of one agent session."""

    key: str
    agent_caps: types.ClientCapabilities | None
    ready: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    session: ClientSession | None = None
    error: str | None = None
    # The agent connection's session object, for the standalone stream.
    agent: ServerSession | None = None
    # Agent requests being forwarded now, oldest first.
    requests: list[_Ctx] = field(default_factory=list)
    # HTTP requests of this agent session in flight (from the ASGI host), and since when idle.
    active: int = 0
    idle_since: float = 0.0

    def target(self) -> _Ctx | None:
        return self.requests[-1] if self.requests else None


class SessionUpstreams:
    """Opens, routes to and closes one upstream session per agent session."""

    def __init__(
        self,
        connect: UpstreamTransport,
        *,
        client_name: str = "signoff-gateway",
        client_version: str = "",
        idle_timeout: float | None = None,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT_SECONDS,
    ) -> None:
        self._connect = connect
        self._client_info = types.Implementation(name=client_name, version=client_version)
        self._idle_timeout = idle_timeout
        self._open_timeout = open_timeout
        self._entries: dict[str, _Upstream] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Run the upstream sessions' tasks; all of them end when this exits."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self._idle_timeout is not None:
                tg.start_soon(self._reap_idle, self._idle_timeout)
            try:
                yield
            finally:
                self._tg = None
                for entry in list(self._entries.values()):
                    entry.done.set()
                self._entries.clear()
                tg.cancel_scope.cancel()

    # -- server.UpstreamRouter ---------------------------------------------------

    async def upstream_for(self, ctx: _Ctx) -> ClientSession:
        entry = self._entry(ctx)
        with anyio.move_on_after(self._open_timeout):
            await entry.ready.wait()
        if entry.session is None:
            self._forget(entry)
            reason = entry.error or f"no answer within {self._open_timeout:g} s"
            raise MCPError(
                code=INTERNAL_ERROR, message=f"could not open the upstream session: {reason}"
            )
        return entry.session

    @contextmanager
    def in_flight(self, ctx: _Ctx) -> Iterator[None]:
        entry = self._entries.get(self._key(ctx))
        if entry is None:
            yield
            return
        entry.requests.append(ctx)
        try:
            yield
        finally:
            entry.requests.remove(ctx)

    def agent_ready(self, ctx: _Ctx) -> None:
        # Open the upstream now, so the agent's first request does not wait for it.
        self._entry(ctx)

    # -- session lifecycle (called by the HTTP host) --------------------------------

    def request_started(self, session_id: str) -> None:
        """An HTTP request of the agent session `session_id` began."""
        entry = self._entries.get(session_id)
        if entry is not None:
            entry.active += 1

    def request_finished(self, session_id: str) -> None:
        """An HTTP request of the agent session `session_id` ended."""
        entry = self._entries.get(session_id)
        if entry is not None:
            entry.active = max(0, entry.active - 1)
            entry.idle_since = anyio.current_time()

    def close(self, session_id: str) -> None:
        """The agent session ended: close its upstream session."""
        entry = self._entries.pop(session_id, None)
        if entry is not None:
            entry.done.set()

    # -- internals -------------------------------------------------------------------

    @staticmethod
    def _key(ctx: _Ctx) -> str:
        # Stateless HTTP has no session: such requests share one upstream session.
        return agent_session_id(ctx) or ""

    def _entry(self, ctx: _Ctx) -> _Upstream:
        key = self._key(ctx)
        entry = self._entries.get(key)
        if entry is None:
            if self._tg is None:
                raise RuntimeError("SessionUpstreams.run() is not active")
            entry = _Upstream(key, ctx.session.client_capabilities, idle_since=anyio.current_time())
            self._entries[key] = entry
            self._tg.start_soon(self._serve, entry)
        entry.agent = ctx.session
        return entry

    def _forget(self, entry: _Upstream) -> None:
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
        entry.done.set()

    async def _serve(self, entry: _Upstream) -> None:
        caps = entry.agent_caps or types.ClientCapabilities()
        callbacks: dict[str, Any] = {}
        if caps.sampling is not None:
            callbacks["sampling_callback"] = self._sampling(entry)
        if caps.elicitation is not None:
            callbacks["elicitation_callback"] = self._elicitation(entry)
        if caps.roots is not None:
            callbacks["list_roots_callback"] = self._roots(entry)
        try:
            async with (
                self._connect() as (read, write),
                ClientSession(
                    read,
                    write,
                    message_handler=self._messages(entry),
                    client_info=self._client_info,
                    **callbacks,
                ) as session,
            ):
                with anyio.fail_after(self._open_timeout):
                    await session.initialize()
                entry.session = session
                entry.ready.set()
                await entry.done.wait()
        except Exception as exc:
            entry.error = describe(exc)
            logger.warning("upstream session of agent session %r ended: %s", entry.key, entry.error)
        finally:
            entry.ready.set()
            if self._entries.get(entry.key) is entry:
                # It failed on its own: the agent's next request opens a new one.
                del self._entries[entry.key]

    async def _reap_idle(self, idle_timeout: float) -> None:
        while True:
            await anyio.sleep(max(1.0, min(60.0, idle_timeout / 4)))
            now = anyio.current_time()
            for entry in list(self._entries.values()):
                if entry.active or entry.requests:
                    continue
                if now - entry.idle_since >= idle_timeout:
                    logger.info("closing the idle upstream session of %r", entry.key)
                    self._forget(entry)

    async def _ask_agent(
        self, entry: _Upstream, request: types.ServerRequest, result_type: type[_ResultT]
    ) -> _ResultT | types.ErrorData:
        """Send an upstream server-to-client request on to the agent."""
        target = entry.target()
        try:
            if target is not None:
                return await target.session.send_request(
                    request,
                    result_type,
                    metadata=ServerMessageMetadata(related_request_id=target.request_id),
                )
            if entry.agent is not None:
                return await entry.agent.send_request(request, result_type)
        except MCPError as exc:
            return exc.error
        except Exception as exc:
            logger.exception("relaying %s to the agent failed", request.method)
            return types.ErrorData(code=INTERNAL_ERROR, message=f"the agent failed: {exc}")
        return types.ErrorData(code=INVALID_REQUEST, message="no agent is connected")

    def _sampling(self, entry: _Upstream) -> Any:
        async def sampling(
            context: ClientRequestContext, params: types.CreateMessageRequestParams
        ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
            request = types.CreateMessageRequest(params=params)
            if params.tools:
                return await self._ask_agent(entry, request, types.CreateMessageResultWithTools)
            return await self._ask_agent(entry, request, types.CreateMessageResult)

        return sampling

    def _elicitation(self, entry: _Upstream) -> Any:
        async def elicitation(
            context: ClientRequestContext, params: types.ElicitRequestParams
        ) -> types.ElicitResult | types.ErrorData:
            return await self._ask_agent(
                entry, types.ElicitRequest(params=params), types.ElicitResult
            )

        return elicitation

    def _roots(self, entry: _Upstream) -> Any:
        async def roots(context: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
            return await self._ask_agent(entry, types.ListRootsRequest(), types.ListRootsResult)

        return roots

    def _messages(self, entry: _Upstream) -> Any:
        async def on_message(message: IncomingMessage) -> None:
            if isinstance(message, Exception):
                logger.warning("upstream transport error (%r): %r", entry.key, message)
                return
            try:
                target = entry.target()
                if isinstance(message, types.LoggingMessageNotification) and target is not None:
                    # Where the upstream logged it: in the course of a request.
                    await target.session.send_notification(
                        message, related_request_id=target.request_id
                    )
                elif isinstance(message, RELAYED_NOTIFICATIONS) and entry.agent is not None:
                    await entry.agent.send_notification(message)
            except Exception:
                logger.exception("relaying %s to agent session %r failed", message, entry.key)

        return on_message
