"""Microsoft Teams through the outbox: which cards an event causes, and posting them.

A group's `teams_webhook` gets:

- request.created: the request's card, if the request's group has a webhook;
- request.escalated: the card, to the webhook of the group the step adds;
- request.reminded: a reminder card, to every group asked so far;
- the end (request.decided once settled, request.expired, request.cancelled):
  a follow-up card naming the outcome and who decided, to every group asked.

Each card is one outbox row (target: the webhook URL) written in the
transaction of the change; a request's rows to one webhook go out in order, so
the follow-up never overtakes the card. A 2xx answer is delivered; 408, 429
and 5xx answers and network errors are retried; other 4xx answers (a
malformed card, a deleted workflow) are given up at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio.to_thread
import httpx
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Engine

from approvals import escalation, notices
from approvals.live_events import LiveEvent
from approvals.notices import Notice, NoticeKind, notice_of
from approvals.outbox import Delivery, DeliveryFailed, Notification, Outbox
from approvals.schemas import RequestPublic
from approvals.settings import Settings
from approvals.teams.cards import card
from gateway_plugin.policy import Policy

log = logging.getLogger(__name__)

CHANNEL = "teams"
_ENDINGS = ("request.decided", "request.expired", "request.cancelled")


class TeamsPayload(BaseModel):
    """One card to one group's webhook, as stored in the outbox."""

    model_config = ConfigDict(frozen=True)

    notice: Notice
    group: str


def _groups_asked(request: RequestPublic) -> list[str]:
    groups = [request.approver_group] if request.approver_group else []
    return groups + [s.group for s in request.escalations if s.announced]


class TeamsRouter:
    """Turns events into Teams notifications (runs inside the event's transaction)."""

    def __init__(self, settings: Settings, policy: Callable[[], Policy | None]) -> None:
        self.settings = settings
        self.policy = policy

    def __call__(self, evt: LiveEvent) -> Sequence[Notification]:
        # Runs inside the decision's transaction: a bug here must cost the notification
        # (loudly), never the decision.
        try:
            return self._route(evt)
        except Exception:
            log.exception("teams: could not route %s for request %s", evt.type, evt.request_id)
            return []

    def _route(self, evt: LiveEvent) -> Sequence[Notification]:
        policy = self.policy()
        request = evt.request
        if policy is None or not isinstance(request, RequestPublic):
            return []
        kind: NoticeKind
        if evt.type == "request.created":
            kind, groups = "request", [request.approver_group] if request.approver_group else []
        elif evt.type == "request.escalated":
            added = escalation.newly_asked(request)[0]
            kind, groups = "escalation", [added] if added else []
        elif evt.type == "request.reminded":
            kind, groups = "reminder", _groups_asked(request)
        elif evt.type in _ENDINGS and request.status != "pending":
            kind, groups = "outcome", _groups_asked(request)
        else:
            return []
        notice = notice_of(kind, request, policy=policy, base_url=self.settings.base_url())
        notifications = []
        for name in dict.fromkeys(groups):
            known = policy.groups.get(name)
            if known is None or known.teams_webhook is None:
                continue
            notifications.append(
                Notification(
                    channel=CHANNEL,
                    target=known.teams_webhook,
                    event_type=evt.type,
                    request_id=request.id,
                    payload=TeamsPayload(notice=notice, group=name),
                )
            )
        return notifications


class TeamsChannel:
    """Posts the outbox's Teams rows to their webhooks."""

    name = CHANNEL

    def __init__(self, engine: Engine, timeout: float = 10.0) -> None:
        self.engine = engine
        self.timeout = timeout

    async def deliver(self, delivery: Delivery) -> None:
        payload = delivery.parse(TeamsPayload)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                answer = await client.post(delivery.target, json=card(payload.notice))
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
        if not answer.is_success:
            retry = answer.status_code in (408, 429) or answer.status_code >= 500
            said = answer.text[:200].replace("\n", " ")
            raise DeliveryFailed(
                f"the webhook answered {answer.status_code}: {said}", permanent=not retry
            )
        if payload.notice.kind in ("request", "escalation"):
            await anyio.to_thread.run_sync(self._notified, payload)

    def _notified(self, payload: TeamsPayload) -> None:
        notices.record_sent(
            self.engine,
            payload.notice.request_id,
            channel=CHANNEL,
            recipients=[f"Teams webhook of {payload.group}"],
        )


def install(
    outbox: Outbox, settings: Settings, engine: Engine, policy: Callable[[], Policy | None]
) -> None:
    """Route events to the groups' Teams webhooks and post them."""
    outbox.add_router(TeamsRouter(settings, policy))
    outbox.add_channel(TeamsChannel(engine))
