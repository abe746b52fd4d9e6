"""The fast path: tools/call requests that need no human are relayed as raw JSON-RPC lines.

Holding a call for approval needs the full SDK server (request context,
progress, cancellation of a long wait). A call the policy simply allows, or
refuses outright, does not: routing it through the SDK server and a second
client session costs several times what the upstream itself needs to answer.
So the stdio host offers every line from the agent and from the upstream to
this relay first. For each `tools/call` it asks the extensions to screen it:

- "forward": the agent's line goes upstream unchanged, and the upstream's
  answer and progress go straight back to the agent, also unchanged;
- "reply": the extension's `CallToolResult` is the answer (denied, hidden,
  rate-limited) and nothing reaches the upstream;
- "intercept": the line continues to the SDK server, whose handler chain
  (`Extension.intercept_tool_call`) does the rest.

Lines pass unchanged because the gateway's own SDK session marks its ids
(`wire_ids`): an unmarked answer from the upstream can only be the agent's.
The relay is active only when every extension can screen
(`ScreeningExtension`) and the agent asked for the same protocol version the
upstream session speaks, so lines need no translation. A line that carries the
2026-07-28 envelope (`io.modelcontextprotocol/protocolVersion` in `_meta`) is
never relayed, and turns the relay off for good: such an agent may still send
an `initialize` (the SDK client does after a slow `server/discover` probe) but
speaks the per-request era, which the upstream session does not.

Its callbacks are synchronous and run in the pipes' reader threads (agent
lines in one, upstream lines in another), and they do as little as they can:
a relayed call costs one JSON parse of the request and a look at the bytes of
the answer. The table of calls in flight is shared by both threads, so it is
changed under a lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import mcp_types as types
from mcp.server.extension import Extension
from mcp_types.jsonrpc import CONNECTION_CLOSED
from pydantic_core import from_json, to_json

from gateway_plugin.proxy.wire_ids import NO_ID, JSONRPCMessage, SdkIds, answer_id

logger = logging.getLogger(__name__)

Screening = tuple[Literal["forward", "reply", "intercept"], types.CallToolResult | None]
WriteLine = Callable[[bytes], None]


@runtime_checkable
class ScreeningExtension(Protocol):
    """An extension that can settle a call without the SDK server's request context."""

    def screen_tool_call(
        self, name: str, arguments: Mapping[str, Any], session: str
    ) -> Screening:  # pragma: no cover - protocol
        ...


_MODERN_ENVELOPE = b'"io.modelcontextprotocol/protocolVersion"'


def _line(message: dict[str, Any]) -> bytes:
    return to_json(message) + b"\n"


def _loads(line: bytes) -> dict[str, Any] | None:
    # pydantic-core's parser: several times faster than the json module's.
    try:
        message = from_json(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


class FastPath:
    """Relays screened tools/call traffic between the agent's and the upstream's lines."""

    def __init__(self, extensions: Sequence[Extension], *, session: str) -> None:
        screeners = [e for e in extensions if isinstance(e, ScreeningExtension)]
        self._screeners = screeners if len(screeners) == len(extensions) else None
        self._session = session
        self._active = False
        # The agent spoke the 2026-07-28 era once: the relay stays off.
        self._modern = False
        self._upstream_version: str | None = None
        self._to_agent: WriteLine | None = None
        self._to_upstream: WriteLine | None = None
        self.ids = SdkIds()
        # The agent's ids of relayed calls still waiting for the upstream's answer.
        self._in_flight: set[Any] = set()
        self._lock = threading.Lock()

    def connect(
        self, *, upstream_version: str | None, to_agent: WriteLine, to_upstream: WriteLine
    ) -> None:
        """Wire the relay to both transports once the upstream session is initialized."""
        self._upstream_version = upstream_version
        self._to_agent = to_agent
        self._to_upstream = to_upstream

    # Agent -> upstream (the agent's reader thread)

    def on_agent_line(self, line: bytes) -> bool:
        """Offer one line from the agent; True when the relay consumed it."""
        # Flat on purpose: this runs right after a wake-up, where every call costs.
        if _MODERN_ENVELOPE in line:
            self._modern = True
            self._active = False
            return False
        if b'"tools/call"' in line and self._active:
            try:
                message = from_json(line)
            except ValueError:
                return False
            if type(message) is dict and message.get("method") == "tools/call":
                return self._tools_call(line, message)
            return False
        if not self._active:
            self._watch_handshake(line)
        elif b'"notifications/cancelled"' in line:
            return self._cancelled(line)
        return False

    def _watch_handshake(self, line: bytes) -> None:
        """Turn the relay on when the agent asks for the upstream session's protocol version."""
        if self._screeners is None or self._to_upstream is None or b'"initialize"' not in line:
            return
        if self._modern:
            return
        message = _loads(line)
        if message is not None and message.get("method") == "initialize":
            requested = (message.get("params") or {}).get("protocolVersion")
            self._active = requested == self._upstream_version
            logger.debug(
                "fast path %s (agent asks for %s, upstream speaks %s)",
                "on" if self._active else "off",
                requested,
                self._upstream_version,
            )

    def _tools_call(self, line: bytes, message: dict[str, Any]) -> bool:
        assert self._screeners is not None and self._to_agent and self._to_upstream
        params = message.get("params") or {}
        name, arguments = params.get("name"), params.get("arguments") or {}
        agent_id = message.get("id")
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return False  # the SDK server answers with the proper validation error
        if not isinstance(agent_id, int | str) or self.ids.is_marked(agent_id):
            return False  # odd ids take the full path, which checks them
        action, result = "forward", None
        try:
            for extension in self._screeners:
                action, result = extension.screen_tool_call(name, arguments, self._session)
                if action != "forward":
                    break
        except Exception:
            logger.exception("screening %s failed; handing the call to the full path", name)
            return False
        if action == "intercept":
            return False
        if action == "reply":
            assert result is not None
            body = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            self._to_agent(_line({"jsonrpc": "2.0", "id": agent_id, "result": body}))
            return True
        with self._lock:
            self._in_flight.add(agent_id)
        self._to_upstream(line)
        return True

    def _cancelled(self, line: bytes) -> bool:
        message = _loads(line)
        params = (message or {}).get("params") or {}
        request_id = params.get("requestId")
        if self._to_upstream is None or not isinstance(request_id, int | str):
            return False
        if request_id not in self._in_flight:
            return False  # a call on the full path: the SDK server cancels it
        self._to_upstream(line)
        return True

    # Upstream -> agent (the upstream's reader thread)

    def on_upstream_line(self, line: bytes) -> bool:
        """Offer one line from the upstream; True when it went straight to the agent."""
        if not self._active or self._to_agent is None or self.ids.marker in line:
            return False  # for the SDK session (checked again once parsed: `incoming`)
        if b'"method"' in line:
            message = _loads(line)
            if message is None:
                return False
            method = message.get("method")
            if method == "notifications/progress":
                self._to_agent(line)  # unmarked token: one of the agent's relayed calls
                return True
            if method is not None:
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

    # The loop's side of the upstream session

    def outgoing(self, message: JSONRPCMessage) -> JSONRPCMessage:
        """Mark a message the gateway's SDK session sends upstream."""
        return self.ids.outgoing(message)

    def incoming(self, line: bytes, message: JSONRPCMessage) -> JSONRPCMessage | None:
        """Restore a message for the SDK session, or relay an agent's answer it was not for."""
        if (
            self._active
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
