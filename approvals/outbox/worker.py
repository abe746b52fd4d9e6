"""The background worker that sends what the outbox holds.

It wakes when this process commits an event (and every `poll_seconds` anyway,
for rows other replicas enqueued, retries coming due and rows left by a process
that died), takes the ready rows (approvals/outbox/store.py) and hands each to
its channel in a task of its own, at most `concurrency` at once. Decisions never
wait for it: it runs beside the API, and a channel that hangs holds one task
until `attempt_timeout` cuts it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Literal

import anyio.to_thread
from sqlalchemy.engine import Engine

from approvals.models import utcnow
from approvals.outbox import store
from approvals.outbox.core import Channel, DeliveryFailed, RetrySchedule
from approvals.outbox.models import DeliveryStatus
from approvals.outbox.store import Claimed, Finished

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "retried", "failed"]


class OutboxWorker:
    """Delivers outbox rows to their channels; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        channels: Mapping[str, Channel],
        schedule: RetrySchedule,
        *,
        concurrency: int = 16,
        poll_seconds: float = 1.0,
        attempt_timeout: float = 30.0,
        lease_seconds: float = 15.0,
        on_outcome: Callable[[str, Outcome], None] | None = None,
    ) -> None:
        self.engine = engine
        self.channels = channels
        self.schedule = schedule
        self.concurrency = max(1, concurrency)
        self.poll_seconds = poll_seconds
        self.attempt_timeout = attempt_timeout
        # Channels that need another cut-off than `attempt_timeout`, by name.
        self.timeouts: dict[str, float] = {}
        # A taken row stays taken this long, renewed every third of it while its attempt
        # runs: a worker that dies (SIGKILL) leaves its rows to others within this time.
        self.lease_seconds = lease_seconds
        self.on_outcome = on_outcome
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: set[asyncio.Task[None]] = set()
        # Outcomes waiting to be recorded with the next claim, in one transaction.
        # (None: an attempt cut off by a shutdown, released for the next worker.)
        self._finished: list[tuple[Finished, Outcome | None]] = []

    def wake(self) -> None:
        """Look for work now; callable from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Deliver until cancelled; database errors are logged and retried."""
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                self._wake.clear()
                free = self.concurrency - len(self._running)
                claimed = await self._settle_and_claim(free)
                for item in claimed:
                    task = asyncio.create_task(self._attempt(item), name="outbox-delivery")
                    self._running.add(task)
                    task.add_done_callback(self._done)
                if len(claimed) == free and free > 0:
                    continue  # maybe more is ready: take it while slots are free
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        finally:
            for task in list(self._running):
                task.cancel()
            for task in list(self._running):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            # Best effort: what is not recorded is sent again once its lease runs out.
            with contextlib.suppress(BaseException):
                await self._settle_and_claim(0)

    async def _settle_and_claim(self, free: int) -> list[Claimed]:
        finished, self._finished = self._finished, []
        try:
            kept, claimed = await anyio.to_thread.run_sync(
                store.settle_and_claim,
                self.engine,
                [f for f, _ in finished],
                list(self.channels),
                free,
                self.lease_seconds,
            )
        except Exception:
            log.exception("outbox: could not read or write the deliveries table; retrying")
            self._finished[:0] = finished
            return []
        for (done, outcome), held in zip(finished, kept, strict=True):
            delivery = done.claimed.delivery
            if not held:
                log.warning("outbox: lease on %s ran out before it finished", delivery.event_id)
            if self.on_outcome is not None and outcome is not None:
                self.on_outcome(delivery.channel, outcome)
        return claimed

    def _timeout(self, channel: str) -> float:
        return self.timeouts.get(channel, self.attempt_timeout)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free, and the row's successor may be ready

    async def _attempt(self, item: Claimed) -> None:
        delivery = item.delivery
        channel = self.channels[delivery.channel]
        keeper = asyncio.create_task(self._keep(item), name="outbox-lease")
        try:
            await asyncio.wait_for(channel.deliver(delivery), self._timeout(delivery.channel))
        except asyncio.CancelledError:
            # Shutting down: hand the row back now rather than when the lease runs out.
            keeper.cancel()
            self._finished.append(
                (Finished(item, DeliveryStatus.PENDING, "interrupted by a shutdown"), None)
            )
            raise
        except Exception as exc:
            await self._stop_keeping(keeper)
            await self._failed(item, exc)
            return
        finally:
            keeper.cancel()
        await self._stop_keeping(keeper)
        await self._finish(item, "delivered", DeliveryStatus.DELIVERED)

    async def _keep(self, item: Claimed) -> None:
        """Renew the lease on `item` while its attempt runs."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                kept = await anyio.to_thread.run_sync(
                    store.renew, self.engine, item, self.lease_seconds
                )
            except Exception:
                log.exception("outbox: could not renew the lease on %s", item.delivery.event_id)
                continue
            if not kept:
                log.warning("outbox: lost the lease on %s", item.delivery.event_id)
                return

    async def _stop_keeping(self, keeper: asyncio.Task[None]) -> None:
        # A renewal running now must land before the outcome is written (it moves the lease).
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper

    async def _failed(self, item: Claimed, exc: Exception) -> None:
        delivery = item.delivery
        if isinstance(exc, DeliveryFailed):
            reason, permanent = exc.reason, exc.permanent
        elif isinstance(exc, TimeoutError):
            timeout = self._timeout(delivery.channel)
            reason, permanent = f"no answer within {timeout:g} s", False
        else:
            reason, permanent = f"{type(exc).__name__}: {exc}", False
        when = (
            None
            if permanent
            else self.schedule.next_attempt(delivery.created_at, delivery.attempt, utcnow())
        )
        log.warning(
            "outbox: %s delivery %s of %s for request %s failed (attempt %d): %s; %s",
            delivery.channel,
            delivery.event_id,
            delivery.event_type,
            delivery.request_id,
            delivery.attempt,
            reason,
            "giving up" if when is None else f"retrying at {when.isoformat()}",
        )
        if when is None:
            await self._finish(item, "failed", DeliveryStatus.FAILED, error=reason)
        else:
            await self._finish(
                item, "retried", DeliveryStatus.PENDING, error=reason, next_attempt_at=when
            )

    async def _finish(
        self,
        item: Claimed,
        outcome: Outcome,
        status: DeliveryStatus,
        *,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """Queue the outcome for the worker loop, which records it with its next claim."""
        self._finished.append((Finished(item, status, error, next_attempt_at), outcome))
        self._wake.set()
