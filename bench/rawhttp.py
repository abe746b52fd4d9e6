"""A minimal keep-alive HTTP/1.1 client for load generators.

Benchmarks share two cores with the service they measure; httpx spends several
times more CPU per request than this does, which would be CPU taken from the
service. It speaks only what the benchmarks need: requests with a JSON body or
none, answers with a Content-Length (as uvicorn sends them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any
from urllib.parse import urlsplit

# Below uvicorn's keep-alive timeout (5 s).
KEEPALIVE_SECONDS = 4.0


class RawHttp:
    """One persistent connection; one request at a time."""

    def __init__(self, base_url: str, token: str) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._auth = f"Authorization: Bearer {token}\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._last_used = 0.0

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        # uvicorn closes a connection idle for 5 s; reusing one it closed (or is about
        # to) loses the request, so like other clients open a new one instead.
        stale = now - self._last_used > KEEPALIVE_SECONDS
        if (
            self._reader is None
            or self._writer is None
            or self._writer.is_closing()
            or self._reader.at_eof()
            or stale
        ):
            await self.aclose()
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        self._last_used = now
        return self._reader, self._writer

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        """POST `body` as JSON; the status and the decoded JSON answer."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"POST {self._prefix}{path} HTTP/1.1\r\nHost: {self._host}\r\n{self._auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        return await self._exchange(head + payload)

    async def get(self, path: str) -> tuple[int, Any]:
        """GET `path` (with its query); the status and the decoded JSON answer."""
        head = f"GET {self._prefix}{path} HTTP/1.1\r\nHost: {self._host}\r\n{self._auth}\r\n"
        return await self._exchange(head.encode())

    async def _exchange(self, message: bytes) -> tuple[int, Any]:
        reader, writer = await self._connect()
        writer.write(message)
        status_line_and_headers = await reader.readuntil(b"\r\n\r\n")
        status = int(status_line_and_headers[9:12])
        length = 0
        for line in status_line_and_headers.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
                break
        data = await reader.readexactly(length) if length else b""
        self._last_used = time.monotonic()  # idle time counts from the answer
        return status, json.loads(data) if data else None

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
