"""The upstream MCP server as a child process, with a raw line tap for the fast path.

It yields the same pair of message streams as `mcp.client.stdio.stdio_client`,
so the SDK's `ClientSession` runs on it unchanged. The difference: every line
the server writes is first offered to `on_line`, and `write_line` puts bytes on
the server's stdin directly, so the fast path relays a message without parsing
it into SDK models or hopping through tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client.stdio import StdioServerParameters, get_default_environment
from mcp.shared.message import SessionMessage

logger = logging.getLogger(__name__)

# Tool results (screenshots, page dumps) can be large single lines.
LINE_LIMIT = 64 * 1024 * 1024
# The MCP lifecycle: close stdin, give the server time to exit, then signal it.
EXIT_GRACE_SECONDS = 2.0


class UpstreamStartError(Exception):
    """The upstream server could not be started."""


@dataclass
class UpstreamProcess:
    """A running upstream server: SDK message streams plus raw access for the fast path."""

    read_stream: MemoryObjectReceiveStream[SessionMessage | Exception]
    write_stream: MemoryObjectSendStream[SessionMessage]
    ended: anyio.Event
    process: asyncio.subprocess.Process

    def write_line(self, data: bytes) -> None:
        """Queue one raw JSON-RPC line (ending in a newline) on the server's stdin."""
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(data)


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        logger.warning("upstream sent a line that is not JSON-RPC: %.200r", line)
        return exc


@asynccontextmanager
async def spawn_upstream(
    params: StdioServerParameters, *, on_line: Callable[[bytes], bool] | None = None
) -> AsyncIterator[UpstreamProcess]:
    """Start the server; `on_line(line)` returning True means the line was handled."""
    try:
        process = await asyncio.create_subprocess_exec(
            params.command,
            *params.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=get_default_environment() | (params.env or {}),
            cwd=params.cwd,
            limit=LINE_LIMIT,
            # Its own process group, so shutdown reaches whatever it spawned (npx -> node).
            start_new_session=True,
        )
    except OSError as exc:
        raise UpstreamStartError(
            f"could not start the upstream server {params.command!r}: {exc.strerror or exc}"
        ) from exc
    read_send, read_receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_receive = anyio.create_memory_object_stream[SessionMessage](0)
    upstream = UpstreamProcess(read_receive, write_send, anyio.Event(), process)

    async def read_stdout() -> None:
        assert process.stdout is not None
        try:
            async with read_send:
                while line := await process.stdout.readline():
                    if on_line is not None and on_line(line):
                        continue
                    await read_send.send(_parse(line))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, ValueError, OSError):
            pass
        finally:
            upstream.ended.set()

    async def write_stdin() -> None:
        assert process.stdin is not None
        try:
            async with write_receive:
                async for message in write_receive:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    process.stdin.write(data.encode() + b"\n")
                    await process.stdin.drain()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_send.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_stdout)
        tg.start_soon(write_stdin)
        try:
            yield upstream
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(process)
            tg.cancel_scope.cancel()


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Close stdin, wait for a clean exit, then SIGTERM and SIGKILL the process group."""
    if process.stdin is not None:
        process.stdin.close()
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
        with anyio.move_on_after(EXIT_GRACE_SECONDS):
            await process.wait()
            return
