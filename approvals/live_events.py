"""Live events and their hub: state changes reach websockets and long-polls once committed.

A `LiveEvent` is what clients hear (not an audit row: that is an `AuditEvent`).
Lifecycle functions call `emit(scope, ...)`; the events are held on the unit of
work and handed to the hub by the store (approvals/store.py) only after its
transaction has committed, so no client ever hears about a change that was
rolled back.

Two kinds of listeners: watches of one request (the long-poll: it hears every
event about its request from the moment it starts watching, and reads the
database only when told it may have missed one), and subscribers that want
every event (websocket clients), or only the events of the requests one gateway
created. Each subscriber has a bounded queue; publishing never blocks, and a
subscriber whose queue is full is dropped (its `dropped` event is set) and must
resync from the REST list.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Connection

from approvals.db import WriteScope
from approvals.models import utcnow
from gateway_plugin.loops import call_on_loop

_PENDING_KEY = "signoff_pending_events"
_HUB_KEY = "signoff_hub"

# How long, and for how many requests, a long-poll's last view is kept for the next ask.
LAST_SEEN_SECONDS = 60.0
LAST_SEEN_MAX = 100_000

EVENT_TYPES = (
    "request.created",
    "request.decided",
    "request.expired",
    "request.cancelled",
    # Emitted by the sweeper (approvals/escalation.py); the request's state is unchanged
    # by a reminder, and an escalation only widens who may decide.
    "request.reminded",
    "request.escalated",
)


@dataclass(frozen=True)
class LiveEvent:
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
    def gateway(self) -> str | None:
        """The name of the gateway token that created the request, if the view says."""
        request = self.request
        owner = (
            getattr(request, "gateway", None)
            if isinstance(request, BaseModel)
            else request.get("gateway")
        )
        return owner if isinstance(owner, str) else None

    @cached_property
    def text(self) -> str:
        """The JSON text sent to subscribers, encoded once however many there are."""
        return json.dumps(self.to_json(), separators=(",", ":"))


@dataclass(frozen=True)
class GrantEvent(LiveEvent):
    """A grant was created, revoked or used (`type` grant.created / grant.revoked /
    grant.used; `request_id` holds the grant's id). Only a signal: listeners read the
    grants again (GET /api/v1/grants, the dashboard's Grants page), whose rules say who
    sees what. Gateways do not hear it: they ask the service at every call."""

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "grant_id": self.request_id, "at": self.at.isoformat()}


class Subscriber:
    """One listener for events, with a bounded queue it drains at its own pace.

    `gateway`: only events of requests that gateway token created (None: every event).
    `token_hash` and `expires_at` (epoch seconds) say what authorised the listener,
    so that approvals.revocations can end it when that authority ends.
    """

    def __init__(
        self,
        maxsize: int,
        *,
        gateway: str | None = None,
        token_hash: str | None = None,
        expires_at: float | None = None,
    ) -> None:
        # Always bounded: asyncio treats a maxsize of 0 as "no limit".
        self.queue: asyncio.Queue[LiveEvent] = asyncio.Queue(max(1, maxsize))
        # Set when the queue overflowed (the subscriber missed events and must resync),
        # or when the service ended the subscription (`ended_because` then says why).
        self.dropped = asyncio.Event()
        self.gateway = gateway
        self.token_hash = token_hash
        self.expires_at = expires_at
        self.ended_because: str | None = None

    def end(self, reason: str) -> None:
        """Stop delivering to this subscriber for `reason` (not a resync: it may not return)."""
        if self.ended_because is None:
            self.ended_because = reason
        self.dropped.set()

    def offer(self, evt: LiveEvent) -> bool:
        """Queue `evt` without waiting; False (and dropped) when the queue is full."""
        if self.dropped.is_set():
            return False
        try:
            self.queue.put_nowait(evt)
        except asyncio.QueueFull:
            self.dropped.set()
            return False
        return True


class Missed:
    """Said to watches when events may have gone by unheard (the cross-replica
    listener reconnected): re-read the request."""


MISSED = Missed()


class Watch:
    """The events about one request from the moment the watch is made (on the hub's loop).

    Waiting costs a future and a timer: no task, no thread, no database read."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self._items: deque[LiveEvent | Missed] = deque()
        self._wake: asyncio.Future[None] | None = None

    def put(self, item: LiveEvent | Missed) -> None:
        self._items.append(item)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def next(self, timeout: float) -> LiveEvent | Missed | None:
        """The next event (or MISSED), or None once `timeout` seconds went by without one."""
        if not self._items:
            loop = asyncio.get_running_loop()
            wake = self._wake = loop.create_future()
            timer = loop.call_later(max(0.0, timeout), _settle_none, wake)
            try:
                await wake
            finally:
                timer.cancel()
                self._wake = None
        return self._items.popleft() if self._items else None


def _settle_none(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class EventHub:
    """Fans events out to coroutines waiting in this process; safe to publish from any thread."""

    def __init__(self, queue_size: int = 256) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        # Touched only on the hub's loop, like the subscribers.
        self._watches: dict[str, set[Watch]] = defaultdict(set)
        self._watch_count = 0  # read by /metrics from a worker thread: a plain int
        # Views of pending requests as long-polls last saw them when they timed out,
        # so that the gateway's next ask needs no database read; any event about the
        # request, or events gone by unheard, forgets them. On the hub's loop only.
        self._last_seen: OrderedDict[str, tuple[float, BaseModel]] = OrderedDict()
        self.queue_size = queue_size
        # Touched only on the hub's loop, so no lock is needed.
        self._subscribers: set[Subscriber] = set()
        # Set by approvals.fanout on PostgreSQL: called with a transaction's events
        # just before it commits, on its connection (to NOTIFY the other replicas).
        self.relay: Callable[[Connection, list[LiveEvent]], None] | None = None
        # Called with each committed change made in this process (not those relayed
        # from other replicas), on the publishing thread: metrics and the activity log.
        self.observers: list[Callable[[LiveEvent], None]] = []
        # Called with each event as it is emitted, in the emitting transaction (before
        # its commit): what they write commits or rolls back with the change itself.
        # The outbox enqueues notifications here (approvals/outbox/service.py).
        self.in_transaction: list[Callable[[WriteScope, LiveEvent], None]] = []

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach the hub to the event loop its subscribers run on."""
        self._loop = loop

    def publish(self, evt: LiveEvent) -> None:
        """Deliver `evt` to every waiter for its request."""
        if not evt.remote:
            for observe in self.observers:
                try:
                    observe(evt)
                except Exception:  # counting or logging must never lose an event
                    logging.getLogger(__name__).exception("observer failed on %s", evt.type)
        call_on_loop(self._loop, self._deliver, evt)

    def _deliver(self, evt: LiveEvent) -> None:
        self._last_seen.pop(evt.request_id, None)
        for watch in self._watches.get(evt.request_id, ()):
            watch.put(evt)
        for sub in list(self._subscribers):
            # A gateway hears only about its own requests; `evt.gateway` is worked out
            # once per event, and only when such a subscriber exists.
            if sub.gateway is not None and sub.gateway != evt.gateway:
                continue
            if not sub.offer(evt):
                self._subscribers.discard(sub)

    def subscribe(
        self,
        queue_size: int | None = None,
        *,
        gateway: str | None = None,
        token_hash: str | None = None,
        expires_at: float | None = None,
    ) -> Subscriber:
        """A new subscriber to every event from now on (call on the hub's loop).

        See `Subscriber` for `gateway`, `token_hash` and `expires_at`."""
        sub = Subscriber(
            queue_size or self.queue_size,
            gateway=gateway,
            token_hash=token_hash,
            expires_at=expires_at,
        )
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def drop_subscribers(self) -> None:
        """Tell every subscriber it may have missed events (it resyncs); on the hub's loop."""
        for sub in list(self._subscribers):
            sub.dropped.set()
        self._subscribers.clear()

    def end_where(self, reason_to_end: Callable[[Subscriber], str | None]) -> int:
        """End every subscriber for which `reason_to_end` gives a reason; on the hub's loop.

        Returns how many were ended; they get no event from now on."""
        ended = 0
        for sub in list(self._subscribers):
            reason = reason_to_end(sub)
            if reason is not None:
                sub.end(reason)
                self._subscribers.discard(sub)
                ended += 1
        return ended

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def watch(self, request_id: str) -> Watch:
        """Start hearing the events about `request_id` (call on the hub's loop)."""
        found = Watch(request_id)
        self._watches[request_id].add(found)
        self._watch_count += 1
        return found

    def unwatch(self, found: Watch) -> None:
        watches = self._watches.get(found.request_id)
        if watches is not None and found in watches:
            watches.discard(found)
            self._watch_count -= 1
            if not watches:
                del self._watches[found.request_id]

    def remember(self, request_id: str, view: BaseModel) -> None:
        """Keep `view` as the request's state until an event about it (on the hub's loop).

        Call only while a watch of the request is open and has nothing unheard: then
        every change since `view` was read has already been applied to it."""
        now = time.monotonic()
        seen = self._last_seen
        seen[request_id] = (now, view)
        seen.move_to_end(request_id)
        while seen:
            oldest, (at, _) = next(iter(seen.items()))
            if now - at <= LAST_SEEN_SECONDS and len(seen) <= LAST_SEEN_MAX:
                break
            del seen[oldest]

    def recall(self, request_id: str) -> BaseModel | None:
        """The view `remember` kept, if no event about the request came since (and it is
        recent); on the hub's loop."""
        found = self._last_seen.get(request_id)
        if found is None or time.monotonic() - found[0] > LAST_SEEN_SECONDS:
            return None
        return found[1]

    def tell_watches_they_missed(self) -> None:
        """Every watch may have missed events: each re-reads its request; on the hub's loop."""
        self._last_seen.clear()
        for watches in self._watches.values():
            for found in watches:
                found.put(MISSED)

    @property
    def watch_count(self) -> int:
        return self._watch_count

    async def wait_for(self, request_id: str, timeout: float) -> LiveEvent | None:
        """Wait up to `timeout` seconds for the next event about `request_id`."""
        found = self.watch(request_id)
        try:
            item = await found.next(timeout)
        finally:
            self.unwatch(found)
        return item if isinstance(item, LiveEvent) else None


def attach_hub(scope: WriteScope, hub: EventHub | None) -> None:
    """Make `scope`, a unit of the store, run `hub`'s in-transaction hooks (the store
    publishes the unit's events once it has committed)."""
    scope.info[_HUB_KEY] = hub


def hub_of(scope: WriteScope) -> EventHub | None:
    """The hub `scope` publishes to, if any."""
    hub: EventHub | None = scope.info.get(_HUB_KEY)
    return hub


def emit(scope: WriteScope, evt: LiveEvent) -> None:
    """Queue `evt` for publication when `scope` commits; let the hub's `in_transaction`
    hooks write what must commit with it."""
    scope.info.setdefault(_PENDING_KEY, []).append(evt)
    hub = hub_of(scope)
    if hub is not None:
        for hook in hub.in_transaction:
            hook(scope, evt)


def announce(scope: WriteScope, evt: GrantEvent) -> None:
    """Queue a grant's signal for publication when `scope` commits. Unlike `emit`, no
    in-transaction hook (the outbox's notification routing) sees it: it is no request."""
    scope.info.setdefault(_PENDING_KEY, []).append(evt)


def take_pending(scope: WriteScope) -> list[LiveEvent]:
    """The events emitted in `scope` since its last commit or rollback, taken from it."""
    pending: list[LiveEvent] = scope.info.pop(_PENDING_KEY, [])
    return pending
