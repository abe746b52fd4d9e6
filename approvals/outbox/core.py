"""The outbox's vocabulary: what is enqueued, what a channel is handed, how it fails.

Enqueue (in the transaction of the change that causes it; it commits or rolls
back with that change):

    outbox.enqueue(scope, Notification(
        channel="webhook", target=url, event_type="request.decided",
        request_id=request.id, payload=SomeChannelPayload(...)))

Usually nobody calls `enqueue` by hand: a channel registers a `Router` (a
function of a committed-to-be `Event` giving the notifications it wants) with
`Outbox.add_router`, and every event the lifecycle emits is routed inside its
transaction (approvals/outbox/service.py wires this to the event hub).

Deliver: a channel is any object with a `name` and `async def deliver(delivery)`
(the `Channel` protocol) registered with `Outbox.add_channel`. `deliver` returns
when the notification went out; it raises `DeliveryFailed` to be retried (first
retry within `SIGNOFF_DELIVERY_RETRY_FIRST_SECONDS`, doubling up to
`SIGNOFF_DELIVERY_RETRY_CAP_SECONDS`, given up after
`SIGNOFF_DELIVERY_GIVE_UP_SECONDS`) or `DeliveryFailed(..., permanent=True)` to
give up at once. Any other exception counts as a retryable failure.

Guarantees: at least once (a worker that dies mid-attempt leaves a lease that
runs out, then the row is retried; receivers dedupe on `event_id`); one worker
at a time per row, across replicas; rows with the same (channel, target,
request_id) are delivered in the order they were enqueued, a later one waiting
until the earlier one is delivered or given up.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import insert

from approvals.db import WriteScope
from approvals.models import utcnow
from approvals.outbox.models import DELIVERIES, DeliveryStatus
from gateway_plugin.policy import NotificationEvent

M = TypeVar("M", bound=BaseModel)

# The event types notifications are about (webhook subscribers choose among them; the
# policy's `NotificationEvent` is the one list). request.reminded and request.escalated
# are emitted by reminders and escalation.
NOTIFICATION_EVENT_TYPES: tuple[str, ...] = get_args(NotificationEvent)


def new_event_id() -> str:
    """A unique id for one notification, kept across its retries."""
    return "evt_" + secrets.token_hex(12)


class Notification(BaseModel):
    """One notification to enqueue: an event, for one target of one channel."""

    model_config = ConfigDict(frozen=True)

    channel: str = Field(min_length=1, max_length=32)
    target: str = Field(min_length=1, max_length=2048)
    event_type: str = Field(min_length=1, max_length=64)
    request_id: str = Field(min_length=1, max_length=32)
    # Whatever the channel needs to send it; stored as JSON, parsed back with `Delivery.parse`.
    payload: BaseModel
    event_id: str = Field(default_factory=new_event_id, max_length=64)


_INSERT = insert(DELIVERIES)


def enqueue(scope: WriteScope, notification: Notification, *, now: datetime | None = None) -> None:
    """Write `notification` to the outbox in `scope`'s transaction (it lands with its commit)."""
    now = now or utcnow()
    scope.connection().execute(
        _INSERT,
        dict(
            event_id=notification.event_id,
            channel=notification.channel,
            target=notification.target,
            event_type=notification.event_type,
            request_id=notification.request_id,
            payload=notification.payload.model_dump_json(),
            status=DeliveryStatus.PENDING,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        ),
    )


@dataclass(frozen=True)
class Delivery:
    """One attempt at sending one outbox row, as handed to its channel."""

    id: int
    event_id: str
    channel: str
    target: str
    event_type: str
    request_id: str
    payload: str
    # 1 for the first attempt.
    attempt: int
    created_at: datetime

    def parse(self, model: type[M]) -> M:
        """The payload as the channel's model."""
        return model.model_validate_json(self.payload)


class DeliveryFailed(Exception):
    """The attempt failed; `permanent` gives up at once instead of retrying."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Channel(Protocol):
    """A sender the outbox worker hands deliveries to (see the module docstring)."""

    @property
    def name(self) -> str:
        """The `channel` value of the rows this sender delivers."""
        ...

    async def deliver(self, delivery: Delivery) -> None: ...


@dataclass(frozen=True)
class RetrySchedule:
    """When to try again after a failed attempt, and when to stop."""

    first: float = 1.0
    cap: float = 600.0
    give_up_after: float = 86_400.0

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the `failed_attempts`-th failure (1, 2, ...)."""
        return float(min(self.cap, self.first * 2 ** max(0, failed_attempts - 1)))

    def next_attempt(
        self, created_at: datetime, failed_attempts: int, now: datetime
    ) -> datetime | None:
        """When to try next, or None when the retry window is over."""
        deadline = created_at + timedelta(seconds=self.give_up_after)
        if now >= deadline:
            return None
        return min(deadline, now + timedelta(seconds=self.delay(failed_attempts)))
