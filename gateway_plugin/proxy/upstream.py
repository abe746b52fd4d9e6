"""The upstream MCP server as a child process, with a raw line tap for the fast path.

It yields the same pair of message streams as `mcp.client.stdio.stdio_client`,
so the SDK's `ClientSession` runs on it unchanged. The difference is the
optional `LineTap` (the fast path): a reader thread offers it every line the
server writes first (in that thread), `stdin.write_line` puts bytes on the server's
stdin directly, and the tap may rewrite the SDK session's messages both ways,
so the fast path relays a message without parsing it into SDK models or
waking the event loop (see `pipes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.client.stdio import StdioServerParameters, get_default_environment
from mcp.shared.message import SessionMessage

from gateway_plugin.loops import call_on_loop
from gateway_plugin.proxy.pipes import PipeWriter, start_reader
from gateway_plugin.proxy.wire_ids import JSONRPCMessage

logger = logging.getLogger(__name__)

# The MCP lifecycle: close stdin, give the server time to exit, then signal it.
EXIT_GRACE_SECONDS = 2.0


class UpstreamStartError(Exception):
    """The upstream server could not be started."""


class LineTap(Protocol):
    """Sees the upstream's traffic below the SDK session (the fast path)."""

    def on_upstream_line(self, line: bytes) -> bool:
        """A line the server wrote, in the reader thread; True when handled there."""
        ...

    def outgoing(self, message: JSONRPCMessage) -> JSONRPCMessage:
        """A message the SDK session sends, as it should go on the wire."""
        ...

    def incoming(self, line: bytes, message: JSONRPCMessage) -> JSONRPCMessage | None:
        """A parsed line for the SDK session, as it should see it (None: handled)."""
        ...


@dataclass
class UpstreamProcess:
    """A running upstream server: SDK message streams plus raw access for the fast path."""

    read_stream: MemoryObjectReceiveStream[SessionMessage | Exception]
    write_stream: MemoryObjectSendStream[SessionMessage]
    ended: anyio.Event
    stdin: PipeWriter


def _parse(line: bytes, tap: LineTap | None) -> SessionMessage | Exception | None:
    try:
        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValueError as exc:
        logger.warning("upstream sent a line that is not JSON-RPC: %.200r", line)
        return exc
    if tap is not None:
        restored = tap.incoming(line, message)
        if restored is None:
            return None
        message = restored
    return SessionMessage(message)


@asynccontextmanager
async def spawn_upstream(
    params: StdioServerParameters, *, tap: LineTap | None = None
) -> AsyncIterator[UpstreamProcess]:
    """Start the server, with `tap` below the SDK session if given.

    `params.env`, when given, is the child's whole environment (hosts build it with
    `upstream_env.upstream_environment`): nothing is merged in behind their back,
    so what they held back stays out. Without it the child gets the SDK's short
    list of safe variables (PATH, HOME, ...).

    `tap.on_upstream_line` runs in the reader thread, so it must be thread-safe and quick.
    """
    child_stdin, our_stdin = os.pipe()
    our_stdout, child_stdout = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            params.command,
            *params.args,
            stdin=child_stdin,
            stdout=child_stdout,
            env=get_default_environment() if params.env is None else params.env,
            cwd=params.cwd,
            # Its own process group, so shutdown reaches whatever it spawned (npx -> node).
            start_new_session=True,
        )
    except OSError as exc:
        os.close(our_stdin)
        os.close(our_stdout)
        raise UpstreamStartError(
            f"could not start the upstream server {params.command!r}: {exc.strerror or exc}"
        ) from exc
    finally:
        os.close(child_stdin)
        os.close(child_stdout)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()
    read_send, read_receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_receive = anyio.create_memory_object_stream[SessionMessage](0)
    stdin = PipeWriter(our_stdin)
    upstream = UpstreamProcess(read_receive, write_send, anyio.Event(), stdin)

    def deliver(line: bytes) -> None:
        call_on_loop(loop, lines.put_nowait, line)

    def end() -> None:
        call_on_loop(loop, lines.put_nowait, None)

    start_reader(
        our_stdout,
        intercept=None if tap is None else tap.on_upstream_line,
        deliver=deliver,
        on_end=end,
        name="upstream-stdout",
    )

    async def read_stdout() -> None:
        try:
            async with read_send:
                while (line := await lines.get()) is not None:
                    parsed = _parse(line, tap)
                    if parsed is not None:
                        await read_send.send(parsed)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            upstream.ended.set()

    async def write_stdin() -> None:
        try:
            async with write_receive:
                async for message in write_receive:
                    outgoing = message.message if tap is None else tap.outgoing(message.message)
                    data = outgoing.model_dump_json(by_alias=True, exclude_unset=True)
                    await stdin.write(data.encode() + b"\n")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_send.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_stdout)
        tg.start_soon(write_stdin)
        try:
            yield upstream
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(process, stdin)
            tg.cancel_scope.cancel()


async def _stop(process: asyncio.subprocess.Process, stdin: PipeWriter) -> None:
    """Close stdin, wait for a clean exit, then SIGTERM and SIGKILL the process group."""
    stdin.close()
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
        with anyio.move_on_after(EXIT_GRACE_SECONDS):
            await process.wait()
            return
