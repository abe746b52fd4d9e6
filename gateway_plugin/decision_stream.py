"""Decisions pushed to the gateway over the service's websocket (`WS /api/v1/events`).

One `DecisionStream` per gateway process keeps one websocket open in the
background, reconnecting with exponential backoff (and jitter) when it drops.
`wait_for(request_id, timeout)` wakes up as soon as the request is settled
(approved, rejected, expired or cancelled). An event only wakes the gate: it
always confirms the state with a GET before it runs or refuses anything.

While the socket is down `connected` is False and the gate long-polls instead
(`ServiceClient.wait`); every connect and disconnect wakes all waiters so that
nobody sleeps through a decision that was announced while the socket was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import OrderedDict
from types import TracebackType
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway_plugin.calls import ProgressFn
from gateway_plugin.service_client import ServiceClient, ServiceRefused
from gateway_plugin.wire import ApprovalRequestView

log = logging.getLogger(__name__)

SETTLED = frozenset({"approved", "rejected", "expired", "cancelled"})
_EVENTS = frozenset({"request.decided", "request.expired", "request.cancelled"})
# Close code the service uses for bad credentials: retrying soon will not help.
_POLICY_VIOLATION = 1008


def events_url(service_url: str) -> str:
    """ws(s)://…/api/v1/events for an http(s):// service URL."""
    base = service_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + "/api/v1/events"


class DecisionStream:
    """A background subscription to the service's events, for one gateway process."""

    def __init__(
        self,
        service_url: str,
        token: str,
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 30.0,
        open_timeout: float = 5.0,
        remember: int = 4096,
    ) -> None:
        self.url = events_url(service_url)
        self._token = token
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self._remember = remember
        # Settled requests seen recently: a decision that lands between the create
        # call and `wait_for` is not missed.
        self._settled: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._waiters: dict[str, set[asyncio.Future[dict[str, Any] | None]]] = {}
        self._connected = False
        self._task: asyncio.Task[None] | None = None
        self.connects = 0  # successful subscriptions so far (for tests and logs)

    @property
    def connected(self) -> bool:
        """True while subscribed: decisions arrive by push."""
        return self._connected

    def start(self) -> None:
        """Start the background connection (idempotent; needs a running asyncio loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="signoff-decision-stream"
            )

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_connected(False)

    async def __aenter__(self) -> DecisionStream:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def wait_until_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the subscription (for tests and benchmarks)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._connected and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return self._connected

    async def wait_for(self, request_id: str, timeout: float) -> dict[str, Any] | None:
        """The settling event of `request_id` (its request fields), or None after `timeout`
        seconds or when the connection changed; either way, re-read the request."""
        seen = self._settled.get(request_id)
        if seen is not None:
            return seen
        if not self._connected:
            return None
        fut: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(request_id, set()).add(fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(request_id)
            if waiters is not None:
                waiters.discard(fut)
                if not waiters:
                    del self._waiters[request_id]

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def _set_connected(self, value: bool) -> None:
        if self._connected != value:
            self._connected = value
            self._wake_all()

    def _handle(self, message: dict[str, Any]) -> None:
        if message.get("type") not in _EVENTS:
            return
        request = message.get("request")
        if not isinstance(request, dict) or request.get("status") not in SETTLED:
            return  # a vote short of the quorum
        request_id = str(message.get("request_id") or request.get("id"))
        summary = {
            "id": request_id,
            "status": request.get("status"),
            "decided_by": request.get("decided_by"),
        }
        self._settled[request_id] = summary
        self._settled.move_to_end(request_id)
        while len(self._settled) > self._remember:
            self._settled.popitem(last=False)
        for fut in self._waiters.pop(request_id, set()):
            if not fut.done():
                fut.set_result(summary)

    async def _run(self) -> None:
        delay = self.min_backoff
        while True:
            refused = False
            try:
                async with connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {self._token}"},
                    open_timeout=self.open_timeout,
                    ping_interval=20,
                    ping_timeout=20,
                    max_size=2**24,
                    user_agent_header="signoff-gateway",
                ) as ws:
                    await self._subscribed(ws)
                    delay = self.min_backoff
                    async for raw in ws:
                        try:
                            message = json.loads(raw)
                        except ValueError:
                            continue
                        if isinstance(message, dict):
                            self._handle(message)
            except asyncio.CancelledError:
                raise
            except ConnectionClosed as exc:
                refused = exc.rcvd is not None and exc.rcvd.code == _POLICY_VIOLATION
                log.log(
                    logging.ERROR if refused else logging.INFO,
                    "decision stream %s closed (%s); long-polling meanwhile",
                    self.url,
                    exc,
                )
            except InvalidStatus as exc:
                log.info("decision stream %s refused: %s; long-polling", self.url, exc)
            except (OSError, TimeoutError, ValueError) as exc:
                log.debug("decision stream %s unavailable: %r; long-polling", self.url, exc)
            finally:
                self._set_connected(False)
            if refused:
                delay = self.max_backoff
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self.max_backoff)

    async def _subscribed(self, ws: ClientConnection) -> None:
        raw = await asyncio.wait_for(ws.recv(), self.open_timeout)
        hello = json.loads(raw)
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            raise ValueError(f"expected a hello message, got {raw!r:.100}")
        self.connects += 1
        self._set_connected(True)


# Long enough to be cheap, short enough that clients which reset their timeout
# on progress see a heartbeat well inside common 60 s limits.
PROGRESS_INTERVAL_SECONDS = 10.0


async def await_decision(
    service: ServiceClient,
    decisions: DecisionStream | None,
    request: ApprovalRequestView,
    hold: float,
    progress: ProgressFn | None,
) -> tuple[ApprovalRequestView, bool]:
    """Wait in-band for a decision for at most `hold` seconds, with progress heartbeats:
    by push while `decisions` is connected, else by long-poll.

    Returns the request and whether this call already claimed its approval.
    """
    start = anyio.current_time()
    while request.pending:
        elapsed = anyio.current_time() - start
        remaining = hold - elapsed
        if remaining <= 0:
            break
        if progress is not None:
            await progress(
                elapsed, hold, f"waiting for approval of {request.tool} (request {request.id})"
            )
        step = min(remaining, PROGRESS_INTERVAL_SECONDS)
        if decisions is not None and decisions.connected:
            event = await decisions.wait_for(request.id, step)
            if event is not None and event.get("status") == "approved":
                # An event alone never runs a call, but the claim is checked by the
                # service: it succeeds only if the request really allows the call.
                try:
                    return await service.claim(request.id), True
                except ServiceRefused:
                    pass  # not approved after all, or already used: re-read below
            request = await service.get(request.id)
        else:
            request = await service.wait(request.id, step)
    return request, False
