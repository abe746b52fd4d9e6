"""What the websocket stories share: connecting to WS /api/v1/events and reading its ending."""

from __future__ import annotations

import base64
import json
import os
import socket
from typing import Any

import anyio
from support import ServiceProcess
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


def events_url(service: ServiceProcess, query: str = "") -> str:
    return service.url.replace("http://", "ws://") + "/api/v1/events" + query


def subscribe(service: ServiceProcess, token: str) -> Any:
    """`async with subscribe(...) as ws`: a socket presenting `token` as a bearer header."""
    return connect(
        events_url(service), additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    )


async def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        return dict(json.loads(await ws.recv()))


async def closed_with(ws: ClientConnection, timeout: float = 5.0) -> tuple[int, str]:
    """(code, reason) of the close frame the service sends, read within `timeout` seconds."""
    with anyio.fail_after(timeout):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            assert exc.rcvd is not None, "the service dropped the connection without a close frame"
            return exc.rcvd.code, exc.rcvd.reason


async def request_ids_heard(ws: ClientConnection, seconds: float) -> set[str]:
    """The ids of the requests `ws` hears about in the next `seconds`."""
    seen: set[str] = set()
    with anyio.move_on_after(seconds):
        while True:
            message = json.loads(await ws.recv())
            if "request_id" in message:
                seen.add(message["request_id"])
    return seen


def raw_subscriber(service: ServiceProcess, token: str | None) -> socket.socket:
    """A websocket client that completes the handshake and then never reads.

    Its tiny receive buffer makes the service's side fill up after a few kilobytes."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", service.port))
    key = base64.b64encode(os.urandom(16)).decode()
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    sock.sendall(
        (
            f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{service.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
        ).encode()
    )
    return sock
