"""The fast path: tools/call requests that need no human are relayed as JSON-RPC messages.

Holding a call for approval needs the full SDK server (request context,
progress, cancellation of a long wait). A call the policy simply allows, or
refuses outright, does not: routing it through the server and a second
client session costs several times what the upstream itself needs to echo a
message. So the stdio host puts this relay between the transports and the
SDK sessions. For each `tools/call` it asks the extensions to screen the call:

- "forward": the request goes upstream as it came (under an id of our own),
  and the upstream's answer, progress and errors go straight back;
- "reply": the extension's `CallToolResult` is the answer (denied, hidden,
  rate-limited) and nothing reaches the upstream;
- "intercept": the message continues to the SDK server, whose handler chain
  (`Extension.intercept_tool_call`) does the rest.

Everything else passes through untouched. The relay is only active when every
extension can screen (`ScreeningExtension`) and the agent asked for the same
protocol version the upstream session speaks, so messages need no translation.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import anyio
import mcp_types as types
from mcp.server.extension import Extension
from mcp.shared.message import SessionMessage
from mcp_types.jsonrpc import (
    CONNECTION_CLOSED,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
)

logger = logging.getLogger(__name__)

Verdict = tuple[Literal["forward", "reply", "intercept"], types.CallToolResult | None]


@runtime_checkable
class ScreeningExtension(Protocol):
    """An extension that can settle a call without the SDK server's request context."""

    def screen_tool_call(
        self, name: str, arguments: Mapping[str, Any], session: str
    ) -> Verdict:  # pragma: no cover - protocol
        ...


def _combine(
    extensions: Sequence[ScreeningExtension], name: str, args: Any, session: str
) -> Verdict:
    for extension in extensions:
        verdict = extension.screen_tool_call(name, args, session)
        if verdict[0] != "forward":
            return verdict
    return ("forward", None)


class FastPath:
    """Relays screened tools/call traffic between the agent and upstream transports."""

    def __init__(
        self,
        extensions: Sequence[Extension],
        *,
        session: str,
    ) -> None:
        screeners = [e for e in extensions if isinstance(e, ScreeningExtension)]
        self._screeners = screeners if len(screeners) == len(extensions) else None
        self._session = session
        self._upstream_version: str | None = None
        self._to_agent: Any = None
        self._to_upstream: Any = None
        self._active = False
        self._ids = itertools.count(1)
        # upstream request id -> (agent request id, agent progress token)
        self._pending: dict[str, tuple[types.RequestId, Any]] = {}
        self._by_agent_id: dict[types.RequestId, str] = {}
        self._tokens: set[Any] = set()

    def connect(self, *, upstream_version: str | None, to_agent: Any, to_upstream: Any) -> None:
        """Wire the relay to both transports once the upstream session is initialized."""
        self._upstream_version = upstream_version
        self._to_agent = to_agent
        self._to_upstream = to_upstream

    async def pump_agent(self, source: Any, to_server: Any) -> None:
        """Read the agent's messages; relay fast ones, pass the rest to the SDK server."""
        async with to_server:
            async for item in source:
                if isinstance(item, SessionMessage) and await self._from_agent(item.message):
                    continue
                await to_server.send(item)

    async def _from_agent(self, message: Any) -> bool:
        """Handle one agent message; True when it was consumed here."""
        if isinstance(message, JSONRPCRequest):
            if message.method == "initialize":
                requested = (message.params or {}).get("protocolVersion")
                self._active = self._screeners is not None and requested == self._upstream_version
                return False
            if message.method == "tools/call" and self._active:
                return await self._tools_call(message)
            return False
        if (
            isinstance(message, JSONRPCNotification)
            and message.method == "notifications/cancelled"
            and self._active
        ):
            request_id = (message.params or {}).get("requestId")
            upstream_id = self._by_agent_id.get(request_id) if request_id is not None else None
            if upstream_id is None:
                return False
            params = {**(message.params or {}), "requestId": upstream_id}
            await self._to_upstream.send(
                SessionMessage(message.model_copy(update={"params": params}))
            )
            return True
        return False

    async def _tools_call(self, request: JSONRPCRequest) -> bool:
        params = request.params or {}
        name, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return False  # let the SDK server produce the proper validation error
        assert self._screeners is not None
        action, result = _combine(self._screeners, name, arguments, self._session)
        if action == "intercept":
            return False
        if action == "reply":
            assert result is not None
            body = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            response = JSONRPCResponse(jsonrpc="2.0", id=request.id, result=body)
            await self._to_agent.send(SessionMessage(response))
            return True
        upstream_id = f"signoff-{next(self._ids)}"
        token = (params.get("_meta") or {}).get("progressToken")
        self._pending[upstream_id] = (request.id, token)
        self._by_agent_id[request.id] = upstream_id
        if token is not None:
            self._tokens.add(token)
        await self._to_upstream.send(SessionMessage(request.model_copy(update={"id": upstream_id})))
        return True

    def _finish(self, upstream_id: str) -> types.RequestId:
        agent_id, token = self._pending.pop(upstream_id)
        self._by_agent_id.pop(agent_id, None)
        self._tokens.discard(token)
        return agent_id

    async def from_upstream(self, item: Any) -> bool:
        """Route one upstream message; True when it belonged to a relayed call."""
        if not self._pending or not isinstance(item, SessionMessage):
            return False
        message = item.message
        if isinstance(message, JSONRPCResponse | JSONRPCError) and message.id in self._pending:
            agent_id = self._finish(str(message.id))
            await self._to_agent.send(SessionMessage(message.model_copy(update={"id": agent_id})))
            return True
        if (
            isinstance(message, JSONRPCNotification)
            and message.method == "notifications/progress"
            and (message.params or {}).get("progressToken") in self._tokens
        ):
            await self._to_agent.send(item)
            return True
        return False

    async def upstream_closed(self) -> None:
        """Answer every relayed call still in flight: the upstream is gone."""
        if self._to_agent is None:
            return
        for upstream_id in list(self._pending):
            agent_id = self._finish(upstream_id)
            error = ErrorData(code=CONNECTION_CLOSED, message="Connection closed")
            try:
                await self._to_agent.send(
                    SessionMessage(JSONRPCError(jsonrpc="2.0", id=agent_id, error=error))
                )
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
