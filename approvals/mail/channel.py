"""Email through the outbox: which messages an event causes, and sending them.

- request.created: the first message to each approver asked who has an `email`;
- request.escalated: the first message to each member of the announced step's
  group who was not asked before (one first message per request and person);
- request.reminded: a reply to that first message (In-Reply-To / References) for
  each person asked who has not voted yet.

Each message is one outbox row (target: the address), written in the
transaction of the change; the outbox sends a request's rows to one address in
order, so a reminder never arrives before the message it replies to. Nothing
is enqueued while SIGNOFF_SMTP_URL is unset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio.to_thread
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Engine

from approvals import escalation, notices
from approvals.live_events import LiveEvent
from approvals.mail import addresses
from approvals.mail.message import build_message
from approvals.mail.smtp import SmtpRefused, SmtpServer, send
from approvals.notices import Notice, NoticeKind, notice_of
from approvals.outbox import Delivery, DeliveryFailed, Notification, Outbox
from approvals.schemas import RequestPublic
from approvals.settings import Settings
from gateway_plugin.policy import Policy

log = logging.getLogger(__name__)

CHANNEL = "email"


class EmailPayload(BaseModel):
    """One message to one approver, as stored in the outbox."""

    model_config = ConfigDict(frozen=True)

    notice: Notice
    approver: str
    address: str
    message_id: str
    # The first message's Message-ID, for a reply (a reminder); None for a first message.
    thread_root: str | None = None


class EmailRouter:
    """Turns events into email notifications (runs inside the event's transaction)."""

    def __init__(self, settings: Settings, policy: Callable[[], Policy | None]) -> None:
        self.settings = settings
        self.policy = policy

    def __call__(self, evt: LiveEvent) -> Sequence[Notification]:
        # Runs inside the decision's transaction: a bug here must cost the notification
        # (loudly), never the decision.
        try:
            return self._route(evt)
        except Exception:
            log.exception("email: could not route %s for request %s", evt.type, evt.request_id)
            return []

    def _route(self, evt: LiveEvent) -> Sequence[Notification]:
        sender = self.settings.smtp_from
        policy = self.policy()
        request = evt.request
        if sender is None or policy is None or not isinstance(request, RequestPublic):
            return []
        kind: NoticeKind
        if evt.type == "request.created":
            kind, names = "request", escalation.asked(request)
        elif evt.type == "request.escalated":
            kind, names = "escalation", escalation.newly_asked(request)[1]
        elif evt.type == "request.reminded":
            kind, names = "reminder", escalation.waiting_on(request)
        else:
            return []
        notice = notice_of(kind, request, policy=policy, base_url=self.settings.base_url())
        notifications = []
        for name in names:
            approver = policy.approvers.get(name)
            if approver is None or approver.email is None:
                continue
            first = addresses.thread_id(sender, request.id, name)
            payload = EmailPayload(
                notice=notice,
                approver=name,
                address=approver.email,
                message_id=addresses.reply_id(sender, request.id) if kind == "reminder" else first,
                thread_root=first if kind == "reminder" else None,
            )
            notifications.append(
                Notification(
                    channel=CHANNEL,
                    target=approver.email,
                    event_type=evt.type,
                    request_id=request.id,
                    payload=payload,
                )
            )
        return notifications


class EmailChannel:
    """Sends the outbox's email rows through SIGNOFF_SMTP_URL."""

    name = CHANNEL

    def __init__(self, settings: Settings, engine: Engine) -> None:
        assert settings.smtp_url is not None and settings.smtp_from is not None
        self.server = SmtpServer.parse(settings.smtp_url)
        self.sender = settings.smtp_from
        self.timeout = settings.smtp_timeout_seconds
        self.engine = engine

    async def deliver(self, delivery: Delivery) -> None:
        payload = delivery.parse(EmailPayload)
        message = build_message(
            payload.notice,
            sender=self.sender,
            recipient=payload.address,
            message_id=payload.message_id,
            thread_root=payload.thread_root,
        )
        try:
            await anyio.to_thread.run_sync(
                send, self.server, message, payload.address, self.timeout
            )
        except SmtpRefused as exc:
            raise DeliveryFailed(exc.reason, permanent=exc.permanent) from None
        if payload.thread_root is None:
            await anyio.to_thread.run_sync(self._notified, payload)

    def _notified(self, payload: EmailPayload) -> None:
        notices.record_sent(
            self.engine,
            payload.notice.request_id,
            channel=CHANNEL,
            recipients=[f"{payload.approver} <{payload.address}>"],
        )


def install(
    outbox: Outbox, settings: Settings, engine: Engine, policy: Callable[[], Policy | None]
) -> None:
    """Route events to email and send it, when SIGNOFF_SMTP_URL is set."""
    if settings.smtp_url is None:
        current = policy()
        if current is not None and any(a.email for a in current.approvers.values()):
            log.warning(
                "the policy gives approvers email addresses but SIGNOFF_SMTP_URL is unset: "
                "no email will be sent"
            )
        return
    outbox.add_router(EmailRouter(settings, policy))
    outbox.add_channel(EmailChannel(settings, engine))
    log.info("email: sending through %s", SmtpServer.parse(settings.smtp_url).describe())
