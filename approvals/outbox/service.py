"""The service's outbox: routers that turn events into notifications, channels that
send them, and the worker between them.

Wiring (done once in approvals/app.py):

    outbox = Outbox(engine, hub, settings)       # hooks routing into the hub
    outbox.add_router(webhook_router)            # LiveEvent -> [Notification, ...]
    outbox.add_channel(WebhookChannel(...))      # has .name and async deliver()
    await outbox.start(); ...; await outbox.stop()

Every event the lifecycle emits goes through the routers inside the emitting
transaction (`EventHub.in_transaction`), and what they return is written to the
`deliveries` table there: the notification exists exactly when the change does.
A router must be quick and touch nothing but its arguments (it runs while the
write holds SQLite's lock); it must not fail, or the change fails with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from sqlalchemy.engine import Engine

from approvals.db import WriteScope
from approvals.live_events import EventHub, LiveEvent
from approvals.outbox.core import Channel, Notification, RetrySchedule, enqueue
from approvals.outbox.worker import OutboxWorker, Outcome
from approvals.settings import Settings

log = logging.getLogger(__name__)

Router = Callable[[LiveEvent], Sequence[Notification]]


class Outbox:
    """See the module docstring."""

    def __init__(
        self,
        engine: Engine,
        hub: EventHub,
        settings: Settings,
        on_outcome: Callable[[str, Outcome], None] | None = None,
    ) -> None:
        self.engine = engine
        self.hub = hub
        self.routers: list[Router] = []
        self.channels: dict[str, Channel] = {}
        self.worker = OutboxWorker(
            engine,
            self.channels,
            RetrySchedule(
                first=settings.delivery_retry_first_seconds,
                cap=settings.delivery_retry_cap_seconds,
                give_up_after=settings.delivery_give_up_seconds,
            ),
            concurrency=settings.delivery_concurrency,
            poll_seconds=settings.delivery_poll_seconds,
            attempt_timeout=settings.delivery_attempt_timeout_seconds,
            lease_seconds=settings.delivery_lease_seconds,
            on_outcome=on_outcome,
        )
        self._task: asyncio.Task[None] | None = None
        hub.in_transaction.append(self._route)
        hub.observers.append(self._committed)

    def add_router(self, router: Router) -> None:
        """Route every later event through `router` as well."""
        self.routers.append(router)

    def add_channel(self, channel: Channel, *, timeout: float | None = None) -> None:
        """Deliver the rows of `channel.name` with `channel` (before `start`); an attempt
        is cut off after `timeout` seconds (default SIGNOFF_DELIVERY_ATTEMPT_TIMEOUT_SECONDS)."""
        self.channels[channel.name] = channel
        if timeout is not None:
            self.worker.timeouts[channel.name] = timeout

    def _route(self, scope: WriteScope, evt: LiveEvent) -> None:
        for router in self.routers:
            for notification in router(evt):
                enqueue(scope, notification, now=evt.at)

    def _committed(self, evt: LiveEvent) -> None:
        if self.routers:
            self.worker.wake()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.worker.run(), name="signoff-outbox")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
