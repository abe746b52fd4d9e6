"""A webhook receiver on a loopback port, run from a thread of the test process.

It checks every delivery as the README tells receivers to (`verify_signature` is
that snippet, kept identical), and answers as the test scripts it: fail the next
N deliveries, hang until released, or succeed. What arrived is kept in
`received`, in arrival order.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from support import free_port


# --- the README's receiver snippet, verbatim -------------------------------------------
def verify_signature(header: str, body: bytes, secret: str, tolerance: int = 300) -> bool:
    """True when `header` (Signoff-Signature) signs `body` with `secret`, recently."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    timestamps = [v for k, v in parts if k.strip() == "t"]
    signatures = [v for k, v in parts if k.strip() == "v1"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or not signatures:
        return False
    if abs(time.time() - int(timestamps[0])) > tolerance:
        return False  # too old (or from the future): a replay
    signed = timestamps[0].encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)


# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """One POST as it arrived."""

    at: float
    body: bytes
    header: str
    verified: bool
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def timestamp(self) -> int:
        return int(self.header.split(",")[0].removeprefix("t="))


class WebhookReceiver:
    """See the module docstring; `secret` is what it verifies with."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[Arrival] = []
        self.fail_next = 0
        self.hang = False
        self._released: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookReceiver:
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="webhook", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the webhook receiver did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def release(self) -> None:
        """Let hanging deliveries answer (200) and stop hanging."""
        self.hang = False
        if self._loop is not None and self._released is not None:
            self._loop.call_soon_threadsafe(self._released.set)

    def hang_again(self) -> None:
        """Hang on every delivery from now on, until the next `release`."""
        self._released = None
        self.hang = True

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        header = request.headers.get("signoff-signature", "")
        verified = verify_signature(header, body, self.secret)
        if self.hang:
            self._loop = asyncio.get_running_loop()
            self._released = self._released or asyncio.Event()
            self._record(body, header, verified, 0)
            await self._released.wait()
            return PlainTextResponse("late")
        with self._lock:
            failing = self.fail_next > 0
            if failing:
                self.fail_next -= 1
        status = 503 if failing else (200 if verified else 401)
        self._record(body, header, verified, status)
        return PlainTextResponse("no" if status != 200 else "ok", status_code=status)

    def _record(self, body: bytes, header: str, verified: bool, status: int) -> None:
        with self._lock:
            self.received.append(Arrival(time.time(), body, header, verified, status))

    def accepted(self) -> list[dict[str, Any]]:
        """The events answered 200, in arrival order."""
        with self._lock:
            return [a.event for a in self.received if a.answered == 200]

    def wait_for(self, condition: Any, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out; received {len(self.received)}"
            time.sleep(0.05)
