"""Notifications that are never lost: an outbox table written with each change, and a
worker that delivers it (Slack, webhooks, email, Teams).

The interface other channels plug into:

- `Notification(channel=, target=, event_type=, request_id=, payload=<pydantic model>)`
  and `enqueue(scope, notification)`: write one in the caller's transaction;
- `Outbox.add_router(router)`: `router(event) -> [Notification, ...]` runs for every
  event the lifecycle emits, inside its transaction (the usual way to enqueue);
- `Channel` (`name`, `async deliver(delivery: Delivery) -> None`, raising
  `DeliveryFailed(reason, permanent=False)`), registered with `Outbox.add_channel`;
  `Outbox.add_channel(channel, timeout=S)` when an attempt may take longer than
  SIGNOFF_DELIVERY_ATTEMPT_TIMEOUT_SECONDS (Slack: its client retries itself);
- `Delivery.parse(Model)` gives the payload back as the channel's model; `Delivery`
  also carries `event_id` (stable across retries), `attempt` (1, 2, ...), `target`.

A new kind of event (request.reminded, request.escalated) needs no outbox change:
queue it from the lifecycle (`changes.queue_event(session, "request.reminded", request)`
before the commit) and every router sees it in that transaction; the webhook router
sends it to the webhooks subscribed to it, the Slack router syncs the card.
Rows of one (channel, target, request_id) go out in order, so give a channel's
notifications of one request the same target when their order matters (Slack uses
one target, "card"; an email channel might use the address).

See approvals/outbox/core.py (vocabulary and guarantees), service.py (wiring),
worker.py (delivery) and store.py (claims, leases, ordering).
"""

from approvals.outbox.core import (
    NOTIFICATION_EVENT_TYPES,
    Channel,
    Delivery,
    DeliveryFailed,
    Notification,
    RetrySchedule,
    enqueue,
)
from approvals.outbox.models import DeliveryRow, DeliveryStatus
from approvals.outbox.service import Outbox, Router

__all__ = [
    "NOTIFICATION_EVENT_TYPES",
    "Channel",
    "Delivery",
    "DeliveryFailed",
    "DeliveryRow",
    "DeliveryStatus",
    "Notification",
    "Outbox",
    "RetrySchedule",
    "Router",
    "enqueue",
]
