"""Ways to reach the upstream server: a child process over stdio, or MCP streamable HTTP.

Each factory returns a `sessions.UpstreamTransport`: a zero-argument callable
whose `async with` yields the SDK's (read, write) message streams, so one
upstream session can be opened per agent session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx2
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from gateway_plugin.proxy.sessions import UpstreamTransport
from gateway_plugin.proxy.upstream import spawn_upstream

if TYPE_CHECKING:
    from mcp.client._transport import TransportStreams

__all__ = ["parse_header", "stdio_transport", "streamable_http_transport"]

# Connect/write within 30 s; a response stream may stay open while a tool runs.
CONNECT_TIMEOUT_SECONDS = 30.0
READ_TIMEOUT_SECONDS = 300.0


def streamable_http_transport(
    url: str, headers: Mapping[str, str] | None = None
) -> UpstreamTransport:
    """Connections to the MCP server at `url`, sending `headers` (e.g. a bearer) each time."""

    @asynccontextmanager
    async def connect() -> AsyncIterator[TransportStreams]:
        timeout = httpx2.Timeout(CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS)
        async with (
            httpx2.AsyncClient(headers=dict(headers or {}), timeout=timeout) as client,
            streamable_http_client(url, http_client=client) as (read, write),
        ):
            yield read, write

    return connect


def stdio_transport(params: StdioServerParameters) -> UpstreamTransport:
    """A new child process running `params` per connection."""

    @asynccontextmanager
    async def connect() -> AsyncIterator[TransportStreams]:
        async with spawn_upstream(params) as child:
            yield child.read_stream, child.write_stream

    return connect


def parse_header(text: str) -> tuple[str, str]:
    """`'Name: value'` -> `('Name', 'value')`; ValueError when it is not a header."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        raise ValueError(f"not a header (expected 'Name: value'): {text!r}")
    return name, value.strip()
