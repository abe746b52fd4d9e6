"""The fast path: tools/call requests that need no human are relayed as raw JSON-RPC lines.

Holding a call for approval needs the full SDK server (request context,
progress, cancellation of a long wait). A call the policy simply allows, or
refuses outright, does not: routing it through the SDK server and a second
client session costs several times what the upstream itself needs to answer.
So the stdio host offers every line from the agent and from the upstream to
this relay first. For each `tools/call` it asks the extensions to screen it:

- "forward": the line goes upstream as it came (under an id of our own), and
  the upstream's answer, progress and errors go straight back to the agent;
- "reply": the extension's `CallToolResult` is the answer (denied, hidden,
  rate-limited) and nothing reaches the upstream;
- "intercept": the line continues to the SDK server, whose handler chain
  (`Extension.intercept_tool_call`) does the rest.

Everything else passes on untouched. The relay is active only when every
extension can screen (`ScreeningExtension`) and the agent asked for the same
protocol version the upstream session speaks, so lines need no translation.
Its callbacks are synchronous: a relayed message costs one JSON parse and one
write, with no task switch.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import mcp_types as types
from mcp.server.extension import Extension
from mcp_types.jsonrpc import CONNECTION_CLOSED

logger = logging.getLogger(__name__)

Verdict = tuple[Literal["forward", "reply", "intercept"], types.CallToolResult | None]
WriteLine = Callable[[bytes], None]


@runtime_checkable
class ScreeningExtension(Protocol):
    """An extension that can settle a call without the SDK server's request context."""

    def screen_tool_call(
        self, name: str, arguments: Mapping[str, Any], session: str
    ) -> Verdict:  # pragma: no cover - protocol
        ...


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _loads(line: bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(line)
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
        self._upstream_version: str | None = None
        self._to_agent: WriteLine | None = None
        self._to_upstream: WriteLine | None = None
        self._ids = itertools.count(1)
        # upstream request id -> (agent request id, agent progress token)
        self._pending: dict[str, tuple[Any, Any]] = {}
        self._by_agent_id: dict[Any, str] = {}
        self._tokens: set[Any] = set()

    def connect(
        self, *, upstream_version: str | None, to_agent: WriteLine, to_upstream: WriteLine
    ) -> None:
        """Wire the relay to both transports once the upstream session is initialized."""
        self._upstream_version = upstream_version
        self._to_agent = to_agent
        self._to_upstream = to_upstream

    def on_agent_line(self, line: bytes) -> bool:
        """Offer one line from the agent; True when the relay consumed it."""
        if self._screeners is None or self._to_upstream is None or b'"method"' not in line:
            return False
        if not self._active:
            if b'"initialize"' in line:
                message = _loads(line)
                if message is not None and message.get("method") == "initialize":
                    requested = (message.get("params") or {}).get("protocolVersion")
                    self._active = requested == self._upstream_version
            return False
        if b'"tools/call"' in line:
            message = _loads(line)
            if message is not None and message.get("method") == "tools/call" and "id" in message:
                return self._tools_call(message)
        elif b'"notifications/cancelled"' in line:
            return self._cancelled(line)
        return False

    def _tools_call(self, message: dict[str, Any]) -> bool:
        assert self._screeners is not None and self._to_agent and self._to_upstream
        params = message.get("params") or {}
        name, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return False  # the SDK server answers with the proper validation error
        try:
            action, result = self._screen(name, arguments)
        except Exception:
            logger.exception("screening %s failed; handing the call to the full path", name)
            return False
        if action == "intercept":
            return False
        if action == "reply":
            assert result is not None
            body = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            self._to_agent(_line({"jsonrpc": "2.0", "id": message["id"], "result": body}))
            return True
        upstream_id = f"signoff-{next(self._ids)}"
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        if not isinstance(token, str | int):
            token = None
        self._pending[upstream_id] = (message["id"], token)
        self._by_agent_id[message["id"]] = upstream_id
        if token is not None:
            self._tokens.add(token)
        self._to_upstream(_line({**message, "id": upstream_id}))
        return True

    def _screen(self, name: str, arguments: dict[str, Any]) -> Verdict:
        assert self._screeners is not None
        for extension in self._screeners:
            verdict = extension.screen_tool_call(name, arguments, self._session)
            if verdict[0] != "forward":
                return verdict
        return ("forward", None)

    def _cancelled(self, line: bytes) -> bool:
        message = _loads(line)
        params = (message or {}).get("params") or {}
        upstream_id = self._by_agent_id.get(params.get("requestId"))
        if message is None or upstream_id is None or self._to_upstream is None:
            return False
        self._to_upstream(_line({**message, "params": {**params, "requestId": upstream_id}}))
        return True

    def _finish(self, upstream_id: str) -> Any:
        agent_id, token = self._pending.pop(upstream_id)
        self._by_agent_id.pop(agent_id, None)
        self._tokens.discard(token)
        return agent_id

    def on_upstream_line(self, line: bytes) -> bool:
        """Offer one line from the upstream; True when it belonged to a relayed call."""
        if not self._pending or self._to_agent is None:
            return False
        if b'"signoff-' in line:
            message = _loads(line)
            if message is not None and ("result" in message or "error" in message):
                upstream_id = message.get("id")
                if isinstance(upstream_id, str) and upstream_id in self._pending:
                    message["id"] = self._finish(upstream_id)
                    self._to_agent(_line(message))
                    return True
        if self._tokens and b'"notifications/progress"' in line:
            message = _loads(line)
            token = ((message or {}).get("params") or {}).get("progressToken")
            if isinstance(token, str | int) and token in self._tokens:
                self._to_agent(line)
                return True
        return False

    def upstream_closed(self) -> None:
        """Answer every relayed call still in flight: the upstream is gone."""
        if self._to_agent is None:
            return
        for upstream_id in list(self._pending):
            agent_id = self._finish(upstream_id)
            error = {"code": CONNECTION_CLOSED, "message": "Connection closed"}
            self._to_agent(_line({"jsonrpc": "2.0", "id": agent_id, "error": error}))
