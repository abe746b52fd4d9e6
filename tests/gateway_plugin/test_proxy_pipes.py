"""The proxy's pipes: whole lines in, whole lines out, from threads and the event loop."""

from __future__ import annotations

import os
import threading
import time

import anyio
import pytest

from gateway_plugin.proxy.pipes import LineSplitter, LineTooLong, PipeWriter, start_reader


def test_lines_are_cut_at_newlines_whatever_the_chunks() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b'{"a":') == []
    assert splitter.pending
    assert splitter.feed(b'1}\n{"b":2}\n{"c"') == [b'{"a":1}\n', b'{"b":2}\n']
    assert splitter.feed(b":3}\n") == [b'{"c":3}\n']
    assert not splitter.pending


def test_a_line_over_the_limit_is_refused() -> None:
    splitter = LineSplitter(limit=10)
    with pytest.raises(LineTooLong):
        splitter.feed(b"x" * 11)


def test_the_reader_offers_each_line_to_the_fast_path_first() -> None:
    read_fd, write_fd = os.pipe()
    taken: list[bytes] = []
    delivered: list[bytes] = []
    ended = threading.Event()
    start_reader(
        read_fd,
        intercept=lambda line: line.startswith(b"fast") and not taken.append(line),
        deliver=delivered.append,
        on_end=ended.set,
        name="test",
    )
    os.write(write_fd, b"fast 1\nslow 1\n")
    os.write(write_fd, b"slo")
    os.write(write_fd, b"w 2\nfast 2\n")
    os.close(write_fd)
    assert ended.wait(5)
    assert taken == [b"fast 1\n", b"fast 2\n"]
    assert delivered == [b"slow 1\n", b"slow 2\n"]


def test_a_failing_fast_path_hands_the_line_on_and_reading_goes_on() -> None:
    read_fd, write_fd = os.pipe()
    delivered: list[bytes] = []
    ended = threading.Event()

    def broken(line: bytes) -> bool:
        raise RuntimeError("bug")

    start_reader(read_fd, intercept=broken, deliver=delivered.append, on_end=ended.set, name="t")
    os.write(write_fd, b"one\ntwo\n")
    os.close(write_fd)
    assert ended.wait(5)
    assert b"".join(delivered) == b"one\ntwo\n"


@pytest.mark.anyio
async def test_a_full_pipe_blocks_neither_the_loop_nor_splits_lines() -> None:
    """A slow reader: the loop keeps running, and lines from a thread and the loop stay whole."""
    read_fd, write_fd = os.pipe()
    writer = PipeWriter(write_fd)
    big = b"L" * 300_000 + b"\n"  # several times a pipe's buffer
    small = [b"s%03d\n" % i for i in range(50)]
    thread = threading.Thread(target=writer.write_line, args=(big,))
    thread.start()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    received = bytearray()

    def drain() -> None:
        time.sleep(0.3)  # let the pipe fill up first
        while chunk := os.read(read_fd, 65536):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        for line in small:
            await writer.write(line)
        tg.cancel_scope.cancel()
    thread.join(10)
    writer.close()
    reader.join(10)
    assert ticks >= 10, "the event loop stalled while the pipe was full"
    lines = bytes(received).splitlines(keepends=True)
    assert sorted(lines) == sorted([big, *small])


def test_writing_to_a_pipe_nobody_reads_drops_the_line_quietly() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    writer = PipeWriter(write_fd)
    writer.write_line(b"lost\n")  # no BrokenPipeError escapes into the fast path
    writer.close()
