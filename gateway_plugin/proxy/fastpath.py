"""The fast path: what the stdio proxy decides for each line, before the SDK server sees it.

Holding a call for approval needs the full SDK server (request context,
progress, cancellation of a long wait). A call the policy simply allows, or
refuses outright, does not: routing it through the SDK server and a second
client session costs several times what the upstream itself needs to answer.
So the stdio host offers every line from the agent to `FastPath` first, which
screens each `tools/call` with the extensions and acts on the gate's verdict:

- `Allow`: forward the agent's line upstream as it is;
- `Deny`: refuse it (`verdict.refusal`); nothing reaches the upstream;
- `Ask`: hold it: the line continues to the SDK server, whose handler chain
  (`Extension.intercept_tool_call`) asks a person.

How the bytes move is the `Wire`'s business (`raw_lines.RawLineRelay`).

The fast path is active only when every extension can screen
(`ScreeningExtension`) and the agent asked for the same protocol version the
upstream session speaks, so lines need no translation. A line that carries the
2026-07-28 envelope (`io.modelcontextprotocol/protocolVersion` in `_meta`) is
never relayed, and turns the fast path off for good: such an agent may still
send an `initialize` (the SDK client does after a slow `server/discover` probe)
but speaks the per-request era, which the upstream session does not.

`on_agent_line` runs in the agent pipe's reader thread and does as little as
it can: a relayed call costs one JSON parse of the request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import mcp_types as types
from mcp.server.extension import Extension
from pydantic_core import from_json

from gateway_plugin.verdict import Allow, Ask, Deny, Screened, refusal

__all__ = ["FastPath", "ScreeningExtension", "Wire"]

logger = logging.getLogger(__name__)

_MODERN_ENVELOPE = b'"io.modelcontextprotocol/protocolVersion"'


@runtime_checkable
class ScreeningExtension(Protocol):
    """An extension that can settle a call without the SDK server's request context."""

    def screen_tool_call(
        self, name: str, arguments: Mapping[str, Any], session: str
    ) -> Screened:  # pragma: no cover - protocol
        ...


class Wire(Protocol):
    """How the fast path's decisions reach the pipes (`raw_lines.RawLineRelay`)."""

    relaying: bool

    def is_ours(self, request_id: Any) -> bool:
        """True for an id the gateway's own SDK session uses."""
        ...

    def forward(self, agent_id: int | str, line: bytes) -> None:
        """Send the agent's call upstream unchanged."""
        ...

    def answer(self, agent_id: int | str, result: types.CallToolResult) -> None:
        """Answer the agent's call; nothing reaches the upstream."""
        ...

    def cancel(self, request_id: int | str, line: bytes) -> bool:
        """Pass a cancellation upstream when it is for a forwarded call."""
        ...


def _loads(line: bytes) -> dict[str, Any] | None:
    # pydantic-core's parser: several times faster than the json module's.
    try:
        message = from_json(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


class FastPath:
    """Screens the agent's tools/call lines and forwards, refuses or holds each one."""

    def __init__(self, extensions: Sequence[Extension], wire: Wire, *, session: str) -> None:
        screeners = [e for e in extensions if isinstance(e, ScreeningExtension)]
        self._screeners = screeners if len(screeners) == len(extensions) else None
        self._wire = wire
        self._session = session
        self._active = False
        # The agent spoke the 2026-07-28 era once: the fast path stays off.
        self._modern = False
        self._started = False
        self._upstream_version: str | None = None

    def start(self, upstream_version: str | None) -> None:
        """The upstream session is initialized (speaking `upstream_version`) and the wire is
        connected."""
        self._started = True
        self._upstream_version = upstream_version

    def _set_active(self, active: bool) -> None:
        self._active = self._wire.relaying = active

    def on_agent_line(self, line: bytes) -> bool:
        """Offer one line from the agent; True when the fast path settled it."""
        # Flat on purpose: this runs right after a wake-up, where every call costs.
        if _MODERN_ENVELOPE in line:
            self._modern = True
            self._set_active(False)
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
            request_id = ((_loads(line) or {}).get("params") or {}).get("requestId")
            return isinstance(request_id, int | str) and self._wire.cancel(request_id, line)
        return False

    def _watch_handshake(self, line: bytes) -> None:
        """Turn on when the agent asks for the upstream session's protocol version."""
        if self._screeners is None or not self._started or b'"initialize"' not in line:
            return
        if self._modern:
            return
        message = _loads(line)
        if message is not None and message.get("method") == "initialize":
            requested = (message.get("params") or {}).get("protocolVersion")
            self._set_active(requested == self._upstream_version)
            logger.debug(
                "fast path %s (agent asks for %s, upstream speaks %s)",
                "on" if self._active else "off",
                requested,
                self._upstream_version,
            )

    def _tools_call(self, line: bytes, message: dict[str, Any]) -> bool:
        assert self._screeners is not None
        params = message.get("params") or {}
        name, arguments = params.get("name"), params.get("arguments") or {}
        agent_id = message.get("id")
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return False  # the SDK server answers with the proper validation error
        if not isinstance(agent_id, int | str) or self._wire.is_ours(agent_id):
            return False  # odd ids take the full path, which checks them
        try:
            verdict = self._screen(name, arguments)
        except Exception:
            logger.exception("screening %s failed; handing the call to the full path", name)
            return False
        match verdict:
            case Allow():
                self._wire.forward(agent_id, line)
                return True
            case Deny() as denied:
                self._wire.answer(agent_id, refusal(denied))
                return True
            case Ask():
                return False  # held: the SDK server's handler chain asks a person

    def _screen(self, name: str, arguments: Mapping[str, Any]) -> Screened:
        """The first verdict other than Allow, in extension order; Allow when all allow."""
        assert self._screeners is not None
        verdict: Screened = _ALLOW
        for extension in self._screeners:
            verdict = extension.screen_tool_call(name, arguments, self._session)
            if not isinstance(verdict, Allow):
                break
        return verdict


_ALLOW = Allow()
