"""Webhook notifications: routed from events into the outbox, then posted, signed.

The router (run in the transaction of the change) writes, for every webhook of
the policy subscribed to the event's type, the exact JSON body to send:
`{"event_id", "type", "created_at", "request_id", "request"}`. The body is fixed
then, so every retry sends the same bytes with the same event_id (receivers
dedupe on it); only the `Signoff-Signature` header is made anew per attempt,
from the secrets the named environment variable holds at that moment.

A 2xx answer delivers; anything else (another status, a timeout, a refused
connection) is retried by the outbox. Redirects are not followed: a receiver
that moved must be updated in the policy.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence

import httpx
from pydantic import BaseModel

from approvals.live_events import LiveEvent
from approvals.outbox.core import Delivery, DeliveryFailed, Notification, new_event_id
from approvals.version import installed_version
from approvals.webhooks.signing import HEADER, header_value, secrets_of
from gateway_plugin.policy import Policy

log = logging.getLogger(__name__)

CHANNEL = "webhook"


class WebhookPayload(BaseModel):
    """What an outbox row of the webhook channel holds."""

    secret_env: str
    # The JSON body, sent byte for byte on every attempt.
    body: str


def body_of(evt: LiveEvent, event_id: str) -> str:
    """The JSON body a webhook receiver gets for `evt`."""
    # Built in the change's transaction (on the write path): the request view is
    # serialized by pydantic-core, and the envelope around it by hand.
    view = evt.request
    request = (
        view.model_dump_json()
        if isinstance(view, BaseModel)
        else json.dumps(view, separators=(",", ":"))
    )
    head = json.dumps(
        {
            "event_id": event_id,
            "type": evt.type,
            "created_at": evt.at.isoformat(),
            "request_id": evt.request_id,
        },
        separators=(",", ":"),
    )
    return f'{head[:-1]},"request":{request}}}'


def webhook_router(
    policy: Callable[[], Policy | None],
) -> Callable[[LiveEvent], Sequence[Notification]]:
    """The outbox router for the webhooks of the service's current policy."""

    def route(evt: LiveEvent) -> Sequence[Notification]:
        current = policy()
        if current is None or not current.webhooks:
            return []
        notifications = []
        for hook in current.webhooks:
            if evt.type not in hook.events:
                continue
            event_id = new_event_id()
            notifications.append(
                Notification(
                    channel=CHANNEL,
                    target=hook.url,
                    event_type=evt.type,
                    request_id=evt.request_id,
                    event_id=event_id,
                    payload=WebhookPayload(secret_env=hook.secret_env, body=body_of(evt, event_id)),
                )
            )
        return notifications

    return route


class WebhookChannel:
    """Posts webhook rows of the outbox (an `approvals.outbox.Channel`)."""

    name = CHANNEL

    def __init__(self, timeout: float) -> None:
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": f"Signoff/{installed_version()}"},
        )

    async def deliver(self, delivery: Delivery) -> None:
        payload = delivery.parse(WebhookPayload)
        secrets = secrets_of(os.environ.get(payload.secret_env))
        if not secrets:
            raise DeliveryFailed(f"the environment variable {payload.secret_env} is not set")
        body = payload.body.encode()
        headers = {
            "Content-Type": "application/json",
            HEADER: header_value(secrets, int(time.time()), body),
            "Signoff-Event-Id": delivery.event_id,
            "Signoff-Event-Type": delivery.event_type,
        }
        try:
            answer = await self._client.post(delivery.target, content=body, headers=headers)
        except httpx.TimeoutException:
            raise DeliveryFailed("the receiver did not answer in time") from None
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"could not reach the receiver: {type(exc).__name__}") from None
        if not 200 <= answer.status_code < 300:
            raise DeliveryFailed(f"the receiver answered HTTP {answer.status_code}")

    async def close(self) -> None:
        await self._client.aclose()
