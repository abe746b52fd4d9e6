"""Handing work to an asyncio event loop from any thread."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def call_on_loop(
    loop: asyncio.AbstractEventLoop | None, callback: Callable[..., Any], *args: Any
) -> None:
    """Run `callback(*args)` on `loop`: at once when called on it, else soon from any
    other thread; not at all when there is no loop or it has closed."""
    if loop is None or loop.is_closed():
        return
    if running_loop() is loop:
        callback(*args)
        return
    with contextlib.suppress(RuntimeError):  # it closed meanwhile: nobody is left to run it
        loop.call_soon_threadsafe(callback, *args)
