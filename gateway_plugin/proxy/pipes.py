"""Line-framed pipes read by dedicated threads, for the agent's stdio and the upstream's.

Why threads and not the event loop: every message of an allowed call crosses
the gateway twice (agent -> upstream, upstream -> agent). Woken through the
event loop (epoll, callbacks, a future, a task switch) each crossing cost
about 60 µs on a 2-core host; a thread blocked in `read()` wakes and relays in
a fraction of that (bench/gateway_overhead.py measures both relays). So a
reader thread per pipe splits lines and offers each to a synchronous
`on_line` (the fast path) first; only lines it does not take are handed to the
event loop, where the SDK's sessions read them.

Writes come from both sides (the fast path in a reader thread, the SDK on the
loop), so `PipeWriter` writes each line whole under a lock, and never blocks
the event loop: when a pipe is full, the rest is written from a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio

from gateway_plugin.loops import call_on_loop

logger = logging.getLogger(__name__)

# Tool results (screenshots, page dumps) can be large single lines.
LINE_LIMIT = 64 * 1024 * 1024
_CHUNK = 1 << 16
# A writer waiting on a full pipe looks up this often to see whether it was closed.
_WAIT_SECONDS = 0.5

OnLine = Callable[[bytes], bool]


class LineTooLong(ValueError):
    """A peer sent a line longer than LINE_LIMIT."""


class LineSplitter:
    """Cuts a byte stream into newline-terminated lines."""

    def __init__(self, limit: int = LINE_LIMIT) -> None:
        self._partial: list[bytes] = []
        self._size = 0
        self._limit = limit

    def feed(self, chunk: bytes) -> list[bytes]:
        """The complete lines `chunk` finishes (each ending in b"\\n")."""
        end = chunk.rfind(b"\n")
        if end < 0:
            self._keep(chunk)
            return []
        head, rest = chunk[: end + 1], chunk[end + 1 :]
        if self._partial:
            head = b"".join(self._partial) + head
            self._partial, self._size = [], 0
        lines = head.splitlines(keepends=True)
        if rest:
            self._keep(rest)
        for line in lines:
            if len(line) > self._limit:
                raise LineTooLong(f"a line of {len(line)} bytes exceeds {self._limit}")
        return lines

    @property
    def pending(self) -> bool:
        """True while part of a line is waiting for the rest."""
        return bool(self._partial)

    def _keep(self, piece: bytes) -> None:
        self._partial.append(piece)
        self._size += len(piece)
        if self._size > self._limit:
            raise LineTooLong(f"a line of more than {self._limit} bytes")


def start_reader(
    fd: int,
    *,
    intercept: OnLine | None,
    deliver: Callable[[bytes], None],
    on_end: Callable[[], None],
    name: str,
) -> threading.Thread:
    """Read `fd` in a daemon thread: each line goes to `intercept`, and unless it
    returns True, to `deliver`; `on_end` is called once at the end.

    The thread owns `fd` and closes it at end of stream. A reader blocked on a
    peer that never closes simply stays (daemon) until the process exits.
    """

    def offer(line: bytes) -> None:
        try:
            if intercept is not None and intercept(line):
                return
        except Exception:
            logger.exception("%s: the fast path failed on a line", name)
        deliver(line)

    def run() -> None:
        # Deliberately flat: code run once per message right after a wake-up
        # costs several times what it costs in a warm loop, so the usual case
        # (one whole line per read) takes the fewest steps.
        splitter = LineSplitter()
        try:
            while chunk := os.read(fd, _CHUNK):
                if chunk.find(b"\n") == len(chunk) - 1 and not splitter.pending:
                    try:
                        if intercept is None or not intercept(chunk):
                            deliver(chunk)
                    except Exception:
                        logger.exception("%s: the fast path failed on a line", name)
                        deliver(chunk)
                    continue
                for line in splitter.feed(chunk):
                    offer(line)
        except LineTooLong as exc:
            logger.error("%s: %s; closing the stream", name, exc)
        except OSError as exc:
            logger.debug("%s: read failed: %s", name, exc)
        except Exception:
            logger.exception("%s: reader failed", name)
        finally:
            try:
                on_end()
            finally:
                os.close(fd)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


class PipeWriter:
    """Writes whole lines to a pipe from any thread or from the event loop."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._closing = False
        self._closed = False
        os.set_blocking(fd, False)

    def write_line(self, data: bytes) -> None:
        """Write all of `data` from a thread, waiting while the pipe is full."""
        with self._lock:
            try:
                written = os.write(self._fd, data)  # usually all of it, in one step
            except BlockingIOError:
                written = 0
            except OSError:  # closed here, or the reader is gone: it cannot be delivered
                self._closed = True
                written = len(data)
            if written < len(data):
                self._write_all(memoryview(data)[written:])
            if self._closing:
                self._close_if_asked()

    async def write(self, data: bytes) -> None:
        """Write all of `data` from the event loop without blocking it."""
        if not self._lock.acquire(blocking=False):
            # A reader thread is writing (or waiting on a full pipe): queue behind it there.
            await anyio.to_thread.run_sync(self.write_line, data)
            return
        try:
            rest = self._write_now(memoryview(data))
            if rest:
                await anyio.to_thread.run_sync(self._write_all, rest)
            self._close_if_asked()
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the pipe now, or as soon as the write in progress ends."""
        self._closing = True
        if self._lock.acquire(blocking=False):
            try:
                self._close_if_asked()
            finally:
                self._lock.release()

    def _write_now(self, view: memoryview) -> memoryview:
        """Write what fits without waiting; the part that did not fit."""
        while view and not self._closed and self._fd >= 0:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                return view
            except OSError:  # the reader is gone: nothing more can be delivered
                self._closed = True
        return view[:0]

    def _write_all(self, view: memoryview) -> None:
        view = self._write_now(view)
        if not view:
            return  # the usual case: it all fit at once
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        while view and not self._closing:
            poller.poll(_WAIT_SECONDS * 1000)
            view = self._write_now(view)

    def _close_if_asked(self) -> None:
        if self._closing and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._closed = True


class LineReader:
    """The agent's lines as the async iterator `stdio_server` reads from.

    `intercept(line)` sees each line first, in the reader thread; lines it
    returns True for are consumed there (the fast path) and never reach the SDK.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.intercept: OnLine | None = None

    def __aiter__(self) -> LineReader:
        return self

    @property
    def started(self) -> bool:
        """True once the reader thread owns the descriptor."""
        return self._loop is not None

    async def __anext__(self) -> str:
        if self._loop is None:
            # Started on the first read, so whoever sets `intercept` sees the very first line.
            self._loop = asyncio.get_running_loop()
            start_reader(
                self._fd,
                intercept=self.intercept,
                deliver=self._deliver,
                on_end=self.close,
                name="agent-stdin",
            )
        line = await self._lines.get()
        if line is None:
            self._lines.put_nowait(None)  # stay at end of stream for any later read
            raise StopAsyncIteration
        return line.decode("utf-8", errors="replace")

    def _deliver(self, line: bytes) -> None:
        call_on_loop(self._loop, self._lines.put_nowait, line)

    def close(self) -> None:
        """End the stream as if the agent had closed stdin (from any thread)."""
        call_on_loop(self._loop, self._lines.put_nowait, None)


class LineWriter:
    """`write`/`flush` coroutines over a `PipeWriter`, the shape `stdio_server` writes to."""

    def __init__(self, pipe: PipeWriter) -> None:
        self.pipe = pipe

    async def write(self, text: str) -> None:
        await self.pipe.write(text.encode("utf-8"))

    async def flush(self) -> None:
        """Nothing to do: every write reaches the pipe before it returns."""


@asynccontextmanager
async def threaded_stdio() -> AsyncIterator[tuple[LineReader, LineWriter]]:
    """Yield (reader, writer) over private copies of fds 0 and 1."""
    stdin = os.dup(0)
    pipe = PipeWriter(os.dup(1))
    # Keep stray prints from any library off the MCP wire while we serve.
    saved_stdout = os.dup(1)
    os.dup2(sys.stderr.fileno(), 1)
    reader = LineReader(stdin)
    try:
        yield reader, LineWriter(pipe)
    finally:
        pipe.close()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
        if not reader.started:  # no reader thread took the descriptor, so it is still ours
            os.close(stdin)
