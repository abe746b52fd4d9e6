"""How the fast path moves bytes: raw JSON-RPC lines between the agent and the upstream.

`fastpath.FastPath` decides what happens to each `tools/call` line; this
module carries it out without parsing into SDK models or waking the event
loop. A forwarded call's line goes upstream unchanged, and the upstream's
answer and progress come straight back to the agent, also unchanged.

Lines pass unchanged because the gateway's own SDK session marks its ids
(`wire_ids`): an unmarked answer from the upstream can only be the agent's.
`RawLineRelay` is also the upstream's `LineTap` (`upstream.spawn_upstream`),
marking and restoring the SDK session's messages.

Its methods run in the pipes' reader threads (agent lines in one, upstream
lines in another), and the table of calls in flight is shared by both, so it
is changed under a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp_types.jsonrpc import CONNECTION_CLOSED
from pydantic_core import from_json, to_json

from gateway_plugin.proxy.wire_ids import NO_ID, JSONRPCMessage, SdkIds, answer_id

__all__ = ["RawLineRelay", "WriteLine"]

WriteLine = Callable[[bytes], None]


def _line(message: dict[str, Any]) -> bytes:
    return to_json(message) + b"\n"


class RawLineRelay:
    """Relays the fast path's raw lines and keeps the SDK session's ids apart from the agent's."""

    def __init__(self) -> None:
        # Set by the fast path: while False, every upstream line is the SDK session's.
        self.relaying = False
        self.ids = SdkIds()
        self._to_agent: WriteLine | None = None
        self._to_upstream: WriteLine | None = None
        # The agent's ids of relayed calls still waiting for the upstream's answer.
        self._in_flight: set[Any] = set()
        self._lock = threading.Lock()

    def connect(self, *, to_agent: WriteLine, to_upstream: WriteLine) -> None:
        """Wire the relay to both pipes once the upstream session is initialized."""
        self._to_agent = to_agent
        self._to_upstream = to_upstream

    # Agent -> upstream (the agent's reader thread)

    def is_ours(self, request_id: Any) -> bool:
        """True for an id in the SDK session's marked form (never a relayable agent id)."""
        return self.ids.is_marked(request_id)

    def forward(self, agent_id: int | str, line: bytes) -> None:
        """Send the agent's call upstream unchanged; its answer comes back the same way."""
        assert self._to_upstream is not None
        with self._lock:
            self._in_flight.add(agent_id)
        self._to_upstream(line)

    def answer(self, agent_id: int | str, result: types.CallToolResult) -> None:
        """Answer the agent's call with `result`; nothing reaches the upstream."""
        assert self._to_agent is not None
        body = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        self._to_agent(_line({"jsonrpc": "2.0", "id": agent_id, "result": body}))

    def cancel(self, request_id: int | str, line: bytes) -> bool:
        """Pass the agent's cancellation upstream when it is for a relayed call."""
        if self._to_upstream is None or request_id not in self._in_flight:
            return False  # a call on the full path: the SDK server cancels it
        self._to_upstream(line)
        return True

    # Upstream -> agent (the upstream's reader thread): `upstream.LineTap`

    def on_upstream_line(self, line: bytes) -> bool:
        """Offer one line from the upstream; True when it went straight to the agent."""
        if not self.relaying or self._to_agent is None or self.ids.marker in line:
            return False  # for the SDK session (checked again once parsed: `incoming`)
        if b'"method"' in line:
            try:
                message = from_json(line)
            except ValueError:
                return False
            method = message.get("method") if isinstance(message, dict) else None
            if method == "notifications/progress":
                self._to_agent(line)  # unmarked token: one of the agent's relayed calls
                return True
            if method is not None or not isinstance(message, dict):
                return False  # the upstream's own requests and notifications
        # An answer with an unmarked id: a relayed call's. The agent gets it first;
        # the bookkeeping can wait, since agents never reuse an id in flight.
        self._to_agent(line)
        self._settle(answer_id(line))
        return True

    def _settle(self, agent_id: Any) -> None:
        if agent_id is not NO_ID:
            with self._lock:
                self._in_flight.discard(agent_id)

    def outgoing(self, message: JSONRPCMessage) -> JSONRPCMessage:
        """Mark a message the gateway's SDK session sends upstream."""
        return self.ids.outgoing(message)

    def incoming(self, line: bytes, message: JSONRPCMessage) -> JSONRPCMessage | None:
        """Restore a message for the SDK session, or relay an agent's answer it was not for."""
        if (
            self.relaying
            and self._to_agent is not None
            and isinstance(message, types.JSONRPCResponse | types.JSONRPCError)
            and not self.ids.is_marked(message.id)
        ):
            # The mark appeared only inside the result: the answer is the agent's.
            self._settle(message.id)
            self._to_agent(line)
            return None
        return self.ids.incoming(message)

    def upstream_closed(self) -> None:
        """Answer every relayed call still in flight: the upstream is gone."""
        if self._to_agent is None:
            return
        with self._lock:
            in_flight, self._in_flight = self._in_flight, set()
        for agent_id in in_flight:
            error = {"code": CONNECTION_CLOSED, "message": "Connection closed"}
            self._to_agent(_line({"jsonrpc": "2.0", "id": agent_id, "error": error}))
