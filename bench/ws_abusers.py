"""The abusive websocket clients of bench/ws_abuse.py, run in a process of their own.

They speak raw websocket (a handshake, then reading the server's frames): the
websockets client library would spend more of the two CPUs than the service does.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from typing import Any

# What the service sends a client it drops for falling behind (code 4000 = 0x0fa0).
_RESYNC_CLOSE = b"\x0f\xa0fell behind"


def abuse(port: int, token: str, counts: Any, opts: Any, out: Any) -> None:
    """One abuse round from this process; reports what the service did to its sockets."""
    silent, bad, stuck = counts
    out.put(asyncio.run(_abuse_round(port, token, silent, bad, stuck, opts)))


_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def _transport(writer: asyncio.StreamWriter) -> asyncio.Transport:
    transport = writer.transport
    assert isinstance(transport, asyncio.Transport)  # a socket's: it reads as well
    return transport


async def _open(port: int, token: str | None, *, read: bool = True) -> Any:
    """A socket that has asked for WS /api/v1/events (presenting `token`, if any).

    `read=False`: a client that never reads (a 2 KiB receive buffer, and its transport
    paused before the first byte comes back) until `transport.resume_reading()`."""
    sock = socket.socket()
    if not read:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    if not read:
        _transport(writer).pause_reading()
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    writer.write(
        (
            f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
        ).encode()
    )
    return reader, writer


async def _close_code(reader: asyncio.StreamReader) -> int:
    """The code of the close frame the service sends first (1006: none, it just hung up)."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        while True:
            head = await reader.readexactly(2)
            length = head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(length)
            if head[0] & 0x0F == 0x8:
                return int.from_bytes(payload[:2], "big") if length >= 2 else 1005
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        return 1006


async def _abuse_round(
    port: int, token: str, silent: int, bad: int, stuck: int, opts: Any
) -> dict[str, Any]:
    deadline = time.monotonic() + opts["seconds"]
    silent_closes: list[tuple[int, float]] = []
    bad_closes: list[int] = []

    async def refused(presented: str | None) -> int:
        reader, writer = await _open(port, presented)
        try:
            return await _close_code(reader)
        finally:
            writer.close()

    async def stay_silent() -> None:
        while time.monotonic() < deadline:
            opened = time.monotonic()
            try:
                code = await refused(None)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            silent_closes.append((code, time.monotonic() - opened))

    async def bad_logins() -> None:
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                bad_closes.append(await refused("so_" + secrets.token_urlsafe(32)))
            await asyncio.sleep(opts["bad_pause"])

    async def ended(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bool, bool]:
        """(did the service end the stream, did it say 4000) once we read again.

        A socket the service still serves keeps streaming events until the timeout; one
        it dropped yields what the kernel and the service had buffered, then ends."""
        _transport(writer).resume_reading()
        tail = b""
        try:
            async with asyncio.timeout(20):
                while chunk := await reader.read(1 << 16):
                    tail = (tail + chunk)[-256:]
        except TimeoutError:
            return False, _RESYNC_CLOSE in tail
        return True, _RESYNC_CLOSE in tail

    streams = [await _open(port, token, read=False) for _ in range(stuck)]
    tasks = [asyncio.create_task(stay_silent()) for _ in range(silent)]
    tasks += [asyncio.create_task(bad_logins()) for _ in range(bad)]
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    endings = await asyncio.gather(*(ended(reader, writer) for reader, writer in streams))
    for _, writer in streams:
        writer.close()
    return {
        "silent_closes": silent_closes,
        "bad_closes": bad_closes,
        "stuck_ended": sum(1 for done, _ in endings if done),
        "stuck_4000": sum(1 for _, said in endings if said),
    }
