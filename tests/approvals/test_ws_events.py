"""WS /api/v1/events against a real service process: auth, the four events, heartbeats and
slow clients."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from support import ServiceProcess, held_call_body
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.anyio

# The service runs on SQLite, then on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgresql")


def events_url(service: ServiceProcess, query: str = "") -> str:
    return service.url.replace("http://", "ws://") + "/api/v1/events" + query


def events_url_of(team: Any) -> str:
    return str(team.gateway.base_url).replace("http://", "ws://").removesuffix("/") + "/events"


def token_of(client: Any) -> str:
    return str(client.headers["Authorization"].split(" ", 1)[1])


async def receive(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        return dict(json.loads(await ws.recv()))


async def next_event(
    ws: ClientConnection, request_id: str, kind: str | None = None, timeout: float = 5.0
) -> dict[str, Any]:
    """The next event about `request_id` (of type `kind`), skipping everything else."""
    with anyio.fail_after(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message.get("request_id") == request_id and kind in (None, message["type"]):
                return dict(message)


async def closed_with(ws: ClientConnection, timeout: float = 5.0) -> tuple[int, str]:
    with anyio.fail_after(timeout):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            assert exc.rcvd is not None
            return exc.rcvd.code, exc.rcvd.reason


async def test_a_bearer_header_subscribes_to_every_kind_of_event(team: Any, new_call: Any) -> None:
    async with connect(
        events_url_of(team), additional_headers={"Authorization": f"Bearer {token_of(team.bob)}"}
    ) as ws:
        hello = await receive(ws)
        assert hello["type"] == "hello" and hello["name"] == "bob" and hello["role"] == "approver"

        created = team.gateway.post("/requests", json=new_call(quorum=2)).json()
        evt = await next_event(ws, created["id"])
        assert evt["type"] == "request.created"
        assert evt["request"]["tool"] == "end_codegen_session"
        assert evt["request"]["approvers"] == ["alice", "bob"] and evt["request"]["quorum"] == 2

        team.alice.post(f"/requests/{created['id']}/decisions", json={"decision": "approve"})
        vote = await next_event(ws, created["id"])
        assert vote["type"] == "request.decided" and vote["request"]["status"] == "pending"
        assert vote["request"]["approvals"] == 1

        team.bob.post(
            f"/requests/{created['id']}/decisions", json={"decision": "approve", "comment": "ok"}
        )
        final = await next_event(ws, created["id"])
        assert final["type"] == "request.decided"
        assert final["request"]["status"] == "approved"
        assert final["request"]["decided_by"] == "bob" and final["request"]["comment"] == "ok"

        cancelled = team.gateway.post("/requests", json=new_call()).json()
        team.gateway.post(f"/requests/{cancelled['id']}/cancel")
        evt = await next_event(ws, cancelled["id"], "request.cancelled")
        assert evt["request"]["status"] == "cancelled"

        expiring = team.gateway.post("/requests", json=new_call(timeout_seconds=0.3)).json()
        evt = await next_event(ws, expiring["id"], "request.expired")
        assert evt["request"]["status"] == "expired" and evt["request"]["decided_by"] == "system"


@pytest.mark.parametrize("how", ["subprotocol", "query", "first message"])
async def test_other_ways_to_present_the_token(team: Any, new_call: Any, how: str) -> None:
    token = token_of(team.gateway)
    url = events_url_of(team)
    kwargs: dict[str, Any] = {}
    if how == "subprotocol":
        kwargs["subprotocols"] = ["bearer", token]
    elif how == "query":
        url += f"?token={token}"
    async with connect(url, **kwargs) as ws:
        if how == "subprotocol":
            assert ws.subprotocol == "bearer"
        if how == "first message":
            await ws.send(json.dumps({"type": "auth", "token": token}))
        hello = await receive(ws)
        assert hello["type"] == "hello" and hello["role"] == "gateway"
        created = team.gateway.post("/requests", json=new_call()).json()
        assert (await next_event(ws, created["id"]))["type"] == "request.created"
        await ws.send(json.dumps({"type": "ping"}))
        assert (await receive(ws))["type"] == "pong"


@pytest.mark.parametrize(
    "how", ["no credentials", "bad header", "bad subprotocol", "bad query", "bad first message"]
)
async def test_a_socket_without_a_valid_token_is_closed_with_1008(team: Any, how: str) -> None:
    url = events_url_of(team)
    kwargs: dict[str, Any] = {}
    if how == "bad header":
        kwargs["additional_headers"] = {"Authorization": "Bearer so_not-a-token"}
    elif how == "bad subprotocol":
        kwargs["subprotocols"] = ["bearer", "so_not-a-token"]
    elif how == "bad query":
        url += "?token=so_not-a-token"
    async with connect(url, **kwargs) as ws:
        if how == "no credentials":
            await ws.send(json.dumps({"type": "hello"}))
        elif how == "bad first message":
            await ws.send(json.dumps({"type": "auth", "token": "so_not-a-token"}))
        code, reason = await closed_with(ws)
    assert code == 1008 and "token" in reason


# --- a service tuned for heartbeats and slow clients ---------------------------------------


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(
        tmp_path_factory.mktemp("tuned") / "signoff.db",
        env={"SIGNOFF_WS_QUEUE_SIZE": "4", "SIGNOFF_WS_HEARTBEAT_SECONDS": "0.3"},
    )
    proc.start()
    yield proc
    proc.stop()


async def test_idle_sockets_get_heartbeats(tuned: ServiceProcess) -> None:
    token = tuned.token("auditor", "audrey")
    async with connect(
        events_url(tuned), additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        hello = await receive(ws)
        assert hello["heartbeat_seconds"] == 0.3
        started = time.monotonic()
        ping = await receive(ws, timeout=2)
        assert ping["type"] == "ping" and time.monotonic() - started < 1.5


def _raw_subscriber(service: ServiceProcess, token: str) -> socket.socket:
    """A websocket client that completes the handshake and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", service.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{service.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    return sock


