"""The stdio fast path relays only handshake-era lines; a 2026-07-28 agent takes the full path."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mcp.server.extension import Extension

from gateway_plugin.proxy.fastpath import FastPath
from gateway_plugin.proxy.raw_lines import RawLineRelay
from gateway_plugin.verdict import Allow, Screened

UPSTREAM_VERSION = "2025-11-25"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


class AllowAll(Extension):
    identifier = "dev.signoff/test-allow-all"

    def screen_tool_call(self, name: str, arguments: Mapping[str, Any], session: str) -> Screened:
        return Allow()


def line(method: str, params: dict[str, Any], request_id: int) -> bytes:
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    return json.dumps(message).encode() + b"\n"


def wired() -> tuple[FastPath, list[bytes]]:
    wire = RawLineRelay()
    fast = FastPath([AllowAll()], wire, session="connection:test")
    upstream: list[bytes] = []
    wire.connect(to_agent=lambda _: None, to_upstream=upstream.append)
    fast.start(UPSTREAM_VERSION)
    return fast, upstream


def initialize(request_id: int) -> bytes:
    return line("initialize", {"protocolVersion": UPSTREAM_VERSION, "capabilities": {}}, request_id)


def test_a_handshake_era_agent_has_its_allowed_calls_relayed() -> None:
    fast, upstream = wired()
    assert fast.on_agent_line(initialize(1)) is False  # the SDK server answers the handshake
    call = line("tools/call", {"name": "echo", "arguments": {}}, 2)
    assert fast.on_agent_line(call) is True
    assert upstream == [call]


def test_an_agent_that_spoke_2026_is_never_relayed_even_after_an_initialize() -> None:
    # The SDK client probes server/discover and, when that is slow, also sends initialize.
    fast, upstream = wired()
    assert fast.on_agent_line(line("server/discover", {"_meta": ENVELOPE}, 1)) is False
    assert fast.on_agent_line(initialize(2)) is False
    call = {"name": "echo", "arguments": {}, "_meta": ENVELOPE}
    assert fast.on_agent_line(line("tools/call", call, 3)) is False
    assert fast.on_agent_line(line("tools/call", {"name": "echo", "arguments": {}}, 4)) is False
    assert upstream == []
