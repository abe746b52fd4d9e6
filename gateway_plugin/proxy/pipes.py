"""Non-blocking stdin/stdout for the SDK's `stdio_server`.

By default `mcp.server.stdio.stdio_server` reads and writes through worker
threads (`anyio.wrap_file`): three thread hand-offs per message, which costs
more than everything else the gateway does for an allowed call. When stdin and
stdout are pipes or sockets (as MCP clients launch servers), these adapters
give `stdio_server(stdin=..., stdout=...)` event-loop-native streams instead.
They also make the read cancellable, so the proxy can stop while the agent is idle.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import IO

# Tool results (screenshots, page dumps) can be large single lines.
_LINE_LIMIT = 64 * 1024 * 1024


class LineReader:
    """Async iterator of decoded lines, the shape `stdio_server` reads from.

    `intercept(line)` sees each raw line first; lines it returns True for are
    consumed there and never reach the SDK (the fast path).
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self.intercept: Callable[[bytes], bool] | None = None

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> str:
        while True:
            line = await self._reader.readline()
            if not line:
                raise StopAsyncIteration
            if self.intercept is None or not self.intercept(line):
                return line.decode("utf-8", errors="replace")

    def close(self) -> None:
        """End the stream as if the agent had closed stdin."""
        self._reader.feed_eof()


class LineWriter:
    """`write`/`flush` coroutines over a pipe transport, the shape `stdio_server` writes to."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    def write_line(self, data: bytes) -> None:
        """Queue one raw line for the agent without waiting (the fast path's writes)."""
        if not self._writer.is_closing():
            self._writer.write(data)

    async def flush(self) -> None:
        await self._writer.drain()


def _pollable(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


async def _connect(
    loop: asyncio.AbstractEventLoop, stdin: IO[bytes], stdout: IO[bytes]
) -> tuple[LineReader, LineWriter, asyncio.BaseTransport]:
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, stdout)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return LineReader(reader), LineWriter(writer), transport


@asynccontextmanager
async def native_stdio() -> AsyncIterator[tuple[LineReader, LineWriter] | None]:
    """Yield (reader, writer) over private copies of fds 0 and 1, or None where they can't poll."""
    loop = asyncio.get_running_loop()
    try:
        if not (_pollable(0) and _pollable(1)):
            raise OSError("stdin or stdout is a regular file")
        stdin: IO[bytes] = os.fdopen(os.dup(0), "rb", buffering=0)
        stdout: IO[bytes] = os.fdopen(os.dup(1), "wb", buffering=0)
        reader, writer, transport = await _connect(loop, stdin, stdout)
    except (OSError, ValueError):
        # /dev/null, regular files and the like: the SDK's threaded transport copes.
        yield None
        return
    # Keep stray prints from any library off the MCP wire while we serve.
    saved_stdout = os.dup(1)
    os.dup2(sys.stderr.fileno(), 1)
    try:
        yield reader, writer
    finally:
        transport.close()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
