"""Keeps the gateway's own upstream requests apart from the agent's relayed ones.

Two clients share the upstream's stdin: the SDK session the gateway opened
(initialize, tools/list, held calls it forwards after approval) and the fast
path, which writes the agent's own tools/call lines unchanged. Both number
their requests from 0, so the SDK session's ids (and the progress tokens it
mints from them) are marked on the way out with a random per-run prefix and
restored on the way back. An answer without the mark is then the agent's, and
goes back to it as the upstream wrote it, with no parse and no copy.
"""

from __future__ import annotations

import secrets
from typing import Any

import mcp_types as types
from pydantic_core import from_json

JSONRPCMessage = (
    types.JSONRPCRequest | types.JSONRPCNotification | types.JSONRPCResponse | types.JSONRPCError
)

# What `answer_id` returns for a line without an id (None is a JSON value, so not that).
NO_ID = object()
_WHITESPACE = b" \t\r\n"


class SdkIds:
    """Marks the SDK session's request ids and progress tokens, and restores them."""

    def __init__(self) -> None:
        self.prefix = f"signoff-{secrets.token_hex(4)}-"
        # How a marked value starts on the wire: a JSON string opening with the prefix.
        self.marker = b'"' + self.prefix.encode()

    def mark(self, value: Any) -> str:
        """The wire form of one of our ids: prefix, a type letter, the value."""
        kind = "i" if isinstance(value, int) else "s"
        return f"{self.prefix}{kind}{value}"

    def unmark(self, value: Any) -> Any:
        """The original id for a marked one; anything else unchanged."""
        if not isinstance(value, str) or not value.startswith(self.prefix):
            return value
        kind, rest = value[len(self.prefix)], value[len(self.prefix) + 1 :]
        return int(rest) if kind == "i" else rest

    def is_marked(self, value: Any) -> bool:
        return isinstance(value, str) and value.startswith(self.prefix)

    def outgoing(self, message: JSONRPCMessage) -> JSONRPCMessage:
        """Mark a message the SDK session sends upstream."""
        if isinstance(message, types.JSONRPCRequest):
            update: dict[str, Any] = {"id": self.mark(message.id)}
            meta = (message.params or {}).get("_meta")
            if isinstance(meta, dict) and "progressToken" in meta:
                meta = {**meta, "progressToken": self.mark(meta["progressToken"])}
                update["params"] = {**(message.params or {}), "_meta": meta}
            # Only what changes: an absent `params` must stay absent, not become null.
            return message.model_copy(update=update)
        if (
            isinstance(message, types.JSONRPCNotification)
            and message.method == "notifications/cancelled"
            and "requestId" in (message.params or {})
        ):
            params = dict(message.params or {})
            params["requestId"] = self.mark(params["requestId"])
            return message.model_copy(update={"params": params})
        return message

    def incoming(self, message: JSONRPCMessage) -> JSONRPCMessage:
        """Restore the SDK session's ids in a message the upstream sent."""
        if isinstance(message, types.JSONRPCResponse | types.JSONRPCError):
            if self.is_marked(message.id):
                return message.model_copy(update={"id": self.unmark(message.id)})
        elif (
            isinstance(message, types.JSONRPCNotification)
            and message.method == "notifications/progress"
            and self.is_marked((message.params or {}).get("progressToken"))
        ):
            params = dict(message.params or {})
            params["progressToken"] = self.unmark(params["progressToken"])
            return message.model_copy(update={"params": params})
        return message


def answer_id(line: bytes) -> Any:
    """The id of a JSON-RPC answer line, read from the bytes where SDKs put it.

    Most servers write the id as the last member (`...,"id":7}`) or right
    after `{"jsonrpc":"2.0",`; a value found there is the top-level id, since
    anything nested would close with a brace of its own. Other layouts are
    parsed in full. Returns `NO_ID` when the line has none.
    """
    end = len(line)
    while end and line[end - 1] in _WHITESPACE:
        end -= 1
    if end and line[end - 1] == ord("}"):
        start = line.rfind(b'"id":', max(0, end - 200), end)
        if start > 0 and line[start - 1] in b",{":
            found = _scalar(line[start + 5 : end - 1])
            if found is not NO_ID:
                return found
    head = b'{"jsonrpc":"2.0","id":'
    if line.startswith(head):
        comma = line.find(b",", len(head), len(head) + 200)
        if comma > 0:
            found = _scalar(line[len(head) : comma])
            if found is not NO_ID:
                return found
    try:
        message = from_json(line)
    except ValueError:
        return NO_ID
    return message.get("id", NO_ID) if isinstance(message, dict) else NO_ID


def _scalar(raw: bytes) -> Any:
    try:
        value = from_json(raw)
    except ValueError:
        return NO_ID
    return value if isinstance(value, int | str) and not isinstance(value, bool) else NO_ID
