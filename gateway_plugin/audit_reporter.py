"""Reports the calls a gateway settles on its own to the service's audit log.

`ApprovalGate.screen()` is synchronous and sits on the hot path, so `report()`
only appends to a bounded in-memory queue; a background asyncio task sends the
queue in batches to `POST /api/v1/audit/events`, retrying with backoff. Nothing
here ever blocks or fails a tool call: when the service stays unreachable the
batch is dropped with a logged warning, and when the queue is full new facts are
dropped (and counted) the same way.

The flush task runs on the event loop that was running when `report()` was
called (the gateway's own loop). `report()` may also be called from another
thread once a loop is known; with no loop at all, facts wait in the queue until
the next `report()` from a loop or an explicit `flush()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from gateway_plugin.loops import call_on_loop, running_loop

log = logging.getLogger(__name__)

FactType = Literal[
    "policy.denied", "policy.rate_limited", "call.allowed", "call.confirmed", "call.declined"
]


class GatewayFact(BaseModel):
    """One call the gateway settled: the wire form of POST /api/v1/audit/events."""

    type: FactType
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    tool: str
    server: str = ""
    caller: str = ""
    # Already masked with the policy's `redact` keys.
    arguments: dict[str, Any] = Field(default_factory=dict)
    policy_key: str | None = None
    outcome: str | None = None
    comment: str | None = None
    # The canonical hash of the unmasked arguments (set for confirmations).
    arguments_hash: str | None = None


class AuditReporter:
    """Queues gateway facts and sends them in the background; never raises into a call."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        attempts: int = 4,
        first_retry_delay: float = 0.5,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http or httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10.0, connect=3.0),
        )
        self._owns_http = http is None
        self._queue: deque[GatewayFact] = deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._attempts = attempts
        self._first_retry_delay = first_retry_delay
        # Known from the start when built on the gateway's loop, so reports from the
        # proxy's reader threads (the fast path) are sent without waiting for a loop call.
        self._loop: asyncio.AbstractEventLoop | None = running_loop()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.sent = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Facts queued and not yet sent."""
        return len(self._queue)

    def report(
        self,
        type: FactType,
        *,
        tool: str,
        server: str = "",
        caller: str = "",
        arguments: Mapping[str, Any] | None = None,
        policy_key: str | None = None,
        outcome: str | None = None,
        comment: str | None = None,
        arguments_hash: str | None = None,
    ) -> None:
        """Queue one fact for the audit log. Synchronous, cheap, and never raises."""
        try:
            if self._closed:
                return
            if len(self._queue) >= self._max_queue:
                self._drop(1, "the audit queue is full")
                return
            self._queue.append(
                GatewayFact(
                    type=type,
                    tool=tool,
                    server=server,
                    caller=caller,
                    arguments=dict(arguments or {}),
                    policy_key=policy_key,
                    outcome=outcome,
                    comment=comment,
                    arguments_hash=arguments_hash,
                )
            )
            self._kick()
        except Exception:  # a reporting bug must never turn into a failed tool call
            log.exception("could not queue an audit fact")

    def _kick(self) -> None:
        loop = running_loop()
        if loop is None:
            call_on_loop(self._loop, self._start)
            return
        self._loop = loop
        self._start()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name="signoff-audit-reporter"
            )

    async def _drain(self) -> None:
        while self._queue:
            count = min(len(self._queue), self._batch_size)
            batch = [self._queue.popleft() for _ in range(count)]
            if await self._send(batch):
                self.sent += len(batch)
                continue
            # The service is down: drop what is queued now rather than grow without bound.
            backlog = len(self._queue)
            self._queue.clear()
            self._drop(len(batch) + backlog, "the approval service could not be reached")

    async def _send(self, batch: list[GatewayFact]) -> bool:
        body = {"events": [fact.model_dump(mode="json") for fact in batch]}
        delay = self._first_retry_delay
        for attempt in range(self._attempts):
            try:
                response = await self._http.post("/api/v1/audit/events", json=body)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}"
            else:
                if response.is_success:
                    return True
                if response.status_code < 500 and response.status_code != 429:
                    log.warning(
                        "the approval service refused %d audit facts (HTTP %d): %s",
                        len(batch),
                        response.status_code,
                        response.text[:200],
                    )
                    self.dropped += len(batch)
                    return True  # not retryable; already counted as dropped
                problem = f"HTTP {response.status_code}"
            if attempt < self._attempts - 1:
                log.debug("audit report failed (%s); retrying in %.1f s", problem, delay)
                await asyncio.sleep(delay)
                delay *= 2
        return False

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        log.warning("dropped %d audit fact(s): %s (%s)", count, why, self.base_url)

    async def flush(self, timeout: float = 10.0) -> None:
        """Send everything queued now (waits at most `timeout` seconds)."""
        self._loop = asyncio.get_running_loop()
        if self._queue:
            self._start()
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                log.warning("audit facts still unsent after %.1f s", timeout)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Flush what is queued, then stop accepting facts and close the HTTP client."""
        await self.flush(timeout)
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._queue:
            self._drop(len(self._queue), "the gateway is shutting down")
            self._queue.clear()
        if self._owns_http:
            await self._http.aclose()
