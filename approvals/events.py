"""In-process event hub: state changes are published once their transaction commits.

Lifecycle functions call `emit(session, ...)`; the events are held on the session
and handed to the hub bound to it only after a successful commit, so no client
ever hears about a change that was rolled back.

Two kinds of listeners: coroutines waiting for one request (the long-poll), and
subscribers that want every event (websocket clients). Each subscriber has a
bounded queue; publishing never blocks, and a subscriber whose queue is full is
dropped (its `dropped` event is set) and must resync from the REST list.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from pydantic import BaseModel
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession

from approvals.db import WriteScope
from approvals.models import utcnow
from gateway_plugin.loops import call_on_loop

_PENDING_KEY = "signoff_pending_events"
_HUB_KEY = "signoff_hub"

EVENT_TYPES = ("request.created", "request.decided", "request.expired", "request.cancelled")


@dataclass(frozen=True)
class Event:
    """One fact about a request, as streamed to clients."""

    type: str
    request_id: str
    # The request as clients see it: the view made in this process, or the JSON a
    # replica sent. A view is turned into JSON only when someone listens.
    request: BaseModel | dict[str, Any]
    at: datetime = field(default_factory=utcnow)
    # True when another replica made the change (delivered here by approvals.fanout):
    # side effects that must happen once per change (Slack posts) belong to the origin.
    remote: bool = False

    @cached_property
    def request_json(self) -> dict[str, Any]:
        """The request as a JSON object."""
        if isinstance(self.request, BaseModel):
            return self.request.model_dump(mode="json")
        return self.request

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "request_id": self.request_id,
            "at": self.at.isoformat(),
            "request": self.request_json,
        }

    @cached_property
    def text(self) -> str:
        """The JSON text sent to subscribers, encoded once however many there are."""
        return json.dumps(self.to_json(), separators=(",", ":"))


class Subscriber:
    """One listener for every event, with a bounded queue it drains at its own pace."""

    def __init__(self, maxsize: int) -> None:
        # Always bounded: asyncio treats a maxsize of 0 as "no limit".
        self.queue: asyncio.Queue[Event] = asyncio.Queue(max(1, maxsize))
        # Set when the queue overflowed: the subscriber missed events and must resync.
        self.dropped = asyncio.Event()

    def offer(self, evt: Event) -> bool:
        """Queue `evt` without waiting; False (and dropped) when the queue is full."""
        if self.dropped.is_set():
            return False
        try:
            self.queue.put_nowait(evt)
        except asyncio.QueueFull:
            self.dropped.set()
            return False
        return True


class EventHub:
    """Fans events out to coroutines waiting in this process; safe to publish from any thread."""

    def __init__(self, queue_size: int = 256) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Future[Event]]] = defaultdict(set)
        self._lock = threading.Lock()
        self.queue_size = queue_size
        # Touched only on the hub's loop, so no lock is needed.
        self._subscribers: set[Subscriber] = set()
        # Set by approvals.fanout on PostgreSQL: called with a session's events just
        # before it commits, in its transaction (to NOTIFY the other replicas).
        self.relay: Callable[[OrmSession, list[Event]], None] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach the hub to the event loop its subscribers run on."""
        self._loop = loop

    def publish(self, evt: Event) -> None:
        """Deliver `evt` to every waiter for its request."""
        call_on_loop(self._loop, self._deliver, evt)

    def _deliver(self, evt: Event) -> None:
        with self._lock:
            waiters = self._waiters.pop(evt.request_id, set())
        for fut in waiters:
            if not fut.done():
                fut.set_result(evt)
        for sub in list(self._subscribers):
            if not sub.offer(evt):
                self._subscribers.discard(sub)

    def subscribe(self, queue_size: int | None = None) -> Subscriber:
        """A new subscriber to every event from now on (call on the hub's loop)."""
        sub = Subscriber(queue_size or self.queue_size)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def drop_subscribers(self) -> None:
        """Tell every subscriber it may have missed events (it resyncs); on the hub's loop."""
        for sub in list(self._subscribers):
            sub.dropped.set()
        self._subscribers.clear()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def wait_for(self, request_id: str, timeout: float) -> Event | None:
        """Wait up to `timeout` seconds for the next event about `request_id`."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Event] = loop.create_future()
        with self._lock:
            self._waiters[request_id].add(fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            with self._lock:
                waiters = self._waiters.get(request_id)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[request_id]


def attach_hub(scope: WriteScope, hub: EventHub | None) -> None:
    """Make `scope` (a session, or a group commit's unit) publish committed events to `hub`."""
    scope.info[_HUB_KEY] = hub


def hub_of(scope: WriteScope) -> EventHub | None:
    """The hub `scope` publishes to, if any."""
    hub: EventHub | None = scope.info.get(_HUB_KEY)
    return hub


def emit(scope: WriteScope, evt: Event) -> None:
    """Queue `evt` for publication when `scope` commits."""
    scope.info.setdefault(_PENDING_KEY, []).append(evt)


def take_pending(scope: WriteScope) -> list[Event]:
    """The events emitted in `scope` since its last commit or rollback, taken from it."""
    pending: list[Event] = scope.info.pop(_PENDING_KEY, [])
    return pending


@event.listens_for(OrmSession, "before_commit")
def _relay_pending(session: OrmSession) -> None:
    pending: list[Event] = session.info.get(_PENDING_KEY, [])
    hub = hub_of(session)
    if pending and hub is not None and hub.relay is not None:
        hub.relay(session, pending)


@event.listens_for(OrmSession, "after_commit")
def _publish_committed(session: OrmSession) -> None:
    pending = take_pending(session)
    hub = hub_of(session)
    if hub is not None:
        for evt in pending:
            hub.publish(evt)


@event.listens_for(OrmSession, "after_rollback")
def _drop_rolled_back(session: OrmSession) -> None:
    take_pending(session)