def _close_code(stream: bytes) -> int | None:
    """The code of the close frame in a server-to-client byte stream (frames are unmasked)."""
    stream = stream[stream.index(b"\r\n\r\n") + 4 :]
    while len(stream) >= 2:
        opcode, length = stream[0] & 0x0F, stream[1] & 0x7F
        offset = 2
        if length == 126:
            (length,) = struct.unpack("!H", stream[2:4])
            offset = 4
        elif length == 127:
            (length,) = struct.unpack("!Q", stream[2:10])
            offset = 10
        if opcode == 0x8:
            return int(struct.unpack("!H", stream[offset : offset + 2])[0])
        stream = stream[offset + length :]
    return None


async def test_a_client_that_stops_reading_is_dropped_and_others_keep_up(
    tuned: ServiceProcess, tmp_path: Path
) -> None:
    gateway = tuned.client(tuned.token("gateway", "gw-slow"))
    token = tuned.token("approver", "alice")
    stuck = _raw_subscriber(tuned, token)
    async with connect(
        events_url(tuned), additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as live:
        await receive(live)
        # ~6 MB of events: more than the kernel buffers plus the 4-event queue hold.
        for n in range(60):
            body = held_call_body(
                tool="bulk_write", caller="agent-slow", arguments={"blob": "x" * 100_000, "n": n}
            )
            started = time.monotonic()
            created = gateway.post("/requests", json=body)
            assert created.status_code == 201
            evt = await next_event(live, created.json()["id"], timeout=2)
            assert evt["type"] == "request.created"
            assert time.monotonic() - started < 2  # the stuck client slows nobody down

    received = b""
    stuck.settimeout(2)
    try:
        while chunk := stuck.recv(1 << 20):
            received += chunk
    except TimeoutError:
        pass
    finally:
        stuck.close()
    assert received.startswith(b"HTTP/1.1 101")
    assert _close_code(received) == 4000
    assert b"resync" in received[-100:]
